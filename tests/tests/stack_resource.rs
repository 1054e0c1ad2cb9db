//! A Stack resource's own settings, against the emulator with the reconcile the controller
//! runs: `deletionPolicy: Delete` (CRD mode's finalizer) destroys what the controller applied,
//! through the engine and under the lock, recorded as a `destroy` release; `suspend` stops
//! applies until it is lifted; a rollout the controller let go of is finished by a later pass
//! without a new release; a stale record is brought up to date without one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use panka_controller::budget::Budget;
use panka_controller::lock::{LockOptions, Locker};
use panka_controller::reconcile::metrics::Metrics;
use panka_controller::reconcile::{destroy, reconcile, Context, Settings, StackSource};
use panka_controller::state::StateStore;
use panka_core::diag::Diagnostics;
use panka_core::keys::StateKey;
use panka_core::source::FileTree;
use panka_core::state::{HistoryEntry, Release, ReleaseKind, ReleaseOutcome};
use panka_core::sync::Phase;
use panka_crds::resource::{DeletionPolicy, Stack, StackResourceSpec};
use panka_tests::emulator::{emulator, unique_name};
use panka_tests::failing::fails_at_666;
use panka_tests::gitops::{write_queue_stack, QueueStack};
use tokio_util::sync::CancellationToken;

/// A stack's files read from a folder; the revision is a hash of their content.
#[derive(Debug)]
struct Folder(PathBuf);

impl StackSource for Folder {
    fn revision(&self, target: &Stack) -> Option<String> {
        use sha2::{Digest, Sha256};
        let tree = self.read("", target).ok()?;
        let mut hash = Sha256::new();
        for (path, text) in &tree.files {
            hash.update(format!("{path:?}\0{text}\0").as_bytes());
        }
        Some(hex::encode(hash.finalize())[..40].to_owned())
    }

    fn read(&self, _revision: &str, target: &Stack) -> Result<FileTree, Diagnostics> {
        panka_controller::source::dir::read_stack(&self.0, &target.spec.stack)
    }
}

async fn queues(sqs: &aws_sdk_sqs::Client, prefix: &str) -> Vec<String> {
    sqs.list_queues()
        .queue_name_prefix(prefix)
        .send()
        .await
        .expect("queues listed")
        .queue_urls()
        .to_vec()
}

fn context(
    repo: &std::path::Path,
    backends: &panka_controller::backend::Backends,
    sdk: &aws_config::SdkConfig,
) -> Arc<Context> {
    Arc::new(rollout_context(
        repo,
        backends,
        sdk,
        Duration::from_secs(30),
        Duration::from_secs(900),
    ))
}

/// [`context`] with the controller's `--rollout-wait` and `--rollout-timeout`.
fn rollout_context(
    repo: &std::path::Path,
    backends: &panka_controller::backend::Backends,
    sdk: &aws_config::SdkConfig,
    rollout_wait: Duration,
    rollout_timeout: Duration,
) -> Context {
    Context::new(
        Arc::new(Folder(repo.to_path_buf())),
        backends.clone(),
        sdk.clone(),
        Budget::new(None),
        Settings {
            poll_interval: Duration::from_secs(30),
            drift_interval: Duration::from_secs(300),
            rollout_wait,
            rollout_timeout,
            // The deletion policy is the Stack's own consent: the controller-wide switch for
            // repository deletions stays off.
            allow_destroy: false,
            actor: "panka-controller@test".into(),
        },
        Metrics::new(),
        CancellationToken::new(),
    )
}

fn queue_stack(root: &std::path::Path, name: &str, visibility_timeout: u32) {
    write_queue_stack(
        root,
        &QueueStack {
            name,
            environments: &["development"],
            drift_mode: "report",
            approval: &[],
            version: "v1",
            visibility_timeout,
        },
    );
}

