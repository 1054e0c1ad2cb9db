//! The bake period after a release, end to end: the example's `user-platform` stack (under a
//! name of its own) with `rollback.bake: 2s`, and load balancer metrics published to the
//! emulator's CloudWatch as the load balancer would. Under the thresholds the release stands;
//! an error rate over 5 % or a p99 over 2000 ms rolls it back and the command fails saying why.

use std::path::Path;
use std::process::Output;

use panka_tests::console;
use panka_tests::emulator::{emulator, ensure_secrets, panka_backend, panka_command, unique_name};
use panka_tests::output::text;
use panka_tests::repo::{edit, renamed_example};
use serde_json::Value;

fn panka(home: &Path, root: &Path, stack: &str, args: &[&str]) -> Output {
    panka_command(env!("CARGO_BIN_EXE_panka"), home)
        .arg("--repo")
        .arg(root)
        .args(args)
        .args(["-s", stack, "-e", "development"])
        .output()
        .expect("failed to run panka")
}

/// The CloudWatch dimensions (`targetgroup/…`, `app/…`) of a service, from `state show`.
fn dimensions(home: &Path, root: &Path, stack: &str, component: &str) -> (String, String) {
    let out = panka(home, root, stack, &["state", "show", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let state: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let components = &state["components"];
    let tg = components[component]["identifiers"]["targetGroupArn"]
        .as_str()
        .expect("a target group");
    let alb = components["_stack/alb"]["identifiers"]["arn"]
        .as_str()
        .expect("a load balancer");
    (
        tg.rsplit_once(':').expect("an ARN").1.to_owned(),
        alb.split_once(":loadbalancer/")
            .expect("an ARN")
            .1
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_is_rolled_back_when_its_bake_crosses_a_threshold() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let stack = unique_name("bk");
    let repo = renamed_example("user-platform", &stack);
    let root = repo.path();
    edit(
        root,
        &format!("stacks/{stack}/infra/defaults.yaml"),
        "  approval:\n",
        "  rollback:\n    bake: 2s\n  approval:\n",
    );
    let sdk = emulator().sdk_config().await;
    let loaded = panka_controller::validate::load_stack(root, &stack).expect("loads");
    let (desired, _) = panka_controller::validate::plan_input(
        &loaded,
        "development",
        &panka_core::resolve::Options::default(),
    )
    .expect("resolves");
    ensure_secrets(&sdk, &desired).await;
    panka_backend(env!("CARGO_BIN_EXE_panka"), home, "bake");
    let apply = |vars: &[&str]| {
        let mut args = vec!["apply", "--yes", "--health-timeout", "60"];
        for v in vars {
            args.extend(["--var", v]);
        }
        panka(home, root, &stack, &args)
    };
    // The first release bakes too: no traffic yet is no data, not a failure.
    let first = apply(&[]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("✓ Bake period passed"),
        "{}",
        text(&first)
    );

    let notification = dimensions(home, root, &stack, "notification-service/api");
    let users = dimensions(home, root, &stack, "user-service/api");
    let env = format!("{stack}-development");
    let api = format!("{env}-notification-service-api");

    // Under the thresholds (2 % errors, 300 ms): the release stands.
    console::feed_load_balancer_metrics(&sdk, (&notification.0, &notification.1), 100, 2, 0.3)
        .await;
    let fine = apply(&["VERSION=v1.3.0"]);
    assert!(fine.status.success(), "{}", text(&fine));
    assert!(
        text(&fine).contains("✓ Bake period passed"),
        "{}",
        text(&fine)
    );
    assert!(console::image(&sdk, &env, &api).await.ends_with(":v1.3.0"));

    // Over the error rate: 12 more 5XX of 100 more requests (7 % over the window).
    console::feed_load_balancer_metrics(&sdk, (&notification.0, &notification.1), 100, 12, 0.3)
        .await;
    let bad = apply(&["VERSION=v1.4.0"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let said = text(&bad);
    assert!(said.contains("notification-service/api: 7.0% of requests failed with 5XX during the bake (threshold 5%)"), "{said}");
    assert!(said.contains("rolled back notification-service/worker, notification-service/api to their previous spec"), "{said}");
    assert!(console::image(&sdk, &env, &api).await.ends_with(":v1.3.0"));

    // Over the p99 latency, on the one service a release changes.
    console::feed_load_balancer_metrics(&sdk, (&users.0, &users.1), 50, 0, 2.5).await;
    let slow = apply(&["VERSION=v1.3.0", "USER_API_VERSION=v3.5.0"]);
    assert_eq!(slow.status.code(), Some(1), "{}", text(&slow));
    let said = text(&slow);
    assert!(
        said.contains(
            "user-service/api: p99 response time 2500 ms during the bake (threshold 2000 ms)"
        ),
        "{said}"
    );
    assert!(
        said.contains("rolled back user-service/api to their previous spec"),
        "{said}"
    );
    let user_api = format!("{env}-user-service-api");
    assert!(console::image(&sdk, &env, &user_api)
        .await
        .ends_with(":v3.4.1"));

    let history = panka(home, root, &stack, &["history"]);
    let history = String::from_utf8_lossy(&history.stdout).into_owned();
    let v140 = history
        .lines()
        .find(|l| l.contains(" apply ") && l.contains("v1.4.0"));
    assert!(
        v140.is_some_and(|l| l.contains("⚠ Rolled back")),
        "{history}"
    );
}
