//! A component's health as `panka health` tells it (pure): named checks, each passing, still
//! progressing or failing, with what went wrong.
//!
//! An ECS service (MicroService, Worker) is checked on what AWS says of it: **Readiness** — the
//! load balancer's target health (a MicroService behind it); **Liveness** — the container health
//! check of its running tasks, when it has one; **Tasks** — running against desired, with the
//! reason the last task stopped; **Deployment** — the rollout state of its deployments (the
//! circuit breaker marks a failed one). A stateful component (RDS, ElastiCache, DynamoDB, S3,
//! SQS) has one check, **Status**: its AWS status as observe reads it.

use jiff::Timestamp;
use serde::Serialize;

use crate::plan::{Health, Observation};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mark {
    /// Passing.
    Ok,
    /// Still changing (a rollout, targets registering): neither passing nor failing yet.
    Progressing,
    /// Failing.
    Failing,
}

/// One check of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `Readiness`, `Liveness`, `Tasks`, `Deployment` or `Status`.
    pub name: &'static str,
    /// How it came out.
    pub mark: Mark,
    /// In a few words: `Passing (2/2 targets healthy)`, `1/2 running`, `available`.
    pub summary: String,
    /// What went wrong, or what else there is to know, one line each.
    pub details: Vec<String>,
}

impl Check {
    fn new(name: &'static str, mark: Mark, summary: impl Into<String>) -> Check {
        Check {
            name,
            mark,
            summary: summary.into(),
            details: Vec::new(),
        }
    }
}

/// One registered target of a load balancer target group, as `DescribeTargetHealth` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetReading {
    /// `ip:port` (or the id AWS gives).
    pub target: String,
    /// `healthy`, `unhealthy`, `initial`, `draining`, `unused`, `unavailable`.
    pub state: String,
    /// AWS's reason code (`Target.ResponseCodeMismatch`), when not healthy.
    pub reason: Option<String>,
    /// AWS's description of it.
    pub description: Option<String>,
}

/// One deployment of an ECS service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentReading {
    /// `PRIMARY` (the newest) or `ACTIVE` (an older one still running tasks).
    pub status: String,
    /// `COMPLETED`, `IN_PROGRESS` or `FAILED` (the circuit breaker's verdict), when AWS gives one.
    pub rollout: Option<String>,
    /// Why it is in that state.
    pub reason: Option<String>,
}

/// A stopped task of an ECS service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoppedTask {
    /// The task id.
    pub task: String,
    /// Why it stopped, in AWS's words.
    pub reason: Option<String>,
    /// AWS's stop code (`EssentialContainerExited`, `TaskFailedToStart`, …).
    pub stop_code: Option<String>,
    /// The exit code of its essential container, when it exited.
    pub exit_code: Option<i32>,
    /// When it stopped.
    pub stopped_at: Option<Timestamp>,
}

/// What AWS says of an ECS service, for its checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceReading {
    /// Tasks wanted.
    pub desired: i32,
    /// Tasks running.
    pub running: i32,
    /// Tasks starting.
    pub pending: i32,
    /// Its deployments, the primary first.
    pub deployments: Vec<DeploymentReading>,
    /// Its load balancer targets; `None` when it serves behind none.
    pub targets: Option<Vec<TargetReading>>,
    /// Container health of each running task (`HEALTHY`, `UNHEALTHY`, `UNKNOWN`), by task id.
    pub liveness: Vec<(String, String)>,
    /// Its stopped tasks AWS still lists (about an hour), any order.
    pub stopped: Vec<StoppedTask>,
}

/// The checks of a component: what observe saw (`observed`) and, for an ECS service, what AWS
/// says of its tasks, targets and deployments (`service`).
pub fn checks(observed: &Observation, service: Option<&ServiceReading>) -> Vec<Check> {
    match (observed.exists, service) {
        (true, Some(s)) => service_checks(s),
        _ => vec![status_check(observed)],
    }
}

/// Whether every check passes.
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.mark == Mark::Ok)
}

/// A stateful component's one check: its AWS status.
fn status_check(o: &Observation) -> Check {
    let status = if o.status.is_empty() { "-" } else { &o.status };
    match &o.health {
        Health::Healthy => Check::new("Status", Mark::Ok, status),
        Health::Progressing => Check::new("Status", Mark::Progressing, status),
        Health::Degraded(why) => {
            let mut c = Check::new("Status", Mark::Failing, status);
            c.details.push(why.clone());
            c
        }
        Health::Missing => Check::new("Status", Mark::Failing, "Missing (not found in AWS)"),
    }
}

fn service_checks(s: &ServiceReading) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(targets) = &s.targets {
        out.push(readiness(s.desired, targets));
    }
    out.extend(liveness(&s.liveness));
    out.push(tasks(s));
    out.push(deployment(&s.deployments));
    out
}

