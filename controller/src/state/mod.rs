//! Deployment state and release history (DESIGN.md §5).
//!
//! Stage: record (and the read at the start of observe). Talks to one [`ObjectStore`]: an S3
//! bucket ([`s3::S3Store`]) or a local directory ([`local::LocalStore`]). Everything above the
//! store (fencing, serial and lineage checks, recognising our own write after a lost response) is
//! written once, here.
//!
//! Layout, the same in both stores:
//!
//! ```text
//! stacks/{stack}/{env}/state.json              the current state (serial, lineage, fence)
//! stacks/{stack}/{env}/history/{id}.json       one object per release (and per forced unlock)
//! ```
//!
//! Every state write is conditional: `If-None-Match: *` for the first, `If-Match: <etag read>`
//! after, so a writer working from a stale read fails instead of overwriting. On top, a write is
//! refused when it comes from a lock holder whose fence is older than one that already wrote,
//! when its serial does not advance, or when its lineage is foreign. The state never holds a
//! secret value: specs carry references to Secrets Manager, never the secret.

pub mod local;
pub mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::aws::AwsError;
use crate::lock::{FenceToken, LockScope};

/// Version of the state document format.
pub const FORMAT_VERSION: u32 = 1;

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
    pub fn new(stack: &str, environment: &str) -> Result<StateKey, StateError> {
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
pub fn check_name(what: &'static str, name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

/// The state of one stack/environment: what panka created and last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocument {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Stack name.
    pub stack: String,
    /// Environment name.
    pub environment: String,
    /// Identity of this state's history: set at the first write, never changed. A write carrying
    /// another lineage is refused (it belongs to some other state).
    pub lineage: String,
    /// Incremented by every write; a write that does not advance it is refused.
    pub serial: u64,
    /// Highest lock fence that has written this state (stamped by the store).
    pub fence: u64,
    /// Highest fence that has written, per lock scope (`stack`, `service:{name}`; stamped by the
    /// store). A service-scoped writer is refused when a newer stack-scoped holder or a newer
    /// holder of its own service has written.
    #[serde(default)]
    pub fences: BTreeMap<String, u64>,
    /// When this version was written (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// Who wrote it (`user@host` or the controller's pod).
    #[serde(default)]
    pub updated_by: String,
    /// The release that produced it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Per component (`{service}/{component}`), what exists and what was applied.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentState>,
}

/// What the state records about one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentState {
    /// Component kind (`MicroService`, `RDS`, …).
    pub kind: String,
    /// AWS identifiers: ARNs, names, ids.
    #[serde(default)]
    pub identifiers: BTreeMap<String, String>,
    /// Outputs other components may reference (`url`, `endpoint`, …). Never secret values.
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// The resolved spec last applied (secrets only as references).
    #[serde(default)]
    pub applied_spec: serde_json::Value,
    /// [`content_hash`] of `applied_spec`.
    #[serde(default)]
    pub spec_hash: String,
    /// When it was last applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
}

impl StateDocument {
    /// The first version of a state: a fresh lineage, serial 1.
    pub fn initial(key: &StateKey) -> StateDocument {
        StateDocument {
            format_version: FORMAT_VERSION,
            stack: key.stack.clone(),
            environment: key.environment.clone(),
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 1,
            fence: 0,
            fences: BTreeMap::new(),
            updated_at: String::new(),
            updated_by: String::new(),
            release: None,
            components: BTreeMap::new(),
        }
    }
}

/// A state document together with the version token (ETag) it was read or written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The document.
    pub document: StateDocument,
    /// Opaque version token: what the next write must match.
    pub etag: String,
}

impl Snapshot {
    /// The document to modify for the next write: the same, with the serial advanced.
    pub fn next(&self) -> StateDocument {
        let mut doc = self.document.clone();
        doc.serial += 1;
        doc
    }
}

/// sha256 (hex) of a JSON value's canonical text (object keys sorted).
pub fn content_hash(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// One object of history: a release, or an administrative event such as a forced unlock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum HistoryEntry {
    /// One apply (or destroy, rollback) of a stack/environment.
    Release(Release),
    /// A lock released by `panka unlock`.
    Unlock(UnlockRecord),
}

