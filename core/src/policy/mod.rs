//! Stage **policy** (pure): the repository's Rego policies judge every component of a resolved
//! stack, after resolve and graph and before anything reads AWS.
//!
//! Policies are the `*.rego` files below the repository's `policies/` folder (`*_test.rego`
//! excluded: those are `opa test` tests), in Rego v1, evaluated by regorus. Every file of
//! `package panka` is one policy, evaluated on its own together with every file of another
//! package (its helpers, e.g. `package panka.lib`), so each message names the file it came
//! from. Each component gets the input document
//!
//! ```text
//! {kind, stack, service, component, environment, spec, infra}
//! ```
//!
//! — `spec` resolved (overlay merged, `${VARS}` substituted), `infra` the effective
//! ComponentInfra of a MicroService or Worker (`{}` when none; absent for other kinds) — and
//! the policy's `deny` and `warn` rules, sets of strings, are read. A `deny` message, a policy
//! that does not parse, or one that fails while evaluating, is a problem: the environment is
//! not deployed. A `warn` message is reported and the environment goes on.
//!
//! Nothing here reads files or the network: the source stage read the files, and regorus is
//! built without I/O builtins (no `http.send`, no `opa.runtime`). `print` output is gathered by
//! the engine and dropped, never written to stderr. The only outside thing an evaluation looks
//! at is a monotonic clock, for its time limit.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use panka_crds::Kind;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use serde_json::json;

use crate::diag::{Diagnostic, Span};
use crate::load::LoadedStack;
use crate::model::{DesiredComponent, DesiredStack};

/// The package whose files are policies; files of other packages are their helpers.
pub const PACKAGE: &str = "panka";

/// The rule whose messages stop a deployment.
pub const DENY: &str = "deny";

/// The rule whose messages are reported and let the deployment go on.
pub const WARN: &str = "warn";

/// How long one evaluation (one policy, one component) may run. Rego always terminates, but a
/// comprehension over a huge range can take minutes and would hold a reconcile worker: such a
/// policy is refused instead of waited on. Generous: a real policy takes microseconds.
const EVAL_LIMIT: Duration = Duration::from_secs(10);

/// What the policies said of one environment of a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// How many policies (files of `package panka`) judged it.
    pub policies: usize,
    /// `warn` messages, each at the component it concerns.
    pub warnings: Vec<Diagnostic>,
    /// `deny` messages at the component they concern, and policies that do not parse or fail,
    /// at the policy: when any, the environment must not be deployed.
    pub problems: Vec<Diagnostic>,
}

/// The repository's policies, parsed, ready to judge any number of environments.
pub struct Policies {
    policies: Vec<Policy>,
    /// Files that do not parse: reported by every check, and nothing is evaluated.
    broken: Vec<Diagnostic>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field(
                "policies",
                &self.policies.iter().map(|p| &p.path).collect::<Vec<_>>(),
            )
            .field("broken", &self.broken)
            .finish()
    }
}

/// One policy: its file and an engine holding it and the helpers.
struct Policy {
    path: Arc<str>,
    engine: Engine,
}

/// A fresh engine: Rego v1, `print` gathered (never written to stderr), a time limit.
fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    engine.set_gather_prints(true);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: EVAL_LIMIT,
        // Look at the clock every 1,000 units of work: cheap, and never long past the limit.
        check_interval: NonZeroU32::MIN.saturating_add(999),
    });
    engine
}

impl Policies {
    /// Parses the policy files (repository-relative path → text, as [`LoadedStack::policies`]
    /// holds them). Files that do not parse are kept as problems every [`Policies::check`]
    /// reports.
    pub fn compile(files: &BTreeMap<String, Arc<str>>) -> Policies {
        let mut broken = Vec::new();
        let mut parsed: Vec<(&str, &Arc<str>, bool)> = Vec::new();
        for (path, text) in files {
            // Parsed alone first: a syntax error names its own file, and the package tells
            // policies from helpers.
            match engine().add_policy(path.clone(), text.to_string()) {
                Ok(package) => {
                    parsed.push((path.as_str(), text, package == format!("data.{PACKAGE}")))
                }
                Err(e) => broken.push(rego_problem(path, &e, "policy does not parse").help(
                    "policies are Rego v1 in `package panka`, e.g. `deny contains msg if { … }`",
                )),
            }
        }
        if !broken.is_empty() {
            return Policies {
                policies: Vec::new(),
                broken,
            };
        }
        let mut policies = Vec::new();
        for &(path, text, _) in parsed.iter().filter(|(_, _, policy)| *policy) {
            let mut engine = engine();
            let helpers = parsed.iter().filter(|(_, _, policy)| !policy);
            let added = helpers
                .map(|&(p, t, _)| (p, t))
                .chain(std::iter::once((path, text)))
                .try_for_each(|(p, t)| {
                    engine
                        .add_policy(p.to_owned(), t.to_string())
                        .map(|_| ())
                        .map_err(|e| rego_problem(p, &e, "policy does not parse"))
                });
            match added {
                Ok(()) => policies.push(Policy {
                    path: Arc::from(path),
                    engine,
                }),
                Err(d) => broken.push(d),
            }
        }
        Policies { policies, broken }
    }

