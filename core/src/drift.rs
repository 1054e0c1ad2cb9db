//! Drift (stage **plan**, pure): what AWS holds that differs from the spec last *applied*.
//!
//! Drift is never measured against the repository: a commit not applied yet is a pending
//! change, which `plan` shows. The caller plans the *applied* stack (the specs state recorded,
//! see [`crate::state::StateDocument::applied_stack`]) against what observe read; every change
//! that plan finds is then drift, and this module turns it into [`Finding`]s a person can act
//! on: a severity from one table ([`severity`]), and a likely cause in words ([`likely_cause`]).
//!
//! Differences AWS makes by itself are not drift, and never reach this module: drivers compare
//! normalised values (ARNs and names, casing, ordering, unset and default), a task count the
//! autoscaler moves within its bounds is not compared, and `drift.ignore` rules drop their
//! fields in [`crate::plan`] before anything is reported or remediated.

use serde::{Deserialize, Serialize};

use crate::model::ComponentId;
use crate::plan::{Action, ComponentPlan, FieldValue, Plan};

/// How much a difference matters. Ordered: the highest finding gives a component's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Bookkeeping: tags.
    Low,
    /// Capacity and retention: replicas, CPU/memory, timeouts, retention, versioning, PITR.
    Medium,
    /// What runs and with which rights: image, task definition, environment, secrets, IAM.
    High,
    /// Exposure or loss: a missing resource, public access, encryption, deletion protection,
    /// security groups.
    Critical,
}

impl Severity {
    /// The word shown: `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The field a missing resource is reported under.
pub const EXISTS: &str = "exists";

/// The one severity table: the first rule whose pattern occurs in the field's name (ASCII case
/// ignored) decides; a field no rule names is [`Severity::Medium`]. Documented in
/// `docs/drift.md`; a test keeps the two in step.
pub const SEVERITY_RULES: &[(&str, Severity)] = &[
    (EXISTS, Severity::Critical),
    ("publicaccess", Severity::Critical),
    ("assignpublicip", Severity::Critical),
    ("scheme", Severity::Critical),
    ("encryption", Severity::Critical),
    ("deletionprotection", Severity::Critical),
    ("securitygroups", Severity::Critical),
    ("permissionsboundary", Severity::Critical),
    ("tags", Severity::Low),
    ("image", Severity::High),
    ("taskdefinition", Severity::High),
    ("confighash", Severity::High),
    ("container.", Severity::High),
    ("environment", Severity::High),
    ("secrets", Severity::High),
    ("executionrole", Severity::High),
    ("trust", Severity::High),
    ("policy", Severity::High),
    ("policies", Severity::High),
];

/// The severity of a difference in `field` ([`SEVERITY_RULES`]).
pub fn severity(field: &str) -> Severity {
    let lower = field.to_ascii_lowercase();
    SEVERITY_RULES
        .iter()
        .find(|(pattern, _)| lower.contains(pattern))
        .map_or(Severity::Medium, |(_, s)| *s)
}

/// One difference between the applied spec and AWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Component.
    pub component: ComponentId,
    /// Its kind.
    pub kind: String,
    /// The field, as plans name it (`desiredCount`, `environment.LOG_LEVEL`).
    pub field: String,
    /// What was applied.
    pub desired: Option<FieldValue>,
    /// What AWS holds.
    pub actual: Option<FieldValue>,
    /// How much it matters.
    pub severity: Severity,
    /// What probably happened, for a person.
    pub likely_cause: String,
    /// When this difference was first seen (RFC 3339); kept across checks while it lasts.
    pub detected_at: String,
}

/// The drift of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentDrift {
    /// Component.
    pub component: ComponentId,
    /// Kind.
    pub kind: String,
    /// The highest severity of its findings.
    pub severity: Severity,
    /// What differs.
    pub findings: Vec<Finding>,
}

/// The drift of a stack/environment (or one service), as found at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// The service checked, when only one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// When (RFC 3339).
    pub checked_at: String,
    /// By whom.
    pub checked_by: String,
    /// Components compared.
    pub checked: usize,
    /// Components that differ, most severe first.
    pub drifted: Vec<ComponentDrift>,
    /// Differences dropped by `drift.ignore` rules, as `service/component field`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// Components whose repository spec differs from the applied one (or that are new or
    /// removed in the repository): changes a `plan` shows, not drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<ComponentId>,
}

impl DriftReport {
    /// Whether anything drifted.
    pub fn has_drift(&self) -> bool {
        !self.drifted.is_empty()
    }

    /// Every finding.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.drifted.iter().flat_map(|c| c.findings.iter())
    }

    /// The report as it concerns `service` alone (a stack-wide check read for one service).
    pub fn narrowed_to(mut self, service: &str) -> DriftReport {
        self.drifted.retain(|c| c.component.service == service);
        self.pending.retain(|c| c.service == service);
        let prefix = format!("{service}/");
        self.ignored.retain(|i| i.starts_with(&prefix));
        self.service = Some(service.to_owned());
        self
    }

    /// Every finding, owned (to carry first-seen times into the next check).
    pub fn findings_vec(&self) -> Vec<Finding> {
        self.findings().cloned().collect()
    }

    /// The highest severity found, if any.
    pub fn severity(&self) -> Option<Severity> {
        self.drifted.iter().map(|c| c.severity).max()
    }
}

