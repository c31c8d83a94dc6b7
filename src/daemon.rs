//! The daemon: from a validated configuration to a running server, with the systemd glue
//! around it (socket adoption or binding, notifications, reload, exit codes). `main`
//! parses arguments and calls [`run`] or [`check_config`]; everything else is here.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::{Config, ConfigError};
use crate::control::OriginCell;
use crate::driver::{
    self, ReloadCause, ReloadError, Reloaded, Reloader, Server, ServerError, ServerHandle,
    Supervisor, Watcher,
};
use crate::endpoint::Counters;
use crate::exit::{EX_CONFIG, EX_OSERR, EX_TEMPFAIL};
use crate::logs::ids;
use crate::origin::cache::{CURRENT_LINK, generation_at};
use crate::origin::status::SyncStatus;
use crate::store::{
    Preseed, PreseedLoader, PreseedReport, Spool, Store, StoreChanges, StoreError, Unwatched,
    WatchList, WriteTracker,
};
use crate::systemd::{self, ActivationError, Notifier};

/// The file in `$RUNTIME_DIRECTORY` where the daemon records the result of each reload,
/// for [`reload_and_wait`]: one line, `GENERATION ok` or `GENERATION error REASON`.
pub const RELOAD_STATUS_FILE: &str = "reload-status";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// Addresses to bind instead of the configuration's `listen` (standalone mode only).
    pub listen: Vec<SocketAddr>,
    /// Log at debug level whatever the configuration says.
    pub verbose: bool,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug)]
pub enum DaemonError {
    /// The configuration file is missing or invalid.
    Config(ConfigError),
    /// A preseed source could not be loaded.
    Preseed(StoreError),
    /// The upload spool could not be opened or read.
    Spool(PathBuf, io::Error),
    /// systemd passed something other than UDP sockets.
    Activation(ActivationError),
    /// A `listen` address could not be bound.
    Bind(SocketAddr, io::Error),
    /// Signals could not be set up.
    Signals(nix::Error),
    /// The event loop failed.
    Server(ServerError),
    /// `--reload`: the daemon could not be signalled.
    ReloadSignal(i32, nix::Error),
    /// `--reload`: the process with this PID is not a tftpd (its name is given): it was
    /// not signalled.
    ReloadNotDaemon(i32, String),
    /// `--reload`: the daemon kept its running configuration, for this reason.
    ReloadRefused(String),
    /// `--reload`: no answer from the daemon in time.
    ReloadTimeout(Duration),
}

