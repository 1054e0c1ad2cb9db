//! `panka rollback` and `panka resume`: re-apply an earlier release and pin the stack (or a
//! service) to it; clear the pin when the repository has the fix.

use std::process::ExitCode;

use clap::Args;
use panka_controller::session::{Limits, Operation, RollbackTo};
use panka_controller::state::StateKey;

use super::deploy::{execute, ApplyFlags, Job};
use super::{open_session, resolve_target, runtime, TargetArgs};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::say;
use crate::render::{print_data, recorded_time};

/// Arguments of `panka rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub flags: ApplyFlags,
    /// Go back to the newest successful release of this version (default: the last successful
    /// release before the current one).
    #[arg(long, conflicts_with = "to_release")]
    pub to_version: Option<String>,
    /// Go back to this release (an id from `panka history`).
    #[arg(long)]
    pub to_release: Option<String>,
    /// Delete components the target release did not have (kept otherwise).
    #[arg(long)]
    pub prune: bool,
}

/// Arguments of `panka resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `panka rollback`.
pub fn rollback(global: &GlobalArgs, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let Some(resolved) = resolve_target(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let to = match (&args.to_version, &args.to_release) {
        (Some(v), _) => RollbackTo::Version(v.clone()),
        (None, Some(id)) => RollbackTo::Release(id.clone()),
        (None, None) => RollbackTo::Previous,
    };
    let input = runtime()?.block_on(async {
        let session = open_session(global, &resolved.desired).await?;
        anyhow::Ok(
            session
                .rollback_input(&resolved.target, &resolved.desired, &to, args.prune)
                .await?,
        )
    })?;
    if global.output == OutputFormat::Table {
        say!(
            "Rolling back to release {}{} of {} (deployed by {}, {})\n",
            input.target.id,
            input
                .target
                .version
                .as_ref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default(),
            recorded_time(&input.target.started_at),
            input.target.actor,
            input.target.kind,
        );
    }
    let limits = Limits {
        allow_destroy: args.flags.allow_destroy,
        health_timeout: args.flags.health_timeout,
    };
    let job = Job {
        desired: input.desired,
        graph: input.graph,
        operation: Operation::Rollback(limits),
        rollback: Some(input.of),
        title: "Rollback",
    };
    let code = execute(
        global,
        &args.flags,
        &resolved.target,
        &resolved.desired,
        job,
    )?;
    if code == ExitCode::SUCCESS && global.output == OutputFormat::Table {
        let scope = resolved
            .target
            .service
            .as_ref()
            .map_or_else(|| "The stack".to_owned(), |s| format!("Service {s}"));
        say!(
            "\n📌 {scope} is pinned to release {}: `panka apply` refuses until `panka resume`, and the controller keeps this release.",
            input.target.id
        );
    }
    Ok(code)
}

/// Runs `panka resume`.
pub fn resume(global: &GlobalArgs, args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let Some(resolved) = resolve_target(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    let service = resolved.target.service.as_deref();
    let (removed, stack_pin) = runtime()?.block_on(async {
        let session = open_session(global, &resolved.desired).await?;
        let removed = session
            .resume(
                &resolved.desired.name,
                &resolved.desired.environment,
                service,
            )
            .await?;
        // A service that is not pinned itself may still be held by the stack's pin.
        let key = StateKey::new(&resolved.desired.name, &resolved.desired.environment)?;
        let stack_pin = match (&removed, service) {
            (None, Some(_)) => session
                .backends()
                .state
                .read(&key)
                .await?
                .and_then(|s| s.document.pins.get("stack").cloned()),
            _ => None,
        };
        anyhow::Ok((removed, stack_pin))
    })?;
    let scope = service.map_or_else(|| "the stack".to_owned(), |s| format!("service {s}"));
    if global.output != OutputFormat::Table {
        print_data(global.output, &serde_json::json!({ "unpinned": removed }))?;
        return Ok(ExitCode::SUCCESS);
    }
    match removed {
        Some(pin) => say!(
            "Unpinned {scope} of {} ({}): it was pinned to release {} by {} at {}. The next apply rolls forward.",
            resolved.desired.name,
            resolved.desired.environment,
            pin.release,
            pin.by,
            recorded_time(&pin.at)
        ),
        None => match stack_pin {
            Some(pin) => say!(
                "{scope} of {} ({}) has no pin of its own, but the stack is pinned to release {} by {}: `panka resume` without --service lifts it.",
                resolved.desired.name,
                resolved.desired.environment,
                pin.release,
                pin.by
            ),
            None => say!(
                "{scope} of {} ({}) is not pinned; nothing to do.",
                resolved.desired.name, resolved.desired.environment
            ),
        },
    }
    Ok(ExitCode::SUCCESS)
}
