//! The in-memory file store: the map of files, lookups, upload commits and the reload swap.
//!
//! Every file is a [`bytes::Bytes`]: loaded once, shared by every transfer that reads it, and
//! never copied per request. A transfer takes a cheap [`StoredFile`] (the bytes and their
//! netascii length, computed once per version) with [`Store::get`] when the request arrives
//! and keeps it until it ends, so neither a reload nor an upload that replaces the file can
//! change the bytes it is sending.
//!
//! The store does no networking and reads no clock. It touches the file system only in
//! [`load_preseed`], at start-up and on reload, and in the [`Spool`], which the driver's
//! writer thread calls through [`Store::commit_upload_with`].
//!
//! By concern:
//! - this module: the [`Store`] itself, its map, lookups, the swaps and the stats;
//! - `upload`: the [`UploadPolicy`], the [`UploadPermit`] and [`UploadRefusal`];
//! - `preseed`: [`PreseedSource`], the incremental [`PreseedLoader`] (the disk walker),
//!   [`Preseed`], [`load_preseed`]; `read`: its read threads and what it remembers of the
//!   disk between loads;
//! - `changes`: what a swap changed ([`StoreChanges`]);
//! - `report`: what a preseed load skipped or overrode ([`PreseedReport`]);
//! - `spool`: the [`Spool`] directory where uploads are made durable, and their load at
//!   start-up.
//!
//! # Generation
//!
//! [`Store::generation`] is a number that starts at 1 and goes up by one with every change of
//! what the store serves: a reload or rescan that added, changed or removed a preseeded file,
//! and every committed upload. A reload that changed nothing keeps it. It is the store's
//! version for `STATUS=`, the logs and the control interface.
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
//!   [`Store::replace_preseed`] swaps only the preseeded files. Without a spool uploads live
//!   in memory only and a restart forgets them; with one, they are written to it before
//!   their final ACK and put back at start-up ([`Store::restore_uploads`]).
//! - An upload is checked twice: when the write request arrives ([`Store::check_upload`]),
//!   and again when it completes ([`Store::commit_upload`]), because a reload may have
//!   changed things in between. The [`UploadPermit`] of an upload in flight reserves its
//!   permitted size against `max-total-size` and, with `overwrite` off, its name, until it
//!   is committed or dropped: uploads in flight cannot together promise more than the
//!   limit, and two cannot race for one new name.
//! - A file's bytes are counted as the memory they take: a committed upload keeps no spare
//!   capacity, and a receiving transfer's buffer never grows past its permit.
//! - [`Store::commit_upload_with`] makes an upload durable (the spool) between its check
//!   and its swap, under a gate that reloads also take, so the check still holds when the
//!   file goes in.

mod catalog;
mod changes;
mod preseed;
mod read;
mod report;
mod spool;
mod upload;

pub use catalog::{FileInfo, Origin};
pub use changes::StoreChanges;
pub use preseed::{
    LoadStats, MAX_PRESEED_ENTRIES, OnError, Preseed, PreseedLoader, PreseedSource, StoreError,
    Unwatched, WatchList, WriteTracker, load_preseed,
};
pub use report::{Collision, PreseedReport, SkipReason, Skipped, SkippedSource};
pub use spool::{Spool, SpoolLoad, durable_uploads};
pub use upload::{UploadPermit, UploadPolicy, UploadRefusal};

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::SystemTime;

use bytes::Bytes;

use crate::name::FileName;
use crate::proto::netascii_len;
use upload::{CompiledPolicy, Ledger, Reservation, Reservations, Target};

/// The hash-map key for `name`: the name itself, or its ASCII lowercase form when lookups
/// ignore case. Borrows when nothing needs changing.
fn lookup_key(name: &str, case_insensitive: bool) -> Cow<'_, str> {
    if case_insensitive && name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

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
    /// Bytes reserved by uploads in flight (their permits); counted against
    /// `max-total-size` too.
    pub reserved_bytes: u64,
    /// Uploads in flight (permits held).
    pub uploads_in_flight: usize,
    /// The store's [generation](Store::generation).
    pub generation: u64,
    /// Entries the last preseed load skipped (unreadable, not regular, bad names, optional
    /// sources that could not be loaded): see its [`PreseedReport`].
    pub skipped: usize,
}

/// A stored file as [`Store::get`] hands it out: the file's shared bytes, and its netascii
/// wire length, computed the first time someone asks and then shared by every copy taken
/// of this version of the file. A new version (an upload over it, a reload) starts with
/// a new, empty cell, so a length never outlives the bytes it was computed from.
#[derive(Debug, Clone)]
pub struct StoredFile {
    data: Bytes,
    netascii_len: Arc<OnceLock<u64>>,
}

