//! Output helpers shared by commands: tree drawing, problems with snippets, JSON and YAML.

use anyhow::Context;
use panka_controller::diag::{Diagnostic, Sources};
use serde_json::json;

use crate::app::OutputFormat;

/// Renders a top-level error (not a problem in user input) for stderr.
pub fn error(err: &anyhow::Error) -> String {
    format!("error: {err:#}")
}

/// Renders problems in user input, with snippets, for stderr.
pub fn problems(list: &[&Diagnostic], sources: &Sources) -> String {
    list.iter()
        .map(|d| d.render(sources))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A problem as JSON.
pub fn problem_json(d: &Diagnostic) -> serde_json::Value {
    json!({
        "file": d.span.as_ref().map(|s| s.file.to_string()),
        "line": d.span.as_ref().map(|s| s.line),
        "column": d.span.as_ref().map(|s| s.col),
        "message": d.message,
        "help": d.help,
    })
}

/// `✓` or `✗`.
pub fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

/// Tree branch glyph for item `i` of `n`.
pub fn branch(i: usize, n: usize) -> &'static str {
    if i + 1 == n {
        "└──"
    } else {
        "├──"
    }
}

/// Prints a command's result in a machine-readable format: pretty JSON, or block-style YAML
/// ([`to_yaml`]). Every command's `--output json|yaml` goes through here; `table` is each
/// command's own rendering and prints JSON if it ever reaches this.
pub fn print_data(format: OutputFormat, value: &serde_json::Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => print!("{}", to_yaml(value)?),
        OutputFormat::Json | OutputFormat::Table => {
            println!("{}", serde_json::to_string_pretty(value)?)
        }
    }
    Ok(())
}

