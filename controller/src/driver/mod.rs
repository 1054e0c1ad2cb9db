//! Stages **observe** and **apply**, per kind: one small driver module per component kind, in the
//! spirit of Crossplane's ExternalClient.
//!
//! A [`Driver`] projects a desired component onto comparable fields (pure), observes what AWS
//! holds (read-only), and creates, updates and deletes idempotently: create tolerates "already
//! exists" for a resource carrying our tags, delete treats "not found" as done. Ordering,
//! retries, locks, state, status and metrics live once in the engine, not here; what the drivers
//! share — tag convergence, "not found", the ownership check — lives once in [`support`].
//!
//! Every AWS call made through a client built by [`Ctx`] is counted by service and operation
//! ([`CallCounter`]), so tests can assert that a converged apply makes no mutating call.

pub mod dynamodb;
pub mod ecs;
pub mod elasticache;
pub mod rds;
pub mod s3;
pub mod sqs;
pub mod stack;
pub mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use panka_crds::spec::StackInfraSpec;
use panka_crds::Kind;

use crate::aws::{AwsError, ErrorClass};
use panka_core::model::{ComponentId, DesiredComponent};
use panka_core::naming::Naming;
use panka_core::plan::{DesiredFields, FieldDiff, Observation};

/// How panka uses a secret referenced at `field`: container secrets are ECS's to read; a
/// password is read once, to create the resource.
fn secret_use(field: &str) -> &'static str {
    if field.starts_with("secrets[") {
        "panka never reads its value; ECS does, when a task starts"
    } else {
        "panka reads it once, when it creates the resource, and never stores it"
    }
}

/// A client of one AWS service (`counted_client!(ctx, aws_sdk_sqs)`) on the context's SDK
/// configuration, its calls counted in `ctx.calls`: how every driver makes its clients.
macro_rules! counted_client {
    ($ctx:expr, $sdk:ident) => {
        $sdk::Client::from_conf(
            $sdk::config::Builder::from(&$ctx.sdk)
                .interceptor($ctx.calls.clone())
                .build(),
        )
    };
}
pub(crate) use counted_client;

/// Outputs of the components already applied (or observed), for `valueFrom`.
pub type Outputs = BTreeMap<ComponentId, BTreeMap<String, String>>;

/// One component to observe: its id and the identifiers state recorded for it, if any.
pub type Observe = (ComponentId, Option<BTreeMap<String, String>>);

/// What a create or update left behind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// AWS identifiers (ARNs, names, URLs) to record in state.
    pub identifiers: BTreeMap<String, String>,
    /// Outputs other components may reference.
    pub outputs: BTreeMap<String, String>,
}

/// A driver failure.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An AWS call failed.
    #[error("failed to {action} {component}: {source}")]
    Aws {
        /// What was being done, e.g. `create queue`.
        action: String,
        /// Which component.
        component: ComponentId,
        /// The classified AWS error.
        #[source]
        source: Box<AwsError>,
    },
    /// A resource with our name exists but is not ours.
    #[error(
        "{component}: {what} exists without panka's tags; re-run with --adopt to take it over"
    )]
    NotOurs {
        /// Which component.
        component: ComponentId,
        /// What was found.
        what: String,
    },
    /// A deletion began but AWS had not finished it within the run's deletion timeout; what
    /// depends on it was left in place. Running the delete again carries on.
    #[error("{component}: {message}")]
    StillDeleting {
        /// Which component.
        component: ComponentId,
        /// What is still going, and what remains to do.
        message: String,
    },
    /// A secret the component references does not exist.
    #[error("{file}: {component}: secret `{secret}` ({field}) does not exist in Secrets Manager; create it first ({}) or correct the reference", secret_use(.field))]
    MissingSecret {
        /// The file the component is defined in.
        file: String,
        /// Which component.
        component: ComponentId,
        /// The reference as written.
        secret: String,
        /// Where it is referenced, e.g. `secrets[DB_PASSWORD].secretRef`.
        field: String,
    },
    /// Several secrets that do not exist ([`DriverError::MissingSecret`] each), said at once so
    /// one plan names every reference to correct.
    #[error("{first}{}", .rest.iter().map(|e| format!("\n{e}")).collect::<String>())]
    MissingSecrets {
        /// The first.
        first: Box<DriverError>,
        /// The others.
        rest: Vec<DriverError>,
    },
    /// AWS answered something the driver cannot work with.
    #[error("{component}: {message}")]
    Unexpected {
        /// Which component.
        component: ComponentId,
        /// What was odd.
        message: String,
    },
}

