//! The `[origin]` table's validated form, which `tftpd sync` runs with: where the manifest
//! is, how often to look, where the cache is, how long a request may take, and what to
//! authenticate with. Built by [`crate::config`], which owns the defaults below.

use std::path::PathBuf;
use std::time::Duration;

/// The default `origin.interval`: how long `tftpd sync --watch` waits between rounds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The default `origin.timeout`: the longest wait to connect or for any read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `origin.cache` (the sync unit's `CacheDirectory=tftpd`).
pub const DEFAULT_CACHE: &str = "/var/cache/tftpd";

/// The validated `[origin]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSettings {
    /// The manifest's URL, `http://` or `https://`; objects are at `objects/<sha256>`
    /// beside it.
    pub url: String,
    /// Between two rounds of `--watch`, before back-off and jitter.
    pub interval: Duration,
    /// The cache directory; the daemon serves `<cache>/current`.
    pub cache: PathBuf,
    /// The longest wait to connect and for each read of a request.
    pub timeout: Duration,
    /// PEM certificates to trust instead of the system's CA bundle.
    pub ca_file: Option<PathBuf>,
    /// The credential sent with every request, if any.
    pub auth: Option<OriginAuth>,
    /// `push-uploads`: where the spooled uploads are sent (`PUT <url><name>` with
    /// `If-None-Match: *`), an `http://` or `https://` URL ending in `/`. `None`: off.
    pub push_uploads: Option<String>,
}

/// How requests to the origin authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAuth {
    /// The HTTP scheme.
    pub scheme: AuthScheme,
    /// Where the secret is: a file, or the name of a systemd credential
    /// (`LoadCredential=NAME:...`) read from `$CREDENTIALS_DIRECTORY`.
    pub credential: CredentialSource,
}

/// The HTTP authentication scheme of `origin.auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <the file's content>`.
    Bearer,
    /// `Authorization: Basic <base64 of the file's content, "user:password">`.
    Basic,
    /// AWS Signature Version 4 with the access key in the file, `"KEY_ID:SECRET"`, for a
    /// private S3 bucket ([`crate::origin::sigv4`]).
    SigV4 {
        /// `origin.region`, default [`DEFAULT_REGION`](crate::origin::sigv4::DEFAULT_REGION).
        region: String,
        /// `origin.service`, default [`DEFAULT_SERVICE`](crate::origin::sigv4::DEFAULT_SERVICE).
        service: String,
    },
}

/// Where `origin.credential` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A file (its path already resolved against the configuration's directory).
    File(PathBuf),
    /// A systemd credential's name, a file in `$CREDENTIALS_DIRECTORY`.
    Systemd(String),
}
