//! memtftpd: an in-memory TFTP server for Linux, run by systemd.
//!
//! # Layout
//!
//! The crate is a sans-IO core with thin I/O at the edges:
//!
//! - [`proto`]: the wire format. Typed packets that borrow from the datagram; parsing
//!   untrusted bytes never panics.
//! - [`transfer`]: per-transfer state machines (server read and write, and the client side
//!   used by tests and the benchmark). They take `now` as an argument and say what to send
//!   and when to wake; they own no socket and read no clock.
//! - [`name`]: the name rules. [`name::normalize_name`] turns a raw name into a
//!   [`name::FileName`], or a [`name::NameError`] with the TFTP error code it gets.
//! - [`store`]: the in-memory files. The map with its shared lookups ([`store::StoredFile`]:
//!   the `Bytes` and their netascii length, computed once) and swaps (`store/mod.rs`); the
//!   upload policy, permits and refusals (`upload.rs`); preseeding from disk
//!   (`preseed.rs`) and its report (`report.rs`).
//! - [`config`]: `/etc/tftpd.toml` read into a validated [`config::Config`] that hands out
//!   the transfer, preseed and upload types the rest of the crate takes: public types and
//!   defaults (`config/mod.rs`), raw structs and cross-field checks (`raw.rs`),
//!   self-validating values (`value.rs`), errors that name file, line, column and key
//!   (`error.rs`).
//! - [`server`]: the driver, the only code that touches sockets and the clock: one
//!   event loop for every transfer, request dispatch, timers, reload and drain.
//! - [`systemd`]: socket adoption (`LISTEN_FDS`, checked), `sd_notify`, journald logging.
//! - [`daemon`]: start-up, reload, and the error behind each exit status: what `tftpd` runs.
//! - [`exit`]: the exit statuses (sysexits: 78 configuration, 71 operating system, 75 try
//!   again), one definition each.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod daemon;
pub mod exit;
pub mod name;
pub mod proto;
pub mod server;
pub mod store;
pub mod systemd;
pub mod transfer;
