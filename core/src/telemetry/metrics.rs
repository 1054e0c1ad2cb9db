//! A container component's metrics (pure): which CloudWatch series `panka metrics` reads in its
//! one `GetMetricData` call, over which window, and what the datapoints say.
//!
//! The load balancer's target group metrics (`AWS/ApplicationELB`) give the request count, the
//! share of 5XX responses and the p50/p99 target response time; the ECS service metrics
//! (`AWS/ECS`) give CPU and memory use. The window is read as **one period**: CloudWatch then
//! computes each statistic over the whole window (a percentile of every response, not of
//! per-minute percentiles). A series without a datapoint is "no data" — never a zero that was not
//! measured.

use serde::Serialize;

/// Retention of CloudWatch's datapoints, and the period each resolution needs: one minute for
/// 15 days, five minutes for 63 days, one hour for 455 days.
const RESOLUTIONS: [(i64, i64); 3] = [(15 * 86_400, 60), (63 * 86_400, 300), (455 * 86_400, 3_600)];

/// The longest window CloudWatch keeps datapoints for (455 days).
pub const MAX_WINDOW_SECS: i64 = 455 * 86_400;

/// The window a read covers, in seconds since the Unix epoch, as one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start (inclusive), on a multiple of the resolution.
    pub start: i64,
    /// End (exclusive): `start + period`.
    pub end: i64,
    /// The period: the whole window, a multiple of the resolution its age needs.
    pub period: i64,
}

/// The window of the last `since_secs` before `now` (both in seconds): its start rounded down to
/// the resolution CloudWatch keeps at that age, its length rounded up to a multiple of it, so
/// one period covers it all. A window longer than CloudWatch keeps data for is cut to that.
pub fn window(now: i64, since_secs: u64) -> Window {
    let since = i64::try_from(since_secs)
        .unwrap_or(MAX_WINDOW_SECS)
        .clamp(1, MAX_WINDOW_SECS);
    let unit = RESOLUTIONS
        .iter()
        .find(|(age, _)| since <= *age)
        .map_or(3_600, |(_, unit)| *unit);
    let start = (now - since).div_euclid(unit) * unit;
    let period = ((now - start + unit - 1) / unit).max(1) * unit;
    Window {
        start,
        end: start + period,
        period,
    }
}

/// What the metrics of one container component are read for, from what state records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricTarget {
    /// The ECS cluster's name (`ClusterName`).
    pub cluster: String,
    /// The ECS service's name (`ServiceName`).
    pub service: String,
    /// `(TargetGroup, LoadBalancer)` dimensions (`targetgroup/…`, `app/…`) when it serves
    /// behind the stack's load balancer.
    pub load_balancer: Option<(String, String)>,
}

/// One series to read: a metric of a namespace, its dimensions, one statistic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The query id (`requests`, `errors`, `p50`, `p99`, `cpu`, `memory`).
    pub id: &'static str,
    /// `AWS/ApplicationELB` or `AWS/ECS`.
    pub namespace: &'static str,
    /// The metric's name.
    pub metric: &'static str,
    /// The statistic (`Sum`, `Average`, `p50`, …).
    pub stat: &'static str,
    /// Name and value of each dimension.
    pub dimensions: Vec<(&'static str, String)>,
}

/// The load balancer's series: id, metric, statistic.
const LOAD_BALANCER: [(&str, &str, &str); 4] = [
    ("requests", "RequestCount", "Sum"),
    ("errors", "HTTPCode_Target_5XX_Count", "Sum"),
    ("p50", "TargetResponseTime", "p50"),
    ("p99", "TargetResponseTime", "p99"),
];

/// The ECS service's series.
const SERVICE: [(&str, &str, &str); 2] = [
    ("cpu", "CPUUtilization", "Average"),
    ("memory", "MemoryUtilization", "Average"),
];

