//! A Stack resource's status, made from where the target stands ([`SyncStatus`]) — pure.
//!
//! Conditions have the standard shape (type, status, PascalCase reason, message,
//! lastTransitionTime, observedGeneration); a condition's transition time moves only when its
//! status does. [`unchanged`] says when writing would change nothing but a timestamp, so the
//! controller does not write then.

use panka_core::sync::{short_commit, Phase, SyncStatus};
use panka_crds::resource::{Condition, StackStatus};

/// The condition types, in the order they are listed.
pub const CONDITIONS: [&str; 6] = [
    "Ready",
    "Synced",
    "Drifted",
    "Locked",
    "Pinned",
    "AwaitingApproval",
];

/// The status of a Stack resource at `generation` standing where `sync` says; `current` (the
/// status it has) keeps transition times of conditions whose status did not change. `now` is
/// the transition time of those that did (RFC 3339).
pub fn stack_status(
    sync: &SyncStatus,
    generation: Option<i64>,
    current: Option<&StackStatus>,
    now: &str,
) -> StackStatus {
    let conditions = conditions(sync)
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let before =
                current.and_then(|c| c.conditions.iter().find(|c| c.condition_type == kind));
            let since = match before {
                Some(b) if b.status == status => b.last_transition_time.clone(),
                _ => None,
            };
            Condition {
                condition_type: kind.to_owned(),
                status: status.to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_transition_time: since.or_else(|| Some(now.to_owned())),
                observed_generation: generation,
            }
        })
        .collect();
    let applied = sync.synced_commit.as_deref();
    StackStatus {
        observed_generation: generation,
        conditions,
        phase: Some(sync.phase.pascal().to_owned()),
        drift: sync.drift_checked_at.as_ref().map(|_| match sync.drifted {
            0 => "None".to_owned(),
            1 => "1 component".to_owned(),
            n => format!("{n} components"),
        }),
        drifted_components: sync
            .drift_checked_at
            .as_ref()
            .map(|_| u32::try_from(sync.drifted).unwrap_or(u32::MAX)),
        drift_checked_at: sync.drift_checked_at.clone(),
        ready_components: sync
            .components
            .map(|c| u32::try_from(c.ready).unwrap_or(u32::MAX)),
        total_components: sync
            .components
            .map(|c| u32::try_from(c.total).unwrap_or(u32::MAX)),
        pending_plan: sync.awaiting_approval.clone(),
        version: sync.version.clone(),
        revision: applied.map(short_commit),
        observed_revision: sync.commit.as_deref().map(short_commit),
        last_release: sync.last_release.clone(),
        last_applied_at: current
            .and_then(|c| {
                // Kept while the release is the same; a new release is stamped now.
                (c.last_release == sync.last_release)
                    .then(|| c.last_applied_at.clone())
                    .flatten()
            })
            .or_else(|| sync.last_release.as_ref().map(|_| now.to_owned())),
        pinned_release: sync.pinned_to.clone(),
    }
}

