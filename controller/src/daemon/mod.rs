//! The `panka-controller` process: flags → configuration → the git poller, the reconcile
//! queue (kube-runtime's `applier` over a hand-filled store), the HTTP endpoints, and a
//! graceful shutdown.
//!
//! SIGTERM (or Ctrl-C) stops taking work: the queue ends, every run in flight is cancelled at
//! its next safe point (state written, release recorded, lock released) and the process exits
//! once they are done, or after `--shutdown-timeout` (their leases then run out on their own).

pub mod args;
pub mod http;
pub mod poll;

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use kube::runtime::controller::{applier, Config as QueueConfig};
use kube::runtime::reflector::{self, ObjectRef};
use panka_crds::resource::Stack;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::aws::{load_sdk_config, AwsSettings};
use crate::budget::Budget;
use crate::config::Config;
use crate::reconcile::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile, Context, Settings};
use crate::source::git::{GitCredentials, GitSource};
pub use args::{Args, LogFormat};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Kubernetes mode was asked for.
    #[error("this build keeps status without Kubernetes only: run with --no-kubernetes (status then lives beside the state; `panka status` shows it)")]
    NeedsNoKubernetes,
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The repository cannot be used.
    #[error(transparent)]
    Git(#[from] crate::source::git::GitError),
    /// An address could not be listened on.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The webhook has no usable secret.
    #[error("the webhook needs a secret: set --webhook-secret-file or PANKA_WEBHOOK_SECRET ({0})")]
    WebhookSecret(String),
    /// An `--environment` is not a valid environment name.
    #[error("--environment: {0}")]
    Environment(String),
    /// The runtime could not start.
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The process: parses flags (and `PANKA_*`), starts logging, runs until SIGTERM.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&StartError::Runtime(e)),
    };
    let result = runtime.block_on(run(args));
    // A fetch stuck in libgit2 (no read timeout) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &StartError) -> ExitCode {
    error!(error = %e, "panka-controller could not start");
    eprintln!("panka-controller: {e}");
    ExitCode::FAILURE
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PANKA_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second subscriber (tests calling main twice) is not an error worth stopping for.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Runs the controller until SIGTERM/Ctrl-C.
pub async fn run(args: Args) -> Result<(), StartError> {
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        terminated().await;
        info!("stopping: no new work; in-flight runs stop at their next safe point");
        on_signal.cancel();
    });
    serve(args, shutdown).await
}

