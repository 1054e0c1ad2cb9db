//! Stack-shared resources: what every container component of a stack/environment runs on.
//!
//! Stages **observe** and **apply** for three resources that belong to the stack rather than to a
//! component. They are planned, applied and recorded like components, in a wave before the first
//! component wave, under reserved ids that can never clash with a user's (user names start with a
//! letter, these with `_`):
//!
//! | id | what | created? | outputs |
//! |---|---|---|---|
//! | [`network_id`] `_stack/network` | VPC, subnets, security groups | never: a read-only lookup | `vpcId`, `subnets`, `securityGroups` (comma-separated) |
//! | [`cluster_id`] `_stack/cluster` | ECS cluster | if absent | `name`, `arn` |
//! | [`alb_id`] `_stack/alb` | application load balancer + HTTP:80 listener (fixed 404 by default) | when a MicroService has `loadBalancer.enabled` | `arn`, `dnsName`, `listenerArn` |
//!
//! The engine puts these outputs into [`Outputs`](super::Outputs) under those ids before the
//! component waves; the ECS driver reads them from there.
//!
//! Network selection (`StackInfra.networking`): `vpc: default` or no `vpc` means the account's
//! default VPC of the region; a `vpc-…` id is used as given. `subnets` default to every subnet of
//! the VPC, `securityGroups` to the VPC's `default` group; explicit ids are used as given (and
//! checked to exist). Tasks get a public IP when `assignPublicIp` says so, or by default in the
//! default VPC (whose subnets are public and have no NAT); the load balancer is internet-facing
//! exactly when the stack's tasks get public IPs (same subnets), internal otherwise.
//!
//! The cluster and the load balancer carry the stack's ownership tags (without service and
//! component). One with our name but without them is a conflict unless `--adopt`; with `--adopt`
//! it is tagged and from then on ours. [`SharedDriver::delete`] removes the load balancer and the
//! cluster, never the network, and never a cluster that is not tagged as ours.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use aws_sdk_ecs::types::ClusterField;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, ProtocolEnum,
};
use panka_crds::spec::StackInfraSpec;

use super::{Applied, Ctx, DriverError};
use crate::aws::AwsError;
use crate::model::{ComponentId, ComponentSpec, DesiredStack};
use crate::naming::{NameRules, Naming};
use crate::plan::{DesiredFields, FieldValue, Health, Observation};

/// Reserved service name of the stack-shared resources.
pub const STACK: &str = "_stack";
/// Port of the load balancer's listener.
pub const LISTENER_PORT: i32 = 80;

/// `_stack/network`: the VPC, subnets and security groups tasks run in (looked up, never created).
pub fn network_id() -> ComponentId {
    ComponentId::new(STACK, "network")
}

/// `_stack/cluster`: the ECS cluster.
pub fn cluster_id() -> ComponentId {
    ComponentId::new(STACK, "cluster")
}

/// `_stack/alb`: the application load balancer and its HTTP listener.
pub fn alb_id() -> ComponentId {
    ComponentId::new(STACK, "alb")
}

/// `_stack/execution-role`: reserved for the ECS task execution role (pulls images, writes logs,
/// reads the Secrets Manager references). Not produced yet; when the engine has outputs for it,
/// the ECS driver sets its `arn` as the task definitions' execution role.
pub fn execution_role_id() -> ComponentId {
    ComponentId::new(STACK, "execution-role")
}

/// The ECS cluster's name: `infra.cluster` (already `${VAR}`-substituted) or
/// `{stack}-{env}-cluster`.
pub fn cluster_name(naming: &Naming, infra: &StackInfraSpec) -> String {
    infra
        .cluster
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| naming.shared("cluster", NameRules::LONG))
}

/// The load balancer's name (32 characters at most).
pub fn alb_name(naming: &Naming) -> String {
    naming.shared("alb", NameRules::LOAD_BALANCER)
}

