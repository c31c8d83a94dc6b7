//! memtftpd: an in-memory TFTP server for Linux, run by systemd.
//!
//! # Layout
//!
//! The crate is a sans-IO core with thin I/O at the edges. From the bottom up:
//!
//! - [`proto`]: the wire format. Typed packets that borrow from the datagram; parsing
//!   untrusted bytes never panics.
//! - [`transfer`]: one [`Transfer`](transfer::Transfer) type for every transfer, server
//!   side (read, write) and client side (download, upload, used by the tests and the
//!   benchmark): a state machine that takes `now` as an argument and says what to send
//!   and when to wake. No socket, no clock.
//! - [`name`]: the name rules. [`name::normalize_name`] turns a raw name into a
//!   [`name::FileName`], or a [`name::NameError`] with the TFTP error code it gets.
//! - [`store`]: the in-memory files. The map with its shared lookups ([`store::StoredFile`]:
//!   the `Bytes` and their netascii length, computed once), swaps and generation
//!   (`store/mod.rs`) and what a swap changed (`changes.rs`); the upload policy, permits
//!   and refusals (`upload.rs`); the incremental preseed loader (`preseed.rs`, its read
//!   threads and memory of the disk in `read.rs`) and its report (`report.rs`); the durable
//!   upload spool (`spool.rs`).
//! - [`config`]: `/etc/tftpd.toml` read into a validated [`config::Config`] that hands out
//!   the transfer, preseed and upload types the rest of the crate takes: public types and
//!   defaults (`config/mod.rs`), raw structs and cross-field checks (`raw.rs`), the policy
//!   keys and `[[client]]` tables (`policy.rs`),
//!   self-validating values (`value.rs`), errors that name file, line, column and key
//!   (`error.rs`).
//! - [`endpoint`]: the server without sockets. The transfer table and its handles,
//!   single-port routes, per-client accounting, admission, the per-client policy
//!   (`policy.rs`: `[[client]]` tables, rewrites, views, option and MTU limits), the
//!   wake-up schedule, upload permits and the drain: datagrams and the time in,
//!   datagrams, deadlines and events out. The simulation drives it in virtual time with a
//!   real store.
//! - [`driver`]: the only code that touches sockets and the clock: one epoll loop moving
//!   datagrams between the sockets and the endpoint (a window of DATA in one GSO send),
//!   the link MTU a request's policy asks for, transfer ports under `port-range`
//!   (`ports.rs`), signals, the reload thread, the inotify watch that asks for rescans
//!   ([`driver::Watcher`], read by the loop), the spool writer's thread (an upload's
//!   final ACK waits for it), the control socket, a look at the sync's status file
//!   once a second, and a [`Supervisor`](driver::Supervisor) to report to. The loop is
//!   the process's one thread but while a reload or the spool writer runs.
//! - [`control`] and [`ctl`]: the control protocol without sockets (requests, answers,
//!   the metrics text, the sync's status as the daemon shows it) and `tftpd ctl`.
//! - [`origin`]: `tftpd publish` and `tftpd sync`, a separate process with network access
//!   the daemon lacks: the manifest, the object cache, one sync round behind an HTTP trait,
//!   the HTTP(S) client with SigV4, push-uploads, and the status file the daemon reads.
//! - [`logs`]: the log formats (journal, text, JSON) and the MESSAGE_IDs of the catalog.
//! - [`systemd`]: socket adoption (`LISTEN_FDS`, checked), `sd_notify`, journald logging.
//! - [`daemon`]: start-up, reload, and the error behind each exit status: what `tftpd` runs.
//! - [`exit`]: the exit statuses (sysexits: 78 configuration, 71 operating system, 75 try
//!   again), one definition each.
//!
//! One datagram's way through: the driver receives it on a listening socket and hands it
//! to [`Endpoint::handle`](endpoint::Endpoint::handle); a request that starts a transfer
//! comes back as a new transfer that needs a socket, which the driver opens; the driver
//! then sends what [`Endpoint::poll_transmit`](endpoint::Endpoint::poll_transmit) writes
//! and acts on [`Endpoint::poll_event`](endpoint::Endpoint::poll_event).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod driver;
pub mod endpoint;
pub mod exit;
pub mod logs;
pub mod name;
pub mod origin;
pub mod proto;
pub mod store;
pub mod systemd;
pub mod timestamp;
pub mod transfer;
