//! Output helpers shared by commands: tree drawing, problems with snippets, JSON.

use panka_controller::diag::{Diagnostic, Sources};
use serde_json::json;

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

/// Prints a value as pretty JSON or YAML-ish JSON (YAML output prints JSON, which is valid YAML).
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
