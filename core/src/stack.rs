//! Stage **resolve**, last step (pure): the stack-wide resources a stack needs, as ordinary
//! nodes of its graph.
//!
//! Every container and database of a stack/environment runs on a few resources that belong to
//! the stack rather than to one component. [`add_resources`] derives them from the resolved
//! components and the StackInfra, adds them to [`DesiredStack::components`] under reserved ids
//! (service `_stack`; a user's service name starts with a letter, so they never clash), and adds
//! a [`RefKind::Stack`] reference from every component that needs one. From there on they are
//! planned, applied, recorded and deleted like any component, each by its own driver, in the
//! waves the graph gives them (the network, the cluster and the execution role in the first,
//! the load balancer after the network, the components after what they run on).
//!
//! | id | kind | what | needed by |
//! |---|---|---|---|
//! | [`network_id`] `_stack/network` | Network | VPC, subnets, security groups (a lookup, never created) | MicroService, Worker, RDS, ElastiCacheRedis |
//! | [`cluster_id`] `_stack/cluster` | EcsCluster | the ECS cluster | MicroService, Worker |
//! | [`execution_role_id`] `_stack/execution-role` | ExecutionRole | the task execution role (image pulls, logs, secrets) | MicroService, Worker |
//! | [`alb_id`] `_stack/alb` | LoadBalancer | application load balancer + HTTP listener | a MicroService with `loadBalancer.enabled` |
//!
//! A stack that stops needing one (its last MicroService behind the load balancer removed)
//! deletes it after its dependants, as with any component; only a stack-wide run does, since a
//! service-scoped one cannot know what the other services need.

use std::collections::BTreeSet;

use panka_crds::spec::StackInfraSpec;
use serde::{Deserialize, Serialize};

use crate::model::{
    ComponentId, ComponentSpec, DesiredComponent, DesiredStack, RefKind, Reference,
};
use crate::naming::{NameRules, Naming};

/// Reserved service name of the stack-wide resources.
pub const SERVICE: &str = "_stack";
/// Port of the load balancer's listener.
pub const LISTENER_PORT: u16 = 80;

/// `_stack/network`: the VPC, subnets and security groups tasks and databases run in.
pub fn network_id() -> ComponentId {
    ComponentId::new(SERVICE, "network")
}

/// `_stack/cluster`: the ECS cluster.
pub fn cluster_id() -> ComponentId {
    ComponentId::new(SERVICE, "cluster")
}

/// `_stack/alb`: the application load balancer and its HTTP listener.
pub fn alb_id() -> ComponentId {
    ComponentId::new(SERVICE, "alb")
}

/// `_stack/execution-role`: the ECS task execution role; its `arn` output is the task
/// definitions' execution role.
pub fn execution_role_id() -> ComponentId {
    ComponentId::new(SERVICE, "execution-role")
}

/// The network a stack runs in, as StackInfra `networking` selects it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// A `vpc-…` id; `None`: the account's default VPC, or the VPC of the explicit subnets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// Explicit subnet ids, sorted; empty: every subnet of the VPC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Explicit security group ids, sorted; empty: the VPC's `default` group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

impl NetworkSpec {
    /// The network StackInfra selects.
    pub fn of(infra: &StackInfraSpec) -> NetworkSpec {
        let net = infra.networking.clone().unwrap_or_default();
        NetworkSpec {
            vpc: net.vpc.filter(|v| v != "default" && !v.is_empty()),
            subnets: sorted(net.subnets),
            security_groups: sorted(net.security_groups),
        }
    }

    /// How the VPC is chosen, as plans show it: the id, `(vpc of the subnets)` or `default`.
    pub fn selector(&self) -> String {
        match &self.vpc {
            Some(v) => v.clone(),
            None if !self.subnets.is_empty() => "(vpc of the subnets)".into(),
            None => "default".into(),
        }
    }
}

/// The ECS cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Its name: StackInfra `cluster`, or `{stack}-{env}-cluster`.
    pub name: String,
}

/// The application load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// Its name (32 characters at most).
    pub name: String,
    /// Internet-facing exactly when the stack's tasks get public IPs (same subnets); internal
    /// otherwise.
    pub internet_facing: bool,
}

/// The ECS task execution role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRoleSpec {
    /// Its name (64 characters at most).
    pub name: String,
    /// The Secrets Manager references of the stack's MicroServices and Workers, sorted: what
    /// the role may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_refs: Vec<String>,
    /// The managed policy set as its permissions boundary (StackInfra
    /// `executionRole.permissionsBoundary`); `None`: whatever the role has is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
}

/// The ECS cluster's name: StackInfra `cluster` (already `${VAR}`-substituted) or
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

