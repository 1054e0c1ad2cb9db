//! Stage **source** from git: a deployment repository fetched with git2 into a cache, and the
//! [`FileTree`] of one stack at one commit, read straight from the commit's objects (no
//! checkout, so nothing on disk can be swapped under a reconcile).
//!
//! Which stacks a new commit touches is told by tree ids: a stack folder whose tree id is the
//! same at two commits holds the same bytes, so it needs no plan. Fetching is the only network
//! call; everything else reads the local object database. Supported URLs: `file://`, local
//! paths, `git://`, `https://` (a token from [`GitCredentials`]; certificates verified by
//! OpenSSL) and `ssh://` or `user@host:path` (a private key; the host key must be listed in the
//! given known_hosts file, see [`super::known_hosts`]). URLs that could smuggle a command or an
//! option (`ext::`, a leading `-`) are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{
    CertificateCheckStatus, Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks,
    Repository, Tree, TreeEntry,
};
use panka_core::diag::{Collector, Diagnostic, Diagnostics, Span};
use panka_core::source::{is_policy_file, is_valid_name, POLICY_DIR};

use super::FileTree;

/// Why the repository could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The URL is not one panka fetches from.
    #[error("refusing repository URL `{url}`: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        why: &'static str,
    },
    /// The fetch failed (network, credentials, a missing branch): retried with backoff.
    #[error("failed to fetch branch `{branch}` of {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// The branch.
        branch: String,
        /// What libgit2 said.
        message: String,
    },
    /// The local cache or a commit could not be read.
    #[error("git: {0}")]
    Local(String),
}

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> GitError {
        GitError::Local(e.message().to_owned())
    }
}

/// A deployment repository: where it comes from, which branch, and where it is cached.
#[derive(Debug, Clone)]
pub struct GitSource {
    url: String,
    branch: String,
    /// Folder of the repository holding `stacks/` (`""` for its root).
    path: String,
    cache: PathBuf,
    credentials: GitCredentials,
}

/// How the git source authenticates. Secrets are read when a fetch needs them (a rotated token
/// file is picked up) and never logged.
#[derive(Clone, Default)]
pub struct GitCredentials {
    /// HTTPS: a file holding a token (a GitHub or GitLab access token) used as the password.
    pub token_file: Option<PathBuf>,
    /// HTTPS: the token itself (from the environment), when there is no file.
    pub token: Option<String>,
    /// HTTPS: the user name sent with the token (default `x-access-token`).
    pub username: Option<String>,
    /// SSH: the private key file.
    pub ssh_key: Option<PathBuf>,
    /// SSH: the known_hosts file every host key is checked against (required for SSH).
    pub known_hosts: Option<PathBuf>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("ssh_key", &self.ssh_key)
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

/// `url` without a password or token in its user part (`https://user:TOKEN@host/…` →
/// `https://user:***@host/…`, `https://TOKEN@host/…` → `https://***@host/…` for HTTPS), for
/// messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // A bare user part is a token for HTTPS, a plain user name for SSH.
        None if scheme.starts_with("http") => "***".to_owned(),
        None => rest[..at].to_owned(),
    };
    format!("{scheme}://{user}@{}", &rest[at + 1..])
}

/// Whether `url` is fetched over SSH (`ssh://…`, or scp-like `user@host:path`).
pub fn is_ssh(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return matches!(scheme, "ssh" | "git+ssh" | "ssh+git");
    }
    // scp-like: a colon before any slash, and not a local path.
    match (url.find(':'), url.find('/')) {
        (Some(colon), slash) => slash.is_none_or(|s| colon < s) && colon > 1,
        (None, _) => false,
    }
}

/// A fetched commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its id (hex).
    pub commit: String,
}

