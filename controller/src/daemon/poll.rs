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

use super::shard::Shard;
use crate::kubernetes::{Kube, ENVIRONMENT_LABEL, MANAGED_BY, STACK_LABEL};
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

/// The namespace given to git mode's Stack objects without Kubernetes (they exist only in the
/// store).
pub const NAMESPACE: &str = "panka";

/// Where git mode's Stack objects go.
pub enum Targets {
    /// Without Kubernetes: straight into the reconcile queue's store.
    Local(Writer<Stack>),
    /// Into the cluster, in `namespace` (server-side apply); the watch brings them to the
    /// store.
    Kube {
        /// The adapter.
        kube: Arc<Kube>,
        /// Where the objects live.
        namespace: String,
    },
}

impl Targets {
    fn namespace(&self) -> &str {
        match self {
            Targets::Local(_) => NAMESPACE,
            Targets::Kube { namespace, .. } => namespace,
        }
    }

    async fn upsert(&mut self, obj: &Stack) -> bool {
        match self {
            Targets::Local(writer) => {
                writer.apply_watcher_event(&Event::Apply(obj.clone()));
                true
            }
            Targets::Kube { kube, .. } => match kube.apply_stack(obj).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, stack = %obj.spec.stack, environment = %obj.spec.environment, "failed to write the Stack object; trying again at the next poll");
                    false
                }
            },
        }
    }

    async fn remove(&mut self, obj: &Stack) {
        match self {
            Targets::Local(writer) => writer.apply_watcher_event(&Event::Delete(obj.clone())),
            Targets::Kube { kube, namespace } => {
                let name = obj.metadata.name.clone().unwrap_or_default();
                if let Err(e) = kube.delete_stack(namespace, &name).await {
                    warn!(error = %e, %name, "failed to delete the Stack object of a removed stack");
                }
            }
        }
    }
}

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

impl GitSnapshot {
    /// The last good commit.
    pub fn commit(&self) -> Option<String> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

impl StackSource for GitSnapshot {
    fn revision(&self, _target: &Stack) -> Option<String> {
        self.commit()
    }

    fn read(&self, revision: &str, target: &Stack) -> Result<FileTree, Diagnostics> {
        self.git.read_stack(revision, &target.spec.stack)
    }
}

/// The Stack object standing for `stack` in `environment`: `{stack}-{environment}`, labelled
/// as the controller's, in `namespace`.
pub fn stack_object(
    stack: &str,
    environment: &str,
    url: &str,
    branch: &str,
    namespace: &str,
) -> Stack {
    let mut obj = Stack::new(
        &format!("{stack}-{environment}"),
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
    obj.metadata.namespace = Some(namespace.to_owned());
    obj.metadata.labels = Some(
        [
            (MANAGED_BY.0, MANAGED_BY.1),
            (STACK_LABEL, stack),
            (ENVIRONMENT_LABEL, environment),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
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
    /// Where the targets' objects go.
    pub targets: Targets,
    /// The shard this replica owns.
    pub shard: Shard,
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
        if let Targets::Local(writer) = &mut self.targets {
            // The store is ready (its first list "done") before any target is applied to it.
            writer.apply_watcher_event(&Event::Init);
            writer.apply_watcher_event(&Event::InitDone);
        }
        let mut known: BTreeSet<(String, String)> = BTreeSet::new();
        // Objects that could not be written: tried again after every fetch.
        let mut unwritten: BTreeSet<(String, String)> = BTreeSet::new();
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
                    let before = self.snapshot.commit();
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
                    self.on_commit(&commit, &trees, &changed, &mut known, &mut unwritten)
                        .await;
                    self.ready.store(true, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    wait = fetch_backoff(self.interval, failures);
                    self.metrics.fetch_failures.inc();
                    match self.snapshot.commit() {
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

    async fn on_commit(
        &mut self,
        commit: &str,
        trees: &BTreeMap<String, String>,
        changed: &[String],
        known: &mut BTreeSet<(String, String)>,
        unwritten: &mut BTreeSet<(String, String)>,
    ) {
        let new_commit = self.snapshot.commit().as_deref() != Some(commit);
        if !new_commit && unwritten.is_empty() {
            return;
        }
        if new_commit {
            self.snapshot.set(commit);
            info!(commit = &commit[..commit.len().min(7)], changed = ?changed, "new commit");
        }
        let namespace = self.targets.namespace().to_owned();
        for stack in trees.keys() {
            for env in &self.environments {
                if !self.shard.owns(stack, env) {
                    continue;
                }
                let target = (stack.clone(), env.clone());
                let retry = unwritten.contains(&target);
                let new = !known.contains(&target);
                let obj = stack_object(stack, env, &self.url, &self.branch, &namespace);
                // An object's spec does not depend on the commit: written once.
                if new || retry {
                    if !self.targets.upsert(&obj).await {
                        unwritten.insert(target);
                        continue;
                    }
                    unwritten.remove(&target);
                    known.insert(target);
                }
                if new || retry || (new_commit && changed.contains(stack)) {
                    // The queue only ends at shutdown, when nothing more is wanted.
                    let _ = self.queue.send(ObjectRef::from_obj(&obj));
                }
            }
        }
        let removed: Vec<(String, String)> = known
            .iter()
            .filter(|(stack, _)| !trees.contains_key(stack))
            .cloned()
            .collect();
        for (stack, env) in removed {
            known.remove(&(stack.clone(), env.clone()));
            let obj = stack_object(&stack, &env, &self.url, &self.branch, &namespace);
            self.targets.remove(&obj).await;
            warn!(stack, environment = env, "stack removed from the repository: its AWS resources stay (`panka destroy` removes them)");
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
        let obj = stack_object("user-platform", "staging", "file:///r", "main", "ops");
        assert_eq!(obj.metadata.name.as_deref(), Some("user-platform-staging"));
        assert_eq!(obj.metadata.namespace.as_deref(), Some("ops"));
        let labels = obj.metadata.labels.unwrap();
        assert_eq!(labels[STACK_LABEL], "user-platform");
        assert_eq!(labels[ENVIRONMENT_LABEL], "staging");
        assert_eq!(obj.spec.stack, "user-platform");
        assert_eq!(obj.spec.environment, "staging");
    }
}
