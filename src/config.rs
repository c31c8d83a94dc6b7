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
//! normalised the way the store normalises names: `\` is read as `/`, leading, trailing and
//! repeated separators are dropped, and a non-empty prefix gets one trailing `/`; so
//! `"/pxe//boot"` becomes `"pxe/boot/"`. A prefix containing a `.` or `..` component or a NUL
//! is refused.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::Spanned;

use crate::name::{NameError, normalize_name};

/// Where the daemon looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/tftpd.toml";

/// The longest `shutdown-grace` accepted. systemd's default `TimeoutStopSec` is 90 s; a longer
/// grace needs a matching `TimeoutStopSec=` in the unit.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);

/// The largest `receive-buffer`: `SO_RCVBUF` takes a C `int`.
pub const MAX_RECEIVE_BUFFER: u64 = i32::MAX as u64;

/// The largest `max-transfers` (and `max-transfers-per-client`) accepted.
pub const MAX_TRANSFERS_LIMIT: usize = 1_000_000;

/// A validated configuration, with every default filled in.
///
/// [`Config::default()`] is the configuration of an empty file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to bind in standalone mode (ignored when systemd passes sockets).
    /// Default `[::]:69`, which on Linux also accepts IPv4 clients.
    pub listen: Vec<SocketAddr>,
    /// Run every transfer on the socket its request arrived on, instead of a new socket per
    /// transfer. Default `false`.
    pub single_port: bool,
    /// Most transfers in flight at once; past it a request gets "server busy". Default 1000.
    pub max_transfers: usize,
    /// Most transfers in flight at once for one client IP address. Default 16; never more
    /// than `max_transfers`.
    pub max_transfers_per_client: usize,
    /// Retransmission timeout when the client does not negotiate one (1 to 255 s). Default 2 s.
    pub timeout: Duration,
    /// Retransmissions of one packet before a transfer is abandoned (0 to 255). Default 5.
    pub retries: u32,
    /// Largest block size granted to a client asking for `blksize` (8 to 65464). Default 65464.
    pub max_blksize: u16,
    /// Largest window granted to a client asking for `windowsize` (1 to 65535). Default 64.
    pub max_windowsize: u16,
    /// How long in-flight transfers may run on after SIGTERM. Default 10 s.
    pub shutdown_grace: Duration,
    /// Look names up without regard to ASCII case. Default `false`.
    pub case_insensitive: bool,
    /// Most verbose level logged. Default `info`.
    pub log_level: LevelFilter,
    /// `SO_RCVBUF` of the listening sockets, in bytes. Default 4 MiB.
    pub receive_buffer: usize,
    /// Files and directories loaded into the store at start-up and on reload, in order.
    pub preseed: Vec<Preseed>,
    /// Whether and how clients may write files.
    pub upload: UploadConfig,
}

/// One `[[preseed]]` entry: a file or directory loaded into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preseed {
    /// The file or directory (loaded recursively). Already resolved against the directory of
    /// the configuration file when it was relative.
    pub path: PathBuf,
    /// Prepended to the name of every file loaded from `path`: empty, or a normalised
    /// directory prefix ending in `/` (see the module documentation).
    pub prefix: String,
    /// If `true`, a missing or unreadable `path` is skipped with a warning instead of stopping
    /// start-up. Default `false`.
    pub optional: bool,
}

/// The `[upload]` table: write requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Accept write requests at all. Default `false`.
    pub enabled: bool,
    /// Largest file a client may write, in bytes. Default 64 MiB.
    pub max_file_size: u64,
    /// Largest total of uploaded bytes kept in memory. Default 256 MiB; never less than
    /// `max_file_size`.
    pub max_total_size: u64,
    /// Let an upload replace an existing file. Default `false` (ERROR 6).
    pub overwrite: bool,
    /// Normalised name prefixes (each ending in `/`) under which uploads are accepted; empty
    /// means anywhere.
    pub allow: Vec<String>,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: false,
            max_file_size: 64 << 20,
            max_total_size: 256 << 20,
            overwrite: false,
            allow: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, 69))],
            single_port: false,
            max_transfers: 1000,
            max_transfers_per_client: 16,
            timeout: Duration::from_secs(2),
            retries: 5,
            max_blksize: 65464,
            max_windowsize: 64,
            shutdown_grace: Duration::from_secs(10),
            case_insensitive: false,
            log_level: LevelFilter::Info,
            receive_buffer: 4 << 20,
            preseed: Vec::new(),
            upload: UploadConfig::default(),
        }
    }
}

