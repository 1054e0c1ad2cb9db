//! Output helpers shared by commands: tree drawing, problems with snippets, JSON and YAML.

use panka_core::diag::{Diagnostic, Sources};
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
        OutputFormat::Yaml => print!("{}", to_yaml(value)),
        OutputFormat::Json | OutputFormat::Table => {
            println!("{}", serde_json::to_string_pretty(value)?)
        }
    }
    Ok(())
}

/// A JSON value as a block-style YAML document that any YAML 1.1 or 1.2 parser reads back as the
/// same value: mappings and sequences in block style (empty ones as `{}`/`[]`), strings plain
/// only when they cannot be read as anything else (so `"1.10"`, `"yes"`, `"null"`, `"0o17"` and
/// dates stay quoted), multi-line strings as literal blocks. Ends with a newline.
pub fn to_yaml(value: &serde_json::Value) -> String {
    let mut out = String::new();
    match value {
        serde_json::Value::Object(m) if !m.is_empty() => yaml_node(&mut out, value, 0, false),
        serde_json::Value::Array(a) if !a.is_empty() => yaml_node(&mut out, value, 0, false),
        // A top-level scalar: its block-scalar lines (if any) are indented like a child's.
        other => {
            out.push_str(&yaml_scalar(other, 2));
            out.push('\n');
        }
    }
    out
}

/// Whether a value is written on its own lines (a non-empty mapping or sequence) rather than
/// after its key or dash.
fn is_block(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(m) => !m.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// Writes a non-empty mapping or sequence at `indent`. With `inline`, the first line's
/// indentation is already written (the item of a sequence: `- key: value`).
fn yaml_node(out: &mut String, value: &serde_json::Value, indent: usize, inline: bool) {
    let pad = " ".repeat(indent);
    let mut first = true;
    let mut start = |out: &mut String| {
        if !(first && inline) {
            out.push_str(&pad);
        }
        first = false;
    };
    match value {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                start(out);
                out.push_str(&yaml_key(k));
                out.push(':');
                if is_block(v) {
                    out.push('\n');
                    yaml_node(out, v, indent + 2, false);
                } else {
                    out.push(' ');
                    out.push_str(&yaml_scalar(v, indent + 2));
                    out.push('\n');
                }
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                start(out);
                out.push_str("- ");
                if is_block(v) {
                    yaml_node(out, v, indent + 2, true);
                } else {
                    out.push_str(&yaml_scalar(v, indent + 2));
                    out.push('\n');
                }
            }
        }
        // Only called for containers (`is_block`); a scalar here is written as one.
        other => {
            start(out);
            out.push_str(&yaml_scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

/// A scalar (or an empty container) as written after `key: ` or `- `, without the final newline;
/// a literal block's lines are indented by `indent`.
fn yaml_scalar(value: &serde_json::Value, indent: usize) -> String {
    match value {
        serde_json::Value::Null => "null".to_owned(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => yaml_number(n),
        serde_json::Value::String(s) => yaml_string(s, indent),
        serde_json::Value::Array(_) => "[]".to_owned(),
        serde_json::Value::Object(_) => "{}".to_owned(),
    }
}

/// Integers as they are; floats always with a `.` and a signed exponent (`1.0e+300`), the form
/// YAML 1.1 parsers also read as a float.
fn yaml_number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if n.is_i64() || n.is_u64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_owned(), Some(e.to_owned())),
        None => (text.clone(), None),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa
    } else {
        format!("{mantissa}.0")
    };
    match exponent {
        None => mantissa,
        Some(e) if e.starts_with(['+', '-']) => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
    }
}

/// A mapping key: plain when safe, else double-quoted.
fn yaml_key(key: &str) -> String {
    if plain_is_safe(key) {
        key.to_owned()
    } else {
        double_quoted(key)
    }
}

/// A string value: plain when safe, a literal block when it spans lines, else double-quoted.
fn yaml_string(s: &str, indent: usize) -> String {
    if plain_is_safe(s) {
        return s.to_owned();
    }
    if literal_is_safe(s) {
        let body = s.trim_end_matches('\n');
        let trailing = s.len() - body.len();
        let chomp = match trailing {
            0 => "-",
            1 => "",
            _ => "+",
        };
        let pad = " ".repeat(indent);
        let mut out = format!("|{chomp}");
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
                out.push_str(line);
            }
        }
        // Keep chomping: the final line break is implied, the blank lines after it are not.
        for _ in 1..trailing {
            out.push('\n');
        }
        return out;
    }
    double_quoted(s)
}

