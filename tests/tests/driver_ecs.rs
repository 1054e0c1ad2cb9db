//! The ECS driver (MicroService, Worker) and the stack-shared resources against the local
//! emulator through the real SDK: shared network/cluster/load balancer/execution role, create
//! checked with direct SDK reads, converged observe, image/config/scaling changes, secret list
//! changes, drift of the task count made as a person in the console would, and delete.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ServiceField, TaskDefinitionField};
use panka_controller::driver::ecs::EcsDriver;
use panka_controller::driver::stack::{alb_id, cluster_id, execution_role_id, network_id};
use panka_controller::driver::{is_mutating, Applied, Ctx, Driver, DriverError, Outputs};
use panka_controller::validate::{load_stack, plan_input};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent, DesiredStack};
use panka_core::plan::{diff, FieldValue, Health};
use panka_core::resolve::Options;
use panka_crds::spec::SecretRef;
use panka_tests::emulator::{
    assert_converged_tags, emulator, ensure_secrets, ignoring_tags, repo_root, unique_name,
    HAND_IGNORED, HAND_TAGS,
};
use panka_tests::stack::{refreshed, StackResources};

/// The example `user-platform` stack in `development`, renamed to a unique stack so tests
/// sharing the emulator never see each other's resources.
fn example_stack() -> DesiredStack {
    let loaded = load_stack(
        &repo_root().join("examples/deployment-repo"),
        "user-platform",
    )
    .unwrap_or_else(|_| panic!("the example loads"));
    let (mut desired, _) = plan_input(&loaded, "development", &Options::default())
        .unwrap_or_else(|d| panic!("the example resolves: {d:?}"));
    let name = unique_name("t");
    desired.infra.cluster = Some(format!("{name}-development"));
    desired.name = name;
    // The stack-wide resources are named after the stack: derive them again.
    refreshed(desired)
}

