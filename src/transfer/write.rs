//! `WriteTransfer`: the server side of a write request, receiving a file into memory.

use std::net::SocketAddr;
use std::time::Instant;

use std::ops::ControlFlow;

use super::common::{Common, Endpoint, RetryTimer, encode};
use super::receiver::Receiver;
use super::{Direction, Event, Negotiated, TransferConfig, Transmit};
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
    endpoint: Endpoint<Receiver>,
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
            endpoint: Endpoint {
                common,
                half: receiver,
            },
            oack: (!oack.is_empty()).then_some(oack),
        };
        match announced {
            Some(size) if size > max_len => {
                let message =
                    format!("file too large: {size} bytes announced, at most {max_len} accepted");
                transfer.endpoint.refuse(now, ErrorCode::DiskFull, message);
            }
            Some(size) => transfer.endpoint.half.reserve(size),
            None => {}
        }
        transfer
    }

    /// Handles a datagram that arrived on this transfer's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if !self.endpoint.accepts(source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Data { block, data }) => self.endpoint.receive(now, block, data),
            Ok(Packet::Error { code, message }) => self.endpoint.peer_error(now, code, message),
            _ => {}
        }
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout); harmless if early.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
    }

    /// Writes the next datagram to send into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let ControlFlow::Break(transmit) = self.endpoint.poll_pending(buf) {
            return transmit;
        }
        let block = self.endpoint.half.poll_ack()?;
        let packet = match (block, self.oack) {
            (0, Some(options)) => Packet::Oack { options },
            _ => Packet::Ack {
                block: BlockNumber::from_absolute(block),
            },
        };
        encode(&packet, buf, self.endpoint.common.peer)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    /// The next event: [`Event::Received`] with the file, then [`Event::Finished`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.endpoint.common.poll_event()
    }

    /// True once the transfer is over (its report may still wait in `poll_event`).
    pub fn is_finished(&self) -> bool {
        self.endpoint.common.is_finished()
    }

    /// Once the file has arrived ([`Event::Received`]), ends the transfer without
    /// lingering to acknowledge a retransmitted last block (e.g. at shutdown); does
    /// nothing before.
    pub fn stop_lingering(&mut self, now: Instant) {
        self.endpoint.stop_lingering(now);
    }

    /// Bytes of DATA the client may send before it waits for an ACK (a window): what
    /// the transfer's socket must be able to hold.
    pub fn window_bytes(&self) -> usize {
        let options = &self.endpoint.common.options;
        usize::from(options.windowsize) * (4 + usize::from(options.blksize))
    }

    /// Ends the transfer at once with ERROR `code` (e.g. the store refused the file).
    pub fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        self.endpoint.refuse(now, code, message.to_owned());
    }
}
