//! Rollbacks (setup, before observe): which release to go back to, and the desired stack that
//! re-applies it. Reads history and state; changes nothing. The rollback itself is an ordinary
//! engine run (plan, approval, waves) recorded as a `rollback` release.

use std::collections::BTreeSet;

use panka_core::graph::{self, Graph};
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::state::{
    pin_scope, HistoryEntry, Pin, Release, ReleaseKind, ReleaseOutcome, Snapshot, StateDocument,
};

use tokio_util::sync::CancellationToken;

use super::{Limits, Operation, Session, Target};
use crate::engine::{
    ApplyReport, Applying, Engine, EngineError, Prepared, Progress, Refusal, RollbackOf, Step,
};
use crate::lock::{LockError, LockInfo, LockTarget};
use crate::state::{StateError, StateKey};

/// Which release a rollback goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTo {
    /// The last successful release before the current one.
    Previous,
    /// The newest successful release of this version (`1.2.0` and `v1.2.0` are the same).
    Version(String),
    /// This release.
    Release(String),
}

/// What a rollback applies.
#[derive(Debug, Clone)]
pub struct RollbackInput {
    /// The desired stack: the target release's specs for the scope, what is applied now for
    /// the rest.
    pub desired: DesiredStack,
    /// Its waves.
    pub graph: Graph,
    /// What the release records (target, what it undoes) and the pin.
    pub of: RollbackOf,
    /// The target release.
    pub target: Release,
}

impl Session {
    /// The rollback of `target`'s scope to `to`. Components that did not exist in the target
    /// release are kept unless `prune`. `repository` gives the stack's name, environment and
    /// (for states written before they were recorded) its stack-wide settings.
    pub async fn rollback_input(
        &self,
        target: &Target,
        repository: &DesiredStack,
        to: &RollbackTo,
        prune: bool,
    ) -> Result<RollbackInput, EngineError> {
        let key =
            StateKey::new(&repository.name, &repository.environment).map_err(StateError::from)?;
        let store = &self.backends.state;
        let never = || Refusal::NeverApplied {
            stack: repository.name.clone(),
            environment: repository.environment.clone(),
        };
        let snapshot = store.read(&key).await?.ok_or_else(never)?;
        let releases: Vec<Release> = store
            .history(&key, None)
            .await?
            .into_iter()
            .filter_map(|e| match e {
                HistoryEntry::Release(r) => Some(r),
                HistoryEntry::Unlock(_) => None,
            })
            .collect();
        let service = target.service.as_deref();
        let chosen = choose(&releases, service, to).map_err(Refusal::NoRollbackTarget)?;
        let corrupt = |detail: String| StateError::Corrupt {
            location: format!("{}/{}", store.location(), key.history_path(&chosen.id)),
            detail,
        };
        let then: DesiredStack =
            serde_json::from_value(chosen.desired.clone()).map_err(|e| corrupt(e.to_string()))?;
        let now = snapshot
            .document
            .applied_stack(repository)
            .map_err(&corrupt)?;
        let desired = rollback_desired(&now, &then, service, prune);
        let graph = graph::build(&desired).map_err(|d| corrupt(d.message))?;
        let supersedes = newer_than(&releases, &chosen, service);
        Ok(RollbackInput {
            desired,
            graph,
            of: RollbackOf {
                target: chosen.id.clone(),
                version: chosen.version.clone(),
                supersedes,
                reason: None,
                pin: true,
            },
            target: chosen,
        })
    }
}

