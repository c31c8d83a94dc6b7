//! The transfers' own sockets (their TIDs): opened when the endpoint starts a transfer
//! with [`Route::Own`](crate::endpoint::Route::Own), on the address its request came to
//! and on a port of `port-range` when one is set; read one datagram at a time; closed
//! when the transfer ends.

use std::io;
use std::net::UdpSocket;
use std::time::Instant;

use super::{Server, TRANSFER_BASE, net, ports};
use crate::endpoint::{LocalEnd, TransferHandle};

/// A transfer's own socket.
#[derive(Debug)]
pub(super) struct TransferSocket {
    /// The transfer it belongs to.
    pub(super) handle: TransferHandle,
    pub(super) socket: UdpSocket,
    /// UDP generic segmentation offload works on it (until a send says otherwise: then
    /// this transfer's windows go datagram by datagram, and no other transfer's).
    pub(super) gso: bool,
    /// The port it holds of `port-range`, if it was bound in one.
    pub(super) port: Option<u16>,
}

impl Server {
    /// Gives a new transfer its socket on the address its request came to, or has the
    /// endpoint turn the request away.
    pub(super) fn open_transfer_socket(
        &mut self,
        handle: TransferHandle,
        listener: usize,
        local: Option<LocalEnd>,
        window_bytes: Option<usize>,
    ) {
        let token = TRANSFER_BASE + handle.index() as u64;
        let mut port = None;
        let mut exhausted = false;
        let opened = local
            .ok_or_else(|| io::Error::other("no destination address for the request"))
            .and_then(|local| match self.endpoint.settings().port_range {
                None => net::transfer_socket(local.ip, local.ifindex),
                Some(range) => {
                    let bind = |p| net::transfer_socket_on(local.ip, local.ifindex, p);
                    match self.ports.bind(range, bind) {
                        ports::Bound::Socket(socket, held) => {
                            port = Some(held);
                            Ok(socket)
                        }
                        ports::Bound::Failed(e) => Err(e),
                        ports::Bound::Exhausted => {
                            exhausted = true;
                            Err(io::Error::from(io::ErrorKind::AddrInUse))
                        }
                    }
                }
            })
            .and_then(|socket| {
                if let Some(bytes) = window_bytes {
                    // A whole window of DATA may arrive before the loop reads any.
                    net::reserve_receive_buffer(&socket, bytes, self.receive_buffer);
                }
                self.poller.add(&socket, token)?;
                Ok(socket)
            });
        match opened {
            Ok(socket) => {
                if self.sockets.len() <= handle.index() {
                    self.sockets.resize_with(handle.index() + 1, || None);
                }
                self.sockets[handle.index()] = Some(TransferSocket {
                    handle,
                    socket,
                    gso: true,
                    port,
                });
            }
            Err(_) if exhausted => {
                // Every port of the range is taken for now: a transient limit, so the
                // request is dropped unanswered and its retransmission tries again.
                log::debug!("no free port in port-range for a new transfer; request dropped");
                self.endpoint.withdraw(handle);
            }
            Err(e) => {
                if let Some(held) = port {
                    self.ports.release(held);
                }
                log::error!("cannot open a transfer socket: {e}");
                self.endpoint
                    .reject(handle, listener, local, &e.to_string());
            }
        }
    }

    /// Reads one datagram: level-triggered, the poller reports the socket again if more
    /// are waiting, and lock-step transfers never have more.
    pub(super) fn read_transfer_socket(&mut self, index: usize, now: Instant) {
        let Some(Some(TransferSocket { handle, socket, .. })) = self.sockets.get(index) else {
            return;
        };
        if let Ok((len, source)) = socket.recv_from(&mut self.buf) {
            let handle = *handle;
            self.endpoint
                .handle_transfer(now, handle, source, &self.buf[..len]);
            self.flush();
        }
    }

    /// Closes an ended transfer's own socket (it leaves the epoll set as it closes) and
    /// gives back its port of `port-range`.
    pub(super) fn close_transfer_socket(&mut self, handle: TransferHandle) {
        if let Some(slot) = self.sockets.get_mut(handle.index())
            && slot.as_ref().is_some_and(|s| s.handle == handle)
            && let Some(closed) = slot.take()
            && let Some(port) = closed.port
        {
            self.ports.release(port);
        }
    }
}
