//! `panka drift detect|remediate|acknowledge`: compare AWS with what was last applied, put it
//! back, or take what AWS holds into the repository.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use panka_controller::session::{remediation, DriftCheck, Limits, Operation};
use panka_core::drift::DriftReport;
use panka_core::plan::FieldValue;

use super::deploy::{execute, ApplyFlags, Job};
use super::{open_session, repo_root, resolve_target, runtime, Resolved, TargetArgs};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{print_data, recorded_time};
use crate::render::{say, say_raw};
use anyhow::Context;
use panka_controller::source::dir::read_stack;
use panka_core::acknowledge::{acknowledge as acknowledge_edits, target};
use panka_core::diag::suggest;
use panka_core::model::ComponentId;
use panka_crds::Kind;

/// `panka drift …`.
#[derive(Debug, Subcommand)]
pub enum DriftCommand {
    /// List what differs in AWS from what was last applied, with severity and likely cause.
    Detect(DetectArgs),
    /// Put back what drifted (only that), as a `remediation` release.
    Remediate(RemediateArgs),
    /// Keep what AWS holds: print (or `--write`) the change to the repository's YAML that makes
    /// it the desired state.
    Acknowledge(AcknowledgeArgs),
}

/// Arguments of `panka drift acknowledge`.
#[derive(Debug, Args)]
pub struct AcknowledgeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The drifted component, `service/component`.
    #[arg(long, short = 'c')]
    pub component: String,
    /// Only this field (as `drift detect` names it); default every field panka can write back.
    #[arg(long)]
    pub field: Option<String>,
    /// Write the change into the repository's files (default: print it as a diff).
    #[arg(long)]
    pub write: bool,
}

/// Arguments of `panka drift detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Exit 2 when something drifted (0: nothing, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// Arguments of `panka drift remediate`.
#[derive(Debug, Args)]
pub struct RemediateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub flags: ApplyFlags,
    /// Also apply the repository's changes not applied yet (otherwise a remediation refuses
    /// when there are some: it puts back what was applied, nothing newer).
    #[arg(long)]
    pub include_pending: bool,
}

/// Runs `panka drift …`.
pub fn run(global: &GlobalArgs, command: DriftCommand) -> anyhow::Result<ExitCode> {
    match command {
        DriftCommand::Detect(args) => detect(global, args),
        DriftCommand::Remediate(args) => remediate(global, args),
        DriftCommand::Acknowledge(args) => acknowledge(global, args),
    }
}

fn check(
    global: &GlobalArgs,
    target: &TargetArgs,
) -> anyhow::Result<Option<(Resolved, DriftCheck)>> {
    let Some(resolved) = resolve_target(global, target)? else {
        return Ok(None);
    };
    let check = runtime()?.block_on(async {
        let session = open_session(global, &resolved.desired).await?;
        anyhow::Ok(
            session
                .check_drift(&resolved.target, &resolved.desired)
                .await?,
        )
    })?;
    Ok(Some((resolved, check)))
}

