//! ElastiCacheRedis driver: a cache subnet group and a Redis replication group (cluster mode
//! disabled) with id `{stack}-{env}-{service}-{component}` (at most 40 characters): engine
//! version, node type, number of nodes (one node group with `ReplicasPerNodeGroup` = nodes − 1:
//! the primary plus replicas, automatic failover and multi-AZ when more than one), encryption at
//! rest and in transit, an AUTH token read from Secrets Manager at creation (never compared,
//! recorded or logged), and panka's tags.
//!
//! **Changes in place, as AWS allows.** The node type and an engine version upgrade are changed
//! with ModifyReplicationGroup, the number of nodes with IncreaseReplicaCount and
//! DecreaseReplicaCount, automatic failover and Multi-AZ (on exactly when there is more than one
//! node) with ModifyReplicationGroup, all applied immediately. Only what AWS cannot change on a
//! running group is a replace field, each with its own reason in the plan: encryption at rest
//! (fixed at creation), in-transit encryption and the AUTH token (AWS changes them only by
//! multi-step migrations panka does not drive), and an engine version downgrade (AWS only
//! upgrades). A downgrade is told apart from an upgrade in [`Driver::complete`], which sees both
//! versions: the desired one and the one observed.
//!
//! AWS accepts a change only from an `available` group and shows `modifying` for minutes after
//! each one, so `update` never chains two changes: it makes the first one AWS accepts in an order
//! AWS allows (replicas are added before failover is turned on, and failover is turned off before
//! the last replica goes), looks at the group once more, and goes on only while it is still
//! `available` (the emulator, where changes are immediate). The engine then waits for the group's
//! health (`modifying` is Progressing); what is left shows in the next plan, which the next apply
//! (or the controller's next pass) carries out. A group found not `available` is left as it is.
//!
//! **Placement.** Like the RDS driver's DB subnet group, each component gets a cache subnet group
//! named like the component (lowercase, tagged like the group) holding the stack's subnets:
//! the `subnets` output of `_stack/network`, which the component runs on ([`super::stack`]). The group is created in it, with the stack's security groups
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
use aws_sdk_elasticache::types::{
    AutomaticFailoverStatus, CacheSubnetGroup, MultiAzStatus, ReplicationGroup, Tag,
};
use aws_sdk_elasticache::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use panka_crds::spec::ElastiCacheRedisSpec;
use panka_crds::Kind;
use serde_json::{json, Value};

use super::stack::network_subnets;
use super::support::{ensure_ours, is_missing, missing, or_missing, sorted};
use super::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Observe, Outputs,
};
use crate::aws::{self, AwsError};
use crate::secret::{self, SecretString};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{DesiredFields, FieldDiff, FieldValue, Health, Observation};

/// Why a change of encryption at rest needs a new replication group.
pub const AT_REST_REASON: &str =
    "encryption at rest is chosen when a replication group is created; AWS cannot change it later";
/// Why a change of in-transit encryption needs a new replication group.
pub const TRANSIT_REASON: &str = "AWS changes in-transit encryption of a running group only by a \
    two-step migration (TransitEncryptionMode preferred, then required) that panka does not drive";
/// Why adding or removing the AUTH token needs a new replication group.
pub const AUTH_TOKEN_REASON: &str =
    "AWS adds or removes the AUTH token of a running group only by \
    a token rotation or a move to RBAC, which panka does not drive";
/// Why a lower engine version needs a new replication group.
pub const DOWNGRADE_REASON: &str =
    "ElastiCache upgrades an engine version in place but cannot downgrade it";
