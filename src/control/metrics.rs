//! The metrics in the Prometheus text exposition format (version 0.0.4), from the
//! endpoint's counters and the daemon's figures. Counters never reset while the daemon
//! runs; no label names a client or a file, so the number of series is fixed. Every name
//! starts with `tftpd_`; the list is in tftpd(8).

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::View;
use crate::endpoint::{OPS, OUTCOMES, RequestResult};

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                // Label values here are fixed words; escape anyway, as the format says.
                let escaped = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// The exposition text for the server `view` shows.
pub fn render(view: &View<'_>) -> String {
    let c = view.counters;
    let t = &c.tallies;
    let mut out = String::with_capacity(4096);

    let mut f = family(
        &mut out,
        "tftpd_build_info",
        "gauge",
        "memtftpd's version, as a label; always 1.",
    );
    f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);

    let started = (view.daemon.started_wall.duration_since(UNIX_EPOCH))
        .unwrap_or_default()
        .as_secs_f64();
    let mut f = family(
        &mut out,
        "tftpd_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the Unix epoch.",
    );
    f.sample(&[], started);

    let mut f = family(
        &mut out,
        "tftpd_requests_total",
        "counter",
        "Read and write requests by operation and what became of them.",
    );
    for op in OPS {
        for result in RequestResult::ALL {
            let labels = [("op", op.as_str()), ("result", result.as_str())];
            f.sample(&labels, t.requests_of(op, result));
        }
    }

    let mut f = family(
        &mut out,
        "tftpd_transfers_total",
        "counter",
        "Transfers ended, by operation and outcome.",
    );
    for (i, op) in OPS.iter().enumerate() {
        for (j, outcome) in OUTCOMES.iter().enumerate() {
            let labels = [("op", op.as_str()), ("outcome", *outcome)];
            f.sample(&labels, t.transfers[i][j]);
        }
    }

    let mut f = family(
        &mut out,
        "tftpd_transfer_bytes_total",
        "counter",
        "File bytes delivered by ended transfers (read: acknowledged; write: received).",
    );
    for (i, op) in OPS.iter().enumerate() {
        f.sample(&[("op", op.as_str())], t.bytes[i]);
    }

    let mut f = family(
        &mut out,
        "tftpd_retransmissions_total",
        "counter",
        "Packets sent again by ended transfers, after a timeout or a peer's request.",
    );
    for (i, op) in OPS.iter().enumerate() {
        f.sample(&[("op", op.as_str())], t.retransmits[i]);
    }

    let mut f = family(
        &mut out,
        "tftpd_transfers_active",
        "gauge",
        "Transfers in flight, by operation.",
    );
    for (i, op) in OPS.iter().enumerate() {
        f.sample(&[("op", op.as_str())], c.active_by_op[i]);
    }

    let mut f = family(
        &mut out,
        "tftpd_transfers_unverified",
        "gauge",
        "Transfers in flight whose peer has not answered yet.",
    );
    f.sample(&[], c.unverified);

    let mut f = family(
        &mut out,
        "tftpd_stray_datagrams_total",
        "counter",
        "Datagrams on a listening socket that were no request (garbage, stray DATA or ACK).",
    );
    f.sample(&[], t.stray);

    let gauges: [(&'static str, &str, u64); 4] = [
        (
            "tftpd_store_files",
            "Files stored, preseeded and uploaded.",
            c.files,
        ),
        ("tftpd_store_bytes", "Bytes of the files stored.", c.bytes),
        (
            "tftpd_store_upload_files",
            "Uploaded files stored.",
            c.uploaded_files,
        ),
        (
            "tftpd_store_upload_bytes",
            "Bytes of the uploaded files stored (counted against max-total-size).",
            c.uploaded_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help).sample(&[], value);
    }
    let help = "The store's generation: it grows with every change of what is served.";
    family(&mut out, "tftpd_store_generation", "gauge", help).sample(&[], c.generation);
    let help = "Entries the last preseed load skipped (unreadable, not a regular file, ...).";
    family(&mut out, "tftpd_preseed_skipped", "gauge", help).sample(&[], c.skipped);

    let mut f = family(
        &mut out,
        "tftpd_reloads_total",
        "counter",
        "Reloads by result: ok (took effect) or failed (the running configuration stayed).",
    );
    f.sample(&[("result", "ok")], view.daemon.reloads_ok);
    f.sample(&[("result", "failed")], view.daemon.reloads_failed);
    out
}
