//! Kubernetes custom resources in group `panka.io`, version `v1alpha1`.
//!
//! A `Stack` resource stands for one (stack, environment) and carries its status, in both
//! controller modes. In `--source crd` mode, `Service` and component resources are the desired
//! state; their `spec` is the same as the repository file's `spec` plus the identity fields a file
//! gets from its folder (`stack`, `service`) and, for container kinds, what a file gets from its
//! neighbours (`infra`, `configData`).

// kube's `printcolumn(name = …, type_ = …)` repeats the same keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{
    ComponentInfraSpec, DynamoDbSpec, ElastiCacheRedisSpec, MicroServiceSpec, Provider, RdsSpec,
    S3Spec, SqsSpec, StackInfraSpec, WorkerSpec,
};

/// API group of the custom resources.
pub const GROUP: &str = "panka.io";
/// API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
/// Category every panka resource is listed under: `kubectl get panka`.
pub const CATEGORY: &str = "panka";

/// One stack in one environment: what to deploy, from where, and (in status) how it went.
#[derive(CustomResource, KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "panka.io",
    version = "v1alpha1",
    kind = "Stack",
    plural = "stacks",
    shortname = "pstack",
    shortname = "pst",
    category = "panka",
    namespaced,
    status = "StackStatus",
    doc = "One panka stack in one environment. `kubectl get stacks.panka.io` (or `pstack`) lists them.",
    printcolumn(
        name = "Environment",
        type_ = "string",
        json_path = ".spec.environment"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "Drift", type_ = "string", json_path = ".status.drift"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StackResourceSpec {
    /// Stack name (the folder below `stacks/` in git mode). Immutable: a Stack stands for one
    /// stack; create another to manage another.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.stack is immutable: create another Stack"))]
    pub stack: String,
    /// Environment, e.g. `production`. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.environment is immutable: create another Stack"))]
    pub environment: String,
    /// Where the desired state comes from: git mode only (the controller writes it on the
    /// objects it owns); CRD mode refuses a Stack with a `source`, and takes the Service and
    /// component resources of this namespace that name this stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<GitSource>,
    /// Provider and region (CRD mode; git mode reads `stack.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Stack infrastructure (CRD mode; git mode reads `infra/*.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<StackInfraSpec>,
    /// Values for `${NAME}` (CRD mode; git mode reads `variables.yaml`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// When true the controller neither applies nor remediates; it still reports drift (phase
    /// `Suspended`, condition `Synced` reason `Suspended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// What deleting this resource does to AWS (CRD mode): `Orphan` (default) leaves the AWS
    /// resources and the state as they are; `Delete` destroys them through panka, under the
    /// stack's lock, before the resource goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What deleting a Stack resource does to what it deployed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// AWS resources and state stay; only the resource goes.
    #[default]
    Orphan,
    /// AWS resources are destroyed (data included) before the resource goes.
    Delete,
}

/// A git repository holding deployment YAML.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL.
    pub url: String,
    /// Branch, tag or commit; default `main`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Folder inside the repository that holds `stacks/`; default the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Observed state of a stack in one environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced`, `Drifted`, `Locked`, `Pinned`, `AwaitingApproval`; one per type (a
    /// list map keyed by `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One word for where the stack stands: `Synced`, `Progressing`, `Drifted`, `Locked`,
    /// `Pinned`, `AwaitingApproval`, `Suspended`, `Invalid`, `Failed`, `Pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `None`, or how many components drifted, e.g. `2 components`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// Components that differ from the last applied release, at the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted_components: Option<u32>,
    /// When drift was last checked, as of the last status write (RFC 3339). A check that
    /// changes nothing else is not written, so it can be older; `panka status` shows the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_checked_at: Option<String>,
    /// Healthy components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_components: Option<u32>,
    /// Components applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_components: Option<u32>,
    /// The plan waiting for approval (`panka approve --plan ID`, or the
    /// `panka.io/approve-plan` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<String>,
    /// `VERSION` variable of the last applied release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Git commit (short) of the last applied release, or the content hash of the resources
    /// in CRD mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision the controller read last (it differs from `revision` while a change waits
    /// or fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_revision: Option<String>,
    /// Id of the last applied release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<String>,
    /// When the last apply finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_at: Option<String>,
    /// Release the stack is pinned to by `panka rollback`, until `panka resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_release: Option<String>,
}