fn id(s: &str) -> ComponentId {
    ComponentId::try_from(s.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

struct Fixture {
    stack: DesiredStack,
    ctx: Ctx,
    shared: StackResources,
    api: EcsDriver,
    worker: EcsDriver,
    outputs: Outputs,
    shared_applied: BTreeMap<ComponentId, Applied>,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    scaling: aws_sdk_applicationautoscaling::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
}

impl Fixture {
    async fn new() -> Fixture {
        let sdk = emulator().sdk_config().await;
        let stack = example_stack();
        ensure_secrets(&sdk, &stack).await;
        let ctx = Ctx::new(sdk.clone(), &stack, false);
        let shared = StackResources::new(&ctx);
        let shared_applied = shared.apply(&stack).await;
        // What the engine does: shared outputs first, then those of the components applied
        // before (made up here: other drivers' tests cover them).
        let mut outputs: Outputs = shared_applied
            .iter()
            .map(|(k, v)| (k.clone(), v.outputs.clone()))
            .collect();
        let fake = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        outputs.insert(
            id("notification-service/database"),
            fake(&[("endpoint", "notif-db.example.internal:5432")]),
        );
        outputs.insert(
            id("notification-service/queue"),
            fake(&[(
                "url",
                "https://sqs.us-east-1.amazonaws.com/123456789012/notif-queue",
            )]),
        );
        outputs.insert(
            id("notification-service/cache"),
            fake(&[("endpoint", "notif-cache.example.internal")]),
        );
        outputs.insert(
            id("notification-service/preferences"),
            fake(&[("name", "prefs-table")]),
        );
        outputs.insert(
            id("notification-service/templates"),
            fake(&[("name", "templates-bucket")]),
        );
        outputs.insert(
            id("user-service/api"),
            fake(&[("url", "http://users.example.internal/user-service/api")]),
        );
        outputs.insert(
            id("user-service/database"),
            fake(&[("endpoint", "users-db.example.internal:5432")]),
        );
        Fixture {
            api: EcsDriver::microservice(&ctx),
            worker: EcsDriver::worker(&ctx),
            stack,
            ctx,
            shared,
            outputs,
            shared_applied,
            ecs: aws_sdk_ecs::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            scaling: aws_sdk_applicationautoscaling::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
        }
    }

    fn component(&self, s: &str) -> DesiredComponent {
        self.stack.components[&id(s)].clone()
    }

    fn cluster(&self) -> String {
        self.shared_applied[&cluster_id()].outputs["name"].clone()
    }

    /// A driver with an empty task definition cache, as a new process would have.
    fn fresh_api(&self) -> EcsDriver {
        EcsDriver::microservice(&self.ctx)
    }

    /// Every call so far (reads too), by operation.
    fn calls(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((_, op), n) in self.ctx.calls.snapshot() {
            *out.entry(op).or_default() += n;
        }
        out
    }

    fn mutations(&self) -> BTreeMap<String, u64> {
        self.ctx
            .calls
            .snapshot()
            .into_iter()
            .filter(|((_, op), _)| is_mutating(op))
            .map(|((_, op), n)| (op, n))
            .collect()
    }

    async fn service(&self, name: &str) -> aws_sdk_ecs::types::Service {
        self.ecs
            .describe_services()
            .cluster(self.cluster())
            .services(name)
            .include(ServiceField::Tags)
            .send()
            .await
            .expect("describe services")
            .services()
            .first()
            .cloned()
            .expect("service exists")
    }

    async fn task_definition(
        &self,
        arn: &str,
    ) -> (aws_sdk_ecs::types::TaskDefinition, BTreeMap<String, String>) {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .expect("describe task definition");
        let tags = out
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        (
            out.task_definition().cloned().expect("task definition"),
            tags,
        )
    }
}

/// What a mutating-call counter gained between two snapshots.
fn gained(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(op, n)| {
            let d = n - before.get(op).copied().unwrap_or(0);
            (d > 0).then(|| (op.clone(), d))
        })
        .collect()
}

fn ops(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn ecs_tags(tags: &[aws_sdk_ecs::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

#[tokio::test]
async fn shared_resources_are_looked_up_created_tagged_and_converged() {
    let f = Fixture::new().await;
    let net = &f.shared_applied[&network_id()].outputs;

    // The default VPC, all its subnets, its default security group (direct EC2 reads).
    let vpcs = f
        .ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("is-default")
                .values("true")
                .build(),
        )
        .send()
        .await
        .expect("vpcs");
    let vpc = vpcs.vpcs()[0].vpc_id().expect("vpc id");
    assert_eq!(net["vpcId"], vpc);
    let subnets = f
        .ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .expect("subnets");
    let mut want: Vec<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id())
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(net["subnets"], want.join(","));
    assert!(net["securityGroups"].starts_with("sg-"), "{net:?}");

    // The cluster, with the stack's tags.
    let cluster = f
        .ecs
        .describe_clusters()
        .clusters(f.cluster())
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await
        .expect("clusters");
    let c = &cluster.clusters()[0];
    assert_eq!(c.status(), Some("ACTIVE"));
    let tags = ecs_tags(c.tags());
    assert_eq!(tags["panka:stack"], f.stack.name);
    assert_eq!(tags["panka:managed-by"], "panka");
    assert!(!tags.contains_key("panka:component"));

    // The load balancer, internet-facing in the default VPC, with a 404 HTTP:80 listener.
    let alb = &f.shared_applied[&alb_id()].outputs;
    let lbs = f
        .elb
        .describe_load_balancers()
        .load_balancer_arns(&alb["arn"])
        .send()
        .await
        .expect("load balancers");
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.dns_name(), Some(alb["dnsName"].as_str()));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let listeners = f
        .elb
        .describe_listeners()
        .load_balancer_arn(&alb["arn"])
        .send()
        .await
        .expect("listeners");
    let l = &listeners.listeners()[0];
    assert_eq!(l.listener_arn(), Some(alb["listenerArn"].as_str()));
    assert_eq!(l.port(), Some(80));
    let fixed = l.default_actions()[0]
        .fixed_response_config()
        .expect("fixed response");
    assert_eq!(fixed.status_code(), Some("404"));
    let lb_tags = f
        .elb
        .describe_tags()
        .resource_arns(&alb["arn"])
        .send()
        .await
        .expect("tags");
    let lb_tags: BTreeMap<_, _> = lb_tags.tag_descriptions()[0]
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(lb_tags.get("panka:stack"), Some(&f.stack.name.as_str()));

    // Converged: observe matches desired, and neither observe nor a second ensure mutates.
    let before = f.ctx.calls.mutating();
    let seen = f.shared.observe(&f.stack).await;
    for (id, want) in f.shared.desired(&f.stack, &f.outputs) {
        let o = &seen[&id];
        assert!(o.exists && o.owned, "{id}: {o:?}");
        assert_eq!(diff(&want, o), vec![], "{id}");
        assert_eq!(o.outputs, f.shared_applied[&id].outputs, "{id}");
    }
    f.shared.apply(&f.stack).await;
    assert_eq!(
        f.ctx.calls.mutating(),
        before,
        "converged: nothing to change"
    );

    // Delete the load balancer, the cluster and the role (twice: idempotent); the network stays.
    for _ in 0..2 {
        for id in [alb_id(), cluster_id(), execution_role_id(), network_id()] {
            f.shared
                .delete(&f.stack, &id, &f.shared_applied[&id].identifiers)
                .await;
        }
    }
    let seen = f.shared.observe(&f.stack).await;
    assert!(!seen[&alb_id()].exists && !seen[&cluster_id()].exists);
    assert!(!seen[&execution_role_id()].exists);
    assert!(seen[&network_id()].exists);
}

#[tokio::test]
async fn a_microservice_is_created_as_specified_and_observed_converged() {
    let f = Fixture::new().await;
    let api = f.component("notification-service/api");
    let applied = f
        .api
        .create(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        )
        .await
        .expect("create");
    let name = format!("{}-development-notification-service-api", f.stack.name);
    assert_eq!(applied.outputs["name"], name);
    let dns = &f.shared_applied[&alb_id()].outputs["dnsName"];
    assert_eq!(
        applied.outputs["url"],
        format!("http://{dns}/notification-service/api")
    );
    assert_eq!(
        applied.outputs["logGroup"],
        format!(
            "/panka/{}/development/notification-service/api",
            f.stack.name
        )
    );

    // The task definition, read directly.
    let (td, td_tags) = f
        .task_definition(&applied.outputs["taskDefinitionArn"])
        .await;
    assert_eq!(td.family(), Some(name.as_str()));
    assert_eq!((td.cpu(), td.memory()), (Some("256"), Some("512")));
    assert_eq!(td.network_mode().map(|m| m.as_str()), Some("awsvpc"));
    assert_eq!(td_tags["panka:component"], "api");
    let c = &td.container_definitions()[0];
    assert_eq!(
        c.image(),
        Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/notification-api:v1.2.0")
    );
    assert_eq!(c.entry_point(), ["/app/notification-api"]);
    assert_eq!(c.command(), ["--config=/config/app.yaml"]);
    assert_eq!(c.port_mappings()[0].container_port(), Some(8080));
    let env: BTreeMap<&str, &str> = c
        .environment()
        .iter()
        .filter_map(|kv| Some((kv.name()?, kv.value()?)))
        .collect();
    assert_eq!(env["SERVICE_NAME"], "notification-api");
    assert_eq!(env["DATABASE_HOST"], "notif-db.example.internal:5432");
    assert_eq!(
        env["QUEUE_URL"],
        "https://sqs.us-east-1.amazonaws.com/123456789012/notif-queue"
    );
    assert_eq!(
        env["USER_SERVICE_URL"],
        "http://users.example.internal/user-service/api"
    );
    assert_eq!(env["PANKA_CONFIG_DIR"], "/config");
    assert_eq!(env["PANKA_CONFIG_FILES"], "app.yaml=PANKA_CONFIG_APP_YAML");
    assert!(!env["PANKA_CONFIG_APP_YAML"].is_empty());
    // Secrets by full ARN (ECS needs them; Secrets Manager adds a random suffix to names).
    let sm = aws_sdk_secretsmanager::Client::new(&emulator().sdk_config().await);
    let mut arn_of = BTreeMap::new();
    for name in [
        "/stacks/user-platform/notification-service/db-password",
        "/stacks/user-platform/notification-service/smtp-password",
    ] {
        let out = sm
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .expect("describe secret");
        let arn = out.arn().expect("arn").to_string();
        assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");
        arn_of.insert(name, arn);
    }
    let secrets: BTreeMap<&str, &str> = c
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    let db = &arn_of["/stacks/user-platform/notification-service/db-password"];
    let smtp = &arn_of["/stacks/user-platform/notification-service/smtp-password"];
    assert_eq!(
        secrets,
        BTreeMap::from([
            ("DATABASE_PASSWORD", db.as_str()),
            ("SMTP_PASSWORD", smtp.as_str())
        ])
    );
    let log = c.log_configuration().expect("log configuration");
    assert_eq!(log.log_driver().as_str(), "awslogs");
    assert_eq!(
        log.options().expect("options")["awslogs-group"],
        applied.outputs["logGroup"]
    );
    let hc = c.health_check().expect("health check");
    assert!(
        hc.command()[1].contains("localhost:8080/health/live"),
        "{hc:?}"
    );
    assert_eq!(hc.interval(), Some(30));
    assert!(c
        .docker_labels()
        .is_some_and(|l| l.get("PANKA_CONFIG_HASH").is_some_and(|h| h.len() == 64)));

    // The service.
    let svc = f.service(&name).await;
    assert_eq!(svc.desired_count(), 2, "autoscaling minimum");
    assert_eq!(svc.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let breaker = svc
        .deployment_configuration()
        .and_then(|d| d.deployment_circuit_breaker())
        .expect("circuit breaker");
    assert!(breaker.enable() && breaker.rollback());
    let vpc = svc
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .expect("awsvpc");
    let net = &f.shared_applied[&network_id()].outputs;
    assert_eq!(vpc.subnets().join(","), net["subnets"]);
    assert_eq!(vpc.security_groups().join(","), net["securityGroups"]);
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("ENABLED"));
    let tags = ecs_tags(svc.tags());
    assert_eq!(tags["panka:service"], "notification-service");
    assert_eq!(tags["panka:component"], "api");
    assert_eq!(svc.propagate_tags().map(|p| p.as_str()), Some("SERVICE"));
    let attached = &svc.load_balancers()[0];
    assert_eq!(attached.container_name(), Some("api"));
    assert_eq!(attached.container_port(), Some(8080));

    // Target group and listener rule.
    let tg_arn = attached.target_group_arn().expect("target group");
    let tgs = f
        .elb
        .describe_target_groups()
        .target_group_arns(tg_arn)
        .send()
        .await
        .expect("target groups");
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.port(), Some(8080));
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
    assert_eq!(tg.health_check_path(), Some("/health/ready"));
    assert_eq!(tg.vpc_id(), Some(net["vpcId"].as_str()));
    let rules = f
        .elb
        .describe_rules()
        .listener_arn(&f.shared_applied[&alb_id()].outputs["listenerArn"])
        .send()
        .await
        .expect("rules");
    let rule = rules
        .rules()
        .iter()
        .find(|r| {
            r.actions()
                .iter()
                .any(|a| a.target_group_arn() == Some(tg_arn))
        })
        .expect("a rule forwards to the target group");
    let path = rule.conditions()[0]
        .path_pattern_config()
        .map(|p| p.values().to_vec())
        .unwrap_or_default();
    assert_eq!(path, ["/notification-service/api/*"]);

    // Autoscaling: target 2..10, CPU at 70 %.
    let resource = format!("service/{}/{name}", f.cluster());
    let targets = f
        .scaling
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_ids(&resource)
        .send()
        .await
        .expect("scalable targets");
    let t = &targets.scalable_targets()[0];
    assert_eq!((t.min_capacity(), t.max_capacity()), (2, 10));
    let policies = f
        .scaling
        .describe_scaling_policies()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_id(&resource)
        .send()
        .await
        .expect("policies");
    let p = policies
        .scaling_policies()
        .iter()
        .find(|p| p.resource_id() == resource)
        .expect("a policy");
    let cfg = p
        .target_tracking_scaling_policy_configuration()
        .expect("target tracking");
    assert_eq!(cfg.target_value(), 70.0);
    assert_eq!(
        cfg.predefined_metric_specification()
            .map(|m| m.predefined_metric_type().as_str()),
        Some("ECSServiceAverageCPUUtilization")
    );

    // The log group, with the stack's retention and tags.
    let groups = f
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&applied.outputs["logGroup"])
        .send()
        .await
        .expect("log groups");
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(14));

    // Converged, as seen by a driver that has never seen the task definition.
    let fresh = f.fresh_api();
    let before = f.mutations();
    let seen = fresh.observe(&api.id, None).await.expect("observe");
    assert!(seen.exists && seen.owned);
    // As the engine does before planning: secret names become ARNs (a read).
    let lookups = fresh.look_up(&[&api]).await.expect("look up");
    assert_eq!(
        diff(&fresh.desired(&api, &f.outputs, &lookups), &seen),
        vec![]
    );
    assert_eq!(seen.outputs, applied.outputs);
    assert!(
        matches!(seen.health, Health::Healthy | Health::Progressing),
        "{:?}",
        seen.health
    );
    // Nothing to change: an update with no diffs mutates nothing.
    fresh
        .update(&api, &f.outputs, &lookups, &[], &seen)
        .await
        .expect("no-op update");
    assert_eq!(gained(&before, &f.mutations()), BTreeMap::new());
}

