//! The ElastiCacheRedis driver against the local emulator through the real SDK: create with an
//! AUTH token from Secrets Manager in a cache subnet group of its own, observe (one component and
//! many at once), node type, engine upgrade and replica count changed in place (the same group,
//! never deleted or created again) while encryption changes plan a replacement, tag drift reverted
//! in place, foreign groups, delete.
//!
//! The emulator is moto 5.1.22 with panka's patch adding ModifyReplicationGroup and
//! Increase/DecreaseReplicaCount (`scripts/moto_patches/elasticache.py`), where a change is
//! complete when the call returns. moto ignores `NumCacheClusters` (a group always gets one member
//! unless `ReplicasPerNodeGroup` is given), creates no member cache clusters (so the engine version
//! comes from the driver's record, see `ElastiCacheDriver::observe`, and a group's subnet group can
//! only be read back from a snapshot of it), never finishes a deletion (the group stays
//! `deleting`), and implements neither ModifyCacheSubnetGroup nor DeleteCacheSubnetGroup. So
//! delete is shown up to its "still deleting" answer, which keeps the subnet group: its deletion
//! once the group is gone cannot run here.

use std::collections::BTreeMap;

use panka_controller::driver::elasticache::{
    ElastiCacheDriver, AT_REST_REASON, DOWNGRADE_FIELD, DOWNGRADE_REASON,
};
use panka_controller::driver::{Ctx, Deletion, Driver, DriverError, Lookups, Observe};
use panka_controller::validate::{load_stack, plan_input};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::plan::{diff, Change};
use panka_core::resolve::Options;
use panka_crds::spec::{ElastiCacheRedisSpec, PasswordSecret};
use panka_tests::emulator::{
    assert_converged_tags, driver_ctx, emulator, ignoring_tags, repo_root, HAND_IGNORED, HAND_TAGS,
};
use panka_tests::stack::network_outputs;

/// The AUTH token stored by the tests; asserted never to appear in what the driver returns.
const TOKEN: &str = "auth-token-0123456789-never-shown";

/// The example's `notification-service/cache` (Redis 7.0, cache.t3.medium, encrypted), with one
/// node (see the module docs) and an AUTH token from `secret`.
fn example_cache(secret: &str) -> DesiredComponent {
    let loaded = load_stack(
        &repo_root().join("examples/deployment-repo"),
        "user-platform",
    )
    .expect("example loads");
    let (desired, _) =
        plan_input(&loaded, "development", &Options::default()).expect("example resolves");
    let mut cache = desired.components[&ComponentId::new("notification-service", "cache")].clone();
    let s = spec(&mut cache);
    assert_eq!(
        s.cluster.num_nodes, 2,
        "the example runs a primary and a replica"
    );
    s.security
        .as_mut()
        .expect("security settings")
        .auth_token_secret = Some(PasswordSecret {
        secret_ref: secret.to_string(),
        key: Some("token".into()),
    });
    cache
}

fn spec(component: &mut DesiredComponent) -> &mut ElastiCacheRedisSpec {
    match &mut component.spec {
        ComponentSpec::ElastiCacheRedis(s) => s,
        _ => panic!("not ElastiCacheRedis"),
    }
}

async fn env() -> (
    ElastiCacheDriver,
    Ctx,
    aws_sdk_elasticache::Client,
    DesiredComponent,
) {
    let sdk = emulator().sdk_config().await;
    let ctx = driver_ctx(&sdk, false);
    let secret = format!("/panka-tests/{}/redis-auth", ctx.naming.stack);
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret)
        .secret_string(serde_json::json!({ "token": TOKEN }).to_string())
        .send()
        .await
        .expect("secret created");
    (
        short_waiting(&ctx),
        ctx,
        aws_sdk_elasticache::Client::new(&sdk),
        example_cache(&secret),
    )
}

/// The driver (it never waits for a deletion: it answers "progressing").
fn short_waiting(ctx: &Ctx) -> ElastiCacheDriver {
    ElastiCacheDriver::new(ctx)
}

/// The subnets of the emulator's default VPC, sorted, read directly from EC2.
async fn default_subnets() -> (String, Vec<String>) {
    let ec2 = aws_sdk_ec2::Client::new(&emulator().sdk_config().await);
    let vpc = ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("isDefault")
                .values("true")
                .build(),
        )
        .send()
        .await
        .expect("vpcs")
        .vpcs()[0]
        .vpc_id()
        .expect("vpc id")
        .to_string();
    let mut subnets: Vec<String> = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
        .expect("subnets")
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    subnets.sort();
    (vpc, subnets)
}

