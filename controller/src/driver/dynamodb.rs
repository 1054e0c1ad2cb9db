//! DynamoDB driver: a table named `{stack}-{env}-{service}-{component}` with its key schema,
//! billing mode (and provisioned capacity), time to live, point-in-time recovery, stream and
//! panka's tags.
//!
//! The key schema is fixed at creation, so a key change is planned as a replacement. Everything
//! else is changed in place, one UpdateTable change at a time (DynamoDB refuses two at once), and
//! the driver waits for the table to be `ACTIVE` again between changes, with a bounded timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode as AwsBillingMode, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, ProvisionedThroughput,
    ScalarAttributeType, StreamSpecification, StreamViewType as AwsViewType, TableDescription,
    TableStatus, Tag, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_types::error::operation::BuildError;
use panka_crds::spec::{AttributeType, BillingMode, DynamoDbSpec, KeyAttribute, StreamViewType};
use panka_crds::Kind;
use serde_json::{json, Value};

use super::support::{ensure_ours, or_missing};
use super::{counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs};
use crate::aws::AwsError;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};

/// Longest wait for a table to become `ACTIVE` after a create or update.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Reason shown when the keys differ.
const KEYS_FIXED: &str = "a table's key schema is fixed at creation";
/// DynamoDB's own codes for "no such table".
const MISSING: &[&str] = &["ResourceNotFoundException", "TableNotFoundException"];

/// The DynamoDB driver.
pub struct DynamoDbDriver {
    client: Client,
    ctx: Ctx,
}

/// What one DescribeTable/DescribeTimeToLive/DescribeContinuousBackups round read.
struct Seen {
    table: TableDescription,
    fields: BTreeMap<String, FieldValue>,
    tags: BTreeMap<String, String>,
}

impl DynamoDbDriver {
    /// A driver on the shared context.
    pub fn new(ctx: &Ctx) -> DynamoDbDriver {
        DynamoDbDriver {
            client: counted_client!(ctx, aws_sdk_dynamodb),
            ctx: ctx.clone(),
        }
    }

    /// The table name of a component.
    pub fn table_name(&self, id: &ComponentId) -> String {
        self.ctx.naming.component(id, None, NameRules::LONG)
    }

    async fn describe(
        &self,
        id: &ComponentId,
        table: &str,
    ) -> Result<Option<TableDescription>, DriverError> {
        let out = or_missing(
            self.client.describe_table().table_name(table).send().await,
            MISSING,
            "describe table",
            id,
        )?;
        Ok(out.and_then(|out| out.table().cloned()))
    }

