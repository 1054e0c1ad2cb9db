//! The wiring both front-ends share: configuration → backends, the AWS SDK configuration of a
//! stack's region and the lock options → an [`Engine`]; a target's [`EngineOptions`]; the scope
//! of a destroy; the approval policy; and the status summary.
//!
//! Stage: setup, before observe. [`Session::open`] builds clients only (no AWS call);
//! [`Session::plan`] and [`Session::status`] observe (read-only); [`repo_commit`] reads the
//! repository's `.git` directory. The CLI parses arguments and renders what comes back; the
//! controller fills the same [`Target`] from its source and reconciles with the same engine.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_config::SdkConfig;
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{Health, Observation, Observed};
use tokio_util::sync::CancellationToken;

mod bake;
mod drift;
mod follow;
mod rollback;

pub use bake::{bake_targets, next_minute, BakeLook, BakePlan, BakeTarget};
pub use drift::{pending_changes, remediation, DriftCheck};
pub use follow::StatusLook;
pub use rollback::{
    auto_rollback, step_until_done, AutoRollback, FailedApply, RollbackInput, RollbackTo,
};

use crate::aws::{load_sdk_config, AwsSettings};
use crate::backend::{self, Backends};
use crate::config::Config;
use crate::engine::{Engine, EngineError, EngineOptions, Prepared};
use crate::lock::{LockError, LockOptions, Locker};
use crate::state::{HistoryEntry, Pin, Release, ReleaseKind, StateDocument, StateError, StateKey};
use panka_core::drift::DriftReport;
use panka_core::sync::{PendingPlan, SyncStatus};

/// What a front-end asks of one stack/environment, before it is turned into [`EngineOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Only this service (its lock scope); other services' outputs are read from state.
    pub service: Option<String>,
    /// Take over same-named AWS resources that lack panka's tags (`--adopt`).
    pub adopt: bool,
    /// Variables given by the caller (`--var NAME=VALUE`), recorded in the release.
    pub overrides: BTreeMap<String, String>,
    /// The repository commit the desired stack was read from: [`repo_commit`] of a working
    /// directory, or the commit a git source fetched.
    pub commit: Option<String>,
    /// Clear a rollback's pin that would refuse the apply (`--unpin`).
    pub unpin: bool,
}

/// What a run does with its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Only look: plan, status, show. Nothing is changed, so the limits are the defaults.
    Plan,
    /// Make AWS match the desired stack (`apply`).
    Apply(Limits),
    /// Delete what the target holds: the desired stack emptied by [`desired_for_destroy`],
    /// recorded as a `destroy` release.
    Destroy(Limits),
    /// Make AWS match the applied stack again ([`DriftCheck::applied`]), recorded as a
    /// `remediation` release.
    Remediate(Limits),
    /// Re-apply an earlier release ([`RollbackInput`]), recorded as a `rollback` release.
    Rollback(Limits),
}

/// What an apply or destroy is allowed and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Allow replacing or deleting stateful components (`--allow-destroy`).
    pub allow_destroy: bool,
    /// Longest a component may stay unhealthy (`--health-timeout`).
    pub health_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let defaults = EngineOptions::default();
        Limits {
            allow_destroy: defaults.allow_destroy,
            health_timeout: defaults.health_timeout,
        }
    }
}

/// How an apply gets the approval its environment may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalGate {
    /// No approval needed, or given in advance (`--yes`, an approved plan): apply.
    Open,
    /// Show the plan and ask a person; only a plan with changes needs the answer.
    Ask,
    /// Approval is needed, was not given, and there is no one to ask: refuse before any AWS
    /// call (the controller records a pending plan instead).
    Closed,
}

/// Whether `desired`'s environment is listed under `approval.environments` of its StackInfra.
pub fn needs_approval(desired: &DesiredStack) -> bool {
    desired
        .infra
        .approval
        .as_ref()
        .is_some_and(|a| a.environments.contains(&desired.environment))
}

