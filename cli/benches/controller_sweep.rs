//! Controller benchmark (issue 11, item 12): `panka-controller --no-kubernetes` on a generated
//! repository of 200 stacks × 5 components (1,000 components) against the local emulator.
//!
//! Run: `cargo bench --profile dev -p panka --bench controller_sweep`
//! (`PANKA_BENCH_STACKS=50` for a smaller run; `PANKA_BENCH_RATE=20` to measure with an AWS call
//! budget, default none).
//!
//! Prints, from the controller's own `/metrics` and `/proc`:
//! 1. the first full sweep: time from start until every stack is applied, and AWS calls;
//! 2. a converged drift sweep (a second controller started on the converged repository, which
//!    checks every target once): time and AWS calls;
//! 3. the controller's peak RSS (VmHWM) after each;
//! 4. reconcile latency from a commit to the start of its apply (the lock taken), without the
//!    webhook (a 10 s poll) and with it.
//!
//! Wall times come from the emulator (moto), which serves one request at a time in Python:
//! compare them between runs of this benchmark, not with AWS.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use panka_tests::emulator::{panka_backend, unique_name};
use panka_tests::gitops::{controller_binary, free_port, push_webhook, Controller};
use panka_tests::repo::commit_all;

const PANKA: &str = env!("CARGO_BIN_EXE_panka");

