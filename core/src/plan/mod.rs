//! Stage **plan** (pure): desired vs observed vs last applied → what apply will do.
//!
//! Drivers reduce both sides to comparable [`Fields`]: [`DesiredFields`] is a pure projection
//! of a desired component (what AWS should hold), and an [`Observation`] is what observe read.
//! Each desired field carries a [`Change`] rule saying how a difference is applied: in place,
//! by replacing the resource (with the reason), or not at all (a field owned by AWS, such as the
//! task count under autoscaling). This module compares, never calls AWS, and is tested with
//! plain values. A [`Plan`] can only be built from an [`Observed`] set, which only observe (or a
//! test) produces.

use std::collections::{BTreeMap, BTreeSet};

use panka_crds::spec::DriftIgnore;
use panka_crds::Kind;
use serde::{Deserialize, Serialize};

use crate::cost::{self, CostEstimate};
use crate::graph::Graph;
use crate::model::{ComponentId, DesiredComponent, DesiredStack, RefKind};
use crate::state::StateDocument;

pub use markdown::markdown;

/// Comparable fields of a resource, by dotted name (`queue.visibilityTimeout`).
pub type Fields = BTreeMap<String, FieldValue>;

/// A field's value, or a value only known once a dependency is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A known value.
    Known(serde_json::Value),
    /// Depends on an output of a component not yet applied.
    Unknown(KnownAfterApply),
}

/// Marker for "(known after apply)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KnownAfterApply {
    /// The marker.
    #[serde(rename = "(known after apply)")]
    KnownAfterApply,
}

impl FieldValue {
    /// A known value from anything serialisable to JSON.
    pub fn known(value: impl Serialize) -> FieldValue {
        FieldValue::Known(serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
    }

    /// Rendered for plan output.
    pub fn display(&self) -> String {
        match self {
            FieldValue::Known(serde_json::Value::String(s)) => s.clone(),
            FieldValue::Known(v) => v.to_string(),
            FieldValue::Unknown(_) => "(known after apply)".to_string(),
        }
    }
}

/// How a difference in a field is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// Updated in place.
    Update,
    /// Needs a new resource; the reason is shown in the plan.
    Replace(String),
    /// Not compared (AWS owns it, e.g. task count under autoscaling).
    Ignore,
}

/// What a driver says AWS should hold for one component.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DesiredFields {
    /// Field values.
    pub fields: Fields,
    /// How each field changes; a field without a rule is updated in place.
    pub rules: BTreeMap<String, Change>,
}

impl DesiredFields {
    /// Sets a field updated in place.
    pub fn set(&mut self, name: &str, value: FieldValue) -> &mut Self {
        self.fields.insert(name.to_string(), value);
        self
    }

    /// Sets a field whose change needs a new resource.
    pub fn set_replace(&mut self, name: &str, value: FieldValue, reason: &str) -> &mut Self {
        self.fields.insert(name.to_string(), value);
        self.rules
            .insert(name.to_string(), Change::Replace(reason.to_string()));
        self
    }

    /// Sets a field that is shown but never compared.
    pub fn set_ignored(&mut self, name: &str, value: FieldValue) -> &mut Self {
        self.fields.insert(name.to_string(), value);
        self.rules.insert(name.to_string(), Change::Ignore);
        self
    }
}

/// Health of an observed resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Health {
    /// Serving as desired.
    Healthy,
    /// Being created or rolled out.
    Progressing,
    /// Exists but not serving (failed deployment, stopped tasks).
    Degraded(String),
    /// Does not exist.
    #[default]
    Missing,
}

/// What observe read for one component.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// Whether the resource exists.
    pub exists: bool,
    /// Whether its tags say it is this component's (see `naming::Naming::owns`).
    pub owned: bool,
    /// Actual values of the fields the driver compares.
    pub fields: Fields,
    /// Outputs (`url`, `endpoint`, …).
    pub outputs: BTreeMap<String, String>,
    /// AWS identifiers (ARNs, names).
    pub identifiers: BTreeMap<String, String>,
    /// Health.
    pub health: Health,
    /// Human-readable status, e.g. `2/2 running`, `available`.
    pub status: String,
    /// Recent events AWS reports for the resource, newest first (ECS service events), for
    /// `panka show`; never compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// A part of the resource observe left unread because state recorded the fingerprint of
    /// what it holds (an immutable ECS task definition revision). The driver's `complete`
    /// reads it only if the desired fingerprint differs; until then its fields are unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<Unread>,
}

