//! `panka state show` and `panka state locks`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use panka_controller::lock::{now_epoch_secs, LockInfo};
use panka_controller::state::StateKey;
use serde_json::json;

use super::{open_backends, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{
    ago, epoch, indent, lock_json, lock_status, print_data, recorded_time, table, timestamp,
};
use crate::render::{say, say_raw};

/// `panka state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Show the recorded state of a stack/environment.
    Show(ShowArgs),
    /// List locks (active and expired).
    Locks(LocksArgs),
}

/// Arguments of `panka state show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
}

/// Arguments of `panka state locks`.
#[derive(Debug, Args)]
pub struct LocksArgs {
    /// Only this stack.
    #[arg(long, short = 's')]
    pub stack: Option<String>,
    /// Only this environment.
    #[arg(long, short = 'e')]
    pub environment: Option<String>,
}

/// Runs `panka state …`.
pub fn run(global: &GlobalArgs, command: StateCommand) -> anyhow::Result<ExitCode> {
    match command {
        StateCommand::Show(args) => show(global, args),
        StateCommand::Locks(args) => locks(global, args),
    }
}

fn show(global: &GlobalArgs, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let key = StateKey::new(&args.stack, &args.environment)?;
    let (location, snapshot) = runtime()?.block_on(async {
        let b = open_backends(global).await?;
        anyhow::Ok((b.state.location(), b.state.read(&key).await?))
    })?;
    let Some(snap) = snapshot else {
        match global.output {
            OutputFormat::Table => {
                say!("No state for {key} in {location}: nothing has been applied yet.")
            }
            OutputFormat::Json | OutputFormat::Yaml => {
                print_data(global.output, &serde_json::Value::Null)?
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let doc = &snap.document;
    match global.output {
        OutputFormat::Table => {
            say!("State: {key}  ({location}/{})", key.state_path());
            say!("  Serial:   {}", doc.serial);
            say!("  Lineage:  {}", doc.lineage);
            say!("  Fence:    {}", doc.fence);
            if !doc.updated_at.is_empty() || !doc.updated_by.is_empty() {
                say!(
                    "  Updated:  {} by {}",
                    recorded_time(&doc.updated_at),
                    doc.updated_by
                );
            }
            if let Some(r) = &doc.release {
                say!("  Release:  {r}");
            }
            if doc.components.is_empty() {
                say!("  Components: none");
            } else {
                say!("  Components ({}):", doc.components.len());
                let rows = doc.components.iter().map(|(name, c)| {
                    let ids = c
                        .identifiers
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let hash: String = c.spec_hash.chars().take(12).collect();
                    [name.clone(), c.kind.clone(), hash, ids]
                });
                say_raw!(
                    "{}",
                    indent(
                        &table(["COMPONENT", "KIND", "SPEC HASH", "IDENTIFIERS"], rows),
                        4
                    )
                );
            }
        }
        OutputFormat::Json | OutputFormat::Yaml => {
            print_data(global.output, &serde_json::to_value(doc)?)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn locks(global: &GlobalArgs, args: LocksArgs) -> anyhow::Result<ExitCode> {
    let (location, list) = runtime()?.block_on(async {
        let b = open_backends(global).await?;
        anyhow::Ok((
            b.locks.location(),
            b.locks
                .list(args.stack.as_deref(), args.environment.as_deref())
                .await?,
        ))
    })?;
    let now = now_epoch_secs();
    match global.output {
        OutputFormat::Table => {
            if list.is_empty() {
                say!("No locks held in {location}.");
                return Ok(ExitCode::SUCCESS);
            }
            print_table(&list, now);
        }
        OutputFormat::Json | OutputFormat::Yaml => print_data(
            global.output,
            &json!(list.iter().map(|l| lock_json(l, now)).collect::<Vec<_>>()),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(list: &[LockInfo], now: i64) {
    let now_at = epoch(now);
    let rows = list.iter().map(|l| {
        [
            l.key(),
            l.locked_by.clone(),
            l.operation.clone(),
            format!(
                "{} ({})",
                timestamp(epoch(l.locked_at)),
                ago(epoch(l.locked_at), now_at)
            ),
            ago(epoch(l.last_heartbeat), now_at),
            lock_status(l, now),
        ]
    });
    say_raw!(
        "{}",
        table(
            ["KEY", "HOLDER", "OPERATION", "SINCE", "HEARTBEAT", "STATUS"],
            rows
        )
    );
}
