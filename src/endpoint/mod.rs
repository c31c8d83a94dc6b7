//! The server without sockets: the transfer table and its routes, per-client accounting,
//! admission, the wake-up schedule, upload permits and the drain at shutdown, in the
//! manner of quinn-proto's `Endpoint`. It reads no clock and opens no socket; the driver
//! (or the simulation, in virtual time) moves datagrams in and out:
//!
//! 1. a datagram on a listening socket goes to [`handle`](Endpoint::handle); when it
//!    answers [`DatagramEvent::NewTransfer`] with [`Route::Own`], the driver opens the
//!    transfer's socket on the local address named, or calls
//!    [`reject`](Endpoint::reject) if it cannot;
//! 2. a datagram on a transfer's own socket goes to
//!    [`handle_transfer`](Endpoint::handle_transfer);
//! 3. after either, and after [`handle_timeout`](Endpoint::handle_timeout) at the
//!    instant [`poll_timeout`](Endpoint::poll_timeout) names, the driver sends what
//!    [`poll_transmit`](Endpoint::poll_transmit) writes until it returns `None`, through
//!    the socket its [`Via`] names;
//! 4. then it takes [`poll_event`](Endpoint::poll_event) until `None`: ended transfers
//!    with their reports (drop the transfer's socket, log the report), refusals to log,
//!    uploads to commit.
//!
//! An upload's final ACK waits for the store: when a write has its whole file the
//! endpoint hands it on as [`EndpointEvent::Commit`], with the permit its request got,
//! and holds the ACK. The driver stores it (in memory at once with
//! [`commit`](Endpoint::commit), or on a writer thread that makes it durable first) and
//! reports back with [`committed`](Endpoint::committed): then the final ACK goes out, or
//! in its place the ERROR the store's refusal carries, and the transfer ends as refused.
//! Every permit reserves room in the store from the request until it is committed or
//! dropped with its transfer.

mod counts;
mod event;
mod policy;
mod refusal;
mod request;
mod settings;
mod table;

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

pub use counts::{OPS, OUTCOMES, RequestResult, Tallies};
pub use event::{DatagramEvent, EndpointEvent, LocalEnd, Outgoing, UploadCommit, Via};
pub use policy::{
    Applied, BlockLimit, ClientTable, IPV4_OVERHEAD, IPV6_OVERHEAD, MAX_REWRITTEN_LEN, Matched,
    Network, NetworkError, Policy, PortRange, RefusedOptions, Rewrite, Rules, UploadLimits,
    blksize_for_mtu,
};
pub use refusal::{Refusal, RefusalRecord};
pub use settings::{Counters, Settings, UploadsInFlight};
pub use table::{Route, TransferHandle};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::proto::{ErrorCode, Packet};
use crate::store::{Store, UploadRefusal};
use crate::transfer::{Direction, Outcome, Progress, Transmit, UNVERIFIED_RETRIES};
use refusal::{RateLimit, RefusalLog};
use request::Decision;
use table::{NewEntry, Table};

/// An ERROR to send from a listening socket.
#[derive(Debug)]
struct Response {
    listener: usize,
    local: Option<LocalEnd>,
    peer: SocketAddr,
    code: ErrorCode,
    message: String,
}

/// At most this many answers wait to be sent; more are dropped, as datagrams are.
const MAX_RESPONSES: usize = 64;

/// The server without sockets (see the module docs).
#[derive(Debug)]
pub struct Endpoint {
    settings: Settings,
    store: Arc<Store>,
    table: Table,
    /// Transfers with something to send or report (the last touched is served first:
    /// a stack is cheaper than a queue, and one turn of the driver sends all of them).
    touched: Vec<TransferHandle>,
    responses: VecDeque<Response>,
    events: VecDeque<EndpointEvent>,
    /// Bounds how often noise is answered.
    noise: RateLimit,
    /// Bounds how often refusals reach the log.
    refusal_log: RefusalLog,
    /// Set when a stop was asked for: transfers still running then are aborted.
    stop_deadline: Option<Instant>,
    served: u64,
    refused: u64,
    dropped: u64,
    tallies: Tallies,
}