/// See [`Observation::unread`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unread {
    /// What to read if needed (an ARN).
    pub reference: String,
    /// The fingerprint state recorded for it.
    pub fingerprint: String,
}

/// Observations of a stack; produced by observe.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    components: BTreeMap<ComponentId, Observation>,
}

impl Observed {
    /// Wraps observations. Called by observe, and by tests with made-up observations.
    pub fn new(components: BTreeMap<ComponentId, Observation>) -> Observed {
        Observed { components }
    }

    /// The observation of a component.
    pub fn get(&self, id: &ComponentId) -> Option<&Observation> {
        self.components.get(id)
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Field name.
    pub field: String,
    /// Current value, if any.
    pub old: Option<FieldValue>,
    /// Desired value, if any.
    pub new: Option<FieldValue>,
    /// How it is applied.
    pub change: Change,
}

/// What apply does to a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Action {
    /// Create it.
    Create,
    /// Change it in place.
    Update,
    /// Delete and create it.
    Replace {
        /// Why a new resource is needed.
        reason: String,
    },
    /// Delete it (it is in state but no longer in the repository).
    Delete,
    /// Nothing to do.
    NoOp,
    /// A resource with its name exists but is not panka's; apply refuses without `--adopt`.
    Conflict {
        /// What was found.
        reason: String,
    },
}

impl Action {
    /// Whether apply changes something.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::NoOp)
    }
}

/// The plan for one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentPlan {
    /// Component.
    pub id: ComponentId,
    /// Kind.
    pub kind: String,
    /// What happens.
    pub action: Action,
    /// Fields that differ (for update and replace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<FieldDiff>,
    /// Data would be lost (replace or delete of a stateful kind); apply needs `--allow-destroy`.
    pub dangerous: bool,
    /// AWS differs from the last applied spec although the repository did not change.
    pub drift: bool,
    /// Fields that differ but that a `drift.ignore` rule of the stack expects to (only for a
    /// component the repository did not change): neither shown as a change nor applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// Counts by action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Creates.
    pub create: usize,
    /// In-place updates.
    pub update: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletions.
    pub delete: usize,
    /// Unchanged.
    pub unchanged: usize,
    /// Conflicts.
    pub conflict: usize,
}

/// The plan for a stack in an environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// Service the plan is limited to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Components to apply, wave by wave.
    pub waves: Vec<Vec<ComponentPlan>>,
    /// Components to delete, after the waves, dependants first.
    pub deletions: Vec<ComponentPlan>,
    /// Counts.
    pub summary: Summary,
    /// Monthly cost estimate of the desired stack.
    pub cost: CostEstimate,
    /// Monthly cost estimate of what was last applied, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_cost_usd: Option<f64>,
    /// [`Plan::fingerprint`]. Private, so only the planner builds plans: a plan cannot be
    /// made up, and its fingerprint always says what it would change.
    fingerprint: String,
}

impl Plan {
    /// A digest of the changes this plan would make (sha256, hex): per changing component its
    /// action and every field's old and new value, with the stack, environment and scope.
    /// Approving a plan approves this fingerprint; apply plans again under the lock and refuses
    /// to go on when the fingerprint differs, so an approved plan never silently does something
    /// else. Unchanged components and the cost estimate do not count.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Fingerprints what the plan would do: every change, and the desired spec of each
    /// component it creates or changes (a create lists no field differences, yet approving
    /// "create the queue" must not apply another queue than the one shown).
    fn seal(&mut self, desired: &DesiredStack) {
        let changes: Vec<&ComponentPlan> = self.all().filter(|p| p.action.is_change()).collect();
        let specs: BTreeMap<String, String> = changes
            .iter()
            .filter_map(|p| {
                let c = desired.components.get(&p.id)?;
                Some((p.id.to_string(), c.hash()))
            })
            .collect();
        let subject = serde_json::json!({
            "stack": self.stack,
            "environment": self.environment,
            "service": self.service,
            "changes": changes,
            "specs": specs,
        });
        self.fingerprint = crate::state::content_hash(&subject);
    }

