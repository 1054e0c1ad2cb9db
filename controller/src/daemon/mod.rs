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
pub mod shard;

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{applier, Config as QueueConfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use panka_crds::resource::Stack;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::aws::{load_sdk_config, AwsSettings};
use crate::budget::Budget;
use crate::config::Config;
use crate::kubernetes::{crd, lease, Kube, FINALIZER, MANAGED_BY};
use crate::reconcile::metrics::Metrics;
use crate::reconcile::{
    error_policy, reconcile, Context, Settings, StackSource, APPROVE_ANNOTATION,
};
use crate::source::git::{GitCredentials, GitSource};
pub use args::{Args, LogFormat, SourceKind};
use shard::Shard;

/// How long CRD mode waits after the last change to a Stack's resources before a pass.
const CRD_DEBOUNCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag the mode needs is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// CRD mode without Kubernetes.
    #[error("--source crd reads custom resources: it cannot run with --no-kubernetes")]
    CrdNeedsKubernetes,
    /// `--shard` does not resolve.
    #[error("{0}")]
    Shard(String),
    /// The Kubernetes API cannot be used.
    #[error("Kubernetes: {0} (outside a cluster, set KUBECONFIG, or run with --no-kubernetes)")]
    Kubernetes(String),
    /// Another replica took the leader lease.
    #[error(
        "lost the leader lease to another replica; exiting so a restart makes this one a standby"
    )]
    LeaseLost,
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
    for env in &args.environments {
        panka_core::keys::check_name("environment", env)
            .map_err(|e| StartError::Environment(e.to_string()))?;
    }
    let git_url = match args.source {
        SourceKind::Git => {
            let url = args.repo_url.clone().ok_or(StartError::Missing(
                "--repo-url (PANKA_REPO_URL): git mode needs the deployment repository",
            ))?;
            if args.environments.is_empty() {
                return Err(StartError::Missing(
                    "--environment (PANKA_ENVIRONMENTS): git mode needs the environments it owns",
                ));
            }
            Some(url)
        }
        SourceKind::Crd if args.no_kubernetes => return Err(StartError::CrdNeedsKubernetes),
        SourceKind::Crd => None,
    };
    let pod_name = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| Some(gethostname::gethostname().to_string_lossy().into_owned()));
    let shard = match args.shard {
        Some(spec) => Shard::resolve(spec, pod_name.as_deref()).map_err(StartError::Shard)?,
        None => Shard::ALL,
    };
    let config = Config::load(args.config.as_deref())?;

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
    let webhook_task = match (args.webhook_addr, args.source) {
        (Some(addr), SourceKind::Git) => {
            let secret = webhook_secret(&args)?;
            let hook = http::webhook(http::Webhook {
                secret,
                branch: args.branch.clone(),
                fetch_now: fetch_now.clone(),
            });
            Some(listen(addr, hook, shutdown.clone()).await?)
        }
        _ => None,
    };

    let kube = if args.no_kubernetes {
        None
    } else {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| StartError::Kubernetes(e.to_string()))?;
        let namespace = args
            .namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Some((client, namespace))
    };
    let actor = format!(
        "panka-controller@{}",
        gethostname::gethostname().to_string_lossy()
    );

    // Only the leader of the shard acts; a standby is ready (to take over) meanwhile.
    let mut leadership = None;
    if let (Some((client, _)), false) = (&kube, args.no_leader_election) {
        ready.store(true, Ordering::Relaxed);
        // The Lease lives beside the pod (the chart grants leases there only), whatever
        // namespace is watched.
        let namespace = &std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let name = lease::lease_name(&args.lease_name, shard);
        let identity = pod_name.clone().unwrap_or_else(|| actor.clone());
        match lease::Leadership::acquire(
            client.clone(),
            namespace,
            &name,
            &identity,
            lease::Timing::default(),
            &shutdown,
        )
        .await
        .map_err(|e| StartError::Kubernetes(format!("leader election ({name}): {e}")))?
        {
            Some(l) => leadership = Some(l),
            None => {
                for task in [Some(probes_task), webhook_task].into_iter().flatten() {
                    task.abort();
                }
                return Ok(());
            }
        }
        ready.store(false, Ordering::Relaxed);
    }
    // Losing the lease stops the work like a SIGTERM, and the process then fails.
    let work = shutdown.child_token();
    let lost = Arc::new(AtomicBool::new(false));
    let leader_task = leadership.map(|mut l| {
        let (work, lost) = (work.clone(), lost.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = l.lost() => {
                    error!("lost the leader lease: stopping");
                    lost.store(true, Ordering::Relaxed);
                    work.cancel();
                }
                () = work.cancelled() => l.release().await,
            }
        })
    });

    let kube_adapter = kube
        .as_ref()
        .map(|(client, _)| Arc::new(Kube::new(client.clone(), pod_name.clone())));
    let settings = Settings {
        poll_interval: args.poll_interval,
        drift_interval: args.drift_interval,
        rollout_wait: args.rollout_wait,
        rollout_timeout: args.rollout_timeout,
        allow_destroy: args.allow_destroy,
        actor: actor.clone(),
    };
    let (queue_tx, queue_rx) = mpsc::unbounded_channel::<ObjectRef<Stack>>();
    let mut tasks = vec![probes_task];
    tasks.extend(webhook_task);
    tasks.extend(leader_task);

    let (source, store, triggers): (Arc<dyn StackSource>, _, _) = match (&git_url, &kube) {
        (Some(url), _) => {
            let cache = args.cache_dir.clone().unwrap_or_else(|| default_cache(url));
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
                GitSource::new(url, &args.branch, &args.path, &cache)?
                    .with_credentials(credentials)?,
            );
            let snapshot = Arc::new(poll::GitSnapshot::new(git));
            let (store, targets, triggers) = match (&kube, &kube_adapter) {
                (Some((client, namespace)), Some(adapter)) => {
                    let api: Api<Stack> = Api::namespaced(client.clone(), namespace);
                    let (store, triggers) = watch_stacks(
                        api,
                        watcher::Config::default()
                            .labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)),
                        shard,
                        args.environments.clone(),
                    );
                    let targets = poll::Targets::Kube {
                        kube: adapter.clone(),
                        namespace: namespace.clone(),
                        store: store.clone(),
                    };
                    (store, targets, Some(triggers))
                }
                _ => {
                    let (store, writer) = reflector::store::<Stack>();
                    (store, poll::Targets::Local(writer), None)
                }
            };
            let poller = poll::Poller {
                snapshot: snapshot.clone(),
                url: url.clone(),
                branch: args.branch.clone(),
                environments: args.environments.clone(),
                targets,
                shard,
                instance: args.lease_name.clone(),
                queue: queue_tx,
                interval: args.poll_interval,
                fetch_now,
                ready: ready.clone(),
                metrics: metrics.clone(),
                shutdown: work.clone(),
            };
            tasks.push(tokio::spawn(poller.run()));
            (snapshot, store, triggers)
        }
        (None, Some((client, namespace))) => {
            let scope = (!args.all_namespaces).then_some(namespace.as_str());
            let api: Api<Stack> = match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (store, triggers) = watch_stacks(
                api,
                watcher::Config::default(),
                shard,
                args.environments.clone(),
            );
            let owned = owner(shard, args.environments.clone());
            let crd = crd::CrdSource::start(
                client.clone(),
                scope,
                store.clone(),
                Arc::new(owned),
                queue_tx,
                work.clone(),
            );
            tasks.extend(crd.tasks);
            // No pass before every kind has been listed: a stack read from half-listed
            // resources would plan deleting the rest.
            tokio::select! {
                () = crd.ready => {}
                () = work.cancelled() => {}
            }
            ready.store(true, Ordering::Relaxed);
            (Arc::new(crd.source), store, Some(triggers))
        }
        (None, None) => return Err(StartError::CrdNeedsKubernetes),
    };
    let mut ctx = Context::new(
        source,
        backends,
        sdk,
        budget,
        settings,
        metrics.clone(),
        work.clone(),
    );
    if let Some(adapter) = kube_adapter {
        ctx = ctx.with_status(adapter);
    }
    let ctx = Arc::new(ctx);

    // The queue ends when the work stops: the applier then stops scheduling and lets the runs
    // in flight finish (they are cancelled too, and stop at their next safe point).
    let explicit = futures::stream::unfold(queue_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let queue = match triggers {
        Some(t) => futures::stream::select(explicit, t).boxed(),
        None => explicit.boxed(),
    }
    .map(Ok::<_, Infallible>)
    .take_until(work.clone().cancelled_owned());

    info!(
        source = ?args.source,
        repo = %git_url.as_deref().map(crate::source::git::redact_url).unwrap_or_default(),
        branch = %args.branch,
        environments = ?args.environments,
        poll = ?args.poll_interval,
        drift = ?args.drift_interval,
        concurrency = args.concurrency,
        metrics = %args.metrics_addr,
        shard = %shard,
        kubernetes = kube.is_some(),
        %actor,
        "panka-controller started"
    );
    let in_flight = metrics.in_flight.clone();
    let finalizing = kube
        .as_ref()
        .filter(|_| git_url.is_none())
        .map(|(c, _)| c.clone());
    let reconciles = applier(
        move |obj, ctx| {
            let in_flight = in_flight.clone();
            let finalizing = finalizing.clone();
            Box::pin(async move {
                in_flight.inc();
                let result = match finalizing {
                    Some(client) => crd::reconcile_with_finalizer(client, obj, ctx).await,
                    None => reconcile(obj, ctx).await,
                };
                in_flight.dec();
                result
            })
        },
        error_policy,
        ctx,
        store,
        queue,
        {
            let config = QueueConfig::default().concurrency(args.concurrency);
            if git_url.is_none() {
                // CRD mode: `kubectl apply -f` of a stack creates its resources one by one;
                // a pass waits until they have stopped arriving for a moment.
                config.debounce(CRD_DEBOUNCE)
            } else {
                config
            }
        },
    )
    .for_each(|result| async move {
        match result {
            Ok((obj, action)) => debug!(target = %obj.name, ?action, "reconciled"),
            Err(e) => debug!(error = %e, "reconcile ended with an error"),
        }
    });
    let deadline = async {
        work.cancelled().await;
        tokio::time::sleep(args.shutdown_timeout).await;
    };
    tokio::select! {
        () = reconciles => info!("every run stopped; locks released"),
        () = deadline => warn!(timeout = ?args.shutdown_timeout, "runs still going at the shutdown timeout: their locks expire with their lease"),
    }
    work.cancel();
    // The rest stops at once (the poller does not wait for the network); a task still going
    // after a grace second (a client that never finishes its request) is cut off — but the
    // lease is given back first, so a standby takes over at once.
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(6), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    if lost.load(Ordering::Relaxed) {
        return Err(StartError::LeaseLost);
    }
    info!("panka-controller stopped");
    Ok(())
}

