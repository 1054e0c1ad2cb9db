//! `panka-controller --source git --no-kubernetes` end to end: the process started as a user
//! would start it, a real git server (`git daemon` on 127.0.0.1, started here) or `file://`, the
//! AWS emulator, S3 state and DynamoDB locks shared with the `panka` CLI.
//!
//! Cases: a commit applied within a poll, a console change undone within a drift interval, the
//! CLI's lock respected, SIGTERM mid-apply leaving no lock and a converging next run, /metrics
//! as Prometheus text, the webhook (bad signature refused, good one fetching at once); an
//! approval environment waiting for `panka approve` (a newer commit superseding the plan, drift
//! remediated through the same gate); a commit to one stack leaving the other unplanned, a bad
//! commit reported with file and line while the previous stays deployed, a rollback's pin held;
//! a policy's denial reported the same way, and a policy change alone judging every stack again;
//! `drift.mode: report` only reporting.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use aws_config::SdkConfig;
use panka_controller::backend::Backends;
use panka_controller::config::Config;
use panka_controller::lock::{LockOptions, LockTarget, Locker};
use panka_controller::state::StateKey;
use panka_core::sync::{PendingPlan, Phase, SyncStatus};
use panka_tests::console;
use panka_tests::emulator::{emulator, panka_backend, panka_command, unique_name};
use panka_tests::gitops::{
    controller_binary, eventually, push_webhook, write_queue_stack, Controller, GitDaemon,
    QueueStack,
};
use panka_tests::output::text;
use panka_tests::repo::{commit_all, copy_renamed_example, create_example_secrets, edit};

const PANKA: &str = env!("CARGO_BIN_EXE_panka");
/// Long enough for the whole example stack on a loaded 2-core machine.
const APPLY: Duration = Duration::from_secs(240);

/// One test's world: a home with `panka init` done against fresh backends, a git working
/// tree (below a folder a git daemon can serve), and the backends as the controller sees them.
struct World {
    rt: tokio::runtime::Runtime,
    home: tempfile::TempDir,
    base: tempfile::TempDir,
    sdk: SdkConfig,
    backends: Backends,
}

impl World {
    fn new(prefix: &str) -> World {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let home = tempfile::tempdir().expect("tempdir");
        panka_backend(PANKA, home.path(), prefix);
        let config = Config::load(Some(&home.path().join(".panka/config.yaml"))).expect("config");
        let sdk = rt.block_on(emulator().sdk_config());
        let backends = panka_controller::backend::open_with(&config, Some(&sdk));
        let base = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(base.path().join("deploy")).expect("mkdir");
        World {
            rt,
            home,
            base,
            sdk,
            backends,
        }
    }

    /// The working tree of the deployment repository.
    fn work(&self) -> PathBuf {
        self.base.path().join("deploy")
    }

    fn commit(&self) -> String {
        commit_all(&self.work())
    }

    fn branch(&self) -> String {
        let repo = git2::Repository::open(self.work()).expect("a repository");
        let head = repo.head().expect("HEAD");
        head.shorthand().expect("a branch").to_owned()
    }

    fn sync(&self, stack: &str, env: &str) -> Option<SyncStatus> {
        let key = StateKey::new(stack, env).expect("key");
        self.rt
            .block_on(self.backends.state.sync(&key))
            .expect("sync.json readable")
    }

    fn pending(&self, stack: &str, env: &str) -> Option<PendingPlan> {
        let key = StateKey::new(stack, env).expect("key");
        self.rt
            .block_on(self.backends.state.pending(&key))
            .expect("pending.json readable")
            .map(|(p, _)| p)
    }

    /// `panka --repo WORK ARGS…`.
    fn panka(&self, args: &[&str]) -> Output {
        panka_command(PANKA, self.home.path())
            .arg("--repo")
            .arg(self.work())
            .args(args)
            .output()
            .expect("panka runs")
    }

    fn controller(&self, args: &[&str]) -> Controller {
        Controller::start(&controller_binary(PANKA), self.home.path(), args)
    }

