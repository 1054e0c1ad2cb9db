//! The field tables of `docs/reference.md`, generated from the JSON schemas of the API types.
//!
//! The page keeps its hand-written prose; each field table sits between two markers,
//!
//! ```text
//! <!-- generated: fields of StackSpec (cargo run -p panka-crds --bin crdgen) -->
//! …
//! <!-- end generated -->
//! ```
//!
//! and [`update`] rewrites only what is between them, from the schema of the type the marker
//! names. So the doc comments of `spec.rs`, `meta.rs` and `resource.rs` are the single source of
//! every row, for the page and for the CRDs' descriptions alike.
//!
//! How a schema becomes rows:
//! - one row per field, in the order the struct declares it; a nested object is inlined: its
//!   fields follow it, written dotted (`networking.vpc`), list items with `[]`
//!   (`drift.ignore[].field`), map values with `*`;
//! - except a field whose type has a table of its own (see [`tables`]: another kind's spec, a
//!   probe): its type is a link to that table, and it is not expanded;
//! - type: `string`, `int`, `number`, `bool`, `list of …`, `map string → …`, an enum as its
//!   values (`` `a` \| `b` ``), `object`;
//! - required: **yes** when the field is required in its object; **yes** (with `x`) when that
//!   object is itself the optional field `x`, or sits inside it; else no;
//! - meaning: the field's doc comment, on one line.
//!
//! Field order: schemars' JSON maps are sorted by key (serde_json without `preserve_order`), so
//! the order is taken from serde's own field lists, which `serde_reflection` traces.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use serde_reflection::{ContainerFormat, Tracer, TracerConfig};

use crate::resource::{StackResourceSpec, StackStatus};
use crate::spec::{
    ComponentInfraSpec, DynamoDbSpec, ElastiCacheRedisSpec, MicroServiceSpec, Probe, RdsSpec,
    S3Spec, ServiceSpec, SqsSpec, StackInfraSpec, StackSpec, VariablesSpec, WorkerSpec,
};
use crate::{Kind, Metadata};

/// The command that regenerates the tables (and the CRDs).
pub const REGENERATE: &str = "cargo run -p panka-crds --bin crdgen";

/// Where the page is, relative to the workspace root.
pub const REFERENCE_PATH: &str = "docs/reference.md";

const BEGIN: &str = "<!-- generated: fields of ";
const END: &str = "<!-- end generated -->";

/// Why the tables could not be generated or the page not rewritten.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// serde_reflection could not trace a type's fields.
    #[error("failed to trace the fields of `{type_name}`: {message}")]
    Trace {
        /// The type traced.
        type_name: String,
        /// What serde_reflection said.
        message: String,
    },
    /// A schema shape the generator does not render.
    #[error(
        "failed to render the table of `{table}`: `{path}` has an unsupported schema ({what})"
    )]
    Unsupported {
        /// The table being rendered.
        table: String,
        /// The field's path in it.
        path: String,
        /// What was found.
        what: String,
    },
    /// A marker names a type that has no table.
    #[error("line {line}: no table of `{name}` is generated; known tables: {known}")]
    UnknownTable {
        /// Line of the marker (1-based).
        line: usize,
        /// The name in the marker.
        name: String,
        /// The names that have tables.
        known: String,
    },
    /// A marker is not followed by its end marker.
    #[error("line {line}: the table of `{name}` has no `{END}` after it")]
    Unterminated {
        /// Line of the marker (1-based).
        line: usize,
        /// The name in the marker.
        name: String,
    },
    /// An end marker without a marker before it.
    #[error("line {line}: `{END}` without a `{BEGIN}…` marker before it")]
    StrayEnd {
        /// Line of the end marker (1-based).
        line: usize,
    },
    /// A table the page has no place for.
    #[error(
        "the page has no block for the table of `{name}`; add `{BEGIN}{name} ({REGENERATE}) -->` \
         and `{END}` where it belongs"
    )]
    MissingBlock {
        /// The table's type.
        name: String,
    },
}

