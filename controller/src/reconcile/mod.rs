//! The controller's reconcile: one function for one stack/environment, and one error policy —
//! the kube-runtime shape, with no Kubernetes in it. The git poller and the watches of custom
//! resources only decide *when* a target is looked at; what happens is decided here.
//!
//! One pass: read the desired stack at the source's revision (load → resolve → graph) →
//! observe and plan without the lock (a read-only pass never blocks the CLI) → act by case —
//! the repository changed: apply it (unless a rollback pinned the target: then only keep the
//! pinned release); only drift: per the stack's `drift.mode` (`remediate` applies the fix,
//! `report` records it, `ignore` does neither) → record where the target stands
//! ([`SyncStatus`], beside the state). Acting takes the lock without waiting (someone holding
//! it is reported as `Locked` and retried with backoff), re-plans under it and applies exactly
//! the plan decided on. In environments that need approval the plan is recorded as pending and
//! applied only once `panka approve` names it.
//!
//! Between passes a target keeps only its failure count (for backoff) and the last revision
//! that loaded (so drift is still acted on while a newer one is invalid): every pass reads
//! state, AWS and the desired state afresh, so any number run at once in one process. A Stack
//! resource's `suspend` stops applies and remediation (drift is still reported); its
//! `panka.io/approve-plan` annotation approves a pending plan.

pub mod metrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use kube::runtime::controller::Action;
use panka_core::diag::Diagnostics;
use panka_core::drift::Severity;
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{Health, Observation, PlanOptions};
use panka_core::source::FileTree;
use panka_core::state::ReleaseKind;
use panka_core::sync::{
    plan_id, short_commit, Approved, PendingPlan, Phase, Readiness, Remediated, RolledBack,
    Rollout, SyncError, SyncStatus,
};
use panka_crds::resource::Stack;
use panka_crds::spec::DriftMode;
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::backend::Backends;
use crate::budget::Budget;
use crate::engine::{Approval, EngineError, ErrorClass, Event, Prepared, Progress, Refusal, Step};
use crate::session::{
    needs_approval, pending_changes, remediation, step_until_done, DriftCheck, FailedApply, Limits,
    Operation, Session, Target,
};
use crate::state::StateKey;
use metrics::{Metrics, ResultLabels, SeverityLabels, TargetLabels};

/// Where desired stacks come from: a revision, and a stack's files at it.
pub trait StackSource: Send + Sync + std::fmt::Debug {
    /// The revision of `target` to reconcile (a commit, or a hash of its custom resources),
    /// once there is one.
    fn revision(&self, target: &Stack) -> Option<String>;

    /// Which other object manages `target`'s stack and environment, when one does (two Stack
    /// resources naming the same pair): `target` is then neither applied nor destroyed.
    fn claimed_by(&self, _target: &Stack) -> Option<String> {
        None
    }
    /// The files of `target`'s stack at `revision`, or why they cannot be read (file and line,
    /// or resource and field).
    fn read(&self, revision: &str, target: &Stack) -> Result<FileTree, Diagnostics>;

    /// `target`'s desired stack at `revision`: `None` when the stack does not deploy to the
    /// target's environment; the problems, one per line with file and line (or resource and
    /// field), when it does not load — or, to deploy it, when a policy of the repository denies
    /// it (policy warnings are logged). Blocking work (parsing): called off the async workers.
    fn desired(
        &self,
        revision: &str,
        target: &Stack,
        purpose: Purpose,
    ) -> Result<Option<(DesiredStack, Graph)>, String> {
        let (stack, environment) = (&target.spec.stack, &target.spec.environment);
        let tree = self.read(revision, target).map_err(|d| d.to_string())?;
        let loaded =
            panka_core::validate::load_tree(stack, &tree).map_err(|(d, _)| d.to_string())?;
        if !panka_core::resolve::environments(&loaded).contains(environment) {
            return Ok(None);
        }
        let options = panka_core::resolve::Options::default();
        if purpose == Purpose::Remove {
            return panka_core::validate::plan_input(&loaded, environment, &options)
                .map(Some)
                .map_err(|d| d.to_string());
        }
        let checked = panka_core::validate::checked_input(&loaded, environment, &options)
            .map_err(|d| d.to_string())?;
        for w in &checked.warnings {
            warn!(warning = %w, "policy warning");
        }
        Ok(Some((checked.desired, checked.graph)))
    }
}

/// What a desired stack is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To deploy it (or keep it deployed): the repository's policies judge it.
    Deploy,
    /// To remove what was deployed (a Stack deleted with `deletionPolicy: Delete`): the
    /// policies are not asked, as a rule about components must never stop their removal.
    Remove,
}

/// Where a target's status goes besides `sync.json` (which `panka status` reads): in
/// Kubernetes mode, the Stack resource's status and its Events.
#[async_trait::async_trait]
pub trait StatusSink: Send + Sync {
    /// Publishes where `report.object` stands after a pass.
    async fn publish(&self, report: &Report<'_>);
    /// The `panka.io/approve-plan` annotation of `object` was acted on (`outcome` says how):
    /// take it off.
    async fn approval_handled(&self, object: &Stack, outcome: &Result<String, String>);
}

/// One pass's result, for a [`StatusSink`].
pub struct Report<'a> {
    /// The Stack object the pass was for.
    pub object: &'a Stack,
    /// Where the target stands now.
    pub status: &'a SyncStatus,
    /// Where it stood before the pass (from `sync.json`).
    pub previous: Option<&'a SyncStatus>,
    /// The pass rolled a failed apply back.
    pub rolled_back: bool,
}

/// The annotation that approves a pending plan: `panka.io/approve-plan: <plan id>`.
pub const APPROVE_ANNOTATION: &str = "panka.io/approve-plan";

/// How the controller behaves; from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the repository is fetched (a target waiting for approval is looked at as
    /// often).
    pub poll_interval: Duration,
    /// How often every target's drift is checked, unless its StackInfra says otherwise.
    pub drift_interval: Duration,
    /// How long a pass waits for a rollout before it lets the worker go and looks again
    /// later.
    pub rollout_wait: Duration,
    /// How long a rollout may take in all, counted from the release that started it.
    pub rollout_timeout: Duration,
    /// Let applies delete components that hold data (the CLI's `--allow-destroy`).
    pub allow_destroy: bool,
    /// Who acts: the lock holder and the releases' actor.
    pub actor: String,
}