    /// A controller of `development` on the working tree (`file://`), polling every second and
    /// checking drift every `drift_interval`.
    fn local_controller(&self, drift_interval: &str) -> Controller {
        let url = format!("file://{}", self.work().display());
        self.controller(&[
            "--repo-url",
            &url,
            "--branch",
            &self.branch(),
            "-e",
            "development",
            "--poll-interval",
            "1s",
            "--drift-interval",
            drift_interval,
        ])
    }

    /// Waits until the controller says `stack` is synced to `commit`.
    fn synced(&self, c: &Controller, stack: &str, env: &str, commit: &str, within: Duration) {
        eventually(
            within,
            &format!("{stack} ({env}) synced to {}", &commit[..7]),
            || {
                self.sync(stack, env).filter(|s| {
                    s.phase == Phase::Synced && s.synced_commit.as_deref() == Some(commit)
                })
            },
            || {
                format!(
                    "status: {:#?}\nlog:\n{}",
                    self.sync(stack, env),
                    tail(&c.log_text())
                )
            },
        );
    }

    /// Waits (a minute at most) until the controller records `phase` for `stack` at `commit`.
    fn wait_phase(
        &self,
        c: &Controller,
        (stack, env): (&str, &str),
        phase: Phase,
        commit: &str,
        what: &str,
    ) -> SyncStatus {
        eventually(
            Duration::from_secs(60),
            what,
            || {
                self.sync(stack, env)
                    .filter(|s| s.phase == phase && s.commit.as_deref() == Some(commit))
            },
            || tail(&c.log_text()),
        )
    }

    fn visibility(&self, queue: &str) -> Option<u32> {
        self.rt
            .block_on(console::visibility_timeout(&self.sdk, queue))
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Every line of a Prometheus/OpenMetrics text exposition is a comment or `name{labels} value`,
/// and it ends with `# EOF`.
fn assert_prometheus_text(text: &str) {
    assert!(text.ends_with("# EOF\n"), "no # EOF:\n{text}");
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number in `{line}`");
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in `{line}`"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in `{line}`"
            );
        }
    }
}

