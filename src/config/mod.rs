//! The daemon's configuration: `/etc/tftpd.toml` read into a validated [`Config`].
//!
//! Reading happens in two steps, as ripgrep does with its arguments. The TOML text is first
//! deserialised into private *raw* structs in which every table denies unknown keys and every
//! newtype (ranged integers, sizes, durations, name prefixes) validates while it is being
//! deserialised, so that its error carries the span of the offending value. Cross-field checks
//! (`max-file-size` against `max-total-size`, for instance) run afterwards on
//! [`toml::Spanned`] fields, so they too point at the right line. The result is a [`Config`]
//! with typed fields and every default filled in; an empty file is a valid configuration.
//!
//! By concern: this module holds the public [`Config`], its defaults and the entry points
//! ([`Config::load`], [`Config::parse`]); `raw` the raw structs and the cross-field checks
//! that validate them; `value` the self-validating values (ranges, sizes, durations, log
//! level, listen address, name prefix); `origin` the `[origin]` table of `tftpd sync`; `error` [`ConfigError`] and the span-to-key lookup.
//!
//! Every error is a [`ConfigError`] whose `Display` reads
//! ``FILE:LINE:COLUMN: key `a.b`: REASON`` (line and column 1-based); the daemon exits
//! with [`EX_CONFIG`](crate::exit::EX_CONFIG) on any of them.
//!
//! # Units
//!
//! Sizes (`receive-buffer`, `upload.max-file-size`, `upload.max-total-size`) are a TOML
//! integer (bytes) or a string of digits followed by an optional unit, with optional spaces
//! between: `B` (bytes); `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` (binary, powers of 1024);
//! `kB`, `MB`, `GB`, `TB` (decimal, powers of 1000). Units are case-sensitive, so the ambiguous
//! `KB` or `mb` are refused rather than guessed at.
//!
//! Durations (`shutdown-grace`) are a TOML integer (seconds) or a string of digits followed by
//! a unit: `ms`, `s`, `m` or `h` (`"500ms"`, `"10s"`, `"2m"`).
//!
//! # Paths and prefixes
//!
//! A relative `[[preseed]] path` is resolved against the directory that contains the
//! configuration file (not the working directory), so a configuration and the files it
//! preseeds can be moved together. Name prefixes (`[[preseed]] prefix`, `[upload] allow`) are
//! normalised by the name rules of [`crate::name`]: `\` is read as `/`, leading, trailing and
//! repeated separators are dropped, and a non-empty prefix gets one trailing `/`; so
//! `"/pxe//boot"` becomes `"pxe/boot/"`. A prefix containing a `.` or `..` component or a NUL
//! is refused.

mod error;
mod origin;
mod policy;
mod print;
mod raw;
mod value;

pub use error::{ConfigError, Position};

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;

use crate::endpoint::Settings;
pub use crate::logs::LogFormat;
use crate::origin::settings::OriginSettings;
use crate::store::{PreseedSource, UploadPolicy};
#[cfg(doc)]
use crate::transfer::TransferConfig;
use error::Source;
use raw::RawConfig;

/// Where the daemon looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/tftpd.toml";

/// The control socket's default path: in the service's runtime directory.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/tftpd/control";

/// The longest `shutdown-grace` accepted. systemd's default `TimeoutStopSec` is 90 s; a longer
/// grace needs a matching `TimeoutStopSec=` in the unit.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);

/// The largest `receive-buffer`: `SO_RCVBUF` takes a C `int`.
pub const MAX_RECEIVE_BUFFER: u64 = i32::MAX as u64;

/// The largest `max-transfers` (and `max-transfers-per-client`) accepted.
pub const MAX_TRANSFERS_LIMIT: usize = 1_000_000;

/// The largest `retries` accepted.
pub const MAX_RETRIES: u32 = 255;

/// The default `upload.max-total-size`: 256 MiB. (The default `upload.max-file-size` is
/// [`TransferConfig::default()`]'s `max_upload_size`.)
pub const DEFAULT_MAX_TOTAL_SIZE: u64 = 256 << 20;

