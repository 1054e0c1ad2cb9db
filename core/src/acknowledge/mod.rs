//! Stage **acknowledge** (pure): the edit of the deployment repository that makes one setting
//! say what AWS has, for `panka drift acknowledge`.
//!
//! When someone changed AWS by hand and the team keeps the change, the setting is written where
//! it takes effect for the environment: in the environment's overlay of the document if the
//! overlay sets it, else where the base document sets it (or in `variables.yaml`, when the base
//! says `${NAME}` and the environment defines `NAME`), else added to the overlay if there is
//! one, else to the base document. Only the bytes of that value change (or the lines added);
//! comments, order, quoting and blank lines stay. Every edit is parsed again and checked: the
//! setting reads back as the new value and nothing else in the file changed, so a layout this
//! module misreads is refused instead of written.
//!
//! Editing a base document changes every environment that does not override the setting, as
//! the repository's layering says it should. A `--var NAME=…` given to the run that found the
//! drift is not in the repository; a setting written as `${NAME}` that `variables.yaml` does not
//! define is refused. This module reads and writes nothing itself: the CLI applies
//! [`FileEdit::after`] when asked to `--write`.

mod fields;
mod render;
#[cfg(test)]
mod tests;
mod text;

use std::sync::Arc;

pub use fields::{acknowledge, target, Target};

use serde_json::Value as Json;

use crate::diag::{suggest, Diagnostic, Span};
use crate::load::yaml::{Node, Value};
use crate::load::{Document, LoadedEnvironment, LoadedStack};
use crate::model::ComponentId;
use crate::resolve::vars::is_built_in;
use render::Quote;
use text::{Form, Lookup, SourceFile, Unsupported, Written};

/// Which document of a component holds the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentFile {
    /// The component's `{kind}.yaml` (e.g. `microservice.yaml`).
    Spec,
    /// The component's `infra.yaml`.
    Infra,
}

/// A setting to change.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a> {
    /// The component.
    pub component: &'a ComponentId,
    /// The document of the component that holds the setting.
    pub file: ComponentFile,
    /// Keys below `spec:`, e.g. `["scaling", "replicas"]`.
    pub path: &'a [&'a str],
    /// The value to write.
    pub value: &'a Json,
}

/// The change of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// Repository-relative path of the file.
    pub path: Arc<str>,
    /// Its text now.
    pub before: String,
    /// Its text after the edit; equal to `before` when the file already says the value.
    pub after: String,
}

impl FileEdit {
    /// The change as a unified diff (`--- a/path`, `+++ b/path`, hunks with 3 lines of
    /// context); empty when nothing changes.
    pub fn unified_diff(&self) -> String {
        let old = format!("a/{}", self.path);
        let new = format!("b/{}", self.path);
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(&old, &new)
            .to_string()
    }
}

/// The edit of the repository that sets `setting` for `environment` of the stack `loaded`.
pub fn edit(
    loaded: &LoadedStack,
    environment: &str,
    setting: &Setting<'_>,
) -> Result<FileEdit, Diagnostic> {
    let name = setting.path.join(".");
    if setting.path.is_empty() {
        return Err(Diagnostic::general("no setting given")
            .help("name a setting below `spec:`, e.g. `scaling.replicas`"));
    }
    let known = crate::resolve::environments(loaded);
    if !known.iter().any(|e| e == environment) {
        let d = Diagnostic::general(format!(
            "stack `{}` has no environment `{environment}`",
            loaded.name
        ));
        return Err(
            match suggest(environment, known.iter().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("known environments: {}", known.join(", "))),
            },
        );
    }
    let base = base_document(loaded, setting)?;
    let empty = LoadedEnvironment::default();
    let env = loaded.environments.get(environment).unwrap_or(&empty);
    let prefix = format!("stacks/{}/", loaded.name);
    let rel = base.path.strip_prefix(&prefix).unwrap_or(&base.path);
    let edit = Edit {
        loaded,
        env,
        environment,
        setting,
        name: &name,
    };

    let overlay = env
        .overlays
        .get(rel)
        .map(|doc| SourceFile::read(&loaded.sources, &doc.path))
        .transpose()?;
    let in_overlay = match &overlay {
        Some(file) => Some((
            file,
            file.lookup(setting.path).map_err(|u| edit.refused(u))?,
        )),
        None => None,
    };
    // 1. The environment's overlay sets it: that is the value in force.
    match in_overlay {
        Some((file, Lookup::Set(written))) => return edit.set(file, &written),
        Some((file, Lookup::NotMapping { written, depth })) => {
            return Err(edit.not_a_mapping(file, &written, depth))
        }
        _ => {}
    }
    // 2. The base sets it (directly or through a variable); 3. nobody does: add it to the
    // overlay when there is one, so other environments keep their values.
    let base_file = SourceFile::read(&loaded.sources, &base.path)?;
    match base_file
        .lookup(setting.path)
        .map_err(|u| edit.refused(u))?
    {
        Lookup::Set(written) => edit.set(&base_file, &written),
        Lookup::NotMapping { written, depth } => {
            Err(edit.not_a_mapping(&base_file, &written, depth))
        }
        Lookup::Missing { parent, depth } => match in_overlay {
            Some((file, Lookup::Missing { parent, depth })) => edit.add(file, &parent, depth),
            _ => edit.add(&base_file, &parent, depth),
        },
    }
}

