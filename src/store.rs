//! The in-memory file store: preseeding from disk, lookups and uploads.
//!
//! Every file is a [`bytes::Bytes`]: loaded once, shared by every transfer that reads it, and
//! never copied per request. A transfer takes a cheap clone with [`Store::get`] when the
//! request arrives and keeps it until it ends, so neither a reload nor an upload that replaces
//! the file can change the bytes it is sending.
//!
//! The module does no networking and reads no clock. It reads the file system only in
//! [`load_preseed`], at start-up and on reload.
//!
//! Every name the store holds or looks up is a [`FileName`], built by the name rules of
//! [`crate::name`].
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
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::name::{FileName, MAX_NAME_LEN, NameError, normalize_name};
use crate::proto::ErrorCode;

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
    /// A directory that is one of its own ancestors in the walk, reached through a symlink
    /// or a bind mount: following it would loop.
    Loop {
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
            SkipReason::Loop { target } => write!(
                f,
                "directory {} contains itself (symlink or bind-mount loop)",
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
    /// A directory source has more entries than [`MAX_PRESEED_ENTRIES`] (counting each
    /// entry once per name it is reached under through symlinks).
    TooManyEntries {
        /// The source path.
        path: PathBuf,
    },
}

/// The most directory entries one preseed source may yield, counting an entry again each
/// time a symlinked directory makes it reachable under another name. Bounds the walk of a
/// tree whose symlinks multiply names.
pub const MAX_PRESEED_ENTRIES: usize = 1_000_000;

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
            StoreError::TooManyEntries { path } => write!(
                f,
                "preseed directory {} yields more than {MAX_PRESEED_ENTRIES} entries \
                 (check for symlinks that multiply names)",
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
            StoreError::NotFileOrDirectory { .. }
            | StoreError::NotUtf8 { .. }
            | StoreError::TooManyEntries { .. } => None,
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
/// canonical preseeded directory (compared on whole path components); a symlinked directory
/// is served under the link's name too. A directory that is its own ancestor (a symlink or
/// bind-mount loop) is not entered again. Symlinks pointing outside, dangling links, loops,
/// fifos, sockets and devices are skipped and reported, as are entries whose name cannot be
/// served.
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
            jobs: Vec::new(),
            job_index: HashMap::new(),
            ancestors: Vec::new(),
            entries: 0,
            cache: &mut cache,
        };
        match loader.load() {
            Ok(()) => {
                let SourceLoader { files, skipped, .. } = loader;
                preseed.report.skipped.extend(skipped);
                for (name, slot) in files {
                    if let Slot::Ready(data) = slot {
                        preseed.insert(name, data);
                    }
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
    files: Vec<(FileName, Slot)>,
    skipped: Vec<Skipped>,
    /// Files to read once the walk is done, each once.
    jobs: Vec<ReadJob>,
    /// Index into `jobs` by file identity.
    job_index: HashMap<FileId, usize>,
    /// The directories being walked, from the root down: entering one again is a loop.
    ancestors: Vec<FileId>,
    /// Entries seen so far in this source, against [`MAX_PRESEED_ENTRIES`].
    entries: usize,
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
            if let Err(kind) = self.queue_file(path, name, path)? {
                return Err(StoreError::NotFileOrDirectory {
                    path: path.to_path_buf(),
                    kind,
                });
            }
            self.read_queued()
        } else if meta.is_dir() {
            self.root = fs::canonicalize(path).map_err(io_error(path))?;
            let root = self.root.clone();
            self.walk_dir(&root, "", path, &meta)?;
            self.read_queued()
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
        let id = (meta.dev(), meta.ino());
        if self.ancestors.contains(&id) {
            self.skip(
                shown,
                SkipReason::Loop {
                    target: dir.to_path_buf(),
                },
            );
            return Ok(());
        }
        // Every name below this directory (at least "/x" longer) would be too long: say so
        // once instead of once per entry.
        let raw = format!("{}{rel}", self.source.prefix);
        let len = match normalize_name(&raw) {
            Ok(dir_name) => dir_name.as_str().len() + 2,
            Err(NameError::TooLong { len }) => len,
            Err(_) => 0,
        };
        if len > MAX_NAME_LEN {
            self.skip(
                shown,
                SkipReason::BadName {
                    name: raw,
                    error: NameError::TooLong { len },
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
        self.entries += entries.len();
        if self.entries > MAX_PRESEED_ENTRIES {
            return Err(StoreError::TooManyEntries {
                path: self.source.path.clone(),
            });
        }

        self.ancestors.push(id);
        let result = self.walk_entries(dir, rel, shown, entries);
        self.ancestors.pop();
        result
    }

    fn walk_entries(
        &mut self,
        dir: &Path,
        rel: &str,
        shown: &Path,
        entries: Vec<(std::ffi::OsString, fs::FileType)>,
    ) -> Result<(), StoreError> {
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
        if let Err(kind) = self.queue_file(path, name, shown)? {
            self.skip(shown, SkipReason::NotRegular { kind });
        }
        Ok(())
    }

    /// Queues the regular file at `path` to be stored as `name`; the inner `Err` is the kind
    /// of a non-regular file. Checked before opening, so that a fifo is never opened.
    fn queue_file(
        &mut self,
        path: &Path,
        name: FileName,
        shown: &Path,
    ) -> Result<Result<(), &'static str>, StoreError> {
        let meta = fs::metadata(path).map_err(io_error(path))?;
        if !meta.is_file() {
            return Ok(Err(kind_of(&meta.file_type())));
        }
        let id = (meta.dev(), meta.ino());
        let slot = match self.cache.get(&id) {
            Some(data) => Slot::Ready(data.clone()),
            None => {
                let next = self.jobs.len();
                let i = *self.job_index.entry(id).or_insert(next);
                if i == next {
                    self.jobs.push(ReadJob {
                        path: path.to_path_buf(),
                        shown: shown.to_path_buf(),
                        id,
                    });
                }
                Slot::Queued(i)
            }
        };
        self.files.push((name, slot));
        Ok(Ok(()))
    }

    /// Reads every queued file (in parallel) and fills in the file list.
    fn read_queued(&mut self) -> Result<(), StoreError> {
        let jobs = std::mem::take(&mut self.jobs);
        self.job_index.clear();
        let mut read = Vec::with_capacity(jobs.len());
        for (job, result) in jobs.iter().zip(read_all(&jobs)?) {
            match result {
                Ok(data) => {
                    self.cache.insert(job.id, data.clone());
                    read.push(Some(data));
                }
                Err(kind) => {
                    self.skip(&job.shown, SkipReason::NotRegular { kind });
                    read.push(None);
                }
            }
        }
        for (_, slot) in &mut self.files {
            if let Slot::Queued(i) = *slot {
                *slot = match read.get(i) {
                    Some(Some(data)) => Slot::Ready(data.clone()),
                    _ => Slot::Gone,
                };
            }
        }
        Ok(())
    }

    fn skip(&mut self, path: &Path, reason: SkipReason) {
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
        });
    }
}

/// The most threads [`load_preseed`] reads files with. Reading from the page cache is
/// dominated by faulting in fresh memory, which scales with cores.
const MAX_READ_THREADS: usize = 4;

/// A file's data in [`SourceLoader::files`].
enum Slot {
    Ready(Bytes),
    /// Index into the read jobs.
    Queued(usize),
    /// Turned out not to be a regular file when opened (already reported).
    Gone,
}

/// A file to read: `path` to open, `shown` to report, `id` to share the result.
struct ReadJob {
    path: PathBuf,
    shown: PathBuf,
    id: FileId,
}

type ReadResult = Result<Bytes, &'static str>;

/// Reads every job, on up to [`MAX_READ_THREADS`] threads (this one included), and returns
/// the results in job order.
///
/// # Errors
///
/// The error of the first failed job (by index) among those attempted; the workers stop
/// taking new jobs after any failure.
fn read_all(jobs: &[ReadJob]) -> Result<Vec<ReadResult>, StoreError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_READ_THREADS)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            let result = read_regular(&job.path);
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            done.push((i, result));
        }
        done
    };
    let mut done = std::thread::scope(|scope| {
        // Helpers that fail to start are simply not there: this thread does the rest.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut done = work();
        for helper in helpers {
            match helper.join() {
                Ok(more) => done.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Reads a whole regular file into one buffer of its size (no second copy: the buffer
/// becomes the `Bytes`). The inner `Err` is the kind of a file that is not regular once
/// opened.
fn read_regular(path: &Path) -> Result<ReadResult, StoreError> {
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
    Ok(Ok(Bytes::from(buf)))
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
    /// The TFTP error to send: [`ErrorCode::AccessViolation`] when uploads are disabled or
    /// the name is not allowed, [`ErrorCode::FileExists`], and [`ErrorCode::DiskFull`] for
    /// the size limits.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            UploadRefusal::Disabled | UploadRefusal::NotAllowed { .. } => {
                ErrorCode::AccessViolation
            }
            UploadRefusal::Exists { .. } => ErrorCode::FileExists,
            UploadRefusal::TooLarge { .. } | UploadRefusal::TotalExceeded { .. } => {
                ErrorCode::DiskFull
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;

    fn name(raw: &str) -> FileName {
        normalize_name(raw).expect("test name is valid")
    }

    fn source(path: &Path, prefix: &str) -> PreseedSource {
        PreseedSource {
            path: path.to_path_buf(),
            prefix: prefix.to_owned(),
            optional: false,
        }
    }

    fn preseed_of(files: &[(&str, &[u8])], case_insensitive: bool) -> Preseed {
        let mut preseed = Preseed::new(case_insensitive);
        for (n, data) in files {
            preseed.insert(name(n), Bytes::copy_from_slice(data));
        }
        preseed
    }

    fn uploads(max_file_size: u64, max_total_size: u64) -> UploadPolicy {
        UploadPolicy {
            enabled: true,
            max_file_size,
            max_total_size,
            overwrite: false,
            allow: Vec::new(),
        }
    }

    fn write(path: &Path, data: &[u8]) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create test dir");
        }
        fs::write(path, data).expect("write test file");
    }

    fn get(store: &Store, raw: &str) -> Option<Vec<u8>> {
        store.get(&name(raw)).map(|b| b.to_vec())
    }

    #[test]
    fn case_insensitive_lookup_ignores_ascii_case_and_keeps_the_stored_name() {
        let preseed = preseed_of(&[("Boot/PXELinux.0", b"pxe")], true);
        assert_eq!(
            preseed.iter().next().map(|(n, _)| n.as_str()),
            Some("Boot/PXELinux.0")
        );
        let store = Store::new(preseed, true, UploadPolicy::disabled());
        assert_eq!(get(&store, "boot/pxelinux.0").as_deref(), Some(&b"pxe"[..]));
        assert_eq!(get(&store, "BOOT/PXELINUX.0").as_deref(), Some(&b"pxe"[..]));
        assert_eq!(get(&store, "Boot/PXELinux.0").as_deref(), Some(&b"pxe"[..]));
    }

    #[test]
    fn case_sensitive_lookup_needs_the_exact_case() {
        let store = Store::new(
            preseed_of(&[("PXELinux.0", b"pxe")], false),
            false,
            UploadPolicy::disabled(),
        );
        assert_eq!(get(&store, "pxelinux.0"), None);
        assert_eq!(get(&store, "PXELinux.0").as_deref(), Some(&b"pxe"[..]));
    }

    #[test]
    fn case_insensitive_collision_keeps_the_later_file_and_reports_it() {
        let preseed = preseed_of(&[("README", b"first"), ("readme", b"second")], true);
        assert_eq!(preseed.len(), 1);
        assert_eq!(preseed.total_bytes(), 6);
        let collisions = &preseed.report().collisions;
        assert_eq!(
            collisions,
            &[Collision {
                kept: name("readme"),
                replaced: name("README"),
            }]
        );
        assert!(collisions[0].to_string().contains("case"));
        let store = Store::new(preseed, true, UploadPolicy::disabled());
        assert_eq!(get(&store, "ReadMe").as_deref(), Some(&b"second"[..]));
    }

    #[test]
    fn preseed_of_a_directory_tree_uses_prefix_and_relative_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("pxelinux.0"), b"pxe");
        write(&dir.path().join("pxelinux.cfg/default"), b"menu");
        write(&dir.path().join("a/b/c/deep.bin"), &[7; 3000]);
        fs::create_dir(dir.path().join("empty")).expect("mkdir");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        fs::write(file.path(), b"single").expect("write");

        let single_name = file
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 temp name");
        let preseed = load_preseed(
            &[source(dir.path(), "boot/"), source(file.path(), "extra-")],
            false,
        )
        .expect("preseed loads");
        assert!(preseed.report().is_clean(), "{:?}", preseed.report());
        assert_eq!(preseed.len(), 4);
        assert_eq!(preseed.total_bytes(), 3 + 4 + 3000 + 6);

        let store = Store::new(preseed, false, UploadPolicy::disabled());
        assert_eq!(get(&store, "boot/pxelinux.0").as_deref(), Some(&b"pxe"[..]));
        assert_eq!(
            get(&store, "/boot/pxelinux.cfg/default").as_deref(),
            Some(&b"menu"[..])
        );
        assert_eq!(get(&store, "boot\\a\\b\\c\\deep.bin"), Some(vec![7; 3000]));
        assert_eq!(
            get(&store, &format!("extra-{single_name}")).as_deref(),
            Some(&b"single"[..])
        );
        assert_eq!(get(&store, "pxelinux.0"), None);
    }

    #[test]
    fn later_source_wins_a_name_collision() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        write(&a.path().join("f"), b"from a");
        write(&b.path().join("f"), b"from b");
        let preseed = load_preseed(&[source(a.path(), ""), source(b.path(), "")], false)
            .expect("preseed loads");
        assert_eq!(preseed.report().collisions.len(), 1);
        assert_eq!(
            preseed.get(&name("f")).map(|b| &b[..]),
            Some(&b"from b"[..])
        );
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-dir");
        let err = load_preseed(&[source(&missing, "")], false).expect_err("must fail");
        assert!(
            matches!(&err, StoreError::Io { path, source }
                if path == &missing && source.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("No such file"), "{message}");
    }

    #[test]
    fn optional_missing_source_is_skipped_and_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("present"), b"here");
        let missing = dir.path().join("no-such-dir");
        let sources = [
            PreseedSource {
                optional: true,
                ..source(&missing, "")
            },
            source(dir.path(), ""),
        ];
        let preseed = load_preseed(&sources, false).expect("optional source is skipped");
        assert_eq!(preseed.len(), 1);
        let skipped = &preseed.report().skipped_sources;
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].path, missing);
        assert!(skipped[0].to_string().contains("no-such-dir"));
    }

    #[test]
    fn bad_prefix_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load_preseed(&[source(dir.path(), "../")], false).expect_err("must fail");
        assert!(matches!(
            err,
            StoreError::BadPrefix {
                error: NameError::Traversal,
                ..
            }
        ));
    }

    #[test]
    fn symlink_inside_the_directory_is_followed_and_outside_is_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        write(&outside.path().join("secret"), b"secret");
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("real/file"), b"inside");
        symlink("real/file", dir.path().join("alias")).expect("symlink");
        symlink("real", dir.path().join("dir-alias")).expect("symlink");
        symlink(outside.path().join("secret"), dir.path().join("escape")).expect("symlink");
        symlink("../../", dir.path().join("real/up")).expect("symlink");
        symlink("nowhere", dir.path().join("dangling")).expect("symlink");

        let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
        let names: Vec<&str> = preseed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["alias", "dir-alias/file", "real/file"]);
        assert!(
            !names
                .iter()
                .any(|n| n.contains("escape") || n.contains("secret"))
        );
        assert_eq!(
            preseed.get(&name("alias")).map(|b| &b[..]),
            Some(&b"inside"[..])
        );
        // Alias and target share one buffer.
        let alias = preseed.get(&name("alias")).expect("alias");
        let real = preseed.get(&name("real/file")).expect("real");
        assert_eq!(alias.as_ptr(), real.as_ptr());

        let report = preseed.report();
        let reason_of = |file: &str| {
            report
                .skipped
                .iter()
                .find(|s| s.path.ends_with(file))
                .map(|s| &s.reason)
        };
        assert!(matches!(
            reason_of("escape"),
            Some(SkipReason::SymlinkOutside { .. })
        ));
        assert!(matches!(
            reason_of("up"),
            Some(SkipReason::SymlinkOutside { .. })
        ));
        assert!(matches!(
            reason_of("dangling"),
            Some(SkipReason::SymlinkUnresolvable(_))
        ));
        // `dir-alias` and `real` are the same directory: walked once.
    }

    #[test]
    fn symlink_loop_inside_the_directory_terminates() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("a/f"), b"f");
        symlink("..", dir.path().join("a/parent")).expect("symlink");
        symlink("self-loop", dir.path().join("self-loop")).expect("symlink");
        let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
        assert_eq!(preseed.len(), 1);
        let reasons: Vec<&SkipReason> =
            preseed.report().skipped.iter().map(|s| &s.reason).collect();
        assert!(reasons.iter().any(|r| matches!(r, SkipReason::Loop { .. })));
        assert!(
            reasons
                .iter()
                .any(|r| matches!(r, SkipReason::SymlinkUnresolvable(_)))
        );
    }

    #[test]
    fn directory_whose_files_would_have_too_long_names_is_skipped_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = "d".repeat(200);
        write(&dir.path().join(&long).join("x"), b"fits");
        write(
            &dir.path().join(&long).join("e".repeat(60)).join("f"),
            b"too long",
        );
        let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
        assert_eq!(preseed.len(), 1);
        let skipped = &preseed.report().skipped;
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(matches!(
            skipped[0].reason,
            SkipReason::BadName {
                error: NameError::TooLong { .. },
                ..
            }
        ));
    }

    #[test]
    fn parallel_read_returns_results_in_order_and_the_first_error_names_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = |n: u64| ReadJob {
            path: dir.path().join(format!("f{n}")),
            shown: dir.path().join(format!("f{n}")),
            id: (0, n),
        };
        let jobs: Vec<ReadJob> = (0..20).map(job).collect();
        for (n, j) in jobs.iter().enumerate() {
            write(&j.path, n.to_string().as_bytes());
        }
        let read = read_all(&jobs).expect("all readable");
        for (n, result) in read.iter().enumerate() {
            assert_eq!(result.as_deref(), Ok(n.to_string().as_bytes()));
        }
        fs::remove_file(&jobs[7].path).expect("remove");
        let err = read_all(&jobs).expect_err("f7 is gone");
        assert!(matches!(&err, StoreError::Io { path, .. } if path == &jobs[7].path));
    }

    #[test]
    fn hard_links_share_one_buffer() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("a"), b"same");
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("hard link");
        let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
        let a = preseed.get(&name("a")).expect("a");
        let b = preseed.get(&name("b")).expect("b");
        assert_eq!(a.as_ptr(), b.as_ptr());
    }

    #[test]
    fn non_regular_files_are_skipped_and_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("regular"), b"r");
        let _listener = UnixListener::bind(dir.path().join("sock")).expect("bind unix socket");
        let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
        assert_eq!(preseed.len(), 1);
        let skipped = &preseed.report().skipped;
        assert_eq!(skipped.len(), 1);
        assert!(matches!(
            skipped[0].reason,
            SkipReason::NotRegular { kind: "socket" }
        ));
        assert!(skipped[0].to_string().contains("socket"));
    }

    #[test]
    fn a_socket_as_source_is_an_error_unless_optional() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sock");
        let _listener = UnixListener::bind(&path).expect("bind unix socket");
        let err = load_preseed(&[source(&path, "")], false).expect_err("must fail");
        assert!(matches!(
            err,
            StoreError::NotFileOrDirectory { kind: "socket", .. }
        ));
        let optional = PreseedSource {
            optional: true,
            ..source(&path, "")
        };
        let preseed = load_preseed(&[optional], false).expect("optional is skipped");
        assert_eq!(preseed.report().skipped_sources.len(), 1);
    }

    #[test]
    fn upload_refused_when_disabled() {
        let store = Store::new(Preseed::new(false), false, UploadPolicy::disabled());
        let refusal = store.check_upload(&name("x"), None).expect_err("disabled");
        assert_eq!(refusal, UploadRefusal::Disabled);
        assert_eq!(refusal.error_code(), ErrorCode::AccessViolation);
    }

    #[test]
    fn upload_refused_outside_allow_prefixes_matched_on_whole_components() {
        let policy = UploadPolicy {
            allow: vec!["/incoming/".to_owned(), "logs\\today".to_owned()],
            ..uploads(100, 1000)
        };
        let store = Store::new(Preseed::new(false), false, policy);
        for ok in ["incoming/a", "incoming/deep/b", "logs/today/x"] {
            assert!(store.check_upload(&name(ok), None).is_ok(), "{ok}");
        }
        for refused in ["incoming2/a", "a", "logs/todayx", "logs/x"] {
            let refusal = store.check_upload(&name(refused), None).expect_err(refused);
            assert!(
                matches!(refusal, UploadRefusal::NotAllowed { .. }),
                "{refused}"
            );
            assert_eq!(refusal.error_code(), ErrorCode::AccessViolation);
        }
    }

    #[test]
    fn allow_prefixes_ignore_case_in_case_insensitive_mode() {
        let policy = UploadPolicy {
            allow: vec!["Incoming".to_owned()],
            ..uploads(100, 1000)
        };
        let store = Store::new(Preseed::new(true), true, policy);
        assert!(store.check_upload(&name("INCOMING/a"), None).is_ok());
    }

    #[test]
    fn invalid_allow_entry_allows_nothing_and_validate_reports_it() {
        let policy = UploadPolicy {
            allow: vec!["../up".to_owned()],
            ..uploads(100, 1000)
        };
        assert_eq!(
            policy.validate(),
            Err(("../up".to_owned(), NameError::Traversal))
        );
        let store = Store::new(Preseed::new(false), false, policy);
        assert!(store.check_upload(&name("up/a"), None).is_err());
    }

    #[test]
    fn upload_refused_when_name_exists_without_overwrite() {
        let store = Store::new(
            preseed_of(&[("Taken", b"old")], true),
            true,
            uploads(100, 1000),
        );
        let refusal = store
            .check_upload(&name("taken"), None)
            .expect_err("exists");
        assert_eq!(
            refusal,
            UploadRefusal::Exists {
                name: name("taken")
            }
        );
        assert_eq!(refusal.error_code(), ErrorCode::FileExists);
        assert!(refusal.to_string().contains("already exists"));
    }

    #[test]
    fn upload_refused_when_announced_size_is_over_a_limit() {
        let store = Store::new(Preseed::new(false), false, uploads(100, 150));
        let too_large = store
            .check_upload(&name("a"), Some(101))
            .expect_err("too large");
        assert_eq!(
            too_large,
            UploadRefusal::TooLarge {
                size: 101,
                limit: 100
            }
        );
        assert_eq!(too_large.error_code(), ErrorCode::DiskFull);

        let permit = store.check_upload(&name("a"), Some(100)).expect("fits");
        assert_eq!(permit.max_size(), 100);
        store.commit_upload(permit, vec![1; 100]).expect("commit");

        let over_total = store
            .check_upload(&name("b"), Some(60))
            .expect_err("over total");
        assert_eq!(
            over_total,
            UploadRefusal::TotalExceeded {
                size: 60,
                available: 50
            }
        );
        assert_eq!(over_total.error_code(), ErrorCode::DiskFull);
        let permit = store.check_upload(&name("b"), None).expect("unknown size");
        assert_eq!(permit.max_size(), 50);
    }

    #[test]
    fn overwriting_an_upload_counts_its_old_size_as_freed() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(100, 100)
        };
        let store = Store::new(Preseed::new(false), false, policy);
        let permit = store.check_upload(&name("a"), None).expect("permit");
        store.commit_upload(permit, vec![1; 90]).expect("commit");
        let permit = store
            .check_upload(&name("a"), Some(100))
            .expect("replaces itself");
        assert_eq!(permit.max_size(), 100);
        store.commit_upload(permit, vec![2; 100]).expect("commit");
        assert_eq!(store.stats().uploaded_bytes, 100);
    }

    #[test]
    fn commit_rechecks_limits_and_keeps_the_old_file_on_refusal() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(10, 1000)
        };
        let store = Store::new(preseed_of(&[("f", b"old")], false), false, policy);
        let permit = store.check_upload(&name("f"), None).expect("permit");
        let refusal = store
            .commit_upload(permit, vec![0; 11])
            .expect_err("over max-file-size");
        assert_eq!(
            refusal,
            UploadRefusal::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert_eq!(get(&store, "f").as_deref(), Some(&b"old"[..]));
        assert_eq!(store.stats().uploaded_files, 0);
    }

    #[test]
    fn commit_rechecks_overwrite_so_the_first_of_two_racing_uploads_wins() {
        let store = Store::new(Preseed::new(false), false, uploads(10, 1000));
        let first = store.check_upload(&name("f"), None).expect("permit");
        let second = store.check_upload(&name("f"), None).expect("permit");
        store
            .commit_upload(first, b"first".to_vec())
            .expect("commit");
        let refusal = store
            .commit_upload(second, b"second".to_vec())
            .expect_err("exists now");
        assert_eq!(refusal.error_code(), ErrorCode::FileExists);
        assert_eq!(get(&store, "f").as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn commit_swaps_the_file_in_whole_and_readers_keep_their_bytes() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(1 << 20, 1 << 30)
        };
        let store = Store::new(preseed_of(&[("f", b"old")], false), false, policy);
        let held = store.get(&name("f")).expect("file");
        let permit = store.check_upload(&name("f"), None).expect("permit");
        assert_eq!(
            get(&store, "f").as_deref(),
            Some(&b"old"[..]),
            "not visible before commit"
        );
        store
            .commit_upload(permit, b"new".to_vec())
            .expect("commit");
        assert_eq!(&held[..], b"old");
        assert_eq!(get(&store, "f").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn concurrent_readers_see_old_or_new_file_never_a_mix() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(1 << 20, 1 << 30)
        };
        let store = Store::new(preseed_of(&[("f", &[0; 4096])], false), false, policy);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        let data = store.get(&name("f")).expect("always present");
                        assert_eq!(data.len(), 4096);
                        assert!(data.iter().all(|&b| b == data[0]));
                    }
                });
            }
            for round in 1..=50u8 {
                let permit = store.check_upload(&name("f"), None).expect("permit");
                store
                    .commit_upload(permit, vec![round; 4096])
                    .expect("commit");
            }
        });
    }

    #[test]
    fn reload_keeps_uploads_and_readers_keep_old_bytes() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(100, 1000)
        };
        let store = Store::new(
            preseed_of(
                &[("old", b"old preseed"), ("shadowed", b"preseeded")],
                false,
            ),
            false,
            policy.clone(),
        );
        let permit = store.check_upload(&name("up"), None).expect("permit");
        store
            .commit_upload(permit, b"uploaded".to_vec())
            .expect("commit");
        let permit = store.check_upload(&name("shadowed"), None).expect("permit");
        store
            .commit_upload(permit, b"uploaded over".to_vec())
            .expect("commit");
        let held = store.get(&name("old")).expect("old");

        let dropped = store.replace_preseed(
            preseed_of(
                &[("new", b"new preseed"), ("shadowed", b"preseeded again")],
                false,
            ),
            false,
            policy,
        );
        assert!(dropped.is_empty());
        assert_eq!(&held[..], b"old preseed");
        assert_eq!(get(&store, "old"), None);
        assert_eq!(get(&store, "new").as_deref(), Some(&b"new preseed"[..]));
        assert_eq!(get(&store, "up").as_deref(), Some(&b"uploaded"[..]));
        assert_eq!(
            get(&store, "shadowed").as_deref(),
            Some(&b"uploaded over"[..])
        );
        assert_eq!(
            store.stats(),
            StoreStats {
                files: 3,
                bytes: 11 + 8 + 13,
                uploaded_files: 2,
                uploaded_bytes: 8 + 13,
            }
        );
    }

    #[test]
    fn reload_applies_the_new_upload_policy_and_case_mode() {
        let store = Store::new(Preseed::new(false), false, uploads(100, 1000));
        for n in ["A", "a"] {
            let permit = store.check_upload(&name(n), None).expect("permit");
            store
                .commit_upload(permit, n.as_bytes().to_vec())
                .expect("commit");
        }
        let dropped = store.replace_preseed(Preseed::new(true), true, UploadPolicy::disabled());
        assert_eq!(dropped, vec![name("A")]);
        assert_eq!(get(&store, "A").as_deref(), Some(&b"a"[..]));
        assert_eq!(store.stats().uploaded_bytes, 1);
        assert_eq!(
            store.check_upload(&name("b"), None),
            Err(UploadRefusal::Disabled)
        );
    }

    #[test]
    fn stats_count_preseeded_and_uploaded_files() {
        let store = Store::new(
            preseed_of(&[("a", b"12345"), ("b", b"123")], false),
            false,
            uploads(100, 1000),
        );
        assert_eq!(
            store.stats(),
            StoreStats {
                files: 2,
                bytes: 8,
                uploaded_files: 0,
                uploaded_bytes: 0,
            }
        );
        let permit = store.check_upload(&name("c"), Some(2)).expect("permit");
        store.commit_upload(permit, b"12".to_vec()).expect("commit");
        assert_eq!(
            store.stats(),
            StoreStats {
                files: 3,
                bytes: 10,
                uploaded_files: 1,
                uploaded_bytes: 2,
            }
        );
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<Preseed>();
    }
}
