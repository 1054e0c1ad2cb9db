//! Runs load → resolve → graph for a stack's [`FileTree`], for one environment or all of them, and
//! reports what each step found. Used by `panka validate`, `panka graph`, and as the first half
//! of every plan. Pure: the caller reads the tree (a directory, a git commit).

use std::collections::BTreeSet;

use panka_crds::Kind;

use crate::diag::{Diagnostic, Diagnostics, Sources};
use crate::graph::{self, Graph};
use crate::load::{self, LoadedStack};
use crate::model::{ComponentId, DesiredStack};
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
    /// Desired state and graph, or the problems found.
    pub result: Result<(DesiredStack, Graph), Diagnostics>,
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
        self.inventory.is_ok() && self.environments.iter().all(|e| e.result.is_ok())
    }

    /// Every problem, each once (an error in a base file shows up in every environment).
    pub fn problems(&self) -> Vec<&Diagnostic> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let lists = self.inventory.as_ref().err().into_iter().chain(
            self.environments
                .iter()
                .filter_map(|e| e.result.as_ref().err()),
        );
        for list in lists {
            for d in list.iter() {
                if seen.insert((d.span.clone(), d.message.clone())) {
                    out.push(d);
                }
            }
        }
        out
    }
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

/// Resolves and orders one environment of a loaded stack.
pub fn plan_input(
    loaded: &LoadedStack,
    environment: &str,
    options: &Options,
) -> Result<(DesiredStack, Graph), Diagnostics> {
    let desired = resolve::resolve(loaded, environment, options)?;
    let graph = graph::build(&desired)?;
    Ok((desired, graph))
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
    let environments = targets
        .into_iter()
        .map(|name| EnvironmentResult {
            result: plan_input(&loaded, &name, options),
            name,
        })
        .collect();
    Validation {
        stack: stack.to_string(),
        inventory: Ok(inventory),
        environments,
        sources: loaded.sources,
    }
}
