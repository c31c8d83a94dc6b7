//! Transfer options (RFC 2347, 2348, 2349, 7440): what a request asks for and what an
//! OACK grants.
//!
//! Policy, applied the same way to every option: a name is matched ignoring ASCII
//! case; an unknown option is ignored and never echoed; a value that is not a plain
//! decimal number, or that lies outside the range its RFC allows, is **ignored** (the
//! option is treated as absent, so it is not acknowledged either); when an option
//! appears twice, the first one counts. Lowering an in-range value to the server's own
//! cap is negotiation, not parsing, and happens in the transfer module.

/// Smallest `blksize` RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
/// Largest `blksize` RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
/// Smallest `timeout` in seconds (RFC 2349).
pub const MIN_TIMEOUT_SECS: u8 = 1;
/// Largest `timeout` in seconds (RFC 2349).
pub const MAX_TIMEOUT_SECS: u8 = 255;
/// Smallest `windowsize` (RFC 7440).
pub const MIN_WINDOWSIZE: u16 = 1;
/// Largest `windowsize` (RFC 7440).
pub const MAX_WINDOWSIZE: u16 = 65535;

/// The options of a request or an OACK; `None` means absent (or ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferOptions {
    /// `blksize`: bytes per DATA block, 8..=65464.
    pub blksize: Option<u16>,
    /// `timeout`: retransmission timeout in seconds, 1..=255.
    pub timeout: Option<u8>,
    /// `tsize`: transfer size in bytes; 0 in a read request asks for the size.
    pub tsize: Option<u64>,
    /// `windowsize`: blocks sent before waiting for an ACK, 1..=65535.
    pub windowsize: Option<u16>,
}

impl TransferOptions {
    /// True when no option is present.
    pub fn is_empty(&self) -> bool {
        *self == TransferOptions::default()
    }

    /// Records one `name`/`value` pair from a packet, following the module's policy.
    pub fn apply(&mut self, name: &[u8], value: &[u8]) {
        let Some(number) = parse_decimal(value) else {
            return;
        };
        if name.eq_ignore_ascii_case(b"blksize") {
            set_once(
                &mut self.blksize,
                in_range(number, MIN_BLKSIZE, MAX_BLKSIZE),
            );
        } else if name.eq_ignore_ascii_case(b"timeout") {
            set_once(
                &mut self.timeout,
                in_range(number, MIN_TIMEOUT_SECS, MAX_TIMEOUT_SECS),
            );
        } else if name.eq_ignore_ascii_case(b"tsize") {
            set_once(&mut self.tsize, Some(number));
        } else if name.eq_ignore_ascii_case(b"windowsize") {
            set_once(
                &mut self.windowsize,
                in_range(number, MIN_WINDOWSIZE, MAX_WINDOWSIZE),
            );
        }
    }

    /// The present options as `(name, value)` pairs, in a fixed order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("blksize", self.blksize.map(u64::from)),
            ("timeout", self.timeout.map(u64::from)),
            ("tsize", self.tsize),
            ("windowsize", self.windowsize.map(u64::from)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
    }

    /// Bytes taken by the options on the wire (each as `name\0value\0`).
    pub fn encoded_len(&self) -> usize {
        self.pairs()
            .map(|(name, value)| name.len() + decimal_len(value) + 2)
            .sum()
    }
}

fn set_once<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

fn in_range<T: TryFrom<u64> + PartialOrd>(value: u64, min: T, max: T) -> Option<T> {
    T::try_from(value).ok().filter(|v| *v >= min && *v <= max)
}

/// Parses 1 to 20 ASCII digits into a `u64`, refusing signs, spaces and overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

pub(crate) fn decimal_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 10 {
        value /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> TransferOptions {
        let mut options = TransferOptions::default();
        for (name, value) in pairs {
            options.apply(name.as_bytes(), value.as_bytes());
        }
        options
    }

    #[test]
    fn option_names_are_case_insensitive() {
        let options = parsed(&[("BlkSize", "1468"), ("TSIZE", "0"), ("WindowSize", "16")]);
        assert_eq!(options.blksize, Some(1468));
        assert_eq!(options.tsize, Some(0));
        assert_eq!(options.windowsize, Some(16));
    }

    #[test]
    fn out_of_range_values_are_ignored() {
        let options = parsed(&[("blksize", "7"), ("timeout", "0"), ("windowsize", "0")]);
        assert!(options.is_empty());
        let options = parsed(&[
            ("blksize", "65465"),
            ("timeout", "256"),
            ("windowsize", "65536"),
        ]);
        assert!(options.is_empty());
        let options = parsed(&[
            ("blksize", "8"),
            ("timeout", "255"),
            ("windowsize", "65535"),
        ]);
        assert_eq!(options.blksize, Some(8));
        assert_eq!(options.timeout, Some(255));
        assert_eq!(options.windowsize, Some(65535));
    }

    #[test]
    fn unparsable_values_and_unknown_options_are_ignored() {
        let options = parsed(&[
            ("blksize", "+512"),
            ("blksize", " 512"),
            ("timeout", ""),
            ("tsize", "99999999999999999999999"),
            ("multicast", "1"),
        ]);
        assert!(options.is_empty());
    }

    #[test]
    fn the_first_of_two_equal_options_counts() {
        let options = parsed(&[("blksize", "1024"), ("blksize", "2048")]);
        assert_eq!(options.blksize, Some(1024));
    }

    #[test]
    fn encoded_length_counts_names_values_and_terminators() {
        let options = parsed(&[("blksize", "1468"), ("tsize", "0")]);
        assert_eq!(
            options.encoded_len(),
            b"blksize\x001468\x00tsize\x000\x00".len()
        );
        assert_eq!(decimal_len(0), 1);
        assert_eq!(decimal_len(u64::MAX), 20);
    }
}
