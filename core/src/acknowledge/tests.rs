use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::resolve::{resolve, Options};
use crate::source::FileTree;

const INFRA: &str = "services/svc/components/w/infra.yaml";
const OVERLAY: &str = "environments/production/services/svc/components/w/infra.yaml";
const WORKER: &str = "services/svc/components/w/worker.yaml";
const VARIABLES: &str = "environments/production/variables.yaml";

const INFRA_HEAD: &str = "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata:\n  name: w\n  service: svc\n  stack: s\n";
const WORKER_HEAD: &str = "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata:\n  name: w\n  service: svc\n  stack: s\n";

/// A stack `s` with environment `production` and a Worker `svc/w`; `files` adds or replaces
/// files by stack-relative path.
fn stack_tree(files: &[(&str, &str)]) -> FileTree {
    let mut tree = FileTree::new("stacks/s");
    let mut put = |path: &str, text: &str| {
        tree.files.insert(path.to_string(), Arc::from(text));
    };
    put("stack.yaml", "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata: {name: s}\nspec: {provider: {name: aws, region: us-east-1}}\n");
    put(VARIABLES, "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: production, stack: s}\nspec:\n  VERSION: v1\n");
    put(
        "services/svc/service.yaml",
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {name: svc, stack: s}\n",
    );
    put(
        WORKER,
        &format!(
            "{WORKER_HEAD}spec:\n  image:\n    repository: registry/app\n    tag: ${{VERSION}}\n"
        ),
    );
    for (path, text) in files {
        put(path, text);
    }
    tree
}

fn infra(spec: &str) -> String {
    format!("{INFRA_HEAD}spec:\n{spec}")
}

fn worker(spec: &str) -> String {
    format!("{WORKER_HEAD}spec:\n{spec}")
}

fn run(
    tree: &FileTree,
    file: ComponentFile,
    path: &[&str],
    value: Json,
) -> Result<FileEdit, Diagnostic> {
    let loaded = crate::load::load("s", tree).expect("loads");
    let id = ComponentId::new("svc", "w");
    let setting = Setting {
        component: &id,
        file,
        path,
        value: &value,
    };
    edit(&loaded, "production", &setting)
}

fn replicas(tree: &FileTree, value: Json) -> Result<FileEdit, Diagnostic> {
    run(tree, ComponentFile::Infra, &["scaling", "replicas"], value)
}

/// `tree` with the edit written, as `--write` would.
fn applied(tree: &FileTree, edit: &FileEdit) -> FileTree {
    let mut tree = tree.clone();
    let rel = edit.path.strip_prefix("stacks/s/").expect("in the stack");
    assert_eq!(
        tree.files[rel].as_ref(),
        edit.before,
        "before is the file's text"
    );
    tree.files
        .insert(rel.to_string(), Arc::from(edit.after.as_str()));
    tree
}

fn resolved_replicas(tree: &FileTree) -> Option<u32> {
    let loaded = crate::load::load("s", tree).expect("loads after the edit");
    let desired = resolve(&loaded, "production", &Options::default()).expect("resolves");
    desired.components[&ComponentId::new("svc", "w")]
        .infra
        .as_ref()
        .and_then(|i| i.scaling.as_ref())
        .and_then(|s| s.replicas)
}

fn line(d: &Diagnostic) -> (String, u32) {
    let span = d.span.as_ref().expect("a diagnostic names its place");
    (span.file.to_string(), span.line)
}

#[test]
fn a_plain_number_in_the_base_changes_and_nothing_else_does() {
    let before = infra(
        "  # Sized for the launch.\n  scaling:\n    # two tasks for now\n    replicas: 2   # bump before the sale\n\n  resources: {cpu: 256, memory: 512}\n",
    );
    let tree = stack_tree(&[(INFRA, &before)]);
    let edit = replicas(&tree, json!(5)).expect("edits");
    assert_eq!(&*edit.path, "stacks/s/services/svc/components/w/infra.yaml");
    assert_eq!(edit.before, before);
    assert_eq!(
        edit.after,
        infra("  # Sized for the launch.\n  scaling:\n    # two tasks for now\n    replicas: 5   # bump before the sale\n\n  resources: {cpu: 256, memory: 512}\n")
    );
}

