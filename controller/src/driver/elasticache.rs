//! ElastiCacheRedis driver: a Redis replication group (cluster mode disabled) with id
//! `{stack}-{env}-{service}-{component}` (at most 40 characters): engine version, node type,
//! number of nodes (one node group with `ReplicasPerNodeGroup` = nodes − 1: the primary plus replicas, automatic failover and
//! multi-AZ when more than one), encryption at rest and in transit, an AUTH token read from
//! Secrets Manager at creation (never compared, recorded or logged), and panka's tags.
//!
//! **ElastiCache changes are applied by replacement.** Every compared setting but the tags is a
//! replace field: the plan shows a replacement (dangerous, since the cache's data goes), and
//! `update` changes only tags. This keeps one code path that the emulator can exercise (moto
//! implements no ModifyReplicationGroup) instead of an in-place path nobody tested.
//!
//! The engine version is read from the first member cache cluster (ReplicationGroup carries
//! none), compared as `major.minor`. Delete starts the deletion and returns; a later create of the
//! same id waits (bounded) for a group still `deleting` to disappear, which is what a replace
//! needs.
//!
//! The group goes into the default VPC's default cache subnet group, with the stack's security
//! groups when listed.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticache::types::{ReplicationGroup, Tag};
use aws_sdk_elasticache::Client;
use panka_crds::spec::ElastiCacheRedisSpec;
use panka_crds::Kind;
use serde_json::{json, Value};

use super::{Applied, Ctx, Driver, DriverError, Outputs};
use crate::aws::AwsError;
use crate::model::{ComponentId, ComponentSpec, DesiredComponent};
use crate::naming::NameRules;
use crate::plan::{DesiredFields, FieldValue, Health, Observation};
use crate::secret;

/// Why any compared setting but the tags needs a new replication group.
pub const REPLACE_REASON: &str = "ElastiCache changes are applied by replacement";
/// Identifier key recording the engine version asked for at creation: the fallback when the
/// member clusters cannot be described (see [`ElastiCacheDriver::observe`]).
const VERSION_KEY: &str = "engineVersion";
/// Longest wait for a group being deleted to disappear before one of the same id is created.
const DELETING_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Pause between two DescribeReplicationGroups calls while waiting.
const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The ElastiCacheRedis driver.
pub struct ElastiCacheDriver {
    client: Client,
    secrets: aws_sdk_secretsmanager::Client,
    ctx: Ctx,
}

impl ElastiCacheDriver {
    /// A driver on the shared context.
    pub fn new(ctx: &Ctx) -> ElastiCacheDriver {
        let config = aws_sdk_elasticache::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let secrets = aws_sdk_secretsmanager::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        ElastiCacheDriver {
            client: Client::from_conf(config),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
            ctx: ctx.clone(),
        }
    }

