//! ECS driver for MicroService and Worker: one [`EcsDriver`] parameterised by kind.
//!
//! Stages **observe** and **apply** of a container component. A component becomes:
//!
//! * a CloudWatch Logs group `naming.log_group(id)` with the stack's `logging.retentionDays`;
//! * a Fargate task definition, family `{stack}-{env}-{service}-{component}`, with one container
//!   (named after the component): image `repository:tag` or `repository@digest`, `command` as the
//!   entry point and `args` as the command, port mappings, environment (literal values and
//!   `valueFrom` outputs of other components), secrets as Secrets Manager references (the full
//!   ARN of `secretRef`, looked up with DescribeSecret before planning when it is a name, plus
//!   `:key::` when a JSON key is given; values are never read; a missing secret is refused
//!   before any change), awslogs logging, and a
//!   container health check from `healthCheck.liveness` (a command as given; http as
//!   `curl -fsS`, tcp as `nc -z`, both through `CMD-SHELL`);
//! * an ECS service of the same name in the stack's cluster (`_stack/cluster`), on the stack's
//!   subnets and security groups (`_stack/network`), with the deployment circuit breaker and
//!   rollback on, tags propagated from the service to its tasks;
//! * for a MicroService with `loadBalancer.enabled`: an `ip` target group and a listener rule on
//!   the stack's load balancer (`_stack/alb`), path `loadBalancer.path` or `/{service}/{component}/*`;
//! * with `autoscaling.enabled`: an Application Auto Scaling target (min/max) and one
//!   target-tracking policy per metric (default: CPU at 70 %); the task count then belongs to the
//!   autoscaler and is not compared.
//!
//! **Config files** are delivered through the environment, because Fargate cannot mount inline
//! content: each file becomes `PANKA_CONFIG_<NAME>` (the file name upper-cased, every other
//! character `_`; `app.yaml` → `PANKA_CONFIG_APP_YAML`) holding its base64 content, plus
//! `PANKA_CONFIG_DIR` (the `mountPath`) and `PANKA_CONFIG_FILES` (`file=VARIABLE,…`), so an entry
//! point can write them out. The docker label `PANKA_CONFIG_HASH` is the SHA-256 of the whole
//! resolved environment (config contents included): any change of a config file or of a
//! resolved value yields a new task definition revision, and the plan shows it as `configHash`.
//!
//! The task execution role (image pulls, awslogs, secrets) is taken from the outputs of
//! `_stack/execution-role` when the engine has them (`arn`); without one, AWS refuses awslogs
//! and secrets on Fargate, so that shared resource is expected before real deployments.
//!
//! A new revision is registered only when the rendered definition differs from the one the
//! service runs. Task definitions are immutable, so what a revision holds is cached by ARN and
//! described only when the service points at a revision this driver has not seen yet; and state
//! records a fingerprint of the revision applied (`taskDefinitionFingerprint`), so a plan in a
//! new process describes the running revision only when it is not the recorded one or the
//! desired render differs from it ([`Driver::complete`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalableTarget,
    ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, CpuArchitecture,
    DeploymentCircuitBreaker, DeploymentConfiguration, KeyValuePair, LaunchType, LogConfiguration,
    LogDriver, NetworkConfiguration, NetworkMode, OsFamily, PortMapping, PropagateTags,
    RuntimePlatform, Secret, ServiceField, TaskDefinitionStatus, TransportProtocol,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, ProtocolEnum,
    Rule, RuleCondition, TargetGroup, TargetTypeEnum,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use panka_crds::spec::{
    Architecture, ComponentInfraSpec, Configs, Container, EnvVar, HealthCheck, Image, LoadBalancer,
    Port, Probe, Protocol, ScalingMetric, SecretRef,
};
use panka_crds::Kind;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::stack::{self as shared, ecs_tags, elb_tags};
use super::support::{ensure_ours, is_missing, or_missing};
use super::{Applied, Ctx, Deletion, Driver, DriverError, Lookups, Observe, Outputs};
use crate::aws::{self, AwsError};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent, ResolvedConfig};
use panka_core::naming::NameRules;
use panka_core::plan::{
    Change, DesiredFields, FieldDiff, FieldValue, Fields, Health, KnownAfterApply, Observation,
    Unread,
};

/// Task CPU units when the component's infra does not say.
const DEFAULT_CPU: u32 = 256;
/// Task memory (MiB) when the component's infra does not say.
const DEFAULT_MEMORY: u32 = 512;
/// Target of the default target-tracking policy (CPU utilisation, percent).
const DEFAULT_CPU_TARGET: f64 = 70.0;
/// Prefix of the environment variables carrying config files.
const CONFIG_PREFIX: &str = "PANKA_CONFIG_";
/// Docker label holding the configuration hash.
const CONFIG_HASH_LABEL: &str = "PANKA_CONFIG_HASH";
/// Listener rule priorities panka picks from (AWS allows 1–50000; the low ones are left to people).
const PRIORITY_BASE: u32 = 1000;
const PRIORITY_SPAN: u32 = 49_000;

// ---------------------------------------------------------------------------------------------
// Shapes: what a task definition and a service hold, in one normal form for both sides
// ---------------------------------------------------------------------------------------------

/// One port mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PortShape {
    name: Option<String>,
    port: u16,
    protocol: String,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthShape {
    command: Vec<String>,
    interval: i32,
    timeout: i32,
    retries: i32,
    start_period: i32,
}

/// What a task definition holds that panka sets. Environment values are `None` when they depend
/// on an output not known yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct TaskShape {
    cpu: u32,
    memory: u32,
    architecture: String,
    execution_role: Option<String>,
    container: String,
    image: String,
    entry_point: Vec<String>,
    command: Vec<String>,
    working_directory: Option<String>,
    ports: Vec<PortShape>,
    environment: BTreeMap<String, Option<String>>,
    secrets: BTreeMap<String, String>,
    health_check: Option<HealthShape>,
    log_group: String,
    log_region: String,
    log_stream_prefix: String,
}

impl TaskShape {
    /// SHA-256 of everything the revision holds, recorded in state as
    /// [`TASK_FINGERPRINT`]; `None` while a value depends on an output not known yet.
    fn fingerprint(&self) -> Option<String> {
        if self.environment.values().any(Option::is_none) {
            return None;
        }
        let json = serde_json::to_vec(self).ok()?;
        Some(hex::encode(Sha256::digest(json)))
    }

    /// SHA-256 of the whole resolved environment (config contents included), if known.
    fn config_hash(&self) -> Option<String> {
        let known: Option<BTreeMap<&String, &String>> = self
            .environment
            .iter()
            .map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        let json = serde_json::to_vec(&known?).unwrap_or_default();
        Some(hex::encode(Sha256::digest(json)))
    }
}

/// Load balancer routing of a MicroService.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct LbShape {
    port: u16,
    path: String,
    host: Option<String>,
    health_check_path: String,
    /// The target group's tags panka manages (see [`super::support::TagPolicy::managed`]).
    target_group_tags: BTreeMap<String, String>,
    /// The listener rule's tags panka manages.
    rule_tags: BTreeMap<String, String>,
}

/// One target-tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyShape {
    metric: String,
    target_value: f64,
}

/// Autoscaling of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScalingShape {
    min_replicas: u32,
    max_replicas: u32,
    policies: Vec<PolicyShape>,
}

/// What the service and its satellites hold.
#[derive(Debug, Clone, PartialEq)]
struct ServiceShape {
    cluster: String,
    desired_count: u32,
    subnets: Option<Vec<String>>,
    security_groups: Option<Vec<String>>,
    assign_public_ip: bool,
    circuit_breaker: bool,
    tags: BTreeMap<String, String>,
    load_balancer: Option<LbShape>,
    autoscaling: Option<ScalingShape>,
    /// Retention of the log group: `None` when the group does not exist (observed only),
    /// `Some(None)` for "never expire".
    log_retention: Option<Option<u32>>,
}

/// The full ARN of a secret reference: an ARN as written, a name as [`EcsDriver::look_up`]
/// found it (the name itself when it was not looked up).
fn secret_arn(lookups: &Lookups, secret_ref: &str) -> String {
    let secret_ref = secret_ref.trim();
    if secret_ref.starts_with("arn:") {
        return secret_ref.to_string();
    }
    lookups
        .get(secret_ref)
        .map_or_else(|| secret_ref.to_string(), str::to_string)
}

fn unknown() -> FieldValue {
    FieldValue::Unknown(KnownAfterApply::KnownAfterApply)
}

fn opt<T: Serialize>(v: Option<T>) -> FieldValue {
    v.map_or_else(unknown, FieldValue::known)
}

/// Whether a field of [`project`] comes from the task definition (not the service).
fn is_task_field(key: &str) -> bool {
    matches!(
        key,
        "cpu"
            | "memory"
            | "architecture"
            | "executionRoleArn"
            | "image"
            | "ports"
            | "environment"
            | "secrets"
            | "configHash"
            | "healthCheck"
            | "log.group"
    ) || key.starts_with("container.")
        || key.starts_with("environment.")
}

/// The fields of [`project`] that come from the task definition alone.
fn task_fields(task: &TaskShape) -> Fields {
    let none = ServiceShape {
        cluster: String::new(),
        desired_count: 0,
        subnets: None,
        security_groups: None,
        assign_public_ip: false,
        circuit_breaker: false,
        tags: BTreeMap::new(),
        load_balancer: None,
        autoscaling: None,
        log_retention: None,
    };
    let mut f = project(task, &none);
    f.retain(|k, _| is_task_field(k));
    f
}

/// The comparable fields of a task definition and service: the one projection both `desired`
/// and `observe` use, so a converged component has no diff.
fn project(task: &TaskShape, svc: &ServiceShape) -> Fields {
    let mut f = Fields::new();
    let mut put = |k: &str, v: FieldValue| {
        f.insert(k.to_string(), v);
    };
    put("cluster", FieldValue::known(&svc.cluster));
    put("cpu", FieldValue::known(task.cpu));
    put("memory", FieldValue::known(task.memory));
    put("architecture", FieldValue::known(&task.architecture));
    put("executionRoleArn", FieldValue::known(&task.execution_role));
    put("image", FieldValue::known(&task.image));
    put("container.command", FieldValue::known(&task.entry_point));
    put("container.args", FieldValue::known(&task.command));
    put(
        "container.workingDir",
        FieldValue::known(&task.working_directory),
    );
    put("ports", FieldValue::known(&task.ports));
    let plain: Vec<&String> = task
        .environment
        .keys()
        .filter(|k| !k.starts_with(CONFIG_PREFIX))
        .collect();
    put("environment", FieldValue::known(&plain));
    for name in plain {
        put(
            &format!("environment.{name}"),
            opt(task.environment[name].as_ref()),
        );
    }
    put("secrets", FieldValue::known(&task.secrets));
    put("configHash", opt(task.config_hash()));
    put("healthCheck", FieldValue::known(&task.health_check));
    put("log.group", FieldValue::known(&task.log_group));
    if let Some(retention) = svc.log_retention {
        put("log.retentionDays", FieldValue::known(retention));
    }
    put("desiredCount", FieldValue::known(svc.desired_count));
    put("network.subnets", opt(svc.subnets.as_ref()));
    put("network.securityGroups", opt(svc.security_groups.as_ref()));
    put(
        "network.assignPublicIp",
        FieldValue::known(svc.assign_public_ip),
    );
    put(
        "deployment.circuitBreaker",
        FieldValue::known(svc.circuit_breaker),
    );
    put("tags", FieldValue::known(&svc.tags));
    put(
        "loadBalancer.enabled",
        FieldValue::known(svc.load_balancer.is_some()),
    );
    if let Some(lb) = &svc.load_balancer {
        put("loadBalancer.port", FieldValue::known(lb.port));
        put("loadBalancer.path", FieldValue::known(&lb.path));
        put("loadBalancer.host", FieldValue::known(&lb.host));
        put(
            "loadBalancer.healthCheckPath",
            FieldValue::known(&lb.health_check_path),
        );
        put(
            "loadBalancer.targetGroup.tags",
            FieldValue::known(&lb.target_group_tags),
        );
        put("loadBalancer.rule.tags", FieldValue::known(&lb.rule_tags));
    }
    put("autoscaling", FieldValue::known(&svc.autoscaling));
    f
}

