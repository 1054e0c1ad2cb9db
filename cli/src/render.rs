//! Output helpers shared by commands: tree drawing, problems with snippets, times as people read
//! them, locks, JSON and YAML.

use anyhow::Context;
use panka_controller::lock::{LockInfo, LockScope};
use panka_core::diag::{Diagnostic, Sources};
use serde_json::json;

use crate::app::OutputFormat;

/// `println!` that never panics: a closed stdout (`panka apply … | head -1`) must not stop a
/// command half-way through a change, leaving its lock behind. What cannot be written is
/// dropped; the command goes on, records its release and releases its lock.
macro_rules! say {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics (see [`say!`]).
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

pub(crate) use {say, say_raw};

/// Renders a top-level error (not a problem in user input) for stderr.
pub fn error(err: &anyhow::Error) -> String {
    // `{:#}` would repeat a cause its context already quotes (`failed to read …: <cause>`).
    let mut text = String::from("error: ");
    let mut said = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if said.contains(&part) {
            continue;
        }
        if !said.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
        said.push_str(&part);
    }
    if let Some(hint) = panka_controller::backend::hint(err.as_ref()) {
        text.push_str("\n  hint: ");
        text.push_str(&hint);
    }
    text
}

/// Renders problems in user input, with snippets, for stderr.
pub fn problems(list: &[&Diagnostic], sources: &Sources) -> String {
    list.iter()
        .map(|d| d.render(sources))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Renders policy warnings for stderr, one line each, as every warning is written:
/// `warning: file:line:col: message`.
pub fn warnings(list: &[&Diagnostic]) -> String {
    list.iter()
        .map(|d| format!("warning: {d}"))
        .collect::<Vec<_>>()
        .join("\n")
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

/// A table the way `kubectl get` prints one: a header of capitalised words, left-aligned columns
/// three spaces apart, no borders, no trailing spaces; laid out by comfy-table. A first column
/// with an empty header is an unnamed mark (`✓`/`✗`) one space from the next; with every header
/// empty there is no header line. Ends with a newline.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    if header.iter().any(|h| !h.is_empty()) {
        t.set_header(header);
    }
    for row in rows {
        t.add_row(row);
    }
    for (i, column) in t.column_iter_mut().enumerate() {
        let gap = match i {
            _ if i + 1 == N => 0,
            0 if header.first().is_some_and(|h| h.is_empty()) => 1,
            _ => 3,
        };
        column.set_padding((0, gap));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// The frame the user guides draw around `metrics` and `health`: `UTF8_BORDERS_ONLY` with a
/// plain rule under the title.
const BOX: comfy_table::TableStyle = comfy_table::presets::UTF8_BORDERS_ONLY
    .header_separator(comfy_table::LineStyle::new('├', '─', '─', '┤'));

/// A titled box as the user guides draw one (`panka metrics`, `panka health`), laid out by
/// comfy-table: the title, a rule, one row per line, as wide as the widest. Ends with a newline.
///
/// ```text
/// ┌──────────────────────────────┐
/// │ Health: user-service/api     │
/// ├──────────────────────────────┤
/// │ Tasks:      ✓ 2/2 running    │
/// └──────────────────────────────┘
/// ```
pub fn boxed(title: &str, lines: impl IntoIterator<Item = String>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(BOX);
    t.set_header([title]);
    for line in lines {
        t.add_row([line]);
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// `text` with every line indented by `by` spaces (a table under a heading).
pub fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A moment as people write it in a table or a message: `2026-12-02 12:43 UTC`. (JSON and YAML
/// output keep RFC 3339: machines read those.)
pub fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time recorded as RFC 3339 (state, releases) as people write it ([`timestamp`]); the text as
/// recorded when it is not a time.
pub fn recorded_time(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map_or_else(|_| text.to_owned(), timestamp)
}

/// Epoch seconds (lock records) as a moment; clamped to the range jiff can represent, far beyond
/// any time a lock records.
pub fn epoch(secs: i64) -> jiff::Timestamp {
    let secs = secs.clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    // In range after the clamp, so this never falls back.
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Epoch seconds as RFC 3339, for JSON and YAML output.
pub fn epoch_rfc3339(secs: i64) -> String {
    epoch(secs).to_string()
}

/// A length of time as people say it, to the largest whole unit: `40s`, `12 min`, `5 h`,
/// `3 days` (hours up to two days, so "30 h" is not rounded to "1 day"). A negative length is
/// told as its size.
pub fn duration(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs().unsigned_abs();
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 48 * 3600 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// How long before `now` a moment was: `12 min ago`; a moment after `now` (another machine's
/// clock running ahead) as `in 12 min`.
pub fn ago(then: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let d = now.duration_since(then);
    // Whole seconds: a sub-second lead is clock noise, not "in 0s".
    if d.as_secs() < 0 {
        format!("in {}", duration(d))
    } else {
        format!("{} ago", duration(d))
    }
}

/// `Active` or `Expired (no heartbeat for 1h)`.
pub fn lock_status(l: &LockInfo, now: i64) -> String {
    if l.is_expired_at(now) {
        format!(
            "Expired (no heartbeat for {})",
            duration(epoch(now).duration_since(epoch(l.last_heartbeat)))
        )
    } else {
        "Active".to_owned()
    }
}

/// A lock as JSON.
pub fn lock_json(l: &LockInfo, now: i64) -> serde_json::Value {
    json!({
        "key": l.key(),
        "stack": l.target.stack,
        "environment": l.target.environment,
        "service": match &l.target.scope {
            LockScope::Stack => None,
            LockScope::Service(s) => Some(s),
        },
        "lockId": l.lock_id,
        "lockedBy": l.locked_by,
        "operation": l.operation,
        "lockedAt": epoch_rfc3339(l.locked_at),
        "lastHeartbeat": epoch_rfc3339(l.last_heartbeat),
        "expiresAt": epoch_rfc3339(l.expires_at),
        "fence": l.fence,
        "status": if l.is_expired_at(now) { "Expired" } else { "Active" },
    })
}

/// Prints a command's result in a machine-readable format: pretty JSON, or block-style YAML
/// ([`to_yaml`]). Every command's `--output json|yaml` goes through here; `table` is each
/// command's own rendering and prints JSON if it ever reaches this.
pub fn print_data(format: OutputFormat, value: &serde_json::Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => say_raw!("{}", to_yaml(value)?),
        OutputFormat::Json | OutputFormat::Table => {
            say!("{}", serde_json::to_string_pretty(value)?)
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
mod box_tests {
    use super::boxed;

    #[test]
    fn a_box_frames_a_title_and_its_lines_as_wide_as_the_widest() {
        let text = boxed(
            "Health: user-service/api",
            [
                "Readiness:  ✗ Failing".to_owned(),
                "  Error: 10.0.1.5:8080 unhealthy".to_owned(),
            ],
        );
        let expected = "\
┌──────────────────────────────────┐
│ Health: user-service/api         │
├──────────────────────────────────┤
│ Readiness:  ✗ Failing            │
│   Error: 10.0.1.5:8080 unhealthy │
└──────────────────────────────────┘
";
        assert_eq!(text, expected);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use yaml_rust2::{Yaml, YamlLoader};

    use super::*;

    #[test]
    fn an_error_says_each_cause_once_and_hints_at_a_missing_backend() {
        let aws = panka_controller::aws::AwsError {
            class: panka_controller::aws::ErrorClass::NotFound,
            code: Some("NoSuchBucket".into()),
            status: Some(404),
            message: "NoSuchBucket".into(),
            request_id: None,
        };
        let err = anyhow::Error::new(panka_controller::state::StateError::Aws {
            op: "read",
            location: "s3://b/k".into(),
            source: aws,
        })
        .context("plan stopped");
        let text = error(&err);
        assert_eq!(text.matches("NoSuchBucket").count(), 1, "{text}");
        assert!(
            text.starts_with("error: plan stopped: failed to read s3://b/k: NoSuchBucket\n"),
            "{text}"
        );
        assert!(
            text.contains("hint: the state bucket does not exist")
                && text.contains("`panka backend create --bucket b --table <table>`"),
            "{text}"
        );
        // Causes the context does not quote are still said.
        let err = anyhow::anyhow!("disk full").context("failed to write x");
        assert_eq!(error(&err), "error: failed to write x: disk full");
    }

    #[test]
    fn a_held_lock_says_how_to_wait_at_the_cli_only() {
        use panka_controller::lock::LockError;
        use panka_core::keys::{LockInfo, LockTarget};
        let target = LockTarget::stack("shop", "production").expect("a target");
        let held = LockError::Held {
            requested: target.key(),
            holder: Box::new(LockInfo {
                target,
                lock_id: "id-1".into(),
                locked_by: "ci-run-7".into(),
                operation: "apply".into(),
                locked_at: 0,
                last_heartbeat: 0,
                expires_at: 120,
                fence: 3,
            }),
        };
        // The error itself (also what the controller logs) has no CLI flags in it.
        assert!(!held.to_string().contains("--lock-timeout"), "{held}");
        let text = error(&anyhow::Error::new(held));
        assert!(
            text.contains("ci-run-7 holds stack:shop:env:production"),
            "{text}"
        );
        assert!(
            text.contains("\n  hint: retry when it is done, or wait for it with `--lock-timeout"),
            "{text}"
        );
    }

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

    #[test]
    fn tables_align_columns_three_spaces_apart_without_borders() {
        let text = table(
            ["", "COMPONENT", "KIND", "HEALTH"],
            [
                [
                    "✓".into(),
                    "user-service/api".into(),
                    "MicroService".into(),
                    "Healthy".into(),
                ],
                [
                    "✗".into(),
                    "user-service/db".into(),
                    "RDS".into(),
                    "Missing".into(),
                ],
            ],
        );
        assert_eq!(
            text,
            "  COMPONENT          KIND           HEALTH\n\
             ✓ user-service/api   MicroService   Healthy\n\
             ✗ user-service/db    RDS            Missing\n"
        );
    }

    #[test]
    fn a_table_without_header_words_has_no_header_line_and_cells_may_be_empty() {
        let text = table(
            ["", "", ""],
            [
                ["✓".into(), "s3://b".into(), "created".into()],
                ["!".into(), String::new(), "skipped".into()],
            ],
        );
        assert_eq!(text, "✓ s3://b   created\n!          skipped\n");
        assert_eq!(
            indent(&text, 2),
            "  ✓ s3://b   created\n  !          skipped\n"
        );
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("a time")
    }

    #[test]
    fn moments_read_as_people_write_them() {
        assert_eq!(
            timestamp(at("2026-12-02T12:43:59.123456789Z")),
            "2026-12-02 12:43 UTC"
        );
        assert_eq!(
            recorded_time("2026-12-02T13:43:00+01:00"),
            "2026-12-02 12:43 UTC"
        );
        assert_eq!(recorded_time("not a time"), "not a time");
        assert_eq!(epoch(1_795_444_200), at("2026-11-23T14:30:00Z"));
        assert_eq!(epoch_rfc3339(1_795_444_200), "2026-11-23T14:30:00Z");
        assert_eq!(
            epoch(i64::MAX).as_second(),
            jiff::Timestamp::MAX.as_second()
        );
    }

    #[test]
    fn lengths_of_time_read_in_their_largest_whole_unit() {
        let secs = jiff::SignedDuration::from_secs;
        for (d, text) in [
            (secs(0), "0s"),
            (secs(59), "59s"),
            (secs(60), "1 min"),
            (secs(12 * 60 + 59), "12 min"),
            (secs(3600), "1 h"),
            (secs(47 * 3600), "47 h"),
            (secs(48 * 3600), "2 days"),
            (secs(-90), "1 min"),
        ] {
            assert_eq!(duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn times_read_as_how_long_ago() {
        let now = at("2026-11-23T16:00:00Z");
        assert_eq!(ago(at("2026-11-23T15:59:20.5Z"), now), "39s ago");
        assert_eq!(ago(at("2026-11-23T15:48:00Z"), now), "12 min ago");
        assert_eq!(ago(at("2026-11-23T11:00:00Z"), now), "5 h ago");
        assert_eq!(ago(at("2026-11-20T16:00:00Z"), now), "3 days ago");
        assert_eq!(ago(now, now), "0s ago");
        // Another machine's clock ahead of ours.
        assert_eq!(ago(at("2026-11-23T16:00:00.4Z"), now), "0s ago");
        assert_eq!(ago(at("2026-11-23T16:05:00Z"), now), "in 5 min");
    }
}
