//! The local AWS emulator (moto) for tests: started once per test binary through
//! `scripts/aws-emulator` (which creates `.venv/` on first use), on a free port, and stopped when
//! the test binary exits (the emulator watches our pid). Tests share it and isolate themselves
//! with unique bucket and table names ([`unique_name`]).
//!
//! Never skipped: when the emulator cannot start, the test fails and says why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use panka_controller::backend::{self, Backends, CreateOptions};
use panka_controller::config::{Config, LocksConfig, StateConfig};

/// Region every test uses.
pub const REGION: &str = "us-east-1";

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Directory holding its pid, endpoint and log files.
    pub dir: PathBuf,
}

static EMULATOR: OnceLock<Result<Emulator, String>> = OnceLock::new();

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The shared emulator, started on first use.
///
/// # Panics
/// When it cannot be started (with the script's output), so no test silently skips.
pub fn emulator() -> &'static Emulator {
    match EMULATOR.get_or_init(start) {
        Ok(e) => e,
        Err(msg) => panic!("{msg}"),
    }
}

fn start() -> Result<Emulator, String> {
    let dir = tempfile::Builder::new()
        .prefix("panka-emulator-")
        .tempdir()
        .map_err(|e| format!("failed to create a directory for the emulator: {e}"))?
        .keep();
    let script = repo_root().join("scripts").join("aws-emulator");
    let endpoint_file = dir.join("endpoint");
    let out = Command::new(&script)
        .arg("start")
        .arg("--endpoint-file")
        .arg(&endpoint_file)
        .arg("--pid-file")
        .arg(dir.join("pid"))
        .arg("--log-file")
        .arg(dir.join("emulator.log"))
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .output()
        .map_err(|e| format!("failed to run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "failed to start the AWS emulator with {} start ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let endpoint = std::fs::read_to_string(&endpoint_file)
        .map_err(|e| format!("failed to read {}: {e}", endpoint_file.display()))?
        .trim()
        .to_owned();
    Ok(Emulator { endpoint, dir })
}

/// A unique lowercase name usable as a bucket or table name.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

impl Emulator {
    /// An SDK configuration pointing at the emulator with dummy credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "panka-tests",
            ))
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .load()
            .await
    }

    /// Environment for a `panka` process that should talk to the emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// A fresh bucket and lock table (created with `backend create`), and backends on them.
    ///
    /// # Panics
    /// When creating them fails.
    pub async fn fresh_backends(&self) -> AwsBackends {
        let sdk = self.sdk_config().await;
        let bucket = unique_name("panka-state");
        let table = unique_name("panka-locks");
        let s3 = panka_controller::aws::s3_client(&sdk, None);
        let dynamodb = panka_controller::aws::dynamodb_client(&sdk, None);
        backend::create(
            &s3,
            &dynamodb,
            &CreateOptions {
                bucket: bucket.clone(),
                table: table.clone(),
                allow_unversioned: false,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("failed to create the test backend: {e}"));
        let config = Config {
            state: StateConfig::S3 {
                bucket: bucket.clone(),
                region: None,
            },
            locks: LocksConfig::DynamoDb {
                table: table.clone(),
                region: None,
            },
            aws: Default::default(),
            source: None,
        };
        let backends = backend::open_with(&config, Some(&sdk));
        AwsBackends {
            backends,
            bucket,
            table,
            s3,
            dynamodb,
        }
    }
}

/// Backends on a fresh bucket and table, with raw clients for direct checks.
#[derive(Clone)]
pub struct AwsBackends {
    /// The panka backends.
    pub backends: Backends,
    /// The bucket.
    pub bucket: String,
    /// The table.
    pub table: String,
    /// Raw S3 client.
    pub s3: aws_sdk_s3::Client,
    /// Raw DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// Backends in a fresh local directory (kept alive by the returned guard).
pub fn local_backends() -> (Backends, Arc<tempfile::TempDir>) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("failed to create a temporary directory: {e}"),
    };
    let config = Config {
        state: StateConfig::Local {
            dir: dir.path().to_path_buf(),
        },
        locks: LocksConfig::Local {
            dir: dir.path().to_path_buf(),
        },
        aws: Default::default(),
        source: None,
    };
    (backend::open_with(&config, None), Arc::new(dir))
}

/// A driver context on the emulator for a fresh, uniquely named stack in `development`, so
/// tests sharing the emulator never share AWS names.
pub fn driver_ctx(sdk: &SdkConfig, adopt: bool) -> panka_controller::driver::Ctx {
    panka_controller::driver::Ctx {
        sdk: sdk.clone(),
        naming: panka_core::naming::Naming::new(unique_name("t"), "development"),
        extra_tags: std::collections::BTreeMap::new(),
        infra: Default::default(),
        adopt,
        calls: panka_controller::driver::CallCounter::default(),
    }
}

