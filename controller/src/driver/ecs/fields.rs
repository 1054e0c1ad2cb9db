//! The fields the ECS driver compares (stages **observe** and **plan**), typed and pure.
//!
//! [`EcsFields`] names every field once. [`SLOTS`] gives each member its key in [`Fields`] (what
//! plans, state and tests see) and the [`Part`] of the component that holds it, which decides
//! what an update changes for a difference in it; [`EcsFields::members`] lists the members in
//! one order whatever they hold. Both destructure or build the struct exhaustively, so a member
//! added without a key and a part does not compile.

use std::collections::BTreeMap;

use serde::Serialize;

use super::render::{ServiceShape, TaskShape, CONFIG_PREFIX};
use panka_core::plan::{FieldValue, Fields, KnownAfterApply};

/// A value known only once a dependency is applied.
pub(super) fn unknown() -> FieldValue {
    FieldValue::Unknown(KnownAfterApply::KnownAfterApply)
}

fn opt<T: Serialize>(v: Option<T>) -> FieldValue {
    v.map_or_else(unknown, FieldValue::known)
}

/// Which part of a component a changed field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The task definition: a new revision.
    Task,
    /// The log group's retention.
    Log,
    /// The target group and listener rule.
    LoadBalancer,
    /// The ECS service itself.
    Service,
    /// Application Auto Scaling.
    Scaling,
}

/// Where a member of [`EcsFields`] goes: its key in [`Fields`] (for a family, the prefix of its
/// members' keys) and the part of the component holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    key: &'static str,
    part: Part,
}

impl Slot {
    const fn new(key: &'static str, part: Part) -> Slot {
        Slot { key, part }
    }
}

/// Every field the driver compares. One side's values are an [`EcsFields`]`<FieldValue,
/// BTreeMap<String, FieldValue>>` (see [`EcsFields::of`]); [`SLOTS`], an `EcsFields<Slot,
/// Slot>`, says where each member goes. `T` is one field, `F` a family of fields under one
/// prefix; an `Option` member is compared only when present.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EcsFields<T, F> {
    // The task definition.
    cpu: T,
    memory: T,
    architecture: T,
    execution_role_arn: T,
    image: T,
    container_command: T,
    container_args: T,
    container_working_dir: T,
    ports: T,
    /// The names of the plain variables (config files count through `config_hash`).
    environment: T,
    /// The value of each plain variable.
    environment_values: F,
    secrets: T,
    config_hash: T,
    health_check: T,
    log_group: T,
    // The log group: observed only when it exists.
    log_retention_days: Option<T>,
    // The service.
    cluster: T,
    desired_count: T,
    subnets: T,
    security_groups: T,
    assign_public_ip: T,
    circuit_breaker: T,
    tags: T,
    // The load balancer: all but `enabled` only when it is.
    load_balancer_enabled: T,
    load_balancer_port: Option<T>,
    load_balancer_path: Option<T>,
    load_balancer_host: Option<T>,
    load_balancer_health_check_path: Option<T>,
    target_group_tags: Option<T>,
    rule_tags: Option<T>,
    // Application Auto Scaling.
    autoscaling: T,
}

