//! `panka history`: releases (and lock removals) of a stack/environment, newest first.

use std::process::ExitCode;

use clap::Args;
use std::collections::BTreeSet;

use panka_controller::state::{rolled_back, HistoryEntry, ReleaseOutcome, StateKey};

use super::{open_backends, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{duration, print_data, recorded_time, table};
use crate::render::{say, say_raw};

/// Arguments of `panka history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// Show at most this many entries.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// Runs `panka history`.
pub fn run(global: &GlobalArgs, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let key = StateKey::new(&args.stack, &args.environment)?;
    let entries = runtime()?.block_on(async {
        let b = open_backends(global).await?;
        anyhow::Ok(b.state.history(&key, Some(args.limit)).await?)
    })?;
    match global.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            print_data(global.output, &serde_json::to_value(&entries)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        OutputFormat::Table => {}
    }
    if entries.is_empty() {
        say!("No releases recorded for {key} yet.");
        return Ok(ExitCode::SUCCESS);
    }
    say!("Deployment history: {} ({})", key.stack, key.environment);
    let undone = rolled_back(&entries);
    say_raw!(
        "{}",
        table(
            ["ID", "KIND", "VERSION", "BY", "STARTED", "DURATION", "OUTCOME", "VARS"],
            entries.iter().map(|e| row(e, &undone)),
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// Columns of the table.
const COLUMNS: usize = 8;

/// The variables given on the command line, `NAME=VALUE,…` (`-` when none).
fn vars(overrides: &std::collections::BTreeMap<String, String>) -> String {
    if overrides.is_empty() {
        return "-".to_owned();
    }
    overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn row(entry: &HistoryEntry, undone: &BTreeSet<&str>) -> [String; COLUMNS] {
    match entry {
        HistoryEntry::Release(r) => {
            let duration = match (
                r.started_at.parse::<jiff::Timestamp>(),
                r.finished_at.as_deref().map(str::parse::<jiff::Timestamp>),
            ) {
                (Ok(s), Some(Ok(f))) => duration(f.duration_since(s)),
                _ => "-".to_owned(),
            };
            let outcome = match (r.outcome, undone.contains(r.id.as_str())) {
                (ReleaseOutcome::Failed, true) => "✗ Failed, rolled back",
                (ReleaseOutcome::RolledBack, _) | (_, true) => "⚠ Rolled back",
                (ReleaseOutcome::Succeeded, false) => "✓ Success",
                (ReleaseOutcome::Failed, false) => "✗ Failed",
                (ReleaseOutcome::InProgress, false) => "… In progress",
                (ReleaseOutcome::Interrupted, false) => "⏸ Interrupted",
            };
            // A rollback names where it went: the version when there is one, else the release.
            let kind = match (&r.target, &r.version) {
                (Some(_), Some(version)) => format!("{} → {version}", r.kind),
                (Some(target), None) => format!("{} → {}", r.kind, short_id(target)),
                (None, _) => r.kind.to_string(),
            };
            [
                r.id.clone(),
                kind,
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.actor.clone(),
                recorded_time(&r.started_at),
                duration,
                outcome.to_owned(),
                vars(&r.overrides),
            ]
        }
        HistoryEntry::Unlock(u) => [
            u.id.clone(),
            "unlock".into(),
            "-".into(),
            u.actor.clone(),
            recorded_time(&u.at),
            "-".into(),
            format!(
                "unlock {} (held by {}{})",
                u.lock_key,
                u.locked_by,
                if u.forced { ", forced" } else { "" }
            ),
            "-".into(),
        ],
    }
}

/// A history id without its random suffix (`20250115T133000.123Z`): enough to tell releases
/// apart in a table.
fn short_id(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(stamp, _)| stamp)
}
