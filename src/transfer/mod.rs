//! Per-transfer state machines: no sockets, no clock.
//!
//! A transfer is driven only through methods that take the time as an argument, in the
//! manner of quinn-proto's `Connection`:
//!
//! 1. [`handle_datagram(now, source, bytes)`](ReadTransfer::handle_datagram) whenever a
//!    datagram arrives on the transfer's socket (from anyone: strangers are dealt with
//!    inside);
//! 2. then [`poll_transmit(buf)`](ReadTransfer::poll_transmit) until it returns `None`,
//!    sending each datagram it writes to the destination it names;
//! 3. [`poll_timeout()`](ReadTransfer::poll_timeout) for the instant at which to call
//!    [`handle_timeout(now)`](ReadTransfer::handle_timeout) if nothing arrives first;
//! 4. [`poll_event()`](ReadTransfer::poll_event) for what the caller must act on: the
//!    bytes of a completed upload, and the final [`TransferReport`].
//!
//! The server side has [`ReadTransfer`] (the server sends a file) and [`WriteTransfer`]
//! (the server receives one); the client side, used by the tests and the benchmark, has
//! [`ClientDownload`] and [`ClientUpload`]. Both sides share the two halves of the
//! protocol: a windowed sender of blocks (`sender`) and a receiver that acknowledges them
//! (`receiver`). The handshake (request, OACK, ACK 0) is modelled as block 0, so its
//! retransmission follows the same timer and retry budget as data.

mod client;
mod common;
mod read;
mod receiver;
mod sender;
mod write;

pub use client::{ClientConfig, ClientDownload, ClientUpload};
pub use read::ReadTransfer;
pub use write::WriteTransfer;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::{DEFAULT_BLKSIZE, ErrorCode, Mode, TransferOptions};

/// The limits and defaults a server applies to every transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferConfig {
    /// Retransmission timeout when the client does not negotiate `timeout`.
    pub timeout: Duration,
    /// Retransmissions of the same packet before the transfer gives up.
    pub retries: u32,
    /// The largest `blksize` granted; larger requests are lowered to it.
    pub max_blksize: u16,
    /// The largest `windowsize` granted; larger requests are lowered to it.
    pub max_windowsize: u16,
    /// The largest upload accepted, in bytes (checked against `tsize` and as data arrives).
    pub max_upload_size: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            timeout: Duration::from_secs(2),
            retries: 5,
            max_blksize: crate::proto::MAX_BLKSIZE,
            max_windowsize: 64,
            max_upload_size: 64 << 20,
        }
    }
}

/// The parameters a transfer runs with once negotiation is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks in flight before an ACK is needed.
    pub windowsize: u16,
    /// Retransmission timeout.
    pub timeout: Duration,
    /// The transfer size announced in the OACK, if `tsize` was negotiated.
    pub tsize: Option<u64>,
}

impl Negotiated {
    /// RFC 1350 without options: 512-byte blocks, lock-step.
    pub(crate) fn plain(timeout: Duration) -> Negotiated {
        Negotiated {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout,
            tsize: None,
        }
    }

    /// Grants what the client asked for within the server's caps; returns the parameters
    /// and the options to acknowledge (empty: no OACK). `tsize` is the value to answer
    /// for a read, or the announced size for a write.
    pub(crate) fn grant(
        requested: &TransferOptions,
        config: &TransferConfig,
        tsize: Option<u64>,
    ) -> (Negotiated, TransferOptions) {
        let oack = TransferOptions {
            blksize: requested.blksize.map(|b| b.min(config.max_blksize.max(8))),
            timeout: requested.timeout,
            tsize: requested.tsize.and(tsize),
            windowsize: requested
                .windowsize
                .map(|w| w.min(config.max_windowsize.max(1))),
        };
        let negotiated = Negotiated {
            blksize: oack.blksize.unwrap_or(DEFAULT_BLKSIZE),
            windowsize: oack.windowsize.unwrap_or(1),
            timeout: oack
                .timeout
                .map_or(config.timeout, |t| Duration::from_secs(u64::from(t))),
            tsize: oack.tsize,
        };
        (negotiated, oack)
    }
}

/// Which way the file travels, seen from the side that owns the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A read request: the server sends the file.
    Read,
    /// A write request: the server receives the file.
    Write,
}

impl Direction {
    /// `"read"` or `"write"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was delivered (read: the last block was acknowledged; write: the last
    /// block arrived and was acknowledged).
    Completed,
    /// The peer went silent for longer than the retry budget.
    TimedOut,
    /// The peer asked for `tsize`, read the OACK and ended the transfer with ERROR 8
    /// before any data: a size probe, as UEFI PXE firmware sends before every download.
    Probe,
    /// The peer sent an ERROR packet (code 8 after an OACK: it declined the options).
    PeerError {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's message.
        message: String,
    },
    /// This side ended the transfer with an ERROR packet (limits, bad options).
    Refused {
        /// The code sent.
        code: ErrorCode,
        /// The message sent.
        message: String,
    },
}

impl Outcome {
    /// A short word for logs and journal fields.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::TimedOut => "timed-out",
            Outcome::Probe => "probe",
            Outcome::PeerError { .. } => "peer-error",
            Outcome::Refused { .. } => "refused",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed | Outcome::TimedOut => f.write_str(self.as_str()),
            Outcome::Probe => f.write_str("size probe (the client read tsize and declined)"),
            Outcome::PeerError { code, message } => {
                write!(f, "peer sent error {code}: {message}")
            }
            Outcome::Refused { code, message } => write!(f, "refused with error {code}: {message}"),
        }
    }
}

/// What a finished transfer reports, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// Read or write.
    pub direction: Direction,
    /// The other end's address and port.
    pub peer: SocketAddr,
    /// The file name as requested.
    pub filename: String,
    /// The transfer mode.
    pub mode: Mode,
    /// The parameters the transfer ran with.
    pub options: Negotiated,
    /// File bytes delivered (read: acknowledged by the peer; write: received).
    pub bytes: u64,
    /// DATA blocks delivered.
    pub blocks: u64,
    /// Packets sent again after a timeout or a peer's request to resend.
    pub retransmits: u64,
    /// The most timeouts in a row without progress (never above the retry budget).
    pub longest_retry_streak: u32,
    /// From the request to the end.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A datagram written by `poll_transmit`: send `buf[..len]` to `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length at the start of the caller's buffer.
    pub len: usize,
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// All bytes of a write (or a client download) arrived and the last block was
    /// acknowledged; the transfer may linger a little longer to re-acknowledge.
    Received(Vec<u8>),
    /// The transfer is over; the caller may drop it.
    Finished(TransferReport),
}

#[cfg(test)]
mod tests;
