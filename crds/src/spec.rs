//! The `spec` of every kind, shared by repository files and Kubernetes custom resources.
//!
//! Every struct rejects unknown fields, so a typo such as `replcas` is an error rather than a
//! silently ignored setting. Optional settings are `Option`s: defaults are applied by the engine
//! and documented in the fields' doc comments, so what a user wrote stays distinguishable from
//! what panka assumed.
//!
//! The doc comments are user documentation: they are the CRDs' descriptions and the field tables
//! of `docs/reference.md` are generated from them (`crate::reference`), Markdown links included.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// core.panka.io/v1
// ---------------------------------------------------------------------------------------------

/// `Stack` (`stacks/{stack}/stack.yaml`): the unit of deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StackSpec {
    /// Cloud provider and region every component of the stack is deployed to.
    pub provider: Provider,
    /// Environments this stack is deployed to. `panka validate` checks every environment listed
    /// here and every folder below `environments/`; with the list empty, the folders are the
    /// environments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

/// Cloud provider of a stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provider {
    /// Provider name; only `aws` is supported.
    pub name: ProviderName,
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// AWS account id the stack must be deployed to; apply refuses other accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// Supported cloud providers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// Amazon Web Services.
    #[default]
    Aws,
}

/// `Service` (`stacks/{stack}/services/{service}/service.yaml`): a group of components owned by
/// one team.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service-wide infrastructure settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<ServiceInfrastructure>,
}

/// Service-wide infrastructure settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceInfrastructure {
    /// Path, relative to the service folder, of a `ComponentInfra` file whose settings every
    /// component of the service inherits, e.g. `./infra/defaults.yaml`. See
    /// [§5](#5-infrastructure-precedence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<String>,
}

/// `Variables` (`stacks/{stack}/environments/{env}/variables.yaml`): the value of `${NAME}` for
/// each variable `NAME` (`[A-Za-z_][A-Za-z0-9_]*`); values are scalars.
// A newtype rather than an alias: its doc comment is then part of its schema, which
// `docs/reference.md`'s table is generated from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct VariablesSpec(pub BTreeMap<String, String>);

// ---------------------------------------------------------------------------------------------
// infra.panka.io/v1
// ---------------------------------------------------------------------------------------------

/// `StackInfra` (`stacks/{stack}/infra/*.yaml`): stack-wide infrastructure, owned by the platform
/// team.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StackInfraSpec {
    /// ECS cluster name, e.g. `user-platform-${ENVIRONMENT}`; created if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Network placement of the stack's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<StackNetworking>,
    /// Logging defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Drift detection policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftPolicy>,
    /// Which environments need a typed approval before apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPolicy>,
    /// Automatic rollback: on a failed health wait, and after a bake period; see
    /// [drift.md](drift.md#automatic-rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
    /// Component infrastructure every component of the stack inherits (lowest precedence,
    /// [§5](#5-infrastructure-precedence)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ComponentInfraSpec>,
    /// Extra AWS tags put on every resource of the stack.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Tag keys other systems own on the stack's resources (cost allocation, backup plans,
    /// security tooling): a key such as `CostCenter`, or a pattern where `*` stands for any run
    /// of characters, such as `org:*`. Matching is case-sensitive. panka neither compares, sets
    /// nor removes a matching tag; every other tag it did not set is removed. See
    /// [tags](#tags-panka-sets-and-tags-it-leaves-alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_tags: Vec<String>,
    /// The ECS task execution role panka creates for the stack (path `/panka/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role: Option<ExecutionRoleSettings>,
}

/// Settings of the stack's ECS task execution role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecutionRoleSettings {
    /// ARN of an IAM managed policy set as the role's permissions boundary
    /// (`arn:aws:iam::123456789012:policy/panka-task-boundary`): the most the role may ever be
    /// allowed, whatever policies it is given. With the hardened IAM policy of
    /// [security.md](security.md#closing-the-role-path), panka can create and change only roles
    /// that carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
}

/// Stack-wide networking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StackNetworking {
    /// `default` for the account's default VPC, or a VPC id (`vpc-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// Subnet ids (`subnet-…`); defaults to every subnet of the VPC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Security group ids (`sg-…`); defaults to the VPC's default security group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<bool>,
}

