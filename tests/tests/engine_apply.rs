//! The engine end to end against the emulator: lock → observe → plan → apply → record, on S3
//! state and DynamoDB locks, with a stack generated into a temporary repository.

use std::path::Path;

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use panka_controller::engine::{EngineError, EngineOptions, Quiet};
use panka_controller::lock::{LockOptions, Locker};
use panka_controller::state::{HistoryEntry, ReleaseOutcome, StateKey};
use panka_controller::validate::{load_stack, plan_input};
use panka_core::graph::Graph;
use panka_core::model::DesiredStack;
use panka_core::plan::Action;
use panka_core::resolve::Options;
use panka_tests::emulator::{emulator, unique_name, AwsBackends};
use panka_tests::engine::TestEngine;
use panka_tests::repo::{stack_files, write};

/// A stack `name` with one service `orders` holding the given SQS components.
fn repo(root: &Path, name: &str, queues: &[(&str, u32)]) {
    let _ = std::fs::remove_dir_all(root.join("stacks").join(name).join("services"));
    stack_files(root, name, "{VERSION: v1}");
    write(
        root,
        &format!("stacks/{name}/services/orders/service.yaml"),
        &format!(
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {{name: orders, stack: {name}}}\n"),
    );
    for (queue, visibility) in queues {
        write(root, &format!("stacks/{name}/services/orders/components/{queue}/sqs.yaml"), &format!(
            "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata: {{name: {queue}, service: orders, stack: {name}}}\nspec:\n  visibilityTimeout: {visibility}\n  deadLetterQueue: {{enabled: true}}\n"));
    }
}

fn desired(root: &Path, name: &str) -> (DesiredStack, Graph) {
    let loaded = load_stack(root, name).expect("loads");
    plan_input(&loaded, "development", &Options::default()).expect("resolves")
}

async fn engine(backends: &AwsBackends, _desired: &DesiredStack) -> TestEngine {
    let locker =
        Locker::new(backends.backends.locks.clone(), LockOptions::default()).expect("locker");
    TestEngine::new(
        emulator().sdk_config().await,
        backends.backends.clone(),
        locker,
    )
}

fn options() -> EngineOptions {
    EngineOptions {
        actor: "tester@ci".into(),
        ..EngineOptions::default()
    }
}

#[tokio::test]
async fn apply_records_state_and_a_second_apply_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("e");
    repo(dir.path(), &name, &[("jobs", 60), ("events", 30)]);
    let backends = emulator().fresh_backends().await;
    let (d, g) = desired(dir.path(), &name);

    let e = engine(&backends, &d).await;
    let report = e
        .apply(&d, &g, &options(), &mut |_| true, &Quiet)
        .await
        .expect("apply")
        .expect("approved");
    assert_eq!(report.plan.summary.create, 2);
    let release = report.release.expect("a release is recorded");
    assert_eq!(release.outcome, ReleaseOutcome::Succeeded);
    assert_eq!(release.version.as_deref(), Some("v1"));
    assert_eq!(release.actor, "tester@ci");

    let key = StateKey::new(&name, "development").expect("key");
    let state = backends
        .backends
        .state
        .read(&key)
        .await
        .expect("read")
        .expect("state exists");
    assert_eq!(state.document.components.len(), 2);
    let jobs = &state.document.components["orders/jobs"];
    assert_eq!(jobs.kind, "SQS");
    assert!(jobs.identifiers["url"].contains(&format!("{name}-development-orders-jobs")));
    let history = backends
        .backends
        .state
        .history(&key, None)
        .await
        .expect("history");
    assert!(matches!(&history[0], HistoryEntry::Release(r) if r.id == release.id));

    // Converged: a fresh engine (fresh call counter) plans no change and mutates nothing.
    let e2 = engine(&backends, &d).await;
    let report = e2
        .apply(
            &d,
            &g,
            &options(),
            &mut |_| panic!("nothing to approve"),
            &Quiet,
        )
        .await
        .expect("apply")
        .expect("report");
    assert!(report.release.is_none());
    assert!(!report.plan.has_changes());
    assert_eq!(e2.calls().mutating(), 0, "{:?}", e2.calls().snapshot());
    assert!(e2.calls().total() > 0, "observe read AWS");

    // State lost (a fresh bucket): the resources are ours and converged, so apply records them
    // again without touching AWS and without a release.
    let lost = emulator().fresh_backends().await;
    let e3 = engine(&lost, &d).await;
    let report = e3
        .apply(
            &d,
            &g,
            &options(),
            &mut |_| panic!("nothing to approve"),
            &Quiet,
        )
        .await
        .expect("apply")
        .expect("report");
    assert!(report.release.is_none());
    assert_eq!(e3.calls().mutating(), 0);
    let state = lost
        .backends
        .state
        .read(&key)
        .await
        .expect("read")
        .expect("state recorded");
    assert_eq!(state.document.components.len(), 2);
    assert!(state.document.release.is_none());
}