impl StoredFile {
    fn new(data: Bytes) -> StoredFile {
        StoredFile {
            data,
            netascii_len: Arc::new(OnceLock::new()),
        }
    }

    /// The file's bytes, shared: clone them (a reference-count increment) to keep them.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The number of bytes the file takes on the wire in netascii mode (LF as CR LF, CR as
    /// CR NUL): computed over the whole file once per stored version, whoever asks first.
    pub fn netascii_len(&self) -> u64 {
        *self.netascii_len.get_or_init(|| netascii_len(&self.data))
    }
}

#[derive(Debug)]
struct Entry {
    name: FileName,
    file: StoredFile,
    /// Where it came from, and when.
    origin: Origin,
    /// Read requests that found it.
    reads: AtomicU64,
}

impl Entry {
    /// The file's size in bytes, as the stats count it.
    fn len(&self) -> u64 {
        self.file.data.len() as u64
    }
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
    generation: u64,
    skipped: usize,
}

impl Inner {
    fn stats(&self, reservations: &Reservations) -> StoreStats {
        StoreStats {
            files: self.preseed.len() + self.uploaded.len(),
            bytes: self.preseed_bytes + self.uploaded_bytes,
            uploaded_files: self.uploaded.len(),
            uploaded_bytes: self.uploaded_bytes,
            reserved_bytes: reservations.bytes,
            uploads_in_flight: reservations.names.values().sum(),
            generation: self.generation,
            skipped: self.skipped,
        }
    }

    /// Checks an upload of `size` bytes (if known) under `name` against the policy, what
    /// is stored and what uploads in flight reserve (but `own`, the upload's own
    /// reservation, at its commit); returns the permitted maximum size.
    fn check(
        &self,
        name: &FileName,
        size: Option<u64>,
        reservations: &Reservations,
        own: Option<&Reservation>,
    ) -> Result<u64, UploadRefusal> {
        let key = lookup_key(name.as_str(), self.case_insensitive);
        let old_upload = self.uploaded.get(key.as_ref());
        let in_flight = reservations.names.get(key.as_ref()).copied().unwrap_or(0);
        let own_here = own.is_some_and(|own| own.key == key.as_ref());
        let target = Target {
            exists: old_upload.is_some() || self.preseed.contains_key(key.as_ref()),
            replaced_upload_bytes: old_upload.map_or(0, |e| e.len()),
            uploaded_bytes: self.uploaded_bytes,
            reserved_bytes: (reservations.bytes).saturating_sub(own.map_or(0, |own| own.bytes)),
            in_flight: in_flight > usize::from(own_here),
        };
        self.policy.check(name, size, self.case_insensitive, target)
    }

    /// Puts an upload in, replacing whatever the name held; returns the entries it
    /// replaced, to be freed outside the lock.
    fn insert_upload(
        &mut self,
        name: FileName,
        data: Bytes,
        when: Option<SystemTime>,
    ) -> (Option<Entry>, Option<Entry>) {
        let size = data.len() as u64;
        let key = lookup_key(name.as_str(), self.case_insensitive).into_owned();
        let old_preseed = self.preseed.remove(&key);
        if let Some(old) = &old_preseed {
            self.preseed_bytes -= old.len();
        }
        let file = StoredFile::new(data);
        let entry = Entry {
            name,
            file,
            origin: Origin::Upload { loaded: when },
            reads: AtomicU64::new(0),
        };
        let old_upload = self.uploaded.insert(key, entry);
        if let Some(old) = &old_upload {
            self.uploaded_bytes -= old.len();
        }
        self.uploaded_bytes += size;
        (old_preseed, old_upload)
    }
}

/// True when `a` and `b` hold the very same buffer (not merely equal bytes).
fn same_buffer(a: &StoredFile, b: &StoredFile) -> bool {
    a.data.as_ptr() == b.data.as_ptr() && a.data.len() == b.data.len()
}

fn build_map(files: Vec<(FileName, Bytes, Origin)>, case_insensitive: bool) -> (FileMap, u64) {
    let mut map = HashMap::with_capacity(files.len());
    for (name, data, origin) in files {
        let key = lookup_key(name.as_str(), case_insensitive).into_owned();
        map.insert(
            key,
            Entry {
                name,
                file: StoredFile::new(data),
                origin,
                reads: AtomicU64::new(0),
            },
        );
    }
    let bytes = map.values().map(|e| e.len()).sum();
    (map, bytes)
}

