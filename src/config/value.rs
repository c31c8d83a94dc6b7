//! The values of the configuration that check themselves while they are deserialised, so
//! that an error carries the span of the offending value: integers in a range, sizes with
//! units, durations with units, log levels, `listen` addresses, name prefixes and `on-error`. The
//! units and the prefix rules are described in the [module documentation](super).

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use log::LevelFilter;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::logs::LogFormat;
use crate::name::{NameError, normalize_name};
use crate::store::OnError;

/// An integer in `MIN..=MAX`, stored as `T`.
#[derive(Debug)]
pub(super) struct Ranged<T, const MIN: i64, const MAX: i64>(pub(super) T);

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
pub(super) struct Size(pub(super) u64);

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
pub(super) struct DurationValue(pub(super) Duration);

/// Parses a duration string (see the module documentation for the units).
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
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
pub(super) struct Level(pub(super) LevelFilter);

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

/// A `log-format` name.
#[derive(Debug)]
pub(super) struct Format(pub(super) LogFormat);

const FORMAT_NAMES: &str = "\"auto\", \"journal\", \"text\" or \"json\"";

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FormatVisitor;

        impl Visitor<'_> for FormatVisitor {
            type Value = Format;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "one of {FORMAT_NAMES}")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Format, E> {
                LogFormat::from_name(name).map(Format).ok_or_else(|| {
                    E::custom(format!(
                        "unknown log format {name:?}, expected {FORMAT_NAMES}"
                    ))
                })
            }
        }

        deserializer.deserialize_str(FormatVisitor)
    }
}

/// A `[[preseed]] on-error` value: `"skip"` or `"fail"`.
#[derive(Debug)]
pub(super) struct OnErrorValue(pub(super) OnError);

impl<'de> Deserialize<'de> for OnErrorValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnErrorVisitor;

        impl Visitor<'_> for OnErrorVisitor {
            type Value = OnErrorValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"skip\" or \"fail\"")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<OnErrorValue, E> {
                match name {
                    "skip" => Ok(OnErrorValue(OnError::Skip)),
                    "fail" => Ok(OnErrorValue(OnError::Fail)),
                    _ => Err(E::custom(format!(
                        "unknown value {name:?}, expected \"skip\" (leave out what cannot \
                         be read) or \"fail\" (stop the load)"
                    ))),
                }
            }
        }

        deserializer.deserialize_str(OnErrorVisitor)
    }
}

/// A `listen` address: an IP address and a port; host names are not resolved.
#[derive(Debug)]
pub(super) struct ListenAddr(pub(super) SocketAddr);

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
pub(super) struct NamePrefix(pub(super) String);

/// Normalises a name prefix by the name rules ([`normalize_name`]): `\` is `/`,
/// empty components are dropped, and a non-empty result ends in `/`. A prefix names a place
/// explicitly, so a `.` component, which a request name may carry, is refused here too.
pub(super) fn normalize_prefix(text: &str) -> Result<String, String> {
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
    use super::super::Position;
    use super::super::testing::*;
    use super::*;
    use std::time::Duration;

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
        assert_eq!(c.endpoint.shutdown_grace, Duration::from_secs(30));
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
    fn listen_addresses_must_be_an_ip_and_port() {
        let (e, shown) = error("listen = [\"[::]:69\", \"localhost:69\"]");
        assert_eq!(e.key(), Some("listen[1]"));
        assert!(shown.contains("host names are not resolved"), "{shown}");
        let (_, shown) = error("log-level = 3");
        assert!(shown.contains("\"error\", \"warn\""), "{shown}");
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
}
