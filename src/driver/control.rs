//! How the driver is steered and what it reports: the [`Supervisor`] it reports to, the
//! [`ServerHandle`] and commands that steer it from other threads, and the reload thread,
//! which runs the [`Reloader`] for a reload (SIGHUP) and for a rescan (the watch saw the
//! preseeded files change), one at a time.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use super::Server;
use super::poller::Waker;
use crate::config::ConfigError;
use crate::endpoint::{Counters, Settings};
use crate::logs::ids;
use crate::store::{StoreChanges, StoreError};

/// Who the driver reports to: systemd in the daemon, a recorder in tests.
pub trait Supervisor {
    /// The server took its sockets and is serving (or serving again after a reload).
    fn ready(&mut self, counters: &Counters);
    /// The figures changed (called at most once a second).
    fn status(&mut self, counters: &Counters);
    /// A reload began.
    fn reloading(&mut self);
    /// A reload ended: what it changed in the store, or on error why the running
    /// configuration stays.
    fn reloaded(&mut self, result: &Result<StoreChanges, ReloadError>, counters: &Counters);
    /// A rescan (the watch saw the preseeded files change) ended: what it changed, or why
    /// the store stays as it was. Rescans can come many times a second: the new figures
    /// follow through [`status`](Self::status), at most once a second.
    fn rescanned(&mut self, result: &Result<StoreChanges, ReloadError>, counters: &Counters) {
        let _ = (result, counters);
    }
    /// A stop began.
    fn stopping(&mut self);
    /// How often to call [`watchdog`](Self::watchdog), if at all.
    fn watchdog_interval(&self) -> Option<Duration>;
    /// The loop is alive.
    fn watchdog(&mut self);
}

/// Why a reload kept the running configuration.
#[derive(Debug)]
pub enum ReloadError {
    /// The configuration file is missing or invalid.
    Config(ConfigError),
    /// A preseed source could not be loaded.
    Preseed(StoreError),
    /// The reload thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Config(e) => e.fmt(f),
            ReloadError::Preseed(e) => write!(f, "preseed: {e}"),
            ReloadError::Thread(e) => write!(f, "cannot start the reload: {e}"),
        }
    }
}

impl std::error::Error for ReloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReloadError::Config(e) => Some(e),
            ReloadError::Preseed(e) => Some(e),
            ReloadError::Thread(e) => Some(e),
        }
    }
}

/// Why the [`Reloader`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadCause {
    /// SIGHUP or [`ServerHandle::reload`]: re-read the configuration and the preseed.
    Reload,
    /// [`ServerHandle::rescan`] (the watch saw a change): load the preseed again with the
    /// running configuration.
    Rescan,
}

/// What a [`Reloader`] did: the settings to serve with from now on, and what changed in the
/// store.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The endpoint's new settings (the running ones for a rescan).
    pub settings: Settings,
    /// What the store's swap added, changed and removed, and its generation after.
    pub changes: StoreChanges,
}

/// Re-reads the configuration (for [`ReloadCause::Reload`]), loads the preseed again, swaps
/// the store's preseeded files and returns the settings; runs on a thread of its own so
/// transfers go on meanwhile.
pub type Reloader = Arc<dyn Fn(ReloadCause) -> Result<Reloaded, ReloadError> + Send + Sync>;

/// Commands for a running server.
#[derive(Debug)]
pub(super) enum Command {
    Reload(ReloadCause),
    Shutdown,
    /// The reload thread is done.
    Reloaded(ReloadCause, Result<Reloaded, ReloadError>),
    /// The spool writer is done with an upload.
    Committed(super::writer::Committed),
}

/// Asks a running server to reload or stop, from any thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) waker: Arc<Waker>,
}

impl ServerHandle {
    /// Stops taking requests and ends once transfers finish (or the grace runs out).
    pub fn shutdown(&self) {
        self.send(Command::Shutdown);
    }

    /// Reloads as SIGHUP does.
    pub fn reload(&self) {
        self.send(Command::Reload(ReloadCause::Reload));
    }

