//! The in-memory file store: name normalisation, preseeding from disk, lookups and uploads.
//!
//! Every file is a [`bytes::Bytes`]: loaded once, shared by every transfer that reads it, and
//! never copied per request. A transfer takes a cheap clone with [`Store::get`] when the
//! request arrives and keeps it until it ends, so neither a reload nor an upload that replaces
//! the file can change the bytes it is sending.
//!
//! The module does no networking and reads no clock. It reads the file system only in
//! [`load_preseed`], at start-up and on reload.
//!
//! # Names
//!
//! [`normalize_name`] is the one function that turns a raw name (from a request or from a
//! preseeded path) into a [`FileName`]. It strips leading `/`, treats `\` as `/`, collapses
//! repeated separators, drops `.` components and refuses `..` components, NUL, control
//! characters, empty names and names longer than [`MAX_NAME_LEN`] bytes. A normalised name
//! is a relative, `/`-separated path that can never point outside the store: the store is a
//! hash map, not a directory, so a name is only ever a key.
//!
//! # Rules
//!
//! - With `case_insensitive`, lookups ignore ASCII case; the stored name keeps its case. Two
//!   preseeded names that collide are resolved by "the later one wins", reported in
//!   [`PreseedReport::collisions`].
//! - Uploaded files win over preseeded files of the same name, and they survive a reload:
//!   [`Store::replace_preseed`] swaps only the preseeded files. (Uploads live in memory only;
//!   a restart forgets them.)
//! - An upload is checked twice: when the write request arrives ([`Store::check_upload`]),
//!   and again when it completes ([`Store::commit_upload`]), because other uploads or a
//!   reload may have changed things in between. In-flight uploads reserve nothing.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

/// The longest name the store accepts, in bytes, both for the whole name and for each
/// `/`-separated component.
pub const MAX_NAME_LEN: usize = 255;

/// TFTP error code 1, "File not found".
const TFTP_FILE_NOT_FOUND: u16 = 1;
/// TFTP error code 2, "Access violation".
const TFTP_ACCESS_VIOLATION: u16 = 2;
/// TFTP error code 3, "Disk full or allocation exceeded".
const TFTP_DISK_FULL: u16 = 3;
/// TFTP error code 6, "File already exists".
const TFTP_FILE_EXISTS: u16 = 6;

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

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
/// [`NameError::tftp_error_code`] says which TFTP error a request for such a name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Nothing is left once separators and `.` components are removed (`""`, `"/"`, `"./"`).
    Empty,
    /// The name contains a NUL byte.
    Nul,
    /// The name contains a control character other than NUL (for example a newline or
    /// escape), which no preseeded file may have and no log line should carry.
    Control,
    /// A component is `..`: the name tries to climb out of the store.
    Traversal,
    /// The normalised name, or one of its components, is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// The length found, in bytes.
        len: usize,
    },
}