/// Runs the controller until `shutdown` is cancelled (tests cancel it themselves).
pub async fn serve(args: Args, shutdown: CancellationToken) -> Result<(), StartError> {
    if !args.no_kubernetes {
        return Err(StartError::NeedsNoKubernetes);
    }
    for env in &args.environments {
        panka_core::keys::check_name("environment", env)
            .map_err(|e| StartError::Environment(e.to_string()))?;
    }
    let config = Config::load(args.config.as_deref())?;
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| default_cache(&args.repo_url));
    let credentials = GitCredentials {
        token_file: args.git_token_file.clone(),
        // A token in the environment is used only when no file is given.
        token: std::env::var("PANKA_GIT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        username: Some(args.git_username.clone()),
        ssh_key: args.ssh_key_file.clone(),
        known_hosts: args.known_hosts.clone(),
    };
    let git = Arc::new(
        GitSource::new(&args.repo_url, &args.branch, &args.path, &cache)?
            .with_credentials(credentials)?,
    );

    let budget =
        Budget::new((args.aws_calls_per_second > 0.0).then_some(args.aws_calls_per_second));
    let base = load_sdk_config(&AwsSettings {
        profile: config.aws.profile.clone(),
        region: config.aws.region.clone(),
        endpoint_url: None,
    })
    .await;
    // State and locks stay outside the budget: a lease heartbeat must never queue behind a
    // sweep's calls to the same service.
    let backends = crate::backend::open_with(&config, Some(&base));
    let sdk = base.to_builder().http_client(budget.http_client()).build();
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let fetch_now = Arc::new(Notify::new());

    let probes = http::probes(http::Endpoints {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    let probes_task = listen(args.metrics_addr, probes, shutdown.clone()).await?;
    let webhook_task = match args.webhook_addr {
        Some(addr) => {
            let secret = webhook_secret(&args)?;
            let hook = http::webhook(http::Webhook {
                secret,
                branch: args.branch.clone(),
                fetch_now: fetch_now.clone(),
            });
            Some(listen(addr, hook, shutdown.clone()).await?)
        }
        None => None,
    };

    let snapshot = Arc::new(poll::GitSnapshot::new(git));
    let actor = format!(
        "panka-controller@{}",
        gethostname::gethostname().to_string_lossy()
    );
    let ctx = Arc::new(Context::new(
        snapshot.clone(),
        backends,
        sdk,
        budget,
        Settings {
            poll_interval: args.poll_interval,
            drift_interval: args.drift_interval,
            rollout_wait: args.rollout_wait,
            allow_destroy: args.allow_destroy,
            actor: actor.clone(),
        },
        metrics.clone(),
        shutdown.clone(),
    ));

    let (store, writer) = reflector::store::<Stack>();
    let (queue_tx, queue_rx) = mpsc::unbounded_channel::<ObjectRef<Stack>>();
    let poller = poll::Poller {
        snapshot,
        url: args.repo_url.clone(),
        branch: args.branch.clone(),
        environments: args.environments.clone(),
        writer,
        queue: queue_tx,
        interval: args.poll_interval,
        fetch_now,
        ready,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let poller_task = tokio::spawn(poller.run());
    // The queue ends at shutdown: the applier then stops scheduling and lets the runs in
    // flight finish (they are cancelled too, and stop at their next safe point).
    let queue = futures::stream::unfold(queue_rx, |mut rx| async move {
        rx.recv().await.map(|r| (Ok::<_, Infallible>(r), rx))
    })
    .take_until(shutdown.clone().cancelled_owned());

    info!(
        repo = %crate::source::git::redact_url(&args.repo_url),
        branch = %args.branch,
        environments = ?args.environments,
        poll = ?args.poll_interval,
        drift = ?args.drift_interval,
        concurrency = args.concurrency,
        metrics = %args.metrics_addr,
        %actor,
        "panka-controller started"
    );
    let in_flight = metrics.in_flight.clone();
    let reconciles = applier(
        move |obj, ctx| {
            let in_flight = in_flight.clone();
            Box::pin(async move {
                in_flight.inc();
                let result = reconcile(obj, ctx).await;
                in_flight.dec();
                result
            })
        },
        error_policy,
        ctx,
        store,
        queue,
        QueueConfig::default().concurrency(args.concurrency),
    )
    .for_each(|result| async move {
        match result {
            Ok((obj, action)) => debug!(target = %obj.name, ?action, "reconciled"),
            Err(e) => debug!(error = %e, "reconcile ended with an error"),
        }
    });
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(args.shutdown_timeout).await;
    };
    tokio::select! {
        () = reconciles => info!("every run stopped; locks released"),
        () = deadline => warn!(timeout = ?args.shutdown_timeout, "runs still going at the shutdown timeout: their locks expire with their lease"),
    }
    shutdown.cancel();
    // The rest stops at once (the poller does not wait for the network); a task still going
    // after a grace second (a client that never finishes its request) is cut off.
    for task in [Some(poller_task), Some(probes_task), webhook_task]
        .into_iter()
        .flatten()
    {
        let abort = task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(1), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    info!("panka-controller stopped");
    Ok(())
}

async fn listen(
    addr: std::net::SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    info!(addr = %local, "listening");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP server stopped");
        }
    }))
}

fn webhook_secret(args: &Args) -> Result<http::WebhookSecret, StartError> {
    let bytes = match (
        &args.webhook_secret_file,
        std::env::var("PANKA_WEBHOOK_SECRET"),
    ) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| StartError::WebhookSecret(format!("{}: {e}", path.display())))?,
        (None, Ok(value)) => value.into_bytes(),
        (None, Err(_)) => return Err(StartError::WebhookSecret("none given".into())),
    };
    let secret = http::WebhookSecret::new(bytes);
    if secret.is_empty() {
        return Err(StartError::WebhookSecret("it is empty".into()));
    }
    Ok(secret)
}

/// `~/.cache/panka/repos/{hash of the URL}`: one clone per repository.
fn default_cache(url: &str) -> PathBuf {
    let hash = hex::encode(Sha256::digest(url.as_bytes()));
    crate::config::home_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/panka/repos")
        .join(&hash[..16])
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
