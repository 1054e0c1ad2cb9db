//! Policy checks through the real `panka` binary against a fresh emulator, on a small stack of
//! SQS queues and a `policies/` folder: a `deny` stops `validate`, `plan` and `apply` with the
//! component's file and line, the policy and its message, before any AWS call — no queue, no
//! lock, no state, no release; a `warn` is printed and the apply goes on; a policy that does
//! not parse stops everything naming its file and line; a destroy is never judged.

use std::path::Path;
use std::process::Output;

use panka_tests::emulator::{emulator, panka_backend, panka_command, unique_name};
use panka_tests::output::text;
use panka_tests::repo::{two_queue_stack, write};
use serde_json::Value;

/// Refuses a visibility timeout over five minutes; warns about a queue without a dead-letter
/// queue.
const QUEUES_POLICY: &str = r#"package panka

deny contains msg if {
	input.kind == "SQS"
	input.spec.visibilityTimeout > 300
	msg := sprintf("visibility timeout %d s is over 300 s", [input.spec.visibilityTimeout])
}

warn contains "no dead-letter queue: failed messages are retried forever" if {
	input.kind == "SQS"
	input.component == "jobs"
	not input.spec.deadLetterQueue
}
"#;

/// A HOME and a repository root holding the two-queue stack and `policies/queues.rego`.
struct Dirs {
    home: tempfile::TempDir,
    repo: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            home: tempfile::tempdir().expect("tempdir"),
            repo: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The CLI on a fresh stack of the two queues, judged by `QUEUES_POLICY`.
    fn cli(&self) -> Cli<'_> {
        let cli = Cli {
            home: self.home.path(),
            root: self.repo.path(),
            name: unique_name("pol"),
        };
        two_queue_stack(cli.root, &cli.name);
        write(cli.root, "policies/queues.rego", QUEUES_POLICY);
        cli
    }
}

struct Cli<'a> {
    home: &'a Path,
    root: &'a Path,
    name: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["-s", self.name.as_str(), "-e", "development"]);
        panka_command(env!("CARGO_BIN_EXE_panka"), self.home)
            .arg("--repo")
            .arg(self.root)
            .args(&all)
            .output()
            .expect("failed to run panka")
    }

    fn queue(&self, component: &str) -> String {
        format!("{}-development-orders-{component}", self.name)
    }

    /// Whether a queue of the stack exists in the emulator.
    fn queue_exists(&self, component: &str) -> bool {
        let queue = self.queue(component);
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let sdk = emulator().sdk_config().await;
                panka_tests::console::visibility_timeout(&sdk, &queue)
                    .await
                    .is_some()
            })
    }

    /// Asserts that nothing of the stack exists: no queue, no lock, no state, no release.
    fn assert_nothing_deployed(&self) {
        for queue in ["jobs", "events"] {
            assert!(!self.queue_exists(queue), "queue {queue} was created");
        }
        let locks = self.run_json(&["state", "locks"]);
        assert_eq!(locks, Value::Array(Vec::new()), "a lock is held: {locks:#}");
        let history = self.run_json(&["history"]);
        assert_eq!(
            history,
            Value::Array(Vec::new()),
            "a release was recorded: {history:#}"
        );
        let state = self.run_json(&["state", "show"]);
        assert_eq!(state, Value::Null, "state was written: {state:#}");
    }

    fn run_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", text(&out)))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_deny_stops_validate_plan_and_apply_before_any_aws_call() {
    let dirs = Dirs::new();
    let cli = dirs.cli();
    panka_backend(env!("CARGO_BIN_EXE_panka"), cli.home, "cli-policy");
    let too_long = ["--var", "QUEUE_VISIBILITY=900"];
    let file = |queue: &str| {
        format!(
            "stacks/{}/services/orders/components/{queue}/sqs.yaml",
            cli.name
        )
    };
    let expected = format!(
        "error: policies/queues.rego denies orders/jobs in development: visibility timeout 900 s is over 300 s\n  --> {}:4:9\n   |\n 4 |   name: jobs\n   |         ^\n  = help: change orders/jobs (or its overlay in stacks/{}/environments/development/), or the policy",
        file("jobs"),
        cli.name
    );

    for command in [&["plan"][..], &["apply", "--yes"][..]] {
        let mut args = command.to_vec();
        args.extend(too_long);
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = stderr(&out);
        assert!(err.contains(&expected), "{command:?}:\n{}", text(&out));
        assert!(
            err.contains(&format!(
                "error: policies/queues.rego denies orders/events in development: visibility timeout 900 s is over 300 s\n  --> {}:4:9",
                file("events")
            )),
            "{command:?}:\n{}",
            text(&out)
        );
        // Nothing was planned: the plan is shown only after AWS is read.
        assert!(
            !stdout(&out).contains("Plan:"),
            "{command:?}:\n{}",
            text(&out)
        );
        cli.assert_nothing_deployed();
    }

    let mut args = vec!["validate"];
    args.extend(too_long);
    let out = cli.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("└── Running policy checks... ✗\n") && said.contains("✗ 2 problems found"),
        "{}",
        text(&out)
    );
    assert!(stderr(&out).contains(&expected), "{}", text(&out));
}

