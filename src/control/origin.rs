//! What the daemon shows of the content `tftpd sync` pulls from an origin, when the
//! configuration has an `[origin]` table: the generation the daemon serves (what
//! `<cache>/current` pointed at when it last loaded its preseed) and what the sync's last
//! rounds did (its `<cache>/status.json`). Neither is read here: the daemon's loads record
//! the first and the event loop looks at the second once a second, and both meet
//! in an [`OriginCell`] that the loop copies a [`OriginView`] from for `STATUS=`, `status`
//! and the metrics.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::origin::status::{Rounds, SyncStatus, from_unix_ms};
use crate::timestamp::rfc3339;

/// Hex digits of a generation `STATUS=` shows (the JSON and the metrics show it whole).
pub const SHORT_GENERATION: usize = 12;

/// The origin as the daemon knows it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginView {
    /// The sync's cache (`origin.cache`).
    pub cache: PathBuf,
    /// The generation served: `<cache>/current` when the preseed was last loaded, if it
    /// pointed at one then (and the preseed names `<cache>/current`).
    pub served: Option<String>,
    /// The sync's status file as last read, if there is one.
    pub sync: Option<SyncStatus>,
    /// Why the status file could not be read, if it could not.
    pub sync_error: Option<String>,
}

impl OriginView {
    /// The part of `STATUS=` about the origin: the generation served and when the sync
    /// last succeeded, and what is wrong if something is.
    pub fn status_line(&self) -> String {
        let mut line = match &self.served {
            Some(generation) => format!(
                "origin generation {}",
                &generation[..generation.len().min(SHORT_GENERATION)]
            ),
            None => "origin: no generation served".to_owned(),
        };
        match (&self.sync, &self.sync_error) {
            (_, Some(e)) => line.push_str(&format!(", sync status unreadable: {e}")),
            (None, None) => line.push_str(", no sync yet"),
            (Some(sync), None) => {
                match sync.last_success_ms {
                    Some(ms) => line.push_str(&format!(", synced {}", rfc3339(from_unix_ms(ms)))),
                    None => line.push_str(", never synced"),
                }
                if let Some(error) = &sync.last_error {
                    line.push_str(&format!(
                        ", {} failed round(s) since ({})",
                        sync.consecutive_failures, error.kind
                    ));
                }
                if let Some(synced) = &sync.generation
                    && self.served.as_ref() != Some(synced)
                {
                    line.push_str(&format!(
                        ", cache at {} not loaded yet",
                        &synced[..synced.len().min(SHORT_GENERATION)]
                    ));
                }
            }
        }
        line
    }
}

/// An [`OriginView`] shared between the threads that fill it and the loop that reads it;
/// each access holds its lock for a copy, never for I/O.
#[derive(Debug)]
pub struct OriginCell(Mutex<OriginView>);

impl OriginCell {
    /// Nothing known yet of the cache at `cache`.
    pub fn new(cache: PathBuf) -> OriginCell {
        OriginCell(Mutex::new(OriginView {
            cache,
            served: None,
            sync: None,
            sync_error: None,
        }))
    }

    /// Notes the generation a load of the preseed found (`None`: none, or not known).
    pub fn set_served(&self, generation: Option<String>) {
        self.lock().served = generation;
    }

    /// Notes the status file as read; true when it differs from what was noted before.
    pub fn set_sync(&self, read: Result<Option<SyncStatus>, String>) -> bool {
        let mut view = self.lock();
        let (sync, error) = match read {
            Ok(sync) => (sync, None),
            // What was read before stays: the figures are still the last known ones.
            Err(e) => (view.sync.clone(), Some(e)),
        };
        let changed = view.sync != sync || view.sync_error != error;
        view.sync = sync;
        view.sync_error = error;
        changed
    }

