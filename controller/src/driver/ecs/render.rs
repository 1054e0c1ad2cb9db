//! Stage **apply** (and the desired side of **plan**), pure: a desired MicroService or Worker
//! rendered into the shapes of its task definition and service, in the one normal form
//! observe reads AWS into, so a converged component has no difference. Config files become
//! environment variables; the configuration hash and the revision fingerprint are computed
//! here. No I/O: [`container_definition`] and [`task_shape_of`] convert between a
//! [`TaskShape`] and what ECS takes and answers.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, PortMapping, Secret,
    TransportProtocol,
};
use panka_crds::spec::{
    Architecture, Configs, Container, EnvVar, HealthCheck, Image, LoadBalancer, Port, Probe,
    Protocol, SecretRef,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::lb::LbShape;
use super::scaling::{scaling, ScalingShape};
use super::stack_refs::{
    cluster_id, cluster_name, execution_role_id, network_id, stack_assigns_public_ip,
};
use super::{build_error, EcsDriver};
use crate::driver::{DriverError, Lookups, Outputs};
use panka_core::model::{ComponentId, ComponentSpec, DesiredComponent, ResolvedConfig};

/// Task CPU units when the component's infra does not say.
const DEFAULT_CPU: u32 = 256;
/// Task memory (MiB) when the component's infra does not say.
const DEFAULT_MEMORY: u32 = 512;
/// Prefix of the environment variables carrying config files.
pub(super) const CONFIG_PREFIX: &str = "PANKA_CONFIG_";
/// Docker label holding the configuration hash.
const CONFIG_HASH_LABEL: &str = "PANKA_CONFIG_HASH";

// ---------------------------------------------------------------------------------------------
// Shapes: what a task definition and a service hold, in one normal form for both sides
// ---------------------------------------------------------------------------------------------

/// One port mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct PortShape {
    pub(super) name: Option<String>,
    pub(super) port: u16,
    pub(super) protocol: String,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HealthShape {
    pub(super) command: Vec<String>,
    pub(super) interval: i32,
    pub(super) timeout: i32,
    pub(super) retries: i32,
    pub(super) start_period: i32,
}

/// What a task definition holds that panka sets. Environment values are `None` when they depend
/// on an output not known yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct TaskShape {
    pub(super) cpu: u32,
    pub(super) memory: u32,
    pub(super) architecture: String,
    pub(super) execution_role: Option<String>,
    pub(super) container: String,
    pub(super) image: String,
    pub(super) entry_point: Vec<String>,
    pub(super) command: Vec<String>,
    pub(super) working_directory: Option<String>,
    pub(super) ports: Vec<PortShape>,
    pub(super) environment: BTreeMap<String, Option<String>>,
    pub(super) secrets: BTreeMap<String, String>,
    pub(super) health_check: Option<HealthShape>,
    pub(super) log_group: String,
    pub(super) log_region: String,
    pub(super) log_stream_prefix: String,
}

impl TaskShape {
    /// SHA-256 of everything the revision holds, recorded in state as
    /// [`super::TASK_FINGERPRINT`]; `None` while a value depends on an output not known yet.
    pub(super) fn fingerprint(&self) -> Option<String> {
        if self.environment.values().any(Option::is_none) {
            return None;
        }
        let json = serde_json::to_vec(self).ok()?;
        Some(hex::encode(Sha256::digest(json)))
    }

    /// SHA-256 of the config files as the container receives them (the `PANKA_CONFIG_*`
    /// variables), if known. Plain variables are compared one by one (`environment.NAME`), so a
    /// variable changed by hand is one difference, and a `drift.ignore` rule on it hides it
    /// whole.
    pub(super) fn config_hash(&self) -> Option<String> {
        let known: Option<BTreeMap<&String, &String>> = self
            .environment
            .iter()
            .filter(|(k, _)| k.starts_with(CONFIG_PREFIX))
            .map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        let json = serde_json::to_vec(&known?).unwrap_or_default();
        Some(hex::encode(Sha256::digest(json)))
    }
}

