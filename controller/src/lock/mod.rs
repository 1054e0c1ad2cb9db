//! Leased locks shared by the CLI and the controller (DESIGN.md §5).
//!
//! Stage: held from observe to record. Talks to one [`LockBackend`]: a DynamoDB table
//! ([`dynamodb::DynamoDbLocks`]) or lock files in a local directory ([`local::LocalLocks`]).
//! Waiting, heartbeats and the lease guard are written once, here, in [`Locker`].
//!
//! Keys: `stack:{stack}:env:{env}` (stack scope) and `stack:{stack}:env:{env}:service:{svc}`
//! (service scope). A live stack-scoped lock excludes every service-scoped lock of the same
//! stack/environment and the reverse; different services run in parallel.
//!
//! A lock is a *lease*: it expires `lease` after its last renewal, and every check of "is it
//! held?" compares the expiry inside the conditional write — never relying on DynamoDB's TTL
//! deletion, which only tidies up. A crashed holder's lease simply runs out and the next
//! acquirer takes the lock over. Every grant gets a *fence*, strictly greater than every earlier
//! grant on the same stack/environment (any scope); state writes carry it, so a holder whose
//! lease was taken over cannot write over its successor's state.
//!
//! The holder renews every `heartbeat` (default 30 s of a 120 s lease). If it cannot renew for
//! half its lease, its [`LeaseGuard`] trips: the engine checks the guard before each mutation
//! (or takes a [`FenceToken`], which checks it) and stops with [`LockError::Lost`].

pub mod dynamodb;
pub mod local;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::aws::AwsError;
pub use panka_core::keys::{
    format_epoch, now_epoch_secs, FenceToken, LockInfo, LockScope, LockTarget, NameError,
};

/// Default lease length.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// Default interval between renewals.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Default interval between attempts while waiting for a lock.
pub const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// One acquisition attempt's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// The lock.
    pub target: LockTarget,
    /// Who asks (`user@host`, pod name).
    pub holder: String,
    /// What for.
    pub operation: String,
    /// Lease length.
    pub lease: Duration,
}

/// Errors of the lock stage.
#[derive(Debug, Error)]
pub enum LockError {
    /// A name unusable in a lock key.
    #[error("failed to build a lock key: {0}")]
    InvalidName(#[from] NameError),
    /// Bad options.
    #[error("failed to configure locking: {0}")]
    InvalidOptions(String),
    /// Someone else holds a live lock that excludes the one requested.
    #[error("failed to acquire lock {requested}: {} holds {} for `{}` since {} (lock id {}, fence {}, lease expires {})", .holder.locked_by, .holder.key(), .holder.operation, format_epoch(.holder.locked_at), .holder.lock_id, .holder.fence, format_epoch(.holder.expires_at))]
    Held {
        /// The lock asked for.
        requested: String,
        /// The live lock in the way.
        holder: Box<LockInfo>,
    },
    /// Waited the whole `--lock-timeout` without getting the lock.
    #[error("failed to acquire lock {requested} within {}s: {} still holds {} for `{}` since {} (lock id {})", .waited.as_secs(), .holder.locked_by, .holder.key(), .holder.operation, format_epoch(.holder.locked_at), .holder.lock_id)]
    Timeout {
        /// The lock asked for.
        requested: String,
        /// How long we waited.
        waited: Duration,
        /// The live lock in the way at the end.
        holder: Box<LockInfo>,
    },
    /// Many attempts collided with concurrent writers without a holder to report.
    #[error("failed to acquire lock {key}: it kept changing under concurrent acquirers; retry")]
    Busy {
        /// The lock asked for.
        key: String,
    },
    /// The lease was lost: taken over, released by someone else, or not renewed in time.
    #[error("lock {key} was lost: {reason}; stopped before mutating further")]
    Lost {
        /// The lock.
        key: String,
        /// Why.
        reason: String,
    },
    /// A DynamoDB call failed.
    #[error("failed to {op} lock {key} in {location}: {source}")]
    Aws {
        /// What we were doing.
        op: &'static str,
        /// The lock key (or prefix).
        key: String,
        /// The table.
        location: String,
        /// The classified cause.
        #[source]
        source: Box<AwsError>,
    },
    /// Local lock-file I/O failed.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored lock record is not what panka writes.
    #[error("failed to parse lock record {location}: {detail}")]
    Corrupt {
        /// Where.
        location: String,
        /// What is wrong.
        detail: String,
    },
}

impl LockError {
    /// The live holder in the way, for `Held` and `Timeout`.
    pub fn holder(&self) -> Option<&LockInfo> {
        match self {
            LockError::Held { holder, .. } | LockError::Timeout { holder, .. } => Some(holder),
            _ => None,
        }
    }
}

/// Where locks are held. Implementations: [`dynamodb::DynamoDbLocks`], [`local::LocalLocks`].
///
/// Every method is one atomic conditional operation on the backend.
#[async_trait]
pub trait LockBackend: Send + Sync {
    /// Human-readable location (`dynamodb://table`, a directory).
    fn location(&self) -> String;

