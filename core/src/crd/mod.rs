//! Custom resources ↔ repository documents (pure): the one conversion CRD mode rests on.
//!
//! In `--source crd` mode the desired state of a stack in one environment is a `Stack` resource
//! and the `Service` and component resources that belong to it. [`stack_tree`] turns them into
//! the [`FileTree`](crate::source::FileTree) a repository's stack folder would hold, so both
//! sources go through the same load → resolve → graph path and produce the same documents
//! (DESIGN.md §3). [`export()`] goes the other way: one environment of a repository's stack as
//! resources (`panka export`), to move a stack from git mode to CRD mode, and to test the first
//! direction against the loader. Nothing here lists, watches or writes resources: the controller
//! hands over what it listed and gets a [`CrdTree`] (or a desired stack) back.
//!
//! # What the controller calls
//!
//! ```text
//! belongs(&stack, &meta, spec_stack) -> bool          which listed resources are the Stack's
//! stack_tree(&stack, &services, &components)          -> Result<CrdTree, Diagnostics>
//! CrdTree::plan_input(&options)                       -> Result<(DesiredStack, Graph), Diagnostics>
//! desired_stack(&stack, &services, &components, &o)   both steps at once
//! ```
//!
//! Every [`Diagnostic`](crate::diag::Diagnostic) that comes out names the resource
//! (`MicroService shop/shop-production-api-web`, as its span's file) and the field
//! (`spec.image.tag: unresolved variable …`), including the loader's and resolve's own
//! problems with the documents built from it ([`CrdTree::explain`]); that is what a Stack's
//! condition and event should say.
//!
//! # Conventions
//!
//! - **Which resources belong to a Stack**: those in its namespace whose `spec.stack` is the
//!   Stack's `spec.stack` and whose label `panka.io/environment`, when set, is the Stack's
//!   `spec.environment`. A resource without that label is shared by every environment of its
//!   stack in the namespace; one with it serves that environment only, so one namespace may
//!   hold several environments of a stack. [`stack_tree`] applies this rule itself: the caller
//!   may pass everything it listed in the namespace.
//! - **Names**: a Service's panka name is its label `panka.io/service`, else its
//!   `metadata.name`; a component's is its label `panka.io/component`, else its
//!   `metadata.name`. Kubernetes names are unique per kind and namespace while panka's
//!   component names are unique per service only, so two services' `api` components are two
//!   resources with different names and the same `panka.io/component: api` label. A name must
//!   be a valid panka name (lowercase letters, digits, `-`), so a `metadata.name` with dots
//!   needs the label.
//! - **What [`export()`] writes**: a Stack named `{stack}-{environment}`, Services named
//!   `{stack}-{environment}-{service}` and components named
//!   `{stack}-{environment}-{service}-{component}` (shortened with a hash past 253 characters),
//!   every one labelled `app.kubernetes.io/managed-by: panka`, `panka.io/stack`,
//!   `panka.io/environment` (and `panka.io/service`, `panka.io/component`), so several
//!   environments and stacks can share a namespace. No namespace: `kubectl apply -n` chooses.
//! - **Metadata**: a document's `metadata.labels` are the resource's labels, except panka's own
//!   (`panka.io/*`, `app.kubernetes.io/managed-by`), which never reach a document; its
//!   `metadata.description` is the annotation `panka.io/description`. Export copies a
//!   document's other annotations for people to read; they are not part of the desired state
//!   and are not read back.
//! - **What a Stack holds**: `spec.provider` (required in CRD mode), `spec.infra` (what
//!   `infra/*.yaml` hold, merged) and `spec.variables` (what the environment's
//!   `variables.yaml` holds). A Stack with `spec.source` takes its desired state from git and is
//!   refused here.

mod emit;
mod export;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use panka_crds::resource::{DynamoDB, ElastiCacheRedis, MicroService, Stack, Worker, RDS, S3, SQS};
use panka_crds::spec::ComponentInfraSpec;
use panka_crds::Kind;
use serde::Serialize;

