//! Where a setting is written in a YAML file's text, and the bytes an edit replaces or adds
//! (stage: acknowledge, pure).
//!
//! The loader's nodes know where a key starts; this module reads the text from there to find
//! the key's `:`, how its value is written (plain, quoted, block scalar, flow or block
//! collection) and where the value ends. Layouts it does not understand are [`Unsupported`];
//! the caller also re-parses every edited text, so a misreading here cannot slip through.

use std::ops::Range;
use std::sync::Arc;

use super::render;
use crate::diag::{Diagnostic, Sources, Span};
use crate::load::yaml::{self, Entry, Limits, Node, Value};

/// One YAML file: its text, where its lines start and its parsed document.
pub(super) struct SourceFile {
    /// Repository-relative path.
    pub(super) path: Arc<str>,
    /// The text, as loaded.
    pub(super) text: Arc<str>,
    line_starts: Vec<usize>,
    /// The document.
    pub(super) root: Node,
}

/// A layout this module cannot edit safely, at the key concerned.
pub(super) struct Unsupported {
    /// The key.
    pub(super) span: Span,
    /// Why, completing "cannot edit …: ".
    pub(super) reason: String,
}

/// How a key's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// `key:` and nothing else (null).
    Empty,
    /// A plain scalar, `~` or `null` included.
    Plain,
    /// `'…'`.
    SingleQuoted,
    /// `"…"`.
    DoubleQuoted,
    /// `|` or `>` and indented lines.
    BlockScalar,
    /// `[…]` or `{…}`.
    Flow,
    /// `- item` lines.
    BlockSeq,
    /// `key: value` lines.
    BlockMap,
}

/// A key as written in the text.
pub(super) struct Written<'f> {
    /// The parsed entry.
    pub(super) entry: &'f Entry,
    /// How its value is written.
    pub(super) form: Form,
    /// Column of the key, 0-based.
    indent: usize,
    /// Byte offset of the key's `:`.
    colon: usize,
    /// Byte offset where the value starts (`colon + 1` when [`Form::Empty`]).
    start: usize,
    /// Whether the key sits inside a flow collection.
    in_flow: bool,
}

