//! The readiness loop under the driver: level-triggered epoll (a datagram left unread is
//! reported again, so one read per readiness is enough and no read is spent learning that
//! a socket is empty), and an eventfd to wake it from other threads.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// What the loop waits on; each registered descriptor carries a `u64` token.
#[derive(Debug)]
pub struct Poller {
    epoll: Epoll,
}

impl Poller {
    /// An empty epoll set.
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    /// Watches `fd` for readability, level-triggered.
    pub fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        Ok(self
            .epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))?)
    }

    /// Watches `fd` for readability and/or writability (or only for hang-ups and errors,
    /// which epoll always reports), level-triggered.
    pub fn add_for(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        Ok(self
            .epoll
            .add(fd, EpollEvent::new(interest.flags(), token))?)
    }

    /// Changes what `fd`, already watched under `token`, is watched for.
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut event = EpollEvent::new(interest.flags(), token);
        Ok(self.epoll.modify(fd, &mut event)?)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Waits for readiness for at most `timeout` (rounded up to a millisecond, so the
    /// loop never spins before a timer), or for ever; returns how many `events` are set.
    pub fn wait(&self, events: &mut [EpollEvent], timeout: Option<Duration>) -> io::Result<usize> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                let millis = t.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(millis).unwrap_or(EpollTimeout::MAX)
            }
        };
        match self.epoll.wait(events, timeout) {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a stream socket is watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Data to read.
    Read,
    /// Room to write.
    Write,
    /// Neither: only hang-ups and errors.
    Hangup,
}

impl Interest {
    fn flags(self) -> EpollFlags {
        match self {
            Interest::Read => EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
            Interest::Write => EpollFlags::EPOLLOUT,
            Interest::Hangup => EpollFlags::EPOLLRDHUP,
        }
    }
}

/// Wakes a [`Poller`] from another thread.
#[derive(Debug)]
pub struct Waker {
    event: EventFd,
}

impl Waker {
    /// A waker registered with `poller` under `token`.
    pub fn new(poller: &Poller, token: u64) -> io::Result<Waker> {
        let event = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        poller.add(&event, token)?;
        Ok(Waker { event })
    }

    /// Makes the poller return.
    pub fn wake(&self) -> io::Result<()> {
        self.event.write(1)?;
        Ok(())
    }

    /// Clears the wake-up, once it has been seen.
    pub fn reset(&self) {
        let _ = self.event.read();
    }
}
