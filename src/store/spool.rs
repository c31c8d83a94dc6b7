//! The spool: the directory `[upload] spool` names, where each upload is made durable
//! before its final ACK and from where the uploads of earlier runs are loaded back at
//! start-up. It holds the uploaded files under their names (sub-directories as the names
//! have them) and nothing else but the temporaries of writes in progress.
//!
//! A write goes to a temporary file in the directory the name lands in (created as
//! needed), is `fsync`ed, renamed over its name, and the directory is `fsync`ed: the file
//! is there whole or not at all, through a crash or a power cut. Every step goes through
//! directory descriptors opened with `O_NOFOLLOW` from the spool's own, so a name (already
//! normalised by [`crate::name`]: no `..`, no empty component) stays inside the spool and
//! no symbolic link in it is followed. Temporaries are named `.tftpd-spool-*.tmp`; the
//! load removes any a crash left, and an upload under such a name is refused.
//!
//! With the preseed loader, this is the store's only code that touches the file system,
//! and it runs on the driver's writer thread and at start-up, never on the event loop.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

use crate::name::{FileName, MAX_NAME_LEN, normalize_name};

/// How the names of temporary files begin.
const TEMPORARY_PREFIX: &str = ".tftpd-spool-";

/// Directories below the spool deeper than this are not walked (a name of at most
/// [`MAX_NAME_LEN`] bytes has fewer components).
const MAX_DEPTH: usize = MAX_NAME_LEN / 2 + 1;

/// The spool directory, open.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    dir: OwnedFd,
    next: AtomicU64,
}