/// The approval policy of an apply to `desired`: `given` is an approval made in advance
/// (`--yes`), `can_ask` whether a person can answer (a terminal).
pub fn approval_gate(desired: &DesiredStack, given: bool, can_ask: bool) -> ApprovalGate {
    match (needs_approval(desired), given, can_ask) {
        (false, _, _) | (true, true, _) => ApprovalGate::Open,
        (true, false, true) => ApprovalGate::Ask,
        (true, false, false) => ApprovalGate::Closed,
    }
}

/// The desired stack of a destroy and its (empty) graph: no component of `service` (of any
/// service when `None`) is desired, so the plan deletes every one recorded. Components of other
/// services stay, so their recorded outputs are still known; the service scope of the run keeps
/// them untouched.
pub fn desired_for_destroy(
    mut desired: DesiredStack,
    service: Option<&str>,
) -> (DesiredStack, Graph) {
    desired
        .components
        .retain(|id, _| service.is_some_and(|s| id.service != s));
    let graph = Graph {
        waves: Vec::new(),
        edges: Vec::new(),
    };
    (desired, graph)
}

/// The commit of the git repository holding the deployment repository at `root`: HEAD's id,
/// with `+dirty` when files under `root/stacks/` differ from HEAD (changed, staged, deleted, or
/// new and not ignored). `None` outside a repository and before its first commit. Changes
/// elsewhere in the repository do not count: they are not part of any stack.
pub fn repo_commit(root: &Path) -> Option<String> {
    let repo = git2::Repository::discover(root).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?.id().to_string();
    Some(if stacks_dirty(&repo, root) {
        format!("{head}+dirty")
    } else {
        head
    })
}

/// Whether anything under `root/stacks/` differs from HEAD. A repository without a working
/// tree (bare) has nothing checked out, and a status that cannot be read counts as clean: the
/// commit is a label on the release, not a reason to fail it.
fn stacks_dirty(repo: &git2::Repository, root: &Path) -> bool {
    let Some(workdir) = repo.workdir() else {
        return false;
    };
    let stacks = stacks_path(workdir, root);
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .pathspec(&stacks);
    let prefix = format!("{stacks}/");
    repo.statuses(Some(&mut options)).is_ok_and(|statuses| {
        statuses
            .iter()
            .any(|e| e.path_bytes().starts_with(prefix.as_bytes()))
    })
}

/// `stacks` of `root`, as a path relative to the working tree with `/` separators (the form git
/// paths take): `stacks` when `root` is the working tree, `deploy/stacks` when it is a folder of
/// a larger repository.
fn stacks_path(workdir: &Path, root: &Path) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (workdir, root) = (canonical(workdir), canonical(root));
    let relative = root.strip_prefix(&workdir).unwrap_or(Path::new(""));
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .chain(std::iter::once("stacks".to_owned()))
        .collect::<Vec<_>>()
        .join("/")
}

/// One stack/environment's backends and AWS configuration, and who acts: what a front-end opens
/// once per command (or reconcile) to plan, apply and read status with.
pub struct Session {
    backends: Backends,
    /// The AWS configuration of the stack's region (also what [`crate::telemetry`] reads with).
    pub(crate) sdk: SdkConfig,
    actor: String,
    /// Where every run's AWS calls are also counted (the controller's metrics), if anywhere.
    pub(crate) calls: Option<crate::driver::CallCounter>,
    /// The drivers every run uses, when not the standard ones ([`Session::with_drivers`]).
    drivers: Option<crate::engine::DriverFactory>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("backends", &self.backends)
            .field("actor", &self.actor)
            .field("drivers", &self.drivers.as_ref().map(|_| "custom"))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens the configured backends and loads the AWS configuration for a stack in `region`
    /// (the standard chain and the configured profile). Builds clients only; calls no AWS API.
    pub async fn open(config: &Config, region: &str) -> Session {
        let backends = backend::open(config).await;
        let sdk = load_sdk_config(&AwsSettings {
            profile: config.aws.profile.clone(),
            region: Some(region.to_owned()),
            // The chain reads AWS_ENDPOINT_URL; the configured endpoint is the backends'.
            endpoint_url: None,
        })
        .await;
        Session::with(backends, sdk)
    }

