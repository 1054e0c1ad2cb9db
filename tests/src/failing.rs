//! A driver that fails on purpose, for tests of what follows a failed health wait. The emulator
//! has no workload that can fail a health check, so the real SQS driver does every AWS call
//! and [`FailsAt666`] reports a queue whose visibility timeout is 666 as degraded (as the ECS
//! circuit breaker reports a failed rollout).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use panka_controller::driver::sqs::SqsDriver;
use panka_controller::driver::{Applied, Deletion, Driver, DriverError, Drivers, Lookups, Outputs};
use panka_controller::engine::DriverFactory;
use panka_core::model::{ComponentId, DesiredComponent};
use panka_core::plan::{DesiredFields, FieldDiff, FieldValue, Health, Observation};
use panka_crds::Kind;

/// The real SQS driver; a queue with a visibility timeout of 666 never becomes healthy.
pub struct FailsAt666(pub SqsDriver);

#[async_trait]
impl Driver for FailsAt666 {
    fn kind(&self) -> Kind {
        Kind::Sqs
    }
    fn desired(&self, c: &DesiredComponent, o: &Outputs, l: &Lookups) -> DesiredFields {
        self.0.desired(c, o, l)
    }
    async fn observe(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let mut o = self.0.observe(id, recorded).await?;
        if o.fields.get("visibilityTimeout") == Some(&FieldValue::known(666)) {
            o.health = Health::Degraded("consumers crash on every message".into());
        }
        Ok(o)
    }
    async fn converge(
        &self,
        c: &DesiredComponent,
        o: &Outputs,
        l: &Lookups,
    ) -> Result<Applied, DriverError> {
        self.0.converge(c, o, l).await
    }
    async fn update(
        &self,
        c: &DesiredComponent,
        o: &Outputs,
        l: &Lookups,
        diffs: &[FieldDiff],
        observed: &Observation,
    ) -> Result<Applied, DriverError> {
        self.0.update(c, o, l, diffs, observed).await
    }
    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        self.0.delete(id, recorded).await
    }
}

/// Drivers of SQS only, through [`FailsAt666`].
pub fn fails_at_666() -> DriverFactory {
    Arc::new(|ctx: &panka_controller::driver::Ctx| {
        Drivers::with(vec![Box::new(FailsAt666(SqsDriver::new(ctx)))])
    })
}
