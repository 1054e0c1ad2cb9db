//! The S3 driver against the local emulator through the real SDK: create, observe, drift made
//! with direct SDK calls (as a person in the console would), update, foreign buckets, delete of a
//! bucket holding versions and delete markers.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, PublicAccessBlockConfiguration, Tag, Tagging, VersioningConfiguration,
};
use panka_controller::driver::s3::S3Driver;
use panka_controller::driver::{Ctx, Driver, DriverError, Lookups, Outputs};
use panka_core::model::{ComponentSpec, DesiredComponent};
use panka_core::plan::{diff, Change};
use panka_tests::emulator::{
    assert_converged_tags, driver_ctx, emulator, example_component, ignoring_tags, HAND_IGNORED,
    HAND_TAGS,
};

/// The example's `notification-service/templates` (versioning, AES256, blocked, noncurrent 90).
fn example_bucket() -> DesiredComponent {
    example_component("notification-service", "templates")
}

async fn driver(adopt: bool) -> (S3Driver, Ctx, aws_sdk_s3::Client) {
    let sdk = emulator().sdk_config().await;
    let ctx = driver_ctx(&sdk, adopt);
    (
        S3Driver::new(&ctx),
        ctx,
        panka_controller::aws::s3_client(&sdk, None),
    )
}

async fn tags(client: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, String> {
    client
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .expect("tags readable")
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

#[tokio::test]
async fn create_makes_a_configured_tagged_bucket_that_observe_reports_converged() {
    let (driver, ctx, client) = driver(false).await;
    let bucket = example_bucket();
    let applied = driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    assert_eq!(
        *name,
        format!(
            "{}-development-notification-service-templates",
            ctx.naming.stack
        )
    );
    assert_eq!(applied.outputs["arn"], format!("arn:aws:s3:::{name}"));
    assert_eq!(
        applied.outputs["domainName"],
        format!("{name}.s3.us-east-1.amazonaws.com")
    );

    // Checked with direct SDK reads, not through the driver.
    let versioning = client
        .get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .expect("versioning");
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let enc = client
        .get_bucket_encryption()
        .bucket(name)
        .send()
        .await
        .expect("encryption");
    let rule = enc
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .expect("a default encryption rule");
    assert_eq!(rule.sse_algorithm().as_str(), "AES256");
    let block = client
        .get_public_access_block()
        .bucket(name)
        .send()
        .await
        .expect("public access block");
    let block = block
        .public_access_block_configuration()
        .expect("configuration");
    assert_eq!(
        [
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ],
        [Some(true); 4]
    );
    let lifecycle = client
        .get_bucket_lifecycle_configuration()
        .bucket(name)
        .send()
        .await
        .expect("lifecycle");
    let rule = lifecycle.rules().first().expect("one rule");
    assert_eq!(
        rule.noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(90)
    );
    assert_eq!(rule.expiration().and_then(|e| e.days()), None);
    let t = tags(&client, name).await;
    assert_eq!(
        t.get("panka:component").map(String::as_str),
        Some("templates")
    );
    assert_eq!(t.get("panka:managed-by").map(String::as_str), Some("panka"));

    let before = ctx.calls.mutating();
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert_eq!(ctx.calls.mutating(), before, "observe must not mutate");
    assert!(seen.exists && seen.owned);
    let desired = driver.desired(&bucket, &Outputs::new(), &Lookups::default());
    assert_eq!(
        diff(&desired, &seen),
        vec![],
        "a fresh bucket matches its spec"
    );
    assert_eq!(seen.outputs, applied.outputs);

    // Converged: a second create (what a retried apply does) writes nothing.
    let before = ctx.calls.mutating();
    driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("second create");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a converged bucket needs no write"
    );
}

#[tokio::test]
async fn console_changes_are_seen_as_diffs_and_update_reverts_them() {
    let (driver, _ctx, client) = driver(false).await;
    let bucket = example_bucket();
    let applied = driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    client
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .expect("versioning drift");
    client
        .put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(false)
                .ignore_public_acls(true)
                .block_public_policy(false)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .expect("public access drift");
    client
        .delete_bucket_lifecycle()
        .bucket(name)
        .send()
        .await
        .expect("lifecycle drift");

    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    let desired = driver.desired(&bucket, &Outputs::new(), &Lookups::default());
    let diffs = diff(&desired, &seen);
    let mut fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["lifecycle", "publicAccessBlock", "versioning"]);
    assert!(diffs.iter().all(|d| d.change == Change::Update));

    driver
        .update(&bucket, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
    let versioning = client
        .get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .expect("versioning");
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
}

/// Adds tags by hand, as in the console: S3 takes the whole set at once.
async fn tag_by_hand(client: &aws_sdk_s3::Client, bucket: &str, add: &[(&str, &str)]) {
    let mut all = tags(client, bucket).await;
    all.extend(add.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let set = all
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("tag"))
        .collect();
    client
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(set))
                .build()
                .expect("tagging"),
        )
        .send()
        .await
        .expect("tagged by hand");
}

