//! Deployment repositories for tests: copies of the example stacks under names of their own
//! (so parallel tests never share AWS names), edited in place.

use std::path::Path;

use crate::emulator::{repo_root, REGION};

/// Writes `text` to `rel` below `root`, creating the folders on the way.
///
/// # Panics
/// When the file cannot be written.
pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Writes stack `name`'s `stack.yaml` (AWS in the tests' region) and its `development`
/// variables, `variables` being the YAML flow map of them (`{VERSION: v1}`).
pub fn stack_files(root: &Path, name: &str, variables: &str) {
    write(
        root,
        &format!("stacks/{name}/stack.yaml"),
        &format!("apiVersion: core.panka.io/v1\nkind: Stack\nmetadata: {{name: {name}}}\nspec:\n  provider: {{name: aws, region: {REGION}}}\n"),
    );
    write(
        root,
        &format!("stacks/{name}/environments/development/variables.yaml"),
        &format!("apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {{name: development, stack: {name}}}\nspec: {variables}\n"),
    );
}

/// Writes a stack `name` with one service `orders` and two queues, `jobs` and `events`, whose
/// visibility timeout is the `QUEUE_VISIBILITY` variable (30 in `development`, where `VERSION`
/// is `v1`); each queue names itself on line 4 of its `sqs.yaml`. Applies in seconds.
pub fn two_queue_stack(root: &Path, name: &str) {
    stack_files(root, name, "{VERSION: v1, QUEUE_VISIBILITY: \"30\"}");
    write(
        root,
        &format!("stacks/{name}/services/orders/service.yaml"),
        &format!(
            "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {{name: orders, stack: {name}}}\n"
        ),
    );
    for queue in ["jobs", "events"] {
        write(
            root,
            &format!("stacks/{name}/services/orders/components/{queue}/sqs.yaml"),
            &format!(
                "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata:\n  name: {queue}\n  service: orders\n  stack: {name}\nspec:\n  visibilityTimeout: ${{QUEUE_VISIBILITY}}\n"
            ),
        );
    }
}

/// A copy of the example repository's stack `from`, renamed `to` everywhere (folder, metadata,
/// secret paths), and of its policies, in a fresh temporary repository root.
pub fn renamed_example(from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_renamed_example(dir.path(), from, to);
    dir
}

/// As [`renamed_example`], into the repository root `root` (created if needed), with the
/// example's policies (`policies/`), which judge every stack, beside it.
pub fn copy_renamed_example(root: &Path, from: &str, to: &str) {
    let example = repo_root().join("examples/deployment-repo");
    copy(
        &example.join("stacks").join(from),
        &root.join("stacks").join(to),
        from,
        to,
    );
    copy(&example.join("policies"), &root.join("policies"), from, to);
}

fn copy(src: &Path, dst: &Path, from: &str, to: &str) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("readable") {
        let entry = entry.expect("entry");
        let target = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target, from, to);
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("text");
            std::fs::write(target, text.replace(from, to)).expect("write");
        }
    }
}

/// Replaces the first `from` in the file `rel` of the repository at `root` by `to`.
pub fn edit(root: &Path, rel: &str, from: &str, to: &str) {
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path).expect("readable");
    assert!(text.contains(from), "{rel} has no `{from}`");
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// Creates, in the emulator, the Secrets Manager secrets stack `stack` of the repository at
/// `root` references in `development` (a platform team's job before panka's first apply).
///
/// # Panics
/// When the stack does not load or resolve, or the emulator refuses a secret.
pub async fn create_example_secrets(root: &Path, stack: &str) {
    let loaded = panka_controller::validate::load_stack(root, stack).expect("loads");
    let (desired, _) = panka_controller::validate::plan_input(
        &loaded,
        "development",
        &panka_core::resolve::Options::default(),
    )
    .expect("resolves");
    let sdk = crate::emulator::emulator().sdk_config().await;
    crate::emulator::ensure_secrets(&sdk, &desired).await;
}

/// Commits every file below `root` (a git working tree, created when it is not one yet) on
/// HEAD's branch; the new commit's id.
///
/// # Panics
/// When git refuses.
pub fn commit_all(root: &Path) -> String {
    let repo = git2::Repository::open(root)
        .or_else(|_| git2::Repository::init(root))
        .expect("git init");
    let mut index = repo.index().expect("index");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("git add");
    index.update_all(["*"], None).expect("git add (removals)");
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("write tree"))
        .expect("tree");
    let who = git2::Signature::now("tester", "tester@example.invalid").expect("signature");
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &who, &who, "stacks", &tree, &parents)
        .expect("git commit")
        .to_string()
}
