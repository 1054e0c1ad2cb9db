//! Stage **apply**: carries out an approved plan wave by wave, components of a wave side by side
//! (bounded), each recorded in state the moment it is done, then the deletions, dependants
//! first.
//!
//! It never waits for AWS. [`Applying::step`] goes as far as it can and answers
//! [`Step::Progressing`] when what is left waits on AWS (a rollout, a creation, a deletion);
//! the caller looks again later: the CLI sleeps and steps again under the same lock (its
//! progress bars and `--timeout`), the controller ends its reconcile and requeues. Every step
//! checks the lease before each mutation and starts no new mutation once the run is cancelled.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{self, Action, ComponentPlan, Health};
use panka_core::state::ReleaseOutcome;
use panka_crds::Kind;

use super::observe::{driver_of, Prepared};
use super::record::{component_state, Recorder};
use super::run::{ApplyReport, EngineError, Event, Progress, Run};
use crate::driver::{Applied, Deletion, DriverError, Outputs};
use crate::lock::{LeaseGuard, LockHandle};

/// Where an apply stands after a [`Applying::step`].
///
/// An [`Applying`] holds the lock: step it until done, or [`Applying::suspend`] it. One dropped
/// without either keeps the lock until its lease runs out (nothing is lost: state records every
/// finished component), so callers always end it.
#[derive(Debug)]
pub enum Step<'a> {
    /// Everything is applied (or it failed: then `step` returned the error).
    Done(Box<ApplyReport>),
    /// What is left waits on AWS; step again after `requeue_after`, or [`Applying::suspend`].
    Progressing {
        /// The apply, to step again.
        applying: Box<Applying<'a>>,
        /// When to look again.
        requeue_after: Duration,
        /// What is waited for, with its last status.
        waiting: Vec<(ComponentId, String)>,
    },
}

/// An apply under way: holds the lock, the plan, and how far it got.
pub struct Applying<'a> {
    cx: Cx<'a>,
    book: Book<'a>,
    handle: Option<LockHandle>,
}

/// What a step reads: the run, the desired stack, the approved plan.
struct Cx<'a> {
    run: &'a Run,
    desired: &'a DesiredStack,
    prepared: Prepared,
    progress: &'a dyn Progress,
    guard: LeaseGuard,
}

/// What a step writes: state, outputs, and how far the apply got.
struct Book<'a> {
    rec: Recorder<'a>,
    outputs: Outputs,
    /// Unchanged components whose record is missing or stale: recorded without a release.
    stale: BTreeSet<ComponentId>,
    phase: Phase,
    /// Components of the current wave that are done.
    done: BTreeSet<ComponentId>,
    /// Components waited for, since when, and what they have so far.
    waiting: BTreeMap<ComponentId, Waiting>,
    /// Deletions still going: since when, last status.
    deleting: BTreeMap<ComponentId, (Instant, String)>,
    /// Deletions finished or given up.
    settled: BTreeSet<ComponentId>,
    failures: Vec<EngineError>,
}

impl std::fmt::Debug for Applying<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applying")
            .field("stack", &self.cx.desired.name)
            .field("environment", &self.cx.desired.environment)
            .field("phase", &self.book.phase)
            .field("waiting", &self.book.waiting.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where an apply is: each wave, then the deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Wave(usize),
    Deletions,
    Finished,
}

#[derive(Debug, Clone)]
struct Waiting {
    since: Instant,
    /// What create/update left (or, unchanged, what observe saw).
    applied: Applied,
    /// A replace whose delete is still going: create comes once it is gone.
    replacing: bool,
    status: String,
}

/// How one component's turn in a step ended.
enum Turn {
    Done(Applied),
    Waiting(Waiting),
    /// Not started: the run was cancelled first.
    Skipped,
    Failed(EngineError),
}

