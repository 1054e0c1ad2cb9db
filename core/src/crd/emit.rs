//! JSON values as block-style YAML documents that YAML 1.1 readers read back unchanged.
//!
//! `panka export` output goes to `kubectl apply -f -`, whose YAML reader follows YAML 1.1: a
//! plain `yes`, `on` or `n` is a boolean there, so an environment variable `value: yes` would
//! be refused as "not a string". libyaml's emitter (`serde_yaml_ng`, which `--output yaml`
//! uses) quotes by YAML 1.2's rules and leaves those plain; this emitter quotes every string
//! that is not plainly a word, a path or a sentence. Multi-line strings (config files) are
//! literal blocks when that keeps them exact, else double-quoted with escapes.

use serde_json::Value;

use crate::load::yaml::{double_quoted, needs_escape};

/// Each value as a YAML document, each starting with `---`.
pub fn documents(values: &[Value]) -> String {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        node(value, 0, &mut out);
    }
    out
}

/// Writes `value` as the content of a document or of a block at `indent`, ending with a
/// newline.
fn node(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, val) in map {
                pad(out, indent);
                out.push_str(&string(key));
                out.push(':');
                after_key(val, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(out, indent);
                out.push('-');
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key shares the line with `- `; the others align with it.
                        let mut inner = String::new();
                        node(item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.push('\n');
                        node(item, indent + 2, out);
                    }
                    _ => after_key(item, indent, out),
                }
            }
        }
        _ => {
            pad(out, indent);
            scalar_line(value, indent, out);
        }
    }
}

/// What follows `key:` or `-`: a scalar on the same line, or a nested block below.
fn after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            node(value, indent + 2, out);
        }
        // Sequences under a key sit at the key's indentation, as kubectl prints them.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            node(value, indent, out);
        }
        _ => {
            out.push(' ');
            scalar_line(value, indent, out);
        }
    }
}

/// A scalar (or empty container) and its newline; a literal block's lines at `indent + 2`.
fn scalar_line(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null\n"),
        Value::Bool(b) => out.push_str(&format!("{b}\n")),
        Value::Number(n) => out.push_str(&format!("{n}\n")),
        Value::Object(_) => out.push_str("{}\n"),
        Value::Array(_) => out.push_str("[]\n"),
        Value::String(s) => match literal_chomping(s) {
            Some(indicator) => {
                out.push('|');
                out.push_str(indicator);
                out.push('\n');
                let body = s.strip_suffix('\n').unwrap_or(s);
                for line in body.split('\n') {
                    if !line.is_empty() {
                        pad(out, indent + 2);
                        out.push_str(line);
                    }
                    out.push('\n');
                }
            }
            None => {
                out.push_str(&string(s));
                out.push('\n');
            }
        },
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// The chomping indicator a literal block needs to hold `s` exactly, or `None` when `s` is
/// better double-quoted: a single line, a first line starting with a space (the block's
/// indentation would be guessed from it), or a character that is not printable in YAML.
fn literal_chomping(s: &str) -> Option<&'static str> {
    if !s.contains('\n') || s.starts_with([' ', '\n']) || s.chars().any(needs_escape) {
        return None;
    }
    Some(if s.ends_with("\n\n") {
        "+"
    } else if s.ends_with('\n') {
        ""
    } else {
        "-"
    })
}

/// A string as a plain scalar when no YAML reader can take it for anything else, else
/// double-quoted.
fn string(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ' ' | '@'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        return s.to_string();
    }
    double_quoted(s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Strings a careless emitter changes: YAML 1.1 booleans, numbers, indicators, blocks.
    const TRICKY: &[&str] = &[
        "",
        " ",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "n",
        "true",
        "null",
        "~",
        "1.10",
        "015",
        "0x1f",
        "1_000",
        "1:20",
        "2025-01-15",
        ".inf",
        "-",
        "- x",
        "a: b",
        "a #b",
        "#c",
        "'q'",
        "\"q\"",
        "{x}",
        "[x]",
        "*ref",
        "&a",
        "!tag",
        "%p",
        "@at",
        "`b`",
        "${VERSION}",
        "$${RAW}",
        "x ",
        " x",
        "tab\there",
        "cr\rlf",
        "bell\u{7}",
        "del\u{7f}",
        "nel\u{85}x",
        "ls\u{2028}x",
        "\u{feff}bom",
        "é ü",
        "/stacks/user-platform/db-password",
        "noreply@company.com",
        "one\ntwo",
        "one\ntwo\n",
        "one\n\n",
        "\nlead",
        " lead\nx",
        "a\n  b\n",
        "a\n\n\nb\n",
        "tabs\n\tx\n",
        "trail \nx",
        "x\n  \n",
        "x\n  ",
    ];

    fn round_trip(value: &Value) {
        let text = documents(std::slice::from_ref(value));
        let back: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{value} does not read back: {e}\n{text}"));
        assert_eq!(&back, value, "YAML 1.2 reader\n{text}");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{value} does not parse: {e}\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
    }

    #[test]
    fn tricky_strings_read_back_as_the_same_strings() {
        for s in TRICKY {
            round_trip(&json!({ "value": s, "list": [s], *s: {"k": s} }));
        }
    }

    #[test]
    fn yaml_1_1_booleans_and_numbers_are_quoted() {
        for s in ["yes", "No", "on", "OFF", "y", "n", "8080", "15.4", "1_000"] {
            let text = documents(&[json!({ "v": s })]);
            assert_eq!(text, format!("---\nv: \"{s}\"\n"));
        }
    }

    #[test]
    fn nested_maps_and_lists_are_block_style() {
        // Keys in sorted order: serde_json sorts them unless a dependency asks it not to.
        let value = json!({
            "metadata": {"labels": {"panka.io/stack": "shop"}, "name": "shop-production"},
            "spec": {
                "command": ["/app/run", "--flag"],
                "config": "a: 1\nb: 2\n",
                "empty": {},
                "nested": [[1, 2], []],
                "on": true,
                "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
                "ratio": 70.0,
            },
        });
        let text = documents(std::slice::from_ref(&value));
        assert_eq!(
            text,
            "---\n\
             metadata:\n  labels:\n    panka.io/stack: shop\n  name: shop-production\n\
             spec:\n  command:\n  - /app/run\n  - \"--flag\"\n\
             \x20 config: |\n    a: 1\n    b: 2\n\
             \x20 empty: {}\n\
             \x20 nested:\n  -\n    - 1\n    - 2\n  - []\n\
             \x20 \"on\": true\n\
             \x20 ports:\n  - name: http\n    port: 8080\n  - name: admin\n    port: 9090\n\
             \x20 ratio: 70.0\n"
        );
        round_trip(&value);
    }

    #[test]
    fn several_documents_are_separated() {
        let text = documents(&[json!({"a": 1}), json!({"b": [true]})]);
        assert_eq!(text, "---\na: 1\n---\nb:\n- true\n");
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("document"))
            .collect();
        assert_eq!(docs, [json!({"a": 1}), json!({"b": [true]})]);
    }
}
