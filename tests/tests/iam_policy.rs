//! `docs/iam-policy.json` against the AWS operations panka's code can call.
//!
//! The operations are read from the source itself, so no list beside the drivers can fall out of
//! date: every fluent SDK call (`client.describe_services() … .send()`) in the product's crates
//! is found, its AWS service told by the client it is called on, and its name checked against
//! the SDK's own operation catalogue (the `src/operation/` modules of the `aws-sdk-*` release in
//! `Cargo.lock`, from cargo's registry). Each operation becomes the IAM actions AWS authorises
//! it with; the policy must list exactly those, plus the permissions AWS checks on the side
//! (`IMPLIED`, each tied to the call that needs it). An action called but missing, or listed
//! but never called, fails with the file and line (or the statement) to mend.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

/// The product's crates, whose calls the policy must allow (tests and benches are not shipped).
const SOURCES: &[&str] = &["controller/src", "cli/src", "core/src"];

/// IAM prefix of each `aws-sdk-{crate}` the product may use.
const PREFIXES: &[(&str, &str)] = &[
    ("applicationautoscaling", "application-autoscaling"),
    ("cloudwatch", "cloudwatch"),
    ("cloudwatchlogs", "logs"),
    ("dynamodb", "dynamodb"),
    ("ec2", "ec2"),
    ("ecs", "ecs"),
    ("elasticache", "elasticache"),
    ("elasticloadbalancingv2", "elasticloadbalancing"),
    ("iam", "iam"),
    ("rds", "rds"),
    ("resourcegroupstagging", "tag"),
    ("s3", "s3"),
    ("secretsmanager", "secretsmanager"),
    ("sqs", "sqs"),
];

/// Operations IAM authorises under other action names than `{prefix}:{Operation}` (the
/// Service Authorization Reference's "actions" tables).
const RENAMED: &[(&str, &str, &[&str])] = &[
    ("s3", "HeadBucket", &["s3:ListBucket"]),
    ("s3", "ListObjectsV2", &["s3:ListBucket"]),
    ("s3", "ListObjectVersions", &["s3:ListBucketVersions"]),
    // Emptying a versioned bucket deletes every version.
    (
        "s3",
        "DeleteObjects",
        &["s3:DeleteObject", "s3:DeleteObjectVersion"],
    ),
    (
        "s3",
        "GetBucketEncryption",
        &["s3:GetEncryptionConfiguration"],
    ),
    (
        "s3",
        "PutBucketEncryption",
        &["s3:PutEncryptionConfiguration"],
    ),
    (
        "s3",
        "GetBucketLifecycleConfiguration",
        &["s3:GetLifecycleConfiguration"],
    ),
    (
        "s3",
        "PutBucketLifecycleConfiguration",
        &["s3:PutLifecycleConfiguration"],
    ),
    (
        "s3",
        "DeleteBucketLifecycle",
        &["s3:PutLifecycleConfiguration"],
    ),
    (
        "s3",
        "GetPublicAccessBlock",
        &["s3:GetBucketPublicAccessBlock"],
    ),
    (
        "s3",
        "PutPublicAccessBlock",
        &["s3:PutBucketPublicAccessBlock"],
    ),
    // A transaction is authorised item by item; the lock writes put, update and delete items.
    (
        "dynamodb",
        "TransactWriteItems",
        &[
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ],
    ),
];

