//! S3 driver: a bucket named `{stack}-{env}-{service}-{component}` (lowercase, at most 63
//! characters), with versioning, default encryption, a public access block, one lifecycle rule
//! (`panka`) and panka's tags.
//!
//! Bucket settings are separate sub-resources in S3; each is read on its own and written only
//! when it differs, so a converged bucket costs reads only. Delete empties the bucket (every
//! object version and delete marker) before deleting it: S3 is a stateful kind, and the engine
//! gates that behind `--allow-destroy`, not this driver.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use aws_smithy_types::error::operation::BuildError;
use panka_crds::spec::{EncryptionType, PublicAccess, S3Spec};
use panka_crds::Kind;
use serde_json::{json, Value};

use super::support::ensure_ours;
use super::{Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs};
use crate::aws::{AwsError, ErrorClass};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{diff, DesiredFields, FieldValue, Health, Observation};

/// Id of the one lifecycle rule panka writes.
const LIFECYCLE_RULE_ID: &str = "panka";
/// Most keys one DeleteObjects call takes.
const DELETE_BATCH: usize = 1000;

/// The S3 driver.
pub struct S3Driver {
    client: Client,
    ctx: Ctx,
}

/// Whether a bucket exists, and whose it is.
enum Found {
    /// No bucket of that name anywhere.
    Missing,
    /// In this account.
    Here,
    /// Taken by another account (HeadBucket answers 403).
    Elsewhere,
}

