//! Socket plumbing for the driver: binding listeners, learning which local address a
//! request was sent to (IP_PKTINFO / IPV6_RECVPKTINFO), answering from that address,
//! and opening the per-transfer socket (the new TID) on it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::endpoint::{LocalEnd, canonical_ip};

/// One datagram read from a listening socket.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    /// The sender, as the socket reports it (IPv4 peers of a dual-stack socket appear
    /// as `::ffff:a.b.c.d`); reply to this address through the same socket.
    pub peer: SocketAddr,
    /// The local address the datagram was sent to, when the kernel said.
    pub local: Option<LocalEnd>,
}

/// Binds a UDP listening socket for standalone mode; `[::]` accepts IPv4 too.
pub fn bind_listener(address: SocketAddr, receive_buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(!address.ip().is_unspecified())?;
    }
    socket.set_recv_buffer_size(receive_buffer)?;
    socket.bind(&address.into())?;
    Ok(socket.into())
}

/// Makes a listening socket (bound here or adopted from systemd) ready for the driver:
/// non-blocking, a larger receive buffer for request bursts, and destination addresses
/// reported with each datagram.
pub fn prepare_listener(socket: &UdpSocket, receive_buffer: usize) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket2 = socket2::SockRef::from(socket);
    if socket2.recv_buffer_size()? < receive_buffer {
        // Best effort: the kernel caps this at net.core.rmem_max for unprivileged users.
        let _ = socket2.set_recv_buffer_size(receive_buffer);
    }
    match socket.local_addr()? {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?,
        SocketAddr::V6(_) => {
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            // IPv4 datagrams on a dual-stack socket carry IP_PKTINFO instead.
            let _ = setsockopt(socket, sockopt::Ipv4PacketInfo, &true);
        }
    }
    Ok(())
}