/// What [`Spool::load`] found.
#[derive(Debug, Default)]
pub struct SpoolLoad {
    /// The uploads kept, by name, to hand to
    /// [`Store::restore_uploads`](super::Store::restore_uploads).
    pub files: Vec<(FileName, Bytes)>,
    /// Temporaries left by an interrupted write, removed.
    pub removed: Vec<PathBuf>,
    /// What was left alone, and why: not a regular file, a symbolic link, a path that is
    /// not a normalised name, unreadable.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Spool {
    /// Opens the spool at `root`, creating it (and its parents, mode 0750) if missing.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or opened.
    pub fn open(root: &Path) -> io::Result<Spool> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(root)?;
        let dir = File::options()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
            .open(root)?;
        Ok(Spool {
            root: root.to_path_buf(),
            dir: dir.into(),
            next: AtomicU64::new(0),
        })
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the upload `name` is kept.
    pub fn path_of(&self, name: &FileName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// Writes `data` durably under `name`, replacing what the name held; returns its path.
    /// Nothing of the new file remains if this fails.
    ///
    /// # Errors
    ///
    /// The name is one of the spool's temporaries, a component of it is (or runs through)
    /// something other than a directory, or the disk refused (`ENOSPC`, `EIO`, ...).
    pub fn write(&self, name: &FileName, data: &[u8]) -> io::Result<PathBuf> {
        let components: Vec<&str> = name.components().collect();
        if components.iter().any(|c| is_temporary(c)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("names beginning {TEMPORARY_PREFIX:?} are kept for the spool's own use"),
            ));
        }
        let Some((last, parents)) = components.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty name"));
        };
        let mut dir: Option<OwnedFd> = None;
        for component in parents {
            let parent = dir.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            let next = match open_dir(parent, component) {
                Err(Errno::ENOENT) => {
                    match mkdirat(parent, *component, Mode::from_bits_truncate(0o750)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    // The new entry must survive a crash as the file in it will.
                    fsync(parent)?;
                    open_dir(parent, component)?
                }
                other => other?,
            };
            dir = Some(next);
        }
        let dir = dir.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let temporary = format!("{TEMPORARY_PREFIX}{}-{n}.tmp", std::process::id());
        let written = write_temporary(dir, &temporary, data)
            .and_then(|()| renameat(dir, temporary.as_str(), dir, *last).map_err(io::Error::from));
        if let Err(e) = written {
            let _ = unlinkat(dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        fsync(dir)?;
        Ok(self.path_of(name))
    }

    /// Removes the upload `name` (an upload replaced under a name that differs only in
    /// case); a name already gone is no error.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be removed.
    pub fn remove(&self, name: &FileName) -> io::Result<()> {
        let components: Vec<&str> = name.components().collect();
        let Some((last, parents)) = components.split_last() else {
            return Ok(());
        };
        let mut dir: Option<OwnedFd> = None;
        for component in parents {
            let parent = dir.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            match open_dir(parent, component) {
                Ok(next) => dir = Some(next),
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        let dir = dir.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
        match unlinkat(dir, *last, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => fsync(dir).map_err(io::Error::from),
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads back every upload kept in the spool and removes the temporaries a crash
    /// left. Symbolic links are not followed, and files whose path is not a normalised
    /// name are left alone; both are reported.
    ///
    /// # Errors
    ///
    /// The spool directory itself cannot be read.
    pub fn load(&self) -> io::Result<SpoolLoad> {
        let mut load = SpoolLoad::default();
        let mut pending = vec![(self.root.clone(), 0usize)];
        let mut first = true;
        while let Some((dir, depth)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if first => return Err(e),
                Err(e) => {
                    load.skipped.push((dir, e.to_string()));
                    continue;
                }
            };
            first = false;
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let kind = match entry.file_type() {
                    Ok(kind) => kind,
                    Err(e) => {
                        load.skipped.push((path, e.to_string()));
                        continue;
                    }
                };
                let file_name = entry.file_name();
                if kind.is_file() && file_name.to_str().is_some_and(is_temporary) {
                    match fs::remove_file(&path) {
                        Ok(()) => load.removed.push(path),
                        Err(e) => load.skipped.push((path, format!("cannot remove: {e}"))),
                    }
                } else if kind.is_dir() {
                    if depth < MAX_DEPTH {
                        pending.push((path, depth + 1));
                    } else {
                        load.skipped.push((path, "too deep".into()));
                    }
                } else if kind.is_symlink() {
                    load.skipped
                        .push((path, "a symbolic link, not followed".into()));
                } else if !kind.is_file() {
                    load.skipped.push((path, "not a regular file".into()));
                } else {
                    match self.read_upload(&path) {
                        Ok(file) => load.files.push(file),
                        Err(reason) => load.skipped.push((path, reason)),
                    }
                }
            }
        }
        load.files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(load)
    }

    /// The name and bytes of the upload at `path`, a regular file below the spool.
    fn read_upload(&self, path: &Path) -> Result<(FileName, Bytes), String> {
        let name = name_at(&self.root, path)?;
        let (mut file, metadata) = open_upload(path).map_err(|e| e.to_string())?;
        let mut data = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        file.read_to_end(&mut data).map_err(|e| e.to_string())?;
        data.shrink_to_fit();
        Ok((name, Bytes::from(data)))
    }
}

/// The upload file at `path`, opened without following a link (an error if it is one,
/// `ELOOP`), with its metadata; an error too if it is not a regular file.
pub fn open_upload(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok((file, metadata))
}

/// The name of the upload kept at `path` below the spool `root`, if `path` is a name's
/// place: UTF-8 and normalised.
fn name_at(root: &Path, path: &Path) -> Result<FileName, String> {
    let relative = path.strip_prefix(root).map_err(|e| e.to_string())?;
    let text = relative
        .to_str()
        .ok_or_else(|| "not a UTF-8 name".to_owned())?;
    let name = normalize_name(text).map_err(|e| e.to_string())?;
    if name.as_str() != text {
        return Err(format!("not a normalised name (it would be {name:?})"));
    }
    Ok(name)
}

/// The uploads made durable in the spool at `root`, by name, with their paths: what
/// [`Spool::load`] would load, seen from another process (`tftpd sync`'s push) while the
/// daemon may be writing, so nothing is changed. Temporaries (writes in progress, or
/// left by a crash for the daemon's next load to remove) are passed over, as are symbolic
/// links, other non-regular files and paths that are not normalised names. A file under
/// its name is always whole: the daemon renames it there after its `fsync`.
///
/// # Errors
///
/// The spool directory itself cannot be read.
pub fn durable_uploads(root: &Path) -> io::Result<Vec<(FileName, PathBuf)>> {
    let mut uploads = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    let mut first = true;
    while let Some((dir, depth)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if first => return Err(e),
            // A directory removed or unreadable meanwhile: nothing durable to list there.
            Err(_) => continue,
        };
        first = false;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if entry.file_name().to_str().is_some_and(is_temporary) {
                continue;
            }
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    pending.push((path, depth + 1));
                }
            } else if kind.is_file()
                && let Ok(name) = name_at(root, &path)
            {
                uploads.push((name, path));
            }
        }
    }
    uploads.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(uploads)
}

/// True for the name of one of the spool's temporaries.
fn is_temporary(component: &str) -> bool {
    component.starts_with(TEMPORARY_PREFIX)
}

/// Opens the directory `name` in `parent`, not following a symbolic link.
fn open_dir(parent: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    openat(parent, name, flags, Mode::empty())
}

