//! `panka export`: one stack in one environment of the repository as Kubernetes custom
//! resources, for `kubectl apply -f -` (how a stack moves from git mode to CRD mode). The
//! conversion is `panka_core::crd::export`; this prints it.

use std::process::ExitCode;

use clap::Args;
use panka_controller::validate::load_stack;

use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{problems, say, say_raw};

/// Arguments of `panka export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Stack to export.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment to export.
    #[arg(long, short = 'e')]
    pub environment: String,
    /// Variable override, `NAME=VALUE`; repeatable. Lands in the Stack's `spec.variables`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Runs `panka export`: multi-document YAML (`--output table`, the default, or `yaml`), or one
/// JSON `List` (`--output json`).
pub fn run(global: &GlobalArgs, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(global)?;
    let options = super::resolve_options(&args.vars)?;
    let loaded = match load_stack(&root, &args.stack) {
        Ok(l) => l,
        Err((ds, sources)) => {
            eprintln!("{}", problems(&ds.iter().collect::<Vec<_>>(), &sources));
            return Ok(ExitCode::FAILURE);
        }
    };
    let resources = match panka_core::crd::export(&loaded, &args.environment, &options) {
        Ok(r) => r,
        Err(ds) => {
            eprintln!(
                "{}",
                problems(&ds.iter().collect::<Vec<_>>(), &loaded.sources)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    match global.output {
        OutputFormat::Json => say!("{}", serde_json::to_string_pretty(&resources.to_list()?)?),
        OutputFormat::Table | OutputFormat::Yaml => say_raw!("{}", resources.to_yaml()?),
    }
    Ok(ExitCode::SUCCESS)
}
