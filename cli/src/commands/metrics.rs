//! `panka metrics`: a container component's request count, error rate, p50/p99 latency (the load
//! balancer's target group metrics) and CPU and memory use (the ECS service's), over a window,
//! from one CloudWatch `GetMetricData` call. What was not measured says "no data".

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use panka_controller::telemetry::{Metrics, Window};
use panka_core::model::ComponentId;
use panka_core::telemetry::metrics::window;
use serde_json::json;

use super::{open_session, resolve_component, runtime, ComponentArgs};
use crate::app::{parse_duration, GlobalArgs, OutputFormat};
use crate::render::{boxed, print_data, say_raw};

/// Arguments of `panka metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub target: ComponentArgs,
    /// The window: the last `1h`, `30m`, `24h`, … (read as one period: CloudWatch computes each
    /// figure over all of it).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
}

/// Runs `panka metrics`.
pub fn run(global: &GlobalArgs, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let Some((desired, id)) = resolve_component(global, &args.target)? else {
        return Ok(ExitCode::FAILURE);
    };
    // CloudWatch keeps 455 days: a longer window is read (and titled) as that.
    let max = std::time::Duration::from_secs(
        u64::try_from(panka_core::telemetry::metrics::MAX_WINDOW_SECS).unwrap_or(u64::MAX),
    );
    let since = args.since.min(max);
    let window = window(jiff::Timestamp::now().as_second(), since.as_secs());
    let metrics = runtime()?.block_on(async {
        let session = open_session(global, &desired).await?;
        let deployed = session.deployed(&desired, &id, "metrics").await?;
        anyhow::Ok(session.telemetry().metrics(&deployed, window).await?)
    })?;
    if global.output != OutputFormat::Table {
        print_data(global.output, &metrics_json(&id, since, window, &metrics))?;
        return Ok(ExitCode::SUCCESS);
    }
    say_raw!("{}", metrics_text(&id, since, &metrics));
    Ok(ExitCode::SUCCESS)
}

/// What `metrics --output json|yaml` prints: `null` where CloudWatch had no datapoint.
fn metrics_json(id: &ComponentId, since: Duration, w: Window, m: &Metrics) -> serde_json::Value {
    let at = |secs: i64| {
        jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
    };
    json!({
        "component": id.to_string(),
        "since": span(since),
        "window": {"start": at(w.start), "end": at(w.end), "periodSeconds": w.period},
        "loadBalanced": m.load_balanced,
        "requestCount": m.request_count,
        "errorRatePercent": m.error_rate_percent,
        "p50LatencyMs": m.p50_latency_ms,
        "p99LatencyMs": m.p99_latency_ms,
        "cpuPercent": m.cpu_percent,
        "memoryPercent": m.memory_percent,
    })
}

/// The user guide's box: one figure a line, "no data" where nothing was measured, and "no load
/// balancer" on the request lines of a component that serves behind none.
fn metrics_text(id: &ComponentId, since: Duration, m: &Metrics) -> String {
    let no_data = || "no data".to_owned();
    let served = |value: Option<f64>, show: fn(f64) -> String| {
        if m.load_balanced {
            value.map_or_else(no_data, show)
        } else {
            "n/a (no load balancer)".to_owned()
        }
    };
    let rows = [
        ("Request Count:", served(m.request_count, count)),
        (
            "Error Rate:",
            served(m.error_rate_percent, |p| format!("{p:.2}%")),
        ),
        (
            "P50 Latency:",
            served(m.p50_latency_ms, |ms| format!("{ms:.0}ms")),
        ),
        (
            "P99 Latency:",
            served(m.p99_latency_ms, |ms| format!("{ms:.0}ms")),
        ),
        (
            "CPU Usage:",
            m.cpu_percent.map_or_else(no_data, |p| format!("{p:.0}%")),
        ),
        (
            "Memory Usage:",
            m.memory_percent
                .map_or_else(no_data, |p| format!("{p:.0}%")),
        ),
    ];
    boxed(
        &format!("Metrics: {id} (last {})", span(since)),
        rows.into_iter()
            .map(|(label, value)| format!("{label:<18}{value}")),
    )
}