#[tokio::test]
async fn missing_outputs_are_known_after_apply_and_refused_by_create() {
    let f = Fixture::new().await;
    let api = f.component("notification-service/api");
    let mut outputs = f.outputs.clone();
    outputs.remove(&id("notification-service/queue"));
    outputs.remove(&network_id());
    let want = f.api.desired(
        &api,
        &outputs,
        &f.api.look_up(&[&api]).await.expect("look up"),
    );
    for field in ["environment.QUEUE_URL", "network.subnets"] {
        assert!(
            matches!(want.fields[field], FieldValue::Unknown(_)),
            "{field}: {:?}",
            want.fields[field]
        );
    }
    // The config files are known whatever the plain variables wait for.
    assert!(matches!(want.fields["configHash"], FieldValue::Known(_)));
    assert_eq!(
        want.fields["environment.SERVICE_NAME"].display(),
        "notification-api"
    );
    let before = f.mutations();
    let err = f
        .api
        .create(
            &api,
            &outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("QUEUE_URL"), "{err}");
    assert_eq!(
        gained(&before, &f.mutations()),
        BTreeMap::new(),
        "nothing was created: {err}"
    );
}

#[tokio::test]
async fn an_image_change_registers_a_revision_and_updates_only_the_service() {
    let f = Fixture::new().await;
    let mut api = f.component("notification-service/api");
    let applied = f
        .api
        .create(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        )
        .await
        .expect("create");
    let ComponentSpec::MicroService(spec) = &mut api.spec else {
        panic!("not a MicroService")
    };
    spec.image.tag = Some("v1.3.0".into());

    let seen = f.api.observe(&api.id, None).await.expect("observe");
    let diffs = diff(
        &f.api.desired(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        ),
        &seen,
    );
    let fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["image"], "{diffs:?}");
    assert!(diffs[0]
        .new
        .as_ref()
        .is_some_and(|v| v.display().ends_with(":v1.3.0")));

    let before = f.mutations();
    let updated = f
        .api
        .update(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
            &diffs,
            &seen,
        )
        .await
        .expect("update");
    assert_eq!(
        gained(&before, &f.mutations()),
        ops(&[("RegisterTaskDefinition", 1), ("UpdateService", 1)])
    );
    assert_ne!(
        updated.outputs["taskDefinitionArn"],
        applied.outputs["taskDefinitionArn"]
    );
    let svc = f.service(&applied.outputs["name"]).await;
    assert_eq!(
        svc.task_definition(),
        Some(updated.outputs["taskDefinitionArn"].as_str())
    );
    let (td, _) = f
        .task_definition(&updated.outputs["taskDefinitionArn"])
        .await;
    assert!(td.container_definitions()[0]
        .image()
        .is_some_and(|i| i.ends_with(":v1.3.0")));
    assert_eq!(td.revision(), 2);

    let seen = f.fresh_api().observe(&api.id, None).await.expect("observe");
    assert_eq!(
        diff(
            &f.api.desired(
                &api,
                &f.outputs,
                &f.api.look_up(&[&api]).await.expect("look up")
            ),
            &seen
        ),
        vec![]
    );
}

