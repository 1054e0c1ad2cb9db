//! Drift and rollback end to end, as the README tells a new user to try them: the example's
//! `user-platform` stack (under a name of its own) applied to the emulator with S3 state and
//! DynamoDB locks, changed by hand through the SDK as a person in the console would, then
//! `drift detect`, `drift remediate`, `drift acknowledge`, `rollback --to-version`, `history`,
//! the pin refusing `apply`, and `resume`.

use panka_tests::cli::ExampleStack;
use panka_tests::console;
use panka_tests::emulator::emulator;
use panka_tests::output::text;
use panka_tests::repo::edit;
use serde_json::Value;

/// `(component, field) -> severity` of a `drift detect --output json` report.
fn findings(report: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = report["drifted"]
        .as_array()
        .expect("drifted")
        .iter()
        .flat_map(|c| c["findings"].as_array().expect("findings").iter())
        .map(|f| {
            (
                f["component"].as_str().expect("component").to_owned(),
                f["field"].as_str().expect("field").to_owned(),
                f["severity"].as_str().expect("severity").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_detected_remediated_and_acknowledged_and_a_rollback_pins_until_resume() {
    let example = ExampleStack::new(env!("CARGO_BIN_EXE_panka"), "drift").await;
    let sdk = emulator().sdk_config().await;
    let cli = example.cli(env!("CARGO_BIN_EXE_panka"));
    let (stack, root) = (example.stack.as_str(), example.repo.path());
    let apply = ["apply", "--yes", "--health-timeout", "60"];
    let v130 = [&apply[..], &["--var", "VERSION=v1.3.0"]].concat();
    cli.expect(0, &apply);

    // No false drift right after an apply, nor after an apply that changes nothing.
    let report = cli.json(0, &["drift", "detect", "--detailed-exitcode"]);
    assert_eq!(findings(&report), Vec::<(String, String, String)>::new());
    assert_eq!(report["checked"], 13);
    cli.expect(0, &apply);
    cli.expect(0, &["drift", "detect", "--detailed-exitcode"]);

    // Someone changes things in the console.
    let env = format!("{stack}-development");
    let name = |c: &str| format!("{env}-{c}");
    console::scale(&sdk, &env, &name("user-service-api"), 1).await;
    let worker = name("notification-service-worker");
    let v120 = console::image(&sdk, &env, &worker).await;
    assert!(v120.ends_with(":v1.2.0"), "{v120}");
    console::swap_task_definition(
        &sdk,
        &env,
        &worker,
        &format!("{v120}-hotfix"),
        ("PREFERENCES_TABLE", "someone-elses-table"),
    )
    .await;
    console::open_bucket(&sdk, &name("notification-service-templates")).await;
    console::set_visibility_timeout(&sdk, &name("notification-service-queue"), 99).await;
    console::disable_pitr(&sdk, &name("notification-service-preferences")).await;
    console::set_backup_retention(&sdk, &name("notification-service-database"), 9).await;
    console::delete_db(&sdk, &name("user-service-database")).await;
    // The autoscaler moves the api of notification-service within 2..10: not drift.
    console::scale(&sdk, &env, &name("notification-service-api"), 5).await;

    let report = cli.json(2, &["drift", "detect", "--detailed-exitcode"]);
    let s = |c: &str, f: &str, sev: &str| (c.to_owned(), f.to_owned(), sev.to_owned());
    assert_eq!(
        findings(&report),
        [
            s(
                "notification-service/database",
                "backup.retentionDays",
                "MEDIUM"
            ),
            s(
                "notification-service/preferences",
                "pointInTimeRecovery",
                "MEDIUM"
            ),
            s("notification-service/queue", "visibilityTimeout", "MEDIUM"),
            s(
                "notification-service/templates",
                "publicAccessBlock",
                "CRITICAL"
            ),
            s("notification-service/templates", "versioning", "MEDIUM"),
            s(
                "notification-service/worker",
                "environment.PREFERENCES_TABLE",
                "HIGH"
            ),
            s("notification-service/worker", "image", "HIGH"),
            s("user-service/api", "desiredCount", "MEDIUM"),
            s("user-service/database", "exists", "CRITICAL"),
        ]
    );
    // The table for people: severity, the drifted field marked, the cause in words.
    let table_out = cli.expect(2, &["drift", "detect", "--detailed-exitcode"]);
    for line in [
        "⚠ MEDIUM: user-service/api (MicroService)",
        "    desiredCount: 1   ← drift (MEDIUM)",
        "  Likely cause: someone scaled the service down by hand",
        "⚠ CRITICAL: user-service/database (RDS)",
        "  Likely cause: the DB instance was deleted outside panka",
        "✓ All other components match desired state",
    ] {
        assert!(table_out.contains(line), "no {line:?} in\n{table_out}");
    }
    // `status` tells how fresh the check is.
    let status = cli.expect(1, &["status"]);
    assert!(status.contains("Drift checked "), "{status}");

    // A remediation refuses to carry pending repository changes along unless asked.
    let vars = format!("stacks/{stack}/environments/development/variables.yaml");
    edit(root, &vars, "VERSION: v1.2.0", "VERSION: v1.2.1");
    let refused = cli.run(&["drift", "remediate", "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("the repository has changes not applied yet"),
        "{}",
        text(&refused)
    );
    edit(root, &vars, "VERSION: v1.2.1", "VERSION: v1.2.0");

    cli.expect(
        0,
        &["drift", "remediate", "--yes", "--health-timeout", "60"],
    );
    cli.expect(0, &["drift", "detect", "--detailed-exitcode"]);
    assert_eq!(console::image(&sdk, &env, &worker).await, v120);
    assert_eq!(
        console::desired_count(&sdk, &env, &name("user-service-api")).await,
        2
    );

    // An ignore rule hides its field, on the components it names, and nothing else; a
    // remediation leaves what it ignores alone.
    let infra = format!("stacks/{stack}/infra/defaults.yaml");
    edit(
        root,
        &infra,
        "    mode: remediate\n",
        "    mode: remediate\n    ignore:\n      - {component: \"user-service/*\", field: desiredCount}\n      - {field: environment.PREFERENCES_TABLE}\n",
    );
    console::scale(&sdk, &env, &name("user-service-api"), 3).await;
    console::scale(&sdk, &env, &name("notification-service-worker"), 3).await;
    let table_of = ("PREFERENCES_TABLE", "a-table-we-expect");
    let hotfix = format!("{v120}-hotfix");
    console::swap_task_definition(&sdk, &env, &worker, &hotfix, table_of).await;
    let report = cli.json(2, &["drift", "detect", "--detailed-exitcode"]);
    assert_eq!(
        findings(&report),
        [
            s("notification-service/worker", "desiredCount", "MEDIUM"),
            s("notification-service/worker", "image", "HIGH")
        ]
    );
    assert_eq!(
        report["ignored"],
        serde_json::json!([
            "notification-service/worker environment.PREFERENCES_TABLE",
            "user-service/api desiredCount"
        ])
    );
    cli.expect(
        0,
        &["drift", "remediate", "--yes", "--health-timeout", "60"],
    );
    assert_eq!(console::desired_count(&sdk, &env, &worker).await, 1);
    assert_eq!(
        console::desired_count(&sdk, &env, &name("user-service-api")).await,
        3
    );
    // The image went back in a new task definition, which kept the variable the rule expects.
    assert_eq!(console::image(&sdk, &env, &worker).await, v120);
    let table = console::variable(&sdk, &env, &worker, "PREFERENCES_TABLE").await;
    assert_eq!(table.as_deref(), Some("a-table-we-expect"));
    // A repository change to something the worker references does not void the rules.
    let queue_yaml =
        format!("stacks/{stack}/services/notification-service/components/queue/sqs.yaml");
    edit(
        root,
        &queue_yaml,
        "messageRetentionPeriod: 345600",
        "messageRetentionPeriod: 345601",
    );
    let plan = cli.expect(0, &["plan"]);
    for line in [
        "notification-service/worker (Worker)  no change",
        "user-service/api (MicroService)  no change",
        "~ notification-service/queue (SQS)  UPDATE",
    ] {
        assert!(plan.contains(line), "no {line:?} in\n{plan}");
    }
    edit(
        root,
        &queue_yaml,
        "messageRetentionPeriod: 345601",
        "messageRetentionPeriod: 345600",
    );
    edit(
        root,
        &infra,
        "    ignore:\n      - {component: \"user-service/*\", field: desiredCount}\n      - {field: environment.PREFERENCES_TABLE}\n",
        "",
    );
    cli.expect(
        0,
        &["drift", "remediate", "--yes", "--health-timeout", "60"],
    );
    cli.expect(0, &["drift", "detect", "--detailed-exitcode"]);
    assert_eq!(
        console::desired_count(&sdk, &env, &name("user-service-api")).await,
        2
    );

    // Acknowledge: keep a hand-made change by writing it into the repository.
    console::set_visibility_timeout(&sdk, &name("notification-service-queue"), 120).await;
    let sqs = format!("stacks/{stack}/services/notification-service/components/queue/sqs.yaml");
    let before = std::fs::read_to_string(root.join(&sqs)).expect("readable");
    let diff = cli.expect(
        0,
        &[
            "drift",
            "acknowledge",
            "-c",
            "notification-service/queue",
            "--write",
        ],
    );
    assert!(
        diff.contains("-  visibilityTimeout: 300\n+  visibilityTimeout: 120\n"),
        "{diff}"
    );
    let after = std::fs::read_to_string(root.join(&sqs)).expect("readable");
    assert_eq!(
        after,
        before.replace("visibilityTimeout: 300", "visibilityTimeout: 120")
    );
    let plan = cli.expect(0, &["plan"]);
    assert!(
        plan.contains("notification-service/queue (SQS)  no change"),
        "{plan}"
    );
    cli.expect(0, &apply);
    cli.expect(0, &["drift", "detect", "--detailed-exitcode"]);

    // Roll forward to v1.3.0 (a new image and a new variable), then back to v1.2.0 by version.
    let worker_yaml =
        format!("stacks/{stack}/services/notification-service/components/worker/worker.yaml");
    edit(
        root,
        &worker_yaml,
        "  dependsOn:\n",
        "    - name: BATCH_SIZE\n      value: \"50\"\n\n  dependsOn:\n",
    );
    cli.expect(0, &v130);
    assert!(console::image(&sdk, &env, &worker)
        .await
        .ends_with(":v1.3.0"));
    let batch = || console::variable(&sdk, &env, &worker, "BATCH_SIZE");
    assert_eq!(batch().await.as_deref(), Some("50"));
    let back = cli.expect(
        0,
        &[
            "rollback",
            "--to-version",
            "v1.2.0",
            "--yes",
            "--health-timeout",
            "60",
        ],
    );
    assert!(back.contains("✓ Rollback successful!"), "{back}");
    assert!(back.contains("is pinned to release"), "{back}");
    assert_eq!(console::image(&sdk, &env, &worker).await, v120);
    assert_eq!(batch().await, None);
    let history = cli.expect(0, &["history"]);
    let row = |version: &str, kind: &str| {
        history
            .lines()
            .find(|l| l.contains(&format!(" {kind} ")) && l.contains(version))
            .unwrap_or_else(|| panic!("no {kind} {version} row in\n{history}"))
            .to_owned()
    };
    assert!(
        row("v1.3.0", "apply").contains("⚠ Rolled back"),
        "{history}"
    );
    assert!(
        row("v1.2.0", "rollback → v1.2.0").contains("✓ Success"),
        "{history}"
    );
    assert!(
        row("v1.2.0", "remediation").contains("✓ Success"),
        "{history}"
    );

    // Pinned, the repository is ahead on purpose (it has BATCH_SIZE): a remediation goes
    // toward the pinned release, and refuses to carry the repository along.
    console::scale(&sdk, &env, &worker, 2).await;
    let refused = cli.run(&["drift", "remediate", "--yes", "--include-pending"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("--include-pending would roll it forward"),
        "{}",
        text(&refused)
    );
    cli.expect(
        0,
        &["drift", "remediate", "--yes", "--health-timeout", "60"],
    );
    assert_eq!(console::desired_count(&sdk, &env, &worker).await, 1);
    assert_eq!(console::image(&sdk, &env, &worker).await, v120);
    assert_eq!(batch().await, None);
    // A service's --unpin does not lift the stack's pin.
    let refused = cli.run(&[
        "apply",
        "--yes",
        "--service",
        "notification-service",
        "--unpin",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("is pinned to release"),
        "{}",
        text(&refused)
    );

    // Pinned: apply refuses, status shows the pin, resume unpins, apply rolls forward.
    let refused = cli.run(&["apply", "--yes", "--var", "VERSION=v1.3.0"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("is pinned to release"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("panka resume"),
        "{}",
        text(&refused)
    );
    assert_eq!(console::image(&sdk, &env, &worker).await, v120);
    assert!(cli
        .expect(0, &["status"])
        .contains("📌 stack pinned to release"));
    let resumed = cli.expect(0, &["resume"]);
    assert!(resumed.contains("Unpinned the stack"), "{resumed}");
    cli.expect(0, &v130);
    assert!(console::image(&sdk, &env, &worker)
        .await
        .ends_with(":v1.3.0"));
    assert_eq!(batch().await.as_deref(), Some("50"));
}
