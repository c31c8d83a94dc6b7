//! What the endpoint is configured with ([`Settings`], replaced whole on reload) and the
//! live figures it reports ([`Counters`], for `STATUS=`, `tftpd ctl status` and the
//! metrics).

use std::sync::Arc;
use std::time::Duration;

use super::counts::Tallies;
use super::policy::{Policy, PortRange};
use crate::transfer::TransferConfig;

/// What the endpoint needs from the configuration; all of it can change on reload but
/// `single_port`.
///
/// Admission: a request that would start a transfer gets in while there is room. Room is
/// made by ending the oldest *unverified* transfer (one whose peer has not answered yet:
/// see [`Transfer`](crate::transfer::Transfer)): of anyone when the table is at
/// `max_transfers`; of the same client, once it has gone unanswered through its
/// retransmission, when that client is at `max_unverified_per_client`. A request that
/// still finds no room (the client is at `max_transfers_per_client`, or the
/// table is full of verified transfers, or the server is stopping) is dropped without an
/// answer, as a lost datagram is: the client sends it again and gets in once room frees,
/// where an ERROR would make a boot ROM give up. Clients are counted by IPv4 address, and
/// IPv6 clients by their first `ipv6_client_prefix` bits (one host holds a whole /64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Defaults and limits of every transfer.
    pub transfer: TransferConfig,
    /// Transfers at once, in all.
    pub max_transfers: usize,
    /// Transfers at once from one client: enough for a NAT of a few hundred hosts.
    pub max_transfers_per_client: usize,
    /// Unverified transfers at once from one client, so that forged requests cannot
    /// fill the table.
    pub max_unverified_per_client: usize,
    /// How many leading bits of an IPv6 address make one client.
    pub ipv6_client_prefix: u8,
    /// Run transfers on the listening socket instead of one socket each.
    pub single_port: bool,
    /// How long transfers in flight may go on after a stop is asked for.
    pub shutdown_grace: Duration,
    /// Who may do what, per client: the `[[client]]` tables and the top-level rules,
    /// decided per request (`transfer`'s `max_blksize` and `max_windowsize` are
    /// replaced by the client's rules).
    pub policy: Arc<Policy>,
    /// The ports per-transfer sockets are bound to (the driver's business); `None`:
    /// any the kernel picks.
    pub port_range: Option<PortRange>,
    /// What a client may upload at once.
    pub uploads_in_flight: UploadsInFlight,
}

/// The limits on one client's uploads that the endpoint applies (the store applies the
/// sizes, names and overwrite of its policy): looked up per request by
/// [`Endpoint::uploads_in_flight`](super::Endpoint::uploads_in_flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadsInFlight {
    /// Uploads in flight at once from one client (counted as the transfer limits count
    /// clients); a write request over it is dropped unanswered, as a lost datagram, and
    /// gets in when the client sends it again after one has ended.
    pub max_per_client: usize,
}

impl Default for UploadsInFlight {
    fn default() -> Self {
        UploadsInFlight { max_per_client: 4 }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            transfer: TransferConfig::default(),
            max_transfers: 1000,
            max_transfers_per_client: 256,
            max_unverified_per_client: 64,
            ipv6_client_prefix: 64,
            single_port: false,
            shutdown_grace: Duration::from_secs(10),
            uploads_in_flight: UploadsInFlight::default(),
            policy: Arc::default(),
            port_range: None,
        }
    }
}

/// Live figures for `STATUS=` and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Files in the store.
    pub files: u64,
    /// Bytes in the store.
    pub bytes: u64,
    /// Transfers in progress.
    pub active: usize,
    /// Transfers finished since start-up (any outcome).
    pub served: u64,
    /// Requests refused since start-up.
    pub refused: u64,
    /// Requests dropped unanswered for want of room since start-up (the client sends
    /// them again).
    pub dropped: u64,
    /// Of `active`, the reads and the writes.
    pub active_by_op: [usize; 2],
    /// Of `active`, those whose peer has not answered yet.
    pub unverified: usize,
    /// Of `files` and `bytes`, the uploaded ones.
    pub uploaded_files: u64,
    /// See `uploaded_files`.
    pub uploaded_bytes: u64,
    /// Everything counted since start-up, for the metrics.
    pub tallies: Tallies,
    /// The store's generation ([`Store::generation`](crate::store::Store::generation)).
    pub generation: u64,
    /// Entries the last preseed load skipped.
    pub skipped: u64,
}

impl Counters {
    /// The one-line status for systemd.
    pub fn status_line(&self) -> String {
        let skipped = if self.skipped > 0 {
            format!(", {} skipped", self.skipped)
        } else {
            String::new()
        };
        format!(
            "{} files ({:.1} MiB) stored, generation {}{skipped}; {} active transfers; \
             {} served, {} refused",
            self.files,
            self.bytes as f64 / (1 << 20) as f64,
            self.generation,
            self.active,
            self.served,
            self.refused
        )
    }
}
