//! [`LockBackend`] on a DynamoDB table (partition key `lockKey`, TTL on `expiresAt`).
//!
//! Items:
//!
//! - `stack:{s}:env:{e}` — the stack item. While a stack-scoped lock is held it has `lockId`,
//!   `lockedBy`, `operation`, `lockedAt`, `lastHeartbeat`, `expiresAt` and `fence`. It always
//!   keeps `fenceCounter`, the highest fence granted on this stack/environment in any scope, and
//!   an index of service-scoped grants: the string set `serviceHolders` plus one map attribute
//!   `service:{svc}` = `{lockId, lockedBy, operation, lockedAt, expiresAt, fence}` per service.
//!   Releasing removes the holder fields, never the item, so the fence counter survives.
//! - `stack:{s}:env:{e}:service:{svc}` — a service-scoped lock with the same holder fields,
//!   deleted on release.
//!
//! Every operation is a single request, so acquire + release costs the same round trips as a
//! bare put + delete:
//!
//! - stack acquire: one `UpdateItem` on the stack item, conditioned on no live stack holder, no
//!   service grant at all (or, on a retry, exactly the expired ones it names and removes), and
//!   `fenceCounter < :fence`;
//! - service acquire: one `TransactWriteItems` that updates the stack item (no live stack
//!   holder, this service's index entry absent or expired, `fenceCounter < :fence`; adds the
//!   entry, raises the counter, clears an expired stack holder) and puts the service item
//!   (absent or expired).
//!
//! Because a stack grant requires every index entry to be expired and a service grant requires
//! the stack holder to be absent or expired, both checked inside the write, the two scopes
//! exclude each other with no window. Fences are proposed by the acquirer (time-based, see
//! [`super::propose_fence`]) and the condition `fenceCounter < :fence` makes them strictly
//! increasing per stack/environment; when it fails the acquirer retries above the counter.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{
    expiry, now_epoch_secs, propose_fence, LockBackend, LockError, LockInfo, LockRequest,
    LockScope, LockTarget,
};
use crate::aws::{AwsError, ErrorClass, HttpStatus};

/// Partition key attribute.
pub const KEY: &str = "lockKey";
const LOCK_ID: &str = "lockId";
const LOCKED_BY: &str = "lockedBy";
const OPERATION: &str = "operation";
const LOCKED_AT: &str = "lockedAt";
const LAST_HEARTBEAT: &str = "lastHeartbeat";
/// Expiry attribute (epoch seconds), also the table's TTL attribute.
pub const EXPIRES_AT: &str = "expiresAt";
const FENCE: &str = "fence";
const FENCE_COUNTER: &str = "fenceCounter";
const SERVICE_HOLDERS: &str = "serviceHolders";

/// How many conditional attempts one `try_acquire` makes before reporting contention.
const ATTEMPTS: usize = 8;

type Item = HashMap<String, AttributeValue>;

