//! Runs load → resolve → graph → policy for a stack's [`FileTree`], for one environment or all
//! of them, and reports what each step found. Used by `panka validate`, `panka graph`, and as
//! the first half of every plan. Pure: the caller reads the tree (a directory, a git commit).
//!
//! Two ways from a loaded stack to a desired one: [`checked_input`] — resolve, graph and the
//! repository's policies — for whatever is about to be deployed (`validate`, `plan`, `apply`,
//! the controller's reconcile), and [`plan_input`] — resolve and graph only — for commands that
//! read or remove what is deployed (`status`, `destroy`, `drift`, `rollback`), which a policy
//! must not block.

use std::collections::BTreeSet;

use panka_crds::Kind;

use crate::diag::{Diagnostic, Diagnostics, Sources};
use crate::graph::{self, Graph};
use crate::load::{self, LoadedStack};
use crate::model::{ComponentId, DesiredStack};
use crate::policy::{Policies, Verdict};
use crate::resolve::{self, Options};
use crate::source::FileTree;

/// What loading a stack found.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Service names.
    pub services: Vec<String>,
    /// Components and their kinds.
    pub components: Vec<(ComponentId, Kind)>,
    /// Environments found.
    pub environments: Vec<String>,
}

/// The outcome for one environment.
#[derive(Debug, Clone)]
pub struct EnvironmentResult {
    /// Environment name.
    pub name: String,
    /// Desired state and graph, or the problems resolve and graph found.
    pub result: Result<(DesiredStack, Graph), Diagnostics>,
    /// What the repository's policies said of it; `None` when it did not resolve (nothing to
    /// judge).
    pub policy: Option<Verdict>,
}

impl EnvironmentResult {
    /// Whether it resolved and no policy stops it.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok() && self.policy.as_ref().is_none_or(|v| v.problems.is_empty())
    }

    /// Every problem: resolve's and graph's, or the policies'.
    pub fn problems(&self) -> impl Iterator<Item = &Diagnostic> {
        let resolve = self
            .result
            .as_ref()
            .err()
            .into_iter()
            .flat_map(|d| d.iter());
        let policy = self.policy.iter().flat_map(|v| v.problems.iter());
        resolve.chain(policy)
    }

    /// The desired stack to deploy and the policies' warnings, or every problem.
    pub fn into_checked(self) -> Result<Checked, Diagnostics> {
        let (desired, graph) = self.result?;
        let verdict = self.policy.unwrap_or_default();
        if let Some(problems) = Diagnostics::from_vec(verdict.problems) {
            return Err(problems);
        }
        Ok(Checked {
            desired,
            graph,
            policies: verdict.policies,
            warnings: verdict.warnings,
        })
    }
}

/// A desired stack the repository's policies let through.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The desired stack.
    pub desired: DesiredStack,
    /// Its waves.
    pub graph: Graph,
    /// How many policies judged it (0: the repository has none).
    pub policies: usize,
    /// Their `warn` messages, each at the component it concerns.
    pub warnings: Vec<Diagnostic>,
}

/// Everything `validate` reports for a stack.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Stack name.
    pub stack: String,
    /// What load found, or why it failed.
    pub inventory: Result<Inventory, Diagnostics>,
    /// One result per environment checked (empty when load failed).
    pub environments: Vec<EnvironmentResult>,
    /// Text of the files read, for snippets.
    pub sources: Sources,
}

impl Validation {
    /// Whether every step passed.
    pub fn is_ok(&self) -> bool {
        self.inventory.is_ok() && self.environments.iter().all(EnvironmentResult::is_ok)
    }

    /// Every problem, each once (an error in a base file shows up in every environment).
    pub fn problems(&self) -> Vec<&Diagnostic> {
        let loading = self
            .inventory
            .as_ref()
            .err()
            .into_iter()
            .flat_map(|d| d.iter());
        once_each(loading.chain(self.environments.iter().flat_map(|e| e.problems())))
    }

    /// Every policy warning, each once.
    pub fn warnings(&self) -> Vec<&Diagnostic> {
        once_each(
            self.environments
                .iter()
                .flat_map(|e| e.policy.iter().flat_map(|v| v.warnings.iter())),
        )
    }
}

