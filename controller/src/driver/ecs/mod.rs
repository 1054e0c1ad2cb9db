//! ECS driver for MicroService and Worker: one [`EcsDriver`] parameterised by kind.
//!
//! Stages **observe** and **apply** of a container component. A component becomes:
//!
//! * a CloudWatch Logs group `naming.log_group(id)` with the stack's `logging.retentionDays`;
//! * a Fargate task definition, family `{stack}-{env}-{service}-{component}`, with one container
//!   (named after the component): image `repository:tag` or `repository@digest`, `command` as the
//!   entry point and `args` as the command, port mappings, environment (literal values and
//!   `valueFrom` outputs of other components), secrets as Secrets Manager references (the full
//!   ARN of `secretRef`, looked up with DescribeSecret before planning when it is a name, plus
//!   `:key::` when a JSON key is given; values are never read; a missing secret is refused
//!   before any change), awslogs logging, and a
//!   container health check from `healthCheck.liveness` (a command as given; http as
//!   `curl -fsS`, tcp as `nc -z`, both through `CMD-SHELL`);
//! * an ECS service of the same name in the stack's cluster (`_stack/cluster`), on the stack's
//!   subnets and security groups (`_stack/network`), with the deployment circuit breaker and
//!   rollback on, tags propagated from the service to its tasks;
//! * for a MicroService with `loadBalancer.enabled`: an `ip` target group and a listener rule on
//!   the stack's load balancer (`_stack/alb`), path `loadBalancer.path` or `/{service}/{component}/*`;
//! * with `autoscaling.enabled`: an Application Auto Scaling target (min/max) and one
//!   target-tracking policy per metric (default: CPU at 70 %); the task count then belongs to the
//!   autoscaler and is not compared.
//!
//! **Config files** are delivered through the environment, because Fargate cannot mount inline
//! content: each file becomes `PANKA_CONFIG_<NAME>` (the file name upper-cased, every other
//! character `_`; `app.yaml` → `PANKA_CONFIG_APP_YAML`) holding its base64 content, plus
//! `PANKA_CONFIG_DIR` (the `mountPath`) and `PANKA_CONFIG_FILES` (`file=VARIABLE,…`), so an entry
//! point can write them out. The docker label `PANKA_CONFIG_HASH` is the SHA-256 of the whole
//! resolved environment (config contents included): any change of a config file or of a
//! resolved value yields a new task definition revision, and the plan shows it as `configHash`.
//!
//! The task execution role (image pulls, awslogs, secrets) is taken from the outputs of
//! `_stack/execution-role` when the engine has them (`arn`); without one, AWS refuses awslogs
//! and secrets on Fargate; every container component runs on it (see `panka_core::stack`).
//!
//! A new revision is registered only when the rendered definition differs from the one the
//! service runs. Task definitions are immutable, so what a revision holds is cached by ARN and
//! described only when the service points at a revision this driver has not seen yet; and state
//! records a fingerprint of the revision applied (`taskDefinitionFingerprint`), so a plan in a
//! new process describes the running revision only when it is not the recorded one or the
//! desired render differs from it ([`Driver::complete`]).
//!
//! The module is split by what it manages: [`render`] (the pure task definition and service
//! shapes), [`fields`] (what a plan compares, typed, and which part of the component each field
//! belongs to), [`observe`] (batched reads), [`service`] (the ECS service and its task
//! definitions), [`lb`] (target group and listener rule), [`scaling`] (Application Auto
//! Scaling) and [`logs`] (the log group). This file holds the driver and orders its calls.

mod fields;
mod lb;
mod logs;
mod observe;
mod render;
mod scaling;
mod service;

/// The stack-wide resources and helpers this driver refers to, imported here only: every
/// submodule takes them from `super::stack_refs`.
mod stack_refs {
    pub(super) use super::super::stack::{
        alb_id, cluster_id, cluster_name, ecs_tags, elb_tags, execution_role_id, network_id,
        retag_ecs, retag_elb, stack_assigns_public_ip, LISTENER_PORT,
    };
}

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use panka_crds::Kind;

use self::fields::{part_of, task_fields, Part, Values};
use self::observe::{Batch, Seen};
use self::render::{workload, Render, TaskShape};
use self::scaling::resource_label;
use self::service::deployment_configuration;
use self::stack_refs::{cluster_id, cluster_name, network_id};
use super::support::{ensure_ours, is_missing};
use super::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Observe, Outputs,
};
use crate::aws::{self, AwsError};
use panka_core::model::{ComponentId, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{Change, DesiredFields, FieldDiff, Health, Observation};

/// Codes of ECS, ELB, Application Auto Scaling and CloudWatch Logs for "no such resource".
const MISSING: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "TargetGroupNotFound",
    "RuleNotFound",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "ObjectNotFoundException",
];

