//! The example stacks through the whole engine against the emulator, with S3 state and DynamoDB
//! locks: create everything, converge, change one thing at a time, add and remove a component,
//! destroy. Resources are checked with direct SDK reads, not through panka's drivers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use panka_controller::driver::DriverError;
use panka_controller::engine::{ApplyReport, EngineError, EngineOptions, Quiet};
use panka_controller::lock::{LockOptions, Locker};
use panka_controller::state::StateKey;
use panka_controller::validate::{load_stack, plan_input};
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::Action;
use panka_core::resolve::Options;
use panka_tests::emulator::{emulator, unique_name, AwsBackends};
use panka_tests::engine::TestEngine;
use panka_tests::repo::{edit, renamed_example};

fn resolve(root: &Path, stack: &str, vars: &[(&str, &str)]) -> (DesiredStack, Graph) {
    let loaded = load_stack(root, stack).expect("loads");
    let options = Options {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    plan_input(&loaded, "development", &options).expect("resolves")
}

async fn create_secrets(stack: &str) {
    let sm = aws_sdk_secretsmanager::Client::new(&emulator().sdk_config().await);
    for path in [
        format!("/stacks/{stack}/user-service/db-password"),
        format!("/stacks/{stack}/notification-service/db-password"),
        format!("/stacks/{stack}/notification-service/smtp-password"),
        format!("/stacks/{stack}/email-service/db-password"),
    ] {
        sm.create_secret()
            .name(path)
            .secret_string(r#"{"password":"not-a-real-password-1"}"#)
            .send()
            .await
            .expect("secret created");
    }
}

struct Run {
    backends: AwsBackends,
    options: EngineOptions,
}

impl Run {
    async fn new() -> Run {
        Run {
            backends: emulator().fresh_backends().await,
            options: EngineOptions {
                // moto leaves a deleted replication group `deleting` for ever: do not wait long.
                deletion_timeout: Duration::from_secs(1),
                health_timeout: Duration::from_secs(60),
                actor: "tester@ci".into(),
                ..EngineOptions::default()
            },
        }
    }

    async fn engine(&self, _desired: &DesiredStack) -> TestEngine {
        let locker = Locker::new(self.backends.backends.locks.clone(), LockOptions::default())
            .expect("locker");
        TestEngine::new(
            emulator().sdk_config().await,
            self.backends.backends.clone(),
            locker,
        )
    }

    /// Applies and returns the report and the number of mutating driver calls.
    async fn apply(&self, (desired, graph): &(DesiredStack, Graph)) -> (ApplyReport, u64) {
        let engine = self.engine(desired).await;
        let report = engine
            .apply(desired, graph, &self.options, &mut |_| true, &Quiet)
            .await
            .expect("apply succeeds")
            .expect("approved");
        (report, engine.calls().mutating())
    }
}

fn changed(report: &ApplyReport) -> Vec<(String, Action)> {
    report
        .plan
        .all()
        .filter(|p| p.action.is_change())
        .map(|p| (p.id.to_string(), p.action.clone()))
        .collect()
}

async fn task_definition_of(service_arn: &str, cluster: &str) -> String {
    let ecs = aws_sdk_ecs::Client::new(&emulator().sdk_config().await);
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(service_arn)
        .send()
        .await
        .expect("describe");
    out.services()[0]
        .task_definition()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_example_stack_applies_converges_changes_one_thing_at_a_time_and_destroys_cleanly() {
    let stack = unique_name("up");
    let repo = renamed_example("user-platform", &stack);
    let root: PathBuf = repo.path().to_path_buf();
    create_secrets(&stack).await;
    let run = Run::new().await;

    // 0. One service alone cannot go first when it reads another service's outputs.
    let (d, g) = resolve(&root, &stack, &[]);
    let scoped = EngineOptions {
        service: Some("notification-service".into()),
        ..run.options.clone()
    };
    let err = run
        .engine(&d)
        .await
        .apply(&d, &g, &scoped, &mut |_| true, &Quiet)
        .await
        .expect_err("refused before any change");
    let msg = err.to_string();
    assert!(
        msg.contains("user-service/api") && msg.contains("apply service `user-service` first"),
        "{msg}"
    );

    // 1. Everything is created, in waves.
    let (report, _) = run.apply(&resolve(&root, &stack, &[])).await;
    assert_eq!(
        report.plan.summary.create,
        9 + 3,
        "9 components, the cluster, the execution role and the load balancer (the network is looked up): {:?}",
        changed(&report)
    );
    assert!(report.release.is_some());
    // The same plan as a pull-request comment (`panka plan --output markdown`).
    let md = panka_core::plan::markdown(&report.plan, Some("v1.2.0"));
    assert!(
        md.starts_with(&format!("### panka plan: `{stack}` · `development`\n")),
        "{md}"
    );
    assert!(
        md.contains("**Version** `v1.2.0` · **12 to create**, 0 to update"),
        "{md}"
    );
    assert!(
        md.contains("| 1 | `_stack/cluster` | EcsCluster | create |"),
        "{md}"
    );
    assert!(
        md.contains("| 2 | `user-service/database` | RDS | create |"),
        "{md}"
    );
    assert!(
        md.contains("<summary>1 unchanged</summary>\n\n`_stack/network` (Network)"),
        "{md}"
    );
    assert!(!md.contains("[!CAUTION]"), "creating loses no data: {md}");
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| wave"))
            .count(),
        12,
        "{md}"
    );

    // Direct SDK reads: settings and ownership tags.
    let sdk = emulator().sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = &report.outputs[&ComponentId::new("notification-service", "queue")]["url"];
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("queue");
    assert_eq!(
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout],
        "300"
    );
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = &report.outputs[&ComponentId::new("notification-service", "preferences")]["name"];
    let t = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("table");
    let key = t.table().unwrap().key_schema();
    assert_eq!(key[0].attribute_name(), "userId");
    let arn = t.table().unwrap().table_arn().unwrap().to_string();
    let tags = ddb
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("tags");
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.key() == "panka:stack" && t.value() == stack));
    let rds = aws_sdk_rds::Client::new(&sdk);
    let dbs = rds.describe_db_instances().send().await.expect("rds");
    let db = dbs
        .db_instances()
        .iter()
        .find(|d| {
            d.db_instance_identifier()
                .is_some_and(|i| i.starts_with(&stack))
        })
        .expect("an RDS instance of this stack");
    assert!(db
        .tag_list()
        .iter()
        .any(|t| t.key() == Some("panka:managed-by")));
    let cluster = report.outputs[&ComponentId::new("_stack", "cluster")]["name"].clone();
    let api_arn = report.outputs[&ComponentId::new("user-service", "api")]["arn"].clone();
    let first_revision = task_definition_of(&api_arn, &cluster).await;
    assert!(first_revision.ends_with(":1"), "{first_revision}");

    // 2. Converged: no change, no mutating call, no release.
    let (report, mutating) = run.apply(&resolve(&root, &stack, &[])).await;
    assert!(changed(&report).is_empty(), "{:?}", changed(&report));
    assert_eq!(mutating, 0);
    assert!(report.release.is_none());
    // A new process plans without describing the task definitions the services run: state
    // recorded their fingerprints, and the desired ones are the same.
    let (d, g) = resolve(&root, &stack, &[]);
    let fresh = run.engine(&d).await;
    let planned = fresh.prepare(&d, &g, &run.options).await.expect("plan");
    assert!(!planned.plan.has_changes());
    let described = fresh
        .calls()
        .snapshot()
        .iter()
        .filter(|((_, op), _)| op == "DescribeTaskDefinition")
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert_eq!(described, 0);

    // 3. An image tag change: a new task definition revision and a service update, nothing else.
    let (report, _) = run
        .apply(&resolve(&root, &stack, &[("USER_API_VERSION", "v3.5.0")]))
        .await;
    assert_eq!(
        changed(&report),
        [("user-service/api".to_string(), Action::Update)]
    );
    let second = task_definition_of(&api_arn, &cluster).await;
    assert!(second.ends_with(":2"), "{second}");
    let md = panka_core::plan::markdown(&report.plan, None);
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| wave"))
        .collect();
    assert_eq!(rows.len(), 1, "{md}");
    assert!(
        rows[0].contains("| `user-service/api` | MicroService | update |")
            && rows[0].contains("v3.4.1`")
            && rows[0].contains("→ `")
            && rows[0].contains("v3.5.0`"),
        "{md}"
    );
    assert!(md.contains("0 to create, **1 to update**"), "{md}");
    assert!(md.contains("<summary>12 unchanged</summary>"), "{md}");

    // 4. A config file change makes a new revision of the component that mounts it.
    edit(
        &root,
        &format!("stacks/{stack}/services/notification-service/components/api/configs/app.yaml"),
        "maxRetries: 3",
        "maxRetries: 5",
    );
    let vars = [("USER_API_VERSION", "v3.5.0")];
    let (report, _) = run.apply(&resolve(&root, &stack, &vars)).await;
    assert_eq!(
        changed(&report),
        [("notification-service/api".to_string(), Action::Update)]
    );
    assert!(
        report.plan.all().any(|p| p
            .diffs
            .iter()
            .any(|d| d.field.contains("config") || d.field.contains("Config"))),
        "{:?}",
        report.plan
    );

    // 5. A scaling change updates the service only: same task definition.
    edit(
        &root,
        &format!("stacks/{stack}/services/user-service/components/api/infra.yaml"),
        "replicas: 2",
        "replicas: 1",
    );
    let (report, _) = run.apply(&resolve(&root, &stack, &vars)).await;
    assert_eq!(
        changed(&report),
        [("user-service/api".to_string(), Action::Update)]
    );
    assert_eq!(task_definition_of(&api_arn, &cluster).await, second);

    // 6. A new component: only it is created.
    let dir = root.join(format!(
        "stacks/{stack}/services/user-service/components/events"
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("sqs.yaml"),
        format!("apiVersion: components.panka.io/v1\nkind: SQS\nmetadata: {{name: events, service: user-service, stack: {stack}}}\nspec:\n  visibilityTimeout: 45\n"),
    )
    .expect("write");
    let (report, _) = run.apply(&resolve(&root, &stack, &vars)).await;
    assert_eq!(
        changed(&report),
        [("user-service/events".to_string(), Action::Create)]
    );

    // 7. Removed again: deleted.
    std::fs::remove_dir_all(&dir).expect("rm");
    let (report, _) = run.apply(&resolve(&root, &stack, &vars)).await;
    assert_eq!(
        changed(&report),
        [("user-service/events".to_string(), Action::Delete)]
    );

    // 8. Destroy (stateful kinds need --allow-destroy): nothing tagged with this stack remains.
    let (mut empty, _) = resolve(&root, &stack, &vars);
    empty.components.clear();
    let none = Graph {
        waves: vec![],
        edges: vec![],
    };
    let engine = run.engine(&empty).await;
    let refused = engine
        .apply(&empty, &none, &run.options, &mut |_| true, &Quiet)
        .await;
    assert!(
        refused.is_err(),
        "destroying RDS, S3, DynamoDB and ElastiCache needs --allow-destroy"
    );
    let options = EngineOptions {
        allow_destroy: true,
        ..run.options.clone()
    };
    // Everything goes but the ElastiCache group, which moto never finishes deleting: the
    // destroy says so, keeps it in state for the next run, and goes on with the rest.
    let err = engine
        .apply(&empty, &none, &options, &mut |_| true, &Quiet)
        .await
        .expect_err("the cache is still being deleted");
    let cache = ComponentId::new("notification-service", "cache");
    match &err {
        EngineError::Driver(e @ DriverError::StillDeleting { component, .. }) => {
            assert_eq!(component, &cache, "{err}");
            assert!(e.to_string().contains("deleting"), "{err}");
        }
        other => panic!("expected the cache still being deleted, got {other}"),
    }
    let left_in_state = run
        .backends
        .backends
        .state
        .read(&StateKey::new(&stack, "development").expect("key"))
        .await
        .expect("state read")
        .expect("state exists");
    let kept: Vec<String> = left_in_state.document.components.keys().cloned().collect();
    // The cache, and the network it runs on: deleted after its dependants, so not yet.
    assert_eq!(
        kept,
        ["_stack/network".to_string(), cache.to_string()],
        "only the cache and what it needs stay recorded"
    );
    // A group still being deleted counts as gone: planning the stack again creates the cache
    // (its create waits for the old group to disappear), it does not replace it.
    let (d, g) = resolve(&root, &stack, &[("USER_API_VERSION", "v3.5.0")]);
    let again = run
        .engine(&d)
        .await
        .prepare(&d, &g, &run.options)
        .await
        .expect("plan");
    let cache_plan = again.plan.all().find(|p| p.id == cache).expect("planned");
    assert_eq!(cache_plan.action, Action::Create, "{cache_plan:?}");

    let queues = sqs
        .list_queues()
        .queue_name_prefix(&stack)
        .send()
        .await
        .expect("list")
        .queue_urls()
        .to_vec();
    assert!(queues.is_empty(), "{queues:?}");
    // Every page: the emulator is shared by every test of this binary.
    let mut tables = Vec::new();
    let mut pages = ddb.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        tables.extend(page.expect("tables").table_names().to_vec());
    }
    assert!(!tables.iter().any(|t| t.starts_with(&stack)), "{tables:?}");
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let buckets = s3.list_buckets().send().await.expect("buckets");
    assert!(!buckets
        .buckets()
        .iter()
        .any(|b| b.name().is_some_and(|n| n.starts_with(&stack))));
    let mut pages = rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        assert!(!page.expect("rds").db_instances().iter().any(|d| d
            .db_instance_identifier()
            .is_some_and(|i| i.starts_with(&stack))));
    }
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let clusters = ecs
        .describe_clusters()
        .clusters(&cluster)
        .send()
        .await
        .expect("clusters");
    assert!(
        clusters
            .clusters()
            .iter()
            .all(|c| c.status() != Some("ACTIVE")),
        "{clusters:?}"
    );
    // Nothing else tagged with the stack is left (the cache's group and its subnet group wait
    // for a deletion moto never completes; moto cannot delete cache subnet groups at all).
    let left: Vec<String> = tagged_with_stack(&stack)
        .await
        .into_iter()
        .filter(|arn| !arn.contains(":elasticache:"))
        .collect();
    assert!(
        left.is_empty(),
        "destroy left panka-tagged resources: {left:?}"
    );
}

