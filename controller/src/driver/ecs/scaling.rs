//! Stages **observe** and **apply** of a service's Application Auto Scaling: the scalable target
//! (min/max) and one target-tracking policy per metric (default: CPU at 70 %). The desired side
//! ([`scaling`]) is pure.

use std::collections::BTreeMap;

use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    TargetTrackingScalingPolicyConfiguration,
};
use panka_crds::spec::{ComponentInfraSpec, ScalingMetric};
use serde::Serialize;

use super::observe::Batch;
use super::stack_refs::alb_id;
use super::{build_error, EcsDriver, MISSING};
use crate::aws::AwsError;
use crate::driver::support::is_missing;
use crate::driver::{DriverError, Outputs};
use panka_core::model::ComponentId;

/// Target of the default target-tracking policy (CPU utilisation, percent).
const DEFAULT_CPU_TARGET: f64 = 70.0;

/// One target-tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PolicyShape {
    pub(super) metric: String,
    pub(super) target_value: f64,
}

/// Autoscaling of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScalingShape {
    pub(super) min_replicas: u32,
    pub(super) max_replicas: u32,
    pub(super) policies: Vec<PolicyShape>,
}

fn metric_name(m: ScalingMetric) -> &'static str {
    match m {
        ScalingMetric::CpuUtilization => "CPUUtilization",
        ScalingMetric::MemoryUtilization => "MemoryUtilization",
        ScalingMetric::AlbRequestCountPerTarget => "ALBRequestCountPerTarget",
    }
}

fn metric_type(metric: &str) -> MetricType {
    match metric {
        "MemoryUtilization" => MetricType::EcsServiceAverageMemoryUtilization,
        "ALBRequestCountPerTarget" => MetricType::AlbRequestCountPerTarget,
        _ => MetricType::EcsServiceAverageCpuUtilization,
    }
}

fn metric_of(t: &MetricType) -> Option<&'static str> {
    Some(match t {
        MetricType::EcsServiceAverageCpuUtilization => "CPUUtilization",
        MetricType::EcsServiceAverageMemoryUtilization => "MemoryUtilization",
        MetricType::AlbRequestCountPerTarget => "ALBRequestCountPerTarget",
        _ => return None,
    })
}

/// Desired task count and autoscaling from the effective infra.
pub(super) fn scaling(infra: Option<&ComponentInfraSpec>) -> (u32, Option<ScalingShape>) {
    let s = infra.and_then(|i| i.scaling.as_ref());
    let replicas = s.and_then(|s| s.replicas);
    let auto = s
        .and_then(|s| s.autoscaling.as_ref())
        .filter(|a| a.enabled.unwrap_or(false));
    let Some(a) = auto else {
        return (replicas.unwrap_or(1), None);
    };
    let min = a.min_replicas.or(replicas).unwrap_or(1);
    let max = a
        .max_replicas
        .unwrap_or(min.max(replicas.unwrap_or(1)))
        .max(min);
    let mut by_metric: BTreeMap<&'static str, f64> = a
        .policies
        .iter()
        .map(|p| (metric_name(p.metric), p.target_value))
        .collect();
    if by_metric.is_empty() {
        by_metric.insert("CPUUtilization", DEFAULT_CPU_TARGET);
    }
    let policies = by_metric
        .into_iter()
        .map(|(metric, target_value)| PolicyShape {
            metric: metric.to_string(),
            target_value,
        })
        .collect();
    let count = replicas.unwrap_or(min).clamp(min, max);
    (
        count,
        Some(ScalingShape {
            min_replicas: min,
            max_replicas: max,
            policies,
        }),
    )
}

impl EcsDriver {
    pub(super) async fn observe_scaling(
        &self,
        id: &ComponentId,
        resource_id: &str,
        batch: &Batch,
    ) -> Result<Option<ScalingShape>, DriverError> {
        let target = match batch.scalable_targets.get(resource_id) {
            Some(read) => read.clone(),
            None => self
                .scaling
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_ids(resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| DriverError::aws("read scalable target", id, &e))?
                .scalable_targets()
                .iter()
                .find(|t| t.resource_id() == resource_id)
                .cloned(),
        };
        let Some(t) = target else {
            return Ok(None);
        };
        let mut policies: Vec<PolicyShape> = self
            .policies(id, resource_id)
            .await?
            .iter()
            .filter_map(|p| {
                let c = p.target_tracking_scaling_policy_configuration()?;
                let metric = metric_of(
                    c.predefined_metric_specification()?
                        .predefined_metric_type(),
                )?;
                Some(PolicyShape {
                    metric: metric.to_string(),
                    target_value: c.target_value(),
                })
            })
            .collect();
        policies.sort_by(|a, b| a.metric.cmp(&b.metric));
        Ok(Some(ScalingShape {
            min_replicas: u32::try_from(t.min_capacity()).unwrap_or(0),
            max_replicas: u32::try_from(t.max_capacity()).unwrap_or(0),
            policies,
        }))
    }

    pub(super) async fn policies(
        &self,
        id: &ComponentId,
        resource_id: &str,
    ) -> Result<Vec<aws_sdk_applicationautoscaling::types::ScalingPolicy>, DriverError> {
        let out = self
            .scaling
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
            .map_err(|e| DriverError::aws("read scaling policies", id, &e))?;
        // Filter exactly: some implementations match the resource id as a substring.
        Ok(out
            .scaling_policies()
            .iter()
            .filter(|p| p.resource_id() == resource_id)
            .cloned()
            .collect())
    }