impl HistoryEntry {
    /// The entry's id (its object name).
    pub fn id(&self) -> &str {
        match self {
            HistoryEntry::Release(r) => &r.id,
            HistoryEntry::Unlock(u) => &u.id,
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseOutcome {
    /// Still running (or the process died before recording the end).
    InProgress,
    /// Everything applied.
    Succeeded,
    /// Stopped on an error.
    Failed,
    /// Later rolled back.
    RolledBack,
}

/// What a release did. Stored as `releaseKind` (`kind` already says which [`HistoryEntry`] an
/// object is); absent in documents written before it existed, which were all applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseKind {
    /// `panka apply` or a controller reconcile: made AWS match the repository.
    #[default]
    Apply,
    /// `panka destroy`: deleted the stack's (or a service's) resources.
    Destroy,
    /// `panka rollback`: re-applied an earlier release's recorded spec. Reserved for the
    /// rollback command; nothing records it yet.
    Rollback,
}

impl ReleaseKind {
    /// The word stored and shown: `apply`, `destroy`, `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseKind::Apply => "apply",
            ReleaseKind::Destroy => "destroy",
            ReleaseKind::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for ReleaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a release records instead of the value of a variable whose name looks secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a variable name looks like it holds a secret: it contains `SECRET`, `PASSWORD`,
/// `PASSWD`, `TOKEN`, `KEY` or `CREDENTIAL`, in any case. Such values are never recorded.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

/// Variables as a release records them: values of names that [`looks_secret`] replaced by
/// [`REDACTED`]. Variables are plain configuration (secrets are Secrets Manager references), so
/// this guards against a mistake, not a design.
pub fn redact_variables(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| {
            let v = if looks_secret(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// One release: enough to show it and to re-apply it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Id ([`new_history_id`]).
    pub id: String,
    /// Apply, destroy or rollback (`releaseKind` in the stored JSON: `kind` is the entry's tag).
    #[serde(rename = "releaseKind", default)]
    pub kind: ReleaseKind,
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// `stack` or `service:{name}`.
    pub scope: String,
    /// The `VERSION` variable, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Git commit of the deployment repository, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Who ran it.
    pub actor: String,
    /// The variables given on the command line (`--var NAME=VALUE`), values of secret-looking
    /// names redacted ([`redact_variables`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Outcome.
    pub outcome: ReleaseOutcome,
    /// Action per component (`create`, `update`, `replace`, `delete`, `noop`).
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// The full resolved desired spec (secrets only as references).
    #[serde(default)]
    pub desired: serde_json::Value,
}

/// A lock removed by `panka unlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockRecord {
    /// Id ([`new_history_id`]).
    pub id: String,
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// The lock key removed.
    pub lock_key: String,
    /// The lock id removed.
    pub lock_id: String,
    /// Its holder.
    pub locked_by: String,
    /// Its operation.
    pub operation: String,
    /// When it was taken (RFC 3339).
    pub locked_at: String,
    /// Whether its lease had expired.
    pub expired: bool,
    /// Whether `--force` was needed.
    pub forced: bool,
    /// Who removed it.
    pub actor: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A sortable, unique history id: `20250115T133000.123Z-1a2b3c4d`. Milliseconds, so that
/// entries written within one second (an unlock and the apply after it, two quick applies) still
/// list in the order they happened; ids of older versions (`20250115T133000Z-…`) sort among
/// them by the second.
pub fn new_history_id() -> String {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ");
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{stamp}-{}", &rand[..8])
}

/// Errors of the state stage.
#[derive(Debug, Error)]
pub enum StateError {
    /// A stack/environment/service name unusable in paths or lock keys.
    #[error("failed to use {what} name `{name}`: only ASCII letters, digits, `-`, `_` and `.` are allowed, not starting with `.`")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Local file I/O failed.
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
    /// An S3 call failed.
    #[error("failed to {op} {location}: {source}")]
    Aws {
        /// What we were doing.
        op: &'static str,
        /// `s3://bucket/key`.
        location: String,
        /// The classified cause.
        #[source]
        source: AwsError,
    },
    /// A stored object is not what panka writes.
    #[error("failed to parse {location}: {detail}")]
    Corrupt {
        /// Where.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// The document or the fence token is for another stack/environment.
    #[error("failed to write state {key}: {detail}")]
    WrongKey {
        /// The state written.
        key: StateKey,
        /// What does not match.
        detail: String,
    },
    /// The document's lineage is not the stored state's.
    #[error("failed to write state {key}: lineage {attempted} is foreign to the stored state (lineage {current}); refusing to overwrite another state's history")]
    ForeignLineage {
        /// The state.
        key: StateKey,
        /// Stored lineage.
        current: String,
        /// The write's lineage.
        attempted: String,
    },
    /// The document's serial does not advance past the stored one.
    #[error("failed to write state {key}: serial {attempted} does not advance past the stored serial {current}; re-read the state and retry")]
    StaleSerial {
        /// The state.
        key: StateKey,
        /// Stored serial.
        current: u64,
        /// The write's serial.
        attempted: u64,
    },
    /// The writer's lock fence is older than one that already wrote: its lock was taken over.
    #[error("failed to write state {key}: fence {attempted} of lock {lock_key} is older than fence {current} that already wrote; this holder's lock was taken over and it must stop")]
    StaleFence {
        /// The state.
        key: StateKey,
        /// The writer's lock key.
        lock_key: String,
        /// Newest fence that wrote (of a scope that excludes the writer).
        current: u64,
        /// The writer's fence.
        attempted: u64,
    },
    /// Someone else wrote since the base was read.
    #[error("failed to write state {key}: it changed since it was read (now serial {current_serial}); re-read it and retry")]
    Conflict {
        /// The state.
        key: StateKey,
        /// The serial now stored (0 when it vanished).
        current_serial: u64,
    },
    /// A history entry with this id exists already.
    #[error("failed to record history entry {id} for {key}: it exists already")]
    HistoryExists {
        /// The state.
        key: StateKey,
        /// The id.
        id: String,
    },
}

/// A stored object and its version token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its bytes.
    pub body: Vec<u8>,
    /// Its version token (S3 ETag, or a content hash locally).
    pub etag: String,
}

/// Precondition of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Only if no object exists at the path (`If-None-Match: *`).
    IfAbsent,
    /// Only if the object's version token is this one (`If-Match`).
    IfMatch(String),
}

/// Result of a conditional put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written; the new version token.
    Written {
        /// Version token of what was written.
        etag: String,
    },
    /// The precondition did not hold; nothing was written.
    PreconditionFailed,
}

/// Where state objects live. Implementations: [`s3::S3Store`], [`local::LocalStore`].
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Human-readable location (`s3://bucket`, a directory).
    fn location(&self) -> String;
    /// Reads an object; `None` when absent.
    async fn get(&self, path: &str) -> Result<Option<StoredObject>, StateError>;
    /// Writes an object under a precondition, atomically.
    async fn put(
        &self,
        path: &str,
        body: Vec<u8>,
        condition: PutCondition,
    ) -> Result<PutOutcome, StateError>;
    /// Paths of the objects under a prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError>;
}

/// State and history on top of an [`ObjectStore`].
#[derive(Clone)]
pub struct StateStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("location", &self.store.location())
            .finish()
    }
}

