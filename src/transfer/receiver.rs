//! The receiving half of the protocol: assembles DATA blocks in order, acknowledges each
//! window (RFC 7440) and the last block, reports gaps, and re-acknowledges when the
//! sender shows that an ACK was lost.
//!
//! Block 0 stands for the handshake: "acknowledging block 0" means sending whatever
//! opens the transfer from this side (ACK 0 or an OACK from a server, the request or
//! ACK 0 from a client); the owner of the receiver decides which.
//!
//! Round trips for the adaptive timer: from an acknowledgement sent once to the DATA
//! that moves the transfer on (or, for a client's request, to the server's first reply).
//! An acknowledgement sent again is not timed (Karn's rule), nor one that reports a gap
//! or answers a resent block: blocks the sender sent before it may still be on their
//! way, and one arriving soon after would pass for a short round trip.

use std::time::Instant;

use super::Negotiated;
use super::report::Stats;
use super::timer::{Expiry, RetryTimer};
use crate::proto::{BlockNumber, NetasciiDecoder};

/// What a DATA packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataEffect {
    /// A duplicate, an out-of-order block or an oversized one: nothing was stored.
    Ignored,
    /// The block was stored.
    Progress,
    /// The last block was stored: the file is complete.
    Complete,
    /// Storing the block would pass the size limit.
    TooLarge,
}

/// The receiver of one file.
#[derive(Debug)]
pub(crate) struct Receiver {
    blksize: usize,
    window: u64,
    max_len: u64,
    /// The next block wanted.
    expected: u64,
    /// The block of the latest ACK sent (0: the handshake).
    last_acked: u64,
    /// An ACK is due: for `expected - 1`.
    ack_due: bool,
    /// The ACK due ends a window (or is the handshake): nothing newer is in flight, so
    /// the next new block answers it and it may be timed.
    ack_timeable: bool,
    /// A gap was already reported for the current `expected`.
    gap_reported: bool,
    complete: bool,
    /// Some acknowledgement (or the handshake) was sent already.
    acked_before: bool,
    data: Vec<u8>,
    /// Bytes stored so far (kept after `take_data`).
    stored: u64,
    decoder: Option<NetasciiDecoder>,
    pub timer: RetryTimer,
    pub retransmits: u64,
    /// When the latest acknowledgement left, if it was sent once: it is being timed.
    timed: Option<Instant>,
}

impl Receiver {
    /// A receiver of at most `max_len` bytes with the block size, window and timeout of
    /// `options`, whose handshake acknowledgement (block 0) is due at once.
    pub fn new(netascii: bool, max_len: u64, options: &Negotiated, timer: RetryTimer) -> Receiver {
        let mut receiver = Receiver {
            blksize: 0,
            window: 1,
            max_len,
            expected: 1,
            last_acked: 0,
            ack_due: true,
            ack_timeable: true,
            gap_reported: false,
            complete: false,
            acked_before: false,
            data: Vec::new(),
            stored: 0,
            decoder: netascii.then(NetasciiDecoder::default),
            timer,
            retransmits: 0,
            timed: None,
        };
        receiver.shape(options);
        receiver
    }

    /// Sets the block size and window when a client learns them from the server's OACK,
    /// before block 1 arrives (the caller sets the timer's pace).
    pub fn configure(&mut self, options: &Negotiated) {
        self.shape(options);
    }

    /// The peer answered what was timed (DATA that moved the transfer on, or the
    /// server's reply to a client's request): one round trip measured.
    pub fn answered(&mut self, now: Instant) {
        if let Some(sent) = self.timed.take() {
            self.timer.sample(now.saturating_duration_since(sent));
        }
    }

    /// Sets the block size and window; only before block 1 arrives.
    fn shape(&mut self, options: &Negotiated) {
        self.blksize = usize::from(options.blksize.max(1));
        self.window = u64::from(options.windowsize.max(1));
    }

