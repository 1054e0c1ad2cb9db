//! The engine: observe → plan → apply → record for one stack/environment, under its lock.
//!
//! The same code serves `panka plan/apply/destroy` and the controller's reconcile. It takes a
//! resolved [`DesiredStack`] and its [`Graph`] (from git or from custom resources), never reads
//! the repository, never prints, and reports progress as [`Event`]s. The steps come in one typed
//! order: [`Engine::plan`] observes and plans without the lock and gives a [`Prepared`] plan;
//! approving it gives an [`Approval`] (its fingerprint); [`Engine::apply`] takes the lock,
//! observes and plans again and refuses a plan that is not the approved one; [`Applying::step`]
//! applies without waiting and records state after every component; the release is written
//! when the apply ends.
//!
//! Stages: [`observe`] (with the pure plan), [`apply`], [`record`]; the run's types in [`run`].

pub mod apply;
pub mod observe;
pub mod record;
pub mod run;

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_config::SdkConfig;
use panka_core::graph::Graph;
use panka_core::keys::StateKey;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{Action, Health};
use panka_core::state::{pin_holds, ReleaseKind, ReleaseOutcome};
use tokio_util::sync::CancellationToken;

pub use apply::{Applying, Step};
pub use observe::{Approval, Prepared};
pub use record::action_name;
pub use run::{
    ApplyReport, EngineError, EngineOptions, ErrorClass, Event, PinnedBy, Progress, Quiet, Refusal,
    RollbackOf, Run,
};

use crate::backend::Backends;
use crate::driver::{Ctx, Drivers};
use crate::lock::{LockInfo, LockTarget, Locker};
use record::Recorder;

/// Builds the drivers of one run on its fresh context.
pub type DriverFactory = Arc<dyn Fn(&Ctx) -> Drivers + Send + Sync>;

/// The engine for one AWS account/region and one pair of backends. Holds no state between runs:
/// every [`Run`] gets a fresh driver context, drivers and call counter.
pub struct Engine {
    sdk: SdkConfig,
    backends: Backends,
    locker: Locker,
    drivers: DriverFactory,
    /// Where every run's calls are also counted (the controller's metrics), if anywhere.
    calls: Option<crate::driver::CallCounter>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backends", &self.backends)
            .finish()
    }
}

impl Engine {
    /// An engine with every driver panka has.
    pub fn new(sdk: SdkConfig, backends: Backends, locker: Locker) -> Engine {
        Engine::with_drivers(sdk, backends, locker, Arc::new(Drivers::new))
    }

    /// An engine whose runs use the drivers `factory` builds (tests use drivers of their own).
    pub fn with_drivers(
        sdk: SdkConfig,
        backends: Backends,
        locker: Locker,
        factory: DriverFactory,
    ) -> Engine {
        Engine {
            sdk,
            backends,
            locker,
            drivers: factory,
            calls: None,
        }
    }

    /// The same engine, every run's AWS calls also added to `total`.
    pub fn counting_into(mut self, total: Option<crate::driver::CallCounter>) -> Engine {
        self.calls = total;
        self
    }

    /// The lock backend with this engine's options.
    pub fn locker(&self) -> &Locker {
        &self.locker
    }

    /// The state store.
    pub fn state(&self) -> &crate::state::StateStore {
        &self.backends.state
    }

    /// A run for `desired`'s stack/environment: a fresh context (names, tags, `--adopt`), its
    /// own drivers and call counter, stopped by `cancel`.
    pub fn run(
        &self,
        desired: &DesiredStack,
        options: EngineOptions,
        cancel: CancellationToken,
    ) -> Run {
        let ctx =
            Ctx::new(self.sdk.clone(), desired, options.adopt).counting_into(self.calls.as_ref());
        Run {
            calls: ctx.calls.clone(),
            drivers: (self.drivers)(&ctx),
            options,
            cancel,
        }
    }

    /// Reads state and AWS and plans, without the lock (what `panka plan` shows and what a
    /// person approves).
    pub async fn plan(
        &self,
        run: &Run,
        desired: &DesiredStack,
        graph: &Graph,
    ) -> Result<Prepared, EngineError> {
        observe::observe_and_plan(run, &self.backends.state, desired, graph).await
    }

