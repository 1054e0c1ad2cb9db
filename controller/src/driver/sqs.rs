//! SQS driver: a queue named `{stack}-{env}-{service}-{component}` and, with
//! `deadLetterQueue.enabled`, a dead-letter queue `…-dlq` wired up by a redrive policy.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use aws_sdk_sqs::Client;
use panka_crds::spec::{QueueType, SqsSpec};
use panka_crds::Kind;
use serde_json::json;

use super::support::{ensure_ours, is_missing, or_missing};
use super::{counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs};
use crate::aws::AwsError;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};

/// Default retention of a dead-letter queue: the SQS maximum, 14 days.
const DLQ_RETENTION: u32 = 1_209_600;
/// Default receives before a message moves to the dead-letter queue.
const DEFAULT_MAX_RECEIVE: u32 = 5;
/// SQS's own codes for "no such queue".
const MISSING: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// The SQS driver.
pub struct SqsDriver {
    client: Client,
    ctx: Ctx,
}

impl SqsDriver {
    /// A driver on the shared context.
    pub fn new(ctx: &Ctx) -> SqsDriver {
        SqsDriver {
            client: counted_client!(ctx, aws_sdk_sqs),
            ctx: ctx.clone(),
        }
    }

    fn names(&self, id: &ComponentId, fifo: bool) -> (String, String) {
        let rules = if fifo {
            NameRules::SQS_FIFO
        } else {
            NameRules::SQS
        };
        (
            self.ctx.naming.component(id, None, rules),
            self.ctx.naming.component(id, Some("dlq"), rules),
        )
    }

    async fn queue_url(&self, id: &ComponentId, name: &str) -> Result<Option<String>, DriverError> {
        let found = or_missing(
            self.client.get_queue_url().queue_name(name).send().await,
            MISSING,
            "look up queue",
            id,
        )?;
        Ok(found.and_then(|out| out.queue_url().map(str::to_string)))
    }

