//! Resources → the files of a stack folder, and the loader's problems with those files → the
//! resource and field to fix (see the [module documentation](super)).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use panka_crds::resource::{Service, Stack, StackResourceSpec};
use panka_crds::{Kind, Metadata};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    belongs, is_reserved_key, ComponentResource, ResourceRef, COMPONENT_LABEL,
    DESCRIPTION_ANNOTATION, ENVIRONMENT_LABEL, SERVICE_LABEL, STACK_LABEL,
};
use crate::diag::{Collector, Diagnostic, Diagnostics, Span};
use crate::graph::Graph;
use crate::load::yaml::{self, Limits, Node, Value as YamlValue};
use crate::load::{self, LoadedStack};
use crate::model::DesiredStack;
use crate::resolve::{normalize_relative, Options};
use crate::source::{is_valid_name, FileTree};

/// The files a Stack resource and its Service and component resources stand for, and which
/// resource each file came from.
#[derive(Debug, Clone)]
pub struct CrdTree {
    /// Stack name (`spec.stack`).
    pub stack: String,
    /// Environment (`spec.environment`).
    pub environment: String,
    /// The files, laid out as in a repository's stack folder (`stacks/{stack}/…`).
    pub tree: FileTree,
    /// Where each file came from, by its repository-relative path.
    origins: BTreeMap<Arc<str>, Origin>,
}

/// The resource a file was built from, and the field of it the file holds.
#[derive(Debug, Clone)]
struct Origin {
    resource: ResourceRef,
    /// Path of the file relative to the stack folder.
    rel: String,
    field: Field,
}

#[derive(Debug, Clone)]
enum Field {
    /// The document's `spec` is this field of the resource (`spec`, `spec.infra`, …).
    Spec(String),
    /// The whole file is this field (a config file: `spec.configData["app.yaml"]`).
    Whole(String),
}

impl CrdTree {
    /// Loads the files: the loader's problems name the resource and field ([`CrdTree::explain`]).
    pub fn load(&self) -> Result<LoadedStack, Diagnostics> {
        load::load(&self.stack, &self.tree).map_err(|d| self.explain(d))
    }

    /// Loads, resolves and orders the stack for its environment — what the repository would
    /// give for the same documents. Problems name the resource and field; each component's
    /// `source` is the resource it was defined by (`MicroService shop/shop-production-api`),
    /// and the stack-wide resources' the Stack.
    pub fn plan_input(&self, options: &Options) -> Result<(DesiredStack, Graph), Diagnostics> {
        let loaded = self.load()?;
        let (mut desired, graph) = crate::validate::plan_input(&loaded, &self.environment, options)
            .map_err(|d| self.explain(d))?;
        for component in desired.components.values_mut() {
            if let Some(origin) = self.origins.get(component.source.as_str()) {
                component.source = origin.resource.to_string();
            }
        }
        Ok((desired, graph))
    }

    /// Rewrites problems found in these files to name the resource (as the span's file) and
    /// the field (leading the message) they came from: `MicroService shop/web: spec.image.tag:
    /// unresolved variable …`. Problems about anything else pass through unchanged.
    pub fn explain(&self, problems: Diagnostics) -> Diagnostics {
        let list: Vec<Diagnostic> = problems.iter().map(|d| self.explain_one(d)).collect();
        Diagnostics::from_vec(list).unwrap_or(problems)
    }

    fn explain_one(&self, d: &Diagnostic) -> Diagnostic {
        let Some(span) = &d.span else {
            return d.clone();
        };
        let Some(origin) = self.origins.get(&span.file) else {
            return d.clone();
        };
        let field = match &origin.field {
            Field::Whole(field) => field.clone(),
            Field::Spec(spec) => self
                .field_at(origin, &span.file, span.line, span.col)
                .map_or_else(|| spec.clone(), |path| rebase(&path, spec)),
        };
        let mut explained = problem(&origin.resource, &field, &d.message);
        explained.help = d.help.clone();
        explained
    }

