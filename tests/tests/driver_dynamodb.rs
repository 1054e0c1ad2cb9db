//! The DynamoDB driver against the local emulator through the real SDK: create, observe, drift
//! made with direct SDK calls (as a person in the console would), update, key changes planned as
//! replacements, foreign tables, delete.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus,
    ProvisionedThroughput, Tag, TimeToLiveStatus,
};
use panka_controller::driver::dynamodb::DynamoDbDriver;
use panka_controller::driver::{Ctx, Driver, DriverError, Lookups, Outputs};
use panka_core::model::{ComponentSpec, DesiredComponent};
use panka_core::plan::{diff, Change};
use panka_crds::spec::{AttributeType, Stream, StreamViewType};
use panka_tests::emulator::{
    assert_converged_tags, driver_ctx, emulator, example_component, ignoring_tags, HAND_IGNORED,
    HAND_TAGS,
};

/// The example's `notification-service/preferences` (userId/channel, on demand, TTL, PITR).
fn example_table() -> DesiredComponent {
    example_component("notification-service", "preferences")
}

async fn driver() -> (DynamoDbDriver, Ctx, aws_sdk_dynamodb::Client) {
    let sdk = emulator().sdk_config().await;
    let ctx = driver_ctx(&sdk, false);
    (
        DynamoDbDriver::new(&ctx),
        ctx,
        aws_sdk_dynamodb::Client::new(&sdk),
    )
}

fn spec(component: &mut DesiredComponent) -> &mut panka_crds::spec::DynamoDbSpec {
    match &mut component.spec {
        ComponentSpec::DynamoDb(s) => s,
        _ => panic!("not DynamoDB"),
    }
}

#[tokio::test]
async fn create_makes_a_configured_tagged_table_that_observe_reports_converged() {
    let (driver, ctx, client) = driver().await;
    let table = example_table();
    let applied = driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    assert_eq!(
        *name,
        format!(
            "{}-development-notification-service-preferences",
            ctx.naming.stack
        )
    );
    assert!(
        !applied.outputs.contains_key("streamArn"),
        "no stream asked for"
    );

    // Checked with direct SDK reads, not through the driver.
    let desc = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .expect("describe");
    let desc = desc.table().expect("table");
    assert_eq!(desc.table_arn(), Some(applied.outputs["arn"].as_str()));
    let keys: Vec<(&str, &KeyType)> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(
        keys,
        [("userId", &KeyType::Hash), ("channel", &KeyType::Range)]
    );
    assert_eq!(
        desc.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .expect("ttl");
    let ttl = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));
    let backups = client
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .expect("backups");
    assert_eq!(
        backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status()),
        Some(&PointInTimeRecoveryStatus::Enabled)
    );
    let tags: BTreeMap<String, String> = client
        .list_tags_of_resource()
        .resource_arn(&applied.outputs["arn"])
        .send()
        .await
        .expect("tags")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags, ctx.tags(&table.id));

    let before = ctx.calls.mutating();
    let seen = driver.observe(&table.id, None).await.expect("observe");
    assert_eq!(ctx.calls.mutating(), before, "observe must not mutate");
    assert!(seen.exists && seen.owned);
    assert_eq!(seen.status, "active");
    let desired = driver.desired(&table, &Outputs::new(), &Lookups::default());
    assert_eq!(
        diff(&desired, &seen),
        vec![],
        "a fresh table matches its spec"
    );
    assert_eq!(seen.outputs, applied.outputs);

    let before = ctx.calls.mutating();
    driver
        .update(&table, &Outputs::new(), &Lookups::default(), &[], &seen)
        .await
        .expect("converged update");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a converged table needs no write"
    );
}

#[tokio::test]
async fn console_changes_are_seen_as_diffs_and_update_reverts_them() {
    let (driver, _ctx, client) = driver().await;
    let table = example_table();
    let applied = driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    client
        .update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(false)
                .build()
                .expect("spec"),
        )
        .send()
        .await
        .expect("PITR drift");
    client
        .update_table()
        .table_name(name)
        .billing_mode(BillingMode::Provisioned)
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(5)
                .build()
                .expect("throughput"),
        )
        .send()
        .await
        .expect("billing drift");

    let seen = driver.observe(&table.id, None).await.expect("observe");
    let desired = driver.desired(&table, &Outputs::new(), &Lookups::default());
    let diffs = diff(&desired, &seen);
    let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["billingMode", "pointInTimeRecovery"], "{diffs:?}");
    assert!(diffs.iter().all(|d| d.change == Change::Update));

    driver
        .update(&table, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");
    let seen = driver.observe(&table.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
}

async fn table_tags(client: &aws_sdk_dynamodb::Client, arn: &str) -> BTreeMap<String, String> {
    client
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("tags readable")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// Tags a table by hand, as in the console.
async fn tag_by_hand(client: &aws_sdk_dynamodb::Client, arn: &str, tags: &[(&str, &str)]) {
    let tags = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("tag"))
        .collect();
    client
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tags))
        .send()
        .await
        .expect("tagged by hand");
}

