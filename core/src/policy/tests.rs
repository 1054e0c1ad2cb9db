//! The policy stage on small stacks: one case per way a policy can pass, deny, warn or break,
//! and the example repository's own policies on the example stacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::resolve::Options;
use crate::source::FileTree;
use crate::validate::{checked_input, validate_tree};

const BUCKET_FILE: &str = "stacks/s/services/svc/components/files/s3.yaml";

/// A stack `s` with environments `dev` and `production`, one service `svc` holding a Worker `w`
/// and an S3 bucket `files` (its `name:` on line 4), extra files (stack-relative) layered on
/// top, and the policy files given (repository-relative).
fn stack(extra: &[(&str, &str)], policies: &[(&str, &str)]) -> LoadedStack {
    let mut tree = FileTree::new("stacks/s");
    let mut put = |path: &str, text: &str| {
        tree.files.insert(path.to_string(), Arc::from(text));
    };
    put("stack.yaml", "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata: {name: s}\nspec: {provider: {name: aws, region: us-east-1}}\n");
    for env in ["dev", "production"] {
        put(
            &format!("environments/{env}/variables.yaml"),
            &format!("apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {{name: {env}, stack: s}}\nspec: {{ACCESS: blocked}}\n"),
        );
    }
    put(
        "services/svc/service.yaml",
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {name: svc, stack: s}\n",
    );
    put("services/svc/components/w/worker.yaml", "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata: {name: w, service: svc, stack: s}\nspec: {image: {repository: r, tag: t}}\n");
    put(
        "services/svc/components/files/s3.yaml",
        "apiVersion: components.panka.io/v1\nkind: S3\nmetadata:\n  name: files\n  service: svc\n  stack: s\nspec:\n  publicAccess: ${ACCESS}\n",
    );
    for (path, text) in extra {
        put(path, text);
    }
    for (path, text) in policies {
        tree.policies.insert(path.to_string(), Arc::from(*text));
    }
    crate::load::load("s", &tree).expect("loads")
}

/// What the policies say of `loaded` in `environment`.
fn verdict(loaded: &LoadedStack, environment: &str) -> Verdict {
    let (desired, _) =
        crate::validate::plan_input(loaded, environment, &Options::default()).expect("resolves");
    Policies::compile(&loaded.policies).check(loaded, &desired)
}

/// Denies a public bucket.
const NO_PUBLIC_BUCKETS: &str = r#"package panka

deny contains msg if {
	input.kind == "S3"
	input.spec.publicAccess == "allowed"
	msg := sprintf("bucket %s must block public access", [input.component])
}
"#;

#[test]
fn a_repository_without_policies_judges_nothing_and_passes() {
    let loaded = stack(&[], &[]);
    let v = verdict(&loaded, "dev");
    assert_eq!(v, Verdict::default());
    let checked = checked_input(&loaded, "dev", &Options::default()).expect("passes");
    assert_eq!(checked.policies, 0);
    assert!(checked.warnings.is_empty());
}

