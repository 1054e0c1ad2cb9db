//! A repository's stack in one environment → custom resources (`panka export`); see the
//! [module documentation](super) for names and labels.
//!
//! Each resource holds the base documents with the environment's overlays merged in and
//! `${VARS}` kept, the environment's variables in the Stack's `spec.variables`, so a value such
//! as `VERSION` stays one value to bump. A `${VAR}` can only stay where the field is text: one
//! written where a number, a boolean or a fixed word belongs (`replicas: ${REPLICAS}`) is
//! exported as its value in this environment. Secrets stay references: the repository holds
//! nothing else.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use panka_crds::resource::{
    DynamoDB, DynamoDbResourceSpec, ElastiCacheRedis, ElastiCacheRedisResourceSpec, MicroService,
    MicroServiceResourceSpec, RdsResourceSpec, S3ResourceSpec, Service, ServiceResourceSpec,
    SqsResourceSpec, Stack, StackResourceSpec, Worker, WorkerResourceSpec, RDS, S3, SQS,
};
use panka_crds::spec::{ServiceSpec, StackInfraSpec, StackSpec, VariablesSpec};
use panka_crds::Kind;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    emit, is_reserved_key, label_problem, ComponentResource, COMPONENT_LABEL,
    DESCRIPTION_ANNOTATION, ENVIRONMENT_LABEL, MANAGED_BY_LABEL, SERVICE_LABEL, STACK_LABEL,
};
use crate::diag::{Collector, Diagnostic, Diagnostics, Span};
use crate::load::de::from_node;
use crate::load::yaml::{Node, Value as YamlValue};
use crate::load::{Document, LoadedComponent, LoadedEnvironment, LoadedService, LoadedStack};
use crate::resolve::merge::merge;
use crate::resolve::vars::{substitute, substitute_node, Scope};
use crate::resolve::{normalize_relative, overlaid, Options};

/// A stack in one environment as custom resources: the Stack, its Services and components.
#[derive(Debug, Clone)]
pub struct StackResources {
    /// The Stack, named `{stack}-{environment}`.
    pub stack: Stack,
    /// Services, by name.
    pub services: Vec<Service>,
    /// Components, by service and name.
    pub components: Vec<ComponentResource>,
}

impl StackResources {
    /// Every resource as JSON, the Stack first.
    pub fn to_values(&self) -> Result<Vec<Value>, serde_json::Error> {
        let mut out = vec![serde_json::to_value(&self.stack)?];
        for s in &self.services {
            out.push(serde_json::to_value(s)?);
        }
        for c in &self.components {
            out.push(serde_json::to_value(c)?);
        }
        Ok(out)
    }

    /// Multi-document YAML for `kubectl apply -f -`: every string a YAML 1.1 reader (kubectl)
    /// could take for something else is quoted (see `emit`).
    pub fn to_yaml(&self) -> Result<String, serde_json::Error> {
        Ok(emit::documents(&self.to_values()?))
    }

    /// One `kind: List` holding every resource, the JSON form `kubectl apply -f -` takes.
    pub fn to_list(&self) -> Result<Value, serde_json::Error> {
        Ok(serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": self.to_values()?,
        }))
    }

    /// Reads resources back from documents (a `List`'s items count as documents): exactly one
    /// Stack, any Services and component resources of API version `panka.io/v1alpha1`.
    pub fn from_values(values: impl IntoIterator<Item = Value>) -> Result<StackResources, String> {
        let mut stacks = Vec::new();
        let mut services = Vec::new();
        let mut components = Vec::new();
        let mut queue: Vec<Value> = values.into_iter().collect();
        queue.reverse();
        while let Some(value) = queue.pop() {
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if kind == "List" {
                if let Some(Value::Array(items)) = value.get("items") {
                    queue.extend(items.iter().rev().cloned());
                }
                continue;
            }
            let api_version = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let expected = format!(
                "{}/{}",
                panka_crds::resource::GROUP,
                panka_crds::resource::VERSION
            );
            if api_version != expected {
                return Err(format!(
                    "a `{kind}` of apiVersion `{api_version}` is not a panka resource (expected `{expected}`)"
                ));
            }
            match kind {
                "Stack" => stacks.push(
                    serde_json::from_value::<Stack>(value)
                        .map_err(|e| format!("not a valid Stack: {e}"))?,
                ),
                "Service" => services.push(
                    serde_json::from_value::<Service>(value)
                        .map_err(|e| format!("not a valid Service: {e}"))?,
                ),
                _ => components.push(ComponentResource::from_value(value)?),
            }
        }
        let stack = match <[Stack; 1]>::try_from(stacks) {
            Ok([stack]) => stack,
            Err(found) => return Err(format!("expected exactly one Stack, found {}", found.len())),
        };
        Ok(StackResources {
            stack,
            services,
            components,
        })
    }
}

