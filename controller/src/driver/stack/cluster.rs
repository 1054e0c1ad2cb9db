//! The stack's ECS cluster (`_stack/cluster`): created if absent, its tags converged, deleted
//! (once it has no services left) only if tagged as this stack's.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::ClusterField;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};
use panka_crds::Kind;

use super::{cluster_id, cluster_name, ecs_tags, retag_ecs, unexpected};
use crate::aws;
use crate::driver::support::{ensure_stack_ours, missing, or_missing};
use crate::driver::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs,
};

/// Driver of the EcsCluster kind.
#[derive(Debug)]
pub struct ClusterDriver {
    ctx: Ctx,
    ecs: aws_sdk_ecs::Client,
}

impl ClusterDriver {
    /// A driver on `ctx`; its client counts calls in `ctx.calls`.
    pub fn new(ctx: &Ctx) -> ClusterDriver {
        ClusterDriver {
            ctx: ctx.clone(),
            ecs: counted_client!(ctx, aws_sdk_ecs),
        }
    }

    /// The cluster's ARN and tags, if it exists and is active.
    async fn find(
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

    /// Sets panka's tags and removes foreign ones (see [`crate::driver::support`]).
    async fn converge_tags(
        &self,
        arn: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let changes = self.ctx.tag_policy().changes(&self.ctx.stack_tags(), have);
        retag_ecs(&self.ecs, &cluster_id(), arn, changes, "ECS cluster").await
    }
}

fn applied(name: String, arn: String) -> Applied {
    let outputs = BTreeMap::from([("name".to_string(), name), ("arn".to_string(), arn)]);
    Applied {
        identifiers: outputs.clone(),
        outputs,
    }
}

fn name_of(component: &DesiredComponent) -> Result<&str, DriverError> {
    match &component.spec {
        ComponentSpec::EcsCluster(s) => Ok(&s.name),
        other => Err(unexpected(
            &component.id,
            format!("the EcsCluster driver was given a {}", other.kind()),
        )),
    }
}

#[async_trait]
impl Driver for ClusterDriver {
    fn kind(&self) -> Kind {
        Kind::EcsCluster
    }

    fn desired(&self, _: &DesiredComponent, _: &Outputs, _: &Lookups) -> DesiredFields {
        let mut f = DesiredFields::default();
        f.set("status", FieldValue::known("ACTIVE"));
        f.set("tags", self.ctx.tag_policy().field(&self.ctx.stack_tags()));
        f
    }

    async fn observe(
        &self,
        _: &ComponentId,
        _: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let name = cluster_name(&self.ctx.naming, &self.ctx.infra);
        let Some((arn, tags)) = self.find(&name).await? else {
            return Ok(missing());
        };
        let a = applied(name, arn);
        Ok(Observation {
            exists: true,
            owned: self.ctx.naming.owns(None, &tags),
            fields: [
                ("status".to_string(), FieldValue::known("ACTIVE")),
                ("tags".to_string(), self.ctx.tag_policy().field(&tags)),
            ]
            .into(),
            identifiers: a.identifiers,
            outputs: a.outputs,
            health: Health::Healthy,
            status: "active".into(),
            ..Observation::default()
        })
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        _: &Outputs,
        _: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = cluster_id();
        let name = name_of(component)?;
        if let Some((arn, tags)) = self.find(name).await? {
            ensure_stack_ours(&self.ctx, &id, &tags, format!("ECS cluster {name}"))?;
            self.converge_tags(&arn, &tags).await?;
            return Ok(applied(name.to_string(), arn));
        }
        let out = self
            .ecs
            .create_cluster()
            .cluster_name(name)
            .set_tags(Some(ecs_tags(self.ctx.stack_tags().iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("create ECS cluster", &id, &e))?;
        let arn = out
            .cluster()
            .and_then(|c| c.cluster_arn())
            .map(str::to_string)
            .ok_or_else(|| unexpected(&id, format!("ECS returned no ARN for cluster {name}")))?;
        Ok(applied(name.to_string(), arn))
    }

    /// Deletes the cluster (it must have no services left) if it is tagged as ours; one used
    /// but never created by panka is left to whoever made it.
    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let name = recorded
            .get("name")
            .cloned()
            .unwrap_or_else(|| cluster_name(&self.ctx.naming, &self.ctx.infra));
        let Some((_, tags)) = self.find(&name).await? else {
            return Ok(Deletion::Done);
        };
        if !self.ctx.naming.owns(None, &tags) {
            tracing::info!(cluster = %name, "keeping an ECS cluster panka does not own");
            return Ok(Deletion::Done);
        }
        or_missing(
            self.ecs.delete_cluster().cluster(&name).send().await,
            &[],
            "delete ECS cluster",
            id,
        )?;
        Ok(Deletion::Done)
    }
}
