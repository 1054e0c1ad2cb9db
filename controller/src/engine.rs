//! The engine: observe → plan → apply → record for one stack/environment, under its lock.
//!
//! The same code runs for `panka plan/apply/destroy` and for the controller's reconcile: it takes
//! a resolved [`DesiredStack`] and its [`Graph`] (from git or from custom resources), never reads
//! the repository itself, never prints, and reports progress through [`Progress`]. Apply holds the
//! stack (or service) lock from observe to record, checks its lease before every mutation, and
//! writes state after every component, so a crash at any point leaves a state the next run
//! continues from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use panka_crds::Kind;
use tokio::sync::Mutex;

use crate::backend::Backends;
use crate::driver::{Applied, Ctx, Driver, DriverError, Drivers, Observe, Outputs};
use crate::graph::Graph;
use crate::lock::{LockError, LockHandle, LockInfo, LockTarget, Locker};
use crate::model::{ComponentId, DesiredComponent, DesiredStack};
use crate::plan::{
    self, Action, ComponentPlan, DesiredFields, Health, Observation, Observed, Plan, PlanOptions,
};
use crate::state::{
    new_history_id, redact_variables, ComponentState, HistoryEntry, Release, ReleaseKind,
    ReleaseOutcome, Snapshot, StateDocument, StateError, StateKey,
};

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The lock could not be taken or was lost.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// State could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A driver call failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// No driver exists for a kind.
    #[error("panka cannot deploy {kind} components yet ({component})")]
    NoDriver {
        /// The kind.
        kind: Kind,
        /// A component of that kind.
        component: ComponentId,
    },
    /// The plan needs something the caller did not allow.
    #[error("{0}")]
    Refused(String),
    /// A component did not become healthy in time.
    #[error("{component} did not become healthy within {waited:?}: {status}")]
    Unhealthy {
        /// Which.
        component: ComponentId,
        /// How long we waited.
        waited: Duration,
        /// Last status seen.
        status: String,
    },
    /// Apply stopped after errors in a wave; state holds what was done.
    #[error("apply failed: {}", .0.iter().map(|(id, e)| format!("{id}: {e}")).collect::<Vec<_>>().join("; "))]
    Failed(Vec<(ComponentId, String)>),
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Limit to one service (and its lock scope).
    pub service: Option<String>,
    /// Take over same-named resources without panka's tags.
    pub adopt: bool,
    /// Allow replacing or deleting stateful components.
    pub allow_destroy: bool,
    /// Components applied at once within a wave.
    pub concurrency: usize,
    /// Longest wait for one component to become healthy.
    pub health_timeout: Duration,
    /// Interval between health checks.
    pub health_poll: Duration,
    /// Who is applying (`user@host`, controller pod).
    pub actor: String,
    /// Git commit of the deployment repository, when known.
    pub commit: Option<String>,
    /// What the release records this run as (`destroy` for an emptied desired stack).
    pub kind: ReleaseKind,
    /// Variables given on the command line, recorded in the release (secret-looking names
    /// redacted).
    pub overrides: BTreeMap<String, String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            service: None,
            adopt: false,
            allow_destroy: false,
            concurrency: 8,
            health_timeout: Duration::from_secs(900),
            health_poll: Duration::from_secs(5),
            actor: crate::lock::default_holder(),
            commit: None,
            kind: ReleaseKind::Apply,
            overrides: BTreeMap::new(),
        }
    }
}

