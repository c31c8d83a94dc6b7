//! The raw configuration: the structs the TOML text is deserialised into, every table with
//! `deny_unknown_fields` and every value a validating newtype from `value`, and the
//! cross-field checks that turn them into a validated [`Config`] with every default filled
//! in. Errors found here point at the key that was set, through [`toml::Spanned`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::origin::RawOrigin;
use super::policy::{
    BlockLimitValue, OptionName, PortRangeValue, RawClient, RawRules, RewriteValue,
};
use super::value::{
    DurationValue, Format, Level, ListenAddr, NamePrefix, OnErrorValue, Ranged, Size,
    normalize_prefix,
};
use super::{Config, MAX_RECEIVE_BUFFER, MAX_RETRIES, MAX_SHUTDOWN_GRACE, MAX_TRANSFERS_LIMIT};
use crate::endpoint::{BlockLimit, Settings, UploadsInFlight};
use crate::proto::{
    MAX_BLKSIZE, MAX_TIMEOUT_SECS, MAX_WINDOWSIZE, MIN_TIMEOUT_SECS, MIN_WINDOWSIZE,
};
use crate::store::{PreseedSource, UploadPolicy};
use crate::transfer::TransferConfig;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawConfig {
    listen: Option<Spanned<Vec<ListenAddr>>>,
    single_port: Option<bool>,
    max_transfers: Option<Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    max_transfers_per_client: Option<Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    max_unverified_per_client: Option<Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    ipv6_client_prefix: Option<Ranged<u8, 32, 128>>,
    max_timeout: Option<Ranged<u8, { MIN_TIMEOUT_SECS as i64 }, { MAX_TIMEOUT_SECS as i64 }>>,
    timeout: Option<Ranged<u64, { MIN_TIMEOUT_SECS as i64 }, { MAX_TIMEOUT_SECS as i64 }>>,
    retries: Option<Ranged<u32, 0, { MAX_RETRIES as i64 }>>,
    max_blksize: Option<BlockLimitValue>,
    max_windowsize: Option<Ranged<u16, { MIN_WINDOWSIZE as i64 }, { MAX_WINDOWSIZE as i64 }>>,
    read: Option<bool>,
    write: Option<bool>,
    root: Option<NamePrefix>,
    fallback: Option<bool>,
    rewrite: Option<Vec<RewriteValue>>,
    refuse_options: Option<Vec<OptionName>>,
    port_range: Option<Spanned<PortRangeValue>>,
    #[serde(default)]
    client: Vec<RawClient>,
    shutdown_grace: Option<Spanned<DurationValue>>,
    case_insensitive: Option<bool>,
    log_level: Option<Level>,
    log_format: Option<Format>,
    control_socket: Option<Spanned<String>>,
    receive_buffer: Option<Spanned<Size>>,
    watch: Option<bool>,
    #[serde(default)]
    preseed: Vec<RawPreseed>,
    upload: Option<RawUpload>,
    origin: Option<RawOrigin>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPreseed {
    path: Spanned<String>,
    prefix: Option<NamePrefix>,
    optional: Option<bool>,
    on_error: Option<OnErrorValue>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawUpload {
    enabled: Option<bool>,
    max_file_size: Option<Spanned<Size>>,
    max_total_size: Option<Spanned<Size>>,
    overwrite: Option<bool>,
    allow: Option<Vec<Spanned<String>>>,
    max_per_client: Option<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>,
    spool: Option<Spanned<String>>,
}

impl RawConfig {
    pub(super) fn validate(self, source: &Source<'_>) -> Result<Config, ConfigError> {
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
            .map_or(defaults.endpoint.max_transfers, |v| v.get_ref().0);
        // Left out, a per-client limit is the default or the limit above it, whichever is
        // lower; set, it must not exceed that limit.
        let max_transfers_per_client = at_most(
            source,
            self.max_transfers_per_client.as_ref(),
            defaults.endpoint.max_transfers_per_client,
            ("max-transfers-per-client", max_transfers),
            ("max-transfers", self.max_transfers.as_ref()),
        )?;
        let max_unverified_per_client = at_most(
            source,
            self.max_unverified_per_client.as_ref(),
            defaults.endpoint.max_unverified_per_client,
            ("max-unverified-per-client", max_transfers_per_client),
            (
                "max-transfers-per-client",
                self.max_transfers_per_client.as_ref(),
            ),
        )?;

        let shutdown_grace = match self.shutdown_grace {
            None => defaults.endpoint.shutdown_grace,
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
        let control_socket = match self.control_socket {
            None => defaults.control_socket,
            Some(path) if path.get_ref().is_empty() => None,
            Some(path) if path.get_ref().contains('\0') => {
                return Err(source.invalid(
                    path.span(),
                    "control-socket",
                    "must not contain a NUL character",
                ));
            }
            Some(path) => Some(base.join(path.into_inner())),
        };
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
            preseed.push(PreseedSource {
                path: base.join(path),
                prefix: entry.prefix.map(|p| p.0).unwrap_or_default(),
                optional: entry.optional.unwrap_or(false),
                on_error: entry.on_error.map(|v| v.0).unwrap_or_default(),
            });
        }

        let (upload, upload_limits, upload_spool) = match self.upload {
            None => (defaults.upload, defaults.endpoint.uploads_in_flight, None),
            Some(raw) => raw.validate(
                source,
                base,
                defaults.upload,
                defaults.endpoint.uploads_in_flight,
            )?,
        };

        let origin = match self.origin {
            None => None,
            Some(raw) => Some(raw.validate(source, base, upload_spool.is_some())?),
        };

        let default = defaults.endpoint.transfer;
        let single_port = self.single_port.unwrap_or(defaults.endpoint.single_port);
        let port_range = match self.port_range {
            Some(range) if single_port && range.get_ref().0.is_some() => {
                return Err(source.invalid(
                    range.span(),
                    "port-range",
                    "with single-port = true every transfer runs on the listening socket, so \
                     there are no transfer ports to bound; leave port-range out",
                ));
            }
            Some(range) => range.into_inner().0,
            None => defaults.endpoint.port_range,
        };
        let max_windowsize = self.max_windowsize.map_or(default.max_windowsize, |v| v.0);
        let max_blksize = self
            .max_blksize
            .map_or(defaults.endpoint.policy.top.max_blksize, |v| v.0);
        let top = RawRules {
            read: self.read,
            write: self.write,
            root: self.root,
            fallback: self.fallback,
            rewrite: self.rewrite,
            max_blksize: Some(BlockLimitValue(max_blksize)),
            max_windowsize: Some(Ranged(max_windowsize)),
            refuse_options: self.refuse_options,
        };
        let policy = super::policy::build(source, top, self.client, &upload)?;
        let transfer = TransferConfig {
            timeout: self
                .timeout
                .map_or(default.timeout, |v| Duration::from_secs(v.0)),
            retries: self.retries.map_or(default.retries, |v| v.0),
            // The caps before policy: each request's rules set its own.
            max_blksize: match max_blksize {
                BlockLimit::Fixed(limit) => limit,
                BlockLimit::Mtu => MAX_BLKSIZE,
            },
            max_windowsize,
            max_timeout: self.max_timeout.map_or(default.max_timeout, |v| v.0),
            max_upload_size: upload.max_file_size,
        };
        let endpoint = Settings {
            transfer,
            max_transfers,
            max_transfers_per_client,
            max_unverified_per_client,
            ipv6_client_prefix: (self.ipv6_client_prefix)
                .map_or(defaults.endpoint.ipv6_client_prefix, |v| v.0),
            single_port,
            shutdown_grace,
            uploads_in_flight: upload_limits,
            policy: std::sync::Arc::new(policy),
            port_range,
        };

        Ok(Config {
            listen,
            endpoint,
            case_insensitive: self.case_insensitive.unwrap_or(defaults.case_insensitive),
            log_level: self.log_level.map_or(defaults.log_level, |v| v.0),
            log_format: self.log_format.map_or(defaults.log_format, |v| v.0),
            control_socket,
            receive_buffer,
            watch: self.watch.unwrap_or(defaults.watch),
            preseed,
            upload,
            upload_spool,
            origin,
        })
    }
}

impl RawUpload {
    /// The store's policy, the endpoint's per-client limits and the spool directory
    /// (resolved against `base`, the configuration file's directory).
    fn validate(
        self,
        source: &Source<'_>,
        base: &Path,
        defaults: UploadPolicy,
        default_limits: UploadsInFlight,
    ) -> Result<(UploadPolicy, UploadsInFlight, Option<PathBuf>), ConfigError> {
        let limits = UploadsInFlight {
            max_per_client: (self.max_per_client).map_or(default_limits.max_per_client, |v| v.0),
        };
        let spool = match self.spool {
            None => None,
            Some(spool) => {
                let span = spool.span();
                let path = spool.into_inner();
                if path.is_empty() || path.contains('\0') {
                    return Err(source.invalid(
                        span,
                        "upload.spool",
                        "must be a directory path, not empty and without NUL",
                    ));
                }
                Some(base.join(path))
            }
        };
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

        let policy = UploadPolicy {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            max_file_size,
            max_total_size,
            overwrite: self.overwrite.unwrap_or(defaults.overwrite),
            allow,
        };
        Ok((policy, limits, spool))
    }
}

/// A limit that may not exceed another: `value` when set (an error naming `key` if it is
/// above `limit`), else the lower of `default` and `limit`.
fn at_most(
    source: &Source<'_>,
    value: Option<&Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    default: usize,
    (key, limit): (&str, usize),
    (limit_key, limit_value): (
        &str,
        Option<&Spanned<Ranged<usize, 1, { MAX_TRANSFERS_LIMIT as i64 }>>>,
    ),
) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default.min(limit));
    };
    let set = value.get_ref().0;
    if set <= limit {
        return Ok(set);
    }
    let shown = limit_value.map_or(String::from("its default"), |_| limit.to_string());
    Err(source.invalid(
        value.span(),
        key,
        format!("{key} ({set}) must not exceed {limit_key} ({shown}: {limit})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::proto::MIN_BLKSIZE;

    #[test]
    fn ranges_are_the_protocol_ranges() {
        for (key, min, max) in [
            (
                "timeout",
                i64::from(MIN_TIMEOUT_SECS),
                i64::from(MAX_TIMEOUT_SECS),
            ),
            (
                "max-blksize",
                i64::from(MIN_BLKSIZE),
                i64::from(MAX_BLKSIZE),
            ),
            (
                "max-windowsize",
                i64::from(MIN_WINDOWSIZE),
                i64::from(MAX_WINDOWSIZE),
            ),
            ("retries", 0, i64::from(MAX_RETRIES)),
        ] {
            for ok in [min, max] {
                assert!(parse(&format!("{key} = {ok}")).is_ok(), "{key} = {ok}");
            }
            for bad in [min - 1, max + 1] {
                let (e, shown) = error(&format!("{key} = {bad}"));
                assert_eq!(e.key(), Some(key), "{shown}");
                assert!(shown.contains(&format!("from {min} to {max}")), "{shown}");
            }
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
    fn a_preseed_entry_needs_a_usable_path() {
        let (e, shown) = error("[[preseed]]\nprefix = \"pxe\"\n");
        assert!(shown.contains("missing field `path`"), "{shown}");
        assert_eq!(e.position().map(|p| p.line), Some(1), "{shown}");
        let (e, _) = error("[[preseed]]\npath = \"\"\n");
        assert_eq!(e.key(), Some("preseed[0].path"));
        assert_eq!(e.position().map(|p| p.line), Some(2));
    }

    #[test]
    fn cross_field_errors_point_at_the_key_set() {
        let (e, shown) = error("[upload]\nmax-file-size = \"1GiB\"\n");
        assert_eq!(e.key(), Some("upload.max-file-size"), "{shown}");
        assert_eq!(e.position().map(|p| p.line), Some(2));
        assert!(shown.contains("must not exceed max-total-size"), "{shown}");

        let (e, _) = error("[upload]\nmax-total-size = \"1MiB\"\n");
        assert_eq!(e.key(), Some("upload.max-total-size"));

        // A limit left out follows a lower one above it; one that is set must fit.
        let c = parse("max-transfers = 8\n").expect("per-client limits follow");
        let e = &c.endpoint;
        assert_eq!(
            (e.max_transfers_per_client, e.max_unverified_per_client),
            (8, 8)
        );
        let (e, _) = error("max-transfers = 100\nmax-transfers-per-client = 101\n");
        assert_eq!(e.key(), Some("max-transfers-per-client"));
        assert_eq!(e.position().map(|p| p.line), Some(2));
        let (e, shown) = error("max-transfers-per-client = 10\nmax-unverified-per-client = 11\n");
        assert_eq!(e.key(), Some("max-unverified-per-client"), "{shown}");
        assert_eq!(e.position().map(|p| p.line), Some(2));

        let (e, _) = error("\nlisten = []\n");
        assert_eq!(e.key(), Some("listen"));
        assert_eq!(e.position().map(|p| p.line), Some(2));
        let (e, _) = error("listen = [\"[::]:69\", \"[::]:69\"]\n");
        assert_eq!(e.key(), Some("listen[1]"));

        assert!(parse("[upload]\nmax-file-size = 5\nmax-total-size = 5\n").is_ok());
        assert!(parse("max-transfers = 16\n").is_ok());
    }
}
