//! The stack's ECS task execution role (`_stack/execution-role`): what Fargate needs for the
//! awslogs driver and for `secrets`.
//!
//! The role ([`panka_core::stack::execution_role_name`], path `/panka/`) may be assumed by ECS
//! tasks (`ecs-tasks.amazonaws.com`), has the AWS managed `AmazonECSTaskExecutionRolePolicy`
//! (ECR pulls, CloudWatch Logs), and an inline policy `panka-secrets` allowing
//! `secretsmanager:GetSecretValue` on exactly the secrets the stack's MicroServices and Workers
//! reference (none: no inline policy). A `secretRef` that is an ARN is used as is; a name
//! becomes `arn:aws:secretsmanager:{region}:{account}:secret:{name}-*` (Secrets Manager appends
//! six random characters to a secret's ARN). The account is read from the role's own ARN, so no
//! STS call is needed. Planning is pure and runs before anything is read, so the plan shows the
//! stack's own account as the placeholder [`ACCOUNT_PLACEHOLDER`]; observe writes the resources
//! it reads in that same form.

use std::collections::BTreeMap;

use async_trait::async_trait;
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent};
use panka_core::plan::{DesiredFields, FieldValue, Fields, Health, Observation};
use panka_core::stack::{execution_role_name, ExecutionRoleSpec};
use panka_crds::Kind;
use serde_json::{json, Value};

use super::{execution_role_id, unexpected};
use crate::aws::{self, AwsError};
use crate::driver::support::{ensure_stack_ours, is_missing, missing};
use crate::driver::{
    counted_client, Applied, Ctx, Deletion, Driver, DriverError, Lookups, Outputs,
};

/// Path of the roles panka creates.
pub const ROLE_PATH: &str = "/panka/";
/// The service principal that assumes the execution role.
pub const TASKS_PRINCIPAL: &str = "ecs-tasks.amazonaws.com";
/// Name of the managed policy every execution role has (ECR pulls, CloudWatch Logs).
pub const EXECUTION_POLICY: &str = "service-role/AmazonECSTaskExecutionRolePolicy";
/// Name of the inline policy granting the stack's secrets.
pub const SECRETS_POLICY: &str = "panka-secrets";
/// Stands for the stack's own account in the planned `secretsPolicy` resources: planning is pure
/// and cannot know the account, which apply reads from the role's ARN.
pub const ACCOUNT_PLACEHOLDER: &str = "{account}";

/// The ARN of the managed execution policy in `region`'s partition.
pub fn execution_policy_arn(region: &str) -> String {
    format!(
        "arn:{}:iam::aws:policy/{EXECUTION_POLICY}",
        partition(region)
    )
}

/// The IAM resource of a secret reference: an ARN as is, a name as
/// `arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-*` (pass
/// [`ACCOUNT_PLACEHOLDER`] as `account` for the planned form).
pub fn secret_resource(secret_ref: &str, region: &str, account: &str) -> String {
    if secret_ref.starts_with("arn:") {
        return secret_ref.to_string();
    }
    format!("{}{secret_ref}-*", secret_prefix(region, account))
}

