//! How the driver is steered and what it reports: the [`Supervisor`] it reports to, the
//! [`ServerHandle`] and commands that steer it from other threads, and the reload thread.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use super::Server;
use super::poller::Waker;
use crate::config::ConfigError;
use crate::endpoint::{Counters, Settings};
use crate::store::StoreError;

/// Who the driver reports to: systemd in the daemon, a recorder in tests.
pub trait Supervisor {
    /// The server took its sockets and is serving (or serving again after a reload).
    fn ready(&mut self, counters: &Counters);
    /// The figures changed (called at most once a second).
    fn status(&mut self, counters: &Counters);
    /// A reload began.
    fn reloading(&mut self);
    /// A reload ended; on error the running configuration stays.
    fn reloaded(&mut self, result: &Result<(), ReloadError>, counters: &Counters);
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

/// Re-reads the configuration, swaps the store's preseeded files and returns the new
/// settings; runs on a thread of its own so transfers go on meanwhile.
pub type Reloader = Arc<dyn Fn() -> Result<Settings, ReloadError> + Send + Sync>;

/// Commands for a running server.
#[derive(Debug)]
pub(super) enum Command {
    Reload,
    Shutdown,
    /// The reload thread is done.
    Reloaded(Result<Settings, ReloadError>),
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
        self.send(Command::Reload);
    }

    pub(super) fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Reloads run on a thread of their own; the result comes back as a command.
impl Server {
    pub(super) fn begin_reload(&mut self, supervisor: &mut dyn Supervisor) {
        if self.endpoint.is_stopping() {
            return;
        }
        if self.reload_running {
            self.reload_again = true;
            return;
        }
        supervisor.reloading();
        self.reload_running = true;
        let handle = self.handle.clone();
        let reloader = self.reloader.clone();
        let settings = self.endpoint.settings().clone();
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                let result = match reloader {
                    Some(reload) => reload(),
                    None => Ok(settings),
                };
                handle.send(Command::Reloaded(result));
            });
        if let Err(e) = spawned {
            self.end_reload(supervisor, Err(ReloadError::Thread(e)));
        }
    }

    pub(super) fn end_reload(
        &mut self,
        supervisor: &mut dyn Supervisor,
        result: Result<Settings, ReloadError>,
    ) {
        self.reload_running = false;
        let outcome = result.map(|settings| {
            if settings.single_port != self.endpoint.settings().single_port {
                log::warn!("single-port changes take effect at the next restart");
            }
            self.endpoint.apply_settings(settings);
        });
        match &outcome {
            Ok(()) => log::info!("configuration reloaded"),
            Err(reason) => log::error!("reload failed, the running configuration stays: {reason}"),
        }
        supervisor.reloaded(&outcome, &self.endpoint.counters());
        if std::mem::take(&mut self.reload_again) {
            self.begin_reload(supervisor);
        }
    }
}