/// Logging defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logging {
    /// CloudWatch Logs retention in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// Drift detection policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftPolicy {
    /// What the controller does when AWS differs from the last applied state: `remediate`
    /// re-applies the last applied state (in environments listed under `approval.environments`,
    /// after `panka approve`, like any apply), `remediate-unattended` re-applies it without
    /// waiting for approval, `report` records drift in status only, `ignore` does not check.
    /// Default `report`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DriftMode>,
    /// How often drift is checked, e.g. `5m`, `30s`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Differences that are expected: neither reported nor remediated (for components the
    /// repository did not change). See [drift.md](drift.md#policy-drift-in-stackinfra).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<DriftIgnore>,
}

/// One expected difference: a field (as `panka drift detect` names it, e.g. `desiredCount`,
/// `environment.LOG_LEVEL`, `visibilityTimeout`), on every component or on those whose
/// `service/component` matches a pattern where `*` stands for any run of characters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftIgnore {
    /// `service/component` pattern, `*` for any run of characters, e.g.
    /// `notification-service/*`; every component when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The field's exact name, as `panka drift detect` prints it (`desiredCount`,
    /// `environment.LOG_LEVEL`).
    pub field: String,
}

/// Automatic rollback of a release whose health wait fails, and the bake period after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// Roll the components of a wave back to their previous spec when the wave fails its health
    /// wait (timeout, or the ECS deployment circuit breaker). Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<bool>,
    /// How long to watch the load balancer's metrics after the last wave, e.g. `10m`; no bake
    /// period when absent or `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<String>,
    /// Roll back when 5XX responses exceed this share of requests during the bake, in percent.
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_percent: Option<f64>,
    /// Roll back when the p99 target response time exceeds this during the bake, in
    /// milliseconds. Default 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<u64>,
}

/// What the controller does when AWS differs from the last applied state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DriftMode {
    /// Re-apply the desired state; in environments that need approval, through the same gate
    /// as any apply (`panka approve`).
    Remediate,
    /// Re-apply the desired state without waiting for approval, even where applies need it.
    RemediateUnattended,
    /// Report drift in status and events only.
    Report,
    /// Do not check.
    Ignore,
}

/// Approval policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalPolicy {
    /// Environments whose applies need a typed `yes` (or `--yes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

/// `ComponentInfra` (`components/{comp}/infra.yaml`, or a service's defaults file): compute,
/// scaling and networking of a MicroService or Worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentInfraSpec {
    /// CPU and memory of one task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Replica count and autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// Load balancing and network placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<ComponentNetworking>,
}

/// Task size, in Fargate units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// CPU units (1024 = 1 vCPU): 256, 512, 1024, 2048, 4096, 8192 or 16384.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Memory in MiB; must be a valid Fargate combination with `cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
}

/// Replica count and autoscaling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scaling {
    /// Desired number of tasks (ignored for drift when autoscaling is enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Application Auto Scaling settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

/// Application Auto Scaling of an ECS service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Autoscaling {
    /// Whether autoscaling is on. The checks treat a present `autoscaling` block without
    /// `enabled` as on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Lower bound of tasks (checked as 1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Upper bound of tasks (checked as `minReplicas` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
    /// Scaling policies; default is target tracking on 70 % CPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ScalingPolicy>,
}

/// One scaling policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// Policy type: keep a metric near a target value.
    #[serde(rename = "type")]
    pub policy_type: ScalingPolicyType,
    /// Metric tracked: average CPU or memory utilisation of the service, or requests per target
    /// of its load balancer target group.
    pub metric: ScalingMetric,
    /// Target value of the metric (percent for utilisation metrics).
    pub target_value: f64,
}

/// Scaling policy types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScalingPolicyType {
    /// Keep a metric near a target value.
    TargetTracking,
}

