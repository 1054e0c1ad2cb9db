//! The stack-wide resources of a desired stack (`_stack/…`), driven as the engine drives them:
//! for driver tests that need what components run on (a network for subnet groups, a cluster
//! and a load balancer for ECS services) without running the whole engine.

use std::collections::BTreeMap;

use panka_controller::driver::{
    Applied, Ctx, Deletion, Driver, DriverError, Drivers, Lookups, Outputs,
};
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{DesiredFields, Observation};

/// The drivers of the stack-wide resources, on one context. Each call takes the desired stack
/// whose `_stack/…` components it drives; [`refreshed`] re-derives them after a test changed
/// the stack's components.
pub struct StackResources {
    drivers: Drivers,
}

/// `stack` with its stack-wide resources derived again from its components (as resolve does).
pub fn refreshed(mut stack: DesiredStack) -> DesiredStack {
    let source = stack
        .components
        .get(&panka_core::stack::network_id())
        .map(|c| c.source.clone())
        .unwrap_or_else(|| "stack.yaml".to_string());
    panka_core::stack::add_resources(&mut stack, &source);
    stack
}

impl StackResources {
    /// The drivers on `ctx`.
    pub fn new(ctx: &Ctx) -> StackResources {
        StackResources {
            drivers: Drivers::new(ctx),
        }
    }

    /// The ids of `stack`'s stack-wide resources, in the order the graph applies them (the
    /// network before the load balancer).
    ///
    /// # Panics
    /// When the stack has a dependency cycle.
    pub fn ids(stack: &DesiredStack) -> Vec<ComponentId> {
        let graph = panka_core::graph::build(stack).expect("the stack has no cycle");
        graph
            .waves
            .into_iter()
            .flatten()
            .filter(|id| stack.components[id].kind().is_stack_resource())
            .collect()
    }

    fn driver(&self, stack: &DesiredStack, id: &ComponentId) -> &dyn Driver {
        let kind = stack.components[id].kind();
        self.drivers
            .get(kind)
            .unwrap_or_else(|| panic!("no driver for {kind}"))
    }

    /// Converges each, in graph order, each with the outputs of those before it.
    ///
    /// # Errors
    /// The first driver failure.
    pub async fn try_apply(
        &self,
        stack: &DesiredStack,
    ) -> Result<BTreeMap<ComponentId, Applied>, DriverError> {
        let mut outputs = Outputs::new();
        let mut applied = BTreeMap::new();
        for id in Self::ids(stack) {
            let a = self
                .driver(stack, &id)
                .converge(&stack.components[&id], &outputs, &Lookups::default())
                .await?;
            outputs.insert(id.clone(), a.outputs.clone());
            applied.insert(id, a);
        }
        Ok(applied)
    }

    /// [`StackResources::try_apply`], which must succeed.
    ///
    /// # Panics
    /// When a driver fails.
    pub async fn apply(&self, stack: &DesiredStack) -> BTreeMap<ComponentId, Applied> {
        self.try_apply(stack)
            .await
            .unwrap_or_else(|e| panic!("apply the stack-wide resources: {e}"))
    }

    /// What each should hold, given `outputs`.
    pub fn desired(
        &self,
        stack: &DesiredStack,
        outputs: &Outputs,
    ) -> BTreeMap<ComponentId, DesiredFields> {
        Self::ids(stack)
            .into_iter()
            .map(|id| {
                let c = &stack.components[&id];
                let want = self
                    .driver(stack, &id)
                    .desired(c, outputs, &Lookups::default());
                (id, want)
            })
            .collect()
    }

    /// What AWS holds of each.
    ///
    /// # Panics
    /// When a driver fails.
    pub async fn observe(&self, stack: &DesiredStack) -> BTreeMap<ComponentId, Observation> {
        let mut seen = BTreeMap::new();
        for id in Self::ids(stack) {
            let o = self
                .driver(stack, &id)
                .observe(&id, None)
                .await
                .unwrap_or_else(|e| panic!("observe {id}: {e}"));
            seen.insert(id, o);
        }
        seen
    }

    /// Deletes one, as recorded with `identifiers`.
    ///
    /// # Panics
    /// When the driver fails.
    pub async fn delete(
        &self,
        stack: &DesiredStack,
        id: &ComponentId,
        identifiers: &BTreeMap<String, String>,
    ) -> Deletion {
        self.driver(stack, id)
            .delete(id, identifiers)
            .await
            .unwrap_or_else(|e| panic!("delete {id}: {e}"))
    }
}

/// The outputs of the example stack's network (the emulator's default VPC): what a database's
/// or cache's subnet group is placed in.
///
/// # Panics
/// When the example does not load or the network cannot be looked up.
pub async fn network_outputs() -> Outputs {
    let sdk = crate::emulator::emulator().sdk_config().await;
    let root = crate::emulator::repo_root().join("examples/deployment-repo");
    let loaded = match panka_controller::validate::load_stack(&root, "user-platform") {
        Ok(l) => l,
        Err((d, _)) => panic!("the example does not load: {d}"),
    };
    let options = panka_core::resolve::Options::default();
    let stack = match panka_controller::validate::plan_input(&loaded, "development", &options) {
        Ok((desired, _)) => desired,
        Err(d) => panic!("the example does not resolve: {d}"),
    };
    let network = panka_core::stack::network_id();
    let ctx = Ctx::new(sdk, &stack, false);
    let applied = panka_controller::driver::stack::network::NetworkDriver::new(&ctx)
        .converge(
            &stack.components[&network],
            &Outputs::new(),
            &Lookups::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("look up the network: {e}"));
    Outputs::from([(network, applied.outputs)])
}
