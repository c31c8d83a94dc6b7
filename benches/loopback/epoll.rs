//! The load generator's readiness wait: level-triggered epoll straight from `nix` (a
//! datagram left unread is reported again, so a lock-step transfer reads once per
//! readiness). The benchmark measures the server from outside and uses none of the
//! driver's internals, so it keeps this small helper of its own.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// An epoll set whose descriptors are reported readable, level-triggered.
#[derive(Debug)]
pub struct Readiness(Epoll);

impl Readiness {
    pub fn new() -> io::Result<Readiness> {
        Ok(Readiness(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?))
    }

    /// Reports `fd` with `token` whenever it has a datagram.
    pub fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, token);
        self.0.add(fd, event).map_err(io::Error::from)
    }

    /// Waits at most `timeout` (whole milliseconds, rounded up); an interrupted wait
    /// reports nothing ready.
    pub fn wait(&self, events: &mut [EpollEvent], timeout: Duration) -> io::Result<usize> {
        let millis = u16::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u16::MAX);
        match self.0.wait(events, EpollTimeout::from(millis)) {
            Err(nix::errno::Errno::EINTR) => Ok(0),
            other => other.map_err(io::Error::from),
        }
    }
}
