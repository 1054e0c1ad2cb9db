//! State and lock backends (DESIGN.md §5), one suite run twice: against S3 + DynamoDB in the
//! local emulator (through the real SDK), and against the local directory backend.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use panka_controller::backend::Backends;
use panka_controller::lock::{
    unlock, LockBackend, LockError, LockInfo, LockOptions, LockRequest, LockScope, LockTarget,
    Locker, UnlockOutcome,
};
use panka_controller::state::{
    ComponentState, HistoryEntry, Release, ReleaseKind, ReleaseOutcome, StateDocument, StateError,
    StateKey, StateStore, UnlockRecord,
};
use panka_tests::emulator::{emulator, local_backends};

const STACK: &str = "user-platform";
const ENV: &str = "production";

/// Holds whatever keeps a backend alive (a temporary directory).
struct Harness {
    state: StateStore,
    locks: Arc<dyn LockBackend>,
    _keep: Option<Arc<tempfile::TempDir>>,
    /// Whether the backend is the (single-threaded, slower) emulator.
    remote: bool,
}

async fn aws() -> Harness {
    let b = emulator().fresh_backends().await;
    let Backends { state, locks } = b.backends;
    Harness {
        state,
        locks,
        _keep: None,
        remote: true,
    }
}

fn local() -> Harness {
    let (Backends { state, locks }, dir) = local_backends();
    Harness {
        state,
        locks,
        _keep: Some(dir),
        remote: false,
    }
}

fn request(target: &LockTarget, holder: &str, lease: Duration) -> LockRequest {
    LockRequest {
        target: target.clone(),
        holder: holder.to_owned(),
        operation: "apply".to_owned(),
        lease,
    }
}

fn key() -> StateKey {
    StateKey::new(STACK, ENV).unwrap()
}

fn stack() -> LockTarget {
    LockTarget::stack(STACK, ENV).unwrap()
}

fn service(name: &str) -> LockTarget {
    LockTarget::service(STACK, ENV, name).unwrap()
}

fn held_by(err: LockError) -> LockInfo {
    match err {
        LockError::Held { holder, .. } => *holder,
        other => panic!("expected Held, got {other}"),
    }
}

/// Polls until `target` can be taken over (its lease ran out), within `limit`.
async fn take_over(h: &Harness, target: &LockTarget, holder: &str, limit: Duration) -> LockInfo {
    let start = tokio::time::Instant::now();
    loop {
        match h
            .locks
            .try_acquire(&request(target, holder, Duration::from_secs(60)))
            .await
        {
            Ok(info) => return info,
            Err(LockError::Held { .. }) if start.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("failed to take over {target} within {limit:?}: {e}"),
        }
    }
}

