use std::collections::BTreeMap;

use panka_crds::spec::{DriftIgnore, DriftPolicy};

use super::*;
use crate::graph::Graph;
use crate::keys::StateKey;
use crate::model::DesiredStack;
use crate::plan::{plan, DesiredFields, Observation, Observed, PlanOptions};
use crate::resolve::Options;
use crate::state::{ComponentState, StateDocument};
use crate::validate::{load_tree, plan_input};

fn example() -> (DesiredStack, Graph) {
    let tree = crate::source::read_example("notification-platform");
    let loaded = load_tree("notification-platform", &tree).expect("example loads");
    plan_input(&loaded, "development", &Options::default()).expect("example resolves")
}

fn id(s: &str) -> ComponentId {
    ComponentId::try_from(s.to_string()).expect("valid id")
}

/// Every component with the same fields: a count, an image and tags.
fn fields(desired: &DesiredStack) -> BTreeMap<ComponentId, DesiredFields> {
    desired
        .components
        .keys()
        .map(|id| {
            let mut f = DesiredFields::default();
            f.set("desiredCount", FieldValue::known(5));
            f.set("image", FieldValue::known("api:1.0"));
            f.set("tags", FieldValue::known(BTreeMap::from([("team", "a")])));
            (id.clone(), f)
        })
        .collect()
}

/// State recording every component as applied with its current spec (so plans see drift).
fn applied(desired: &DesiredStack) -> StateDocument {
    let mut doc =
        StateDocument::initial(&StateKey::new(&desired.name, &desired.environment).unwrap());
    for (id, c) in &desired.components {
        doc.components.insert(
            id.to_string(),
            ComponentState {
                kind: c.kind().name().into(),
                spec_hash: c.hash(),
                applied_spec: serde_json::to_value(c).unwrap(),
                ..ComponentState::default()
            },
        );
    }
    doc
}

/// Observations equal to `fields`, then `change` applied to them.
fn observed(
    fields: &BTreeMap<ComponentId, DesiredFields>,
    change: impl Fn(&ComponentId, &mut Observation),
) -> Observed {
    Observed::new(
        fields
            .iter()
            .map(|(id, f)| {
                let mut o = Observation {
                    exists: true,
                    owned: true,
                    fields: f.fields.clone(),
                    ..Observation::default()
                };
                change(id, &mut o);
                (id.clone(), o)
            })
            .collect(),
    )
}

#[test]
fn the_severity_table_follows_the_issue() {
    for (field, want) in [
        (EXISTS, Severity::Critical),
        ("publicAccessBlock", Severity::Critical),
        ("encryption", Severity::Critical),
        ("deletionProtection", Severity::Critical),
        ("network.securityGroups", Severity::Critical),
        ("image", Severity::High),
        ("environment.LOG_LEVEL", Severity::High),
        ("secrets", Severity::High),
        ("trust", Severity::High),
        ("secretsPolicy", Severity::High),
        ("desiredCount", Severity::Medium),
        ("cpu", Severity::Medium),
        ("queue.visibilityTimeout", Severity::Medium),
        ("backup.retentionDays", Severity::Medium),
        ("versioning", Severity::Medium),
        ("pointInTimeRecovery", Severity::Medium),
        ("tags", Severity::Low),
        ("loadBalancer.targetGroup.tags", Severity::Low),
    ] {
        assert_eq!(severity(field), want, "{field}");
    }
}

#[test]
fn the_severity_table_is_the_documented_one() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/drift.md"))
        .expect("docs/drift.md exists");
    for (pattern, severity) in SEVERITY_RULES {
        let row = format!("| `{pattern}` | {severity} |");
        assert!(doc.contains(&row), "docs/drift.md lacks the row {row}");
    }
}

#[test]
fn no_difference_no_finding() {
    let (desired, graph) = example();
    let f = fields(&desired);
    let state = applied(&desired);
    let p = plan(
        &desired,
        &graph,
        &f,
        &observed(&f, |_, _| {}),
        Some(&state),
        &PlanOptions::default(),
    );
    let (drifted, ignored) = findings(&p, &[], "t0");
    assert!(drifted.is_empty(), "{drifted:?}");
    assert!(ignored.is_empty());
}

#[test]
fn each_difference_is_a_finding_with_severity_and_cause_most_severe_first() {
    let (desired, graph) = example();
    let f = fields(&desired);
    let state = applied(&desired);
    let api = id("email-service/api");
    let queue = id("email-service/queue");
    let seen = observed(&f, |id, o| {
        if *id == api {
            o.fields.insert("desiredCount".into(), FieldValue::known(3));
        }
        if *id == queue {
            o.exists = false;
        }
    });
    let p = plan(
        &desired,
        &graph,
        &f,
        &seen,
        Some(&state),
        &PlanOptions::default(),
    );
    let (drifted, _) = findings(&p, &[], "2026-12-06T00:00:00Z");
    let ids: Vec<String> = drifted.iter().map(|c| c.component.to_string()).collect();
    assert_eq!(ids, ["email-service/queue", "email-service/api"]);
    assert_eq!(drifted[0].severity, Severity::Critical);
    assert_eq!(drifted[0].findings[0].field, EXISTS);
    assert_eq!(
        drifted[0].findings[0].likely_cause,
        "the queue was deleted outside panka"
    );
    let count = &drifted[1].findings[0];
    assert_eq!(count.field, "desiredCount");
    assert_eq!(count.severity, Severity::Medium);
    assert_eq!(count.desired, Some(FieldValue::known(5)));
    assert_eq!(count.actual, Some(FieldValue::known(3)));
    assert_eq!(
        count.likely_cause,
        "someone scaled the service down by hand"
    );
    assert_eq!(count.detected_at, "2026-12-06T00:00:00Z");

    // Seen again, the same difference keeps the time it was first detected; a new one does not.
    let (again, _) = findings(&p, &drifted[1].findings, "later");
    assert_eq!(again[1].findings[0].detected_at, "2026-12-06T00:00:00Z");
    assert_eq!(again[0].findings[0].detected_at, "later");
}

