//! The RDS driver against the local emulator through the real SDK: the master password read from
//! Secrets Manager (created here first) and never echoed, the subnet group in the default VPC,
//! observe (one instance and many at once), drift made with direct SDK calls, update, refused
//! storage shrink, foreign instances, deletion protection and delete.

use std::collections::BTreeMap;

use panka_controller::driver::rds::RdsDriver;
use panka_controller::driver::{Ctx, Driver, DriverError, Lookups, Observe};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::plan::{diff, Change};
use panka_crds::spec::RdsSpec;
use panka_tests::emulator::{
    assert_converged_tags, driver_ctx, emulator, example_component, ignoring_tags, HAND_IGNORED,
    HAND_TAGS,
};
use panka_tests::stack::network_outputs;

/// The master password every test stores; asserted never to appear in anything the driver returns.
const PASSWORD: &str = "s3cret-Pa55word-never-shown";

/// The example's `notification-service/database` (postgres 15.4, db.t3.medium, 50 GB gp3).
fn example_database() -> DesiredComponent {
    example_component("notification-service", "database")
}

fn spec(component: &mut DesiredComponent) -> &mut RdsSpec {
    match &mut component.spec {
        ComponentSpec::Rds(s) => s,
        _ => panic!("not RDS"),
    }
}

struct Env {
    driver: RdsDriver,
    ctx: Ctx,
    rds: aws_sdk_rds::Client,
    db: DesiredComponent,
}

/// A driver on a fresh stack name, and the example database whose password secret exists.
async fn env() -> Env {
    let sdk = emulator().sdk_config().await;
    let ctx = driver_ctx(&sdk, false);
    let mut db = example_database();
    // A secret per test: the emulator is shared by the tests of this binary.
    let secret = format!("/panka-tests/{}/db-password", ctx.naming.stack);
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret)
        .secret_string(
            serde_json::json!({ "username": "dbadmin", "password": PASSWORD }).to_string(),
        )
        .send()
        .await
        .expect("secret created");
    spec(&mut db).database.password_secret.secret_ref = secret;
    Env {
        driver: RdsDriver::new(&ctx),
        ctx,
        rds: aws_sdk_rds::Client::new(&sdk),
        db,
    }
}

async fn describe(rds: &aws_sdk_rds::Client, name: &str) -> aws_sdk_rds::types::DbInstance {
    rds.describe_db_instances()
        .db_instance_identifier(name)
        .send()
        .await
        .expect("describe")
        .db_instances()
        .first()
        .cloned()
        .expect("one instance")
}

