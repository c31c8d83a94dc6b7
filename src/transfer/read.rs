//! `ReadTransfer`: the server side of a read request, sending a file it was handed as
//! shared bytes.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::common::{Common, Expiry, RetryTimer, Stats, encode};
use super::sender::{AckEffect, Sender};
use super::{Direction, Event, Negotiated, Outcome, TransferConfig, Transmit};
use crate::proto::{ErrorCode, Mode, Packet, Request, TransferOptions, netascii_len};

/// The server's half of one read transfer.
///
/// With options, the transfer opens with an OACK and sends DATA 1 only after the
/// client's ACK 0; without, DATA 1 goes out at once. `tsize` is answered with the exact
/// number of bytes that will travel (after netascii translation).
#[derive(Debug)]
pub struct ReadTransfer {
    common: Common,
    sender: Sender,
    /// The OACK, while it is the packet in flight (block 0).
    oack: Option<TransferOptions>,
}

impl ReadTransfer {
    /// Starts sending `file` to `peer` as `request` asks.
    pub fn new(
        now: Instant,
        peer: SocketAddr,
        request: &Request<'_>,
        file: Bytes,
        config: &TransferConfig,
    ) -> ReadTransfer {
        let netascii = request.mode == Mode::Netascii;
        let size = if netascii {
            netascii_len(&file)
        } else {
            file.len() as u64
        };
        let (options, oack) = Negotiated::grant(&request.options, config, Some(size));
        let first = if oack.is_empty() { 1 } else { 0 };
        let timer = RetryTimer::new(now, options.timeout, config.retries);
        let mut sender = Sender::new(now, file, netascii, first, timer);
        sender.configure(options.blksize, options.windowsize, options.timeout);
        let common = Common::new(
            now,
            Direction::Read,
            peer,
            request.filename,
            request.mode,
            options,
        );
        ReadTransfer {
            common,
            sender,
            oack: (!oack.is_empty()).then_some(oack),
        }
    }

    /// Handles a datagram that arrived on this transfer's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if self.common.is_finished() || !self.common.accept_source(source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Ack { block }) => match self.sender.handle_ack(now, block) {
                AckEffect::Done => self.finish(now, Outcome::Completed),
                AckEffect::Progress | AckEffect::Ignored => {}
            },
            Ok(Packet::Error { code, message }) => {
                let message = message.into_owned();
                self.finish(now, Outcome::PeerError { code, message });
            }
            // Anything else from the peer (garbage, a DATA, a repeated request) is
            // dropped: it must not disturb the transfer.
            _ => {}
        }
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout); harmless if early.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.is_finished() {
            return;
        }
        if self.sender.handle_timeout(now) == Expiry::GiveUp {
            self.finish(now, Outcome::TimedOut);
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`MAX_DATAGRAM`](crate::proto::MAX_DATAGRAM) bytes, or `4 + blksize`).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(transmit) = self.common.poll_error(buf) {
            return Some(transmit);
        }
        if self.common.is_finished() {
            return None;
        }
        let block = self.sender.poll_block()?;
        let peer = self.common.peer;
        if block == 0 {
            let options = self.oack?;
            return encode(&Packet::Oack { options }, buf, peer);
        }
        let len = self.sender.write_data(block, buf)?;
        Some(Transmit {
            destination: peer,
            len,
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.common.is_finished()).then_some(self.sender.timer.deadline)
    }

    /// The next event; a read only ever reports [`Event::Finished`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.common.poll_event()
    }

    /// True once the transfer is over (its report may still wait in `poll_event`).
    pub fn is_finished(&self) -> bool {
        self.common.is_finished()
    }

    /// The peer this transfer serves.
    pub fn peer(&self) -> SocketAddr {
        self.common.peer
    }

    /// Ends the transfer at once with ERROR `code` (e.g. the server is shutting down).
    pub fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        if !self.common.is_finished() {
            let stats = self.stats();
            self.common.refuse(now, code, message.to_owned(), stats);
        }
    }

    fn finish(&mut self, now: Instant, outcome: Outcome) {
        let stats = self.stats();
        self.common.finish(now, outcome, stats);
    }

    fn stats(&self) -> Stats {
        let (blocks, bytes) = self.sender.delivered();
        Stats {
            bytes,
            blocks,
            retransmits: self.sender.retransmits,
            longest_retry_streak: self.sender.timer.longest_streak,
        }
    }
}
