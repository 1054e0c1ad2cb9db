//! One module per command. Each parses nothing itself (clap did) and holds no business logic:
//! it hands the arguments to [`panka_controller::session`] (or the engine) and renders what
//! comes back. Commands depend on this module, the session and `render`, never on each other.

pub mod approve;
pub mod backend;
pub mod deploy;
pub mod drift;
pub mod export;
pub mod graph;
pub mod health;
pub mod history;
pub mod init;
pub mod logs;
pub mod metrics;
pub mod reference;
pub mod rollback;
pub mod state;
pub mod status;
pub mod unlock;
pub mod validate;
pub mod version;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use panka_controller::backend::Backends;
use panka_controller::config::Config;
use panka_controller::session::{self, Session, Target};
use panka_controller::validate::{checked_input, load_stack, plan_input};
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use tokio_util::sync::CancellationToken;

use crate::app::GlobalArgs;
use crate::render::{problems, warnings};

/// The deployment repository root: `--repo`, or the nearest ancestor of the working directory
/// that holds `stacks/`.
pub fn repo_root(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(repo) = &global.repo {
        anyhow::ensure!(
            repo.join("stacks").is_dir(),
            "{} holds no `stacks/` folder; pass --repo with the deployment repository root",
            repo.display()
        );
        return Ok(repo.clone());
    }
    let cwd = std::env::current_dir().context("failed to read the working directory")?;
    panka_controller::source::dir::find_repo_root(&cwd).with_context(|| {
        format!(
            "no deployment repository found: neither {} nor any parent holds a `stacks/` folder; pass --repo PATH",
            cwd.display()
        )
    })
}

/// `--var NAME=VALUE` pairs as resolve options.
pub fn resolve_options(vars: &[String]) -> anyhow::Result<panka_core::resolve::Options> {
    let vars = panka_core::resolve::parse_cli_vars(vars.iter().map(String::as_str))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok(panka_core::resolve::Options { vars })
}

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

/// The configuration (`--config` / `PANKA_CONFIG` / `~/.panka/config.yaml`, `PANKA_*`).
pub fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    Ok(Config::load(global.config.as_deref())?)
}

/// The configured state and lock backends (commands that need no stack's AWS region).
pub async fn open_backends(global: &GlobalArgs) -> anyhow::Result<Backends> {
    Ok(panka_controller::backend::open(&load_config(global)?).await)
}

/// The session of a resolved stack: the configured backends and the AWS configuration of the
/// stack's region.
pub async fn open_session(global: &GlobalArgs, desired: &DesiredStack) -> anyhow::Result<Session> {
    let config = load_config(global)?;
    Ok(Session::open(&config, &desired.provider.region).await)
}

/// What plan, apply, destroy, status and show share.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// Only this service (its lock scope); other services' outputs are read from state.
    #[arg(long)]
    pub service: Option<String>,
    /// Variable override, `NAME=VALUE`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Take over same-named AWS resources that lack panka's tags.
    #[arg(long)]
    pub adopt: bool,
}

/// A stack resolved from the repository, and what was asked of it.
pub struct Resolved {
    /// The desired stack for the environment asked for.
    pub desired: DesiredStack,
    /// Its waves.
    pub graph: Graph,
    /// The service, `--var`s, `--adopt` and the repository's commit, for the session.
    pub target: Target,
}

/// Resolves the repository without asking its policies (status, destroy, drift, rollback:
/// commands that read or remove what is deployed); prints problems and returns `None` when it
/// is invalid (no AWS call is made then).
pub fn resolve_target(global: &GlobalArgs, args: &TargetArgs) -> anyhow::Result<Option<Resolved>> {
    resolve(global, args, false)
}

/// Resolves the repository and has its policies judge it (plan, apply): prints their warnings;
/// prints problems — a `deny` among them — and returns `None` when it may not be deployed (no
/// AWS call is made, no lock taken then).
pub fn resolve_checked_target(
    global: &GlobalArgs,
    args: &TargetArgs,
) -> anyhow::Result<Option<Resolved>> {
    resolve(global, args, true)
}

