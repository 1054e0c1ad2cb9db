//! The engine's own logic, without AWS: waves, state after every component, cancellation,
//! error classes, stale-plan refusal, and progressing components stepped again rather than
//! slept on. Drivers sit behind a trait, so these tests plug in a driver of their own (an
//! in-memory stand-in for one component kind, not an emulation of an AWS API); the drivers
//! themselves are tested against the local AWS emulator in `panka-tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use panka_controller::backend::Backends;
use panka_controller::driver::{Applied, Deletion, Driver, DriverError, Drivers, Lookups, Outputs};
use panka_controller::engine::{
    ApplyReport, Applying, Engine, EngineError, EngineOptions, ErrorClass, Event, Progress,
    Refusal, Run, Step,
};
use panka_controller::lock::local::LocalLocks;
use panka_controller::lock::{LockOptions, LockTarget, Locker};
use panka_controller::state::local::LocalStore;
use panka_controller::state::{ReleaseOutcome, StateStore};
use panka_core::graph::Graph;
use panka_core::keys::StateKey;
use panka_core::model::{ComponentId, DesiredComponent, DesiredStack};
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};
use panka_core::source::FileTree;
use panka_crds::Kind;
use tokio_util::sync::CancellationToken;

/// Makes the error a failing call answers.
type MakeError = fn(&ComponentId) -> DriverError;

/// What the stand-in driver's world holds, and how it behaves.
#[derive(Default)]
struct World {
    /// Existing queues and their `size` field.
    queues: BTreeMap<String, i64>,
    /// Creates and updates made, in order.
    mutations: Vec<String>,
    /// Observations still to answer "progressing", per queue.
    progressing: BTreeMap<String, u32>,
    /// Delete calls still to answer "progressing".
    deleting: BTreeMap<String, u32>,
    /// A create of this queue fails with this error.
    fail: Option<(String, MakeError)>,
    /// Ctrl-C arrives while this queue is being created.
    cancel_during: Option<(String, CancellationToken)>,
    /// A create of this queue waits until the state records this other component.
    wait_for_record: Option<(String, String, PathBuf)>,
}

#[derive(Clone)]
struct Queues(Arc<Mutex<World>>);

impl Queues {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().expect("world lock")
    }
}

fn size_of(c: &DesiredComponent) -> i64 {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| {
            v.pointer("/spec/visibilityTimeout")
                .and_then(|s| s.as_i64())
        })
        .unwrap_or(30)
}

#[async_trait]
impl Driver for Queues {
    fn kind(&self) -> Kind {
        Kind::Sqs
    }

    fn desired(&self, c: &DesiredComponent, _o: &Outputs, _l: &Lookups) -> DesiredFields {
        let mut f = DesiredFields::default();
        f.set("size", FieldValue::known(size_of(c)));
        f
    }

    async fn observe(
        &self,
        id: &ComponentId,
        _recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let mut w = self.world();
        let name = id.to_string();
        let Some(size) = w.queues.get(&name).copied() else {
            return Ok(Observation::default());
        };
        let progressing = w.progressing.get(&name).copied().unwrap_or(0);
        let health = if progressing > 0 {
            w.progressing.insert(name.clone(), progressing - 1);
            Health::Progressing
        } else {
            Health::Healthy
        };
        let mut fields = BTreeMap::new();
        fields.insert("size".to_string(), FieldValue::known(size));
        Ok(Observation {
            exists: true,
            owned: true,
            fields,
            identifiers: [("name".to_string(), name.clone())].into(),
            outputs: [("url".to_string(), format!("queue://{name}"))].into(),
            status: if health == Health::Healthy {
                "ready"
            } else {
                "creating"
            }
            .into(),
            health,
            ..Observation::default()
        })
    }

