//! Who may upload what: the [`UploadPolicy`] (the `[upload]` table), its compiled form
//! that matches names against the allow list, the [`UploadPermit`] a write request gets
//! from [`Store::check_upload`](super::Store::check_upload), and the [`UploadRefusal`] (with
//! its TFTP error code) when it gets none. The store supplies what it holds under the name;
//! the decision is made here.
//!
//! A permit is a reservation: from the write request until it is committed or dropped
//! (the transfer failed, was evicted, or its commit was refused), its permitted size counts
//! against `max-total-size` and, with `overwrite` off, its name counts as taken. Dropping
//! the permit gives both back, whichever way the upload ends. An [`UploadBudget`] (a
//! `[[client]]` table's `max-total-size`) bounds the uploads under some prefixes the same
//! way, within `max-total-size`.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use super::lookup_key;
use crate::name::{FileName, NameError, normalize_name};
use crate::proto::ErrorCode;

/// Who may upload what: the input form of the `[upload]` config table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Whether uploads are accepted at all.
    pub enabled: bool,
    /// The largest single uploaded file, in bytes.
    pub max_file_size: u64,
    /// The most bytes all uploaded files together may hold.
    pub max_total_size: u64,
    /// Whether an upload may replace an existing file (preseeded or uploaded).
    pub overwrite: bool,
    /// Where uploads may go; empty means anywhere. Each entry is normalised like a name and
    /// matched on whole components: `incoming` allows `incoming` and `incoming/x`, not
    /// `incoming2`. An entry that is empty after normalisation (`""`, `"/"`) allows
    /// everything; an entry that is refused by [`normalize_name`] allows nothing (the
    /// configuration refuses such entries before they get here).
    pub allow: Vec<String>,
}

impl UploadPolicy {
    /// Uploads off, all limits zero.
    pub fn disabled() -> Self {
        UploadPolicy {
            enabled: false,
            max_file_size: 0,
            max_total_size: 0,
            overwrite: false,
            allow: Vec::new(),
        }
    }
}

/// An [`UploadPolicy`] with the allow list split into components, ready for matching.
#[derive(Debug)]
pub(super) struct CompiledPolicy {
    pub(super) policy: UploadPolicy,
    /// `None` means anywhere. Components are lowercase in case-insensitive mode.
    allow: Option<Vec<Vec<String>>>,
}

impl CompiledPolicy {
    pub(super) fn new(policy: UploadPolicy, case_insensitive: bool) -> Self {
        let allow = if policy.allow.is_empty() {
            None
        } else {
            let mut prefixes = Vec::new();
            for entry in &policy.allow {
                match normalize_name(entry) {
                    Ok(name) => prefixes.push(
                        name.components()
                            .map(|c| lookup_key(c, case_insensitive).into_owned())
                            .collect(),
                    ),
                    Err(NameError::Empty) => prefixes.push(Vec::new()),
                    // Fail closed: a bad entry allows nothing.
                    Err(_) => {}
                }
            }
            Some(prefixes)
        };
        CompiledPolicy { policy, allow }
    }

    /// Checks an upload of `size` bytes (if known) under `name`, where the store holds
    /// `target`; returns the permitted maximum size.
    pub(super) fn check(
        &self,
        name: &FileName,
        size: Option<u64>,
        case_insensitive: bool,
        target: Target,
    ) -> Result<u64, UploadRefusal> {
        let policy = &self.policy;
        if !policy.enabled {
            return Err(UploadRefusal::Disabled);
        }
        if !self.allows(name, case_insensitive) {
            return Err(UploadRefusal::NotAllowed { name: name.clone() });
        }
        if !policy.overwrite && target.exists {
            return Err(UploadRefusal::Exists { name: name.clone() });
        }
        if !policy.overwrite && target.in_flight {
            return Err(UploadRefusal::InFlight { name: name.clone() });
        }
        if let Some(size) = size
            && size > policy.max_file_size
        {
            return Err(UploadRefusal::TooLarge {
                size,
                limit: policy.max_file_size,
            });
        }
        let stored = (target.uploaded_bytes).saturating_sub(target.replaced_upload_bytes);
        let reserved = target.reserved_bytes;
        let available = room(policy.max_total_size, stored, reserved, size)?;
        let permitted = policy.max_file_size.min(available);
        if size.is_none() && permitted == 0 && policy.max_file_size > 0 {
            return Err(no_room(policy.max_total_size, stored, reserved));
        }
        Ok(permitted)
    }

