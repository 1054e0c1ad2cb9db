//! One module per command. Each parses nothing itself (clap did) and holds no business logic:
//! it calls the engine and renders what comes back.

pub mod backend;
pub mod deploy;
pub mod graph;
pub mod history;
pub mod init;
pub mod state;
pub mod status;
pub mod unlock;
pub mod validate;
pub mod version;

use std::path::PathBuf;

use anyhow::Context;

use crate::app::GlobalArgs;

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
