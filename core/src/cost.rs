//! Monthly cost estimate of a desired stack from a static price table (stage: plan, pure).
//!
//! An **estimate**: on-demand us-east-1 list prices for the fixed part of each component
//! (Fargate vCPU and memory hours, RDS and ElastiCache instance hours, RDS storage, provisioned
//! DynamoDB capacity, the stack's load balancer). Usage-priced parts (requests, data transfer,
//! S3 storage, SQS messages, on-demand DynamoDB) are not included and are reported as such.
//! Prices differ by region and change over time; the table is in `docs/reference.md`.

use std::collections::BTreeMap;

use panka_crds::spec::{Architecture, BillingMode, ComponentInfraSpec, RdsStorage, StorageType};
use serde::Serialize;

use crate::model::{ComponentId, ComponentSpec, DesiredComponent, DesiredStack};

/// Hours in an average month.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Fixed monthly cost of one Application Load Balancer (LCUs are usage-priced).
pub const ALB_MONTHLY_USD: f64 = ALB_HOUR * HOURS_PER_MONTH;

const FARGATE_VCPU_HOUR_X86: f64 = 0.04048;
const FARGATE_GB_HOUR_X86: f64 = 0.004445;
const FARGATE_VCPU_HOUR_ARM: f64 = 0.03238;
const FARGATE_GB_HOUR_ARM: f64 = 0.00356;
const ALB_HOUR: f64 = 0.0225;
const RDS_GB_MONTH_GP: f64 = 0.115;
const RDS_GB_MONTH_IO1: f64 = 0.125;
const DYNAMODB_RCU_HOUR: f64 = 0.00013;
const DYNAMODB_WCU_HOUR: f64 = 0.00065;

// Prices, not mathematical constants (0.318 is not meant as 1/π).
#[allow(clippy::approx_constant)]
const RDS_HOURLY: &[(&str, f64)] = &[
    ("db.t3.micro", 0.018),
    ("db.t3.small", 0.036),
    ("db.t3.medium", 0.072),
    ("db.t3.large", 0.145),
    ("db.t3.xlarge", 0.29),
    ("db.t3.2xlarge", 0.579),
    ("db.t4g.micro", 0.016),
    ("db.t4g.small", 0.032),
    ("db.t4g.medium", 0.065),
    ("db.t4g.large", 0.129),
    ("db.m5.large", 0.178),
    ("db.m5.xlarge", 0.356),
    ("db.m5.2xlarge", 0.712),
    ("db.m6g.large", 0.159),
    ("db.m6g.xlarge", 0.318),
    ("db.r5.large", 0.25),
    ("db.r5.xlarge", 0.5),
    ("db.r6g.large", 0.225),
    ("db.r6g.xlarge", 0.45),
];

const CACHE_HOURLY: &[(&str, f64)] = &[
    ("cache.t3.micro", 0.017),
    ("cache.t3.small", 0.034),
    ("cache.t3.medium", 0.068),
    ("cache.t4g.micro", 0.016),
    ("cache.t4g.small", 0.032),
    ("cache.t4g.medium", 0.065),
    ("cache.m5.large", 0.156),
    ("cache.m6g.large", 0.149),
    ("cache.r5.large", 0.216),
    ("cache.r6g.large", 0.206),
];

/// The estimate for one component.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentCost {
    /// Fixed monthly cost in USD, when the table knows the sizes involved.
    pub monthly_usd: Option<f64>,
    /// What the figure covers or why there is none.
    pub note: &'static str,
}

/// The estimate for a stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    /// Sum of every known figure, USD per month.
    pub monthly_usd: f64,
    /// Per component.
    pub components: BTreeMap<ComponentId, ComponentCost>,
}

fn lookup(table: &[(&str, f64)], class: &str) -> Option<f64> {
    table.iter().find(|(c, _)| *c == class).map(|(_, p)| *p)
}

fn tasks(infra: Option<&ComponentInfraSpec>) -> f64 {
    let scaling = infra.and_then(|i| i.scaling.as_ref());
    let auto = scaling
        .and_then(|s| s.autoscaling.as_ref())
        .filter(|a| a.enabled.unwrap_or(true));
    let count = match auto {
        Some(a) => a.min_replicas.unwrap_or(1),
        None => scaling.and_then(|s| s.replicas).unwrap_or(1),
    };
    f64::from(count)
}

fn fargate(infra: Option<&ComponentInfraSpec>, arch: Option<Architecture>) -> f64 {
    let res = infra.and_then(|i| i.resources.as_ref());
    let vcpu = f64::from(res.and_then(|r| r.cpu).unwrap_or(256)) / 1024.0;
    let gb = f64::from(res.and_then(|r| r.memory).unwrap_or(512)) / 1024.0;
    let (cpu_price, gb_price) = match arch {
        Some(Architecture::Arm64) => (FARGATE_VCPU_HOUR_ARM, FARGATE_GB_HOUR_ARM),
        _ => (FARGATE_VCPU_HOUR_X86, FARGATE_GB_HOUR_X86),
    };
    (vcpu * cpu_price + gb * gb_price) * HOURS_PER_MONTH * tasks(infra)
}

fn storage(s: &RdsStorage) -> f64 {
    let per_gb = match s.storage_type {
        Some(StorageType::Io1) => RDS_GB_MONTH_IO1,
        _ => RDS_GB_MONTH_GP,
    };
    f64::from(s.allocated_gb) * per_gb
}

