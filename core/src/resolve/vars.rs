//! `${NAME}` substitution (stage: resolve, pure).
//!
//! Values come from `environments/{env}/variables.yaml`, then `--var NAME=VALUE`, plus the
//! built-ins `${ENVIRONMENT}`, `${STACK}` and `${SERVICE}` (the last only inside a service).
//! `$${NAME}` stands for a literal `${NAME}`. A reference to an undefined variable is an error;
//! so is defining a variable with a built-in's name, which would never take effect.

use std::collections::BTreeMap;

use crate::diag::{suggest, Diagnostic, Span};
use crate::load::yaml::{Node, Value};

/// The names panka sets itself; a user variable may not take one of them.
pub const BUILT_INS: [&str; 3] = ["ENVIRONMENT", "STACK", "SERVICE"];

/// Whether `name` is one of the [`BUILT_INS`].
pub fn is_built_in(name: &str) -> bool {
    BUILT_INS.contains(&name)
}

/// The help for a user variable named like a built-in.
pub fn built_in_help(name: &str) -> String {
    format!("rename it; ${{{name}}} is set by panka")
}

/// The variables in scope for one document.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// User variables.
    pub vars: &'a BTreeMap<String, String>,
    /// Environment name.
    pub environment: &'a str,
    /// Stack name.
    pub stack: &'a str,
    /// Service name, inside a service.
    pub service: Option<&'a str>,
}

impl Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        match name {
            "ENVIRONMENT" => Some(self.environment),
            "STACK" => Some(self.stack),
            "SERVICE" => self.service,
            _ => self.vars.get(name).map(String::as_str),
        }
    }

    fn unresolved(&self, name: &str, span: Span) -> Diagnostic {
        let d = Diagnostic::at(span, format!("unresolved variable `${{{name}}}`"));
        if name == "SERVICE" {
            return d.help("`${SERVICE}` is only defined inside a service's files");
        }
        let known = self.vars.keys().map(String::as_str).chain(BUILT_INS);
        match suggest(name, known) {
            Some(s) => d.help(format!("did you mean `${{{s}}}`?")),
            None => d.help(format!(
                "define `{name}` in environments/{}/variables.yaml or pass `--var {name}=VALUE`",
                self.environment
            )),
        }
    }
}

/// Whether `name` is a valid variable name.
pub fn is_valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A scalar whose substitution failed. It keeps its unsubstituted text, so whatever the text
/// causes later (a number field refusing `${X}`) is a consequence, not a problem of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubstituted {
    /// Where the scalar starts.
    pub scalar: Span,
    /// The bad reference.
    pub problem: Diagnostic,
}

/// Substitutes every scalar of a tree in place; collects one problem per bad reference.
pub fn substitute_node(node: &mut Node, scope: &Scope<'_>, problems: &mut Vec<Unsubstituted>) {
    match &mut node.value {
        Value::Scalar(s) => {
            if s.text.contains('$') {
                // Columns within the scalar are exact only for plain single-line scalars.
                let exact = s.plain && !s.text.contains('\n');
                match substitute(&s.text, scope, &node.span, exact) {
                    Ok(text) => s.text = text,
                    Err(problem) => problems.push(Unsubstituted {
                        scalar: node.span.clone(),
                        problem,
                    }),
                }
            }
        }
        Value::Seq(items) => items
            .iter_mut()
            .for_each(|n| substitute_node(n, scope, problems)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|e| substitute_node(&mut e.value, scope, problems)),
        Value::Null => {}
    }
}

/// Substitutes one string. `span` is where the string starts; when `exact`, error columns point
/// at the `$` itself.
pub fn substitute(
    text: &str,
    scope: &Scope<'_>,
    span: &Span,
    exact: bool,
) -> Result<String, Diagnostic> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0usize;
    let at = |offset: usize, line_text: &str| -> Span {
        let mut s = span.clone();
        if exact {
            s.col += u32::try_from(line_text[..offset].chars().count()).unwrap_or(0);
        } else {
            // Point at the right line of a multi-line string, at least.
            s.line += u32::try_from(line_text[..offset].matches('\n').count()).unwrap_or(0);
        }
        s
    };
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            offset += pos + 3;
            continue;
        }
        let Some(inner) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            offset += pos + 1;
            continue;
        };
        let Some(end) = inner.find('}') else {
            return Err(Diagnostic::at(at(offset + pos, text), "`${` is not closed")
                .help("write `${NAME}`, or `$${` for a literal `${`"));
        };
        let name = &inner[..end];
        if !is_valid_var_name(name) {
            return Err(Diagnostic::at(at(offset + pos, text), format!("`${{{name}}}` is not a valid variable reference"))
                .help("variable names use letters, digits and `_`, e.g. `${VERSION}`; write `$${` for a literal `${`"));
        }
        match scope.lookup(name) {
            Some(value) => out.push_str(value),
            None => return Err(scope.unresolved(name, at(offset + pos, text))),
        }
        rest = &inner[end + 1..];
        offset += pos + 2 + end + 1;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn scope(vars: &BTreeMap<String, String>) -> Scope<'_> {
        Scope {
            vars,
            environment: "staging",
            stack: "shop",
            service: None,
        }
    }

    fn span() -> Span {
        Span {
            file: Arc::from("f.yaml"),
            line: 3,
            col: 10,
        }
    }

    #[test]
    fn substitutes_user_and_builtin_variables() {
        let vars = BTreeMap::from([("VERSION".to_string(), "v1.2".to_string())]);
        let out = substitute(
            "${STACK}-${ENVIRONMENT}:${VERSION}",
            &scope(&vars),
            &span(),
            true,
        )
        .unwrap();
        assert_eq!(out, "shop-staging:v1.2");
    }

    #[test]
    fn double_dollar_escapes_and_lone_dollars_pass_through() {
        let vars = BTreeMap::new();
        let out = substitute("cost $5, literal $${HOME}", &scope(&vars), &span(), true).unwrap();
        assert_eq!(out, "cost $5, literal ${HOME}");
    }

    #[test]
    fn unresolved_variable_names_the_column_and_suggests() {
        let vars = BTreeMap::from([("VERSION".to_string(), "v1".to_string())]);
        let err = substitute("img:${VERSON}", &scope(&vars), &span(), true).unwrap_err();
        assert_eq!(err.message, "unresolved variable `${VERSON}`");
        assert_eq!(err.span.unwrap().col, 14);
        assert_eq!(err.help.as_deref(), Some("did you mean `${VERSION}`?"));
    }

    #[test]
    fn unclosed_and_malformed_references_are_errors() {
        let vars = BTreeMap::new();
        assert!(substitute("${OPEN", &scope(&vars), &span(), true).is_err());
        assert!(substitute("${9x}", &scope(&vars), &span(), true).is_err());
    }

    #[test]
    fn service_is_only_defined_inside_a_service() {
        let vars = BTreeMap::new();
        let err = substitute("${SERVICE}", &scope(&vars), &span(), true).unwrap_err();
        assert!(err.help.unwrap().contains("only defined inside"));
        let mut s = scope(&vars);
        s.service = Some("api");
        assert_eq!(substitute("${SERVICE}", &s, &span(), true).unwrap(), "api");
    }
}