/// One environment of a loaded stack as resources. The stack must resolve for the environment
/// (its problems are returned otherwise, as `validate` reports them); `--var` overrides in
/// `options` land in the Stack's `spec.variables`.
pub fn export(
    loaded: &LoadedStack,
    environment: &str,
    options: &Options,
) -> Result<StackResources, Diagnostics> {
    // Only what the repository itself accepts is exported.
    crate::validate::plan_input(loaded, environment, options)?;
    let empty = LoadedEnvironment::default();
    let env = loaded.environments.get(environment).unwrap_or(&empty);
    let mut vars: BTreeMap<String, String> = env
        .variables
        .as_ref()
        .and_then(|doc| from_node::<VariablesSpec>(&doc.spec).ok())
        .map(|VariablesSpec(vars)| vars)
        .unwrap_or_default();
    vars.extend(options.vars.clone());
    let mut x = Exporter {
        loaded,
        env,
        environment,
        vars,
        problems: Collector::default(),
    };
    let resources = x.run();
    x.problems.finish(resources)
}

struct Exporter<'a> {
    loaded: &'a LoadedStack,
    env: &'a LoadedEnvironment,
    environment: &'a str,
    vars: BTreeMap<String, String>,
    problems: Collector,
}

impl Exporter<'_> {
    fn run(&mut self) -> StackResources {
        let loaded = self.loaded;
        let name = &loaded.name;
        let stack_node = overlaid(loaded, self.env, &loaded.stack);
        let provider = self
            .typed::<StackSpec>(&stack_node, None)
            .map(|s| s.provider);
        let mut infra_node: Option<Node> = None;
        for doc in loaded.infra.values() {
            let node = overlaid(loaded, self.env, doc);
            infra_node = Some(match infra_node {
                Some(acc) => merge(&acc, &node),
                None => node,
            });
        }
        let infra = infra_node
            .as_ref()
            .and_then(|n| self.typed::<StackInfraSpec>(n, None));
        let stack_defaults = infra_node.as_ref().and_then(|n| n.get("defaults")).cloned();

        let mut stack = Stack::new(
            &format!("{name}-{}", self.environment),
            StackResourceSpec {
                stack: name.clone(),
                environment: self.environment.to_string(),
                provider,
                infra,
                variables: self.vars.clone(),
                ..StackResourceSpec::default()
            },
        );
        stack.metadata = self.metadata(&[name, self.environment], &loaded.stack, &[]);

        let mut services = Vec::new();
        let mut components = Vec::new();
        for svc in loaded.services.values() {
            let service_defaults = self.service_defaults(svc, stack_defaults.as_ref());
            let infra_defaults = service_defaults
                .as_ref()
                .and_then(|n| self.typed(n, Some(&svc.name)));
            let mut service = Service::new(
                "",
                ServiceResourceSpec {
                    stack: name.clone(),
                    infra_defaults,
                },
            );
            service.metadata = self.metadata(
                &[name, self.environment, &svc.name],
                &svc.doc,
                &[(SERVICE_LABEL, &svc.name)],
            );
            services.push(service);
            let lower = match (&stack_defaults, &service_defaults) {
                (Some(a), Some(b)) => Some(merge(a, b)),
                (a, b) => a.clone().or_else(|| b.clone()),
            };
            for comp in svc.components.values() {
                if let Some(c) = self.component(svc, comp, lower.as_ref()) {
                    components.push(c);
                }
            }
        }
        StackResources {
            stack,
            services,
            components,
        }
    }

    /// The overlaid defaults file a service's `infrastructure.defaults` names, if any.
    fn service_defaults(
        &mut self,
        svc: &LoadedService,
        stack_defaults: Option<&Node>,
    ) -> Option<Node> {
        let node = self.substituted(overlaid(self.loaded, self.env, &svc.doc), Some(&svc.name));
        let spec: ServiceSpec = from_node(&node).ok()?;
        let path = spec.infrastructure?.defaults?;
        // Resolve accepted the stack, so the path is inside the service and the file exists.
        let doc = svc.infra.get(&normalize_relative(&path)?)?;
        let defaults = overlaid(self.loaded, self.env, doc);
        self.refuse_removals(&defaults, stack_defaults);
        Some(defaults)
    }

    fn component(
        &mut self,
        svc: &LoadedService,
        comp: &LoadedComponent,
        lower: Option<&Node>,
    ) -> Option<ComponentResource> {
        let stack = self.loaded.name.clone();
        let service = svc.name.clone();
        let node = overlaid(self.loaded, self.env, &comp.doc);
        let kind = comp.doc.kind;
        let (infra, config_data) = if kind.is_container() {
            let infra = comp.infra.as_ref().and_then(|doc| {
                let own = overlaid(self.loaded, self.env, doc);
                self.refuse_removals(&own, lower);
                self.typed(&own, Some(&svc.name))
            });
            let config_data = comp
                .configs
                .iter()
                .map(|(rel, file)| {
                    let key = format!(
                        "services/{}/components/{}/configs/{rel}",
                        svc.name, comp.name
                    );
                    let file = self.env.configs.get(&key).unwrap_or(file);
                    (rel.clone(), file.content.to_string())
                })
                .collect();
            (infra, config_data)
        } else {
            (None, BTreeMap::new())
        };
        let scope = Some(svc.name.as_str());
        let mut resource = match kind {
            Kind::MicroService => ComponentResource::MicroService(MicroService::new(
                "",
                MicroServiceResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                    infra,
                    config_data,
                },
            )),
            Kind::Worker => ComponentResource::Worker(Worker::new(
                "",
                WorkerResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                    infra,
                    config_data,
                },
            )),
            Kind::Rds => ComponentResource::Rds(RDS::new(
                "",
                RdsResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                },
            )),
            Kind::DynamoDb => ComponentResource::DynamoDb(DynamoDB::new(
                "",
                DynamoDbResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                },
            )),
            Kind::S3 => ComponentResource::S3(S3::new(
                "",
                S3ResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                },
            )),
            Kind::Sqs => ComponentResource::Sqs(SQS::new(
                "",
                SqsResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                },
            )),
            Kind::ElastiCacheRedis => ComponentResource::ElastiCacheRedis(ElastiCacheRedis::new(
                "",
                ElastiCacheRedisResourceSpec {
                    stack,
                    service,
                    spec: self.typed(&node, scope)?,
                },
            )),
            // The loader only files component kinds under `components/`.
            _ => return None,
        };
        *resource.metadata_mut() = self.metadata(
            &[&self.loaded.name, self.environment, &svc.name, &comp.name],
            &comp.doc,
            &[(SERVICE_LABEL, &svc.name), (COMPONENT_LABEL, &comp.name)],
        );
        Some(resource)
    }

    /// A resource's metadata: its name from `parts`, panka's labels and `extra`, the document's
    /// labels and annotations, its description as an annotation.
    fn metadata(&mut self, parts: &[&str], doc: &Document, extra: &[(&str, &str)]) -> ObjectMeta {
        let mut labels = BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), "panka".to_string()),
            (STACK_LABEL.to_string(), self.loaded.name.clone()),
            (ENVIRONMENT_LABEL.to_string(), self.environment.to_string()),
        ]);
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut annotations = BTreeMap::new();
        for (field, map, is_label) in [
            ("labels", &doc.metadata.labels, true),
            ("annotations", &doc.metadata.annotations, false),
        ] {
            for (key, value) in map {
                let problem = if is_reserved_key(key) {
                    Some(format!(
                        "`{key}` is a key panka sets on the resource itself"
                    ))
                } else {
                    label_problem(key, is_label.then_some(value.as_str()))
                };
                if let Some(problem) = problem {
                    self.problems.push(
                        Diagnostic::at(doc.metadata_field_span(field), format!("cannot export {field}: {problem}"))
                            .help("Kubernetes keys are an optional DNS prefix and `/`, then at most 63 letters, digits, `-`, `_` or `.`; label values the same, or empty; keys starting `panka.io/` are panka's"),
                    );
                    continue;
                }
                let target = if is_label {
                    &mut labels
                } else {
                    &mut annotations
                };
                target.insert(key.clone(), value.clone());
            }
        }
        if let Some(description) = &doc.metadata.description {
            annotations.insert(DESCRIPTION_ANNOTATION.to_string(), description.clone());
        }
        ObjectMeta {
            name: Some(resource_name(parts)),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        }
    }

    /// Records a problem for every `key: null` in `node` that would remove a setting `lower`
    /// provides: in a repository that removes an inherited setting, but a resource's typed
    /// spec cannot say "remove", only "absent", so the setting would come back.
    fn refuse_removals(&mut self, node: &Node, lower: Option<&Node>) {
        let (YamlValue::Map(entries), Some(lower)) = (&node.value, lower) else {
            return;
        };
        for e in entries {
            let Some(below) = lower.get(&e.key) else {
                continue;
            };
            if e.value.value == YamlValue::Null {
                self.problems.push(
                    Diagnostic::at(e.key_span.clone(), format!("`{}: null` removes an inherited setting, which a custom resource cannot express", e.key))
                        .help("set the value this component or service needs instead of removing the inherited one, then export again"),
                );
            } else {
                self.refuse_removals(&e.value, Some(below));
            }
        }
    }

    fn scope<'s>(&'s self, service: Option<&'s str>) -> Scope<'s> {
        Scope {
            vars: &self.vars,
            environment: self.environment,
            stack: &self.loaded.name,
            service,
        }
    }

    /// `node` with every `${VAR}` substituted (resolve accepted the stack, so all resolve).
    fn substituted(&self, mut node: Node, service: Option<&str>) -> Node {
        substitute_node(&mut node, &self.scope(service), &mut Vec::new());
        node
    }

    /// Types `node` keeping `${VAR}`s: where typing fails at a scalar holding one (a number
    /// field written `${REPLICAS}`), that scalar alone is substituted and typing tried again.
    fn typed<T: DeserializeOwned>(&mut self, node: &Node, service: Option<&str>) -> Option<T> {
        let result = typed_keeping_vars(node, &self.scope(service));
        match result {
            Ok(value) => Some(value),
            Err(d) => {
                self.problems.push(d);
                None
            }
        }
    }
}

