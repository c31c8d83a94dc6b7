//! Per-transfer state machines: no sockets, no clock.
//!
//! One type, [`Transfer`], runs any transfer from either end: the server's side of a read
//! request (it sends a file) or of a write request (it receives one), and the client's
//! side of a download or an upload, used by the tests and the benchmark. Inside, a
//! transfer is a role (server or client: who opens the transfer, and with which packet)
//! and a half of the protocol (a windowed sender of blocks, `sender`, or the receiver
//! that acknowledges them, `receiver`). The handshake (request, OACK, ACK 0) is modelled
//! as block 0, so its retransmission follows the same timer and patience as data.
//!
//! The retransmission timer (`timer`) follows the round trip measured on the transfer
//! (RFC 6298) unless the client negotiated `timeout`, which then holds exactly (RFC 2349);
//! either way a peer is given up after the timeout times (retries + 1) without progress.
//!
//! A transfer is driven only through methods that take the time as an argument, in the
//! manner of quinn-proto's `Connection`:
//!
//! 1. [`handle_datagram(now, source, bytes)`](Transfer::handle_datagram) whenever a
//!    datagram arrives for the transfer (from anyone: strangers are dealt with inside);
//! 2. then [`poll_transmit(buf)`](Transfer::poll_transmit) until it returns `None`,
//!    sending each datagram it writes to the destination it names;
//! 3. [`poll_timeout()`](Transfer::poll_timeout) for the instant at which to call
//!    [`handle_timeout(now)`](Transfer::handle_timeout) if nothing arrives first;
//! 4. [`poll_event()`](Transfer::poll_event) for what the caller must act on: the bytes
//!    of a completed upload or download, and the final [`TransferReport`].

mod client;
mod common;
mod receiver;
mod report;
mod sender;
mod server;
mod timer;

pub use client::ClientConfig;
pub use report::{Direction, Outcome, TransferReport};
pub use timer::MIN_RTO;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::proto::{BlockNumber, DEFAULT_BLKSIZE, ErrorCode, Packet, TransferOptions};
use common::{Common, encode};
use receiver::{DataEffect, Receiver};
use report::Stats;
use sender::{AckEffect, Sender};
use timer::{Expiry, Pace};

/// The limits and defaults a server applies to every transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferConfig {
    /// When the client does not negotiate `timeout`: the first and the largest
    /// retransmission timeout (between them it follows the measured round trip, down to
    /// [`MIN_RTO`]); towards a peer that has not answered yet, the fixed one.
    pub timeout: Duration,
    /// With `timeout`, the patience: a peer that makes no progress for `timeout` x
    /// (`retries` + 1) is given up. With a fixed timeout (negotiated, or towards a peer
    /// that has not answered) that is `retries` retransmissions of the same packet.
    pub retries: u32,
    /// The largest `blksize` granted; larger requests are lowered to it.
    pub max_blksize: u16,
    /// The largest `windowsize` granted; larger requests are lowered to it.
    pub max_windowsize: u16,
    /// The largest `timeout` option granted, in seconds; a larger one is left out of the
    /// OACK (RFC 2349 lets the server ignore it) and the configured `timeout` applies.
    pub max_timeout: u8,
    /// The largest upload accepted, in bytes (checked against `tsize` and as data arrives).
    pub max_upload_size: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            timeout: Duration::from_secs(2),
            retries: 5,
            max_blksize: crate::proto::MAX_BLKSIZE,
            max_windowsize: 64,
            max_timeout: 10,
            max_upload_size: 64 << 20,
        }
    }
}

/// The parameters a transfer runs with once negotiation is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks in flight before an ACK is needed.
    pub windowsize: u16,
    /// Retransmission timeout: the negotiated one, else the configured one (the adaptive
    /// timer's first value and ceiling).
    pub timeout: Duration,
    /// The transfer size announced in the OACK, if `tsize` was negotiated.
    pub tsize: Option<u64>,
}

impl Negotiated {
    /// RFC 1350 without options: 512-byte blocks, lock-step.
    pub(crate) fn plain(timeout: Duration) -> Negotiated {
        Negotiated {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout,
            tsize: None,
        }
    }