    /// The path (`spec.image.tag`) of what starts at or most closely before `line:col` in the
    /// document, or `None` when the position is the whole file.
    fn field_at(&self, origin: &Origin, path: &Arc<str>, line: u32, col: u32) -> Option<String> {
        if line == 0 {
            return None;
        }
        let text = self.tree.files.get(&origin.rel)?;
        let root = yaml::parse(path, text, Limits::default())
            .ok()?
            .into_iter()
            .next()?;
        let mut best: Option<((u32, u32), String)> = None;
        let target = (line, col);
        visit(&root, "", &mut |span, field| {
            let at = (span.line, span.col);
            // Later (deeper) nodes at the same position win: a key over the mapping it opens.
            if at <= target && best.as_ref().is_none_or(|(b, _)| at >= *b) {
                best = Some((at, field.to_string()));
            }
        });
        best.map(|(_, field)| field)
    }
}

/// Calls `f` with the span and path of every node and key below `node`, parents first.
fn visit(node: &Node, path: &str, f: &mut impl FnMut(&Span, &str)) {
    f(&node.span, path);
    match &node.value {
        YamlValue::Map(entries) => {
            for e in entries {
                let child = child_path(path, &e.key);
                f(&e.key_span, &child);
                visit(&e.value, &child, f);
            }
        }
        YamlValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                visit(item, &format!("{path}[{i}]"), f);
            }
        }
        YamlValue::Null | YamlValue::Scalar(_) => {}
    }
}

