use std::collections::BTreeMap;

use super::*;

fn release(
    id: &str,
    kind: ReleaseKind,
    scope: &str,
    version: &str,
    outcome: ReleaseOutcome,
) -> Release {
    Release {
        id: id.into(),
        kind,
        stack: "s".into(),
        environment: "e".into(),
        scope: scope.into(),
        version: Some(version.into()),
        commit: None,
        actor: "a@b".into(),
        overrides: BTreeMap::new(),
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: None,
        outcome,
        actions: BTreeMap::new(),
        desired: serde_json::Value::Null,
        target: None,
        supersedes: Vec::new(),
        reason: None,
    }
}

use ReleaseKind::{Apply, Rollback};
use ReleaseOutcome::{Failed, Succeeded};

#[test]
fn previous_is_the_last_good_release_before_the_current_one() {
    // Newest first.
    let history = [
        release("r3", Apply, "stack", "1.2", Succeeded),
        release("r2", Apply, "service:api", "1.1", Succeeded),
        release("r1", Apply, "stack", "1.0", Succeeded),
    ];
    let stack = choose(&history, None, &RollbackTo::Previous).unwrap();
    assert_eq!(
        stack.id, "r1",
        "a service's release does not hold the whole stack"
    );
    let api = choose(&history, Some("api"), &RollbackTo::Previous).unwrap();
    assert_eq!(api.id, "r2");
    assert_eq!(newer_than(&history, &stack, None), ["r3", "r2"]);
    // A service's rollback undoes that service's releases only.
    assert_eq!(
        newer_than(
            &history,
            &release("r0", Apply, "stack", "0.9", Succeeded),
            Some("api")
        ),
        ["r2"]
    );
}

#[test]
fn after_a_failed_release_previous_is_the_last_good_one() {
    let history = [
        release("r2", Apply, "stack", "1.1", Failed),
        release("r1", Apply, "stack", "1.0", Succeeded),
    ];
    assert_eq!(
        choose(&history, None, &RollbackTo::Previous).unwrap().id,
        "r1"
    );
}

#[test]
fn a_release_undone_by_a_rollback_is_not_rolled_back_to_again() {
    let mut back = release("r4", Rollback, "stack", "1.0", Succeeded);
    back.supersedes = vec!["r3".into(), "r2".into()];
    let history = [
        back,
        release("r3", Apply, "stack", "1.2", Succeeded),
        release("r2", Apply, "stack", "1.1", Succeeded),
        release("r1", Apply, "stack", "1.0", Succeeded),
        release("r0", Apply, "stack", "0.9", Succeeded),
    ];
    // Current: r4 (= 1.0); the one before it that still counts is r1 … which is 1.0 too, as
    // r4 re-applied it: the next rollback goes to r1's predecessor only when asked by version.
    assert_eq!(
        choose(&history, None, &RollbackTo::Previous).unwrap().id,
        "r1"
    );
    assert_eq!(
        choose(&history, None, &RollbackTo::Version("v0.9".into()))
            .unwrap()
            .id,
        "r0"
    );
}

#[test]
fn versions_and_ids_are_found_or_refused_with_a_reason() {
    let history = [
        release("r2", Apply, "stack", "1.1", Succeeded),
        release("r1", Apply, "stack", "1.0", Failed),
    ];
    let err = choose(&history, None, &RollbackTo::Version("1.0".into())).unwrap_err();
    assert!(
        err.contains("no successful release of version 1.0"),
        "{err}"
    );
    let err = choose(&history, None, &RollbackTo::Release("nope".into())).unwrap_err();
    assert!(err.contains("no release `nope`"), "{err}");
    let err = choose(&history, None, &RollbackTo::Release("r1".into())).unwrap_err();
    assert!(
        err.contains("(apply, failed) is not one to go back to"),
        "{err}"
    );
    assert_eq!(
        choose(&history, None, &RollbackTo::Release("r2".into()))
            .unwrap()
            .id,
        "r2"
    );
    let err = choose(&[], None, &RollbackTo::Previous).unwrap_err();
    assert!(err.contains("no successful release of stack"), "{err}");
}

fn stack(components: &[(&str, &str)], version: &str) -> DesiredStack {
    let example =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment-repo");
    let loaded = crate::validate::load_stack(&example, "notification-platform").expect("loads");
    let (mut desired, _) = crate::validate::plan_input(
        &loaded,
        "development",
        &panka_core::resolve::Options::default(),
    )
    .expect("resolves");
    let template = desired
        .components
        .get(&ComponentId::new("email-service", "queue"))
        .expect("a queue")
        .clone();
    desired.components.clear();
    for (id, description) in components {
        let id = ComponentId::try_from(id.to_string()).unwrap();
        let mut c = template.clone();
        c.id = id.clone();
        c.description = Some(description.to_string());
        desired.components.insert(id, c);
    }
    desired.variables.insert("VERSION".into(), version.into());
    desired
}

fn described(d: &DesiredStack) -> Vec<String> {
    d.components
        .values()
        .map(|c| format!("{}={}", c.id, c.description.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn a_stack_rollback_takes_every_spec_of_then_and_keeps_newer_components_unless_pruned() {
    let then = stack(&[("a/x", "old"), ("b/y", "old")], "1.0");
    let now = stack(&[("a/x", "new"), ("b/y", "new"), ("c/z", "new")], "2.0");
    let kept = rollback_desired(&now, &then, None, false);
    assert_eq!(described(&kept), ["a/x=old", "b/y=old", "c/z=new"]);
    assert_eq!(kept.version(), Some("1.0"));
    let pruned = rollback_desired(&now, &then, None, true);
    assert_eq!(described(&pruned), ["a/x=old", "b/y=old"]);
}

#[test]
fn a_service_rollback_touches_only_that_service() {
    let then = stack(&[("a/x", "old"), ("b/y", "old")], "1.0");
    let now = stack(&[("a/x", "new"), ("a/w", "new"), ("b/y", "new")], "2.0");
    let back = rollback_desired(&now, &then, Some("a"), false);
    assert_eq!(described(&back), ["a/w=new", "a/x=old", "b/y=new"]);
    assert_eq!(back.version(), Some("1.0"));
    let pruned = rollback_desired(&now, &then, Some("a"), true);
    assert_eq!(described(&pruned), ["a/x=old", "b/y=new"]);
}

#[test]
fn a_remediation_after_the_current_release_does_not_make_it_the_target() {
    let history = [
        release("r3", ReleaseKind::Remediation, "stack", "1.1", Succeeded),
        release("r2", Apply, "stack", "1.1", Succeeded),
        release("r1", Apply, "stack", "1.0", Succeeded),
    ];
    assert_eq!(
        choose(&history, None, &RollbackTo::Previous).unwrap().id,
        "r1"
    );
    // Nor does a destroy or a remediation count as a target.
    let err = choose(&history, None, &RollbackTo::Release("r3".into())).unwrap_err();
    assert!(
        err.contains("a rollback goes back to an apply or rollback that succeeded"),
        "{err}"
    );
}