/// `ctx` for a stack whose StackInfra `ignoreTags` lists `patterns`.
pub fn ignoring_tags(
    ctx: &panka_controller::driver::Ctx,
    patterns: &[&str],
) -> panka_controller::driver::Ctx {
    let mut ctx = ctx.clone();
    ctx.infra.ignore_tags = patterns.iter().map(|p| p.to_string()).collect();
    ctx
}

/// The tags a person adds by hand in the tag tests: one foreign to panka (`owner`, which panka
/// removes) and two matching the patterns of [`HAND_IGNORED`] (which panka keeps).
pub const HAND_TAGS: [(&str, &str); 3] = [
    ("owner", "someone"),
    ("CostCenter", "42"),
    ("org:unit", "payments"),
];

/// The `ignoreTags` patterns of the tag tests.
pub const HAND_IGNORED: [&str; 2] = ["CostCenter", "org:*"];

/// Checks a resource's tags after panka converged them following [`HAND_TAGS`]: panka's own
/// are there, `owner` is gone, the ignored ones are kept.
///
/// # Panics
/// When they are not so.
pub fn assert_converged_tags(tags: &std::collections::BTreeMap<String, String>, what: &str) {
    assert_eq!(
        tags.get("panka:managed-by").map(String::as_str),
        Some("panka"),
        "{what}: panka's tags are set: {tags:?}"
    );
    assert!(
        !tags.contains_key("owner"),
        "{what}: the tag added by hand is removed: {tags:?}"
    );
    assert_eq!(
        tags.get("CostCenter").map(String::as_str),
        Some("42"),
        "{what}: an ignored tag is kept: {tags:?}"
    );
    assert_eq!(
        tags.get("org:unit").map(String::as_str),
        Some("payments"),
        "{what}: a tag matching an ignored pattern is kept: {tags:?}"
    );
}

/// A component of the example repository's `user-platform` stack, resolved for development.
///
/// # Panics
/// When the example does not resolve (a broken example is a test failure).
pub fn example_component(service: &str, component: &str) -> panka_core::model::DesiredComponent {
    let root = repo_root().join("examples/deployment-repo");
    let loaded = match panka_controller::validate::load_stack(&root, "user-platform") {
        Ok(l) => l,
        Err((d, _)) => panic!("the example does not load: {d}"),
    };
    let options = panka_core::resolve::Options::default();
    match panka_controller::validate::plan_input(&loaded, "development", &options) {
        Ok((desired, _)) => {
            let id = panka_core::model::ComponentId::new(service, component);
            match desired.components.get(&id) {
                Some(c) => c.clone(),
                None => panic!("the example has no {id}"),
            }
        }
        Err(d) => panic!("the example does not resolve: {d}"),
    }
}

/// Creates, when absent, every Secrets Manager secret the stack's MicroServices and Workers
/// reference by name (what an operator does before a first deployment; panka only reads ARNs).
/// Values are placeholders in the JSON shape the examples' `key`s expect.
///
/// # Panics
/// When the emulator refuses a secret for another reason than "already exists".
pub async fn ensure_secrets(sdk: &SdkConfig, stack: &panka_core::model::DesiredStack) {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    for name in panka_core::stack::secret_refs(stack) {
        if name.starts_with("arn:") {
            continue;
        }
        match sm
            .create_secret()
            .name(&name)
            .secret_string(r#"{"password":"not-a-real-password-1"}"#)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) => {}
            Err(e) => panic!("cannot create secret {name}: {e:?}"),
        }
    }
}

/// A `panka` command (the binary at `bin`, i.e. `env!("CARGO_BIN_EXE_panka")` of the CLI's tests)
/// isolated from the caller's setup: `HOME` is `home` (no `~/.panka/config.yaml` of the
/// developer's), no `PANKA_*` or `AWS_PROFILE` from the environment, the user `tester`, and the
/// emulator's endpoint and dummy credentials.
pub fn panka_command(bin: &str, home: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PANKA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home)
        .env_remove("AWS_PROFILE")
        .env("USER", "tester");
    for (k, v) in emulator().env() {
        cmd.env(k, v);
    }
    cmd
}

/// `panka init` and `panka backend create` (the binary at `bin`, run as [`panka_command`] in
/// `home`) on a fresh bucket and lock table of the emulator, named after `prefix`.
///
/// # Panics
/// When either command fails.
pub fn panka_backend(bin: &str, home: &std::path::Path, prefix: &str) {
    let (bucket, table) = (unique_name(prefix), unique_name(prefix));
    for args in [
        vec![
            "init",
            "--region",
            REGION,
            "--bucket",
            &bucket,
            "--table",
            &table,
            "--non-interactive",
        ],
        vec!["backend", "create", "--bucket", &bucket, "--table", &table],
    ] {
        let out = panka_command(bin, home)
            .args(&args)
            .output()
            .expect("panka runs");
        assert!(out.status.success(), "{}", crate::output::text(&out));
    }
}
