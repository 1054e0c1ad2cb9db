//! What runs, read from AWS: a component's log lines (CloudWatch Logs), its metrics (one
//! CloudWatch `GetMetricData` call) and its health (ECS, the load balancer's target health, and
//! observe's word on stateful kinds), for `panka logs`, `panka metrics` and `panka health`.
//!
//! Stage: after apply, read-only. Which resources are read is what the state records of the
//! component (its log group, cluster, service, target group, the stack's load balancer) — the
//! same record `status`, `drift` and the bake period work from; nothing is named afresh here.
//! What the lines and numbers say is decided by the pure [`panka_core::telemetry`]; every AWS call
//! goes through clients counted like the drivers' ([`crate::driver::CallCounter`]).

mod health;
mod logs;
mod metrics;

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use panka_core::model::{ComponentId, DesiredStack};
use panka_crds::Kind;

pub use health::ComponentHealth;
pub use logs::LogQuery;
pub use panka_core::telemetry::metrics::{MetricTarget, Metrics, Window};

use crate::driver::{CallCounter, DriverError};
use crate::engine::EngineError;
use crate::session::{bake_targets, Session};
use crate::state::{StateError, StateKey};

/// Why a component's logs, metrics or health could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// State has no record of the component: it was never applied (or was destroyed).
    #[error("{component} has not been applied to {stack} ({environment}): state has no record of it; `panka apply` creates it")]
    NotApplied {
        /// Which.
        component: ComponentId,
        /// Stack.
        stack: String,
        /// Environment.
        environment: String,
    },
    /// What was asked exists for container components only.
    #[error("{component} is {kind}: {what} are read for MicroService and Worker components only")]
    NotAContainer {
        /// Which.
        component: ComponentId,
        /// Its kind.
        kind: String,
        /// `logs` or `metrics`.
        what: &'static str,
    },
    /// State records the component without an identifier the read needs.
    #[error("state records no {identifier} for {component}; apply it again to record it")]
    Unrecorded {
        /// Which.
        component: ComponentId,
        /// The identifier (`logGroup`, `cluster`, `service`).
        identifier: &'static str,
    },
    /// State could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// An AWS call failed (the error names the component and what was read).
    #[error(transparent)]
    Aws(#[from] DriverError),
    /// Observing the stack (for health) failed.
    #[error(transparent)]
    Engine(Box<EngineError>),
}

impl From<EngineError> for TelemetryError {
    fn from(e: EngineError) -> Self {
        TelemetryError::Engine(Box::new(e))
    }
}

/// A deployed container component as state records it: what its logs and metrics are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// Which.
    pub component: ComponentId,
    /// Its kind (`MicroService`, `Worker`).
    pub kind: Kind,
    /// Its AWS identifiers as recorded (`logGroup`, `cluster`, `service`, `targetGroupArn`, …).
    pub identifiers: BTreeMap<String, String>,
    /// Its metrics' dimensions (the load balancer's from the recorded target group and the
    /// stack's load balancer).
    pub metrics: MetricTarget,
}

impl Deployed {
    /// A recorded identifier the read needs.
    pub fn identifier(&self, name: &'static str) -> Result<&str, TelemetryError> {
        recorded(&self.component, &self.identifiers, name)
    }
}

/// Identifier `name` of `component` as state records it; refused when it records none.
fn recorded<'a>(
    component: &ComponentId,
    identifiers: &'a BTreeMap<String, String>,
    name: &'static str,
) -> Result<&'a str, TelemetryError> {
    identifiers
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| TelemetryError::Unrecorded {
            component: component.clone(),
            identifier: name,
        })
}

/// The readers of logs, metrics and health: clients on the session's AWS configuration, their
/// calls counted.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The SDK configuration (the stack's region, the standard chain).
    pub(crate) sdk: SdkConfig,
    /// Counts every call.
    pub(crate) calls: CallCounter,
}

impl Telemetry {
    /// The AWS calls made so far, by (service, operation).
    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }
}

impl Session {
    /// Readers of logs, metrics and health on this session's AWS configuration, their calls
    /// also counted where the session counts them.
    pub fn telemetry(&self) -> Telemetry {
        Telemetry {
            sdk: self.sdk.clone(),
            calls: self
                .calls
                .as_ref()
                .map_or_else(CallCounter::default, CallCounter::adding_to),
        }
    }

    /// What the state of `desired`'s stack/environment records of container component `id`
    /// (`what` is asked of it: `logs`, `metrics`): its identifiers and metric dimensions.
    pub async fn deployed(
        &self,
        desired: &DesiredStack,
        id: &ComponentId,
        what: &'static str,
    ) -> Result<Deployed, TelemetryError> {
        let key = StateKey::new(&desired.name, &desired.environment).map_err(StateError::from)?;
        let not_applied = || TelemetryError::NotApplied {
            component: id.clone(),
            stack: desired.name.clone(),
            environment: desired.environment.clone(),
        };
        let snapshot = self
            .backends()
            .state
            .read(&key)
            .await?
            .ok_or_else(not_applied)?;
        let recorded_component = snapshot
            .document
            .components
            .get(&id.to_string())
            .ok_or_else(not_applied)?;
        let kind = match recorded_component.kind.as_str() {
            k if k == Kind::MicroService.name() => Kind::MicroService,
            k if k == Kind::Worker.name() => Kind::Worker,
            other => {
                return Err(TelemetryError::NotAContainer {
                    component: id.clone(),
                    kind: other.to_owned(),
                    what,
                })
            }
        };
        let identifier = |name| recorded(id, &recorded_component.identifiers, name);
        let metrics = MetricTarget {
            cluster: identifier("cluster")?.to_owned(),
            service: identifier("service")?.to_owned(),
            load_balancer: bake_targets(&snapshot.document, std::slice::from_ref(id))
                .into_iter()
                .next()
                .map(|t| (t.target_group, t.load_balancer)),
        };
        Ok(Deployed {
            component: id.clone(),
            kind,
            identifiers: recorded_component.identifiers.clone(),
            metrics,
        })
    }
}
