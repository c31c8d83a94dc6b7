//! The endpoint harness: the real [`Endpoint`] and a small real [`Store`], driven in
//! virtual time by a sequence of [`Step`]s (datagrams to the listening sockets from a few
//! peers, datagrams to the transfers, time passing, a stop, a reload), as the driver would
//! drive them, and checked after every step:
//!
//! - nothing panics (the endpoint's own debug assertions included);
//! - `counters().active` is what the harness counts from [`DatagramEvent::NewTransfer`]
//!   less [`EndpointEvent::Ended`] (and less the transfers it rejected), never above
//!   `max_transfers`, and no client address has more than `max_transfers_per_client`;
//! - every datagram sent parses, is no request, and leaves by a socket that is open: a
//!   transfer's own socket only while the transfer is running, a listening socket only
//!   for ERROR answers unless in single-port mode;
//! - a peer (address and port, made canonical) that has sent nothing but requests to a
//!   listening socket gets at most two datagrams other than ERROR per request it sent (a
//!   transfer that is not verified sends its first packet and one retransmission), and
//!   at most one ERROR per request;
//! - an upload handed over is within its permit, the permit within `max-file-size`, and
//!   the store's uploaded bytes never above `max-total-size`, nor (with `overwrite` off,
//!   where no permit counts a file it replaces as freed) its uploaded bytes and the
//!   reservations of uploads in flight together; a write's final ACK waits for its
//!   commit (the harness commits at once, in memory);
//! - the wake-up schedule moves on: once the timers due at `now` have run, the next one
//!   is later than `now` (a driver would spin otherwise).
//!
//! # Input format
//!
//! The bytes are read through [`arbitrary::Unstructured`] one byte at a time (a read past
//! the end gives 0), in a layout simple enough that [`Input::encode`] writes it back, so
//! seeds can be built from values (`examples/endpoint_seeds.rs`): a [`Setup`] of
//! [`SETUP_LEN`] bytes, then steps until the bytes run out or [`MAX_STEPS`] are read.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use memtftpd::endpoint::{
    DatagramEvent, Endpoint, EndpointEvent, LocalEnd, Route, Settings, TransferHandle,
    UploadsInFlight, Via, canonical,
};
use memtftpd::proto::{BlockNumber, MAX_BLKSIZE, MAX_DATAGRAM, Packet};
use memtftpd::store::{Preseed, Store, UploadPolicy};
use memtftpd::transfer::TransferConfig;

/// Steps read from one input at most.
pub const MAX_STEPS: usize = 256;

/// Bytes of the [`Setup`] at the start of an input.
pub const SETUP_LEN: usize = 12;

/// The peers datagrams come from: IPv4, IPv6 and IPv4-mapped IPv6 loopback addresses on
/// a few ports. `::ffff:127.0.0.1:1000` is `127.0.0.1:1000` made canonical.
pub fn peers() -> [SocketAddr; 8] {
    let v4 = |host: u8, port: u16| SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), port));
    let v6 = |ip: Ipv6Addr, port: u16| SocketAddr::from((ip, port));
    [
        v4(1, 1000),
        v4(1, 1001),
        v4(2, 1000),
        v6(Ipv6Addr::LOCALHOST, 1000),
        v6(Ipv6Addr::LOCALHOST, 1001),
        v6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped(), 1000),
        v6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped(), 2000),
        v4(3, 69),
    ]
}

/// The preseeded files: small, one of exactly one block, one empty, one with line ends
/// for netascii, two names that differ only in case.
pub fn files() -> Vec<(&'static str, Bytes)> {
    let text = "line one\nline two\r\nbare cr\r here\n".repeat(20);
    vec![
        ("a", Bytes::from_static(b"hello\n")),
        (
            "boot/pxelinux.0",
            (0..1500u32)
                .map(|i| (i * 7) as u8)
                .collect::<Vec<u8>>()
                .into(),
        ),
        ("text.txt", Bytes::from(text)),
        ("empty", Bytes::new()),
        ("block512", Bytes::from(vec![b'x'; 512])),
        ("Upper.BIN", Bytes::from_static(b"UPPER CASE FILE")),
    ]
}

/// Names a request can ask for by index: the files, their other cases, uploads inside
/// and outside `up/`, and names the rules refuse.
pub const NAMES: [&str; 16] = [
    "a",
    "boot/pxelinux.0",
    "text.txt",
    "empty",
    "block512",
    "Upper.BIN",
    "upper.bin",
    "up/new",
    "up/other",
    "new",
    "/a",
    "\\boot\\pxelinux.0",
    "../etc/passwd",
    "missing",
    "up",
    "A",
];

/// Modes a request can name by index (`mail` is refused).
pub const MODES: [&str; 5] = ["octet", "netascii", "NetASCII", "OCTET", "mail"];