impl S3Driver {
    /// A driver on the shared context. Path-style addressing is forced when an endpoint override
    /// is in effect: emulators and S3-compatible stores do not serve virtual-hosted buckets.
    pub fn new(ctx: &Ctx) -> S3Driver {
        let mut builder =
            aws_sdk_s3::config::Builder::from(&ctx.sdk).interceptor(ctx.calls.clone());
        if ctx.sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
            builder = builder.force_path_style(true);
        }
        S3Driver {
            client: Client::from_conf(builder.build()),
            ctx: ctx.clone(),
        }
    }

    /// The bucket name of a component: S3 wants lowercase.
    pub fn bucket_name(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, None, NameRules::S3_BUCKET)
            .to_lowercase()
    }

    fn region(&self) -> String {
        self.ctx
            .sdk
            .region()
            .map(|r| r.as_ref().to_string())
            .unwrap_or_else(|| "us-east-1".to_string())
    }

    async fn find(&self, id: &ComponentId, bucket: &str) -> Result<Found, DriverError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(Found::Here),
            Err(e) => {
                let err = AwsError::from_sdk(&e);
                match (err.class, err.status) {
                    (ErrorClass::NotFound, _) => Ok(Found::Missing),
                    (_, Some(403)) => Ok(Found::Elsewhere),
                    _ => Err(aws_error("look up bucket", id, err)),
                }
            }
        }
    }

    async fn tags(
        &self,
        id: &ComponentId,
        bucket: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        match self.find_tagged(id, bucket).await? {
            (Found::Here, tags) => Ok(tags),
            _ => Err(DriverError::Unexpected {
                component: id.clone(),
                message: format!("bucket {bucket} is gone or not readable"),
            }),
        }
    }

    /// Whether the bucket is here, and its tags, from one GetBucketTagging: it answers a
    /// missing bucket with 404 `NoSuchBucket` and another account's with 403, as HeadBucket
    /// does, so observe needs no HeadBucket.
    async fn find_tagged(
        &self,
        id: &ComponentId,
        bucket: &str,
    ) -> Result<(Found, BTreeMap<String, String>), DriverError> {
        match self.client.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => Ok((
                Found::Here,
                out.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            )),
            Err(e) => {
                let err = AwsError::from_sdk(&e);
                if has_code(&err, "NoSuchTagSet") {
                    return Ok((Found::Here, BTreeMap::new()));
                }
                match (err.class, err.status) {
                    (ErrorClass::NotFound, _) => Ok((Found::Missing, BTreeMap::new())),
                    (_, Some(403)) => Ok((Found::Elsewhere, BTreeMap::new())),
                    _ => Err(aws_error("read bucket tags", id, err)),
                }
            }
        }
    }

    /// Every compared field as S3 holds it, in the normal form of [`bucket_fields`].
    async fn read_fields(
        &self,
        id: &ComponentId,
        bucket: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, FieldValue>, DriverError> {
        let mut f = BTreeMap::new();
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| DriverError::aws("read bucket versioning", id, &e))?;
        f.insert(
            "versioning".into(),
            FieldValue::known(versioning.status() == Some(&BucketVersioningStatus::Enabled)),
        );

        let encryption = match self
            .client
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| {
                    json!({
                        "type": d.sse_algorithm().as_str(),
                        "kmsKeyId": d.kms_master_key_id(),
                    })
                })
                .unwrap_or(Value::Null),
            Err(e)
                if has_code(
                    &AwsError::from_sdk(&e),
                    "ServerSideEncryptionConfigurationNotFoundError",
                ) =>
            {
                Value::Null
            }
            Err(e) => return Err(DriverError::aws("read bucket encryption", id, &e)),
        };
        f.insert("encryption".into(), FieldValue::Known(encryption));

        let block = match self
            .client
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.public_access_block_configuration().map(|c| {
                [
                    c.block_public_acls(),
                    c.ignore_public_acls(),
                    c.block_public_policy(),
                    c.restrict_public_buckets(),
                ]
                .map(|b| b.unwrap_or(false))
            }),
            Err(e)
                if has_code(
                    &AwsError::from_sdk(&e),
                    "NoSuchPublicAccessBlockConfiguration",
                ) =>
            {
                None
            }
            Err(e) => return Err(DriverError::aws("read public access block", id, &e)),
        };
        f.insert(
            "publicAccessBlock".into(),
            FieldValue::Known(public_access_block(block.unwrap_or([false; 4]))),
        );

        let rules = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.rules().to_vec(),
            Err(e) if has_code(&AwsError::from_sdk(&e), "NoSuchLifecycleConfiguration") => {
                Vec::new()
            }
            Err(e) => return Err(DriverError::aws("read bucket lifecycle", id, &e)),
        };
        let enabled = rules
            .iter()
            .filter(|r| r.status() == &ExpirationStatus::Enabled);
        let mut expiration = None;
        let mut noncurrent = None;
        for rule in enabled {
            expiration = expiration.or(rule.expiration().and_then(|e| e.days()));
            noncurrent = noncurrent.or(rule
                .noncurrent_version_expiration()
                .and_then(|e| e.noncurrent_days()));
        }
        f.insert(
            "lifecycle".into(),
            FieldValue::Known(lifecycle(
                expiration.map(i64::from),
                noncurrent.map(i64::from),
            )),
        );
        f.insert("tags".into(), self.ctx.tag_policy().field(tags));
        Ok(f)
    }

    async fn reconcile(&self, component: &DesiredComponent) -> Result<Applied, DriverError> {
        let id = &component.id;
        let spec = spec_of(component)?;
        let bucket = self.bucket_name(id);
        match self.find(id, &bucket).await? {
            Found::Elsewhere => return Err(taken(id, &bucket)),
            Found::Here => self.check_ours(id, &bucket).await?,
            Found::Missing => self.create_bucket(id, &bucket).await?,
        }
        let want = self.desired(component, &Outputs::new(), &Lookups::none());
        let tags = self.tags(id, &bucket).await?;
        let seen = Observation {
            fields: self.read_fields(id, &bucket, &tags).await?,
            ..Observation::default()
        };
        // Tags first: they are what marks the bucket as ours if a later call fails.
        let mut changed: Vec<String> = diff(&want, &seen).into_iter().map(|d| d.field).collect();
        changed.sort_by_key(|f| f != "tags");
        for field in changed {
            match field.as_str() {
                "tags" => self.put_tags(id, &bucket, &tags).await?,
                "versioning" => self.put_versioning(id, &bucket, spec).await?,
                "encryption" => self.put_encryption(id, &bucket, spec).await?,
                "publicAccessBlock" => self.put_public_access_block(id, &bucket, spec).await?,
                "lifecycle" => self.put_lifecycle(id, &bucket, spec).await?,
                _ => {}
            }
        }
        Ok(self.applied(&bucket))
    }

    async fn check_ours(&self, id: &ComponentId, bucket: &str) -> Result<(), DriverError> {
        let tags = self.tags(id, bucket).await?;
        ensure_ours(&self.ctx, id, &tags, format!("bucket {bucket}"))
    }

    async fn create_bucket(&self, id: &ComponentId, bucket: &str) -> Result<(), DriverError> {
        let region = self.region();
        let mut req = self.client.create_bucket().bucket(bucket);
        // us-east-1 is the one region that refuses an explicit location constraint.
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = AwsError::from_sdk(&e);
                if has_code(&err, "BucketAlreadyOwnedByYou") {
                    // Created between our look-up and now: take it only if it is ours.
                    self.check_ours(id, bucket).await
                } else if has_code(&err, "BucketAlreadyExists") {
                    Err(taken(id, bucket))
                } else {
                    Err(aws_error("create bucket", id, err))
                }
            }
        }
    }

    /// Writes the bucket's tags. PutBucketTagging replaces the whole set, so the ignored tags
    /// the bucket holds (`have`) are written back with panka's.
    async fn put_tags(
        &self,
        id: &ComponentId,
        bucket: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let tags = self
            .ctx
            .tag_policy()
            .replacement(&self.ctx.tags(id), have)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build_error(id, &e))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| build_error(id, &e))?;
        self.client
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| DriverError::aws("tag bucket", id, &e))?;
        Ok(())
    }

    async fn put_versioning(
        &self,
        id: &ComponentId,
        bucket: &str,
        spec: &S3Spec,
    ) -> Result<(), DriverError> {
        // Versioning cannot be removed once on, only suspended.
        let status = if spec.versioning.unwrap_or(false) {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        self.client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(|e| DriverError::aws("set bucket versioning", id, &e))?;
        Ok(())
    }

    async fn put_encryption(
        &self,
        id: &ComponentId,
        bucket: &str,
        spec: &S3Spec,
    ) -> Result<(), DriverError> {
        let enc = spec.encryption.clone().unwrap_or_default();
        let algorithm = match enc.encryption_type {
            EncryptionType::Aes256 => ServerSideEncryption::Aes256,
            EncryptionType::AwsKms => ServerSideEncryption::AwsKms,
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(algorithm)
            .set_kms_master_key_id(enc.kms_key_id)
            .build()
            .map_err(|e| build_error(id, &e))?;
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .build(),
            )
            .build()
            .map_err(|e| build_error(id, &e))?;
        self.client
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(|e| DriverError::aws("set bucket encryption", id, &e))?;
        Ok(())
    }

    async fn put_public_access_block(
        &self,
        id: &ComponentId,
        bucket: &str,
        spec: &S3Spec,
    ) -> Result<(), DriverError> {
        let on = blocked(spec);
        self.client
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(on)
                    .ignore_public_acls(on)
                    .block_public_policy(on)
                    .restrict_public_buckets(on)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| DriverError::aws("set public access block", id, &e))?;
        Ok(())
    }

    async fn put_lifecycle(
        &self,
        id: &ComponentId,
        bucket: &str,
        spec: &S3Spec,
    ) -> Result<(), DriverError> {
        let (expiration, noncurrent) = lifecycle_days(spec);
        if expiration.is_none() && noncurrent.is_none() {
            match self
                .client
                .delete_bucket_lifecycle()
                .bucket(bucket)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if has_code(&AwsError::from_sdk(&e), "NoSuchLifecycleConfiguration") => {
                    return Ok(())
                }
                Err(e) => return Err(DriverError::aws("remove bucket lifecycle", id, &e)),
            }
        }
        let mut rule = LifecycleRule::builder()
            .id(LIFECYCLE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build());
        if let Some(days) = expiration {
            rule = rule.expiration(LifecycleExpiration::builder().days(to_i32(days)).build());
        }
        if let Some(days) = noncurrent {
            rule = rule.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(to_i32(days))
                    .build(),
            );
        }
        let config = BucketLifecycleConfiguration::builder()
            .rules(rule.build().map_err(|e| build_error(id, &e))?)
            .build()
            .map_err(|e| build_error(id, &e))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(config)
            .send()
            .await
            .map_err(|e| DriverError::aws("set bucket lifecycle", id, &e))?;
        Ok(())
    }

    /// Deletes every object version and delete marker, a page at a time.
    async fn empty(&self, id: &ComponentId, bucket: &str) -> Result<(), DriverError> {
        let mut previous_first: Option<(String, Option<String>)> = None;
        // Not a pagination loop (aws-sdk-s3 has no paginator for ListObjectVersions anyway): each
        // round lists the first page again and deletes it, until nothing is left.
        loop {
            // Always from the start: what the last round deleted is gone from the listing.
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| DriverError::aws("list object versions", id, &e))?;
            let mut keys: Vec<ObjectIdentifier> = Vec::new();
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id()));
            for (key, version) in versions.chain(markers) {
                let Some(key) = key else { continue };
                keys.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_string))
                        .build()
                        .map_err(|e| build_error(id, &e))?,
                );
            }
            let Some(first) = keys.first() else {
                return Ok(());
            };
            // A listing that starts where the last one did means nothing was deleted: stop
            // rather than loop for ever.
            let first = (
                first.key().to_string(),
                first.version_id().map(str::to_string),
            );
            if previous_first.as_ref() == Some(&first) {
                return Err(DriverError::Unexpected {
                    component: id.clone(),
                    message: format!(
                        "failed to empty bucket {bucket}: object {} is listed again after its deletion",
                        first.0
                    ),
                });
            }
            previous_first = Some(first);
            for batch in keys.chunks(DELETE_BATCH) {
                let delete = Delete::builder()
                    .set_objects(Some(batch.to_vec()))
                    .quiet(true)
                    .build()
                    .map_err(|e| build_error(id, &e))?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("empty bucket", id, &e))?;
                if let Some(first) = out.errors().first() {
                    return Err(DriverError::Unexpected {
                        component: id.clone(),
                        message: format!(
                            "failed to empty bucket {bucket}: {} objects not deleted, first {}: {}",
                            out.errors().len(),
                            first.key().unwrap_or("?"),
                            first.message().unwrap_or("no reason given")
                        ),
                    });
                }
            }
        }
    }

    fn applied(&self, bucket: &str) -> Applied {
        let arn = format!("arn:{}:s3:::{bucket}", partition(&self.region()));
        let domain = format!(
            "{bucket}.s3.{}.{}",
            self.region(),
            dns_suffix(&self.region())
        );
        let mut a = Applied::default();
        a.identifiers.insert("name".into(), bucket.to_string());
        a.identifiers.insert("arn".into(), arn.clone());
        a.outputs.insert("name".into(), bucket.to_string());
        a.outputs.insert("arn".into(), arn);
        a.outputs.insert("domainName".into(), domain);
        a
    }
}

