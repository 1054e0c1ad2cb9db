//! `panka unlock`: remove a stuck lock — your own or an expired one; `--force` for any.

use std::process::ExitCode;

use clap::Args;
use panka_controller::lock::{
    default_holder, now_epoch_secs, unlock, LockInfo, LockScope, LockTarget, UnlockOutcome,
};
use panka_controller::state::{new_history_id, HistoryEntry, UnlockRecord};
use serde_json::json;

use super::{open_backends, runtime};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::say;
use crate::render::{ago, epoch, epoch_rfc3339, lock_json, lock_status, print_data, timestamp};

/// Arguments of `panka unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// The service-scoped lock of this service (default: the stack-scoped lock).
    #[arg(long)]
    pub service: Option<String>,
    /// Remove the lock even when it is live and someone else's (its holder stops at its next
    /// heartbeat).
    #[arg(long)]
    pub force: bool,
}

/// Runs `panka unlock`.
pub fn run(global: &GlobalArgs, args: UnlockArgs) -> anyhow::Result<ExitCode> {
    let target = LockTarget::new(&args.stack, &args.environment, args.service.as_deref())?;
    let me = default_holder();
    runtime()?.block_on(async {
        let b = open_backends(global).await?;
        let outcome = unlock(b.locks.as_ref(), &target, &me, args.force).await?;
        let now = now_epoch_secs();
        match outcome {
            UnlockOutcome::Removed {
                info,
                expired,
                forced,
            } => {
                let record = HistoryEntry::Unlock(UnlockRecord {
                    id: new_history_id(),
                    stack: target.stack.clone(),
                    environment: target.environment.clone(),
                    lock_key: info.key(),
                    lock_id: info.lock_id.clone(),
                    locked_by: info.locked_by.clone(),
                    operation: info.operation.clone(),
                    locked_at: epoch_rfc3339(info.locked_at),
                    expired,
                    forced,
                    actor: me.clone(),
                    at: jiff::Timestamp::now().to_string(),
                });
                // The lock is already gone; failing to record it must not hide that.
                let recorded = b.state.record(&target.state_key(), &record).await;
                match global.output {
                    OutputFormat::Table => {
                        let why = if forced {
                            "forced: it was live"
                        } else if expired {
                            "its lease had expired"
                        } else {
                            "it was yours"
                        };
                        say!("✓ Removed lock {} ({why})", info.key());
                        describe(&info, now);
                    }
                    OutputFormat::Json | OutputFormat::Yaml => print_data(global.output, &json!({
                        "removed": lock_json(&info, now),
                        "forced": forced,
                        "expired": expired,
                        "historyId": record.id(),
                    }))?,
                }
                if let Err(e) = recorded {
                    eprintln!("warning: removed the lock but {e}");
                }
                Ok(ExitCode::SUCCESS)
            }
            UnlockOutcome::NotHeld => {
                let others = match &target.scope {
                    LockScope::Stack => b
                        .locks
                        .list(Some(&target.stack), Some(&target.environment))
                        .await?,
                    LockScope::Service(_) => Vec::new(),
                };
                match global.output {
                    OutputFormat::Table => {
                        say!("No lock held on {}.", target.key());
                        if !others.is_empty() {
                            say!("Service-scoped locks of {}/{}:", target.stack, target.environment);
                            for o in &others {
                                say!("  {} held by {} ({})", o.key(), o.locked_by, lock_status(o, now));
                            }
                            say!("Pass --service NAME to remove one.");
                        }
                    }
                    OutputFormat::Json | OutputFormat::Yaml => print_data(global.output, &json!({
                        "removed": null,
                        "serviceLocks": others.iter().map(|o| lock_json(o, now)).collect::<Vec<_>>(),
                    }))?,
                }
                Ok(ExitCode::SUCCESS)
            }
            UnlockOutcome::Refused { info } => anyhow::bail!(
                "lock {} is held by {} for `{}` since {} (last heartbeat {}, lease expires {}): it is live and not yours ({me}). \
                 Wait for it, or if its holder is gone pass --force (a live holder stops at its next heartbeat)",
                info.key(),
                info.locked_by,
                info.operation,
                timestamp(epoch(info.locked_at)),
                ago(epoch(info.last_heartbeat), epoch(now)),
                ago(epoch(info.expires_at), epoch(now)),
            ),
            UnlockOutcome::Changed { info } => anyhow::bail!(
                "lock {} changed hands while unlocking (it was {}'s); run `panka state locks` and retry",
                info.key(),
                info.locked_by
            ),
        }
    })
}

fn describe(info: &LockInfo, now: i64) {
    say!("  Locked by:      {}", info.locked_by);
    say!("  Operation:      {}", info.operation);
    say!(
        "  Locked at:      {} ({})",
        timestamp(epoch(info.locked_at)),
        ago(epoch(info.locked_at), epoch(now))
    );
    say!(
        "  Last heartbeat: {}",
        ago(epoch(info.last_heartbeat), epoch(now))
    );
    say!("  Lock id:        {} (fence {})", info.lock_id, info.fence);
    say!("  Recorded in history.");
}