impl Config {
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

/// A 1-based line and column (in characters) in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a configuration could not be loaded. Every variant means exit status
/// [`EX_CONFIG`](crate::exit::EX_CONFIG).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not valid TOML (or not UTF-8).
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the parser gave up, when known.
        position: Option<Position>,
        /// What is wrong.
        reason: String,
    },
    /// The file is TOML, but a key is unknown, a value has the wrong type or is out of range,
    /// or two keys contradict each other.
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the offending key or value is, when known.
        position: Option<Position>,
        /// The dotted key, e.g. `upload.max-file-size` or `preseed[0].prefix`, when known.
        key: Option<String>,
        /// What is wrong, and what is accepted.
        reason: String,
    },
}

impl ConfigError {
    /// Where in the file the error is, when known.
    #[must_use]
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { position, .. } | ConfigError::Invalid { position, .. } => {
                *position
            }
        }
    }

    /// The dotted key the error is about, when known.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "{}: cannot read configuration: {source}", path.display())
            }
            ConfigError::Syntax {
                path,
                position,
                reason,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(position) = position {
                    write!(f, ":{position}")?;
                }
                write!(f, ": {reason}")
            }
            ConfigError::Invalid {
                path,
                position,
                key,
                reason,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(position) = position {
                    write!(f, ":{position}")?;
                }
                if let Some(key) = key {
                    write!(f, ": key `{key}`")?;
                }
                write!(f, ": {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The text being parsed and where it came from, to turn spans into errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Source<'_> {
    /// An error about `key` at byte range `span`.
    fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_path_buf(),
            position: Some(Position::of(self.text, span.start)),
            key: Some(key.into()),
            reason: reason.into(),
        }
    }

    /// Classifies a `toml` error: a syntax error if the text does not even parse as a TOML
    /// document, otherwise an invalid key or value, named by looking its span up.
    fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let position = error.span().map(|span| Position::of(self.text, span.start));
        let reason = error.message().trim_end().to_owned();
        match toml::de::DeTable::parse(self.text) {
            Err(syntax) => ConfigError::Syntax {
                path: self.origin.to_path_buf(),
                position: syntax
                    .span()
                    .map(|span| Position::of(self.text, span.start))
                    .or(position),
                reason: syntax.message().trim_end().to_owned(),
            },
            Ok(document) => ConfigError::Invalid {
                path: self.origin.to_path_buf(),
                position,
                key: error
                    .span()
                    .and_then(|span| key_at(document.get_ref(), span.start)),
                reason,
            },
        }
    }
}

/// The dotted path of the innermost key or value of `document` whose span contains `offset`.
fn key_at(document: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    let mut best = None;
    walk_table(document, "", 0, offset, &mut best);
    best.map(|found: Found| found.path)
}

/// A candidate for [`key_at`].
struct Found {
    len: usize,
    depth: usize,
    path: String,
}

fn consider(span: Range<usize>, path: &str, depth: usize, offset: usize, best: &mut Option<Found>) {
    let contains = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !contains {
        return;
    }
    let len = span.len();
    let better = match best {
        None => true,
        Some(found) => len < found.len || (len == found.len && depth > found.depth),
    };
    if better {
        *best = Some(Found {
            len,
            depth,
            path: path.to_owned(),
        });
    }
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    depth: usize,
    offset: usize,
    best: &mut Option<Found>,
) {
    for (key, value) in table {
        let name = key.get_ref();
        let bare = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let path = match (prefix.is_empty(), bare) {
            (true, true) => name.to_string(),
            (true, false) => format!("{name:?}"),
            (false, true) => format!("{prefix}.{name}"),
            (false, false) => format!("{prefix}.{name:?}"),
        };
        consider(key.span(), &path, depth, offset, best);
        consider(value.span(), &path, depth, offset, best);
        walk_value(value.get_ref(), &path, depth + 1, offset, best);
    }
}

