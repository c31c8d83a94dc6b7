//! A deterministic simulation of TFTP: clients and the real server endpoint (with a real
//! store) joined by a virtual link with a virtual clock and a seeded random generator
//! that drops, duplicates, reorders and delays datagrams. No sockets, no sleeps: the
//! [`World`] plays the driver, giving each transfer the endpoint starts a port of its own
//! (or, in single-port mode, routing everything through the listening address).

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::endpoint::{
    DatagramEvent, Endpoint, EndpointEvent, LocalEnd, Route, Settings, TransferHandle, Via,
};
use memtftpd::proto::{MAX_DATAGRAM, Mode};
use memtftpd::store::{Preseed, Store, UploadPolicy};
use memtftpd::transfer::{ClientConfig, Event, Outcome, Transfer, TransferConfig, TransferReport};

/// SplitMix64: small, seedable and good enough to schedule faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// How the virtual link misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct LinkFaults {
    pub loss: f64,
    pub duplication: f64,
    /// Each datagram is delayed by `delay` plus up to `jitter`.
    pub delay: Duration,
    pub jitter: Duration,
    /// Jitter reorders datagrams (true), or only delays them, as a queue does: then no
    /// datagram overtakes an earlier one between the same two ends.
    pub reorder: bool,
}

impl LinkFaults {
    pub const PERFECT: LinkFaults = LinkFaults {
        loss: 0.0,
        duplication: 0.0,
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
        reorder: false,
    };
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// A datagram as the link saw it being sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The virtual link: a priority queue of datagrams in flight.
pub struct Link {
    faults: LinkFaults,
    rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Without reordering: the latest delivery time queued between two ends.
    last_due: HashMap<(SocketAddr, SocketAddr), Instant>,
    /// Every datagram offered to the link, in order (kept only when `trace` is set).
    pub log: Vec<Sent>,
    /// Every datagram the link delivered, in order (kept only when `trace` is set).
    pub deliveries: Vec<Sent>,
    pub trace: bool,
}

impl Link {
    pub fn new(faults: LinkFaults, rng: Rng) -> Link {
        Link {
            faults,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            last_due: HashMap::new(),
            log: Vec::new(),
            deliveries: Vec::new(),
            trace: false,
        }
    }

    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if self.trace {
            self.log.push(Sent {
                at: now,
                from,
                to,
                bytes: bytes.to_vec(),
            });
        }
        if self.rng.chance(self.faults.loss) {
            return;
        }
        let copies = if self.rng.chance(self.faults.duplication) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_ns = self.faults.jitter.as_nanos() as u64;
            let jitter = Duration::from_nanos(if jitter_ns == 0 {
                0
            } else {
                self.rng.below(jitter_ns)
            });
            self.seq += 1;
            let mut at = now + self.faults.delay + jitter;
            if !self.faults.reorder {
                let last = self.last_due.entry((from, to)).or_insert(at);
                at = at.max(*last);
                *last = at;
            }
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                bytes: bytes.to_vec(),
            }));
        }
    }

    /// Changes how the link misbehaves from now on (what is in flight stays in flight).
    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(d)| d.at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.next_delivery()? > now {
            return None;
        }
        let d = self.queue.pop().map(|Reverse(d)| d)?;
        if self.trace {
            self.deliveries.push(Sent {
                at: d.at,
                from: d.from,
                to: d.to,
                bytes: d.bytes.clone(),
            });
        }
        Some(d)
    }
}

/// Which way the file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Download,
    Upload,
}

/// One simulated transfer.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub direction: Direction,
    pub mode: Mode,
    pub file: Bytes,
    pub server: TransferConfig,
    pub client: ClientConfig,
    pub faults: LinkFaults,
    pub seed: u64,
    /// Keep every datagram in `Run::log`.
    pub trace: bool,
}

