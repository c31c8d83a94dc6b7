//! The driver: the only code that touches sockets and the clock.
//!
//! One event loop (level-triggered epoll) moves datagrams between the sockets and the
//! sans-IO [`Endpoint`], which decides everything else. Each transfer has its own socket
//! (its TID), opened here when the endpoint asks, or in `single-port` mode shares the
//! listening socket. The loop sends what the endpoint writes (a window of DATA to one
//! peer in one `sendmsg` with UDP segmentation offload), wakes it at the instant it names,
//! logs what it reports and commits uploads to the store. It also takes commands
//! (reload, shutdown) from signals or a [`ServerHandle`], runs reloads on a thread of
//! their own whose result comes back as a command, and reports to a [`Supervisor`]
//! (systemd's notify socket in the daemon).

mod net;
mod poller;

pub use net::bind_listener;

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::epoll::EpollEvent;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::config::ConfigError;
use crate::endpoint::{
    Counters, DatagramEvent, Endpoint, EndpointEvent, LocalEnd, RefusalRecord, Route, Settings,
    TransferHandle, Via,
};
use crate::proto::MAX_DATAGRAM;
use crate::store::{Store, StoreError, UploadPermit};
use crate::transfer::{Outcome, TransferReport};
use poller::{Poller, Waker};

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
enum Command {
    Reload,
    Shutdown,
    /// The reload thread is done.
    Reloaded(Result<Settings, ReloadError>),
}

/// Asks a running server to reload or stop, from any thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
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

    fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Errors that stop the server.
