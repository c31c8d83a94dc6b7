//! The manifest of a published content set: `manifest.json`, which names every file of one
//! generation with its size and SHA-256, the objects being `objects/<sha256>` beside it.
//!
//! A manifest is data from the network, so [`Manifest::parse`] checks everything a sync
//! relies on before anything touches the disk: every name is already in the store's
//! normal form ([`crate::name`]), no name is listed twice or is both a file and a
//! directory, every digest is 64 lowercase hex digits, and the `generation` is the one
//! the files give ([`generation_of`]), so a manifest is never a mix of two publications.
//! [`Manifest::to_json`] writes the one canonical form, so an unchanged content set
//! publishes to byte-identical text (and so the same HTTP ETag). Nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::name::{NameError, normalize_name};

/// The format version written into (and required of) every manifest.
pub const MANIFEST_FORMAT: u32 = 1;

/// The largest manifest a sync reads, in bytes: about 100,000 files.
pub const MAX_MANIFEST_BYTES: u64 = 32 << 20;

/// One file of a generation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// The name it is served under, in the store's normal form.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256, 64 lowercase hex digits: also the name of its object.
    pub sha256: String,
}

/// A validated manifest: files sorted by name, generation matching them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    generation: String,
    files: Vec<ManifestFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: u32,
    generation: String,
    files: Vec<ManifestFile>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not JSON of the manifest's shape.
    Syntax(String),
    /// A `format` this build does not read.
    Format(u32),
    /// A name that is not in the store's normal form, or that no name may be.
    BadName {
        /// The name as listed.
        name: String,
        /// Why: the name rule broken, or `None` when it is valid but not normalised.
        error: Option<NameError>,
    },
    /// The same name listed twice.
    Duplicate(String),
    /// A name that is a file and also a directory of another listed name.
    FileAndDirectory(String),
    /// A digest that is not 64 lowercase hex digits.
    BadDigest(String),
    /// The `generation` is not the one its files give.
    Generation {
        /// As listed.
        listed: String,
        /// As computed from the files.
        computed: String,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Syntax(e) => write!(f, "the manifest is not valid: {e}"),
            ManifestError::Format(v) => write!(
                f,
                "the manifest has format {v}; this tftpd reads format {MANIFEST_FORMAT}"
            ),
            ManifestError::BadName {
                name,
                error: Some(e),
            } => {
                write!(f, "the manifest names {name:?}: {e}")
            }
            ManifestError::BadName { name, error: None } => write!(
                f,
                "the manifest names {name:?}, which is not in normal form \
                 (no leading, trailing or repeated /, no . components, / as separator)"
            ),
            ManifestError::Duplicate(name) => write!(f, "the manifest names {name:?} twice"),
            ManifestError::FileAndDirectory(name) => write!(
                f,
                "the manifest names {name:?} as a file and as a directory of another file"
            ),
            ManifestError::BadDigest(d) => write!(
                f,
                "the manifest lists the digest {d:?}, which is not 64 lowercase hex digits"
            ),
            ManifestError::Generation { listed, computed } => write!(
                f,
                "the manifest's generation {listed} is not the one its files give ({computed})"
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Whether `digest` is a SHA-256 in the manifest's form: 64 lowercase hex digits. Such a
/// string is also a safe file name for its object.
pub fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The generation of a set of files: the SHA-256 of each name and digest, in name order,
/// as `name NUL sha256 LF`. It changes when any name or content changes and only then.
pub fn generation_of(files: &[ManifestFile]) -> String {
    let mut sorted: Vec<&ManifestFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    for file in sorted {
        hasher.update(file.name.as_bytes());
        hasher.update([0]);
        hasher.update(file.sha256.as_bytes());
        hasher.update([b'\n']);
    }
    hex(&hasher.finalize())
}

impl Manifest {
    /// Builds the manifest of `files` (in any order), checking them as [`Manifest::parse`]
    /// does.
    ///
    /// # Errors
    ///
    /// As [`Manifest::parse`], except that the generation is computed, never wrong.
    pub fn new(mut files: Vec<ManifestFile>) -> Result<Manifest, ManifestError> {
        files.sort();
        check_files(&files)?;
        Ok(Manifest {
            generation: generation_of(&files),
            files,
        })
    }

    /// Parses and checks manifest text from an origin.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] saying what is wrong; nothing here panics on any input.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        if raw.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format(raw.format));
        }
        let listed = raw.generation;
        let manifest = Manifest::new(raw.files)?;
        if manifest.generation != listed {
            return Err(ManifestError::Generation {
                listed,
                computed: manifest.generation,
            });
        }
        Ok(manifest)
    }

    /// The canonical text: pretty-printed JSON with files in name order and a final
    /// newline. The same files always give the same bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let raw = RawManifest {
            format: MANIFEST_FORMAT,
            generation: self.generation.clone(),
            files: self.files.clone(),
        };
        // Serialising strings and integers into a Vec cannot fail.
        let mut text = serde_json::to_vec_pretty(&raw).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// The generation: 64 lowercase hex digits, see [`generation_of`].
    pub fn generation(&self) -> &str {
        &self.generation
    }

    /// The files, in name order.
    pub fn files(&self) -> &[ManifestFile] {
        &self.files
    }

    /// Each distinct object (digest and size) the files need, in digest order.
    pub fn objects(&self) -> BTreeMap<&str, u64> {
        self.files
            .iter()
            .map(|f| (f.sha256.as_str(), f.size))
            .collect()
    }

    /// The total size of the files, in bytes (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().fold(0, |n, f| n.saturating_add(f.size))
    }
}