/// Identifier recording [`TaskShape::fingerprint`] of the revision a service was last applied
/// with: a plan needs not describe that revision again while the desired one has the same.
const TASK_FINGERPRINT: &str = "taskDefinitionFingerprint";

/// The ECS driver, for [`Kind::MicroService`] or [`Kind::Worker`].
pub struct EcsDriver {
    kind: Kind,
    ctx: Ctx,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    scaling: aws_sdk_applicationautoscaling::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    /// Task definitions already described in this run, by ARN (revisions are immutable). The
    /// driver lives as long as one run, so this never outlives it.
    revisions: Mutex<HashMap<String, TaskShape>>,
}

impl EcsDriver {
    /// The MicroService driver.
    pub fn microservice(ctx: &Ctx) -> EcsDriver {
        EcsDriver::new(ctx, Kind::MicroService)
    }

    /// The Worker driver.
    pub fn worker(ctx: &Ctx) -> EcsDriver {
        EcsDriver::new(ctx, Kind::Worker)
    }

    fn new(ctx: &Ctx, kind: Kind) -> EcsDriver {
        EcsDriver {
            kind,
            ctx: ctx.clone(),
            ecs: counted_client!(ctx, aws_sdk_ecs),
            elb: counted_client!(ctx, aws_sdk_elasticloadbalancingv2),
            scaling: counted_client!(ctx, aws_sdk_applicationautoscaling),
            secrets: counted_client!(ctx, aws_sdk_secretsmanager),
            logs: counted_client!(ctx, aws_sdk_cloudwatchlogs),
            revisions: Mutex::new(HashMap::new()),
        }
    }

