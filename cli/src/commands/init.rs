//! `panka init`: write `~/.panka/config.yaml` (state bucket, lock table, AWS profile/region).
//! Interactive with prompts as in the user guide; fully non-interactive with flags.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use panka_controller::aws::AwsSettings;
use panka_controller::config::{self, FileConfig, LocksConfig, StateConfig};
use serde_json::json;

use crate::app::{GlobalArgs, OutputFormat};
use crate::render::print_data;
use crate::render::{say, say_raw};

/// Arguments of `panka init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// AWS region of the state bucket and the lock table.
    #[arg(long)]
    pub region: Option<String>,
    /// S3 bucket for state.
    #[arg(long, conflicts_with = "local")]
    pub bucket: Option<String>,
    /// DynamoDB table for locks.
    #[arg(long, conflicts_with = "local")]
    pub table: Option<String>,
    /// AWS profile (default: the AWS chain's).
    #[arg(long)]
    pub profile: Option<String>,
    /// Keep state and locks in a local directory instead (no AWS account needed).
    #[arg(long)]
    pub local: bool,
    /// Directory for `--local` (default `~/.panka/state`).
    #[arg(long, requires = "local")]
    pub state_dir: Option<PathBuf>,
    /// Never prompt: fail when a value is missing.
    #[arg(long)]
    pub non_interactive: bool,
    /// Overwrite an existing configuration file.
    #[arg(long)]
    pub force: bool,
}

/// Runs `panka init`.
pub fn run(global: &GlobalArgs, args: InitArgs) -> anyhow::Result<ExitCode> {
    let path = match &global.config {
        Some(p) => p.clone(),
        None => config::default_config_path()?,
    };
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut prompt = Prompt {
        input: &mut input,
        interactive,
    };

    if interactive {
        say!("Welcome to Panka!\n");
    }
    if path.exists() && !args.force {
        anyhow::ensure!(
            interactive,
            "{} exists already; pass --force to overwrite it",
            path.display()
        );
        let answer = prompt.ask(&format!("{} exists. Overwrite? (y/N)", path.display()))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            say!("Left {} unchanged.", path.display());
            return Ok(ExitCode::SUCCESS);
        }
    }

    let file = if args.local {
        let dir = match &args.state_dir {
            Some(d) => d.clone(),
            None => config::default_state_dir()?,
        };
        FileConfig {
            state: Some(StateConfig::Local { dir: dir.clone() }),
            locks: Some(LocksConfig::Local { dir }),
            aws: AwsSettings {
                profile: args.profile.clone(),
                region: args.region.clone(),
                endpoint_url: None,
            },
        }
    } else {
        let env_region = std::env::var("AWS_REGION")
            .ok()
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        let mut missing = Vec::new();
        let region = prompt.value(
            args.region.clone(),
            "AWS Region",
            env_region,
            "--region",
            &mut missing,
        )?;
        let bucket = prompt.value(
            args.bucket.clone(),
            "S3 Bucket for state",
            None,
            "--bucket",
            &mut missing,
        )?;
        let table = prompt.value(
            args.table.clone(),
            "DynamoDB Table for locks",
            None,
            "--table",
            &mut missing,
        )?;
        anyhow::ensure!(
            missing.is_empty(),
            "missing {} (no terminal to prompt on); or run `panka init --local` to keep state on this machine",
            missing.join(", ")
        );
        let profile = match args.profile.clone() {
            Some(p) => Some(p),
            None if interactive => {
                let p = prompt.ask("AWS Profile (press Enter for default):")?;
                Some(if p.trim().is_empty() {
                    "default".to_owned()
                } else {
                    p.trim().to_owned()
                })
            }
            None => None,
        };
        FileConfig {
            state: Some(StateConfig::S3 {
                bucket: bucket.clone(),
                region: Some(region.clone()),
            }),
            locks: Some(LocksConfig::DynamoDb {
                table: table.clone(),
                region: Some(region.clone()),
            }),
            aws: AwsSettings {
                profile,
                region: Some(region),
                endpoint_url: None,
            },
        }
    };
    file.save(&path)?;
    match global.output {
        OutputFormat::Table => {
            if interactive {
                say!();
            }
            say!("✓ Configuration saved to {}", path.display());
            if let (
                Some(StateConfig::S3 { bucket, region }),
                Some(LocksConfig::DynamoDb { table, .. }),
            ) = (&file.state, &file.locks)
            {
                say!(
                    "  If the bucket and table do not exist yet (once per organisation):\n    panka backend create --bucket {bucket} --table {table}{}",
                    region.as_ref().map(|r| format!(" --region {r}")).unwrap_or_default()
                );
            }
        }
        OutputFormat::Json | OutputFormat::Yaml => print_data(
            global.output,
            &json!({
                "path": path.display().to_string(),
                "config": file.to_yaml(),
            }),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

struct Prompt<'a, R: BufRead> {
    input: &'a mut R,
    interactive: bool,
}

impl<R: BufRead> Prompt<'_, R> {
    fn ask(&mut self, question: &str) -> anyhow::Result<String> {
        say_raw!("? {question} ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        let n = self.input.read_line(&mut line)?;
        anyhow::ensure!(n > 0, "input ended before `{question}` was answered");
        Ok(line.trim().to_owned())
    }

    /// The flag's value, else (interactively) the answer to a prompt, re-asked until non-empty.
    fn value(
        &mut self,
        given: Option<String>,
        question: &str,
        default: Option<String>,
        flag: &str,
        missing: &mut Vec<String>,
    ) -> anyhow::Result<String> {
        if let Some(v) = given.filter(|v| !v.trim().is_empty()) {
            return Ok(v.trim().to_owned());
        }
        if !self.interactive {
            missing.push(flag.to_owned());
            return Ok(String::new());
        }
        let q = match &default {
            Some(d) => format!("{question} ({d}):"),
            None => format!("{question}:"),
        };
        loop {
            let answer = self.ask(&q)?;
            match (answer.is_empty(), &default) {
                (false, _) => return Ok(answer),
                (true, Some(d)) => return Ok(d.clone()),
                (true, None) => say!("  a value is required"),
            }
        }
    }
}