    async fn converge(
        &self,
        c: &DesiredComponent,
        _o: &Outputs,
        _l: &Lookups,
    ) -> Result<Applied, DriverError> {
        let name = c.id.to_string();
        let (fail, wait) = {
            let w = self.world();
            (w.fail.clone(), w.wait_for_record.clone())
        };
        if let Some((who, make)) = fail {
            if who == name {
                return Err(make(&c.id));
            }
        }
        if let Some((who, other, dir)) = wait {
            if who == name {
                // Another component of the same wave must be in state while this one runs.
                let store = StateStore::new(Arc::new(LocalStore::new(dir)));
                let key = StateKey::new("shop", "development").expect("key");
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let doc = store.read(&key).await.expect("state reads");
                    if doc.is_some_and(|s| s.document.components.contains_key(&other)) {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{other} never reached state");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let mut w = self.world();
        w.queues.insert(name.clone(), size_of(c));
        w.mutations.push(name.clone());
        if let Some((who, token)) = &w.cancel_during {
            if *who == name {
                token.cancel();
            }
        }
        Ok(Applied {
            identifiers: [("name".to_string(), name.clone())].into(),
            outputs: [("url".to_string(), format!("queue://{name}"))].into(),
        })
    }

    async fn delete(
        &self,
        id: &ComponentId,
        _recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let mut w = self.world();
        let name = id.to_string();
        w.mutations.push(format!("delete {name}"));
        let left = w.deleting.get(&name).copied().unwrap_or(0);
        if left > 0 {
            w.deleting.insert(name, left - 1);
            return Ok(Deletion::Progressing {
                requeue_after: Duration::from_secs(30),
                status: "deleting".into(),
            });
        }
        w.queues.remove(&name);
        Ok(Deletion::Done)
    }

    fn requeue_after(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// A stack `shop` with one service `orders` and the queues named, in one wave.
fn stack(queues: &[(&str, i64)]) -> (DesiredStack, Graph) {
    let mut tree = FileTree::new("stacks/shop");
    let mut add = |path: &str, text: String| {
        tree.files.insert(path.to_string(), Arc::from(text));
    };
    add(
        "stack.yaml",
        "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata:\n  name: shop\nspec:\n  provider:\n    name: aws\n    region: us-east-1\n".into(),
    );
    add(
        "services/orders/service.yaml",
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata:\n  name: orders\n  stack: shop\nspec: {}\n".into(),
    );
    add(
        "environments/development/variables.yaml",
        "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata:\n  name: development\n  stack: shop\n  environment: development\nspec:\n  VERSION: v1\n".into(),
    );
    for (name, size) in queues {
        add(
            &format!("services/orders/components/{name}/sqs.yaml"),
            format!("apiVersion: components.panka.io/v1\nkind: SQS\nmetadata:\n  name: {name}\n  service: orders\n  stack: shop\nspec:\n  type: standard\n  visibilityTimeout: {size}\n"),
        );
    }
    let loaded = panka_core::validate::load_tree("shop", &tree).expect("fixture loads");
    panka_core::validate::plan_input(&loaded, "development", &Default::default())
        .expect("fixture resolves")
}

struct Fixture {
    engine: Engine,
    queues: Queues,
    state_dir: PathBuf,
    locks: Arc<LocalLocks>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let locks = Arc::new(LocalLocks::new(dir.path().join("locks")));
    let backends = Backends {
        state: StateStore::new(Arc::new(LocalStore::new(&state_dir))),
        locks: locks.clone(),
    };
    let locker = Locker::new(backends.locks.clone(), LockOptions::default()).expect("locker");
    let queues = Queues(Arc::new(Mutex::new(World::default())));
    let factory_queues = queues.clone();
    let engine = Engine::with_drivers(
        SdkConfig::builder().build(),
        backends,
        locker,
        Arc::new(move |_| Drivers::with(vec![Box::new(factory_queues.clone())])),
    );
    Fixture {
        engine,
        queues,
        state_dir,
        locks,
        _dir: dir,
    }
}

/// Records events.
#[derive(Default)]
struct Watch {
    events: Mutex<Vec<String>>,
}

impl Progress for Watch {
    fn event(&self, event: Event<'_>) {
        let line = match &event {
            Event::ComponentDone(p, ..) => format!("done {}", p.id),
            Event::Waiting(id, status) => format!("waiting {id} {status}"),
            Event::ComponentStarted(p) => format!("start {}", p.id),
            Event::ComponentFailed(p, why) => format!("failed {} {why}", p.id),
            Event::StateSaved(n) => format!("saved {n}"),
            other => format!("{other:?}").chars().take(20).collect(),
        };
        self.events.lock().expect("events").push(line);
    }
}

fn options(concurrency: usize) -> EngineOptions {
    EngineOptions {
        concurrency,
        actor: "tester@test".into(),
        ..EngineOptions::default()
    }
}

async fn state_components(f: &Fixture) -> BTreeSet<String> {
    f.engine
        .state()
        .read(&StateKey::new("shop", "development").expect("key"))
        .await
        .expect("state reads")
        .map(|s| s.document.components.keys().cloned().collect())
        .unwrap_or_default()
}

async fn last_outcome(f: &Fixture) -> Option<ReleaseOutcome> {
    let key = StateKey::new("shop", "development").expect("key");
    f.engine
        .state()
        .history(&key, Some(1))
        .await
        .expect("history")
        .into_iter()
        .find_map(|e| match e {
            panka_core::state::HistoryEntry::Release(r) => Some(r.outcome),
            _ => None,
        })
}

/// Plans, approves and applies, stepping without sleeping; the report or the error.
async fn apply_all(
    f: &Fixture,
    run: &Run,
    desired: &DesiredStack,
    graph: &Graph,
    progress: &dyn Progress,
) -> Result<ApplyReport, EngineError> {
    let prepared = f.engine.plan(run, desired, graph).await?;
    let approval = prepared.approve();
    let mut applying = match f
        .engine
        .apply(run, desired, graph, &approval, progress)
        .await?
    {
        Ok(a) => a,
        Err(report) => return Ok(report),
    };
    for _ in 0..20 {
        match applying.step().await? {
            Step::Done(report) => return Ok(*report),
            Step::Progressing { applying: next, .. } => applying = *next,
        }
    }
    panic!("the apply never finished");
}

/// Plans, approves and takes the lock: the apply, not stepped yet.
async fn start<'a>(
    f: &'a Fixture,
    run: &'a Run,
    desired: &'a DesiredStack,
    graph: &Graph,
    progress: &'a dyn Progress,
) -> Applying<'a> {
    let prepared = f.engine.plan(run, desired, graph).await.expect("plans");
    f.engine
        .apply(run, desired, graph, &prepared.approve(), progress)
        .await
        .expect("locks")
        .expect("has changes")
}

async fn lock_is_free(f: &Fixture) -> bool {
    use panka_controller::lock::LockBackend;
    let target = LockTarget::stack("shop", "development").expect("target");
    f.locks.get(&target).await.expect("lock reads").is_none()
}

#[tokio::test]
async fn a_cancelled_apply_records_what_finished_releases_the_lock_and_a_rerun_converges() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10), ("b", 20), ("c", 30)]);
    let token = CancellationToken::new();
    // Ctrl-C while the first queue of the wave is being created: that mutation finishes, and
    // nothing new starts.
    f.queues.world().cancel_during = Some(("orders/a".into(), token.clone()));
    let watch = Watch::default();
    let run = f.engine.run(&desired, options(1), token.clone());
    let err = apply_all(&f, &run, &desired, &graph, &watch)
        .await
        .expect_err("the apply is interrupted");
    assert!(matches!(err, EngineError::Interrupted), "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
    // The component in flight finished and is in state; nothing was started after the cancel.
    assert_eq!(
        state_components(&f).await,
        BTreeSet::from(["orders/a".to_string()])
    );
    assert_eq!(f.queues.world().mutations, ["orders/a"]);
    assert_eq!(last_outcome(&f).await, Some(ReleaseOutcome::Interrupted));
    assert!(lock_is_free(&f).await, "the lock is released");

    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect("the re-run converges");
    assert_eq!(
        f.queues.world().mutations,
        ["orders/a", "orders/b", "orders/c"],
        "each queue created once"
    );
    assert_eq!(state_components(&f).await.len(), 3);
    assert_eq!(last_outcome(&f).await, Some(ReleaseOutcome::Succeeded));
}

