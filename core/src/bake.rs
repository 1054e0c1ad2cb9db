//! The bake period's decision (pure): after a release's last wave, the services behind the load
//! balancer are watched for a while, and the release is rolled back when a threshold is
//! crossed: 5XX responses above a share of requests, or a p99 target response time above a
//! limit (StackInfra `rollback`, defaults from the user guides: 5 %, 2000 ms). The controller
//! crate reads the numbers from CloudWatch; this module only decides.

use std::time::Duration;

use panka_crds::spec::RollbackPolicy;
use serde::{Deserialize, Serialize};

use crate::model::ComponentId;
use crate::resolve::check::parse_duration;

/// Error rate (percent of requests) above which a bake fails, unless StackInfra says otherwise.
pub const DEFAULT_ERROR_RATE_PERCENT: f64 = 5.0;
/// p99 target response time (ms) above which a bake fails, unless StackInfra says otherwise.
pub const DEFAULT_P99_LATENCY_MS: f64 = 2000.0;

/// Fewer requests than this say nothing about an error rate (one failed request of one is not
/// a 100 % error rate worth a rollback).
pub const MIN_REQUESTS: f64 = 10.0;

/// When a bake fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Highest acceptable share of 5XX responses, in percent.
    pub error_rate_percent: f64,
    /// Highest acceptable p99 target response time, in milliseconds.
    pub p99_latency_ms: f64,
}

impl Thresholds {
    /// The thresholds of a stack's rollback policy (defaults where it says nothing).
    pub fn of(policy: Option<&RollbackPolicy>) -> Thresholds {
        Thresholds {
            error_rate_percent: policy
                .and_then(|p| p.error_rate_percent)
                .unwrap_or(DEFAULT_ERROR_RATE_PERCENT),
            p99_latency_ms: policy
                .and_then(|p| p.p99_latency_ms)
                .map_or(DEFAULT_P99_LATENCY_MS, |ms| ms as f64),
        }
    }
}

/// How long to bake after the last wave: `None` when the policy asks for no bake period
/// (absent, `0s`, or not a duration — validation refuses that before any run).
pub fn bake_period(policy: Option<&RollbackPolicy>) -> Option<Duration> {
    policy
        .and_then(|p| p.bake.as_deref())
        .and_then(parse_duration)
        .filter(|d| !d.is_zero())
}

/// What the load balancer measured for one service since the release: totals over the bake so
/// far. `None` is "no data", never zero.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Requests to the service's targets.
    pub requests: Option<f64>,
    /// 5XX responses of its targets.
    pub errors_5xx: Option<f64>,
    /// The highest p99 target response time of any minute, in seconds (as CloudWatch gives it).
    pub p99_seconds: Option<f64>,
}

/// What a sample says about a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    /// Nothing measured yet (no traffic): no reason to roll back, and none to trust it.
    NoData,
    /// Within the thresholds.
    #[serde(rename_all = "camelCase")]
    Within {
        /// 5XX share, percent, when there were requests.
        error_rate_percent: Option<f64>,
        /// p99, ms, when measured.
        p99_ms: Option<f64>,
    },
    /// A threshold was crossed: roll back, for this reason.
    Crossed(String),
}