/// Readiness: the load balancer's health checks of the service's targets. Draining and unused
/// targets are on their way out and do not count.
fn readiness(desired: i32, targets: &[TargetReading]) -> Check {
    let counted: Vec<&TargetReading> = targets
        .iter()
        .filter(|t| !matches!(t.state.as_str(), "draining" | "unused"))
        .collect();
    let healthy = counted.iter().filter(|t| t.state == "healthy").count();
    let total = counted.len();
    let of = format!("{healthy}/{total} targets healthy");
    let mut check = match (total, healthy) {
        (0, _) if desired == 0 => Check::new("Readiness", Mark::Ok, "No tasks wanted"),
        (0, _) => Check::new(
            "Readiness",
            Mark::Failing,
            "Failing (no targets registered)",
        ),
        (t, h) if t == h => Check::new("Readiness", Mark::Ok, format!("Passing ({of})")),
        _ if counted
            .iter()
            .all(|t| matches!(t.state.as_str(), "healthy" | "initial")) =>
        {
            Check::new(
                "Readiness",
                Mark::Progressing,
                format!("Registering ({of})"),
            )
        }
        _ => Check::new("Readiness", Mark::Failing, format!("Failing ({of})")),
    };
    for t in counted.iter().filter(|t| t.state != "healthy") {
        let why = match (&t.reason, &t.description) {
            (Some(r), Some(d)) => format!(": {r}: {d}"),
            (Some(x), None) | (None, Some(x)) => format!(": {x}"),
            (None, None) => String::new(),
        };
        check
            .details
            .push(format!("Error: {} {}{why}", t.target, t.state));
    }
    check
}

/// Liveness: the container health check of the running tasks; none when no task reports one.
fn liveness(tasks: &[(String, String)]) -> Option<Check> {
    let known: Vec<&(String, String)> = tasks
        .iter()
        .filter(|(_, h)| matches!(h.as_str(), "HEALTHY" | "UNHEALTHY"))
        .collect();
    if known.is_empty() {
        return None;
    }
    let unhealthy: Vec<&str> = known
        .iter()
        .filter(|(_, h)| h == "UNHEALTHY")
        .map(|(t, _)| t.as_str())
        .collect();
    let n = known.len();
    Some(if unhealthy.is_empty() {
        Check::new(
            "Liveness",
            Mark::Ok,
            format!("Passing ({n}/{n} tasks healthy)"),
        )
    } else {
        let mut c = Check::new(
            "Liveness",
            Mark::Failing,
            format!("Failing ({}/{n} tasks healthy)", n - unhealthy.len()),
        );
        c.details.extend(
            unhealthy
                .iter()
                .map(|t| format!("Error: task {t} unhealthy")),
        );
        c
    })
}

/// Whether a deployment is still rolling out: AWS says so, or (without a rollout state) tasks
/// are still starting or an older deployment still runs.
fn rolling_out(s: &ServiceReading) -> bool {
    match s.deployments.first().and_then(|d| d.rollout.as_deref()) {
        Some(rollout) => rollout == "IN_PROGRESS",
        None => s.pending > 0 || s.deployments.len() > 1,
    }
}

/// Tasks: running against desired, and why the last task stopped.
fn tasks(s: &ServiceReading) -> Check {
    let mut summary = format!("{}/{} running", s.running, s.desired);
    if s.pending > 0 {
        summary.push_str(&format!(", {} pending", s.pending));
    }
    let mark = if s.running >= s.desired {
        Mark::Ok
    } else if rolling_out(s) {
        Mark::Progressing
    } else {
        Mark::Failing
    };
    let mut check = Check::new("Tasks", mark, summary);
    // The newest stop; one without a time sorts as the oldest.
    if let Some(last) = s.stopped.iter().max_by_key(|t| t.stopped_at) {
        let mut line = format!("Last stopped: task {}", last.task);
        if let Some(at) = last.stopped_at {
            line.push_str(&format!(" at {}", at.strftime("%Y-%m-%d %H:%M:%S UTC")));
        }
        line.push_str(&format!(
            ": {}",
            last.reason.as_deref().unwrap_or("no reason given")
        ));
        match (&last.stop_code, last.exit_code) {
            (Some(code), Some(exit)) => line.push_str(&format!(" ({code}, exit code {exit})")),
            (Some(code), None) => line.push_str(&format!(" ({code})")),
            (None, Some(exit)) => line.push_str(&format!(" (exit code {exit})")),
            (None, None) => {}
        }
        check.details.push(line);
    }
    check
}