/// `list` without repeats (same place, same message), in order.
fn once_each<'a>(list: impl Iterator<Item = &'a Diagnostic>) -> Vec<&'a Diagnostic> {
    let mut seen = BTreeSet::new();
    list.filter(|d| seen.insert((d.span.clone(), d.message.clone())))
        .collect()
}

/// Loads a stack from its files; on failure, the problems and the text of the files for
/// snippets.
pub fn load_tree(stack: &str, tree: &FileTree) -> Result<LoadedStack, (Diagnostics, Sources)> {
    load::load(stack, tree).map_err(|d| {
        let mut sources = Sources::default();
        for (rel, text) in &tree.files {
            sources.insert(tree.display_path(rel), text.clone());
        }
        (d, sources)
    })
}

/// Resolves and orders one environment of a loaded stack, without asking the policies: for
/// commands that read or remove what is deployed. What is to be deployed goes through
/// [`checked_input`].
pub fn plan_input(
    loaded: &LoadedStack,
    environment: &str,
    options: &Options,
) -> Result<(DesiredStack, Graph), Diagnostics> {
    let desired = resolve::resolve(loaded, environment, options)?;
    let graph = graph::build(&desired)?;
    Ok((desired, graph))
}

/// Resolves and orders one environment of a loaded stack, and has the repository's policies
/// judge it: what `validate`, `plan`, `apply` and the controller deploy from. A `deny`, or a
/// policy that does not parse or fails, is a problem like any other; `warn` messages come with
/// the result.
pub fn checked_input(
    loaded: &LoadedStack,
    environment: &str,
    options: &Options,
) -> Result<Checked, Diagnostics> {
    let mut policies = Policies::compile(&loaded.policies);
    judged(loaded, environment, options, &mut policies).into_checked()
}

/// Resolves, orders and judges one environment, keeping what each step found.
fn judged(
    loaded: &LoadedStack,
    environment: &str,
    options: &Options,
    policies: &mut Policies,
) -> EnvironmentResult {
    let result = plan_input(loaded, environment, options);
    let policy = result
        .as_ref()
        .ok()
        .map(|(desired, _)| policies.check(loaded, desired));
    EnvironmentResult {
        name: environment.to_owned(),
        result,
        policy,
    }
}

/// Validates a stack for `environment`, or for every environment it has when `None`. `tree` is
/// what the source read, or the problems reading it.
pub fn validate_tree(
    stack: &str,
    tree: Result<FileTree, Diagnostics>,
    environment: Option<&str>,
    options: &Options,
) -> Validation {
    let loaded = match tree
        .map_err(|d| (d, Sources::default()))
        .and_then(|tree| load_tree(stack, &tree))
    {
        Ok(l) => l,
        Err((d, sources)) => {
            return Validation {
                stack: stack.to_string(),
                inventory: Err(d),
                environments: Vec::new(),
                sources,
            }
        }
    };
    let all_envs = resolve::environments(&loaded);
    let inventory = Inventory {
        services: loaded.services.keys().cloned().collect(),
        components: loaded
            .services
            .values()
            .flat_map(|s| {
                s.components
                    .values()
                    .map(move |c| (ComponentId::new(&s.name, &c.name), c.doc.kind))
            })
            .collect(),
        environments: all_envs.clone(),
    };
    let targets: Vec<String> = match environment {
        Some(e) => vec![e.to_string()],
        None => all_envs,
    };
    if targets.is_empty() {
        let d = Diagnostic::general(format!("stack `{stack}` has no environments")).help(format!(
            "create stacks/{stack}/environments/development/variables.yaml (kind Variables)"
        ));
        return Validation {
            stack: stack.to_string(),
            inventory: Err(d.into()),
            environments: Vec::new(),
            sources: loaded.sources.clone(),
        };
    }
    // Parsed once, judging every environment.
    let mut policies = Policies::compile(&loaded.policies);
    let environments = targets
        .iter()
        .map(|name| judged(&loaded, name, options, &mut policies))
        .collect();
    Validation {
        stack: stack.to_string(),
        inventory: Ok(inventory),
        environments,
        sources: loaded.sources,
    }
}
