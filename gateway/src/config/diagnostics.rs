//! Config errors that point at the file, line, column and key path.
//!
//! Serde tells us the byte span of a syntax or type error, and validation knows the key path
//! (`routes[1].upstream`) of a semantic one. This module turns either into the other with a
//! span-preserving parse (`toml_edit::Document`), so every error prints as
//! `FILE:LINE:COL: KEY.PATH: reason`, the way compilers do.

use std::fmt;
use std::ops::Range;
use toml_edit::{Document, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A key path such as `routes[1].plugins[0].config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The empty path (the whole document).
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        KeyPath(segs)
    }

    /// This path extended by an index.
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => write!(f, "{key}")?,
                Seg::Key(key) => write!(f, ".{key}")?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a [`KeyPath`] from literal segments: `path!["routes", 1, "upstream"]`.
#[macro_export]
macro_rules! key_path {
    ($($seg:expr),* $(,)?) => {{
        let path = $crate::config::diagnostics::KeyPath::root();
        $(let path = $crate::config::diagnostics::PathStep::extend($seg, &path);)*
        path
    }};
}

/// Something that can extend a key path: a key (`&str`) or an index (`usize`).
pub trait PathStep {
    /// `path` with `self` appended.
    fn extend(self, path: &KeyPath) -> KeyPath;
}

impl PathStep for &str {
    fn extend(self, path: &KeyPath) -> KeyPath {
        path.key(self)
    }
}

impl PathStep for &String {
    fn extend(self, path: &KeyPath) -> KeyPath {
        path.key(self)
    }
}

impl PathStep for usize {
    fn extend(self, path: &KeyPath) -> KeyPath {
        path.index(self)
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given by the operator.
    pub file: String,
    /// 1-based line, if known.
    pub line: usize,
    /// 1-based column, if known.
    pub column: usize,
    /// Where in the document.
    pub path: KeyPath,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.0.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A list of config errors, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The text of a config file with what is needed to place errors in it.
pub struct SourceMap {
    file: String,
    text: String,
    doc: Option<Document<String>>,
}

impl SourceMap {
    /// Index `text` (the contents of `file`). A document that does not parse still gives
    /// line numbers from byte offsets.
    pub fn new(file: &str, text: &str) -> Self {
        Self::index(file, text)
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn index(file: &str, text: &str) -> Self {
        // `toml_edit` 0.23 panics on some malformed documents (found by the `config_check`
        // fuzz target: `={[]` then `.` on the next line), so it only indexes text that `toml`
        // has accepted as TOML.
        let doc = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|_| Document::parse(text.to_string()).ok());
        SourceMap {
            file: file.to_string(),
            text: text.to_string(),
            doc,
        }
    }

    /// The file name errors are reported against.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// An error at a byte span (from the TOML parser or serde); the key path is recovered.
    pub fn error_at_span(&self, span: Option<Range<usize>>, message: &str) -> ConfigError {
        let offset = span.map(|s| s.start).unwrap_or(0);
        let path = self
            .doc
            .as_ref()
            .map(|doc| path_at(doc.as_item(), offset))
            .unwrap_or_default();
        let (line, column) = line_col(&self.text, offset);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            path,
            message: message.trim().to_string(),
        }
    }

    /// An error at a key path (from validation); the position is looked up.
    pub fn error_at_path(&self, path: KeyPath, message: impl Into<String>) -> ConfigError {
        let offset = self
            .doc
            .as_ref()
            .and_then(|doc| span_of(doc.as_item(), &path.0))
            .map(|span| span.start)
            .unwrap_or(0);
        let (line, column) = line_col(&self.text, offset);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            path,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// A node of the span-preserving tree: tables and arrays come in several flavours.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
        }
    }

    /// The text a node covers: its own span joined with its children's.
    fn extent(self) -> Option<Range<usize>> {
        // A table's own span covers only its `[header]`; its body is its children.
        let own = self.span().filter(|s| !s.is_empty());
        self.children()
            .into_iter()
            .filter_map(|(_, key, child)| {
                let child = child.extent();
                match (key, child) {
                    (Some(k), Some(c)) => Some(k.start.min(c.start)..k.end.max(c.end)),
                    (k, c) => k.or(c),
                }
            })
            .chain(own)
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
    }

    /// Children with their key span (for keyed children) and their own node.
    fn children(self) -> Vec<(Seg, Option<Range<usize>>, Node<'a>)> {
        let table_children = |table: &'a Table| {
            table
                .iter()
                .map(|(key, item)| {
                    let key_span = table.key(key).and_then(|k| k.span());
                    (Seg::Key(key.to_string()), key_span, Node::Item(item))
                })
                .collect::<Vec<_>>()
        };
        let value_children = |value: &'a Value| match value {
            Value::InlineTable(inline) => inline
                .iter()
                .filter_map(|(key, _)| {
                    let (k, item) = inline.get_key_value(key)?;
                    Some((Seg::Key(key.to_string()), k.span(), Node::Item(item)))
                })
                .collect(),
            Value::Array(array) => array
                .iter()
                .enumerate()
                .map(|(i, v)| (Seg::Index(i), None, Node::Value(v)))
                .collect(),
            _ => Vec::new(),
        };
        match self {
            Node::Table(table) => table_children(table),
            Node::Item(Item::Table(table)) => table_children(table),
            Node::Item(Item::ArrayOfTables(tables)) => tables
                .iter()
                .enumerate()
                .map(|(i, t)| (Seg::Index(i), None, Node::Table(t)))
                .collect(),
            Node::Item(Item::Value(value)) | Node::Value(value) => value_children(value),
            Node::Item(Item::None) => Vec::new(),
        }
    }
}

/// The span of the value at `path`, or of the deepest existing ancestor.
fn span_of(root: &Item, path: &[Seg]) -> Option<Range<usize>> {
    let mut node = Node::Item(root);
    let mut best = None;
    for seg in path {
        let Some((_, key_span, child)) = node.children().into_iter().find(|(s, ..)| s == seg)
        else {
            break;
        };
        best = child
            .span()
            .or(key_span)
            .or_else(|| child.extent())
            .or(best);
        node = child;
    }
    best
}

/// The key path of the deepest node whose text contains `offset`.
fn path_at(root: &Item, offset: usize) -> KeyPath {
    let mut node = Node::Item(root);
    let mut path = Vec::new();
    'descend: loop {
        for (seg, key_span, child) in node.children() {
            let extent = child.extent();
            let start = match (&key_span, &extent) {
                (Some(k), Some(e)) => Some(k.start.min(e.start)),
                (k, e) => k.as_ref().or(e.as_ref()).map(|s| s.start),
            };
            let end = extent.or(key_span).map(|s| s.end);
            if let (Some(start), Some(end)) = (start, end)
                && (start..end.max(start + 1)).contains(&offset)
            {
                path.push(seg);
                node = child;
                continue 'descend;
            }
        }
        return KeyPath(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"a\"\nupstream = \"nope\"\nplugins = [ { use = \"x\", config = { a = 1 } } ]\n";

    #[test]
    fn path_display() {
        assert_eq!(
            key_path!["routes", 1usize, "plugins", 0usize, "config"].to_string(),
            "routes[1].plugins[0].config"
        );
    }

    #[test]
    fn locates_paths() {
        let map = SourceMap::new("g.toml", TEXT);
        let err = map.error_at_path(key_path!["routes", 0usize, "upstream"], "bad");
        assert_eq!(err.to_string(), "g.toml:6:12: routes[0].upstream: bad");
        let err = map.error_at_path(
            key_path!["routes", 0usize, "plugins", 0usize, "config"],
            "x",
        );
        assert_eq!((err.line, err.column), (7, 35));
    }

    #[test]
    fn recovers_paths_from_offsets() {
        let map = SourceMap::new("g.toml", TEXT);
        let offset = TEXT.find("a = 1").unwrap();
        let err = map.error_at_span(Some(offset..offset + 1), "oops");
        assert_eq!(err.path.to_string(), "routes[0].plugins[0].config.a");
        assert_eq!(err.line, 7);
    }
}
