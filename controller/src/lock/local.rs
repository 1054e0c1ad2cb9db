//! [`LockBackend`] in a local directory: the default when nothing is configured.
//!
//! One JSON file per stack/environment, `locks/{stack}/{env}.json`, holding the same records as
//! the DynamoDB items (stack holder, service holders, fence counter). Each operation takes an
//! exclusive file lock on `locks/{stack}/.{env}.lock`, reads the file, applies the same rules as
//! the conditional writes on DynamoDB (leases, expiry checked at the moment of the write,
//! takeover of expired leases, strictly increasing fences, stack/service exclusion) and replaces
//! the file atomically. A crashed process holds no OS lock afterwards; its lease runs out.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    expiry, now_epoch_secs, propose_fence, LockBackend, LockError, LockInfo, LockRequest,
    LockScope, LockTarget,
};

/// Lock files under `{root}/locks/`.
#[derive(Debug, Clone)]
pub struct LocalLocks {
    root: PathBuf,
}

/// One holder's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    lock_id: String,
    locked_by: String,
    operation: String,
    locked_at: i64,
    last_heartbeat: i64,
    expires_at: i64,
    fence: u64,
}

/// A stack/environment's lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockFile {
    /// Highest fence granted in any scope.
    #[serde(default)]
    fence_counter: u64,
    /// The stack-scoped holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stack: Option<Record>,
    /// Service-scoped holders.
    #[serde(default)]
    services: BTreeMap<String, Record>,
}

impl Record {
    fn info(&self, target: LockTarget) -> LockInfo {
        LockInfo {
            target,
            lock_id: self.lock_id.clone(),
            locked_by: self.locked_by.clone(),
            operation: self.operation.clone(),
            locked_at: self.locked_at,
            last_heartbeat: self.last_heartbeat,
            expires_at: self.expires_at,
            fence: self.fence,
        }
    }

    fn live(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

impl LocalLocks {
    /// Locks under `{root}/locks/` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> LocalLocks {
        LocalLocks { root: root.into() }
    }

    fn file_of(&self, stack: &str, env: &str) -> PathBuf {
        self.root
            .join("locks")
            .join(stack)
            .join(format!("{env}.json"))
    }

    /// Runs `f` on the lock file of `target`'s stack/environment under its file lock, writing
    /// the file back when `f` says it changed it.
    async fn with_file<T: Send + 'static>(
        &self,
        target: &LockTarget,
        f: impl FnOnce(&mut LockFile) -> Result<(T, bool), LockError> + Send + 'static,
    ) -> Result<T, LockError> {
        let path = self.file_of(&target.stack, &target.environment);
        blocking(move || locked_update(&path, f)).await
    }
}

/// Runs file work on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LockError> + Send + 'static,
) -> Result<T, LockError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LockError::Io {
            op: "run file task for",
            path: String::new(),
            source: std::io::Error::other(e.to_string()),
        })?
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LockError + 'a {
    move |source| LockError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn read_file(path: &Path) -> Result<LockFile, LockError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LockError::Corrupt {
            location: path.display().to_string(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
        Err(e) => Err(io("read", path)(e)),
    }
}