/// What the service and its satellites hold.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ServiceShape {
    pub(super) cluster: String,
    pub(super) desired_count: u32,
    pub(super) subnets: Option<Vec<String>>,
    pub(super) security_groups: Option<Vec<String>>,
    pub(super) assign_public_ip: bool,
    pub(super) circuit_breaker: bool,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) load_balancer: Option<LbShape>,
    pub(super) autoscaling: Option<ScalingShape>,
    /// Retention of the log group: `None` when the group does not exist (observed only),
    /// `Some(None)` for "never expire".
    pub(super) log_retention: Option<Option<u32>>,
}

// ---------------------------------------------------------------------------------------------
// Render (pure): a desired component → shapes
// ---------------------------------------------------------------------------------------------

/// The full ARN of a secret reference: an ARN as written, a name as [`EcsDriver::look_up`]
/// found it (the name itself when it was not looked up).
fn secret_arn(lookups: &Lookups, secret_ref: &str) -> String {
    let secret_ref = secret_ref.trim();
    if secret_ref.starts_with("arn:") {
        return secret_ref.to_string();
    }
    lookups
        .get(secret_ref)
        .map_or_else(|| secret_ref.to_string(), str::to_string)
}

/// The settings MicroService and Worker share, borrowed from either.
pub(super) struct Workload<'a> {
    pub(super) image: &'a Image,
    pub(super) architecture: Option<Architecture>,
    pub(super) container: Option<&'a Container>,
    pub(super) ports: &'a [Port],
    pub(super) environment: &'a [EnvVar],
    pub(super) secrets: &'a [SecretRef],
    pub(super) configs: Option<&'a Configs>,
    pub(super) health_check: Option<&'a HealthCheck>,
    /// Only a MicroService has one, and only when enabled.
    pub(super) load_balancer: Option<&'a LoadBalancer>,
}

pub(super) fn workload(component: &DesiredComponent) -> Option<Workload<'_>> {
    let infra = component.infra.as_ref();
    match &component.spec {
        ComponentSpec::MicroService(s) => Some(Workload {
            image: &s.image,
            architecture: s.runtime.as_ref().and_then(|r| r.architecture),
            container: s.container.as_ref(),
            ports: &s.ports,
            environment: &s.environment,
            secrets: &s.secrets,
            configs: s.configs.as_ref(),
            health_check: s.health_check.as_ref(),
            load_balancer: infra
                .and_then(|i| i.networking.as_ref())
                .and_then(|n| n.load_balancer.as_ref())
                .filter(|lb| lb.enabled.unwrap_or(false)),
        }),
        ComponentSpec::Worker(s) => Some(Workload {
            image: &s.image,
            architecture: s.runtime.as_ref().and_then(|r| r.architecture),
            container: s.container.as_ref(),
            ports: &[],
            environment: &s.environment,
            secrets: &s.secrets,
            configs: s.configs.as_ref(),
            health_check: s.health_check.as_ref(),
            load_balancer: None,
        }),
        _ => None,
    }
}

fn image_ref(image: &Image) -> String {
    match (&image.digest, &image.tag) {
        (Some(d), _) => format!("{}@{d}", image.repository),
        (None, Some(t)) => format!("{}:{t}", image.repository),
        (None, None) => image.repository.clone(),
    }
}

/// `PANKA_CONFIG_<NAME>` of a config file.
fn config_var(file: &str) -> String {
    let name: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{CONFIG_PREFIX}{name}")
}

/// Standard base64 with padding (RFC 4648), for config file contents.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The container health check of a liveness probe.
fn health_shape(probe: &Probe) -> Option<HealthShape> {
    let command = if !probe.command.is_empty() {
        if matches!(probe.command[0].as_str(), "CMD" | "CMD-SHELL") {
            probe.command.clone()
        } else {
            std::iter::once("CMD".to_string())
                .chain(probe.command.iter().cloned())
                .collect()
        }
    } else if let Some(http) = &probe.http {
        vec![
            "CMD-SHELL".into(),
            format!(
                "curl -fsS -o /dev/null http://localhost:{}{} || exit 1",
                http.port, http.path
            ),
        ]
    } else if let Some(tcp) = &probe.tcp {
        vec![
            "CMD-SHELL".into(),
            format!("nc -z localhost {} || exit 1", tcp.port),
        ]
    } else {
        return None;
    };
    // ECS refuses values outside these ranges; clamp rather than fail a deploy on them.
    let secs = |v: Option<u32>, default: i32, lo: i32, hi: i32| {
        v.map_or(default, |v| i32::try_from(v).unwrap_or(hi))
            .clamp(lo, hi)
    };
    Some(HealthShape {
        command,
        interval: secs(probe.period_seconds, 30, 5, 300),
        timeout: secs(probe.timeout_seconds, 5, 2, 60),
        retries: secs(probe.failure_threshold, 3, 1, 10),
        start_period: secs(probe.initial_delay_seconds, 0, 0, 300),
    })
}