/// The key and part of every member: the one table of them.
const SLOTS: EcsFields<Slot, Slot> = EcsFields {
    cpu: Slot::new("cpu", Part::Task),
    memory: Slot::new("memory", Part::Task),
    architecture: Slot::new("architecture", Part::Task),
    execution_role_arn: Slot::new("executionRoleArn", Part::Task),
    image: Slot::new("image", Part::Task),
    container_command: Slot::new("container.command", Part::Task),
    container_args: Slot::new("container.args", Part::Task),
    container_working_dir: Slot::new("container.workingDir", Part::Task),
    ports: Slot::new("ports", Part::Task),
    environment: Slot::new("environment", Part::Task),
    environment_values: Slot::new("environment.", Part::Task),
    secrets: Slot::new("secrets", Part::Task),
    config_hash: Slot::new("configHash", Part::Task),
    health_check: Slot::new("healthCheck", Part::Task),
    log_group: Slot::new("log.group", Part::Task),
    log_retention_days: Some(Slot::new("log.retentionDays", Part::Log)),
    cluster: Slot::new("cluster", Part::Service),
    desired_count: Slot::new("desiredCount", Part::Service),
    subnets: Slot::new("network.subnets", Part::Service),
    security_groups: Slot::new("network.securityGroups", Part::Service),
    assign_public_ip: Slot::new("network.assignPublicIp", Part::Service),
    circuit_breaker: Slot::new("deployment.circuitBreaker", Part::Service),
    tags: Slot::new("tags", Part::Service),
    load_balancer_enabled: Slot::new("loadBalancer.enabled", Part::LoadBalancer),
    load_balancer_port: Some(Slot::new("loadBalancer.port", Part::LoadBalancer)),
    load_balancer_path: Some(Slot::new("loadBalancer.path", Part::LoadBalancer)),
    load_balancer_host: Some(Slot::new("loadBalancer.host", Part::LoadBalancer)),
    load_balancer_health_check_path: Some(Slot::new(
        "loadBalancer.healthCheckPath",
        Part::LoadBalancer,
    )),
    target_group_tags: Some(Slot::new(
        "loadBalancer.targetGroup.tags",
        Part::LoadBalancer,
    )),
    rule_tags: Some(Slot::new("loadBalancer.rule.tags", Part::LoadBalancer)),
    autoscaling: Slot::new("autoscaling", Part::Scaling),
};

/// One member of an [`EcsFields`].
enum Member<T, F> {
    /// One field.
    One(T),
    /// A family of fields under one prefix.
    Family(F),
    /// An optional field this side does not have.
    Absent,
}

impl<T, F> EcsFields<T, F> {
    /// Every member, in one order whatever `T` and `F` are: a side's values line up with
    /// [`SLOTS`] member by member.
    fn members(self) -> Vec<Member<T, F>> {
        use Member::{Family, One};
        let maybe = |v: Option<T>| v.map_or(Member::Absent, One);
        let EcsFields {
            cpu,
            memory,
            architecture,
            execution_role_arn,
            image,
            container_command,
            container_args,
            container_working_dir,
            ports,
            environment,
            environment_values,
            secrets,
            config_hash,
            health_check,
            log_group,
            log_retention_days,
            cluster,
            desired_count,
            subnets,
            security_groups,
            assign_public_ip,
            circuit_breaker,
            tags,
            load_balancer_enabled,
            load_balancer_port,
            load_balancer_path,
            load_balancer_host,
            load_balancer_health_check_path,
            target_group_tags,
            rule_tags,
            autoscaling,
        } = self;
        vec![
            One(cpu),
            One(memory),
            One(architecture),
            One(execution_role_arn),
            One(image),
            One(container_command),
            One(container_args),
            One(container_working_dir),
            One(ports),
            One(environment),
            Family(environment_values),
            One(secrets),
            One(config_hash),
            One(health_check),
            One(log_group),
            maybe(log_retention_days),
            One(cluster),
            One(desired_count),
            One(subnets),
            One(security_groups),
            One(assign_public_ip),
            One(circuit_breaker),
            One(tags),
            One(load_balancer_enabled),
            maybe(load_balancer_port),
            maybe(load_balancer_path),
            maybe(load_balancer_host),
            maybe(load_balancer_health_check_path),
            maybe(target_group_tags),
            maybe(rule_tags),
            One(autoscaling),
        ]
    }
}

/// One side's values.
pub(super) type Values = EcsFields<FieldValue, BTreeMap<String, FieldValue>>;