#[tokio::test]
async fn a_tag_added_by_hand_is_drift_and_removed_but_ignored_ones_are_kept() {
    let sdk = emulator().sdk_config().await;
    let ctx = ignoring_tags(&driver_ctx(&sdk, false), &HAND_IGNORED);
    let driver = S3Driver::new(&ctx);
    let client = panka_controller::aws::s3_client(&sdk, None);
    let bucket = example_bucket();
    let applied = driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    let desired = driver.desired(&bucket, &Outputs::new(), &Lookups::default());

    // Tags matching `ignoreTags` are another system's: no difference.
    tag_by_hand(&client, name, &HAND_TAGS[1..]).await;
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "ignored tags are not drift");

    // Any other tag is.
    tag_by_hand(&client, name, &HAND_TAGS[..1]).await;
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    let diffs = diff(&desired, &seen);
    assert_eq!(
        diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["tags"],
        "{diffs:?}"
    );
    driver
        .update(&bucket, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");

    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "converged");
    // PutBucketTagging replaces the whole set: the ignored tags were written back.
    assert_converged_tags(&tags(&client, name).await, "bucket");
    let before = ctx.calls.mutating();
    driver
        .converge(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("converge");
    assert_eq!(ctx.calls.mutating(), before, "nothing left to change");
}

#[tokio::test]
async fn spec_changes_are_applied_in_place() {
    let (driver, _ctx, client) = driver(false).await;
    let mut bucket = example_bucket();
    let applied = driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    let ComponentSpec::S3(spec) = &mut bucket.spec else {
        panic!("not S3")
    };
    spec.public_access = Some(panka_crds::spec::PublicAccess::Allowed);
    spec.lifecycle = Some(panka_crds::spec::Lifecycle {
        expiration_days: Some(30),
        noncurrent_version_expiration_days: Some(7),
    });
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    let desired = driver.desired(&bucket, &Outputs::new(), &Lookups::default());
    let diffs = diff(&desired, &seen);
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    driver
        .update(&bucket, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
    let lifecycle = client
        .get_bucket_lifecycle_configuration()
        .bucket(name)
        .send()
        .await
        .expect("lifecycle");
    let rule = lifecycle.rules().first().expect("one rule");
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(30));
}

#[tokio::test]
async fn a_same_named_bucket_without_our_tags_is_refused_unless_adopted() {
    let (driver, ctx, client) = driver(false).await;
    let bucket = example_bucket();
    let name = driver.bucket_name(&bucket.id);
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("foreign bucket");
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert!(seen.exists && !seen.owned);
    let before = ctx.calls.mutating();
    let err = driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("--adopt"), "{err}");
    assert_eq!(
        ctx.calls.mutating(),
        before,
        "a refused bucket is not touched"
    );
    let err = driver
        .delete(
            &bucket.id,
            &BTreeMap::from([("name".to_string(), name.clone())]),
        )
        .await
        .expect_err("must not empty a foreign bucket");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");

    // With --adopt the same bucket is taken over and tagged.
    let adopting = Ctx {
        adopt: true,
        ..ctx.clone()
    };
    S3Driver::new(&adopting)
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("adopt");
    assert_eq!(
        tags(&client, &name)
            .await
            .get("panka:managed-by")
            .map(String::as_str),
        Some("panka")
    );
    assert!(
        driver
            .observe(&bucket.id, None)
            .await
            .expect("observe")
            .owned
    );
}

#[tokio::test]
async fn delete_empties_every_version_then_removes_the_bucket_and_is_idempotent() {
    let (driver, ctx, client) = driver(false).await;
    let bucket = example_bucket();
    let applied = driver
        .create(&bucket, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let name = &applied.outputs["name"];
    for body in ["v1", "v2"] {
        client
            .put_object()
            .bucket(name)
            .key("templates/welcome.html")
            .body(ByteStream::from_static(body.as_bytes()))
            .send()
            .await
            .expect("object written");
    }
    client
        .delete_object()
        .bucket(name)
        .key("templates/welcome.html")
        .send()
        .await
        .expect("delete marker");
    let listed = client
        .list_object_versions()
        .bucket(name)
        .send()
        .await
        .expect("versions");
    assert_eq!(
        (listed.versions().len(), listed.delete_markers().len()),
        (2, 1)
    );

    driver
        .delete(&bucket.id, &applied.identifiers)
        .await
        .expect("delete");
    let gone = client.head_bucket().bucket(name).send().await;
    assert!(gone.is_err(), "the bucket is gone");
    let before = ctx.calls.mutating();
    driver
        .delete(&bucket.id, &applied.identifiers)
        .await
        .expect("second delete is a no-op");
    assert_eq!(ctx.calls.mutating(), before);
    assert!(
        !driver
            .observe(&bucket.id, None)
            .await
            .expect("observe")
            .exists
    );
}

#[tokio::test]
async fn observe_tells_a_missing_bucket_and_an_untagged_one_from_one_tagging_read() {
    let (driver, ctx, client) = driver(false).await;
    let bucket = example_bucket();
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert!(!seen.exists);
    assert_eq!(seen.status, "missing");

    // A bucket of the same name without any tag: here, but not ours.
    let name = driver.bucket_name(&bucket.id);
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    let seen = driver.observe(&bucket.id, None).await.expect("observe");
    assert!(seen.exists && !seen.owned);

    let ops: Vec<String> = ctx.calls.snapshot().into_keys().map(|(_, op)| op).collect();
    assert!(!ops.iter().any(|op| op == "HeadBucket"), "{ops:?}");
}
