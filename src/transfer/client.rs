//! The client's side of a transfer: [`Transfer::download`] (RRQ) and
//! [`Transfer::upload`] (WRQ), used by the simulation and loopback tests and by the
//! benchmark's load generator.
//!
//! A client learns the server's transfer ID (its new port) from the first reply that
//! comes from the server's address; after that, datagrams from anywhere else get
//! ERROR 5, as on the server side. An OACK that grants an option the client did not ask
//! for, or more than it asked for, is answered with ERROR 8.
//!
//! The client's timer is the server's: adaptive (RFC 6298) from its request on, under
//! [`ClientConfig::timeout`], unless it asks for `timeout` and the server grants it, which
//! then holds exactly (or [`ClientConfig::adaptive`] is off: a fixed timeout, as boot ROMs
//! have); the client gives up after that timeout times (retries + 1) without progress.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::common::{Common, encode};
use super::receiver::Receiver;
use super::report::Direction;
use super::sender::Sender;
use super::timer::{Pace, RetryTimer};
use super::{Half, Negotiated, Role, Transfer, Transmit};
use crate::proto::{
    BlockNumber, DEFAULT_BLKSIZE, ErrorCode, Mode, Packet, Request, TransferOptions, netascii_len,
};

/// What a client asks for and how patient it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Options to request. For an upload, a present `tsize` is replaced by the real size.
    pub options: TransferOptions,
    /// When `timeout` is not negotiated: the first and the largest retransmission
    /// timeout (the adaptive timer follows the measured round trip between).
    pub timeout: Duration,
    /// The patience: the client gives up after `timeout` x (`retries` + 1) without
    /// progress (with a fixed timeout, `retries` retransmissions of the same packet).
    pub retries: u32,
    /// Follow the measured round trip (RFC 6298) when `timeout` is not negotiated;
    /// `false` keeps `timeout` fixed, as boot ROMs and most TFTP clients do (the
    /// robustness suite's lossy relay runs such a client too, so that what it measures
    /// is the server's recovery from loss rather than the client's).
    pub adaptive: bool,
    /// The largest download accepted.
    pub max_download_size: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            options: TransferOptions::default(),
            timeout: Duration::from_secs(1),
            retries: 5,
            adaptive: true,
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

/// What a client's transfer knows beyond what every transfer does: where its request
/// goes, whether the server's transfer ID is known, and what it asked for.
#[derive(Debug)]
pub(super) struct ClientSide {
    /// The address the request goes to.
    request_to: SocketAddr,
    /// The server's port is known (from its first reply).
    tid_known: bool,
    pub config: ClientConfig,
    /// A download's parameters are settled (by an OACK, or by DATA without one).
    negotiated: bool,
}

impl Transfer {
    /// A client fetching `filename` from `server`; the RRQ is the first transmit.
    pub fn download(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        config: ClientConfig,
    ) -> Transfer {
        let plain = Negotiated::plain(config.timeout);
        let timer = RetryTimer::new(now, config.timeout, config.retries, config.pace());
        let netascii = mode == Mode::Netascii;
        let receiver = Receiver::new(netascii, config.max_download_size, &plain, timer);
        Transfer {
            common: Common::client(now, Direction::Read, server, filename, mode, plain),
            half: Half::Receive(receiver),
            role: Role::Client(ClientSide::new(server, config)),
        }
    }

    /// A client sending `data` as `filename` to `server`; the WRQ is the first transmit.
    /// A `tsize` in the options is replaced by the real size.
    pub fn upload(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        data: Bytes,
        mut config: ClientConfig,
    ) -> Transfer {
        let netascii = mode == Mode::Netascii;
        let wire_len = if netascii {
            netascii_len(&data)
        } else {
            data.len() as u64
        };
        if config.options.tsize.is_some() {
            config.options.tsize = Some(wire_len);
        }
        let plain = Negotiated::plain(config.timeout);
        let timer = RetryTimer::new(now, config.timeout, config.retries, config.pace());
        let mut sender = Sender::new(data, netascii, wire_len, 0, &plain, timer);
        sender.trust();
        Transfer {
            common: Common::client(now, Direction::Write, server, filename, mode, plain),
            half: Half::Send(sender),
            role: Role::Client(ClientSide::new(server, config)),
        }
    }
}

impl ClientConfig {
    /// The pace of the timer before (and unless) a `timeout` is negotiated.
    fn pace(&self) -> Pace {
        if self.adaptive {
            Pace::Adaptive
        } else {
            Pace::Fixed
        }
    }
}