/// Whether `next` differs from `current` only in timestamps (or not at all): then it is not
/// written.
pub fn unchanged(current: Option<&StackStatus>, next: &StackStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    let strip = |s: &StackStatus| {
        let mut s = s.clone();
        s.drift_checked_at = None;
        s.last_applied_at = None;
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    strip(current) == strip(next)
}

type Cond = (&'static str, &'static str, &'static str, String);

fn conditions(sync: &SyncStatus) -> Vec<Cond> {
    let commit = sync.commit.as_deref().map(short_commit).unwrap_or_default();
    let error = sync
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    let version = sync
        .version
        .as_deref()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    let in_sync = sync.commit.is_some() && sync.synced_commit == sync.commit;

    let ready = match (sync.phase, sync.components) {
        (Phase::Pending, _) => ("Unknown", "Pending", "not reconciled yet".to_owned()),
        (Phase::Failed, _) => ("False", "ReconcileFailed", error.clone()),
        (Phase::Progressing, _) => ("False", "RollingOut", "a rollout is in progress".to_owned()),
        (_, Some(c)) if c.ready < c.total => (
            "False",
            "ComponentsNotReady",
            format!("{}/{} components healthy", c.ready, c.total),
        ),
        (_, Some(c)) => (
            "True",
            "ComponentsReady",
            format!("{}/{} components healthy", c.ready, c.total),
        ),
        (_, None) => ("Unknown", "NotObserved", "nothing observed yet".to_owned()),
    };
    let synced = match sync.phase {
        Phase::Pending => ("Unknown", "Pending", "not reconciled yet".to_owned()),
        Phase::Invalid => ("False", "InvalidRevision", error.clone()),
        Phase::Failed => ("False", "ApplyFailed", error.clone()),
        Phase::Locked => (
            "False",
            "Locked",
            format!(
                "revision {commit} waits for the lock, held by {}",
                sync.locked_by.as_deref().unwrap_or("someone else")
            ),
        ),
        Phase::AwaitingApproval => (
            "False",
            "AwaitingApproval",
            format!(
                "revision {commit} waits for plan {} to be approved",
                sync.awaiting_approval.as_deref().unwrap_or("?")
            ),
        ),
        Phase::Progressing => (
            "False",
            "Progressing",
            format!("applying revision {commit}"),
        ),
        Phase::Suspended => (
            if in_sync { "True" } else { "False" },
            "Suspended",
            if in_sync {
                format!(
                    "revision {commit}{version} is applied; the Stack is suspended (spec.suspend)"
                )
            } else {
                format!("revision {commit} is not applied: the Stack is suspended (spec.suspend)")
            },
        ),
        Phase::Synced | Phase::Drifted | Phase::Pinned if in_sync => (
            "True",
            "Synced",
            format!("revision {commit}{version} is applied"),
        ),
        Phase::Pinned => (
            "False",
            "Pinned",
            format!(
                "revision {commit} waits: a rollback pinned release {} (`panka resume` lifts it)",
                sync.pinned_to.as_deref().unwrap_or("?")
            ),
        ),
        Phase::Synced | Phase::Drifted => (
            "False",
            "OutOfSync",
            format!("revision {commit} is not applied yet"),
        ),
    };
    let drifted = match (&sync.drift_checked_at, sync.drifted) {
        (None, _) => ("Unknown", "NotChecked", "drift not checked yet".to_owned()),
        // No time in the messages: a later check finding the same is not worth a write
        // (`driftCheckedAt` says when).
        (Some(_), 0) => (
            "False",
            "NoDrift",
            "AWS matched the last release".to_owned(),
        ),
        (Some(_), n) => (
            "True",
            "DriftDetected",
            format!(
                "{n} component{} differ from release {}",
                if n == 1 { "" } else { "s" },
                sync.last_release.as_deref().unwrap_or("?")
            ),
        ),
    };
    let locked = match (sync.phase, &sync.locked_by) {
        (Phase::Locked, holder) => (
            "True",
            "LockHeld",
            format!(
                "held by {}; retried with backoff",
                holder.as_deref().unwrap_or("someone else")
            ),
        ),
        _ => (
            "False",
            "NotLocked",
            "the lock was free at the last pass".to_owned(),
        ),
    };
    let pinned = match &sync.pinned_to {
        Some(release) => (
            "True",
            "PinnedByRollback",
            format!("release {release} is kept until `panka resume`"),
        ),
        None => (
            "False",
            "NotPinned",
            "no rollback pins the stack".to_owned(),
        ),
    };
    let approval = match &sync.awaiting_approval {
        Some(id) => (
            "True",
            "PlanPending",
            format!(
                "plan {id} waits: `panka approve -s {} -e {} --plan {id}`, or annotate panka.io/approve-plan={id}",
                sync.stack, sync.environment
            ),
        ),
        None => ("False", "NothingPending", "no plan waits for approval".to_owned()),
    };
    let [a, b, c, d, e, f] = CONDITIONS;
    vec![
        (a, ready.0, ready.1, ready.2),
        (b, synced.0, synced.1, synced.2),
        (c, drifted.0, drifted.1, drifted.2),
        (d, locked.0, locked.1, locked.2),
        (e, pinned.0, pinned.1, pinned.2),
        (f, approval.0, approval.1, approval.2),
    ]
}

#[cfg(test)]
mod tests {
    use panka_core::sync::{Readiness, SyncError};

    use super::*;

    fn synced() -> SyncStatus {
        SyncStatus {
            stack: "shop".into(),
            environment: "production".into(),
            phase: Phase::Synced,
            commit: Some("8b4dc4a0123".into()),
            synced_commit: Some("8b4dc4a0123".into()),
            version: Some("v1.3.0".into()),
            last_release: Some("rel-1".into()),
            drift_checked_at: Some("2026-12-06T10:00:00Z".into()),
            components: Some(Readiness { ready: 3, total: 3 }),
            ..SyncStatus::default()
        }
    }

    fn condition<'a>(s: &'a StackStatus, kind: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.condition_type == kind)
            .unwrap()
    }

    #[test]
    fn a_synced_stack_is_ready_and_synced_with_every_condition_listed() {
        let s = stack_status(&synced(), Some(4), None, "2026-12-06T10:00:01Z");
        let types: Vec<&str> = s
            .conditions
            .iter()
            .map(|c| c.condition_type.as_str())
            .collect();
        assert_eq!(types, CONDITIONS);
        assert_eq!(condition(&s, "Ready").status, "True");
        assert_eq!(condition(&s, "Synced").status, "True");
        assert_eq!(condition(&s, "Drifted").status, "False");
        assert_eq!(condition(&s, "Locked").status, "False");
        assert_eq!(condition(&s, "AwaitingApproval").status, "False");
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(4)
            && c.reason
                .as_ref()
                .is_some_and(|r| r.chars().next().is_some_and(char::is_uppercase))));
        assert_eq!(s.revision.as_deref(), Some("8b4dc4a"));
        assert_eq!(s.drift.as_deref(), Some("None"));
        assert_eq!((s.ready_components, s.total_components), (Some(3), Some(3)));
        assert_eq!(s.phase.as_deref(), Some("Synced"));
    }

    #[test]
    fn transition_times_move_only_when_a_conditions_status_does() {
        let first = stack_status(&synced(), Some(1), None, "T1");
        let mut drifted = synced();
        drifted.drifted = 2;
        drifted.phase = Phase::Drifted;
        let second = stack_status(&drifted, Some(1), Some(&first), "T2");
        assert_eq!(
            condition(&second, "Synced").last_transition_time.as_deref(),
            Some("T1")
        );
        assert_eq!(
            condition(&second, "Drifted")
                .last_transition_time
                .as_deref(),
            Some("T2")
        );
        assert_eq!(
            condition(&second, "Drifted").reason.as_deref(),
            Some("DriftDetected")
        );
        assert_eq!(second.drift.as_deref(), Some("2 components"));
    }

    #[test]
    fn only_a_newer_drift_check_is_not_worth_a_write() {
        let first = stack_status(&synced(), Some(1), None, "T1");
        let mut later = synced();
        later.drift_checked_at = Some("2026-12-06T10:05:00Z".into());
        let next = stack_status(&later, Some(1), Some(&first), "T2");
        assert!(unchanged(Some(&first), &next));
        assert!(!unchanged(None, &next));
        later.components = Some(Readiness { ready: 2, total: 3 });
        let degraded = stack_status(&later, Some(1), Some(&first), "T2");
        assert!(!unchanged(Some(&first), &degraded));
        assert_eq!(
            condition(&degraded, "Ready").reason.as_deref(),
            Some("ComponentsNotReady")
        );
    }

    #[test]
    fn an_invalid_commit_names_the_file_and_keeps_readiness() {
        let mut s = synced();
        s.phase = Phase::Invalid;
        s.commit = Some("c0ffee0aaaa".into());
        s.error = Some(SyncError {
            at: "T".into(),
            class: "permanent".into(),
            message: "stacks/shop/stack.yaml:3: unknown field".into(),
            attempts: 1,
        });
        let st = stack_status(&s, None, None, "T");
        let synced = condition(&st, "Synced");
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_deref()),
            ("False", Some("InvalidRevision"))
        );
        assert!(synced.message.as_deref().unwrap().contains("stack.yaml:3"));
        assert_eq!(condition(&st, "Ready").status, "True");
        assert_eq!(st.revision.as_deref(), Some("8b4dc4a"));
        assert_eq!(st.observed_revision.as_deref(), Some("c0ffee0"));
    }

    #[test]
    fn locks_pins_and_pending_plans_show_as_conditions() {
        let mut s = synced();
        s.phase = Phase::AwaitingApproval;
        s.awaiting_approval = Some("ab12cd34".into());
        s.pinned_to = Some("rel-0".into());
        let st = stack_status(&s, None, None, "T");
        assert_eq!(condition(&st, "AwaitingApproval").status, "True");
        assert!(condition(&st, "AwaitingApproval")
            .message
            .as_deref()
            .unwrap()
            .contains("panka.io/approve-plan=ab12cd34"));
        assert_eq!(condition(&st, "Pinned").status, "True");
        assert_eq!(st.pending_plan.as_deref(), Some("ab12cd34"));
        s.phase = Phase::Locked;
        s.locked_by = Some("alice (apply) since 10:00".into());
        let st = stack_status(&s, None, None, "T");
        assert_eq!(condition(&st, "Locked").reason.as_deref(), Some("LockHeld"));
        assert!(condition(&st, "Synced")
            .message
            .as_deref()
            .unwrap()
            .contains("alice"));
    }
}