/// Which part of a component a changed field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Task,
    Log,
    LoadBalancer,
    Service,
    Scaling,
}

fn part_of(field: &str) -> Part {
    let root = field.split('.').next().unwrap_or(field);
    match root {
        "log" if field == "log.retentionDays" => Part::Log,
        "loadBalancer" => Part::LoadBalancer,
        "autoscaling" => Part::Scaling,
        "desiredCount" | "network" | "deployment" | "tags" | "cluster" => Part::Service,
        _ => Part::Task,
    }
}

// ---------------------------------------------------------------------------------------------
// Render (pure): a desired component → shapes
// ---------------------------------------------------------------------------------------------

/// The settings MicroService and Worker share, borrowed from either.
struct Workload<'a> {
    image: &'a Image,
    architecture: Option<Architecture>,
    container: Option<&'a Container>,
    ports: &'a [Port],
    environment: &'a [EnvVar],
    secrets: &'a [SecretRef],
    configs: Option<&'a Configs>,
    health_check: Option<&'a HealthCheck>,
    /// Only a MicroService has one, and only when enabled.
    load_balancer: Option<&'a LoadBalancer>,
}

fn workload(component: &DesiredComponent) -> Option<Workload<'_>> {
    let infra = component.infra.as_ref();
    match &component.spec {
        ComponentSpec::MicroService(s) => Some(Workload {
            image: &s.image,
            architecture: s.runtime.as_ref().and_then(|r| r.architecture),
            container: s.container.as_ref(),
            ports: &s.ports,
            environment: &s.environment,
            secrets: &s.secrets,
            configs: s.configs.as_ref(),
            health_check: s.health_check.as_ref(),
            load_balancer: infra
                .and_then(|i| i.networking.as_ref())
                .and_then(|n| n.load_balancer.as_ref())
                .filter(|lb| lb.enabled.unwrap_or(false)),
        }),
        ComponentSpec::Worker(s) => Some(Workload {
            image: &s.image,
            architecture: s.runtime.as_ref().and_then(|r| r.architecture),
            container: s.container.as_ref(),
            ports: &[],
            environment: &s.environment,
            secrets: &s.secrets,
            configs: s.configs.as_ref(),
            health_check: s.health_check.as_ref(),
            load_balancer: None,
        }),
        _ => None,
    }
}

fn image_ref(image: &Image) -> String {
    match (&image.digest, &image.tag) {
        (Some(d), _) => format!("{}@{d}", image.repository),
        (None, Some(t)) => format!("{}:{t}", image.repository),
        (None, None) => image.repository.clone(),
    }
}

/// `PANKA_CONFIG_<NAME>` of a config file.
fn config_var(file: &str) -> String {
    let name: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{CONFIG_PREFIX}{name}")
}

/// Standard base64 with padding (RFC 4648), for config file contents.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The container health check of a liveness probe.
fn health_shape(probe: &Probe) -> Option<HealthShape> {
    let command = if !probe.command.is_empty() {
        if matches!(probe.command[0].as_str(), "CMD" | "CMD-SHELL") {
            probe.command.clone()
        } else {
            std::iter::once("CMD".to_string())
                .chain(probe.command.iter().cloned())
                .collect()
        }
    } else if let Some(http) = &probe.http {
        vec![
            "CMD-SHELL".into(),
            format!(
                "curl -fsS -o /dev/null http://localhost:{}{} || exit 1",
                http.port, http.path
            ),
        ]
    } else if let Some(tcp) = &probe.tcp {
        vec![
            "CMD-SHELL".into(),
            format!("nc -z localhost {} || exit 1", tcp.port),
        ]
    } else {
        return None;
    };
    // ECS refuses values outside these ranges; clamp rather than fail a deploy on them.
    let secs = |v: Option<u32>, default: i32, lo: i32, hi: i32| {
        v.map_or(default, |v| i32::try_from(v).unwrap_or(hi))
            .clamp(lo, hi)
    };
    Some(HealthShape {
        command,
        interval: secs(probe.period_seconds, 30, 5, 300),
        timeout: secs(probe.timeout_seconds, 5, 2, 60),
        retries: secs(probe.failure_threshold, 3, 1, 10),
        start_period: secs(probe.initial_delay_seconds, 0, 0, 300),
    })
}

/// Path prefix of a listener rule's path pattern, for the `url` output.
fn url_path(pattern: &str) -> &str {
    pattern.trim_end_matches('*').trim_end_matches('/')
}

/// The listener rule priority panka tries first for a component (stable across runs).
fn base_priority(id: &ComponentId) -> u32 {
    let digest = Sha256::digest(id.to_string().as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    PRIORITY_BASE + n % PRIORITY_SPAN
}

/// The first priority at or after the component's own that is not in `used`.
fn free_priority(id: &ComponentId, used: &std::collections::BTreeSet<u32>) -> u32 {
    let base = base_priority(id) - PRIORITY_BASE;
    (0..PRIORITY_SPAN)
        .map(|i| PRIORITY_BASE + (base + i) % PRIORITY_SPAN)
        .find(|p| !used.contains(p))
        .unwrap_or(PRIORITY_BASE)
}

fn metric_name(m: ScalingMetric) -> &'static str {
    match m {
        ScalingMetric::CpuUtilization => "CPUUtilization",
        ScalingMetric::MemoryUtilization => "MemoryUtilization",
        ScalingMetric::AlbRequestCountPerTarget => "ALBRequestCountPerTarget",
    }
}

fn metric_type(metric: &str) -> MetricType {
    match metric {
        "MemoryUtilization" => MetricType::EcsServiceAverageMemoryUtilization,
        "ALBRequestCountPerTarget" => MetricType::AlbRequestCountPerTarget,
        _ => MetricType::EcsServiceAverageCpuUtilization,
    }
}

fn metric_of(t: &MetricType) -> Option<&'static str> {
    Some(match t {
        MetricType::EcsServiceAverageCpuUtilization => "CPUUtilization",
        MetricType::EcsServiceAverageMemoryUtilization => "MemoryUtilization",
        MetricType::AlbRequestCountPerTarget => "ALBRequestCountPerTarget",
        _ => return None,
    })
}

/// Desired task count and autoscaling from the effective infra.
fn scaling(infra: Option<&ComponentInfraSpec>) -> (u32, Option<ScalingShape>) {
    let s = infra.and_then(|i| i.scaling.as_ref());
    let replicas = s.and_then(|s| s.replicas);
    let auto = s
        .and_then(|s| s.autoscaling.as_ref())
        .filter(|a| a.enabled.unwrap_or(false));
    let Some(a) = auto else {
        return (replicas.unwrap_or(1), None);
    };
    let min = a.min_replicas.or(replicas).unwrap_or(1);
    let max = a
        .max_replicas
        .unwrap_or(min.max(replicas.unwrap_or(1)))
        .max(min);
    let mut by_metric: BTreeMap<&'static str, f64> = a
        .policies
        .iter()
        .map(|p| (metric_name(p.metric), p.target_value))
        .collect();
    if by_metric.is_empty() {
        by_metric.insert("CPUUtilization", DEFAULT_CPU_TARGET);
    }
    let policies = by_metric
        .into_iter()
        .map(|(metric, target_value)| PolicyShape {
            metric: metric.to_string(),
            target_value,
        })
        .collect();
    let count = replicas.unwrap_or(min).clamp(min, max);
    (
        count,
        Some(ScalingShape {
            min_replicas: min,
            max_replicas: max,
            policies,
        }),
    )
}

