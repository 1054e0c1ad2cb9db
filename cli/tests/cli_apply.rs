//! `panka apply`, `destroy`, `history` and `status` end to end against a fresh emulator, on a
//! small generated stack of SQS queues: the line progress output when stderr is not a terminal,
//! releases recording their kind and the `--var` overrides (secret-looking ones redacted), the
//! trimmed `status` JSON, `--output yaml` reading back as the JSON, and the repository's git
//! commit recorded through the session.

use std::path::Path;
use std::process::Output;

use panka_tests::emulator::{panka_backend, panka_command, unique_name};
use panka_tests::output::{text, yaml_to_json};
use panka_tests::repo::{commit_all, two_queue_stack, write};
use serde_json::Value;
use yaml_rust2::YamlLoader;

fn panka(home: &Path, repo: &Path, args: &[&str]) -> Output {
    panka_command(env!("CARGO_BIN_EXE_panka"), home)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("failed to run panka")
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn parse_yaml(text: &str) -> Value {
    let docs = YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("--output yaml printed invalid YAML: {e}\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    yaml_to_json(&docs[0])
}

#[test]
fn apply_and_destroy_record_their_kind_and_overrides_and_read_commands_print_yaml() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("c");
    two_queue_stack(repo_dir.path(), &name);
    let root = repo_dir.path();
    let home = home.path();
    panka_backend(env!("CARGO_BIN_EXE_panka"), home, "cli-apply");
    let target = ["-s", name.as_str(), "-e", "development"];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(target.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        panka(home, root, &args)
    };

    // First apply: stderr is a pipe, so progress is the line output, unchanged.
    let out = run(with(&[
        "apply",
        "--yes",
        "--health-timeout",
        "60",
        "--var",
        "QUEUE_VISIBILITY=45",
        "--var",
        "VERSION=1.10",
        "--var",
        "DB_PASSWORD=hunter2",
    ]));
    let stdout = ok(out.clone());
    for line in [
        "\nWave 1 (2 changing)\n",
        "├── Creating orders/events (SQS)…\n",
        "├── Creating orders/jobs (SQS)…\n",
        "│   ✓ orders/jobs created (",
        "✓ Deployment successful!",
        "Version: 1.10\n",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{}", text(&out));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains("Wave"),
        "progress bars drawn to a pipe:\n{}",
        text(&out)
    );

    // A second apply changing the queues through a variable: a release of its own.
    ok(run(with(&[
        "apply",
        "--yes",
        "--var",
        "QUEUE_VISIBILITY=50",
    ])));

    let table_out = ok(run(with(&["history"])));
    let lines: Vec<&str> = table_out.lines().collect();
    assert!(
        lines[1].starts_with("ID") && lines[1].contains("KIND") && lines[1].ends_with("VARS"),
        "{table_out}"
    );
    assert!(
        lines[2].contains(" apply ") && lines[2].ends_with("QUEUE_VISIBILITY=50"),
        "{table_out}"
    );
    assert!(
        lines[3].ends_with("DB_PASSWORD=<redacted>,QUEUE_VISIBILITY=45,VERSION=1.10"),
        "{table_out}"
    );
    // STARTED as people write it (`2026-11-23 14:30 UTC`), not RFC 3339 with nanoseconds.
    assert!(
        lines[2].contains(" UTC ") && !lines[2].contains("Z "),
        "{table_out}"
    );

    let json_text = ok(run(with(&["--output", "json", "history"])));
    assert!(
        !json_text.contains("hunter2"),
        "a secret-looking variable's value was recorded:\n{json_text}"
    );
    let history: Value = serde_json::from_str(&json_text).expect("JSON");
    assert_eq!(history[0]["kind"], "release");
    assert_eq!(history[0]["releaseKind"], "apply");
    assert_eq!(history[0]["overrides"]["QUEUE_VISIBILITY"], "50");
    assert_eq!(history[1]["overrides"]["DB_PASSWORD"], "<redacted>");
    assert_eq!(history[1]["overrides"]["VERSION"], "1.10");
    assert_eq!(history[1]["version"], "1.10");

    // YAML is the same document, with "1.10" still a string.
    let yaml_text = ok(run(with(&["--output", "yaml", "history"])));
    assert!(!yaml_text.trim_start().starts_with('['), "{yaml_text}");
    assert!(yaml_text.contains("version: '1.10'"), "{yaml_text}");
    assert_eq!(parse_yaml(&yaml_text), history);

    // status as a table: a mark, then columns under their headers.
    let table_out = ok(run(with(&["status"])));
    let header = table_out
        .lines()
        .find(|l| l.starts_with("  COMPONENT "))
        .unwrap_or_else(|| panic!("no header in\n{table_out}"));
    let col = |line: &str, word: &str| line.find(word).map(|at| line[..at].chars().count());
    let rows: Vec<&str> = table_out
        .lines()
        .filter(|l| l.contains("orders/"))
        .collect();
    assert_eq!(rows.len(), 2, "{table_out}");
    for row in rows {
        assert!(row.starts_with("✓ orders/"), "{table_out}");
        assert_eq!(col(row, "SQS"), col(header, "KIND"), "{table_out}");
        assert_eq!(col(row, "Healthy"), col(header, "HEALTH"), "{table_out}");
        assert!(row.ends_with(" ago"), "{table_out}");
    }

    // status --output json: the last release in brief, not the spec it applied.
    let out = run(with(&["--output", "json", "status"]));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let release = status["release"].as_object().expect("a release");
    let mut keys: Vec<&str> = release.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "actor",
            "commit",
            "finishedAt",
            "id",
            "kind",
            "outcome",
            "startedAt",
            "version"
        ],
        "{status:#}"
    );
    assert_eq!(release["id"], history[0]["id"]);
    assert_eq!(release["kind"], "apply");
    assert_eq!(release["outcome"], "succeeded");
    let yaml_status = parse_yaml(&ok(run(with(&["--output", "yaml", "status"]))));
    assert_eq!(yaml_status["release"], status["release"]);

    // Destroy: recorded as a destroy, shown as one.
    let out = run(with(&["destroy", "--yes"]));
    let stdout = ok(out);
    assert!(stdout.contains("✓ Destroy successful!"), "{stdout}");
    let table_out = ok(run(with(&["history"])));
    let newest = table_out.lines().nth(2).expect("a row");
    assert!(newest.contains(" destroy "), "{table_out}");
    let history: Value =
        serde_json::from_str(&ok(run(with(&["--output", "json", "history"])))).expect("JSON");
    assert_eq!(history[0]["releaseKind"], "destroy");
    assert_eq!(history.as_array().map(Vec::len), Some(3));
    let out = run(with(&["--output", "json", "status"]));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["release"]["kind"], "destroy", "{}", text(&out));
}