impl NameError {
    /// The TFTP error code for a request naming such a file.
    ///
    /// Names that are hostile or malformed (`..`, NUL, control characters) get 2, "access
    /// violation": they are refused, not looked up, and the peer should know it was refused.
    /// Names that are merely impossible (empty, too long) get 1, "file not found": no file of
    /// that name can exist in the store.
    pub fn tftp_error_code(&self) -> u16 {
        match self {
            NameError::Nul | NameError::Control | NameError::Traversal => TFTP_ACCESS_VIOLATION,
            NameError::Empty | NameError::TooLong { .. } => TFTP_FILE_NOT_FOUND,
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the file name is empty"),
            NameError::Nul => f.write_str("the file name contains a NUL byte"),
            NameError::Control => f.write_str("the file name contains a control character"),
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

/// Normalises a raw file name, from a request or a preseeded path, into a [`FileName`].
///
/// Leading `/` is stripped, `\` is treated as `/`, repeated separators are collapsed and `.`
/// components are dropped. A `..` component, NUL, any other control character, an empty
/// result and a result (or component) longer than [`MAX_NAME_LEN`] bytes are refused.
/// Components are compared whole: `a..b` is an ordinary name.
pub fn normalize_name(raw: &str) -> Result<FileName, NameError> {
    if raw.contains('\0') {
        return Err(NameError::Nul);
    }
    if raw.chars().any(char::is_control) {
        return Err(NameError::Control);
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

/// The hash-map key for `name`: the name itself, or its ASCII lowercase form when lookups
/// ignore case. Borrows when nothing needs changing.
fn lookup_key(name: &str, case_insensitive: bool) -> Cow<'_, str> {
    if case_insensitive && name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

// ---------------------------------------------------------------------------------------------
// Preseed
// ---------------------------------------------------------------------------------------------

/// One place to preseed files from: the input form of a `[[preseed]]` config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreseedSource {
    /// A file, or a directory loaded recursively. Symlinks are followed here.
    pub path: PathBuf,
    /// Prepended as-is to each file's name before normalisation: a file `a` under prefix
    /// `boot/` is served as `boot/a`, under prefix `boot-` as `boot-a`. May be empty.
    pub prefix: String,
    /// When true, a source that cannot be loaded is skipped (and reported in
    /// [`PreseedReport::skipped_sources`]) instead of failing the whole load.
    pub optional: bool,
}

/// What [`load_preseed`] left out or overrode. Nothing here is fatal; the daemon logs each
/// item as a warning (every item has a `Display`).
#[derive(Debug, Default)]
pub struct PreseedReport {
    /// Optional sources that could not be loaded; none of their files are in the preseed.
    pub skipped_sources: Vec<SkippedSource>,
    /// Entries inside loaded sources that were skipped: symlinks pointing outside, loops,
    /// fifos, sockets, devices, names that cannot be served.
    pub skipped: Vec<Skipped>,
    /// Names given twice (exactly, or ignoring case in case-insensitive mode); the later
    /// one won.
    pub collisions: Vec<Collision>,
}

impl PreseedReport {
    /// True when nothing was skipped or overridden.
    pub fn is_clean(&self) -> bool {
        self.skipped_sources.is_empty() && self.skipped.is_empty() && self.collisions.is_empty()
    }
}

/// An optional preseed source that could not be loaded.
#[derive(Debug)]
pub struct SkippedSource {
    /// The source's path, as configured.
    pub path: PathBuf,
    /// What went wrong; the same error a non-optional source would have stopped on.
    pub error: StoreError,
}

impl fmt::Display for SkippedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "optional preseed source {} skipped: {}",
            self.path.display(),
            self.error
        )
    }
}

/// An entry inside a preseed source that was not loaded.
#[derive(Debug)]
pub struct Skipped {
    /// The entry's path on disk (the link itself for a symlink).
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "preseed: skipped {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

/// Why [`Skipped`] entry was left out.
#[derive(Debug)]
pub enum SkipReason {
    /// A symlink whose canonical target is outside the preseeded directory.
    SymlinkOutside {
        /// Where the link points, canonicalised.
        target: PathBuf,
    },
    /// A symlink that cannot be resolved: dangling, a loop, or not searchable.
    SymlinkUnresolvable(io::Error),
    /// A directory already loaded in this preseed (reached again through a symlink or a bind
    /// mount). Each directory is walked once, which makes the walk loop-safe and bounded.
    DirectoryRevisited {
        /// The directory, canonicalised.
        target: PathBuf,
    },
    /// Not a regular file or directory.
    NotRegular {
        /// What it is: "fifo", "socket", "block device", "character device" or "special file".
        kind: &'static str,
    },
    /// The file name is not valid UTF-8, so no TFTP request could name it reliably.
    NotUtf8,
    /// The name the file would be served under is refused by [`normalize_name`].
    BadName {
        /// The name as built from the prefix and the relative path.
        name: String,
        /// Why it was refused.
        error: NameError,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::SymlinkOutside { target } => write!(
                f,
                "symlink points to {}, outside the preseeded directory",
                target.display()
            ),
            SkipReason::SymlinkUnresolvable(e) => write!(f, "cannot resolve symlink: {e}"),
            SkipReason::DirectoryRevisited { target } => write!(
                f,
                "directory {} is already loaded (symlink loop or duplicate link)",
                target.display()
            ),
            SkipReason::NotRegular { kind } => write!(f, "{kind}, not a regular file"),
            SkipReason::NotUtf8 => f.write_str("the file name is not valid UTF-8"),
            SkipReason::BadName { name, error } => {
                write!(f, "cannot be served as {name:?}: {error}")
            }
        }
    }
}

/// Two preseeded files mapped to the same name (or, in case-insensitive mode, to names that
/// differ only in ASCII case). The later one replaced the earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The name that is served now.
    pub kept: FileName,
    /// The name whose file was replaced (equal to `kept`, or equal ignoring case).
    pub replaced: FileName,
}

impl fmt::Display for Collision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kept == self.replaced {
            write!(
                f,
                "preseed: {:?} is provided more than once; the later one wins",
                self.kept.as_str()
            )
        } else {
            write!(
                f,
                "preseed: {:?} and {:?} differ only in case and lookups ignore case; \
                 the later one, {:?}, wins",
                self.replaced.as_str(),
                self.kept.as_str(),
                self.kept.as_str()
            )
        }
    }
}