/// Every resource still carrying `panka:stack = stack`, by the Resource Groups Tagging API
/// (one listing across services, as an auditor would look), with ECS clusters and services
/// that AWS keeps as INACTIVE after deletion left out.
async fn tagged_with_stack(stack: &str) -> Vec<String> {
    let sdk = emulator().sdk_config().await;
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&sdk);
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = tagging
            .get_resources()
            .tag_filters(
                aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                    .key("panka:stack")
                    .values(stack)
                    .build(),
            )
            .set_pagination_token(token.clone())
            .send()
            .await
            .expect("tagging API");
        arns.extend(
            out.resource_tag_mapping_list()
                .iter()
                .filter_map(|m| m.resource_arn().map(str::to_string)),
        );
        token = out
            .pagination_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut left = Vec::new();
    for arn in arns {
        if arn.contains(":cluster/") {
            let gone = ecs
                .describe_clusters()
                .clusters(&arn)
                .send()
                .await
                .map(|o| o.clusters().iter().all(|c| c.status() != Some("ACTIVE")))
                .unwrap_or(true);
            if gone {
                continue;
            }
        }
        if arn.contains(":service/") {
            let cluster = arn.rsplit('/').nth(1).unwrap_or_default().to_string();
            let gone = ecs
                .describe_services()
                .cluster(cluster)
                .services(&arn)
                .send()
                .await
                .map(|o| o.services().iter().all(|s| s.status() != Some("ACTIVE")))
                .unwrap_or(true);
            if gone {
                continue;
            }
        }
        left.push(arn);
    }
    left
}

