//! Figures of one measurement, medians over runs, and the table.
//!
//! Every figure is shown with its ratio to the best peer in the same scenario (the best
//! of dnsmasq, atftpd and tftpd-hpa that ran it): for rates (MiB/s, transfers/s) higher is
//! better, for costs (latency, CPU, memory) lower is better; the ratio is always
//! `value / best peer value`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::Scenario;
use crate::loadgen::Tally;
use crate::servers::Kind;

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// What one scenario against one server measured.
#[derive(Debug, Clone, Default)]
pub struct Measure {
    pub mib_s: f64,
    pub xfers_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Server CPU seconds per GiB moved.
    pub cpu_s_gib: f64,
    /// Server CPU microseconds per completed transfer.
    pub cpu_us_xfer: f64,
    /// Peak resident memory of the server (all its processes), MiB.
    pub rss_mib: f64,
    /// Peak resident memory above the idle server's, per transfer held at once, KiB.
    pub extra_kib_per_xfer: f64,
    /// The load generator's CPU as a share of the wall time, percent.
    pub client_cpu_pct: f64,
    /// The server's CPU as a share of the wall time, percent.
    pub server_cpu_pct: f64,
    pub completed: f64,
    pub failed: f64,
    pub peak_active: f64,
    /// Client retransmission timers that expired (lost or late packets).
    pub timeouts: f64,
    pub failure: Option<String>,
}

impl Measure {
    pub fn new(
        tally: &Tally,
        failure: Option<String>,
        server_cpu: Duration,
        rss_peak: u64,
        rss_idle: u64,
        rss_sampled: u64,
    ) -> Measure {
        let secs = tally.elapsed.as_secs_f64().max(1e-9);
        let cpu = server_cpu.as_secs_f64();
        Measure {
            mib_s: tally.bytes as f64 / MIB / secs,
            xfers_s: tally.completed as f64 / secs,
            p50_ms: tally.quantile(0.0).as_secs_f64() * 1e3,
            p99_ms: tally.quantile(1.0).as_secs_f64() * 1e3,
            cpu_s_gib: cpu / (tally.bytes as f64 / GIB).max(1e-12),
            cpu_us_xfer: cpu * 1e6 / (tally.completed as f64).max(1.0),
            rss_mib: rss_peak as f64 / MIB,
            extra_kib_per_xfer: rss_sampled.saturating_sub(rss_idle) as f64
                / 1024.0
                / (tally.peak_active as f64).max(1.0),
            client_cpu_pct: tally.cpu.as_secs_f64() / secs * 100.0,
            server_cpu_pct: cpu / secs * 100.0,
            completed: tally.completed as f64,
            failed: tally.failed as f64,
            peak_active: tally.peak_active as f64,
            timeouts: tally.timeouts as f64,
            failure,
        }
    }

    /// One line for the progress log.
    pub fn summary(&self) -> String {
        format!(
            "{:8.1} MiB/s {:8.0} xfers/s p50 {:.2} ms p99 {:.2} ms server {:.2} s/GiB {:.0} µs/xfer ({:.0}% CPU) rss {:.1} MiB client {:.0}% CPU, {} client timeouts, {} ok {} failed{}",
            self.mib_s,
            self.xfers_s,
            self.p50_ms,
            self.p99_ms,
            self.cpu_s_gib,
            self.cpu_us_xfer,
            self.server_cpu_pct,
            self.rss_mib,
            self.client_cpu_pct,
            self.timeouts,
            self.completed,
            self.failed,
            self.failure
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        )
    }

