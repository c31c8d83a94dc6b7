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

use std::ops::ControlFlow;

use super::common::{Common, Endpoint, Half, RetryTimer, encode};
use super::receiver::Receiver;
use super::sender::Sender;
use super::{Direction, Event, Negotiated, Transmit};
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
    fn new(request_to: SocketAddr) -> ServerTid {
        ServerTid {
            request_to,
            known: false,
        }
    }

    /// True if `source` may speak for the server; learns its port from the first reply
    /// that comes from the server's address.
    fn accepts<H: Half>(&mut self, endpoint: &mut Endpoint<H>, source: SocketAddr) -> bool {
        if !self.known && source.ip() == self.request_to.ip() && !endpoint.common.is_finished() {
            self.known = true;
            endpoint.common.peer = source;
        }
        endpoint.accepts(source)
    }
}

/// A client fetching one file.
#[derive(Debug)]
pub struct ClientDownload {
    endpoint: Endpoint<Receiver>,
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
        let common = Common::new(now, Direction::Read, server, filename, mode, options);
        ClientDownload {
            endpoint: Endpoint {
                common,
                half: receiver,
            },
            server: ServerTid::new(server),
            config,
            negotiated: false,
        }
    }

    /// Collects the file in `buffer` (emptied first) rather than in a new allocation: a
    /// client running many downloads hands back each [`Event::Received`] buffer, and
    /// skips growing and first touching the memory again.
    #[must_use]
    pub fn with_buffer(mut self, buffer: Vec<u8>) -> Self {
        self.endpoint.half.recycle(buffer);
        self
    }

    /// Handles a datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if !self.server.accepts(&mut self.endpoint, source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Oack { options }) if self.endpoint.half.awaiting_first_block() => {
                self.handle_oack(now, &options);
            }
            Ok(Packet::Data { block, data }) => {
                if !self.negotiated {
                    self.start(Negotiated::plain(self.config.timeout));
                }
                self.endpoint.receive(now, block, data);
            }
            Ok(Packet::Error { code, message }) => self.endpoint.peer_error(now, code, message),
            _ => {}
        }
    }

    fn handle_oack(&mut self, now: Instant, options: &TransferOptions) {
        self.endpoint.half.timer.progress(now);
        if self.negotiated {
            // Our ACK 0 was lost: the server sent its OACK again.
            return self.endpoint.half.request_ack();
        }
        let negotiated = match accept_oack(&self.config.options, options, self.config.timeout) {
            Ok(negotiated) => negotiated,
            Err(reason) => {
                return self
                    .endpoint
                    .refuse(now, ErrorCode::OptionNegotiation, reason);
            }
        };
        self.start(negotiated);
        if let Some(size) = options.tsize {
            if size > self.config.max_download_size {
                let reason = format!("file of {size} bytes is over the limit");
                return self.endpoint.refuse(now, ErrorCode::DiskFull, reason);
            }
            self.endpoint.half.reserve(size);
        }
        self.endpoint.half.acknowledge_oack();
    }

    fn start(&mut self, negotiated: Negotiated) {
        self.negotiated = true;
        self.endpoint.common.options = negotiated;
        let Negotiated {
            blksize,
            windowsize,
            timeout,
            ..
        } = negotiated;
        self.endpoint.half.configure(blksize, windowsize, timeout);
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
    }

    /// Once the file has arrived ([`Event::Received`]), ends the transfer without
    /// lingering to acknowledge a retransmitted last block; does nothing before.
    pub fn stop_lingering(&mut self, now: Instant) {
        self.endpoint.stop_lingering(now);
    }

    /// Writes the next datagram to send into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let ControlFlow::Break(transmit) = self.endpoint.poll_pending(buf) {
            return transmit;
        }
        let block = self.endpoint.half.poll_ack()?;
        if block == 0 && !self.server.known {
            let common = &self.endpoint.common;
            let request = Request {
                filename: &common.filename,
                mode: common.mode,
                options: self.config.options,
            };
            return encode(&Packet::Rrq(request), buf, self.server.request_to);
        }
        let packet = Packet::Ack {
            block: BlockNumber::from_absolute(block),
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

    /// True once the transfer is over.
    pub fn is_finished(&self) -> bool {
        self.endpoint.common.is_finished()
    }
}

/// A client sending one file.
#[derive(Debug)]
pub struct ClientUpload {
    endpoint: Endpoint<Sender>,
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
        let common = Common::new(now, Direction::Write, server, filename, mode, options);
        ClientUpload {
            endpoint: Endpoint {
                common,
                half: sender,
            },
            server: ServerTid::new(server),
            config,
        }
    }

    /// Handles a datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if !self.server.accepts(&mut self.endpoint, source) {
            return;
        }
        let opening = self.endpoint.half.awaiting_handshake();
        match Packet::parse(datagram) {
            Ok(Packet::Oack { options }) if opening => {
                match accept_oack(&self.config.options, &options, self.config.timeout) {
                    Ok(negotiated) => self.start(now, negotiated),
                    Err(reason) => self
                        .endpoint
                        .refuse(now, ErrorCode::OptionNegotiation, reason),
                }
            }
            Ok(Packet::Ack { block }) if opening && block.0 == 0 => {
                self.start(now, Negotiated::plain(self.config.timeout));
            }
            Ok(Packet::Ack { block }) if !opening => self.endpoint.acknowledge(now, block),
            Ok(Packet::Error { code, message }) => self.endpoint.peer_error(now, code, message),
            _ => {}
        }
    }

    fn start(&mut self, now: Instant, negotiated: Negotiated) {
        self.endpoint.common.options = negotiated;
        let Negotiated {
            blksize,
            windowsize,
            timeout,
            ..
        } = negotiated;
        self.endpoint.half.configure(blksize, windowsize, timeout);
        self.endpoint.acknowledge(now, BlockNumber(0));
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
    }

    /// Writes the next datagram to send into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let ControlFlow::Break(transmit) = self.endpoint.poll_pending(buf) {
            return transmit;
        }
        let block = self.endpoint.half.poll_block()?;
        if block == 0 {
            let common = &self.endpoint.common;
            let request = Request {
                filename: &common.filename,
                mode: common.mode,
                options: self.config.options,
            };
            return encode(&Packet::Wrq(request), buf, self.server.request_to);
        }
        let len = self.endpoint.half.write_data(block, buf)?;
        Some(Transmit {
            destination: self.endpoint.common.peer,
            len,
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    /// The next event; an upload only reports [`Event::Finished`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.endpoint.common.poll_event()
    }

    /// True once the transfer is over.
    pub fn is_finished(&self) -> bool {
        self.endpoint.common.is_finished()
    }
}
