//! CRD mode: Stack, Service and component resources in the cluster are the desired state.
//!
//! Reflectors keep every Service and component resource of the watched namespace(s) in
//! memory; a change to one queues the Stacks it belongs to (its `spec.stack` and
//! `panka.io/environment` label, [`panka_core::crd::belongs`]). A pass converts the Stack and
//! its resources into the documents a repository would hold ([`panka_core::crd::stack_tree`])
//! and goes through the same load → resolve → graph path as git mode. The revision is a hash
//! of those resources' specs and names, so it changes exactly when the desired state does.
//!
//! The finalizer: every Stack gets `panka.io/cleanup`; deleting the resource then acts per its
//! `deletionPolicy` — `Orphan` (the default) only lets it go, `Delete` destroys what it
//! deployed through the engine, under the lock, first.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalized};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use panka_core::crd::{belongs, stack_tree, ComponentResource};
use panka_core::diag::Diagnostics;
use panka_core::graph::Graph;
use panka_core::model::DesiredStack;
use panka_core::source::FileTree;
use panka_crds::resource::{
    DeletionPolicy, DynamoDB, ElastiCacheRedis, MicroService, Service, Stack, Worker, RDS, S3, SQS,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::FINALIZER;
use crate::reconcile::{destroy, reconcile, Context, Purpose, ReconcileError, StackSource};

/// The in-memory copies of every Service and component resource watched.
#[derive(Clone)]
pub struct CrdSource {
    stacks: Store<Stack>,
    services: Store<Service>,
    microservices: Store<MicroService>,
    workers: Store<Worker>,
    rds: Store<RDS>,
    dynamodb: Store<DynamoDB>,
    s3: Store<S3>,
    sqs: Store<SQS>,
    redis: Store<ElastiCacheRedis>,
}

impl std::fmt::Debug for CrdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdSource").finish_non_exhaustive()
    }
}

/// A started [`CrdSource`] and the tasks that keep it current.
pub struct Started {
    /// The source.
    pub source: CrdSource,
    /// The watches (they end when the work is cancelled).
    pub tasks: Vec<JoinHandle<()>>,
    /// Resolves once every Service and component kind has been listed (the Stacks' own
    /// watch is driven by the queue, which starts after).
    pub ready: futures::future::BoxFuture<'static, ()>,
}

/// Which Stacks this replica acts on (its shard and environments).
pub type Owned = Arc<dyn Fn(&Stack) -> bool + Send + Sync>;

impl CrdSource {
    /// Watches Service and component resources in `namespace` (every namespace when `None`);
    /// a change queues the Stacks of `stacks` it belongs to.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
        stacks: Store<Stack>,
        owned: Owned,
        queue: mpsc::UnboundedSender<ObjectRef<Stack>>,
        stop: CancellationToken,
    ) -> Started {
        let mut tasks = Vec::new();
        let watch = Watch {
            client,
            namespace: namespace.map(str::to_owned),
            stacks: stacks.clone(),
            owned,
            queue,
            stop,
        };
        let source = CrdSource {
            stacks,
            services: watch.kind(&mut tasks, |s: &Service| s.spec.stack.clone()),
            microservices: watch.kind(&mut tasks, |r: &MicroService| r.spec.stack.clone()),
            workers: watch.kind(&mut tasks, |r: &Worker| r.spec.stack.clone()),
            rds: watch.kind(&mut tasks, |r: &RDS| r.spec.stack.clone()),
            dynamodb: watch.kind(&mut tasks, |r: &DynamoDB| r.spec.stack.clone()),
            s3: watch.kind(&mut tasks, |r: &S3| r.spec.stack.clone()),
            sqs: watch.kind(&mut tasks, |r: &SQS| r.spec.stack.clone()),
            redis: watch.kind(&mut tasks, |r: &ElastiCacheRedis| r.spec.stack.clone()),
        };
        let ready = {
            let s = source.clone();
            Box::pin(async move {
                // `wait_until_ready` fails only when the store's writer is gone (shutdown).
                let _ = futures::join!(
                    s.services.wait_until_ready(),
                    s.microservices.wait_until_ready(),
                    s.workers.wait_until_ready(),
                    s.rds.wait_until_ready(),
                    s.dynamodb.wait_until_ready(),
                    s.s3.wait_until_ready(),
                    s.sqs.wait_until_ready(),
                    s.redis.wait_until_ready(),
                );
            }) as futures::future::BoxFuture<'static, ()>
        };
        Started {
            source,
            tasks,
            ready,
        }
    }

    /// The Service and component resources in `target`'s namespace naming its stack.
    fn resources(&self, target: &Stack) -> (Vec<Service>, Vec<ComponentResource>) {
        let mine = |meta: &kube::api::ObjectMeta, stack: &str| belongs(target, meta, stack);
        let services = self
            .services
            .state()
            .into_iter()
            .filter(|s| mine(&s.metadata, &s.spec.stack))
            .map(|s| (*s).clone())
            .collect();
        let mut components = Vec::new();
        macro_rules! take {
            ($store:expr, $variant:ident) => {
                components.extend(
                    $store
                        .state()
                        .into_iter()
                        .filter(|r| mine(&r.metadata, &r.spec.stack))
                        .map(|r| ComponentResource::$variant((*r).clone())),
                )
            };
        }
        take!(self.microservices, MicroService);
        take!(self.workers, Worker);
        take!(self.rds, Rds);
        take!(self.dynamodb, DynamoDb);
        take!(self.s3, S3);
        take!(self.sqs, Sqs);
        take!(self.redis, ElastiCacheRedis);
        (services, components)
    }
}

