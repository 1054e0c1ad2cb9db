//! A deployment repository in a local directory.
//!
//! Reads one stack folder, and the repository's `policies/` folder, into a [`FileTree`],
//! refusing what could hurt or mislead the later stages: files over [`MAX_FILE_BYTES`],
//! symlinks that leave the repository, stack names that are paths, and trees too large to be a
//! deployment repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use panka_core::diag::{suggest, Collector, Diagnostic, Diagnostics, Span};
use panka_core::source::{is_policy_file, is_valid_name, FileTree, POLICY_DIR};

/// The nearest ancestor of `start` (itself included) that holds a `stacks/` folder.
pub fn find_repo_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join("stacks").is_dir())
        .map(Path::to_path_buf)
}

/// The stacks of a repository (folders below `stacks/`), sorted.
pub fn list_stacks(root: &Path) -> Result<Vec<String>, Diagnostic> {
    let dir = root.join("stacks");
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        Diagnostic::general(format!("failed to read {}: {e}", dir.display()))
            .help("pass --repo with the folder that holds `stacks/`")
    })?;
    let mut stacks = Vec::new();
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                if !name.starts_with('.') {
                    stacks.push(name.to_string());
                }
            }
        }
    }
    stacks.sort();
    Ok(stacks)
}

/// Reads the folder of stack `stack` below `root/stacks/`.
pub fn read_stack(root: &Path, stack: &str) -> Result<FileTree, Diagnostics> {
    if !is_valid_name(stack) {
        return Err(
            Diagnostic::general(format!("`{stack}` is not a valid stack name"))
                .help("stack names use lowercase letters, digits and `-`, e.g. `user-platform`")
                .into(),
        );
    }
    let stack_dir = root.join("stacks").join(stack);
    if !stack_dir.is_dir() {
        let known = list_stacks(root).unwrap_or_default();
        let mut d = Diagnostic::general(format!(
            "stack `{stack}` not found in {}",
            root.join("stacks").display()
        ));
        d = match suggest(stack, known.iter().map(String::as_str)) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None if known.is_empty() => d.help("this repository has no stacks yet"),
            None => d.help(format!("known stacks: {}", known.join(", "))),
        };
        return Err(d.into());
    }
    let canonical_root = root.canonicalize().map_err(|e| {
        Diagnostics::from(Diagnostic::general(format!(
            "failed to resolve {}: {e}",
            root.display()
        )))
    })?;
    let mut tree = FileTree::new(format!("stacks/{stack}"));
    let mut walk = Walk {
        root: canonical_root.clone(),
        tree: &mut tree,
        total: 0,
        problems: Collector::default(),
        keep: |_| true,
    };
    walk.dir(&stack_dir, "")?;
    let mut problems = walk.problems;
    if let Some(policies) = problems.take(read_policies(&canonical_root)) {
        tree.policies = policies;
    }
    problems.finish(tree)
}

/// The repository's policy files: every `*.rego` below `root/policies/` but tests
/// (`*_test.rego`), by repository-relative path, with the limits and symlink rules of a stack
/// folder. Other files there (data, READMEs) are not read. Empty when there is no such folder.
pub fn read_policies(root: &Path) -> Result<BTreeMap<String, Arc<str>>, Diagnostics> {
    let canonical_root = root.canonicalize().map_err(|e| {
        Diagnostics::from(Diagnostic::general(format!(
            "failed to resolve {}: {e}",
            root.display()
        )))
    })?;
    let dir = canonical_root.join(POLICY_DIR);
    let display: Arc<str> = Arc::from(POLICY_DIR);
    let at = || Span::file(&display);
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Diagnostic::at(at(), format!("failed to read: {e}")).into()),
    };
    // The folder itself may not be a link out of the repository either (its files would be
    // read as the repository's own).
    if meta.file_type().is_symlink() {
        let inside = dir
            .canonicalize()
            .is_ok_and(|t| t.starts_with(&canonical_root) && t.is_dir());
        if !inside {
            return Err(Diagnostic::at(
                at(),
                "`policies` is a symlink that leaves the repository or is not a folder",
            )
            .help("make `policies/` a real folder of the repository")
            .into());
        }
    } else if !meta.is_dir() {
        return Err(Diagnostic::at(at(), "`policies` is not a folder")
            .help("policies are `.rego` files in the repository's `policies/` folder")
            .into());
    }
    let mut tree = FileTree::new(POLICY_DIR);
    let mut walk = Walk {
        root: canonical_root,
        tree: &mut tree,
        total: 0,
        problems: Collector::default(),
        keep: is_policy_file,
    };
    walk.dir(&dir, "")?;
    let problems = walk.problems;
    let files = tree
        .files
        .iter()
        .map(|(rel, text)| (tree.display_path(rel).to_string(), text.clone()))
        .collect();
    problems.finish(files)
}

struct Walk<'a> {
    root: PathBuf,
    tree: &'a mut FileTree,
    total: u64,
    problems: Collector,
    /// Which files (by name) to read; the others are skipped unread.
    keep: fn(&str) -> bool,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), Diagnostics> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Diagnostic::general(format!("failed to read {}: {e}", dir.display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // Dotfiles (`.gitkeep`, editor swap files) are never part of a stack.
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let display = self.tree.display_path(&child_rel);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| {
                Diagnostic::at(Span::file(&display), format!("failed to read: {e}"))
            })?;
            if !meta.is_dir() && !(self.keep)(&name) {
                continue;
            }
            if meta.file_type().is_symlink() {
                let target = match path.canonicalize() {
                    Ok(t) => t,
                    Err(_) => {
                        self.problems.push(
                            Diagnostic::at(Span::file(&display), "symlink points to nothing")
                                .help("remove the link or restore its target"),
                        );
                        continue;
                    }
                };
                if !target.starts_with(&self.root) {
                    self.problems.push(
                        Diagnostic::at(Span::file(&display), "symlink leaves the repository")
                            .help("copy the file into the repository instead of linking to it"),
                    );
                    continue;
                }
                if target.is_dir() {
                    // A link to a folder inside the repo could loop; panka does not follow them.
                    self.problems.push(
                        Diagnostic::at(
                            Span::file(&display),
                            "symlinks to folders are not supported",
                        )
                        .help("use a real folder"),
                    );
                    continue;
                }
                self.file(&target, &child_rel, &display)?;
            } else if meta.is_dir() {
                self.dir(&path, &child_rel)?;
            } else if meta.is_file() {
                self.file(&path, &child_rel, &display)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: &str, display: &Arc<str>) -> Result<(), Diagnostics> {
        let failed =
            |e: std::io::Error| Diagnostic::at(Span::file(display), format!("failed to read: {e}"));
        let size = std::fs::metadata(path).map_err(failed)?.len();
        super::add_file(
            self.tree,
            &mut self.total,
            &mut self.problems,
            (rel, display),
            size,
            || std::fs::read(path).map_err(failed),
        )
    }
}
