//! Stage **resolve** (pure): a [`LoadedStack`] and an environment into a [`DesiredStack`].
//!
//! For every document: lay the environment's overlay over the base ([`merge`]), substitute
//! `${VARS}` ([`vars`]), then type the `spec`. Component infrastructure is layered
//! stack defaults < service defaults < component `infra.yaml`, each with its own overlay.
//! References (`dependsOn`, `valueFrom`) are checked across services, and each kind's settings
//! are checked for what AWS would refuse ([`check`]). Every problem found is reported at once.

pub mod check;
pub mod merge;
pub mod vars;

use std::collections::{BTreeMap, BTreeSet};

use panka_crds::spec::{
    ComponentInfraSpec, Provider, ServiceSpec, StackInfraSpec, StackSpec, VariablesSpec,
};
use panka_crds::Kind;
use sha2::{Digest, Sha256};

use crate::diag::{suggest, Collector, Diagnostic, Diagnostics, Span};
use crate::load::de::from_node;
use crate::load::yaml::{Node, Value};
use crate::load::{Document, LoadedComponent, LoadedEnvironment, LoadedService, LoadedStack};
use crate::model::{
    ComponentId, ComponentSpec, DesiredComponent, DesiredService, DesiredStack, RefKind, Reference,
    ResolvedConfig,
};
use merge::merge;
use vars::{
    built_in_help, is_built_in, is_valid_var_name, substitute, substitute_node, Scope,
    Unsubstituted,
};

/// What resolve needs besides the loaded documents.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--var NAME=VALUE` overrides, applied after `variables.yaml`.
    pub vars: BTreeMap<String, String>,
}

/// Environments of a stack: its `environments/` folders and any listed in `stack.yaml`.
pub fn environments(stack: &LoadedStack) -> Vec<String> {
    let mut envs: BTreeSet<String> = stack.environments.keys().cloned().collect();
    if let Some(Value::Seq(items)) = stack.stack.spec.get("environments").map(|n| &n.value) {
        envs.extend(items.iter().filter_map(|n| n.as_str().map(str::to_string)));
    }
    envs.into_iter().collect()
}

/// Parses `NAME=VALUE` pairs given on the command line.
pub fn parse_cli_vars<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut vars = BTreeMap::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(Diagnostic::general(format!(
                "`--var {pair}` is not of the form NAME=VALUE"
            ))
            .help("write e.g. `--var VERSION=v1.2.0`"));
        };
        if !is_valid_var_name(name) {
            return Err(
                Diagnostic::general(format!("`{name}` is not a valid variable name")).help(
                    "variable names use letters, digits and `_` and do not start with a digit",
                ),
            );
        }
        if is_built_in(name) {
            return Err(reserved(name, None));
        }
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(vars)
}

/// Resolves one stack for one environment.
pub fn resolve(
    stack: &LoadedStack,
    environment: &str,
    options: &Options,
) -> Result<DesiredStack, Diagnostics> {
    let known = environments(stack);
    if !known.iter().any(|e| e == environment) {
        let d = Diagnostic::general(format!(
            "stack `{}` has no environment `{environment}`",
            stack.name
        ));
        let d = match suggest(environment, known.iter().map(String::as_str)) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None if known.is_empty() => d.help(format!(
                "create stacks/{}/environments/{environment}/variables.yaml, or list it under `spec.environments` in stack.yaml",
                stack.name
            )),
            None => d.help(format!("known environments: {}", known.join(", "))),
        };
        return Err(d.into());
    }
    let empty = LoadedEnvironment::default();
    let env = stack.environments.get(environment).unwrap_or(&empty);
    let mut r = Resolver {
        stack,
        env,
        environment,
        problems: Collector::default(),
        vars: BTreeMap::new(),
        unsubstituted: BTreeSet::new(),
    };
    r.variables(&options.vars);
    let desired = r.run();
    let Resolver { problems, .. } = r;
    match desired {
        Some(d) => problems.finish(d),
        None => Err(problems
            .finish(())
            .err()
            .unwrap_or_else(|| Diagnostic::general("failed to resolve stack").into())),
    }
}