/// The live store, shared by every transfer thread.
///
/// Readers take one read lock per request (a hash lookup and a [`StoredFile`] clone); writers
/// (upload commits, reloads) take the write lock only to swap prepared data in.
///
/// Lock order: the commit gate, then `inner`, then the ledger of reservations (which a
/// dropped permit takes alone).
pub struct Store {
    inner: RwLock<Inner>,
    ledger: Ledger,
    /// Held across a durable commit and a reload's swap (see [`Store::commit_upload_with`]).
    gate: Mutex<()>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("Store")
            .field("case_insensitive", &inner.case_insensitive)
            .field("stats", &inner.stats(&self.reservations()))
            .field("upload", &inner.policy.policy)
            .finish()
    }
}

impl Store {
    /// A store serving `preseed` and accepting uploads under `upload`. Lookups ignore ASCII
    /// case when the preseed was built that way ([`Preseed::case_insensitive`]), so the
    /// collisions it reported are the ones the store resolved.
    pub fn new(preseed: Preseed, upload: UploadPolicy) -> Self {
        let case_insensitive = preseed.case_insensitive();
        let skipped = preseed.report().skipped_count();
        let (preseed, preseed_bytes) = build_map(preseed.into_files(), case_insensitive);
        Store {
            inner: RwLock::new(Inner {
                case_insensitive,
                policy: CompiledPolicy::new(upload, case_insensitive),
                preseed,
                preseed_bytes,
                uploaded: HashMap::new(),
                uploaded_bytes: 0,
                generation: 1,
                skipped,
            }),
            ledger: Ledger::default(),
            gate: Mutex::new(()),
        }
    }

    /// Puts back uploads kept from an earlier run (the spool), before the store serves:
    /// they count against `max-total-size` like any upload, and win over preseeded files
    /// of the same name. Returns the bytes they hold.
    pub fn restore_uploads(&self, files: Vec<(FileName, Bytes)>) -> u64 {
        let mut replaced = Vec::new();
        let mut inner = self.write();
        for (name, data) in files {
            replaced.push(inner.insert_upload(name, data, None));
        }
        let bytes = inner.uploaded_bytes;
        drop(inner);
        drop(replaced);
        bytes
    }

    /// The upload policy in force.
    pub fn upload_policy(&self) -> UploadPolicy {
        self.read().policy.policy.clone()
    }

    fn reservations(&self) -> RwLockReadGuard<'_, Reservations> {
        self.ledger.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn reservations_mut(&self) -> RwLockWriteGuard<'_, Reservations> {
        self.ledger.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // The lock is never held across code that can panic, so a poisoned lock still guards
    // consistent data: carry on with it.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file stored under `name`, shared (reference-count increments, no copy). Call
    /// once per request and keep the result for the whole transfer.
    pub fn get(&self, name: &FileName) -> Option<StoredFile> {
        let inner = self.read();
        let key = lookup_key(name.as_str(), inner.case_insensitive);
        inner
            .uploaded
            .get(key.as_ref())
            .or_else(|| inner.preseed.get(key.as_ref()))
            .map(|e| {
                e.reads.fetch_add(1, Ordering::Relaxed);
                e.file.clone()
            })
    }

