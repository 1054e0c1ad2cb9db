//! Which Kubernetes Events a pass is worth — pure: the transitions between where a target
//! stood and where it stands now. Publishing (and deduplicating repeats into a series) is the
//! adapter's, through kube-runtime's `Recorder`.

use panka_core::sync::{short_commit, Phase, SyncStatus};

/// One Event to publish on a Stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// PascalCase reason: `Applied`, `DriftDetected`, `DriftRemediated`, `RolledBack`,
    /// `Locked`, `AwaitingApproval`, `Failed`.
    pub reason: &'static str,
    /// A Warning rather than a Normal event.
    pub warning: bool,
    /// What happened, naming the commit, plan or release.
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: String) -> Note {
        Note {
            reason,
            warning: false,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Note {
        Note {
            reason,
            warning: true,
            message,
        }
    }
}

/// The events of going from `before` to `now`; `rolled_back`: the pass rolled a failed apply
/// back.
pub fn transitions(before: Option<&SyncStatus>, now: &SyncStatus, rolled_back: bool) -> Vec<Note> {
    let empty = SyncStatus::default();
    let before = before.unwrap_or(&empty);
    let commit = now.commit.as_deref().map(short_commit).unwrap_or_default();
    let mut notes = Vec::new();

    let remediation = now
        .last_remediation
        .as_ref()
        .filter(|r| before.last_remediation.as_ref() != Some(*r));
    if let Some(r) = remediation {
        notes.push(Note::normal(
            "DriftRemediated",
            format!(
                "put back {} change{} as release {}",
                r.changes,
                if r.changes == 1 { "" } else { "s" },
                r.release
            ),
        ));
    } else if now.last_release.is_some() && now.last_release != before.last_release {
        notes.push(Note::normal(
            "Applied",
            format!(
                "applied revision {commit}{} as release {}",
                now.version
                    .as_deref()
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default(),
                now.last_release.as_deref().unwrap_or_default()
            ),
        ));
    }
    if now.drifted > 0 && before.drifted == 0 {
        notes.push(Note::warning(
            "DriftDetected",
            format!(
                "{} component{} differ from release {}",
                now.drifted,
                if now.drifted == 1 { "" } else { "s" },
                now.last_release.as_deref().unwrap_or("?")
            ),
        ));
    }
    if rolled_back {
        notes.push(Note::warning(
            "RolledBack",
            format!(
                "revision {commit} failed and was rolled back: {}",
                now.error.as_ref().map_or("", |e| e.message.as_str())
            ),
        ));
    }
    if now.phase == Phase::Locked && before.phase != Phase::Locked {
        notes.push(Note::normal(
            "Locked",
            format!(
                "revision {commit} waits for the lock, held by {}",
                now.locked_by.as_deref().unwrap_or("someone else")
            ),
        ));
    }
    if let Some(id) = now
        .awaiting_approval
        .as_ref()
        .filter(|id| before.awaiting_approval.as_ref() != Some(*id))
    {
        notes.push(Note::normal(
            "AwaitingApproval",
            format!(
                "plan {id} for revision {commit} waits for approval: panka approve -s {} -e {} --plan {id}",
                now.stack, now.environment
            ),
        ));
    }
    let failed = matches!(now.phase, Phase::Failed | Phase::Invalid) && !rolled_back;
    let new_error =
        now.error.as_ref().map(|e| &e.message) != before.error.as_ref().map(|e| &e.message);
    if failed && (new_error || before.phase != now.phase) {
        notes.push(Note::warning(
            "Failed",
            format!(
                "revision {commit}: {}",
                now.error.as_ref().map_or("failed", |e| e.message.as_str())
            ),
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use panka_core::sync::{Remediated, SyncError};

    use super::*;

    fn base() -> SyncStatus {
        SyncStatus {
            stack: "shop".into(),
            environment: "staging".into(),
            phase: Phase::Synced,
            commit: Some("8b4dc4a0123".into()),
            synced_commit: Some("8b4dc4a0123".into()),
            version: Some("v1.3.0".into()),
            last_release: Some("rel-1".into()),
            ..SyncStatus::default()
        }
    }

    fn reasons(notes: &[Note]) -> Vec<&'static str> {
        notes.iter().map(|n| n.reason).collect()
    }

    #[test]
    fn a_new_release_is_applied_and_names_commit_version_and_release() {
        let notes = transitions(None, &base(), false);
        assert_eq!(reasons(&notes), ["Applied"]);
        assert_eq!(
            notes[0].message,
            "applied revision 8b4dc4a (version v1.3.0) as release rel-1"
        );
        assert!(
            transitions(Some(&base()), &base(), false).is_empty(),
            "nothing changed, nothing said"
        );
    }

    #[test]
    fn drift_is_detected_once_and_its_remediation_is_not_an_apply() {
        let mut drifted = base();
        drifted.drifted = 1;
        drifted.phase = Phase::Drifted;
        assert_eq!(
            reasons(&transitions(Some(&base()), &drifted, false)),
            ["DriftDetected"]
        );
        assert!(transitions(Some(&drifted), &drifted, false).is_empty());
        let mut fixed = base();
        fixed.last_release = Some("rel-2".into());
        fixed.last_remediation = Some(Remediated {
            at: "T".into(),
            changes: 1,
            release: "rel-2".into(),
        });
        let notes = transitions(Some(&drifted), &fixed, false);
        assert_eq!(reasons(&notes), ["DriftRemediated"]);
        assert!(notes[0].message.contains("rel-2"));
    }

    #[test]
    fn failures_locks_approvals_and_rollbacks_each_have_their_reason() {
        let mut failed = base();
        failed.phase = Phase::Failed;
        failed.error = Some(SyncError {
            at: "T".into(),
            class: "transient".into(),
            message: "throttled".into(),
            attempts: 1,
        });
        let notes = transitions(Some(&base()), &failed, false);
        assert_eq!(reasons(&notes), ["Failed"]);
        assert!(notes[0].warning);
        assert!(
            transitions(Some(&failed), &failed, false).is_empty(),
            "the same failure again is not news"
        );
        assert_eq!(
            reasons(&transitions(Some(&base()), &failed, true)),
            ["RolledBack"]
        );

        let mut locked = base();
        locked.phase = Phase::Locked;
        locked.locked_by = Some("alice".into());
        assert_eq!(
            reasons(&transitions(Some(&base()), &locked, false)),
            ["Locked"]
        );

        let mut waiting = base();
        waiting.phase = Phase::AwaitingApproval;
        waiting.awaiting_approval = Some("ab12".into());
        let notes = transitions(Some(&base()), &waiting, false);
        assert_eq!(reasons(&notes), ["AwaitingApproval"]);
        assert!(notes[0].message.contains("--plan ab12"));
    }
}