fn stack_resource(name: &str) -> Stack {
    let mut obj = Stack::new(
        &format!("{name}-development"),
        StackResourceSpec {
            stack: name.to_owned(),
            environment: "development".into(),
            ..StackResourceSpec::default()
        },
    );
    obj.metadata.namespace = Some("apps".into());
    obj
}

/// A fresh bucket and lock table, and a queue stack `name` (visibility timeout 30) in a folder
/// the controller's context reads.
struct World {
    sdk: aws_config::SdkConfig,
    aws: panka_tests::emulator::AwsBackends,
    repo: tempfile::TempDir,
    name: String,
    ctx: Arc<Context>,
}

impl World {
    async fn new(prefix: &str) -> World {
        let emulator = emulator();
        let sdk = emulator.sdk_config().await;
        let aws = emulator.fresh_backends().await;
        let repo = tempfile::tempdir().expect("tempdir");
        let name = unique_name(prefix);
        queue_stack(repo.path(), &name, 30);
        let ctx = context(repo.path(), &aws.backends, &sdk);
        World {
            sdk,
            aws,
            repo,
            name,
            ctx,
        }
    }
}

/// The releases of `key`'s history, newest first.
async fn releases(state: &StateStore, key: &StateKey) -> Vec<Release> {
    state
        .history(key, None)
        .await
        .expect("history")
        .into_iter()
        .filter_map(|e| match e {
            HistoryEntry::Release(r) => Some(r),
            HistoryEntry::Unlock(_) => None,
        })
        .collect()
}