#[test]
fn a_policy_that_finds_nothing_passes_and_is_counted() {
    let loaded = stack(&[], &[("policies/s3.rego", NO_PUBLIC_BUCKETS)]);
    let v = verdict(&loaded, "dev");
    assert_eq!(v.policies, 1);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

#[test]
fn a_deny_names_the_component_file_and_line_the_policy_and_its_message() {
    let loaded = stack(
        &[(
            "environments/production/variables.yaml",
            "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: production, stack: s}\nspec: {ACCESS: allowed}\n",
        )],
        &[("policies/s3.rego", NO_PUBLIC_BUCKETS)],
    );
    // The variable makes the bucket public in production only: the policy sees the resolved spec.
    assert!(verdict(&loaded, "dev").problems.is_empty());
    let err = checked_input(&loaded, "production", &Options::default()).expect_err("denied");
    assert_eq!(err.len(), 1, "{err}");
    let d = err.first();
    assert_eq!(
        d.message,
        "policies/s3.rego denies svc/files in production: bucket files must block public access"
    );
    let span = d.span.as_ref().expect("a position");
    assert_eq!((&*span.file, span.line), (BUCKET_FILE, 4), "{d}");
    assert_eq!(
        d.help.as_deref(),
        Some(
            "change svc/files (or its overlay in stacks/s/environments/production/), or the policy"
        )
    );
}

#[test]
fn an_environment_overlay_is_merged_before_the_policies_see_the_spec() {
    let loaded = stack(
        &[(
            "environments/production/services/svc/components/files/s3.yaml",
            "apiVersion: components.panka.io/v1\nkind: S3\nmetadata: {name: files, service: svc, stack: s}\nspec: {publicAccess: allowed}\n",
        )],
        &[("policies/s3.rego", NO_PUBLIC_BUCKETS)],
    );
    assert!(verdict(&loaded, "dev").problems.is_empty());
    let v = verdict(&loaded, "production");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    // Still the component's own file: the overlay is not where the component is named.
    assert_eq!(&*v.problems[0].span.as_ref().unwrap().file, BUCKET_FILE);
}

#[test]
fn a_warn_is_reported_at_the_component_and_lets_the_environment_through() {
    let policy = r#"package panka

warn contains msg if {
	input.kind == "Worker"
	not input.infra.scaling.replicas
	msg := "no replica count: one task runs"
}
"#;
    let loaded = stack(&[], &[("policies/workers.rego", policy)]);
    let checked = checked_input(&loaded, "dev", &Options::default()).expect("passes");
    assert_eq!(checked.policies, 1);
    assert_eq!(checked.warnings.len(), 1, "{:?}", checked.warnings);
    let w = &checked.warnings[0];
    assert_eq!(
        w.message,
        "policies/workers.rego warns about svc/w in dev: no replica count: one task runs"
    );
    assert_eq!(
        w.span.as_ref().unwrap().to_string(),
        "stacks/s/services/svc/components/w/worker.yaml:3:18"
    );
}

#[test]
fn the_input_document_has_the_component_its_place_and_its_resolved_spec() {
    // A deny that prints its whole input shows exactly what policies see.
    let policy = "package panka\n\ndeny contains json.marshal(input) if input.component == \"w\"\n";
    let loaded = stack(
        &[(
            "services/svc/components/w/infra.yaml",
            "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: w, service: svc, stack: s}\nspec: {scaling: {replicas: 2}}\n",
        )],
        &[("policies/echo.rego", policy)],
    );
    let v = verdict(&loaded, "production");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    let (_, json) = v.problems[0]
        .message
        .split_once(": ")
        .expect("policy: message");
    let input: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(
        input,
        json!({
            "kind": "Worker",
            "stack": "s",
            "service": "svc",
            "component": "w",
            "environment": "production",
            "spec": {"image": {"repository": "r", "tag": "t"}},
            "infra": {"scaling": {"replicas": 2}},
        })
    );
}

#[test]
fn components_of_other_kinds_get_no_infra_and_ecs_ones_without_any_get_an_empty_one() {
    let policy = r#"package panka

deny contains sprintf("%s has infra %v", [input.component, input.infra]) if input.infra
deny contains sprintf("%s has no infra", [input.component]) if not input.infra
"#;
    let loaded = stack(&[], &[("policies/infra.rego", policy)]);
    let mut messages: Vec<String> = verdict(&loaded, "dev")
        .problems
        .into_iter()
        .map(|d| d.message)
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "policies/infra.rego denies svc/files in dev: files has no infra",
            "policies/infra.rego denies svc/w in dev: w has infra {}",
        ]
    );
}