fn walk_value(
    value: &toml::de::DeValue<'_>,
    path: &str,
    depth: usize,
    offset: usize,
    best: &mut Option<Found>,
) {
    match value {
        toml::de::DeValue::Table(table) => walk_table(table, path, depth, offset, best),
        toml::de::DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                let path = format!("{path}[{i}]");
                consider(item.span(), &path, depth, offset, best);
                walk_value(item.get_ref(), &path, depth + 1, offset, best);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Raw configuration, as deserialised.

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    listen: Option<Spanned<Vec<ListenAddr>>>,
    single_port: Option<bool>,
    max_transfers: Option<Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    max_transfers_per_client: Option<Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    timeout: Option<Ranged<u64, 1, 255>>,
    retries: Option<Ranged<u32, 0, 255>>,
    max_blksize: Option<Ranged<u16, 8, 65464>>,
    max_windowsize: Option<Ranged<u16, 1, 65535>>,
    shutdown_grace: Option<Spanned<DurationValue>>,
    case_insensitive: Option<bool>,
    log_level: Option<Level>,
    receive_buffer: Option<Spanned<Size>>,
    #[serde(default)]
    preseed: Vec<RawPreseed>,
    upload: Option<RawUpload>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPreseed {
    path: Spanned<String>,
    prefix: Option<NamePrefix>,
    optional: Option<bool>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawUpload {
    enabled: Option<bool>,
    max_file_size: Option<Spanned<Size>>,
    max_total_size: Option<Spanned<Size>>,
    overwrite: Option<bool>,
    allow: Option<Vec<Spanned<String>>>,
}

impl RawConfig {
    fn validate(self, source: &Source<'_>) -> Result<Config, ConfigError> {
        let defaults = Config::default();

        let listen = match self.listen {
            None => defaults.listen,
            Some(listen) => {
                let span = listen.span();
                let listen: Vec<SocketAddr> =
                    listen.into_inner().into_iter().map(|a| a.0).collect();
                if listen.is_empty() {
                    return Err(source.invalid(
                        span,
                        "listen",
                        "must name at least one address, e.g. \"[::]:69\"",
                    ));
                }
                for (i, addr) in listen.iter().enumerate() {
                    if listen[..i].contains(addr) {
                        return Err(source.invalid(
                            span,
                            format!("listen[{i}]"),
                            format!("{addr} is listed twice"),
                        ));
                    }
                }
                listen
            }
        };

        let max_transfers = self
            .max_transfers
            .as_ref()
            .map_or(defaults.max_transfers, |v| v.get_ref().0);
        let max_transfers_per_client = self
            .max_transfers_per_client
            .as_ref()
            .map_or(defaults.max_transfers_per_client, |v| v.get_ref().0);
        if max_transfers_per_client > max_transfers {
            let (span, key) = match (&self.max_transfers_per_client, &self.max_transfers) {
                (Some(v), _) => (v.span(), "max-transfers-per-client"),
                (None, Some(v)) => (v.span(), "max-transfers"),
                (None, None) => (0..0, "max-transfers-per-client"),
            };
            return Err(source.invalid(
                span,
                key,
                format!(
                    "max-transfers-per-client ({max_transfers_per_client}) must not exceed \
                     max-transfers ({max_transfers})"
                ),
            ));
        }

        let shutdown_grace = match self.shutdown_grace {
            None => defaults.shutdown_grace,
            Some(grace) if grace.get_ref().0 > MAX_SHUTDOWN_GRACE => {
                return Err(source.invalid(
                    grace.span(),
                    "shutdown-grace",
                    format!(
                        "must be at most {}s (systemd would kill the service long before)",
                        MAX_SHUTDOWN_GRACE.as_secs()
                    ),
                ));
            }
            Some(grace) => grace.into_inner().0,
        };

        let receive_buffer = match self.receive_buffer {
            None => defaults.receive_buffer,
            Some(size) => {
                let bytes = size.get_ref().0;
                match usize::try_from(bytes) {
                    Ok(fits) if bytes <= MAX_RECEIVE_BUFFER => fits,
                    _ => {
                        return Err(source.invalid(
                            size.span(),
                            "receive-buffer",
                            format!(
                                "{bytes} bytes is more than SO_RCVBUF can take \
                                 ({MAX_RECEIVE_BUFFER} bytes)"
                            ),
                        ));
                    }
                }
            }
        };

        let base = source.origin.parent().unwrap_or(Path::new(""));
        let mut preseed = Vec::with_capacity(self.preseed.len());
        for (i, entry) in self.preseed.into_iter().enumerate() {
            let span = entry.path.span();
            let path = entry.path.into_inner();
            if path.is_empty() {
                return Err(source.invalid(
                    span,
                    format!("preseed[{i}].path"),
                    "must not be empty",
                ));
            }
            if path.contains('\0') {
                return Err(source.invalid(
                    span,
                    format!("preseed[{i}].path"),
                    "must not contain a NUL character",
                ));
            }
            preseed.push(Preseed {
                path: base.join(path),
                prefix: entry.prefix.map(|p| p.0).unwrap_or_default(),
                optional: entry.optional.unwrap_or(false),
            });
        }

        let upload = match self.upload {
            None => defaults.upload,
            Some(raw) => raw.validate(source, defaults.upload)?,
        };

        Ok(Config {
            listen,
            single_port: self.single_port.unwrap_or(defaults.single_port),
            max_transfers,
            max_transfers_per_client,
            timeout: self
                .timeout
                .map_or(defaults.timeout, |v| Duration::from_secs(v.0)),
            retries: self.retries.map_or(defaults.retries, |v| v.0),
            max_blksize: self.max_blksize.map_or(defaults.max_blksize, |v| v.0),
            max_windowsize: self.max_windowsize.map_or(defaults.max_windowsize, |v| v.0),
            shutdown_grace,
            case_insensitive: self.case_insensitive.unwrap_or(defaults.case_insensitive),
            log_level: self.log_level.map_or(defaults.log_level, |v| v.0),
            receive_buffer,
            preseed,
            upload,
        })
    }
}

impl RawUpload {
    fn validate(
        self,
        source: &Source<'_>,
        defaults: UploadConfig,
    ) -> Result<UploadConfig, ConfigError> {
        let max_file_size = self
            .max_file_size
            .as_ref()
            .map_or(defaults.max_file_size, |v| v.get_ref().0);
        let max_total_size = self
            .max_total_size
            .as_ref()
            .map_or(defaults.max_total_size, |v| v.get_ref().0);
        if max_file_size > max_total_size {
            let (span, key) = match (&self.max_file_size, &self.max_total_size) {
                (Some(v), _) => (v.span(), "upload.max-file-size"),
                (None, Some(v)) => (v.span(), "upload.max-total-size"),
                (None, None) => (0..0, "upload.max-file-size"),
            };
            return Err(source.invalid(
                span,
                key,
                format!(
                    "max-file-size ({max_file_size} bytes) must not exceed max-total-size \
                     ({max_total_size} bytes)"
                ),
            ));
        }

        let mut allow = Vec::new();
        for (i, prefix) in self.allow.unwrap_or_default().into_iter().enumerate() {
            let span = prefix.span();
            let prefix = normalize_prefix(prefix.get_ref()).map_err(|reason| {
                source.invalid(span.clone(), format!("upload.allow[{i}]"), reason)
            })?;
            if prefix.is_empty() {
                return Err(source.invalid(
                    span,
                    format!("upload.allow[{i}]"),
                    "an empty prefix would allow every name; leave `allow` out instead",
                ));
            }
            if !allow.contains(&prefix) {
                allow.push(prefix);
            }
        }

        Ok(UploadConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            max_file_size,
            max_total_size,
            overwrite: self.overwrite.unwrap_or(defaults.overwrite),
            allow,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Newtypes that validate while deserialising, so their errors carry the value's span.

/// An integer in `MIN..=MAX`, stored as `T`.
#[derive(Debug)]
struct Ranged<T, const MIN: i64, const MAX: i64>(T);

impl<'de, T: TryFrom<i64>, const MIN: i64, const MAX: i64> Deserialize<'de>
    for Ranged<T, MIN, MAX>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RangedVisitor<T, const MIN: i64, const MAX: i64>(PhantomData<T>);

        impl<T: TryFrom<i64>, const MIN: i64, const MAX: i64> Visitor<'_> for RangedVisitor<T, MIN, MAX> {
            type Value = Ranged<T, MIN, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer from {MIN} to {MAX}")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let out_of_range =
                    || E::custom(format!("must be an integer from {MIN} to {MAX}, not {v}"));
                if !(MIN..=MAX).contains(&v) {
                    return Err(out_of_range());
                }
                T::try_from(v).map(Ranged).map_err(|_| out_of_range())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Err(E::custom(format!(
                        "must be an integer from {MIN} to {MAX}, not {v}"
                    ))),
                }
            }
        }

        deserializer.deserialize_i64(RangedVisitor(PhantomData))
    }
}

/// A byte count: an integer, or a string such as `"64MiB"`.
#[derive(Debug)]
struct Size(u64);

const SIZE_UNITS: &str = "B, K, KiB, kB, M, MiB, MB, G, GiB, GB, T, TiB or TB";

/// Parses a size string (see the module documentation for the units).
fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected a number of bytes, optionally followed by {SIZE_UNITS}"
        ));
    }
    let multiplier: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?} is not a size: unknown unit {other:?}, expected {SIZE_UNITS}"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a number of bytes or a string such as \"64MiB\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("a size must not be negative, not {v}")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration: an integer number of seconds, or a string such as `"500ms"` or `"2m"`.
