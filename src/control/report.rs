//! The results the control protocol answers with, as JSON (schema version 1, described in
//! tftpd(8)): field names are snake case, sizes in bytes, times RFC 3339 in UTC, durations
//! in seconds. A field the daemon cannot fill is `null`, never left out. Each type reads
//! back (`Deserialize`) for `tftpd ctl` and the tests.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::View;
use super::origin::OriginReport;
use crate::store::{FileInfo, Origin};
use crate::timestamp::rfc3339;
use crate::transfer::Progress;

/// `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon.
    pub server: ServerInfo,
    /// The store's generation: it grows with every change of what is served.
    pub generation: u64,
    /// Entries the last preseed load skipped (unreadable, not a regular file, ...).
    pub skipped: u64,
    /// What the store holds.
    pub store: StoreFigures,
    /// Transfers in flight.
    pub transfers: ActiveFigures,
    /// Transfers ended since start-up, any outcome.
    pub served: u64,
    /// Requests refused with an ERROR since start-up.
    pub refused: u64,
    /// Requests dropped unanswered for want of room since start-up.
    pub dropped: u64,
    /// Reloads since start-up.
    pub reloads: ReloadFigures,
    /// The last reload, if any.
    pub last_reload: Option<LastReload>,
    /// The most verbose level logged now.
    pub log_level: String,
    /// The generation served from the origin's cache and the sync's last rounds, when
    /// the configuration has an `[origin]` table (`null` otherwise).
    pub origin: Option<OriginReport>,
}

/// The daemon itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// memtftpd's version.
    pub version: String,
    /// The daemon's process ID.
    pub pid: u32,
    /// When it started.
    pub started: String,
    /// Seconds since then.
    pub uptime_seconds: f64,
}

/// The store's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFigures {
    /// Files, preseeded and uploaded.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of `files`, the uploads.
    pub uploads: u64,
    /// Of `bytes`, the uploads'.
    pub upload_bytes: u64,
}

/// Transfers in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFigures {
    /// All of them.
    pub active: u64,
    /// Reads.
    pub read: u64,
    /// Writes.
    pub write: u64,
    /// Whose peer has answered.
    pub verified: u64,
    /// Whose peer has not answered yet.
    pub unverified: u64,
}

/// Reload counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadFigures {
    /// Took effect.
    pub ok: u64,
    /// Refused.
    pub failed: u64,
}

/// The last reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    /// When it ended.
    pub at: String,
    /// Whether it took effect.
    pub ok: bool,
    /// Why not, if it did not.
    pub error: Option<String>,
}

impl StatusReport {
    /// The status of the server `view` shows.
    pub fn of(view: &View<'_>) -> StatusReport {
        let c = view.counters;
        let daemon = view.daemon;
        StatusReport {
            server: ServerInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: std::process::id(),
                started: rfc3339(daemon.started_wall),
                uptime_seconds: seconds_since(daemon.started, view.now),
            },
            generation: c.generation,
            skipped: c.skipped,
            store: StoreFigures {
                files: c.files,
                bytes: c.bytes,
                uploads: c.uploaded_files,
                upload_bytes: c.uploaded_bytes,
            },
            transfers: ActiveFigures {
                active: c.active as u64,
                read: c.active_by_op[0] as u64,
                write: c.active_by_op[1] as u64,
                verified: (c.active - c.unverified.min(c.active)) as u64,
                unverified: c.unverified as u64,
            },
            served: c.served,
            refused: c.refused,
            dropped: c.dropped,
            reloads: ReloadFigures {
                ok: daemon.reloads_ok,
                failed: daemon.reloads_failed,
            },
            last_reload: daemon.last_reload.as_ref().map(|(at, result)| LastReload {
                at: rfc3339(*at),
                ok: result.is_ok(),
                error: result.as_ref().err().cloned(),
            }),
            log_level: log::max_level().to_string().to_ascii_lowercase(),
            origin: view.origin.map(OriginReport::of),
        }
    }
}