/// Permissions AWS checks on the side of a call: (action, SDK crate, operation, why).
const IMPLIED: &[(&str, &str, &str, &str)] = &[
    (
        "iam:PassRole",
        "ecs",
        "RegisterTaskDefinition",
        "the task definition names panka's execution role",
    ),
    (
        "iam:CreateServiceLinkedRole",
        "ecs",
        "CreateCluster",
        "ECS, ELB, RDS, ElastiCache and Application Auto Scaling create their service-linked \
         role on first use in an account",
    ),
    (
        "cloudwatch:PutMetricAlarm",
        "applicationautoscaling",
        "PutScalingPolicy",
        "a target-tracking policy creates its alarms with the caller's permissions",
    ),
    (
        "cloudwatch:DescribeAlarms",
        "applicationautoscaling",
        "PutScalingPolicy",
        "a target-tracking policy creates its alarms with the caller's permissions",
    ),
    (
        "rds:CreateDBSnapshot",
        "rds",
        "DeleteDBInstance",
        "an instance deleted with a final snapshot creates that snapshot",
    ),
    (
        "cloudwatch:DeleteAlarms",
        "applicationautoscaling",
        "DeleteScalingPolicy",
        "deleting a target-tracking policy deletes its alarms",
    ),
];

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Operation name by snake-case method, for each SDK crate in `Cargo.lock` that `PREFIXES`
/// knows, read from the crate's source in cargo's registry.
fn catalogue() -> BTreeMap<String, BTreeMap<String, String>> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let package =
        Regex::new(r#"name = "aws-sdk-([a-z0-9]+)"\nversion = "([^"]+)""#).expect("regex");
    let op_name = Regex::new(r#"Metadata::new\(\s*"(\w+)""#).expect("regex");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let registries: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .unwrap_or_else(|e| panic!("cargo's registry sources under {cargo_home:?}: {e}"))
        .map(|entry| entry.expect("registry entry").path())
        .collect();
    let mut catalogue = BTreeMap::new();
    for found in package.captures_iter(&lock) {
        let (name, version) = (&found[1], &found[2]);
        if !PREFIXES.iter().any(|(c, _)| *c == name) {
            continue;
        }
        let dir = registries
            .iter()
            .map(|r| r.join(format!("aws-sdk-{name}-{version}/src/operation")))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| {
                panic!(
                    "aws-sdk-{name} {version}'s source is not in {registries:?}: run `cargo fetch`"
                )
            });
        let mut ops = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("operation dir") {
            let path = entry.expect("operation entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("operation source");
                if let Some(op) = op_name.captures(&text) {
                    let stem = path.file_stem().expect("stem").to_string_lossy();
                    ops.insert(stem.into_owned(), op[1].to_string());
                }
            }
        }
        assert!(ops.len() > 5, "no operations read from {dir:?}");
        catalogue.insert(name.to_string(), ops);
    }
    catalogue
}

/// A product source file, without its `#[cfg(test)]` module.
struct Source {
    path: PathBuf,
    text: String,
}

fn sources(dir: &Path, out: &mut Vec<Source>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            if name != "tests" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            let text = without_test_modules(&std::fs::read_to_string(&path).expect("source"));
            out.push(Source { path, text });
        }
    }
}

/// `text` without its `#[cfg(test)] mod … { … }` blocks (braces counted; a test module may sit
/// before production code), each replaced by as many newlines so line numbers stay true.
fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]\nmod ") {
        out.push_str(&rest[..at]);
        let module = &rest[at..];
        let Some(open) = module.find('{') else {
            // `mod tests;` — a file of its own, skipped by name.
            rest = &module[module.find('\n').map_or(module.len(), |n| n + 1)..];
            continue;
        };
        let mut depth = 0usize;
        let mut end = module.len();
        for (i, c) in module[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push_str(&"\n".repeat(module[..end].matches('\n').count()));
        rest = &module[end..];
    }
    out.push_str(rest);
    out
}

/// The module a file's `super` is: `dir/mod.rs` for a file beside it, `../mod.rs` for a
/// `mod.rs`.
fn parent_module(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    let dir = if path.file_name()? == "mod.rs" {
        dir.parent()?
    } else {
        dir
    };
    ["mod.rs", "lib.rs", "main.rs"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file() && p != path)
}

/// One SDK call found in the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    krate: String,
    operation: String,
    at: String,
}