fn typed_keeping_vars<T: DeserializeOwned>(
    node: &Node,
    scope: &Scope<'_>,
) -> Result<T, Diagnostic> {
    let mut resolved: BTreeSet<Span> = BTreeSet::new();
    loop {
        let mut attempt = node.clone();
        substitute_at(&mut attempt, &resolved, scope);
        let err = match from_node::<T>(&attempt) {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let retry = err
            .span
            .as_ref()
            .filter(|s| !resolved.contains(*s) && holds_variable_at(node, s))
            .cloned();
        match retry {
            Some(span) => {
                resolved.insert(span);
            }
            None => {
                // Not a kept variable's doing: type it as resolve does, for resolve's verdict.
                let mut all = node.clone();
                substitute_node(&mut all, scope, &mut Vec::new());
                return from_node(&all);
            }
        }
    }
}

/// Substitutes, in place, the scalars of `node` that start at one of `spans`.
fn substitute_at(node: &mut Node, spans: &BTreeSet<Span>, scope: &Scope<'_>) {
    if spans.is_empty() {
        return;
    }
    match &mut node.value {
        YamlValue::Scalar(s) if spans.contains(&node.span) => {
            if let Ok(text) = substitute(&s.text, scope, &node.span, false) {
                s.text = text;
            }
        }
        YamlValue::Seq(items) => items
            .iter_mut()
            .for_each(|n| substitute_at(n, spans, scope)),
        YamlValue::Map(entries) => entries
            .iter_mut()
            .for_each(|e| substitute_at(&mut e.value, spans, scope)),
        YamlValue::Null | YamlValue::Scalar(_) => {}
    }
}

/// Whether a scalar starting at `span` in `node` holds a `$`.
fn holds_variable_at(node: &Node, span: &Span) -> bool {
    match &node.value {
        YamlValue::Scalar(s) => node.span == *span && s.text.contains('$'),
        YamlValue::Seq(items) => items.iter().any(|n| holds_variable_at(n, span)),
        YamlValue::Map(entries) => entries.iter().any(|e| holds_variable_at(&e.value, span)),
        YamlValue::Null => false,
    }
}

/// `parts` joined by `-`; past Kubernetes' 253 characters, shortened and made unique with 8
/// hex digits of the full name's SHA-256.
fn resource_name(parts: &[&str]) -> String {
    const MAX: usize = 253;
    let name = parts.join("-");
    if name.len() <= MAX {
        return name;
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    // Panka names are ASCII, so every byte index is a character boundary.
    let head = name.get(..MAX - 9).unwrap_or(&name).trim_end_matches('-');
    format!("{head}-{}", &digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_253_characters_are_shortened_with_a_hash() {
        let long = "a".repeat(63);
        let name = resource_name(&[&long, &long, &long, &long]);
        assert_eq!(name.len(), 253);
        assert_ne!(name, resource_name(&[&long, &long, &long, &"b".repeat(63)]));
        assert_eq!(resource_name(&["shop", "production"]), "shop-production");
    }
}
