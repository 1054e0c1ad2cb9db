//! `panka backend create`: the S3 state bucket and the DynamoDB lock table.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use panka_controller::aws::{self, AwsSettings};
use panka_controller::backend::{self, CreateOptions, StepAction};
use panka_controller::config::{LocksConfig, StateConfig};
use serde_json::json;

use super::{load_config, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{indent, print_data};
use crate::render::{say, say_raw};

/// `panka backend …`.
#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Create (or verify) the state bucket and the lock table. Idempotent.
    Create(CreateArgs),
}

/// Arguments of `panka backend create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// State bucket (default: `backend.bucket` of the configuration).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Lock table (default: `locks.table` of the configuration).
    #[arg(long)]
    pub table: Option<String>,
    /// AWS region (default: the configuration's, then the AWS chain's).
    #[arg(long)]
    pub region: Option<String>,
    /// Accept an existing bucket without versioning (old state versions are then not kept).
    #[arg(long)]
    pub allow_unversioned: bool,
}

/// Runs `panka backend …`.
pub fn run(global: &GlobalArgs, command: BackendCommand) -> anyhow::Result<ExitCode> {
    match command {
        BackendCommand::Create(args) => create(global, args),
    }
}

fn create(global: &GlobalArgs, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(global)?;
    let bucket = match (&args.bucket, &config.state) {
        (Some(b), _) => b.clone(),
        (None, StateConfig::S3 { bucket, .. }) => bucket.clone(),
        (None, StateConfig::Local { .. }) => {
            anyhow::bail!("no state bucket given: pass --bucket NAME (or run `panka init`)")
        }
    };
    let table = match (&args.table, &config.locks) {
        (Some(t), _) => t.clone(),
        (None, LocksConfig::DynamoDb { table, .. }) => table.clone(),
        (None, LocksConfig::Local { .. }) => {
            anyhow::bail!("no lock table given: pass --table NAME (or run `panka init`)")
        }
    };
    let settings = AwsSettings {
        region: args
            .region
            .clone()
            .or_else(|| config.state_region().map(str::to_owned)),
        ..config.aws.clone()
    };
    let steps = runtime()?.block_on(async {
        let sdk = aws::load_sdk_config(&settings).await;
        let s3 = aws::s3_client(&sdk, None);
        let dynamodb = aws::dynamodb_client(&sdk, None);
        backend::create(
            &s3,
            &dynamodb,
            &CreateOptions {
                bucket: bucket.clone(),
                table: table.clone(),
                allow_unversioned: args.allow_unversioned,
            },
        )
        .await
    })?;
    match global.output {
        OutputFormat::Table => {
            say!("Backend: state s3://{bucket}, locks dynamodb://{table}");
            let rows = steps.iter().map(|s| {
                let mark = match s.action {
                    StepAction::Warning => "!",
                    _ => "✓",
                };
                [
                    mark.to_owned(),
                    s.resource.to_string(),
                    s.what.to_string(),
                    s.action.as_str().to_owned(),
                ]
            });
            // No header: each line reads as a sentence (`✓ s3://b  versioning  configured`).
            say_raw!(
                "{}",
                indent(&crate::render::table(["", "", "", ""], rows), 2)
            );
            if steps.iter().all(|s| s.action == StepAction::Verified) {
                say!("Nothing to change: the backend was already set up.");
            }
        }
        OutputFormat::Json | OutputFormat::Yaml => print_data(
            global.output,
            &json!({
                "bucket": bucket,
                "table": table,
                "steps": steps.iter().map(|s| json!({
                    "resource": s.resource,
                    "setting": s.what,
                    "action": s.action.as_str(),
                })).collect::<Vec<_>>(),
            }),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
