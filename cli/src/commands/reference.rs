//! `panka completion` and `panka man`, and `docs/cli.md` (written by this module's test): all
//! generated from the clap definition (clap_complete, clap_mangen, clap-markdown), so they never
//! disagree with `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::app::Cli;
use crate::render::say;

/// `panka completion SHELL`.
#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.:
  bash: panka completion bash > ~/.local/share/bash-completion/completions/panka
  zsh:  panka completion zsh > \"${fpath[1]}/_panka\"
  fish: panka completion fish > ~/.config/fish/completions/panka.fish")]
pub struct CompletionArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `panka man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (`panka.1`, `panka-plan.1`, …) into this folder instead of printing
    /// `panka.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completion(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "panka", &mut out);
    print_all(&out)
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    match std::io::Write::write_all(&mut std::io::stdout(), bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints `panka.1`, or writes every page into `args.dir`.
pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            return print_all(&out);
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
            let mut pages: Vec<String> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("panka") && name.ends_with(".1"))
                .collect();
            pages.sort();
            say!("wrote {} pages into {}", pages.len(), dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/cli.md`: every command, argument and flag, as `--help` says them.
    fn markdown() -> String {
        let options = clap_markdown::MarkdownOptions::new()
            .title("CLI reference".to_owned())
            .show_footer(false)
            .show_table_of_contents(true);
        let body = clap_markdown::help_markdown_command_custom(&Cli::command(), &options);
        let note =
            "<!-- Generated from the clap definition by `UPDATE_DOCS=1 cargo test -p panka --bin \
                    panka generated_cli_reference`; do not edit by hand. -->\n\n";
        let intro = "Every command, argument and flag of `panka`, exactly as `panka --help` and \
                     `panka COMMAND --help` print them. For what the commands do, with their real \
                     output, see the [CLI guide](cli-guide.md).\n\n";
        // The title line first, then what this page is.
        match body.split_once('\n') {
            Some((title, rest)) => format!("{note}{title}\n\n{intro}{}", rest.trim_start()),
            None => format!("{note}{body}"),
        }
    }

    /// The committed `docs/cli.md`.
    fn committed_path() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md")
    }

    #[test]
    fn generated_cli_reference_is_current() {
        let generated = markdown();
        let path = committed_path();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).expect("docs/cli.md written");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/cli.md is stale: regenerate it with `UPDATE_DOCS=1 cargo test -p panka --bin panka generated_cli_reference`"
        );
    }

    #[test]
    fn the_reference_names_every_command_and_flag() {
        let md = markdown();
        fn walk(cmd: &clap::Command, path: &str, md: &str) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let path = format!("{path} {}", sub.get_name());
                assert!(md.contains(&format!("## `{path}`")), "{path} missing");
                for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                    if let Some(long) = arg.get_long() {
                        assert!(md.contains(&format!("--{long}")), "{path} --{long} missing");
                    }
                }
                walk(sub, &path, md);
            }
        }
        walk(&Cli::command(), "panka", &md);
    }
}