#[derive(Debug)]
struct DurationValue(Duration);

/// Parses a duration string (see the module documentation for the units).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let expected = "expected a whole number followed by ms, s, m or h, e.g. \"10s\"";
    if number.is_empty() {
        return Err(format!("{text:?} is not a duration: {expected}"));
    }
    let millis_per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("{text:?} has no unit: {expected}")),
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: {expected}"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a number of seconds or a string such as \"10s\" or \"500ms\""
                )
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                u64::try_from(v)
                    .map(|secs| DurationValue(Duration::from_secs(secs)))
                    .map_err(|_| E::custom(format!("a duration must not be negative, not {v}")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Ok(DurationValue(Duration::from_secs(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A `log-level` name.
#[derive(Debug)]
struct Level(LevelFilter);

const LEVEL_NAMES: &str = "\"error\", \"warn\", \"info\", \"debug\" or \"trace\"";

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelVisitor;

        impl Visitor<'_> for LevelVisitor {
            type Value = Level;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "one of {LEVEL_NAMES}")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Level, E> {
                let level = match name.to_ascii_lowercase().as_str() {
                    "error" => LevelFilter::Error,
                    "warn" => LevelFilter::Warn,
                    "info" => LevelFilter::Info,
                    "debug" => LevelFilter::Debug,
                    "trace" => LevelFilter::Trace,
                    _ => {
                        return Err(E::custom(format!(
                            "unknown log level {name:?}, expected {LEVEL_NAMES}"
                        )));
                    }
                };
                Ok(Level(level))
            }
        }

        deserializer.deserialize_str(LevelVisitor)
    }
}

/// A `listen` address: an IP address and a port; host names are not resolved.
#[derive(Debug)]
struct ListenAddr(SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddrVisitor;

        impl Visitor<'_> for AddrVisitor {
            type Value = ListenAddr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string such as \"[::]:69\" or \"192.0.2.1:69\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ListenAddr, E> {
                text.parse().map(ListenAddr).map_err(|_| {
                    E::custom(format!(
                        "{text:?} is not an IP address and port such as \"[::]:69\" or \
                         \"192.0.2.1:69\" (host names are not resolved)"
                    ))
                })
            }
        }

        deserializer.deserialize_str(AddrVisitor)
    }
}

