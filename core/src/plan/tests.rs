use super::*;
use crate::keys::StateKey;
use crate::model::ComponentSpec;
use crate::resolve::Options;
use crate::state::{ComponentState, StateDocument};
use crate::validate::{load_tree, plan_input};

fn example(stack: &str) -> (DesiredStack, Graph) {
    let tree = crate::source::read_example(stack);
    let loaded = load_tree(stack, &tree).expect("example loads");
    plan_input(&loaded, "development", &Options::default()).expect("example resolves")
}

fn id(s: &str) -> ComponentId {
    ComponentId::try_from(s.to_string()).expect("valid id")
}

/// Desired fields with one compared field per component, plus one replace and one ignored field.
fn fields(desired: &DesiredStack) -> BTreeMap<ComponentId, DesiredFields> {
    desired
        .components
        .keys()
        .map(|id| {
            let mut f = DesiredFields::default();
            f.set("size", FieldValue::known(1));
            f.set_replace(
                "engine",
                FieldValue::known("postgres"),
                "engine cannot change in place",
            );
            f.set_ignored("desiredCount", FieldValue::known(2));
            (id.clone(), f)
        })
        .collect()
}

fn observed_as(
    fields: &BTreeMap<ComponentId, DesiredFields>,
) -> BTreeMap<ComponentId, Observation> {
    fields
        .iter()
        .map(|(id, f)| {
            (
                id.clone(),
                Observation {
                    exists: true,
                    owned: true,
                    fields: f.fields.clone(),
                    ..Observation::default()
                },
            )
        })
        .collect()
}

fn state_with(components: &[(&str, &str, String)]) -> StateDocument {
    let mut doc = StateDocument::initial(
        &StateKey::new("notification-platform", "development").expect("valid key"),
    );
    for (name, kind, hash) in components {
        doc.components.insert(
            name.to_string(),
            ComponentState {
                kind: kind.to_string(),
                spec_hash: hash.clone(),
                ..ComponentState::default()
            },
        );
    }
    doc
}

#[test]
fn nothing_observed_creates_everything_in_graph_order() {
    let (desired, graph) = example("notification-platform");
    let plan = plan(
        &desired,
        &graph,
        &fields(&desired),
        &Observed::default(),
        None,
        &PlanOptions::default(),
    );
    // Three components and what they run on: network, cluster, execution role, load balancer.
    assert_eq!(plan.summary.create, 7);
    assert_eq!(plan.waves.len(), graph.waves.len());
    let first: Vec<_> = plan.waves[0].iter().map(|p| p.id.to_string()).collect();
    assert_eq!(
        first,
        [
            "_stack/cluster",
            "_stack/execution-role",
            "_stack/network",
            "email-service/queue"
        ]
    );
    let second: Vec<_> = plan.waves[1].iter().map(|p| p.id.to_string()).collect();
    assert_eq!(second, ["_stack/alb", "email-service/database"]);
    assert!(plan
        .all()
        .all(|p| p.action == Action::Create && !p.dangerous));
    assert!(plan.has_changes());
    assert!(plan.cost.monthly_usd > 0.0);
}

#[test]
fn a_create_of_another_spec_is_another_plan() {
    let (desired, graph) = example("notification-platform");
    let planned = |d: &DesiredStack| {
        plan(
            d,
            &graph,
            &fields(d),
            &Observed::default(),
            None,
            &PlanOptions::default(),
        )
    };
    let mut changed = desired.clone();
    let queue = changed
        .components
        .get_mut(&id("email-service/queue"))
        .expect("the queue");
    let ComponentSpec::Sqs(spec) = &mut queue.spec else {
        panic!("an SQS queue");
    };
    spec.visibility_timeout = Some(spec.visibility_timeout.unwrap_or(30) + 1);
    let (one, two) = (planned(&desired), planned(&changed));
    // The same actions, no field differences (nothing exists yet), yet not the same plan: an
    // approval of one must not apply the other.
    assert_eq!(one.summary, two.summary);
    assert_ne!(one.fingerprint(), two.fingerprint());
    assert_eq!(one.fingerprint(), planned(&desired).fingerprint());
}

#[test]
fn matching_observations_plan_no_change() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let observed = Observed::new(observed_as(&f));
    let plan = plan(
        &desired,
        &graph,
        &f,
        &observed,
        None,
        &PlanOptions::default(),
    );
    assert_eq!(plan.summary.unchanged, 7);
    assert!(!plan.has_changes());
}

#[test]
fn an_update_field_that_differs_plans_an_in_place_update_with_old_and_new() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let mut seen = observed_as(&f);
    let queue = id("email-service/queue");
    seen.get_mut(&queue)
        .unwrap()
        .fields
        .insert("size".into(), FieldValue::known(5));
    let plan = plan(
        &desired,
        &graph,
        &f,
        &Observed::new(seen),
        None,
        &PlanOptions::default(),
    );
    let p = plan.all().find(|p| p.id == queue).unwrap();
    assert_eq!(p.action, Action::Update);
    assert_eq!(p.diffs.len(), 1);
    assert_eq!(p.diffs[0].old, Some(FieldValue::known(5)));
    assert_eq!(p.diffs[0].new, Some(FieldValue::known(1)));
    assert!(!p.dangerous);
}

