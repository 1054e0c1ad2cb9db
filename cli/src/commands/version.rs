//! `panka version`.

use std::process::ExitCode;

use serde_json::json;

use crate::app::{GlobalArgs, OutputFormat};
use crate::render::say;

/// Prints the version.
pub fn run(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    match global.output {
        OutputFormat::Table => say!("panka {version}"),
        OutputFormat::Json | OutputFormat::Yaml => crate::render::print_data(
            global.output,
            &json!({
                "version": version,
                "crdApiVersion": format!("{}/{}", panka_crds::resource::GROUP, panka_crds::resource::VERSION),
            }),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
