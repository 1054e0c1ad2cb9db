//! The bake period after a release, end to end: the example's `user-platform` stack (under a
//! name of its own) with `rollback.bake: 4s`, and load balancer metrics published to the
//! emulator's CloudWatch during the bake, as the load balancer would. Under the thresholds the release stands;
//! an error rate over 5 % or a p99 over 2000 ms rolls it back and the command fails saying why.

use std::path::Path;
use std::process::Output;

use panka_controller::session::next_minute;
use panka_tests::console;
use panka_tests::emulator::{emulator, panka_backend, panka_command, unique_name};
use panka_tests::output::text;
use panka_tests::repo::{create_example_secrets, edit, renamed_example};
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
fn dimensions(home: &Path, root: &Path, stack: &str, component: &str) -> Dimensions {
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
    Dimensions(
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
        "  rollback:\n    bake: 4s\n  approval:\n",
    );
    let sdk = emulator().sdk_config().await;
    create_example_secrets(root, &stack).await;
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
        text(&first).contains("✓ Bake period passed with no traffic seen: nothing was judged"),
        "{}",
        text(&first)
    );

    let notification = dimensions(home, root, &stack, "notification-service/api");
    let users = dimensions(home, root, &stack, "user-service/api");
    let env = format!("{stack}-development");
    let api = format!("{env}-notification-service-api");

    // Errors served before a release are not the release's: v1.3.0 bakes clean, then serves
    // 2 % errors at 300 ms, under the thresholds.
    let now = std::time::SystemTime::now;
    // What the load balancer serves in the first whole minute after a release finished: the
    // bake's window (the minute it finished in is the previous release's too).
    let during = || next_minute(now()) + std::time::Duration::from_secs(1);
    console::feed_load_balancer_metrics(&sdk, notification.as_pair(), now(), (100, 50, 0.3)).await;
    let fine = apply_baking(home, root, &stack, &["VERSION=v1.3.0"], async {
        console::feed_load_balancer_metrics(&sdk, notification.as_pair(), during(), (100, 2, 0.3))
            .await;
    })
    .await;
    assert!(fine.status.success(), "{}", text(&fine));
    assert!(
        text(&fine).contains("✓ Bake period passed\n"),
        "{}",
        text(&fine)
    );
    assert!(console::image(&sdk, &env, &api).await.ends_with(":v1.3.0"));

    // v1.4.0 serves 30 % errors during its bake: rolled back.
    let bad = apply_baking(home, root, &stack, &["VERSION=v1.4.0"], async {
        console::feed_load_balancer_metrics(&sdk, notification.as_pair(), during(), (100, 30, 0.3))
            .await;
    })
    .await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let said = text(&bad);
    // 30 % of its own requests, or 16 % with v1.3.0's when both fall in one minute.
    assert!(said.contains("notification-service/api: "), "{said}");
    assert!(
        said.contains("% of requests failed with 5XX during the bake (threshold 5%)"),
        "{said}"
    );
    assert!(said.contains("rolled back notification-service/worker, notification-service/api to their previous spec"), "{said}");
    assert!(console::image(&sdk, &env, &api).await.ends_with(":v1.3.0"));

    // Over the p99 latency, on the one service a release changes.
    let slow = apply_baking(
        home,
        root,
        &stack,
        &["VERSION=v1.3.0", "USER_API_VERSION=v3.5.0"],
        async {
            console::feed_load_balancer_metrics(&sdk, users.as_pair(), during(), (50, 0, 2.5))
                .await;
        },
    )
    .await;
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

/// `(target group, load balancer)` dimensions.
struct Dimensions(String, String);

impl Dimensions {
    fn as_pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

/// Runs `apply --var VARS…` and, once its bake starts (its output says `Baking for`), `feed`:
/// what the load balancer serves while the release bakes.
async fn apply_baking(
    home: &Path,
    root: &Path,
    stack: &str,
    vars: &[&str],
    feed: impl std::future::Future<Output = ()>,
) -> Output {
    use std::io::{BufRead, BufReader, Read};
    let mut cmd = panka_command(env!("CARGO_BIN_EXE_panka"), home);
    cmd.arg("--repo")
        .arg(root)
        .args(["apply", "--yes", "--health-timeout", "60"])
        .args(["-s", stack, "-e", "development"]);
    for v in vars {
        cmd.args(["--var", v]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("panka starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, baking) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            if line.starts_with("Baking for") {
                let _ = lines.send(());
            }
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
        }
        all
    });
    let started = tokio::task::spawn_blocking(move || baking.recv().is_ok())
        .await
        .expect("joins");
    if started {
        feed.await;
    }
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_end(&mut stderr)
        .expect("stderr read");
    let status = child.wait().expect("panka ends");
    let stdout = reader.join().expect("reader joins");
    Output {
        status,
        stdout,
        stderr,
    }
}