impl StateStore {
    /// State kept in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> StateStore {
        StateStore { store }
    }

    /// Where the state lives, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Reads the current state; `None` when nothing was ever written.
    pub async fn read(&self, key: &StateKey) -> Result<Option<Snapshot>, StateError> {
        let path = key.state_path();
        match self.store.get(&path).await? {
            None => Ok(None),
            Some(obj) => Ok(Some(Snapshot {
                document: self.parse_state(&path, &obj.body)?,
                etag: obj.etag,
            })),
        }
    }

    /// Writes `document` as the successor of `base` (`None`: the first write), as the lock
    /// holder `token`. Stamps the fence fields; refuses stale fences, serials and foreign
    /// lineages; writes conditionally on `base`'s version. Returns the new snapshot.
    ///
    /// A precondition failure whose stored object turns out to be byte-for-byte this write is
    /// our own earlier attempt whose response was lost: it counts as success.
    pub async fn write(
        &self,
        key: &StateKey,
        base: Option<&Snapshot>,
        mut document: StateDocument,
        token: &FenceToken,
    ) -> Result<Snapshot, StateError> {
        if document.stack != key.stack || document.environment != key.environment {
            return Err(StateError::WrongKey {
                key: key.clone(),
                detail: format!(
                    "the document is for {}/{}",
                    document.stack, document.environment
                ),
            });
        }
        if token.target.stack != key.stack || token.target.environment != key.environment {
            return Err(StateError::WrongKey {
                key: key.clone(),
                detail: format!("the lock held is {}", token.target.key()),
            });
        }
        let condition = match base {
            None => {
                if document.lineage.is_empty() || document.serial == 0 {
                    return Err(StateError::WrongKey {
                        key: key.clone(),
                        detail: "a first write needs a lineage and serial ≥ 1 \
                                 (use StateDocument::initial)"
                            .into(),
                    });
                }
                PutCondition::IfAbsent
            }
            Some(base) => {
                check_successor(key, &base.document, &document, token)?;
                PutCondition::IfMatch(base.etag.clone())
            }
        };
        let scope = scope_name(&token.target.scope);
        document.fence = base.map_or(0, |b| b.document.fence).max(token.fence);
        document.fences = base.map(|b| b.document.fences.clone()).unwrap_or_default();
        document.fences.insert(scope, token.fence);
        document.format_version = FORMAT_VERSION;
        let body = serde_json::to_vec_pretty(&document).map_err(|e| StateError::Corrupt {
            location: key.state_path(),
            detail: e.to_string(),
        })?;

        let path = key.state_path();
        match self.store.put(&path, body.clone(), condition).await? {
            PutOutcome::Written { etag } => Ok(Snapshot { document, etag }),
            PutOutcome::PreconditionFailed => {
                let current = self.store.get(&path).await?;
                let Some(current) = current else {
                    return Err(StateError::Conflict {
                        key: key.clone(),
                        current_serial: 0,
                    });
                };
                if Sha256::digest(&current.body) == Sha256::digest(&body) {
                    // Our own write landed; only its response was lost.
                    return Ok(Snapshot {
                        document,
                        etag: current.etag,
                    });
                }
                let stored = self.parse_state(&path, &current.body)?;
                // Say why, most specific first, so a stale holder learns it must stop.
                check_successor(key, &stored, &document, token)?;
                Err(StateError::Conflict {
                    key: key.clone(),
                    current_serial: stored.serial,
                })
            }
        }
    }

    /// Records a history entry (never overwrites one).
    pub async fn record(&self, key: &StateKey, entry: &HistoryEntry) -> Result<(), StateError> {
        check_name("history id", entry.id())?;
        let path = key.history_path(entry.id());
        let body = serde_json::to_vec_pretty(entry).map_err(|e| StateError::Corrupt {
            location: path.clone(),
            detail: e.to_string(),
        })?;
        match self.store.put(&path, body, PutCondition::IfAbsent).await? {
            PutOutcome::Written { .. } => Ok(()),
            PutOutcome::PreconditionFailed => Err(StateError::HistoryExists {
                key: key.clone(),
                id: entry.id().to_owned(),
            }),
        }
    }

    /// History entries, newest first, at most `limit`.
    pub async fn history(
        &self,
        key: &StateKey,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>, StateError> {
        let mut paths: Vec<String> = self
            .store
            .list(&key.history_prefix())
            .await?
            .into_iter()
            .filter(|p| p.ends_with(".json"))
            .collect();
        paths.sort();
        paths.reverse();
        if let Some(limit) = limit {
            paths.truncate(limit);
        }
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            // An entry deleted between list and get is simply gone.
            if let Some(obj) = self.store.get(&path).await? {
                out.push(self.parse_history(&path, &obj.body)?);
            }
        }
        Ok(out)
    }

    /// One history entry by id.
    pub async fn history_entry(
        &self,
        key: &StateKey,
        id: &str,
    ) -> Result<Option<HistoryEntry>, StateError> {
        check_name("history id", id)?;
        let path = key.history_path(id);
        match self.store.get(&path).await? {
            None => Ok(None),
            Some(obj) => Ok(Some(self.parse_history(&path, &obj.body)?)),
        }
    }

    fn parse_state(&self, path: &str, body: &[u8]) -> Result<StateDocument, StateError> {
        serde_json::from_slice(body).map_err(|e| StateError::Corrupt {
            location: format!("{}/{path}", self.store.location()),
            detail: e.to_string(),
        })
    }

    fn parse_history(&self, path: &str, body: &[u8]) -> Result<HistoryEntry, StateError> {
        serde_json::from_slice(body).map_err(|e| StateError::Corrupt {
            location: format!("{}/{path}", self.store.location()),
            detail: e.to_string(),
        })
    }
}

