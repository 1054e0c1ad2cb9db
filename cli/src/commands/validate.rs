//! `panka validate`: parse, resolve, order and policy-check a stack without touching AWS; exit 0
//! when valid.

use std::process::ExitCode;

use clap::Args;
use panka_controller::validate::{validate, Validation};
use panka_core::diag::{suggest, Diagnostic};
use panka_core::model::ComponentId;
use serde_json::json;

use crate::app::{GlobalArgs, OutputFormat};
use crate::render::say;
use crate::render::{branch, mark, print_data, problem_json, problems, warnings};

/// Arguments of `panka validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Stack to validate (default: every stack of the repository).
    #[arg(long, short = 's')]
    pub stack: Option<String>,
    /// Only report on this service (the whole stack is still resolved, for references).
    #[arg(long)]
    pub service: Option<String>,
    /// Environment to validate (default: every environment of the stack).
    #[arg(long, short = 'e')]
    pub environment: Option<String>,
    /// Variable override, `NAME=VALUE`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Runs `panka validate`.
pub fn run(global: &GlobalArgs, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(global)?;
    let options = super::resolve_options(&args.vars)?;
    let stacks = match &args.stack {
        Some(s) => vec![s.clone()],
        None => {
            let all = panka_controller::source::dir::list_stacks(&root)
                .map_err(|d| anyhow::anyhow!("{d}"))?;
            anyhow::ensure!(
                !all.is_empty(),
                "{} has no stacks",
                root.join("stacks").display()
            );
            all
        }
    };
    let results: Vec<Validation> = stacks
        .iter()
        .map(|s| validate(&root, s, args.environment.as_deref(), &options))
        .collect();
    if let Some(service) = &args.service {
        for v in &results {
            if let Ok(inv) = &v.inventory {
                if !inv.services.contains(service) {
                    let hint = suggest(service, inv.services.iter().map(String::as_str))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    anyhow::bail!("stack `{}` has no service `{service}`{hint}", v.stack);
                }
            }
        }
    }
    let ok = results.iter().all(Validation::is_ok);
    match global.output {
        OutputFormat::Table => {
            for (i, v) in results.iter().enumerate() {
                if i > 0 {
                    say!();
                }
                print_tree(v, args.service.as_deref());
            }
        }
        OutputFormat::Json | OutputFormat::Yaml => print_data(
            global.output,
            &json!(results
                .iter()
                .map(|v| report_json(v, args.service.as_deref()))
                .collect::<Vec<_>>()),
        )?,
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn in_service(id: &ComponentId, service: Option<&str>) -> bool {
    service.is_none_or(|s| id.service == s)
}

fn relevant<'a>(v: &'a Validation, service: Option<&str>) -> Vec<&'a Diagnostic> {
    in_scope(v.problems(), service)
}

/// The policy warnings about `service` (all of them without one).
fn relevant_warnings<'a>(v: &'a Validation, service: Option<&str>) -> Vec<&'a Diagnostic> {
    in_scope(v.warnings(), service)
}

fn in_scope<'a>(list: Vec<&'a Diagnostic>, service: Option<&str>) -> Vec<&'a Diagnostic> {
    list.into_iter()
        .filter(|d| match (service, &d.span) {
            (Some(s), Some(span)) => {
                let file = &*span.file;
                !file.contains("/services/") || file.contains(&format!("/services/{s}/"))
            }
            _ => true,
        })
        .collect()
}

