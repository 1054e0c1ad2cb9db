//! Stage **observe**: what AWS holds for a component, read into the same shapes
//! [`EcsDriver::render`] makes. [`EcsDriver::batch`] reads for many components at once what the
//! APIs answer for several per call; [`EcsDriver::seen_in`] reads one component, taking from the
//! batch what it has. Read-only.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ScalableTarget, ServiceNamespace};
use aws_sdk_cloudwatchlogs::types::LogGroup;
use aws_sdk_ecs::types::{AssignPublicIp, ServiceField};
use aws_sdk_elasticloadbalancingv2::types::{Rule, TargetGroup};
use panka_crds::Kind;

use super::fields::{part_of, unknown, Part, Values};
use super::lb::{elb_tag_maps, forwards_to};
use super::render::{ServiceShape, TaskShape};
use super::service::health_of;
use super::stack_refs::cluster_name;
use super::{EcsDriver, MISSING, TASK_FINGERPRINT};
use crate::aws::{self, AwsError};
use crate::driver::support::is_missing;
use crate::driver::{Applied, DriverError, Observe};
use panka_core::model::ComponentId;
use panka_core::plan::{Health, Observation, Unread};

/// What one [`crate::driver::Driver::observe_many`] read for many components at once. Each
/// reader takes its answer from here when the batch asked, and otherwise asks AWS itself: a
/// missing entry means "not asked", an entry of `None` means "asked, and AWS has none".
#[derive(Default)]
pub(super) struct Batch {
    /// Services by (cluster, name); `None` when not ACTIVE.
    pub(super) services: HashMap<(String, String), Option<aws_sdk_ecs::types::Service>>,
    /// The log groups under one prefix: (prefix, retention by group name).
    pub(super) log_groups: Option<(String, HashMap<String, Option<u32>>)>,
    /// Scalable targets by resource id.
    pub(super) scalable_targets: HashMap<String, Option<ScalableTarget>>,
    /// Target groups by ARN.
    pub(super) target_groups: HashMap<String, Option<TargetGroup>>,
    /// DNS names by load balancer ARN.
    pub(super) load_balancers: HashMap<String, Option<String>>,
    /// The HTTP listener by load balancer ARN.
    pub(super) listeners: HashMap<String, Option<String>>,
    /// Every rule by listener ARN.
    pub(super) rules: HashMap<String, Vec<Rule>>,
    /// Tags of target groups and listener rules, by ARN.
    pub(super) elb_tags: HashMap<String, BTreeMap<String, String>>,
}

/// DescribeServices takes at most this many services.
const SERVICES_PER_CALL: usize = 10;
/// DescribeScalableTargets takes at most this many resource ids.
const SCALABLE_TARGETS_PER_CALL: usize = 50;
/// DescribeTargetGroups / DescribeLoadBalancers: ARNs per call.
const ELB_ARNS_PER_CALL: usize = 20;

/// How many ECS service events `panka show` gets.
const RECENT_EVENTS: usize = 5;

/// The service as observed, with what update needs besides the fields.
pub(super) struct Seen {
    /// Recent service events, newest first.
    pub(super) events: Vec<String>,
    pub(super) arn: String,
    pub(super) task_arn: String,
    pub(super) task: TaskShape,
    pub(super) shape: ServiceShape,
    pub(super) target_group: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) url: Option<String>,
    pub(super) health: Health,
    pub(super) status: String,
    /// The recorded fingerprint of the running revision, when it was not described (`task`
    /// then holds only the log group).
    pub(super) deferred: Option<String>,
}