pub use export::{export, StackResources};
pub use tree::{desired_stack, stack_tree, CrdTree};

/// Label every resource panka writes carries: `app.kubernetes.io/managed-by: panka`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label naming a resource's stack.
pub const STACK_LABEL: &str = "panka.io/stack";
/// Label naming the one environment a resource serves (absent: every environment).
pub const ENVIRONMENT_LABEL: &str = "panka.io/environment";
/// Label giving a Service resource its panka name when `metadata.name` cannot be it.
pub const SERVICE_LABEL: &str = "panka.io/service";
/// Label giving a component resource its panka name when `metadata.name` cannot be it.
pub const COMPONENT_LABEL: &str = "panka.io/component";
/// Annotation holding a document's `metadata.description`.
pub const DESCRIPTION_ANNOTATION: &str = "panka.io/description";

/// Whether a label or annotation key is panka's own, never a document's.
fn is_reserved_key(key: &str) -> bool {
    key.starts_with("panka.io/") || key == MANAGED_BY_LABEL
}

/// A resource as messages name it: `MicroService shop/shop-production-api-web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    /// The resource's kind, e.g. `MicroService`.
    pub kind: &'static str,
    /// Its namespace, when set.
    pub namespace: Option<String>,
    /// Its `metadata.name` (`<unnamed>` when it has none).
    pub name: String,
}