/// A fatal error loading a preseed source. Each names the path it is about.
#[derive(Debug)]
pub enum StoreError {
    /// A path could not be read: missing, permission denied, I/O error, out of memory.
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A source path exists but is neither a regular file nor a directory.
    NotFileOrDirectory {
        /// The source path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// A source's prefix contains something no name may contain (`..`, NUL, control
    /// characters) or is too long.
    BadPrefix {
        /// The prefix, as configured.
        prefix: String,
        /// Why it was refused.
        error: NameError,
    },
    /// A source that is a single file cannot be served under its name (prefix + file name).
    BadName {
        /// The source path.
        path: PathBuf,
        /// Why the name was refused.
        error: NameError,
    },
    /// A source that is a single file has a name that is not valid UTF-8.
    NotUtf8 {
        /// The source path.
        path: PathBuf,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, source } => {
                write!(f, "cannot read preseed path {}: {source}", path.display())
            }
            StoreError::NotFileOrDirectory { path, kind } => write!(
                f,
                "preseed path {} is a {kind}, not a regular file or directory",
                path.display()
            ),
            StoreError::BadPrefix { prefix, error } => {
                write!(f, "preseed prefix {prefix:?} is not usable: {error}")
            }
            StoreError::BadName { path, error } => write!(
                f,
                "preseed file {} cannot be served under its name: {error}",
                path.display()
            ),
            StoreError::NotUtf8 { path } => write!(
                f,
                "preseed file {} has a name that is not valid UTF-8",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::BadPrefix { error, .. } | StoreError::BadName { error, .. } => Some(error),
            StoreError::NotFileOrDirectory { .. } | StoreError::NotUtf8 { .. } => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A set of preseeded files, ready to hand to [`Store::new`] or [`Store::replace_preseed`],
/// with the report of what loading them skipped.
///
/// Built by [`load_preseed`], or by hand with [`Preseed::new`] and [`Preseed::insert`].
pub struct Preseed {
    case_insensitive: bool,
    files: Vec<(FileName, Bytes)>,
    index: HashMap<String, usize>,
    bytes: u64,
    report: PreseedReport,
}

impl fmt::Debug for Preseed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preseed")
            .field("case_insensitive", &self.case_insensitive)
            .field("files", &self.files.len())
            .field("bytes", &self.bytes)
            .field("report", &self.report)
            .finish()
    }
}

impl Preseed {
    /// An empty preseed. `case_insensitive` decides which names count as collisions in
    /// [`Preseed::insert`]; pass the value the store will use.
    pub fn new(case_insensitive: bool) -> Self {
        Preseed {
            case_insensitive,
            files: Vec::new(),
            index: HashMap::new(),
            bytes: 0,
            report: PreseedReport::default(),
        }
    }

    /// Adds a file. If the name (or, ignoring case, a name) is already present, the new file
    /// replaces it, the collision is recorded in the report, and the replaced name is returned.
    pub fn insert(&mut self, name: FileName, data: Bytes) -> Option<FileName> {
        let key = lookup_key(name.as_str(), self.case_insensitive).into_owned();
        self.bytes += data.len() as u64;
        match self.index.get(&key) {
            Some(&i) => {
                let (old_name, old_data) =
                    std::mem::replace(&mut self.files[i], (name.clone(), data));
                self.bytes -= old_data.len() as u64;
                self.report.collisions.push(Collision {
                    kept: name,
                    replaced: old_name.clone(),
                });
                Some(old_name)
            }
            None => {
                self.index.insert(key, self.files.len());
                self.files.push((name, data));
                None
            }
        }
    }

    /// The file stored under `name` (ignoring case if this preseed was built that way).
    pub fn get(&self, name: &FileName) -> Option<&Bytes> {
        let key = lookup_key(name.as_str(), self.case_insensitive);
        self.index.get(key.as_ref()).map(|&i| &self.files[i].1)
    }

    /// The number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The total size of the files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    /// The files, in the order they were first added.
    pub fn iter(&self) -> impl Iterator<Item = (&FileName, &Bytes)> {
        self.files.iter().map(|(n, d)| (n, d))
    }