    fn region(&self) -> String {
        self.ctx
            .sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Service name and task definition family.
    fn service_name(&self, id: &ComponentId) -> String {
        self.ctx.naming.component(id, None, NameRules::LONG)
    }

    /// Finds the full ARN of every secret `component` references by name (ECS wants ARNs, and
    /// the random suffix Secrets Manager adds cannot be guessed). DescribeSecret reads no value.
    async fn resolve_secrets(
        &self,
        component: &DesiredComponent,
        found: &mut BTreeMap<String, String>,
        missing: &mut Vec<DriverError>,
    ) -> Result<(), DriverError> {
        let Some(w) = workload(component) else {
            return Ok(());
        };
        for s in w.secrets {
            let name = s.secret_ref.trim();
            if name.starts_with("arn:") || found.contains_key(name) {
                continue;
            }
            let arn = match self.secrets.describe_secret().secret_id(name).send().await {
                Ok(out) => out.arn().map(str::to_string),
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => None,
                Err(e) => return Err(DriverError::aws("look up secret", &component.id, &e)),
            };
            let Some(arn) = arn else {
                missing.push(DriverError::MissingSecret {
                    file: component.source.clone(),
                    component: component.id.clone(),
                    secret: name.to_string(),
                    field: format!("secrets[{}].secretRef", s.name),
                });
                continue;
            };
            found.insert(name.to_string(), arn);
        }
        Ok(())
    }

    fn remember(&self, arn: &str, task: &TaskShape) {
        if let Ok(mut revisions) = self.revisions.lock() {
            revisions.insert(arn.to_string(), task.clone());
        }
    }

    fn recall(&self, arn: &str) -> Option<TaskShape> {
        self.revisions.lock().ok().and_then(|r| r.get(arn).cloned())
    }

    /// Creates everything for a component whose service does not exist (parts left by an
    /// interrupted apply are taken over when they are ours).
    async fn create_fresh(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        let r = self.known_render(component, outputs, lookups)?;
        let cluster = required(outputs, id, &cluster_id(), "name")?;
        let mut shape = r.service.clone();
        shape.cluster = cluster.clone();
        let retention = shape.log_retention.flatten();
        let created = self
            .ensure_log_group(id, &r.task.log_group, retention, None)
            .await?;
        if !created {
            // Left by an interrupted apply (or someone else's): ours to tag, or refused.
            self.converge_log_group_tags(id, &r.task.log_group).await?;
        }
        let (target_group, rule, url) = match &shape.load_balancer {
            Some(lb) => {
                let (tg, rule) = self.ensure_lb(id, lb, outputs).await?;
                (Some(tg), Some(rule), Self::url(lb, outputs))
            }
            None => (None, None, None),
        };
        let task_arn = self.register(id, &r.task).await?;
        let arn = self
            .create_service(
                id,
                &cluster,
                &r.service_name,
                &task_arn,
                &shape,
                target_group.as_deref(),
            )
            .await?;
        let resource_id = format!("service/{cluster}/{}", r.service_name);
        let label = resource_label(outputs, target_group.as_deref());
        self.converge_scaling(id, &resource_id, shape.autoscaling.as_ref(), None, label)
            .await?;
        let seen = Seen {
            events: Vec::new(),
            arn,
            task_arn,
            task: r.task,
            shape,
            target_group,
            rule,
            url,
            health: Health::Progressing,
            status: String::new(),
            deferred: None,
        };
        Ok(self.applied(id, &seen))
    }

    /// The render of a component, refusing values not known yet.
    fn known_render(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Render, DriverError> {
        let id = &component.id;
        let r =
            self.render(component, outputs, lookups)
                .ok_or_else(|| DriverError::Unexpected {
                    component: id.clone(),
                    message: format!("the {} driver was given a {}", self.kind, component.kind()),
                })?;
        let unknown: Vec<&String> = r
            .task
            .environment
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        if !unknown.is_empty() {
            return Err(DriverError::Unexpected {
                component: id.clone(),
                message: format!(
                    "environment {} depends on outputs not known yet; apply the components it references first",
                    unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if r.service.subnets.is_none() || r.service.security_groups.is_none() {
            return Err(DriverError::Unexpected {
                component: id.clone(),
                message: format!(
                    "the outputs of {} are not known; the stack-wide resources it runs on were not applied before it",
                    network_id()
                ),
            });
        }
        Ok(r)
    }

    /// Changes what `diffs` names, part by part, on an existing service.
    async fn converge_diffs(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        diffs: &[FieldDiff],
        seen: Seen,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        let r = self.known_render(component, outputs, lookups)?;
        let touched = |part: Part| diffs.iter().any(|d| part_of(&d.field) == Some(part));
        let want = &r.service;
        let mut now = seen;
        let cluster = now.shape.cluster.clone();
        let name = r.service_name.clone();

        let created = if touched(Part::Log) {
            let created = self
                .ensure_log_group(
                    id,
                    &r.task.log_group,
                    want.log_retention.flatten(),
                    now.shape.log_retention,
                )
                .await?;
            now.shape.log_retention = want.log_retention;
            created
        } else {
            false
        };
        if !created {
            self.converge_log_group_tags(id, &r.task.log_group).await?;
        }

        let mut attach_changed = false;
        let mut detach: Option<(Option<String>, Option<String>)> = None;
        if touched(Part::LoadBalancer) {
            match &want.load_balancer {
                Some(lb) => {
                    let (tg, rule) = self.ensure_lb(id, lb, outputs).await?;
                    attach_changed = now.target_group.as_deref() != Some(tg.as_str());
                    now.target_group = Some(tg);
                    now.rule = Some(rule);
                    now.url = Self::url(lb, outputs);
                }
                None => {
                    attach_changed = now.target_group.is_some();
                    detach = Some((now.rule.take(), now.target_group.take()));
                    now.url = None;
                }
            }
            now.shape.load_balancer = want.load_balancer.clone();
        }

        let mut new_task = None;
        let task = keep_unlisted_variables(&r.task, &now.task, diffs);
        if touched(Part::Task) && now.task != task {
            let arn = self.register(id, &task).await?;
            now.task_arn = arn.clone();
            now.task = task;
            new_task = Some(arn);
        }

        // Only a count the plan lists changes: one a `drift.ignore` rule expects stays.
        let autoscaled = want.autoscaling.is_some();
        let count_listed = diffs.iter().any(|d| d.field == "desiredCount");
        let count_changed =
            !autoscaled && count_listed && now.shape.desired_count != want.desired_count;
        let network_changed = now.shape.subnets != want.subnets
            || now.shape.security_groups != want.security_groups
            || now.shape.assign_public_ip != want.assign_public_ip;
        let breaker_changed = now.shape.circuit_breaker != want.circuit_breaker;
        if new_task.is_some()
            || count_changed
            || (touched(Part::Service) && (network_changed || breaker_changed))
            || attach_changed
        {
            let mut req = self
                .ecs
                .update_service()
                .cluster(&cluster)
                .service(&name)
                .set_task_definition(new_task.clone());
            if count_changed {
                req = req.desired_count(i32::try_from(want.desired_count).unwrap_or(i32::MAX));
                now.shape.desired_count = want.desired_count;
            }
            if network_changed {
                req = req.network_configuration(self.network(id, want)?);
            }
            if breaker_changed {
                req = req.deployment_configuration(deployment_configuration());
            }
            if attach_changed {
                req = req.set_load_balancers(Some(self.ecs_load_balancers(
                    id,
                    want.load_balancer.as_ref(),
                    now.target_group.as_deref(),
                )));
            }
            req.send()
                .await
                .map_err(|e| DriverError::aws("update ECS service", id, &e))?;
        }
        if touched(Part::Service) && now.shape.tags != want.tags {
            // Both are the tags panka manages: what differs is set, what it did not set goes.
            let changes = self.ctx.tag_policy().changes(&want.tags, &now.shape.tags);
            self.retag_ecs(id, &now.arn, changes).await?;
            now.shape.tags = want.tags.clone();
        }
        if let Some((rule, tg)) = detach {
            self.delete_lb(id, rule.as_deref(), tg.as_deref()).await?;
        }
        if touched(Part::Scaling) {
            let resource_id = format!("service/{cluster}/{name}");
            let label = resource_label(outputs, now.target_group.as_deref());
            self.converge_scaling(
                id,
                &resource_id,
                want.autoscaling.as_ref(),
                now.shape.autoscaling.as_ref(),
                label,
            )
            .await?;
            now.shape.autoscaling = want.autoscaling.clone();
        }
        Ok(self.applied(id, &now))
    }
}

fn required(
    outputs: &Outputs,
    id: &ComponentId,
    from: &ComponentId,
    key: &str,
) -> Result<String, DriverError> {
    outputs
        .get(from)
        .and_then(|o| o.get(key))
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| DriverError::Unexpected {
            component: id.clone(),
            message: format!(
                "output {key} of {from} is not known; the stack-wide resources it runs on were not applied before it"
            ),
        })
}

fn build_error(id: &ComponentId, e: impl std::fmt::Display) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: format!("failed to build a request: {e}"),
    }
}

fn is_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>, code: &str) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some(code)
}

#[async_trait]
impl Driver for EcsDriver {
    fn kind(&self) -> Kind {
        self.kind
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        // `create` already takes over an existing service of ours and changes what differs.
        self.create(component, outputs, lookups).await
    }

