//! What every transfer keeps whatever its role: who the peer is, answering strangers,
//! the one ERROR packet that ends a transfer, the event queue and the final report.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::report::{Direction, Outcome, Stats, TransferReport};
use super::{Event, Negotiated, Transmit};
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
    /// The peer has answered from its address and port (a client's peer, the server,
    /// always counts as answered).
    pub verified: bool,
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
            verified: false,
            events: VecDeque::new(),
            finished: false,
        }
    }

    /// The bookkeeping of a client's transfer, whose peer (the server) counts as
    /// verified from the start.
    pub fn client(
        now: Instant,
        direction: Direction,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: Negotiated,
    ) -> Common {
        Common {
            verified: true,
            ..Common::new(now, direction, server, filename, mode, options)
        }
    }

    /// True if `source` is the peer of an unfinished transfer; a stranger is queued for
    /// ERROR 5.
    pub fn accepts(&mut self, source: SocketAddr) -> bool {
        if self.finished {
            return false;
        }
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

    /// Ends the transfer by sending ERROR `code` to the peer, unless it is over already.
    pub fn refuse(&mut self, now: Instant, code: ErrorCode, message: String, stats: Stats) {
        if self.finished {
            return;
        }
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
            timeouts: stats.timeouts,
            longest_retry_streak: stats.longest_retry_streak,
            longest_silence: stats.longest_silence,
            duration: self
                .completed
                .unwrap_or(now)
                .saturating_duration_since(self.started),
            outcome,
        }));
    }
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