struct Resolver<'a> {
    stack: &'a LoadedStack,
    env: &'a LoadedEnvironment,
    environment: &'a str,
    problems: Collector,
    vars: BTreeMap<String, String>,
    /// Where the scalars start whose substitution failed (see [`Unsubstituted`]).
    unsubstituted: BTreeSet<Span>,
}

impl<'a> Resolver<'a> {
    fn variables(&mut self, cli: &BTreeMap<String, String>) {
        if let Some(doc) = &self.env.variables {
            if let Value::Map(entries) = &doc.spec.value {
                for e in entries {
                    if !is_valid_var_name(&e.key) {
                        self.problems.push(
                            Diagnostic::at(e.key_span.clone(), format!("`{}` is not a valid variable name", e.key))
                                .help("variable names use letters, digits and `_` and do not start with a digit"),
                        );
                    } else if is_built_in(&e.key) {
                        // Built-ins win, so the definition would be silently ignored.
                        self.problems
                            .push(reserved(&e.key, Some(e.key_span.clone())));
                    }
                }
            }
            if let Some(VariablesSpec(vars)) = self.take(from_node::<VariablesSpec>(&doc.spec)) {
                self.vars = vars;
            }
        }
        // `parse_cli_vars` refuses these already; options built in code come through here.
        for name in cli.keys().filter(|n| is_built_in(n)) {
            self.problems.push(reserved(name, None));
        }
        self.vars
            .extend(cli.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    fn take<T>(&mut self, r: Result<T, Diagnostic>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(d) => {
                self.report(d);
                None
            }
        }
    }

    /// Records a problem found in substituted values, unless it concerns a scalar whose
    /// substitution failed: that scalar's bad reference is already reported, and a second
    /// problem about its raw `${…}` text (not a number, not a `cache.` node type) would only
    /// repeat it less clearly.
    fn report(&mut self, d: Diagnostic) {
        if d.span
            .as_ref()
            .is_some_and(|s| self.unsubstituted.contains(s))
        {
            return;
        }
        self.problems.push(d);
    }

    fn scope(&self, service: Option<&'a str>) -> Scope<'_> {
        Scope {
            vars: &self.vars,
            environment: self.environment,
            stack: &self.stack.name,
            service,
        }
    }

    /// A document's spec with its overlay for this environment laid over it.
    fn overlaid(&self, doc: &Document) -> Node {
        overlaid(self.stack, self.env, doc)
    }

    fn substituted(&mut self, mut node: Node, service: Option<&'a str>) -> Node {
        let mut found = Vec::new();
        substitute_node(&mut node, &self.scope(service), &mut found);
        for Unsubstituted { scalar, problem } in found {
            self.unsubstituted.insert(scalar);
            self.problems.push(problem);
        }
        node
    }

    fn run(&mut self) -> Option<DesiredStack> {
        let stack_node = self.overlaid(&self.stack.stack);
        let stack_node = self.substituted(stack_node, None);
        let stack_spec: Option<StackSpec> = self.take(from_node(&stack_node));

        // Stack infrastructure: every infra/*.yaml (with overlays), merged in file-name order.
        let mut infra_node: Option<Node> = None;
        for doc in self.stack.infra.values() {
            let node = self.overlaid(doc);
            infra_node = Some(match infra_node {
                Some(acc) => merge(&acc, &node),
                None => node,
            });
        }
        // `defaults` is substituted later, once per component, merged with the layers above it
        // (so `${SERVICE}` works there and `$${` escapes are unescaped exactly once).
        let stack_defaults = infra_node.as_ref().and_then(|n| n.get("defaults")).cloned();
        let infra_node = infra_node.map(|n| self.substituted(without(n, "defaults"), None));
        let infra: StackInfraSpec = match &infra_node {
            Some(node) => {
                let infra = self.take(from_node(node)).unwrap_or_default();
                for d in check::stack_infra(&infra, node) {
                    self.report(d);
                }
                infra
            }
            None => StackInfraSpec::default(),
        };

        let mut services = BTreeMap::new();
        let mut components = BTreeMap::new();
        let mut spec_nodes: BTreeMap<ComponentId, Node> = BTreeMap::new();
        for svc in self.stack.services.values() {
            let service_defaults = self.service(svc, &mut services);
            for comp in svc.components.values() {
                if let Some((desired, node)) = self.component(
                    svc,
                    comp,
                    stack_defaults.as_ref(),
                    service_defaults.as_ref(),
                ) {
                    spec_nodes.insert(desired.id.clone(), node);
                    components.insert(desired.id.clone(), desired);
                }
            }
        }
        self.references(&mut components, &spec_nodes);

        let stack_spec = stack_spec?;
        let StackSpec {
            provider,
            environments: _,
        } = stack_spec;
        let Provider { .. } = &provider;
        let mut desired = DesiredStack {
            name: self.stack.name.clone(),
            environment: self.environment.to_string(),
            provider,
            infra: StackInfraSpec {
                defaults: None,
                ..infra
            },
            services,
            components,
            variables: self.vars.clone(),
        };
        let source = self
            .stack
            .infra
            .values()
            .next()
            .map_or(&self.stack.stack.path, |d| &d.path);
        crate::stack::add_resources(&mut desired, source);
        Some(desired)
    }

    /// Resolves a service document; returns its infrastructure defaults node, if any.
    fn service(
        &mut self,
        svc: &'a LoadedService,
        services: &mut BTreeMap<String, DesiredService>,
    ) -> Option<Node> {
        let node = self.overlaid(&svc.doc);
        let node = self.substituted(node, Some(&svc.name));
        let spec: ServiceSpec = self.take(from_node(&node))?;
        services.insert(
            svc.name.clone(),
            DesiredService {
                name: svc.name.clone(),
                description: svc.doc.metadata.description.clone(),
                labels: svc.doc.metadata.labels.clone(),
            },
        );
        let defaults_path = spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.defaults.as_deref());
        let mut referenced = None;
        let mut result = None;
        if let Some(path) = defaults_path {
            let span = node
                .get("infrastructure")
                .and_then(|n| n.get("defaults"))
                .map_or_else(|| node.span.clone(), |n| n.span.clone());
            match normalize_relative(path) {
                None => self.problems.push(
                    Diagnostic::at(span, format!("`{path}` leaves the service folder"))
                        .help("point `infrastructure.defaults` at a file below the service folder, e.g. `./infra/defaults.yaml`"),
                ),
                Some(rel) => match svc.infra.get(&rel) {
                    Some(doc) => {
                        referenced = Some(rel);
                        let n = self.overlaid(doc);
                        // Substituted with the component layers that merge over it.
                        result = Some(n);
                    }
                    None => {
                        let d = Diagnostic::at(span, format!("infrastructure defaults file `{path}` not found"));
                        self.problems.push(match suggest(&rel, svc.infra.keys().map(String::as_str)) {
                            Some(s) => d.help(format!("did you mean `./{s}`?")),
                            None => d.help(format!("create stacks/{}/services/{}/{rel}", self.stack.name, svc.name)),
                        });
                    }
                },
            }
        }
        for (rel, doc) in &svc.infra {
            if referenced.as_deref() != Some(rel.as_str()) {
                self.problems.push(
                    Diagnostic::at(Span::file(&doc.path), "service infrastructure file is not used")
                        .help(format!("reference it from service.yaml: `spec.infrastructure.defaults: ./{rel}`, or delete it")),
                );
            }
        }
        result
    }

    fn component(
        &mut self,
        svc: &'a LoadedService,
        comp: &LoadedComponent,
        stack_defaults: Option<&Node>,
        service_defaults: Option<&Node>,
    ) -> Option<(DesiredComponent, Node)> {
        let id = ComponentId::new(&svc.name, &comp.name);
        let kind = comp.doc.kind;
        let node = self.overlaid(&comp.doc);
        let node = self.substituted(node, Some(&svc.name));
        let spec = self.typed(kind, &node);

        let infra = if kind.is_container() {
            let own = comp.infra.as_ref().map(|d| self.overlaid(d));
            let mut layered: Option<Node> = stack_defaults.cloned();
            for layer in [service_defaults.cloned(), own.clone()]
                .into_iter()
                .flatten()
            {
                layered = Some(match layered {
                    Some(acc) => merge(&acc, &layer),
                    None => layer,
                });
            }
            match layered {
                Some(n) => {
                    let n = self.substituted(n, Some(&svc.name));
                    let infra: Option<ComponentInfraSpec> = self.take(from_node(&n));
                    if let Some(infra) = &infra {
                        for d in check::component_infra(kind, infra, &n, own.as_ref()) {
                            self.report(d);
                        }
                    }
                    infra
                }
                None => Some(ComponentInfraSpec::default()),
            }
        } else {
            if let Some(doc) = &comp.infra {
                self.problems.push(
                    Diagnostic::at(
                        Span::file(&doc.path),
                        format!("{kind} components take no infra.yaml"),
                    )
                    .help(format!(
                        "infra.yaml sizes MicroService and Worker tasks; set {kind} settings in {}",
                        kind.file_name().unwrap_or("its file")
                    )),
                );
            }
            None
        };

        let spec = spec?;
        for d in check::component(&spec, &node) {
            self.report(d);
        }
        let configs = self.configs(svc, comp, &spec, &node);
        Some((
            DesiredComponent {
                id,
                spec,
                infra,
                configs,
                references: Vec::new(),
                description: comp.doc.metadata.description.clone(),
                labels: comp.doc.metadata.labels.clone(),
                source: comp.doc.path.to_string(),
            },
            node,
        ))
    }

    fn typed(&mut self, kind: Kind, node: &Node) -> Option<ComponentSpec> {
        let spec = match kind {
            Kind::MicroService => from_node(node).map(ComponentSpec::MicroService),
            Kind::Worker => from_node(node).map(ComponentSpec::Worker),
            Kind::Rds => from_node(node).map(ComponentSpec::Rds),
            Kind::DynamoDb => from_node(node).map(ComponentSpec::DynamoDb),
            Kind::S3 => from_node(node).map(ComponentSpec::S3),
            Kind::Sqs => from_node(node).map(ComponentSpec::Sqs),
            Kind::ElastiCacheRedis => from_node(node).map(ComponentSpec::ElastiCacheRedis),
            other => Err(Diagnostic::at(
                node.span.clone(),
                format!("{other} is not a component kind"),
            )),
        };
        self.take(spec)
    }

    fn configs(
        &mut self,
        svc: &'a LoadedService,
        comp: &LoadedComponent,
        spec: &ComponentSpec,
        node: &Node,
    ) -> Vec<ResolvedConfig> {
        let configs = match spec {
            ComponentSpec::MicroService(s) => s.configs.as_ref(),
            ComponentSpec::Worker(s) => s.configs.as_ref(),
            _ => None,
        };
        let Some(configs) = configs else {
            return Vec::new();
        };
        let file_nodes: Vec<Span> = match node
            .get("configs")
            .and_then(|n| n.get("files"))
            .map(|n| &n.value)
        {
            Some(Value::Seq(items)) => items.iter().map(|n| n.span.clone()).collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for (i, name) in configs.files.iter().enumerate() {
            let span = file_nodes
                .get(i)
                .cloned()
                .unwrap_or_else(|| node.span.clone());
            let Some(rel) = normalize_relative(name) else {
                self.problems.push(
                    Diagnostic::at(
                        span,
                        format!("config file `{name}` leaves the component's configs/ folder"),
                    )
                    .help("list files by their path inside configs/, e.g. `app.yaml`"),
                );
                continue;
            };
            let overlay_key = format!(
                "services/{}/components/{}/configs/{rel}",
                svc.name, comp.name
            );
            let file = self
                .env
                .configs
                .get(&overlay_key)
                .or_else(|| comp.configs.get(&rel));
            let Some(file) = file else {
                let d = Diagnostic::at(
                    span,
                    format!("config file `{name}` not found in {}/configs/", comp.name),
                );
                self.problems.push(
                    match suggest(&rel, comp.configs.keys().map(String::as_str)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "create stacks/{}/services/{}/components/{}/configs/{rel}",
                            self.stack.name, svc.name, comp.name
                        )),
                    },
                );
                continue;
            };
            let span = Span {
                file: file.path.clone(),
                line: 1,
                col: 1,
            };
            match substitute(&file.content, &self.scope(Some(&svc.name)), &span, false) {
                Ok(content) => out.push(ResolvedConfig {
                    name: rel,
                    sha256: hex::encode(Sha256::digest(content.as_bytes())),
                    content,
                }),
                Err(d) => self.problems.push(d),
            }
        }
        out
    }

