//! The files of one stack as the pure load stage sees them ([`FileTree`]), the limits a source
//! enforces while reading, and the rule every name must follow.
//!
//! Reading them (a directory, a git commit, custom resources) is the controller's `source`
//! stage; nothing here touches the filesystem.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest file the loader accepts, in bytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files one stack may hold.
pub const MAX_FILES: usize = 100_000;
/// Most bytes one stack may hold in all.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// The repository folder holding the policies, beside `stacks/`.
pub const POLICY_DIR: &str = "policies";

/// Whether a file below [`POLICY_DIR`] is a policy: a `.rego` file that is not a Rego test
/// (`*_test.rego`, run by `opa test`, never part of a deployment's checks).
pub fn is_policy_file(name: &str) -> bool {
    name.ends_with(".rego") && !name.ends_with("_test.rego")
}

/// The files of one stack: paths relative to the stack folder (`stack.yaml`,
/// `services/api/service.yaml`, …), with `/` separators, and their text; and the repository's
/// policies, which judge every stack.
#[derive(Debug, Clone, Default)]
pub struct FileTree {
    /// Repository-relative path of the stack folder, e.g. `stacks/shop`, used in messages.
    pub prefix: String,
    /// Text of every file, by path relative to the stack folder.
    pub files: BTreeMap<String, Arc<str>>,
    /// Text of every policy file (see [`is_policy_file`]), by repository-relative path, e.g.
    /// `policies/production.rego`. Empty when the repository has none (or the source, custom
    /// resources, has no repository).
    pub policies: BTreeMap<String, Arc<str>>,
}

impl FileTree {
    /// An empty tree for the stack folder at `prefix`.
    pub fn new(prefix: impl Into<String>) -> FileTree {
        FileTree {
            prefix: prefix.into(),
            files: BTreeMap::new(),
            policies: BTreeMap::new(),
        }
    }

    /// Repository-relative path of a file of this tree.
    pub fn display_path(&self, relative: &str) -> Arc<str> {
        Arc::from(format!("{}/{}", self.prefix, relative))
    }
}

/// Whether `name` is acceptable as a stack, service, component or environment name: lowercase
/// letters, digits and `-`, starting with a letter, at most 63 characters. This keeps names valid
/// in AWS resource names and makes path tricks (`..`, `/`) impossible.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= 63
        && !name.ends_with('-')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Test support: the files of an example stack read from disk (tests only; the crate itself
/// never touches the filesystem).
#[cfg(test)]
pub(crate) fn read_example(stack: &str) -> FileTree {
    fn walk(dir: &std::path::Path, rel: &str, tree: &mut FileTree) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("example folder reads")
            .map(|e| e.expect("entry reads").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 name");
            let rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                walk(&path, &rel, tree);
            } else {
                let text = std::fs::read_to_string(&path).expect("example file reads");
                tree.files.insert(rel, Arc::from(text));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/deployment-repo/stacks")
        .join(stack);
    let mut tree = FileTree::new(format!("stacks/{stack}"));
    walk(&root, "", &mut tree);
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_paths_or_unfit_for_aws_are_invalid() {
        for good in ["user-platform", "a", "svc2"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "Upper",
            "-x",
            "x-",
            "9lives",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