async fn subnet_group(
    client: &aws_sdk_elasticache::Client,
    name: &str,
) -> Option<aws_sdk_elasticache::types::CacheSubnetGroup> {
    match client
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(name)
        .send()
        .await
    {
        Ok(out) => out.cache_subnet_groups().first().cloned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_cache_subnet_group_not_found_fault()) =>
        {
            None
        }
        Err(e) => panic!("describe cache subnet group: {e:?}"),
    }
}

async fn tags_of(client: &aws_sdk_elasticache::Client, arn: &str) -> BTreeMap<String, String> {
    client
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .expect("tags")
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

async fn describe(
    client: &aws_sdk_elasticache::Client,
    name: &str,
) -> aws_sdk_elasticache::types::ReplicationGroup {
    client
        .describe_replication_groups()
        .replication_group_id(name)
        .send()
        .await
        .expect("describe")
        .replication_groups()
        .first()
        .cloned()
        .expect("one group")
}

#[tokio::test]
async fn create_makes_a_tagged_group_that_observe_reports_converged() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let name = &applied.identifiers["name"];
    assert!(name.len() <= 40, "{name}");
    assert_eq!(*name, driver.group_id(&cache.id));

    // Checked with direct SDK reads, not through the driver.
    let group = describe(&client, name).await;
    assert_eq!(group.cache_node_type(), Some("cache.t3.medium"));
    assert_eq!(group.at_rest_encryption_enabled(), Some(true));
    assert_eq!(group.transit_encryption_enabled(), Some(true));
    assert_eq!(group.auth_token_enabled(), Some(true));
    assert_eq!(
        tags_of(&client, group.arn().expect("arn")).await,
        ctx.tags(&cache.id)
    );

    // Its own cache subnet group, with every subnet of the default VPC and panka's tags.
    let sg_name = &applied.identifiers["subnetGroup"];
    assert_eq!(*sg_name, driver.subnet_group_name(&cache.id));
    let sg = subnet_group(&client, sg_name)
        .await
        .expect("the cache subnet group exists");
    let (vpc, subnets) = default_subnets().await;
    assert_eq!(sg.vpc_id(), Some(vpc.as_str()));
    let mut have: Vec<String> = sg
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    have.sort();
    assert_eq!(have, subnets);
    assert_eq!(
        tags_of(&client, sg.arn().expect("arn")).await,
        ctx.tags(&cache.id)
    );
    // The group sits in it. DescribeReplicationGroups does not say where a group sits (its
    // member clusters do, and moto has none), a snapshot of the group does.
    let snapshot = client
        .create_snapshot()
        .replication_group_id(name)
        .snapshot_name(format!("{name}-placement"))
        .send()
        .await
        .expect("snapshot")
        .snapshot()
        .cloned()
        .expect("a snapshot");
    assert_eq!(snapshot.cache_subnet_group_name(), Some(sg_name.as_str()));
    client
        .delete_snapshot()
        .snapshot_name(format!("{name}-placement"))
        .send()
        .await
        .expect("snapshot deleted");
    for output in ["endpoint", "port", "readerEndpoint", "arn"] {
        assert!(
            applied.outputs.contains_key(output),
            "{output} missing: {applied:?}"
        );
    }
    assert_eq!(applied.outputs["port"], "6379");

    let before = ctx.calls.mutating();
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert_eq!(ctx.calls.mutating(), before, "observe must not mutate");
    assert!(seen.exists && seen.owned);
    assert_eq!(seen.status, "available");
    let desired = driver.desired(&cache, &network_outputs().await, &Lookups::default());
    assert_eq!(
        diff(&desired, &seen),
        vec![],
        "a fresh group matches its spec"
    );
    assert_eq!(seen.outputs, applied.outputs);
    let everything = format!("{applied:?} {seen:?} {desired:?}");
    assert!(!everything.contains(TOKEN), "the AUTH token leaked");

    let before = ctx.calls.mutating();
    driver
        .update(
            &cache,
            &network_outputs().await,
            &Lookups::default(),
            &[],
            &seen,
        )
        .await
        .expect("converged update");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a converged group needs no write"
    );
}

