//! Stack-shared resources: what every container component of a stack/environment runs on.
//!
//! Stages **observe** and **apply** for four resources that belong to the stack rather than to a
//! component. They are planned, applied and recorded like components, in a wave before the first
//! component wave, under reserved ids that can never clash with a user's (user names start with a
//! letter, these with `_`):
//!
//! | id | what | created? | outputs |
//! |---|---|---|---|
//! | [`network_id`] `_stack/network` | VPC, subnets, security groups | never: a read-only lookup | `vpcId`, `subnets`, `securityGroups` (comma-separated) |
//! | [`cluster_id`] `_stack/cluster` | ECS cluster | if absent | `name`, `arn` |
//! | [`alb_id`] `_stack/alb` | application load balancer + HTTP:80 listener (fixed 404 by default) | when a MicroService has `loadBalancer.enabled` | `arn`, `dnsName`, `listenerArn` |
//! | [`execution_role_id`] `_stack/execution-role` | IAM task execution role (image pulls, awslogs, secrets) | if absent | `arn`, `name` |
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
//! The execution role ([`execution_role_name`], path `/panka/`) is what Fargate needs for the
//! awslogs driver and for `secrets`: ECS tasks (`ecs-tasks.amazonaws.com`) may assume it, it has
//! the AWS managed `AmazonECSTaskExecutionRolePolicy` (ECR pulls, CloudWatch Logs), and an inline
//! policy `panka-secrets` allowing `secretsmanager:GetSecretValue` on exactly the secrets the
//! stack's MicroServices and Workers reference (none: no inline policy). A `secretRef` that is an
//! ARN is used as is; a name becomes `arn:aws:secretsmanager:{region}:{account}:secret:{name}-*`
//! (Secrets Manager appends six random characters to a secret's ARN). The account is read from
//! the role's own ARN, so no STS call is needed. Planning is pure and runs before anything is
//! read, so the plan shows the stack's own account as the placeholder [`ACCOUNT_PLACEHOLDER`];
//! observe writes the resources it reads in that same form.
//!
//! The cluster, the load balancer and the execution role carry the stack's ownership tags
//! (without service and component). One with our name but without them is a conflict unless
//! `--adopt`; with `--adopt` it is tagged and from then on ours. [`SharedDriver::delete`] removes
//! the load balancer, the cluster and the role (after detaching its policies), never the
//! network, and never one of them that is not tagged as ours. Their tags converge like every
//! component's ([`super::support`]): panka's are set, StackInfra `ignoreTags` are left alone,
//! any other tag is removed.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use aws_sdk_ecs::types::ClusterField;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, ProtocolEnum,
};
use panka_crds::spec::StackInfraSpec;
use serde_json::{json, Value};

use super::support::{ensure_stack_ours, is_missing, or_missing};
use super::{Applied, Ctx, DriverError};
use crate::aws::{self, AwsError};
use panka_core::model::{ComponentId, ComponentSpec, DesiredStack};
use panka_core::naming::{NameRules, Naming};
use panka_core::plan::{DesiredFields, FieldValue, Fields, Health, Observation};

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

/// `_stack/execution-role`: the ECS task execution role (pulls images, writes logs, reads the
/// Secrets Manager references). The ECS driver sets its `arn` output as the task definitions'
/// execution role.
pub fn execution_role_id() -> ComponentId {
    ComponentId::new(STACK, "execution-role")
}

/// Path of the roles panka creates.
pub const ROLE_PATH: &str = "/panka/";
/// The service principal that assumes the execution role.
pub const TASKS_PRINCIPAL: &str = "ecs-tasks.amazonaws.com";
/// Name of the managed policy every execution role has (ECR pulls, CloudWatch Logs).
pub const EXECUTION_POLICY: &str = "service-role/AmazonECSTaskExecutionRolePolicy";
/// Name of the inline policy granting the stack's secrets.
pub const SECRETS_POLICY: &str = "panka-secrets";
/// Stands for the stack's own account in the planned `secretsPolicy` resources: planning is pure
/// and cannot know the account, which apply reads from the role's ARN.
pub const ACCOUNT_PLACEHOLDER: &str = "{account}";

