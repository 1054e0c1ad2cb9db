//! A stack's health, component by component: what `status` observes (every kind's AWS status)
//! and, for each ECS service, what AWS says of its tasks, deployments and load balancer targets
//! (`DescribeServices`, `ListTasks` and `DescribeTasks`, `DescribeTargetHealth`). The checks are
//! [`panka_core::telemetry::health::checks`]'s.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{DesiredStatus, Task};
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::telemetry::health::{
    checks, healthy, Check, DeploymentReading, ServiceReading, StoppedTask, TargetReading,
};
use panka_crds::Kind;
use serde::Serialize;

use super::{Telemetry, TelemetryError};
use crate::aws::AwsError;
use crate::driver::support::is_missing;
use crate::driver::{counted_client, DriverError};
use crate::session::{Session, Target};

/// DescribeTasks takes at most this many tasks.
const TASKS_PER_CALL: usize = 100;

/// ECS codes for "no such cluster or service": the service is read as absent.
const MISSING: &[&str] = &["ClusterNotFoundException", "ServiceNotFoundException"];

/// One component's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentHealth {
    /// Which.
    pub component: ComponentId,
    /// Its kind.
    pub kind: &'static str,
    /// Its checks, in the order they are told.
    pub checks: Vec<Check>,
}

impl ComponentHealth {
    /// Whether every check passes.
    pub fn healthy(&self) -> bool {
        healthy(&self.checks)
    }
}

impl Session {
    /// The health of every component of `target` (or only `only`): what status observes, and
    /// for ECS services what AWS says of their tasks, deployments and targets. Read-only.
    pub async fn health(
        &self,
        target: &Target,
        desired: &DesiredStack,
        graph: &Graph,
        only: Option<&ComponentId>,
    ) -> Result<Vec<ComponentHealth>, TelemetryError> {
        let summary = self.status(target, desired, graph).await?;
        let telemetry = self.telemetry();
        let mut out = Vec::new();
        for c in summary
            .components
            .iter()
            .filter(|c| only.is_none_or(|id| c.id == *id))
        {
            let container = [Kind::MicroService.name(), Kind::Worker.name()].contains(&c.kind);
            let reading = match (container, c.observed.exists) {
                (true, true) => {
                    telemetry
                        .service_reading(&c.id, &c.observed.identifiers)
                        .await?
                }
                _ => None,
            };
            out.push(ComponentHealth {
                component: c.id.clone(),
                kind: c.kind,
                checks: checks(&c.observed, reading.as_ref()),
            });
        }
        Ok(out)
    }
}

impl Telemetry {
    /// What AWS says of the ECS service `identifiers` name (`cluster`, `service`, and
    /// `targetGroupArn` behind the load balancer); `None` when the service is gone.
    pub async fn service_reading(
        &self,
        id: &ComponentId,
        identifiers: &BTreeMap<String, String>,
    ) -> Result<Option<ServiceReading>, TelemetryError> {
        let (Some(cluster), Some(name)) = (identifiers.get("cluster"), identifiers.get("service"))
        else {
            // Observe names both for every service it found: without them there is none to read.
            return Ok(None);
        };
        let ecs = counted_client!(self, aws_sdk_ecs);
        let read = ecs
            .describe_services()
            .cluster(cluster)
            .services(name)
            .send()
            .await;
        let service = match read {
            Ok(out) => out
                .services()
                .iter()
                .find(|s| s.status() == Some("ACTIVE"))
                .cloned(),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => None,
            Err(e) => return Err(DriverError::aws("read the ECS service of", id, &e).into()),
        };
        let Some(service) = service else {
            // Deleted since status observed it: the checks fall back to what status saw.
            return Ok(None);
        };
        let mut deployments: Vec<DeploymentReading> = service
            .deployments()
            .iter()
            .map(|d| DeploymentReading {
                status: d.status().unwrap_or_default().to_owned(),
                rollout: d.rollout_state().map(|r| r.as_str().to_owned()),
                reason: d.rollout_state_reason().map(str::to_owned),
            })
            .collect();
        // The primary (newest) deployment first.
        deployments.sort_by_key(|d| d.status != "PRIMARY");

        let targets = match identifiers.get("targetGroupArn") {
            Some(arn) => Some(self.targets(id, arn).await?),
            None => None,
        };

        let running = self
            .tasks(id, cluster, name, DesiredStatus::Running)
            .await?;
        let stopped = self
            .tasks(id, cluster, name, DesiredStatus::Stopped)
            .await?;
        Ok(Some(ServiceReading {
            desired: service.desired_count(),
            running: service.running_count(),
            pending: service.pending_count(),
            deployments,
            targets,
            liveness: running
                .iter()
                .map(|t| (task_id(t), task_health(t)))
                .collect(),
            stopped: stopped.iter().map(stopped_task).collect(),
        }))
    }