/// Calls made between two snapshots of the call counter, by operation.
fn calls_between(
    from: &BTreeMap<(String, String), u64>,
    to: &BTreeMap<(String, String), u64>,
) -> BTreeMap<String, u64> {
    to.iter()
        .map(|(k, n)| (k.1.clone(), n - from.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The mutating calls among `calls`.
fn writes(calls: &BTreeMap<String, u64>) -> BTreeMap<&str, u64> {
    calls
        .iter()
        .filter(|(op, _)| panka_controller::driver::is_mutating(op))
        .map(|(op, n)| (op.as_str(), *n))
        .collect()
}

#[tokio::test]
async fn what_aws_changes_in_place_is_an_update_and_encryption_at_rest_a_replacement() {
    let (driver, _ctx, _client, cache) = env().await;
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let mut seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    let mut changed = cache.clone();
    let s = spec(&mut changed);
    s.engine.version = "7.1".into();
    s.cluster.node_type = "cache.t3.large".into();
    s.cluster.num_nodes = 3;
    s.security.as_mut().expect("security").at_rest_encryption = Some(false);
    seen = driver
        .complete(
            &changed,
            &network_outputs().await,
            &Lookups::default(),
            seen,
        )
        .await
        .expect("complete");
    let diffs = diff(
        &driver.desired(&changed, &network_outputs().await, &Lookups::default()),
        &seen,
    );
    let changes: Vec<(&str, &Change)> = diffs
        .iter()
        .map(|d| (d.field.as_str(), &d.change))
        .collect();
    assert_eq!(
        changes,
        [
            ("atRestEncryption", &Change::Replace(AT_REST_REASON.into())),
            ("engineVersion", &Change::Update),
            ("nodeType", &Change::Update),
            ("numNodes", &Change::Update),
        ]
    );

    // Going back to an older engine than the group runs is a replacement, told by `complete`.
    let mut older = cache.clone();
    spec(&mut older).engine.version = "6.2".into();
    let mut seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    seen = driver
        .complete(&older, &network_outputs().await, &Lookups::default(), seen)
        .await
        .expect("complete");
    let diffs = diff(
        &driver.desired(&older, &network_outputs().await, &Lookups::default()),
        &seen,
    );
    let changes: Vec<(&str, &Change)> = diffs
        .iter()
        .map(|d| (d.field.as_str(), &d.change))
        .collect();
    assert_eq!(
        changes,
        [
            ("engineVersion", &Change::Update),
            (DOWNGRADE_FIELD, &Change::Replace(DOWNGRADE_REASON.into())),
        ]
    );
}

#[tokio::test]
async fn node_type_and_engine_upgrade_change_the_same_group_in_place() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let name = &applied.identifiers["name"];
    let created = describe(&client, name).await;
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");

    let mut changed = cache.clone();
    let s = spec(&mut changed);
    s.cluster.node_type = "cache.t3.large".into();
    s.engine.version = "7.1".into();
    let desired = driver.desired(&changed, &network_outputs().await, &Lookups::default());
    let diffs = diff(&desired, &seen);
    let before = ctx.calls.snapshot();
    let updated = driver
        .update(
            &changed,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("update in place");
    let calls = calls_between(&before, &ctx.calls.snapshot());
    assert_eq!(
        writes(&calls),
        BTreeMap::from([("ModifyReplicationGroup", 1)]),
        "one modification, no delete or create: {calls:?}"
    );

    // The same group (created at the same moment), now of the new node type.
    let group = describe(&client, name).await;
    assert_eq!(group.cache_node_type(), Some("cache.t3.large"));
    assert_eq!(
        group.replication_group_create_time(),
        created.replication_group_create_time()
    );
    assert_eq!(group.arn(), created.arn());
    assert_eq!(group.member_clusters(), created.member_clusters());
    assert_eq!(updated.outputs, applied.outputs, "the endpoints stay");

    let seen = driver
        .observe(&cache.id, Some(&updated.identifiers))
        .await
        .expect("observe");
    assert_eq!(seen.status, "available");
    assert_eq!(diff(&desired, &seen), vec![], "{seen:?}");
    let before = ctx.calls.mutating();
    driver
        .update(
            &changed,
            &network_outputs().await,
            &Lookups::default(),
            &[],
            &seen,
        )
        .await
        .expect("converged update");
    assert_eq!(ctx.calls.mutating(), before, "nothing left to change");
}

#[tokio::test]
async fn replicas_are_added_and_removed_in_place_with_failover_following() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let name = applied.identifiers["name"].clone();
    let created = describe(&client, &name).await;
    assert_eq!(created.member_clusters().len(), 2);
    let mut identifiers = applied.identifiers.clone();

    // (nodes, the mutating calls that get there, in-place only)
    let steps: [(u32, BTreeMap<&str, u64>); 3] = [
        (4, BTreeMap::from([("IncreaseReplicaCount", 1)])),
        // Failover and Multi-AZ go first: AWS keeps a replica while they are on.
        (
            1,
            BTreeMap::from([("ModifyReplicationGroup", 1), ("DecreaseReplicaCount", 1)]),
        ),
        // And come back after the first replica, which they need.
        (
            2,
            BTreeMap::from([("IncreaseReplicaCount", 1), ("ModifyReplicationGroup", 1)]),
        ),
    ];
    for (nodes, expected) in steps {
        let mut changed = cache.clone();
        spec(&mut changed).cluster.num_nodes = nodes;
        let desired = driver.desired(&changed, &network_outputs().await, &Lookups::default());
        let seen = driver
            .observe(&cache.id, Some(&identifiers))
            .await
            .expect("observe");
        let diffs = diff(&desired, &seen);
        assert!(
            diffs
                .iter()
                .any(|d| d.field == "numNodes" && d.change == Change::Update),
            "{diffs:?}"
        );
        let before = ctx.calls.snapshot();
        let updated = driver
            .update(
                &changed,
                &network_outputs().await,
                &Lookups::default(),
                &diffs,
                &seen,
            )
            .await
            .expect("update in place");
        let calls = calls_between(&before, &ctx.calls.snapshot());
        assert_eq!(writes(&calls), expected, "to {nodes} nodes: {calls:?}");

        let group = describe(&client, &name).await;
        assert_eq!(group.member_clusters().len(), nodes as usize);
        assert_eq!(
            group.member_clusters().first(),
            created.member_clusters().first(),
            "the primary stays"
        );
        assert_eq!(
            group.replication_group_create_time(),
            created.replication_group_create_time()
        );
        let ha = nodes > 1;
        assert_eq!(
            group.automatic_failover().map(|f| f.as_str()),
            Some(if ha { "enabled" } else { "disabled" })
        );
        assert_eq!(
            group.multi_az().map(|m| m.as_str()),
            Some(if ha { "enabled" } else { "disabled" })
        );
        identifiers = updated.identifiers;
        let seen = driver
            .observe(&cache.id, Some(&identifiers))
            .await
            .expect("observe");
        assert_eq!(diff(&desired, &seen), vec![], "at {nodes} nodes: {seen:?}");
    }
    let all = ctx.calls.snapshot();
    for op in ["CreateReplicationGroup", "DeleteReplicationGroup"] {
        assert_eq!(
            all.get(&("ElastiCache".to_string(), op.to_string()))
                .copied(),
            if op == "CreateReplicationGroup" {
                Some(1)
            } else {
                None
            },
            "{op}: the group is never replaced"
        );
    }
}

#[tokio::test]
async fn removed_tags_are_seen_as_drift_and_update_restores_them() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    client
        .remove_tags_from_resource()
        .resource_name(&applied.outputs["arn"])
        .tag_keys("panka:service")
        .send()
        .await
        .expect("drift made");
    client
        .add_tags_to_resource()
        .resource_name(&applied.outputs["arn"])
        .tags(
            aws_sdk_elasticache::types::Tag::builder()
                .key("added-by")
                .value("console")
                .build(),
        )
        .send()
        .await
        .expect("drift made");
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert!(
        !seen.owned,
        "a group missing a panka tag is not recognised as ours"
    );
    let desired = driver.desired(&cache, &network_outputs().await, &Lookups::default());
    let diffs = diff(&desired, &seen);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        (diffs[0].field.as_str(), &diffs[0].change),
        ("tags", &Change::Update)
    );

    // Without --adopt the driver will not touch what its tags do not mark as ours.
    let err = driver
        .update(
            &cache,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect_err("not ours any more");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    let adopting = Ctx {
        adopt: true,
        ..ctx.clone()
    };
    short_waiting(&adopting)
        .update(
            &cache,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("update with --adopt");
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
}

/// Tags an ElastiCache resource by hand, as in the console.
async fn tag_by_hand(client: &aws_sdk_elasticache::Client, arn: &str, tags: &[(&str, &str)]) {
    let tags = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_elasticache::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
        })
        .collect();
    client
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tags))
        .send()
        .await
        .expect("tagged by hand");
}