#[tokio::test]
async fn a_changed_setting_updates_only_that_component_and_a_console_change_is_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("e");
    repo(dir.path(), &name, &[("jobs", 60), ("events", 30)]);
    let backends = emulator().fresh_backends().await;
    let (d, g) = desired(dir.path(), &name);
    engine(&backends, &d)
        .await
        .apply(&d, &g, &options(), &mut |_| true, &Quiet)
        .await
        .expect("apply");

    repo(dir.path(), &name, &[("jobs", 90), ("events", 30)]);
    let (d, g) = desired(dir.path(), &name);
    let e = engine(&backends, &d).await;
    let report = e
        .apply(&d, &g, &options(), &mut |_| true, &Quiet)
        .await
        .expect("apply")
        .expect("report");
    let actions: Vec<_> = report
        .plan
        .all()
        .map(|p| (p.id.to_string(), p.action.clone()))
        .collect();
    assert!(
        actions.contains(&("orders/jobs".into(), Action::Update)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("orders/events".into(), Action::NoOp)),
        "{actions:?}"
    );

    // Someone changes the queue in the console: the next plan shows drift on that field.
    let sqs = aws_sdk_sqs::Client::new(&emulator().sdk_config().await);
    let url = &report.outputs[&panka_core::model::ComponentId::new("orders", "events")]["url"];
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(Attr::VisibilityTimeout, "5")
        .send()
        .await
        .expect("drift");
    let prepared = e.prepare(&d, &g, &options()).await.expect("plan");
    let events = prepared
        .plan
        .all()
        .find(|p| p.id.component == "events")
        .expect("planned");
    assert!(events.drift, "{events:?}");
    assert_eq!(events.diffs[0].field, "visibilityTimeout");
}

#[tokio::test]
async fn removing_a_component_deletes_it_and_destroy_empties_the_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("e");
    repo(dir.path(), &name, &[("jobs", 60), ("events", 30)]);
    let backends = emulator().fresh_backends().await;
    let (d, g) = desired(dir.path(), &name);
    engine(&backends, &d)
        .await
        .apply(&d, &g, &options(), &mut |_| true, &Quiet)
        .await
        .expect("apply");

    repo(dir.path(), &name, &[("jobs", 60)]);
    let (d, g) = desired(dir.path(), &name);
    let report = engine(&backends, &d)
        .await
        .apply(&d, &g, &options(), &mut |_| true, &Quiet)
        .await
        .expect("apply")
        .expect("report");
    assert_eq!(report.plan.deletions.len(), 1);
    assert_eq!(report.plan.deletions[0].id.component, "events");
    let key = StateKey::new(&name, "development").expect("key");
    let state = backends
        .backends
        .state
        .read(&key)
        .await
        .expect("read")
        .expect("state");
    assert!(!state.document.components.contains_key("orders/events"));

    // Destroy: an empty desired state deletes everything that state records.
    let mut empty = d.clone();
    empty.components.clear();
    let none = Graph {
        waves: vec![],
        edges: vec![],
    };
    let e = engine(&backends, &empty).await;
    e.apply(&empty, &none, &options(), &mut |_| true, &Quiet)
        .await
        .expect("destroy");
    let state = backends
        .backends
        .state
        .read(&key)
        .await
        .expect("read")
        .expect("state");
    assert!(state.document.components.is_empty());
    let sqs = aws_sdk_sqs::Client::new(&emulator().sdk_config().await);
    let left = sqs
        .list_queues()
        .queue_name_prefix(&name)
        .send()
        .await
        .expect("list")
        .queue_urls()
        .to_vec();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_held_lock_refuses_at_once_with_the_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("e");
    repo(dir.path(), &name, &[("jobs", 60)]);
    let backends = emulator().fresh_backends().await;
    let (d, g) = desired(dir.path(), &name);
    let locker =
        Locker::new(backends.backends.locks.clone(), LockOptions::default()).expect("locker");
    let target = panka_controller::lock::LockTarget::stack(&name, "development").expect("target");
    let held = locker
        .acquire(target, "someone@else", "apply", &mut |_| {})
        .await
        .expect("held");
    let err = engine(&backends, &d)
        .await
        .apply(&d, &g, &options(), &mut |_| true, &Quiet)
        .await
        .expect_err("refused");
    match err {
        EngineError::Lock(e) => assert_eq!(
            e.holder().map(|h| h.locked_by.as_str()),
            Some("someone@else")
        ),
        other => panic!("unexpected {other}"),
    }
    held.release().await.expect("release");
}

