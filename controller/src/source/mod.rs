//! Stage **source**: where documents come from. Produces a [`FileTree`] per stack for the pure
//! load stage, from a directory ([`dir`]) — later also from a git commit or custom resources.
//!
//! Everything that touches the filesystem or the network stays here, so load, resolve and graph
//! remain pure functions of a `FileTree`.

pub mod dir;

use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest file the loader accepts, in bytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files one stack may hold.
pub const MAX_FILES: usize = 100_000;
/// Most bytes one stack may hold in all.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// The files of one stack: paths relative to the stack folder (`stack.yaml`,
/// `services/api/service.yaml`, …), with `/` separators, and their text.
#[derive(Debug, Clone, Default)]
pub struct FileTree {
    /// Repository-relative path of the stack folder, e.g. `stacks/shop`, used in messages.
    pub prefix: String,
    /// Text of every file, by path relative to the stack folder.
    pub files: BTreeMap<String, Arc<str>>,
}

impl FileTree {
    /// An empty tree for the stack folder at `prefix`.
    pub fn new(prefix: impl Into<String>) -> FileTree {
        FileTree {
            prefix: prefix.into(),
            files: BTreeMap::new(),
        }
    }

    /// Repository-relative path of a file of this tree.
    pub fn display_path(&self, relative: &str) -> Arc<str> {
        Arc::from(format!("{}/{}", self.prefix, relative))
    }
}
