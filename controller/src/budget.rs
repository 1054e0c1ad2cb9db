//! The AWS call budget: one token bucket per AWS service, shared by every run in the process,
//! so a sweep over hundreds of stacks never storms the account.
//!
//! The buckets sit in the HTTP client every SDK client of the process is built on
//! ([`Budget::http_client`]): a call waits for a token of its service before it is sent. The
//! service is the one the request is signed for (SigV4's credential scope), so it is right for
//! AWS and for an emulator serving every service on one endpoint. A throttling answer halves
//! that service's rate (down to a floor); the rate then climbs back to the configured one over
//! about two minutes. Throttling is seen on the response (HTTP 429/503, or an error code that
//! says so), the way the SDK's own retry classifiers see it.
//!
//! Stage: setup (clients); touches nothing but the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;

/// The lowest rate throttling can push a service to, in calls per second.
const FLOOR: f64 = 0.5;
/// How long the rate takes to climb from the floor back to the configured rate.
const RECOVERY: Duration = Duration::from_secs(120);

/// Token buckets by AWS service, and what they saw. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Configured calls per second of each service; `None`: unlimited.
    rate: Option<f64>,
    buckets: Mutex<HashMap<String, Bucket>>,
    throttles: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    /// Current rate (the configured one, or less after throttling).
    rate: f64,
    last: Instant,
}

