//! The physical limit of the machine: raw UDP between two processes pinned like the
//! benchmark (the "server" end on CPU 0, the measuring end on CPU 1), with no TFTP at all.
//!
//! - Ping-pong (lock-step): the measuring end sends a 4-byte poke, the other end answers
//!   with a datagram of `4 + payload` bytes (a DATA block's size), one at a time. This is
//!   what a lock-step TFTP download at blksize `payload` could reach at best.
//! - Stream: the other end sends `4 + payload`-byte datagrams as fast as it can, one per
//!   system call or (GSO stream) many per call with UDP segmentation offload, as memtftpd
//!   sends a window; the measuring end counts what arrives, one datagram per call, as a
//!   TFTP client does. This is the ceiling of a windowed download.
//!
//! - Storm: many ping-pongs at once, each on its own pair of sockets, the serving end
//!   one thread on a level-triggered epoll (what a lock-step TFTP server does per block,
//!   with no TFTP at all). The serving end's CPU per round trip while it is kept busy is
//!   the floor of a lock-step server's CPU per block (S4, S5): one receive and one send,
//!   as the kernel charges them here.
//!
//! Ping-pong and stream report payload MiB/s, so they sit beside S1–S3 in the table.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::epoll::Readiness;
use nix::sys::epoll::EpollEvent;

