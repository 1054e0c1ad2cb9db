//! Reading what the `panka` binary printed, for the CLI tests.

use std::process::Output;

use serde_json::Value;
use yaml_rust2::Yaml;

/// A finished command as text for an assertion message: exit status, stdout and stderr.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A parsed YAML document as JSON, to compare `--output yaml` with `--output json`.
///
/// # Panics
/// On a YAML node JSON has no form for (a non-string key, an alias, a bad float).
pub fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => Value::from(r.parse::<f64>().expect("a float")),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| match k {
                    Yaml::String(k) => (k.clone(), yaml_to_json(v)),
                    other => panic!("YAML key {other:?} is not a string"),
                })
                .collect(),
        ),
        other => panic!("unexpected YAML node {other:?}"),
    }
}