/// A status condition, keyed by `type`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Synced`, `Drifted`, `Locked`, `Pinned` or `AwaitingApproval`.
    #[serde(rename = "type")]
    pub condition_type: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// PascalCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A group of components owned by one team (CRD mode).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panka.io",
    version = "v1alpha1",
    kind = "Service",
    plural = "services",
    shortname = "psvc",
    category = "panka",
    namespaced,
    status = "ComponentResourceStatus",
    doc = "A panka service: a group of components. `kubectl get services.panka.io` (or `psvc`).",
    printcolumn(name = "Stack", type_ = "string", json_path = ".spec.stack"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceResourceSpec {
    /// Stack the service belongs to.
    pub stack: String,
    /// Component infrastructure every component of the service inherits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra_defaults: Option<ComponentInfraSpec>,
}

/// Observed state of a service or component resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentResourceStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced`, `Drifted`; one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Non-secret outputs, e.g. `url`, `endpoint`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

macro_rules! component_resource {
    (
        $(#[$doc:meta])*
        $name:ident, kind = $kind:literal, plural = $plural:literal, shortname = $short:literal,
        spec = $spec:ty, extra = { $($extra:tt)* }
    ) => {
        $(#[$doc])*
        #[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = "panka.io",
            version = "v1alpha1",
            kind = $kind,
            plural = $plural,
            shortname = $short,
            category = "panka",
            namespaced,
            status = "ComponentResourceStatus",
            printcolumn(name = "Stack", type_ = "string", json_path = ".spec.stack"),
            printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// Stack the component belongs to.
            pub stack: String,
            /// Service the component belongs to.
            pub service: String,
            /// The component's settings, as in its repository file.
            #[serde(flatten)]
            pub spec: $spec,
            $($extra)*
        }
    };
}

component_resource!(
    /// A MicroService component (CRD mode).
    MicroServiceResourceSpec, kind = "MicroService", plural = "microservices",
    shortname = "pms", spec = MicroServiceSpec, extra = {
        /// Compute, scaling and networking (what `infra.yaml` holds in git mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub infra: Option<ComponentInfraSpec>,
        /// Configuration file contents by file name (what `configs/` holds in git mode).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub config_data: BTreeMap<String, String>,
    }
);
component_resource!(
    /// A Worker component (CRD mode).
    WorkerResourceSpec, kind = "Worker", plural = "workers", shortname = "pworker",
    spec = WorkerSpec, extra = {
        /// Compute, scaling and networking (what `infra.yaml` holds in git mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub infra: Option<ComponentInfraSpec>,
        /// Configuration file contents by file name (what `configs/` holds in git mode).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub config_data: BTreeMap<String, String>,
    }
);
component_resource!(
    /// An RDS component (CRD mode).
    RdsResourceSpec, kind = "RDS", plural = "rdsinstances", shortname = "prds",
    spec = RdsSpec, extra = {}
);
component_resource!(
    /// A DynamoDB component (CRD mode).
    DynamoDbResourceSpec, kind = "DynamoDB", plural = "dynamodbtables", shortname = "pddb",
    spec = DynamoDbSpec, extra = {}
);
component_resource!(
    /// An S3 component (CRD mode).
    S3ResourceSpec, kind = "S3", plural = "s3buckets", shortname = "ps3", spec = S3Spec,
    extra = {}
);
component_resource!(
    /// An SQS component (CRD mode).
    SqsResourceSpec, kind = "SQS", plural = "sqsqueues", shortname = "psqs", spec = SqsSpec,
    extra = {}
);
component_resource!(
    /// An ElastiCacheRedis component (CRD mode).
    ElastiCacheRedisResourceSpec, kind = "ElastiCacheRedis", plural = "elasticacheredises",
    shortname = "predis", spec = ElastiCacheRedisSpec, extra = {}
);