    async fn attributes(
        &self,
        id: &ComponentId,
        url: &str,
    ) -> Result<HashMap<Attr, String>, DriverError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Attr::All)
            .send()
            .await
            .map_err(|e| DriverError::aws("read queue attributes", id, &e))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }

    async fn tags(
        &self,
        id: &ComponentId,
        url: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        self.tags_if_any(id, url)
            .await?
            .ok_or_else(|| DriverError::Unexpected {
                component: id.clone(),
                message: format!("queue {url} vanished while being read"),
            })
    }

    /// The queue's tags; `None` when the queue does not exist.
    async fn tags_if_any(
        &self,
        id: &ComponentId,
        url: &str,
    ) -> Result<Option<BTreeMap<String, String>>, DriverError> {
        let out = or_missing(
            self.client.list_queue_tags().queue_url(url).send().await,
            MISSING,
            "read queue tags",
            id,
        )?;
        Ok(out.map(|out| {
            out.tags()
                .map(|t| t.clone().into_iter().collect())
                .unwrap_or_default()
        }))
    }

    /// Makes queue `name` exist as `attrs` says, carrying exactly panka's tags: creates it, or
    /// takes the existing one if it is ours and changes only the attributes and tags that
    /// differ. Returns its URL and ARN.
    ///
    /// An existing queue is looked up rather than passed to CreateQueue again: CreateQueue is
    /// idempotent only for the same attributes, and what it does to the tags of a queue that
    /// exists is not something to rely on when other systems' tags must survive.
    async fn ensure_queue(
        &self,
        id: &ComponentId,
        name: &str,
        attrs: HashMap<Attr, String>,
    ) -> Result<(String, String), DriverError> {
        let url = match self.queue_url(id, name).await? {
            Some(url) => url,
            None => self.create_queue(id, name, &attrs).await?,
        };
        // Tags first: they hold the ownership check, before any attribute is changed.
        self.converge_tags(id, &url).await?;
        let current = self.attributes(id, &url).await?;
        let changed: HashMap<Attr, String> = settable(attrs)
            .into_iter()
            .filter(|(k, v)| {
                current
                    .get(k)
                    .map_or(!v.is_empty(), |c| !same_attr(k, c, v))
            })
            .collect();
        if !changed.is_empty() {
            self.client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(changed))
                .send()
                .await
                .map_err(|e| DriverError::aws("update queue", id, &e))?;
        }
        let arn = current.get(&Attr::QueueArn).cloned().unwrap_or_default();
        Ok((url, arn))
    }

    /// Creates a queue with `attrs` and panka's tags; returns its URL. One created since it was
    /// looked up (another apply) is taken as found: the caller checks its tags.
    async fn create_queue(
        &self,
        id: &ComponentId,
        name: &str,
        attrs: &HashMap<Attr, String>,
    ) -> Result<String, DriverError> {
        let tags: HashMap<String, String> = self.ctx.tags(id).into_iter().collect();
        let created = self
            .client
            .create_queue()
            .queue_name(name)
            .set_attributes(Some(attrs.clone()))
            .set_tags(Some(tags))
            .send()
            .await;
        let url = match created {
            Ok(out) => out.queue_url().map(str::to_string),
            Err(e) => {
                let err = AwsError::from_sdk(&e);
                if !err.code.as_deref().is_some_and(|c| {
                    c.contains("QueueAlreadyExists") || c.contains("QueueNameExists")
                }) {
                    return Err(DriverError::Aws {
                        action: "create queue".into(),
                        component: id.clone(),
                        source: Box::new(err),
                    });
                }
                self.queue_url(id, name).await?
            }
        };
        url.ok_or_else(|| DriverError::Unexpected {
            component: id.clone(),
            message: format!("SQS returned no URL for queue {name}"),
        })
    }

    async fn delete_queue(&self, id: &ComponentId, url: &str) -> Result<(), DriverError> {
        or_missing(
            self.client.delete_queue().queue_url(url).send().await,
            MISSING,
            "delete queue",
            id,
        )?;
        Ok(())
    }

    async fn reconcile(&self, component: &DesiredComponent) -> Result<Applied, DriverError> {
        let id = &component.id;
        let spec = spec_of(component)?;
        let fifo = spec.queue_type == Some(QueueType::Fifo);
        let (name, dlq_name) = self.names(id, fifo);
        let mut applied = Applied::default();
        let mut attrs = attributes_of(spec);
        let dlq = spec.dead_letter_queue.as_ref().filter(|d| d.enabled);
        if let Some(d) = dlq {
            let mut dlq_attrs = HashMap::from([(
                Attr::MessageRetentionPeriod,
                d.message_retention_period
                    .unwrap_or(DLQ_RETENTION)
                    .to_string(),
            )]);
            if fifo {
                dlq_attrs.insert(Attr::FifoQueue, "true".into());
            }
            // Its tags are not compared by plans (one more read per queue in every plan), but
            // converged here like the queue's.
            let (dlq_url, dlq_arn) = self.ensure_queue(id, &dlq_name, dlq_attrs).await?;
            let redrive = json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": d.max_receive_count.unwrap_or(DEFAULT_MAX_RECEIVE),
            });
            attrs.insert(Attr::RedrivePolicy, redrive.to_string());
            applied.identifiers.insert("dlqUrl".into(), dlq_url.clone());
            applied.outputs.insert("dlqUrl".into(), dlq_url);
            applied.outputs.insert("dlqArn".into(), dlq_arn);
        } else {
            // No DLQ wanted: an empty policy removes a redrive left by an earlier apply.
            attrs.insert(Attr::RedrivePolicy, String::new());
        }
        let (url, arn) = self.ensure_queue(id, &name, attrs).await?;
        if dlq.is_none() {
            if let Some(dlq_url) = self.queue_url(id, &dlq_name).await? {
                if self
                    .ctx
                    .naming
                    .owns(Some(id), &self.tags(id, &dlq_url).await?)
                {
                    self.delete_queue(id, &dlq_url).await?;
                }
            }
        }
        applied.identifiers.insert("url".into(), url.clone());
        applied.identifiers.insert("arn".into(), arn.clone());
        applied.outputs.insert("url".into(), url);
        applied.outputs.insert("arn".into(), arn);
        applied.outputs.insert("name".into(), name);
        Ok(applied)
    }

    /// Makes the queue carry exactly panka's tags (see [`super::support`]), refusing a queue
    /// that is not ours.
    async fn converge_tags(&self, id: &ComponentId, url: &str) -> Result<(), DriverError> {
        let have = self.tags(id, url).await?;
        ensure_ours(&self.ctx, id, &have, format!("queue {url}"))?;
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), &have);
        if !changes.set.is_empty() {
            self.client
                .tag_queue()
                .queue_url(url)
                .set_tags(Some(changes.set.into_iter().collect()))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag queue", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.client
                .untag_queue()
                .queue_url(url)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag queue", id, &e))?;
        }
        Ok(())
    }
}