    fn allows(&self, name: &FileName, case_insensitive: bool) -> bool {
        let Some(prefixes) = &self.allow else {
            return true;
        };
        let key = lookup_key(name.as_str(), case_insensitive);
        let components: Vec<&str> = key.split('/').collect();
        prefixes.iter().any(|prefix| {
            prefix.len() <= components.len() && prefix.iter().zip(&components).all(|(p, c)| p == c)
        })
    }
}

/// What is left of `limit` for an upload of `size` bytes (if known) where uploads already
/// hold `stored` bytes and uploads in flight have promised `reserved` more: the room (0
/// is for the caller to judge for a size not known), or the refusal of a known size.
/// Room promised to uploads in flight is transient (the request waits); room taken by
/// stored uploads is not.
fn room(limit: u64, stored: u64, reserved: u64, size: Option<u64>) -> Result<u64, UploadRefusal> {
    // What stored uploads leave, and what uploads in flight have not promised yet.
    let unstored = limit.saturating_sub(stored);
    let available = unstored.saturating_sub(reserved);
    match size {
        Some(size) if size > unstored => Err(UploadRefusal::TotalExceeded {
            size,
            available: unstored,
        }),
        Some(size) if size > available => Err(UploadRefusal::Reserved { reserved }),
        _ => Ok(available),
    }
}

/// Why an upload of unknown size finds no room in `limit`: promised to uploads in flight
/// (transient), or held by stored ones.
fn no_room(limit: u64, stored: u64, reserved: u64) -> UploadRefusal {
    if limit > stored {
        UploadRefusal::Reserved { reserved }
    } else {
        UploadRefusal::NoRoom { limit }
    }
}

/// A budget of its own for part of the upload space (a `[[client]]` table's
/// `max-total-size`, within `[upload]`'s): the uploads under `prefixes` (stored names,
/// normalised, each ending in `/`; none: every name), stored and in flight, whoever sent
/// them, may hold at most `limit` bytes together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBudget {
    /// Where the budget applies; empty: everywhere.
    pub prefixes: Vec<String>,
    /// The most bytes the uploads there may hold.
    pub limit: u64,
}

impl UploadBudget {
    /// True when the lookup key `key` is under one of the prefixes (whole components).
    pub(super) fn holds(&self, key: &str, case_insensitive: bool) -> bool {
        self.prefixes.is_empty()
            || self.prefixes.iter().any(|prefix| {
                let prefix = lookup_key(prefix, case_insensitive);
                key.strip_prefix(prefix.trim_end_matches('/'))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    /// What the budget leaves for an upload of `size` bytes (if known), where the uploads
    /// under it hold `stored` bytes (the file replaced not counted) and uploads in flight
    /// there have promised `reserved`.
    pub(super) fn room(
        &self,
        size: Option<u64>,
        stored: u64,
        reserved: u64,
    ) -> Result<u64, UploadRefusal> {
        match room(self.limit, stored, reserved, size)? {
            0 if size.is_none() => Err(no_room(self.limit, stored, reserved)),
            available => Ok(available),
        }
    }
}

/// What the store holds under an upload's name, for [`CompiledPolicy::check`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    /// A file of that name (or, ignoring case, a name) is stored, preseeded or uploaded.
    pub(super) exists: bool,
    /// The size of the uploaded file of that name, freed if the upload replaces it.
    pub(super) replaced_upload_bytes: u64,
    /// The bytes all uploaded files hold now.
    pub(super) uploaded_bytes: u64,
    /// The bytes reserved by the permits of other uploads in flight.
    pub(super) reserved_bytes: u64,
    /// Another upload of that name is in flight.
    pub(super) in_flight: bool,
}

/// What the store keeps of the permits it handed out: the bytes they reserve, and the
/// names (by lookup key) of the uploads in flight, with how many there are of each.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    pub(super) bytes: u64,
    pub(super) names: std::collections::HashMap<String, usize>,
    /// The bytes reserved under each name, for the budgets of parts of the space.
    pub(super) held: std::collections::HashMap<String, u64>,
}

impl Reservations {
    fn take(&mut self, key: &str, bytes: u64) {
        self.bytes += bytes;
        *self.names.entry(key.to_owned()).or_default() += 1;
        *self.held.entry(key.to_owned()).or_default() += bytes;
    }