    async fn tags(
        &self,
        id: &ComponentId,
        arn: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        let mut tags = BTreeMap::new();
        let mut next: Option<String> = None;
        // A loop by hand: aws-sdk-dynamodb has no paginator for ListTagsOfResource.
        loop {
            let out = self
                .client
                .list_tags_of_resource()
                .resource_arn(arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| DriverError::aws("read table tags", id, &e))?;
            for t in out.tags() {
                tags.insert(t.key().to_string(), t.value().to_string());
            }
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_string()),
                _ => return Ok(tags),
            }
        }
    }

    /// Reads the table, its TTL, PITR and tags into fields of the form [`table_fields`] makes.
    async fn read(&self, id: &ComponentId, table: &str) -> Result<Option<Seen>, DriverError> {
        let Some(desc) = self.describe(id, table).await? else {
            return Ok(None);
        };
        let arn = desc.table_arn().unwrap_or_default().to_string();
        let tags = self.tags(id, &arn).await?;
        let mut f = BTreeMap::new();
        f.insert("keys".into(), FieldValue::Known(observed_keys(&desc)));
        let provisioned = desc
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .is_none_or(|m| *m == AwsBillingMode::Provisioned);
        f.insert(
            "billingMode".into(),
            FieldValue::known(if provisioned {
                "PROVISIONED"
            } else {
                "PAY_PER_REQUEST"
            }),
        );
        if provisioned {
            let t = desc.provisioned_throughput();
            f.insert(
                "capacity".into(),
                FieldValue::Known(json!({
                    "read": t.and_then(|t| t.read_capacity_units()).unwrap_or(0),
                    "write": t.and_then(|t| t.write_capacity_units()).unwrap_or(0),
                })),
            );
        }
        let stream = desc
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str().to_string());
        f.insert("stream".into(), FieldValue::known(stream));

        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| DriverError::aws("read table TTL", id, &e))?;
        let ttl_attr = ttl
            .time_to_live_description()
            .filter(|d| {
                matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
            })
            .and_then(|d| d.attribute_name())
            .map(str::to_string);
        f.insert("ttl".into(), FieldValue::known(ttl_attr));

        let backups = self
            .client
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .map_err(|e| DriverError::aws("read table backups", id, &e))?;
        let pitr = backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            == Some(&PointInTimeRecoveryStatus::Enabled);
        f.insert("pointInTimeRecovery".into(), FieldValue::known(pitr));
        f.insert("tags".into(), self.ctx.tag_policy().field(&tags));
        Ok(Some(Seen {
            table: desc,
            fields: f,
            tags,
        }))
    }

    /// Waits, with the SDK's `TableExists` waiter, until the table is `ACTIVE` again after a
    /// create or an update: the next UpdateTable is refused while it is not, and these
    /// transitions take seconds. Bounded by [`ACTIVE_TIMEOUT`]; past it the apply fails and a
    /// re-run carries on.
    async fn wait_active(&self, id: &ComponentId, table: &str) -> Result<(), DriverError> {
        use aws_sdk_dynamodb::client::Waiters;
        self.client
            .wait_until_table_exists()
            .table_name(table)
            .wait(ACTIVE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| DriverError::Unexpected {
                component: id.clone(),
                message: format!(
                    "table {table} did not become ACTIVE within {}s: {}",
                    ACTIVE_TIMEOUT.as_secs(),
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or_default()
                ),
            })
    }

    async fn create_table(
        &self,
        id: &ComponentId,
        table: &str,
        spec: &DynamoDbSpec,
    ) -> Result<bool, DriverError> {
        let mut defs = vec![attribute(id, &spec.keys.partition)?];
        let mut schema = vec![key(id, &spec.keys.partition, KeyType::Hash)?];
        if let Some(sort) = &spec.keys.sort {
            defs.push(attribute(id, sort)?);
            schema.push(key(id, sort, KeyType::Range)?);
        }
        let tags = dynamodb_tags(id, self.ctx.tags(id))?;
        let mut req = self
            .client
            .create_table()
            .table_name(table)
            .set_attribute_definitions(Some(defs))
            .set_key_schema(Some(schema))
            .billing_mode(billing(spec))
            .set_tags(Some(tags));
        if let Some(t) = throughput(id, spec)? {
            req = req.provisioned_throughput(t);
        }
        if let Some(view) = spec.stream.as_ref().map(|s| s.view_type) {
            req = req.stream_specification(stream_spec(id, Some(view))?);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            // Created since we looked: converge() reads it again and checks its tags.
            Err(e) if has_code(&AwsError::from_sdk(&e), "ResourceInUseException") => Ok(false),
            Err(e) => Err(DriverError::aws("create table", id, &e)),
        }
    }

    async fn reconcile(&self, component: &DesiredComponent) -> Result<Applied, DriverError> {
        let id = &component.id;
        let spec = spec_of(component)?;
        let table = self.table_name(id);
        let fresh = match self.describe(id, &table).await? {
            None => self.create_table(id, &table, spec).await?,
            Some(_) => false,
        };
        self.wait_active(id, &table).await?;
        let seen = self
            .read(id, &table)
            .await?
            .ok_or_else(|| DriverError::Unexpected {
                component: id.clone(),
                message: format!("table {table} vanished while being created"),
            })?;
        if !fresh {
            ensure_ours(&self.ctx, id, &seen.tags, format!("table {table}"))?;
        }
        let want = table_fields(spec);
        let have = |name: &str| seen.fields.get(name).and_then(known);
        if have("keys") != want.get("keys") {
            return Err(DriverError::Unexpected {
                component: id.clone(),
                message: format!(
                    "table {table} has another key schema; {KEYS_FIXED}, so it must be replaced"
                ),
            });
        }
        if have("billingMode") != want.get("billingMode")
            || want
                .get("capacity")
                .is_some_and(|c| have("capacity") != Some(c))
        {
            let mut req = self
                .client
                .update_table()
                .table_name(&table)
                .billing_mode(billing(spec));
            if let Some(t) = throughput(id, spec)? {
                req = req.provisioned_throughput(t);
            }
            req.send()
                .await
                .map_err(|e| DriverError::aws("update table billing", id, &e))?;
            self.wait_active(id, &table).await?;
        }
        if have("stream") != want.get("stream") {
            let current = seen
                .table
                .stream_specification()
                .is_some_and(|s| s.stream_enabled());
            // A view type cannot be changed in place: the stream is turned off, then on again.
            if current {
                self.set_stream(id, &table, None).await?;
            }
            if let Some(view) = spec.stream.as_ref().map(|s| s.view_type) {
                self.set_stream(id, &table, Some(view)).await?;
            }
        }
        if have("ttl") != want.get("ttl") {
            let current = seen
                .fields
                .get("ttl")
                .and_then(known)
                .and_then(|v| v.as_str().map(str::to_string));
            if let Some(attr) = current {
                self.set_ttl(id, &table, &attr, false).await?;
            }
            if let Some(ttl) = &spec.ttl {
                self.set_ttl(id, &table, &ttl.attribute, true).await?;
            }
        }
        if have("pointInTimeRecovery") != want.get("pointInTimeRecovery") {
            let spec_pitr = PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(spec.point_in_time_recovery.unwrap_or(false))
                .build()
                .map_err(|e| build_error(id, &e))?;
            self.client
                .update_continuous_backups()
                .table_name(&table)
                .point_in_time_recovery_specification(spec_pitr)
                .send()
                .await
                .map_err(|e| DriverError::aws("set point-in-time recovery", id, &e))?;
        }
        let arn = seen.table.table_arn().unwrap_or_default().to_string();
        self.converge_tags(id, &arn, &seen.tags).await?;
        let stream_arn = if spec.stream.is_some() {
            self.describe(id, &table)
                .await?
                .and_then(|t| t.latest_stream_arn().map(str::to_string))
        } else {
            None
        };
        Ok(applied(&table, &arn, stream_arn))
    }

    async fn set_stream(
        &self,
        id: &ComponentId,
        table: &str,
        view: Option<StreamViewType>,
    ) -> Result<(), DriverError> {
        self.client
            .update_table()
            .table_name(table)
            .stream_specification(stream_spec(id, view)?)
            .send()
            .await
            .map_err(|e| DriverError::aws("update table stream", id, &e))?;
        self.wait_active(id, table).await
    }

    async fn set_ttl(
        &self,
        id: &ComponentId,
        table: &str,
        attribute: &str,
        enabled: bool,
    ) -> Result<(), DriverError> {
        let spec = TimeToLiveSpecification::builder()
            .enabled(enabled)
            .attribute_name(attribute)
            .build()
            .map_err(|e| build_error(id, &e))?;
        self.client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| DriverError::aws("update table TTL", id, &e))?;
        Ok(())
    }

    async fn converge_tags(
        &self,
        id: &ComponentId,
        arn: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), have);
        if !changes.set.is_empty() {
            self.client
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(dynamodb_tags(id, changes.set)?))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag table", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.client
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag table", id, &e))?;
        }
        Ok(())
    }
}