/// Option names a request or OACK can carry by index (the last one is unknown).
pub const OPTIONS: [&str; 6] = [
    "blksize",
    "timeout",
    "tsize",
    "windowsize",
    "BLKSIZE",
    "multicast",
];

/// `max-blksize` values a setup can choose by index.
pub const BLKSIZES: [u16; 6] = [8, 16, 512, 1024, 1468, MAX_BLKSIZE];

/// The server's settings and upload policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub single_port: bool,
    pub overwrite: bool,
    pub case_insensitive: bool,
    /// Uploads only under `up/` (otherwise anywhere).
    pub allow_up_only: bool,
    /// 1 to 4.
    pub max_transfers: u8,
    /// 1 to 4 (may exceed `max_transfers`: the endpoint must keep both).
    pub max_transfers_per_client: u8,
    /// 1 to 3 s.
    pub timeout_secs: u8,
    /// 0 to 5.
    pub retries: u8,
    /// An index into [`BLKSIZES`].
    pub max_blksize: u8,
    /// 1 to 8.
    pub max_windowsize: u8,
    pub max_file_size: u16,
    pub max_total_size: u16,
    /// In tenths of a second.
    pub shutdown_grace: u8,
}

/// One thing that happens to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A datagram from `peers()[peer % 8]` arrives on listening socket `listener % 2`;
    /// with `socket_fails` a transfer it starts cannot have its own socket.
    Listener {
        peer: u8,
        listener: u8,
        socket_fails: bool,
        datagram: Datagram,
    },
    /// A datagram arrives for the transfer started `slot`-th (modulo those started;
    /// ended ones included): on its own socket, or in single-port mode on its listening
    /// socket.
    Transfer {
        slot: u8,
        from: Source,
        datagram: Datagram,
    },
    /// `ms` milliseconds pass; the timers due meanwhile run when they are due.
    Advance { ms: u16 },
    /// `ms` milliseconds pass with the driver busy; then the timers due run at once.
    Stall { ms: u16 },
    /// The server is asked to stop (SIGTERM).
    Stop,
    /// The preseeded files are swapped (SIGHUP), maybe in the other case mode, maybe
    /// without `a`.
    Reload {
        case_insensitive: bool,
        drop_a: bool,
    },
}

/// Who sends a datagram to a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The transfer's own peer, as the transfer's socket sees it.
    Own,
    /// `peers()[i % 8]`.
    Peer(u8),
}

/// A datagram, built from a few choices rather than raw bytes so that valid ones are
/// common; `Raw` is anything at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    Request {
        write: bool,
        name: Name,
        /// An index into [`MODES`].
        mode: u8,
        options: Vec<OptionPair>,
    },
    /// DATA: `len` bytes, all `fill`.
    Data {
        block: u16,
        len: u16,
        fill: u8,
    },
    Ack {
        block: u16,
    },
    Error {
        code: u8,
        message: Vec<u8>,
    },
    Oack {
        options: Vec<OptionPair>,
    },
    Raw(Vec<u8>),
}

/// A request's file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// An index into [`NAMES`].
    Known(u8),
    /// Any bytes (the parser refuses them if they are not UTF-8).
    Raw(Vec<u8>),
}

/// One option: a name from [`OPTIONS`] and a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionPair {
    pub name: u8,
    pub value: OptionValue,
}

/// An option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// A decimal number.
    Number(u64),
    /// Any bytes (NUL ends them early).
    Raw(Vec<u8>),
}

/// A whole input: the setup and the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub setup: Setup,
    pub steps: Vec<Step>,
}

// --- reading and writing the input ------------------------------------------------------

struct Reader<'u, 'a>(&'u mut Unstructured<'a>);