    /// Judges every component of `desired` (the stack-wide resources panka adds are not the
    /// repository's, and are not judged). `loaded` gives each component's file and line.
    pub fn check(&mut self, loaded: &LoadedStack, desired: &DesiredStack) -> Verdict {
        let mut verdict = Verdict {
            policies: self.policies.len(),
            warnings: Vec::new(),
            problems: self.broken.clone(),
        };
        if !self.broken.is_empty() {
            return verdict;
        }
        // A policy that fails is reported once, not once per component.
        let mut failed = vec![false; self.policies.len()];
        let components = desired
            .components
            .values()
            .filter(|c| c.id.service != crate::stack::SERVICE);
        for component in components {
            let at = component_span(loaded, component);
            let input = match input_document(desired, component) {
                Ok(input) => input,
                Err(d) => {
                    verdict.problems.push(d);
                    continue;
                }
            };
            let about = format!("{} in {}", component.id, desired.environment);
            for (policy, failed) in self.policies.iter_mut().zip(failed.iter_mut()) {
                if *failed {
                    continue;
                }
                match policy.judge(input.clone()) {
                    Ok((deny, warn)) => {
                        verdict.problems.extend(deny.into_iter().map(|msg| {
                            Diagnostic::at(
                                at.clone(),
                                format!("{} denies {about}: {msg}", policy.path),
                            )
                            .help(format!(
                                "change {} (or its overlay in stacks/{}/environments/{}/), or the policy",
                                component.id, desired.name, desired.environment
                            ))
                        }));
                        verdict.warnings.extend(warn.into_iter().map(|msg| {
                            Diagnostic::at(
                                at.clone(),
                                format!("{} warns about {about}: {msg}", policy.path),
                            )
                        }));
                    }
                    Err(d) => {
                        *failed = true;
                        verdict
                            .problems
                            .push(d.help(format!("it failed judging {about}")));
                    }
                }
            }
        }
        verdict
    }
}

impl Policy {
    /// The `deny` and `warn` messages of this policy for one input document.
    fn judge(
        &mut self,
        input: serde_json::Value,
    ) -> Result<(Vec<String>, Vec<String>), Diagnostic> {
        self.engine.set_input(Value::from(input));
        let deny = self.messages(DENY)?;
        let warn = self.messages(WARN)?;
        // Gathered so that nothing is written to stderr; not shown (yet).
        let _ = self.engine.take_prints();
        Ok((deny, warn))
    }

    /// The messages of rule `rule`: none when the policy does not define it or it is empty.
    fn messages(&mut self, rule: &str) -> Result<Vec<String>, Diagnostic> {
        let query = format!("data.{PACKAGE}.{rule}");
        let results = self
            .engine
            .eval_query(query, false)
            .map_err(|e| rego_problem(&self.path, &e, "policy failed"))?;
        let mut messages = Vec::new();
        for value in results
            .result
            .iter()
            .flat_map(|r| r.expressions.iter().map(|e| &e.value))
        {
            let not_messages = || {
                Diagnostic::at(
                    Span::file(&self.path),
                    format!("rule `{rule}` must be a set of message strings, not {value}"),
                )
                .help(format!(
                    "write `{rule} contains msg if {{ … }}` with `msg` a string"
                ))
            };
            match value {
                Value::Undefined => {}
                Value::Set(set) => {
                    for item in set.iter() {
                        match item {
                            Value::String(s) => messages.push(s.to_string()),
                            _ => return Err(not_messages()),
                        }
                    }
                }
                _ => return Err(not_messages()),
            }
        }
        Ok(messages)
    }
}

/// Where a component is written: the `name:` of its metadata in its own file (the base file,
/// not an overlay, which may not exist), or the file alone when the loader does not know it.
fn component_span(loaded: &LoadedStack, component: &DesiredComponent) -> Span {
    loaded
        .services
        .get(&component.id.service)
        .and_then(|s| s.components.get(&component.id.component))
        .map_or_else(
            || Span::file(&Arc::from(component.source.as_str())),
            |c| c.doc.metadata_field_span("name"),
        )
}

/// The input document of one component.
fn input_document(
    stack: &DesiredStack,
    component: &DesiredComponent,
) -> Result<serde_json::Value, Diagnostic> {
    let at = || Span::file(&Arc::from(component.source.as_str()));
    // The spec serialises as `{kind, spec}` (the YAML's own kind name and fields).
    let mut tagged = serde_json::to_value(&component.spec).map_err(|e| {
        Diagnostic::at(
            at(),
            format!("failed to give {} to the policies: {e}", component.id),
        )
    })?;
    let kind = tagged.get("kind").cloned().unwrap_or_default();
    let spec = tagged
        .get_mut("spec")
        .map(serde_json::Value::take)
        .unwrap_or_else(|| json!({}));
    let mut input = json!({
        "kind": kind,
        "stack": stack.name,
        "service": component.id.service,
        "component": component.id.component,
        "environment": stack.environment,
        "spec": spec,
    });
    if matches!(component.kind(), Kind::MicroService | Kind::Worker) {
        let infra = match &component.infra {
            Some(infra) => serde_json::to_value(infra).map_err(|e| {
                Diagnostic::at(
                    at(),
                    format!("failed to give {} to the policies: {e}", component.id),
                )
            })?,
            None => json!({}),
        };
        input["infra"] = infra;
    }
    Ok(input)
}

/// A regorus error as a problem in policy file `path`: at the file, line and column regorus
/// names (`--> file:line:col` in its message, the only place it gives them), else at the file.
fn rego_problem(path: &str, error: &impl std::fmt::Display, what: &str) -> Diagnostic {
    let text = format!("{error:#}");
    let position = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|at| {
            let mut parts = at.rsplitn(3, ':');
            let col = parts.next()?.trim().parse::<u32>().ok()?;
            let line = parts.next()?.trim().parse::<u32>().ok()?;
            let file = parts.next()?;
            Some((file.to_owned(), line, col))
        });
    // The last `error: …` line is what went wrong; the rest is regorus's own snippet, which
    // the diagnostic draws again from the file.
    let message = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        );
    let span = match position {
        Some((file, line, col)) => Span {
            file: Arc::from(file),
            line,
            col,
        },
        None => Span::file(&Arc::from(path)),
    };
    Diagnostic::at(span, format!("{what}: {message}"))
}