/// The verdict on `component`'s sample under `thresholds`.
pub fn verdict(component: &ComponentId, sample: &Sample, thresholds: &Thresholds) -> Verdict {
    // CloudWatch has no 5XX datapoint for a minute without 5XX responses: with requests
    // measured, a missing error count is zero errors.
    let error_rate = sample
        .requests
        .filter(|r| *r >= MIN_REQUESTS)
        .map(|r| 100.0 * sample.errors_5xx.unwrap_or(0.0) / r);
    let p99_ms = sample.p99_seconds.map(|s| s * 1000.0);
    if let Some(rate) = error_rate.filter(|r| *r > thresholds.error_rate_percent) {
        return Verdict::Crossed(format!(
            "{component}: {rate:.1}% of requests failed with 5XX during the bake (threshold {}%)",
            thresholds.error_rate_percent
        ));
    }
    if let Some(ms) = p99_ms.filter(|ms| *ms > thresholds.p99_latency_ms) {
        return Verdict::Crossed(format!(
            "{component}: p99 response time {ms:.0} ms during the bake (threshold {} ms)",
            thresholds.p99_latency_ms
        ));
    }
    if error_rate.is_none() && p99_ms.is_none() {
        return Verdict::NoData;
    }
    Verdict::Within {
        error_rate_percent: error_rate,
        p99_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> ComponentId {
        ComponentId::new("shop", "api")
    }

    fn defaults() -> Thresholds {
        Thresholds::of(None)
    }

    #[test]
    fn the_user_guides_defaults_apply_unless_the_stack_says_otherwise() {
        assert_eq!(
            defaults(),
            Thresholds {
                error_rate_percent: 5.0,
                p99_latency_ms: 2000.0
            }
        );
        let policy = RollbackPolicy {
            error_rate_percent: Some(1.5),
            p99_latency_ms: Some(300),
            bake: Some("10m".into()),
            on_failure: None,
        };
        assert_eq!(
            Thresholds::of(Some(&policy)),
            Thresholds {
                error_rate_percent: 1.5,
                p99_latency_ms: 300.0
            }
        );
        assert_eq!(bake_period(Some(&policy)), Some(Duration::from_secs(600)));
        let off = RollbackPolicy {
            bake: Some("0s".into()),
            ..policy
        };
        assert_eq!(bake_period(Some(&off)), None);
        assert_eq!(bake_period(None), None);
    }

    #[test]
    fn an_error_rate_over_the_threshold_crosses_and_under_it_does_not() {
        let over = Sample {
            requests: Some(200.0),
            errors_5xx: Some(12.0),
            p99_seconds: None,
        };
        assert_eq!(
            verdict(&api(), &over, &defaults()),
            Verdict::Crossed(
                "shop/api: 6.0% of requests failed with 5XX during the bake (threshold 5%)".into()
            )
        );
        let under = Sample {
            errors_5xx: Some(8.0),
            ..over
        };
        assert_eq!(
            verdict(&api(), &under, &defaults()),
            Verdict::Within {
                error_rate_percent: Some(4.0),
                p99_ms: None
            }
        );
        // Requests and no 5XX datapoint: no errors.
        let clean = Sample {
            errors_5xx: None,
            ..over
        };
        assert_eq!(
            verdict(&api(), &clean, &defaults()),
            Verdict::Within {
                error_rate_percent: Some(0.0),
                p99_ms: None
            }
        );
    }

    #[test]
    fn a_slow_p99_crosses_and_a_fast_one_does_not() {
        let slow = Sample {
            requests: Some(100.0),
            errors_5xx: None,
            p99_seconds: Some(2.5),
        };
        assert_eq!(
            verdict(&api(), &slow, &defaults()),
            Verdict::Crossed(
                "shop/api: p99 response time 2500 ms during the bake (threshold 2000 ms)".into()
            )
        );
        let fast = Sample {
            p99_seconds: Some(0.32),
            ..slow
        };
        assert!(matches!(
            verdict(&api(), &fast, &defaults()),
            Verdict::Within { p99_ms: Some(ms), .. } if (ms - 320.0).abs() < 1e-9
        ));
    }

    #[test]
    fn nothing_measured_is_no_data_not_a_pass_with_zeros() {
        assert_eq!(
            verdict(&api(), &Sample::default(), &defaults()),
            Verdict::NoData
        );
        let idle = Sample {
            requests: Some(0.0),
            ..Sample::default()
        };
        assert_eq!(verdict(&api(), &idle, &defaults()), Verdict::NoData);
        // Too few requests to judge a rate by: one failure of three is not a 33 % error rate.
        let few = Sample {
            requests: Some(3.0),
            errors_5xx: Some(1.0),
            p99_seconds: None,
        };
        assert_eq!(verdict(&api(), &few, &defaults()), Verdict::NoData);
    }
}
