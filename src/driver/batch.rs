//! Windows of DATA sent at once: consecutive datagrams of one transfer to one peer that
//! are all the same size but the last, laid end to end in the send buffer and handed to
//! the kernel in one `sendmsg` with UDP generic segmentation offload.

use std::net::{SocketAddr, UdpSocket};

use nix::libc;

use super::Server;
use super::net::{self, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::endpoint::{TransferHandle, Via};
use crate::proto::MAX_DATAGRAM;

/// The datagrams gathered so far at the start of the send buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batch {
    pub handle: TransferHandle,
    pub peer: SocketAddr,
    /// Bytes gathered.
    pub len: usize,
    /// The size of every datagram but possibly the last.
    segment: usize,
    count: usize,
    /// A datagram of `segment` bytes may still join (none shorter has).
    open: bool,
}

impl Batch {
    /// A batch of one datagram of `len` bytes.
    pub fn new(handle: TransferHandle, peer: SocketAddr, len: usize) -> Batch {
        Batch {
            handle,
            peer,
            len,
            segment: len,
            count: 1,
            open: true,
        }
    }

    /// Takes the next datagram, just written after the batch, if it may join: same
    /// transfer and peer, no longer than the others, within the kernel's limits.
    pub fn join(&mut self, handle: TransferHandle, peer: SocketAddr, len: usize) -> bool {
        let joins = self.open
            && self.handle == handle
            && self.peer == peer
            && len <= self.segment
            && self.len + len <= GSO_MAX_BYTES
            && self.count < GSO_MAX_SEGMENTS;
        if joins {
            self.len += len;
            self.count += 1;
            // A shorter datagram ends a batch: only the last segment may be short.
            self.open = len == self.segment;
        }
        joins
    }

    /// Sends the batch (`data`, its bytes) through `socket`: in one segmented send while
    /// `gso` (the socket's) holds, which turns false when the kernel refuses it; else one
    /// by one.
    pub fn send(&self, socket: &UdpSocket, data: &[u8], gso: &mut bool) {
        let peer = self.peer;
        if self.count > 1 && *gso {
            match net::send_segments(socket, data, self.segment, peer) {
                Ok(()) => return,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) =>
                {
                    log::debug!(
                        "UDP segmentation offload refused ({e}); this transfer sends its \
                         datagrams one by one"
                    );
                    *gso = false;
                }
                Err(e) => {
                    log::debug!("send to {peer}: {e}");
                    return;
                }
            }
        }
        for datagram in data.chunks(self.segment) {
            if let Err(e) = socket.send_to(datagram, peer) {
                // Lost like any datagram: the retransmission timer covers it.
                log::debug!("send to {peer}: {e}");
            }
        }
    }
}

/// Sending what the endpoint writes, a window at a time.
impl Server {
    /// Sends every datagram the endpoint writes. Consecutive datagrams of one transfer to
    /// one destination that are all the same size but the last (a window of DATA) go out
    /// in one `sendmsg` with UDP generic segmentation offload, while the transfer's socket
    /// takes it; otherwise each goes on its own.
    pub(super) fn transmit(&mut self) {
        let mut batch: Option<Batch> = None;
        loop {
            // Room for a whole datagram after the batch, or the batch goes first.
            if batch.is_some_and(|b| self.buf.len() - b.len < MAX_DATAGRAM) {
                self.send_batch(batch.take());
            }
            let offset = batch.map_or(0, |b| b.len);
            let Some(out) = self.endpoint.poll_transmit(&mut self.buf[offset..]) else {
                break;
            };
            let t = out.transmit;
            match out.via {
                Via::Transfer(handle) => {
                    let gso = (self.sockets.get(handle.index()))
                        .is_some_and(|s| s.as_ref().is_some_and(|s| s.gso));
                    if let Some(b) = &mut batch
                        && gso
                        && b.join(handle, t.destination, t.len)
                    {
                        continue;
                    }
                    if offset > 0 {
                        self.send_batch(batch.take());
                        self.buf.copy_within(offset..offset + t.len, 0);
                    }
                    batch = Some(Batch::new(handle, t.destination, t.len));
                }
                Via::Listener { listener, local } => {
                    if let Some(l) = self.listeners.get(listener) {
                        let from = if l.wildcard { local } else { None };
                        let datagram = &self.buf[offset..offset + t.len];
                        if let Err(e) = net::send_from(&l.socket, datagram, t.destination, from) {
                            // Lost like any datagram: the retransmission timer covers it.
                            log::debug!("send to {}: {e}", t.destination);
                        }
                    }
                }
            }
        }
        self.send_batch(batch);
    }

    fn send_batch(&mut self, batch: Option<Batch>) {
        if let Some(batch) = batch
            && let Some(Some(own)) = self.sockets.get_mut(batch.handle.index())
        {
            batch.send(&own.socket, &self.buf[..batch.len], &mut own.gso);
        }
    }
}
