//! [`ObjectStore`] in a local directory: the default backend when nothing is configured.
//!
//! Same layout and the same conditional-write semantics as S3: a put compares the current
//! content hash (the local ETag) under an exclusive file lock, then replaces the file atomically
//! (write to a temporary file, fsync, rename). Safe between threads and processes of one machine.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{ObjectStore, PutCondition, PutOutcome, StateError, StoredObject};

/// Name of the lock file serialising conditional puts in the store's root.
const LOCK_FILE: &str = ".panka-store.lock";

/// A directory holding `stacks/…` exactly as the bucket would.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(body)))
}

fn read_object(path: &Path) -> Result<Option<StoredObject>, StateError> {
    match std::fs::read(path) {
        Ok(body) => Ok(Some(StoredObject {
            etag: etag_of(&body),
            body,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StateError::Io {
            op: "run file task for",
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn get(&self, path: &str) -> Result<Option<StoredObject>, StateError> {
        let file = self.root.join(path);
        blocking(&file.clone(), move || read_object(&file)).await
    }

    async fn put(
        &self,
        path: &str,
        body: Vec<u8>,
        condition: PutCondition,
    ) -> Result<PutOutcome, StateError> {
        let root = self.root.clone();
        let file = self.root.join(path);
        blocking(&file.clone(), move || {
            let dir = file.parent().unwrap_or(&root).to_path_buf();
            std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
            let lock_path = root.join(LOCK_FILE);
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io("open", &lock_path))?;
            // flock: exclusive between processes and between threads (each open is its own
            // description); released when `lock` is dropped.
            lock.lock().map_err(io("lock", &lock_path))?;
            let current = read_object(&file)?;
            let holds = match (&condition, &current) {
                (PutCondition::IfAbsent, None) => true,
                (PutCondition::IfMatch(etag), Some(cur)) => *etag == cur.etag,
                _ => false,
            };
            if !holds {
                return Ok(PutOutcome::PreconditionFailed);
            }
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!(".{name}.tmp.{}", uuid::Uuid::new_v4().simple()));
            let mut out = File::create(&tmp).map_err(io("create", &tmp))?;
            out.write_all(&body).map_err(io("write", &tmp))?;
            out.sync_all().map_err(io("sync", &tmp))?;
            drop(out);
            std::fs::rename(&tmp, &file).map_err(io("replace", &file))?;
            Ok(PutOutcome::Written {
                etag: etag_of(&body),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        // Prefixes used here end in `/`: list that directory's files.
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let prefix = prefix.to_owned();
        blocking(&dir.clone(), move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io("list", &dir)(e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io("list", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Skip temporary files of writes in progress.
                if name.starts_with('.') || !entry.path().is_file() {
                    continue;
                }
                let sep = if prefix.ends_with('/') { "" } else { "/" };
                out.push(format!("{prefix}{sep}{name}"));
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}