fn print_tree(v: &Validation, service: Option<&str>) {
    say!("Validating stack: {}", v.stack);
    let inv = match &v.inventory {
        Err(_) => {
            say!("└── Parsing files... ✗");
            say!();
            eprintln!("{}", problems(&relevant(v, service), &v.sources));
            let n = relevant(v, service).len();
            say!("\n✗ {n} problem{} found in stack {}", plural(n), v.stack);
            return;
        }
        Ok(inv) => inv,
    };
    say!("├── Parsing stack.yaml... ✓");
    let services: Vec<&String> = inv
        .services
        .iter()
        .filter(|s| service.is_none_or(|x| x == s.as_str()))
        .collect();
    say!("├── Parsing services... ✓");
    for (i, s) in services.iter().enumerate() {
        say!("│   {} {s} ✓", branch(i, services.len()));
    }
    let comps: Vec<_> = inv
        .components
        .iter()
        .filter(|(id, _)| in_service(id, service))
        .collect();
    say!("├── Parsing components... ✓");
    for (i, (id, kind)) in comps.iter().enumerate() {
        say!("│   {} {id} ({kind}) ✓", branch(i, comps.len()));
    }
    let envs_ok = v.environments.iter().all(|e| e.result.is_ok());
    say!("├── Resolving environments... {}", mark(envs_ok));
    for (i, e) in v.environments.iter().enumerate() {
        say!(
            "│   {} {} {}",
            branch(i, v.environments.len()),
            e.name,
            mark(e.result.is_ok())
        );
    }
    let graphs: Vec<_> = v
        .environments
        .iter()
        .filter_map(|e| e.result.as_ref().ok().map(|(_, g)| (&e.name, g)))
        .collect();
    if envs_ok {
        say!("├── Building dependency graph... ✓");
        let same = graphs.windows(2).all(|w| w[0].1.waves == w[1].1.waves);
        for (env, graph) in &graphs {
            if !same {
                say!("│   {env}:");
            }
            for (n, wave) in graph.waves.iter().enumerate() {
                let names: Vec<String> = wave
                    .iter()
                    .filter(|id| in_service(id, service))
                    .map(|id| {
                        if service.is_some() {
                            id.component.clone()
                        } else {
                            id.to_string()
                        }
                    })
                    .collect();
                if !names.is_empty() {
                    say!("│   Wave {}: {}", n + 1, names.join(", "));
                }
            }
            if same {
                break;
            }
        }
        say!("├── Validating references... ✓");
        say!("├── Checking for cycles... ✓");
        let judged: Vec<_> = v
            .environments
            .iter()
            .filter_map(|e| e.policy.as_ref())
            .collect();
        let policies = judged.iter().map(|p| p.policies).max().unwrap_or(0);
        let passed = judged.iter().all(|p| p.problems.is_empty());
        let warned = relevant_warnings(v, service);
        let noun = if policies == 1 { "policy" } else { "policies" };
        let detail = match (passed, policies, warned.len()) {
            // The problems below say what failed.
            (false, ..) => String::new(),
            (true, 0, _) => " (no policies)".to_owned(),
            (true, p, 0) => format!(" ({p} {noun})"),
            (true, p, w) => format!(" ({p} {noun}, {w} warning{})", plural(w)),
        };
        say!("└── Running policy checks... {}{detail}", mark(passed));
        if !warned.is_empty() {
            eprintln!("{}", warnings(&warned));
        }
        say!();
        if passed {
            say!("✓ Stack configuration is valid!");
        } else {
            let list = relevant(v, service);
            eprintln!("{}", problems(&list, &v.sources));
            say!(
                "\n✗ {} problem{} found in stack {}",
                list.len(),
                plural(list.len()),
                v.stack
            );
        }
    } else {
        say!("└── Stopped: fix the problems below");
        say!();
        let list = relevant(v, service);
        eprintln!("{}", problems(&list, &v.sources));
        say!(
            "\n✗ {} problem{} found in stack {}",
            list.len(),
            plural(list.len()),
            v.stack
        );
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn report_json(v: &Validation, service: Option<&str>) -> serde_json::Value {
    json!({
        "stack": v.stack,
        "valid": v.is_ok(),
        "environments": v.environments.iter().map(|e| json!({
            "name": e.name,
            "valid": e.is_ok(),
            "policies": e.policy.as_ref().map(|p| p.policies),
            "waves": e.result.as_ref().ok().map(|(_, g)| g.waves.iter().map(|w| {
                w.iter().filter(|id| in_service(id, service)).map(ToString::to_string).collect::<Vec<_>>()
            }).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "problems": relevant(v, service).into_iter().map(problem_json).collect::<Vec<_>>(),
        "warnings": relevant_warnings(v, service).into_iter().map(problem_json).collect::<Vec<_>>(),
    })
}
