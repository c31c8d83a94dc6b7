//! Preseeding: the files and directories named by `[[preseed]]` read from disk into a
//! [`Preseed`], ready to be swapped into the store. The [`PreseedLoader`] walks each source
//! (symlinks followed only inside it, loops and special files skipped), then reads the
//! files it found that changed since its last load on a small pool of threads (`read`),
//! each file once, straight into its own buffer. What it skipped or overrode goes into the
//! [`PreseedReport`], what to watch into the [`WatchList`]. This module and `read` are the
//! only code in the store that touches the file system.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::read::{Cached, DiskCache, FileId, ReadFailure, ReadJob, Stamp, read_all};
use super::report::{Collision, PreseedReport, SkipReason, Skipped, SkippedSource};
use super::{Origin, lookup_key};
use crate::name::{FileName, MAX_NAME_LEN, NameError, normalize_name};

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
    /// What an entry inside the source that cannot be read does to the load.
    pub on_error: OnError,
}

/// What a file or directory inside a preseed source that cannot be read (permission denied,
/// vanished during the walk, an I/O error) does: the `on-error` key of `[[preseed]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// It is skipped, logged and counted; everything else is served (`"skip"`, the default).
    #[default]
    Skip,
    /// The whole load fails, as the source itself failing would (`"fail"`).
    Fail,
}

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

/// A set of preseeded files, ready to hand to [`Store::new`](super::Store::new) or
/// [`Store::replace_preseed`](super::Store::replace_preseed),
/// with the report of what loading them skipped.
///
/// Built by [`load_preseed`], or by hand with [`Preseed::new`] and [`Preseed::insert`].
pub struct Preseed {
    case_insensitive: bool,
    files: Vec<(FileName, Bytes)>,
    /// The `[[preseed]]` path each file came from (parallel to `files`; `None` for files
    /// inserted by hand).
    sources: Vec<Option<Arc<Path>>>,
    /// When the load that built it began.
    loaded: Option<SystemTime>,
    index: HashMap<String, usize>,
    bytes: u64,
    report: PreseedReport,
    stats: LoadStats,
    watch: WatchList,
}

