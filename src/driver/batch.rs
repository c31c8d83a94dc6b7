//! Windows of DATA sent at once: datagrams of one transfer to one peer that are all the
//! same size but the last, laid end to end in the send buffer, handed to the kernel in
//! one `sendmsg` with UDP generic segmentation offload.

use std::net::{SocketAddr, UdpSocket};

use nix::libc;

use super::net;

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