#[test]
fn the_overlay_wins_when_it_sets_the_field() {
    let tree = stack_tree(&[
        (INFRA, &infra("  scaling:\n    replicas: 2\n")),
        (
            OVERLAY,
            &infra("  scaling:\n    replicas: 4 # production\n"),
        ),
    ]);
    let edit = replicas(&tree, json!(6)).expect("edits");
    assert_eq!(
        &*edit.path,
        "stacks/s/environments/production/services/svc/components/w/infra.yaml"
    );
    assert_eq!(
        edit.after,
        infra("  scaling:\n    replicas: 6 # production\n")
    );
}

#[test]
fn a_variable_reference_edits_the_variable() {
    let tree = stack_tree(&[
        (INFRA, &infra("  scaling:\n    replicas: ${REPLICAS}\n")),
        (VARIABLES, "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: production, stack: s}\nspec:\n  VERSION: v1\n  REPLICAS: 2  # peak\n"),
    ]);
    let edit = replicas(&tree, json!(3)).expect("edits");
    assert_eq!(
        &*edit.path,
        "stacks/s/environments/production/variables.yaml"
    );
    assert!(
        edit.after
            .ends_with("spec:\n  VERSION: v1\n  REPLICAS: 3  # peak\n"),
        "{}",
        edit.after
    );
}

#[test]
fn a_variable_other_settings_use_too_is_not_changed() {
    let tree = stack_tree(&[
        (INFRA, &infra("  scaling:\n    replicas: ${REPLICAS}\n")),
        (
            WORKER,
            &worker("  image:\n    repository: registry/app\n    tag: v${REPLICAS}\n"),
        ),
        (VARIABLES, "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: production, stack: s}\nspec:\n  REPLICAS: 2\n"),
    ]);
    let err = replicas(&tree, json!(3)).expect_err("refused");
    assert!(
        err.message.starts_with(
            "`scaling.replicas` is set by `${REPLICAS}`, which 1 other setting of production uses too"
        ),
        "{err}"
    );
    assert!(
        err.help.as_deref().is_some_and(|h| h.contains("by hand")),
        "{err:?}"
    );
}

#[test]
fn a_quoted_string_keeps_its_quotes() {
    for (written, expected) in [("\"v1\"", "\"v2\""), ("'v1'", "'v2'"), ("v1", "v2")] {
        let tree = stack_tree(&[(
            WORKER,
            &worker(&format!(
                "  image:\n    repository: registry/app\n    tag: {written}   # pinned\n"
            )),
        )]);
        let edit = run(&tree, ComponentFile::Spec, &["image", "tag"], json!("v2")).expect("edits");
        assert_eq!(
            edit.after,
            worker(&format!(
                "  image:\n    repository: registry/app\n    tag: {expected}   # pinned\n"
            ))
        );
    }
    // A value that is no longer safe plain gets quotes.
    let tree = stack_tree(&[(
        WORKER,
        &worker("  image:\n    repository: registry/app\n    tag: v1\n"),
    )]);
    let edit = run(&tree, ComponentFile::Spec, &["image", "tag"], json!("1.2")).expect("edits");
    assert!(edit.after.ends_with("    tag: \"1.2\"\n"), "{}", edit.after);
}

#[test]
fn a_missing_key_is_added_under_the_deepest_mapping_indented_like_its_children() {
    let tree = stack_tree(&[(
        INFRA,
        &infra("    scaling:\n        replicas: 2\n        # autoscaling comes later\n\n# end of the settings\n"),
    )]);
    let edit = run(
        &tree,
        ComponentFile::Infra,
        &["resources", "cpu"],
        json!(512),
    )
    .expect("edits");
    assert_eq!(
        edit.after,
        infra("    scaling:\n        replicas: 2\n    resources:\n        cpu: 512\n        # autoscaling comes later\n\n# end of the settings\n")
    );
    // One level down: under `scaling`, after its last child.
    let edit = run(
        &tree,
        ComponentFile::Infra,
        &["scaling", "autoscaling", "enabled"],
        json!(false),
    )
    .expect("edits");
    assert!(
        edit.after
            .contains("        replicas: 2\n        autoscaling:\n            enabled: false\n"),
        "{}",
        edit.after
    );
}