/// Estimates one component.
pub fn component(c: &DesiredComponent) -> ComponentCost {
    let infra = c.infra.as_ref();
    match &c.spec {
        ComponentSpec::MicroService(s) => ComponentCost {
            monthly_usd: Some(fargate(
                infra,
                s.runtime.as_ref().and_then(|r| r.architecture),
            )),
            note: "Fargate tasks at their minimum count",
        },
        ComponentSpec::Worker(s) => ComponentCost {
            monthly_usd: Some(fargate(
                infra,
                s.runtime.as_ref().and_then(|r| r.architecture),
            )),
            note: "Fargate tasks at their minimum count",
        },
        ComponentSpec::Rds(s) => match lookup(RDS_HOURLY, &s.instance.class) {
            Some(hourly) => {
                let instances = if s.instance.multi_az == Some(true) {
                    2.0
                } else {
                    1.0
                };
                ComponentCost {
                    monthly_usd: Some(
                        hourly * HOURS_PER_MONTH * instances
                            + storage(&s.instance.storage) * instances,
                    ),
                    note: "instance hours and allocated storage",
                }
            }
            None => ComponentCost {
                monthly_usd: None,
                note: "instance class not in the price table",
            },
        },
        ComponentSpec::ElastiCacheRedis(s) => match lookup(CACHE_HOURLY, &s.cluster.node_type) {
            Some(hourly) => ComponentCost {
                monthly_usd: Some(hourly * HOURS_PER_MONTH * f64::from(s.cluster.num_nodes)),
                note: "node hours",
            },
            None => ComponentCost {
                monthly_usd: None,
                note: "node type not in the price table",
            },
        },
        ComponentSpec::DynamoDb(s) => match (&s.billing_mode, &s.capacity) {
            (Some(BillingMode::Provisioned), Some(cap)) => ComponentCost {
                monthly_usd: Some(
                    (f64::from(cap.read) * DYNAMODB_RCU_HOUR
                        + f64::from(cap.write) * DYNAMODB_WCU_HOUR)
                        * HOURS_PER_MONTH,
                ),
                note: "provisioned capacity; storage is usage-priced",
            },
            _ => ComponentCost {
                monthly_usd: Some(0.0),
                note: "on-demand: usage-priced",
            },
        },
        ComponentSpec::S3(_) => ComponentCost {
            monthly_usd: Some(0.0),
            note: "usage-priced",
        },
        ComponentSpec::Sqs(_) => ComponentCost {
            monthly_usd: Some(0.0),
            note: "usage-priced",
        },
        ComponentSpec::LoadBalancer(_) => ComponentCost {
            monthly_usd: Some(ALB_MONTHLY_USD),
            note: "load balancer hours; LCUs are usage-priced",
        },
        ComponentSpec::Network(_) => ComponentCost {
            monthly_usd: Some(0.0),
            note: "looked up, not created",
        },
        ComponentSpec::EcsCluster(_) | ComponentSpec::ExecutionRole(_) => ComponentCost {
            monthly_usd: Some(0.0),
            note: "no charge",
        },
    }
}

/// Estimates a whole stack.
pub fn estimate(stack: &DesiredStack) -> CostEstimate {
    let components: BTreeMap<ComponentId, ComponentCost> = stack
        .components
        .iter()
        .map(|(id, c)| (id.clone(), component(c)))
        .collect();
    // `+ 0.0`: the sum of nothing is -0.0, which would print as `$-0`.
    let monthly_usd = components
        .values()
        .filter_map(|c| c.monthly_usd)
        .sum::<f64>()
        + 0.0;
    CostEstimate {
        monthly_usd,
        components,
    }
}

#[cfg(test)]
mod tests {
    use panka_crds::spec::{Resources, Scaling};

    use super::*;

    #[test]
    fn fargate_cost_scales_with_size_and_count() {
        let infra = |cpu, memory, replicas| ComponentInfraSpec {
            resources: Some(Resources {
                cpu: Some(cpu),
                memory: Some(memory),
            }),
            scaling: Some(Scaling {
                replicas: Some(replicas),
                autoscaling: None,
            }),
            networking: None,
        };
        let one = fargate(Some(&infra(256, 512, 1)), None);
        let two = fargate(Some(&infra(256, 512, 2)), None);
        assert!((two - 2.0 * one).abs() < 1e-9);
        // 0.25 vCPU and 0.5 GB for 730 h.
        assert!((one - (0.25 * 0.04048 + 0.5 * 0.004445) * 730.0).abs() < 1e-9);
        assert!(fargate(Some(&infra(256, 512, 1)), Some(Architecture::Arm64)) < one);
    }

    #[test]
    fn an_empty_stack_costs_a_plain_zero() {
        let stack = DesiredStack {
            name: "s".into(),
            environment: "e".into(),
            provider: Default::default(),
            infra: Default::default(),
            services: BTreeMap::new(),
            components: BTreeMap::new(),
            variables: BTreeMap::new(),
        };
        let cost = estimate(&stack).monthly_usd;
        assert!(cost == 0.0 && cost.is_sign_positive(), "{cost}");
    }

    #[test]
    fn unknown_instance_classes_are_not_guessed() {
        assert_eq!(lookup(RDS_HOURLY, "db.t3.small"), Some(0.036));
        assert_eq!(lookup(RDS_HOURLY, "db.x99.huge"), None);
    }
}