/// Where the ARNs of `account`'s secrets in `region` start.
fn secret_prefix(region: &str, account: &str) -> String {
    format!(
        "arn:{}:secretsmanager:{region}:{account}:secret:",
        partition(region)
    )
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

/// The execution role as found.
#[derive(Debug, Clone)]
struct Role {
    name: String,
    arn: String,
    /// The `trust` field (see [`trust_field`]).
    trust: Value,
    /// Attached managed policy ARNs, sorted.
    managed: Vec<String>,
    /// The inline secrets policy, parsed (a string when it is not JSON); `None`: absent.
    secrets: Option<Value>,
    /// The permissions boundary's policy ARN, if any.
    boundary: Option<String>,
    tags: BTreeMap<String, String>,
}

impl Role {
    /// The account, from the ARN `arn:{partition}:iam::{account}:role/{path}{name}`.
    fn account(&self) -> &str {
        self.arn.split(':').nth(4).unwrap_or_default()
    }

    /// The fields observe reports, in the normal form of [`RoleDriver`]'s `desired`, but for
    /// the tags (which the stack's tag policy reduces).
    fn fields(&self, region: &str) -> Fields {
        let mut f = Fields::new();
        f.insert("trust".into(), FieldValue::Known(self.trust.clone()));
        f.insert("managedPolicies".into(), FieldValue::known(&self.managed));
        f.insert(
            "secretsPolicy".into(),
            FieldValue::Known(secrets_field(self.secrets.as_ref(), region, self.account())),
        );
        f.insert(
            "permissionsBoundary".into(),
            FieldValue::known(self.boundary.as_deref()),
        );
        f
    }

    fn applied(&self) -> Applied {
        let outputs = BTreeMap::from([
            ("arn".to_string(), self.arn.clone()),
            ("name".to_string(), self.name.clone()),
        ]);
        Applied {
            identifiers: outputs.clone(),
            outputs,
        }
    }
}

/// Driver of the ExecutionRole kind.
#[derive(Debug)]
pub struct RoleDriver {
    ctx: Ctx,
    iam: aws_sdk_iam::Client,
}

fn spec_of(component: &DesiredComponent) -> Result<&ExecutionRoleSpec, DriverError> {
    match &component.spec {
        ComponentSpec::ExecutionRole(s) => Ok(s),
        other => Err(unexpected(
            &component.id,
            format!("the ExecutionRole driver was given a {}", other.kind()),
        )),
    }
}

impl RoleDriver {
    /// A driver on `ctx`; its client counts calls in `ctx.calls`.
    pub fn new(ctx: &Ctx) -> RoleDriver {
        RoleDriver {
            ctx: ctx.clone(),
            iam: counted_client!(ctx, aws_sdk_iam),
        }
    }

    fn region(&self) -> String {
        self.ctx
            .sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The role with its trust policy, managed policies, secrets policy and tags, if it
    /// exists: GetRole (tags included), ListAttachedRolePolicies, GetRolePolicy.
    async fn find(&self, name: &str) -> Result<Option<Role>, DriverError> {
        let id = execution_role_id();
        let Some(mut role) = self.read(name).await? else {
            return Ok(None);
        };
        role.managed = self.attached_policies(name).await?.unwrap_or_default();
        role.managed.sort();
        role.secrets = match self
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(SECRETS_POLICY)
            .send()
            .await
        {
            Ok(o) => Some(policy_json(o.policy_document())),
            Err(e) if is_iam_missing(&e) => None,
            Err(e) => return Err(DriverError::aws("read IAM role policy", &id, &e)),
        };
        Ok(Some(role))
    }

    /// The role's ARN, trust and tags (GetRole alone); policies are left empty.
    async fn read(&self, name: &str) -> Result<Option<Role>, DriverError> {
        let out = match self.iam.get_role().role_name(name).send().await {
            Ok(o) => o,
            Err(e) if is_iam_missing(&e) => return Ok(None),
            Err(e) => return Err(DriverError::aws("read IAM role", &execution_role_id(), &e)),
        };
        let Some(role) = out.role() else {
            return Ok(None);
        };
        Ok(Some(Role {
            name: role.role_name().to_string(),
            arn: role.arn().to_string(),
            trust: role
                .assume_role_policy_document()
                .map_or(Value::Null, |d| trust_field(&policy_json(d))),
            managed: Vec::new(),
            secrets: None,
            boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_string),
            tags: aws::tag_map(role.tags().iter().map(|t| (Some(t.key()), Some(t.value())))),
        }))
    }

    /// ARNs of the managed policies attached to a role; `None`: the role does not exist.
    async fn attached_policies(&self, name: &str) -> Result<Option<Vec<String>>, DriverError> {
        let listed = self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await;
        match listed {
            Ok(policies) => Ok(Some(
                policies
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string))
                    .collect(),
            )),
            Err(e) if is_iam_missing(&e) => Ok(None),
            Err(e) => Err(DriverError::aws(
                "list IAM role policies",
                &execution_role_id(),
                &e,
            )),
        }
    }

    /// Creates the role with its trust policy, permissions boundary and tags; `None` when a
    /// role of that name appeared since it was looked up.
    async fn create(
        &self,
        name: &str,
        boundary: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<Option<Role>, DriverError> {
        let id = execution_role_id();
        let out = match self
            .iam
            .create_role()
            .role_name(name)
            .path(ROLE_PATH)
            .assume_role_policy_document(trust_document(TASKS_PRINCIPAL).to_string())
            .description(format!(
                "ECS task execution role of panka stack {} ({})",
                self.ctx.naming.stack, self.ctx.naming.environment
            ))
            .set_permissions_boundary(boundary.map(str::to_string))
            .set_tags(Some(iam_tags(&id, tags.iter())?))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if AwsError::from_sdk(&e).code.as_deref() == Some("EntityAlreadyExists") => {
                return Ok(None)
            }
            Err(e) => return Err(DriverError::aws("create IAM role", &id, &e)),
        };
        let role = out
            .role()
            .ok_or_else(|| unexpected(&id, format!("IAM returned no role for {name}")))?;
        Ok(Some(Role {
            name: role.role_name().to_string(),
            arn: role.arn().to_string(),
            trust: Value::String(TASKS_PRINCIPAL.into()),
            managed: Vec::new(),
            secrets: None,
            boundary: boundary.map(str::to_string),
            tags: tags.clone(),
        }))
    }

    /// Sets the permissions boundary the spec names, before any policy is written (a boundary
    /// condition on panka's own IAM policy allows policies only on roles that carry it). A
    /// spec that names none leaves the role's as it is.
    async fn converge_boundary(&self, role: &Role, want: Option<&str>) -> Result<(), DriverError> {
        let Some(want) = want.filter(|w| role.boundary.as_deref() != Some(*w)) else {
            return Ok(());
        };
        self.iam
            .put_role_permissions_boundary()
            .role_name(&role.name)
            .permissions_boundary(want)
            .send()
            .await
            .map_err(|e| {
                DriverError::aws(
                    "set IAM role permissions boundary",
                    &execution_role_id(),
                    &e,
                )
            })?;
        Ok(())
    }

    /// Makes the role carry exactly panka's tags (see [`crate::driver::support`]).
    async fn converge_tags(
        &self,
        role: &Role,
        want: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let id = execution_role_id();
        let changes = self.ctx.tag_policy().changes(want, &role.tags);
        if !changes.set.is_empty() {
            self.iam
                .tag_role()
                .role_name(&role.name)
                .set_tags(Some(iam_tags(&id, changes.set.iter())?))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag IAM role", &id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.iam
                .untag_role()
                .role_name(&role.name)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag IAM role", &id, &e))?;
        }
        Ok(())
    }

    /// Attaches the managed execution policy and detaches any other.
    async fn converge_managed(&self, role: &Role) -> Result<(), DriverError> {
        let id = execution_role_id();
        let want = [execution_policy_arn(&self.region())];
        for arn in want.iter().filter(|a| !role.managed.contains(a)) {
            self.iam
                .attach_role_policy()
                .role_name(&role.name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("attach IAM role policy", &id, &e))?;
        }
        for arn in role.managed.iter().filter(|a| !want.contains(a)) {
            self.iam
                .detach_role_policy()
                .role_name(&role.name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("detach IAM role policy", &id, &e))?;
        }
        Ok(())
    }

    /// Writes the secrets policy when it differs; deletes it when the stack has no secrets.
    async fn converge_secrets(&self, role: &Role, refs: &[String]) -> Result<(), DriverError> {
        let id = execution_role_id();
        let name = &role.name;
        if refs.iter().any(|r| !r.starts_with("arn:")) && role.account().is_empty() {
            return Err(unexpected(
                &id,
                format!(
                    "cannot read the account from the ARN {} of IAM role {name}",
                    role.arn
                ),
            ));
        }
        let region = self.region();
        let mut resources: Vec<String> = refs
            .iter()
            .map(|r| secret_resource(r, &region, role.account()))
            .collect();
        resources.sort();
        resources.dedup();
        if resources.is_empty() {
            if role.secrets.is_some() {
                self.delete_inline(name, SECRETS_POLICY).await?;
            }
            return Ok(());
        }
        let document = secrets_document(&resources);
        if role.secrets.as_ref() != Some(&document) {
            self.iam
                .put_role_policy()
                .role_name(name)
                .policy_name(SECRETS_POLICY)
                .policy_document(document.to_string())
                .send()
                .await
                .map_err(|e| DriverError::aws("put IAM role policy", &id, &e))?;
        }
        Ok(())
    }

    /// Deletes an inline policy; "not found" counts as done.
    async fn delete_inline(&self, role: &str, policy: &str) -> Result<(), DriverError> {
        match self
            .iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_iam_missing(&e) => Ok(()),
            Err(e) => Err(DriverError::aws(
                "delete IAM role policy",
                &execution_role_id(),
                &e,
            )),
        }
    }
}

