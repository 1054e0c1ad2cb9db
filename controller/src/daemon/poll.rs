//! Git mode's trigger: fetch the branch on an interval (or at once, on a webhook), find the
//! stacks whose folder changed since the commit fetched before, and queue those targets for
//! every environment this controller owns. A failed fetch backs off and is reported; the last
//! good commit stays the one reconciled (drift sweeps go on).
//!
//! A target is a (stack, environment) pair the stack deploys to (its `environments`), of the
//! environments and shard this replica owns. Each is one `Stack` object, `{stack}-{environment}`:
//! without Kubernetes in a reflector store filled by hand; with it, written to the cluster and
//! watched back, so the same `applier` drives git mode and CRD mode. Objects of targets that are
//! gone (a removed stack, an environment it no longer deploys to) are deleted, also those left
//! from before a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
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

/// What a fetch found.
struct Fetched {
    /// The branch's commit.
    commit: String,
    /// Each stack's tree id at that commit.
    trees: BTreeMap<String, String>,
    /// Stacks changed since the commit fetched before.
    changed: Vec<String>,
    /// The environments of each stack whose tree was not seen before; `None` when the stack
    /// does not load (it gets a target in every environment, whose reconcile says why).
    environments: BTreeMap<String, Option<BTreeSet<String>>>,
}

type Fetch = Result<Fetched, crate::source::git::GitError>;

/// Fetches the branch; reads the environments of the stacks whose tree is not in `seen`.
fn fetch(git: &GitSource, before: Option<&str>, seen: &BTreeMap<String, String>) -> Fetch {
    let commit = git.fetch()?.commit;
    let trees = git.stack_trees(&commit)?;
    let changed = git.changed_stacks(before, &commit)?;
    let environments = trees
        .iter()
        .filter(|(stack, tree)| seen.get(*stack) != Some(*tree))
        .map(|(stack, _)| (stack.clone(), environments_of(git, &commit, stack)))
        .collect();
    Ok(Fetched {
        commit,
        trees,
        changed,
        environments,
    })
}

fn environments_of(git: &GitSource, commit: &str, stack: &str) -> Option<BTreeSet<String>> {
    let tree = git.read_stack(commit, stack).ok()?;
    let loaded = panka_core::validate::load_tree(stack, &tree).ok()?;
    Some(
        panka_core::resolve::environments(&loaded)
            .into_iter()
            .collect(),
    )
}