/// Field that is `true` when the desired engine version is below the group's (see
/// [`ElastiCacheDriver::complete`]); a replace field, so a downgrade plans a replacement.
pub const DOWNGRADE_FIELD: &str = "engineVersion.downgrade";
/// At most this many in-place changes in one update (remove failover, then a replica; or add a
/// replica, then failover), each only while the group is still `available`.
const MAX_STEPS: usize = 3;
/// Identifier key recording the engine version the group was last seen or set to: the fallback
/// when the member clusters cannot be described (see [`ElastiCacheDriver::observe`]).
const VERSION_KEY: &str = "engineVersion";
/// Identifier key recording the component's cache subnet group.
const SUBNET_GROUP_KEY: &str = "subnetGroup";
/// When to look again at a group being created, modified or deleted.
const REQUEUE_AFTER: Duration = Duration::from_secs(15);
/// Records per page when listing groups and clusters (the API's maximum).
const PAGE_SIZE: i32 = 100;
/// ElastiCache's own codes for "no such group, cluster or subnet group".
const MISSING: &[&str] = &[
    "ReplicationGroupNotFoundFault",
    "CacheClusterNotFound",
    "CacheSubnetGroupNotFoundFault",
];

/// The ElastiCacheRedis driver.
pub struct ElastiCacheDriver {
    client: Client,
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
        ElastiCacheDriver {
            client: counted_client!(ctx, aws_sdk_elasticache),
            secrets: counted_client!(ctx, aws_sdk_secretsmanager),
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
        let out = or_missing(
            self.client
                .describe_replication_groups()
                .replication_group_id(name)
                .send()
                .await,
            MISSING,
            "describe replication group",
            id,
        )?;
        Ok(out.and_then(|out| out.replication_groups().first().cloned()))
    }

    async fn subnet_group(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<Option<CacheSubnetGroup>, DriverError> {
        let out = or_missing(
            self.client
                .describe_cache_subnet_groups()
                .cache_subnet_group_name(name)
                .send()
                .await,
            MISSING,
            "describe cache subnet group",
            id,
        )?;
        Ok(out.and_then(|out| out.cache_subnet_groups().first().cloned()))
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

    /// Makes an ElastiCache resource carry exactly panka's tags (see [`super::support`]).
    async fn converge_tags(
        &self,
        id: &ComponentId,
        arn: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), have);
        if !changes.set.is_empty() {
            self.client
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(cache_tags(changes.set)))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag ElastiCache resource", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.client
                .remove_tags_from_resource()
                .resource_name(arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag ElastiCache resource", id, &e))?;
        }
        Ok(())
    }

    /// Creates the cache subnet group, or takes ours and converges its subnets and tags.
    async fn ensure_subnet_group(
        &self,
        id: &ComponentId,
        outputs: &Outputs,
    ) -> Result<String, DriverError> {
        let name = self.subnet_group_name(id);
        let subnets = network_subnets(outputs, id)?;
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
                ensure_ours(&self.ctx, id, &tags, format!("cache subnet group {name}"))?;
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
        or_missing(
            self.client
                .delete_cache_subnet_group()
                .cache_subnet_group_name(name)
                .send()
                .await,
            MISSING,
            "delete cache subnet group",
            id,
        )?;
        Ok(())
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
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(None),
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
            (
                "automaticFailover",
                json!(matches!(
                    group.automatic_failover(),
                    Some(AutomaticFailoverStatus::Enabled | AutomaticFailoverStatus::Enabling)
                )),
            ),
            (
                "multiAZ",
                json!(group.multi_az() == Some(&MultiAzStatus::Enabled)),
            ),
            // Until `complete` compares it with the desired version: not a downgrade.
            (DOWNGRADE_FIELD, json!(false)),
        ];
        for (k, v) in fields {
            o.fields.insert(k.to_string(), FieldValue::Known(v));
        }
        o.fields
            .insert("tags".into(), self.ctx.tag_policy().field(tags));
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
            Some(reference) => secret::read_reference(&self.secrets, reference, id, "AUTH token")
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