    /// Swaps in a new set of preseeded files, case mode (the preseed's own) and upload policy,
    /// atomically (for a reload). Uploaded files are kept and still win over preseeded files
    /// of the same name.
    /// Transfers already holding bytes from [`Store::get`] keep them.
    ///
    /// A file whose new bytes are the very buffer the store already holds under that name (an
    /// incremental load found it unchanged on disk) keeps its [`StoredFile`], netascii length
    /// included: it is neither changed nor copied. The result says which names were added,
    /// changed and removed (as lookups see them: a preseeded file hidden by an upload counts
    /// for nothing), and the [generation](Store::generation) after the swap, one more than
    /// before if anything changed.
    ///
    /// Uploaded files are dropped only when the case mode changed to insensitive and their
    /// names now collide (the greatest name, by byte order, is kept); the result lists them,
    /// normally none.
    pub fn replace_preseed(&self, preseed: Preseed, upload: UploadPolicy) -> StoreChanges {
        let case_insensitive = preseed.case_insensitive();
        let skipped = preseed.report().skipped_count();
        let (mut new_preseed, _) = build_map(preseed.into_files(), case_insensitive);
        let policy = CompiledPolicy::new(upload, case_insensitive);
        let mut changes = StoreChanges::default();
        let old_preseed;
        let mut old_uploads = None;
        {
            let _gate = self.gate();
            let mut inner = self.write();
            if inner.case_insensitive != case_insensitive {
                let mut uploads: Vec<Entry> =
                    std::mem::take(&mut inner.uploaded).into_values().collect();
                uploads.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                let mut rekeyed = HashMap::with_capacity(uploads.len());
                for entry in uploads {
                    let key = lookup_key(entry.name.as_str(), case_insensitive).into_owned();
                    if let Some(old) = rekeyed.insert(key, entry) {
                        changes.dropped_uploads.push(old.name.clone());
                        // Freed outside the lock.
                        old_uploads.get_or_insert_with(Vec::new).push(old);
                    }
                }
                inner.uploaded = rekeyed;
                inner.uploaded_bytes = inner.uploaded.values().map(|e| e.len()).sum();
            }
            for key in inner.uploaded.keys() {
                new_preseed.remove(key);
            }
            for (key, entry) in &mut new_preseed {
                match inner.preseed.get(key) {
                    Some(old) if old.name == entry.name && same_buffer(&old.file, &entry.file) => {
                        entry.file = old.file.clone();
                        // The bytes read then: loaded then, and read as often since.
                        entry.origin = old.origin.clone();
                        entry.reads = AtomicU64::new(old.reads.load(Ordering::Relaxed));
                    }
                    Some(_) => changes.changed.push(entry.name.clone()),
                    None => changes.added.push(entry.name.clone()),
                }
            }
            for (key, entry) in &inner.preseed {
                if !new_preseed.contains_key(key) {
                    changes.removed.push(entry.name.clone());
                }
            }
            inner.preseed_bytes = new_preseed.values().map(|e| e.len()).sum();
            old_preseed = std::mem::replace(&mut inner.preseed, new_preseed);
            inner.case_insensitive = case_insensitive;
            inner.policy = policy;
            inner.skipped = skipped;
            if !changes.is_empty() {
                inner.generation += 1;
            }
            changes.generation = inner.generation;
        }
        drop(old_preseed);
        drop(old_uploads);
        changes.sort();
        changes
    }

    /// The store's generation: 1 when it is made, one more with every change of what it
    /// serves (a reload or rescan that added, changed or removed a file, a committed upload).
    /// Never goes down while the process runs.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// True when lookups ignore ASCII case.
    pub fn ignores_case(&self) -> bool {
        self.read().case_insensitive
    }

    /// What the store holds.
    pub fn stats(&self) -> StoreStats {
        let inner = self.read();
        inner.stats(&self.reservations())
    }

    /// Decides whether a write request for `name` may proceed, with `announced_size` from
    /// the `tsize` option when the client sent one. Call when the request arrives; the
    /// permit reserves the announced size (or, without one, all the upload may reach)
    /// until it is committed or dropped.
    ///
    /// # Errors
    ///
    /// An [`UploadRefusal`] to send back as an ERROR packet: uploads disabled, name not
    /// allowed, file exists or is being uploaded without `overwrite`, the announced size
    /// over a limit, or nothing left of `max-total-size` for a file of unknown size.
    pub fn check_upload(
        &self,
        name: &FileName,
        announced_size: Option<u64>,
    ) -> Result<UploadPermit, UploadRefusal> {
        self.check_upload_at_most(name, announced_size, u64::MAX)
    }

    /// As [`check_upload`](Self::check_upload), for a client whose own limit is `at_most`
    /// bytes (a `[[client]]` table's narrower `max-file-size`): the permit allows, and
    /// reserves, no more than that.
    ///
    /// # Errors
    ///
    /// As [`check_upload`](Self::check_upload).
    pub fn check_upload_at_most(
        &self,
        name: &FileName,
        announced_size: Option<u64>,
        at_most: u64,
    ) -> Result<UploadPermit, UploadRefusal> {
        let inner = self.read();
        let mut reservations = self.reservations_mut();
        let permitted = inner
            .check(name, announced_size, &reservations, None)?
            .min(at_most);
        let max_size = announced_size.map_or(permitted, |size| size.min(permitted));
        let key = lookup_key(name.as_str(), inner.case_insensitive).into_owned();
        let reservation = Reservation::take(&self.ledger, &mut reservations, key, max_size);
        Ok(UploadPermit {
            name: name.clone(),
            max_size,
            reservation,
        })
    }

    /// Stores a completed upload, all at once: readers see the old file or the new one,
    /// never part of it. Every check of [`Store::check_upload`] is made again with the real
    /// size, since a reload may have changed the policy and the names present. The permit's
    /// reservation is given back either way.
    ///
    /// # Errors
    ///
    /// The refusal, in which case the store is unchanged and any old file stays.
    pub fn commit_upload(&self, permit: UploadPermit, data: Vec<u8>) -> Result<(), UploadRefusal> {
        self.commit_upload_at(permit, data, None)
    }

