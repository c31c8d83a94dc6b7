//! Configuration errors: [`ConfigError`] and the [`Position`] it points at, and the lookup
//! that turns a byte span reported by the TOML parser back into a line, a column and a
//! dotted key (`upload.allow[1]`), so that every error names the place to fix.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A 1-based line and column (in characters) in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub(super) fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a configuration could not be loaded. Every variant means exit status
/// [`EX_CONFIG`](crate::exit::EX_CONFIG).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not valid TOML (or not UTF-8).
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the parser gave up, when known.
        position: Option<Position>,
        /// What is wrong.
        reason: String,
    },
    /// The file is TOML, but a key is unknown, a value has the wrong type or is out of range,
    /// or two keys contradict each other.
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the offending key or value is, when known.
        position: Option<Position>,
        /// The dotted key, e.g. `upload.max-file-size` or `preseed[0].prefix`, when known.
        key: Option<String>,
        /// What is wrong, and what is accepted.
        reason: String,
    },
}

impl ConfigError {
    /// Where in the file the error is, when known.
    #[must_use]
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { position, .. } | ConfigError::Invalid { position, .. } => {
                *position
            }
        }
    }

    /// The dotted key the error is about, when known.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "{}: cannot read configuration: {source}", path.display())
            }
            ConfigError::Syntax {
                path,
                position,
                reason,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(position) = position {
                    write!(f, ":{position}")?;
                }
                write!(f, ": {reason}")
            }
            ConfigError::Invalid {
                path,
                position,
                key,
                reason,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(position) = position {
                    write!(f, ":{position}")?;
                }
                if let Some(key) = key {
                    write!(f, ": key `{key}`")?;
                }
                write!(f, ": {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The text being parsed and where it came from, to turn spans into errors.
pub(super) struct Source<'a> {
    /// The configuration text.
    pub(super) text: &'a str,
    /// The file it was read from.
    pub(super) origin: &'a Path,
}

impl Source<'_> {
    /// An error about `key` at byte range `span`.
    pub(super) fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_path_buf(),
            position: Some(Position::of(self.text, span.start)),
            key: Some(key.into()),
            reason: reason.into(),
        }
    }

    /// Classifies a `toml` error: a syntax error if the text does not even parse as a TOML
    /// document, otherwise an invalid key or value, named by looking its span up.
    pub(super) fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let position = error.span().map(|span| Position::of(self.text, span.start));
        let reason = error.message().trim_end().to_owned();
        match toml::de::DeTable::parse(self.text) {
            Err(syntax) => ConfigError::Syntax {
                path: self.origin.to_path_buf(),
                position: syntax
                    .span()
                    .map(|span| Position::of(self.text, span.start))
                    .or(position),
                reason: syntax.message().trim_end().to_owned(),
            },
            Ok(document) => ConfigError::Invalid {
                path: self.origin.to_path_buf(),
                position,
                key: error
                    .span()
                    .and_then(|span| key_at(document.get_ref(), span.start)),
                reason,
            },
        }
    }
}

/// The dotted path of the innermost key or value of `document` whose span contains `offset`.
fn key_at(document: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    let mut best = None;
    walk_table(document, "", 0, offset, &mut best);
    best.map(|found: Found| found.path)
}

/// A candidate for [`key_at`].
struct Found {
    len: usize,
    depth: usize,
    path: String,
}

fn consider(span: Range<usize>, path: &str, depth: usize, offset: usize, best: &mut Option<Found>) {
    let contains = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !contains {
        return;
    }
    let len = span.len();
    let better = match best {
        None => true,
        Some(found) => len < found.len || (len == found.len && depth > found.depth),
    };
    if better {
        *best = Some(Found {
            len,
            depth,
            path: path.to_owned(),
        });
    }
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    depth: usize,
    offset: usize,
    best: &mut Option<Found>,
) {
    for (key, value) in table {
        let name = key.get_ref();
        let bare = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let path = match (prefix.is_empty(), bare) {
            (true, true) => name.to_string(),
            (true, false) => format!("{name:?}"),
            (false, true) => format!("{prefix}.{name}"),
            (false, false) => format!("{prefix}.{name:?}"),
        };
        consider(key.span(), &path, depth, offset, best);
        consider(value.span(), &path, depth, offset, best);
        walk_value(value.get_ref(), &path, depth + 1, offset, best);
    }
}

fn walk_value(
    value: &toml::de::DeValue<'_>,
    path: &str,
    depth: usize,
    offset: usize,
    best: &mut Option<Found>,
) {
    match value {
        toml::de::DeValue::Table(table) => walk_table(table, path, depth, offset, best),
        toml::de::DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                let path = format!("{path}[{i}]");
                consider(item.span(), &path, depth, offset, best);
                walk_value(item.get_ref(), &path, depth + 1, offset, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn range_error_display_is_file_line_column_key_reason() {
        let (_, shown) = error("timeout = 3\nmax-blksize = 7\n");
        assert_eq!(
            shown,
            "/etc/tftpd.toml:2:15: key `max-blksize`: must be an integer from 8 to 65464 or \"mtu\", not 7"
        );
    }

    #[test]
    fn syntax_error_gives_file_line_column() {
        let (e, shown) = error("timeout = 3\nretries = = 4\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        assert!(shown.starts_with("/etc/tftpd.toml:2:"), "{shown}");
        let (e, shown) = error("[upload\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        assert!(shown.starts_with("/etc/tftpd.toml:1:"), "{shown}");
        let (e, _) = error("timeout = 1\ntimeout = 2\n");
        assert!(
            matches!(e, ConfigError::Syntax { .. }),
            "duplicate key: {e:?}"
        );
        assert_eq!(e.position().map(|p| p.line), Some(2));
    }

    #[test]
    fn unknown_keys_are_rejected_and_named() {
        for (text, key, line) in [
            ("max-blocksize = 512", "max-blocksize", 1),
            (
                "[upload]\nenabled = true\nmax-size = 1",
                "upload.max-size",
                3,
            ),
            (
                "[[preseed]]\npath = \"/srv\"\n[[preseed]]\npath = \"/x\"\nprefx = \"a\"",
                "preseed[1].prefx",
                5,
            ),
            ("[download]\n", "download", 1),
        ] {
            let (e, shown) = error(text);
            assert_eq!(e.key(), Some(key), "{text}: {shown}");
            assert_eq!(e.position().map(|p| p.line), Some(line), "{text}: {shown}");
            assert!(shown.contains("unknown field"), "{shown}");
        }
    }

    #[test]
    fn positions_count_characters_from_one() {
        let text = "a\né = 1\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 2), Position { line: 2, column: 1 });
        assert_eq!(Position::of(text, 5), Position { line: 2, column: 3 });
        assert_eq!(
            Position::of(text, 3),
            Position { line: 2, column: 1 },
            "inside é"
        );
        assert_eq!(Position::of(text, 999), Position { line: 3, column: 1 });
    }
}
