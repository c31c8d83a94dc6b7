//! The server's side of a transfer: the constructors for a read request (the server sends
//! a file it was handed as shared bytes) and a write request (it receives one).
//!
//! With options, a read opens with an OACK and sends DATA 1 only after the client's
//! ACK 0; without, DATA 1 goes out at once. `tsize` is answered with the exact number of
//! bytes that will travel (after netascii translation).
//!
//! A write answers with an OACK in place of ACK 0 when options were granted. An announced
//! `tsize` above the limit is refused with ERROR 3 before any data moves; so is data that
//! grows past it. When the last block arrives it is acknowledged, [`Event::Received`]
//! hands over the bytes at once, and the transfer lingers to acknowledge a retransmitted
//! last block again before it reports [`Event::Finished`]. The linger lasts two timeouts:
//! a client resends its last block about one timeout after sending it, so a linger of
//! exactly one timeout would race it.
//!
//! [`Event::Received`]: super::Event::Received
//! [`Event::Finished`]: super::Event::Finished

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::common::Common;
use super::receiver::Receiver;
use super::report::Direction;
use super::sender::Sender;
use super::timer::{Pace, RetryTimer};
use super::{Half, Negotiated, Role, Transfer, TransferConfig};
use crate::proto::{ErrorCode, Mode, Request, TransferOptions};

impl Transfer {
    /// The server's side of a read: starts sending `file` to `peer` as `request` asks.
    /// `wire_len` is the number of bytes that travel, answered as `tsize`: the file's
    /// length, or in netascii mode its [netascii length](crate::proto::netascii_len)
    /// (which the caller computes once per stored file, not per request).
    pub fn read(
        now: Instant,
        peer: SocketAddr,
        request: &Request<'_>,
        file: Bytes,
        wire_len: u64,
        config: &TransferConfig,
    ) -> Transfer {
        let (options, oack) = Negotiated::grant(&request.options, config, Some(wire_len));
        let first = if oack.is_empty() { 1 } else { 0 };
        let timer = unverified_timer(now, config);
        let netascii = request.mode == Mode::Netascii;
        let sender = Sender::new(file, netascii, wire_len, first, &options, timer);
        Transfer {
            common: Common::new(
                now,
                Direction::Read,
                peer,
                request.filename,
                request.mode,
                options,
            ),
            half: Half::Send(sender),
            role: Role::Server {
                verified_pace: verified_pace(&oack, &options, config),
                oack: (!oack.is_empty()).then_some(oack),
                handshake_verifies: true,
            },
        }
    }

    /// The server's side of a write: starts receiving from `peer` as `request` asks,
    /// accepting at most `max_len` bytes (the lower of the configured upload limit and
    /// what the store allows).
    pub fn write(
        now: Instant,
        peer: SocketAddr,
        request: &Request<'_>,
        max_len: u64,
        config: &TransferConfig,
    ) -> Transfer {
        let max_len = max_len.min(config.max_upload_size);
        let announced = request.options.tsize;
        let (options, oack) = Negotiated::grant(&request.options, config, announced);
        let timer = unverified_timer(now, config);
        let netascii = request.mode == Mode::Netascii;
        let mut receiver = Receiver::new(netascii, max_len, &options, timer);
        let refusal = match announced {
            Some(size) if size > max_len => Some(format!(
                "file too large: {size} bytes announced, at most {max_len} accepted"
            )),
            Some(size) => {
                receiver.reserve(size);
                None
            }
            None => None,
        };
        let mut transfer = Transfer {
            common: Common::new(
                now,
                Direction::Write,
                peer,
                request.filename,
                request.mode,
                options,
            ),
            half: Half::Receive(receiver),
            role: Role::Server {
                verified_pace: verified_pace(&oack, &options, config),
                oack: (!oack.is_empty()).then_some(oack),
                handshake_verifies: true,
            },
        };
        if let Some(message) = refusal {
            transfer.abort(now, ErrorCode::DiskFull, &message);
        }
        transfer
    }
}

/// The timer of a transfer whose peer has not answered yet: the configured timeout,
/// fixed, and the configured patience, whatever the client asked for (the transfer sends
/// only the first [`UNVERIFIED_RETRIES`](super::UNVERIFIED_RETRIES) retransmission(s)).
fn unverified_timer(now: Instant, config: &TransferConfig) -> RetryTimer {
    RetryTimer::new(now, config.timeout, config.retries, Pace::Fixed)
}

/// The timer a verified peer gets: exactly the `timeout` it negotiated (RFC 2349), else
/// the adaptive one under the configured timeout; the same patience either way.
fn verified_pace(
    oack: &TransferOptions,
    options: &Negotiated,
    config: &TransferConfig,
) -> (Duration, u32, Pace) {
    let pace = if oack.timeout.is_some() {
        Pace::Fixed
    } else {
        Pace::Adaptive
    };
    (options.timeout, config.retries, pace)
}