/// A validated configuration, with every default filled in.
///
/// Validation builds the types the rest of the daemon takes, once: the transfers'
/// [`TransferConfig`], the store's [`PreseedSource`]s and [`UploadPolicy`]. Nothing downstream
/// copies fields out of a `Config`.
///
/// [`Config::default()`] is the configuration of an empty file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to bind in standalone mode (ignored when systemd passes sockets).
    /// Default `[::]:69`, which on Linux also accepts IPv4 clients.
    pub listen: Vec<SocketAddr>,
    /// What the endpoint serves with, every default [`Settings::default()`]'s:
    /// - `single_port`: run every transfer on the socket its request arrived on, instead
    ///   of a new socket per transfer (default `false`);
    /// - `max_transfers`: transfers in flight at once (default 1000);
    /// - `max_transfers_per_client`: transfers at once for one client (an IPv4 address or
    ///   an IPv6 prefix; default 256, never more than `max_transfers`);
    /// - `max_unverified_per_client`: transfers at once for one client whose peer has not
    ///   answered yet (default 64, never more than `max_transfers_per_client`);
    /// - `ipv6_client_prefix`: the bits of an IPv6 address that make one client (32 to
    ///   128; default 64);
    /// - `shutdown_grace`: how long transfers may run on after SIGTERM (default 10 s);
    /// - `transfer`, whose defaults are [`TransferConfig::default()`]'s and ranges those of
    ///   [`crate::proto`]: `timeout`, the retransmission timeout when the client does not
    ///   negotiate one (1 to 255 s; default 2 s); `retries`, retransmissions of one packet
    ///   before a transfer is abandoned (0 to [`MAX_RETRIES`]; default 5); `max_blksize`
    ///   (the top-level `max-blksize` when a number, else 65464) and `max_windowsize` (1
    ///   to 65535; default 64), the caps before the policy's, and `max_timeout` (1 to
    ///   255; default 10), the largest options granted; and `max_upload_size`, always
    ///   `upload.max_file_size`;
    /// - `policy`: the top-level `read`, `write`, `root`, `fallback`, `rewrite`,
    ///   `max-blksize` (default `"mtu"`), `max-windowsize` and `refuse-options`, and the
    ///   `[[client]]` tables in order, each complete (a key it leaves out holds the top
    ///   level's; `[client.upload]` narrows `[upload]`);
    /// - `port_range`: `port-range`, the ports of per-transfer sockets (default none: any).
    pub endpoint: Settings,
    /// Look names up without regard to ASCII case. Default `false`.
    pub case_insensitive: bool,
    /// Most verbose level logged. Default `info`.
    pub log_level: LevelFilter,
    /// Where and how log records go. Default [`LogFormat::Auto`]: the journal under
    /// systemd, text on stderr otherwise.
    pub log_format: LogFormat,
    /// The control socket's path, `None` for none (the key set to `""`). Default
    /// [`DEFAULT_CONTROL_SOCKET`]; a relative path is resolved against the directory of
    /// the configuration file, as preseed paths are.
    pub control_socket: Option<PathBuf>,
    /// `SO_RCVBUF` of the listening sockets, in bytes. Default 4 MiB.
    pub receive_buffer: usize,
    /// Watch the preseeded files and directories with inotify and load what changes
    /// without a reload. Default `true`.
    pub watch: bool,
    /// The `[[preseed]]` entries: files and directories loaded into the store at start-up
    /// and on reload, in order. Each `path` is already resolved against the directory of
    /// the configuration file when it was relative, and each `prefix` is empty or a
    /// normalised directory prefix ending in `/` (see the module documentation). `on_error`
    /// defaults to [`OnError::Skip`](crate::store::OnError::Skip).
    pub preseed: Vec<PreseedSource>,
    /// The `[upload]` table: whether and how clients may write files. Defaults: disabled,
    /// `max_file_size` [`TransferConfig::default()`]'s `max_upload_size` (64 MiB),
    /// `max_total_size` [`DEFAULT_MAX_TOTAL_SIZE`] and never less than `max_file_size`, no
    /// `overwrite`, and `allow` empty (anywhere); `allow` entries are normalised prefixes
    /// ending in `/`. (`max-per-client` is the endpoint's: `endpoint.upload`, default
    /// [`UploadsInFlight::default()`](crate::endpoint::UploadsInFlight)'s.)
    pub upload: UploadPolicy,
    /// `upload.spool`: the directory where uploads are made durable before their final
    /// ACK and from which they are loaded back at start-up (resolved against the
    /// configuration file's directory). Default none: uploads live in memory only.
    pub upload_spool: Option<PathBuf>,
    /// The `[origin]` table, for `tftpd sync` (the daemon ignores it): `None` when absent.
    /// Defaults: `interval` 60 s, `cache` `/var/cache/tftpd`, `timeout` 30 s, no
    /// `ca-file`, no credential (see [`crate::origin::settings`]).
    pub origin: Option<OriginSettings>,
}

