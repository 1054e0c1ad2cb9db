//! RDS driver: a DB subnet group and a DB instance, both named
//! `{stack}-{env}-{service}-{component}` (the instance identifier at most 63 characters).
//!
//! The subnet group takes the stack's subnets: the `subnets` output of `_stack/network`, which
//! the component runs on (`networking.subnets` when listed, else every subnet of the VPC; see
//! [`super::stack`]). The master
//! password is read from its Secrets Manager reference only when the instance is created, handed
//! to CreateDBInstance and dropped: it is never compared, recorded, logged or put in an error. Engine, initial database and master user name are fixed
//! at creation (a change is a replacement, which the engine gates as dangerous); class, storage,
//! multi-AZ, backups, port, deletion protection and the engine version are modified in place,
//! immediately (`ApplyImmediately`), not in the next maintenance window.
//!
//! Delete honours deletion protection: the driver turns it off only when the last applied spec
//! turned it off (recorded as the `deletionProtection` identifier by create and update); then the
//! instance is deleted without a final snapshot. Otherwise a protected instance is refused, and an
//! unprotected one gets a final snapshot `{instance}-final-{unix seconds}`.
//!
//! Observing a plan's instances takes one DescribeDBInstances per hundred of them (a
//! `db-instance-id` filter naming them), which also carries their tags; a single observe names
//! its instance.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_rds::types::{DbInstance, DbSubnetGroup, Tag};
use aws_sdk_rds::Client;
use panka_crds::spec::{RdsEngineType, RdsSpec, StorageType};
use panka_crds::Kind;
use serde_json::{json, Value};

use super::stack::network_subnets;
use super::support::{ensure_ours, is_missing, missing, or_missing, sorted};
use super::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Observe, Outputs,
};
use crate::aws::{self, AwsError};
use crate::secret;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::naming::NameRules;
use panka_core::plan::{DesiredFields, FieldValue, Health, Observation};

/// Backup retention when the spec is silent: the RDS API's own default.
const DEFAULT_RETENTION_DAYS: u32 = 1;
/// When to look again at an instance being created, modified or deleted.
const REQUEUE_AFTER: Duration = Duration::from_secs(15);
/// Instances named in one DescribeDBInstances filter (and the most it returns per page).
const INSTANCES_PER_CALL: usize = 100;
/// Identifier key recording the spec's deletion protection for [`RdsDriver::delete`].
const PROTECTION_KEY: &str = "deletionProtection";
/// RDS's own codes for "no such instance" and "no such subnet group".
const MISSING: &[&str] = &["DBInstanceNotFound", "DBSubnetGroupNotFoundFault"];

/// The RDS driver.
pub struct RdsDriver {
    rds: Client,
    secrets: aws_sdk_secretsmanager::Client,
    ctx: Ctx,
}

impl RdsDriver {
    /// A driver on the shared context.
    pub fn new(ctx: &Ctx) -> RdsDriver {
        RdsDriver {
            rds: counted_client!(ctx, aws_sdk_rds),
            secrets: counted_client!(ctx, aws_sdk_secretsmanager),
            ctx: ctx.clone(),
        }
    }

