//! The abusive peers of the robustness suite: a garbage flood, requesters that never
//! answer, and the silent victim of an amplification attempt. Shared by
//! `cargo bench --bench robust` and `tests/robust.rs`; every loop is bounded in count
//! and in time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A read request for `name` in octet mode with `options` (name, value).
pub fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = vec![0, 1];
    for field in [name, "octet"]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        bytes.extend_from_slice(field.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// ACK `block`.
pub fn ack(block: u16) -> Vec<u8> {
    let [hi, lo] = block.to_be_bytes();
    vec![0, 4, hi, lo]
}

/// `count` distinct loopback addresses in 127.`net`.0.0/16 (127.`net`.0.1, .0.2, ...
/// .0.250, .1.1, ...): requesters on as many hosts. Any 127/8 address is local on Linux.
pub fn hosts(net: u8, count: usize) -> Vec<IpAddr> {
    (0..count)
        .map(|i| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                net,
                (i / 250) as u8,
                (i % 250) as u8 + 1,
            ))
        })
        .collect()
}

/// Sends garbage to `target` from `senders` sockets on `source` until `stop` is set, `max`
/// datagrams have gone or `until` has passed; counts what it sent into `sent`.
///
/// A quarter of the datagrams start with a real opcode (1-6) followed by random bytes, so
/// the parser sees requests, DATA, ACKs and ERRORs that are almost right; the rest are
/// random bytes of random length (0-600).
pub fn garbage_flood(
    target: SocketAddr,
    source: IpAddr,
    senders: usize,
    seed: u64,
    limits: (u64, Instant),
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> io::Result<()> {
    let (max, until) = limits;
    let sockets = (0..senders.max(1))
        .map(|_| {
            let socket = UdpSocket::bind(SocketAddr::new(source, 0))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut datagram = [0u8; 600];
    let mut count = 0u64;
    while count < max && !stop.load(Ordering::Relaxed) {
        if count.is_multiple_of(256) && Instant::now() >= until {
            break;
        }
        let r = next();
        let len = (r % 601) as usize;
        for chunk in datagram[..len].chunks_mut(8) {
            let bytes = next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        if len >= 2 && (r >> 32) % 4 == 0 {
            datagram[0] = 0;
            datagram[1] = ((r >> 40) % 6) as u8 + 1;
        }
        let socket = &sockets[count as usize % sockets.len()];
        // A full buffer on either end just loses the datagram: a flood does not care.
        let _ = socket.send_to(&datagram[..len], target);
        count += 1;
        sent.store(count, Ordering::Relaxed);
    }
    Ok(())
}

/// Sends `request` to `target` once from a fresh socket on each of `sources`; the sockets
/// never read (a forged source, or a requester that walked away) and are kept open, so
/// the server hears no ICMP port unreachable.
pub fn silent_requests(
    target: SocketAddr,
    sources: &[IpAddr],
    request: &[u8],
) -> io::Result<Vec<UdpSocket>> {
    sources
        .iter()
        .map(|ip| {
            let socket = UdpSocket::bind(SocketAddr::new(*ip, 0))?;
            socket.set_nonblocking(true)?;
            socket.send_to(request, target)?;
            Ok(socket)
        })
        .collect()
}

/// What arrived at a silent requester.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub datagrams: usize,
    pub bytes: usize,
    /// Block numbers of the DATA datagrams, in arrival order.
    pub data_blocks: Vec<u16>,
    pub oacks: usize,
    /// ERRORs and anything else.
    pub others: usize,
    /// The largest datagram.
    pub largest: usize,
}

impl Received {
    /// Adds everything waiting on `socket` (non-blocking) without answering it.
    pub fn drain(&mut self, socket: &UdpSocket) {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            self.datagrams += 1;
            self.bytes += len;
            self.largest = self.largest.max(len);
            match &buf[..len] {
                [0, 3, hi, lo, ..] => self.data_blocks.push(u16::from_be_bytes([*hi, *lo])),
                [0, 6, ..] => self.oacks += 1,
                _ => self.others += 1,
            }
        }
    }

    /// Bytes received per byte sent.
    pub fn factor(&self, sent: usize) -> f64 {
        self.bytes as f64 / sent.max(1) as f64
    }
}
