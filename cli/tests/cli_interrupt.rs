//! Ctrl-C during `panka apply`, end to end: a Worker whose rollout cannot finish in the emulator
//! (it runs two tasks of every service; this one asks for three) keeps the apply waiting; SIGINT
//! then stops it with exit code 130, the release recorded as interrupted, the lock released and
//! what was applied in state; a re-run carries on and converges.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use panka_tests::emulator::{panka_command, unique_name};
use panka_tests::output::text;
use panka_tests::repo::{stack_files, write};
use serde_json::Value;

fn command(home: &Path, repo: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = panka_command(env!("CARGO_BIN_EXE_panka"), home);
    cmd.arg("--repo")
        .arg(repo)
        .args(args)
        .env("PANKA_STATE_DIR", state);
    cmd
}

fn run(home: &Path, repo: &Path, state: &Path, args: &[&str]) -> Output {
    command(home, repo, state, args)
        .output()
        .expect("failed to run panka")
}

/// A stack with a queue and a worker running `replicas` tasks.
fn repo(root: &Path, name: &str, replicas: u32) {
    stack_files(root, name, "{VERSION: v1}");
    write(
        root,
        &format!("stacks/{name}/services/jobs/service.yaml"),
        &format!(
        "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {{name: jobs, stack: {name}}}\n"),
    );
    write(root, &format!("stacks/{name}/services/jobs/components/queue/sqs.yaml"), &format!(
        "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata: {{name: queue, service: jobs, stack: {name}}}\nspec:\n  visibilityTimeout: 60\n"));
    write(root, &format!("stacks/{name}/services/jobs/components/worker/worker.yaml"), &format!(
        "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata: {{name: worker, service: jobs, stack: {name}}}\nspec:\n  image: {{repository: example/worker, tag: v1}}\n  environment:\n    - name: QUEUE_URL\n      valueFrom: {{component: jobs/queue, output: url}}\n"));
    write(root, &format!("stacks/{name}/services/jobs/components/worker/infra.yaml"), &format!(
        "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {{name: worker, service: jobs, stack: {name}}}\nspec:\n  scaling: {{replicas: {replicas}}}\n"));
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn ctrl_c_stops_an_apply_cleanly_and_a_rerun_converges() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let (home, root, state) = (home.path(), repo_dir.path(), state.path());
    let name = unique_name("i");
    repo(root, &name, 3);
    let target = ["--stack", name.as_str(), "--environment", "development"];

    let mut apply = command(
        home,
        root,
        state,
        &[&["apply", "--yes"][..], &target].concat(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("apply starts");
    // Wait until the worker is being waited for: its service exists, the queue is applied.
    let stdout = apply.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                panic!(
                    "the apply never waited for the worker:\n{}",
                    seen.join("\n")
                )
            });
        let waiting = line.contains("jobs/worker: waiting");
        seen.push(line);
        if waiting {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-INT", &apply.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = apply.wait_with_output().expect("apply ends");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}\n{}",
        seen.join("\n"),
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        text(&out)
    );

    // No lock left; the release says it was interrupted; both components are in state.
    let locks = json(&run(
        home,
        root,
        state,
        &["state", "locks", "--output", "json"],
    ));
    assert_eq!(locks.as_array().map(Vec::len), Some(0), "{locks}");
    let history = json(&run(
        home,
        root,
        state,
        &[&["history", "--output", "json"][..], &target].concat(),
    ));
    assert_eq!(history[0]["outcome"], "interrupted", "{history}");
    let status = json(&run(
        home,
        root,
        state,
        &[&["status", "--output", "json"][..], &target].concat(),
    ));
    let recorded: Vec<&str> = status["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| !c["lastDeployed"].is_null())
        .filter_map(|c| c["component"].as_str())
        .collect();
    assert!(
        recorded.contains(&"jobs/queue") && recorded.contains(&"jobs/worker"),
        "{status}"
    );

    // Asking for what the emulator can run, the re-run converges without creating anything
    // again, and the one after it changes nothing.
    repo(root, &name, 2);
    let again = run(
        home,
        root,
        state,
        &[&["apply", "--yes", "--output", "json"][..], &target].concat(),
    );
    let again = json(&again);
    assert_eq!(again["plan"]["summary"]["create"], 0, "{again}");
    assert_eq!(again["plan"]["summary"]["update"], 1, "{again}");
    let last = json(&run(
        home,
        root,
        state,
        &[&["apply", "--yes", "--output", "json"][..], &target].concat(),
    ));
    assert_eq!(last["mutatingAwsCalls"], 0, "{last}");
    assert!(last["release"].is_null(), "{last}");
}
