//! Opening the configured state and lock backends, and creating the AWS ones
//! (`panka backend create`).
//!
//! Stage: setup. [`open`] builds clients only; [`create`] calls S3 and DynamoDB to create or
//! verify the bucket and the table, idempotently.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use thiserror::Error;

use crate::aws::{self, AwsError, ErrorClass};
use crate::config::{Config, LocksConfig, StateConfig};
use crate::lock::dynamodb::{DynamoDbLocks, EXPIRES_AT, KEY};
use crate::lock::local::LocalLocks;
use crate::lock::LockBackend;
use crate::state::local::LocalStore;
use crate::state::s3::S3Store;
use crate::state::StateStore;

/// The state store and lock backend a command or the controller works with.
#[derive(Clone)]
pub struct Backends {
    /// State and history.
    pub state: StateStore,
    /// Locks.
    pub locks: Arc<dyn LockBackend>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("state", &self.state.location())
            .field("locks", &self.locks.location())
            .finish()
    }
}

/// What a person at the CLI can do about an error: a missing backend (the state bucket or the
/// lock table does not exist in this account and region), or a lock someone else holds (the
/// controller retries by itself, so its messages carry no such advice). `None` otherwise.
pub fn hint(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    // The names, as the error's own location says them (`s3://bucket/…`, `dynamodb://table`).
    let mut said = String::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        said.push_str(&e.to_string());
        said.push('\n');
        cause = e.source();
    }
    let named = |scheme: &str| {
        said.split(scheme)
            .nth(1)
            .and_then(|rest| rest.split(['/', ':', ' ', '\n']).next())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    };
    let bucket = named("s3://").unwrap_or_else(|| "<bucket>".into());
    let table = named("dynamodb://").unwrap_or_else(|| "<table>".into());
    let mut next = Some(err);
    while let Some(e) = next {
        // Outside the drivers (which treat a missing bucket as a missing component) the only
        // bucket panka reads is the state bucket; engine errors wrap state errors transparently,
        // so the cause is looked for, not the state error.
        let missing = match e.downcast_ref::<crate::state::StateError>() {
            Some(crate::state::StateError::Aws { source, .. }) => {
                source.code.as_deref() == Some("NoSuchBucket")
            }
            _ => e
                .downcast_ref::<AwsError>()
                .is_some_and(|a| a.code.as_deref() == Some("NoSuchBucket")),
        };
        if missing {
            return Some(format!(
                "the state bucket does not exist in this account and region: create it and the \
                 lock table with `panka backend create --bucket {bucket} --table {table}`, or \
                 correct `backend.bucket`/PANKA_STATE_BUCKET and the region"
            ));
        }
        if let Some(crate::lock::LockError::Held { .. }) =
            e.downcast_ref::<crate::lock::LockError>()
        {
            return Some(
                "retry when it is done, or wait for it with `--lock-timeout 10m`; `panka state \
                 locks` shows every lock and `panka unlock` is for a holder that died"
                    .into(),
            );
        }
        if let Some(crate::lock::LockError::Aws { source, .. }) =
            e.downcast_ref::<crate::lock::LockError>()
        {
            if source.class == ErrorClass::NotFound {
                return Some(format!(
                    "the lock table does not exist in this account and region: create it with \
                     `panka backend create --bucket {bucket} --table {table}`, or correct \
                     `locks.table`/PANKA_LOCK_TABLE and the region"
                ));
            }
        }
        next = e.source();
    }
    None
}

/// Opens the configured backends, loading the AWS configuration from the standard chain only
/// when an AWS backend is configured.
pub async fn open(config: &Config) -> Backends {
    let sdk = if config.uses_aws() {
        Some(aws::load_sdk_config(&config.aws).await)
    } else {
        None
    };
    open_with(config, sdk.as_ref())
}