impl DriverError {
    /// Wraps an SDK error with what was being done.
    pub fn aws<E, R>(
        action: &str,
        component: &ComponentId,
        err: &aws_sdk_s3::error::SdkError<E, R>,
    ) -> DriverError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + crate::aws::HttpStatus,
    {
        DriverError::Aws {
            action: action.to_string(),
            component: component.clone(),
            source: Box::new(AwsError::from_sdk(err)),
        }
    }

    /// Whether retrying helps, a change is needed, or someone else is in the way.
    pub fn class(&self) -> crate::engine::ErrorClass {
        use crate::engine::ErrorClass as C;
        match self {
            DriverError::Aws { source, .. } => crate::engine::run::aws_class(source.class),
            DriverError::StillDeleting { .. } => C::Transient,
            DriverError::NotOurs { .. }
            | DriverError::MissingSecret { .. }
            | DriverError::MissingSecrets { .. }
            | DriverError::Unexpected { .. } => C::Permanent,
        }
    }

    /// Whether this is "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::Aws { source, .. } if source.class == ErrorClass::NotFound)
    }

    /// The component whose call failed.
    pub fn component(&self) -> &ComponentId {
        match self {
            DriverError::Aws { component, .. }
            | DriverError::NotOurs { component, .. }
            | DriverError::StillDeleting { component, .. }
            | DriverError::MissingSecret { component, .. }
            | DriverError::Unexpected { component, .. } => component,
            DriverError::MissingSecrets { first, .. } => first.component(),
        }
    }

    /// Missing-secret refusals as one error: `None` for none, the one itself, or
    /// [`DriverError::MissingSecrets`]; nested lists are flattened.
    pub fn missing_secrets(all: Vec<DriverError>) -> Option<DriverError> {
        let mut flat = Vec::new();
        for e in all {
            match e {
                DriverError::MissingSecrets { first, rest } => {
                    flat.push(*first);
                    flat.extend(rest);
                }
                other => flat.push(other),
            }
        }
        let mut it = flat.into_iter();
        let first = it.next()?;
        let rest: Vec<DriverError> = it.collect();
        Some(if rest.is_empty() {
            first
        } else {
            DriverError::MissingSecrets {
                first: Box::new(first),
                rest,
            }
        })
    }

    /// Whether this refuses a reference to a secret that does not exist.
    pub fn is_missing_secret(&self) -> bool {
        matches!(
            self,
            DriverError::MissingSecret { .. } | DriverError::MissingSecrets { .. }
        )
    }
}

/// What [`Driver::look_up`] found before planning, for [`Driver::desired`],
/// [`Driver::complete`] and the mutations (e.g. the full ARN of each secret referenced by
/// name). Made only by `look_up`, so desired fields cannot be computed before it ran; it lives
/// as long as the run that made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    values: BTreeMap<String, String>,
}

impl Lookups {
    /// Nothing looked up (a kind that needs nothing).
    pub(crate) fn none() -> Lookups {
        Lookups::default()
    }

    /// Lookups with these values.
    pub(crate) fn from_values(values: BTreeMap<String, String>) -> Lookups {
        Lookups { values }
    }