    /// A session on given backends and AWS configuration (tests pass the emulator's), acting
    /// as this process's user (`user@host`).
    pub fn with(backends: Backends, sdk: SdkConfig) -> Session {
        Session {
            backends,
            sdk,
            actor: crate::lock::default_holder(),
            calls: None,
            drivers: None,
        }
    }

    /// The same session, its runs using the drivers `factory` makes instead of the standard
    /// set (a test's driver that fails on purpose, say). The factory is called once per run
    /// with that run's fresh context; what it makes must keep nothing between runs.
    pub fn with_drivers(mut self, factory: crate::engine::DriverFactory) -> Session {
        self.drivers = Some(factory);
        self
    }

    /// The same session, every run's AWS calls also added to `total`.
    pub fn counting_into(mut self, total: crate::driver::CallCounter) -> Session {
        self.calls = Some(total);
        self
    }

    /// The same session acting as `actor` (the controller's pod, a CI job).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Session {
        self.actor = actor.into();
        self
    }

    /// Who acts: the lock holder and the release's actor.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The state store and lock backend.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// An engine whose locks wait up to `lock_wait` for another holder (zero: fail at once,
    /// naming the holder).
    pub fn engine(&self, lock_wait: Duration) -> Result<Engine, LockError> {
        let locker = Locker::new(
            self.backends.locks.clone(),
            LockOptions {
                wait: lock_wait,
                ..LockOptions::default()
            },
        )?;
        let engine = match &self.drivers {
            Some(factory) => Engine::with_drivers(
                self.sdk.clone(),
                self.backends.clone(),
                locker,
                factory.clone(),
            ),
            None => Engine::new(self.sdk.clone(), self.backends.clone(), locker),
        };
        Ok(engine.counting_into(self.calls.clone()))
    }

    /// The engine options of one run of `operation` on `target`.
    pub fn options_for(&self, target: &Target, operation: Operation) -> EngineOptions {
        let (kind, limits) = match operation {
            Operation::Plan => (ReleaseKind::Apply, Limits::default()),
            Operation::Apply(limits) => (ReleaseKind::Apply, limits),
            Operation::Destroy(limits) => (ReleaseKind::Destroy, limits),
            Operation::Remediate(limits) => (ReleaseKind::Remediation, limits),
            Operation::Rollback(limits) => (ReleaseKind::Rollback, limits),
        };
        EngineOptions {
            service: target.service.clone(),
            adopt: target.adopt,
            commit: target.commit.clone(),
            overrides: target.overrides.clone(),
            actor: self.actor.clone(),
            kind,
            allow_destroy: limits.allow_destroy,
            health_timeout: limits.health_timeout,
            unpin: target.unpin,
            ..EngineOptions::default()
        }
    }

    /// Observes and plans `desired` for `target` without the lock: what `plan`, `status` and
    /// `show` display. Changes nothing.
    pub async fn plan(
        &self,
        target: &Target,
        desired: &DesiredStack,
        graph: &Graph,
    ) -> Result<Prepared, EngineError> {
        self.look(self.options_for(target, Operation::Plan), desired, graph)
            .await
    }

    /// Observes and plans with `options`, without the lock.
    async fn look(
        &self,
        options: EngineOptions,
        desired: &DesiredStack,
        graph: &Graph,
    ) -> Result<Prepared, EngineError> {
        let engine = self.engine(Duration::ZERO)?;
        let run = engine.run(desired, options, CancellationToken::new());
        engine.plan(&run, desired, graph).await
    }

    /// What is deployed of `target`: each desired component's observation and when it was last
    /// applied, and the release the state was last written by.
    pub async fn status(
        &self,
        target: &Target,
        desired: &DesiredStack,
        graph: &Graph,
    ) -> Result<StatusSummary, EngineError> {
        // Status describes: a secret that does not exist (yet) is said, not a refusal.
        let mut options = self.options_for(target, Operation::Plan);
        options.note_missing_secrets = true;
        let prepared = self.look(options, desired, graph).await?;
        let document = prepared.state.as_ref().map(|s| &s.document);
        let entry = match document.and_then(|d| d.release.as_deref()) {
            Some(id) => {
                let key =
                    StateKey::new(&desired.name, &desired.environment).map_err(StateError::from)?;
                self.backends.state.history_entry(&key, id).await?
            }
            None => None,
        };
        let key = StateKey::new(&desired.name, &desired.environment).map_err(StateError::from)?;
        // A drift report that cannot be read is shown as never checked.
        // A report that cannot be read counts as never checked. For a service, the newer of its
        // own check and the stack-wide one (narrowed to the service) is the freshest word.
        let store = &self.backends.state;
        let stack_report = store.drift(&key, None).await.ok().flatten();
        let drift = match target.service.as_deref() {
            None => stack_report,
            Some(service) => {
                let own = store.drift(&key, Some(service)).await.ok().flatten();
                let wide = stack_report.map(|r| r.narrowed_to(service));
                [own, wide]
                    .into_iter()
                    .flatten()
                    .max_by_key(|r| r.checked_at.parse::<jiff::Timestamp>().ok())
            }
        };
        let mut summary = StatusSummary::new(
            desired,
            target.service.as_deref(),
            &prepared.observed,
            document,
            entry,
        );
        summary.drift = drift;
        summary.notes = prepared.notes;
        // Unreadable controller records read as none: status still shows the rest.
        summary.sync = store.sync(&key).await.ok().flatten();
        summary.pending = store
            .pending(&key)
            .await
            .ok()
            .flatten()
            .map(|(p, _)| p)
            .filter(PendingPlan::waits);
        Ok(summary)
    }
}