    /// Stores the file in `buffer` (emptied first) instead of a new allocation, so that a
    /// caller running many transfers can reuse memory it has already touched. Only before
    /// the first block.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.data.is_empty() {
            buffer.clear();
            self.data = buffer;
        }
    }

    /// Reserves room for an announced size (capped by the limit).
    pub fn reserve(&mut self, announced: u64) {
        // What a client announces is not what it sends: reserve a window at most, and let
        // the buffer grow with the data that does arrive.
        let window = self.window.saturating_mul(self.blksize as u64);
        let capped = announced.min(self.max_len).min(window);
        self.data.reserve(usize::try_from(capped).unwrap_or(0));
    }

    /// Blocks and bytes received so far.
    pub fn received(&self) -> (u64, u64) {
        (self.expected - 1, self.stored)
    }

    /// True once the last block has arrived.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// True until the first DATA block has arrived.
    pub fn awaiting_first_block(&self) -> bool {
        self.expected == 1
    }

    /// Handles DATA `block` carrying `payload`.
    pub fn handle_data(&mut self, now: Instant, block: BlockNumber, payload: &[u8]) -> DataEffect {
        if payload.len() > self.blksize {
            return DataEffect::Ignored;
        }
        // How far ahead of the wanted block this one is, on the 16-bit wire: inside the
        // window it is the wanted block or one after a gap; anything else was sent before.
        let ahead = u64::from(
            block
                .0
                .wrapping_sub(BlockNumber::from_absolute(self.expected).0),
        );
        if self.complete || ahead >= self.window {
            // Old news: the sender resent what we have. If it resent the block we last
            // acknowledged, that ACK was lost: send it again.
            let behind = (1 << 16) - ahead;
            if self.expected.checked_sub(behind) == Some(self.last_acked) {
                self.ack_due = true;
                self.ack_timeable = false;
            }
            return DataEffect::Ignored;
        }
        if ahead > 0 {
            // A gap: report it once, by acknowledging the last block in order.
            if !self.gap_reported {
                self.gap_reported = true;
                self.ack_due = true;
                self.ack_timeable = false;
            }
            return DataEffect::Ignored;
        }
        let pending = self.decoder.map_or(0, |d| d.pending_len());
        if (self.data.len() + pending + payload.len()) as u64 > self.max_len {
            return DataEffect::TooLarge;
        }
        match &mut self.decoder {
            Some(decoder) => decoder.decode(payload, &mut self.data),
            None => self.data.extend_from_slice(payload),
        }
        self.stored = self.data.len() as u64;
        self.expected += 1;
        self.gap_reported = false;
        self.answered(now);
        self.timer.progress(now);
        if payload.len() < self.blksize {
            if let Some(decoder) = &mut self.decoder {
                decoder.finish(&mut self.data);
                self.stored = self.data.len() as u64;
            }
            self.complete = true;
            self.ack_due = true;
            self.restart_timer(now);
            return DataEffect::Complete;
        }
        if self.expected - 1 - self.last_acked >= self.window {
            self.ack_due = true;
            self.ack_timeable = true;
        }
        DataEffect::Progress
    }

    /// Arms the timer from `now` with its (possibly new) timeout: for the next ACK, or
    /// once the file is complete for the linger. The sender's retransmission of a lost
    /// last ACK comes about one timeout after its last send, so the linger lasts two
    /// timeouts: exactly one would race it.
    pub fn restart_timer(&mut self, now: Instant) {
        if self.complete {
            self.timer.deadline = now + 2 * self.timer.timeout();
        } else {
            self.timer.progress(now);
        }
    }

    /// The block to acknowledge now, if any (0: the handshake).
    pub fn poll_ack(&mut self) -> Option<u64> {
        if !std::mem::take(&mut self.ack_due) {
            return None;
        }
        let block = self.expected - 1;
        if block == self.last_acked && self.acked_before {
            self.retransmits += 1;
            self.timed = None;
        } else {
            self.timed = self.ack_timeable.then_some(self.timer.now);
        }
        self.acked_before = true;
        self.last_acked = block;
        Some(block)
    }

    /// The peer answered our request (a client's RRQ) with an OACK: ACK 0 is due, and is
    /// a new packet rather than a retransmission of the request.
    pub fn acknowledge_oack(&mut self) {
        self.acked_before = false;
        self.ack_due = true;
        self.ack_timeable = true;
    }

    /// Cancels the acknowledgement a timeout asked for.
    pub fn hold(&mut self) {
        self.ack_due = false;
    }

    /// Asks for the current acknowledgement to be sent (again).
    pub fn request_ack(&mut self) {
        self.ack_due = true;
    }

    /// Handles the timer: while receiving, the last ACK is sent again; once complete,
    /// the linger is over (`GiveUp` then means "done").
    pub fn handle_timeout(&mut self, now: Instant) -> Expiry {
        if self.complete {
            return if now >= self.timer.deadline {
                Expiry::GiveUp
            } else {
                Expiry::NotYet
            };
        }
        let expiry = self.timer.expire(now);
        if expiry == Expiry::Retransmit {
            self.ack_due = true;
        }
        expiry
    }

    /// The counters for the report.
    pub fn stats(&self) -> Stats {
        let (blocks, bytes) = self.received();
        Stats {
            bytes,
            blocks,
            retransmits: self.retransmits,
            timeouts: self.timer.expiries,
            longest_retry_streak: self.timer.longest_streak,
            longest_silence: self.timer.longest_silence,
        }
    }

    /// The received bytes; empties the receiver.
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::Negotiated;
    use std::time::Duration;

    #[test]
    fn an_announced_size_reserves_a_window_at_most() {
        let now = Instant::now();
        let options = Negotiated {
            blksize: 512,
            windowsize: 4,
            timeout: Duration::from_secs(1),
            tsize: Some(1 << 20),
        };
        let timer = RetryTimer::new(now, options.timeout, 3, super::super::timer::Pace::Fixed);
        let mut receiver = Receiver::new(false, 64 << 20, &options, timer);
        receiver.reserve(1 << 20);
        assert!(
            receiver.data.capacity() <= 4 * 512,
            "{}",
            receiver.data.capacity()
        );
    }
}