    /// The value found for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// What a delete call left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Gone (or was never there).
    Done,
    /// AWS is still deleting; call delete again later (it carries on where it stopped).
    Progressing {
        /// When to look again.
        requeue_after: Duration,
        /// What is still going, e.g. `DB instance deleting`.
        status: String,
    },
}

/// One component kind's driver.
#[async_trait]
pub trait Driver: Send + Sync {
    /// The kind handled.
    fn kind(&self) -> Kind;

    /// What AWS should hold for `component` (pure). Values that depend on outputs missing from
    /// `outputs` are [`panka_core::plan::FieldValue::Unknown`].
    fn desired(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> DesiredFields;

    /// Reads AWS. Never mutates. `recorded` holds the identifiers from state, if any.
    async fn observe(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError>;

    /// Reads AWS for several components of this kind: what [`Driver::observe`] gives for each,
    /// in the order asked. Drivers whose APIs describe many resources per call override it to
    /// batch (ECS DescribeServices takes ten services, log groups list by prefix); by default
    /// each component is observed on its own, `concurrency` at a time.
    async fn observe_many(
        &self,
        items: &[Observe],
        concurrency: usize,
    ) -> Result<Vec<Observation>, DriverError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let reads: Vec<_> = items
            .iter()
            .map(|(id, recorded)| self.observe(id, recorded.as_ref()))
            .collect();
        stream::iter(reads)
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// Reads, before planning, what [`Driver::desired`] needs besides other components'
    /// outputs (read-only), and returns it: [`Lookups`] can be made only here, and `desired`,
    /// `complete` and the mutations take it, so the order observe_many → look_up → desired →
    /// complete is the only one that compiles. ECS turns secret names into the full ARNs task
    /// definitions need; a reference to nothing is refused before any change.
    async fn look_up(&self, _components: &[&DesiredComponent]) -> Result<Lookups, DriverError> {
        Ok(Lookups::none())
    }

    /// Finishes an observation from [`Driver::observe_many`] once the component's desired
    /// fields can be computed (read-only): reads what observe left [`Observation::unread`]
    /// only if the desired fingerprint differs. By default there is nothing to finish.
    async fn complete(
        &self,
        _component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
        observed: Observation,
    ) -> Result<Observation, DriverError> {
        Ok(observed)
    }

    /// Makes AWS hold what `component` asks for, changing only what differs; idempotent.
    async fn converge(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError>;

    /// Creates the resources of `component`. By default the same walk as an update:
    /// [`Driver::converge`].
    async fn create(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        self.converge(component, outputs, lookups).await
    }

    /// Changes what `diffs` lists, in place. By default [`Driver::converge`], which changes
    /// only what differs; drivers that act on the plan's diffs override it.
    async fn update(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
        _diffs: &[FieldDiff],
        _observed: &Observation,
    ) -> Result<Applied, DriverError> {
        self.converge(component, outputs, lookups).await
    }

    /// Deletes the resources recorded for a component; "not found" counts as done. Never waits
    /// for AWS to finish: a deletion still going answers [`Deletion::Progressing`], and calling
    /// delete again carries on (e.g. removes the subnet group once the instance is gone).
    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError>;

    /// How long to wait before looking again at a component of this kind that is still
    /// progressing (a rollout, a creation).
    fn requeue_after(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// What every driver shares: AWS configuration, names and tags, call counting.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The shared SDK configuration (credentials, region, endpoint, retries).
    pub sdk: SdkConfig,
    /// Names and ownership tags of this stack/environment.
    pub naming: Naming,
    /// Extra tags from StackInfra.
    pub extra_tags: BTreeMap<String, String>,
    /// Stack-wide infrastructure (cluster name, networking, logging) of the desired stack.
    pub infra: StackInfraSpec,
    /// Take over same-named resources without panka's tags (`--adopt`).
    pub adopt: bool,
    /// Counts AWS calls.
    pub calls: CallCounter,
}

/// Counts AWS calls by service and operation, through an interceptor on every client; a
/// run's counter can also add into a process-wide one (the controller's metrics).
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    own: Counts,
    also: Option<Counts>,
}

/// Calls by (service, operation).
type Counts = Arc<Mutex<BTreeMap<(String, String), u64>>>;

impl CallCounter {
    /// A fresh counter that also adds every call to `total`.
    pub fn adding_to(total: &CallCounter) -> CallCounter {
        CallCounter {
            own: Arc::default(),
            also: Some(total.own.clone()),
        }
    }

    /// Calls so far, by (service, operation).
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.own.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Calls that may change something (anything but Describe*, Get*, List*, Head*).
    pub fn mutating(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, op), _)| is_mutating(op))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Total calls.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    fn record(&self, service: &str, operation: &str) {
        for map in std::iter::once(&self.own).chain(self.also.as_ref()) {
            if let Ok(mut m) = map.lock() {
                *m.entry((service.to_string(), operation.to_string()))
                    .or_default() += 1;
            }
        }
    }
}

/// Whether an operation name changes state.
pub fn is_mutating(operation: &str) -> bool {
    !["Describe", "Get", "List", "Head"]
        .iter()
        .any(|p| operation.starts_with(p))
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "PankaCallCounter"
    }

