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
//! - [`config`]: `/etc/tftpd.toml` read into a validated [`config::Config`]; every error names
//!   file, line, column and key, and means exit status 78.

pub mod config;