    /// Grants what the client asked for within the server's caps; returns the parameters
    /// and the options to acknowledge (empty: no OACK). `tsize` is the value to answer
    /// for a read, or the announced size for a write.
    pub(crate) fn grant(
        requested: &TransferOptions,
        config: &TransferConfig,
        tsize: Option<u64>,
    ) -> (Negotiated, TransferOptions) {
        let oack = TransferOptions {
            blksize: requested.blksize.map(|b| b.min(config.max_blksize.max(8))),
            timeout: requested.timeout.filter(|&t| t <= config.max_timeout),
            tsize: requested.tsize.and(tsize),
            windowsize: requested
                .windowsize
                .map(|w| w.min(config.max_windowsize.max(1))),
        };
        let negotiated = Negotiated {
            blksize: oack.blksize.unwrap_or(DEFAULT_BLKSIZE),
            windowsize: oack.windowsize.unwrap_or(1),
            timeout: oack
                .timeout
                .map_or(config.timeout, |t| Duration::from_secs(u64::from(t))),
            tsize: oack.tsize,
        };
        (negotiated, oack)
    }
}

/// One transfer: the server's side of a read or a write, or the client's side of a
/// download or an upload. Built by [`Transfer::read`], [`Transfer::write`],
/// [`Transfer::download`] or [`Transfer::upload`]; driven as the module docs say.
///
/// A server's transfer is *unverified* until its peer has answered from the address and
/// port the request came from (an ACK or DATA that moves the transfer on): a request's
/// source address can be forged, and until then the transfer costs the forged address
/// little. It sends its first packet, retransmits it [`UNVERIFIED_RETRIES`] time(s) at
/// the configured timeout (not a client-chosen one), never more than one block at once,
/// and then waits in silence for the rest of the configured patience (the timeout times
/// retries plus one): a late answer from a real client on a lossy link still verifies it. Once
/// verified it runs with the negotiated timeout (or, without one, the adaptive timer,
/// which starts from the round trip that verified the peer), the same patience and whole
/// windows; a window it had to send again and that still goes unanswered is
/// followed by single blocks until the peer answers.
#[derive(Debug)]
pub struct Transfer {
    common: Common,
    half: Half,
    role: Role,
}

/// The half of the protocol a transfer runs.
#[derive(Debug)]
enum Half {
    /// It sends the file: a server's read, a client's upload.
    Send(Sender),
    /// It receives the file: a server's write, a client's download.
    Receive(Receiver),
}

/// Retransmissions granted to a peer that has not answered yet (see [`Transfer`]).
pub const UNVERIFIED_RETRIES: u32 = 1;

/// Which end of the protocol a transfer is: that decides the packet standing for block 0.
#[derive(Debug)]
enum Role {
    /// The server answers a request: block 0 is its OACK, or ACK 0 for a write without
    /// options (a read without options starts at block 1).
    Server {
        oack: Option<TransferOptions>,
        /// The timeout, retries and pace a verified peer gets.
        verified_pace: (Duration, u32, Pace),
        /// ACK 0 proves the peer is there: it came to the transfer's own port, which
        /// only the real client knows. In single-port mode whoever forged the request
        /// can forge it too, so only an ACK of data counts.
        handshake_verifies: bool,
    },
    /// The client sends the request and learns the server's transfer ID from its reply.
    Client(client::ClientSide),
}

impl Half {
    fn stats(&self) -> Stats {
        match self {
            Half::Send(sender) => sender.stats(),
            Half::Receive(receiver) => receiver.stats(),
        }
    }

    fn timer(&mut self) -> &mut timer::RetryTimer {
        match self {
            Half::Send(sender) => &mut sender.timer,
            Half::Receive(receiver) => &mut receiver.timer,
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Half::Send(sender) => sender.timer.deadline,
            Half::Receive(receiver) => receiver.timer.deadline,
        }
    }

    /// Cancels the retransmission that a timeout asked for.
    fn hold(&mut self) {
        match self {
            Half::Send(sender) => sender.hold(),
            Half::Receive(receiver) => receiver.hold(),
        }
    }

    /// Handles the timer; `Some` when the transfer is over: out of retries, or (for a
    /// receiver) at the end of the linger after the last block.
    fn expire(&mut self, now: Instant) -> Option<Outcome> {
        match self {
            Half::Send(sender) => {
                (sender.handle_timeout(now) == Expiry::GiveUp).then_some(Outcome::TimedOut)
            }
            Half::Receive(receiver) => {
                (receiver.handle_timeout(now) == Expiry::GiveUp).then(|| {
                    if receiver.is_complete() {
                        Outcome::Completed
                    } else {
                        Outcome::TimedOut
                    }
                })
            }
        }
    }
}

