//! `panka plan`, `panka apply` and `panka destroy`: resolve the repository, then hand the desired
//! stack to the engine and render what it reports.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use panka_controller::aws::{load_sdk_config, AwsSettings};
use panka_controller::driver::Ctx;
use panka_controller::engine::{Engine, EngineError, EngineOptions, Event, Progress};
use panka_controller::graph::Graph;
use panka_controller::lock::{format_epoch, LockOptions, Locker};
use panka_controller::model::DesiredStack;
use panka_controller::plan::{Action, ComponentPlan, Plan};
use panka_controller::validate::{load_stack, plan_input};
use serde_json::json;

use super::backend::{load_config, open, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{print_json, problems};

/// What plan, apply and destroy share.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// Only this service (its lock scope); other services' outputs are read from state.
    #[arg(long)]
    pub service: Option<String>,
    /// Variable override, `NAME=VALUE`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Take over same-named AWS resources that lack panka's tags.
    #[arg(long)]
    pub adopt: bool,
}

/// Arguments of `panka plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Exit 2 when the plan has changes (0: none, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// Arguments of `panka apply` and `panka destroy`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Do not ask for approval.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow replacing or deleting RDS, DynamoDB, S3 and ElastiCache components (data loss).
    #[arg(long)]
    pub allow_destroy: bool,
    /// Seconds to wait for a lock held by someone else (0: fail at once, showing the holder).
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
    /// Seconds to wait for each component to become healthy.
    #[arg(long, default_value_t = 900)]
    pub health_timeout: u64,
}

/// Resolves the repository; prints problems and returns `None` when it is invalid (no AWS call
/// is made then).
pub(crate) fn resolve_target(
    global: &GlobalArgs,
    target: &TargetArgs,
) -> anyhow::Result<Option<(DesiredStack, Graph, String)>> {
    let root = super::repo_root(global)?;
    let options = super::resolve_options(&target.vars)?;
    let loaded = match load_stack(&root, &target.stack) {
        Ok(l) => l,
        Err((ds, sources)) => {
            eprintln!("{}", problems(&ds.iter().collect::<Vec<_>>(), &sources));
            return Ok(None);
        }
    };
    match plan_input(&loaded, &target.environment, &options) {
        Ok((d, g)) => {
            if let Some(svc) = &target.service {
                anyhow::ensure!(
                    d.services.contains_key(svc),
                    "stack `{}` has no service `{svc}`",
                    d.name
                );
            }
            Ok(Some((d, g, root.display().to_string())))
        }
        Err(ds) => {
            eprintln!(
                "{}",
                problems(&ds.iter().collect::<Vec<_>>(), &loaded.sources)
            );
            Ok(None)
        }
    }
}

/// The git commit of the repository, when it is a git checkout (`+dirty` with local changes).
fn git_commit(root: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "HEAD"])?;
    let dirty = run(&["status", "--porcelain", "--", "stacks"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    })
}

pub(crate) async fn target_engine(
    global: &GlobalArgs,
    desired: &DesiredStack,
    target: &TargetArgs,
    lock_wait: Duration,
) -> anyhow::Result<Engine> {
    let config = load_config(global)?;
    let backends = open(&config).await;
    let sdk = load_sdk_config(&AwsSettings {
        profile: config.aws.profile.clone(),
        region: Some(desired.provider.region.clone()),
        endpoint_url: None,
    })
    .await;
    let locker = Locker::new(
        backends.locks.clone(),
        LockOptions {
            wait: lock_wait,
            ..LockOptions::default()
        },
    )?;
    Ok(Engine::new(
        Ctx::new(sdk, desired, target.adopt),
        backends,
        locker,
    ))
}

pub(crate) fn engine_options(target: &TargetArgs, root: &str) -> EngineOptions {
    EngineOptions {
        service: target.service.clone(),
        adopt: target.adopt,
        commit: git_commit(Path::new(root)),
        ..EngineOptions::default()
    }
}

