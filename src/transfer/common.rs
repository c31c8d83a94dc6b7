//! What every transfer shares: who the peer is, answering strangers, the one ERROR packet
//! that ends a transfer, the event queue and the final report.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Instant;

use super::{Direction, Event, Negotiated, Outcome, TransferReport, Transmit};
use crate::proto::{ErrorCode, Mode, Packet};

/// The peer, the pending one-off packets and the bookkeeping of a transfer.
#[derive(Debug)]
pub(crate) struct Common {
    pub direction: Direction,
    pub peer: SocketAddr,
    pub filename: String,
    pub mode: Mode,
    pub started: Instant,
    /// When the last block arrived, for a receiver that lingers afterwards.
    completed: Option<Instant>,
    pub options: Negotiated,
    /// A stranger to answer with ERROR 5 (at most one queued: a flood is not amplified).
    stranger: Option<SocketAddr>,
    /// The ERROR packet that ends this transfer, not yet sent.
    final_error: Option<(ErrorCode, String)>,
    events: VecDeque<Event>,
    finished: bool,
}

impl Common {
    pub fn new(
        now: Instant,
        direction: Direction,
        peer: SocketAddr,
        filename: &str,
        mode: Mode,
        options: Negotiated,
    ) -> Common {
        Common {
            direction,
            peer,
            filename: filename.to_owned(),
            mode,
            started: now,
            completed: None,
            options,
            stranger: None,
            final_error: None,
            events: VecDeque::new(),
            finished: false,
        }
    }

    /// True if `source` is the peer; otherwise queues ERROR 5 for the stranger.
    pub fn accept_source(&mut self, source: SocketAddr) -> bool {
        if source == self.peer {
            return true;
        }
        self.stranger.get_or_insert(source);
        false
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Writes a pending ERROR (to a stranger, or the final one to the peer).
    pub fn poll_error(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(stranger) = self.stranger.take() {
            let packet = Packet::Error {
                code: ErrorCode::UnknownTransferId,
                message: "unknown transfer ID".into(),
            };
            return encode(&packet, buf, stranger);
        }
        let (code, message) = self.final_error.take()?;
        let packet = Packet::Error {
            code,
            message: message.into(),
        };
        encode(&packet, buf, self.peer)
    }

    /// The file has arrived whole: hands it over, and ends the reported duration here
    /// (the linger that follows is not part of the transfer).
    pub fn received(&mut self, now: Instant, data: Vec<u8>) {
        self.completed = Some(now);
        self.events.push_back(Event::Received(data));
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Ends the transfer by sending ERROR `code` to the peer.
    pub fn refuse(&mut self, now: Instant, code: ErrorCode, message: String, stats: Stats) {
        self.final_error = Some((code, message.clone()));
        self.finish(now, Outcome::Refused { code, message }, stats);
    }

    /// Ends the transfer and queues its report; later calls do nothing.
    pub fn finish(&mut self, now: Instant, outcome: Outcome, stats: Stats) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.events.push_back(Event::Finished(TransferReport {
            direction: self.direction,
            peer: self.peer,
            filename: self.filename.clone(),
            mode: self.mode,
            options: self.options,
            bytes: stats.bytes,
            blocks: stats.blocks,
            retransmits: stats.retransmits,
            longest_retry_streak: stats.longest_retry_streak,
            duration: self
                .completed
                .unwrap_or(now)
                .saturating_duration_since(self.started),
            outcome,
        }));
    }
}

/// Counters a transfer reports at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub bytes: u64,
    pub blocks: u64,
    pub retransmits: u64,
    pub longest_retry_streak: u32,
}

/// Encodes `packet` for `destination`; `None` (and a debug assertion) if `buf` is short.
pub(crate) fn encode(
    packet: &Packet<'_>,
    buf: &mut [u8],
    destination: SocketAddr,
) -> Option<Transmit> {
    match packet.encode(buf) {
        Ok(len) => Some(Transmit { destination, len }),
        Err(error) => {
            debug_assert!(false, "poll_transmit buffer: {error}");
            None
        }
    }
}

