//! Stage **load** (pure): a stack's [`FileTree`] into typed envelopes of every document, with
//! positions kept for messages.
//!
//! The layout, relative to `stacks/{stack}/`:
//!
//! ```text
//! stack.yaml                                           Stack
//! infra/*.yaml                                         StackInfra
//! services/{svc}/service.yaml                          Service
//! services/{svc}/infra/*.yaml                          ComponentInfra (service defaults)
//! services/{svc}/components/{comp}/{kind}.yaml         one component (microservice.yaml, rds.yaml, …)
//! services/{svc}/components/{comp}/infra.yaml          ComponentInfra
//! services/{svc}/components/{comp}/configs/**          config files
//! environments/{env}/variables.yaml                    Variables
//! environments/{env}/<any path above>                  overlay of that file for {env}
//! ```
//!
//! `spec` stays an untyped [`Node`] here: it is typed in resolve, after overlays are merged and
//! `${VARS}` substituted, so a value such as `replicas: ${REPLICAS}` can still be a number.
//! This module reads nothing itself and touches no AWS or Kubernetes API.

pub mod de;
pub mod yaml;

use std::collections::BTreeMap;
use std::sync::Arc;

use panka_crds::{Kind, Metadata};

use crate::diag::{suggest, Collector, Diagnostic, Diagnostics, Sources, Span};
use crate::source::is_valid_name;
use crate::source::FileTree;
use yaml::{Limits, Node, Value};

/// One parsed document: envelope typed, `spec` kept as a node.
#[derive(Debug, Clone)]
pub struct Document {
    /// Repository-relative path.
    pub path: Arc<str>,
    /// The document's kind.
    pub kind: Kind,
    /// Its metadata.
    pub metadata: Metadata,
    /// Where `metadata:` is.
    pub metadata_span: Span,
    /// The `metadata:` node, for the position of each of its fields.
    pub metadata_node: Node,
    /// The `spec:` node (an empty mapping when absent).
    pub spec: Node,
}

impl Document {
    /// Where `metadata.{field}` is written, or `metadata:` itself when the field is absent.
    pub fn metadata_field_span(&self, field: &str) -> Span {
        self.metadata_node
            .get(field)
            .map_or_else(|| self.metadata_span.clone(), |n| n.span.clone())
    }
}

/// A config file of a component.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Repository-relative path.
    pub path: Arc<str>,
    /// Its text.
    pub content: Arc<str>,
}

/// Every document of one stack.
#[derive(Debug, Clone)]
pub struct LoadedStack {
    /// Stack name (its folder).
    pub name: String,
    /// `stack.yaml`.
    pub stack: Document,
    /// `infra/*.yaml`, by file name.
    pub infra: BTreeMap<String, Document>,
    /// Services by name.
    pub services: BTreeMap<String, LoadedService>,
    /// Environment folders by name.
    pub environments: BTreeMap<String, LoadedEnvironment>,
    /// The repository's policy files by repository-relative path, as read: compiled and
    /// evaluated by [`crate::policy`], only by the commands that check policies.
    pub policies: BTreeMap<String, Arc<str>>,
    /// Text of every file (policies too), for snippets in messages.
    pub sources: Sources,
}

/// A service folder.
#[derive(Debug, Clone)]
pub struct LoadedService {
    /// Service name (its folder).
    pub name: String,
    /// `service.yaml`.
    pub doc: Document,
    /// `infra/*.yaml` of the service, by path relative to the service folder.
    pub infra: BTreeMap<String, Document>,
    /// Components by name.
    pub components: BTreeMap<String, LoadedComponent>,
}

/// A component folder.
#[derive(Debug, Clone)]
pub struct LoadedComponent {
    /// Component name (its folder).
    pub name: String,
    /// `{kind}.yaml`.
    pub doc: Document,
    /// `infra.yaml`, if any.
    pub infra: Option<Document>,
    /// Files below `configs/`, by path relative to `configs/`.
    pub configs: BTreeMap<String, ConfigFile>,
}

/// An environment folder.
#[derive(Debug, Clone, Default)]
pub struct LoadedEnvironment {
    /// `variables.yaml`, if any.
    pub variables: Option<Document>,
    /// Overlay documents by the stack-relative path of the file they overlay.
    pub overlays: BTreeMap<String, Document>,
    /// Replacement config files by the stack-relative path of the file they replace.
    pub configs: BTreeMap<String, ConfigFile>,
}