    /// The DB instance identifier of a component (RDS stores it lowercase).
    pub fn instance_name(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, None, NameRules::DB_INSTANCE)
            .to_lowercase()
    }

    /// The instance a component's record names, else the one its name would be.
    fn recorded_name(
        &self,
        id: &ComponentId,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> String {
        recorded
            .and_then(|r| r.get("name").cloned())
            .unwrap_or_else(|| self.instance_name(id))
    }

    /// What observe reports of a described instance.
    fn observation(&self, id: &ComponentId, db: &DbInstance) -> Observation {
        // DescribeDBInstances answers with the instance's tags: no ListTagsForResource here.
        let tags = tag_map(db.tag_list());
        let mut fields = observed_fields(db);
        fields.insert("tags".into(), self.ctx.tag_policy().field(&tags));
        let Applied {
            mut identifiers,
            outputs,
        } = applied_of(db);
        if let Some(group) = db.db_subnet_group().and_then(|g| g.db_subnet_group_name()) {
            identifiers.insert("subnetGroup".into(), group.to_string());
        }
        let status = db.db_instance_status().unwrap_or("unknown").to_string();
        // On its way out: gone as far as a plan goes (a create waits for it to disappear).
        let leaving = status == "deleting";
        Observation {
            exists: !leaving,
            owned: self.ctx.naming.owns(Some(id), &tags),
            fields,
            identifiers,
            outputs,
            health: if leaving {
                Health::Missing
            } else {
                health(&status)
            },
            status,
            ..Observation::default()
        }
    }

    /// The DB subnet group name of a component (RDS stores it lowercase).
    pub fn subnet_group_name(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, None, NameRules::LONG)
            .to_lowercase()
    }

    async fn instance(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<Option<DbInstance>, DriverError> {
        let out = or_missing(
            self.rds
                .describe_db_instances()
                .db_instance_identifier(name)
                .send()
                .await,
            MISSING,
            "describe DB instance",
            id,
        )?;
        Ok(out.and_then(|out| out.db_instances().first().cloned()))
    }

    async fn subnet_group(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<Option<DbSubnetGroup>, DriverError> {
        let out = or_missing(
            self.rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(name)
                .send()
                .await,
            MISSING,
            "describe DB subnet group",
            id,
        )?;
        Ok(out.and_then(|out| out.db_subnet_groups().first().cloned()))
    }

    async fn tags(
        &self,
        id: &ComponentId,
        arn: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        let out = self
            .rds
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read RDS tags", id, &e))?;
        Ok(tag_map(out.tag_list()))
    }

    /// Makes an RDS resource carry exactly panka's tags (see [`super::support`]).
    async fn converge_tags(
        &self,
        id: &ComponentId,
        arn: &str,
        have: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), have);
        if !changes.set.is_empty() {
            self.rds
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(rds_tags(changes.set)))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag RDS resource", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.rds
                .remove_tags_from_resource()
                .resource_name(arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag RDS resource", id, &e))?;
        }
        Ok(())
    }

    /// Creates the subnet group, or takes ours and converges its subnets and tags.
    async fn ensure_subnet_group(
        &self,
        id: &ComponentId,
        outputs: &Outputs,
    ) -> Result<String, DriverError> {
        let name = self.subnet_group_name(id);
        let subnets = network_subnets(outputs, id)?;
        match self.subnet_group(id, &name).await? {
            None => {
                self.rds
                    .create_db_subnet_group()
                    .db_subnet_group_name(&name)
                    .db_subnet_group_description(format!("panka {id}"))
                    .set_subnet_ids(Some(subnets))
                    .set_tags(Some(rds_tags(self.ctx.tags(id))))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("create DB subnet group", id, &e))?;
            }
            Some(group) => {
                let arn = group.db_subnet_group_arn().unwrap_or_default().to_string();
                let tags = self.tags(id, &arn).await?;
                ensure_ours(&self.ctx, id, &tags, format!("DB subnet group {name}"))?;
                let have = sorted(
                    group
                        .subnets()
                        .iter()
                        .filter_map(|s| s.subnet_identifier().map(str::to_string)),
                );
                if have != subnets {
                    self.rds
                        .modify_db_subnet_group()
                        .db_subnet_group_name(&name)
                        .set_subnet_ids(Some(subnets))
                        .send()
                        .await
                        .map_err(|e| DriverError::aws("update DB subnet group", id, &e))?;
                }
                self.converge_tags(id, &arn, &tags).await?;
            }
        }
        Ok(name)
    }

    /// Reads the master password from its secret (see [`secret::read_password`]).
    async fn password(
        &self,
        id: &ComponentId,
        spec: &RdsSpec,
    ) -> Result<secret::SecretString, DriverError> {
        secret::read_reference(
            &self.secrets,
            &spec.database.password_secret,
            id,
            "master password",
        )
        .await
    }

    async fn create_instance(
        &self,
        id: &ComponentId,
        spec: &RdsSpec,
        name: &str,
        subnet_group: &str,
        password: secret::SecretString,
    ) -> Result<(), DriverError> {
        let networking = self.ctx.infra.networking.clone().unwrap_or_default();
        let backup = spec.backup.clone().unwrap_or_default();
        let result = self
            .rds
            .create_db_instance()
            .db_instance_identifier(name)
            .engine(engine_name(spec.engine.engine_type))
            .engine_version(&spec.engine.version)
            .db_instance_class(&spec.instance.class)
            .allocated_storage(to_i32(spec.instance.storage.allocated_gb))
            .set_max_allocated_storage(spec.instance.storage.max_allocated_gb.map(to_i32))
            .storage_type(storage_type(spec))
            .multi_az(spec.instance.multi_az.unwrap_or(false))
            .db_name(&spec.database.name)
            .master_username(&spec.database.username)
            .master_user_password(password.expose())
            .port(i32::from(port(spec)))
            .backup_retention_period(to_i32(
                backup.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
            ))
            .set_preferred_backup_window(backup.window.clone())
            .deletion_protection(self.protection(spec))
            .db_subnet_group_name(subnet_group)
            .set_vpc_security_group_ids(Some(networking.security_groups).filter(|g| !g.is_empty()))
            .publicly_accessible(false)
            .storage_encrypted(true)
            .set_tags(Some(rds_tags(self.ctx.tags(id))))
            .send()
            .await;
        drop(password);
        match result {
            Ok(_) => Ok(()),
            // Created since we looked: converge() reads it again and checks its tags.
            Err(e) if has_code(&AwsError::from_sdk(&e), "DBInstanceAlreadyExists") => Ok(()),
            Err(e) => Err(DriverError::aws("create DB instance", id, &e)),
        }
    }

    /// Deletion protection the spec asks for: explicit, else on in approval environments.
    fn protection(&self, spec: &RdsSpec) -> bool {
        spec.deletion_protection.unwrap_or_else(|| {
            self.ctx
                .infra
                .approval
                .as_ref()
                .is_some_and(|a| a.environments.contains(&self.ctx.naming.environment))
        })
    }

    /// The compared fields a spec asks for, in the normal form [`observed_fields`] produces.
    fn instance_fields(&self, spec: &RdsSpec) -> Vec<(&'static str, Value, Rule)> {
        let backup = spec.backup.clone().unwrap_or_default();
        let autoscaling = spec.instance.storage.max_allocated_gb.is_some();
        let mut f = vec![
            (
                "engine",
                json!(engine_name(spec.engine.engine_type)),
                Rule::Replace("an instance's engine is fixed at creation"),
            ),
            ("engineVersion", json!(spec.engine.version), Rule::Update),
            ("instanceClass", json!(spec.instance.class), Rule::Update),
            (
                "allocatedGB",
                json!(spec.instance.storage.allocated_gb),
                // Storage autoscaling grows it past the spec: shown, not compared.
                if autoscaling {
                    Rule::Ignore
                } else {
                    Rule::Update
                },
            ),
            (
                "maxAllocatedGB",
                json!(spec.instance.storage.max_allocated_gb),
                Rule::Update,
            ),
            ("storageType", json!(storage_type(spec)), Rule::Update),
            (
                "multiAZ",
                json!(spec.instance.multi_az.unwrap_or(false)),
                Rule::Update,
            ),
            (
                "backup.retentionDays",
                json!(backup.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS)),
                Rule::Update,
            ),
            ("port", json!(port(spec)), Rule::Update),
            (
                "deletionProtection",
                json!(self.protection(spec)),
                Rule::Update,
            ),
            (
                "databaseName",
                json!(spec.database.name),
                Rule::Replace("the initial database is created with the instance"),
            ),
            (
                "masterUsername",
                json!(spec.database.username),
                Rule::Replace("the master user name is fixed at creation"),
            ),
        ];
        if let Some(window) = &backup.window {
            f.push(("backup.window", json!(window), Rule::Update));
        }
        f
    }

    async fn reconcile(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
    ) -> Result<Applied, DriverError> {
        let id = &component.id;
        let spec = spec_of(component)?;
        let name = self.instance_name(id);
        let existing = self.instance(id, &name).await?;
        if existing
            .as_ref()
            .is_some_and(|db| db.db_instance_status() == Some("deleting"))
        {
            // A re-created component: the old instance must be gone first (a replace waits for
            // its delete to finish before it creates).
            return Err(DriverError::StillDeleting {
                component: id.clone(),
                message: format!(
                    "DB instance {name} is still being deleted; apply again once it is gone"
                ),
            });
        }
        if let Some(db) = &existing {
            // Checked before anything else is touched, the subnet group included.
            let tags = self
                .tags(id, db.db_instance_arn().unwrap_or_default())
                .await?;
            ensure_ours(&self.ctx, id, &tags, format!("DB instance {name}"))?;
        }
        let (db, subnet_group) = match existing {
            Some(db) => (db, self.ensure_subnet_group(id, outputs).await?),
            None => {
                // Read first: a wrong secret reference then fails before anything is created.
                let password = self.password(id, spec).await?;
                let subnet_group = self.ensure_subnet_group(id, outputs).await?;
                self.create_instance(id, spec, &name, &subnet_group, password)
                    .await?;
                let db =
                    self.instance(id, &name)
                        .await?
                        .ok_or_else(|| DriverError::Unexpected {
                            component: id.clone(),
                            message: format!("DB instance {name} vanished while being created"),
                        })?;
                (db, subnet_group)
            }
        };
        let arn = db.db_instance_arn().unwrap_or_default().to_string();
        let tags = self.tags(id, &arn).await?;
        ensure_ours(&self.ctx, id, &tags, format!("DB instance {name}"))?;
        self.modify(id, spec, &db).await?;
        self.converge_tags(id, &arn, &tags).await?;
        let db = self.instance(id, &name).await?.unwrap_or(db);
        let mut applied = applied_of(&db);
        applied
            .identifiers
            .insert("subnetGroup".into(), subnet_group);
        applied
            .identifiers
            .insert(PROTECTION_KEY.into(), self.protection(spec).to_string());
        Ok(applied)
    }

    /// One ModifyDBInstance with every in-place field that differs, applied immediately.
    async fn modify(
        &self,
        id: &ComponentId,
        spec: &RdsSpec,
        db: &DbInstance,
    ) -> Result<(), DriverError> {
        let have = observed_fields(db);
        let mut changed = Vec::new();
        for (field, want, rule) in self.instance_fields(spec) {
            if matches!(rule, Rule::Update) && have.get(field) != Some(&FieldValue::Known(want)) {
                changed.push(field);
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let name = db.db_instance_identifier().unwrap_or_default();
        let mut req = self
            .rds
            .modify_db_instance()
            .db_instance_identifier(name)
            .apply_immediately(true);
        let backup = spec.backup.clone().unwrap_or_default();
        for field in &changed {
            req = match *field {
                "engineVersion" => {
                    let current = db.engine_version().unwrap_or_default();
                    let major_change = major(spec.engine.engine_type, current)
                        != major(spec.engine.engine_type, &spec.engine.version);
                    req.engine_version(&spec.engine.version)
                        .allow_major_version_upgrade(major_change)
                }
                "instanceClass" => req.db_instance_class(&spec.instance.class),
                "allocatedGB" => {
                    let current = db.allocated_storage().unwrap_or_default();
                    let want = to_i32(spec.instance.storage.allocated_gb);
                    if want < current {
                        return Err(DriverError::Unexpected {
                            component: id.clone(),
                            message: format!(
                                "allocated storage cannot shrink from {current} GB to {want} GB: RDS only grows storage; keep {current} GB or replace the database by hand (dump, delete, recreate)"
                            ),
                        });
                    }
                    req.allocated_storage(want)
                }
                // RDS turns storage autoscaling off with a maximum of 0.
                "maxAllocatedGB" => req.max_allocated_storage(
                    spec.instance.storage.max_allocated_gb.map_or(0, to_i32),
                ),
                "storageType" => req.storage_type(storage_type(spec)),
                "multiAZ" => req.multi_az(spec.instance.multi_az.unwrap_or(false)),
                "backup.retentionDays" => req.backup_retention_period(to_i32(
                    backup.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
                )),
                "backup.window" => req.set_preferred_backup_window(backup.window.clone()),
                "port" => req.db_port_number(i32::from(port(spec))),
                "deletionProtection" => req.deletion_protection(self.protection(spec)),
                _ => req,
            };
        }
        req.send()
            .await
            .map_err(|e| DriverError::aws("modify DB instance", id, &e))?;
        Ok(())
    }

    async fn delete_subnet_group(&self, id: &ComponentId, name: &str) -> Result<(), DriverError> {
        let Some(group) = self.subnet_group(id, name).await? else {
            return Ok(());
        };
        let tags = self
            .tags(id, group.db_subnet_group_arn().unwrap_or_default())
            .await?;
        if !self.ctx.naming.owns(Some(id), &tags) {
            // Not ours (or adopted without our tags yet): leave it where it is.
            return Ok(());
        }
        or_missing(
            self.rds
                .delete_db_subnet_group()
                .db_subnet_group_name(name)
                .send()
                .await,
            MISSING,
            "delete DB subnet group",
            id,
        )?;
        Ok(())
    }
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    aws::tag_map(tags.iter().map(|t| (t.key(), t.value())))
}

fn rds_tags(tags: BTreeMap<String, String>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// How a field's difference is applied.
enum Rule {
    Update,
    Replace(&'static str),
    Ignore,
}

fn spec_of(component: &DesiredComponent) -> Result<&RdsSpec, DriverError> {
    match &component.spec {
        ComponentSpec::Rds(s) => Ok(s),
        other => Err(DriverError::Unexpected {
            component: component.id.clone(),
            message: format!("the RDS driver was given a {}", other.kind()),
        }),
    }
}

fn has_code(err: &AwsError, code: &str) -> bool {
    err.code.as_deref() == Some(code)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn engine_name(t: RdsEngineType) -> &'static str {
    match t {
        RdsEngineType::Postgres => "postgres",
        RdsEngineType::Mysql => "mysql",
        RdsEngineType::Mariadb => "mariadb",
    }
}

fn storage_type(spec: &RdsSpec) -> &'static str {
    match spec
        .instance
        .storage
        .storage_type
        .unwrap_or(StorageType::Gp3)
    {
        StorageType::Gp2 => "gp2",
        StorageType::Gp3 => "gp3",
        StorageType::Io1 => "io1",
    }
}

/// The spec's port, else the engine's default.
fn port(spec: &RdsSpec) -> u16 {
    spec.database.port.unwrap_or(match spec.engine.engine_type {
        RdsEngineType::Postgres => 5432,
        RdsEngineType::Mysql | RdsEngineType::Mariadb => 3306,
    })
}

/// The major version: `15` of PostgreSQL 15.4 (10 and later), else the first two parts
/// (`9.6`, MySQL `8.0`, MariaDB `10.11`).
fn major(engine: RdsEngineType, version: &str) -> String {
    let mut parts = version.split('.');
    let first = parts.next().unwrap_or_default();
    let postgres_10_plus =
        engine == RdsEngineType::Postgres && first.parse::<u32>().is_ok_and(|n| n >= 10);
    match parts.next() {
        Some(second) if !postgres_10_plus => format!("{first}.{second}"),
        _ => first.to_string(),
    }
}

/// What RDS reports, in the normal form of [`RdsDriver::instance_fields`].
fn observed_fields(db: &DbInstance) -> BTreeMap<String, FieldValue> {
    let port = db
        .endpoint()
        .and_then(|e| e.port())
        .or(db.db_instance_port().filter(|p| *p != 0));
    let fields = [
        ("engine", json!(db.engine())),
        ("engineVersion", json!(db.engine_version())),
        ("instanceClass", json!(db.db_instance_class())),
        ("allocatedGB", json!(db.allocated_storage())),
        ("maxAllocatedGB", json!(db.max_allocated_storage())),
        ("storageType", json!(db.storage_type())),
        ("multiAZ", json!(db.multi_az().unwrap_or(false))),
        ("backup.retentionDays", json!(db.backup_retention_period())),
        ("backup.window", json!(db.preferred_backup_window())),
        ("port", json!(port)),
        (
            "deletionProtection",
            json!(db.deletion_protection().unwrap_or(false)),
        ),
        ("databaseName", json!(db.db_name())),
        ("masterUsername", json!(db.master_username())),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), FieldValue::Known(v)))
        .collect()
}

