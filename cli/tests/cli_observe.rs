//! `panka logs`, `panka metrics`, `panka health` and `panka status --follow` end to end: the
//! example's `user-platform` stack (under a name of its own) really applied to the emulator with
//! S3 state and DynamoDB locks; then what the running services would produce is fed to the
//! emulator the way AWS would get it — log lines with PutLogEvents on the awslogs streams of
//! their tasks, load balancer and ECS metrics with PutMetricData, targets registered with the
//! target group, tasks started and stopped in the service's group — and the real binary's output
//! is checked.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use panka_controller::config::Config;
use panka_controller::session::Session;
use panka_core::model::ComponentId;
use panka_tests::cli::{ExampleStack, StackCli as Cli};
use panka_tests::console;
use panka_tests::emulator::{emulator, panka_command, unique_name};
use panka_tests::output::text;
use panka_tests::repo::{stack_files, write};
use serde_json::Value;

const TASK_1: &str = "0123456789abcdef0123456789abcdef";
const TASK_2: &str = "fedcba9876543210fedcba9876543210";

/// A running `panka`, its stdout read line by line.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("panka starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until `done` says so of what was read, for at most `within`.
    fn read_until(&mut self, within: Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.seen) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "gave up waiting after {within:?}; read {} lines, the last:\n{}",
                    self.seen.len(),
                    self.seen[self.seen.len().saturating_sub(20)..].join("\n")
                ),
            }
        }
    }

    /// Reads whatever arrives within `quiet`.
    fn read_for(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Ctrl-C; the exit code and stderr, once it ended (within 20 s).
    fn interrupt(self) -> (Option<i32>, String, Vec<String>) {
        let killed = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        self.wait(Duration::from_secs(20))
    }

    /// The exit code and stderr once it ended by itself within `within`, and every line.
    fn wait(mut self, within: Duration) -> (Option<i32>, String, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                // What it printed before it ended.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return (status.code(), stderr, self.seen);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "panka did not end within {within:?}:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The awslogs stream of a task of component `component`.
fn stream(component: &str, task: &str) -> String {
    format!("{component}/{component}/{task}")
}

/// A line of `panka logs` as it prints it.
fn printed(task: &str, at: i64, message: &str) -> String {
    let time = jiff::Timestamp::from_millisecond(at)
        .expect("a time")
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!("[{task}] {time} {message}")
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_metrics_and_health_of_an_applied_stack() {
    let example = ExampleStack::new(env!("CARGO_BIN_EXE_panka"), "observe").await;
    let sdk = emulator().sdk_config().await;
    let cli = example.cli(env!("CARGO_BIN_EXE_panka"));
    cli.expect(0, &["apply", "--yes", "--health-timeout", "60"]);

    logs(&cli, &sdk).await;
    follow_logs(&cli, &sdk).await;
    metrics(&cli, &sdk).await;
    health(&cli, &sdk).await;

    // Settled already: `status --follow` draws once and ends.
    let followed = cli.expect(0, &["status", "--follow"]);
    assert!(
        followed.ends_with("\nSettled: nothing is progressing and no apply holds the lock\n"),
        "{followed}"
    );
}

/// Two tasks' lines merged in time order, each with its task; filters with a term, several
/// terms and a quoted phrase; what is not a container is refused.
async fn logs(cli: &Cli<'_>, sdk: &SdkConfig) {
    let group = cli.identifiers("notification-service/api")["logGroup"]
        .as_str()
        .expect("a log group")
        .to_owned();
    let base = now_ms() - 10 * 60 * 1000;
    let line = |offset: i64, message: &str| (base + offset, message.to_owned());
    console::log_lines(
        sdk,
        &group,
        &stream("api", TASK_1),
        &[
            line(10, "GET /health/ready 200"),
            line(30, "ERROR connection refused by db"),
            line(50, "INFO listening on :8080"),
        ],
    )
    .await;
    console::log_lines(
        sdk,
        &group,
        &stream("api", TASK_2),
        &[
            line(20, "WARN slow request"),
            line(40, "ERROR timeout talking to cache"),
            line(50, "INFO listening on :8080"),
        ],
    )
    .await;

    let component = ["--component", "notification-service/api"];
    let all = cli.expect(0, &[&["logs"][..], &component].concat());
    let expected = [
        printed(TASK_1, base + 10, "GET /health/ready 200"),
        printed(TASK_2, base + 20, "WARN slow request"),
        printed(TASK_1, base + 30, "ERROR connection refused by db"),
        printed(TASK_2, base + 40, "ERROR timeout talking to cache"),
        printed(TASK_1, base + 50, "INFO listening on :8080"),
        printed(TASK_2, base + 50, "INFO listening on :8080"),
    ];
    assert_eq!(all.lines().collect::<Vec<_>>(), expected, "{all}");

    let errors = cli.expect(
        0,
        &[&["logs", "--filter", "ERROR"][..], &component].concat(),
    );
    assert_eq!(
        errors.lines().collect::<Vec<_>>(),
        [&expected[2], &expected[3]]
    );
    let both = cli.expect(
        0,
        &[&["logs", "--filter", "ERROR timeout"][..], &component].concat(),
    );
    assert_eq!(both.lines().collect::<Vec<_>>(), [&expected[3]]);
    let phrase = cli.expect(
        0,
        &[
            &["logs", "--filter", "\"connection refused\""][..],
            &component,
        ]
        .concat(),
    );
    assert_eq!(phrase.lines().collect::<Vec<_>>(), [&expected[2]]);
    // `--since` leaves out what is older.
    let recent = cli.run(&[&["logs", "--since", "5m"][..], &component].concat());
    assert_eq!(recent.status.code(), Some(0), "{}", text(&recent));
    assert_eq!(
        String::from_utf8_lossy(&recent.stdout),
        "",
        "stdout stays empty"
    );
    // … and stderr says where panka looked.
    let said = String::from_utf8_lossy(&recent.stderr);
    assert!(
        said.starts_with("No log lines in /panka/") && said.contains("in the last 5 min;"),
        "{said}"
    );

    let json = cli.expect(
        0,
        &[
            &["logs", "--output", "json", "--filter", "WARN"][..],
            &component,
        ]
        .concat(),
    );
    let line: Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(line["task"], TASK_2);
    assert_eq!(line["message"], "WARN slow request");
    assert_eq!(line["stream"], stream("api", TASK_2));

    let queue = cli.run(&["logs", "--component", "notification-service/queue"]);
    assert_eq!(queue.status.code(), Some(1), "{}", text(&queue));
    assert!(
        text(&queue).contains(
            "error: notification-service/queue is SQS: logs are read for MicroService and Worker components only"
        ),
        "{}",
        text(&queue)
    );
    let nope = cli.run(&["logs", "--component", "notification-service/nope"]);
    assert!(
        text(&nope).contains("has no component `notification-service/nope`"),
        "{}",
        text(&nope)
    );
}

/// More lines than one page, then lines added while following — one in the same millisecond as
/// the newest printed, one of a task behind the other — each printed once, in order; Ctrl-C
/// ends it with exit code 0.
async fn follow_logs(cli: &Cli<'_>, sdk: &SdkConfig) {
    let group = cli.identifiers("user-service/api")["logGroup"]
        .as_str()
        .expect("a log group")
        .to_owned();
    // 10 200 lines, the two tasks taking turns every millisecond: FilterLogEvents pages hold at
    // most 10 000.
    const PER_TASK: i64 = 5_100;
    let base = now_ms() - 20 * 60 * 1000;
    let a: Vec<(i64, String)> = (0..PER_TASK)
        .map(|i| (base + 2 * i, format!("a-{i:04}")))
        .collect();
    let b: Vec<(i64, String)> = (0..PER_TASK)
        .map(|i| (base + 2 * i + 1, format!("b-{i:04}")))
        .collect();
    console::log_lines(sdk, &group, &stream("api", TASK_1), &a).await;
    console::log_lines(sdk, &group, &stream("api", TASK_2), &b).await;
    let mut expected: Vec<String> = (0..PER_TASK as usize)
        .flat_map(|i| {
            [
                printed(TASK_1, a[i].0, &a[i].1),
                printed(TASK_2, b[i].0, &b[i].1),
            ]
        })
        .collect();

    let mut follow =
        Running::start(cli.command(&["logs", "--follow", "--component", "user-service/api"]));
    let first = expected.len();
    follow.read_until(Duration::from_secs(120), |seen| seen.len() >= first);
    assert_eq!(
        follow.seen, expected,
        "the first page and the next, in order"
    );

    // While it follows: task 1 logs in the millisecond of the newest line printed (task 2's),
    // and a line 50 ms later; task 2, behind, then logs after both.
    let newest = b[b.len() - 1].0;
    console::log_lines(
        sdk,
        &group,
        &stream("api", TASK_1),
        &[
            (newest, "a-same-millisecond".into()),
            (newest + 50, "a-later".into()),
        ],
    )
    .await;
    console::log_lines(
        sdk,
        &group,
        &stream("api", TASK_2),
        &[(newest + 100, "b-after".into())],
    )
    .await;
    expected.extend([
        printed(TASK_1, newest, "a-same-millisecond"),
        printed(TASK_1, newest + 50, "a-later"),
        printed(TASK_2, newest + 100, "b-after"),
    ]);
    let all = expected.len();
    follow.read_until(Duration::from_secs(60), |seen| seen.len() >= all);
    // A few more polls: nothing is printed again.
    follow.read_for(Duration::from_secs(5));
    let (code, stderr, seen) = follow.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(seen.len(), expected.len(), "no line repeated or dropped");
    assert_eq!(seen, expected);
}

/// The user guide's box from the load balancer's and the service's metrics; "no data" for what
/// was not measured; a worker has no request figures; one GetMetricData call.
async fn metrics(cli: &Cli<'_>, sdk: &SdkConfig) {
    let ids = cli.identifiers("user-service/api");
    let alb = cli.identifiers("_stack/alb");
    let target_group = ids["targetGroupArn"]
        .as_str()
        .and_then(|arn| arn.rsplit_once(':'))
        .expect("a target group ARN")
        .1;
    let load_balancer = alb["arn"]
        .as_str()
        .and_then(|arn| arn.split_once(":loadbalancer/"))
        .expect("a load balancer ARN")
        .1;
    let (cluster, service) = (
        ids["cluster"].as_str().expect("cluster"),
        ids["service"].as_str().expect("service"),
    );
    let at = SystemTime::now() - Duration::from_secs(300);
    let lb = [
        ("TargetGroup", target_group),
        ("LoadBalancer", load_balancer),
    ];
    let mut served = vec![
        ("RequestCount", 400.0),
        ("RequestCount", 350.0),
        ("RequestCount", 250.0),
        ("HTTPCode_Target_5XX_Count", 2.0),
    ];
    // 10 ms, 20 ms, … 1 s: the median is 500 ms, the 99th percentile 990 ms.
    served.extend((1..=100).map(|i| ("TargetResponseTime", f64::from(i) / 100.0)));
    console::publish_metrics(sdk, "AWS/ApplicationELB", &lb, at, &served).await;
    let ecs = [("ClusterName", cluster), ("ServiceName", service)];
    console::publish_metrics(
        sdk,
        "AWS/ECS",
        &ecs,
        at,
        &[
            ("CPUUtilization", 40.0),
            ("CPUUtilization", 50.0),
            ("MemoryUtilization", 62.0),
        ],
    )
    .await;

    let boxed = cli.expect(
        0,
        &[
            "metrics",
            "--component",
            "user-service/api",
            "--since",
            "1h",
        ],
    );
    let expected = "\
┌─────────────────────────────────────────┐
│ Metrics: user-service/api (last 1 hour) │
├─────────────────────────────────────────┤
│ Request Count:    1,000                 │
│ Error Rate:       0.20%                 │
│ P50 Latency:      500ms                 │
│ P99 Latency:      990ms                 │
│ CPU Usage:        45%                   │
│ Memory Usage:     62%                   │
└─────────────────────────────────────────┘
";
    assert_eq!(boxed, expected);
    let json = cli.json(0, &["metrics", "--component", "user-service/api"]);
    assert_eq!(json["requestCount"], 1000.0);
    assert_eq!(json["p50LatencyMs"], 500.0);
    assert_eq!(json["p99LatencyMs"], 990.0);
    assert_eq!(json["cpuPercent"], 45.0);

    // Nothing measured: said as such, never as zero.
    let quiet = cli.expect(0, &["metrics", "--component", "notification-service/api"]);
    let rows: Vec<&str> = quiet
        .lines()
        .filter(|l| l.contains(':') && !l.contains("Metrics:"))
        .collect();
    assert_eq!(rows.len(), 6, "{quiet}");
    for row in &rows {
        assert!(row.contains("no data"), "{quiet}");
    }
    let json = cli.json(0, &["metrics", "--component", "notification-service/api"]);
    for key in [
        "requestCount",
        "errorRatePercent",
        "p50LatencyMs",
        "p99LatencyMs",
        "cpuPercent",
        "memoryPercent",
    ] {
        assert_eq!(json[key], Value::Null, "{key}: {json}");
    }
    let worker = cli.expect(
        0,
        &["metrics", "--component", "notification-service/worker"],
    );
    assert!(
        worker.contains("│ Request Count:    n/a (no load balancer)"),
        "{worker}"
    );
    assert!(worker.contains("│ CPU Usage:        no data"), "{worker}");

    // What AWS saw: one GetMetricData call, nothing else.
    let config = Config::load(Some(&cli.home.join(".panka/config.yaml"))).expect("config");
    let backends = panka_controller::backend::open_with(&config, Some(sdk));
    let session = Session::with(backends, sdk.clone());
    let loaded = panka_controller::validate::load_stack(cli.root, cli.stack).expect("loads");
    let (desired, _) = panka_controller::validate::plan_input(
        &loaded,
        "development",
        &panka_core::resolve::Options::default(),
    )
    .expect("resolves");
    let id = ComponentId::new("user-service", "api");
    let deployed = session
        .deployed(&desired, &id, "metrics")
        .await
        .expect("recorded");
    let telemetry = session.telemetry();
    let window = panka_core::telemetry::metrics::window(jiff::Timestamp::now().as_second(), 3_600);
    let read = telemetry.metrics(&deployed, window).await.expect("read");
    assert_eq!(read.request_count, Some(1000.0));
    let calls = telemetry.calls().snapshot();
    assert_eq!(calls.values().sum::<u64>(), 1, "{calls:?}");
    assert!(
        calls
            .keys()
            .all(|(_, operation)| operation == "GetMetricData"),
        "{calls:?}"
    );
}

/// Health: ✓/✗ lines of targets, tasks (with the last stop's reason), deployment and the stateful
/// components' AWS status; exit 1 while anything fails.
async fn health(cli: &Cli<'_>, sdk: &SdkConfig) {
    let users = cli.identifiers("user-service/api");
    let target_group = users["targetGroupArn"].as_str().expect("a target group");
    console::register_targets(
        sdk,
        target_group,
        &[("10.0.1.10", 8080), ("10.0.1.11", 8080)],
    )
    .await;

    let one = cli.expect(0, &["health", "--component", "user-service/api"]);
    let expected = "\
┌─────────────────────────────────────────────┐
│ Health: user-service/api                    │
├─────────────────────────────────────────────┤
│ Readiness:  ✓ Passing (2/2 targets healthy) │
│ Tasks:      ✓ 2/2 running                   │
│ Deployment: ✓ Steady                        │
└─────────────────────────────────────────────┘
";
    assert_eq!(one, expected);

    // The worker: one task running, one stopped because its container exited.
    let worker = cli.identifiers("notification-service/worker");
    let (cluster, service) = (
        worker["cluster"].as_str().expect("cluster"),
        worker["service"].as_str().expect("service"),
    );
    let running = console::start_service_task(sdk, cluster, service).await;
    let stopped = console::start_service_task(sdk, cluster, service).await;
    console::stop_task(sdk, cluster, &stopped, "Essential container in task exited").await;

    let all = cli.expect(1, &["health"]);
    for line in [
        "│ Health: notification-service/api ",
        "│ Readiness:  ✗ Failing (no targets registered) ",
        "│ Health: notification-service/worker ",
        "│ Liveness:   ✓ Passing (1/1 tasks healthy) ",
        &format!("│   Last stopped: task {stopped}: Essential container in task exited"),
        "│ Health: notification-service/database ",
        "│ Status:     ✓ available ",
        "│ Health: user-service/api ",
        "│ Readiness:  ✓ Passing (2/2 targets healthy) ",
    ] {
        assert!(all.contains(line), "no {line:?} in\n{all}");
    }
    assert!(
        !all.contains(&running),
        "a running task is not a stopped one:\n{all}"
    );
    let json = cli.json(1, &["health"]);
    let component = |name: &str| {
        json.as_array()
            .expect("a list")
            .iter()
            .find(|c| c["component"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {json}"))
    };
    assert_eq!(component("user-service/api")["healthy"], true);
    assert_eq!(component("notification-service/api")["healthy"], false);
    assert_eq!(
        component("notification-service/api")["checks"][0]["state"],
        "failing"
    );
    for stateful in [
        "notification-service/cache",
        "notification-service/database",
        "notification-service/preferences",
        "notification-service/queue",
        "notification-service/templates",
        "user-service/database",
    ] {
        let c = component(stateful);
        assert_eq!(c["checks"][0]["name"], "Status", "{c}");
        assert_eq!(c["healthy"], true, "{c}");
    }
}

/// A stack whose worker asks for three tasks: the emulator runs two of every service it creates,
/// so its rollout does not finish until someone scales it.
fn worker_stack(root: &Path, name: &str) {
    stack_files(root, name, "{VERSION: v1}");
    write(
        root,
        &format!("stacks/{name}/services/jobs/service.yaml"),
        &format!("apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {{name: jobs, stack: {name}}}\n"),
    );
    write(root, &format!("stacks/{name}/services/jobs/components/worker/worker.yaml"), &format!(
        "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata: {{name: worker, service: jobs, stack: {name}}}\nspec:\n  image: {{repository: example/worker, tag: v1}}\n"));
    write(root, &format!("stacks/{name}/services/jobs/components/worker/infra.yaml"), &format!(
        "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {{name: worker, service: jobs, stack: {name}}}\nspec:\n  scaling: {{replicas: 3}}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_follow_waits_for_the_apply_and_the_rollout_and_ctrl_c_exits_0() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let name = unique_name("sf");
    worker_stack(repo.path(), &name);
    let command = |args: &[&str]| {
        let mut cmd = panka_command(env!("CARGO_BIN_EXE_panka"), home.path());
        cmd.arg("--repo")
            .arg(repo.path())
            .args(args)
            .args(["-s", &name, "-e", "development"])
            .env("PANKA_STATE_DIR", state.path());
        cmd
    };

    // An apply waiting for the worker's rollout holds the lock.
    let mut apply = Running::start(command(&["apply", "--yes"]));
    apply.read_until(Duration::from_secs(120), |seen| {
        seen.iter().any(|l| l.contains("jobs/worker: waiting"))
    });

    // `status --follow` waits for it; Ctrl-C ends the following with exit code 0.
    let waiting = |seen: &[String]| {
        seen.iter().any(|l| {
            l.starts_with("Following (Ctrl-C to stop): waiting for apply by tester@")
                && l.ends_with("; jobs/worker progressing")
        })
    };
    let mut watching = Running::start(command(&["status", "--follow"]));
    watching.read_until(Duration::from_secs(60), waiting);
    let (code, stderr, seen) = watching.interrupt();
    assert_eq!(code, Some(0), "{stderr}\n{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.contains("jobs/worker")
            && l.contains("2/3 running")
            && l.contains("Progressing")),
        "{}",
        seen.join("\n")
    );

    let (code, stderr, _) = apply.interrupt();
    assert_eq!(code, Some(130), "{stderr}");

    // Without the apply, the rollout is still going: it follows until the worker runs all it
    // wants, then ends by itself, healthy.
    let mut watching = Running::start(command(&["status", "--follow"]));
    watching.read_until(Duration::from_secs(60), |seen| {
        seen.iter()
            .any(|l| l == "Following (Ctrl-C to stop): waiting for jobs/worker progressing")
    });
    let state = command(&["state", "show", "--output", "json"])
        .output()
        .expect("panka runs");
    assert!(state.status.success(), "{}", text(&state));
    let state: Value = serde_json::from_slice(&state.stdout).expect("JSON");
    let worker = &state["components"]["jobs/worker"]["identifiers"];
    let sdk = emulator().sdk_config().await;
    console::scale(
        &sdk,
        worker["cluster"].as_str().expect("cluster"),
        worker["service"].as_str().expect("service"),
        3,
    )
    .await;
    let (code, stderr, seen) = watching.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}\n{}", seen.join("\n"));
    let last = seen.last().map(String::as_str);
    assert_eq!(
        last,
        Some("Settled: nothing is progressing and no apply holds the lock"),
        "{}",
        seen.join("\n")
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("✓ jobs/worker") && l.contains("3/3 running")),
        "{}",
        seen.join("\n")
    );
}
