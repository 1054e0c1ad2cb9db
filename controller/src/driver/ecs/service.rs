//! Stages **observe** and **apply** of the ECS side of a component: the service (create, tags,
//! delete, network and deployment configuration, health from its rollout) and its task
//! definition revisions (register, describe once per revision, retire). ECS tag calls go
//! through [`EcsDriver::retag_ecs`].

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, CpuArchitecture, DeploymentCircuitBreaker,
    DeploymentConfiguration, LaunchType, NetworkConfiguration, NetworkMode, OsFamily,
    PropagateTags, RuntimePlatform, Service, ServiceField, TaskDefinitionStatus,
};

use super::lb::LbShape;
use super::observe::Batch;
use super::render::{container_definition, task_shape_of, ServiceShape, TaskShape};
use super::stack_refs::ecs_tags;
use super::{build_error, EcsDriver, MISSING};
use crate::aws::AwsError;
use crate::driver::support::{is_missing, TagChanges};
use crate::driver::DriverError;
use panka_core::model::ComponentId;
use panka_core::plan::Health;

/// DeleteTaskDefinitions takes at most this many revisions.
const TASK_DEFINITIONS_PER_DELETE: usize = 10;

/// Health of a service from its primary deployment's rollout state and task counts.
///
/// AWS reports a rollout state for every rolling deployment with the circuit breaker on (all of
/// panka's); emulators do not, so without one a service is healthy once it runs at least as many
/// tasks as it wants and has a single deployment.
pub(super) fn health_of(
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

impl EcsDriver {
    pub(super) async fn describe_service(
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
    pub(super) async fn task_shape(
        &self,
        id: &ComponentId,
        arn: &str,
    ) -> Result<TaskShape, DriverError> {
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

    /// Registers a task definition revision; returns its ARN.
    pub(super) async fn register(
        &self,
        id: &ComponentId,
        task: &TaskShape,
    ) -> Result<String, DriverError> {
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

    /// The revisions of a task definition family in `status`.
    async fn revisions_of(
        &self,
        id: &ComponentId,
        family: &str,
        status: TaskDefinitionStatus,
    ) -> Result<Vec<String>, DriverError> {
        let arns: Vec<String> = self
            .ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(status)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DriverError::aws("list task definitions", id, &e))?;
        // `familyPrefix` is documented as the full family; check anyway.
        Ok(arns
            .into_iter()
            .filter(|arn| {
                arn.rsplit_once('/')
                    .and_then(|(_, fr)| fr.rsplit_once(':'))
                    .is_some_and(|(f, _)| f == family)
            })
            .collect())
    }

    pub(super) fn network(
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

    pub(super) fn ecs_load_balancers(
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

    /// Creates the ECS service `name` running `task_arn`, with the deployment circuit breaker
    /// and rollback on; returns its ARN.
    pub(super) async fn create_service(
        &self,
        id: &ComponentId,
        cluster: &str,
        name: &str,
        task_arn: &str,
        shape: &ServiceShape,
        target_group: Option<&str>,
    ) -> Result<String, DriverError> {
        let created = self
            .ecs
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .task_definition(task_arn)
            .desired_count(i32::try_from(shape.desired_count).unwrap_or(i32::MAX))
            .launch_type(LaunchType::Fargate)
            .network_configuration(self.network(id, shape)?)
            .deployment_configuration(deployment_configuration())
            .set_load_balancers(Some(self.ecs_load_balancers(
                id,
                shape.load_balancer.as_ref(),
                target_group,
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
                .cluster(cluster)
                .service(name)
                .deployment_configuration(deployment_configuration())
                .send()
                .await
                .map_err(|e| DriverError::aws("update ECS service", id, &e))?;
        }
        Ok(arn)
    }

    /// Sends `changes` (see [`crate::driver::support::TagPolicy::changes`]) to an ECS service:
    /// every ECS tag call of this driver goes through here.
    pub(super) async fn retag_ecs(
        &self,
        id: &ComponentId,
        arn: &str,
        changes: TagChanges,
    ) -> Result<(), DriverError> {
        super::stack_refs::retag_ecs(&self.ecs, id, arn, changes, "ECS service").await
    }

    /// Scales a service being deleted to zero tasks, then deletes it; one already gone is done.
    pub(super) async fn delete_service(
        &self,
        id: &ComponentId,
        cluster: &str,
        name: &str,
        svc: &Service,
    ) -> Result<(), DriverError> {
        if svc.desired_count() > 0 {
            match self
                .ecs
                .update_service()
                .cluster(cluster)
                .service(name)
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
            .cluster(cluster)
            .service(name)
            .force(true)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
            Err(e) => return Err(DriverError::aws("delete ECS service", id, &e)),
        }
        Ok(())
    }

    /// Removes every revision of a task definition family. Deregistered revisions stay
    /// (INACTIVE, still tagged) until deleted: deregister the active ones, then delete every
    /// revision of the family, ten per call.
    pub(super) async fn delete_task_definitions(
        &self,
        id: &ComponentId,
        family: &str,
    ) -> Result<(), DriverError> {
        for arn in self
            .revisions_of(id, family, TaskDefinitionStatus::Active)
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
            .revisions_of(id, family, TaskDefinitionStatus::Inactive)
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
        Ok(())
    }
}

pub(super) fn deployment_configuration() -> DeploymentConfiguration {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