fn counter_of(doc: &StateDocument) -> u64 {
    doc.components
        .get("bench/counter")
        .and_then(|c| c.outputs.get("count"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// ≥ 20 concurrent acquirers × 50 rounds: every holder increments a counter in the state
/// through the fenced conditional write. No increment is lost and no two holders overlap.
async fn mutual_exclusion_under_contention(h: Harness) {
    const TASKS: usize = 20;
    const ROUNDS: usize = 50;
    let options = LockOptions {
        wait: Duration::from_secs(600),
        // The emulator serves one request at a time: poll gently so holders get through.
        poll: if h.remote {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(5)
        },
        ..LockOptions::default()
    };
    let locker = Locker::new(Arc::clone(&h.locks), options).unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let last_fence = Arc::new(AtomicU64::new(0));
    let state = h.state.clone();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (locker, inside, overlaps, last_fence, state) = (
            locker.clone(),
            Arc::clone(&inside),
            Arc::clone(&overlaps),
            Arc::clone(&last_fence),
            state.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let handle = locker
                    .acquire(stack(), &format!("worker-{t}@test"), "apply", &mut |_| {})
                    .await
                    .unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // Fences only grow from one holder to the next.
                let prev = last_fence.swap(handle.fence(), Ordering::SeqCst);
                assert!(
                    handle.fence() > prev,
                    "fence went from {prev} to {}",
                    handle.fence()
                );

                let base = state.read(&key()).await.unwrap();
                let mut doc = match &base {
                    Some(snap) => snap.next(),
                    None => StateDocument::initial(&key()),
                };
                let count = counter_of(&doc) + 1;
                doc.components.insert(
                    "bench/counter".into(),
                    ComponentState {
                        kind: "Counter".into(),
                        outputs: [("count".to_owned(), serde_json::json!(count))].into(),
                        ..Default::default()
                    },
                );
                let token = handle.token().unwrap();
                state
                    .write(&key(), base.as_ref(), doc, &token)
                    .await
                    .unwrap_or_else(|e| panic!("a holder's write failed: {e}"));

                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(
                    handle.release().await.unwrap(),
                    "lost the lock before release"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let final_state = h.state.read(&key()).await.unwrap().unwrap();
    let total = (TASKS * ROUNDS) as u64;
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders overlapped");
    assert_eq!(
        counter_of(&final_state.document),
        total,
        "an increment was lost"
    );
    assert_eq!(final_state.document.serial, total);
    assert!(h
        .locks
        .list(Some(STACK), Some(ENV))
        .await
        .unwrap()
        .is_empty());
}

/// A stack holder excludes every service holder and the reverse; services run in parallel.
async fn stack_and_service_scopes_exclude_each_other(h: Harness) {
    let lease = Duration::from_secs(60);
    let s = h
        .locks
        .try_acquire(&request(&stack(), "alice@a", lease))
        .await
        .unwrap();
    let err = h
        .locks
        .try_acquire(&request(&service("api"), "bob@b", lease))
        .await
        .unwrap_err();
    assert_eq!(held_by(err).target, stack());
    assert!(h.locks.release(&stack(), &s.lock_id).await.unwrap());

    let api = h
        .locks
        .try_acquire(&request(&service("api"), "bob@b", lease))
        .await
        .unwrap();
    let web = h
        .locks
        .try_acquire(&request(&service("web"), "carol@c", lease))
        .await
        .unwrap();
    assert!(
        web.fence > api.fence,
        "fences are per stack/env, across scopes"
    );
    let err = h
        .locks
        .try_acquire(&request(&service("api"), "dave@d", lease))
        .await
        .unwrap_err();
    assert_eq!(held_by(err).lock_id, api.lock_id);

    let err = h
        .locks
        .try_acquire(&request(&stack(), "alice@a", lease))
        .await
        .unwrap_err();
    assert!(matches!(held_by(err).target.scope, LockScope::Service(_)));
    assert!(h
        .locks
        .release(&service("api"), &api.lock_id)
        .await
        .unwrap());
    let err = h
        .locks
        .try_acquire(&request(&stack(), "alice@a", lease))
        .await
        .unwrap_err();
    assert_eq!(held_by(err).target, service("web"));
    assert!(h
        .locks
        .release(&service("web"), &web.lock_id)
        .await
        .unwrap());

    let s2 = h
        .locks
        .try_acquire(&request(&stack(), "alice@a", lease))
        .await
        .unwrap();
    assert!(s2.fence > web.fence);
    let listed = h.locks.list(Some(STACK), Some(ENV)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].lock_id, s2.lock_id);
    // Another stack or environment is independent.
    let other = LockTarget::stack(STACK, "staging").unwrap();
    let o = h
        .locks
        .try_acquire(&request(&other, "erin@e", lease))
        .await
        .unwrap();
    assert_eq!(h.locks.list(Some(STACK), None).await.unwrap().len(), 2);
    assert_eq!(h.locks.list(None, Some("staging")).await.unwrap().len(), 1);
    // Releasing with a wrong id does nothing.
    assert!(!h.locks.release(&stack(), &o.lock_id).await.unwrap());
    assert!(h.locks.release(&stack(), &s2.lock_id).await.unwrap());
}

/// A holder that stops heartbeating loses its lease; the next acquirer takes it over with a
/// higher fence, and the old holder can neither renew nor release it.
async fn expired_lease_is_taken_over(h: Harness) {
    let short = Duration::from_secs(2);
    let a = h
        .locks
        .try_acquire(&request(&stack(), "crashed@a", short))
        .await
        .unwrap();
    let err = h
        .locks
        .try_acquire(&request(&stack(), "bob@b", short))
        .await
        .unwrap_err();
    assert_eq!(held_by(err).lock_id, a.lock_id);
    let b = take_over(&h, &stack(), "bob@b", Duration::from_secs(8)).await;
    assert!(b.fence > a.fence);
    assert!(matches!(
        h.locks.renew(&a, short).await,
        Err(LockError::Lost { .. })
    ));
    assert!(!h.locks.release(&stack(), &a.lock_id).await.unwrap());
    assert!(h.locks.release(&stack(), &b.lock_id).await.unwrap());

    // A crashed service holder blocks the stack scope only until its lease runs out.
    let svc = h
        .locks
        .try_acquire(&request(&service("api"), "crashed@a", short))
        .await
        .unwrap();
    let s = take_over(&h, &stack(), "bob@b", Duration::from_secs(8)).await;
    assert!(s.fence > svc.fence);
    assert!(matches!(
        h.locks.renew(&svc, short).await,
        Err(LockError::Lost { .. })
    ));
    let err = h
        .locks
        .try_acquire(&request(&service("api"), "carol@c", short))
        .await
        .unwrap_err();
    assert_eq!(held_by(err).lock_id, s.lock_id);
    assert!(h.locks.release(&stack(), &s.lock_id).await.unwrap());
    // And a crashed stack holder blocks services only until its lease runs out.
    let s = h
        .locks
        .try_acquire(&request(&stack(), "crashed@a", short))
        .await
        .unwrap();
    let api = take_over(&h, &service("api"), "carol@c", Duration::from_secs(8)).await;
    assert!(api.fence > s.fence);
    assert!(matches!(
        h.locks.renew(&s, short).await,
        Err(LockError::Lost { .. })
    ));
    assert!(h
        .locks
        .release(&service("api"), &api.lock_id)
        .await
        .unwrap());
}

/// The heartbeat keeps a lock past its lease; a holder whose lock is taken from it, or that
/// cannot renew for half its lease, trips its guard and gets no fence token.
async fn heartbeat_and_guard(h: Harness) {
    let options = LockOptions {
        // A lease long enough that a renewal queued behind the other tests' requests to one
        // emulator (CI runs them side by side on 2 cores) still lands within half of it.
        lease: Duration::from_secs(6),
        heartbeat: Duration::from_millis(500),
        ..LockOptions::default()
    };
    let locker = Locker::new(Arc::clone(&h.locks), options).unwrap();
    let handle = locker
        .acquire(stack(), "alice@a", "apply", &mut |_| {})
        .await
        .unwrap();
    // Past the lease: only the heartbeats can have kept it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(handle.guard().is_held(), "heartbeats keep the lease");
    let err = h
        .locks
        .try_acquire(&request(&stack(), "bob@b", options.lease))
        .await
        .unwrap_err();
    assert_eq!(held_by(err).lock_id, handle.info().lock_id);

    // Forced away (as `panka unlock --force` does): the next heartbeat finds out.
    assert!(h
        .locks
        .release(&stack(), &handle.info().lock_id)
        .await
        .unwrap());
    let lost = tokio::time::timeout(Duration::from_secs(3), handle.guard().lost()).await;
    assert!(matches!(lost, Ok(LockError::Lost { .. })));
    assert!(handle.token().is_err());
    assert!(!handle.release().await.unwrap());

    // Renewals failing: the guard trips at half the lease, before anyone can take over.
    let failing: Arc<dyn LockBackend> = Arc::new(FailingRenewals(Arc::clone(&h.locks)));
    let locker = Locker::new(failing, options).unwrap();
    let handle = locker
        .acquire(stack(), "alice@a", "apply", &mut |_| {})
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(6), handle.guard().lost()).await;
    assert!(matches!(lost, Ok(LockError::Lost { .. })), "{lost:?}");
    assert!(started.elapsed() <= Duration::from_millis(3500));
    assert!(
        !handle.info().is_expired(),
        "the guard trips while the lease still runs"
    );
    assert!(handle.token().is_err());
    assert!(handle.release().await.unwrap());
}

/// Delegates to a backend but fails every renewal, like a network partition.
struct FailingRenewals(Arc<dyn LockBackend>);

#[async_trait::async_trait]
impl LockBackend for FailingRenewals {
    fn location(&self) -> String {
        self.0.location()
    }
    async fn try_acquire(&self, r: &LockRequest) -> Result<LockInfo, LockError> {
        self.0.try_acquire(r).await
    }
    async fn renew(&self, _: &LockInfo, _: Duration) -> Result<LockInfo, LockError> {
        Err(LockError::Io {
            op: "renew",
            path: "partitioned".into(),
            source: std::io::Error::other("network unreachable"),
        })
    }
    async fn release(&self, t: &LockTarget, id: &str) -> Result<bool, LockError> {
        self.0.release(t, id).await
    }
    async fn get(&self, t: &LockTarget) -> Result<Option<LockInfo>, LockError> {
        self.0.get(t).await
    }
    async fn list(&self, s: Option<&str>, e: Option<&str>) -> Result<Vec<LockInfo>, LockError> {
        self.0.list(s, e).await
    }
}

/// A holder whose lease was taken over cannot write state over its successor's.
async fn stale_holder_write_is_refused(h: Harness) {
    let short = Duration::from_secs(2);
    let a = h
        .locks
        .try_acquire(&request(&stack(), "stale@a", short))
        .await
        .unwrap();
    let a_token = token_of(&a);
    let first = h
        .state
        .write(&key(), None, StateDocument::initial(&key()), &a_token)
        .await
        .unwrap();
    assert_eq!(first.document.fence, a.fence);

    let b = take_over(&h, &stack(), "fresh@b", Duration::from_secs(8)).await;
    let second = h
        .state
        .write(&key(), Some(&first), first.next(), &token_of(&b))
        .await
        .unwrap();

    // From its old base (a 412 underneath) and from a fresh read: both refused by fence.
    let err = h
        .state
        .write(&key(), Some(&first), first.next(), &a_token)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::StaleFence { .. }), "{err}");
    let err = h
        .state
        .write(&key(), Some(&second), second.next(), &a_token)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::StaleFence { .. }), "{err}");
    assert!(err.to_string().contains("must stop"));

    // Scopes: a service holder granted before the stack holder that wrote is stale too, but
    // two services do not fence each other.
    assert!(h.locks.release(&stack(), &b.lock_id).await.unwrap());
    let api = h
        .locks
        .try_acquire(&request(&service("api"), "x@x", short))
        .await
        .unwrap();
    let web = h
        .locks
        .try_acquire(&request(&service("web"), "y@y", short))
        .await
        .unwrap();
    let cur = h.state.read(&key()).await.unwrap().unwrap();
    let cur = h
        .state
        .write(&key(), Some(&cur), cur.next(), &token_of(&web))
        .await
        .unwrap();
    let cur = h
        .state
        .write(&key(), Some(&cur), cur.next(), &token_of(&api))
        .await
        .unwrap();
    assert_eq!(cur.document.fences.get("service:api"), Some(&api.fence));
    assert_eq!(cur.document.fences.get("service:web"), Some(&web.fence));
    let s = take_over(&h, &stack(), "z@z", Duration::from_secs(8)).await;
    let cur = h
        .state
        .write(&key(), Some(&cur), cur.next(), &token_of(&s))
        .await
        .unwrap();
    let err = h
        .state
        .write(&key(), Some(&cur), cur.next(), &token_of(&api))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::StaleFence { .. }), "{err}");
}

