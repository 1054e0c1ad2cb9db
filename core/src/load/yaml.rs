//! YAML to a tree of [`Node`]s that remember where they came from (stage: load, pure).
//!
//! Positions survive overlay merges and `${VAR}` substitution, so an error found late (an
//! unknown field in a production overlay, an unresolved variable) still names the right file and
//! line. The parser refuses hostile input instead of exhausting memory or stack: nesting deeper
//! than [`Limits::max_depth`] and alias expansion beyond [`Limits::max_nodes`] are errors.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::{Diagnostic, Span};

/// Bounds on what one file may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of maps and lists.
    pub max_depth: usize,
    /// Most nodes one file may produce, counting every alias expansion.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_nodes: 100_000,
        }
    }
}

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub span: Span,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// Any scalar other than null, with its source text.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in source order.
    Map(Vec<Entry>),
}

/// A scalar's text and whether it was quoted (a quoted scalar is always a string).
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text after YAML unescaping.
    pub text: String,
    /// True for plain scalars, whose type is inferred from the text.
    pub plain: bool,
}

/// One key of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Where the key is.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The entry for `key`, when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The entry (key span included) for `key`.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    /// What kind of YAML value this is, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// An empty mapping at a position (used when a document has no `spec:`).
    pub fn empty_map(span: Span) -> Node {
        Node {
            value: Value::Map(Vec::new()),
            span,
        }
    }

    /// Number of nodes in this tree.
    pub fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(entries) => entries.iter().map(|e| e.value.count()).sum(),
            _ => 0,
        }
    }
}

/// Parses every document of a YAML file. An empty file yields no documents.
pub fn parse(file: &Arc<str>, text: &str, limits: Limits) -> Result<Vec<Node>, Diagnostic> {
    check_tabs(file, text)?;
    let mut builder = Builder {
        file: file.clone(),
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        limits,
    };
    builder.stream()
}

/// YAML forbids tabs in indentation; the parser reports them late and at the wrong line, so
/// find them first.
fn check_tabs(file: &Arc<str>, text: &str) -> Result<(), Diagnostic> {
    let mut in_block_scalar = false;
    for (n, line) in text.lines().enumerate() {
        let indent: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        // Inside a `|` or `>` block, tabs are content; such lines are indented deeper than the
        // key, which we approximate by "indented at all after a line ending in | or >".
        if in_block_scalar && !indent.is_empty() {
            continue;
        }
        in_block_scalar = {
            let t = line.trim_end();
            t.ends_with('|') || t.ends_with('>') || t.ends_with("|-") || t.ends_with(">-")
        };
        if let Some(col) = indent.find('\t') {
            // Comment lines may be indented with anything.
            if indent.len() < line.len() && !line[indent.len()..].starts_with('#') {
                return Err(Diagnostic::at(
                    Span {
                        file: file.clone(),
                        line: u32::try_from(n + 1).unwrap_or(u32::MAX),
                        col: u32::try_from(col + 1).unwrap_or(u32::MAX),
                    },
                    "tab used for indentation",
                )
                .help("YAML indents with spaces only; replace the tab with spaces"));
            }
        }
    }
    Ok(())
}

struct Builder<'a> {
    file: Arc<str>,
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    limits: Limits,
}

impl Builder<'_> {
    fn span(&self, mark: &Marker) -> Span {
        Span {
            file: self.file.clone(),
            line: u32::try_from(mark.line()).unwrap_or(u32::MAX),
            // yaml-rust2 columns are 0-based.
            col: u32::try_from(mark.col() + 1).unwrap_or(u32::MAX),
        }
    }

    fn next(&mut self) -> Result<(Event, Marker), Diagnostic> {
        self.parser.next_token().map_err(|e| {
            let span = self.span(e.marker());
            Diagnostic::at(span, format!("invalid YAML: {}", e.info()))
                .help("check indentation, a missing `:` or an unclosed quote or bracket")
        })
    }

    fn stream(&mut self) -> Result<Vec<Node>, Diagnostic> {
        let mut docs = Vec::new();
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(docs),
                Event::DocumentStart => {
                    let (event, mark) = self.next()?;
                    if event == Event::DocumentEnd {
                        continue;
                    }
                    docs.push(self.node(event, mark, 0)?);
                }
                other => {
                    return Err(Diagnostic::at(
                        self.span(&mark),
                        format!("unexpected YAML event {other:?}"),
                    ))
                }
            }
        }
    }

    fn count(&mut self, n: usize, span: &Span) -> Result<(), Diagnostic> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::at(
                span.clone(),
                format!(
                    "YAML expands to more than {} values (an alias bomb?)",
                    self.limits.max_nodes
                ),
            )
            .help("reduce anchors and aliases (`&x`, `*x`) or split the file"));
        }
        Ok(())
    }

    fn node(&mut self, event: Event, mark: Marker, depth: usize) -> Result<Node, Diagnostic> {
        let span = self.span(&mark);
        if depth > self.limits.max_depth {
            return Err(Diagnostic::at(
                span,
                format!("YAML nested deeper than {} levels", self.limits.max_depth),
            )
            .help("flatten the structure; no panka setting needs this depth"));
        }
        self.count(1, &span)?;
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(Diagnostic::at(span, "alias refers to an unknown anchor"));
                };
                self.count(target.count(), &span)?;
                return Ok(Node {
                    value: target.value,
                    span,
                });
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar(Scalar { text, plain })
                };
                (Node { value, span }, anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, mark, depth + 1)?);
                }
                (
                    Node {
                        value: Value::Seq(items),
                        span,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => (self.mapping(span, depth)?, anchor),
            other => {
                return Err(Diagnostic::at(
                    span,
                    format!("unexpected YAML event {other:?}"),
                ));
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, span: Span, depth: usize) -> Result<Node, Diagnostic> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut merged: Vec<Entry> = Vec::new();
        loop {
            let (event, mark) = self.next()?;
            if event == Event::MappingEnd {
                break;
            }
            let key_span = self.span(&mark);
            let key = match event {
                Event::Scalar(text, ..) => text,
                _ => {
                    // Consume the complex key and report it; panka keys are always strings.
                    let _ = self.node(event, mark, depth + 1)?;
                    return Err(Diagnostic::at(
                        key_span,
                        "mapping keys must be plain strings",
                    ));
                }
            };
            let (event, mark) = self.next()?;
            let value = self.node(event, mark, depth + 1)?;
            if key == "<<" {
                // YAML merge key: `<<: *defaults` or `<<: [*a, *b]`; explicit keys win.
                let sources = match value.value {
                    Value::Map(m) => vec![m],
                    Value::Seq(items) => items
                        .into_iter()
                        .filter_map(|n| match n.value {
                            Value::Map(m) => Some(m),
                            _ => None,
                        })
                        .collect(),
                    _ => {
                        return Err(Diagnostic::at(
                            key_span,
                            "`<<` must merge a mapping or a list of mappings",
                        ));
                    }
                };
                for source in sources {
                    for e in source {
                        if !merged.iter().any(|m| m.key == e.key) {
                            merged.push(e);
                        }
                    }
                }
                continue;
            }
            if let Some(&i) = index.get(&key) {
                return Err(
                    Diagnostic::at(key_span, format!("duplicate key `{key}`")).help(format!(
                        "it is already set at line {}; keep one",
                        entries[i].key_span.line
                    )),
                );
            }
            index.insert(key.clone(), entries.len());
            entries.push(Entry {
                key,
                key_span,
                value,
            });
        }
        for e in merged {
            if !index.contains_key(&e.key) {
                index.insert(e.key.clone(), entries.len());
                entries.push(e);
            }
        }
        // A block mapping's start mark is where its first key ends; point at the key instead.
        let span = match entries.first() {
            Some(first) if first.key_span.line == span.line => first.key_span.clone(),
            _ => span,
        };
        Ok(Node {
            value: Value::Map(entries),
            span,
        })
    }
}