/// Whether the stack's tasks get a public IP by default: `networking.assignPublicIp`, else true
/// in the default VPC (public subnets, no NAT) and false in an explicit one.
pub fn stack_assigns_public_ip(infra: &StackInfraSpec) -> bool {
    let net = infra.networking.as_ref();
    net.and_then(|n| n.assign_public_ip)
        .unwrap_or_else(|| uses_default_vpc(infra))
}

/// Whether the stack's network is the account's default VPC.
fn uses_default_vpc(infra: &StackInfraSpec) -> bool {
    let net = infra.networking.as_ref();
    let vpc = net.and_then(|n| n.vpc.as_deref());
    let subnets = net.map(|n| n.subnets.as_slice()).unwrap_or_default();
    matches!(vpc, None | Some("default")) && subnets.is_empty()
}

fn vpc_selector(infra: &StackInfraSpec) -> String {
    let net = infra.networking.as_ref();
    match net.and_then(|n| n.vpc.as_deref()) {
        Some(v) if v != "default" => v.to_string(),
        _ if !net.is_none_or(|n| n.subnets.is_empty()) => "(vpc of the subnets)".to_string(),
        _ => "default".to_string(),
    }
}

fn scheme(infra: &StackInfraSpec) -> LoadBalancerSchemeEnum {
    if stack_assigns_public_ip(infra) {
        LoadBalancerSchemeEnum::InternetFacing
    } else {
        LoadBalancerSchemeEnum::Internal
    }
}

/// What the stack needs: `(network and cluster, load balancer)`.
fn needs(stack: &DesiredStack) -> (bool, bool) {
    let mut containers = false;
    let mut alb = false;
    for c in stack.components.values() {
        match &c.spec {
            ComponentSpec::MicroService(_) => {
                containers = true;
                let lb = c
                    .infra
                    .as_ref()
                    .and_then(|i| i.networking.as_ref())
                    .and_then(|n| n.load_balancer.as_ref());
                alb |= lb.is_some_and(|lb| lb.enabled.unwrap_or(false));
            }
            ComponentSpec::Worker(_) => containers = true,
            _ => {}
        }
    }
    (containers, alb)
}

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
}

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

/// Driver of the stack-shared resources (see the module documentation).
///
/// * [`SharedDriver::desired`] (pure): the fields each needed resource should have; a resource
///   the stack does not need has no entry.
/// * [`SharedDriver::observe`] (read-only): one [`Observation`] per resource, with the same
///   field keys and normal forms, so `plan::diff` is empty when converged.
/// * [`SharedDriver::ensure`]: looks up the network, creates or converges the cluster and (when
///   needed) the load balancer and its listener; returns identifiers and outputs per resource.
/// * [`SharedDriver::delete`]: deletes one recorded resource (load balancer or cluster); the
///   network is never deleted; "not found" counts as done.
pub struct SharedDriver {
    ctx: Ctx,
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl std::fmt::Debug for SharedDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDriver")
            .field("stack", &self.ctx.naming.stack)
            .field("environment", &self.ctx.naming.environment)
            .finish()
    }
}

impl SharedDriver {
    /// A driver on the shared context; every client counts its calls in `ctx.calls`.
    pub fn new(ctx: &Ctx) -> SharedDriver {
        let ec2 = aws_sdk_ec2::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let ecs = aws_sdk_ecs::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        SharedDriver {
            ctx: ctx.clone(),
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            ecs: aws_sdk_ecs::Client::from_conf(ecs),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
        }
    }

    fn shared_tags(&self) -> BTreeMap<String, String> {
        self.ctx.naming.tags(None, &self.ctx.extra_tags)
    }

    fn may_touch(&self, tags: &BTreeMap<String, String>) -> bool {
        self.ctx.adopt || self.ctx.naming.owns(None, tags)
    }