fn token_of(info: &LockInfo) -> panka_controller::lock::FenceToken {
    panka_controller::lock::FenceToken {
        target: info.target.clone(),
        fence: info.fence,
    }
}

/// Serial and lineage checks; a lost response is recognised as our own write.
async fn lineage_and_serial_checks(h: Harness) {
    let lock = h
        .locks
        .try_acquire(&request(&stack(), "alice@a", Duration::from_secs(60)))
        .await
        .unwrap();
    let token = token_of(&lock);
    assert!(h.state.read(&key()).await.unwrap().is_none());
    let first = h
        .state
        .write(&key(), None, StateDocument::initial(&key()), &token)
        .await
        .unwrap();
    // A second "first write" (someone else's lineage) is refused.
    let err = h
        .state
        .write(&key(), None, StateDocument::initial(&key()), &token)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::ForeignLineage { .. }), "{err}");

    let mut foreign = first.next();
    foreign.lineage = "another-lineage".into();
    let err = h
        .state
        .write(&key(), Some(&first), foreign, &token)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::ForeignLineage { .. }), "{err}");

    let same = first.document.clone();
    let err = h
        .state
        .write(&key(), Some(&first), same, &token)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::StaleSerial { .. }), "{err}");

    // The same write sent twice (the first response lost): both succeed, once stored.
    let mut next = first.next();
    next.updated_by = "alice@a".into();
    let w1 = h
        .state
        .write(&key(), Some(&first), next.clone(), &token)
        .await
        .unwrap();
    let w2 = h
        .state
        .write(&key(), Some(&first), next.clone(), &token)
        .await
        .unwrap();
    assert_eq!(w1.document, w2.document);
    assert_eq!(w1.etag, w2.etag);
    // A different write from the same stale base is a conflict.
    let mut other = first.next();
    other.updated_by = "someone-else".into();
    let err = h
        .state
        .write(&key(), Some(&first), other, &token)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::StaleSerial { .. } | StateError::Conflict { .. }
        ),
        "{err}"
    );
    // A lower serial from the current base is refused.
    let mut lower = w2.next();
    lower.serial = 1;
    let err = h
        .state
        .write(&key(), Some(&w2), lower, &token)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::StaleSerial { .. }), "{err}");
    let read = h.state.read(&key()).await.unwrap().unwrap();
    assert_eq!(read, w2);
    assert_eq!(read.document.serial, 2);
    // A token for another stack is refused outright.
    let other_env = LockTarget::stack(STACK, "staging").unwrap();
    let err = h
        .state
        .write(
            &key(),
            Some(&w2),
            w2.next(),
            &panka_controller::lock::FenceToken {
                target: other_env,
                fence: u64::MAX,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::WrongKey { .. }), "{err}");
}