impl Reader<'_, '_> {
    fn byte(&mut self) -> u8 {
        self.0.arbitrary::<u8>().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.byte()))
    }

    /// A length byte (below `max`), then that many bytes (fewer if the input ends).
    fn bytes(&mut self, max: u8) -> Vec<u8> {
        let len = usize::from(self.byte() % max);
        let len = len.min(self.0.len());
        self.0.bytes(len).map(<[u8]>::to_vec).unwrap_or_default()
    }

    fn setup(&mut self) -> Setup {
        let flags = self.byte();
        Setup {
            single_port: flags & 1 != 0,
            overwrite: flags & 2 != 0,
            case_insensitive: flags & 4 != 0,
            allow_up_only: flags & 8 != 0,
            max_transfers: 1 + self.byte() % 4,
            max_transfers_per_client: 1 + self.byte() % 4,
            timeout_secs: 1 + self.byte() % 3,
            retries: self.byte() % 6,
            max_blksize: self.byte() % BLKSIZES.len() as u8,
            max_windowsize: 1 + self.byte() % 8,
            max_file_size: self.u16(),
            max_total_size: self.u16(),
            shutdown_grace: self.byte(),
        }
    }

    fn step(&mut self) -> Step {
        match self.byte() % 6 {
            0 => {
                let peer = self.byte() % 8;
                let flags = self.byte();
                Step::Listener {
                    peer,
                    listener: flags & 1,
                    socket_fails: flags & 2 != 0,
                    datagram: self.datagram(),
                }
            }
            1 => {
                let slot = self.byte();
                let from = match self.byte() {
                    b if b < 0x80 => Source::Own,
                    b => Source::Peer(b & 7),
                };
                Step::Transfer {
                    slot,
                    from,
                    datagram: self.datagram(),
                }
            }
            2 => Step::Advance { ms: self.u16() },
            3 => Step::Stall { ms: self.u16() },
            4 => Step::Stop,
            _ => {
                let flags = self.byte();
                Step::Reload {
                    case_insensitive: flags & 1 != 0,
                    drop_a: flags & 2 != 0,
                }
            }
        }
    }

    fn block(&mut self) -> u16 {
        match self.byte() {
            b if b < 0xf0 => u16::from(b),
            _ => self.u16(),
        }
    }

    fn options(&mut self) -> Vec<OptionPair> {
        (0..self.byte() % 5)
            .map(|_| {
                let name = self.byte() % OPTIONS.len() as u8;
                let value = match self.byte() % 4 {
                    0 => OptionValue::Number(u64::from(self.byte())),
                    1 => OptionValue::Number(u64::from(self.u16())),
                    2 => OptionValue::Number(self.u64()),
                    _ => OptionValue::Raw(self.bytes(8)),
                };
                OptionPair { name, value }
            })
            .collect()
    }

    fn datagram(&mut self) -> Datagram {
        match self.byte() % 7 {
            tag @ (0 | 1) => {
                let name = match self.byte() {
                    b if usize::from(b) < NAMES.len() => Name::Known(b),
                    _ => Name::Raw(self.bytes(64)),
                };
                Datagram::Request {
                    write: tag == 1,
                    name,
                    mode: self.byte() % MODES.len() as u8,
                    options: self.options(),
                }
            }
            2 => Datagram::Data {
                block: self.block(),
                len: self.u16(),
                fill: self.byte(),
            },
            3 => Datagram::Ack {
                block: self.block(),
            },
            4 => Datagram::Error {
                code: self.byte(),
                message: self.bytes(32),
            },
            5 => Datagram::Oack {
                options: self.options(),
            },
            _ => Datagram::Raw(self.bytes(255)),
        }
    }
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut reader = Reader(u);
        let setup = reader.setup();
        let mut steps = Vec::new();
        while !reader.0.is_empty() && steps.len() < MAX_STEPS {
            steps.push(reader.step());
        }
        Ok(Input { setup, steps })
    }
}

impl Input {
    /// Reads an input from fuzzer bytes (every byte string is one).
    pub fn decode(data: &[u8]) -> Input {
        let mut u = Unstructured::new(data);
        match Input::arbitrary(&mut u) {
            Ok(input) => input,
            Err(_) => unreachable!("reading an input never fails"),
        }
    }

    /// The bytes [`Input::decode`] reads back as this input, for values within the
    /// ranges the fields document.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let s = &self.setup;
        out.push(
            u8::from(s.single_port)
                | u8::from(s.overwrite) << 1
                | u8::from(s.case_insensitive) << 2
                | u8::from(s.allow_up_only) << 3,
        );
        out.extend([
            s.max_transfers - 1,
            s.max_transfers_per_client - 1,
            s.timeout_secs - 1,
            s.retries,
            s.max_blksize,
            s.max_windowsize - 1,
        ]);
        out.extend(s.max_file_size.to_be_bytes());
        out.extend(s.max_total_size.to_be_bytes());
        out.push(s.shutdown_grace);
        for step in &self.steps {
            encode_step(step, &mut out);
        }
        out
    }
}