/// A whole count with thousands separators: `125,432`.
fn count(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A window's length as people say it: `1 hour`, `30 minutes`, `2 days`, `90 seconds`.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ComponentId {
        ComponentId::new("notification-service", "api")
    }

    fn measured() -> Metrics {
        Metrics {
            load_balanced: true,
            request_count: Some(125_432.0),
            error_rate_percent: Some(0.0199),
            p50_latency_ms: Some(45.2),
            p99_latency_ms: Some(320.0),
            cpu_percent: Some(45.0),
            memory_percent: Some(62.4),
        }
    }

    #[test]
    fn the_box_is_the_user_guides() {
        let text = metrics_text(&id(), Duration::from_secs(3_600), &measured());
        let expected = "\
┌─────────────────────────────────────────────────┐
│ Metrics: notification-service/api (last 1 hour) │
├─────────────────────────────────────────────────┤
│ Request Count:    125,432                       │
│ Error Rate:       0.02%                         │
│ P50 Latency:      45ms                          │
│ P99 Latency:      320ms                         │
│ CPU Usage:        45%                           │
│ Memory Usage:     62%                           │
└─────────────────────────────────────────────────┘
";
        assert_eq!(text, expected);
    }

    #[test]
    fn what_was_not_measured_says_no_data_and_a_worker_has_no_request_figures() {
        let none = Metrics {
            load_balanced: true,
            request_count: None,
            error_rate_percent: None,
            p50_latency_ms: None,
            p99_latency_ms: None,
            cpu_percent: None,
            memory_percent: None,
        };
        let text = metrics_text(&id(), Duration::from_secs(1_800), &none);
        assert!(text.contains("(last 30 minutes)"), "{text}");
        for label in [
            "Request Count:",
            "Error Rate:",
            "P50 Latency:",
            "P99 Latency:",
            "CPU Usage:",
            "Memory Usage:",
        ] {
            let line = text
                .lines()
                .find(|l| l.contains(label))
                .unwrap_or_else(|| panic!("no {label} in\n{text}"));
            let value = line
                .trim_matches('│')
                .trim()
                .trim_start_matches(label)
                .trim();
            assert_eq!(
                value, "no data",
                "never a zero that was not measured: {line}"
            );
        }
        let worker = Metrics {
            load_balanced: false,
            cpu_percent: Some(12.0),
            ..none
        };
        let text = metrics_text(&id(), Duration::from_secs(3_600), &worker);
        assert!(
            text.contains("│ Request Count:    n/a (no load balancer)"),
            "{text}"
        );
        assert!(text.contains("│ CPU Usage:        12%"), "{text}");
    }

    #[test]
    fn json_has_null_for_no_data_and_the_window() {
        let w = Window {
            start: 1_795_440_000,
            end: 1_795_443_600,
            period: 3_600,
        };
        let mut m = measured();
        m.p99_latency_ms = None;
        let json = metrics_json(&id(), Duration::from_secs(3_600), w, &m);
        assert_eq!(json["requestCount"], 125_432.0);
        assert_eq!(json["p99LatencyMs"], serde_json::Value::Null);
        assert_eq!(json["window"]["start"], "2026-11-23T13:20:00Z");
        assert_eq!(json["window"]["periodSeconds"], 3_600);
        assert_eq!(json["since"], "1 hour");
    }

    #[test]
    fn counts_have_thousands_separators_and_spans_read_as_words() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1_000.0), "1,000");
        assert_eq!(count(125_432.4), "125,432");
        assert_eq!(count(12_345_678.0), "12,345,678");
        assert_eq!(span(Duration::from_secs(3_600)), "1 hour");
        assert_eq!(span(Duration::from_secs(86_400)), "1 day");
        assert_eq!(span(Duration::from_secs(172_800)), "2 days");
        assert_eq!(span(Duration::from_secs(5_400)), "90 minutes");
        assert_eq!(span(Duration::from_secs(90)), "90 seconds");
    }
}