/// Every SDK operation call in the product's sources.
fn calls(catalogue: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Call> {
    let mut files = Vec::new();
    for dir in SOURCES {
        sources(&root().join(dir), &mut files);
    }
    let mentions = Regex::new(r"aws_sdk_([a-z0-9]+)").expect("regex");
    // `logs: aws_sdk_cloudwatchlogs::Client`, `logs: counted_client!(ctx, aws_sdk_cloudwatchlogs)`,
    // `let s3 = aws_sdk_s3::Client::new(…)`.
    let field = Regex::new(
        r"\b([a-z_][a-z0-9_]*)\s*[:=]\s*&?(?:counted_client!\(\s*[\w.&]+\s*,\s*)?aws_sdk_([a-z0-9]+)",
    )
    .expect("regex");
    // `use aws_sdk_s3::Client;` … `client: Client`.
    let imported = Regex::new(r"use aws_sdk_([a-z0-9]+)::Client;").expect("regex");
    let typed = Regex::new(r"\b([a-z_][a-z0-9_]*)\s*:\s*&?Client\b").expect("regex");
    let method = Regex::new(r"\.\s*([a-z][a-z0-9_]*)\(\)").expect("regex");
    let definition = Regex::new(r"\bfn\s+([a-z][a-z0-9_]*)").expect("regex");
    let own: BTreeSet<String> = files
        .iter()
        .flat_map(|f| definition.captures_iter(&f.text).map(|c| c[1].to_string()))
        .collect();
    let mut found = Vec::new();
    let mut unclear = Vec::new();
    for file in &files {
        let parent = parent_module(&file.path)
            .map(|p| std::fs::read_to_string(p).expect("parent module"))
            .unwrap_or_default();
        let crates_in = |text: &str| -> BTreeSet<String> {
            mentions
                .captures_iter(text)
                .map(|c| c[1].to_string())
                .filter(|c| catalogue.contains_key(c))
                .collect()
        };
        let mut crates = crates_in(&file.text);
        if crates.is_empty() {
            crates = crates_in(&parent);
        }
        let mut fields = BTreeMap::new();
        for text in [&parent, &file.text] {
            for c in field.captures_iter(text) {
                fields.insert(c[1].to_string(), c[2].to_string());
            }
            if let Some(krate) = imported.captures(text) {
                for c in typed.captures_iter(text) {
                    fields.insert(c[1].to_string(), krate[1].to_string());
                }
            }
        }
        for m in method.captures_iter(&file.text) {
            let op = &m[1];
            let whole = m.get(0).expect("match");
            let rest = &file.text[whole.end()..];
            let known: Vec<&String> = catalogue
                .iter()
                .filter(|(_, ops)| ops.contains_key(op))
                .map(|(k, _)| k)
                .collect();
            if known.is_empty() {
                continue;
            }
            let line = file.text[..whole.start()].lines().count().max(1);
            let at = format!(
                "{}:{line}",
                file.path
                    .strip_prefix(root())
                    .unwrap_or(&file.path)
                    .display()
            );
            let before = file.text[..whole.start()].trim_end();
            let receiver: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let by_receiver = fields
                .get(&receiver)
                .filter(|k| catalogue[*k].contains_key(op));
            // A method of our own that shares an operation's name (`ctx.tag_policy()`) counts
            // only when called on an SDK client or sent before its statement ends.
            if own.contains(op) && by_receiver.is_none() {
                match (rest.find(".send()"), rest.find(';')) {
                    (Some(send), Some(end)) if send < end => {}
                    (Some(_), None) => {}
                    _ => continue,
                }
            }
            let candidates: Vec<&String> = match by_receiver {
                Some(k) => vec![k],
                None => crates
                    .iter()
                    .filter(|k| catalogue[*k].contains_key(op))
                    .collect(),
            };
            match candidates.as_slice() {
                [k] => found.push(Call {
                    krate: (*k).clone(),
                    operation: catalogue[*k][op].clone(),
                    at,
                }),
                _ => unclear.push(format!(
                    "{at}: `.{op}()` is an operation of {known:?}; cannot tell which client \
                     `{receiver}` is (name the client in a field or `let` typed \
                     `aws_sdk_…::Client`)"
                )),
            }
        }
    }
    assert!(
        unclear.is_empty(),
        "AWS calls this test cannot attribute:\n{}",
        unclear.join("\n")
    );
    found.sort();
    found
}

/// The IAM actions AWS authorises `operation` of `krate` with.
fn actions_of(krate: &str, operation: &str) -> Vec<String> {
    if let Some((_, _, actions)) = RENAMED
        .iter()
        .find(|(k, op, _)| *k == krate && *op == operation)
    {
        return actions.iter().map(|a| a.to_string()).collect();
    }
    let prefix = PREFIXES
        .iter()
        .find(|(k, _)| *k == krate)
        .map(|(_, p)| *p)
        .expect("known crate");
    vec![format!("{prefix}:{operation}")]
}

/// A statement's actions.
fn statement_actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list
            .iter()
            .map(|a| a.as_str().expect("action is a string").to_string())
            .collect(),
        other => panic!("statement {} has no Action: {other}", statement["Sid"]),
    }
}

fn policy() -> Value {
    let path = root().join("docs/iam-policy.json");
    let text = std::fs::read_to_string(&path).expect("docs/iam-policy.json");
    serde_json::from_str(&text).expect("docs/iam-policy.json is JSON")
}