    fn references(
        &mut self,
        components: &mut BTreeMap<ComponentId, DesiredComponent>,
        nodes: &BTreeMap<ComponentId, Node>,
    ) {
        // Every component that exists in the repository counts as a target, typed or not, so a
        // component with its own problem does not also show up as "missing" in its dependants.
        let kinds: BTreeMap<ComponentId, Kind> = self
            .stack
            .services
            .values()
            .flat_map(|s| {
                s.components
                    .values()
                    .map(move |c| (ComponentId::new(&s.name, &c.name), c.doc.kind))
            })
            .collect();
        let names: Vec<String> = kinds.keys().map(ToString::to_string).collect();
        for (id, comp) in components.iter_mut() {
            let Some(node) = nodes.get(id) else { continue };
            let mut refs = Vec::new();
            let dep_spans: Vec<Span> = match node.get("dependsOn").map(|n| &n.value) {
                Some(Value::Seq(items)) => items.iter().map(|n| n.span.clone()).collect(),
                _ => Vec::new(),
            };
            for (i, text) in comp.spec.depends_on().iter().enumerate() {
                let span = dep_spans
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| node.span.clone());
                if let Some(target) = self.target(id, text, &span, &kinds, &names) {
                    refs.push(Reference {
                        target,
                        kind: RefKind::DependsOn,
                        span: Some(span),
                    });
                }
            }
            let env_nodes: Vec<&Node> = match node.get("environment").map(|n| &n.value) {
                Some(Value::Seq(items)) => items.iter().collect(),
                _ => Vec::new(),
            };
            let env = match &comp.spec {
                ComponentSpec::MicroService(s) => s.environment.as_slice(),
                ComponentSpec::Worker(s) => s.environment.as_slice(),
                _ => &[],
            };
            for (i, var) in env.iter().enumerate() {
                let Some(from) = &var.value_from else {
                    continue;
                };
                let vf_node = env_nodes.get(i).and_then(|n| n.get("valueFrom"));
                let comp_span = vf_node
                    .and_then(|n| n.get("component"))
                    .map_or_else(|| node.span.clone(), |n| n.span.clone());
                let out_span = vf_node
                    .and_then(|n| n.get("output"))
                    .map_or_else(|| node.span.clone(), |n| n.span.clone());
                let Some(target) = self.target(id, &from.component, &comp_span, &kinds, &names)
                else {
                    continue;
                };
                let target_kind = kinds[&target];
                if !target_kind.outputs().contains(&from.output.as_str()) {
                    let d = Diagnostic::at(
                        out_span,
                        format!(
                            "{target_kind} component `{target}` has no output `{}`",
                            from.output
                        ),
                    );
                    self.problems.push(
                        match suggest(&from.output, target_kind.outputs().iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!(
                                "{target_kind} outputs: {}",
                                target_kind.outputs().join(", ")
                            )),
                        },
                    );
                    continue;
                }
                refs.push(Reference {
                    target,
                    kind: RefKind::ValueFrom {
                        env: var.name.clone(),
                        output: from.output.clone(),
                    },
                    span: Some(comp_span),
                });
            }
            comp.references = refs;
        }
    }

    fn target(
        &mut self,
        from: &ComponentId,
        text: &str,
        span: &Span,
        kinds: &BTreeMap<ComponentId, Kind>,
        names: &[String],
    ) -> Option<ComponentId> {
        let Some(target) = ComponentId::parse(text, &from.service) else {
            self.problems.push(
                Diagnostic::at(
                    span.clone(),
                    format!("`{text}` is not a component reference"),
                )
                .help("write `service/component`, e.g. `user-service/database`"),
            );
            return None;
        };
        if &target == from {
            self.problems.push(
                Diagnostic::at(span.clone(), format!("component `{from}` refers to itself"))
                    .help("remove the reference"),
            );
            return None;
        }
        if !kinds.contains_key(&target) {
            let d = Diagnostic::at(
                span.clone(),
                format!("`{text}` refers to a component that does not exist"),
            );
            // Compare like with like: a component name within its service, or a service name.
            let same_service: Vec<&str> = kinds
                .keys()
                .filter(|k| k.service == target.service && *k != from)
                .map(|k| k.component.as_str())
                .collect();
            let hint = if same_service.is_empty() {
                let services: BTreeSet<&str> = kinds.keys().map(|k| k.service.as_str()).collect();
                suggest(&target.service, services)
                    .map(|svc| ComponentId::new(svc, &target.component))
                    .filter(|id| kinds.contains_key(id) && id != from)
                    .map(|id| id.to_string())
            } else {
                suggest(&target.component, same_service).map(|c| format!("{}/{c}", target.service))
            };
            self.problems.push(match hint {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "components of stack `{}`: {}",
                    self.stack.name,
                    names.join(", ")
                )),
            });
            return None;
        }
        Some(target)
    }
}

