//! The control protocol, without sockets: what `tftpd ctl` asks the daemon over its Unix
//! control socket and what the daemon answers, and the handling of each command.
//!
//! # Wire format (version 1)
//!
//! JSON lines. A client sends one request per line, at most [`MAX_REQUEST`] bytes with
//! its newline: `{"version":1,"command":"status"}`, with the command's arguments beside
//! it (`"prefix"` for `files`, `"name"` for `upload-get`/`upload-drop`, `"level"` for
//! `log-level`). The daemon answers each with one line, `{"version":1,"ok":true,
//! "result":{...}}` or `{"version":1,"ok":false,"error":"REASON"}` (and `"refused":true`
//! for a reload the daemon refused). Fields a daemon does not know are ignored, so a
//! newer client's optional fields do no harm. An `upload-get` answer is followed by exactly
//! `result.size` raw bytes: the file. The commands and the fields of each result are
//! listed in tftpd(8) (the JSON schema of `tftpd ctl --json`, which prints the answer
//! line as it came). A request of another `version` is answered with an error naming
//! the versions this daemon speaks.
//!
//! By concern: this module holds the requests, the answers and [`handle`]; `report` the
//! result types; `metrics` the Prometheus text; `table` the tables `tftpd ctl` prints;
//! `origin` what the daemon knows of the sync from an origin.
//! The driver owns the socket (`driver/control_socket.rs`): it reads a line, calls
//! [`handle`] with a [`View`] of the server, and writes the [`Answer`]; a reload is
//! answered once it is over ([`reload_answer`]).

pub mod metrics;
pub mod origin;
pub mod report;
pub mod table;

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::endpoint::Counters;
use crate::name::normalize_name;
use crate::store::{Origin, Store, StoreChanges};
use crate::transfer::Progress;
pub use origin::{OriginCell, OriginReport, OriginView};
pub use report::{
    FileEntry, FilesReport, ReloadReport, ServerInfo, StatusReport, TransferEntry, UploadHeader,
};

/// The protocol version this daemon speaks.
pub const VERSION: u32 = 1;

/// The longest request line accepted, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The most files one `files` or `uploads` answer lists (the answer says it was cut);
/// a prefix narrows the list.
pub const MAX_LISTED: usize = 10_000;

/// A request: the version and the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version the client speaks.
    pub version: u32,
    /// What it asks.
    #[serde(flatten)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Version, uptime, store, transfers, counters, last reload.
    Status,
    /// Every transfer in flight.
    Transfers,
    /// The stored files whose names start with `prefix`.
    Files {
        /// A name prefix; all files without one.
        #[serde(default)]
        prefix: Option<String>,
    },
    /// The uploaded files.
    Uploads,
    /// An upload's bytes.
    UploadGet {
        /// The upload's name.
        name: String,
    },
    /// Removes an upload.
    UploadDrop {
        /// The upload's name.
        name: String,
    },
    /// Sets the most verbose level logged, at once.
    LogLevel {
        /// `error`, `warn`, `info`, `debug`, `trace` (or `off`).
        level: String,
    },
    /// Reloads as SIGHUP does, answering once the reload is over.
    Reload,
    /// The Prometheus text exposition.
    Metrics,
}

impl Request {
    /// A request of this protocol version.
    pub fn new(command: Command) -> Request {
        Request {
            version: VERSION,
            command,
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// An answer: one line, and for `upload-get` the file after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The JSON line, newline included.
    pub line: Vec<u8>,
    /// Raw bytes that follow the line.
    pub body: Option<Bytes>,
}

impl Answer {
    /// A successful answer carrying `result`.
    pub fn ok(result: &impl Serialize) -> Answer {
        #[derive(Serialize)]
        struct Ok<'a, T> {
            version: u32,
            ok: bool,
            result: &'a T,
        }
        Answer::of(&Ok {
            version: VERSION,
            ok: true,
            result,
        })
    }

    /// A failed answer.
    pub fn error(reason: &str) -> Answer {
        Answer::failed(reason, false)
    }

    /// A failed answer; `refused` marks a reload that kept the running configuration.
    fn failed(reason: &str, refused: bool) -> Answer {
        #[derive(Serialize)]
        struct Error<'a> {
            version: u32,
            ok: bool,
            error: &'a str,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            refused: bool,
        }
        Answer::of(&Error {
            version: VERSION,
            ok: false,
            error: reason,
            refused,
        })
    }

    fn of(value: &impl Serialize) -> Answer {
        let mut line = serde_json::to_vec(value).unwrap_or_default();
        line.push(b'\n');
        Answer { line, body: None }
    }
}

/// What the daemon knows beyond the endpoint and the store: when it started, its
/// reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// When the server began (monotonic, for the uptime).
    pub started: Instant,
    /// The same instant on the wall clock.
    pub started_wall: SystemTime,
    /// Reloads that took effect.
    pub reloads_ok: u64,
    /// Reloads refused (the running configuration stayed).
    pub reloads_failed: u64,
    /// The last reload: when it ended, and its error if it was refused.
    pub last_reload: Option<(SystemTime, Result<(), String>)>,
}

impl DaemonInfo {
    /// A daemon started at `started` (`started_wall` on the wall clock).
    pub fn new(started: Instant, started_wall: SystemTime) -> DaemonInfo {
        DaemonInfo {
            started,
            started_wall,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload: None,
        }
    }