/// What every reconcile shares: the source, the backends, the AWS configuration, metrics.
pub struct Context {
    /// The desired state.
    pub source: Arc<dyn StackSource>,
    /// State and locks.
    pub backends: Backends,
    /// The AWS configuration (behind the call budget); the region is set per stack.
    pub sdk: SdkConfig,
    /// The AWS call budget.
    pub budget: Budget,
    /// Settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Metrics,
    /// Cancelled on shutdown: every run stops at the next safe point.
    pub shutdown: CancellationToken,
    /// Where status goes besides `sync.json` (Kubernetes mode).
    pub status: Option<Arc<dyn StatusSink>>,
    /// The drivers of every run, when not the standard ones ([`Context::with_drivers`]).
    drivers: Option<crate::engine::DriverFactory>,
    /// Failures in a row, per target (for backoff); cleared by a pass that succeeds.
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Sessions by region (clients only; no state of any run).
    sessions: AsyncMutex<HashMap<String, Arc<Session>>>,
    /// The last commit of each target that loaded, and what it resolved to: while a newer
    /// commit is invalid, drift is still checked (and remediated) against it.
    last_good: Mutex<HashMap<(String, String), Arc<Good>>>,
}

/// A commit that loaded, and its desired stack.
struct Good {
    revision: String,
    desired: DesiredStack,
    graph: Graph,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("source", &self.source)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context over `source`, `backends` and `sdk`.
    pub fn new(
        source: Arc<dyn StackSource>,
        backends: Backends,
        sdk: SdkConfig,
        budget: Budget,
        settings: Settings,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Context {
        Context {
            source,
            backends,
            sdk,
            budget,
            settings,
            metrics,
            shutdown,
            status: None,
            drivers: None,
            failures: Mutex::new(HashMap::new()),
            sessions: AsyncMutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
        }
    }

    /// The same context, publishing status to `sink` too.
    pub fn with_status(mut self, sink: Arc<dyn StatusSink>) -> Context {
        self.status = Some(sink);
        self
    }

    /// The same context, its runs using the drivers `factory` makes (see
    /// [`Session::with_drivers`]).
    pub fn with_drivers(mut self, factory: crate::engine::DriverFactory) -> Context {
        self.drivers = Some(factory);
        self
    }

    async fn session(&self, region: &str) -> Arc<Session> {
        let mut sessions = self.sessions.lock().await;
        sessions
            .entry(region.to_owned())
            .or_insert_with(|| {
                let sdk = self
                    .sdk
                    .to_builder()
                    .region(aws_config::Region::new(region.to_owned()))
                    .build();
                let session = Session::with(self.backends.clone(), sdk)
                    .with_actor(self.settings.actor.clone())
                    .counting_into(self.metrics.calls.clone());
                Arc::new(match &self.drivers {
                    Some(factory) => session.with_drivers(factory.clone()),
                    None => session,
                })
            })
            .clone()
    }

    fn failed(&self, target: &(String, String)) -> u32 {
        let Ok(mut f) = self.failures.lock() else {
            return 1;
        };
        let n = f.entry(target.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, target: &(String, String)) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(target);
        }
    }
}

/// Why a pass failed; [`error_policy`] decides when to look again.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The repository's commit cannot be deployed as it is (file and line in the message).
    #[error("{0}")]
    Invalid(String),
    /// The Stack object does not name a stack and environment.
    #[error("the Stack object has no stack or environment")]
    NoTarget,
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A Kubernetes request failed (the finalizer's).
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    /// The stack's specs are those of a deploy that failed and was rolled back.
    #[error(
        "the deploy of revision {commit} failed ({reason}); the same specs are not deployed \
         again: change the stack's specs (a fix), or apply them by hand (`panka apply`) to try \
         again"
    )]
    RolledBack {
        /// The revision whose deploy failed (short).
        commit: String,
        /// What failed, and what the rollback did.
        reason: String,
    },
}

impl ReconcileError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReconcileError::Invalid(_)
            | ReconcileError::NoTarget
            | ReconcileError::RolledBack { .. } => ErrorClass::Permanent,
            ReconcileError::Engine(e) => e.class(),
            ReconcileError::Kubernetes(_) => ErrorClass::Transient,
        }
    }
}