impl Session {
    /// Clears the pin of `service`'s scope (the stack's when `None`) under the lock: the
    /// controller and `apply` roll forward again. Returns the pin removed; `None` when there
    /// was none (nothing is written then).
    pub async fn resume(
        &self,
        stack: &str,
        environment: &str,
        service: Option<&str>,
    ) -> Result<Option<Pin>, EngineError> {
        let key = StateKey::new(stack, environment).map_err(StateError::from)?;
        let store = &self.backends.state;
        let scope = pin_scope(service);
        let unpinned = |s: &Option<Snapshot>| {
            s.as_ref()
                .and_then(|s| s.document.pins.get(&scope).cloned())
        };
        if unpinned(&store.read(&key).await?).is_none() {
            return Ok(None);
        }
        let lock = LockTarget::new(stack, environment, service).map_err(LockError::from)?;
        let locker = self.engine(std::time::Duration::ZERO)?.locker().clone();
        let handle = locker
            .acquire(lock, &self.actor, "resume", &mut |_: &LockInfo| {})
            .await?;
        let written = async {
            // Read again under the lock: what is written follows the latest version.
            let snapshot = store.read(&key).await?;
            let Some(pin) = unpinned(&snapshot) else {
                return Ok(None);
            };
            let Some(snapshot) = snapshot else {
                return Ok(None);
            };
            let mut doc = snapshot.next();
            doc.pins.remove(&scope);
            self.actor.clone_into(&mut doc.updated_by);
            doc.updated_at = jiff::Timestamp::now().to_string();
            let token = handle.token()?;
            store.write(&key, Some(&snapshot), doc, &token).await?;
            Ok::<_, EngineError>(Some(pin))
        }
        .await;
        let _ = handle.release().await;
        written
    }
}

/// Whether a release of `scope` holds the specs a rollback of `service` re-applies: a
/// stack-wide rollback needs a stack-wide release (a service's release applied only that
/// service); a service's needs one that applied it.
fn covers(release: &Release, service: Option<&str>) -> bool {
    release.scope == "stack" || release.scope == pin_scope(service)
}

/// Releases a rollback may go back to: applies and rollbacks that succeeded.
fn usable(release: &Release) -> bool {
    matches!(release.kind, ReleaseKind::Apply | ReleaseKind::Rollback)
        && matches!(
            release.outcome,
            ReleaseOutcome::Succeeded | ReleaseOutcome::RolledBack
        )
}

/// The release to go back to. `releases` are newest first.
fn choose(releases: &[Release], service: Option<&str>, to: &RollbackTo) -> Result<Release, String> {
    let in_scope: Vec<&Release> = releases.iter().filter(|r| covers(r, service)).collect();
    let scope = pin_scope(service);
    match to {
        RollbackTo::Release(id) => {
            let r = releases.iter().find(|r| &r.id == id).ok_or_else(|| {
                format!("no release `{id}` in the history; `panka history` lists them")
            })?;
            if !covers(r, service) {
                return Err(format!(
                    "release {id} applied {}, not {scope}: a rollback of {scope} needs a release that applied it",
                    r.scope
                ));
            }
            if !usable(r) {
                return Err(format!(
                    "release {id} ({}, {}) is not one to go back to: a rollback goes back to an apply or rollback that succeeded (`panka history` lists them)",
                    r.kind,
                    format!("{:?}", r.outcome).to_lowercase()
                ));
            }
            Ok(r.clone())
        }
        RollbackTo::Version(v) => {
            let bare = |s: &str| s.trim_start_matches(['v', 'V']).to_owned();
            in_scope
                .iter()
                .find(|r| usable(r) && r.version.as_deref().map(bare) == Some(bare(v)))
                .map(|r| (*r).clone())
                .ok_or_else(|| {
                    format!("no successful release of version {v} covers {scope}; `panka history` lists the releases")
                })
        }
        RollbackTo::Previous => {
            let undone: BTreeSet<&str> = releases
                .iter()
                .flat_map(|r| r.supersedes.iter().map(String::as_str))
                .collect();
            let live: Vec<&&Release> = in_scope
                .iter()
                .filter(|r| usable(r) && !undone.contains(r.id.as_str()))
                .collect();
            // The newest apply or rollback did not succeed (it failed or was interrupted): what
            // it left goes back to the last good one; otherwise the last good one is the
            // current one. Remediations and destroys put nothing new in place: skipped.
            let newest_failed = in_scope
                .iter()
                .find(|r| matches!(r.kind, ReleaseKind::Apply | ReleaseKind::Rollback))
                .is_some_and(|r| !usable(r));
            let index = usize::from(!newest_failed);
            live.get(index).map(|r| (**r).clone()).ok_or_else(|| {
                format!("no successful release of {scope} before the current one to roll back to")
            })
        }
    }
}

/// The releases newer than `target` of the scope that a rollback to it undoes.
fn newer_than(releases: &[Release], target: &Release, service: Option<&str>) -> Vec<String> {
    releases
        .iter()
        .take_while(|r| r.id != target.id)
        // A remediation put back what was applied then: nothing of it is undone.
        .filter(|r| matches!(r.kind, ReleaseKind::Apply | ReleaseKind::Rollback))
        // A service's rollback undoes that service's releases; a stack-wide release it only
        // partly undoes (the other services keep what it applied) stays as it was.
        .filter(|r| service.is_none() || r.scope == pin_scope(service))
        .map(|r| r.id.clone())
        .collect()
}