/// The execution role's name (64 characters at most).
pub fn execution_role_name(naming: &Naming) -> String {
    naming.shared("ecs-execution", NameRules::IAM_ROLE)
}

/// The ARN of the managed execution policy in `region`'s partition.
pub fn execution_policy_arn(region: &str) -> String {
    format!(
        "arn:{}:iam::aws:policy/{EXECUTION_POLICY}",
        partition(region)
    )
}

/// The Secrets Manager references (`secrets[].secretRef`) of the stack's MicroServices and
/// Workers, sorted and without duplicates.
pub fn secret_refs(stack: &DesiredStack) -> Vec<String> {
    let refs: BTreeSet<String> = stack
        .components
        .values()
        .flat_map(|c| match &c.spec {
            ComponentSpec::MicroService(m) => m.secrets.as_slice(),
            ComponentSpec::Worker(w) => w.secrets.as_slice(),
            _ => &[],
        })
        .map(|s| s.secret_ref.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    refs.into_iter().collect()
}

/// The IAM resource of a secret reference: an ARN as is, a name as
/// `arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-*` (pass
/// [`ACCOUNT_PLACEHOLDER`] as `account` for the planned form).
pub fn secret_resource(secret_ref: &str, region: &str, account: &str) -> String {
    if secret_ref.starts_with("arn:") {
        return secret_ref.to_string();
    }
    format!("{}{secret_ref}-*", secret_prefix(region, account))
}

/// Where the ARNs of `account`'s secrets in `region` start.
fn secret_prefix(region: &str, account: &str) -> String {
    format!(
        "arn:{}:secretsmanager:{region}:{account}:secret:",
        partition(region)
    )
}

/// The ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
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

/// The execution role as found.
#[derive(Debug, Clone)]
struct Role {
    name: String,
    arn: String,
    /// The `trust` field (see [`trust_field`]).
    trust: Value,
    /// Attached managed policy ARNs, sorted.
    managed: Vec<String>,
    /// The inline secrets policy, parsed (a string when it is not JSON); `None`: absent.
    secrets: Option<Value>,
    tags: BTreeMap<String, String>,
}

impl Role {
    /// The account, from the ARN `arn:{partition}:iam::{account}:role/{path}{name}`.
    fn account(&self) -> &str {
        self.arn.split(':').nth(4).unwrap_or_default()
    }

    /// The fields observe reports, in the normal form of [`SharedDriver::desired`], but for the
    /// tags (which the stack's tag policy reduces).
    fn fields(&self, region: &str) -> Fields {
        let mut f = Fields::new();
        f.insert("trust".into(), FieldValue::Known(self.trust.clone()));
        f.insert("managedPolicies".into(), FieldValue::known(&self.managed));
        f.insert(
            "secretsPolicy".into(),
            FieldValue::Known(secrets_field(self.secrets.as_ref(), region, self.account())),
        );
        f
    }
}

/// Driver of the stack-shared resources (see the module documentation).
///
/// * [`SharedDriver::desired`] (pure): the fields each needed resource should have; a resource
///   the stack does not need has no entry.
/// * [`SharedDriver::observe`] (read-only): one [`Observation`] per resource, with the same
///   field keys and normal forms, so `plan::diff` is empty when converged.
/// * [`SharedDriver::ensure`]: looks up the network, creates or converges the cluster, the
///   execution role and (when needed) the load balancer and its listener; returns identifiers
///   and outputs per resource.
/// * [`SharedDriver::delete`]: deletes one recorded resource (load balancer, cluster or
///   execution role); the network is never deleted; "not found" counts as done.
pub struct SharedDriver {
    ctx: Ctx,
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    iam: aws_sdk_iam::Client,
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
        let iam = aws_sdk_iam::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        SharedDriver {
            ctx: ctx.clone(),
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            ecs: aws_sdk_ecs::Client::from_conf(ecs),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
            iam: aws_sdk_iam::Client::from_conf(iam),
        }
    }

    fn region(&self) -> String {
        self.ctx
            .sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The `tags` field of a shared resource holding `tags` (see [`super::support`]).
    fn tags_field(&self, tags: &BTreeMap<String, String>) -> FieldValue {
        self.ctx.tag_policy().field(tags)
    }

    /// Whether a shared resource's tags say it is this stack/environment's.
    fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        self.ctx.naming.owns(None, tags)
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
        cluster.set("tags", self.tags_field(&self.ctx.stack_tags()));
        out.insert(cluster_id(), cluster);

        let region = self.region();
        let mut role = DesiredFields::default();
        role.set("trust", FieldValue::known(TASKS_PRINCIPAL));
        role.set(
            "managedPolicies",
            FieldValue::known([execution_policy_arn(&region)]),
        );
        let mut secrets: Vec<String> = secret_refs(stack)
            .iter()
            .map(|r| secret_resource(r, &region, ACCOUNT_PLACEHOLDER))
            .collect();
        secrets.sort();
        secrets.dedup();
        role.set("secretsPolicy", FieldValue::known(secrets));
        role.set("tags", self.tags_field(&self.ctx.stack_tags()));
        out.insert(execution_role_id(), role);

        if alb {
            let mut f = DesiredFields::default();
            f.set_replace(
                "scheme",
                FieldValue::known(scheme(infra).as_str()),
                "a load balancer's scheme is fixed at creation",
            );
            f.set("listener", FieldValue::known(listener_label()));
            f.set("tags", self.tags_field(&self.ctx.stack_tags()));
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
            o.fields.insert("tags".into(), self.tags_field(&tags));
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
        if let Some(role) = self
            .find_role(&execution_role_name(&self.ctx.naming))
            .await?
        {
            o.exists = true;
            o.owned = self.ctx.naming.owns(None, &role.tags);
            o.fields = role.fields(&self.region());
            o.fields.insert("tags".into(), self.tags_field(&role.tags));
            o.identifiers = role_outputs(&role);
            o.outputs = role_outputs(&role);
            o.health = Health::Healthy;
            o.status = role.arn;
        } else {
            o.status = "missing".into();
        }
        out.insert(execution_role_id(), o);

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
            o.fields.insert("tags".into(), self.tags_field(&alb.tags));
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
    /// looked up, the cluster created if absent, the execution role created or converged (trust,
    /// managed policy, secrets policy, tags), the load balancer and its listener created or
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
        let role = self.ensure_role(stack).await?;
        out.insert(
            execution_role_id(),
            Applied {
                identifiers: role_outputs(&role),
                outputs: role_outputs(&role),
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

    /// Deletes one recorded shared resource: the load balancer (with its listeners), the
    /// cluster (it must have no services left) or the execution role (its policies are detached
    /// and deleted first), each only if tagged as ours; one that is not is left to its owner.
    /// The network is a lookup and is never deleted. "Not found" counts as done.
    pub async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        if *id == alb_id() {
            let Some(alb) = self.find_alb(id).await? else {
                return Ok(());
            };
            if recorded.get("arn").is_some_and(|a| *a != alb.arn) || !self.owns(&alb.tags) {
                // Not the one panka made (or made by someone else): leave it to its owner.
                tracing::info!(load_balancer = %alb.arn, "keeping a load balancer panka does not own");
                return Ok(());
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
            return Ok(());
        }
        if *id == cluster_id() {
            let name = recorded
                .get("name")
                .cloned()
                .unwrap_or_else(|| cluster_name(&self.ctx.naming, &self.ctx.infra));
            let Some((_, tags)) = self.find_cluster(&name).await? else {
                return Ok(());
            };
            if !self.owns(&tags) {
                // Used, never created by panka: leave it to whoever made it.
                tracing::info!(cluster = %name, "keeping an ECS cluster panka does not own");
                return Ok(());
            }
            or_missing(
                self.ecs.delete_cluster().cluster(&name).send().await,
                &[],
                "delete ECS cluster",
                id,
            )?;
            return Ok(());
        }
        if *id == execution_role_id() {
            let name = recorded
                .get("name")
                .cloned()
                .unwrap_or_else(|| execution_role_name(&self.ctx.naming));
            return self.delete_role(&name).await;
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
                let tags = aws::tag_map(c.tags().iter().map(|t| (t.key(), t.value())));
                (c.cluster_arn().unwrap_or_default().to_string(), tags)
            }))
    }

    async fn ensure_cluster(&self, name: &str) -> Result<String, DriverError> {
        let id = cluster_id();
        let want = self.ctx.stack_tags();
        if let Some((arn, tags)) = self.find_cluster(name).await? {
            ensure_stack_ours(&self.ctx, &id, &tags, format!("ECS cluster {name}"))?;
            let changes = self.ctx.tag_policy().changes(&want, &tags);
            if !changes.set.is_empty() {
                self.ecs
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(ecs_tags(changes.set.iter())))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("tag ECS cluster", &id, &e))?;
            }
            if !changes.remove.is_empty() {
                self.ecs
                    .untag_resource()
                    .resource_arn(&arn)
                    .set_tag_keys(Some(changes.remove))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("untag ECS cluster", &id, &e))?;
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

    /// The execution role with its trust policy, managed policies, secrets policy and tags, if
    /// it exists: GetRole (tags included), ListAttachedRolePolicies, GetRolePolicy.
    async fn find_role(&self, name: &str) -> Result<Option<Role>, DriverError> {
        let id = execution_role_id();
        let Some(mut role) = self.read_role(name).await? else {
            return Ok(None);
        };
        role.managed = self.attached_policies(name).await?.unwrap_or_default();
        role.managed.sort();
        role.secrets = match self
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(SECRETS_POLICY)
            .send()
            .await
        {
            Ok(o) => Some(policy_json(o.policy_document())),
            Err(e) if is_iam_missing(&e) => None,
            Err(e) => return Err(DriverError::aws("read IAM role policy", &id, &e)),
        };
        Ok(Some(role))
    }

    /// The role's ARN, trust and tags (GetRole alone); policies are left empty.
    async fn read_role(&self, name: &str) -> Result<Option<Role>, DriverError> {
        let out = match self.iam.get_role().role_name(name).send().await {
            Ok(o) => o,
            Err(e) if is_iam_missing(&e) => return Ok(None),
            Err(e) => return Err(DriverError::aws("read IAM role", &execution_role_id(), &e)),
        };
        let Some(role) = out.role() else {
            return Ok(None);
        };
        Ok(Some(Role {
            name: role.role_name().to_string(),
            arn: role.arn().to_string(),
            trust: role
                .assume_role_policy_document()
                .map_or(Value::Null, |d| trust_field(&policy_json(d))),
            managed: Vec::new(),
            secrets: None,
            tags: aws::tag_map(role.tags().iter().map(|t| (Some(t.key()), Some(t.value())))),
        }))
    }

    /// ARNs of the managed policies attached to a role; `None`: the role does not exist.
    async fn attached_policies(&self, name: &str) -> Result<Option<Vec<String>>, DriverError> {
        let mut arns = Vec::new();
        let mut marker = None;
        loop {
            let out = match self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) if is_iam_missing(&e) => return Ok(None),
                Err(e) => {
                    return Err(DriverError::aws(
                        "list IAM role policies",
                        &execution_role_id(),
                        &e,
                    ))
                }
            };
            arns.extend(
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            marker = out.marker().map(str::to_string);
            if !out.is_truncated() || marker.is_none() {
                return Ok(Some(arns));
            }
        }
    }

    /// Creates the role with its trust policy and tags; `None` when a role of that name
    /// appeared since it was looked up.
    async fn create_role(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Option<Role>, DriverError> {
        let id = execution_role_id();
        let out = match self
            .iam
            .create_role()
            .role_name(name)
            .path(ROLE_PATH)
            .assume_role_policy_document(trust_document(TASKS_PRINCIPAL).to_string())
            .description(format!(
                "ECS task execution role of panka stack {} ({})",
                self.ctx.naming.stack, self.ctx.naming.environment
            ))
            .set_tags(Some(iam_tags(&id, tags.iter())?))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if AwsError::from_sdk(&e).code.as_deref() == Some("EntityAlreadyExists") => {
                return Ok(None)
            }
            Err(e) => return Err(DriverError::aws("create IAM role", &id, &e)),
        };
        let role = out.role().ok_or_else(|| DriverError::Unexpected {
            component: id.clone(),
            message: format!("IAM returned no role for {name}"),
        })?;
        Ok(Some(Role {
            name: role.role_name().to_string(),
            arn: role.arn().to_string(),
            trust: Value::String(TASKS_PRINCIPAL.into()),
            managed: Vec::new(),
            secrets: None,
            tags: tags.clone(),
        }))
    }

    /// Creates the execution role or converges it: tags, trust, managed policies, and the
    /// secrets policy (written only when it differs, deleted when the stack has no secrets).
    async fn ensure_role(&self, stack: &DesiredStack) -> Result<Role, DriverError> {
        let id = execution_role_id();
        let name = execution_role_name(&self.ctx.naming);
        let want_tags = self.ctx.stack_tags();
        let region = self.region();
        let role = match self.find_role(&name).await? {
            Some(r) => r,
            None => match self.create_role(&name, &want_tags).await? {
                Some(r) => r,
                // Created by someone else since we looked: converge what is there now.
                None => self
                    .find_role(&name)
                    .await?
                    .ok_or_else(|| DriverError::Unexpected {
                        component: id.clone(),
                        message: format!("IAM role {name} both exists and does not"),
                    })?,
            },
        };
        ensure_stack_ours(&self.ctx, &id, &role.tags, format!("IAM role {name}"))?;
        self.converge_role_tags(&role, &want_tags).await?;

        if role.trust != Value::String(TASKS_PRINCIPAL.into()) {
            self.iam
                .update_assume_role_policy()
                .role_name(&name)
                .policy_document(trust_document(TASKS_PRINCIPAL).to_string())
                .send()
                .await
                .map_err(|e| DriverError::aws("set IAM role trust policy", &id, &e))?;
        }

        let want_managed = [execution_policy_arn(&region)];
        for arn in want_managed.iter().filter(|a| !role.managed.contains(a)) {
            self.iam
                .attach_role_policy()
                .role_name(&name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("attach IAM role policy", &id, &e))?;
        }
        for arn in role.managed.iter().filter(|a| !want_managed.contains(a)) {
            self.iam
                .detach_role_policy()
                .role_name(&name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("detach IAM role policy", &id, &e))?;
        }

        let refs = secret_refs(stack);
        if refs.iter().any(|r| !r.starts_with("arn:")) && role.account().is_empty() {
            return Err(DriverError::Unexpected {
                component: id,
                message: format!(
                    "cannot read the account from the ARN {} of IAM role {name}",
                    role.arn
                ),
            });
        }
        let mut resources: Vec<String> = refs
            .iter()
            .map(|r| secret_resource(r, &region, role.account()))
            .collect();
        resources.sort();
        resources.dedup();
        if resources.is_empty() {
            if role.secrets.is_some() {
                match self
                    .iam
                    .delete_role_policy()
                    .role_name(&name)
                    .policy_name(SECRETS_POLICY)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_iam_missing(&e) => {}
                    Err(e) => return Err(DriverError::aws("delete IAM role policy", &id, &e)),
                }
            }
        } else {
            let document = secrets_document(&resources);
            if role.secrets.as_ref() != Some(&document) {
                self.iam
                    .put_role_policy()
                    .role_name(&name)
                    .policy_name(SECRETS_POLICY)
                    .policy_document(document.to_string())
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("put IAM role policy", &id, &e))?;
            }
        }
        Ok(role)
    }

    /// Makes the role carry exactly panka's tags (see [`super::support`]).
    async fn converge_role_tags(
        &self,
        role: &Role,
        want: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let id = execution_role_id();
        let changes = self.ctx.tag_policy().changes(want, &role.tags);
        if !changes.set.is_empty() {
            self.iam
                .tag_role()
                .role_name(&role.name)
                .set_tags(Some(iam_tags(&id, changes.set.iter())?))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag IAM role", &id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.iam
                .untag_role()
                .role_name(&role.name)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag IAM role", &id, &e))?;
        }
        Ok(())
    }

    /// Detaches the role's managed policies, deletes its inline ones, then the role; only a
    /// role tagged as ours. "Not found" at any step counts as done.
    async fn delete_role(&self, name: &str) -> Result<(), DriverError> {
        let id = execution_role_id();
        let Some(role) = self.read_role(name).await? else {
            return Ok(());
        };
        if !self.owns(&role.tags) {
            // Not made by panka (or adopted and untagged since): leave it to whoever owns it.
            tracing::info!(role = %name, "keeping an IAM role panka does not own");
            return Ok(());
        }
        for arn in self.attached_policies(name).await?.unwrap_or_default() {
            match self
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(&arn)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_iam_missing(&e) => {}
                Err(e) => return Err(DriverError::aws("detach IAM role policy", &id, &e)),
            }
        }
        let mut marker = None;
        let mut inline = Vec::new();
        loop {
            let out = match self
                .iam
                .list_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) if is_iam_missing(&e) => return Ok(()),
                Err(e) => return Err(DriverError::aws("list IAM role policies", &id, &e)),
            };
            inline.extend(out.policy_names().iter().cloned());
            marker = out.marker().map(str::to_string);
            if !out.is_truncated() || marker.is_none() {
                break;
            }
        }
        for policy in inline {
            match self
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(&policy)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_iam_missing(&e) => {}
                Err(e) => return Err(DriverError::aws("delete IAM role policy", &id, &e)),
            }
        }
        match self.iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_iam_missing(&e) => Ok(()),
            Err(e) => Err(DriverError::aws("delete IAM role", &id, &e)),
        }
    }

    /// The load balancer with its HTTP listener and tags, if it exists.
    async fn find_alb(&self, id: &ComponentId) -> Result<Option<Alb>, DriverError> {
        let name = alb_name(&self.ctx.naming);
        let out = match self.elb.describe_load_balancers().names(&name).send().await {
            Ok(o) => o,
            Err(e) if is_missing(&AwsError::from_sdk(&e), &["LoadBalancerNotFound"]) => {
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
        let want_tags = self.ctx.stack_tags();
        let want_scheme = scheme(infra);
        let mut alb = match self.find_alb(&id).await? {
            Some(a) => {
                ensure_stack_ours(&self.ctx, &id, &a.tags, format!("load balancer {name}"))?;
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
        let changes = self.ctx.tag_policy().changes(want_tags, &alb.tags);
        if !changes.set.is_empty() {
            self.elb
                .add_tags()
                .resource_arns(&alb.arn)
                .set_tags(Some(elb_tags(changes.set.iter())))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag load balancer", &id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.elb
                .remove_tags()
                .resource_arns(&alb.arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag load balancer", &id, &e))?;
        }
        Ok(())
    }
}

/// Identifiers and outputs of the execution role.
fn role_outputs(role: &Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("arn".to_string(), role.arn.clone()),
        ("name".to_string(), role.name.clone()),
    ])
}

/// Whether an IAM error means "does not exist" (`NoSuchEntity`).
fn is_iam_missing<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::aws::HttpStatus,
{
    is_missing(&AwsError::from_sdk(e), &["NoSuchEntity"])
}

/// The trust policy letting the service `principal` assume a role.
fn trust_document(principal: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": principal },
            "Action": "sts:AssumeRole",
        }],
    })
}