/// `parent.key`, or `parent["key"]` for a key that is not a plain word.
fn child_path(parent: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// A path in a synthesized document as a path in the resource whose field `spec` the
/// document's `spec` holds.
fn rebase(path: &str, spec: &str) -> String {
    if let Some(rest) = path.strip_prefix("spec") {
        if rest.is_empty() || rest.starts_with('.') || rest.starts_with('[') {
            return format!("{spec}{rest}");
        }
    }
    if path.starts_with("metadata") {
        return "metadata".to_string();
    }
    // `apiVersion` and `kind` are written by this module from the resource's kind.
    "kind".to_string()
}

/// A problem with `field` of `resource`: the resource as the span's file (no line: a resource
/// has none a user could look up), the field leading the message.
fn problem(resource: &ResourceRef, field: &str, message: impl fmt::Display) -> Diagnostic {
    Diagnostic::at(
        Span {
            file: Arc::from(resource.to_string()),
            line: 0,
            col: 0,
        },
        format!("{field}: {message}"),
    )
}

/// Converts a Stack resource and the Service and component resources the controller listed into
/// the files of a stack folder. Resources that do not [`belong`](belongs) to the Stack are
/// skipped; every problem with those that do is reported at once, naming resource and field.
pub fn stack_tree(
    stack: &Stack,
    services: &[Service],
    components: &[ComponentResource],
) -> Result<CrdTree, Diagnostics> {
    let stack_ref = ResourceRef::new("Stack", &stack.metadata);
    let mut problems = Collector::default();
    // The controller's own settings (`suspend`, the deletion policy) are no documents.
    let StackResourceSpec {
        stack: name,
        environment,
        source,
        provider,
        infra,
        variables,
        ..
    } = &stack.spec;

    if stack.metadata.name.as_deref().is_none_or(str::is_empty) {
        problems.push(problem(&stack_ref, "metadata.name", "missing"));
    }
    for (field, what, value) in [
        ("spec.stack", "stack", name),
        ("spec.environment", "environment", environment),
    ] {
        if !is_valid_name(value) {
            problems.push(invalid_name(&stack_ref, field, what, value));
        }
    }
    check_label(
        &mut problems,
        &stack_ref,
        &stack.metadata,
        STACK_LABEL,
        name,
    );
    check_label(
        &mut problems,
        &stack_ref,
        &stack.metadata,
        ENVIRONMENT_LABEL,
        environment,
    );
    if source.is_some() {
        problems.push(
            problem(
                &stack_ref,
                "spec.source",
                "this Stack takes its desired state from git, not from resources",
            )
            .help("remove `spec.source` to declare the stack with Service and component resources"),
        );
    }
    // Folder names come from these names: stop before building paths from bad ones.
    if problems.has_errors() {
        return Err(finish(problems));
    }

    let mut b = Builder {
        tree: FileTree::new(format!("stacks/{name}")),
        origins: BTreeMap::new(),
        problems,
    };
    match provider {
        Some(provider) => {
            let spec = serde_json::json!({ "provider": provider, "environments": [environment] });
            b.document(
                "stack.yaml".to_string(),
                Kind::Stack,
                document_metadata(name, &stack.metadata),
                Ok(spec),
                &stack_ref,
                "spec",
            );
        }
        None => b.problems.push(
            problem(&stack_ref, "spec.provider", "missing")
                .help("CRD mode reads provider and region from the Stack: add `provider: {name: aws, region: us-east-1}` to its spec"),
        ),
    }
    if let Some(infra) = infra {
        b.document(
            "infra/stack.yaml".to_string(),
            Kind::StackInfra,
            Metadata {
                name: "stack".to_string(),
                stack: Some(name.clone()),
                ..Metadata::default()
            },
            serde_json::to_value(infra),
            &stack_ref,
            "spec.infra",
        );
    }
    // Always written: it is what makes the environment one the stack has.
    b.document(
        format!("environments/{environment}/variables.yaml"),
        Kind::Variables,
        Metadata {
            name: environment.clone(),
            stack: Some(name.clone()),
            environment: Some(environment.clone()),
            ..Metadata::default()
        },
        serde_json::to_value(variables),
        &stack_ref,
        "spec.variables",
    );

    let mut service_names: BTreeMap<String, ResourceRef> = BTreeMap::new();
    for svc in services
        .iter()
        .filter(|s| belongs(stack, &s.metadata, &s.spec.stack))
    {
        let r = ResourceRef::new("Service", &svc.metadata);
        check_label(&mut b.problems, &r, &svc.metadata, STACK_LABEL, name);
        let Some((svc_name, name_field)) =
            panka_name(&mut b.problems, &r, &svc.metadata, SERVICE_LABEL, "service")
        else {
            continue;
        };
        if let Some(first) = service_names.get(&svc_name) {
            b.problems.push(
                problem(&r, name_field, format!("service `{svc_name}` is also defined by {first}"))
                    .help(format!("one Service resource per service and environment: delete one, or give it another name (or `{SERVICE_LABEL}` label)")),
            );
            continue;
        }
        service_names.insert(svc_name.clone(), r.clone());
        let spec = match &svc.spec.infra_defaults {
            Some(_) => {
                serde_json::json!({ "infrastructure": { "defaults": "./infra/defaults.yaml" } })
            }
            None => Value::Object(Map::new()),
        };
        let mut metadata = document_metadata(&svc_name, &svc.metadata);
        metadata.stack = Some(name.clone());
        b.document(
            format!("services/{svc_name}/service.yaml"),
            Kind::Service,
            metadata,
            Ok(spec),
            &r,
            "spec",
        );
        if let Some(defaults) = &svc.spec.infra_defaults {
            b.document(
                format!("services/{svc_name}/infra/defaults.yaml"),
                Kind::ComponentInfra,
                Metadata {
                    name: "defaults".to_string(),
                    stack: Some(name.clone()),
                    service: Some(svc_name.clone()),
                    ..Metadata::default()
                },
                serde_json::to_value(defaults),
                &r,
                "spec.infraDefaults",
            );
        }
    }

    let mut component_names: BTreeMap<(String, String), ResourceRef> = BTreeMap::new();
    for comp in components
        .iter()
        .filter(|c| belongs(stack, c.metadata(), c.stack()))
    {
        let r = comp.resource_ref();
        let meta = comp.metadata();
        check_label(&mut b.problems, &r, meta, STACK_LABEL, name);
        check_label(&mut b.problems, &r, meta, SERVICE_LABEL, comp.service());
        let Some((comp_name, name_field)) =
            panka_name(&mut b.problems, &r, meta, COMPONENT_LABEL, "component")
        else {
            continue;
        };
        let service = comp.service();
        if !service_names.contains_key(service) {
            b.problems.push(
                problem(
                    &r,
                    "spec.service",
                    format!("no Service `{service}` of stack `{name}` for environment `{environment}`"),
                )
                .help(format!(
                    "create a Service resource named `{service}` (or labelled `{SERVICE_LABEL}: {service}`) with `spec.stack: {name}` in this namespace, or fix `spec.service`"
                )),
            );
            continue;
        }
        let key = (service.to_string(), comp_name.clone());
        if let Some(first) = component_names.get(&key) {
            b.problems.push(
                problem(
                    &r,
                    name_field,
                    format!("component `{service}/{comp_name}` is also defined by {first}"),
                )
                .help(format!("a service has one component of a name: rename one (its `{COMPONENT_LABEL}` label, else its name)")),
            );
            continue;
        }
        component_names.insert(key, r.clone());

        let dir = format!("services/{service}/components/{comp_name}");
        let kind = comp.kind();
        let Some(file) = kind.file_name() else {
            // Every ComponentResource kind is a component kind, and those have a file name.
            continue;
        };
        let mut metadata = document_metadata(&comp_name, meta);
        metadata.stack = Some(name.clone());
        metadata.service = Some(service.to_string());
        b.document(
            format!("{dir}/{file}"),
            kind,
            metadata,
            comp.kind_spec(),
            &r,
            "spec",
        );
        let Some((infra, config_data)) = comp.container_parts() else {
            continue;
        };
        if let Some(infra) = infra {
            b.document(
                format!("{dir}/infra.yaml"),
                Kind::ComponentInfra,
                Metadata {
                    name: comp_name.clone(),
                    stack: Some(name.clone()),
                    service: Some(service.to_string()),
                    ..Metadata::default()
                },
                serde_json::to_value(infra),
                &r,
                "spec.infra",
            );
        }
        for (file, content) in config_data {
            let field = format!("spec.configData[{file:?}]");
            if normalize_relative(file).as_deref() != Some(file.as_str()) {
                b.problems.push(
                    problem(&r, &field, format!("`{file}` is not a file name inside the component's configs"))
                        .help("use a relative path without `.` or `..` parts, e.g. `app.yaml` or `nginx/site.conf`"),
                );
                continue;
            }
            b.file(
                format!("{dir}/configs/{file}"),
                content.clone(),
                &r,
                Field::Whole(field),
            );
        }
    }

    let Builder {
        tree,
        origins,
        problems,
    } = b;
    problems.finish(CrdTree {
        stack: name.clone(),
        environment: environment.clone(),
        tree,
        origins,
    })
}

/// Converts, loads, resolves and orders in one step: what a reconcile in CRD mode starts with.
pub fn desired_stack(
    stack: &Stack,
    services: &[Service],
    components: &[ComponentResource],
    options: &Options,
) -> Result<(DesiredStack, Graph), Diagnostics> {
    stack_tree(stack, services, components)?.plan_input(options)
}

struct Builder {
    tree: FileTree,
    origins: BTreeMap<Arc<str>, Origin>,
    problems: Collector,
}

impl Builder {
    /// Writes a document of `kind` whose `spec` is the resource's field `field`.
    fn document(
        &mut self,
        rel: String,
        kind: Kind,
        metadata: Metadata,
        spec: Result<Value, serde_json::Error>,
        resource: &ResourceRef,
        field: &str,
    ) {
        let text = spec
            .map_err(|e| e.to_string())
            .and_then(|spec| envelope(kind, &metadata, spec));
        match text {
            Ok(text) => self.file(rel, text, resource, Field::Spec(field.to_string())),
            Err(e) => self.problems.push(problem(
                resource,
                field,
                format!("failed to convert it into a {kind} document: {e}"),
            )),
        }
    }

    /// Adds a file that holds `field` of `resource`.
    fn file(&mut self, rel: String, text: String, resource: &ResourceRef, field: Field) {
        let path = self.tree.display_path(&rel);
        self.tree.files.insert(rel.clone(), Arc::from(text));
        self.origins.insert(
            path,
            Origin {
                resource: resource.clone(),
                rel,
                field,
            },
        );
    }
}

/// A repository document as YAML text.
fn envelope(kind: Kind, metadata: &Metadata, spec: Value) -> Result<String, String> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a> {
        api_version: &'static str,
        kind: &'static str,
        metadata: &'a Metadata,
        spec: Value,
    }
    serde_yaml_ng::to_string(&Envelope {
        api_version: kind.api_version(),
        kind: kind.name(),
        metadata,
        spec,
    })
    .map_err(|e| e.to_string())
}

