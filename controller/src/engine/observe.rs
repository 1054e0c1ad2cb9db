//! Stage **observe**, then the pure **plan**: reads state and AWS for one stack/environment and
//! hands both to [`panka_core::plan`]. Read-only: no AWS mutation, no state write, no lock.
//!
//! The driver calls go in the one order the types allow: `observe_many` (one batch per kind, the
//! kinds side by side) → `look_up` (gives the [`Lookups`]) → `desired` (needs them) →
//! `complete` (needs the observation and the lookups).

use std::collections::BTreeMap;

use panka_core::graph::Graph;
use panka_core::keys::StateKey;
use panka_core::model::{ComponentId, DesiredComponent, DesiredStack};
use panka_core::plan::{self, DesiredFields, Observation, Observed, Plan};
use panka_crds::Kind;

use super::run::{EngineError, Refusal, Run};
use crate::driver::{Driver, DriverError, Lookups, Observe, Outputs};
use crate::state::{Snapshot, StateStore};

/// What observe and plan found: the plan, and everything apply needs to carry it out. Made only
/// here, from what AWS and the state hold.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The plan (sealed: its fingerprint says what it changes).
    pub plan: Plan,
    /// What observe saw.
    pub observed: Observed,
    /// Desired fields per component.
    pub fields: BTreeMap<ComponentId, DesiredFields>,
    /// Outputs known before apply (observed, or recorded for other services).
    pub outputs: Outputs,
    /// State as read.
    pub state: Option<Snapshot>,
    /// What stops an apply of this plan but not a look at it (a secret that does not exist),
    /// when [`super::EngineOptions::note_missing_secrets`] asked for notes.
    pub notes: Vec<String>,
    /// What the drivers looked up, per kind.
    pub(crate) lookups: BTreeMap<Kind, Lookups>,
}

impl Prepared {
    /// Approves this plan: what [`super::Engine::apply`] will carry out, if planning again under
    /// the lock finds the same changes.
    pub fn approve(&self) -> Approval {
        Approval {
            fingerprint: self.plan.fingerprint().to_owned(),
        }
    }

    /// The lookups of a kind.
    pub(crate) fn lookups(&self, kind: Kind) -> &Lookups {
        static NONE: std::sync::OnceLock<Lookups> = std::sync::OnceLock::new();
        self.lookups
            .get(&kind)
            .unwrap_or_else(|| NONE.get_or_init(Lookups::default))
    }

    /// What the state records for a component.
    pub(crate) fn recorded(&self, id: &ComponentId) -> Option<&crate::state::ComponentState> {
        self.state
            .as_ref()
            .and_then(|s| s.document.components.get(&id.to_string()))
    }
}

/// An approved plan: the fingerprint of the changes someone agreed to. Apply carries out exactly
/// these changes or refuses with [`Refusal::PlanStale`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    fingerprint: String,
}

impl Approval {
    /// An approval recorded earlier (the controller's pending plan, `panka approve`).
    pub fn of_fingerprint(fingerprint: impl Into<String>) -> Approval {
        Approval {
            fingerprint: fingerprint.into(),
        }
    }

    /// The fingerprint approved.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Refuses a plan whose changes are not the approved ones.
    pub(crate) fn check(&self, plan: &Plan) -> Result<(), Refusal> {
        if plan.fingerprint() == self.fingerprint {
            Ok(())
        } else {
            Err(Refusal::PlanStale {
                approved: short(&self.fingerprint),
                current: short(plan.fingerprint()),
            })
        }
    }
}

fn short(fingerprint: &str) -> String {
    fingerprint.chars().take(12).collect()
}