    /// What loading skipped or overrode.
    pub fn report(&self) -> &PreseedReport {
        &self.report
    }
}

/// Loads every source, in order, into a [`Preseed`].
///
/// A file source is stored under `prefix + its file name`; a directory source is walked
/// recursively (entries in name order) and each regular file is stored under
/// `prefix + its path relative to the directory`, `/`-separated. Later sources win over
/// earlier ones on a name collision.
///
/// Inside a directory, a symlink is followed only when its canonical target lies inside the
/// canonical preseeded directory; each directory is walked at most once. Symlinks pointing
/// outside, dangling links, fifos, sockets and devices are skipped and reported, as are
/// entries whose name cannot be served.
///
/// Each file is read once, straight into a buffer of its size; files reached twice (hard
/// links, symlinks) share one buffer.
///
/// # Errors
///
/// Any failure to read a source (missing path, permission denied, an unreadable file or
/// directory inside it) is a [`StoreError`] naming the path, unless the source is
/// `optional`: then the whole source is skipped and reported in
/// [`PreseedReport::skipped_sources`].
pub fn load_preseed(
    sources: &[PreseedSource],
    case_insensitive: bool,
) -> Result<Preseed, StoreError> {
    let mut preseed = Preseed::new(case_insensitive);
    let mut cache = HashMap::new();
    for source in sources {
        let mut loader = SourceLoader {
            source,
            root: PathBuf::new(),
            files: Vec::new(),
            skipped: Vec::new(),
            visited: HashSet::new(),
            cache: &mut cache,
        };
        match loader.load() {
            Ok(()) => {
                let SourceLoader { files, skipped, .. } = loader;
                preseed.report.skipped.extend(skipped);
                for (name, data) in files {
                    preseed.insert(name, data);
                }
            }
            Err(error) if source.optional => {
                preseed.report.skipped_sources.push(SkippedSource {
                    path: source.path.clone(),
                    error,
                });
            }
            Err(error) => return Err(error),
        }
    }
    Ok(preseed)
}

/// Identity of a file or directory on disk: (device, inode).
type FileId = (u64, u64);

/// Loads one source; files are kept apart until the whole source has loaded, so that an
/// optional source is either loaded whole or skipped whole.
struct SourceLoader<'a> {
    source: &'a PreseedSource,
    /// The canonical path of a directory source.
    root: PathBuf,
    files: Vec<(FileName, Bytes)>,
    skipped: Vec<Skipped>,
    /// Directories already walked in this source.
    visited: HashSet<FileId>,
    /// Files already read by this load, shared between names and sources.
    cache: &'a mut HashMap<FileId, Bytes>,
}