/// Opens the configured backends with a given SDK configuration (tests pass the emulator's).
/// Without one, AWS clients are built from an SDK configuration with no credentials or region,
/// whose calls fail with a clear error; [`open`] always passes one when AWS is configured.
pub fn open_with(config: &Config, sdk: Option<&SdkConfig>) -> Backends {
    let empty;
    let sdk = match sdk {
        Some(sdk) => sdk,
        None => {
            empty = SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build();
            &empty
        }
    };
    let state = match &config.state {
        StateConfig::S3 { bucket, .. } => {
            let client = aws::s3_client(sdk, config.state_region());
            StateStore::new(Arc::new(S3Store::new(client, bucket.clone())))
        }
        StateConfig::Local { dir } => StateStore::new(Arc::new(LocalStore::new(dir))),
    };
    let locks: Arc<dyn LockBackend> = match &config.locks {
        LocksConfig::DynamoDb { table, .. } => Arc::new(DynamoDbLocks::new(
            aws::dynamodb_client(sdk, config.locks_region()),
            table.clone(),
        )),
        LocksConfig::Local { dir } => Arc::new(LocalLocks::new(dir)),
    };
    Backends { state, locks }
}

/// Errors of `backend create`.
#[derive(Debug, Error)]
pub enum BackendError {
    /// An AWS call failed.
    #[error("failed to {op} {resource}: {source}")]
    Aws {
        /// What we were doing.
        op: &'static str,
        /// The bucket or table.
        resource: String,
        /// The classified cause.
        #[source]
        source: AwsError,
    },
    /// The bucket exists without versioning.
    #[error("failed to use bucket {bucket}: it exists but versioning is not enabled, so old state versions would be lost; enable versioning on it (aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled) or pass --allow-unversioned")]
    Unversioned {
        /// The bucket.
        bucket: String,
    },
    /// The bucket name belongs to someone else.
    #[error("failed to create bucket {bucket}: the name is taken by another AWS account; choose another name")]
    BucketTaken {
        /// The bucket.
        bucket: String,
    },
    /// The bucket exists but we may not use it.
    #[error("failed to use bucket {bucket}: it exists but access is denied (another account's bucket, or missing s3:ListBucket permission)")]
    BucketForbidden {
        /// The bucket.
        bucket: String,
    },
    /// The table exists with another key.
    #[error("failed to use table {table}: its key schema is {found}, but panka's lock table needs the partition key `lockKey` (string) and no sort key")]
    WrongKeySchema {
        /// The table.
        table: String,
        /// What it has.
        found: String,
    },
    /// The table did not become active.
    #[error("failed to create table {table}: it did not become ACTIVE within {waited_secs}s")]
    NotReady {
        /// The table.
        table: String,
        /// How long we waited.
        waited_secs: u64,
    },
}

/// What `backend create` did to one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// Created it.
    Created,
    /// Changed it.
    Configured,
    /// It was already right.
    Verified,
    /// Left as is, with a warning.
    Warning,
}

impl StepAction {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepAction::Created => "created",
            StepAction::Configured => "configured",
            StepAction::Verified => "ok",
            StepAction::Warning => "warning",
        }
    }
}

/// One line of the `backend create` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `s3://bucket` or `dynamodb://table`.
    pub resource: String,
    /// Which setting.
    pub what: String,
    /// What happened.
    pub action: StepAction,
}

/// What `backend create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// State bucket.
    pub bucket: String,
    /// Lock table.
    pub table: String,
    /// Accept an existing bucket without versioning.
    pub allow_unversioned: bool,
}

/// Creates (or verifies) the state bucket — versioning, default encryption, public access
/// block — and the lock table — key `lockKey`, on-demand billing, TTL on `expiresAt`.
/// Idempotent: a second run changes nothing and reports every setting as verified.
pub async fn create(
    s3: &aws_sdk_s3::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    options: &CreateOptions,
) -> Result<Vec<Step>, BackendError> {
    let mut steps = create_bucket(s3, options).await?;
    steps.extend(create_table(dynamodb, &options.table).await?);
    Ok(steps)
}