/// Reconciles the stack/environment `stack` stands for. Always requeues: AWS does not say
/// when it drifts.
pub async fn reconcile(stack: Arc<Stack>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let target = (stack.spec.stack.clone(), stack.spec.environment.clone());
    if target.0.is_empty() || target.1.is_empty() {
        return Err(ReconcileError::NoTarget);
    }
    let span = tracing::info_span!(
        "reconcile",
        stack = %target.0,
        environment = %target.1,
        commit = tracing::field::Empty,
        release = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let outcome = pass(&stack, &ctx).instrument(span.clone()).await;
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.sync_throttles(&ctx.budget);
    let result = match &outcome {
        Ok(p) => p.result,
        Err(e) if e.class() == ErrorClass::Conflict => "locked",
        Err(ReconcileError::Invalid(_)) => "invalid",
        Err(ReconcileError::RolledBack { .. }) => "held",
        Err(_) => "error",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels {
            result: result.to_owned(),
        })
        .inc();
    let labels = TargetLabels {
        stack: target.0.clone(),
        environment: target.1.clone(),
    };
    ctx.metrics.target_reconciles.get_or_create(&labels).inc();
    match outcome {
        Ok(p) => {
            ctx.succeeded(&target);
            ctx.metrics
                .last_sync
                .get_or_create(&labels)
                .set(jiff::Timestamp::now().as_second());
            Ok(p.action)
        }
        Err(e) => {
            if e.class() == ErrorClass::Conflict {
                ctx.metrics.lock_waits.get_or_create(&labels).inc();
            }
            span.in_scope(|| warn!(error = %e, class = ?e.class(), "reconcile failed"));
            Err(e)
        }
    }
}

/// Destroys everything `object`'s stack/environment deployed — data included, under the
/// lock, recorded as a `destroy` release — as `panka destroy --allow-destroy` would. For a
/// Stack resource deleted with `deletionPolicy: Delete`: its finalizer stays until this
/// succeeds. The stack's provider and region come from its desired state (the source's
/// revision, or the last that loaded in this process).
pub async fn destroy(object: Arc<Stack>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let (stack, environment) = (object.spec.stack.clone(), object.spec.environment.clone());
    if stack.is_empty() || environment.is_empty() {
        return Err(ReconcileError::NoTarget);
    }
    let span = tracing::info_span!("destroy", stack = %stack, environment = %environment);
    async {
        if let Some(holder) = ctx.source.claimed_by(&object) {
            warn!(%holder, "deleted Stack did not manage the stack (another does): nothing destroyed");
            return Ok(Action::await_change());
        }
        let key = StateKey::new(&stack, &environment)
            .map_err(|e| ReconcileError::Invalid(e.to_string()))?;
        if ctx.backends.state.read(&key).await.map_err(EngineError::from)?.is_none() {
            info!("nothing was ever applied: nothing to destroy");
            return Ok(Action::await_change());
        }
        let loaded = match ctx.source.revision(&object) {
            Some(revision) => desired_at(&ctx, &revision, &object, Purpose::Remove).await.map(|d| d.map(|(d, _)| (revision, d))),
            None => Err("nothing read yet".to_owned()),
        };
        let (revision, desired) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) | Err(_) => {
                let last = ctx
                    .last_good
                    .lock()
                    .ok()
                    .and_then(|g| g.get(&(stack.clone(), environment.clone())).cloned());
                match last {
                    Some(good) => (good.revision.clone(), good.desired.clone()),
                    None => {
                        let why = loaded.err().unwrap_or_else(|| "the stack has no such environment".to_owned());
                        return Err(ReconcileError::Invalid(format!(
                            "cannot destroy {stack}/{environment}: its desired state does not load ({why}); restore it, or set deletionPolicy: Orphan"
                        )));
                    }
                }
            }
        };
        let session = ctx.session(&desired.provider.region).await;
        let target = Target {
            commit: Some(revision),
            ..Target::default()
        };
        let (empty, graph) = crate::session::desired_for_destroy(desired, None);
        let limits = Limits {
            allow_destroy: true,
            ..Limits::default()
        };
        let engine = session.engine(Duration::ZERO).map_err(EngineError::from)?;
        let run = engine.run(
            &empty,
            session.options_for(&target, Operation::Destroy(limits)),
            ctx.shutdown.child_token(),
        );
        let prepared = engine.plan(&run, &empty, &graph).await?;
        prepared.allowed(run.options())?;
        if !prepared.plan.has_changes() {
            info!("nothing left to destroy");
            return Ok(Action::await_change());
        }
        let approval = prepared.approve();
        let report = match engine.apply(&run, &empty, &graph, &approval, &Logged).await? {
            Err(report) => report,
            Ok(applying) => step_until_done(applying, run.cancellation()).await?,
        };
        info!(
            release = report.release.as_ref().map_or("-", |r| r.id.as_str()),
            "destroyed"
        );
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

/// When to look at a target again after `error`: transient errors and a held lock back off
/// exponentially (5 s doubling to 5 min, with jitter); permanent ones wait for a change, and
/// are looked at again at the drift interval in case AWS or the lock changed.
pub fn error_policy(stack: Arc<Stack>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let target = (stack.spec.stack.clone(), stack.spec.environment.clone());
    let attempts = ctx.failed(&target);
    match error.class() {
        ErrorClass::Permanent => Action::requeue(jittered(ctx.settings.drift_interval)),
        ErrorClass::Transient | ErrorClass::Conflict => Action::requeue(backoff(attempts)),
    }
}

/// Exponential backoff with jitter: 5 s, 10 s, 20 s … up to 5 min, each ±20 %.
pub fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(5).saturating_mul(1 << attempts.clamp(1, 7).saturating_sub(1));
    jittered(base.min(Duration::from_secs(300)))
}

/// `d` ±20 %, so targets scheduled together spread out.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// What one pass did.
struct Passed {
    action: Action,
    /// For the reconciles metric.
    result: &'static str,
}

/// What a pass acts on.
enum Job {
    /// The repository changed: apply it.
    Deploy,
    /// Only drift: put back what was applied (toward the pinned release when pinned).
    Remediate(Box<(DesiredStack, Graph)>),
}

async fn pass(object: &Stack, ctx: &Context) -> Result<Passed, ReconcileError> {
    let target = &(object.spec.stack.clone(), object.spec.environment.clone());
    let (stack, environment) = (target.0.as_str(), target.1.as_str());
    if let Some(holder) = ctx.source.claimed_by(object) {
        // Another resource drives this stack: this one touches neither AWS nor `sync.json`
        // (the holder's); only its own status says why.
        let e = ReconcileError::Invalid(format!(
            "{holder} already manages stack `{stack}` in `{environment}`: this Stack does nothing; delete it (deletionPolicy does not apply) or change its spec.stack"
        ));
        if let Some(sink) = &ctx.status {
            let status = SyncStatus {
                stack: stack.to_owned(),
                environment: environment.to_owned(),
                controller: ctx.settings.actor.clone(),
                phase: Phase::Invalid,
                error: Some(SyncError {
                    at: jiff::Timestamp::now().to_string(),
                    class: "permanent".to_owned(),
                    message: e.to_string(),
                    attempts: 1,
                }),
                ..SyncStatus::default()
            };
            sink.publish(&Report {
                object,
                status: &status,
                previous: None,
                rolled_back: false,
            })
            .await;
        }
        return Err(e);
    }
    let Some(revision) = ctx.source.revision(object) else {
        // Nothing fetched yet: the poller enqueues every target once it has a commit.
        return Ok(Passed {
            action: Action::requeue(ctx.settings.poll_interval),
            result: "pending",
        });
    };
    tracing::Span::current().record("commit", short_commit(&revision).as_str());
    let key =
        StateKey::new(stack, environment).map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    let store = &ctx.backends.state;
    // sync.json also holds what passes carry over (a watched rollout, a held deploy): a pass
    // that cannot read it does not act without it.
    let previous = store.sync(&key).await.map_err(EngineError::from)?;
    let mut status = SyncStatus {
        stack: stack.to_owned(),
        environment: environment.to_owned(),
        controller: ctx.settings.actor.clone(),
        commit: Some(revision.clone()),
        ..previous.clone().unwrap_or_default()
    };
    status.error = None;
    status.locked_by = None;
    let approval = approve_by_annotation(ctx, object, &key).await;
    let suspended = object.spec.suspend == Some(true);

    let good = match desired_at(ctx, &revision, object, Purpose::Deploy).await {
        Ok(Some((desired, graph))) => {
            let good = Arc::new(Good {
                revision: revision.clone(),
                desired,
                graph,
            });
            if let Ok(mut g) = ctx.last_good.lock() {
                g.insert(target.clone(), good.clone());
            }
            good
        }
        Ok(None) => {
            // The stack does not deploy to this environment (any more): nothing to keep.
            info!("the stack does not deploy to this environment at this commit");
            return Ok(Passed {
                action: Action::await_change(),
                result: "not_deployed",
            });
        }
        Err(message) => {
            let e = ReconcileError::Invalid(message);
            let last = ctx
                .last_good
                .lock()
                .ok()
                .and_then(|g| g.get(target).cloned());
            if let Some(good) = last {
                // The previous commit stays deployed, and kept: drift is still acted on.
                let kept = act(ctx, &key, &good, &mut status, true, suspended).await;
                if let Err(k) = kept {
                    warn!(error = %k, "drift check of the last good commit failed");
                }
            }
            status.commit = Some(revision.clone());
            record(
                ctx,
                object,
                &key,
                &mut status,
                Phase::Invalid,
                Some(&e),
                previous.as_ref(),
            )
            .await;
            if let (Some(sink), Some(outcome)) = (&ctx.status, &approval) {
                sink.approval_handled(object, outcome).await;
            }
            return Err(e);
        }
    };
    let desired = &good.desired;
    let outcome = act(ctx, &key, &good, &mut status, false, suspended).await;
    let phase = match &outcome {
        Ok(p) => p.phase,
        Err(e) if e.class() == ErrorClass::Conflict => {
            if let ReconcileError::Engine(EngineError::Lock(l)) = e {
                status.locked_by = l.holder().map(|h| {
                    format!(
                        "{} ({}) since {}",
                        h.locked_by,
                        h.operation,
                        crate::lock::format_epoch(h.locked_at)
                    )
                });
            }
            Phase::Locked
        }
        Err(_) => Phase::Failed,
    };
    record(
        ctx,
        object,
        &key,
        &mut status,
        phase,
        outcome.as_ref().err(),
        previous.as_ref(),
    )
    .await;
    if let (Some(sink), Some(outcome)) = (&ctx.status, &approval) {
        sink.approval_handled(object, outcome).await;
    }
    let acted = outcome?;
    let interval = drift_interval(desired, ctx.settings.drift_interval);
    Ok(Passed {
        action: Action::requeue(
            acted
                .requeue
                .map_or_else(|| jittered(interval), |d| d.min(interval)),
        ),
        result: acted.result,
    })
}

