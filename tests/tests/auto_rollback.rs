//! Automatic rollback of a wave that fails its health wait, against the emulator with S3 state
//! and DynamoDB locks. The emulator has no workload that can fail a health check, so the SQS
//! driver is wrapped ([`panka_tests::failing`]): a queue whose visibility timeout is 666 is
//! degraded. Everything else — the plan, the waves, state, history, the rollback — is the
//! product's.

use std::path::Path;
use std::time::Duration;

use panka_controller::engine::{Engine, EngineOptions, Quiet};
use panka_controller::lock::{LockOptions, Locker};
use panka_controller::session::{step_until_done, FailedApply, Limits, Session, Target};
use panka_controller::state::{rolled_back, HistoryEntry, ReleaseKind, ReleaseOutcome, StateKey};
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_tests::emulator::{emulator, unique_name};
use panka_tests::failing::fails_at_666;
use panka_tests::repo::{stack_files, write};
use tokio_util::sync::CancellationToken;

/// Stack `name`: queues `jobs` and `events` (wave 1) and `audit`, which depends on `jobs`
/// (wave 2), each with its visibility timeout from a variable; `on_failure` is the stack's
/// `rollback.onFailure`.
fn repo(root: &Path, name: &str, on_failure: bool) {
    write(root, &format!("stacks/{name}/infra/defaults.yaml"), &format!(
        "apiVersion: infra.panka.io/v1\nkind: StackInfra\nmetadata: {{name: defaults, stack: {name}}}\nspec:\n  rollback: {{onFailure: {on_failure}}}\n"));
    stack_files(
        root,
        name,
        "{VERSION: v1, JOBS: \"30\", EVENTS: \"30\", AUDIT: \"30\"}",
    );
    write(
        root,
        &format!("stacks/{name}/services/orders/service.yaml"),
        &format!(
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {{name: orders, stack: {name}}}\n"),
    );
    for (queue, var, extra) in [
        ("jobs", "JOBS", ""),
        ("events", "EVENTS", ""),
        ("audit", "AUDIT", "  dependsOn: [jobs]\n"),
    ] {
        write(root, &format!("stacks/{name}/services/orders/components/{queue}/sqs.yaml"), &format!(
            "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata: {{name: {queue}, service: orders, stack: {name}}}\nspec:\n  visibilityTimeout: ${{{var}}}\n{extra}"));
    }
}

fn resolve(root: &Path, name: &str, vars: &[(&str, &str)]) -> (DesiredStack, Graph) {
    let loaded = panka_controller::validate::load_stack(root, name).expect("loads");
    let options = panka_core::resolve::Options {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    panka_controller::validate::plan_input(&loaded, "development", &options).expect("resolves")
}

async fn visibility(name: &str, queue: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(&emulator().sdk_config().await);
    let url = sqs
        .get_queue_url()
        .queue_name(format!("{name}-development-orders-{queue}"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout))
        .cloned()
        .expect("a visibility timeout")
}

/// Applies v1 (30 s everywhere), then v2 (`jobs` 666: degraded, `events` 45, `audit` 50) and,
/// when that fails, lets the session roll the failed wave back. What the rollback said.
async fn fail_v2(root: &Path, name: &str) -> (Session, StateKey, Option<String>) {
    fail(root, name, false).await
}

/// [`fail_v2`]; with `new_queue`, v2 instead adds a queue `fresh` (666: degraded) beside
/// `jobs` in the first wave and changes `jobs` to 31 (healthy).
async fn fail(root: &Path, name: &str, new_queue: bool) -> (Session, StateKey, Option<String>) {
    let sdk = emulator().sdk_config().await;
    let backends = emulator().fresh_backends().await.backends;
    let session = Session::with(backends.clone(), sdk.clone()).with_actor("tester@ci");
    let locker = Locker::new(backends.locks.clone(), LockOptions::default()).expect("locker");
    let engine = Engine::with_drivers(sdk, backends, locker, fails_at_666());
    let limits = Limits {
        allow_destroy: false,
        health_timeout: Duration::from_secs(30),
    };
    let target = Target::default();
    let cancel = CancellationToken::new();
    let run_apply = |desired: DesiredStack, graph: Graph| {
        let options = EngineOptions {
            ..session.options_for(&target, panka_controller::session::Operation::Apply(limits))
        };
        let engine = &engine;
        let cancel = cancel.clone();
        async move {
            let run = engine.run(&desired, options, cancel.clone());
            let prepared = engine.plan(&run, &desired, &graph).await.expect("plans");
            let applying = engine
                .apply(&run, &desired, &graph, &prepared.approve(), &Quiet)
                .await
                .expect("applies")
                .expect("has changes");
            let result = step_until_done(applying, &cancel).await;
            (prepared, result)
        }
    };
    let (desired, graph) = resolve(root, name, &[]);
    let (_, first) = run_apply(desired, graph).await;
    first.expect("v1 applies");
    let jobs = if new_queue {
        write(root, &format!("stacks/{name}/services/orders/components/fresh/sqs.yaml"), &format!(
            "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata: {{name: fresh, service: orders, stack: {name}}}\nspec:\n  visibilityTimeout: 666\n"));
        "31"
    } else {
        "666"
    };
    let v2 = [
        ("VERSION", "v2"),
        ("JOBS", jobs),
        ("EVENTS", "45"),
        ("AUDIT", "50"),
    ];
    let (desired, graph) = resolve(root, name, &v2);
    let (prepared, second) = run_apply(desired.clone(), graph).await;
    let failure = second.expect_err("v2 fails its health wait");
    let unhealthy = if new_queue { "fresh" } else { "jobs" };
    assert_eq!(
        failure.unhealthy_component(),
        Some(&ComponentId::new("orders", unhealthy)),
        "{failure}"
    );
    let note = session
        .roll_back_failed_wave(
            FailedApply {
                engine: &engine,
                target: &target,
                repository: &desired,
                prepared: &prepared,
                failure: &failure,
                limits,
            },
            &cancel,
            &Quiet,
        )
        .await;
    let key = StateKey::new(name, "development").expect("key");
    (session, key, note)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wave_that_fails_its_health_wait_goes_back_and_later_waves_do_not_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("ar");
    repo(dir.path(), &name, true);
    let (session, key, note) = fail_v2(dir.path(), &name).await;
    assert_eq!(
        note.as_deref(),
        Some("rolled back orders/events, orders/jobs to their previous spec")
    );
    // The failed wave is back at v1; the wave after it never ran.
    for queue in ["jobs", "events", "audit"] {
        assert_eq!(visibility(&name, queue).await, "30", "{queue}");
    }
    let history = session
        .backends()
        .state
        .history(&key, None)
        .await
        .expect("history");
    let releases: Vec<_> = history
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::Release(r) => Some(r),
            HistoryEntry::Unlock(_) => None,
        })
        .collect();
    let [rollback, failed, first] = releases[..] else {
        panic!("three releases expected: {releases:#?}")
    };
    assert_eq!(
        (first.kind, first.outcome),
        (ReleaseKind::Apply, ReleaseOutcome::Succeeded)
    );
    assert_eq!(
        (failed.kind, failed.outcome),
        (ReleaseKind::Apply, ReleaseOutcome::Failed)
    );
    assert_eq!(failed.version.as_deref(), Some("v2"));
    assert_eq!(
        (rollback.kind, rollback.outcome),
        (ReleaseKind::Rollback, ReleaseOutcome::Succeeded)
    );
    assert_eq!(rollback.target.as_deref(), Some(first.id.as_str()));
    assert_eq!(rollback.supersedes, std::slice::from_ref(&failed.id));
    assert_eq!(rollback.version.as_deref(), Some("v1"));
    let reason = rollback.reason.as_deref().expect("a reason");
    assert!(
        reason.contains("consumers crash on every message"),
        "{reason}"
    );
    assert!(rolled_back(&history).contains(failed.id.as_str()));
    // An automatic rollback does not pin: the next commit is the fix.
    let state = session
        .backends()
        .state
        .read(&key)
        .await
        .expect("reads")
        .expect("a state");
    assert!(state.document.pins.is_empty(), "{:?}", state.document.pins);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_on_failure_off_the_failed_wave_stays_as_it_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("ar");
    repo(dir.path(), &name, false);
    let (_, _, note) = fail_v2(dir.path(), &name).await;
    assert_eq!(note, None);
    assert_eq!(visibility(&name, "jobs").await, "666");
    assert_eq!(visibility(&name, "events").await, "45");
    assert_eq!(visibility(&name, "audit").await, "30");
}

/// A component the failed wave created has no previous spec: it stays as the wave left it, and
/// the rest of the wave goes back; the rollback itself succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_component_that_fails_stays_and_the_rest_of_its_wave_goes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("ar");
    repo(dir.path(), &name, true);
    let (session, key, note) = fail(dir.path(), &name, true).await;
    let note = note.expect("a rollback");
    assert!(
        note.starts_with("rolled back orders/events, orders/jobs to their previous spec"),
        "{note}"
    );
    assert_eq!(visibility(&name, "jobs").await, "30");
    assert_eq!(visibility(&name, "events").await, "30");
    assert_eq!(visibility(&name, "fresh").await, "666");
    let history = session
        .backends()
        .state
        .history(&key, Some(1))
        .await
        .expect("history");
    match history.first() {
        Some(HistoryEntry::Release(r)) => assert_eq!(
            (r.kind, r.outcome),
            (ReleaseKind::Rollback, ReleaseOutcome::Succeeded),
            "{r:#?}"
        ),
        other => panic!("the rollback is the last release: {other:?}"),
    }
}
