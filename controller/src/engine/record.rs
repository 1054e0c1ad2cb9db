//! Stage **record**: the state written after every component, and the release written when an
//! apply run ends (succeeded, failed, interrupted, or still in progress when a controller hands
//! the rest to its next reconcile).
//!
//! Writes only to the state store, always as the lock holder ([`FenceToken`]), always
//! conditionally on the version it read.

use std::time::Instant;

use panka_core::model::{ComponentId, DesiredComponent, DesiredStack};
use panka_core::plan::Action;
use std::collections::BTreeMap;

use panka_core::state::{
    new_history_id, pin_scope, redact_variables, AppliedStack, ComponentState, HistoryEntry, Pin,
    Release, ReleaseOutcome, Snapshot, StateDocument,
};

use super::run::{EngineError, EngineOptions, Event, Progress};
use crate::driver::Applied;
use crate::lock::{FenceToken, LeaseGuard};
use crate::state::StateStore;
use panka_core::keys::StateKey;

/// State being written during one apply: the document and the version it follows.
pub(crate) struct Recorder<'a> {
    store: &'a StateStore,
    key: StateKey,
    base: Option<Snapshot>,
    doc: StateDocument,
    token: FenceToken,
    guard: LeaseGuard,
    /// The release this run records, when it changes anything.
    pub(crate) release_id: Option<String>,
    started_at: String,
    pub(crate) started: Instant,
}

impl<'a> Recorder<'a> {
    /// Starts recording on top of the state as read; `changes` says whether this run is a
    /// release (it changes something) or only refreshes records. The stack-wide settings of
    /// `desired` and the pins `options` ask for go into the next write.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: &'a StateStore,
        key: StateKey,
        base: Option<Snapshot>,
        token: FenceToken,
        guard: LeaseGuard,
        changes: bool,
        desired: &DesiredStack,
        options: &EngineOptions,
    ) -> Recorder<'a> {
        let mut doc = match &base {
            Some(s) => s.next(),
            None => StateDocument::initial(&key),
        };
        let release_id = changes.then(new_history_id);
        if release_id.is_some() {
            doc.release.clone_from(&release_id);
        }
        options.actor.clone_into(&mut doc.updated_by);
        doc.applied_stack = Some(AppliedStack::of(desired));
        doc.pins = next_pins(&doc, options);
        Recorder {
            store,
            key,
            base,
            doc,
            token,
            guard,
            release_id,
            started_at: jiff::Timestamp::now().to_string(),
            started: Instant::now(),
        }
    }

    /// Whether the next write changes the pins.
    pub(crate) fn pins_change(&self) -> bool {
        self.base.as_ref().map_or(!self.doc.pins.is_empty(), |b| {
            b.document.pins != self.doc.pins
        })
    }

    /// Writes the state now (a pin before any change, so a crash mid-rollback leaves it set).
    pub(crate) async fn write_now(&mut self, progress: &dyn Progress) -> Result<(), EngineError> {
        self.write(progress).await
    }

    /// Records a component as applied and writes the state.
    pub(crate) async fn applied(
        &mut self,
        id: &ComponentId,
        state: ComponentState,
        progress: &dyn Progress,
    ) -> Result<(), EngineError> {
        self.doc.components.insert(id.to_string(), state);
        self.write(progress).await
    }

    /// Forgets a deleted component and writes the state.
    pub(crate) async fn deleted(
        &mut self,
        id: &ComponentId,
        progress: &dyn Progress,
    ) -> Result<(), EngineError> {
        self.doc.components.remove(&id.to_string());
        self.write(progress).await
    }

    async fn write(&mut self, progress: &dyn Progress) -> Result<(), EngineError> {
        self.guard.check()?;
        let mut doc = self.doc.clone();
        doc.updated_at = jiff::Timestamp::now().to_string();
        let snapshot = self
            .store
            .write(&self.key, self.base.as_ref(), doc, &self.token)
            .await?;
        let serial = snapshot.document.serial;
        self.doc = snapshot.next();
        self.base = Some(snapshot);
        progress.event(Event::StateSaved(serial));
        Ok(())
    }

    /// Writes the release of this run, when it is one.
    pub(crate) async fn release(
        &self,
        desired: &DesiredStack,
        options: &EngineOptions,
        plan: &panka_core::plan::Plan,
        outcome: ReleaseOutcome,
    ) -> Result<Option<Release>, EngineError> {
        let Some(id) = &self.release_id else {
            return Ok(None);
        };
        // The variables in effect include the overrides: secret-looking names stay redacted in
        // the recorded spec too (only `VERSION` is read back from it).
        // Serializing plain data (string maps, no non-string keys) cannot fail; `Null` would
        // only stand for a bug, never for a secret.
        let mut spec = serde_json::to_value(desired).unwrap_or_default();
        if let Some(vars) = spec.get_mut("variables") {
            *vars = serde_json::to_value(redact_variables(&desired.variables)).unwrap_or_default();
        }
        let release = Release {
            id: id.clone(),
            kind: options.kind,
            stack: desired.name.clone(),
            environment: desired.environment.clone(),
            scope: options
                .service
                .as_ref()
                .map_or_else(|| "stack".to_string(), |s| format!("service:{s}")),
            version: desired.version().map(str::to_string),
            commit: options.commit.clone(),
            actor: options.actor.clone(),
            overrides: redact_variables(&options.overrides),
            started_at: self.started_at.clone(),
            finished_at: (outcome != ReleaseOutcome::InProgress)
                .then(|| jiff::Timestamp::now().to_string()),
            outcome,
            actions: plan
                .all()
                .map(|p| (p.id.to_string(), action_name(&p.action).to_string()))
                .collect(),
            desired: spec,
            target: options.rollback.as_ref().map(|r| r.target.clone()),
            supersedes: options
                .rollback
                .as_ref()
                .map(|r| r.supersedes.clone())
                .unwrap_or_default(),
            reason: options.rollback.as_ref().and_then(|r| r.reason.clone()),
        };
        self.store
            .record(&self.key, &HistoryEntry::Release(release.clone()))
            .await?;
        Ok(Some(release))
    }
}