fn kind_of(file_type: &fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

impl SourceLoader<'_> {
    fn load(&mut self) -> Result<(), StoreError> {
        let source = self.source;
        let prefix = source.prefix.as_str();
        match normalize_name(prefix) {
            Ok(_) | Err(NameError::Empty) => {}
            Err(error) => {
                return Err(StoreError::BadPrefix {
                    prefix: prefix.to_owned(),
                    error,
                });
            }
        }
        let path = source.path.as_path();
        let meta = fs::metadata(path).map_err(io_error(path))?;
        if meta.is_file() {
            let file_name = path
                .file_name()
                .ok_or_else(|| StoreError::BadName {
                    path: path.to_path_buf(),
                    error: NameError::Empty,
                })?
                .to_str()
                .ok_or_else(|| StoreError::NotUtf8 {
                    path: path.to_path_buf(),
                })?;
            let name = normalize_name(&format!("{prefix}{file_name}")).map_err(|error| {
                StoreError::BadName {
                    path: path.to_path_buf(),
                    error,
                }
            })?;
            match self.read_file(path)? {
                Ok(data) => self.files.push((name, data)),
                Err(kind) => {
                    return Err(StoreError::NotFileOrDirectory {
                        path: path.to_path_buf(),
                        kind,
                    });
                }
            }
            Ok(())
        } else if meta.is_dir() {
            self.root = fs::canonicalize(path).map_err(io_error(path))?;
            let root = self.root.clone();
            self.walk_dir(&root, "", path, &meta)
        } else {
            Err(StoreError::NotFileOrDirectory {
                path: path.to_path_buf(),
                kind: kind_of(&meta.file_type()),
            })
        }
    }

    /// Walks directory `dir` (a canonical path, `meta` its metadata), whose files are named
    /// `prefix + rel + "/" + entry`. `shown` is the path reported to the operator.
    fn walk_dir(
        &mut self,
        dir: &Path,
        rel: &str,
        shown: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), StoreError> {
        if !self.visited.insert((meta.dev(), meta.ino())) {
            self.skip(
                shown,
                SkipReason::DirectoryRevisited {
                    target: dir.to_path_buf(),
                },
            );
            return Ok(());
        }
        // Every name below this directory would be too long: say so once.
        let below = self.source.prefix.len() + rel.len() + 2;
        if below > MAX_NAME_LEN + 1 {
            self.skip(
                shown,
                SkipReason::BadName {
                    name: format!("{}{rel}/", self.source.prefix),
                    error: NameError::TooLong { len: below - 1 },
                },
            );
            return Ok(());
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let file_type = entry.file_type().map_err(io_error(&entry.path()))?;
            entries.push((entry.file_name(), file_type));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        for (file_name, file_type) in entries {
            let path = dir.join(&file_name);
            let shown = shown.join(&file_name);
            let Some(file_name) = file_name.to_str() else {
                self.skip(&shown, SkipReason::NotUtf8);
                continue;
            };
            let rel = if rel.is_empty() {
                file_name.to_owned()
            } else {
                format!("{rel}/{file_name}")
            };
            if file_type.is_symlink() {
                let target = match fs::canonicalize(&path) {
                    Ok(target) => target,
                    Err(e) => {
                        self.skip(&shown, SkipReason::SymlinkUnresolvable(e));
                        continue;
                    }
                };
                if !target.starts_with(&self.root) {
                    self.skip(&shown, SkipReason::SymlinkOutside { target });
                    continue;
                }
                let meta = fs::metadata(&target).map_err(io_error(&target))?;
                if meta.is_dir() {
                    self.walk_dir(&target, &rel, &shown, &meta)?;
                } else {
                    self.add_file(&target, &rel, &shown)?;
                }
            } else if file_type.is_dir() {
                let meta = fs::metadata(&path).map_err(io_error(&path))?;
                self.walk_dir(&path, &rel, &shown, &meta)?;
            } else if file_type.is_file() {
                self.add_file(&path, &rel, &shown)?;
            } else {
                let kind = kind_of(&file_type);
                self.skip(&shown, SkipReason::NotRegular { kind });
            }
        }
        Ok(())
    }

    /// Adds the file at `path` under `prefix + rel`, or reports why not.
    fn add_file(&mut self, path: &Path, rel: &str, shown: &Path) -> Result<(), StoreError> {
        let raw = format!("{}{rel}", self.source.prefix);
        let name = match normalize_name(&raw) {
            Ok(name) => name,
            Err(error) => {
                self.skip(shown, SkipReason::BadName { name: raw, error });
                return Ok(());
            }
        };
        match self.read_file(path)? {
            Ok(data) => self.files.push((name, data)),
            Err(kind) => self.skip(shown, SkipReason::NotRegular { kind }),
        }
        Ok(())
    }

    /// Reads a whole regular file into one buffer of its size. The inner `Err` is the kind of
    /// a non-regular file, checked before opening (so that a fifo is never opened) and again
    /// on the open file.
    fn read_file(&mut self, path: &Path) -> Result<Result<Bytes, &'static str>, StoreError> {
        let meta = fs::metadata(path).map_err(io_error(path))?;
        if !meta.is_file() {
            return Ok(Err(kind_of(&meta.file_type())));
        }
        if let Some(data) = self.cache.get(&(meta.dev(), meta.ino())) {
            return Ok(Ok(data.clone()));
        }
        let mut file = File::open(path).map_err(io_error(path))?;
        let meta = file.metadata().map_err(io_error(path))?;
        if !meta.is_file() {
            return Ok(Err(kind_of(&meta.file_type())));
        }
        let size = usize::try_from(meta.len()).map_err(|_| StoreError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::OutOfMemory, "file too large for memory"),
        })?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(size).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::OutOfMemory, e),
        })?;
        file.read_to_end(&mut buf).map_err(io_error(path))?;
        let data = Bytes::from(buf);
        self.cache.insert((meta.dev(), meta.ino()), data.clone());
        Ok(Ok(data))
    }

    fn skip(&mut self, path: &Path, reason: SkipReason) {
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Upload policy
// ---------------------------------------------------------------------------------------------

/// Who may upload what: the input form of the `[upload]` config table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Whether uploads are accepted at all.
    pub enabled: bool,
    /// The largest single uploaded file, in bytes.
    pub max_file_size: u64,
    /// The most bytes all uploaded files together may hold.
    pub max_total_size: u64,
    /// Whether an upload may replace an existing file (preseeded or uploaded).
    pub overwrite: bool,
    /// Where uploads may go; empty means anywhere. Each entry is normalised like a name and
    /// matched on whole components: `incoming` allows `incoming` and `incoming/x`, not
    /// `incoming2`. An entry that is empty after normalisation (`""`, `"/"`) allows
    /// everything; an entry that is refused by [`normalize_name`] (see
    /// [`UploadPolicy::validate`]) allows nothing.
    pub allow: Vec<String>,
}