/// Locks in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbLocks {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbLocks {
    /// Locks in `table` through `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoDbLocks {
        DynamoDbLocks {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn aws_err(&self, op: &'static str, key: &str, source: AwsError) -> LockError {
        LockError::Aws {
            op,
            key: key.to_owned(),
            location: self.location(),
            source: Box::new(source),
        }
    }

    async fn get_item(&self, key: &str) -> Result<Option<Item>, LockError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.aws_err("read", key, AwsError::from_sdk(&e)))?;
        Ok(out.item)
    }

    async fn acquire_stack(&self, req: &LockRequest) -> Result<LockInfo, LockError> {
        let key = req.target.key();
        let lock_id = uuid::Uuid::new_v4().to_string();
        let mut fence = propose_fence(0);
        let mut expired: Vec<String> = Vec::new();
        for _ in 0..ATTEMPTS {
            let now = now_epoch_secs();
            let exp = expiry(now, req.lease);
            let mut x = Expr::default();
            let svc_cond = if expired.is_empty() {
                format!("attribute_not_exists({})", x.n(SERVICE_HOLDERS))
            } else {
                // Exactly these grants, all expired; a new or renewed one fails the condition.
                let mut parts = vec![format!(
                    "size({}) = {}",
                    x.n(SERVICE_HOLDERS),
                    x.v(":nsvc", n(expired.len()))
                )];
                for (i, svc) in expired.iter().enumerate() {
                    let ph = x.n_as(&format!("#s{i}"), &service_attr(svc));
                    parts.push(format!(
                        "(attribute_not_exists({ph}) OR {ph}.{} <= :now)",
                        x.n(EXPIRES_AT)
                    ));
                }
                parts.join(" AND ")
            };
            let cond = format!(
                "(attribute_not_exists({lid}) OR {exp_at} <= {now}) AND \
                 (attribute_not_exists({fc}) OR {fc} < {fence}) AND {svc_cond}",
                lid = x.n(LOCK_ID),
                exp_at = x.n(EXPIRES_AT),
                now = x.v(":now", n(now)),
                fc = x.n(FENCE_COUNTER),
                fence = x.v(":fence", n(fence)),
            );
            let mut update = format!(
                "SET {} = {}, {} = {}, {} = {}, {} = :now, {} = :now, {} = {}, {} = :fence, {} = :fence",
                x.n(LOCK_ID),
                x.v(":id", s(&lock_id)),
                x.n(LOCKED_BY),
                x.v(":by", s(&req.holder)),
                x.n(OPERATION),
                x.v(":op", s(&req.operation)),
                x.n(LOCKED_AT),
                x.n(LAST_HEARTBEAT),
                x.n(EXPIRES_AT),
                x.v(":exp", n(exp)),
                x.n(FENCE),
                x.n(FENCE_COUNTER),
            );
            if !expired.is_empty() {
                let attrs: Vec<String> = (0..expired.len()).map(|i| format!("#s{i}")).collect();
                update.push_str(&format!(
                    " REMOVE {} DELETE {} {}",
                    attrs.join(", "),
                    x.n(SERVICE_HOLDERS),
                    x.v(":expired", AttributeValue::Ss(expired.clone()))
                ));
            }
            let old = match self
                .update_item(&key, update, cond, x)
                .await
                .map_err(|e| self.aws_err("acquire", &key, e))?
            {
                Ok(()) => return Ok(granted(req, lock_id, now, exp, fence)),
                Err(old) => old,
            };
            // Older DynamoDB-compatible stores may not return the item: read it.
            let old = match old {
                Some(item) => item,
                None => self.get_item(&key).await?.unwrap_or_default(),
            };
            let now = now_epoch_secs();
            if let Some(holder) = stack_holder(&req.target, &old).filter(|h| !h.is_expired_at(now))
            {
                return Err(LockError::Held {
                    requested: key,
                    holder: Box::new(holder),
                });
            }
            let entries = service_entries(&req.target, &old);
            if let Some(live) = entries.iter().find(|e| !e.is_expired_at(now)) {
                return Err(LockError::Held {
                    requested: key,
                    holder: Box::new(live.clone()),
                });
            }
            expired = entries
                .iter()
                .filter_map(|e| match &e.target.scope {
                    LockScope::Service(svc) => Some(svc.clone()),
                    LockScope::Stack => None,
                })
                .collect();
            let counter = get_u64(&old, FENCE_COUNTER).unwrap_or(0);
            if counter >= fence {
                fence = propose_fence(counter.saturating_add(1));
            }
        }
        Err(LockError::Busy { key })
    }

    async fn acquire_service(&self, req: &LockRequest, svc: &str) -> Result<LockInfo, LockError> {
        let key = req.target.key();
        let stack_key = req.target.stack_key();
        let lock_id = uuid::Uuid::new_v4().to_string();
        let mut fence = propose_fence(0);
        for attempt in 0..ATTEMPTS {
            let now = now_epoch_secs();
            let exp = expiry(now, req.lease);
            let entry = AttributeValue::M(HashMap::from([
                (LOCK_ID.to_owned(), s(&lock_id)),
                (LOCKED_BY.to_owned(), s(&req.holder)),
                (OPERATION.to_owned(), s(&req.operation)),
                (LOCKED_AT.to_owned(), n(now)),
                (EXPIRES_AT.to_owned(), n(exp)),
                (FENCE.to_owned(), n(fence)),
            ]));

            let mut x = Expr::default();
            let svc_ph = x.n_as("#svc", &service_attr(svc));
            let cond = format!(
                "(attribute_not_exists({lid}) OR {exp_at} <= {now}) AND \
                 (attribute_not_exists({fc}) OR {fc} < {fence}) AND \
                 (attribute_not_exists({svc_ph}) OR {svc_ph}.{exp_at} <= {now})",
                lid = x.n(LOCK_ID),
                exp_at = x.n(EXPIRES_AT),
                now = x.v(":now", n(now)),
                fc = x.n(FENCE_COUNTER),
                fence = x.v(":fence", n(fence)),
            );
            // Clearing an expired stack holder here keeps the invariant that the stack item
            // carries `expiresAt` (and so can be deleted by TTL) only while no service is live.
            let update = format!(
                "SET {fc} = :fence, {svc_ph} = {entry} ADD {sh} {set} \
                 REMOVE {lid}, {by}, {op}, {at}, {hb}, {exp_at}",
                fc = x.n(FENCE_COUNTER),
                entry = x.v(":entry", entry),
                sh = x.n(SERVICE_HOLDERS),
                set = x.v(":svcset", AttributeValue::Ss(vec![svc.to_owned()])),
                lid = x.n(LOCK_ID),
                by = x.n(LOCKED_BY),
                op = x.n(OPERATION),
                at = x.n(LOCKED_AT),
                hb = x.n(LAST_HEARTBEAT),
                exp_at = x.n(EXPIRES_AT),
            );
            let stack_update = self.transact_update(&stack_key, update, cond, x)?;

            let mut y = Expr::default();
            let put_cond = format!(
                "attribute_not_exists({}) OR {} <= {}",
                y.n(LOCK_ID),
                y.n(EXPIRES_AT),
                y.v(":now", n(now))
            );
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(HashMap::from([
                    (KEY.to_owned(), s(&key)),
                    (LOCK_ID.to_owned(), s(&lock_id)),
                    (LOCKED_BY.to_owned(), s(&req.holder)),
                    (OPERATION.to_owned(), s(&req.operation)),
                    (LOCKED_AT.to_owned(), n(now)),
                    (LAST_HEARTBEAT.to_owned(), n(now)),
                    (EXPIRES_AT.to_owned(), n(exp)),
                    (FENCE.to_owned(), n(fence)),
                ])))
                .condition_expression(put_cond)
                .set_expression_attribute_names(Some(y.names))
                .set_expression_attribute_values(Some(y.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| self.build_err(&key, e))?;

            let reasons = match self
                .transact(vec![
                    stack_update,
                    TransactWriteItem::builder().put(put).build(),
                ])
                .await
                .map_err(|e| self.aws_err("acquire", &key, e))?
            {
                Ok(()) => return Ok(granted(req, lock_id, now, exp, fence)),
                Err(c) => c.reasons,
            };
            if !refused_by_condition(&reasons) {
                // Another transaction touched these items at the same moment: try again.
                tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1))).await;
                continue;
            }
            let stack_item = match reasons.first().and_then(|r| r.item.clone()) {
                Some(item) => item,
                None => self.get_item(&stack_key).await?.unwrap_or_default(),
            };
            let svc_item = match reasons.get(1).and_then(|r| r.item.clone()) {
                Some(item) => item,
                None => self.get_item(&key).await?.unwrap_or_default(),
            };
            let now = now_epoch_secs();
            let stack_target = req.target.to_stack();
            let in_the_way = stack_holder(&stack_target, &stack_item)
                .filter(|h| !h.is_expired_at(now))
                .or_else(|| stack_holder(&req.target, &svc_item).filter(|h| !h.is_expired_at(now)))
                .or_else(|| {
                    service_entries(&stack_target, &stack_item)
                        .into_iter()
                        .find(|e| e.target == req.target && !e.is_expired_at(now))
                });
            if let Some(holder) = in_the_way {
                return Err(LockError::Held {
                    requested: key,
                    holder: Box::new(holder),
                });
            }
            let counter = get_u64(&stack_item, FENCE_COUNTER).unwrap_or(0);
            if counter >= fence {
                fence = propose_fence(counter.saturating_add(1));
            }
        }
        Err(LockError::Busy { key })
    }

    /// One conditional UpdateItem of the item `key`. `Ok(Err(old))`: the condition did not hold;
    /// `old` is the item as it was, when the store returns it.
    async fn update_item(
        &self,
        key: &str,
        update: String,
        cond: String,
        x: Expr,
    ) -> Result<Result<(), Option<Item>>, AwsError> {
        conditional(
            self.client
                .update_item()
                .table_name(&self.table)
                .key(KEY, s(key))
                .update_expression(update)
                .condition_expression(cond)
                .set_expression_attribute_names(Some(x.names))
                .set_expression_attribute_values(Some(x.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await,
        )
        .map(|r| r.map(|_| ()))
    }

    /// The update of the item `key` within a transaction, if `cond` holds.
    fn transact_update(
        &self,
        key: &str,
        update: String,
        cond: String,
        x: Expr,
    ) -> Result<TransactWriteItem, LockError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(KEY, s(key))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(x.names))
            .set_expression_attribute_values(Some(x.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| self.build_err(key, e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Runs a transaction. `Ok(Err(_))`: it was cancelled, with each item's reason.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Cancelled>, AwsError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                let error = AwsError::from_sdk(&e);
                match cancellation(&e) {
                    Some(reasons) => Ok(Err(Cancelled { reasons, error })),
                    None => Err(error),
                }
            }
        }
    }

    fn build_err(&self, key: &str, e: impl std::fmt::Display) -> LockError {
        self.aws_err(
            "build a request for",
            key,
            AwsError {
                class: ErrorClass::Permanent,
                code: None,
                status: None,
                message: e.to_string(),
                request_id: None,
            },
        )
    }

    async fn release_service_parts(
        &self,
        target: &LockTarget,
        lock_id: &str,
    ) -> Result<bool, LockError> {
        // Fallback when the two items disagree (one was taken over or deleted by TTL): remove
        // whichever of them is still this grant.
        let key = target.key();
        let svc = service_name(target);
        let (cond, x) = held_by(lock_id);
        let deleted = conditional(
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(KEY, s(&key))
                .condition_expression(cond)
                .set_expression_attribute_names(Some(x.names))
                .set_expression_attribute_values(Some(x.values))
                .send()
                .await,
        )
        .map_err(|e| self.aws_err("release", &key, e))?
        .is_ok();
        let (update, cond, x) = unindex(svc, lock_id);
        let unindexed = self
            .update_item(&target.stack_key(), update, cond, x)
            .await
            .map_err(|e| self.aws_err("release", &key, e))?
            .is_ok();
        Ok(deleted || unindexed)
    }
}