/// Metrics a target-tracking policy can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScalingMetric {
    /// Average CPU utilisation of the service.
    #[serde(rename = "CPUUtilization")]
    CpuUtilization,
    /// Average memory utilisation of the service.
    #[serde(rename = "MemoryUtilization")]
    MemoryUtilization,
    /// Requests per target of the service's load balancer target group.
    #[serde(rename = "ALBRequestCountPerTarget")]
    AlbRequestCountPerTarget,
}

/// Component networking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentNetworking {
    /// Load balancer in front of a MicroService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Whether tasks get a public IP address (overrides the stack's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<bool>,
}

/// Load balancer settings of a MicroService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Whether the service is registered with the stack's load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Load balancer type; only `application` (Application Load Balancer, HTTP) is supported.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub lb_type: Option<LoadBalancerType>,
    /// Container port to route to; defaults to the first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path pattern of the listener rule; defaults to `/{service}/{component}/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Host header of the listener rule, if routing by host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Load balancer types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancerType {
    /// Application Load Balancer (HTTP).
    Application,
}

// ---------------------------------------------------------------------------------------------
// components.panka.io/v1
// ---------------------------------------------------------------------------------------------

/// `MicroService` (`microservice.yaml`): a long-running container on ECS Fargate that serves
/// traffic on ports, optionally behind the stack's load balancer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MicroServiceSpec {
    /// Container image.
    pub image: Image,
    /// Where the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// Entry point overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Environment variables; a value or a reference to another component's output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<EnvVar>,
    /// Secrets Manager references injected as environment variables. Values are never read
    /// by panka.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// Configuration files from the component's `configs/` folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configs: Option<Configs>,
    /// Readiness and liveness checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Components (`service/component`) that must be applied first
    /// ([§7](#7-references-dependson-and-valuefrom)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// `Worker` (`worker.yaml`): a background container on ECS Fargate, no ports, no load balancer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image.
    pub image: Image,
    /// Where the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// Entry point overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Environment variables; a value or a reference to another component's output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<EnvVar>,
    /// Secrets Manager references injected as environment variables. Values are never read
    /// by panka.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// Configuration files from the component's `configs/` folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configs: Option<Configs>,
    /// Liveness check (a worker has no readiness endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Components (`service/component`) that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A container image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    /// Repository, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/email-api`.
    pub repository: String,
    /// Tag, e.g. `${VERSION}`. One of `tag` and `digest` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Digest (`sha256:…`); wins over `tag` when both are set. One of `tag` and `digest` is
    /// required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Where a container runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Runtime {
    /// Compute platform; only `fargate` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// CPU architecture: x86-64, or 64-bit ARM (Graviton).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
}

/// Compute platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// AWS Fargate.
    Fargate,
}

/// CPU architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// x86-64.
    X86_64,
    /// 64-bit ARM (Graviton).
    Arm64,
}

/// Entry point overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    /// Replaces the image's entry point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments passed to the command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// A container port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    /// Port name, e.g. `http`.
    pub name: String,
    /// Port number, 1 – 65535.
    pub port: u16,
    /// Protocol; default `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// Transport protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// An environment variable: exactly one of `value` and `valueFrom`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value. Exactly one of `value` and `valueFrom` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Output of another component, known after that component is applied. Exactly one of
    /// `value` and `valueFrom` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// A reference to another component's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValueFrom {
    /// `service/component` (or `component` within the same service).
    pub component: String,
    /// Output name, e.g. `endpoint`, `url`, `arn` ([§9](#9-outputs-for-valuefrom)).
    pub output: String,
}

/// A Secrets Manager reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    /// Logical name of the secret.
    pub name: String,
    /// Secrets Manager secret name or ARN. The secret must exist before `plan`: a name is
    /// looked up (`DescribeSecret`, which reads no value) and the task definition gets its full
    /// ARN, as ECS requires; a reference to a missing secret is refused before any change.
    pub secret_ref: String,
    /// Environment variable the secret is exposed as; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// JSON key inside the secret, if the secret is a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Configuration files mounted into the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Configs {
    /// Directory the files appear in, e.g. `/config`.
    pub mount_path: String,
    /// File names, relative to the component's `configs/` folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// Readiness and liveness checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// Whether the task is ready for traffic (load balancer health check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Whether the task is alive (container health check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