impl UploadPolicy {
    /// Uploads off, all limits zero.
    pub fn disabled() -> Self {
        UploadPolicy {
            enabled: false,
            max_file_size: 0,
            max_total_size: 0,
            overwrite: false,
            allow: Vec::new(),
        }
    }

    /// Checks every `allow` entry, for the config module to report bad entries up front.
    ///
    /// # Errors
    ///
    /// The first entry that [`normalize_name`] refuses (other than for being empty), with
    /// the reason.
    pub fn validate(&self) -> Result<(), (String, NameError)> {
        for entry in &self.allow {
            match normalize_name(entry) {
                Ok(_) | Err(NameError::Empty) => {}
                Err(e) => return Err((entry.clone(), e)),
            }
        }
        Ok(())
    }
}

/// An [`UploadPolicy`] with the allow list split into components, ready for matching.
#[derive(Debug)]
struct CompiledPolicy {
    policy: UploadPolicy,
    /// `None` means anywhere. Components are lowercase in case-insensitive mode.
    allow: Option<Vec<Vec<String>>>,
}

impl CompiledPolicy {
    fn new(policy: UploadPolicy, case_insensitive: bool) -> Self {
        let allow = if policy.allow.is_empty() {
            None
        } else {
            let mut prefixes = Vec::new();
            for entry in &policy.allow {
                match normalize_name(entry) {
                    Ok(name) => prefixes.push(
                        name.components()
                            .map(|c| lookup_key(c, case_insensitive).into_owned())
                            .collect(),
                    ),
                    Err(NameError::Empty) => prefixes.push(Vec::new()),
                    // Fail closed: a bad entry allows nothing.
                    Err(_) => {}
                }
            }
            Some(prefixes)
        };
        CompiledPolicy { policy, allow }
    }

    fn allows(&self, name: &FileName, case_insensitive: bool) -> bool {
        let Some(prefixes) = &self.allow else {
            return true;
        };
        let key = lookup_key(name.as_str(), case_insensitive);
        let components: Vec<&str> = key.split('/').collect();
        prefixes.iter().any(|prefix| {
            prefix.len() <= components.len() && prefix.iter().zip(&components).all(|(p, c)| p == c)
        })
    }
}

/// Permission to receive an upload, from [`Store::check_upload`]; hand it back to
/// [`Store::commit_upload`] with the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPermit {
    name: FileName,
    max_size: u64,
}

impl UploadPermit {
    /// The name the upload will be stored under.
    pub fn name(&self) -> &FileName {
        &self.name
    }

    /// The most bytes this upload may reach: the smaller of `max-file-size` and what is left
    /// of `max-total-size` (counting the file it replaces as freed). The transfer should stop
    /// with ERROR 3 as soon as the data passes it.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }
}

/// Why an upload was refused, by [`Store::check_upload`] or [`Store::commit_upload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRefusal {
    /// Uploads are disabled.
    Disabled,
    /// The name is outside every `allow` prefix.
    NotAllowed {
        /// The name asked for.
        name: FileName,
    },
    /// A file of that name exists and `overwrite` is off.
    Exists {
        /// The name asked for.
        name: FileName,
    },
    /// The file is larger than `max-file-size`.
    TooLarge {
        /// The file's size (announced or received), in bytes.
        size: u64,
        /// `max-file-size`.
        limit: u64,
    },
    /// Storing the file would push all uploads together past `max-total-size`.
    TotalExceeded {
        /// The file's size (announced or received), in bytes.
        size: u64,
        /// How many bytes are still free for this upload.
        available: u64,
    },
}

impl UploadRefusal {
    /// The TFTP error code to send: 2 (access violation) when uploads are disabled or the
    /// name is not allowed, 6 (file already exists), 3 (disk full or allocation exceeded) for
    /// the size limits.
    pub fn tftp_error_code(&self) -> u16 {
        match self {
            UploadRefusal::Disabled | UploadRefusal::NotAllowed { .. } => TFTP_ACCESS_VIOLATION,
            UploadRefusal::Exists { .. } => TFTP_FILE_EXISTS,
            UploadRefusal::TooLarge { .. } | UploadRefusal::TotalExceeded { .. } => TFTP_DISK_FULL,
        }
    }
}