/// What a file writes at a path under `spec:`.
pub(super) enum Lookup<'f> {
    /// Every key is written; the last one.
    Set(Written<'f>),
    /// The first `depth` keys are written (0: only `spec:`); `parent` is the last of them, a
    /// mapping without the next key.
    Missing { parent: Written<'f>, depth: usize },
    /// The first `depth` keys are written and the last of them (`spec:` when 0) is not a mapping.
    NotMapping { written: Written<'f>, depth: usize },
}

fn blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t')
}

impl SourceFile {
    /// The loaded text of `path`, parsed again for its layout.
    pub(super) fn read(sources: &Sources, path: &Arc<str>) -> Result<SourceFile, Diagnostic> {
        let Some(text) = sources.text(path) else {
            return Err(Diagnostic::at(
                Span::file(path),
                "the text of this file was not loaded",
            ));
        };
        SourceFile::parse(path, text.clone())
    }

    /// Parses `text`; the loader accepted it already, so a failure is unexpected.
    pub(super) fn parse(path: &Arc<str>, text: Arc<str>) -> Result<SourceFile, Diagnostic> {
        let mut docs = yaml::parse(path, &text, Limits::default())?;
        if docs.len() != 1 {
            return Err(Diagnostic::at(
                Span::file(path),
                "expected exactly one YAML document",
            ));
        }
        let root = docs.remove(0);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ok(SourceFile {
            path: path.clone(),
            text,
            line_starts,
            root,
        })
    }

    /// The node at `keys` below the root, if every key is there.
    pub(super) fn node(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(&self.root, |node, key| node.get(key))
    }

    /// How `spec:` and the keys of `path` below it are written.
    pub(super) fn lookup(&self, path: &[&str]) -> Result<Lookup<'_>, Unsupported> {
        let Some(spec) = self.root.entry("spec") else {
            return Err(Unsupported {
                span: self.root.span.clone(),
                reason: "the file has no `spec:`".to_string(),
            });
        };
        let mut current = self.written(spec, false)?;
        for (depth, key) in path.iter().enumerate() {
            let node = &current.entry.value;
            match &node.value {
                Value::Map(_) => {}
                // `spec:` with nothing under it is an empty spec to the loader.
                Value::Null if depth == 0 && current.form == Form::Empty => {
                    return Ok(Lookup::Missing {
                        parent: current,
                        depth,
                    })
                }
                _ => {
                    return Ok(Lookup::NotMapping {
                        written: current,
                        depth,
                    })
                }
            }
            let Some(entry) = node.entry(key) else {
                return Ok(Lookup::Missing {
                    parent: current,
                    depth,
                });
            };
            let in_flow = current.in_flow || current.form == Form::Flow;
            current = self.written(entry, in_flow)?;
        }
        Ok(Lookup::Set(current))
    }

    /// The bytes to replace and their new text, to give `written` the value `rendered`.
    pub(super) fn replacement(
        &self,
        written: &Written<'_>,
        rendered: &str,
    ) -> Result<(Range<usize>, String), Unsupported> {
        let Written {
            entry,
            form,
            indent,
            colon,
            start,
            in_flow,
        } = *written;
        let unclosed = || Unsupported {
            span: entry.value.span.clone(),
            reason: "its value has no visible end".to_string(),
        };
        let range = match form {
            Form::Empty => return Ok((colon + 1..colon + 1, format!(" {rendered}"))),
            Form::SingleQuoted | Form::DoubleQuoted => {
                start..self.quoted_end(start).ok_or_else(unclosed)?
            }
            Form::Flow => start..self.flow_end(start).ok_or_else(unclosed)?,
            Form::Plain if in_flow => start..self.plain_flow_end(start),
            Form::Plain => start..self.plain_block_end(indent, start),
            Form::BlockScalar => {
                let last = self.last_content_line(indent, self.line_of(start), true, false);
                start..self.line_end(last)
            }
            Form::BlockSeq | Form::BlockMap => {
                // The whole block goes; a comment on the key's line stays.
                let key_line = self.line_of(colon);
                let rest = &self.text[colon + 1..self.line_end(key_line)];
                let comment = if rest.trim_start().starts_with('#') {
                    rest
                } else {
                    ""
                };
                let last = self.last_content_line(indent, key_line, false, form == Form::BlockSeq);
                return Ok((
                    colon + 1..self.line_end(last),
                    format!(" {rendered}{comment}"),
                ));
            }
        };
        Ok((range, rendered.to_string()))
    }

    /// Where to add the keys `missing` (the last one set to `rendered`) under `parent`, and the
    /// lines to add there: block style, after the parent's last child, indented like its
    /// children.
    pub(super) fn insertion(
        &self,
        parent: &Written<'_>,
        missing: &[&str],
        rendered: &str,
    ) -> Result<(usize, String), Unsupported> {
        let unsupported = |reason: &str| Unsupported {
            span: parent.entry.key_span.clone(),
            reason: reason.to_string(),
        };
        if parent.in_flow || parent.form == Form::Flow {
            return Err(unsupported(
                "the mapping to add it to is written in flow style (`{…}`)",
            ));
        }
        let (child, unit, line) = match (parent.form, &parent.entry.value.value) {
            (Form::BlockMap, Value::Map(entries)) => {
                let child = entries
                    .first()
                    .map_or(0, |e| (e.key_span.col as usize).saturating_sub(1));
                if child <= parent.indent {
                    return Err(unsupported("its children are not indented below it"));
                }
                let last =
                    self.last_content_line(parent.indent, self.line_of(parent.colon), false, false);
                (child, child - parent.indent, last)
            }
            (Form::Empty, _) => (parent.indent + 2, 2, self.line_of(parent.colon)),
            _ => return Err(unsupported("it is not a block mapping")),
        };
        let newline = if self.text.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        let at = self
            .line_starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.text.len());
        let mut lines = String::new();
        if at == self.text.len() && !self.text.is_empty() && !self.text.ends_with('\n') {
            lines.push_str(newline);
        }
        for (i, key) in missing.iter().enumerate() {
            lines.push_str(&" ".repeat(child + unit * i));
            lines.push_str(&render::key(key));
            lines.push(':');
            if i + 1 == missing.len() {
                lines.push(' ');
                lines.push_str(rendered);
            }
            lines.push_str(newline);
        }
        Ok((at, lines))
    }

    /// How `entry`'s key and value are written.
    fn written<'f>(&self, entry: &'f Entry, in_flow: bool) -> Result<Written<'f>, Unsupported> {
        let unsupported = |reason: &str| Unsupported {
            span: entry.key_span.clone(),
            reason: reason.to_string(),
        };
        let layout = || unsupported("its YAML layout is not one this command edits");
        let b = self.text.as_bytes();
        let key_start = self.offset(&entry.key_span).ok_or_else(layout)?;
        let indent = (entry.key_span.col as usize).saturating_sub(1);
        let colon = match b.get(key_start) {
            Some(b'"' | b'\'') => {
                let end = self.quoted_end(key_start).ok_or_else(layout)?;
                let p = self.skip_blanks(end);
                (b.get(p) == Some(&b':')).then_some(p).ok_or_else(layout)?
            }
            Some(b'?' | b'&' | b'*' | b'!') => {
                return Err(unsupported(
                    "its key uses `?`, an anchor, an alias or a tag",
                ))
            }
            Some(_) => {
                let colon = self.plain_key_end(key_start, in_flow).ok_or_else(layout)?;
                if self.text[key_start..colon].trim_end() != entry.key {
                    return Err(layout());
                }
                colon
            }
            None => return Err(layout()),
        };
        let after = colon + 1;
        let (start, same_line) = if in_flow {
            let p = self.skip_flow_space(after);
            match b.get(p) {
                None | Some(b',' | b'}' | b']') => (None, true),
                Some(_) => (Some(p), true),
            }
        } else {
            let p = self.skip_blanks(after);
            match b.get(p) {
                None | Some(b'\n' | b'\r' | b'#') => match self.next_content(self.line_of(colon)) {
                    Some((line_indent, first))
                        if line_indent > indent
                            || (line_indent == indent && self.is_dash(first)) =>
                    {
                        (Some(first), false)
                    }
                    _ => (None, false),
                },
                Some(_) => (Some(p), true),
            }
        };
        let node = &entry.value.value;
        let form = match start.and_then(|s| b.get(s).map(|c| (s, *c))) {
            None => Form::Empty,
            Some((_, b'*' | b'&' | b'!')) => {
                return Err(unsupported("its value uses an anchor, an alias or a tag"))
            }
            // On a later line, a block mapping may start with a quoted key.
            Some((s, b'-')) if !same_line && self.is_dash(s) => Form::BlockSeq,
            Some((_, c)) if !same_line && c != b'{' && matches!(node, Value::Map(_)) => {
                Form::BlockMap
            }
            Some((_, b'"')) => Form::DoubleQuoted,
            Some((_, b'\'')) => Form::SingleQuoted,
            Some((_, b'{' | b'[')) => Form::Flow,
            Some((_, b'|' | b'>')) if !in_flow => Form::BlockScalar,
            Some(_) => Form::Plain,
        };
        // What the text looks like must be what the parser saw.
        let consistent = match (form, node) {
            (Form::Empty, Value::Null) => true,
            (Form::Plain, Value::Null) => true,
            (Form::Plain, Value::Scalar(s)) => s.plain,
            (Form::SingleQuoted | Form::DoubleQuoted | Form::BlockScalar, Value::Scalar(s)) => {
                !s.plain
            }
            (Form::Flow, Value::Seq(_) | Value::Map(_)) => true,
            (Form::BlockSeq, Value::Seq(_)) => true,
            (Form::BlockMap, Value::Map(_)) => true,
            _ => false,
        };
        if !consistent {
            return Err(layout());
        }
        Ok(Written {
            entry,
            form,
            indent,
            colon,
            start: start.unwrap_or(after),
            in_flow,
        })
    }

    /// Byte offset of a span's line and (character) column.
    fn offset(&self, span: &Span) -> Option<usize> {
        let line_start = *self.line_starts.get((span.line as usize).checked_sub(1)?)?;
        let col = (span.col as usize).checked_sub(1)?;
        self.text[line_start..]
            .char_indices()
            .nth(col)
            .map(|(i, _)| line_start + i)
    }

    /// Index of the line holding byte `pos`.
    fn line_of(&self, pos: usize) -> usize {
        self.line_starts
            .partition_point(|&s| s <= pos)
            .saturating_sub(1)
    }

    /// Byte offset where line `line`'s content ends (before `\r\n` or `\n`).
    fn line_end(&self, line: usize) -> usize {
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(self.text.len(), |next| next - 1);
        let start = self.line_starts.get(line).copied().unwrap_or(end);
        if end > start && self.text.as_bytes().get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        }
    }

    fn line_text(&self, line: usize) -> &str {
        let start = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        &self.text[start..self.line_end(line).max(start)]
    }

    /// The first line after `line` that is neither blank nor a comment: its indentation and
    /// where its content starts.
    fn next_content(&self, line: usize) -> Option<(usize, usize)> {
        (line + 1..self.line_starts.len()).find_map(|l| {
            let text = self.line_text(l);
            let content = text.trim_start_matches(' ');
            let indent = text.len() - content.len();
            let comment = content.trim().is_empty() || content.starts_with('#');
            (!comment).then(|| (indent, self.line_starts[l] + indent))
        })
    }

    /// The last line of a value that starts on line `first` under a key at column `indent`:
    /// later lines belong to it while they are indented deeper (or, for a block list, start
    /// with `- ` at the key's column). Blank and comment lines in between are skipped, unless
    /// they are the content of a block scalar.
    fn last_content_line(
        &self,
        indent: usize,
        first: usize,
        block_scalar: bool,
        seq: bool,
    ) -> usize {
        let mut last = first;
        for line in first + 1..self.line_starts.len() {
            let text = self.line_text(line);
            let content = text.trim_start_matches(' ');
            let line_indent = text.len() - content.len();
            if content.trim().is_empty() {
                continue;
            }
            if line_indent > indent {
                if block_scalar || !content.starts_with('#') {
                    last = line;
                }
                continue;
            }
            if seq && line_indent == indent && (content == "-" || content.starts_with("- ")) {
                last = line;
                continue;
            }
            if content.starts_with('#') {
                continue;
            }
            break;
        }
        last
    }

    fn is_dash(&self, pos: usize) -> bool {
        let b = self.text.as_bytes();
        b.get(pos) == Some(&b'-')
            && b.get(pos + 1)
                .is_none_or(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    }

    fn skip_blanks(&self, mut pos: usize) -> usize {
        let b = self.text.as_bytes();
        while b.get(pos).is_some_and(|c| blank(*c)) {
            pos += 1;
        }
        pos
    }

    /// Skips white space, line breaks and comments inside a flow collection.
    fn skip_flow_space(&self, mut pos: usize) -> usize {
        let b = self.text.as_bytes();
        loop {
            match b.get(pos) {
                Some(b' ' | b'\t' | b'\n' | b'\r') => pos += 1,
                Some(b'#') => {
                    while b.get(pos).is_some_and(|c| *c != b'\n') {
                        pos += 1;
                    }
                }
                _ => return pos,
            }
        }
    }

    /// The `:` ending a plain key that starts at `pos`, on the same line.
    fn plain_key_end(&self, pos: usize, in_flow: bool) -> Option<usize> {
        let b = self.text.as_bytes();
        (pos..b.len())
            .take_while(|&i| !matches!(b[i], b'\n' | b'\r'))
            .find(|&i| {
                b[i] == b':'
                    && b.get(i + 1).is_none_or(|c| {
                        matches!(c, b' ' | b'\t' | b'\n' | b'\r')
                            || (in_flow && matches!(c, b',' | b'}' | b']'))
                    })
            })
    }

    /// The byte after the closing quote of a quoted scalar starting at `pos`.
    fn quoted_end(&self, pos: usize) -> Option<usize> {
        let b = self.text.as_bytes();
        let quote = *b.get(pos)?;
        let mut i = pos + 1;
        while let Some(&c) = b.get(i) {
            match c {
                b'\\' if quote == b'"' => i += 2,
                b'\'' if quote == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 2,
                c if c == quote => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    /// The byte after the bracket closing the flow collection that starts at `pos`.
    fn flow_end(&self, pos: usize) -> Option<usize> {
        let b = self.text.as_bytes();
        let mut depth = 0usize;
        let mut prev = b' ';
        let mut i = pos;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' | b'\''
                    if matches!(
                        prev,
                        b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':'
                    ) =>
                {
                    i = self.quoted_end(i)?;
                    prev = c;
                    continue;
                }
                b'#' if matches!(prev, b' ' | b'\t' | b'\n' | b'\r') => {
                    while b.get(i).is_some_and(|c| *c != b'\n') {
                        i += 1;
                    }
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            prev = c;
            i += 1;
        }
        None
    }

    /// The end of a plain scalar inside a flow collection.
    fn plain_flow_end(&self, pos: usize) -> usize {
        let b = self.text.as_bytes();
        let mut end = pos;
        while let Some(&c) = b.get(end) {
            let next_ends = b
                .get(end + 1)
                .is_none_or(|n| matches!(n, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}'));
            let ends = matches!(c, b',' | b'[' | b']' | b'{' | b'}' | b'\n' | b'\r')
                || (c == b'#' && end > pos && blank(b[end - 1]))
                || (c == b':' && next_ends);
            if ends {
                break;
            }
            end += 1;
        }
        self.trim_back(pos, end)
    }

    /// The end of a plain scalar in block context under a key at column `indent`: its last
    /// line (a plain scalar may go on over deeper-indented lines) up to a comment.
    fn plain_block_end(&self, indent: usize, pos: usize) -> usize {
        let first = self.line_of(pos);
        let last = self.last_content_line(indent, first, false, false);
        let from = if last == first {
            pos
        } else {
            self.line_starts[last]
        };
        let line = &self.text.as_bytes()[from..self.line_end(last)];
        let cut = (1..line.len())
            .find(|&i| line[i] == b'#' && blank(line[i - 1]))
            .unwrap_or(line.len());
        self.trim_back(pos, from + cut)
    }

    fn trim_back(&self, start: usize, mut end: usize) -> usize {
        let b = self.text.as_bytes();
        while end > start && blank(b[end - 1]) {
            end -= 1;
        }
        end
    }
}