impl<'a> Applying<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        run: &'a Run,
        desired: &'a DesiredStack,
        prepared: Prepared,
        progress: &'a dyn Progress,
        handle: LockHandle,
        rec: Recorder<'a>,
        stale: BTreeSet<ComponentId>,
    ) -> Applying<'a> {
        Applying {
            book: Book {
                rec,
                outputs: prepared.outputs.clone(),
                stale,
                phase: Phase::Wave(0),
                done: BTreeSet::new(),
                waiting: BTreeMap::new(),
                deleting: BTreeMap::new(),
                settled: BTreeSet::new(),
                failures: Vec::new(),
            },
            cx: Cx {
                run,
                desired,
                prepared,
                progress,
                guard: handle.guard(),
            },
            handle: Some(handle),
        }
    }

    /// Goes as far as it can without waiting. Ends with the report, the error (release
    /// recorded, lock released), or [`Step::Progressing`].
    pub async fn step(mut self) -> Result<Step<'a>, EngineError> {
        // A lock broken meanwhile (`panka unlock --force`, or a lease that could not be renewed)
        // ends the run here, also while it only waits for health or a deletion: the fence
        // would refuse its next write anyway, and its holder should hear it now.
        if let Err(lost) = self.cx.guard.check() {
            self.book.failures.push(lost.into());
            return self.close().await.map(|r| Step::Done(Box::new(r)));
        }
        match self.book.advance(&self.cx).await {
            Ok(Some(requeue_after)) => {
                let waiting = self
                    .book
                    .waiting
                    .iter()
                    .map(|(id, w)| (id.clone(), w.status.clone()))
                    .chain(
                        self.book
                            .deleting
                            .iter()
                            .map(|(id, (_, s))| (id.clone(), s.clone())),
                    )
                    .collect();
                Ok(Step::Progressing {
                    applying: Box::new(self),
                    requeue_after,
                    waiting,
                })
            }
            Ok(None) => self.close().await.map(|r| Step::Done(Box::new(r))),
            Err(e) => {
                self.book.failures.push(e);
                self.close().await.map(|r| Step::Done(Box::new(r)))
            }
        }
    }

    /// Stops here, leaving the rest to a later run: records the release as in progress (or
    /// interrupted, when the run was cancelled) and releases the lock. What was applied is in
    /// state already; the next run plans from it and carries on.
    pub async fn suspend(mut self) -> Result<ApplyReport, EngineError> {
        if self.cx.run.cancel.is_cancelled() {
            return self.close().await;
        }
        // A lease lost since the last step: the run ends as failed, not as in progress.
        if let Err(lost) = self.cx.guard.check() {
            self.book.failures.push(lost.into());
            return self.close().await;
        }
        let release = self.record_and_unlock(ReleaseOutcome::InProgress).await;
        Ok(self.report(release?))
    }

    /// Writes the release as `outcome`, then releases the lock whatever the write did.
    async fn record_and_unlock(
        &mut self,
        outcome: ReleaseOutcome,
    ) -> Result<Option<panka_core::state::Release>, EngineError> {
        let release = self
            .book
            .rec
            .release(
                self.cx.desired,
                &self.cx.run.options,
                &self.cx.prepared.plan,
                outcome,
            )
            .await;
        self.unlock().await;
        release
    }

    /// The plan being applied.
    pub fn plan(&self) -> &plan::Plan {
        &self.cx.prepared.plan
    }

    /// Records the release and releases the lock; the report, or the failures.
    async fn close(&mut self) -> Result<ApplyReport, EngineError> {
        let interrupted = self.cx.run.cancel.is_cancelled() && self.book.phase != Phase::Finished;
        let outcome = if !self.book.failures.is_empty() {
            ReleaseOutcome::Failed
        } else if interrupted {
            ReleaseOutcome::Interrupted
        } else {
            ReleaseOutcome::Succeeded
        };
        let release = self.record_and_unlock(outcome).await;
        match outcome {
            ReleaseOutcome::Failed => {
                let mut all = std::mem::take(&mut self.book.failures);
                // The failure that stopped the apply comes first; a release that could not be
                // recorded is said too.
                if let Err(e) = release {
                    all.push(e);
                }
                Err(if all.len() == 1 {
                    all.remove(0)
                } else {
                    EngineError::Failed(all)
                })
            }
            ReleaseOutcome::Interrupted => {
                release?;
                Err(EngineError::Interrupted)
            }
            _ => Ok(self.report(release?)),
        }
    }

    async fn unlock(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A failed release leaves a lease that expires on its own.
            let _ = handle.release().await;
        }
    }

    fn report(&self, release: Option<panka_core::state::Release>) -> ApplyReport {
        ApplyReport {
            plan: self.cx.prepared.plan.clone(),
            release,
            outputs: self.book.outputs.clone(),
            duration: self.book.rec.started.elapsed(),
        }
    }
}