/// Where a stack-relative path belongs.
enum Place<'a> {
    Stack,
    StackInfra(&'a str),
    Service(&'a str),
    ServiceInfra(&'a str, String),
    ComponentFile(&'a str, &'a str, &'a str),
    Config(&'a str, &'a str, String),
    Variables(&'a str),
    Overlay(&'a str, String),
    Ignored,
    Unknown,
}

fn classify(path: &str) -> Place<'_> {
    let parts: Vec<&str> = path.split('/').collect();
    let yaml = path.ends_with(".yaml");
    match parts.as_slice() {
        ["stack.yaml"] => Place::Stack,
        ["infra", f] if yaml => Place::StackInfra(f),
        ["services", svc, "service.yaml"] => Place::Service(svc),
        ["services", svc, "infra", rest @ ..] if yaml && !rest.is_empty() => {
            Place::ServiceInfra(svc, format!("infra/{}", rest.join("/")))
        }
        ["services", svc, "components", comp, "configs", rest @ ..] if !rest.is_empty() => {
            Place::Config(svc, comp, rest.join("/"))
        }
        ["services", svc, "components", comp, f] if yaml => Place::ComponentFile(svc, comp, f),
        ["environments", env, "variables.yaml"] => Place::Variables(env),
        ["environments", env, rest @ ..] if !rest.is_empty() && rest[0] != "environments" => {
            Place::Overlay(env, rest.join("/"))
        }
        _ if yaml || path.ends_with(".yml") => Place::Unknown,
        _ => Place::Ignored,
    }
}

/// Parses every document of a stack. Reports every problem found, not just the first.
pub fn load(name: &str, tree: &FileTree) -> Result<LoadedStack, Diagnostics> {
    let mut problems = Collector::default();
    let mut sources = Sources::default();
    for (rel, text) in &tree.files {
        sources.insert(tree.display_path(rel), text.clone());
    }
    for (path, text) in &tree.policies {
        sources.insert(Arc::from(path.as_str()), text.clone());
    }

    let mut stack_doc = None;
    let mut infra = BTreeMap::new();
    let mut services: BTreeMap<String, ServiceParts> = BTreeMap::new();
    let mut environments: BTreeMap<String, LoadedEnvironment> = BTreeMap::new();
    let mut overlay_paths: Vec<(String, String, Arc<str>)> = Vec::new();

    for (rel, text) in &tree.files {
        let path = tree.display_path(rel);
        match classify(rel) {
            Place::Stack => stack_doc = problems.take(document(&path, text, &[Kind::Stack])),
            Place::StackInfra(file) => {
                if let Some(d) = problems.take(document(&path, text, &[Kind::StackInfra])) {
                    infra.insert(file.to_string(), d);
                }
            }
            Place::Service(svc) => {
                if check_name(&mut problems, &path, "service", svc) {
                    let doc = problems.take(document(&path, text, &[Kind::Service]));
                    services.entry(svc.to_string()).or_default().doc = doc;
                }
            }
            Place::ServiceInfra(svc, file) => {
                if let Some(d) = problems.take(document(&path, text, &[Kind::ComponentInfra])) {
                    services
                        .entry(svc.to_string())
                        .or_default()
                        .infra
                        .insert(file, d);
                }
            }
            Place::ComponentFile(svc, comp, file) => {
                if !check_name(&mut problems, &path, "service", svc)
                    || !check_name(&mut problems, &path, "component", comp)
                {
                    continue;
                }
                let parts = services
                    .entry(svc.to_string())
                    .or_default()
                    .components
                    .entry(comp.to_string())
                    .or_default();
                component_file(&mut problems, parts, &path, file, text);
            }
            Place::Config(svc, comp, file) => {
                let parts = services
                    .entry(svc.to_string())
                    .or_default()
                    .components
                    .entry(comp.to_string())
                    .or_default();
                parts.configs.insert(
                    file,
                    ConfigFile {
                        path: path.clone(),
                        content: text.clone(),
                    },
                );
            }
            Place::Variables(env) => {
                if check_name(&mut problems, &path, "environment", env) {
                    let doc = problems.take(document(&path, text, &[Kind::Variables]));
                    environments.entry(env.to_string()).or_default().variables = doc;
                }
            }
            Place::Overlay(env, target) => {
                if check_name(&mut problems, &path, "environment", env) {
                    overlay_paths.push((env.to_string(), target, path.clone()));
                }
            }
            Place::Ignored => {}
            Place::Unknown => problems.push(unknown_file(&path, rel)),
        }
    }

    let Some(stack) = stack_doc else {
        if !problems.has_errors() {
            problems.push(
                Diagnostic::at(
                    Span::file(&tree.display_path("stack.yaml")),
                    "stack.yaml is missing",
                )
                .help("every stack folder needs a `stack.yaml` of kind `Stack`"),
            );
        }
        return Err(finish_err(problems));
    };
    check_identity(&mut problems, &stack, name, None, None, None);
    for doc in infra.values() {
        check_stack_of(&mut problems, doc, name);
    }

    let mut loaded_services = BTreeMap::new();
    for (svc_name, parts) in services {
        let Some(doc) = parts.doc else {
            // A service.yaml that exists but failed to parse was reported already.
            if !tree
                .files
                .contains_key(&format!("services/{svc_name}/service.yaml"))
            {
                problems.push(
                    Diagnostic::at(
                        Span::file(
                            &tree.display_path(&format!("services/{svc_name}/service.yaml")),
                        ),
                        format!("service `{svc_name}` has no service.yaml"),
                    )
                    .help("add a `service.yaml` of kind `Service` to the service folder"),
                );
            }
            continue;
        };
        check_identity(&mut problems, &doc, &svc_name, Some(name), None, None);
        for d in parts.infra.values() {
            check_stack_of(&mut problems, d, name);
            check_service_of(&mut problems, d, &svc_name);
        }
        let mut components = BTreeMap::new();
        for (comp_name, c) in parts.components {
            let folder = tree.display_path(&format!("services/{svc_name}/components/{comp_name}"));
            let Some(doc) = c.doc else {
                if c.kind_files.is_empty() {
                    problems.push(
                        Diagnostic::at(
                            Span::file(&folder),
                            format!("component `{svc_name}/{comp_name}` has no definition"),
                        )
                        .help(format!("add one of {}", component_file_names())),
                    );
                }
                continue;
            };
            check_identity(
                &mut problems,
                &doc,
                &comp_name,
                Some(name),
                Some(&svc_name),
                None,
            );
            if let Some(infra) = &c.infra {
                check_identity(
                    &mut problems,
                    infra,
                    &comp_name,
                    Some(name),
                    Some(&svc_name),
                    None,
                );
            }
            components.insert(
                comp_name.clone(),
                LoadedComponent {
                    name: comp_name,
                    doc,
                    infra: c.infra,
                    configs: c.configs,
                },
            );
        }
        loaded_services.insert(
            svc_name.clone(),
            LoadedService {
                name: svc_name,
                doc,
                infra: parts.infra,
                components,
            },
        );
    }

    for (env, target, path) in overlay_paths {
        let environment = environments.entry(env.clone()).or_default();
        let Some(text) = tree.files.get(&target_rel(&env, &target)) else {
            continue;
        };
        overlay(
            &mut problems,
            environment,
            &stack,
            &loaded_services,
            &infra,
            &env,
            &target,
            &path,
            text,
            tree.files.contains_key(&target),
        );
    }
    for (env, e) in &environments {
        if let Some(vars) = &e.variables {
            check_identity(&mut problems, vars, env, Some(name), None, Some(env));
        }
    }

    problems.finish(LoadedStack {
        name: name.to_string(),
        stack,
        infra,
        services: loaded_services,
        environments,
        policies: tree.policies.clone(),
        sources,
    })
}

fn target_rel(env: &str, target: &str) -> String {
    format!("environments/{env}/{target}")
}

fn finish_err(problems: Collector) -> Diagnostics {
    match problems.finish(()) {
        Err(ds) => ds,
        // Only called when something was recorded.
        Ok(()) => Diagnostics::from(Diagnostic::general("failed to load stack")),
    }
}

#[derive(Default)]
struct ServiceParts {
    doc: Option<Document>,
    infra: BTreeMap<String, Document>,
    components: BTreeMap<String, ComponentParts>,
}

#[derive(Default)]
struct ComponentParts {
    doc: Option<Document>,
    kind_files: Vec<Arc<str>>,
    infra: Option<Document>,
    configs: BTreeMap<String, ConfigFile>,
}

fn component_file_names() -> String {
    Kind::COMPONENTS
        .iter()
        .filter_map(|k| k.file_name())
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn component_file(
    problems: &mut Collector,
    parts: &mut ComponentParts,
    path: &Arc<str>,
    file: &str,
    text: &str,
) {
    if file == "infra.yaml" {
        parts.infra = problems.take(document(path, text, &[Kind::ComponentInfra]));
        return;
    }
    let Some(kind) = Kind::from_file_name(file) else {
        let names: Vec<&str> = Kind::COMPONENTS
            .iter()
            .filter_map(|k| k.file_name())
            .chain(["infra.yaml"])
            .collect();
        let d = Diagnostic::at(
            Span::file(path),
            format!("`{file}` is not a component file"),
        );
        problems.push(match suggest(file, names.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!(
                "a component folder holds one of {} and optionally `infra.yaml` and `configs/`",
                component_file_names()
            )),
        });
        return;
    };
    if let Some(first) = parts.kind_files.first() {
        problems.push(
            Diagnostic::at(
                Span::file(path),
                "duplicate component: this folder already defines one",
            )
            .help(format!(
                "keep either {first} or this file; one folder is one component"
            )),
        );
        parts.kind_files.push(path.clone());
        return;
    }
    parts.kind_files.push(path.clone());
    parts.doc = problems.take(document(path, text, &[kind]));
}

fn unknown_file(path: &Arc<str>, rel: &str) -> Diagnostic {
    let d = Diagnostic::at(Span::file(path), "panka does not know what this file is");
    if rel.ends_with(".yml") {
        return d.help("panka reads `.yaml` files; rename it");
    }
    d.help(
        "expected stack.yaml, infra/*.yaml, services/{service}/service.yaml, \
         services/{service}/components/{component}/{kind}.yaml or environments/{env}/…",
    )
}

fn check_name(problems: &mut Collector, path: &Arc<str>, what: &str, name: &str) -> bool {
    if is_valid_name(name) {
        return true;
    }
    problems.push(
        Diagnostic::at(Span::file(path), format!("`{name}` is not a valid {what} name"))
            .help("names use lowercase letters, digits and `-`, start with a letter and have at most 63 characters"),
    );
    false
}

/// Parses one file that must hold exactly one document of one of `kinds`.
pub fn document(path: &Arc<str>, text: &str, kinds: &[Kind]) -> Result<Document, Diagnostics> {
    let mut docs = yaml::parse(path, text, Limits::default())?;
    if docs.len() != 1 {
        let d = if docs.is_empty() {
            Diagnostic::at(Span::file(path), "file holds no YAML document")
                .help("add `apiVersion`, `kind`, `metadata` and `spec`")
        } else {
            Diagnostic::at(
                docs[1].span.clone(),
                "file holds more than one YAML document",
            )
            .help("put each document in its own file; remove the `---` separator")
        };
        return Err(d.into());
    }
    let root = docs.remove(0);
    let Value::Map(entries) = &root.value else {
        return Err(Diagnostic::at(
            root.span.clone(),
            format!("expected a mapping, found {}", root.type_name()),
        )
        .help("a document starts with `apiVersion:`, `kind:`, `metadata:` and `spec:`")
        .into());
    };
    let mut problems = Collector::default();
    for e in entries {
        if !matches!(e.key.as_str(), "apiVersion" | "kind" | "metadata" | "spec") {
            let d = Diagnostic::at(e.key_span.clone(), format!("unknown field `{}`", e.key));
            problems.push(
                match suggest(&e.key, ["apiVersion", "kind", "metadata", "spec"]) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => {
                        d.help("a document has only `apiVersion`, `kind`, `metadata` and `spec`")
                    }
                },
            );
        }
    }
    let expected = kinds[0];
    let kind = match root.get("kind") {
        None => {
            problems.push(
                Diagnostic::at(root.span.clone(), "missing field `kind`")
                    .help(format!("add `kind: {expected}`")),
            );
            None
        }
        Some(node) => {
            let text = node.as_str().unwrap_or_default();
            match Kind::from_name(text) {
                Some(k) if kinds.contains(&k) => Some(k),
                Some(k) => {
                    problems.push(
                        Diagnostic::at(
                            node.span.clone(),
                            format!("kind `{k}` does not belong in this file"),
                        )
                        .help(format!("this file must be of kind `{expected}`")),
                    );
                    None
                }
                None => {
                    let d = Diagnostic::at(node.span.clone(), format!("unknown kind `{text}`"));
                    let names = Kind::ALL.map(Kind::name);
                    problems.push(match suggest(text, names) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!("this file must be of kind `{expected}`")),
                    });
                    None
                }
            }
        }
    };
    if let Some(k) = kind {
        match root.get("apiVersion") {
            None => problems.push(
                Diagnostic::at(root.span.clone(), "missing field `apiVersion`")
                    .help(format!("add `apiVersion: {}`", k.api_version())),
            ),
            Some(node) if node.as_str() != Some(k.api_version()) => problems.push(
                Diagnostic::at(
                    node.span.clone(),
                    format!(
                        "unknown apiVersion `{}` for kind `{k}`",
                        node.as_str().unwrap_or_default()
                    ),
                )
                .help(format!("use `apiVersion: {}`", k.api_version())),
            ),
            Some(_) => {}
        }
    }
    let metadata = match root.get("metadata") {
        None => {
            problems.push(
                Diagnostic::at(root.span.clone(), "missing field `metadata`")
                    .help("add `metadata:` with at least `name:`"),
            );
            None
        }
        Some(node) => match de::from_node::<Metadata>(node) {
            Ok(m) => Some((m, node.clone())),
            Err(d) => {
                problems.push(d);
                None
            }
        },
    };
    let spec = match root.get("spec") {
        Some(node) if matches!(node.value, Value::Map(_)) => node.clone(),
        Some(node) if node.value == Value::Null => Node::empty_map(node.span.clone()),
        Some(node) => {
            problems.push(
                Diagnostic::at(
                    node.span.clone(),
                    format!("`spec` must be a mapping, found {}", node.type_name()),
                )
                .help("put the settings on indented lines below `spec:`, e.g. `spec:\n  type: standard`"),
            );
            Node::empty_map(node.span.clone())
        }
        None if kind == Some(Kind::Service) => Node::empty_map(root.span.clone()),
        None => {
            problems.push(
                Diagnostic::at(root.span.clone(), "missing field `spec`")
                    .help("add `spec:` with the settings"),
            );
            Node::empty_map(root.span.clone())
        }
    };
    let (Some(kind), Some((metadata, metadata_node))) = (kind, metadata) else {
        return Err(finish_err(problems));
    };
    let metadata_span = root
        .entry("metadata")
        .map_or_else(|| metadata_node.span.clone(), |e| e.key_span.clone());
    problems.finish(Document {
        path: path.clone(),
        kind,
        metadata,
        metadata_span,
        metadata_node,
        spec,
    })
}

fn check_identity(
    problems: &mut Collector,
    doc: &Document,
    name: &str,
    stack: Option<&str>,
    service: Option<&str>,
    environment: Option<&str>,
) {
    if doc.metadata.name != name {
        problems.push(
            Diagnostic::at(
                doc.metadata_field_span("name"),
                format!(
                    "metadata.name `{}` does not match its folder `{name}`",
                    doc.metadata.name
                ),
            )
            .help(format!("set `name: {name}` or rename the folder")),
        );
    }
    if let Some(stack) = stack {
        check_stack_of(problems, doc, stack);
    }
    if let Some(service) = service {
        check_service_of(problems, doc, service);
    }
    if let (Some(env), Some(found)) = (environment, &doc.metadata.environment) {
        if found != env {
            problems.push(
                Diagnostic::at(
                    doc.metadata_field_span("environment"),
                    format!("metadata.environment `{found}` does not match its folder `{env}`"),
                )
                .help(format!("set `environment: {env}`")),
            );
        }
    }
}

fn check_stack_of(problems: &mut Collector, doc: &Document, stack: &str) {
    match &doc.metadata.stack {
        Some(s) if s == stack => {}
        Some(s) => problems.push(
            Diagnostic::at(
                doc.metadata_field_span("stack"),
                format!("metadata.stack `{s}` does not match the stack folder `{stack}`"),
            )
            .help(format!("set `stack: {stack}`")),
        ),
        None => problems.push(
            Diagnostic::at(
                doc.metadata_span.clone(),
                "missing field `stack` in metadata",
            )
            .help(format!("add `stack: {stack}`")),
        ),
    }
}

fn check_service_of(problems: &mut Collector, doc: &Document, service: &str) {
    match &doc.metadata.service {
        Some(s) if s == service => {}
        Some(s) => problems.push(
            Diagnostic::at(
                doc.metadata_field_span("service"),
                format!("metadata.service `{s}` does not match the service folder `{service}`"),
            )
            .help(format!("set `service: {service}`")),
        ),
        None => problems.push(
            Diagnostic::at(
                doc.metadata_span.clone(),
                "missing field `service` in metadata",
            )
            .help(format!("add `service: {service}`")),
        ),
    }
}

/// Records an environment overlay after finding the base document it overlays by path.
#[allow(clippy::too_many_arguments)]
fn overlay(
    problems: &mut Collector,
    environment: &mut LoadedEnvironment,
    stack: &Document,
    services: &BTreeMap<String, LoadedService>,
    stack_infra: &BTreeMap<String, Document>,
    env: &str,
    target: &str,
    path: &Arc<str>,
    text: &Arc<str>,
    base_exists: bool,
) {
    let base: Option<&Document> = match classify(target) {
        Place::Stack => Some(stack),
        Place::StackInfra(f) => stack_infra.get(f),
        Place::Service(svc) => services.get(svc).map(|s| &s.doc),
        Place::ServiceInfra(svc, f) => services.get(svc).and_then(|s| s.infra.get(&f)),
        Place::ComponentFile(svc, comp, f) => services
            .get(svc)
            .and_then(|s| s.components.get(comp))
            .and_then(|c| {
                if f == "infra.yaml" {
                    c.infra.as_ref()
                } else if c.doc.kind.file_name() == Some(f) {
                    Some(&c.doc)
                } else {
                    None
                }
            }),
        Place::Config(svc, comp, f) => {
            let exists = services
                .get(svc)
                .and_then(|s| s.components.get(comp))
                .is_some_and(|c| c.configs.contains_key(&f));
            if exists {
                environment.configs.insert(
                    target.to_string(),
                    ConfigFile {
                        path: path.clone(),
                        content: text.clone(),
                    },
                );
            } else {
                problems.push(
                    Diagnostic::at(
                        Span::file(path),
                        format!("config overlay for {env} has no base file `{target}`"),
                    )
                    .help("an environment can replace a component's config file, not add one; add it to the component first"),
                );
            }
            return;
        }
        Place::Ignored => return,
        _ => {
            problems.push(unknown_file(path, target));
            return;
        }
    };
    let Some(base) = base else {
        if base_exists {
            // The base file exists but failed to load; that problem is already reported.
            return;
        }
        let d = Diagnostic::at(
            Span::file(path),
            format!("overlay for {env} has no base file `{target}`"),
        );
        problems.push(d.help(
            "an environment overlay changes an existing file; create the base file first, or fix the path to mirror it",
        ));
        return;
    };
    let Some(doc) = problems.take(document(path, text, &[base.kind])) else {
        return;
    };
    if doc.metadata.name != base.metadata.name {
        problems.push(
            Diagnostic::at(
                doc.metadata_field_span("name"),
                format!(
                    "metadata.name `{}` does not match the base `{}`",
                    doc.metadata.name, base.metadata.name
                ),
            )
            .help(format!("set `name: {}`", base.metadata.name)),
        );
    }
    if let Some(stack) = &base.metadata.stack {
        check_stack_of(problems, &doc, stack);
    }
    if let Some(service) = &base.metadata.service {
        check_service_of(problems, &doc, service);
    }
    if let Some(found) = &doc.metadata.environment {
        if found != env {
            problems.push(
                Diagnostic::at(
                    doc.metadata_field_span("environment"),
                    format!("metadata.environment `{found}` does not match its folder `{env}`"),
                )
                .help(format!("set `environment: {env}`")),
            );
        }
    }
    environment.overlays.insert(target.to_string(), doc);
}