/// The desired stack of a rollback: `then`'s specs for the scope (every component for a
/// stack-wide rollback, `service`'s otherwise), `now`'s for the rest. Components of the scope
/// that `then` lacks stay as they are unless `prune`.
pub(crate) fn rollback_desired(
    now: &DesiredStack,
    then: &DesiredStack,
    service: Option<&str>,
    prune: bool,
) -> DesiredStack {
    let of_scope = |id: &ComponentId| service.is_none_or(|s| id.service == s);
    let mut desired = match service {
        None => DesiredStack {
            name: now.name.clone(),
            environment: now.environment.clone(),
            components: Default::default(),
            ..then.clone()
        },
        Some(_) => DesiredStack {
            components: Default::default(),
            ..now.clone()
        },
    };
    for (id, c) in &now.components {
        if !of_scope(id) || (!prune && !then.components.contains_key(id)) {
            desired.components.insert(id.clone(), c.clone());
        }
    }
    for (id, c) in &then.components {
        if of_scope(id) {
            desired.components.insert(id.clone(), c.clone());
        }
    }
    if service.is_some() {
        // The version a service goes back to is its release's.
        if let Some(v) = then.version() {
            desired.variables.insert("VERSION".into(), v.to_owned());
        }
    }
    desired
}

/// An apply that failed, as [`Session::roll_back_failed_wave`] needs it.
pub struct FailedApply<'a> {
    /// The engine it ran on.
    pub engine: &'a Engine,
    /// What was asked.
    pub target: &'a Target,
    /// The repository's stack: its `rollback.onFailure` policy decides.
    pub repository: &'a DesiredStack,
    /// The plan it applied (with the state it started from).
    pub prepared: &'a Prepared,
    /// How it failed.
    pub failure: &'a EngineError,
    /// The limits it ran with (the rollback runs with the same).
    pub limits: Limits,
}

impl Session {
    /// After a failed health wait (a timeout, or the ECS deployment circuit breaker): puts the
    /// components the failed wave changed back to their previous specs, unless the stack's
    /// `rollback.onFailure` is `false`, as a `rollback` release that names the failed one
    /// (which `history` then shows as failed, rolled back). Later waves never ran. Says what
    /// it did; `None` when the failure was not a health wait or there was nothing to put back.
    pub async fn roll_back_failed_wave(
        &self,
        failed: FailedApply<'_>,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Option<String> {
        let on = failed
            .repository
            .infra
            .rollback
            .as_ref()
            .and_then(|r| r.on_failure)
            .unwrap_or(true);
        let unhealthy = failed.failure.unhealthy_component()?;
        if !on || cancel.is_cancelled() {
            return None;
        }
        let wave: Vec<ComponentId> = failed
            .prepared
            .plan
            .waves
            .iter()
            .find(|w| w.iter().any(|p| &p.id == unhealthy))?
            .iter()
            .filter(|p| p.action.is_change())
            .map(|p| p.id.clone())
            .collect();
        self.roll_back(failed, &wave, None, cancel, progress).await
    }