impl Values {
    /// The comparable fields of a task definition and service: the one projection both
    /// `desired` and `observe` use, so a converged component has no diff.
    pub(super) fn of(task: &TaskShape, svc: &ServiceShape) -> Values {
        let plain: Vec<&String> = task
            .environment
            .keys()
            .filter(|k| !k.starts_with(CONFIG_PREFIX))
            .collect();
        let environment_values = task
            .environment
            .iter()
            .filter(|(k, _)| !k.starts_with(CONFIG_PREFIX))
            .map(|(k, v)| (k.clone(), opt(v.as_ref())))
            .collect();
        let lb = svc.load_balancer.as_ref();
        EcsFields {
            cpu: FieldValue::known(task.cpu),
            memory: FieldValue::known(task.memory),
            architecture: FieldValue::known(&task.architecture),
            execution_role_arn: FieldValue::known(&task.execution_role),
            image: FieldValue::known(&task.image),
            container_command: FieldValue::known(&task.entry_point),
            container_args: FieldValue::known(&task.command),
            container_working_dir: FieldValue::known(&task.working_directory),
            ports: FieldValue::known(&task.ports),
            environment: FieldValue::known(&plain),
            environment_values,
            secrets: FieldValue::known(&task.secrets),
            config_hash: opt(task.config_hash()),
            health_check: FieldValue::known(&task.health_check),
            log_group: FieldValue::known(&task.log_group),
            log_retention_days: svc.log_retention.map(FieldValue::known),
            cluster: FieldValue::known(&svc.cluster),
            desired_count: FieldValue::known(svc.desired_count),
            subnets: opt(svc.subnets.as_ref()),
            security_groups: opt(svc.security_groups.as_ref()),
            assign_public_ip: FieldValue::known(svc.assign_public_ip),
            circuit_breaker: FieldValue::known(svc.circuit_breaker),
            tags: FieldValue::known(&svc.tags),
            load_balancer_enabled: FieldValue::known(lb.is_some()),
            load_balancer_port: lb.map(|lb| FieldValue::known(lb.port)),
            load_balancer_path: lb.map(|lb| FieldValue::known(&lb.path)),
            load_balancer_host: lb.map(|lb| FieldValue::known(&lb.host)),
            load_balancer_health_check_path: lb.map(|lb| FieldValue::known(&lb.health_check_path)),
            target_group_tags: lb.map(|lb| FieldValue::known(&lb.target_group_tags)),
            rule_tags: lb.map(|lb| FieldValue::known(&lb.rule_tags)),
            autoscaling: FieldValue::known(&svc.autoscaling),
        }
    }

    /// The fields under the keys [`SLOTS`] gives them.
    pub(super) fn into_fields(self) -> Fields {
        self.into_part(None)
    }

    /// [`Values::into_fields`], only those of `part` when given.
    fn into_part(self, part: Option<Part>) -> Fields {
        let mut f = Fields::new();
        for (slot, value) in SLOTS.members().into_iter().zip(self.members()) {
            match (slot, value) {
                (Member::One(s), Member::One(v)) if part.is_none_or(|p| p == s.part) => {
                    f.insert(s.key.to_string(), v);
                }
                (Member::Family(s), Member::Family(values)) if part.is_none_or(|p| p == s.part) => {
                    for (name, v) in values {
                        f.insert(format!("{}{name}", s.key), v);
                    }
                }
                // Another part, or an optional field this side does not have.
                _ => {}
            }
        }
        f
    }
}

/// The fields of [`Values::of`] that come from the task definition alone.
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
    Values::of(task, &none).into_part(Some(Part::Task))
}