#[tokio::test]
async fn each_component_is_in_state_while_the_rest_of_its_wave_is_still_applying() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10), ("b", 20)]);
    // b's create runs alongside a's and only finishes once a is in state: with state written
    // per wave it would wait forever (and fail the test).
    f.queues.world().wait_for_record =
        Some(("orders/b".into(), "orders/a".into(), f.state_dir.clone()));
    let run = f.engine.run(&desired, options(2), CancellationToken::new());
    let report = apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect("applies");
    assert!(report.release.is_some());
    assert_eq!(state_components(&f).await.len(), 2);
}

#[tokio::test]
async fn a_plan_approved_before_aws_changed_is_refused_without_a_change() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10)]);
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let prepared = f.engine.plan(&run, &desired, &graph).await.expect("plans");
    let approval = prepared.approve();
    // Someone creates the queue by hand between the approval and the apply.
    f.queues.world().queues.insert("orders/a".into(), 99);
    let err = f
        .engine
        .apply(&run, &desired, &graph, &approval, &Watch::default())
        .await
        .expect_err("a stale plan is refused");
    assert!(
        matches!(err.refusal(), Some(Refusal::PlanStale { .. })),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(f.queues.world().mutations.is_empty(), "nothing changed");
    assert!(state_components(&f).await.is_empty(), "no state written");
    assert!(lock_is_free(&f).await, "the lock is released");
}