#[test]
fn a_setting_set_nowhere_goes_to_the_overlay_when_there_is_one() {
    let tree = stack_tree(&[
        (INFRA, &infra("  scaling:\n    replicas: 2\n")),
        (
            OVERLAY,
            &infra("  resources:\n    cpu: 512\n    memory: 1024\n"),
        ),
    ]);
    let edit = run(
        &tree,
        ComponentFile::Infra,
        &["resources", "memory"],
        json!(2048),
    )
    .expect("edits");
    assert!(
        edit.path.contains("environments/production"),
        "{}",
        edit.path
    );
    let edit = replicas(&tree, json!(3)).expect("edits");
    assert!(
        !edit.path.contains("environments"),
        "the base sets it: {}",
        edit.path
    );
    let tree = tree_with(&tree, OVERLAY, &infra("  resources:\n    cpu: 512\n"));
    let edit = run(
        &tree,
        ComponentFile::Infra,
        &["scaling", "autoscaling", "enabled"],
        json!(true),
    )
    .expect("edits");
    assert!(
        edit.path.contains("environments/production"),
        "{}",
        edit.path
    );
    assert_eq!(
        edit.after,
        infra("  resources:\n    cpu: 512\n  scaling:\n    autoscaling:\n      enabled: true\n")
    );
}

fn tree_with(tree: &FileTree, path: &str, text: &str) -> FileTree {
    let mut tree = tree.clone();
    tree.files.insert(path.to_string(), Arc::from(text));
    tree
}

#[test]
fn values_inside_flow_collections_are_replaced_in_place() {
    let tree = stack_tree(&[(
        INFRA,
        &infra("  resources: {cpu: 256, memory: 512} # small\n"),
    )]);
    let edit = run(
        &tree,
        ComponentFile::Infra,
        &["resources", "cpu"],
        json!(1024),
    )
    .expect("edits");
    assert_eq!(
        edit.after,
        infra("  resources: {cpu: 1024, memory: 512} # small\n")
    );
}

#[test]
fn adding_to_a_flow_mapping_is_refused() {
    let tree = stack_tree(&[(INFRA, &infra("  resources: {cpu: 256}\n"))]);
    let err = run(
        &tree,
        ComponentFile::Infra,
        &["resources", "memory"],
        json!(512),
    )
    .expect_err("refused");
    assert!(err.message.contains("flow style"), "{err}");
    assert_eq!(
        line(&err),
        (
            "stacks/s/services/svc/components/w/infra.yaml".to_string(),
            8
        )
    );
    assert!(
        err.help
            .as_deref()
            .is_some_and(|h| h.contains("`resources.memory` to `512`")),
        "{err}"
    );
}

#[test]
fn a_variable_the_environment_does_not_define_is_refused() {
    let tree = stack_tree(&[(INFRA, &infra("  scaling:\n    replicas: ${REPLICAS}\n"))]);
    let err = replicas(&tree, json!(3)).expect_err("refused");
    assert_eq!(
        err.message,
        "`scaling.replicas` is set by `${REPLICAS}`, which environment production does not define"
    );
    assert_eq!(
        line(&err),
        (
            "stacks/s/services/svc/components/w/infra.yaml".to_string(),
            9
        )
    );
    // Built-ins and values built from variables are refused too.
    let tree = tree_with(
        &tree,
        WORKER,
        &worker("  image:\n    repository: ${ENVIRONMENT}\n    tag: ${VERSION}-fix\n"),
    );
    let err = run(
        &tree,
        ComponentFile::Spec,
        &["image", "repository"],
        json!("x"),
    )
    .expect_err("refused");
    assert!(err.message.contains("a built-in variable"), "{err}");
    let err = run(&tree, ComponentFile::Spec, &["image", "tag"], json!("v2")).expect_err("refused");
    assert!(err.message.contains("built from variables"), "{err}");
}

#[test]
fn the_unified_diff_names_the_file_and_shows_the_change() {
    let tree = stack_tree(&[(INFRA, &infra("  scaling:\n    replicas: 2\n"))]);
    let edit = replicas(&tree, json!(5)).expect("edits");
    let diff = edit.unified_diff();
    assert!(diff.starts_with("--- a/stacks/s/services/svc/components/w/infra.yaml\n+++ b/stacks/s/services/svc/components/w/infra.yaml\n@@ "), "{diff}");
    assert!(
        diff.contains("\n-    replicas: 2\n+    replicas: 5\n"),
        "{diff}"
    );
    assert!(diff.contains("\n   scaling:\n"), "context lines: {diff}");
    let unchanged = FileEdit {
        after: edit.before.clone(),
        ..edit
    };
    assert_eq!(unchanged.unified_diff(), "");
}

