//! Reading preseeded files from disk for [`PreseedLoader`](super::PreseedLoader): the pool of
//! read threads, one whole file into one buffer of its size, and the [`DiskCache`] that an
//! incremental load compares the disk with (device, inode, size and modification time), so
//! that only what changed is read again and what did not keeps its buffer.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::preseed::kind_of;

/// Identity of a file or directory on disk: (device, inode).
pub(super) type FileId = (u64, u64);

/// What says a file's content may have changed while its identity stayed: its size and its
/// modification time (to the nanosecond the file system keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    pub(super) fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// A file as a load read it: its stamp then, and its bytes.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) stamp: Stamp,
    pub(super) data: Bytes,
}

/// Every file one load served, by identity and by the path it was read at: what the next
/// load compares the disk with.
#[derive(Debug, Default)]
pub(super) struct DiskCache {
    by_id: HashMap<FileId, Cached>,
    by_path: HashMap<PathBuf, FileId>,
}

impl DiskCache {
    /// The bytes of file `id` if it was read with this very `stamp`.
    pub(super) fn unchanged(&self, id: FileId, stamp: Stamp) -> Option<&Cached> {
        self.by_id.get(&id).filter(|c| c.stamp == stamp)
    }

    /// The file last served from `path`, whatever it is now.
    pub(super) fn at_path(&self, path: &Path) -> Option<(FileId, &Cached)> {
        let id = *self.by_path.get(path)?;
        self.by_id.get(&id).map(|cached| (id, cached))
    }

    /// `path` names file `id` too, already inserted.
    pub(super) fn alias(&mut self, path: &Path, id: FileId) {
        self.by_path.insert(path.to_path_buf(), id);
    }

    pub(super) fn insert(&mut self, path: &Path, id: FileId, cached: Cached) {
        self.by_path.insert(path.to_path_buf(), id);
        self.by_id.entry(id).or_insert(cached);
    }
}

/// The most threads a load reads files with. Reading from the page cache is dominated by
/// faulting in fresh memory, which scales with cores.
const MAX_READ_THREADS: usize = 4;

/// A file to read: `path` to open, `shown` to report, `id` the identity the walk found.
#[derive(Debug)]
pub(super) struct ReadJob {
    pub(super) path: PathBuf,
    pub(super) shown: PathBuf,
    pub(super) id: FileId,
}

/// Why a file was not read after all.
#[derive(Debug)]
pub(super) enum ReadFailure {
    /// It is not a regular file once opened (the kind), or a symbolic link was swapped in.
    NotRegular(&'static str),
    /// It is no longer the file the walk found, or it changed while it was read (it is
    /// still being written): the next load tries again.
    Changed,
    /// The operating system refused (permission denied, gone, an I/O error, no memory).
    Io(io::Error),
}

pub(super) type ReadResult = Result<(Bytes, Stamp), ReadFailure>;

/// Reads every job, on up to [`MAX_READ_THREADS`] threads (this one included), and returns
/// the results in job order.
pub(super) fn read_all(jobs: &[ReadJob]) -> Vec<ReadResult> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_READ_THREADS)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            done.push((i, read_regular(&job.path, job.id)));
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
/// becomes the `Bytes`), with its stamp. The file is opened without following a symbolic
/// link and without blocking, so a file swapped for a link or a fifo between the walk and
/// the read is skipped, not followed out of the directory or waited on. A file that is no
/// longer the one the walk found (`id`: device and inode), or whose size or modification
/// time moved while it was read, is [`ReadFailure::Changed`]: never half a write.
fn read_regular(path: &Path, id: FileId) -> ReadResult {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(ReadFailure::NotRegular(
                "symbolic link swapped in after the walk",
            ));
        }
        Err(e) => return Err(ReadFailure::Io(e)),
    };
    let meta = file.metadata().map_err(ReadFailure::Io)?;
    if !meta.is_file() {
        return Err(ReadFailure::NotRegular(kind_of(&meta.file_type())));
    }
    if (meta.dev(), meta.ino()) != id {
        return Err(ReadFailure::Changed);
    }
    let stamp = Stamp::of(&meta);
    let size = usize::try_from(meta.len()).map_err(|_| {
        ReadFailure::Io(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "file too large for memory",
        ))
    })?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(size)
        .map_err(|e| ReadFailure::Io(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
    file.read_to_end(&mut buf).map_err(ReadFailure::Io)?;
    let after = file.metadata().map_err(ReadFailure::Io)?;
    if Stamp::of(&after) != stamp || buf.len() as u64 != stamp.size {
        return Err(ReadFailure::Changed);
    }
    Ok((Bytes::from(buf), stamp))
}

#[cfg(test)]
mod tests {
    use super::super::testing::write;
    use super::*;
    use std::os::unix::fs::symlink;

    fn id_of(path: &Path) -> FileId {
        let meta = fs::metadata(path).expect("meta");
        (meta.dev(), meta.ino())
    }

    #[test]
    fn a_file_swapped_for_a_link_or_another_file_after_the_walk_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let secret = outside.path().join("secret");
        fs::write(&secret, b"secret").expect("write");
        let path = dir.path().join("f");
        fs::write(&path, b"mine").expect("write");
        let id = id_of(&path);
        let (data, stamp) = read_regular(&path, id).expect("read");
        assert_eq!(&data[..], b"mine");
        assert_eq!(stamp, Stamp::of(&fs::metadata(&path).expect("meta")));
        // Between the walk and the read, the file becomes a link out of the directory.
        fs::remove_file(&path).expect("remove");
        symlink(&secret, &path).expect("symlink");
        assert!(matches!(
            read_regular(&path, id),
            Err(ReadFailure::NotRegular(_))
        ));
        // Or another file takes its name.
        fs::remove_file(&path).expect("remove");
        fs::write(&path, b"other").expect("write");
        let replaced = read_regular(&path, id);
        let reused = id_of(&path) == id;
        assert!(
            matches!(replaced, Err(ReadFailure::Changed)) || reused,
            "{replaced:?}"
        );
    }

    #[test]
    fn parallel_read_returns_results_in_order_and_a_failure_only_for_its_own_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = |n: u64| {
            let path = dir.path().join(format!("f{n}"));
            write(&path, n.to_string().as_bytes());
            ReadJob {
                shown: path.clone(),
                id: id_of(&path),
                path,
            }
        };
        let jobs: Vec<ReadJob> = (0..20).map(job).collect();
        for (n, result) in read_all(&jobs).iter().enumerate() {
            let (data, _) = result.as_ref().expect("readable");
            assert_eq!(&data[..], n.to_string().as_bytes());
        }
        fs::remove_file(&jobs[7].path).expect("remove");
        let read = read_all(&jobs);
        for (n, result) in read.iter().enumerate() {
            if n == 7 {
                assert!(
                    matches!(result, Err(ReadFailure::Io(e)) if e.kind() == io::ErrorKind::NotFound),
                    "{result:?}"
                );
            } else {
                assert!(result.is_ok(), "f{n}: {result:?}");
            }
        }
    }
}