/// Reads state and AWS and plans.
pub(crate) async fn observe_and_plan(
    run: &Run,
    store: &StateStore,
    desired: &DesiredStack,
    graph: &Graph,
) -> Result<Prepared, EngineError> {
    let key = StateKey::new(&desired.name, &desired.environment)
        .map_err(crate::state::StateError::from)?;
    let state = store.read(&key).await?;
    let recorded = |id: &ComponentId| {
        state
            .as_ref()
            .and_then(|s| s.document.components.get(&id.to_string()))
    };

    // Outputs of components outside the scope come from state, as the last apply left them.
    let mut outputs: Outputs = BTreeMap::new();
    for c in desired
        .components
        .values()
        .filter(|c| !run.in_scope(c, desired))
    {
        if let Some(r) = recorded(&c.id) {
            outputs.insert(c.id.clone(), string_outputs(&r.outputs));
        }
    }

    let in_scope: Vec<&DesiredComponent> = desired
        .components
        .values()
        .filter(|c| run.in_scope(c, desired))
        .collect();
    let mut by_kind: BTreeMap<Kind, (&dyn Driver, Vec<Observe>)> = BTreeMap::new();
    for c in &in_scope {
        let ids = recorded(&c.id).map(|r| r.identifiers.clone());
        let driver = driver_of(run, c)?;
        by_kind
            .entry(c.kind())
            .or_insert_with(|| (driver, Vec::new()))
            .1
            .push((c.id.clone(), ids));
    }
    let concurrency = run.options.concurrency.max(1);
    let batches =
        futures::future::try_join_all(by_kind.values().map(|(driver, items)| async move {
            let seen = driver.observe_many(items, concurrency).await?;
            if seen.len() != items.len() {
                let first = &items[0].0;
                return Err(DriverError::Unexpected {
                    component: first.clone(),
                    message: format!(
                        "the {} driver observed {} of {} components",
                        driver.kind(),
                        seen.len(),
                        items.len()
                    ),
                });
            }
            Ok(items
                .iter()
                .map(|(id, _)| id.clone())
                .zip(seen)
                .collect::<Vec<_>>())
        }))
        .await?;
    let mut observed: BTreeMap<ComponentId, Observation> = BTreeMap::new();
    for (id, o) in batches.into_iter().flatten() {
        if o.exists {
            outputs.insert(id.clone(), o.outputs.clone());
        }
        observed.insert(id, o);
    }

    // A service-scoped run reads other services' outputs from state; one never applied in
    // this environment cannot be read, so say so now rather than fail mid-apply.
    for c in &in_scope {
        for r in &c.references {
            let target_in_scope = desired
                .components
                .get(&r.target)
                .is_some_and(|t| run.in_scope(t, desired));
            if !target_in_scope && !outputs.contains_key(&r.target) {
                return Err(Refusal::MissingOutput {
                    component: c.id.clone(),
                    needs: r.target.clone(),
                    environment: desired.environment.clone(),
                }
                .into());
            }
        }
    }

    let mut lookups: BTreeMap<Kind, Lookups> = BTreeMap::new();
    let mut missing: Vec<DriverError> = Vec::new();
    // Kinds whose look-up was refused: their observations are not completed (no lookups).
    let mut unlooked: Vec<Kind> = Vec::new();
    for (kind, (driver, _)) in &by_kind {
        let of_kind: Vec<&DesiredComponent> = in_scope
            .iter()
            .copied()
            .filter(|c| c.kind() == *kind)
            .collect();
        // Every reference to a missing secret is gathered before the plan is refused, so one
        // run names them all.
        match driver.look_up(&of_kind).await {
            Err(e) if e.is_missing_secret() => {
                missing.push(e);
                unlooked.push(*kind);
            }
            found => {
                lookups.insert(*kind, found?);
            }
        }
    }
    let none = Lookups::default();
    let mut fields = BTreeMap::new();
    for c in &in_scope {
        let found = lookups.get(&c.kind()).unwrap_or(&none);
        fields.insert(c.id.clone(), driver_of(run, c)?.desired(c, &outputs, found));
    }
    for c in &in_scope {
        if unlooked.contains(&c.kind()) {
            continue;
        }
        if let Some(o) = observed.remove(&c.id) {
            let found = lookups.get(&c.kind()).unwrap_or(&none);
            let driver = driver_of(run, c)?;
            let kept = o.clone();
            let o = match driver.complete(c, &outputs, found, o).await {
                Err(e) if e.is_missing_secret() => {
                    missing.push(e);
                    kept
                }
                completed => completed?,
            };
            observed.insert(c.id.clone(), o);
        }
    }
    let notes = match DriverError::missing_secrets(missing) {
        None => Vec::new(),
        Some(DriverError::MissingSecrets { first, rest }) if run.options.note_missing_secrets => {
            std::iter::once(*first)
                .chain(rest)
                .map(|e| e.to_string())
                .collect()
        }
        Some(one) if run.options.note_missing_secrets => vec![one.to_string()],
        Some(refused) => return Err(refused.into()),
    };
    let applied = applied_fields(run, state.as_ref(), &in_scope, &lookups)?;
    let observed = Observed::new(observed);
    let options = run.plan_options();
    let plan = plan::plan_with(
        desired,
        graph,
        &fields,
        &applied,
        &observed,
        state.as_ref().map(|s| &s.document),
        &options,
    );
    Ok(Prepared {
        plan,
        observed,
        fields,
        outputs,
        state,
        lookups,
        notes,
    })
}

/// The fields each component's last applied spec gives with the outputs recorded then (what
/// AWS held right after that apply): the plan compares them with the repository's, field by
/// field, to tell drift from repository changes (direct, or through what a component
/// references). Components with no readable record have none.
fn applied_fields(
    run: &Run,
    state: Option<&Snapshot>,
    in_scope: &[&DesiredComponent],
    lookups: &BTreeMap<Kind, Lookups>,
) -> Result<BTreeMap<ComponentId, DesiredFields>, EngineError> {
    let Some(doc) = state.map(|s| &s.document) else {
        return Ok(BTreeMap::new());
    };
    let recorded_outputs: Outputs = doc
        .components
        .iter()
        .filter_map(|(name, c)| {
            let id = ComponentId::try_from(name.clone()).ok()?;
            Some((id, string_outputs(&c.outputs)))
        })
        .collect();
    let none = Lookups::default();
    let mut out = BTreeMap::new();
    for c in in_scope {
        let Some(then) = doc
            .components
            .get(&c.id.to_string())
            .and_then(|r| serde_json::from_value::<DesiredComponent>(r.applied_spec.clone()).ok())
            .filter(|then| then.kind() == c.kind())
        else {
            continue;
        };
        let found = lookups.get(&c.kind()).unwrap_or(&none);
        let fields = driver_of(run, c)?.desired(&then, &recorded_outputs, found);
        out.insert(c.id.clone(), fields);
    }
    Ok(out)
}

/// The driver of a component's kind.
pub(crate) fn driver_of<'r>(
    run: &'r Run,
    c: &DesiredComponent,
) -> Result<&'r dyn Driver, EngineError> {
    run.drivers
        .get(c.kind())
        .ok_or_else(|| EngineError::NoDriver {
            kind: c.kind(),
            component: c.id.clone(),
        })
}

/// Recorded outputs as strings.
pub(crate) fn string_outputs(
    outputs: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, String> {
    outputs
        .iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}
