//! The controller's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and
//! the push webhook (`POST /webhook`, GitHub's format, `X-Hub-Signature-256` checked in
//! constant time, body capped) that makes the poller fetch at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::reconcile::metrics::Metrics;

/// The largest webhook body read; GitHub's push payloads are capped at 25 MB, but a
/// deployment repository's pushes are small and the body is only checked, never used.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    /// Metrics to encode.
    pub metrics: Metrics,
    /// Set once the repository was fetched and the queue runs.
    pub ready: Arc<AtomicBool>,
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn probes(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(endpoints)
}

async fn metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        e.metrics.encode(),
    )
}

async fn ready(State(e): State<Endpoints>) -> impl IntoResponse {
    if e.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the repository has not been fetched yet\n",
        )
    }
}

/// A webhook's shared secret; never printed.
#[derive(Clone)]
pub struct WebhookSecret(Arc<Vec<u8>>);

impl WebhookSecret {
    /// Wraps the secret's bytes (trailing newline of a file removed).
    pub fn new(mut bytes: Vec<u8>) -> WebhookSecret {
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        WebhookSecret(Arc::new(bytes))
    }

    /// Whether the secret is empty (refused: anyone could sign).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`. The
/// comparison takes the same time whatever the signature.
pub fn signature_ok(secret: &WebhookSecret, body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex_sig) = signature.and_then(|s| s.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// What the webhook needs.
#[derive(Clone)]
pub struct Webhook {
    /// The shared secret.
    pub secret: WebhookSecret,
    /// The branch deployed: pushes to other refs are ignored.
    pub branch: String,
    /// Wakes the poller.
    pub fetch_now: Arc<Notify>,
}

/// `POST /webhook`.
pub fn webhook(hook: Webhook) -> Router {
    Router::new()
        .route("/webhook", post(on_push))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        .with_state(hook)
}

async fn on_push(
    State(hook): State<Webhook>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !signature_ok(&hook.secret, &body, header("x-hub-signature-256")) {
        warn!("webhook refused: missing or bad X-Hub-Signature-256");
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    match header("x-github-event") {
        Some("ping") => return (StatusCode::OK, "pong\n"),
        Some("push") | None => {}
        Some(_) => return (StatusCode::ACCEPTED, "ignored: not a push\n"),
    }
    let pushed_ref = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_owned));
    let ours = format!("refs/heads/{}", hook.branch);
    if pushed_ref.as_deref().is_some_and(|r| r != ours) {
        return (StatusCode::ACCEPTED, "ignored: another branch\n");
    }
    info!(r#ref = ?pushed_ref, "webhook: fetching now");
    hook.fetch_now.notify_one();
    (StatusCode::ACCEPTED, "fetching\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn only_the_right_signature_passes() {
        let secret = WebhookSecret::new(b"s3cret\n".to_vec());
        let body = br#"{"ref":"refs/heads/main"}"#;
        assert!(signature_ok(&secret, body, Some(&sign(b"s3cret", body))));
        assert!(!signature_ok(&secret, body, Some(&sign(b"other", body))));
        assert!(!signature_ok(&secret, b"{}", Some(&sign(b"s3cret", body))));
        assert!(!signature_ok(&secret, body, Some("sha256=zz")));
        assert!(!signature_ok(&secret, body, Some("sha1=00")));
        assert!(!signature_ok(&secret, body, None));
    }

    #[test]
    fn the_secret_is_never_printed() {
        let secret = WebhookSecret::new(b"s3cret".to_vec());
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