fn seconds_since(then: Instant, now: Instant) -> f64 {
    // Milliseconds are plenty, and keep the JSON short.
    (now.saturating_duration_since(then).as_millis() as f64) / 1000.0
}

/// `transfers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransfersReport {
    /// Oldest first.
    pub transfers: Vec<TransferEntry>,
}

/// One transfer in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferEntry {
    /// The client's address and port.
    pub peer: String,
    /// `read` or `write`.
    pub op: String,
    /// The file name as requested.
    pub file: String,
    /// `octet` or `netascii`.
    pub mode: String,
    /// Negotiated block size.
    pub blksize: u16,
    /// Negotiated window size.
    pub windowsize: u16,
    /// Retransmission timeout, in seconds.
    pub timeout_seconds: f64,
    /// The transfer size announced, if `tsize` was negotiated.
    pub tsize: Option<u64>,
    /// File bytes delivered so far.
    pub bytes: u64,
    /// Mean rate since the request, bytes per second.
    pub bytes_per_second: f64,
    /// Packets sent again so far.
    pub retransmits: u64,
    /// Seconds since the request.
    pub age_seconds: f64,
    /// Whether the peer has answered from its address and port.
    pub verified: bool,
}

impl TransferEntry {
    /// The entry for `progress`, at `now`.
    pub fn of(progress: &Progress, now: Instant) -> TransferEntry {
        let age = seconds_since(progress.started, now);
        let rate = if age > 0.0 {
            (progress.bytes as f64 / age).round()
        } else {
            0.0
        };
        TransferEntry {
            peer: progress.peer.to_string(),
            op: progress.direction.as_str().to_owned(),
            file: progress.filename.clone(),
            mode: progress.mode.as_str().to_owned(),
            blksize: progress.options.blksize,
            windowsize: progress.options.windowsize,
            timeout_seconds: progress.options.timeout.as_secs_f64(),
            tsize: progress.options.tsize,
            bytes: progress.bytes,
            bytes_per_second: rate,
            retransmits: progress.retransmits,
            age_seconds: age,
            verified: progress.verified,
        }
    }
}

/// `files` and `uploads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesReport {
    /// In name order.
    pub files: Vec<FileEntry>,
    /// More files matched than one answer lists ([`MAX_LISTED`](super::MAX_LISTED)).
    pub truncated: bool,
}

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// `preseed` or `upload`.
    pub source: String,
    /// The `[[preseed]]` path it was loaded from (`null` for an upload).
    pub path: Option<String>,
    /// When it was loaded or arrived.
    pub loaded: Option<String>,
    /// Read requests that found it since.
    pub reads: u64,
}

impl FileEntry {
    /// The entry for `file`.
    pub fn of(file: &FileInfo) -> FileEntry {
        let path = match &file.origin {
            Origin::Preseed { source, .. } => source.as_ref().map(|p| p.display().to_string()),
            Origin::Upload { .. } => None,
        };
        FileEntry {
            name: file.name.as_str().to_owned(),
            size: file.size,
            source: file.origin.kind().to_owned(),
            path,
            loaded: file.origin.loaded().map(rfc3339),
            reads: file.reads,
        }
    }
}

/// `upload-get`: the line before the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadHeader {
    /// The upload's name, as stored.
    pub name: String,
    /// The bytes that follow the line.
    pub size: u64,
}

/// `upload-drop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The upload removed.
    pub dropped: String,
}

/// `log-level`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevel {
    /// The level now.
    pub log_level: String,
    /// The level before.
    pub was: String,
}

/// `reload`, when it took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Files stored after it.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The store's generation after it.
    pub generation: Option<u64>,
    /// Names added by it, where the store can say (`null` otherwise).
    pub added: Option<Vec<String>>,
    /// Names whose content changed, where the store can say.
    pub changed: Option<Vec<String>>,
    /// Names removed, where the store can say.
    pub removed: Option<Vec<String>>,
}

/// `metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// The Prometheus text exposition (version 0.0.4).
    pub metrics: String,
}