    /// The replication group id of a component (ElastiCache stores it lowercase).
    pub fn group_id(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, None, NameRules::REPLICATION_GROUP)
            .to_lowercase()
    }

    async fn group(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<Option<ReplicationGroup>, DriverError> {
        match self
            .client
            .describe_replication_groups()
            .replication_group_id(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.replication_groups().first().cloned()),
            Err(e) if is_missing(&AwsError::from_sdk(&e)) => Ok(None),
            Err(e) => Err(DriverError::aws("describe replication group", id, &e)),
        }
    }

    async fn tags(
        &self,
        id: &ComponentId,
        arn: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        let out = self
            .client
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read replication group tags", id, &e))?;
        Ok(out
            .tag_list()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .filter(|(k, _)| !k.starts_with("aws:"))
            .collect())
    }

    /// The engine version of the group's first member cluster, if it can be described.
    async fn engine_version(
        &self,
        id: &ComponentId,
        group: &ReplicationGroup,
    ) -> Result<Option<String>, DriverError> {
        let Some(member) = group.member_clusters().first() else {
            return Ok(None);
        };
        match self
            .client
            .describe_cache_clusters()
            .cache_cluster_id(member)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .cache_clusters()
                .first()
                .and_then(|c| c.engine_version())
                .map(str::to_string)),
            // moto 5.1.22 lists member ids but creates no cache clusters for them.
            Err(e) if is_missing(&AwsError::from_sdk(&e)) => Ok(None),
            Err(e) => Err(DriverError::aws("describe member cache cluster", id, &e)),
        }
    }

    /// Waits, bounded, for a group in `deleting` to disappear.
    async fn wait_deleted(&self, id: &ComponentId, name: &str) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + DELETING_TIMEOUT;
        while let Some(g) = self.group(id, name).await? {
            if g.status() != Some("deleting") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Unexpected {
                    component: id.clone(),
                    message: format!(
                        "replication group {name} is still being deleted after {} minutes",
                        DELETING_TIMEOUT.as_secs() / 60
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }

    async fn create_group(
        &self,
        id: &ComponentId,
        spec: &ElastiCacheRedisSpec,
        name: &str,
    ) -> Result<(), DriverError> {
        let security = spec.security.clone().unwrap_or_default();
        let token = match &security.auth_token_secret {
            Some(reference) => Some(
                secret::read_password(&self.secrets, reference)
                    .await
                    .map_err(|e| match e.aws() {
                        Some(source) => DriverError::Aws {
                            action: format!(
                                "read the AUTH token secret {} for",
                                reference.secret_ref
                            ),
                            component: id.clone(),
                            source: source.clone().into(),
                        },
                        None => DriverError::Unexpected {
                            component: id.clone(),
                            message: e.to_string(),
                        },
                    })?,
            ),
            None => None,
        };
        let tags: Vec<Tag> = self
            .ctx
            .tags(id)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let nodes = spec.cluster.num_nodes.max(1);
        let groups = self
            .ctx
            .infra
            .networking
            .as_ref()
            .map(|n| n.security_groups.clone())
            .filter(|g| !g.is_empty());
        let mut req = self
            .client
            .create_replication_group()
            .replication_group_id(name)
            .replication_group_description(format!("panka {id}"))
            .engine("redis")
            .engine_version(&spec.engine.version)
            .cache_node_type(&spec.cluster.node_type)
            // One shard of `nodes` members: AWS accepts this for cluster mode disabled, and the
            // emulator honours it where it ignores NumCacheClusters.
            .num_node_groups(1)
            .replicas_per_node_group(i32::try_from(nodes.saturating_sub(1)).unwrap_or(i32::MAX))
            .automatic_failover_enabled(nodes > 1)
            .multi_az_enabled(nodes > 1)
            .at_rest_encryption_enabled(security.at_rest_encryption.unwrap_or(false))
            .transit_encryption_enabled(security.transit_encryption.unwrap_or(false))
            .set_security_group_ids(groups)
            .set_tags(Some(tags));
        if let Some(token) = &token {
            req = req.auth_token(token.expose());
        }
        let result = req.send().await;
        drop(token);
        match result {
            Ok(_) => Ok(()),
            // Created since we looked: converge() reads it again and checks its tags.
            Err(e) if has_code(&AwsError::from_sdk(&e), "ReplicationGroupAlreadyExists") => Ok(()),
            Err(e) => Err(DriverError::aws("create replication group", id, &e)),
        }
    }

    async fn reconcile(&self, component: &DesiredComponent) -> Result<Applied, DriverError> {
        let id = &component.id;
        let spec = spec_of(component)?;
        let name = self.group_id(id);
        let mut existing = self.group(id, &name).await?;
        if existing
            .as_ref()
            .is_some_and(|g| g.status() == Some("deleting"))
        {
            // A replace deleted it a moment ago: the id is free only once it is gone.
            self.wait_deleted(id, &name).await?;
            existing = self.group(id, &name).await?;
        }
        let group = match existing {
            Some(g) => g,
            None => {
                self.create_group(id, spec, &name).await?;
                self.group(id, &name)
                    .await?
                    .ok_or_else(|| DriverError::Unexpected {
                        component: id.clone(),
                        message: format!("replication group {name} vanished while being created"),
                    })?
            }
        };
        let arn = group.arn().unwrap_or_default().to_string();
        let have = self.tags(id, &arn).await?;
        if !self.ctx.may_touch(id, &have) {
            return Err(DriverError::NotOurs {
                component: id.clone(),
                what: format!("replication group {name}"),
            });
        }
        // Tags are the one thing changed in place (see the module docs).
        let want = self.ctx.tags(id);
        let missing: Vec<Tag> = want
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        if !missing.is_empty() {
            self.client
                .add_tags_to_resource()
                .resource_name(&arn)
                .set_tags(Some(missing))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag replication group", id, &e))?;
        }
        let extra: Vec<String> = have
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        if !extra.is_empty() {
            self.client
                .remove_tags_from_resource()
                .resource_name(&arn)
                .set_tag_keys(Some(extra))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag replication group", id, &e))?;
        }
        let mut applied = applied_of(&group);
        applied
            .identifiers
            .insert(VERSION_KEY.into(), spec.engine.version.clone());
        Ok(applied)
    }
}

fn spec_of(component: &DesiredComponent) -> Result<&ElastiCacheRedisSpec, DriverError> {
    match &component.spec {
        ComponentSpec::ElastiCacheRedis(s) => Ok(s),
        other => Err(DriverError::Unexpected {
            component: component.id.clone(),
            message: format!("the ElastiCacheRedis driver was given a {}", other.kind()),
        }),
    }
}

fn is_missing(err: &AwsError) -> bool {
    super::is_missing(
        err,
        &["ReplicationGroupNotFoundFault", "CacheClusterNotFound"],
    )
}

fn has_code(err: &AwsError, code: &str) -> bool {
    err.code.as_deref() == Some(code)
}

/// `major.minor` of a version: AWS reports `7.0.7` for a group created as `7.0`.
pub fn major_minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The compared fields a spec asks for, in the normal form observe produces.
fn group_fields(spec: &ElastiCacheRedisSpec) -> Vec<(&'static str, Value)> {
    let security = spec.security.clone().unwrap_or_default();
    vec![
        ("engineVersion", json!(major_minor(&spec.engine.version))),
        ("nodeType", json!(spec.cluster.node_type)),
        ("numNodes", json!(spec.cluster.num_nodes.max(1))),
        (
            "atRestEncryption",
            json!(security.at_rest_encryption.unwrap_or(false)),
        ),
        (
            "transitEncryption",
            json!(security.transit_encryption.unwrap_or(false)),
        ),
        ("authToken", json!(security.auth_token_secret.is_some())),
    ]
}

/// Identifiers and outputs of a described group.
fn applied_of(group: &ReplicationGroup) -> Applied {
    let mut a = Applied::default();
    let name = group.replication_group_id().unwrap_or_default().to_string();
    let arn = group.arn().unwrap_or_default().to_string();
    a.identifiers.insert("name".into(), name);
    a.identifiers.insert("arn".into(), arn.clone());
    a.outputs.insert("arn".into(), arn);
    let node_group = group.node_groups().first();
    if let Some(primary) = node_group.and_then(|n| n.primary_endpoint()) {
        if let Some(address) = primary.address() {
            a.outputs.insert("endpoint".into(), address.to_string());
        }
        a.outputs
            .insert("port".into(), primary.port().unwrap_or(6379).to_string());
    }
    // AWS always reports a reader endpoint for a cluster-mode-disabled group; moto 5.1.22 never
    // does. Reads from the primary are correct, so the primary stands in rather than leaving an
    // output that `valueFrom` may name unset.
    let reader = node_group
        .and_then(|n| n.reader_endpoint())
        .and_then(|r| r.address())
        .or_else(|| {
            node_group
                .and_then(|n| n.primary_endpoint())
                .and_then(|p| p.address())
        });
    if let Some(address) = reader {
        a.outputs
            .insert("readerEndpoint".into(), address.to_string());
    }
    a
}

fn health(status: &str) -> Health {
    match status {
        "available" => Health::Healthy,
        "creating" | "modifying" | "snapshotting" => Health::Progressing,
        other => Health::Degraded(format!("replication group is {other}")),
    }
}

#[async_trait]
impl Driver for ElastiCacheDriver {
    fn kind(&self) -> Kind {
        Kind::ElastiCacheRedis
    }

    fn desired(&self, component: &DesiredComponent, _outputs: &Outputs) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Ok(spec) = spec_of(component) else {
            return f;
        };
        for (name, value) in group_fields(spec) {
            f.set_replace(name, FieldValue::Known(value), REPLACE_REASON);
        }
        f.set("tags", FieldValue::known(self.ctx.tags(&component.id)));
        f
    }

    /// Reads the group, its tags and the engine version of its first member. When the member
    /// cannot be described (moto 5.1.22 creates none), the version recorded at creation
    /// (`recorded["engineVersion"]`) stands in and is passed on in the identifiers; without a
    /// record the field is left out, so a plan shows it as a difference rather than guess.
    async fn observe(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let mut o = Observation::default();
        let name = recorded
            .and_then(|r| r.get("name").cloned())
            .unwrap_or_else(|| self.group_id(id));
        let Some(group) = self.group(id, &name).await? else {
            o.status = "missing".into();
            return Ok(o);
        };
        let tags = self.tags(id, group.arn().unwrap_or_default()).await?;
        o.exists = true;
        o.owned = self.ctx.naming.owns(Some(id), &tags);
        let a = applied_of(&group);
        o.identifiers = a.identifiers;
        o.outputs = a.outputs;
        let version = match self.engine_version(id, &group).await? {
            Some(v) => Some(v),
            None => {
                let fallback = recorded.and_then(|r| r.get(VERSION_KEY)).cloned();
                if let Some(v) = &fallback {
                    o.identifiers.insert(VERSION_KEY.into(), v.clone());
                }
                fallback
            }
        };
        if let Some(v) = version {
            o.fields
                .insert("engineVersion".into(), FieldValue::known(major_minor(&v)));
        }
        let fields = [
            ("nodeType", json!(group.cache_node_type())),
            ("numNodes", json!(group.member_clusters().len())),
            (
                "atRestEncryption",
                json!(group.at_rest_encryption_enabled().unwrap_or(false)),
            ),
            (
                "transitEncryption",
                json!(group.transit_encryption_enabled().unwrap_or(false)),
            ),
            (
                "authToken",
                json!(group.auth_token_enabled().unwrap_or(false)),
            ),
        ];
        for (k, v) in fields {
            o.fields.insert(k.to_string(), FieldValue::Known(v));
        }
        o.fields.insert("tags".into(), FieldValue::known(&tags));
        o.status = group.status().unwrap_or("unknown").to_string();
        o.health = health(&o.status);
        Ok(o)
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
    ) -> Result<Applied, DriverError> {
        self.reconcile(component).await
    }

    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let name = recorded
            .get("name")
            .cloned()
            .unwrap_or_else(|| self.group_id(id));
        let Some(group) = self.group(id, &name).await? else {
            return Ok(());
        };
        if group.status() == Some("deleting") {
            // Already on its way out: nothing more to ask.
            return Ok(());
        }
        let tags = self.tags(id, group.arn().unwrap_or_default()).await?;
        if !self.ctx.may_touch(id, &tags) {
            return Err(DriverError::NotOurs {
                component: id.clone(),
                what: format!("replication group {name}"),
            });
        }
        match self
            .client
            .delete_replication_group()
            .replication_group_id(&name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e)) => Ok(()),
            Err(e) => Err(DriverError::aws("delete replication group", id, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_major_minor() {
        assert_eq!(major_minor("7.0.7"), "7.0");
        assert_eq!(major_minor("7.0"), "7.0");
        assert_eq!(major_minor("7"), "7");
    }
}