    /// Makes the in-place changes the group needs, one [`Step`] at a time while the group is
    /// `available` (see the module docs). Returns the group as last described and its engine
    /// version as far as known.
    async fn change_in_place(
        &self,
        id: &ComponentId,
        spec: &ElastiCacheRedisSpec,
        mut group: ReplicationGroup,
        mut version: Option<String>,
    ) -> Result<(ReplicationGroup, Option<String>), DriverError> {
        let name = group.replication_group_id().unwrap_or_default().to_string();
        for _ in 0..MAX_STEPS {
            if group.status() != Some("available") {
                // AWS refuses every change until the group is available again; the engine waits
                // for its health and the next plan shows what is left.
                break;
            }
            let Some(step) = next_step(spec, &Shape::of(&group, version.as_deref())) else {
                break;
            };
            match &step {
                Step::Modify {
                    node_type,
                    engine_version,
                    failover,
                } => {
                    let mut req = self
                        .client
                        .modify_replication_group()
                        .replication_group_id(&name)
                        .apply_immediately(true)
                        .set_cache_node_type(node_type.clone())
                        .set_engine_version(engine_version.clone());
                    if let Some(on) = *failover {
                        req = req.automatic_failover_enabled(on).multi_az_enabled(on);
                    }
                    req.send()
                        .await
                        .map_err(|e| DriverError::aws("modify replication group", id, &e))?;
                    if engine_version.is_some() {
                        version.clone_from(engine_version);
                    }
                }
                Step::Replicas { count, more } => {
                    if *more {
                        self.client
                            .increase_replica_count()
                            .replication_group_id(&name)
                            .new_replica_count(*count)
                            .apply_immediately(true)
                            .send()
                            .await
                            .map_err(|e| DriverError::aws("add replicas", id, &e))?;
                    } else {
                        self.client
                            .decrease_replica_count()
                            .replication_group_id(&name)
                            .new_replica_count(*count)
                            .apply_immediately(true)
                            .send()
                            .await
                            .map_err(|e| DriverError::aws("remove replicas", id, &e))?;
                    }
                }
            }
            // One look, no waiting: on AWS the group is `modifying` now and the loop ends.
            group = self
                .group(id, &name)
                .await?
                .ok_or_else(|| DriverError::Unexpected {
                    component: id.clone(),
                    message: format!("replication group {name} vanished while being changed"),
                })?;
        }
        Ok((group, version))
    }

