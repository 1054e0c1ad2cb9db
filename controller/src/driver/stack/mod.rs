//! Stages **observe** and **apply** of the stack-wide resources: one ordinary [`Driver`] per
//! kind, for the nodes [`panka_core::stack`] adds to a stack's graph.
//!
//! | kind | driver | creates | outputs |
//! |---|---|---|---|
//! | Network `_stack/network` | [`network::NetworkDriver`] | nothing: a read-only lookup | `vpcId`, `subnets`, `securityGroups` (comma-separated) |
//! | EcsCluster `_stack/cluster` | [`cluster::ClusterDriver`] | the ECS cluster, if absent | `name`, `arn` |
//! | ExecutionRole `_stack/execution-role` | [`role::RoleDriver`] | the IAM task execution role | `arn`, `name` |
//! | LoadBalancer `_stack/alb` | [`alb::AlbDriver`] | the ALB and its HTTP:80 listener (fixed 404 by default) | `arn`, `dnsName`, `listenerArn` |
//!
//! Network selection (StackInfra `networking`): `vpc: default` or no `vpc` means the account's
//! default VPC of the region; a `vpc-…` id is used as given. `subnets` default to every subnet of
//! the VPC, `securityGroups` to the VPC's `default` group; explicit ids are used as given (and
//! checked to exist). Tasks get a public IP when `assignPublicIp` says so, or by default in the
//! default VPC (whose subnets are public and have no NAT); the load balancer is internet-facing
//! exactly when the stack's tasks get public IPs (same subnets), internal otherwise.
//!
//! The cluster, the load balancer and the execution role carry the stack's ownership tags
//! (without service and component). One with our name but without them is a conflict unless
//! `--adopt`; with `--adopt` it is tagged and from then on ours. Deleting removes the load
//! balancer, the cluster or the role (after detaching its policies), never the network, and
//! never one that is not tagged as ours. Their tags converge like every component's
//! ([`super::support`]): panka's are set, StackInfra `ignoreTags` are left alone, any other tag
//! is removed.

pub mod alb;
pub mod cluster;
pub mod network;
pub mod role;

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use super::support::TagChanges;
use super::{DriverError, Outputs};
use crate::aws::AwsError;
use panka_core::model::ComponentId;

pub use panka_core::stack::{
    alb_id, cluster_id, cluster_name, execution_role_id, network_id, stack_assigns_public_ip,
};

/// Port of the load balancer's listener.
pub const LISTENER_PORT: i32 = 80;

/// How the listener shows in plans.
fn listener_label() -> String {
    format!("HTTP:{LISTENER_PORT}")
}

/// An EC2 filter on one value.
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
        return unexpected(id, format!("failed to {action}: {}", err.message));
    }
    DriverError::Aws {
        action: action.to_string(),
        component: id.clone(),
        source: Box::new(err),
    }
}

fn unexpected(id: &ComponentId, message: impl Into<String>) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: message.into(),
    }
}

/// A comma-separated output as a list (empty items dropped).
fn split_output(outputs: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    outputs
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The network's subnets (the `subnets` output of [`network_id`]), sorted: where component `id`
/// puts its DB or cache subnet group.
pub(crate) fn network_subnets(
    outputs: &Outputs,
    id: &ComponentId,
) -> Result<Vec<String>, DriverError> {
    let net = outputs.get(&network_id()).ok_or_else(|| {
        unexpected(
            id,
            format!(
                "the outputs of {} are not known: the network lookup did not run before it",
                network_id()
            ),
        )
    })?;
    let subnets = super::support::sorted(split_output(net, "subnets"));
    if subnets.is_empty() {
        return Err(unexpected(
            id,
            format!("{} has no subnets to place {id} in", network_id()),
        ));
    }
    Ok(subnets)
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

/// Sends `changes` (see [`super::support::TagPolicy::changes`]) to an ECS resource (a cluster, a
/// service): the one place the ECS tag calls are made. `what` names it in errors.
pub(crate) async fn retag_ecs(
    ecs: &aws_sdk_ecs::Client,
    id: &ComponentId,
    arn: &str,
    changes: TagChanges,
    what: &str,
) -> Result<(), DriverError> {
    if !changes.set.is_empty() {
        ecs.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecs_tags(changes.set.iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws(&format!("tag {what}"), id, &e))?;
    }
    if !changes.remove.is_empty() {
        ecs.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(changes.remove))
            .send()
            .await
            .map_err(|e| DriverError::aws(&format!("untag {what}"), id, &e))?;
    }
    Ok(())
}

/// Sends `changes` to an ELB resource (the load balancer, a target group, a listener rule): the
/// one place the ELB tag calls are made. `what` names it in errors.
pub(crate) async fn retag_elb(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    id: &ComponentId,
    arn: &str,
    changes: TagChanges,
    what: &str,
) -> Result<(), DriverError> {
    if !changes.set.is_empty() {
        elb.add_tags()
            .resource_arns(arn)
            .set_tags(Some(elb_tags(changes.set.iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws(&format!("tag {what}"), id, &e))?;
    }
    if !changes.remove.is_empty() {
        elb.remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(changes.remove))
            .send()
            .await
            .map_err(|e| DriverError::aws(&format!("untag {what}"), id, &e))?;
    }
    Ok(())
}
