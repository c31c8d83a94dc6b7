//! The driver: the only code that touches sockets and the clock.
//!
//! One event loop (level-triggered epoll) serves every transfer: each transfer has its own
//! socket (its TID) registered with the loop, or in `single-port` mode shares the
//! listening socket and is told apart by the client's address and port. Timers come from
//! each transfer's `poll_timeout` and sit in a binary heap, one entry per transfer. The
//! loop also takes commands (reload, shutdown) from signals or a [`ServerHandle`], and
//! reports to a [`Supervisor`] (systemd's notify socket in the daemon).

pub mod dispatch;
pub mod net;
pub mod poller;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::epoll::EpollEvent;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::proto::{ErrorCode, MAX_DATAGRAM, Packet};
use crate::store::{Store, UploadPermit};
use crate::transfer::{Event, Outcome, Transfer, TransferConfig, TransferReport};
use dispatch::{Admission, Decision, RateLimit, Refusal};
use net::LocalEnd;
use poller::{Poller, Waker};

/// What the driver needs from the configuration; can change on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Defaults and limits of every transfer.
    pub transfer: TransferConfig,
    /// Transfers at once, in all.
    pub max_transfers: usize,
    /// Transfers at once from one client address.
    pub max_transfers_per_client: usize,
    /// Run transfers on the listening socket instead of one socket each.
    pub single_port: bool,
    /// How long in-flight transfers may go on after a stop is asked for.
    pub shutdown_grace: Duration,
}

/// Live figures for `STATUS=` and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Files in the store.
    pub files: u64,
    /// Bytes in the store.
    pub bytes: u64,
    /// Transfers in progress.
    pub active: usize,
    /// Transfers finished since start-up (any outcome).
    pub served: u64,
    /// Requests refused since start-up.
    pub refused: u64,
}

impl Counters {
    /// The one-line status for systemd.
    pub fn status_line(&self) -> String {
        format!(
            "{} files ({:.1} MiB) stored; {} active transfers; {} served, {} refused",
            self.files,
            self.bytes as f64 / (1 << 20) as f64,
            self.active,
            self.served,
            self.refused
        )
    }
}

/// Who the driver reports to: systemd in the daemon, a recorder in tests.
pub trait Supervisor {
    /// The server took its sockets and is serving (or serving again after a reload).
    fn ready(&mut self, counters: &Counters);
    /// The figures changed (called at most once a second).
    fn status(&mut self, counters: &Counters);
    /// A reload began.
    fn reloading(&mut self);
    /// A reload ended; on error the running configuration stays.
    fn reloaded(&mut self, result: &Result<(), String>, counters: &Counters);
    /// A stop began.
    fn stopping(&mut self);
    /// How often to call [`watchdog`](Self::watchdog), if at all.
    fn watchdog_interval(&self) -> Option<Duration>;
    /// The loop is alive.
    fn watchdog(&mut self);
}

/// Re-reads the configuration, swaps the store's preseeded files and returns the new
/// settings; runs on a thread of its own so transfers go on meanwhile.
pub type Reloader = Arc<dyn Fn() -> Result<Settings, String> + Send + Sync>;