    /// The target group's registered targets and their health.
    async fn targets(
        &self,
        id: &ComponentId,
        target_group: &str,
    ) -> Result<Vec<TargetReading>, TelemetryError> {
        let elb = counted_client!(self, aws_sdk_elasticloadbalancingv2);
        let out = elb
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| DriverError::aws("read the target health of", id, &e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| {
                let target = d.target();
                let health = d.target_health();
                TargetReading {
                    target: match (target.and_then(|t| t.id()), target.and_then(|t| t.port())) {
                        (Some(host), Some(port)) => format!("{host}:{port}"),
                        (Some(host), None) => host.to_owned(),
                        (None, _) => "-".to_owned(),
                    },
                    state: health
                        .and_then(|h| h.state())
                        .map_or("unknown", |s| s.as_str())
                        .to_owned(),
                    reason: health
                        .and_then(|h| h.reason())
                        .map(|r| r.as_str().to_owned()),
                    description: health.and_then(|h| h.description()).map(str::to_owned),
                }
            })
            .collect())
    }

    /// The service's tasks that ECS wants in `status` (running, or stopped: listed for about
    /// an hour after they stop), described.
    async fn tasks(
        &self,
        id: &ComponentId,
        cluster: &str,
        service: &str,
        status: DesiredStatus,
    ) -> Result<Vec<Task>, TelemetryError> {
        let ecs = counted_client!(self, aws_sdk_ecs);
        let arns: Vec<String> = ecs
            .list_tasks()
            .cluster(cluster)
            .service_name(service)
            .desired_status(status)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DriverError::aws("list the tasks of", id, &e))?;
        let mut tasks = Vec::new();
        for chunk in arns.chunks(TASKS_PER_CALL) {
            let out = ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| DriverError::aws("read the tasks of", id, &e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }
}

/// A task's id: the last segment of its ARN.
fn task_id(t: &Task) -> String {
    let arn = t.task_arn().unwrap_or_default();
    arn.rsplit_once('/').map_or(arn, |(_, id)| id).to_owned()
}

/// A task's container health: as ECS sums it up for the task, or else from its containers
/// (unhealthy if any is, healthy if all are).
fn task_health(t: &Task) -> String {
    if let Some(h) = t.health_status() {
        return h.as_str().to_owned();
    }
    let states: Vec<&str> = t
        .containers()
        .iter()
        .filter_map(|c| c.health_status())
        .map(|h| h.as_str())
        .collect();
    if states.contains(&"UNHEALTHY") {
        "UNHEALTHY".into()
    } else if !states.is_empty() && states.iter().all(|s| *s == "HEALTHY") {
        "HEALTHY".into()
    } else {
        "UNKNOWN".into()
    }
}

fn stopped_task(t: &Task) -> StoppedTask {
    StoppedTask {
        task: task_id(t),
        reason: t.stopped_reason().map(str::to_owned),
        stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
        exit_code: t.containers().iter().find_map(|c| c.exit_code()),
        stopped_at: t
            .stopped_at()
            .and_then(|at| jiff::Timestamp::from_second(at.secs()).ok()),
    }
}