/// `unlock` removes only an expired lock or one's own without force; force removes any.
async fn unlock_rules(h: Harness) {
    let live = h
        .locks
        .try_acquire(&request(&stack(), "someone@else", Duration::from_secs(60)))
        .await
        .unwrap();
    let out = unlock(h.locks.as_ref(), &stack(), "me@here", false)
        .await
        .unwrap();
    assert_eq!(out, UnlockOutcome::Refused { info: live.clone() });
    assert_eq!(
        h.locks.get(&stack()).await.unwrap().unwrap().lock_id,
        live.lock_id
    );
    let out = unlock(h.locks.as_ref(), &stack(), "me@here", true)
        .await
        .unwrap();
    assert!(matches!(
        out,
        UnlockOutcome::Removed {
            forced: true,
            expired: false,
            ..
        }
    ));
    assert!(h.locks.get(&stack()).await.unwrap().is_none());
    assert_eq!(
        unlock(h.locks.as_ref(), &stack(), "me@here", false)
            .await
            .unwrap(),
        UnlockOutcome::NotHeld
    );

    let mine = h
        .locks
        .try_acquire(&request(
            &service("api"),
            "me@here",
            Duration::from_secs(60),
        ))
        .await
        .unwrap();
    let out = unlock(h.locks.as_ref(), &service("api"), "me@here", false)
        .await
        .unwrap();
    assert!(matches!(out, UnlockOutcome::Removed { forced: false, .. }));
    assert!(!h
        .locks
        .release(&service("api"), &mine.lock_id)
        .await
        .unwrap());
    // The service index is clean again: the stack scope is free.
    let s = h
        .locks
        .try_acquire(&request(&stack(), "me@here", Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(h.locks.release(&stack(), &s.lock_id).await.unwrap());

    let short = h
        .locks
        .try_acquire(&request(
            &service("web"),
            "crashed@x",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = unlock(h.locks.as_ref(), &service("web"), "me@here", false)
        .await
        .unwrap();
    assert!(
        matches!(out, UnlockOutcome::Removed { expired: true, forced: false, ref info } if info.lock_id == short.lock_id)
    );
}

/// Releases and unlock events are kept under history/, newest first, never overwritten.
async fn history_is_append_only(h: Harness) {
    assert!(h.state.history(&key(), None).await.unwrap().is_empty());
    let release = HistoryEntry::Release(Release {
        id: "20250101T000000Z-aaaaaaaa".into(),
        kind: ReleaseKind::Apply,
        stack: STACK.into(),
        environment: ENV.into(),
        scope: "stack".into(),
        version: Some("v1.0.0".into()),
        commit: None,
        actor: "alice@a".into(),
        overrides: [("VERSION".to_owned(), "v1.0.0".to_owned())].into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        finished_at: Some("2025-01-01T00:04:00Z".into()),
        outcome: ReleaseOutcome::Succeeded,
        actions: [("api/web".to_owned(), "create".to_owned())].into(),
        desired: serde_json::json!({"api/web": {"image": "nginx"}}),
        target: None,
        supersedes: Vec::new(),
        reason: None,
    });
    let unlocked = HistoryEntry::Unlock(UnlockRecord {
        id: "20250102T000000Z-bbbbbbbb".into(),
        stack: STACK.into(),
        environment: ENV.into(),
        lock_key: stack().key(),
        lock_id: "x".into(),
        locked_by: "crashed@x".into(),
        operation: "apply".into(),
        locked_at: "2025-01-01T00:00:00Z".into(),
        expired: true,
        forced: false,
        actor: "me@here".into(),
        at: "2025-01-02T00:00:00Z".into(),
    });
    h.state.record(&key(), &release).await.unwrap();
    h.state.record(&key(), &unlocked).await.unwrap();
    let err = h.state.record(&key(), &release).await.unwrap_err();
    assert!(matches!(err, StateError::HistoryExists { .. }));
    let all = h.state.history(&key(), None).await.unwrap();
    assert_eq!(all, vec![unlocked.clone(), release.clone()]);
    assert_eq!(
        h.state.history(&key(), Some(1)).await.unwrap(),
        vec![unlocked]
    );
    assert_eq!(
        h.state.history_entry(&key(), release.id()).await.unwrap(),
        Some(release)
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod aws_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::aws().await).await;
                }
            )*
        }
        mod local_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::local()).await;
                }
            )*
        }
    };
}

