//! Leader election: one `coordination.k8s.io` Lease per shard, held through
//! `kube-lease-manager` (server-side apply on the Lease; renewed before it runs out). A replica
//! acts only while it holds its shard's Lease; one that loses it stops acting at once and
//! exits, so Kubernetes restarts it as a standby — the controller-runtime convention. The
//! per-stack DynamoDB lock stays the safety net for the moment two replicas overlap.

use std::time::Duration;

use kube::Client;
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
    /// 15 s, renewed 5 s before it runs out: a standby takes over within 15 s of a crash.
    fn default() -> Timing {
        Timing {
            duration: 15,
            renew_before: 5,
        }
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
        Ok(Some(Leadership { held, task }))
    }

    /// Resolves when the Lease is lost (another replica took it, or it could not be renewed).
    pub async fn lost(&mut self) {
        loop {
            if !*self.held.borrow_and_update() {
                return;
            }
            if self.held.changed().await.is_err() {
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