fn spec_of(component: &DesiredComponent) -> Result<&SqsSpec, DriverError> {
    match &component.spec {
        ComponentSpec::Sqs(s) => Ok(s),
        other => Err(DriverError::Unexpected {
            component: component.id.clone(),
            message: format!("the SQS driver was given a {}", other.kind()),
        }),
    }
}

/// Queue attributes a spec asks for (AWS defaults where the spec is silent).
fn attributes_of(spec: &SqsSpec) -> HashMap<Attr, String> {
    let fifo = spec.queue_type == Some(QueueType::Fifo);
    let mut a = HashMap::from([
        (
            Attr::VisibilityTimeout,
            spec.visibility_timeout.unwrap_or(30).to_string(),
        ),
        (
            Attr::MessageRetentionPeriod,
            spec.message_retention_period.unwrap_or(345_600).to_string(),
        ),
        (
            Attr::DelaySeconds,
            spec.delay_seconds.unwrap_or(0).to_string(),
        ),
        (
            Attr::ReceiveMessageWaitTimeSeconds,
            spec.receive_wait_time_seconds.unwrap_or(0).to_string(),
        ),
        (
            Attr::MaximumMessageSize,
            spec.max_message_size.unwrap_or(262_144).to_string(),
        ),
    ]);
    if fifo {
        a.insert(Attr::FifoQueue, "true".into());
        a.insert(
            Attr::ContentBasedDeduplication,
            spec.content_based_deduplication
                .unwrap_or(false)
                .to_string(),
        );
    }
    a
}

/// Attributes SetQueueAttributes accepts (FifoQueue is fixed at creation).
fn settable(mut attrs: HashMap<Attr, String>) -> HashMap<Attr, String> {
    attrs.remove(&Attr::FifoQueue);
    attrs
}

/// Compares attribute values, parsing the redrive policy as JSON (AWS may reorder or retype it).
fn same_attr(name: &Attr, have: &str, want: &str) -> bool {
    if *name == Attr::RedrivePolicy {
        let parse = |s: &str| {
            serde_json::from_str::<serde_json::Value>(s)
                .ok()
                .map(redrive_fields)
        };
        return parse(have) == parse(want) || (have.is_empty() && want.is_empty());
    }
    have == want
}

/// `(target ARN, max receive count)` of a redrive policy, whatever types AWS used.
fn redrive_fields(v: serde_json::Value) -> (String, String) {
    let field = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (field("deadLetterTargetArn"), field("maxReceiveCount"))
}

fn num(attrs: &HashMap<Attr, String>, name: &Attr) -> FieldValue {
    match attrs.get(name).and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => FieldValue::known(n),
        None => FieldValue::Known(serde_json::Value::Null),
    }
}

#[async_trait]
impl Driver for SqsDriver {
    fn kind(&self) -> Kind {
        Kind::Sqs
    }