fn resolve(
    global: &GlobalArgs,
    args: &TargetArgs,
    policies: bool,
) -> anyhow::Result<Option<Resolved>> {
    let root = repo_root(global)?;
    let options = resolve_options(&args.vars)?;
    let loaded = match load_stack(&root, &args.stack) {
        Ok(l) => l,
        Err((ds, sources)) => {
            eprintln!("{}", problems(&ds.iter().collect::<Vec<_>>(), &sources));
            return Ok(None);
        }
    };
    let resolved = if policies {
        checked_input(&loaded, &args.environment, &options).map(|checked| {
            if !checked.warnings.is_empty() {
                eprintln!("{}", warnings(&checked.warnings.iter().collect::<Vec<_>>()));
            }
            (checked.desired, checked.graph)
        })
    } else {
        plan_input(&loaded, &args.environment, &options)
    };
    let (desired, graph) = match resolved {
        Ok(resolved) => resolved,
        Err(ds) => {
            eprintln!(
                "{}",
                problems(&ds.iter().collect::<Vec<_>>(), &loaded.sources)
            );
            return Ok(None);
        }
    };
    if let Some(svc) = &args.service {
        anyhow::ensure!(
            desired.services.contains_key(svc),
            "stack `{}` has no service `{svc}`",
            desired.name
        );
    }
    let target = Target {
        service: args.service.clone(),
        adopt: args.adopt,
        overrides: options.vars,
        commit: session::repo_commit(&root),
        unpin: false,
    };
    Ok(Some(Resolved {
        desired,
        graph,
        target,
    }))
}

/// What `logs` and `metrics` read: one component of a stack/environment.
#[derive(Debug, Args)]
pub struct ComponentArgs {
    /// Stack.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// The component, `service/component` (a MicroService or Worker).
    #[arg(long, short = 'c', value_name = "SERVICE/COMPONENT")]
    pub component: String,
    /// Variable override, `NAME=VALUE`, when the stack needs one to resolve; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Resolves the repository and checks that the stack has the component; prints problems and
/// returns `None` when the repository is invalid (no AWS call is made then). The desired stack
/// gives the region its AWS resources live in.
pub fn resolve_component(
    global: &GlobalArgs,
    args: &ComponentArgs,
) -> anyhow::Result<Option<(DesiredStack, ComponentId)>> {
    let id = ComponentId::try_from(args.component.clone())
        .map_err(|e| anyhow::anyhow!("--component: {e}"))?;
    let target = TargetArgs {
        stack: args.stack.clone(),
        environment: args.environment.clone(),
        service: None,
        vars: args.vars.clone(),
        adopt: false,
    };
    let Some(Resolved { desired, .. }) = resolve_target(global, &target)? else {
        return Ok(None);
    };
    if !desired.components.contains_key(&id) {
        return Err(no_component(&desired, &id));
    }
    Ok(Some((desired, id)))
}

/// `--component` names nothing in the stack: says so, with the nearest name or the list.
pub(crate) fn no_component(
    desired: &panka_core::model::DesiredStack,
    id: &panka_core::model::ComponentId,
) -> anyhow::Error {
    let names: Vec<String> = desired
        .components
        .keys()
        .filter(|c| !c.service.starts_with('_'))
        .map(ToString::to_string)
        .collect();
    let wanted = id.to_string();
    let help = match panka_core::diag::suggest(&wanted, names.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("its components: {}", names.join(", ")),
    };
    anyhow::anyhow!("stack `{}` has no component `{id}`; {help}", desired.name)
}

/// A token cancelled on Ctrl-C (SIGINT) or SIGTERM: how a command that reads until told to stop
/// (`logs --follow`, `status --follow`) stops. The handlers are installed before this returns,
/// so a signal after the first line printed is never left to the default handler. Call it
/// inside the runtime.
pub fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        tokio::spawn(async move {
            match handlers {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            on_signal.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    cancel
}