/// The findings of a plan of the applied stack: every component it would change, with why.
/// `previous` is the last report's findings: a difference still there keeps the time it was
/// first seen. `now` stamps new ones.
pub fn findings(
    plan: &Plan,
    previous: &[Finding],
    now: &str,
) -> (Vec<ComponentDrift>, Vec<String>) {
    let mut drifted = Vec::new();
    let mut ignored = Vec::new();
    for p in plan.waves.iter().flatten() {
        ignored.extend(p.ignored.iter().map(|f| format!("{} {f}", p.id)));
        let found = component_findings(p, previous, now);
        if let Some(severity) = found.iter().map(|f| f.severity).max() {
            drifted.push(ComponentDrift {
                component: p.id.clone(),
                kind: p.kind.clone(),
                severity,
                findings: found,
            });
        }
    }
    drifted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.component.cmp(&b.component))
    });
    (drifted, ignored)
}

fn component_findings(p: &ComponentPlan, previous: &[Finding], now: &str) -> Vec<Finding> {
    let finding = |field: &str, desired: Option<FieldValue>, actual: Option<FieldValue>| {
        let detected_at = previous
            .iter()
            .find(|f| f.component == p.id && f.field == field && f.actual == actual)
            .map_or_else(|| now.to_owned(), |f| f.detected_at.clone());
        Finding {
            component: p.id.clone(),
            kind: p.kind.clone(),
            field: field.to_owned(),
            likely_cause: likely_cause(&p.kind, field, desired.as_ref(), actual.as_ref()),
            severity: severity(field),
            desired,
            actual,
            detected_at,
        }
    };
    match &p.action {
        Action::NoOp | Action::Delete => Vec::new(),
        Action::Create => vec![finding(
            EXISTS,
            Some(FieldValue::known(true)),
            Some(FieldValue::known(false)),
        )],
        Action::Conflict { reason } => {
            let mut f = finding(
                EXISTS,
                Some(FieldValue::known(true)),
                Some(FieldValue::known(false)),
            );
            f.likely_cause = format!("panka's {} is gone, and {reason}", p.kind);
            vec![f]
        }
        // A value known only once a dependency is applied (the endpoint of a database deleted
        // by hand) is that dependency's drift, reported there, not this component's.
        Action::Update | Action::Replace { .. } => p
            .diffs
            .iter()
            .filter(|d| !matches!(d.new, Some(FieldValue::Unknown(_))))
            .map(|d| finding(&d.field, d.new.clone(), d.old.clone()))
            .collect(),
    }
}

/// What a person calls a kind's AWS resource.
fn resource_word(kind: &str) -> &str {
    match kind {
        "MicroService" | "Worker" => "ECS service",
        "SQS" => "queue",
        "S3" => "bucket",
        "DynamoDB" => "table",
        "RDS" => "DB instance",
        "ElastiCacheRedis" => "replication group",
        "EcsCluster" => "ECS cluster",
        "LoadBalancer" => "load balancer",
        "ExecutionRole" => "execution role",
        "Network" => "network",
        other => other,
    }
}

/// Fields of an ECS task definition (lower case): a difference in one means a revision panka
/// did not register is running.
const TASK_FIELDS: &[&str] = &[
    "image",
    "taskdefinition",
    "confighash",
    "container.",
    "secrets",
    "executionrole",
    "cpu",
    "memory",
    "ports",
    "healthcheck",
    "architecture",
];

/// What probably happened, in words, for a difference in `field` of a `kind`.
pub fn likely_cause(
    kind: &str,
    field: &str,
    desired: Option<&FieldValue>,
    actual: Option<&FieldValue>,
) -> String {
    let number = |v: Option<&FieldValue>| match v {
        Some(FieldValue::Known(serde_json::Value::Number(n))) => n.as_f64(),
        _ => None,
    };
    let truth = |v: Option<&FieldValue>| match v {
        Some(FieldValue::Known(serde_json::Value::Bool(b))) => Some(*b),
        Some(FieldValue::Known(serde_json::Value::String(s))) => match s.as_str() {
            "Enabled" | "ENABLED" | "enabled" => Some(true),
            "Suspended" | "Disabled" | "DISABLED" | "disabled" => Some(false),
            _ => None,
        },
        _ => None,
    };
    let ecs = matches!(kind, "MicroService" | "Worker");
    let lower = field.to_ascii_lowercase();
    if field == EXISTS {
        return format!("the {} was deleted outside panka", resource_word(kind));
    }
    if lower == "desiredcount" {
        return match (number(desired), number(actual)) {
            (Some(d), Some(a)) if a < d => "someone scaled the service down by hand".into(),
            (Some(d), Some(a)) if a > d => "someone scaled the service up by hand".into(),
            _ => "someone changed the service's task count by hand".into(),
        };
    }
    if lower.ends_with("tags") {
        return "tags were edited in the console or by another tool".into();
    }
    if ecs && lower.starts_with("environment") {
        return "an environment variable was changed outside panka (a new task definition revision)"
            .into();
    }
    if ecs && TASK_FIELDS.iter().any(|p| lower.contains(p)) {
        return "the task definition was replaced outside panka".into();
    }
    let turned = |what: &str| match truth(actual) {
        Some(false) => format!("{what} was turned off by hand"),
        Some(true) => format!("{what} was turned on by hand"),
        None => format!("{what} was changed by hand"),
    };
    match lower.as_str() {
        f if f.contains("versioning") => turned("bucket versioning"),
        f if f.contains("publicaccess") => {
            "the bucket's public access block was changed or removed by hand".into()
        }
        f if f.contains("encryption") => "default encryption was changed by hand".into(),
        f if f.contains("pointintimerecovery") => turned("point-in-time recovery"),
        f if f.contains("deletionprotection") => turned("deletion protection"),
        f if f.contains("retention") => "the retention period was changed by hand".into(),
        f if f.contains("securitygroups") => "the security groups were changed by hand".into(),
        f if f.contains("autoscaling") => "the autoscaling bounds were changed by hand".into(),
        _ if kind == "SQS" => "the queue's attributes were edited by hand".into(),
        _ => format!("`{field}` was changed outside panka"),
    }
}

#[cfg(test)]
mod tests;
