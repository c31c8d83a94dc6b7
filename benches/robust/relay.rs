//! A lossy UDP relay between TFTP clients and a server, like a NAT on a bad link: every
//! client's traffic leaves from one address of the relay (its own port per client, as a
//! NAT maps them), so the server sees all clients as one address; each direction drops,
//! duplicates and delays datagrams with seeded randomness.
//!
//! (With one outside address per client it is only the lossy link.)
//!
//! Clients send their request to [`Relay::addr`]. The relay forwards it from the client's
//! outside socket (on [`RelayConfig::outside`]) to the server; each address the server
//! answers from (a transfer's TID) gets a socket of its own towards the client, so the
//! client sees as many TIDs as the server uses and behaves as it would without the relay.
//!
//! The relay also counts what the server sends: a DATA block (or OACK) that the server
//! sent before is a retransmission; one that the relay had already delivered to the
//! client is a spurious retransmission (the client had it).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollEvent;

use crate::epoll::Readiness;

/// How one direction mistreats datagrams.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub drop: f64,
    /// Probability that a datagram that is not dropped is delivered twice.
    pub duplicate: f64,
    /// Probability that a delivered copy is held back by `delay_min..delay_max`.
    pub delay: f64,
    pub delay_min: Duration,
    pub delay_max: Duration,
}

impl Impairment {
    /// The lossy link of the robustness suite: 10 % dropped, 5 % duplicated, 3 % delayed
    /// by 50-300 ms.
    pub const LOSSY: Impairment = Impairment {
        drop: 0.10,
        duplicate: 0.05,
        delay: 0.03,
        delay_min: Duration::from_millis(50),
        delay_max: Duration::from_millis(300),
    };
}

/// What the relay is set up with.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The server's listening address.
    pub server: SocketAddr,
    /// Where clients send their requests (port 0: any).
    pub front: SocketAddr,
    /// The relay's addresses towards the server, one per client in turn: a single one
    /// makes it a NAT (every client looks like one address to the server); one per
    /// client, just a lossy link.
    pub outside: Vec<IpAddr>,
    /// Both directions get the same impairment (each its own random draws).
    pub impairment: Impairment,
    pub seed: u64,
    /// The relay stops by itself after this long.
    pub limit: Duration,
}

/// What the relay saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Clients (request source addresses) seen.
    pub flows: usize,
    /// Datagrams from the server, and from the clients.
    pub from_server: u64,
    pub from_clients: u64,
    /// DATA blocks and OACKs the server had sent before on the same transfer.
    pub retransmissions: u64,
    /// Of those, the ones the relay had already delivered to the client.
    pub spurious: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

/// A running relay (its own thread).
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<RelayStats>>>,
}

