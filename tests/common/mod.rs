//! Helpers shared by the loopback and binary tests: a blocking TFTP client built on the
//! project's own client engine, and an in-process server on a port-0 socket.

#![allow(dead_code, clippy::unwrap_used)]

pub mod daemon;
pub mod nginx;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::driver::{ReloadError, Reloader, Server, ServerHandle, Supervisor};
use memtftpd::endpoint::{Counters, Settings};
use memtftpd::proto::{MAX_DATAGRAM, Mode, Packet, TransferOptions};
use memtftpd::store::{Preseed, PreseedSource, Store, StoreChanges, UploadPolicy, load_preseed};
use memtftpd::transfer::{ClientConfig, Event, Outcome, Transfer, TransferConfig, TransferReport};

/// Upper bound on any one client transfer in the tests.
pub const TRANSFER_LIMIT: Duration = Duration::from_secs(30);

/// What a client transfer ended with.
#[derive(Debug)]
pub struct ClientResult {
    pub data: Option<Vec<u8>>,
    pub report: TransferReport,
}

impl ClientResult {
    pub fn outcome(&self) -> &Outcome {
        &self.report.outcome
    }

    /// The ERROR code the server answered with, if it did.
    pub fn error_code(&self) -> Option<u16> {
        match &self.report.outcome {
            Outcome::PeerError { code, .. } => Some(code.as_u16()),
            _ => None,
        }
    }
}

fn local_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv6() {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

/// Drives a client engine over a real socket until it finishes; `$received` runs on the
/// engine once the file has arrived.
macro_rules! drive {
    ($engine:expr, $socket:expr, $received:expr) => {{
        let socket: &UdpSocket = $socket;
        let mut engine = $engine;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut data = None;
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < TRANSFER_LIMIT,
                "client transfer ran too long"
            );
            while let Some(t) = engine.poll_transmit(&mut buf) {
                socket.send_to(&buf[..t.len], t.destination).unwrap();
            }
            let mut report = None;
            while let Some(event) = engine.poll_event() {
                match event {
                    Event::Received(bytes) => data = Some(bytes),
                    Event::Finished(r) => report = Some(r),
                }
            }
            if let Some(report) = report {
                break ClientResult { data, report };
            }
            if data.is_some() {
                $received(&mut engine);
                continue;
            }
            let now = Instant::now();
            let due = engine
                .poll_timeout()
                .expect("a running transfer has a timer");
            if due <= now {
                engine.handle_timeout(now);
                continue;
            }
            socket
                .set_read_timeout(Some((due - now).max(Duration::from_millis(1))))
                .unwrap();
            match socket.recv_from(&mut buf) {
                Ok((len, from)) => engine.handle_datagram(Instant::now(), from, &buf[..len]),
                // A signal to the test process: receive again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    engine.handle_timeout(Instant::now())
                }
                Err(e) => panic!("client receive: {e}"),
            }
        }
    }};
}

/// Client options for the tests: patient enough for a loaded machine, quick to give up
/// when the server is silent.
pub fn client_config(options: TransferOptions) -> ClientConfig {
    ClientConfig {
        options,
        timeout: Duration::from_millis(500),
        retries: 6,
        adaptive: true,
        max_download_size: 1 << 30,
    }
}

/// Fetches `name` from `server`.
pub fn fetch(server: SocketAddr, name: &str, mode: Mode, options: TransferOptions) -> ClientResult {
    fetch_from(local_for(server), server, name, mode, options)
}

/// Fetches `name` from `server` with a client bound to `bind` (another loopback address,
/// say).
pub fn fetch_from(
    bind: SocketAddr,
    server: SocketAddr,
    name: &str,
    mode: Mode,
    options: TransferOptions,
) -> ClientResult {
    let socket = UdpSocket::bind(bind).unwrap();
    let engine = Transfer::download(Instant::now(), server, name, mode, client_config(options));
    // On loopback the last ACK is not lost: no need to linger.
    drive!(engine, &socket, |e: &mut Transfer| e
        .stop_lingering(Instant::now()))
}

/// Uploads `data` as `name` to `server`.
pub fn upload(
    server: SocketAddr,
    name: &str,
    mode: Mode,
    data: &[u8],
    options: TransferOptions,
) -> ClientResult {
    upload_from(local_for(server), server, name, mode, data, options)
}

