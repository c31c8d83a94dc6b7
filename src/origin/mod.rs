//! Content from an origin: a fleet of tftpd instances serving one content set published
//! once to any HTTP(S) server, pulled by each instance's `tftpd sync` into a local cache
//! and served from `<cache>/current`. The daemon itself never touches the network for this;
//! `tftpd sync` runs as its own (sandboxed) unit.
//!
//! - `manifest`: `manifest.json`, what a published content set is (names, sizes, SHA-256s
//!   and a generation derived from them), parsed and checked; no I/O.
//! - `publish`: `tftpd publish DIR OUT`, a directory turned into objects and a manifest.
//! - `fetch`: the narrow [`Origin`](fetch::Origin) trait a round talks to, and its errors;
//!   `http`: the real one, a blocking HTTP(S) client with timeouts on every request;
//!   `sigv4`: its AWS Signature Version 4 for private S3 buckets.
//! - `cache`: the cache's layout on disk, its lock, the atomic switch of `current` and the
//!   pruning.
//! - `round`: one sync round, which serves the origin's generation or leaves `current` as
//!   it was.
//! - `push`: `push-uploads`, the daemon's spooled uploads sent to the origin with `PUT`
//!   and `If-None-Match: *`, and what was acknowledged, remembered across runs.
//! - `settings`: the validated `[origin]` table.
//! - `status`: `<cache>/status.json`, what the rounds did, which the daemon shows.
//! - `cli`: the `publish` and `sync` commands, the `--watch` loop, reloading the daemon.
//! - `error`: [`OriginError`](error::OriginError) and the exit statuses.

pub mod cache;
pub mod cli;
pub mod error;
pub mod fetch;
pub mod http;
pub mod manifest;
pub mod publish;
pub mod push;
pub mod round;
pub mod settings;
pub mod sigv4;
pub mod status;