impl ClientSide {
    fn new(request_to: SocketAddr, config: ClientConfig) -> ClientSide {
        ClientSide {
            request_to,
            tid_known: false,
            config,
            negotiated: false,
        }
    }

    /// Learns the server's port from the first reply that comes from the server's
    /// address; after that, anyone else is a stranger.
    pub fn learn_server_tid(&mut self, common: &mut Common, source: SocketAddr) {
        if !self.tid_known && source.ip() == self.request_to.ip() && !common.is_finished() {
            self.tid_known = true;
            common.peer = source;
        }
    }

    /// Block 0 of a client: the request (an upload resends its WRQ until the server
    /// answers; a download its RRQ), or a download's ACK 0 that answers the OACK.
    pub fn opening(&self, common: &Common, buf: &mut [u8]) -> Option<Transmit> {
        let request = Request {
            filename: &common.filename,
            mode: common.mode,
            options: self.config.options,
        };
        match common.direction {
            Direction::Write => encode(&Packet::Wrq(request), buf, self.request_to),
            Direction::Read if !self.tid_known => {
                encode(&Packet::Rrq(request), buf, self.request_to)
            }
            Direction::Read => encode(
                &Packet::Ack {
                    block: BlockNumber(0),
                },
                buf,
                common.peer,
            ),
        }
    }

    /// DATA arrived for a download: without an OACK first, the server ignored the
    /// options (RFC 2347) and the transfer is plain RFC 1350.
    pub fn data_without_oack(&mut self, common: &mut Common, receiver: &mut Receiver) {
        if !self.negotiated {
            self.negotiated = true;
            let plain = Negotiated::plain(self.config.timeout);
            common.options = plain;
            receiver.configure(&plain);
            self.pace(&mut receiver.timer, &TransferOptions::default());
        }
    }

    /// Sets the timer for what the server granted: exactly a granted `timeout`, else the
    /// configured one (adaptive unless turned off).
    pub fn pace(&self, timer: &mut RetryTimer, granted: &TransferOptions) {
        let retries = self.config.retries;
        match granted.timeout {
            Some(t) => timer.set_pace(Duration::from_secs(u64::from(t)), retries, Pace::Fixed),
            None => timer.set_pace(self.config.timeout, retries, self.config.pace()),
        }
    }

    /// The server's OACK: accepted (the transfer runs with what it grants) or answered
    /// with ERROR 8 when it grants what was not asked for.
    pub fn handle_oack(
        &mut self,
        common: &mut Common,
        half: &mut Half,
        now: Instant,
        options: &TransferOptions,
    ) {
        match half {
            Half::Receive(receiver) if receiver.awaiting_first_block() => {
                self.download_oack(common, receiver, now, options);
            }
            Half::Send(sender) if sender.awaiting_handshake() => {
                match accept_oack(&self.config.options, options, self.config.timeout) {
                    Ok(negotiated) => {
                        common.options = negotiated;
                        sender.configure(&negotiated);
                        self.pace(&mut sender.timer, options);
                        sender.handle_ack(now, BlockNumber(0));
                    }
                    Err(reason) => {
                        let stats = sender.stats();
                        common.refuse(now, ErrorCode::OptionNegotiation, reason, stats);
                    }
                }
            }
            _ => {}
        }
    }

    fn download_oack(
        &mut self,
        common: &mut Common,
        receiver: &mut Receiver,
        now: Instant,
        options: &TransferOptions,
    ) {
        receiver.timer.progress(now);
        if self.negotiated {
            // Our ACK 0 was lost: the server sent its OACK again (after its timeout: not
            // a round trip to measure).
            return receiver.request_ack();
        }
        receiver.answered(now);
        let negotiated = match accept_oack(&self.config.options, options, self.config.timeout) {
            Ok(negotiated) => negotiated,
            Err(reason) => {
                let stats = receiver.stats();
                return common.refuse(now, ErrorCode::OptionNegotiation, reason, stats);
            }
        };
        self.negotiated = true;
        common.options = negotiated;
        receiver.configure(&negotiated);
        self.pace(&mut receiver.timer, options);
        receiver.timer.progress(now);
        if let Some(size) = options.tsize {
            if size > self.config.max_download_size {
                let reason = format!("file of {size} bytes is over the limit");
                let stats = receiver.stats();
                return common.refuse(now, ErrorCode::DiskFull, reason, stats);
            }
            receiver.reserve(size);
        }
        receiver.acknowledge_oack();
    }
}