impl Book<'_> {
    /// `None` when finished (or stopped by failures or cancellation), else when to look again.
    /// Failures of components are collected and stop the phase; an error returned stops the
    /// whole apply.
    async fn advance(&mut self, cx: &Cx<'_>) -> Result<Option<Duration>, EngineError> {
        loop {
            // No new mutation after a failure or a cancellation: what was done is in state,
            // and closing records the release as failed or interrupted.
            if !self.failures.is_empty() || cx.run.cancel.is_cancelled() {
                return Ok(None);
            }
            match self.phase {
                Phase::Wave(n) if n < cx.prepared.plan.waves.len() => {
                    if let Some(again) = self.wave(cx, n).await? {
                        return Ok(Some(again));
                    }
                    if self.failures.is_empty() && !cx.run.cancel.is_cancelled() {
                        self.done.clear();
                        self.phase = Phase::Wave(n + 1);
                    }
                }
                Phase::Wave(_) => self.phase = Phase::Deletions,
                Phase::Deletions => {
                    if let Some(again) = self.deletions(cx).await? {
                        return Ok(Some(again));
                    }
                    // Finished only when every deletion ran: a cancel may have cut the list.
                    if self.failures.is_empty() && !cx.run.cancel.is_cancelled() {
                        self.phase = Phase::Finished;
                    }
                }
                Phase::Finished => return Ok(None),
            }
        }
    }

    /// One pass over wave `n`: starts what has not started, looks again at what is waited for,
    /// and records each component in state the moment it finishes, while the others go on.
    /// `Some(requeue)` while something is still waited for.
    async fn wave(&mut self, cx: &Cx<'_>, n: usize) -> Result<Option<Duration>, EngineError> {
        let wave = &cx.prepared.plan.waves[n];
        if self.done.is_empty() && self.waiting.is_empty() {
            cx.progress.event(Event::WaveStarted {
                number: n + 1,
                components: wave.iter().filter(|p| p.action.is_change()).count(),
            });
        }
        let wave_outputs = self.outputs.clone();
        let todo: Vec<(&ComponentPlan, Option<Waiting>)> = wave
            .iter()
            .filter(|p| !self.done.contains(&p.id))
            .map(|p| (p, self.waiting.get(&p.id).cloned()))
            .collect();
        let outputs = &wave_outputs;
        let turns = stream::iter(
            todo.into_iter()
                .map(|(p, waiting)| async move { (p, cx.turn(p, outputs, waiting).await) }),
        )
        .buffer_unordered(cx.run.options.concurrency.max(1));
        futures::pin_mut!(turns);
        let mut requeue: Option<Duration> = None;
        let mut stopped: Option<EngineError> = None;
        // Turns that finished while another was being recorded.
        let mut finished: std::collections::VecDeque<(&ComponentPlan, Turn)> =
            std::collections::VecDeque::new();
        loop {
            let Some((p, turn)) = finished.pop_front() else {
                match turns.next().await {
                    Some(t) => finished.push_back(t),
                    None => break,
                }
                continue;
            };
            if stopped.is_some() {
                // State can no longer be written (lease lost, store failing): let what is in
                // flight finish rather than abandon it half-way, and record nothing more.
                continue;
            }
            // The other turns keep going while this one is recorded: a request left half-sent
            // by a future nobody polls would hold a connection (and stall a busy endpoint).
            let settle = self.settle(cx, p, turn, &mut requeue);
            futures::pin_mut!(settle);
            let settled = loop {
                tokio::select! {
                    r = &mut settle => break r,
                    Some(t) = turns.next() => finished.push_back(t),
                }
            };
            if let Err(e) = settled {
                stopped = Some(e);
            }
        }
        match stopped {
            Some(e) => Err(e),
            None => Ok(requeue),
        }
    }

    /// Records what a component's turn ended in.
    async fn settle(
        &mut self,
        cx: &Cx<'_>,
        p: &ComponentPlan,
        turn: Turn,
        requeue: &mut Option<Duration>,
    ) -> Result<(), EngineError> {
        let changed = p.action.is_change();
        let component = &cx.desired.components[&p.id];
        match turn {
            Turn::Done(applied) => {
                self.outputs.insert(p.id.clone(), applied.outputs.clone());
                let since = self.waiting.remove(&p.id).map(|w| w.since);
                if changed || self.stale.contains(&p.id) {
                    self.rec
                        .applied(&p.id, component_state(component, &applied), cx.progress)
                        .await?;
                }
                if changed {
                    let since = since.unwrap_or(self.rec.started);
                    cx.progress
                        .event(Event::ComponentDone(p, since.elapsed(), &applied.outputs));
                }
                self.done.insert(p.id.clone());
            }
            Turn::Waiting(w) => {
                // A replace whose create just ran counts as new: its resource goes to state now.
                let first = self.waiting.get(&p.id).is_none_or(|o| o.replacing);
                if first && changed && !w.replacing {
                    // Changed but not healthy yet: in state now, so a crash or a requeue
                    // plans it as applied and only waits for it.
                    self.rec
                        .applied(&p.id, component_state(component, &w.applied), cx.progress)
                        .await?;
                }
                // The old resource of a replace is still being deleted: that may take as long as
                // any deletion, not only as long as a rollout.
                let timeout = if w.replacing {
                    cx.run.options.deletion_timeout
                } else {
                    cx.run.options.health_timeout
                };
                if w.since.elapsed() >= timeout {
                    let msg = format!("not healthy after {}", super::run::human(timeout));
                    cx.progress.event(Event::ComponentFailed(p, &msg));
                    self.failures.push(EngineError::Unhealthy {
                        component: p.id.clone(),
                        waited: w.since.elapsed(),
                        status: w.status.clone(),
                        degraded: false,
                    });
                    return Ok(());
                }
                cx.progress.event(Event::Waiting(&p.id, &w.status));
                let after = driver_of(cx.run, component)?.requeue_after();
                *requeue = Some(requeue.map_or(after, |r| r.min(after)));
                self.waiting.insert(p.id.clone(), w);
            }
            Turn::Skipped => {}
            Turn::Failed(e) => {
                let msg = e.to_string();
                cx.progress.event(Event::ComponentFailed(p, &msg));
                self.failures.push(e);
            }
        }
        Ok(())
    }

    /// The deletions, dependants first. A deletion AWS has not finished keeps what it depends
    /// on in place; the others go on. `Some(requeue)` while a deletion is still going.
    async fn deletions(&mut self, cx: &Cx<'_>) -> Result<Option<Duration>, EngineError> {
        let recorded_doc = cx.prepared.state.as_ref().map(|s| &s.document);
        let mut requeue: Option<Duration> = None;
        for p in &cx.prepared.plan.deletions {
            if self.settled.contains(&p.id) {
                continue;
            }
            // What a component still being deleted depends on must outlive it.
            if self
                .deleting
                .keys()
                .any(|d| plan::recorded_references(recorded_doc, d).contains(&p.id))
            {
                continue;
            }
            if cx.run.cancel.is_cancelled() || !self.failures.is_empty() {
                break;
            }
            if !self.deleting.contains_key(&p.id) {
                cx.progress.event(Event::ComponentStarted(p));
            }
            cx.guard.check()?;
            match cx.delete(p).await {
                Ok(Deletion::Done) => {
                    let since = self
                        .deleting
                        .remove(&p.id)
                        .map_or(self.rec.started, |d| d.0);
                    self.rec.deleted(&p.id, cx.progress).await?;
                    self.settled.insert(p.id.clone());
                    cx.progress
                        .event(Event::ComponentDone(p, since.elapsed(), &BTreeMap::new()));
                }
                Ok(Deletion::Progressing {
                    requeue_after,
                    status,
                }) => {
                    let since = self.deleting.get(&p.id).map_or_else(Instant::now, |d| d.0);
                    if since.elapsed() >= cx.run.options.deletion_timeout {
                        self.give_up_deleting(cx, p, &status);
                        continue;
                    }
                    cx.progress.event(Event::Waiting(&p.id, &status));
                    self.deleting.insert(p.id.clone(), (since, status));
                    requeue = Some(requeue.map_or(requeue_after, |r| r.min(requeue_after)));
                }
                Err(e) => {
                    let msg = e.to_string();
                    cx.progress.event(Event::ComponentFailed(p, &msg));
                    self.failures.push(e.into());
                }
            }
        }
        Ok(if self.deleting.is_empty() {
            None
        } else {
            // A deletion still going is looked at again even when this pass did not reach it.
            Some(requeue.unwrap_or(Duration::from_secs(5)))
        })
    }

    /// A deletion past the deletion timeout: it stays in state, what it depends on stays too,
    /// and the apply fails saying a later run finishes it.
    fn give_up_deleting(&mut self, cx: &Cx<'_>, p: &ComponentPlan, status: &str) {
        self.deleting.remove(&p.id);
        self.settled.insert(p.id.clone());
        let message = format!(
            "{status} after {}; run the apply (or destroy) again later to finish it",
            super::run::human(cx.run.options.deletion_timeout)
        );
        cx.progress.event(Event::ComponentFailed(p, &message));
        self.failures.push(
            DriverError::StillDeleting {
                component: p.id.clone(),
                message,
            }
            .into(),
        );
        let recorded = cx.prepared.state.as_ref().map(|s| &s.document);
        for d in &cx.prepared.plan.deletions {
            if plan::recorded_references(recorded, &p.id).contains(&d.id) {
                self.settled.insert(d.id.clone());
                let msg = format!(
                    "left in place: {}, which depends on it, is still being deleted; run the destroy again later",
                    p.id
                );
                cx.progress.event(Event::ComponentFailed(d, &msg));
            }
        }
    }
}