/// Uploads `data` as `name` to `server` with a client bound to `bind` (another loopback
/// address, say).
pub fn upload_from(
    bind: SocketAddr,
    server: SocketAddr,
    name: &str,
    mode: Mode,
    data: &[u8],
    options: TransferOptions,
) -> ClientResult {
    let socket = UdpSocket::bind(bind).unwrap();
    let engine = Transfer::upload(
        Instant::now(),
        server,
        name,
        mode,
        Bytes::copy_from_slice(data),
        client_config(options),
    );
    drive!(engine, &socket, |_: &mut Transfer| {})
}

/// Sends one raw datagram to `server` and waits for the answer.
pub fn exchange(server: SocketAddr, datagram: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    let socket = UdpSocket::bind(local_for(server)).unwrap();
    socket.send_to(datagram, server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..len].to_vec(), from))
}

/// A lock-step read driven by hand, to hold a transfer open at a chosen point.
pub struct RawRead {
    pub socket: UdpSocket,
    /// The transfer's own address (its TID).
    pub tid: SocketAddr,
    received: Vec<u8>,
    block: u16,
    /// The last block (shorter than 512 bytes) has arrived.
    complete: bool,
}

impl RawRead {
    /// Sends an RRQ for `name` (no options) and waits for DATA 1, without acknowledging it.
    pub fn start(server: SocketAddr, name: &str) -> RawRead {
        let socket = UdpSocket::bind(local_for(server)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(&request(1, name, "octet"), server).unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (len, tid) = socket.recv_from(&mut buf).unwrap();
        let Ok(Packet::Data { block, data }) = Packet::parse(&buf[..len]) else {
            panic!("expected DATA 1, got {:?}", Packet::parse(&buf[..len]));
        };
        assert_eq!(block.0, 1);
        RawRead {
            socket,
            tid,
            received: data.to_vec(),
            block: 1,
            complete: data.len() < 512,
        }
    }

    /// Acknowledges the block it holds and waits for the next one: the server has its
    /// answer, so the transfer is verified.
    pub fn step(&mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let ack = Packet::Ack {
            block: memtftpd::proto::BlockNumber(self.block),
        };
        let len = ack.encode(&mut buf).unwrap();
        self.socket.send_to(&buf[..len], self.tid).unwrap();
        let (len, _) = self.socket.recv_from(&mut buf).unwrap();
        let Ok(Packet::Data { block, data }) = Packet::parse(&buf[..len]) else {
            panic!("expected DATA");
        };
        assert_eq!(block.0, self.block.wrapping_add(1));
        self.received.extend_from_slice(data);
        self.block = block.0;
        self.complete = data.len() < 512;
    }

    /// Acknowledges block by block to the end; returns the whole file.
    pub fn finish(mut self) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let ack = Packet::Ack {
                block: memtftpd::proto::BlockNumber(self.block),
            };
            let len = ack.encode(&mut buf).unwrap();
            self.socket.send_to(&buf[..len], self.tid).unwrap();
            if self.complete {
                return self.received;
            }
            let (len, from) = self.socket.recv_from(&mut buf).unwrap();
            assert_eq!(from, self.tid, "DATA from the transfer's port");
            let Ok(Packet::Data { block, data }) = Packet::parse(&buf[..len]) else {
                panic!("expected DATA");
            };
            if block.0 == self.block.wrapping_add(1) {
                self.received.extend_from_slice(data);
                self.block = block.0;
                self.complete = data.len() < 512;
            }
        }
    }
}

/// The error code of an ERROR datagram.
pub fn error_code(datagram: &[u8]) -> Option<u16> {
    match Packet::parse(datagram) {
        Ok(Packet::Error { code, .. }) => Some(code.as_u16()),
        _ => None,
    }
}

/// The request bytes for `op` (1 read, 2 write).
pub fn request(op: u16, name: &str, mode: &str) -> Vec<u8> {
    let mut bytes = op.to_be_bytes().to_vec();
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(mode.as_bytes());
    bytes.push(0);
    bytes
}

/// What the server told its supervisor, in order.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub notes: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<(Mutex<Recorded>, Condvar)>);

impl Recorder {
    pub fn notes(&self) -> Vec<String> {
        self.0.0.lock().unwrap().notes.clone()
    }

    fn note(&self, note: String) {
        self.0.0.lock().unwrap().notes.push(note);
        self.0.1.notify_all();
    }