/// Every series `panka metrics` reads for `target`: the load balancer's when it has one, and
/// always the service's.
pub fn series(target: &MetricTarget) -> Vec<Series> {
    let mut out = Vec::new();
    if let Some((target_group, load_balancer)) = &target.load_balancer {
        for (id, metric, stat) in LOAD_BALANCER {
            out.push(Series {
                id,
                namespace: "AWS/ApplicationELB",
                metric,
                stat,
                dimensions: vec![
                    ("TargetGroup", target_group.clone()),
                    ("LoadBalancer", load_balancer.clone()),
                ],
            });
        }
    }
    for (id, metric, stat) in SERVICE {
        out.push(Series {
            id,
            namespace: "AWS/ECS",
            metric,
            stat,
            dimensions: vec![
                ("ClusterName", target.cluster.clone()),
                ("ServiceName", target.service.clone()),
            ],
        });
    }
    out
}

/// What the metrics say over the window. `None` is "no data": CloudWatch holds no datapoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Whether the component serves behind the load balancer (the request rows apply).
    pub load_balanced: bool,
    /// Requests to its targets.
    pub request_count: Option<f64>,
    /// 5XX responses of its targets, in percent of the requests (none without requests).
    pub error_rate_percent: Option<f64>,
    /// Median target response time, in milliseconds.
    pub p50_latency_ms: Option<f64>,
    /// 99th percentile target response time, in milliseconds.
    pub p99_latency_ms: Option<f64>,
    /// Average CPU use of the service's tasks, in percent of what they reserve.
    pub cpu_percent: Option<f64>,
    /// Average memory use of the service's tasks, in percent of what they reserve.
    pub memory_percent: Option<f64>,
}