    /// Creates the group, or changes in place what AWS allows now (see the module docs);
    /// `version` is the engine version observed, when the caller has it.
    async fn reconcile(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        version: Option<String>,
    ) -> Result<Applied, DriverError> {
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
        let what = || format!("replication group {name}");
        let (group, have, subnet_group, version) = match existing {
            Some(g) => {
                // Checked before anything else is touched, the subnet group included.
                let have = self.tags(id, g.arn().unwrap_or_default()).await?;
                ensure_ours(&self.ctx, id, &have, what())?;
                let subnet_group = self.ensure_subnet_group(id, outputs).await?;
                let version = match version {
                    Some(v) => Some(v),
                    None => self.engine_version(id, &g).await?,
                };
                let (g, version) = self.change_in_place(id, spec, g, version).await?;
                (g, have, subnet_group, version)
            }
            None => {
                // Read first: a wrong secret reference then fails before anything is created.
                let token = self.auth_token(id, spec).await?;
                let subnet_group = self.ensure_subnet_group(id, outputs).await?;
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
                // Someone else's group may have taken the id between our look and our create.
                ensure_ours(&self.ctx, id, &have, what())?;
                (g, have, subnet_group, None)
            }
        };
        // After the group's own changes: AWS has been seen to refuse a modification right after
        // a tag change, never a tag change during a modification.
        self.converge_tags(id, group.arn().unwrap_or_default(), &have)
            .await?;
        let mut applied = applied_of(&group);
        applied.identifiers.insert(
            VERSION_KEY.into(),
            version.unwrap_or_else(|| spec.engine.version.clone()),
        );
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

/// The compared fields a spec asks for, in the normal form observe produces, each with the
/// reason a change needs a new group, or `None` when it is changed in place.
fn group_fields(spec: &ElastiCacheRedisSpec) -> Vec<(&'static str, Value, Option<&'static str>)> {
    let security = spec.security.clone().unwrap_or_default();
    let nodes = spec.cluster.num_nodes.max(1);
    vec![
        (
            "engineVersion",
            json!(major_minor(&spec.engine.version)),
            None,
        ),
        (DOWNGRADE_FIELD, json!(false), Some(DOWNGRADE_REASON)),
        ("nodeType", json!(spec.cluster.node_type), None),
        ("numNodes", json!(nodes), None),
        ("automaticFailover", json!(nodes > 1), None),
        ("multiAZ", json!(nodes > 1), None),
        (
            "atRestEncryption",
            json!(security.at_rest_encryption.unwrap_or(false)),
            Some(AT_REST_REASON),
        ),
        (
            "transitEncryption",
            json!(security.transit_encryption.unwrap_or(false)),
            Some(TRANSIT_REASON),
        ),
        (
            "authToken",
            json!(security.auth_token_secret.is_some()),
            Some(AUTH_TOKEN_REASON),
        ),
    ]
}

/// The numeric parts of a version: `7.0.7` → `[7, 0, 7]`, `6.x` → `[6]`.
fn version_parts(version: &str) -> Vec<u32> {
    version.split('.').map_while(|p| p.parse().ok()).collect()
}

/// Whether `to` is below `from`, compared as far as `to` goes (`7.0` is not below `7.0.7`).
fn is_downgrade(from: &str, to: &str) -> bool {
    let (from, to) = (version_parts(from), version_parts(to));
    !to.is_empty() && to.as_slice() < &from[..to.len().min(from.len())]
}

/// What of a group the in-place steps look at.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    node_type: String,
    /// Engine version, when known.
    version: Option<String>,
    nodes: usize,
    /// Automatic failover or Multi-AZ on (or being turned on).
    failover: bool,
    /// Both on (or being turned on).
    both: bool,
}

impl Shape {
    fn of(group: &ReplicationGroup, version: Option<&str>) -> Shape {
        let failover = matches!(
            group.automatic_failover(),
            Some(AutomaticFailoverStatus::Enabled | AutomaticFailoverStatus::Enabling)
        );
        let multi_az = group.multi_az() == Some(&MultiAzStatus::Enabled);
        Shape {
            node_type: group.cache_node_type().unwrap_or_default().to_string(),
            version: version.map(str::to_string),
            nodes: group.member_clusters().len(),
            failover: failover || multi_az,
            both: failover && multi_az,
        }
    }
}

/// One in-place change, a single AWS call.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// ModifyReplicationGroup with what is set; `failover` sets automatic failover and Multi-AZ.
    Modify {
        node_type: Option<String>,
        engine_version: Option<String>,
        failover: Option<bool>,
    },
    /// IncreaseReplicaCount (`more`) or DecreaseReplicaCount to `count` replicas.
    Replicas { count: i32, more: bool },
}