/// Passes until `sync.json` says `phase` (a pass may only start a rollout).
async fn pass_until(ctx: &Arc<Context>, obj: &Arc<Stack>, key: &StateKey, phase: Phase) {
    for _ in 0..20 {
        let _ = reconcile(obj.clone(), ctx.clone()).await;
        let sync = ctx.backends.state.sync(key).await.expect("sync");
        if sync.as_ref().is_some_and(|s| s.phase == phase) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("never {phase:?}");
}

#[tokio::test]
async fn the_delete_policy_destroys_what_the_controller_applied() {
    let World {
        sdk,
        aws,
        repo: _repo,
        name,
        ctx,
    } = World::new("del").await;
    let mut obj = stack_resource(&name);
    obj.spec.deletion_policy = Some(DeletionPolicy::Delete);
    let obj = Arc::new(obj);
    let key = StateKey::new(&name, "development").expect("key");

    // Applied by the reconcile, as the controller does.
    pass_until(&ctx, &obj, &key, Phase::Synced).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    assert!(!queues(&sqs, &name).await.is_empty(), "the queue exists");

    // The Stack is deleted with `deletionPolicy: Delete`: everything goes, recorded.
    destroy(obj.clone(), ctx.clone()).await.expect("destroyed");
    assert_eq!(
        queues(&sqs, &name).await,
        Vec::<String>::new(),
        "queues deleted"
    );
    let state = aws
        .backends
        .state
        .read(&key)
        .await
        .expect("state reads")
        .expect("state kept");
    assert!(
        state.document.components.is_empty(),
        "{:?}",
        state.document.components.keys()
    );
    let history = aws
        .backends
        .state
        .history(&key, Some(1))
        .await
        .expect("history");
    match history.first() {
        Some(HistoryEntry::Release(r)) => assert_eq!(r.kind, ReleaseKind::Destroy),
        other => panic!("the last release is the destroy: {other:?}"),
    }
    // The lock is free again.
    let target = panka_core::keys::LockTarget::stack(&name, "development").expect("target");
    let lock = aws.backends.locks.get(&target).await.expect("lock status");
    assert!(lock.is_none(), "{lock:?}");

    // A second deletion pass (the finalizer retried) finds nothing left and succeeds.
    destroy(obj, ctx).await.expect("nothing left to destroy");
}

#[tokio::test]
async fn a_suspended_stack_is_not_applied_until_resumed() {
    let World {
        aws,
        repo,
        name,
        ctx,
        ..
    } = World::new("sus").await;
    let key = StateKey::new(&name, "development").expect("key");
    let obj = Arc::new(stack_resource(&name));
    pass_until(&ctx, &obj, &key, Phase::Synced).await;
    let releases = aws
        .backends
        .state
        .history(&key, None)
        .await
        .expect("history")
        .len();

    // A change arrives while the Stack is suspended: nothing is applied.
    queue_stack(repo.path(), &name, 45);
    let mut suspended = (*obj).clone();
    suspended.spec.suspend = Some(true);
    let suspended = Arc::new(suspended);
    pass_until(&ctx, &suspended, &key, Phase::Suspended).await;
    let sync = aws
        .backends
        .state
        .sync(&key)
        .await
        .expect("sync")
        .expect("written");
    assert_ne!(sync.synced_commit, sync.commit, "{sync:?}");
    assert_eq!(
        aws.backends
            .state
            .history(&key, None)
            .await
            .expect("history")
            .len(),
        releases,
        "no release while suspended"
    );

    // Lifted: the change is applied.
    pass_until(&ctx, &obj, &key, Phase::Synced).await;
    assert_eq!(
        aws.backends
            .state
            .history(&key, None)
            .await
            .expect("history")
            .len(),
        releases + 1
    );
}

/// A rollout that outlasts `--rollout-wait` is let go of, its release recorded as in progress;
/// the passes after it watch it — no lock, no new release, phase `Progressing` — report it
/// failed once it outlasts `--rollout-timeout`, and say synced once it settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_let_go_of_is_watched_until_it_settles_or_outlasts_its_limit() {
    let World {
        sdk,
        aws,
        repo,
        name,
        ctx: _,
    } = World::new("rollout").await;
    // Three tasks asked for; the emulator runs two of every new service
    // (MOTO_ECS_SERVICE_RUNNING) until the service is updated.
    let dir = repo
        .path()
        .join("stacks")
        .join(&name)
        .join("services/app/components/worker");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("worker.yaml"),
        format!(
            "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata:\n  name: worker\n  service: app\n  stack: {name}\nspec:\n  image:\n    repository: public.ecr.aws/docker/library/busybox\n    tag: latest\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("infra.yaml"),
        format!(
            "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata:\n  name: worker\n  service: app\n  stack: {name}\nspec:\n  scaling:\n    replicas: 3\n"
        ),
    )
    .expect("write");
    let limit = Duration::from_secs(6);
    let ctx = Arc::new(rollout_context(
        repo.path(),
        &aws.backends,
        &sdk,
        Duration::from_secs(1),
        limit,
    ));
    let obj = Arc::new(stack_resource(&name));
    let key = StateKey::new(&name, "development").expect("key");
    let releases = || releases(&aws.backends.state, &key);
    let status = || async {
        ctx.backends
            .state
            .sync(&key)
            .await
            .expect("sync")
            .expect("a status")
    };
    let target = panka_core::keys::LockTarget::stack(&name, "development").expect("target");

    // The first pass applies, waits a second, and lets the worker go.
    reconcile(obj.clone(), ctx.clone()).await.expect("applied");
    let first = status().await;
    assert_eq!(first.phase, Phase::Progressing);
    let watched = first.rollout.clone().expect("the rollout is watched");
    let recorded = releases().await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].outcome, ReleaseOutcome::InProgress);
    assert_eq!(watched.release.as_deref(), Some(recorded[0].id.as_str()));

    // The next passes only watch: still 2 of 3 running, no lock, no new release.
    for _ in 0..2 {
        let action = reconcile(obj.clone(), ctx.clone()).await.expect("watched");
        assert!(
            format!("{action:?}").contains("requeue_after: Some"),
            "{action:?}"
        );
        assert_eq!(status().await.phase, Phase::Progressing);
    }
    assert_eq!(releases().await.len(), 1, "a watching pass wrote a release");
    assert!(
        aws.backends
            .locks
            .get(&target)
            .await
            .expect("lock")
            .is_none(),
        "a watching pass holds no lock"
    );

    // Past the limit: failed, naming the component and the limit.
    tokio::time::sleep(limit).await;
    let err = reconcile(obj.clone(), ctx.clone())
        .await
        .expect_err("too long");
    let text = err.to_string();
    assert!(
        text.contains("app/worker did not become healthy within 6s") && text.contains("2/3"),
        "{text}"
    );
    assert_eq!(status().await.phase, Phase::Failed);

    // The service reaches its count (here by hand): the next pass is synced, the watch ends,
    // and history still holds the one release.
    let cluster = format!("{name}-development-cluster");
    let service = format!("{name}-development-app-worker");
    panka_tests::console::scale(&sdk, &cluster, &service, 3).await;
    reconcile(obj.clone(), ctx.clone()).await.expect("synced");
    let last = status().await;
    assert_eq!(last.phase, Phase::Synced, "{last:?}");
    assert_eq!(last.rollout, None);
    assert_eq!(releases().await.len(), 1);
}