fn spec_of(component: &DesiredComponent) -> Result<&DynamoDbSpec, DriverError> {
    match &component.spec {
        ComponentSpec::DynamoDb(s) => Ok(s),
        other => Err(DriverError::Unexpected {
            component: component.id.clone(),
            message: format!("the DynamoDB driver was given a {}", other.kind()),
        }),
    }
}

/// DynamoDB tags from a map.
fn dynamodb_tags(
    id: &ComponentId,
    tags: BTreeMap<String, String>,
) -> Result<Vec<Tag>, DriverError> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| build_error(id, &e))
}

fn has_code(err: &AwsError, code: &str) -> bool {
    err.code.as_deref() == Some(code)
}

fn known(v: &FieldValue) -> Option<&Value> {
    match v {
        FieldValue::Known(v) => Some(v),
        FieldValue::Unknown(_) => None,
    }
}

fn build_error(id: &ComponentId, err: &BuildError) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: format!("failed to build a DynamoDB request: {err}"),
    }
}

fn scalar(t: AttributeType) -> ScalarAttributeType {
    match t {
        AttributeType::S => ScalarAttributeType::S,
        AttributeType::N => ScalarAttributeType::N,
        AttributeType::B => ScalarAttributeType::B,
    }
}

fn attribute(id: &ComponentId, k: &KeyAttribute) -> Result<AttributeDefinition, DriverError> {
    AttributeDefinition::builder()
        .attribute_name(&k.name)
        .attribute_type(scalar(k.attr_type))
        .build()
        .map_err(|e| build_error(id, &e))
}

