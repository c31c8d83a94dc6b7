//! [`OriginError`]: why a publish or a sync round failed, with the exit status `tftpd
//! publish` and `tftpd sync` end with. A failed round has left `<cache>/current` as it was.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::fetch::FetchError;
use super::manifest::ManifestError;
use crate::exit::{EX_CONFIG, EX_OSERR, EX_TEMPFAIL};
use crate::store::StoreError;

/// Why a publish or a sync round failed.
#[derive(Debug)]
pub enum OriginError {
    /// The directory to publish could not be read.
    Store(StoreError),
    /// A file or directory of the output or the cache could not be read or written.
    Io {
        /// What was being done, e.g. "write the object".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another `tftpd sync` holds the cache's lock.
    Locked(PathBuf),
    /// The manifest from the origin is not usable.
    Manifest(ManifestError),
    /// The origin could not be reached or answered with an error.
    Fetch(FetchError),
    /// An object from the origin is not the one the manifest names.
    Object {
        /// Its digest in the manifest.
        sha256: String,
        /// What was wrong: size or digest.
        reason: String,
    },
    /// The configuration has no `[origin]` table, or its credentials cannot be read.
    Config(String),
    /// The synced tree is in place, but the running daemon refused or missed the reload.
    Reload(String),
    /// `push-uploads`: some uploads are not acknowledged yet (sent again next round).
    Push(String),
}

impl OriginError {
    /// The exit status for this error: 78 for configuration, 71 for the local system, 75
    /// (try again later) for everything the origin or a concurrent run caused.
    pub fn exit_code(&self) -> u8 {
        match self {
            OriginError::Config(_) | OriginError::Store(_) => EX_CONFIG,
            OriginError::Io { .. } => EX_OSERR,
            OriginError::Locked(_)
            | OriginError::Manifest(_)
            | OriginError::Fetch(_)
            | OriginError::Object { .. }
            | OriginError::Reload(_)
            | OriginError::Push(_) => EX_TEMPFAIL,
        }
    }

    /// A short stable word for the log's `TFTP_ORIGIN_ERROR=` field.
    pub fn kind(&self) -> &'static str {
        match self {
            OriginError::Store(_) => "source",
            OriginError::Io { .. } => "io",
            OriginError::Locked(_) => "locked",
            OriginError::Manifest(_) => "manifest",
            OriginError::Fetch(_) => "fetch",
            OriginError::Object { .. } => "object",
            OriginError::Config(_) => "config",
            OriginError::Reload(_) => "reload",
            OriginError::Push(_) => "push",
        }
    }
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::Store(e) => e.fmt(f),
            OriginError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            OriginError::Locked(path) => write!(
                f,
                "another tftpd sync is running (it holds {})",
                path.display()
            ),
            OriginError::Manifest(e) => e.fmt(f),
            OriginError::Fetch(e) => e.fmt(f),
            OriginError::Object { sha256, reason } => {
                write!(f, "object {sha256} from the origin refused: {reason}")
            }
            OriginError::Config(reason) => f.write_str(reason),
            OriginError::Reload(reason) => write!(
                f,
                "the new generation is in place but the daemon did not reload: {reason}"
            ),
            OriginError::Push(reason) => write!(f, "uploads not pushed yet: {reason}"),
        }
    }
}

impl std::error::Error for OriginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OriginError::Store(e) => Some(e),
            OriginError::Io { source, .. } => Some(source),
            OriginError::Manifest(e) => Some(e),
            OriginError::Fetch(e) => Some(e),
            _ => None,
        }
    }
}

/// Maps an `io::Error` on `path` to [`OriginError::Io`].
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> OriginError {
    let path = path.into();
    move |source| OriginError::Io {
        action,
        path,
        source,
    }
}
