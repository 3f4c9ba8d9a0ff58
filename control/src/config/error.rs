//! [`ConfigError`] and [`Diagnostic`], and the translation of serde/toml errors into them.

use std::fmt;

use super::locate::{line_col, Index};

/// One problem in a configuration, at a position in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as named to [`super::parse`] or [`super::load`].
    pub file: String,
    /// 1-based line of the offending value (or of its table's header when the value is missing); 0 when the
    /// problem has no position (an unreadable file, [`super::Config::validate`]).
    pub line: usize,
    /// 1-based column, counted in characters; 0 when `line` is 0.
    pub col: usize,
    /// Path of the field, like `ports[1].interface` or `networks[0].ports[1]`; indices count the tables of
    /// an array in file order from 0. For a TOML syntax error, the best guess from the text (the enclosing table
    /// and the key on the error's line), or `(top level)`. Empty when the problem is not about a field (an
    /// unreadable file).
    pub field: String,
    /// What is wrong, on one line.
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: FIELD: REASON`; the position is left out when `line` is 0 and the field when it is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why a configuration was refused: one or more [`Diagnostic`]s, in file order. `Display` prints one per line
/// (no trailing newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub(crate) fn new(diagnostics: Vec<Diagnostic>) -> Self {
        debug_assert!(!diagnostics.is_empty());
        ConfigError { diagnostics }
    }

    /// Every problem found, in file order (at least one).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Turns a toml/serde error (syntax, wrong type, unknown field) into a diagnostic with a field path.
pub(crate) fn from_toml(e: &toml::de::Error, text: &str, file: &str) -> Diagnostic {
    let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let (line, col) = line_col(text, offset);
    let message = e.message().trim();
    let index = Index::new(text);
    let (field, reason) = if index.parsed() {
        // The document is valid TOML, so this is a serde error: find the field from the span.
        let mut field = index.path_at(offset);
        let reason = if let Some(name) = between_ticks(message, "unknown field `") {
            if field != name && !field.ends_with(&format!(".{name}")) {
                field = join(&field, &name);
            }
            unknown_field(&name, message)
        } else if let Some(name) = between_ticks(message, "missing field `") {
            field = join(&field, &name);
            "required field is missing".to_string()
        } else {
            type_error(message)
        };
        (field, reason)
    } else {
        (syntax_field(text, offset), one_line(message))
    };
    Diagnostic {
        file: file.to_string(),
        line,
        col,
        field: if field.is_empty() {
            "(top level)".into()
        } else {
            field
        },
        reason,
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `prefix` followed by a name and a backtick: the name.
fn between_ticks(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// Serde's `unknown field `x`, expected one of `a`, `b`` (or `expected `a` or `b``, or `there are no fields`)
/// as `unknown field "x" (did you mean "y"?)` or `unknown field "x" (expected one of: a, b)`.
fn unknown_field(name: &str, message: &str) -> String {
    let expected: Vec<&str> = message
        .split_once(", expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    if let Some(best) = did_you_mean(name, &expected) {
        format!("unknown field {name:?} (did you mean {best:?}?)")
    } else if expected.is_empty() {
        format!("unknown field {name:?}")
    } else {
        format!(
            "unknown field {name:?} (expected one of: {})",
            expected.join(", ")
        )
    }
}

/// The candidate closest to `word` by edit distance, when close enough to be a typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit && *d < len)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Serde's `invalid type: string "a", expected usize` as `expected an integer, found string "a"`, and
/// `invalid value: integer `-1`, expected u32` as `expected a non-negative integer, found -1`.
fn type_error(message: &str) -> String {
    let message = one_line(message);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return format!(
                    "expected {}, found {}",
                    expected_name(expected),
                    found_name(found)
                );
            }
        }
    }
    message
}

fn expected_name(expected: &str) -> String {
    match expected.trim() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "a sequence" => "an array".into(),
        "a boolean" | "bool" => "a boolean (true or false)".into(),
        "a string" => "a string".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e => e.into(),
    }
}

fn found_name(found: &str) -> String {
    let found = found.trim();
    match found {
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        _ => {
            // `integer `-1`` -> `integer -1`; `string "a"` stays.
            found.replace('`', "")
        }
    }
}

/// Best-effort field path for a syntax error at `offset`: the last table header before the error line (found by
/// parsing the text up to there), plus the key at the start of the error line if any.
fn syntax_field(text: &str, offset: usize) -> String {
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let table = Index::new(&text[..line_start]).last_table_path();
    let line = &text[line_start..];
    let line = line.split('\n').next().unwrap_or("");
    let key: String = match line.split_once('=') {
        Some((k, _)) => {
            let k = k.trim();
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                k.to_string()
            } else {
                String::new()
            }
        }
        None => String::new(),
    };
    match (table, key.is_empty()) {
        (Some(t), false) => join(&t, &key),
        (Some(t), true) => t,
        (None, false) => key,
        (None, true) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("interfce", "interface"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            did_you_mean("afpackt", &["ring", "pcap", "afpacket"]),
            Some("afpacket")
        );
        assert_eq!(did_you_mean("zzz", &["ring", "pcap", "afpacket"]), None);
    }

    #[test]
    fn messages() {
        assert_eq!(
            type_error("invalid type: string \"a\", expected usize"),
            "expected a non-negative integer, found string \"a\""
        );
        assert_eq!(
            unknown_field("foo", "unknown field `foo`, expected `a` or `b`"),
            "unknown field \"foo\" (expected one of: a, b)"
        );
        assert_eq!(
            unknown_field(
                "nme",
                "unknown field `nme`, expected one of `name`, `backend`"
            ),
            "unknown field \"nme\" (did you mean \"name\"?)"
        );
    }
}
