//! The sync's cache on disk, and the only code that changes it:
//!
//! ```text
//! <cache>/lock                    flock(2)ed by the one sync that may run
//! <cache>/objects/<sha256>        verified objects, read-only, shared by generations
//! <cache>/generations/<gen>/...   one tree per generation: hard links into objects/
//! <cache>/generations/<gen>.json  that generation's manifest
//! <cache>/current -> generations/<gen>    what the daemon serves ([[preseed]] path)
//! <cache>/previous -> generations/<gen>   the generation before it, kept
//! <cache>/etag                    "<gen> <ETag>": the manifest's ETag for If-None-Match
//! <cache>/status.json             what the last rounds did, for the daemon (`status`)
//! ```
//!
//! A generation's tree is built under a temporary name and renamed into place whole; the
//! `current` and `previous` symlinks are replaced by rename(2), which is atomic, so a
//! reader resolving `current` finds one whole generation or the one before, never a mix.
//! Temporary names start with `.` and end with `.tmp-PID`; [`Cache::prune`] removes those a
//! dead run left behind.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::{OriginError, io_error};
use super::manifest::{Manifest, is_digest};
use super::publish::{OBJECTS_DIR, temporary_beside, write_atomically};

/// The cache's directory of generations.
pub const GENERATIONS_DIR: &str = "generations";
/// The symlink to the generation served.
pub const CURRENT_LINK: &str = "current";
/// The symlink to the generation served before it.
pub const PREVIOUS_LINK: &str = "previous";

/// The cache, locked against every other sync for as long as this value lives.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    _lock: Flock<fs::File>,
}

