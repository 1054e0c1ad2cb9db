//! `panka plan`, `panka apply` and `panka destroy`: resolve the repository, open the session of
//! the stack and hand the desired stack to its engine; render what it reports. The step loop and
//! Ctrl-C handling of an apply are the front-end's; everything else is the session's.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use panka_controller::engine::{EngineError, Refusal, RollbackOf};
use panka_controller::lock::format_epoch;
use panka_controller::session::{self, ApprovalGate, Limits, Operation, Target};
use panka_core::graph::Graph;
use panka_core::model::DesiredStack;
use panka_core::plan::{Action, ComponentPlan, Plan};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{open_session, resolve_checked_target, resolve_target, runtime, Resolved, TargetArgs};
use crate::app::{GlobalArgs, OutputChoice, OutputFormat};
use crate::progress::progress_for;
use crate::render::print_data;
use crate::render::{say, say_raw};

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
    #[command(flatten)]
    pub flags: ApplyFlags,
    /// Apply although a rollback pinned the stack (or service), and clear the pin.
    #[arg(long)]
    pub unpin: bool,
}

/// What every changing command (apply, destroy, drift remediate, rollback) accepts.
#[derive(Debug, Args)]
pub struct ApplyFlags {
    /// Do not ask for approval.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow replacing or deleting RDS, DynamoDB, S3 and ElastiCache components (data loss).
    #[arg(long)]
    pub allow_destroy: bool,
    /// How long to wait for a lock held by someone else, e.g. `5m` or `90s` (0: fail at once,
    /// showing the holder).
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = crate::app::parse_duration)]
    pub lock_timeout: Duration,
    /// How long to wait for each component to become healthy, e.g. `15m` or `1h30m`.
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = crate::app::parse_duration)]
    pub health_timeout: Duration,
}