/// The revision of a Stack and its resources: SHA-256 over the Stack's spec and each
/// resource's kind, name, labels and spec — never its status or bookkeeping metadata — in a
/// stable order (hex, 40 digits like a commit).
pub fn revision_of(
    target: &Stack,
    services: &[Service],
    components: &[ComponentResource],
) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.push(serde_json::to_string(&target.spec).unwrap_or_default());
    for s in services {
        parts.push(format!(
            "Service/{}/{}",
            s.name_any(),
            serde_json::to_string(&(&s.metadata.labels, &s.spec)).unwrap_or_default()
        ));
    }
    for c in components {
        // The spec only: metadata (resourceVersion, managed fields) and status are not the
        // desired state.
        let spec = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.get("spec").cloned())
            .unwrap_or_default();
        parts.push(format!(
            "{}/{}/{}",
            c.kind().name(),
            c.metadata().name.as_deref().unwrap_or_default(),
            serde_json::to_string(&(&c.metadata().labels, spec)).unwrap_or_default()
        ));
    }
    parts[1..].sort();
    let mut hash = Sha256::new();
    for p in &parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())[..40].to_owned()
}

impl CrdSource {
    /// Another Stack resource that manages `target`'s stack and environment, if any: the one
    /// created first (then by namespace and name) owns the pair; the others are refused, so
    /// two resources never drive (or destroy) the same AWS resources.
    fn holder(&self, target: &Stack) -> Option<String> {
        let key = |s: &Stack| {
            (
                s.metadata.creation_timestamp.clone().map(|t| t.0),
                s.namespace().unwrap_or_default(),
                s.name_any(),
            )
        };
        let first = self
            .stacks
            .state()
            .into_iter()
            .filter(|s| {
                s.spec.stack == target.spec.stack && s.spec.environment == target.spec.environment
            })
            .min_by_key(|s| key(s))?;
        (first.metadata.uid != target.metadata.uid).then(|| {
            format!(
                "Stack {}/{}",
                first.namespace().unwrap_or_default(),
                first.name_any()
            )
        })
    }
}

impl StackSource for CrdSource {
    fn claimed_by(&self, target: &Stack) -> Option<String> {
        self.holder(target)
    }

    fn revision(&self, target: &Stack) -> Option<String> {
        let (services, components) = self.resources(target);
        Some(revision_of(target, &services, &components))
    }

    fn read(&self, _revision: &str, target: &Stack) -> Result<FileTree, Diagnostics> {
        let (services, components) = self.resources(target);
        stack_tree(target, &services, &components).map(|t| t.tree)
    }

    fn desired(
        &self,
        _revision: &str,
        target: &Stack,
        // Custom resources come with no repository, so with no policies to ask.
        _purpose: Purpose,
    ) -> Result<Option<(DesiredStack, Graph)>, String> {
        let (services, components) = self.resources(target);
        // Only while the Stack lives: deleting one with `deletionPolicy: Delete` (its resources
        // usually go first) destroys with what its own spec gives (provider, region).
        if services.is_empty()
            && components.is_empty()
            && target.metadata.deletion_timestamp.is_none()
        {
            // Planned, an empty stack would delete everything it deployed: more likely its
            // resources have not arrived yet (or are in another namespace) than that this is
            // meant. Deleting the Stack with `deletionPolicy: Delete` is how to remove it all.
            return Err(format!(
                "Stack {}/{}: no Service or component resource names stack `{}` in this namespace yet; nothing is applied until they exist (to remove what it deployed, delete the Stack with deletionPolicy: Delete)",
                target.namespace().unwrap_or_default(),
                target.name_any(),
                target.spec.stack
            ));
        }
        // The Stack names its one environment: problems name resource and field.
        stack_tree(target, &services, &components)
            .and_then(|t| t.plan_input(&panka_core::resolve::Options::default()))
            .map(Some)
            .map_err(|d| d.to_string())
    }
}

struct Watch {
    client: Client,
    namespace: Option<String>,
    stacks: Store<Stack>,
    owned: Owned,
    queue: mpsc::UnboundedSender<ObjectRef<Stack>>,
    stop: CancellationToken,
}

impl Watch {
    /// Reflects resources of kind `K` into a store; each change queues the Stacks the
    /// resource belongs to (`stack_of` gives its `spec.stack`).
    fn kind<K>(&self, tasks: &mut Vec<JoinHandle<()>>, stack_of: fn(&K) -> String) -> Store<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let (store, writer) = reflector::store::<K>();
        let (stacks, queue, stop) = (self.stacks.clone(), self.queue.clone(), self.stop.clone());
        let owned = self.owned.clone();
        let kind = K::kind(&()).into_owned();
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects()
            .take_until(stop.cancelled_owned());
        tasks.push(tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(obj) => {
                        let stack = stack_of(&obj);
                        for target in stacks.state() {
                            if belongs(&target, obj.meta(), &stack) && owned(&target) {
                                let _ = queue.send(ObjectRef::from_obj(&*target));
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, kind = %kind, "watching resources failed; retrying")
                    }
                }
            }
        }));
        store
    }
}

/// A pass in CRD mode: the finalizer first (added to a new Stack; on deletion, its
/// `deletionPolicy` acted on before it is removed), then the reconcile.
pub async fn reconcile_with_finalizer(
    client: Client,
    obj: Arc<Stack>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<Stack> = Api::namespaced(client, &namespace);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalized::Apply(obj) => reconcile(obj, ctx).await,
            Finalized::Cleanup(obj) => match obj.spec.deletion_policy.unwrap_or_default() {
                DeletionPolicy::Orphan => {
                    info!(stack = %obj.spec.stack, environment = %obj.spec.environment, "Stack deleted: its AWS resources and state stay (deletionPolicy: Orphan)");
                    Ok(Action::await_change())
                }
                DeletionPolicy::Delete => destroy(obj, ctx).await,
            },
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Kubernetes(other.to_string()),
    })
}