impl DaemonError {
    /// The process exit status for this error, one of [`crate::exit`]'s.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_)
            | DaemonError::Preseed(_)
            | DaemonError::Spool(..)
            | DaemonError::Activation(_) => EX_CONFIG,
            DaemonError::ReloadRefused(_) => EX_CONFIG,
            DaemonError::Bind(..)
            | DaemonError::Signals(_)
            | DaemonError::Server(_)
            | DaemonError::ReloadSignal(..)
            | DaemonError::ReloadNotDaemon(..) => EX_OSERR,
            DaemonError::ReloadTimeout(_) => EX_TEMPFAIL,
        }
    }
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Config(e) => e.fmt(f),
            DaemonError::Preseed(e) => write!(f, "preseed: {e}"),
            DaemonError::Spool(path, e) => {
                write!(f, "upload spool {}: {e}", path.display())
            }
            DaemonError::Activation(e) => write!(f, "socket activation: {e}"),
            DaemonError::Bind(address, e) => write!(f, "cannot listen on {address}: {e}"),
            DaemonError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
            DaemonError::Server(e) => e.fmt(f),
            DaemonError::ReloadSignal(pid, e) => write!(f, "cannot signal tftpd (pid {pid}): {e}"),
            DaemonError::ReloadNotDaemon(pid, name) => write!(
                f,
                "pid {pid} is not a tftpd (it is {name:?}): not signalled (the daemon is gone \
                 and its PID was given to another process?)"
            ),
            DaemonError::ReloadRefused(reason) => {
                write!(
                    f,
                    "reload refused, the running configuration stays: {reason}"
                )
            }
            DaemonError::ReloadTimeout(t) => write!(f, "no answer to the reload within {t:?}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// Reads and validates the configuration, and checks that every required preseed path
/// exists (without loading it), as `tftpd --check-config` does.
pub fn check_config(path: &Path) -> Result<Config, DaemonError> {
    let config = Config::load(path).map_err(DaemonError::Config)?;
    check_preseed_paths(&config).map_err(DaemonError::Preseed)?;
    Ok(config)
}

/// Checks that every required preseed path exists, without loading it.
fn check_preseed_paths(config: &Config) -> Result<(), StoreError> {
    for preseed in config.preseed.iter().filter(|p| !p.optional) {
        if let Err(source) = std::fs::metadata(&preseed.path) {
            return Err(StoreError::Io {
                path: preseed.path.clone(),
                source,
            });
        }
    }
    Ok(())
}

/// The one loader of start-up, reload and the watch, and what it needs between loads: the
/// running configuration (a rescan loads its preseed again) and the watcher, if watching.
struct Content {
    loader: PreseedLoader,
    config: Config,
    watcher: Option<Watcher>,
    /// What the daemon shows of the origin, when the configuration has an `[origin]`.
    origin: Option<Arc<OriginCell>>,
}

impl Content {
    /// Loads the preseed of `config` (incrementally after the first time) and logs what it
    /// skipped and read (at `level`: a rescan's figures are debug).
    fn load(&mut self, config: &Config, level: log::Level) -> Result<Preseed, StoreError> {
        let tracker: &dyn WriteTracker = match &self.watcher {
            Some(watcher) => watcher,
            None => &Unwatched,
        };
        let started = Instant::now();
        let served_before = self.served_generation(config);
        let preseed = self
            .loader
            .load(&config.preseed, config.case_insensitive, tracker)?;
        if let Some(origin) = &self.origin {
            // A switch during the load may have left a mix of two generations in it: not
            // named; the sync's reload (or the watch's rescan) that follows loads one.
            let served = self.served_generation(config).filter(|after| {
                let same = served_before.as_ref() == Some(after);
                if !same {
                    log::info!("origin: the cache switched generation during the load");
                }
                same
            });
            origin.set_served(served);
            origin.set_sync(SyncStatus::read(&origin.view().cache));
        }
        for warning in preseed_warnings(preseed.report()) {
            log::warn!(message_id = ids::PRESEED_SKIPPED; "{warning}");
        }
        let stats = preseed.load_stats();
        log::log!(
            level,
            "preseed: {} files, {} bytes; read {} files ({} bytes), {} unchanged, {} being \
             written, {} skipped, in {} ms",
            preseed.len(),
            preseed.total_bytes(),
            stats.files_read,
            stats.bytes_read,
            stats.files_kept,
            stats.files_held,
            preseed.report().skipped_count(),
            started.elapsed().as_millis()
        );
        Ok(preseed)
    }

    /// The generation `<cache>/current` points at, when the configuration has an
    /// `[origin]` and a `[[preseed]]` path names `<cache>/current`.
    fn served_generation(&self, config: &Config) -> Option<String> {
        let cache = self.origin.as_ref()?.view().cache;
        let current = cache.join(CURRENT_LINK);
        (config.preseed.iter())
            .any(|p| p.path == current)
            .then(|| generation_at(&cache, CURRENT_LINK))
            .flatten()
    }

    /// Follows what the last load walked; after a load that made something new watched,
    /// or during which the files changed, asks for one more rescan (what changed there
    /// before the watch was in place, or what the load did not take).
    fn watch(&self, list: &WatchList, handle: &ServerHandle) {
        if let Some(watcher) = &self.watcher
            && (watcher.update(list) > 0) | watcher.take_asked()
        {
            handle.rescan();
        }
    }
}

/// The warnings for what a preseed load skipped or overrode, one line per item: `preseed: `
/// and the item's `Display`, which says what happened without a prefix of its own.
fn preseed_warnings(report: &PreseedReport) -> Vec<String> {
    let sources = report.skipped_sources.iter().map(ToString::to_string);
    let entries = report.skipped.iter().map(ToString::to_string);
    let collisions = report.collisions.iter().map(ToString::to_string);
    sources
        .chain(entries)
        .chain(collisions)
        .map(|item| format!("preseed: {item}"))
        .collect()
}

/// `--verbose` wins over the configuration's `log-level`.
fn log_level(options: &Options, config: &Config) -> log::LevelFilter {
    if options.verbose {
        log::LevelFilter::Debug
    } else {
        config.log_level
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or a fatal error).
pub fn run(options: &Options) -> Result<(), DaemonError> {
    let config = check_config(&options.config)?;
    crate::logs::init(config.log_format, log_level(options, &config));
    // Signals arrive through a signalfd, so they must be blocked in every thread; the
    // reload thread inherits this mask.
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(signal);
    }
    mask.thread_block().map_err(DaemonError::Signals)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::Signals)?;
    raise_fd_limit();

    let sockets = listening_sockets(options, &config)?;
    let watcher = if config.watch {
        match Watcher::new() {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                log::warn!("cannot watch the preseed (inotify: {e}); changes are seen at reloads");
                None
            }
        }
    } else {
        None
    };
    let origin = (config.origin.as_ref()).map(|o| Arc::new(OriginCell::new(o.cache.clone())));
    let mut content = Content {
        loader: PreseedLoader::new(),
        config: config.clone(),
        watcher,
        origin: origin.clone(),
    };
    let preseed = content
        .load(&config, log::Level::Info)
        .map_err(DaemonError::Preseed)?;
    let watch_list = preseed.watch_list().clone();
    let store = Arc::new(Store::new(preseed, config.upload.clone()));
    let spool = match &config.upload_spool {
        Some(root) => Some(restore_spool(root, &store)?),
        None => None,
    };
    let mut server = Server::new(
        sockets,
        Arc::clone(&store),
        config.endpoint.clone(),
        config.receive_buffer,
    )
    .map_err(DaemonError::Server)?
    .with_signals(signals)
    .map_err(DaemonError::Server)?;
    let handle = server.handle();
    content.watch(&watch_list, &handle);
    if let Some(watcher) = &content.watcher {
        server = server
            .with_watch(watcher.clone())
            .map_err(DaemonError::Server)?;
        log::info!("watching {} preseeded directories", watcher.watched());
    }
    if let Some(origin) = &origin {
        server = server.with_origin(Arc::clone(origin));
    }
    let content = Arc::new(Mutex::new(content));
    let mut server = server.with_reloader(reloader(options.clone(), store, content, handle));
    if let Some(spool) = spool {
        server = server.with_spool(spool);
    }
    if let Some(path) = &config.control_socket {
        // The control socket is a convenience: the boot service runs without it.
        match server.set_control_socket(path) {
            Ok(()) => log::info!("control socket at {}", path.display()),
            Err(e) => log::warn!(
                "no control socket: cannot create {}: {e} (set control-socket in {})",
                path.display(),
                options.config.display()
            ),
        }
    }
    for address in server.local_addrs() {
        log::info!("listening on {address}");
    }
    log::info!(message_id = ids::STARTED; "memtftpd {} serving", env!("CARGO_PKG_VERSION"));
    let mut supervisor = SystemdSupervisor::new(origin);
    server.run(&mut supervisor).map_err(DaemonError::Server)?;
    log::info!(message_id = ids::STOPPED; "stopped");
    Ok(())
}

