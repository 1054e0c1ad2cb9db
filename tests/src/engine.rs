//! The engine driven the way the CLI drives it — plan, approve, lock, step until done, sleeping
//! between steps — in one call, for tests and benches that care about what an apply did rather
//! than how it was stepped. Each call is a fresh [`Run`]; the AWS calls of every run this
//! engine made are counted together ([`TestEngine::calls`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use panka_controller::backend::Backends;
use panka_controller::driver::CallCounter;
use panka_controller::engine::{
    ApplyReport, Engine, EngineError, EngineOptions, Prepared, Progress, Step,
};
use panka_controller::lock::Locker;
use panka_controller::state::StateStore;
use panka_core::graph::Graph;
use panka_core::model::DesiredStack;
use panka_core::plan::Plan;
use tokio_util::sync::CancellationToken;

/// An [`Engine`] with the CLI's loop around it.
pub struct TestEngine {
    engine: Engine,
    runs: Mutex<Vec<CallCounter>>,
    /// Longest sleep between two steps (the drivers ask for seconds; the emulator is quick).
    pub poll: Duration,
}

impl TestEngine {
    /// An engine with every driver.
    pub fn new(sdk: SdkConfig, backends: Backends, locker: Locker) -> TestEngine {
        TestEngine {
            engine: Engine::new(sdk, backends, locker),
            runs: Mutex::new(Vec::new()),
            poll: Duration::from_millis(50),
        }
    }

    /// The state store.
    pub fn state(&self) -> &StateStore {
        self.engine.state()
    }

    /// The AWS calls of every run so far.
    pub fn calls(&self) -> Calls {
        Calls(self.runs.lock().expect("runs").clone())
    }

    /// Observes and plans (no lock).
    pub async fn prepare(
        &self,
        desired: &DesiredStack,
        graph: &Graph,
        options: &EngineOptions,
    ) -> Result<Prepared, EngineError> {
        let run = self
            .engine
            .run(desired, options.clone(), CancellationToken::new());
        self.runs.lock().expect("runs").push(run.calls().clone());
        self.engine.plan(&run, desired, graph).await
    }

    /// Plans, asks `approve` when something changes (`Ok(None)` when it says no), applies and
    /// steps until done.
    pub async fn apply(
        &self,
        desired: &DesiredStack,
        graph: &Graph,
        options: &EngineOptions,
        approve: &mut dyn FnMut(&Plan) -> bool,
        progress: &dyn Progress,
    ) -> Result<Option<ApplyReport>, EngineError> {
        let run = self
            .engine
            .run(desired, options.clone(), CancellationToken::new());
        self.runs.lock().expect("runs").push(run.calls().clone());
        let prepared = self.engine.plan(&run, desired, graph).await?;
        if prepared.plan.has_changes() && !approve(&prepared.plan) {
            return Ok(None);
        }
        let approval = prepared.approve();
        let mut applying = match self
            .engine
            .apply(&run, desired, graph, &approval, progress)
            .await?
        {
            Ok(applying) => applying,
            Err(report) => return Ok(Some(report)),
        };
        loop {
            match applying.step().await? {
                Step::Done(report) => return Ok(Some(*report)),
                Step::Progressing {
                    applying: next,
                    requeue_after,
                    ..
                } => {
                    tokio::time::sleep(requeue_after.min(self.poll)).await;
                    applying = *next;
                }
            }
        }
    }
}

/// AWS calls of several runs, counted together.
#[derive(Debug, Clone)]
pub struct Calls(Vec<CallCounter>);

impl Calls {
    /// Calls by (service, operation).
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        let mut all = BTreeMap::new();
        for c in &self.0 {
            for (k, n) in c.snapshot() {
                *all.entry(k).or_default() += n;
            }
        }
        all
    }

    /// Calls that may change something.
    pub fn mutating(&self) -> u64 {
        self.0.iter().map(CallCounter::mutating).sum()
    }

    /// Every call.
    pub fn total(&self) -> u64 {
        self.0.iter().map(CallCounter::total).sum()
    }
}
