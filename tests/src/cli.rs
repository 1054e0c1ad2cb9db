//! The `panka` binary run on one stack in `development`, as the CLI's end-to-end tests drive it
//! (isolated as [`crate::emulator::panka_command`] makes it).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::emulator::panka_command;
use crate::output::text;

/// `panka --repo ROOT … -s STACK -e development`, with `HOME` at `home`.
#[derive(Debug, Clone, Copy)]
pub struct StackCli<'a> {
    /// The binary (`env!("CARGO_BIN_EXE_panka")` of the CLI's tests).
    pub bin: &'a str,
    /// `HOME`.
    pub home: &'a Path,
    /// The deployment repository.
    pub root: &'a Path,
    /// The stack.
    pub stack: &'a str,
}

impl StackCli<'_> {
    /// `panka --repo ROOT ARGS… -s STACK -e development`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = panka_command(self.bin, self.home);
        cmd.arg("--repo")
            .arg(self.root)
            .args(args)
            .args(["-s", self.stack, "-e", "development"]);
        cmd
    }

    /// Runs [`StackCli::command`].
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("failed to run panka")
    }

    /// As [`StackCli::run`], asserting the exit code; stdout.
    ///
    /// # Panics
    /// When the exit code is another.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "panka {args:?}:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// As [`StackCli::expect`] with `--output json`, parsed.
    ///
    /// # Panics
    /// When the exit code is another or stdout is not JSON.
    pub fn json(&self, code: i32, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.expect(code, &all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }

    /// What state records of a component's identifiers (`panka state show`).
    ///
    /// # Panics
    /// When `state show` fails.
    pub fn identifiers(&self, component: &str) -> Value {
        let out = panka_command(self.bin, self.home)
            .args(["state", "show", "--output", "json"])
            .args(["-s", self.stack, "-e", "development"])
            .output()
            .expect("panka runs");
        assert!(out.status.success(), "{}", text(&out));
        let state: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        state["components"][component]["identifiers"].clone()
    }
}

/// The example stack `user-platform` under a name of its own (`{prefix}-…`), its secrets
/// created in the emulator, and a HOME whose configuration names a fresh backend there: what a
/// CLI test of an applied stack starts from.
#[derive(Debug)]
pub struct ExampleStack {
    /// `HOME`.
    pub home: tempfile::TempDir,
    /// The deployment repository.
    pub repo: tempfile::TempDir,
    /// The stack's name.
    pub stack: String,
}

impl ExampleStack {
    /// Sets it up for the binary `bin`.
    ///
    /// # Panics
    /// When the emulator, the copy or `panka backend create` fails.
    pub async fn new(bin: &str, prefix: &str) -> ExampleStack {
        let home = tempfile::tempdir().expect("tempdir");
        let stack = crate::emulator::unique_name(prefix);
        let repo = crate::repo::renamed_example("user-platform", &stack);
        crate::repo::create_example_secrets(repo.path(), &stack).await;
        crate::emulator::panka_backend(bin, home.path(), prefix);
        ExampleStack { home, repo, stack }
    }

    /// The CLI (`bin`) on it.
    pub fn cli<'a>(&'a self, bin: &'a str) -> StackCli<'a> {
        StackCli {
            bin,
            home: self.home.path(),
            root: self.repo.path(),
            stack: &self.stack,
        }
    }
}