/// What happened in a run.
#[derive(Debug)]
pub struct Run {
    /// The client's report.
    pub client: TransferReport,
    /// The report of the server-side transfer the client talked to, if it started.
    pub server: Option<TransferReport>,
    /// Reports of server-side transfers opened by duplicated requests, which the client
    /// turned away with ERROR 5 (or left to time out once it was gone).
    pub strays: Vec<TransferReport>,
    /// The bytes the receiving end handed over, if it did.
    pub delivered: Option<Vec<u8>>,
    pub started: Instant,
    pub ended: Instant,
    pub log: Vec<Sent>,
    pub deliveries: Vec<Sent>,
}

pub const CLIENT: &str = "127.0.0.2:40000";
pub const SERVER: &str = "127.0.0.1:69";
/// The name the scenarios fetch and upload.
pub const FILENAME: &str = "boot/file.bin";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Settings that let every scenario's transfers in: the limits are the tests' business.
pub fn open_settings(transfer: TransferConfig, single_port: bool) -> Settings {
    Settings {
        transfer,
        max_transfers: 10_000,
        max_transfers_per_client: 10_000,
        max_unverified_per_client: 10_000,
        ipv6_client_prefix: 64,
        single_port,
        shutdown_grace: Duration::from_secs(10),
        policy: Default::default(),
        port_range: None,
        uploads_in_flight: memtftpd::endpoint::UploadsInFlight::default(),
    }
}

/// A store holding `files`, taking uploads of up to `max_upload` bytes each.
pub fn store_with(files: &[(&str, Bytes)], max_upload: u64) -> Arc<Store> {
    let mut preseed = Preseed::new(false);
    for (name, data) in files {
        preseed.insert(name.parse().expect("a valid name"), data.clone());
    }
    let upload = UploadPolicy {
        enabled: true,
        max_file_size: max_upload,
        max_total_size: u64::MAX,
        overwrite: false,
        allow: Vec::new(),
    };
    Arc::new(Store::new(preseed, upload))
}

/// A client of the world: its transfer and how it ended.
#[derive(Debug)]
pub struct Client {
    pub address: SocketAddr,
    transfer: Transfer,
    pub report: Option<TransferReport>,
    pub received: Option<Vec<u8>>,
}

/// The endpoint, its clients and the link between them, in virtual time.
pub struct World {
    pub now: Instant,
    pub started: Instant,
    pub link: Link,
    pub endpoint: Endpoint,
    pub store: Arc<Store>,
    pub listen: SocketAddr,
    pub clients: Vec<Client>,
    /// The address each transfer with a socket of its own sends from.
    tids: HashMap<TransferHandle, SocketAddr>,
    handles: HashMap<SocketAddr, TransferHandle>,
    next_port: u16,
    /// Server-side reports as transfers end: (the transfer's address, report).
    pub server_reports: Vec<(SocketAddr, TransferReport)>,
    /// Uploads the endpoint handed on, in order; committed to the store too.
    pub uploads: Vec<Vec<u8>>,
    /// The link's MTU, handed to the endpoint when it asks (as the driver learns it).
    pub mtu: Option<u32>,
    buf: Vec<u8>,
}

impl World {
    pub fn new(store: Arc<Store>, settings: Settings, faults: LinkFaults, seed: u64) -> World {
        let now = Instant::now();
        World {
            now,
            started: now,
            link: Link::new(faults, Rng::new(seed ^ 0x5eed)),
            endpoint: Endpoint::new(Arc::clone(&store), settings),
            store,
            listen: addr(SERVER),
            clients: Vec::new(),
            tids: HashMap::new(),
            handles: HashMap::new(),
            next_port: 50000,
            server_reports: Vec::new(),
            uploads: Vec::new(),
            mtu: None,
            buf: vec![0u8; MAX_DATAGRAM],
        }
    }

    /// Adds a client at `address` running `transfer` (built to talk to `self.listen`).
    pub fn add_client(&mut self, address: SocketAddr, transfer: Transfer) -> usize {
        self.clients.push(Client {
            address,
            transfer,
            report: None,
            received: None,
        });
        self.clients.len() - 1
    }

