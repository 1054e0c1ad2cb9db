//! The types of one engine run: what the caller asks for ([`EngineOptions`]), the per-run
//! context ([`Run`]), what the run reports while it goes ([`Event`], [`Progress`]) and when it
//! ends ([`ApplyReport`]), and how it fails ([`EngineError`], classed by [`ErrorClass`]).
//!
//! Stage: none of its own; shared by observe, apply and record. No I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use panka_core::model::{ComponentId, DesiredComponent, DesiredStack};
use panka_core::plan::{ComponentPlan, Plan};
use panka_core::state::{Pin, Release, ReleaseKind};
use panka_crds::Kind;
use tokio_util::sync::CancellationToken;

use crate::aws::ErrorClass as AwsClass;
use crate::driver::{CallCounter, DriverError, Outputs};
use crate::lock::{LockError, LockInfo};
use crate::state::StateError;

/// The pin that refuses an apply ([`Refusal::Pinned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedBy {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// `stack` or `service:{name}`.
    pub scope: String,
    /// The pin.
    pub pin: Pin,
}

impl std::fmt::Display for PinnedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pin = &self.pin;
        let (what, resume) = match self.scope.strip_prefix("service:") {
            Some(service) => (
                format!("service {service} of {}/{}", self.stack, self.environment),
                format!("`panka resume --service {service}`"),
            ),
            None => (
                format!("{}/{}", self.stack, self.environment),
                "`panka resume` (stack-wide)".to_owned(),
            ),
        };
        let unpin = if self.scope == "stack" {
            "or apply the whole stack with --unpin"
        } else {
            "or apply with --unpin"
        };
        write!(
            f,
            "{what} is pinned to release {}{} by {} at {} (a rollback); run {resume} when the repository has the fix, {unpin}",
            pin.release,
            pin.version
                .as_ref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default(),
            pin.by,
            pin.at
                .parse::<jiff::Timestamp>()
                .map_or_else(|_| pin.at.clone(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        )
    }
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Limit to one service (and its lock scope).
    pub service: Option<String>,
    /// Take over same-named resources without panka's tags. The one place `--adopt` is set:
    /// the run's driver context and the planner both read it from here.
    pub adopt: bool,
    /// Allow replacing or deleting stateful components.
    pub allow_destroy: bool,
    /// Components applied at once within a wave.
    pub concurrency: usize,
    /// Longest a component may stay unhealthy after it was changed (or, unchanged, while apply
    /// waits for it) before the apply fails.
    pub health_timeout: Duration,
    /// Longest a deletion may stay unfinished before the apply gives up on it and says a later
    /// run finishes it (RDS and ElastiCache deletions usually take 5 to 20 minutes).
    pub deletion_timeout: Duration,
    /// Who is applying (`user@host`, controller pod).
    pub actor: String,
    /// Git commit of the deployment repository, when known.
    pub commit: Option<String>,
    /// What the release records this run as (`destroy` for an emptied desired stack).
    pub kind: ReleaseKind,
    /// Variables given on the command line, recorded in the release (secret-looking names
    /// redacted).
    pub overrides: BTreeMap<String, String>,
    /// For a rollback: what it goes back to and undoes (recorded in the release), and whether
    /// it pins the scope to its target.
    pub rollback: Option<RollbackOf>,
    /// Clear the pin that would refuse this apply (`panka apply --unpin`).
    pub unpin: bool,
    /// Note a reference to a secret that does not exist ([`super::Prepared::notes`]) instead of
    /// refusing the plan: what `status` does, which describes and never applies.
    pub note_missing_secrets: bool,
}

/// What a rollback run goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackOf {
    /// The release whose spec is re-applied.
    pub target: String,
    /// Its version.
    pub version: Option<String>,
    /// The releases it undoes.
    pub supersedes: Vec<String>,
    /// Why, when no person asked (an automatic rollback).
    pub reason: Option<String>,
    /// Pin the run's scope to `target` until `panka resume` (a person's rollback does; an
    /// automatic one does not: the next commit is the fix).
    pub pin: bool,
}

/// [`EngineOptions::deletion_timeout`] unless set otherwise.
pub const DEFAULT_DELETION_TIMEOUT: Duration = Duration::from_secs(45 * 60);

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            service: None,
            adopt: false,
            allow_destroy: false,
            concurrency: 8,
            health_timeout: Duration::from_secs(900),
            note_missing_secrets: false,
            deletion_timeout: DEFAULT_DELETION_TIMEOUT,
            actor: crate::lock::default_holder(),
            commit: None,
            kind: ReleaseKind::Apply,
            overrides: BTreeMap::new(),
            rollback: None,
            unpin: false,
        }
    }
}