/// A document's metadata from a resource's: its labels except panka's own, its description
/// annotation.
fn document_metadata(name: &str, meta: &ObjectMeta) -> Metadata {
    let labels = meta
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Metadata {
        name: name.to_string(),
        description: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
            .cloned(),
        labels,
        ..Metadata::default()
    }
}

/// The panka name of a resource: its label `label`, else `metadata.name`; with the field it
/// came from. `None` (and a problem recorded) when neither is a valid name.
fn panka_name(
    problems: &mut Collector,
    r: &ResourceRef,
    meta: &ObjectMeta,
    label: &str,
    what: &str,
) -> Option<(String, &'static str)> {
    let labelled = meta.labels.as_ref().and_then(|l| l.get(label));
    let (name, field) = match (labelled, &meta.name) {
        (Some(l), _) => (l, label_field(label)),
        (None, Some(n)) if !n.is_empty() => (n, "metadata.name"),
        (None, _) => {
            problems.push(problem(r, "metadata.name", "missing"));
            return None;
        }
    };
    if !is_valid_name(name) {
        let d = invalid_name(r, field, what, name);
        problems.push(if field == "metadata.name" {
            d.help(format!(
                "panka names use lowercase letters, digits and `-`, start with a letter and have at most 63 characters; set the label `{label}` to the {what}'s panka name"
            ))
        } else {
            d
        });
        return None;
    }
    Some((name.clone(), field))
}