/// The execution role's name (64 characters at most).
pub fn execution_role_name(naming: &Naming) -> String {
    naming.shared("ecs-execution", NameRules::IAM_ROLE)
}

/// Whether the stack's tasks get a public IP by default: `networking.assignPublicIp`, else true
/// in the default VPC (public subnets, no NAT) and false in an explicit one.
pub fn stack_assigns_public_ip(infra: &StackInfraSpec) -> bool {
    let net = infra.networking.as_ref();
    let vpc = net.and_then(|n| n.vpc.as_deref());
    let subnets = net.map(|n| n.subnets.as_slice()).unwrap_or_default();
    let default_vpc = matches!(vpc, None | Some("default")) && subnets.is_empty();
    net.and_then(|n| n.assign_public_ip).unwrap_or(default_vpc)
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

/// Whether a MicroService sits behind the stack's load balancer.
pub fn uses_load_balancer(c: &DesiredComponent) -> bool {
    matches!(c.spec, ComponentSpec::MicroService(_))
        && c.infra
            .as_ref()
            .and_then(|i| i.networking.as_ref())
            .and_then(|n| n.load_balancer.as_ref())
            .and_then(|lb| lb.enabled)
            .unwrap_or(false)
}

/// What one component needs of the stack-wide resources.
fn needs(c: &DesiredComponent) -> Vec<ComponentId> {
    match &c.spec {
        ComponentSpec::MicroService(_) | ComponentSpec::Worker(_) => {
            let mut ids = vec![network_id(), cluster_id(), execution_role_id()];
            if uses_load_balancer(c) {
                ids.push(alb_id());
            }
            ids
        }
        ComponentSpec::Rds(_) | ComponentSpec::ElastiCacheRedis(_) => vec![network_id()],
        _ => Vec::new(),
    }
}

/// Adds the stack-wide resources `stack` needs (see the module documentation) and a reference
/// to each from every component that needs it. `source` is the file they are attributed to
/// (the StackInfra file, else `stack.yaml`). Idempotent.
pub fn add_resources(stack: &mut DesiredStack, source: &str) {
    let mut needed: BTreeSet<ComponentId> = BTreeSet::new();
    for c in stack.components.values_mut() {
        if c.kind().is_stack_resource() {
            continue;
        }
        for target in needs(c) {
            let known = c
                .references
                .iter()
                .any(|r| r.target == target && r.kind == RefKind::Stack);
            if !known {
                c.references.push(Reference {
                    target: target.clone(),
                    kind: RefKind::Stack,
                    span: None,
                });
            }
            needed.insert(target);
        }
    }
    let naming = Naming::new(&stack.name, &stack.environment);
    let infra = &stack.infra;
    let mut resources = Vec::new();
    for id in &needed {
        let (spec, references) = if *id == network_id() {
            (ComponentSpec::Network(NetworkSpec::of(infra)), Vec::new())
        } else if *id == cluster_id() {
            let name = cluster_name(&naming, infra);
            (ComponentSpec::EcsCluster(ClusterSpec { name }), Vec::new())
        } else if *id == execution_role_id() {
            let spec = ExecutionRoleSpec {
                name: execution_role_name(&naming),
                secret_refs: secret_refs(stack),
                permissions_boundary: infra
                    .execution_role
                    .as_ref()
                    .and_then(|r| r.permissions_boundary.clone()),
            };
            (ComponentSpec::ExecutionRole(spec), Vec::new())
        } else {
            let spec = LoadBalancerSpec {
                name: alb_name(&naming),
                internet_facing: stack_assigns_public_ip(infra),
            };
            // Created in the network's subnets, with its security groups.
            let on_network = Reference {
                target: network_id(),
                kind: RefKind::Stack,
                span: None,
            };
            (ComponentSpec::LoadBalancer(spec), vec![on_network])
        };
        resources.push(DesiredComponent {
            id: id.clone(),
            spec,
            infra: None,
            configs: Vec::new(),
            references,
            description: None,
            labels: Default::default(),
            source: source.to_string(),
        });
    }
    for r in resources {
        stack.components.insert(r.id.clone(), r);
    }
}

fn sorted(items: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = items.into_iter().collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use panka_crds::spec::StackNetworking;
    use panka_crds::Kind;

    use super::*;

    fn infra(net: Option<StackNetworking>) -> StackInfraSpec {
        StackInfraSpec {
            networking: net,
            ..StackInfraSpec::default()
        }
    }

    #[test]
    fn the_cluster_is_named_by_infra_or_after_the_stack() {
        let naming = Naming::new("shop", "dev");
        assert_eq!(cluster_name(&naming, &infra(None)), "shop-dev-cluster");
        let named = StackInfraSpec {
            cluster: Some("shared-cluster".into()),
            ..StackInfraSpec::default()
        };
        assert_eq!(cluster_name(&naming, &named), "shared-cluster");
    }

    #[test]
    fn the_default_vpc_gets_public_ips_and_an_explicit_one_does_not() {
        assert!(stack_assigns_public_ip(&infra(None)));
        let explicit = StackNetworking {
            vpc: Some("vpc-123".into()),
            ..StackNetworking::default()
        };
        assert!(!stack_assigns_public_ip(&infra(Some(explicit.clone()))));
        let public = StackNetworking {
            assign_public_ip: Some(true),
            ..explicit
        };
        assert!(stack_assigns_public_ip(&infra(Some(public))));
    }

    #[test]
    fn the_network_selector_names_how_the_vpc_is_chosen() {
        assert_eq!(NetworkSpec::of(&infra(None)).selector(), "default");
        let subnets = StackNetworking {
            subnets: vec!["subnet-b".into(), "subnet-a".into(), "subnet-a".into()],
            ..StackNetworking::default()
        };
        let spec = NetworkSpec::of(&infra(Some(subnets)));
        assert_eq!(spec.selector(), "(vpc of the subnets)");
        assert_eq!(spec.subnets, ["subnet-a", "subnet-b"]);
        let vpc = StackNetworking {
            vpc: Some("vpc-9".into()),
            ..StackNetworking::default()
        };
        assert_eq!(NetworkSpec::of(&infra(Some(vpc))).selector(), "vpc-9");
    }

    fn example(stack: &str) -> DesiredStack {
        let tree = crate::source::read_example(stack);
        let loaded = crate::validate::load_tree(stack, &tree).expect("example loads");
        let options = crate::resolve::Options::default();
        crate::validate::plan_input(&loaded, "development", &options)
            .expect("example resolves")
            .0
    }

    fn runs_on(stack: &DesiredStack, id: &str) -> Vec<String> {
        let id = ComponentId::try_from(id.to_string()).expect("id");
        stack.components[&id]
            .references
            .iter()
            .filter(|r| r.kind == RefKind::Stack)
            .map(|r| r.target.to_string())
            .collect()
    }

    #[test]
    fn containers_and_databases_get_what_they_run_on() {
        let stack = example("notification-platform");
        let derived: Vec<String> = stack
            .components
            .values()
            .filter(|c| c.kind().is_stack_resource())
            .map(|c| format!("{} {}", c.id, c.kind()))
            .collect();
        assert_eq!(
            derived,
            [
                "_stack/alb LoadBalancer",
                "_stack/cluster EcsCluster",
                "_stack/execution-role ExecutionRole",
                "_stack/network Network"
            ]
        );
        assert_eq!(
            runs_on(&stack, "email-service/api"),
            [
                "_stack/network",
                "_stack/cluster",
                "_stack/execution-role",
                "_stack/alb"
            ]
        );
        assert_eq!(
            runs_on(&stack, "email-service/database"),
            ["_stack/network"]
        );
        assert!(runs_on(&stack, "email-service/queue").is_empty());
        assert_eq!(runs_on(&stack, "_stack/alb"), ["_stack/network"]);
        let ComponentSpec::ExecutionRole(role) = &stack.components[&execution_role_id()].spec
        else {
            panic!("the role's spec");
        };
        assert_eq!(role.secret_refs, secret_refs(&stack));

        // Deriving again changes nothing.
        let mut again = stack.clone();
        add_resources(&mut again, "infra/stack.yaml");
        let refs =
            |s: &DesiredStack| -> usize { s.components.values().map(|c| c.references.len()).sum() };
        assert_eq!(refs(&again), refs(&stack));
        assert_eq!(again.components.len(), stack.components.len());
    }

    #[test]
    fn a_stack_without_containers_needs_only_the_network_of_its_databases() {
        let mut stack = example("notification-platform");
        stack
            .components
            .retain(|id, c| id.service != SERVICE && !c.kind().is_container());
        for c in stack.components.values_mut() {
            c.references.retain(|r| r.kind != RefKind::Stack);
        }
        add_resources(&mut stack, "stack.yaml");
        let derived: Vec<String> = stack
            .components
            .keys()
            .filter(|id| id.service == SERVICE)
            .map(ToString::to_string)
            .collect();
        assert_eq!(derived, ["_stack/network"]);
        stack.components.retain(|_, c| c.kind() == Kind::Sqs);
        stack
            .components
            .values_mut()
            .for_each(|c| c.references.clear());
        add_resources(&mut stack, "stack.yaml");
        assert!(stack.components.keys().all(|id| id.service != SERVICE));
    }

    #[test]
    fn the_load_balancer_name_fits_the_limit() {
        let long = Naming::new("a-very-long-stack-name-indeed", "production");
        assert!(alb_name(&long).len() <= 32, "{}", alb_name(&long));
    }
}