#[tokio::test]
async fn a_rollout_that_never_settles_fails_the_apply_and_the_next_apply_waits_for_it_again() {
    let stack = unique_name("us");
    let repo = renamed_example("user-platform", &stack);
    let root: PathBuf = repo.path().to_path_buf();
    create_secrets(&stack).await;
    let run = Run::new().await;

    // The emulator starts a new service with MOTO_ECS_SERVICE_RUNNING (2) tasks whatever it
    // asks for: three replicas never all run, like a rollout stuck on a crashing image.
    edit(
        &root,
        &format!("stacks/{stack}/services/user-service/components/api/infra.yaml"),
        "replicas: 2",
        "replicas: 3",
    );
    let impatient = EngineOptions {
        health_timeout: Duration::from_millis(400),
        ..run.options.clone()
    };
    let api = ComponentId::new("user-service", "api");
    let (d, g) = resolve(&root, &stack, &[]);
    let engine = run.engine(&d).await;
    let err = engine
        .apply(&d, &g, &impatient, &mut |_| true, &Quiet)
        .await
        .expect_err("the rollout never completes");
    let msg = err.to_string();
    assert!(
        msg.contains(&api.to_string()) && msg.contains("did not become healthy"),
        "{msg}"
    );

    // Nothing left to change on it, but it is still not settled: the next apply neither
    // reports success nor changes anything; it waits again and fails the same way, before
    // the wave that needs its outputs.
    let engine = run.engine(&d).await;
    let prepared = engine.prepare(&d, &g, &impatient).await.expect("plan");
    let api_plan = prepared.plan.all().find(|p| p.id == api).expect("planned");
    assert_eq!(api_plan.action, Action::NoOp, "{api_plan:?}");
    let err = engine
        .apply(&d, &g, &impatient, &mut |_| true, &Quiet)
        .await
        .expect_err("still not settled");
    assert!(err.to_string().contains("did not become healthy"), "{err}");
    assert_eq!(engine.calls().mutating(), 0);
}