/// Commits everything in `root` (a new repository the first time) and returns the commit id.
#[test]
fn plan_apply_and_status_go_through_the_session_and_record_the_repositorys_commit() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("g");
    let root = repo_dir.path();
    let home = home.path();
    two_queue_stack(root, &name);
    let head = commit_all(root);
    panka_backend(env!("CARGO_BIN_EXE_panka"), home, "cli-apply");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-s", name.as_str(), "-e", "development"]);
        panka(home, root, &all)
    };
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = run(&all);
        serde_json::from_str(&ok(out)).expect("JSON")
    };

    // plan: the session's engine sees nothing deployed yet.
    let plan = json(&["plan"]);
    assert_eq!(plan["summary"]["create"], 2, "{plan:#}");

    // apply in a clean checkout: the release records HEAD, and status shows it.
    ok(run(&["apply", "--yes"]));
    let history = json(&["history"]);
    assert_eq!(history[0]["commit"], head.as_str(), "{history:#}");
    let status = json(&["status"]);
    assert_eq!(status["release"]["commit"], head.as_str(), "{status:#}");
    assert_eq!(status["release"]["id"], history[0]["id"]);
    assert_eq!(status["components"].as_array().map(Vec::len), Some(2));

    // A change under stacks/ not yet committed: the next release says so.
    write(
        root,
        &format!("stacks/{name}/environments/development/variables.yaml"),
        &format!("apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {{name: development, stack: {name}}}\nspec: {{VERSION: v2, QUEUE_VISIBILITY: \"40\"}}\n"),
    );
    let plan = json(&["plan"]);
    assert_eq!(plan["summary"]["update"], 2, "{plan:#}");
    // The same plan for a pull-request comment.
    let md = ok(run(&["--output", "markdown", "plan"]));
    assert!(
        md.starts_with(&format!("### panka plan: `{name}` · `development`\n")),
        "{md}"
    );
    assert!(
        md.contains("**Version** `v2` · 0 to create, **2 to update**"),
        "{md}"
    );
    assert!(
        md.contains("| `orders/events` | SQS | update | `visibilityTimeout`: `30` → `40` |"),
        "{md}"
    );
    // Other commands refuse it, saying where it belongs.
    let out = run(&["--output", "markdown", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`--output markdown` is for `panka plan`"),
        "{}",
        text(&out)
    );
    ok(run(&["apply", "--yes"]));
    let dirty = format!("{head}+dirty");
    let history = json(&["history"]);
    assert_eq!(history[0]["commit"], dirty.as_str(), "{history:#}");
    assert_eq!(history[0]["version"], "v2");
    assert_eq!(history[1]["commit"], head.as_str());
    let status = json(&["status"]);
    assert_eq!(status["release"]["commit"], dirty.as_str(), "{status:#}");

    // Committed: clean again, at the new HEAD.
    let next = commit_all(root);
    assert_ne!(next, head);
    ok(run(&["destroy", "--yes"]));
    let history = json(&["history"]);
    assert_eq!(history[0]["releaseKind"], "destroy");
    assert_eq!(history[0]["commit"], next.as_str(), "{history:#}");
}