/// Words YAML 1.1 reads as booleans or null when plain (compared ignoring case).
const RESERVED_WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// Whether a string can be written plain and be read back as the same string by YAML 1.1 and
/// 1.2 parsers alike. Deliberately narrow: it starts with a letter, `_` or `/` (so it is never a
/// number, date, `.inf`, alias, tag, block or flow indicator), holds only letters, digits, single
/// spaces and `_-./@+=()%`, and `:` only when followed by something other than a space; and it is
/// not a boolean or null word.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    let ok = chars.iter().enumerate().all(|(i, &c)| match c {
        c if c.is_ascii_alphanumeric() => true,
        '_' | '-' | '.' | '/' | '@' | '+' | '=' | '(' | ')' | '%' => true,
        ':' => chars.get(i + 1).is_some_and(|n| *n != ' '),
        ' ' => chars.get(i + 1).is_some_and(|n| *n != ' '),
        _ => false,
    });
    ok && !RESERVED_WORDS.contains(&s.to_ascii_lowercase().as_str())
}

/// Whether a multi-line string can be a literal block: it spans lines, does not start with
/// whitespace (which would need an indentation indicator), and holds only printable characters
/// (no carriage returns or other line breaks YAML knows, which a block would fold).
fn literal_is_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || printable(c))
}

/// YAML's printable characters (`c-printable`), less the line breaks, BOM and DEL.
fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FEFE}' | '\u{FF00}'..='\u{FFFD}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}')
}

/// A double-quoted YAML scalar: quotes and backslashes escaped, every non-printable character as
/// an escape.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
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
        "ls\u{2028}x",
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

    #[test]
    fn tricky_strings_read_back_as_the_same_strings() {
        for s in TRICKY {
            let value = json!({ "value": s, "list": [s], *s: 1 });
            let text = to_yaml(&value);
            assert_eq!(parse(&text), value, "{s:?} became\n{text}");
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
        let text = to_yaml(&value);
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
            let text = to_yaml(&value);
            assert_eq!(parse(&text), value, "\n{text}");
        }
    }

    #[test]
    fn output_is_block_style_with_ambiguous_strings_quoted() {
        let text = to_yaml(&json!({
            "stack": "user-platform",
            "release": {"version": "1.10", "answer": "yes", "none": "null", "count": 3},
            "components": [{"component": "user-service/api", "health": "Healthy"}],
            "config": "a: 1\nb: 2\n",
        }));
        assert_eq!(
            text,
            "components:\n\
             \x20 - component: user-service/api\n\
             \x20   health: Healthy\n\
             config: |\n\
             \x20 a: 1\n\
             \x20 b: 2\n\
             release:\n\
             \x20 answer: \"yes\"\n\
             \x20 count: 3\n\
             \x20 none: \"null\"\n\
             \x20 version: \"1.10\"\n\
             stack: user-platform\n"
        );
    }

    #[test]
    fn floats_keep_a_point_and_a_signed_exponent() {
        assert_eq!(to_yaml(&json!(3.0)), "3.0\n");
        assert_eq!(to_yaml(&json!(1e300)), "1.0e+300\n");
        assert_eq!(to_yaml(&json!(1.5e-7)), "1.5e-7\n");
    }
}
