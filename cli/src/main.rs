#![forbid(unsafe_code)]
//! The `panka` binary: parses arguments and hands over to the command modules.

mod app;
mod commands;
mod progress;
mod render;

fn main() -> std::process::ExitCode {
    app::Cli::parse_and_run()
}