/// Something that happened during apply, for progress output, logs and events.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Waiting for a lock held by someone else.
    LockWaiting(&'a LockInfo),
    /// The lock was taken.
    LockAcquired(&'a LockInfo),
    /// A wave starts.
    WaveStarted {
        /// 1-based wave number.
        number: usize,
        /// Components in it that change.
        components: usize,
    },
    /// A component starts.
    ComponentStarted(&'a ComponentPlan),
    /// Waiting for a component to become healthy.
    Waiting(&'a ComponentId, &'a str),
    /// A component is done.
    ComponentDone(&'a ComponentPlan, Duration, &'a BTreeMap<String, String>),
    /// A component failed.
    ComponentFailed(&'a ComponentPlan, &'a str),
    /// State was written.
    StateSaved(u64),
}

/// Receives [`Event`]s.
pub trait Progress: Send + Sync {
    /// Called for every event.
    fn event(&self, event: Event<'_>);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _event: Event<'_>) {}
}

/// A plan with everything apply needs to carry it out.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The plan.
    pub plan: Plan,
    /// What observe saw.
    pub observed: Observed,
    /// Desired fields per component.
    pub fields: BTreeMap<ComponentId, DesiredFields>,
    /// Outputs known before apply (observed, or recorded for other services).
    pub outputs: Outputs,
    /// State as read.
    pub state: Option<Snapshot>,
    /// What observe saw of the stack-shared resources.
    pub shared: BTreeMap<ComponentId, Observation>,
}

/// How an apply ended.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The plan applied.
    pub plan: Plan,
    /// The release recorded (none when nothing changed).
    pub release: Option<Release>,
    /// Outputs of every component after apply.
    pub outputs: Outputs,
    /// Wall time.
    pub duration: Duration,
}

/// The engine for one AWS account/region and one pair of backends.
pub struct Engine {
    drivers: Drivers,
    ctx: Ctx,
    backends: Backends,
    locker: Locker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("drivers", &self.drivers)
            .field("backends", &self.backends)
            .finish()
    }
}

impl Engine {
    /// An engine for `desired`'s stack/environment.
    pub fn new(ctx: Ctx, backends: Backends, locker: Locker) -> Engine {
        Engine {
            drivers: Drivers::new(&ctx),
            ctx,
            backends,
            locker,
        }
    }

    /// The state store.
    pub fn state(&self) -> &crate::state::StateStore {
        &self.backends.state
    }