/// Opens the upload spool (creating it if missing), removes what interrupted writes left
/// and puts the uploads it keeps back into the store.
fn restore_spool(root: &Path, store: &Store) -> Result<Arc<Spool>, DaemonError> {
    let error = |e| DaemonError::Spool(root.to_path_buf(), e);
    let spool = Spool::open(root).map_err(error)?;
    let load = spool.load().map_err(error)?;
    for path in &load.removed {
        log::info!(
            "upload spool: removed {}, left by an interrupted write",
            path.display()
        );
    }
    for (path, reason) in &load.skipped {
        log::warn!("upload spool: skipped {}: {reason}", path.display());
    }
    let files = load.files.len();
    let bytes = store.restore_uploads(load.files);
    log::info!(
        "upload spool {}: {files} uploads restored, {bytes} bytes",
        root.display()
    );
    let limit = store.upload_policy().max_total_size;
    if bytes > limit {
        log::warn!(
            "upload spool: the restored uploads hold {bytes} bytes, more than max-total-size \
             ({limit} bytes): new uploads are refused until some are removed"
        );
    }
    Ok(Arc::new(spool))
}

/// Sockets from systemd when it passed any, otherwise bound here.
fn listening_sockets(options: &Options, config: &Config) -> Result<Vec<UdpSocket>, DaemonError> {
    let adopted = systemd::adopt_listen_fds().map_err(DaemonError::Activation)?;
    if !adopted.is_empty() {
        log::info!("using {} socket(s) passed by systemd", adopted.len());
        return Ok(adopted);
    }
    let addresses = if options.listen.is_empty() {
        &config.listen
    } else {
        &options.listen
    };
    addresses
        .iter()
        .map(|&address| {
            driver::bind_listener(address, config.receive_buffer)
                .map_err(|e| DaemonError::Bind(address, e))
        })
        .collect()
}

/// Thousands of transfers each hold a socket: lift the soft limit on open files to the
/// hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        log::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
    }
}

