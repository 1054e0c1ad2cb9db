//! The `panka` binary as a person or a CI job runs it: validate, graph, version, exit codes and
//! what lands on stdout and stderr. Reads only the example repository (or a broken copy of it);
//! never AWS.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use panka_tests::output::yaml_to_json;
use serde_json::Value;
use tempfile::TempDir;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/deployment-repo");

/// The infra file the broken copy breaks, and the line it breaks.
const BROKEN_FILE: &str =
    "stacks/notification-platform/services/email-service/components/api/infra.yaml";
const BROKEN_LINE: u64 = 15;

/// `panka` with a clean environment: no `PANKA_*` settings and a `HOME` without a config, so a
/// developer's own setup cannot change the outcome.
fn panka(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_panka"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PANKA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home);
    cmd
}

/// Runs `panka args…` against the example repository.
fn run_on_example(args: &[&str]) -> Output {
    let home = TempDir::new().expect("temporary HOME");
    panka(home.path())
        .arg("--repo")
        .arg(EXAMPLE)
        .args(args)
        .output()
        .expect("run panka")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read example folder") {
        let entry = entry.expect("read example entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy example file");
        }
    }
}

/// A copy of the example whose `email-service/api` infra says `replcas` on line 15.
fn broken_copy() -> TempDir {
    let dir = TempDir::new().expect("temporary repository");
    copy_dir(Path::new(EXAMPLE), dir.path());
    let path = dir.path().join(BROKEN_FILE);
    let text = std::fs::read_to_string(&path).expect("read infra.yaml");
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[BROKEN_LINE as usize - 1],
        "    replicas: 2",
        "example changed"
    );
    lines[BROKEN_LINE as usize - 1] = "    replcas: 2";
    std::fs::write(&path, lines.join("\n") + "\n").expect("write infra.yaml");
    dir
}

fn run_on(repo: &Path, args: &[&str]) -> Output {
    let home = TempDir::new().expect("temporary HOME");
    panka(home.path())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("run panka")
}