/// One run of the engine for one stack/environment: the options, a fresh driver context (built
/// by [`super::Engine::run`]), the AWS call counter, and the cancellation token. Nothing in it
/// outlives the run; a controller makes one per reconcile.
#[derive(Debug)]
pub struct Run {
    pub(crate) options: EngineOptions,
    pub(crate) drivers: crate::driver::Drivers,
    pub(crate) calls: CallCounter,
    pub(crate) cancel: CancellationToken,
}

impl Run {
    /// What the run was asked to do.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The AWS calls this run made, by service and operation.
    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    /// The token that stops the run: no new mutation starts once it is cancelled.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// What the planner needs of the options.
    pub(crate) fn plan_options(&self) -> panka_core::plan::PlanOptions {
        panka_core::plan::PlanOptions {
            service: self.options.service.clone(),
            adopt: self.options.adopt,
        }
    }

    /// Whether this run observes and applies a desired component (see
    /// [`panka_core::plan::in_scope`]).
    pub(crate) fn in_scope(&self, component: &DesiredComponent, desired: &DesiredStack) -> bool {
        panka_core::plan::in_scope(component, desired, &self.plan_options())
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
    /// A component is not healthy yet (or its deletion not finished); the run will look again.
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

/// How an apply run ended.
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

/// Why the engine will not go on; each needs someone to act.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The plan made under the lock is not the one approved.
    #[error("the plan changed since it was approved (approved {approved}, now {current}): AWS, the state or the repository moved on; review the new plan and approve it again")]
    PlanStale {
        /// Fingerprint approved.
        approved: String,
        /// Fingerprint of the plan made under the lock.
        current: String,
    },
    /// The plan replaces or deletes stateful components and the caller did not allow it.
    #[error("the plan replaces or deletes stateful components, losing their data: {}; re-run with --allow-destroy if that is intended", .components.iter().map(|(id, kind)| format!("{id} ({kind})")).collect::<Vec<_>>().join(", "))]
    DangerousChange {
        /// The components whose data would go, with their kinds.
        components: Vec<(ComponentId, String)>,
    },
    /// A service-scoped run needs outputs of a component never applied in this environment.
    #[error("{component} needs outputs of {needs}, which has never been applied in {environment}; apply service `{}` first, or the whole stack", .needs.service)]
    MissingOutput {
        /// The component that references.
        component: ComponentId,
        /// The component referenced.
        needs: ComponentId,
        /// The environment.
        environment: String,
    },
    /// A rollback pinned the stack (or the service) to a release: applying the repository
    /// would roll it forward.
    #[error("{0}")]
    Pinned(Box<PinnedBy>),
    /// A remediation would carry repository changes that were never applied.
    #[error("the repository has changes not applied yet ({}): a remediation puts back what was applied, nothing newer; `panka plan` shows them — apply them with `panka apply`, or remediate with --include-pending to apply them too (if the last apply was given --var values, give the same ones here)", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    PendingChanges(Vec<ComponentId>),
    /// `--include-pending` while a rollback pins the scope: it would roll forward.
    #[error("{0}. A remediation with --include-pending would roll it forward: remediate without it to go back toward the pinned release")]
    PinnedRemediation(Box<PinnedBy>),
    /// Drift, a remediation or a rollback needs something applied before.
    #[error("nothing has been applied to {stack}/{environment} yet, so nothing can drift or be rolled back; run `panka apply` first")]
    NeverApplied {
        /// Stack.
        stack: String,
        /// Environment.
        environment: String,
    },
    /// The release a rollback was asked to go back to cannot be used.
    #[error("{0}")]
    NoRollbackTarget(String),
    /// A plan made to be looked at ([`EngineOptions::note_missing_secrets`]) with refusals
    /// noted in it is never applied: the notes say what stops it.
    #[error("{}", .0.join("\n"))]
    Noted(Vec<String>),
    /// A resource with a component's name exists without panka's tags.
    #[error("{}", .0.iter().map(|(id, reason)| format!("{id}: {reason}")).collect::<Vec<_>>().join("\n"))]
    NotOurs(
        /// The components, with what was found.
        Vec<(ComponentId, String)>,
    ),
}

/// What a caller (the controller's error policy, a CI job) should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retry later with backoff: throttling, a network fault, a rollout still settling.
    Transient,
    /// Retrying the same thing will not help: the repository or AWS needs a change (or a plan a
    /// new approval).
    Permanent,
    /// Someone else holds the lock (or took it over): wait for them, do not fight.
    Conflict,
}

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The lock could not be taken or was lost.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// State could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A driver call failed (the error names the component whose call failed).
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
    /// The plan needs something the caller did not allow, or cannot be carried out as asked.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A component did not become healthy in time, or its rollout failed.
    #[error("{component} did not become healthy{}: {status}", if *.degraded { String::new() } else { format!(" within {}", human(*.waited)) })]
    Unhealthy {
        /// Which.
        component: ComponentId,
        /// How long it was waited for.
        waited: Duration,
        /// Last status seen.
        status: String,
        /// AWS reported a failure (not just "not yet").
        degraded: bool,
    },
    /// Apply stopped on request before it finished; state and the release say how far it got.
    #[error("apply interrupted: state records what was applied; run it again to carry on")]
    Interrupted,
    /// The bake period after the last wave crossed a threshold (error rate, p99 latency).
    #[error("{0}")]
    BakeFailed(String),
    /// A release failed and was rolled back: the failure, and what the rollback did.
    #[error("{failure}; {note}")]
    RolledBack {
        /// Why the release failed.
        failure: Box<EngineError>,
        /// What the automatic rollback did.
        note: String,
    },
    /// Apply stopped after errors; state holds what was done.
    #[error("apply failed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Failed(Vec<EngineError>),
}