    fn desired(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
    ) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Ok(spec) = spec_of(component) else {
            return f;
        };
        let fifo = spec.queue_type == Some(QueueType::Fifo);
        let a = attributes_of(spec);
        f.set_replace(
            "fifo",
            FieldValue::known(fifo),
            "a queue's type is fixed at creation",
        );
        for (field, attr) in &FIELDS {
            if let Some(v) = a.get(attr) {
                f.set(
                    field,
                    FieldValue::known(v.parse::<u64>().unwrap_or_default()),
                );
            }
        }
        if fifo {
            f.set(
                "contentBasedDeduplication",
                FieldValue::known(spec.content_based_deduplication.unwrap_or(false)),
            );
        }
        let dlq = spec.dead_letter_queue.as_ref().filter(|d| d.enabled);
        f.set("deadLetterQueue.enabled", FieldValue::known(dlq.is_some()));
        if let Some(d) = dlq {
            f.set(
                "deadLetterQueue.maxReceiveCount",
                FieldValue::known(d.max_receive_count.unwrap_or(DEFAULT_MAX_RECEIVE)),
            );
        }
        f.set(
            "tags",
            self.ctx.tag_policy().field(&self.ctx.tags(&component.id)),
        );
        f
    }

    async fn observe(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let mut o = Observation::default();
        // A recorded URL saves the lookup; it must still name this component's queue.
        let mut found = None;
        if let Some(url) = recorded.and_then(|r| r.get("url")) {
            let (name, dlq_name) = self.names(id, url.ends_with(".fifo"));
            if url.ends_with(&format!("/{name}")) {
                match self
                    .client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(Attr::All)
                    .send()
                    .await
                {
                    Ok(out) => {
                        let attrs = out.attributes().cloned().unwrap_or_default();
                        found = Some((name, dlq_name, url.clone(), attrs));
                    }
                    Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                    Err(e) => return Err(DriverError::aws("read queue attributes", id, &e)),
                }
            }
        }
        if found.is_none() {
            // The name (hence FIFO-ness) is unknown here; try the standard name, then FIFO.
            for fifo in [false, true] {
                let (name, dlq_name) = self.names(id, fifo);
                if let Some(url) = self.queue_url(id, &name).await? {
                    let attrs = self.attributes(id, &url).await?;
                    found = Some((name, dlq_name, url, attrs));
                    break;
                }
            }
        }
        let Some((name, dlq_name, url, attrs)) = found else {
            o.status = "missing".into();
            return Ok(o);
        };
        let tags = self.tags(id, &url).await?;
        o.exists = true;
        o.owned = self.ctx.naming.owns(Some(id), &tags);
        let fifo = attrs.get(&Attr::FifoQueue).is_some_and(|v| v == "true");
        o.fields.insert("fifo".into(), FieldValue::known(fifo));
        for (field, attr) in &FIELDS {
            o.fields.insert(field.to_string(), num(&attrs, attr));
        }
        if fifo {
            let cbd = attrs
                .get(&Attr::ContentBasedDeduplication)
                .is_some_and(|v| v == "true");
            o.fields
                .insert("contentBasedDeduplication".into(), FieldValue::known(cbd));
        }
        let redrive = attrs
            .get(&Attr::RedrivePolicy)
            .filter(|s| !s.is_empty())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        o.fields.insert(
            "deadLetterQueue.enabled".into(),
            FieldValue::known(redrive.is_some()),
        );
        if let Some(r) = &redrive {
            let (_, count) = redrive_fields(r.clone());
            if let Ok(n) = count.trim_matches('"').parse::<u64>() {
                o.fields.insert(
                    "deadLetterQueue.maxReceiveCount".into(),
                    FieldValue::known(n),
                );
            }
        }
        o.fields
            .insert("tags".into(), self.ctx.tag_policy().field(&tags));
        let arn = attrs.get(&Attr::QueueArn).cloned().unwrap_or_default();
        o.identifiers.insert("url".into(), url.clone());
        o.identifiers.insert("arn".into(), arn.clone());
        o.outputs.insert("url".into(), url);
        o.outputs.insert("arn".into(), arn);
        o.outputs.insert("name".into(), name);
        if let Some(r) = &redrive {
            // The DLQ's ARN is in the redrive policy and its URL in state: look up only what is
            // not known.
            let (dlq_arn, _) = redrive_fields(r.clone());
            let recorded_dlq = recorded
                .and_then(|r| r.get("dlqUrl"))
                .filter(|u| u.ends_with(&format!("/{dlq_name}")))
                .cloned();
            let dlq_url = match recorded_dlq {
                Some(u) => Some(u),
                None => self.queue_url(id, &dlq_name).await?,
            };
            if let Some(dlq_url) = dlq_url {
                o.identifiers.insert("dlqUrl".into(), dlq_url.clone());
                o.outputs.insert("dlqUrl".into(), dlq_url);
                o.outputs.insert("dlqArn".into(), dlq_arn);
            }
        }
        o.health = Health::Healthy;
        o.status = "active".into();
        Ok(o)
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        self.reconcile(component).await
    }

    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        for key in ["url", "dlqUrl"] {
            let Some(url) = recorded.get(key) else {
                continue;
            };
            // Gone already: nothing to check or delete.
            let Some(tags) = self.tags_if_any(id, url).await? else {
                continue;
            };
            ensure_ours(&self.ctx, id, &tags, format!("queue {url}"))?;
            self.delete_queue(id, url).await?;
        }
        Ok(Deletion::Done)
    }
}

/// Numeric fields compared, and the attribute each comes from.
const FIELDS: [(&str, Attr); 5] = [
    ("visibilityTimeout", Attr::VisibilityTimeout),
    ("messageRetentionPeriod", Attr::MessageRetentionPeriod),
    ("delaySeconds", Attr::DelaySeconds),
    (
        "receiveWaitTimeSeconds",
        Attr::ReceiveMessageWaitTimeSeconds,
    ),
    ("maxMessageSize", Attr::MaximumMessageSize),
];