    /// One attempt to acquire: the grant, or [`LockError::Held`] naming the live holder in the
    /// way. An expired lease is taken over; the fence always increases.
    async fn try_acquire(&self, request: &LockRequest) -> Result<LockInfo, LockError>;

    /// Extends the lease of `held` by `lease` from now; [`LockError::Lost`] when the lock is no
    /// longer this grant (taken over or released).
    async fn renew(&self, held: &LockInfo, lease: Duration) -> Result<LockInfo, LockError>;

    /// Releases the grant `lock_id` of `target`; `false` when that grant no longer holds it.
    async fn release(&self, target: &LockTarget, lock_id: &str) -> Result<bool, LockError>;

    /// The current record of `target` (live or expired); `None` when free.
    async fn get(&self, target: &LockTarget) -> Result<Option<LockInfo>, LockError>;

    /// Every lock record (live or expired), optionally of one stack and/or environment, sorted
    /// by key.
    async fn list(
        &self,
        stack: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Vec<LockInfo>, LockError>;
}

/// How [`Locker`] acquires and keeps locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// Lease length (default 120 s).
    pub lease: Duration,
    /// Renewal interval (default 30 s); must be under half the lease.
    pub heartbeat: Duration,
    /// How long to wait for a held lock (`--lock-timeout`; default 0: fail at once).
    pub wait: Duration,
    /// Interval between attempts while waiting (jittered ±50%).
    pub poll: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_HEARTBEAT,
            wait: Duration::ZERO,
            poll: DEFAULT_POLL,
        }
    }
}

/// Acquires locks on a backend and keeps them alive.
#[derive(Clone)]
pub struct Locker {
    backend: Arc<dyn LockBackend>,
    options: LockOptions,
}

impl std::fmt::Debug for Locker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locker")
            .field("backend", &self.backend.location())
            .field("options", &self.options)
            .finish()
    }
}