impl EcsDriver {
    /// Reads, for many components at once, what the APIs let one call answer for several:
    /// services ten at a time per cluster, the stack's log groups by their common prefix,
    /// scalable targets fifty at a time, target groups, load balancers, listeners and rules
    /// once each. Task definitions and scaling policies stay per component.
    pub(super) async fn batch(&self, items: &[Observe]) -> Result<Batch, DriverError> {
        let mut b = Batch::default();
        let Some((first, _)) = items.first() else {
            return Ok(b);
        };

        let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, recorded) in items {
            let cluster = recorded
                .as_ref()
                .and_then(|r| r.get("cluster").cloned())
                .unwrap_or_else(|| cluster_name(&self.ctx.naming, &self.ctx.infra));
            by_cluster
                .entry(cluster)
                .or_default()
                .push(self.service_name(id));
        }
        for (cluster, names) in &by_cluster {
            for chunk in names.chunks(SERVICES_PER_CALL) {
                let read = self
                    .ecs
                    .describe_services()
                    .cluster(cluster)
                    .set_services(Some(chunk.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await;
                let found = match read {
                    Ok(out) => out.services().to_vec(),
                    Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Vec::new(),
                    Err(e) => return Err(DriverError::aws("read ECS services", first, &e)),
                };
                for name in chunk {
                    // A deleted service lingers as DRAINING, then INACTIVE: both count as gone.
                    let active = found
                        .iter()
                        .find(|s| s.service_name() == Some(name) && s.status() == Some("ACTIVE"))
                        .cloned();
                    b.services.insert((cluster.clone(), name.clone()), active);
                }
            }
        }

        let prefix = self.ctx.naming.log_group_prefix();
        let read: Vec<LogGroup> = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&prefix)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DriverError::aws("read log groups", first, &e))?;
        let groups = read
            .iter()
            .filter_map(|g| {
                let retention = g.retention_in_days().and_then(|d| u32::try_from(d).ok());
                Some((g.log_group_name()?.to_string(), retention))
            })
            .collect();
        b.log_groups = Some((prefix, groups));