/// The component's document that `setting` names.
fn base_document<'l>(
    loaded: &'l LoadedStack,
    setting: &Setting<'_>,
) -> Result<&'l Document, Diagnostic> {
    let id = setting.component;
    let Some(component) = loaded
        .services
        .get(&id.service)
        .and_then(|s| s.components.get(&id.component))
    else {
        let names: Vec<String> = loaded
            .services
            .values()
            .flat_map(|s| s.components.keys().map(move |c| format!("{}/{c}", s.name)))
            .collect();
        let d = Diagnostic::general(format!("stack `{}` has no component `{id}`", loaded.name));
        return Err(
            match suggest(&id.to_string(), names.iter().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("components: {}", names.join(", "))),
            },
        );
    };
    match setting.file {
        ComponentFile::Spec => Ok(&component.doc),
        ComponentFile::Infra => component.infra.as_ref().ok_or_else(|| {
            let folder = component
                .doc
                .path
                .rsplit_once('/')
                .map_or(&*component.doc.path, |(dir, _)| dir);
            Diagnostic::at(
                Span::file(&component.doc.path),
                format!("component `{id}` has no infra.yaml"),
            )
            .help(format!(
                "create {folder}/infra.yaml (kind ComponentInfra) and set `{}` there",
                setting.path.join(".")
            ))
        }),
    }
}

/// One acknowledge edit being worked out.
struct Edit<'a> {
    loaded: &'a LoadedStack,
    env: &'a LoadedEnvironment,
    environment: &'a str,
    setting: &'a Setting<'a>,
    /// `setting.path` joined with `.`, for messages.
    name: &'a str,
}

/// A `${…}` reference in a scalar's raw text.
enum Reference<'t> {
    /// None at all.
    None,
    /// The whole text is `${NAME}`.
    Exactly(&'t str),
    /// References among other text.
    Mixed,
}

fn reference(text: &str) -> Reference<'_> {
    let mut rest = text;
    let mut found = false;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            rest = escaped;
        } else if after.starts_with("${") {
            found = true;
            break;
        } else {
            rest = &after[1..];
        }
    }
    if !found {
        return Reference::None;
    }
    match text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        Some(name) if crate::resolve::vars::is_valid_var_name(name) => Reference::Exactly(name),
        _ => Reference::Mixed,
    }
}