impl Locker {
    /// A locker; refuses a heartbeat that is not under half the lease (the holder would stop
    /// itself between two renewals).
    pub fn new(backend: Arc<dyn LockBackend>, options: LockOptions) -> Result<Locker, LockError> {
        if options.lease < Duration::from_secs(1) {
            return Err(LockError::InvalidOptions(
                "the lease must be at least 1 s".into(),
            ));
        }
        if options.heartbeat.is_zero() || options.heartbeat * 2 >= options.lease {
            return Err(LockError::InvalidOptions(format!(
                "the heartbeat ({:?}) must be positive and under half the lease ({:?})",
                options.heartbeat, options.lease
            )));
        }
        Ok(Locker { backend, options })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn LockBackend> {
        &self.backend
    }

    /// The options.
    pub fn options(&self) -> &LockOptions {
        &self.options
    }

    /// Acquires `target` for `holder` doing `operation`, waiting up to `options.wait` while
    /// someone else holds it (calling `on_wait` each time the holder in the way changes), then
    /// starts renewing it in the background.
    pub async fn acquire(
        &self,
        target: LockTarget,
        holder: &str,
        operation: &str,
        on_wait: &mut (dyn FnMut(&LockInfo) + Send),
    ) -> Result<LockHandle, LockError> {
        let request = LockRequest {
            target,
            holder: holder.to_owned(),
            operation: operation.to_owned(),
            lease: self.options.lease,
        };
        let deadline = Instant::now() + self.options.wait;
        let mut last_seen: Option<String> = None;
        loop {
            let started = Instant::now();
            let in_the_way = match self.backend.try_acquire(&request).await {
                Ok(info) => return Ok(self.start(info, started)),
                Err(LockError::Held { holder, .. }) => Some(holder),
                Err(LockError::Busy { .. }) => None,
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(match in_the_way {
                    Some(holder) if self.options.wait.is_zero() => LockError::Held {
                        requested: request.target.key(),
                        holder,
                    },
                    Some(holder) => LockError::Timeout {
                        requested: request.target.key(),
                        waited: self.options.wait,
                        holder,
                    },
                    None => LockError::Busy {
                        key: request.target.key(),
                    },
                });
            }
            if let Some(holder) = &in_the_way {
                if last_seen.as_deref() != Some(holder.lock_id.as_str()) {
                    on_wait(holder);
                    last_seen = Some(holder.lock_id.clone());
                }
            }
            let pause = jittered(self.options.poll).min(deadline - now);
            tokio::time::sleep(pause).await;
        }
    }

    fn start(&self, info: LockInfo, started: Instant) -> LockHandle {
        let guard = LeaseGuard::new(info.key(), started + self.options.lease / 2);
        let task = tokio::spawn(heartbeat(
            Arc::clone(&self.backend),
            info.clone(),
            self.options,
            guard.clone(),
        ));
        LockHandle {
            info,
            guard,
            backend: Arc::clone(&self.backend),
            heartbeat: Some(task),
        }
    }
}

/// A held lock. Renews itself in the background until released or dropped; dropping it without
/// [`LockHandle::release`] stops renewing and lets the lease run out.
#[derive(Debug)]
pub struct LockHandle {
    info: LockInfo,
    guard: LeaseGuard,
    backend: Arc<dyn LockBackend>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for dyn LockBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

impl LockHandle {
    /// The grant (expiry as granted).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The grant's fence.
    pub fn fence(&self) -> u64 {
        self.info.fence
    }

    /// A guard to check before each mutation.
    pub fn guard(&self) -> LeaseGuard {
        self.guard.clone()
    }

    /// The fence token for a state write, after checking the lease is still safely held.
    pub fn token(&self) -> Result<FenceToken, LockError> {
        self.guard.check()?;
        Ok(FenceToken {
            target: self.info.target.clone(),
            fence: self.info.fence,
        })
    }