/// What SIGHUP does: re-read the configuration and the preseed, swap the store; and what a
/// rescan does: the preseed again, with the running configuration. (`listen`,
/// `receive-buffer` and `watch` take effect at the next start.) Both load incrementally.
fn reloader(
    options: Options,
    store: Arc<Store>,
    content: Arc<Mutex<Content>>,
    handle: ServerHandle,
) -> Reloader {
    Arc::new(move |cause| {
        let mut content = content.lock().unwrap_or_else(PoisonError::into_inner);
        let config = match cause {
            ReloadCause::Reload => {
                let config = Config::load(&options.config).map_err(ReloadError::Config)?;
                check_preseed_paths(&config).map_err(ReloadError::Preseed)?;
                if config.watch != content.config.watch {
                    log::warn!("watch changes take effect at the next restart");
                }
                config
            }
            ReloadCause::Rescan => content.config.clone(),
        };
        let level = match cause {
            ReloadCause::Reload => log::Level::Info,
            ReloadCause::Rescan => log::Level::Debug,
        };
        let preseed = content.load(&config, level).map_err(ReloadError::Preseed)?;
        content.watch(preseed.watch_list(), &handle);
        if cause == ReloadCause::Reload {
            log::set_max_level(log_level(&options, &config));
        }
        let settings = config.endpoint.clone();
        let changes: StoreChanges = store.replace_preseed(preseed, config.upload.clone());
        for name in &changes.dropped_uploads {
            log::warn!("reload: upload {name} dropped, its name now collides ignoring case");
        }
        content.config = config;
        Ok(Reloaded { settings, changes })
    })
}

/// Reports to systemd through the notify socket, and records each reload's result in
/// `$RUNTIME_DIRECTORY` for the synchronous reload command.
struct SystemdSupervisor {
    notifier: Notifier,
    reload_status: Option<PathBuf>,
    reloads: u64,
    /// Why the last rescan failed, until one succeeds.
    rescan_error: Option<String>,
    /// The origin's generation and sync, when the configuration has an `[origin]`.
    origin: Option<Arc<OriginCell>>,
}

impl SystemdSupervisor {
    fn new(origin: Option<Arc<OriginCell>>) -> SystemdSupervisor {
        SystemdSupervisor {
            notifier: Notifier::from_env(),
            reload_status: runtime_directory().map(|dir| dir.join(RELOAD_STATUS_FILE)),
            reloads: 0,
            rescan_error: None,
            origin,
        }
    }

    /// The counters' line, the origin's generation and last sync if there is an origin,
    /// and why the last rescan failed if it did.
    fn status_line(&self, counters: &Counters) -> String {
        let mut line = counters.status_line();
        if let Some(origin) = &self.origin {
            line.push_str("; ");
            line.push_str(&origin.view().status_line());
        }
        if let Some(reason) = &self.rescan_error {
            line.push_str(&format!("; loading the changed preseed failed: {reason}"));
        }
        line
    }

    fn record_reload(&mut self, result: &Result<StoreChanges, ReloadError>) {
        self.reloads += 1;
        let Some(path) = &self.reload_status else {
            return;
        };
        let line = match result {
            Ok(_) => format!("{} ok\n", self.reloads),
            Err(reason) => format!(
                "{} error {}\n",
                self.reloads,
                reason.to_string().replace('\n', " ")
            ),
        };
        let temporary = path.with_extension("new");
        let written =
            std::fs::write(&temporary, line).and_then(|()| std::fs::rename(&temporary, path));
        if let Err(e) = written {
            log::warn!("cannot record the reload result in {}: {e}", path.display());
        }
    }
}

/// The first directory of `$RUNTIME_DIRECTORY` (set by systemd's `RuntimeDirectory=`).
fn runtime_directory() -> Option<PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    std::env::split_paths(&dirs).next()
}

/// The generation and result recorded in the reload status file, if any.
fn read_reload_status(path: &Path) -> Option<(u64, Result<(), String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.trim_end();
    let (generation, rest) = line.split_once(' ')?;
    let generation = generation.parse().ok()?;
    let result = match rest.strip_prefix("error ") {
        Some(reason) => Err(reason.to_owned()),
        None => Ok(()),
    };
    Some((generation, result))
}

/// The daemon's process name (`/proc/PID/comm`): the binary's, `tftpd`.
const DAEMON_COMM: &str = "tftpd";