    /// Loads the preseed again with the running configuration (what the watch asks for);
    /// asked while a reload or rescan runs, it runs once more after it.
    pub fn rescan(&self) {
        self.send(Command::Reload(ReloadCause::Rescan));
    }

    pub(super) fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Reloads run on a thread of their own, one at a time; the result comes back as a command.
/// A reload asked for while one runs runs after it; so does a rescan, unless a reload
/// (which loads the preseed too) is to run anyway.
impl Server {
    pub(super) fn begin_reload(&mut self, supervisor: &mut dyn Supervisor, cause: ReloadCause) {
        if self.endpoint.is_stopping() {
            return;
        }
        if self.reload_running {
            match cause {
                ReloadCause::Reload => self.reload_again = true,
                ReloadCause::Rescan => self.rescan_again = true,
            }
            return;
        }
        if cause == ReloadCause::Reload {
            supervisor.reloading();
        }
        self.reload_running = true;
        let handle = self.handle.clone();
        let reloader = self.reloader.clone();
        let settings = self.endpoint.settings().clone();
        let generation = self.store.generation();
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                let result = match reloader {
                    Some(reload) => reload(cause),
                    None => Ok(Reloaded {
                        settings,
                        changes: StoreChanges {
                            generation,
                            ..StoreChanges::default()
                        },
                    }),
                };
                handle.send(Command::Reloaded(cause, result));
            });
        if let Err(e) = spawned {
            self.end_reload(supervisor, cause, Err(ReloadError::Thread(e)));
        }
    }

    pub(super) fn end_reload(
        &mut self,
        supervisor: &mut dyn Supervisor,
        cause: ReloadCause,
        result: Result<Reloaded, ReloadError>,
    ) {
        self.reload_running = false;
        // The load read the watch's queued events itself.
        if let Some(watch) = &mut self.watch {
            watch.refresh();
        }
        let outcome = result.map(|Reloaded { settings, changes }| {
            if settings.single_port != self.endpoint.settings().single_port {
                log::warn!("single-port changes take effect at the next restart");
            }
            self.endpoint.apply_settings(settings);
            changes
        });
        log_reload(cause, &outcome);
        let counters = self.endpoint.counters();
        match cause {
            ReloadCause::Reload => supervisor.reloaded(&outcome, &counters),
            ReloadCause::Rescan => {
                self.status_stale = true;
                supervisor.rescanned(&outcome, &counters);
            }
        }
        self.control_reloaded(cause, &outcome, std::time::Instant::now());
        if std::mem::take(&mut self.reload_again) {
            self.rescan_again = false;
            self.begin_reload(supervisor, ReloadCause::Reload);
        } else if std::mem::take(&mut self.rescan_again) {
            self.begin_reload(supervisor, ReloadCause::Rescan);
        }
    }
}

/// The log line of a reload or a rescan, with the generation as a journal field
/// (`TFTP_GENERATION=`). A rescan that changed nothing is logged at debug level only.
fn log_reload(cause: ReloadCause, outcome: &Result<StoreChanges, ReloadError>) {
    match (cause, outcome) {
        (ReloadCause::Reload, Ok(changes)) => log::info!(
            message_id = ids::RELOADED,
            tftp_generation = changes.generation;
            "configuration reloaded: {changes}; generation {}",
            changes.generation
        ),
        (ReloadCause::Rescan, Ok(changes)) => log::log!(
            if changes.is_empty() { log::Level::Debug } else { log::Level::Info },
            tftp_generation = changes.generation;
            "preseed changed on disk: {changes}; generation {}",
            changes.generation
        ),
        (ReloadCause::Reload, Err(reason)) => log::error!(
            message_id = ids::RELOAD_FAILED;
            "reload failed, the running configuration stays: {reason}"
        ),
        (ReloadCause::Rescan, Err(reason)) => log::error!(
            message_id = ids::RELOAD_FAILED;
            "loading the changed preseed failed, the store stays as it was: {reason}"
        ),
    }
}
