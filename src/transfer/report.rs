//! What a transfer tells its owner about itself: which way it runs, how it ended, and the
//! report logged at the end.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::Negotiated;
use crate::proto::{ErrorCode, Mode};

/// Which way the file travels, seen from the side that owns the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The peer never answered at all: the request may have come from a forged address.
    Unanswered,
    /// The client sent a new request from the same port: it had given this one up.
    Superseded,
    /// Ended unanswered to make room for a new request.
    Evicted,
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
            Outcome::Unanswered => "unanswered",
            Outcome::Superseded => "superseded",
            Outcome::Evicted => "evicted",
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
            Outcome::Unanswered => f.write_str("unanswered (the requester never replied)"),
            Outcome::Superseded => f.write_str("superseded by a new request from the same port"),
            Outcome::Evicted => f.write_str("evicted unanswered to make room"),
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
    /// Times the retransmission timer expired and something was sent again (the rest of
    /// `retransmits` answered the peer: a gap it reported, a repeated request).
    pub timeouts: u64,
    /// The most timeouts in a row without progress. With the fixed timer never above
    /// the configured retries; the adaptive timer fits more into the same silence.
    pub longest_retry_streak: u32,
    /// The longest the peer went without progress, as far as the timer saw it (from the
    /// last progress to a timeout): never above the patience, timeout x (retries + 1).
    pub longest_silence: Duration,
    /// From the request to the end.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Counters a half of the protocol reports at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub bytes: u64,
    pub blocks: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub longest_retry_streak: u32,
    pub longest_silence: Duration,
}
