//! The stack's application load balancer (`_stack/alb`) and its HTTP listener, when a
//! MicroService has `loadBalancer.enabled`: created in the network's subnets with its security
//! groups, internet-facing exactly when the stack's tasks get public IPs. Its scheme is fixed at
//! creation (a change replaces it); subnets, security groups and tags converge in place. Each
//! MicroService adds its own target group and listener rule (the ECS driver).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, ProtocolEnum,
};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};
use panka_core::stack::{alb_name, LoadBalancerSpec};
use panka_crds::Kind;

use super::{
    alb_id, elb_tags, listener_label, network_id, retag_elb, split_output, unexpected,
    LISTENER_PORT,
};
use crate::aws::{self, AwsError};
use crate::driver::support::{ensure_stack_ours, is_missing, missing, or_missing};
use crate::driver::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs,
};

/// The load balancer as found.
#[derive(Debug, Clone)]
struct Alb {
    arn: String,
    dns_name: String,
    scheme: String,
    subnets: BTreeSet<String>,
    security_groups: BTreeSet<String>,
    listener_arn: Option<String>,
    tags: BTreeMap<String, String>,
}

impl Alb {
    fn applied(&self) -> Applied {
        let listener = self.listener_arn.clone().unwrap_or_default();
        Applied {
            identifiers: BTreeMap::from([
                ("arn".to_string(), self.arn.clone()),
                ("listenerArn".to_string(), listener.clone()),
            ]),
            outputs: BTreeMap::from([
                ("arn".to_string(), self.arn.clone()),
                ("dnsName".to_string(), self.dns_name.clone()),
                ("listenerArn".to_string(), listener),
            ]),
        }
    }
}

/// The subnets and security groups the load balancer goes in: the network's.
struct Placement {
    subnets: Vec<String>,
    security_groups: Vec<String>,
}

/// Driver of the LoadBalancer kind.
#[derive(Debug)]
pub struct AlbDriver {
    ctx: Ctx,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

fn scheme(internet_facing: bool) -> LoadBalancerSchemeEnum {
    if internet_facing {
        LoadBalancerSchemeEnum::InternetFacing
    } else {
        LoadBalancerSchemeEnum::Internal
    }
}

fn spec_of(component: &DesiredComponent) -> Result<&LoadBalancerSpec, DriverError> {
    match &component.spec {
        ComponentSpec::LoadBalancer(s) => Ok(s),
        other => Err(unexpected(
            &component.id,
            format!("the LoadBalancer driver was given a {}", other.kind()),
        )),
    }
}

impl AlbDriver {
    /// A driver on `ctx`; its client counts calls in `ctx.calls`.
    pub fn new(ctx: &Ctx) -> AlbDriver {
        AlbDriver {
            ctx: ctx.clone(),
            elb: counted_client!(ctx, aws_sdk_elasticloadbalancingv2),
        }
    }

