//! Stages **observe** and **apply** of a MicroService's load balancer routing: an `ip` target
//! group and a listener rule on the stack's load balancer (`_stack/alb`), with stable rule
//! priorities, path and host conditions, and the tags of both (ELB tag calls go through
//! [`EcsDriver::retag_elb`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, ProtocolEnum,
    Rule, RuleCondition, TargetGroup, TargetTypeEnum,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::observe::Batch;
use super::stack_refs::{alb_id, elb_tags, network_id, LISTENER_PORT};
use super::{is_code, required, EcsDriver, MISSING};
use crate::aws::{self, AwsError};
use crate::driver::support::{ensure_ours, is_missing, or_missing, TagChanges};
use crate::driver::{DriverError, Outputs};
use panka_core::model::ComponentId;
use panka_core::naming::NameRules;

/// Listener rule priorities panka picks from (AWS allows 1–50000; the low ones are left to people).
const PRIORITY_BASE: u32 = 1000;
const PRIORITY_SPAN: u32 = 49_000;

/// Load balancer routing of a MicroService.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LbShape {
    pub(super) port: u16,
    pub(super) path: String,
    pub(super) host: Option<String>,
    pub(super) health_check_path: String,
    /// The target group's tags panka manages (see [`super::support::TagPolicy::managed`]).
    pub(super) target_group_tags: BTreeMap<String, String>,
    /// The listener rule's tags panka manages.
    pub(super) rule_tags: BTreeMap<String, String>,
}

/// Path prefix of a listener rule's path pattern, for the `url` output.
pub(super) fn url_path(pattern: &str) -> &str {
    pattern.trim_end_matches('*').trim_end_matches('/')
}