#[tokio::test]
async fn a_tag_added_by_hand_is_drift_and_removed_but_ignored_ones_are_kept() {
    let (_, ctx, client, cache) = env().await;
    let ctx = ignoring_tags(&ctx, &HAND_IGNORED);
    let driver = short_waiting(&ctx);
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let arn = &applied.outputs["arn"];
    let group_arn = subnet_group(&client, &applied.identifiers["subnetGroup"])
        .await
        .and_then(|g| g.arn().map(str::to_string))
        .expect("the cache subnet group has an ARN");
    let desired = driver.desired(&cache, &network_outputs().await, &Lookups::default());

    // Tags matching `ignoreTags` are another system's: no difference.
    tag_by_hand(&client, arn, &HAND_TAGS[1..]).await;
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "ignored tags are not drift");

    // Any other tag is.
    tag_by_hand(&client, arn, &HAND_TAGS[..1]).await;
    tag_by_hand(&client, &group_arn, &HAND_TAGS).await;
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert!(seen.owned, "a tag more does not make it someone else's");
    let diffs = diff(&desired, &seen);
    assert_eq!(
        diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["tags"],
        "{diffs:?}"
    );
    driver
        .update(
            &cache,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("update");

    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "converged");
    assert_converged_tags(&tags_of(&client, arn).await, "replication group");
    // The cache subnet group is not compared by plans, but converged with its group.
    assert_converged_tags(&tags_of(&client, &group_arn).await, "cache subnet group");
}