/// A record whose spec hash is not the repository's while AWS already matches (a spec that
/// changed only in what AWS cannot see, or records written by an older panka) is brought up to
/// date by the next pass: recorded without a release, so `pending` empties and the passes after
/// it do not plan the stack as changed forever.
#[tokio::test]
async fn a_stale_record_is_brought_up_to_date_without_a_release() {
    let World {
        aws,
        repo: _repo,
        name,
        ctx,
        ..
    } = World::new("stale").await;
    let key = StateKey::new(&name, "development").expect("key");
    let obj = Arc::new(stack_resource(&name));
    pass_until(&ctx, &obj, &key, Phase::Synced).await;
    let state = &aws.backends.state;
    let releases = state.history(&key, None).await.expect("history").len();

    // The record goes stale, written under the lock as panka writes it.
    let before = state.read(&key).await.expect("state").expect("written");
    let id = "app/queue".to_owned();
    let applied = before.document.components[&id].spec_hash.clone();
    let mut doc = before.next();
    doc.components.get_mut(&id).expect("record").spec_hash = "stale".into();
    let locker = Locker::new(aws.backends.locks.clone(), LockOptions::default()).expect("locker");
    let target = panka_core::keys::LockTarget::stack(&name, "development").expect("target");
    let held = locker
        .acquire(target, "older-panka@test", "apply", &mut |_| {})
        .await
        .expect("lock");
    state
        .write(&key, Some(&before), doc, &held.token().expect("token"))
        .await
        .expect("stale record written");
    held.release().await.expect("released");

    let changed_aws = ctx.metrics.calls.mutating();
    reconcile(obj.clone(), ctx.clone()).await.expect("synced");
    assert_eq!(ctx.metrics.calls.mutating(), changed_aws, "AWS was changed");
    let after = state.read(&key).await.expect("state").expect("written");
    assert_eq!(after.document.components[&id].spec_hash, applied);
    let sync = state.sync(&key).await.expect("sync").expect("written");
    assert_eq!(sync.phase, Phase::Synced, "{sync:?}");
    assert_eq!(sync.synced_commit, sync.commit, "{sync:?}");
    assert_eq!(
        state.history(&key, None).await.expect("history").len(),
        releases,
        "recorded without a release"
    );

    // Up to date: the next pass writes nothing.
    reconcile(obj.clone(), ctx.clone()).await.expect("synced");
    let again = state.read(&key).await.expect("state").expect("written");
    assert_eq!(
        again.document.serial, after.document.serial,
        "state written again"
    );
}

