//! The stack's network (`_stack/network`): a read-only lookup of the VPC, its subnets and
//! security groups, as StackInfra `networking` selects them (see [`super`]). It creates,
//! changes and deletes nothing; its outputs feed the services, databases and load balancer.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};
use panka_core::stack::NetworkSpec;
use panka_crds::Kind;

use super::{ec2_error, filter, network_id, unexpected};
use crate::driver::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs,
};

/// The network as looked up.
#[derive(Debug, Clone, PartialEq, Default)]
struct Network {
    vpc_id: String,
    subnets: Vec<String>,
    security_groups: Vec<String>,
}

impl Network {
    fn outputs(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("vpcId".to_string(), self.vpc_id.clone()),
            ("subnets".to_string(), self.subnets.join(",")),
            ("securityGroups".to_string(), self.security_groups.join(",")),
        ])
    }

    fn applied(&self) -> Applied {
        Applied {
            identifiers: BTreeMap::from([("vpcId".to_string(), self.vpc_id.clone())]),
            outputs: self.outputs(),
        }
    }
}

/// Driver of the Network kind.
#[derive(Debug)]
pub struct NetworkDriver {
    ctx: Ctx,
    ec2: aws_sdk_ec2::Client,
}

impl NetworkDriver {
    /// A driver on `ctx`; its client counts calls in `ctx.calls`.
    pub fn new(ctx: &Ctx) -> NetworkDriver {
        NetworkDriver {
            ctx: ctx.clone(),
            ec2: counted_client!(ctx, aws_sdk_ec2),
        }
    }

    async fn look_up_network(&self, net: &NetworkSpec) -> Result<Network, DriverError> {
        let id = network_id();
        let mut found = Network::default();
        if !net.subnets.is_empty() {
            let subnets: Vec<_> = self
                .ec2
                .describe_subnets()
                .set_subnet_ids(Some(net.subnets.clone()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| ec2_error("look up subnets", &id, &e))?;
            let mut vpcs = BTreeSet::new();
            for s in &subnets {
                found.subnets.extend(s.subnet_id().map(str::to_string));
                vpcs.extend(s.vpc_id().map(str::to_string));
            }
            found.vpc_id = match (&net.vpc, vpcs.len()) {
                (Some(v), _) => v.clone(),
                (None, 1) => vpcs.into_iter().next().unwrap_or_default(),
                (None, _) => {
                    return Err(unexpected(
                        &id,
                        "the stack's subnets are in different VPCs; set networking.vpc",
                    ))
                }
            };
        } else {
            found.vpc_id = match &net.vpc {
                Some(v) => {
                    let out = self
                        .ec2
                        .describe_vpcs()
                        .vpc_ids(v)
                        .send()
                        .await
                        .map_err(|e| ec2_error("look up VPC", &id, &e))?;
                    if out.vpcs().is_empty() {
                        return Err(unexpected(&id, format!("VPC {v} does not exist")));
                    }
                    v.clone()
                }
                None => {
                    let out = self
                        .ec2
                        .describe_vpcs()
                        .filters(filter("is-default", "true"))
                        .send()
                        .await
                        .map_err(|e| ec2_error("look up the default VPC", &id, &e))?;
                    out.vpcs()
                        .iter()
                        .find_map(|v| v.vpc_id())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            unexpected(
                                &id,
                                "the region has no default VPC; set networking.vpc and subnets",
                            )
                        })?
                }
            };
            let subnets: Vec<_> = self
                .ec2
                .describe_subnets()
                .filters(filter("vpc-id", &found.vpc_id))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| ec2_error("look up subnets", &id, &e))?;
            found.subnets = subnets
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect();
            if found.subnets.is_empty() {
                return Err(unexpected(
                    &id,
                    format!("VPC {} has no subnets", found.vpc_id),
                ));
            }
        }

        let request = if net.security_groups.is_empty() {
            self.ec2
                .describe_security_groups()
                .filters(filter("vpc-id", &found.vpc_id))
                .filters(filter("group-name", "default"))
        } else {
            self.ec2
                .describe_security_groups()
                .set_group_ids(Some(net.security_groups.clone()))
        };
        let groups: Vec<_> = request
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| ec2_error("look up security groups", &id, &e))?;
        found.security_groups = groups
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        if found.security_groups.is_empty() {
            return Err(unexpected(
                &id,
                format!("VPC {} has no default security group", found.vpc_id),
            ));
        }
        found.subnets.sort();
        found.subnets.dedup();
        found.security_groups.sort();
        found.security_groups.dedup();
        Ok(found)
    }
}

fn spec_of(component: &DesiredComponent) -> Result<&NetworkSpec, DriverError> {
    match &component.spec {
        ComponentSpec::Network(s) => Ok(s),
        other => Err(unexpected(
            &component.id,
            format!("the Network driver was given a {}", other.kind()),
        )),
    }
}

#[async_trait]
impl Driver for NetworkDriver {
    fn kind(&self) -> Kind {
        Kind::Network
    }

    fn desired(&self, component: &DesiredComponent, _: &Outputs, _: &Lookups) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Ok(net) = spec_of(component) else {
            return f;
        };
        f.set("vpc", FieldValue::known(net.selector()));
        if !net.subnets.is_empty() {
            f.set("subnets", FieldValue::known(&net.subnets));
        }
        if !net.security_groups.is_empty() {
            f.set("securityGroups", FieldValue::known(&net.security_groups));
        }
        f
    }

    /// Looks the network up as the stack's infra selects it; one that cannot be found fails the
    /// plan, saying why (an unknown id, no default VPC, a VPC without subnets).
    async fn observe(
        &self,
        _: &ComponentId,
        _: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let spec = NetworkSpec::of(&self.ctx.infra);
        let mut o = Observation::default();
        match self.look_up_network(&spec).await {
            Ok(net) => {
                o.exists = true;
                // A lookup owns nothing; there is nothing to conflict with.
                o.owned = true;
                o.fields
                    .insert("vpc".into(), FieldValue::known(spec.selector()));
                if !spec.subnets.is_empty() {
                    o.fields
                        .insert("subnets".into(), FieldValue::known(&net.subnets));
                }
                if !spec.security_groups.is_empty() {
                    o.fields.insert(
                        "securityGroups".into(),
                        FieldValue::known(&net.security_groups),
                    );
                }
                let applied = net.applied();
                o.identifiers = applied.identifiers;
                o.outputs = applied.outputs;
                o.health = Health::Healthy;
                o.status = format!(
                    "{} ({} subnets, {} security groups)",
                    net.vpc_id,
                    net.subnets.len(),
                    net.security_groups.len()
                );
            }
            // A network that cannot be found is a configuration problem: say so at plan time,
            // before anything is changed, rather than plan to "create" a lookup.
            Err(e) => return Err(e),
        }
        Ok(o)
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        _: &Outputs,
        _: &Lookups,
    ) -> Result<Applied, DriverError> {
        let net = self.look_up_network(spec_of(component)?).await?;
        Ok(net.applied())
    }

    /// Nothing to delete: the network was only looked up.
    async fn delete(
        &self,
        _: &ComponentId,
        _: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        Ok(Deletion::Done)
    }
}