#[async_trait]
impl LockBackend for DynamoDbLocks {
    fn location(&self) -> String {
        format!("dynamodb://{}", self.table)
    }

    async fn try_acquire(&self, request: &LockRequest) -> Result<LockInfo, LockError> {
        match &request.target.scope {
            LockScope::Stack => self.acquire_stack(request).await,
            LockScope::Service(svc) => self.acquire_service(request, svc).await,
        }
    }

    async fn renew(&self, held: &LockInfo, lease: Duration) -> Result<LockInfo, LockError> {
        let key = held.key();
        let now = now_epoch_secs();
        let exp = expiry(now, lease);
        let lost = |reason: &str| LockError::Lost {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        // The holder's own item (the stack item, or the service item) renews the same way.
        let (cond, mut x) = held_by(&held.lock_id);
        let update = format!(
            "SET {} = {}, {} = {}",
            x.n(LAST_HEARTBEAT),
            x.v(":now", n(now)),
            x.n(EXPIRES_AT),
            x.v(":exp", n(exp))
        );
        match &held.target.scope {
            LockScope::Stack => {
                let written = self
                    .update_item(&key, update, cond, x)
                    .await
                    .map_err(|e| self.aws_err("renew", &key, e))?;
                if let Err(old) = written {
                    let reason = match old.and_then(|i| stack_holder(&held.target, &i)) {
                        Some(h) => format!("taken over by {} (fence {})", h.locked_by, h.fence),
                        None => "it was released or taken over".to_owned(),
                    };
                    return Err(lost(&reason));
                }
            }
            LockScope::Service(svc) => {
                let svc_update = self.transact_update(&key, update, cond, x)?;
                // The grant's entry in the stack item's index expires with it.
                let mut y = Expr::default();
                let ph = y.n_as("#svc", &service_attr(svc));
                let cond = format!("{ph}.{} = {}", y.n(LOCK_ID), y.v(":id", s(&held.lock_id)));
                let update = format!("SET {ph}.{} = {}", y.n(EXPIRES_AT), y.v(":exp", n(exp)));
                let stack_update =
                    self.transact_update(&held.target.stack_key(), update, cond, y)?;
                let written = self
                    .transact(vec![svc_update, stack_update])
                    .await
                    .map_err(|e| self.aws_err("renew", &key, e))?;
                match written {
                    Ok(()) => {}
                    Err(c) if refused_by_condition(&c.reasons) => {
                        return Err(lost("it was released or taken over (a stack-scoped holder or a new holder of this service)"));
                    }
                    Err(c) => return Err(self.aws_err("renew", &key, c.error)),
                }
            }
        }
        let mut info = held.clone();
        info.last_heartbeat = now;
        info.expires_at = exp;
        Ok(info)
    }

    async fn release(&self, target: &LockTarget, lock_id: &str) -> Result<bool, LockError> {
        let key = target.key();
        match &target.scope {
            LockScope::Stack => {
                let (cond, mut x) = held_by(lock_id);
                // The item stays: it carries the fence counter and the service index.
                let update = format!(
                    "REMOVE {}, {}, {}, {}, {}, {}",
                    x.n(LOCK_ID),
                    x.n(LOCKED_BY),
                    x.n(OPERATION),
                    x.n(LOCKED_AT),
                    x.n(LAST_HEARTBEAT),
                    x.n(EXPIRES_AT)
                );
                // Refused by the condition: no longer ours (released, or taken over).
                Ok(self
                    .update_item(&key, update, cond, x)
                    .await
                    .map_err(|e| self.aws_err("release", &key, e))?
                    .is_ok())
            }
            LockScope::Service(svc) => {
                let (cond, x) = held_by(lock_id);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(KEY, s(&key))
                    .condition_expression(cond)
                    .set_expression_attribute_names(Some(x.names))
                    .set_expression_attribute_values(Some(x.values))
                    .build()
                    .map_err(|e| self.build_err(&key, e))?;
                let (update, cond, y) = unindex(svc, lock_id);
                let stack_update = self.transact_update(&target.stack_key(), update, cond, y)?;
                let written = self
                    .transact(vec![
                        TransactWriteItem::builder().delete(delete).build(),
                        stack_update,
                    ])
                    .await
                    .map_err(|e| self.aws_err("release", &key, e))?;
                match written {
                    Ok(()) => Ok(true),
                    Err(_) => self.release_service_parts(target, lock_id).await,
                }
            }
        }
    }

    async fn get(&self, target: &LockTarget) -> Result<Option<LockInfo>, LockError> {
        let item = self.get_item(&target.key()).await?;
        Ok(item.and_then(|i| stack_holder(target, &i)))
    }

    async fn list(
        &self,
        stack: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Vec<LockInfo>, LockError> {
        let prefix = match (stack, environment) {
            (Some(s), Some(e)) => format!("stack:{s}:env:{e}"),
            (Some(s), None) => format!("stack:{s}:env:"),
            _ => "stack:".to_owned(),
        };
        let mut x = Expr::default();
        let filter = format!(
            "begins_with({}, {}) AND attribute_exists({})",
            x.n(KEY),
            x.v(":p", s(&prefix)),
            x.n(LOCK_ID)
        );
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(filter)
            .set_expression_attribute_names(Some(x.names))
            .set_expression_attribute_values(Some(x.values))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.aws_err("list", &prefix, AwsError::from_sdk(&e)))?;
            for item in page.items() {
                let Some(target) = get_s(item, KEY).and_then(LockTarget::parse) else {
                    continue;
                };
                // `begins_with` also matches longer names (`prod` → `production`).
                if stack.is_some_and(|s| s != target.stack)
                    || environment.is_some_and(|e| e != target.environment)
                {
                    continue;
                }
                if let Some(info) = stack_holder(&target, item) {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(out)
    }
}

/// Expression attribute names and values, registered as they are used (DynamoDB rejects unused
/// ones).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn n(&mut self, attr: &str) -> String {
        let ph = format!("#{attr}");
        self.names.insert(ph.clone(), attr.to_owned());
        ph
    }

    fn n_as(&mut self, ph: &str, attr: &str) -> String {
        self.names.insert(ph.to_owned(), attr.to_owned());
        ph.to_owned()
    }

    fn v(&mut self, ph: &str, value: AttributeValue) -> String {
        self.values.insert(ph.to_owned(), value);
        ph.to_owned()
    }
}

struct Reason {
    code: String,
    item: Option<Item>,
}

/// A cancelled transaction: each item's reason, and the error as AWS sent it.
struct Cancelled {
    reasons: Vec<Reason>,
    error: AwsError,
}

/// Whether a cancelled transaction failed on an item's condition (rather than on a concurrent
/// transaction touching the same items).
fn refused_by_condition(reasons: &[Reason]) -> bool {
    reasons.iter().any(|r| r.code == "ConditionalCheckFailed")
}

/// An error of a conditional single-item write that may be its condition failing.
trait ConditionFailure {
    /// `Some(item)` when the write's condition did not hold (the item as it was, if returned).
    fn refused_item(&self) -> Option<Option<Item>>;
}

impl ConditionFailure for UpdateItemError {
    fn refused_item(&self) -> Option<Option<Item>> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item.clone()),
            _ => None,
        }
    }
}

