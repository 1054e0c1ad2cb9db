//! Typed documents from [`Node`] trees through serde, with errors at the offending node
//! (stage: load and resolve, pure).
//!
//! Scalars are typed by what the target asks for: a plain `8080` is a number for a `u16` field
//! and the string `"8080"` for a `String` field, and a version such as `15.10` keeps its text.
//! A quoted scalar is only ever a string. Unknown fields and enum values get a "did you mean"
//! hint from the list serde knows.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::yaml::{Entry, Node, Value};
use crate::diag::{suggest, Diagnostic, Span};

/// A deserialization problem, positioned at the innermost node that caused it.
#[derive(Debug)]
pub struct DeError {
    message: String,
    help: Option<String>,
    span: Option<Span>,
}

impl DeError {
    fn at(mut self, span: &Span) -> DeError {
        if self.span.is_none() {
            self.span = Some(span.clone());
        }
        self
    }

    /// Converts into a diagnostic (the span is always set once the error leaves [`from_node`]).
    pub fn into_diagnostic(self) -> Diagnostic {
        Diagnostic {
            span: self.span,
            message: self.message,
            help: self.help,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            help: None,
            span: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let help = match suggest(field, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if expected.is_empty() => "remove it; this mapping takes no fields".to_string(),
            None => format!("expected one of {}", list(expected)),
        };
        DeError {
            message: format!("unknown field `{field}`"),
            help: Some(help),
            span: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let help = match suggest(variant, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of {}", list(expected)),
        };
        DeError {
            message: format!("unknown value `{variant}`"),
            help: Some(help),
            span: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing field `{field}`"),
            help: Some(format!("add `{field}:` to this mapping")),
            span: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let help = match unexp {
            de::Unexpected::Str(_) if example(exp) != "…" => {
                format!(
                    "write {}, e.g. `{}` (without quotes)",
                    describe(exp),
                    example(exp)
                )
            }
            _ => format!("this setting takes {}", describe(exp)),
        };
        DeError {
            message: format!("wrong type: expected {}, found {unexp}", describe(exp)),
            help: Some(help),
            span: None,
        }
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError {
            message: format!("invalid value: expected {exp}, found {unexp}"),
            help: None,
            span: None,
        }
    }
}

/// Serde's name for a primitive (`u16`) in words a YAML author knows.
fn describe(exp: &dyn de::Expected) -> String {
    let name = exp.to_string();
    match name.as_str() {
        "u8" | "u16" | "u32" | "u64" => format!("a whole number ({name})"),
        "i8" | "i16" | "i32" | "i64" => format!("an integer ({name})"),
        "f32" | "f64" => "a number".to_string(),
        _ => name,
    }
}

/// A sample value for a primitive, for hints.
fn example(exp: &dyn de::Expected) -> &'static str {
    match exp.to_string().as_str() {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => "512",
        "f32" | "f64" => "70",
        "a boolean" => "true",
        _ => "…",
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deserializes `T` from a node; errors carry the position of the node at fault.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe(node)).map_err(|e| e.at(&node.span).into_diagnostic())
}

struct NodeDe<'a>(&'a Node);

impl<'a> NodeDe<'a> {
    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.0.value {
            Value::Null => de::Unexpected::Unit,
            Value::Scalar(s) => de::Unexpected::Str(&s.text),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }

    fn plain_text(&self) -> Option<&'a str> {
        match &self.0.value {
            Value::Scalar(s) if s.plain => Some(s.text.as_str()),
            _ => None,
        }
    }

    fn parse_plain<T: std::str::FromStr>(&self, exp: &dyn de::Expected) -> Result<T, DeError> {
        let text = self
            .plain_text()
            .ok_or_else(|| de::Error::invalid_type(self.unexpected(), exp))?;
        let cleaned = text.replace('_', "");
        cleaned.parse::<T>().map_err(|_| DeError {
            message: format!("expected {}, found `{text}`", describe(exp)),
            help: Some(format!("write {}, e.g. `{}`", describe(exp), example(exp))),
            span: None,
        })
    }
}

