//! Drift checks (stages observe and plan, read-only): plan the stack *as last applied* against
//! what AWS holds, and tell the repository's pending changes apart. Takes no lock; writes only
//! the check's report beside the state (`drift.json`).

use panka_core::drift::{self, DriftReport};
use panka_core::graph::{self, Graph};
use panka_core::model::{ComponentId, DesiredStack};
use panka_core::plan::{in_scope, PlanOptions};
use panka_core::state::StateDocument;
use tokio_util::sync::CancellationToken;

use super::{Operation, Session, Target};
use crate::engine::{EngineError, PinnedBy, Prepared, Refusal};
use crate::state::{StateError, StateKey};

/// What a drift check found, and what remediating it applies.
#[derive(Debug, Clone)]
pub struct DriftCheck {
    /// The report (also stored beside the state).
    pub report: DriftReport,
    /// The stack as last applied, under the repository's drift policy: what a remediation
    /// applies (toward the pinned release, when a rollback pinned one: that is what state
    /// records).
    pub applied: DesiredStack,
    /// Its waves.
    pub graph: Graph,
    /// The plan of `applied` against AWS: every change in it is drift.
    pub prepared: Prepared,
}

impl Session {
    /// Checks `target`'s drift: plans the applied stack (state's recorded specs, with
    /// `repository`'s `drift` policy) against AWS, lists what differs, and notes the
    /// repository's pending changes. Stores the report beside the state.
    pub async fn check_drift(
        &self,
        target: &Target,
        repository: &DesiredStack,
    ) -> Result<DriftCheck, EngineError> {
        let key =
            StateKey::new(&repository.name, &repository.environment).map_err(StateError::from)?;
        let store = &self.backends.state;
        let snapshot = store
            .read(&key)
            .await?
            .ok_or_else(|| Refusal::NeverApplied {
                stack: repository.name.clone(),
                environment: repository.environment.clone(),
            })?;
        let doc = &snapshot.document;
        let corrupt = |detail: String| StateError::Corrupt {
            location: format!("{}/{}", store.location(), key.state_path()),
            detail,
        };
        let mut applied = doc.applied_stack(repository).map_err(corrupt)?;
        // The policy is the repository's: changing what is ignored needs no apply.
        applied.infra.drift.clone_from(&repository.infra.drift);
        let graph = graph::build(&applied).map_err(|d| corrupt(d.message))?;

        let engine = self.engine(std::time::Duration::ZERO)?;
        let run = engine.run(
            &applied,
            self.options_for(target, Operation::Plan),
            CancellationToken::new(),
        );
        let prepared = engine.plan(&run, &applied, &graph).await?;
        // A report that cannot be read only loses the first-seen times.
        let previous = store
            .drift(&key, target.service.as_deref())
            .await
            .ok()
            .flatten()
            .map(|r| r.findings_vec())
            .unwrap_or_default();
        let now = jiff::Timestamp::now().to_string();
        let (drifted, ignored) = drift::findings(&prepared.plan, &previous, &now);
        let options = PlanOptions {
            service: target.service.clone(),
            adopt: false,
        };
        let report = DriftReport {
            stack: repository.name.clone(),
            environment: repository.environment.clone(),
            service: target.service.clone(),
            checked_at: now,
            checked_by: self.actor.clone(),
            checked: prepared.plan.waves.iter().map(Vec::len).sum(),
            drifted,
            ignored,
            pending: pending_changes(repository, doc, &options),
        };
        store.record_drift(&key, &report).await?;
        Ok(DriftCheck {
            report,
            applied,
            graph,
            prepared,
        })
    }
}

/// What `drift remediate` applies after `check`: the applied stack (toward the pinned
/// release when a rollback pinned the scope, since that is what state records). When the
/// repository has changes not applied yet it refuses, unless `include_pending`, which
/// applies the repository as it is (`repository`, `graph`) — refused too while pinned.
pub fn remediation(
    target: &Target,
    repository: (&DesiredStack, &Graph),
    check: DriftCheck,
    include_pending: bool,
) -> Result<(DesiredStack, Graph), EngineError> {
    let doc = check.prepared.state.as_ref().map(|s| &s.document);
    let pin = doc.and_then(|d| d.pin_holding(target.service.as_deref()));
    match (include_pending, pin, doc) {
        (true, Some((scope, pin)), Some(d)) => {
            Err(Refusal::PinnedRemediation(Box::new(PinnedBy {
                stack: d.stack.clone(),
                environment: d.environment.clone(),
                scope: scope.to_owned(),
                pin: pin.clone(),
            }))
            .into())
        }
        (true, _, _) => Ok((repository.0.clone(), repository.1.clone())),
        // Pinned: the repository is ahead on purpose; what state records is the target.
        (false, Some(_), _) => Ok((check.applied, check.graph)),
        (false, None, _) if !check.report.pending.is_empty() => {
            Err(Refusal::PendingChanges(check.report.pending).into())
        }
        (false, None, _) => Ok((check.applied, check.graph)),
    }
}

/// Components in scope whose repository spec differs from what state records as applied,
/// that the repository adds, or that it removed: changes `plan` shows, not drift.
pub fn pending_changes(
    repository: &DesiredStack,
    state: &StateDocument,
    options: &PlanOptions,
) -> Vec<ComponentId> {
    let mut out: Vec<ComponentId> = repository
        .components
        .values()
        .filter(|c| in_scope(c, repository, options))
        .filter(|c| {
            state
                .components
                .get(&c.id.to_string())
                .is_none_or(|r| r.spec_hash != c.hash())
        })
        .map(|c| c.id.clone())
        .collect();
    for name in state.components.keys() {
        let Ok(id) = ComponentId::try_from(name.clone()) else {
            continue;
        };
        let of_scope = options.service.as_ref().is_none_or(|s| &id.service == s);
        if of_scope && !repository.components.contains_key(&id) {
            out.push(id);
        }
    }
    out.sort();
    out
}
