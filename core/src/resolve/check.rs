//! Checks of typed settings that serde cannot express (stage: resolve, pure): combinations AWS
//! would refuse, mutually exclusive fields, and policy (no secret values in plain settings).
//! Each problem points at the node that holds the offending value.

use std::collections::BTreeSet;
use std::time::Duration;

use panka_crds::spec::{
    BillingMode, ComponentInfraSpec, Container, EnvVar, Image, Probe, QueueType, SecretRef,
    StackInfraSpec,
};
use panka_crds::Kind;

use crate::diag::{Diagnostic, Span};
use crate::load::yaml::{Node, Value};
use crate::model::ComponentSpec;
use crate::naming::OWNERSHIP_TAGS;
use crate::tags::glob_match;

/// Parses `30s`, `5m`, `1h`, `1h30m`, `90` (seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total = total.checked_add(n.checked_mul(match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        })?)?;
    }
    if !number.is_empty() || text.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// Span of the node at `path` below `node`, or of the deepest ancestor that exists.
fn span_at(node: &Node, path: &[&str]) -> Span {
    let mut current = node;
    for key in path {
        match current.get(key) {
            Some(next) => current = next,
            None => break,
        }
    }
    current.span.clone()
}

/// Span of item `index` of the list at `path`.
fn item_span(node: &Node, path: &[&str], index: usize, field: Option<&str>) -> Span {
    let mut current = node;
    for key in path {
        match current.get(key) {
            Some(next) => current = next,
            None => return current.span.clone(),
        }
    }
    match &current.value {
        Value::Seq(items) => match items.get(index) {
            Some(item) => field
                .and_then(|f| item.get(f))
                .map_or_else(|| item.span.clone(), |n| n.span.clone()),
            None => current.span.clone(),
        },
        _ => current.span.clone(),
    }
}

const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Checks stack infrastructure.
pub fn stack_infra(infra: &StackInfraSpec, node: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(interval) = infra.drift.as_ref().and_then(|d| d.interval.as_deref()) {
        match parse_duration(interval) {
            Some(d) if d >= Duration::from_secs(30) => {}
            Some(_) => out.push(
                Diagnostic::at(
                    span_at(node, &["drift", "interval"]),
                    format!("drift interval `{interval}` is shorter than 30s"),
                )
                .help("drift checks read every resource; use `1m` or more"),
            ),
            None => out.push(
                Diagnostic::at(
                    span_at(node, &["drift", "interval"]),
                    format!("`{interval}` is not a duration"),
                )
                .help("write e.g. `30s`, `5m`, `1h`"),
            ),
        }
    }
    if let Some(days) = infra.logging.as_ref().and_then(|l| l.retention_days) {
        if !RETENTION_DAYS.contains(&days) {
            out.push(
                Diagnostic::at(
                    span_at(node, &["logging", "retentionDays"]),
                    format!("CloudWatch Logs does not keep logs for {days} days"),
                )
                .help(format!(
                    "use one of {}",
                    RETENTION_DAYS.map(|d| d.to_string()).join(", ")
                )),
            );
        }
    }
    out.extend(ignore_tags(infra, node));
    out.extend(drift_ignore(infra, node));
    out.extend(rollback(infra, node));
    out.extend(execution_role(infra, node));
    if let Some(net) = &infra.networking {
        if let Some(vpc) = &net.vpc {
            if vpc != "default" && !vpc.starts_with("vpc-") {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["networking", "vpc"]),
                        format!("`{vpc}` is not a VPC id"),
                    )
                    .help("write `default` for the account's default VPC, or a `vpc-…` id"),
                );
            }
        }
        for (i, s) in net.subnets.iter().enumerate() {
            if !s.starts_with("subnet-") {
                out.push(
                    Diagnostic::at(
                        item_span(node, &["networking", "subnets"], i, None),
                        format!("`{s}` is not a subnet id"),
                    )
                    .help("write a `subnet-…` id"),
                );
            }
        }
        for (i, s) in net.security_groups.iter().enumerate() {
            if !s.starts_with("sg-") {
                out.push(
                    Diagnostic::at(
                        item_span(node, &["networking", "securityGroups"], i, None),
                        format!("`{s}` is not a security group id"),
                    )
                    .help("write an `sg-…` id"),
                );
            }
        }
    }
    out
}