    /// A download of `name` by a new client at `address`.
    pub fn download(&mut self, address: &str, name: &str, config: ClientConfig) -> usize {
        let transfer = Transfer::download(self.now, self.listen, name, Mode::Octet, config);
        self.add_client(addr(address), transfer)
    }

    /// The server-side address of transfer `handle` (its port, or the listener's).
    fn address_of(&self, via: Via) -> SocketAddr {
        match via {
            Via::Transfer(handle) => self.tids.get(&handle).copied().unwrap_or(self.listen),
            Via::Listener { .. } => self.listen,
        }
    }

    /// Sends what every end has to send and takes their events.
    pub fn flush(&mut self) {
        let now = self.now;
        for client in &mut self.clients {
            while let Some(t) = client.transfer.poll_transmit(&mut self.buf) {
                self.link
                    .send(now, client.address, t.destination, &self.buf[..t.len]);
            }
            while let Some(event) = client.transfer.poll_event() {
                match event {
                    Event::Received(bytes) => {
                        assert!(client.received.is_none(), "delivered twice");
                        client.received = Some(bytes);
                    }
                    Event::Finished(report) => client.report = Some(report),
                }
            }
        }
        while let Some(out) = self.endpoint.poll_transmit(&mut self.buf) {
            let from = self.address_of(out.via);
            let t = out.transmit;
            self.link.send(now, from, t.destination, &self.buf[..t.len]);
        }
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                EndpointEvent::Ended { handle, report, .. } => {
                    let address = self.tids.remove(&handle).unwrap_or(self.listen);
                    self.handles.remove(&address);
                    self.server_reports.push((address, report));
                }
                EndpointEvent::Commit(commit) => {
                    self.uploads.push(commit.data.clone());
                    self.endpoint
                        .commit(now, commit, None)
                        .expect("the store takes it");
                    // The final ACK is on its way: send it.
                    while let Some(out) = self.endpoint.poll_transmit(&mut self.buf) {
                        let from = self.address_of(out.via);
                        let t = out.transmit;
                        self.link.send(now, from, t.destination, &self.buf[..t.len]);
                    }
                }
                EndpointEvent::Refused(_) | EndpointEvent::Suppressed(_) => {}
            }
        }
    }

    /// True once every client has finished and the endpoint has nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.clients.iter().all(|c| c.report.is_some()) && self.endpoint.counters().active == 0
    }

    /// Delivers what is due and runs the timers at the next instant anything happens;
    /// false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let next = [
            self.link.next_delivery(),
            self.endpoint.poll_timeout(),
            (self.clients.iter())
                .filter_map(|c| c.transfer.poll_timeout())
                .min(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(d) = self.link.pop_due(now) {
            self.deliver(d);
        }
        for client in &mut self.clients {
            if client.transfer.poll_timeout().is_some_and(|t| t <= now) {
                client.transfer.handle_timeout(now);
            }
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        true
    }

    fn deliver(&mut self, d: InFlight) {
        let now = self.now;
        if d.to == self.listen {
            let mtu = self
                .mtu
                .filter(|_| self.endpoint.wants_mtu(d.from, &d.bytes));
            let local = Some(LocalEnd {
                ip: self.listen.ip(),
                ifindex: 0,
                mtu,
            });
            let event = self.endpoint.handle(now, 0, local, d.from, &d.bytes);
            if let Some(DatagramEvent::NewTransfer {
                handle,
                route: Route::Own,
                ..
            }) = event
            {
                let address = SocketAddr::new(self.listen.ip(), self.next_port);
                self.next_port += 1;
                self.tids.insert(handle, address);
                self.handles.insert(address, handle);
            }
        } else if let Some(&handle) = self.handles.get(&d.to) {
            self.endpoint.handle_transfer(now, handle, d.from, &d.bytes);
        } else if let Some(client) = self.clients.iter_mut().find(|c| c.address == d.to) {
            client.transfer.handle_datagram(now, d.from, &d.bytes);
        }
    }

    /// Runs until idle; panics if it runs away (more than `max_steps` steps).
    pub fn run(&mut self, max_steps: u64) {
        for _ in 0..max_steps {
            if !self.step() || self.is_idle() {
                self.flush();
                return;
            }
        }
        panic!("the simulation ran away");
    }
}

