//! A Stack resource deleted with `deletionPolicy: Delete` (CRD mode's finalizer): the
//! controller destroys what it applied, through the engine and under the lock, recorded as a
//! `destroy` release — against the emulator, with the reconcile the controller runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use panka_controller::budget::Budget;
use panka_controller::reconcile::metrics::Metrics;
use panka_controller::reconcile::{destroy, reconcile, Context, Settings, StackSource};
use panka_core::diag::Diagnostics;
use panka_core::source::FileTree;
use panka_core::state::{HistoryEntry, ReleaseKind};
use panka_core::sync::Phase;
use panka_crds::resource::{DeletionPolicy, Stack, StackResourceSpec};
use panka_tests::emulator::{emulator, unique_name};
use panka_tests::gitops::{write_queue_stack, QueueStack};
use tokio_util::sync::CancellationToken;

/// A stack's files read from a folder, at one fixed revision.
#[derive(Debug)]
struct Folder(PathBuf);

impl StackSource for Folder {
    fn revision(&self, _target: &Stack) -> Option<String> {
        Some("0123456789abcdef0123456789abcdef01234567".into())
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

#[tokio::test]
async fn the_delete_policy_destroys_what_the_controller_applied() {
    let emulator = emulator();
    let sdk = emulator.sdk_config().await;
    let aws = emulator.fresh_backends().await;
    let repo = tempfile::tempdir().expect("tempdir");
    let name = unique_name("del");
    write_queue_stack(
        repo.path(),
        &QueueStack {
            name: &name,
            environments: &["development"],
            drift_mode: "report",
            approval: &[],
            version: "v1",
            visibility_timeout: 30,
        },
    );
    let ctx = Arc::new(Context::new(
        Arc::new(Folder(repo.path().to_path_buf())),
        aws.backends.clone(),
        sdk.clone(),
        Budget::new(None),
        Settings {
            poll_interval: Duration::from_secs(30),
            drift_interval: Duration::from_secs(300),
            rollout_wait: Duration::from_secs(30),
            // The deletion policy is the Stack's own consent: the controller-wide switch for
            // repository deletions stays off.
            allow_destroy: false,
            actor: "panka-controller@test".into(),
        },
        Metrics::new(),
        CancellationToken::new(),
    ));
    let mut obj = Stack::new(
        &format!("{name}-development"),
        StackResourceSpec {
            stack: name.clone(),
            environment: "development".into(),
            deletion_policy: Some(DeletionPolicy::Delete),
            ..StackResourceSpec::default()
        },
    );
    obj.metadata.namespace = Some("apps".into());
    let obj = Arc::new(obj);
    let key = panka_core::keys::StateKey::new(&name, "development").expect("key");

    // Applied by the reconcile, as the controller does.
    let mut synced = false;
    for _ in 0..20 {
        reconcile(obj.clone(), ctx.clone()).await.expect("a pass");
        let sync = aws.backends.state.sync(&key).await.expect("sync");
        if sync.is_some_and(|s| s.phase == Phase::Synced) {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(synced, "the stack was applied");
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