/// Bytes as [`Reader::bytes`] reads them with the same `max`.
fn put_bytes(bytes: &[u8], max: u8, out: &mut Vec<u8>) {
    assert!(bytes.len() < usize::from(max), "at most {} bytes", max - 1);
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn encode_block(block: u16, out: &mut Vec<u8>) {
    if block < 0xf0 {
        out.push(block as u8);
    } else {
        out.push(0xff);
        out.extend(block.to_be_bytes());
    }
}

fn encode_options(options: &[OptionPair], out: &mut Vec<u8>) {
    assert!(options.len() < 5, "at most 4 options");
    out.push(options.len() as u8);
    for option in options {
        out.push(option.name);
        match &option.value {
            OptionValue::Number(n) if *n <= 0xff => out.extend([0, *n as u8]),
            OptionValue::Number(n) if *n <= 0xffff => {
                out.push(1);
                out.extend((*n as u16).to_be_bytes());
            }
            OptionValue::Number(n) => {
                out.push(2);
                out.extend(n.to_be_bytes());
            }
            OptionValue::Raw(bytes) => {
                out.push(3);
                put_bytes(bytes, 8, out);
            }
        }
    }
}

fn encode_datagram(datagram: &Datagram, out: &mut Vec<u8>) {
    match datagram {
        Datagram::Request {
            write,
            name,
            mode,
            options,
        } => {
            out.push(u8::from(*write));
            match name {
                Name::Known(i) => out.push(*i),
                Name::Raw(bytes) => {
                    out.push(0xff);
                    put_bytes(bytes, 64, out);
                }
            }
            out.push(*mode);
            encode_options(options, out);
        }
        Datagram::Data { block, len, fill } => {
            out.push(2);
            encode_block(*block, out);
            out.extend(len.to_be_bytes());
            out.push(*fill);
        }
        Datagram::Ack { block } => {
            out.push(3);
            encode_block(*block, out);
        }
        Datagram::Error { code, message } => {
            out.extend([4, *code]);
            put_bytes(message, 32, out);
        }
        Datagram::Oack { options } => {
            out.push(5);
            encode_options(options, out);
        }
        Datagram::Raw(bytes) => {
            out.push(6);
            put_bytes(bytes, 255, out);
        }
    }
}

fn encode_step(step: &Step, out: &mut Vec<u8>) {
    match step {
        Step::Listener {
            peer,
            listener,
            socket_fails,
            datagram,
        } => {
            out.extend([0, *peer, *listener | u8::from(*socket_fails) << 1]);
            encode_datagram(datagram, out);
        }
        Step::Transfer {
            slot,
            from,
            datagram,
        } => {
            let from = match from {
                Source::Own => 0,
                Source::Peer(i) => 0x80 | i,
            };
            out.extend([1, *slot, from]);
            encode_datagram(datagram, out);
        }
        Step::Advance { ms } => {
            out.push(2);
            out.extend(ms.to_be_bytes());
        }
        Step::Stall { ms } => {
            out.push(3);
            out.extend(ms.to_be_bytes());
        }
        Step::Stop => out.push(4),
        Step::Reload {
            case_insensitive,
            drop_a,
        } => out.extend([5, u8::from(*case_insensitive) | u8::from(*drop_a) << 1]),
    }
}

impl Datagram {
    /// The datagram's bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put_options = |options: &[OptionPair], out: &mut Vec<u8>| {
            for option in options {
                out.extend_from_slice(OPTIONS[usize::from(option.name) % OPTIONS.len()].as_bytes());
                out.push(0);
                match &option.value {
                    OptionValue::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
                    OptionValue::Raw(bytes) => out.extend_from_slice(bytes),
                }
                out.push(0);
            }
        };
        match self {
            Datagram::Request {
                write,
                name,
                mode,
                options,
            } => {
                out.extend([0, if *write { 2 } else { 1 }]);
                match name {
                    Name::Known(i) => out.extend_from_slice(NAMES[usize::from(*i)].as_bytes()),
                    Name::Raw(bytes) => out.extend_from_slice(bytes),
                }
                out.push(0);
                out.extend_from_slice(MODES[usize::from(*mode) % MODES.len()].as_bytes());
                out.push(0);
                put_options(options, &mut out);
            }
            Datagram::Data { block, len, fill } => {
                out.extend([0, 3]);
                out.extend(block.to_be_bytes());
                out.resize(4 + usize::from(*len), *fill);
            }
            Datagram::Ack { block } => {
                out.extend([0, 4]);
                out.extend(block.to_be_bytes());
            }
            Datagram::Error { code, message } => {
                out.extend([0, 5, 0, *code]);
                out.extend_from_slice(message);
                out.push(0);
            }
            Datagram::Oack { options } => {
                out.extend([0, 6]);
                put_options(options, &mut out);
            }
            Datagram::Raw(bytes) => out.extend_from_slice(bytes),
        }
        out
    }
}

// --- the harness -------------------------------------------------------------------------

/// What the harness knows of a transfer it saw start.
#[derive(Debug, Clone, Copy)]
struct Started {
    /// The request's source, as the listening socket saw it.
    requester: SocketAddr,
    /// The listening socket the request came in on.
    listener: usize,
}

/// What one peer (canonical address and port) sent and got.
#[derive(Debug, Default)]
struct PeerLog {
    /// Requests sent to a listening socket.
    requests: u64,
    /// It sent something else too (to a transfer, or a non-request to a listener): it
    /// may have verified a transfer, so the unverified bound no longer applies.
    other: bool,
    /// Datagrams it got other than ERROR, and ERRORs.
    answers: u64,
    errors: u64,
}