fn locked_update<T>(
    path: &Path,
    f: impl FnOnce(&mut LockFile) -> Result<(T, bool), LockError>,
) -> Result<T, LockError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    // flock: exclusive between processes and threads; released when `lock` drops, also when
    // the process dies.
    lock.lock().map_err(io("lock", &lock_path))?;
    let mut file = read_file(path)?;
    let (out, changed) = f(&mut file)?;
    if changed {
        let body = serde_json::to_vec_pretty(&file).map_err(|e| LockError::Corrupt {
            location: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let tmp = dir.join(format!(
            ".{name}.json.tmp.{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut w = File::create(&tmp).map_err(io("create", &tmp))?;
        w.write_all(&body).map_err(io("write", &tmp))?;
        w.sync_all().map_err(io("sync", &tmp))?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(io("replace", path))?;
    }
    Ok(out)
}

fn service_target(stack: &LockTarget, svc: &str) -> LockTarget {
    LockTarget {
        stack: stack.stack.clone(),
        environment: stack.environment.clone(),
        scope: LockScope::Service(svc.to_owned()),
    }
}

#[async_trait]
impl LockBackend for LocalLocks {
    fn location(&self) -> String {
        self.root.join("locks").display().to_string()
    }

    async fn try_acquire(&self, request: &LockRequest) -> Result<LockInfo, LockError> {
        let req = request.clone();
        self.with_file(&request.target, move |file| {
            let now = now_epoch_secs();
            let stack_target = req.target.to_stack();
            let requested = req.target.key();
            if let Some(r) = file.stack.as_ref().filter(|r| r.live(now)) {
                return Err(LockError::Held {
                    requested,
                    holder: Box::new(r.info(stack_target)),
                });
            }
            let in_the_way = match &req.target.scope {
                // A stack lock waits for every service; a service lock only for itself.
                LockScope::Stack => file.services.iter().find(|(_, r)| r.live(now)),
                LockScope::Service(svc) => file
                    .services
                    .get_key_value(svc)
                    .filter(|(_, r)| r.live(now)),
            };
            if let Some((svc, r)) = in_the_way {
                return Err(LockError::Held {
                    requested,
                    holder: Box::new(r.info(service_target(&stack_target, svc))),
                });
            }
            let fence = propose_fence(file.fence_counter.saturating_add(1));
            let record = Record {
                lock_id: uuid::Uuid::new_v4().to_string(),
                locked_by: req.holder.clone(),
                operation: req.operation.clone(),
                locked_at: now,
                last_heartbeat: now,
                expires_at: expiry(now, req.lease),
                fence,
            };
            file.fence_counter = fence;
            match &req.target.scope {
                LockScope::Stack => {
                    // Every service lease has run out: forget them.
                    file.services.clear();
                    file.stack = Some(record.clone());
                }
                LockScope::Service(svc) => {
                    // An expired stack holder is taken over by this service.
                    file.stack = None;
                    file.services.insert(svc.clone(), record.clone());
                }
            }
            Ok((record.info(req.target.clone()), true))
        })
        .await
    }

    async fn renew(&self, held: &LockInfo, lease: Duration) -> Result<LockInfo, LockError> {
        let held = held.clone();
        self.with_file(&held.target.clone(), move |file| {
            let now = now_epoch_secs();
            let record = match &held.target.scope {
                LockScope::Stack => file.stack.as_mut(),
                LockScope::Service(svc) => file.services.get_mut(svc),
            };
            match record {
                Some(r) if r.lock_id == held.lock_id => {
                    r.last_heartbeat = now;
                    r.expires_at = expiry(now, lease);
                    Ok((r.info(held.target.clone()), true))
                }
                Some(r) => Err(LockError::Lost {
                    key: held.key(),
                    reason: format!("taken over by {} (fence {})", r.locked_by, r.fence),
                }),
                None => Err(LockError::Lost {
                    key: held.key(),
                    reason: "it was released or taken over".into(),
                }),
            }
        })
        .await
    }

    async fn release(&self, target: &LockTarget, lock_id: &str) -> Result<bool, LockError> {
        let target = target.clone();
        let lock_id = lock_id.to_owned();
        self.with_file(&target.clone(), move |file| {
            let removed = match &target.scope {
                LockScope::Stack => match &file.stack {
                    Some(r) if r.lock_id == lock_id => {
                        file.stack = None;
                        true
                    }
                    _ => false,
                },
                LockScope::Service(svc) => match file.services.get(svc) {
                    Some(r) if r.lock_id == lock_id => {
                        file.services.remove(svc);
                        true
                    }
                    _ => false,
                },
            };
            Ok((removed, removed))
        })
        .await
    }

    async fn get(&self, target: &LockTarget) -> Result<Option<LockInfo>, LockError> {
        let path = self.file_of(&target.stack, &target.environment);
        let target = target.clone();
        blocking(move || {
            let file = read_file(&path)?;
            Ok(match &target.scope {
                LockScope::Stack => file.stack.map(|r| r.info(target.clone())),
                LockScope::Service(svc) => file.services.get(svc).map(|r| r.info(target.clone())),
            })
        })
        .await
    }

    async fn list(
        &self,
        stack: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Vec<LockInfo>, LockError> {
        let dir = self.root.join("locks");
        let stack = stack.map(str::to_owned);
        let environment = environment.map(str::to_owned);
        blocking(move || {
            let mut out = Vec::new();
            let stacks = match std::fs::read_dir(&dir) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io("list", &dir)(e)),
            };
            for s in stacks {
                let s = s.map_err(io("list", &dir))?;
                let s_name = s.file_name().to_string_lossy().into_owned();
                if stack.as_deref().is_some_and(|want| want != s_name) || !s.path().is_dir() {
                    continue;
                }
                let envs = std::fs::read_dir(s.path()).map_err(io("list", &s.path()))?;
                for e in envs {
                    let e = e.map_err(io("list", &s.path()))?;
                    let file_name = e.file_name().to_string_lossy().into_owned();
                    let Some(e_name) = file_name.strip_suffix(".json") else {
                        continue;
                    };
                    if file_name.starts_with('.')
                        || environment.as_deref().is_some_and(|want| want != e_name)
                    {
                        continue;
                    }
                    let Ok(stack_target) = LockTarget::stack(&s_name, e_name) else {
                        continue;
                    };
                    let file = read_file(&e.path())?;
                    if let Some(r) = &file.stack {
                        out.push(r.info(stack_target.clone()));
                    }
                    for (svc, r) in &file.services {
                        out.push(r.info(service_target(&stack_target, svc)));
                    }
                }
            }
            out.sort_by(|a, b| a.target.cmp(&b.target));
            Ok(out)
        })
        .await
    }
}