/// The stack at `revision` resolved for `environment` (and, to deploy it, judged by the
/// policies); `None` when the stack has no such environment; the problems, one per line with
/// file and line, when it does not load.
async fn desired_at(
    ctx: &Context,
    revision: &str,
    object: &Stack,
    purpose: Purpose,
) -> Result<Option<(DesiredStack, Graph)>, String> {
    let source = ctx.source.clone();
    let (revision, target) = (revision.to_owned(), object.clone());
    // Reading a commit's objects and parsing YAML is blocking work: off the async workers.
    tokio::task::spawn_blocking(move || source.desired(&revision, &target, purpose))
        .await
        .map_err(|e| format!("reading the stack failed: {e}"))?
}

/// The drift interval of `desired` (its StackInfra's `drift.interval`, else the default).
fn drift_interval(desired: &DesiredStack, default: Duration) -> Duration {
    desired
        .infra
        .drift
        .as_ref()
        .and_then(|d| d.interval.as_deref())
        .and_then(panka_core::resolve::check::parse_duration)
        .unwrap_or(default)
}

/// One digest of the specs of every component of `desired`: equal digests, the same stack to
/// deploy.
fn specs_digest(desired: &DesiredStack) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (id, component) in &desired.components {
        hash.update(format!("{id}\0{}\0", component.hash()).as_bytes());
    }
    hex::encode(hash.finalize())
}

/// The error of a pass that does not deploy `held`'s specs again.
fn held_error(held: &RolledBack) -> ReconcileError {
    ReconcileError::RolledBack {
        commit: short_commit(&held.commit).to_owned(),
        reason: held.reason.clone(),
    }
}

/// What acting did.
struct Acted {
    phase: Phase,
    result: &'static str,
    /// Look again sooner than the drift interval.
    requeue: Option<Duration>,
}

impl Acted {
    fn new(phase: Phase, result: &'static str) -> Acted {
        Acted {
            phase,
            result,
            requeue: None,
        }
    }
}