    fn desired(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Some(r) = self.render(component, outputs, lookups) else {
            return f;
        };
        f.fields = Values::of(&r.task, &r.service).into_fields();
        f.rules.insert(
            "cluster".into(),
            Change::Replace("an ECS service cannot move to another cluster".into()),
        );
        f.rules.insert(
            "loadBalancer.port".into(),
            Change::Replace("a target group's port is fixed at creation".into()),
        );
        if r.service.autoscaling.is_some() {
            // The autoscaler owns the task count.
            f.rules.insert("desiredCount".into(), Change::Ignore);
        }
        f
    }

    async fn observe(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        self.observe_in(id, recorded, &Batch::default(), false)
            .await
    }

    async fn complete(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        mut observed: Observation,
    ) -> Result<Observation, DriverError> {
        let Some(unread) = observed.unread.take() else {
            return Ok(observed);
        };
        // The revision running is the one recorded: when the desired render has the recorded
        // fingerprint, it is what that revision holds (revisions are immutable); otherwise read
        // it, to show what changes.
        let task = match self.render(component, outputs, lookups) {
            Some(r) if r.task.fingerprint().as_deref() == Some(unread.fingerprint.as_str()) => {
                r.task
            }
            _ => self.task_shape(&component.id, &unread.reference).await?,
        };
        self.remember(&unread.reference, &task);
        observed
            .fields
            .retain(|k, _| part_of(k) != Some(Part::Task));
        observed.fields.extend(task_fields(&task));
        Ok(observed)
    }

    async fn look_up(&self, components: &[&DesiredComponent]) -> Result<Lookups, DriverError> {
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for c in components {
            self.resolve_secrets(c, &mut found, &mut missing).await?;
        }
        match DriverError::missing_secrets(missing) {
            Some(e) => Err(e),
            None => Ok(Lookups::from_values(found)),
        }
    }