fn split_list(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// A desired component, rendered.
struct Render {
    service_name: String,
    task: TaskShape,
    service: ServiceShape,
}

impl EcsDriver {
    fn render(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Option<Render> {
        let w = workload(component)?;
        let id = &component.id;
        let naming = &self.ctx.naming;
        let infra = component.infra.as_ref();
        let resources = infra.and_then(|i| i.resources.as_ref());

        let mut environment: BTreeMap<String, Option<String>> = BTreeMap::new();
        for var in w.environment {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(from)) => ComponentId::parse(&from.component, &id.service)
                    .and_then(|target| outputs.get(&target))
                    .and_then(|o| o.get(&from.output))
                    .cloned(),
                (None, None) => Some(String::new()),
            };
            environment.insert(var.name.clone(), value);
        }
        if let Some(configs) = w.configs {
            let files: Vec<&ResolvedConfig> = component.configs.iter().collect();
            environment.insert(
                format!("{CONFIG_PREFIX}DIR"),
                Some(configs.mount_path.clone()),
            );
            environment.insert(
                format!("{CONFIG_PREFIX}FILES"),
                Some(
                    files
                        .iter()
                        .map(|c| format!("{}={}", c.name, config_var(&c.name)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
            for c in files {
                environment.insert(config_var(&c.name), Some(base64(c.content.as_bytes())));
            }
        }
        let secrets = w
            .secrets
            .iter()
            .map(|s| {
                let env = s.env_var.clone().unwrap_or_else(|| s.name.clone());
                let arn = secret_arn(lookups, &s.secret_ref);
                let from = match &s.key {
                    Some(k) => format!("{arn}:{k}::"),
                    None => arn,
                };
                (env, from)
            })
            .collect();
        let mut ports: Vec<PortShape> = w
            .ports
            .iter()
            .map(|p| PortShape {
                name: Some(p.name.clone()),
                port: p.port,
                protocol: match p.protocol {
                    Some(Protocol::Udp) => "udp".into(),
                    _ => "tcp".into(),
                },
            })
            .collect();
        ports.sort_by(|a, b| (a.port, &a.protocol).cmp(&(b.port, &b.protocol)));
        let execution_role = outputs
            .get(&shared::execution_role_id())
            .and_then(|o| o.get("arn"))
            .cloned();
        let task = TaskShape {
            cpu: resources.and_then(|r| r.cpu).unwrap_or(DEFAULT_CPU),
            memory: resources.and_then(|r| r.memory).unwrap_or(DEFAULT_MEMORY),
            architecture: match w.architecture {
                Some(Architecture::Arm64) => "ARM64".into(),
                _ => "X86_64".into(),
            },
            execution_role,
            container: id.component.clone(),
            image: image_ref(w.image),
            entry_point: w.container.map(|c| c.command.clone()).unwrap_or_default(),
            command: w.container.map(|c| c.args.clone()).unwrap_or_default(),
            working_directory: w.container.and_then(|c| c.working_dir.clone()),
            ports,
            environment,
            secrets,
            health_check: w
                .health_check
                .and_then(|h| h.liveness.as_ref())
                .and_then(health_shape),
            log_group: naming.log_group(id),
            log_region: self.region(),
            log_stream_prefix: id.component.clone(),
        };

        let network = outputs.get(&shared::network_id());
        let cluster = outputs
            .get(&shared::cluster_id())
            .and_then(|o| o.get("name"))
            .cloned()
            .unwrap_or_else(|| shared::cluster_name(naming, &self.ctx.infra));
        let public = infra
            .and_then(|i| i.networking.as_ref())
            .and_then(|n| n.assign_public_ip)
            .unwrap_or_else(|| shared::stack_assigns_public_ip(&self.ctx.infra));
        let (desired_count, autoscaling) = scaling(infra);
        // Only the tags panka manages are compared (see [`super::support`]).
        let tags = self.ctx.tag_policy().managed(&self.ctx.tags(id));
        let load_balancer = w.load_balancer.map(|lb| {
            let readiness = w
                .health_check
                .and_then(|h| h.readiness.as_ref())
                .and_then(|p| p.http.as_ref());
            LbShape {
                port: lb
                    .port
                    .or_else(|| w.ports.first().map(|p| p.port))
                    .unwrap_or(80),
                path: lb
                    .path
                    .clone()
                    .unwrap_or_else(|| format!("/{}/{}/*", id.service, id.component)),
                host: lb.host.clone(),
                health_check_path: readiness.map_or_else(|| "/".to_string(), |h| h.path.clone()),
                target_group_tags: tags.clone(),
                rule_tags: tags.clone(),
            }
        });
        let retention = self
            .ctx
            .infra
            .logging
            .as_ref()
            .and_then(|l| l.retention_days);
        let service = ServiceShape {
            cluster,
            desired_count,
            subnets: network
                .and_then(|n| n.get("subnets"))
                .map(|s| split_list(s)),
            security_groups: network
                .and_then(|n| n.get("securityGroups"))
                .map(|s| split_list(s)),
            assign_public_ip: public,
            circuit_breaker: true,
            tags,
            load_balancer,
            autoscaling,
            log_retention: Some(retention),
        };
        Some(Render {
            service_name: self.service_name(id),
            task,
            service,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// Health of a service from its primary deployment's rollout state and task counts.
///
/// AWS reports a rollout state for every rolling deployment with the circuit breaker on (all of
/// panka's); emulators do not, so without one a service is healthy once it runs at least as many
/// tasks as it wants and has a single deployment.
fn health_of(
    rollout: Option<&str>,
    reason: Option<&str>,
    desired: i32,
    running: i32,
    deployments: usize,
) -> Health {
    match rollout {
        Some("FAILED") => Health::Degraded(format!(
            "deployment failed: {}",
            reason.unwrap_or("no reason given")
        )),
        Some("IN_PROGRESS") => Health::Progressing,
        Some("COMPLETED") if running == desired => Health::Healthy,
        Some(_) => Health::Progressing,
        None if running >= desired && deployments <= 1 => Health::Healthy,
        None => Health::Progressing,
    }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// The ECS driver, for [`Kind::MicroService`] or [`Kind::Worker`].
pub struct EcsDriver {
    kind: Kind,
    ctx: Ctx,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    scaling: aws_sdk_applicationautoscaling::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    /// Task definitions already described in this run, by ARN (revisions are immutable). The
    /// driver lives as long as one run, so this never outlives it.
    revisions: Mutex<HashMap<String, TaskShape>>,
}

/// What one [`Driver::observe_many`] read for many components at once. Each reader takes its
/// answer from here when the batch asked, and otherwise asks AWS itself: a missing entry means
/// "not asked", an entry of `None` means "asked, and AWS has none".
#[derive(Default)]
struct Batch {
    /// Services by (cluster, name); `None` when not ACTIVE.
    services: HashMap<(String, String), Option<aws_sdk_ecs::types::Service>>,
    /// The log groups under one prefix: (prefix, retention by group name).
    log_groups: Option<(String, HashMap<String, Option<u32>>)>,
    /// Scalable targets by resource id.
    scalable_targets: HashMap<String, Option<ScalableTarget>>,
    /// Target groups by ARN.
    target_groups: HashMap<String, Option<TargetGroup>>,
    /// DNS names by load balancer ARN.
    load_balancers: HashMap<String, Option<String>>,
    /// The HTTP listener by load balancer ARN.
    listeners: HashMap<String, Option<String>>,
    /// Every rule by listener ARN.
    rules: HashMap<String, Vec<Rule>>,
    /// Tags of target groups and listener rules, by ARN.
    elb_tags: HashMap<String, BTreeMap<String, String>>,
}

/// Identifier recording [`TaskShape::fingerprint`] of the revision a service was last applied
/// with: a plan needs not describe that revision again while the desired one has the same.
const TASK_FINGERPRINT: &str = "taskDefinitionFingerprint";
/// DeleteTaskDefinitions takes at most this many revisions.
const TASK_DEFINITIONS_PER_DELETE: usize = 10;
/// DescribeServices takes at most this many services.
const SERVICES_PER_CALL: usize = 10;
/// DescribeScalableTargets takes at most this many resource ids.
const SCALABLE_TARGETS_PER_CALL: usize = 50;
/// DescribeTargetGroups / DescribeLoadBalancers: ARNs per call.
const ELB_ARNS_PER_CALL: usize = 20;

/// How many ECS service events `panka show` gets.
const RECENT_EVENTS: usize = 5;

/// The service as observed, with what update needs besides the fields.
struct Seen {
    /// Recent service events, newest first.
    events: Vec<String>,
    arn: String,
    task_arn: String,
    task: TaskShape,
    shape: ServiceShape,
    target_group: Option<String>,
    rule: Option<String>,
    url: Option<String>,
    health: Health,
    status: String,
    /// The recorded fingerprint of the running revision, when it was not described (`task`
    /// then holds only the log group).
    deferred: Option<String>,
}

impl EcsDriver {
    /// The MicroService driver.
    pub fn microservice(ctx: &Ctx) -> EcsDriver {
        EcsDriver::new(ctx, Kind::MicroService)
    }

    /// The Worker driver.
    pub fn worker(ctx: &Ctx) -> EcsDriver {
        EcsDriver::new(ctx, Kind::Worker)
    }

    fn new(ctx: &Ctx, kind: Kind) -> EcsDriver {
        let ecs = aws_sdk_ecs::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let scaling = aws_sdk_applicationautoscaling::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let logs = aws_sdk_cloudwatchlogs::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let secrets = aws_sdk_secretsmanager::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        EcsDriver {
            kind,
            ctx: ctx.clone(),
            ecs: aws_sdk_ecs::Client::from_conf(ecs),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
            scaling: aws_sdk_applicationautoscaling::Client::from_conf(scaling),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs),
            revisions: Mutex::new(HashMap::new()),
        }
    }

    fn region(&self) -> String {
        self.ctx
            .sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Service name and task definition family.
    fn service_name(&self, id: &ComponentId) -> String {
        self.ctx.naming.component(id, None, NameRules::LONG)
    }

    fn target_group_name(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, Some("tg"), NameRules::LOAD_BALANCER)
    }

    /// Finds the full ARN of every secret `component` references by name (ECS wants ARNs, and
    /// the random suffix Secrets Manager adds cannot be guessed). DescribeSecret reads no value.
    async fn resolve_secrets(
        &self,
        component: &DesiredComponent,
        found: &mut BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let Some(w) = workload(component) else {
            return Ok(());
        };
        for s in w.secrets {
            let name = s.secret_ref.trim();
            if name.starts_with("arn:") || found.contains_key(name) {
                continue;
            }
            let arn = match self.secrets.describe_secret().secret_id(name).send().await {
                Ok(out) => out.arn().map(str::to_string),
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => None,
                Err(e) => return Err(DriverError::aws("look up secret", &component.id, &e)),
            };
            let Some(arn) = arn else {
                return Err(DriverError::MissingSecret {
                    component: component.id.clone(),
                    secret: name.to_string(),
                    field: format!("secrets[{}].secretRef", s.name),
                });
            };
            found.insert(name.to_string(), arn);
        }
        Ok(())
    }

    fn remember(&self, arn: &str, task: &TaskShape) {
        if let Ok(mut revisions) = self.revisions.lock() {
            revisions.insert(arn.to_string(), task.clone());
        }
    }

    fn recall(&self, arn: &str) -> Option<TaskShape> {
        self.revisions.lock().ok().and_then(|r| r.get(arn).cloned())
    }

    // ----- reads -----

    async fn describe_service(
        &self,
        id: &ComponentId,
        cluster: &str,
        name: &str,
        batch: &Batch,
    ) -> Result<Option<aws_sdk_ecs::types::Service>, DriverError> {
        if let Some(read) = batch.services.get(&(cluster.to_string(), name.to_string())) {
            return Ok(read.clone());
        }
        match self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(name)
            .include(ServiceField::Tags)
            .send()
            .await
        {
            // A deleted service lingers as DRAINING, then INACTIVE: both count as gone.
            Ok(out) => Ok(out
                .services()
                .iter()
                .find(|s| s.status() == Some("ACTIVE"))
                .cloned()),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(None),
            Err(e) => Err(DriverError::aws("read ECS service", id, &e)),
        }
    }

    /// What a task definition revision holds: from the cache, or described once.
    async fn task_shape(&self, id: &ComponentId, arn: &str) -> Result<TaskShape, DriverError> {
        if let Some(t) = self.recall(arn) {
            return Ok(t);
        }
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read task definition", id, &e))?;
        let td = out
            .task_definition()
            .ok_or_else(|| DriverError::Unexpected {
                component: id.clone(),
                message: format!("ECS returned no task definition for {arn}"),
            })?;
        let shape = task_shape_of(td, &id.component);
        self.remember(arn, &shape);
        Ok(shape)
    }

    /// `Some(retention)` when the log group exists.
    async fn log_retention(
        &self,
        id: &ComponentId,
        name: &str,
        batch: &Batch,
    ) -> Result<Option<Option<u32>>, DriverError> {
        if let Some(groups) = &batch.log_groups {
            if name.starts_with(&groups.0) {
                return Ok(groups.1.get(name).copied());
            }
        }
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .map_err(|e| DriverError::aws("read log group", id, &e))?;
        Ok(out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .map(|g| g.retention_in_days().and_then(|d| u32::try_from(d).ok())))
    }

    /// The target group, its rule and the load balancer's DNS name, found from the service's
    /// target group: `(shape, rule ARN, url)`; `None` when the target group is gone.
    async fn observe_lb(
        &self,
        id: &ComponentId,
        tg_arn: &str,
        batch: &Batch,
    ) -> Result<Option<(LbShape, Option<String>, Option<String>)>, DriverError> {
        let tg = match batch.target_groups.get(tg_arn) {
            Some(read) => read.clone(),
            None => or_missing(
                self.elb
                    .describe_target_groups()
                    .target_group_arns(tg_arn)
                    .send()
                    .await,
                MISSING,
                "read target group",
                id,
            )?
            .and_then(|o| o.target_groups().first().cloned()),
        };
        let Some(tg) = tg else {
            return Ok(None);
        };
        let mut shape = LbShape {
            port: tg.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            path: String::new(),
            host: None,
            health_check_path: tg.health_check_path().unwrap_or("/").to_string(),
            target_group_tags: BTreeMap::new(),
            rule_tags: BTreeMap::new(),
        };
        let (rule, url) = self.observe_route(id, &tg, batch).await?;
        if let Some(rule) = &rule {
            (shape.path, shape.host) = conditions_of(rule);
        }
        let rule_arn = rule.as_ref().and_then(|r| r.rule_arn()).map(str::to_string);
        let mut arns = vec![tg_arn.to_string()];
        arns.extend(rule_arn.clone());
        let mut tags = self.elb_tags(id, &arns, batch).await?;
        let policy = self.ctx.tag_policy();
        shape.target_group_tags = policy.managed(&tags.remove(tg_arn).unwrap_or_default());
        if let Some(arn) = &rule_arn {
            shape.rule_tags = policy.managed(&tags.remove(arn).unwrap_or_default());
        }
        let url = url.map(|dns| {
            let host = shape.host.clone().unwrap_or(dns);
            format!("http://{host}{}", url_path(&shape.path))
        });
        Ok(Some((shape, rule_arn, url)))
    }

    /// The listener rule forwarding to `tg` and the load balancer's DNS name, as far as they
    /// exist.
    async fn observe_route(
        &self,
        id: &ComponentId,
        tg: &TargetGroup,
        batch: &Batch,
    ) -> Result<(Option<Rule>, Option<String>), DriverError> {
        let tg_arn = tg.target_group_arn().unwrap_or_default();
        let Some(lb_arn) = tg.load_balancer_arns().first() else {
            return Ok((None, None));
        };
        let dns = match batch.load_balancers.get(lb_arn) {
            Some(dns) => dns.clone(),
            None => self
                .elb
                .describe_load_balancers()
                .load_balancer_arns(lb_arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("read load balancer", id, &e))?
                .load_balancers()
                .first()
                .and_then(|l| l.dns_name())
                .map(str::to_string),
        };
        let listener = match batch.listeners.get(lb_arn) {
            Some(listener) => listener.clone(),
            None => self.http_listener(id, lb_arn).await?,
        };
        let Some(listener) = listener else {
            return Ok((None, None));
        };
        let rule = match batch.rules.get(&listener) {
            Some(rules) => rules.iter().find(|r| forwards_to(r, tg_arn)).cloned(),
            None => self.find_rule(id, &listener, tg_arn).await?,
        };
        // Without a rule there is no route, hence no URL.
        Ok(match rule {
            Some(rule) => (Some(rule), dns),
            None => (None, None),
        })
    }

    /// Tags of load balancer resources (target groups, rules) by ARN: from `batch` where it has
    /// them, the others in one DescribeTags call. An ARN AWS does not know has no entry.
    async fn elb_tags(
        &self,
        id: &ComponentId,
        arns: &[String],
        batch: &Batch,
    ) -> Result<HashMap<String, BTreeMap<String, String>>, DriverError> {
        let mut found: HashMap<String, BTreeMap<String, String>> = arns
            .iter()
            .filter_map(|a| batch.elb_tags.get(a).map(|t| (a.clone(), t.clone())))
            .collect();
        let ask: Vec<String> = arns
            .iter()
            .filter(|a| !found.contains_key(*a))
            .cloned()
            .collect();
        if ask.is_empty() {
            return Ok(found);
        }
        let out = or_missing(
            self.elb
                .describe_tags()
                .set_resource_arns(Some(ask))
                .send()
                .await,
            MISSING,
            "read load balancer tags",
            id,
        )?;
        if let Some(out) = out {
            found.extend(elb_tag_maps(&out));
        }
        Ok(found)
    }

    /// The ARN of the load balancer's HTTP listener (the one panka routes on), if any.
    async fn http_listener(
        &self,
        id: &ComponentId,
        lb_arn: &str,
    ) -> Result<Option<String>, DriverError> {
        let listeners = self
            .elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read listeners", id, &e))?;
        Ok(listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(shared::LISTENER_PORT))
            .and_then(|l| l.listener_arn())
            .map(str::to_string))
    }

    /// The revisions of a task definition family in `status`.
    async fn revisions_of(
        &self,
        id: &ComponentId,
        family: &str,
        status: TaskDefinitionStatus,
    ) -> Result<Vec<String>, DriverError> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(status.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| DriverError::aws("list task definitions", id, &e))?;
            // `familyPrefix` is documented as the full family; check anyway.
            arns.extend(
                out.task_definition_arns()
                    .iter()
                    .filter(|arn| {
                        arn.rsplit_once('/')
                            .and_then(|(_, fr)| fr.rsplit_once(':'))
                            .is_some_and(|(f, _)| f == family)
                    })
                    .cloned(),
            );
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(arns);
            }
        }
    }

    /// Every rule of a listener.
    async fn rules(
        &self,
        id: &ComponentId,
        listener: &str,
    ) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::Rule>, DriverError> {
        let mut rules = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .elb
                .describe_rules()
                .listener_arn(listener)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| DriverError::aws("read listener rules", id, &e))?;
            rules.extend(out.rules().iter().cloned());
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(rules);
            }
        }
    }

    /// The rule of `listener` forwarding to `tg_arn`: that is how panka recognises its own.
    async fn find_rule(
        &self,
        id: &ComponentId,
        listener: &str,
        tg_arn: &str,
    ) -> Result<Option<aws_sdk_elasticloadbalancingv2::types::Rule>, DriverError> {
        Ok(self
            .rules(id, listener)
            .await?
            .into_iter()
            .find(|r| forwards_to(r, tg_arn)))
    }

    async fn observe_scaling(
        &self,
        id: &ComponentId,
        resource_id: &str,
        batch: &Batch,
    ) -> Result<Option<ScalingShape>, DriverError> {
        let target = match batch.scalable_targets.get(resource_id) {
            Some(read) => read.clone(),
            None => self
                .scaling
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_ids(resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| DriverError::aws("read scalable target", id, &e))?
                .scalable_targets()
                .iter()
                .find(|t| t.resource_id() == resource_id)
                .cloned(),
        };
        let Some(t) = target else {
            return Ok(None);
        };
        let mut policies: Vec<PolicyShape> = self
            .policies(id, resource_id)
            .await?
            .iter()
            .filter_map(|p| {
                let c = p.target_tracking_scaling_policy_configuration()?;
                let metric = metric_of(
                    c.predefined_metric_specification()?
                        .predefined_metric_type(),
                )?;
                Some(PolicyShape {
                    metric: metric.to_string(),
                    target_value: c.target_value(),
                })
            })
            .collect();
        policies.sort_by(|a, b| a.metric.cmp(&b.metric));
        Ok(Some(ScalingShape {
            min_replicas: u32::try_from(t.min_capacity()).unwrap_or(0),
            max_replicas: u32::try_from(t.max_capacity()).unwrap_or(0),
            policies,
        }))
    }

    async fn policies(
        &self,
        id: &ComponentId,
        resource_id: &str,
    ) -> Result<Vec<aws_sdk_applicationautoscaling::types::ScalingPolicy>, DriverError> {
        let out = self
            .scaling
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
            .map_err(|e| DriverError::aws("read scaling policies", id, &e))?;
        // Filter exactly: some implementations match the resource id as a substring.
        Ok(out
            .scaling_policies()
            .iter()
            .filter(|p| p.resource_id() == resource_id)
            .cloned()
            .collect())
    }

    /// Reads, for many components at once, what the APIs let one call answer for several:
    /// services ten at a time per cluster, the stack's log groups by their common prefix,
    /// scalable targets fifty at a time, target groups, load balancers, listeners and rules
    /// once each. Task definitions and scaling policies stay per component.
    async fn batch(&self, items: &[Observe]) -> Result<Batch, DriverError> {
        let mut b = Batch::default();
        let Some((first, _)) = items.first() else {
            return Ok(b);
        };

        let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, recorded) in items {
            let cluster = recorded
                .as_ref()
                .and_then(|r| r.get("cluster").cloned())
                .unwrap_or_else(|| shared::cluster_name(&self.ctx.naming, &self.ctx.infra));
            by_cluster
                .entry(cluster)
                .or_default()
                .push(self.service_name(id));
        }
        for (cluster, names) in &by_cluster {
            for chunk in names.chunks(SERVICES_PER_CALL) {
                let read = self
                    .ecs
                    .describe_services()
                    .cluster(cluster)
                    .set_services(Some(chunk.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await;
                let found = match read {
                    Ok(out) => out.services().to_vec(),
                    Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Vec::new(),
                    Err(e) => return Err(DriverError::aws("read ECS services", first, &e)),
                };
                for name in chunk {
                    // A deleted service lingers as DRAINING, then INACTIVE: both count as gone.
                    let active = found
                        .iter()
                        .find(|s| s.service_name() == Some(name) && s.status() == Some("ACTIVE"))
                        .cloned();
                    b.services.insert((cluster.clone(), name.clone()), active);
                }
            }
        }

        let prefix = self.ctx.naming.log_group_prefix();
        let mut groups = HashMap::new();
        let mut token = None;
        loop {
            let out = self
                .logs
                .describe_log_groups()
                .log_group_name_prefix(&prefix)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| DriverError::aws("read log groups", first, &e))?;
            for g in out.log_groups() {
                if let Some(name) = g.log_group_name() {
                    let retention = g.retention_in_days().and_then(|d| u32::try_from(d).ok());
                    groups.insert(name.to_string(), retention);
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        b.log_groups = Some((prefix, groups));

        let running: Vec<&aws_sdk_ecs::types::Service> = b.services.values().flatten().collect();
        let resource_ids: Vec<String> = b
            .services
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|((cluster, name), _)| format!("service/{cluster}/{name}"))
            .collect();
        for chunk in resource_ids.chunks(SCALABLE_TARGETS_PER_CALL) {
            let out = self
                .scaling
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .set_resource_ids(Some(chunk.to_vec()))
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| DriverError::aws("read scalable targets", first, &e))?;
            for rid in chunk {
                let target = out
                    .scalable_targets()
                    .iter()
                    .find(|t| t.resource_id() == rid)
                    .cloned();
                b.scalable_targets.insert(rid.clone(), target);
            }
        }

        let mut tg_arns: Vec<String> = running
            .iter()
            .flat_map(|s| s.load_balancers())
            .filter_map(|l| l.target_group_arn())
            .map(str::to_string)
            .collect();
        tg_arns.sort();
        tg_arns.dedup();
        for chunk in tg_arns.chunks(ELB_ARNS_PER_CALL) {
            // One ARN that is gone fails the whole call: leave those to the per-component read.
            let Ok(out) = self
                .elb
                .describe_target_groups()
                .set_target_group_arns(Some(chunk.to_vec()))
                .send()
                .await
            else {
                continue;
            };
            for arn in chunk {
                let tg = out
                    .target_groups()
                    .iter()
                    .find(|t| t.target_group_arn() == Some(arn))
                    .cloned();
                b.target_groups.insert(arn.clone(), tg);
            }
        }

        let mut lb_arns: Vec<String> = b
            .target_groups
            .values()
            .flatten()
            .filter_map(|t| t.load_balancer_arns().first().cloned())
            .collect();
        lb_arns.sort();
        lb_arns.dedup();
        for chunk in lb_arns.chunks(ELB_ARNS_PER_CALL) {
            let Ok(out) = self
                .elb
                .describe_load_balancers()
                .set_load_balancer_arns(Some(chunk.to_vec()))
                .send()
                .await
            else {
                continue;
            };
            for arn in chunk {
                let dns = out
                    .load_balancers()
                    .iter()
                    .find(|l| l.load_balancer_arn() == Some(arn))
                    .and_then(|l| l.dns_name())
                    .map(str::to_string);
                b.load_balancers.insert(arn.clone(), dns);
            }
        }
        for arn in &lb_arns {
            let listener = self.http_listener(first, arn).await?;
            if let Some(l) = &listener {
                b.rules.insert(l.clone(), self.rules(first, l).await?);
            }
            b.listeners.insert(arn.clone(), listener);
        }

        // The tags of every target group read and of the rule forwarding to it.
        let mut tagged: Vec<String> = Vec::new();
        for arn in b
            .target_groups
            .iter()
            .filter(|(_, tg)| tg.is_some())
            .map(|(arn, _)| arn)
        {
            tagged.push(arn.clone());
            let rule = b
                .rules
                .values()
                .flatten()
                .find(|r| forwards_to(r, arn))
                .and_then(|r| r.rule_arn());
            tagged.extend(rule.map(str::to_string));
        }
        tagged.sort();
        for chunk in tagged.chunks(ELB_ARNS_PER_CALL) {
            // One ARN that is gone fails the whole call: leave those to the per-component read.
            let Ok(out) = self
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
            else {
                continue;
            };
            b.elb_tags.extend(elb_tag_maps(&out));
        }
        Ok(b)
    }

    /// [`Driver::observe`], taking what `batch` already read; with `defer`, see
    /// [`EcsDriver::seen_in`].
    async fn observe_in(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
        batch: &Batch,
        defer: bool,
    ) -> Result<Observation, DriverError> {
        let mut o = Observation::default();
        let Some((seen, tags)) = self.seen_in(id, recorded, batch, defer).await? else {
            o.status = "missing".into();
            return Ok(o);
        };
        o.exists = true;
        o.owned = self.ctx.naming.owns(Some(id), &tags);
        o.fields = project(&seen.task, &seen.shape);
        let applied = self.applied(id, &seen);
        if let Some(fingerprint) = &seen.deferred {
            // Fields of the task definition are filled in by `complete`.
            for (k, v) in &mut o.fields {
                if is_task_field(k) {
                    *v = unknown();
                }
            }
            o.unread = Some(Unread {
                reference: seen.task_arn.clone(),
                fingerprint: fingerprint.clone(),
            });
        }
        o.identifiers = applied.identifiers;
        o.outputs = applied.outputs;
        o.health = seen.health;
        o.status = seen.status;
        o.events = seen.events;
        Ok(o)
    }

    /// Reads everything; `None` when the service does not exist.
    async fn seen(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<(Seen, BTreeMap<String, String>)>, DriverError> {
        self.seen_in(id, recorded, &Batch::default(), false).await
    }

    /// [`EcsDriver::seen`], taking what `batch` already read instead of asking again. With
    /// `defer`, a revision state recorded with a fingerprint is not described (see
    /// [`Seen::deferred`]).
    async fn seen_in(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
        batch: &Batch,
        defer: bool,
    ) -> Result<Option<(Seen, BTreeMap<String, String>)>, DriverError> {
        let cluster = recorded
            .and_then(|r| r.get("cluster").cloned())
            .unwrap_or_else(|| shared::cluster_name(&self.ctx.naming, &self.ctx.infra));
        let name = self.service_name(id);
        let Some(svc) = self.describe_service(id, &cluster, &name, batch).await? else {
            return Ok(None);
        };
        let tags = aws::tag_map(svc.tags().iter().map(|t| (t.key(), t.value())));
        let task_arn = svc.task_definition().unwrap_or_default().to_string();
        let deferred = recorded
            .filter(|r| defer && r.get("taskDefinitionArn") == Some(&task_arn))
            .and_then(|r| r.get(TASK_FINGERPRINT).cloned())
            .filter(|_| self.recall(&task_arn).is_none());
        let task = match &deferred {
            Some(_) => TaskShape {
                log_group: recorded
                    .and_then(|r| r.get("logGroup").cloned())
                    .unwrap_or_else(|| self.ctx.naming.log_group(id)),
                ..TaskShape::default()
            },
            None => self.task_shape(id, &task_arn).await?,
        };
        let log_retention = self
            .log_retention(id, &self.ctx.naming.log_group(id), batch)
            .await?;
        let target_group = svc
            .load_balancers()
            .iter()
            .find_map(|l| l.target_group_arn())
            .map(str::to_string);
        let (load_balancer, rule, url) = match &target_group {
            Some(tg) => match self.observe_lb(id, tg, batch).await? {
                Some((shape, rule, url)) => (Some(shape), rule, url),
                None => (None, None, None),
            },
            None => (None, None, None),
        };
        let resource_id = format!("service/{cluster}/{name}");
        let autoscaling = self.observe_scaling(id, &resource_id, batch).await?;
        let vpc = svc
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration());
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let breaker = svc
            .deployment_configuration()
            .and_then(|d| d.deployment_circuit_breaker())
            .is_some_and(|b| b.enable() && b.rollback());
        let primary = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let health = health_of(
            primary.and_then(|d| d.rollout_state()).map(|r| r.as_str()),
            primary.and_then(|d| d.rollout_state_reason()),
            svc.desired_count(),
            svc.running_count(),
            svc.deployments().len(),
        );
        let shape = ServiceShape {
            cluster: cluster.clone(),
            desired_count: u32::try_from(svc.desired_count()).unwrap_or(0),
            subnets: Some(vpc.map(|v| sorted(v.subnets())).unwrap_or_default()),
            security_groups: Some(vpc.map(|v| sorted(v.security_groups())).unwrap_or_default()),
            assign_public_ip: vpc.and_then(|v| v.assign_public_ip())
                == Some(&AssignPublicIp::Enabled),
            circuit_breaker: breaker,
            tags: self.ctx.tag_policy().managed(&tags),
            load_balancer,
            autoscaling,
            log_retention,
        };
        let events = svc
            .events()
            .iter()
            .take(RECENT_EVENTS)
            .filter_map(|e| {
                let at = e.created_at().map(|t| t.to_string()).unwrap_or_default();
                e.message().map(|m| format!("{at} {m}").trim().to_string())
            })
            .collect();
        let seen = Seen {
            events,
            arn: svc.service_arn().unwrap_or_default().to_string(),
            task_arn,
            task,
            shape,
            target_group,
            rule,
            url,
            health,
            status: format!("{}/{} running", svc.running_count(), svc.desired_count()),
            deferred,
        };
        Ok(Some((seen, tags)))
    }

    fn applied(&self, id: &ComponentId, s: &Seen) -> Applied {
        let name = self.service_name(id);
        let mut a = Applied::default();
        let ids = &mut a.identifiers;
        ids.insert("cluster".into(), s.shape.cluster.clone());
        ids.insert("service".into(), name.clone());
        ids.insert("serviceArn".into(), s.arn.clone());
        ids.insert("taskDefinitionArn".into(), s.task_arn.clone());
        ids.insert("family".into(), name.clone());
        ids.insert("logGroup".into(), s.task.log_group.clone());
        // Undescribed (deferred), the revision keeps the fingerprint state recorded for it.
        if let Some(fingerprint) = s.deferred.clone().or_else(|| s.task.fingerprint()) {
            ids.insert(TASK_FINGERPRINT.into(), fingerprint);
        }
        if let Some(tg) = &s.target_group {
            ids.insert("targetGroupArn".into(), tg.clone());
        }
        if let Some(r) = &s.rule {
            ids.insert("ruleArn".into(), r.clone());
        }
        if s.shape.autoscaling.is_some() {
            ids.insert(
                "scalableTarget".into(),
                format!("service/{}/{name}", s.shape.cluster),
            );
        }
        a.outputs.insert("name".into(), name);
        a.outputs.insert("arn".into(), s.arn.clone());
        a.outputs
            .insert("taskDefinitionArn".into(), s.task_arn.clone());
        a.outputs
            .insert("logGroup".into(), s.task.log_group.clone());
        if self.kind == Kind::MicroService {
            if let Some(url) = &s.url {
                a.outputs.insert("url".into(), url.clone());
            }
        }
        a
    }

    // ----- writes -----

    /// Creates the log group if needed and sets its retention; `true` when it created it (with
    /// panka's tags).
    async fn ensure_log_group(
        &self,
        id: &ComponentId,
        name: &str,
        want: Option<u32>,
        have: Option<Option<u32>>,
    ) -> Result<bool, DriverError> {
        let mut current = have;
        let mut created = false;
        if current.is_none() {
            let tags: HashMap<String, String> = self.ctx.tags(id).into_iter().collect();
            match self
                .logs
                .create_log_group()
                .log_group_name(name)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => {
                    current = Some(None);
                    created = true;
                }
                // Left by an earlier, interrupted apply: its retention is unknown, so set it.
                Err(e) if is_code(&e, "ResourceAlreadyExistsException") => {}
                Err(e) => return Err(DriverError::aws("create log group", id, &e)),
            }
        }
        if current == Some(want) {
            return Ok(created);
        }
        match want {
            Some(days) => {
                self.logs
                    .put_retention_policy()
                    .log_group_name(name)
                    .retention_in_days(i32::try_from(days).unwrap_or(i32::MAX))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("set log retention", id, &e))?;
            }
            None => {
                or_missing(
                    self.logs
                        .delete_retention_policy()
                        .log_group_name(name)
                        .send()
                        .await,
                    MISSING,
                    "remove log retention",
                    id,
                )?;
            }
        }
        Ok(created)
    }

    /// Makes the log group carry exactly panka's tags (see [`super::support`]), refusing one
    /// that is not ours. Plans do not compare them (CloudWatch Logs reads tags one group at a
    /// time, which would add a call per component to every plan), so every apply of the
    /// component does this. A group that does not exist has nothing to tag.
    async fn converge_log_group_tags(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<(), DriverError> {
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .map_err(|e| DriverError::aws("read log group", id, &e))?;
        let Some(arn) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .and_then(|g| g.log_group_arn())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let have: BTreeMap<String, String> = self
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read log group tags", id, &e))?
            .tags()
            .map(|t| t.clone().into_iter().collect())
            .unwrap_or_default();
        ensure_ours(&self.ctx, id, &have, format!("log group {name}"))?;
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), &have);
        if !changes.set.is_empty() {
            self.logs
                .tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(changes.set.into_iter().collect()))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag log group", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.logs
                .untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag log group", id, &e))?;
        }
        Ok(())
    }

    /// Makes a target group or listener rule carry exactly panka's tags; `have` is what it
    /// carries now.
    async fn converge_elb_tags(
        &self,
        id: &ComponentId,
        arn: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), have);
        if !changes.set.is_empty() {
            self.elb
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(elb_tags(changes.set.iter())))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag load balancer resource", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.elb
                .remove_tags()
                .resource_arns(arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag load balancer resource", id, &e))?;
        }
        Ok(())
    }

    /// Creates or converges the target group; returns its ARN.
    async fn ensure_target_group(
        &self,
        id: &ComponentId,
        lb: &LbShape,
        vpc_id: &str,
    ) -> Result<String, DriverError> {
        let name = self.target_group_name(id);
        let existing = or_missing(
            self.elb.describe_target_groups().names(&name).send().await,
            MISSING,
            "read target group",
            id,
        )?
        .and_then(|o| o.target_groups().first().cloned());
        if let Some(tg) = existing {
            let arn = tg.target_group_arn().unwrap_or_default().to_string();
            let tags = self.elb_tags_of(id, &arn).await?;
            ensure_ours(&self.ctx, id, &tags, format!("target group {name}"))?;
            if tg.port() != Some(i32::from(lb.port)) {
                return Err(DriverError::Unexpected {
                    component: id.clone(),
                    message: format!(
                        "target group {name} routes to port {:?}, not {}; it must be replaced",
                        tg.port(),
                        lb.port
                    ),
                });
            }
            if tg.health_check_path() != Some(lb.health_check_path.as_str()) {
                self.elb
                    .modify_target_group()
                    .target_group_arn(&arn)
                    .health_check_path(&lb.health_check_path)
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("update target group", id, &e))?;
            }
            self.converge_elb_tags(id, &arn, &tags).await?;
            return Ok(arn);
        }
        let out = self
            .elb
            .create_target_group()
            .name(&name)
            .protocol(ProtocolEnum::Http)
            .port(i32::from(lb.port))
            .vpc_id(vpc_id)
            .target_type(TargetTypeEnum::Ip)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(&lb.health_check_path)
            .set_tags(Some(elb_tags(self.ctx.tags(id).iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("create target group", id, &e))?;
        out.target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)
            .ok_or_else(|| DriverError::Unexpected {
                component: id.clone(),
                message: format!("ELB returned no ARN for target group {name}"),
            })
    }

    /// The tags of one load balancer resource (target group, rule).
    async fn elb_tags_of(
        &self,
        id: &ComponentId,
        arn: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        let out = self
            .elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read load balancer tags", id, &e))?;
        Ok(elb_tag_maps(&out).remove(arn).unwrap_or_default())
    }

    /// Creates or converges the listener rule forwarding to `tg_arn`; returns its ARN.
    async fn ensure_rule(
        &self,
        id: &ComponentId,
        listener: &str,
        tg_arn: &str,
        lb: &LbShape,
    ) -> Result<String, DriverError> {
        let rules = self.rules(id, listener).await?;
        let conditions = rule_conditions(lb);
        if let Some(rule) = rules.iter().find(|r| forwards_to(r, tg_arn)) {
            let arn = rule.rule_arn().unwrap_or_default().to_string();
            if conditions_of(rule) != (lb.path.clone(), lb.host.clone()) {
                self.elb
                    .modify_rule()
                    .rule_arn(&arn)
                    .set_conditions(Some(conditions))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("update listener rule", id, &e))?;
            }
            // It forwards to our target group, which is checked to be ours: so is the rule.
            let tags = self.elb_tags_of(id, &arn).await?;
            self.converge_elb_tags(id, &arn, &tags).await?;
            return Ok(arn);
        }
        let mut used: std::collections::BTreeSet<u32> = rules
            .iter()
            .filter_map(|r| r.priority()?.parse().ok())
            .collect();
        // Another writer may take a priority between our read and our create: try the next.
        for _ in 0..5 {
            let priority = free_priority(id, &used);
            let created = self
                .elb
                .create_rule()
                .listener_arn(listener)
                .priority(i32::try_from(priority).unwrap_or(i32::MAX))
                .set_conditions(Some(conditions.clone()))
                .actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(tg_arn)
                        .build(),
                )
                .set_tags(Some(elb_tags(self.ctx.tags(id).iter())))
                .send()
                .await;
            match created {
                Ok(out) => {
                    return out
                        .rules()
                        .first()
                        .and_then(|r| r.rule_arn())
                        .map(str::to_string)
                        .ok_or_else(|| DriverError::Unexpected {
                            component: id.clone(),
                            message: "ELB returned no ARN for the listener rule".into(),
                        })
                }
                Err(e) if is_code(&e, "PriorityInUse") => {
                    used.insert(priority);
                }
                Err(e) => return Err(DriverError::aws("create listener rule", id, &e)),
            }
        }
        Err(DriverError::Unexpected {
            component: id.clone(),
            message: "no free listener rule priority after 5 attempts".into(),
        })
    }

    /// Registers a task definition revision; returns its ARN.
    async fn register(&self, id: &ComponentId, task: &TaskShape) -> Result<String, DriverError> {
        let family = self.service_name(id);
        let out = self
            .ecs
            .register_task_definition()
            .family(&family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(task.cpu.to_string())
            .memory(task.memory.to_string())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::from(task.architecture.as_str()))
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .set_execution_role_arn(task.execution_role.clone())
            .container_definitions(container_definition(id, task)?)
            .set_tags(Some(ecs_tags(self.ctx.tags(id).iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("register task definition", id, &e))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| DriverError::Unexpected {
                component: id.clone(),
                message: format!("ECS returned no ARN for task definition {family}"),
            })?;
        self.remember(&arn, task);
        Ok(arn)
    }

    fn network(
        &self,
        id: &ComponentId,
        svc: &ServiceShape,
    ) -> Result<NetworkConfiguration, DriverError> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(svc.subnets.clone())
            .set_security_groups(svc.security_groups.clone())
            .assign_public_ip(if svc.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| build_error(id, e))?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build())
    }

    fn ecs_load_balancers(
        &self,
        id: &ComponentId,
        lb: Option<&LbShape>,
        tg: Option<&str>,
    ) -> Vec<aws_sdk_ecs::types::LoadBalancer> {
        match (lb, tg) {
            (Some(lb), Some(tg)) => vec![aws_sdk_ecs::types::LoadBalancer::builder()
                .target_group_arn(tg)
                .container_name(&id.component)
                .container_port(i32::from(lb.port))
                .build()],
            _ => Vec::new(),
        }
    }

    /// Target group and rule for a wanted load balancer; returns `(target group, rule)`.
    async fn ensure_lb(
        &self,
        id: &ComponentId,
        lb: &LbShape,
        outputs: &Outputs,
    ) -> Result<(String, String), DriverError> {
        let vpc = required(outputs, id, &shared::network_id(), "vpcId")?;
        let listener = required(outputs, id, &shared::alb_id(), "listenerArn")?;
        let tg = self.ensure_target_group(id, lb, &vpc).await?;
        let rule = self.ensure_rule(id, &listener, &tg, lb).await?;
        Ok((tg, rule))
    }

    fn url(lb: &LbShape, outputs: &Outputs) -> Option<String> {
        let dns = outputs.get(&shared::alb_id())?.get("dnsName")?;
        let host = lb.host.clone().unwrap_or_else(|| dns.clone());
        Some(format!("http://{host}{}", url_path(&lb.path)))
    }

    /// Converges the scalable target and its policies to `want` (none: removes them).
    async fn converge_scaling(
        &self,
        id: &ComponentId,
        resource_id: &str,
        want: Option<&ScalingShape>,
        have: Option<&ScalingShape>,
        label: Option<String>,
    ) -> Result<(), DriverError> {
        let name = self.service_name(id);
        let existing = if have.is_some() {
            self.policies(id, resource_id).await?
        } else {
            Vec::new()
        };
        let Some(want) = want else {
            for p in &existing {
                self.delete_policy(id, resource_id, p.policy_name()).await?;
            }
            if have.is_some() {
                self.deregister_target(id, resource_id).await?;
            }
            return Ok(());
        };
        if have.is_none_or(|h| {
            (h.min_replicas, h.max_replicas) != (want.min_replicas, want.max_replicas)
        }) {
            self.scaling
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .min_capacity(i32::try_from(want.min_replicas).unwrap_or(i32::MAX))
                .max_capacity(i32::try_from(want.max_replicas).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| DriverError::aws("register scalable target", id, &e))?;
        }
        let wanted: BTreeMap<String, &PolicyShape> = want
            .policies
            .iter()
            .map(|p| (policy_name(&name, &p.metric), p))
            .collect();
        for p in &existing {
            if !wanted.contains_key(p.policy_name()) {
                self.delete_policy(id, resource_id, p.policy_name()).await?;
            }
        }
        let have_policies: BTreeMap<&str, PolicyShape> = existing
            .iter()
            .filter_map(|p| {
                let c = p.target_tracking_scaling_policy_configuration()?;
                let metric = metric_of(
                    c.predefined_metric_specification()?
                        .predefined_metric_type(),
                )?;
                Some((
                    p.policy_name(),
                    PolicyShape {
                        metric: metric.to_string(),
                        target_value: c.target_value(),
                    },
                ))
            })
            .collect();
        for (policy, p) in wanted {
            if have_policies.get(policy.as_str()) == Some(p) {
                continue;
            }
            let metric = metric_type(&p.metric);
            let spec = PredefinedMetricSpecification::builder()
                .predefined_metric_type(metric.clone())
                .set_resource_label(if metric == MetricType::AlbRequestCountPerTarget {
                    label.clone()
                } else {
                    None
                })
                .build()
                .map_err(|e| build_error(id, e))?;
            self.scaling
                .put_scaling_policy()
                .policy_name(&policy)
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .policy_type(PolicyType::TargetTrackingScaling)
                .target_tracking_scaling_policy_configuration(
                    TargetTrackingScalingPolicyConfiguration::builder()
                        .target_value(p.target_value)
                        .predefined_metric_specification(spec)
                        .build()
                        .map_err(|e| build_error(id, e))?,
                )
                .send()
                .await
                .map_err(|e| DriverError::aws("put scaling policy", id, &e))?;
        }
        Ok(())
    }

    async fn delete_policy(
        &self,
        id: &ComponentId,
        resource_id: &str,
        policy: &str,
    ) -> Result<(), DriverError> {
        match self
            .scaling
            .delete_scaling_policy()
            .policy_name(policy)
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(()),
            Err(e) => Err(DriverError::aws("delete scaling policy", id, &e)),
        }
    }

    async fn deregister_target(
        &self,
        id: &ComponentId,
        resource_id: &str,
    ) -> Result<(), DriverError> {
        match self
            .scaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(()),
            Err(e) => Err(DriverError::aws("deregister scalable target", id, &e)),
        }
    }

    async fn delete_lb(
        &self,
        id: &ComponentId,
        rule: Option<&str>,
        tg: Option<&str>,
    ) -> Result<(), DriverError> {
        if let Some(rule) = rule {
            match self.elb.delete_rule().rule_arn(rule).send().await {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("delete listener rule", id, &e)),
            }
        }
        if let Some(tg) = tg {
            match self
                .elb
                .delete_target_group()
                .target_group_arn(tg)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("delete target group", id, &e)),
            }
        }
        Ok(())
    }

    /// Creates everything for a component whose service does not exist (parts left by an
    /// interrupted apply are taken over when they are ours).
    async fn create_fresh(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        let r = self.known_render(component, outputs, lookups)?;
        let cluster = required(outputs, id, &shared::cluster_id(), "name")?;
        let mut shape = r.service.clone();
        shape.cluster = cluster.clone();
        let retention = shape.log_retention.flatten();
        let created = self
            .ensure_log_group(id, &r.task.log_group, retention, None)
            .await?;
        if !created {
            // Left by an interrupted apply (or someone else's): ours to tag, or refused.
            self.converge_log_group_tags(id, &r.task.log_group).await?;
        }
        let (target_group, rule, url) = match &shape.load_balancer {
            Some(lb) => {
                let (tg, rule) = self.ensure_lb(id, lb, outputs).await?;
                (Some(tg), Some(rule), Self::url(lb, outputs))
            }
            None => (None, None, None),
        };
        let task_arn = self.register(id, &r.task).await?;
        let created = self
            .ecs
            .create_service()
            .cluster(&cluster)
            .service_name(&r.service_name)
            .task_definition(&task_arn)
            .desired_count(i32::try_from(shape.desired_count).unwrap_or(i32::MAX))
            .launch_type(LaunchType::Fargate)
            .network_configuration(self.network(id, &shape)?)
            .deployment_configuration(deployment_configuration())
            .set_load_balancers(Some(self.ecs_load_balancers(
                id,
                shape.load_balancer.as_ref(),
                target_group.as_deref(),
            )))
            .set_tags(Some(ecs_tags(shape.tags.iter())))
            .propagate_tags(PropagateTags::Service)
            .enable_ecs_managed_tags(true)
            .send()
            .await
            .map_err(|e| DriverError::aws("create ECS service", id, &e))?;
        let svc = created.service();
        let arn = svc
            .and_then(|s| s.service_arn())
            .unwrap_or_default()
            .to_string();
        let breaker = svc
            .and_then(|s| s.deployment_configuration())
            .and_then(|d| d.deployment_circuit_breaker())
            .is_some_and(|b| b.enable() && b.rollback());
        if !breaker {
            // AWS echoes the deployment configuration it stored; an implementation that dropped
            // it (some emulators do on create) gets it set explicitly.
            self.ecs
                .update_service()
                .cluster(&cluster)
                .service(&r.service_name)
                .deployment_configuration(deployment_configuration())
                .send()
                .await
                .map_err(|e| DriverError::aws("update ECS service", id, &e))?;
        }
        let resource_id = format!("service/{cluster}/{}", r.service_name);
        let label = resource_label(outputs, target_group.as_deref());
        self.converge_scaling(id, &resource_id, shape.autoscaling.as_ref(), None, label)
            .await?;
        let seen = Seen {
            events: Vec::new(),
            arn,
            task_arn,
            task: r.task,
            shape,
            target_group,
            rule,
            url,
            health: Health::Progressing,
            status: String::new(),
            deferred: None,
        };
        Ok(self.applied(id, &seen))
    }

    /// The render of a component, refusing values not known yet.
    fn known_render(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Render, DriverError> {
        let id = &component.id;
        let r =
            self.render(component, outputs, lookups)
                .ok_or_else(|| DriverError::Unexpected {
                    component: id.clone(),
                    message: format!("the {} driver was given a {}", self.kind, component.kind()),
                })?;
        let unknown: Vec<&String> = r
            .task
            .environment
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        if !unknown.is_empty() {
            return Err(DriverError::Unexpected {
                component: id.clone(),
                message: format!(
                    "environment {} depends on outputs not known yet; apply the components it references first",
                    unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if r.service.subnets.is_none() || r.service.security_groups.is_none() {
            return Err(DriverError::Unexpected {
                component: id.clone(),
                message: format!(
                    "the outputs of {} are not known; apply the stack-shared resources first",
                    shared::network_id()
                ),
            });
        }
        Ok(r)
    }

    /// Changes what `diffs` names, part by part, on an existing service.
    async fn converge_diffs(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        diffs: &[FieldDiff],
        seen: Seen,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        let r = self.known_render(component, outputs, lookups)?;
        let touched = |part: Part| diffs.iter().any(|d| part_of(&d.field) == part);
        let want = &r.service;
        let mut now = seen;
        let cluster = now.shape.cluster.clone();
        let name = r.service_name.clone();

        let created = if touched(Part::Log) {
            let created = self
                .ensure_log_group(
                    id,
                    &r.task.log_group,
                    want.log_retention.flatten(),
                    now.shape.log_retention,
                )
                .await?;
            now.shape.log_retention = want.log_retention;
            created
        } else {
            false
        };
        if !created {
            self.converge_log_group_tags(id, &r.task.log_group).await?;
        }

        let mut attach_changed = false;
        let mut detach: Option<(Option<String>, Option<String>)> = None;
        if touched(Part::LoadBalancer) {
            match &want.load_balancer {
                Some(lb) => {
                    let (tg, rule) = self.ensure_lb(id, lb, outputs).await?;
                    attach_changed = now.target_group.as_deref() != Some(tg.as_str());
                    now.target_group = Some(tg);
                    now.rule = Some(rule);
                    now.url = Self::url(lb, outputs);
                }
                None => {
                    attach_changed = now.target_group.is_some();
                    detach = Some((now.rule.take(), now.target_group.take()));
                    now.url = None;
                }
            }
            now.shape.load_balancer = want.load_balancer.clone();
        }

        let mut new_task = None;
        if touched(Part::Task) && now.task != r.task {
            let arn = self.register(id, &r.task).await?;
            now.task_arn = arn.clone();
            now.task = r.task.clone();
            new_task = Some(arn);
        }

        let autoscaled = want.autoscaling.is_some();
        let count_changed =
            !autoscaled && touched(Part::Service) && now.shape.desired_count != want.desired_count;
        let network_changed = now.shape.subnets != want.subnets
            || now.shape.security_groups != want.security_groups
            || now.shape.assign_public_ip != want.assign_public_ip;
        let breaker_changed = now.shape.circuit_breaker != want.circuit_breaker;
        if new_task.is_some()
            || count_changed
            || (touched(Part::Service) && (network_changed || breaker_changed))
            || attach_changed
        {
            let mut req = self
                .ecs
                .update_service()
                .cluster(&cluster)
                .service(&name)
                .set_task_definition(new_task.clone());
            if count_changed {
                req = req.desired_count(i32::try_from(want.desired_count).unwrap_or(i32::MAX));
                now.shape.desired_count = want.desired_count;
            }
            if network_changed {
                req = req.network_configuration(self.network(id, want)?);
            }
            if breaker_changed {
                req = req.deployment_configuration(deployment_configuration());
            }
            if attach_changed {
                req = req.set_load_balancers(Some(self.ecs_load_balancers(
                    id,
                    want.load_balancer.as_ref(),
                    now.target_group.as_deref(),
                )));
            }
            req.send()
                .await
                .map_err(|e| DriverError::aws("update ECS service", id, &e))?;
        }
        if touched(Part::Service) && now.shape.tags != want.tags {
            // Both are the tags panka manages: what differs is set, what it did not set goes.
            let changes = self.ctx.tag_policy().changes(&want.tags, &now.shape.tags);
            if !changes.set.is_empty() {
                self.ecs
                    .tag_resource()
                    .resource_arn(&now.arn)
                    .set_tags(Some(ecs_tags(changes.set.iter())))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("tag ECS service", id, &e))?;
            }
            if !changes.remove.is_empty() {
                self.ecs
                    .untag_resource()
                    .resource_arn(&now.arn)
                    .set_tag_keys(Some(changes.remove))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("untag ECS service", id, &e))?;
            }
            now.shape.tags = want.tags.clone();
        }
        if let Some((rule, tg)) = detach {
            self.delete_lb(id, rule.as_deref(), tg.as_deref()).await?;
        }
        if touched(Part::Scaling) {
            let resource_id = format!("service/{cluster}/{name}");
            let label = resource_label(outputs, now.target_group.as_deref());
            self.converge_scaling(
                id,
                &resource_id,
                want.autoscaling.as_ref(),
                now.shape.autoscaling.as_ref(),
                label,
            )
            .await?;
            now.shape.autoscaling = want.autoscaling.clone();
        }
        Ok(self.applied(id, &now))
    }
}

/// The tags of each resource a DescribeTags call answered for, by ARN.
fn elb_tag_maps(
    out: &aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput,
) -> HashMap<String, BTreeMap<String, String>> {
    out.tag_descriptions()
        .iter()
        .filter_map(|d| {
            let tags = aws::tag_map(d.tags().iter().map(|t| (t.key(), t.value())));
            Some((d.resource_arn()?.to_string(), tags))
        })
        .collect()
}

/// Whether a rule forwards to a target group.
fn forwards_to(rule: &aws_sdk_elasticloadbalancingv2::types::Rule, tg_arn: &str) -> bool {
    rule.actions().iter().any(|a| {
        a.target_group_arn() == Some(tg_arn)
            || a.forward_config().is_some_and(|f| {
                f.target_groups()
                    .iter()
                    .any(|t| t.target_group_arn() == Some(tg_arn))
            })
    })
}

/// `(path pattern, host)` of a rule.
fn conditions_of(rule: &aws_sdk_elasticloadbalancingv2::types::Rule) -> (String, Option<String>) {
    let mut path = String::new();
    let mut host = None;
    for c in rule.conditions() {
        let values = |cfg: Option<&[String]>| {
            cfg.filter(|v| !v.is_empty())
                .unwrap_or(c.values())
                .first()
                .cloned()
        };
        match c.field() {
            Some("path-pattern") => {
                path = values(c.path_pattern_config().map(|p| p.values())).unwrap_or_default();
            }
            Some("host-header") => host = values(c.host_header_config().map(|h| h.values())),
            _ => {}
        }
    }
    (path, host)
}

fn rule_conditions(lb: &LbShape) -> Vec<RuleCondition> {
    let mut c = vec![RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .values(&lb.path)
                .build(),
        )
        .build()];
    if let Some(host) = &lb.host {
        c.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                .build(),
        );
    }
    c
}