    /// After release `release` baked and crossed a threshold (`failure` says which): puts
    /// every component it changed back to its previous spec, as a `rollback` release that
    /// names it — unless another release was applied meanwhile (the bake runs without the
    /// lock), which is then left alone. Says what it did; `None` when nothing had a previous
    /// spec.
    pub async fn roll_back_release(
        &self,
        failed: FailedApply<'_>,
        release: &str,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Option<String> {
        let changed: Vec<ComponentId> = failed
            .prepared
            .plan
            .waves
            .iter()
            .flatten()
            .filter(|p| p.action.is_change())
            .map(|p| p.id.clone())
            .collect();
        self.roll_back(failed, &changed, Some(release), cancel, progress)
            .await
    }

    /// Re-applies the previous specs of `components` (what `failed` changed) as an automatic
    /// `rollback` release.
    async fn roll_back(
        &self,
        failed: FailedApply<'_>,
        wave: &[ComponentId],
        expected: Option<&str>,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Option<String> {
        let FailedApply {
            engine,
            target,
            repository,
            prepared,
            failure,
            limits,
        } = failed;
        let before = prepared.state.as_ref()?;
        let key = StateKey::new(&repository.name, &repository.environment).ok()?;
        let after = match engine.state().read(&key).await {
            Ok(Some(after)) => after,
            Ok(None) => return None,
            Err(e) => return Some(format!("could not roll back: {e}")),
        };
        if let Some(expected) = expected {
            let now = after.document.release.as_deref().unwrap_or("none");
            if now != expected {
                return Some(format!(
                    "not rolled back: release {now} was applied since {expected} (the newer release stands)"
                ));
            }
        }
        let back = match auto_rollback(&before.document, &after.document, wave, repository) {
            Ok(Some(back)) => back,
            Ok(None) => return None,
            Err(e) => return Some(format!("could not roll back: {e}")),
        };
        let names = back
            .components
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut options = self.options_for(target, Operation::Rollback(limits));
        options.rollback = Some(RollbackOf {
            target: before.document.release.clone().unwrap_or_default(),
            version: back.desired.version().map(str::to_owned),
            supersedes: after.document.release.clone().into_iter().collect(),
            reason: Some(failure.to_string()),
            pin: false,
        });
        let run = engine.run(&back.desired, options, cancel.clone());
        let result = async {
            let prepared = engine.plan(&run, &back.desired, &back.graph).await?;
            let approval = prepared.approve();
            match engine
                .apply(&run, &back.desired, &back.graph, &approval, progress)
                .await?
            {
                Ok(applying) => step_until_done(applying, cancel).await.map(|_| ()),
                Err(_) => Ok(()),
            }
        }
        .await;
        Some(match result {
            Ok(()) => format!("rolled back {names} to their previous spec"),
            Err(e) => format!("the rollback of {names} failed too: {e}"),
        })
    }
}

/// Steps an apply until it is done, sleeping between steps while AWS works (a rollout, a
/// deletion): how a front-end that waits (the CLI, a test) drives an [`Applying`]. The engine
/// never sleeps; a controller suspends and requeues instead. A cancel wakes the sleep at once
/// (the next step then starts nothing new).
pub async fn step_until_done(
    mut applying: Applying<'_>,
    cancel: &CancellationToken,
) -> Result<ApplyReport, EngineError> {
    loop {
        match applying.step().await? {
            Step::Done(report) => return Ok(*report),
            Step::Progressing {
                applying: next,
                requeue_after,
                ..
            } => {
                tokio::select! {
                    () = tokio::time::sleep(requeue_after) => {}
                    () = cancel.cancelled() => {}
                }
                applying = *next;
            }
        }
    }
}

/// What an automatic rollback of a failed wave re-applies.
#[derive(Debug, Clone)]
pub struct AutoRollback {
    /// The applied stack with the failed wave's changed components back at their previous
    /// specs.
    pub desired: DesiredStack,
    /// Its waves.
    pub graph: Graph,
    /// The components going back.
    pub components: Vec<ComponentId>,
}

/// The rollback of the components of a failed wave: `before` is the state as the failed run
/// read it, `after` as it left it, `wave` the components the wave changed. Components the wave
/// created had no previous spec and stay. `None` when nothing has a previous spec to go back
/// to.
pub fn auto_rollback(
    before: &StateDocument,
    after: &StateDocument,
    wave: &[ComponentId],
    repository: &DesiredStack,
) -> Result<Option<AutoRollback>, String> {
    let mut desired = after.applied_stack(repository)?;
    let previous = before.applied_stack(repository)?;
    let mut components = Vec::new();
    // Every changed component with a previous spec goes back, recorded as changed or not: the
    // one that failed its health wait was changed in AWS but never recorded (state records a
    // component once it is healthy), and the plan of the rollback finds what really differs.
    for id in wave {
        if let Some(old) = previous.components.get(id) {
            desired.components.insert(id.clone(), old.clone());
            components.push(id.clone());
        }
    }
    if components.is_empty() {
        return Ok(None);
    }
    if let Some(v) = previous.version() {
        desired.variables.insert("VERSION".into(), v.to_owned());
    }
    let graph = graph::build(&desired).map_err(|d| d.message)?;
    Ok(Some(AutoRollback {
        desired,
        graph,
        components,
    }))
}

#[cfg(test)]
mod tests;
