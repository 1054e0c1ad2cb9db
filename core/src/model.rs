//! The desired state of one stack in one environment: what resolve produces and every later stage
//! (graph, observe, plan, apply, record) consumes. Plain data, serialisable, no secrets: secret
//! settings are references (Secrets Manager names or ARNs), never values.

use std::collections::BTreeMap;
use std::fmt;

use panka_crds::spec::{
    ComponentInfraSpec, DynamoDbSpec, ElastiCacheRedisSpec, MicroServiceSpec, Provider, RdsSpec,
    S3Spec, SqsSpec, StackInfraSpec, WorkerSpec,
};
use panka_crds::Kind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diag::Span;
use crate::stack::{ClusterSpec, ExecutionRoleSpec, LoadBalancerSpec, NetworkSpec};

/// `service/component`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ComponentId {
    /// Service name.
    pub service: String,
    /// Component name.
    pub component: String,
}

impl ComponentId {
    /// A component id.
    pub fn new(service: impl Into<String>, component: impl Into<String>) -> ComponentId {
        ComponentId {
            service: service.into(),
            component: component.into(),
        }
    }

    /// Parses `service/component`, or `component` relative to `within`.
    pub fn parse(text: &str, within: &str) -> Option<ComponentId> {
        match text.split_once('/') {
            Some((s, c)) if !s.is_empty() && !c.is_empty() && !c.contains('/') => {
                Some(ComponentId::new(s, c))
            }
            None if !text.is_empty() => Some(ComponentId::new(within, text)),
            _ => None,
        }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.component)
    }
}

impl From<ComponentId> for String {
    fn from(id: ComponentId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for ComponentId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.split_once('/') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok(ComponentId::new(a, b)),
            _ => Err(format!("`{s}` is not of the form service/component")),
        }
    }
}

/// A component's settings, typed by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec")]
pub enum ComponentSpec {
    /// ECS service with ports.
    MicroService(MicroServiceSpec),
    /// ECS service without ports.
    Worker(WorkerSpec),
    /// RDS instance.
    #[serde(rename = "RDS")]
    Rds(RdsSpec),
    /// DynamoDB table.
    #[serde(rename = "DynamoDB")]
    DynamoDb(DynamoDbSpec),
    /// S3 bucket.
    S3(S3Spec),
    /// SQS queue.
    #[serde(rename = "SQS")]
    Sqs(SqsSpec),
    /// Redis replication group.
    ElastiCacheRedis(ElastiCacheRedisSpec),
    /// Stack-wide: the network (see [`crate::stack`]).
    Network(NetworkSpec),
    /// Stack-wide: the ECS cluster.
    EcsCluster(ClusterSpec),
    /// Stack-wide: the application load balancer.
    LoadBalancer(LoadBalancerSpec),
    /// Stack-wide: the ECS task execution role.
    ExecutionRole(ExecutionRoleSpec),
}

impl ComponentSpec {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            ComponentSpec::MicroService(_) => Kind::MicroService,
            ComponentSpec::Worker(_) => Kind::Worker,
            ComponentSpec::Rds(_) => Kind::Rds,
            ComponentSpec::DynamoDb(_) => Kind::DynamoDb,
            ComponentSpec::S3(_) => Kind::S3,
            ComponentSpec::Sqs(_) => Kind::Sqs,
            ComponentSpec::ElastiCacheRedis(_) => Kind::ElastiCacheRedis,
            ComponentSpec::Network(_) => Kind::Network,
            ComponentSpec::EcsCluster(_) => Kind::EcsCluster,
            ComponentSpec::LoadBalancer(_) => Kind::LoadBalancer,
            ComponentSpec::ExecutionRole(_) => Kind::ExecutionRole,
        }
    }

    /// `dependsOn` entries as written.
    pub fn depends_on(&self) -> &[String] {
        match self {
            ComponentSpec::MicroService(s) => &s.depends_on,
            ComponentSpec::Worker(s) => &s.depends_on,
            ComponentSpec::Rds(s) => &s.depends_on,
            ComponentSpec::DynamoDb(s) => &s.depends_on,
            ComponentSpec::S3(s) => &s.depends_on,
            ComponentSpec::Sqs(s) => &s.depends_on,
            ComponentSpec::ElastiCacheRedis(s) => &s.depends_on,
            ComponentSpec::Network(_)
            | ComponentSpec::EcsCluster(_)
            | ComponentSpec::LoadBalancer(_)
            | ComponentSpec::ExecutionRole(_) => &[],
        }
    }
}

/// Why one component needs another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "camelCase")]
pub enum RefKind {
    /// Listed in `dependsOn`.
    DependsOn,
    /// An environment variable takes one of its outputs.
    #[serde(rename_all = "camelCase")]
    ValueFrom {
        /// Environment variable name.
        env: String,
        /// Output name.
        output: String,
    },
    /// Runs on a stack-wide resource (see [`crate::stack`]).
    Stack,
}

/// An edge of the dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The component needed.
    pub target: ComponentId,
    /// Why.
    #[serde(flatten)]
    pub kind: RefKind,
    /// Where it is written.
    #[serde(skip)]
    pub span: Option<Span>,
}

/// A config file after `${VAR}` substitution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedConfig {
    /// Path relative to the component's `configs/` folder.
    pub name: String,
    /// SHA-256 of `content`, hex.
    pub sha256: String,
    /// Text after substitution.
    pub content: String,
}

/// One component, fully resolved for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredComponent {
    /// `service/component`.
    pub id: ComponentId,
    /// Settings (overlays merged, variables substituted).
    #[serde(flatten)]
    pub spec: ComponentSpec,
    /// Effective compute, scaling and networking (MicroService and Worker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<ComponentInfraSpec>,
    /// Config files, in the order listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ResolvedConfig>,
    /// Edges to other components.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Description from metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels from metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// File the component is defined in.
    pub source: String,
}

impl DesiredComponent {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// SHA-256 of the component's desired state (settings, infra, config contents), hex. Equal
    /// hashes mean nothing to change.
    pub fn hash(&self) -> String {
        let json =
            serde_json::to_vec(&(&self.spec, &self.infra, &self.configs)).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

/// A service, as metadata only (its components are in [`DesiredStack::components`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredService {
    /// Service name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One stack in one environment, ready to plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredStack {
    /// Stack name.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// Provider and region.
    pub provider: Provider,
    /// Stack infrastructure (its `defaults` already folded into components).
    pub infra: StackInfraSpec,
    /// Services by name.
    pub services: BTreeMap<String, DesiredService>,
    /// Components by id.
    pub components: BTreeMap<ComponentId, DesiredComponent>,
    /// Variables in effect (values from `variables.yaml` and `--var`; never secrets).
    pub variables: BTreeMap<String, String>,
}

impl DesiredStack {
    /// `VERSION` variable, the release version by convention.
    pub fn version(&self) -> Option<&str> {
        self.variables.get("VERSION").map(String::as_str)
    }
}
