//! Following `tftpd sync`'s status file (`<cache>/status.json`) for the daemon: the event
//! loop looks at the file once a second (one `stat`), reads it when it changed (a small
//! file on the local cache), puts what it read in the [`OriginCell`] the control socket and
//! `STATUS=` show, and has the status line sent again. On the loop's own thread: a thread
//! of its own would cost every system call on a descriptor, in a process that has one
//! thread otherwise.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::OriginCell;
use crate::origin::status::{STATUS_FILE, SyncStatus};

/// How often the file is looked at.
pub const SYNC_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What tells one version of the file from another without reading it: device, inode
/// (every write renames a new file in), size and modification time.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

/// The status file as last seen, and when to look again.
#[derive(Debug)]
pub(super) struct SyncStatusFollower {
    cell: Arc<OriginCell>,
    cache: PathBuf,
    path: PathBuf,
    seen: Stamp,
    next: Instant,
}

impl SyncStatusFollower {
    /// Reads the status file of the cache `cell` names now; the next look is
    /// [`SYNC_STATUS_INTERVAL`] after `now`.
    pub(super) fn new(cell: Arc<OriginCell>, now: Instant) -> SyncStatusFollower {
        let cache: PathBuf = cell.view().cache;
        let path = cache.join(STATUS_FILE);
        let seen = stamp(&path);
        cell.set_sync(SyncStatus::read(&cache));
        SyncStatusFollower {
            cell,
            cache,
            path,
            seen,
            next: now + SYNC_STATUS_INTERVAL,
        }
    }

    /// When the loop must call [`SyncStatusFollower::poll`].
    pub(super) fn next_wake(&self) -> Instant {
        self.next
    }

    /// Looks at the file if it is time; true when what the cell shows changed (the status
    /// line is to be sent again).
    pub(super) fn poll(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + SYNC_STATUS_INTERVAL;
        let stamp = stamp(&self.path);
        if stamp == self.seen {
            return false;
        }
        self.seen = stamp;
        let read = SyncStatus::read(&self.cache);
        if let Err(e) = &read {
            log::warn!("origin: {e}");
        }
        self.cell.set_sync(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::error::OriginError;
    use crate::origin::fetch::{FetchError, FetchFailure};
    use std::time::SystemTime;

    #[test]
    fn the_file_is_looked_at_once_an_interval_and_a_new_version_changes_the_cell() {
        let dir = tempfile::tempdir().unwrap();
        let cell = Arc::new(OriginCell::new(dir.path().to_path_buf()));
        let start = Instant::now();
        let mut follower = SyncStatusFollower::new(Arc::clone(&cell), start);
        assert_eq!(cell.view().sync, None, "no status file yet");
        assert_eq!(follower.next_wake(), start + SYNC_STATUS_INTERVAL);
        let fetch = Err(OriginError::Fetch(FetchError {
            url: "http://origin/manifest.json".into(),
            failure: FetchFailure::Status(503),
        }));
        let status = SyncStatus::after(None, "u", &fetch, None, SystemTime::now());
        status.write(dir.path()).unwrap();
        assert!(!follower.poll(start), "not before the interval");
        let first = start + SYNC_STATUS_INTERVAL;
        assert!(follower.poll(first), "the new file is read");
        assert_eq!(cell.view().sync, Some(status));
        assert_eq!(follower.next_wake(), first + SYNC_STATUS_INTERVAL);
        assert!(
            !follower.poll(first + SYNC_STATUS_INTERVAL),
            "the same file is not read again"
        );
    }
}
