//! Git mode's trigger: fetch the branch on an interval (or at once, on a webhook), find the
//! stacks whose folder changed since the commit fetched before, and queue those targets for
//! every environment this controller owns. A failed fetch backs off and is reported; the last
//! good commit stays the one reconciled (drift sweeps go on).
//!
//! The targets live in a kube-runtime reflector store filled by hand, one `Stack` object per
//! (stack, environment), so the same `applier` drives git mode and (next) CRD mode.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use panka_core::diag::Diagnostics;
use panka_core::source::FileTree;
use panka_crds::resource::{GitSource as GitSpec, Stack, StackResourceSpec};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::reconcile::metrics::Metrics;
use crate::reconcile::StackSource;
use crate::source::git::GitSource;

/// How long a fetch may take before the poller reports it and stops waiting for it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// A fetch's result: the commit, its stacks' tree ids, and the stacks changed since before.
type Fetch = Result<(String, BTreeMap<String, String>, Vec<String>), crate::source::git::GitError>;

fn fetch(git: &GitSource, before: Option<&str>) -> Fetch {
    let commit = git.fetch()?.commit;
    let trees = git.stack_trees(&commit)?;
    let changed = git.changed_stacks(before, &commit)?;
    Ok((commit, trees, changed))
}

/// The namespace given to git mode's Stack objects (they exist only in the store).
pub const NAMESPACE: &str = "panka";

/// The repository as the reconciles see it: the last good commit, and stacks read from it.
#[derive(Debug)]
pub struct GitSnapshot {
    git: Arc<GitSource>,
    current: RwLock<Option<String>>,
}

impl GitSnapshot {
    /// A snapshot of `git`, with nothing fetched yet.
    pub fn new(git: Arc<GitSource>) -> GitSnapshot {
        GitSnapshot {
            git,
            current: RwLock::new(None),
        }
    }

    fn set(&self, commit: &str) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(commit.to_owned());
        }
    }
}

impl StackSource for GitSnapshot {
    fn revision(&self) -> Option<String> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    fn read(&self, revision: &str, stack: &str) -> Result<FileTree, Diagnostics> {
        self.git.read_stack(revision, stack)
    }
}

/// The Stack object standing for `stack` in `environment`: `{stack}.{environment}`.
pub fn stack_object(stack: &str, environment: &str, url: &str, branch: &str) -> Stack {
    let mut obj = Stack::new(
        &format!("{stack}.{environment}"),
        StackResourceSpec {
            stack: stack.to_owned(),
            environment: environment.to_owned(),
            source: Some(GitSpec {
                url: crate::source::git::redact_url(url),
                git_ref: Some(branch.to_owned()),
                path: None,
            }),
            ..StackResourceSpec::default()
        },
    );
    obj.metadata.namespace = Some(NAMESPACE.to_owned());
    obj
}

/// What the poller works with.
pub struct Poller {
    /// The repository.
    pub snapshot: Arc<GitSnapshot>,
    /// Its URL and branch (for the Stack objects).
    pub url: String,
    /// The branch.
    pub branch: String,
    /// Environments owned.
    pub environments: Vec<String>,
    /// The targets' store.
    pub writer: Writer<Stack>,
    /// The reconcile queue.
    pub queue: mpsc::UnboundedSender<ObjectRef<Stack>>,
    /// How often to fetch.
    pub interval: Duration,
    /// Wakes the poller at once (the webhook).
    pub fetch_now: Arc<Notify>,
    /// Set after the first good fetch.
    pub ready: Arc<AtomicBool>,
    /// Metrics.
    pub metrics: Metrics,
    /// Stops the poller.
    pub shutdown: CancellationToken,
}