/// The endpoint under test and everything the checks need to know.
struct Harness {
    endpoint: Endpoint,
    store: Arc<Store>,
    policy: UploadPolicy,
    settings: Settings,
    now: Instant,
    /// Every transfer started, in order (the `slot`s of [`Step::Transfer`]).
    started: Vec<TransferHandle>,
    history: HashMap<TransferHandle, Started>,
    /// Transfers started and not yet ended or rejected.
    live: HashMap<TransferHandle, Started>,
    peers: HashMap<SocketAddr, PeerLog>,
    buf: Vec<u8>,
}

fn preseed(case_insensitive: bool, drop_a: bool) -> Preseed {
    let mut preseed = Preseed::new(case_insensitive);
    for (name, data) in files() {
        if !(drop_a && name == "a") {
            preseed.insert(name.parse().expect("a valid name"), data);
        }
    }
    preseed
}

/// The local address a datagram from `peer` arrives at, as the driver reports it
/// (canonical).
fn local_for(peer: SocketAddr) -> LocalEnd {
    let ip = match canonical(peer).ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    LocalEnd {
        ip,
        ifindex: 0,
        mtu: None,
    }
}

fn is_request(bytes: &[u8]) -> bool {
    matches!(Packet::parse(bytes), Ok(Packet::Rrq(_) | Packet::Wrq(_)))
}

impl Harness {
    fn new(setup: &Setup) -> Harness {
        let policy = UploadPolicy {
            enabled: true,
            max_file_size: u64::from(setup.max_file_size),
            max_total_size: u64::from(setup.max_total_size),
            overwrite: setup.overwrite,
            allow: if setup.allow_up_only {
                vec!["up/".to_owned()]
            } else {
                Vec::new()
            },
        };
        let store = Arc::new(Store::new(
            preseed(setup.case_insensitive, false),
            policy.clone(),
        ));
        let settings = Settings {
            transfer: TransferConfig {
                timeout: Duration::from_secs(u64::from(setup.timeout_secs)),
                retries: u32::from(setup.retries),
                max_blksize: BLKSIZES[usize::from(setup.max_blksize) % BLKSIZES.len()],
                max_windowsize: u16::from(setup.max_windowsize),
                max_timeout: 255,
                max_upload_size: policy.max_file_size,
            },
            max_transfers: usize::from(setup.max_transfers),
            max_transfers_per_client: usize::from(setup.max_transfers_per_client),
            max_unverified_per_client: usize::from(setup.max_transfers_per_client),
            ipv6_client_prefix: 64,
            single_port: setup.single_port,
            shutdown_grace: Duration::from_millis(100 * u64::from(setup.shutdown_grace)),
            policy: Default::default(),
            port_range: None,
            uploads_in_flight: UploadsInFlight {
                max_per_client: 1 + usize::from(setup.max_transfers_per_client % 4),
            },
        };
        Harness {
            endpoint: Endpoint::new(Arc::clone(&store), settings.clone()),
            store,
            policy,
            settings,
            now: Instant::now(),
            started: Vec::new(),
            history: HashMap::new(),
            live: HashMap::new(),
            peers: HashMap::new(),
            buf: vec![0u8; MAX_DATAGRAM.max(65_000)],
        }
    }

    fn run(&mut self, step: &Step) {
        match step {
            Step::Listener {
                peer,
                listener,
                socket_fails,
                datagram,
            } => {
                let peer = peers()[usize::from(*peer) % 8];
                let listener = usize::from(*listener % 2);
                self.at_listener(listener, peer, *socket_fails, &datagram.to_bytes());
            }
            Step::Transfer {
                slot,
                from,
                datagram,
            } => {
                if self.started.is_empty() {
                    return;
                }
                let handle = self.started[usize::from(*slot) % self.started.len()];
                let started = self.history[&handle];
                let bytes = datagram.to_bytes();
                if self.settings.single_port {
                    // The transfer's address is its listening socket's.
                    let source = match from {
                        Source::Own => started.requester,
                        Source::Peer(i) => peers()[usize::from(*i) % 8],
                    };
                    self.at_listener(started.listener, source, false, &bytes);
                } else {
                    // Its own socket, bound to the canonical local address, sees the
                    // peer's canonical address.
                    let source = match from {
                        Source::Own => canonical(started.requester),
                        Source::Peer(i) => peers()[usize::from(*i) % 8],
                    };
                    self.peers.entry(canonical(source)).or_default().other = true;
                    self.endpoint
                        .handle_transfer(self.now, handle, source, &bytes);
                }
            }
            Step::Advance { ms } => {
                let until = self.now + Duration::from_millis(u64::from(*ms));
                while let Some(due) = self.endpoint.poll_timeout().filter(|&due| due <= until) {
                    self.now = self.now.max(due);
                    self.fire_timers();
                }
                self.now = until;
            }
            Step::Stall { ms } => {
                self.now += Duration::from_millis(u64::from(*ms));
                if self
                    .endpoint
                    .poll_timeout()
                    .is_some_and(|due| due <= self.now)
                {
                    self.fire_timers();
                }
            }
            Step::Stop => self.endpoint.begin_stop(self.now),
            Step::Reload {
                case_insensitive,
                drop_a,
            } => {
                let dropped = self
                    .store
                    .replace_preseed(preseed(*case_insensitive, *drop_a), self.policy.clone());
                let _ = dropped;
            }
        }
        self.drain();
        self.check();
    }