/// One health probe: exactly one of `http`, `tcp` and `command`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    /// HTTP GET probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// TCP connect probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// Command run inside the container; exit 0 is healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// Seconds before a probe times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Grace period after start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
}

/// HTTP probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpProbe {
    /// Request path, e.g. `/health/ready`.
    pub path: String,
    /// Container port.
    pub port: u16,
}

/// TCP probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpProbe {
    /// Container port.
    pub port: u16,
}

/// `RDS` (`rds.yaml`): a relational database instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RdsSpec {
    /// Database engine.
    pub engine: RdsEngine,
    /// Instance class and storage.
    pub instance: RdsInstance,
    /// Initial database and master user.
    pub database: RdsDatabase,
    /// Automated backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<RdsBackup>,
    /// Whether the instance refuses deletion; default `true` in environments listed for
    /// approval (StackInfra `approval.environments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_protection: Option<bool>,
    /// Components (`service/component`) that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// RDS engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RdsEngine {
    /// Engine type.
    #[serde(rename = "type")]
    pub engine_type: RdsEngineType,
    /// Engine version, e.g. `"15.4"` (quote it: `15.10` is not `15.1`).
    pub version: String,
}

/// RDS engines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RdsEngineType {
    /// PostgreSQL.
    #[default]
    Postgres,
    /// MySQL.
    Mysql,
    /// MariaDB.
    Mariadb,
}

/// RDS instance class and storage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RdsInstance {
    /// Instance class, e.g. `db.t3.small`.
    pub class: String,
    /// Storage.
    pub storage: RdsStorage,
    /// Whether a standby runs in a second availability zone.
    #[serde(default, rename = "multiAZ", skip_serializing_if = "Option::is_none")]
    pub multi_az: Option<bool>,
}

/// RDS storage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RdsStorage {
    /// Storage type; default `gp3`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<StorageType>,
    /// Allocated storage in GB.
    #[serde(rename = "allocatedGB")]
    pub allocated_gb: u32,
    /// Upper bound for storage autoscaling, in GB.
    #[serde(
        default,
        rename = "maxAllocatedGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_allocated_gb: Option<u32>,
}

/// RDS storage types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// General purpose SSD, previous generation.
    Gp2,
    /// General purpose SSD.
    Gp3,
    /// Provisioned IOPS SSD.
    Io1,
}

/// RDS database and master user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RdsDatabase {
    /// Name of the initial database.
    pub name: String,
    /// Master user name.
    pub username: String,
    /// Secrets Manager reference of the master password; read at apply time, never stored.
    pub password_secret: PasswordSecret,
    /// Port; defaults to the engine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A password held in Secrets Manager.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordSecret {
    /// Secret name or ARN.
    #[serde(rename = "ref")]
    pub secret_ref: String,
    /// JSON key inside the secret; default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// RDS automated backups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RdsBackup {
    /// Days automated backups are kept (0 turns them off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Daily window, e.g. `03:00-04:00` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// `DynamoDB` (`dynamodb.yaml`): a table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DynamoDbSpec {
    /// Billing mode: on-demand, or provisioned read and write capacity; default
    /// `PAY_PER_REQUEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_mode: Option<BillingMode>,
    /// Provisioned capacity (only with `PROVISIONED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// Primary key.
    pub keys: TableKeys,
    /// Time-to-live attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    /// Point-in-time recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time_recovery: Option<bool>,
    /// DynamoDB stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Components (`service/component`) that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// DynamoDB billing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    /// On-demand.
    PayPerRequest,
    /// Provisioned read and write capacity.
    Provisioned,
}

/// Provisioned capacity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capacity {
    /// Read capacity units.
    pub read: u32,
    /// Write capacity units.
    pub write: u32,
}

/// Primary key of a table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TableKeys {
    /// Partition (hash) key.
    pub partition: KeyAttribute,
    /// Sort (range) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<KeyAttribute>,
}

/// A key attribute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyAttribute {
    /// Attribute name.
    pub name: String,
    /// Attribute type: string, number or binary.
    #[serde(rename = "type")]
    pub attr_type: AttributeType,
}

/// Key attribute types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AttributeType {
    /// String.
    #[default]
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