/// `app/{lb}/{id}/targetgroup/{tg}/{id}`, what an `ALBRequestCountPerTarget` policy needs.
fn resource_label(outputs: &Outputs, tg_arn: Option<&str>) -> Option<String> {
    let lb = outputs.get(&shared::alb_id())?.get("arn")?;
    let lb = lb.split_once(":loadbalancer/")?.1;
    let tg = tg_arn?.rsplit_once(':')?.1;
    Some(format!("{lb}/{tg}"))
}

fn policy_name(service: &str, metric: &str) -> String {
    format!("{service}-{}", metric.to_ascii_lowercase())
}

fn deployment_configuration() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .maximum_percent(200)
        .minimum_healthy_percent(100)
        .build()
}

fn container_definition(
    id: &ComponentId,
    t: &TaskShape,
) -> Result<ContainerDefinition, DriverError> {
    let mut env = Vec::new();
    for (name, value) in &t.environment {
        let value = value.clone().ok_or_else(|| DriverError::Unexpected {
            component: id.clone(),
            message: format!("environment {name} is not known yet"),
        })?;
        env.push(KeyValuePair::builder().name(name).value(value).build());
    }
    let secrets = t
        .secrets
        .iter()
        .map(|(name, from)| Secret::builder().name(name).value_from(from).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| build_error(id, e))?;
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &t.log_group)
        .options("awslogs-region", &t.log_region)
        .options("awslogs-stream-prefix", &t.log_stream_prefix)
        .build()
        .map_err(|e| build_error(id, e))?;
    let mut c = ContainerDefinition::builder()
        .name(&t.container)
        .image(&t.image)
        .essential(true)
        .set_entry_point(Some(t.entry_point.clone()).filter(|v| !v.is_empty()))
        .set_command(Some(t.command.clone()).filter(|v| !v.is_empty()))
        .set_working_directory(t.working_directory.clone())
        .set_port_mappings(Some(
            t.ports
                .iter()
                .map(|p| {
                    PortMapping::builder()
                        .container_port(i32::from(p.port))
                        .protocol(TransportProtocol::from(p.protocol.as_str()))
                        .set_name(p.name.clone())
                        .build()
                })
                .collect(),
        ))
        .set_environment(Some(env))
        .set_secrets(Some(secrets))
        .log_configuration(log);
    if let Some(hash) = t.config_hash() {
        c = c.docker_labels(CONFIG_HASH_LABEL, hash);
    }
    if let Some(h) = &t.health_check {
        c = c.health_check(
            aws_sdk_ecs::types::HealthCheck::builder()
                .set_command(Some(h.command.clone()))
                .interval(h.interval)
                .timeout(h.timeout)
                .retries(h.retries)
                .start_period(h.start_period)
                .build()
                .map_err(|e| build_error(id, e))?,
        );
    }
    Ok(c.build())
}