/// The listener rule priority panka tries first for a component (stable across runs).
fn base_priority(id: &ComponentId) -> u32 {
    let digest = Sha256::digest(id.to_string().as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    PRIORITY_BASE + n % PRIORITY_SPAN
}

/// The first priority at or after the component's own that is not in `used`.
fn free_priority(id: &ComponentId, used: &BTreeSet<u32>) -> u32 {
    let base = base_priority(id) - PRIORITY_BASE;
    (0..PRIORITY_SPAN)
        .map(|i| PRIORITY_BASE + (base + i) % PRIORITY_SPAN)
        .find(|p| !used.contains(p))
        .unwrap_or(PRIORITY_BASE)
}

impl EcsDriver {
    pub(super) fn target_group_name(&self, id: &ComponentId) -> String {
        self.ctx
            .naming
            .component(id, Some("tg"), NameRules::LOAD_BALANCER)
    }

    /// The target group, its rule and the load balancer's DNS name, found from the service's
    /// target group: `(shape, rule ARN, url)`; `None` when the target group is gone.
    pub(super) async fn observe_lb(
        &self,
        id: &ComponentId,
        tg_arn: &str,
        batch: &Batch,
    ) -> Result<Option<(LbShape, Option<String>, Option<String>)>, DriverError> {
        let tg = match batch.target_groups.get(tg_arn) {
            Some(read) => read.clone(),
            None => or_missing(
                self.elb
                    .describe_target_groups()
                    .target_group_arns(tg_arn)
                    .send()
                    .await,
                MISSING,
                "read target group",
                id,
            )?
            .and_then(|o| o.target_groups().first().cloned()),
        };
        let Some(tg) = tg else {
            return Ok(None);
        };
        let mut shape = LbShape {
            port: tg.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            path: String::new(),
            host: None,
            health_check_path: tg.health_check_path().unwrap_or("/").to_string(),
            target_group_tags: BTreeMap::new(),
            rule_tags: BTreeMap::new(),
        };
        let (rule, url) = self.observe_route(id, &tg, batch).await?;
        if let Some(rule) = &rule {
            (shape.path, shape.host) = conditions_of(rule);
        }
        let rule_arn = rule.as_ref().and_then(|r| r.rule_arn()).map(str::to_string);
        let mut arns = vec![tg_arn.to_string()];
        arns.extend(rule_arn.clone());
        let mut tags = self.elb_tags(id, &arns, batch).await?;
        let policy = self.ctx.tag_policy();
        shape.target_group_tags = policy.managed(&tags.remove(tg_arn).unwrap_or_default());
        if let Some(arn) = &rule_arn {
            shape.rule_tags = policy.managed(&tags.remove(arn).unwrap_or_default());
        }
        let url = url.map(|dns| {
            let host = shape.host.clone().unwrap_or(dns);
            format!("http://{host}{}", url_path(&shape.path))
        });
        Ok(Some((shape, rule_arn, url)))
    }

    /// The listener rule forwarding to `tg` and the load balancer's DNS name, as far as they
    /// exist.
    async fn observe_route(
        &self,
        id: &ComponentId,
        tg: &TargetGroup,
        batch: &Batch,
    ) -> Result<(Option<Rule>, Option<String>), DriverError> {
        let tg_arn = tg.target_group_arn().unwrap_or_default();
        let Some(lb_arn) = tg.load_balancer_arns().first() else {
            return Ok((None, None));
        };
        let dns = match batch.load_balancers.get(lb_arn) {
            Some(dns) => dns.clone(),
            None => self
                .elb
                .describe_load_balancers()
                .load_balancer_arns(lb_arn)
                .send()
                .await
                .map_err(|e| DriverError::aws("read load balancer", id, &e))?
                .load_balancers()
                .first()
                .and_then(|l| l.dns_name())
                .map(str::to_string),
        };
        let listener = match batch.listeners.get(lb_arn) {
            Some(listener) => listener.clone(),
            None => self.http_listener(id, lb_arn).await?,
        };
        let Some(listener) = listener else {
            return Ok((None, None));
        };
        let rule = match batch.rules.get(&listener) {
            Some(rules) => rules.iter().find(|r| forwards_to(r, tg_arn)).cloned(),
            None => self.find_rule(id, &listener, tg_arn).await?,
        };
        // Without a rule there is no route, hence no URL.
        Ok(match rule {
            Some(rule) => (Some(rule), dns),
            None => (None, None),
        })
    }

    /// Tags of load balancer resources (target groups, rules) by ARN: from `batch` where it has
    /// them, the others in one DescribeTags call. An ARN AWS does not know has no entry.
    async fn elb_tags(
        &self,
        id: &ComponentId,
        arns: &[String],
        batch: &Batch,
    ) -> Result<HashMap<String, BTreeMap<String, String>>, DriverError> {
        let mut found: HashMap<String, BTreeMap<String, String>> = arns
            .iter()
            .filter_map(|a| batch.elb_tags.get(a).map(|t| (a.clone(), t.clone())))
            .collect();
        let ask: Vec<String> = arns
            .iter()
            .filter(|a| !found.contains_key(*a))
            .cloned()
            .collect();
        if ask.is_empty() {
            return Ok(found);
        }
        let out = or_missing(
            self.elb
                .describe_tags()
                .set_resource_arns(Some(ask))
                .send()
                .await,
            MISSING,
            "read load balancer tags",
            id,
        )?;
        if let Some(out) = out {
            found.extend(elb_tag_maps(&out));
        }
        Ok(found)
    }

    /// The ARN of the load balancer's HTTP listener (the one panka routes on), if any.
    pub(super) async fn http_listener(
        &self,
        id: &ComponentId,
        lb_arn: &str,
    ) -> Result<Option<String>, DriverError> {
        let listeners = self
            .elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read listeners", id, &e))?;
        Ok(listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(LISTENER_PORT))
            .and_then(|l| l.listener_arn())
            .map(str::to_string))
    }

    /// Every rule of a listener, every page.
    pub(super) async fn rules(
        &self,
        id: &ComponentId,
        listener: &str,
    ) -> Result<Vec<Rule>, DriverError> {
        self.elb
            .describe_rules()
            .listener_arn(listener)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| DriverError::aws("read listener rules", id, &e))
    }

    /// The rule of `listener` forwarding to `tg_arn`: that is how panka recognises its own.
    pub(super) async fn find_rule(
        &self,
        id: &ComponentId,
        listener: &str,
        tg_arn: &str,
    ) -> Result<Option<Rule>, DriverError> {
        Ok(self
            .rules(id, listener)
            .await?
            .into_iter()
            .find(|r| forwards_to(r, tg_arn)))
    }

    /// Sends `changes` (see [`crate::driver::support::TagPolicy::changes`]) to a target group or
    /// listener rule: every ELB tag call of this driver goes through here.
    pub(super) async fn retag_elb(
        &self,
        id: &ComponentId,
        arn: &str,
        changes: TagChanges,
    ) -> Result<(), DriverError> {
        super::stack_refs::retag_elb(&self.elb, id, arn, changes, "load balancer resource").await
    }

    /// Creates or converges the target group; returns its ARN.
    async fn ensure_target_group(
        &self,
        id: &ComponentId,
        lb: &LbShape,
        vpc_id: &str,
    ) -> Result<String, DriverError> {
        let name = self.target_group_name(id);
        let existing = or_missing(
            self.elb.describe_target_groups().names(&name).send().await,
            MISSING,
            "read target group",
            id,
        )?
        .and_then(|o| o.target_groups().first().cloned());
        if let Some(tg) = existing {
            let arn = tg.target_group_arn().unwrap_or_default().to_string();
            let tags = self.elb_tags_of(id, &arn).await?;
            ensure_ours(&self.ctx, id, &tags, format!("target group {name}"))?;
            if tg.port() != Some(i32::from(lb.port)) {
                return Err(DriverError::Unexpected {
                    component: id.clone(),
                    message: format!(
                        "target group {name} routes to port {:?}, not {}; it must be replaced",
                        tg.port(),
                        lb.port
                    ),
                });
            }
            if tg.health_check_path() != Some(lb.health_check_path.as_str()) {
                self.elb
                    .modify_target_group()
                    .target_group_arn(&arn)
                    .health_check_path(&lb.health_check_path)
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("update target group", id, &e))?;
            }
            let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), &tags);
            self.retag_elb(id, &arn, changes).await?;
            return Ok(arn);
        }
        let out = self
            .elb
            .create_target_group()
            .name(&name)
            .protocol(ProtocolEnum::Http)
            .port(i32::from(lb.port))
            .vpc_id(vpc_id)
            .target_type(TargetTypeEnum::Ip)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(&lb.health_check_path)
            .set_tags(Some(elb_tags(self.ctx.tags(id).iter())))
            .send()
            .await
            .map_err(|e| DriverError::aws("create target group", id, &e))?;
        out.target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)
            .ok_or_else(|| DriverError::Unexpected {
                component: id.clone(),
                message: format!("ELB returned no ARN for target group {name}"),
            })
    }

    /// The tags of one load balancer resource (target group, rule).
    async fn elb_tags_of(
        &self,
        id: &ComponentId,
        arn: &str,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        let out = self
            .elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .map_err(|e| DriverError::aws("read load balancer tags", id, &e))?;
        Ok(elb_tag_maps(&out).remove(arn).unwrap_or_default())
    }

    /// Creates or converges the listener rule forwarding to `tg_arn`; returns its ARN.
    async fn ensure_rule(
        &self,
        id: &ComponentId,
        listener: &str,
        tg_arn: &str,
        lb: &LbShape,
    ) -> Result<String, DriverError> {
        let rules = self.rules(id, listener).await?;
        let conditions = rule_conditions(lb);
        if let Some(rule) = rules.iter().find(|r| forwards_to(r, tg_arn)) {
            let arn = rule.rule_arn().unwrap_or_default().to_string();
            if conditions_of(rule) != (lb.path.clone(), lb.host.clone()) {
                self.elb
                    .modify_rule()
                    .rule_arn(&arn)
                    .set_conditions(Some(conditions))
                    .send()
                    .await
                    .map_err(|e| DriverError::aws("update listener rule", id, &e))?;
            }
            // It forwards to our target group, which is checked to be ours: so is the rule.
            let tags = self.elb_tags_of(id, &arn).await?;
            let changes = self.ctx.tag_policy().changes(&self.ctx.tags(id), &tags);
            self.retag_elb(id, &arn, changes).await?;
            return Ok(arn);
        }
        let mut used: BTreeSet<u32> = rules
            .iter()
            .filter_map(|r| r.priority()?.parse().ok())
            .collect();
        // Another writer may take a priority between our read and our create: try the next.
        for _ in 0..5 {
            let priority = free_priority(id, &used);
            let created = self
                .elb
                .create_rule()
                .listener_arn(listener)
                .priority(i32::try_from(priority).unwrap_or(i32::MAX))
                .set_conditions(Some(conditions.clone()))
                .actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(tg_arn)
                        .build(),
                )
                .set_tags(Some(elb_tags(self.ctx.tags(id).iter())))
                .send()
                .await;
            match created {
                Ok(out) => {
                    return out
                        .rules()
                        .first()
                        .and_then(|r| r.rule_arn())
                        .map(str::to_string)
                        .ok_or_else(|| DriverError::Unexpected {
                            component: id.clone(),
                            message: "ELB returned no ARN for the listener rule".into(),
                        })
                }
                Err(e) if is_code(&e, "PriorityInUse") => {
                    used.insert(priority);
                }
                Err(e) => return Err(DriverError::aws("create listener rule", id, &e)),
            }
        }
        Err(DriverError::Unexpected {
            component: id.clone(),
            message: "no free listener rule priority after 5 attempts".into(),
        })
    }

    /// Target group and rule for a wanted load balancer; returns `(target group, rule)`.
    pub(super) async fn ensure_lb(
        &self,
        id: &ComponentId,
        lb: &LbShape,
        outputs: &Outputs,
    ) -> Result<(String, String), DriverError> {
        let vpc = required(outputs, id, &network_id(), "vpcId")?;
        let listener = required(outputs, id, &alb_id(), "listenerArn")?;
        let tg = self.ensure_target_group(id, lb, &vpc).await?;
        let rule = self.ensure_rule(id, &listener, &tg, lb).await?;
        Ok((tg, rule))
    }

    pub(super) fn url(lb: &LbShape, outputs: &Outputs) -> Option<String> {
        let dns = outputs.get(&alb_id())?.get("dnsName")?;
        let host = lb.host.clone().unwrap_or_else(|| dns.clone());
        Some(format!("http://{host}{}", url_path(&lb.path)))
    }

    pub(super) async fn delete_lb(
        &self,
        id: &ComponentId,
        rule: Option<&str>,
        tg: Option<&str>,
    ) -> Result<(), DriverError> {
        if let Some(rule) = rule {
            match self.elb.delete_rule().rule_arn(rule).send().await {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("delete listener rule", id, &e)),
            }
        }
        if let Some(tg) = tg {
            match self
                .elb
                .delete_target_group()
                .target_group_arn(tg)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&AwsError::from_sdk(&e), MISSING) => {}
                Err(e) => return Err(DriverError::aws("delete target group", id, &e)),
            }
        }
        Ok(())
    }
}

