//! The `panka` binary end to end against a fresh emulator: `init`, `backend create`,
//! `state locks` showing a lock held by another process, `unlock` refusing it, `unlock --force`
//! clearing it and recording it in `history`.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use panka_controller::lock::{LockOptions, LockTarget, Locker};
use panka_tests::emulator::{emulator, panka_command, unique_name, REGION};
use panka_tests::output::text;

fn panka(home: &Path, args: &[&str]) -> Output {
    panka_command(env!("CARGO_BIN_EXE_panka"), home)
        .args(args)
        .output()
        .expect("failed to run panka")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_create_locks_unlock_flow() {
    let env = emulator();
    let home = tempfile::tempdir().unwrap();
    let bucket = unique_name("cli-state");
    let table = unique_name("cli-locks");

    let out = panka(
        home.path(),
        &[
            "init",
            "--region",
            REGION,
            "--bucket",
            &bucket,
            "--table",
            &table,
            "--non-interactive",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(home.path().join(".panka/config.yaml")).unwrap();
    assert!(config.contains(&format!("bucket: {bucket}")), "{config}");

    let out = panka(
        home.path(),
        &["backend", "create", "--bucket", &bucket, "--table", &table],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created"), "{}", text(&out));
    // Idempotent.
    let out = panka(
        home.path(),
        &["backend", "create", "--bucket", &bucket, "--table", &table],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Nothing to change"),
        "{}",
        text(&out)
    );

    // Another process (this test) holds the stack lock through the library.
    let b = panka_controller::backend::open_with(
        &panka_controller::config::Config::load(Some(&home.path().join(".panka/config.yaml")))
            .unwrap(),
        Some(&env.sdk_config().await),
    );
    let locker = Locker::new(Arc::clone(&b.locks), LockOptions::default()).unwrap();
    let target = LockTarget::stack("user-platform", "production").unwrap();
    let handle = locker
        .acquire(target, "github-actions-run-12345", "apply", &mut |_| {})
        .await
        .unwrap();

    let out = panka(
        home.path(),
        &[
            "state",
            "locks",
            "--stack",
            "user-platform",
            "--environment",
            "production",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("stack:user-platform:env:production"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("github-actions-run-12345"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("Active"), "{}", text(&out));
    // SINCE and HEARTBEAT as people read them: `2026-11-23 14:30 UTC (0s ago)`, `0s ago`.
    let row = stdout
        .lines()
        .find(|l| l.contains("github-actions-run-12345"))
        .unwrap_or_default();
    assert!(
        row.contains(" UTC (") && row.matches("s ago").count() == 2,
        "{}",
        text(&out)
    );

    let out = panka(home.path(), &["state", "locks", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["lockedBy"], "github-actions-run-12345");
    assert_eq!(json[0]["fence"], handle.fence());

    // A live lock of someone else: refused without --force.
    let out = panka(
        home.path(),
        &[
            "unlock",
            "--stack",
            "user-platform",
            "--environment",
            "production",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("github-actions-run-12345"),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("--force"), "{}", text(&out));

    let out = panka(
        home.path(),
        &[
            "unlock",
            "--stack",
            "user-platform",
            "--environment",
            "production",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Removed lock stack:user-platform:env:production"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("github-actions-run-12345"),
        "{}",
        text(&out)
    );

    let out = panka(
        home.path(),
        &[
            "state",
            "locks",
            "--stack",
            "user-platform",
            "--environment",
            "production",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No locks held"),
        "{}",
        text(&out)
    );

    // The removed holder finds out at its next heartbeat; its release is a no-op.
    assert!(!handle.release().await.unwrap());

    let out = panka(
        home.path(),
        &[
            "history",
            "--stack",
            "user-platform",
            "--environment",
            "production",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("unlock stack:user-platform:env:production"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("forced"), "{}", text(&out));

    let out = panka(
        home.path(),
        &[
            "state",
            "show",
            "--stack",
            "user-platform",
            "--environment",
            "production",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing has been applied"));
}

/// A bucket or table that does not exist, a missing region, an endpoint nobody listens on: one
/// line that says what failed, each cause once, and what to do — never the SDK's debug dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_backends_and_unreachable_aws_say_what_to_do() {
    let _ = emulator();
    let home = tempfile::tempdir().unwrap();
    let (bucket, table) = (unique_name("no-such"), unique_name("no-such"));
    let run = |args: &[&str], env: &[(&str, &str)], remove: &[&str]| {
        let mut cmd = panka_command(env!("CARGO_BIN_EXE_panka"), home.path());
        cmd.env("PANKA_STATE_BUCKET", &bucket)
            .env("PANKA_LOCK_TABLE", &table);
        for (k, v) in env {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        let out = cmd.args(args).output().expect("panka runs");
        assert!(!out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let once = |stderr: &str, cause: &str| {
        assert_eq!(
            stderr.matches(cause).count(),
            1,
            "{cause} not said once:\n{stderr}"
        );
        assert!(
            !stderr.contains("ConnectorError {"),
            "a debug dump:\n{stderr}"
        );
    };

    let target = ["--stack", "user-platform", "--environment", "production"];
    let stderr = run(&[&["history"][..], &target].concat(), &[], &[]);
    once(&stderr, "NoSuchBucket");
    assert!(
        stderr.contains(&format!("s3://{bucket}/"))
            && stderr.contains("hint: the state bucket does not exist")
            && stderr.contains(&format!(
                "panka backend create --bucket {bucket} --table <table>"
            )),
        "{stderr}"
    );

    let stderr = run(&[&["unlock", "--force"][..], &target].concat(), &[], &[]);
    once(&stderr, "ResourceNotFoundException");
    assert!(
        stderr.contains(&format!("dynamodb://{table}"))
            && stderr.contains("hint: the lock table does not exist")
            && stderr.contains(&format!("--table {table}`")),
        "{stderr}"
    );

    let stderr = run(
        &[&["history"][..], &target].concat(),
        &[],
        &["AWS_REGION", "AWS_DEFAULT_REGION"],
    );
    once(
        &stderr,
        "cannot pick the AWS endpoint (A region must be set",
    );
    assert!(stderr.contains("set AWS_REGION"), "{stderr}");

    let stderr = run(
        &[&["history"][..], &target].concat(),
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")],
        &[],
    );
    once(&stderr, "failed to reach AWS:");
    assert!(stderr.contains("Connection refused"), "{stderr}");
}
