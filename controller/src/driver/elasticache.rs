//! ElastiCacheRedis driver: a cache subnet group and a Redis replication group (cluster mode
//! disabled) with id `{stack}-{env}-{service}-{component}` (at most 40 characters): engine
//! version, node type, number of nodes (one node group with `ReplicasPerNodeGroup` = nodes − 1:
//! the primary plus replicas, automatic failover and multi-AZ when more than one), encryption at
//! rest and in transit, an AUTH token read from Secrets Manager at creation (never compared,
//! recorded or logged), and panka's tags.
//!
//! **ElastiCache changes are applied by replacement.** Every compared setting but the tags is a
//! replace field: the plan shows a replacement (dangerous, since the cache's data goes), and
//! `update` changes only tags. This keeps one code path that the emulator can exercise (moto
//! implements no ModifyReplicationGroup) instead of an in-place path nobody tested.
//!
//! **Placement.** Like the RDS driver's DB subnet group, each component gets a cache subnet group
//! named like the component (lowercase, tagged like the group) holding the stack's subnets:
//! `networking.subnets` when listed, else every subnet of `networking.vpc` or of the default VPC
//! ([`super::rds::stack_subnets`]). The group is created in it, with the stack's security groups
//! when listed; its name is recorded as the `subnetGroup` identifier. Every converge keeps the
//! subnet group's subnets and tags as they should be; the replication group's placement is fixed
//! at creation (a group created before panka made subnet groups stays where it is until replaced).
//!
//! The engine version is read from the first member cache cluster (ReplicationGroup carries
//! none), compared as `major.minor`. Observing a plan's groups lists every replication group and
//! every cache cluster once (one paginated DescribeReplicationGroups and DescribeCacheClusters)
//! and reads tags only of the groups that exist, instead of describing each group on its own.
//!
//! **Delete** starts the group's deletion and never waits for it: while the group is still
//! there it answers [`Deletion::Progressing`], and the next delete call (the CLI's next step, the
//! controller's next reconcile) looks again; once the group is gone it deletes the cache subnet
//! group (which cannot go while in use) when it carries our tags. The engine gives up after its
//! deletion timeout, keeping the component in state. A create of an id whose group is still
//! `deleting` is refused as `StillDeleting` (a replace waits for its delete to finish first).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticache::types::{CacheSubnetGroup, ReplicationGroup, Tag};
use aws_sdk_elasticache::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use panka_crds::spec::ElastiCacheRedisSpec;
use panka_crds::Kind;
use serde_json::{json, Value};

use super::rds::{missing, read_secret, sorted, stack_subnets};
use super::{Applied, Ctx, Deletion, Driver, DriverError, Lookups, Observe, Outputs};
use crate::aws::{self, AwsError};
use crate::secret::SecretString;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};

/// Why any compared setting but the tags needs a new replication group.
pub const REPLACE_REASON: &str = "ElastiCache changes are applied by replacement";
/// Identifier key recording the engine version asked for at creation: the fallback when the
/// member clusters cannot be described (see [`ElastiCacheDriver::observe`]).
const VERSION_KEY: &str = "engineVersion";
/// Identifier key recording the component's cache subnet group.
const SUBNET_GROUP_KEY: &str = "subnetGroup";
/// When to look again at a group being created, modified or deleted.
const REQUEUE_AFTER: Duration = Duration::from_secs(15);
/// Records per page when listing groups and clusters (the API's maximum).
const PAGE_SIZE: i32 = 100;

/// The ElastiCacheRedis driver.
pub struct ElastiCacheDriver {
    client: Client,
    ec2: aws_sdk_ec2::Client,
    secrets: aws_sdk_secretsmanager::Client,
    ctx: Ctx,
}

/// What observing many groups read once for all of them.
struct Listing {
    /// Every replication group, by id.
    groups: BTreeMap<String, ReplicationGroup>,
    /// The engine version of every cache cluster that reports one, by cluster id.
    versions: BTreeMap<String, String>,
}

