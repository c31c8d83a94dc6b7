//! The transfer table: every transfer in flight under a handle, how its datagrams are
//! routed, how many each client has, and when each must be woken.
//!
//! A handle is an index into the table and a generation: indices are reused once a
//! transfer has ended (as smoltcp's socket handles are), handles never, so a handle kept
//! past its transfer's end (a stale wake-up, a socket event already read) finds nothing.
//! The endpoint tells the driver when a transfer ends, so the driver can drop whatever it
//! keyed by its handle. The wake-up schedule is an ordered set with
//! one entry per transfer at most, removed with its transfer: ended transfers leave
//! nothing behind in it.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::LocalEnd;
use crate::store::UploadPermit;
use crate::transfer::Transfer;

/// A transfer's place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferHandle {
    index: usize,
    generation: u64,
}

impl TransferHandle {
    /// The index in the table: small, dense and reused, for the driver to key what it
    /// holds per transfer (an epoll token, a socket).
    pub fn index(self) -> usize {
        self.index
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
    pub transfer: Transfer,
    /// A write's permit, handed on with the file when it is complete.
    pub permit: Option<UploadPermit>,
    pub route: Route,
    /// The client as the socket saw it (a dual-stack socket's `::ffff:a.b.c.d`).
    pub raw_peer: SocketAddr,
    /// The client's canonical address, which per-client limits count.
    pub client: IpAddr,
    /// The instant of this transfer's entry in the schedule.
    scheduled: Option<Instant>,
    /// Waiting in the endpoint's queue of transfers to flush.
    pub queued: bool,
}

/// The transfers in flight.
#[derive(Debug, Default)]
pub struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Single-port routing: (listener, client as the socket saw it) -> transfer.
    routes: HashMap<(usize, SocketAddr), TransferHandle>,
    per_client: HashMap<IpAddr, usize>,
    schedule: BTreeSet<(Instant, TransferHandle)>,
    len: usize,
    generations: u64,
}

impl Table {
    /// Transfers in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Transfers in flight from `client` (a canonical address).
    pub fn count_from(&self, client: IpAddr) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    /// The transfer that single-port datagrams from `peer` on `listener` belong to.
    pub fn route(&self, listener: usize, peer: SocketAddr) -> Option<TransferHandle> {
        self.routes.get(&(listener, peer)).copied()
    }

    /// Adds a transfer; returns its handle.
    pub fn insert(
        &mut self,
        transfer: Transfer,
        permit: Option<UploadPermit>,
        route: Route,
        raw_peer: SocketAddr,
        client: IpAddr,
    ) -> TransferHandle {
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        self.generations += 1;
        let handle = TransferHandle {
            index,
            generation: self.generations,
        };
        if let Route::Listener { listener, .. } = route {
            self.routes.insert((listener, raw_peer), handle);
        }
        *self.per_client.entry(client).or_insert(0) += 1;
        self.len += 1;
        self.entries[index] = Some(Entry {
            handle,
            transfer,
            permit,
            route,
            raw_peer,
            client,
            scheduled: None,
            queued: false,
        });
        handle
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

    /// Removes a transfer with its route, its count and its place in the schedule.
    pub fn remove(&mut self, handle: TransferHandle) -> Option<Entry> {
        self.get_mut(handle)?;
        let entry = self.entries.get_mut(handle.index)?.take()?;
        if let Route::Listener { listener, .. } = entry.route {
            self.routes.remove(&(listener, entry.raw_peer));
        }
        if let Some(count) = self.per_client.get_mut(&entry.client) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&entry.client);
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