/// `panka unlock --force` while an apply only waits for a rollout stops the apply at its next
/// step, once its heartbeat finds the lock gone — not at the end of its health timeout. The
/// rollout: a worker asking for three tasks, which the emulator starts with two running.
#[tokio::test]
async fn a_lock_broken_while_the_apply_waits_stops_it() {
    let b = emulator().fresh_backends().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("broken");
    repo(dir.path(), &name, &[("jobs", 30)]);
    let worker = format!("stacks/{name}/services/orders/components/worker");
    write(
        dir.path(),
        &format!("{worker}/worker.yaml"),
        &format!(
            "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata: {{name: worker, service: orders, stack: {name}}}\nspec:\n  image: {{repository: public.ecr.aws/docker/library/busybox, tag: latest}}\n"
        ),
    );
    write(
        dir.path(),
        &format!("{worker}/infra.yaml"),
        &format!(
            "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {{name: worker, service: orders, stack: {name}}}\nspec:\n  scaling: {{replicas: 3}}\n"
        ),
    );
    let (d, g) = desired(dir.path(), &name);
    // A short lease, so the heartbeat notices within a second.
    let locker = Locker::new(
        b.backends.locks.clone(),
        LockOptions {
            lease: std::time::Duration::from_secs(4),
            heartbeat: std::time::Duration::from_millis(500),
            ..LockOptions::default()
        },
    )
    .expect("locker");
    let engine = panka_controller::engine::Engine::new(
        emulator().sdk_config().await,
        b.backends.clone(),
        locker,
    );
    let run = engine.run(&d, options(), tokio_util::sync::CancellationToken::new());
    let prepared = engine.plan(&run, &d, &g).await.expect("plan");
    let approval = prepared.approve();
    let mut applying = match engine
        .apply(&run, &d, &g, &approval, &Quiet)
        .await
        .expect("apply starts")
    {
        Ok(applying) => applying,
        Err(report) => panic!("nothing to do? {:?}", report.plan.summary),
    };
    let mut broken = false;
    let mut steps = 0;
    let err = loop {
        match applying.step().await {
            Ok(panka_controller::engine::Step::Progressing {
                applying: next,
                waiting,
                ..
            }) => {
                if !broken && waiting.iter().any(|(id, _)| id.component == "worker") {
                    // Someone breaks the lock while only a rollout is waited for.
                    let target =
                        panka_core::keys::LockTarget::stack(&name, "development").expect("target");
                    let out = panka_controller::lock::unlock(
                        b.backends.locks.as_ref(),
                        &target,
                        "someone-else",
                        true,
                    )
                    .await
                    .expect("unlock");
                    assert!(
                        matches!(
                            out,
                            panka_controller::lock::UnlockOutcome::Removed { forced: true, .. }
                        ),
                        "{out:?}"
                    );
                    broken = true;
                }
                steps += 1;
                assert!(
                    steps < 60,
                    "still going 30 s on (broken: {broken}): {waiting:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                applying = *next;
            }
            Ok(panka_controller::engine::Step::Done(report)) => {
                panic!("the rollout settled here? {:?}", report.plan.summary)
            }
            Err(e) => break e,
        }
    };
    assert!(broken, "{err}");
    assert!(
        matches!(
            &err,
            EngineError::Lock(panka_controller::lock::LockError::Lost { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("was lost"), "{err}");
}

/// A database whose password secret does not exist yet: the plan refuses it (apply could not
/// create it), while `status` still describes the stack and says what is missing.
#[tokio::test]
async fn status_notes_a_missing_password_secret_that_plan_refuses() {
    let b = emulator().fresh_backends().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("nosecret");
    repo(dir.path(), &name, &[("jobs", 30)]);
    let missing = format!("/panka-tests/{name}/db-password");
    write(
        dir.path(),
        &format!("stacks/{name}/services/orders/components/db/rds.yaml"),
        &format!(
            "apiVersion: components.panka.io/v1\nkind: RDS\nmetadata: {{name: db, service: orders, stack: {name}}}\nspec:\n  engine: {{type: postgres, version: \"15.4\"}}\n  instance: {{class: db.t3.small, storage: {{type: gp3, allocatedGB: 20}}}}\n  database: {{name: orders, username: dbadmin, passwordSecret: {{ref: {missing}}}}}\n"
        ),
    );
    let other = format!("/panka-tests/{name}/reports-password");
    write(
        dir.path(),
        &format!("stacks/{name}/services/orders/components/reports/rds.yaml"),
        &format!(
            "apiVersion: components.panka.io/v1\nkind: RDS\nmetadata: {{name: reports, service: orders, stack: {name}}}\nspec:\n  engine: {{type: postgres, version: \"15.4\"}}\n  instance: {{class: db.t3.small, storage: {{type: gp3, allocatedGB: 20}}}}\n  database: {{name: reports, username: dbadmin, passwordSecret: {{ref: {other}}}}}\n"
        ),
    );
    let (d, g) = desired(dir.path(), &name);
    let session =
        panka_controller::session::Session::with(b.backends.clone(), emulator().sdk_config().await);
    let target = panka_controller::session::Target::default();

    // One plan names every missing secret, each with its component's file.
    let err = session.plan(&target, &d, &g).await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains(&missing) && text.contains(&other), "{text}");
    assert!(
        text.lines().count() == 2 && text.lines().all(|l| l.starts_with("stacks/")),
        "{text}"
    );

    let status = session.status(&target, &d, &g).await.expect("described");
    assert_eq!(status.notes.len(), 2, "{:?}", status.notes);
    assert!(
        status.notes[0].contains(&missing)
            && status.notes[0].contains("database.passwordSecret.ref"),
        "{:?}",
        status.notes
    );
    let db = status
        .components
        .iter()
        .find(|c| c.id.component == "db")
        .expect("the database is listed");
    assert!(!db.observed.exists);

    // A run made to note refusals is never applied: the plan under the lock says why.
    let locker = Locker::new(b.backends.locks.clone(), LockOptions::default()).expect("locker");
    let engine = panka_controller::engine::Engine::new(
        emulator().sdk_config().await,
        b.backends.clone(),
        locker,
    );
    let mut looking = options();
    looking.note_missing_secrets = true;
    let run = engine.run(&d, looking, tokio_util::sync::CancellationToken::new());
    let prepared = engine.plan(&run, &d, &g).await.expect("a plan to look at");
    assert_eq!(prepared.notes.len(), 2);
    let Err(refused) = engine
        .apply(&run, &d, &g, &prepared.approve(), &Quiet)
        .await
    else {
        panic!("a noted plan was applied");
    };
    assert!(
        matches!(
            &refused,
            EngineError::Refused(panka_controller::engine::Refusal::Noted(n)) if n.len() == 2
        ),
        "{refused:?}"
    );
    let target = panka_core::keys::LockTarget::stack(&name, "development").expect("target");
    assert!(
        b.backends.locks.get(&target).await.expect("lock").is_none(),
        "no lock left"
    );
}