impl Edit<'_> {
    /// Sets the value where `written` is, or in `variables.yaml` when it is a `${NAME}`.
    fn set(&self, file: &SourceFile, written: &Written<'_>) -> Result<FileEdit, Diagnostic> {
        let node = &written.entry.value;
        if let Value::Scalar(scalar) = &node.value {
            match reference(&scalar.text) {
                Reference::None => {}
                Reference::Exactly(var) => return self.set_variable(file, node, var),
                Reference::Mixed => {
                    return Err(Diagnostic::at(
                        node.span.clone(),
                        format!("`{}` is built from variables: `{}`", self.name, scalar.text),
                    )
                    .help(self.by_hand(file)))
                }
            }
        }
        let quote = match written.form {
            Form::SingleQuoted => Quote::Single,
            Form::DoubleQuoted => Quote::Double,
            _ => Quote::Plain,
        };
        let rendered = render::value(self.setting.value, quote, true);
        let (range, new) = file
            .replacement(written, &rendered)
            .map_err(|u| self.refused(u))?;
        let mut after = file.text.to_string();
        after.replace_range(range, &new);
        self.checked(
            file,
            after,
            self.setting.path,
            self.setting.path.len(),
            &escaped(self.setting.value),
            &written.entry.key_span,
        )
    }

    /// Sets the variable `var` of the environment's `variables.yaml`, which `node` (in `file`)
    /// refers to.
    fn set_variable(
        &self,
        file: &SourceFile,
        node: &Node,
        var: &str,
    ) -> Result<FileEdit, Diagnostic> {
        let here = || node.span.clone();
        if is_built_in(var) {
            return Err(Diagnostic::at(
                here(),
                format!(
                    "`{}` is set by `${{{var}}}`, a built-in variable",
                    self.name
                ),
            )
            .help(self.by_hand(file)));
        }
        let defined = self
            .env
            .variables
            .as_ref()
            .filter(|doc| doc.spec.get(var).is_some());
        let Some(doc) = defined else {
            return Err(Diagnostic::at(
                here(),
                format!(
                    "`{}` is set by `${{{var}}}`, which environment {} does not define",
                    self.name, self.environment
                ),
            )
            .help(format!(
                "a `--var` value is not kept in the repository; define `{var}` in \
                 stacks/{}/environments/{}/variables.yaml, or {}",
                self.loaded.name,
                self.environment,
                self.by_hand(file)
            )));
        };
        // A variable other settings use too (`VERSION` for every image) would change them all:
        // the acknowledged difference is this setting's only.
        // Counted in the documents this environment resolves (base files and its own
        // overlays), outside comments; config files and other environments do not count.
        let reference = format!("${{{var}}}");
        let stack_dir = format!("stacks/{}/", self.loaded.name);
        let this_env = format!("{stack_dir}environments/{}/", self.environment);
        let counts = |path: &str| {
            path.ends_with(".yaml")
                && !path.contains("/configs/")
                && (!path.starts_with(&format!("{stack_dir}environments/"))
                    || path.starts_with(&this_env))
                && path != &*doc.path
        };
        let uses: Vec<&str> = self
            .loaded
            .sources
            .files()
            .filter(|(path, _)| counts(path))
            .flat_map(|(path, text)| {
                let used = text
                    .lines()
                    .map(|l| l.split_once(" #").map_or(l, |(code, _)| code))
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .map(|l| l.matches(reference.as_str()).count())
                    .sum::<usize>();
                std::iter::repeat_n(&**path, used)
            })
            .collect();
        // One use is this setting's own.
        if uses.len() > 1 {
            let mut elsewhere: Vec<&str> = uses.clone();
            elsewhere.dedup();
            let n = uses.len() - 1;
            return Err(Diagnostic::at(
                here(),
                format!(
                    "`{}` is set by `${{{var}}}`, which {n} other setting{} of {} use{} too (in {}): changing the variable would change {} as well",
                    self.name,
                    if n == 1 { "" } else { "s" },
                    self.environment,
                    if n == 1 { "s" } else { "" },
                    elsewhere.join(", "),
                    if n == 1 { "it" } else { "them" },
                ),
            )
            .help(self.by_hand(file)));
        }
        let text = match self.setting.value {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            _ => {
                return Err(Diagnostic::at(
                    here(),
                    format!(
                        "`{}` is set by `${{{var}}}`, and a variable cannot hold {}",
                        self.name,
                        if self.setting.value.is_null() {
                            "null"
                        } else {
                            "a list or mapping"
                        }
                    ),
                )
                .help(self.by_hand(file)))
            }
        };
        let vars = SourceFile::read(&self.loaded.sources, &doc.path)?;
        let path = [var];
        let Lookup::Set(written) = vars.lookup(&path).map_err(|u| self.refused(u))? else {
            return Err(Diagnostic::at(
                doc.metadata_span.clone(),
                format!("`{var}` is not a variable here"),
            ));
        };
        // A variable is text either way: a quoted one keeps its quotes, a plain one stays
        // plain for numbers and booleans (`${NAME}` in a plain scalar gives back the type).
        let rendered = match written.form {
            Form::SingleQuoted => render::value(&Json::String(text.clone()), Quote::Single, false),
            Form::DoubleQuoted => render::value(&Json::String(text.clone()), Quote::Double, false),
            _ => render::value(self.setting.value, Quote::Plain, false),
        };
        let (range, new) = vars
            .replacement(&written, &rendered)
            .map_err(|u| self.refused(u))?;
        let mut after = vars.text.to_string();
        after.replace_range(range, &new);
        self.checked(
            &vars,
            after,
            &path,
            1,
            &Json::String(text),
            &written.entry.key_span,
        )
    }

    /// Adds the keys of the path missing below `parent` (`depth` keys are written).
    fn add(
        &self,
        file: &SourceFile,
        parent: &Written<'_>,
        depth: usize,
    ) -> Result<FileEdit, Diagnostic> {
        let path = self.setting.path;
        let rendered = render::value(self.setting.value, Quote::Plain, true);
        let (at, lines) = file
            .insertion(parent, &path[depth..], &rendered)
            .map_err(|u| self.refused(u))?;
        let mut after = file.text.to_string();
        after.insert_str(at, &lines);
        self.checked(
            file,
            after,
            path,
            depth + 1,
            &escaped(self.setting.value),
            &parent.entry.key_span,
        )
    }

    /// `after` as an edit of `file`, once parsed again: the value at `path` must read `expected`
    /// (raw, before substitution) and everything outside the first `changed` keys of `path`
    /// must be as before.
    fn checked(
        &self,
        file: &SourceFile,
        after: String,
        path: &[&str],
        changed: usize,
        expected: &Json,
        at: &Span,
    ) -> Result<FileEdit, Diagnostic> {
        let fail = |why: &str| {
            Diagnostic::at(
                at.clone(),
                format!("cannot edit `{}` here safely: {why}", self.name),
            )
            .help(self.by_hand(file))
        };
        let edited = SourceFile::parse(&file.path, Arc::from(after.as_str()))
            .map_err(|_| fail("the edited file would not parse"))?;
        let mut keys = vec!["spec"];
        keys.extend_from_slice(path);
        let (prefix, rest) = keys.split_at(changed + 1);
        if !same(&without(&file.root, prefix), &without(&edited.root, prefix)) {
            return Err(fail(
                "the edit would change other settings too (an anchor or merge key?)",
            ));
        }
        let expected = rest.iter().rev().fold(expected.clone(), |value, key| {
            Json::Object([(key.to_string(), value)].into_iter().collect())
        });
        if !edited
            .node(prefix)
            .is_some_and(|node| matches(node, &expected))
        {
            return Err(fail("the edited file would not read back as the new value"));
        }
        Ok(FileEdit {
            path: file.path.clone(),
            before: file.text.to_string(),
            after,
        })
    }

    fn refused(&self, unsupported: Unsupported) -> Diagnostic {
        let Unsupported { span, reason } = unsupported;
        let file = span.file.clone();
        Diagnostic::at(span, format!("cannot edit `{}` here: {reason}", self.name)).help(format!(
            "edit {file} by hand: set `{}` to `{}`",
            self.name,
            render::value(self.setting.value, Quote::Plain, true)
        ))
    }

    fn not_a_mapping(&self, file: &SourceFile, written: &Written<'_>, depth: usize) -> Diagnostic {
        let owner = if depth == 0 {
            "spec".to_string()
        } else {
            self.setting.path[..depth].join(".")
        };
        Diagnostic::at(
            written.entry.key_span.clone(),
            format!(
                "cannot set `{}`: `{owner}` is {} here, not a mapping",
                self.name,
                written.entry.value.type_name()
            ),
        )
        .help(self.by_hand(file))
    }

    fn by_hand(&self, file: &SourceFile) -> String {
        format!(
            "edit {} by hand: set `{}` to `{}`",
            file.path,
            self.name,
            render::value(self.setting.value, Quote::Plain, true)
        )
    }
}

