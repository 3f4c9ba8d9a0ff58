//! Positions of field paths in the text, from a `toml_edit` parse that keeps spans.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

#[derive(Debug)]
struct Entry {
    path: String,
    /// Span of the value (or of the table, header included); `None` for implicit tables.
    value: Option<Range<usize>>,
    /// Span of the key naming it, when it has one.
    key: Option<Range<usize>>,
    /// True for a table written with a header (`[x]` or `[[x]]`).
    header: bool,
}

/// Every field path of a document with its spans.
pub(crate) struct Index<'t> {
    text: &'t str,
    entries: Vec<Entry>,
    parsed: bool,
}

impl<'t> Index<'t> {
    /// Indexes `text`; an index of text that is not valid TOML is empty (see [`Index::parsed`]).
    pub(crate) fn new(text: &'t str) -> Self {
        let mut entries = Vec::new();
        let parsed = match ImDocument::parse(text) {
            Ok(doc) => {
                walk_table(doc.as_table(), "", &mut entries);
                true
            }
            Err(_) => false,
        };
        Index {
            text,
            entries,
            parsed,
        }
    }

    /// True when the text was valid TOML.
    pub(crate) fn parsed(&self) -> bool {
        self.parsed
    }

    /// Line and column of the value at `path` (e.g. `networks[0].ports[1]`); when it is not in the text, of its
    /// key, else of the nearest enclosing table or value that is; else 1:1.
    pub(crate) fn position_of(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == path) {
                if let Some(span) = e.value.as_ref().or(e.key.as_ref()) {
                    return line_col(self.text, span.start);
                }
            }
            match parent(path) {
                Some(p) => path = p,
                None => return (1, 1),
            }
        }
    }

    /// The path of the innermost key or value whose span contains byte `offset`; empty when none does.
    pub(crate) fn path_at(&self, offset: usize) -> String {
        self.entries
            .iter()
            .flat_map(|e| {
                [e.value.as_ref(), e.key.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(move |s| (e, s))
            })
            .filter(|(_, s)| s.start <= offset && (offset < s.end || s.start == s.end))
            .min_by_key(|(_, s)| s.end - s.start)
            .map(|(e, _)| e.path.clone())
            .unwrap_or_default()
    }

    /// The path of the table whose header comes last in the text.
    pub(crate) fn last_table_path(&self) -> Option<String> {
        self.entries
            .iter()
            .filter(|e| e.header)
            .filter_map(|e| e.value.as_ref().map(|s| (s.start, e)))
            .max_by_key(|(start, _)| *start)
            .map(|(_, e)| e.path.clone())
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> None.
fn parent(path: &str) -> Option<&str> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    path.rfind('.').map(|i| &path[..i])
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_table(table: &Table, path: &str, out: &mut Vec<Entry>) {
    for (k, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(k) else {
            continue;
        };
        let p = child(path, k);
        walk_item(item, p, key.span(), out);
    }
}

fn walk_item(item: &Item, path: String, key: Option<Range<usize>>, out: &mut Vec<Entry>) {
    match item {
        Item::None => {}
        Item::Value(v) => walk_value(v, path, key, out),
        Item::Table(t) => {
            out.push(Entry {
                path: path.clone(),
                value: t.span(),
                key,
                header: !t.is_implicit() && !t.is_dotted(),
            });
            walk_table(t, &path, out);
        }
        Item::ArrayOfTables(a) => {
            out.push(Entry {
                path: path.clone(),
                value: a.span(),
                key,
                header: false,
            });
            for (i, t) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Entry {
                    path: p.clone(),
                    value: t.span(),
                    key: None,
                    header: true,
                });
                walk_table(t, &p, out);
            }
        }
    }
}

fn walk_value(v: &Value, path: String, key: Option<Range<usize>>, out: &mut Vec<Entry>) {
    out.push(Entry {
        path: path.clone(),
        value: v.span(),
        key,
        header: false,
    });
    match v {
        Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                walk_value(e, format!("{path}[{i}]"), None, out);
            }
        }
        Value::InlineTable(t) => {
            for (k, _) in t.iter() {
                if let Some((key, Item::Value(v))) = t.get_key_value(k) {
                    walk_value(v, child(&path, k), key.span(), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[dataplane]\nburst_size = 3\n\n[[ports]]\nname = \"a\"\n\n[[ports]]\nname = \"b\"\nx = { y = [1, 2] }\n";

    #[test]
    fn positions() {
        let i = Index::new(TEXT);
        assert!(i.parsed());
        assert_eq!(i.position_of("dataplane.burst_size"), (2, 14));
        assert_eq!(i.position_of("dataplane.workers"), (1, 1));
        assert_eq!(i.position_of("ports[1].name"), (8, 8));
        assert_eq!(i.position_of("ports[1].interface"), (7, 1));
        assert_eq!(i.position_of("ports[1].x.y[1]"), (9, 15));
        assert_eq!(i.position_of("networks[0].name"), (1, 1));
        assert_eq!(i.path_at(TEXT.find("\"b\"").unwrap()), "ports[1].name");
        assert_eq!(i.path_at(TEXT.find("2]").unwrap()), "ports[1].x.y[1]");
        assert_eq!(
            i.path_at(TEXT.find("burst").unwrap()),
            "dataplane.burst_size"
        );
        assert_eq!(i.last_table_path().as_deref(), Some("ports[1]"));
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\né = 1", 6), (2, 4));
        assert_eq!(line_col("abc", 99), (1, 4));
    }
}