/// A deploy that fails its health wait is rolled back, and the passes after it do not deploy
/// the same specs again (each would fail and be rolled back again): `failed`, saying why, no
/// new release — drift is still put back, to the rolled-back specs — until the repository
/// changes the stack.
#[tokio::test]
async fn a_rolled_back_deploy_is_not_tried_again_until_the_repository_changes() {
    let World {
        sdk,
        aws,
        repo,
        name,
        ..
    } = World::new("held").await;
    // The queue stack through a driver that reports a visibility timeout of 666 as degraded.
    let ctx = Arc::new(
        rollout_context(
            repo.path(),
            &aws.backends,
            &sdk,
            Duration::from_secs(30),
            Duration::from_secs(900),
        )
        .with_drivers(fails_at_666()),
    );
    // Drift is remediated in this stack.
    let queue_stack = |root: &std::path::Path, name: &str, visibility_timeout: u32| {
        write_queue_stack(
            root,
            &QueueStack {
                name,
                environments: &["development"],
                drift_mode: "remediate",
                approval: &[],
                version: "v1",
                visibility_timeout,
            },
        );
    };
    queue_stack(repo.path(), &name, 30);
    let key = StateKey::new(&name, "development").expect("key");
    let obj = Arc::new(stack_resource(&name));
    pass_until(&ctx, &obj, &key, Phase::Synced).await;
    let state = &aws.backends.state;
    let releases = || releases(state, &key);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = queues(&sqs, &name)
        .await
        .into_iter()
        .filter_map(|url| url.rsplit('/').next().map(str::to_owned))
        .find(|q| !q.ends_with("-dlq"))
        .expect("the queue");
    let timeout = || panka_tests::console::visibility_timeout(&sdk, &queue);

    // The bad change: applied, degraded, rolled back.
    queue_stack(repo.path(), &name, 666);
    let err = reconcile(obj.clone(), ctx.clone())
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(timeout().await, Some(30), "put back");
    let after_rollback = releases().await;
    let kinds: Vec<ReleaseKind> = after_rollback.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            ReleaseKind::Rollback,
            ReleaseKind::Apply,
            ReleaseKind::Apply
        ],
        "{after_rollback:?}"
    );
    let sync = state.sync(&key).await.expect("sync").expect("written");
    assert_eq!(sync.phase, Phase::Failed);
    let held = sync.rolled_back.expect("the deploy is held");
    assert_eq!(Some(&held.commit), sync.commit.as_ref());

    // The same specs again (here: the next pass of the same commit): not deployed, said why.
    let changed_aws = ctx.metrics.calls.mutating();
    let err = reconcile(obj.clone(), ctx.clone()).await.expect_err("held");
    let text = err.to_string();
    assert!(
        text.contains("rolled back app/queue") && text.contains("change the stack's specs"),
        "{text}"
    );
    assert_eq!(ctx.metrics.calls.mutating(), changed_aws, "AWS was changed");
    assert_eq!(
        releases().await.len(),
        after_rollback.len(),
        "a new release"
    );
    let sync = state.sync(&key).await.expect("sync").expect("written");
    assert_eq!(sync.phase, Phase::Failed);
    assert!(sync.error.is_some_and(|e| e.message == text));
    assert_eq!(timeout().await, Some(30));

    // Drift while held is put back to what state records, and the hold stays.
    panka_tests::console::set_visibility_timeout(&sdk, &queue, 60).await;
    let err = reconcile(obj.clone(), ctx.clone())
        .await
        .expect_err("still held");
    assert_eq!(err.to_string(), text);
    assert_eq!(
        timeout().await,
        Some(30),
        "remediated to the rolled-back spec"
    );
    let remediated = releases().await;
    assert_eq!(remediated.len(), after_rollback.len() + 1);
    assert_eq!(remediated[0].kind, ReleaseKind::Remediation);

    // A fix: deployed, and the hold is over.
    queue_stack(repo.path(), &name, 45);
    pass_until(&ctx, &obj, &key, Phase::Synced).await;
    assert_eq!(timeout().await, Some(45));
    let sync = state.sync(&key).await.expect("sync").expect("written");
    assert_eq!(sync.rolled_back, None);
    assert_eq!(releases().await.len(), remediated.len() + 1);
}
