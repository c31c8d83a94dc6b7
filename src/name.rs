//! File names: the one set of rules that turns a raw name, from a request or from a
//! preseeded path, into a [`FileName`] the store can use as a key.
//!
//! [`normalize_name`] strips leading `/`, treats `\` as `/`, collapses repeated
//! separators, drops `.` components and refuses `..` components, NUL, control characters,
//! empty names and names longer than [`MAX_NAME_LEN`] bytes. A normalised name is a
//! relative, `/`-separated path that can never point outside the store: the store is a hash
//! map, not a directory, so a name is only ever a key.
//!
//! A refused name is a [`NameError`], and [`NameError::error_code`] says which TFTP error a
//! request for it gets. Nothing here does I/O.

use std::fmt;
use std::str::FromStr;

use crate::proto::ErrorCode;

/// The longest name accepted, in bytes, both for the whole name and for each `/`-separated
/// component.
pub const MAX_NAME_LEN: usize = 255;

/// A normalised file name: relative, `/`-separated, with no empty, `.` or `..` components, no
/// NUL or control characters, at most [`MAX_NAME_LEN`] bytes.
///
/// The only way to build one is [`normalize_name`] (or its [`FromStr`] twin), so holding a
/// `FileName` means the name has been checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

impl FileName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's `/`-separated components, none of them empty, `.` or `..`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for FileName {
    type Err = NameError;

    /// Same as [`normalize_name`].
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        normalize_name(raw)
    }
}

/// Why a raw name was refused by [`normalize_name`].
///
/// [`NameError::error_code`] says which TFTP error a request for such a name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Nothing is left once separators and `.` components are removed (`""`, `"/"`, `"./"`).
    Empty,
    /// The name contains a NUL byte.
    Nul,
    /// The name contains a control character other than NUL (for example a newline or
    /// escape), which no preseeded file may have and no log line should carry.
    Control,
    /// The name contains an invisible formatting character (a bidirectional override,
    /// a zero-width space or joiner, a byte-order mark, a tag character): it would show in
    /// a log or a listing as another name than it is.
    Format,
    /// A component is `..`: the name tries to climb out of the store.
    Traversal,
    /// The normalised name, or one of its components, is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// The length found, in bytes.
        len: usize,
    },
}

