//! Wall-clock times as text: RFC 3339 in UTC with milliseconds (`2026-12-01T14:25:26.123Z`),
//! for log lines and the control socket's answers. Pure arithmetic on a `SystemTime` the
//! caller read; no time-zone database.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (times before 1970 as the epoch).
pub fn rfc3339(t: SystemTime) -> String {
    let mut text = String::with_capacity(24);
    write_rfc3339(&mut text, t);
    text
}

/// Appends [`rfc3339`]'s text of `t` to `out`, digit by digit (a log line's timestamp,
/// written for every line, costs no formatting machinery).
pub fn write_rfc3339(out: &mut String, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let fields = [
        (year.clamp(0, 9999) as u32, 4usize, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        ((rest / 3600) as u32, 2, b':'),
        ((rest % 3600 / 60) as u32, 2, b':'),
        ((rest % 60) as u32, 2, b'.'),
        (since.subsec_millis(), 3, b'Z'),
    ];
    // "YYYY-MM-DDTHH:MM:SS.mmmZ": written into an array, appended once.
    let mut text = [0u8; 24];
    let mut at = 0;
    for (value, width, after) in fields {
        let mut rest = value;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        text[at + width] = after;
        at += width + 1;
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or("0000-00-00T00:00:00.000Z"));
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants_are_written_in_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_135_126); // 2026-12-01 14:25:26
        assert_eq!(rfc3339(t), "2026-12-01T14:25:26.000Z");
    }
}