/// Which columns a table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A repository kind's spec: field, type, required, default / meaning.
    Spec,
    /// A custom resource's spec: the same columns, headed `spec field`.
    ResourceSpec,
    /// A custom resource's status: field, type, meaning (nothing in a status is "required").
    Status,
}

/// One generated table: the fields of one API type.
#[derive(Debug, Clone)]
pub struct Table {
    /// The type's name (its schema's title), as markers name it.
    name: String,
    /// The kind whose spec this is, if any.
    kind: Option<Kind>,
    /// Anchor of the table's section on the page.
    anchor: &'static str,
    /// How a link to this table reads in another table.
    link_text: &'static str,
    layout: Layout,
    schema: Value,
    /// Field names of every struct reachable from the type, in declaration order.
    order: BTreeMap<String, Vec<String>>,
}

impl Table {
    fn of<T: JsonSchema + DeserializeOwned>(
        kind: Option<Kind>,
        anchor: &'static str,
        link_text: &'static str,
        layout: Layout,
    ) -> Result<Table, ReferenceError> {
        let schema = schemars::schema_for!(T).to_value();
        let name = schema
            .get("title")
            .and_then(Value::as_str)
            .map_or_else(|| T::schema_name().into_owned(), str::to_string);
        let order = field_order::<T>(&name)?;
        Ok(Table {
            name,
            kind,
            anchor,
            link_text,
            layout,
            schema,
            order,
        })
    }

    /// The type's name, as the page's markers name it, e.g. `StackInfraSpec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The repository kind whose spec this table lists, if it is one.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    /// Anchor of the table's section on the page, e.g. `stackinfra`.
    pub fn anchor(&self) -> &str {
        self.anchor
    }