impl ConditionFailure for DeleteItemError {
    fn refused_item(&self) -> Option<Option<Item>> {
        match self {
            DeleteItemError::ConditionalCheckFailedException(c) => Some(c.item.clone()),
            _ => None,
        }
    }
}

/// Splits a conditional single-item write's result: written (`Ok(Ok(_))`), refused by its
/// condition (`Ok(Err(old item))`), or failed otherwise.
fn conditional<O, E, R>(
    result: Result<O, SdkError<E, R>>,
) -> Result<Result<O, Option<Item>>, AwsError>
where
    E: ConditionFailure + ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    match result {
        Ok(out) => Ok(Ok(out)),
        Err(e) => match e
            .as_service_error()
            .and_then(ConditionFailure::refused_item)
        {
            Some(old) => Ok(Err(old)),
            None => Err(AwsError::from_sdk(&e)),
        },
    }
}

/// The per-item reasons of a cancelled transaction; `None` for any other error.
fn cancellation<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<Reason>> {
    match err {
        SdkError::ServiceError(e) => match e.err() {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(
                c.cancellation_reasons()
                    .iter()
                    .map(|r| Reason {
                        code: r.code().unwrap_or("None").to_owned(),
                        item: r.item().cloned(),
                    })
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// The condition that an item holds grant `lock_id`, with its placeholders.
fn held_by(lock_id: &str) -> (String, Expr) {
    let mut x = Expr::default();
    let cond = format!("{} = {}", x.n(LOCK_ID), x.v(":id", s(lock_id)));
    (cond, x)
}

/// Removes service `svc`'s entry from the stack item's index if it still is grant `lock_id`:
/// the update, its condition and their placeholders.
fn unindex(svc: &str, lock_id: &str) -> (String, String, Expr) {
    let mut x = Expr::default();
    let ph = x.n_as("#svc", &service_attr(svc));
    let cond = format!("{ph}.{} = {}", x.n(LOCK_ID), x.v(":id", s(lock_id)));
    let update = format!(
        "REMOVE {ph} DELETE {} {}",
        x.n(SERVICE_HOLDERS),
        x.v(":svcset", AttributeValue::Ss(vec![svc.to_owned()]))
    );
    (update, cond, x)
}

/// The attribute of the stack item indexing a service-scoped grant.
fn service_attr(svc: &str) -> String {
    format!("service:{svc}")
}

fn service_name(target: &LockTarget) -> &str {
    match &target.scope {
        LockScope::Service(s) => s,
        LockScope::Stack => "",
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

fn get_i64(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

fn get_u64(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse::<u64>().ok(),
        _ => None,
    }
}

/// The grant a successful acquire of `req` made.
fn granted(req: &LockRequest, lock_id: String, now: i64, expires_at: i64, fence: u64) -> LockInfo {
    LockInfo {
        target: req.target.clone(),
        lock_id,
        locked_by: req.holder.clone(),
        operation: req.operation.clone(),
        locked_at: now,
        last_heartbeat: now,
        expires_at,
        fence,
    }
}

/// The holder recorded in an item (stack item or service item), if any.
fn stack_holder(target: &LockTarget, item: &Item) -> Option<LockInfo> {
    holder_from(target.clone(), item, get_i64(item, LAST_HEARTBEAT))
}

fn holder_from(target: LockTarget, item: &Item, heartbeat: Option<i64>) -> Option<LockInfo> {
    let lock_id = get_s(item, LOCK_ID)?.to_owned();
    let locked_at = get_i64(item, LOCKED_AT).unwrap_or(0);
    Some(LockInfo {
        target,
        lock_id,
        locked_by: get_s(item, LOCKED_BY).unwrap_or("unknown").to_owned(),
        operation: get_s(item, OPERATION).unwrap_or("unknown").to_owned(),
        locked_at,
        last_heartbeat: heartbeat.unwrap_or(locked_at),
        expires_at: get_i64(item, EXPIRES_AT).unwrap_or(0),
        fence: get_u64(item, FENCE).unwrap_or(0),
    })
}

/// The service-scoped grants indexed in a stack item.
fn service_entries(stack: &LockTarget, item: &Item) -> Vec<LockInfo> {
    let Some(AttributeValue::Ss(names)) = item.get(SERVICE_HOLDERS) else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|svc| {
            let target = LockTarget::service(&stack.stack, &stack.environment, svc).ok()?;
            match item.get(&service_attr(svc)) {
                Some(AttributeValue::M(entry)) => holder_from(target, entry, None),
                // A name without its entry cannot be live; report it expired so a stack
                // acquirer clears it.
                _ => Some(LockInfo {
                    target,
                    lock_id: String::new(),
                    locked_by: "unknown".into(),
                    operation: "unknown".into(),
                    locked_at: 0,
                    last_heartbeat: 0,
                    expires_at: 0,
                    fence: 0,
                }),
            }
        })
        .collect()
}