    /// The load balancer with its HTTP listener and tags, if it exists.
    async fn find(&self, id: &ComponentId, name: &str) -> Result<Option<Alb>, DriverError> {
        let out = match self.elb.describe_load_balancers().names(name).send().await {
            Ok(o) => o,
            Err(e) if is_missing(&AwsError::from_sdk(&e), &["LoadBalancerNotFound"]) => {
                return Ok(None)
            }
            Err(e) => return Err(DriverError::aws("read load balancer", id, &e)),
        };
        let Some(lb) = out
            .load_balancers()
            .iter()
            .find(|l| l.load_balancer_name() == Some(name))
        else {
            return Ok(None);
        };
        let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        let tags = aws::tag_map(
            self.elb
                .describe_tags()
                .resource_arns(&arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("read load balancer tags", id, &e))?
                .tag_descriptions()
                .iter()
                .filter(|d| d.resource_arn() == Some(arn.as_str()))
                .flat_map(|d| d.tags())
                .map(|t| (t.key(), t.value())),
        );
        let listeners: Vec<_> = self
            .elb
            .describe_listeners()
            .load_balancer_arn(&arn)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DriverError::aws("read load balancer listeners", id, &e))?;
        let listener_arn = listeners
            .iter()
            .find(|l| l.port() == Some(LISTENER_PORT))
            .and_then(|l| l.listener_arn())
            .map(str::to_string);
        Ok(Some(Alb {
            arn,
            dns_name: lb.dns_name().unwrap_or_default().to_string(),
            scheme: lb
                .scheme()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            subnets: lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id().map(str::to_string))
                .collect(),
            security_groups: lb.security_groups().iter().cloned().collect(),
            listener_arn,
            tags,
        }))
    }

    async fn create(
        &self,
        name: &str,
        scheme: LoadBalancerSchemeEnum,
        at: &Placement,
    ) -> Result<Alb, DriverError> {
        let id = alb_id();
        let tags = self.ctx.stack_tags();
        let out = self
            .elb
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(scheme.clone())
            .set_subnets(Some(at.subnets.clone()))
            .set_security_groups(Some(at.security_groups.clone()))
            .set_tags(Some(elb_tags(tags.iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("create load balancer", &id, &e))?;
        let lb = out
            .load_balancers()
            .first()
            .ok_or_else(|| unexpected(&id, format!("ELB returned no load balancer for {name}")))?;
        Ok(Alb {
            arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
            dns_name: lb.dns_name().unwrap_or_default().to_string(),
            scheme: scheme.as_str().to_string(),
            subnets: at.subnets.iter().cloned().collect(),
            security_groups: at.security_groups.iter().cloned().collect(),
            listener_arn: None,
            tags,
        })
    }

    /// The HTTP listener, answering 404 until a MicroService adds its rule.
    async fn create_listener(&self, alb: &Alb) -> Result<Option<String>, DriverError> {
        let out = self
            .elb
            .create_listener()
            .load_balancer_arn(&alb.arn)
            .protocol(ProtocolEnum::Http)
            .port(LISTENER_PORT)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::FixedResponse)
                    .fixed_response_config(
                        FixedResponseActionConfig::builder()
                            .status_code("404")
                            .content_type("text/plain")
                            .message_body("no route")
                            .build(),
                    )
                    .build(),
            )
            .set_tags(Some(elb_tags(self.ctx.stack_tags().iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("create load balancer listener", &alb_id(), &e))?;
        Ok(out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .map(str::to_string))
    }

    /// Subnets, security groups and tags of an existing load balancer.
    async fn converge_existing(&self, alb: &Alb, at: &Placement) -> Result<(), DriverError> {
        let id = alb_id();
        let subnets: BTreeSet<String> = at.subnets.iter().cloned().collect();
        if alb.subnets != subnets {
            self.elb
                .set_subnets()
                .load_balancer_arn(&alb.arn)
                .set_subnets(Some(at.subnets.clone()))
                .send()
                .await
                .map_err(|e| DriverError::aws("set load balancer subnets", &id, &e))?;
        }
        let groups: BTreeSet<String> = at.security_groups.iter().cloned().collect();
        if alb.security_groups != groups {
            self.elb
                .set_security_groups()
                .load_balancer_arn(&alb.arn)
                .set_security_groups(Some(at.security_groups.clone()))
                .send()
                .await
                .map_err(|e| DriverError::aws("set load balancer security groups", &id, &e))?;
        }
        let changes = self
            .ctx
            .tag_policy()
            .changes(&self.ctx.stack_tags(), &alb.tags);
        retag_elb(&self.elb, &id, &alb.arn, changes, "load balancer").await
    }
}

#[async_trait]
impl Driver for AlbDriver {
    fn kind(&self) -> Kind {
        Kind::LoadBalancer
    }

    fn desired(&self, component: &DesiredComponent, _: &Outputs, _: &Lookups) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Ok(spec) = spec_of(component) else {
            return f;
        };
        f.set_replace(
            "scheme",
            FieldValue::known(scheme(spec.internet_facing).as_str()),
            "a load balancer's scheme is fixed at creation",
        );
        f.set("listener", FieldValue::known(listener_label()));
        f.set("tags", self.ctx.tag_policy().field(&self.ctx.stack_tags()));
        f
    }

    async fn observe(
        &self,
        id: &ComponentId,
        _: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let Some(alb) = self.find(id, &alb_name(&self.ctx.naming)).await? else {
            return Ok(missing());
        };
        let mut o = Observation {
            exists: true,
            owned: self.ctx.naming.owns(None, &alb.tags),
            health: Health::Healthy,
            ..Observation::default()
        };
        o.fields
            .insert("scheme".into(), FieldValue::known(&alb.scheme));
        if alb.listener_arn.is_some() {
            o.fields
                .insert("listener".into(), FieldValue::known(listener_label()));
        }
        o.fields
            .insert("tags".into(), self.ctx.tag_policy().field(&alb.tags));
        let mut a = alb.applied();
        if alb.listener_arn.is_none() {
            a.identifiers.remove("listenerArn");
            a.outputs.remove("listenerArn");
        }
        o.identifiers = a.identifiers;
        o.outputs = a.outputs;
        o.status = alb.dns_name;
        Ok(o)
    }

    /// Creates the load balancer in the network's subnets, or converges ours; then its listener
    /// if it has none. One found with another scheme is refused: the plan replaces it.
    async fn converge(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        _: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = alb_id();
        let spec = spec_of(component)?;
        let net = outputs.get(&network_id()).ok_or_else(|| {
            unexpected(
                &id,
                format!("the outputs of {} are not known yet", network_id()),
            )
        })?;
        let at = Placement {
            subnets: split_output(net, "subnets"),
            security_groups: split_output(net, "securityGroups"),
        };
        let want = scheme(spec.internet_facing);
        let name = &spec.name;
        let mut alb = match self.find(&id, name).await? {
            Some(a) => {
                ensure_stack_ours(&self.ctx, &id, &a.tags, format!("load balancer {name}"))?;
                if a.scheme != want.as_str() {
                    return Err(unexpected(
                        &id,
                        format!(
                            "load balancer {name} is {} but the stack needs {}; it must be replaced",
                            a.scheme,
                            want.as_str()
                        ),
                    ));
                }
                self.converge_existing(&a, &at).await?;
                a
            }
            None => self.create(name, want, &at).await?,
        };
        if alb.listener_arn.is_none() {
            alb.listener_arn = self.create_listener(&alb).await?;
        }
        Ok(alb.applied())
    }

    /// Deletes the load balancer (with its listeners) if it is the one recorded and tagged as
    /// ours; one made by someone else is left to its owner.
    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let Some(alb) = self.find(id, &alb_name(&self.ctx.naming)).await? else {
            return Ok(Deletion::Done);
        };
        if recorded.get("arn").is_some_and(|a| *a != alb.arn)
            || !self.ctx.naming.owns(None, &alb.tags)
        {
            tracing::info!(load_balancer = %alb.arn, "keeping a load balancer panka does not own");
            return Ok(Deletion::Done);
        }
        or_missing(
            self.elb
                .delete_load_balancer()
                .load_balancer_arn(&alb.arn)
                .send()
                .await,
            &[],
            "delete load balancer",
            id,
        )?;
        Ok(Deletion::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_tasks_get_an_internet_facing_load_balancer() {
        assert_eq!(scheme(true), LoadBalancerSchemeEnum::InternetFacing);
        assert_eq!(scheme(false), LoadBalancerSchemeEnum::Internal);
    }
}