/// The label naming the controller (its `--lease-name`) whose poller wrote a Stack object: a
/// restarted controller takes over only its own, never another release's in the namespace.
pub const CONTROLLER_LABEL: &str = "panka.io/controller";

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
        /// The watched objects (ours, by label): those left from before a restart are known
        /// from it.
        store: Store<Stack>,
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

    /// Known targets whose object is gone from the cluster (someone deleted it): written again.
    fn missing<'a>(&self, known: &'a BTreeSet<Target>) -> Vec<&'a Target> {
        match self {
            Targets::Local(_) => Vec::new(),
            Targets::Kube {
                namespace, store, ..
            } => known
                .iter()
                .filter(|(stack, env)| {
                    let name = format!("{stack}-{env}");
                    store
                        .get(&ObjectRef::new(&name).within(namespace))
                        .is_none()
                })
                .collect(),
        }
    }

    /// Deletes `obj`; false when that failed (tried again after the next fetch).
    async fn remove(&mut self, obj: &Stack) -> bool {
        match self {
            Targets::Local(writer) => {
                writer.apply_watcher_event(&Event::Delete(obj.clone()));
                true
            }
            Targets::Kube {
                kube, namespace, ..
            } => {
                let name = obj.metadata.name.clone().unwrap_or_default();
                match kube.delete_stack(namespace, &name).await {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(error = %e, %name, "failed to delete the Stack object of a gone target; trying again at the next poll");
                        false
                    }
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
    /// This controller's name (its `--lease-name`), on the objects it writes.
    pub instance: String,
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

/// A target: (stack, environment).
type Target = (String, String);

/// What the poller remembers between fetches.
#[derive(Default)]
struct Seen {
    /// Targets whose object exists.
    known: BTreeSet<Target>,
    /// Targets whose object could not be written: tried again after every fetch.
    unwritten: BTreeSet<Target>,
    /// Each stack's tree id and environments (`None`: it does not load).
    stacks: BTreeMap<String, (String, Option<BTreeSet<String>>)>,
}

impl Poller {
    /// Fetches until shutdown.
    pub async fn run(mut self) {
        let mut seen = Seen::default();
        match &mut self.targets {
            Targets::Local(writer) => {
                // The store is ready (its first list "done") before any target is applied.
                writer.apply_watcher_event(&Event::Init);
                writer.apply_watcher_event(&Event::InitDone);
            }
            Targets::Kube { store, .. } => {
                // Objects written before a restart are known, so those of targets gone
                // meanwhile are deleted at the first fetch.
                tokio::select! {
                    r = store.wait_until_ready() => if r.is_err() { return },
                    () = self.shutdown.cancelled() => return,
                }
                for obj in store.state() {
                    let ours = obj.labels().get(CONTROLLER_LABEL) == Some(&self.instance);
                    if !ours || !self.owns(&obj.spec.stack, &obj.spec.environment) {
                        continue;
                    }
                    let target = (obj.spec.stack.clone(), obj.spec.environment.clone());
                    // Written by an earlier run with another URL or branch: written again.
                    let now = self.object(&target.0, &target.1);
                    if obj.spec != now.spec || obj.labels() != now.labels() {
                        seen.unwritten.insert(target.clone());
                    }
                    seen.known.insert(target);
                }
            }
        }
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
                    let trees: BTreeMap<String, String> = seen
                        .stacks
                        .iter()
                        .map(|(stack, (tree, _))| (stack.clone(), tree.clone()))
                        .collect();
                    tokio::task::spawn_blocking(move || fetch(&git, before.as_deref(), &trees))
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
                Ok(Ok(fetched)) => {
                    failures = 0;
                    wait = self.interval;
                    self.on_commit(fetched, &mut seen).await;
                    self.ready.store(true, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    wait = fetch_backoff(self.interval, failures);
                    self.metrics.fetch_failures.inc();
                    match self.snapshot.commit() {
                        Some(commit) => {
                            warn!(error = %e, retry_in = ?wait, commit = %panka_core::sync::short_commit(&commit), "failed to fetch the repository; reconciling the last good commit meanwhile")
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

    /// The Stack object of `stack` in `environment`, labelled as this controller's.
    fn object(&self, stack: &str, environment: &str) -> Stack {
        let mut obj = stack_object(
            stack,
            environment,
            &self.url,
            &self.branch,
            self.targets.namespace(),
        );
        obj.labels_mut()
            .insert(CONTROLLER_LABEL.to_owned(), self.instance.clone());
        obj
    }

    /// Whether this replica owns `environment` of `stack` (its environments and shard).
    fn owns(&self, stack: &str, environment: &str) -> bool {
        self.environments.iter().any(|e| e == environment) && self.shard.owns(stack, environment)
    }

    async fn on_commit(&mut self, fetched: Fetched, seen: &mut Seen) {
        let Fetched {
            commit,
            trees,
            changed,
            environments,
        } = fetched;
        let new_commit = self.snapshot.commit().as_deref() != Some(commit.as_str());
        for target in self.targets.missing(&seen.known) {
            warn!(stack = target.0, environment = target.1, "the Stack object was deleted while its stack is in the repository: writing it again");
            seen.unwritten.insert(target.clone());
        }
        if !new_commit && seen.unwritten.is_empty() {
            return;
        }
        if new_commit {
            self.snapshot.set(&commit);
            info!(commit = %panka_core::sync::short_commit(&commit), changed = ?changed, "new commit");
        }
        for (stack, envs) in environments {
            if let Some(tree) = trees.get(&stack) {
                seen.stacks.insert(stack, (tree.clone(), envs));
            }
        }
        seen.stacks.retain(|stack, _| trees.contains_key(stack));
        let candidates: Vec<Target> = trees
            .keys()
            .flat_map(|stack| self.environments.iter().map(move |env| (stack, env)))
            .filter(|(stack, env)| self.owns(stack, env))
            .filter(|(stack, env)| match seen.stacks.get(*stack) {
                Some((_, Some(envs))) => envs.contains(*env),
                _ => true,
            })
            .map(|(stack, env)| (stack.clone(), env.clone()))
            .collect();
        let wanted = named(candidates, &seen.known);
        // Gone targets first: a name a leaving target held may be wanted by a new one.
        let kept: BTreeSet<Target> = wanted.values().cloned().collect();
        let gone: Vec<Target> = seen
            .known
            .iter()
            .chain(&seen.unwritten)
            .filter(|t| !kept.contains(*t))
            .cloned()
            .collect();
        for target in gone {
            seen.unwritten.remove(&target);
            if !seen.known.contains(&target) {
                continue;
            }
            let obj = self.object(&target.0, &target.1);
            if !self.targets.remove(&obj).await {
                // Still known: deleted again after the next fetch.
                continue;
            }
            seen.known.remove(&target);
            let (stack, env) = target;
            if trees.contains_key(&stack) {
                warn!(stack, environment = env, "the stack no longer deploys to this environment: its AWS resources stay (`panka destroy` removes them)");
            } else {
                warn!(stack, environment = env, "stack removed from the repository: its AWS resources stay (`panka destroy` removes them)");
            }
        }
        for target in wanted.values() {
            let (stack, env) = target;
            let retry = seen.unwritten.contains(target);
            let new = !seen.known.contains(target);
            let obj = self.object(stack, env);
            // An object's spec does not depend on the commit: written once.
            if new || retry {
                if !self.targets.upsert(&obj).await {
                    seen.unwritten.insert(target.clone());
                    continue;
                }
                seen.unwritten.remove(target);
                seen.known.insert(target.clone());
            }
            if new || retry || (new_commit && changed.contains(stack)) {
                // The queue only ends at shutdown, when nothing more is wanted.
                let _ = self.queue.send(ObjectRef::from_obj(&obj));
            }
        }
    }
}

/// The targets by object name, `{stack}-{environment}`. Two targets can share a name (stack
/// `a-b` in `c`, stack `a` in `b-c`): the one whose object exists keeps it, else the first in
/// order; the other is left out, with a warning.
fn named(candidates: Vec<Target>, known: &BTreeSet<Target>) -> BTreeMap<String, Target> {
    let mut ordered = candidates;
    ordered.sort_by_key(|t| !known.contains(t));
    let mut named: BTreeMap<String, Target> = BTreeMap::new();
    for target in ordered {
        let name = format!("{}-{}", target.0, target.1);
        match named.get(&name) {
            Some(holder) => warn!(
                stack = target.0,
                environment = target.1,
                object = name,
                holder = format!("{}/{}", holder.0, holder.1),
                "two targets share one Stack object name: this one is not reconciled; rename the stack or the environment"
            ),
            None => {
                named.insert(name, target);
            }
        }
    }
    named
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

    fn target(stack: &str, env: &str) -> Target {
        (stack.to_owned(), env.to_owned())
    }

    #[test]
    fn targets_sharing_an_object_name_keep_the_existing_one() {
        let candidates = vec![target("a", "b-c"), target("a-b", "c"), target("x", "dev")];
        let fresh = named(candidates.clone(), &BTreeSet::new());
        assert_eq!(fresh.len(), 2);
        assert_eq!(fresh["a-b-c"], target("a", "b-c"));
        assert_eq!(fresh["x-dev"], target("x", "dev"));
        let existing: BTreeSet<Target> = [target("a-b", "c")].into();
        let kept = named(candidates, &existing);
        assert_eq!(kept["a-b-c"], target("a-b", "c"));
        assert_eq!(kept.len(), 2);
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