/// The field path of one of panka's labels.
fn label_field(label: &str) -> &'static str {
    match label {
        SERVICE_LABEL => "metadata.labels[\"panka.io/service\"]",
        COMPONENT_LABEL => "metadata.labels[\"panka.io/component\"]",
        STACK_LABEL => "metadata.labels[\"panka.io/stack\"]",
        _ => "metadata.labels[\"panka.io/environment\"]",
    }
}

fn invalid_name(r: &ResourceRef, field: &str, what: &str, value: &str) -> Diagnostic {
    problem(r, field, format!("`{value}` is not a valid {what} name")).help(
        "names use lowercase letters, digits and `-`, start with a letter and have at most 63 characters",
    )
}

/// Records a problem when the label `label` is set and is not `expected`: panka's labels must
/// agree with the spec they repeat, or the controller would map the resource to another Stack
/// than the one it feeds.
fn check_label(
    problems: &mut Collector,
    r: &ResourceRef,
    meta: &ObjectMeta,
    label: &str,
    expected: &str,
) {
    let Some(found) = meta.labels.as_ref().and_then(|l| l.get(label)) else {
        return;
    };
    if found != expected {
        let field = match label {
            STACK_LABEL => "spec.stack",
            SERVICE_LABEL => "spec.service",
            _ => "spec.environment",
        };
        problems.push(
            problem(
                r,
                label_field(label),
                format!("`{found}` does not match {field} `{expected}`"),
            )
            .help(format!(
                "set the label `{label}` to `{expected}`, or remove it"
            )),
        );
    }
}

fn finish(problems: Collector) -> Diagnostics {
    match problems.finish(()) {
        Err(ds) => ds,
        // Only called after a problem was recorded.
        Ok(()) => Diagnostics::from(Diagnostic::general("failed to convert the resources")),
    }
}