fn detect(global: &GlobalArgs, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let Some((_, check)) = check(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    match global.output {
        OutputFormat::Table => say_raw!("{}", report_text(&check.report)),
        OutputFormat::Json | OutputFormat::Yaml => {
            print_data(global.output, &serde_json::to_value(&check.report)?)?
        }
    }
    Ok(if args.detailed_exitcode && check.report.has_drift() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn remediate(global: &GlobalArgs, args: RemediateArgs) -> anyhow::Result<ExitCode> {
    let Some((resolved, check)) = check(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let limits = Limits {
        allow_destroy: args.flags.allow_destroy,
        health_timeout: args.flags.health_timeout,
    };
    if !check.report.has_drift()
        && (check.report.pending.is_empty() || !args.include_pending)
        && global.output == OutputFormat::Table
    {
        say!(
            "No drift: {} ({}) matches what was last applied.",
            resolved.desired.name,
            resolved.desired.environment
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (desired, graph) = remediation(
        &resolved.target,
        (&resolved.desired, &resolved.graph),
        check,
        args.include_pending,
    )?;
    let job = Job {
        desired,
        graph,
        operation: Operation::Remediate(limits),
        rollback: None,
        title: "Remediation",
    };
    execute(
        global,
        &args.flags,
        &resolved.target,
        &resolved.desired,
        job,
    )
}

fn acknowledge(global: &GlobalArgs, args: AcknowledgeArgs) -> anyhow::Result<ExitCode> {
    let id = ComponentId::try_from(args.component.clone())
        .map_err(|e| anyhow::anyhow!("--component: {e}"))?;
    let Some((resolved, check)) = check(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let known = check.applied.components.contains_key(&id);
    if !known {
        let ids: Vec<String> = check
            .applied
            .components
            .keys()
            .map(ToString::to_string)
            .collect();
        let hint = suggest(&args.component, ids.iter().map(String::as_str))
            .map_or_else(String::new, |s| format!("; did you mean `{s}`?"));
        anyhow::bail!(
            "{} ({}) has no applied component `{id}`{hint}",
            resolved.desired.name,
            resolved.desired.environment
        );
    }
    let Some(drifted) = check.report.drifted.iter().find(|c| c.component == id) else {
        say!("{id} has not drifted: nothing to acknowledge.");
        return Ok(ExitCode::SUCCESS);
    };
    let kind = Kind::from_recorded(&drifted.kind).ok_or_else(|| {
        anyhow::anyhow!("{id} is a {}, which panka cannot write back", drifted.kind)
    })?;
    let mut chosen: Vec<(&str, &serde_json::Value)> = Vec::new();
    let mut by_hand: Vec<&str> = Vec::new();
    for f in &drifted.findings {
        if args.field.as_ref().is_some_and(|want| *want != f.field) {
            continue;
        }
        match &f.actual {
            Some(FieldValue::Known(v)) if target(kind, &f.field, v).is_some() => {
                chosen.push((&f.field, v));
            }
            _ => by_hand.push(&f.field),
        }
    }
    if let Some(field) = &args.field {
        anyhow::ensure!(
            !by_hand.is_empty() || !chosen.is_empty(),
            "{id} has no drift in `{field}`; `panka drift detect` lists what drifted"
        );
        anyhow::ensure!(
            by_hand.is_empty(),
            "panka cannot write `{field}` of {id} ({kind}) back to the repository; edit its YAML by hand"
        );
    }
    let root = repo_root(global)?;
    let tree = read_stack(&root, &resolved.desired.name)
        .map_err(|ds| anyhow::anyhow!("{}", ds.first()))?;
    let edits = acknowledge_edits(
        &tree,
        &resolved.desired.name,
        &resolved.desired.environment,
        &id,
        kind,
        &chosen,
    )
    .map_err(|d| anyhow::anyhow!("{d}"))?;
    for e in &edits {
        say_raw!("{}", e.unified_diff());
    }
    if !by_hand.is_empty() {
        eprintln!(
            "Not written back (edit the YAML by hand if they should stay): {}",
            by_hand.join(", ")
        );
    }
    if edits.is_empty() {
        if chosen.is_empty() {
            say!("Nothing of {id}'s drift can be written back by panka.");
        } else {
            say!("The repository already says what AWS holds for {id}.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for e in edits.iter().filter(|e| !e.path.contains("/environments/")) {
        say!(
            "Note: {} is the base of every environment; those that do not override the setting change too.",
            e.path
        );
    }
    if args.write {
        for e in &edits {
            std::fs::write(root.join(&*e.path), &e.after)
                .with_context(|| format!("failed to write {}", e.path))?;
            say!("Wrote {}", e.path);
        }
        if by_hand.is_empty() {
            say!("Commit the change, then `panka apply`: AWS already matches, so it only records the new spec as applied, and the drift is gone.");
        } else {
            say!(
                "Commit the change; the fields not written back still differ from the repository."
            );
        }
    } else {
        say!("\nRe-run with --write to change these files.");
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as the user guides show it.
pub fn report_text(report: &DriftReport) -> String {
    let scope = report
        .service
        .as_ref()
        .map_or_else(|| report.stack.clone(), |s| format!("{}/{s}", report.stack));
    let mut out = format!("Drift Detection: {scope} ({})\n", report.environment);
    out.push_str(&format!(
        "Checked {} components at {}\n",
        report.checked,
        recorded_time(&report.checked_at)
    ));
    for c in &report.drifted {
        out.push_str(&format!(
            "\n⚠ {}: {} ({})\n",
            c.severity, c.component, c.kind
        ));
        out.push_str("  Desired state (last applied):\n");
        for f in &c.findings {
            out.push_str(&format!("    {}: {}\n", f.field, value(f.desired.as_ref())));
        }
        out.push_str("  Actual state:\n");
        for f in &c.findings {
            out.push_str(&format!(
                "    {}: {}   ← drift ({})\n",
                f.field,
                value(f.actual.as_ref()),
                f.severity
            ));
        }
        let causes: Vec<&str> = unique(c.findings.iter().map(|f| f.likely_cause.as_str()));
        out.push_str(&format!("  Likely cause: {}\n", causes.join("; ")));
        let first = c
            .findings
            .iter()
            .map(|f| f.detected_at.as_str())
            .min()
            .unwrap_or("");
        out.push_str(&format!("  Detected: {}\n", recorded_time(first)));
    }
    out.push('\n');
    if report.drifted.is_empty() {
        out.push_str("✓ All components match desired state\n");
    } else {
        out.push_str("✓ All other components match desired state\n");
    }
    if !report.ignored.is_empty() {
        out.push_str(&format!(
            "  ({} expected difference{} ignored by drift.ignore: {})\n",
            report.ignored.len(),
            if report.ignored.len() == 1 { "" } else { "s" },
            report.ignored.join(", ")
        ));
    }
    if !report.pending.is_empty() {
        out.push_str(&format!(
            "\nNot drift — repository changes not applied yet (see `panka plan`): {}\n",
            report
                .pending
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if report.has_drift() {
        out.push_str(
            "\nActions:\n  panka drift remediate …     restore what was last applied\n  panka drift acknowledge …   keep what AWS holds: change the repository to it\n  drift.ignore in StackInfra  expect this difference from now on\n",
        );
    }
    out
}

fn value(v: Option<&FieldValue>) -> String {
    v.map_or_else(|| "(none)".to_owned(), FieldValue::display)
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}