    /// As [`commit_upload`](Self::commit_upload), noting `when` the upload arrived (the
    /// store reads no clock) for the file list.
    ///
    /// # Errors
    ///
    /// As [`commit_upload`](Self::commit_upload).
    pub fn commit_upload_at(
        &self,
        permit: UploadPermit,
        data: Vec<u8>,
        when: Option<SystemTime>,
    ) -> Result<(), UploadRefusal> {
        self.commit_upload_with(permit, data, when, |_, _| Ok(()))
            .map(|_| ())
    }

    /// As [`commit_upload_at`](Self::commit_upload_at), with `persist` run between the
    /// check and the swap, given the name and the bytes: the spool writes the file to disk
    /// there, and a failure refuses the upload. A gate held from the check to the swap,
    /// which [`replace_preseed`](Self::replace_preseed) takes too, keeps the check true
    /// meanwhile; lookups go on undisturbed. Returns what `persist` returned, and the name
    /// of the upload replaced when it differs from the new one (only in case).
    ///
    /// # Errors
    ///
    /// The refusal (a check, or `persist`'s own), in which case the store is unchanged.
    pub fn commit_upload_with<T>(
        &self,
        permit: UploadPermit,
        mut data: Vec<u8>,
        when: Option<SystemTime>,
        persist: impl FnOnce(&FileName, &[u8]) -> Result<T, UploadRefusal>,
    ) -> Result<(T, Option<FileName>), UploadRefusal> {
        let UploadPermit {
            name,
            max_size,
            reservation,
        } = permit;
        let size = data.len() as u64;
        if size > max_size {
            return Err(UploadRefusal::TooLarge {
                size,
                limit: max_size,
            });
        }
        let _gate = self.gate();
        {
            let inner = self.read();
            inner.check(&name, Some(size), &self.reservations(), Some(&reservation))?;
        }
        let persisted = persist(&name, &data)?;
        // The bytes kept are the bytes counted: no spare capacity rides along.
        data.shrink_to_fit();
        let data = Bytes::from(data);
        let replaced = {
            let mut inner = self.write();
            reservation.give_back(&mut self.reservations_mut());
            inner.generation += 1;
            inner.insert_upload(name.clone(), data, when)
        };
        let renamed = (replaced.1.as_ref())
            .map(|old| old.name.clone())
            .filter(|old| *old != name);
        // Freed outside the lock.
        drop(replaced);
        Ok((persisted, renamed))
    }
}

/// Helpers shared by the store's tests.
#[cfg(test)]
mod testing {
    use std::fs;
    use std::path::Path;

    use bytes::Bytes;

    use super::{Preseed, PreseedSource, Store, UploadPolicy};
    use crate::name::{FileName, normalize_name};

    pub(super) fn name(raw: &str) -> FileName {
        normalize_name(raw).expect("test name is valid")
    }

    pub(super) fn source(path: &Path, prefix: &str) -> PreseedSource {
        PreseedSource {
            path: path.to_path_buf(),
            prefix: prefix.to_owned(),
            optional: false,
            on_error: super::OnError::Skip,
        }
    }

    pub(super) fn preseed_of(files: &[(&str, &[u8])], case_insensitive: bool) -> Preseed {
        let mut preseed = Preseed::new(case_insensitive);
        for (n, data) in files {
            preseed.insert(name(n), Bytes::copy_from_slice(data));
        }
        preseed
    }

    pub(super) fn uploads(max_file_size: u64, max_total_size: u64) -> UploadPolicy {
        UploadPolicy {
            enabled: true,
            max_file_size,
            max_total_size,
            overwrite: false,
            allow: Vec::new(),
        }
    }