fn key(id: &ComponentId, k: &KeyAttribute, kind: KeyType) -> Result<KeySchemaElement, DriverError> {
    KeySchemaElement::builder()
        .attribute_name(&k.name)
        .key_type(kind)
        .build()
        .map_err(|e| build_error(id, &e))
}

fn billing(spec: &DynamoDbSpec) -> AwsBillingMode {
    match spec.billing_mode.unwrap_or(BillingMode::PayPerRequest) {
        BillingMode::PayPerRequest => AwsBillingMode::PayPerRequest,
        BillingMode::Provisioned => AwsBillingMode::Provisioned,
    }
}

/// Provisioned throughput, for `PROVISIONED` tables only.
fn throughput(
    id: &ComponentId,
    spec: &DynamoDbSpec,
) -> Result<Option<ProvisionedThroughput>, DriverError> {
    if billing(spec) != AwsBillingMode::Provisioned {
        return Ok(None);
    }
    let c = spec.capacity.clone().unwrap_or_default();
    ProvisionedThroughput::builder()
        .read_capacity_units(i64::from(c.read))
        .write_capacity_units(i64::from(c.write))
        .build()
        .map(Some)
        .map_err(|e| build_error(id, &e))
}

fn view_type(v: StreamViewType) -> AwsViewType {
    match v {
        StreamViewType::NewImage => AwsViewType::NewImage,
        StreamViewType::OldImage => AwsViewType::OldImage,
        StreamViewType::NewAndOldImages => AwsViewType::NewAndOldImages,
        StreamViewType::KeysOnly => AwsViewType::KeysOnly,
    }
}

fn stream_spec(
    id: &ComponentId,
    view: Option<StreamViewType>,
) -> Result<StreamSpecification, DriverError> {
    StreamSpecification::builder()
        .stream_enabled(view.is_some())
        .set_stream_view_type(view.map(view_type))
        .build()
        .map_err(|e| build_error(id, &e))
}

fn key_json(name: &str, attr_type: &str) -> Value {
    json!({ "name": name, "type": attr_type })
}

fn attr_type_name(t: AttributeType) -> &'static str {
    match t {
        AttributeType::S => "S",
        AttributeType::N => "N",
        AttributeType::B => "B",
    }
}

/// The key schema of a described table, in the form of [`table_fields`].
fn observed_keys(desc: &TableDescription) -> Value {
    let type_of = |name: &str| {
        desc.attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map_or("", |a| a.attribute_type().as_str())
            .to_string()
    };
    let find = |kind: KeyType| {
        desc.key_schema()
            .iter()
            .find(|k| *k.key_type() == kind)
            .map(|k| key_json(k.attribute_name(), &type_of(k.attribute_name())))
            .unwrap_or(Value::Null)
    };
    json!({ "partition": find(KeyType::Hash), "sort": find(KeyType::Range) })
}