impl Poller {
    /// Fetches until shutdown.
    pub async fn run(mut self) {
        // The store is ready (its first list "done") before any target is applied to it.
        self.writer.apply_watcher_event(&Event::Init);
        self.writer.apply_watcher_event(&Event::InitDone);
        let mut known: BTreeSet<String> = BTreeSet::new();
        let mut wait = Duration::ZERO;
        let mut failures: u32 = 0;
        // A fetch that outlived FETCH_TIMEOUT (a server that never answers): libgit2 has no
        // read timeout, so it goes on in its thread; no other fetch starts until it ends.
        let mut stuck: Option<tokio::task::JoinHandle<Fetch>> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.fetch_now.notified() => {}
                () = self.shutdown.cancelled() => return,
            }
            let task = match stuck.take() {
                Some(task) => task,
                None => {
                    let git = self.snapshot.git.clone();
                    let before = self.snapshot.revision();
                    tokio::task::spawn_blocking(move || fetch(&git, before.as_deref()))
                }
            };
            let mut task = task;
            let fetched = tokio::select! {
                // Shutdown does not wait for the network.
                () = self.shutdown.cancelled() => return,
                r = &mut task => r,
                () = tokio::time::sleep(FETCH_TIMEOUT) => {
                    stuck = Some(task);
                    failures = failures.saturating_add(1);
                    wait = fetch_backoff(self.interval, failures);
                    self.metrics.fetch_failures.inc();
                    warn!(timeout = ?FETCH_TIMEOUT, url = %self.snapshot.git.display_url(), "the fetch has not finished; waiting for it before fetching again");
                    continue;
                }
            };
            match fetched {
                Ok(Ok((commit, trees, changed))) => {
                    failures = 0;
                    wait = self.interval;
                    self.on_commit(&commit, &trees, &changed, &mut known);
                    self.ready.store(true, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    wait = fetch_backoff(self.interval, failures);
                    self.metrics.fetch_failures.inc();
                    match self.snapshot.revision() {
                        Some(commit) => {
                            warn!(error = %e, retry_in = ?wait, commit = &commit[..commit.len().min(7)], "failed to fetch the repository; reconciling the last good commit meanwhile")
                        }
                        None => {
                            warn!(error = %e, retry_in = ?wait, "failed to fetch the repository; nothing is reconciled until a fetch succeeds")
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    wait = fetch_backoff(self.interval, failures);
                    warn!(error = %e, "the fetch task failed");
                }
            }
        }
    }

    fn on_commit(
        &mut self,
        commit: &str,
        trees: &BTreeMap<String, String>,
        changed: &[String],
        known: &mut BTreeSet<String>,
    ) {
        if self.snapshot.revision().as_deref() == Some(commit) {
            return;
        }
        self.snapshot.set(commit);
        info!(commit = &commit[..commit.len().min(7)], changed = ?changed, "new commit");
        for stack in trees.keys() {
            for env in &self.environments {
                let obj = stack_object(stack, env, &self.url, &self.branch);
                let new = known.insert(obj.metadata.name.clone().unwrap_or_default());
                self.writer.apply_watcher_event(&Event::Apply(obj.clone()));
                if new || changed.contains(stack) {
                    // The queue only ends at shutdown, when nothing more is wanted.
                    let _ = self.queue.send(ObjectRef::from_obj(&obj));
                }
            }
        }
        let removed: Vec<String> = known
            .iter()
            .filter(|name| {
                let stack = name.split('.').next().unwrap_or_default();
                !trees.contains_key(stack)
            })
            .cloned()
            .collect();
        for name in removed {
            known.remove(&name);
            if let Some((stack, env)) = name.split_once('.') {
                let obj = stack_object(stack, env, &self.url, &self.branch);
                self.writer.apply_watcher_event(&Event::Delete(obj));
                warn!(stack, environment = env, "stack removed from the repository: its AWS resources stay (`panka destroy` removes them)");
            }
        }
    }
}

/// After `failures` failed fetches in a row: the interval doubled each time, at most 5 min.
fn fetch_backoff(interval: Duration, failures: u32) -> Duration {
    interval
        .saturating_mul(1 << failures.min(8))
        .min(Duration::from_secs(300))
        .max(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_backoff_doubles_up_to_five_minutes() {
        let s = Duration::from_secs;
        assert_eq!(fetch_backoff(s(30), 1), s(60));
        assert_eq!(fetch_backoff(s(30), 2), s(120));
        assert_eq!(fetch_backoff(s(30), 9), s(300));
        assert_eq!(fetch_backoff(s(600), 1), s(600));
    }

    #[test]
    fn a_stack_object_names_its_stack_and_environment() {
        let obj = stack_object("user-platform", "staging", "file:///r", "main");
        assert_eq!(obj.metadata.name.as_deref(), Some("user-platform.staging"));
        assert_eq!(obj.spec.stack, "user-platform");
        assert_eq!(obj.spec.environment, "staging");
    }
}