/// Identifiers and outputs of a described instance.
fn applied_of(db: &DbInstance) -> Applied {
    let mut a = Applied::default();
    let name = db.db_instance_identifier().unwrap_or_default().to_string();
    let arn = db.db_instance_arn().unwrap_or_default().to_string();
    a.identifiers.insert("name".into(), name);
    a.identifiers.insert("arn".into(), arn.clone());
    a.outputs.insert("arn".into(), arn);
    if let Some(address) = db.endpoint().and_then(|e| e.address()) {
        let port = db
            .endpoint()
            .and_then(|e| e.port())
            .or(db.db_instance_port())
            .unwrap_or_default();
        a.outputs.insert("address".into(), address.to_string());
        a.outputs.insert("port".into(), port.to_string());
        // `endpoint` is the host name, as AWS names it, so `DATABASE_HOST ← endpoint` works;
        // the port is its own output.
        a.outputs.insert("endpoint".into(), address.to_string());
    }
    if let Some(db_name) = db.db_name() {
        a.outputs.insert("databaseName".into(), db_name.to_string());
    }
    a
}

fn health(status: &str) -> Health {
    match status {
        "available" => Health::Healthy,
        "creating"
        | "modifying"
        | "backing-up"
        | "upgrading"
        | "rebooting"
        | "configuring-enhanced-monitoring"
        | "storage-optimization"
        | "renaming"
        | "resetting-master-credentials" => Health::Progressing,
        other => Health::Degraded(format!("DB instance is {other}")),
    }
}