/// Commands for a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Reload,
    Shutdown,
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

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Poll(e) => write!(f, "event loop failed: {e}"),
            ServerError::Listener(addr, e) => write!(f, "cannot use listening socket {addr}: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Event tokens: listeners are `0..listeners`, transfers `TRANSFER_BASE + slot`.
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

/// One transfer and the I/O it is bound to.
#[derive(Debug)]
struct Slot {
    transfer: Transfer,
    /// A write's permit, presented to the store when the file is complete.
    permit: Option<UploadPermit>,
    /// Its own socket; `None` in single-port mode.
    socket: Option<UdpSocket>,
    /// The listening socket it came in on.
    listener: usize,
    /// The address the request was sent to.
    local: Option<LocalEnd>,
    /// The client, as the socket sees it.
    peer: SocketAddr,
    /// The instant of this slot's entry in the timer heap.
    scheduled: Option<Instant>,
}

/// The server: listening sockets, the store, the transfers and the loop.
pub struct Server {
    poller: Poller,
    listeners: Vec<Listener>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Single-port routing: (listener, client) -> slot.
    routes: HashMap<(usize, SocketAddr), usize>,
    per_client: HashMap<IpAddr, usize>,
    store: Arc<Store>,
    settings: Settings,
    counters: Counters,
    noise: RateLimit,
    commands: mpsc::Receiver<Command>,
    handle: ServerHandle,
    signals: Option<SignalFd>,
    reloader: Option<Reloader>,
    reload_results: Arc<Mutex<Option<Result<Settings, String>>>>,
    reload_running: bool,
    reload_again: bool,
    stop_deadline: Option<Instant>,
    /// Receives datagrams; gathers a window of DATA for one send.
    buf: Vec<u8>,
    /// UDP generic segmentation offload works here (until a send says otherwise).
    gso: bool,
    /// SO_RCVBUF of the listeners, and the most a transfer socket gets.
    receive_buffer: usize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners)
            .field("counters", &self.counters)
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
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            routes: HashMap::new(),
            per_client: HashMap::new(),
            store,
            settings,
            counters: Counters::default(),
            noise: RateLimit::new(20, 100),
            commands,
            handle: ServerHandle {
                commands: sender,
                waker,
            },
            signals: None,
            reloader: None,
            reload_results: Arc::new(Mutex::new(None)),
            reload_running: false,
            reload_again: false,
            stop_deadline: None,
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
        self.refresh_store_counters();
        supervisor.ready(&self.counters);
        loop {
            let now = Instant::now();
            let wake = [
                self.timers.peek().map(|Reverse((at, _))| *at),
                next_watchdog,
                self.stop_deadline,
                (last_status != Some(self.counters)).then_some(next_status),
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
            self.fire_timers(now);
            if let Some(at) = next_watchdog.filter(|at| *at <= now) {
                supervisor.watchdog();
                next_watchdog = watchdog.map(|w| at.max(now - w) + w);
            }
            if now >= next_status && last_status != Some(self.counters) {
                self.refresh_store_counters();
                supervisor.status(&self.counters);
                last_status = Some(self.counters);
                next_status = now + Duration::from_secs(1);
            }
            if let Some(deadline) = self.stop_deadline {
                if self.counters.active == 0 {
                    return Ok(());
                }
                if now >= deadline {
                    self.abort_all(now);
                    return Ok(());
                }
            }
        }
    }

    fn refresh_store_counters(&mut self) {
        let stats = self.store.stats();
        self.counters.files = stats.files as u64;
        self.counters.bytes = stats.bytes;
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
            }
        }
        let finished = self.reload_results.lock().ok().and_then(|mut r| r.take());
        if let Some(result) = finished {
            self.reload_running = false;
            let outcome = result.map(|settings| self.apply_settings(settings));
            match &outcome {
                Ok(()) => log::info!("configuration reloaded"),
                Err(reason) => {
                    log::error!("reload failed, the running configuration stays: {reason}")
                }
            }
            self.refresh_store_counters();
            supervisor.reloaded(&outcome, &self.counters);
            if std::mem::take(&mut self.reload_again) {
                self.begin_reload(supervisor);
            }
        }
    }

    fn begin_reload(&mut self, supervisor: &mut dyn Supervisor) {
        if self.stop_deadline.is_some() {
            return;
        }
        if self.reload_running {
            self.reload_again = true;
            return;
        }
        supervisor.reloading();
        self.reload_running = true;
        let results = Arc::clone(&self.reload_results);
        let waker = Arc::clone(&self.handle.waker);
        let reloader = self.reloader.clone();
        let settings = self.settings.clone();
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                let result = match reloader {
                    Some(reload) => reload(),
                    None => Ok(settings),
                };
                if let Ok(mut slot) = results.lock() {
                    *slot = Some(result);
                }
                let _ = waker.wake();
            });
        if let Err(e) = spawned {
            self.reload_running = false;
            let outcome = Err(format!("cannot start the reload: {e}"));
            supervisor.reloaded(&outcome, &self.counters);
        }
    }

    fn apply_settings(&mut self, settings: Settings) {
        if settings.single_port != self.settings.single_port {
            log::warn!("single-port changes take effect at the next restart");
        }
        let single_port = self.settings.single_port;
        self.settings = Settings {
            single_port,
            ..settings
        };
    }

    fn begin_stop(&mut self, supervisor: &mut dyn Supervisor) {
        if self.stop_deadline.is_some() {
            return;
        }
        supervisor.stopping();
        log::info!(
            "stopping: {} transfers in flight get up to {:?} to finish",
            self.counters.active,
            self.settings.shutdown_grace
        );
        let now = Instant::now();
        self.stop_deadline = Some(now + self.settings.shutdown_grace);
        // Uploads already stored need not linger for a retransmitted last block.
        for index in 0..self.slots.len() {
            if let Some(Some(slot)) = self.slots.get_mut(index) {
                slot.transfer.stop_lingering(now);
                self.flush(index);
            }
        }
        if !self.settings.single_port {
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
            if let Some(&slot) = self.routes.get(&(index, received.peer)) {
                let len = received.len;
                if let Some(Some(s)) = self.slots.get_mut(slot) {
                    s.transfer
                        .handle_datagram(now, received.peer, &self.buf[..len]);
                }
                self.flush(slot);
                continue;
            }
            self.handle_request(index, received.peer, local, received.len, now);
        }
    }

    fn admission(&self, client: IpAddr) -> Admission {
        if self.stop_deadline.is_some() {
            Admission::Stopping
        } else if self.counters.active >= self.settings.max_transfers {
            Admission::ServerFull
        } else if self.per_client.get(&client).copied().unwrap_or(0)
            >= self.settings.max_transfers_per_client
        {
            Admission::ClientFull
        } else {
            Admission::Open
        }
    }

    fn handle_request(
        &mut self,
        listener: usize,
        raw_peer: SocketAddr,
        local: Option<LocalEnd>,
        len: usize,
        now: Instant,
    ) {
        let client = net::canonical(raw_peer);
        let single_port = self.settings.single_port;
        // A transfer on its own socket talks to the canonical address; one on the
        // listening socket to the address as that socket sees it.
        let transfer_peer = if single_port { raw_peer } else { client };
        let admission = self.admission(client.ip());
        let decision = dispatch::decide(
            now,
            transfer_peer,
            &self.buf[..len],
            &self.store,
            &self.settings.transfer,
            admission,
        );
        let (transfer, permit) = match decision {
            Decision::Read(t) => (t, None),
            Decision::Write(t, permit) => (t, Some(permit)),
            Decision::Refuse(refusal) => {
                return self.refuse(listener, raw_peer, local, refusal, now);
            }
        };
        let socket = if single_port {
            None
        } else {
            let Some(local) = local else {
                log::warn!("no destination address for a request from {client}; dropped");
                return;
            };
            match net::transfer_socket(local.ip, local.ifindex) {
                Ok(socket) => {
                    if permit.is_some() {
                        // A whole window of DATA may arrive before the loop reads any.
                        let window = transfer.window_bytes();
                        net::reserve_receive_buffer(&socket, window, self.receive_buffer);
                    }
                    Some(socket)
                }
                Err(e) => {
                    let refusal = Refusal {
                        code: ErrorCode::NotDefined,
                        message: format!("server cannot open a transfer socket: {e}"),
                        request: None,
                        noise: false,
                    };
                    log::error!("{}", refusal.message);
                    return self.refuse(listener, raw_peer, Some(local), refusal, now);
                }
            }
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Some(socket) = &socket {
            if let Err(e) = self.poller.add(socket, TRANSFER_BASE + index as u64) {
                log::error!("cannot watch a transfer socket: {e}");
                self.free.push(index);
                return;
            }
        } else {
            self.routes.insert((listener, raw_peer), index);
        }
        *self.per_client.entry(client.ip()).or_insert(0) += 1;
        self.counters.active += 1;
        self.slots[index] = Some(Slot {
            transfer,
            permit,
            socket,
            listener,
            local,
            peer: raw_peer,
            scheduled: None,
        });
        self.flush(index);
    }

    fn refuse(
        &mut self,
        listener: usize,
        peer: SocketAddr,
        local: Option<LocalEnd>,
        refusal: Refusal,
        now: Instant,
    ) {
        let client = net::canonical(peer);
        if refusal.noise {
            if !self.noise.allow(now) {
                return;
            }
            let suppressed = std::mem::take(&mut self.noise.suppressed);
            log::warn!(
                "{client}: {} (answered with error {}){}",
                refusal.message,
                refusal.code.as_u16(),
                if suppressed > 0 {
                    format!("; {suppressed} similar datagrams not logged")
                } else {
                    String::new()
                }
            );
        } else {
            self.counters.refused += 1;
            let (op, file) = refusal
                .request
                .as_ref()
                .map_or(("request", ""), |(op, file)| (*op, file.as_str()));
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
        let packet = Packet::Error {
            code: refusal.code,
            message: refusal.message.as_str().into(),
        };
        let Ok(len) = packet.encode(&mut self.buf) else {
            return;
        };
        if let Some(l) = self.listeners.get(listener) {
            let from = if l.wildcard { local } else { None };
            if let Err(e) = net::send_from(&l.socket, &self.buf[..len], peer, from) {
                log::debug!("cannot answer {client}: {e}");
            }
        }
    }

    /// Reads one datagram: level-triggered, the poller reports the socket again if more
    /// are waiting, and lock-step transfers never have more.
    fn read_transfer_socket(&mut self, index: usize, now: Instant) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        let Some(socket) = &slot.socket else { return };
        if let Ok((len, source)) = socket.recv_from(&mut self.buf) {
            slot.transfer.handle_datagram(now, source, &self.buf[..len]);
            self.flush(index);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(Some(slot)) = self.slots.get_mut(index) else {
                continue;
            };
            if slot.scheduled != Some(at) {
                continue;
            }
            slot.scheduled = None;
            let due = slot.transfer.poll_timeout();
            if due.is_some_and(|due| due <= now) {
                slot.transfer.handle_timeout(now);
            }
            self.flush(index);
        }
    }

    /// Sends what the transfer in `index` has to send, handles its events, and keeps
    /// its timer; removes it once it has finished.
    fn flush(&mut self, index: usize) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        match &slot.socket {
            Some(socket) => send_batched(socket, &mut slot.transfer, &mut self.buf, &mut self.gso),
            None => {
                let listener = &self.listeners[slot.listener];
                let from = if listener.wildcard { slot.local } else { None };
                while let Some(t) = slot.transfer.poll_transmit(&mut self.buf) {
                    let sent =
                        net::send_from(&listener.socket, &self.buf[..t.len], t.destination, from);
                    if let Err(e) = sent {
                        // Lost like any datagram: the retransmission timer covers it.
                        log::debug!("send to {}: {e}", t.destination);
                    }
                }
            }
        }
        let mut report = None;
        while let Some(event) = slot.transfer.poll_event() {
            match event {
                Event::Received(data) => {
                    if let Some(permit) = slot.permit.take() {
                        commit_upload(&self.store, permit, data, slot.peer);
                    }
                }
                Event::Finished(r) => report = Some(r),
            }
        }
        if let Some(report) = report {
            self.remove(index, &report);
            return;
        }
        let due = slot.transfer.poll_timeout();
        if let Some(due) = due
            && slot.scheduled.is_none_or(|at| due < at)
        {
            slot.scheduled = Some(due);
            self.timers.push(Reverse((due, index)));
        }
    }

    fn remove(&mut self, index: usize, report: &TransferReport) {
        let Some(slot) = self.slots.get_mut(index).and_then(Option::take) else {
            return;
        };
        // A transfer's own socket leaves the epoll set when it is closed, as `slot` drops.
        if slot.socket.is_none() {
            self.routes.remove(&(slot.listener, slot.peer));
        }
        let client = net::canonical(slot.peer);
        if let Some(count) = self.per_client.get_mut(&client.ip()) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&client.ip());
            }
        }
        self.free.push(index);
        self.counters.active -= 1;
        self.counters.served += 1;
        log_report(report, client);
    }

    fn abort_all(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            if let Some(Some(slot)) = self.slots.get_mut(index) {
                slot.transfer
                    .abort(now, ErrorCode::NotDefined, "server shutting down");
                self.flush(index);
            }
        }
    }
}