#[test]
fn an_ignore_rule_hides_its_field_only_and_only_where_it_matches() {
    let (mut desired, graph) = example();
    desired.infra.drift = Some(DriftPolicy {
        ignore: vec![DriftIgnore {
            component: Some("email-service/a*".into()),
            field: "desiredCount".into(),
        }],
        ..DriftPolicy::default()
    });
    let f = fields(&desired);
    let state = applied(&desired);
    let seen = observed(&f, |id, o| {
        if id.service == "email-service" {
            o.fields.insert("desiredCount".into(), FieldValue::known(3));
            o.fields
                .insert("image".into(), FieldValue::known("api:evil"));
        }
    });
    let p = plan(
        &desired,
        &graph,
        &f,
        &seen,
        Some(&state),
        &PlanOptions::default(),
    );
    let (drifted, ignored) = findings(&p, &[], "t");
    assert_eq!(ignored, ["email-service/api desiredCount"]);
    let api = drifted
        .iter()
        .find(|c| c.component == id("email-service/api"))
        .expect("api drifted");
    let fields: Vec<&str> = api.findings.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["image"]);
    assert_eq!(api.severity, Severity::High);
    assert_eq!(
        api.findings[0].likely_cause,
        "the task definition was replaced outside panka"
    );
    // The queue matches no rule: both its differences are drift.
    let queue = drifted
        .iter()
        .find(|c| c.component == id("email-service/queue"))
        .expect("queue drifted");
    assert_eq!(queue.findings.len(), 2);
}

#[test]
fn a_repository_change_is_applied_even_where_a_rule_ignores_drift() {
    let (mut desired, graph) = example();
    desired.infra.drift = Some(DriftPolicy {
        ignore: vec![DriftIgnore {
            component: None,
            field: "desiredCount".into(),
        }],
        ..DriftPolicy::default()
    });
    let f = fields(&desired);
    let mut state = applied(&desired);
    // The repository changed the api since it was applied.
    state
        .components
        .get_mut("email-service/api")
        .expect("recorded")
        .spec_hash = "older".into();
    let seen = observed(&f, |_, o| {
        o.fields.insert("desiredCount".into(), FieldValue::known(3));
    });
    let p = plan(
        &desired,
        &graph,
        &f,
        &seen,
        Some(&state),
        &PlanOptions::default(),
    );
    let changed: Vec<String> = p
        .all()
        .filter(|c| c.action.is_change())
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(changed, ["email-service/api"]);
}

#[test]
fn a_value_waiting_on_a_missing_dependency_is_not_the_dependants_drift() {
    let (desired, graph) = example();
    let mut f = fields(&desired);
    let api = id("email-service/api");
    let seen = observed(&f, |_, _| {});
    // The database the api reads its host from is gone: the host is known after apply.
    f.get_mut(&api).expect("api").set(
        "environment.DATABASE_HOST",
        FieldValue::Unknown(crate::plan::KnownAfterApply::KnownAfterApply),
    );
    let state = applied(&desired);
    let p = plan(
        &desired,
        &graph,
        &f,
        &seen,
        Some(&state),
        &PlanOptions::default(),
    );
    assert!(p.all().any(|c| c.id == api && c.action.is_change()));
    let (drifted, _) = findings(&p, &[], "t");
    assert!(drifted.is_empty(), "{drifted:?}");
}

#[test]
fn likely_causes_read_as_sentences() {
    let k = |v: serde_json::Value| FieldValue::Known(v);
    let cause = |kind: &str, field: &str, d: serde_json::Value, a: serde_json::Value| {
        likely_cause(kind, field, Some(&k(d)), Some(&k(a)))
    };
    use serde_json::json;
    assert_eq!(
        cause("MicroService", "desiredCount", json!(2), json!(4)),
        "someone scaled the service up by hand"
    );
    assert_eq!(
        cause("MicroService", "environment.MODE", json!("a"), json!("b")),
        "an environment variable was changed outside panka (a new task definition revision)"
    );
    assert_eq!(
        cause("S3", "versioning", json!("Enabled"), json!("Suspended")),
        "bucket versioning was turned off by hand"
    );
    assert_eq!(
        cause("DynamoDB", "pointInTimeRecovery", json!(true), json!(false)),
        "point-in-time recovery was turned off by hand"
    );
    assert_eq!(
        cause("SQS", "queue.visibilityTimeout", json!(30), json!(60)),
        "the queue's attributes were edited by hand"
    );
    assert_eq!(
        cause("RDS", "backup.retentionDays", json!(7), json!(1)),
        "the retention period was changed by hand"
    );
    assert_eq!(
        cause("RDS", "instanceClass", json!("a"), json!("b")),
        "`instanceClass` was changed outside panka"
    );
}