    fn give_back(&mut self, key: &str, bytes: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(count) = self.names.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.names.remove(key);
                self.held.remove(key);
            } else if let Some(held) = self.held.get_mut(key) {
                *held = held.saturating_sub(bytes);
            }
        }
    }

    /// The bytes reserved under `budget`'s prefixes.
    pub(super) fn under(&self, budget: &UploadBudget, case_insensitive: bool) -> u64 {
        (self.held.iter())
            .filter(|(key, _)| budget.holds(key, case_insensitive))
            .map(|(_, bytes)| bytes)
            .sum()
    }
}

/// Where a permit's reservation lives: the store's reservations, shared with the store.
pub(super) type Ledger = Arc<RwLock<Reservations>>;

/// A permit's hold on the store: given back when the permit is committed or dropped.
pub(super) struct Reservation {
    ledger: Option<Ledger>,
    /// The name's lookup key when the permit was granted.
    pub(super) key: String,
    pub(super) bytes: u64,
}

impl Reservation {
    /// Takes `bytes` and the name `key` in `ledger` (whose lock the caller holds, as
    /// `reservations`).
    pub(super) fn take(
        ledger: &Ledger,
        reservations: &mut Reservations,
        key: String,
        bytes: u64,
    ) -> Reservation {
        reservations.take(&key, bytes);
        Reservation {
            ledger: Some(Arc::clone(ledger)),
            key,
            bytes,
        }
    }

    /// Gives the reservation back in `reservations` (whose lock the caller holds).
    pub(super) fn give_back(mut self, reservations: &mut Reservations) {
        if self.ledger.take().is_some() {
            reservations.give_back(&self.key, self.bytes);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(ledger) = self.ledger.take() {
            let mut reservations = ledger.write().unwrap_or_else(PoisonError::into_inner);
            reservations.give_back(&self.key, self.bytes);
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("key", &self.key)
            .field("bytes", &self.bytes)
            .field("held", &self.ledger.is_some())
            .finish()
    }
}

/// Permission to receive an upload, from
/// [`Store::check_upload`](super::Store::check_upload); hand it back to
/// [`Store::commit_upload`](super::Store::commit_upload) with the data. While it exists it
/// reserves [`max_size`](Self::max_size) bytes of `max-total-size` and (with `overwrite`
/// off) its name; dropping it gives them back.
#[derive(Debug)]
pub struct UploadPermit {
    pub(super) name: FileName,
    pub(super) max_size: u64,
    pub(super) reservation: Reservation,
}

impl UploadPermit {
    /// The name the upload will be stored under.
    pub fn name(&self) -> &FileName {
        &self.name
    }

    /// The most bytes this upload may reach, and what it reserves: the size the client
    /// announced (`tsize`), or without one the smaller of `max-file-size` and what is left
    /// of `max-total-size` (counting the file it replaces as freed). The transfer should stop
    /// with ERROR 3 as soon as the data passes it.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }
}

/// Why an upload was refused, by [`Store::check_upload`](super::Store::check_upload) or
/// [`Store::commit_upload`](super::Store::commit_upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRefusal {
    /// Uploads are disabled.
    Disabled,
    /// The name is outside every `allow` prefix.
    NotAllowed {
        /// The name asked for.
        name: FileName,
    },
    /// A file of that name exists and `overwrite` is off.
    Exists {
        /// The name asked for.
        name: FileName,
    },
    /// The file is larger than `max-file-size`.
    TooLarge {
        /// The file's size (announced or received), in bytes.
        size: u64,
        /// `max-file-size`.
        limit: u64,
    },
    /// Storing the file would push all uploads together past `max-total-size`.
    TotalExceeded {
        /// The file's size (announced or received), in bytes.
        size: u64,
        /// How many bytes are still free for this upload.
        available: u64,
    },
    /// Another upload of that name is in flight and `overwrite` is off.
    InFlight {
        /// The name asked for.
        name: FileName,
    },
    /// An upload of unknown size finds nothing left of `max-total-size`: stored uploads
    /// and the reservations of uploads in flight hold it all.
    NoRoom {
        /// `max-total-size`.
        limit: u64,
    },
    /// The room the upload needs is promised to uploads in flight: transient, it frees
    /// as they commit or fail, so the request waits (it is dropped unanswered, and the
    /// client's retransmission finds the room) rather than being refused.
    Reserved {
        /// The bytes uploads in flight hold.
        reserved: u64,
    },
    /// The file could not be made durable (the spool's disk is full or failing).
    Storage {
        /// What went wrong, for the log and the ERROR message.
        reason: String,
    },
}

impl UploadRefusal {
    /// The TFTP error to send: [`ErrorCode::AccessViolation`] when uploads are disabled or
    /// the name is not allowed, [`ErrorCode::FileExists`], and [`ErrorCode::DiskFull`] for
    /// the size limits.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            UploadRefusal::Disabled | UploadRefusal::NotAllowed { .. } => {
                ErrorCode::AccessViolation
            }
            UploadRefusal::Exists { .. } | UploadRefusal::InFlight { .. } => ErrorCode::FileExists,
            UploadRefusal::TooLarge { .. }
            | UploadRefusal::TotalExceeded { .. }
            | UploadRefusal::NoRoom { .. }
            | UploadRefusal::Reserved { .. }
            | UploadRefusal::Storage { .. } => ErrorCode::DiskFull,
        }
    }

    /// True when the refusal lasts only until uploads in flight end: the request should
    /// wait, as for any transient limit, not be answered with an ERROR.
    pub fn is_transient(&self) -> bool {
        matches!(self, UploadRefusal::Reserved { .. })
    }
}

