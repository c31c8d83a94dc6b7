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
//!   counted as "already there"); other bytes, or an object that cannot be read back,
//!   are a conflict: counted, logged, recorded, and not sent again until the upload
//!   changes. Nothing is overwritten;
//! - anything else, or no answer: not acknowledged; the next round sends it again (with
//!   the sync's back-off). A round stops at the first upload the origin cannot be reached
//!   for, so an origin that is down costs one timeout per round, not one per upload.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::error::{OriginError, io_error};
use super::fetch::{FetchError, FetchFailure};
use super::manifest::hex;
use super::publish::write_atomically;
use crate::store::durable_uploads;

/// The push's state file in the cache.
pub const STATE_FILE: &str = "pushed.json";

/// The origin's answer to a `PUT` with `If-None-Match: *`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutReply {
    /// A 2xx: the upload is stored there (the status).
    Stored(u16),
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
    /// A [`FetchError`] when the target cannot be reached.
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
    let mut kept = BTreeMap::new();
    let mut reachable = true;
    for (name, path) in &uploads {
        let name = name.as_str();
        let previous = state.uploads.remove(name);
        // Gone (replaced or removed) since it was listed: the next round sees what is there.
        let Ok((mut file, meta)) = open_upload(path) else {
            if let Some(entry) = previous {
                kept.insert(name.to_owned(), entry);
            }
            continue;
        };
        let stat = (meta.len(), modified_ns(&meta), meta.ino());
        if let Some(entry) = previous
            .as_ref()
            .filter(|e| (e.size, e.modified_ns, e.inode) == stat)
        {
            outcome.unchanged += usize::from(entry.sent == Sent::Acknowledged);
            kept.insert(name.to_owned(), entry.clone());
            continue;
        }
        // Read from the file opened: one whole version of it (the daemon renames a new
        // version over the name, it never writes into the old one).
        let mut body = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        if file.read_to_end(&mut body).is_err() {
            if let Some(entry) = previous {
                kept.insert(name.to_owned(), entry);
            }
            continue;
        }
        let sha256 = hex(&Sha256::digest(&body));
        let entry = |sent| Entry {
            sha256: sha256.clone(),
            size: stat.0,
            modified_ns: stat.1,
            inode: stat.2,
            sent,
        };
        if previous.as_ref().is_some_and(|e| e.sha256 == sha256) {
            // Touched but the same bytes: what was decided for them stands.
            let sent = previous.map_or(Sent::Acknowledged, |e| e.sent);
            outcome.unchanged += usize::from(sent == Sent::Acknowledged);
            kept.insert(name.to_owned(), entry(sent));
            continue;
        }
        if !reachable {
            outcome.deferred += 1;
            continue;
        }
        match push_one(target, name, &body, &sha256) {
            Ok(Pushed::Stored) => {
                outcome.pushed += 1;
                outcome.bytes += body.len() as u64;
                kept.insert(name.to_owned(), entry(Sent::Acknowledged));
            }
            Ok(Pushed::AlreadyThere) => {
                outcome.already_there += 1;
                kept.insert(name.to_owned(), entry(Sent::Acknowledged));
            }
            Ok(Pushed::Conflict) => {
                outcome.conflicts.push(name.to_owned());
                kept.insert(name.to_owned(), entry(Sent::Conflict));
            }
            Err(e) => {
                reachable = !matches!(e.failure, FetchFailure::Transport(_));
                outcome.failed.push((name.to_owned(), e.to_string()));
                continue;
            }
        }
        // Remembered at once: a crash after this does not send it again.
        save(&state_path, &kept, &state)?;
    }
    outcome.conflicts_recorded = kept.values().filter(|e| e.sent == Sent::Conflict).count();
    // Names no longer in the spool are forgotten.
    state.uploads = kept;
    write_state(&state_path, &state)?;
    Ok(outcome)
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

/// The decided entries so far, with those not yet reached, saved.
fn save(path: &Path, kept: &BTreeMap<String, Entry>, rest: &State) -> Result<(), OriginError> {
    let mut uploads = rest.uploads.clone();
    uploads.extend(kept.iter().map(|(k, v)| (k.clone(), v.clone())));
    write_state(path, &State { uploads })
}

fn write_state(path: &Path, state: &State) -> Result<(), OriginError> {
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| OriginError::Io {
        action: "encode",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    if fs::read(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
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
        PutReply::Stored(_) => Ok(Pushed::Stored),
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

/// The file at `path`, opened without following a link, and its metadata.
fn open_upload(path: &Path) -> std::io::Result<(fs::File, fs::Metadata)> {
    let file = fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, meta))
}

fn modified_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

#[cfg(test)]
mod tests;