impl Default for Config {
    fn default() -> Self {
        let endpoint = Settings::default();
        let transfer = endpoint.transfer;
        Config {
            listen: vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, 69))],
            endpoint,
            case_insensitive: false,
            log_level: LevelFilter::Info,
            log_format: LogFormat::Auto,
            control_socket: Some(PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            receive_buffer: 4 << 20,
            watch: true,
            preseed: Vec::new(),
            upload: UploadPolicy {
                enabled: false,
                max_file_size: transfer.max_upload_size,
                max_total_size: DEFAULT_MAX_TOTAL_SIZE,
                overwrite: false,
                allow: Vec::new(),
            },
            upload_spool: None,
            origin: None,
        }
    }
}

impl Config {
    /// The configuration as TOML with every key and default written out, which reads back
    /// as this configuration (`tftpd --print-config`).
    pub fn to_toml(&self) -> String {
        print::render(self)
    }

    /// Reads and validates the configuration file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read, otherwise as [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Config::parse(text, path),
            Err(e) => {
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
                Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    position: Some(Position::of(&valid, valid.len())),
                    reason: "the file is not valid UTF-8".to_owned(),
                })
            }
        }
    }

    /// Validates the configuration `text`, read from the file `origin`.
    ///
    /// `origin` names the file in error messages, and relative `[[preseed]] path`s are resolved
    /// against its directory. Nothing is read from the file system.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Syntax`] if `text` is not TOML, [`ConfigError::Invalid`] for an unknown
    /// key, a value of the wrong type or out of range, or keys that contradict each other.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let source = Source { text, origin };
        let raw: RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        raw.validate(&source)
    }
}

/// Parses a duration as the configuration writes one (`"500ms"`, `"10s"`, `"2m"`, `"1h"`),
/// for command-line options that take one.
///
/// # Errors
///
/// The reason, as a configuration error would give it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    value::parse_duration(text)
}