#[test]
fn a_replace_field_on_a_stateful_kind_is_a_dangerous_replace() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let mut seen = observed_as(&f);
    let db = id("email-service/database");
    seen.get_mut(&db)
        .unwrap()
        .fields
        .insert("engine".into(), FieldValue::known("mysql"));
    let plan = plan(
        &desired,
        &graph,
        &f,
        &Observed::new(seen),
        None,
        &PlanOptions::default(),
    );
    let p = plan.all().find(|p| p.id == db).unwrap();
    assert_eq!(
        p.action,
        Action::Replace {
            reason: "engine cannot change in place".into()
        }
    );
    assert!(p.dangerous);
    assert_eq!(plan.dangerous().count(), 1);
}

#[test]
fn ignored_fields_never_cause_a_change() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let mut seen = observed_as(&f);
    for o in seen.values_mut() {
        o.fields.insert("desiredCount".into(), FieldValue::known(7));
    }
    let plan = plan(
        &desired,
        &graph,
        &f,
        &Observed::new(seen),
        None,
        &PlanOptions::default(),
    );
    assert!(!plan.has_changes());
}

#[test]
fn a_foreign_resource_is_a_conflict_unless_adopted() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let mut seen = observed_as(&f);
    let queue = id("email-service/queue");
    seen.get_mut(&queue).unwrap().owned = false;
    let observed = Observed::new(seen);
    let plan1 = plan(
        &desired,
        &graph,
        &f,
        &observed,
        None,
        &PlanOptions::default(),
    );
    let p = plan1.all().find(|p| p.id == queue).unwrap();
    assert!(matches!(p.action, Action::Conflict { .. }));
    assert_eq!(plan1.summary.conflict, 1);
    let adopt = PlanOptions {
        adopt: true,
        ..PlanOptions::default()
    };
    let plan2 = plan(&desired, &graph, &f, &observed, None, &adopt);
    assert_eq!(
        plan2.all().find(|p| p.id == queue).unwrap().action,
        Action::Update
    );
}

#[test]
fn components_removed_from_the_repository_are_deleted_containers_first() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let state = state_with(&[
        ("email-service/old-db", "RDS", String::new()),
        ("email-service/old-worker", "Worker", String::new()),
        ("email-service/queue", "SQS", String::new()),
    ]);
    let plan = plan(
        &desired,
        &graph,
        &f,
        &Observed::new(observed_as(&f)),
        Some(&state),
        &PlanOptions::default(),
    );
    let order: Vec<_> = plan
        .deletions
        .iter()
        .map(|p| (p.id.to_string(), p.dangerous))
        .collect();
    assert_eq!(
        order,
        [
            ("email-service/old-worker".into(), false),
            ("email-service/old-db".into(), true)
        ]
    );
    assert_eq!(plan.summary.delete, 2);
}

#[test]
fn deletions_go_in_reverse_dependency_order() {
    let (desired, _) = example("notification-platform");
    let f = fields(&desired);
    // Record the example's components as applied, then plan an empty stack: destroy.
    let mut state = state_with(&[]);
    for (id, c) in &desired.components {
        state.components.insert(
            id.to_string(),
            ComponentState {
                kind: c.kind().name().to_string(),
                applied_spec: serde_json::to_value(c).unwrap(),
                ..ComponentState::default()
            },
        );
    }
    let mut empty = desired.clone();
    empty.components.clear();
    let none = Graph {
        waves: vec![],
        edges: vec![],
    };
    let plan = plan(
        &empty,
        &none,
        &f,
        &Observed::default(),
        Some(&state),
        &PlanOptions::default(),
    );
    let order: Vec<_> = plan.deletions.iter().map(|p| p.id.to_string()).collect();
    // Dependants first; what everything runs on last (the load balancer before its network).
    assert_eq!(
        order,
        [
            "email-service/api",
            "email-service/database",
            "email-service/queue",
            "_stack/alb",
            "_stack/cluster",
            "_stack/execution-role",
            "_stack/network"
        ]
    );
}

#[test]
fn a_dependant_is_deleted_before_its_dependency_whatever_the_names() {
    let (desired, _) = example("notification-platform");
    let queue = desired.components[&id("email-service/queue")].clone();
    let mut a = queue.clone();
    a.id = id("orders/a-queue");
    let mut z = queue;
    z.id = id("orders/z-queue");
    z.references = vec![crate::model::Reference {
        target: a.id.clone(),
        kind: crate::model::RefKind::DependsOn,
        span: None,
    }];
    let mut state = state_with(&[]);
    for c in [&a, &z] {
        state.components.insert(
            c.id.to_string(),
            ComponentState {
                kind: "SQS".into(),
                applied_spec: serde_json::to_value(c).unwrap(),
                ..ComponentState::default()
            },
        );
    }
    let mut empty = desired.clone();
    empty.components.clear();
    let none = Graph {
        waves: vec![],
        edges: vec![],
    };
    let plan = plan(
        &empty,
        &none,
        &BTreeMap::new(),
        &Observed::default(),
        Some(&state),
        &PlanOptions::default(),
    );
    let order: Vec<_> = plan.deletions.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(order, ["orders/z-queue", "orders/a-queue"]);
}