#[async_trait]
impl Driver for RdsDriver {
    fn kind(&self) -> Kind {
        Kind::Rds
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
        for (name, value, rule) in self.instance_fields(spec) {
            let value = FieldValue::Known(value);
            match rule {
                Rule::Update => f.set(name, value),
                Rule::Replace(reason) => f.set_replace(name, value, reason),
                Rule::Ignore => f.set_ignored(name, value),
            };
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
        let name = self.recorded_name(id, recorded);
        Ok(match self.instance(id, &name).await? {
            Some(db) => self.observation(id, &db),
            None => missing(),
        })
    }

    /// One DescribeDBInstances per hundred instances (a `db-instance-id` filter) instead of one
    /// per instance; each observation is built as [`RdsDriver::observe`] builds it.
    async fn observe_many(
        &self,
        items: &[Observe],
        _concurrency: usize,
    ) -> Result<Vec<Observation>, DriverError> {
        let names: Vec<String> = items
            .iter()
            // RDS compares identifiers case-insensitively and reports them lowercase.
            .map(|(id, recorded)| self.recorded_name(id, recorded.as_ref()).to_lowercase())
            .collect();
        // Each name once, with the first component asking for it (named in errors).
        let mut unique: BTreeMap<&str, &ComponentId> = BTreeMap::new();
        for ((id, _), name) in items.iter().zip(&names) {
            unique.entry(name.as_str()).or_insert(id);
        }
        let unique: Vec<(&str, &ComponentId)> = unique.into_iter().collect();
        let mut found: BTreeMap<String, DbInstance> = BTreeMap::new();
        for chunk in unique.chunks(INSTANCES_PER_CALL) {
            let id = chunk[0].1;
            let mut pages = self
                .rds
                .describe_db_instances()
                .filters(
                    aws_sdk_rds::types::Filter::builder()
                        .name("db-instance-id")
                        .set_values(Some(chunk.iter().map(|(n, _)| n.to_string()).collect()))
                        .build(),
                )
                .max_records(INSTANCES_PER_CALL as i32)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| DriverError::aws("describe DB instances", id, &e))?;
                for db in page.db_instances() {
                    if let Some(name) = db.db_instance_identifier() {
                        found.insert(name.to_lowercase(), db.clone());
                    }
                }
            }
        }
        Ok(items
            .iter()
            .zip(&names)
            .map(|((id, _), name)| match found.get(name) {
                Some(db) => self.observation(id, db),
                None => missing(),
            })
            .collect())
    }

    /// An instance still to be created needs its master password: a reference to no secret is
    /// refused at plan time, before any change.
    async fn complete(
        &self,
        component: &DesiredComponent,
        _outputs: &Outputs,
        _lookups: &Lookups,
        observed: Observation,
    ) -> Result<Observation, DriverError> {
        if !observed.exists {
            if let Ok(spec) = spec_of(component) {
                secret::require_reference(
                    &self.secrets,
                    &spec.database.password_secret,
                    component,
                    "database.passwordSecret.ref",
                )
                .await?;
            }
        }
        Ok(observed)
    }

    async fn converge(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        _lookups: &Lookups,
    ) -> Result<Applied, DriverError> {
        self.reconcile(component, outputs).await
    }

    async fn delete(
        &self,
        id: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let name = recorded
            .get("name")
            .cloned()
            .unwrap_or_else(|| self.instance_name(id));
        let subnet_group = recorded
            .get("subnetGroup")
            .cloned()
            .unwrap_or_else(|| self.subnet_group_name(id));
        if let Some(db) = self.instance(id, &name).await? {
            let tags = self
                .tags(id, db.db_instance_arn().unwrap_or_default())
                .await?;
            ensure_ours(&self.ctx, id, &tags, format!("DB instance {name}"))?;
            let status = db.db_instance_status().unwrap_or_default();
            if status != "deleting" {
                // What the last applied spec said; unknown (no record) counts as "keep data".
                let spec_unprotected =
                    recorded.get(PROTECTION_KEY).map(String::as_str) == Some("false");
                if db.deletion_protection().unwrap_or(false) {
                    if !spec_unprotected {
                        return Err(DriverError::Unexpected {
                            component: id.clone(),
                            message: format!(
                                "DB instance {name} has deletion protection on; set deletionProtection: false and apply before deleting it"
                            ),
                        });
                    }
                    self.rds
                        .modify_db_instance()
                        .db_instance_identifier(&name)
                        .deletion_protection(false)
                        .apply_immediately(true)
                        .send()
                        .await
                        .map_err(|e| DriverError::aws("turn off deletion protection of", id, &e))?;
                }
                let mut req = self.rds.delete_db_instance().db_instance_identifier(&name);
                req = if spec_unprotected {
                    req.skip_final_snapshot(true)
                } else {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default();
                    req.skip_final_snapshot(false)
                        .final_db_snapshot_identifier(format!("{name}-final-{now}"))
                };
                match req.send().await {
                    Ok(_) => {}
                    Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                    Err(e) => return Err(DriverError::aws("delete DB instance", id, &e)),
                }
            }
            // The subnet group cannot go while the instance uses it: look once more (an
            // instance without data may go at once), else come back later.
            if self.instance(id, &name).await?.is_some() {
                return Ok(Deletion::Progressing {
                    requeue_after: REQUEUE_AFTER,
                    status: format!("DB instance {name} deleting"),
                });
            }
        }
        self.delete_subnet_group(id, &subnet_group).await?;
        Ok(Deletion::Done)
    }

    fn requeue_after(&self) -> Duration {
        REQUEUE_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_follow_each_engines_numbering() {
        assert_eq!(major(RdsEngineType::Postgres, "15.4"), "15");
        assert_eq!(major(RdsEngineType::Postgres, "9.6.22"), "9.6");
        assert_eq!(major(RdsEngineType::Mysql, "8.0.35"), "8.0");
        assert_eq!(major(RdsEngineType::Mariadb, "10.11.6"), "10.11");
        assert_ne!(
            major(RdsEngineType::Postgres, "15.4"),
            major(RdsEngineType::Postgres, "16.1")
        );
    }

    #[test]
    fn health_follows_the_instance_status() {
        assert_eq!(health("available"), Health::Healthy);
        assert_eq!(health("modifying"), Health::Progressing);
        assert!(matches!(health("failed"), Health::Degraded(_)));
    }
}
