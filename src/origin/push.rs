//! `[origin] push-uploads`: the uploads the daemon made durable in its spool (`[upload]
//! spool`), sent to the origin by `tftpd sync` (the daemon has no outbound network), each
//! with `PUT <push-uploads><name>` and `If-None-Match: *`, so nothing there is ever
//! overwritten.
//!
//! The spool is the daemon's and is only read here ([`durable_uploads`]: never a
//! temporary, never a link). What was sent is remembered in `<cache>/pushed.json`, written
//! atomically under the cache's lock: per name, the SHA-256 of what was sent, and the
//! size, modification time and inode of the file it was read from, so that an unchanged
//! file is passed over without being read again. An upload stays in the spool whatever
//! happens (the daemon serves it from there after a restart); the state only decides
//! what is sent.
//!
//! What an answer means:
//! - a 2xx: stored, acknowledged, not sent again;
//! - 412 Precondition Failed: an object is already at that name. It is fetched back: the
//!   same bytes mean that an earlier PUT arrived and its answer was lost (acknowledged,
//!   counted as "already there"); other bytes, or an object the origin will not let be
//!   read back (403), are a conflict: counted, logged, recorded, and not sent again until the upload
//!   changes. Nothing is overwritten;
//! - anything else, or no answer: not acknowledged; the next round sends it again (with
//!   the sync's back-off). A round stops at the first upload the origin cannot be reached
//!   for, so an origin that is down costs one timeout per round, not one per upload.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::error::{OriginError, io_error};
use super::fetch::{FetchError, FetchFailure};
use super::manifest::hex;
use super::publish::write_atomically;
use crate::store::{durable_uploads, open_upload};

/// The push's state file in the cache.
pub const STATE_FILE: &str = "pushed.json";

/// The origin's answer to a `PUT` with `If-None-Match: *`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutReply {
    /// A 2xx: the upload is stored there.
    Stored,
    /// 412 Precondition Failed: something is already stored under the name.
    Exists,
}

/// Where uploads are pushed. Implementations bound every request in time.
pub trait PushTarget {
    /// `PUT`s `body` (whose SHA-256 is `sha256`) under `name` unless something is there.
    ///
    /// # Errors
    ///
    /// A [`FetchError`] when the target cannot be reached or answers other than 2xx or 412.
    fn put_new(&self, name: &str, body: &[u8], sha256: &str) -> Result<PutReply, FetchError>;

    /// What is stored under `name`, read up to `limit` bytes and one more; `None` when it
    /// cannot be read back (not found, not allowed).
    ///
    /// # Errors
    ///
    /// A [`FetchError`] when the target cannot be reached or answers other than 200 or
    /// 403 (which says the object cannot be read back: `None`).
    fn get(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError>;
}

/// What became of an upload sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sent {
    /// Acknowledged: stored by this sync, or found there with the same bytes.
    Acknowledged,
    /// The name holds other bytes at the origin: not overwritten, not sent again.
    Conflict,
}

/// The state kept for one name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    sha256: String,
    size: u64,
    /// The file's modification time (ns since the epoch) and inode when it was sent.
    modified_ns: i128,
    inode: u64,
    sent: Sent,
}

/// `<cache>/pushed.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    uploads: BTreeMap<String, Entry>,
}

/// What a push round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Uploads stored by this round (a 2xx).
    pub pushed: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Uploads found already there with the same bytes (a 412, then a GET).
    pub already_there: usize,
    /// Names found holding other bytes at the origin by this round (412).
    pub conflicts: Vec<String>,
    /// Uploads not acknowledged this round, with why; sent again next round.
    pub failed: Vec<(String, String)>,
    /// Uploads not tried because the origin could not be reached for an earlier one.
    pub deferred: usize,
    /// Uploads acknowledged by earlier rounds and unchanged.
    pub unchanged: usize,
    /// All the conflicts recorded (this round's and earlier ones).
    pub conflicts_recorded: usize,
}

impl PushOutcome {
    /// Whether every upload is acknowledged or a recorded conflict.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.deferred == 0
    }
}

