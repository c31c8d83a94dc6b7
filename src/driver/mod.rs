//! The driver: the only code that touches sockets and the clock.
//!
//! One event loop (level-triggered epoll, `poller.rs`) moves datagrams between the sockets
//! and the sans-IO [`Endpoint`], which decides everything else. Each transfer has its own
//! socket (its TID, `sockets.rs`), opened when the endpoint asks (on a port of
//! `port-range` when one is set: `ports.rs`), or in `single-port` mode shares the
//! listening socket. For a request whose policy bounds the block by the MTU
//! ([`Endpoint::wants_mtu`]), it learns the link's MTU from the kernel (`net.rs`) and hands
//! the endpoint the number. The loop sends what the endpoint writes (a window of DATA to
//! one peer in one `sendmsg` with UDP segmentation offload: `batch.rs`), wakes it at the
//! instant it names, and acts on what it reports (`events.rs`): logs reports and refusals
//! (`logging.rs`) and commits uploads to the store, at once in memory or through the
//! spool writer's thread (`writer.rs`), whose answer comes back as a command before the
//! endpoint sends the upload's final ACK. It also takes commands (reload, rescan,
//! shutdown) from signals, the control socket (`control_socket.rs`) or a
//! [`ServerHandle`], runs reloads and rescans on a thread of their own whose result comes
//! back as a command (`control.rs`), watches the preseed directories (`watch.rs`: inotify
//! read by the loop, a debounced burst starting a rescan), and
//! reports to a [`Supervisor`] (systemd's notify socket in the daemon). With an origin, it
//! follows the sync's status file once a second (`sync_status.rs`). The loop is the
//! process's one thread but while a reload runs or the spool writer has uploads to write.

mod batch;
mod control;
mod control_socket;
mod events;
mod logging;
mod net;
mod poller;
mod ports;
mod sockets;
mod sync_status;
mod watch;
mod writer;

pub use control::{ReloadCause, ReloadError, Reloaded, Reloader, ServerHandle, Supervisor};
pub use net::bind_listener;
pub use watch::Watcher;

use control::Command;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollEvent;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::control::OriginCell;
use crate::endpoint::{DatagramEvent, Endpoint, LocalEnd, Route, Settings, TransferHandle};
use crate::proto::MAX_DATAGRAM;
use crate::store::{Spool, Store};
use control_socket::ControlSocket;
use net::GSO_MAX_BYTES;
use poller::{Poller, Waker};
use sockets::TransferSocket;
use sync_status::SyncStatusFollower;
use watch::Watch;
use writer::{Committed, SpoolWriter};

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

