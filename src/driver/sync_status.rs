//! The thread that follows `tftpd sync`'s status file (`<cache>/status.json`) for the
//! daemon: it looks at the file once a second (one `stat`), reads it when it changed, puts
//! what it read in the [`OriginCell`] the control socket and `STATUS=` show, and has the
//! status line sent again. The event loop never touches the file.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::ServerHandle;
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

/// Reads the status file of the cache `cell` names now, then starts the thread that
/// follows it and tells `handle` when what it shows changed.
///
/// # Errors
///
/// When the thread cannot be started.
pub fn follow_sync_status(cell: Arc<OriginCell>, handle: ServerHandle) -> io::Result<()> {
    let cache: PathBuf = cell.view().cache;
    let path = cache.join(STATUS_FILE);
    let mut seen = stamp(&path);
    cell.set_sync(SyncStatus::read(&cache));
    std::thread::Builder::new()
        .name("sync-status".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SYNC_STATUS_INTERVAL);
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                let read = SyncStatus::read(&cache);
                if let Err(e) = &read {
                    log::warn!("origin: {e}");
                }
                if cell.set_sync(read) {
                    handle.status_changed();
                }
            }
        })
        .map(drop)
}
