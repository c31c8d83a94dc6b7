//! The metrics in the Prometheus text exposition format (version 0.0.4), from the
//! endpoint's counters and the daemon's figures. Counters never reset while the daemon
//! runs; no label names a client or a file, so the number of series is fixed (the
//! origin's generation labels have one value at a time). Every name starts with `tftpd_`;
//! the list is in tftpd(8).

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::View;
use super::origin::OriginView;
use crate::endpoint::{OPS, OUTCOMES, RequestResult};
use crate::origin::status::RoundResult;

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
    if let Some(origin) = view.origin {
        render_origin(&mut out, origin);
    }
    out
}

/// The origin's families, when the configuration has an `[origin]` table: gauges the
/// daemon knows and those of the sync's status file, whose counters live in that file and
/// so never reset when the sync (another process) starts again.
fn render_origin(out: &mut String, origin: &OriginView) {
    let mut f = family(
        out,
        "tftpd_origin_generation_info",
        "gauge",
        "The origin's generation served (the cache's current at the last load), as a label; \
         always 1.",
    );
    if let Some(generation) = &origin.served {
        f.sample(&[("generation", generation)], 1);
    }
    let mut f = family(
        out,
        "tftpd_origin_synced_generation_info",
        "gauge",
        "The generation the sync's last round left the cache at, as a label; always 1.",
    );
    let sync = origin.sync.as_ref();
    if let Some(generation) = sync.and_then(|s| s.generation.as_ref()) {
        f.sample(&[("generation", generation)], 1);
    }
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let times: [(&'static str, &str, Option<u64>); 3] = [
        (
            "tftpd_origin_last_success_timestamp_seconds",
            "When the sync's last successful round ended, in seconds since the Unix epoch.",
            sync.and_then(|s| s.last_success_ms),
        ),
        (
            "tftpd_origin_last_round_timestamp_seconds",
            "When the sync's last round ended, in seconds since the Unix epoch.",
            sync.map(|s| s.last_round_ms),
        ),
        (
            "tftpd_origin_last_switch_timestamp_seconds",
            "When the sync last switched the cache to a new generation, in seconds since the \
             Unix epoch.",
            sync.and_then(|s| s.last_switch_ms),
        ),
    ];
    for (name, help, ms) in times {
        let mut f = family(out, name, "gauge", help);
        if let Some(ms) = ms {
            f.sample(&[], seconds(ms));
        }
    }
    let mut f = family(
        out,
        "tftpd_origin_consecutive_failures",
        "gauge",
        "The sync's rounds failed since its last success.",
    );
    if let Some(sync) = sync {
        f.sample(&[], sync.consecutive_failures);
    }
    let mut f = family(
        out,
        "tftpd_origin_rounds_total",
        "counter",
        "The sync's rounds by result (switched, unchanged, failed), kept in its status file.",
    );
    if let Some(sync) = sync {
        for result in RoundResult::ALL {
            f.sample(&[("result", result.as_str())], sync.rounds.of(result));
        }
    }
    let help = "1 while the sync's status file cannot be read (the figures are the last read).";
    let unreadable = u8::from(origin.sync_error.is_some());
    family(out, "tftpd_origin_status_unreadable", "gauge", help).sample(&[], unreadable);
}
