//! The boundary between a sync round and the network: the [`Origin`] trait, narrow enough
//! that the round's tests fake it in memory, and [`FetchError`]. The real origin is the
//! blocking HTTP client of [`super::http`].
//!
//! An origin only moves bytes: the round bounds and checks everything it gets (the
//! manifest's size, each object's size and SHA-256), so a transport that lies is caught
//! whichever it is.

use std::fmt;
use std::io::Write;

/// The answer to a manifest request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestReply {
    /// `304 Not Modified`: the manifest is still the one with the ETag sent.
    NotModified,
    /// The manifest's bytes, with the ETag to send next time, if the origin gave one.
    Manifest {
        /// The body, at most [`MAX_MANIFEST_BYTES`](super::manifest::MAX_MANIFEST_BYTES).
        body: Vec<u8>,
        /// The response's `ETag`, as sent.
        etag: Option<String>,
    },
}

/// Where content sets are published: a manifest and objects by digest.
///
/// Implementations must bound every request in time. They are called from several
/// threads at once (objects are fetched a few in parallel).
pub trait Origin: Sync {
    /// Fetches the manifest, with `If-None-Match: etag` when `etag` is given.
    ///
    /// # Errors
    ///
    /// A [`FetchError`] when the origin cannot be reached, answers with an error status,
    /// times out, or sends more than the manifest's bound.
    fn manifest(&self, etag: Option<&str>) -> Result<ManifestReply, FetchError>;

    /// Fetches the object `sha256`, which the manifest says has `size` bytes, writing its
    /// body into `sink` as it arrives. The sink refuses bytes beyond `size`; the caller
    /// checks the length and digest of what was written.
    ///
    /// # Errors
    ///
    /// A [`FetchError`] as for [`Origin::manifest`], or [`FetchFailure::Write`] when the
    /// sink refused a write.
    fn object(&self, sha256: &str, size: u64, sink: &mut dyn Write) -> Result<(), FetchError>;
}

/// A request that did not give a usable answer.
#[derive(Debug)]
pub struct FetchError {
    /// What was requested (the URL, for an HTTP origin).
    pub url: String,
    /// What went wrong.
    pub failure: FetchFailure,
}

/// What went wrong with a request.
#[derive(Debug)]
pub enum FetchFailure {
    /// The origin answered with this HTTP status.
    Status(u16),
    /// The connection failed, timed out or broke (the transport's own words).
    Transport(String),
    /// The body was longer than the bound for it.
    TooLarge(u64),
    /// Writing the body where it goes failed (for an object: longer than the manifest
    /// says, or the cache's disk failed).
    Write(std::io::Error),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            FetchFailure::Status(code) => {
                write!(f, "the origin answered {code} for {}", self.url)
            }
            FetchFailure::Transport(e) => write!(f, "cannot fetch {}: {e}", self.url),
            FetchFailure::TooLarge(limit) => {
                write!(f, "{} is larger than {limit} bytes", self.url)
            }
            FetchFailure::Write(e) => write!(f, "cannot store {}: {e}", self.url),
        }
    }
}

impl std::error::Error for FetchError {}