impl Transfer {
    /// Handles a datagram from `source`: on the transfer's own socket, or routed to it
    /// because it came from the transfer's peer.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if let Role::Client(client) = &mut self.role {
            client.learn_server_tid(&mut self.common, source);
        }
        if !self.common.accepts(source) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Ack { block }) => self.handle_ack(now, block),
            Ok(Packet::Data { block, data }) => self.handle_data(now, block, data),
            Ok(Packet::Oack { options }) => {
                if let Role::Client(client) = &mut self.role {
                    client.handle_oack(&mut self.common, &mut self.half, now, &options);
                }
            }
            Ok(Packet::Error { code, message }) => self.peer_error(now, code, message),
            // Anything else from the peer (garbage, a repeated request) is dropped: it
            // must not disturb the transfer.
            Ok(Packet::Rrq(_) | Packet::Wrq(_)) | Err(_) => {}
        }
    }

    fn handle_ack(&mut self, now: Instant, block: BlockNumber) {
        let Half::Send(sender) = &mut self.half else {
            return;
        };
        if let Role::Client(client) = &self.role
            && sender.awaiting_handshake()
        {
            // ACK 0 answers a WRQ whose options the server ignored: plain RFC 1350.
            if block.0 == 0 {
                let plain = Negotiated::plain(client.config.timeout);
                self.common.options = plain;
                sender.configure(&plain);
                client.pace(&mut sender.timer, &TransferOptions::default());
                sender.handle_ack(now, block);
            }
            return;
        }
        let handshake = sender.awaiting_handshake();
        let effect = sender.handle_ack(now, block);
        if effect != AckEffect::Ignored {
            self.verify(now, handshake);
        }
        if effect == AckEffect::Done {
            let stats = self.half.stats();
            self.common.finish(now, Outcome::Completed, stats);
        }
    }

    /// The peer answered with progress (`handshake`: by acknowledging the handshake
    /// only): a server's transfer may now give it its own timer's pace and whole windows.
    fn verify(&mut self, now: Instant, handshake: bool) {
        let Role::Server {
            verified_pace: (timeout, retries, pace),
            handshake_verifies,
            ..
        } = self.role
        else {
            return;
        };
        if self.common.verified || (handshake && !handshake_verifies) {
            return;
        }
        self.common.verified = true;
        self.half.timer().set_pace(timeout, retries, pace);
        match &mut self.half {
            Half::Send(sender) => {
                sender.timer.progress(now);
                sender.trust();
            }
            Half::Receive(receiver) => receiver.restart_timer(now),
        }
    }

    fn handle_data(&mut self, now: Instant, block: BlockNumber, payload: &[u8]) {
        let Half::Receive(receiver) = &mut self.half else {
            return;
        };
        if let Role::Client(client) = &mut self.role {
            client.data_without_oack(&mut self.common, receiver);
        }
        let effect = receiver.handle_data(now, block, payload);
        if matches!(effect, DataEffect::Progress | DataEffect::Complete) {
            self.verify(now, false);
        }
        let Half::Receive(receiver) = &mut self.half else {
            return;
        };
        match effect {
            DataEffect::Complete => {
                // A server acknowledges the last block only once the file is stored.
                if matches!(self.role, Role::Server { .. }) {
                    receiver.hold_final_ack();
                }
                let data = receiver.take_data();
                self.common.received(now, data);
            }
            DataEffect::TooLarge => {
                let message = "file too large for the size limit".to_owned();
                let stats = receiver.stats();
                self.common.refuse(now, ErrorCode::DiskFull, message, stats);
            }
            DataEffect::Progress | DataEffect::Ignored => {}
        }
    }

    /// The peer sent ERROR: the transfer ends without an answer. ERROR 8 before any data
    /// of a transfer whose OACK answered `tsize` is a size probe, not a failure.
    fn peer_error(&mut self, now: Instant, code: ErrorCode, message: Cow<'_, str>) {
        let stats = self.half.stats();
        let probe = code == ErrorCode::OptionNegotiation
            && self.common.options.tsize.is_some()
            && stats.blocks == 0
            && stats.bytes == 0;
        let outcome = if probe {
            Outcome::Probe
        } else {
            let message = message.into_owned();
            Outcome::PeerError { code, message }
        };
        self.common.finish(now, outcome, stats);
    }

    /// Handles the timer set by [`poll_timeout`](Self::poll_timeout); harmless if early.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.is_finished() {
            return;
        }
        if let Some(outcome) = self.half.expire(now) {
            let outcome = match outcome {
                Outcome::TimedOut if !self.common.verified => Outcome::Unanswered,
                other => other,
            };
            let stats = self.half.stats();
            self.common.finish(now, outcome, stats);
        } else if !self.common.verified && self.half.timer().streak > UNVERIFIED_RETRIES {
            // An unverified peer has had its retransmission: wait for it in silence.
            self.half.hold();
        }
    }

    /// The length of every DATA datagram this transfer sends but its last (`4 + blksize`),
    /// when it sends data: a window of them may go out as one segmented send.
    pub fn data_datagram_len(&self) -> Option<usize> {
        match &self.half {
            Half::Send(sender) => Some(sender.datagram_len()),
            Half::Receive(_) => None,
        }
    }

    /// True when [`poll_transmit`](Self::poll_transmit), called with room for a block
    /// and no ERROR queued, would write a DATA block: a cheap look before asking, so that
    /// a lock-step transfer is not polled again for a block it cannot send yet.
    pub fn has_data_to_send(&self) -> bool {
        match &self.half {
            Half::Send(sender) => !self.common.is_finished() && sender.has_block_to_send(),
            Half::Receive(_) => false,
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`MAX_DATAGRAM`](crate::proto::MAX_DATAGRAM) bytes, or `4 + blksize`: in a shorter
    /// one nothing is written and nothing is lost); call until it returns `None` after
    /// every `handle_*` call.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(transmit) = self.common.poll_error(buf) {
            return Some(transmit);
        }
        if self.common.is_finished() {
            return None;
        }
        // A block taken from the window must be written: with no room for it, take none.
        if let Half::Send(sender) = &self.half
            && buf.len() < sender.datagram_len()
        {
            return None;
        }
        let block = match &mut self.half {
            Half::Send(sender) => sender.poll_block()?,
            Half::Receive(receiver) => receiver.poll_ack()?,
        };
        if block == 0 {
            return self.opening(buf);
        }
        let peer = self.common.peer;
        match &mut self.half {
            Half::Send(sender) => {
                let len = sender.write_data(block, buf)?;
                Some(Transmit {
                    destination: peer,
                    len,
                })
            }
            Half::Receive(_) => {
                let block = BlockNumber::from_absolute(block);
                encode(&Packet::Ack { block }, buf, peer)
            }
        }
    }

    /// The packet that stands for block 0: what opens the transfer from this side.
    fn opening(&self, buf: &mut [u8]) -> Option<Transmit> {
        let peer = self.common.peer;
        match &self.role {
            Role::Server {
                oack: Some(options),
                ..
            } => encode(&Packet::Oack { options: *options }, buf, peer),
            Role::Server { oack: None, .. } => encode(
                &Packet::Ack {
                    block: BlockNumber(0),
                },
                buf,
                peer,
            ),
            Role::Client(client) => client.opening(&self.common, buf),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once finished, and
    /// while a server's write waits for [`commit_result`](Self::commit_result).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.common.is_finished() && !self.is_committing()).then(|| self.half.deadline())
    }

    /// True while a server's write has its whole file ([`Event::Received`]) and holds the
    /// final ACK until [`commit_result`](Self::commit_result) says how the store took it.
    pub fn is_committing(&self) -> bool {
        matches!(&self.half, Half::Receive(receiver) if receiver.is_committing())
            && !self.common.is_finished()
    }

    /// How the store took the file of [`Event::Received`]: stored, and the final ACK goes
    /// out (then the transfer lingers as usual); or refused with the ERROR to send in its
    /// place, and the transfer ends as refused. Does nothing unless
    /// [`is_committing`](Self::is_committing).
    pub fn commit_result(&mut self, now: Instant, result: Result<(), (ErrorCode, String)>) {
        if !self.is_committing() {
            return;
        }
        let Half::Receive(receiver) = &mut self.half else {
            return;
        };
        match result {
            Ok(()) => receiver.release_final_ack(now),
            Err((code, message)) => {
                let stats = receiver.stats();
                self.common.refuse(now, code, message, stats);
            }
        }
    }

    /// The next event: [`Event::Received`] with the file (a receiving transfer), then
    /// [`Event::Finished`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.common.poll_event()
    }

    /// True once the transfer is over (its report may still wait in `poll_event`).
    pub fn is_finished(&self) -> bool {
        self.common.is_finished()
    }

    /// True once the peer has answered (always, for a client's transfer).
    pub fn is_verified(&self) -> bool {
        self.common.verified
    }

    /// In single-port mode the server's ACK 0 comes to the listening port, where whoever
    /// forged the request can forge it too: only an ACK of data verifies the peer.
    pub fn distrust_handshake(&mut self) {
        if let Role::Server {
            handshake_verifies, ..
        } = &mut self.role
        {
            *handshake_verifies = false;
        }
    }

    /// Read or write (a client's download is a read).
    pub fn direction(&self) -> Direction {
        self.common.direction
    }

    /// Ends the transfer at once with ERROR `code` (e.g. the server is shutting down).
    pub fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        let stats = self.half.stats();
        self.common.refuse(now, code, message.to_owned(), stats);
    }

    /// The client sent its request again: while the transfer is unverified its first
    /// packet was lost (or the answer to it), so it goes out once more at once.
    pub fn repeat_opening(&mut self) {
        if self.common.verified || self.common.is_finished() {
            return;
        }
        match &mut self.half {
            Half::Send(sender) => sender.resend_first(),
            Half::Receive(receiver) => receiver.request_ack(),
        }
    }

    /// Ends the transfer without a word to the peer: `Superseded` when the client has
    /// moved on to a new request from the same port, `Evicted` to make room.
    pub fn end_silently(&mut self, now: Instant, outcome: Outcome) {
        let stats = self.half.stats();
        self.common.finish(now, outcome, stats);
    }

    /// True once a receiving transfer has the whole file and lingers only to
    /// acknowledge a retransmitted last block.
    pub fn is_lingering(&self) -> bool {
        matches!(&self.half, Half::Receive(receiver)
            if receiver.is_complete() && !receiver.is_committing())
            && !self.common.is_finished()
    }

    /// Once a receiving transfer has the whole file ([`Event::Received`]), ends it
    /// without lingering to acknowledge a retransmitted last block (e.g. at shutdown);
    /// does nothing before, or for a sending transfer.
    pub fn stop_lingering(&mut self, now: Instant) {
        if let Half::Receive(receiver) = &self.half
            && receiver.is_complete()
            && !receiver.is_committing()
        {
            let stats = receiver.stats();
            self.common.finish(now, Outcome::Completed, stats);
        }
    }

    /// Bytes of DATA the sender may send before it waits for an ACK (a window): what a
    /// receiving transfer's socket must be able to hold.
    pub fn window_bytes(&self) -> usize {
        let options = &self.common.options;
        usize::from(options.windowsize) * (4 + usize::from(options.blksize))
    }

    /// Where the transfer stands, for the control socket's list of transfers: its
    /// report as it would read if the transfer ended now (outcome aside).
    pub fn progress(&self) -> Progress {
        let stats = self.half.stats();
        Progress {
            direction: self.common.direction,
            peer: self.common.peer,
            filename: self.common.filename.clone(),
            mode: self.common.mode,
            options: self.common.options,
            bytes: stats.bytes,
            blocks: stats.blocks,
            retransmits: stats.retransmits,
            started: self.common.started,
            verified: self.common.verified,
        }
    }

    /// A receiving transfer collects the file in `buffer` (emptied first) rather than in
    /// a new allocation: a client running many downloads hands back each
    /// [`Event::Received`] buffer, and skips growing and first touching the memory again.
    #[must_use]
    pub fn with_buffer(mut self, buffer: Vec<u8>) -> Self {
        if let Half::Receive(receiver) = &mut self.half {
            receiver.recycle(buffer);
        }
        self
    }
}

/// A transfer in flight, as [`Transfer::progress`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Read or write.
    pub direction: Direction,
    /// The other end's address and port.
    pub peer: SocketAddr,
    /// The file name as requested.
    pub filename: String,
    /// The transfer mode.
    pub mode: crate::proto::Mode,
    /// The parameters negotiated.
    pub options: Negotiated,
    /// File bytes delivered so far (read: acknowledged; write: received).
    pub bytes: u64,
    /// DATA blocks delivered so far.
    pub blocks: u64,
    /// Packets sent again so far.
    pub retransmits: u64,
    /// When the request arrived.
    pub started: Instant,
    /// The peer has answered from its address and port.
    pub verified: bool,
}

/// A datagram written by `poll_transmit`: send `buf[..len]` to `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length at the start of the caller's buffer.
    pub len: usize,
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// All bytes of a write (or a client download) arrived. A client's download has
    /// acknowledged the last block; a server's write holds that ACK until
    /// [`Transfer::commit_result`] says the file is stored. Either may then linger a
    /// little longer to re-acknowledge.
    Received(Vec<u8>),
    /// The transfer is over; the caller may drop it.
    Finished(TransferReport),
}

#[cfg(test)]
mod tests;
