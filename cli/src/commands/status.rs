//! `panka status`, `panka show` and `panka list`: what is deployed, read from state and AWS.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Args;
use panka_controller::session::{StatusLook, StatusSummary, Target};
use panka_controller::state::{ComponentState, Release, ReleaseKind};
use panka_controller::validate::load_stack;
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{ComponentPlan, Health, Observation};
use panka_core::resolve;
use panka_core::sync::{short_commit, Phase, SyncStatus};
use serde_json::json;

use super::{
    cancel_on_signal, open_session, repo_root, resolve_target, runtime, Resolved, TargetArgs,
};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{ago, indent, mark, print_data, recorded_time, table};
use crate::render::{say, say_raw};

/// Arguments of `panka status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Redraw until every component is settled (nothing still being created or rolled out, no
    /// apply holding the lock), or until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// How often `status --follow` looks again.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Arguments of `panka show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Component, `service/component`.
    #[arg(long, short = 'c')]
    pub component: String,
}

/// Arguments of `panka list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this stack.
    #[arg(long, short = 's')]
    pub stack: Option<String>,
}

fn health_word(h: &Health) -> String {
    match h {
        Health::Healthy => "Healthy".into(),
        Health::Progressing => "Progressing".into(),
        Health::Degraded(why) => format!("Degraded: {why}"),
        Health::Missing => "Missing".into(),
    }
}