/// The compared fields a spec asks for, in the normal form [`DynamoDbDriver::read`] produces.
fn table_fields(spec: &DynamoDbSpec) -> BTreeMap<&'static str, Value> {
    let k = |a: &KeyAttribute| key_json(&a.name, attr_type_name(a.attr_type));
    let mut f = BTreeMap::from([
        (
            "keys",
            json!({
                "partition": k(&spec.keys.partition),
                "sort": spec.keys.sort.as_ref().map_or(Value::Null, k),
            }),
        ),
        ("billingMode", json!(billing(spec).as_str())),
        (
            "stream",
            json!(spec
                .stream
                .as_ref()
                .map(|s| view_type(s.view_type).as_str().to_string())),
        ),
        ("ttl", json!(spec.ttl.as_ref().map(|t| t.attribute.clone()))),
        (
            "pointInTimeRecovery",
            json!(spec.point_in_time_recovery.unwrap_or(false)),
        ),
    ]);
    if billing(spec) == AwsBillingMode::Provisioned {
        let c = spec.capacity.clone().unwrap_or_default();
        f.insert("capacity", json!({ "read": c.read, "write": c.write }));
    }
    f
}

fn applied(table: &str, arn: &str, stream_arn: Option<String>) -> Applied {
    let mut a = Applied::default();
    a.identifiers.insert("name".into(), table.to_string());
    a.identifiers.insert("arn".into(), arn.to_string());
    a.outputs.insert("name".into(), table.to_string());
    a.outputs.insert("arn".into(), arn.to_string());
    if let Some(s) = stream_arn {
        a.outputs.insert("streamArn".into(), s);
    }
    a
}

#[async_trait]
impl Driver for DynamoDbDriver {
    fn kind(&self) -> Kind {
        Kind::DynamoDb
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
        for (name, value) in table_fields(spec) {
            if name == "keys" {
                f.set_replace(name, FieldValue::Known(value), KEYS_FIXED);
            } else {
                f.set(name, FieldValue::Known(value));
            }
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
        let table = recorded
            .and_then(|r| r.get("name").cloned())
            .unwrap_or_else(|| self.table_name(id));
        let Some(seen) = self.read(id, &table).await? else {
            o.status = "missing".into();
            return Ok(o);
        };
        o.exists = true;
        o.owned = self.ctx.naming.owns(Some(id), &seen.tags);
        o.fields = seen.fields;
        let arn = seen.table.table_arn().unwrap_or_default();
        let stream_arn = seen
            .table
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and(seen.table.latest_stream_arn())
            .map(str::to_string);
        let a = applied(&table, arn, stream_arn);
        o.identifiers = a.identifiers;
        o.outputs = a.outputs;
        let status = seen.table.table_status().cloned();
        o.status = status
            .as_ref()
            .map_or("unknown", |s| s.as_str())
            .to_lowercase();
        o.health = match status {
            Some(TableStatus::Active) => Health::Healthy,
            Some(TableStatus::Creating | TableStatus::Updating) => Health::Progressing,
            _ => Health::Degraded(format!("table is {}", o.status)),
        };
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
        let table = recorded
            .get("name")
            .cloned()
            .unwrap_or_else(|| self.table_name(id));
        let Some(desc) = self.describe(id, &table).await? else {
            return Ok(Deletion::Done);
        };
        // Deleting a table destroys its data: never one that is not ours.
        let tags = self.tags(id, desc.table_arn().unwrap_or_default()).await?;
        ensure_ours(&self.ctx, id, &tags, format!("table {table}"))?;
        or_missing(
            self.client.delete_table().table_name(&table).send().await,
            MISSING,
            "delete table",
            id,
        )?;
        Ok(Deletion::Done)
    }
}