    /// Stops renewing and releases the lock; `false` when it had already been lost.
    pub async fn release(mut self) -> Result<bool, LockError> {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        self.guard.trip("it was released".into());
        self.backend
            .release(&self.info.target, &self.info.lock_id)
            .await
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        self.guard.trip("its handle was dropped".into());
    }
}

/// Tells a holder whether it may still mutate. Cheap to clone; every clone sees the same lease.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    inner: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    key: String,
    state: Mutex<GuardState>,
    tripped: watch::Sender<bool>,
}

#[derive(Debug)]
struct GuardState {
    valid_until: Instant,
    lost: Option<String>,
}

impl LeaseGuard {
    fn new(key: String, valid_until: Instant) -> LeaseGuard {
        let (tripped, _) = watch::channel(false);
        LeaseGuard {
            inner: Arc::new(GuardInner {
                key,
                state: Mutex::new(GuardState {
                    valid_until,
                    lost: None,
                }),
                tripped,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GuardState> {
        // A panic while holding this tiny lock cannot leave the state half-written.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok` while the lease is safely held (renewed within half its length); once it fails it
    /// fails forever.
    pub fn check(&self) -> Result<(), LockError> {
        let reason = {
            let mut st = self.state();
            if st.lost.is_none() && Instant::now() >= st.valid_until {
                st.lost = Some("the lease was not renewed for half its length".into());
                self.inner.tripped.send_replace(true);
            }
            st.lost.clone()
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(LockError::Lost {
                key: self.inner.key.clone(),
                reason,
            }),
        }
    }

    /// Whether [`LeaseGuard::check`] would pass.
    pub fn is_held(&self) -> bool {
        self.check().is_ok()
    }

    /// Resolves once the lease is lost, with the reason; for `select!` around long waits.
    pub async fn lost(&self) -> LockError {
        let mut rx = self.inner.tripped.subscribe();
        loop {
            let until = self.state().valid_until;
            if let Err(e) = self.check() {
                return e;
            }
            tokio::select! {
                _ = rx.wait_for(|t| *t) => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    fn valid_until(&self) -> Instant {
        self.state().valid_until
    }

    fn renewed(&self, valid_until: Instant) {
        let mut st = self.state();
        if st.lost.is_none() {
            st.valid_until = st.valid_until.max(valid_until);
        }
    }

    fn trip(&self, reason: String) {
        let mut st = self.state();
        if st.lost.is_none() {
            st.lost = Some(reason);
        }
        self.inner.tripped.send_replace(true);
    }
}

/// Renews `info` every `heartbeat` until the guard trips; trips it when a renewal is refused or
/// none succeeds within half the lease.
async fn heartbeat(
    backend: Arc<dyn LockBackend>,
    info: LockInfo,
    options: LockOptions,
    guard: LeaseGuard,
) {
    let key = info.key();
    let retry = (options.heartbeat / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut next = Instant::now() + options.heartbeat;
    loop {
        let until = guard.valid_until();
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = tokio::time::sleep_until(until) => {
                guard.trip(format!(
                    "no renewal succeeded for half the lease ({}s)",
                    options.lease.as_secs() / 2
                ));
                return;
            }
        }
        if guard.check().is_err() {
            return;
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            r = backend.renew(&info, options.lease) => Some(r),
            _ = tokio::time::sleep_until(until) => None,
        };
        match outcome {
            Some(Ok(_)) => {
                guard.renewed(started + options.lease / 2);
                next = started + options.heartbeat;
            }
            Some(Err(LockError::Lost { reason, .. })) => {
                tracing::warn!(lock = %key, %reason, "lock lost");
                guard.trip(reason);
                return;
            }
            Some(Err(e)) => {
                // Transient trouble: retry soon; the guard trips if it lasts half the lease.
                tracing::warn!(lock = %key, error = %e, "failed to renew lock; retrying");
                next = Instant::now() + retry;
            }
            None => {
                guard.trip(format!(
                    "no renewal succeeded for half the lease ({}s)",
                    options.lease.as_secs() / 2
                ));
                return;
            }
        }
    }
}

/// What [`unlock`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockOutcome {
    /// The lock record was removed.
    Removed {
        /// The record removed.
        info: LockInfo,
        /// Its lease had expired.
        expired: bool,
        /// It was someone else's live lock, removed only because of `force`.
        forced: bool,
    },
    /// Nothing holds the lock.
    NotHeld,
    /// A live lock of someone else, and no `force`: left alone.
    Refused {
        /// The record in place.
        info: LockInfo,
    },
    /// The lock changed hands between reading and removing it: left alone.
    Changed {
        /// The record read before.
        info: LockInfo,
    },
}

/// Removes the lock record of `target` when it is expired or held by `me`, or any live one when
/// `force` is set. The removal is conditional on the exact grant that was read, so a lock taken
/// meanwhile by someone else is never removed by mistake. A live holder whose lock is forced
/// away learns it at its next heartbeat and stops.
pub async fn unlock(
    backend: &dyn LockBackend,
    target: &LockTarget,
    me: &str,
    force: bool,
) -> Result<UnlockOutcome, LockError> {
    let Some(info) = backend.get(target).await? else {
        return Ok(UnlockOutcome::NotHeld);
    };
    let expired = info.is_expired();
    let own = info.locked_by == me;
    if !(expired || own || force) {
        return Ok(UnlockOutcome::Refused { info });
    }
    if backend.release(target, &info.lock_id).await? {
        Ok(UnlockOutcome::Removed {
            forced: !(expired || own),
            expired,
            info,
        })
    } else {
        Ok(UnlockOutcome::Changed { info })
    }
}

/// The expiry of a lease granted or renewed at `now` (epoch seconds): never earlier than
/// `lease` after the real instant of the grant (rounded up to the next whole second).
pub fn expiry(now: i64, lease: Duration) -> i64 {
    let secs = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
        .saturating_add(1)
}

/// A new fence: at least `at_least`, at least the current time in microseconds, and greater
/// than every fence this process proposed before. Time-based, so a backend can be told the
/// fence in the same conditional write that checks it exceeds the stored counter (one round
/// trip); the condition, not the clock, guarantees monotonicity.
pub fn propose_fence(at_least: u64) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let candidate = now.max(at_least);
    let mut chosen = candidate;
    // fetch_update's closure always returns Some, so this cannot fail; the fallback keeps it
    // total anyway.
    let _ = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |prev| {
        chosen = candidate.max(prev.saturating_add(1));
        Some(chosen)
    });
    chosen
}

/// `user@host` of this process: the user from `USER`/`USERNAME`/`LOGNAME`, else the OS account
/// this process runs as (CI runners and containers often set no `USER`), else `unknown`; and the
/// host name.
pub fn default_holder() -> String {
    let env = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()));
    let user = holder_user(env, || whoami::username().ok());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    };
    format!("{user}@{host}")
}

/// The user part of [`default_holder`]: the environment's user name when it is set and not
/// blank, else the OS account name (asked for only then: it may mean a directory lookup), else
/// `unknown`.
fn holder_user(env: Option<String>, os_account: impl FnOnce() -> Option<String>) -> String {
    let usable = |name: Option<String>| name.filter(|n| !n.trim().is_empty());
    usable(env)
        .or_else(|| usable(os_account()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod holder_tests {
    use super::holder_user;

    #[test]
    fn the_environment_user_wins_and_the_os_account_is_not_looked_up() {
        let user = holder_user(Some("alice".into()), || panic!("looked up the OS account"));
        assert_eq!(user, "alice");
    }

    #[test]
    fn without_an_environment_user_the_os_account_is_used() {
        assert_eq!(holder_user(None, || Some("runner".into())), "runner");
        assert_eq!(
            holder_user(Some(String::new()), || Some("runner".into())),
            "runner"
        );
        assert_eq!(
            holder_user(Some("  ".into()), || Some("runner".into())),
            "runner"
        );
    }

    #[test]
    fn without_either_the_user_is_unknown() {
        assert_eq!(holder_user(None, || None), "unknown");
        assert_eq!(holder_user(None, || Some(String::new())), "unknown");
    }
}

/// `d` ± 50%, from a cheap random source.
fn jittered(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    d / 2 + d * r / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let t = LockTarget::service("user-platform", "production", "api").unwrap();
        assert_eq!(t.key(), "stack:user-platform:env:production:service:api");
        assert_eq!(t.stack_key(), "stack:user-platform:env:production");
        assert_eq!(LockTarget::parse(&t.key()), Some(t.clone()));
        assert_eq!(LockTarget::parse(&t.stack_key()), Some(t.to_stack()));
        assert_eq!(LockTarget::parse("stack:a:env"), None);
    }

    #[test]
    fn names_with_colons_are_refused() {
        assert!(LockTarget::stack("a:b", "prod").is_err());
        assert!(LockTarget::service("a", "prod", "").is_err());
    }

    #[test]
    fn fences_strictly_increase() {
        let a = propose_fence(0);
        let b = propose_fence(0);
        let c = propose_fence(u64::MAX / 2);
        assert!(a < b && b < c);
        assert!(propose_fence(0) > c);
    }

    #[test]
    fn expiry_is_never_early() {
        assert_eq!(expiry(100, Duration::from_secs(2)), 103);
        assert_eq!(expiry(100, Duration::from_millis(1500)), 103);
    }

    #[test]
    fn heartbeat_must_be_under_half_the_lease() {
        let backend: Arc<dyn LockBackend> = Arc::new(local::LocalLocks::new("/nonexistent"));
        let bad = LockOptions {
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
            ..LockOptions::default()
        };
        assert!(Locker::new(Arc::clone(&backend), bad).is_err());
        assert!(Locker::new(backend, LockOptions::default()).is_ok());
    }

    #[tokio::test]
    async fn guard_trips_after_half_the_lease_and_stays_tripped() {
        let guard = LeaseGuard::new("k".into(), Instant::now() + Duration::from_millis(50));
        assert!(guard.check().is_ok());
        let err = guard.lost().await;
        assert!(matches!(err, LockError::Lost { .. }));
        guard.renewed(Instant::now() + Duration::from_secs(60));
        assert!(guard.check().is_err());
    }
}
