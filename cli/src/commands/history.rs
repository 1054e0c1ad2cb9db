//! `panka history`: releases (and lock removals) of a stack/environment, newest first.

use std::process::ExitCode;

use clap::Args;
use panka_controller::state::{HistoryEntry, ReleaseOutcome, StateKey};

use super::backend::{age, load_config, open, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::print_json;

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
    let config = load_config(global)?;
    let entries = runtime()?.block_on(async {
        let b = open(&config).await;
        anyhow::Ok(b.state.history(&key, Some(args.limit)).await?)
    })?;
    match global.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            print_json(&serde_json::to_value(&entries)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        OutputFormat::Table => {}
    }
    if entries.is_empty() {
        println!("No releases recorded for {key} yet.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Deployment history: {} ({})", key.stack, key.environment);
    let rows: Vec<[String; 6]> = entries.iter().map(row).collect();
    let head = ["ID", "VERSION", "BY", "STARTED", "DURATION", "OUTCOME"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let print = |cells: [&str; 6]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(head);
    for r in &rows {
        print([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
    }
    Ok(ExitCode::SUCCESS)
}

fn row(entry: &HistoryEntry) -> [String; 6] {
    match entry {
        HistoryEntry::Release(r) => {
            let duration = match (
                r.started_at.parse::<jiff::Timestamp>(),
                r.finished_at.as_deref().map(str::parse::<jiff::Timestamp>),
            ) {
                (Ok(s), Some(Ok(f))) => age(f.as_second() - s.as_second()),
                _ => "-".to_owned(),
            };
            let outcome = match r.outcome {
                ReleaseOutcome::Succeeded => "✓ Success",
                ReleaseOutcome::Failed => "✗ Failed",
                ReleaseOutcome::RolledBack => "⚠ Rolled back",
                ReleaseOutcome::InProgress => "… In progress",
            };
            [
                r.id.clone(),
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.actor.clone(),
                r.started_at.clone(),
                duration,
                outcome.to_owned(),
            ]
        }
        HistoryEntry::Unlock(u) => [
            u.id.clone(),
            "-".into(),
            u.actor.clone(),
            u.at.clone(),
            "-".into(),
            format!(
                "unlock {} (held by {}{})",
                u.lock_key,
                u.locked_by,
                if u.forced { ", forced" } else { "" }
            ),
        ],
    }
}