/// What `status` shows of a stack/environment (or one service of it).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSummary {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// The service asked about, when only one was.
    pub service: Option<String>,
    /// The release that last wrote the state, when history holds it.
    pub release: Option<Release>,
    /// The release the state names but history does not hold: it did not finish (interrupted
    /// before it was recorded); the next apply carries on from the state.
    pub unfinished_release: Option<String>,
    /// Every desired component in scope, in id order.
    pub components: Vec<ComponentStatus>,
    /// Pins a rollback set (`stack`, `service:{name}`), with the release each holds.
    pub pins: BTreeMap<String, Pin>,
    /// The last drift check, if any ran.
    pub drift: Option<DriftReport>,
    /// Where the controller left the target, when a controller manages it.
    pub sync: Option<SyncStatus>,
    /// The plan waiting for `panka approve`, if one does.
    pub pending: Option<PendingPlan>,
    /// What an apply would refuse that a look does not (a secret that does not exist).
    pub notes: Vec<String>,
}

/// One component in a [`StatusSummary`].
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentStatus {
    /// Which.
    pub id: ComponentId,
    /// Its kind (`SQS`, `MicroService`, …).
    pub kind: &'static str,
    /// What observe saw (missing when it saw nothing).
    pub observed: Observation,
    /// When it was last applied (RFC 3339, as recorded), if ever.
    pub last_deployed: Option<String>,
}

impl StatusSummary {
    /// The summary of what observe saw (`observed`), what the state records (`state`) and the
    /// history entry of the release the state names (`entry`).
    pub fn new(
        desired: &DesiredStack,
        service: Option<&str>,
        observed: &Observed,
        state: Option<&StateDocument>,
        entry: Option<HistoryEntry>,
    ) -> StatusSummary {
        let named = state.and_then(|d| d.release.clone());
        let unfinished_release = named.filter(|_| entry.is_none());
        let release = match entry {
            Some(HistoryEntry::Release(r)) => Some(r),
            Some(HistoryEntry::Unlock(_)) | None => None,
        };
        let components = desired
            .components
            .values()
            .filter(|c| service.is_none_or(|s| c.id.service == s))
            .map(|c| ComponentStatus {
                id: c.id.clone(),
                kind: c.kind().name(),
                observed: observed.get(&c.id).cloned().unwrap_or_default(),
                last_deployed: state
                    .and_then(|d| d.components.get(&c.id.to_string()))
                    .and_then(|r| r.applied_at.clone()),
            })
            .collect();
        StatusSummary {
            stack: desired.name.clone(),
            environment: desired.environment.clone(),
            service: service.map(str::to_owned),
            release,
            unfinished_release,
            components,
            pins: state.map(|d| d.pins.clone()).unwrap_or_default(),
            drift: None,
            sync: None,
            pending: None,
            notes: Vec::new(),
        }
    }