impl fmt::Display for UploadRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadRefusal::Disabled => f.write_str("uploads are disabled on this server"),
            UploadRefusal::NotAllowed { name } => {
                write!(
                    f,
                    "uploads are not allowed under the name {:?}",
                    name.as_str()
                )
            }
            UploadRefusal::Exists { name } => write!(
                f,
                "file {:?} already exists and overwriting is disabled",
                name.as_str()
            ),
            UploadRefusal::TooLarge { size, limit } => write!(
                f,
                "file of {size} bytes exceeds the upload size limit of {limit} bytes"
            ),
            UploadRefusal::TotalExceeded { size, available } => write!(
                f,
                "file of {size} bytes exceeds the {available} bytes left for uploads"
            ),
            UploadRefusal::InFlight { name } => write!(
                f,
                "file {:?} is being uploaded already and overwriting is disabled",
                name.as_str()
            ),
            UploadRefusal::NoRoom { limit } => write!(
                f,
                "no room left for uploads: stored uploads and uploads in flight hold all \
                 {limit} bytes of max-total-size"
            ),
            UploadRefusal::Reserved { reserved } => write!(
                f,
                "the room left for uploads is promised to uploads in flight ({reserved} bytes)"
            ),
            UploadRefusal::Storage { reason } => write!(f, "cannot store the file: {reason}"),
        }
    }
}

