//! Stage **graph** (pure): the dependency graph of a [`DesiredStack`] and its waves.
//!
//! Edges come from `dependsOn`, `valueFrom` and the stack-wide resources a component runs on
//! ([`crate::stack`]). Wave *n* holds every component whose
//! dependencies are all in earlier waves, so the components of one wave can be applied in
//! parallel. A cycle is reported with its full path and where its first edge is written.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::diag::Diagnostic;
use crate::model::{ComponentId, DesiredStack, RefKind};

/// The components of a stack in dependency order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// Waves, first to last; components sorted by id inside a wave.
    pub waves: Vec<Vec<ComponentId>>,
    /// Edges `from → to` meaning `from` needs `to`, with how (`dependsOn` or `valueFrom`).
    pub edges: Vec<Edge>,
}

/// One dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The dependant.
    pub from: ComponentId,
    /// The dependency.
    pub to: ComponentId,
    /// `dependsOn`, or the environment variable fed by `valueFrom`.
    pub via: String,
}

/// Builds the graph; a cycle is an error naming every component on it.
pub fn build(stack: &DesiredStack) -> Result<Graph, Diagnostic> {
    let mut deps: BTreeMap<&ComponentId, BTreeSet<&ComponentId>> = BTreeMap::new();
    let mut edges = Vec::new();
    let mut seen_edges: BTreeSet<(&ComponentId, &ComponentId, String)> = BTreeSet::new();
    for (id, comp) in &stack.components {
        let entry = deps.entry(id).or_default();
        for r in &comp.references {
            // References to unknown components were refused by resolve; skip defensively.
            if !stack.components.contains_key(&r.target) {
                continue;
            }
            entry.insert(&r.target);
            let via = match &r.kind {
                RefKind::DependsOn => "dependsOn".to_string(),
                RefKind::ValueFrom { env, output } => format!("valueFrom {env} ← {output}"),
                RefKind::Stack => "runs on".to_string(),
            };
            if seen_edges.insert((id, &r.target, via.clone())) {
                edges.push(Edge {
                    from: id.clone(),
                    to: r.target.clone(),
                    via,
                });
            }
        }
    }

    let mut placed: BTreeSet<&ComponentId> = BTreeSet::new();
    let mut waves = Vec::new();
    while placed.len() < deps.len() {
        let wave: Vec<ComponentId> = deps
            .iter()
            .filter(|(id, _)| !placed.contains(*id))
            .filter(|(_, ds)| ds.iter().all(|d| placed.contains(d)))
            .map(|(id, _)| (*id).clone())
            .collect();
        if wave.is_empty() {
            return Err(cycle_error(stack, &deps, &placed));
        }
        for id in &wave {
            if let Some((key, _)) = deps.get_key_value(id) {
                placed.insert(*key);
            }
        }
        waves.push(wave);
    }
    Ok(Graph { waves, edges })
}

fn cycle_error(
    stack: &DesiredStack,
    deps: &BTreeMap<&ComponentId, BTreeSet<&ComponentId>>,
    placed: &BTreeSet<&ComponentId>,
) -> Diagnostic {
    // Walk unplaced dependencies from any unplaced node until a node repeats: that is a cycle.
    let start = deps.keys().find(|id| !placed.contains(*id)).copied();
    let mut path: Vec<&ComponentId> = Vec::new();
    let mut current = start;
    while let Some(id) = current {
        if let Some(pos) = path.iter().position(|p| *p == id) {
            let cycle: Vec<&ComponentId> = path[pos..].to_vec();
            let text = cycle
                .iter()
                .chain(std::iter::once(&cycle[0]))
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" → ");
            let first = cycle[0];
            let second = cycle.get(1).copied().unwrap_or(first);
            let span = stack.components.get(first).and_then(|c| {
                c.references
                    .iter()
                    .find(|r| &r.target == second)
                    .and_then(|r| r.span.clone())
            });
            let d = Diagnostic {
                span,
                message: format!("dependency cycle: {text}"),
                help: Some("remove one of these `dependsOn` or `valueFrom` references".to_string()),
            };
            return d;
        }
        path.push(id);
        current = deps
            .get(id)
            .and_then(|ds| ds.iter().find(|d| !placed.contains(*d)).copied());
    }
    Diagnostic::general("dependency cycle")
}