impl Cx<'_> {
    /// One component's share of a step: mutate it (once), then look at its health (once).
    async fn turn(&self, p: &ComponentPlan, outputs: &Outputs, waiting: Option<Waiting>) -> Turn {
        match self.try_turn(p, outputs, waiting).await {
            Ok(t) => t,
            Err(e) => Turn::Failed(e),
        }
    }

    async fn try_turn(
        &self,
        p: &ComponentPlan,
        outputs: &Outputs,
        waiting: Option<Waiting>,
    ) -> Result<Turn, EngineError> {
        let component = &self.desired.components[&p.id];
        let driver = driver_of(self.run, component)?;
        let lookups = self.prepared.lookups(component.kind());
        let observed = self
            .prepared
            .observed
            .get(&p.id)
            .cloned()
            .unwrap_or_default();
        let (applied, since) = match waiting {
            Some(w) if w.replacing => {
                // The old resource was being deleted: carry on with the replace.
                if self.run.cancel.is_cancelled() {
                    return Ok(Turn::Skipped);
                }
                self.guard.check()?;
                match driver.delete(&p.id, &observed.identifiers).await? {
                    Deletion::Progressing { status, .. } => {
                        return Ok(Turn::Waiting(Waiting { status, ..w }))
                    }
                    Deletion::Done => {
                        self.guard.check()?;
                        // Health is timed from the create, not from the delete before it.
                        let applied = driver.create(component, outputs, lookups).await?;
                        (applied, Instant::now())
                    }
                }
            }
            Some(w) => (w.applied, w.since),
            None if !p.action.is_change() => {
                let applied = applied_from(&observed);
                // Unchanged but not settled (a rollout still going, or stuck): waited for like
                // a changed component; what observe saw is the first look.
                return Ok(health_turn(
                    p,
                    observed.health,
                    observed.status,
                    applied,
                    Instant::now(),
                ));
            }
            None => {
                if self.run.cancel.is_cancelled() {
                    return Ok(Turn::Skipped);
                }
                self.progress.event(Event::ComponentStarted(p));
                self.guard.check()?;
                let applied = match &p.action {
                    Action::Create => driver.create(component, outputs, lookups).await?,
                    Action::Update => {
                        driver
                            .update(component, outputs, lookups, &p.diffs, &observed)
                            .await?
                    }
                    Action::Replace { .. } => {
                        match driver.delete(&p.id, &observed.identifiers).await? {
                            Deletion::Done => {
                                self.guard.check()?;
                                driver.create(component, outputs, lookups).await?
                            }
                            Deletion::Progressing { status, .. } => {
                                return Ok(Turn::Waiting(Waiting {
                                    since: Instant::now(),
                                    applied: Applied::default(),
                                    replacing: true,
                                    status,
                                }))
                            }
                        }
                    }
                    Action::Delete | Action::NoOp | Action::Conflict { .. } => {
                        return Ok(Turn::Skipped)
                    }
                };
                (applied, Instant::now())
            }
        };
        let o = driver.observe(&p.id, Some(&applied.identifiers)).await?;
        let mut applied = applied;
        if o.health == Health::Healthy {
            // Observed outputs are authoritative (e.g. an endpoint assigned late).
            applied.outputs.extend(o.outputs);
            applied.identifiers.extend(o.identifiers);
        }
        Ok(health_turn(p, o.health, o.status, applied, since))
    }

    /// Deletes what state records for a component.
    async fn delete(&self, p: &ComponentPlan) -> Result<Deletion, DriverError> {
        let recorded = self.prepared.recorded(&p.id).cloned().unwrap_or_default();
        match Kind::from_recorded(&recorded.kind).and_then(|k| self.run.drivers.get(k)) {
            Some(driver) => driver.delete(&p.id, &recorded.identifiers).await,
            None => Err(DriverError::Unexpected {
                component: p.id.clone(),
                message: format!(
                    "state records kind `{}`, which panka cannot delete",
                    recorded.kind
                ),
            }),
        }
    }
}

/// What one look at a component's health means for its turn.
fn health_turn(
    p: &ComponentPlan,
    health: Health,
    status: String,
    applied: Applied,
    since: Instant,
) -> Turn {
    match health {
        Health::Healthy => Turn::Done(applied),
        Health::Degraded(why) => Turn::Failed(EngineError::Unhealthy {
            component: p.id.clone(),
            waited: since.elapsed(),
            status: why,
            degraded: true,
        }),
        Health::Progressing | Health::Missing => Turn::Waiting(Waiting {
            since,
            applied,
            replacing: false,
            status,
        }),
    }
}

/// What observe saw, as what an apply of it would have left.
pub(crate) fn applied_from(o: &panka_core::plan::Observation) -> Applied {
    Applied {
        identifiers: o.identifiers.clone(),
        outputs: o.outputs.clone(),
    }
}
