//! Argument parsing and dispatch. Every command lives in `commands/`; this file only wires them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;
use crate::render;

/// Keep AWS deployments equal to what a deployment repository says.
#[derive(Debug, Parser)]
#[command(name = "panka", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Deployment repository root (default: the nearest ancestor of the working directory that
    /// holds `stacks/`).
    #[arg(long, global = true, env = "PANKA_REPO")]
    pub repo: Option<PathBuf>,
    /// Configuration file (default: `~/.panka/config.yaml`).
    #[arg(long, global = true, env = "PANKA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format of read commands.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How a read command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack's YAML: parsing, references, cycles, waves.
    Validate(commands::validate::ValidateArgs),
    /// Print a stack's dependency graph and waves.
    Graph(commands::graph::GraphArgs),
    /// Show what apply would change, without changing anything.
    Plan(commands::deploy::PlanArgs),
    /// Make AWS match the repository, wave by wave.
    Apply(commands::deploy::ApplyArgs),
    /// Delete every resource of a stack/environment (or one service).
    Destroy(commands::deploy::ApplyArgs),
    /// Show each component's status and health, from state and AWS.
    Status(commands::status::StatusArgs),
    /// Show one component: identifiers, outputs, last applied, pending changes.
    Show(commands::status::ShowArgs),
    /// List stacks, environments, services and components of the repository.
    List(commands::status::ListArgs),
    /// Print the version of this binary.
    Version,
    /// Configure where state and locks live (`~/.panka/config.yaml`).
    Init(commands::init::InitArgs),
    /// Create the S3 state bucket and the DynamoDB lock table.
    #[command(subcommand)]
    Backend(commands::backend::BackendCommand),
    /// Inspect recorded state and locks.
    #[command(subcommand)]
    State(commands::state::StateCommand),
    /// Remove a stuck lock (your own or an expired one; --force for any).
    Unlock(commands::unlock::UnlockArgs),
    /// Show the release history of a stack/environment.
    History(commands::history::HistoryArgs),
}

impl Cli {
    /// Parse the process arguments and run the chosen command.
    pub fn parse_and_run() -> ExitCode {
        // Exit codes are 0 ok, 1 error, 2 "changes present" (--detailed-exitcode): a usage
        // error is an error (1), not clap's default 2.
        let cli = match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => {
                let code = if e.use_stderr() { 1 } else { 0 };
                let _ = e.print();
                return ExitCode::from(code);
            }
        };
        let result = match cli.command {
            Command::Validate(args) => commands::validate::run(&cli.global, args),
            Command::Graph(args) => commands::graph::run(&cli.global, args),
            Command::Plan(args) => commands::deploy::plan(&cli.global, args),
            Command::Apply(args) => commands::deploy::apply(&cli.global, args),
            Command::Destroy(args) => commands::deploy::destroy(&cli.global, args),
            Command::Status(args) => commands::status::status(&cli.global, args),
            Command::Show(args) => commands::status::show(&cli.global, args),
            Command::List(args) => commands::status::list(&cli.global, args),
            Command::Version => commands::version::run(&cli.global),
            Command::Init(args) => commands::init::run(&cli.global, args),
            Command::Backend(cmd) => commands::backend::run(&cli.global, cmd),
            Command::State(cmd) => commands::state::run(&cli.global, cmd),
            Command::Unlock(args) => commands::unlock::run(&cli.global, args),
            Command::History(args) => commands::history::run(&cli.global, args),
        };
        match result {
            Ok(code) => code,
            Err(err) => {
                eprintln!("{}", render::error(&err));
                ExitCode::FAILURE
            }
        }
    }
}
