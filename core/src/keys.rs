//! The keys everything else is addressed by: a state's [`StateKey`], a lock's [`LockTarget`] and
//! [`LockScope`], a lock record ([`LockInfo`]), the [`FenceToken`] a holder writes with, and the
//! rule names must follow to be safe in object paths and lock keys. Pure data.

use std::time::{SystemTime, UNIX_EPOCH};

/// A stack, environment, service or history id unusable in object paths or lock keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to use {what} name `{name}`: only ASCII letters, digits, `-`, `_` and `.` are allowed, not starting with `.`")]
pub struct NameError {
    /// Which name (`stack`, `environment`, `service`, `history id`).
    pub what: &'static str,
    /// The name.
    pub name: String,
}

/// Which stack/environment a state document belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    /// Stack name.
    pub stack: String,
    /// Environment name.
    pub environment: String,
}

impl StateKey {
    /// A key, after checking both names are safe as path segments and lock-key parts.
    pub fn new(stack: &str, environment: &str) -> Result<StateKey, NameError> {
        check_name("stack", stack)?;
        check_name("environment", environment)?;
        Ok(StateKey {
            stack: stack.to_owned(),
            environment: environment.to_owned(),
        })
    }

    /// `stacks/{stack}/{env}`.
    pub fn prefix(&self) -> String {
        format!("stacks/{}/{}", self.stack, self.environment)
    }

    /// `stacks/{stack}/{env}/state.json`.
    pub fn state_path(&self) -> String {
        format!("{}/state.json", self.prefix())
    }

    /// `stacks/{stack}/{env}/drift.json` (a stack-wide check) or
    /// `stacks/{stack}/{env}/drift/{service}.json` (one service's): the last drift check of
    /// that scope (see [`crate::drift::DriftReport`]), beside the state and never part of it.
    pub fn drift_path(&self, service: Option<&str>) -> String {
        match service {
            None => format!("{}/drift.json", self.prefix()),
            Some(s) => format!("{}/drift/{s}.json", self.prefix()),
        }
    }

    /// `stacks/{stack}/{env}/sync.json`: where the controller last left the target (see
    /// [`crate::sync::SyncStatus`]), beside the state and never part of it.
    pub fn sync_path(&self) -> String {
        format!("{}/sync.json", self.prefix())
    }

    /// `stacks/{stack}/{env}/pending.json`: the plan waiting for `panka approve` (see
    /// [`crate::sync::PendingPlan`]).
    pub fn pending_path(&self) -> String {
        format!("{}/pending.json", self.prefix())
    }

    /// `stacks/{stack}/{env}/history/`.
    pub fn history_prefix(&self) -> String {
        format!("{}/history/", self.prefix())
    }

    /// `stacks/{stack}/{env}/history/{id}.json`.
    pub fn history_path(&self, id: &str) -> String {
        format!("{}{id}.json", self.history_prefix())
    }
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stack, self.environment)
    }
}

/// Checks that a stack, environment or service name is usable in object paths and lock keys:
/// ASCII letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            name: name.to_owned(),
        })
    }
}

/// What a lock covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockScope {
    /// The whole stack/environment.
    Stack,
    /// One service of the stack/environment.
    Service(String),
}

/// A lock's stack, environment and scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockTarget {
    /// Stack name.
    pub stack: String,
    /// Environment name.
    pub environment: String,
    /// Scope.
    pub scope: LockScope,
}

impl LockTarget {
    /// The stack-scoped lock of a stack/environment.
    pub fn stack(stack: &str, environment: &str) -> Result<LockTarget, NameError> {
        let key = StateKey::new(stack, environment)?;
        Ok(LockTarget {
            stack: key.stack,
            environment: key.environment,
            scope: LockScope::Stack,
        })
    }

    /// The service-scoped lock of one service.
    pub fn service(stack: &str, environment: &str, service: &str) -> Result<LockTarget, NameError> {
        check_name("service", service)?;
        let mut t = Self::stack(stack, environment)?;
        t.scope = LockScope::Service(service.to_owned());
        Ok(t)
    }

    /// Stack-scoped when `service` is `None`, else service-scoped.
    pub fn new(
        stack: &str,
        environment: &str,
        service: Option<&str>,
    ) -> Result<LockTarget, NameError> {
        match service {
            None => Self::stack(stack, environment),
            Some(s) => Self::service(stack, environment, s),
        }
    }

    /// The lock key: `stack:{stack}:env:{env}[:service:{svc}]`.
    pub fn key(&self) -> String {
        match &self.scope {
            LockScope::Stack => self.stack_key(),
            LockScope::Service(s) => format!("{}:service:{s}", self.stack_key()),
        }
    }

    /// The key of the stack-scoped lock of this stack/environment.
    pub fn stack_key(&self) -> String {
        format!("stack:{}:env:{}", self.stack, self.environment)
    }

    /// The stack-scoped target of this stack/environment.
    pub fn to_stack(&self) -> LockTarget {
        LockTarget {
            stack: self.stack.clone(),
            environment: self.environment.clone(),
            scope: LockScope::Stack,
        }
    }

    /// The state this lock protects.
    pub fn state_key(&self) -> StateKey {
        StateKey {
            stack: self.stack.clone(),
            environment: self.environment.clone(),
        }
    }

    /// Parses a lock key; `None` for anything panka did not write.
    pub fn parse(key: &str) -> Option<LockTarget> {
        let parts: Vec<&str> = key.split(':').collect();
        match parts.as_slice() {
            ["stack", s, "env", e] => Self::stack(s, e).ok(),
            ["stack", s, "env", e, "service", v] => Self::service(s, e, v).ok(),
            _ => None,
        }
    }
}

impl std::fmt::Display for LockTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// What a lock record says. Timestamps are epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// The lock.
    pub target: LockTarget,
    /// Unique id of this grant.
    pub lock_id: String,
    /// `user@host`, a CI run, or the controller's pod.
    pub locked_by: String,
    /// What the holder is doing (`apply`, `destroy`, `reconcile`, …).
    pub operation: String,
    /// When the lock was granted.
    pub locked_at: i64,
    /// Last renewal.
    pub last_heartbeat: i64,
    /// When the lease runs out unless renewed.
    pub expires_at: i64,
    /// The grant's fence.
    pub fence: u64,
}

impl LockInfo {
    /// The lock key.
    pub fn key(&self) -> String {
        self.target.key()
    }

    /// Whether the lease has run out at `now` (epoch seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// Whether the lease has run out now.
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(now_epoch_secs())
    }
}

/// Proof of holding a lock, carried by every state write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceToken {
    /// The lock held.
    pub target: LockTarget,
    /// Its fence.
    pub fence: u64,
}

/// The key of a lock scope in [`StateDocument::fences`].
pub fn scope_name(scope: &LockScope) -> String {
    match scope {
        LockScope::Stack => "stack".to_owned(),
        LockScope::Service(s) => format!("service:{s}"),
    }
}

/// Seconds since the epoch, now.
pub fn now_epoch_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Epoch seconds as `2024-01-15 13:30:00 UTC`.
pub fn format_epoch(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => secs.to_string(),
    }
}
