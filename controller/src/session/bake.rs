//! The bake period (stage: after apply, read-only): the load balancer's metrics of the services
//! a release changed, read from CloudWatch in one `GetMetricData` call per look, and the pure
//! [`panka_core::bake::verdict`] on them. The front-end decides how long to look and rolls the
//! release back (the same way a failed wave goes back) when a threshold is crossed.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use panka_core::bake::{bake_period, verdict, Sample, Thresholds, Verdict};
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::state::StateDocument;
use panka_crds::Kind;

use super::Session;
use crate::driver::DriverError;
use crate::engine::{ApplyReport, EngineError};
use crate::state::{StateError, StateKey};

/// A service behind the load balancer, as CloudWatch names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BakeTarget {
    /// The component.
    pub component: ComponentId,
    /// `targetgroup/{name}/{id}`: the `TargetGroup` dimension.
    pub target_group: String,
    /// `app/{name}/{id}`: the `LoadBalancer` dimension.
    pub load_balancer: String,
}

/// The services among `components` that serve behind the stack's load balancer, from what
/// `state` records (their target groups and the load balancer's ARN).
pub fn bake_targets(state: &StateDocument, components: &[ComponentId]) -> Vec<BakeTarget> {
    let Some(alb) = state
        .components
        .values()
        .find(|c| c.kind == Kind::LoadBalancer.name())
        .and_then(|c| c.identifiers.get("arn"))
        .and_then(|arn| arn.split_once(":loadbalancer/"))
        .map(|(_, dimension)| dimension.to_owned())
    else {
        return Vec::new();
    };
    components
        .iter()
        .filter_map(|id| {
            let recorded = state.components.get(&id.to_string())?;
            let arn = recorded.identifiers.get("targetGroupArn")?;
            let (_, dimension) = arn.rsplit_once(':')?;
            Some(BakeTarget {
                component: id.clone(),
                target_group: dimension.to_owned(),
                load_balancer: alb.clone(),
            })
        })
        .collect()
}

/// What one look found for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct BakeLook {
    /// The service.
    pub component: ComponentId,
    /// What the load balancer measured.
    pub sample: Sample,
    /// What that says.
    pub verdict: Verdict,
}

/// The three series read per service: requests, 5XX responses, p99 response time.
const SERIES: [(&str, &str, &str); 3] = [
    ("requests", "RequestCount", "Sum"),
    ("errors", "HTTPCode_Target_5XX_Count", "Sum"),
    ("p99", "TargetResponseTime", "p99"),
];

impl Session {
    /// What the load balancer measured for each target since `since`, and the verdict under
    /// `thresholds`: one `GetMetricData` call for every target and series.
    pub async fn bake_check(
        &self,
        targets: &[BakeTarget],
        since: SystemTime,
        thresholds: &Thresholds,
    ) -> Result<Vec<BakeLook>, EngineError> {
        let Some(first) = targets.first() else {
            return Ok(Vec::new());
        };
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&self.sdk);
        // CloudWatch keeps these metrics by the minute and rounds a start down to one: the
        // minute the release finished in also holds what the previous release served, which
        // is not this release's doing. So the window starts at the first whole minute after
        // `since` (a bake shorter than that sees no data), and ends well past now.
        let start = next_minute(since);
        let end = start.max(SystemTime::now()) + Duration::from_secs(300);
        let mut request = cloudwatch
            .get_metric_data()
            .start_time(start.into())
            .end_time(end.into());
        for (i, t) in targets.iter().enumerate() {
            for (id, name, stat) in SERIES {
                request = request.metric_data_queries(query(i, t, id, name, stat));
            }
        }
        let out = request.send().await.map_err(|e| {
            DriverError::aws("read the load balancer's metrics", &first.component, &e)
        })?;
        let results = out.metric_data_results();
        let series = |i: usize, id: &str| -> Option<Vec<f64>> {
            let key = format!("{id}{i}");
            results
                .iter()
                .find(|r| r.id() == Some(key.as_str()))
                .map(|r| r.values().to_vec())
                .filter(|v| !v.is_empty())
        };
        Ok(targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let sample = Sample {
                    requests: series(i, "requests").map(|v| v.iter().sum()),
                    errors_5xx: series(i, "errors").map(|v| v.iter().sum()),
                    p99_seconds: series(i, "p99").and_then(|v| v.into_iter().reduce(f64::max)),
                };
                BakeLook {
                    component: t.component.clone(),
                    verdict: verdict(&t.component, &sample, thresholds),
                    sample,
                }
            })
            .collect())
    }
}

