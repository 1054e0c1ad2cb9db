//! What the controller records about each stack/environment it keeps in sync (pure data).
//!
//! Two documents live beside the state, never inside it (the state is the lock holder's; these
//! are written without the lock):
//! - [`SyncStatus`] (`sync.json`): where the target stands — synced to which commit, when drift
//!   was last checked, what was remediated, who holds the lock, what waits for approval, the
//!   last error. `panka status` prints it; the Stack resource's status is made from it.
//! - [`PendingPlan`] (`pending.json`): the plan the controller will apply once someone runs
//!   `panka approve`, in environments that need approval.

use serde::{Deserialize, Serialize};

use crate::state::ReleaseKind;

/// Where a controller-managed target stands, as of its last reconcile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Stack.
    pub stack: String,
    /// Environment.
    pub environment: String,
    /// The controller that wrote this (its lock holder name).
    pub controller: String,
    /// When this was written (RFC 3339).
    pub updated_at: String,
    /// One word for the whole: see [`Phase`].
    pub phase: Phase,
    /// The commit the repository is at (what the controller read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The last commit applied in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_commit: Option<String>,
    /// `VERSION` of the last release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The last release the controller made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<String>,
    /// When drift was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_checked_at: Option<String>,
    /// Components that differ from what was last applied, at that check.
    #[serde(default)]
    pub drifted: usize,
    /// Components healthy, of those applied, at that check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Readiness>,
    /// The last remediation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_remediation: Option<Remediated>,
    /// Who held the lock when the controller wanted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// The release a rollback pinned the target to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_to: Option<String>,
    /// The id of the plan waiting for `panka approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_approval: Option<String>,
    /// The last error, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SyncError>,
    /// A rollout a pass let go of after `--rollout-wait`, watched by the passes after it until
    /// every component is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// A deploy that failed its health wait and was rolled back: the passes after it do not
    /// deploy the same specs again (they would fail and be rolled back again) until the
    /// repository changes them or someone applies them by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBack>,
}

/// A deploy the controller rolled back, held until its specs change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The commit whose deploy failed.
    pub commit: String,
    /// Digest of the stack's specs at that commit: the hold lasts while the repository's
    /// specs digest the same (a commit that changes only other stacks keeps it).
    pub specs: String,
    /// When it was rolled back (RFC 3339).
    pub at: String,
    /// What failed, and what the rollback did.
    pub reason: String,
}

/// A rollout the controller let go of: which apply started it, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The commit whose apply started it.
    pub commit: String,
    /// The release recorded as in progress, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// When the apply let it go (RFC 3339): `--rollout-timeout` counts from here.
    pub since: String,
}

/// The first seven characters of a commit id, as status lines and Stack resources show it.
pub fn short_commit(commit: &str) -> String {
    commit.chars().take(7).collect()
}

/// How many of a target's components are healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Healthy components.
    pub ready: usize,
    /// Components applied.
    pub total: usize,
}

/// One word for where a target stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Not reconciled yet.
    #[default]
    Pending,
    /// AWS matches the repository's commit.
    Synced,
    /// A rollout is going; looked at again soon.
    Progressing,
    /// AWS differs from what was applied and the drift mode says only to report it.
    Drifted,
    /// Someone else holds the lock; retried with backoff.
    Locked,
    /// A rollback pinned the target; the repository's newer commits wait for `panka resume`.
    Pinned,
    /// A plan waits for `panka approve`.
    AwaitingApproval,
    /// The Stack resource's `spec.suspend`: nothing is applied or remediated; drift is still
    /// reported.
    Suspended,
    /// The repository's commit is invalid (file and line in the error); the previous stays.
    Invalid,
    /// The last reconcile failed; retried with backoff when retrying can help.
    Failed,
}

impl Phase {
    /// The word as `panka status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Synced => "synced",
            Phase::Progressing => "progressing",
            Phase::Drifted => "drifted",
            Phase::Locked => "locked",
            Phase::Pinned => "pinned",
            Phase::AwaitingApproval => "awaiting approval",
            Phase::Suspended => "suspended",
            Phase::Invalid => "invalid",
            Phase::Failed => "failed",
        }
    }

    /// The word in PascalCase, as Kubernetes writes phases (`status.phase` of a Stack).
    pub fn pascal(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Synced => "Synced",
            Phase::Progressing => "Progressing",
            Phase::Drifted => "Drifted",
            Phase::Locked => "Locked",
            Phase::Pinned => "Pinned",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Suspended => "Suspended",
            Phase::Invalid => "Invalid",
            Phase::Failed => "Failed",
        }
    }
}

/// A remediation the controller applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remediated {
    /// When (RFC 3339).
    pub at: String,
    /// How many components it changed.
    pub changes: usize,
    /// Its release.
    pub release: String,
}

/// An error as status keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncError {
    /// When it happened (RFC 3339).
    pub at: String,
    /// `transient` (retried with backoff), `permanent` (waits for a change) or `conflict`
    /// (someone holds the lock).
    pub class: String,
    /// What went wrong, with the file and line when the repository is at fault.
    pub message: String,
    /// Failures in a row.
    #[serde(default)]
    pub attempts: u32,
}

/// A plan the controller waits to have approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPlan {
    /// Short id people type (`panka approve --plan ID`): the start of the fingerprint.
    pub id: String,
    /// The plan's fingerprint: apply refuses any other plan.
    pub fingerprint: String,
    /// `apply` (the repository changed) or `remediation` (AWS drifted).
    pub kind: ReleaseKind,
    /// The commit it was planned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `VERSION` it deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One line per change, e.g. `~ api/web update`.
    pub changes: Vec<String>,
    /// Who planned it.
    pub planned_by: String,
    /// When (RFC 3339).
    pub planned_at: String,
    /// The approval, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<Approved>,
    /// The release that applied it: from then on nothing waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
}

impl PendingPlan {
    /// Whether it still waits for approval.
    pub fn waits(&self) -> bool {
        self.approved.is_none() && self.applied_by.is_none()
    }
}

/// Who approved a pending plan, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approved {
    /// Who.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The id of a plan with `fingerprint`: its first 12 characters, enough to tell plans apart
/// and short enough to type.
pub fn plan_id(fingerprint: &str) -> String {
    fingerprint.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_id_is_the_start_of_the_fingerprint() {
        assert_eq!(plan_id("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(plan_id("abc"), "abc");
    }

    #[test]
    fn status_round_trips_in_camel_case() {
        let status = SyncStatus {
            stack: "s".into(),
            environment: "e".into(),
            phase: Phase::AwaitingApproval,
            awaiting_approval: Some("0123".into()),
            ..SyncStatus::default()
        };
        let text = serde_json::to_string(&status).unwrap();
        assert!(text.contains("\"phase\":\"awaitingApproval\""), "{text}");
        assert!(text.contains("\"awaitingApproval\":\"0123\""), "{text}");
        assert_eq!(serde_json::from_str::<SyncStatus>(&text).unwrap(), status);
    }
}
