//! Preseeding: the files and directories named by `[[preseed]]` read from disk into a
//! [`Preseed`], ready to be swapped into the store. [`load_preseed`] walks each source
//! (symlinks followed only inside it, loops and special files skipped), then reads the
//! files it found on a small pool of threads, each file once, straight into its own
//! buffer. What it skipped or overrode goes into the [`PreseedReport`]. This is the only
//! code in the store that touches the file system.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::Bytes;

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
    /// When [`load_preseed`] read the files.
    loaded: Option<SystemTime>,
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

    /// The files, for the store to build its map from: each with the `[[preseed]]`
    /// path it came from and when it was read.
    pub(super) fn into_files(self) -> Vec<(FileName, Bytes, Origin)> {
        let loaded = self.loaded;
        (self.files.into_iter().zip(self.sources))
            .map(|((name, data), source)| (name, data, Origin::Preseed { source, loaded }))
            .collect()
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
    preseed.loaded = Some(SystemTime::now());
    let mut cache = HashMap::new();
    for source in sources {
        let source_path: Arc<Path> = Arc::from(source.path.as_path());
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
            let result = read_regular(&job.path, job.id);
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
/// becomes the `Bytes`). The inner `Err` says why a file is not read after all: it is not
/// regular once opened, or it is no longer the file the walk found (`id`: device and
/// inode). The file is opened without following a symbolic link and without blocking, so
/// a file swapped for a link or a fifo between the walk and the read is skipped, not
/// followed out of the directory or waited on.
fn read_regular(path: &Path, id: FileId) -> Result<ReadResult, StoreError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Ok(Err("symbolic link swapped in after the walk"));
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    let meta = file.metadata().map_err(io_error(path))?;
    if !meta.is_file() {
        return Ok(Err(kind_of(&meta.file_type())));
    }
    if (meta.dev(), meta.ino()) != id {
        return Ok(Err("file replaced after the walk"));
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Store, UploadPolicy};
    use super::*;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;

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
        let store = Store::new(preseed, UploadPolicy::disabled());
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

        let store = Store::new(preseed, UploadPolicy::disabled());
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
    fn a_file_swapped_for_a_link_or_another_file_after_the_walk_is_not_read() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let secret = outside.path().join("secret");
        fs::write(&secret, b"secret").expect("write");
        let path = dir.path().join("f");
        fs::write(&path, b"mine").expect("write");
        let meta = fs::metadata(&path).expect("meta");
        let id = (meta.dev(), meta.ino());
        assert_eq!(
            read_regular(&path, id).expect("read").as_deref(),
            Ok(&b"mine"[..])
        );
        // Between the walk and the read, the file becomes a link out of the directory.
        fs::remove_file(&path).expect("remove");
        symlink(&secret, &path).expect("symlink");
        assert!(read_regular(&path, id).expect("no error").is_err());
        // Or another file takes its name.
        fs::remove_file(&path).expect("remove");
        fs::write(&path, b"other").expect("write");
        let replaced = read_regular(&path, id).expect("no error");
        let reused = fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok() == Some(id);
        assert!(replaced.is_err() || reused, "{replaced:?}");
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
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let job = |n: u64| {
            let path = dir.path().join(format!("f{n}"));
            write(&path, n.to_string().as_bytes());
            let meta = fs::metadata(&path).expect("meta");
            ReadJob {
                shown: path.clone(),
                path,
                id: (meta.dev(), meta.ino()),
            }
        };
        let jobs: Vec<ReadJob> = (0..20).map(job).collect();
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
}