#[async_trait]
impl Driver for RoleDriver {
    fn kind(&self) -> Kind {
        Kind::ExecutionRole
    }

    fn desired(&self, component: &DesiredComponent, _: &Outputs, _: &Lookups) -> DesiredFields {
        let mut f = DesiredFields::default();
        let Ok(spec) = spec_of(component) else {
            return f;
        };
        let region = self.region();
        f.set("trust", FieldValue::known(TASKS_PRINCIPAL));
        f.set(
            "managedPolicies",
            FieldValue::known([execution_policy_arn(&region)]),
        );
        let mut secrets: Vec<String> = spec
            .secret_refs
            .iter()
            .map(|r| secret_resource(r, &region, ACCOUNT_PLACEHOLDER))
            .collect();
        secrets.sort();
        secrets.dedup();
        f.set("secretsPolicy", FieldValue::known(secrets));
        // Compared only when the stack names one: a boundary set by the platform team's own
        // tooling is theirs.
        if let Some(boundary) = &spec.permissions_boundary {
            f.set("permissionsBoundary", FieldValue::known(boundary));
        }
        f.set("tags", self.ctx.tag_policy().field(&self.ctx.stack_tags()));
        f
    }

    async fn observe(
        &self,
        _: &ComponentId,
        _: Option<&BTreeMap<String, String>>,
    ) -> Result<Observation, DriverError> {
        let Some(role) = self.find(&execution_role_name(&self.ctx.naming)).await? else {
            return Ok(missing());
        };
        let mut fields = role.fields(&self.region());
        fields.insert("tags".into(), self.ctx.tag_policy().field(&role.tags));
        let a = role.applied();
        Ok(Observation {
            exists: true,
            owned: self.ctx.naming.owns(None, &role.tags),
            fields,
            identifiers: a.identifiers,
            outputs: a.outputs,
            health: Health::Healthy,
            status: role.arn,
            ..Observation::default()
        })
    }