    /// What the stack needs of the shared resources (pure). No entry: not needed.
    pub fn desired(&self, stack: &DesiredStack) -> BTreeMap<ComponentId, DesiredFields> {
        let (containers, alb) = needs(stack);
        let mut out = BTreeMap::new();
        if !containers {
            return out;
        }
        let infra = &stack.infra;
        let mut network = DesiredFields::default();
        network.set("vpc", FieldValue::known(vpc_selector(infra)));
        if let Some(n) = &infra.networking {
            if !n.subnets.is_empty() {
                network.set("subnets", FieldValue::known(sorted(&n.subnets)));
            }
            if !n.security_groups.is_empty() {
                network.set(
                    "securityGroups",
                    FieldValue::known(sorted(&n.security_groups)),
                );
            }
        }
        out.insert(network_id(), network);

        let mut cluster = DesiredFields::default();
        cluster.set("status", FieldValue::known("ACTIVE"));
        cluster.set("tags", FieldValue::known(self.shared_tags()));
        out.insert(cluster_id(), cluster);

        if alb {
            let mut f = DesiredFields::default();
            f.set_replace(
                "scheme",
                FieldValue::known(scheme(infra).as_str()),
                "a load balancer's scheme is fixed at creation",
            );
            f.set("listener", FieldValue::known(listener_label()));
            f.set("tags", FieldValue::known(self.shared_tags()));
            out.insert(alb_id(), f);
        }
        out
    }

    /// Reads the shared resources. Never mutates. Every id gets an observation (a missing one
    /// with `exists: false`), so the engine also sees a load balancer that is no longer needed.
    pub async fn observe(&self) -> Result<BTreeMap<ComponentId, Observation>, DriverError> {
        let infra = &self.ctx.infra;
        let mut out = BTreeMap::new();

        let mut o = Observation::default();
        match self.lookup_network(infra).await {
            Ok(net) => {
                o.exists = true;
                // A lookup owns nothing; there is nothing to conflict with.
                o.owned = true;
                o.fields
                    .insert("vpc".into(), FieldValue::known(vpc_selector(infra)));
                if let Some(n) = &infra.networking {
                    if !n.subnets.is_empty() {
                        o.fields
                            .insert("subnets".into(), FieldValue::known(&net.subnets));
                    }
                    if !n.security_groups.is_empty() {
                        o.fields.insert(
                            "securityGroups".into(),
                            FieldValue::known(&net.security_groups),
                        );
                    }
                }
                o.identifiers.insert("vpcId".into(), net.vpc_id.clone());
                o.outputs = net.outputs();
                o.health = Health::Healthy;
                o.status = format!(
                    "{} ({} subnets, {} security groups)",
                    net.vpc_id,
                    net.subnets.len(),
                    net.security_groups.len()
                );
            }
            Err(e) if e.is_not_found() || matches!(e, DriverError::Unexpected { .. }) => {
                o.status = e.to_string();
            }
            Err(e) => return Err(e),
        }
        out.insert(network_id(), o);

        let mut o = Observation::default();
        let name = cluster_name(&self.ctx.naming, infra);
        if let Some((arn, tags)) = self.find_cluster(&name).await? {
            o.exists = true;
            o.owned = self.ctx.naming.owns(None, &tags);
            o.fields
                .insert("status".into(), FieldValue::known("ACTIVE"));
            o.fields.insert("tags".into(), FieldValue::known(&tags));
            o.identifiers.insert("name".into(), name.clone());
            o.identifiers.insert("arn".into(), arn.clone());
            o.outputs.insert("name".into(), name);
            o.outputs.insert("arn".into(), arn);
            o.health = Health::Healthy;
            o.status = "active".into();
        } else {
            o.status = "missing".into();
        }
        out.insert(cluster_id(), o);

        let mut o = Observation::default();
        if let Some(alb) = self.find_alb(&alb_id()).await? {
            o.exists = true;
            o.owned = self.ctx.naming.owns(None, &alb.tags);
            o.fields
                .insert("scheme".into(), FieldValue::known(&alb.scheme));
            if alb.listener_arn.is_some() {
                o.fields
                    .insert("listener".into(), FieldValue::known(listener_label()));
            }
            o.fields.insert("tags".into(), FieldValue::known(&alb.tags));
            o.identifiers.insert("arn".into(), alb.arn.clone());
            o.outputs.insert("arn".into(), alb.arn.clone());
            o.outputs.insert("dnsName".into(), alb.dns_name.clone());
            if let Some(l) = &alb.listener_arn {
                o.identifiers.insert("listenerArn".into(), l.clone());
                o.outputs.insert("listenerArn".into(), l.clone());
            }
            o.health = Health::Healthy;
            o.status = alb.dns_name;
        } else {
            o.status = "missing".into();
        }
        out.insert(alb_id(), o);
        Ok(out)
    }