fn resolve_plain<'de, V: Visitor<'de>>(text: &str, visitor: V) -> Result<V::Value, DeError> {
    match text {
        "true" | "True" | "TRUE" => return visitor.visit_bool(true),
        "false" | "False" | "FALSE" => return visitor.visit_bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return visitor.visit_i64(i);
    }
    if let Ok(u) = text.parse::<u64>() {
        return visitor.visit_u64(u);
    }
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if numeric && text.chars().any(|c| c.is_ascii_digit()) {
        if let Ok(f) = text.parse::<f64>() {
            return visitor.visit_f64(f);
        }
    }
    visitor.visit_str(text)
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let span = &self.0.span;
            let value: $ty = self.parse_plain(&visitor).map_err(|e| e.at(span))?;
            visitor.$visit::<DeError>(value).map_err(|e| e.at(span))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        let result = match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar(s) if s.plain => resolve_plain(&s.text, visitor),
            Value::Scalar(s) => visitor.visit_str(&s.text),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.at(span))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match self.plain_text() {
            Some("true" | "True" | "TRUE") => visitor.visit_bool(true),
            Some("false" | "False" | "FALSE") => visitor.visit_bool(false),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        let value: f64 = self.parse_plain(&visitor).map_err(|e| e.at(span))?;
        if !value.is_finite() {
            return Err(de::Error::invalid_value(
                de::Unexpected::Float(value),
                &visitor,
            ))
            .map_err(|e: DeError| e.at(span));
        }
        visitor.visit_f64::<DeError>(value).map_err(|e| e.at(span))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match &self.0.value {
            Value::Scalar(s) => visitor.visit_str(&s.text),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match &self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match &self.0.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match &self.0.value {
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match &self.0.value {
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = &self.0.span;
        match &self.0.value {
            // Unit variants are plain strings, e.g. `type: standard`.
            Value::Scalar(s) => visitor.visit_enum(s.text.as_str().into_deserializer()),
            _ => Err(de::Error::invalid_type(self.unexpected(), &"a string")),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e| e.at(&node.span)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some(entry) => {
                self.value = Some(&entry.value);
                let key: de::value::StrDeserializer<'_, DeError> =
                    entry.key.as_str().into_deserializer();
                seed.deserialize(key)
                    .map(Some)
                    .map_err(|e| e.at(&entry.key_span))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(NodeDe(node)).map_err(|e| e.at(&node.span))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use panka_crds::spec::{ComponentInfraSpec, RdsSpec, SqsSpec};

    use super::*;
    use crate::load::yaml::{parse, Limits};

    fn node(text: &str) -> Node {
        let file: Arc<str> = Arc::from("f.yaml");
        parse(&file, text, Limits::default()).unwrap().remove(0)
    }

    #[test]
    fn unknown_field_points_at_the_key_and_suggests_the_right_one() {
        let err = from_node::<ComponentInfraSpec>(&node("scaling:\n  replcas: 2\n")).unwrap_err();
        assert_eq!(err.message, "unknown field `replcas`");
        assert_eq!(err.help.as_deref(), Some("did you mean `replicas`?"));
        let span = err.span.unwrap();
        assert_eq!((span.line, span.col), (2, 3));
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let err = from_node::<ComponentInfraSpec>(&node("resources:\n  cpu: lots\n")).unwrap_err();
        assert!(
            err.message.contains("whole number (u32)"),
            "{}",
            err.message
        );
        assert_eq!(err.span.unwrap().line, 2);
    }

    #[test]
    fn quoted_numbers_are_strings_not_numbers() {
        let err =
            from_node::<ComponentInfraSpec>(&node("resources:\n  cpu: \"256\"\n")).unwrap_err();
        assert!(err.message.contains("wrong type"), "{}", err.message);
    }

    #[test]
    fn plain_scalars_keep_their_text_for_string_fields() {
        let spec: SqsSpec = from_node(&node("type: standard\nvisibilityTimeout: 300\n")).unwrap();
        assert_eq!(spec.visibility_timeout, Some(300));
        let rds = "engine: {type: postgres, version: 15.10}\ninstance: {class: db.t3.small, storage: {allocatedGB: 20}}\ndatabase: {name: d, username: u, passwordSecret: {ref: x}}\n";
        let spec: RdsSpec = from_node(&node(rds)).unwrap();
        assert_eq!(spec.engine.version, "15.10");
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let err = from_node::<RdsSpec>(&node("engine:\n  type: postgres\n")).unwrap_err();
        assert_eq!(err.message, "missing field `version`");
        assert_eq!(err.span.unwrap().line, 2);
    }

    #[test]
    fn unknown_enum_value_suggests_a_near_miss() {
        let err = from_node::<SqsSpec>(&node("type: fif0\n")).unwrap_err();
        assert_eq!(err.message, "unknown value `fif0`");
        assert_eq!(err.help.as_deref(), Some("did you mean `fifo`?"));
    }
}