#[test]
fn the_policy_allows_exactly_what_the_code_calls() {
    let catalogue = catalogue();
    let calls = calls(&catalogue);
    // The scan must see the calls every stack makes; an empty scan proves nothing.
    for (krate, op) in [
        ("sqs", "CreateQueue"),
        ("ecs", "CreateService"),
        ("s3", "PutObject"),
        ("dynamodb", "TransactWriteItems"),
        ("cloudwatchlogs", "FilterLogEvents"),
    ] {
        assert!(
            calls.iter().any(|c| c.krate == krate && c.operation == op),
            "the scan did not find {krate} {op}: {calls:#?}"
        );
    }

    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in &calls {
        for action in actions_of(&call.krate, &call.operation) {
            needed
                .entry(action)
                .or_default()
                .push(format!("{} ({})", call.at, call.operation));
        }
    }
    for (action, krate, op, why) in IMPLIED {
        assert!(
            calls
                .iter()
                .any(|c| c.krate == *krate && c.operation == *op),
            "{action} is kept for {krate} {op} ({why}), which the code no longer calls: remove \
             it from docs/iam-policy.json and IMPLIED"
        );
        needed
            .entry(action.to_string())
            .or_default()
            .push(format!("implied by {krate} {op}: {why}"));
    }

    let policy = policy();
    let statements = policy["Statement"].as_array().expect("Statement list");
    let mut allowed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut denied = BTreeSet::new();
    let mut sids = BTreeSet::new();
    for statement in statements {
        let sid = statement["Sid"]
            .as_str()
            .expect("every statement has a Sid");
        assert!(sids.insert(sid), "Sid {sid} is used twice");
        assert!(
            statement.get("Resource").is_some(),
            "statement {sid} has no Resource"
        );
        for action in statement_actions(statement) {
            assert!(
                !action.contains('*'),
                "statement {sid} lists {action}: name exact actions, never wildcards"
            );
            match statement["Effect"].as_str() {
                Some("Allow") => allowed.entry(action).or_default().push(sid.to_string()),
                Some("Deny") => {
                    denied.insert(action);
                }
                other => panic!("statement {sid} has Effect {other:?}"),
            }
        }
    }

    let missing: Vec<String> = needed
        .iter()
        .filter(|(action, _)| !allowed.contains_key(*action))
        .map(|(action, at)| format!("{action}  (called at {})", at.join(", ")))
        .collect();
    let unused: Vec<String> = allowed
        .iter()
        .filter(|(action, _)| !needed.contains_key(*action))
        .map(|(action, sids)| format!("{action}  (statement {})", sids.join(", ")))
        .collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "docs/iam-policy.json is out of step with the code.\n\
         Called but not allowed (add to the policy):\n  {}\n\
         Allowed but never called (remove from the policy, or add to IMPLIED with the call \
         that needs it):\n  {}",
        missing.join("\n  "),
        unused.join("\n  ")
    );
    for action in &denied {
        assert!(
            allowed.contains_key(action),
            "{action} is denied but never allowed: the Deny guards nothing"
        );
    }
}

#[test]
fn scoped_actions_are_not_also_granted_unscoped() {
    let policy = policy();
    let statements = policy["Statement"].as_array().expect("Statement list");
    let unscoped = |s: &&Value| s.get("Condition").is_none() && s["Resource"] == "*";
    let everywhere: BTreeSet<String> = statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .filter(unscoped)
        .flat_map(statement_actions)
        .collect();
    let mut scoped = 0;
    for statement in statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .filter(|s| !unscoped(s))
    {
        for action in statement_actions(statement) {
            scoped += 1;
            assert!(
                !everywhere.contains(&action),
                "{action} is scoped in statement {} but also granted on every resource \
                 elsewhere, which makes the scope moot",
                statement["Sid"]
            );
        }
    }
    assert!(
        scoped > 10,
        "the policy scopes almost nothing ({scoped} actions)"
    );
}

#[test]
fn test_modules_are_left_out_wherever_they_sit() {
    let text = "fn a() {}\n#[cfg(test)]\nmod holder_tests {\n    fn t() { x.create_queue().send(); }\n}\nfn b() { c.delete_queue().send(); }\n";
    let kept = without_test_modules(text);
    assert!(!kept.contains("create_queue"), "{kept}");
    assert!(kept.contains("delete_queue"), "{kept}");
    assert_eq!(kept.lines().count(), text.lines().count(), "{kept}");
}
