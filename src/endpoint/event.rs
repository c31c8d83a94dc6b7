//! What the endpoint tells the driver: where a datagram came to ([`LocalEnd`]), what a
//! datagram started ([`DatagramEvent`]), what to send and by which socket ([`Outgoing`],
//! [`Via`]), and what to act on ([`EndpointEvent`]: ended transfers, refusals to log,
//! uploads to commit).

use std::net::{IpAddr, SocketAddr};

use super::policy::Applied;
use super::refusal::RefusalRecord;
use super::table::{Route, TransferHandle};
use crate::store::UploadPermit;
use crate::transfer::{TransferReport, Transmit};

/// The local end a datagram was addressed to: the address, and the interface it came in
/// on (needed to answer from an IPv6 link-local address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEnd {
    /// The destination address of the request.
    pub ip: IpAddr,
    /// The interface it arrived on (0: unknown).
    pub ifindex: u32,
    /// The MTU of the link to the peer, when the driver learned it (for
    /// `max-blksize = "mtu"`; see [`Endpoint::wants_mtu`](super::Endpoint::wants_mtu)).
    pub mtu: Option<u32>,
}

/// What [`Endpoint::handle`](super::Endpoint::handle) made of a datagram, beyond what
/// `poll_transmit` and `poll_event` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramEvent {
    /// A request started a transfer. With [`Route::Own`] the driver must open its socket
    /// before sending what it has.
    NewTransfer {
        /// The transfer.
        handle: TransferHandle,
        /// How its datagrams travel.
        route: Route,
        /// The local address the request came to: the new socket's address.
        local: Option<LocalEnd>,
        /// Bytes of DATA that may arrive before the driver reads any (a write's window):
        /// what the new socket's receive buffer must hold.
        window_bytes: Option<usize>,
    },
    /// The datagram was for a transfer on the listening socket (single-port mode).
    Routed(TransferHandle),
}

/// Which socket a datagram from [`Endpoint::poll_transmit`](super::Endpoint::poll_transmit)
/// leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The transfer's own socket.
    Transfer(TransferHandle),
    /// A listening socket, from the local address given when it is bound to a wildcard.
    Listener {
        /// The listening socket, as the driver numbered it.
        listener: usize,
        /// The address to answer from.
        local: Option<LocalEnd>,
    },
}

/// Datagrams to send: `buf[..transmit.len]` to `transmit.destination`, by `via`, cut
/// into datagrams of `segment` bytes (the last may be shorter). One datagram has
/// `segment == transmit.len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The socket to send it by.
    pub via: Via,
    /// Its destination and length.
    pub transmit: Transmit,
    /// The length of each datagram laid end to end in it.
    pub segment: usize,
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum EndpointEvent {
    /// A transfer is over: drop whatever is keyed by its handle, and log the report.
    Ended {
        /// The transfer, whose handle may be reused from now on.
        handle: TransferHandle,
        /// Its report.
        report: TransferReport,
        /// The client, its address made canonical.
        client: SocketAddr,
        /// What the policy made of its request: the table, the names, the view.
        applied: Box<Applied>,
    },
    /// A request or a datagram was answered with an ERROR: log it (within the log's
    /// limits; those over them are counted in the next record, or in a `Suppressed`).
    Refused(RefusalRecord),
    /// This many refusals were kept out of the log, and none has been logged since.
    Suppressed(u64),
    /// A write has all its bytes and holds its final ACK: store them with the permit,
    /// then report with [`Endpoint::committed`](super::Endpoint::committed) (or let
    /// [`Endpoint::commit`](super::Endpoint::commit) do both).
    Commit(UploadCommit),
}

/// An upload to store (see [`EndpointEvent::Commit`]).
#[derive(Debug)]
pub struct UploadCommit {
    /// The write, to report the result for.
    pub handle: TransferHandle,
    /// The permit its request got.
    pub permit: UploadPermit,
    /// The file.
    pub data: Vec<u8>,
    /// The client, its address made canonical.
    pub client: SocketAddr,
}