#[tokio::test]
async fn create_makes_a_configured_tagged_instance_that_observe_reports_converged() {
    let Env {
        driver,
        ctx,
        rds,
        db,
    } = env().await;
    let applied = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let name = &applied.identifiers["name"];
    assert_eq!(
        *name,
        format!(
            "{}-development-notification-service-database",
            ctx.naming.stack
        )
    );

    // Checked with direct SDK reads, not through the driver.
    let got = describe(&rds, name).await;
    assert_eq!(got.engine(), Some("postgres"));
    assert_eq!(got.engine_version(), Some("15.4"));
    assert_eq!(got.db_instance_class(), Some("db.t3.medium"));
    assert_eq!(got.allocated_storage(), Some(50));
    assert_eq!(got.storage_type(), Some("gp3"));
    assert_eq!(got.db_name(), Some("notificationdb"));
    assert_eq!(got.master_username(), Some("dbadmin"));
    assert_eq!(got.deletion_protection(), Some(false));
    let group = got.db_subnet_group().expect("a subnet group");
    assert_eq!(group.db_subnet_group_name(), Some(name.as_str()));
    assert!(!group.subnets().is_empty(), "subnets of the default VPC");
    let tags: BTreeMap<String, String> = rds
        .list_tags_for_resource()
        .resource_name(got.db_instance_arn().expect("arn"))
        .send()
        .await
        .expect("tags")
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    assert_eq!(tags, ctx.tags(&db.id));

    for output in ["endpoint", "port", "arn", "address", "databaseName"] {
        assert!(
            applied.outputs.contains_key(output),
            "{output} missing: {applied:?}"
        );
    }
    assert_eq!(applied.outputs["port"], "5432");
    assert_eq!(applied.outputs["endpoint"], applied.outputs["address"]);
    assert!(
        !applied.outputs["endpoint"].contains(':'),
        "a host name, no port"
    );

    let before = ctx.calls.mutating();
    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert_eq!(ctx.calls.mutating(), before, "observe must not mutate");
    assert!(seen.exists && seen.owned);
    assert_eq!(seen.status, "available");
    let desired = driver.desired(&db, &network_outputs().await, &Lookups::default());
    assert_eq!(
        diff(&desired, &seen),
        vec![],
        "a fresh instance matches its spec"
    );
    assert_eq!(seen.outputs, applied.outputs);

    // The password went to RDS and nowhere else.
    let everything = format!(
        "{applied:?} {seen:?} {desired:?} {}",
        serde_json::to_string(&seen).expect("serialisable")
    );
    assert!(!everything.contains(PASSWORD), "the password leaked");

    // Converged: an update makes no call that writes, and never reads the secret again.
    let before = ctx.calls.snapshot();
    let writes = ctx.calls.mutating();
    driver
        .update(
            &db,
            &network_outputs().await,
            &Lookups::default(),
            &[],
            &seen,
        )
        .await
        .expect("converged update");
    let after = ctx.calls.snapshot();
    assert_eq!(
        ctx.calls.mutating(),
        writes,
        "a converged instance needs no write"
    );
    let secret_reads = |m: &BTreeMap<(String, String), u64>| {
        m.iter()
            .filter(|((_, op), _)| op == "GetSecretValue")
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert_eq!(
        secret_reads(&after),
        secret_reads(&before),
        "update read the password"
    );
}

#[tokio::test]
async fn console_changes_are_seen_as_diffs_and_update_reverts_them() {
    let Env {
        driver, rds, db, ..
    } = env().await;
    let applied = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let name = &applied.identifiers["name"];
    rds.modify_db_instance()
        .db_instance_identifier(name)
        .db_instance_class("db.t3.large")
        .backup_retention_period(9)
        .deletion_protection(true)
        .apply_immediately(true)
        .send()
        .await
        .expect("drift made");

    let seen = driver.observe(&db.id, None).await.expect("observe");
    let desired = driver.desired(&db, &network_outputs().await, &Lookups::default());
    let diffs = diff(&desired, &seen);
    let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "backup.retentionDays",
            "deletionProtection",
            "instanceClass"
        ],
        "{diffs:?}"
    );
    assert!(diffs.iter().all(|d| d.change == Change::Update));
    driver
        .update(
            &db,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("update");
    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
    let got = describe(&rds, name).await;
    assert_eq!(got.db_instance_class(), Some("db.t3.medium"));
    assert_eq!(got.backup_retention_period(), Some(1));
}

async fn rds_tags(rds: &aws_sdk_rds::Client, arn: &str) -> BTreeMap<String, String> {
    rds.list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .expect("tags readable")
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

/// Tags an RDS resource by hand, as in the console.
async fn tag_by_hand(rds: &aws_sdk_rds::Client, arn: &str, tags: &[(&str, &str)]) {
    let tags = tags
        .iter()
        .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build())
        .collect();
    rds.add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tags))
        .send()
        .await
        .expect("tagged by hand");
}

#[tokio::test]
async fn a_tag_added_by_hand_is_drift_and_removed_but_ignored_ones_are_kept() {
    let Env { ctx, rds, db, .. } = env().await;
    let ctx = ignoring_tags(&ctx, &HAND_IGNORED);
    let driver = RdsDriver::new(&ctx);
    let applied = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let arn = &applied.identifiers["arn"];
    let group_arn = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&applied.identifiers["subnetGroup"])
        .send()
        .await
        .expect("subnet group")
        .db_subnet_groups()
        .first()
        .and_then(|g| g.db_subnet_group_arn())
        .expect("subnet group ARN")
        .to_string();
    let desired = driver.desired(&db, &network_outputs().await, &Lookups::default());

    // Tags matching `ignoreTags` are another system's: no difference.
    tag_by_hand(&rds, arn, &HAND_TAGS[1..]).await;
    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "ignored tags are not drift");

    // Any other tag is.
    tag_by_hand(&rds, arn, &HAND_TAGS[..1]).await;
    tag_by_hand(&rds, &group_arn, &HAND_TAGS).await;
    let seen = driver.observe(&db.id, None).await.expect("observe");
    let diffs = diff(&desired, &seen);
    assert_eq!(
        diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["tags"],
        "{diffs:?}"
    );
    driver
        .update(
            &db,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("update");

    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "converged");
    assert_converged_tags(&rds_tags(&rds, arn).await, "DB instance");
    // The subnet group is not compared by plans, but converged with its instance.
    assert_converged_tags(&rds_tags(&rds, &group_arn).await, "DB subnet group");
}