/// Runs `panka plan`.
pub fn plan(global: &GlobalArgs, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let Some(Resolved {
        desired,
        graph,
        target,
    }) = resolve_checked_target(global, &args.target)?
    else {
        return Ok(ExitCode::FAILURE);
    };
    let prepared = runtime()?.block_on(async {
        let session = open_session(global, &desired).await?;
        anyhow::Ok(session.plan(&target, &desired, &graph).await?)
    })?;
    match global.output {
        OutputFormat::Table if global.output_choice == OutputChoice::Markdown => say_raw!(
            "{}",
            panka_core::plan::markdown(&prepared.plan, desired.version())
        ),
        OutputFormat::Table => say_raw!("{}", render_plan(&prepared.plan, &desired, "Deployment")),
        OutputFormat::Json | OutputFormat::Yaml => {
            print_data(global.output, &serde_json::to_value(&prepared.plan)?)?
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
    anyhow::ensure!(
        args.flags.yes,
        "destroy deletes {what}; pass --yes to confirm"
    );
    run_apply(global, args, true)
}

fn run_apply(global: &GlobalArgs, args: ApplyArgs, destroy: bool) -> anyhow::Result<ExitCode> {
    // Policies judge what is to be deployed; a destroy deploys nothing, and must never be
    // blocked by a rule about the components it removes.
    let resolved = if destroy {
        resolve_target(global, &args.target)?
    } else {
        resolve_checked_target(global, &args.target)?
    };
    let Some(Resolved {
        desired,
        graph,
        mut target,
    }) = resolved
    else {
        return Ok(ExitCode::FAILURE);
    };
    target.unpin = args.unpin;
    let limits = Limits {
        allow_destroy: args.flags.allow_destroy,
        health_timeout: args.flags.health_timeout,
    };
    let job = if destroy {
        let (emptied, graph) =
            session::desired_for_destroy(desired.clone(), target.service.as_deref());
        Job {
            desired: emptied,
            graph,
            operation: Operation::Destroy(limits),
            rollback: None,
            title: "Destroy",
        }
    } else {
        Job {
            desired: desired.clone(),
            graph,
            operation: Operation::Apply(limits),
            rollback: None,
            title: "Deployment",
        }
    };
    execute(global, &args.flags, &target, &desired, job)
}

/// One changing run: what to apply, as what, and how the front-end names it.
pub(crate) struct Job {
    /// The desired stack to apply.
    pub desired: DesiredStack,
    /// Its waves.
    pub graph: Graph,
    /// What the release records.
    pub operation: Operation,
    /// For a rollback: its target and the pin.
    pub rollback: Option<RollbackOf>,
    /// `Deployment`, `Destroy`, `Remediation`, `Rollback`: the plan's title and the summary's.
    pub title: &'static str,
}

/// Plans `job`, asks for approval where `repository`'s policy needs it, applies it wave by
/// wave under the lock, and prints what happened. `repository` is the stack as the repository
/// resolves it: its approval and rollback policies apply whatever the job re-applies.
pub(crate) fn execute(
    global: &GlobalArgs,
    flags: &ApplyFlags,
    target: &Target,
    repository: &DesiredStack,
    job: Job,
) -> anyhow::Result<ExitCode> {
    let gate = session::approval_gate(repository, flags.yes, std::io::stdin().is_terminal());
    if gate == ApprovalGate::Closed {
        anyhow::bail!(
            "{} needs approval and there is no terminal to ask on; re-run with --yes to approve",
            repository.environment
        );
    }
    let table = global.output == OutputFormat::Table;
    let progress = progress_for(table);
    let cancel = CancellationToken::new();
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        watch_signals(&cancel);
        let session = open_session(global, &job.desired).await?;
        let engine = session.engine(flags.lock_timeout)?;
        let mut options = session.options_for(target, job.operation);
        options.rollback.clone_from(&job.rollback);
        let run = engine.run(&job.desired, options, cancel.clone());
        // The plan is shown, and approved, before the lock is taken: nobody waits on a person.
        let prepared = engine.plan(&run, &job.desired, &job.graph).await?;
        if cancel.is_cancelled() {
            return Ok(Outcome::Failed(EngineError::Interrupted));
        }
        // Refused plans are refused before anyone is asked to approve them; a pinned stack
        // before its plan is even shown (nothing of it would be applied).
        let allowed = prepared.allowed(run.options());
        if let Err(e @ EngineError::Refused(Refusal::Pinned(_))) = allowed {
            return Ok(Outcome::Failed(e));
        }
        progress.planned(&prepared.plan);
        if table {
            say_raw!("{}", render_plan(&prepared.plan, &job.desired, job.title));
        }
        if let Err(e) = allowed {
            return Ok(Outcome::Failed(e));
        }
        if prepared.plan.has_changes()
            && gate == ApprovalGate::Ask
            && !confirm(&repository.environment)
        {
            return anyhow::Ok(Outcome::Declined);
        }
        if cancel.is_cancelled() {
            return Ok(Outcome::Failed(EngineError::Interrupted));
        }
        let approval = prepared.approve();
        let applying = match engine
            .apply(&run, &job.desired, &job.graph, &approval, &progress)
            .await
        {
            Ok(Ok(applying)) => applying,
            Ok(Err(report)) => return Ok(Outcome::Applied(Box::new(report), run.calls().clone())),
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        let report = session::step_until_done(applying, &cancel).await;
        Ok(match report {
            Ok(report) => match job.operation {
                Operation::Apply(limits) if report.release.is_some() => {
                    let failed = |failure| session::FailedApply {
                        engine: &engine,
                        target,
                        repository,
                        prepared: &prepared,
                        failure,
                        limits,
                    };
                    match bake(&session, repository, &report, &cancel, table).await {
                        Ok(None) => Outcome::Applied(Box::new(report), run.calls().clone()),
                        Err(EngineError::Interrupted) => {
                            Outcome::BakeInterrupted(Box::new(report), run.calls().clone())
                        }
                        Ok(Some(reason)) => {
                            let e = EngineError::BakeFailed(reason);
                            let baked = report.release.as_ref().map_or("", |r| r.id.as_str());
                            let note = session
                                .roll_back_release(failed(&e), baked, &cancel, &progress)
                                .await;
                            Outcome::Failed(match note {
                                Some(note) => EngineError::RolledBack {
                                    failure: Box::new(e),
                                    note,
                                },
                                None => e,
                            })
                        }
                        Err(e) => Outcome::Failed(e),
                    }
                }
                _ => Outcome::Applied(Box::new(report), run.calls().clone()),
            },
            Err(e) => {
                let back = match job.operation {
                    Operation::Apply(limits) => {
                        let failed = session::FailedApply {
                            engine: &engine,
                            target,
                            repository,
                            prepared: &prepared,
                            failure: &e,
                            limits,
                        };
                        session
                            .roll_back_failed_wave(failed, &cancel, &progress)
                            .await
                    }
                    _ => None,
                };
                Outcome::Failed(match back {
                    Some(note) => EngineError::RolledBack {
                        failure: Box::new(e),
                        note,
                    },
                    None => e,
                })
            }
        })
    });
    progress.finish();
    report_outcome(global, result?, &job)
}

/// The bake period of a release that changed something, when the stack asks for one: watches
/// the load balancer's metrics of the services it changed, from now (the end of the last
/// wave). The crossed threshold's reason, if one was.
async fn bake(
    session: &session::Session,
    repository: &DesiredStack,
    report: &panka_controller::engine::ApplyReport,
    cancel: &CancellationToken,
    table: bool,
) -> Result<Option<String>, EngineError> {
    let Some(plan) = session.bake_plan(repository, report).await? else {
        return Ok(None);
    };
    if table {
        say!(
            "\nBaking for {}: watching {} behind the load balancer (roll back above {}% 5XX or {} ms p99)…",
            panka_controller::engine::run::human(plan.period),
            plan.targets
                .iter()
                .map(|t| t.component.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            plan.thresholds.error_rate_percent,
            plan.thresholds.p99_latency_ms
        );
    }
    let since = std::time::SystemTime::now();
    let measured = std::sync::atomic::AtomicBool::new(false);
    let on_look = |looks: &[session::BakeLook]| {
        if looks
            .iter()
            .any(|l| l.verdict != panka_core::bake::Verdict::NoData)
        {
            measured.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let crossed = session
        .bake(
            &plan.targets,
            since,
            plan.period,
            &plan.thresholds,
            cancel,
            &on_look,
        )
        .await?;
    if table && crossed.is_none() {
        if measured.load(std::sync::atomic::Ordering::Relaxed) {
            say!("✓ Bake period passed");
        } else {
            say!("✓ Bake period passed with no traffic seen: nothing was judged");
        }
    }
    Ok(crossed)
}

/// Ctrl-C or SIGTERM: no new mutation starts, what is in flight finishes, state and the
/// release are written and the lock is released; a re-run carries on.
fn watch_signals(cancel: &CancellationToken) {
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        interrupted().await;
        on_signal.cancel();
        eprintln!(
            "\nInterrupted: finishing the change in flight, then recording state and releasing the lock (Ctrl-C again to quit at once)"
        );
        // A second signal is a person who will not wait: leave now. State holds every
        // finished component and the lease runs out on its own.
        interrupted().await;
        eprintln!("quit: the lock is released when its lease runs out (2 min); run `panka unlock` to free it sooner");
        std::process::exit(130);
    });
}

/// Prints how a run ended and gives the exit code.
fn report_outcome(global: &GlobalArgs, outcome: Outcome, job: &Job) -> anyhow::Result<ExitCode> {
    let table = global.output == OutputFormat::Table;
    let desired = &job.desired;
    match outcome {
        Outcome::BakeInterrupted(report, calls) => {
            report_outcome(global, Outcome::Applied(report, calls), job)?;
            eprintln!("Bake interrupted: the release stands, not watched to the end");
            Ok(ExitCode::from(130))
        }
        Outcome::Declined => {
            say!("{} cancelled; nothing changed.", job.title);
            Ok(ExitCode::FAILURE)
        }
        Outcome::Applied(report, calls) => {
            if !table {
                print_data(
                    global.output,
                    &json!({
                        "plan": report.plan,
                        "release": report.release,
                        "outputs": report.outputs.iter().map(|(k, v)| (k.to_string(), v)).collect::<BTreeMap<_, _>>(),
                        "awsCalls": calls.total(),
                        "mutatingAwsCalls": calls.mutating(),
                    }),
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            if report.release.is_none() {
                say!(
                    "No changes. {} ({}) matches {}.",
                    desired.name,
                    desired.environment,
                    match job.operation {
                        Operation::Remediate(_) => "the applied spec",
                        Operation::Rollback(_) => "the release rolled back to",
                        _ => "the repository",
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            say!("────────────────────────────────────────────────");
            say!("✓ {} successful! ({:.1?})", job.title, report.duration);
            if let Some(r) = &report.release {
                say!("Release: {}", r.id);
                if let Some(v) = &r.version {
                    say!("Version: {v}");
                }
                say!("Deployed by: {}", r.actor);
            }
            let outputs: Vec<_> = report
                .outputs
                .iter()
                .filter(|(id, o)| !o.is_empty() && !id.service.starts_with('_'))
                .collect();
            // Outputs are news after an apply; a remediation or rollback changes none of them.
            let applied = matches!(job.operation, Operation::Apply(_));
            if applied && !outputs.is_empty() {
                say!("\nOutputs:");
                for (id, o) in outputs {
                    for (k, v) in o {
                        say!("  {id}.{k}: {v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Failed(EngineError::Interrupted) => {
            eprintln!("{}", EngineError::Interrupted);
            Ok(ExitCode::from(130))
        }
        Outcome::Failed(EngineError::Lock(e)) => {
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
        Outcome::Failed(e) => Err(e.into()),
    }
}

/// How an apply command ended.
enum Outcome {
    /// Applied and recorded, but Ctrl-C stopped the bake period before its end.
    BakeInterrupted(
        Box<panka_controller::engine::ApplyReport>,
        panka_controller::driver::CallCounter,
    ),
    Declined,
    Applied(
        Box<panka_controller::engine::ApplyReport>,
        panka_controller::driver::CallCounter,
    ),
    Failed(EngineError),
}

/// Asks on the terminal; only a typed `yes` approves.
fn confirm(environment: &str) -> bool {
    say_raw!("\nApply these changes to {environment}? Only `yes` is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim() == "yes"
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
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
pub fn render_plan(plan: &Plan, desired: &DesiredStack, title: &str) -> String {
    let destroy = title == "Destroy";
    let scope = plan
        .service
        .as_ref()
        .map(|s| format!(" service {s}"))
        .unwrap_or_default();
    let mut out = format!(
        "{title} Plan: {} ({}){scope}\n",
        plan.stack, plan.environment
    );
    if let Some(v) = desired.version().filter(|_| !destroy) {
        out.push_str(&format!("Version: {v}\n"));
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