/// Checks sorted `files`: names normalised, unique, never also a directory; digests well
/// formed; one digest always with one size.
fn check_files(files: &[ManifestFile]) -> Result<(), ManifestError> {
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut directories: BTreeSet<&str> = BTreeSet::new();
    for (i, file) in files.iter().enumerate() {
        match normalize_name(&file.name) {
            Ok(n) if n.as_str() == file.name => {}
            Ok(_) => {
                return Err(ManifestError::BadName {
                    name: file.name.clone(),
                    error: None,
                });
            }
            Err(e) => {
                return Err(ManifestError::BadName {
                    name: file.name.clone(),
                    error: Some(e),
                });
            }
        }
        if i > 0 && files[i - 1].name == file.name {
            return Err(ManifestError::Duplicate(file.name.clone()));
        }
        if !is_digest(&file.sha256) {
            return Err(ManifestError::BadDigest(file.sha256.clone()));
        }
        if *sizes.entry(&file.sha256).or_insert(file.size) != file.size {
            return Err(ManifestError::Syntax(format!(
                "the object {} is listed with two sizes",
                file.sha256
            )));
        }
        let mut end = 0;
        while let Some(slash) = file.name[end..].find('/') {
            end += slash;
            directories.insert(&file.name[..end]);
            end += 1;
        }
    }
    for file in files {
        if directories.contains(file.name.as_str()) {
            return Err(ManifestError::FileAndDirectory(file.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(name: &str, data: &[u8]) -> ManifestFile {
        ManifestFile {
            name: name.to_owned(),
            size: data.len() as u64,
            sha256: hex(&Sha256::digest(data)),
        }
    }

    #[test]
    fn the_text_is_canonical_and_parses_back() {
        let a = Manifest::new(vec![file("b/c", b"x"), file("a", b"yy")]).unwrap();
        let b = Manifest::new(vec![file("a", b"yy"), file("b/c", b"x")]).unwrap();
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(Manifest::parse(&a.to_json()).unwrap(), a);
        assert_eq!(a.files()[0].name, "a");
        let text = String::from_utf8(a.to_json()).unwrap();
        assert!(text.contains("\"generation\": \""), "{text}");
        assert!(text.ends_with("}\n"), "{text}");
    }

    #[test]
    fn the_generation_changes_with_a_name_or_a_content_and_only_then() {
        let one = generation_of(&[file("a", b"1"), file("b", b"2")]);
        assert_eq!(one, generation_of(&[file("b", b"2"), file("a", b"1")]));
        assert_ne!(one, generation_of(&[file("a", b"1"), file("b", b"3")]));
        assert_ne!(one, generation_of(&[file("a", b"1"), file("c", b"2")]));
        assert!(is_digest(&one));
        // Name and digest are separated, so moving bytes between them changes it too.
        assert_ne!(
            generation_of(&[file("ab", b"1")]),
            generation_of(&[file("a", b"1"), file("b", b"1")])
        );
    }

    #[test]
    fn a_wrong_generation_is_refused() {
        let m = Manifest::new(vec![file("a", b"1")]).unwrap();
        let other = Manifest::new(vec![file("a", b"2")]).unwrap();
        let text = String::from_utf8(m.to_json())
            .unwrap()
            .replace(m.generation(), other.generation());
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::Generation { .. })
        ));
    }

    #[test]
    fn bad_names_digests_and_shapes_are_refused() {
        let digest = hex(&Sha256::digest(b""));
        for (name, expect_name_error) in [
            ("/a", true),
            ("a//b", true),
            ("a/./b", true),
            ("a\\b", true),
            ("../a", true),
            ("", true),
            ("a\nb", true),
        ] {
            let f = ManifestFile {
                name: name.to_owned(),
                size: 0,
                sha256: digest.clone(),
            };
            let e = Manifest::new(vec![f]).expect_err(name);
            assert_eq!(
                matches!(e, ManifestError::BadName { .. }),
                expect_name_error,
                "{name:?}: {e}"
            );
        }
        let e = Manifest::new(vec![file("a", b"1"), file("a", b"2")]).unwrap_err();
        assert_eq!(e, ManifestError::Duplicate("a".into()));
        let e = Manifest::new(vec![file("a", b"1"), file("a/b", b"2")]).unwrap_err();
        assert_eq!(e, ManifestError::FileAndDirectory("a".into()));
        for d in [
            "",
            "ABCDEF",
            &digest.to_uppercase(),
            &format!("{digest}0"),
            "../etc/passwd",
        ] {
            let f = ManifestFile {
                name: "a".into(),
                size: 0,
                sha256: d.to_owned(),
            };
            assert!(matches!(
                Manifest::new(vec![f]),
                Err(ManifestError::BadDigest(_))
            ));
        }
        for text in [
            &b"{"[..],
            b"[]",
            b"{\"format\":1,\"generation\":\"x\"}",
            b"{\"format\":1,\"generation\":\"x\",\"files\":[],\"extra\":1}",
        ] {
            assert!(matches!(
                Manifest::parse(text),
                Err(ManifestError::Syntax(_))
            ));
        }
        let empty = Manifest::new(Vec::new()).unwrap();
        let text = String::from_utf8(empty.to_json())
            .unwrap()
            .replace("\"format\": 1", "\"format\": 2");
        assert_eq!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::Format(2))
        );
    }

    proptest! {
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse(&bytes);
        }

        #[test]
        fn every_valid_manifest_round_trips(
            files in proptest::collection::btree_map("[a-c]{1,3}(/[a-c]{1,3}){0,2}", any::<u8>(), 0..8)
        ) {
            let files: Vec<_> = files.iter().map(|(n, b)| file(n, &[*b])).collect();
            if let Ok(m) = Manifest::new(files) {
                prop_assert_eq!(Manifest::parse(&m.to_json()), Ok(m.clone()));
            }
        }
    }
}