impl fmt::Display for UploadRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadRefusal::Disabled => f.write_str("uploads are disabled on this server"),
            UploadRefusal::NotAllowed { name } => {
                write!(
                    f,
                    "uploads are not allowed under the name {:?}",
                    name.as_str()
                )
            }
            UploadRefusal::Exists { name } => write!(
                f,
                "file {:?} already exists and overwriting is disabled",
                name.as_str()
            ),
            UploadRefusal::TooLarge { size, limit } => write!(
                f,
                "file of {size} bytes exceeds the upload size limit of {limit} bytes"
            ),
            UploadRefusal::TotalExceeded { size, available } => write!(
                f,
                "file of {size} bytes exceeds the {available} bytes left for uploads"
            ),
        }
    }
}

impl std::error::Error for UploadRefusal {}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

/// Counts of what the store holds, for `STATUS=` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Files that can be fetched, preseeded and uploaded.
    pub files: usize,
    /// Their total size in bytes: the memory the store holds for file data (bytes still
    /// held by in-flight transfers of replaced files are not counted).
    pub bytes: u64,
    /// Of `files`, those that were uploaded.
    pub uploaded_files: usize,
    /// Of `bytes`, those of uploaded files; counted against `max-total-size`.
    pub uploaded_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    name: FileName,
    data: Bytes,
}

type FileMap = HashMap<String, Entry>;

struct Inner {
    case_insensitive: bool,
    policy: CompiledPolicy,
    /// Keyed by [`lookup_key`]; never holds a key that `uploaded` holds.
    preseed: FileMap,
    preseed_bytes: u64,
    uploaded: FileMap,
    uploaded_bytes: u64,
}

impl Inner {
    fn stats(&self) -> StoreStats {
        StoreStats {
            files: self.preseed.len() + self.uploaded.len(),
            bytes: self.preseed_bytes + self.uploaded_bytes,
            uploaded_files: self.uploaded.len(),
            uploaded_bytes: self.uploaded_bytes,
        }
    }

    /// Checks an upload of `size` bytes (if known) under `name`; returns the permitted
    /// maximum size.
    fn check(&self, name: &FileName, size: Option<u64>) -> Result<u64, UploadRefusal> {
        let policy = &self.policy.policy;
        if !policy.enabled {
            return Err(UploadRefusal::Disabled);
        }
        if !self.policy.allows(name, self.case_insensitive) {
            return Err(UploadRefusal::NotAllowed { name: name.clone() });
        }
        let key = lookup_key(name.as_str(), self.case_insensitive);
        let old_upload = self.uploaded.get(key.as_ref());
        if !policy.overwrite && (old_upload.is_some() || self.preseed.contains_key(key.as_ref())) {
            return Err(UploadRefusal::Exists { name: name.clone() });
        }
        let freed = old_upload.map_or(0, |e| e.data.len() as u64);
        let available = policy
            .max_total_size
            .saturating_sub(self.uploaded_bytes.saturating_sub(freed));
        if let Some(size) = size {
            if size > policy.max_file_size {
                return Err(UploadRefusal::TooLarge {
                    size,
                    limit: policy.max_file_size,
                });
            }
            if size > available {
                return Err(UploadRefusal::TotalExceeded { size, available });
            }
        }
        Ok(policy.max_file_size.min(available))
    }
}

fn build_map(files: Vec<(FileName, Bytes)>, case_insensitive: bool) -> (FileMap, u64) {
    let mut map = HashMap::with_capacity(files.len());
    for (name, data) in files {
        let key = lookup_key(name.as_str(), case_insensitive).into_owned();
        map.insert(key, Entry { name, data });
    }
    let bytes = map.values().map(|e| e.data.len() as u64).sum();
    (map, bytes)
}

/// The live store, shared by every transfer thread.
///
/// Readers take one read lock per request (a hash lookup and a [`Bytes`] clone); writers
/// (upload commits, reloads) take the write lock only to swap prepared data in.
pub struct Store {
    inner: RwLock<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("Store")
            .field("case_insensitive", &inner.case_insensitive)
            .field("stats", &inner.stats())
            .field("upload", &inner.policy.policy)
            .finish()
    }
}

impl Store {
    /// A store serving `preseed`, with lookups ignoring ASCII case when `case_insensitive`,
    /// and accepting uploads under `upload`.
    ///
    /// If `preseed` was built with a different `case_insensitive`, names that now collide are
    /// resolved with the later file winning (unreported: build both with the same flag).
    pub fn new(preseed: Preseed, case_insensitive: bool, upload: UploadPolicy) -> Self {
        let (preseed, preseed_bytes) = build_map(preseed.files, case_insensitive);
        Store {
            inner: RwLock::new(Inner {
                case_insensitive,
                policy: CompiledPolicy::new(upload, case_insensitive),
                preseed,
                preseed_bytes,
                uploaded: HashMap::new(),
                uploaded_bytes: 0,
            }),
        }
    }