/// `tftpd --reload PID`, for `ExecReload=`: checks the configuration, sends SIGHUP to the
/// daemon, and waits until the daemon records the outcome in `$RUNTIME_DIRECTORY`, so
/// that `systemctl reload` returns once the new configuration is in effect, and fails
/// with the reason when it was refused. Without `$RUNTIME_DIRECTORY` it only signals.
pub fn reload_and_wait(config: &Path, pid: i32, timeout: Duration) -> Result<(), DaemonError> {
    if let Err(e) = check_config(config) {
        return Err(DaemonError::ReloadRefused(e.to_string()));
    }
    let status = runtime_directory().map(|dir| dir.join(RELOAD_STATUS_FILE));
    let before = status
        .as_deref()
        .and_then(read_reload_status)
        .map_or(0, |(g, _)| g);
    // A PID held for long (`tftpd sync --watch --reload-pid`) may outlive its daemon and
    // be handed to another process, which SIGHUP would disturb or kill.
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        let name = comm.trim_end();
        if name != DAEMON_COMM {
            return Err(DaemonError::ReloadNotDaemon(pid, name.to_owned()));
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|e| DaemonError::ReloadSignal(pid, e))?;
    let Some(status) = status else { return Ok(()) };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match read_reload_status(&status) {
            Some((generation, result)) if generation > before => {
                return result.map_err(DaemonError::ReloadRefused);
            }
            _ => {
                // A daemon that died will never answer.
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
                if let Err(e) = alive {
                    return Err(DaemonError::ReloadSignal(pid, e));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Err(DaemonError::ReloadTimeout(timeout))
}

impl Supervisor for SystemdSupervisor {
    fn ready(&mut self, counters: &Counters) {
        self.notifier.status(&self.status_line(counters));
        self.notifier.ready();
    }

    fn status(&mut self, counters: &Counters) {
        self.notifier.status(&self.status_line(counters));
    }

    fn reloading(&mut self) {
        log::info!("reloading the configuration");
        self.notifier.reloading();
    }

    fn reloaded(&mut self, result: &Result<StoreChanges, ReloadError>, counters: &Counters) {
        if result.is_ok() {
            self.rescan_error = None;
        }
        match result {
            Ok(_) => self.notifier.status(&self.status_line(counters)),
            Err(reason) => self.notifier.status(&format!("reload failed: {reason}")),
        }
        self.notifier.ready();
        // Last: the reload command returns when it sees this, and systemd should already
        // show the new status by then.
        self.record_reload(result);
    }

    fn rescanned(&mut self, result: &Result<StoreChanges, ReloadError>, _: &Counters) {
        // Shown by the next status line (at most one a second: rescans can come faster).
        self.rescan_error = result.as_ref().err().map(ToString::to_string);
    }

    fn stopping(&mut self) {
        self.notifier.stopping();
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.notifier.watchdog_interval()
    }

    fn watchdog(&mut self) {
        self.notifier.watchdog();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PreseedSource, load_preseed};

    fn source(path: &Path, optional: bool) -> PreseedSource {
        PreseedSource {
            path: path.to_path_buf(),
            prefix: String::new(),
            optional,
            on_error: crate::store::OnError::Skip,
        }
    }

    #[test]
    fn each_preseed_warning_carries_its_prefix_once() {
        let first = tempfile::tempdir().expect("tempdir");
        let second = tempfile::tempdir().expect("tempdir");
        std::fs::write(first.path().join("f"), b"first").expect("write");
        std::fs::write(second.path().join("f"), b"second").expect("write");
        let socket = second.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let missing = first.path().join("missing");
        let sources = [
            source(&missing, true),
            source(first.path(), false),
            source(second.path(), false),
        ];
        let preseed = load_preseed(&sources, false).expect("preseed loads");

        let warnings = preseed_warnings(preseed.report());
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        for line in &warnings {
            assert_eq!(line.matches("preseed: ").count(), 1, "{line}");
            assert!(line.matches("skipped").count() <= 1, "{line}");
        }
        let missing = missing.display();
        assert!(
            warnings[0].starts_with(&format!(
                "preseed: optional source {missing} skipped: cannot read preseed path {missing}: "
            )),
            "{}",
            warnings[0]
        );
        assert_eq!(
            warnings[1],
            format!(
                "preseed: skipped {}: socket, not a regular file",
                socket.display()
            )
        );
        assert_eq!(
            warnings[2],
            "preseed: \"f\" is provided more than once; the later one wins"
        );
    }

    #[test]
    fn every_error_exits_with_a_status_of_the_exit_module() {
        let config =
            Config::parse("timeout = 0", Path::new("/etc/tftpd.toml")).expect_err("out of range");
        assert_eq!(DaemonError::Config(config).exit_code(), EX_CONFIG);
        let refused = DaemonError::ReloadRefused("bad".to_owned());
        assert_eq!(refused.exit_code(), EX_CONFIG);
        let timeout = DaemonError::ReloadTimeout(Duration::from_secs(1));
        assert_eq!(timeout.exit_code(), EX_TEMPFAIL);
        let signals = DaemonError::Signals(nix::Error::EPERM);
        assert_eq!(signals.exit_code(), EX_OSERR);
    }
}