    /// Whether the last drift check is older than the last release (what it found may be
    /// gone, or new drift may have come).
    pub fn drift_is_stale(&self) -> bool {
        let at = |t: &str| t.parse::<jiff::Timestamp>().ok();
        let released = self
            .release
            .as_ref()
            .and_then(|r| r.finished_at.as_deref())
            .and_then(at);
        let checked = self.drift.as_ref().and_then(|d| at(&d.checked_at));
        matches!((released, checked), (Some(r), Some(c)) if c < r)
    }

    /// Whether every component in scope is healthy.
    pub fn healthy(&self) -> bool {
        self.components
            .iter()
            .all(|c| c.observed.health == Health::Healthy)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use panka_core::plan::Observation;
    use panka_core::state::ComponentState;

    use super::*;
    use crate::config::{LocksConfig, StateConfig};
    use crate::state::{ReleaseOutcome, UnlockRecord};

    /// The example's `user-platform` stack resolved for `environment`.
    fn example(environment: &str) -> (DesiredStack, Graph) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment-repo");
        let loaded = crate::validate::load_stack(&root, "user-platform").expect("example loads");
        crate::validate::plan_input(
            &loaded,
            environment,
            &panka_core::resolve::Options::default(),
        )
        .expect("example resolves")
    }

    /// A session on a local backend in `dir`; no AWS configuration (nothing here calls AWS).
    fn session(dir: &Path) -> Session {
        let config = Config {
            state: StateConfig::Local {
                dir: dir.to_path_buf(),
            },
            locks: LocksConfig::Local {
                dir: dir.to_path_buf(),
            },
            aws: AwsSettings::default(),
            source: None,
        };
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        Session::with(backend::open_with(&config, None), sdk)
    }

    fn target() -> Target {
        Target {
            service: Some("user-service".into()),
            adopt: true,
            overrides: [("VERSION".to_owned(), "1.2.3".to_owned())].into(),
            commit: Some("0123abc+dirty".into()),
            unpin: false,
        }
    }