/// Reads one datagram with its destination address; `WouldBlock` when none is queued.
pub fn recv_with_destination(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo);
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::empty(),
    )?;
    let peer = message
        .address
        .as_ref()
        .and_then(storage_to_std)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut local = None;
    if let Ok(cmsgs) = message.cmsgs() {
        for cmsg in cmsgs {
            match cmsg {
                ControlMessageOwned::Ipv4PacketInfo(info) => {
                    // The local address the datagram came to (ip(7)): for a broadcast
                    // request that is the interface's address, where `ipi_addr` would be
                    // the broadcast address itself.
                    let ip = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                    local = Some(LocalEnd {
                        ip: IpAddr::V4(ip),
                        ifindex: u32::try_from(info.ipi_ifindex).unwrap_or(0),
                        mtu: None,
                    });
                }
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    local = Some(LocalEnd {
                        ip: IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
                        ifindex: info.ipi6_ifindex,
                        mtu: None,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(Received {
        len: message.bytes,
        peer,
        local,
    })
}

/// Sends `datagram` to `peer` through `socket`, from the local address `from` when the
/// socket is bound to a wildcard address.
pub fn send_from(
    socket: &UdpSocket,
    datagram: &[u8],
    peer: SocketAddr,
    from: Option<LocalEnd>,
) -> io::Result<()> {
    let v4_info;
    let v6_info;
    let control: Vec<ControlMessage<'_>> = match (from, peer) {
        (
            Some(LocalEnd {
                ip: IpAddr::V4(ip), ..
            }),
            _,
        ) => {
            v4_info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            vec![ControlMessage::Ipv4PacketInfo(&v4_info)]
        }
        (
            Some(LocalEnd {
                ip: IpAddr::V6(ip),
                ifindex,
                ..
            }),
            SocketAddr::V6(_),
        ) => {
            v6_info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            vec![ControlMessage::Ipv6PacketInfo(&v6_info)]
        }
        _ => Vec::new(),
    };
    send_message(socket, datagram, &control, peer)
}

/// The most bytes one generic-segmentation send may carry (a UDP datagram's limit).
pub const GSO_MAX_BYTES: usize = 65_000;
/// The most segments one generic-segmentation send may carry.
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Sends the datagrams laid end to end in `data`, `segment` bytes each (the last may be
/// shorter), to `peer` with one `sendmsg` and UDP generic segmentation offload.
pub fn send_segments(
    socket: &UdpSocket,
    data: &[u8],
    segment: usize,
    peer: SocketAddr,
) -> io::Result<()> {
    let size = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    send_message(socket, data, &[ControlMessage::UdpGsoSegments(&size)], peer)
}

/// One non-blocking `sendmsg` of `data` to `peer` with `control` messages.
fn send_message(
    socket: &UdpSocket,
    data: &[u8],
    control: &[ControlMessage<'_>],
    peer: SocketAddr,
) -> io::Result<()> {
    let iov = [io::IoSlice::new(data)];
    let destination = SockaddrStorage::from(peer);
    sendmsg(
        socket.as_raw_fd(),
        &iov,
        control,
        MsgFlags::MSG_DONTWAIT,
        Some(&destination),
    )?;
    Ok(())
}

/// The address to bind on `local` (made canonical, with its interface when it is an
/// IPv6 link-local address) at `port`.
fn local_address(local: IpAddr, ifindex: u32, port: u16) -> SocketAddr {
    match canonical_ip(local) {
        IpAddr::V6(ip) if is_link_local(ip) => {
            SocketAddr::V6(SocketAddrV6::new(ip, port, 0, ifindex))
        }
        ip => SocketAddr::new(ip, port),
    }
}

/// The MTU of the link to `peer` from the local end a request came to: the kernel's
/// route MTU for a socket on that address connected to the peer (IP_MTU, IPV6_MTU),
/// which is the interface's MTU, or the path MTU when the kernel has learned a smaller
/// one. The probe socket is closed at once; no datagram is sent.
pub fn link_mtu(local: LocalEnd, peer: SocketAddr) -> io::Result<u32> {
    let from = local_address(local.ip, local.ifindex, 0);
    let mut to = crate::endpoint::canonical(peer);
    if let (SocketAddr::V6(to6), SocketAddr::V6(from6)) = (&mut to, from)
        && is_link_local(*to6.ip())
    {
        to6.set_scope_id(from6.scope_id());
    }
    let socket = Socket::new(Domain::for_address(from), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&from.into())?;
    socket.connect(&to.into())?;
    let mtu = match to {
        SocketAddr::V4(_) => rustix::net::sockopt::ip_mtu(&socket)?,
        SocketAddr::V6(_) => rustix::net::sockopt::ipv6_mtu(&socket)?,
    };
    Ok(mtu)
}

/// Opens the socket of a new transfer (its TID) on the local address the request came
/// to, so that replies leave from the address the client talked to; on `port`, or on one
/// the kernel picks when it is 0.
pub fn transfer_socket(local: IpAddr, ifindex: u32) -> io::Result<UdpSocket> {
    transfer_socket_on(local, ifindex, 0)
}

/// [`transfer_socket`] on `port` (0: the kernel picks).
pub fn transfer_socket_on(local: IpAddr, ifindex: u32, port: u16) -> io::Result<UdpSocket> {
    let address = local_address(local, ifindex, port);
    // Non-blocking from the start: one system call fewer per transfer.
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    socket.bind(&address.into())?;
    Ok(socket.into())
}

/// Raises a transfer socket's SO_RCVBUF to hold `bytes` of datagrams (with the kernel's
/// per-datagram overhead), up to `cap`; best effort, the default is kept on failure.
pub fn reserve_receive_buffer(socket: &UdpSocket, bytes: usize, cap: usize) {
    // The kernel charges each datagram's whole buffer against SO_RCVBUF: for large
    // datagrams up to about twice the payload, hence the factor 2.
    let wanted = bytes.saturating_mul(2).min(cap);
    let socket = socket2::SockRef::from(socket);
    if socket
        .recv_buffer_size()
        .is_ok_and(|current| current < wanted)
    {
        let _ = socket.set_recv_buffer_size(wanted);
    }
}

fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

fn storage_to_std(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::canonical;

    fn blocking_for_test(socket: &UdpSocket) {
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
    }

    #[test]
    fn a_wildcard_listener_reports_the_destination_address_and_answers_from_it() {
        let listener = bind_listener("0.0.0.0:0".parse().unwrap(), 1 << 20).unwrap();
        prepare_listener(&listener, 1 << 20).unwrap();
        blocking_for_test(&listener);
        let port = listener.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let received = recv_with_destination(&listener, &mut buf).expect("a datagram");
        assert_eq!(&buf[..received.len], b"hello");
        assert_eq!(received.peer, client.local_addr().unwrap());
        let local = received.local.expect("pktinfo");
        assert_eq!(local.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        send_from(&listener, b"back", received.peer, Some(local)).unwrap();
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"back");
        assert_eq!(from, SocketAddr::new(local.ip, port));
    }

    #[test]
    fn a_broadcast_request_reports_the_interface_address_to_answer_from() {
        let listener = bind_listener("0.0.0.0:0".parse().unwrap(), 1 << 20).unwrap();
        prepare_listener(&listener, 1 << 20).unwrap();
        blocking_for_test(&listener);
        let port = listener.local_addr().unwrap().port();
        let client = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        client.set_broadcast(true).unwrap();
        let broadcast = SocketAddr::from(([127, 255, 255, 255], port));
        if let Err(e) = client.send_to(b"hello", &broadcast.into()) {
            eprintln!("skipped: no broadcast on loopback here ({e})");
            return;
        }
        let mut buf = [0u8; 64];
        let received = recv_with_destination(&listener, &mut buf).expect("a datagram");
        let local = received.local.expect("pktinfo");
        assert_eq!(local.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        // And a transfer socket can be opened there.
        transfer_socket(local.ip, local.ifindex).expect("bound to the interface address");
    }

    #[test]
    fn the_link_mtu_of_loopback_is_the_kernels() {
        let local = LocalEnd {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ifindex: 0,
            mtu: None,
        };
        let peer = SocketAddr::from(([127, 0, 0, 2], 4000));
        let lo_mtu: u32 = std::fs::read_to_string("/sys/class/net/lo/mtu")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(65536)
            // The route MTU is capped at IP's largest packet.
            .min(65535);
        assert_eq!(link_mtu(local, peer).unwrap(), lo_mtu);
        // A dual-stack listener's view of an IPv4 client: the same link.
        let mapped = SocketAddr::new("::ffff:127.0.0.2".parse().unwrap(), 4000);
        assert_eq!(link_mtu(local, mapped).unwrap(), lo_mtu);
    }

    #[test]
    fn segments_sent_at_once_arrive_as_separate_datagrams() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut data = vec![1u8; 100];
        data.extend_from_slice(&[2u8; 100]);
        data.extend_from_slice(&[3u8; 40]);
        if let Err(e) = send_segments(&sender, &data, 100, receiver.local_addr().unwrap()) {
            eprintln!("skipped: no UDP GSO here ({e})");
            return;
        }
        let mut buf = [0u8; 512];
        for (len, byte) in [(100, 1), (100, 2), (40, 3)] {
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(n, len);
            assert!(buf[..n].iter().all(|&b| b == byte));
        }
    }

    #[test]
    fn a_dual_stack_listener_sees_ipv4_clients_as_mapped_addresses() {
        let Ok(listener) = bind_listener("[::]:0".parse().unwrap(), 1 << 20) else {
            eprintln!("skipped: no IPv6 on this machine");
            return;
        };
        prepare_listener(&listener, 1 << 20).unwrap();
        blocking_for_test(&listener);
        let port = listener.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"v4", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let received = recv_with_destination(&listener, &mut buf).expect("a datagram");
        assert_eq!(canonical(received.peer), client.local_addr().unwrap());
        let local = received.local.expect("pktinfo");
        assert_eq!(canonical_ip(local.ip), IpAddr::V4(Ipv4Addr::LOCALHOST));
        // The transfer socket for this client is a plain IPv4 socket on 127.0.0.1.
        let tid = transfer_socket(local.ip, local.ifindex).unwrap();
        assert_eq!(
            tid.local_addr().unwrap().ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        send_from(&listener, b"back", received.peer, Some(local)).unwrap();
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"back");
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)));
    }
}