/// Runs `panka status`.
pub fn status(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(Resolved {
        desired,
        graph,
        target,
    }) = resolve_target(global, &args.target)?
    else {
        // The repository does not load here (a bad commit checked out, say): the controller's
        // record still says where the target stands.
        controller_record(global, &args.target)?;
        return Ok(ExitCode::FAILURE);
    };
    if args.follow {
        return follow(global, &target, &desired, &graph);
    }
    let summary = runtime()?.block_on(async {
        let session = open_session(global, &desired).await?;
        anyhow::Ok(session.status(&target, &desired, &graph).await?)
    })?;
    if global.output != OutputFormat::Table {
        print_data(global.output, &status_json(&summary))?;
        return Ok(ExitCode::SUCCESS);
    }
    say_raw!("{}", status_text(&summary, jiff::Timestamp::now()));
    Ok(if summary.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs `panka status --follow`: a look every [`FOLLOW_EVERY`] until the target is settled, each
/// one drawn over the last on a terminal, printed when it changed otherwise (one JSON or YAML
/// document per look with `--output`). Exit code as `status` once settled; 0 on Ctrl-C.
fn follow(
    global: &GlobalArgs,
    target: &Target,
    desired: &DesiredStack,
    graph: &Graph,
) -> anyhow::Result<ExitCode> {
    let redraw = global.output == OutputFormat::Table && std::io::stdout().is_terminal();
    let output = global.output;
    runtime()?.block_on(async {
        let cancel = cancel_on_signal();
        let session = open_session(global, desired).await?;
        let mut last = String::new();
        let mut on_look = |look: &StatusLook| {
            let frame = match output {
                OutputFormat::Table => follow_text(look, jiff::Timestamp::now()),
                OutputFormat::Json => format!("{}\n", follow_json(look)),
                OutputFormat::Yaml => crate::render::to_yaml(&follow_json(look))
                    .map_or_else(|e| format!("--- # {e:#}\n"), |doc| format!("---\n{doc}")),
            };
            if redraw {
                // Home and clear, as `watch` does: the look replaces the last one.
                say_raw!("\x1b[H\x1b[2J{frame}");
            } else if frame != last {
                say_raw!(
                    "{}{frame}",
                    if last.is_empty() || output != OutputFormat::Table {
                        ""
                    } else {
                        "\n"
                    }
                );
            }
            last = frame;
        };
        let settled = session
            .follow_status(target, desired, graph, FOLLOW_EVERY, &cancel, &mut on_look)
            .await?;
        Ok(match settled {
            Some(look) if !look.summary.healthy() => ExitCode::from(1),
            // Settled and healthy, or stopped with Ctrl-C: what the user asked to watch ended.
            _ => ExitCode::SUCCESS,
        })
    })
}

/// A look of `status --follow`: the status, then what it waits for or that it is settled.
fn follow_text(look: &StatusLook, now: jiff::Timestamp) -> String {
    use std::fmt::Write as _;
    let mut out = status_text(&look.summary, now);
    let progressing: Vec<String> = look
        .summary
        .components
        .iter()
        .filter(|c| c.observed.health == Health::Progressing)
        .map(|c| c.id.to_string())
        .collect();
    let mut waits: Vec<String> = look
        .locks
        .iter()
        .map(|l| {
            format!(
                "{} by {} (lock taken {})",
                l.operation,
                l.locked_by,
                ago(crate::render::epoch(l.locked_at), now)
            )
        })
        .collect();
    if !progressing.is_empty() {
        waits.push(format!("{} progressing", progressing.join(", ")));
    }
    out.push('\n');
    if waits.is_empty() {
        let _ = writeln!(
            out,
            "Settled: nothing is progressing and no apply holds the lock"
        );
    } else {
        let _ = writeln!(
            out,
            "Following (Ctrl-C to stop): waiting for {}",
            waits.join("; ")
        );
    }
    out
}

/// A look of `status --follow --output json|yaml`: the status document, the live locks and
/// whether it is settled.
fn follow_json(look: &StatusLook) -> serde_json::Value {
    let mut doc = status_json(&look.summary);
    let now = panka_controller::lock::now_epoch_secs();
    doc["locks"] = json!(look
        .locks
        .iter()
        .map(|l| crate::render::lock_json(l, now))
        .collect::<Vec<_>>());
    doc["settled"] = json!(look.settled());
    doc
}

/// Prints what the controller recorded of the target, when it manages it.
fn controller_record(global: &GlobalArgs, target: &TargetArgs) -> anyhow::Result<()> {
    let key = panka_controller::state::StateKey::new(&target.stack, &target.environment)?;
    let sync = runtime()?.block_on(async {
        let backends = super::open_backends(global).await?;
        anyhow::Ok(backends.state.sync(&key).await?)
    })?;
    if let Some(sync) = sync {
        eprintln!(
            "\n{} ({}) as the controller last saw it:\n{}",
            target.stack,
            target.environment,
            controller_line(&sync, jiff::Timestamp::now())
        );
    }
    Ok(())
}

/// What `status --output json|yaml` prints.
fn status_json(s: &StatusSummary) -> serde_json::Value {
    json!({
        "stack": s.stack,
        "environment": s.environment,
        "release": s.release.as_ref().map(release_summary),
        "pins": s.pins,
        "controller": s.sync,
        "pendingPlan": s.pending,
        "notes": s.notes,
        "drift": s.drift.as_ref().map(|d| json!({
            "checkedAt": d.checked_at,
            "drifted": d.drifted.len(),
            "severity": d.severity(),
            "staleSinceRelease": s.drift_is_stale(),
        })),
        "components": s.components.iter().map(|c| json!({
            "component": c.id.to_string(), "kind": c.kind, "status": c.observed.status,
            "health": health_word(&c.observed.health), "lastDeployed": c.last_deployed,
        })).collect::<Vec<_>>(),
    })
}

/// What `status` prints as a table: the scope, the last release, one row per component.
fn status_text(s: &StatusSummary, now: jiff::Timestamp) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let scope = s
        .service
        .clone()
        .unwrap_or_else(|| format!("stack {}", s.stack));
    let _ = writeln!(out, "Status: {scope} ({})", s.environment);
    if let Some(id) = &s.unfinished_release {
        let _ = writeln!(
            out,
            "Release {id} did not finish (interrupted); `panka apply` continues from the recorded state"
        );
    }
    if let Some(r) = &s.release {
        let _ = writeln!(
            out,
            "Last release: {}{} · version {} · by {} · {:?}",
            r.id,
            // Most releases are applies; only say so when it was something else.
            if r.kind == ReleaseKind::Apply {
                String::new()
            } else {
                format!(" ({})", r.kind)
            },
            r.version.as_deref().unwrap_or("-"),
            r.actor,
            r.outcome
        );
    }
    for (scope, pin) in &s.pins {
        let _ = writeln!(
            out,
            "📌 {scope} pinned to release {}{} by {} ({}); `panka resume` to roll forward again",
            pin.release,
            pin.version
                .as_ref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default(),
            pin.by,
            last_deployed(&pin.at, now)
        );
    }
    if let Some(sync) = &s.sync {
        let _ = writeln!(out, "{}", controller_line(sync, now));
    }
    for note in &s.notes {
        let _ = writeln!(out, "⚠ {note}");
    }
    if let Some(p) = &s.pending {
        let _ = writeln!(
            out,
            "⏸ Plan {} ({}, {} change{}{}) waits for approval: `panka approve -s {} -e {} --plan {}`",
            p.id,
            p.kind,
            p.changes.len(),
            if p.changes.len() == 1 { "" } else { "s" },
            p.commit
                .as_deref()
                .map(|c| format!(", commit {}", short_commit(c)))
                .unwrap_or_default(),
            s.stack,
            s.environment,
            p.id
        );
    }
    match &s.drift {
        Some(d) => {
            let found = match d.severity() {
                Some(worst) => format!(
                    "{} component{} drifted (worst {worst}); `panka drift detect` for details",
                    d.drifted.len(),
                    if d.drifted.len() == 1 { "" } else { "s" }
                ),
                None => "no drift".to_owned(),
            };
            let stale = s.drift_is_stale();
            let _ = writeln!(
                out,
                "Drift checked {}: {found}{}",
                last_deployed(&d.checked_at, now),
                if stale {
                    " (before the last release: run `panka drift detect` again)"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(out, "Drift never checked; `panka drift detect` checks it");
        }
    }
    out.push('\n');
    out.push_str(&table(
        ["", "COMPONENT", "KIND", "STATUS", "HEALTH", "LAST DEPLOYED"],
        s.components.iter().map(|c| {
            let o = &c.observed;
            [
                mark(o.health == Health::Healthy).to_owned(),
                c.id.to_string(),
                c.kind.to_owned(),
                if o.status.is_empty() { "-" } else { &o.status }.to_owned(),
                health_word(&o.health),
                c.last_deployed
                    .as_deref()
                    .map_or_else(|| "never".to_owned(), |t| last_deployed(t, now)),
            ]
        }),
    ));
    out
}

/// LAST DEPLOYED of a component: how long before `now` its recorded RFC 3339 time was
/// (`12 min ago`); the time as recorded when it is not one.
fn last_deployed(at: &str, now: jiff::Timestamp) -> String {
    at.parse::<jiff::Timestamp>()
        .map_or_else(|_| at.to_owned(), |then| ago(then, now))
}

/// The controller's word on a target: "Controller: synced to 3f2a1c0, drift checked 40 s ago,
/// remediated 1 change 2 min ago".
fn controller_line(sync: &SyncStatus, now: jiff::Timestamp) -> String {
    let commit = |c: &Option<String>| c.as_deref().map_or_else(|| "-".to_owned(), short_commit);
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let error = sync
        .error
        .as_ref()
        .map(|e| e.message.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let mut parts = vec![match sync.phase {
        Phase::Synced => format!("synced to {}", commit(&sync.synced_commit)),
        Phase::Progressing => format!("rolling out {}", commit(&sync.commit)),
        Phase::Drifted => format!(
            "{} drifted from what was applied (reported only: drift.mode)",
            plural(sync.drifted, "component")
        ),
        Phase::Locked => format!(
            "waiting for the lock held by {}",
            sync.locked_by.as_deref().unwrap_or("someone else")
        ),
        Phase::Pinned => format!(
            "pinned to release {} (repository at {})",
            sync.pinned_to.as_deref().unwrap_or("-"),
            commit(&sync.commit)
        ),
        Phase::AwaitingApproval => format!(
            "plan {} of {} waits for approval",
            sync.awaiting_approval.as_deref().unwrap_or("-"),
            commit(&sync.commit)
        ),
        Phase::Invalid => format!("commit {} is invalid: {error}", commit(&sync.commit)),
        Phase::Failed => format!("failing at {}: {error}", commit(&sync.commit)),
        Phase::Pending => "not reconciled yet".to_owned(),
        Phase::Suspended => format!(
            "suspended (spec.suspend): nothing applied or remediated (repository at {})",
            commit(&sync.commit)
        ),
    }];
    if let Some(at) = &sync.drift_checked_at {
        parts.push(format!("drift checked {}", last_deployed(at, now)));
    }
    if let Some(r) = &sync.last_remediation {
        parts.push(format!(
            "remediated {} {}",
            plural(r.changes, "change"),
            last_deployed(&r.at, now)
        ));
    }
    format!("Controller: {}", parts.join(", "))
}

/// What `status --output json` says of the last release: who, what and when, not the spec it
/// applied (`panka history --output json` has that).
fn release_summary(r: &Release) -> serde_json::Value {
    json!({
        "id": r.id,
        "kind": r.kind,
        "version": r.version,
        "commit": r.commit,
        "actor": r.actor,
        "startedAt": r.started_at,
        "finishedAt": r.finished_at,
        "outcome": r.outcome,
    })
}

/// Runs `panka show`.
pub fn show(global: &GlobalArgs, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let id = ComponentId::try_from(args.component.clone())
        .map_err(|e| anyhow::anyhow!("--component: {e}"))?;
    let Some(Resolved {
        desired,
        graph,
        mut target,
    }) = resolve_target(global, &args.target)?
    else {
        return Ok(ExitCode::FAILURE);
    };
    let component = desired
        .components
        .get(&id)
        .ok_or_else(|| super::no_component(&desired, &id))?
        .clone();
    // The component's service is the scope: its plan reads the other services from state.
    target.service = Some(id.service.clone());
    let prepared = runtime()?.block_on(async {
        let session = open_session(global, &desired).await?;
        anyhow::Ok(session.plan(&target, &desired, &graph).await?)
    })?;
    let o = prepared.observed.get(&id).cloned().unwrap_or_default();
    let recorded = prepared
        .state
        .as_ref()
        .and_then(|s| s.document.components.get(&id.to_string()).cloned());
    let planned = prepared.plan.all().find(|p| p.id == id).cloned();
    if global.output != OutputFormat::Table {
        print_data(
            global.output,
            &json!({
                "component": id.to_string(),
                "kind": component.kind().name(),
                "exists": o.exists,
                "status": o.status,
                "health": health_word(&o.health),
                "identifiers": o.identifiers,
                "outputs": o.outputs,
                "events": o.events,
                "recorded": recorded,
                "plan": planned,
            }),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    say_raw!(
        "{}",
        show_text(
            &id,
            component.kind().name(),
            &o,
            planned.as_ref(),
            recorded.as_ref()
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// What `panka show` prints: status, the pending change, identifiers, outputs, recent events
/// (ECS), and when and what was last applied (the spec as recorded, secrets only as references).
fn show_text(
    id: &ComponentId,
    kind: &str,
    o: &Observation,
    planned: Option<&ComponentPlan>,
    recorded: Option<&ComponentState>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Component: {id} ({kind})");
    let _ = writeln!(
        out,
        "  Status:  {} · {}",
        if o.status.is_empty() { "-" } else { &o.status },
        health_word(&o.health)
    );
    if let Some(p) = planned {
        let _ = writeln!(
            out,
            "  Pending: {}",
            panka_controller::engine::action_name(&p.action)
        );
        for d in &p.diffs {
            let show = |v: &Option<panka_core::plan::FieldValue>| {
                v.as_ref().map_or_else(|| "(none)".into(), |v| v.display())
            };
            let _ = writeln!(
                out,
                "           {}: {} → {}",
                d.field,
                show(&d.old),
                show(&d.new)
            );
        }
    }
    let _ = writeln!(out, "  Identifiers:");
    for (k, v) in &o.identifiers {
        let _ = writeln!(out, "    {k}: {v}");
    }
    let _ = writeln!(out, "  Outputs:");
    for (k, v) in &o.outputs {
        let _ = writeln!(out, "    {k}: {v}");
    }
    if !o.events.is_empty() {
        let _ = writeln!(out, "  Recent events:");
        for e in &o.events {
            let _ = writeln!(out, "    {e}");
        }
    }
    match recorded {
        Some(r) => {
            let _ = writeln!(
                out,
                "  Last applied: {} (spec {})",
                r.applied_at
                    .as_deref()
                    .map_or_else(|| "-".into(), recorded_time),
                &r.spec_hash[..r.spec_hash.len().min(12)]
            );
            if let Some(spec) = r.applied_spec.get("spec").filter(|s| !s.is_null()) {
                let _ = writeln!(out, "  Last applied spec:");
                match crate::render::to_yaml(spec) {
                    Ok(text) => {
                        for line in text.lines() {
                            let _ = writeln!(out, "    {line}");
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(out, "    ({e:#})");
                    }
                }
            }
        }
        None => {
            let _ = writeln!(out, "  Last applied: never");
        }
    }
    out
}

/// Runs `panka list`: stacks, environments, services and components of the repository.
pub fn list(global: &GlobalArgs, args: ListArgs) -> anyhow::Result<ExitCode> {
    let root = repo_root(global)?;
    let stacks = match args.stack {
        Some(s) => vec![s],
        None => {
            panka_controller::source::dir::list_stacks(&root).map_err(|d| anyhow::anyhow!("{d}"))?
        }
    };
    let mut out = Vec::new();
    for stack in stacks {
        let loaded = load_stack(&root, &stack).map_err(|(ds, _)| anyhow::anyhow!("{ds}"))?;
        let envs = resolve::environments(&loaded);
        let services: Vec<_> = loaded
            .services
            .values()
            .map(|s| {
                (
                    s.name.clone(),
                    s.components
                        .values()
                        .map(|c| (c.name.clone(), c.doc.kind.name()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        out.push((stack, envs, services));
    }
    if global.output != OutputFormat::Table {
        print_data(global.output, &json!(out.iter().map(|(stack, envs, services)| json!({
            "stack": stack, "environments": envs,
            "services": services.iter().map(|(s, cs)| json!({"name": s, "components": cs.iter().map(|(c, k)| json!({"name": c, "kind": k})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()))?;
        return Ok(ExitCode::SUCCESS);
    }
    for (stack, envs, services) in out {
        say!("{stack}  (environments: {})", envs.join(", "));
        let rows = services.into_iter().flat_map(|(svc, comps)| {
            comps
                .into_iter()
                .map(move |(c, k)| [svc.clone(), c, k.to_owned()])
        });
        say_raw!(
            "{}",
            indent(&table(["SERVICE", "COMPONENT", "KIND"], rows), 2)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{last_deployed, show_text, status_json, status_text};
    use panka_controller::session::{ComponentStatus, StatusSummary};
    use panka_controller::state::{ComponentState, Release, ReleaseKind, ReleaseOutcome};
    use panka_core::model::ComponentId;
    use panka_core::plan::{Health, Observation};
    use panka_core::sync::{Phase, SyncStatus};

    fn summary() -> StatusSummary {
        StatusSummary {
            stack: "shop".into(),
            environment: "development".into(),
            service: None,
            release: Some(Release {
                id: "20261123T150000.000Z-1a2b3c4d".into(),
                kind: ReleaseKind::Destroy,
                stack: "shop".into(),
                environment: "development".into(),
                scope: "stack".into(),
                version: Some("1.10".into()),
                commit: Some("0123abc".into()),
                actor: "tester@host".into(),
                overrides: Default::default(),
                started_at: "2026-11-23T15:00:00Z".into(),
                finished_at: Some("2026-11-23T15:01:00Z".into()),
                outcome: ReleaseOutcome::Succeeded,
                actions: Default::default(),
                desired: serde_json::json!({"spec": "not shown"}),
                target: None,
                supersedes: Vec::new(),
                reason: None,
            }),
            unfinished_release: Some("20261123T155900.000Z-5e6f7a8b".into()),
            components: vec![
                ComponentStatus {
                    id: ComponentId::new("orders", "events"),
                    kind: "SQS",
                    observed: Observation {
                        exists: true,
                        status: "available".into(),
                        health: Health::Healthy,
                        ..Observation::default()
                    },
                    last_deployed: Some("2026-11-23T15:48:00Z".into()),
                },
                ComponentStatus {
                    id: ComponentId::new("orders", "jobs"),
                    kind: "SQS",
                    observed: Observation::default(),
                    last_deployed: None,
                },
            ],
            pins: [(
                "stack".to_owned(),
                panka_controller::state::Pin {
                    release: "20261123T140000.000Z-9a8b7c6d".into(),
                    version: Some("1.9".into()),
                    by: "tester@host".into(),
                    at: "2026-11-23T15:00:00Z".into(),
                },
            )]
            .into(),
            drift: None,
            sync: None,
            pending: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn status_says_what_the_controller_did() {
        let now: jiff::Timestamp = "2026-11-23T16:00:00Z".parse().expect("time");
        let mut s = summary();
        s.sync = Some(SyncStatus {
            stack: "shop".into(),
            environment: "development".into(),
            phase: Phase::Synced,
            synced_commit: Some("3f2a1c0d9e".into()),
            drift_checked_at: Some("2026-11-23T15:59:20Z".into()),
            last_remediation: Some(panka_core::sync::Remediated {
                at: "2026-11-23T15:58:00Z".into(),
                changes: 1,
                release: "r".into(),
            }),
            ..SyncStatus::default()
        });
        let text = status_text(&s, now);
        assert!(
            text.contains(
                "\nController: synced to 3f2a1c0, drift checked 40s ago, remediated 1 change 2 min ago\n"
            ),
            "{text}"
        );
        s.sync = Some(SyncStatus {
            phase: Phase::AwaitingApproval,
            commit: Some("abcdef123".into()),
            awaiting_approval: Some("0123456789ab".into()),
            ..SyncStatus::default()
        });
        s.pending = Some(panka_core::sync::PendingPlan {
            id: "0123456789ab".into(),
            fingerprint: "0123456789abcdef".into(),
            kind: ReleaseKind::Apply,
            commit: Some("abcdef123".into()),
            version: None,
            changes: vec!["~ orders/events update".into()],
            planned_by: "c".into(),
            planned_at: "2026-11-23T15:59:00Z".into(),
            approved: None,
            applied_by: None,
        });
        let text = status_text(&s, now);
        assert!(
            text.contains("Controller: plan 0123456789ab of abcdef1 waits for approval"),
            "{text}"
        );
        assert!(
            text.contains("⏸ Plan 0123456789ab (apply, 1 change, commit abcdef1) waits for approval: `panka approve -s shop -e development --plan 0123456789ab`"),
            "{text}"
        );
    }

    #[test]
    fn what_an_apply_would_refuse_is_said_above_the_table_and_in_json() {
        let now: jiff::Timestamp = "2026-11-23T16:00:00Z".parse().expect("time");
        let mut s = summary();
        s.notes = vec![
            "rds.yaml: orders/db: secret `x` (database.passwordSecret.ref) does not exist".into(),
        ];
        let text = status_text(&s, now);
        let note = text
            .lines()
            .position(|l| l == format!("⚠ {}", s.notes[0]))
            .expect("the note is a line");
        let table = text
            .lines()
            .position(|l| l.contains("COMPONENT"))
            .expect("a table");
        assert!(note < table, "{text}");
        assert_eq!(status_json(&s)["notes"][0], s.notes[0].as_str());
    }

    #[test]
    fn status_shows_the_scope_the_releases_and_a_row_per_component() {
        let now: jiff::Timestamp = "2026-11-23T16:00:00Z".parse().expect("time");
        let text = status_text(&summary(), now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Status: stack shop (development)");
        assert!(
            lines[1].starts_with("Release 20261123T155900.000Z-5e6f7a8b did not finish"),
            "{text}"
        );
        assert_eq!(
            lines[2],
            "Last release: 20261123T150000.000Z-1a2b3c4d (destroy) · version 1.10 · by tester@host · Succeeded"
        );
        assert_eq!(
            lines[3],
            "📌 stack pinned to release 20261123T140000.000Z-9a8b7c6d (1.9) by tester@host (1 h ago); `panka resume` to roll forward again"
        );
        assert_eq!(
            lines[4],
            "Drift never checked; `panka drift detect` checks it"
        );
        assert_eq!(lines[5], "");
        assert!(
            lines[6].contains("COMPONENT") && lines[6].contains("LAST DEPLOYED"),
            "{text}"
        );
        assert!(
            lines[7].starts_with("✓ orders/events") && lines[7].ends_with("12 min ago"),
            "{text}"
        );
        assert!(
            lines[8].contains("orders/jobs") && lines[8].ends_with("never"),
            "{text}"
        );
        let mut checked = summary();
        checked.drift = Some(panka_core::drift::DriftReport {
            stack: "shop".into(),
            environment: "development".into(),
            service: None,
            checked_at: "2026-11-23T15:57:00Z".into(),
            checked_by: "tester@host".into(),
            checked: 2,
            drifted: Vec::new(),
            ignored: Vec::new(),
            pending: Vec::new(),
        });
        let text = status_text(&checked, now);
        assert!(
            text.contains("\nDrift checked 3 min ago: no drift\n"),
            "{text}"
        );
        if let Some(d) = checked.drift.as_mut() {
            d.checked_at = "2026-11-23T14:00:00Z".into();
        }
        let text = status_text(&checked, now);
        assert!(
            text.contains("no drift (before the last release: run `panka drift detect` again)"),
            "{text}"
        );
        let mut one = summary();
        one.service = Some("orders".into());
        one.unfinished_release = None;
        let text = status_text(&one, now);
        assert!(
            text.starts_with("Status: orders (development)\nLast release: "),
            "{text}"
        );
    }

    #[test]
    fn status_json_has_the_release_in_brief_and_every_component() {
        let json = status_json(&summary());
        assert_eq!(json["stack"], "shop");
        assert_eq!(json["release"]["commit"], "0123abc");
        assert!(json["release"].get("desired").is_none(), "{json:#}");
        assert_eq!(json["components"][0]["component"], "orders/events");
        assert_eq!(json["components"][0]["health"], "Healthy");
        assert_eq!(
            json["components"][0]["lastDeployed"],
            "2026-11-23T15:48:00Z"
        );
        assert_eq!(
            json["components"][1]["lastDeployed"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn show_lists_identifiers_outputs_recent_events_and_the_last_applied_spec() {
        let id = ComponentId::new("user-service", "api");
        let o = Observation {
            exists: true,
            status: "2/2 running".into(),
            health: Health::Healthy,
            identifiers: [("cluster".to_string(), "shop-dev".to_string())].into(),
            outputs: [("url".to_string(), "http://alb/users".to_string())].into(),
            events: vec![
                "2026-11-23T15:00:00Z (service api) has reached a steady state.".into(),
                "2026-11-23T14:59:00Z (service api) registered 2 targets".into(),
            ],
            ..Observation::default()
        };
        let recorded = ComponentState {
            kind: "MicroService".into(),
            applied_at: Some("2026-11-23T14:58:00Z".into()),
            spec_hash: "0123456789abcdef".into(),
            applied_spec: serde_json::json!({
                "id": "user-service/api",
                "spec": {"image": {"repository": "shop/users", "tag": "1.10"}},
            }),
            ..ComponentState::default()
        };
        let text = show_text(&id, "MicroService", &o, None, Some(&recorded));
        let expected = "\
Component: user-service/api (MicroService)
  Status:  2/2 running · Healthy
  Identifiers:
    cluster: shop-dev
  Outputs:
    url: http://alb/users
  Recent events:
    2026-11-23T15:00:00Z (service api) has reached a steady state.
    2026-11-23T14:59:00Z (service api) registered 2 targets
  Last applied: 2026-11-23 14:58 UTC (spec 0123456789ab)
  Last applied spec:
    image:
      repository: shop/users
      tag: '1.10'
";
        assert_eq!(text, expected);
        let never = show_text(&id, "MicroService", &Observation::default(), None, None);
        assert!(never.ends_with("  Last applied: never\n"), "{never}");
        assert!(!never.contains("Recent events"), "{never}");
    }

    #[test]
    fn last_deployed_reads_as_how_long_ago_or_as_recorded() {
        let now: jiff::Timestamp = "2026-11-23T16:00:00Z".parse().expect("time");
        assert_eq!(last_deployed("2026-11-23T15:47:59.5Z", now), "12 min ago");
        assert_eq!(last_deployed("not a time", now), "not a time");
    }
}
