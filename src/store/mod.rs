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

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use catalog::{FileInfo, Origin};
pub use changes::StoreChanges;
pub use preseed::{
    LoadStats, MAX_PRESEED_ENTRIES, OnError, Preseed, PreseedLoader, PreseedSource, StoreError,
    Unwatched, WatchList, WriteTracker, load_preseed,
};
pub use report::{Collision, PreseedReport, SkipReason, Skipped, SkippedSource};
pub use spool::{Spool, SpoolLoad, durable_uploads, open_upload};
pub use upload::{UploadBudget, UploadPermit, UploadPolicy, UploadRefusal};

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
        self.check_upload_within(name, announced_size, at_most, None)
    }

    /// As [`check_upload_at_most`](Self::check_upload_at_most), within `budget` too (a
    /// `[[client]]` table's `max-total-size`) when `name` is under its prefixes: the
    /// uploads there, stored and in flight, stay within its limit. The permit's reservation holds its room there
    /// until the upload ends.
    ///
    /// # Errors
    ///
    /// As [`check_upload`](Self::check_upload), for the budget's limit as for
    /// `max-total-size`.
    pub fn check_upload_within(
        &self,
        name: &FileName,
        announced_size: Option<u64>,
        at_most: u64,
        budget: Option<&UploadBudget>,
    ) -> Result<UploadPermit, UploadRefusal> {
        let inner = self.read();
        let mut reservations = self.reservations_mut();
        let mut permitted = inner
            .check(name, announced_size, &reservations, None)?
            .min(at_most);
        let ci = inner.case_insensitive;
        let key = lookup_key(name.as_str(), ci);
        // A name outside the budget's prefixes adds nothing to what they hold.
        if let Some(budget) = budget.filter(|b| b.holds(&key, ci)) {
            // The file the upload replaces is freed; it is under the budget if the name is.
            let stored = (inner.uploaded.iter())
                .filter(|(k, _)| *k != key.as_ref() && budget.holds(k, ci))
                .map(|(_, e)| e.len())
                .sum();
            let reserved = reservations.under(budget, ci);
            permitted = permitted.min(budget.room(announced_size, stored, reserved)?);
        }
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
