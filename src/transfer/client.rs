//! The client side: [`ClientDownload`] (RRQ) and [`ClientUpload`] (WRQ), used by the
//! simulation and loopback tests and by the benchmark's load generator.
//!
//! A client learns the server's transfer ID (its new port) from the first reply that
//! comes from the server's address; after that, datagrams from anywhere else get
//! ERROR 5, as on the server side. An OACK that grants an option the client did not ask
//! for, or more than it asked for, is answered with ERROR 8.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::common::{Common, Expiry, RetryTimer, Stats, encode};
use super::receiver::{DataEffect, Receiver};
use super::sender::{AckEffect, Sender};
use super::{Direction, Event, Negotiated, Outcome, Transmit};
use crate::proto::{
    BlockNumber, DEFAULT_BLKSIZE, ErrorCode, Mode, Packet, Request, TransferOptions, netascii_len,
};

/// What a client asks for and how patient it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Options to request. For an upload, a present `tsize` is replaced by the real size.
    pub options: TransferOptions,
    /// Retransmission timeout when `timeout` is not negotiated.
    pub timeout: Duration,
    /// Retransmissions of the same packet before giving up.
    pub retries: u32,
    /// The largest download accepted.
    pub max_download_size: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            options: TransferOptions::default(),
            timeout: Duration::from_secs(1),
            retries: 5,
            max_download_size: u64::MAX,
        }
    }
}

/// Checks an OACK against the request: nothing unasked, nothing larger than asked.
fn accept_oack(
    requested: &TransferOptions,
    granted: &TransferOptions,
    default_timeout: Duration,
) -> Result<Negotiated, String> {
    fn within<T: PartialOrd + Copy + std::fmt::Display>(
        name: &str,
        asked: Option<T>,
        got: Option<T>,
        exact: bool,
    ) -> Result<(), String> {
        match (asked, got) {
            (_, None) => Ok(()),
            (None, Some(_)) => Err(format!("server granted {name}, which was not requested")),
            (Some(a), Some(g)) if g > a || (exact && g != a) => {
                Err(format!("server granted {name} {g}, {a} was requested"))
            }
            _ => Ok(()),
        }
    }
    within("blksize", requested.blksize, granted.blksize, false)?;
    within(
        "windowsize",
        requested.windowsize,
        granted.windowsize,
        false,
    )?;
    within("timeout", requested.timeout, granted.timeout, true)?;
    if granted.tsize.is_some() && requested.tsize.is_none() {
        return Err("server granted tsize, which was not requested".to_owned());
    }
    Ok(Negotiated {
        blksize: granted.blksize.unwrap_or(DEFAULT_BLKSIZE),
        windowsize: granted.windowsize.unwrap_or(1),
        timeout: granted
            .timeout
            .map_or(default_timeout, |t| Duration::from_secs(u64::from(t))),
        tsize: granted.tsize,
    })
}

/// Which server port replies are accepted from.
#[derive(Debug)]
struct ServerTid {
    /// The address the request goes to.
    request_to: SocketAddr,
    /// Set from the first reply.
    known: bool,
}

impl ServerTid {
    /// True if `source` may speak for the server; learns its port from the first reply.
    fn accept(&mut self, common: &mut Common, source: SocketAddr) -> bool {
        if !self.known && source.ip() == self.request_to.ip() {
            self.known = true;
            common.peer = source;
            return true;
        }
        common.accept_source(source)
    }
}

/// A client fetching one file.
#[derive(Debug)]
pub struct ClientDownload {
    common: Common,
    receiver: Receiver,
    server: ServerTid,
    config: ClientConfig,
    negotiated: bool,
}