    /// Converges the scalable target and its policies to `want` (none: removes them).
    pub(super) async fn converge_scaling(
        &self,
        id: &ComponentId,
        resource_id: &str,
        want: Option<&ScalingShape>,
        have: Option<&ScalingShape>,
        label: Option<String>,
    ) -> Result<(), DriverError> {
        let name = self.service_name(id);
        let existing = if have.is_some() {
            self.policies(id, resource_id).await?
        } else {
            Vec::new()
        };
        let Some(want) = want else {
            for p in &existing {
                self.delete_policy(id, resource_id, p.policy_name()).await?;
            }
            if have.is_some() {
                self.deregister_target(id, resource_id).await?;
            }
            return Ok(());
        };
        if have.is_none_or(|h| {
            (h.min_replicas, h.max_replicas) != (want.min_replicas, want.max_replicas)
        }) {
            self.scaling
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .min_capacity(i32::try_from(want.min_replicas).unwrap_or(i32::MAX))
                .max_capacity(i32::try_from(want.max_replicas).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| DriverError::aws("register scalable target", id, &e))?;
        }
        let wanted: BTreeMap<String, &PolicyShape> = want
            .policies
            .iter()
            .map(|p| (policy_name(&name, &p.metric), p))
            .collect();
        for p in &existing {
            if !wanted.contains_key(p.policy_name()) {
                self.delete_policy(id, resource_id, p.policy_name()).await?;
            }
        }
        let have_policies: BTreeMap<&str, PolicyShape> = existing
            .iter()
            .filter_map(|p| {
                let c = p.target_tracking_scaling_policy_configuration()?;
                let metric = metric_of(
                    c.predefined_metric_specification()?
                        .predefined_metric_type(),
                )?;
                Some((
                    p.policy_name(),
                    PolicyShape {
                        metric: metric.to_string(),
                        target_value: c.target_value(),
                    },
                ))
            })
            .collect();
        for (policy, p) in wanted {
            if have_policies.get(policy.as_str()) == Some(p) {
                continue;
            }
            let metric = metric_type(&p.metric);
            let spec = PredefinedMetricSpecification::builder()
                .predefined_metric_type(metric.clone())
                .set_resource_label(if metric == MetricType::AlbRequestCountPerTarget {
                    label.clone()
                } else {
                    None
                })
                .build()
                .map_err(|e| build_error(id, e))?;
            self.scaling
                .put_scaling_policy()
                .policy_name(&policy)
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .policy_type(PolicyType::TargetTrackingScaling)
                .target_tracking_scaling_policy_configuration(
                    TargetTrackingScalingPolicyConfiguration::builder()
                        .target_value(p.target_value)
                        .predefined_metric_specification(spec)
                        .build()
                        .map_err(|e| build_error(id, e))?,
                )
                .send()
                .await
                .map_err(|e| DriverError::aws("put scaling policy", id, &e))?;
        }
        Ok(())
    }

    /// Removes the autoscaling of a service being deleted, if it has any: its policies, then its
    /// scalable target.
    pub(super) async fn remove_scaling(
        &self,
        id: &ComponentId,
        resource_id: &str,
    ) -> Result<(), DriverError> {
        if self
            .observe_scaling(id, resource_id, &Batch::default())
            .await?
            .is_some()
        {
            for p in self.policies(id, resource_id).await? {
                self.delete_policy(id, resource_id, p.policy_name()).await?;
            }
            self.deregister_target(id, resource_id).await?;
        }
        Ok(())
    }

    async fn delete_policy(
        &self,
        id: &ComponentId,
        resource_id: &str,
        policy: &str,
    ) -> Result<(), DriverError> {
        match self
            .scaling
            .delete_scaling_policy()
            .policy_name(policy)
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(()),
            Err(e) => Err(DriverError::aws("delete scaling policy", id, &e)),
        }
    }

    async fn deregister_target(
        &self,
        id: &ComponentId,
        resource_id: &str,
    ) -> Result<(), DriverError> {
        match self
            .scaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(()),
            Err(e) => Err(DriverError::aws("deregister scalable target", id, &e)),
        }
    }
}

/// `app/{lb}/{id}/targetgroup/{tg}/{id}`, what an `ALBRequestCountPerTarget` policy needs.
pub(super) fn resource_label(outputs: &Outputs, tg_arn: Option<&str>) -> Option<String> {
    let lb = outputs.get(&alb_id())?.get("arn")?;
    let lb = lb.split_once(":loadbalancer/")?.1;
    let tg = tg_arn?.rsplit_once(':')?.1;
    Some(format!("{lb}/{tg}"))
}

fn policy_name(service: &str, metric: &str) -> String {
    format!("{service}-{}", metric.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscaling_defaults_to_cpu_70_within_min_and_max() {
        use panka_crds::spec::{Autoscaling, Scaling};
        let infra = ComponentInfraSpec {
            scaling: Some(Scaling {
                replicas: Some(1),
                autoscaling: Some(Autoscaling {
                    enabled: Some(true),
                    min_replicas: Some(2),
                    max_replicas: Some(5),
                    policies: vec![],
                }),
            }),
            ..Default::default()
        };
        let (count, auto) = scaling(Some(&infra));
        assert_eq!(count, 2, "replicas are raised to the minimum");
        let auto = auto.expect("autoscaling");
        assert_eq!((auto.min_replicas, auto.max_replicas), (2, 5));
        assert_eq!(
            auto.policies,
            vec![PolicyShape {
                metric: "CPUUtilization".into(),
                target_value: 70.0
            }]
        );
        assert_eq!(scaling(None), (1, None));
    }
}