/// The inline policy allowing the secrets `resources` to be read.
fn secrets_document(resources: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadStackSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": resources,
        }],
    })
}

/// A policy document as IAM returns it: URL-encoded (RFC 3986) by AWS, plain JSON by some
/// emulators. Not JSON at all: the text, so a comparison shows it as it is.
fn policy_json(raw: &str) -> Value {
    let text = raw.trim();
    let decoded = if text.starts_with('{') {
        text.to_string()
    } else {
        percent_decode(text)
    };
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The `trust` field of a trust policy: the service principal when the document is exactly
/// the one panka writes for it, else the whole document (so a diff shows what is there).
fn trust_field(doc: &Value) -> Value {
    match doc
        .pointer("/Statement/0/Principal/Service")
        .and_then(Value::as_str)
    {
        Some(service) if *doc == trust_document(service) => Value::String(service.to_string()),
        _ => doc.clone(),
    }
}

/// The `secretsPolicy` field of an inline secrets policy: `[]` when absent; the sorted
/// resources, with `account`'s own secret patterns in the planned form (see
/// [`ACCOUNT_PLACEHOLDER`]), when the document is exactly the one panka writes; else the whole
/// document.
fn secrets_field(doc: Option<&Value>, region: &str, account: &str) -> Value {
    let Some(doc) = doc else {
        return json!([]);
    };
    let resources: Option<Vec<String>> = doc
        .pointer("/Statement/0/Resource")
        .and_then(Value::as_array)
        .and_then(|r| r.iter().map(|v| v.as_str().map(str::to_string)).collect());
    let Some(resources) = resources.filter(|r| *doc == secrets_document(r)) else {
        return doc.clone();
    };
    let own = secret_prefix(region, account);
    let planned = secret_prefix(region, ACCOUNT_PLACEHOLDER);
    let mut out: Vec<String> = resources
        .into_iter()
        .map(|r| match r.strip_prefix(&own) {
            Some(name) if !account.is_empty() && name.ends_with("-*") => {
                format!("{planned}{name}")
            }
            _ => r,
        })
        .collect();
    out.sort();
    json!(out)
}

/// IAM tags from key/value pairs.
fn iam_tags<'a>(
    id: &ComponentId,
    tags: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<aws_sdk_iam::types::Tag>, DriverError> {
    tags.map(|(k, v)| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .map_err(|e| DriverError::Unexpected {
                component: id.clone(),
                message: format!("failed to build IAM tag {k}: {e}"),
            })
    })
    .collect()
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
    fn secret_references_become_exact_resources() {
        let cases = [
            (
                "/stacks/shop/db",
                "us-east-1",
                "123456789012",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:/stacks/shop/db-*",
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:210987654321:secret:x-AbCdEf",
                "us-east-1",
                "123456789012",
                "arn:aws:secretsmanager:eu-west-1:210987654321:secret:x-AbCdEf",
            ),
            (
                "db",
                "cn-north-1",
                ACCOUNT_PLACEHOLDER,
                "arn:aws-cn:secretsmanager:cn-north-1:{account}:secret:db-*",
            ),
        ];
        for (secret, region, account, want) in cases {
            assert_eq!(secret_resource(secret, region, account), want, "{secret}");
        }
        assert_eq!(
            execution_policy_arn("us-east-1"),
            "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
        );
    }

    #[test]
    fn policy_documents_are_read_url_encoded_or_plain() {
        let doc = trust_document(TASKS_PRINCIPAL);
        let encoded = doc
            .to_string()
            .replace('%', "%25")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace(':', "%3A")
            .replace(',', "%2C");
        assert_eq!(policy_json(&encoded), doc);
        assert_eq!(policy_json(&doc.to_string()), doc);
        assert_eq!(policy_json("%7Bbroken"), Value::String("{broken".into()));
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn only_panka_shaped_policies_reduce_to_their_fields() {
        assert_eq!(
            trust_field(&trust_document(TASKS_PRINCIPAL)),
            Value::String(TASKS_PRINCIPAL.into())
        );
        let mut widened = trust_document(TASKS_PRINCIPAL);
        widened["Statement"][0]["Principal"] = json!({"AWS": "*"});
        assert_eq!(trust_field(&widened), widened);

        let own = "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-*".to_string();
        let other = "arn:aws:secretsmanager:us-east-1:999999999999:secret:b-XyZ123".to_string();
        let doc = secrets_document(&[own, other.clone()]);
        assert_eq!(
            secrets_field(Some(&doc), "us-east-1", "123456789012"),
            json!([
                other,
                "arn:aws:secretsmanager:us-east-1:{account}:secret:a-*"
            ])
        );
        assert_eq!(secrets_field(None, "us-east-1", "123456789012"), json!([]));
        let mut broadened = doc.clone();
        broadened["Statement"][0]["Action"] = json!("secretsmanager:*");
        assert_eq!(
            secrets_field(Some(&broadened), "us-east-1", "123456789012"),
            broadened
        );
    }

    #[test]
    fn the_alb_name_fits_the_limit() {
        let naming = Naming::new("a-rather-long-stack-name", "production");
        let name = alb_name(&naming);
        assert!(name.len() <= 32, "{name}");
        assert!(!name.starts_with("internal-"));
    }
}