    fn at_listener(&mut self, listener: usize, peer: SocketAddr, socket_fails: bool, bytes: &[u8]) {
        let log = self.peers.entry(canonical(peer)).or_default();
        if is_request(bytes) {
            log.requests += 1;
        } else {
            log.other = true;
        }
        let local = Some(local_for(peer));
        match self.endpoint.handle(self.now, listener, local, peer, bytes) {
            Some(DatagramEvent::NewTransfer {
                handle,
                route,
                local: new_local,
                window_bytes,
            }) => {
                assert!(
                    !self.history.contains_key(&handle),
                    "{handle:?} handed out twice"
                );
                assert_eq!(new_local, local, "the new transfer's local address");
                assert!(is_request(bytes), "{bytes:?} started a transfer");
                let write = matches!(Packet::parse(bytes), Ok(Packet::Wrq(_)));
                assert_eq!(window_bytes.is_some(), write, "window_bytes of {bytes:?}");
                if self.settings.single_port {
                    assert_eq!(route, Route::Listener { listener, local });
                } else {
                    assert_eq!(route, Route::Own);
                }
                let started = Started {
                    requester: peer,
                    listener,
                };
                self.started.push(handle);
                self.history.insert(handle, started);
                if route == Route::Own && socket_fails {
                    self.endpoint
                        .reject(handle, listener, local, "the fuzzer says no");
                } else {
                    self.live.insert(handle, started);
                }
            }
            Some(DatagramEvent::Routed(handle)) => {
                assert!(self.settings.single_port, "routed without single-port");
                let started = self.live.get(&handle).copied();
                let started =
                    started.unwrap_or_else(|| panic!("routed to {handle:?}, which is not running"));
                assert_eq!((started.listener, started.requester), (listener, peer));
            }
            None => {}
        }
    }

    /// Runs the timers due at `now` and what they send; then the next one must be later.
    fn fire_timers(&mut self) {
        self.endpoint.handle_timeout(self.now);
        self.drain();
        if let Some(due) = self.endpoint.poll_timeout() {
            assert!(
                due > self.now,
                "after the timers due at {:?} ran, the next is due at {:?}",
                self.now,
                due
            );
        }
    }

    /// Sends everything and takes every event, as the driver does after each call: a
    /// window of DATA in runs of equal segments, as many as one segmented send takes (and
    /// again after an upload is committed, whose final ACK is then due).
    fn drain(&mut self) {
        while self.drain_once() {}
    }