#[tokio::test]
async fn a_config_change_makes_a_new_revision() {
    let f = Fixture::new().await;
    let mut api = f.component("notification-service/api");
    let applied = f
        .api
        .create(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        )
        .await
        .expect("create");
    api.configs[0].content = api.configs[0]
        .content
        .replace("maxRetries: 3", "maxRetries: 5");
    assert!(api.configs[0].content.contains("maxRetries: 5"));

    let seen = f.api.observe(&api.id, None).await.expect("observe");
    let diffs = diff(
        &f.api.desired(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        ),
        &seen,
    );
    let fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["configHash"], "{diffs:?}");
    let before = f.mutations();
    let updated = f
        .api
        .update(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
            &diffs,
            &seen,
        )
        .await
        .expect("update");
    assert_eq!(
        gained(&before, &f.mutations()),
        ops(&[("RegisterTaskDefinition", 1), ("UpdateService", 1)])
    );
    let (td, _) = f
        .task_definition(&updated.outputs["taskDefinitionArn"])
        .await;
    let old = f
        .task_definition(&applied.outputs["taskDefinitionArn"])
        .await
        .0;
    let label = |t: &aws_sdk_ecs::types::TaskDefinition| {
        t.container_definitions()[0]
            .docker_labels()
            .and_then(|l| l.get("PANKA_CONFIG_HASH").cloned())
    };
    assert_ne!(label(&td), label(&old), "the config hash changed");
}

#[tokio::test]
async fn a_replica_change_updates_the_service_without_a_new_revision() {
    let f = Fixture::new().await;
    let mut api = f.component("user-service/api");
    let applied = f
        .api
        .create(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        )
        .await
        .expect("create");
    let svc = f.service(&applied.outputs["name"]).await;
    assert_eq!(svc.desired_count(), 2);
    assert!(
        svc.load_balancers().len() == 1,
        "user-service/api is load balanced"
    );
    api.infra
        .as_mut()
        .and_then(|i| i.scaling.as_mut())
        .expect("scaling")
        .replicas = Some(3);

    let seen = f.api.observe(&api.id, None).await.expect("observe");
    let diffs = diff(
        &f.api.desired(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        ),
        &seen,
    );
    let fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["desiredCount"], "{diffs:?}");
    let before = f.mutations();
    let updated = f
        .api
        .update(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
            &diffs,
            &seen,
        )
        .await
        .expect("update");
    assert_eq!(
        gained(&before, &f.mutations()),
        ops(&[("UpdateService", 1)])
    );
    assert_eq!(
        updated.outputs["taskDefinitionArn"],
        applied.outputs["taskDefinitionArn"]
    );
    let svc = f.service(&applied.outputs["name"]).await;
    assert_eq!(svc.desired_count(), 3);
    let seen = f.api.observe(&api.id, None).await.expect("observe");
    assert_eq!(
        diff(
            &f.api.desired(
                &api,
                &f.outputs,
                &f.api.look_up(&[&api]).await.expect("look up")
            ),
            &seen
        ),
        vec![]
    );
}

#[tokio::test]
async fn a_console_change_of_the_task_count_is_drift_unless_autoscaled() {
    let f = Fixture::new().await;
    let fixed = f.component("user-service/api");
    let scaled = f.component("notification-service/api");
    let a = f
        .api
        .create(
            &fixed,
            &f.outputs,
            &f.api.look_up(&[&fixed]).await.expect("look up"),
        )
        .await
        .expect("create fixed");
    let b = f
        .api
        .create(
            &scaled,
            &f.outputs,
            &f.api.look_up(&[&scaled]).await.expect("look up"),
        )
        .await
        .expect("create scaled");
    for applied in [&a, &b] {
        f.ecs
            .update_service()
            .cluster(f.cluster())
            .service(&applied.outputs["name"])
            .desired_count(7)
            .send()
            .await
            .expect("console change");
    }

    let seen = f.api.observe(&fixed.id, None).await.expect("observe");
    let diffs = diff(
        &f.api.desired(
            &fixed,
            &f.outputs,
            &f.api.look_up(&[&fixed]).await.expect("look up"),
        ),
        &seen,
    );
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].field, "desiredCount");
    assert_eq!(diffs[0].old, Some(FieldValue::known(7)));
    f.api
        .update(
            &fixed,
            &f.outputs,
            &f.api.look_up(&[&fixed]).await.expect("look up"),
            &diffs,
            &seen,
        )
        .await
        .expect("remediate");
    assert_eq!(f.service(&a.outputs["name"]).await.desired_count(), 2);

    let seen = f.api.observe(&scaled.id, None).await.expect("observe");
    assert_eq!(seen.fields["desiredCount"], FieldValue::known(7));
    assert_eq!(
        diff(
            &f.api.desired(
                &scaled,
                &f.outputs,
                &f.api.look_up(&[&scaled]).await.expect("look up")
            ),
            &seen
        ),
        vec![],
        "the autoscaler owns the count"
    );
}

impl Fixture {
    /// Tags, by hand as in the console, every resource of a MicroService with a load balancer
    /// (service, target group, listener rule, log group) and the shared ones that carry tags
    /// (cluster, load balancer, execution role).
    async fn tag_by_hand(&self, applied: &Applied, tags: &[(&str, &str)]) {
        let ecs_tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(*k).value(*v).build())
            .collect();
        let cluster_arn = &self.shared_applied[&cluster_id()].outputs["arn"];
        for arn in [&applied.outputs["arn"], cluster_arn] {
            self.ecs
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(ecs_tags.clone()))
                .send()
                .await
                .expect("ECS resource tagged by hand");
        }
        let elb_tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
            })
            .collect();
        for arn in [
            &applied.identifiers["targetGroupArn"],
            &applied.identifiers["ruleArn"],
            &self.shared_applied[&alb_id()].outputs["arn"],
        ] {
            self.elb
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(elb_tags.clone()))
                .send()
                .await
                .expect("ELB resource tagged by hand");
        }
        let log_group = self.log_group_arn(&applied.outputs["logGroup"]).await;
        let mut req = self.logs.tag_resource().resource_arn(log_group);
        for (k, v) in tags {
            req = req.tags(*k, *v);
        }
        req.send().await.expect("log group tagged by hand");
        let iam_tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .expect("IAM tag")
            })
            .collect();
        self.iam
            .tag_role()
            .role_name(&self.shared_applied[&execution_role_id()].outputs["name"])
            .set_tags(Some(iam_tags))
            .send()
            .await
            .expect("role tagged by hand");
    }

    async fn log_group_arn(&self, name: &str) -> String {
        self.logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .expect("log groups")
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .and_then(|g| g.log_group_arn())
            .expect("the log group exists")
            .to_string()
    }

    async fn elb_tags(&self, arn: &str) -> BTreeMap<String, String> {
        self.elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .expect("tags")
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect()
    }
}