async fn create_bucket(
    s3: &aws_sdk_s3::Client,
    options: &CreateOptions,
) -> Result<Vec<Step>, BackendError> {
    let bucket = options.bucket.as_str();
    let resource = format!("s3://{bucket}");
    let step = |what: &str, action| Step {
        resource: resource.clone(),
        what: what.to_owned(),
        action,
    };
    let aws_err = |op, e: AwsError| BackendError::Aws {
        op,
        resource: resource.clone(),
        source: e,
    };
    let mut steps = Vec::new();

    let exists = match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) => {
            let e = AwsError::from_sdk(&e);
            match (e.class, e.status) {
                (ErrorClass::NotFound, _) => false,
                (_, Some(403)) => {
                    return Err(BackendError::BucketForbidden {
                        bucket: bucket.to_owned(),
                    })
                }
                _ => return Err(aws_err("check", e)),
            }
        }
    };
    let mut created = false;
    if !exists {
        let mut req = s3.create_bucket().bucket(bucket);
        let region = s3.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => created = true,
            Err(e) => {
                let e = AwsError::from_sdk(&e);
                match e.code.as_deref() {
                    // Created by a concurrent run of ours: carry on verifying.
                    Some("BucketAlreadyOwnedByYou") => {}
                    Some("BucketAlreadyExists") => {
                        return Err(BackendError::BucketTaken {
                            bucket: bucket.to_owned(),
                        })
                    }
                    _ => return Err(aws_err("create", e)),
                }
            }
        }
    }
    if created {
        steps.push(step("bucket", StepAction::Created));
    } else {
        steps.push(step("bucket", StepAction::Verified));
    }

    let versioned = if created {
        // Ours and new: nothing to respect, just turn it on.
        false
    } else {
        match s3.get_bucket_versioning().bucket(bucket).send().await {
            Ok(out) => out.status() == Some(&BucketVersioningStatus::Enabled),
            Err(e) => return Err(aws_err("read versioning of", AwsError::from_sdk(&e))),
        }
    };
    if versioned {
        steps.push(step("versioning", StepAction::Verified));
    } else if created {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("enable versioning on", AwsError::from_sdk(&e)))?;
        steps.push(step("versioning", StepAction::Configured));
    } else if options.allow_unversioned {
        steps.push(step(
            "versioning (off: old state versions are not kept)",
            StepAction::Warning,
        ));
    } else {
        // Someone else's bucket: do not change its versioning behind their back.
        return Err(BackendError::Unversioned {
            bucket: bucket.to_owned(),
        });
    }

    let encrypted = match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => out
            .server_side_encryption_configuration()
            .is_some_and(|c| !c.rules().is_empty()),
        Err(e) => {
            let e = AwsError::from_sdk(&e);
            if e.code.as_deref() == Some("ServerSideEncryptionConfigurationNotFoundError")
                || e.class == ErrorClass::NotFound
            {
                false
            } else {
                return Err(aws_err("read encryption of", e));
            }
        }
    };
    if encrypted {
        steps.push(step("default encryption", StepAction::Verified));
    } else {
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .map_err(|e| aws_err("build encryption settings for", permanent(e)))?,
            )
            .build();
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| aws_err("build encryption settings for", permanent(e)))?;
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(|e| aws_err("set default encryption on", AwsError::from_sdk(&e)))?;
        steps.push(step("default encryption (SSE-S3)", StepAction::Configured));
    }

    let blocked = match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(e) => {
            let e = AwsError::from_sdk(&e);
            if e.code.as_deref() == Some("NoSuchPublicAccessBlockConfiguration")
                || e.class == ErrorClass::NotFound
            {
                false
            } else {
                return Err(aws_err("read the public access block of", e));
            }
        }
    };
    if blocked {
        steps.push(step("public access block", StepAction::Verified));
    } else {
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("block public access to", AwsError::from_sdk(&e)))?;
        steps.push(step("public access block", StepAction::Configured));
    }
    Ok(steps)
}