/// The retransmission timer and retry budget shared by both halves of the protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryTimer {
    pub timeout: std::time::Duration,
    pub max_retries: u32,
    pub deadline: Instant,
    /// Timeouts since the last progress.
    pub streak: u32,
    pub longest_streak: u32,
}

/// What a timeout means for the half that owns the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Called before the deadline: nothing to do.
    NotYet,
    /// Retransmit, the budget allows it.
    Retransmit,
    /// The budget is spent: give up.
    GiveUp,
}

impl RetryTimer {
    pub fn new(now: Instant, timeout: std::time::Duration, max_retries: u32) -> RetryTimer {
        RetryTimer {
            timeout,
            max_retries,
            deadline: now + timeout,
            streak: 0,
            longest_streak: 0,
        }
    }

    /// The peer made progress: the budget is whole again and the clock restarts.
    pub fn progress(&mut self, now: Instant) {
        self.streak = 0;
        self.deadline = now + self.timeout;
    }

    pub fn expire(&mut self, now: Instant) -> Expiry {
        if now < self.deadline {
            return Expiry::NotYet;
        }
        if self.streak >= self.max_retries {
            return Expiry::GiveUp;
        }
        self.streak += 1;
        self.longest_streak = self.longest_streak.max(self.streak);
        self.deadline = now + self.timeout;
        Expiry::Retransmit
    }
}

/// One half of the protocol (the sender or the receiver of blocks), as its transfer sees it.
pub(crate) trait Half {
    /// The counters for the report.
    fn stats(&self) -> Stats;
    /// When the retransmission timer (or the linger) runs out.
    fn deadline(&self) -> Instant;
    /// Handles the timer; `Some` when the transfer is over.
    fn expire(&mut self, now: Instant) -> Option<Outcome>;
}

/// A transfer's shared part and its half of the protocol: everything the four kinds of
/// transfer do alike.
#[derive(Debug)]
pub(crate) struct Endpoint<H> {
    pub common: Common,
    pub half: H,
}

impl<H: Half> Endpoint<H> {
    /// True if a datagram from `source` is for this transfer (strangers get ERROR 5).
    pub fn accepts(&mut self, source: SocketAddr) -> bool {
        !self.common.is_finished() && self.common.accept_source(source)
    }

    /// The ERROR to send first, or `Break(None)` when nothing more will be sent.
    pub fn poll_pending(&mut self, buf: &mut [u8]) -> ControlFlow<Option<Transmit>> {
        if let Some(transmit) = self.common.poll_error(buf) {
            return ControlFlow::Break(Some(transmit));
        }
        if self.common.is_finished() {
            return ControlFlow::Break(None);
        }
        ControlFlow::Continue(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.is_finished() {
            return;
        }
        if let Some(outcome) = self.half.expire(now) {
            self.finish(now, outcome);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.common.is_finished()).then(|| self.half.deadline())
    }

    /// The peer sent ERROR: the transfer ends without an answer. ERROR 8 before any data
    /// of a transfer whose OACK answered `tsize` is a size probe, not a failure.
    pub fn peer_error(&mut self, now: Instant, code: ErrorCode, message: Cow<'_, str>) {
        let stats = self.half.stats();
        let probe = code == ErrorCode::OptionNegotiation
            && self.common.options.tsize.is_some()
            && stats.blocks == 0
            && stats.bytes == 0;
        let outcome = if probe {
            Outcome::Probe
        } else {
            let message = message.into_owned();
            Outcome::PeerError { code, message }
        };
        self.finish(now, outcome);
    }

    /// Ends the transfer by sending ERROR `code`, unless it is over already.
    pub fn refuse(&mut self, now: Instant, code: ErrorCode, message: String) {
        if !self.common.is_finished() {
            let stats = self.half.stats();
            self.common.refuse(now, code, message, stats);
        }
    }

    pub fn finish(&mut self, now: Instant, outcome: Outcome) {
        let stats = self.half.stats();
        self.common.finish(now, outcome, stats);
    }
}