/// Creates the temporary `name` in `dir` (never an existing file, never through a link),
/// writes `data` and `fsync`s it.
fn write_temporary(dir: std::os::fd::BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<()> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o640))?;
    let mut file = File::from(fd);
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> FileName {
        normalize_name(raw).unwrap()
    }

    #[test]
    fn a_write_lands_under_its_name_with_its_directories_and_loads_back() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(&root.path().join("uploads")).unwrap();
        let path = spool
            .write(&name("switch/a/config.txt"), b"hostname a")
            .unwrap();
        assert_eq!(path, root.path().join("uploads/switch/a/config.txt"));
        assert_eq!(fs::read(&path).unwrap(), b"hostname a");
        spool
            .write(&name("switch/a/config.txt"), b"hostname b")
            .unwrap();
        spool.write(&name("top"), b"").unwrap();
        let load = spool.load().unwrap();
        let files: Vec<(&str, &[u8])> = load
            .files
            .iter()
            .map(|(n, d)| (n.as_str(), &d[..]))
            .collect();
        assert_eq!(
            files,
            [
                ("switch/a/config.txt", &b"hostname b"[..]),
                ("top", &b""[..])
            ]
        );
        assert!(
            load.removed.is_empty() && load.skipped.is_empty(),
            "{load:?}"
        );
    }

    #[test]
    fn the_load_removes_leftover_temporaries_and_skips_links_and_odd_names() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("d/.tftpd-spool-1-0.tmp"), b"half").unwrap();
        fs::write(root.path().join("kept"), b"kept").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link")).unwrap();
        fs::write(root.path().join("bad\u{7}name"), b"x").unwrap();
        let load = spool.load().unwrap();
        assert_eq!(load.files.len(), 1);
        assert_eq!(load.files[0].0.as_str(), "kept");
        assert_eq!(load.removed, [root.path().join("d/.tftpd-spool-1-0.tmp")]);
        assert!(!root.path().join("d/.tftpd-spool-1-0.tmp").exists());
        assert_eq!(load.skipped.len(), 2, "{:?}", load.skipped);
    }

    #[test]
    fn the_durable_uploads_are_listed_without_touching_the_spool() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        spool.write(&name("sw/a.cfg"), b"a").unwrap();
        spool.write(&name("top"), b"t").unwrap();
        fs::write(root.path().join("sw/.tftpd-spool-7-0.tmp"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link")).unwrap();
        fs::write(root.path().join("bad\u{7}name"), b"x").unwrap();
        let listed: Vec<(String, PathBuf)> = durable_uploads(root.path())
            .unwrap()
            .into_iter()
            .map(|(n, p)| (n.as_str().to_owned(), p))
            .collect();
        assert_eq!(
            listed,
            [
                ("sw/a.cfg".to_owned(), root.path().join("sw/a.cfg")),
                ("top".to_owned(), root.path().join("top"))
            ]
        );
        // A write in progress is the daemon's: left where it is.
        assert!(root.path().join("sw/.tftpd-spool-7-0.tmp").exists());
        assert!(durable_uploads(&root.path().join("missing")).is_err());
    }

    #[test]
    fn a_write_never_follows_a_symbolic_link_out_of_the_spool() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let spool = Spool::open(&root.path().join("spool")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("spool/escape")).unwrap();
        let error = spool.write(&name("escape/f"), b"x").unwrap_err();
        assert!(
            matches!(
                error.raw_os_error(),
                Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
            ),
            "{error}"
        );
        assert!(!outside.path().join("f").exists());
        // Nor is a link in the file's own place written through.
        std::os::unix::fs::symlink(outside.path().join("g"), root.path().join("spool/g")).unwrap();
        spool.write(&name("g"), b"y").unwrap();
        assert!(
            !outside.path().join("g").exists(),
            "the link is replaced, not followed"
        );
        assert_eq!(fs::read(root.path().join("spool/g")).unwrap(), b"y");
    }

    #[test]
    fn names_of_temporaries_are_refused_and_a_failed_write_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let error = spool
            .write(&name(".tftpd-spool-9-9.tmp"), b"x")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        // A name whose place is a directory: the rename fails, the temporary goes.
        fs::create_dir(root.path().join("dir")).unwrap();
        fs::write(root.path().join("dir/inside"), b"keep").unwrap();
        spool.write(&name("dir"), b"x").unwrap_err();
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["dir"]);
    }

    #[test]
    fn remove_takes_the_file_away_and_a_missing_one_is_no_error() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        spool.write(&name("a/B"), b"x").unwrap();
        spool.remove(&name("a/B")).unwrap();
        spool.remove(&name("a/B")).unwrap();
        spool.remove(&name("none/x")).unwrap();
        assert!(!root.path().join("a/B").exists());
    }
}