/// The tags of each resource a DescribeTags call answered for, by ARN.
pub(super) fn elb_tag_maps(
    out: &aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput,
) -> HashMap<String, BTreeMap<String, String>> {
    out.tag_descriptions()
        .iter()
        .filter_map(|d| {
            let tags = aws::tag_map(d.tags().iter().map(|t| (t.key(), t.value())));
            Some((d.resource_arn()?.to_string(), tags))
        })
        .collect()
}

/// Whether a rule forwards to a target group.
pub(super) fn forwards_to(rule: &Rule, tg_arn: &str) -> bool {
    rule.actions().iter().any(|a| {
        a.target_group_arn() == Some(tg_arn)
            || a.forward_config().is_some_and(|f| {
                f.target_groups()
                    .iter()
                    .any(|t| t.target_group_arn() == Some(tg_arn))
            })
    })
}

/// `(path pattern, host)` of a rule.
pub(super) fn conditions_of(rule: &Rule) -> (String, Option<String>) {
    let mut path = String::new();
    let mut host = None;
    for c in rule.conditions() {
        let values = |cfg: Option<&[String]>| {
            cfg.filter(|v| !v.is_empty())
                .unwrap_or(c.values())
                .first()
                .cloned()
        };
        match c.field() {
            Some("path-pattern") => {
                path = values(c.path_pattern_config().map(|p| p.values())).unwrap_or_default();
            }
            Some("host-header") => host = values(c.host_header_config().map(|h| h.values())),
            _ => {}
        }
    }
    (path, host)
}

fn rule_conditions(lb: &LbShape) -> Vec<RuleCondition> {
    let mut c = vec![RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .values(&lb.path)
                .build(),
        )
        .build()];
    if let Some(host) = &lb.host {
        c.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                .build(),
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_priorities_are_stable_and_skip_taken_ones() {
        let id = ComponentId::new("svc", "api");
        let p = base_priority(&id);
        assert!((PRIORITY_BASE..PRIORITY_BASE + PRIORITY_SPAN).contains(&p));
        assert_eq!(p, base_priority(&id));
        let used = BTreeSet::from([p]);
        let q = free_priority(&id, &used);
        assert_ne!(q, p);
        assert!((PRIORITY_BASE..PRIORITY_BASE + PRIORITY_SPAN).contains(&q));
    }

    #[test]
    fn urls_drop_the_wildcard() {
        assert_eq!(url_path("/svc/api/*"), "/svc/api");
        assert_eq!(url_path("/*"), "");
    }
}
