//! A deterministic simulation of TFTP transfers: a client and the server-side transfers
//! joined by a virtual link with a virtual clock and a seeded random generator that
//! drops, duplicates, reorders and delays datagrams. No sockets, no sleeps.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::proto::{MAX_DATAGRAM, Mode, Packet, netascii_len};
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
    /// Each datagram is delayed by `delay` plus up to `jitter`; jitter reorders.
    pub delay: Duration,
    pub jitter: Duration,
}

impl LinkFaults {
    pub const PERFECT: LinkFaults = LinkFaults {
        loss: 0.0,
        duplication: 0.0,
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
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
    /// Every datagram offered to the link, in order (kept only when `trace` is set).
    pub log: Vec<Sent>,
    pub trace: bool,
}

impl Link {
    pub fn new(faults: LinkFaults, rng: Rng) -> Link {
        Link {
            faults,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            log: Vec::new(),
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
            self.queue.push(Reverse(InFlight {
                at: now + self.faults.delay + jitter,
                seq: self.seq,
                from,
                to,
                bytes: bytes.to_vec(),
            }));
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(d)| d.at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.next_delivery()? <= now {
            self.queue.pop().map(|Reverse(d)| d)
        } else {
            None
        }
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
}

pub const CLIENT: &str = "127.0.0.2:40000";
pub const SERVER: &str = "127.0.0.1:69";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Runs a scenario to the end; panics if it runs away (more than `max_steps` steps).
pub fn run(scenario: &Scenario) -> Run {
    let started = Instant::now();
    let mut now = started;
    let client_addr = addr(CLIENT);
    let listen = addr(SERVER);
    let mut link = Link::new(scenario.faults, Rng::new(scenario.seed ^ 0x5eed));
    link.trace = scenario.trace;
    let filename = "boot/file.bin";
    let client = match scenario.direction {
        Direction::Download => {
            Transfer::download(now, listen, filename, scenario.mode, scenario.client)
        }
        Direction::Upload => Transfer::upload(
            now,
            listen,
            filename,
            scenario.mode,
            scenario.file.clone(),
            scenario.client,
        ),
    };
    // (address, machine, finished)
    let mut machines: Vec<(SocketAddr, Transfer, bool)> = vec![(client_addr, client, false)];
    let mut next_port = 50000u16;
    let mut client_report = None;
    let mut servers = Vec::new();
    let mut delivered = None;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let max_steps = 50_000_000u64;
    for _step in 0..max_steps {
        // Send what every machine has to send, and collect events.
        for (address, machine, finished) in machines.iter_mut() {
            while let Some(t) = machine.poll_transmit(&mut buf) {
                link.send(now, *address, t.destination, &buf[..t.len]);
            }
            while let Some(event) = machine.poll_event() {
                match event {
                    Event::Received(bytes) => {
                        let is_client = *address == client_addr;
                        let wanted = match scenario.direction {
                            Direction::Download => is_client,
                            Direction::Upload => !is_client,
                        };
                        assert!(wanted, "Received on the sending side");
                        assert!(delivered.is_none(), "delivered twice");
                        delivered = Some(bytes);
                    }
                    Event::Finished(report) => {
                        *finished = true;
                        if *address == client_addr {
                            client_report = Some(report);
                        } else {
                            servers.push((*address, report));
                        }
                    }
                }
            }
        }
        machines.retain(|(_, _, finished)| !finished);
        if client_report.is_some() && machines.is_empty() {
            break;
        }
        // Advance the clock to the next thing that happens.
        let next_timer = machines
            .iter()
            .filter_map(|(_, m, _)| m.poll_timeout())
            .min();
        let next = match (link.next_delivery(), next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("a machine with nothing to wait for"),
        };
        now = now.max(next);
        while let Some(d) = link.pop_due(now) {
            if d.to == listen {
                let spawned = spawn_server(now, d.from, &d.bytes, scenario);
                if let Some(machine) = spawned {
                    let address = SocketAddr::new(listen.ip(), next_port);
                    next_port += 1;
                    machines.push((address, machine, false));
                }
            } else if let Some((_, machine, _)) = machines.iter_mut().find(|(a, _, _)| *a == d.to) {
                machine.handle_datagram(now, d.from, &d.bytes);
            }
        }
        for (_, machine, _) in machines.iter_mut() {
            if machine.poll_timeout().is_some_and(|t| t <= now) {
                machine.handle_timeout(now);
            }
        }
    }
    let client = client_report.expect("the simulation ran away");
    let (primary, strays): (Vec<_>, Vec<_>) =
        servers.into_iter().partition(|(a, _)| *a == client.peer);
    Run {
        client,
        server: primary.into_iter().next().map(|(_, r)| r),
        strays: strays.into_iter().map(|(_, r)| r).collect(),
        delivered,
        started,
        ended: now,
        log: link.log,
    }
}

/// The listener: turns a request into a server-side transfer.
fn spawn_server(
    now: Instant,
    peer: SocketAddr,
    bytes: &[u8],
    scenario: &Scenario,
) -> Option<Transfer> {
    match Packet::parse(bytes) {
        Ok(Packet::Rrq(request)) => {
            let wire_len = match request.mode {
                Mode::Netascii => netascii_len(&scenario.file),
                Mode::Octet => scenario.file.len() as u64,
            };
            let file = scenario.file.clone();
            Some(Transfer::read(
                now,
                peer,
                &request,
                file,
                wire_len,
                &scenario.server,
            ))
        }
        Ok(Packet::Wrq(request)) => Some(Transfer::write(
            now,
            peer,
            &request,
            scenario.server.max_upload_size,
            &scenario.server,
        )),
        _ => None,
    }
}

/// True if the run ended because the client or its server ran out of retries.
pub fn cut_off_by_retries(run: &Run) -> bool {
    run.client.outcome == Outcome::TimedOut
        || run
            .server
            .as_ref()
            .is_some_and(|r| r.outcome == Outcome::TimedOut)
}