/// The pins after a run with `options`: `--unpin` clears the pins holding the run; a rollback
/// that pins sets its scope's pin to its target.
pub(crate) fn next_pins(doc: &StateDocument, options: &EngineOptions) -> BTreeMap<String, Pin> {
    let mut pins = doc.pins.clone();
    let service = options.service.as_deref();
    if options.unpin {
        // A service's run clears its own pin only: the stack's pin holds the other services
        // too, and only a stack-wide run (or `panka resume`) lifts it.
        match service {
            None => pins.clear(),
            Some(_) => {
                pins.remove(&pin_scope(service));
            }
        }
    }
    if let Some(rollback) = options.rollback.as_ref().filter(|r| r.pin) {
        pins.insert(
            pin_scope(service),
            Pin {
                release: rollback.target.clone(),
                version: rollback.version.clone(),
                by: options.actor.clone(),
                at: jiff::Timestamp::now().to_string(),
            },
        );
    }
    pins
}

/// What state records for a component just applied.
pub(crate) fn component_state(component: &DesiredComponent, applied: &Applied) -> ComponentState {
    ComponentState {
        kind: component.kind().name().to_string(),
        identifiers: applied.identifiers.clone(),
        outputs: json_outputs(applied),
        spec_hash: component.hash(),
        applied_spec: serde_json::to_value(component).unwrap_or_default(),
        applied_at: Some(jiff::Timestamp::now().to_string()),
    }
}

fn json_outputs(applied: &Applied) -> std::collections::BTreeMap<String, serde_json::Value> {
    applied
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// The word recorded for an action.
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace { .. } => "replace",
        Action::Delete => "delete",
        Action::NoOp => "noop",
        Action::Conflict { .. } => "conflict",
    }
}
