//! The git source against real repositories: a working tree committed with git2, fetched over
//! `file://` and over the git protocol from a `git daemon` on 127.0.0.1 that the test starts.
//! What it reads at a commit is what the directory source reads from the same files; which
//! stacks a commit changed comes from tree ids; unsafe URLs and symlinks are refused.

use std::path::Path;

use panka_controller::source::dir;
use panka_controller::source::git::{GitError, GitSource};
use panka_tests::gitops::GitDaemon;
use panka_tests::repo::{commit_all, edit, renamed_example};

/// A copy of both example stacks, committed; the repository's root.
fn committed_examples() -> (tempfile::TempDir, String) {
    let repo = renamed_example("user-platform", "user-platform");
    let other = renamed_example("notification-platform", "notification-platform");
    let from = other.path().join("stacks/notification-platform");
    copy_dir(&from, &repo.path().join("stacks/notification-platform"));
    let head = commit_all(repo.path());
    (repo, head)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The branch HEAD is on (git's default: `master` or `main`, as configured).
fn branch_of(root: &Path) -> String {
    git2::Repository::open(root)
        .expect("repo")
        .head()
        .expect("head")
        .shorthand()
        .expect("a branch")
        .to_owned()
}

fn file_url(root: &Path) -> String {
    format!("file://{}", root.display())
}

#[test]
fn a_commit_reads_as_the_directory_does_and_tree_ids_tell_which_stacks_changed() {
    let (repo, first) = committed_examples();
    let cache = tempfile::tempdir().expect("tempdir");
    let source = GitSource::new(
        &file_url(repo.path()),
        &branch_of(repo.path()),
        "",
        cache.path(),
    )
    .expect("a source");
    let fetched = source.fetch().expect("fetches");
    assert_eq!(fetched.commit, first);

    let trees = source.stack_trees(&first).expect("trees");
    assert_eq!(
        trees.keys().collect::<Vec<_>>(),
        ["notification-platform", "user-platform"]
    );
    // The same files, byte for byte, as the directory source reads.
    let from_git = source.read_stack(&first, "user-platform").expect("reads");
    let from_dir = dir::read_stack(repo.path(), "user-platform").expect("reads");
    assert_eq!(from_git.prefix, from_dir.prefix);
    assert_eq!(from_git.files, from_dir.files);
    assert!(!from_git.files.is_empty());
    assert_eq!(from_git.policies, from_dir.policies);
    assert!(!from_git.policies.is_empty());

    // Nothing applied yet: every stack. A commit touching one stack: that stack only.
    assert_eq!(
        source.changed_stacks(None, &first).expect("diff"),
        ["notification-platform", "user-platform"]
    );
    edit(
        repo.path(),
        "stacks/user-platform/environments/development/variables.yaml",
        "VERSION: v1.2.0",
        "VERSION: v1.2.1",
    );
    let second = commit_all(repo.path());
    assert_eq!(source.fetch().expect("fetches").commit, second);
    assert_eq!(
        source.changed_stacks(Some(&first), &second).expect("diff"),
        ["user-platform"]
    );
    assert_eq!(
        source.changed_stacks(Some(&second), &second).expect("diff"),
        Vec::<String>::new()
    );
    // A removed stack counts as changed (its resources are to be destroyed or kept by policy).
    std::fs::remove_dir_all(repo.path().join("stacks/notification-platform")).expect("rm");
    let third = commit_all(repo.path());
    source.fetch().expect("fetches");
    assert_eq!(
        source.changed_stacks(Some(&second), &third).expect("diff"),
        ["notification-platform"]
    );
}

#[test]
fn a_git_daemon_on_loopback_serves_new_commits_and_a_missing_branch_is_a_fetch_error() {
    let base = tempfile::tempdir().expect("tempdir");
    let work = base.path().join("deploy");
    std::fs::create_dir_all(&work).expect("mkdir");
    let (examples, _) = committed_examples();
    copy_dir(&examples.path().join("stacks"), &work.join("stacks"));
    let first = commit_all(&work);
    let branch = branch_of(&work);
    let daemon = GitDaemon::start(base.path());
    let url = daemon.url("deploy");
    let cache = tempfile::tempdir().expect("tempdir");
    let source = GitSource::new(&url, &branch, "", cache.path()).expect("a source");
    assert_eq!(source.fetch().expect("fetches").commit, first);
    edit(
        &work,
        "stacks/notification-platform/environments/development/variables.yaml",
        "VERSION:",
        "VERSION: v9 #",
    );
    let second = commit_all(&work);
    assert_eq!(source.fetch().expect("fetches again").commit, second);
    assert_eq!(
        source.changed_stacks(Some(&first), &second).expect("diff"),
        ["notification-platform"]
    );
    let gone = GitSource::new(&url, "no-such-branch", "", &cache.path().join("x"))
        .expect("a source")
        .fetch()
        .expect_err("no such branch");
    assert!(matches!(gone, GitError::Fetch { .. }), "{gone}");
    assert!(gone.to_string().contains("no-such-branch"), "{gone}");
}

#[test]
fn urls_and_branches_that_could_run_commands_are_refused() {
    let cache = tempfile::tempdir().expect("tempdir");
    for url in [
        "-uupload-pack=touch /tmp/pwned",
        "ext::sh -c touch% /tmp/pwned",
        "fd::17",
        "",
    ] {
        let err = GitSource::new(url, "main", "", cache.path()).expect_err(url);
        assert!(matches!(err, GitError::BadUrl { .. }), "{url}: {err}");
    }
    for branch in ["-f", "a..b", "main;rm", ""] {
        let err = GitSource::new("file:///x", branch, "", cache.path()).expect_err(branch);
        assert!(err.to_string().contains("branch"), "{branch}: {err}");
    }
    let err = GitSource::new("file:///x", "main", "../up", cache.path()).expect_err("path");
    assert!(err.to_string().contains("leaves the repository"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_symlink_in_a_committed_stack_is_refused_with_its_path() {
    let (repo, _) = committed_examples();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        repo.path()
            .join("stacks/user-platform/services/user-service/notes.yaml"),
    )
    .expect("symlink");
    let head = commit_all(repo.path());
    let branch = branch_of(repo.path());
    let cache = tempfile::tempdir().expect("tempdir");
    let source = GitSource::new(&file_url(repo.path()), &branch, "", cache.path()).expect("ok");
    source.fetch().expect("fetches");
    let problems = source
        .read_stack(&head, "user-platform")
        .expect_err("a symlink");
    let first = problems.first();
    assert_eq!(
        first.span.as_ref().map(|s| s.file.to_string()).as_deref(),
        Some("stacks/user-platform/services/user-service/notes.yaml")
    );
    assert!(first.message.contains("symlinks are not read"), "{first:?}");
}

#[test]
fn policies_come_with_every_stack_and_a_changed_policy_changes_every_stack() {
    let (repo, first) = committed_examples();
    // Neither a Rego test nor another file is a policy: none is read (a binary one is fine).
    std::fs::write(repo.path().join("policies/README.md"), "Our rules.\n").expect("write");
    std::fs::write(
        repo.path().join("policies/s3_test.rego"),
        "package panka_test\n\ntest_x if true\n",
    )
    .expect("write");
    std::fs::write(repo.path().join("policies/logo.png"), [0xff_u8, 0xd8, 0x00]).expect("write");
    let second = commit_all(repo.path());
    let cache = tempfile::tempdir().expect("tempdir");
    let source = GitSource::new(
        &file_url(repo.path()),
        &branch_of(repo.path()),
        "",
        cache.path(),
    )
    .expect("a source");
    source.fetch().expect("fetches");
    let expected = [
        "policies/production-replicas.rego",
        "policies/rds-production.rego",
        "policies/s3-public-access.rego",
    ];
    for stack in ["notification-platform", "user-platform"] {
        let tree = source.read_stack(&second, stack).expect("reads");
        assert_eq!(
            tree.policies.keys().collect::<Vec<_>>(),
            expected,
            "{stack}"
        );
        let from_dir = dir::read_stack(repo.path(), stack).expect("reads");
        assert_eq!(tree.policies, from_dir.policies, "{stack}");
    }
    // Any change below policies/ (here files that are not even policies) changes its tree:
    // every stack is looked at again — a little extra work, never a missed change.
    assert_eq!(
        source.changed_stacks(Some(&first), &second).expect("diff"),
        ["notification-platform", "user-platform"]
    );
    assert_eq!(
        source.changed_stacks(Some(&second), &second).expect("diff"),
        Vec::<String>::new()
    );
    // A changed policy touches no stack folder, yet every stack is looked at again.
    edit(
        repo.path(),
        "policies/s3-public-access.rego",
        "never by opening the bucket",
        "never by opening the bucket (see the security guide)",
    );
    let third = commit_all(repo.path());
    source.fetch().expect("fetches");
    assert_eq!(
        source.changed_stacks(Some(&second), &third).expect("diff"),
        ["notification-platform", "user-platform"]
    );
}

#[cfg(unix)]
#[test]
fn a_policies_folder_that_is_a_symlink_is_refused_not_skipped() {
    let (repo, _) = committed_examples();
    let policies = repo.path().join("policies");
    std::fs::rename(&policies, repo.path().join("rules")).expect("rename");
    std::os::unix::fs::symlink("rules", &policies).expect("symlink");
    let head = commit_all(repo.path());
    let cache = tempfile::tempdir().expect("tempdir");
    let source = GitSource::new(
        &file_url(repo.path()),
        &branch_of(repo.path()),
        "",
        cache.path(),
    )
    .expect("a source");
    source.fetch().expect("fetches");
    let problems = source
        .read_stack(&head, "user-platform")
        .expect_err("a symlinked policies folder");
    let first = problems.first();
    assert_eq!(
        first.span.as_ref().map(|s| s.file.to_string()).as_deref(),
        Some("policies")
    );
    assert!(first.message.contains("not a folder"), "{first:?}");
}
