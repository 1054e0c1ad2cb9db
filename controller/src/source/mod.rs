//! Stage **source**: where documents come from. Produces a [`FileTree`] per stack for the pure
//! load stage, from a directory ([`dir`]) or a git commit ([`git`]) — later also from custom
//! resources.
//!
//! Everything that touches the filesystem or the network stays here, so load, resolve and graph
//! remain pure functions of a `FileTree`.

pub mod dir;
pub mod git;
pub mod known_hosts;

pub use panka_core::source::{FileTree, MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES};

use std::sync::Arc;

use panka_core::diag::{Collector, Diagnostic, Diagnostics, Span};

/// Adds the file `rel` (`display` in messages) of `size` bytes to `tree`, under the limits
/// every source enforces: a file over [`MAX_FILE_BYTES`] or not UTF-8 text is a problem (the
/// others are still read); more than [`MAX_FILES`] files or [`MAX_TOTAL_BYTES`] in all (counted
/// in `total`) stops the read. `read` gets the bytes, only for a file within the limits.
pub(crate) fn add_file(
    tree: &mut FileTree,
    total: &mut u64,
    problems: &mut Collector,
    (rel, display): (&str, &Arc<str>),
    size: u64,
    read: impl FnOnce() -> Result<Vec<u8>, Diagnostic>,
) -> Result<(), Diagnostics> {
    if size > MAX_FILE_BYTES {
        problems.push(
            Diagnostic::at(
                Span::file(display),
                format!("file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit"),
            )
            .help("split it, or keep large data out of the deployment repository"),
        );
        return Ok(());
    }
    *total += size;
    if tree.files.len() >= MAX_FILES || *total > MAX_TOTAL_BYTES {
        return Err(Diagnostic::at(
            Span::file(display),
            format!("stack holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes"),
        )
        .help("a stack folder should hold YAML and small config files only")
        .into());
    }
    match String::from_utf8(read()?) {
        Ok(text) => {
            tree.files.insert(rel.to_string(), Arc::from(text));
        }
        Err(_) => problems.push(
            Diagnostic::at(Span::file(display), "file is not UTF-8 text")
                .help("deployment files and configs must be text"),
        ),
    }
    Ok(())
}
