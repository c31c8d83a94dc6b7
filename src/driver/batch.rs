//! Windows of DATA sent at once: datagrams of one transfer to one peer that are all the
//! same size but the last, laid end to end in the send buffer, handed to the kernel in
//! one `sendmsg` with UDP generic segmentation offload; and the driver's `transmit`, which
//! takes them from the endpoint.

use std::net::{SocketAddr, UdpSocket};

use nix::libc;

use super::Server;
use super::net::{self, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::endpoint::Via;

/// Sends `data`, datagrams of `segment` bytes laid end to end (the last may be shorter),
/// to `peer` through `socket`: in one segmented send while `gso` (the socket's) holds,
/// which turns false when the kernel refuses it; else one by one.
pub(super) fn send(
    socket: &UdpSocket,
    data: &[u8],
    segment: usize,
    peer: SocketAddr,
    gso: &mut bool,
) {
    if data.len() > segment && *gso {
        match net::send_segments(socket, data, segment, peer) {
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
    for datagram in data.chunks(segment) {
        if let Err(e) = socket.send_to(datagram, peer) {
            // Lost like any datagram: the retransmission timer covers it.
            log::debug!("send to {peer}: {e}");
        }
    }
}

/// Sending what the endpoint writes, a window at a time.
impl Server {
    /// Sends every datagram the endpoint writes: a window of DATA of one transfer comes
    /// as one run of equal segments and leaves in one `sendmsg` with UDP generic
    /// segmentation offload while the transfer's socket takes it; anything else goes
    /// datagram by datagram.
    pub(super) fn transmit(&mut self) {
        while let Some(out) =
            self.endpoint
                .poll_transmit_segments(&mut self.buf, GSO_MAX_SEGMENTS, GSO_MAX_BYTES)
        {
            let t = out.transmit;
            let data = &self.buf[..t.len];
            match out.via {
                Via::Transfer(handle) => {
                    if let Some(Some(own)) = self.sockets.get_mut(handle.index()) {
                        send(&own.socket, data, out.segment, t.destination, &mut own.gso);
                    }
                }
                Via::Listener { listener, local } => {
                    if let Some(l) = self.listeners.get(listener) {
                        let from = if l.wildcard { local } else { None };
                        for datagram in data.chunks(out.segment) {
                            if let Err(e) = net::send_from(&l.socket, datagram, t.destination, from)
                            {
                                // Lost like any datagram: the retransmission timer covers it.
                                log::debug!("send to {}: {e}", t.destination);
                            }
                        }
                    }
                }
            }
        }
    }
}