    /// Waits (at most 20 s) until a note satisfies `f`.
    pub fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut recorded = self.0.0.lock().unwrap();
        loop {
            if let Some(n) = recorded.notes.iter().find(|n| f(n)) {
                return n.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "no {what} in {:?}", recorded.notes);
            recorded = self.0.1.wait_timeout(recorded, deadline - now).unwrap().0;
        }
    }
}

impl Supervisor for Recorder {
    fn ready(&mut self, counters: &Counters) {
        self.note(format!("ready {}", counters.status_line()));
    }
    fn status(&mut self, counters: &Counters) {
        self.note(format!("status {}", counters.status_line()));
    }
    fn reloading(&mut self) {
        self.note("reloading".into());
    }
    fn reloaded(&mut self, result: &Result<StoreChanges, ReloadError>, _: &Counters) {
        self.note(format!("reloaded {result:?}"));
    }
    fn rescanned(&mut self, result: &Result<StoreChanges, ReloadError>, _: &Counters) {
        self.note(format!("rescanned {result:?}"));
    }
    fn stopping(&mut self) {
        self.note("stopping".into());
    }
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
    fn watchdog(&mut self) {}
}

/// Settings for in-process servers: short timeouts so failures show quickly.
pub fn settings() -> Settings {
    Settings {
        transfer: TransferConfig {
            timeout: Duration::from_millis(500),
            retries: 5,
            max_blksize: 65464,
            max_windowsize: 64,
            max_timeout: 255,
            max_upload_size: 1 << 20,
        },
        max_transfers: 100,
        max_transfers_per_client: 50,
        max_unverified_per_client: 50,
        ipv6_client_prefix: 64,
        single_port: false,
        shutdown_grace: Duration::from_secs(10),
        policy: Default::default(),
        port_range: None,
        uploads_in_flight: memtftpd::endpoint::UploadsInFlight::default(),
    }
}

pub fn upload_policy(enabled: bool) -> UploadPolicy {
    UploadPolicy {
        enabled,
        max_file_size: 1 << 20,
        max_total_size: 4 << 20,
        overwrite: false,
        allow: vec!["uploads/".into()],
    }
}

/// A store preseeded with `files` (name, bytes).
pub fn store_with(files: &[(&str, &[u8])], upload: UploadPolicy) -> Arc<Store> {
    let mut preseed = Preseed::new(false);
    for (name, bytes) in files {
        preseed.insert(name.parse().unwrap(), Bytes::copy_from_slice(bytes));
    }
    Arc::new(Store::new(preseed, upload))
}

/// A store preseeded from a directory.
pub fn store_from(dir: &Path, upload: UploadPolicy) -> Arc<Store> {
    let source = PreseedSource {
        path: dir.to_path_buf(),
        prefix: String::new(),
        optional: false,
        on_error: memtftpd::store::OnError::Skip,
    };
    Arc::new(Store::new(load_preseed(&[source], false).unwrap(), upload))
}

/// A server running on its own thread.
pub struct Running {
    pub addresses: Vec<SocketAddr>,
    pub handle: ServerHandle,
    pub recorder: Recorder,
    pub thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> Vec<String> {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.recorder.notes()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a server on port 0 of each address in `binds`.
pub fn start(binds: &[&str], store: Arc<Store>, settings: Settings) -> Running {
    start_with(binds, store, settings, None)
}

pub fn start_with(
    binds: &[&str],
    store: Arc<Store>,
    settings: Settings,
    reloader: Option<Reloader>,
) -> Running {
    let sockets: Vec<UdpSocket> = binds
        .iter()
        .map(|b| memtftpd::driver::bind_listener(b.parse().unwrap(), 4 << 20).unwrap())
        .collect();
    // 4 MiB, the configuration's default receive-buffer.
    let mut server = Server::new(sockets, store, settings, 4 << 20).unwrap();
    if let Some(reloader) = reloader {
        server = server.with_reloader(reloader);
    }
    let addresses = server.local_addrs();
    let handle = server.handle();
    let recorder = Recorder::default();
    let mut supervisor = recorder.clone();
    let thread = std::thread::spawn(move || server.run(&mut supervisor).unwrap());
    recorder.wait_for("READY", |n| n.starts_with("ready"));
    Running {
        addresses,
        handle,
        recorder,
        thread: Some(thread),
    }
}