/// What the datapoints of each series (`values(id)`, empty when CloudWatch had none) say. One
/// period covers the window, so a series has one datapoint; should CloudWatch split it anyway,
/// counts are added, averages averaged and a percentile is the highest of its datapoints.
pub fn summarize<'a>(load_balanced: bool, values: impl Fn(&str) -> &'a [f64]) -> Metrics {
    let some = |id: &str| Some(values(id)).filter(|v| !v.is_empty());
    let sum = |id: &str| some(id).map(|v| v.iter().sum::<f64>());
    let mean = |id: &str| some(id).map(|v| v.iter().sum::<f64>() / v.len() as f64);
    let highest = |id: &str| some(id).and_then(|v| v.iter().copied().reduce(f64::max));
    let request_count = sum("requests");
    // The load balancer publishes no 5XX datapoint for a period without 5XX responses: with
    // requests measured, a missing error count is zero errors.
    let error_rate_percent = request_count
        .filter(|r| *r > 0.0)
        .map(|r| 100.0 * sum("errors").unwrap_or(0.0) / r);
    Metrics {
        load_balanced,
        request_count,
        error_rate_percent,
        p50_latency_ms: highest("p50").map(|s| s * 1000.0),
        p99_latency_ms: highest("p99").map(|s| s * 1000.0),
        cpu_percent: mean("cpu"),
        memory_percent: mean("memory"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn target(load_balanced: bool) -> MetricTarget {
        MetricTarget {
            cluster: "shop-dev".into(),
            service: "shop-dev-web-api".into(),
            load_balancer: load_balanced.then(|| {
                (
                    "targetgroup/shop-dev-web-api/0123".to_owned(),
                    "app/shop-dev-alb/4567".to_owned(),
                )
            }),
        }
    }

    fn summary(load_balanced: bool, data: &[(&str, &[f64])]) -> Metrics {
        let map: BTreeMap<&str, Vec<f64>> = data.iter().map(|(id, v)| (*id, v.to_vec())).collect();
        summarize(load_balanced, |id| map.get(id).map_or(&[], Vec::as_slice))
    }

    #[test]
    fn an_hour_is_one_period_of_whole_minutes() {
        // 56 s past a minute: from the minute an hour before, one period of 61 minutes.
        let now = 1_700_000_096;
        let w = window(now, 3_600);
        assert_eq!(w.start % 60, 0);
        assert_eq!(w.start, now - 3_600 - 56);
        assert_eq!(w.period, 3_660);
        assert_eq!(w.end, w.start + w.period);
        assert!(w.end >= now);
        // On a whole minute nothing is added.
        let w = window(1_700_000_040, 3_600);
        assert_eq!((w.period, w.end), (3_600, 1_700_000_040));
    }

    #[test]
    fn older_windows_use_the_coarser_periods_cloudwatch_keeps() {
        let now = 1_700_000_000;
        let w = window(now, 20 * 86_400);
        assert_eq!((w.start % 300, w.period % 300), (0, 0));
        assert!(w.start <= now - 20 * 86_400 && w.end >= now);
        let w = window(now, 100 * 86_400);
        assert_eq!((w.start % 3_600, w.period % 3_600), (0, 0));
        // Longer than CloudWatch keeps anything: cut to its retention.
        let w = window(now, 1_000 * 86_400);
        assert!(w.start >= now - MAX_WINDOW_SECS - 3_600, "{w:?}");
        // A zero-length window still asks for one minute.
        assert_eq!(window(now, 0).period, 60);
    }

    #[test]
    fn a_service_behind_the_load_balancer_reads_six_series_and_a_worker_two() {
        let all = series(&target(true));
        let ids: Vec<&str> = all.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["requests", "errors", "p50", "p99", "cpu", "memory"]);
        let p99 = &all[3];
        assert_eq!(
            (p99.namespace, p99.metric, p99.stat),
            ("AWS/ApplicationELB", "TargetResponseTime", "p99")
        );
        assert_eq!(
            p99.dimensions,
            [
                (
                    "TargetGroup",
                    "targetgroup/shop-dev-web-api/0123".to_owned()
                ),
                ("LoadBalancer", "app/shop-dev-alb/4567".to_owned())
            ]
        );
        let worker = series(&target(false));
        assert_eq!(worker.len(), 2);
        assert_eq!(
            worker[0].dimensions,
            [
                ("ClusterName", "shop-dev".to_owned()),
                ("ServiceName", "shop-dev-web-api".to_owned())
            ]
        );
    }

    #[test]
    fn the_datapoints_give_counts_rates_latencies_in_ms_and_averages() {
        let m = summary(
            true,
            &[
                ("requests", &[125_000.0, 432.0]),
                ("errors", &[25.0]),
                ("p50", &[0.045]),
                ("p99", &[0.25, 0.32]),
                ("cpu", &[40.0, 50.0]),
                ("memory", &[62.0]),
            ],
        );
        assert_eq!(m.request_count, Some(125_432.0));
        let rate = m.error_rate_percent.expect("a rate");
        assert!((rate - 0.019_93).abs() < 1e-4, "{rate}");
        assert_eq!(m.p50_latency_ms, Some(45.0));
        assert_eq!(m.p99_latency_ms, Some(320.0));
        assert_eq!(m.cpu_percent, Some(45.0));
        assert_eq!(m.memory_percent, Some(62.0));
        assert!(m.load_balanced);
    }

    #[test]
    fn no_datapoint_is_no_data_never_zero() {
        let m = summary(true, &[]);
        assert_eq!(
            m,
            Metrics {
                load_balanced: true,
                request_count: None,
                error_rate_percent: None,
                p50_latency_ms: None,
                p99_latency_ms: None,
                cpu_percent: None,
                memory_percent: None,
            }
        );
    }

    #[test]
    fn requests_without_a_5xx_datapoint_are_a_zero_error_rate_and_no_requests_no_rate() {
        let clean = summary(true, &[("requests", &[40.0])]);
        assert_eq!(clean.error_rate_percent, Some(0.0));
        let idle = summary(true, &[("requests", &[0.0]), ("errors", &[0.0])]);
        assert_eq!(idle.request_count, Some(0.0));
        assert_eq!(idle.error_rate_percent, None);
    }
}
