//! The SQS driver against the local emulator through the real SDK: create, observe, drift made
//! with direct SDK calls (as a person in the console would), update, foreign resources, delete.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use panka_controller::driver::sqs::SqsDriver;
use panka_controller::driver::{Ctx, Driver, DriverError, Lookups, Outputs};
use panka_core::model::{ComponentSpec, DesiredComponent};
use panka_core::plan::diff;
use panka_tests::emulator::{
    assert_converged_tags, driver_ctx, emulator, example_component, ignoring_tags, HAND_IGNORED,
    HAND_TAGS,
};

/// The example's `notification-service/queue` (standard queue, DLQ with maxReceiveCount 3).
fn example_queue() -> DesiredComponent {
    example_component("notification-service", "queue")
}

async fn driver() -> (SqsDriver, Ctx, aws_sdk_sqs::Client) {
    let sdk = emulator().sdk_config().await;
    let ctx = driver_ctx(&sdk, false);
    (SqsDriver::new(&ctx), ctx, aws_sdk_sqs::Client::new(&sdk))
}

async fn attrs(client: &aws_sdk_sqs::Client, url: &str) -> std::collections::HashMap<Attr, String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Attr::All)
        .send()
        .await
        .expect("attributes readable")
        .attributes()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn create_makes_a_tagged_queue_and_dlq_that_observe_reports_converged() {
    let (driver, ctx, client) = driver().await;
    let queue = example_queue();
    let applied = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let url = &applied.outputs["url"];
    assert!(
        url.contains(&format!(
            "{}-development-notification-service-queue",
            ctx.naming.stack
        )),
        "{url}"
    );

    // Checked with direct SDK reads, not through the driver.
    let a = attrs(&client, url).await;
    assert_eq!(a[&Attr::VisibilityTimeout], "300");
    assert_eq!(a[&Attr::MessageRetentionPeriod], "345600");
    let redrive: serde_json::Value =
        serde_json::from_str(&a[&Attr::RedrivePolicy]).expect("redrive is JSON");
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "3"
    );
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str(),
        Some(applied.outputs["dlqArn"].as_str())
    );
    let tags = client
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .expect("tags")
        .tags()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        tags.get("panka:component").map(String::as_str),
        Some("queue")
    );
    assert_eq!(
        tags.get("panka:managed-by").map(String::as_str),
        Some("panka")
    );

    let before = ctx.calls.mutating();
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    assert_eq!(ctx.calls.mutating(), before, "observe must not mutate");
    assert!(seen.exists && seen.owned);
    let desired = driver.desired(&queue, &Outputs::new(), &Lookups::default());
    assert_eq!(
        diff(&desired, &seen),
        vec![],
        "a fresh queue matches its spec"
    );
    assert_eq!(seen.outputs["url"], *url);
}

#[tokio::test]
async fn a_console_change_is_seen_as_a_diff_and_update_reverts_it() {
    let (driver, _ctx, client) = driver().await;
    let queue = example_queue();
    let applied = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    client
        .set_queue_attributes()
        .queue_url(&applied.outputs["url"])
        .attributes(Attr::VisibilityTimeout, "45")
        .send()
        .await
        .expect("drift made");
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    let desired = driver.desired(&queue, &Outputs::new(), &Lookups::default());
    let diffs = diff(&desired, &seen);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].field, "visibilityTimeout");
    driver
        .update(&queue, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![]);
    assert_eq!(
        attrs(&client, &applied.outputs["url"]).await[&Attr::VisibilityTimeout],
        "300"
    );
}

async fn queue_tags(client: &aws_sdk_sqs::Client, url: &str) -> BTreeMap<String, String> {
    client
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .expect("tags readable")
        .tags()
        .map(|t| t.clone().into_iter().collect())
        .unwrap_or_default()
}

/// Tags a queue by hand, as in the console.
async fn tag_by_hand(client: &aws_sdk_sqs::Client, url: &str, tags: &[(&str, &str)]) {
    let mut req = client.tag_queue().queue_url(url);
    for (k, v) in tags {
        req = req.tags(*k, *v);
    }
    req.send().await.expect("tagged by hand");
}