/// Watches Stack objects through `api` into a store, and the stream of those worth a pass: a
/// new object, a new generation (spec), a new approval annotation, a deletion — never a
/// status write of our own. Only targets of `shard` (and of `environments`, when given) pass.
pub(crate) fn watch_stacks(
    api: Api<Stack>,
    config: watcher::Config,
    shard: Shard,
    environments: Vec<String>,
) -> (
    reflector::Store<Stack>,
    futures::stream::BoxStream<'static, ObjectRef<Stack>>,
) {
    let (store, writer) = reflector::store::<Stack>();
    let owned = owner(shard, environments);
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(worth_a_pass, Default::default())
        .filter_map(move |r| {
            std::future::ready(match r {
                Ok(obj) => owned(&obj).then_some(obj),
                Err(e) => {
                    warn!(error = %e, "watching Stack resources failed; retrying");
                    None
                }
            })
        })
        .map(|obj| ObjectRef::from_obj(&obj))
        .boxed();
    (store, stream)
}

/// Whether this replica acts on a Stack: its shard's, and of `environments` when given.
pub(crate) fn owner(
    shard: Shard,
    environments: Vec<String>,
) -> impl Fn(&Stack) -> bool + Send + Sync + 'static {
    move |obj: &Stack| {
        shard.owns(&obj.spec.stack, &obj.spec.environment)
            && (environments.is_empty() || environments.contains(&obj.spec.environment))
    }
}

/// What about a Stack object is worth a pass when it changes: its identity (a recreated
/// object), its generation, our finalizer (added, the watch brings the object back for its
/// first pass), its approval annotation and its deletion.
fn worth_a_pass(obj: &Stack) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.uid.hash(&mut h);
    obj.metadata.generation.hash(&mut h);
    obj.finalizers().iter().any(|f| f == FINALIZER).hash(&mut h);
    obj.metadata.deletion_timestamp.is_some().hash(&mut h);
    obj.annotations().get(APPROVE_ANNOTATION).hash(&mut h);
    Some(h.finish())
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