    /// One round of [`drain`](Self::drain); true when another is needed.
    fn drain_once(&mut self) -> bool {
        let mut again = false;
        while let Some(out) = self
            .endpoint
            .poll_transmit_segments(&mut self.buf, 64, 65_000)
        {
            let transmit = out.transmit;
            assert!(transmit.len <= self.buf.len());
            let run = self.buf[..transmit.len].to_vec();
            let segments = run.len().div_ceil(out.segment);
            assert!(
                segments == 1 || (segments <= 64 && run.len() <= 65_000),
                "{segments} segments of {}",
                out.segment
            );
            let mut previous = None;
            for datagram in run.chunks(out.segment) {
                if segments > 1 {
                    match Packet::parse(datagram) {
                        Ok(Packet::Data { block, .. }) => {
                            if let Some(BlockNumber(p)) = previous {
                                assert_eq!(
                                    block.0,
                                    p.wrapping_add(1),
                                    "a run's blocks follow one another"
                                );
                            }
                            previous = Some(block);
                        }
                        other => panic!("a run of {segments} segments holds {other:?}"),
                    }
                }
                self.sent(out.via, transmit.destination, datagram);
            }
        }
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                EndpointEvent::Ended { handle, client, .. } => {
                    let started = self.live.remove(&handle);
                    let started = started
                        .unwrap_or_else(|| panic!("{handle:?} ended, but it was not running"));
                    assert_eq!(client, canonical(started.requester), "{handle:?}'s client");
                }
                EndpointEvent::Commit(commit) => {
                    let size = commit.data.len() as u64;
                    let permit = &commit.permit;
                    assert!(
                        size <= permit.max_size(),
                        "{size} bytes uploaded under a permit for {}",
                        permit.max_size()
                    );
                    assert!(permit.max_size() <= self.policy.max_file_size);
                    let name = permit.name().clone();
                    let data = commit.data.clone();
                    if self.endpoint.commit(self.now, commit, None).is_ok() {
                        let stored = self.store.get(&name).map(|f| f.data().to_vec());
                        assert_eq!(stored.as_ref(), Some(&data), "{name} once committed");
                    }
                    // The final ACK (or the ERROR) goes out on the next flush.
                    again = true;
                }
                EndpointEvent::Refused(_) | EndpointEvent::Suppressed(_) => {}
            }
        }
        again
    }

    /// Checks one datagram the endpoint sent, and counts it against its destination.
    fn sent(&mut self, via: Via, destination: SocketAddr, bytes: &[u8]) {
        let packet = Packet::parse(bytes)
            .unwrap_or_else(|e| panic!("the endpoint sent {bytes:?}, which is no packet: {e}"));
        assert!(
            !matches!(packet, Packet::Rrq(_) | Packet::Wrq(_)),
            "the endpoint sent a request: {packet:?}"
        );
        let is_error = matches!(packet, Packet::Error { .. });
        match via {
            Via::Transfer(handle) => {
                assert!(
                    !self.settings.single_port,
                    "a transfer socket in single-port mode"
                );
                assert!(
                    self.live.contains_key(&handle),
                    "{packet:?} sent by {handle:?}, whose socket is closed"
                );
            }
            Via::Listener { listener, local } => {
                assert!(listener < 2, "listener {listener}");
                assert!(
                    self.settings.single_port || is_error,
                    "a listening socket sent {packet:?}"
                );
                let _ = local;
            }
        }
        let destination = canonical(destination);
        let log = self.peers.entry(destination).or_default();
        if is_error {
            log.errors += 1;
        } else {
            log.answers += 1;
        }
        if !log.other {
            assert!(
                log.answers <= 2 * log.requests,
                "{destination} sent only {} request(s) and got {} datagram(s) besides ERRORs, \
                     the last {packet:?}",
                log.requests,
                log.answers
            );
            assert!(
                log.errors <= log.requests,
                "{destination} sent only {} request(s) and got {} ERRORs, the last {packet:?}",
                log.requests,
                log.errors
            );
        }
    }

    fn check(&self) {
        let counters = self.endpoint.counters();
        assert_eq!(counters.active, self.live.len(), "active transfers");
        assert!(counters.active <= self.settings.max_transfers);
        let mut per_client: HashMap<IpAddr, usize> = HashMap::new();
        for started in self.live.values() {
            let count = per_client
                .entry(canonical(started.requester).ip())
                .or_default();
            *count += 1;
            assert!(
                *count <= self.settings.max_transfers_per_client,
                "{} has {count} transfers",
                started.requester.ip()
            );
        }
        let stats = self.store.stats();
        assert!(
            stats.uploaded_bytes <= self.policy.max_total_size,
            "{} bytes uploaded, max-total-size {}",
            stats.uploaded_bytes,
            self.policy.max_total_size
        );
        assert!(
            stats.reserved_bytes <= self.policy.max_total_size,
            "{} bytes reserved, max-total-size {}",
            stats.reserved_bytes,
            self.policy.max_total_size
        );
        if !self.policy.overwrite {
            assert!(
                stats.uploaded_bytes + stats.reserved_bytes <= self.policy.max_total_size,
                "{} bytes uploaded and {} reserved, max-total-size {}",
                stats.uploaded_bytes,
                stats.reserved_bytes,
                self.policy.max_total_size
            );
        }
    }
}