    /// Notes a reload that ended at `at`.
    pub fn reloaded(&mut self, at: SystemTime, result: Result<(), String>) {
        match result {
            Ok(()) => self.reloads_ok += 1,
            Err(_) => self.reloads_failed += 1,
        }
        self.last_reload = Some((at, result));
    }
}

/// The server as a command sees it.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The endpoint's figures.
    pub counters: &'a Counters,
    /// The transfers in flight.
    pub transfers: &'a [Progress],
    /// The store.
    pub store: &'a Store,
    /// Start and reloads.
    pub daemon: &'a DaemonInfo,
    /// The origin's generation and sync, when the configuration has an `[origin]`.
    pub origin: Option<&'a OriginView>,
    /// Now, on the monotonic clock.
    pub now: Instant,
    /// Now, on the wall clock.
    pub wall: SystemTime,
}

/// What the driver does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send this.
    Answer(Answer),
    /// Begin a reload (or join the one running) and answer with [`reload_answer`] when
    /// it is over.
    Reload,
}

/// Parses a request line (without its newline), or says why it cannot be read.
pub fn parse(line: &[u8]) -> Result<Request, String> {
    #[derive(Deserialize)]
    struct Versioned {
        version: Option<u32>,
    }
    let versioned: Versioned =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON request: {e}"))?;
    match versioned.version {
        Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "protocol version {other} is not spoken here (this daemon speaks {VERSION})"
            ));
        }
        None => return Err("the request has no \"version\"".to_owned()),
    }
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

/// Answers a request line (without its newline).
pub fn handle(line: &[u8], view: &View<'_>) -> Reply {
    let request = match parse(line) {
        Ok(request) => request,
        Err(reason) => return Reply::Answer(Answer::error(&reason)),
    };
    let answer = match request.command {
        Command::Status => Answer::ok(&StatusReport::of(view)),
        Command::Transfers => {
            let transfers: Vec<TransferEntry> = (view.transfers.iter())
                .map(|p| TransferEntry::of(p, view.now))
                .collect();
            Answer::ok(&report::TransfersReport { transfers })
        }
        Command::Files { prefix } => files(view.store, prefix.as_deref().unwrap_or(""), false),
        Command::Uploads => files(view.store, "", true),
        Command::UploadGet { name } => match upload(view.store, &name) {
            Ok((name, data)) => {
                let header = UploadHeader {
                    name,
                    size: data.len() as u64,
                };
                Answer {
                    body: Some(data),
                    ..Answer::ok(&header)
                }
            }
            Err(reason) => Answer::error(&reason),
        },
        Command::UploadDrop { name } => match normalize_name(&name) {
            Ok(file) if view.store.drop_upload(&file) => {
                log::info!(message_id = crate::logs::ids::UPLOAD_DROPPED; "upload {file} dropped by the control socket");
                Answer::ok(&report::Dropped {
                    dropped: file.as_str().to_owned(),
                })
            }
            Ok(file) => Answer::error(&format!("no upload named {file}")),
            Err(e) => Answer::error(&format!("bad name {name:?}: {e}")),
        },
        Command::LogLevel { level } => match level.parse::<log::LevelFilter>() {
            Ok(new) => {
                let was = log::max_level();
                log::set_max_level(new);
                log::info!("log level set to {new} (was {was}) until the next reload");
                Answer::ok(&report::LogLevel {
                    log_level: new.to_string().to_ascii_lowercase(),
                    was: was.to_string().to_ascii_lowercase(),
                })
            }
            Err(_) => Answer::error(&format!(
                "unknown log level {level:?}: use error, warn, info, debug, trace or off"
            )),
        },
        Command::Reload => return Reply::Reload,
        Command::Metrics => Answer::ok(&report::Metrics {
            metrics: metrics::render(view),
        }),
    };
    Reply::Answer(answer)
}

/// The answer to a reload that ended with `result` (what it changed, or why it was
/// refused); `counters` are the figures after it.
pub fn reload_answer(result: Result<&StoreChanges, String>, counters: &Counters) -> Answer {
    let names = |names: &[crate::name::FileName]| {
        Some(names.iter().map(|n| n.as_str().to_owned()).collect())
    };
    match result {
        Ok(changes) => Answer::ok(&ReloadReport {
            files: counters.files,
            bytes: counters.bytes,
            generation: Some(changes.generation),
            added: names(&changes.added),
            changed: names(&changes.changed),
            removed: names(&changes.removed),
        }),
        Err(reason) => Answer::failed(&reason, true),
    }
}

fn files(store: &Store, prefix: &str, uploads_only: bool) -> Answer {
    // One more than listed, to tell whether the list was cut.
    let mut listed = store.files(
        prefix,
        if uploads_only {
            usize::MAX
        } else {
            MAX_LISTED + 1
        },
    );
    if uploads_only {
        listed.retain(|f| matches!(f.origin, Origin::Upload { .. }));
    }
    let truncated = listed.len() > MAX_LISTED;
    listed.truncate(MAX_LISTED);
    Answer::ok(&FilesReport {
        files: listed.iter().map(FileEntry::of).collect(),
        truncated,
    })
}

fn upload(store: &Store, name: &str) -> Result<(String, Bytes), String> {
    let file = normalize_name(name).map_err(|e| format!("bad name {name:?}: {e}"))?;
    let data = store
        .upload(&file)
        .ok_or_else(|| format!("no upload named {file}"))?;
    Ok((file.as_str().to_owned(), data))
}

#[cfg(test)]
mod tests;