#[tokio::test]
async fn a_tag_added_by_hand_is_drift_and_removed_but_ignored_ones_are_kept() {
    let f = Fixture::new().await;
    let ctx = ignoring_tags(&f.ctx, &HAND_IGNORED);
    let (api, shared) = (EcsDriver::microservice(&ctx), StackResources::new(&ctx));
    let mut stack = f.stack.clone();
    stack.infra.ignore_tags = ctx.infra.ignore_tags.clone();
    let stack = refreshed(stack);
    let c = f.component("user-service/api");
    let lookups = api.look_up(&[&c]).await.expect("look up");
    let applied = api.create(&c, &f.outputs, &lookups).await.expect("create");
    let desired = api.desired(&c, &f.outputs, &lookups);
    let shared_diffs = || async {
        let seen = shared.observe(&stack).await;
        let mut out = Vec::new();
        for (id, want) in shared.desired(&stack, &f.outputs) {
            for d in diff(&want, &seen[&id]) {
                out.push(format!("{id} {}", d.field));
            }
        }
        out
    };

    // Tags matching `ignoreTags` are another system's: no difference anywhere.
    f.tag_by_hand(&applied, &HAND_TAGS[1..]).await;
    let seen = api.observe(&c.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "ignored tags are not drift");
    assert_eq!(shared_diffs().await, Vec::<String>::new());

    // Any other tag is: on the service, its target group and its rule (the log group is not
    // compared by plans), and on the shared resources.
    f.tag_by_hand(&applied, &HAND_TAGS[..1]).await;
    let seen = api.observe(&c.id, None).await.expect("observe");
    let diffs = diff(&desired, &seen);
    let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "loadBalancer.rule.tags",
            "loadBalancer.targetGroup.tags",
            "tags"
        ],
        "{diffs:?}"
    );
    assert_eq!(
        shared_diffs().await,
        [
            "_stack/alb tags",
            "_stack/cluster tags",
            "_stack/execution-role tags"
        ]
    );

    // By operation, whatever the service (ECS and CloudWatch Logs both name theirs UntagResource).
    let mutations = || {
        f.calls()
            .into_iter()
            .filter(|(op, _)| is_mutating(op))
            .collect::<BTreeMap<_, _>>()
    };
    let before = mutations();
    api.update(&c, &f.outputs, &lookups, &diffs, &seen)
        .await
        .expect("update");
    assert_eq!(
        gained(&before, &mutations()),
        ops(&[("RemoveTags", 2), ("UntagResource", 2)]),
        "only the tags made by hand go (from the target group and the rule; the service and the \
         log group): no new revision, no service update"
    );
    shared.apply(&stack).await;

    let seen = api.observe(&c.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "converged");
    assert_eq!(
        shared_diffs().await,
        Vec::<String>::new(),
        "shared converged"
    );
    let svc = f.service(&applied.outputs["name"]).await;
    assert_converged_tags(&ecs_tags(svc.tags()), "ECS service");
    assert_converged_tags(
        &f.elb_tags(&applied.identifiers["targetGroupArn"]).await,
        "target group",
    );
    assert_converged_tags(&f.elb_tags(&applied.identifiers["ruleArn"]).await, "rule");
    let log_group = f.log_group_arn(&applied.outputs["logGroup"]).await;
    let log_tags: BTreeMap<String, String> = f
        .logs
        .list_tags_for_resource()
        .resource_arn(&log_group)
        .send()
        .await
        .expect("log group tags")
        .tags()
        .map(|t| t.clone().into_iter().collect())
        .unwrap_or_default();
    assert_converged_tags(&log_tags, "log group");
    let cluster = f
        .ecs
        .describe_clusters()
        .clusters(f.cluster())
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await
        .expect("clusters");
    assert_converged_tags(&ecs_tags(cluster.clusters()[0].tags()), "cluster");
    assert_converged_tags(
        &f.elb_tags(&f.shared_applied[&alb_id()].outputs["arn"])
            .await,
        "load balancer",
    );
    let role = f
        .iam
        .get_role()
        .role_name(&f.shared_applied[&execution_role_id()].outputs["name"])
        .send()
        .await
        .expect("role");
    let role_tags: BTreeMap<String, String> = role
        .role()
        .expect("role")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_converged_tags(&role_tags, "execution role");

    // Converged: another update changes nothing.
    let before = f.ctx.calls.mutating();
    api.update(&c, &f.outputs, &lookups, &[], &seen)
        .await
        .expect("update");
    assert_eq!(f.ctx.calls.mutating(), before, "nothing left to change");
}

#[tokio::test]
async fn a_worker_runs_without_load_balancer_or_autoscaling() {
    let f = Fixture::new().await;
    let worker = f.component("notification-service/worker");
    let applied = f
        .worker
        .create(
            &worker,
            &f.outputs,
            &f.worker.look_up(&[&worker]).await.expect("look up"),
        )
        .await
        .expect("create");
    assert!(!applied.outputs.contains_key("url"));
    let svc = f.service(&applied.outputs["name"]).await;
    assert_eq!(svc.desired_count(), 1);
    assert!(svc.load_balancers().is_empty());
    let (td, _) = f
        .task_definition(&applied.outputs["taskDefinitionArn"])
        .await;
    let env: BTreeMap<&str, &str> = td.container_definitions()[0]
        .environment()
        .iter()
        .filter_map(|kv| Some((kv.name()?, kv.value()?)))
        .collect();
    assert_eq!(env["PREFERENCES_TABLE"], "prefs-table");
    assert_eq!(env["TEMPLATES_BUCKET"], "templates-bucket");
    let seen = f.worker.observe(&worker.id, None).await.expect("observe");
    assert_eq!(
        diff(
            &f.worker.desired(
                &worker,
                &f.outputs,
                &f.worker.look_up(&[&worker]).await.expect("look up")
            ),
            &seen
        ),
        vec![]
    );
    assert_eq!(
        seen.fields["autoscaling"],
        FieldValue::known(serde_json::Value::Null)
    );
}

#[tokio::test]
async fn delete_removes_everything_and_is_idempotent() {
    let f = Fixture::new().await;
    let api = f.component("notification-service/api");
    let applied = f
        .api
        .create(
            &api,
            &f.outputs,
            &f.api.look_up(&[&api]).await.expect("look up"),
        )
        .await
        .expect("create");
    let name = applied.outputs["name"].clone();
    let tg = applied.identifiers["targetGroupArn"].clone();
    let rule = applied.identifiers["ruleArn"].clone();

    f.api
        .delete(&api.id, &applied.identifiers)
        .await
        .expect("delete");
    f.api
        .delete(&api.id, &applied.identifiers)
        .await
        .expect("a second delete is a no-op");

    let seen = f.api.observe(&api.id, None).await.expect("observe");
    assert!(!seen.exists, "{seen:?}");
    let svc = f.service(&name).await;
    assert_ne!(svc.status(), Some("ACTIVE"));
    let defs = f
        .ecs
        .list_task_definitions()
        .family_prefix(&name)
        .send()
        .await
        .expect("list");
    assert!(defs.task_definition_arns().is_empty(), "{defs:?}");
    // Deregistered revisions would linger, INACTIVE and tagged: they are deleted too.
    let inactive = f
        .ecs
        .list_task_definitions()
        .family_prefix(&name)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
        .send()
        .await
        .expect("list");
    assert!(inactive.task_definition_arns().is_empty(), "{inactive:?}");
    let tgs = f
        .elb
        .describe_target_groups()
        .target_group_arns(&tg)
        .send()
        .await;
    assert!(tgs.is_err() || tgs.is_ok_and(|o| o.target_groups().is_empty()));
    let rules = f.elb.describe_rules().rule_arns(&rule).send().await;
    assert!(rules.is_err() || rules.is_ok_and(|o| o.rules().is_empty()));
    let resource = format!("service/{}/{name}", f.cluster());
    let targets = f
        .scaling
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_ids(&resource)
        .send()
        .await
        .expect("scalable targets");
    assert!(targets.scalable_targets().is_empty());
    let groups = f
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&applied.outputs["logGroup"])
        .send()
        .await
        .expect("log groups");
    assert!(groups.log_groups().is_empty());
}