/// The part holding the field `key` (a key of [`Values::into_fields`]); `None` for a key this
/// driver never makes.
pub(super) fn part_of(key: &str) -> Option<Part> {
    SLOTS.members().into_iter().find_map(|m| match m {
        Member::One(s) if s.key == key => Some(s.part),
        Member::Family(s) if key.strip_prefix(s.key).is_some_and(|n| !n.is_empty()) => Some(s.part),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::ecs::lb::LbShape;
    use crate::driver::ecs::scaling::ScalingShape;

    #[test]
    fn fields_split_by_part() {
        assert_eq!(part_of("image"), Some(Part::Task));
        assert_eq!(part_of("environment.QUEUE_URL"), Some(Part::Task));
        assert_eq!(part_of("log.group"), Some(Part::Task));
        assert_eq!(part_of("log.retentionDays"), Some(Part::Log));
        assert_eq!(part_of("desiredCount"), Some(Part::Service));
        assert_eq!(part_of("network.subnets"), Some(Part::Service));
        assert_eq!(part_of("loadBalancer.path"), Some(Part::LoadBalancer));
        assert_eq!(part_of("autoscaling"), Some(Part::Scaling));
        assert_eq!(part_of("environment."), None, "a family needs a name");
        assert_eq!(part_of("log"), None);
    }

    fn full() -> (TaskShape, ServiceShape) {
        let task = TaskShape {
            environment: BTreeMap::from([
                ("QUEUE_URL".to_string(), None),
                ("MODE".to_string(), Some("fast".to_string())),
                (format!("{CONFIG_PREFIX}APP_YAML"), Some("e30=".to_string())),
            ]),
            ..TaskShape::default()
        };
        let svc = ServiceShape {
            cluster: "shop-dev".into(),
            desired_count: 2,
            subnets: None,
            security_groups: Some(vec!["sg-1".into()]),
            assign_public_ip: false,
            circuit_breaker: true,
            tags: BTreeMap::new(),
            load_balancer: Some(LbShape {
                port: 8080,
                path: "/orders/api/*".into(),
                host: None,
                health_check_path: "/".into(),
                target_group_tags: BTreeMap::new(),
                rule_tags: BTreeMap::new(),
            }),
            autoscaling: Some(ScalingShape {
                min_replicas: 1,
                max_replicas: 3,
                policies: vec![],
            }),
            log_retention: Some(Some(7)),
        };
        (task, svc)
    }

    #[test]
    fn every_field_keeps_its_key_and_part() {
        use Part::{LoadBalancer, Log, Scaling, Service, Task};
        let (task, svc) = full();
        let fields = Values::of(&task, &svc).into_fields();
        // Plans, state and tests name fields by these keys: they never change.
        let want = [
            ("architecture", Task),
            ("autoscaling", Scaling),
            ("cluster", Service),
            ("configHash", Task),
            ("container.args", Task),
            ("container.command", Task),
            ("container.workingDir", Task),
            ("cpu", Task),
            ("deployment.circuitBreaker", Service),
            ("desiredCount", Service),
            ("environment", Task),
            ("environment.MODE", Task),
            ("environment.QUEUE_URL", Task),
            ("executionRoleArn", Task),
            ("healthCheck", Task),
            ("image", Task),
            ("loadBalancer.enabled", LoadBalancer),
            ("loadBalancer.healthCheckPath", LoadBalancer),
            ("loadBalancer.host", LoadBalancer),
            ("loadBalancer.path", LoadBalancer),
            ("loadBalancer.port", LoadBalancer),
            ("loadBalancer.rule.tags", LoadBalancer),
            ("loadBalancer.targetGroup.tags", LoadBalancer),
            ("log.group", Task),
            ("log.retentionDays", Log),
            ("memory", Task),
            ("network.assignPublicIp", Service),
            ("network.securityGroups", Service),
            ("network.subnets", Service),
            ("ports", Task),
            ("secrets", Task),
            ("tags", Service),
        ];
        assert_eq!(
            fields.keys().map(String::as_str).collect::<Vec<_>>(),
            want.iter().map(|(k, _)| *k).collect::<Vec<_>>()
        );
        for (key, part) in want {
            assert_eq!(part_of(key), Some(part), "{key}");
        }
        assert_eq!(fields["environment.QUEUE_URL"], unknown());
        assert_eq!(fields["network.subnets"], unknown());
        assert_eq!(
            fields["environment"],
            FieldValue::known(["MODE", "QUEUE_URL"])
        );
        assert_eq!(fields["log.retentionDays"], FieldValue::known(7));
    }

    #[test]
    fn optional_fields_are_left_out_when_absent() {
        let (task, mut svc) = full();
        svc.load_balancer = None;
        svc.log_retention = None;
        let fields = Values::of(&task, &svc).into_fields();
        assert_eq!(fields["loadBalancer.enabled"], FieldValue::known(false));
        assert!(!fields.contains_key("loadBalancer.port"));
        assert!(!fields.contains_key("log.retentionDays"));
    }

    #[test]
    fn task_fields_are_those_of_the_task_part() {
        let (task, svc) = full();
        let all = Values::of(&task, &svc).into_fields();
        let only = task_fields(&task);
        assert!(only.keys().all(|k| part_of(k) == Some(Part::Task)));
        let task_keys: Vec<&String> = all
            .keys()
            .filter(|k| part_of(k) == Some(Part::Task))
            .collect();
        assert_eq!(only.keys().collect::<Vec<_>>(), task_keys);
    }
}