    // Not `read_before_execution`: client interceptors run that before the operation's
    // configuration (and so its name) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            self.record(meta.service(), meta.name());
        }
        Ok(())
    }
}

impl Ctx {
    /// A context for one stack/environment: names, tags and infrastructure from `desired`.
    pub fn new(sdk: SdkConfig, desired: &panka_core::model::DesiredStack, adopt: bool) -> Ctx {
        Ctx {
            sdk,
            naming: Naming::new(&desired.name, &desired.environment),
            extra_tags: desired.infra.tags.clone(),
            infra: desired.infra.clone(),
            adopt,
            calls: CallCounter::default(),
        }
    }

    /// The same context, its calls also added to `total`.
    pub fn counting_into(mut self, total: Option<&CallCounter>) -> Ctx {
        if let Some(total) = total {
            self.calls = CallCounter::adding_to(total);
        }
        self
    }

    /// Tags for a component's resources.
    pub fn tags(&self, id: &ComponentId) -> BTreeMap<String, String> {
        self.naming.tags(Some(id), &self.extra_tags)
    }
}

/// The driver of every kind (components and stack-wide resources), built on one context.
pub struct Drivers {
    drivers: BTreeMap<Kind, Box<dyn Driver>>,
}

impl fmt::Debug for Drivers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drivers")
            .field("kinds", &self.drivers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drivers {
    /// Drivers of the kinds given (tests use this with drivers of their own).
    pub fn with(list: Vec<Box<dyn Driver>>) -> Drivers {
        Drivers {
            drivers: list.into_iter().map(|d| (d.kind(), d)).collect(),
        }
    }

    /// Every driver panka has, sharing `ctx`.
    pub fn new(ctx: &Ctx) -> Drivers {
        Drivers::with(vec![
            Box::new(stack::network::NetworkDriver::new(ctx)),
            Box::new(stack::cluster::ClusterDriver::new(ctx)),
            Box::new(stack::role::RoleDriver::new(ctx)),
            Box::new(stack::alb::AlbDriver::new(ctx)),
            Box::new(sqs::SqsDriver::new(ctx)),
            Box::new(ecs::EcsDriver::microservice(ctx)),
            Box::new(ecs::EcsDriver::worker(ctx)),
            Box::new(s3::S3Driver::new(ctx)),
            Box::new(dynamodb::DynamoDbDriver::new(ctx)),
            Box::new(rds::RdsDriver::new(ctx)),
            Box::new(elasticache::ElastiCacheDriver::new(ctx)),
        ])
    }

    /// The driver of a kind, if panka has one yet.
    pub fn get(&self, kind: Kind) -> Option<&dyn Driver> {
        self.drivers.get(&kind).map(AsRef::as_ref)
    }
}