    // The lock is never held across code that can panic, so a poisoned lock still guards
    // consistent data: carry on with it.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file's bytes, shared (a reference-count increment, no copy). Call once per
    /// request and keep the result for the whole transfer.
    pub fn get(&self, name: &FileName) -> Option<Bytes> {
        let inner = self.read();
        let key = lookup_key(name.as_str(), inner.case_insensitive);
        inner
            .uploaded
            .get(key.as_ref())
            .or_else(|| inner.preseed.get(key.as_ref()))
            .map(|e| e.data.clone())
    }

    /// Swaps in a new set of preseeded files, case mode and upload policy, atomically (for a
    /// reload). Uploaded files are kept and still win over preseeded files of the same name.
    /// Transfers already holding bytes from [`Store::get`] keep them.
    ///
    /// Returns the uploaded files that had to be dropped because the case mode changed to
    /// insensitive and their names now collide (the greatest name, by byte order, is kept);
    /// normally empty.
    pub fn replace_preseed(
        &self,
        preseed: Preseed,
        case_insensitive: bool,
        upload: UploadPolicy,
    ) -> Vec<FileName> {
        let (mut new_preseed, _) = build_map(preseed.files, case_insensitive);
        let policy = CompiledPolicy::new(upload, case_insensitive);
        let mut dropped = Vec::new();
        let old_preseed;
        let mut old_uploads = None;
        {
            let mut inner = self.write();
            if inner.case_insensitive != case_insensitive {
                let mut uploads: Vec<Entry> =
                    std::mem::take(&mut inner.uploaded).into_values().collect();
                uploads.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                let mut rekeyed = HashMap::with_capacity(uploads.len());
                for entry in uploads {
                    let key = lookup_key(entry.name.as_str(), case_insensitive).into_owned();
                    if let Some(old) = rekeyed.insert(key, entry) {
                        dropped.push(old.name.clone());
                        // Freed outside the lock.
                        old_uploads.get_or_insert_with(Vec::new).push(old);
                    }
                }
                inner.uploaded = rekeyed;
                inner.uploaded_bytes = inner.uploaded.values().map(|e| e.data.len() as u64).sum();
            }
            for key in inner.uploaded.keys() {
                new_preseed.remove(key);
            }
            inner.preseed_bytes = new_preseed.values().map(|e| e.data.len() as u64).sum();
            old_preseed = std::mem::replace(&mut inner.preseed, new_preseed);
            inner.case_insensitive = case_insensitive;
            inner.policy = policy;
        }
        drop(old_preseed);
        drop(old_uploads);
        dropped
    }

    /// What the store holds.
    pub fn stats(&self) -> StoreStats {
        self.read().stats()
    }

    /// Decides whether a write request for `name` may proceed, with `announced_size` from
    /// the `tsize` option when the client sent one. Call when the request arrives.
    ///
    /// # Errors
    ///
    /// An [`UploadRefusal`] to send back as an ERROR packet: uploads disabled, name not
    /// allowed, file exists without `overwrite`, or the announced size over a limit.
    pub fn check_upload(
        &self,
        name: &FileName,
        announced_size: Option<u64>,
    ) -> Result<UploadPermit, UploadRefusal> {
        let max_size = self.read().check(name, announced_size)?;
        Ok(UploadPermit {
            name: name.clone(),
            max_size,
        })
    }

    /// Stores a completed upload, all at once: readers see the old file or the new one,
    /// never part of it. Every check of [`Store::check_upload`] is made again with the real
    /// size, since the policy, the other uploads and the names present may have changed.
    ///
    /// # Errors
    ///
    /// The refusal, in which case the store is unchanged and any old file stays.
    pub fn commit_upload(&self, permit: UploadPermit, data: Vec<u8>) -> Result<(), UploadRefusal> {
        let UploadPermit { name, .. } = permit;
        let size = data.len() as u64;
        let data = Bytes::from(data);
        let (old_preseed, old_upload) = {
            let mut inner = self.write();
            inner.check(&name, Some(size))?;
            let key = lookup_key(name.as_str(), inner.case_insensitive).into_owned();
            let old_preseed = inner.preseed.remove(&key);
            if let Some(old) = &old_preseed {
                inner.preseed_bytes -= old.data.len() as u64;
            }
            let old_upload = inner.uploaded.insert(key, Entry { name, data });
            if let Some(old) = &old_upload {
                inner.uploaded_bytes -= old.data.len() as u64;
            }
            inner.uploaded_bytes += size;
            (old_preseed, old_upload)
        };
        // Freed outside the lock.
        drop((old_preseed, old_upload));
        Ok(())
    }
}