impl NameError {
    /// The TFTP error for a request naming such a file.
    ///
    /// Names that are hostile or malformed (`..`, NUL, control characters) get
    /// [`ErrorCode::AccessViolation`]: they are refused, not looked up, and the peer should
    /// know it was refused. Names that are merely impossible (empty, too long) get
    /// [`ErrorCode::FileNotFound`]: no file of that name can exist in the store.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            NameError::Nul | NameError::Control | NameError::Format | NameError::Traversal => {
                ErrorCode::AccessViolation
            }
            NameError::Empty | NameError::TooLong { .. } => ErrorCode::FileNotFound,
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the file name is empty"),
            NameError::Nul => f.write_str("the file name contains a NUL byte"),
            NameError::Control => f.write_str("the file name contains a control character"),
            NameError::Format => {
                f.write_str("the file name contains an invisible formatting character")
            }
            NameError::Traversal => {
                f.write_str("the file name contains a \"..\" component, which is not allowed")
            }
            NameError::TooLong { len } => write!(
                f,
                "the file name (or one of its components) is {len} bytes long; \
                 the limit is {MAX_NAME_LEN}"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// True for the invisible formatting characters (Unicode's category Cf) that can make a
/// name look like another: bidirectional embeddings, overrides and isolates, zero-width
/// characters and joiners, word joiners and invisible operators, the byte-order mark,
/// interlinear annotation marks, the soft hyphen and the tag characters.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// Normalises a raw file name, from a request or a preseeded path, into a [`FileName`].
///
/// Leading `/` is stripped, `\` is treated as `/`, repeated separators are collapsed and `.`
/// components are dropped. A `..` component, NUL, any other control character, an
/// invisible formatting character (see `is_format`), an empty
/// result and a result (or component) longer than [`MAX_NAME_LEN`] bytes are refused.
/// Components are compared whole: `a..b` is an ordinary name.
pub fn normalize_name(raw: &str) -> Result<FileName, NameError> {
    if raw.contains('\0') {
        return Err(NameError::Nul);
    }
    if raw.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if raw.chars().any(is_format) {
        return Err(NameError::Format);
    }
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_LEN + 1));
    for component in raw.split(['/', '\\']) {
        match component {
            "" | "." => continue,
            ".." => return Err(NameError::Traversal),
            c if c.len() > MAX_NAME_LEN => return Err(NameError::TooLong { len: c.len() }),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        return Err(NameError::Empty);
    }
    if out.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: out.len() });
    }
    Ok(FileName(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> FileName {
        normalize_name(raw).expect("test name is valid")
    }

    #[test]
    fn normalisation_table() {
        let ok = [
            ("pxelinux.0", "pxelinux.0"),
            ("/pxelinux.0", "pxelinux.0"),
            ("///boot//grub/./grub.cfg", "boot/grub/grub.cfg"),
            ("boot\\grub\\grub.cfg", "boot/grub/grub.cfg"),
            ("\\\\server\\share\\f", "server/share/f"),
            ("./a/./b/.", "a/b"),
            ("a/", "a"),
            ("a..b", "a..b"),
            ("..a/b..", "..a/b.."),
            ("...", "..."),
            ("Mixed Case.BIN", "Mixed Case.BIN"),
            ("ünïcode", "ünïcode"),
        ];
        for (raw, want) in ok {
            assert_eq!(
                normalize_name(raw).map(|n| n.to_string()),
                Ok(want.to_owned()),
                "{raw:?}"
            );
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let refused = [
            ("..", NameError::Traversal),
            ("../etc/passwd", NameError::Traversal),
            ("/a/../../etc/passwd", NameError::Traversal),
            ("a\\..\\b", NameError::Traversal),
            ("a/..", NameError::Traversal),
            ("a\0b", NameError::Nul),
            ("a\nb", NameError::Control),
            ("a\u{1b}[31m", NameError::Control),
            ("a\u{7f}", NameError::Control),
            ("evil\u{202e}txt.exe", NameError::Format),
            ("pxe\u{200b}linux.0", NameError::Format),
            ("\u{feff}boot.ipxe", NameError::Format),
            ("a\u{2066}b", NameError::Format),
            ("tag\u{e0041}", NameError::Format),
            ("", NameError::Empty),
            ("/", NameError::Empty),
            ("././/", NameError::Empty),
            (
                long.as_str(),
                NameError::TooLong {
                    len: MAX_NAME_LEN + 1,
                },
            ),
        ];
        for (raw, want) in refused {
            assert_eq!(normalize_name(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn name_at_the_length_limit_is_accepted_and_one_more_byte_is_not() {
        let component = "c".repeat(127);
        let at_limit = format!("{component}/{component}"); // 255 bytes
        assert_eq!(name(&at_limit).as_str().len(), MAX_NAME_LEN);
        let over = format!("/{component}//{component}x");
        assert_eq!(normalize_name(&over), Err(NameError::TooLong { len: 256 }));
    }

    #[test]
    fn name_errors_map_to_access_violation_or_file_not_found() {
        for hostile in [
            NameError::Traversal,
            NameError::Nul,
            NameError::Control,
            NameError::Format,
        ] {
            assert_eq!(
                hostile.error_code(),
                ErrorCode::AccessViolation,
                "{hostile:?}"
            );
        }
        for impossible in [NameError::Empty, NameError::TooLong { len: 300 }] {
            assert_eq!(
                impossible.error_code(),
                ErrorCode::FileNotFound,
                "{impossible:?}"
            );
        }
        assert!(NameError::Traversal.to_string().contains(".."));
    }
}