    /// Whether apply would change anything.
    pub fn has_changes(&self) -> bool {
        let s = &self.summary;
        s.create + s.update + s.replace + s.delete + s.conflict > 0
    }

    /// Every plan: waves, then deletions.
    pub fn all(&self) -> impl Iterator<Item = &ComponentPlan> {
        self.waves.iter().flatten().chain(self.deletions.iter())
    }

    /// Plans flagged dangerous.
    pub fn dangerous(&self) -> impl Iterator<Item = &ComponentPlan> {
        self.all().filter(|c| c.dangerous)
    }
}

/// What plan needs besides the desired state and the observations.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Limit to one service (its lock scope).
    pub service: Option<String>,
    /// Take over same-named resources without panka's tags.
    pub adopt: bool,
}

/// Compares a desired field set with an observation.
pub fn diff(desired: &DesiredFields, observed: &Observation) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    for (name, want) in &desired.fields {
        let change = desired.rules.get(name).cloned().unwrap_or(Change::Update);
        if change == Change::Ignore {
            continue;
        }
        let have = observed.fields.get(name);
        if have != Some(want) {
            out.push(FieldDiff {
                field: name.clone(),
                old: have.cloned(),
                new: Some(want.clone()),
                change,
            });
        }
    }
    out
}

/// Whether a plan covers a desired component of `desired`: every one for a stack-wide plan; for
/// a service-scoped one the service's own and the stack-wide resources they run on (which a
/// first service-scoped apply must create), not those only other services use.
pub fn in_scope(
    component: &DesiredComponent,
    desired: &DesiredStack,
    options: &PlanOptions,
) -> bool {
    let Some(service) = &options.service else {
        return true;
    };
    if component.id.service == *service {
        return true;
    }
    component.kind().is_stack_resource()
        && desired.components.values().any(|c| {
            c.id.service == *service
                && c.references
                    .iter()
                    .any(|r| r.kind == RefKind::Stack && r.target == component.id)
        })
}

/// Whether a component belongs to the plan's service (any, for a stack-wide plan). Only a
/// stack-wide plan deletes what no component asks for any more: stack-wide resources belong to
/// no service.
fn of_service(id: &ComponentId, options: &PlanOptions) -> bool {
    options.service.as_ref().is_none_or(|s| &id.service == s)
}

/// Builds the plan, telling drift apart per component only (a component whose spec state
/// records unchanged has drifted in every field that differs). [`plan_with`] tells it apart per
/// field.
pub fn plan(
    desired: &DesiredStack,
    graph: &Graph,
    fields: &BTreeMap<ComponentId, DesiredFields>,
    observed: &Observed,
    state: Option<&StateDocument>,
    options: &PlanOptions,
) -> Plan {
    plan_with(
        desired,
        graph,
        fields,
        &BTreeMap::new(),
        observed,
        state,
        options,
    )
}

