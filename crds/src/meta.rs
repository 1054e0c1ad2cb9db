//! Document envelope: `apiVersion`, `kind` and `metadata` of a file in a deployment repository.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `metadata` of a document in a deployment repository.
///
/// Which identity fields are required depends on the kind: a component names its `service` and
/// `stack`, a service names its `stack`, an overlay below `environments/{env}/` may name its
/// `environment`. The loader checks them against the folder the file sits in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Name of the stack, service or component; what it must equal depends on the file (most
    /// files take their folder's name).
    pub name: String,
    /// Stack the document belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Service the document belongs to (components and component infra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Environment of an overlay or variables file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Free-form description shown in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels, e.g. `team: notifications`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, e.g. `owner: team@company.com`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