/// A policy document as IAM returns it (URL-encoded by AWS; plain by some emulators).
fn policy(raw: &str) -> serde_json::Value {
    let text = raw.trim();
    let decoded = if text.starts_with('{') {
        text.to_string()
    } else {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).expect("utf-8")
    };
    serde_json::from_str(&decoded).unwrap_or_else(|e| panic!("{e}: {decoded}"))
}

/// The resources of a role's `panka-secrets` policy, read directly; `None`: no such policy.
async fn secret_resources(iam: &aws_sdk_iam::Client, role: &str) -> Option<Vec<String>> {
    let out = match iam
        .get_role_policy()
        .role_name(role)
        .policy_name("panka-secrets")
        .send()
        .await
    {
        Ok(o) => o,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            return None
        }
        Err(e) => panic!("get role policy: {e:?}"),
    };
    let doc = policy(out.policy_document());
    let statements = doc["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{doc}");
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Action"], "secretsmanager:GetSecretValue");
    Some(
        statements[0]["Resource"]
            .as_array()
            .expect("a resource list")
            .iter()
            .map(|r| r.as_str().expect("a string").to_string())
            .collect(),
    )
}

fn account_of(arn: &str) -> String {
    arn.split(':')
        .nth(4)
        .expect("an account in the ARN")
        .to_string()
}

fn secrets_of<'a>(stack: &'a mut DesiredStack, component: &str) -> &'a mut Vec<SecretRef> {
    match &mut stack
        .components
        .get_mut(&id(component))
        .expect("component")
        .spec
    {
        ComponentSpec::MicroService(s) => &mut s.secrets,
        ComponentSpec::Worker(s) => &mut s.secrets,
        _ => panic!("{component} is not a container"),
    }
}

const EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

#[tokio::test]
async fn the_execution_role_trusts_ecs_tasks_and_reads_exactly_the_stack_secrets() {
    let f = Fixture::new().await;
    let role = &f.shared_applied[&execution_role_id()].outputs;
    let name = format!("{}-development-ecs-execution", f.stack.name);
    assert_eq!(role["name"], name);

    // The role, read directly: path, trust, tags, managed policy, secrets policy.
    let got = f
        .iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .expect("role");
    let r = got.role().expect("role");
    assert_eq!(r.arn(), role["arn"]);
    assert_eq!(r.path(), "/panka/");
    let trust = policy(r.assume_role_policy_document().expect("trust policy"));
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Principal"]["Service"], "ecs-tasks.amazonaws.com");
    assert_eq!(statement["Action"], "sts:AssumeRole");
    let tags: BTreeMap<String, String> = f
        .iam
        .list_role_tags()
        .role_name(&name)
        .send()
        .await
        .expect("tags")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags["panka:stack"], f.stack.name);
    assert_eq!(tags["panka:environment"], "development");
    assert_eq!(tags["panka:managed-by"], "panka");
    assert!(!tags.contains_key("panka:component"));
    let attached: Vec<String> = f
        .iam
        .list_attached_role_policies()
        .role_name(&name)
        .send()
        .await
        .expect("attached policies")
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    assert_eq!(attached, [EXECUTION_POLICY]);
    let account = account_of(&role["arn"]);
    let secret = |path: &str| {
        format!("arn:aws:secretsmanager:us-east-1:{account}:secret:/stacks/user-platform/{path}-*")
    };
    assert_eq!(
        secret_resources(&f.iam, &name).await,
        Some(vec![
            secret("notification-service/db-password"),
            secret("notification-service/smtp-password"),
            secret("user-service/db-password"),
        ])
    );

    // The plan shows the account as a placeholder: planning is pure and runs before any read.
    let want = &f.shared.desired(&f.stack, &f.outputs)[&execution_role_id()];
    assert_eq!(
        want.fields["secretsPolicy"],
        FieldValue::known([
            "arn:aws:secretsmanager:us-east-1:{account}:secret:/stacks/user-platform/notification-service/db-password-*",
            "arn:aws:secretsmanager:us-east-1:{account}:secret:/stacks/user-platform/notification-service/smtp-password-*",
            "arn:aws:secretsmanager:us-east-1:{account}:secret:/stacks/user-platform/user-service/db-password-*",
        ])
    );

    // Converged: observe reads the role with three calls and sees no difference; a second
    // ensure changes nothing.
    let before = f.calls();
    let seen = f.shared.observe(&f.stack).await;
    let o = &seen[&execution_role_id()];
    assert!(o.exists && o.owned, "{o:?}");
    assert_eq!(diff(want, o), vec![]);
    assert_eq!(o.outputs, *role);
    let iam_reads: BTreeMap<String, u64> = gained(&before, &f.calls())
        .into_iter()
        .filter(|(op, _)| op.contains("Role"))
        .collect();
    assert_eq!(
        iam_reads,
        ops(&[
            ("GetRole", 1),
            ("GetRolePolicy", 1),
            ("ListAttachedRolePolicies", 1)
        ])
    );
    let before = f.mutations();
    f.shared.apply(&f.stack).await;
    assert_eq!(gained(&before, &f.mutations()), BTreeMap::new());
}