#[tokio::test]
async fn fixed_fields_are_replacements_and_storage_never_shrinks() {
    let Env { driver, db, .. } = env().await;
    driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");

    let mut renamed = db.clone();
    spec(&mut renamed).database.username = "admin2".into();
    let seen = driver.observe(&db.id, None).await.expect("observe");
    let diffs = diff(
        &driver.desired(&renamed, &network_outputs().await, &Lookups::default()),
        &seen,
    );
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        diffs[0].change,
        Change::Replace("the master user name is fixed at creation".into())
    );

    let mut upgraded = db.clone();
    spec(&mut upgraded).engine.version = "16.1".into();
    spec(&mut upgraded).instance.storage.allocated_gb = 100;
    let diffs = diff(
        &driver.desired(&upgraded, &network_outputs().await, &Lookups::default()),
        &seen,
    );
    assert!(
        diffs.iter().all(|d| d.change == Change::Update),
        "{diffs:?}"
    );
    driver
        .update(
            &upgraded,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("major upgrade and growth in place");
    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert_eq!(
        diff(
            &driver.desired(&upgraded, &network_outputs().await, &Lookups::default()),
            &seen
        ),
        vec![]
    );

    // Back to 50 GB: RDS cannot shrink storage, and the driver says so before calling it.
    let diffs = diff(
        &driver.desired(&db, &network_outputs().await, &Lookups::default()),
        &seen,
    );
    let err = driver
        .update(
            &db,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect_err("shrinking is refused");
    assert!(err.to_string().contains("cannot shrink"), "{err}");
}

#[tokio::test]
async fn a_missing_password_secret_fails_the_create_and_names_the_secret() {
    let Env {
        driver,
        ctx,
        rds,
        mut db,
    } = env().await;
    let missing = format!("/panka-tests/{}/nope", ctx.naming.stack);
    spec(&mut db).database.password_secret.secret_ref = missing.clone();
    let err = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect_err("no secret, no database");
    assert!(err.to_string().contains(&missing), "{err}");
    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert!(!seen.exists);

    // The plan already refuses it, naming the field, before any change: `complete` looks the
    // reference up (DescribeSecret, no value read) for an instance still to be created.
    let value_reads = || {
        ctx.calls
            .snapshot()
            .iter()
            .filter(|((_, op), _)| op == "GetSecretValue")
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let (before, reads_before) = (ctx.calls.mutating(), value_reads());
    let err = driver
        .complete(
            &db,
            &network_outputs().await,
            &Lookups::default(),
            seen.clone(),
        )
        .await
        .expect_err("a plan to create it is refused");
    assert!(
        matches!(&err, DriverError::MissingSecret { file, secret, field, .. }
            if *secret == missing && field == "database.passwordSecret.ref" && *file == db.source),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!("{}: ", db.source)),
        "{err}"
    );
    assert_eq!(ctx.calls.mutating(), before, "checking changes nothing");
    assert_eq!(
        value_reads(),
        reads_before,
        "no value is read to check a reference"
    );
    let group = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(driver.subnet_group_name(&db.id))
        .send()
        .await;
    assert!(
        group.is_err(),
        "nothing is created before the secret is read"
    );
}

#[tokio::test]
async fn a_same_named_instance_without_our_tags_is_not_taken() {
    let Env {
        driver,
        ctx,
        rds,
        db,
    } = env().await;
    let name = driver.instance_name(&db.id);
    rds.create_db_instance()
        .db_instance_identifier(&name)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("someone")
        .master_user_password("elses-password")
        .send()
        .await
        .expect("foreign instance");
    let seen = driver.observe(&db.id, None).await.expect("observe");
    assert!(seen.exists && !seen.owned);
    let before = ctx.calls.mutating();
    let err = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("--adopt"), "{err}");
    let err = driver
        .delete(&db.id, &BTreeMap::new())
        .await
        .expect_err("must not delete a foreign instance");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a foreign instance is not touched"
    );
}

