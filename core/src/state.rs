//! The state *documents* (DESIGN.md §5): what a state object and a history object hold, and the
//! rules for what may be recorded (secret-looking variables are redacted). Pure data; reading and
//! writing them conditionally is the controller's state store.

use std::collections::BTreeMap;

use panka_crds::spec::{Provider, StackInfraSpec};
use panka_crds::Kind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::StateKey;
use crate::model::{DesiredComponent, DesiredService, DesiredStack};

/// Version of the state document format.
pub const FORMAT_VERSION: u32 = 1;

/// The state of one stack/environment: what panka created and last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocument {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Stack name.
    pub stack: String,
    /// Environment name.
    pub environment: String,
    /// Identity of this state's history: set at the first write, never changed. A write carrying
    /// another lineage is refused (it belongs to some other state).
    pub lineage: String,
    /// Incremented by every write; a write that does not advance it is refused.
    pub serial: u64,
    /// Highest lock fence that has written this state (stamped by the store).
    pub fence: u64,
    /// Highest fence that has written, per lock scope (`stack`, `service:{name}`; stamped by the
    /// store). A service-scoped writer is refused when a newer stack-scoped holder or a newer
    /// holder of its own service has written.
    #[serde(default)]
    pub fences: BTreeMap<String, u64>,
    /// When this version was written (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// Who wrote it (`user@host` or the controller's pod).
    #[serde(default)]
    pub updated_by: String,
    /// The release that produced it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Per component (`{service}/{component}`), what exists and what was applied.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentState>,
    /// The stack-wide settings the components were last applied with (absent in documents
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_stack: Option<AppliedStack>,
    /// Releases the stack (`stack`) or a service (`service:{name}`) is pinned to by `panka
    /// rollback`, until `panka resume`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, Pin>,
}

/// The stack-wide part of a [`DesiredStack`] last applied: with the components' recorded specs
/// it makes the applied stack again ([`StateDocument::applied_stack`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedStack {
    /// Provider and region.
    pub provider: Provider,
    /// Stack infrastructure.
    pub infra: StackInfraSpec,
    /// Services.
    #[serde(default)]
    pub services: BTreeMap<String, DesiredService>,
    /// Variables in effect, secret-looking ones redacted ([`redact_variables`]).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

impl AppliedStack {
    /// What a state records of `desired`'s stack-wide settings.
    pub fn of(desired: &DesiredStack) -> AppliedStack {
        AppliedStack {
            provider: desired.provider.clone(),
            infra: desired.infra.clone(),
            services: desired.services.clone(),
            variables: redact_variables(&desired.variables),
        }
    }
}

/// A stack or service held at a release by `panka rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    /// The release rolled back to.
    pub release: String,
    /// Its version, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Who pinned it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Whether a pin of `scope` holds back a run of `service` (the whole stack when `None`).
pub fn pin_holds(scope: &str, service: Option<&str>) -> bool {
    match service {
        None => true,
        Some(s) => scope == "stack" || scope == pin_scope(Some(s)),
    }
}

/// The pin scope of a stack-wide run: `stack`; of a service-scoped one: `service:{name}`.
pub fn pin_scope(service: Option<&str>) -> String {
    service.map_or_else(|| "stack".to_owned(), |s| format!("service:{s}"))
}

/// What the state records about one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentState {
    /// Component kind (`MicroService`, `RDS`, …).
    pub kind: String,
    /// AWS identifiers: ARNs, names, ids.
    #[serde(default)]
    pub identifiers: BTreeMap<String, String>,
    /// Outputs other components may reference (`url`, `endpoint`, …). Never secret values.
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// The resolved spec last applied (secrets only as references).
    #[serde(default)]
    pub applied_spec: serde_json::Value,
    /// [`content_hash`] of `applied_spec`.
    #[serde(default)]
    pub spec_hash: String,
    /// When it was last applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
}

/// The kind earlier versions recorded for every stack-wide resource.
const OLD_STACK_KIND: &str = "StackResource";

impl StateDocument {
    /// Brings a document written by an earlier panka to this version's shape, in memory (the
    /// next write stores it so): stack-wide resources were recorded under one kind,
    /// `StackResource`, and now carry their own (`EcsCluster`, …; see [`crate::stack`]).
    pub fn upgrade(&mut self) {
        for (name, c) in &mut self.components {
            if c.kind != OLD_STACK_KIND {
                continue;
            }
            let kind = match name.strip_prefix("_stack/") {
                Some("network") => Kind::Network,
                Some("cluster") => Kind::EcsCluster,
                Some("alb") => Kind::LoadBalancer,
                Some("execution-role") => Kind::ExecutionRole,
                _ => continue,
            };
            c.kind = kind.name().to_string();
        }
    }