#[tokio::test]
async fn a_same_named_group_without_our_tags_is_not_taken() {
    let (driver, ctx, client, cache) = env().await;
    let name = driver.group_id(&cache.id);
    client
        .create_replication_group()
        .replication_group_id(&name)
        .replication_group_description("someone else's")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .send()
        .await
        .expect("foreign group");
    let seen = driver.observe(&cache.id, None).await.expect("observe");
    assert!(seen.exists && !seen.owned);
    let before = ctx.calls.snapshot();
    let err = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("--adopt"), "{err}");
    let err = driver
        .delete(&cache.id, &BTreeMap::new())
        .await
        .expect_err("must not delete a foreign group");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    let after = ctx.calls.snapshot();
    let writes = |m: &BTreeMap<(String, String), u64>| {
        m.iter()
            .filter(|((_, op), _)| panka_controller::driver::is_mutating(op))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert_eq!(
        writes(&after),
        writes(&before),
        "a foreign group is not touched"
    );
    assert!(
        !after.keys().any(|(_, op)| op == "GetSecretValue"),
        "the token is not even read for a refused group"
    );
}

#[tokio::test]
async fn delete_starts_the_deletion_once_and_keeps_the_subnet_group_while_the_group_exists() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let sg_name = &applied.identifiers["subnetGroup"];
    let deletes = |ctx: &Ctx| {
        ctx.calls
            .snapshot()
            .get(&(
                "ElastiCache".to_string(),
                "DeleteReplicationGroup".to_string(),
            ))
            .copied()
            .unwrap_or(0)
    };

    // moto keeps a deleted group in `deleting` for ever; AWS removes it after a few minutes,
    // and then the subnet group goes too. The driver does not wait: it says so at once.
    let started = std::time::Instant::now();
    let deletion = driver
        .delete(&cache.id, &applied.identifiers)
        .await
        .expect("delete starts");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no waiting inside the driver"
    );
    let Deletion::Progressing { status, .. } = &deletion else {
        panic!("the group never finishes deleting here: {deletion:?}");
    };
    assert!(
        status.contains("deleting") && status.contains(sg_name),
        "{status}"
    );
    assert_eq!(deletes(&ctx), 1);
    let group = describe(&client, &applied.identifiers["name"]).await;
    assert_eq!(group.status(), Some("deleting"));
    assert!(
        subnet_group(&client, sg_name).await.is_some(),
        "a subnet group in use is not deleted"
    );
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    // On its way out: gone as far as a plan goes (a new apply creates it, after waiting).
    assert!(!seen.exists, "{seen:?}");
    assert_eq!(seen.status, "deleting");

    // A second delete (the next step, a re-run destroy) only looks again: nothing is asked
    // twice.
    let before = ctx.calls.mutating();
    let again = driver
        .delete(&cache.id, &applied.identifiers)
        .await
        .expect("looks again");
    assert!(matches!(again, Deletion::Progressing { .. }), "{again:?}");
    assert_eq!(ctx.calls.mutating(), before);
    assert_eq!(deletes(&ctx), 1);
}