impl Cache {
    /// Opens (creating what is missing) and locks the cache at `root`.
    ///
    /// # Errors
    ///
    /// [`OriginError::Locked`] when another sync holds the lock (it is not waited for),
    /// [`OriginError::Io`] when the cache cannot be created.
    pub fn open(root: &Path) -> Result<Cache, OriginError> {
        for dir in [
            root.to_path_buf(),
            root.join(OBJECTS_DIR),
            root.join(GENERATIONS_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create the directory", &dir))?;
        }
        let lock_path = root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open the lock", &lock_path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(OriginError::Locked(lock_path));
            }
            Err((_, errno)) => {
                return Err(io_error("lock", &lock_path)(errno.into()));
            }
        };
        Ok(Cache {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object `sha256` is kept.
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        self.root.join(OBJECTS_DIR).join(sha256)
    }

    /// Whether the object `sha256` of `size` bytes is in the cache. Objects are verified
    /// before they are renamed into place; the size check catches one truncated by a
    /// full disk or by hand.
    pub fn has_object(&self, sha256: &str, size: u64) -> bool {
        fs::symlink_metadata(self.object_path(sha256))
            .is_ok_and(|m| m.is_file() && m.size() == size)
    }

    /// Makes a verified object, written at `temporary`, read-only and renames it into place.
    pub fn commit_object(&self, temporary: &Path, sha256: &str) -> Result<(), OriginError> {
        let path = self.object_path(sha256);
        fs::set_permissions(temporary, fs::Permissions::from_mode(0o444))
            .and_then(|()| fs::rename(temporary, &path))
            .map_err(io_error("store the object", path))
    }

    /// The generation `link` (`current` or `previous`) points at, if it points at a
    /// generation whose tree is there.
    pub fn generation_at(&self, link: &str) -> Option<String> {
        generation_at(&self.root, link)
    }

    fn generation_path(&self, generation: &str) -> PathBuf {
        self.root.join(GENERATIONS_DIR).join(generation)
    }

    /// The manifest kept for `generation`, if it is there and valid.
    pub fn manifest_of(&self, generation: &str) -> Option<Manifest> {
        let path = self
            .root
            .join(GENERATIONS_DIR)
            .join(format!("{generation}.json"));
        let manifest = Manifest::parse(&fs::read(path).ok()?).ok()?;
        (manifest.generation() == generation).then_some(manifest)
    }

    /// The ETag recorded for the manifest of `generation`.
    pub fn etag_for(&self, generation: &str) -> Option<String> {
        let text = fs::read_to_string(self.root.join("etag")).ok()?;
        let (recorded, etag) = text.trim_end_matches('\n').split_once(' ')?;
        (recorded == generation && !etag.is_empty()).then(|| etag.to_owned())
    }

    /// Records the manifest's `etag` for `generation` (or forgets it when `None`).
    pub fn record_etag(&self, generation: &str, etag: Option<&str>) -> Result<(), OriginError> {
        let path = self.root.join("etag");
        match etag {
            // A header value with a line break cannot come from a real server; not kept.
            Some(etag) if !etag.contains(['\n', '\r']) => {
                write_atomically(&path, format!("{generation} {etag}\n").as_bytes())
            }
            _ => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_error("remove", path)(e))
                }
                _ => Ok(()),
            },
        }
    }

    /// Makes sure the tree of `manifest`'s generation is in place, every object already in
    /// the cache: built under a temporary name (hard links into `objects/`) beside its
    /// manifest, then renamed whole. A tree already there is complete (it was renamed in
    /// whole) and is kept.
    pub fn build_generation(&self, manifest: &Manifest) -> Result<(), OriginError> {
        let generation = manifest.generation();
        let path = self.generation_path(generation);
        let manifest_path = self
            .root
            .join(GENERATIONS_DIR)
            .join(format!("{generation}.json"));
        write_atomically(&manifest_path, &manifest.to_json())?;
        if path.is_dir() {
            return Ok(());
        }
        let temporary = temporary_beside(&path);
        remove_tree(&temporary)?;
        let built = (|| {
            fs::create_dir(&temporary).map_err(io_error("create the directory", &temporary))?;
            for file in manifest.files() {
                let link = temporary.join(&file.name);
                if let Some(parent) = link.parent() {
                    fs::create_dir_all(parent).map_err(io_error("create the directory", parent))?;
                }
                fs::hard_link(self.object_path(&file.sha256), &link)
                    .map_err(io_error("link the object into", &link))?;
            }
            fs::rename(&temporary, &path).map_err(io_error("rename the generation to", &path))
        })();
        if built.is_err() {
            let _ = remove_tree(&temporary);
        }
        built
    }

    /// Points `current` at `generation` and `previous` at what `current` pointed at before
    /// (when that was another generation), each by a rename(2) over the old link, then
    /// flushes the cache directory.
    pub fn switch_to(&self, generation: &str) -> Result<Option<String>, OriginError> {
        let before = self.generation_at(CURRENT_LINK);
        if let Some(before) = before.as_deref().filter(|b| *b != generation) {
            self.point(PREVIOUS_LINK, before)?;
        }
        self.point(CURRENT_LINK, generation)?;
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io_error("flush", &self.root))?;
        Ok(before.filter(|b| b != generation))
    }

    fn point(&self, link: &str, generation: &str) -> Result<(), OriginError> {
        let path = self.root.join(link);
        let temporary = temporary_beside(&path);
        let _ = fs::remove_file(&temporary);
        let target = Path::new(GENERATIONS_DIR).join(generation);
        symlink(&target, &temporary)
            .and_then(|()| fs::rename(&temporary, &path))
            .map_err(io_error("switch the link", path))
    }

    /// Removes every generation but `current`'s and `previous`'s, every object neither
    /// needs, and the temporaries of runs that died. Returns the objects removed.
    pub fn prune(&self) -> Result<usize, OriginError> {
        let keep: Vec<String> = [CURRENT_LINK, PREVIOUS_LINK]
            .iter()
            .filter_map(|link| self.generation_at(link))
            .collect();
        let mut needed = BTreeSet::new();
        for generation in &keep {
            match self.manifest_of(generation) {
                Some(manifest) => needed.extend(manifest.objects().into_keys().map(str::to_owned)),
                // Without its manifest, what a kept tree needs is unknown: remove nothing.
                None => return Ok(0),
            }
        }
        let generations = self.root.join(GENERATIONS_DIR);
        for entry in read_dir(&generations)? {
            let name = entry.to_string_lossy();
            let base = name.strip_suffix(".json").unwrap_or(&name);
            if !keep.iter().any(|k| k == base) {
                remove_tree(&generations.join(&entry))?;
            }
        }
        let objects = self.root.join(OBJECTS_DIR);
        let mut removed = 0;
        for entry in read_dir(&objects)? {
            let name = entry.to_string_lossy();
            if !needed.contains(name.as_ref()) {
                let path = objects.join(&entry);
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                removed += usize::from(is_digest(&name));
            }
        }
        Ok(removed)
    }
}

/// The generation `link` (`current` or `previous`) of the cache at `root` points at, if it
/// points at a generation whose tree is there. Takes no lock: the daemon reads `current`
/// this way at each load of its preseed, to say which generation it serves.
pub fn generation_at(root: &Path, link: &str) -> Option<String> {
    let target = fs::read_link(root.join(link)).ok()?;
    let generation = target.strip_prefix(GENERATIONS_DIR).ok()?.to_str()?;
    (is_digest(generation) && root.join(GENERATIONS_DIR).join(generation).is_dir())
        .then(|| generation.to_owned())
}

fn read_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>, OriginError> {
    fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(io_error("read the directory", dir))
}

/// Removes `path`, a file or a whole tree; a missing path is no error.
fn remove_tree(path: &Path) -> Result<(), OriginError> {
    let result = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(io_error("remove", path))
}
