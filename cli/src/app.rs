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
    /// Output format of read commands (`markdown`: `panka plan` only, for a pull-request
    /// comment).
    #[arg(
        long = "output",
        value_name = "OUTPUT",
        global = true,
        value_enum,
        default_value_t = OutputChoice::Table
    )]
    pub output_choice: OutputChoice,
    /// `--output` as the commands print (`markdown` is `plan`'s alone).
    #[arg(skip)]
    pub output: OutputFormat,
}

/// How a read command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

/// What `--output` accepts: the read commands' formats, and `markdown`, which only `panka plan`
/// prints (a compact plan for a pull-request comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputChoice {
    Table,
    Json,
    Yaml,
    Markdown,
}

/// The value parser of every duration flag (`--lock-timeout`, `--health-timeout`): a human
/// duration (`90s`, `5m`, `1h30m`, `2 hours`) or bare seconds (`300`); shared with the
/// controller's flags.
pub use panka_controller::config::parse_duration;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack's YAML: parsing, references, cycles, waves, the repository's policies.
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
    /// Print a MicroService's or Worker's log lines, every task's, in time order (`--follow`).
    Logs(commands::logs::LogsArgs),
    /// Show a MicroService's or Worker's requests, error rate, latency, CPU and memory.
    Metrics(commands::metrics::MetricsArgs),
    /// Check each component's health: targets, tasks, deployment, AWS status.
    Health(commands::health::HealthArgs),
    /// List stacks, environments, services and components of the repository.
    List(commands::status::ListArgs),
    /// Print a stack/environment as Kubernetes custom resources (`kubectl apply -f -`).
    Export(commands::export::ExportArgs),
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
    /// Detect, remediate or acknowledge drift: AWS changed outside panka.
    #[command(subcommand)]
    Drift(commands::drift::DriftCommand),
    /// Re-apply an earlier release and pin the stack (or service) to it.
    Rollback(commands::rollback::RollbackArgs),
    /// Clear a rollback's pin: apply and the controller roll forward again.
    Resume(commands::rollback::ResumeArgs),
    /// Approve the plan the controller waits on (environments that need approval), or show it.
    Approve(commands::approve::ApproveArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(commands::reference::CompletionArgs),
    /// Print the man page, or write every command's page into a folder.
    Man(commands::reference::ManArgs),
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
        let mut cli = cli;
        cli.global.output = match cli.global.output_choice {
            OutputChoice::Table | OutputChoice::Markdown => OutputFormat::Table,
            OutputChoice::Json => OutputFormat::Json,
            OutputChoice::Yaml => OutputFormat::Yaml,
        };
        if cli.global.output_choice == OutputChoice::Markdown
            && !matches!(cli.command, Command::Plan(_))
        {
            eprintln!(
                "{}",
                render::error(&anyhow::anyhow!(
                    "`--output markdown` is for `panka plan` (a pull-request comment); use table, json or yaml here"
                ))
            );
            return ExitCode::FAILURE;
        }
        let result = match cli.command {
            Command::Validate(args) => commands::validate::run(&cli.global, args),
            Command::Graph(args) => commands::graph::run(&cli.global, args),
            Command::Plan(args) => commands::deploy::plan(&cli.global, args),
            Command::Apply(args) => commands::deploy::apply(&cli.global, args),
            Command::Destroy(args) => commands::deploy::destroy(&cli.global, args),
            Command::Status(args) => commands::status::status(&cli.global, args),
            Command::Show(args) => commands::status::show(&cli.global, args),
            Command::List(args) => commands::status::list(&cli.global, args),
            Command::Export(args) => commands::export::run(&cli.global, args),
            Command::Version => commands::version::run(&cli.global),
            Command::Init(args) => commands::init::run(&cli.global, args),
            Command::Backend(cmd) => commands::backend::run(&cli.global, cmd),
            Command::State(cmd) => commands::state::run(&cli.global, cmd),
            Command::Unlock(args) => commands::unlock::run(&cli.global, args),
            Command::History(args) => commands::history::run(&cli.global, args),
            Command::Drift(cmd) => commands::drift::run(&cli.global, cmd),
            Command::Rollback(args) => commands::rollback::rollback(&cli.global, args),
            Command::Resume(args) => commands::rollback::resume(&cli.global, args),
            Command::Approve(args) => commands::approve::run(&cli.global, args),
            Command::Logs(args) => commands::logs::run(&cli.global, args),
            Command::Metrics(args) => commands::metrics::run(&cli.global, args),
            Command::Health(args) => commands::health::run(&cli.global, args),
            Command::Completion(args) => commands::reference::completion(args),
            Command::Man(args) => commands::reference::man(args),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn human_durations_are_read() {
        for (text, secs) in [
            ("5m", 300),
            ("15m", 900),
            ("90s", 90),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2 hours", 7200),
            ("7d", 7 * 86_400),
            ("1w", 7 * 86_400),
            ("1d12h", 129_600),
            ("1.5m", 90),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bare_seconds_are_still_read() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 60 "), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn bad_and_negative_durations_are_refused_with_an_example() {
        for text in ["", "soon", "5x", "m5", "-300", "1h30", "5 parsecs"] {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.contains("`5m`") && err.contains("`300`"),
                "{text}: {err}"
            );
        }
        for text in ["-5m", "5m ago"] {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.starts_with("a duration cannot be negative"),
                "{text}: {err}"
            );
        }
    }
}