/// Runs `input` against a fresh endpoint, checking the invariants after every step;
/// panics on the first that does not hold.
pub fn run(input: &Input) {
    let mut harness = Harness::new(&input.setup);
    for step in &input.steps {
        harness.run(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            single_port: false,
            overwrite: true,
            case_insensitive: false,
            allow_up_only: true,
            max_transfers: 4,
            max_transfers_per_client: 2,
            timeout_secs: 1,
            retries: 3,
            max_blksize: 4,
            max_windowsize: 4,
            max_file_size: 4000,
            max_total_size: 6000,
            shutdown_grace: 10,
        }
    }

    fn rrq(name: u8, options: Vec<OptionPair>) -> Datagram {
        Datagram::Request {
            write: false,
            name: Name::Known(name),
            mode: 0,
            options,
        }
    }

    /// The committed seeds (and any crash input added there once fixed) pass.
    #[test]
    fn the_seed_corpus_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/endpoint");
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("a seed");
            run(&Input::decode(&bytes));
            seeds += 1;
        }
        assert!(seeds >= 20, "{seeds} seeds in {}", dir.display());
    }

    #[test]
    fn inputs_read_back_as_written() {
        let input = Input {
            setup: setup(),
            steps: vec![
                Step::Listener {
                    peer: 5,
                    listener: 1,
                    socket_fails: true,
                    datagram: rrq(
                        1,
                        vec![
                            OptionPair {
                                name: 0,
                                value: OptionValue::Number(1468),
                            },
                            OptionPair {
                                name: 2,
                                value: OptionValue::Number(u64::MAX),
                            },
                            OptionPair {
                                name: 5,
                                value: OptionValue::Raw(b"x\0y".to_vec()),
                            },
                        ],
                    ),
                },
                Step::Transfer {
                    slot: 3,
                    from: Source::Peer(6),
                    datagram: Datagram::Data {
                        block: 65535,
                        len: 512,
                        fill: b'\r',
                    },
                },
                Step::Transfer {
                    slot: 0,
                    from: Source::Own,
                    datagram: Datagram::Ack { block: 7 },
                },
                Step::Listener {
                    peer: 0,
                    listener: 0,
                    socket_fails: false,
                    datagram: Datagram::Request {
                        write: true,
                        name: Name::Raw(b"\xffup/x".to_vec()),
                        mode: 4,
                        options: vec![],
                    },
                },
                Step::Advance { ms: 65535 },
                Step::Stall { ms: 1 },
                Step::Stop,
                Step::Reload {
                    case_insensitive: true,
                    drop_a: true,
                },
                Step::Listener {
                    peer: 7,
                    listener: 0,
                    socket_fails: false,
                    datagram: Datagram::Error {
                        code: 8,
                        message: b"no".to_vec(),
                    },
                },
                Step::Listener {
                    peer: 7,
                    listener: 0,
                    socket_fails: false,
                    datagram: Datagram::Raw(vec![0, 9, 1]),
                },
                Step::Listener {
                    peer: 2,
                    listener: 0,
                    socket_fails: false,
                    datagram: Datagram::Oack {
                        options: vec![OptionPair {
                            name: 3,
                            value: OptionValue::Number(300),
                        }],
                    },
                },
            ],
        };
        let bytes = input.encode();
        assert_eq!(Input::decode(&bytes), input);
    }

    #[test]
    fn datagrams_are_the_packets_they_name() {
        let bytes = rrq(
            1,
            vec![OptionPair {
                name: 0,
                value: OptionValue::Number(1468),
            }],
        )
        .to_bytes();
        assert_eq!(
            bytes,
            b"\x00\x01boot/pxelinux.0\x00octet\x00blksize\x001468\x00"
        );
        let data = Datagram::Data {
            block: 2,
            len: 3,
            fill: b'z',
        };
        assert_eq!(data.to_bytes(), b"\x00\x03\x00\x02zzz");
    }

    /// The harness catches what it is there to catch: an unverified peer answered more
    /// than twice would fail it, so the bound it checks is the one the endpoint keeps
    /// (a download that is never acknowledged: DATA 1 and one retransmission).
    #[test]
    fn an_unverified_download_gets_two_datagrams() {
        let mut harness = Harness::new(&setup());
        harness.run(&Step::Listener {
            peer: 0,
            listener: 0,
            socket_fails: false,
            datagram: rrq(0, vec![]),
        });
        harness.run(&Step::Advance { ms: 60_000 });
        let log = &harness.peers[&peers()[0]];
        assert_eq!((log.requests, log.answers, log.errors), (1, 2, 0));
        assert!(harness.live.is_empty(), "the transfer gave up");
    }

    #[test]
    fn a_download_acknowledged_completes_and_ends() {
        let mut harness = Harness::new(&setup());
        harness.run(&Step::Listener {
            peer: 3,
            listener: 0,
            socket_fails: false,
            datagram: rrq(0, vec![]),
        });
        assert_eq!(harness.live.len(), 1);
        harness.run(&Step::Transfer {
            slot: 0,
            from: Source::Own,
            datagram: Datagram::Ack { block: 1 },
        });
        assert!(harness.live.is_empty());
        assert_eq!(harness.endpoint.counters().served, 1);
    }

    #[test]
    fn an_upload_is_committed_within_the_limits() {
        let mut harness = Harness::new(&setup());
        harness.run(&Step::Listener {
            peer: 0,
            listener: 0,
            socket_fails: false,
            datagram: Datagram::Request {
                write: true,
                name: Name::Known(7),
                mode: 0,
                options: vec![],
            },
        });
        harness.run(&Step::Transfer {
            slot: 0,
            from: Source::Own,
            datagram: Datagram::Data {
                block: 1,
                len: 100,
                fill: b'u',
            },
        });
        assert_eq!(harness.store.stats().uploaded_bytes, 100);
        let name = "up/new".parse().expect("a name");
        assert_eq!(harness.store.get(&name).map(|f| f.data().len()), Some(100));
    }
}