fn split_list(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// A desired component, rendered.
pub(super) struct Render {
    pub(super) service_name: String,
    pub(super) task: TaskShape,
    pub(super) service: ServiceShape,
}

impl EcsDriver {
    pub(super) fn render(
        &self,
        component: &DesiredComponent,
        outputs: &Outputs,
        lookups: &Lookups,
    ) -> Option<Render> {
        let w = workload(component)?;
        let id = &component.id;
        let naming = &self.ctx.naming;
        let infra = component.infra.as_ref();
        let resources = infra.and_then(|i| i.resources.as_ref());

        let mut environment: BTreeMap<String, Option<String>> = BTreeMap::new();
        for var in w.environment {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(from)) => ComponentId::parse(&from.component, &id.service)
                    .and_then(|target| outputs.get(&target))
                    .and_then(|o| o.get(&from.output))
                    .cloned(),
                (None, None) => Some(String::new()),
            };
            environment.insert(var.name.clone(), value);
        }
        if let Some(configs) = w.configs {
            let files: Vec<&ResolvedConfig> = component.configs.iter().collect();
            environment.insert(
                format!("{CONFIG_PREFIX}DIR"),
                Some(configs.mount_path.clone()),
            );
            environment.insert(
                format!("{CONFIG_PREFIX}FILES"),
                Some(
                    files
                        .iter()
                        .map(|c| format!("{}={}", c.name, config_var(&c.name)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
            for c in files {
                environment.insert(config_var(&c.name), Some(base64(c.content.as_bytes())));
            }
        }
        let secrets = w
            .secrets
            .iter()
            .map(|s| {
                let env = s.env_var.clone().unwrap_or_else(|| s.name.clone());
                let arn = secret_arn(lookups, &s.secret_ref);
                let from = match &s.key {
                    Some(k) => format!("{arn}:{k}::"),
                    None => arn,
                };
                (env, from)
            })
            .collect();
        let mut ports: Vec<PortShape> = w
            .ports
            .iter()
            .map(|p| PortShape {
                name: Some(p.name.clone()),
                port: p.port,
                protocol: match p.protocol {
                    Some(Protocol::Udp) => "udp".into(),
                    _ => "tcp".into(),
                },
            })
            .collect();
        ports.sort_by(|a, b| (a.port, &a.protocol).cmp(&(b.port, &b.protocol)));
        let execution_role = outputs
            .get(&execution_role_id())
            .and_then(|o| o.get("arn"))
            .cloned();
        let task = TaskShape {
            cpu: resources.and_then(|r| r.cpu).unwrap_or(DEFAULT_CPU),
            memory: resources.and_then(|r| r.memory).unwrap_or(DEFAULT_MEMORY),
            architecture: match w.architecture {
                Some(Architecture::Arm64) => "ARM64".into(),
                _ => "X86_64".into(),
            },
            execution_role,
            container: id.component.clone(),
            image: image_ref(w.image),
            entry_point: w.container.map(|c| c.command.clone()).unwrap_or_default(),
            command: w.container.map(|c| c.args.clone()).unwrap_or_default(),
            working_directory: w.container.and_then(|c| c.working_dir.clone()),
            ports,
            environment,
            secrets,
            health_check: w
                .health_check
                .and_then(|h| h.liveness.as_ref())
                .and_then(health_shape),
            log_group: naming.log_group(id),
            log_region: self.region(),
            log_stream_prefix: id.component.clone(),
        };

        let network = outputs.get(&network_id());
        let cluster = outputs
            .get(&cluster_id())
            .and_then(|o| o.get("name"))
            .cloned()
            .unwrap_or_else(|| cluster_name(naming, &self.ctx.infra));
        let public = infra
            .and_then(|i| i.networking.as_ref())
            .and_then(|n| n.assign_public_ip)
            .unwrap_or_else(|| stack_assigns_public_ip(&self.ctx.infra));
        let (desired_count, autoscaling) = scaling(infra);
        // Only the tags panka manages are compared (see [`super::support`]).
        let tags = self.ctx.tag_policy().managed(&self.ctx.tags(id));
        let load_balancer = w.load_balancer.map(|lb| {
            let readiness = w
                .health_check
                .and_then(|h| h.readiness.as_ref())
                .and_then(|p| p.http.as_ref());
            LbShape {
                port: lb
                    .port
                    .or_else(|| w.ports.first().map(|p| p.port))
                    .unwrap_or(80),
                path: lb
                    .path
                    .clone()
                    .unwrap_or_else(|| format!("/{}/{}/*", id.service, id.component)),
                host: lb.host.clone(),
                health_check_path: readiness.map_or_else(|| "/".to_string(), |h| h.path.clone()),
                target_group_tags: tags.clone(),
                rule_tags: tags.clone(),
            }
        });
        let retention = self
            .ctx
            .infra
            .logging
            .as_ref()
            .and_then(|l| l.retention_days);
        let service = ServiceShape {
            cluster,
            desired_count,
            subnets: network
                .and_then(|n| n.get("subnets"))
                .map(|s| split_list(s)),
            security_groups: network
                .and_then(|n| n.get("securityGroups"))
                .map(|s| split_list(s)),
            assign_public_ip: public,
            circuit_breaker: true,
            tags,
            load_balancer,
            autoscaling,
            log_retention: Some(retention),
        };
        Some(Render {
            service_name: self.service_name(id),
            task,
            service,
        })
    }
}

pub(super) fn container_definition(
    id: &ComponentId,
    t: &TaskShape,
) -> Result<ContainerDefinition, DriverError> {
    let mut env = Vec::new();
    for (name, value) in &t.environment {
        let value = value.clone().ok_or_else(|| DriverError::Unexpected {
            component: id.clone(),
            message: format!("environment {name} is not known yet"),
        })?;
        env.push(KeyValuePair::builder().name(name).value(value).build());
    }
    let secrets = t
        .secrets
        .iter()
        .map(|(name, from)| Secret::builder().name(name).value_from(from).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| build_error(id, e))?;
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &t.log_group)
        .options("awslogs-region", &t.log_region)
        .options("awslogs-stream-prefix", &t.log_stream_prefix)
        .build()
        .map_err(|e| build_error(id, e))?;
    let mut c = ContainerDefinition::builder()
        .name(&t.container)
        .image(&t.image)
        .essential(true)
        .set_entry_point(Some(t.entry_point.clone()).filter(|v| !v.is_empty()))
        .set_command(Some(t.command.clone()).filter(|v| !v.is_empty()))
        .set_working_directory(t.working_directory.clone())
        .set_port_mappings(Some(
            t.ports
                .iter()
                .map(|p| {
                    PortMapping::builder()
                        .container_port(i32::from(p.port))
                        .protocol(TransportProtocol::from(p.protocol.as_str()))
                        .set_name(p.name.clone())
                        .build()
                })
                .collect(),
        ))
        .set_environment(Some(env))
        .set_secrets(Some(secrets))
        .log_configuration(log);
    if let Some(hash) = t.config_hash() {
        c = c.docker_labels(CONFIG_HASH_LABEL, hash);
    }
    if let Some(h) = &t.health_check {
        c = c.health_check(
            aws_sdk_ecs::types::HealthCheck::builder()
                .set_command(Some(h.command.clone()))
                .interval(h.interval)
                .timeout(h.timeout)
                .retries(h.retries)
                .start_period(h.start_period)
                .build()
                .map_err(|e| build_error(id, e))?,
        );
    }
    Ok(c.build())
}

/// The shape of a described task definition (the inverse of [`container_definition`]).
pub(super) fn task_shape_of(td: &aws_sdk_ecs::types::TaskDefinition, container: &str) -> TaskShape {
    let defs = td.container_definitions();
    let c = defs
        .iter()
        .find(|c| c.name() == Some(container))
        .or_else(|| defs.first());
    let log = c
        .and_then(|c| c.log_configuration())
        .and_then(|l| l.options());
    let log_opt = |k: &str| log.and_then(|o| o.get(k)).cloned().unwrap_or_default();
    let mut ports: Vec<PortShape> = c
        .map(|c| c.port_mappings())
        .unwrap_or_default()
        .iter()
        .map(|p| PortShape {
            name: p.name().map(str::to_string),
            port: p
                .container_port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
            protocol: p.protocol().map_or("tcp", |p| p.as_str()).to_string(),
        })
        .collect();
    ports.sort_by(|a, b| (a.port, &a.protocol).cmp(&(b.port, &b.protocol)));
    TaskShape {
        cpu: td.cpu().and_then(|c| c.parse().ok()).unwrap_or(0),
        memory: td.memory().and_then(|m| m.parse().ok()).unwrap_or(0),
        architecture: td
            .runtime_platform()
            .and_then(|r| r.cpu_architecture())
            .map_or("X86_64", |a| a.as_str())
            .to_string(),
        execution_role: td.execution_role_arn().map(str::to_string),
        container: c.and_then(|c| c.name()).unwrap_or_default().to_string(),
        image: c.and_then(|c| c.image()).unwrap_or_default().to_string(),
        entry_point: c.map(|c| c.entry_point().to_vec()).unwrap_or_default(),
        command: c.map(|c| c.command().to_vec()).unwrap_or_default(),
        working_directory: c.and_then(|c| c.working_directory()).map(str::to_string),
        ports,
        environment: c
            .map(|c| c.environment())
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| Some((kv.name()?.to_string(), Some(kv.value()?.to_string()))))
            .collect(),
        secrets: c
            .map(|c| c.secrets())
            .unwrap_or_default()
            .iter()
            .map(|s| (s.name().to_string(), s.value_from().to_string()))
            .collect(),
        health_check: c.and_then(|c| c.health_check()).map(|h| HealthShape {
            command: h.command().to_vec(),
            interval: h.interval().unwrap_or(30),
            timeout: h.timeout().unwrap_or(5),
            retries: h.retries().unwrap_or(3),
            start_period: h.start_period().unwrap_or(0),
        }),
        log_group: log_opt("awslogs-group"),
        log_region: log_opt("awslogs-region"),
        log_stream_prefix: log_opt("awslogs-stream-prefix"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn config_files_become_upper_case_variables() {
        assert_eq!(config_var("app.yaml"), "PANKA_CONFIG_APP_YAML");
        assert_eq!(config_var("sub/dir-x.json"), "PANKA_CONFIG_SUB_DIR_X_JSON");
    }

    #[test]
    fn a_digest_wins_over_a_tag() {
        let mut image = Image {
            repository: "r".into(),
            tag: Some("v1".into()),
            digest: None,
        };
        assert_eq!(image_ref(&image), "r:v1");
        image.digest = Some("sha256:ab".into());
        assert_eq!(image_ref(&image), "r@sha256:ab");
    }

    #[test]
    fn probes_render_as_container_health_checks() {
        let http = Probe {
            http: Some(panka_crds::spec::HttpProbe {
                path: "/live".into(),
                port: 8080,
            }),
            period_seconds: Some(1),
            ..Default::default()
        };
        let h = health_shape(&http).expect("http probe");
        assert_eq!(h.command[0], "CMD-SHELL");
        assert!(h.command[1].contains("http://localhost:8080/live"));
        assert_eq!(h.interval, 5, "clamped to the ECS minimum");
        let cmd = Probe {
            command: vec!["/bin/check".into()],
            ..Default::default()
        };
        assert_eq!(
            health_shape(&cmd).expect("command probe").command,
            ["CMD", "/bin/check"]
        );
        assert_eq!(health_shape(&Probe::default()), None);
    }
}
