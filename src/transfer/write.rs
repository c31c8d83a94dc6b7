//! `WriteTransfer`: the server side of a write request, receiving a file into memory.

use std::net::SocketAddr;
use std::time::Instant;

use super::common::{Common, Expiry, RetryTimer, Stats, encode};
use super::receiver::{DataEffect, Receiver};
use super::{Direction, Event, Negotiated, Outcome, TransferConfig, Transmit};
use crate::proto::{BlockNumber, ErrorCode, Mode, Packet, Request, TransferOptions};

/// The server's half of one write transfer.
///
/// With options, an OACK replaces ACK 0. An announced `tsize` above the limit is refused
/// with ERROR 3 before any data moves; so is data that grows past it. When the last block
/// arrives it is acknowledged, [`Event::Received`] hands over the bytes at once, and the
/// transfer lingers to acknowledge a retransmitted last block again before it reports
/// [`Event::Finished`]. The linger lasts two timeouts: a client resends its last block
/// about one timeout after sending it, so a linger of exactly one timeout would race it.
#[derive(Debug)]
pub struct WriteTransfer {
    common: Common,
    receiver: Receiver,
    /// The OACK that stands for ACK 0, when options were granted.
    oack: Option<TransferOptions>,
}

impl WriteTransfer {
    /// Starts receiving from `peer` as `request` asks, accepting at most `max_len`
    /// bytes (the lower of the configured upload limit and what the store allows).
    pub fn new(
        now: Instant,
        peer: SocketAddr,
        request: &Request<'_>,
        max_len: u64,
        config: &TransferConfig,
    ) -> WriteTransfer {
        let max_len = max_len.min(config.max_upload_size);
        let announced = request.options.tsize;
        let (options, oack) = Negotiated::grant(&request.options, config, announced);
        let timer = RetryTimer::new(now, options.timeout, config.retries);
        let mut receiver = Receiver::new(now, request.mode == Mode::Netascii, max_len, timer);
        receiver.configure(options.blksize, options.windowsize, options.timeout);
        let common = Common::new(
            now,
            Direction::Write,
            peer,
            request.filename,
            request.mode,
            options,
        );
        let mut transfer = WriteTransfer {
            common,
            receiver,
            oack: (!oack.is_empty()).then_some(oack),
        };
        match announced {
            Some(size) if size > max_len => {
                let message =
                    format!("file too large: {size} bytes announced, at most {max_len} accepted");
                transfer.refuse(now, ErrorCode::DiskFull, message);
            }
            Some(size) => transfer.receiver.reserve(size),
            None => {}
        }
        transfer
    }

    /// Handles a datagram that arrived on this transfer's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if self.common.is_finished() || !self.common.accept_source(source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Data { block, data }) => match self.receiver.handle_data(now, block, data) {
                DataEffect::Complete => {
                    let data = self.receiver.take_data();
                    self.common.push_event(Event::Received(data));
                }
                DataEffect::TooLarge => {
                    let message = "file too large for the upload limit".to_owned();
                    self.refuse(now, ErrorCode::DiskFull, message);
                }
                DataEffect::Progress | DataEffect::Ignored => {}
            },
            Ok(Packet::Error { code, message }) => {
                let message = message.into_owned();
                self.finish(now, Outcome::PeerError { code, message });
            }
            _ => {}
        }
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout); harmless if early.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.is_finished() {
            return;
        }
        if self.receiver.handle_timeout(now) == Expiry::GiveUp {
            let outcome = if self.receiver.is_complete() {
                Outcome::Completed
            } else {
                Outcome::TimedOut
            };
            self.finish(now, outcome);
        }
    }

    /// Writes the next datagram to send into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(transmit) = self.common.poll_error(buf) {
            return Some(transmit);
        }
        if self.common.is_finished() {
            return None;
        }
        let block = self.receiver.poll_ack()?;
        let packet = match (block, self.oack) {
            (0, Some(options)) => Packet::Oack { options },
            _ => Packet::Ack {
                block: BlockNumber::from_absolute(block),
            },
        };
        encode(&packet, buf, self.common.peer)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.common.is_finished()).then_some(self.receiver.timer.deadline)
    }

    /// The next event: [`Event::Received`] with the file, then [`Event::Finished`].
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

    /// Ends the transfer at once with ERROR `code` (e.g. the store refused the file).
    pub fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        if !self.common.is_finished() {
            self.refuse(now, code, message.to_owned());
        }
    }

    fn refuse(&mut self, now: Instant, code: ErrorCode, message: String) {
        let stats = self.stats();
        self.common.refuse(now, code, message, stats);
    }

    fn finish(&mut self, now: Instant, outcome: Outcome) {
        let stats = self.stats();
        self.common.finish(now, outcome, stats);
    }

    fn stats(&self) -> Stats {
        let (blocks, bytes) = self.receiver.received();
        Stats {
            bytes,
            blocks,
            retransmits: self.receiver.retransmits,
            longest_retry_streak: self.receiver.timer.longest_streak,
        }
    }
}