    #[test]
    fn options_carry_the_target_and_the_actor_and_a_plan_gets_the_default_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = session(dir.path()).with_actor("ci-job-7");
        let o = session.options_for(&target(), Operation::Plan);
        assert_eq!(o.service.as_deref(), Some("user-service"));
        assert!(o.adopt);
        assert_eq!(o.overrides["VERSION"], "1.2.3");
        assert_eq!(o.commit.as_deref(), Some("0123abc+dirty"));
        assert_eq!(o.actor, "ci-job-7");
        assert_eq!(o.kind, ReleaseKind::Apply);
        let defaults = EngineOptions::default();
        assert!(!o.allow_destroy);
        assert_eq!(o.health_timeout, defaults.health_timeout);
        assert_eq!(o.concurrency, defaults.concurrency);
        assert_eq!(o.deletion_timeout, defaults.deletion_timeout);
    }

    #[test]
    fn apply_and_destroy_options_carry_their_limits_and_their_release_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = session(dir.path());
        let limits = Limits {
            allow_destroy: true,
            health_timeout: Duration::from_secs(60),
        };
        let apply = session.options_for(&Target::default(), Operation::Apply(limits));
        assert_eq!(apply.kind, ReleaseKind::Apply);
        assert!(apply.allow_destroy);
        assert_eq!(apply.health_timeout, Duration::from_secs(60));
        assert_eq!(apply.service, None);
        assert!(!apply.adopt);
        assert_eq!(apply.commit, None);
        let destroy = session.options_for(&target(), Operation::Destroy(limits));
        assert_eq!(destroy.kind, ReleaseKind::Destroy);
        assert!(destroy.allow_destroy);
        assert_eq!(destroy.service.as_deref(), Some("user-service"));
        // Who acts defaults to this process's user, as the lock holder does.
        assert_eq!(session.actor(), crate::lock::default_holder());
        assert_eq!(destroy.actor, session.actor());
    }

    #[test]
    fn an_engine_is_made_for_any_lock_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = session(dir.path());
        assert!(session.engine(Duration::ZERO).is_ok());
        assert!(session.engine(Duration::from_secs(300)).is_ok());
    }

    #[test]
    fn approval_is_needed_only_in_the_environments_the_stack_lists() {
        // The example lists `production` under approval.environments.
        assert!(needs_approval(&example("production").0));
        assert!(!needs_approval(&example("development").0));
        let (mut none, _) = example("production");
        none.infra.approval = None;
        assert!(!needs_approval(&none));
    }

    #[test]
    fn the_gate_opens_without_a_policy_or_with_yes_asks_on_a_terminal_and_closes_otherwise() {
        let (production, _) = example("production");
        let (development, _) = example("development");
        for (desired, given, can_ask, gate) in [
            (&development, false, false, ApprovalGate::Open),
            (&development, false, true, ApprovalGate::Open),
            (&development, true, false, ApprovalGate::Open),
            (&production, true, false, ApprovalGate::Open),
            (&production, true, true, ApprovalGate::Open),
            (&production, false, true, ApprovalGate::Ask),
            (&production, false, false, ApprovalGate::Closed),
        ] {
            assert_eq!(
                approval_gate(desired, given, can_ask),
                gate,
                "{} given={given} can_ask={can_ask}",
                desired.environment
            );
        }
    }

    #[test]
    fn destroying_a_stack_desires_no_component_and_no_wave() {
        let (desired, graph) = example("development");
        assert!(!graph.waves.is_empty());
        let (emptied, graph) = desired_for_destroy(desired.clone(), None);
        assert!(emptied.components.is_empty());
        assert!(graph.waves.is_empty() && graph.edges.is_empty());
        // The rest (region, infra, services, variables) is the stack's: the engine needs it.
        assert_eq!(emptied.provider, desired.provider);
        assert_eq!(emptied.services, desired.services);
        assert_eq!(emptied.variables, desired.variables);
    }

    #[test]
    fn destroying_a_service_keeps_only_the_other_services_components() {
        let (desired, _) = example("development");
        let (emptied, graph) = desired_for_destroy(desired.clone(), Some("user-service"));
        assert!(graph.waves.is_empty());
        assert!(!emptied.components.is_empty());
        assert!(emptied
            .components
            .keys()
            .all(|id| id.service != "user-service"));
        let others = desired
            .components
            .keys()
            .filter(|id| id.service != "user-service")
            .count();
        assert_eq!(emptied.components.len(), others);
    }

    fn release(id: &str) -> Release {
        Release {
            id: id.into(),
            kind: ReleaseKind::Apply,
            stack: "user-platform".into(),
            environment: "development".into(),
            scope: "stack".into(),
            version: None,
            commit: None,
            actor: "tester@host".into(),
            overrides: BTreeMap::new(),
            started_at: "2026-11-23T14:57:00Z".into(),
            finished_at: Some("2026-11-23T14:58:00Z".into()),
            outcome: ReleaseOutcome::Succeeded,
            actions: BTreeMap::new(),
            desired: serde_json::Value::Null,
            target: None,
            supersedes: Vec::new(),
            reason: None,
        }
    }

    fn state_naming(release: &str, component: &str, at: &str) -> StateDocument {
        let key = StateKey::new("user-platform", "development").expect("a valid key");
        StateDocument {
            release: Some(release.into()),
            components: [(
                component.to_owned(),
                ComponentState {
                    kind: "SQS".into(),
                    applied_at: Some(at.into()),
                    ..ComponentState::default()
                },
            )]
            .into(),
            ..StateDocument::initial(&key)
        }
    }

    #[test]
    fn status_lists_the_components_in_scope_with_what_was_seen_and_when_applied() {
        let (desired, _) = example("development");
        let queue = desired
            .components
            .values()
            .find(|c| c.id.service == "notification-service" && c.kind().name() == "SQS")
            .map(|c| c.id.clone())
            .expect("the example has a notification-service queue");
        let seen = Observation {
            exists: true,
            status: "available".into(),
            health: Health::Healthy,
            ..Observation::default()
        };
        let observed = Observed::new([(queue.clone(), seen.clone())].into());
        let state = state_naming("r-1", &queue.to_string(), "2026-11-23T14:58:00Z");
        let entry = Some(HistoryEntry::Release(release("r-1")));

        let all = StatusSummary::new(&desired, None, &observed, Some(&state), entry.clone());
        assert_eq!(all.components.len(), desired.components.len());
        assert_eq!(all.service, None);
        assert_eq!(all.stack, "user-platform");
        assert_eq!(all.environment, "development");
        assert_eq!(all.release.as_ref().map(|r| r.id.as_str()), Some("r-1"));
        assert_eq!(all.unfinished_release, None);
        // Only the queue was seen: the rest is missing, so the stack is not healthy.
        assert!(!all.healthy());

        let one = StatusSummary::new(
            &desired,
            Some("notification-service"),
            &observed,
            Some(&state),
            entry,
        );
        assert!(one
            .components
            .iter()
            .all(|c| c.id.service == "notification-service"));
        let row = one
            .components
            .iter()
            .find(|c| c.id == queue)
            .expect("the queue's row");
        assert_eq!(row.kind, "SQS");
        assert_eq!(row.observed, seen);
        assert_eq!(row.last_deployed.as_deref(), Some("2026-11-23T14:58:00Z"));
        let never = one
            .components
            .iter()
            .find(|c| c.id != queue)
            .expect("another notification-service component");
        assert_eq!(never.last_deployed, None);
        assert_eq!(never.observed.health, Observation::default().health);
    }

    #[test]
    fn status_is_healthy_when_every_component_in_scope_is() {
        let (desired, _) = example("development");
        let healthy = Observation {
            health: Health::Healthy,
            ..Observation::default()
        };
        let observed = Observed::new(
            desired
                .components
                .keys()
                .map(|id| (id.clone(), healthy.clone()))
                .collect(),
        );
        let summary = StatusSummary::new(&desired, None, &observed, None, None);
        assert!(summary.healthy());
        assert_eq!(summary.release, None);
        assert_eq!(summary.unfinished_release, None);
        assert!(summary.components.iter().all(|c| c.last_deployed.is_none()));
    }

    #[test]
    fn a_release_the_state_names_but_history_lacks_did_not_finish() {
        let (desired, _) = example("development");
        let state = state_naming("r-2", "user-service/none", "2026-11-23T14:58:00Z");
        let summary = StatusSummary::new(&desired, None, &Observed::default(), Some(&state), None);
        assert_eq!(summary.unfinished_release.as_deref(), Some("r-2"));
        assert_eq!(summary.release, None);
        // An id naming something that is not a release is neither.
        let unlock = HistoryEntry::Unlock(UnlockRecord {
            id: "r-2".into(),
            stack: "user-platform".into(),
            environment: "development".into(),
            lock_key: "stack:user-platform:env:development".into(),
            lock_id: "l-1".into(),
            locked_by: "someone@host".into(),
            operation: "apply".into(),
            locked_at: "2026-11-23T14:57:00Z".into(),
            expired: true,
            forced: false,
            actor: "tester@host".into(),
            at: "2026-11-23T15:00:00Z".into(),
        });
        let summary = StatusSummary::new(
            &desired,
            None,
            &Observed::default(),
            Some(&state),
            Some(unlock),
        );
        assert_eq!(summary.unfinished_release, None);
        assert_eq!(summary.release, None);
    }

    /// A git repository in `dir` whose HEAD commits `stacks/app/stack.yaml` and `README.md`.
    fn repo_with_a_commit(dir: &Path) -> git2::Oid {
        let repo = git2::Repository::init(dir).expect("git init");
        write(dir, "stacks/app/stack.yaml", "kind: Stack\n");
        write(dir, "README.md", "# deployments\n");
        commit_all(&repo)
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn commit_all(repo: &git2::Repository) -> git2::Oid {
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("git add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("write tree"))
            .expect("tree");
        let who = git2::Signature::now("tester", "tester@example.invalid").expect("signature");
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some("HEAD"), &who, &who, "commit", &tree, &parents)
            .expect("git commit")
    }

    #[test]
    fn a_clean_checkout_records_heads_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = repo_with_a_commit(dir.path());
        assert_eq!(repo_commit(dir.path()), Some(head.to_string()));
        // A second commit moves it.
        write(dir.path(), "stacks/app/stack.yaml", "kind: Stack # v2\n");
        let repo = git2::Repository::open(dir.path()).expect("open");
        let next = commit_all(&repo);
        assert_ne!(next, head);
        assert_eq!(repo_commit(dir.path()), Some(next.to_string()));
    }

    #[test]
    fn changes_under_stacks_make_it_dirty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = repo_with_a_commit(dir.path());
        let dirty = Some(format!("{head}+dirty"));
        // A tracked file changed.
        write(
            dir.path(),
            "stacks/app/stack.yaml",
            "kind: Stack # edited\n",
        );
        assert_eq!(repo_commit(dir.path()), dirty);
        // Staged counts as well.
        let repo = git2::Repository::open(dir.path()).expect("open");
        let mut index = repo.index().expect("index");
        index
            .add_path(Path::new("stacks/app/stack.yaml"))
            .expect("git add");
        index.write().expect("write index");
        assert_eq!(repo_commit(dir.path()), dirty);

        // A new file in a new folder, not yet added.
        let dir = tempfile::tempdir().expect("tempdir");
        let head = repo_with_a_commit(dir.path());
        write(
            dir.path(),
            "stacks/other/services/api/service.yaml",
            "kind: Service\n",
        );
        assert_eq!(repo_commit(dir.path()), Some(format!("{head}+dirty")));

        // A deleted file.
        let dir = tempfile::tempdir().expect("tempdir");
        let head = repo_with_a_commit(dir.path());
        std::fs::remove_file(dir.path().join("stacks/app/stack.yaml")).expect("rm");
        assert_eq!(repo_commit(dir.path()), Some(format!("{head}+dirty")));
    }

    #[test]
    fn changes_elsewhere_or_ignored_leave_it_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = repo_with_a_commit(dir.path());
        write(dir.path(), "README.md", "# edited\n");
        write(dir.path(), "notes.txt", "new, untracked\n");
        // A sibling whose name only starts with `stacks` is not under stacks/.
        write(dir.path(), "stacks-old/app/stack.yaml", "kind: Stack\n");
        assert_eq!(repo_commit(dir.path()), Some(head.to_string()));
        // Ignored files under stacks/ do not count either.
        write(dir.path(), ".gitignore", "*.swp\n");
        write(dir.path(), "stacks/app/.stack.yaml.swp", "editor scratch\n");
        assert_eq!(repo_commit(dir.path()), Some(head.to_string()));
    }

    #[test]
    fn a_deployment_folder_inside_a_larger_repository_looks_only_at_its_own_stacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("git init");
        write(dir.path(), "deploy/stacks/app/stack.yaml", "kind: Stack\n");
        write(dir.path(), "stacks/unrelated.yaml", "x: 1\n");
        let head = commit_all(&repo);
        let root = dir.path().join("deploy");
        assert_eq!(repo_commit(&root), Some(head.to_string()));
        // The repository's own top-level stacks/ is not this deployment repository's.
        write(dir.path(), "stacks/unrelated.yaml", "x: 2\n");
        assert_eq!(repo_commit(&root), Some(head.to_string()));
        write(
            dir.path(),
            "deploy/stacks/app/stack.yaml",
            "kind: Stack # edited\n",
        );
        assert_eq!(repo_commit(&root), Some(format!("{head}+dirty")));
    }

    #[test]
    fn no_repository_or_no_commit_yet_records_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "stacks/app/stack.yaml", "kind: Stack\n");
        assert_eq!(repo_commit(dir.path()), None);
        // A repository before its first commit has no HEAD commit to name.
        git2::Repository::init(dir.path()).expect("git init");
        assert_eq!(repo_commit(dir.path()), None);
        assert_eq!(repo_commit(&dir.path().join("does-not-exist")), None);
    }
}