#[tokio::test]
async fn deletion_protection_is_lifted_only_when_the_spec_turned_it_off() {
    let Env {
        driver,
        ctx,
        rds,
        mut db,
    } = env().await;
    spec(&mut db).deletion_protection = Some(true);
    let protected = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    assert_eq!(protected.identifiers["deletionProtection"], "true");
    let name = protected.identifiers["name"].clone();
    let err = driver
        .delete(&db.id, &protected.identifiers)
        .await
        .expect_err("protected");
    assert!(err.to_string().contains("deletion protection"), "{err}");
    assert!(driver.observe(&db.id, None).await.expect("observe").exists);

    // Someone turned protection on by hand after the spec had turned it off: lifted, deleted,
    // no final snapshot.
    spec(&mut db).deletion_protection = Some(false);
    let seen = driver.observe(&db.id, None).await.expect("observe");
    let diffs = diff(
        &driver.desired(&db, &network_outputs().await, &Lookups::default()),
        &seen,
    );
    let unprotected = driver
        .update(
            &db,
            &network_outputs().await,
            &Lookups::default(),
            &diffs,
            &seen,
        )
        .await
        .expect("update");
    assert_eq!(unprotected.identifiers["deletionProtection"], "false");
    rds.modify_db_instance()
        .db_instance_identifier(&name)
        .deletion_protection(true)
        .apply_immediately(true)
        .send()
        .await
        .expect("drift made");
    driver
        .delete(&db.id, &unprotected.identifiers)
        .await
        .expect("delete");
    assert!(!driver.observe(&db.id, None).await.expect("observe").exists);
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier(&name)
        .snapshot_type("manual")
        .send()
        .await
        .expect("snapshots");
    assert!(snapshots.db_snapshots().is_empty(), "no final snapshot");
    let group = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&name)
        .send()
        .await;
    assert!(group.is_err(), "the subnet group went with the instance");

    let before = ctx.calls.mutating();
    driver
        .delete(&db.id, &unprotected.identifiers)
        .await
        .expect("second delete is a no-op");
    assert_eq!(ctx.calls.mutating(), before);
}

#[tokio::test]
async fn delete_without_a_record_of_the_spec_keeps_a_final_snapshot() {
    let Env {
        driver, rds, db, ..
    } = env().await;
    let applied = driver
        .create(&db, &network_outputs().await, &Lookups::default())
        .await
        .expect("create");
    let name = applied.identifiers["name"].clone();
    let observed = driver.observe(&db.id, None).await.expect("observe");
    assert!(!observed.identifiers.contains_key("deletionProtection"));
    driver
        .delete(&db.id, &observed.identifiers)
        .await
        .expect("delete");
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier(&name)
        .snapshot_type("manual")
        .send()
        .await
        .expect("snapshots");
    let ids: Vec<&str> = snapshots
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].starts_with(&format!("{name}-final-")), "{ids:?}");
}

#[tokio::test]
async fn observing_many_instances_equals_observing_each_in_one_call() {
    let Env {
        driver, ctx, db, ..
    } = env().await;
    let mut items: Vec<Observe> = Vec::new();
    for name in ["database", "database-b"] {
        let mut c = db.clone();
        c.id = ComponentId::new("notification-service", name);
        let applied = driver
            .create(&c, &network_outputs().await, &Lookups::default())
            .await
            .expect("create");
        // One observed by its record, the other by its name.
        let recorded = (name == "database").then_some(applied.identifiers);
        items.push((c.id, recorded));
    }
    items.push((ComponentId::new("notification-service", "never-made"), None));
    let describes = || {
        ctx.calls
            .snapshot()
            .get(&("RDS".to_string(), "DescribeDBInstances".to_string()))
            .copied()
            .unwrap_or(0)
    };

    let t0 = describes();
    let mut one_by_one = Vec::new();
    for (id, recorded) in &items {
        one_by_one.push(
            driver
                .observe(id, recorded.as_ref())
                .await
                .expect("observe"),
        );
    }
    let t1 = describes();
    let before = ctx.calls.total();
    let batched = driver.observe_many(&items, 4).await.expect("observe many");
    let t2 = describes();

    assert_eq!(batched, one_by_one);
    assert!(batched[..2].iter().all(|o| o.exists && o.owned));
    assert_eq!(batched[2].status, "missing");
    eprintln!(
        "DescribeDBInstances: {} one by one, {} for all",
        t1 - t0,
        t2 - t1
    );
    assert_eq!(t1 - t0, 3);
    assert_eq!(t2 - t1, 1);
    assert_eq!(
        ctx.calls.total() - before,
        1,
        "nothing but the one describe"
    );
}
