//! `panka graph`: a stack's components, dependencies and waves as text, DOT or Mermaid.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use panka_controller::validate::{load_stack, plan_input};
use panka_core::graph::Graph;
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::resolve;
use serde_json::json;

use crate::app::{GlobalArgs, OutputFormat};
use crate::render::say_raw;
use crate::render::{print_data, problems};

/// Arguments of `panka graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Stack to draw.
    #[arg(long, short = 's')]
    pub stack: String,
    /// Environment (default: `development` if the stack has it, else its first environment).
    #[arg(long, short = 'e')]
    pub environment: Option<String>,
    /// Drawing format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
    /// Variable override, `NAME=VALUE`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Graph drawing formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Waves and edges as indented text.
    Text,
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Runs `panka graph`.
pub fn run(global: &GlobalArgs, args: GraphArgs) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(global)?;
    let options = super::resolve_options(&args.vars)?;
    let loaded = match load_stack(&root, &args.stack) {
        Ok(l) => l,
        Err((ds, sources)) => {
            eprintln!("{}", problems(&ds.iter().collect::<Vec<_>>(), &sources));
            return Ok(ExitCode::FAILURE);
        }
    };
    let envs = resolve::environments(&loaded);
    let environment = match &args.environment {
        Some(e) => e.clone(),
        None => envs
            .iter()
            .find(|e| *e == "development")
            .or_else(|| envs.first())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("stack `{}` has no environments", args.stack))?,
    };
    let (desired, graph) = match plan_input(&loaded, &environment, &options) {
        Ok(v) => v,
        Err(ds) => {
            eprintln!(
                "{}",
                problems(&ds.iter().collect::<Vec<_>>(), &loaded.sources)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if global.output != OutputFormat::Table {
        print_data(
            global.output,
            &json!({
                "stack": desired.name,
                "environment": desired.environment,
                "waves": graph.waves,
                "edges": graph.edges,
            }),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = match args.format {
        GraphFormat::Text => text(&desired, &graph),
        GraphFormat::Dot => dot(&desired, &graph),
        GraphFormat::Mermaid => mermaid(&desired, &graph),
    };
    say_raw!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn text(desired: &DesiredStack, graph: &Graph) -> String {
    let mut out = format!("Stack: {} ({})\n", desired.name, desired.environment);
    for (n, wave) in graph.waves.iter().enumerate() {
        let parallel = if wave.len() > 1 { ", parallel" } else { "" };
        out.push_str(&format!(
            "\nWave {} ({} component{}{parallel}):\n",
            n + 1,
            wave.len(),
            if wave.len() == 1 { "" } else { "s" }
        ));
        for id in wave {
            let kind = desired
                .components
                .get(id)
                .map(|c| c.kind().name())
                .unwrap_or("?");
            out.push_str(&format!("  {id} ({kind})\n"));
            // One line per dependency, listing every way it is needed.
            let mut targets: Vec<(&ComponentId, Vec<&str>)> = Vec::new();
            for e in graph.edges.iter().filter(|e| &e.from == id) {
                match targets.iter_mut().find(|(t, _)| *t == &e.to) {
                    Some((_, vias)) => vias.push(&e.via),
                    None => targets.push((&e.to, vec![&e.via])),
                }
            }
            for (target, vias) in targets {
                out.push_str(&format!("    ← {target} ({})\n", vias.join(", ")));
            }
        }
    }
    out
}

fn node_id(id: &ComponentId) -> String {
    id.to_string().replace(['/', '-'], "_")
}

fn dot(desired: &DesiredStack, graph: &Graph) -> String {
    let mut out = format!(
        "digraph \"{}-{}\" {{\n  rankdir=LR;\n  node [shape=box];\n",
        desired.name, desired.environment
    );
    for (n, wave) in graph.waves.iter().enumerate() {
        out.push_str(&format!(
            "  subgraph cluster_wave{} {{\n    label=\"Wave {}\";\n",
            n + 1,
            n + 1
        ));
        for id in wave {
            let kind = desired
                .components
                .get(id)
                .map(|c| c.kind().name())
                .unwrap_or("?");
            out.push_str(&format!(
                "    {} [label=\"{id}\\n({kind})\"];\n",
                node_id(id)
            ));
        }
        out.push_str("  }\n");
    }
    for e in &graph.edges {
        out.push_str(&format!(
            "  {} -> {} [label=\"{}\"];\n",
            node_id(&e.to),
            node_id(&e.from),
            e.via.replace('"', "'")
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid(desired: &DesiredStack, graph: &Graph) -> String {
    let mut out = String::from("flowchart LR\n");
    for (n, wave) in graph.waves.iter().enumerate() {
        out.push_str(&format!("  subgraph wave{}[\"Wave {}\"]\n", n + 1, n + 1));
        for id in wave {
            let kind = desired
                .components
                .get(id)
                .map(|c| c.kind().name())
                .unwrap_or("?");
            out.push_str(&format!("    {}[\"{id}<br/>{kind}\"]\n", node_id(id)));
        }
        out.push_str("  end\n");
    }
    // One arrow per pair, however many ways one component needs the other.
    let mut seen = std::collections::BTreeSet::new();
    for e in graph.edges.iter().filter(|e| seen.insert((&e.to, &e.from))) {
        out.push_str(&format!("  {} --> {}\n", node_id(&e.to), node_id(&e.from)));
    }
    out
}