/// Runs a scenario to the end; panics if it runs away.
pub fn run(scenario: &Scenario) -> Run {
    let store = match scenario.direction {
        Direction::Download => store_with(
            &[(FILENAME, scenario.file.clone())],
            scenario.server.max_upload_size,
        ),
        Direction::Upload => store_with(&[], scenario.server.max_upload_size),
    };
    let settings = open_settings(scenario.server, false);
    let mut world = World::new(store, settings, scenario.faults, scenario.seed);
    world.link.trace = scenario.trace;
    let listen = world.listen;
    let transfer = match scenario.direction {
        Direction::Download => {
            Transfer::download(world.now, listen, FILENAME, scenario.mode, scenario.client)
        }
        Direction::Upload => Transfer::upload(
            world.now,
            listen,
            FILENAME,
            scenario.mode,
            scenario.file.clone(),
            scenario.client,
        ),
    };
    world.add_client(addr(CLIENT), transfer);
    world.run(50_000_000);
    let Some(client) = world.clients.pop() else {
        unreachable!("one client was added");
    };
    let report = client.report.expect("the simulation ran away");
    let delivered = match scenario.direction {
        Direction::Download => client.received,
        Direction::Upload => world.uploads.pop(),
    };
    let (primary, strays): (Vec<_>, Vec<_>) =
        (world.server_reports.into_iter()).partition(|(a, _)| *a == report.peer);
    Run {
        client: report,
        server: primary.into_iter().next().map(|(_, r)| r),
        strays: strays.into_iter().map(|(_, r)| r).collect(),
        delivered,
        started: world.started,
        ended: world.now,
        log: world.link.log,
        deliveries: world.link.deliveries,
    }
}

/// Spurious retransmissions of a traced run (of fewer than 65,536 blocks): DATA blocks
/// sent when the receiving end (the client for a download) had already taken them in
/// order, as the link's logs of sends and deliveries show. A delivery and a send at the
/// same instant are taken in that order, as [`World::step`] runs them.
pub fn spurious_data(run: &Run, direction: Direction) -> u64 {
    let client = addr(CLIENT);
    let to_receiver = |s: &Sent| match direction {
        Direction::Download => s.to == client,
        Direction::Upload => s.from == client,
    };
    let data_block = |s: &Sent| match memtftpd::proto::Packet::parse(&s.bytes) {
        Ok(memtftpd::proto::Packet::Data { block, .. }) if to_receiver(s) => Some(block.0),
        _ => None,
    };
    let mut events: Vec<(Instant, u8, u16)> = Vec::new();
    events.extend(
        run.deliveries
            .iter()
            .filter_map(|s| Some((s.at, 0, data_block(s)?))),
    );
    events.extend(
        run.log
            .iter()
            .filter_map(|s| Some((s.at, 1, data_block(s)?))),
    );
    // Stable: each log is in order already.
    events.sort_by_key(|&(at, kind, _)| (at, kind));
    let (mut expected, mut spurious) = (1u16, 0);
    for (_, kind, block) in events {
        match kind {
            0 if block == expected => expected += 1,
            1 if block < expected => spurious += 1,
            _ => {}
        }
    }
    spurious
}

/// True if the run ended because the client or its server ran out of retries.
pub fn cut_off_by_retries(run: &Run) -> bool {
    run.client.outcome == Outcome::TimedOut
        || run
            .server
            .as_ref()
            .is_some_and(|r| r.outcome == Outcome::TimedOut)
}