#[tokio::test]
async fn a_changed_secret_list_rewrites_only_the_inline_policy() {
    let f = Fixture::new().await;
    let name = f.shared_applied[&execution_role_id()].outputs["name"].clone();
    let account = account_of(&f.shared_applied[&execution_role_id()].outputs["arn"]);
    let shared_key = "arn:aws:secretsmanager:us-east-1:210987654321:secret:shared/api-key-AbCdEf";
    let mut stack = f.stack.clone();
    let api = secrets_of(&mut stack, "notification-service/api");
    api.retain(|s| !s.secret_ref.ends_with("smtp-password"));
    api.push(SecretRef {
        name: "API_KEY".into(),
        secret_ref: shared_key.into(),
        env_var: None,
        key: Some("key".into()),
    });
    let mut stack = refreshed(stack);

    let seen = f.shared.observe(&stack).await;
    let desired = f.shared.desired(&stack, &f.outputs);
    for (id, o) in &seen {
        let Some(want) = desired.get(id) else {
            continue;
        };
        let fields: Vec<String> = diff(want, o).into_iter().map(|d| d.field).collect();
        if *id == execution_role_id() {
            assert_eq!(fields, ["secretsPolicy"], "{id}");
        } else {
            assert!(fields.is_empty(), "{id}: {fields:?}");
        }
    }
    let before = f.mutations();
    f.shared.apply(&stack).await;
    assert_eq!(
        gained(&before, &f.mutations()),
        ops(&[("PutRolePolicy", 1)])
    );
    let secret = |path: &str| {
        format!("arn:aws:secretsmanager:us-east-1:{account}:secret:/stacks/user-platform/{path}-*")
    };
    assert_eq!(
        secret_resources(&f.iam, &name).await,
        Some(vec![
            secret("notification-service/db-password"),
            secret("user-service/db-password"),
            shared_key.to_string(),
        ])
    );
    let seen = f.shared.observe(&stack).await;
    assert_eq!(
        diff(
            &f.shared.desired(&stack, &f.outputs)[&execution_role_id()],
            &seen[&execution_role_id()]
        ),
        vec![]
    );

    // No secrets left anywhere: the inline policy is deleted, the rest stays.
    for c in ["notification-service/api", "user-service/api"] {
        secrets_of(&mut stack, c).clear();
    }
    for c in stack.components.keys().cloned().collect::<Vec<_>>() {
        if let ComponentSpec::MicroService(s) = &stack.components[&c].spec {
            assert!(s.secrets.is_empty(), "{c} still has secrets");
        }
        if let ComponentSpec::Worker(s) = &stack.components[&c].spec {
            assert!(s.secrets.is_empty(), "{c} still has secrets");
        }
    }
    let stack = refreshed(stack);
    let before = f.mutations();
    f.shared.apply(&stack).await;
    assert_eq!(
        gained(&before, &f.mutations()),
        ops(&[("DeleteRolePolicy", 1)])
    );
    assert_eq!(secret_resources(&f.iam, &name).await, None);
    let seen = f.shared.observe(&stack).await;
    let o = &seen[&execution_role_id()];
    assert_eq!(
        o.fields["secretsPolicy"],
        FieldValue::known(Vec::<String>::new())
    );
    assert_eq!(
        diff(
            &f.shared.desired(&stack, &f.outputs)[&execution_role_id()],
            o
        ),
        vec![]
    );
}

#[tokio::test]
async fn a_microservice_task_definition_runs_with_the_execution_role() {
    let f = Fixture::new().await;
    let api = f.component("user-service/api");
    let lookups = f.api.look_up(&[&api]).await.expect("look up");
    let want = f.api.desired(&api, &f.outputs, &lookups);
    let role_arn = &f.shared_applied[&execution_role_id()].outputs["arn"];
    assert_eq!(
        want.fields["executionRoleArn"],
        FieldValue::known(role_arn.as_str())
    );
    let applied = f
        .api
        .create(&api, &f.outputs, &lookups)
        .await
        .expect("create");
    let (td, _) = f
        .task_definition(&applied.outputs["taskDefinitionArn"])
        .await;
    assert_eq!(td.execution_role_arn(), Some(role_arn.as_str()));
    let seen = f.fresh_api().observe(&api.id, None).await.expect("observe");
    assert_eq!(diff(&want, &seen), vec![]);
}

#[tokio::test]
async fn the_execution_role_is_deleted_with_its_policies_and_only_when_ours() {
    let f = Fixture::new().await;
    let role = f.shared_applied[&execution_role_id()].clone();
    let name = role.outputs["name"].clone();
    for _ in 0..2 {
        // Twice: idempotent.
        f.shared
            .delete(&f.stack, &execution_role_id(), &role.identifiers)
            .await;
    }
    let gone = f.iam.get_role().role_name(&name).send().await;
    assert!(
        gone.as_ref().is_err_and(|e| e
            .as_service_error()
            .is_some_and(|e| e.is_no_such_entity_exception())),
        "{gone:?}"
    );
    let seen = f.shared.observe(&f.stack).await;
    assert!(!seen[&execution_role_id()].exists);

    // A same-named role made by hand (no panka tags, another trust): a conflict, never deleted.
    f.iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }],
            })
            .to_string(),
        )
        .send()
        .await
        .expect("a role made by hand");
    let seen = f.shared.observe(&f.stack).await;
    let o = &seen[&execution_role_id()];
    assert!(o.exists && !o.owned, "{o:?}");
    let before = f.mutations();
    let err = f.shared.try_apply(&f.stack).await.expect_err("not ours");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert_eq!(gained(&before, &f.mutations()), BTreeMap::new());
    // Delete keeps it.
    f.shared
        .delete(&f.stack, &execution_role_id(), &role.identifiers)
        .await;
    f.iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .expect("still there");

    // --adopt takes it over: tagged, trust and policies converged, then ours to delete.
    let adopting = StackResources::new(&Ctx::new(emulator().sdk_config().await, &f.stack, true));
    adopting.apply(&f.stack).await;
    let seen = f.shared.observe(&f.stack).await;
    let o = &seen[&execution_role_id()];
    assert!(o.exists && o.owned, "{o:?}");
    assert_eq!(
        diff(
            &f.shared.desired(&f.stack, &f.outputs)[&execution_role_id()],
            o
        ),
        vec![]
    );
    f.shared
        .delete(&f.stack, &execution_role_id(), &role.identifiers)
        .await;
    let seen = f.shared.observe(&f.stack).await;
    assert!(!seen[&execution_role_id()].exists);
}