#[test]
fn a_commit_is_applied_a_console_change_undone_the_cli_lock_respected_and_sigterm_stops_cleanly() {
    let w = World::new("gitops");
    let stack = unique_name("gop");
    copy_renamed_example(&w.work(), "user-platform", &stack);
    let infra = format!("stacks/{stack}/infra/defaults.yaml");
    // The controller's --drift-interval applies (a stack's own interval is 1 min at least).
    edit(&w.work(), &infra, "    interval: 5m\n", "");
    w.rt.block_on(create_example_secrets(&w.work(), &stack));
    let first = w.commit();
    let daemon = GitDaemon::start(w.base.path());
    let secret = w.home.path().join("webhook-secret");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let webhook = format!("127.0.0.1:{}", panka_tests::gitops::free_port());
    let branch = w.branch();
    let args = [
        "--source",
        "git",
        "--repo-url",
        &daemon.url("deploy"),
        "--branch",
        &branch,
        "--environment",
        "development",
        "--poll-interval",
        "1s",
        "--drift-interval",
        "3s",
        "--webhook-addr",
        &webhook,
        "--webhook-secret-file",
        secret.to_str().expect("utf-8"),
    ];
    let mut c = w.controller(&args);
    w.synced(&c, &stack, "development", &first, APPLY);

    let env = format!("{stack}-development");
    let api = format!("{env}-notification-service-api");
    let image = || w.rt.block_on(console::image(&w.sdk, &env, &api));
    assert!(image().ends_with(":v1.2.0"), "{}", image());

    // A commit to the branch is applied within a poll (plus the apply).
    let vars = format!("stacks/{stack}/environments/development/variables.yaml");
    edit(&w.work(), &vars, "VERSION: v1.2.0", "VERSION: v1.3.0");
    let second = w.commit();
    w.synced(&c, &stack, "development", &second, APPLY);
    assert!(image().ends_with(":v1.3.0"), "{}", image());

    // Someone scales a service down in the console: undone within a drift interval.
    let users = format!("{env}-user-service-api");
    w.rt.block_on(console::scale(&w.sdk, &env, &users, 0));
    eventually(
        Duration::from_secs(90),
        "the console change undone",
        || {
            let count = w.rt.block_on(console::desired_count(&w.sdk, &env, &users));
            let status = w.sync(&stack, "development")?;
            (count == 2 && status.last_remediation.is_some()).then_some(())
        },
        || tail(&c.log_text()),
    );
    let status = w.panka(&["status", "-s", &stack, "-e", "development"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains(&format!("Controller: synced to {}", &second[..7]))
            && shown.contains("remediated 1 change"),
        "{}",
        text(&status)
    );

    // The CLI holds the lock: the controller reports Locked, and proceeds once it is released.
    let locker = Locker::new(w.backends.locks.clone(), LockOptions::default()).expect("locker");
    let held =
        w.rt.block_on(locker.acquire(
            LockTarget::stack(&stack, "development").expect("target"),
            "tester@laptop",
            "apply",
            &mut |_| {},
        ))
        .expect("the CLI's lock");
    edit(&w.work(), &vars, "VERSION: v1.3.0", "VERSION: v1.4.0");
    let third = w.commit();
    let locked = eventually(
        Duration::from_secs(60),
        "Locked reported",
        || {
            w.sync(&stack, "development")
                .filter(|s| s.phase == Phase::Locked)
        },
        || tail(&c.log_text()),
    );
    assert!(
        locked
            .locked_by
            .as_deref()
            .is_some_and(|h| h.contains("tester@laptop")),
        "{locked:?}"
    );
    assert!(
        image().ends_with(":v1.3.0"),
        "applied under someone else's lock"
    );
    w.rt.block_on(held.release()).expect("released");
    w.synced(&c, &stack, "development", &third, APPLY);
    assert!(image().ends_with(":v1.4.0"), "{}", image());

    // /metrics is Prometheus text with the reconcile, drift, call and lock figures.
    let metrics = c.metrics();
    assert_prometheus_text(&metrics);
    for series in [
        "panka_reconciles_total{result=\"applied\"}",
        "panka_reconciles_total{result=\"remediated\"}",
        &format!("panka_lock_waits_total{{stack=\"{stack}\",environment=\"development\"}}"),
        "panka_aws_calls_total{service=\"ECS\",operation=\"UpdateService\"}",
    ] {
        assert!(c.metric(series) >= 1.0, "{series} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("panka_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    // Drift findings are the target's at its last check: none, once remediated.
    let findings = format!(
        "panka_drift_findings{{stack=\"{stack}\",environment=\"development\",severity=\"MEDIUM\"}} 0"
    );
    assert!(
        metrics.contains(&findings),
        "{findings} missing:\n{metrics}"
    );

    // The webhook: a bad signature is refused, a good one accepted.
    assert_eq!(push_webhook(&webhook, b"wrong", &branch), 401);
    assert_eq!(push_webhook(&webhook, b"s3cret", &branch), 202);

    // SIGTERM while a commit is being applied: it stops in bounds and leaves no lock; the
    // next controller carries on to the commit.
    edit(&w.work(), &vars, "VERSION: v1.4.0", "VERSION: v1.5.0");
    let fourth = w.commit();
    let before = c.log_text().matches("lock taken").count();
    eventually(
        Duration::from_secs(60),
        "an apply of the new commit started",
        || (c.log_text().matches("lock taken").count() > before).then_some(()),
        || tail(&c.log_text()),
    );
    let status = c.terminate(Duration::from_secs(90));
    assert!(status.success(), "{status}\n{}", tail(&c.log_text()));
    let log = c.log_text();
    assert!(log.contains("panka-controller stopped"), "{}", tail(&log));
    let locks = w.panka(&["state", "locks", "--output", "json"]);
    assert!(locks.status.success(), "{}", text(&locks));
    let listed: serde_json::Value = serde_json::from_slice(&locks.stdout).expect("json");
    assert!(
        !listed.to_string().contains(&stack),
        "a lock was left behind: {listed}"
    );
    let c2 = w.controller(&args);
    w.synced(&c2, &stack, "development", &fourth, APPLY);
    assert!(image().ends_with(":v1.5.0"), "{}", image());
}

fn queue_stack<'a>(name: &'a str, envs: &'a [&'a str], mode: &'a str) -> QueueStack<'a> {
    QueueStack {
        name,
        environments: envs,
        drift_mode: mode,
        approval: &["production"],
        version: "v1",
        visibility_timeout: 30,
    }
}

#[test]
fn production_waits_for_panka_approve_and_a_newer_commit_supersedes_the_pending_plan() {
    let w = World::new("approve");
    let stack = unique_name("apq");
    write_queue_stack(
        &w.work(),
        &queue_stack(&stack, &["production"], "remediate"),
    );
    let first = w.commit();
    let daemon = GitDaemon::start(w.base.path());
    let secret = w.home.path().join("secret");
    std::fs::write(&secret, "hook").expect("write");
    let webhook = format!("127.0.0.1:{}", panka_tests::gitops::free_port());
    let branch = w.branch();
    // A poll interval of an hour: every fetch after the first comes from the webhook.
    let c = w.controller(&[
        "--repo-url",
        &daemon.url("deploy"),
        "--branch",
        &branch,
        "-e",
        "production",
        "--poll-interval",
        "1h",
        "--drift-interval",
        "2s",
        "--webhook-addr",
        &webhook,
        "--webhook-secret-file",
        secret.to_str().expect("utf-8"),
    ]);
    let push = || assert_eq!(push_webhook(&webhook, b"hook", &branch), 202);
    let queue = format!("{stack}-production-app-queue");
    let pending_of = |commit: &str| {
        let commit = commit.to_owned();
        eventually(
            Duration::from_secs(60),
            "a plan pending approval",
            || {
                w.pending(&stack, "production")
                    .filter(|p| p.waits() && p.commit.as_deref() == Some(commit.as_str()))
            },
            || {
                format!(
                    "{:#?}\n{}",
                    w.sync(&stack, "production"),
                    tail(&c.log_text())
                )
            },
        )
    };
    let plan1 = pending_of(&first);
    let status = w.sync(&stack, "production").expect("status");
    assert_eq!(status.phase, Phase::AwaitingApproval, "{status:?}");
    assert_eq!(status.awaiting_approval.as_deref(), Some(plan1.id.as_str()));
    assert_eq!(w.visibility(&queue), None, "applied without approval");
    assert_eq!(plan1.changes, ["+ app/queue create"]);

    // `panka approve` without --plan shows the plan and approves nothing.
    let shown = w.panka(&["approve", "-s", &stack, "-e", "production"]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!("--plan {}", plan1.id)),
        "{}",
        text(&shown)
    );

    // A newer commit (fetched on the webhook) supersedes the pending plan.
    edit(
        &w.work(),
        &format!("stacks/{stack}/services/app/components/queue/sqs.yaml"),
        "visibilityTimeout: 30",
        "visibilityTimeout: 60",
    );
    let second = w.commit();
    push();
    let plan2 = pending_of(&second);
    assert_ne!(plan1.id, plan2.id);
    let stale = w.panka(&[
        "approve",
        "-s",
        &stack,
        "-e",
        "production",
        "--plan",
        &plan1.id,
    ]);
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale));
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("not the pending plan"),
        "{}",
        text(&stale)
    );
    let ok = w.panka(&[
        "approve",
        "-s",
        &stack,
        "-e",
        "production",
        "--plan",
        &plan2.id,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    w.synced(&c, &stack, "production", &second, Duration::from_secs(60));
    assert_eq!(w.visibility(&queue), Some(60));
    let applied = w.pending(&stack, "production").expect("the plan");
    assert!(applied.applied_by.is_some(), "{applied:?}");

    // Drift in production goes through the same gate (drift.mode remediate).
    w.rt.block_on(console::set_visibility_timeout(&w.sdk, &queue, 99));
    let fix = eventually(
        Duration::from_secs(60),
        "a remediation plan pending approval",
        || {
            w.pending(&stack, "production")
                .filter(|p| p.waits() && p.kind == panka_core::state::ReleaseKind::Remediation)
        },
        || tail(&c.log_text()),
    );
    assert_eq!(
        w.visibility(&queue),
        Some(99),
        "remediated without approval"
    );
    let ok = w.panka(&[
        "approve",
        "-s",
        &stack,
        "-e",
        "production",
        "--plan",
        &fix.id,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    eventually(
        Duration::from_secs(60),
        "the approved remediation applied",
        || (w.visibility(&queue) == Some(60)).then_some(()),
        || tail(&c.log_text()),
    );
}

#[test]
fn one_stacks_commit_leaves_the_other_unplanned_a_bad_commit_keeps_the_last_and_a_pin_holds() {
    let w = World::new("two");
    let (a, b) = (unique_name("qa"), unique_name("qb"));
    for s in [&a, &b] {
        write_queue_stack(&w.work(), &queue_stack(s, &["development"], "remediate"));
    }
    let first = w.commit();
    // No drift sweep during the test: every reconcile comes from a commit.
    let c = w.local_controller("1h");
    w.synced(&c, &a, "development", &first, Duration::from_secs(60));
    w.synced(&c, &b, "development", &first, Duration::from_secs(60));
    let reconciles = |s: &str| {
        c.metric(&format!(
            "panka_target_reconciles_total{{stack=\"{s}\",environment=\"development\"}}"
        ))
    };
    let (a0, b0) = (reconciles(&a), reconciles(&b));
    assert!(a0 >= 1.0 && b0 >= 1.0, "{}", c.metrics());

    // A commit touching only `a`: `a` is reconciled, `b` is not even planned.
    let sqs = |s: &str| format!("stacks/{s}/services/app/components/queue/sqs.yaml");
    edit(
        &w.work(),
        &sqs(&a),
        "visibilityTimeout: 30",
        "visibilityTimeout: 45",
    );
    let second = w.commit();
    w.synced(&c, &a, "development", &second, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert!(reconciles(&a) > a0);
    assert_eq!(reconciles(&b), b0, "the untouched stack was reconciled");
    let qa = format!("{a}-development-app-queue");
    assert_eq!(w.visibility(&qa), Some(45));

    // A bad commit: reported with file and line; the previous commit stays deployed.
    edit(
        &w.work(),
        &sqs(&a),
        "visibilityTimeout: 45",
        "visibilityTimeout: [45",
    );
    let bad = w.commit();
    let invalid = w.wait_phase(
        &c,
        (&a, "development"),
        Phase::Invalid,
        &bad,
        "the bad commit reported",
    );
    let message = invalid
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("sqs.yaml:") && message.chars().any(|ch| ch.is_ascii_digit()),
        "{message}"
    );
    assert_eq!(invalid.synced_commit.as_deref(), Some(second.as_str()));
    assert_eq!(w.visibility(&qa), Some(45));
    // `panka status` in the bad checkout shows the problem, and the controller's word on it.
    let status = w.panka(&["status", "-s", &a, "-e", "development"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(
        err.contains("sqs.yaml")
            && err.contains(&format!("Controller: commit {} is invalid", &bad[..7])),
        "{}",
        text(&status)
    );
    edit(
        &w.work(),
        &sqs(&a),
        "visibilityTimeout: [45",
        "visibilityTimeout: 50",
    );
    let fixed = w.commit();
    w.synced(&c, &a, "development", &fixed, Duration::from_secs(60));
    assert_eq!(w.visibility(&qa), Some(50));

    // A rollback pins `a`: the controller keeps the pinned release and does not roll forward.
    let back = w.panka(&[
        "rollback",
        "-s",
        &a,
        "-e",
        "development",
        "--yes",
        "--to-release",
        &release_before_last(&w, &a),
    ]);
    assert!(back.status.success(), "{}", text(&back));
    assert_eq!(w.visibility(&qa), Some(45));
    edit(
        &w.work(),
        &sqs(&a),
        "visibilityTimeout: 50",
        "visibilityTimeout: 55",
    );
    let ahead = w.commit();
    w.wait_phase(
        &c,
        (&a, "development"),
        Phase::Pinned,
        &ahead,
        "the pin reported",
    );
    assert_eq!(w.visibility(&qa), Some(45), "rolled forward while pinned");
    let resumed = w.panka(&["resume", "-s", &a, "-e", "development"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    // Resuming is not a commit: the next look at `a` is its drift sweep, or a commit.
    edit(
        &w.work(),
        &format!("stacks/{a}/environments/development/variables.yaml"),
        "VERSION: v1",
        "VERSION: v2",
    );
    let after = w.commit();
    w.synced(&c, &a, "development", &after, Duration::from_secs(60));
    assert_eq!(w.visibility(&qa), Some(55));
}

#[test]
fn a_policy_denial_is_an_invalid_commit_and_a_relaxed_policy_alone_lets_it_deploy() {
    let w = World::new("pol");
    let a = unique_name("qp");
    write_queue_stack(&w.work(), &queue_stack(&a, &["development"], "remediate"));
    let first = w.commit();
    // No drift sweep during the test: every reconcile comes from a commit.
    let c = w.local_controller("1h");
    w.synced(&c, &a, "development", &first, Duration::from_secs(60));
    let qa = format!("{a}-development-app-queue");
    assert_eq!(w.visibility(&qa), Some(30));

    // A policy and a change it refuses, in one commit: invalid, nothing of it applied.
    let policy = |floor: u32| {
        format!(
            "package panka\n\ndeny contains msg if {{\n\tinput.kind == \"SQS\"\n\tinput.spec.visibilityTimeout < {floor}\n\tmsg := sprintf(\"visibility timeout %d s is under {floor} s\", [input.spec.visibilityTimeout])\n}}\n"
        )
    };
    let rego = w.work().join("policies/queues.rego");
    std::fs::create_dir_all(rego.parent().expect("parent")).expect("mkdir");
    std::fs::write(&rego, policy(60)).expect("write");
    let sqs = format!("stacks/{a}/services/app/components/queue/sqs.yaml");
    edit(
        &w.work(),
        &sqs,
        "visibilityTimeout: 30",
        "visibilityTimeout: 45",
    );
    let denied = w.commit();
    let invalid = w.wait_phase(
        &c,
        (&a, "development"),
        Phase::Invalid,
        &denied,
        "the denial reported",
    );
    let message = invalid
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "{sqs}:4:9: policies/queues.rego denies app/queue in development: visibility timeout 45 s is under 60 s"
        )),
        "{message}"
    );
    assert_eq!(invalid.synced_commit.as_deref(), Some(first.as_str()));
    assert_eq!(w.visibility(&qa), Some(30));

    // Only the policy changes — no stack folder does — yet the stack is judged again and the
    // change it now allows is deployed.
    std::fs::write(&rego, policy(40)).expect("write");
    let relaxed = w.commit();
    w.synced(&c, &a, "development", &relaxed, Duration::from_secs(60));
    assert_eq!(w.visibility(&qa), Some(45));
}

/// The id of the release before the last one of `stack` (development).
fn release_before_last(w: &World, stack: &str) -> String {
    let out = w.panka(&[
        "history",
        "-s",
        stack,
        "-e",
        "development",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let releases = list.as_array().cloned().unwrap_or_default();
    releases
        .get(1)
        .and_then(|r| r["id"].as_str())
        .unwrap_or_else(|| panic!("no release before the last: {list}"))
        .to_owned()
}

#[test]
fn report_mode_only_reports_drift_and_remediate_mode_undoes_it() {
    let w = World::new("modes");
    let (fix, keep) = (unique_name("qfix"), unique_name("qrep"));
    write_queue_stack(&w.work(), &queue_stack(&fix, &["development"], "remediate"));
    write_queue_stack(&w.work(), &queue_stack(&keep, &["development"], "report"));
    let first = w.commit();
    let c = w.local_controller("2s");
    w.synced(&c, &fix, "development", &first, Duration::from_secs(60));
    w.synced(&c, &keep, "development", &first, Duration::from_secs(60));
    let (qf, qk) = (
        format!("{fix}-development-app-queue"),
        format!("{keep}-development-app-queue"),
    );
    w.rt.block_on(console::set_visibility_timeout(&w.sdk, &qf, 77));
    w.rt.block_on(console::set_visibility_timeout(&w.sdk, &qk, 77));
    eventually(
        Duration::from_secs(60),
        "remediate mode undoing the change",
        || (w.visibility(&qf) == Some(30)).then_some(()),
        || tail(&c.log_text()),
    );
    let reported = eventually(
        Duration::from_secs(60),
        "report mode reporting the change",
        || {
            w.sync(&keep, "development")
                .filter(|s| s.phase == Phase::Drifted)
        },
        || tail(&c.log_text()),
    );
    assert_eq!(reported.drifted, 1);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(w.visibility(&qk), Some(77), "report mode changed AWS");
    let status = w.panka(&[
        "drift",
        "detect",
        "-s",
        &keep,
        "-e",
        "development",
        "--output",
        "json",
    ]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("visibilityTimeout"));

    // A bad commit on top: the previous commit stays deployed, and its drift is still undone.
    edit(
        &w.work(),
        &format!("stacks/{fix}/services/app/components/queue/sqs.yaml"),
        "visibilityTimeout: 30",
        "visibilityTimeout: {30",
    );
    let bad = w.commit();
    w.wait_phase(
        &c,
        (&fix, "development"),
        Phase::Invalid,
        &bad,
        "the bad commit reported",
    );
    w.rt.block_on(console::set_visibility_timeout(&w.sdk, &qf, 88));
    eventually(
        Duration::from_secs(60),
        "drift undone while the newest commit is invalid",
        || (w.visibility(&qf) == Some(30)).then_some(()),
        || tail(&c.log_text()),
    );
}

#[test]
fn sigterm_does_not_wait_for_a_git_server_that_never_answers() {
    let home = tempfile::tempdir().expect("tempdir");
    // A server that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(4) {
            open.push(conn);
        }
        std::thread::sleep(Duration::from_secs(120));
    });
    let url = format!("git://127.0.0.1:{port}/deploy");
    let mut c = Controller::start(
        &controller_binary(PANKA),
        home.path(),
        &[
            "--repo-url",
            &url,
            "-e",
            "development",
            "--shutdown-timeout",
            "3s",
        ],
    );
    let (code, _) = panka_tests::gitops::get(&c.metrics_addr, "/readyz").expect("readyz");
    assert_eq!(code, 503, "ready before any fetch");
    std::thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let status = c.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}\n{}", c.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop(held);
}

#[test]
fn two_shards_split_a_repositorys_targets_disjointly_and_cover_them_all() {
    use panka_controller::daemon::shard::Shard;
    let w = World::new("shards");
    // Names are random: draw until each shard owns two, so both replicas have work.
    let mut stacks: Vec<String> = Vec::new();
    let mut per_shard = [0; 2];
    while per_shard.iter().any(|&n| n < 2) {
        let name = unique_name("sh");
        let i = usize::from(!Shard { index: 0, count: 2 }.owns(&name, "development"));
        if per_shard[i] < 2 {
            per_shard[i] += 1;
            stacks.push(name);
        }
    }
    for s in &stacks {
        write_queue_stack(&w.work(), &queue_stack(s, &["development"], "report"));
    }
    let first = w.commit();
    let url = format!("file://{}", w.work().display());
    let branch = w.branch();
    let start = |shard: &str| {
        w.controller(&[
            "--repo-url",
            &url,
            "--branch",
            &branch,
            "-e",
            "development",
            "--poll-interval",
            "1s",
            "--shard",
            shard,
        ])
    };
    let shards = [start("0/2"), start("1/2")];
    for s in &stacks {
        let c = &shards[usize::from(!Shard { index: 0, count: 2 }.owns(s, "development"))];
        w.synced(c, s, "development", &first, Duration::from_secs(120));
    }
    // Each replica reconciled exactly its own targets: the other's never appear in its metrics.
    for (index, c) in shards.iter().enumerate() {
        let shard = Shard {
            index: u32::try_from(index).unwrap(),
            count: 2,
        };
        let metrics = c.metrics();
        for s in &stacks {
            let series = format!(
                "panka_target_reconciles_total{{stack=\"{s}\",environment=\"development\"}}"
            );
            assert_eq!(
                metrics.contains(&series),
                shard.owns(s, "development"),
                "shard {shard}: {s}\n{}",
                tail(&c.log_text())
            );
        }
    }
}