    /// Creates the role or converges it: tags, trust, managed policies, and the secrets policy
    /// (written only when it differs, deleted when the stack has no secrets).
    async fn converge(
        &self,
        component: &DesiredComponent,
        _: &Outputs,
        _: &Lookups,
    ) -> Result<Applied, DriverError> {
        let id = execution_role_id();
        let spec = spec_of(component)?;
        let name = &spec.name;
        let want_tags = self.ctx.stack_tags();
        let role = match self.find(name).await? {
            Some(r) => r,
            None => match self
                .create(name, spec.permissions_boundary.as_deref(), &want_tags)
                .await?
            {
                Some(r) => r,
                // Created by someone else since we looked: converge what is there now.
                None => self.find(name).await?.ok_or_else(|| {
                    unexpected(&id, format!("IAM role {name} both exists and does not"))
                })?,
            },
        };
        ensure_stack_ours(&self.ctx, &id, &role.tags, format!("IAM role {name}"))?;
        self.converge_boundary(&role, spec.permissions_boundary.as_deref())
            .await?;
        self.converge_tags(&role, &want_tags).await?;
        if role.trust != Value::String(TASKS_PRINCIPAL.into()) {
            self.iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(trust_document(TASKS_PRINCIPAL).to_string())
                .send()
                .await
                .map_err(|e| DriverError::aws("set IAM role trust policy", &id, &e))?;
        }
        self.converge_managed(&role).await?;
        self.converge_secrets(&role, &spec.secret_refs).await?;
        Ok(role.applied())
    }

