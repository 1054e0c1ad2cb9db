//! The conversion both ways: every environment of the example repository exported as resources,
//! read back from the YAML `panka export` prints and converted into files, resolves to the same
//! desired stack as the repository; and problems with resources name the resource and field.

use std::path::Path;
use std::sync::Arc;

use panka_crds::resource::{Service, Stack};
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::diag::Diagnostics;
use crate::model::{ComponentId, DesiredStack};
use crate::resolve::{self, Options};
use crate::source::{read_example, FileTree};

/// A desired stack without `source` (where each component is written, which differs by
/// definition between a repository and resources) and without reference spans (positions in
/// files): serialization drops the spans.
fn comparable(desired: &DesiredStack) -> Value {
    let mut value = serde_json::to_value(desired).expect("serializes");
    if let Some(Value::Object(components)) = value.get_mut("components") {
        for component in components.values_mut() {
            if let Value::Object(c) = component {
                c.remove("source");
            }
        }
    }
    value
}

/// The documents of a multi-document YAML text, as JSON.
fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

fn example_stacks() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment-repo/stacks");
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("example stacks")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_environment_exported_as_resources_resolves_as_the_repository_does() {
    let mut checked = 0;
    for stack in example_stacks() {
        let tree = read_example(&stack);
        let loaded = crate::load::load(&stack, &tree).expect("example loads");
        for env in resolve::environments(&loaded) {
            let (want, want_graph) =
                crate::validate::plan_input(&loaded, &env, &Options::default())
                    .expect("example resolves");
            let exported = export(&loaded, &env, &Options::default())
                .unwrap_or_else(|d| panic!("{stack}/{env} exports: {d}"));
            let yaml = exported.to_yaml().expect("renders");
            let back = StackResources::from_values(yaml_documents(&yaml))
                .unwrap_or_else(|e| panic!("{stack}/{env}: {e}\n{yaml}"));
            assert_eq!(
                back.to_values().unwrap(),
                exported.to_values().unwrap(),
                "{stack}/{env}: the YAML holds exactly the resources"
            );
            let crd = stack_tree(&back.stack, &back.services, &back.components)
                .unwrap_or_else(|d| panic!("{stack}/{env} converts: {d}"));
            let (got, got_graph) = crd
                .plan_input(&Options::default())
                .unwrap_or_else(|d| panic!("{stack}/{env} resolves from resources: {d}"));
            assert_eq!(comparable(&got), comparable(&want), "{stack}/{env}\n{yaml}");
            assert_eq!(got_graph, want_graph, "{stack}/{env}");
            // The JSON form reads back to the same resources.
            let list = exported.to_list().expect("list");
            let from_list = StackResources::from_values([list]).expect("list reads back");
            assert_eq!(
                from_list.to_values().unwrap(),
                exported.to_values().unwrap()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "two example stacks, three environments each");
}

#[test]
fn export_keeps_variables_and_merges_the_environment_overlay() {
    let loaded = crate::load::load("user-platform", &read_example("user-platform")).unwrap();
    let exported = export(&loaded, "production", &Options::default()).unwrap();
    let values = exported.to_values().unwrap();
    let stack = &values[0];
    assert_eq!(stack["metadata"]["name"], "user-platform-production");
    assert_eq!(stack["spec"]["variables"]["VERSION"], "v1.2.0");
    assert_eq!(
        stack["spec"]["infra"]["cluster"],
        "user-platform-${ENVIRONMENT}"
    );
    let api = values
        .iter()
        .find(|v| v["metadata"]["name"] == "user-platform-production-notification-service-api")
        .expect("the notification api");
    assert_eq!(api["kind"], "MicroService");
    assert_eq!(api["spec"]["image"]["tag"], "${VERSION}");
    // Production's overlay, merged over the base infra.yaml.
    assert_eq!(api["spec"]["infra"]["resources"]["cpu"], 1024);
    assert_eq!(api["spec"]["infra"]["scaling"]["replicas"], 2);
    assert_eq!(
        api["spec"]["infra"]["scaling"]["autoscaling"]["maxReplicas"],
        50
    );
    assert!(api["spec"]["configData"]["app.yaml"]
        .as_str()
        .unwrap()
        .contains("environment: ${ENVIRONMENT}"));
    // Secrets stay references.
    assert_eq!(
        api["spec"]["secrets"][0]["secretRef"],
        "/stacks/user-platform/notification-service/db-password"
    );
    let labels = &api["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "panka");
    assert_eq!(labels["panka.io/stack"], "user-platform");
    assert_eq!(labels["panka.io/environment"], "production");
    assert_eq!(labels["panka.io/service"], "notification-service");
    assert_eq!(labels["panka.io/component"], "api");
    assert_eq!(
        api["metadata"]["annotations"]["panka.io/description"],
        "Notification API server"
    );
    let service = values
        .iter()
        .find(|v| v["kind"] == "Service" && v["spec"]["stack"] == "user-platform")
        .unwrap();
    assert_eq!(service["metadata"]["labels"]["team"], "notifications");
    assert_eq!(
        service["metadata"]["annotations"]["slack"],
        "#notifications-team"
    );
    assert!(values
        .iter()
        .all(|v| v["metadata"].get("namespace").is_none()));
}

#[test]
fn resources_name_the_resource_they_defined_as_the_components_source() {
    let loaded = crate::load::load("user-platform", &read_example("user-platform")).unwrap();
    let exported = export(&loaded, "development", &Options::default()).unwrap();
    let mut stack = exported.stack.clone();
    stack.metadata.namespace = Some("apps".to_string());
    let (desired, _) = desired_stack(
        &stack,
        &exported.services,
        &exported.components,
        &Options::default(),
    )
    .unwrap();
    let api = &desired.components[&ComponentId::new("user-service", "api")];
    assert_eq!(
        api.source,
        "MicroService user-platform-development-user-service-api"
    );
}

// ---------------------------------------------------------------------------------------------
// Small resources written as a person would for kubectl.
// ---------------------------------------------------------------------------------------------

fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn stack(environment: &str) -> Stack {
    from_yaml(&format!(
        "apiVersion: panka.io/v1alpha1\nkind: Stack\nmetadata: {{name: shop-{environment}, namespace: apps}}\nspec:\n  stack: shop\n  environment: {environment}\n  provider: {{name: aws, region: us-east-1}}\n  variables: {{VERSION: v1}}\n"
    ))
}

fn service(name: &str, labels: &str) -> Service {
    from_yaml(&format!(
        "apiVersion: panka.io/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: apps, labels: {{{labels}}}}}\nspec: {{stack: shop}}\n"
    ))
}

fn component(text: &str) -> ComponentResource {
    ComponentResource::from_value(from_yaml(text)).expect("a component resource")
}

fn queue(name: &str, service: &str, labels: &str, visibility: u32) -> ComponentResource {
    component(&format!(
        "apiVersion: panka.io/v1alpha1\nkind: SQS\nmetadata: {{name: {name}, namespace: apps, labels: {{{labels}}}}}\nspec: {{stack: shop, service: {service}, visibilityTimeout: {visibility}}}\n"
    ))
}

fn web(extra: &str) -> ComponentResource {
    component(&format!(
        "apiVersion: panka.io/v1alpha1\nkind: MicroService\nmetadata: {{name: web, namespace: apps}}\nspec:\n  stack: shop\n  service: api\n  image: {{repository: r, tag: \"${{VERSION}}\"}}\n{extra}"
    ))
}

/// `(span file, message)` of every problem.
fn problems(result: Result<impl std::fmt::Debug, Diagnostics>) -> Vec<(String, String)> {
    let err = result.expect_err("refused");
    err.iter()
        .map(|d| {
            (
                d.span
                    .as_ref()
                    .map(|s| s.file.to_string())
                    .unwrap_or_default(),
                d.message.clone(),
            )
        })
        .collect()
}

#[test]
fn resolve_problems_name_the_resource_and_the_field() {
    let cases = [
        (
            "  environment:\n  - {name: A, value: \"${VERSON}\"}\n",
            "spec.environment[0].value: unresolved variable `${VERSON}`",
        ),
        (
            "  dependsOn: [api/nope]\n",
            "spec.dependsOn[0]: `api/nope` refers to a component that does not exist",
        ),
        (
            "  infra:\n    resources: {cpu: 300}\n",
            "spec.infra.resources.cpu: Fargate has no task size with cpu 300",
        ),
        (
            "  configs: {mountPath: /config, files: [app.yaml]}\n  configData:\n    app.yaml: \"v: ${NOPE}\"\n",
            "spec.configData[\"app.yaml\"]: unresolved variable `${NOPE}`",
        ),
    ];
    for (extra, message) in cases {
        let found = problems(desired_stack(
            &stack("dev"),
            &[service("api", "")],
            &[web(extra)],
            &Options::default(),
        ));
        assert_eq!(
            found,
            [("MicroService apps/web".to_string(), message.to_string())],
            "{extra}"
        );
    }
}

#[test]
fn problems_with_the_stack_resource_name_its_field() {
    let mut no_provider = stack("dev");
    no_provider.spec.provider = None;
    let found = problems(desired_stack(&no_provider, &[], &[], &Options::default()));
    assert_eq!(
        found,
        [(
            "Stack apps/shop-dev".to_string(),
            "spec.provider: missing".to_string()
        )]
    );
    let found = problems(desired_stack(
        &{
            let mut s = stack("dev");
            s.spec.variables.insert("9X".into(), "1".into());
            s
        },
        &[],
        &[],
        &Options::default(),
    ));
    assert_eq!(
        found,
        [(
            "Stack apps/shop-dev".to_string(),
            "spec.variables[\"9X\"]: `9X` is not a valid variable name".to_string()
        )]
    );
    let mut git = stack("Dev");
    git.spec.source = Some(Default::default());
    let found = problems(stack_tree(&git, &[], &[]));
    assert_eq!(
        found,
        [
            (
                "Stack apps/shop-Dev".to_string(),
                "spec.environment: `Dev` is not a valid environment name".to_string()
            ),
            (
                "Stack apps/shop-Dev".to_string(),
                "spec.source: this Stack takes its desired state from git, not from resources"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn resources_that_cannot_become_documents_are_refused_with_resource_and_field() {
    let found = problems(stack_tree(
        &stack("dev"),
        &[service("api", ""), service("api.v2", "")],
        &[
            queue("orders", "billing", "", 30),
            queue("Jobs", "api", "", 30),
            queue("tasks", "api", "panka.io/stack: other", 30),
            web("  configData: {\"../secret\": x}\n"),
        ],
    ));
    let want = [
        ("Service apps/api.v2", "metadata.name: `api.v2` is not a valid service name"),
        ("SQS apps/orders", "spec.service: no Service `billing` of stack `shop` for environment `dev`"),
        ("SQS apps/Jobs", "metadata.name: `Jobs` is not a valid component name"),
        ("SQS apps/tasks", "metadata.labels[\"panka.io/stack\"]: `other` does not match spec.stack `shop`"),
        ("MicroService apps/web", "spec.configData[\"../secret\"]: `../secret` is not a file name inside the component's configs"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(found, want);
}

#[test]
fn components_of_one_name_in_two_services_are_two_resources_told_apart_by_label() {
    let (desired, _) = desired_stack(
        &stack("dev"),
        &[
            service("api", ""),
            service("shop-dev-worker", "panka.io/service: worker"),
        ],
        &[
            queue("api-jobs", "api", "panka.io/component: jobs", 30),
            queue("worker-jobs", "worker", "panka.io/component: jobs", 60),
        ],
        &Options::default(),
    )
    .expect("resolves");
    let ids: Vec<String> = desired
        .components
        .keys()
        .filter(|id| !id.service.starts_with('_'))
        .map(ToString::to_string)
        .collect();
    assert_eq!(ids, ["api/jobs", "worker/jobs"]);
    assert_eq!(
        desired.components[&ComponentId::new("worker", "jobs")].source,
        "SQS apps/worker-jobs"
    );
}

#[test]
fn two_components_of_one_name_in_one_service_are_refused_naming_both() {
    let found = problems(stack_tree(
        &stack("dev"),
        &[service("api", "")],
        &[
            queue("api-jobs", "api", "panka.io/component: jobs", 30),
            queue("jobs", "api", "", 60),
        ],
    ));
    assert_eq!(
        found,
        [(
            "SQS apps/jobs".to_string(),
            "metadata.name: component `api/jobs` is also defined by SQS apps/api-jobs".to_string()
        )]
    );
}

#[test]
fn the_environment_label_gives_a_resource_to_one_environment_only() {
    let services = [service("api", "")];
    let components = [
        queue(
            "jobs-dev",
            "api",
            "panka.io/component: jobs, panka.io/environment: dev",
            30,
        ),
        queue(
            "jobs-prod",
            "api",
            "panka.io/component: jobs, panka.io/environment: prod",
            60,
        ),
        queue("shared", "api", "", 90),
    ];
    for (env, visibility) in [("dev", 30), ("prod", 60)] {
        let (desired, _) = desired_stack(&stack(env), &services, &components, &Options::default())
            .unwrap_or_else(|d| panic!("{env}: {d}"));
        let jobs = &desired.components[&ComponentId::new("api", "jobs")];
        let crate::model::ComponentSpec::Sqs(spec) = &jobs.spec else {
            panic!("an SQS queue")
        };
        assert_eq!(spec.visibility_timeout, Some(visibility), "{env}");
        assert!(
            desired
                .components
                .contains_key(&ComponentId::new("api", "shared")),
            "{env}"
        );
    }
}

#[test]
fn resources_of_another_stack_or_namespace_are_not_the_stacks() {
    let mut elsewhere = queue("jobs", "api", "", 30);
    elsewhere.metadata_mut().namespace = Some("other".into());
    let mut other_service = service("billing", "");
    other_service.spec.stack = "other-shop".into();
    let tree = stack_tree(
        &stack("dev"),
        &[service("api", ""), other_service],
        &[
            elsewhere,
            component("apiVersion: panka.io/v1alpha1\nkind: SQS\nmetadata: {name: orders, namespace: apps}\nspec: {stack: other-shop, service: billing}\n"),
        ],
    )
    .expect("the foreign resources are skipped, not refused");
    let files: Vec<&str> = tree.tree.files.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "environments/dev/variables.yaml",
            "services/api/service.yaml",
            "stack.yaml"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Export of small repositories.
// ---------------------------------------------------------------------------------------------

/// A one-service stack `shop` with a Worker `w` and an environment `dev`, plus `extra` files.
fn shop(extra: &[(&str, &str)]) -> crate::load::LoadedStack {
    let mut tree = FileTree::new("stacks/shop");
    let mut put = |path: &str, text: &str| {
        tree.files.insert(path.to_string(), Arc::from(text));
    };
    put("stack.yaml", "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata: {name: shop}\nspec: {provider: {name: aws, region: us-east-1}}\n");
    put("environments/dev/variables.yaml", "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: dev, stack: shop}\nspec: {VERSION: v1, REPLICAS: 3, FLAG: yes}\n");
    put("services/svc/service.yaml", "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {name: svc, stack: shop}\nspec: {infrastructure: {defaults: ./infra/defaults.yaml}}\n");
    put("services/svc/infra/defaults.yaml", "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: defaults, stack: shop, service: svc}\nspec: {scaling: {replicas: 1}, networking: {assignPublicIp: false}}\n");
    put("services/svc/components/w/worker.yaml", "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata: {name: w, service: svc, stack: shop}\nspec:\n  image: {repository: r, tag: \"${VERSION}\"}\n  environment:\n  - {name: FLAG, value: \"${FLAG}\"}\n  - {name: LITERAL, value: \"$${NOT_A_VAR}\"}\n");
    for (path, text) in extra {
        put(path, text);
    }
    crate::load::load("shop", &tree).expect("loads")
}

/// Exports `loaded` for `dev` and converts it back, checking it resolves as the repository.
fn round_trip(loaded: &crate::load::LoadedStack) -> Vec<Value> {
    let (want, _) =
        crate::validate::plan_input(loaded, "dev", &Options::default()).expect("resolves");
    let exported = export(loaded, "dev", &Options::default()).expect("exports");
    let yaml = exported.to_yaml().unwrap();
    let back = StackResources::from_values(yaml_documents(&yaml)).unwrap();
    let (got, _) = desired_stack(
        &back.stack,
        &back.services,
        &back.components,
        &Options::default(),
    )
    .unwrap_or_else(|d| panic!("{d}\n{yaml}"));
    assert_eq!(comparable(&got), comparable(&want), "{yaml}");
    exported.to_values().unwrap()
}

#[test]
fn a_variable_where_a_number_belongs_is_exported_as_its_value_and_text_keeps_variables() {
    let loaded = shop(&[(
        "services/svc/components/w/infra.yaml",
        "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: w, service: svc, stack: shop}\nspec:\n  scaling:\n    replicas: ${REPLICAS}\n",
    )]);
    let values = round_trip(&loaded);
    let worker = values.iter().find(|v| v["kind"] == "Worker").unwrap();
    assert_eq!(worker["spec"]["infra"]["scaling"]["replicas"], 3);
    assert_eq!(worker["spec"]["image"]["tag"], "${VERSION}");
    assert_eq!(worker["spec"]["environment"][0]["value"], "${FLAG}");
    assert_eq!(worker["spec"]["environment"][1]["value"], "$${NOT_A_VAR}");
    let service = values.iter().find(|v| v["kind"] == "Service").unwrap();
    assert_eq!(service["spec"]["infraDefaults"]["scaling"]["replicas"], 1);
    assert_eq!(values[0]["spec"]["variables"]["FLAG"], "yes");
}

#[test]
fn the_yaml_quotes_what_kubectl_would_read_as_a_boolean() {
    let loaded = shop(&[]);
    let exported = export(&loaded, "dev", &Options::default()).unwrap();
    let yaml = exported.to_yaml().unwrap();
    assert!(yaml.contains("    FLAG: \"yes\"\n"), "{yaml}");
}

#[test]
fn a_null_that_removes_an_inherited_setting_cannot_be_exported() {
    let loaded = shop(&[(
        "services/svc/components/w/infra.yaml",
        "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: w, service: svc, stack: shop}\nspec:\n  networking: null\n",
    )]);
    let err = export(&loaded, "dev", &Options::default()).expect_err("refused");
    let d = err.first();
    assert_eq!(
        d.message,
        "`networking: null` removes an inherited setting, which a custom resource cannot express"
    );
    let span = d.span.as_ref().unwrap();
    assert_eq!(
        (&*span.file, span.line),
        ("stacks/shop/services/svc/components/w/infra.yaml", 5)
    );
}

#[test]
fn labels_kubernetes_refuses_are_reported_at_the_file() {
    let loaded = shop(&[(
        "services/svc/service.yaml",
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata:\n  name: svc\n  stack: shop\n  labels: {team: \"the platform team\"}\nspec: {infrastructure: {defaults: ./infra/defaults.yaml}}\n",
    )]);
    let err = export(&loaded, "dev", &Options::default()).expect_err("refused");
    let d = err.first();
    assert_eq!(
        d.message,
        "cannot export labels: `the platform team` (label `team`) is not a valid Kubernetes label value"
    );
    assert_eq!(d.span.as_ref().unwrap().line, 6);
}

#[test]
fn an_environment_the_stack_does_not_have_is_refused_as_resolve_refuses_it() {
    let err = export(&shop(&[]), "prod", &Options::default()).expect_err("refused");
    assert_eq!(
        err.first().message,
        "stack `shop` has no environment `prod`"
    );
}