    /// The pin that holds back a run of `service` (the whole stack when `None`): a stack pin
    /// holds every run; a service pin holds that service's runs and every stack-wide one.
    pub fn pin_holding(&self, service: Option<&str>) -> Option<(&str, &Pin)> {
        self.pins
            .iter()
            .find(|(scope, _)| pin_holds(scope, service))
            .map(|(scope, pin)| (scope.as_str(), pin))
    }

    /// The stack as last applied: `fallback`'s name and environment, the recorded stack-wide
    /// settings (or `fallback`'s, for a document written before they were recorded), and each
    /// recorded component's applied spec. Errs naming a component whose record cannot be read.
    pub fn applied_stack(&self, fallback: &DesiredStack) -> Result<DesiredStack, String> {
        let mut components = BTreeMap::new();
        for (name, c) in &self.components {
            let component: DesiredComponent = serde_json::from_value(c.applied_spec.clone())
                .map_err(|e| {
                    format!("the applied spec state records for {name} cannot be read: {e}")
                })?;
            components.insert(component.id.clone(), component);
        }
        let meta = self
            .applied_stack
            .clone()
            .unwrap_or_else(|| AppliedStack::of(fallback));
        Ok(DesiredStack {
            name: fallback.name.clone(),
            environment: fallback.environment.clone(),
            provider: meta.provider,
            infra: meta.infra,
            services: meta.services,
            components,
            variables: meta.variables,
        })
    }

    /// The first version of a state: a fresh lineage, serial 1.
    pub fn initial(key: &StateKey) -> StateDocument {
        StateDocument {
            format_version: FORMAT_VERSION,
            stack: key.stack.clone(),
            environment: key.environment.clone(),
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 1,
            fence: 0,
            fences: BTreeMap::new(),
            updated_at: String::new(),
            updated_by: String::new(),
            release: None,
            components: BTreeMap::new(),
            applied_stack: None,
            pins: BTreeMap::new(),
        }
    }
}

/// A state document together with the version token (ETag) it was read or written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The document.
    pub document: StateDocument,
    /// Opaque version token: what the next write must match.
    pub etag: String,
}

impl Snapshot {
    /// The document to modify for the next write: the same, with the serial advanced.
    pub fn next(&self) -> StateDocument {
        let mut doc = self.document.clone();
        doc.serial += 1;
        doc
    }
}

/// sha256 (hex) of a JSON value's canonical text (object keys sorted).
pub fn content_hash(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// One object of history: a release, or an administrative event such as a forced unlock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum HistoryEntry {
    /// One apply (or destroy, rollback) of a stack/environment.
    Release(Release),
    /// A lock released by `panka unlock`.
    Unlock(UnlockRecord),
}

impl HistoryEntry {
    /// The entry's id (its object name).
    pub fn id(&self) -> &str {
        match self {
            HistoryEntry::Release(r) => &r.id,
            HistoryEntry::Unlock(u) => &u.id,
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseOutcome {
    /// Still running (or the process died before recording the end).
    InProgress,
    /// Everything applied.
    Succeeded,
    /// Stopped on an error.
    Failed,
    /// Stopped on request (Ctrl-C, SIGTERM, a controller shutting down) before it finished;
    /// what was applied is in state, and the next run carries on.
    Interrupted,
    /// Later rolled back (written by versions before rollbacks named what they undo; `history`
    /// now derives "rolled back" from [`Release::supersedes`]).
    RolledBack,
}

/// What a release did. Stored as `releaseKind` (`kind` already says which [`HistoryEntry`] an
/// object is); absent in documents written before it existed, which were all applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseKind {
    /// `panka apply` or a controller reconcile: made AWS match the repository.
    #[default]
    Apply,
    /// `panka destroy`: deleted the stack's (or a service's) resources.
    Destroy,
    /// `panka rollback`, or an automatic rollback of a failed release: re-applied an earlier
    /// release's recorded spec ([`Release::target`]).
    Rollback,
    /// `panka drift remediate` (or the controller's drift policy): made AWS match the applied
    /// spec again, changing only what drifted.
    Remediation,
}

impl ReleaseKind {
    /// The word stored and shown: `apply`, `destroy`, `rollback`, `remediation`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseKind::Apply => "apply",
            ReleaseKind::Destroy => "destroy",
            ReleaseKind::Rollback => "rollback",
            ReleaseKind::Remediation => "remediation",
        }
    }
}

