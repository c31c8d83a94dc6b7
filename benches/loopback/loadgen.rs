//! The load generator: many concurrent TFTP transfers driven by the project's own client
//! engine ([`Transfer::download`], [`Transfer::upload`]) from one thread.
//!
//! Each transfer has its own non-blocking UDP socket registered with the server's own
//! level-triggered epoll wrapper ([`Readiness`]): a lock-step transfer reads one datagram per
//! readiness and never spends a read on an empty socket; a windowed one drains its socket. Timers sit in a binary heap with at most one live entry per
//! transfer: an entry is pushed only when a transfer's wake-up moves earlier, and a popped
//! entry whose transfer wants to wake later is pushed again at the later time, so the
//! common case (every ACK pushes the retransmission deadline back) costs no heap work.
//!
//! A download counts as done when the engine hands over the file ([`Event::Received`]):
//! its last ACK is sent at once and the socket closed, without the engine's linger. The
//! file is compared byte for byte with the expected bytes. An upload is done when the
//! engine reports [`Event::Finished`]; its bytes are checked afterwards by fetching every
//! uploaded name back (untimed). The generator's own CPU time comes from
//! `getrusage(RUSAGE_SELF)` around the measured part.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::proto::{MAX_DATAGRAM, Mode, TransferOptions};
use memtftpd::transfer::{ClientConfig, Event, Outcome, Transfer};
use std::net::UdpSocket;

use crate::epoll::Readiness;
use nix::sys::epoll::EpollEvent;

/// SO_RCVBUF of a windowed transfer's socket.
const WINDOW_RCVBUF: usize = 4 << 20;

/// What one transfer does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Fetch `name`; it must equal `expected`.
    Get { name: String, expected: Bytes },
    /// Upload `data` as `prefix` + the transfer's index.
    Put { prefix: String, data: Bytes },
}

/// A load: `count` transfers, at most `concurrency` at once.
#[derive(Debug, Clone)]
pub struct Load {
    pub server: SocketAddr,
    pub op: Op,
    pub count: usize,
    pub concurrency: usize,
    pub options: TransferOptions,
    /// Hold every ACK this long before sending it (a slow client); none: send at once.
    pub ack_delay: Option<Duration>,
    /// Start at most this many transfers per second (a ramp); none: as fast as slots free.
    pub start_rate: Option<f64>,
    /// Local addresses the transfers are sent from, in turn (many clients on many
    /// hosts); empty: the loopback address of the server's family.
    pub sources: Vec<IpAddr>,
    /// The whole load is abandoned after this long.
    pub time_limit: Duration,
    /// Retransmission timeout of the client engine: its first and largest (the
    /// adaptive timer's), or its only one (`adaptive` off).
    pub timeout: Duration,
    /// The client engine gives up after `timeout` x (`retries` + 1) without progress.
    pub retries: u32,
    /// The client engine's timer follows the measured round trip (RFC 6298); off: fixed
    /// at `timeout`, as a boot ROM's.
    pub adaptive: bool,
}

/// What a load measured.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub completed: usize,
    pub failed: usize,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    /// File bytes moved by completed transfers.
    pub bytes: u64,
    pub elapsed: Duration,
    /// Sorted durations of completed transfers.
    pub latencies: Vec<Duration>,
    /// The generator's user+system CPU during the load.
    pub cpu: Duration,
    /// Most transfers that had heard from the server and were not done, at one time.
    pub peak_active: usize,
    pub retransmits: u64,
    /// Retransmission timers that expired in the client engines (lost or late packets).
    pub timeouts: u64,
}