/// The shape of a described task definition (the inverse of [`container_definition`]).
fn task_shape_of(td: &aws_sdk_ecs::types::TaskDefinition, container: &str) -> TaskShape {
    let defs = td.container_definitions();
    let c = defs
        .iter()
        .find(|c| c.name() == Some(container))
        .or_else(|| defs.first());
    let log = c
        .and_then(|c| c.log_configuration())
        .and_then(|l| l.options());
    let log_opt = |k: &str| log.and_then(|o| o.get(k)).cloned().unwrap_or_default();
    let mut ports: Vec<PortShape> = c
        .map(|c| c.port_mappings())
        .unwrap_or_default()
        .iter()
        .map(|p| PortShape {
            name: p.name().map(str::to_string),
            port: p
                .container_port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
            protocol: p.protocol().map_or("tcp", |p| p.as_str()).to_string(),
        })
        .collect();
    ports.sort_by(|a, b| (a.port, &a.protocol).cmp(&(b.port, &b.protocol)));
    TaskShape {
        cpu: td.cpu().and_then(|c| c.parse().ok()).unwrap_or(0),
        memory: td.memory().and_then(|m| m.parse().ok()).unwrap_or(0),
        architecture: td
            .runtime_platform()
            .and_then(|r| r.cpu_architecture())
            .map_or("X86_64", |a| a.as_str())
            .to_string(),
        execution_role: td.execution_role_arn().map(str::to_string),
        container: c.and_then(|c| c.name()).unwrap_or_default().to_string(),
        image: c.and_then(|c| c.image()).unwrap_or_default().to_string(),
        entry_point: c.map(|c| c.entry_point().to_vec()).unwrap_or_default(),
        command: c.map(|c| c.command().to_vec()).unwrap_or_default(),
        working_directory: c.and_then(|c| c.working_directory()).map(str::to_string),
        ports,
        environment: c
            .map(|c| c.environment())
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| Some((kv.name()?.to_string(), Some(kv.value()?.to_string()))))
            .collect(),
        secrets: c
            .map(|c| c.secrets())
            .unwrap_or_default()
            .iter()
            .map(|s| (s.name().to_string(), s.value_from().to_string()))
            .collect(),
        health_check: c.and_then(|c| c.health_check()).map(|h| HealthShape {
            command: h.command().to_vec(),
            interval: h.interval().unwrap_or(30),
            timeout: h.timeout().unwrap_or(5),
            retries: h.retries().unwrap_or(3),
            start_period: h.start_period().unwrap_or(0),
        }),
        log_group: log_opt("awslogs-group"),
        log_region: log_opt("awslogs-region"),
        log_stream_prefix: log_opt("awslogs-stream-prefix"),
    }
}