    /// A copy of what is known now.
    pub fn view(&self) -> OriginView {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OriginView> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `status`'s `origin` object (`null` without an `[origin]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginReport {
    /// The sync's cache.
    pub cache: String,
    /// The generation served (what `<cache>/current` was at the last load).
    pub generation: Option<String>,
    /// The generation the sync's last round left `<cache>/current` at; differs from
    /// `generation` until the daemon has loaded it.
    pub synced_generation: Option<String>,
    /// When the last round that succeeded ended.
    pub last_success: Option<String>,
    /// When the last round ended.
    pub last_round: Option<String>,
    /// How it ended: `switched`, `unchanged` or `failed`.
    pub last_result: Option<String>,
    /// Why it failed: `kind: message`.
    pub last_error: Option<String>,
    /// When the sync last switched to a new generation.
    pub last_switch: Option<String>,
    /// Rounds failed since the last success.
    pub consecutive_failures: u64,
    /// Rounds recorded in the status file, by result.
    pub rounds: Rounds,
    /// Why the status file could not be read, if it could not.
    pub status_error: Option<String>,
}

impl OriginReport {
    /// The report of `view`.
    pub fn of(view: &OriginView) -> OriginReport {
        let sync = view.sync.as_ref();
        let time = |ms: Option<u64>| ms.map(|ms| rfc3339(from_unix_ms(ms)));
        OriginReport {
            cache: view.cache.display().to_string(),
            generation: view.served.clone(),
            synced_generation: sync.and_then(|s| s.generation.clone()),
            last_success: time(sync.and_then(|s| s.last_success_ms)),
            last_round: time(sync.map(|s| s.last_round_ms)),
            last_result: sync.map(|s| s.last_result.as_str().to_owned()),
            last_error: (sync.and_then(|s| s.last_error.as_ref()))
                .map(|e| format!("{}: {}", e.kind, e.message)),
            last_switch: time(sync.and_then(|s| s.last_switch_ms)),
            consecutive_failures: sync.map_or(0, |s| s.consecutive_failures),
            rounds: sync.map(|s| s.rounds).unwrap_or_default(),
            status_error: view.sync_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::error::OriginError;
    use crate::origin::round::RoundOutcome;
    use std::time::{Duration, UNIX_EPOCH};

    fn view(served: Option<&str>, sync: Option<SyncStatus>) -> OriginView {
        OriginView {
            cache: PathBuf::from("/var/cache/tftpd"),
            served: served.map(str::to_owned),
            sync,
            sync_error: None,
        }
    }

    #[test]
    fn the_status_line_names_the_generation_the_last_sync_and_what_is_wrong() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            view(None, None).status_line(),
            "origin: no generation served, no sync yet"
        );
        let at = UNIX_EPOCH + Duration::from_secs(1_796_135_126);
        let switched = Ok(RoundOutcome::Switched {
            generation: a.clone(),
            previous: None,
            objects_fetched: 1,
            bytes_fetched: 1,
            objects_pruned: 0,
        });
        let synced = SyncStatus::after(None, "u", &switched, Some(a.clone()), at);
        assert_eq!(
            view(Some(&a), Some(synced.clone())).status_line(),
            "origin generation aaaaaaaaaaaa, synced 2026-12-01T14:25:26.000Z"
        );
        let failed = Err(OriginError::Config("x".into()));
        let later = at + Duration::from_secs(60);
        let failing = SyncStatus::after(Some(&synced), "u", &failed, Some(b.clone()), later);
        assert_eq!(
            view(Some(&a), Some(failing)).status_line(),
            "origin generation aaaaaaaaaaaa, synced 2026-12-01T14:25:26.000Z, 1 failed round(s) \
             since (config), cache at bbbbbbbbbbbb not loaded yet"
        );
    }

    #[test]
    fn an_unreadable_status_file_keeps_the_last_figures_and_says_why() {
        let cell = OriginCell::new(PathBuf::from("/c"));
        let status = SyncStatus::after(
            None,
            "u",
            &Ok(RoundOutcome::Unchanged {
                generation: "a".repeat(64),
            }),
            None,
            UNIX_EPOCH,
        );
        assert!(cell.set_sync(Ok(Some(status.clone()))));
        assert!(!cell.set_sync(Ok(Some(status.clone()))));
        assert!(cell.set_sync(Err("bad".into())));
        let seen = cell.view();
        assert_eq!(seen.sync, Some(status));
        let report = OriginReport::of(&seen);
        assert_eq!(report.status_error.as_deref(), Some("bad"));
        assert_eq!(report.last_result.as_deref(), Some("unchanged"));
        assert_eq!(
            report.last_success.as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
    }
}