/// Runs `panka plan`.
pub fn plan(global: &GlobalArgs, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let Some((desired, graph, root)) = resolve_target(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let opts = engine_options(&args.target, &root);
    let prepared = runtime()?.block_on(async {
        let engine = target_engine(global, &desired, &args.target, Duration::ZERO).await?;
        anyhow::Ok(engine.prepare(&desired, &graph, &opts).await?)
    })?;
    match global.output {
        OutputFormat::Table => print!("{}", render_plan(&prepared.plan, &desired, false)),
        OutputFormat::Json | OutputFormat::Yaml => {
            print_json(&serde_json::to_value(&prepared.plan)?)?
        }
    }
    Ok(if args.detailed_exitcode && prepared.plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `panka apply`.
pub fn apply(global: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    run_apply(global, args, false)
}

/// Runs `panka destroy`: applies an empty desired state to the stack (or service).
pub fn destroy(global: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let what = match &args.target.service {
        Some(s) => format!(
            "every resource of service `{s}` in {}",
            args.target.environment
        ),
        None => format!(
            "every resource of stack `{}` in {}",
            args.target.stack, args.target.environment
        ),
    };
    anyhow::ensure!(args.yes, "destroy deletes {what}; pass --yes to confirm");
    run_apply(global, args, true)
}

fn run_apply(global: &GlobalArgs, args: ApplyArgs, destroy: bool) -> anyhow::Result<ExitCode> {
    let Some((mut desired, graph, root)) = resolve_target(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let needs_approval = desired
        .infra
        .approval
        .as_ref()
        .is_some_and(|a| a.environments.contains(&desired.environment));
    let interactive = std::io::stdin().is_terminal();
    if needs_approval && !args.yes && !interactive {
        anyhow::bail!(
            "{} needs approval and there is no terminal to ask on; re-run with --yes to approve",
            desired.environment
        );
    }
    let table = global.output == OutputFormat::Table;
    if destroy {
        let scope = args.target.service.clone();
        desired
            .components
            .retain(|id, _| scope.as_ref().is_some_and(|s| &id.service != s));
    }
    let graph = if destroy {
        Graph {
            waves: Vec::new(),
            edges: Vec::new(),
        }
    } else {
        graph
    };
    let mut opts = engine_options(&args.target, &root);
    opts.allow_destroy = args.allow_destroy;
    opts.health_timeout = Duration::from_secs(args.health_timeout);
    let yes = args.yes;
    let env = desired.environment.clone();
    let desired_ref = &desired;
    let mut approve = move |plan: &Plan| -> bool {
        if table {
            print!("{}", render_plan(plan, desired_ref, destroy));
        }
        if yes || !needs_approval {
            return true;
        }
        print!("\nApply these changes to {env}? Only `yes` is accepted: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        answer.trim() == "yes"
    };
    let progress = Printer {
        table,
        waiting: std::sync::Mutex::new(BTreeMap::new()),
    };
    let result = runtime()?.block_on(async {
        let engine = target_engine(
            global,
            &desired,
            &args.target,
            Duration::from_secs(args.lock_timeout),
        )
        .await?;
        let report = engine
            .apply(&desired, &graph, &opts, &mut approve, &progress)
            .await;
        anyhow::Ok((report, engine.ctx().calls.clone()))
    })?;
    let (report, calls) = result;
    match report {
        Ok(None) => {
            println!("Apply cancelled; nothing changed.");
            Ok(ExitCode::FAILURE)
        }
        Ok(Some(report)) => {
            if !table {
                print_json(&json!({
                    "plan": report.plan,
                    "release": report.release,
                    "outputs": report.outputs.iter().map(|(k, v)| (k.to_string(), v)).collect::<BTreeMap<_, _>>(),
                    "awsCalls": calls.total(),
                    "mutatingAwsCalls": calls.mutating(),
                }))?;
                return Ok(ExitCode::SUCCESS);
            }
            if report.release.is_none() {
                println!(
                    "No changes. {} ({}) matches the repository.",
                    desired.name, desired.environment
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("────────────────────────────────────────────────");
            println!(
                "✓ {} successful! ({:.1?})",
                if destroy { "Destroy" } else { "Deployment" },
                report.duration
            );
            if let Some(r) = &report.release {
                println!("Release: {}", r.id);
                if let Some(v) = &r.version {
                    println!("Version: {v}");
                }
                println!("Deployed by: {}", r.actor);
            }
            let outputs: Vec<_> = report
                .outputs
                .iter()
                .filter(|(id, o)| !o.is_empty() && !id.service.starts_with('_'))
                .collect();
            if !destroy && !outputs.is_empty() {
                println!("\nOutputs:");
                for (id, o) in outputs {
                    for (k, v) in o {
                        println!("  {id}.{k}: {v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::Lock(e)) => {
            let mut msg = format!("{e}");
            if let Some(h) = e.holder() {
                msg.push_str(&format!(
                    "\n  Lock key:  {}\n  Held by:   {}\n  Operation: {}\n  Since:     {}\n  Expires:   {}",
                    h.key(),
                    h.locked_by,
                    h.operation,
                    format_epoch(h.locked_at),
                    format_epoch(h.expires_at)
                ));
            }
            anyhow::bail!("{msg}")
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints apply progress.
struct Printer {
    table: bool,
    /// Last waiting status printed per component, so a poll that changes nothing prints nothing.
    waiting: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Progress for Printer {
    fn event(&self, event: Event<'_>) {
        if !self.table {
            return;
        }
        match event {
            Event::LockWaiting(h) => println!(
                "Waiting for lock held by {} ({} since {})…",
                h.locked_by,
                h.operation,
                format_epoch(h.locked_at)
            ),
            Event::LockAcquired(h) => println!("Lock acquired: {} (fence {})", h.key(), h.fence),
            Event::WaveStarted { number: 0, .. } => println!("\nStack resources"),
            Event::WaveStarted { number, components } if components > 0 => {
                println!("\nWave {number} ({components} changing)")
            }
            Event::WaveStarted { .. } => {}
            Event::ComponentStarted(p) => {
                println!("├── {} {} ({})…", verb(&p.action), p.id, p.kind)
            }
            Event::Waiting(id, status) => {
                let changed = self.waiting.lock().map_or(true, |mut seen| {
                    seen.insert(id.to_string(), status.to_string()).as_deref() != Some(status)
                });
                if changed {
                    println!("│   {id}: waiting ({status})");
                }
            }
            Event::ComponentDone(p, took, _) => {
                println!("│   ✓ {} {} ({:.1?})", p.id, done(&p.action), took)
            }
            Event::ComponentFailed(p, why) => println!("│   ✗ {} failed: {why}", p.id),
            Event::StateSaved(_) => {}
        }
    }
}

fn verb(a: &Action) -> &'static str {
    match a {
        Action::Create => "Creating",
        Action::Update => "Updating",
        Action::Replace { .. } => "Replacing",
        Action::Delete => "Deleting",
        Action::NoOp | Action::Conflict { .. } => "Checking",
    }
}

fn done(a: &Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace { .. } => "replaced",
        Action::Delete => "deleted",
        Action::NoOp | Action::Conflict { .. } => "unchanged",
    }
}

fn symbol(a: &Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace { .. } => "±",
        Action::Delete => "-",
        Action::NoOp => " ",
        Action::Conflict { .. } => "!",
    }
}

fn label(a: &Action) -> String {
    match a {
        Action::Create => "CREATE".into(),
        Action::Update => "UPDATE".into(),
        Action::Replace { reason } => format!("REPLACE ({reason})"),
        Action::Delete => "DELETE".into(),
        Action::NoOp => "no change".into(),
        Action::Conflict { reason } => format!("CONFLICT: {reason}"),
    }
}

fn component_lines(p: &ComponentPlan, out: &mut String) {
    out.push_str(&format!(
        "  {} {} ({})  {}{}\n",
        symbol(&p.action),
        p.id,
        p.kind,
        label(&p.action),
        if p.drift { "  [drift]" } else { "" }
    ));
    for d in &p.diffs {
        let old = d
            .old
            .as_ref()
            .map_or_else(|| "(none)".to_string(), |v| v.display());
        let new = d
            .new
            .as_ref()
            .map_or_else(|| "(none)".to_string(), |v| v.display());
        out.push_str(&format!("      {}: {old} → {new}\n", d.field));
    }
}

/// The plan as text, like the user guides show it.
pub fn render_plan(plan: &Plan, desired: &DesiredStack, destroy: bool) -> String {
    let scope = plan
        .service
        .as_ref()
        .map(|s| format!(" service {s}"))
        .unwrap_or_default();
    let mut out = format!(
        "{} Plan: {} ({}){scope}\n",
        if destroy { "Destroy" } else { "Deployment" },
        plan.stack,
        plan.environment
    );
    if let Some(v) = desired.version().filter(|_| !destroy) {
        out.push_str(&format!("Version: {v}\n"));
    }
    if !plan.shared.is_empty() {
        out.push_str("\nStack resources (before wave 1):\n");
        for p in &plan.shared {
            component_lines(p, &mut out);
        }
    }
    for (n, wave) in plan.waves.iter().enumerate() {
        let parallel = if wave.len() > 1 { ", parallel" } else { "" };
        out.push_str(&format!(
            "\nWave {} ({} component{}{parallel}):\n",
            n + 1,
            wave.len(),
            if wave.len() == 1 { "" } else { "s" }
        ));
        for p in wave {
            component_lines(p, &mut out);
        }
    }
    if !plan.deletions.is_empty() {
        out.push_str(if destroy {
            "\nTo delete (dependants first):\n"
        } else {
            "\nRemoved from the repository:\n"
        });
        for p in &plan.deletions {
            component_lines(p, &mut out);
        }
    }
    let s = &plan.summary;
    out.push_str(&format!(
        "\nSummary: {} to create, {} to update, {} to replace, {} to delete, {} unchanged{}\n",
        s.create,
        s.update,
        s.replace,
        s.delete,
        s.unchanged,
        if s.conflict > 0 {
            format!(", {} conflicts", s.conflict)
        } else {
            String::new()
        }
    ));
    let delta = plan
        .previous_cost_usd
        .map(|prev| plan.cost.monthly_usd - prev);
    out.push_str(&format!(
        "Estimated cost: ${:.0}/month{} (fixed costs only; usage-priced services not included)\n",
        plan.cost.monthly_usd,
        delta
            .map(|d| format!(
                " ({}{:.0} vs last applied)",
                if d >= 0.0 { "+$" } else { "-$" },
                d.abs()
            ))
            .unwrap_or_default()
    ));
    let dangerous: Vec<String> = plan.dangerous().map(|p| p.id.to_string()).collect();
    if dangerous.is_empty() {
        out.push_str("✓ No dangerous operations\n");
    } else {
        out.push_str(&format!(
            "⚠ Dangerous (data loss, needs --allow-destroy): {}\n",
            dangerous.join(", ")
        ));
    }
    out
}