impl fmt::Debug for Preseed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preseed")
            .field("case_insensitive", &self.case_insensitive)
            .field("files", &self.files.len())
            .field("bytes", &self.bytes)
            .field("report", &self.report)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Preseed {
    /// An empty preseed. `case_insensitive` decides which names count as collisions in
    /// [`Preseed::insert`], and how the store built from it looks names up.
    pub fn new(case_insensitive: bool) -> Self {
        Preseed {
            case_insensitive,
            files: Vec::new(),
            sources: Vec::new(),
            loaded: None,
            index: HashMap::new(),
            bytes: 0,
            report: PreseedReport::default(),
            stats: LoadStats::default(),
            watch: WatchList::default(),
        }
    }

    /// Adds a file. If the name (or, ignoring case, a name) is already present, the new file
    /// replaces it, the collision is recorded in the report, and the replaced name is returned.
    pub fn insert(&mut self, name: FileName, data: Bytes) -> Option<FileName> {
        self.insert_from(name, data, None)
    }

    /// As [`insert`](Self::insert), noting the `[[preseed]]` path the file came from.
    fn insert_from(
        &mut self,
        name: FileName,
        data: Bytes,
        source: Option<Arc<Path>>,
    ) -> Option<FileName> {
        let key = lookup_key(name.as_str(), self.case_insensitive).into_owned();
        self.bytes += data.len() as u64;
        match self.index.get(&key) {
            Some(&i) => {
                let (old_name, old_data) =
                    std::mem::replace(&mut self.files[i], (name.clone(), data));
                self.sources[i] = source;
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
                self.sources.push(source);
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

    /// Whether names that differ only in ASCII case are the same name here, and so in the
    /// store built from this preseed.
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// What loading skipped or overrode.
    pub fn report(&self) -> &PreseedReport {
        &self.report
    }

    /// What loading read from disk and what it kept.
    pub fn load_stats(&self) -> LoadStats {
        self.stats
    }

    /// What a watch must follow to see the next change of the sources.
    pub fn watch_list(&self) -> &WatchList {
        &self.watch
    }

    /// The files, for the store to build its map from: each with the `[[preseed]]`
    /// path it came from and when it was read.
    pub(super) fn into_files(self) -> Vec<(FileName, Bytes, Origin)> {
        let loaded = self.loaded;
        (self.files.into_iter().zip(self.sources))
            .map(|((name, data), source)| (name, data, Origin::Preseed { source, loaded }))
            .collect()
    }
}

/// Loads every source, in order, into a [`Preseed`], reading every file: a
/// [`PreseedLoader`] that remembers nothing, for a one-off load.
///
/// # Errors
///
/// As [`PreseedLoader::load`].
pub fn load_preseed(
    sources: &[PreseedSource],
    case_insensitive: bool,
) -> Result<Preseed, StoreError> {
    PreseedLoader::new().load(sources, case_insensitive, &Unwatched)
}

/// What the loader asks of whoever watches the files (the daemon's inotify watch): which
/// files are being written, so that none is taken half-written.
pub trait WriteTracker {
    /// At the start of a load: the files open for writing now (paths as the loader reads
    /// them: the canonical directory joined with the entry's name, or a file source's
    /// configured path). What the previous load read from there is served on; a file new
    /// there waits.
    fn begin(&self) -> HashSet<PathBuf>;
    /// After a source's files are read: the files written to, or still open for writing,
    /// since [`begin`](Self::begin). A file read meanwhile is not taken (what was read from
    /// there before stays); the watch's next rescan takes it once it is closed.
    fn settle(&self) -> HashSet<PathBuf>;
}

/// No watch: nothing is known to be written; the loader relies on its own check (a file
/// whose size or modification time moves while it is read is not taken).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl WriteTracker for Unwatched {
    fn begin(&self) -> HashSet<PathBuf> {
        HashSet::new()
    }

    fn settle(&self) -> HashSet<PathBuf> {
        HashSet::new()
    }
}

/// The one loader of start-up, reload and the watch: loads the sources into a [`Preseed`],
/// reading from disk only what changed since its last load.
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
/// links, symlinks) share one buffer. A file whose device, inode, size and modification
/// time are those of a file the previous load read is not read again: the new preseed
/// holds the very same buffer, so the store keeps it as it is
/// ([`Store::replace_preseed`](super::Store::replace_preseed)). A file whose size or
/// modification time moves while it is read is not taken (it is still being written):
/// what the previous load read from that path stays, or the name waits for the next load.
#[derive(Debug, Default)]
pub struct PreseedLoader {
    cache: DiskCache,
}

impl PreseedLoader {
    /// A loader that has read nothing yet.
    pub fn new() -> Self {
        PreseedLoader::default()
    }

    /// Loads `sources`; `writing` says which files are being written (see
    /// [`WriteTracker`]).
    ///
    /// What the load skipped is in its [`PreseedReport`]; what it read and what is to be
    /// watched in [`Preseed::load_stats`] and [`Preseed::watch_list`]. The loader
    /// remembers this load's files only when it succeeds.
    ///
    /// # Errors
    ///
    /// A source whose path cannot be found or used (missing, neither a file nor a
    /// directory, a bad prefix or name) is a [`StoreError`] naming the path, unless the
    /// source is `optional`: then the whole source is skipped and reported in
    /// [`PreseedReport::skipped_sources`]. What cannot be read inside a source (permission
    /// denied, vanished during the walk, an I/O error) is skipped and reported with
    /// [`OnError::Skip`], and is the source's error with [`OnError::Fail`].
    pub fn load(
        &mut self,
        sources: &[PreseedSource],
        case_insensitive: bool,
        writing: &dyn WriteTracker,
    ) -> Result<Preseed, StoreError> {
        let held = writing.begin();
        let mut preseed = Preseed::new(case_insensitive);
        preseed.loaded = Some(SystemTime::now());
        let mut loaded = HashMap::new();
        let mut next = DiskCache::default();
        for source in sources {
            let source_path: Arc<Path> = Arc::from(source.path.as_path());
            preseed.watch.add_entry(&source.path);
            let mut loader = SourceLoader {
                source,
                root: PathBuf::new(),
                files: Vec::new(),
                skipped: Vec::new(),
                jobs: Vec::new(),
                job_index: HashMap::new(),
                ancestors: Vec::new(),
                entries: 0,
                loaded: &mut loaded,
                previous: &self.cache,
                next: &mut next,
                held: &held,
                writing,
                stats: &mut preseed.stats,
                watch: &mut preseed.watch,
            };
            match loader.load() {
                Ok(()) => {
                    let SourceLoader { files, skipped, .. } = loader;
                    preseed.report.skipped.extend(skipped);
                    for (name, slot) in files {
                        if let Slot::Ready(data) = slot {
                            preseed.insert_from(name, data, Some(Arc::clone(&source_path)));
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
        self.cache = next;
        Ok(preseed)
    }
}

/// What a [`Preseed`] load read from disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Files read (again).
    pub files_read: usize,
    /// Their bytes.
    pub bytes_read: u64,
    /// Files that kept the buffer of the previous load, unchanged on disk.
    pub files_kept: usize,
    /// Files left as the previous load read them (or left out) because they were being
    /// written.
    pub files_held: usize,
}

/// What a watch must follow to see every change of a load's sources: the directories it
/// walked (every entry counts) and, for each source, its own entry in its parent directory
/// (a file source replaced, a directory source renamed or a symlink swapped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchList {
    /// Directories walked, canonical, each once.
    pub directories: Vec<PathBuf>,
    /// `(parent directory, entry name)` of each source path.
    pub entries: Vec<(PathBuf, std::ffi::OsString)>,
}

impl WatchList {
    fn add_entry(&mut self, path: &Path) {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let entry = (parent.to_path_buf(), name.to_owned());
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
        }
    }
}

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
    /// Files already taken by this load, shared between names and sources.
    loaded: &'a mut HashMap<FileId, Bytes>,
    /// What the previous load read.
    previous: &'a DiskCache,
    /// What this load reads or keeps, for the next one.
    next: &'a mut DiskCache,
    /// Being written when the load began.
    held: &'a HashSet<PathBuf>,
    writing: &'a dyn WriteTracker,
    stats: &'a mut LoadStats,
    watch: &'a mut WatchList,
}

/// What a non-regular file is, for reports.
pub(super) fn kind_of(file_type: &fs::FileType) -> &'static str {
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
            if let Some(kind) = self.queue_file(path, name, path, Some(meta))? {
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

    /// An entry that cannot be read: skipped and reported, or the source's error when its
    /// `on-error` is `"fail"`.
    fn unreadable(&mut self, shown: &Path, error: io::Error) -> Result<(), StoreError> {
        if self.source.on_error == OnError::Fail {
            return Err(StoreError::Io {
                path: shown.to_path_buf(),
                source: error,
            });
        }
        let reason = if error.kind() == io::ErrorKind::NotFound {
            SkipReason::Vanished
        } else {
            SkipReason::Unreadable(error)
        };
        self.skip(shown, reason);
        Ok(())
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
        // Watched before it is listed: what appears in between is seen.
        if !self.watch.directories.iter().any(|d| d == dir) {
            self.watch.directories.push(dir.to_path_buf());
        }
        let mut entries = Vec::new();
        let listed = fs::read_dir(dir).and_then(|list| {
            for entry in list {
                let entry = entry?;
                let file_type = entry.file_type()?;
                entries.push((entry.file_name(), file_type));
            }
            Ok(())
        });
        if let Err(error) = listed {
            return self.unreadable(shown, error);
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
                match fs::metadata(&target) {
                    Ok(meta) if meta.is_dir() => self.walk_dir(&target, &rel, &shown, &meta)?,
                    Ok(meta) => self.add_file(&target, &rel, &shown, Some(meta))?,
                    Err(error) => self.unreadable(&shown, error)?,
                }
            } else if file_type.is_dir() {
                match fs::metadata(&path) {
                    Ok(meta) => self.walk_dir(&path, &rel, &shown, &meta)?,
                    Err(error) => self.unreadable(&shown, error)?,
                }
            } else if file_type.is_file() {
                self.add_file(&path, &rel, &shown, None)?;
            } else {
                let kind = kind_of(&file_type);
                self.skip(&shown, SkipReason::NotRegular { kind });
            }
        }
        Ok(())
    }

    /// Adds the file at `path` under `prefix + rel`, or reports why not.
    fn add_file(
        &mut self,
        path: &Path,
        rel: &str,
        shown: &Path,
        meta: Option<fs::Metadata>,
    ) -> Result<(), StoreError> {
        let raw = format!("{}{rel}", self.source.prefix);
        let name = match normalize_name(&raw) {
            Ok(name) => name,
            Err(error) => {
                self.skip(shown, SkipReason::BadName { name: raw, error });
                return Ok(());
            }
        };
        if let Some(kind) = self.queue_file(path, name, shown, meta)? {
            self.skip(shown, SkipReason::NotRegular { kind });
        }
        Ok(())
    }

    /// Takes the regular file at `path` to be stored as `name`: its bytes from this load
    /// or the previous one when they are still good, else queued to be read. Returns the
    /// kind of a non-regular file. Checked before opening, so that a fifo is never opened.
    fn queue_file(
        &mut self,
        path: &Path,
        name: FileName,
        shown: &Path,
        meta: Option<fs::Metadata>,
    ) -> Result<Option<&'static str>, StoreError> {
        let meta = match meta.map_or_else(|| fs::metadata(path), Ok) {
            Ok(meta) => meta,
            Err(error) => return self.unreadable(shown, error).map(|()| None),
        };
        if !meta.is_file() {
            return Ok(Some(kind_of(&meta.file_type())));
        }
        let id = (meta.dev(), meta.ino());
        if self.held.contains(path) {
            self.stats.files_held += 1;
            self.keep_previous(path, name);
            return Ok(None);
        }
        let slot = if let Some(data) = self.loaded.get(&id) {
            self.next.alias(path, id);
            Slot::Ready(data.clone())
        } else if let Some(cached) = self.previous.unchanged(id, Stamp::of(&meta)) {
            self.stats.files_kept += 1;
            self.loaded.insert(id, cached.data.clone());
            self.next.insert(path, id, cached.clone());
            Slot::Ready(cached.data.clone())
        } else {
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
        };
        self.files.push((name, slot));
        Ok(None)
    }

    /// Serves on what the previous load read from `path` (it is being written now), or
    /// nothing yet.
    fn keep_previous(&mut self, path: &Path, name: FileName) {
        if let Some((id, cached)) = self.previous.at_path(path) {
            self.next.insert(path, id, cached.clone());
            self.files.push((name, Slot::Ready(cached.data.clone())));
        }
    }

    /// Reads every queued file (in parallel) and fills in the file list.
    fn read_queued(&mut self) -> Result<(), StoreError> {
        let jobs = std::mem::take(&mut self.jobs);
        self.job_index.clear();
        let mut read = Vec::with_capacity(jobs.len());
        let results = read_all(&jobs);
        let late = if jobs.is_empty() {
            HashSet::new()
        } else {
            self.writing.settle()
        };
        for (job, result) in jobs.iter().zip(results) {
            let result = match result {
                Ok(_) if late.contains(&job.path) => Err(ReadFailure::Changed),
                other => other,
            };
            match result {
                Ok((data, stamp)) => {
                    self.stats.files_read += 1;
                    self.stats.bytes_read += data.len() as u64;
                    self.loaded.insert(job.id, data.clone());
                    let cached = Cached {
                        stamp,
                        data: data.clone(),
                    };
                    self.next.insert(&job.path, job.id, cached);
                    read.push(Some(data));
                }
                Err(ReadFailure::NotRegular(kind)) => {
                    self.skip(&job.shown, SkipReason::NotRegular { kind });
                    read.push(None);
                }
                Err(ReadFailure::Changed) => {
                    // Still being written: what was read from there before, if anything.
                    self.stats.files_held += 1;
                    let previous = self.previous.at_path(&job.path).map(|(id, cached)| {
                        self.next.insert(&job.path, id, cached.clone());
                        cached.data.clone()
                    });
                    read.push(previous);
                }
                Err(ReadFailure::Io(error)) => {
                    self.unreadable(&job.shown, error)?;
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

/// A file's data in [`SourceLoader::files`].
enum Slot {
    Ready(Bytes),
    /// Index into the read jobs.
    Queued(usize),
    /// Not read after all (already reported, or held back while it is written).
    Gone,
}

#[cfg(test)]
#[path = "preseed_tests.rs"]
mod tests;