#[test]
fn stack_wide_resources_are_not_judged() {
    let policy = "package panka\n\ndeny contains input.component\n";
    let loaded = stack(&[], &[("policies/all.rego", policy)]);
    let (desired, _) =
        crate::validate::plan_input(&loaded, "dev", &Options::default()).expect("resolves");
    assert!(
        desired
            .components
            .keys()
            .any(|id| id.service == crate::stack::SERVICE),
        "the fixture has stack-wide resources"
    );
    let v = verdict(&loaded, "dev");
    let denied: Vec<&str> = v
        .problems
        .iter()
        .map(|d| d.message.rsplit(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(denied, ["files", "w"]);
}

#[test]
fn each_policy_file_names_itself_and_helpers_of_other_packages_are_shared() {
    let helpers = r#"package panka.lib

production if input.environment == "production"
"#;
    let buckets = r#"package panka

import data.panka.lib

deny contains "buckets need versioning in production" if {
	lib.production
	input.kind == "S3"
	not input.spec.versioning
}
"#;
    let workers = r#"package panka

import data.panka.lib

warn contains "workers should say their replica count in production" if {
	lib.production
	input.kind == "Worker"
	not input.infra.scaling.replicas
}
"#;
    let loaded = stack(
        &[],
        &[
            ("policies/lib/helpers.rego", helpers),
            ("policies/buckets.rego", buckets),
            ("policies/workers.rego", workers),
        ],
    );
    let v = verdict(&loaded, "dev");
    assert_eq!(v.policies, 2, "helpers are not policies");
    assert!(v.problems.is_empty() && v.warnings.is_empty(), "{v:?}");
    let v = verdict(&loaded, "production");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(v.problems[0]
        .message
        .starts_with("policies/buckets.rego denies svc/files in production: "));
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    assert!(v.warnings[0]
        .message
        .starts_with("policies/workers.rego warns about svc/w in production: "));
}

#[test]
fn a_policy_that_does_not_parse_is_a_problem_at_its_line_and_nothing_is_judged() {
    // Rego v0 syntax: `deny[msg] { … }` without `contains` and `if`.
    let broken = "package panka\n\ndeny[msg] {\n\tinput.kind == \"S3\"\n\tmsg := \"x\"\n}\n";
    let loaded = stack(
        &[],
        &[
            ("policies/old.rego", broken),
            ("policies/s3.rego", NO_PUBLIC_BUCKETS),
        ],
    );
    let v = verdict(&loaded, "dev");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    let d = &v.problems[0];
    let span = d.span.as_ref().expect("a position");
    assert_eq!(&*span.file, "policies/old.rego", "{d}");
    assert!(span.line >= 3, "{d}");
    assert!(d.message.starts_with("policy does not parse: "), "{d}");
    assert!(d.help.as_deref().unwrap_or("").contains("Rego v1"), "{d}");
    let err = checked_input(&loaded, "dev", &Options::default()).expect_err("refused");
    assert_eq!(err.first(), d);
}

#[test]
fn a_deny_rule_that_is_not_a_set_of_strings_is_a_problem_of_the_policy() {
    for (policy, what) in [
        ("package panka\n\ndeny := true\n", "true"),
        ("package panka\n\ndeny contains 42 if true\n", "42"),
    ] {
        let loaded = stack(&[], &[("policies/odd.rego", policy)]);
        let v = verdict(&loaded, "dev");
        assert_eq!(v.problems.len(), 1, "{policy}: {:?}", v.problems);
        let d = &v.problems[0];
        assert_eq!(d.span.as_ref().unwrap().to_string(), "policies/odd.rego");
        assert!(
            d.message
                .starts_with("rule `deny` must be a set of message strings"),
            "{d}"
        );
        assert!(d.message.contains(what), "{d}");
    }
}

#[test]
fn a_policy_failing_while_judging_is_reported_once_with_its_line() {
    // Two values for one complete rule: an error at evaluation, whatever the component.
    let policy =
        "package panka\n\nlevel := \"a\"\nlevel := \"b\"\n\ndeny contains level if input.kind\n";
    let loaded = stack(&[], &[("policies/conflict.rego", policy)]);
    let v = verdict(&loaded, "dev");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    let d = &v.problems[0];
    assert_eq!(
        &*d.span.as_ref().unwrap().file,
        "policies/conflict.rego",
        "{d}"
    );
    assert!(d.message.starts_with("policy failed: "), "{d}");
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .starts_with("it failed judging svc/"),
        "{d}"
    );
}

#[test]
fn a_builtin_that_is_not_built_in_is_reported_at_the_call() {
    // regex, time, http.send … are left out of the engine: no I/O, few dependencies.
    for (builtin, call) in [
        ("regex.match", "regex.match(\"^a\", input.component)"),
        (
            "http.send",
            "http.send({\"method\": \"get\", \"url\": \"http://x\"})",
        ),
    ] {
        let policy = format!("package panka\n\ndeny contains \"x\" if {call}\n");
        let loaded = stack(&[], &[("policies/calls.rego", &policy)]);
        let v = verdict(&loaded, "dev");
        assert_eq!(v.problems.len(), 1, "{builtin}: {:?}", v.problems);
        let d = &v.problems[0];
        let span = d.span.as_ref().expect("a position");
        assert_eq!(
            (&*span.file, span.line),
            ("policies/calls.rego", 3),
            "{builtin}: {d}"
        );
        assert_eq!(
            d.message,
            format!("policy failed: could not find function {builtin}")
        );
    }
}

#[test]
fn import_rego_v1_is_accepted_and_changes_nothing() {
    let policy = "package panka\n\nimport rego.v1\n\nwarn contains input.component if input.kind == \"S3\"\n";
    let loaded = stack(&[], &[("policies/v1.rego", policy)]);
    let v = verdict(&loaded, "dev");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.warnings.len(), 1);
}