#[test]
fn validate_passes_every_stack_of_the_example() {
    let out = run_on_example(&["validate"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for stack in ["notification-platform", "user-platform"] {
        assert!(
            text.contains(&format!("Validating stack: {stack}")),
            "{}",
            show(&out)
        );
    }
    assert_eq!(
        text.matches("✓ Stack configuration is valid!").count(),
        2,
        "{}",
        show(&out)
    );
}

#[test]
fn validate_runs_the_example_policies_and_says_how_many() {
    let out = run_on_example(&["validate", "--stack", "user-platform"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(
            "├── Checking for cycles... ✓\n└── Running policy checks... ✓ (3 policies)\n\n✓ Stack configuration is valid!"
        ),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", show(&out));
}

#[test]
fn validate_without_policies_claims_no_policy_check() {
    let dir = TempDir::new().expect("temporary repository");
    copy_dir(Path::new(EXAMPLE), dir.path());
    std::fs::remove_dir_all(dir.path().join("policies")).expect("remove policies/");
    let out = run_on(dir.path(), &["validate", "--stack", "user-platform"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(
            "└── Running policy checks... ✓ (no policies)\n\n✓ Stack configuration is valid!"
        ),
        "{}",
        show(&out)
    );
}

#[test]
fn validate_checks_only_the_stack_and_environment_asked_for() {
    let out = run_on_example(&[
        "validate",
        "--stack",
        "notification-platform",
        "--environment",
        "production",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Validating stack: notification-platform"),
        "{}",
        show(&out)
    );
    assert!(!text.contains("user-platform"), "{}", show(&out));
    assert!(text.contains("production ✓"), "{}", show(&out));
    assert!(!text.contains("staging"), "{}", show(&out));
    assert!(
        text.contains("✓ Stack configuration is valid!"),
        "{}",
        show(&out)
    );
}

#[test]
fn validate_of_a_broken_repo_exits_1_with_location_snippet_and_help() {
    let repo = broken_copy();
    let out = run_on(
        repo.path(),
        &["validate", "--stack", "notification-platform"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("--> {BROKEN_FILE}:{BROKEN_LINE}:5")),
        "{}",
        show(&out)
    );
    assert!(
        err.contains(&format!("{BROKEN_LINE} |     replcas: 2")),
        "{}",
        show(&out)
    );
    assert!(
        err.contains("= help: did you mean `replicas`?"),
        "{}",
        show(&out)
    );
    assert!(
        !stdout(&out).contains("Stack configuration is valid"),
        "{}",
        show(&out)
    );
}

#[test]
fn validate_json_output_reports_problems_with_file_and_line() {
    let repo = broken_copy();
    let out = run_on(
        repo.path(),
        &[
            "validate",
            "--stack",
            "notification-platform",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", show(&out)));
    let reports = json.as_array().expect("one report per stack");
    assert_eq!(reports.len(), 1, "{json:#}");
    let report = &reports[0];
    assert_eq!(report["stack"], "notification-platform", "{json:#}");
    assert_eq!(report["valid"], false, "{json:#}");
    let problems = report["problems"].as_array().expect("problems list");
    let problem = problems
        .iter()
        .find(|p| p["file"] == BROKEN_FILE)
        .unwrap_or_else(|| panic!("no problem in {BROKEN_FILE}: {json:#}"));
    assert_eq!(problem["line"], BROKEN_LINE, "{json:#}");
    assert!(
        problem["message"]
            .as_str()
            .is_some_and(|m| m.contains("replcas")),
        "{json:#}"
    );
    assert_eq!(problem["help"], "did you mean `replicas`?", "{json:#}");
}

#[test]
fn graph_as_dot_draws_an_edge_from_a_dependency_to_its_dependant() {
    let out = run_on_example(&["graph", "--stack", "user-platform", "--format", "dot"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with("digraph"), "{}", show(&out));
    assert!(
        text.contains("notification_service_database -> notification_service_api"),
        "{}",
        show(&out)
    );
}

#[test]
fn graph_as_mermaid_draws_a_flowchart() {
    let out = run_on_example(&["graph", "--stack", "user-platform", "--format", "mermaid"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with("flowchart"), "{}", show(&out));
    assert!(
        text.contains("notification_service_database --> notification_service_api"),
        "{}",
        show(&out)
    );
}

#[test]
fn graph_as_text_lists_waves() {
    let out = run_on_example(&["graph", "--stack", "user-platform", "--format", "text"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("Wave 1"), "{}", show(&out));
    assert!(text.contains("notification-service/api"), "{}", show(&out));
}

/// Where (in characters, not bytes: `✓` is one column) `word` starts in `line`.
fn column_of(line: &str, word: &str) -> Option<usize> {
    line.find(word).map(|at| line[..at].chars().count())
}

#[test]
fn list_prints_one_aligned_table_per_stack() {
    let out = run_on_example(&["list", "--stack", "user-platform"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "user-platform  (environments: development, production, staging)",
        "{text}"
    );
    assert!(lines[1].starts_with("  SERVICE "), "{text}");
    let component = column_of(lines[1], "COMPONENT").expect("a COMPONENT column");
    let kind = column_of(lines[1], "KIND").expect("a KIND column");
    let row = lines
        .iter()
        .find(|l| l.contains("preferences"))
        .unwrap_or_else(|| panic!("no preferences row in\n{text}"));
    assert_eq!(column_of(row, "preferences"), Some(component), "{text}");
    assert_eq!(column_of(row, "DynamoDB"), Some(kind), "{text}");
    // Columns three spaces apart, like `kubectl get`; no trailing spaces.
    assert!(
        row.contains("notification-service   preferences   DynamoDB"),
        "{text}"
    );
    assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text}");
}

#[test]
fn validate_finds_the_repo_root_from_a_subfolder() {
    let home = TempDir::new().expect("temporary HOME");
    let cwd: PathBuf = Path::new(EXAMPLE).join("stacks/user-platform/services");
    let out = panka(home.path())
        .current_dir(&cwd)
        .args(["validate", "--stack", "user-platform"])
        .output()
        .expect("run panka");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("✓ Stack configuration is valid!"),
        "{}",
        show(&out)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let home = TempDir::new().expect("temporary HOME");
    let out = panka(home.path())
        .arg("version")
        .output()
        .expect("run panka");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("panka {}", env!("CARGO_PKG_VERSION")),
        "{}",
        show(&out)
    );
}

#[test]
fn malformed_var_exits_1_and_says_how_to_write_it() {
    let out = run_on_example(&["validate", "--stack", "user-platform", "--var", "VERSION"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`--var VERSION` is not of the form NAME=VALUE"),
        "{}",
        show(&out)
    );
    assert!(err.contains("--var VERSION=v1.2.0"), "{}", show(&out));
}

#[test]
fn var_overrides_a_variable() {
    let out = run_on_example(&[
        "validate",
        "--stack",
        "user-platform",
        "--var",
        "VERSION=v9.9.9",
    ]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn unknown_stack_exits_1_with_a_suggestion() {
    let out = run_on_example(&["validate", "--stack", "user-platfrom"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("did you mean `user-platform`?"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_production_apply_without_yes_and_without_a_terminal_refuses_before_touching_aws() {
    // No emulator is running and no AWS endpoint is set: the refusal must come first.
    let out = run_on_example(&[
        "apply",
        "--stack",
        "user-platform",
        "--environment",
        "production",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("production needs approval"), "{err}");
    assert!(err.contains("--yes"), "{err}");
}

#[test]
fn duration_flags_take_human_durations_and_bare_seconds() {
    // Production needs approval and there is no terminal: the refusal comes after clap parsed
    // every flag and before any AWS call, so reaching it proves the durations were accepted.
    for (lock, health) in [("5m", "1h30m"), ("300", "900"), ("90s", "15m")] {
        let out = run_on_example(&[
            "apply",
            "--stack",
            "user-platform",
            "--environment",
            "production",
            "--lock-timeout",
            lock,
            "--health-timeout",
            health,
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let err = stderr(&out);
        assert!(!err.contains("invalid value"), "{lock} {health}: {err}");
        assert!(err.contains("production needs approval"), "{err}");
    }
}

#[test]
fn a_bad_duration_is_a_usage_error_naming_the_flag_and_an_example() {
    let out = run_on_example(&[
        "apply",
        "--stack",
        "user-platform",
        "--environment",
        "production",
        "--lock-timeout",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'soon' for '--lock-timeout <DURATION>'"),
        "{err}"
    );
    assert!(err.contains("`5m`"), "{err}");
}

#[test]
fn plan_of_an_invalid_repo_reports_problems_and_calls_no_aws() {
    let repo = broken_copy();
    let out = run_on(
        repo.path(),
        &[
            "plan",
            "--stack",
            "notification-platform",
            "--environment",
            "production",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("unknown field `replcas`"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_usage_error_exits_1_so_2_only_ever_means_changes_present() {
    let out = run_on_example(&["plan", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", show(&out));
    let help = run_on_example(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", show(&help));
}

#[test]
fn yaml_output_is_block_yaml_of_the_same_data_as_json() {
    for args in [
        &["version"][..],
        &[
            "validate",
            "--stack",
            "user-platform",
            "--environment",
            "development",
        ],
        &["graph", "--stack", "user-platform", "--var", "VERSION=1.10"],
        &["list"],
    ] {
        let json_out = run_on_example(&[&["--output", "json"], args].concat());
        assert!(json_out.status.success(), "{}", show(&json_out));
        let json: Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
        let yaml_out = run_on_example(&[&["--output", "yaml"], args].concat());
        assert!(yaml_out.status.success(), "{}", show(&yaml_out));
        let text = stdout(&yaml_out);
        assert!(
            !text.trim_start().starts_with(['{', '[']),
            "{args:?} printed flow style (JSON):\n{text}"
        );
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{args:?} printed invalid YAML: {e}\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        assert_eq!(yaml_to_json(&docs[0]), json, "{args:?}:\n{text}");
    }
}

#[test]
fn export_prints_the_stack_as_resources_that_read_back_as_yaml_and_json() {
    let args = [
        "export",
        "--stack",
        "notification-platform",
        "--environment",
        "production",
        "--var",
        "VERSION=v1.1.0",
    ];
    let out = run_on_example(&args);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stderr(&out), "", "{}", show(&out));
    let docs = yaml_rust2::YamlLoader::load_from_str(&stdout(&out)).expect("YAML");
    let from_yaml: Vec<Value> = docs.iter().map(yaml_to_json).collect();
    let kinds: Vec<&str> = from_yaml
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["Stack", "Service", "MicroService", "RDS", "SQS"]);
    assert_eq!(
        from_yaml[0]["metadata"]["name"],
        "notification-platform-production"
    );
    assert_eq!(from_yaml[0]["spec"]["variables"]["VERSION"], "v1.1.0");
    assert_eq!(from_yaml[2]["spec"]["image"]["tag"], "${VERSION}");

    let mut json_args = vec!["--output", "json"];
    json_args.extend(args);
    let out = run_on_example(&json_args);
    assert!(out.status.success(), "{}", show(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(
        list["items"],
        Value::Array(from_yaml),
        "YAML and JSON say the same"
    );
}

#[test]
fn export_of_an_unknown_environment_exits_1_with_a_suggestion() {
    let out = run_on_example(&["export", "-s", "user-platform", "-e", "prod"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(stdout(&out), "", "{}", show(&out));
    assert!(
        stderr(&out).contains("did you mean `production`?"),
        "{}",
        show(&out)
    );
}

#[test]
fn completion_scripts_generate_for_each_shell_and_name_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F _panka"),
        ("zsh", "#compdef panka"),
        ("fish", "complete -c panka"),
    ] {
        let out = run_on_example(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", show(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        for word in ["apply", "drift", "environment"] {
            assert!(script.contains(word), "{shell} completes no `{word}`");
        }
    }
    let out = run_on_example(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("possible values"), "{}", show(&out));
}

/// A `--component` that is not in the stack: the nearest name, or the list; no AWS call.
#[test]
fn an_unknown_component_is_named_with_the_nearest_one() {
    for (command, wrong, says) in [
        (
            "health",
            "user-service/apii",
            "did you mean `user-service/api`?",
        ),
        (
            "logs",
            "user-service/apii",
            "did you mean `user-service/api`?",
        ),
        (
            "metrics",
            "nope/nothing",
            "its components: notification-service/api,",
        ),
    ] {
        let out = run_on_example(&[
            command,
            "-s",
            "user-platform",
            "-e",
            "development",
            "--component",
            wrong,
        ]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", show(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "stack `user-platform` has no component `{wrong}`; {says}"
            )),
            "{command}: {err}"
        );
    }
}

/// `panka completion bash | head -1`: the reader stops early; panka exits quietly.
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    for args in [&["completion", "bash"][..], &["man"][..]] {
        let home = TempDir::new().expect("temporary HOME");
        let mut child = panka(home.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run panka");
        // Close the read end at once: every write panka makes meets a broken pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("panka ends");
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn man_prints_the_main_page_and_writes_one_per_command() {
    let out = run_on_example(&["man"]);
    assert!(out.status.success(), "{}", show(&out));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH panka 1"),
        "{page}"
    );
    assert!(page.contains("validate"), "{page}");
    let dir = TempDir::new().expect("temporary folder");
    let pages = dir.path().join("man1");
    let out = run_on_example(&["man", "--dir", pages.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", show(&out));
    for name in [
        "panka.1",
        "panka-plan.1",
        "panka-drift-detect.1",
        "panka-completion.1",
    ] {
        let text =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name} is not a man page");
    }
    assert!(stdout(&out).starts_with("wrote "), "{}", show(&out));
}

/// Every `panka SUBCOMMAND` the CI examples run, and every flag they pass it.
#[test]
fn the_ci_examples_are_yaml_and_call_commands_and_flags_that_exist() {
    let dir = Path::new(EXAMPLE).join("../ci");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ci exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            docs[0]["jobs"].as_hash().is_some(),
            "{}: no jobs",
            path.display()
        );
        for line in text.lines() {
            // A call starts a line or a `run:`, or follows a pipe or a `!`.
            let line = line.trim_start();
            let line = line.strip_prefix("run: ").unwrap_or(line);
            let calls = std::iter::once(line.strip_prefix("panka "))
                .chain(line.split("| panka ").skip(1).map(Some))
                .chain(line.split("! panka ").skip(1).map(Some))
                .flatten();
            for call in calls {
                check_call(&path, call);
                seen += 1;
            }
        }
    }
    assert!(seen >= 6, "found only {seen} panka calls");
}

fn check_call(path: &Path, call: &str) {
    // The call ends where the shell starts something else.
    let words: Vec<&str> = call
        .split_whitespace()
        .take_while(|w| !["|", "||", "&&", ";", ">", ">>", "2>"].contains(w))
        .collect();
    let sub = words[0];
    let out = run_on_example(&[sub, "--help"]);
    assert!(
        out.status.success(),
        "{}: `panka {sub}`: {}",
        path.display(),
        show(&out)
    );
    let help = stdout(&out);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(flag),
            "{}: `panka {sub}` has no {flag}",
            path.display()
        );
    }
}