/// Time-to-live settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ttl {
    /// Attribute holding the expiry time (epoch seconds).
    pub attribute: String,
}

/// DynamoDB stream settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stream {
    /// What each stream record holds: the new item, the old item, both, or keys only.
    pub view_type: StreamViewType,
}

/// DynamoDB stream view types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamViewType {
    /// The new item.
    #[default]
    NewImage,
    /// The old item.
    OldImage,
    /// Both.
    NewAndOldImages,
    /// Keys only.
    KeysOnly,
}

/// `S3` (`s3.yaml`): a bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3Spec {
    /// Object versioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<bool>,
    /// Default encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BucketEncryption>,
    /// Public access; default `blocked` (all four public access block settings on). `allowed`
    /// turns the public access block off (policies may still restrict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access: Option<PublicAccess>,
    /// Lifecycle rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Components (`service/component`) that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// Bucket default encryption.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BucketEncryption {
    /// Algorithm: S3-managed keys or KMS keys.
    #[serde(rename = "type")]
    pub encryption_type: EncryptionType,
    /// KMS key id or ARN (with `aws:kms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// Bucket encryption algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EncryptionType {
    /// S3-managed keys.
    #[default]
    #[serde(rename = "AES256")]
    Aes256,
    /// KMS keys.
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// Bucket public access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublicAccess {
    /// All four public access block settings on.
    Blocked,
    /// Public access block off (policies may still restrict).
    Allowed,
}

/// Bucket lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Lifecycle {
    /// Days after which current objects expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// Days after which noncurrent versions expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_version_expiration_days: Option<u32>,
}

/// `SQS` (`sqs.yaml`): a queue, optionally with a dead-letter queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SqsSpec {
    /// Queue type; default `standard` (at-least-once, best-effort ordering). `fifo`:
    /// exactly-once processing, strict ordering.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<QueueType>,
    /// Seconds a message is kept (60 – 1209600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_retention_period: Option<u32>,
    /// Seconds a received message is hidden (0 – 43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<u32>,
    /// Seconds a new message is delayed (0 – 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u32>,
    /// Long-poll wait in seconds (0 – 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_wait_time_seconds: Option<u32>,
    /// Largest message in bytes (1024 – 262144).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u32>,
    /// FIFO only: deduplicate by content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_based_deduplication: Option<bool>,
    /// Dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<DeadLetterQueue>,
    /// Components (`service/component`) that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// Queue types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// At-least-once, best-effort ordering.
    Standard,
    /// Exactly-once processing, strict ordering.
    Fifo,
}

/// Dead-letter queue settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeadLetterQueue {
    /// Whether a dead-letter queue is created and wired up.
    pub enabled: bool,
    /// Receives before a message moves to the dead-letter queue; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_receive_count: Option<u32>,
    /// Seconds a dead letter is kept; default 14 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_retention_period: Option<u32>,
}

/// `ElastiCacheRedis` (`elasticache.yaml`): a Redis replication group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ElastiCacheRedisSpec {
    /// Redis engine.
    pub engine: RedisEngine,
    /// Node type and count.
    pub cluster: RedisCluster,
    /// Encryption and authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<RedisSecurity>,
    /// Components (`service/component`) that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// Redis engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisEngine {
    /// Engine version, e.g. `"7.0"` (quote it).
    pub version: String,
}

/// Redis node type and count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisCluster {
    /// Deployment mode; only `replication-group` (one primary and replicas, automatic failover
    /// when more than one node) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RedisMode>,
    /// Node type, e.g. `cache.t3.medium`.
    pub node_type: String,
    /// Number of nodes (primary plus replicas), 1 – 6.
    pub num_nodes: u32,
}

/// Redis deployment modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RedisMode {
    /// One primary and replicas, automatic failover when more than one node.
    ReplicationGroup,
}

/// Redis encryption and authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisSecurity {
    /// Encryption at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_rest_encryption: Option<bool>,
    /// TLS in transit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption: Option<bool>,
    /// Secrets Manager reference of the AUTH token (needs transit encryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret: Option<PasswordSecret>,
}
