//! `panka approve`: approve the plan the controller waits on in an environment that needs
//! approval (or show it first).

use std::process::ExitCode;

use clap::Args;
use panka_controller::reconcile::approve as approve_plan;
use panka_controller::state::StateKey;
use panka_core::sync::PendingPlan;

use super::{open_backends, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{print_data, recorded_time, say};
use panka_core::sync::short_commit;

/// Arguments of `panka approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// The pending plan's id, as `panka status` and the controller show it. Without it, the
    /// pending plan is shown and nothing is approved.
    #[arg(long)]
    pub plan: Option<String>,
}

/// Runs `panka approve`.
pub fn run(global: &GlobalArgs, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let key = StateKey::new(&args.stack, &args.environment)?;
    let runtime = runtime()?;
    let backends = runtime.block_on(open_backends(global))?;
    let Some(id) = args.plan else {
        let pending = runtime
            .block_on(backends.state.pending(&key))?
            .map(|(p, _)| p)
            .filter(PendingPlan::waits);
        if global.output != OutputFormat::Table {
            print_data(
                global.output,
                &serde_json::json!({ "pendingPlan": pending }),
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        match pending {
            Some(p) => {
                say!("{}", describe(&p));
                say!(
                    "\nApprove it: panka approve -s {} -e {} --plan {}",
                    args.stack,
                    args.environment,
                    p.id
                );
            }
            None => say!(
                "No plan waits for approval in {} ({}).",
                args.stack,
                args.environment
            ),
        }
        return Ok(ExitCode::SUCCESS);
    };
    let by = panka_controller::lock::default_holder();
    let plan = runtime.block_on(approve_plan(&backends, &key, &id, &by))?;
    if global.output != OutputFormat::Table {
        print_data(global.output, &serde_json::json!({ "approved": plan }))?;
        return Ok(ExitCode::SUCCESS);
    }
    say!("{}", describe(&plan));
    say!(
        "\n✓ Approved by {by}: the controller applies exactly this plan at its next pass. If AWS or the repository changes first, it plans again and waits for a new approval."
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(p: &PendingPlan) -> String {
    let mut out = format!(
        "Plan {} ({}{}{}) planned by {} at {}:",
        p.id,
        p.kind,
        p.version
            .as_deref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default(),
        p.commit
            .as_deref()
            .map(|c| format!(", commit {}", short_commit(c)))
            .unwrap_or_default(),
        p.planned_by,
        recorded_time(&p.planned_at)
    );
    for line in &p.changes {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}