/// What a release's bake period watches, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BakePlan {
    /// The release baked.
    pub release: String,
    /// The services it changed that serve behind the load balancer.
    pub targets: Vec<BakeTarget>,
    /// How long.
    pub period: Duration,
    /// When it fails.
    pub thresholds: Thresholds,
}

impl Session {
    /// The bake period `report`'s release needs under `repository`'s `rollback` policy: none
    /// when the policy asks for none, the release changed nothing, or nothing it changed serves
    /// behind the load balancer.
    pub async fn bake_plan(
        &self,
        repository: &DesiredStack,
        report: &ApplyReport,
    ) -> Result<Option<BakePlan>, EngineError> {
        let policy = repository.infra.rollback.as_ref();
        let (Some(period), Some(release)) = (bake_period(policy), &report.release) else {
            return Ok(None);
        };
        let key =
            StateKey::new(&repository.name, &repository.environment).map_err(StateError::from)?;
        let Some(state) = self.backends.state.read(&key).await? else {
            return Ok(None);
        };
        let changed: Vec<ComponentId> = report
            .plan
            .waves
            .iter()
            .flatten()
            .filter(|p| p.action.is_change())
            .map(|p| p.id.clone())
            .collect();
        let targets = bake_targets(&state.document, &changed);
        Ok((!targets.is_empty()).then(|| BakePlan {
            release: release.id.clone(),
            targets,
            period,
            thresholds: Thresholds::of(policy),
        }))
    }

    /// Watches `targets` for `period` from `since`, looking at once and then every sixth of the
    /// period (between 1 s and 30 s): the first crossed threshold's reason, or `None` when the
    /// period passed without one. `on_look` sees every look. A front-end helper that sleeps,
    /// like [`super::step_until_done`]; a cancel stops it (as [`EngineError::Interrupted`]).
    pub async fn bake(
        &self,
        targets: &[BakeTarget],
        since: SystemTime,
        period: Duration,
        thresholds: &Thresholds,
        cancel: &tokio_util::sync::CancellationToken,
        on_look: &(dyn Fn(&[BakeLook]) + Send + Sync),
    ) -> Result<Option<String>, EngineError> {
        let every = (period / 6).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let deadline = tokio::time::Instant::now() + period;
        loop {
            let looked = self.bake_check(targets, since, thresholds).await?;
            on_look(&looked);
            if let Some(reason) = looked.into_iter().find_map(|look| match look.verdict {
                Verdict::Crossed(reason) => Some(reason),
                _ => None,
            }) {
                return Ok(Some(reason));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::select! {
                () = tokio::time::sleep(every.min(deadline - now)) => {}
                () = cancel.cancelled() => return Err(EngineError::Interrupted),
            }
        }
    }
}

/// The first whole minute at or after `t`.
pub fn next_minute(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.div_ceil(60) * 60)
}

fn query(i: usize, t: &BakeTarget, id: &str, name: &str, stat: &str) -> MetricDataQuery {
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    MetricDataQuery::builder()
        .id(format!("{id}{i}"))
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/ApplicationELB")
                        .metric_name(name)
                        .dimensions(dimension("TargetGroup", &t.target_group))
                        .dimensions(dimension("LoadBalancer", &t.load_balancer))
                        .build(),
                )
                .period(60)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}