/// A JSON value as a block-style YAML 1.2 document, written by libyaml's emitter (through
/// `serde_yaml_ng`): strings a YAML 1.2 parser would read as something else (`"1.10"`, `"true"`,
/// `"null"`) are quoted, multi-line strings are literal blocks, empty containers are `{}`/`[]`.
/// Ends with a newline.
pub fn to_yaml(value: &serde_json::Value) -> anyhow::Result<String> {
    serde_yaml_ng::to_string(value).context("failed to write the output as YAML")
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use yaml_rust2::{Yaml, YamlLoader};

    use super::*;

    /// Reads YAML back the way a consumer would, into JSON.
    fn parse(text: &str) -> Value {
        let docs = YamlLoader::load_from_str(text)
            .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        to_json(&docs[0], text)
    }

    fn to_json(y: &Yaml, text: &str) -> Value {
        match y {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => json!(b),
            Yaml::Integer(i) => json!(i),
            Yaml::Real(r) => json!(r.parse::<f64>().expect("a float")),
            Yaml::String(s) => json!(s),
            Yaml::Array(a) => Value::Array(a.iter().map(|v| to_json(v, text)).collect()),
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| match k {
                        Yaml::String(k) => (k.clone(), to_json(v, text)),
                        other => panic!("key {other:?} is not a string in\n{text}"),
                    })
                    .collect(),
            ),
            other => panic!("unexpected {other:?} in\n{text}"),
        }
    }

    /// Strings that a careless emitter writes plain and a parser then reads as something else
    /// (or cannot read at all).
    const TRICKY: &[&str] = &[
        "1.10",
        "1.0",
        "10",
        "-1",
        "+1",
        "0o17",
        "0x1F",
        "1e3",
        "1_000",
        "0777",
        "1:20",
        "2025-01-15",
        "20250115T133000Z-1a2b3c4d",
        ".inf",
        "-.inf",
        ".nan",
        "inf",
        "NaN",
        "yes",
        "Yes",
        "no",
        "NO",
        "y",
        "n",
        "on",
        "Off",
        "true",
        "False",
        "null",
        "Null",
        "~",
        "",
        " ",
        " leading",
        "trailing ",
        "a: b",
        "a:",
        "a #b",
        "#x",
        "- x",
        "-",
        "*alias",
        "&anchor",
        "!tag",
        "%x",
        "@x",
        "`x",
        "{x}",
        "[x]",
        "x, y",
        "'q'",
        "\"dq\"",
        "?x",
        "|x",
        ">x",
        "=",
        "<<",
        "a\\b",
        "multi\nline",
        "multi\nline\n",
        "multi\n\nline\n\n\n",
        "\nleading newline",
        "  indented\nblock",
        "tab\tin",
        "cr\r\nlf",
        "nel\u{85}x",
        "del\u{7f}x",
        "bom\u{feff}x",
        "bell\u{7}x",
        "emoji 🚀",
        "✓ Success",
        "USER_API_VERSION=1.4.2",
        "http://x.example/a?b=c",
        "stack:user-platform:env:dev",
        "dev@vm",
        "/panka/user-platform/dev",
        "two  spaces",
        "# not a comment\nline",
        "--- not a marker\n...",
        "key: value\n- item\n",
    ];

    /// Emits `value` as YAML, failing the test when it cannot.
    fn yaml(value: &Value) -> String {
        to_yaml(value).unwrap_or_else(|e| panic!("{value} not written as YAML: {e:#}"))
    }

    #[test]
    fn tricky_strings_read_back_as_the_same_strings() {
        for s in TRICKY {
            let value = json!({ "value": s, "list": [s], *s: 1 });
            let text = yaml(&value);
            assert_eq!(parse(&text), value, "{s:?} became\n{text}");
        }
    }

    /// libyaml writes YAML 1.1, where U+2028/U+2029 are line breaks: it folds them into a quoted
    /// scalar, which YAML 1.1 parsers (libyaml, PyYAML) read back as written. YAML 1.2 parsers
    /// (yaml-rust2) do not treat them as breaks and read the folding spaces too: a known gap of
    /// the emitter, for characters our output does not carry in practice.
    #[test]
    fn unicode_line_separators_read_back_with_a_yaml_1_1_parser() {
        for s in ["ls\u{2028}x", "ps\u{2029}x"] {
            let value = json!({ "value": s });
            let text = yaml(&value);
            let back: Value = serde_yaml_ng::from_str(&text).expect("parses");
            assert_eq!(back, value, "{s:?} became\n{text}");
        }
    }

    #[test]
    fn a_whole_document_reads_back_as_the_same_value() {
        let value = json!({
            "release": {
                "id": "20250115T133000Z-1a2b3c4d",
                "kind": "apply",
                "version": "1.10",
                "commit": null,
                "overrides": {"USER_API_VERSION": "1.4.2", "DB_PASSWORD": "<redacted>"},
                "outcome": "succeeded",
            },
            "numbers": [0, -1, i64::MAX, i64::MIN, 1.5, 3.0, -0.25, 1e300, 1.5e-7, 2.5e-300],
            "bools": [true, false],
            "nested": [[1, [2, []]], [{"a": {}}], {"b": [{"c": "d", "e": ["f"]}]}],
            "empty": {"map": {}, "list": [], "string": ""},
            "config": "state:\n  bucket: b\nlocks:\n  table: t\n",
        });
        let text = yaml(&value);
        assert_eq!(parse(&text), value, "\n{text}");
    }

    #[test]
    fn top_level_scalars_and_empty_containers_read_back() {
        for value in [
            json!(null),
            json!("1.10"),
            json!("multi\nline"),
            json!(7),
            json!({}),
            json!([]),
        ] {
            let text = yaml(&value);
            assert_eq!(parse(&text), value, "\n{text}");
        }
    }

    #[test]
    fn output_is_block_style_with_ambiguous_strings_quoted() {
        let text = yaml(&json!({
            "stack": "user-platform",
            "release": {"version": "1.10", "answer": "yes", "none": "null", "count": 3},
            "components": [{"component": "user-service/api", "health": "Healthy"}],
            "config": "a: 1\nb: 2\n",
        }));
        assert_eq!(
            text,
            "components:\n\
             - component: user-service/api\n\
             \x20 health: Healthy\n\
             config: |\n\
             \x20 a: 1\n\
             \x20 b: 2\n\
             release:\n\
             \x20 answer: yes\n\
             \x20 count: 3\n\
             \x20 none: 'null'\n\
             \x20 version: '1.10'\n\
             stack: user-platform\n"
        );
    }

    #[test]
    fn floats_read_back_as_floats() {
        for f in [3.0, -0.25, 1e300, 1.5e-7] {
            let text = yaml(&json!(f));
            assert_eq!(parse(&text), json!(f), "{f} became {text}");
        }
        assert_eq!(yaml(&json!(3.0)), "3.0\n");
    }
}