/// Acts on `good` (the commit's desired stack): deploys it when the repository changed, or
/// acts on drift per the mode. `drift_only`: never deploy (a newer commit is invalid; `good` is
/// the last that loaded).
async fn act(
    ctx: &Context,
    key: &StateKey,
    good: &Good,
    status: &mut SyncStatus,
    drift_only: bool,
    suspended: bool,
) -> Result<Acted, ReconcileError> {
    let (revision, desired, graph) = (good.revision.as_str(), &good.desired, &good.graph);
    let session = ctx.session(&desired.provider.region).await;
    let target = Target {
        commit: Some(revision.to_owned()),
        ..Target::default()
    };
    let snapshot = ctx
        .backends
        .state
        .read(key)
        .await
        .map_err(EngineError::from)?;
    let doc = snapshot.as_ref().map(|s| &s.document);
    let pin = doc
        .and_then(|d| d.pin_holding(None))
        .map(|(_, p)| p.clone());
    status.pinned_to = pin.as_ref().map(|p| p.release.clone());
    let pending = doc.map_or_else(
        || desired.components.keys().cloned().collect(),
        |d| pending_changes(desired, d, &PlanOptions::default()),
    );
    let mode = desired
        .infra
        .drift
        .as_ref()
        .and_then(|d| d.mode)
        .unwrap_or(DriftMode::Report);
    // A deploy that failed and was rolled back is not tried again while the repository's specs
    // are the same (it would fail and be rolled back again, every pass): a fix, or the same
    // specs applied by hand, ends the hold.
    let specs = specs_digest(desired);
    if status
        .rolled_back
        .as_ref()
        .is_some_and(|r| r.specs != specs || pending.is_empty())
    {
        status.rolled_back = None;
    }
    let held = status.rolled_back.clone();

    if pending.is_empty() && pin.is_none() {
        // Everything the commit asks for is applied; drift is another matter.
        status.synced_commit = Some(revision.to_owned());
    }
    // Observe without the lock: the drift check records its freshness whatever comes next.
    let check = if doc.is_some() && mode != DriftMode::Ignore {
        let check = session.check_drift(&target, desired).await?;
        note_drift(ctx, status, &check);
        Some(check)
    } else {
        None
    };

    if suspended {
        // `spec.suspend`: hands off; drift (checked above when due) is still reported, by the
        // Drifted condition.
        info!("suspended (spec.suspend): nothing is applied or remediated");
        return Ok(Acted::new(Phase::Suspended, "suspended"));
    }
    // A rollout an earlier pass let go of: watched until it settles, unless a new commit
    // (the fix, often) is to be deployed.
    if let Some(rollout) = status.rollout.clone() {
        let new_commit = rollout.commit != revision && !pending.is_empty() && !drift_only;
        if new_commit {
            status.rollout = None;
        } else {
            let prepared = session.plan(&target, desired, graph).await?;
            match watch_rollout(ctx, &prepared, &rollout, pin.is_some()).map_err(|e| *e)? {
                Some(acted) => return Ok(acted),
                None => status.rollout = None,
            }
        }
    }
    let job = match (&pin, pending.is_empty(), check) {
        // A new commit (or a stack never applied): deploy it.
        (None, false, _) if !drift_only && held.is_none() => Job::Deploy,
        // Pinned or unchanged: only drift is acted on, per the mode.
        (_, _, Some(check)) if check.report.has_drift() => match mode {
            // Held: what state records (the rolled-back specs) is what drift is put back to,
            // as for a pin; the repository's changes are the held ones.
            DriftMode::Remediate | DriftMode::RemediateUnattended if held.is_some() => {
                Job::Remediate(Box::new((check.applied, check.graph)))
            }
            DriftMode::Remediate | DriftMode::RemediateUnattended => Job::Remediate(Box::new(
                remediation(&target, (desired, graph), check, false)?,
            )),
            DriftMode::Report | DriftMode::Ignore => {
                // Held: the hold is the news (the Drifted condition still shows the drift).
                if let (Some(h), false) = (&held, drift_only) {
                    return Err(held_error(h));
                }
                return Ok(Acted::new(Phase::Drifted, "drifted"));
            }
        },
        (Some(_), false, _) => {
            info!("pinned by a rollback: the repository's changes wait for `panka resume`");
            return Ok(Acted::new(Phase::Pinned, "pinned"));
        }
        (Some(_), true, _) => return Ok(Acted::new(Phase::Pinned, "pinned")),
        // Only drift is looked at, and there is none.
        (None, false, _) => {
            return match &held {
                // (A pass of the last good commit, a newer one being invalid, says nothing.)
                Some(h) if !drift_only => Err(held_error(h)),
                _ => Ok(Acted::new(Phase::Synced, "synced")),
            };
        }
        (None, true, _) => return Ok(Acted::new(Phase::Synced, "synced")),
    };

    let (apply_desired, apply_graph, operation) = match &job {
        Job::Deploy => (desired, graph, Operation::Apply(limits(ctx))),
        Job::Remediate(d) => (&d.0, &d.1, Operation::Remediate(limits(ctx))),
    };
    let engine = session.engine(Duration::ZERO).map_err(EngineError::from)?;
    let run = engine.run(
        apply_desired,
        session.options_for(&target, operation),
        ctx.shutdown.child_token(),
    );
    let prepared = engine.plan(&run, apply_desired, apply_graph).await?;
    prepared.allowed(run.options())?;
    // A deploy whose records are stale while AWS matches (a spec changed only where AWS cannot
    // see it) goes on to the apply, which brings them up to date without a release; else
    // `pending` never empties and every pass plans the stack again.
    let stale = matches!(job, Job::Deploy) && !prepared.stale_records(apply_desired).is_empty();
    if !prepared.plan.has_changes() && settled(&prepared) && !stale {
        if let Some(h) = &held {
            // The drift went by itself; the held specs are still not deployed.
            return Err(held_error(h));
        }
        let phase = if pin.is_some() {
            Phase::Pinned
        } else {
            Phase::Synced
        };
        status.synced_commit = Some(revision.to_owned());
        return Ok(Acted::new(phase, "synced"));
    }

    // The approval gate: a plan needing approval is recorded and waited for.
    let unattended = matches!(job, Job::Remediate(_)) && mode == DriftMode::RemediateUnattended;
    let kind = match job {
        Job::Deploy => ReleaseKind::Apply,
        Job::Remediate(_) => ReleaseKind::Remediation,
    };
    let mut approved_plan = None;
    let approval = if needs_approval(desired) && !unattended && prepared.plan.has_changes() {
        match gate(ctx, key, revision, apply_desired, &prepared, kind).await? {
            Gate::Approved(pending) => {
                let approval = Approval::of_fingerprint(pending.fingerprint.clone());
                approved_plan = Some(*pending);
                approval
            }
            Gate::Waiting(id) => {
                status.awaiting_approval = Some(id);
                return Ok(Acted {
                    phase: Phase::AwaitingApproval,
                    result: "awaiting_approval",
                    requeue: Some(ctx.settings.poll_interval),
                });
            }
        }
    } else {
        prepared.approve()
    };
    status.awaiting_approval = None;

    let progress = Logged;
    let report = match engine
        .apply(&run, apply_desired, apply_graph, &approval, &progress)
        .await
    {
        Ok(Err(report)) => report,
        Ok(Ok(mut applying)) => {
            let started = tokio::time::Instant::now();
            loop {
                match applying.step().await {
                    Ok(Step::Done(report)) => break *report,
                    Ok(Step::Progressing {
                        applying: next,
                        requeue_after,
                        waiting,
                    }) => {
                        let left = ctx.settings.rollout_wait.saturating_sub(started.elapsed());
                        if left.is_zero() || run.cancellation().is_cancelled() {
                            // Let the worker go: state has every finished component, and
                            // the next pass carries on from it.
                            for (id, status) in &waiting {
                                info!(component = %id, %status, "still rolling out; looking again soon");
                            }
                            let report = next.suspend().await?;
                            status.rollout = Some(Rollout {
                                commit: revision.to_owned(),
                                release: report.release.map(|r| r.id),
                                since: jiff::Timestamp::now().to_string(),
                            });
                            return Ok(Acted {
                                phase: Phase::Progressing,
                                result: "progressing",
                                requeue: Some(requeue_after.max(Duration::from_secs(2))),
                            });
                        }
                        tokio::select! {
                            () = tokio::time::sleep(requeue_after.min(left)) => {}
                            () = run.cancellation().cancelled() => {}
                        }
                        applying = *next;
                    }
                    Err(e) => {
                        let back = match operation {
                            Operation::Apply(limits) => {
                                let failed = FailedApply {
                                    engine: &engine,
                                    target: &target,
                                    repository: desired,
                                    prepared: &prepared,
                                    failure: &e,
                                    limits,
                                };
                                session
                                    .roll_back_failed_wave(failed, run.cancellation(), &progress)
                                    .await
                            }
                            _ => None,
                        };
                        return Err(match back {
                            Some(note) => {
                                status.rolled_back = Some(RolledBack {
                                    commit: revision.to_owned(),
                                    specs,
                                    at: jiff::Timestamp::now().to_string(),
                                    reason: format!("{e}; {note}"),
                                });
                                EngineError::RolledBack {
                                    failure: Box::new(e),
                                    note,
                                }
                            }
                            None => e,
                        }
                        .into());
                    }
                }
            }
        }
        Err(EngineError::Refused(Refusal::PlanStale { .. })) => {
            // AWS or state moved between the plan and the lock: plan again soon (in an
            // approval environment the new plan then waits for its own approval).
            info!("the plan changed before the lock was taken; planning again");
            return Ok(Acted {
                phase: Phase::Progressing,
                result: "replanned",
                requeue: Some(Duration::from_secs(1)),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let release = report.release.as_ref().map(|r| r.id.clone());
    let changes = report.plan.all().filter(|p| p.action.is_change()).count();
    match &release {
        Some(id) => {
            tracing::Span::current().record("release", id.as_str());
            info!(release = %id, changes, kind = kind.as_str(), "applied");
        }
        None => info!("nothing to change in AWS: no release; the records are up to date"),
    }
    if let (Some(pending), Some(id)) = (approved_plan, &release) {
        consume_approval(ctx, key, &pending, id).await;
    }
    status.last_release = release.clone().or(status.last_release.take());
    status.version = desired.version().map(str::to_owned);
    // What AWS holds now, as a drift check records it (the freshness `panka status` shows).
    match session.check_drift(&target, desired).await {
        Ok(check) => note_drift(ctx, status, &check),
        Err(e) => warn!(error = %e, "drift check after the apply failed"),
    }
    Ok(match kind {
        ReleaseKind::Remediation => {
            status.last_remediation = release.map(|release| Remediated {
                at: jiff::Timestamp::now().to_string(),
                changes,
                release,
            });
            // Drift put back while held: the hold is still what the target waits on.
            if let Some(h) = &held {
                return Err(held_error(h));
            }
            Acted::new(
                if pin.is_some() {
                    Phase::Pinned
                } else {
                    Phase::Synced
                },
                "remediated",
            )
        }
        _ => {
            status.synced_commit = Some(revision.to_owned());
            // No release: only records were brought up to date.
            let result = if release.is_some() {
                "applied"
            } else {
                "synced"
            };
            Acted::new(Phase::Synced, result)
        }
    })
}

fn limits(ctx: &Context) -> Limits {
    Limits {
        allow_destroy: ctx.settings.allow_destroy,
        ..Limits::default()
    }
}

/// A rollout an earlier pass let go of (`rollout`), as `prepared` sees it now: `None` once
/// every component is healthy (the watch ends); phase `Progressing` while one is still rolling
/// out (no lock, no release: history keeps one release per apply); an error when one failed
/// (AWS says degraded) or the rollout outlasts `--rollout-timeout` counted from when it was
/// let go — the target is then `failed`, looked at again with backoff, and recovers once the
/// rollout settles or a new commit is deployed.
fn watch_rollout(
    ctx: &Context,
    prepared: &Prepared,
    rollout: &Rollout,
    pinned: bool,
) -> Result<Option<Acted>, Box<EngineError>> {
    let unsettled: Vec<(&ComponentId, &Observation)> = prepared
        .plan
        .all()
        .filter_map(|p| prepared.observed.get(&p.id).map(|o| (&p.id, o)))
        .filter(|(_, o)| o.exists && o.health != Health::Healthy)
        .collect();
    if let Some((id, why)) = unsettled.iter().find_map(|(id, o)| match &o.health {
        Health::Degraded(why) => Some((*id, why)),
        _ => None,
    }) {
        return Err(Box::new(EngineError::Unhealthy {
            component: id.clone(),
            waited: Duration::ZERO,
            status: why.clone(),
            degraded: true,
        }));
    }
    let since = rollout.since.parse::<jiff::Timestamp>().ok();
    if let Some(too_long) = rollout_overdue(
        &unsettled,
        since,
        jiff::Timestamp::now(),
        ctx.settings.rollout_timeout,
    ) {
        return Err(Box::new(too_long));
    }
    if unsettled.is_empty() {
        info!("the rollout let go of earlier has settled");
        return Ok(None);
    }
    for (id, o) in &unsettled {
        info!(component = %id, status = %o.status, "still rolling out; looking again soon");
    }
    Ok(Some(Acted {
        phase: if pinned {
            Phase::Pinned
        } else {
            Phase::Progressing
        },
        result: "progressing",
        requeue: Some(
            ctx.settings
                .rollout_wait
                .clamp(Duration::from_secs(2), Duration::from_secs(10)),
        ),
    }))
}

/// The failure of a rollout still unsettled `limit` after it was let go of (`since`); `None`
/// while within it, or when nothing is unsettled.
fn rollout_overdue(
    unsettled: &[(&ComponentId, &Observation)],
    since: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    limit: Duration,
) -> Option<EngineError> {
    let (id, o) = unsettled.first()?;
    let waited = now.duration_since(since?).unsigned_abs();
    (waited >= limit).then(|| EngineError::Unhealthy {
        component: (*id).clone(),
        // Said as the limit it outlasted.
        waited: limit,
        status: o.status.clone(),
        degraded: false,
    })
}

/// Whether every component observed is healthy (no rollout to wait for).
fn settled(prepared: &Prepared) -> bool {
    prepared.plan.all().all(|p| {
        prepared
            .observed
            .get(&p.id)
            .is_none_or(|o| o.health == Health::Healthy)
    })
}

fn note_drift(ctx: &Context, status: &mut SyncStatus, check: &DriftCheck) {
    let report = &check.report;
    status.drift_checked_at = Some(report.checked_at.clone());
    status.drifted = report.drifted.len();
    status.components = Some(Readiness {
        total: check.applied.components.len(),
        ready: check
            .applied
            .components
            .keys()
            .filter(|id| {
                check
                    .prepared
                    .observed
                    .get(id)
                    .is_some_and(|o| o.health == Health::Healthy)
            })
            .count(),
    });
    for severity in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ] {
        let n = report.findings().filter(|f| f.severity == severity).count();
        ctx.metrics
            .drift_findings
            .get_or_create(&SeverityLabels {
                stack: report.stack.clone(),
                environment: report.environment.clone(),
                severity: severity.as_str().to_owned(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if report.has_drift() {
        info!(components = report.drifted.len(), "drift found");
    }
}

enum Gate {
    Approved(Box<PendingPlan>),
    Waiting(String),
}

/// The approval gate: the plan `prepared` is approved when the pending plan is this very plan
/// and someone approved it; otherwise it becomes the pending plan (superseding an older one)
/// and waits.
async fn gate(
    ctx: &Context,
    key: &StateKey,
    revision: &str,
    desired: &DesiredStack,
    prepared: &Prepared,
    kind: ReleaseKind,
) -> Result<Gate, ReconcileError> {
    let fingerprint = prepared.approve().fingerprint().to_owned();
    let id = plan_id(&fingerprint);
    let store = &ctx.backends.state;
    let current = store.pending(key).await.map_err(EngineError::from)?;
    if let Some((p, _)) = &current {
        // The approval holds for this plan, of this kind, from this commit, once.
        let same =
            p.fingerprint == fingerprint && p.kind == kind && p.commit.as_deref() == Some(revision);
        if same && p.applied_by.is_none() {
            return Ok(match p.approved {
                Some(_) => Gate::Approved(Box::new(p.clone())),
                None => Gate::Waiting(id),
            });
        }
    }
    let plan = PendingPlan {
        id: id.clone(),
        fingerprint,
        kind,
        commit: Some(revision.to_owned()),
        version: desired.version().map(str::to_owned),
        changes: prepared
            .plan
            .all()
            .filter(|p| p.action.is_change())
            .map(|p| {
                format!(
                    "{} {} {}",
                    symbol(&p.action),
                    p.id,
                    crate::engine::action_name(&p.action)
                )
            })
            .collect(),
        planned_by: ctx.settings.actor.clone(),
        planned_at: jiff::Timestamp::now().to_string(),
        approved: None,
        applied_by: None,
    };
    if let Some((old, _)) = current.as_ref().filter(|(p, _)| p.waits()) {
        info!(superseded = %old.id, plan = %id, "a newer plan supersedes the pending one");
    } else {
        info!(
            plan = %id,
            "plan waits for approval: panka approve -s {} -e {} --plan {id}",
            desired.name,
            desired.environment
        );
    }
    // Lost to a concurrent write (an approval, another pass): the next pass reads it.
    store
        .put_pending(key, &plan, current.as_ref().map(|(_, e)| e.as_str()))
        .await
        .map_err(EngineError::from)?;
    Ok(Gate::Waiting(id))
}

/// Marks the approved plan `pending` as applied by release `id`, so the approval is never used
/// again. Retried on a concurrent write; a newer plan written meanwhile is left alone.
async fn consume_approval(ctx: &Context, key: &StateKey, pending: &PendingPlan, id: &str) {
    let store = &ctx.backends.state;
    for _ in 0..3 {
        let current = match store.pending(key).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "failed to read the pending plan after applying it");
                continue;
            }
        };
        let (mut plan, etag) = current;
        if plan.fingerprint != pending.fingerprint || plan.applied_by.is_some() {
            return;
        }
        plan.applied_by = Some(id.to_owned());
        match store.put_pending(key, &plan, Some(&etag)).await {
            Ok(true) => return,
            Ok(false) => continue,
            Err(e) => warn!(error = %e, "failed to mark the approved plan applied"),
        }
    }
    warn!(plan = %pending.id, "could not mark the approved plan applied; its commit and kind keep it from being used again for another change");
}

fn symbol(action: &panka_core::plan::Action) -> &'static str {
    use panka_core::plan::Action;
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace { .. } => "±",
        Action::Delete => "-",
        Action::NoOp | Action::Conflict { .. } => " ",
    }
}

/// Approves the pending plan `id` of `key` as `by`. The plan must be the one waiting.
pub async fn approve(
    backends: &Backends,
    key: &StateKey,
    id: &str,
    by: &str,
) -> Result<PendingPlan, ApproveError> {
    let store = &backends.state;
    let Some((mut plan, etag)) = store.pending(key).await? else {
        return Err(ApproveError::NothingPending);
    };
    if plan.id != id {
        return Err(ApproveError::NotPending {
            asked: id.to_owned(),
            pending: plan.waits().then(|| plan.id.clone()),
        });
    }
    if plan.applied_by.is_some() {
        return Err(ApproveError::AlreadyApplied(
            plan.applied_by.clone().unwrap_or_default(),
        ));
    }
    if plan.approved.is_none() {
        plan.approved = Some(Approved {
            by: by.to_owned(),
            at: jiff::Timestamp::now().to_string(),
        });
        if !store.put_pending(key, &plan, Some(&etag)).await? {
            return Err(ApproveError::Changed);
        }
    }
    Ok(plan)
}

/// Why `panka approve` could not approve.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// No plan was ever recorded.
    #[error("no plan waits for approval")]
    NothingPending,
    /// Another plan is pending (or none).
    #[error("plan {asked} is not the pending plan{}", .pending.as_ref().map(|p| format!(" (the pending plan is {p})")).unwrap_or_else(|| ": nothing waits for approval".to_owned()))]
    NotPending {
        /// The id given.
        asked: String,
        /// The plan that waits, if one does.
        pending: Option<String>,
    },
    /// The plan was applied already.
    #[error("the plan was applied already, by release {0}")]
    AlreadyApplied(String),
    /// The pending plan changed while approving.
    #[error("the pending plan changed while approving it (a newer commit?); look again")]
    Changed,
    /// State could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Writes where `key` stands, when anything but the time changed since `previous`.
async fn record(
    ctx: &Context,
    object: &Stack,
    key: &StateKey,
    status: &mut SyncStatus,
    phase: Phase,
    error: Option<&ReconcileError>,
    previous: Option<&SyncStatus>,
) {
    status.phase = phase;
    if phase != Phase::AwaitingApproval {
        status.awaiting_approval = None;
    }
    status.error = error.map(|e| SyncError {
        at: jiff::Timestamp::now().to_string(),
        class: match e.class() {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Conflict => "conflict",
        }
        .to_owned(),
        message: e.to_string(),
        attempts: previous
            .and_then(|p| p.error.as_ref())
            .map_or(1, |e| e.attempts.saturating_add(1)),
    });
    if let Some(prev) = previous {
        let mut same = prev.clone();
        same.updated_at.clone_from(&status.updated_at);
        if let (Some(a), Some(b)) = (&mut same.error, &status.error) {
            a.at.clone_from(&b.at);
            a.attempts = b.attempts;
        }
        if &same == status {
            publish(ctx, object, status, previous, error).await;
            return;
        }
    }
    status.updated_at = jiff::Timestamp::now().to_string();
    if let Err(e) = ctx.backends.state.record_sync(key, status).await {
        warn!(error = %e, "failed to record the target's status");
    }
    publish(ctx, object, status, previous, error).await;
}

async fn publish(
    ctx: &Context,
    object: &Stack,
    status: &SyncStatus,
    previous: Option<&SyncStatus>,
    error: Option<&ReconcileError>,
) {
    if let Some(sink) = &ctx.status {
        let rolled_back = matches!(
            error,
            Some(ReconcileError::Engine(EngineError::RolledBack { .. }))
        );
        sink.publish(&Report {
            object,
            status,
            previous,
            rolled_back,
        })
        .await;
    }
}

/// Approves the plan the Stack object's `panka.io/approve-plan` annotation names, as
/// `panka approve` would; `None` when there is no such annotation. What happened is reported
/// (and the annotation taken off) once the pass has acted.
async fn approve_by_annotation(
    ctx: &Context,
    object: &Stack,
    key: &StateKey,
) -> Option<Result<String, String>> {
    let id = object
        .metadata
        .annotations
        .as_ref()?
        .get(APPROVE_ANNOTATION)?
        .trim()
        .to_owned();
    let by = format!(
        "annotation {APPROVE_ANNOTATION} on Stack {}/{}",
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    );
    Some(match approve(&ctx.backends, key, &id, &by).await {
        Ok(plan) => {
            info!(plan = %plan.id, "plan approved by annotation");
            Ok(plan.id)
        }
        Err(e) => {
            warn!(plan = %id, error = %e, "the approval annotation names no plan waiting");
            Err(format!("plan {id}: {e}"))
        }
    })
}

/// Engine events as log lines.
struct Logged;

impl Progress for Logged {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::LockAcquired(info) => {
                info!(lock = %info.key(), fence = info.fence, "lock taken")
            }
            Event::WaveStarted { number, components } => {
                info!(wave = number, components, "wave started")
            }
            Event::ComponentDone(p, took, _) => info!(
                component = %p.id,
                action = crate::engine::action_name(&p.action),
                seconds = took.as_secs_f64(),
                "component applied"
            ),
            Event::ComponentFailed(p, why) => {
                warn!(component = %p.id, error = why, "component failed")
            }
            Event::Waiting(id, why) => info!(component = %id, status = why, "waiting"),
            Event::LockWaiting(_) | Event::ComponentStarted(_) | Event::StateSaved(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use panka_crds::resource::StackResourceSpec;

    use super::*;

    /// A source holding one stack's files (a queue `app/queue`) and the policies given.
    #[derive(Debug)]
    struct Files(FileTree);

    impl StackSource for Files {
        fn revision(&self, _target: &Stack) -> Option<String> {
            Some("0123abc".into())
        }
        fn read(&self, _revision: &str, _target: &Stack) -> Result<FileTree, Diagnostics> {
            Ok(self.0.clone())
        }
    }

    fn source(policy: &str) -> Files {
        let mut tree = FileTree::new("stacks/s");
        for (path, text) in [
            ("stack.yaml", "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata: {name: s}\nspec: {provider: {name: aws, region: us-east-1}}\n"),
            ("environments/dev/variables.yaml", "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: dev, stack: s}\nspec: {}\n"),
            ("services/app/service.yaml", "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {name: app, stack: s}\n"),
            ("services/app/components/queue/sqs.yaml", "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata: {name: queue, service: app, stack: s}\nspec: {visibilityTimeout: 30}\n"),
        ] {
            tree.files.insert(path.to_owned(), Arc::from(text));
        }
        tree.policies
            .insert("policies/no-queues.rego".to_owned(), Arc::from(policy));
        Files(tree)
    }

    fn target() -> Stack {
        Stack::new(
            "s-dev",
            StackResourceSpec {
                stack: "s".into(),
                environment: "dev".into(),
                ..StackResourceSpec::default()
            },
        )
    }

    #[test]
    fn a_rollout_is_overdue_only_past_the_limit_from_its_release() {
        let id = ComponentId::new("app", "worker");
        let rolling = Observation {
            exists: true,
            health: Health::Progressing,
            status: "2/3 running".into(),
            ..Observation::default()
        };
        let unsettled = [(&id, &rolling)];
        let started: jiff::Timestamp = "2026-12-06T10:00:00Z".parse().expect("a time");
        let limit = Duration::from_secs(900);
        let at = |s: &str| s.parse::<jiff::Timestamp>().expect("a time");
        assert!(
            rollout_overdue(&unsettled, Some(started), at("2026-12-06T10:14:59Z"), limit).is_none()
        );
        let overdue = rollout_overdue(&unsettled, Some(started), at("2026-12-06T10:15:00Z"), limit)
            .expect("overdue");
        assert_eq!(
            overdue.to_string(),
            "app/worker did not become healthy within 15m: 2/3 running"
        );
        assert_eq!(
            overdue.class(),
            ErrorClass::Transient,
            "looked at again, with backoff"
        );
        // No release of panka's is rolling out: nothing to count from.
        assert!(rollout_overdue(&unsettled, None, at("2027-01-01T00:00:00Z"), limit).is_none());
        assert!(rollout_overdue(&[], Some(started), at("2027-01-01T00:00:00Z"), limit).is_none());
    }

    #[test]
    fn a_deploy_is_judged_by_the_policies_and_a_removal_is_not() {
        let denying =
            source("package panka\n\ndeny contains \"no queues\" if input.kind == \"SQS\"\n");
        let err = denying
            .desired("0123abc", &target(), Purpose::Deploy)
            .expect_err("denied");
        assert!(
            err.contains("policies/no-queues.rego denies app/queue in dev: no queues"),
            "{err}"
        );
        let (desired, _) = denying
            .desired("0123abc", &target(), Purpose::Remove)
            .expect("loads")
            .expect("deploys to dev");
        assert!(desired
            .components
            .keys()
            .any(|id| id.to_string() == "app/queue"));
    }

    #[test]
    fn a_warning_lets_the_deploy_through() {
        let warning =
            source("package panka\n\nwarn contains \"a queue\" if input.kind == \"SQS\"\n");
        let found = warning
            .desired("0123abc", &target(), Purpose::Deploy)
            .expect("passes");
        assert!(found.is_some());
    }
}
