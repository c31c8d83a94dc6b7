//! The daemon's exit statuses, from `sysexits.h`, in one place.
//!
//! `tftpd` exits 0 when it stops as asked (or a check passes), and otherwise with the status
//! of the [`DaemonError`](crate::daemon::DaemonError) that ended it
//! ([`DaemonError::exit_code`](crate::daemon::DaemonError::exit_code)). Every status a
//! caller may see is defined here, as ntpd-rs does, so that the daemon, its errors and
//! the tests agree on one number for each.

/// `EX_CONFIG` (78): the configuration cannot be used. A missing, unreadable or invalid
/// configuration file, a required preseed path that cannot be loaded, sockets passed by
/// systemd that are not UDP, and a `--reload` the daemon refused.
pub const EX_CONFIG: u8 = 78;

/// `EX_OSERR` (71): the operating system refused something the daemon needs: binding a
/// `listen` address, setting up signals, the event loop, signalling the daemon to reload.
pub const EX_OSERR: u8 = 71;

/// `EX_TEMPFAIL` (75): try again later. `--reload` got no answer from the daemon in time.
pub const EX_TEMPFAIL: u8 = 75;

/// `EX_UNAVAILABLE` (69): `tftpd ctl` found no daemon answering on the control socket.
pub const EX_UNAVAILABLE: u8 = 69;

/// `EX_IOERR` (74): `tftpd ctl` lost the connection, or cannot write its output.
pub const EX_IOERR: u8 = 74;

/// `EX_PROTOCOL` (76): `tftpd ctl` cannot read the daemon's answer.
pub const EX_PROTOCOL: u8 = 76;

/// `EX_NOPERM` (77): the daemon turned `tftpd ctl`'s caller away (not root).
pub const EX_NOPERM: u8 = 77;

/// 1: `tftpd sync --check` found a valid configuration without an `[origin]` table: there
/// is nothing to sync. `ExecCondition=` takes it as "skip the unit" (2 to 254 would too;
/// 255 would fail it), so tftpd-sync.service does nothing, and does not fail, until
/// `[origin]` is configured.
pub const EX_NO_ORIGIN: u8 = 1;