#[tokio::test]
async fn a_progressing_component_is_stepped_again_not_slept_on() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10)]);
    f.queues.world().progressing.insert("orders/a".into(), 2);
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let watch = Watch::default();
    let applying = start(&f, &run, &desired, &graph, &watch).await;
    let started = Instant::now();
    let next = expect_progressing(applying.step().await.expect("steps"));
    // The driver asked for 30 s; the step returned at once, the component already in state.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        state_components(&f).await,
        BTreeSet::from(["orders/a".to_string()])
    );
    let next = expect_progressing(next.step().await.expect("steps"));
    match next.step().await.expect("steps") {
        Step::Done(report) => assert!(report.release.is_some()),
        other => panic!("expected done, got {other:?}"),
    }
    assert_eq!(f.queues.world().mutations, ["orders/a"], "created once");
    assert!(watch
        .events
        .lock()
        .expect("events")
        .iter()
        .any(|e| e == "waiting orders/a creating"));
}

fn expect_progressing(step: Step<'_>) -> Applying<'_> {
    match step {
        Step::Progressing {
            applying,
            requeue_after,
            waiting,
        } => {
            assert_eq!(requeue_after, Duration::from_secs(30));
            assert_eq!(waiting.len(), 1, "{waiting:?}");
            *applying
        }
        Step::Done(_) => panic!("expected progressing"),
    }
}

#[tokio::test]
async fn a_component_that_never_settles_fails_after_the_health_timeout() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10)]);
    f.queues.world().progressing.insert("orders/a".into(), 1000);
    let mut opts = options(1);
    opts.health_timeout = Duration::ZERO;
    let run = f.engine.run(&desired, opts, CancellationToken::new());
    let err = apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect_err("unhealthy");
    assert!(
        matches!(
            err,
            EngineError::Unhealthy {
                degraded: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(last_outcome(&f).await, Some(ReleaseOutcome::Failed));
    assert!(lock_is_free(&f).await);
}

#[tokio::test]
async fn errors_say_retry_change_or_wait_for_the_holder() {
    // Throttled by AWS: retry.
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10)]);
    f.queues.world().fail = Some(("orders/a".into(), |id| DriverError::Aws {
        action: "create queue".into(),
        component: id.clone(),
        source: Box::new(panka_controller::aws::AwsError {
            class: panka_controller::aws::ErrorClass::Throttled,
            code: Some("ThrottlingException".into()),
            status: Some(400),
            message: "Rate exceeded".into(),
            request_id: Some("req-1".into()),
        }),
    }));
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let err = apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect_err("throttled");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(
        err.to_string(),
        "failed to create queue orders/a: ThrottlingException: Rate exceeded (request id req-1)"
    );
    assert_eq!(last_outcome(&f).await, Some(ReleaseOutcome::Failed));

    // Not ours: a change (or --adopt) is needed.
    f.queues.world().fail = Some(("orders/a".into(), |id| DriverError::NotOurs {
        component: id.clone(),
        what: "queue".into(),
    }));
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let err = apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect_err("not ours");
    assert_eq!(err.class(), ErrorClass::Permanent);

    // Someone else holds the lock: a conflict, and nothing is touched.
    f.queues.world().fail = None;
    let other = Locker::new(f.locks.clone(), LockOptions::default()).expect("locker");
    let held = other
        .acquire(
            LockTarget::stack("shop", "development").expect("target"),
            "someone@else",
            "apply",
            &mut |_| {},
        )
        .await
        .expect("the other holder locks");
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let err = apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect_err("held");
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    assert!(f.queues.world().mutations.is_empty());
    held.release().await.expect("released");
}