impl std::fmt::Display for ReleaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a release records instead of the value of a variable whose name looks secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a variable name looks like it holds a secret: it contains `SECRET`, `PASSWORD`,
/// `PASSWD`, `TOKEN`, `KEY` or `CREDENTIAL`, in any case. Such values are never recorded.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

/// Variables as a release records them: values of names that [`looks_secret`] replaced by
/// [`REDACTED`]. Variables are plain configuration (secrets are Secrets Manager references), so
/// this guards against a mistake, not a design.
pub fn redact_variables(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| {
            let v = if looks_secret(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// One release: enough to show it and to re-apply it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Id ([`new_history_id`]).
    pub id: String,
    /// Apply, destroy or rollback (`releaseKind` in the stored JSON: `kind` is the entry's tag).
    #[serde(rename = "releaseKind", default)]
    pub kind: ReleaseKind,
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// `stack` or `service:{name}`.
    pub scope: String,
    /// The `VERSION` variable, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Git commit of the deployment repository, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Who ran it.
    pub actor: String,
    /// The variables given on the command line (`--var NAME=VALUE`), values of secret-looking
    /// names redacted ([`redact_variables`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Outcome.
    pub outcome: ReleaseOutcome,
    /// Action per component (`create`, `update`, `replace`, `delete`, `noop`).
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// The full resolved desired spec (secrets only as references).
    #[serde(default)]
    pub desired: serde_json::Value,
    /// A rollback's target: the release whose spec it re-applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The releases a rollback undid (shown as rolled back by `history`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    /// Why it ran, when not by a person's command (an automatic rollback's failed health wait
    /// or crossed threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The releases of `entries` (any order) that a rollback undid ([`Release::supersedes`] of a
/// rollback that succeeded) and no later rollback went back to: `history` shows them as
/// rolled back.
pub fn rolled_back(entries: &[HistoryEntry]) -> std::collections::BTreeSet<&str> {
    let mut rollbacks: Vec<&Release> = entries
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::Release(r)
                if r.kind == ReleaseKind::Rollback && r.outcome == ReleaseOutcome::Succeeded =>
            {
                Some(r)
            }
            _ => None,
        })
        .collect();
    rollbacks.sort_by(|a, b| a.id.cmp(&b.id));
    let mut undone = std::collections::BTreeSet::new();
    for r in rollbacks {
        undone.extend(r.supersedes.iter().map(String::as_str));
        if let Some(target) = &r.target {
            undone.remove(target.as_str());
        }
    }
    undone
}

/// A lock removed by `panka unlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockRecord {
    /// Id ([`new_history_id`]).
    pub id: String,
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// The lock key removed.
    pub lock_key: String,
    /// The lock id removed.
    pub lock_id: String,
    /// Its holder.
    pub locked_by: String,
    /// Its operation.
    pub operation: String,
    /// When it was taken (RFC 3339).
    pub locked_at: String,
    /// Whether its lease had expired.
    pub expired: bool,
    /// Whether `--force` was needed.
    pub forced: bool,
    /// Who removed it.
    pub actor: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A sortable, unique history id: `20250115T133000.123Z-1a2b3c4d`. Milliseconds, so that
/// entries written within one second (an unlock and the apply after it, two quick applies) still
/// list in the order they happened; ids of older versions (`20250115T133000Z-…`) sort among
/// them by the second.
pub fn new_history_id() -> String {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ");
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{stamp}-{}", &rand[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_document_gets_the_stack_wide_kinds() {
        let mut doc = StateDocument::initial(&StateKey::new("s", "e").unwrap());
        for (name, kind) in [
            ("_stack/cluster", "StackResource"),
            ("_stack/alb", "StackResource"),
            ("_stack/execution-role", "StackResource"),
            ("api/server", "MicroService"),
        ] {
            doc.components.insert(
                name.into(),
                ComponentState {
                    kind: kind.into(),
                    ..ComponentState::default()
                },
            );
        }
        doc.upgrade();
        let kinds: Vec<&str> = doc.components.values().map(|c| c.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "LoadBalancer",
                "EcsCluster",
                "ExecutionRole",
                "MicroService"
            ]
        );
    }

    fn release(kind: ReleaseKind, overrides: &[(&str, &str)]) -> HistoryEntry {
        HistoryEntry::Release(Release {
            id: "20250101T000000Z-aaaaaaaa".into(),
            kind,
            stack: "s".into(),
            environment: "e".into(),
            scope: "stack".into(),
            version: None,
            commit: None,
            actor: "a@b".into(),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            started_at: "2025-01-01T00:00:00Z".into(),
            finished_at: None,
            outcome: ReleaseOutcome::Succeeded,
            actions: BTreeMap::new(),
            desired: serde_json::Value::Null,
            target: None,
            supersedes: Vec::new(),
            reason: None,
        })
    }

    #[test]
    fn a_release_without_release_kind_reads_as_an_apply() {
        let old = serde_json::json!({
            "kind": "release", "id": "20250101T000000Z-aaaaaaaa", "stack": "s",
            "environment": "e", "scope": "stack", "actor": "a@b",
            "startedAt": "2025-01-01T00:00:00Z", "outcome": "succeeded",
        });
        let entry: HistoryEntry = serde_json::from_value(old).unwrap();
        let HistoryEntry::Release(r) = entry else {
            panic!("not a release")
        };
        assert_eq!(r.kind, ReleaseKind::Apply);
        assert!(r.overrides.is_empty());
    }

    #[test]
    fn release_kind_is_stored_beside_the_entry_tag_and_reads_back() {
        for kind in [
            ReleaseKind::Apply,
            ReleaseKind::Destroy,
            ReleaseKind::Rollback,
            ReleaseKind::Remediation,
        ] {
            let entry = release(kind, &[("VERSION", "1.10")]);
            let json = serde_json::to_value(&entry).unwrap();
            assert_eq!(json["kind"], "release");
            assert_eq!(json["releaseKind"], kind.as_str());
            assert_eq!(json["overrides"]["VERSION"], "1.10");
            let back: HistoryEntry = serde_json::from_value(json).unwrap();
            assert_eq!(back, entry);
        }
    }

    #[test]
    fn history_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..3)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                new_history_id()
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        for id in &ids {
            crate::keys::check_name("history id", id).unwrap();
            assert_eq!(id.len(), "20250115T133000.123Z-1a2b3c4d".len(), "{id}");
        }
    }

    #[test]
    fn a_release_rolled_back_to_again_is_live_again() {
        let entry = |id: &str, kind, target: Option<&str>, supersedes: &[&str]| {
            let HistoryEntry::Release(mut r) = release(kind, &[]) else {
                unreachable!()
            };
            r.id = id.into();
            r.target = target.map(str::to_owned);
            r.supersedes = supersedes.iter().map(|s| s.to_string()).collect();
            HistoryEntry::Release(r)
        };
        let mut entries = vec![
            entry("a1", ReleaseKind::Apply, None, &[]),
            entry("a2", ReleaseKind::Apply, None, &[]),
            entry("a3", ReleaseKind::Rollback, Some("a1"), &["a2"]),
        ];
        assert_eq!(
            rolled_back(&entries).into_iter().collect::<Vec<_>>(),
            ["a2"]
        );
        // Rolled back to a2 (undoing a3): a2 is live again, a3 is rolled back.
        entries.push(entry("a4", ReleaseKind::Rollback, Some("a2"), &["a3"]));
        assert_eq!(
            rolled_back(&entries).into_iter().collect::<Vec<_>>(),
            ["a3"]
        );
    }

    #[test]
    fn empty_overrides_are_not_stored() {
        let json = serde_json::to_value(release(ReleaseKind::Apply, &[])).unwrap();
        assert!(json.get("overrides").is_none(), "{json}");
    }

    #[test]
    fn secret_looking_variables_are_redacted_and_others_kept() {
        let vars: BTreeMap<String, String> = [
            ("USER_API_VERSION", "1.4.2"),
            ("DB_PASSWORD", "hunter2"),
            ("api_token", "t"),
            ("ClientSecret", "s"),
            ("SIGNING_KEY_ID", "k"),
            ("AWS_CREDENTIALS", "c"),
            ("REPLICAS", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let recorded = redact_variables(&vars);
        assert_eq!(recorded["USER_API_VERSION"], "1.4.2");
        assert_eq!(recorded["REPLICAS"], "3");
        for k in [
            "DB_PASSWORD",
            "api_token",
            "ClientSecret",
            "SIGNING_KEY_ID",
            "AWS_CREDENTIALS",
        ] {
            assert_eq!(recorded[k], REDACTED, "{k}");
        }
        assert_eq!(recorded.len(), vars.len());
    }
}