/// `value` with `${` in strings written `$${`, as a document holds it before substitution.
fn escaped(value: &Json) -> Json {
    match value {
        Json::String(s) => Json::String(render::escaped(s, true)),
        Json::Array(items) => Json::Array(items.iter().map(escaped).collect()),
        Json::Object(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.clone(), escaped(v))).collect())
        }
        other => other.clone(),
    }
}

/// `root` without the entry at `keys` (when it is there). A null on the way counts as an empty
/// mapping, as `spec:` with nothing under it does for the loader.
fn without(root: &Node, keys: &[&str]) -> Node {
    fn remove(node: &mut Node, keys: &[&str]) {
        let Some((first, rest)) = keys.split_first() else {
            return;
        };
        if node.value == Value::Null {
            node.value = Value::Map(Vec::new());
        }
        let Value::Map(entries) = &mut node.value else {
            return;
        };
        if rest.is_empty() {
            entries.retain(|e| e.key != *first);
        } else if let Some(e) = entries.iter_mut().find(|e| e.key == *first) {
            remove(&mut e.value, rest);
        }
    }
    let mut root = root.clone();
    remove(&mut root, keys);
    root
}

/// Whether two trees hold the same values, wherever they are written.
fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Null, Value::Null) => true,
        (Value::Scalar(x), Value::Scalar(y)) => x == y,
        (Value::Seq(xs), Value::Seq(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        (Value::Map(xs), Value::Map(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys)
                    .all(|(x, y)| x.key == y.key && same(&x.value, &y.value))
        }
        _ => false,
    }
}

/// Whether `node` reads as `value`: numbers and booleans as plain scalars of that text.
fn matches(node: &Node, value: &Json) -> bool {
    match (value, &node.value) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(b), Value::Scalar(s)) => s.plain && s.text == b.to_string(),
        (Json::Number(n), Value::Scalar(s)) => s.plain && s.text == n.to_string(),
        (Json::String(t), Value::Scalar(s)) => s.text == *t,
        (Json::Array(items), Value::Seq(nodes)) => {
            items.len() == nodes.len() && items.iter().zip(nodes).all(|(v, n)| matches(n, v))
        }
        (Json::Object(map), Value::Map(entries)) => {
            map.len() == entries.len()
                && entries
                    .iter()
                    .all(|e| map.get(&e.key).is_some_and(|v| matches(&e.value, v)))
        }
        _ => false,
    }
}
