//! The ElastiCacheRedis driver against the local emulator through the real SDK: create with an
//! AUTH token from Secrets Manager, observe, every setting change planned as a replacement, tag
//! drift reverted in place, foreign groups, delete.
//!
//! moto 5.1.22 limits what can be shown here: it implements no ModifyReplicationGroup (hence no
//! in-place drift but tags), ignores `NumCacheClusters` (a group always gets one member unless
//! `ReplicasPerNodeGroup` is given), creates no member cache clusters (so the engine version comes
//! from the driver's record, see `ElastiCacheDriver::observe`) and never finishes a deletion (the
//! group stays `deleting`). The converged checks therefore use a one-node group.

use std::collections::BTreeMap;

use panka_controller::driver::elasticache::{ElastiCacheDriver, REPLACE_REASON};
use panka_controller::driver::{Ctx, Driver, DriverError, Outputs};
use panka_controller::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_controller::plan::{diff, Change};
use panka_controller::resolve::Options;
use panka_controller::validate::{load_stack, plan_input};
use panka_crds::spec::{ElastiCacheRedisSpec, PasswordSecret};
use panka_tests::emulator::{driver_ctx, emulator, repo_root};

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
        ElastiCacheDriver::new(&ctx),
        ctx,
        aws_sdk_elasticache::Client::new(&sdk),
        example_cache(&secret),
    )
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
        .create(&cache, &Outputs::new())
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
    let tags: BTreeMap<String, String> = client
        .list_tags_for_resource()
        .resource_name(group.arn().expect("arn"))
        .send()
        .await
        .expect("tags")
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    assert_eq!(tags, ctx.tags(&cache.id));
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
    let desired = driver.desired(&cache, &Outputs::new());
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
        .update(&cache, &Outputs::new(), &[], &seen)
        .await
        .expect("converged update");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a converged group needs no write"
    );
}

#[tokio::test]
async fn every_setting_change_is_planned_as_a_replacement() {
    let (driver, _ctx, _client, cache) = env().await;
    let applied = driver
        .create(&cache, &Outputs::new())
        .await
        .expect("create");
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    let mut changed = cache.clone();
    let s = spec(&mut changed);
    s.engine.version = "7.1".into();
    s.cluster.node_type = "cache.t3.large".into();
    s.security.as_mut().expect("security").at_rest_encryption = Some(false);
    let diffs = diff(&driver.desired(&changed, &Outputs::new()), &seen);
    let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["atRestEncryption", "engineVersion", "nodeType"]);
    assert!(
        diffs
            .iter()
            .all(|d| d.change == Change::Replace(REPLACE_REASON.into())),
        "{diffs:?}"
    );
}

#[tokio::test]
async fn removed_tags_are_seen_as_drift_and_update_restores_them() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &Outputs::new())
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
    let desired = driver.desired(&cache, &Outputs::new());
    let diffs = diff(&desired, &seen);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        (diffs[0].field.as_str(), &diffs[0].change),
        ("tags", &Change::Update)
    );

    // Without --adopt the driver will not touch what its tags do not mark as ours.
    let err = driver
        .update(&cache, &Outputs::new(), &diffs, &seen)
        .await
        .expect_err("not ours any more");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    let adopting = Ctx {
        adopt: true,
        ..ctx.clone()
    };
    ElastiCacheDriver::new(&adopting)
        .update(&cache, &Outputs::new(), &diffs, &seen)
        .await
        .expect("update with --adopt");
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
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
        .create(&cache, &Outputs::new())
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
async fn delete_starts_the_deletion_once_and_a_second_delete_is_a_no_op() {
    let (driver, ctx, client, cache) = env().await;
    let applied = driver
        .create(&cache, &Outputs::new())
        .await
        .expect("create");
    driver
        .delete(&cache.id, &applied.identifiers)
        .await
        .expect("delete");
    // moto keeps a deleted group in `deleting` for ever; AWS removes it after a few minutes.
    let group = describe(&client, &applied.identifiers["name"]).await;
    assert_eq!(group.status(), Some("deleting"));
    let seen = driver
        .observe(&cache.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    assert!(matches!(
        seen.health,
        panka_controller::plan::Health::Degraded(_)
    ));
    let before = ctx.calls.mutating();
    driver
        .delete(&cache.id, &applied.identifiers)
        .await
        .expect("second delete is a no-op");
    assert_eq!(ctx.calls.mutating(), before);
}