#[test]
fn a_service_scope_limits_both_applies_and_deletions() {
    let (desired, graph) = example("user-platform");
    let f = fields(&desired);
    let state = state_with(&[
        ("user-service/old", "SQS", String::new()),
        ("notification-service/old", "SQS", String::new()),
    ]);
    let options = PlanOptions {
        service: Some("user-service".into()),
        adopt: false,
    };
    let plan = plan(
        &desired,
        &graph,
        &f,
        &Observed::default(),
        Some(&state),
        &options,
    );
    // The service's components and the stack-wide resources they run on (a first scoped apply
    // must create those); only the service's own recorded components are deleted.
    let stack_wide = desired
        .components
        .values()
        .filter(|c| c.kind().is_stack_resource())
        .count();
    assert_eq!(stack_wide, 4);
    assert!(plan
        .all()
        .all(|p| p.id.service == "user-service" || p.id.service == "_stack"));
    assert_eq!(plan.summary.create, 2 + stack_wide);
    assert_eq!(plan.summary.delete, 1);
    assert_eq!(plan.deletions[0].id, id("user-service/old"));
}

#[test]
fn a_difference_without_a_repository_change_is_drift() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    let queue = id("email-service/queue");
    let hash = desired.components[&queue].hash();
    let state = state_with(&[("email-service/queue", "SQS", hash)]);
    let mut seen = observed_as(&f);
    seen.get_mut(&queue)
        .unwrap()
        .fields
        .insert("size".into(), FieldValue::known(9));
    let plan = plan(
        &desired,
        &graph,
        &f,
        &Observed::new(seen),
        Some(&state),
        &PlanOptions::default(),
    );
    let p = plan.all().find(|p| p.id == queue).unwrap();
    assert!(p.drift);
    assert_eq!(p.action, Action::Update);
}

#[test]
fn a_difference_that_a_changed_dependency_explains_is_not_drift() {
    let (desired, graph) = example("notification-platform");
    let f = fields(&desired);
    // Every spec recorded as applied unchanged. But the load balancer's last apply, with the
    // network's outputs of then, gave another `size` than the repository gives now (the
    // repository changed the network: a new subnet, say); the queue's gave what it gives now.
    let recorded: Vec<(String, String, String)> = desired
        .components
        .values()
        .map(|c| (c.id.to_string(), c.kind().name().to_owned(), c.hash()))
        .collect();
    let refs: Vec<(&str, &str, String)> = recorded
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.clone()))
        .collect();
    let state = state_with(&refs);
    let (alb, queue) = (id("_stack/alb"), id("email-service/queue"));
    let mut applied = f.clone();
    applied
        .get_mut(&alb)
        .unwrap()
        .set("size", FieldValue::known(5));
    let mut seen = observed_as(&f);
    for id in [&alb, &queue] {
        seen.get_mut(id)
            .unwrap()
            .fields
            .insert("size".into(), FieldValue::known(9));
    }
    let plan = plan_with(
        &desired,
        &graph,
        &f,
        &applied,
        &Observed::new(seen),
        Some(&state),
        &PlanOptions::default(),
    );
    let p = plan.all().find(|p| p.id == alb).unwrap();
    assert_eq!(p.action, Action::Update);
    assert!(!p.drift, "the repository changed the load balancer's size");
    let p = plan.all().find(|p| p.id == queue).unwrap();
    assert!(
        p.drift,
        "nothing in the repository changed the queue's size"
    );
}

#[test]
fn unknown_values_render_as_known_after_apply() {
    let v = FieldValue::Unknown(KnownAfterApply::KnownAfterApply);
    assert_eq!(v.display(), "(known after apply)");
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        serde_json::json!("(known after apply)")
    );
    assert_eq!(FieldValue::known("x").display(), "x");
    assert_eq!(FieldValue::known(3).display(), "3");
}

#[test]
fn a_service_scope_takes_only_the_stack_wide_resources_its_components_run_on() {
    let (mut desired, _) = example("user-platform");
    // A service with a database alone runs on the network, not on the cluster or load balancer.
    let mut lone = desired.components[&id("user-service/database")].clone();
    lone.id = id("reports/database");
    desired.components.insert(lone.id.clone(), lone);
    let graph = crate::graph::build(&desired).expect("no cycle");
    let options = PlanOptions {
        service: Some("reports".into()),
        adopt: false,
    };
    let plan = plan(
        &desired,
        &graph,
        &fields(&desired),
        &Observed::default(),
        None,
        &options,
    );
    let ids: Vec<String> = plan.all().map(|p| p.id.to_string()).collect();
    assert_eq!(ids, ["_stack/network", "reports/database"]);
}