impl Budget {
    /// A budget of `calls_per_second` for each AWS service; `None` counts throttles only.
    pub fn new(calls_per_second: Option<f64>) -> Budget {
        Budget {
            inner: Arc::new(Inner {
                rate: calls_per_second.filter(|r| *r > 0.0),
                buckets: Mutex::new(HashMap::new()),
                throttles: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The SDK's default HTTPS client with this budget in front of it: give it to every SDK
    /// configuration of the process (`SdkConfig::to_builder().http_client(…)`).
    pub fn http_client(&self) -> SharedHttpClient {
        let inner = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https();
        SharedHttpClient::new(Budgeted {
            inner,
            budget: self.clone(),
        })
    }

    /// Waits for a token of `service`.
    pub async fn take(&self, service: &str) {
        let Some(rate) = self.inner.rate else {
            return;
        };
        loop {
            let wait = {
                let Ok(mut buckets) = self.inner.buckets.lock() else {
                    return;
                };
                let now = Instant::now();
                let bucket = buckets.entry(service.to_owned()).or_insert(Bucket {
                    tokens: rate.max(1.0),
                    rate,
                    last: now,
                });
                bucket.refill(now, rate);
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// `service` answered "slow down": halve its rate.
    pub fn throttled(&self, service: &str) {
        if let Ok(mut t) = self.inner.throttles.lock() {
            *t.entry(service.to_owned()).or_default() += 1;
        }
        let Some(rate) = self.inner.rate else {
            return;
        };
        if let Ok(mut buckets) = self.inner.buckets.lock() {
            let now = Instant::now();
            let bucket = buckets.entry(service.to_owned()).or_insert(Bucket {
                tokens: 0.0,
                rate,
                last: now,
            });
            bucket.refill(now, rate);
            bucket.rate = (bucket.rate / 2.0).max(FLOOR.min(rate));
            bucket.tokens = bucket.tokens.min(bucket.rate.max(1.0));
        }
    }

    /// Throttling answers so far, by service.
    pub fn throttles(&self) -> HashMap<String, u64> {
        self.inner
            .throttles
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// The current rate of `service`, calls per second (`None`: unlimited).
    pub fn rate(&self, service: &str) -> Option<f64> {
        let configured = self.inner.rate?;
        let buckets = self.inner.buckets.lock().ok()?;
        Some(buckets.get(service).map_or(configured, |b| b.rate))
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant, configured: f64) {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        // Recovers linearly: from the floor to the configured rate over RECOVERY.
        self.rate = (self.rate + configured * dt / RECOVERY.as_secs_f64()).min(configured);
        self.tokens = (self.tokens + dt * self.rate).min(configured.max(1.0));
    }
}

#[derive(Debug)]
struct Budgeted {
    inner: SharedHttpClient,
    budget: Budget,
}

impl HttpClient for Budgeted {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BudgetedConnector {
            inner: self.inner.http_connector(settings, components),
            budget: self.budget.clone(),
        })
    }
}

#[derive(Debug)]
struct BudgetedConnector {
    inner: SharedHttpConnector,
    budget: Budget,
}

impl HttpConnector for BudgetedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let service = signed_service(&request);
        let inner = self.inner.clone();
        let budget = self.budget.clone();
        HttpConnectorFuture::new(async move {
            budget.take(&service).await;
            let response = inner.call(request).await?;
            if is_throttling(&response) {
                budget.throttled(&service);
            }
            Ok(response)
        })
    }
}

/// The service a request is signed for: the fourth part of SigV4's credential scope
/// (`Credential=AKID/20261206/us-east-1/sqs/aws4_request`), else the host's first label.
fn signed_service(request: &HttpRequest) -> String {
    let from_scope = request
        .headers()
        .get("authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split(['/', ',']).nth(3))
        .filter(|s| !s.is_empty());
    if let Some(service) = from_scope {
        return service.to_owned();
    }
    let uri = request.uri();
    let host = uri.split("://").nth(1).unwrap_or(uri);
    host.split(['.', ':', '/'])
        .next()
        .unwrap_or("aws")
        .to_owned()
}

/// Whether a response says "slow down": 429, 503, or an error code naming throttling in the
/// headers (JSON protocols) or the first bytes of the body (query and XML protocols).
fn is_throttling(response: &Response) -> bool {
    let status = response.status().as_u16();
    if status == 429 || status == 503 {
        return true;
    }
    if status < 400 {
        return false;
    }
    const CODES: [&str; 6] = [
        "Throttl",
        "RequestLimitExceeded",
        "TooManyRequests",
        "SlowDown",
        "RequestThrottled",
        "ProvisionedThroughputExceeded",
    ];
    let in_header = ["x-amzn-errortype", "x-amzn-query-error"]
        .iter()
        .filter_map(|h| response.headers().get(*h))
        .any(|v| CODES.iter().any(|c| v.contains(c)));
    let in_body = response.body().bytes().is_some_and(|b| {
        let head = String::from_utf8_lossy(&b[..b.len().min(2048)]);
        CODES.iter().any(|c| head.contains(c))
    });
    in_header || in_body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>, uri: &str) -> HttpRequest {
        let mut r = HttpRequest::new(aws_smithy_types::body::SdkBody::empty());
        r.set_uri(uri).unwrap();
        if let Some(a) = auth {
            r.headers_mut().insert("authorization", a.to_owned());
        }
        r
    }

    #[test]
    fn the_service_is_the_one_signed_for() {
        let r = request(
            Some("AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00"),
            "http://127.0.0.1:5000/",
        );
        assert_eq!(signed_service(&r), "sqs");
        let r = request(None, "https://ecs.eu-west-1.amazonaws.com/");
        assert_eq!(signed_service(&r), "ecs");
    }

    #[test]
    fn throttling_is_seen_in_status_headers_and_body() {
        let response = |status: u16, header: Option<&str>, body: &str| {
            let mut r = Response::new(
                status.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::from(body.to_owned()),
            );
            if let Some(h) = header {
                r.headers_mut().insert("x-amzn-errortype", h.to_owned());
            }
            r
        };
        assert!(is_throttling(&response(429, None, "")));
        assert!(is_throttling(&response(
            400,
            Some("ThrottlingException:"),
            ""
        )));
        assert!(is_throttling(&response(
            400,
            None,
            "<Error><Code>RequestLimitExceeded</Code></Error>"
        )));
        assert!(!is_throttling(&response(
            400,
            None,
            "<Error><Code>InvalidParameterValue</Code></Error>"
        )));
        assert!(!is_throttling(&response(200, None, "Throttling")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_spaces_calls_at_its_rate() {
        let budget = Budget::new(Some(2.0));
        let start = tokio::time::Instant::now();
        for _ in 0..6 {
            budget.take("sqs").await;
        }
        // Two at once (the burst), then one every half second.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1900), "{waited:?}");
        assert!(waited <= Duration::from_millis(2600), "{waited:?}");
        // Another service has its own bucket.
        let before = tokio::time::Instant::now();
        budget.take("ecs").await;
        assert!(before.elapsed() < Duration::from_millis(10));
    }

    #[test]
    fn throttling_halves_the_rate_and_it_recovers() {
        let budget = Budget::new(Some(8.0));
        budget.throttled("rds");
        let near = |r: Option<f64>, want: f64| r.is_some_and(|r| (r - want).abs() < 0.01);
        assert!(near(budget.rate("rds"), 4.0), "{:?}", budget.rate("rds"));
        budget.throttled("rds");
        assert!(near(budget.rate("rds"), 2.0), "{:?}", budget.rate("rds"));
        assert_eq!(budget.rate("sqs"), Some(8.0));
        assert_eq!(budget.throttles().get("rds"), Some(&2));
        // A minute later it has climbed half of the way (RECOVERY is two minutes).
        {
            let mut buckets = budget.inner.buckets.lock().unwrap();
            let b = buckets.get_mut("rds").unwrap();
            b.last -= Duration::from_secs(60);
            b.refill(Instant::now(), 8.0);
        }
        let rate = budget.rate("rds").unwrap();
        assert!((5.9..=6.1).contains(&rate), "{rate}");
    }

    #[test]
    fn no_rate_means_no_waiting_but_throttles_are_counted() {
        let budget = Budget::new(None);
        budget.throttled("s3");
        assert_eq!(budget.rate("s3"), None);
        assert_eq!(budget.throttles().get("s3"), Some(&1));
    }
}
