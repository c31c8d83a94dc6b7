//! Name normalisation on arbitrary text: `normalize_name` never panics, agrees with a
//! model of the documented rules (which error, and which name), and what it accepts is a
//! fixed point: relative, `/`-separated, no empty, `.` or `..` component, no `\`, NUL or
//! control or invisible formatting character, at most `MAX_NAME_LEN` bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memtftpd::name::{FileName, MAX_NAME_LEN, NameError, normalize_name};

/// Unicode's invisible formatting characters (category Cf), which names may not carry.
fn is_format(c: char) -> bool {
    matches!(u32::from(c),
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xe0001 | 0xe0020..=0xe007f)
}

/// The rules of `crate::name` as its docs state them, in the order they are checked.
fn model(raw: &str) -> Result<String, NameError> {
    if raw.contains('\0') {
        return Err(NameError::Nul);
    }
    if raw.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if raw.chars().any(is_format) {
        return Err(NameError::Format);
    }
    let mut kept = Vec::new();
    for component in raw.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => return Err(NameError::Traversal),
            c if c.len() > MAX_NAME_LEN => return Err(NameError::TooLong { len: c.len() }),
            c => kept.push(c),
        }
    }
    let name = kept.join("/");
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.len() > MAX_NAME_LEN {
        Err(NameError::TooLong { len: name.len() })
    } else {
        Ok(name)
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let result = normalize_name(&raw);
    assert_eq!(
        result.as_ref().map(FileName::as_str).map_err(|e| *e),
        model(&raw).as_deref().map_err(|e| *e),
        "{raw:?}"
    );
    let name = match result {
        Ok(name) => name,
        Err(error) => {
            let _ = (error.to_string(), error.error_code());
            return;
        }
    };
    let s = name.as_str();
    assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN, "{s:?}");
    assert!(!s.starts_with('/') && !s.ends_with('/'), "{s:?}");
    assert!(!s.contains('\\') && !s.contains('\0'), "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
    for component in name.components() {
        assert!(
            !matches!(component, "" | "." | ".."),
            "{s:?} has the component {component:?}"
        );
    }
    assert_eq!(normalize_name(s).as_ref(), Ok(&name), "not a fixed point");
    assert_eq!(s.parse::<FileName>().as_ref(), Ok(&name), "FromStr differs");
});
