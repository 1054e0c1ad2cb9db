//! `status --follow` (stage: observe, read-only, repeated): status again and again until the
//! target is settled — no component still being created or rolled out, and nobody holding its
//! lock (an apply or a reconcile under way) — or the caller cancels. A front-end helper that
//! sleeps between looks, like [`super::Session::bake`]; a cancel wakes it at once.

use std::time::Duration;

use panka_core::graph::Graph;
use panka_core::model::DesiredStack;
use panka_core::plan::Health;
use tokio_util::sync::CancellationToken;

use super::{Session, StatusSummary, Target};
use crate::engine::EngineError;
use crate::lock::{now_epoch_secs, LockInfo, LockScope};

/// What one look of [`Session::follow_status`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusLook {
    /// The status.
    pub summary: StatusSummary,
    /// The live locks on the target (its stack, or its service and the stack): who is changing
    /// it now.
    pub locks: Vec<LockInfo>,
}

impl StatusLook {
    /// Whether nothing is moving: nobody holds the target's lock and no component is still
    /// progressing.
    pub fn settled(&self) -> bool {
        self.locks.is_empty() && self.summary.settled()
    }
}

impl StatusSummary {
    /// Whether no component in scope is still being created or rolled out (each is healthy,
    /// degraded or missing: it stays so until someone acts).
    pub fn settled(&self) -> bool {
        self.components
            .iter()
            .all(|c| c.observed.health != Health::Progressing)
    }
}

impl Session {
    /// The live locks on `target` of `desired`'s stack/environment: the stack's, and the
    /// service's when one is asked about (every service's otherwise).
    pub async fn live_locks(
        &self,
        target: &Target,
        desired: &DesiredStack,
    ) -> Result<Vec<LockInfo>, EngineError> {
        let now = now_epoch_secs();
        let locks = self
            .backends
            .locks
            .list(Some(&desired.name), Some(&desired.environment))
            .await?;
        Ok(locks
            .into_iter()
            .filter(|l| !l.is_expired_at(now))
            .filter(|l| match (&l.target.scope, &target.service) {
                (LockScope::Stack, _) | (LockScope::Service(_), None) => true,
                (LockScope::Service(s), Some(asked)) => s == asked,
            })
            .collect())
    }

    /// Looks at `target`'s status every `every` and hands each look to `on_look`, until it is
    /// settled (the last look) or `cancel` fires (`None`; a look in flight is dropped).
    pub async fn follow_status(
        &self,
        target: &Target,
        desired: &DesiredStack,
        graph: &Graph,
        every: Duration,
        cancel: &CancellationToken,
        on_look: &mut (dyn FnMut(&StatusLook) + Send),
    ) -> Result<Option<StatusLook>, EngineError> {
        loop {
            let look = async {
                let summary = self.status(target, desired, graph).await?;
                let locks = self.live_locks(target, desired).await?;
                Ok::<_, EngineError>(StatusLook { summary, locks })
            };
            let look = tokio::select! {
                look = look => look?,
                () = cancel.cancelled() => return Ok(None),
            };
            on_look(&look);
            if look.settled() {
                return Ok(Some(look));
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => return Ok(None),
            }
        }
    }
}