impl Tally {
    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

/// One transfer in flight.
#[derive(Debug)]
struct Slot {
    socket: UdpSocket,
    engine: Box<Transfer>,
    started: Instant,
    /// Generation, to tell this transfer's heap entries from a predecessor's.
    generation: u64,
    /// The earliest wake-up already in the heap.
    armed: Option<Instant>,
    /// Held transmits go out at this time (slow clients only).
    send_at: Option<Instant>,
    /// Has heard from the server.
    active: bool,
}

impl Slot {
    /// When this transfer next needs the timer.
    fn wake_at(&self) -> Option<Instant> {
        match (self.engine.poll_timeout(), self.send_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How a transfer left the generator.
enum Done {
    Ok { bytes: u64, retransmits: u64 },
    Failed(String),
}

/// The state of one load run.
struct Generator<'a> {
    load: &'a Load,
    poll: Readiness,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    buf: Vec<u8>,
    generation: u64,
    started: usize,
    running: usize,
    active: usize,
    tally: Tally,
    names: Vec<String>,
    /// Download buffers handed back by finished transfers, for the next ones: memory
    /// already grown and touched, so the generator pays no page faults per block.
    spare_buffers: Vec<Vec<u8>>,
}

/// Runs `load` and returns what it measured.
pub fn run(load: &Load) -> io::Result<Tally> {
    run_named(load).map(|(tally, _)| tally)
}

/// Runs `load`; returns what it measured and the names of the uploads it made.
pub fn run_named(load: &Load) -> io::Result<(Tally, Vec<String>)> {
    let mut generator = Generator {
        load,
        poll: Readiness::new()?,
        slots: Vec::new(),
        free: Vec::new(),
        timers: BinaryHeap::new(),
        buf: vec![0u8; MAX_DATAGRAM],
        spare_buffers: touched_buffers(load),
        generation: 0,
        started: 0,
        running: 0,
        active: 0,
        tally: Tally::default(),
        names: Vec::new(),
    };
    let cpu_before = self_cpu();
    let begin = Instant::now();
    generator.event_loop(begin)?;
    generator.tally.elapsed = begin.elapsed();
    generator.tally.cpu = self_cpu().saturating_sub(cpu_before);
    generator.tally.latencies.sort_unstable();
    Ok((generator.tally, generator.names))
}

/// One download buffer per concurrent download, as large as the file and written once,
/// so that the measured part pays neither growth nor first-touch page faults (with a
/// fresh allocation those were a quarter of the generator's CPU in S3A).
fn touched_buffers(load: &Load) -> Vec<Vec<u8>> {
    let Op::Get { expected, .. } = &load.op else {
        return Vec::new();
    };
    (0..load.concurrency.min(load.count))
        .map(|_| {
            let mut buffer = vec![1u8; expected.len()];
            buffer.clear();
            buffer
        })
        .collect()
}

/// Fetches every uploaded name back and counts a mismatch as a failure.
pub fn verify_uploads(
    load: &Load,
    names: &[String],
    data: &Bytes,
    tally: &mut Tally,
) -> io::Result<()> {
    for name in names {
        let check = Load {
            op: Op::Get {
                name: name.clone(),
                expected: data.clone(),
            },
            count: 1,
            concurrency: 1,
            ack_delay: None,
            start_rate: None,
            options: TransferOptions {
                blksize: Some(1468),
                windowsize: Some(16),
                ..TransferOptions::default()
            },
            ..load.clone()
        };
        let fetched = run(&check)?;
        if fetched.completed != 1 {
            tally.completed = tally.completed.saturating_sub(1);
            tally.failed += 1;
            tally.first_failure.get_or_insert_with(|| {
                format!(
                    "upload {name} read back wrong: {}",
                    fetched.first_failure.unwrap_or_default()
                )
            });
        }
    }
    Ok(())
}

impl Generator<'_> {
    fn event_loop(&mut self, begin: Instant) -> io::Result<()> {
        let deadline = begin + self.load.time_limit;
        let mut events = vec![EpollEvent::empty(); 1024];
        let mut now = begin;
        while self.tally.completed + self.tally.failed < self.load.count {
            if now >= deadline {
                let left = self.load.count - self.tally.completed - self.tally.failed;
                self.tally.failed += left;
                self.tally.first_failure.get_or_insert_with(|| {
                    format!("{left} transfers unfinished at the time limit")
                });
                break;
            }
            let next_start = self.start_transfers(begin, now)?;
            let mut wake = deadline;
            if let Some(Reverse((at, _, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            if let Some(at) = next_start {
                wake = wake.min(at);
            }
            let timeout = wake.saturating_duration_since(now);
            let ready = self.poll.wait(&mut events, timeout)?;
            now = Instant::now();
            for event in &events[..ready] {
                self.on_readable(event.data() as usize, now);
            }
            self.fire_timers(now);
        }
        Ok(())
    }

    /// Starts transfers while there is room; returns when the ramp allows the next one.
    fn start_transfers(&mut self, begin: Instant, now: Instant) -> io::Result<Option<Instant>> {
        while self.running < self.load.concurrency && self.started < self.load.count {
            if let Some(rate) = self.load.start_rate {
                let due = begin + Duration::from_secs_f64(self.started as f64 / rate);
                if due > now {
                    return Ok(Some(due));
                }
            }
            self.start_one(now)?;
        }
        Ok(None)
    }

    fn start_one(&mut self, now: Instant) -> io::Result<()> {
        let load = self.load;
        let local: SocketAddr =
            if let Some(ip) = load.sources.get(self.started % load.sources.len().max(1)) {
                SocketAddr::new(*ip, 0)
            } else if load.server.is_ipv6() {
                "[::1]:0".parse().expect("literal address")
            } else {
                "127.0.0.1:0".parse().expect("literal address")
            };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        if load.options.windowsize.is_some_and(|w| w > 1) {
            // A whole window may arrive before the client runs: the default buffer
            // (about 200 KiB) drops part of a 64 x 8 KiB window. Capped by rmem_max.
            socket2::SockRef::from(&socket).set_recv_buffer_size(WINDOW_RCVBUF)?;
        }
        let config = ClientConfig {
            options: load.options,
            timeout: load.timeout,
            retries: load.retries,
            adaptive: load.adaptive,
            max_download_size: 1 << 31,
        };
        let engine = match &load.op {
            Op::Get { name, .. } => Box::new(
                Transfer::download(now, load.server, name, Mode::Octet, config)
                    .with_buffer(self.spare_buffers.pop().unwrap_or_default()),
            ),
            Op::Put { prefix, data } => {
                let name = format!("{prefix}{}", self.started);
                let engine =
                    Transfer::upload(now, load.server, &name, Mode::Octet, data.clone(), config);
                self.names.push(name);
                Box::new(engine)
            }
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.poll.add(&socket, index as u64)?;
        self.generation += 1;
        self.slots[index] = Some(Slot {
            socket,
            engine,
            started: now,
            generation: self.generation,
            armed: None,
            send_at: None,
            active: false,
        });
        self.started += 1;
        self.running += 1;
        self.after_io(index, now, true);
        Ok(())
    }

    /// Reads the socket of transfer `index` into its engine: one datagram for a lock-step
    /// transfer (the poller reports the socket again if more wait), all of them for a
    /// windowed one.
    fn on_readable(&mut self, index: usize, now: Instant) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        let got = match self.load.options.windowsize {
            Some(w) if w > 1 => receive_window(slot, &mut self.buf, now),
            _ => match slot.socket.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    slot.engine.handle_datagram(now, from, &self.buf[..len]);
                    true
                }
                // Nothing after all, or ICMP port unreachable and the like: the engine's
                // timer deals with it.
                Err(_) => false,
            },
        };
        if got && !slot.active {
            slot.active = true;
            self.active += 1;
            self.tally.peak_active = self.tally.peak_active.max(self.active);
        }
        let send_now = self.load.ack_delay.is_none();
        self.after_io(index, now, send_now);
    }

    /// Sends or holds what the engine wants to send, handles its events, re-arms its timer.
    fn after_io(&mut self, index: usize, now: Instant, send_now: bool) {
        let Some(slot) = self.slots[index].as_mut() else {
            return;
        };
        if send_now || !slot.active {
            flush(slot, &mut self.buf);
        } else if slot.send_at.is_none() {
            slot.send_at = self.load.ack_delay.map(|d| now + d);
        }
        while let Some(event) = slot.engine.poll_event() {
            let done = match event {
                Event::Received(data) => {
                    flush(slot, &mut self.buf);
                    let done = check_download(&self.load.op, &data);
                    self.spare_buffers.push(data);
                    Some(done)
                }
                Event::Finished(report) => Some(match report.outcome {
                    Outcome::Completed => Done::Ok {
                        bytes: report.bytes,
                        retransmits: report.retransmits,
                    },
                    other => Done::Failed(format!("{}: {other}", report.filename)),
                }),
            };
            if let Some(done) = done {
                self.finish(index, now, done);
                return;
            }
        }
        let (wake, generation, armed) = (slot.wake_at(), slot.generation, slot.armed);
        if let Some(at) = wake
            && armed.is_none_or(|a| at < a)
        {
            slot.armed = Some(at);
            self.timers.push(Reverse((at, index, generation)));
        }
    }
}

/// Reads everything waiting on a windowed transfer's socket into its engine; returns
/// whether anything arrived. (`recvmmsg` was tried here: it saved about 4% of the client's
/// CPU in S3A and nothing in throughput, so the plain loop stays.)
fn receive_window(slot: &mut Slot, buf: &mut [u8], now: Instant) -> bool {
    let mut got = false;
    loop {
        match slot.socket.recv_from(buf) {
            Ok((len, from)) => {
                slot.engine.handle_datagram(now, from, &buf[..len]);
                got = true;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Drained, or ICMP port unreachable and the like: the engine's timer deals
            // with the latter.
            Err(_) => return got,
        }
    }
}

/// Compares a downloaded file with the expected bytes.
fn check_download(op: &Op, data: &[u8]) -> Done {
    match op {
        Op::Get { expected, name } if data.len() != expected.len() => Done::Failed(format!(
            "{name}: {} bytes received, {} expected",
            data.len(),
            expected.len()
        )),
        Op::Get { expected, name } if data != &expected[..] => {
            Done::Failed(format!("{name}: contents differ"))
        }
        _ => Done::Ok {
            bytes: data.len() as u64,
            retransmits: 0,
        },
    }
}

impl Generator<'_> {
    fn finish(&mut self, index: usize, now: Instant, done: Done) {
        let Some(slot) = self.slots[index].take() else {
            return;
        };
        // Closing the socket (as `slot` drops) takes it out of the epoll set.
        self.free.push(index);
        self.running -= 1;
        if slot.active {
            self.active -= 1;
        }
        match done {
            Done::Ok { bytes, retransmits } => {
                self.tally.completed += 1;
                self.tally.bytes += bytes;
                self.tally.retransmits += retransmits;
                self.tally.latencies.push(now - slot.started);
            }
            Done::Failed(why) => {
                self.tally.failed += 1;
                self.tally.first_failure.get_or_insert(why);
            }
        }
    }

    /// Runs every timer that is due.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, index, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(Some(slot)) = self.slots.get_mut(index) else {
                continue;
            };
            if slot.generation != generation || slot.armed != Some(at) {
                continue;
            }
            slot.armed = None;
            let mut send = false;
            if slot.send_at.is_some_and(|s| s <= now) {
                slot.send_at = None;
                send = true;
            }
            if slot.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.tally.timeouts += 1;
                slot.engine.handle_timeout(now);
                send = true;
            }
            // A transmit held for a slow client stays held until its own time.
            let held = slot.send_at.is_some();
            self.after_io(index, now, send && !held);
        }
    }
}

/// Sends everything the engine has to send. A failed send is like a lost datagram: the
/// engine retransmits.
fn flush(slot: &mut Slot, buf: &mut [u8]) {
    while let Some(t) = slot.engine.poll_transmit(buf) {
        let _ = slot.socket.send_to(&buf[..t.len], t.destination);
    }
}

/// User plus system CPU time of this process so far.
pub fn self_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec() as u64, (t.tv_usec() as u32) * 1000)
            };
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}