impl ElastiCacheDriver {
    /// A driver on the shared context.
    pub fn new(ctx: &Ctx) -> ElastiCacheDriver {
        let config = aws_sdk_elasticache::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let ec2 = aws_sdk_ec2::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        let secrets = aws_sdk_secretsmanager::config::Builder::from(&ctx.sdk)
            .interceptor(ctx.calls.clone())
            .build();
        ElastiCacheDriver {
            client: Client::from_conf(config),
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
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

    /// The cache subnet group name of a component (ElastiCache stores it lowercase).
    pub fn subnet_group_name(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, None, NameRules::LONG)
            .to_lowercase()
    }

    /// The group a component's record names, else the one its id would be.
    fn recorded_group(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> String {
        recorded
            .and_then(|r| r.get("name").cloned())
            .unwrap_or_else(|| self.group_id(id))
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

    async fn subnet_group(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<Option<CacheSubnetGroup>, DriverError> {
        match self
            .client
            .describe_cache_subnet_groups()
            .cache_subnet_group_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.cache_subnet_groups().first().cloned()),
            Err(e) if is_missing(&AwsError::from_sdk(&e)) => Ok(None),
            Err(e) => Err(DriverError::aws("describe cache subnet group", id, &e)),
        }
    }

    /// Every replication group and the engine version of every cache cluster, each listed in
    /// one paginated call; errors name `id` (the first component asked about).
    async fn listing(&self, id: &ComponentId) -> Result<Listing, DriverError> {
        let mut groups = BTreeMap::new();
        let mut pages = self
            .client
            .describe_replication_groups()
            .max_records(PAGE_SIZE)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DriverError::aws("list replication groups", id, &e))?;
            for g in page.replication_groups() {
                if let Some(name) = g.replication_group_id() {
                    groups.insert(name.to_lowercase(), g.clone());
                }
            }
        }
        let mut versions = BTreeMap::new();
        // Only member clusters are looked up: no group, no need to list clusters.
        if groups.values().any(|g| !g.member_clusters().is_empty()) {
            let mut pages = self
                .client
                .describe_cache_clusters()
                .max_records(PAGE_SIZE)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| DriverError::aws("list cache clusters", id, &e))?;
                for c in page.cache_clusters() {
                    if let (Some(name), Some(version)) = (c.cache_cluster_id(), c.engine_version())
                    {
                        versions.insert(name.to_string(), version.to_string());
                    }
                }
            }
        }
        Ok(Listing { groups, versions })
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
            .map_err(|e| DriverError::aws("read ElastiCache tags", id, &e))?;
        Ok(tag_map(out.tag_list()))
    }

    /// Sets exactly panka's tags on an ElastiCache resource: adds what is missing, removes extras.
    async fn converge_tags(
        &self,
        id: &ComponentId,
        arn: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let (set, extra) = aws::tag_changes(&self.ctx.tags(id), have);
        if !set.is_empty() {
            self.client
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(cache_tags(set)))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag ElastiCache resource", id, &e))?;
        }
        if !extra.is_empty() {
            self.client
                .remove_tags_from_resource()
                .resource_name(arn)
                .set_tag_keys(Some(extra))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag ElastiCache resource", id, &e))?;
        }
        Ok(())
    }

    /// Creates the cache subnet group, or takes ours and converges its subnets and tags.
    async fn ensure_subnet_group(&self, id: &ComponentId) -> Result<String, DriverError> {
        let name = self.subnet_group_name(id);
        let subnets = stack_subnets(&self.ec2, &self.ctx, id).await?;
        match self.subnet_group(id, &name).await? {
            None => {
                let created = self
                    .client
                    .create_cache_subnet_group()
                    .cache_subnet_group_name(&name)
                    .cache_subnet_group_description(format!("panka {id}"))
                    .set_subnet_ids(Some(subnets))
                    .set_tags(Some(cache_tags(self.ctx.tags(id))))
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Created since we looked (a concurrent apply): the next converge checks it.
                    Err(e)
                        if has_code(&AwsError::from_sdk(&e), "CacheSubnetGroupAlreadyExists") => {}
                    Err(e) => return Err(DriverError::aws("create cache subnet group", id, &e)),
                }
            }
            Some(group) => {
                let arn = group.arn().unwrap_or_default().to_string();
                let tags = self.tags(id, &arn).await?;
                if !self.ctx.may_touch(id, &tags) {
                    return Err(DriverError::NotOurs {
                        component: id.clone(),
                        what: format!("cache subnet group {name}"),
                    });
                }
                let have = sorted(
                    group
                        .subnets()
                        .iter()
                        .filter_map(|s| s.subnet_identifier().map(str::to_string)),
                );
                if have != subnets {
                    self.client
                        .modify_cache_subnet_group()
                        .cache_subnet_group_name(&name)
                        .set_subnet_ids(Some(subnets))
                        .send()
                        .await
                        .map_err(|e| DriverError::aws("update cache subnet group", id, &e))?;
                }
                self.converge_tags(id, &arn, &tags).await?;
            }
        }
        Ok(name)
    }

    /// Deletes the component's cache subnet group if it carries our tags.
    async fn delete_subnet_group(&self, id: &ComponentId, name: &str) -> Result<(), DriverError> {
        let Some(group) = self.subnet_group(id, name).await? else {
            return Ok(());
        };
        let tags = self.tags(id, group.arn().unwrap_or_default()).await?;
        if !self.ctx.naming.owns(Some(id), &tags) {
            // Not ours (or adopted without our tags yet): leave it where it is.
            return Ok(());
        }
        match self
            .client
            .delete_cache_subnet_group()
            .cache_subnet_group_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e)) => Ok(()),
            Err(e) => Err(DriverError::aws("delete cache subnet group", id, &e)),
        }
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

    /// What observe reports of a described group: its tags, and the engine version of its first
    /// member cluster when that could be described.
    fn observation(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
        group: &ReplicationGroup,
        tags: &BTreeMap<String, String>,
        version: Option<String>,
    ) -> Observation {
        let Applied {
            identifiers,
            outputs,
        } = applied_of(group);
        let mut o = Observation {
            exists: true,
            owned: self.ctx.naming.owns(Some(id), tags),
            identifiers,
            outputs,
            ..Observation::default()
        };
        // The subnet group is only named by the member clusters (none in moto 5.1.22): pass
        // on what create recorded, for delete.
        if let Some(sg) = recorded.and_then(|r| r.get(SUBNET_GROUP_KEY)) {
            o.identifiers.insert(SUBNET_GROUP_KEY.into(), sg.clone());
        }
        let version = match version {
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
        o.fields.insert("tags".into(), FieldValue::known(tags));
        o.status = group.status().unwrap_or("unknown").to_string();
        o.health = health(&o.status);
        if o.status == "deleting" {
            // On its way out (a destroy that ran out of waiting): gone as far as a plan goes;
            // a create waits for it to disappear first.
            o.exists = false;
            o.health = Health::Missing;
        }
        o
    }

    /// Reads the AUTH token from its secret, when the spec names one.
    async fn auth_token(
        &self,
        id: &ComponentId,
        spec: &ElastiCacheRedisSpec,
    ) -> Result<Option<SecretString>, DriverError> {
        match spec
            .security
            .as_ref()
            .and_then(|s| s.auth_token_secret.as_ref())
        {
            Some(reference) => read_secret(&self.secrets, reference, id, "AUTH token")
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    async fn create_group(
        &self,
        id: &ComponentId,
        spec: &ElastiCacheRedisSpec,
        name: &str,
        subnet_group: &str,
        token: Option<SecretString>,
    ) -> Result<(), DriverError> {
        let security = spec.security.clone().unwrap_or_default();
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
            .cache_subnet_group_name(subnet_group)
            .set_security_group_ids(groups)
            .set_tags(Some(cache_tags(self.ctx.tags(id))));
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
        let existing = self.group(id, &name).await?;
        if existing
            .as_ref()
            .is_some_and(|g| g.status() == Some("deleting"))
        {
            // A re-created component: the id is free only once the old group is gone (a
            // replace waits for its delete to finish before it creates).
            return Err(DriverError::StillDeleting {
                component: id.clone(),
                message: format!(
                    "replication group {name} is still being deleted; apply again once it is gone"
                ),
            });
        }
        let not_ours = || DriverError::NotOurs {
            component: id.clone(),
            what: format!("replication group {name}"),
        };
        let (group, have, subnet_group) = match existing {
            Some(g) => {
                // Checked before anything else is touched, the subnet group included.
                let have = self.tags(id, g.arn().unwrap_or_default()).await?;
                if !self.ctx.may_touch(id, &have) {
                    return Err(not_ours());
                }
                (g, have, self.ensure_subnet_group(id).await?)
            }
            None => {
                // Read first: a wrong secret reference then fails before anything is created.
                let token = self.auth_token(id, spec).await?;
                let subnet_group = self.ensure_subnet_group(id).await?;
                self.create_group(id, spec, &name, &subnet_group, token)
                    .await?;
                let g = self
                    .group(id, &name)
                    .await?
                    .ok_or_else(|| DriverError::Unexpected {
                        component: id.clone(),
                        message: format!("replication group {name} vanished while being created"),
                    })?;
                let have = self.tags(id, g.arn().unwrap_or_default()).await?;
                if !self.ctx.may_touch(id, &have) {
                    // Someone else's group took the id between our look and our create.
                    return Err(not_ours());
                }
                (g, have, subnet_group)
            }
        };
        // Tags are the one thing changed in place (see the module docs).
        self.converge_tags(id, group.arn().unwrap_or_default(), &have)
            .await?;
        let mut applied = applied_of(&group);
        applied
            .identifiers
            .insert(VERSION_KEY.into(), spec.engine.version.clone());
        applied
            .identifiers
            .insert(SUBNET_GROUP_KEY.into(), subnet_group);
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
        &[
            "ReplicationGroupNotFoundFault",
            "CacheClusterNotFound",
            "CacheSubnetGroupNotFoundFault",
        ],
    )
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    aws::tag_map(tags.iter().map(|t| (t.key(), t.value())))
}

fn cache_tags(tags: BTreeMap<String, String>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
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

    fn desired(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
    ) -> DesiredFields {
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
        let name = self.recorded_group(id, recorded);
        let Some(group) = self.group(id, &name).await? else {
            return Ok(missing());
        };
        let tags = self.tags(id, group.arn().unwrap_or_default()).await?;
        let version = self.engine_version(id, &group).await?;
        Ok(self.observation(id, recorded, &group, &tags, version))
    }

    /// What [`ElastiCacheDriver::observe`] reports for each component, from one listing of
    /// every group and every cache cluster, plus the tags of each group that exists.
    async fn observe_many(
        &self,
        items: &[Observe],
        concurrency: usize,
    ) -> Result<Vec<Observation>, DriverError> {
        let Some((first, _)) = items.first() else {
            return Ok(Vec::new());
        };
        let listing = self.listing(first).await?;
        let versions = &listing.versions;
        let reads: Vec<_> = items
            .iter()
            .map(|(id, recorded)| {
                let group = listing
                    .groups
                    .get(&self.recorded_group(id, recorded.as_ref()).to_lowercase());
                async move {
                    let Some(group) = group else {
                        return Ok(missing());
                    };
                    let tags = self.tags(id, group.arn().unwrap_or_default()).await?;
                    let version = group
                        .member_clusters()
                        .first()
                        .and_then(|m| versions.get(m))
                        .cloned();
                    Ok(self.observation(id, recorded.as_ref(), group, &tags, version))
                }
            })
            .collect();
        stream::iter(reads)
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        self.reconcile(component).await
    }

    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let name = self.recorded_group(id, Some(recorded));
        let subnet_group = recorded
            .get(SUBNET_GROUP_KEY)
            .cloned()
            .unwrap_or_else(|| self.subnet_group_name(id));
        if let Some(group) = self.group(id, &name).await? {
            // Already on its way out (an earlier delete that ran out of time): only wait.
            if group.status() != Some("deleting") {
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
                    Ok(_) => {}
                    Err(e) if is_missing(&AwsError::from_sdk(&e)) => {}
                    Err(e) => return Err(DriverError::aws("delete replication group", id, &e)),
                }
            }
            // The cache subnet group cannot go while the group's clusters use it: look once
            // more, else come back later.
            if self.group(id, &name).await?.is_some() {
                return Ok(Deletion::Progressing {
                    requeue_after: REQUEUE_AFTER,
                    status: format!(
                        "replication group {name} deleting (cache subnet group {subnet_group} goes after it)"
                    ),
                });
            }
        }
        self.delete_subnet_group(id, &subnet_group).await?;
        Ok(Deletion::Done)
    }

    fn requeue_after(&self) -> Duration {
        REQUEUE_AFTER
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