/// Deployment: a failed rollout (the circuit breaker's verdict) fails; the primary's rollout
/// state otherwise.
fn deployment(deployments: &[DeploymentReading]) -> Check {
    if let Some(failed) = deployments
        .iter()
        .find(|d| d.rollout.as_deref() == Some("FAILED"))
    {
        return Check::new(
            "Deployment",
            Mark::Failing,
            format!(
                "Failed: {}",
                failed.reason.as_deref().unwrap_or("no reason given")
            ),
        );
    }
    let Some(primary) = deployments.first() else {
        return Check::new("Deployment", Mark::Failing, "No deployment");
    };
    match primary.rollout.as_deref() {
        Some("COMPLETED") => Check::new("Deployment", Mark::Ok, "Completed"),
        Some("IN_PROGRESS") => {
            let mut c = Check::new("Deployment", Mark::Progressing, "In progress");
            c.details.extend(primary.reason.clone());
            c
        }
        Some(other) => Check::new("Deployment", Mark::Progressing, other.to_owned()),
        // No rollout state (an emulator): one deployment is a steady service.
        None if deployments.len() == 1 => Check::new("Deployment", Mark::Ok, "Steady"),
        None => Check::new(
            "Deployment",
            Mark::Progressing,
            format!("In progress ({} deployments)", deployments.len()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(state: &str) -> TargetReading {
        TargetReading {
            target: "10.0.1.5:8080".into(),
            state: state.into(),
            ..TargetReading::default()
        }
    }

    fn completed() -> Vec<DeploymentReading> {
        vec![DeploymentReading {
            status: "PRIMARY".into(),
            rollout: Some("COMPLETED".into()),
            reason: None,
        }]
    }

    fn service() -> ServiceReading {
        ServiceReading {
            desired: 2,
            running: 2,
            pending: 0,
            deployments: completed(),
            targets: Some(vec![target("healthy"), target("healthy")]),
            liveness: vec![
                ("t1".into(), "HEALTHY".into()),
                ("t2".into(), "HEALTHY".into()),
            ],
            stopped: Vec::new(),
        }
    }

    fn summaries(checks: &[Check]) -> Vec<(&str, Mark, &str)> {
        checks
            .iter()
            .map(|c| (c.name, c.mark, c.summary.as_str()))
            .collect()
    }

    fn exists() -> Observation {
        Observation {
            exists: true,
            status: "2/2 running".into(),
            health: Health::Healthy,
            ..Observation::default()
        }
    }

    #[test]
    fn a_healthy_service_passes_every_check() {
        let checks = checks(&exists(), Some(&service()));
        assert_eq!(
            summaries(&checks),
            [
                ("Readiness", Mark::Ok, "Passing (2/2 targets healthy)"),
                ("Liveness", Mark::Ok, "Passing (2/2 tasks healthy)"),
                ("Tasks", Mark::Ok, "2/2 running"),
                ("Deployment", Mark::Ok, "Completed"),
            ]
        );
        assert!(healthy(&checks));
    }

    #[test]
    fn unhealthy_or_missing_targets_fail_readiness_with_the_reason() {
        let mut s = service();
        s.targets = Some(vec![
            target("healthy"),
            TargetReading {
                reason: Some("Target.ResponseCodeMismatch".into()),
                description: Some("Health checks failed with these codes: [502]".into()),
                ..target("unhealthy")
            },
            target("draining"),
        ]);
        let checks = checks(&exists(), Some(&s));
        assert_eq!(checks[0].summary, "Failing (1/2 targets healthy)");
        assert_eq!(checks[0].mark, Mark::Failing);
        assert_eq!(
            checks[0].details,
            ["Error: 10.0.1.5:8080 unhealthy: Target.ResponseCodeMismatch: Health checks failed with these codes: [502]"]
        );
        assert!(!healthy(&checks));

        s.targets = Some(Vec::new());
        let none = checks_of(&s);
        assert_eq!(
            (none[0].mark, none[0].summary.as_str()),
            (Mark::Failing, "Failing (no targets registered)")
        );
        s.desired = 0;
        s.running = 0;
        assert_eq!(checks_of(&s)[0].summary, "No tasks wanted");

        s.desired = 2;
        s.targets = Some(vec![target("healthy"), target("initial")]);
        let registering = checks_of(&s);
        assert_eq!(
            (registering[0].mark, registering[0].summary.as_str()),
            (Mark::Progressing, "Registering (1/2 targets healthy)")
        );
    }

    fn checks_of(s: &ServiceReading) -> Vec<Check> {
        checks(&exists(), Some(s))
    }

    #[test]
    fn a_worker_has_no_readiness_and_no_liveness_without_a_health_check() {
        let mut s = service();
        s.targets = None;
        s.liveness = vec![("t1".into(), "UNKNOWN".into())];
        let names: Vec<&str> = checks_of(&s).iter().map(|c| c.name).collect();
        assert_eq!(names, ["Tasks", "Deployment"]);
    }

    #[test]
    fn an_unhealthy_container_fails_liveness_naming_the_task() {
        let mut s = service();
        s.liveness[1].1 = "UNHEALTHY".into();
        let live = checks_of(&s).remove(1);
        assert_eq!(live.summary, "Failing (1/2 tasks healthy)");
        assert_eq!(live.details, ["Error: task t2 unhealthy"]);
    }

    #[test]
    fn missing_tasks_fail_after_a_rollout_and_progress_during_one_with_the_last_stop_told() {
        let mut s = service();
        s.running = 1;
        s.stopped = vec![
            StoppedTask {
                task: "old".into(),
                reason: Some("Scaling activity initiated by deployment".into()),
                stop_code: Some("ServiceSchedulerInitiated".into()),
                stopped_at: Some("2026-11-23T14:00:00Z".parse().expect("time")),
                ..StoppedTask::default()
            },
            StoppedTask {
                task: "0123abcd".into(),
                reason: Some("Essential container in task exited".into()),
                stop_code: Some("EssentialContainerExited".into()),
                exit_code: Some(1),
                stopped_at: Some("2026-11-23T14:35:22Z".parse().expect("time")),
            },
        ];
        let tasks = checks_of(&s).remove(2);
        assert_eq!(
            (tasks.mark, tasks.summary.as_str()),
            (Mark::Failing, "1/2 running")
        );
        assert_eq!(
            tasks.details,
            ["Last stopped: task 0123abcd at 2026-11-23 14:35:22 UTC: Essential container in task exited (EssentialContainerExited, exit code 1)"]
        );
        s.deployments[0].rollout = Some("IN_PROGRESS".into());
        s.pending = 1;
        let tasks = checks_of(&s).remove(2);
        assert_eq!(
            (tasks.mark, tasks.summary.as_str()),
            (Mark::Progressing, "1/2 running, 1 pending")
        );
        // Without a rollout state (an emulator), tasks starting are a rollout.
        s.deployments[0].rollout = None;
        assert_eq!(checks_of(&s)[2].mark, Mark::Progressing);
        s.pending = 0;
        assert_eq!(checks_of(&s)[2].mark, Mark::Failing);
    }

    #[test]
    fn a_failed_deployment_fails_with_the_circuit_breakers_reason() {
        let mut s = service();
        s.deployments = vec![
            DeploymentReading {
                status: "PRIMARY".into(),
                rollout: Some("IN_PROGRESS".into()),
                reason: Some("ECS deployment ecs-svc/1 in progress.".into()),
            },
            DeploymentReading {
                status: "ACTIVE".into(),
                rollout: Some("FAILED".into()),
                reason: Some("ECS deployment circuit breaker: tasks failed to start.".into()),
            },
        ];
        let d = checks_of(&s).remove(3);
        assert_eq!(
            (d.mark, d.summary.as_str()),
            (
                Mark::Failing,
                "Failed: ECS deployment circuit breaker: tasks failed to start."
            )
        );
        s.deployments.truncate(1);
        let d = checks_of(&s).remove(3);
        assert_eq!(
            (d.mark, d.summary.as_str()),
            (Mark::Progressing, "In progress")
        );
        assert_eq!(d.details, ["ECS deployment ecs-svc/1 in progress."]);
        s.deployments[0].rollout = None;
        assert_eq!(checks_of(&s)[3].summary, "Steady");
        s.deployments.push(DeploymentReading::default());
        assert_eq!(checks_of(&s)[3].summary, "In progress (2 deployments)");
    }

    #[test]
    fn a_stateful_component_is_checked_on_its_aws_status() {
        let ok = Observation {
            exists: true,
            status: "available".into(),
            health: Health::Healthy,
            ..Observation::default()
        };
        assert_eq!(
            summaries(&checks(&ok, None)),
            [("Status", Mark::Ok, "available")]
        );
        let modifying = Observation {
            status: "modifying".into(),
            health: Health::Progressing,
            ..ok.clone()
        };
        assert_eq!(checks(&modifying, None)[0].mark, Mark::Progressing);
        let stopped = Observation {
            status: "stopped".into(),
            health: Health::Degraded("DB instance is stopped".into()),
            ..ok
        };
        let c = checks(&stopped, None).remove(0);
        assert_eq!(
            (c.mark, c.details.as_slice()),
            (Mark::Failing, &["DB instance is stopped".to_owned()][..])
        );
        // Missing, whatever the kind: one failing Status check.
        let missing = checks(&Observation::default(), Some(&service()));
        assert_eq!(
            summaries(&missing),
            [("Status", Mark::Failing, "Missing (not found in AWS)")]
        );
    }
}