impl Relay {
    /// Binds the front socket and starts relaying.
    pub fn start(config: RelayConfig) -> io::Result<Relay> {
        let front = UdpSocket::bind(config.front)?;
        front.set_nonblocking(true)?;
        let addr = front.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || Relaying::new(config, front)?.run(&flag))?;
        Ok(Relay {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where clients send their requests.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the relay; returns what it counted.
    pub fn stop(mut self) -> io::Result<RelayStats> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the relay thread panicked")),
            None => Err(io::Error::other("the relay was stopped before")),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which socket an epoll token stands for.
#[derive(Debug, Clone, Copy)]
enum Token {
    Front,
    /// The outside socket of flow `.0`.
    Outside(usize),
    /// Flow `.0`'s socket towards the client for the server's address `.1`.
    Face(usize, usize),
}

/// One client behind the relay.
#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    outside: UdpSocket,
    /// The server's addresses seen on this flow, each with its socket towards the client.
    faces: Vec<(SocketAddr, UdpSocket)>,
    /// (server address, block) of every DATA (block >= 1) and OACK (block 0) sent by the
    /// server, and of those delivered to the client.
    sent: HashSet<(SocketAddr, u16)>,
    delivered: HashSet<(SocketAddr, u16)>,
}

/// A datagram held back.
#[derive(Debug)]
struct Held {
    from: Token,
    to: SocketAddr,
    bytes: Vec<u8>,
    /// For a server's block: (flow, server address, block), marked delivered when sent.
    block: Option<(usize, SocketAddr, u16)>,
}

struct Relaying {
    config: RelayConfig,
    poll: Readiness,
    front: UdpSocket,
    flows: Vec<Flow>,
    by_client: HashMap<SocketAddr, usize>,
    tokens: Vec<Token>,
    held: BinaryHeap<Reverse<(Instant, u64)>>,
    held_bytes: HashMap<u64, Held>,
    next_held: u64,
    rng: u64,
    stats: RelayStats,
}

impl Relaying {
    fn new(config: RelayConfig, front: UdpSocket) -> io::Result<Relaying> {
        let poll = Readiness::new()?;
        poll.add(&front, 0)?;
        let rng = config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Ok(Relaying {
            config,
            poll,
            front,
            flows: Vec::new(),
            by_client: HashMap::new(),
            tokens: vec![Token::Front],
            held: BinaryHeap::new(),
            held_bytes: HashMap::new(),
            next_held: 0,
            rng,
            stats: RelayStats::default(),
        })
    }

    fn run(mut self, stop: &AtomicBool) -> io::Result<RelayStats> {
        let end = Instant::now() + self.config.limit;
        let mut events = vec![EpollEvent::empty(); 256];
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let now = Instant::now();
            let mut wait = Duration::from_millis(20);
            if let Some(Reverse((at, _))) = self.held.peek() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            let ready = self.poll.wait(&mut events, wait)?;
            for event in &events[..ready] {
                let token = self.tokens[event.data() as usize];
                // Bounded: a socket is read at most 64 times per wake-up.
                for _ in 0..64 {
                    let received = match token {
                        Token::Front => self.front.recv_from(&mut buf),
                        Token::Outside(f) => self.flows[f].outside.recv_from(&mut buf),
                        Token::Face(f, k) => self.flows[f].faces[k].1.recv_from(&mut buf),
                    };
                    match received {
                        Ok((len, from)) => self.on_datagram(token, from, &buf[..len])?,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            self.send_due(Instant::now());
        }
        self.stats.flows = self.flows.len();
        Ok(self.stats)
    }

    fn on_datagram(&mut self, token: Token, from: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        match token {
            Token::Front => {
                self.stats.from_clients += 1;
                let flow = self.flow_of(from)?;
                let server = self.config.server;
                self.impair(Token::Outside(flow), server, bytes, None);
            }
            Token::Face(f, k) => {
                self.stats.from_clients += 1;
                if from != self.flows[f].client {
                    return Ok(());
                }
                let server = self.flows[f].faces[k].0;
                self.impair(Token::Outside(f), server, bytes, None);
            }
            Token::Outside(f) => {
                self.stats.from_server += 1;
                let k = self.face_of(f, from)?;
                let block = match bytes {
                    [0, 3, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
                    [0, 6, ..] => Some(0),
                    _ => None,
                };
                let block = block.map(|b| {
                    let flow = &mut self.flows[f];
                    if !flow.sent.insert((from, b)) {
                        self.stats.retransmissions += 1;
                        if flow.delivered.contains(&(from, b)) {
                            self.stats.spurious += 1;
                        }
                    }
                    (f, from, b)
                });
                let client = self.flows[f].client;
                self.impair(Token::Face(f, k), client, bytes, block);
            }
        }
        Ok(())
    }

    /// The flow of a client, made on its first request.
    fn flow_of(&mut self, client: SocketAddr) -> io::Result<usize> {
        if let Some(&f) = self.by_client.get(&client) {
            return Ok(f);
        }
        let f = self.flows.len();
        let ip = self.config.outside[f % self.config.outside.len().max(1)];
        let outside = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        outside.set_nonblocking(true)?;
        self.poll.add(&outside, self.tokens.len() as u64)?;
        self.tokens.push(Token::Outside(f));
        self.flows.push(Flow {
            client,
            outside,
            faces: Vec::new(),
            sent: HashSet::new(),
            delivered: HashSet::new(),
        });
        self.by_client.insert(client, f);
        Ok(f)
    }

    /// Flow `f`'s socket towards the client for the server's address `server`.
    fn face_of(&mut self, f: usize, server: SocketAddr) -> io::Result<usize> {
        if let Some(k) = self.flows[f].faces.iter().position(|(s, _)| *s == server) {
            return Ok(k);
        }
        let ip = self.front.local_addr()?.ip();
        let face = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        face.set_nonblocking(true)?;
        let k = self.flows[f].faces.len();
        self.poll.add(&face, self.tokens.len() as u64)?;
        self.tokens.push(Token::Face(f, k));
        self.flows[f].faces.push((server, face));
        Ok(k)
    }

    /// A uniform draw in [0, 1) (xorshift64*).
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Drops, duplicates, delays or passes one datagram.
    fn impair(
        &mut self,
        from: Token,
        to: SocketAddr,
        bytes: &[u8],
        block: Option<(usize, SocketAddr, u16)>,
    ) {
        let impairment = self.config.impairment;
        if self.random() < impairment.drop {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.random() < impairment.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.random() < impairment.delay {
                self.stats.delayed += 1;
                let span = impairment.delay_max.saturating_sub(impairment.delay_min);
                let at = Instant::now() + impairment.delay_min + span.mul_f64(self.random());
                self.next_held += 1;
                self.held.push(Reverse((at, self.next_held)));
                self.held_bytes.insert(
                    self.next_held,
                    Held {
                        from,
                        to,
                        bytes: bytes.to_vec(),
                        block,
                    },
                );
            } else {
                self.send(from, to, bytes, block);
            }
        }
    }

    fn send_due(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.held.peek().copied() {
            if at > now {
                break;
            }
            self.held.pop();
            if let Some(held) = self.held_bytes.remove(&id) {
                self.send(held.from, held.to, &held.bytes, held.block);
            }
        }
    }

    fn send(
        &mut self,
        from: Token,
        to: SocketAddr,
        bytes: &[u8],
        block: Option<(usize, SocketAddr, u16)>,
    ) {
        let socket = match from {
            Token::Front => &self.front,
            Token::Outside(f) => &self.flows[f].outside,
            Token::Face(f, k) => &self.flows[f].faces[k].1,
        };
        // A failed send is one more loss.
        if socket.send_to(bytes, to).is_ok()
            && let Some((f, server, b)) = block
        {
            self.flows[f].delivered.insert((server, b));
        }
    }
}
