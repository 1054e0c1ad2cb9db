//! Deterministic AWS names and ownership tags (DESIGN.md §4), pure.
//!
//! Every resource panka creates is named `{stack}-{environment}-{service}-{component}` (plus a
//! suffix for secondary resources such as a dead-letter queue), shortened with a hash where the
//! AWS name limit requires it, and tagged `panka:*` so panka never touches what it does not own.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::model::ComponentId;

/// Tag key: stack name.
pub const TAG_STACK: &str = "panka:stack";
/// Tag key: environment.
pub const TAG_ENVIRONMENT: &str = "panka:environment";
/// Tag key: service name (absent on stack-shared resources).
pub const TAG_SERVICE: &str = "panka:service";
/// Tag key: component name (absent on stack-shared resources).
pub const TAG_COMPONENT: &str = "panka:component";
/// Tag key: who manages the resource; value [`MANAGED_BY`].
pub const TAG_MANAGED_BY: &str = "panka:managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY: &str = "panka";
/// Every ownership tag key panka sets (the last two only on a component's own resources).
pub const OWNERSHIP_TAGS: [&str; 5] = [
    TAG_STACK,
    TAG_ENVIRONMENT,
    TAG_MANAGED_BY,
    TAG_SERVICE,
    TAG_COMPONENT,
];

/// Name rules of one AWS resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// Longest name accepted.
    pub max_len: usize,
    /// Suffix the name must end with (e.g. `.fifo`), counted in `max_len`.
    pub suffix: &'static str,
}

impl NameRules {
    /// ECS cluster, service, task definition family; DynamoDB table; RDS subnet group.
    pub const LONG: NameRules = NameRules {
        max_len: 255,
        suffix: "",
    };
    /// SQS standard queue.
    pub const SQS: NameRules = NameRules {
        max_len: 80,
        suffix: "",
    };
    /// SQS FIFO queue.
    pub const SQS_FIFO: NameRules = NameRules {
        max_len: 80,
        suffix: ".fifo",
    };
    /// RDS DB instance identifier; S3 bucket.
    pub const DB_INSTANCE: NameRules = NameRules {
        max_len: 63,
        suffix: "",
    };
    /// S3 bucket (lowercase, globally unique).
    pub const S3_BUCKET: NameRules = NameRules {
        max_len: 63,
        suffix: "",
    };
    /// ElastiCache replication group id.
    pub const REPLICATION_GROUP: NameRules = NameRules {
        max_len: 40,
        suffix: "",
    };
    /// ALB and target group names.
    pub const LOAD_BALANCER: NameRules = NameRules {
        max_len: 32,
        suffix: "",
    };
    /// IAM role names.
    pub const IAM_ROLE: NameRules = NameRules {
        max_len: 64,
        suffix: "",
    };
}

/// Joins parts with `-`, collapses repeated hyphens (RDS and ElastiCache refuse `--`), and
/// shortens to `rules.max_len` by keeping a prefix and appending 8 hex digits of the full name's
/// SHA-256, so distinct long names stay distinct and the same input always yields the same name.
pub fn physical_name(parts: &[&str], rules: NameRules) -> String {
    let mut full = String::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !full.is_empty() {
            full.push('-');
        }
        full.push_str(part);
    }
    while full.contains("--") {
        full = full.replace("--", "-");
    }
    let budget = rules.max_len.saturating_sub(rules.suffix.len());
    let name = if full.len() <= budget {
        full
    } else {
        let digest = hex::encode(Sha256::digest(full.as_bytes()));
        let keep = budget.saturating_sub(9);
        let prefix = full[..keep].trim_end_matches('-');
        format!("{prefix}-{}", &digest[..8])
    };
    format!("{name}{}", rules.suffix)
}

/// Names and tags for one stack in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Stack name.
    pub stack: String,
    /// Environment.
    pub environment: String,
}

impl Naming {
    /// Naming for a stack in an environment.
    pub fn new(stack: impl Into<String>, environment: impl Into<String>) -> Naming {
        Naming {
            stack: stack.into(),
            environment: environment.into(),
        }
    }

    /// Name of a component's primary resource, with an optional suffix part (e.g. `dlq`).
    pub fn component(&self, id: &ComponentId, suffix: Option<&str>, rules: NameRules) -> String {
        let mut parts = vec![
            self.stack.as_str(),
            self.environment.as_str(),
            id.service.as_str(),
            id.component.as_str(),
        ];
        if let Some(s) = suffix {
            parts.push(s);
        }
        physical_name(&parts, rules)
    }