#[test]
fn print_in_a_policy_writes_nothing() {
    // Gathered and dropped: the pure core never writes to stderr (checked by not panicking on
    // a closed stderr is out of reach here; this pins that print does not fail the policy).
    let policy =
        "package panka\n\nwarn contains \"seen\" if {\n\tprint(\"debug\", input.component)\n}\n";
    let loaded = stack(&[], &[("policies/print.rego", policy)]);
    let v = verdict(&loaded, "dev");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.warnings.len(), 2);
}

/// The example repository's policies, as the directory source would read them.
fn example_policies() -> BTreeMap<String, Arc<str>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/deployment-repo/policies");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("the example has policies") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8")
            .to_owned();
        if crate::source::is_policy_file(&name) {
            let text = std::fs::read_to_string(&path).expect("reads");
            files.insert(format!("policies/{name}"), Arc::from(text));
        }
    }
    files
}

#[test]
fn the_example_policies_pass_every_example_stack_in_every_environment() {
    let policies = example_policies();
    assert!(policies.len() >= 3, "{policies:?}");
    for name in ["notification-platform", "user-platform"] {
        let mut tree = crate::source::read_example(name);
        tree.policies = policies.clone();
        let v = validate_tree(name, Ok(tree), None, &Options::default());
        assert!(v.is_ok(), "{name}: {:#?}", v.problems());
        assert_eq!(v.environments.len(), 3, "{name}");
        for e in &v.environments {
            let verdict = e.policy.as_ref().expect("judged");
            assert_eq!(verdict.policies, policies.len(), "{name}/{}", e.name);
        }
    }
}

#[test]
fn the_example_policies_deny_what_they_promise_in_production() {
    let loaded = stack(
        &[
            (
                "services/svc/components/db/rds.yaml",
                "apiVersion: components.panka.io/v1\nkind: RDS\nmetadata: {name: db, service: svc, stack: s}\nspec:\n  engine: {type: postgres, version: \"15.4\"}\n  instance: {class: db.t3.small, storage: {allocatedGB: 20}}\n  database: {name: app, username: admin, passwordSecret: {ref: /s/db}}\n",
            ),
            (
                "environments/production/variables.yaml",
                "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: production, stack: s}\nspec: {ACCESS: allowed}\n",
            ),
        ],
        &[],
    );
    let mut loaded = loaded;
    loaded.policies = example_policies();
    let mut denied: Vec<String> = verdict(&loaded, "production")
        .problems
        .into_iter()
        .map(|d| d.message)
        .collect();
    denied.sort();
    assert_eq!(denied.len(), 4, "{denied:#?}");
    let has = |component: &str, words: &str| {
        denied.iter().any(|m| {
            m.contains(&format!(" denies {component} in production: ")) && m.contains(words)
        })
    };
    assert!(has("svc/db", "Multi-AZ"), "{denied:#?}");
    assert!(has("svc/db", "deletion protection"), "{denied:#?}");
    assert!(has("svc/files", "public access"), "{denied:#?}");
    assert!(has("svc/w", "at least 2"), "{denied:#?}");
    // In dev (its bucket blocked, no production rule applying) nothing is refused.
    let dev: Vec<String> = verdict(&loaded, "dev")
        .problems
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert!(dev.is_empty(), "{dev:#?}");
}