fn required(
    outputs: &Outputs,
    id: &ComponentId,
    from: &ComponentId,
    key: &str,
) -> Result<String, DriverError> {
    outputs
        .get(from)
        .and_then(|o| o.get(key))
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| DriverError::Unexpected {
            component: id.clone(),
            message: format!(
                "output {key} of {from} is not known; apply the stack-shared resources first"
            ),
        })
}

fn build_error(id: &ComponentId, e: impl std::fmt::Display) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: format!("failed to build a request: {e}"),
    }
}

/// Codes of ECS, ELB, Application Auto Scaling and CloudWatch Logs for "no such resource".
const MISSING: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "TargetGroupNotFound",
    "RuleNotFound",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "ObjectNotFoundException",
];

fn is_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>, code: &str) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some(code)
}

#[async_trait]
impl Driver for EcsDriver {
    fn kind(&self) -> Kind {
        self.kind
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        // `create` already takes over an existing service of ours and changes what differs.
        self.create(component, outputs, lookups).await
    }

    fn desired(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Some(r) = self.render(component, outputs, lookups) else {
            return f;
        };
        f.fields = project(&r.task, &r.service);
        f.rules.insert(
            "cluster".into(),
            Change::Replace("an ECS service cannot move to another cluster".into()),
        );
        f.rules.insert(
            "loadBalancer.port".into(),
            Change::Replace("a target group's port is fixed at creation".into()),
        );
        if r.service.autoscaling.is_some() {
            // The autoscaler owns the task count.
            f.rules.insert("desiredCount".into(), Change::Ignore);
        }
        f
    }