impl ResourceRef {
    /// The reference of a resource of `kind` with metadata `meta`.
    pub fn new(kind: &'static str, meta: &ObjectMeta) -> ResourceRef {
        ResourceRef {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_else(|| "<unnamed>".to_string()),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A component resource of any of the seven component kinds.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ComponentResource {
    /// `microservices.panka.io`.
    MicroService(MicroService),
    /// `workers.panka.io`.
    Worker(Worker),
    /// `rdsinstances.panka.io`.
    Rds(RDS),
    /// `dynamodbtables.panka.io`.
    DynamoDb(DynamoDB),
    /// `s3buckets.panka.io`.
    S3(S3),
    /// `sqsqueues.panka.io`.
    Sqs(SQS),
    /// `elasticacheredises.panka.io`.
    ElastiCacheRedis(ElastiCacheRedis),
}

/// Runs `$body` with `$r` bound to the typed resource inside a [`ComponentResource`].
macro_rules! each {
    ($value:expr, $r:ident => $body:expr) => {
        match $value {
            ComponentResource::MicroService($r) => $body,
            ComponentResource::Worker($r) => $body,
            ComponentResource::Rds($r) => $body,
            ComponentResource::DynamoDb($r) => $body,
            ComponentResource::S3($r) => $body,
            ComponentResource::Sqs($r) => $body,
            ComponentResource::ElastiCacheRedis($r) => $body,
        }
    };
}

impl ComponentResource {
    /// The component kind.
    pub fn kind(&self) -> Kind {
        match self {
            ComponentResource::MicroService(_) => Kind::MicroService,
            ComponentResource::Worker(_) => Kind::Worker,
            ComponentResource::Rds(_) => Kind::Rds,
            ComponentResource::DynamoDb(_) => Kind::DynamoDb,
            ComponentResource::S3(_) => Kind::S3,
            ComponentResource::Sqs(_) => Kind::Sqs,
            ComponentResource::ElastiCacheRedis(_) => Kind::ElastiCacheRedis,
        }
    }

    /// Its metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each!(self, r => &r.metadata)
    }

    /// Its metadata, to change.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each!(self, r => &mut r.metadata)
    }

    /// `spec.stack`.
    pub fn stack(&self) -> &str {
        each!(self, r => &r.spec.stack)
    }

    /// `spec.service`.
    pub fn service(&self) -> &str {
        each!(self, r => &r.spec.service)
    }

    /// How messages name it.
    pub fn resource_ref(&self) -> ResourceRef {
        ResourceRef::new(self.kind().name(), self.metadata())
    }

    /// The settings of its kind (`spec` without `stack`, `service`, `infra`, `configData`), as
    /// the repository file's `spec` would hold them.
    fn kind_spec(&self) -> Result<serde_json::Value, serde_json::Error> {
        each!(self, r => serde_json::to_value(&r.spec.spec))
    }

    /// `spec.infra` and `spec.configData` of the container kinds; `None` for the others.
    fn container_parts(&self) -> Option<(Option<&ComponentInfraSpec>, &BTreeMap<String, String>)> {
        match self {
            ComponentResource::MicroService(r) => {
                Some((r.spec.infra.as_ref(), &r.spec.config_data))
            }
            ComponentResource::Worker(r) => Some((r.spec.infra.as_ref(), &r.spec.config_data)),
            _ => None,
        }
    }

    /// Reads a component resource from its JSON form (one document of `kubectl get -o json`,
    /// or of `panka export`), by its `kind`. Errors say what is wrong, in words.
    pub fn from_value(value: serde_json::Value) -> Result<ComponentResource, String> {
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let typed = |e: serde_json::Error| {
            format!("not a valid {}: {e}", kind.as_deref().unwrap_or("resource"))
        };
        Ok(match kind.as_deref().and_then(Kind::from_name) {
            Some(Kind::MicroService) => {
                ComponentResource::MicroService(serde_json::from_value(value).map_err(typed)?)
            }
            Some(Kind::Worker) => {
                ComponentResource::Worker(serde_json::from_value(value).map_err(typed)?)
            }
            Some(Kind::Rds) => {
                ComponentResource::Rds(serde_json::from_value(value).map_err(typed)?)
            }
            Some(Kind::DynamoDb) => {
                ComponentResource::DynamoDb(serde_json::from_value(value).map_err(typed)?)
            }
            Some(Kind::S3) => ComponentResource::S3(serde_json::from_value(value).map_err(typed)?),
            Some(Kind::Sqs) => {
                ComponentResource::Sqs(serde_json::from_value(value).map_err(typed)?)
            }
            Some(Kind::ElastiCacheRedis) => {
                ComponentResource::ElastiCacheRedis(serde_json::from_value(value).map_err(typed)?)
            }
            _ => {
                return Err(format!(
                    "`{}` is not a component kind",
                    kind.unwrap_or_default()
                ))
            }
        })
    }
}

/// Whether a resource with metadata `meta` and `spec.stack` `spec_stack` belongs to `stack`:
/// same namespace, same stack, and the `panka.io/environment` label, when set, naming the
/// Stack's environment. For the controller's mappers from a Service or component resource to
/// the Stacks it feeds, and applied by [`stack_tree`] to what it is given.
pub fn belongs(stack: &Stack, meta: &ObjectMeta, spec_stack: &str) -> bool {
    let same_namespace = match (&stack.metadata.namespace, &meta.namespace) {
        (Some(a), Some(b)) => a == b,
        // An unset namespace is the caller's business (a test, a file); it matches any.
        _ => true,
    };
    let environment = meta.labels.as_ref().and_then(|l| l.get(ENVIRONMENT_LABEL));
    same_namespace
        && spec_stack == stack.spec.stack
        && environment.is_none_or(|e| *e == stack.spec.environment)
}

/// Why a label key or value is not one Kubernetes accepts, if it is not.
fn label_problem(key: &str, value: Option<&str>) -> Option<String> {
    fn name_ok(name: &str) -> bool {
        let bytes = name.as_bytes();
        !bytes.is_empty()
            && name.len() <= 63
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }
    fn prefix_ok(prefix: &str) -> bool {
        prefix.len() <= 253
            && prefix.split('.').all(|part| {
                let bytes = part.as_bytes();
                !bytes.is_empty()
                    && bytes[0].is_ascii_alphanumeric()
                    && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            })
    }
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !prefix_ok(p)) || !name_ok(name) {
        return Some(format!(
            "`{key}` is not a valid Kubernetes label or annotation key"
        ));
    }
    match value {
        Some(v) if !v.is_empty() && !name_ok(v) => Some(format!(
            "`{v}` (label `{key}`) is not a valid Kubernetes label value"
        )),
        _ => None,
    }
}
