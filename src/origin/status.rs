//! `<cache>/status.json`: what the sync's rounds did, for the daemon to show. `tftpd sync`
//! rewrites it after every round it runs, under the cache's lock and by rename(2), so a
//! reader finds the whole file of one round or of the one before. The daemon (which never
//! talks to the origin itself) reads it for `STATUS=`, `tftpd ctl status` and the metrics.
//!
//! The figures are carried over from the file before, so they survive the sync's
//! restarts (a `tftpd-sync.timer` starts a new process every round): the round counters
//! only grow, and start again from zero only if the file is removed with the cache.
//! Times are milliseconds since the Unix epoch. The fields are listed in tftpd(8).

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{OriginError, io_error};
use super::publish::write_atomically;
use super::round::RoundOutcome;

/// The status file's name in the cache.
pub const STATUS_FILE: &str = "status.json";

/// The file's format version.
pub const STATUS_VERSION: u32 = 1;

/// The longest status file read (a real one is a few hundred bytes).
pub const MAX_STATUS_BYTES: u64 = 64 * 1024;

/// How a round ended, as the file and the metrics' `result` label say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundResult {
    /// `current` now points at the origin's new generation.
    Switched,
    /// The origin's generation was already served.
    Unchanged,
    /// The round failed; `current` stayed as it was.
    Failed,
}

impl RoundResult {
    /// Every result, in the metrics' order.
    pub const ALL: [RoundResult; 3] = [
        RoundResult::Switched,
        RoundResult::Unchanged,
        RoundResult::Failed,
    ];

    /// The word in the file and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundResult::Switched => "switched",
            RoundResult::Unchanged => "unchanged",
            RoundResult::Failed => "failed",
        }
    }
}

/// Rounds run since the file was created, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rounds {
    /// Rounds that switched `current`.
    pub switched: u64,
    /// Rounds that found the origin's generation served.
    pub unchanged: u64,
    /// Rounds that failed.
    pub failed: u64,
}

impl Rounds {
    /// The count of `result`.
    pub fn of(&self, result: RoundResult) -> u64 {
        match result {
            RoundResult::Switched => self.switched,
            RoundResult::Unchanged => self.unchanged,
            RoundResult::Failed => self.failed,
        }
    }
}

/// The content of `<cache>/status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// The generation `<cache>/current` points at after the last round (`null` before
    /// the first successful one).
    pub generation: Option<String>,
    /// The manifest's URL the last round asked.
    pub url: String,
    /// When the last round ended.
    pub last_round_ms: u64,
    /// How it ended.
    pub last_result: RoundResult,
    /// Why it failed: the short kind (`TFTP_ORIGIN_ERROR=`) and the message.
    pub last_error: Option<RoundError>,
    /// When the last round that succeeded (switched or unchanged) ended.
    pub last_success_ms: Option<u64>,
    /// When `current` was last switched to a new generation.
    pub last_switch_ms: Option<u64>,
    /// What the last switch downloaded: objects and bytes.
    pub last_switch_objects: u64,
    /// Bytes of those objects.
    pub last_switch_bytes: u64,
    /// Rounds that failed since the last success (0 after one).
    pub consecutive_failures: u64,
    /// Every round recorded in this file, by result.
    pub rounds: Rounds,
}

/// A failed round's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundError {
    /// The short stable word of [`OriginError::kind`].
    pub kind: String,
    /// The error's message.
    pub message: String,
}

impl SyncStatus {
    /// The status after a round that ended at `at` with `outcome`, `current` then pointing
    /// at `generation`, carried over from `before` (the file as it was).
    pub fn after(
        before: Option<&SyncStatus>,
        url: &str,
        outcome: &Result<RoundOutcome, OriginError>,
        generation: Option<String>,
        at: SystemTime,
    ) -> SyncStatus {
        let at_ms = unix_ms(at);
        let mut status = match before {
            Some(before) => before.clone(),
            None => SyncStatus {
                version: STATUS_VERSION,
                generation: None,
                url: String::new(),
                last_round_ms: 0,
                last_result: RoundResult::Unchanged,
                last_error: None,
                last_success_ms: None,
                last_switch_ms: None,
                last_switch_objects: 0,
                last_switch_bytes: 0,
                consecutive_failures: 0,
                rounds: Rounds::default(),
            },
        };
        status.version = STATUS_VERSION;
        status.generation = generation;
        url.clone_into(&mut status.url);
        status.last_round_ms = at_ms;
        status.last_error = None;
        match outcome {
            Ok(RoundOutcome::Unchanged { .. }) => {
                status.last_result = RoundResult::Unchanged;
                status.rounds.unchanged += 1;
            }
            Ok(RoundOutcome::Switched {
                objects_fetched,
                bytes_fetched,
                ..
            }) => {
                status.last_result = RoundResult::Switched;
                status.rounds.switched += 1;
                status.last_switch_ms = Some(at_ms);
                status.last_switch_objects = *objects_fetched as u64;
                status.last_switch_bytes = *bytes_fetched;
            }
            Err(e) => {
                status.last_result = RoundResult::Failed;
                status.rounds.failed += 1;
                status.consecutive_failures += 1;
                status.last_error = Some(RoundError {
                    kind: e.kind().to_owned(),
                    message: e.to_string(),
                });
            }
        }
        if outcome.is_ok() {
            status.last_success_ms = Some(at_ms);
            status.consecutive_failures = 0;
        }
        status
    }

