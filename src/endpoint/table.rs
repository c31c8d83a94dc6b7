//! The transfer table: every transfer in flight under a handle, which client port it
//! belongs to, how its datagrams are routed, what each client has in flight (verified or
//! not), and when each transfer must be woken.
//!
//! A handle is an index into the table and a generation: indices are reused once a
//! transfer has ended (as smoltcp's socket handles are), handles never, so a handle kept
//! past its transfer's end (a stale wake-up, a socket event already read) finds nothing.
//! The endpoint tells the driver when a transfer ends, so the driver can drop whatever it
//! keyed by its handle. The wake-up schedule is an ordered set with one entry per
//! transfer at most, removed with its transfer: ended transfers leave nothing behind in
//! it. Unverified transfers are also kept in the order they began, overall and per
//! client, so the oldest can make room for a new request.

use std::collections::{BTreeSet, HashMap, hash_map};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{Applied, LocalEnd};
use crate::store::UploadPermit;
use crate::transfer::Transfer;

/// A transfer's place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferHandle {
    generation: u64,
    index: usize,
}

impl TransferHandle {
    /// The index in the table: small, dense and reused, for the driver to key what it
    /// holds per transfer (an epoll token, a socket).
    pub fn index(self) -> usize {
        self.index
    }
}

#[cfg(test)]
impl TransferHandle {
    /// A handle no table gave out, for the tests of what carries handles.
    pub(crate) fn detached(index: usize) -> TransferHandle {
        TransferHandle {
            generation: 0,
            index,
        }
    }
}

/// Where a transfer's datagrams come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Its own socket (its TID), opened by the driver when the transfer began.
    Own,
    /// The listening socket the request came in on (single-port mode): datagrams from
    /// the client's address and port are routed to it.
    Listener {
        /// The listening socket, as the driver numbered it.
        listener: usize,
        /// The address the request was sent to, to answer from.
        local: Option<LocalEnd>,
    },
}

/// One transfer and its bookkeeping.
#[derive(Debug)]
pub struct Entry {
    handle: TransferHandle,
    pub transfer: Box<Transfer>,
    /// A write's permit, handed on with the file when it is complete.
    pub permit: Option<UploadPermit>,
    pub route: Route,
    /// The listening socket the request came in on.
    listener: usize,
    /// The client as the socket saw it (a dual-stack socket's `::ffff:a.b.c.d`).
    pub raw_peer: SocketAddr,
    /// What the per-client limits count the client as (an IPv6 client by its prefix).
    key: IpAddr,
    /// A digest of the request that began the transfer, to tell its retransmission
    /// from a new request.
    pub request: u64,
    /// Counted as verified.
    verified: bool,
    /// Counted as an upload (a write, whose permit may be gone to the store already).
    upload: bool,
    /// When the request arrived.
    started: Instant,
    /// The instant of this transfer's entry in the schedule.
    scheduled: Option<Instant>,
    /// Waiting in the endpoint's queue of transfers to flush.
    pub queued: bool,
    /// What the policy made of the request, for the transfer's journal entry.
    pub applied: Box<Applied>,
}

impl Entry {
    /// True when the transfer's peer has just answered for the first time: the table has
    /// still to count it as verified ([`Table::note_verified`]).
    pub fn newly_verified(&self) -> bool {
        !self.verified && self.transfer.is_verified()
    }

    /// True when its entry in the schedule wakes the transfer by `due` already.
    pub fn woken_by(&self, due: Option<Instant>) -> bool {
        match (self.scheduled, due) {
            (Some(at), Some(due)) => at <= due,
            (_, None) => true,
            (None, Some(_)) => false,
        }
    }
}

/// A client port on a listening socket, as the table keys it: hashed in two writes
/// (SipHash pays per write, and `(usize, SocketAddr)` derives six; a lookup runs for
/// every request and every transfer's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerKey {
    listener: usize,
    peer: SocketAddr,
}

impl Hash for PeerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal keys write the same.
        match self.peer {
            SocketAddr::V4(v4) => state.write_u128(u128::from(v4.ip().to_bits())),
            SocketAddr::V6(v6) => {
                state.write_u128(v6.ip().to_bits());
                state.write_u64(u64::from(v6.flowinfo()) << 32 | u64::from(v6.scope_id()));
            }
        }
        state.write_u64((self.listener as u64) << 16 | u64::from(self.peer.port()));
    }
}

/// A client as the per-client limits count it, hashed in one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientKey(IpAddr);

impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(match self.0 {
            IpAddr::V4(v4) => u128::from(v4.to_bits()),
            IpAddr::V6(v6) => v6.to_bits(),
        });
    }
}

/// What one client has in flight.
#[derive(Debug, Default)]
struct ClientLoad {
    all: usize,
    /// Of `all`, the writes.
    uploads: usize,
    /// Its unverified transfers, oldest first.
    unverified: BTreeSet<TransferHandle>,
}

/// What a new transfer is, for [`Table::insert`].
#[derive(Debug)]
pub struct NewEntry {
    pub transfer: Box<Transfer>,
    pub permit: Option<UploadPermit>,
    pub route: Route,
    pub listener: usize,
    pub raw_peer: SocketAddr,
    pub key: IpAddr,
    pub request: u64,
    pub started: Instant,
    pub applied: Box<Applied>,
}

/// The transfers in flight.
#[derive(Debug, Default)]
pub struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// The latest transfer of each client port: (listener, client as the socket saw
    /// it) -> transfer. Single-port datagrams are routed by it; repeated requests found.
    by_peer: HashMap<PeerKey, TransferHandle>,
    clients: HashMap<ClientKey, ClientLoad>,
    /// Every unverified transfer, oldest first.
    unverified: BTreeSet<TransferHandle>,
    schedule: BTreeSet<(Instant, TransferHandle)>,
    len: usize,
    generations: u64,
}