/// Checks `ignoreTags`: each pattern matches some key, and none matches a tag panka sets itself
/// (its ownership tags, or a key of `tags`): a tag is either panka's or another system's.
fn ignore_tags(infra: &StackInfraSpec, node: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, pattern) in infra.ignore_tags.iter().enumerate() {
        let span = || item_span(node, &["ignoreTags"], i, None);
        if pattern.trim().is_empty() {
            out.push(
                Diagnostic::at(span(), "an empty `ignoreTags` entry matches no tag key")
                    .help("write a tag key such as `CostCenter`, or a pattern such as `org:*`"),
            );
            continue;
        }
        let own = OWNERSHIP_TAGS
            .iter()
            .copied()
            .find(|key| glob_match(pattern, key));
        if let Some(key) = own {
            out.push(
                Diagnostic::at(
                    span(),
                    format!("`ignoreTags` pattern `{pattern}` matches panka's ownership tag `{key}`"),
                )
                .help("panka's `panka:*` tags tell what it owns and are never ignored; narrow the pattern"),
            );
            continue;
        }
        if let Some(key) = infra.tags.keys().find(|key| glob_match(pattern, key)) {
            out.push(
                Diagnostic::at(
                    span(),
                    format!("`ignoreTags` pattern `{pattern}` matches `{key}`, which `tags` sets"),
                )
                .help("a tag is either panka's (set in `tags`) or another system's (listed in `ignoreTags`); remove it from one of them"),
            );
        }
    }
    out
}

/// Checks `drift.ignore`: every rule names a field, and a component pattern has the
/// `service/component` shape.
fn drift_ignore(infra: &StackInfraSpec, node: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let rules = infra.drift.as_ref().map_or(&[][..], |d| &d.ignore[..]);
    for (i, rule) in rules.iter().enumerate() {
        if rule.field.trim().is_empty() {
            out.push(
                Diagnostic::at(
                    item_span(node, &["drift", "ignore"], i, Some("field")),
                    "a `drift.ignore` rule needs the field it ignores",
                )
                .help(
                    "write the field as `panka drift detect` names it, e.g. `field: desiredCount`",
                ),
            );
        }
        if let Some(pattern) = &rule.component {
            let shaped = pattern
                .split_once('/')
                .is_some_and(|(s, c)| !s.is_empty() && !c.is_empty() && !c.contains('/'));
            if !shaped {
                out.push(
                    Diagnostic::at(
                        item_span(node, &["drift", "ignore"], i, Some("component")),
                        format!("`{pattern}` is not a `service/component` pattern"),
                    )
                    .help("write e.g. `notification-service/api` or `notification-service/*`"),
                );
            }
        }
    }
    out
}

/// Checks `rollback`: a bake period that is a duration, thresholds in range.
fn rollback(infra: &StackInfraSpec, node: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let Some(policy) = &infra.rollback else {
        return out;
    };
    if let Some(bake) = &policy.bake {
        if parse_duration(bake).is_none() {
            out.push(
                Diagnostic::at(
                    span_at(node, &["rollback", "bake"]),
                    format!("`{bake}` is not a duration"),
                )
                .help("write e.g. `10m`, or `0s` for no bake period"),
            );
        }
    }
    if let Some(rate) = policy.error_rate_percent {
        if !(rate > 0.0 && rate <= 100.0) {
            out.push(
                Diagnostic::at(
                    span_at(node, &["rollback", "errorRatePercent"]),
                    format!("an error rate of {rate}% cannot be crossed"),
                )
                .help("write a percentage above 0 and at most 100, e.g. `5`"),
            );
        }
    }
    if policy.p99_latency_ms == Some(0) {
        out.push(
            Diagnostic::at(
                span_at(node, &["rollback", "p99LatencyMs"]),
                "a p99 latency threshold of 0 ms rolls back every release",
            )
            .help("write the slowest acceptable p99 in milliseconds, e.g. `2000`"),
        );
    }
    out
}