/// The serving end of a ping-pong: answers every poke with `4 + payload` bytes, until a
/// poke of length 1 or `limit` has passed.
pub fn serve_pingpong(socket: &UdpSocket, payload: usize, limit: Duration) -> io::Result<()> {
    let reply = vec![0x5au8; payload + 4];
    let mut buf = [0u8; 64];
    let end = Instant::now() + limit;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    while Instant::now() < end {
        match socket.recv_from(&mut buf) {
            Ok((1, _)) => break,
            Ok((_, from)) => {
                socket.send_to(&reply, from)?;
            }
            Err(e) if read_timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The measuring end of a ping-pong: round trips for `duration`; returns payload MiB/s
/// and round trips per second.
pub fn measure_pingpong(
    server: SocketAddr,
    payload: usize,
    duration: Duration,
) -> io::Result<(f64, f64)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = vec![0u8; 65536];
    // Wait until the other end answers (it may still be starting).
    let ready_by = Instant::now() + Duration::from_secs(5);
    loop {
        socket.send_to(&[0u8; 4], server)?;
        if socket.recv_from(&mut buf).is_ok() {
            break;
        }
        if Instant::now() > ready_by {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "ping-pong peer silent",
            ));
        }
    }
    let begin = Instant::now();
    let mut trips = 0u64;
    while begin.elapsed() < duration {
        socket.send_to(&[0u8; 4], server)?;
        match socket.recv_from(&mut buf) {
            Ok(_) => trips += 1,
            Err(e) if read_timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let secs = begin.elapsed().as_secs_f64();
    let _ = socket.send_to(&[1u8], server);
    Ok((
        trips as f64 * payload as f64 / secs / MIB,
        trips as f64 / secs,
    ))
}

/// The most bytes and segments one UDP segmentation offload send may carry.
const GSO_MAX_BYTES: usize = 65_000;
const GSO_MAX_SEGMENTS: usize = 64;

/// Sends the `segment`-byte datagrams laid end to end in `data` with one `sendmsg`.
fn send_segments(
    socket: &UdpSocket,
    data: &[u8],
    segment: usize,
    to: SocketAddr,
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd;
    let size = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let control = [ControlMessage::UdpGsoSegments(&size)];
    let destination = SockaddrStorage::from(to);
    let iov = [io::IoSlice::new(data)];
    sendmsg(
        socket.as_raw_fd(),
        &iov,
        &control,
        MsgFlags::empty(),
        Some(&destination),
    )?;
    Ok(())
}

/// The sending end of a stream: `4 + payload`-byte datagrams to `to` for `duration`,
/// one per system call, or with `gso` as many as fit in one UDP segmentation offload
/// send (as memtftpd sends a window).
pub fn blast(to: SocketAddr, payload: usize, duration: Duration, gso: bool) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let segment = payload + 4;
    let segments = if gso {
        (GSO_MAX_BYTES / segment).clamp(1, GSO_MAX_SEGMENTS)
    } else {
        1
    };
    let data = vec![0xa5u8; segment * segments];
    let begin = Instant::now();
    while begin.elapsed() < duration {
        for _ in 0..64 {
            let sent = if segments > 1 {
                send_segments(&socket, &data, segment, to)
            } else {
                socket.send_to(&data, to).map(|_| ())
            };
            match sent {
                Ok(()) => {}
                // The receiver's buffer is full or it is gone: keep going until the time.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The measuring end of a stream: counts payload bytes arriving on `socket` for
/// `duration` from the first datagram; returns payload MiB/s.
pub fn measure_stream(socket: &UdpSocket, duration: Duration) -> io::Result<f64> {
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 65536];
    socket.recv_from(&mut buf)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let begin = Instant::now();
    let mut bytes = 0u64;
    while begin.elapsed() < duration {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) => bytes += len.saturating_sub(4) as u64,
            Err(e) if read_timed_out(&e) => {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(bytes as f64 / begin.elapsed().as_secs_f64() / MIB)
}

/// The serving end of a storm: one socket per measuring socket (`sockets`, already
/// bound), each poke answered with `4 + payload` bytes, until `limit` has passed or a
/// poke of length 1 arrives; returns how many pokes it answered.
pub fn serve_storm(sockets: &[UdpSocket], payload: usize, limit: Duration) -> io::Result<u64> {
    let reply = vec![0x5au8; payload + 4];
    let poller = Readiness::new()?;
    for (token, socket) in sockets.iter().enumerate() {
        socket.set_nonblocking(true)?;
        poller.add(socket, token as u64)?;
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = [0u8; 64];
    let mut answered = 0;
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let ready = poller.wait(&mut events, Duration::from_millis(200))?;
        for event in &events[..ready] {
            let socket = &sockets[event.data() as usize];
            match socket.recv_from(&mut buf) {
                Ok((1, _)) => return Ok(answered),
                Ok((_, from)) => {
                    // Lost like any datagram if it fails: the measuring end re-pokes.
                    if socket.send_to(&reply, from).is_ok() {
                        answered += 1;
                    }
                }
                Err(_) => {}
            }
        }
    }
    Ok(answered)
}

/// The measuring end of a storm: every socket in `peers` gets a poke, and another as
/// soon as its answer arrives, for `duration`; returns round trips per second.
pub fn measure_storm(peers: &[SocketAddr], duration: Duration) -> io::Result<f64> {
    let poller = Readiness::new()?;
    let mut sockets = Vec::with_capacity(peers.len());
    for (token, peer) in peers.iter().enumerate() {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        poller.add(&socket, token as u64)?;
        socket.send_to(&[0u8; 4], peer)?;
        sockets.push(socket);
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 65536];
    let mut trips = 0u64;
    let begin = Instant::now();
    while begin.elapsed() < duration {
        let ready = poller.wait(&mut events, Duration::from_millis(100))?;
        if ready == 0 {
            // A poke or an answer was lost: poke everyone again.
            for (socket, peer) in sockets.iter().zip(peers) {
                socket.send_to(&[0u8; 4], peer)?;
            }
        }
        for event in &events[..ready] {
            let token = event.data() as usize;
            if sockets[token].recv_from(&mut buf).is_ok() {
                trips += 1;
                sockets[token].send_to(&[0u8; 4], peers[token])?;
            }
        }
    }
    let secs = begin.elapsed().as_secs_f64();
    for (socket, peer) in sockets.iter().zip(peers) {
        let _ = socket.send_to(&[1u8], peer);
    }
    Ok(trips as f64 / secs)
}

/// A read that ended at its socket's timeout (either kind the platform reports).
fn read_timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

const MIB: f64 = (1 << 20) as f64;