#[test]
fn block_lists_and_empty_values_are_replaced() {
    let tree = stack_tree(&[(
        WORKER,
        &worker("  image: {repository: r, tag: t}\n  container:\n    command: # entry point\n      - run\n      # the old one\n      - --fast\n    workingDir:\n"),
    )]);
    let edit = run(
        &tree,
        ComponentFile::Spec,
        &["container", "command"],
        json!(["serve", "--port=80"]),
    )
    .expect("edits");
    assert_eq!(
        edit.after,
        worker("  image: {repository: r, tag: t}\n  container:\n    command: [serve, \"--port=80\"] # entry point\n    workingDir:\n")
    );
    let edit = run(
        &tree,
        ComponentFile::Spec,
        &["container", "workingDir"],
        json!("/srv"),
    )
    .expect("edits");
    assert!(
        edit.after.ends_with("    workingDir: /srv\n"),
        "{}",
        edit.after
    );
}

#[test]
fn layouts_that_cannot_be_edited_in_place_are_refused_with_their_line() {
    let cases = [
        // An anchor: the value is shared.
        (
            INFRA,
            infra("  scaling:\n    replicas: &n 2\n"),
            "anchor",
            9,
        ),
        // The overlay removes `scaling` for this environment.
        (
            OVERLAY,
            infra("  scaling: null\n"),
            "`scaling` is null here",
            8,
        ),
    ];
    for (path, text, message, at) in cases {
        let tree = stack_tree(&[
            (INFRA, &infra("  scaling:\n    replicas: 2\n")),
            (path, &text),
        ]);
        let err = replicas(&tree, json!(3)).expect_err("refused");
        assert!(err.message.contains(message), "{err}");
        assert_eq!(line(&err).1, at, "{err}");
        assert!(err.help.is_some(), "{err}");
    }
    // An anchored mapping: its values are shared with every alias.
    let tree = stack_tree(&[(INFRA, &infra("  resources: &r {cpu: 256, memory: 512}\n"))]);
    let err = run(
        &tree,
        ComponentFile::Infra,
        &["resources", "cpu"],
        json!(512),
    )
    .expect_err("refused");
    assert!(err.message.contains("anchor"), "{err}");
    // A merge key copies entries from elsewhere: editing their source would change both.
    let tree = stack_tree(&[(
        INFRA,
        &infra("  resources: {cpu: 256, memory: 512}\n  scaling:\n    <<: {replicas: 2}\n"),
    )]);
    let err = replicas(&tree, json!(3)).expect_err("refused");
    assert!(err.message.contains("safely"), "{err}");
}

#[test]
fn an_unknown_component_environment_or_infra_file_is_refused() {
    let tree = stack_tree(&[]);
    let loaded = crate::load::load("s", &tree).expect("loads");
    let value = json!(3);
    let id = ComponentId::new("svc", "x");
    let setting = Setting {
        component: &id,
        file: ComponentFile::Spec,
        path: &["image", "tag"],
        value: &value,
    };
    let err = edit(&loaded, "production", &setting).expect_err("no such component");
    assert_eq!(err.message, "stack `s` has no component `svc/x`");
    let id = ComponentId::new("svc", "w");
    let setting = Setting {
        component: &id,
        ..setting
    };
    let err = edit(&loaded, "prod", &setting).expect_err("no such environment");
    assert_eq!(err.help.as_deref(), Some("did you mean `production`?"));
    let err = replicas(&tree, json!(3)).expect_err("no infra.yaml");
    assert_eq!(err.message, "component `svc/w` has no infra.yaml");
    assert!(
        err.help
            .as_deref()
            .is_some_and(|h| h.contains("stacks/s/services/svc/components/w/infra.yaml")),
        "{err}"
    );
}

#[test]
fn after_the_edit_the_stack_resolves_to_the_new_value() {
    let cases: [(&str, Vec<(&str, String)>); 5] = [
        ("base", vec![(INFRA, infra("  scaling:\n    replicas: 2\n"))]),
        (
            "overlay",
            vec![
                (INFRA, infra("  scaling:\n    replicas: 2\n")),
                (OVERLAY, infra("  scaling:\n    replicas: 4\n")),
            ],
        ),
        (
            "variable",
            vec![
                (INFRA, infra("  scaling:\n    replicas: ${REPLICAS}\n")),
                (VARIABLES, "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: production, stack: s}\nspec:\n  VERSION: v1\n  REPLICAS: \"2\"\n".to_string()),
            ],
        ),
        ("added to the base", vec![(INFRA, infra("  resources:\n    cpu: 256\n"))]),
        (
            "added to the overlay",
            vec![
                (INFRA, infra("  resources:\n    cpu: 256\n")),
                (OVERLAY, infra("  resources:\n    memory: 512\n")),
            ],
        ),
    ];
    for (case, files) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let tree = stack_tree(&files);
        let edit = replicas(&tree, json!(7)).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_ne!(edit.before, edit.after, "{case}");
        assert_eq!(resolved_replicas(&applied(&tree, &edit)), Some(7), "{case}");
    }
    // A string with a `${` in it survives substitution.
    let tree = stack_tree(&[]);
    let edit = run(
        &tree,
        ComponentFile::Spec,
        &["image", "repository"],
        json!("r/${x}"),
    )
    .expect("edits");
    let loaded = crate::load::load("s", &applied(&tree, &edit)).expect("loads");
    let desired = resolve(&loaded, "production", &Options::default()).expect("resolves");
    let spec = serde_json::to_value(&desired.components[&ComponentId::new("svc", "w")].spec)
        .expect("serializes");
    assert_eq!(spec["spec"]["image"]["repository"], "r/${x}");
}

