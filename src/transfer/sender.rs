//! The sending half of the protocol: hands out DATA blocks within a window (RFC 7440),
//! advances on ACKs, and resends after a timeout or when the receiver reports a gap.
//!
//! Blocks are counted from 1 in `u64` and wrap only on the wire, so any file size works.
//! Block 0 stands for the handshake packet that precedes the data (an OACK from a server,
//! a WRQ from a client): it is acknowledged by ACK 0 and nothing else may be in flight
//! with it.
//!
//! No Sorcerer's Apprentice: an ACK for the block before the window (a duplicate or a
//! stale ACK) never causes a resend; only a timeout or an ACK that moves the window
//! while leaving sent blocks unacknowledged does.
//!
//! Round trips for the adaptive timer: one block at a time is timed, the first new block
//! of a burst (so a window's sample covers the whole window), from when it leaves to the
//! ACK that covers it. A resend of that block, or of one before it, or a timeout, drops
//! the measurement (Karn's rule).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::Negotiated;
use super::report::Stats;
use super::timer::{Expiry, RetryTimer};
use crate::proto::{BlockNumber, NetasciiEncoder, encode_data_header};

/// Timeouts in a row after which a silent peer gets single blocks instead of whole
/// windows. Two: on a lossy link a window and its ACK are lost together often enough
/// that probing after the first timeout already costs transfers (the seeded simulation
/// at 20% loss loses about 1.6x as many runs to the retry limit); after the second the
/// cost cannot be told from noise.
pub(crate) const WHOLE_WINDOW_RETRIES: u32 = 2;

/// What an ACK did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckEffect {
    /// A duplicate, stale or bogus ACK: nothing changes.
    Ignored,
    /// The window moved.
    Progress,
    /// The last block is acknowledged: the file is delivered.
    Done,
}

/// The windowed sender of one file.
#[derive(Debug)]
pub(crate) struct Sender {
    file: Bytes,
    /// For netascii: the encoder state at the start of each block from `base` on.
    checkpoints: Option<VecDeque<NetasciiEncoder>>,
    /// Bytes on the wire (after netascii translation).
    wire_len: u64,
    blksize: usize,
    /// The negotiated window.
    window: u64,
    /// Blocks that may be in flight now: one until the peer is trusted, and one again
    /// while it stays silent after a retransmitted window; the whole window otherwise.
    allowed: u64,
    /// The peer has proved it is there: it gets whole windows.
    trusted: bool,
    /// The last block; it is shorter than `blksize`, possibly empty.
    last_block: u64,
    /// The first block not yet acknowledged.
    base: u64,
    /// The next block `poll_block` hands out.
    next: u64,
    /// The first block never sent: anything below it that is sent again is a
    /// retransmission.
    fresh: u64,
    pub timer: RetryTimer,
    pub retransmits: u64,
    /// The block being timed for a round-trip sample, and when it left.
    timed: Option<(u64, Instant)>,
}

impl Sender {
    /// A sender of `file`, `wire_len` bytes once on the wire (its netascii length in
    /// netascii mode), with the block size, window and timeout of `options`, that starts
    /// with block `first` (0 when a handshake packet comes first, 1 otherwise).
    pub fn new(
        file: Bytes,
        netascii: bool,
        wire_len: u64,
        first: u64,
        options: &Negotiated,
        timer: RetryTimer,
    ) -> Sender {
        let mut sender = Sender {
            file,
            checkpoints: netascii.then(VecDeque::new),
            wire_len,
            blksize: 0,
            window: 1,
            allowed: 1,
            trusted: false,
            last_block: 0,
            base: first,
            next: first,
            fresh: first,
            timer,
            retransmits: 0,
            timed: None,
        };
        sender.shape(options);
        sender
    }

    /// Sets the block size and window when a client learns them from the server's OACK,
    /// before block 1 is sent (the caller sets the timer's pace).
    pub fn configure(&mut self, options: &Negotiated) {
        self.shape(options);
    }

    /// Sets the block size and window; only before block 1 is sent.
    fn shape(&mut self, options: &Negotiated) {
        debug_assert!(self.fresh <= 1, "configure after data was sent");
        self.blksize = usize::from(options.blksize.max(1));
        self.window = u64::from(options.windowsize.max(1));
        if self.trusted {
            self.allowed = self.window;
        }
        self.last_block = self.wire_len / self.blksize as u64 + 1;
        if let Some(checkpoints) = &mut self.checkpoints {
            checkpoints.clear();
            checkpoints.push_back(NetasciiEncoder::default());
        }
    }

    /// Sends the first block (or the handshake packet) again, at once.
    pub fn resend_first(&mut self) {
        if self.base <= 1 && self.fresh > self.base {
            self.next = self.base;
        }
    }

    /// Cancels the retransmission a timeout asked for: nothing is sent until an ACK.
    pub fn hold(&mut self) {
        self.next = self.last_block + 1;
    }

    /// The peer answered: from now on it gets whole windows.
    pub fn trust(&mut self) {
        self.trusted = true;
        self.allowed = self.window;
    }