async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<Step>, BackendError> {
    let resource = format!("dynamodb://{table}");
    let step = |what: &str, action| Step {
        resource: resource.clone(),
        what: what.to_owned(),
        action,
    };
    let aws_err = |op, e: AwsError| BackendError::Aws {
        op,
        resource: resource.clone(),
        source: e,
    };
    let mut steps = Vec::new();

    let described = match dynamodb.describe_table().table_name(table).send().await {
        Ok(out) => out.table,
        Err(e) => {
            let e = AwsError::from_sdk(&e);
            if e.class == ErrorClass::NotFound {
                None
            } else {
                return Err(aws_err("describe", e));
            }
        }
    };
    match described {
        Some(desc) => {
            let keys: Vec<(String, KeyType)> = desc
                .key_schema()
                .iter()
                .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
                .collect();
            let key_type = desc
                .attribute_definitions()
                .iter()
                .find(|a| a.attribute_name() == KEY)
                .map(|a| a.attribute_type().clone());
            let ok = keys.len() == 1
                && keys[0] == (KEY.to_owned(), KeyType::Hash)
                && key_type == Some(ScalarAttributeType::S);
            if !ok {
                let found = keys
                    .iter()
                    .map(|(n, t)| format!("{n} ({})", t.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(BackendError::WrongKeySchema {
                    table: table.to_owned(),
                    found,
                });
            }
            steps.push(step("table (partition key lockKey)", StepAction::Verified));
        }
        None => {
            let created = dynamodb
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| aws_err("build the key of", permanent(e)))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(|e| aws_err("build the key of", permanent(e)))?,
                )
                .send()
                .await;
            if let Err(e) = created {
                let e = AwsError::from_sdk(&e);
                // Created by a concurrent run: carry on and wait for it.
                if e.code.as_deref() != Some("ResourceInUseException") {
                    return Err(aws_err("create", e));
                }
            }
            wait_active(dynamodb, table).await?;
            steps.push(step("table (partition key lockKey)", StepAction::Created));
        }
    }

    let ttl = dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| aws_err("read TTL settings of", AwsError::from_sdk(&e)))?;
    let ttl = ttl.time_to_live_description();
    let status = ttl.and_then(|t| t.time_to_live_status());
    let attr = ttl.and_then(|t| t.attribute_name());
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            if attr == Some(EXPIRES_AT) =>
        {
            steps.push(step("TTL on expiresAt", StepAction::Verified));
        }
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
            // Locks stay correct (expiry is checked in every condition); only tidying suffers.
            steps.push(step(
                &format!(
                    "TTL is on `{}`, not expiresAt: expired lock records are not cleaned up",
                    attr.unwrap_or("?")
                ),
                StepAction::Warning,
            ));
        }
        _ => {
            dynamodb
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(EXPIRES_AT)
                        .build()
                        .map_err(|e| aws_err("build TTL settings for", permanent(e)))?,
                )
                .send()
                .await
                .map_err(|e| aws_err("enable TTL on", AwsError::from_sdk(&e)))?;
            steps.push(step("TTL on expiresAt", StepAction::Configured));
        }
    }
    Ok(steps)
}

async fn wait_active(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), BackendError> {
    const WAIT: Duration = Duration::from_secs(300);
    let start = tokio::time::Instant::now();
    loop {
        let out = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| BackendError::Aws {
                op: "describe",
                resource: format!("dynamodb://{table}"),
                source: AwsError::from_sdk(&e),
            })?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if start.elapsed() >= WAIT {
            return Err(BackendError::NotReady {
                table: table.to_owned(),
                waited_secs: WAIT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn permanent(e: impl std::fmt::Display) -> AwsError {
    AwsError {
        class: ErrorClass::Permanent,
        code: None,
        status: None,
        message: e.to_string(),
        request_id: None,
    }
}