/// `text` as a YAML double-quoted scalar that reads back as this very string, for the writers
/// of YAML (`panka export`, `drift acknowledge`'s edits).
pub(crate) fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A control character (tab and newline aside), or a character YAML 1.1 takes for a line break
/// or does not allow unescaped.
pub(crate) fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Node, Diagnostic> {
        let file: Arc<str> = Arc::from("t.yaml");
        parse(&file, text, Limits::default()).map(|mut docs| docs.remove(0))
    }

    #[test]
    fn nodes_keep_line_and_column() {
        let node = parse_one("a:\n  b: 1\n  c: [x, 'y']\n").unwrap();
        let b = node.get("a").unwrap().entry("b").unwrap();
        assert_eq!((b.key_span.line, b.key_span.col), (2, 3));
        let c = node.get("a").unwrap().get("c").unwrap();
        let Value::Seq(items) = &c.value else {
            panic!("not a list")
        };
        assert_eq!(
            items[1].value,
            Value::Scalar(Scalar {
                text: "y".into(),
                plain: false
            })
        );
    }

    #[test]
    fn null_forms_are_null_and_quoted_null_is_a_string() {
        let node = parse_one("a: ~\nb:\nc: null\nd: 'null'\n").unwrap();
        for k in ["a", "b", "c"] {
            assert_eq!(node.get(k).unwrap().value, Value::Null, "{k}");
        }
        assert_eq!(node.get("d").unwrap().as_str(), Some("null"));
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse_one(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        // Past the scanner's own limit.
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_one(&text).unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        // Within the scanner's limit but past ours.
        let text = format!("{}{}", "[".repeat(80), "]".repeat(80));
        let err = parse_one(&text).unwrap_err();
        assert!(
            err.message.contains("nested deeper than 64"),
            "{}",
            err.message
        );
    }

    #[test]
    fn tab_indentation_is_reported_at_the_tab() {
        let err = parse_one("a:\n  b: 1\n\tc: 2\n").unwrap_err();
        let span = err.span.unwrap();
        assert_eq!((span.line, span.col), (3, 1));
        assert!(err.message.contains("tab"));
        // Tabs inside block scalars and comments are content, not indentation.
        assert!(parse_one("a: |\n  x\n  \ty\nb: 1\n").is_ok());
        assert!(parse_one("a: 1\n\t# note\n").is_ok());
    }

    #[test]
    fn block_mappings_point_at_their_first_key() {
        let node = parse_one("top:\n  first: 1\n").unwrap();
        let inner = node.get("top").unwrap();
        assert_eq!((inner.span.line, inner.span.col), (2, 3));
    }

    #[test]
    fn many_keys_parse_in_linear_time() {
        let text: String = (0..70_000).map(|i| format!("k{i}: {i}\n")).collect();
        let started = std::time::Instant::now();
        let node = parse_one(&text).unwrap();
        assert_eq!(node.count(), 70_001);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_one("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.span.unwrap().line, 3);
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn merge_keys_fill_in_missing_entries_only() {
        let node = parse_one("base: &b {x: 1, y: 2}\nthis:\n  <<: *b\n  y: 3\n").unwrap();
        let this = node.get("this").unwrap();
        assert_eq!(this.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(this.get("y").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_one("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.span.unwrap().line >= 1);
    }
}