#[derive(Debug)]
pub enum ServerError {
    /// The event loop itself failed.
    Poll(io::Error),
    /// A listening socket could not be prepared.
    Listener(SocketAddr, io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Poll(e) => write!(f, "event loop failed: {e}"),
            ServerError::Listener(addr, e) => write!(f, "cannot use listening socket {addr}: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Event tokens: listeners are `0..listeners`, transfers `TRANSFER_BASE + index`.
const SIGNALS: u64 = u64::MAX - 1;
const WAKER: u64 = u64::MAX - 2;
const TRANSFER_BASE: u64 = 1 << 16;
/// Datagrams read from one listening socket before others get a turn.
const LISTENER_BATCH: usize = 256;

/// A listening socket and what it was bound to.
#[derive(Debug)]
struct Listener {
    socket: UdpSocket,
    address: SocketAddr,
    /// Bound to `0.0.0.0` or `[::]`: replies need an explicit source address.
    wildcard: bool,
    /// Deregistered at shutdown (unless single-port transfers still use it).
    open: bool,
}

/// The server: listening sockets, the endpoint, the transfers' sockets and the loop.
pub struct Server {
    poller: Poller,
    listeners: Vec<Listener>,
    endpoint: Endpoint,
    store: Arc<Store>,
    /// Transfer sockets by handle index, with the handle they belong to.
    sockets: Vec<Option<(TransferHandle, UdpSocket)>>,
    commands: mpsc::Receiver<Command>,
    handle: ServerHandle,
    signals: Option<SignalFd>,
    reloader: Option<Reloader>,
    reload_running: bool,
    reload_again: bool,
    /// Receives datagrams; gathers a window of DATA for one send.
    buf: Vec<u8>,
    /// UDP generic segmentation offload works here (until a send says otherwise).
    gso: bool,
    /// SO_RCVBUF of the listeners, and the most a transfer socket gets.
    receive_buffer: usize,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server on sockets already bound (adopted from systemd or bound by the caller).
    pub fn new(
        sockets: Vec<UdpSocket>,
        store: Arc<Store>,
        settings: Settings,
        receive_buffer: usize,
    ) -> Result<Server, ServerError> {
        let poller = Poller::new().map_err(ServerError::Poll)?;
        let waker = Arc::new(Waker::new(&poller, WAKER).map_err(ServerError::Poll)?);
        let (sender, commands) = mpsc::channel();
        let mut listeners = Vec::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            let address = socket.local_addr().map_err(ServerError::Poll)?;
            net::prepare_listener(&socket, receive_buffer)
                .map_err(|e| ServerError::Listener(address, e))?;
            poller
                .add(&socket, index as u64)
                .map_err(|e| ServerError::Listener(address, e))?;
            listeners.push(Listener {
                socket,
                address,
                wildcard: address.ip().is_unspecified(),
                open: true,
            });
        }
        Ok(Server {
            poller,
            listeners,
            endpoint: Endpoint::new(Arc::clone(&store), settings),
            store,
            sockets: Vec::new(),
            commands,
            handle: ServerHandle {
                commands: sender,
                waker,
            },
            signals: None,
            reloader: None,
            reload_running: false,
            reload_again: false,
            buf: vec![0u8; net::GSO_MAX_BYTES + MAX_DATAGRAM],
            gso: true,
            receive_buffer,
        })
    }

    /// The addresses the server listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.address).collect()
    }

    /// A handle to reload or stop the server from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Takes SIGHUP (reload) and SIGTERM/SIGINT (stop) from a signalfd; the caller has
    /// blocked those signals in every thread.
    pub fn with_signals(mut self, signals: SignalFd) -> Result<Server, ServerError> {
        self.poller
            .add(&signals, SIGNALS)
            .map_err(ServerError::Poll)?;
        self.signals = Some(signals);
        Ok(self)
    }

    /// Sets what a reload does; without one, a reload only reports success.
    pub fn with_reloader(mut self, reloader: Reloader) -> Server {
        self.reloader = Some(reloader);
        self
    }

    /// Runs until stopped; returns once every transfer has ended.
    pub fn run(&mut self, supervisor: &mut dyn Supervisor) -> Result<(), ServerError> {
        let mut events = vec![EpollEvent::empty(); 1024];
        let watchdog = supervisor.watchdog_interval();
        let mut next_watchdog = watchdog.map(|w| Instant::now() + w);
        let mut next_status = Instant::now();
        let mut last_status = None;
        supervisor.ready(&self.endpoint.counters());
        loop {
            let now = Instant::now();
            let counters = self.endpoint.counters();
            let wake = [
                self.endpoint.poll_timeout(),
                next_watchdog,
                (last_status != Some(counters)).then_some(next_status),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now));
            let ready = self
                .poller
                .wait(&mut events, wake)
                .map_err(ServerError::Poll)?;
            let now = Instant::now();
            for event in &events[..ready] {
                match event.data() {
                    SIGNALS => self.read_signals(supervisor),
                    WAKER => self.read_commands(supervisor),
                    token if token < TRANSFER_BASE => self.read_listener(token as usize, now),
                    token => self.read_transfer_socket((token - TRANSFER_BASE) as usize, now),
                }
            }
            if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
                self.endpoint.handle_timeout(now);
                self.flush();
            }
            if let Some(at) = next_watchdog.filter(|at| *at <= now) {
                supervisor.watchdog();
                next_watchdog = watchdog.map(|w| at.max(now - w) + w);
            }
            let counters = self.endpoint.counters();
            if now >= next_status && last_status != Some(counters) {
                supervisor.status(&counters);
                last_status = Some(counters);
                next_status = now + Duration::from_secs(1);
            }
            if self.endpoint.is_stopped() {
                return Ok(());
            }
        }
    }

    fn read_signals(&mut self, supervisor: &mut dyn Supervisor) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let mut received = Vec::new();
        while let Ok(Some(info)) = signals.read_signal() {
            received.push(info.ssi_signo);
        }
        for signo in received {
            match Signal::try_from(signo as i32) {
                Ok(Signal::SIGHUP) => self.begin_reload(supervisor),
                Ok(Signal::SIGTERM | Signal::SIGINT) => self.begin_stop(supervisor),
                _ => {}
            }
        }
    }

    fn read_commands(&mut self, supervisor: &mut dyn Supervisor) {
        self.handle.waker.reset();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Reload => self.begin_reload(supervisor),
                Command::Shutdown => self.begin_stop(supervisor),
                Command::Reloaded(result) => self.end_reload(supervisor, result),
            }
        }
    }

    fn begin_reload(&mut self, supervisor: &mut dyn Supervisor) {
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

    fn end_reload(
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

    fn begin_stop(&mut self, supervisor: &mut dyn Supervisor) {
        if self.endpoint.is_stopping() {
            return;
        }
        supervisor.stopping();
        log::info!(
            "stopping: {} transfers in flight get up to {:?} to finish",
            self.endpoint.counters().active,
            self.endpoint.settings().shutdown_grace
        );
        self.endpoint.begin_stop(Instant::now());
        self.flush();
        if !self.endpoint.settings().single_port {
            for listener in &mut self.listeners {
                let _ = self.poller.delete(&listener.socket);
                listener.open = false;
            }
        }
    }

    /// Reads up to a batch of datagrams (the poller reports the socket again if more are
    /// waiting).
    fn read_listener(&mut self, index: usize, now: Instant) {
        for _ in 0..LISTENER_BATCH {
            let Some(listener) = self.listeners.get(index).filter(|l| l.open) else {
                return;
            };
            let received = match net::recv_with_destination(&listener.socket, &mut self.buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("receive on {}: {e}", listener.address);
                    return;
                }
            };
            let local = received.local.or_else(|| {
                (!listener.wildcard).then_some(LocalEnd {
                    ip: listener.address.ip(),
                    ifindex: 0,
                })
            });
            let datagram = &self.buf[..received.len];
            let event = self
                .endpoint
                .handle(now, index, local, received.peer, datagram);
            if let Some(DatagramEvent::NewTransfer {
                handle,
                route: Route::Own,
                local,
                window_bytes,
            }) = event
            {
                self.open_transfer_socket(handle, index, local, window_bytes);
            }
            self.flush();
        }
    }

    /// Gives a new transfer its socket on the address its request came to, or has the
    /// endpoint turn the request away.
    fn open_transfer_socket(
        &mut self,
        handle: TransferHandle,
        listener: usize,
        local: Option<LocalEnd>,
        window_bytes: Option<usize>,
    ) {
        let token = TRANSFER_BASE + handle.index() as u64;
        let opened = local
            .ok_or_else(|| io::Error::other("no destination address for the request"))
            .and_then(|local| net::transfer_socket(local.ip, local.ifindex))
            .and_then(|socket| {
                if let Some(bytes) = window_bytes {
                    // A whole window of DATA may arrive before the loop reads any.
                    net::reserve_receive_buffer(&socket, bytes, self.receive_buffer);
                }
                self.poller.add(&socket, token)?;
                Ok(socket)
            });
        match opened {
            Ok(socket) => {
                if self.sockets.len() <= handle.index() {
                    self.sockets.resize_with(handle.index() + 1, || None);
                }
                self.sockets[handle.index()] = Some((handle, socket));
            }
            Err(e) => {
                log::error!("cannot open a transfer socket: {e}");
                self.endpoint
                    .reject(handle, listener, local, &e.to_string());
            }
        }
    }

    /// Reads one datagram: level-triggered, the poller reports the socket again if more
    /// are waiting, and lock-step transfers never have more.
    fn read_transfer_socket(&mut self, index: usize, now: Instant) {
        let Some(Some((handle, socket))) = self.sockets.get(index) else {
            return;
        };
        if let Ok((len, source)) = socket.recv_from(&mut self.buf) {
            let handle = *handle;
            self.endpoint
                .handle_transfer(now, handle, source, &self.buf[..len]);
            self.flush();
        }
    }

    /// Sends what the endpoint has to send, then acts on what it reports.
    fn flush(&mut self) {
        self.transmit();
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                EndpointEvent::Ended {
                    handle,
                    report,
                    client,
                } => {
                    // A transfer's own socket leaves the epoll set when it is closed.
                    if let Some(slot) = self.sockets.get_mut(handle.index())
                        && slot.as_ref().is_some_and(|(h, _)| *h == handle)
                    {
                        *slot = None;
                    }
                    log_report(&report, client);
                }
                EndpointEvent::Refused(record) => log_refusal(&record),
                EndpointEvent::Upload {
                    permit,
                    data,
                    client,
                } => commit_upload(&self.store, permit, data, client),
            }
        }
    }

    /// Sends every datagram the endpoint writes. Consecutive datagrams of one transfer to
    /// one destination that are all the same size but the last (a window of DATA) go out
    /// in one `sendmsg` with UDP generic segmentation offload; without GSO (`gso` turns
    /// false at the first refusal) each goes on its own.
    fn transmit(&mut self) {
        // The batch at the start of `buf`: (transfer, destination, bytes, segment size,
        // segments, whether a datagram of `segment` bytes may still join).
        let mut batch: Option<(TransferHandle, SocketAddr, usize, usize, usize, bool)> = None;
        loop {
            let offset = batch.map_or(0, |b| b.2);
            let Some(out) = self.endpoint.poll_transmit(&mut self.buf[offset..]) else {
                break;
            };
            let t = out.transmit;
            match out.via {
                Via::Transfer(handle) => {
                    if let Some((h, to, len, segment, count, open)) = &mut batch
                        && self.gso
                        && *open
                        && *h == handle
                        && *to == t.destination
                        && t.len <= *segment
                        && *len + t.len <= net::GSO_MAX_BYTES
                        && *count < net::GSO_MAX_SEGMENTS
                    {
                        *len += t.len;
                        *count += 1;
                        // A shorter datagram ends a batch: only the last may be short.
                        *open = t.len == *segment;
                        continue;
                    }
                    self.send_batch(batch.take());
                    self.buf.copy_within(offset..offset + t.len, 0);
                    batch = Some((handle, t.destination, t.len, t.len, 1, true));
                }
                Via::Listener { listener, local } => {
                    if let Some(l) = self.listeners.get(listener) {
                        let from = if l.wildcard { local } else { None };
                        let datagram = &self.buf[offset..offset + t.len];
                        if let Err(e) = net::send_from(&l.socket, datagram, t.destination, from) {
                            // Lost like any datagram: the retransmission timer covers it.
                            log::debug!("send to {}: {e}", t.destination);
                        }
                    }
                }
            }
        }
        self.send_batch(batch);
    }

    /// Sends the datagrams of `segment` bytes laid end to end at the start of `buf`.
    fn send_batch(
        &mut self,
        batch: Option<(TransferHandle, SocketAddr, usize, usize, usize, bool)>,
    ) {
        let Some((handle, peer, len, segment, ..)) = batch else {
            return;
        };
        let Some(Some((_, socket))) = self.sockets.get(handle.index()) else {
            return;
        };
        let data = &self.buf[..len];
        if len > segment {
            match net::send_segments(socket, data, segment, peer) {
                Ok(()) => return,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) =>
                {
                    log::info!(
                        "UDP segmentation offload refused ({e}); sending datagrams one by one"
                    );
                    self.gso = false;
                }
                Err(e) => {
                    log::debug!("send to {peer}: {e}");
                    return;
                }
            }
        }
        for datagram in data.chunks(segment) {
            if let Err(e) = socket.send_to(datagram, peer) {
                // Lost like any datagram: the retransmission timer covers it.
                log::debug!("send to {peer}: {e}");
            }
        }
    }
}