#[tokio::test]
async fn observing_many_groups_equals_observing_each_with_fewer_calls() {
    let (driver, ctx, _client, cache) = env().await;
    let mut items: Vec<Observe> = Vec::new();
    for name in ["cache", "cache-b", "cache-c"] {
        let mut c = cache.clone();
        c.id = ComponentId::new("notification-service", name);
        let applied = driver
            .create(&c, &network_outputs().await, &Lookups::default())
            .await
            .expect("create");
        // One observed with its record (engine version, subnet group), the others without.
        let recorded = (name == "cache").then_some(applied.identifiers);
        items.push((c.id, recorded));
    }
    items.push((ComponentId::new("notification-service", "never-made"), None));

    // Calls made between two snapshots, by operation.
    let count = |from: &BTreeMap<(String, String), u64>, to: &BTreeMap<(String, String), u64>| {
        to.iter()
            .map(|(k, n)| (k.1.clone(), n - from.get(k).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect::<BTreeMap<String, u64>>()
    };

    let t0 = ctx.calls.snapshot();
    let mut one_by_one = Vec::new();
    for (id, recorded) in &items {
        one_by_one.push(
            driver
                .observe(id, recorded.as_ref())
                .await
                .expect("observe"),
        );
    }
    let t1 = ctx.calls.snapshot();
    let batched = driver.observe_many(&items, 4).await.expect("observe many");
    let t2 = ctx.calls.snapshot();

    assert_eq!(batched, one_by_one);
    assert!(batched[..3].iter().all(|o| o.exists && o.owned));
    assert_eq!(
        batched[0].identifiers["subnetGroup"],
        driver.subnet_group_name(&items[0].0)
    );
    assert!(!batched[3].exists);
    assert_eq!(batched[3].status, "missing");

    let single = count(&t0, &t1);
    let many = count(&t1, &t2);
    eprintln!("observe per component: {single:?}\nobserve_many: {many:?}");
    assert_eq!(
        single,
        BTreeMap::from([
            ("DescribeCacheClusters".to_string(), 3),
            ("DescribeReplicationGroups".to_string(), 4),
            ("ListTagsForResource".to_string(), 3),
        ])
    );
    assert_eq!(
        many,
        BTreeMap::from([
            ("DescribeCacheClusters".to_string(), 1),
            ("DescribeReplicationGroups".to_string(), 1),
            ("ListTagsForResource".to_string(), 3),
        ])
    );
}

#[tokio::test]
async fn a_group_to_create_with_an_auth_token_that_does_not_exist_is_refused_at_plan_time() {
    let (driver, ctx, _client, cache) = env().await;
    let seen = driver.observe(&cache.id, None).await.expect("observe");
    assert!(!seen.exists);
    // The existing secret passes.
    driver
        .complete(&cache, &BTreeMap::new(), &Lookups::default(), seen.clone())
        .await
        .expect("the token's secret exists");

    let mut wrong = cache.clone();
    let missing = format!("/panka-tests/{}/no-token", ctx.naming.stack);
    spec(&mut wrong)
        .security
        .as_mut()
        .expect("security settings")
        .auth_token_secret = Some(PasswordSecret {
        secret_ref: missing.clone(),
        key: None,
    });
    let err = driver
        .complete(&wrong, &BTreeMap::new(), &Lookups::default(), seen)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, DriverError::MissingSecret { file, secret, field, .. }
            if *secret == missing && field == "security.authTokenSecret.ref" && *file == wrong.source),
        "{err:?}"
    );
    assert_eq!(ctx.calls.mutating(), 0, "nothing was changed");
    assert!(
        !ctx.calls
            .snapshot()
            .keys()
            .any(|(_, op)| op == "GetSecretValue"),
        "a reference is checked without reading its value"
    );
}