/// Event tokens: listeners are `0..listeners`, transfers `TRANSFER_BASE + index`; from
/// the top down, the signals, the waker, the control socket and its clients
/// (`control_socket::CLIENT_BASE..=LISTENER`), the watch.
const SIGNALS: u64 = u64::MAX - 1;
const WAKER: u64 = u64::MAX - 2;
const WATCH: u64 = control_socket::CLIENT_BASE - 1;
const TRANSFER_BASE: u64 = 1 << 16;
// The tokens never meet: checked when the driver is compiled.
const _: () = assert!(
    TRANSFER_BASE + u32::MAX as u64 <= WATCH
        && WATCH < control_socket::CLIENT_BASE
        && control_socket::LISTENER < WAKER
        && WAKER < SIGNALS
);
/// Datagrams read from one listening socket before others get a turn.
const LISTENER_BATCH: usize = 256;
/// The MTU taken for `max-blksize = "mtu"` when the kernel will not say (Ethernet's).
const FALLBACK_MTU: u32 = 1500;

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
    /// Transfer sockets by handle index.
    sockets: Vec<Option<TransferSocket>>,
    commands: mpsc::Receiver<Command>,
    handle: ServerHandle,
    signals: Option<SignalFd>,
    reloader: Option<Reloader>,
    reload_running: bool,
    reload_again: bool,
    rescan_again: bool,
    /// A rescan changed what the status line shows: send it at the next status time.
    status_stale: bool,
    /// Receives datagrams; gathers a window of DATA for one send.
    buf: Vec<u8>,
    /// SO_RCVBUF of the listeners, and the most a transfer socket gets.
    receive_buffer: usize,
    /// The ports transfer sockets hold under `port-range`.
    ports: ports::Ports,
    /// The control socket, if one is set up.
    control: Option<ControlSocket>,
    /// What the control socket shows of the origin, when there is one.
    origin: Option<Arc<OriginCell>>,
    /// Makes uploads durable before their final ACK, when there is a spool.
    writer: Option<SpoolWriter>,
    /// The spooled path of each upload stored, for the report when its transfer ends.
    spooled: HashMap<TransferHandle, PathBuf>,
    /// The preseed directories' watch, when watching.
    watch: Option<Watch>,
    /// The sync's status file, with an origin.
    sync_status: Option<SyncStatusFollower>,
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
            rescan_again: false,
            status_stale: false,
            buf: vec![0u8; MAX_DATAGRAM.max(GSO_MAX_BYTES)],
            receive_buffer,
            ports: ports::Ports::default(),
            control: None,
            origin: None,
            writer: None,
            spooled: HashMap::new(),
            watch: None,
            sync_status: None,
        })
    }

    /// Makes every upload durable in `spool` before its final ACK, on a writer thread
    /// that runs while there are uploads to write.
    pub fn with_spool(mut self, spool: Arc<Spool>) -> Server {
        let writer = SpoolWriter::new(spool, Arc::clone(&self.store), self.handle.clone());
        self.writer = Some(writer);
        self
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

    /// Has the control socket's `status` and `metrics` show the origin's generation and
    /// sync, as `origin` holds them: the daemon's loads record the generation, and the
    /// loop puts the sync's status file there (read once now, then looked at once a
    /// second).
    pub fn with_origin(mut self, origin: Arc<OriginCell>) -> Server {
        self.sync_status = Some(SyncStatusFollower::new(Arc::clone(&origin), Instant::now()));
        self.origin = Some(origin);
        self
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
            // What the status line shows but the store's figures, which need its lock
            // and change only with what these count.
            let activity = self.endpoint.activity();
            let control_wake = self.control.as_ref().and_then(|c| c.next_wake());
            let watch_wake = self.watch.as_ref().and_then(Watch::next_wake);
            let sync_status_wake = self.sync_status.as_ref().map(|s| s.next_wake());
            let wake = [
                self.endpoint.poll_timeout(),
                control_wake,
                watch_wake,
                sync_status_wake,
                next_watchdog,
                (last_status != Some(activity) || self.status_stale).then_some(next_status),
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
                    WATCH => self.read_watch(now),
                    token if control_socket::is_control(token) => {
                        self.control_ready(token, event.events(), now, supervisor);
                    }
                    token if token < TRANSFER_BASE => self.read_listener(token as usize, now),
                    token => self.read_transfer_socket((token - TRANSFER_BASE) as usize, now),
                }
            }
            if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
                self.endpoint.handle_timeout(now);
                self.flush();
            }
            if control_wake.is_some_and(|at| at <= now) {
                self.control_timers(now, supervisor);
            }
            if let Some(follower) = &mut self.sync_status
                && follower.poll(now)
            {
                self.status_stale = true;
            }
            if watch_wake.is_some_and(|at| at <= now)
                && self.watch.as_mut().is_some_and(|w| w.rescan_due(now))
            {
                self.begin_reload(supervisor, ReloadCause::Rescan);
            }
            if let Some(at) = next_watchdog.filter(|at| *at <= now) {
                supervisor.watchdog();
                next_watchdog = watchdog.map(|w| at.max(now - w) + w);
            }
            let activity = self.endpoint.activity();
            if now >= next_status && (last_status != Some(activity) || self.status_stale) {
                supervisor.status(&self.endpoint.counters());
                last_status = Some(activity);
                self.status_stale = false;
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
                Ok(Signal::SIGHUP) => self.begin_reload(supervisor, ReloadCause::Reload),
                Ok(Signal::SIGTERM | Signal::SIGINT) => self.begin_stop(supervisor),
                _ => {}
            }
        }
    }

    fn read_commands(&mut self, supervisor: &mut dyn Supervisor) {
        self.handle.waker.reset();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Reload(cause) => self.begin_reload(supervisor, cause),
                Command::Shutdown => self.begin_stop(supervisor),
                Command::Reloaded(cause, result) => self.end_reload(supervisor, cause, result),
                Command::Committed(committed) => self.committed(committed),
            }
        }
    }

    /// The writer's answer for an upload: the endpoint sends the final ACK or the ERROR.
    fn committed(&mut self, Committed { handle, result }: Committed) {
        let result = result.map(|path| {
            self.spooled.insert(handle, path);
        });
        self.endpoint.committed(Instant::now(), handle, result);
        self.flush();
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
                    mtu: None,
                })
            });
            let datagram = &self.buf[..received.len];
            // Under `max-blksize = "mtu"`, the link's MTU for a request that asks for a
            // block size: the kernel's figure, or Ethernet's when it will not say.
            let local = match local {
                Some(end) if self.endpoint.wants_mtu(received.peer, datagram) => {
                    let mtu = net::link_mtu(end, received.peer).unwrap_or_else(|e| {
                        log::debug!("no MTU for {}: {e}; taking 1500", received.peer);
                        FALLBACK_MTU
                    });
                    Some(LocalEnd {
                        mtu: Some(mtu),
                        ..end
                    })
                }
                other => other,
            };
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
}
