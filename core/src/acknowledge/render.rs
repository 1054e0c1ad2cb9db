//! JSON values written as YAML text that reads back as the same value (stage: acknowledge, pure).
//!
//! Scalars are written plain when that cannot change their type or meaning, else double-quoted;
//! lists and mappings in flow style (`[a, b]`, `{k: v}`), which is enough for a one-line edit.

use serde_json::Value as Json;

use crate::load::yaml::double_quoted;

/// How the scalar being replaced was quoted; a new string keeps that style when it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quote {
    /// Plain, or not a string scalar at all.
    Plain,
    /// `'…'`.
    Single,
    /// `"…"`.
    Double,
}

/// `value` as YAML text. `escape_vars` writes `${` as `$${`, so a document's `${VARS}`
/// substitution gives the text back unchanged.
pub(super) fn value(value: &Json, quote: Quote, escape_vars: bool) -> String {
    match value {
        Json::Null => "null".to_string(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => string(&escaped(s, escape_vars), quote),
        Json::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| self::value(v, Quote::Plain, escape_vars))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", key(k), self::value(v, Quote::Plain, escape_vars)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// A mapping key as YAML text (keys are never substituted).
pub(super) fn key(key: &str) -> String {
    string(key, Quote::Plain)
}

/// `text` with every `${` written `$${` when `escape_vars`.
pub(super) fn escaped(text: &str, escape_vars: bool) -> String {
    if escape_vars {
        text.replace("${", "$${")
    } else {
        text.to_string()
    }
}

fn string(text: &str, quote: Quote) -> String {
    match quote {
        Quote::Plain if plain_safe(text) => text.to_string(),
        Quote::Single if !text.chars().any(char::is_control) => {
            format!("'{}'", text.replace('\'', "''"))
        }
        _ => double_quoted(text),
    }
}

/// Whether `text` written plain reads back as this very string, in block and flow context.
/// Conservative: anything doubtful is quoted, which is always correct.
fn plain_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if text.trim() != text || "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if text
        .chars()
        .any(|c| c.is_control() || matches!(c, ',' | '[' | ']' | '{' | '}'))
    {
        return false;
    }
    if text.contains(": ") || text.contains(" #") || text.ends_with(':') {
        return false;
    }
    !looks_typed(text)
}

/// Whether a plain scalar with this text could be read as null, a boolean or a number (YAML 1.1
/// spellings included, in case another tool reads the file).
fn looks_typed(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) {
        return true;
    }
    let unsigned = lower.trim_start_matches(['+', '-']);
    unsigned.starts_with(|c: char| c.is_ascii_digit())
        || unsigned.starts_with(".inf")
        || unsigned.starts_with(".nan")
        || (unsigned.starts_with('.') && unsigned[1..].starts_with(|c: char| c.is_ascii_digit()))
        || lower.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_are_plain_unless_plain_would_change_their_type() {
        let cases = [
            (json!(3), "3"),
            (json!(0.5), "0.5"),
            (json!(true), "true"),
            (json!(null), "null"),
            (json!("nginx"), "nginx"),
            (json!("us-east-1"), "us-east-1"),
            (json!("3"), "\"3\""),
            (json!("1.2.3"), "\"1.2.3\""),
            (json!("true"), "\"true\""),
            (json!("No"), "\"No\""),
            (json!("~"), "\"~\""),
            (json!(""), "\"\""),
            (json!(".inf"), "\".inf\""),
            (json!("a: b"), "\"a: b\""),
            (json!("x #y"), "\"x #y\""),
            (json!("*alias"), "\"*alias\""),
            (json!("- item"), "\"- item\""),
            (json!(" padded"), "\" padded\""),
            (json!("two\nlines"), "\"two\\nlines\""),
            (json!("say \"hi\""), "say \"hi\""),
            (json!("a,b"), "\"a,b\""),
        ];
        for (input, expected) in cases {
            assert_eq!(value(&input, Quote::Plain, false), expected, "{input}");
        }
    }

    #[test]
    fn a_quoted_string_keeps_its_quotes() {
        assert_eq!(value(&json!("v2"), Quote::Single, false), "'v2'");
        assert_eq!(value(&json!("it's"), Quote::Single, false), "'it''s'");
        assert_eq!(value(&json!("v2"), Quote::Double, false), "\"v2\"");
        // Single quotes cannot hold a line break: double quotes then.
        assert_eq!(value(&json!("a\nb"), Quote::Single, false), "\"a\\nb\"");
        // A number replacing a quoted string is still a number.
        assert_eq!(value(&json!(5), Quote::Double, false), "5");
    }

    #[test]
    fn collections_are_written_in_flow_style() {
        // Keys in sorted order: the same output whether or not serde_json preserves order.
        let v = json!({"empty": {}, "name": "a b", "ports": [80, "http"]});
        assert_eq!(
            value(&v, Quote::Plain, false),
            "{empty: {}, name: a b, ports: [80, http]}"
        );
        assert_eq!(value(&json!([]), Quote::Plain, false), "[]");
    }

    #[test]
    fn variable_references_are_escaped_in_documents_only() {
        // Braces are flow indicators: quoted, so the text is safe inside `{…}` too.
        assert_eq!(value(&json!("a${B}"), Quote::Plain, true), "\"a$${B}\"");
        assert_eq!(value(&json!("a${B}"), Quote::Plain, false), "\"a${B}\"");
        assert_eq!(value(&json!("$5"), Quote::Plain, true), "$5");
    }
}
