//! The systemd edge: adopting the sockets of `tftpd.socket` (`LISTEN_FDS`), notifying
//! the service manager (`READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1`, the watchdog).
//! (Logging, to the journal or stderr, is in [`crate::logs`].)
//!
//! This is the one module allowed `unsafe`: taking ownership of an inherited file
//! descriptor.

use std::fmt;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};
use nix::sys::stat::{SFlag, fstat};
use sd_notify::NotifyState;

/// Why an inherited descriptor cannot be served.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_PID`/`LISTEN_FDS` could not be read.
    Environment(std::io::Error),
    /// The descriptor is not a socket at all.
    NotASocket {
        /// The descriptor.
        fd: RawFd,
        /// What it is instead.
        kind: &'static str,
    },
    /// A socket, but not a UDP socket of family inet or inet6.
    WrongSocket {
        /// The descriptor.
        fd: RawFd,
        /// What kind of socket it is.
        kind: String,
    },
    /// The descriptor could not be inspected.
    Inspect {
        /// The descriptor.
        fd: RawFd,
        /// The error.
        error: nix::Error,
    },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "tftpd.socket must use ListenDatagram=";
        match self {
            ActivationError::Environment(e) => write!(f, "LISTEN_FDS/LISTEN_PID: {e}"),
            ActivationError::NotASocket { fd, kind } => {
                write!(
                    f,
                    "fd {fd} passed by systemd is {kind}, not a UDP socket ({HINT})"
                )
            }
            ActivationError::WrongSocket { fd, kind } => {
                write!(
                    f,
                    "fd {fd} passed by systemd is {kind}, not a UDP socket ({HINT})"
                )
            }
            ActivationError::Inspect { fd, error } => {
                write!(f, "fd {fd} passed by systemd cannot be inspected: {error}")
            }
        }
    }
}

impl std::error::Error for ActivationError {}

/// The UDP sockets systemd passed (`LISTEN_FDS`, for this process per `LISTEN_PID`);
/// empty when there are none, which means standalone mode. Each descriptor is checked
/// (a socket, datagram, inet or inet6) as `sd_listen_fds(3)` recommends; anything else
/// is refused.
pub fn adopt_listen_fds() -> Result<Vec<UdpSocket>, ActivationError> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(ActivationError::Environment)?
        .collect();
    let mut sockets = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: systemd passed `fd` to this process (LISTEN_PID matched) and nothing
        // else in the process owns it; it is taken once, here.
        #[allow(unsafe_code)]
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        check_udp_socket(fd, owned.as_fd())?;
        sockets.push(UdpSocket::from(owned));
    }
    Ok(sockets)
}

/// Checks that `fd` is a UDP socket of family inet or inet6 (`raw` names it in errors).
pub fn check_udp_socket(raw: RawFd, fd: BorrowedFd<'_>) -> Result<(), ActivationError> {
    let stat = fstat(fd).map_err(|error| ActivationError::Inspect { fd: raw, error })?;
    let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if format != SFlag::S_IFSOCK {
        let kind = match format {
            SFlag::S_IFREG => "a regular file",
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFIFO => "a pipe",
            SFlag::S_IFCHR => "a character device",
            _ => "not a socket",
        };
        return Err(ActivationError::NotASocket { fd: raw, kind });
    }
    let inspect = |error| ActivationError::Inspect { fd: raw, error };
    let socket_type = getsockopt(&fd, sockopt::SockType).map_err(inspect)?;
    let address: SockaddrStorage =
        getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).map_err(inspect)?;
    let family = address.family();
    let type_name = match socket_type {
        SockType::Datagram => "datagram",
        SockType::Stream => "stream",
        SockType::SeqPacket => "seqpacket",
        _ => "other",
    };
    let family_name = match family {
        Some(AddressFamily::Inet) => "IPv4",
        Some(AddressFamily::Inet6) => "IPv6",
        Some(AddressFamily::Unix) => "Unix",
        _ => "non-IP",
    };
    let inet = matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6));
    if socket_type != SockType::Datagram || !inet {
        let kind = match (family_name, socket_type) {
            ("IPv4" | "IPv6", SockType::Stream) => format!("a TCP ({family_name} stream) socket"),
            _ => format!("a {family_name} {type_name} socket"),
        };
        return Err(ActivationError::WrongSocket { fd: raw, kind });
    }
    Ok(())
}

/// Sends notifications to the service manager; every call is a cheap no-op when
/// `NOTIFY_SOCKET` is not set. Failures are logged at debug level, never fatal.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for this process's environment.
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// `READY=1`.
    pub fn ready(&self) {
        send(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (which systemd 253+ requires with it).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }

    /// `STATUS=` with one line of text.
    pub fn status(&self, line: &str) {
        send(&[NotifyState::Status(line)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// Half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    fn check(fd: &impl AsFd) -> Result<(), ActivationError> {
        let borrowed = fd.as_fd();
        check_udp_socket(borrowed.as_raw_fd(), borrowed)
    }

    #[test]
    fn udp_sockets_of_both_families_are_accepted() {
        check(&UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        if let Ok(v6) = UdpSocket::bind("[::1]:0") {
            check(&v6).unwrap();
        }
    }

    #[test]
    fn tcp_unix_pipes_and_files_are_refused_with_what_they_are() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let error = check(&tcp).unwrap_err().to_string();
        assert!(error.contains("TCP"), "{error}");
        let (unix, _) = UnixDatagram::pair().unwrap();
        let error = check(&unix).unwrap_err().to_string();
        assert!(error.contains("Unix datagram"), "{error}");
        let (read, _write) = nix::unistd::pipe().unwrap();
        let error = check(&read).unwrap_err().to_string();
        assert!(error.contains("a pipe"), "{error}");
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let error = check(&file).unwrap_err().to_string();
        assert!(error.contains("regular file"), "{error}");
    }
}
