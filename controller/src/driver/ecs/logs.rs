//! Stages **observe** and **apply** of a component's CloudWatch Logs group
//! (`naming.log_group(id)`): its retention (the stack's `logging.retentionDays`) and its tags
//! (CloudWatch Logs tag calls go through [`EcsDriver::retag_log_group`]).

use std::collections::{BTreeMap, HashMap};

use super::observe::Batch;
use super::{is_code, EcsDriver, MISSING};
use crate::aws::AwsError;
use crate::driver::support::{ensure_ours, is_missing, or_missing, TagChanges};
use crate::driver::DriverError;
use panka_core::model::ComponentId;

impl EcsDriver {
    /// `Some(retention)` when the log group exists.
    pub(super) async fn log_retention(
        &self,
        id: &ComponentId,
        name: &str,
        batch: &Batch,
    ) -> Result<Option<Option<u32>>, DriverError> {
        if let Some(groups) = &batch.log_groups {
            if name.starts_with(&groups.0) {
                return Ok(groups.1.get(name).copied());
            }
        }
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .map_err(|e| DriverError::aws("read log group", id, &e))?;
        Ok(out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .map(|g| g.retention_in_days().and_then(|d| u32::try_from(d).ok())))
    }

    /// Creates the log group if needed and sets its retention; `true` when it created it (with
    /// panka's tags).
    pub(super) async fn ensure_log_group(
        &self,
        id: &ComponentId,
        name: &str,
        want: Option<u32>,
        have: Option<Option<u32>>,
    ) -> Result<bool, DriverError> {
        let mut current = have;
        let mut created = false;
        if current.is_none() {
            let tags: HashMap<String, String> = self.ctx.tags(id).into_iter().collect();
            match self
                .logs
                .create_log_group()
                .log_group_name(name)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => {
                    current = Some(None);
                    created = true;
                }
                // Left by an earlier, interrupted apply: its retention is unknown, so set it.
                Err(e) if is_code(&e, "ResourceAlreadyExistsException") => {}
                Err(e) => return Err(DriverError::aws("create log group", id, &e)),
            }
        }
        if current == Some(want) {
            return Ok(created);
        }
        match want {
            Some(days) => {
                self.logs
                    .put_retention_policy()
                    .log_group_name(name)
                    .retention_in_days(i32::try_from(days).unwrap_or(i32::MAX))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("set log retention", id, &e))?;
            }
            None => {
                or_missing(
                    self.logs
                        .delete_retention_policy()
                        .log_group_name(name)
                        .send()
                        .await,
                    MISSING,
                    "remove log retention",
                    id,
                )?;
            }
        }
        Ok(created)
    }

    /// Makes the log group carry exactly panka's tags (see [`super::support`]), refusing one
    /// that is not ours. Plans do not compare them (CloudWatch Logs reads tags one group at a
    /// time, which would add a call per component to every plan), so every apply of the
    /// component does this. A group that does not exist has nothing to tag.
    pub(super) async fn converge_log_group_tags(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<(), DriverError> {
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .map_err(|e| DriverError::aws("read log group", id, &e))?;
        let Some(arn) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .and_then(|g| g.log_group_arn())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let have: BTreeMap<String, String> = self
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read log group tags", id, &e))?
            .tags()
            .map(|t| t.clone().into_iter().collect())
            .unwrap_or_default();
        ensure_ours(&self.ctx, id, &have, format!("log group {name}"))?;
        let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), &have);
        self.retag_log_group(id, &arn, changes).await
    }

    /// Sends `changes` (see [`crate::driver::support::TagPolicy::changes`]) to a log group: every
    /// CloudWatch Logs tag call of this driver goes through here.
    async fn retag_log_group(
        &self,
        id: &ComponentId,
        arn: &str,
        changes: TagChanges,
    ) -> Result<(), DriverError> {
        if !changes.set.is_empty() {
            self.logs
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(changes.set.into_iter().collect()))
                .send()
                .await
                .map_err(|e| DriverError::aws("tag log group", id, &e))?;
        }
        if !changes.remove.is_empty() {
            self.logs
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(changes.remove))
                .send()
                .await
                .map_err(|e| DriverError::aws("untag log group", id, &e))?;
        }
        Ok(())
    }

    /// Deletes the log group; one already gone is done.
    pub(super) async fn delete_log_group(
        &self,
        id: &ComponentId,
        name: &str,
    ) -> Result<(), DriverError> {
        match self
            .logs
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => Ok(()),
            Err(e) => Err(DriverError::aws("delete log group", id, &e)),
        }
    }
}