fn spec_of(component: &DesiredComponent) -> Result<&S3Spec, DriverError> {
    match &component.spec {
        ComponentSpec::S3(s) => Ok(s),
        other => Err(DriverError::Unexpected {
            component: component.id.clone(),
            message: format!("the S3 driver was given a {}", other.kind()),
        }),
    }
}

/// A classified AWS error as a driver error.
fn aws_error(action: &str, id: &ComponentId, err: AwsError) -> DriverError {
    DriverError::Aws {
        action: action.to_string(),
        component: id.clone(),
        source: err.into(),
    }
}

fn has_code(err: &AwsError, code: &str) -> bool {
    err.code.as_deref() == Some(code)
}

fn taken(id: &ComponentId, bucket: &str) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: format!(
            "bucket name {bucket} is taken by another AWS account (bucket names are global); rename the stack or component"
        ),
    }
}

fn build_error(id: &ComponentId, err: &BuildError) -> DriverError {
    DriverError::Unexpected {
        component: id.clone(),
        message: format!("failed to build an S3 request: {err}"),
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Whether the spec blocks public access (the default).
fn blocked(spec: &S3Spec) -> bool {
    spec.public_access.unwrap_or(PublicAccess::Blocked) == PublicAccess::Blocked
}

/// `(expirationDays, noncurrentVersionExpirationDays)` of the spec.
fn lifecycle_days(spec: &S3Spec) -> (Option<u32>, Option<u32>) {
    spec.lifecycle
        .as_ref()
        .map(|l| (l.expiration_days, l.noncurrent_version_expiration_days))
        .unwrap_or((None, None))
}

fn public_access_block(flags: [bool; 4]) -> Value {
    json!({
        "blockPublicAcls": flags[0],
        "ignorePublicAcls": flags[1],
        "blockPublicPolicy": flags[2],
        "restrictPublicBuckets": flags[3],
    })
}

fn lifecycle(expiration: Option<i64>, noncurrent: Option<i64>) -> Value {
    json!({
        "expirationDays": expiration,
        "noncurrentVersionExpirationDays": noncurrent,
    })
}

/// The ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The compared fields a spec asks for, in the normal form [`S3Driver::read_fields`] produces.
fn bucket_fields(spec: &S3Spec) -> Vec<(&'static str, Value)> {
    let enc = spec.encryption.clone().unwrap_or_default();
    let algorithm = match enc.encryption_type {
        EncryptionType::Aes256 => "AES256",
        EncryptionType::AwsKms => "aws:kms",
    };
    let (expiration, noncurrent) = lifecycle_days(spec);
    vec![
        ("versioning", json!(spec.versioning.unwrap_or(false))),
        (
            "encryption",
            json!({ "type": algorithm, "kmsKeyId": enc.kms_key_id }),
        ),
        ("publicAccessBlock", public_access_block([blocked(spec); 4])),
        (
            "lifecycle",
            lifecycle(expiration.map(i64::from), noncurrent.map(i64::from)),
        ),
    ]
}

#[async_trait]
impl Driver for S3Driver {
    fn kind(&self) -> Kind {
        Kind::S3
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
        for (name, value) in bucket_fields(spec) {
            f.set(name, FieldValue::Known(value));
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
        let bucket = recorded
            .and_then(|r| r.get("name").cloned())
            .unwrap_or_else(|| self.bucket_name(id));
        let (found, tags) = self.find_tagged(id, &bucket).await?;
        match found {
            Found::Missing => {
                o.status = "missing".into();
                return Ok(o);
            }
            Found::Elsewhere => {
                // Exists, but in another account: never ours, and nothing more can be read.
                o.exists = true;
                o.status = "owned by another account".into();
                o.health = Health::Degraded("the bucket name is taken by another account".into());
                return Ok(o);
            }
            Found::Here => {}
        }
        o.exists = true;
        o.owned = self.ctx.naming.owns(Some(id), &tags);
        o.fields = self.read_fields(id, &bucket, &tags).await?;
        let applied = self.applied(&bucket);
        o.identifiers = applied.identifiers;
        o.outputs = applied.outputs;
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
        let bucket = recorded
            .get("name")
            .cloned()
            .unwrap_or_else(|| self.bucket_name(id));
        match self.find(id, &bucket).await? {
            // Gone already, or someone else's: nothing of ours to delete.
            Found::Missing | Found::Elsewhere => return Ok(Deletion::Done),
            Found::Here => {}
        }
        // Emptying destroys data: never for a bucket that is not ours.
        self.check_ours(id, &bucket).await?;
        self.empty(id, &bucket).await?;
        match self.client.delete_bucket().bucket(&bucket).send().await {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if AwsError::from_sdk(&e).class == ErrorClass::NotFound => Ok(Deletion::Done),
            Err(e) => Err(DriverError::aws("delete bucket", id, &e)),
        }
    }
}