    /// Takes the lock, observes and plans again, and refuses unless the plan is the approved
    /// one and everything it does is allowed. Nothing has changed yet when this returns: step
    /// the [`Applying`] to apply. `Ok(Err(report))` when there is nothing to do at all.
    pub async fn apply<'a>(
        &'a self,
        run: &'a Run,
        desired: &'a DesiredStack,
        graph: &Graph,
        approval: &Approval,
        progress: &'a dyn Progress,
    ) -> Result<Result<Applying<'a>, ApplyReport>, EngineError> {
        let started = std::time::Instant::now();
        let options = &run.options;
        let target = LockTarget::new(
            &desired.name,
            &desired.environment,
            options.service.as_deref(),
        )
        .map_err(crate::lock::LockError::from)?;
        let mut on_wait = |holder: &LockInfo| progress.event(Event::LockWaiting(holder));
        let acquire =
            self.locker
                .acquire(target, &options.actor, options.kind.as_str(), &mut on_wait);
        let handle = tokio::select! {
            // A cancel that came first wins: no lock taken for a run that will do nothing.
            biased;
            () = run.cancel.cancelled() => return Err(EngineError::Interrupted),
            handle = acquire => handle?,
        };
        progress.event(Event::LockAcquired(handle.info()));
        let checked = async {
            let prepared = self.plan(run, desired, graph).await?;
            if !prepared.notes.is_empty() {
                return Err(Refusal::Noted(prepared.notes).into());
            }
            approval.check(&prepared.plan)?;
            prepared.allowed(options)?;
            let key = StateKey::new(&desired.name, &desired.environment)
                .map_err(crate::state::StateError::from)?;
            // Fails when the lease was lost while planning: stop before any change.
            let token = handle.token()?;
            Ok::<_, EngineError>((prepared, key, token))
        }
        .await;
        let (prepared, key, token) = match checked {
            Ok(p) => p,
            Err(e) => {
                // Nothing was changed: the lock goes at once.
                let _ = handle.release().await;
                return Err(e);
            }
        };
        let stale = prepared.stale_records(desired);
        // Unchanged but not yet healthy (a rollout still going, or stuck): apply waits for it
        // like for a changed component, and fails if it is degraded.
        let unsettled = prepared.plan.waves.iter().flatten().any(|p| {
            p.action == Action::NoOp
                && prepared
                    .observed
                    .get(&p.id)
                    .is_some_and(|o| o.health != Health::Healthy)
        });
        let changes = prepared.plan.has_changes();
        // A rollback that pins is a release even when AWS already matches its target: history
        // says who pinned, when, and to what.
        let pins = options.rollback.as_ref().is_some_and(|r| r.pin);
        let mut rec = Recorder::new(
            &self.backends.state,
            key,
            prepared.state.clone(),
            token,
            handle.guard(),
            changes || pins,
            desired,
            options,
        );
        if rec.pins_change() {
            // Before any change: a run that stops half-way still leaves the pin (or unpin).
            if let Err(e) = rec.write_now(progress).await {
                let _ = handle.release().await;
                return Err(e);
            }
        }
        if !changes && stale.is_empty() && !unsettled {
            // Nothing to do in AWS; a failed release leaves a lease that expires on its own.
            let release = rec
                .release(desired, options, &prepared.plan, ReleaseOutcome::Succeeded)
                .await;
            let _ = handle.release().await;
            return Ok(Err(ApplyReport {
                outputs: prepared.outputs.clone(),
                plan: prepared.plan,
                release: release?,
                duration: started.elapsed(),
            }));
        }
        Ok(Ok(Applying::new(
            run, desired, prepared, progress, handle, rec, stale,
        )))
    }
}

impl Prepared {
    /// Refuses what the caller did not allow: data-losing changes without `allow_destroy`, and
    /// resources that are not panka's without `adopt`. Apply checks it under the lock; a
    /// front-end checks it before asking anyone to approve a plan that would be refused.
    pub fn allowed(&self, options: &EngineOptions) -> Result<(), EngineError> {
        check_allowed(self, options)
    }

    /// Components that exist as desired but whose record is missing or stale (state lost, or
    /// applied by an older spec that AWS already matches): an apply records them without a
    /// release, so a plan without changes still has work when this is not empty.
    pub fn stale_records(&self, desired: &DesiredStack) -> BTreeSet<ComponentId> {
        self.plan
            .all()
            .filter(|p| p.action == Action::NoOp)
            .filter(|p| {
                self.recorded(&p.id).map(|r| r.spec_hash.as_str())
                    != desired.components.get(&p.id).map(|c| c.hash()).as_deref()
            })
            .map(|p| p.id.clone())
            .collect()
    }
}

fn check_allowed(prepared: &Prepared, options: &EngineOptions) -> Result<(), EngineError> {
    // Only rolling forward is held back: a remediation goes toward the pinned release (what
    // state records), a rollback moves the pin, a destroy is explicit. `--unpin` lifts a pin of
    // the run's own scope; a service's run stays held by the stack's pin. Every pin that holds
    // the run is looked at: a service pin lifted does not lift the stack's.
    if let (Some(s), ReleaseKind::Apply) = (&prepared.state, options.kind) {
        let doc = &s.document;
        let service = options.service.as_deref();
        let held = doc.pins.iter().find(|(scope, _)| {
            pin_holds(scope, service)
                && !(options.unpin && (service.is_none() || scope.as_str() != "stack"))
        });
        if let Some((scope, pin)) = held {
            return Err(Refusal::Pinned(Box::new(PinnedBy {
                stack: doc.stack.clone(),
                environment: doc.environment.clone(),
                scope: scope.clone(),
                pin: pin.clone(),
            }))
            .into());
        }
    }
    let not_ours: Vec<(ComponentId, String)> = prepared
        .plan
        .all()
        .filter_map(|p| match &p.action {
            Action::Conflict { reason } => Some((p.id.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    if !not_ours.is_empty() {
        return Err(Refusal::NotOurs(not_ours).into());
    }
    let dangerous: Vec<(ComponentId, String)> = prepared
        .plan
        .dangerous()
        .map(|p| (p.id.clone(), p.kind.clone()))
        .collect();
    if !dangerous.is_empty() && !options.allow_destroy {
        return Err(Refusal::DangerousChange {
            components: dangerous,
        }
        .into());
    }
    Ok(())
}
