//! Stage **source**: where documents come from. Produces a [`FileTree`] per stack for the pure
//! load stage, from a directory ([`dir`]) or a git commit ([`git`]) — later also from custom
//! resources.
//!
//! Everything that touches the filesystem or the network stays here, so load, resolve and graph
//! remain pure functions of a `FileTree`.

pub mod dir;
pub mod git;

pub use panka_core::source::{FileTree, MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