impl std::error::Error for UploadRefusal {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Preseed, Store};
    use super::*;

    #[test]
    fn upload_refused_when_disabled() {
        let store = Store::new(Preseed::new(false), UploadPolicy::disabled());
        let refusal = store.check_upload(&name("x"), None).expect_err("disabled");
        assert_eq!(refusal, UploadRefusal::Disabled);
        assert_eq!(refusal.error_code(), ErrorCode::AccessViolation);
    }

    #[test]
    fn upload_refused_outside_allow_prefixes_matched_on_whole_components() {
        let policy = UploadPolicy {
            allow: vec!["/incoming/".to_owned(), "logs\\today".to_owned()],
            ..uploads(100, 1000)
        };
        let store = Store::new(Preseed::new(false), policy);
        for ok in ["incoming/a", "incoming/deep/b", "logs/today/x"] {
            assert!(store.check_upload(&name(ok), None).is_ok(), "{ok}");
        }
        for refused in ["incoming2/a", "a", "logs/todayx", "logs/x"] {
            let refusal = store.check_upload(&name(refused), None).expect_err(refused);
            assert!(
                matches!(refusal, UploadRefusal::NotAllowed { .. }),
                "{refused}"
            );
            assert_eq!(refusal.error_code(), ErrorCode::AccessViolation);
        }
    }

    #[test]
    fn allow_prefixes_ignore_case_in_case_insensitive_mode() {
        let policy = UploadPolicy {
            allow: vec!["Incoming".to_owned()],
            ..uploads(100, 1000)
        };
        let store = Store::new(Preseed::new(true), policy);
        assert!(store.check_upload(&name("INCOMING/a"), None).is_ok());
    }

    #[test]
    fn an_invalid_allow_entry_allows_nothing_and_the_valid_ones_still_apply() {
        let policy = UploadPolicy {
            allow: vec!["../up".to_owned(), "ok".to_owned()],
            ..uploads(100, 1000)
        };
        let store = Store::new(Preseed::new(false), policy);
        assert_eq!(
            store.check_upload(&name("up/a"), None).err(),
            Some(UploadRefusal::NotAllowed { name: name("up/a") })
        );
        assert!(store.check_upload(&name("ok/a"), None).is_ok());
    }

    #[test]
    fn upload_refused_when_name_exists_without_overwrite() {
        let store = Store::new(preseed_of(&[("Taken", b"old")], true), uploads(100, 1000));
        let refusal = store
            .check_upload(&name("taken"), None)
            .expect_err("exists");
        assert_eq!(
            refusal,
            UploadRefusal::Exists {
                name: name("taken")
            }
        );
        assert_eq!(refusal.error_code(), ErrorCode::FileExists);
        assert!(refusal.to_string().contains("already exists"));
    }

    #[test]
    fn upload_refused_when_announced_size_is_over_a_limit() {
        let store = Store::new(Preseed::new(false), uploads(100, 150));
        let too_large = store
            .check_upload(&name("a"), Some(101))
            .expect_err("too large");
        assert_eq!(
            too_large,
            UploadRefusal::TooLarge {
                size: 101,
                limit: 100
            }
        );
        assert_eq!(too_large.error_code(), ErrorCode::DiskFull);

        let permit = store.check_upload(&name("a"), Some(100)).expect("fits");
        assert_eq!(permit.max_size(), 100);
        store.commit_upload(permit, vec![1; 100]).expect("commit");

        let over_total = store
            .check_upload(&name("b"), Some(60))
            .expect_err("over total");
        assert_eq!(
            over_total,
            UploadRefusal::TotalExceeded {
                size: 60,
                available: 50
            }
        );
        assert_eq!(over_total.error_code(), ErrorCode::DiskFull);
        let permit = store.check_upload(&name("b"), None).expect("unknown size");
        assert_eq!(permit.max_size(), 50);
    }

    #[test]
    fn overwriting_an_upload_counts_its_old_size_as_freed() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(100, 100)
        };
        let store = Store::new(Preseed::new(false), policy);
        let permit = store.check_upload(&name("a"), None).expect("permit");
        store.commit_upload(permit, vec![1; 90]).expect("commit");
        let permit = store
            .check_upload(&name("a"), Some(100))
            .expect("replaces itself");
        assert_eq!(permit.max_size(), 100);
        store.commit_upload(permit, vec![2; 100]).expect("commit");
        assert_eq!(store.stats().uploaded_bytes, 100);
    }

    #[test]
    fn a_budget_counts_the_uploads_under_its_prefixes_stored_and_in_flight() {
        let policy = UploadPolicy {
            overwrite: true,
            ..uploads(1000, 10_000)
        };
        let store = Store::new(preseed_of(&[("lab/preseeded", &[0u8; 900])], true), policy);
        let budget = UploadBudget {
            prefixes: vec!["Lab/".to_owned()],
            limit: 1000,
        };
        let within =
            |n: &str, size| store.check_upload_within(&name(n), size, u64::MAX, Some(&budget));
        // Preseeded files are not uploads: they take nothing of the budget.
        let permit = within("lab/a", Some(700)).expect("fits");
        // Another name under the prefix (case ignored) waits for the room promised.
        assert_eq!(
            within("LAB/b", Some(400)).err(),
            Some(UploadRefusal::Reserved { reserved: 700 })
        );
        store.commit_upload(permit, vec![1; 700]).expect("commit");
        // Now stored: a refusal, not a wait; an unknown size gets what is left.
        assert_eq!(
            within("lab/b", Some(400)).err(),
            Some(UploadRefusal::TotalExceeded {
                size: 400,
                available: 300
            })
        );
        assert!(within("lab/b", Some(400)).unwrap_err().error_code() == ErrorCode::DiskFull);
        let rest = within("lab/b", None).expect("the rest");
        assert_eq!(rest.max_size(), 300);
        assert_eq!(
            within("lab/c", None).err(),
            Some(UploadRefusal::Reserved { reserved: 300 })
        );
        drop(rest);
        // Replacing a file under the budget frees its size; names outside are not counted.
        assert_eq!(
            within("lab/a", Some(1000)).expect("replaces").max_size(),
            1000
        );
        assert_eq!(
            within("labs/x", Some(1000)).expect("outside").max_size(),
            1000
        );
        let everything = UploadBudget {
            prefixes: Vec::new(),
            limit: 700,
        };
        let full = store.check_upload_within(&name("x"), None, u64::MAX, Some(&everything));
        assert_eq!(full.err(), Some(UploadRefusal::NoRoom { limit: 700 }));
        assert!(
            store.check_upload(&name("x"), None).is_ok(),
            "[upload] alone has room"
        );
    }
}