/// Builds the plan. `applied` holds, per component, the fields its last applied spec gives
/// with the outputs recorded then (see [`Applied`]): a field whose value there equals the
/// repository's was not changed by the repository — directly, or through what it references —
/// so a difference in it is drift (which a `drift.ignore` rule may expect).
pub fn plan_with(
    desired: &DesiredStack,
    graph: &Graph,
    fields: &BTreeMap<ComponentId, DesiredFields>,
    applied: &BTreeMap<ComponentId, DesiredFields>,
    observed: &Observed,
    state: Option<&StateDocument>,
    options: &PlanOptions,
) -> Plan {
    let empty = DesiredFields::default();
    let mut summary = Summary::default();
    let mut waves = Vec::new();
    for wave in &graph.waves {
        let mut planned = Vec::new();
        for id in wave {
            let Some(component) = desired.components.get(id) else {
                continue;
            };
            if !in_scope(component, desired, options) {
                continue;
            }
            let want = fields.get(id).unwrap_or(&empty);
            let seen = observed.get(id);
            let recorded = state
                .and_then(|s| s.components.get(&id.to_string()))
                .map(|c| c.spec_hash.as_str());
            let last = Applied {
                unchanged: recorded == Some(component.hash().as_str()),
                fields: applied.get(id),
            };
            let ignore = desired
                .infra
                .drift
                .as_ref()
                .map_or(&[][..], |d| &d.ignore[..]);
            let p = component_plan(component, want, seen, &last, ignore, options);
            count(&mut summary, &p.action);
            planned.push(p);
        }
        if !planned.is_empty() {
            waves.push(planned);
        }
    }

    let mut deletions: Vec<ComponentPlan> = Vec::new();
    if let Some(state) = state {
        for (name, recorded) in &state.components {
            let Ok(id) = ComponentId::try_from(name.clone()) else {
                continue;
            };
            if desired.components.contains_key(&id) || !of_service(&id, options) {
                continue;
            }
            let kind = Kind::from_recorded(&recorded.kind);
            let p = ComponentPlan {
                id,
                kind: recorded.kind.clone(),
                action: Action::Delete,
                diffs: Vec::new(),
                dangerous: kind.is_some_and(Kind::is_stateful),
                drift: false,
                ignored: Vec::new(),
            };
            count(&mut summary, &p.action);
            deletions.push(p);
        }
    }
    order_deletions(&mut deletions, state);

    let previous_cost_usd = state.map(|s| {
        s.components
            .values()
            .filter_map(|c| serde_json::from_value::<DesiredComponent>(c.applied_spec.clone()).ok())
            .filter_map(|c| cost::component(&c).monthly_usd)
            .sum()
    });

    let mut plan = Plan {
        stack: desired.name.clone(),
        environment: desired.environment.clone(),
        service: options.service.clone(),
        waves,
        deletions,
        summary,
        cost: cost::estimate(desired),
        previous_cost_usd,
        fingerprint: String::new(),
    };
    plan.seal(desired);
    plan
}

/// The components `id` depended on when it was last applied (the references of its recorded
/// spec); empty when state has no such record.
pub fn recorded_references(
    state: Option<&StateDocument>,
    id: &ComponentId,
) -> BTreeSet<ComponentId> {
    state
        .and_then(|s| s.components.get(&id.to_string()))
        .and_then(|c| serde_json::from_value::<DesiredComponent>(c.applied_spec.clone()).ok())
        .map(|c| c.references.into_iter().map(|r| r.target).collect())
        .unwrap_or_default()
}

/// Orders deletions so that a component goes before everything it depends on (reverse waves),
/// using the references recorded with its last applied spec; among equals, containers first.
fn order_deletions(deletions: &mut Vec<ComponentPlan>, state: Option<&StateDocument>) {
    let ids: BTreeSet<ComponentId> = deletions.iter().map(|p| p.id.clone()).collect();
    // needs[x] = the deleted components x depends on; x must be deleted before them.
    let needs: BTreeMap<ComponentId, BTreeSet<ComponentId>> = ids
        .iter()
        .map(|id| {
            let refs = recorded_references(state, id)
                .into_iter()
                .filter(|t| ids.contains(t))
                .collect();
            (id.clone(), refs)
        })
        .collect();
    // Without recorded references to go by: containers first, what everything runs on last.
    let rank_key = |p: &ComponentPlan| {
        let kind = Kind::from_recorded(&p.kind);
        let container = kind.is_some_and(Kind::is_container);
        let stack_wide = kind.is_some_and(Kind::is_stack_resource);
        (stack_wide, !container, p.id.clone())
    };
    let mut remaining: Vec<ComponentPlan> = std::mem::take(deletions);
    remaining.sort_by_key(rank_key);
    while !remaining.is_empty() {
        // Deletable now: nothing still remaining depends on it.
        let pos = remaining
            .iter()
            .position(|p| {
                !remaining
                    .iter()
                    .any(|q| needs.get(&q.id).is_some_and(|n| n.contains(&p.id)))
            })
            // A recorded cycle cannot be ordered; fall back to the stable order.
            .unwrap_or(0);
        deletions.push(remaining.remove(pos));
    }
}