impl GitSource {
    /// A source for `branch` of `url`, cached in `cache`, with `stacks/` below `path` (`""` or
    /// `deploy` …). Refuses a URL or branch that could pass for an option or a command.
    pub fn new(url: &str, branch: &str, path: &str, cache: &Path) -> Result<GitSource, GitError> {
        let bad = |why| GitError::BadUrl {
            url: redact_url(url),
            why,
        };
        if url.starts_with('-') {
            return Err(bad("it starts with `-` and could be read as an option"));
        }
        if url.contains("ext::") || url.starts_with("fd::") {
            return Err(bad("`ext::` and `fd::` transports run commands"));
        }
        if url.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        let branch_ok = !branch.is_empty()
            && !branch.starts_with('-')
            && !branch.contains("..")
            && branch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !branch_ok {
            return Err(GitError::BadUrl {
                url: format!("{} (branch `{branch}`)", redact_url(url)),
                why: "the branch name is not a plain ref name",
            });
        }
        let path = path.trim_matches('/').to_owned();
        if path.split('/').any(|p| p == ".." || p == ".") {
            return Err(bad("the repository path leaves the repository"));
        }
        Ok(GitSource {
            url: url.to_owned(),
            branch: branch.to_owned(),
            path,
            cache: cache.to_path_buf(),
            credentials: GitCredentials::default(),
        })
    }

    /// The same source, authenticating with `credentials`. An SSH URL needs a known_hosts
    /// file: host keys are checked against it and nothing else (fail closed).
    pub fn with_credentials(mut self, credentials: GitCredentials) -> Result<GitSource, GitError> {
        if is_ssh(&self.url) && credentials.known_hosts.is_none() {
            return Err(GitError::BadUrl {
                url: self.display_url(),
                why: "SSH needs a known_hosts file to check the server's host key against (--known-hosts)",
            });
        }
        self.credentials = credentials;
        Ok(self)
    }