    /// Creates or converges what `stack` needs (see [`SharedDriver::desired`]): the network is
    /// looked up, the cluster created if absent, the load balancer and its listener created or
    /// converged (subnets, security groups, tags). Returns what each left behind.
    pub async fn ensure(
        &self,
        stack: &DesiredStack,
    ) -> Result<BTreeMap<ComponentId, Applied>, DriverError> {
        let (containers, alb) = needs(stack);
        let mut out = BTreeMap::new();
        if !containers {
            return Ok(out);
        }
        let infra = &stack.infra;
        let net = self.lookup_network(infra).await?;
        out.insert(
            network_id(),
            Applied {
                identifiers: BTreeMap::from([("vpcId".to_string(), net.vpc_id.clone())]),
                outputs: net.outputs(),
            },
        );
        let name = cluster_name(&self.ctx.naming, infra);
        let arn = self.ensure_cluster(&name).await?;
        let outputs = BTreeMap::from([
            ("name".to_string(), name.clone()),
            ("arn".to_string(), arn.clone()),
        ]);
        out.insert(
            cluster_id(),
            Applied {
                identifiers: outputs.clone(),
                outputs,
            },
        );
        if alb {
            let a = self.ensure_alb(infra, &net).await?;
            let listener = a.listener_arn.clone().unwrap_or_default();
            out.insert(
                alb_id(),
                Applied {
                    identifiers: BTreeMap::from([
                        ("arn".to_string(), a.arn.clone()),
                        ("listenerArn".to_string(), listener.clone()),
                    ]),
                    outputs: BTreeMap::from([
                        ("arn".to_string(), a.arn),
                        ("dnsName".to_string(), a.dns_name),
                        ("listenerArn".to_string(), listener),
                    ]),
                },
            );
        }
        Ok(out)
    }

