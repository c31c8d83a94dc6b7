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
//! - [`store`]: the in-memory files. Name normalisation, preseeding from disk, shared
//!   `Bytes` lookups, uploads checked against the policy and swapped in whole, reload.
//! - [`config`]: `/etc/tftpd.toml` read into a validated [`config::Config`]; every error names
//!   file, line, column and key, and means exit status 78.
//! - [`server`]: the driver, the only code that touches sockets and the clock: one
//!   event loop for every transfer, request dispatch, timers, reload and drain.
//! - [`systemd`]: socket adoption (`LISTEN_FDS`, checked), `sd_notify`, journald logging.
//! - [`daemon`]: start-up, reload and exit codes: what `tftpd` runs.

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
