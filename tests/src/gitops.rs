//! What the controller's end-to-end tests stand on: a `git daemon` on loopback, small
//! deployment repositories written for the case at hand, the `panka-controller` process
//! (started with `--no-kubernetes`, stopped with SIGTERM), and plain HTTP to its endpoints.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::emulator::emulator;

/// A free TCP port on 127.0.0.1 (free when asked; bound by the caller soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `git daemon` serving the repositories below `base` on a free port of 127.0.0.1; killed on
/// drop.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl GitDaemon {
    /// Starts it and waits until it listens.
    ///
    /// # Panics
    /// When git cannot start it (git and git-daemon are installed by `scripts/setup`).
    pub fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .expect("git daemon starts (git is installed by scripts/setup)");
        wait_for_port(port, "git daemon");
        GitDaemon { child, port }
    }

    /// `git://127.0.0.1:PORT/{name}`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a small stack of queues looks like.
#[derive(Debug, Clone)]
pub struct QueueStack<'a> {
    /// Stack name.
    pub name: &'a str,
    /// Environments it deploys to.
    pub environments: &'a [&'a str],
    /// `drift.mode`.
    pub drift_mode: &'a str,
    /// `approval.environments`.
    pub approval: &'a [&'a str],
    /// `VERSION`.
    pub version: &'a str,
    /// The queue's `visibilityTimeout`.
    pub visibility_timeout: u32,
}

/// Writes `stack` below `root/stacks/` (one service `app`, one SQS component `queue`):
/// a stack that applies in seconds, for the controller's cases that need many applies.
pub fn write_queue_stack(root: &Path, stack: &QueueStack<'_>) {
    let dir = root.join("stacks").join(stack.name);
    let name = stack.name;
    let files = [
        (
            "stack.yaml".to_owned(),
            format!(
                "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata:\n  name: {name}\nspec:\n  provider:\n    name: aws\n    region: us-east-1\n  environments: [{}]\n",
                stack.environments.join(", ")
            ),
        ),
        (
            "infra/defaults.yaml".to_owned(),
            format!(
                "apiVersion: infra.panka.io/v1\nkind: StackInfra\nmetadata:\n  name: defaults\n  stack: {name}\nspec:\n  drift:\n    mode: {}\n  approval:\n    environments: [{}]\n",
                stack.drift_mode,
                stack.approval.join(", ")
            ),
        ),
        (
            "services/app/service.yaml".to_owned(),
            format!("apiVersion: core.panka.io/v1\nkind: Service\nmetadata:\n  name: app\n  stack: {name}\nspec: {{}}\n"),
        ),
        (
            "services/app/components/queue/sqs.yaml".to_owned(),
            format!(
                "apiVersion: components.panka.io/v1\nkind: SQS\nmetadata:\n  name: queue\n  service: app\n  stack: {name}\nspec:\n  type: standard\n  visibilityTimeout: {}\n",
                stack.visibility_timeout
            ),
        ),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    for env in stack.environments {
        let path = dir.join("environments").join(env).join("variables.yaml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            path,
            format!(
                "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata:\n  name: {env}\n  stack: {name}\n  environment: {env}\nspec:\n  VERSION: {}\n",
                stack.version
            ),
        )
        .expect("write");
    }
}

/// The `panka-controller` binary beside `panka_bin` (the CLI tests' `CARGO_BIN_EXE_panka`).
/// `cargo test --workspace` (what `scripts/test` and CI run) builds it with the same features as
/// the tests; only when it is missing is it built here (a `cargo build` of the package alone
/// resolves other features and would rebuild much of the dependency graph). Running only the
/// CLI's tests after changing the controller: `cargo build -p panka-controller` first.
///
/// # Panics
/// When it is missing and cargo cannot build it.
pub fn controller_binary(panka_bin: &str) -> PathBuf {
    let bin = Path::new(panka_bin).with_file_name("panka-controller");
    if bin.exists() {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "panka-controller",
            "--bin",
            "panka-controller",
        ])
        .current_dir(crate::emulator::repo_root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "failed to build panka-controller:\n{}",
        crate::output::text(&out)
    );
    bin
}

/// A running `panka-controller`, killed on drop if still running.
#[derive(Debug)]
pub struct Controller {
    child: Child,
    /// `127.0.0.1:PORT` of `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: String,
    /// Its log file (stderr).
    pub log: PathBuf,
}

impl Controller {
    /// Starts `bin` with `args` (after `--no-kubernetes --metrics-addr …`) as a `panka` of
    /// [`crate::emulator::panka_command`] would run: `HOME` is `home` (where `panka init` wrote
    /// the backends), the emulator's endpoint and credentials, no `PANKA_*` of the caller's.
    /// Waits until `/healthz` answers.
    pub fn start(bin: &Path, home: &Path, args: &[&str]) -> Controller {
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = home.join(format!("controller-{port}.log"));
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PANKA_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", home)
            .env_remove("AWS_PROFILE")
            .env("USER", "controller")
            .env("PANKA_LOG", "info,panka_controller=debug")
            .args(["--no-kubernetes", "--metrics-addr", &metrics_addr])
            .args(["--cache-dir"])
            .arg(home.join(format!("cache-{port}")))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in emulator().env() {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("panka-controller starts");
        let mut c = Controller {
            child,
            metrics_addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("panka-controller exited ({status}):\n{}", c.log_text());
            }
            if get(&c.metrics_addr, "/healthz").is_ok_and(|(code, _)| code == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "panka-controller did not come up:\n{}",
                c.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        let (code, body) = get(&self.metrics_addr, "/metrics").expect("/metrics answers");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// The value of the metric line `name{labels}` (exactly as printed), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM and waits (at most `bound`) for the exit.
    ///
    /// # Panics
    /// When it does not exit in time.
    pub fn terminate(&mut self, bound: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "panka-controller did not stop within {bound:?} of SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr`: (status, body).
///
/// # Errors
/// When the connection fails.
pub fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path, &[], b"")
}

/// A plain HTTP/1.1 request (`Connection: close`): (status, body).
///
/// # Errors
/// When the connection fails.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Posts a GitHub push event for `branch` to the controller's webhook at `addr`, signed with
/// `secret`; the status code.
///
/// # Panics
/// When the webhook does not answer.
pub fn push_webhook(addr: &str, secret: &[u8], branch: &str) -> u16 {
    let body = format!(r#"{{"ref":"refs/heads/{branch}"}}"#);
    let signature = sign(secret, body.as_bytes());
    request(
        addr,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
        ],
        body.as_bytes(),
    )
    .expect("the webhook answers")
    .0
}

/// GitHub's `X-Hub-Signature-256` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Polls `check` every 200 ms until it gives `Some`, for at most `bound`.
///
/// # Panics
/// When it never does, with `what` and `context()`'s text.
pub fn eventually<T>(
    bound: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {bound:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