    /// Fetches the branch into the cache (a bare repository, created at the first fetch) and
    /// returns its commit. Only `refs/heads/{branch}` is fetched.
    pub fn fetch(&self) -> Result<Fetched, GitError> {
        let repo = match Repository::open_bare(&self.cache) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&self.cache)
                    .map_err(|e| GitError::Local(format!("cannot create the cache: {e}")))?;
                Repository::init_bare(&self.cache)?
            }
        };
        let fetch_err = |e: git2::Error| GitError::Fetch {
            url: self.display_url(),
            branch: self.branch.clone(),
            message: e.message().to_owned(),
        };
        let mut remote = repo.remote_anonymous(&self.url).map_err(fetch_err)?;
        let tracking = format!("refs/panka/{}", self.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", self.branch);
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks());
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(fetch_err)?;
        let commit = repo
            .find_reference(&tracking)
            .and_then(|r| r.peel_to_commit())
            .map_err(fetch_err)?;
        Ok(Fetched {
            commit: commit.id().to_string(),
        })
    }

    /// The URL as messages show it (no password or token).
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Credentials on request, and SSH host keys checked against the known_hosts file.
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let creds = &self.credentials;
        let mut callbacks = RemoteCallbacks::new();
        let mut asked = 0u32;
        callbacks.credentials(move |_url, user_from_url, allowed| {
            // libgit2 asks again after a refusal: give up instead of looping.
            asked += 1;
            if asked > 3 {
                return Err(git2::Error::from_str("the repository refused the credentials"));
            }
            let user = user_from_url.unwrap_or("git");
            if allowed.contains(CredentialType::SSH_KEY) {
                if let Some(key) = &creds.ssh_key {
                    return Cred::ssh_key(user, None, key, None);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                let token = match (&creds.token_file, &creds.token) {
                    (Some(file), _) => Some(
                        std::fs::read_to_string(file)
                            .map_err(|e| {
                                git2::Error::from_str(&format!(
                                    "cannot read the token file {}: {e}",
                                    file.display()
                                ))
                            })?
                            .trim()
                            .to_owned(),
                    ),
                    (None, token) => token.clone(),
                };
                if let Some(token) = token {
                    let name = creds.username.as_deref().unwrap_or("x-access-token");
                    return Cred::userpass_plaintext(name, &token);
                }
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(user);
            }
            Err(git2::Error::from_str(
                "the repository needs credentials: give --git-token-file (HTTPS) or --ssh-key-file (SSH)",
            ))
        });
        callbacks.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: libgit2 and OpenSSL verify the chain and the name.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let refuse = |why: String| Err(git2::Error::from_str(&why));
            let Some(path) = &creds.known_hosts else {
                return refuse(format!("no known_hosts file to check {host}'s host key against"));
            };
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => return refuse(format!("cannot read {}: {e}", path.display())),
            };
            let Some(key) = hostkey.hostkey() else {
                return refuse(format!("{host} sent no host key to check"));
            };
            match super::known_hosts::check(&text, host, key) {
                super::known_hosts::HostKey::Known => Ok(CertificateCheckStatus::CertificateOk),
                super::known_hosts::HostKey::Revoked => {
                    refuse(format!("{host}'s host key is revoked in {}", path.display()))
                }
                super::known_hosts::HostKey::Unknown => refuse(format!(
                    "{host}'s host key is not in {}: add it (ssh-keyscan {host}) after checking its fingerprint",
                    path.display()
                )),
            }
        });
        callbacks
    }

    fn repo(&self) -> Result<Repository, GitError> {
        Ok(Repository::open_bare(&self.cache)?)
    }

    /// The tree of `stacks/` at `commit`, if the commit has one.
    fn stacks_tree<'r>(
        &self,
        repo: &'r Repository,
        commit: &str,
    ) -> Result<Option<Tree<'r>>, GitError> {
        self.folder(repo, commit, "stacks")
    }

    /// The tree id of every stack folder at `commit` (stacks with valid names only).
    pub fn stack_trees(&self, commit: &str) -> Result<BTreeMap<String, String>, GitError> {
        let repo = self.repo()?;
        let Some(stacks) = self.stacks_tree(&repo, commit)? else {
            return Ok(BTreeMap::new());
        };
        Ok(stacks
            .iter()
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .filter_map(|e| {
                let name = e.name().ok()?.to_owned();
                is_valid_name(&name).then(|| (name, e.id().to_string()))
            })
            .collect())
    }

    /// The stacks whose folder differs between `before` (the commit last applied; `None`:
    /// nothing applied yet, so every stack) and `after`, with the stacks removed in `after`;
    /// every stack when the `policies/` folder differs.
    pub fn changed_stacks(
        &self,
        before: Option<&str>,
        after: &str,
    ) -> Result<Vec<String>, GitError> {
        let now = self.stack_trees(after)?;
        let Some(before) = before else {
            return Ok(now.into_keys().collect());
        };
        // The policies judge every stack: when they change, every stack is looked at again
        // (one newly denied is reported, one they blocked before may go through now).
        if self.policies_tree(before)? != self.policies_tree(after)? {
            let then = self.stack_trees(before)?;
            let mut all: Vec<String> = now.into_keys().chain(then.into_keys()).collect();
            all.sort();
            all.dedup();
            return Ok(all);
        }
        let then = self.stack_trees(before)?;
        let mut changed: Vec<String> = now
            .iter()
            .filter(|(name, tree)| then.get(*name) != Some(tree))
            .map(|(name, _)| name.clone())
            .chain(then.keys().filter(|n| !now.contains_key(*n)).cloned())
            .collect();
        changed.sort();
        changed.dedup();
        Ok(changed)
    }

    /// The files of stack `stack` at `commit`, read from the commit's objects with the limits
    /// every source enforces (file size, file count, total bytes, UTF-8 text). Symlinks are
    /// refused: a commit cannot point outside itself through them.
    pub fn read_stack(&self, commit: &str, stack: &str) -> Result<FileTree, Diagnostics> {
        let general = |m: String| Diagnostics::from(Diagnostic::general(m));
        if !is_valid_name(stack) {
            return Err(general(format!("`{stack}` is not a valid stack name")));
        }
        let repo = self.repo().map_err(|e| general(e.to_string()))?;
        let stacks = self
            .stacks_tree(&repo, commit)
            .map_err(|e| general(e.to_string()))?
            .ok_or_else(|| general(format!("commit {commit} has no `stacks/` folder")))?;
        let entry = stacks
            .get_name(stack)
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .ok_or_else(|| general(format!("stack `{stack}` not found at commit {commit}")))?;
        let tree = repo
            .find_tree(entry.id())
            .map_err(|e| general(e.message().to_owned()))?;
        let prefix = if self.path.is_empty() {
            format!("stacks/{stack}")
        } else {
            format!("{}/stacks/{stack}", self.path)
        };
        let mut read = Read {
            repo: &repo,
            tree: FileTree::new(prefix),
            total: 0,
            problems: Collector::default(),
            keep: |_| true,
        };
        read.dir(&tree, "")?;
        let Read {
            mut tree,
            mut problems,
            ..
        } = read;
        if let Some(policies) = problems.take(self.read_policies(&repo, commit)) {
            tree.policies = policies;
        }
        problems.finish(tree)
    }

    /// The entry at `rel` (below [`GitSource::new`]'s path) at `commit`, if there is one.
    fn entry(
        &self,
        repo: &Repository,
        commit: &str,
        rel: &str,
    ) -> Result<Option<TreeEntry<'static>>, GitError> {
        let oid = Oid::from_str(commit)?;
        let root = repo.find_commit(oid)?.tree()?;
        let rel = if self.path.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.path)
        };
        Ok(root.get_path(Path::new(&rel)).ok())
    }

    /// The folder at `rel` (below [`GitSource::new`]'s path) at `commit`, if the commit has
    /// one.
    fn folder<'r>(
        &self,
        repo: &'r Repository,
        commit: &str,
        rel: &str,
    ) -> Result<Option<Tree<'r>>, GitError> {
        match self.entry(repo, commit, rel)? {
            Some(entry) if entry.kind() == Some(ObjectType::Tree) => {
                Ok(Some(repo.find_tree(entry.id())?))
            }
            _ => Ok(None),
        }
    }

    /// The object id of the repository's `policies/` entry at `commit` (`None`: no policies):
    /// equal ids, the same policies.
    pub fn policies_tree(&self, commit: &str) -> Result<Option<String>, GitError> {
        let repo = self.repo()?;
        let entry = self.entry(&repo, commit, POLICY_DIR)?;
        Ok(entry.map(|e| e.id().to_string()))
    }

    /// The policy files at `commit` (`*.rego` below `policies/`, tests excluded), by
    /// repository-relative path, with the limits of a stack folder; symlinks refused.
    fn read_policies(
        &self,
        repo: &Repository,
        commit: &str,
    ) -> Result<BTreeMap<String, Arc<str>>, Diagnostics> {
        let general = |m: String| Diagnostics::from(Diagnostic::general(m));
        let prefix = if self.path.is_empty() {
            POLICY_DIR.to_owned()
        } else {
            format!("{}/{POLICY_DIR}", self.path)
        };
        let entry = self
            .entry(repo, commit, POLICY_DIR)
            .map_err(|e| general(e.to_string()))?;
        let policies = match entry {
            None => return Ok(BTreeMap::new()),
            Some(e) if e.kind() == Some(ObjectType::Tree) => repo
                .find_tree(e.id())
                .map_err(|e| general(e.message().to_owned()))?,
            // A link (or a file) instead of the folder would silently turn the checks off.
            Some(_) => {
                return Err(Diagnostic::at(
                    Span::file(&Arc::from(prefix.as_str())),
                    "`policies` is not a folder (symlinks are not read from a git source)",
                )
                .help("commit the policies as `.rego` files in a `policies/` folder")
                .into())
            }
        };
        let mut read = Read {
            repo,
            tree: FileTree::new(prefix),
            total: 0,
            problems: Collector::default(),
            keep: is_policy_file,
        };
        read.dir(&policies, "")?;
        let Read { tree, problems, .. } = read;
        let files = tree
            .files
            .iter()
            .map(|(rel, text)| (tree.display_path(rel).to_string(), text.clone()))
            .collect();
        problems.finish(files)
    }
}