#[tokio::test]
async fn the_second_example_stack_applies_in_development_and_converges() {
    let stack = unique_name("np");
    let repo = renamed_example("notification-platform", &stack);
    let root: PathBuf = repo.path().to_path_buf();
    create_secrets(&stack).await;
    let run = Run::new().await;

    let (report, _) = run.apply(&resolve(&root, &stack, &[])).await;
    let created: Vec<String> = report
        .plan
        .all()
        .filter(|p| p.action == Action::Create && !p.id.service.starts_with('_'))
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(
        created,
        [
            "email-service/queue",
            "email-service/database",
            "email-service/api"
        ],
        "{:?}",
        changed(&report)
    );

    // Checked directly: the API's task runs the image of VERSION with the secret by ARN.
    let api = &report.outputs[&ComponentId::new("email-service", "api")];
    let cluster = &report.outputs[&ComponentId::new("_stack", "cluster")]["name"];
    let sdk = emulator().sdk_config().await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let td = ecs
        .describe_task_definition()
        .task_definition(task_definition_of(&api["arn"], cluster).await)
        .send()
        .await
        .expect("task definition");
    let container = &td
        .task_definition()
        .expect("present")
        .container_definitions()[0];
    assert!(
        container
            .image()
            .is_some_and(|i| i.ends_with("/email-api:v1.0.0")),
        "{container:?}"
    );
    let secret = &container.secrets()[0];
    assert_eq!(secret.name(), "DATABASE_PASSWORD");
    assert!(
        secret.value_from().starts_with("arn:aws:secretsmanager:")
            && secret
                .value_from()
                .contains(&format!("/stacks/{stack}/email-service/db-password")),
        "{secret:?}"
    );

    let (report, mutating) = run.apply(&resolve(&root, &stack, &[])).await;
    assert!(changed(&report).is_empty(), "{:?}", changed(&report));
    assert_eq!(mutating, 0);
}