/// A document's spec with the overlay `env` holds for it laid over it (the overlay key is the
/// document's stack-relative path).
pub(crate) fn overlaid(stack: &LoadedStack, env: &LoadedEnvironment, doc: &Document) -> Node {
    let prefix_len = format!("stacks/{}/", stack.name).len();
    let rel = doc.path.get(prefix_len..).unwrap_or(&doc.path);
    match env.overlays.get(rel) {
        Some(over) => merge(&doc.spec, &over.spec),
        None => doc.spec.clone(),
    }
}

/// A user variable named like a built-in: at its key in variables.yaml, or from `--var`.
fn reserved(name: &str, at: Option<Span>) -> Diagnostic {
    let message = format!("`{name}` is a built-in variable and cannot be defined");
    let d = match at {
        Some(span) => Diagnostic::at(span, message),
        None => Diagnostic::general(format!("{message} with `--var`")),
    };
    d.help(built_in_help(name))
}

/// A mapping without one of its keys.
fn without(mut node: Node, key: &str) -> Node {
    if let Value::Map(entries) = &mut node.value {
        entries.retain(|e| e.key != key);
    }
    node
}

/// A relative path with `.` removed, or `None` if it is absolute, empty or climbs out with `..`.
pub fn normalize_relative(path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\\') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_cannot_escape() {
        assert_eq!(
            normalize_relative("./infra/defaults.yaml").as_deref(),
            Some("infra/defaults.yaml")
        );
        assert_eq!(normalize_relative("app.yaml").as_deref(), Some("app.yaml"));
        for bad in ["../x", "a/../../b", "/etc/passwd", "", ".", "a\\b"] {
            assert_eq!(normalize_relative(bad), None, "{bad}");
        }
    }

    use crate::source::FileTree;
    use std::sync::Arc;

    /// A one-service stack `s` with a Worker `w`, extra files layered on top.
    fn stack(extra: &[(&str, &str)]) -> LoadedStack {
        let mut tree = FileTree::new("stacks/s");
        let mut put = |path: &str, text: &str| {
            tree.files.insert(path.to_string(), Arc::from(text));
        };
        put("stack.yaml", "apiVersion: core.panka.io/v1\nkind: Stack\nmetadata: {name: s}\nspec: {provider: {name: aws, region: us-east-1}}\n");
        put("environments/dev/variables.yaml", "apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {name: dev, stack: s}\nspec: {}\n");
        put(
            "services/svc/service.yaml",
            "apiVersion: core.panka.io/v1\nkind: Service\nmetadata: {name: svc, stack: s}\n",
        );
        put("services/svc/components/w/worker.yaml", "apiVersion: components.panka.io/v1\nkind: Worker\nmetadata: {name: w, service: svc, stack: s}\nspec: {image: {repository: r, tag: t}}\n");
        for (path, text) in extra {
            put(path, text);
        }
        crate::load::load("s", &tree).expect("loads")
    }

    #[test]
    fn stack_defaults_are_substituted_once_per_component_with_its_service() {
        let loaded = stack(&[(
            "infra/defaults.yaml",
            "apiVersion: infra.panka.io/v1\nkind: StackInfra\nmetadata: {name: defaults, stack: s}\nspec:\n  defaults:\n    networking:\n      loadBalancer: {path: \"/${SERVICE}/$${raw}\"}\n",
        )]);
        let desired = resolve(&loaded, "dev", &Options::default()).expect("resolves");
        let infra = desired.components[&ComponentId::new("svc", "w")]
            .infra
            .clone()
            .unwrap();
        let path = infra
            .networking
            .unwrap()
            .load_balancer
            .unwrap()
            .path
            .unwrap();
        assert_eq!(path, "/svc/${raw}");
    }

    #[test]
    fn a_worker_load_balancer_set_in_an_environment_overlay_is_refused() {
        let loaded = stack(&[
            ("services/svc/components/w/infra.yaml", "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: w, service: svc, stack: s}\nspec: {scaling: {replicas: 1}}\n"),
            ("environments/dev/services/svc/components/w/infra.yaml", "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: w, service: svc, stack: s}\nspec:\n  networking:\n    loadBalancer: {enabled: true}\n"),
        ]);
        let err = resolve(&loaded, "dev", &Options::default()).expect_err("refused");
        let d = err.first();
        assert!(
            d.message
                .contains("Worker cannot sit behind a load balancer"),
            "{d}"
        );
        assert!(
            d.span.as_ref().unwrap().file.contains("environments/dev"),
            "{d}"
        );
    }

    /// The messages of every problem resolving `loaded` for `dev` reports.
    fn problems(loaded: &LoadedStack) -> Vec<String> {
        match resolve(loaded, "dev", &Options::default()) {
            Ok(_) => Vec::new(),
            Err(ds) => ds.iter().map(|d| d.message.clone()).collect(),
        }
    }

    #[test]
    fn an_unresolved_variable_is_the_only_problem_its_value_causes() {
        // A number field would also refuse the raw text, a node type check its missing prefix.
        let cases = [
            (
                "services/svc/components/w/infra.yaml",
                "apiVersion: infra.panka.io/v1\nkind: ComponentInfra\nmetadata: {name: w, service: svc, stack: s}\nspec:\n  scaling:\n    replicas: ${REPLICAS}\n",
                "`${REPLICAS}`",
            ),
            (
                "services/svc/components/c/elasticache.yaml",
                "apiVersion: components.panka.io/v1\nkind: ElastiCacheRedis\nmetadata: {name: c, service: svc, stack: s}\nspec:\n  engine: {version: \"7.0\"}\n  cluster:\n    nodeType: ${NODE}\n    numNodes: 1\n",
                "`${NODE}`",
            ),
        ];
        for (path, text, variable) in cases {
            let loaded = stack(&[(path, text)]);
            let found = problems(&loaded);
            assert_eq!(found, [format!("unresolved variable {variable}")], "{path}");
        }
    }

    #[test]
    fn a_variable_named_like_a_built_in_is_refused_at_its_key() {
        for name in vars::BUILT_INS {
            let loaded = stack(&[(
                "environments/dev/variables.yaml",
                &format!("apiVersion: core.panka.io/v1\nkind: Variables\nmetadata: {{name: dev, stack: s}}\nspec:\n  VERSION: v1\n  {name}: mine\n"),
            )]);
            let err = resolve(&loaded, "dev", &Options::default()).expect_err("refused");
            let d = err.first();
            assert_eq!(
                d.message,
                format!("`{name}` is a built-in variable and cannot be defined")
            );
            let span = d.span.as_ref().expect("at the key");
            assert_eq!(
                (&*span.file, span.line, span.col),
                ("stacks/s/environments/dev/variables.yaml", 6, 3)
            );
            assert_eq!(
                d.help.as_deref(),
                Some(format!("rename it; ${{{name}}} is set by panka").as_str())
            );
        }
    }

    #[test]
    fn a_built_in_cannot_be_set_with_var_either() {
        let err = parse_cli_vars(["ENVIRONMENT=prod"]).expect_err("refused");
        assert!(err.message.contains("built-in"), "{err}");
        assert!(err.span.is_none());
        // Options built in code, not parsed, are refused when resolving.
        let loaded = stack(&[]);
        let options = Options {
            vars: BTreeMap::from([("SERVICE".to_string(), "x".to_string())]),
        };
        let err = resolve(&loaded, "dev", &options).expect_err("refused");
        assert!(
            err.first().message.contains("`SERVICE` is a built-in"),
            "{}",
            err.first()
        );
    }

    #[test]
    fn cli_vars_must_be_name_value_pairs() {
        let vars = parse_cli_vars(["VERSION=v1", "EMPTY="]).unwrap();
        assert_eq!(vars["VERSION"], "v1");
        assert_eq!(vars["EMPTY"], "");
        assert!(parse_cli_vars(["novalue"]).is_err());
        assert!(parse_cli_vars(["9X=1"]).is_err());
    }
}