/// One push round: every durable upload of the spool at `spool` not yet acknowledged is
/// sent to `target`; the state is kept in `cache`.
///
/// # Errors
///
/// [`OriginError::Io`] when the spool cannot be read or the state cannot be written; what
/// the target does is in the [`PushOutcome`].
pub fn run_push(
    cache: &Cache,
    spool: &Path,
    target: &dyn PushTarget,
) -> Result<PushOutcome, OriginError> {
    let state_path = cache.root().join(STATE_FILE);
    // A state that cannot be read only costs sending again: the 412 then tells.
    let mut state: State = fs::read(&state_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let uploads = durable_uploads(spool).map_err(io_error("read the spool", spool))?;
    let mut outcome = PushOutcome::default();
    let mut reachable = true;
    let mut changed = false;
    for (name, path) in &uploads {
        let name = name.as_str();
        let (mut file, meta) = match open_upload(path) {
            Ok(opened) => opened,
            // Gone (replaced or removed) since it was listed: the next round sees what
            // is there.
            Err(e) if is_gone(&e) => continue,
            Err(e) => {
                outcome.failed.push((name.to_owned(), e.to_string()));
                continue;
            }
        };
        let stat = (meta.len(), modified_ns(&meta), meta.ino());
        let previous = state.uploads.get(name);
        if let Some(entry) = previous.filter(|e| (e.size, e.modified_ns, e.inode) == stat) {
            outcome.unchanged += usize::from(entry.sent == Sent::Acknowledged);
            continue;
        }
        // Read from the file opened: one whole version of it (the daemon renames a new
        // version over the name, it never writes into the old one).
        let mut body = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        if let Err(e) = file.read_to_end(&mut body) {
            outcome.failed.push((name.to_owned(), e.to_string()));
            continue;
        }
        let sha256 = hex(&Sha256::digest(&body));
        let sent = match previous.filter(|e| e.sha256 == sha256) {
            // Touched but the same bytes: what was decided for them stands.
            Some(same) => {
                outcome.unchanged += usize::from(same.sent == Sent::Acknowledged);
                same.sent
            }
            None if !reachable => {
                outcome.deferred += 1;
                continue;
            }
            None => match push_one(target, name, &body, &sha256) {
                Ok(Pushed::Stored) => {
                    outcome.pushed += 1;
                    outcome.bytes += body.len() as u64;
                    Sent::Acknowledged
                }
                Ok(Pushed::AlreadyThere) => {
                    outcome.already_there += 1;
                    Sent::Acknowledged
                }
                Ok(Pushed::Conflict) => {
                    outcome.conflicts.push(name.to_owned());
                    Sent::Conflict
                }
                Err(e) => {
                    reachable = !matches!(e.failure, FetchFailure::Transport(_));
                    outcome.failed.push((name.to_owned(), e.to_string()));
                    continue;
                }
            },
        };
        let entry = Entry {
            sha256,
            size: stat.0,
            modified_ns: stat.1,
            inode: stat.2,
            sent,
        };
        state.uploads.insert(name.to_owned(), entry);
        changed = true;
    }
    // Names no longer in the spool are forgotten.
    let listed: BTreeSet<&str> = uploads.iter().map(|(name, _)| name.as_str()).collect();
    let before = state.uploads.len();
    state
        .uploads
        .retain(|name, _| listed.contains(name.as_str()));
    changed |= state.uploads.len() != before;
    outcome.conflicts_recorded = (state.uploads.values())
        .filter(|e| e.sent == Sent::Conflict)
        .count();
    // Written once per round: a round cut short sends its uploads again, and the 412 and
    // the read-back then acknowledge them.
    if changed {
        write_state(&state_path, &state)?;
    }
    Ok(outcome)
}

/// True for an upload that went between the listing and the opening (or became a link).
fn is_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ELOOP)
}

/// A push round of `tftpd sync` to `target` (at `settings.push_uploads`), under the
/// cache's lock, logged with `TFTP_ORIGIN_PUSH_*` fields: one line per round that did
/// something, and a warning per conflict.
///
/// # Errors
///
/// [`OriginError::Push`] when some upload is not acknowledged (it is sent again next
/// round), or the cache's and spool's errors.
pub fn push_logged(
    settings: &super::settings::OriginSettings,
    target: &dyn PushTarget,
    spool: &Path,
) -> Result<(), OriginError> {
    let url = settings.push_uploads.as_deref().unwrap_or("");
    let outcome = Cache::open(&settings.cache).and_then(|cache| run_push(&cache, spool, target));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            log::error!(
                tftp_origin_error = e.kind(),
                tftp_origin_push_url = url;
                "push of the uploads failed: {e}"
            );
            return Err(e);
        }
    };
    for name in &outcome.conflicts {
        log::warn!(
            tftp_origin_push_name = name.as_str(),
            tftp_origin_push_url = url;
            "push: {name} is already at the origin with other content; not overwritten, \
             not sent again until the upload changes"
        );
    }
    let summary = format!(
        "push: {} uploads stored ({} bytes), {} already there, {} conflicts ({} recorded), \
         {} failed, {} deferred",
        outcome.pushed,
        outcome.bytes,
        outcome.already_there,
        outcome.conflicts.len(),
        outcome.conflicts_recorded,
        outcome.failed.len(),
        outcome.deferred
    );
    let busy = outcome.pushed + outcome.already_there + outcome.conflicts.len() > 0;
    if !outcome.complete() || busy {
        let level = if outcome.complete() {
            log::Level::Info
        } else {
            log::Level::Error
        };
        let first_failure = outcome.failed.first().map_or("", |(_, why)| why.as_str());
        log::log!(
            level,
            tftp_origin_pushed = outcome.pushed,
            tftp_origin_push_bytes = outcome.bytes,
            tftp_origin_push_existing = outcome.already_there,
            tftp_origin_push_conflicts = outcome.conflicts.len(),
            tftp_origin_push_conflicts_recorded = outcome.conflicts_recorded,
            tftp_origin_push_failed = outcome.failed.len(),
            tftp_origin_push_deferred = outcome.deferred,
            tftp_origin_push_url = url;
            "{summary}{}{first_failure}",
            if first_failure.is_empty() { "" } else { ": " }
        );
    } else {
        log::debug!(tftp_origin_push_url = url; "{summary}");
    }
    match outcome.failed.first() {
        None if outcome.deferred == 0 => Ok(()),
        None => Err(OriginError::Push(format!("{} deferred", outcome.deferred))),
        Some((name, why)) => Err(OriginError::Push(format!(
            "{} failed, {} deferred; {name}: {why}",
            outcome.failed.len(),
            outcome.deferred
        ))),
    }
}

fn write_state(path: &Path, state: &State) -> Result<(), OriginError> {
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| OriginError::Io {
        action: "encode",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    write_atomically(path, &text)
}

enum Pushed {
    Stored,
    AlreadyThere,
    Conflict,
}

fn push_one(
    target: &dyn PushTarget,
    name: &str,
    body: &[u8],
    sha256: &str,
) -> Result<Pushed, FetchError> {
    match target.put_new(name, body, sha256)? {
        PutReply::Stored => Ok(Pushed::Stored),
        PutReply::Exists => {
            let there = target.get(name, body.len() as u64)?;
            if there.is_some_and(|there| there == body) {
                Ok(Pushed::AlreadyThere)
            } else {
                Ok(Pushed::Conflict)
            }
        }
    }
}

fn modified_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

#[cfg(test)]
mod tests;
