//! `ReadTransfer`: the server side of a read request, sending a file it was handed as
//! shared bytes.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use std::ops::ControlFlow;

use super::common::{Common, Endpoint, RetryTimer, encode};
use super::sender::Sender;
use super::{Direction, Event, Negotiated, TransferConfig, Transmit};
use crate::proto::{ErrorCode, Mode, Packet, Request, TransferOptions, netascii_len};

/// The server's half of one read transfer.
///
/// With options, the transfer opens with an OACK and sends DATA 1 only after the
/// client's ACK 0; without, DATA 1 goes out at once. `tsize` is answered with the exact
/// number of bytes that will travel (after netascii translation).
#[derive(Debug)]
pub struct ReadTransfer {
    endpoint: Endpoint<Sender>,
    /// The OACK: block 0, the first packet, when options were granted.
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
            endpoint: Endpoint {
                common,
                half: sender,
            },
            oack: (!oack.is_empty()).then_some(oack),
        }
    }

    /// Handles a datagram that arrived on this transfer's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if !self.endpoint.accepts(source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Ack { block }) => self.endpoint.acknowledge(now, block),
            Ok(Packet::Error { code, message }) => self.endpoint.peer_error(now, code, message),
            // Anything else from the peer (garbage, a DATA, a repeated request) is
            // dropped: it must not disturb the transfer.
            _ => {}
        }
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout); harmless if early.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`MAX_DATAGRAM`](crate::proto::MAX_DATAGRAM) bytes, or `4 + blksize`).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let ControlFlow::Break(transmit) = self.endpoint.poll_pending(buf) {
            return transmit;
        }
        let block = self.endpoint.half.poll_block()?;
        let peer = self.endpoint.common.peer;
        if block == 0 {
            let options = self.oack?;
            return encode(&Packet::Oack { options }, buf, peer);
        }
        let len = self.endpoint.half.write_data(block, buf)?;
        Some(Transmit {
            destination: peer,
            len,
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    /// The next event; a read only ever reports [`Event::Finished`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.endpoint.common.poll_event()
    }

    /// True once the transfer is over (its report may still wait in `poll_event`).
    pub fn is_finished(&self) -> bool {
        self.endpoint.common.is_finished()
    }

    /// Ends the transfer at once with ERROR `code` (e.g. the server is shutting down).
    pub fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        self.endpoint.refuse(now, code, message.to_owned());
    }
}
