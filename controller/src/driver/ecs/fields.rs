//! The fields the ECS driver compares (stages **observe** and **plan**), pure: the one
//! projection of a task definition and service both sides use, and which part of the component
//! each field belongs to.

use std::collections::BTreeMap;

use serde::Serialize;

use super::render::{ServiceShape, TaskShape, CONFIG_PREFIX};
use panka_core::plan::{FieldValue, Fields, KnownAfterApply};

pub(super) fn unknown() -> FieldValue {
    FieldValue::Unknown(KnownAfterApply::KnownAfterApply)
}

fn opt<T: Serialize>(v: Option<T>) -> FieldValue {
    v.map_or_else(unknown, FieldValue::known)
}

/// Whether a field of [`project`] comes from the task definition (not the service).
pub(super) fn is_task_field(key: &str) -> bool {
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
pub(super) fn task_fields(task: &TaskShape) -> Fields {
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
pub(super) fn project(task: &TaskShape, svc: &ServiceShape) -> Fields {
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
pub(super) enum Part {
    Task,
    Log,
    LoadBalancer,
    Service,
    Scaling,
}

pub(super) fn part_of(field: &str) -> Part {
    let root = field.split('.').next().unwrap_or(field);
    match root {
        "log" if field == "log.retentionDays" => Part::Log,
        "loadBalancer" => Part::LoadBalancer,
        "autoscaling" => Part::Scaling,
        "desiredCount" | "network" | "deployment" | "tags" | "cluster" => Part::Service,
        _ => Part::Task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