#[test]
fn a_warning_is_printed_the_apply_goes_on_and_a_destroy_is_never_judged() {
    let dirs = Dirs::new();
    let cli = dirs.cli();
    panka_backend(env!("CARGO_BIN_EXE_panka"), cli.home, "cli-policy");
    let warning = format!(
        "warning: stacks/{}/services/orders/components/jobs/sqs.yaml:4:9: policies/queues.rego warns about orders/jobs in development: no dead-letter queue: failed messages are retried forever",
        cli.name
    );

    let out = cli.run(&["apply", "--yes", "--health-timeout", "60"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stderr(&out).matches(&warning).count(), 1, "{}", text(&out));
    assert!(
        stdout(&out).contains("✓ Deployment successful!"),
        "{}",
        text(&out)
    );
    assert!(cli.queue_exists("jobs") && cli.queue_exists("events"));

    let out = cli.run(&["validate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("└── Running policy checks... ✓ (1 policy, 1 warning)\n"),
        "{}",
        text(&out)
    );
    assert!(stderr(&out).contains(&warning), "{}", text(&out));

    // A rule against every queue now: plan refuses, destroy (which deploys nothing) does not.
    write(
        cli.root,
        "policies/no-queues.rego",
        "package panka\n\ndeny contains \"no more queues\" if input.kind == \"SQS\"\n",
    );
    let out = cli.run(&["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(
            "policies/no-queues.rego denies orders/events in development: no more queues"
        ),
        "{}",
        text(&out)
    );
    let out = cli.run(&["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !stderr(&out).contains("polic"),
        "a destroy was judged:\n{}",
        text(&out)
    );
    assert!(!cli.queue_exists("jobs") && !cli.queue_exists("events"));
}

#[test]
fn a_policy_that_does_not_parse_stops_apply_naming_its_file_and_line() {
    let dirs = Dirs::new();
    let cli = dirs.cli();
    // Line 5 opens a rule body with `{` where Rego v1 wants `if`.
    write(
        cli.root,
        "policies/sizes.rego",
        "package panka\n\nimport rego.v1\n\ndeny[msg] {\n\tinput.kind == \"SQS\"\n\tmsg := \"x\"\n}\n",
    );
    panka_backend(env!("CARGO_BIN_EXE_panka"), cli.home, "cli-policy");
    let out = cli.run(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: policy does not parse: "),
        "{}",
        text(&out)
    );
    assert!(
        err.contains("  --> policies/sizes.rego:5:"),
        "{}",
        text(&out)
    );
    assert!(err.contains(" 5 | deny[msg] {"), "{}", text(&out));
    assert!(
        err.contains("= help: policies are Rego v1 in `package panka`"),
        "{}",
        text(&out)
    );
    // The policy that does parse was not run either: no warning about the queues.
    assert!(!err.contains("warning:"), "{}", text(&out));
    cli.assert_nothing_deployed();
}