    /// Reads the status file of the cache at `cache`: `Ok(None)` when there is none (no
    /// round has run yet).
    ///
    /// # Errors
    ///
    /// Why the file is there but cannot be used (unreadable, too long, not this format).
    pub fn read(cache: &Path) -> Result<Option<SyncStatus>, String> {
        let path = cache.join(STATUS_FILE);
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut text = Vec::new();
        file.take(MAX_STATUS_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if text.len() as u64 > MAX_STATUS_BYTES {
            return Err(format!(
                "{} is longer than {MAX_STATUS_BYTES} bytes",
                path.display()
            ));
        }
        let status: SyncStatus = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a sync status: {e}", path.display()))?;
        if status.version != STATUS_VERSION {
            return Err(format!(
                "{} has version {}, this tftpd reads {STATUS_VERSION}",
                path.display(),
                status.version
            ));
        }
        Ok(Some(status))
    }

    /// Writes the status file of the cache at `cache`, atomically.
    ///
    /// # Errors
    ///
    /// [`OriginError::Io`] when it cannot be written.
    pub fn write(&self, cache: &Path) -> Result<(), OriginError> {
        let path = cache.join(STATUS_FILE);
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| io_error("write", &path)(std::io::Error::other(e)))?;
        text.push(b'\n');
        write_atomically(&path, &text)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::fetch::{FetchError, FetchFailure};
    use std::time::Duration;

    fn switched(objects: usize, bytes: u64) -> Result<RoundOutcome, OriginError> {
        Ok(RoundOutcome::Switched {
            generation: "b".repeat(64),
            previous: None,
            objects_fetched: objects,
            bytes_fetched: bytes,
            objects_pruned: 0,
        })
    }

    fn failed() -> Result<RoundOutcome, OriginError> {
        Err(OriginError::Config("no credential".into()))
    }

    #[test]
    fn each_round_is_recorded_and_a_failure_keeps_the_last_success() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let url = "http://origin/manifest.json";
        let gen_b = Some("b".repeat(64));
        let first = SyncStatus::after(None, url, &switched(3, 300), gen_b.clone(), t(100));
        assert_eq!(first.last_result, RoundResult::Switched);
        assert_eq!(first.last_success_ms, Some(100_000));
        assert_eq!(first.last_switch_ms, Some(100_000));
        assert_eq!(
            (first.last_switch_objects, first.last_switch_bytes),
            (3, 300)
        );

        let second = SyncStatus::after(Some(&first), url, &failed(), gen_b.clone(), t(160));
        let third = SyncStatus::after(Some(&second), url, &failed(), gen_b.clone(), t(220));
        assert_eq!(third.last_result, RoundResult::Failed);
        assert_eq!(third.consecutive_failures, 2);
        assert_eq!(third.last_success_ms, Some(100_000));
        assert_eq!(third.last_round_ms, 220_000);
        let error = third.last_error.as_ref().expect("the reason");
        assert_eq!(error.kind, "config");
        assert_eq!(error.message, "no credential");
        assert_eq!(third.generation, gen_b);

        let unchanged = Ok(RoundOutcome::Unchanged {
            generation: "b".repeat(64),
        });
        let fourth = SyncStatus::after(Some(&third), url, &unchanged, gen_b, t(280));
        assert_eq!(fourth.consecutive_failures, 0);
        assert_eq!(fourth.last_error, None);
        assert_eq!(fourth.last_success_ms, Some(280_000));
        // The switch's figures stay those of the last switch.
        assert_eq!(fourth.last_switch_ms, Some(100_000));
        assert_eq!(fourth.last_switch_objects, 3);
        assert_eq!(
            fourth.rounds,
            Rounds {
                switched: 1,
                unchanged: 1,
                failed: 2
            }
        );
    }

    #[test]
    fn the_file_reads_back_and_a_bad_one_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SyncStatus::read(dir.path()), Ok(None));
        let fetch = Err(OriginError::Fetch(FetchError {
            url: "http://origin/manifest.json".into(),
            failure: FetchFailure::Status(503),
        }));
        let status = SyncStatus::after(None, "u", &fetch, None, SystemTime::now());
        status.write(dir.path()).unwrap();
        assert_eq!(SyncStatus::read(dir.path()), Ok(Some(status)));
        let path = dir.path().join(STATUS_FILE);
        for junk in [&b"{\"version\":1"[..], b"[]", b"\xff\xfe", b""] {
            fs::write(&path, junk).unwrap();
            assert!(SyncStatus::read(dir.path()).is_err(), "{junk:?}");
        }
        fs::write(&path, vec![b' '; MAX_STATUS_BYTES as usize + 1]).unwrap();
        let long = SyncStatus::read(dir.path()).unwrap_err();
        assert!(long.contains("longer than"), "{long}");
        let text = serde_json::to_string(&SyncStatus {
            version: 2,
            ..SyncStatus::after(None, "u", &failed(), None, SystemTime::now())
        })
        .unwrap();
        fs::write(&path, text).unwrap();
        let newer = SyncStatus::read(dir.path()).unwrap_err();
        assert!(newer.contains("version 2"), "{newer}");
    }
}