    /// The table in Markdown, header included, each line ending in a newline; `tables` are
    /// those fields may link to.
    pub fn render(&self, tables: &[Table]) -> Result<String, ReferenceError> {
        let mut walker = Walker {
            table: self,
            tables,
            rows: Vec::new(),
            depth: 0,
        };
        walker.root()?;
        let mut out = String::new();
        match self.layout {
            Layout::Spec => {
                out.push_str("| field | type | required | default / meaning |\n|---|---|---|---|\n")
            }
            Layout::ResourceSpec => {
                out.push_str("| spec field | type | required | meaning |\n|---|---|---|---|\n")
            }
            Layout::Status => out.push_str("| status field | type | meaning |\n|---|---|---|\n"),
        }
        for row in walker.rows {
            let mut cells = vec![row.field, row.ty];
            if self.layout != Layout::Status {
                cells.push(row.required);
            }
            cells.push(row.meaning);
            out.push_str("| ");
            out.push_str(
                &cells
                    .iter()
                    .map(|c| cell(c))
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
            out.push_str(" |\n");
        }
        Ok(out)
    }
}

/// The table of a repository kind's spec; `None` for stack-wide kinds, which are never written.
pub fn kind_table(kind: Kind) -> Result<Option<Table>, ReferenceError> {
    fn spec<T: JsonSchema + DeserializeOwned>(
        kind: Kind,
        anchor: &'static str,
        link_text: &'static str,
    ) -> Result<Option<Table>, ReferenceError> {
        Table::of::<T>(Some(kind), anchor, link_text, Layout::Spec).map(Some)
    }
    match kind {
        Kind::Stack => spec::<StackSpec>(kind, "stack", "Stack spec"),
        Kind::Service => spec::<ServiceSpec>(kind, "service", "Service spec"),
        Kind::Variables => spec::<VariablesSpec>(kind, "variables-kind", "Variables spec"),
        Kind::StackInfra => spec::<StackInfraSpec>(kind, "stackinfra", "StackInfra spec"),
        Kind::ComponentInfra => {
            spec::<ComponentInfraSpec>(kind, "componentinfra", "ComponentInfra spec")
        }
        Kind::MicroService => spec::<MicroServiceSpec>(kind, "microservice", "MicroService spec"),
        Kind::Worker => spec::<WorkerSpec>(kind, "worker", "Worker spec"),
        Kind::Rds => spec::<RdsSpec>(kind, "rds", "RDS spec"),
        Kind::DynamoDb => spec::<DynamoDbSpec>(kind, "dynamodb", "DynamoDB spec"),
        Kind::S3 => spec::<S3Spec>(kind, "s3", "S3 spec"),
        Kind::Sqs => spec::<SqsSpec>(kind, "sqs", "SQS spec"),
        Kind::ElastiCacheRedis => {
            spec::<ElastiCacheRedisSpec>(kind, "elasticacheredis", "ElastiCacheRedis spec")
        }
        Kind::Network | Kind::EcsCluster | Kind::LoadBalancer | Kind::ExecutionRole => Ok(None),
    }
}

/// Every table the page holds: one per repository kind, the document envelope's `metadata`, the
/// probe shared by MicroService and Worker, and the Stack custom resource's spec and status.
pub fn tables() -> Result<Vec<Table>, ReferenceError> {
    let mut tables = Vec::new();
    for kind in Kind::ALL {
        tables.extend(kind_table(kind)?);
    }
    tables.push(Table::of::<Metadata>(
        None,
        "metadata",
        "metadata",
        Layout::Spec,
    )?);
    tables.push(Table::of::<Probe>(None, "probe", "probe", Layout::Spec)?);
    tables.push(Table::of::<StackResourceSpec>(
        None,
        "stack-resource",
        "Stack resource spec",
        Layout::ResourceSpec,
    )?);
    tables.push(Table::of::<StackStatus>(
        None,
        "stack-resource",
        "Stack resource status",
        Layout::Status,
    )?);
    Ok(tables)
}

/// The names of the generated blocks of a page, in page order.
pub fn blocks(doc: &str) -> Vec<String> {
    doc.lines().filter_map(block_name).collect()
}

/// The page with every generated block rewritten from the current schemas; everything outside
/// the markers is kept byte for byte.
pub fn update(doc: &str) -> Result<String, ReferenceError> {
    let tables = tables()?;
    update_with(doc, &tables)
}

fn update_with(doc: &str, tables: &[Table]) -> Result<String, ReferenceError> {
    let mut out = String::with_capacity(doc.len());
    let mut seen = Vec::new();
    let mut lines = doc.split_inclusive('\n').enumerate();
    while let Some((index, line)) = lines.next() {
        out.push_str(line);
        if line.trim() == END {
            return Err(ReferenceError::StrayEnd { line: index + 1 });
        }
        let Some(name) = block_name(line) else {
            continue;
        };
        let Some(table) = tables.iter().find(|t| t.name == name) else {
            return Err(ReferenceError::UnknownTable {
                line: index + 1,
                name,
                known: tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        // Drop the old table up to the end marker, which is kept.
        let end = loop {
            match lines.next() {
                Some((_, l)) if l.trim() == END => break l,
                Some(_) => {}
                None => {
                    return Err(ReferenceError::Unterminated {
                        line: index + 1,
                        name,
                    })
                }
            }
        };
        out.push_str(&table.render(tables)?);
        out.push_str(end);
        seen.push(name);
    }
    if let Some(missing) = tables.iter().find(|t| !seen.contains(&t.name)) {
        return Err(ReferenceError::MissingBlock {
            name: missing.name.clone(),
        });
    }
    Ok(out)
}

fn block_name(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(BEGIN)?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Field names of every struct reachable from `T`, in declaration order.
fn field_order<T: DeserializeOwned>(
    name: &str,
) -> Result<BTreeMap<String, Vec<String>>, ReferenceError> {
    let mut tracer = Tracer::new(TracerConfig::default());
    tracer
        .trace_simple_type::<T>()
        .map_err(|e| ReferenceError::Trace {
            type_name: name.to_string(),
            message: e.to_string(),
        })?;
    // Only struct field lists are read. An enum nested in a struct is traced one variant per
    // pass, so some may be left incomplete; `registry()` refuses that, but it does not matter
    // for field lists, which are complete after one pass.
    Ok(tracer
        .registry_unchecked()
        .into_iter()
        .filter_map(|(name, format)| match format {
            ContainerFormat::Struct(fields) => {
                Some((name, fields.into_iter().map(|f| f.name).collect()))
            }
            _ => None,
        })
        .collect())
}

/// One row before it is escaped into cells.
struct Row {
    field: String,
    ty: String,
    required: String,
    meaning: String,
}

/// What a field holds, once `Option` and `$ref` are seen through.
enum Shape<'a> {
    Scalar(&'static str),
    Enum(Vec<String>),
    Object {
        name: String,
        schema: &'a Map<String, Value>,
    },
    Link(&'a Table),
    List(Box<Shape<'a>>),
    Map(Box<Shape<'a>>),
}

impl Shape<'_> {
    fn describe(&self) -> String {
        match self {
            Shape::Scalar(s) => (*s).to_string(),
            Shape::Enum(values) => values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" | "),
            Shape::Object { .. } => "object".to_string(),
            Shape::Link(t) => format!("[{}](#{})", t.link_text, t.anchor),
            Shape::List(item) => format!("list of {}", item.describe()),
            Shape::Map(value) => format!("map string → {}", value.describe()),
        }
    }
}

struct Walker<'a> {
    table: &'a Table,
    tables: &'a [Table],
    rows: Vec<Row>,
    /// Objects being expanded, outermost first: a guard against a type that contains itself.
    depth: usize,
}

/// Deeper than any API type nests; only a type that contains itself gets there.
const MAX_DEPTH: usize = 16;

impl<'a> Walker<'a> {
    fn root(&mut self) -> Result<(), ReferenceError> {
        let schema = &self.table.schema;
        let name = self.table.name.clone();
        match self.shape(schema, &name)? {
            Shape::Object { name, schema } => self.object(&name, schema, "", None),
            // A spec that is a map (Variables): one row for any key.
            Shape::Map(value) => {
                self.rows.push(Row {
                    field: "*any name*".to_string(),
                    ty: value.describe(),
                    required: "no".to_string(),
                    meaning: description(schema),
                });
                Ok(())
            }
            _ => Err(self.unsupported(&name, "neither an object nor a map")),
        }
    }

    /// Rows for the fields of an object, `prefix` before each name; `within` is the optional
    /// field this object is (or sits inside), which its required fields need.
    fn object(
        &mut self,
        type_name: &str,
        schema: &'a Map<String, Value>,
        prefix: &str,
        within: Option<&str>,
    ) -> Result<(), ReferenceError> {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            // An object without fields (`{}`) has no rows.
            return Ok(());
        };
        if self.depth >= MAX_DEPTH {
            return Err(self.unsupported(prefix, "nested too deep: a type that contains itself?"));
        }
        self.depth += 1;
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let order = self.table.order.get(type_name).ok_or_else(|| {
            self.unsupported(prefix, &format!("no field order traced for `{type_name}`"))
        })?;
        if let Some(stray) = properties.keys().find(|k| !order.contains(k)) {
            return Err(self.unsupported(
                &join(prefix, stray),
                &format!("not a field serde knows of `{type_name}`"),
            ));
        }
        // Fields serde knows but the schema does not are skipped ones (`#[serde(skip)]`).
        for key in order.iter().filter(|k| properties.contains_key(*k)) {
            let path = join(prefix, key);
            let is_required = required.contains(&key.as_str());
            self.field(&path, key, &properties[key], is_required, within)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn field(
        &mut self,
        path: &str,
        key: &str,
        schema: &'a Value,
        is_required: bool,
        within: Option<&str>,
    ) -> Result<(), ReferenceError> {
        let shape = self.shape(schema, path)?;
        let required = match (is_required, within) {
            (false, _) => "no".to_string(),
            (true, None) => "**yes**".to_string(),
            (true, Some(parent)) => format!("**yes** (with `{parent}`)"),
        };
        let mut meaning = description(schema);
        if meaning.is_empty() {
            meaning = self.referenced_description(schema);
        }
        self.rows.push(Row {
            field: format!("`{path}`"),
            ty: shape.describe(),
            required,
            meaning,
        });
        // A required object's fields need what it needs; an optional one's need it.
        let within = if is_required { within } else { Some(key) };
        match shape {
            Shape::Object { name, schema } => self.object(&name, schema, path, within),
            Shape::List(item) => match *item {
                Shape::Object { name, schema } => {
                    self.object(&name, schema, &format!("{path}[]"), None)
                }
                _ => Ok(()),
            },
            Shape::Map(value) => match *value {
                Shape::Object { name, schema } => {
                    self.object(&name, schema, &format!("{path}.*"), None)
                }
                _ => Ok(()),
            },
            Shape::Scalar(_) | Shape::Enum(_) | Shape::Link(_) => Ok(()),
        }
    }

    fn shape(&self, schema: &'a Value, path: &str) -> Result<Shape<'a>, ReferenceError> {
        let Some(obj) = schema.as_object() else {
            return Err(self.unsupported(path, "not a schema object"));
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            let (name, def) = self.definition(reference, path)?;
            if let Some(table) = self
                .tables
                .iter()
                .find(|t| t.name == name && t.name != self.table.name)
            {
                return Ok(Shape::Link(table));
            }
            return match self.shape(def, path)? {
                Shape::Object { schema, .. } => Ok(Shape::Object {
                    name: name.to_string(),
                    schema,
                }),
                other => Ok(other),
            };
        }
        // `Option<T>` of a referenced type: `anyOf: [T, {type: null}]`.
        if let Some(any_of) = obj.get("anyOf").and_then(Value::as_array) {
            let not_null: Vec<&Value> = any_of.iter().filter(|s| !is_null(s)).collect();
            return match not_null.as_slice() {
                [one] if any_of.len() == 2 => self.shape(one, path),
                _ => Err(self.unsupported(path, "anyOf other than an Option")),
            };
        }
        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            return enum_values(values.iter()).ok_or_else(|| self.unsupported(path, "enum"));
        }
        // An enum whose variants have doc comments: `oneOf` of `const`s.
        if let Some(one_of) = obj.get("oneOf").and_then(Value::as_array) {
            return enum_values(one_of.iter().filter_map(|v| v.get("const")))
                .filter(|_| one_of.iter().all(|v| v.get("const").is_some()))
                .ok_or_else(|| self.unsupported(path, "oneOf other than an enum"));
        }
        let instance_type = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // `Option<T>` of a plain type: `type: [T, "null"]`.
            Some(Value::Array(types)) => {
                let not_null: Vec<&str> = types
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect();
                match not_null.as_slice() {
                    [one] => *one,
                    _ => return Err(self.unsupported(path, "several types")),
                }
            }
            _ => return Err(self.unsupported(path, "no type")),
        };
        Ok(match instance_type {
            "string" => Shape::Scalar("string"),
            "integer" => Shape::Scalar("int"),
            "number" => Shape::Scalar("number"),
            "boolean" => Shape::Scalar("bool"),
            "array" => {
                let items = obj
                    .get("items")
                    .ok_or_else(|| self.unsupported(path, "array without items"))?;
                Shape::List(Box::new(self.shape(items, &format!("{path}[]"))?))
            }
            "object" => match obj.get("additionalProperties") {
                Some(value @ Value::Object(_)) if !obj.contains_key("properties") => {
                    Shape::Map(Box::new(self.shape(value, &format!("{path}.*"))?))
                }
                _ => Shape::Object {
                    name: obj
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    schema: obj,
                },
            },
            other => return Err(self.unsupported(path, &format!("type {other}"))),
        })
    }

    fn definition(
        &self,
        reference: &str,
        path: &str,
    ) -> Result<(&'a str, &'a Value), ReferenceError> {
        let table: &'a Table = self.table;
        reference
            .strip_prefix("#/$defs/")
            .and_then(|name| {
                let (name, def) = table
                    .schema
                    .get("$defs")?
                    .as_object()?
                    .get_key_value(name)?;
                Some((name.as_str(), def))
            })
            .ok_or_else(|| self.unsupported(path, &format!("unresolved $ref {reference}")))
    }

    /// The doc comment of the type a field refers to, for a field without one of its own.
    fn referenced_description(&self, schema: &Value) -> String {
        let reference = schema.get("$ref").or_else(|| {
            schema
                .get("anyOf")?
                .as_array()?
                .iter()
                .find_map(|s| s.get("$ref"))
        });
        reference
            .and_then(Value::as_str)
            .and_then(|r| self.definition(r, "").ok())
            .map(|(_, def)| description(def))
            .unwrap_or_default()
    }

    fn unsupported(&self, path: &str, what: &str) -> ReferenceError {
        ReferenceError::Unsupported {
            table: self.table.name.clone(),
            path: path.to_string(),
            what: what.to_string(),
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn is_null(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

fn enum_values<'v>(values: impl Iterator<Item = &'v Value>) -> Option<Shape<'static>> {
    let values: Option<Vec<String>> = values
        .filter(|v| !v.is_null())
        .map(|v| v.as_str().map(str::to_string))
        .collect();
    values.filter(|v| !v.is_empty()).map(Shape::Enum)
}

/// A schema's description on one line: doc comments wrap, a table cell cannot.
fn description(schema: &Value) -> String {
    schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text as a table cell: a `|` would end the cell, also inside a code span.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// A sample spec.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct SampleSpec {
        /// Declared first, sorted last.
        zone: String,
        /// Optional nested object.
        #[serde(default)]
        outer: Option<Outer>,
        /// A list of objects.
        #[serde(default)]
        items: Vec<Item>,
        /// Labels | with a pipe.
        #[serde(default)]
        labels: BTreeMap<String, String>,
        /// A shared sub-spec.
        #[serde(default)]
        shared: Option<Shared>,
        /// Mode, `a` or `b`.
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        undocumented: Option<Shared>,
    }

    /// The outer object.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Outer {
        /// Required when `outer` is set.
        inner_name: String,
        /// A required object in an optional one.
        deep: Deep,
    }

    /// Deep.
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Deep {
        /// Still needs `outer`.
        count: u32,
    }

    /// One item.
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Item {
        /// Required in every item.
        weight: f64,
    }

    /// Has a table of its own.
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Shared {
        /// Whether.
        on: bool,
    }

    /// Modes.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        /// First.
        FirstMode,
        /// Second.
        Second,
    }

    fn sample_tables() -> Vec<Table> {
        vec![
            Table::of::<SampleSpec>(None, "sample", "Sample spec", Layout::Spec).unwrap(),
            Table::of::<Shared>(None, "shared", "shared", Layout::Spec).unwrap(),
        ]
    }

    #[test]
    fn rows_follow_declaration_order_with_nested_fields_inlined() {
        let tables = sample_tables();
        let rendered = tables[0].render(&tables).unwrap();
        let expected = "\
| field | type | required | default / meaning |
|---|---|---|---|
| `zone` | string | **yes** | Declared first, sorted last. |
| `outer` | object | no | Optional nested object. |
| `outer.innerName` | string | **yes** (with `outer`) | Required when `outer` is set. |
| `outer.deep` | object | **yes** (with `outer`) | A required object in an optional one. |
| `outer.deep.count` | int | **yes** (with `outer`) | Still needs `outer`. |
| `items` | list of object | no | A list of objects. |
| `items[].weight` | number | **yes** | Required in every item. |
| `labels` | map string → string | no | Labels \\| with a pipe. |
| `shared` | [shared](#shared) | no | A shared sub-spec. |
| `mode` | `first-mode` \\| `second` | no | Mode, `a` or `b`. |
| `undocumented` | [shared](#shared) | no | Has a table of its own. |
";
        assert_eq!(rendered, expected);
    }

    #[test]
    fn a_table_does_not_link_to_itself() {
        let tables = sample_tables();
        let rendered = tables[1].render(&tables).unwrap();
        assert!(rendered.ends_with("| `on` | bool | **yes** | Whether. |\n"));
    }

    #[test]
    fn a_spec_that_is_a_map_has_one_row_for_any_key() {
        let table = Table::of::<VariablesSpec>(None, "v", "v", Layout::Spec).unwrap();
        let rendered = table.render(&[]).unwrap();
        let row = rendered.lines().nth(2).unwrap();
        assert!(
            row.starts_with("| *any name* | string | no | `Variables` ("),
            "{row}"
        );
    }

    #[test]
    fn status_tables_have_no_required_column() {
        let table = Table::of::<Shared>(None, "s", "s", Layout::Status).unwrap();
        assert_eq!(
            table.render(&[]).unwrap(),
            "| status field | type | meaning |\n|---|---|---|\n| `on` | bool | Whether. |\n"
        );
    }

    #[test]
    fn update_rewrites_only_between_the_markers() {
        let tables = sample_tables();
        let doc = format!(
            "# Title\n\nProse.\n\n{BEGIN}Shared ({REGENERATE}) -->\n| stale |\n{END}\n\
             between\n{BEGIN}SampleSpec -->\n{END}\nafter\n"
        );
        let updated = update_with(&doc, &tables).unwrap();
        let expected_shared = tables[1].render(&tables).unwrap();
        assert!(updated.starts_with(&format!(
            "# Title\n\nProse.\n\n{BEGIN}Shared ({REGENERATE}) -->\n{expected_shared}{END}\nbetween\n"
        )));
        assert!(updated.ends_with(&format!("{END}\nafter\n")));
        assert_eq!(update_with(&updated, &tables).unwrap(), updated);
        assert_eq!(blocks(&updated), ["Shared", "SampleSpec"]);
    }

    #[test]
    fn update_refuses_unknown_unterminated_stray_and_missing_blocks() {
        let tables = sample_tables();
        let both = format!("{BEGIN}Shared -->\n{END}\n{BEGIN}SampleSpec -->\n{END}\n");
        let unknown = format!("{both}{BEGIN}Nope -->\n{END}\n");
        assert!(matches!(
            update_with(&unknown, &tables),
            Err(ReferenceError::UnknownTable { line: 5, .. })
        ));
        let unterminated = format!("{both}{BEGIN}Shared -->\n| row |\n");
        assert!(matches!(
            update_with(&unterminated, &tables),
            Err(ReferenceError::Unterminated { line: 5, .. })
        ));
        let stray = format!("{both}{END}\n");
        assert!(matches!(
            update_with(&stray, &tables),
            Err(ReferenceError::StrayEnd { line: 5 })
        ));
        let missing = format!("{BEGIN}Shared -->\n{END}\n");
        assert!(matches!(
            update_with(&missing, &tables),
            Err(ReferenceError::MissingBlock { name }) if name == "SampleSpec"
        ));
    }

    #[test]
    fn every_repository_kind_has_a_table_and_stack_wide_kinds_none() {
        for kind in Kind::ALL {
            let table = kind_table(kind)
                .unwrap()
                .expect("a document kind has a table");
            assert_eq!(table.kind(), Some(kind));
            table.render(&tables().unwrap()).unwrap();
        }
        for kind in Kind::STACK_RESOURCES {
            assert!(kind_table(kind).unwrap().is_none());
        }
    }
}