    /// True while the handshake packet (block 0) is unacknowledged.
    pub fn awaiting_handshake(&self) -> bool {
        self.base == 0
    }

    /// Blocks acknowledged so far and the bytes they carried.
    pub fn delivered(&self) -> (u64, u64) {
        let blocks = self.base.saturating_sub(1);
        let bytes = (blocks * self.blksize as u64).min(self.wire_len);
        (blocks, bytes)
    }

    /// The next block to send, if the window allows one; counts retransmissions.
    pub fn poll_block(&mut self) -> Option<u64> {
        if !self.has_block_to_send() {
            return None;
        }
        let block = self.next;
        self.next += 1;
        if block < self.fresh {
            self.retransmits += 1;
            if self.timed.is_some_and(|(timed, _)| block <= timed) {
                self.timed = None;
            }
        } else {
            self.fresh = block + 1;
            if self.timed.is_none() {
                self.timed = Some((block, self.timer.now));
            }
        }
        Some(block)
    }

    /// True when [`poll_block`](Self::poll_block) would hand out a block: the window
    /// (one block before the first ACK) has room and blocks are left.
    pub fn has_block_to_send(&self) -> bool {
        let window = if self.base == 0 { 1 } else { self.allowed };
        self.next <= self.last_block && self.next < self.base + window
    }

    /// The length of a full DATA datagram: what `write_data` needs room for.
    pub fn datagram_len(&self) -> usize {
        4 + self.blksize
    }

    /// Writes DATA `block` (>= 1, as returned by `poll_block`) into `buf`; returns the
    /// datagram's length, or `None` if `buf` is shorter than `4 + blksize`.
    pub fn write_data(&mut self, block: u64, buf: &mut [u8]) -> Option<usize> {
        let (header, rest) = buf.split_at_mut_checked(4)?;
        let payload = rest.get_mut(..self.blksize)?;
        encode_data_header(BlockNumber::from_absolute(block), header)?;
        let start = (block - 1) * self.blksize as u64;
        let len = match &mut self.checkpoints {
            None => {
                let start = usize::try_from(start)
                    .unwrap_or(usize::MAX)
                    .min(self.file.len());
                let end = start.saturating_add(self.blksize).min(self.file.len());
                payload[..end - start].copy_from_slice(&self.file[start..end]);
                end - start
            }
            Some(checkpoints) => {
                let index = (block - self.base.max(1)) as usize;
                let mut encoder = checkpoints[index];
                let len = encoder.fill(&self.file, payload);
                if index + 1 == checkpoints.len() {
                    checkpoints.push_back(encoder);
                }
                len
            }
        };
        Some(4 + len)
    }

    /// Handles ACK `block`.
    pub fn handle_ack(&mut self, now: Instant, block: BlockNumber) -> AckEffect {
        let acked = if self.base == 0 {
            // Only ACK 0 answers the handshake.
            if block.0 != 0 || self.fresh == 0 {
                return AckEffect::Ignored;
            }
            0
        } else {
            let before = self.base - 1;
            let offset = u64::from(block.0.wrapping_sub(BlockNumber::from_absolute(before).0));
            if offset == 0 || before + offset >= self.fresh {
                return AckEffect::Ignored;
            }
            before + offset
        };
        if let Some(checkpoints) = &mut self.checkpoints {
            let consumed = acked + 1 - self.base.max(1);
            checkpoints.drain(..(consumed as usize).min(checkpoints.len().saturating_sub(1)));
        }
        self.base = acked + 1;
        // An ACK short of what was sent asks for the rest again (RFC 7440).
        self.next = self.base;
        if self.trusted {
            self.allowed = self.window;
        }
        if let Some((timed, sent)) = self.timed
            && timed <= acked
        {
            self.timed = None;
            self.timer.sample(now.saturating_duration_since(sent));
        }
        self.timer.progress(now);
        if acked == self.last_block {
            AckEffect::Done
        } else {
            AckEffect::Progress
        }
    }

    /// The counters for the report.
    pub fn stats(&self) -> Stats {
        let (blocks, bytes) = self.delivered();
        Stats {
            bytes,
            blocks,
            retransmits: self.retransmits,
            timeouts: self.timer.expiries,
            longest_retry_streak: self.timer.longest_streak,
            longest_silence: self.timer.longest_silence,
        }
    }

    /// Handles the retransmission timer; on `Retransmit` the window is resent from its
    /// first unacknowledged block: whole (RFC 7440) for the first
    /// [`WHOLE_WINDOW_RETRIES`] timeouts in a row, then, while the peer stays silent, its
    /// first block alone, so a vanished peer gets single blocks.
    pub fn handle_timeout(&mut self, now: Instant) -> Expiry {
        let expiry = self.timer.expire(now);
        if expiry == Expiry::Retransmit {
            self.timed = None;
            self.next = self.base;
            if self.timer.streak > WHOLE_WINDOW_RETRIES {
                self.allowed = 1;
            }
        }
        expiry
    }
}
