//! The tables `tftpd ctl` prints by default: each result of the control protocol as text
//! for a person (`--json` prints the answer as it came instead). Columns are padded to
//! their widest cell; sizes are in bytes with a binary unit.

use super::origin::OriginReport;
use super::report::{FilesReport, LogLevel, ReloadReport, StatusReport, TransfersReport};

/// `n` bytes as `123 B`, `1.5 KiB`, `20.0 MiB`, ...
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Rows under a header, each column as wide as its widest cell; the last column is not
/// padded.
fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// `status`.
pub fn status(s: &StatusReport) -> String {
    let reload = match &s.last_reload {
        None => "none".to_owned(),
        Some(r) if r.ok => format!("{}, ok", r.at),
        Some(r) => format!("{}, failed: {}", r.at, r.error.as_deref().unwrap_or("")),
    };
    let t = &s.transfers;
    let rows = [
        (
            "version",
            format!("memtftpd {} (pid {})", s.server.version, s.server.pid),
        ),
        (
            "uptime",
            format!(
                "{:.0} s (since {})",
                s.server.uptime_seconds, s.server.started
            ),
        ),
        ("generation", s.generation.to_string()),
        (
            "skipped",
            format!("{} preseed entries at the last load", s.skipped),
        ),
        (
            "store",
            format!("{} files, {}", s.store.files, size(s.store.bytes)),
        ),
        (
            "uploads",
            format!("{} files, {}", s.store.uploads, size(s.store.upload_bytes)),
        ),
        (
            "transfers",
            format!(
                "{} active ({} read, {} write; {} verified, {} unverified)",
                t.active, t.read, t.write, t.verified, t.unverified
            ),
        ),
        (
            "served",
            format!(
                "{} ended, {} refused, {} dropped for want of room",
                s.served, s.refused, s.dropped
            ),
        ),
        (
            "reloads",
            format!("{} ok, {} failed", s.reloads.ok, s.reloads.failed),
        ),
        ("last reload", reload),
        ("log level", s.log_level.clone()),
    ];
    let mut out = String::new();
    for (key, value) in rows
        .into_iter()
        .chain(s.origin.as_ref().map_or(Vec::new(), origin))
    {
        out.push_str(&format!("{:<12} {value}\n", format!("{key}:")));
    }
    out
}

/// `status`'s rows about the origin.
fn origin(o: &OriginReport) -> Vec<(&'static str, String)> {
    let mut synced = or_dash(o.last_success.clone());
    if o.consecutive_failures > 0 {
        synced.push_str(&format!(
            "; {} failed round(s) since, the last at {}: {}",
            o.consecutive_failures,
            or_dash(o.last_round.clone()),
            or_dash(o.last_error.clone())
        ));
    }
    let mut rows = vec![
        ("origin", or_dash(o.generation.clone())),
        ("last sync", synced),
    ];
    if o.synced_generation.is_some() && o.synced_generation != o.generation {
        rows.push((
            "cache at",
            format!("{} (not loaded yet)", or_dash(o.synced_generation.clone())),
        ));
    }
    if let Some(e) = &o.status_error {
        rows.push(("sync status", format!("unreadable: {e}")));
    }
    rows
}

/// `transfers`.
pub fn transfers(r: &TransfersReport) -> String {
    if r.transfers.is_empty() {
        return "no transfers in flight\n".to_owned();
    }
    let rows: Vec<Vec<String>> = (r.transfers.iter())
        .map(|t| {
            let mut options = format!("blksize={} windowsize={}", t.blksize, t.windowsize);
            if let Some(tsize) = t.tsize {
                options.push_str(&format!(" tsize={tsize}"));
            }
            vec![
                t.peer.clone(),
                t.op.clone(),
                if t.verified { "yes" } else { "no" }.to_owned(),
                size(t.bytes),
                format!("{}/s", size(t.bytes_per_second as u64)),
                t.retransmits.to_string(),
                format!("{:.1}s", t.age_seconds),
                options,
                t.file.clone(),
            ]
        })
        .collect();
    let header = [
        "PEER", "OP", "VERIFIED", "BYTES", "RATE", "RETRANS", "AGE", "OPTIONS", "FILE",
    ];
    grid(&header, &rows)
}

/// `files` and `uploads`.
pub fn files(r: &FilesReport) -> String {
    if r.files.is_empty() {
        return "no files\n".to_owned();
    }
    let rows: Vec<Vec<String>> = (r.files.iter())
        .map(|f| {
            let source = match &f.path {
                Some(path) => format!("{} {path}", f.source),
                None => f.source.clone(),
            };
            vec![
                f.size.to_string(),
                f.reads.to_string(),
                or_dash(f.loaded.clone()),
                source,
                f.name.clone(),
            ]
        })
        .collect();
    let mut out = grid(&["SIZE", "READS", "LOADED", "SOURCE", "NAME"], &rows);
    if r.truncated {
        out.push_str(&format!(
            "(the first {} files only: name a prefix to see others)\n",
            r.files.len()
        ));
    }
    out
}

/// `log-level`.
pub fn log_level(r: &LogLevel) -> String {
    format!("log level {} (was {})\n", r.log_level, r.was)
}

/// `reload`.
pub fn reload(r: &ReloadReport) -> String {
    let mut out = format!("reloaded: {} files, {} stored", r.files, size(r.bytes));
    if let Some(generation) = r.generation {
        out.push_str(&format!(", generation {generation}"));
    }
    out.push('\n');
    for (what, names) in [
        ("added", &r.added),
        ("changed", &r.changed),
        ("removed", &r.removed),
    ] {
        if let Some(names) = names {
            out.push_str(&format!("{what}: {}\n", names.len()));
            for name in names {
                out.push_str(&format!("  {name}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(20 << 20), "20.0 MiB");
    }

    #[test]
    fn grid_pads_every_column_but_the_last() {
        let rows = vec![vec!["1".to_owned(), "a-long-name".to_owned()]];
        assert_eq!(
            grid(&["SIZE", "NAME"], &rows),
            "SIZE  NAME\n1     a-long-name\n"
        );
    }
}
