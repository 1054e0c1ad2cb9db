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

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::aws::AwsError;
use crate::lock::{FenceToken, LockScope};
use panka_core::drift::DriftReport;
pub use panka_core::keys::{check_name, scope_name, NameError, StateKey};
pub use panka_core::state::{
    content_hash, looks_secret, new_history_id, redact_variables, rolled_back, ComponentState,
    HistoryEntry, Pin, Release, ReleaseKind, ReleaseOutcome, Snapshot, StateDocument, UnlockRecord,
    FORMAT_VERSION, REDACTED,
};
use panka_core::sync::{PendingPlan, SyncStatus};

/// Errors of the state stage.
#[derive(Debug, Error)]
pub enum StateError {
    /// A stack/environment/service name unusable in paths or lock keys.
    #[error(transparent)]
    InvalidName(#[from] NameError),
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

    /// Stores the report of a drift check beside the state. Takes no lock and never touches
    /// the state: the report is a freshness record (last checked, what was found), written on
    /// top of the version read; when another check wrote in between, the later of the two is
    /// kept.
    pub async fn record_drift(
        &self,
        key: &StateKey,
        report: &DriftReport,
    ) -> Result<(), StateError> {
        check_name_opt(report.service.as_deref())?;
        let path = key.drift_path(report.service.as_deref());
        let body = serde_json::to_vec_pretty(report).map_err(|e| StateError::Corrupt {
            location: path.clone(),
            detail: e.to_string(),
        })?;
        let condition = match self.store.get(&path).await? {
            Some(current) => PutCondition::IfMatch(current.etag),
            None => PutCondition::IfAbsent,
        };
        // Lost to a concurrent check: its report is as fresh as this one.
        self.store.put(&path, body, condition).await?;
        Ok(())
    }

    /// The last drift check's report of `service` (the stack's when `None`), if any was
    /// stored.
    pub async fn drift(
        &self,
        key: &StateKey,
        service: Option<&str>,
    ) -> Result<Option<DriftReport>, StateError> {
        check_name_opt(service)?;
        let path = key.drift_path(service);
        match self.store.get(&path).await? {
            None => Ok(None),
            Some(obj) => {
                serde_json::from_slice(&obj.body)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        location: format!("{}/{path}", self.store.location()),
                        detail: e.to_string(),
                    })
            }
        }
    }

    /// Stores where the controller left `key` (`sync.json`): written without the lock, the
    /// last writer wins (there is one controller per target; a stale one only overwrites a
    /// status until the next reconcile).
    pub async fn record_sync(&self, key: &StateKey, status: &SyncStatus) -> Result<(), StateError> {
        let path = key.sync_path();
        let condition = match self.store.get(&path).await? {
            Some(current) => PutCondition::IfMatch(current.etag),
            None => PutCondition::IfAbsent,
        };
        // Lost to a concurrent write: that status is as fresh as this one.
        self.store
            .put(&path, self.to_json(&path, status)?, condition)
            .await?;
        Ok(())
    }

    /// Where the controller last left `key`, if it manages it.
    pub async fn sync(&self, key: &StateKey) -> Result<Option<SyncStatus>, StateError> {
        Ok(self.get_json(&key.sync_path()).await?.map(|(v, _)| v))
    }

    /// The plan waiting for approval (or the last one, approved or applied), with its
    /// version token for [`StateStore::put_pending`].
    pub async fn pending(
        &self,
        key: &StateKey,
    ) -> Result<Option<(PendingPlan, String)>, StateError> {
        self.get_json(&key.pending_path()).await
    }

    /// Writes `plan` as the pending plan if the stored one is still the version `base` (`None`:
    /// there was none). `Ok(false)` when someone wrote in between: read again and decide.
    pub async fn put_pending(
        &self,
        key: &StateKey,
        plan: &PendingPlan,
        base: Option<&str>,
    ) -> Result<bool, StateError> {
        let path = key.pending_path();
        let condition = match base {
            Some(etag) => PutCondition::IfMatch(etag.to_owned()),
            None => PutCondition::IfAbsent,
        };
        let outcome = self
            .store
            .put(&path, self.to_json(&path, plan)?, condition)
            .await?;
        Ok(matches!(outcome, PutOutcome::Written { .. }))
    }

    fn to_json<T: serde::Serialize>(&self, path: &str, value: &T) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            location: path.to_owned(),
            detail: e.to_string(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<(T, String)>, StateError> {
        match self.store.get(path).await? {
            None => Ok(None),
            Some(obj) => serde_json::from_slice(&obj.body)
                .map(|v| Some((v, obj.etag)))
                .map_err(|e| StateError::Corrupt {
                    location: format!("{}/{path}", self.store.location()),
                    detail: e.to_string(),
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
        let mut doc: StateDocument =
            serde_json::from_slice(body).map_err(|e| StateError::Corrupt {
                location: format!("{}/{path}", self.store.location()),
                detail: e.to_string(),
            })?;
        doc.upgrade();
        Ok(doc)
    }

    fn parse_history(&self, path: &str, body: &[u8]) -> Result<HistoryEntry, StateError> {
        serde_json::from_slice(body).map_err(|e| StateError::Corrupt {
            location: format!("{}/{path}", self.store.location()),
            detail: e.to_string(),
        })
    }
}

/// A service name used in a path is a valid name.
fn check_name_opt(service: Option<&str>) -> Result<(), StateError> {
    if let Some(s) = service {
        check_name("service", s)?;
    }
    Ok(())
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