        let running: Vec<&aws_sdk_ecs::types::Service> = b.services.values().flatten().collect();
        let resource_ids: Vec<String> = b
            .services
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|((cluster, name), _)| format!("service/{cluster}/{name}"))
            .collect();
        for chunk in resource_ids.chunks(SCALABLE_TARGETS_PER_CALL) {
            let out = self
                .scaling
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .set_resource_ids(Some(chunk.to_vec()))
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| DriverError::aws("read scalable targets", first, &e))?;
            for rid in chunk {
                let target = out
                    .scalable_targets()
                    .iter()
                    .find(|t| t.resource_id() == rid)
                    .cloned();
                b.scalable_targets.insert(rid.clone(), target);
            }
        }

        let mut tg_arns: Vec<String> = running
            .iter()
            .flat_map(|s| s.load_balancers())
            .filter_map(|l| l.target_group_arn())
            .map(str::to_string)
            .collect();
        tg_arns.sort();
        tg_arns.dedup();
        for chunk in tg_arns.chunks(ELB_ARNS_PER_CALL) {
            // One ARN that is gone fails the whole call: leave those to the per-component read.
            let Ok(out) = self
                .elb
                .describe_target_groups()
                .set_target_group_arns(Some(chunk.to_vec()))
                .send()
                .await
            else {
                continue;
            };
            for arn in chunk {
                let tg = out
                    .target_groups()
                    .iter()
                    .find(|t| t.target_group_arn() == Some(arn))
                    .cloned();
                b.target_groups.insert(arn.clone(), tg);
            }
        }

        let mut lb_arns: Vec<String> = b
            .target_groups
            .values()
            .flatten()
            .filter_map(|t| t.load_balancer_arns().first().cloned())
            .collect();
        lb_arns.sort();
        lb_arns.dedup();
        for chunk in lb_arns.chunks(ELB_ARNS_PER_CALL) {
            let Ok(out) = self
                .elb
                .describe_load_balancers()
                .set_load_balancer_arns(Some(chunk.to_vec()))
                .send()
                .await
            else {
                continue;
            };
            for arn in chunk {
                let dns = out
                    .load_balancers()
                    .iter()
                    .find(|l| l.load_balancer_arn() == Some(arn))
                    .and_then(|l| l.dns_name())
                    .map(str::to_string);
                b.load_balancers.insert(arn.clone(), dns);
            }
        }
        for arn in &lb_arns {
            let listener = self.http_listener(first, arn).await?;
            if let Some(l) = &listener {
                b.rules.insert(l.clone(), self.rules(first, l).await?);
            }
            b.listeners.insert(arn.clone(), listener);
        }

        // The tags of every target group read and of the rule forwarding to it.
        let mut tagged: Vec<String> = Vec::new();
        for arn in b
            .target_groups
            .iter()
            .filter(|(_, tg)| tg.is_some())
            .map(|(arn, _)| arn)
        {
            tagged.push(arn.clone());
            let rule = b
                .rules
                .values()
                .flatten()
                .find(|r| forwards_to(r, arn))
                .and_then(|r| r.rule_arn());
            tagged.extend(rule.map(str::to_string));
        }
        tagged.sort();
        for chunk in tagged.chunks(ELB_ARNS_PER_CALL) {
            // One ARN that is gone fails the whole call: leave those to the per-component read.
            let Ok(out) = self
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
            else {
                continue;
            };
            b.elb_tags.extend(elb_tag_maps(&out));
        }
        Ok(b)
    }

    /// [`Driver::observe`], taking what `batch` already read; with `defer`, see
    /// [`EcsDriver::seen_in`].
    pub(super) async fn observe_in(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
        batch: &Batch,
        defer: bool,
    ) -> Result<Observation, DriverError> {
        let mut o = Observation::default();
        let Some((seen, tags)) = self.seen_in(id, recorded, batch, defer).await? else {
            o.status = "missing".into();
            return Ok(o);
        };
        o.exists = true;
        o.owned = self.ctx.naming.owns(Some(id), &tags);
        o.fields = Values::of(&seen.task, &seen.shape).into_fields();
        let applied = self.applied(id, &seen);
        if let Some(fingerprint) = &seen.deferred {
            // Fields of the task definition are filled in by `complete`.
            for (k, v) in &mut o.fields {
                if part_of(k) == Some(Part::Task) {
                    *v = unknown();
                }
            }
            o.unread = Some(Unread {
                reference: seen.task_arn.clone(),
                fingerprint: fingerprint.clone(),
            });
        }
        o.identifiers = applied.identifiers;
        o.outputs = applied.outputs;
        o.health = seen.health;
        o.status = seen.status;
        o.events = seen.events;
        Ok(o)
    }

    /// Reads everything; `None` when the service does not exist.
    pub(super) async fn seen(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<(Seen, BTreeMap<String, String>)>, DriverError> {
        self.seen_in(id, recorded, &Batch::default(), false).await
    }

    /// [`EcsDriver::seen`], taking what `batch` already read instead of asking again. With
    /// `defer`, a revision state recorded with a fingerprint is not described (see
    /// [`Seen::deferred`]).
    async fn seen_in(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
        batch: &Batch,
        defer: bool,
    ) -> Result<Option<(Seen, BTreeMap<String, String>)>, DriverError> {
        let cluster = recorded
            .and_then(|r| r.get("cluster").cloned())
            .unwrap_or_else(|| cluster_name(&self.ctx.naming, &self.ctx.infra));
        let name = self.service_name(id);
        let Some(svc) = self.describe_service(id, &cluster, &name, batch).await? else {
            return Ok(None);
        };
        let tags = aws::tag_map(svc.tags().iter().map(|t| (t.key(), t.value())));
        let task_arn = svc.task_definition().unwrap_or_default().to_string();
        let deferred = recorded
            .filter(|r| defer && r.get("taskDefinitionArn") == Some(&task_arn))
            .and_then(|r| r.get(TASK_FINGERPRINT).cloned())
            .filter(|_| self.recall(&task_arn).is_none());
        let task = match &deferred {
            Some(_) => TaskShape {
                log_group: recorded
                    .and_then(|r| r.get("logGroup").cloned())
                    .unwrap_or_else(|| self.ctx.naming.log_group(id)),
                ..TaskShape::default()
            },
            None => self.task_shape(id, &task_arn).await?,
        };
        let log_retention = self
            .log_retention(id, &self.ctx.naming.log_group(id), batch)
            .await?;
        let target_group = svc
            .load_balancers()
            .iter()
            .find_map(|l| l.target_group_arn())
            .map(str::to_string);
        let (load_balancer, rule, url) = match &target_group {
            Some(tg) => match self.observe_lb(id, tg, batch).await? {
                Some((shape, rule, url)) => (Some(shape), rule, url),
                None => (None, None, None),
            },
            None => (None, None, None),
        };
        let resource_id = format!("service/{cluster}/{name}");
        let autoscaling = self.observe_scaling(id, &resource_id, batch).await?;
        let vpc = svc
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration());
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let breaker = svc
            .deployment_configuration()
            .and_then(|d| d.deployment_circuit_breaker())
            .is_some_and(|b| b.enable() && b.rollback());
        let primary = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let health = health_of(
            primary.and_then(|d| d.rollout_state()).map(|r| r.as_str()),
            primary.and_then(|d| d.rollout_state_reason()),
            svc.desired_count(),
            svc.running_count(),
            svc.deployments().len(),
        );
        let shape = ServiceShape {
            cluster: cluster.clone(),
            desired_count: u32::try_from(svc.desired_count()).unwrap_or(0),
            subnets: Some(vpc.map(|v| sorted(v.subnets())).unwrap_or_default()),
            security_groups: Some(vpc.map(|v| sorted(v.security_groups())).unwrap_or_default()),
            assign_public_ip: vpc.and_then(|v| v.assign_public_ip())
                == Some(&AssignPublicIp::Enabled),
            circuit_breaker: breaker,
            tags: self.ctx.tag_policy().managed(&tags),
            load_balancer,
            autoscaling,
            log_retention,
        };
        let events = svc
            .events()
            .iter()
            .take(RECENT_EVENTS)
            .filter_map(|e| {
                let at = e.created_at().map(|t| t.to_string()).unwrap_or_default();
                e.message().map(|m| format!("{at} {m}").trim().to_string())
            })
            .collect();
        let seen = Seen {
            events,
            arn: svc.service_arn().unwrap_or_default().to_string(),
            task_arn,
            task,
            shape,
            target_group,
            rule,
            url,
            health,
            status: format!("{}/{} running", svc.running_count(), svc.desired_count()),
            deferred,
        };
        Ok(Some((seen, tags)))
    }

    pub(super) fn applied(&self, id: &ComponentId, s: &Seen) -> Applied {
        let name = self.service_name(id);
        let mut a = Applied::default();
        let ids = &mut a.identifiers;
        ids.insert("cluster".into(), s.shape.cluster.clone());
        ids.insert("service".into(), name.clone());
        ids.insert("serviceArn".into(), s.arn.clone());
        ids.insert("taskDefinitionArn".into(), s.task_arn.clone());
        ids.insert("family".into(), name.clone());
        ids.insert("logGroup".into(), s.task.log_group.clone());
        // Undescribed (deferred), the revision keeps the fingerprint state recorded for it.
        if let Some(fingerprint) = s.deferred.clone().or_else(|| s.task.fingerprint()) {
            ids.insert(TASK_FINGERPRINT.into(), fingerprint);
        }
        if let Some(tg) = &s.target_group {
            ids.insert("targetGroupArn".into(), tg.clone());
        }
        if let Some(r) = &s.rule {
            ids.insert("ruleArn".into(), r.clone());
        }
        if s.shape.autoscaling.is_some() {
            ids.insert(
                "scalableTarget".into(),
                format!("service/{}/{name}", s.shape.cluster),
            );
        }
        a.outputs.insert("name".into(), name);
        a.outputs.insert("arn".into(), s.arn.clone());
        a.outputs
            .insert("taskDefinitionArn".into(), s.task_arn.clone());
        a.outputs
            .insert("logGroup".into(), s.task.log_group.clone());
        if self.kind == Kind::MicroService {
            if let Some(url) = &s.url {
                a.outputs.insert("url".into(), url.clone());
            }
        }
        a
    }
}