#[tokio::test]
async fn a_tag_added_by_hand_is_drift_and_removed_but_ignored_ones_are_kept() {
    let sdk = emulator().sdk_config().await;
    let ctx = ignoring_tags(&driver_ctx(&sdk, false), &HAND_IGNORED);
    let driver = DynamoDbDriver::new(&ctx);
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = example_table();
    let applied = driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let arn = &applied.outputs["arn"];
    let desired = driver.desired(&table, &Outputs::new(), &Lookups::default());

    // Tags matching `ignoreTags` are another system's: no difference.
    tag_by_hand(&client, arn, &HAND_TAGS[1..]).await;
    let seen = driver.observe(&table.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "ignored tags are not drift");

    // Any other tag is.
    tag_by_hand(&client, arn, &HAND_TAGS[..1]).await;
    let seen = driver.observe(&table.id, None).await.expect("observe");
    let diffs = diff(&desired, &seen);
    assert_eq!(
        diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["tags"],
        "{diffs:?}"
    );
    driver
        .update(&table, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");

    let seen = driver.observe(&table.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "converged");
    assert_converged_tags(&table_tags(&client, arn).await, "table");
    let before = ctx.calls.mutating();
    driver
        .converge(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("converge");
    assert_eq!(ctx.calls.mutating(), before, "nothing left to change");
}

#[tokio::test]
async fn capacity_stream_and_ttl_changes_are_applied_in_place() {
    let (driver, _ctx, client) = driver().await;
    let mut table = example_table();
    let applied = driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let s = spec(&mut table);
    s.billing_mode = Some(panka_crds::spec::BillingMode::Provisioned);
    s.capacity = Some(panka_crds::spec::Capacity { read: 3, write: 2 });
    s.stream = Some(Stream {
        view_type: StreamViewType::NewAndOldImages,
    });
    s.ttl = None;
    let seen = driver.observe(&table.id, None).await.expect("observe");
    let desired = driver.desired(&table, &Outputs::new(), &Lookups::default());
    let diffs = diff(&desired, &seen);
    let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["billingMode", "capacity", "stream", "ttl"],
        "{diffs:?}"
    );
    let updated = driver
        .update(&table, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");
    assert!(
        updated
            .outputs
            .get("streamArn")
            .is_some_and(|a| a.contains(applied.outputs["name"].as_str())),
        "{updated:?}"
    );
    let seen = driver.observe(&table.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
    assert_eq!(
        seen.outputs.get("streamArn"),
        updated.outputs.get("streamArn")
    );
    let desc = client
        .describe_table()
        .table_name(&applied.outputs["name"])
        .send()
        .await
        .expect("describe");
    let t = desc
        .table()
        .and_then(|t| t.provisioned_throughput())
        .expect("throughput");
    assert_eq!(
        (t.read_capacity_units(), t.write_capacity_units()),
        (Some(3), Some(2))
    );
}

#[tokio::test]
async fn a_key_change_is_planned_as_a_replacement_and_refused_in_place() {
    let (driver, _ctx, _client) = driver().await;
    let mut table = example_table();
    driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    spec(&mut table)
        .keys
        .sort
        .as_mut()
        .expect("sort key")
        .attr_type = AttributeType::N;
    let seen = driver.observe(&table.id, None).await.expect("observe");
    let diffs = diff(
        &driver.desired(&table, &Outputs::new(), &Lookups::default()),
        &seen,
    );
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].field, "keys");
    assert_eq!(
        diffs[0].change,
        Change::Replace("a table's key schema is fixed at creation".into())
    );
    let err = driver
        .update(&table, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect_err("keys cannot change in place");
    assert!(err.to_string().contains("replaced"), "{err}");
}

#[tokio::test]
async fn a_same_named_table_without_our_tags_is_not_taken() {
    let (driver, ctx, client) = driver().await;
    let table = example_table();
    let name = driver.table_name(&table.id);
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("userId")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("userId")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("foreign table");
    let seen = driver.observe(&table.id, None).await.expect("observe");
    assert!(seen.exists && !seen.owned);
    let before = ctx.calls.mutating();
    let err = driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("--adopt"), "{err}");
    let err = driver
        .delete(&table.id, &BTreeMap::new())
        .await
        .expect_err("must not delete a foreign table");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a foreign table is not touched"
    );
}

#[tokio::test]
async fn delete_removes_the_table_and_is_idempotent() {
    let (driver, ctx, client) = driver().await;
    let table = example_table();
    let applied = driver
        .create(&table, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    driver
        .delete(&table.id, &applied.identifiers)
        .await
        .expect("delete");
    let gone = client
        .describe_table()
        .table_name(&applied.outputs["name"])
        .send()
        .await;
    assert!(gone.is_err(), "the table is gone");
    let before = ctx.calls.mutating();
    driver
        .delete(&table.id, &applied.identifiers)
        .await
        .expect("second delete is a no-op");
    assert_eq!(ctx.calls.mutating(), before);
    assert!(
        !driver
            .observe(&table.id, None)
            .await
            .expect("observe")
            .exists
    );
}
