//! What the store can tell and do for the control socket: the list of files with where
//! each came from, when it was loaded and how often it was read; an uploaded file's
//! bytes; dropping an upload.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;

use super::{Entry, Store, lookup_key};
use crate::name::FileName;

/// Where a stored file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from disk by a `[[preseed]]` entry.
    Preseed {
        /// The entry's `path` (`None` for a file inserted by hand, as tests do).
        source: Option<Arc<Path>>,
        /// When the load that read it began.
        loaded: Option<SystemTime>,
    },
    /// Written by a client.
    Upload {
        /// When it arrived.
        loaded: Option<SystemTime>,
    },
}

impl Origin {
    /// `"preseed"` or `"upload"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Preseed { .. } => "preseed",
            Origin::Upload { .. } => "upload",
        }
    }

    /// When the file was loaded or arrived.
    pub fn loaded(&self) -> Option<SystemTime> {
        match self {
            Origin::Preseed { loaded, .. } | Origin::Upload { loaded } => *loaded,
        }
    }
}

/// One file as [`Store::files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its name, as stored.
    pub name: FileName,
    /// Its size in bytes.
    pub size: u64,
    /// Where it came from.
    pub origin: Origin,
    /// Read requests that found it (since it was loaded or arrived).
    pub reads: u64,
}

fn info(entry: &Entry) -> FileInfo {
    FileInfo {
        name: entry.name.clone(),
        size: entry.len(),
        origin: entry.origin.clone(),
        reads: entry.reads.load(Ordering::Relaxed),
    }
}

impl Store {
    /// Every file whose name starts with `prefix` (ignoring ASCII case when lookups do),
    /// uploads and preseeded files together, in name order; at most `limit` of them.
    pub fn files(&self, prefix: &str, limit: usize) -> Vec<FileInfo> {
        let inner = self.read();
        let prefix = lookup_key(prefix, inner.case_insensitive);
        let mut all: Vec<FileInfo> = (inner.uploaded.iter())
            .chain(inner.preseed.iter())
            .filter(|(key, _)| key.starts_with(prefix.as_ref()))
            .map(|(_, entry)| info(entry))
            .collect();
        drop(inner);
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all.truncate(limit);
        all
    }

    /// The bytes of the upload stored under `name`, shared (no copy); `None` when no
    /// upload has that name (a preseeded file is not an upload).
    pub fn upload(&self, name: &FileName) -> Option<Bytes> {
        let inner = self.read();
        let key = lookup_key(name.as_str(), inner.case_insensitive);
        inner
            .uploaded
            .get(key.as_ref())
            .map(|e| e.file.data().clone())
    }

    /// Removes the upload stored under `name`; its bytes are freed once no transfer holds
    /// them. A preseeded file it had replaced comes back at the next reload. False when
    /// no upload has that name.
    pub fn drop_upload(&self, name: &FileName) -> bool {
        let removed = {
            let mut inner = self.write();
            let key = lookup_key(name.as_str(), inner.case_insensitive).into_owned();
            let removed = inner.uploaded.remove(&key);
            if let Some(entry) = &removed {
                inner.uploaded_bytes -= entry.len();
            }
            removed
        };
        // Freed outside the lock.
        removed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn files_lists_uploads_and_preseed_by_prefix_with_reads_and_origin() {
        let store = Store::new(
            preseed_of(
                &[("pxe/a", b"aa"), ("pxe/b", b"bbb"), ("other", b"o")],
                false,
            ),
            uploads(100, 1000),
        );
        let permit = store.check_upload(&name("pxe/up"), None).expect("permit");
        let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        store
            .commit_upload_at(permit, b"u".to_vec(), Some(when))
            .expect("commit");
        store.get(&name("pxe/a")).expect("a");
        store.get(&name("pxe/a")).expect("a");

        let listed = store.files("pxe/", 10);
        let names: Vec<&str> = listed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["pxe/a", "pxe/b", "pxe/up"]);
        assert_eq!((listed[0].size, listed[0].reads), (2, 2));
        assert_eq!(listed[0].origin.kind(), "preseed");
        assert_eq!(listed[2].origin, Origin::Upload { loaded: Some(when) });
        assert_eq!(store.files("", 2).len(), 2);
    }

    #[test]
    fn an_upload_can_be_fetched_and_dropped_but_a_preseeded_file_cannot() {
        let store = Store::new(preseed_of(&[("p", b"pre")], false), uploads(100, 1000));
        let permit = store.check_upload(&name("u"), None).expect("permit");
        store
            .commit_upload(permit, b"bytes".to_vec())
            .expect("commit");
        assert_eq!(store.upload(&name("u")).as_deref(), Some(&b"bytes"[..]));
        assert_eq!(store.upload(&name("p")), None);
        assert!(!store.drop_upload(&name("p")));
        assert!(store.drop_upload(&name("u")));
        assert_eq!(store.upload(&name("u")), None);
        assert_eq!(store.stats().uploaded_bytes, 0);
        assert_eq!(get(&store, "p").as_deref(), Some(&b"pre"[..]));
    }
}