impl Table {
    /// Transfers in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Transfers in flight whose peer has not answered yet.
    pub fn unverified_len(&self) -> usize {
        self.unverified.len()
    }

    /// Writes in flight for client `key`.
    pub fn uploads_of(&self, key: IpAddr) -> usize {
        self.clients
            .get(&ClientKey(key))
            .map_or(0, |load| load.uploads)
    }

    /// Transfers in flight for client `key`: all of them, and the unverified ones.
    pub fn load_of(&self, key: IpAddr) -> (usize, usize) {
        self.clients
            .get(&ClientKey(key))
            .map_or((0, 0), |load| (load.all, load.unverified.len()))
    }

    /// The oldest unverified transfer of client `key`, or of anyone, with the instant
    /// its request arrived.
    pub fn oldest_unverified(&self, key: Option<IpAddr>) -> Option<(TransferHandle, Instant)> {
        let handle = match key {
            Some(key) => self
                .clients
                .get(&ClientKey(key))?
                .unverified
                .first()
                .copied(),
            None => self.unverified.first().copied(),
        }?;
        Some((handle, self.get(handle)?.started))
    }

    /// The latest transfer begun by `peer` on `listener`.
    pub fn by_peer(&self, listener: usize, peer: SocketAddr) -> Option<TransferHandle> {
        self.by_peer.get(&PeerKey { listener, peer }).copied()
    }

    /// Adds a transfer, unverified; returns its handle.
    pub fn insert(&mut self, new: NewEntry) -> TransferHandle {
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        self.generations += 1;
        let handle = TransferHandle {
            generation: self.generations,
            index,
        };
        let peer = PeerKey {
            listener: new.listener,
            peer: new.raw_peer,
        };
        self.by_peer.insert(peer, handle);
        let upload = new.permit.is_some();
        let load = self.clients.entry(ClientKey(new.key)).or_default();
        load.all += 1;
        load.uploads += usize::from(upload);
        load.unverified.insert(handle);
        self.unverified.insert(handle);
        self.len += 1;
        self.entries[index] = Some(Entry {
            handle,
            transfer: new.transfer,
            permit: new.permit,
            route: new.route,
            listener: new.listener,
            raw_peer: new.raw_peer,
            key: new.key,
            request: new.request,
            verified: false,
            upload,
            started: new.started,
            scheduled: None,
            queued: false,
            applied: new.applied,
        });
        handle
    }

    pub fn get(&self, handle: TransferHandle) -> Option<&Entry> {
        self.entries
            .get(handle.index)
            .and_then(Option::as_ref)
            .filter(|entry| entry.handle == handle)
    }

    pub fn get_mut(&mut self, handle: TransferHandle) -> Option<&mut Entry> {
        self.entries
            .get_mut(handle.index)
            .and_then(Option::as_mut)
            .filter(|entry| entry.handle == handle)
    }

    /// Every handle in use.
    pub fn handles(&self) -> Vec<TransferHandle> {
        self.entries.iter().flatten().map(|e| e.handle).collect()
    }

    /// Counts the transfer as verified once its peer has answered.
    pub fn note_verified(&mut self, handle: TransferHandle) {
        let Some(entry) = self.get_mut(handle) else {
            return;
        };
        if entry.verified || !entry.transfer.is_verified() {
            return;
        }
        entry.verified = true;
        let key = entry.key;
        self.unverified.remove(&handle);
        if let Some(load) = self.clients.get_mut(&ClientKey(key)) {
            load.unverified.remove(&handle);
        }
    }

    /// Removes a transfer with its routes, its counts and its place in the schedule.
    pub fn remove(&mut self, handle: TransferHandle) -> Option<Entry> {
        self.get_mut(handle)?;
        let entry = self.entries.get_mut(handle.index)?.take()?;
        if let hash_map::Entry::Occupied(latest) = self.by_peer.entry(PeerKey {
            listener: entry.listener,
            peer: entry.raw_peer,
        }) && *latest.get() == handle
        {
            latest.remove();
        }
        self.unverified.remove(&handle);
        if let hash_map::Entry::Occupied(mut slot) = self.clients.entry(ClientKey(entry.key)) {
            let load = slot.get_mut();
            load.all -= 1;
            load.uploads -= usize::from(entry.upload);
            load.unverified.remove(&handle);
            if load.all == 0 {
                slot.remove();
            }
        }
        if let Some(at) = entry.scheduled {
            self.schedule.remove(&(at, handle));
        }
        self.free.push(handle.index);
        self.len -= 1;
        Some(entry)
    }

    /// Makes sure the transfer is woken by `due`: an entry that is due earlier stays
    /// (it finds the transfer not due yet and schedules it again), a later one moves.
    pub fn schedule(&mut self, handle: TransferHandle, due: Option<Instant>) {
        let Some(entry) = self.get_mut(handle) else {
            return;
        };
        let Some(due) = due else { return };
        if entry.scheduled.is_some_and(|at| at <= due) {
            return;
        }
        if let Some(at) = entry.scheduled.replace(due) {
            self.schedule.remove(&(at, handle));
        }
        self.schedule.insert((due, handle));
    }

    /// The earliest wake-up.
    pub fn next_wake(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// Takes the next transfer whose wake-up is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<TransferHandle> {
        let &(at, handle) = self.schedule.first()?;
        if at > now {
            return None;
        }
        self.schedule.pop_first();
        if let Some(entry) = self.get_mut(handle) {
            entry.scheduled = None;
        }
        Some(handle)
    }

    /// Entries in the schedule (one per transfer at most).
    #[cfg(test)]
    pub fn scheduled(&self) -> usize {
        self.schedule.len()
    }
}