/// The key of a lock scope in [`StateDocument::fences`].
pub fn scope_name(scope: &LockScope) -> String {
    match scope {
        LockScope::Stack => "stack".to_owned(),
        LockScope::Service(s) => format!("service:{s}"),
    }
}

/// Whether `next`, written by `token`, may replace `stored`.
fn check_successor(
    key: &StateKey,
    stored: &StateDocument,
    next: &StateDocument,
    token: &FenceToken,
) -> Result<(), StateError> {
    if next.lineage != stored.lineage {
        return Err(StateError::ForeignLineage {
            key: key.clone(),
            current: stored.lineage.clone(),
            attempted: next.lineage.clone(),
        });
    }
    // The fences that exclude this writer: every scope for a stack holder; the stack scope and
    // its own service for a service holder (other services run in parallel).
    let newest = match &token.target.scope {
        LockScope::Stack => stored.fence,
        LockScope::Service(_) => {
            let stack = stored.fences.get("stack").copied().unwrap_or(0);
            let own = stored
                .fences
                .get(&scope_name(&token.target.scope))
                .copied()
                .unwrap_or(0);
            stack.max(own)
        }
    };
    if token.fence < newest {
        return Err(StateError::StaleFence {
            key: key.clone(),
            lock_key: token.target.key(),
            current: newest,
            attempted: token.fence,
        });
    }
    if next.serial <= stored.serial {
        return Err(StateError::StaleSerial {
            key: key.clone(),
            current: stored.serial,
            attempted: next.serial,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(kind: ReleaseKind, overrides: &[(&str, &str)]) -> HistoryEntry {
        HistoryEntry::Release(Release {
            id: "20250101T000000Z-aaaaaaaa".into(),
            kind,
            stack: "s".into(),
            environment: "e".into(),
            scope: "stack".into(),
            version: None,
            commit: None,
            actor: "a@b".into(),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            started_at: "2025-01-01T00:00:00Z".into(),
            finished_at: None,
            outcome: ReleaseOutcome::Succeeded,
            actions: BTreeMap::new(),
            desired: serde_json::Value::Null,
        })
    }

    #[test]
    fn a_release_without_release_kind_reads_as_an_apply() {
        let old = serde_json::json!({
            "kind": "release", "id": "20250101T000000Z-aaaaaaaa", "stack": "s",
            "environment": "e", "scope": "stack", "actor": "a@b",
            "startedAt": "2025-01-01T00:00:00Z", "outcome": "succeeded",
        });
        let entry: HistoryEntry = serde_json::from_value(old).unwrap();
        let HistoryEntry::Release(r) = entry else {
            panic!("not a release")
        };
        assert_eq!(r.kind, ReleaseKind::Apply);
        assert!(r.overrides.is_empty());
    }

    #[test]
    fn release_kind_is_stored_beside_the_entry_tag_and_reads_back() {
        for kind in [
            ReleaseKind::Apply,
            ReleaseKind::Destroy,
            ReleaseKind::Rollback,
        ] {
            let entry = release(kind, &[("VERSION", "1.10")]);
            let json = serde_json::to_value(&entry).unwrap();
            assert_eq!(json["kind"], "release");
            assert_eq!(json["releaseKind"], kind.as_str());
            assert_eq!(json["overrides"]["VERSION"], "1.10");
            let back: HistoryEntry = serde_json::from_value(json).unwrap();
            assert_eq!(back, entry);
        }
    }

    #[test]
    fn history_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..3)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                new_history_id()
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        for id in &ids {
            check_name("history id", id).unwrap();
            assert_eq!(id.len(), "20250115T133000.123Z-1a2b3c4d".len(), "{id}");
        }
    }

    #[test]
    fn empty_overrides_are_not_stored() {
        let json = serde_json::to_value(release(ReleaseKind::Apply, &[])).unwrap();
        assert!(json.get("overrides").is_none(), "{json}");
    }

    #[test]
    fn secret_looking_variables_are_redacted_and_others_kept() {
        let vars: BTreeMap<String, String> = [
            ("USER_API_VERSION", "1.4.2"),
            ("DB_PASSWORD", "hunter2"),
            ("api_token", "t"),
            ("ClientSecret", "s"),
            ("SIGNING_KEY_ID", "k"),
            ("AWS_CREDENTIALS", "c"),
            ("REPLICAS", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let recorded = redact_variables(&vars);
        assert_eq!(recorded["USER_API_VERSION"], "1.4.2");
        assert_eq!(recorded["REPLICAS"], "3");
        for k in [
            "DB_PASSWORD",
            "api_token",
            "ClientSecret",
            "SIGNING_KEY_ID",
            "AWS_CREDENTIALS",
        ] {
            assert_eq!(recorded[k], REDACTED, "{k}");
        }
        assert_eq!(recorded.len(), vars.len());
    }
}
