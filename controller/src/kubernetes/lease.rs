//! Leader election: one `coordination.k8s.io` Lease per shard, held through
//! `kube-lease-manager` (server-side apply on the Lease; renewed before it runs out). A replica
//! acts only while it holds its shard's Lease; one that loses it stops acting at once and
//! exits, so Kubernetes restarts it as a standby — the controller-runtime convention. The
//! per-stack DynamoDB lock stays the safety net for the moment two replicas overlap.
//!
//! The manager keeps saying "leading" while it cannot reach the API server (it logs and
//! retries), yet another replica may take the Lease once it runs out. So the holder also reads
//! its Lease and gives up when it has not been renewed within [`Timing::deadline`] — before it
//! runs out — as controller-runtime's renew deadline does.

use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::shard::Shard;

/// How long a Lease holds, and how long before it runs out its holder renews it (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease holds without renewal.
    pub duration: u64,
    /// How long before it runs out the holder renews it.
    pub renew_before: u64,
}

impl Default for Timing {
    /// 15 s, renewed 10 s before it runs out (every 5 s, so a failed renewal is retried before
    /// the holder gives up at 10 s): a standby takes over within 15 s of a crash —
    /// controller-runtime's 15/10/2.
    fn default() -> Timing {
        Timing {
            duration: 15,
            renew_before: 10,
        }
    }
}

impl Timing {
    /// How long after its last renewal a holder that could not renew stops acting: half the
    /// renewal margin before the Lease runs out (10 s by default), so no two replicas act at
    /// once even while the API server is unreachable.
    pub fn deadline(self) -> Duration {
        Duration::from_millis(
            self.duration
                .saturating_mul(1000)
                .saturating_sub(self.renew_before.saturating_mul(500)),
        )
    }
}

/// The Lease name of `shard`: `base`, or `base-shard-{index}-of-{count}` when sharded.
pub fn lease_name(base: &str, shard: Shard) -> String {
    if shard.is_sharded() {
        format!("{base}-shard-{}-of-{}", shard.index, shard.count)
    } else {
        base.to_owned()
    }
}

/// A held Lease. Dropping it gives the Lease up; [`Leadership::release`] does so and waits.
pub struct Leadership {
    held: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl Leadership {
    /// Waits for the Lease `name` in `namespace` as `identity`; `None` if `shutdown` comes
    /// first.
    pub async fn acquire(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
        shutdown: &CancellationToken,
    ) -> Result<Option<Leadership>, LeaseManagerError> {
        let leases = Api::namespaced(client.clone(), namespace);
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(timing.duration)
            .with_grace(timing.renew_before)
            .with_field_manager(format!("{}-{identity}", super::FIELD_MANAGER))
            .build()
            .await?;
        let (mut held, task) = manager.watch().await;
        info!(lease = name, namespace, "waiting to lead");
        while !*held.borrow_and_update() {
            tokio::select! {
                changed = held.changed() => {
                    if changed.is_err() {
                        // The manager stopped: its error says why.
                        return match task.await {
                            Ok(Err(e)) => Err(e),
                            _ => Ok(None),
                        };
                    }
                }
                () = shutdown.cancelled() => {
                    drop(held);
                    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
                    return Ok(None);
                }
            }
        }
        info!(lease = name, "leading");
        Ok(Some(Leadership {
            held,
            task,
            leases,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
        }))
    }

    /// Resolves when the Lease is lost: another replica took it, or it was not renewed within
    /// the deadline.
    pub async fn lost(&mut self) {
        let held = &mut self.held;
        let released = async {
            loop {
                if !*held.borrow_and_update() || held.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = released => {}
            () = unrenewed(&self.leases, &self.name, &self.identity, self.timing) => {}
        }
    }

    /// Gives the Lease up (so a standby takes over at once, not after it runs out).
    pub async fn release(self) {
        drop(self.held);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => info!("lease released"),
            Ok(Ok(Err(e))) => {
                warn!(error = %e, "failed to release the lease; it runs out on its own")
            }
            _ => warn!("the lease was not released in time; it runs out on its own"),
        }
    }
}

/// Resolves when the Lease `name` is someone else's, or has not been renewed by `identity`
/// within `timing.deadline()` by what could be read of it (the last renewal seen, else the
/// moment this started, just after acquiring).
async fn unrenewed(leases: &Api<Lease>, name: &str, identity: &str, timing: Timing) {
    // Looked at every second or so; a hanging GET is cut at the deadline, not after.
    let look = Duration::from_secs(1)
        .min(timing.deadline() / 4)
        .max(Duration::from_millis(100));
    let mut renewed = Instant::now();
    loop {
        let left = timing.deadline().saturating_sub(renewed.elapsed());
        if left.is_zero() {
            warn!(lease = name, deadline = ?timing.deadline(), "the lease could not be renewed in time: stopping before it runs out");
            return;
        }
        tokio::time::sleep(look.min(left)).await;
        let left = timing.deadline().saturating_sub(renewed.elapsed());
        let Ok(Ok(lease)) = tokio::time::timeout(look.min(left), leases.get(name)).await else {
            continue;
        };
        let spec = lease.spec.unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(identity) {
            warn!(
                lease = name,
                holder = spec.holder_identity.as_deref().unwrap_or(""),
                "another replica holds the lease"
            );
            return;
        }
        if let Some(at) = spec.renew_time {
            let age = Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(at.0))
                .unwrap_or(Duration::ZERO);
            let now = Instant::now();
            renewed = now.checked_sub(age).unwrap_or(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_gives_up_before_its_lease_runs_out() {
        assert_eq!(Timing::default().deadline(), Duration::from_secs(10));
        let short = Timing {
            duration: 2,
            renew_before: 1,
        };
        assert_eq!(short.deadline(), Duration::from_millis(1_500));
    }

    #[test]
    fn each_shard_has_its_own_lease() {
        assert_eq!(
            lease_name("panka-controller", Shard::ALL),
            "panka-controller"
        );
        assert_eq!(
            lease_name("panka-controller", Shard { index: 1, count: 3 }),
            "panka-controller-shard-1-of-3"
        );
    }
}