/// Sends what `transfer` has to send on its own socket. Consecutive datagrams to one
/// destination that are all the same size but the last (a window of DATA) go out in one
/// `sendmsg` with UDP generic segmentation offload; without GSO (`gso` turns false at the
/// first refusal) each goes on its own. `buf` holds `GSO_MAX_BYTES + MAX_DATAGRAM`.
fn send_batched(socket: &UdpSocket, transfer: &mut Transfer, buf: &mut [u8], gso: &mut bool) {
    let (mut len, mut segment, mut count) = (0, 0, 0);
    let mut destination = None;
    let mut open = false;
    loop {
        let transmit = transfer.poll_transmit(&mut buf[len..]);
        let Some(t) = transmit else { break };
        let joins = *gso
            && open
            && destination == Some(t.destination)
            && t.len <= segment
            && len + t.len <= net::GSO_MAX_BYTES
            && count < net::GSO_MAX_SEGMENTS;
        if joins {
            len += t.len;
            count += 1;
            // A shorter datagram ends a batch: only the last segment may be short.
            open = t.len == segment;
            continue;
        }
        if let Some(peer) = destination {
            send_batch(socket, &buf[..len], segment, peer, gso);
            buf.copy_within(len..len + t.len, 0);
        }
        (len, segment, count) = (t.len, t.len, 1);
        destination = Some(t.destination);
        open = true;
    }
    if let Some(peer) = destination {
        send_batch(socket, &buf[..len], segment, peer, gso);
    }
}

/// Sends datagrams of `segment` bytes laid end to end in `data` (the last may be shorter).
fn send_batch(socket: &UdpSocket, data: &[u8], segment: usize, peer: SocketAddr, gso: &mut bool) {
    if data.len() > segment {
        match net::send_segments(socket, data, segment, peer) {
            Ok(()) => return,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                ) =>
            {
                log::info!("UDP segmentation offload refused ({e}); sending datagrams one by one");
                *gso = false;
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

fn commit_upload(store: &Store, permit: UploadPermit, data: Vec<u8>, peer: SocketAddr) {
    let len = data.len();
    if let Err(refusal) = store.commit_upload(permit, data) {
        log::warn!(
            "upload from {} of {len} bytes arrived whole but was not stored: {refusal}",
            net::canonical(peer)
        );
    }
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
