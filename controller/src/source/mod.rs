//! Stage **source**: where documents come from. Produces a [`FileTree`] per stack for the pure
//! load stage, from a directory ([`dir`]) — later also from a git commit or custom resources.
//!
//! Everything that touches the filesystem or the network stays here, so load, resolve and graph
//! remain pure functions of a `FileTree`.

pub mod dir;

pub use panka_core::source::{FileTree, MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