#[tokio::test]
async fn a_deletion_still_going_is_stepped_again_until_it_is_gone() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10), ("b", 20)]);
    let run = f.engine.run(&desired, options(2), CancellationToken::new());
    apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect("applies");
    let (smaller, graph) = stack(&[("a", 10)]);
    f.queues.world().deleting.insert("orders/b".into(), 2);
    let run = f.engine.run(&smaller, options(2), CancellationToken::new());
    let watch = Watch::default();
    let applying = start(&f, &run, &smaller, &graph, &watch).await;
    let next = expect_progressing(applying.step().await.expect("steps"));
    assert!(
        state_components(&f).await.contains("orders/b"),
        "kept until gone"
    );
    let next = expect_progressing(next.step().await.expect("steps"));
    assert!(matches!(next.step().await.expect("steps"), Step::Done(_)));
    assert_eq!(
        state_components(&f).await,
        BTreeSet::from(["orders/a".to_string()])
    );
}

#[tokio::test]
async fn a_suspended_apply_records_an_in_progress_release_and_frees_the_lock_for_the_next_run() {
    let f = fixture();
    let (desired, graph) = stack(&[("a", 10)]);
    f.queues.world().progressing.insert("orders/a".into(), 1);
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let watch = Watch::default();
    let applying = start(&f, &run, &desired, &graph, &watch).await;
    // What a controller does with a rollout still going: end the reconcile, requeue.
    let report = expect_progressing(applying.step().await.expect("steps"))
        .suspend()
        .await
        .expect("suspends");
    assert_eq!(
        report.release.map(|r| r.outcome),
        Some(ReleaseOutcome::InProgress)
    );
    assert!(lock_is_free(&f).await);
    assert_eq!(
        state_components(&f).await,
        BTreeSet::from(["orders/a".to_string()])
    );
    // The next run plans the queue as applied and only waits for it: no second create.
    let run = f.engine.run(&desired, options(1), CancellationToken::new());
    let report = apply_all(&f, &run, &desired, &graph, &Watch::default())
        .await
        .expect("the next run finishes");
    assert!(!report.plan.has_changes());
    assert_eq!(f.queues.world().mutations, ["orders/a"]);
}