    /// Name of a stack-wide resource (ECS cluster default, load balancer), e.g. `alb`.
    pub fn shared(&self, what: &str, rules: NameRules) -> String {
        physical_name(&[&self.stack, &self.environment, what], rules)
    }

    /// CloudWatch Logs group of a container component.
    pub fn log_group(&self, id: &ComponentId) -> String {
        format!("{}{}/{}", self.log_group_prefix(), id.service, id.component)
    }

    /// What every log group of this stack/environment starts with (ends with `/`).
    pub fn log_group_prefix(&self) -> String {
        format!("/panka/{}/{}/", self.stack, self.environment)
    }

    /// Ownership tags of a component's resources (or a stack-wide one when `id` is `None`),
    /// merged over the stack's extra tags (ours win).
    pub fn tags(
        &self,
        id: Option<&ComponentId>,
        extra: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut tags = extra.clone();
        tags.insert(TAG_STACK.into(), self.stack.clone());
        tags.insert(TAG_ENVIRONMENT.into(), self.environment.clone());
        if let Some(id) = id {
            tags.insert(TAG_SERVICE.into(), id.service.clone());
            tags.insert(TAG_COMPONENT.into(), id.component.clone());
        }
        tags.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
        tags
    }

    /// Whether a resource's tags say it is this stack/environment's (and, with `id`, this
    /// component's): the test before panka updates or deletes anything it finds by name.
    pub fn owns(&self, id: Option<&ComponentId>, tags: &BTreeMap<String, String>) -> bool {
        let is = |k: &str, v: &str| tags.get(k).is_some_and(|t| t == v);
        is(TAG_MANAGED_BY, MANAGED_BY)
            && is(TAG_STACK, &self.stack)
            && is(TAG_ENVIRONMENT, &self.environment)
            && id.is_none_or(|id| is(TAG_SERVICE, &id.service) && is(TAG_COMPONENT, &id.component))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_the_plain_join() {
        let naming = Naming::new("shop", "dev");
        let id = ComponentId::new("orders", "queue");
        assert_eq!(
            naming.component(&id, None, NameRules::SQS),
            "shop-dev-orders-queue"
        );
        assert_eq!(
            naming.component(&id, Some("dlq"), NameRules::SQS_FIFO),
            "shop-dev-orders-queue-dlq.fifo"
        );
    }

    #[test]
    fn long_names_are_shortened_deterministically_and_stay_distinct() {
        let naming = Naming::new("notification-platform", "production");
        let a = naming.component(
            &ComponentId::new("email-service", "database-primary"),
            None,
            NameRules::REPLICATION_GROUP,
        );
        let b = naming.component(
            &ComponentId::new("email-service", "database-replica"),
            None,
            NameRules::REPLICATION_GROUP,
        );
        assert!(a.len() <= 40 && b.len() <= 40, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(
            a,
            naming.component(
                &ComponentId::new("email-service", "database-primary"),
                None,
                NameRules::REPLICATION_GROUP
            )
        );
        assert!(!a.contains("--") && !a.ends_with('-'));
    }

    #[test]
    fn the_suffix_is_kept_within_the_limit() {
        let long = "x".repeat(100);
        let name = physical_name(&[&long], NameRules::SQS_FIFO);
        assert_eq!(name.len(), 80);
        assert!(name.ends_with(".fifo"));
    }

    #[test]
    fn double_hyphens_are_collapsed() {
        assert_eq!(physical_name(&["a-", "-b"], NameRules::DB_INSTANCE), "a-b");
    }

    #[test]
    fn ownership_needs_every_tag() {
        let naming = Naming::new("shop", "dev");
        let id = ComponentId::new("orders", "queue");
        let tags = naming.tags(
            Some(&id),
            &BTreeMap::from([("team".to_string(), "x".to_string())]),
        );
        assert!(naming.owns(Some(&id), &tags));
        assert!(naming.owns(None, &tags));
        assert!(!Naming::new("shop", "prod").owns(Some(&id), &tags));
        let mut foreign = tags.clone();
        foreign.remove(TAG_MANAGED_BY);
        assert!(!naming.owns(Some(&id), &foreign));
        assert_eq!(tags["team"], "x");
    }
}