/// `executionRole.permissionsBoundary` names an IAM managed policy by ARN.
fn execution_role(infra: &StackInfraSpec, node: &Node) -> Vec<Diagnostic> {
    let boundary = infra
        .execution_role
        .as_ref()
        .and_then(|r| r.permissions_boundary.as_deref());
    match boundary {
        Some(arn) if !is_policy_arn(arn) => vec![Diagnostic::at(
            span_at(node, &["executionRole", "permissionsBoundary"]),
            format!("`{arn}` is not the ARN of an IAM managed policy"),
        )
        .help("write e.g. `arn:aws:iam::123456789012:policy/panka-task-boundary`")],
        _ => Vec::new(),
    }
}

/// `arn:{partition}:iam::{account or aws}:policy/{path}{name}`.
fn is_policy_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && !account.is_empty()
            && resource.strip_prefix("policy/").is_some_and(|r| !r.is_empty() && !r.ends_with('/')))
}

/// Memory sizes (MiB) Fargate accepts for a CPU size.
fn fargate_memory(cpu: u32) -> Option<Vec<u32>> {
    let range =
        |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).collect::<Vec<_>>();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

/// Checks a container component's effective infrastructure.
pub fn component_infra(
    kind: Kind,
    infra: &ComponentInfraSpec,
    node: &Node,
    own: Option<&Node>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(res) = &infra.resources {
        let cpu = res.cpu.unwrap_or(256);
        let memory_set = res.memory.is_some();
        let memory = res.memory.unwrap_or(512);
        match fargate_memory(cpu) {
            None => out.push(
                Diagnostic::at(
                    span_at(node, &["resources", "cpu"]),
                    format!("Fargate has no task size with cpu {cpu}"),
                )
                .help("use 256, 512, 1024, 2048, 4096, 8192 or 16384 (1024 = 1 vCPU)"),
            ),
            Some(valid) if !valid.contains(&memory) => out.push(
                Diagnostic::at(
                    span_at(node, &["resources", "memory"]),
                    if memory_set {
                        format!("Fargate does not run cpu {cpu} with memory {memory}")
                    } else {
                        format!("cpu {cpu} needs `memory` set (the default, 512, does not fit it)")
                    },
                )
                .help(format!(
                    "with cpu {cpu}, memory must be one of {}",
                    valid
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            Some(_) => {}
        }
    }
    if let Some(auto) = infra.scaling.as_ref().and_then(|s| s.autoscaling.as_ref()) {
        if auto.enabled.unwrap_or(true) {
            let min = auto.min_replicas.unwrap_or(1);
            let max = auto.max_replicas.unwrap_or(min);
            if min > max {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["scaling", "autoscaling", "minReplicas"]),
                        format!("minReplicas {min} is above maxReplicas {max}"),
                    )
                    .help("raise maxReplicas or lower minReplicas"),
                );
            }
            if max == 0 {
                out.push(Diagnostic::at(
                    span_at(node, &["scaling", "autoscaling", "maxReplicas"]),
                    "maxReplicas must be at least 1",
                ));
            }
            for (i, p) in auto.policies.iter().enumerate() {
                if !(p.target_value > 0.0 && p.target_value <= 100.0)
                    && p.metric != panka_crds::spec::ScalingMetric::AlbRequestCountPerTarget
                {
                    out.push(
                        Diagnostic::at(
                            item_span(
                                node,
                                &["scaling", "autoscaling", "policies"],
                                i,
                                Some("targetValue"),
                            ),
                            "utilisation target must be above 0 and at most 100",
                        )
                        .help("e.g. `targetValue: 70`"),
                    );
                }
            }
        }
    }
    if kind == Kind::Worker {
        // Only the component's own infra.yaml (with its overlay) is blamed; a load balancer
        // inherited from stack or service defaults is simply not used by a Worker.
        let own_lb = own
            .and_then(|n| n.get("networking"))
            .and_then(|n| n.get("loadBalancer"));
        let enabled = infra
            .networking
            .as_ref()
            .and_then(|n| n.load_balancer.as_ref())
            .and_then(|lb| lb.enabled)
            .unwrap_or(false);
        if let (Some(lb), true) = (own_lb, enabled) {
            out.push(
                Diagnostic::at(
                    lb.span.clone(),
                    "a Worker cannot sit behind a load balancer",
                )
                .help("make it a MicroService with ports, or remove `networking.loadBalancer`"),
            );
        }
    }
    out
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

fn check_image(image: &Image, node: &Node, out: &mut Vec<Diagnostic>) {
    if image.tag.as_deref().unwrap_or_default().is_empty() && image.digest.is_none() {
        out.push(
            Diagnostic::at(
                span_at(node, &["image"]),
                "image has neither `tag` nor `digest`",
            )
            .help("add `tag: \"${VERSION}\"` or a `digest: sha256:…`"),
        );
    }
    if let Some(digest) = &image.digest {
        if !digest.starts_with("sha256:") {
            out.push(Diagnostic::at(
                span_at(node, &["image", "digest"]),
                "image digest must start with `sha256:`",
            ));
        }
    }
    if image.repository.contains(':') && !image.repository.contains('/') {
        out.push(
            Diagnostic::at(
                span_at(node, &["image", "repository"]),
                "image repository holds a tag",
            )
            .help("put the tag in `image.tag`"),
        );
    }
}

fn check_env(env: &[EnvVar], secrets: &[SecretRef], node: &Node, out: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for (i, var) in env.iter().enumerate() {
        let span = item_span(node, &["environment"], i, None);
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => out.push(
                Diagnostic::at(span.clone(), format!("environment variable `{}` has both `value` and `valueFrom`", var.name))
                    .help("keep one"),
            ),
            (None, None) => out.push(
                Diagnostic::at(span.clone(), format!("environment variable `{}` has neither `value` nor `valueFrom`", var.name))
                    .help("add `value: …`, or `valueFrom: {component: service/component, output: …}`"),
            ),
            (Some(_), None) if looks_secret(&var.name) => out.push(
                Diagnostic::at(item_span(node, &["environment"], i, Some("value")), format!("`{}` looks like a secret but has a plain value", var.name))
                    .help("store it in Secrets Manager and list it under `secrets:` with a `secretRef`; plain values end up in state and plans"),
            ),
            _ => {}
        }
        if !names.insert(var.name.as_str()) {
            out.push(
                Diagnostic::at(
                    span,
                    format!("environment variable `{}` is set twice", var.name),
                )
                .help("keep one"),
            );
        }
    }
    for (i, secret) in secrets.iter().enumerate() {
        let name = secret.env_var.as_deref().unwrap_or(&secret.name);
        if !names.insert(name) {
            out.push(
                Diagnostic::at(
                    item_span(node, &["secrets"], i, None),
                    format!("`{name}` is set both as a secret and as a variable"),
                )
                .help("keep one"),
            );
        }
        if secret.secret_ref.trim().is_empty() {
            out.push(
                Diagnostic::at(
                    item_span(node, &["secrets"], i, Some("secretRef")),
                    "secretRef is empty",
                )
                .help("name the Secrets Manager secret or its ARN"),
            );
        }
    }
}