/// A stack (or the policies) being read from a commit.
struct Read<'r> {
    repo: &'r Repository,
    tree: FileTree,
    total: u64,
    problems: Collector,
    /// Which files (by name) to read; the others are skipped unread.
    keep: fn(&str) -> bool,
}

impl Read<'_> {
    fn dir(&mut self, tree: &Tree<'_>, rel: &str) -> Result<(), Diagnostics> {
        for entry in tree.iter() {
            let Ok(name) = entry.name().map(str::to_owned) else {
                continue;
            };
            // Dotfiles (`.gitkeep`) are never part of a stack, as in a directory.
            if name.starts_with('.') {
                continue;
            }
            if entry.kind() != Some(ObjectType::Tree) && !(self.keep)(&name) {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let display = self.tree.display_path(&child);
            let at = || Span::file(&display);
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let sub = self
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| Diagnostic::at(at(), e.message().to_owned()))?;
                    self.dir(&sub, &child)?;
                }
                Some(ObjectType::Blob) if entry.filemode() == 0o120_000 => {
                    self.problems.push(
                        Diagnostic::at(at(), "symlinks are not read from a git source")
                            .help("commit the file itself instead of a link to it"),
                    );
                }
                Some(ObjectType::Blob) => self.file(entry.id(), &child, &display)?,
                // Submodules and anything else are not part of a stack.
                _ => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, id: Oid, rel: &str, display: &Arc<str>) -> Result<(), Diagnostics> {
        let blob = self
            .repo
            .find_blob(id)
            .map_err(|e| Diagnostic::at(Span::file(display), e.message().to_owned()))?;
        super::add_file(
            &mut self.tree,
            &mut self.total,
            &mut self.problems,
            (rel, display),
            blob.size() as u64,
            || Ok(blob.content().to_vec()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_urls_never_reach_messages() {
        assert_eq!(
            redact_url("https://x-access-token:ghp_s3cret@github.com/acme/deploy.git"),
            "https://x-access-token:***@github.com/acme/deploy.git"
        );
        assert_eq!(
            redact_url("https://ghp_s3cret@github.com/acme/deploy.git"),
            "https://***@github.com/acme/deploy.git"
        );
        assert_eq!(
            redact_url("ssh://git@github.com/acme/deploy.git"),
            "ssh://git@github.com/acme/deploy.git"
        );
        assert_eq!(redact_url("file:///tmp/r"), "file:///tmp/r");
        let err = GitSource::new(
            "-https://u:ghp_s3cret@h/r",
            "main",
            "",
            &std::env::temp_dir(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn ssh_urls_are_told_apart_from_paths_and_other_transports() {
        for url in [
            "ssh://git@host/repo.git",
            "git@github.com:acme/deploy.git",
            "host:repo",
        ] {
            assert!(is_ssh(url), "{url}");
        }
        for url in [
            "https://host/repo.git",
            "git://127.0.0.1:9418/r",
            "file:///tmp/r",
            "/tmp/r",
            "C:/r",
        ] {
            assert!(!is_ssh(url), "{url}");
        }
    }

    #[test]
    fn ssh_without_known_hosts_is_refused_and_the_token_is_never_printed() {
        let cache = std::env::temp_dir();
        let source = GitSource::new("git@github.com:acme/deploy.git", "main", "", &cache).unwrap();
        let err = source
            .clone()
            .with_credentials(GitCredentials::default())
            .unwrap_err();
        assert!(err.to_string().contains("known_hosts"), "{err}");
        let creds = GitCredentials {
            known_hosts: Some("/etc/panka/known_hosts".into()),
            token: Some("ghp_s3cret".into()),
            ..GitCredentials::default()
        };
        assert!(!format!("{creds:?}").contains("s3cret"));
        assert!(source.with_credentials(creds).is_ok());
    }
}