    /// Deletes one recorded shared resource: the load balancer (with its listeners) or the
    /// cluster (only if tagged as ours; it must have no services left). The network is a
    /// lookup and is never deleted. "Not found" counts as done.
    pub async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        if *id == alb_id() {
            let arn = match recorded.get("arn") {
                Some(a) => Some(a.clone()),
                None => self.find_alb(id).await?.map(|a| a.arn),
            };
            let Some(arn) = arn else { return Ok(()) };
            return match self
                .elb
                .delete_load_balancer()
                .load_balancer_arn(&arn)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if super::is_missing(&AwsError::from_sdk(&e), &[]) => Ok(()),
                Err(e) => Err(DriverError::aws("delete load balancer", id, &e)),
            };
        }
        if *id == cluster_id() {
            let name = recorded
                .get("name")
                .cloned()
                .unwrap_or_else(|| cluster_name(&self.ctx.naming, &self.ctx.infra));
            let Some((_, tags)) = self.find_cluster(&name).await? else {
                return Ok(());
            };
            if !self.ctx.naming.owns(None, &tags) {
                // Used, never created by panka: leave it to whoever made it.
                tracing::info!(cluster = %name, "keeping an ECS cluster panka does not own");
                return Ok(());
            }
            return match self.ecs.delete_cluster().cluster(&name).send().await {
                Ok(_) => Ok(()),
                Err(e) if super::is_missing(&AwsError::from_sdk(&e), &[]) => Ok(()),
                Err(e) => Err(DriverError::aws("delete ECS cluster", id, &e)),
            };
        }
        // The network (and anything else) is looked up, never created: nothing to delete.
        Ok(())
    }

    async fn lookup_network(&self, infra: &StackInfraSpec) -> Result<Network, DriverError> {
        let id = network_id();
        let net = infra.networking.clone().unwrap_or_default();
        let explicit_vpc = net.vpc.clone().filter(|v| v != "default");
        let mut found = Network::default();

        if !net.subnets.is_empty() {
            let out = self
                .ec2
                .describe_subnets()
                .set_subnet_ids(Some(net.subnets.clone()))
                .send()
                .await
                .map_err(|e| ec2_error("look up subnets", &id, &e))?;
            let mut vpcs = BTreeSet::new();
            for s in out.subnets() {
                if let Some(sid) = s.subnet_id() {
                    found.subnets.push(sid.to_string());
                }
                vpcs.extend(s.vpc_id().map(str::to_string));
            }
            found.vpc_id = match (explicit_vpc, vpcs.len()) {
                (Some(v), _) => v,
                (None, 1) => vpcs.into_iter().next().unwrap_or_default(),
                (None, _) => {
                    return Err(DriverError::Unexpected {
                        component: id,
                        message: "the stack's subnets are in different VPCs; set networking.vpc"
                            .into(),
                    })
                }
            };
        } else {
            found.vpc_id = match explicit_vpc {
                Some(v) => {
                    let out = self
                        .ec2
                        .describe_vpcs()
                        .vpc_ids(&v)
                        .send()
                        .await
                        .map_err(|e| ec2_error("look up VPC", &id, &e))?;
                    if out.vpcs().is_empty() {
                        return Err(not_found(&id, &format!("VPC {v} does not exist")));
                    }
                    v
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
                            not_found(
                                &id,
                                "the region has no default VPC; set networking.vpc and subnets",
                            )
                        })?
                }
            };
            let out = self
                .ec2
                .describe_subnets()
                .filters(filter("vpc-id", &found.vpc_id))
                .send()
                .await
                .map_err(|e| ec2_error("look up subnets", &id, &e))?;
            found.subnets = out
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect();
            if found.subnets.is_empty() {
                return Err(not_found(
                    &id,
                    &format!("VPC {} has no subnets", found.vpc_id),
                ));
            }
        }

        let groups = if net.security_groups.is_empty() {
            self.ec2
                .describe_security_groups()
                .filters(filter("vpc-id", &found.vpc_id))
                .filters(filter("group-name", "default"))
                .send()
                .await
        } else {
            self.ec2
                .describe_security_groups()
                .set_group_ids(Some(net.security_groups.clone()))
                .send()
                .await
        }
        .map_err(|e| ec2_error("look up security groups", &id, &e))?;
        found.security_groups = groups
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        if found.security_groups.is_empty() {
            return Err(not_found(
                &id,
                &format!("VPC {} has no default security group", found.vpc_id),
            ));
        }
        found.subnets.sort();
        found.subnets.dedup();
        found.security_groups.sort();
        found.security_groups.dedup();
        Ok(found)
    }

    /// The cluster's ARN and tags, if it exists and is active.
    async fn find_cluster(
        &self,
        name: &str,
    ) -> Result<Option<(String, BTreeMap<String, String>)>, DriverError> {
        let out = self
            .ecs
            .describe_clusters()
            .clusters(name)
            .include(ClusterField::Tags)
            .send()
            .await
            .map_err(|e| DriverError::aws("read ECS cluster", &cluster_id(), &e))?;
        Ok(out
            .clusters()
            .iter()
            .find(|c| c.cluster_name() == Some(name) && c.status() == Some("ACTIVE"))
            .map(|c| {
                let tags = c
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect();
                (c.cluster_arn().unwrap_or_default().to_string(), tags)
            }))
    }

    async fn ensure_cluster(&self, name: &str) -> Result<String, DriverError> {
        let id = cluster_id();
        let want = self.shared_tags();
        if let Some((arn, tags)) = self.find_cluster(name).await? {
            if !self.may_touch(&tags) {
                return Err(DriverError::NotOurs {
                    component: id,
                    what: format!("ECS cluster {name}"),
                });
            }
            let missing = ecs_tags(want.iter().filter(|(k, v)| tags.get(*k) != Some(*v)));
            if !missing.is_empty() {
                self.ecs
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(missing))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("tag ECS cluster", &id, &e))?;
            }
            return Ok(arn);
        }
        let out = self
            .ecs
            .create_cluster()
            .cluster_name(name)
            .set_tags(Some(ecs_tags(want.iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("create ECS cluster", &id, &e))?;
        out.cluster()
            .and_then(|c| c.cluster_arn())
            .map(str::to_string)
            .ok_or_else(|| DriverError::Unexpected {
                component: id,
                message: format!("ECS returned no ARN for cluster {name}"),
            })
    }

    /// The load balancer with its HTTP listener and tags, if it exists.
    async fn find_alb(&self, id: &ComponentId) -> Result<Option<Alb>, DriverError> {
        let name = alb_name(&self.ctx.naming);
        let out = match self.elb.describe_load_balancers().names(&name).send().await {
            Ok(o) => o,
            Err(e) if super::is_missing(&AwsError::from_sdk(&e), &["LoadBalancerNotFound"]) => {
                return Ok(None)
            }
            Err(e) => return Err(DriverError::aws("read load balancer", id, &e)),
        };
        let Some(lb) = out
            .load_balancers()
            .iter()
            .find(|l| l.load_balancer_name() == Some(name.as_str()))
        else {
            return Ok(None);
        };
        let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        let tags = self
            .elb
            .describe_tags()
            .resource_arns(&arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read load balancer tags", id, &e))?
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        let listeners = self
            .elb
            .describe_listeners()
            .load_balancer_arn(&arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read load balancer listeners", id, &e))?;
        let listener_arn = listeners
            .listeners()
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

    async fn ensure_alb(&self, infra: &StackInfraSpec, net: &Network) -> Result<Alb, DriverError> {
        let id = alb_id();
        let name = alb_name(&self.ctx.naming);
        let want_tags = self.shared_tags();
        let want_scheme = scheme(infra);
        let mut alb = match self.find_alb(&id).await? {
            Some(a) => {
                if !self.may_touch(&a.tags) {
                    return Err(DriverError::NotOurs {
                        component: id,
                        what: format!("load balancer {name}"),
                    });
                }
                if a.scheme != want_scheme.as_str() {
                    return Err(DriverError::Unexpected {
                        component: id,
                        message: format!(
                            "load balancer {name} is {} but the stack needs {}; it must be replaced",
                            a.scheme,
                            want_scheme.as_str()
                        ),
                    });
                }
                self.converge_alb(&a, net, &want_tags).await?;
                a
            }
            None => {
                let out = self
                    .elb
                    .create_load_balancer()
                    .name(&name)
                    .r#type(LoadBalancerTypeEnum::Application)
                    .scheme(want_scheme.clone())
                    .set_subnets(Some(net.subnets.clone()))
                    .set_security_groups(Some(net.security_groups.clone()))
                    .set_tags(Some(elb_tags(want_tags.iter())))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("create load balancer", &id, &e))?;
                let lb = out
                    .load_balancers()
                    .first()
                    .ok_or_else(|| DriverError::Unexpected {
                        component: id.clone(),
                        message: format!("ELB returned no load balancer for {name}"),
                    })?;
                Alb {
                    arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
                    dns_name: lb.dns_name().unwrap_or_default().to_string(),
                    scheme: want_scheme.as_str().to_string(),
                    subnets: net.subnets.iter().cloned().collect(),
                    security_groups: net.security_groups.iter().cloned().collect(),
                    listener_arn: None,
                    tags: want_tags.clone(),
                }
            }
        };
        if alb.listener_arn.is_none() {
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
                .set_tags(Some(elb_tags(want_tags.iter())))
                .send()
                .await
                .map_err(|e| DriverError::aws("create load balancer listener", &id, &e))?;
            alb.listener_arn = out
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .map(str::to_string);
        }
        Ok(alb)
    }

    /// Subnets, security groups and tags of an existing load balancer.
    async fn converge_alb(
        &self,
        alb: &Alb,
        net: &Network,
        want_tags: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let id = alb_id();
        let subnets: BTreeSet<String> = net.subnets.iter().cloned().collect();
        if alb.subnets != subnets {
            self.elb
                .set_subnets()
                .load_balancer_arn(&alb.arn)
                .set_subnets(Some(net.subnets.clone()))
                .send()
                .await
                .map_err(|e| DriverError::aws("set load balancer subnets", &id, &e))?;
        }
        let groups: BTreeSet<String> = net.security_groups.iter().cloned().collect();
        if alb.security_groups != groups {
            self.elb
                .set_security_groups()
                .load_balancer_arn(&alb.arn)
                .set_security_groups(Some(net.security_groups.clone()))
                .send()
                .await
                .map_err(|e| DriverError::aws("set load balancer security groups", &id, &e))?;
        }
        let missing = elb_tags(
            want_tags
                .iter()
                .filter(|(k, v)| alb.tags.get(*k) != Some(*v)),
        );
        if !missing.is_empty() {
            self.elb
                .add_tags()
                .resource_arns(&alb.arn)
                .set_tags(Some(missing))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag load balancer", &id, &e))?;
        }
        Ok(())
    }
}

/// How the listener shows in plans.
fn listener_label() -> String {
    format!("HTTP:{LISTENER_PORT}")
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// An EC2 lookup error: unknown ids (`InvalidSubnetID.NotFound`, `InvalidVpcID.NotFound`,
/// `InvalidGroup.NotFound`) are a configuration problem, reported as such.
fn ec2_error<E, R>(
    action: &str,
    id: &ComponentId,
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> DriverError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::aws::HttpStatus,
{
    let err = AwsError::from_sdk(e);
    if err
        .code
        .as_deref()
        .is_some_and(|c| c.ends_with(".NotFound"))
    {
        return not_found(id, &format!("failed to {action}: {}", err.message));
    }
    DriverError::Aws {
        action: action.to_string(),
        component: id.clone(),
        source: Box::new(err),
    }
}

fn not_found(id: &ComponentId, message: &str) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: message.to_string(),
    }
}

/// ECS tags from key/value pairs.
pub(crate) fn ecs_tags<'a>(
    tags: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<aws_sdk_ecs::types::Tag> {
    tags.map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// ELB tags from key/value pairs.
pub(crate) fn elb_tags<'a>(
    tags: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    tags.map(|(k, v)| {
        aws_sdk_elasticloadbalancingv2::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use panka_crds::spec::StackNetworking;

    fn infra(net: Option<StackNetworking>) -> StackInfraSpec {
        StackInfraSpec {
            networking: net,
            ..Default::default()
        }
    }

    #[test]
    fn the_cluster_is_named_by_infra_or_after_the_stack() {
        let naming = Naming::new("shop", "dev");
        assert_eq!(cluster_name(&naming, &infra(None)), "shop-dev-cluster");
        let named = StackInfraSpec {
            cluster: Some("platform-dev".into()),
            ..Default::default()
        };
        assert_eq!(cluster_name(&naming, &named), "platform-dev");
    }

    #[test]
    fn the_default_vpc_gets_public_ips_and_an_internet_facing_alb() {
        assert!(stack_assigns_public_ip(&infra(None)));
        assert_eq!(scheme(&infra(None)), LoadBalancerSchemeEnum::InternetFacing);
        let explicit = infra(Some(StackNetworking {
            vpc: Some("vpc-1".into()),
            ..Default::default()
        }));
        assert!(!stack_assigns_public_ip(&explicit));
        assert_eq!(scheme(&explicit), LoadBalancerSchemeEnum::Internal);
        let public = infra(Some(StackNetworking {
            vpc: Some("vpc-1".into()),
            assign_public_ip: Some(true),
            ..Default::default()
        }));
        assert_eq!(scheme(&public), LoadBalancerSchemeEnum::InternetFacing);
    }

    #[test]
    fn the_alb_name_fits_the_limit() {
        let naming = Naming::new("a-rather-long-stack-name", "production");
        let name = alb_name(&naming);
        assert!(name.len() <= 32, "{name}");
        assert!(!name.starts_with("internal-"));
    }
}