    async fn observe(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        self.observe_in(id, recorded, &Batch::default(), false)
            .await
    }

    async fn complete(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        mut observed: Observation,
    ) -> Result<Observation, DriverError> {
        let Some(unread) = observed.unread.take() else {
            return Ok(observed);
        };
        // The revision running is the one recorded: when the desired render has the recorded
        // fingerprint, it is what that revision holds (revisions are immutable); otherwise read
        // it, to show what changes.
        let task = match self.render(component, outputs, lookups) {
            Some(r) if r.task.fingerprint().as_deref() == Some(unread.fingerprint.as_str()) => {
                r.task
            }
            _ => self.task_shape(&component.id, &unread.reference).await?,
        };
        self.remember(&unread.reference, &task);
        observed.fields.retain(|k, _| !is_task_field(k));
        observed.fields.extend(task_fields(&task));
        Ok(observed)
    }

    async fn look_up(&self, components: &[&DesiredComponent]) -> Result<Lookups, DriverError> {
        let mut found = BTreeMap::new();
        for c in components {
            self.resolve_secrets(c, &mut found).await?;
        }
        Ok(Lookups::from_values(found))
    }

    async fn observe_many(
        &self,
        items: &[Observe],
        concurrency: usize,
    ) -> Result<Vec<Observation>, DriverError> {
        let batch = self.batch(items).await?;
        let reads: Vec<_> = items
            .iter()
            .map(|(id, recorded)| self.observe_in(id, recorded.as_ref(), &batch, true))
            .collect();
        stream::iter(reads)
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    async fn create(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        match self.seen(id, None).await? {
            None => self.create_fresh(component, outputs, lookups).await,
            // Already there (an earlier apply was interrupted): converge it if it is ours.
            Some((seen, tags)) => {
                let what = format!("ECS service {}", self.service_name(id));
                ensure_ours(&self.ctx, id, &tags, what)?;
                let desired = self.desired(component, outputs, lookups);
                let observed = Observation {
                    fields: project(&seen.task, &seen.shape),
                    ..Default::default()
                };
                let diffs = panka_core::plan::diff(&desired, &observed);
                self.converge_diffs(component, outputs, lookups, &diffs, seen)
                    .await
            }
        }
    }

    async fn update(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        diffs: &[FieldDiff],
        observed: &Observation,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        // The observation carries fields, not the SDK objects: read again what converging needs
        // (task definitions come from the cache, so this is a few Describe calls).
        let Some((seen, tags)) = self.seen(id, Some(&observed.identifiers)).await? else {
            return self.create_fresh(component, outputs, lookups).await;
        };
        let what = format!("ECS service {}", self.service_name(id));
        ensure_ours(&self.ctx, id, &tags, what)?;
        self.converge_diffs(component, outputs, lookups, diffs, seen)
            .await
    }

    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let name = recorded
            .get("service")
            .cloned()
            .unwrap_or_else(|| self.service_name(id));
        let cluster = recorded
            .get("cluster")
            .cloned()
            .unwrap_or_else(|| shared::cluster_name(&self.ctx.naming, &self.ctx.infra));
        let resource_id = format!("service/{cluster}/{name}");

        // Before anything is touched: a service of that name must be ours.
        let svc = self
            .describe_service(id, &cluster, &name, &Batch::default())
            .await?;
        if let Some(svc) = &svc {
            let tags = aws::tag_map(svc.tags().iter().map(|t| (t.key(), t.value())));
            ensure_ours(&self.ctx, id, &tags, format!("ECS service {name}"))?;
        }

        // The autoscaler first, or it could scale the service back up while it drains.
        if self
            .observe_scaling(id, &resource_id, &Batch::default())
            .await?
            .is_some()
        {
            for p in self.policies(id, &resource_id).await? {
                self.delete_policy(id, &resource_id, p.policy_name())
                    .await?;
            }
            self.deregister_target(id, &resource_id).await?;
        }

        let mut target_group = recorded.get("targetGroupArn").cloned();
        if let Some(svc) = &svc {
            target_group = target_group.or_else(|| {
                svc.load_balancers()
                    .iter()
                    .find_map(|l| l.target_group_arn())
                    .map(str::to_string)
            });
            if svc.desired_count() > 0 {
                match self
                    .ecs
                    .update_service()
                    .cluster(&cluster)
                    .service(&name)
                    .desired_count(0)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                    Err(e) => return Err(DriverError::aws("scale ECS service to 0", id, &e)),
                }
            }
            match self
                .ecs
                .delete_service()
                .cluster(&cluster)
                .service(&name)
                .force(true)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("delete ECS service", id, &e)),
            }
        }

        let mut rule = recorded.get("ruleArn").cloned();
        if let (None, Some(tg)) = (&rule, &target_group) {
            // Not recorded: find it through the target group's load balancer.
            rule = self
                .observe_lb(id, tg, &Batch::default())
                .await?
                .and_then(|(_, r, _)| r);
        }
        self.delete_lb(id, rule.as_deref(), target_group.as_deref())
            .await?;

        let family = recorded.get("family").cloned().unwrap_or(name);
        // Deregistered revisions stay (INACTIVE, still tagged) until deleted: deregister the
        // active ones, then delete every revision of the family, ten per call.
        for arn in self
            .revisions_of(id, &family, TaskDefinitionStatus::Active)
            .await?
        {
            match self
                .ecs
                .deregister_task_definition()
                .task_definition(&arn)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("deregister task definition", id, &e)),
            }
        }
        let inactive = self
            .revisions_of(id, &family, TaskDefinitionStatus::Inactive)
            .await?;
        for chunk in inactive.chunks(TASK_DEFINITIONS_PER_DELETE) {
            match self
                .ecs
                .delete_task_definitions()
                .set_task_definitions(Some(chunk.to_vec()))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("delete task definitions", id, &e)),
            }
        }

        let log_group = recorded
            .get("logGroup")
            .cloned()
            .unwrap_or_else(|| self.ctx.naming.log_group(id));
        match self
            .logs
            .delete_log_group()
            .log_group_name(&log_group)
            .send()
            .await
        {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(Deletion::Done),
            Err(e) => Err(DriverError::aws("delete log group", id, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn config_files_become_upper_case_variables() {
        assert_eq!(config_var("app.yaml"), "PANKA_CONFIG_APP_YAML");
        assert_eq!(config_var("sub/dir-x.json"), "PANKA_CONFIG_SUB_DIR_X_JSON");
    }

    #[test]
    fn a_digest_wins_over_a_tag() {
        let mut image = Image {
            repository: "r".into(),
            tag: Some("v1".into()),
            digest: None,
        };
        assert_eq!(image_ref(&image), "r:v1");
        image.digest = Some("sha256:ab".into());
        assert_eq!(image_ref(&image), "r@sha256:ab");
    }

    #[test]
    fn probes_render_as_container_health_checks() {
        let http = Probe {
            http: Some(panka_crds::spec::HttpProbe {
                path: "/live".into(),
                port: 8080,
            }),
            period_seconds: Some(1),
            ..Default::default()
        };
        let h = health_shape(&http).expect("http probe");
        assert_eq!(h.command[0], "CMD-SHELL");
        assert!(h.command[1].contains("http://localhost:8080/live"));
        assert_eq!(h.interval, 5, "clamped to the ECS minimum");
        let cmd = Probe {
            command: vec!["/bin/check".into()],
            ..Default::default()
        };
        assert_eq!(
            health_shape(&cmd).expect("command probe").command,
            ["CMD", "/bin/check"]
        );
        assert_eq!(health_shape(&Probe::default()), None);
    }

    #[test]
    fn rollout_state_decides_health() {
        assert_eq!(health_of(Some("COMPLETED"), None, 2, 2, 1), Health::Healthy);
        assert_eq!(
            health_of(Some("COMPLETED"), None, 2, 1, 1),
            Health::Progressing
        );
        assert_eq!(
            health_of(Some("IN_PROGRESS"), None, 2, 2, 2),
            Health::Progressing
        );
        assert!(matches!(
            health_of(Some("FAILED"), Some("tasks failed to start"), 2, 0, 1),
            Health::Degraded(m) if m.contains("tasks failed to start")
        ));
        assert_eq!(health_of(None, None, 2, 0, 1), Health::Progressing);
        assert_eq!(health_of(None, None, 2, 2, 1), Health::Healthy);
    }

    #[test]
    fn rule_priorities_are_stable_and_skip_taken_ones() {
        let id = ComponentId::new("svc", "api");
        let p = base_priority(&id);
        assert!((PRIORITY_BASE..PRIORITY_BASE + PRIORITY_SPAN).contains(&p));
        assert_eq!(p, base_priority(&id));
        let used = std::collections::BTreeSet::from([p]);
        let q = free_priority(&id, &used);
        assert_ne!(q, p);
        assert!((PRIORITY_BASE..PRIORITY_BASE + PRIORITY_SPAN).contains(&q));
    }

    #[test]
    fn autoscaling_defaults_to_cpu_70_within_min_and_max() {
        use panka_crds::spec::{Autoscaling, Scaling};
        let infra = ComponentInfraSpec {
            scaling: Some(Scaling {
                replicas: Some(1),
                autoscaling: Some(Autoscaling {
                    enabled: Some(true),
                    min_replicas: Some(2),
                    max_replicas: Some(5),
                    policies: vec![],
                }),
            }),
            ..Default::default()
        };
        let (count, auto) = scaling(Some(&infra));
        assert_eq!(count, 2, "replicas are raised to the minimum");
        let auto = auto.expect("autoscaling");
        assert_eq!((auto.min_replicas, auto.max_replicas), (2, 5));
        assert_eq!(
            auto.policies,
            vec![PolicyShape {
                metric: "CPUUtilization".into(),
                target_value: 70.0
            }]
        );
        assert_eq!(scaling(None), (1, None));
    }

    #[test]
    fn fields_split_by_part() {
        assert_eq!(part_of("image"), Part::Task);
        assert_eq!(part_of("environment.QUEUE_URL"), Part::Task);
        assert_eq!(part_of("log.group"), Part::Task);
        assert_eq!(part_of("log.retentionDays"), Part::Log);
        assert_eq!(part_of("desiredCount"), Part::Service);
        assert_eq!(part_of("network.subnets"), Part::Service);
        assert_eq!(part_of("loadBalancer.path"), Part::LoadBalancer);
        assert_eq!(part_of("autoscaling"), Part::Scaling);
    }

    #[test]
    fn urls_drop_the_wildcard() {
        assert_eq!(url_path("/svc/api/*"), "/svc/api");
        assert_eq!(url_path("/*"), "");
    }
}