    /// The shared driver context (its call counter in particular).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    fn driver(&self, c: &DesiredComponent) -> Result<&dyn Driver, EngineError> {
        self.drivers
            .get(c.kind())
            .ok_or_else(|| EngineError::NoDriver {
                kind: c.kind(),
                component: c.id.clone(),
            })
    }

    fn in_scope(id: &ComponentId, options: &EngineOptions) -> bool {
        options.service.as_ref().is_none_or(|s| &id.service == s)
    }

    /// Reads state and AWS and plans, without taking the lock (what `panka plan` shows).
    pub async fn prepare(
        &self,
        desired: &DesiredStack,
        graph: &Graph,
        options: &EngineOptions,
    ) -> Result<Prepared, EngineError> {
        let key = StateKey::new(&desired.name, &desired.environment)?;
        let state = self.backends.state.read(&key).await?;
        let recorded = |id: &ComponentId| {
            state
                .as_ref()
                .and_then(|s| s.document.components.get(&id.to_string()))
        };

        // Outputs of components outside the scope come from state, as the last apply left them.
        let mut outputs: Outputs = BTreeMap::new();
        for id in desired
            .components
            .keys()
            .filter(|id| !Self::in_scope(id, options))
        {
            if let Some(c) = recorded(id) {
                outputs.insert(id.clone(), string_outputs(&c.outputs));
            }
        }

        // Stack-shared resources first: their outputs (cluster, network, load balancer) feed
        // the container components' desired fields.
        let shared_fields = self.drivers.shared().desired(desired);
        let shared_recorded: Vec<ComponentId> = state
            .iter()
            .flat_map(|s| s.document.components.keys())
            .filter_map(|k| ComponentId::try_from(k.clone()).ok())
            .filter(plan::is_shared)
            .collect();
        let shared = if shared_fields.is_empty() && shared_recorded.is_empty() {
            BTreeMap::new()
        } else {
            self.drivers.shared().observe().await?
        };
        for (id, o) in &shared {
            if o.exists {
                outputs.insert(id.clone(), o.outputs.clone());
            }
        }

        let in_scope: Vec<&DesiredComponent> = desired
            .components
            .values()
            .filter(|c| Self::in_scope(&c.id, options))
            .collect();
        // One batch per kind, the kinds side by side: drivers batch what their APIs allow.
        let mut by_kind: BTreeMap<Kind, (&dyn Driver, Vec<Observe>)> = BTreeMap::new();
        for c in &in_scope {
            let ids = recorded(&c.id).map(|r| r.identifiers.clone());
            let driver = self.driver(c)?;
            by_kind
                .entry(c.kind())
                .or_insert_with(|| (driver, Vec::new()))
                .1
                .push((c.id.clone(), ids));
        }
        let concurrency = options.concurrency.max(1);
        let observations: Vec<Vec<(ComponentId, Observation)>> = futures::future::try_join_all(
            by_kind.iter().map(|(kind, (driver, items))| async move {
                let seen = driver.observe_many(items, concurrency).await?;
                if seen.len() != items.len() {
                    return Err(EngineError::Refused(format!(
                        "the {kind} driver observed {} of {} components",
                        seen.len(),
                        items.len()
                    )));
                }
                Ok(items.iter().map(|(id, _)| id.clone()).zip(seen).collect())
            }),
        )
        .await?;
        let mut observed = BTreeMap::new();
        for (id, o) in observations.into_iter().flatten() {
            if o.exists {
                outputs.insert(id.clone(), o.outputs.clone());
            }
            observed.insert(id, o);
        }

        // A service-scoped run reads other services' outputs from state; one never applied in
        // this environment cannot be read, so say so now rather than fail mid-apply.
        for c in &in_scope {
            for r in &c.references {
                if !Self::in_scope(&r.target, options) && !outputs.contains_key(&r.target) {
                    return Err(EngineError::Refused(format!(
                        "{} needs outputs of {}, which has never been applied in {}; apply service `{}` first, or the whole stack",
                        c.id, r.target, desired.environment, r.target.service
                    )));
                }
            }
        }
        for (kind, (driver, _)) in &by_kind {
            let of_kind: Vec<&DesiredComponent> = in_scope
                .iter()
                .copied()
                .filter(|c| c.kind() == *kind)
                .collect();
            driver.look_up(&of_kind).await?;
        }
        let mut fields = BTreeMap::new();
        for c in &in_scope {
            fields.insert(c.id.clone(), self.driver(c)?.desired(c, &outputs));
        }
        for c in &in_scope {
            if let Some(o) = observed.get_mut(&c.id) {
                self.driver(c)?.complete(c, &outputs, o).await?;
            }
        }
        let observed = Observed::new(observed);
        let mut plan = plan::plan(
            desired,
            graph,
            &fields,
            &observed,
            state.as_ref().map(|s| &s.document),
            &PlanOptions {
                service: options.service.clone(),
                adopt: options.adopt,
            },
        );
        plan.add_shared(
            &shared_fields,
            &shared,
            &shared_recorded,
            &[crate::driver::shared::network_id()],
            &PlanOptions {
                service: options.service.clone(),
                adopt: options.adopt,
            },
        );
        Ok(Prepared {
            plan,
            observed,
            fields,
            outputs,
            state,
            shared,
        })
    }

    /// Checks what the plan needs against what the caller allowed.
    pub fn check_allowed(plan: &Plan, options: &EngineOptions) -> Result<(), EngineError> {
        let conflicts: Vec<String> = plan
            .all()
            .filter_map(|p| match &p.action {
                Action::Conflict { reason } => Some(format!("{}: {reason}", p.id)),
                _ => None,
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(EngineError::Refused(conflicts.join("\n")));
        }
        let dangerous: Vec<String> = plan
            .dangerous()
            .map(|p| format!("{} ({})", p.id, p.kind))
            .collect();
        if !dangerous.is_empty() && !options.allow_destroy {
            return Err(EngineError::Refused(format!(
                "the plan replaces or deletes stateful components, losing their data: {}; re-run with --allow-destroy if that is intended",
                dangerous.join(", ")
            )));
        }
        Ok(())
    }

    /// Locks, plans, asks `approve`, applies wave by wave and records the release.
    pub async fn apply(
        &self,
        desired: &DesiredStack,
        graph: &Graph,
        options: &EngineOptions,
        approve: &mut (dyn FnMut(&Plan) -> bool + Send),
        progress: &dyn Progress,
    ) -> Result<Option<ApplyReport>, EngineError> {
        let started = Instant::now();
        let target = match &options.service {
            Some(s) => LockTarget::service(&desired.name, &desired.environment, s)?,
            None => LockTarget::stack(&desired.name, &desired.environment)?,
        };
        let mut on_wait = |holder: &LockInfo| progress.event(Event::LockWaiting(holder));
        let handle = self
            .locker
            .acquire(target, &options.actor, options.kind.as_str(), &mut on_wait)
            .await?;
        progress.event(Event::LockAcquired(handle.info()));
        let result = self
            .apply_locked(desired, graph, options, approve, progress, &handle, started)
            .await;
        // Released on every path; a failed release leaves a lease that expires on its own.
        let _ = handle.release().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_locked(
        &self,
        desired: &DesiredStack,
        graph: &Graph,
        options: &EngineOptions,
        approve: &mut (dyn FnMut(&Plan) -> bool + Send),
        progress: &dyn Progress,
        handle: &LockHandle,
        started: Instant,
    ) -> Result<Option<ApplyReport>, EngineError> {
        let prepared = self.prepare(desired, graph, options).await?;
        Self::check_allowed(&prepared.plan, options)?;
        // Components that exist as desired but whose record is missing or stale (state lost,
        // or applied by an older spec that AWS already matches) are recorded without a release.
        let stale: Vec<ComponentId> = prepared
            .plan
            .all()
            .filter(|p| p.action == Action::NoOp)
            .filter(|p| {
                let recorded = prepared
                    .state
                    .as_ref()
                    .and_then(|s| s.document.components.get(&p.id.to_string()));
                recorded.map(|r| r.spec_hash.as_str())
                    != desired.components.get(&p.id).map(|c| c.hash()).as_deref()
            })
            .map(|p| p.id.clone())
            .collect();
        let unrecorded_shared = prepared.plan.shared.iter().any(|p| {
            p.action == Action::NoOp
                && p.id != crate::driver::shared::network_id()
                && !prepared
                    .state
                    .as_ref()
                    .is_some_and(|s| s.document.components.contains_key(&p.id.to_string()))
        });
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
        if !changes && stale.is_empty() && !unrecorded_shared && !unsettled {
            return Ok(Some(ApplyReport {
                outputs: prepared.outputs,
                plan: prepared.plan,
                release: None,
                duration: started.elapsed(),
            }));
        }
        if changes && !approve(&prepared.plan) {
            return Ok(None);
        }
        let key = StateKey::new(&desired.name, &desired.environment)?;
        let release_id = new_history_id();
        let token = handle.token()?;
        let guard = handle.guard();
        let mut doc = match &prepared.state {
            Some(s) => s.next(),
            None => StateDocument::initial(&key),
        };
        if changes {
            doc.release = Some(release_id.clone());
        }
        doc.updated_by = options.actor.clone();
        let state = Arc::new(Mutex::new(StateWriter {
            key: key.clone(),
            base: prepared.state.clone(),
            doc,
        }));
        let started_at = jiff::Timestamp::now().to_string();
        let mut outputs = prepared.outputs.clone();
        let mut failures: Vec<(ComponentId, String)> = Vec::new();

        // Stack-shared resources, in a wave of their own before the components.
        let shared_changes: Vec<&ComponentPlan> = prepared
            .plan
            .shared
            .iter()
            .filter(|p| p.action.is_change())
            .collect();
        if !shared_changes.is_empty() || unrecorded_shared {
            progress.event(Event::WaveStarted {
                number: 0,
                components: shared_changes.len(),
            });
            for p in &shared_changes {
                progress.event(Event::ComponentStarted(p));
            }
            let t = Instant::now();
            guard.check()?;
            let applied = if shared_changes.is_empty() {
                // Only unrecorded: take what observe saw.
                prepared
                    .shared
                    .iter()
                    .filter(|(_, o)| o.exists)
                    .map(|(id, o)| {
                        (
                            id.clone(),
                            Applied {
                                identifiers: o.identifiers.clone(),
                                outputs: o.outputs.clone(),
                            },
                        )
                    })
                    .collect()
            } else {
                match self.drivers.shared().ensure(desired).await {
                    Ok(a) => a,
                    Err(e) => {
                        let msg = e.to_string();
                        for p in &shared_changes {
                            progress.event(Event::ComponentFailed(p, &msg));
                        }
                        return Err(e.into());
                    }
                }
            };
            let mut w = state.lock().await;
            for (id, a) in &applied {
                outputs.insert(id.clone(), a.outputs.clone());
                // A lookup (the network) owns nothing and is not recorded.
                if *id != crate::driver::shared::network_id() {
                    w.doc.components.insert(id.to_string(), shared_state(a));
                }
            }
            guard.check()?;
            let serial = w.write(&self.backends, &token).await?;
            drop(w);
            progress.event(Event::StateSaved(serial));
            for p in &shared_changes {
                let empty = BTreeMap::new();
                let out = applied.get(&p.id).map_or(&empty, |a| &a.outputs);
                progress.event(Event::ComponentDone(p, t.elapsed(), out));
            }
        }

        for (n, wave) in prepared.plan.waves.iter().enumerate() {
            let changing = wave.iter().filter(|p| p.action.is_change()).count();
            progress.event(Event::WaveStarted {
                number: n + 1,
                components: changing,
            });
            let wave_outputs = outputs.clone();
            let results: Vec<(ComponentId, Result<Option<Applied>, EngineError>)> =
                stream::iter(wave.iter().map(|p| {
                    let wave_outputs = &wave_outputs;
                    let prepared = &prepared;
                    let guard = &guard;
                    async move {
                        let r = self
                            .apply_one(desired, p, prepared, wave_outputs, options, progress, guard)
                            .await;
                        (p.id.clone(), r)
                    }
                }))
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
            for (id, r) in results {
                match r {
                    Ok(Some(applied)) => {
                        outputs.insert(id.clone(), applied.outputs.clone());
                        let changed = wave.iter().any(|p| p.id == id && p.action.is_change());
                        if !changed && !stale.contains(&id) {
                            continue;
                        }
                        let component = &desired.components[&id];
                        let mut w = state.lock().await;
                        w.doc
                            .components
                            .insert(id.to_string(), component_state(component, &applied));
                        guard.check()?;
                        let serial = w.write(&self.backends, &token).await?;
                        progress.event(Event::StateSaved(serial));
                    }
                    Ok(None) => {}
                    Err(e) => failures.push((id, e.to_string())),
                }
            }
            if !failures.is_empty() {
                break;
            }
        }

        if failures.is_empty() {
            let recorded_doc = prepared.state.as_ref().map(|s| &s.document);
            // Deletions AWS has not finished (see `DriverError::StillDeleting`): what they
            // depend on stays, the rest goes on; a later run carries on.
            let mut still_deleting: Vec<ComponentId> = Vec::new();
            for p in &prepared.plan.deletions {
                guard.check()?;
                if let Some(user) = still_deleting
                    .iter()
                    .find(|d| plan::recorded_references(recorded_doc, d).contains(&p.id))
                {
                    let msg = format!(
                        "left in place: {user}, which depends on it, is still being deleted; run the destroy again later"
                    );
                    progress.event(Event::ComponentFailed(p, &msg));
                    failures.push((p.id.clone(), msg));
                    still_deleting.push(p.id.clone());
                    continue;
                }
                progress.event(Event::ComponentStarted(p));
                let t = Instant::now();
                let recorded = prepared
                    .state
                    .as_ref()
                    .and_then(|s| s.document.components.get(&p.id.to_string()))
                    .cloned()
                    .unwrap_or_default();
                let deleted = if plan::is_shared(&p.id) {
                    self.drivers
                        .shared()
                        .delete(&p.id, &recorded.identifiers)
                        .await
                } else {
                    let Some(kind) = Kind::from_name(&recorded.kind) else {
                        failures.push((
                            p.id.clone(),
                            format!("state records unknown kind `{}`", recorded.kind),
                        ));
                        continue;
                    };
                    let Some(driver) = self.drivers.get(kind) else {
                        failures.push((
                            p.id.clone(),
                            format!("panka cannot delete {kind} components yet"),
                        ));
                        continue;
                    };
                    driver.delete(&p.id, &recorded.identifiers).await
                };
                match deleted {
                    Ok(()) => {
                        let mut w = state.lock().await;
                        w.doc.components.remove(&p.id.to_string());
                        guard.check()?;
                        let serial = w.write(&self.backends, &token).await?;
                        progress.event(Event::StateSaved(serial));
                        progress.event(Event::ComponentDone(p, t.elapsed(), &BTreeMap::new()));
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        progress.event(Event::ComponentFailed(p, &msg));
                        failures.push((p.id.clone(), msg));
                        if !matches!(e, DriverError::StillDeleting { .. }) {
                            break;
                        }
                        still_deleting.push(p.id.clone());
                    }
                }
            }
        }

        let outcome = if failures.is_empty() {
            ReleaseOutcome::Succeeded
        } else {
            ReleaseOutcome::Failed
        };
        // The variables in effect include the overrides: secret-looking names stay redacted in
        // the recorded spec too (only `VERSION` is read back from it).
        let mut recorded = serde_json::to_value(desired).unwrap_or_default();
        if let Some(vars) = recorded.get_mut("variables") {
            *vars = serde_json::to_value(redact_variables(&desired.variables)).unwrap_or_default();
        }
        let release = Release {
            id: release_id,
            kind: options.kind,
            stack: desired.name.clone(),
            environment: desired.environment.clone(),
            scope: options
                .service
                .as_ref()
                .map_or_else(|| "stack".to_string(), |s| format!("service:{s}")),
            version: desired.version().map(str::to_string),
            commit: options.commit.clone(),
            actor: options.actor.clone(),
            overrides: redact_variables(&options.overrides),
            started_at,
            finished_at: Some(jiff::Timestamp::now().to_string()),
            outcome,
            actions: prepared
                .plan
                .all()
                .map(|p| (p.id.to_string(), action_name(&p.action).to_string()))
                .collect(),
            desired: recorded,
        };
        if !changes {
            // Only records were refreshed; that is not a release.
            return Ok(Some(ApplyReport {
                plan: prepared.plan,
                release: None,
                outputs,
                duration: started.elapsed(),
            }));
        }
        self.backends
            .state
            .record(&key, &HistoryEntry::Release(release.clone()))
            .await?;
        if !failures.is_empty() {
            return Err(EngineError::Failed(failures));
        }
        Ok(Some(ApplyReport {
            plan: prepared.plan,
            release: Some(release),
            outputs,
            duration: started.elapsed(),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_one(
        &self,
        desired: &DesiredStack,
        p: &ComponentPlan,
        prepared: &Prepared,
        outputs: &Outputs,
        options: &EngineOptions,
        progress: &dyn Progress,
        guard: &crate::lock::LeaseGuard,
    ) -> Result<Option<Applied>, EngineError> {
        let component = &desired.components[&p.id];
        let driver = self.driver(component)?;
        let observed = prepared.observed.get(&p.id).cloned().unwrap_or_default();
        if !p.action.is_change() {
            // Unchanged components still publish their outputs to later waves, once healthy.
            let applied = Applied {
                identifiers: observed.identifiers.clone(),
                outputs: observed.outputs.clone(),
            };
            if observed.health == Health::Healthy {
                return Ok(Some(applied));
            }
            return self
                .wait_healthy(driver, component, applied, options, progress)
                .await
                .map(Some);
        }
        progress.event(Event::ComponentStarted(p));
        let t = Instant::now();
        guard.check()?;
        let result = match &p.action {
            Action::Create => driver.create(component, outputs).await,
            Action::Update => driver.update(component, outputs, &p.diffs, &observed).await,
            Action::Replace { .. } => match driver.delete(&p.id, &observed.identifiers).await {
                Ok(()) => {
                    guard.check()?;
                    driver.create(component, outputs).await
                }
                Err(e) => Err(e),
            },
            Action::Delete | Action::NoOp | Action::Conflict { .. } => return Ok(None),
        };
        let applied = match result {
            Ok(a) => a,
            Err(e) => {
                let msg = e.to_string();
                progress.event(Event::ComponentFailed(p, &msg));
                return Err(e.into());
            }
        };
        let applied = self
            .wait_healthy(driver, component, applied, options, progress)
            .await?;
        progress.event(Event::ComponentDone(p, t.elapsed(), &applied.outputs));
        Ok(Some(applied))
    }

    async fn wait_healthy(
        &self,
        driver: &dyn Driver,
        component: &DesiredComponent,
        mut applied: Applied,
        options: &EngineOptions,
        progress: &dyn Progress,
    ) -> Result<Applied, EngineError> {
        let deadline = Instant::now() + options.health_timeout;
        loop {
            let o = driver
                .observe(&component.id, Some(&applied.identifiers))
                .await?;
            match &o.health {
                Health::Healthy => {
                    // Observed outputs are authoritative (e.g. an endpoint assigned late).
                    applied.outputs.extend(o.outputs);
                    applied.identifiers.extend(o.identifiers);
                    return Ok(applied);
                }
                Health::Degraded(why) => {
                    return Err(EngineError::Unhealthy {
                        component: component.id.clone(),
                        waited: options.health_timeout
                            - deadline.saturating_duration_since(Instant::now()),
                        status: why.clone(),
                    })
                }
                Health::Progressing | Health::Missing => {
                    if Instant::now() >= deadline {
                        return Err(EngineError::Unhealthy {
                            component: component.id.clone(),
                            waited: options.health_timeout,
                            status: o.status,
                        });
                    }
                    progress.event(Event::Waiting(&component.id, &o.status));
                    tokio::time::sleep(options.health_poll).await;
                }
            }
        }
    }
}

/// State being written during one apply: the document and the version it follows.
struct StateWriter {
    key: StateKey,
    base: Option<Snapshot>,
    doc: StateDocument,
}

impl StateWriter {
    async fn write(
        &mut self,
        backends: &Backends,
        token: &crate::lock::FenceToken,
    ) -> Result<u64, EngineError> {
        let mut doc = self.doc.clone();
        doc.updated_at = jiff::Timestamp::now().to_string();
        let snapshot = backends
            .state
            .write(&self.key, self.base.as_ref(), doc, token)
            .await?;
        let serial = snapshot.document.serial;
        self.doc = snapshot.next();
        self.base = Some(snapshot);
        Ok(serial)
    }
}

fn component_state(component: &DesiredComponent, applied: &Applied) -> ComponentState {
    let spec = serde_json::to_value(component).unwrap_or_default();
    ComponentState {
        kind: component.kind().name().to_string(),
        identifiers: applied.identifiers.clone(),
        outputs: applied
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
        spec_hash: component.hash(),
        applied_spec: spec,
        applied_at: Some(jiff::Timestamp::now().to_string()),
    }
}

fn shared_state(applied: &Applied) -> ComponentState {
    ComponentState {
        kind: plan::SHARED_KIND.to_string(),
        identifiers: applied.identifiers.clone(),
        outputs: applied
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
        applied_spec: serde_json::Value::Null,
        spec_hash: String::new(),
        applied_at: Some(jiff::Timestamp::now().to_string()),
    }
}

fn string_outputs(outputs: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, String> {
    outputs
        .iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// The word recorded for an action.
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace { .. } => "replace",
        Action::Delete => "delete",
        Action::NoOp => "noop",
        Action::Conflict { .. } => "conflict",
    }
}