    pub(super) fn write(path: &Path, data: &[u8]) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create test dir");
        }
        fs::write(path, data).expect("write test file");
    }

    pub(super) fn get(store: &Store, raw: &str) -> Option<Vec<u8>> {
        store.get(&name(raw)).map(|f| f.data().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::proto::ErrorCode;

    #[test]
    fn case_insensitive_lookup_ignores_ascii_case_and_keeps_the_stored_name() {
        let preseed = preseed_of(&[("Boot/PXELinux.0", b"pxe")], true);
        assert_eq!(
            preseed.iter().next().map(|(n, _)| n.as_str()),
            Some("Boot/PXELinux.0")
        );
        let store = Store::new(preseed, UploadPolicy::disabled());
        assert_eq!(get(&store, "boot/pxelinux.0").as_deref(), Some(&b"pxe"[..]));
        assert_eq!(get(&store, "BOOT/PXELINUX.0").as_deref(), Some(&b"pxe"[..]));
        assert_eq!(get(&store, "Boot/PXELinux.0").as_deref(), Some(&b"pxe"[..]));
    }

    #[test]
    fn case_sensitive_lookup_needs_the_exact_case() {
        let store = Store::new(
            preseed_of(&[("PXELinux.0", b"pxe")], false),
            UploadPolicy::disabled(),
        );
        assert_eq!(get(&store, "pxelinux.0"), None);
        assert_eq!(get(&store, "PXELinux.0").as_deref(), Some(&b"pxe"[..]));
    }

    #[test]
    fn commit_rechecks_limits_and_keeps_the_old_file_on_refusal() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(10, 1000)
        };
        let store = Store::new(preseed_of(&[("f", b"old")], false), policy);
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
    fn a_second_upload_of_a_name_in_flight_is_refused_without_overwrite() {
        let store = Store::new(Preseed::new(false), uploads(10, 1000));
        let first = store.check_upload(&name("f"), None).expect("permit");
        let refusal = store.check_upload(&name("f"), None).expect_err("in flight");
        assert_eq!(refusal, UploadRefusal::InFlight { name: name("f") });
        assert_eq!(refusal.error_code(), ErrorCode::FileExists);
        // Once the first is given up, the name is free again.
        drop(first);
        let again = store.check_upload(&name("f"), None).expect("free again");
        store
            .commit_upload(again, b"first".to_vec())
            .expect("commit");
        assert_eq!(get(&store, "f").as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn with_overwrite_two_racing_uploads_both_land_and_the_later_commit_wins() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(10, 1000)
        };
        let store = Store::new(Preseed::new(false), policy);
        let first = store.check_upload(&name("f"), None).expect("permit");
        let second = store.check_upload(&name("f"), None).expect("permit");
        store
            .commit_upload(second, b"second".to_vec())
            .expect("commit");
        store
            .commit_upload(first, b"first".to_vec())
            .expect("commit");
        assert_eq!(get(&store, "f").as_deref(), Some(&b"first"[..]));
        assert_eq!(store.stats().uploaded_bytes, 5);
        assert_eq!(store.stats().reserved_bytes, 0);
    }

    #[test]
    fn uploads_in_flight_reserve_their_permitted_size_until_committed_or_dropped() {
        // 48 unfinished uploads against a 4 MiB total: the total is promised once, not 48
        // times over.
        let store = Store::new(Preseed::new(false), uploads(1 << 20, 4 << 20));
        let mut permits = Vec::new();
        let mut refused = 0;
        for n in 0..48 {
            match store.check_upload(&name(&format!("u{n}")), Some(1 << 20)) {
                Ok(permit) => permits.push(permit),
                Err(refusal) => {
                    // The room is promised, not gone: the request waits for it.
                    assert_eq!(refusal, UploadRefusal::Reserved { reserved: 4 << 20 });
                    assert!(refusal.is_transient());
                    refused += 1;
                }
            }
        }
        assert_eq!((permits.len(), refused), (4, 44));
        assert_eq!(store.stats().reserved_bytes, 4 << 20);
        assert_eq!(store.stats().uploads_in_flight, 4);
        // Without tsize, nothing is left to promise either, for now.
        let refusal = store.check_upload(&name("x"), None).expect_err("no room");
        assert_eq!(refusal, UploadRefusal::Reserved { reserved: 4 << 20 });
        // More than stored uploads leave can never fit: refused for good.
        let refusal = store.check_upload(&name("y"), Some(5 << 20));
        assert!(matches!(
            refusal,
            Err(UploadRefusal::TooLarge { .. } | UploadRefusal::TotalExceeded { .. })
        ));
        // A commit turns its reservation into stored bytes; a drop frees it.
        let first = permits.remove(0);
        store.commit_upload(first, vec![1; 1000]).expect("commit");
        permits.pop();
        let stats = store.stats();
        assert_eq!(
            (stats.uploaded_bytes, stats.reserved_bytes),
            (1000, 2 << 20)
        );
        let permit = store.check_upload(&name("x"), None).expect("room again");
        assert_eq!(permit.max_size(), 1 << 20);
        drop(permits);
        drop(permit);
        assert_eq!(store.stats().reserved_bytes, 0);
        assert_eq!(store.stats().uploads_in_flight, 0);
    }

    #[test]
    fn an_announced_size_is_the_permits_limit() {
        let store = Store::new(Preseed::new(false), uploads(100, 1000));
        let permit = store.check_upload(&name("a"), Some(10)).expect("permit");
        assert_eq!(permit.max_size(), 10);
        assert_eq!(store.stats().reserved_bytes, 10);
        let refusal = store
            .commit_upload(permit, vec![0; 11])
            .expect_err("over its permit, though within max-file-size");
        assert_eq!(
            refusal,
            UploadRefusal::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert_eq!(store.stats().reserved_bytes, 0);
    }

    #[test]
    fn a_durable_commit_that_fails_leaves_the_store_unchanged_and_frees_the_reservation() {
        let store = Store::new(
            preseed_of(&[("f", b"old")], false),
            UploadPolicy {
                overwrite: true,
                ..uploads(100, 1000)
            },
        );
        let permit = store.check_upload(&name("f"), None).expect("permit");
        let refusal = store
            .commit_upload_with(permit, b"new".to_vec(), None, |_, _| -> Result<(), _> {
                Err(UploadRefusal::Storage {
                    reason: "No space left on device".into(),
                })
            })
            .expect_err("persist failed");
        assert_eq!(refusal.error_code(), ErrorCode::DiskFull);
        assert_eq!(get(&store, "f").as_deref(), Some(&b"old"[..]));
        assert_eq!(store.stats().reserved_bytes, 0);
    }

    #[test]
    fn restored_uploads_count_against_the_total() {
        let store = Store::new(preseed_of(&[("f", b"preseeded")], false), uploads(100, 100));
        let bytes = store.restore_uploads(vec![(name("f"), Bytes::from(vec![1; 60]))]);
        assert_eq!(bytes, 60);
        assert_eq!(get(&store, "f").as_deref(), Some(&[1; 60][..]));
        let refusal = store.check_upload(&name("g"), Some(50)).expect_err("over");
        assert_eq!(refusal.error_code(), ErrorCode::DiskFull);
    }

    #[test]
    fn commit_swaps_the_file_in_whole_and_readers_keep_their_bytes() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(1 << 20, 1 << 30)
        };
        let store = Store::new(preseed_of(&[("f", b"old")], false), policy);
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
        assert_eq!(&held.data()[..], b"old");
        assert_eq!(get(&store, "f").as_deref(), Some(&b"new"[..]));
    }

    /// `n` newlines among `len` bytes: a netascii wire length of `len + n`.
    fn with_newlines(len: usize, n: usize) -> Vec<u8> {
        (0..len).map(|i| if i < n { b'\n' } else { b'x' }).collect()
    }

    #[test]
    fn the_netascii_length_is_computed_once_per_version_and_shared_by_every_copy() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(100, 1000)
        };
        let store = Store::new(preseed_of(&[("f", b"a\nb\r")], false), policy);
        let first = store.get(&name("f")).expect("file");
        let second = store.get(&name("f")).expect("file");
        assert!(Arc::ptr_eq(&first.netascii_len, &second.netascii_len));
        assert_eq!(
            second.netascii_len.get(),
            None,
            "not computed before it is asked for"
        );
        assert_eq!(first.netascii_len(), 6);
        assert_eq!(
            second.netascii_len.get(),
            Some(&6),
            "computed by the first copy, seen by the second"
        );
        let later = store.get(&name("f")).expect("file");
        assert_eq!(later.netascii_len.get(), Some(&6), "and by later lookups");

        let permit = store.check_upload(&name("f"), None).expect("permit");
        store
            .commit_upload(permit, b"\n\n".to_vec())
            .expect("commit");
        let new = store.get(&name("f")).expect("file");
        assert!(!Arc::ptr_eq(&new.netascii_len, &first.netascii_len));
        assert_eq!(new.netascii_len.get(), None, "a new version starts afresh");
        assert_eq!(new.netascii_len(), 4);
        assert_eq!(first.netascii_len(), 6, "the old copy keeps its own length");

        store.replace_preseed(preseed_of(&[("g", b"\n")], false), uploads(100, 1000));
        let reloaded = store.get(&name("g")).expect("file");
        assert_eq!(reloaded.netascii_len.get(), None);
        let kept = store
            .get(&name("f"))
            .expect("the upload survives the reload");
        assert!(Arc::ptr_eq(&kept.netascii_len, &new.netascii_len));
    }

    #[test]
    fn concurrent_readers_get_the_netascii_length_of_the_version_they_hold() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(1 << 20, 1 << 30)
        };
        let store = Store::new(preseed_of(&[("f", &with_newlines(4096, 0))], false), policy);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        let file = store.get(&name("f")).expect("always present");
                        assert_eq!(file.netascii_len(), netascii_len(file.data()));
                    }
                });
            }
            for round in 1..=200 {
                let permit = store.check_upload(&name("f"), None).expect("permit");
                store
                    .commit_upload(permit, with_newlines(4096, round))
                    .expect("commit");
                // Ask as a transfer would, so that the next version replaces a version
                // whose length is known.
                let file = store.get(&name("f")).expect("file");
                assert_eq!(file.netascii_len(), 4096 + round as u64);
            }
            done.store(true, Ordering::Relaxed);
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

        let changes = store.replace_preseed(
            preseed_of(
                &[("new", b"new preseed"), ("shadowed", b"preseeded again")],
                false,
            ),
            policy,
        );
        assert!(changes.dropped_uploads.is_empty());
        // "shadowed" is the upload's before and after: no change that lookups see.
        assert_eq!(changes.added, vec![name("new")]);
        assert!(changes.changed.is_empty());
        assert_eq!(changes.removed, vec![name("old")]);
        assert_eq!(&held.data()[..], b"old preseed");
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
                reserved_bytes: 0,
                uploads_in_flight: 0,
                // Made, two uploads, one reload.
                generation: 4,
                skipped: 0,
            }
        );
    }

    #[test]
    fn reload_applies_the_new_upload_policy_and_case_mode() {
        let store = Store::new(Preseed::new(false), uploads(100, 1000));
        for n in ["A", "a"] {
            let permit = store.check_upload(&name(n), None).expect("permit");
            store
                .commit_upload(permit, n.as_bytes().to_vec())
                .expect("commit");
        }
        let changes = store.replace_preseed(Preseed::new(true), UploadPolicy::disabled());
        assert_eq!(changes.dropped_uploads, vec![name("A")]);
        assert_eq!(get(&store, "A").as_deref(), Some(&b"a"[..]));
        assert_eq!(store.stats().uploaded_bytes, 1);
        assert_eq!(
            store.check_upload(&name("b"), None).err(),
            Some(UploadRefusal::Disabled)
        );
    }

    #[test]
    fn stats_count_preseeded_and_uploaded_files() {
        let store = Store::new(
            preseed_of(&[("a", b"12345"), ("b", b"123")], false),
            uploads(100, 1000),
        );
        assert_eq!(
            store.stats(),
            StoreStats {
                files: 2,
                bytes: 8,
                uploaded_files: 0,
                uploaded_bytes: 0,
                reserved_bytes: 0,
                uploads_in_flight: 0,
                generation: 1,
                skipped: 0,
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
                reserved_bytes: 0,
                uploads_in_flight: 0,
                generation: 2,
                skipped: 0,
            }
        );
    }

    #[test]
    fn a_reload_keeps_unchanged_buffers_reports_what_changed_and_moves_the_generation() {
        let kept = Bytes::from_static(b"kept");
        let mut first = Preseed::new(false);
        first.insert(name("kept"), kept.clone());
        first.insert(name("edited"), Bytes::from_static(b"v1"));
        first.insert(name("gone"), Bytes::from_static(b"gone"));
        let store = Store::new(first, UploadPolicy::disabled());
        assert_eq!(store.generation(), 1);
        let held = store.get(&name("kept")).expect("kept");
        assert_eq!(held.netascii_len(), 4);

        let mut second = Preseed::new(false);
        second.insert(name("kept"), kept.clone());
        // Equal bytes in another buffer: read again, so a change.
        second.insert(name("edited"), Bytes::from(b"v1".to_vec()));
        second.insert(name("new"), Bytes::from_static(b"new"));
        let changes = store.replace_preseed(second, UploadPolicy::disabled());
        assert_eq!(changes.added, vec![name("new")]);
        assert_eq!(changes.changed, vec![name("edited")]);
        assert_eq!(changes.removed, vec![name("gone")]);
        assert_eq!(changes.generation, 2);
        assert_eq!(store.generation(), 2);
        assert_eq!(changes.to_string(), "1 added, 1 changed, 1 removed");
        let after = store.get(&name("kept")).expect("kept");
        assert_eq!(after.data().as_ptr(), held.data().as_ptr());
        assert!(
            Arc::ptr_eq(&after.netascii_len, &held.netascii_len),
            "an unchanged file keeps its StoredFile"
        );

        // The same buffers again: nothing changed, the generation stays.
        let mut third = Preseed::new(false);
        for n in ["kept", "edited", "new"] {
            let data = store.get(&name(n)).expect("present").data().clone();
            third.insert(name(n), data);
        }
        let changes = store.replace_preseed(third, UploadPolicy::disabled());
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(store.generation(), 2);
    }

    #[test]
    fn every_committed_upload_moves_the_generation() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(100, 1000)
        };
        let store = Store::new(Preseed::new(false), policy);
        for round in 1..=3 {
            let permit = store.check_upload(&name("f"), None).expect("permit");
            store.commit_upload(permit, vec![round]).expect("commit");
            assert_eq!(store.generation(), 1 + u64::from(round));
        }
        let permit = store.check_upload(&name("g"), None).expect("permit");
        store
            .commit_upload(permit, vec![0; 101])
            .expect_err("too large");
        assert_eq!(store.generation(), 4, "a refused commit changes nothing");
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<Preseed>();
    }
}