fn check_probe(probe: Option<&Probe>, which: &str, node: &Node, out: &mut Vec<Diagnostic>) {
    let Some(p) = probe else { return };
    let methods = usize::from(p.http.is_some())
        + usize::from(p.tcp.is_some())
        + usize::from(!p.command.is_empty());
    if methods != 1 {
        out.push(
            Diagnostic::at(
                span_at(node, &["healthCheck", which]),
                format!("{which} check needs exactly one of `http`, `tcp` and `command`"),
            )
            .help("e.g. `http: {path: /health, port: 8080}`"),
        );
    }
}

fn check_container(container: Option<&Container>, node: &Node, out: &mut Vec<Diagnostic>) {
    if let Some(c) = container {
        if c.command.iter().any(String::is_empty) {
            out.push(Diagnostic::at(
                span_at(node, &["container", "command"]),
                "command has an empty element",
            ));
        }
    }
}

/// Checks a component's settings.
pub fn component(spec: &ComponentSpec, node: &Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    match spec {
        ComponentSpec::MicroService(s) => {
            check_image(&s.image, node, &mut out);
            check_container(s.container.as_ref(), node, &mut out);
            check_env(&s.environment, &s.secrets, node, &mut out);
            let hc = s.health_check.as_ref();
            check_probe(
                hc.and_then(|h| h.readiness.as_ref()),
                "readiness",
                node,
                &mut out,
            );
            check_probe(
                hc.and_then(|h| h.liveness.as_ref()),
                "liveness",
                node,
                &mut out,
            );
            let mut seen = BTreeSet::new();
            for (i, p) in s.ports.iter().enumerate() {
                if p.port == 0 {
                    out.push(Diagnostic::at(
                        item_span(node, &["ports"], i, Some("port")),
                        "port 0 is not a port",
                    ));
                }
                if !seen.insert(p.port) {
                    out.push(Diagnostic::at(
                        item_span(node, &["ports"], i, None),
                        format!("port {} is listed twice", p.port),
                    ));
                }
            }
        }
        ComponentSpec::Worker(s) => {
            check_image(&s.image, node, &mut out);
            check_container(s.container.as_ref(), node, &mut out);
            check_env(&s.environment, &s.secrets, node, &mut out);
            let hc = s.health_check.as_ref();
            if hc.and_then(|h| h.readiness.as_ref()).is_some() {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["healthCheck", "readiness"]),
                        "a Worker takes no readiness check",
                    )
                    .help("workers receive no traffic; use `liveness` with a `command`"),
                );
            }
            check_probe(
                hc.and_then(|h| h.liveness.as_ref()),
                "liveness",
                node,
                &mut out,
            );
        }
        ComponentSpec::Rds(s) => {
            if s.instance.storage.allocated_gb < 20 {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["instance", "storage", "allocatedGB"]),
                        "RDS needs at least 20 GB of storage",
                    )
                    .help("set `allocatedGB: 20` or more"),
                );
            }
            if let Some(max) = s.instance.storage.max_allocated_gb {
                if max < s.instance.storage.allocated_gb {
                    out.push(Diagnostic::at(
                        span_at(node, &["instance", "storage", "maxAllocatedGB"]),
                        "maxAllocatedGB is below allocatedGB",
                    ));
                }
            }
            if !s.instance.class.starts_with("db.") {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["instance", "class"]),
                        format!("`{}` is not an RDS instance class", s.instance.class),
                    )
                    .help("e.g. `db.t3.small`"),
                );
            }
            if s.database.password_secret.secret_ref.trim().is_empty() {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["database", "passwordSecret", "ref"]),
                        "passwordSecret.ref is empty",
                    )
                    .help("name the Secrets Manager secret or its ARN"),
                );
            }
            let valid_db_name = s
                .database
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && s.database
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_db_name {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["database", "name"]),
                        format!("`{}` is not a valid database name", s.database.name),
                    )
                    .help("start with a letter; use letters, digits and `_`"),
                );
            }
        }
        ComponentSpec::DynamoDb(s) => {
            let provisioned = s.billing_mode == Some(BillingMode::Provisioned);
            match (provisioned, &s.capacity) {
                (true, None) => out.push(
                    Diagnostic::at(
                        span_at(node, &["billingMode"]),
                        "PROVISIONED billing needs `capacity`",
                    )
                    .help("add `capacity: {read: 5, write: 5}`, or use PAY_PER_REQUEST"),
                ),
                (false, Some(_)) => out.push(
                    Diagnostic::at(
                        span_at(node, &["capacity"]),
                        "`capacity` applies only to PROVISIONED billing",
                    )
                    .help("remove `capacity`, or set `billingMode: PROVISIONED`"),
                ),
                _ => {}
            }
            if let Some(sort) = &s.keys.sort {
                if sort.name == s.keys.partition.name {
                    out.push(Diagnostic::at(
                        span_at(node, &["keys", "sort", "name"]),
                        "sort key has the partition key's name",
                    ));
                }
            }
        }
        ComponentSpec::S3(s) => {
            if let Some(enc) = &s.encryption {
                if enc.kms_key_id.is_some()
                    && enc.encryption_type != panka_crds::spec::EncryptionType::AwsKms
                {
                    out.push(
                        Diagnostic::at(
                            span_at(node, &["encryption", "kmsKeyId"]),
                            "kmsKeyId needs `type: aws:kms`",
                        )
                        .help("set `type: aws:kms` or remove kmsKeyId"),
                    );
                }
            }
            if let Some(lc) = &s.lifecycle {
                if lc.noncurrent_version_expiration_days.is_some() && s.versioning != Some(true) {
                    out.push(
                        Diagnostic::at(
                            span_at(node, &["lifecycle", "noncurrentVersionExpirationDays"]),
                            "noncurrent versions exist only with versioning",
                        )
                        .help("set `versioning: true`"),
                    );
                }
            }
        }
        ComponentSpec::Sqs(s) => {
            let ranges: [(&str, Option<u32>, u32, u32); 5] = [
                (
                    "messageRetentionPeriod",
                    s.message_retention_period,
                    60,
                    1_209_600,
                ),
                ("visibilityTimeout", s.visibility_timeout, 0, 43_200),
                ("delaySeconds", s.delay_seconds, 0, 900),
                ("receiveWaitTimeSeconds", s.receive_wait_time_seconds, 0, 20),
                ("maxMessageSize", s.max_message_size, 1024, 262_144),
            ];
            for (field, value, min, max) in ranges {
                if let Some(v) = value {
                    if v < min || v > max {
                        out.push(
                            Diagnostic::at(
                                span_at(node, &[field]),
                                format!("{field} {v} is out of range"),
                            )
                            .help(format!("SQS accepts {min} to {max}")),
                        );
                    }
                }
            }
            if s.content_based_deduplication == Some(true) && s.queue_type != Some(QueueType::Fifo)
            {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["contentBasedDeduplication"]),
                        "contentBasedDeduplication applies only to FIFO queues",
                    )
                    .help("set `type: fifo` or remove it"),
                );
            }
            if let Some(dlq) = &s.dead_letter_queue {
                if dlq.max_receive_count.is_some_and(|c| c == 0 || c > 1000) {
                    out.push(Diagnostic::at(
                        span_at(node, &["deadLetterQueue", "maxReceiveCount"]),
                        "maxReceiveCount must be 1 to 1000",
                    ));
                }
            }
        }
        ComponentSpec::ElastiCacheRedis(s) => {
            if !(1..=6).contains(&s.cluster.num_nodes) {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["cluster", "numNodes"]),
                        format!("numNodes {} is out of range", s.cluster.num_nodes),
                    )
                    .help("a replication group has 1 to 6 nodes"),
                );
            }
            if !s.cluster.node_type.starts_with("cache.") {
                out.push(
                    Diagnostic::at(
                        span_at(node, &["cluster", "nodeType"]),
                        format!("`{}` is not an ElastiCache node type", s.cluster.node_type),
                    )
                    .help("e.g. `cache.t3.medium`"),
                );
            }
            if let Some(sec) = &s.security {
                if sec.auth_token_secret.is_some() && sec.transit_encryption != Some(true) {
                    out.push(
                        Diagnostic::at(
                            span_at(node, &["security", "authTokenSecret"]),
                            "an AUTH token needs transit encryption",
                        )
                        .help("set `transitEncryption: true`"),
                    );
                }
            }
        }
        // Derived by panka from the stack, never written by a user: nothing to check here.
        ComponentSpec::Network(_)
        | ComponentSpec::EcsCluster(_)
        | ComponentSpec::LoadBalancer(_)
        | ComponentSpec::ExecutionRole(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permissions_boundary_is_a_managed_policy_arn() {
        for good in [
            "arn:aws:iam::123456789012:policy/panka-task-boundary",
            "arn:aws:iam::123456789012:policy/teams/panka-boundary",
            "arn:aws-us-gov:iam::123456789012:policy/b",
            "arn:aws:iam::aws:policy/PowerUserAccess",
        ] {
            assert!(is_policy_arn(good), "{good}");
        }
        for bad in [
            "arn:aws:iam::123456789012:role/boundary",
            "arn:aws:iam:::policy/b",
            "arn:aws:iam::123456789012:policy/",
            "arn:aws:iam::123456789012:policy/teams/",
            "arn:aws:s3:::policy/b",
            "panka-task-boundary",
        ] {
            assert!(!is_policy_arn(bad), "{bad}");
        }
    }

    #[test]
    fn durations_parse_in_common_forms() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        for bad in ["", "m", "5x", "5m3", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn fargate_sizes_follow_the_published_table() {
        assert!(fargate_memory(256).unwrap().contains(&512));
        assert!(!fargate_memory(256).unwrap().contains(&4096));
        assert!(fargate_memory(1024).unwrap().contains(&8192));
        assert!(fargate_memory(300).is_none());
    }
}