fn commit_upload(store: &Store, permit: UploadPermit, data: Vec<u8>, client: SocketAddr) {
    let len = data.len();
    if let Err(refusal) = store.commit_upload(permit, data) {
        log::warn!(
            "upload from {client} of {len} bytes arrived whole but was not stored: {refusal}"
        );
    }
}

/// Logs a refusal: noise (within the endpoint's rate limit) as a warning, a refused
/// request with journal fields.
fn log_refusal(record: &RefusalRecord) {
    let RefusalRecord {
        client,
        refusal,
        suppressed,
    } = record;
    if refusal.noise {
        log::warn!(
            "{client}: {} (answered with error {}){}",
            refusal.message,
            refusal.code.as_u16(),
            if *suppressed > 0 {
                format!("; {suppressed} similar datagrams not logged")
            } else {
                String::new()
            }
        );
        return;
    }
    let (op, file) = refusal
        .request
        .as_ref()
        .map_or(("request", ""), |(direction, file)| {
            (direction.as_str(), file.as_str())
        });
    log::info!(
        tftp_peer = client.to_string(),
        tftp_op = op,
        tftp_file = file,
        tftp_outcome = "refused",
        tftp_error = refusal.code.as_u16();
        "{client} {op} {file:?} refused: {}",
        refusal.message
    );
}

/// Logs one finished transfer: a readable message, and journal fields for `journalctl`.
fn log_report(report: &TransferReport, client: SocketAddr) {
    let level = match report.outcome {
        Outcome::Completed | Outcome::Probe => log::Level::Info,
        _ => log::Level::Warn,
    };
    let millis = report.duration.as_millis() as u64;
    log::log!(
        level,
        tftp_peer = client.to_string(),
        tftp_op = report.direction.as_str(),
        tftp_file = report.filename.as_str(),
        tftp_mode = report.mode.as_str(),
        tftp_bytes = report.bytes,
        tftp_blocks = report.blocks,
        tftp_blksize = report.options.blksize,
        tftp_windowsize = report.options.windowsize,
        tftp_retransmits = report.retransmits,
        tftp_duration_ms = millis,
        tftp_outcome = report.outcome.as_str();
        "{client} {} {:?}: {} after {} bytes in {millis} ms (blksize {}, windowsize {}, {} retransmits)",
        report.direction.as_str(),
        report.filename,
        report.outcome,
        report.bytes,
        report.options.blksize,
        report.options.windowsize,
        report.retransmits
    );
}