impl ClientDownload {
    /// Starts fetching `filename` from `server`; the RRQ is the first transmit.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        config: ClientConfig,
    ) -> Self {
        let timer = RetryTimer::new(now, config.timeout, config.retries);
        let receiver = Receiver::new(now, mode == Mode::Netascii, config.max_download_size, timer);
        let options = Negotiated::plain(config.timeout);
        ClientDownload {
            common: Common::new(now, Direction::Read, server, filename, mode, options),
            receiver,
            server: ServerTid {
                request_to: server,
                known: false,
            },
            config,
            negotiated: false,
        }
    }

    /// Handles a datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if self.common.is_finished() || !self.server.accept(&mut self.common, source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Oack { options }) => {
                if !self.receiver.awaiting_first_block() {
                    return;
                }
                self.receiver.timer.progress(now);
                if self.negotiated {
                    // Our ACK 0 was lost: the server sent its OACK again.
                    return self.receiver.request_ack();
                }
                match accept_oack(&self.config.options, &options, self.config.timeout) {
                    Ok(negotiated) => self.start(negotiated),
                    Err(reason) => return self.refuse(now, ErrorCode::OptionNegotiation, reason),
                }
                if let Some(size) = options.tsize {
                    if size > self.config.max_download_size {
                        let reason = format!("file of {size} bytes is over the limit");
                        return self.refuse(now, ErrorCode::DiskFull, reason);
                    }
                    self.receiver.reserve(size);
                }
                self.receiver.acknowledge_oack();
            }
            Ok(Packet::Data { block, data }) => {
                if !self.negotiated {
                    self.start(Negotiated::plain(self.config.timeout));
                }
                match self.receiver.handle_data(now, block, data) {
                    DataEffect::Complete => {
                        let data = self.receiver.take_data();
                        self.common.push_event(Event::Received(data));
                    }
                    DataEffect::TooLarge => {
                        self.refuse(now, ErrorCode::DiskFull, "file over the limit".to_owned());
                    }
                    DataEffect::Progress | DataEffect::Ignored => {}
                }
            }
            Ok(Packet::Error { code, message }) => {
                let message = message.into_owned();
                self.finish(now, Outcome::PeerError { code, message });
            }
            _ => {}
        }
    }

    fn start(&mut self, negotiated: Negotiated) {
        self.negotiated = true;
        self.common.options = negotiated;
        self.receiver.configure(
            negotiated.blksize,
            negotiated.windowsize,
            negotiated.timeout,
        );
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout).
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
        if block == 0 && !self.server.known {
            let request = Request {
                filename: &self.common.filename,
                mode: self.common.mode,
                options: self.config.options,
            };
            return encode(&Packet::Rrq(request), buf, self.server.request_to);
        }
        let packet = Packet::Ack {
            block: BlockNumber::from_absolute(block),
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

    /// True once the transfer is over.
    pub fn is_finished(&self) -> bool {
        self.common.is_finished()
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

/// A client sending one file.
#[derive(Debug)]
pub struct ClientUpload {
    common: Common,
    sender: Sender,
    server: ServerTid,
    config: ClientConfig,
}

impl ClientUpload {
    /// Starts sending `data` as `filename` to `server`; the WRQ is the first transmit.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        data: Bytes,
        mut config: ClientConfig,
    ) -> Self {
        let netascii = mode == Mode::Netascii;
        if config.options.tsize.is_some() {
            config.options.tsize = Some(if netascii {
                netascii_len(&data)
            } else {
                data.len() as u64
            });
        }
        let timer = RetryTimer::new(now, config.timeout, config.retries);
        let sender = Sender::new(now, data, netascii, 0, timer);
        let options = Negotiated::plain(config.timeout);
        ClientUpload {
            common: Common::new(now, Direction::Write, server, filename, mode, options),
            sender,
            server: ServerTid {
                request_to: server,
                known: false,
            },
            config,
        }
    }

    /// Handles a datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if self.common.is_finished() || !self.server.accept(&mut self.common, source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Oack { options }) if self.sender.awaiting_handshake() => {
                match accept_oack(&self.config.options, &options, self.config.timeout) {
                    Ok(negotiated) => self.start(now, negotiated),
                    Err(reason) => self.refuse(now, ErrorCode::OptionNegotiation, reason),
                }
            }
            Ok(Packet::Ack { block }) if self.sender.awaiting_handshake() && block.0 == 0 => {
                self.start(now, Negotiated::plain(self.config.timeout));
            }
            Ok(Packet::Ack { block })
                if !self.sender.awaiting_handshake()
                    && self.sender.handle_ack(now, block) == AckEffect::Done =>
            {
                self.finish(now, Outcome::Completed);
            }
            Ok(Packet::Error { code, message }) => {
                let message = message.into_owned();
                self.finish(now, Outcome::PeerError { code, message });
            }
            _ => {}
        }
    }

    fn start(&mut self, now: Instant, negotiated: Negotiated) {
        self.common.options = negotiated;
        self.sender.configure(
            negotiated.blksize,
            negotiated.windowsize,
            negotiated.timeout,
        );
        self.sender.handle_ack(now, BlockNumber(0));
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.is_finished() {
            return;
        }
        if self.sender.handle_timeout(now) == Expiry::GiveUp {
            self.finish(now, Outcome::TimedOut);
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
        let block = self.sender.poll_block()?;
        if block == 0 {
            let request = Request {
                filename: &self.common.filename,
                mode: self.common.mode,
                options: self.config.options,
            };
            return encode(&Packet::Wrq(request), buf, self.server.request_to);
        }
        let len = self.sender.write_data(block, buf)?;
        Some(Transmit {
            destination: self.common.peer,
            len,
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.common.is_finished()).then_some(self.sender.timer.deadline)
    }

    /// The next event; an upload only reports [`Event::Finished`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.common.poll_event()
    }

    /// True once the transfer is over.
    pub fn is_finished(&self) -> bool {
        self.common.is_finished()
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
        let (blocks, bytes) = self.sender.delivered();
        Stats {
            bytes,
            blocks,
            retransmits: self.sender.retransmits,
            longest_retry_streak: self.sender.timer.longest_streak,
        }
    }
}