#[test]
fn unusual_but_valid_layouts_are_edited_in_place() {
    let infra_file = |spec: &str| format!("{INFRA_HEAD}{spec}");
    let cases = [
        // `spec:` with nothing under it.
        ("spec:\n", &["scaling", "replicas"][..], "spec:\n  scaling:\n    replicas: 3\n"),
        // No line break at the end of the file.
        (
            "spec:\n  scaling:\n    replicas: 2",
            &["resources", "cpu"],
            "spec:\n  scaling:\n    replicas: 2\n  resources:\n    cpu: 3\n",
        ),
        // Windows line endings are kept, and used for added lines.
        (
            "spec:\r\n  scaling:\r\n    replicas: 2 # x\r\n",
            &["scaling", "autoscaling", "enabled"],
            "spec:\r\n  scaling:\r\n    replicas: 2 # x\r\n    autoscaling:\r\n      enabled: 3\r\n",
        ),
        // Quoted keys, and a value on the line below its key.
        (
            "spec:\n  \"scaling\":\n    'replicas':\n      2\n",
            &["scaling", "replicas"],
            "spec:\n  \"scaling\":\n    'replicas':\n      3\n",
        ),
    ];
    for (before, path, after) in cases {
        let tree = stack_tree(&[(INFRA, &infra_file(before))]);
        let edit = run(&tree, ComponentFile::Infra, path, json!(3))
            .unwrap_or_else(|e| panic!("{before:?}: {e}"));
        assert_eq!(edit.after, infra_file(after), "{before:?}");
    }
    // A block scalar and a plain scalar over two lines are replaced whole; the comment after
    // them stays, and so does a `#` line that is the block scalar's content.
    let tree = stack_tree(&[(
        WORKER,
        &worker("  image:\n    repository: a long\n      name # c\n    tag: |\n      v1\n      # content\n  # a comment\n"),
    )]);
    let edit = run(
        &tree,
        ComponentFile::Spec,
        &["image", "repository"],
        json!("r"),
    )
    .expect("edits");
    assert!(
        edit.after.contains("    repository: r # c\n    tag: |\n"),
        "{}",
        edit.after
    );
    let edit = run(&tree, ComponentFile::Spec, &["image", "tag"], json!("v2")).expect("edits");
    assert!(
        edit.after.ends_with("    tag: v2\n  # a comment\n"),
        "{}",
        edit.after
    );
}

mod fields {
    use panka_crds::Kind;
    use serde_json::json;

    use crate::acknowledge::{target, ComponentFile};

    #[test]
    fn drifted_fields_map_to_the_settings_that_make_them() {
        let t = target(Kind::MicroService, "desiredCount", &json!(3)).expect("mapped");
        assert_eq!(
            (t.file, t.path, t.value),
            (ComponentFile::Infra, vec!["scaling", "replicas"], json!(3))
        );
        let t = target(
            Kind::Worker,
            "image",
            &json!("registry:5000/team/api:v1.2-hotfix"),
        )
        .expect("mapped");
        assert_eq!(
            (t.file, t.path, t.value),
            (
                ComponentFile::Spec,
                vec!["image", "tag"],
                json!("v1.2-hotfix")
            )
        );
        assert_eq!(
            target(Kind::Worker, "image", &json!("api@sha256:abc")),
            None
        );
        assert_eq!(
            target(Kind::Worker, "image", &json!("registry:5000/api")),
            None
        );
        let t = target(Kind::Rds, "backup.retentionDays", &json!(14)).expect("mapped");
        assert_eq!(t.path, ["backup", "retentionDays"]);
        assert_eq!(target(Kind::Sqs, "tags", &json!({})), None);
    }
}