fn main() {
    let stacks: usize = std::env::var("PANKA_BENCH_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rate = std::env::var("PANKA_BENCH_RATE").unwrap_or_else(|_| "0".to_owned());
    let home = tempfile::tempdir().expect("tempdir");
    panka_backend(PANKA, home.path(), "bench");
    let work = home.path().join("deploy");
    let prefix = unique_name("b");
    for i in 0..stacks {
        write_stack(&work, &format!("{prefix}-{i:03}"));
    }
    commit_all(&work);
    let branch = git2::Repository::open(&work)
        .expect("repo")
        .head()
        .expect("head")
        .shorthand()
        .expect("branch")
        .to_owned();
    let bin = controller_binary(PANKA);
    let url = format!("file://{}", work.display());
    let secret = home.path().join("secret");
    std::fs::write(&secret, "bench").expect("write");
    let webhook = format!("127.0.0.1:{}", free_port());
    let args = [
        "--repo-url",
        &url,
        "--branch",
        &branch,
        "-e",
        "development",
        "--poll-interval",
        "10s",
        "--drift-interval",
        "1h",
        "--concurrency",
        "8",
        "--aws-calls-per-second",
        &rate,
        "--webhook-addr",
        &webhook,
        "--webhook-secret-file",
        secret.to_str().expect("utf-8"),
    ];
    println!(
        "controller_sweep: {stacks} stacks × 5 components ({} components), call budget {}",
        stacks * 5,
        if rate == "0" {
            "none".to_owned()
        } else {
            format!("{rate}/s per service")
        }
    );

    // 1. The first full sweep.
    let started = Instant::now();
    let c = Controller::start(&bin, home.path(), &args);
    wait(&c, &["applied"], stacks, Duration::from_secs(3600));
    let first = started.elapsed();
    let first_calls = calls(&c);
    println!(
        "  first sweep:     {:>8.1} s   {:>7} AWS calls ({:.1}/component)   peak RSS {} MiB",
        first.as_secs_f64(),
        first_calls,
        first_calls as f64 / (stacks * 5) as f64,
        peak_rss_mib(&c)
    );

    // 4. Latency from a commit to its apply's start, with the webhook and without.
    let latency = |c: &Controller, stack: &str, webhook_push: bool| {
        let rel = format!("stacks/{stack}/services/app/components/q0/sqs.yaml");
        let path = work.join(&rel);
        let text = std::fs::read_to_string(&path).expect("read");
        let bumped = match text.contains("visibilityTimeout: 30") {
            true => text.replace("visibilityTimeout: 30", "visibilityTimeout: 31"),
            false => text.replace("visibilityTimeout: 31", "visibilityTimeout: 30"),
        };
        std::fs::write(&path, bumped).expect("write");
        let before = c.log_text().matches("lock taken").count();
        commit_all(&work);
        let t = Instant::now();
        if webhook_push {
            assert_eq!(push_webhook(&webhook, b"bench", &branch), 202);
        }
        while c.log_text().matches("lock taken").count() == before {
            assert!(t.elapsed() < Duration::from_secs(120), "no apply started");
            std::thread::sleep(Duration::from_millis(20));
        }
        t.elapsed()
    };
    let polled: Vec<Duration> = (0..3)
        .map(|i| latency(&c, &format!("{prefix}-{i:03}"), false))
        .collect();
    let hooked: Vec<Duration> = (0..3)
        .map(|i| latency(&c, &format!("{prefix}-{i:03}"), true))
        .collect();
    let show = |d: &[Duration]| {
        d.iter()
            .map(|x| format!("{:.2} s", x.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  commit → apply start, 10 s poll:  {}", show(&polled));
    println!("  commit → apply start, webhook:    {}", show(&hooked));
    // A clean stop: a killed controller's lock would stand until its lease runs out.
    let mut c = c;
    c.terminate(Duration::from_secs(60));

    // 2. A converged drift sweep: a new controller checks every target once.
    let started = Instant::now();
    let c = Controller::start(&bin, home.path(), &args);
    wait(
        &c,
        &["synced", "applied", "drifted"],
        stacks,
        Duration::from_secs(3600),
    );
    let sweep = started.elapsed();
    let sweep_calls = calls(&c);
    println!(
        "  converged sweep: {:>8.1} s   {:>7} AWS calls ({:.1}/component)   peak RSS {} MiB",
        sweep.as_secs_f64(),
        sweep_calls,
        sweep_calls as f64 / (stacks * 5) as f64,
        peak_rss_mib(&c)
    );
}

/// Waits until reconciles with one of `results` number `n`.
fn wait(c: &Controller, results: &[&str], n: usize, bound: Duration) {
    let t = Instant::now();
    let done = || {
        results
            .iter()
            .map(|r| c.metric(&format!("panka_reconciles_total{{result=\"{r}\"}}")) as usize)
            .sum::<usize>()
    };
    while done() < n {
        assert!(
            t.elapsed() < bound,
            "reconciles {results:?} never reached {n}:\n{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn calls(c: &Controller) -> u64 {
    c.metrics()
        .lines()
        .filter(|l| l.starts_with("panka_aws_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn peak_rss_mib(c: &Controller) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A stack of five cheap components: three queues, a bucket and a table.
fn write_stack(root: &Path, name: &str) {
    let dir = root.join("stacks").join(name);
    let mut files = vec![
        (
            "stack.yaml".to_owned(),
            format!("apiVersion: core.panka.io/v1\nkind: Stack\nmetadata:\n  name: {name}\nspec:\n  provider:\n    name: aws\n    region: us-east-1\n  environments: [development]\n"),
        ),
        (
            "services/app/service.yaml".to_owned(),
            format!("apiVersion: core.panka.io/v1\nkind: Service\nmetadata:\n  name: app\n  stack: {name}\nspec: {{}}\n"),
        ),
        (
            "environments/development/variables.yaml".to_owned(),
            format!("apiVersion: core.panka.io/v1\nkind: Variables\nmetadata:\n  name: development\n  stack: {name}\n  environment: development\nspec:\n  VERSION: v1\n"),
        ),
        (
            "services/app/components/files/s3.yaml".to_owned(),
            format!("apiVersion: components.panka.io/v1\nkind: S3\nmetadata:\n  name: files\n  service: app\n  stack: {name}\nspec:\n  versioning: true\n  publicAccess: blocked\n"),
        ),
        (
            "services/app/components/prefs/dynamodb.yaml".to_owned(),
            format!("apiVersion: components.panka.io/v1\nkind: DynamoDB\nmetadata:\n  name: prefs\n  service: app\n  stack: {name}\nspec:\n  billingMode: PAY_PER_REQUEST\n  keys:\n    partition:\n      name: id\n      type: S\n"),
        ),
    ];
    for q in 0..3 {
        files.push((
            format!("services/app/components/q{q}/sqs.yaml"),
            format!("apiVersion: components.panka.io/v1\nkind: SQS\nmetadata:\n  name: q{q}\n  service: app\n  stack: {name}\nspec:\n  type: standard\n  visibilityTimeout: 30\n"),
        ));
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}
