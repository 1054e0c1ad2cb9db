//! Diagnostics: problems in user input, each tied to a file, line and column, with a hint.
//!
//! Every pure stage (load, resolve, graph) reports bad input as [`Diagnostics`]; the CLI renders
//! them with a source snippet and the controller puts them in a condition message.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A position in a repository file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// Path relative to the repository root, e.g. `stacks/shop/stack.yaml`.
    pub file: Arc<str>,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub col: u32,
}

impl Span {
    /// A span for a whole file.
    pub fn file(file: &Arc<str>) -> Span {
        Span {
            file: file.clone(),
            line: 0,
            col: 0,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}", self.file),
            (line, 0) => write!(f, "{}:{line}", self.file),
            (line, col) => write!(f, "{}:{line}:{col}", self.file),
        }
    }
}

/// One problem in user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, when known.
    pub span: Option<Span>,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at a position.
    pub fn at(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span: Some(span),
            message: message.into(),
            help: None,
        }
    }

    /// A problem with no position (e.g. a missing stack).
    pub fn general(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span: None,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a hint.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic with a snippet of the line it points at, when the source is known.
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = format!("error: {}", self.message);
        if let Some(span) = &self.span {
            out.push_str(&format!("\n  --> {span}"));
            if let Some(text) = sources.line(&span.file, span.line) {
                let number = span.line.to_string();
                let gutter = " ".repeat(number.len());
                out.push_str(&format!("\n {gutter} |\n {number} | {text}"));
                if span.col > 0 {
                    let caret_pad: String = text
                        .chars()
                        .take(span.col as usize - 1)
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    out.push_str(&format!("\n {gutter} | {caret_pad}^"));
                }
            }
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("\n  = help: {help}"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(span) = &self.span {
            write!(f, "{span}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// One or more problems; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// Wraps a list; returns `None` when it is empty.
    pub fn from_vec(list: Vec<Diagnostic>) -> Option<Diagnostics> {
        if list.is_empty() {
            None
        } else {
            Some(Diagnostics(list))
        }
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `Diagnostics` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first problem.
    pub fn first(&self) -> &Diagnostic {
        // Invariant: constructed only through `from_vec` / `From<Diagnostic>`, never empty.
        &self.0[0]
    }

    /// Appends the problems of another set.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Renders every problem, separated by blank lines.
    pub fn render(&self, sources: &Sources) -> String {
        self.0
            .iter()
            .map(|d| d.render(sources))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics while a stage goes on, so one run reports every problem it can.
#[derive(Debug, Default)]
pub struct Collector(Vec<Diagnostic>);

impl Collector {
    /// Records a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Records every problem of a set.
    pub fn extend(&mut self, ds: Diagnostics) {
        self.0.extend(ds);
    }

    /// Keeps the value of a result, or records its problems and returns `None`.
    pub fn take<T>(&mut self, result: Result<T, Diagnostics>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(ds) => {
                self.extend(ds);
                None
            }
        }
    }

    /// Whether anything was recorded.
    pub fn has_errors(&self) -> bool {
        !self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        match Diagnostics::from_vec(self.0) {
            None => Ok(value),
            Some(ds) => Err(ds),
        }
    }
}

/// The text of every file read, by repository-relative path, for snippets in diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Sources(BTreeMap<Arc<str>, SourceText>);

/// A file's text and where its lines start, found once so snippets cost no rescans.
#[derive(Debug, Clone)]
struct SourceText {
    text: Arc<str>,
    line_starts: Arc<[usize]>,
}

impl Sources {
    /// Remembers a file's text.
    pub fn insert(&mut self, path: Arc<str>, text: Arc<str>) {
        let line_starts: Arc<[usize]> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.0.insert(path, SourceText { text, line_starts });
    }

    /// The whole text of `file`, if known (for edits that must keep every other byte).
    pub fn text(&self, file: &str) -> Option<&Arc<str>> {
        self.0.get(file).map(|source| &source.text)
    }

    /// Every file and its text.
    pub fn files(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.0.iter().map(|(path, source)| (path, &source.text))
    }

    /// Line `line` (1-based) of `file`, if known.
    pub fn line(&self, file: &str, line: u32) -> Option<&str> {
        let source = self.0.get(file)?;
        let index = (line as usize).checked_sub(1)?;
        let start = *source.line_starts.get(index)?;
        let end = source
            .line_starts
            .get(index + 1)
            .map_or(source.text.len(), |next| next - 1);
        let text = source.text.get(start..end)?;
        Some(text.strip_suffix('\r').unwrap_or(text))
    }
}

/// The closest candidate to `input` by edit distance, if it is close enough to be a likely typo.
pub fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        // Same letters in another case, a few edits away relative to the candidate's length, or
        // an abbreviation of it (`prod` for `production`).
        .filter(|(distance, c)| {
            let c_lower = c.to_ascii_lowercase();
            (*distance == 0 && *c != input)
                || (*distance > 0 && *distance <= (c.len() / 3).max(1))
                || (lower.len() >= 3 && c_lower.starts_with(&lower) && *c != input)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_finds_near_misses_and_ignores_far_ones() {
        let kinds = ["MicroService", "Worker", "RDS", "ElastiCacheRedis"];
        assert_eq!(suggest("MicroServce", kinds), Some("MicroService"));
        assert_eq!(suggest("rds", kinds), Some("RDS"));
        assert_eq!(suggest("Lambda", kinds), None);
        assert_eq!(
            suggest("replcas", ["replicas", "autoscaling"]),
            Some("replicas")
        );
    }

    #[test]
    fn render_points_a_caret_at_the_column() {
        let mut sources = Sources::default();
        let file: Arc<str> = Arc::from("stacks/a/stack.yaml");
        sources.insert(file.clone(), Arc::from("kind: Stack\n  replcas: 2\n"));
        let d = Diagnostic::at(
            Span {
                file,
                line: 2,
                col: 3,
            },
            "unknown field `replcas`",
        )
        .help("did you mean `replicas`?");
        let text = d.render(&sources);
        assert!(text.contains("--> stacks/a/stack.yaml:2:3"), "{text}");
        assert!(text.contains("2 |   replcas: 2\n   |   ^"), "{text}");
        assert!(text.ends_with("= help: did you mean `replicas`?"), "{text}");
    }
}