#[tokio::test]
async fn a_tag_added_by_hand_is_drift_and_removed_but_ignored_ones_are_kept() {
    let sdk = emulator().sdk_config().await;
    let ctx = ignoring_tags(&driver_ctx(&sdk, false), &HAND_IGNORED);
    let driver = SqsDriver::new(&ctx);
    let client = aws_sdk_sqs::Client::new(&sdk);
    let queue = example_queue();
    let applied = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let (url, dlq_url) = (&applied.outputs["url"], &applied.outputs["dlqUrl"]);
    let desired = driver.desired(&queue, &Outputs::new(), &Lookups::default());

    // Tags matching `ignoreTags` are another system's: no difference.
    tag_by_hand(&client, url, &HAND_TAGS[1..]).await;
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "ignored tags are not drift");

    // Any other tag is.
    tag_by_hand(&client, url, &HAND_TAGS[..1]).await;
    tag_by_hand(&client, dlq_url, &HAND_TAGS).await;
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    let diffs = diff(&desired, &seen);
    assert_eq!(
        diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["tags"],
        "{diffs:?}"
    );
    driver
        .update(&queue, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");

    let seen = driver.observe(&queue.id, None).await.expect("observe");
    assert_eq!(diff(&desired, &seen), vec![], "converged");
    assert_converged_tags(&queue_tags(&client, url).await, "queue");
    // The dead-letter queue is not compared by plans, but converged with its queue.
    assert_converged_tags(&queue_tags(&client, dlq_url).await, "dead-letter queue");
    let before = ctx.calls.mutating();
    driver
        .converge(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("converge");
    assert_eq!(ctx.calls.mutating(), before, "nothing left to change");
}

#[tokio::test]
async fn turning_the_dlq_off_removes_the_redrive_and_the_dlq() {
    let (driver, _ctx, client) = driver().await;
    let mut queue = example_queue();
    let applied = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let ComponentSpec::Sqs(spec) = &mut queue.spec else {
        panic!("not SQS")
    };
    spec.dead_letter_queue = None;
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    let desired = driver.desired(&queue, &Outputs::new(), &Lookups::default());
    let diffs = diff(&desired, &seen);
    assert!(
        diffs.iter().any(|d| d.field == "deadLetterQueue.enabled"),
        "{diffs:?}"
    );
    driver
        .update(&queue, &Outputs::new(), &Lookups::default(), &diffs, &seen)
        .await
        .expect("update");
    let a = attrs(&client, &applied.outputs["url"]).await;
    assert!(
        a.get(&Attr::RedrivePolicy).is_none_or(String::is_empty),
        "{a:?}"
    );
    let gone = client
        .get_queue_url()
        .queue_name(
            applied.outputs["dlqUrl"]
                .rsplit('/')
                .next()
                .unwrap_or_default(),
        )
        .send()
        .await;
    assert!(gone.is_err(), "the DLQ was deleted");
}

#[tokio::test]
async fn a_same_named_queue_without_our_tags_is_not_taken() {
    let (driver, ctx, client) = driver().await;
    let queue = example_queue();
    let name = ctx
        .naming
        .component(&queue.id, None, panka_core::naming::NameRules::SQS);
    client
        .create_queue()
        .queue_name(&name)
        .attributes(Attr::VisibilityTimeout, "10")
        .send()
        .await
        .expect("foreign queue");
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    assert!(seen.exists && !seen.owned);
    let err = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("--adopt"), "{err}");

    // Nor deleted when a record names it (a queue re-created by someone else under the URL).
    let url = seen.identifiers["url"].clone();
    let err = driver
        .delete(
            &queue.id,
            &BTreeMap::from([("url".to_string(), url.clone())]),
        )
        .await
        .expect_err("must refuse to delete");
    assert!(matches!(err, DriverError::NotOurs { .. }), "{err}");
    assert!(
        client
            .get_queue_attributes()
            .queue_url(&url)
            .send()
            .await
            .is_ok(),
        "the foreign queue is still there"
    );
}

#[tokio::test]
async fn delete_removes_both_queues_and_is_idempotent() {
    let (driver, _ctx, client) = driver().await;
    let queue = example_queue();
    let applied = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    driver
        .delete(&queue.id, &applied.identifiers)
        .await
        .expect("delete");
    driver
        .delete(&queue.id, &applied.identifiers)
        .await
        .expect("second delete is a no-op");
    let seen = driver.observe(&queue.id, None).await.expect("observe");
    assert!(!seen.exists);
    // By name: the emulator is shared by every test of this binary.
    let name = applied.outputs["url"]
        .rsplit('/')
        .next()
        .expect("a queue url");
    let listed = client
        .list_queues()
        .queue_name_prefix(name)
        .send()
        .await
        .expect("list")
        .queue_urls()
        .to_vec();
    assert!(!listed
        .iter()
        .any(|u| u == &applied.outputs["url"] || u == &applied.outputs["dlqUrl"]));
}

#[tokio::test]
async fn every_call_is_counted_by_service_and_operation() {
    let (driver, ctx, _client) = driver().await;
    let queue = example_queue();
    driver.observe(&queue.id, None).await.expect("observe");
    let calls = ctx.calls.snapshot();
    assert!(
        calls
            .keys()
            .any(|(svc, op)| svc == "SQS" && op == "GetQueueUrl"),
        "{calls:?}"
    );
    assert_eq!(ctx.calls.mutating(), 0);
    driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    assert!(ctx.calls.mutating() > 0, "{:?}", ctx.calls.snapshot());
}

#[tokio::test]
async fn observe_with_recorded_identifiers_skips_the_lookups() {
    let (driver, ctx, _client) = driver().await;
    let queue = example_queue();
    let applied = driver
        .create(&queue, &Outputs::new(), &Lookups::default())
        .await
        .expect("create");
    let before = ctx.calls.snapshot();
    let seen = driver
        .observe(&queue.id, Some(&applied.identifiers))
        .await
        .expect("observe");
    let after = ctx.calls.snapshot();
    let lookups = |m: &BTreeMap<(String, String), u64>| {
        m.get(&("SQS".to_string(), "GetQueueUrl".to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        lookups(&after),
        lookups(&before),
        "no GetQueueUrl with recorded URLs"
    );
    assert_eq!(
        diff(
            &driver.desired(&queue, &Outputs::new(), &Lookups::default()),
            &seen
        ),
        vec![]
    );
    assert_eq!(seen.outputs["dlqArn"], applied.outputs["dlqArn"]);
    assert_eq!(seen.outputs["dlqUrl"], applied.outputs["dlqUrl"]);
}