    /// The median of each figure over `runs`.
    pub fn median(runs: &[Measure]) -> Measure {
        let m = |f: fn(&Measure) -> f64| median(runs.iter().map(f).collect());
        Measure {
            mib_s: m(|x| x.mib_s),
            xfers_s: m(|x| x.xfers_s),
            p50_ms: m(|x| x.p50_ms),
            p99_ms: m(|x| x.p99_ms),
            cpu_s_gib: m(|x| x.cpu_s_gib),
            cpu_us_xfer: m(|x| x.cpu_us_xfer),
            rss_mib: m(|x| x.rss_mib),
            extra_kib_per_xfer: m(|x| x.extra_kib_per_xfer),
            client_cpu_pct: m(|x| x.client_cpu_pct),
            server_cpu_pct: m(|x| x.server_cpu_pct),
            completed: m(|x| x.completed),
            // Failures are summed, not hidden by a median.
            failed: runs.iter().map(|x| x.failed).sum(),
            peak_active: m(|x| x.peak_active),
            timeouts: m(|x| x.timeouts),
            failure: runs.iter().find_map(|x| x.failure.clone()),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Reads one CPU figure (per GiB or per transfer) of a measure.
type CpuFigure = fn(&Measure) -> f64;

/// The raw UDP limits: (payload bytes, MiB/s), and the storm's serving end's CPU
/// (payload bytes, µs per round trip).
#[derive(Debug, Clone, Default)]
pub struct RawLimits {
    pub pingpong: Vec<(usize, f64)>,
    pub stream: Vec<(usize, f64)>,
    /// Streams sent with UDP segmentation offload (received one datagram at a time).
    pub gso_stream: Vec<(usize, f64)>,
    pub storm_cpu_us: Vec<(usize, f64)>,
}

impl RawLimits {
    pub fn median(runs: &[RawLimits]) -> Option<RawLimits> {
        let first = runs.first()?;
        // Each list by size; a list some run lacks entries of is left out.
        let pick = |f: fn(&RawLimits) -> &Vec<(usize, f64)>| -> Vec<(usize, f64)> {
            if runs.iter().any(|r| f(r).len() != f(first).len()) {
                return Vec::new();
            }
            f(first)
                .iter()
                .enumerate()
                .map(|(i, (size, _))| (*size, median(runs.iter().map(|r| f(r)[i].1).collect())))
                .collect()
        };
        Some(RawLimits {
            pingpong: pick(|r| &r.pingpong),
            stream: pick(|r| &r.stream),
            gso_stream: pick(|r| &r.gso_stream),
            storm_cpu_us: pick(|r| &r.storm_cpu_us),
        })
    }

    fn get(list: &[(usize, f64)], size: usize) -> Option<f64> {
        list.iter().find(|(s, _)| *s == size).map(|(_, v)| *v)
    }

    /// The raw limit that bounds `scenario`, with its name.
    fn for_scenario(&self, id: &str) -> Option<(&'static str, f64)> {
        match id {
            "S1" => Some(("ping-pong 512", Self::get(&self.pingpong, 512)?)),
            "S2" => Some(("ping-pong 1468", Self::get(&self.pingpong, 1468)?)),
            "S3A" => Some(("stream 1468", Self::get(&self.stream, 1468)?)),
            "S3B" => Some(("stream 8192", Self::get(&self.stream, 8192)?)),
            _ => None,
        }
    }

    /// The GSO stream of a windowed scenario's datagram size.
    fn gso_limit(&self, id: &str) -> Option<f64> {
        match id {
            "S3A" => Self::get(&self.gso_stream, 1468),
            "S3B" => Self::get(&self.gso_stream, 8192),
            _ => None,
        }
    }

    /// The least server CPU a lock-step scenario can cost, as the kernel charges the
    /// raw storm's serving end for one receive and one send: the measure's CPU figure
    /// it bounds, and the bound.
    fn cpu_floor(&self, id: &str) -> Option<(CpuFigure, f64)> {
        match id {
            // A 4 MiB file is 2,857 full 1468-byte blocks and a short one; 256 per GiB.
            "S4" => {
                let trip_us = Self::get(&self.storm_cpu_us, 1468)?;
                Some((|m| m.cpu_s_gib, trip_us * 2858.0 * 256.0 / 1e6))
            }
            // 2 KiB at 512 with tsize: RRQ -> OACK, then ACK n -> DATA n+1 five times
            // (the fifth block is empty), then the last ACK: six receive-and-send pairs.
            "S5" => Some((|m| m.cpu_us_xfer, 6.0 * Self::get(&self.storm_cpu_us, 512)?)),
            _ => None,
        }
    }
}

/// A column: header, how to read it from a measure, whether higher is better, decimals.
struct Column {
    header: &'static str,
    get: fn(&Measure) -> f64,
    higher_better: bool,
    decimals: usize,
}

const COLUMNS: [Column; 7] = [
    Column {
        header: "MiB/s",
        get: |m| m.mib_s,
        higher_better: true,
        decimals: 1,
    },
    Column {
        header: "xfers/s",
        get: |m| m.xfers_s,
        higher_better: true,
        decimals: 0,
    },
    Column {
        header: "p50 ms",
        get: |m| m.p50_ms,
        higher_better: false,
        decimals: 2,
    },
    Column {
        header: "p99 ms",
        get: |m| m.p99_ms,
        higher_better: false,
        decimals: 2,
    },
    Column {
        header: "srv CPU s/GiB",
        get: |m| m.cpu_s_gib,
        higher_better: false,
        decimals: 2,
    },
    Column {
        header: "srv CPU µs/xfer",
        get: |m| m.cpu_us_xfer,
        higher_better: false,
        decimals: 0,
    },
    Column {
        header: "peak RSS MiB",
        get: |m| m.rss_mib,
        higher_better: false,
        decimals: 1,
    },
];

/// When the load generator may have limited the figures: it used (almost) its whole
/// core, or more CPU than the server for the same blocks.
fn client_note(m: &Measure) -> &'static str {
    if m.client_cpu_pct > 90.0 {
        " (client-bound)"
    } else if m.client_cpu_pct > m.server_cpu_pct {
        " (above the server's)"
    } else {
        ""
    }
}

/// The whole report: the raw limits, then one row per scenario and server.
pub fn table(
    scenarios: &[Scenario],
    servers: &[Kind],
    measures: &BTreeMap<(String, &'static str), Vec<Measure>>,
    skips: &BTreeMap<(String, &'static str), String>,
    raw: Option<&RawLimits>,
) -> String {
    let mut out = String::new();
    if let Some(raw) = raw {
        let _ = writeln!(
            out,
            "Raw UDP limits (payload MiB/s; server end on CPU 0, measuring end on CPU 1):"
        );
        for (size, v) in &raw.pingpong {
            let _ = writeln!(
                out,
                "  ping-pong {size:>5} B (DATA {}/ACK 4): {v:8.1} MiB/s",
                size + 4
            );
        }
        for (size, v) in &raw.storm_cpu_us {
            let _ = writeln!(
                out,
                "  storm     {size:>5} B: serving end {v:.2} µs CPU per round trip (one receive and one send, kept busy)"
            );
        }
        for (size, v) in &raw.stream {
            let _ = writeln!(
                out,
                "  stream    {size:>5} B (datagram {}): {v:8.1} MiB/s",
                size + 4
            );
        }
        for (size, v) in &raw.gso_stream {
            let _ = writeln!(
                out,
                "  GSO stream {size:>4} B (datagram {}): {v:8.1} MiB/s (sent in batches with UDP GSO)",
                size + 4
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Medians; each figure with (ratio to the best peer). Rates: higher is better; latency, CPU, RSS: lower is better."
    );
    let mut header = format!("| {:<4} | {:<9} |", "scen", "server");
    for c in &COLUMNS {
        let _ = write!(header, " {} |", c.header);
    }
    header.push_str(" vs raw | client CPU | srv CPU | client timeouts | fails |");
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "|{}", "---|".repeat(COLUMNS.len() + 7));
    for scenario in scenarios {
        let _ = writeln!(
            out,
            "| **{}** | {} |{}",
            scenario.id,
            scenario.label,
            " |".repeat(COLUMNS.len() + 5)
        );
        let medians: BTreeMap<&str, Measure> = servers
            .iter()
            .filter_map(|k| {
                let runs = measures.get(&(scenario.id.to_string(), k.name()))?;
                Some((k.name(), Measure::median(runs)))
            })
            .collect();
        for kind in servers {
            let name = kind.name();
            let Some(m) = medians.get(name) else {
                let why = skips
                    .get(&(scenario.id.to_string(), name))
                    .map_or("–", String::as_str);
                let _ = writeln!(
                    out,
                    "| {} | {name} | {why} |{}",
                    scenario.id,
                    " |".repeat(COLUMNS.len() + 4)
                );
                continue;
            };
            let mut row = format!("| {} | {name} |", scenario.id);
            for c in &COLUMNS {
                let v = (c.get)(m);
                let best = medians
                    .iter()
                    .filter(|(n, _)| Kind::parse(n).is_some_and(|k| !k.is_memtftpd()))
                    .map(|(_, p)| (c.get)(p))
                    .filter(|p| *p > 0.0)
                    .reduce(|a, b| if c.higher_better == (b > a) { b } else { a });
                match best {
                    Some(b) => {
                        let _ = write!(row, " {v:.prec$} ({:.2}x) |", v / b, prec = c.decimals);
                    }
                    None => {
                        let _ = write!(row, " {v:.prec$} |", prec = c.decimals);
                    }
                }
            }
            let limit = raw.and_then(|r| r.for_scenario(scenario.id));
            let floor = raw.and_then(|r| r.cpu_floor(scenario.id));
            match (limit, floor) {
                (Some((what, limit)), _) => {
                    let _ = write!(row, " {:.0}% of {what}", m.mib_s / limit * 100.0);
                    let gso = raw.and_then(|r| r.gso_limit(scenario.id));
                    if let Some(gso) = gso {
                        let _ = write!(row, ", {:.0}% of its GSO stream", m.mib_s / gso * 100.0);
                    }
                    row.push_str(" |");
                }
                (None, Some((cpu, floor))) => {
                    let _ = write!(row, " CPU {:.2}x the storm floor |", cpu(m) / floor);
                }
                (None, None) => row.push_str(" |"),
            }
            let _ = write!(
                row,
                " {:.0}%{} | {:.0}% | {:.0} | {}{} |",
                m.client_cpu_pct,
                client_note(m),
                m.server_cpu_pct,
                m.timeouts,
                m.failed,
                m.failure
                    .as_ref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default()
            );
            if scenario.id == "S7" {
                let _ = write!(
                    row,
                    " held at once: {:.0}; RSS beyond idle: {:.1} KiB per transfer |",
                    m.peak_active, m.extra_kib_per_xfer
                );
            }
            let _ = writeln!(out, "{row}");
        }
    }
    out
}

/// The start-up line: median time to `READY=1` and memory then, with `stored` bytes of
/// preseed.
pub fn startup(stored: u64, starts: &[crate::startup::Startup]) -> String {
    if starts.is_empty() {
        return "Start-up: not measured".to_owned();
    }
    let ready = median(starts.iter().map(|s| s.ready.as_secs_f64()).collect());
    let rss = median(starts.iter().map(|s| s.rss as f64).collect());
    let runs: Vec<String> = starts
        .iter()
        .map(|s| format!("{:.2}", s.ready.as_secs_f64()))
        .collect();
    format!(
        "Start-up with {:.0} MiB of preseed files (warm page cache): READY=1 after {ready:.2} s \
         (median; runs {} s), RSS then {:.0} MiB ({:.1} MiB beyond the files)",
        stored as f64 / MIB,
        runs.join(", "),
        rss / MIB,
        (rss - stored as f64) / MIB
    )
}
