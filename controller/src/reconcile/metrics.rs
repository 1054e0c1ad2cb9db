//! The controller's Prometheus metrics (`/metrics`), kept with `prometheus-client`.
//!
//! Names follow Prometheus conventions (`panka_` prefix, `_total` counters, `_seconds`
//! histograms). Labels carry stack, environment, AWS service and operation names only, never a
//! value from a spec.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::budget::Budget;
use crate::driver::CallCounter;

/// A reconcile's target.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
}

/// A reconcile's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `synced`, `applied`, `remediated`, `drifted`, `awaiting_approval`, `progressing`,
    /// `pinned`, `locked`, `invalid`, `error`.
    pub result: String,
}

/// An AWS call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// AWS service, as the SDK names it (`SQS`, `ECS` …).
    pub service: String,
    /// Operation (`GetQueueAttributes` …).
    pub operation: String,
}

/// A target's drift findings of one severity.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`.
    pub severity: String,
}

/// An AWS service (for throttles).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// The service the request was signed for.
    pub service: String,
}

/// Every metric the controller keeps, and the registry they are encoded from.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Reconciles, by result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// How long reconciles took.
    pub reconcile_seconds: Histogram,
    /// Drifted fields each target had at its last check, by severity.
    pub drift_findings: Family<SeverityLabels, Gauge>,
    /// AWS calls, by service and operation.
    pub aws_calls: Family<CallLabels, Counter>,
    /// Throttling answers, by service.
    pub aws_throttles: Family<ServiceLabels, Counter<u64, AtomicU64>>,
    /// Reconciles that found the lock held by someone else.
    pub lock_waits: Family<TargetLabels, Counter>,
    /// Reconciles running now.
    pub in_flight: Gauge,
    /// When each target last reconciled without error (Unix seconds).
    pub last_sync: Family<TargetLabels, Gauge>,
    /// Git fetches that failed.
    pub fetch_failures: Counter,
    /// Reconciles, by target.
    pub target_reconciles: Family<TargetLabels, Counter>,
    /// Every AWS call of the process (every run adds into it); `aws_calls` is brought up to it
    /// when encoded.
    pub calls: CallCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("panka");
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            drift_findings: Family::default(),
            aws_calls: Family::default(),
            aws_throttles: Family::default(),
            lock_waits: Family::default(),
            in_flight: Gauge::default(),
            last_sync: Family::default(),
            fetch_failures: Counter::default(),
            target_reconciles: Family::default(),
            calls: CallCounter::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles of a stack/environment, by result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile took",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "drift_findings",
            "Drifted fields of each target at its last drift check, by severity",
            m.drift_findings.clone(),
        );
        registry.register(
            "aws_calls",
            "AWS API calls, by service and operation",
            m.aws_calls.clone(),
        );
        registry.register(
            "aws_throttles",
            "Throttling answers from AWS, by service (each halves that service's call rate)",
            m.aws_throttles.clone(),
        );
        registry.register(
            "lock_waits",
            "Reconciles that found the stack's lock held by someone else",
            m.lock_waits.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now (at most --concurrency)",
            m.in_flight.clone(),
        );
        registry.register(
            "last_sync_timestamp_seconds",
            "When each target last reconciled without error",
            m.last_sync.clone(),
        );
        registry.register(
            "target_reconciles",
            "Reconciles of each stack/environment",
            m.target_reconciles.clone(),
        );
        registry.register(
            "git_fetch_failures",
            "Fetches of the deployment repository that failed",
            m.fetch_failures.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            ..m
        }
    }

    /// Brings the AWS call counters up to what every run counted.
    fn sync_calls(&self) {
        for ((service, operation), n) in self.calls.snapshot() {
            let counter = self
                .aws_calls
                .get_or_create(&CallLabels { service, operation });
            let seen = counter.get();
            if n > seen {
                counter.inc_by(n - seen);
            }
        }
    }

    /// Brings the throttle counters up to what `budget` saw.
    pub fn sync_throttles(&self, budget: &Budget) {
        for (service, n) in budget.throttles() {
            let counter = self.aws_throttles.get_or_create(&ServiceLabels { service });
            let seen = counter.get();
            if n > seen {
                counter.inc_by(n - seen);
            }
        }
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> String {
        self.sync_calls();
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_as_prometheus_text() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&ResultLabels {
                result: "synced".into(),
            })
            .inc();
        m.reconcile_seconds.observe(0.3);
        let text = m.encode();
        assert!(
            text.contains("panka_reconciles_total{result=\"synced\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE panka_reconcile_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }
}