#[tokio::test]
async fn observing_many_services_batches_reads_and_sees_what_one_at_a_time_sees() {
    let f = Fixture::new().await;
    let notif = f.component("notification-service/api");
    let users = f.component("user-service/api");
    let made_notif = f
        .api
        .create(
            &notif,
            &f.outputs,
            &f.api.look_up(&[&notif]).await.expect("look up"),
        )
        .await
        .expect("create");
    f.api
        .create(
            &users,
            &f.outputs,
            &f.api.look_up(&[&users]).await.expect("look up"),
        )
        .await
        .expect("create");
    // Also one never created, and one recorded as it was: both batch paths must agree.
    let missing = id("user-service/ghost");
    let items = vec![
        (notif.id.clone(), Some(made_notif.identifiers.clone())),
        (users.id.clone(), None),
        (missing.clone(), None),
    ];

    let one_ctx = Ctx::new(f.ctx.sdk.clone(), &f.stack, false);
    let one = EcsDriver::microservice(&one_ctx);
    let mut singly = Vec::new();
    for (cid, recorded) in &items {
        singly.push(one.observe(cid, recorded.as_ref()).await.expect("observe"));
    }
    let many_ctx = Ctx::new(f.ctx.sdk.clone(), &f.stack, false);
    let many = EcsDriver::microservice(&many_ctx);
    let observed = many.observe_many(&items, 8).await.expect("observe many");
    let lookups = many.look_up(&[&notif, &users]).await.expect("look up");
    // As the engine does once desired fields can be computed: the recorded revision of
    // `notif` was left undescribed; its desired render has the recorded fingerprint.
    let mut batched = Vec::new();
    for (i, o) in observed.into_iter().enumerate() {
        batched.push(match [&notif, &users].get(i) {
            Some(c) => many
                .complete(c, &f.outputs, &lookups, o)
                .await
                .expect("complete"),
            None => o,
        });
    }

    assert_eq!(batched, singly);
    assert!(batched[0].exists && batched[1].exists && !batched[2].exists);
    assert_eq!(batched[0].outputs["url"], made_notif.outputs["url"]);

    let by_op = |ctx: &Ctx| {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for ((_, op), n) in ctx.calls.snapshot() {
            *out.entry(op).or_default() += n;
        }
        out
    };
    let (one_calls, many_calls) = (by_op(&one_ctx), by_op(&many_ctx));
    // Three services in one DescribeServices call, one log-group listing, one scalable-target
    // call for the two that exist, and the load balancer's reads once for both.
    assert_eq!(one_calls["DescribeServices"], 3);
    assert_eq!(many_calls["DescribeServices"], 1);
    assert_eq!(many_calls["DescribeLogGroups"], 1);
    assert_eq!(many_calls["DescribeScalableTargets"], 1);
    assert_eq!(many_calls["DescribeLoadBalancers"], 1);
    assert_eq!(many_calls["DescribeListeners"], 1);
    assert_eq!(many_calls["DescribeRules"], 1);
    // The target groups' and rules' tags: one call for both services, one per service singly.
    assert_eq!(many_calls["DescribeTags"], 1);
    assert_eq!(one_calls["DescribeTags"], 2);
    assert_eq!(one_calls["DescribeLoadBalancers"], 2);
    // Only the revision nothing was recorded for is described.
    assert_eq!(one_calls["DescribeTaskDefinition"], 2);
    assert_eq!(many_calls["DescribeTaskDefinition"], 1);
    let reads = |calls: &BTreeMap<String, u64>| {
        calls
            .iter()
            .filter(|(op, _)| op.as_str() != "DescribeSecret")
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert!(
        reads(&many_calls) < reads(&one_calls),
        "batched {many_calls:?} vs one at a time {one_calls:?}"
    );
    assert!(many_calls.keys().all(|op| !is_mutating(op)));
}

#[tokio::test]
async fn secrets_go_by_full_arn_with_their_key_and_a_missing_one_is_refused_before_any_change() {
    let mut f = Fixture::new().await;
    {
        let secrets = secrets_of(&mut f.stack, "user-service/api");
        secrets[0].key = Some("password".into());
    }
    let users = f.component("user-service/api");
    let name = users_secret_name(&users);
    let api = f.fresh_api();
    let lookups = api.look_up(&[&users]).await.expect("look up");
    let applied = api
        .create(&users, &f.outputs, &lookups)
        .await
        .expect("create");
    let (td, _) = f
        .task_definition(&applied.outputs["taskDefinitionArn"])
        .await;
    let arn = aws_sdk_secretsmanager::Client::new(&emulator().sdk_config().await)
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .expect("describe secret")
        .arn()
        .expect("arn")
        .to_string();
    assert_eq!(
        td.container_definitions()[0].secrets()[0].value_from(),
        format!("{arn}:password::")
    );
    // The plan field shows the same reference, so the next plan is converged.
    let observed = api
        .observe(&users.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert!(diff(&api.desired(&users, &f.outputs, &lookups), &observed).is_empty());

    // A reference to a secret that does not exist: refused by look_up, before any plan or
    // change (the engine calls create only with what look_up found), with nothing changed in AWS.
    let missing = format!("/stacks/{}/nowhere", f.stack.name);
    secrets_of(&mut f.stack, "user-service/api")[0].secret_ref = missing.clone();
    let broken = f.component("user-service/api");
    let fresh = f.fresh_api();
    let before = f.mutations();
    let err = fresh.look_up(&[&broken]).await.expect_err("refused");
    assert!(
        err.to_string().contains(&missing) && err.to_string().contains("does not exist"),
        "{err}"
    );
    assert!(
        matches!(
            err,
            panka_controller::driver::DriverError::MissingSecret { .. }
        ),
        "{err}"
    );
    assert_eq!(f.mutations(), before, "no AWS change for a dangling secret");
}

fn users_secret_name(c: &DesiredComponent) -> String {
    match &c.spec {
        ComponentSpec::MicroService(s) => s.secrets[0].secret_ref.clone(),
        _ => panic!("not a MicroService"),
    }
}

/// StackInfra `executionRole.permissionsBoundary`: an existing role gets the boundary before any
/// policy is written (one PutRolePermissionsBoundary, nothing else), observe then reports it
/// converged; a stack that names none leaves the role's boundary alone.
#[tokio::test]
async fn the_execution_role_takes_the_permissions_boundary_the_stack_names() {
    let f = Fixture::new().await;
    let name = f.shared_applied[&execution_role_id()].outputs["name"].clone();
    let boundary = f
        .iam
        .create_policy()
        .policy_name(format!("{}-boundary", f.stack.name))
        .policy_document(
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "logs:*", "ecr:*"], "Resource": "*"}]
            })
            .to_string(),
        )
        .send()
        .await
        .expect("boundary policy")
        .policy()
        .and_then(|p| p.arn())
        .expect("its ARN")
        .to_string();
    let mut stack = f.stack.clone();
    stack.infra.execution_role = Some(panka_crds::spec::ExecutionRoleSettings {
        permissions_boundary: Some(boundary.clone()),
    });
    let stack = refreshed(stack);

    let seen = f.shared.observe(&stack).await;
    let want = &f.shared.desired(&stack, &f.outputs)[&execution_role_id()];
    let fields: Vec<String> = diff(want, &seen[&execution_role_id()])
        .into_iter()
        .map(|d| d.field)
        .collect();
    assert_eq!(fields, ["permissionsBoundary"]);
    let before = f.mutations();
    f.shared.apply(&stack).await;
    assert_eq!(
        gained(&before, &f.mutations()),
        ops(&[("PutRolePermissionsBoundary", 1)])
    );
    let got = f
        .iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .expect("role");
    assert_eq!(
        got.role()
            .and_then(|r| r.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn()),
        Some(boundary.as_str())
    );
    let seen = f.shared.observe(&stack).await;
    assert_eq!(diff(want, &seen[&execution_role_id()]), vec![]);

    // The original stack names no boundary: nothing to change, the boundary stays.
    let seen = f.shared.observe(&f.stack).await;
    let want = &f.shared.desired(&f.stack, &f.outputs)[&execution_role_id()];
    assert_eq!(diff(want, &seen[&execution_role_id()]), vec![]);
}