/// A normalised name prefix (see the module documentation).
#[derive(Debug)]
struct NamePrefix(String);

/// Normalises a name prefix by the store's own name rules ([`normalize_name`]): `\` is `/`,
/// empty components are dropped, and a non-empty result ends in `/`. A prefix names a place
/// explicitly, so a `.` component, which a request name may carry, is refused here too.
fn normalize_prefix(text: &str) -> Result<String, String> {
    if text.split(['/', '\\']).any(|component| component == ".") {
        return Err(format!(
            "a name prefix must not contain a \".\" component, as in {text:?}"
        ));
    }
    match normalize_name(text) {
        Ok(name) => Ok(format!("{name}/")),
        Err(NameError::Empty) => Ok(String::new()),
        Err(error) => Err(format!("name prefix {text:?}: {error}")),
    }
}

impl<'de> Deserialize<'de> for NamePrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        normalize_prefix(&text)
            .map(NamePrefix)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/tftpd.toml"))
    }

    /// Parses `text`, expecting an error, and returns it with its `Display`.
    fn error(text: &str) -> (ConfigError, String) {
        match parse(text) {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(e) => {
                let shown = e.to_string();
                (e, shown)
            }
        }
    }

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
        assert!(!c.single_port);
        assert_eq!((c.max_transfers, c.max_transfers_per_client), (1000, 16));
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.retries, 5);
        assert_eq!((c.max_blksize, c.max_windowsize), (65464, 64));
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert!(!c.case_insensitive);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.receive_buffer, 4 * 1024 * 1024);
        assert!(c.preseed.is_empty());
        assert!(!c.upload.enabled && !c.upload.overwrite && c.upload.allow.is_empty());
        assert_eq!(c.upload.max_file_size, 64 * 1024 * 1024);
        assert_eq!(c.upload.max_total_size, 256 * 1024 * 1024);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
            listen = ["127.0.0.1:6969", "[::1]:6969"]
            single-port = true
            max-transfers = 50
            max-transfers-per-client = 5
            timeout = 255
            retries = 0
            max-blksize = 8
            max-windowsize = 65535
            shutdown-grace = "500ms"
            case-insensitive = true
            log-level = "debug"
            receive-buffer = 65536

            [[preseed]]
            path = "/srv/tftp"

            [[preseed]]
            path = "boot"
            prefix = "\\pxe//x86/"
            optional = true

            [upload]
            enabled = true
            max-file-size = "1MiB"
            max-total-size = "10MB"
            overwrite = true
            allow = ["uploads", "/incoming/"]
            "#,
        )
        .expect("valid config");
        assert_eq!(c.listen.len(), 2);
        assert!(c.single_port && c.case_insensitive);
        assert_eq!((c.max_transfers, c.max_transfers_per_client), (50, 5));
        assert_eq!(c.timeout, Duration::from_secs(255));
        assert_eq!((c.retries, c.max_blksize, c.max_windowsize), (0, 8, 65535));
        assert_eq!(c.shutdown_grace, Duration::from_millis(500));
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.receive_buffer, 65536);
        assert_eq!(
            c.preseed,
            vec![
                Preseed {
                    path: PathBuf::from("/srv/tftp"),
                    prefix: String::new(),
                    optional: false,
                },
                Preseed {
                    path: PathBuf::from("/etc/boot"),
                    prefix: "pxe/x86/".to_owned(),
                    optional: true,
                },
            ]
        );
        assert_eq!(
            c.upload,
            UploadConfig {
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
    fn size_strings_parse_with_binary_and_decimal_units() {
        for (text, bytes) in [
            ("0", 0),
            ("1024", 1024),
            ("10B", 10),
            ("512KiB", 512 << 10),
            ("512K", 512 << 10),
            ("64MiB", 64 << 20),
            ("64 MiB", 64 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("100kB", 100_000),
            ("10MB", 10_000_000),
            ("3GB", 3_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_size_strings_are_rejected() {
        for text in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "64mib",
            "64KB",
            "64 M B",
            "ten",
            "1e6",
            "0x10",
            "18446744073709551616",
            "16777216TiB",
        ] {
            assert!(parse_size(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn bad_sizes_are_errors_naming_the_key() {
        let (e, shown) = error("[upload]\nmax-file-size = \"64 furlongs\"\n");
        assert_eq!(e.key(), Some("upload.max-file-size"));
        assert_eq!(
            e.position(),
            Some(Position {
                line: 2,
                column: 17
            })
        );
        assert!(shown.contains("unknown unit"), "{shown}");
        let (e, shown) = error("receive-buffer = \"99999999999TiB\"\n");
        assert_eq!(e.key(), Some("receive-buffer"));
        assert!(shown.contains("too large"), "{shown}");
        let (e, _) = error("receive-buffer = -1\n");
        assert_eq!(e.key(), Some("receive-buffer"));
        let (e, shown) = error("receive-buffer = \"4GiB\"\n");
        assert_eq!(e.key(), Some("receive-buffer"));
        assert!(shown.contains("SO_RCVBUF"), "{shown}");
        let (e, _) = error("receive-buffer = 1.5\n");
        assert_eq!(e.key(), Some("receive-buffer"));
    }

    #[test]
    fn duration_strings_parse() {
        for (text, duration) in [
            ("0s", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("10 s", Duration::from_secs(10)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
        ] {
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        let c = parse("shutdown-grace = 30").expect("integer seconds");
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in [
            "",
            "10",
            "s",
            "1.5s",
            "10 sec",
            "-1s",
            "1d",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
        for text in [
            "shutdown-grace = -1",
            "shutdown-grace = \"10\"",
            "shutdown-grace = \"2d\"",
            "shutdown-grace = \"61m\"",
            "shutdown-grace = 1.5",
        ] {
            let (e, shown) = error(text);
            assert_eq!(e.key(), Some("shutdown-grace"), "{text}: {shown}");
            assert_eq!(e.position().map(|p| p.line), Some(1), "{text}: {shown}");
        }
    }

    #[test]
    fn out_of_range_values_point_at_their_line() {
        for (text, key, line) in [
            ("timeout = 3\nmax-blksize = 7\n", "max-blksize", 2),
            ("max-blksize = 65465", "max-blksize", 1),
            ("\n\ntimeout = 0", "timeout", 3),
            ("timeout = 256", "timeout", 1),
            (
                "log-level = \"info\"\nmax-windowsize = 0",
                "max-windowsize",
                2,
            ),
            ("max-windowsize = 65536", "max-windowsize", 1),
            ("retries = -1", "retries", 1),
            ("max-transfers = 0", "max-transfers", 1),
            ("max-transfers = 99999999999999", "max-transfers", 1),
            ("timeout = \"2s\"", "timeout", 1),
            ("log-level = \"verbose\"", "log-level", 1),
            ("single-port = \"yes\"", "single-port", 1),
            ("listen = [\"[::]:69\", \"localhost:69\"]", "listen[1]", 1),
            ("listen = \"[::]:69\"", "listen", 1),
            ("[upload]\n\nenabled = 1", "upload.enabled", 3),
        ] {
            let (e, shown) = error(text);
            assert_eq!(e.key(), Some(key), "{text}: {shown}");
            assert_eq!(e.position().map(|p| p.line), Some(line), "{text}: {shown}");
        }
    }

    #[test]
    fn listen_addresses_must_be_an_ip_and_port() {
        let (e, shown) = error("listen = [\"[::]:69\", \"localhost:69\"]");
        assert_eq!(e.key(), Some("listen[1]"));
        assert!(shown.contains("host names are not resolved"), "{shown}");
        let (_, shown) = error("log-level = 3");
        assert!(shown.contains("\"error\", \"warn\""), "{shown}");
    }

    #[test]
    fn range_error_display_is_file_line_column_key_reason() {
        let (_, shown) = error("timeout = 3\nmax-blksize = 7\n");
        assert_eq!(
            shown,
            "/etc/tftpd.toml:2:15: key `max-blksize`: must be an integer from 8 to 65464, not 7"
        );
    }

    #[test]
    fn syntax_error_gives_file_line_column() {
        let (e, shown) = error("timeout = 3\nretries = = 4\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        assert!(shown.starts_with("/etc/tftpd.toml:2:"), "{shown}");
        let (e, shown) = error("[upload\n");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        assert!(shown.starts_with("/etc/tftpd.toml:1:"), "{shown}");
        let (e, _) = error("timeout = 1\ntimeout = 2\n");
        assert!(
            matches!(e, ConfigError::Syntax { .. }),
            "duplicate key: {e:?}"
        );
        assert_eq!(e.position().map(|p| p.line), Some(2));
    }

    #[test]
    fn unknown_keys_are_rejected_and_named() {
        for (text, key, line) in [
            ("max-blocksize = 512", "max-blocksize", 1),
            (
                "[upload]\nenabled = true\nmax-size = 1",
                "upload.max-size",
                3,
            ),
            (
                "[[preseed]]\npath = \"/srv\"\n[[preseed]]\npath = \"/x\"\nprefx = \"a\"",
                "preseed[1].prefx",
                5,
            ),
            ("[download]\n", "download", 1),
        ] {
            let (e, shown) = error(text);
            assert_eq!(e.key(), Some(key), "{text}: {shown}");
            assert_eq!(e.position().map(|p| p.line), Some(line), "{text}: {shown}");
            assert!(shown.contains("unknown field"), "{shown}");
        }
    }

    #[test]
    fn a_preseed_entry_needs_a_usable_path() {
        let (e, shown) = error("[[preseed]]\nprefix = \"pxe\"\n");
        assert!(shown.contains("missing field `path`"), "{shown}");
        assert_eq!(e.position().map(|p| p.line), Some(1), "{shown}");
        let (e, _) = error("[[preseed]]\npath = \"\"\n");
        assert_eq!(e.key(), Some("preseed[0].path"));
        assert_eq!(e.position().map(|p| p.line), Some(2));
    }

    #[test]
    fn prefixes_are_normalised_and_traversal_refused() {
        assert_eq!(normalize_prefix(""), Ok(String::new()));
        assert_eq!(normalize_prefix("/"), Ok(String::new()));
        assert_eq!(normalize_prefix("pxe"), Ok("pxe/".to_owned()));
        assert_eq!(
            normalize_prefix("/pxe//boot\\x/"),
            Ok("pxe/boot/x/".to_owned())
        );
        assert_eq!(normalize_prefix("a..b/c"), Ok("a..b/c/".to_owned()));
        for bad in ["..", "a/../b", "a\\..", "./a", "a/.", "a\0b"] {
            assert!(normalize_prefix(bad).is_err(), "{bad:?} was accepted");
        }
        let (e, _) = error("[[preseed]]\npath = \"/srv\"\nprefix = \"../etc\"\n");
        assert_eq!(e.key(), Some("preseed[0].prefix"));
        assert_eq!(e.position().map(|p| p.line), Some(3));
        let (e, _) = error("[upload]\nallow = [\n  \"ok/\",\n  \"a/../..\",\n]\n");
        assert_eq!(e.key(), Some("upload.allow[1]"));
        assert_eq!(e.position(), Some(Position { line: 4, column: 3 }));
        let (e, _) = error("[upload]\nallow = [\"/\"]\n");
        assert_eq!(e.key(), Some("upload.allow[0]"));
    }

    #[test]
    fn cross_field_errors_point_at_the_key_set() {
        let (e, shown) = error("[upload]\nmax-file-size = \"1GiB\"\n");
        assert_eq!(e.key(), Some("upload.max-file-size"), "{shown}");
        assert_eq!(e.position().map(|p| p.line), Some(2));
        assert!(shown.contains("must not exceed max-total-size"), "{shown}");

        let (e, _) = error("[upload]\nmax-total-size = \"1MiB\"\n");
        assert_eq!(e.key(), Some("upload.max-total-size"));

        let (e, shown) = error("max-transfers = 8\n");
        assert_eq!(e.key(), Some("max-transfers"), "{shown}");
        let (e, _) = error("max-transfers = 100\nmax-transfers-per-client = 101\n");
        assert_eq!(e.key(), Some("max-transfers-per-client"));
        assert_eq!(e.position().map(|p| p.line), Some(2));

        let (e, _) = error("\nlisten = []\n");
        assert_eq!(e.key(), Some("listen"));
        assert_eq!(e.position().map(|p| p.line), Some(2));
        let (e, _) = error("listen = [\"[::]:69\", \"[::]:69\"]\n");
        assert_eq!(e.key(), Some("listen[1]"));

        assert!(parse("[upload]\nmax-file-size = 5\nmax-total-size = 5\n").is_ok());
        assert!(parse("max-transfers = 16\n").is_ok());
    }

    #[test]
    fn positions_count_characters_from_one() {
        let text = "a\né = 1\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 2), Position { line: 2, column: 1 });
        assert_eq!(Position::of(text, 5), Position { line: 2, column: 3 });
        assert_eq!(
            Position::of(text, 3),
            Position { line: 2, column: 1 },
            "inside é"
        );
        assert_eq!(Position::of(text, 999), Position { line: 3, column: 1 });
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