/// The next change a group of shape `have` needs to become what `spec` asks, in an order AWS
/// accepts: replicas are added before failover is turned on (it needs a replica), and failover
/// and Multi-AZ are turned off before the last replica goes (AWS keeps one while they are on).
/// A downgrade is never asked for (the plan replaces the group), nor a version when the group's
/// is unknown.
fn next_step(spec: &ElastiCacheRedisSpec, have: &Shape) -> Option<Step> {
    let nodes = usize::try_from(spec.cluster.num_nodes.max(1)).unwrap_or(usize::MAX);
    let replicas = i32::try_from(nodes - 1).unwrap_or(i32::MAX);
    let node_type =
        (have.node_type != spec.cluster.node_type).then(|| spec.cluster.node_type.clone());
    let engine_version = have
        .version
        .as_deref()
        .filter(|v| {
            major_minor(v) != major_minor(&spec.engine.version)
                && !is_downgrade(v, &spec.engine.version)
        })
        .map(|_| spec.engine.version.clone());
    let ha = nodes > 1;
    if nodes < have.nodes && !ha && have.failover {
        return Some(Step::Modify {
            node_type,
            engine_version,
            failover: Some(false),
        });
    }
    if nodes != have.nodes {
        return Some(Step::Replicas {
            count: replicas,
            more: nodes > have.nodes,
        });
    }
    let failover = (have.failover != ha || have.both != ha).then_some(ha);
    if node_type.is_none() && engine_version.is_none() && failover.is_none() {
        return None;
    }
    Some(Step::Modify {
        node_type,
        engine_version,
        failover,
    })
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
        for (name, value, replace) in group_fields(spec) {
            match replace {
                Some(reason) => f.set_replace(name, FieldValue::Known(value), reason),
                None => f.set(name, FieldValue::Known(value)),
            };
        }
        f.set(
            "tags",
            self.ctx.tag_policy().field(&self.ctx.tags(&component.id)),
        );
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
        outputs: &Outputs,
        _lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        self.reconcile(component, outputs, None).await
    }

    /// As converge, with the engine version observe found (in the emulator, where member
    /// clusters cannot be described, the recorded one) instead of describing a member again.
    async fn update(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        _lookups: &Lookups,
        _diffs: &[FieldDiff],
        observed: &Observation,
    ) -> Result<Applied, DriverError> {
        let version = match observed.fields.get("engineVersion") {
            Some(FieldValue::Known(Value::String(v))) => Some(v.clone()),
            _ => None,
        };
        self.reconcile(component, outputs, version).await
    }

    /// Marks a desired engine version below the group's as a downgrade, which AWS cannot make
    /// in place: [`DOWNGRADE_FIELD`] then differs and the plan replaces the group. A group still
    /// to be created needs its AUTH token: a reference to no secret is refused here, at plan
    /// time.
    async fn complete(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
        mut observed: Observation,
    ) -> Result<Observation, DriverError> {
        let Ok(spec) = spec_of(component) else {
            return Ok(observed);
        };
        let token = spec
            .security
            .as_ref()
            .and_then(|s| s.auth_token_secret.as_ref());
        if let (false, Some(reference)) = (observed.exists, token) {
            secret::require_reference(
                &self.secrets,
                reference,
                component,
                "security.authTokenSecret.ref",
            )
            .await?;
        }
        if let Some(FieldValue::Known(Value::String(have))) = observed.fields.get("engineVersion") {
            let downgrade = is_downgrade(have, &spec.engine.version);
            observed
                .fields
                .insert(DOWNGRADE_FIELD.into(), FieldValue::known(downgrade));
        }
        Ok(observed)
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
                ensure_ours(&self.ctx, id, &tags, format!("replication group {name}"))?;
                or_missing(
                    self.client
                        .delete_replication_group()
                        .replication_group_id(&name)
                        .send()
                        .await,
                    MISSING,
                    "delete replication group",
                    id,
                )?;
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
    use panka_core::plan::{Action, Change};

    #[test]
    fn versions_compare_as_major_minor() {
        assert_eq!(major_minor("7.0.7"), "7.0");
        assert_eq!(major_minor("7.0"), "7.0");
        assert_eq!(major_minor("7"), "7");
    }

    #[test]
    fn a_downgrade_is_a_lower_version_as_far_as_the_new_one_goes() {
        for (from, to, downgrade) in [
            ("7.1", "7.0", true),
            ("7.0.7", "6.2", true),
            ("7.0", "6.x", true),
            ("7.0", "7.1", false),
            ("7.0.7", "7.0", false),
            ("6.2", "6.x", false),
            ("7.0", "7.0", false),
            ("7.0", "latest", false),
        ] {
            assert_eq!(is_downgrade(from, to), downgrade, "{from} → {to}");
        }
    }

    fn spec(version: &str, node_type: &str, nodes: u32) -> ElastiCacheRedisSpec {
        ElastiCacheRedisSpec {
            engine: panka_crds::spec::RedisEngine {
                version: version.into(),
            },
            cluster: panka_crds::spec::RedisCluster {
                mode: None,
                node_type: node_type.into(),
                num_nodes: nodes,
            },
            ..ElastiCacheRedisSpec::default()
        }
    }

    /// A group as AWS would hold it after creation from `spec(version, node_type, nodes)`.
    fn shape(version: Option<&str>, node_type: &str, nodes: usize) -> Shape {
        Shape {
            node_type: node_type.into(),
            version: version.map(str::to_string),
            nodes,
            failover: nodes > 1,
            both: nodes > 1,
        }
    }

    fn modify(node_type: Option<&str>, version: Option<&str>, failover: Option<bool>) -> Step {
        Step::Modify {
            node_type: node_type.map(str::to_string),
            engine_version: version.map(str::to_string),
            failover,
        }
    }

    #[test]
    fn a_converged_group_needs_no_step() {
        let have = shape(Some("7.0"), "cache.t3.medium", 2);
        assert_eq!(next_step(&spec("7.0", "cache.t3.medium", 2), &have), None);
        // AWS reports the patch level; the spec names major.minor.
        let have = shape(Some("7.0.7"), "cache.t3.medium", 1);
        assert_eq!(next_step(&spec("7.0", "cache.t3.medium", 1), &have), None);
    }

    #[test]
    fn node_type_and_version_upgrade_are_one_modification() {
        let have = shape(Some("7.0.7"), "cache.t3.medium", 2);
        assert_eq!(
            next_step(&spec("7.1", "cache.t3.large", 2), &have),
            Some(modify(Some("cache.t3.large"), Some("7.1"), None))
        );
    }

    #[test]
    fn a_downgrade_or_an_unknown_version_is_never_sent() {
        let have = shape(Some("7.1"), "cache.t3.medium", 2);
        assert_eq!(next_step(&spec("7.0", "cache.t3.medium", 2), &have), None);
        let have = shape(None, "cache.t3.medium", 2);
        assert_eq!(next_step(&spec("7.1", "cache.t3.medium", 2), &have), None);
    }

    #[test]
    fn replicas_change_between_groups_with_failover() {
        let want = spec("7.0", "cache.t3.medium", 4);
        assert_eq!(
            next_step(&want, &shape(Some("7.0"), "cache.t3.medium", 2)),
            Some(Step::Replicas {
                count: 3,
                more: true
            })
        );
        let want = spec("7.0", "cache.t3.medium", 2);
        assert_eq!(
            next_step(&want, &shape(Some("7.0"), "cache.t3.medium", 4)),
            Some(Step::Replicas {
                count: 1,
                more: false
            })
        );
    }

    #[test]
    fn a_first_replica_comes_before_failover_is_turned_on() {
        let want = spec("7.0", "cache.t3.large", 3);
        let mut have = shape(Some("7.0"), "cache.t3.medium", 1);
        assert_eq!(
            next_step(&want, &have),
            Some(Step::Replicas {
                count: 2,
                more: true
            })
        );
        have.nodes = 3;
        assert_eq!(
            next_step(&want, &have),
            Some(modify(Some("cache.t3.large"), None, Some(true)))
        );
    }

    #[test]
    fn failover_is_turned_off_before_the_last_replica_goes() {
        let want = spec("7.0", "cache.t3.medium", 1);
        let mut have = shape(Some("7.0"), "cache.t3.medium", 3);
        assert_eq!(
            next_step(&want, &have),
            Some(modify(None, None, Some(false)))
        );
        have.failover = false;
        have.both = false;
        assert_eq!(
            next_step(&want, &have),
            Some(Step::Replicas {
                count: 0,
                more: false
            })
        );
    }

    #[test]
    fn failover_or_multi_az_turned_off_by_hand_is_turned_on_again() {
        let want = spec("7.0", "cache.t3.medium", 2);
        let mut have = shape(Some("7.0"), "cache.t3.medium", 2);
        have.both = false;
        assert_eq!(
            next_step(&want, &have),
            Some(modify(None, None, Some(true)))
        );
    }

    /// The example stack's cache, its driver (no AWS call is made) and the plan of `changed`
    /// against a group holding exactly what `cache` asks for.
    async fn plan_of(
        change: impl FnOnce(&mut ElastiCacheRedisSpec),
    ) -> panka_core::plan::ComponentPlan {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/deployment-repo");
        let loaded = crate::validate::load_stack(&root, "user-platform").expect("example loads");
        let (mut desired, graph) = crate::validate::plan_input(
            &loaded,
            "development",
            &panka_core::resolve::Options::default(),
        )
        .expect("example resolves");
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let driver = ElastiCacheDriver::new(&Ctx::new(sdk, &desired, false));
        let id = ComponentId::new("notification-service", "cache");
        let outputs = Outputs::new();
        let before = driver.desired(&desired.components[&id], &outputs, &Lookups::none());
        let observed = Observation {
            exists: true,
            owned: true,
            fields: before.fields,
            ..Observation::default()
        };
        let component = desired
            .components
            .get_mut(&id)
            .expect("the example's cache");
        match &mut component.spec {
            ComponentSpec::ElastiCacheRedis(s) => change(s),
            other => panic!("not ElastiCacheRedis: {}", other.kind()),
        }
        let component = &desired.components[&id];
        let observed = driver
            .complete(component, &outputs, &Lookups::none(), observed)
            .await
            .expect("complete");
        let fields = BTreeMap::from([(
            id.clone(),
            driver.desired(component, &outputs, &Lookups::none()),
        )]);
        let observed = panka_core::plan::Observed::new(BTreeMap::from([(id.clone(), observed)]));
        let plan = panka_core::plan::plan(
            &desired,
            &graph,
            &fields,
            &observed,
            None,
            &panka_core::plan::PlanOptions::default(),
        );
        let cache = plan.all().find(|p| p.id == id).cloned();
        cache.expect("the cache is planned")
    }

    fn changes(p: &panka_core::plan::ComponentPlan) -> Vec<(&str, &Change)> {
        p.diffs
            .iter()
            .map(|d| (d.field.as_str(), &d.change))
            .collect()
    }

    #[tokio::test]
    async fn node_type_replicas_and_an_upgrade_are_planned_as_an_update() {
        let p = plan_of(|s| {
            s.cluster.node_type = "cache.r6g.large".into();
            s.cluster.num_nodes = 3;
            s.engine.version = "7.1".into();
        })
        .await;
        assert_eq!(p.action, Action::Update, "{p:?}");
        assert!(!p.dangerous);
        assert_eq!(
            changes(&p),
            [
                ("engineVersion", &Change::Update),
                ("nodeType", &Change::Update),
                ("numNodes", &Change::Update),
            ]
        );
    }

    #[tokio::test]
    async fn encryption_at_rest_is_a_replacement_with_its_reason() {
        let p = plan_of(|s| {
            s.cluster.node_type = "cache.r6g.large".into();
            s.security.as_mut().expect("security").at_rest_encryption = Some(false);
        })
        .await;
        assert_eq!(
            p.action,
            Action::Replace {
                reason: AT_REST_REASON.into()
            }
        );
        assert!(p.dangerous, "a replacement loses the cache's data");
        assert_eq!(
            changes(&p),
            [
                ("atRestEncryption", &Change::Replace(AT_REST_REASON.into())),
                ("nodeType", &Change::Update),
            ]
        );
    }

    #[tokio::test]
    async fn each_replacement_says_its_own_reason() {
        let p = plan_of(|s| {
            let security = s.security.as_mut().expect("security");
            security.transit_encryption = Some(false);
            security.auth_token_secret = Some(panka_crds::spec::PasswordSecret {
                secret_ref: "redis-auth".into(),
                key: None,
            });
            s.engine.version = "6.2".into();
        })
        .await;
        let Action::Replace { reason } = &p.action else {
            panic!("a replacement: {p:?}");
        };
        for why in [TRANSIT_REASON, AUTH_TOKEN_REASON, DOWNGRADE_REASON] {
            assert!(reason.contains(why), "{why} missing from {reason}");
        }
        assert_eq!(
            changes(&p),
            [
                ("authToken", &Change::Replace(AUTH_TOKEN_REASON.into())),
                ("engineVersion", &Change::Update),
                (DOWNGRADE_FIELD, &Change::Replace(DOWNGRADE_REASON.into())),
                ("transitEncryption", &Change::Replace(TRANSIT_REASON.into())),
            ]
        );
    }
}