impl Endpoint {
    /// An endpoint serving `store` with `settings`.
    pub fn new(store: Arc<Store>, settings: Settings) -> Endpoint {
        Endpoint {
            settings,
            store,
            table: Table::default(),
            touched: Vec::new(),
            responses: VecDeque::new(),
            events: VecDeque::new(),
            noise: RateLimit::new(20, 100),
            refusal_log: RefusalLog::default(),
            stop_deadline: None,
            served: 0,
            refused: 0,
            dropped: 0,
            tallies: Tallies::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Takes new settings after a reload; `single_port` keeps its value until restart.
    pub fn apply_settings(&mut self, settings: Settings) {
        let single_port = self.settings.single_port;
        self.settings = Settings {
            single_port,
            ..settings
        };
    }

    /// The figures for `STATUS=`.
    pub fn counters(&self) -> Counters {
        let stats = self.store.stats();
        let mut active_by_op = [0; 2];
        for handle in self.table.handles() {
            if let Some(entry) = self.table.get(handle) {
                active_by_op[usize::from(entry.transfer.direction() == Direction::Write)] += 1;
            }
        }
        Counters {
            files: stats.files as u64,
            bytes: stats.bytes,
            active: self.table.len(),
            served: self.served,
            refused: self.refused,
            dropped: self.dropped,
            active_by_op,
            unverified: self.table.unverified_len(),
            uploaded_files: stats.uploaded_files as u64,
            uploaded_bytes: stats.uploaded_bytes,
            tallies: self.tallies,
            generation: stats.generation,
            skipped: stats.skipped as u64,
        }
    }

    /// Every transfer in flight, oldest first, as [`Transfer::progress`](crate::transfer::Transfer::progress)
    /// shows it; the peer's address is made canonical.
    pub fn transfers(&self) -> Vec<Progress> {
        let mut all: Vec<Progress> = (self.table.handles().into_iter())
            .filter_map(|handle| self.table.get(handle))
            .map(|entry| {
                let mut progress = entry.transfer.progress();
                progress.peer = canonical(progress.peer);
                progress
            })
            .collect();
        all.sort_by_key(|p| p.started);
        all
    }

    /// The transfers in flight and the served, refused and dropped counts: what changes
    /// the status line, cheaply (no look at the store).
    pub fn activity(&self) -> (usize, u64, u64, u64) {
        (self.table.len(), self.served, self.refused, self.dropped)
    }

    /// Handles a datagram that arrived on listening socket `listener` from `peer` (as
    /// the socket reports it), sent to `local` when the kernel said.
    pub fn handle(
        &mut self,
        now: Instant,
        listener: usize,
        local: Option<LocalEnd>,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> Option<DatagramEvent> {
        let earlier = self.table.by_peer(listener, peer);
        if request::is_request(datagram) {
            if let Some(handle) = earlier
                && self.repeated(now, handle, datagram)
            {
                return None;
            }
        } else if let Some(handle) = earlier
            && self.is_routed(handle)
        {
            self.handle_transfer(now, handle, peer, datagram);
            return Some(DatagramEvent::Routed(handle));
        }
        let client = canonical(peer);
        let key = self.client_key(client.ip());
        // A client at its cap of uploads waits (its request is dropped, as a lost
        // datagram is), before its request takes a permit and a reservation.
        if request::is_write(datagram)
            && self.table.uploads_of(key) >= self.uploads_in_flight(key).max_per_client
        {
            self.dropped += 1;
            return None;
        }
        let single_port = self.settings.single_port;
        // A transfer on its own socket talks to the canonical address; one on the
        // listening socket to the address as that socket sees it.
        let transfer_peer = if single_port { peer } else { client };
        let context = request::Context {
            store: &self.store,
            config: &self.settings.transfer,
            policy: &self.settings.policy,
            mtu: local.and_then(|l| l.mtu),
        };
        let (decision, applied) = request::decide(now, transfer_peer, datagram, &context);
        let (mut transfer, permit) = match decision {
            Decision::Read(transfer) => (transfer, None),
            Decision::Write(transfer, permit) => (transfer, Some(permit)),
            Decision::Wait => {
                self.dropped += 1;
                self.tallies.request(Direction::Write, RequestResult::Busy);
                return None;
            }
            Decision::Refuse(refusal) => {
                let table = (!refusal.noise).then_some(applied.table);
                let request = match &refusal.request {
                    Some((op, _)) => Some((*op, RequestResult::of_refusal(refusal.code))),
                    // A request too malformed to read.
                    None if request::is_request(datagram) => {
                        Some((request::request_op(datagram), RequestResult::BadRequest))
                    }
                    None => None,
                };
                let answered = self.refuse(now, listener, local, peer, refusal, table);
                match request {
                    Some((op, result)) if answered => self.tallies.request(op, result),
                    Some((op, _)) => self.tallies.request(op, RequestResult::RateLimited),
                    None => self.tallies.stray += 1,
                }
                return None;
            }
        };
        let op = transfer.direction();
        if !self.admit(now, key) {
            // The permit goes with the transfer, and its reservation with it.
            self.dropped += 1;
            self.tallies.request(op, RequestResult::Busy);
            return None;
        }
        self.tallies.request(op, RequestResult::Accepted);
        let route = if single_port {
            transfer.distrust_handshake();
            Route::Listener { listener, local }
        } else {
            Route::Own
        };
        let window_bytes =
            (transfer.direction() == Direction::Write).then(|| transfer.window_bytes());
        let handle = self.table.insert(NewEntry {
            transfer,
            permit,
            route,
            listener,
            raw_peer: peer,
            key,
            request: request::digest(datagram),
            started: now,
            applied: Box::new(applied),
        });
        self.touch(handle);
        Some(DatagramEvent::NewTransfer {
            handle,
            route,
            local,
            window_bytes,
        })
    }

    /// True when the request in `datagram` from `peer` would be served under
    /// `max-blksize = "mtu"` with a `blksize` option to bound: the driver should then
    /// learn the link's MTU and hand it in with [`LocalEnd::mtu`]. Cheap (a parse of the
    /// request and a match of the client's table).
    pub fn wants_mtu(&self, peer: SocketAddr, datagram: &[u8]) -> bool {
        if !request::is_request(datagram) {
            return false;
        }
        let (_, rules) = self.settings.policy.rules_for(canonical_ip(peer.ip()));
        if rules.max_blksize != BlockLimit::Mtu || rules.refuse_options.blksize {
            return false;
        }
        match Packet::parse(datagram) {
            Ok(Packet::Rrq(request) | Packet::Wrq(request)) => request
                .options
                .blksize
                .is_some_and(|b| b > crate::proto::DEFAULT_BLKSIZE),
            _ => false,
        }
    }

    /// A request from the port of transfer `handle`: true when it is that transfer's own
    /// request again (sent again because the answer was lost: the first packet goes out
    /// once more while the transfer is unverified, and nothing new starts). Any other
    /// request means the client has moved on: the old transfer ends without a word if it
    /// only lingers, is unverified, or shares the listening socket with the new one.
    fn repeated(&mut self, now: Instant, handle: TransferHandle, datagram: &[u8]) -> bool {
        let single_port = self.settings.single_port;
        let Some(entry) = self.table.get_mut(handle) else {
            return false;
        };
        let transfer = &mut entry.transfer;
        if entry.request == request::digest(datagram) {
            transfer.repeat_opening();
            self.touch(handle);
            return true;
        }
        if transfer.is_lingering() {
            transfer.stop_lingering(now);
        } else if !transfer.is_verified() || single_port {
            transfer.end_silently(now, Outcome::Superseded);
        } else {
            return false;
        }
        self.settle(handle);
        false
    }

    /// True for a transfer that shares the listening socket (single-port mode).
    fn is_routed(&self, handle: TransferHandle) -> bool {
        self.table
            .get(handle)
            .is_some_and(|entry| matches!(entry.route, Route::Listener { .. }))
    }

    /// Handles a datagram from `source` on the socket of transfer `handle` (or routed to
    /// it); a handle that has ended is ignored.
    pub fn handle_transfer(
        &mut self,
        now: Instant,
        handle: TransferHandle,
        source: SocketAddr,
        datagram: &[u8],
    ) {
        let Some(entry) = self.table.get_mut(handle) else {
            return;
        };
        entry.transfer.handle_datagram(now, source, datagram);
        let newly_verified = entry.newly_verified();
        if !std::mem::replace(&mut entry.queued, true) {
            self.touched.push(handle);
        }
        if newly_verified {
            self.table.note_verified(handle);
        }
    }

    /// The driver could not give the new transfer `handle` its socket (`reason` says
    /// why): the transfer is dropped, and the client is answered with ERROR 0 from the
    /// listening socket the request came in on, from `local`.
    pub fn reject(
        &mut self,
        handle: TransferHandle,
        listener: usize,
        local: Option<LocalEnd>,
        reason: &str,
    ) {
        let Some(entry) = self.table.remove(handle) else {
            return;
        };
        let op = entry.transfer.direction();
        self.tallies.request(op, RequestResult::ServerError);
        let refusal = Refusal {
            code: ErrorCode::NotDefined,
            message: format!("server cannot open a transfer socket: {reason}"),
            request: None,
            noise: false,
        };
        self.refused += 1;
        self.answer(listener, local, entry.raw_peer, &refusal);
        self.events.push_back(EndpointEvent::Refused(RefusalRecord {
            client: canonical(entry.raw_peer),
            refusal,
            suppressed: 0,
            table: Some(entry.applied.table),
        }));
    }

    /// The upload limits for client `key` (an IPv4 address, or an IPv6 address cut to
    /// its first `ipv6_client_prefix` bits).
    pub fn uploads_in_flight(&self, _key: IpAddr) -> UploadsInFlight {
        self.settings.uploads_in_flight
    }

    /// Stores an upload of [`EndpointEvent::Commit`] in the store's memory, noting that it
    /// `arrived` then (the wall-clock time, for the file list; the endpoint reads no
    /// clock), and reports the result as [`committed`](Self::committed) does; returns the
    /// store's refusal, if any, for the log.
    pub fn commit(
        &mut self,
        now: Instant,
        commit: UploadCommit,
        arrived: Option<SystemTime>,
    ) -> Result<(), UploadRefusal> {
        let UploadCommit {
            handle,
            permit,
            data,
            ..
        } = commit;
        let result = self.store.commit_upload_at(permit, data, arrived);
        self.committed(now, handle, result.clone());
        result
    }

    /// How the store took the upload of transfer `handle` (from
    /// [`EndpointEvent::Commit`]): stored, and its final ACK goes out; refused, and the
    /// refusal's ERROR goes out in its place and the transfer ends as refused. A transfer
    /// that ended meanwhile is not disturbed.
    pub fn committed(
        &mut self,
        now: Instant,
        handle: TransferHandle,
        result: Result<(), UploadRefusal>,
    ) {
        let Some(entry) = self.table.get_mut(handle) else {
            return;
        };
        if !entry.transfer.is_committing() {
            return;
        }
        if result.is_err() {
            self.refused += 1;
        }
        let result = result.map_err(|refusal| (refusal.error_code(), refusal.to_string()));
        entry.transfer.commit_result(now, result);
        self.touch(handle);
    }

    /// The driver has no socket for the new transfer `handle` for now (every port of its
    /// `port-range` is taken): the transfer is dropped without an answer, as a request
    /// that meets any transient limit is, and the client's retransmission of the
    /// request starts it afresh once a port is free.
    pub fn withdraw(&mut self, handle: TransferHandle) {
        if self.table.remove(handle).is_some() {
            self.dropped += 1;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stop = self.stop_deadline.filter(|_| self.table.len() > 0);
        let summary = self.refusal_log.summary_due;
        [self.table.next_wake(), stop, summary]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`: retransmissions, give-ups, lingers that end, and at
    /// the end of the shutdown grace the abort of every transfer still running.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(count) = self.refusal_log.take_summary(now) {
            self.events.push_back(EndpointEvent::Suppressed(count));
        }
        if self.stop_deadline.is_some_and(|deadline| now >= deadline) {
            for handle in self.table.handles() {
                // An upload the store is taking gets its answer first.
                if let Some(entry) = self.table.get_mut(handle)
                    && !entry.transfer.is_committing()
                {
                    let message = "server shutting down";
                    entry.transfer.abort(now, ErrorCode::NotDefined, message);
                    self.touch(handle);
                }
            }
        }
        while let Some(handle) = self.table.pop_due(now) {
            if let Some(entry) = self.table.get_mut(handle) {
                if entry.transfer.poll_timeout().is_some_and(|due| due <= now) {
                    entry.transfer.handle_timeout(now);
                }
                self.touch(handle);
            }
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`MAX_DATAGRAM`](crate::proto::MAX_DATAGRAM) bytes), and says by which socket it
    /// leaves. Datagrams of one transfer come one after another.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Outgoing> {
        self.poll_transmit_segments(buf, 1, 0)
    }

    /// As [`poll_transmit`](Self::poll_transmit), but a window of DATA of one transfer
    /// comes at once, laid end to end for one segmented send: up to `max_segments`
    /// datagrams and `max_bytes` bytes (or one datagram of any length).
    #[inline]
    pub fn poll_transmit_segments(
        &mut self,
        buf: &mut [u8],
        max_segments: usize,
        max_bytes: usize,
    ) -> Option<Outgoing> {
        // The driver asks once more after the last datagram of every turn.
        if self.touched.is_empty() && self.responses.is_empty() {
            return None;
        }
        self.next_transmit(buf, max_segments, max_bytes)
    }

    fn next_transmit(
        &mut self,
        buf: &mut [u8],
        max_segments: usize,
        max_bytes: usize,
    ) -> Option<Outgoing> {
        while let Some(&handle) = self.touched.last() {
            if let Some(entry) = self.table.get_mut(handle)
                && let Some(first) = entry.transfer.poll_transmit(buf)
            {
                let via = match entry.route {
                    Route::Own => Via::Transfer(handle),
                    Route::Listener { listener, local } => Via::Listener { listener, local },
                };
                let segment = first.len;
                let mut len = segment;
                let mut drained = false;
                // After a full DATA block only DATA to the same peer can follow in this
                // turn (errors are queued by `handle_*` calls, and come first), none
                // longer: each gets room for exactly one block, in which it always fits,
                // so `None` means the transfer has sent all it had.
                if entry.transfer.data_datagram_len() == Some(segment) {
                    let mut segments = 1;
                    let room = buf.len().min(max_bytes);
                    while segments < max_segments && len + segment <= room {
                        if !entry.transfer.has_data_to_send() {
                            drained = true;
                            break;
                        }
                        let Some(next) = entry.transfer.poll_transmit(&mut buf[len..len + segment])
                        else {
                            drained = true;
                            break;
                        };
                        debug_assert!(next.len <= segment && next.destination == first.destination);
                        len += next.len;
                        segments += 1;
                        if next.len < segment {
                            break;
                        }
                    }
                }
                if drained {
                    self.touched.pop();
                    self.settle(handle);
                }
                return Some(Outgoing {
                    via,
                    transmit: Transmit {
                        destination: first.destination,
                        len,
                    },
                    segment,
                });
            }
            self.touched.pop();
            self.settle(handle);
        }
        let response = self.responses.pop_front()?;
        let packet = Packet::Error {
            code: response.code,
            message: response.message.as_str().into(),
        };
        let len = packet.encode(buf).ok()?;
        Some(Outgoing {
            via: Via::Listener {
                listener: response.listener,
                local: response.local,
            },
            transmit: Transmit {
                destination: response.peer,
                len,
            },
            segment: len,
        })
    }

    /// The next thing the driver must act on.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// Begins the drain: new requests are refused, finished uploads stop lingering, and
    /// transfers still running when the shutdown grace is over are aborted.
    pub fn begin_stop(&mut self, now: Instant) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(now + self.settings.shutdown_grace);
        for handle in self.table.handles() {
            if let Some(entry) = self.table.get_mut(handle) {
                entry.transfer.stop_lingering(now);
                self.touch(handle);
            }
        }
    }

    /// True once a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stop_deadline.is_some()
    }

    /// True once a stop was asked for and every transfer has ended.
    pub fn is_stopped(&self) -> bool {
        self.stop_deadline.is_some() && self.table.len() == 0
    }

    /// Makes room for one more transfer of client `key`, ending unverified transfers
    /// as the [`Settings`] say; false when there is none to be had.
    fn admit(&mut self, now: Instant, key: IpAddr) -> bool {
        if self.stop_deadline.is_some() {
            return false;
        }
        let (all, unverified) = self.table.load_of(key);
        // Within one client (a NAT's many hosts ask at once), only a transfer that has
        // sent its packet and its retransmission unanswered gives way: a younger one may
        // be a real host whose answer is on its way. The new request waits for its own
        // retransmission instead.
        let given_up = self.settings.transfer.timeout * (UNVERIFIED_RETRIES + 1);
        if (all >= self.settings.max_transfers_per_client
            || unverified >= self.settings.max_unverified_per_client)
            && !self.evict_oldest(now, Some(key), given_up)
        {
            return false;
        }
        // A full table gives way at once: under a flood of forged requests from many
        // addresses, the oldest has had the time a flood of that rate leaves it.
        if self.table.len() >= self.settings.max_transfers
            && !self.evict_oldest(now, None, Duration::ZERO)
        {
            return false;
        }
        true
    }

    /// Ends the oldest unverified transfer (of client `key`, or of anyone) to make room,
    /// if it has waited `at_least` since its request; false when there is none to end.
    fn evict_oldest(&mut self, now: Instant, key: Option<IpAddr>, at_least: Duration) -> bool {
        match self.table.oldest_unverified(key) {
            Some((oldest, started)) if now >= started + at_least => {
                self.evict(now, oldest);
                true
            }
            _ => false,
        }
    }

    /// Ends an unverified transfer without a word, to make room.
    fn evict(&mut self, now: Instant, handle: TransferHandle) {
        if let Some(entry) = self.table.get_mut(handle) {
            entry.transfer.end_silently(now, Outcome::Evicted);
            self.settle(handle);
        }
    }

    /// What the per-client limits count `ip` (canonical) as: an IPv4 address itself, an
    /// IPv6 address its first `ipv6_client_prefix` bits.
    fn client_key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => {
                let bits = u32::from(self.settings.ipv6_client_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
            v4 => v4,
        }
    }

    /// Queues the answer to a refused request and the record to log; noise only within
    /// the rate limit. False when noise went unanswered for the limit.
    fn refuse(
        &mut self,
        now: Instant,
        listener: usize,
        local: Option<LocalEnd>,
        peer: SocketAddr,
        refusal: Refusal,
        table: Option<String>,
    ) -> bool {
        if refusal.noise {
            if !self.noise.allow(now) {
                return false;
            }
        } else {
            self.refused += 1;
        }
        self.answer(listener, local, peer, &refusal);
        let client = canonical(peer);
        let key = self.client_key(client.ip());
        if let Some(suppressed) = self.refusal_log.admit(now, key) {
            self.events.push_back(EndpointEvent::Refused(RefusalRecord {
                client,
                refusal,
                suppressed,
                table,
            }));
        }
        true
    }

    fn answer(
        &mut self,
        listener: usize,
        local: Option<LocalEnd>,
        peer: SocketAddr,
        refusal: &Refusal,
    ) {
        if self.responses.len() < MAX_RESPONSES {
            self.responses.push_back(Response {
                listener,
                local,
                peer,
                code: refusal.code,
                message: refusal.message.clone(),
            });
        }
    }

    /// Queues `handle` for `poll_transmit` (once).
    fn touch(&mut self, handle: TransferHandle) {
        if let Some(entry) = self.table.get_mut(handle)
            && !entry.queued
        {
            entry.queued = true;
            self.touched.push(handle);
        }
    }

    /// After a transfer has sent what it had: hands on its events, and removes it once it
    /// has ended, or schedules its next wake-up.
    fn settle(&mut self, handle: TransferHandle) {
        let Some(entry) = self.table.get_mut(handle) else {
            return;
        };
        entry.queued = false;
        let mut report = None;
        while let Some(event) = entry.transfer.poll_event() {
            match event {
                crate::transfer::Event::Received(data) => {
                    if let Some(permit) = entry.permit.take() {
                        self.events.push_back(EndpointEvent::Commit(UploadCommit {
                            handle,
                            permit,
                            data,
                            client: canonical(entry.raw_peer),
                        }));
                    }
                }
                crate::transfer::Event::Finished(r) => report = Some(r),
            }
        }
        // Stopping: an upload acknowledged since the stop began lingers no more. (The
        // instant passed is not used: a lingering write's duration ended with its data.)
        if report.is_none()
            && let Some(at) = self.stop_deadline
            && entry.transfer.is_lingering()
        {
            entry.transfer.stop_lingering(at);
            while let Some(event) = entry.transfer.poll_event() {
                if let crate::transfer::Event::Finished(r) = event {
                    report = Some(r);
                }
            }
        }
        match report {
            Some(report) => {
                let client = canonical(entry.raw_peer);
                let removed = self.table.remove(handle);
                self.served += 1;
                self.tallies.ended(&report);
                self.events.push_back(EndpointEvent::Ended {
                    handle,
                    report,
                    client,
                    applied: removed.map(|entry| entry.applied).unwrap_or_default(),
                });
            }
            None => {
                let due = entry.transfer.poll_timeout();
                if !entry.woken_by(due) {
                    self.table.schedule(handle, due);
                }
            }
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; other addresses unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A socket address with its IP made canonical (see [`canonical_ip`]).
pub fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(address.ip()), address.port())
}
