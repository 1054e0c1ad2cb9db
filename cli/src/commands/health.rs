//! `panka health`: each component's health checks — for ECS services the load balancer's target
//! health, container health, running against desired tasks with why the last one stopped, and
//! the deployment's rollout; for stateful kinds their AWS status — one box per component.

use std::process::ExitCode;

use clap::Args;
use panka_controller::telemetry::ComponentHealth;
use panka_core::model::ComponentId;
use panka_core::telemetry::health::{Check, Mark};
use serde_json::json;

use super::{open_session, resolve_target, runtime, Resolved, TargetArgs};
use crate::app::{GlobalArgs, OutputFormat};
use crate::render::{boxed, print_data, say_raw};

/// Arguments of `panka health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only this component, `service/component` (default: every component in scope).
    #[arg(long, short = 'c', value_name = "SERVICE/COMPONENT")]
    pub component: Option<String>,
}

/// Runs `panka health`. Exit code 0 when every check passes, 1 otherwise.
pub fn run(global: &GlobalArgs, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let only = args
        .component
        .as_ref()
        .map(|c| ComponentId::try_from(c.clone()).map_err(|e| anyhow::anyhow!("--component: {e}")))
        .transpose()?;
    let Some(Resolved {
        desired,
        graph,
        mut target,
    }) = resolve_target(global, &args.target)?
    else {
        return Ok(ExitCode::FAILURE);
    };
    if let Some(id) = &only {
        if !desired.components.contains_key(id) {
            return Err(super::no_component(&desired, id));
        }
        // The component's service is the scope: the others are read from state.
        target.service = Some(id.service.clone());
    }
    let health = runtime()?.block_on(async {
        let session = open_session(global, &desired).await?;
        anyhow::Ok(
            session
                .health(&target, &desired, &graph, only.as_ref())
                .await?,
        )
    })?;
    if global.output == OutputFormat::Table {
        say_raw!("{}", health_text(&health));
    } else {
        print_data(global.output, &health_json(&health))?;
    }
    Ok(if health.iter().all(ComponentHealth::healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `✓` passing, `✗` failing, `…` still changing.
fn glyph(mark: Mark) -> &'static str {
    match mark {
        Mark::Ok => "✓",
        Mark::Progressing => "…",
        Mark::Failing => "✗",
    }
}

/// The user guide's box per component: `Readiness:  ✗ Failing`, what went wrong indented under
/// its check.
fn health_text(health: &[ComponentHealth]) -> String {
    health
        .iter()
        .map(|c| {
            let lines = c.checks.iter().flat_map(|check| {
                std::iter::once(format!(
                    "{:<12}{} {}",
                    format!("{}:", check.name),
                    glyph(check.mark),
                    check.summary
                ))
                .chain(check.details.iter().map(|d| format!("  {d}")))
            });
            boxed(&format!("Health: {}", c.component), lines)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `health --output json|yaml` prints.
fn health_json(health: &[ComponentHealth]) -> serde_json::Value {
    let check = |c: &Check| {
        json!({
            "name": c.name,
            "state": c.mark,
            "summary": c.summary,
            "details": c.details,
        })
    };
    json!(health
        .iter()
        .map(|c| json!({
            "component": c.component.to_string(),
            "kind": c.kind,
            "healthy": c.healthy(),
            "checks": c.checks.iter().map(check).collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, mark: Mark, summary: &str, details: &[&str]) -> Check {
        Check {
            name,
            mark,
            summary: summary.into(),
            details: details.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn api() -> ComponentHealth {
        ComponentHealth {
            component: ComponentId::new("notification-service", "api"),
            kind: "MicroService",
            checks: vec![
                check(
                    "Readiness",
                    Mark::Failing,
                    "Failing (0/2 targets healthy)",
                    &["Error: 10.0.1.5:8080 unhealthy: Target.Timeout: Request timed out"],
                ),
                check("Liveness", Mark::Ok, "Passing (2/2 tasks healthy)", &[]),
                check("Tasks", Mark::Ok, "2/2 running", &[]),
                check("Deployment", Mark::Progressing, "In progress", &[]),
            ],
        }
    }

    #[test]
    fn each_component_is_a_box_of_marked_checks_with_what_went_wrong_under_them() {
        let queue = ComponentHealth {
            component: ComponentId::new("notification-service", "queue"),
            kind: "SQS",
            checks: vec![check("Status", Mark::Ok, "active", &[])],
        };
        let text = health_text(&[api(), queue]);
        let expected = "\
┌─────────────────────────────────────────────────────────────────────┐
│ Health: notification-service/api                                    │
├─────────────────────────────────────────────────────────────────────┤
│ Readiness:  ✗ Failing (0/2 targets healthy)                         │
│   Error: 10.0.1.5:8080 unhealthy: Target.Timeout: Request timed out │
│ Liveness:   ✓ Passing (2/2 tasks healthy)                           │
│ Tasks:      ✓ 2/2 running                                           │
│ Deployment: … In progress                                           │
└─────────────────────────────────────────────────────────────────────┘

┌────────────────────────────────────┐
│ Health: notification-service/queue │
├────────────────────────────────────┤
│ Status:     ✓ active               │
└────────────────────────────────────┘
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_lists_every_check_and_whether_the_component_is_healthy() {
        let json = health_json(&[api()]);
        assert_eq!(json[0]["component"], "notification-service/api");
        assert_eq!(json[0]["healthy"], false);
        assert_eq!(json[0]["checks"][0]["name"], "Readiness");
        assert_eq!(json[0]["checks"][0]["state"], "failing");
        assert_eq!(json[0]["checks"][3]["state"], "progressing");
        assert_eq!(json[0]["checks"][1]["details"], serde_json::json!([]));
    }
}