    /// Detaches the role's managed policies, deletes its inline ones, then the role; only a
    /// role tagged as ours. "Not found" at any step counts as done.
    async fn delete(
        &self,
        _: &ComponentId,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Deletion, DriverError> {
        let id = execution_role_id();
        let name = recorded
            .get("name")
            .cloned()
            .unwrap_or_else(|| execution_role_name(&self.ctx.naming));
        let Some(role) = self.read(&name).await? else {
            return Ok(Deletion::Done);
        };
        if !self.ctx.naming.owns(None, &role.tags) {
            // Not made by panka (or adopted and untagged since): leave it to whoever owns it.
            tracing::info!(role = %name, "keeping an IAM role panka does not own");
            return Ok(Deletion::Done);
        }
        for arn in self.attached_policies(&name).await?.unwrap_or_default() {
            match self
                .iam
                .detach_role_policy()
                .role_name(&name)
                .policy_arn(&arn)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_iam_missing(&e) => {}
                Err(e) => return Err(DriverError::aws("detach IAM role policy", &id, &e)),
            }
        }
        let inline = match self
            .iam
            .list_role_policies()
            .role_name(&name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
        {
            Ok(names) => names,
            Err(e) if is_iam_missing(&e) => return Ok(Deletion::Done),
            Err(e) => return Err(DriverError::aws("list IAM role policies", &id, &e)),
        };
        for policy in inline {
            self.delete_inline(&name, &policy).await?;
        }
        match self.iam.delete_role().role_name(&name).send().await {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if is_iam_missing(&e) => Ok(Deletion::Done),
            Err(e) => Err(DriverError::aws("delete IAM role", &id, &e)),
        }
    }
}

/// Whether an IAM error means "does not exist" (`NoSuchEntity`).
fn is_iam_missing<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::aws::HttpStatus,
{
    is_missing(&AwsError::from_sdk(e), &["NoSuchEntity"])
}

/// The trust policy letting the service `principal` assume a role.
fn trust_document(principal: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": principal },
            "Action": "sts:AssumeRole",
        }],
    })
}

/// The inline policy allowing the secrets `resources` to be read.
fn secrets_document(resources: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadStackSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": resources,
        }],
    })
}