/// Helpers shared by the configuration's tests.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use super::{Config, ConfigError};

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/tftpd.toml"))
    }

    /// Parses `text`, expecting an error, and returns it with its `Display`.
    pub(super) fn error(text: &str) -> (ConfigError, String) {
        match parse(text) {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(e) => {
                let shown = e.to_string();
                (e, shown)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::store::OnError;
    use std::path::PathBuf;

    #[test]
    fn empty_file_gives_all_defaults() {
        assert_eq!(parse("").expect("empty file"), Config::default());
        assert_eq!(
            parse("# only a comment\n").expect("comment"),
            Config::default()
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(
            c.listen,
            vec!["[::]:69".parse::<SocketAddr>().expect("addr")]
        );
        let e = &c.endpoint;
        assert!(!e.single_port);
        assert_eq!((e.max_transfers, e.max_transfers_per_client), (1000, 256));
        assert_eq!(
            (e.max_unverified_per_client, e.ipv6_client_prefix),
            (64, 64)
        );
        assert_eq!(e.transfer, crate::transfer::TransferConfig::default());
        assert_eq!(e.transfer.timeout, Duration::from_secs(2));
        assert_eq!(e.transfer.retries, 5);
        assert_eq!(
            (
                e.transfer.max_blksize,
                e.transfer.max_windowsize,
                e.transfer.max_timeout
            ),
            (65464, 64, 10)
        );
        assert_eq!(e.transfer.max_upload_size, c.upload.max_file_size);
        assert_eq!(e.shutdown_grace, Duration::from_secs(10));
        assert!(!c.case_insensitive);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.receive_buffer, 4 * 1024 * 1024);
        assert!(c.watch);
        assert!(c.preseed.is_empty());
        assert!(!c.upload.enabled && !c.upload.overwrite && c.upload.allow.is_empty());
        assert_eq!(c.upload.max_file_size, 64 * 1024 * 1024);
        assert_eq!(c.upload.max_total_size, 256 * 1024 * 1024);
        assert_eq!(c.endpoint.uploads_in_flight.max_per_client, 4);
        assert_eq!(c.upload_spool, None);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
            listen = ["127.0.0.1:6969", "[::1]:6969"]
            single-port = true
            max-transfers = 50
            max-transfers-per-client = 5
            max-unverified-per-client = 3
            ipv6-client-prefix = 56
            timeout = 255
            retries = 0
            max-blksize = 8
            max-windowsize = 65535
            max-timeout = 30
            shutdown-grace = "500ms"
            case-insensitive = true
            log-level = "debug"
            receive-buffer = 65536
            watch = false

            [[preseed]]
            path = "/srv/tftp"

            [[preseed]]
            path = "boot"
            prefix = "\\pxe//x86/"
            optional = true
            on-error = "fail"

            [upload]
            enabled = true
            max-file-size = "1MiB"
            max-total-size = "10MB"
            overwrite = true
            allow = ["uploads", "/incoming/"]
            max-per-client = 2
            spool = "uploads"
            "#,
        )
        .expect("valid config");
        assert_eq!(c.listen.len(), 2);
        assert!(c.endpoint.single_port && c.case_insensitive);
        assert_eq!(
            c.endpoint,
            Settings {
                transfer: crate::transfer::TransferConfig {
                    timeout: Duration::from_secs(255),
                    retries: 0,
                    max_blksize: 8,
                    max_windowsize: 65535,
                    max_timeout: 30,
                    max_upload_size: 1 << 20,
                },
                max_transfers: 50,
                max_transfers_per_client: 5,
                max_unverified_per_client: 3,
                ipv6_client_prefix: 56,
                single_port: true,
                shutdown_grace: Duration::from_millis(500),
                uploads_in_flight: crate::endpoint::UploadsInFlight { max_per_client: 2 },
                policy: std::sync::Arc::new(crate::endpoint::Policy {
                    tables: Vec::new(),
                    top: crate::endpoint::Rules {
                        max_blksize: crate::endpoint::BlockLimit::Fixed(8),
                        max_windowsize: 65535,
                        ..crate::endpoint::Rules::default()
                    },
                }),
                port_range: None,
            }
        );
        assert_eq!(c.upload_spool, Some(PathBuf::from("/etc/uploads")));
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.receive_buffer, 65536);
        assert!(!c.watch);
        assert_eq!(
            c.preseed,
            vec![
                PreseedSource {
                    path: PathBuf::from("/srv/tftp"),
                    prefix: String::new(),
                    optional: false,
                    on_error: OnError::Skip,
                },
                PreseedSource {
                    path: PathBuf::from("/etc/boot"),
                    prefix: "pxe/x86/".to_owned(),
                    optional: true,
                    on_error: OnError::Fail,
                },
            ]
        );
        assert_eq!(
            c.upload,
            UploadPolicy {
                enabled: true,
                max_file_size: 1 << 20,
                max_total_size: 10_000_000,
                overwrite: true,
                allow: vec!["uploads/".to_owned(), "incoming/".to_owned()],
            }
        );
    }

    #[test]
    fn relative_preseed_paths_are_resolved_against_the_config_directory() {
        let text = "[[preseed]]\npath = \"sample\"\n";
        let c = Config::parse(text, Path::new("config/example.toml")).expect("valid");
        assert_eq!(c.preseed[0].path, Path::new("config/sample"));
        let c = Config::parse(text, Path::new("example.toml")).expect("valid");
        assert_eq!(c.preseed[0].path, Path::new("sample"));
    }

    #[test]
    fn unreadable_and_non_utf8_files_name_the_file() {
        let missing = Path::new("/nonexistent/memtftpd/tftpd.toml");
        let e = Config::load(missing).expect_err("missing file");
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/memtftpd/tftpd.toml: "),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("memtftpd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, b"timeout = 2\n# \xff\n").expect("write");
        let e = Config::load(&file).expect_err("not UTF-8");
        assert_eq!(e.position(), Some(Position { line: 2, column: 3 }));
        assert!(e.to_string().contains("UTF-8"), "{e}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