    async fn observe_many(
        &self,
        items: &[Observe],
        concurrency: usize,
    ) -> Result<Vec<Observation>, DriverError> {
        let batch = self.batch(items).await?;
        let reads: Vec<_> = items
            .iter()
            .map(|(id, recorded)| self.observe_in(id, recorded.as_ref(), &batch, true))
            .collect();
        stream::iter(reads)
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    async fn create(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        match self.seen(id, None).await? {
            None => self.create_fresh(component, outputs, lookups).await,
            // Already there (an earlier apply was interrupted): converge it if it is ours.
            Some((seen, tags)) => {
                let what = format!("ECS service {}", self.service_name(id));
                ensure_ours(&self.ctx, id, &tags, what)?;
                let desired = self.desired(component, outputs, lookups);
                let observed = Observation {
                    fields: Values::of(&seen.task, &seen.shape).into_fields(),
                    ..Default::default()
                };
                let diffs = panka_core::plan::diff(&desired, &observed);
                self.converge_diffs(component, outputs, lookups, &diffs, seen)
                    .await
            }
        }
    }

    async fn update(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        diffs: &[FieldDiff],
        observed: &Observation,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        // The observation carries fields, not the SDK objects: read again what converging needs
        // (task definitions come from the cache, so this is a few Describe calls).
        let Some((seen, tags)) = self.seen(id, Some(&observed.identifiers)).await? else {
            return self.create_fresh(component, outputs, lookups).await;
        };
        let what = format!("ECS service {}", self.service_name(id));
        ensure_ours(&self.ctx, id, &tags, what)?;
        self.converge_diffs(component, outputs, lookups, diffs, seen)
            .await
    }

    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let name = recorded
            .get("service")
            .cloned()
            .unwrap_or_else(|| self.service_name(id));
        let cluster = recorded
            .get("cluster")
            .cloned()
            .unwrap_or_else(|| cluster_name(&self.ctx.naming, &self.ctx.infra));
        let resource_id = format!("service/{cluster}/{name}");

        // Before anything is touched: a service of that name must be ours.
        let svc = self
            .describe_service(id, &cluster, &name, &Batch::default())
            .await?;
        if let Some(svc) = &svc {
            let tags = aws::tag_map(svc.tags().iter().map(|t| (t.key(), t.value())));
            ensure_ours(&self.ctx, id, &tags, format!("ECS service {name}"))?;
        }

        // The autoscaler first, or it could scale the service back up while it drains.
        self.remove_scaling(id, &resource_id).await?;

        let mut target_group = recorded.get("targetGroupArn").cloned();
        if let Some(svc) = &svc {
            target_group = target_group.or_else(|| {
                svc.load_balancers()
                    .iter()
                    .find_map(|l| l.target_group_arn())
                    .map(str::to_string)
            });
            self.delete_service(id, &cluster, &name, svc).await?;
        }

        let mut rule = recorded.get("ruleArn").cloned();
        if let (None, Some(tg)) = (&rule, &target_group) {
            // Not recorded: find it through the target group's load balancer.
            rule = self
                .observe_lb(id, tg, &Batch::default())
                .await?
                .and_then(|(_, r, _)| r);
        }
        self.delete_lb(id, rule.as_deref(), target_group.as_deref())
            .await?;

        let family = recorded.get("family").cloned().unwrap_or(name);
        self.delete_task_definitions(id, &family).await?;

        let log_group = recorded
            .get("logGroup")
            .cloned()
            .unwrap_or_else(|| self.ctx.naming.log_group(id));
        self.delete_log_group(id, &log_group).await?;
        Ok(Deletion::Done)
    }
}

/// The task definition to register: `desired`, but every plain variable whose difference the
/// plan does not list (a `drift.ignore` rule expects it) keeps the value AWS holds (`seen`), so
/// a new revision registered for another change does not reset it.
fn keep_unlisted_variables(
    desired: &render::TaskShape,
    seen: &render::TaskShape,
    diffs: &[FieldDiff],
) -> render::TaskShape {
    let mut task = desired.clone();
    for (name, value) in &mut task.environment {
        let listed = diffs
            .iter()
            .any(|d| d.field.strip_prefix("environment.") == Some(name.as_str()));
        if name.starts_with(render::CONFIG_PREFIX) || listed {
            continue;
        }
        if let Some(Some(kept)) = seen.environment.get(name) {
            *value = Some(kept.clone());
        }
    }
    task
}