fn count(summary: &mut Summary, action: &Action) {
    match action {
        Action::Create => summary.create += 1,
        Action::Update => summary.update += 1,
        Action::Replace { .. } => summary.replace += 1,
        Action::Delete => summary.delete += 1,
        Action::NoOp => summary.unchanged += 1,
        Action::Conflict { .. } => summary.conflict += 1,
    }
}

fn component_plan(
    component: &DesiredComponent,
    want: &DesiredFields,
    seen: Option<&Observation>,
    last: &Applied<'_>,
    ignore: &[DriftIgnore],
    options: &PlanOptions,
) -> ComponentPlan {
    let kind = component.kind();
    let mut p = ComponentPlan {
        id: component.id.clone(),
        kind: kind.name().to_string(),
        action: Action::NoOp,
        diffs: Vec::new(),
        dangerous: false,
        drift: false,
        ignored: Vec::new(),
    };
    let Some(seen) = seen.filter(|o| o.exists) else {
        p.action = Action::Create;
        return p;
    };
    if !seen.owned && !options.adopt {
        p.action = Action::Conflict {
            reason: format!(
                "a {kind} with this component's name exists without panka's tags; re-run with --adopt to take it over"
            ),
        };
        return p;
    }
    p.diffs = diff(want, seen);
    // Only what AWS changed by itself can be expected: a repository change is applied.
    let id = component.id.to_string();
    let (ignored, kept): (Vec<FieldDiff>, Vec<FieldDiff>) = std::mem::take(&mut p.diffs)
        .into_iter()
        .partition(|d| last.drifted(&d.field, want) && ignores(ignore, &id, &d.field));
    if !kept.is_empty() && !updates_listed_fields_only(kind) {
        // This kind's update makes the whole resource match its spec: an ignored difference
        // is reset along with the others, so the plan says so.
        p.diffs = kept.into_iter().chain(ignored).collect();
    } else {
        p.diffs = kept;
        p.ignored = ignored.into_iter().map(|d| d.field).collect();
    }
    let replace_reason: Vec<String> = p
        .diffs
        .iter()
        .filter_map(|d| match &d.change {
            Change::Replace(reason) => Some(reason.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    p.action = if !replace_reason.is_empty() {
        Action::Replace {
            reason: replace_reason.join("; "),
        }
    } else if !p.diffs.is_empty() || (!seen.owned && options.adopt) {
        Action::Update
    } else {
        Action::NoOp
    };
    p.dangerous = matches!(p.action, Action::Replace { .. }) && kind.is_stateful();
    // The repository asks for what was last applied, yet AWS differs: someone changed AWS.
    p.drift = match &p.action {
        Action::Create => last.unchanged,
        _ => p.diffs.iter().any(|d| last.drifted(&d.field, want)),
    };
    p
}

/// Whether panka's driver of `kind` changes, in an update, only the fields the plan lists and
/// keeps what AWS holds for the others (ECS: the task count, each plain variable). Every other
/// driver makes the whole resource match its spec.
fn updates_listed_fields_only(kind: Kind) -> bool {
    matches!(kind, Kind::MicroService | Kind::Worker)
}

/// What a plan knows of a component's last apply.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// State records its current spec as applied.
    pub unchanged: bool,
    /// The fields its last applied spec gives with the outputs recorded then, when known.
    pub fields: Option<&'a DesiredFields>,
}

impl Applied<'_> {
    /// Whether a difference in `field` is AWS's doing: the repository (`want`) asks for what
    /// was applied. Without the applied fields, whether the component's spec is unchanged.
    pub fn drifted(&self, field: &str, want: &DesiredFields) -> bool {
        match self.fields {
            Some(then) => then.fields.get(field) == want.fields.get(field),
            None => self.unchanged,
        }
    }
}

/// Whether a `drift.ignore` rule expects `field` of component `id` (`service/component`) to
/// differ.
pub fn ignores(rules: &[DriftIgnore], id: &str, field: &str) -> bool {
    rules.iter().any(|r| {
        r.field == field
            && r.component
                .as_deref()
                .is_none_or(|pattern| crate::tags::glob_match(pattern, id))
    })
}

mod markdown;
#[cfg(test)]
mod tests;
