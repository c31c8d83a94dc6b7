//! The ports of per-transfer sockets under `port-range`: each new socket is bound to a
//! port drawn at random from the range (keyed SipHash of a counter, with the keys the
//! standard library draws from the OS: no sequence an off-path attacker can predict),
//! never to one this server's transfers hold, and to another when the bind finds a port
//! someone else holds, a bounded number of times. When every port is taken the range is
//! exhausted for now: the caller drops the request as it drops any that meets a transient
//! limit, and the client's retransmission gets a port once one frees.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::UdpSocket;

use crate::endpoint::PortRange;

/// Binds after a port found taken by someone else before the range counts as exhausted.
const BIND_ATTEMPTS: usize = 32;

/// What became of a bind in the range.
#[derive(Debug)]
pub enum Bound {
    /// A socket on the port.
    Socket(UdpSocket, u16),
    /// No port of the range is free now.
    Exhausted,
    /// The bind failed for another reason than a port in use.
    Failed(io::Error),
}

/// The ports this server's transfer sockets hold, and the draw.
#[derive(Debug)]
pub struct Ports {
    held: HashSet<u16>,
    keys: RandomState,
    draws: u64,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            held: HashSet::new(),
            keys: RandomState::new(),
            draws: 0,
        }
    }
}

impl Ports {
    /// A port of `range` at random that this server does not hold (and is not in
    /// `tried`), or `None` when there is none.
    fn draw(&mut self, range: PortRange, tried: &HashSet<u16>) -> Option<u16> {
        self.draws = self.draws.wrapping_add(1);
        let random = self.keys.hash_one(self.draws);
        let len = range.len();
        let start = (random % len as u64) as usize;
        // From the random start, the first port free: a linear walk only as far as the
        // ports held around it, and bounded by the range.
        (0..len)
            .map(|step| range.first as usize + (start + step) % len)
            .filter_map(|port| u16::try_from(port).ok())
            .find(|port| !self.held.contains(port) && !tried.contains(port))
    }

    /// Binds a socket with `bind` on a port of `range`, and holds the port until
    /// [`release`](Self::release).
    pub fn bind(
        &mut self,
        range: PortRange,
        mut bind: impl FnMut(u16) -> io::Result<UdpSocket>,
    ) -> Bound {
        let mut tried = HashSet::new();
        for _ in 0..BIND_ATTEMPTS.min(range.len()) {
            let Some(port) = self.draw(range, &tried) else {
                return Bound::Exhausted;
            };
            match bind(port) {
                Ok(socket) => {
                    self.held.insert(port);
                    return Bound::Socket(socket, port);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tried.insert(port);
                }
                Err(e) => return Bound::Failed(e),
            }
        }
        Bound::Exhausted
    }

    /// The socket on `port` is closed.
    pub fn release(&mut self, port: u16) {
        self.held.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_local(port: u16) -> io::Result<UdpSocket> {
        UdpSocket::bind(("127.0.0.1", port))
    }

    /// A free range of `len` ports on 127.0.0.1 from `from` on, below the kernel's
    /// ephemeral ports (so no other test is handed one), found by trying (bounded).
    fn free_range(from: u16, len: u16) -> PortRange {
        for first in (from..32_000).step_by(usize::from(len) + 1) {
            let range = PortRange {
                first,
                last: first + len - 1,
            };
            let probe: Vec<_> = (range.first..=range.last).map(bind_local).collect();
            if probe.iter().all(Result::is_ok) {
                return range;
            }
        }
        panic!("no free range of {len} ports on 127.0.0.1");
    }

    #[test]
    fn ports_come_from_the_range_unordered_and_never_twice_while_held() {
        let range = free_range(21_000, 64);
        let mut ports = Ports::default();
        let mut sockets = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..64 {
            match ports.bind(range, bind_local) {
                Bound::Socket(socket, port) => {
                    assert!(range.contains(port));
                    assert_eq!(socket.local_addr().unwrap().port(), port);
                    assert!(!seen.contains(&port));
                    seen.push(port);
                    sockets.push(socket);
                }
                other => panic!("{other:?}"),
            }
        }
        // Not the sequence first, first + 1, ...
        let ascending = seen.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(ascending < 32, "{seen:?}");
        assert!(matches!(ports.bind(range, bind_local), Bound::Exhausted));
        ports.release(seen[10]);
        drop(sockets.swap_remove(10));
        match ports.bind(range, bind_local) {
            Bound::Socket(_, port) => assert_eq!(port, seen[10]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_port_someone_else_holds_is_passed_over() {
        let range = free_range(25_000, 4);
        let others: Vec<_> = (range.first..range.last)
            .map(|p| bind_local(p).unwrap())
            .collect();
        let mut ports = Ports::default();
        match ports.bind(range, bind_local) {
            Bound::Socket(_, port) => assert_eq!(port, range.last),
            other => panic!("{other:?}"),
        }
        assert!(matches!(ports.bind(range, bind_local), Bound::Exhausted));
        drop(others);
    }
}