impl EngineError {
    /// Whether retrying helps (transient), a change is needed (permanent), or someone else
    /// holds the lock (conflict).
    pub fn class(&self) -> ErrorClass {
        match self {
            EngineError::Lock(e) => match e {
                LockError::Held { .. }
                | LockError::Timeout { .. }
                | LockError::Busy { .. }
                | LockError::Lost { .. } => ErrorClass::Conflict,
                LockError::Aws { source, .. } => aws_class(source.class),
                LockError::Io { .. } => ErrorClass::Transient,
                LockError::InvalidName(_)
                | LockError::InvalidOptions(_)
                | LockError::Corrupt { .. } => ErrorClass::Permanent,
            },
            EngineError::State(e) => match e {
                StateError::StaleFence { .. }
                | StateError::Conflict { .. }
                | StateError::StaleSerial { .. } => ErrorClass::Conflict,
                StateError::Aws { source, .. } => aws_class(source.class),
                StateError::Io { .. } => ErrorClass::Transient,
                StateError::InvalidName(_)
                | StateError::Corrupt { .. }
                | StateError::WrongKey { .. }
                | StateError::ForeignLineage { .. }
                | StateError::HistoryExists { .. } => ErrorClass::Permanent,
            },
            EngineError::Driver(e) => e.class(),
            EngineError::Unhealthy { degraded, .. } => {
                if *degraded {
                    ErrorClass::Permanent
                } else {
                    ErrorClass::Transient
                }
            }
            EngineError::Interrupted => ErrorClass::Transient,
            EngineError::RolledBack { failure, .. } => failure.class(),
            EngineError::NoDriver { .. } | EngineError::Refused(_) | EngineError::BakeFailed(_) => {
                ErrorClass::Permanent
            }
            EngineError::Failed(all) => {
                let classes: Vec<ErrorClass> = all.iter().map(EngineError::class).collect();
                [ErrorClass::Conflict, ErrorClass::Permanent]
                    .into_iter()
                    .find(|c| classes.contains(c))
                    .unwrap_or(ErrorClass::Transient)
            }
        }
    }

    /// The component whose health wait failed, when that is what stopped the run.
    pub fn unhealthy_component(&self) -> Option<&ComponentId> {
        match self {
            EngineError::Unhealthy { component, .. } => Some(component),
            EngineError::Failed(all) => all.iter().find_map(EngineError::unhealthy_component),
            _ => None,
        }
    }

    /// The refusal, if this is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            EngineError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// The engine's class of a classified AWS error.
pub(crate) fn aws_class(class: AwsClass) -> ErrorClass {
    match class {
        AwsClass::Throttled | AwsClass::Transient => ErrorClass::Transient,
        AwsClass::ConditionFailed => ErrorClass::Conflict,
        AwsClass::NotFound | AwsClass::Permanent => ErrorClass::Permanent,
    }
}

/// A duration as people write it (`15m`, `1h 30m`, `90s`).
pub fn human(d: Duration) -> String {
    match jiff::SignedDuration::try_from(Duration::from_secs(d.as_secs())) {
        Ok(s) => format!("{s:#}"),
        Err(_) => format!("{}s", d.as_secs()),
    }
}