/// A policy document as IAM returns it: URL-encoded (RFC 3986) by AWS, plain JSON by some
/// emulators. Not JSON at all: the text, so a comparison shows it as it is.
fn policy_json(raw: &str) -> Value {
    let text = raw.trim();
    let decoded = if text.starts_with('{') {
        text.to_string()
    } else {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

/// The `trust` field of a trust policy: the service principal when the document is exactly
/// the one panka writes for it, else the whole document (so a diff shows what is there).
fn trust_field(doc: &Value) -> Value {
    match doc
        .pointer("/Statement/0/Principal/Service")
        .and_then(Value::as_str)
    {
        Some(service) if *doc == trust_document(service) => Value::String(service.to_string()),
        _ => doc.clone(),
    }
}

/// The `secretsPolicy` field of an inline secrets policy: `[]` when absent; the sorted
/// resources, with `account`'s own secret patterns in the planned form (see
/// [`ACCOUNT_PLACEHOLDER`]), when the document is exactly the one panka writes; else the whole
/// document.
fn secrets_field(doc: Option<&Value>, region: &str, account: &str) -> Value {
    let Some(doc) = doc else {
        return json!([]);
    };
    let resources: Option<Vec<String>> = doc
        .pointer("/Statement/0/Resource")
        .and_then(Value::as_array)
        .and_then(|r| r.iter().map(|v| v.as_str().map(str::to_string)).collect());
    let Some(resources) = resources.filter(|r| *doc == secrets_document(r)) else {
        return doc.clone();
    };
    let own = secret_prefix(region, account);
    let planned = secret_prefix(region, ACCOUNT_PLACEHOLDER);
    let mut out: Vec<String> = resources
        .into_iter()
        .map(|r| match r.strip_prefix(&own) {
            Some(name) if !account.is_empty() && name.ends_with("-*") => {
                format!("{planned}{name}")
            }
            _ => r,
        })
        .collect();
    out.sort();
    json!(out)
}

/// IAM tags from key/value pairs.
fn iam_tags<'a>(
    id: &ComponentId,
    tags: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<aws_sdk_iam::types::Tag>, DriverError> {
    tags.map(|(k, v)| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .map_err(|e| unexpected(id, format!("failed to build IAM tag {k}: {e}")))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_references_become_exact_resources() {
        let cases = [
            (
                "/stacks/shop/db",
                "us-east-1",
                "123456789012",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:/stacks/shop/db-*",
            ),
            (
                "arn:aws:secretsmanager:eu-west-1:210987654321:secret:x-AbCdEf",
                "us-east-1",
                "123456789012",
                "arn:aws:secretsmanager:eu-west-1:210987654321:secret:x-AbCdEf",
            ),
            (
                "db",
                "cn-north-1",
                ACCOUNT_PLACEHOLDER,
                "arn:aws-cn:secretsmanager:cn-north-1:{account}:secret:db-*",
            ),
        ];
        for (secret, region, account, want) in cases {
            assert_eq!(secret_resource(secret, region, account), want, "{secret}");
        }
        assert_eq!(
            execution_policy_arn("us-east-1"),
            "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
        );
    }

    #[test]
    fn policy_documents_are_read_url_encoded_or_plain() {
        let doc = trust_document(TASKS_PRINCIPAL);
        let encoded = doc
            .to_string()
            .replace('%', "%25")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace(':', "%3A")
            .replace(',', "%2C");
        assert_eq!(policy_json(&encoded), doc);
        assert_eq!(policy_json(&doc.to_string()), doc);
        assert_eq!(policy_json("%7Bbroken"), Value::String("{broken".into()));
        assert_eq!(policy_json("100%"), Value::String("100%".into()));
    }

    #[test]
    fn only_panka_shaped_policies_reduce_to_their_fields() {
        assert_eq!(
            trust_field(&trust_document(TASKS_PRINCIPAL)),
            Value::String(TASKS_PRINCIPAL.into())
        );
        let mut widened = trust_document(TASKS_PRINCIPAL);
        widened["Statement"][0]["Principal"] = json!({"AWS": "*"});
        assert_eq!(trust_field(&widened), widened);

        let own = "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-*".to_string();
        let other = "arn:aws:secretsmanager:us-east-1:999999999999:secret:b-XyZ123".to_string();
        let doc = secrets_document(&[own, other.clone()]);
        assert_eq!(
            secrets_field(Some(&doc), "us-east-1", "123456789012"),
            json!([
                other,
                "arn:aws:secretsmanager:us-east-1:{account}:secret:a-*"
            ])
        );
        assert_eq!(secrets_field(None, "us-east-1", "123456789012"), json!([]));
        let mut broadened = doc.clone();
        broadened["Statement"][0]["Action"] = json!("secretsmanager:*");
        assert_eq!(
            secrets_field(Some(&broadened), "us-east-1", "123456789012"),
            broadened
        );
    }
}