suite!(
    mutual_exclusion_under_contention,
    stack_and_service_scopes_exclude_each_other,
    expired_lease_is_taken_over,
    heartbeat_and_guard,
    stale_holder_write_is_refused,
    lineage_and_serial_checks,
    unlock_rules,
    history_is_append_only,
);

/// `backend create` is idempotent and refuses a bucket without versioning unless allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_create_is_idempotent_and_checks_versioning() {
    use panka_controller::backend::{create, BackendError, CreateOptions, StepAction};
    let b = emulator().fresh_backends().await;
    let again = create(
        &b.s3,
        &b.dynamodb,
        &CreateOptions {
            bucket: b.bucket.clone(),
            table: b.table.clone(),
            allow_unversioned: false,
        },
    )
    .await
    .unwrap();
    assert!(
        again.iter().all(|s| s.action == StepAction::Verified),
        "{again:?}"
    );
    let versioning =
        b.s3.get_bucket_versioning()
            .bucket(&b.bucket)
            .send()
            .await
            .unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    let ttl = b
        .dynamodb
        .describe_time_to_live()
        .table_name(&b.table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|t| t.attribute_name()),
        Some("expiresAt")
    );

    // Someone else's bucket without versioning: refused, unless explicitly allowed.
    let plain = panka_tests::emulator::unique_name("plain");
    b.s3.create_bucket().bucket(&plain).send().await.unwrap();
    let options = CreateOptions {
        bucket: plain.clone(),
        table: b.table.clone(),
        allow_unversioned: false,
    };
    let err = create(&b.s3, &b.dynamodb, &options).await.unwrap_err();
    assert!(matches!(err, BackendError::Unversioned { .. }), "{err}");
    assert!(err.to_string().contains("--allow-unversioned"));
    let steps = create(
        &b.s3,
        &b.dynamodb,
        &CreateOptions {
            allow_unversioned: true,
            ..options
        },
    )
    .await
    .unwrap();
    assert!(steps.iter().any(|s| s.action == StepAction::Warning));
    let versioning =
        b.s3.get_bucket_versioning()
            .bucket(&plain)
            .send()
            .await
            .unwrap();
    assert_eq!(
        versioning.status(),
        None,
        "versioning left as the owner set it"
    );
}
