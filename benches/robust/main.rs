//! The robustness suite: memtftpd (with its default configuration) and the peers of the
//! loopback benchmark under abuse, in one run.
//!
//! `cargo bench --bench robust [-- --quick] [-- --servers a,b] [-- --scenarios R1,R4]`
//! (as root: a network namespace of its own, as `cargo bench --bench loopback`).
//!
//! - R1 a garbage flood at the listening port, good fetches alongside;
//! - R2 5,000 read requests from 5,000 addresses that never answer, good fetches
//!   alongside;
//! - R3 2,000 slow clients (one ACK a second, from 2,000 addresses), good fetches
//!   alongside;
//! - R4 100 fetches of 256 KiB at blksize 1468, 50 at once, through a lossy relay (each
//!   way: 10 % dropped, 5 % duplicated, 3 % delayed 50-300 ms; seeded) that puts every
//!   client behind its one address, like a NAT; the clients as a boot ROM's: a fixed 1 s
//!   timeout and 10 retries, so that the server's own recovery is what is measured;
//! - R4A the same with the project's client engine as it is by default: its adaptive
//!   timer (RFC 6298) resends ACKs soon after a loss, and a server that answers a
//!   duplicate ACK with the block again (atftpd) recovers at the client's pace;
//! - R5 what a requester that never answers receives for one request: plain, with
//!   blksize 1468 windowsize 16 tsize timeout 255, and (memtftpd, `single-port = true`)
//!   the two-datagram attack: a forged RRQ with blksize 65464 windowsize 64 and a forged
//!   ACK 0, both from the victim's address to the listening port.
//!
//! The runner, the servers (PEERS.md's command lines) and the load generator are the
//! loopback benchmark's (`#[path]` modules); the relay and the abusers are shared with
//! `tests/robust.rs`. Every load and flood is bounded in count and in time.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../loopback/epoll.rs"]
mod epoll;
#[allow(dead_code)]
#[path = "../loopback/host.rs"]
mod host;
#[allow(dead_code)]
#[path = "../loopback/loadgen.rs"]
mod loadgen;
#[allow(dead_code)]
#[path = "../loopback/servers.rs"]
mod servers;

mod attack;
mod relay;

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::proto::TransferOptions;

use attack::Received;
use loadgen::{Load, Op, Tally};
use relay::{Impairment, Relay, RelayConfig, RelayStats};
use servers::{Kind, MemtftpdConfig, Paths, Running};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match runner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("robustness suite: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    servers: Vec<Kind>,
    scenarios: Vec<String>,
    install: bool,
}

fn parse_options(args: &[String]) -> io::Result<Options> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let mut options = Options {
        quick: false,
        servers: Kind::ALL.to_vec(),
        scenarios: ["R1", "R2", "R3", "R4", "R4A", "R5"]
            .map(String::from)
            .to_vec(),
        install: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| bad(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-install" => options.install = false,
            "--servers" => {
                options.servers = value()?
                    .split(',')
                    .map(|s| Kind::parse(s).ok_or_else(|| bad(format!("unknown server {s}"))))
                    .collect::<io::Result<_>>()?
            }
            "--scenarios" => {
                options.scenarios = value()?.split(',').map(|s| s.to_uppercase()).collect()
            }
            "--help" | "-h" => {
                println!(
                    "cargo bench --bench robust -- [--quick] [--no-install] \
                     [--servers memtftpd,dnsmasq,atftpd,tftpd-hpa] [--scenarios R1,R2,R3,R4,R4A,R5]"
                );
                std::process::exit(0);
            }
            other => return Err(bad(format!("unknown argument {other}"))),
        }
    }
    Ok(options)
}

/// The sizes of one run (`--quick`: smaller).
#[derive(Debug, Clone, Copy)]
struct Sizes {
    good_count: usize,
    garbage_secs: u64,
    silent: usize,
    slow: usize,
    relay_count: usize,
    relay_at_once: usize,
    relay_file: usize,
    silent_window: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                good_count: 4,
                garbage_secs: 5,
                silent: 1500,
                slow: 300,
                relay_count: 20,
                relay_at_once: 20,
                relay_file: 32 << 10,
                silent_window: Duration::from_secs(15),
            }
        } else {
            Sizes {
                good_count: 16,
                garbage_secs: 20,
                silent: 5000,
                slow: 2000,
                relay_count: 100,
                relay_at_once: 50,
                relay_file: 256 << 10,
                silent_window: Duration::from_secs(40),
            }
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Default)]
struct Row {
    scenario: String,
    server: &'static str,
    /// The good (or relayed) fetches.
    good: Option<Tally>,
    attempted: usize,
    /// Server retransmissions and spurious ones, counted at the relay (R4).
    relay: Option<RelayStats>,
    peak_rss: u64,
    /// Datagrams and bytes to a silent requester, and the bytes it sent.
    silent: Option<(Received, usize)>,
    note: String,
}

fn runner(args: &[String]) -> io::Result<()> {
    let options = parse_options(args)?;
    host::raise_nofile();
    if std::env::var_os(host::NETNS_MARK).is_none() && host::is_root() {
        if options.install {
            servers::install_missing(&options.servers, Path::new(servers::HPA_ROOT));
        }
        return host::rerun_in_namespace(args);
    }
    let sizes = Sizes::new(options.quick);
    let scratch = host::scratch_dir()?;
    let paths = Paths {
        root: scratch.join("root"),
        scratch: scratch.clone(),
        tftpd: PathBuf::from(env!("CARGO_BIN_EXE_tftpd")),
        baseline: None,
        hpa: Path::new(servers::HPA_ROOT).join("usr/sbin/in.tftpd"),
        memtftpd_config: MemtftpdConfig::Defaults { single_port: false },
    };
    let kinds = host::available_servers(&options.servers, &paths);
    let stored = write_files(&paths.root, &sizes)?;
    println!(
        "robustness suite: servers {}, {:.2} MiB stored, scratch {}",
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        stored as f64 / (1 << 20) as f64,
        scratch.display()
    );
    let want = |id: &str| options.scenarios.iter().any(|s| s == id);
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut report = |row: Row| {
        println!("{}", row_line(&row, stored));
        rows.push(row);
    };
    for &kind in &kinds {
        if want("R1") {
            report(or_error("R1", kind, r1_garbage(kind, &paths, &sizes)));
        }
        if want("R2") {
            report(or_error("R2", kind, r2_silent_flood(kind, &paths, &sizes)));
        }
        if want("R3") {
            report(or_error("R3", kind, r3_slow_clients(kind, &paths, &sizes)));
        }
    }
    for (id, adaptive) in [("R4", false), ("R4A", true)] {
        if want(id) {
            match r4_lossy_relay(&kinds, &paths, &sizes, id, adaptive) {
                Ok(r) => r.into_iter().for_each(&mut report),
                Err(e) => println!("{id} ERROR {e}"),
            }
        }
    }
    if want("R5") {
        match r5_amplification(&kinds, &paths, &sizes) {
            Ok(r) => r.into_iter().for_each(&mut report),
            Err(e) => println!("R5 ERROR {e}"),
        }
    }
    println!("\n(took {:.0} s)\n", started.elapsed().as_secs_f64());
    print!("{}", table(&rows, stored, &sizes));
    if std::env::var_os("MEMTFTPD_BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(())
}

fn or_error(scenario: &str, kind: Kind, result: io::Result<Row>) -> Row {
    result.unwrap_or_else(|e| Row {
        scenario: scenario.into(),
        server: kind.name(),
        note: format!("error: {e}"),
        ..Row::default()
    })
}

/// Writes the files; returns the bytes stored.
fn write_files(root: &Path, sizes: &Sizes) -> io::Result<u64> {
    fs::create_dir_all(root)?;
    let mut stored = servers::PROBE.len() as u64;
    for (i, (name, size)) in files(sizes).into_iter().enumerate() {
        fs::write(root.join(name), host::pattern(size, i as u64 + 1))?;
        stored += size as u64;
    }
    fs::write(root.join("probe.txt"), servers::PROBE)?;
    Ok(stored)
}

fn files(sizes: &Sizes) -> Vec<(&'static str, usize)> {
    vec![
        ("good.bin", 1 << 20),
        ("lossy.bin", sizes.relay_file),
        ("slow.bin", 8 << 10),
    ]
}

fn contents(root: &Path, name: &str) -> io::Result<Bytes> {
    Ok(Bytes::from(fs::read(root.join(name))?))
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// `count` fetches of `name`, `at_once` at a time, blksize 1468 and tsize, from 127.0.0.1.
fn fetches(
    server: SocketAddr,
    root: &Path,
    name: &str,
    count: usize,
    at_once: usize,
) -> io::Result<Load> {
    Ok(Load {
        server,
        op: Op::Get {
            name: name.into(),
            expected: contents(root, name)?,
        },
        count,
        concurrency: at_once,
        options: TransferOptions {
            blksize: Some(1468),
            tsize: Some(0),
            ..TransferOptions::default()
        },
        ack_delay: None,
        start_rate: None,
        sources: Vec::new(),
        time_limit: Duration::from_secs(300),
        timeout: Duration::from_secs(1),
        retries: 5,
        adaptive: true,
    })
}

/// The peak resident memory of `servers` while `work` runs (sampled every 50 ms, and
/// each main process's VmHWM at the end).
fn sampling<T: Send>(servers: &[&Running], work: impl FnOnce() -> T + Send) -> (T, Vec<u64>) {
    let mut peaks = vec![0u64; servers.len()];
    let result = std::thread::scope(|s| {
        let worker = s.spawn(work);
        while !worker.is_finished() {
            for (peak, server) in peaks.iter_mut().zip(servers) {
                *peak = (*peak).max(server.rss_now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        worker.join().unwrap()
    });
    for (peak, server) in peaks.iter_mut().zip(servers) {
        *peak = (*peak).max(server.hwm()).max(server.rss_now());
    }
    (result, peaks)
}

fn r1_garbage(kind: Kind, paths: &Paths, sizes: &Sizes) -> io::Result<Row> {
    let server = servers::start(kind, paths, "R1")?;
    let good = fetches(kind.addr(), &paths.root, "good.bin", sizes.good_count, 4)?;
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let flood_start = Instant::now();
    let ((tally, flood_secs), peaks) = sampling(&[&server], || {
        std::thread::scope(|s| {
            let flood = s.spawn(|| {
                let limits = (
                    100_000_000,
                    Instant::now() + Duration::from_secs(sizes.garbage_secs),
                );
                attack::garbage_flood(kind.addr(), ip(127, 0, 0, 2), 4, 7, limits, &stop, &sent)
            });
            while sent.load(Ordering::Relaxed) < 20_000 && !flood.is_finished() {
                std::thread::yield_now();
            }
            let tally = loadgen::run(&good);
            // The flood goes on for its whole time, good fetches or not.
            let _ = flood.join();
            (tally, flood_start.elapsed().as_secs_f64())
        })
    });
    let sent = sent.load(Ordering::Relaxed);
    Ok(Row {
        scenario: "R1".into(),
        server: kind.name(),
        good: Some(tally?),
        attempted: sizes.good_count,
        peak_rss: peaks[0],
        note: format!(
            "{sent} garbage datagrams in {flood_secs:.0} s ({:.0}k/s)",
            sent as f64 / flood_secs / 1e3
        ),
        ..Row::default()
    })
}

fn r2_silent_flood(kind: Kind, paths: &Paths, sizes: &Sizes) -> io::Result<Row> {
    let server = servers::start(kind, paths, "R2")?;
    let good = fetches(kind.addr(), &paths.root, "good.bin", sizes.good_count, 4)?;
    let request = attack::rrq("good.bin", &[]);
    let hosts = attack::hosts(1, sizes.silent);
    let ((tally, sockets, flood_secs), peaks) = sampling(&[&server], || {
        let begin = Instant::now();
        let sockets = attack::silent_requests(kind.addr(), &hosts, &request);
        let flood_secs = begin.elapsed().as_secs_f64();
        let tally = loadgen::run(&good);
        (tally, sockets, flood_secs)
    });
    let sockets = sockets?;
    let (mut answered, mut most, mut total) = (0, Received::default(), Received::default());
    for socket in &sockets {
        let mut got = Received::default();
        got.drain(socket);
        answered += usize::from(got.datagrams > 0);
        total.datagrams += got.datagrams;
        total.bytes += got.bytes;
        if got.datagrams > most.datagrams {
            most = got;
        }
    }
    Ok(Row {
        scenario: "R2".into(),
        server: kind.name(),
        good: Some(tally?),
        attempted: sizes.good_count,
        peak_rss: peaks[0],
        note: format!(
            "{} silent RRQs sent in {flood_secs:.1} s; by the end of the good fetches {answered} \
             had an answer, {} datagrams in all, at most {} to one",
            sockets.len(),
            total.datagrams,
            most.datagrams
        ),
        ..Row::default()
    })
}

fn r3_slow_clients(kind: Kind, paths: &Paths, sizes: &Sizes) -> io::Result<Row> {
    let server = servers::start(kind, paths, "R3")?;
    let good = fetches(kind.addr(), &paths.root, "good.bin", sizes.good_count, 4)?;
    let rate = 1000.0;
    let slow = Load {
        options: TransferOptions {
            blksize: Some(512),
            tsize: Some(0),
            ..TransferOptions::default()
        },
        ack_delay: Some(Duration::from_secs(1)),
        start_rate: Some(rate),
        sources: attack::hosts(2, sizes.slow),
        time_limit: Duration::from_secs(120),
        ..fetches(kind.addr(), &paths.root, "slow.bin", sizes.slow, sizes.slow)?
    };
    let ((slow, tally), peaks) = sampling(&[&server], || {
        std::thread::scope(|s| {
            let slow = s.spawn(|| loadgen::run(&slow));
            // Once every slow client has sent its request (the ramp's length).
            std::thread::sleep(Duration::from_secs_f64(sizes.slow as f64 / rate + 0.5));
            let tally = loadgen::run(&good);
            (slow.join().unwrap(), tally)
        })
    });
    let slow = slow?;
    Ok(Row {
        scenario: "R3".into(),
        server: kind.name(),
        good: Some(tally?),
        attempted: sizes.good_count,
        peak_rss: peaks[0],
        note: format!(
            "slow clients (8 KiB at 512, an ACK a second): {}/{} completed, {} held at once{}",
            slow.completed,
            sizes.slow,
            slow.peak_active,
            slow.first_failure
                .map(|f| format!(", first slow failure: {f}"))
                .unwrap_or_default()
        ),
        ..Row::default()
    })
}

/// All servers at once, each behind a relay of its own (the losses, not the CPU, set the
/// pace here); the clients' timer fixed (R4) or `adaptive` (R4A).
fn r4_lossy_relay(
    kinds: &[Kind],
    paths: &Paths,
    sizes: &Sizes,
    id: &str,
    adaptive: bool,
) -> io::Result<Vec<Row>> {
    let running = kinds
        .iter()
        .map(|&k| servers::start(k, paths, id))
        .collect::<io::Result<Vec<_>>>()?;
    let loads = kinds
        .iter()
        .map(|k| {
            fetches(
                k.addr(),
                &paths.root,
                "lossy.bin",
                sizes.relay_count,
                sizes.relay_at_once,
            )
        })
        .collect::<io::Result<Vec<_>>>()?;
    let refs: Vec<&Running> = running.iter().collect();
    let (results, peaks) = sampling(&refs, || {
        std::thread::scope(|s| {
            let threads: Vec<_> = kinds
                .iter()
                .zip(&loads)
                .map(|(kind, load)| {
                    s.spawn(move || -> io::Result<(Tally, RelayStats)> {
                        let relay = Relay::start(RelayConfig {
                            server: kind.addr(),
                            front: "127.0.0.1:0".parse().unwrap(),
                            outside: vec![ip(127, 0, 0, 3)],
                            impairment: Impairment::LOSSY,
                            seed: 2026,
                            limit: Duration::from_secs(400),
                        })?;
                        // A patient client, as a firmware's is: 10 retries.
                        let load = Load {
                            server: relay.addr(),
                            retries: 10,
                            adaptive,
                            ..load.clone()
                        };
                        let tally = loadgen::run(&load)?;
                        Ok((tally, relay.stop()?))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    Ok(kinds
        .iter()
        .zip(results)
        .zip(peaks)
        .map(|((kind, result), peak)| match result {
            Ok((tally, stats)) => Row {
                scenario: id.into(),
                server: kind.name(),
                note: format!(
                    "client timeouts {}; relay dropped {}, duplicated {}, delayed {}",
                    tally.timeouts, stats.dropped, stats.duplicated, stats.delayed,
                ),
                good: Some(tally),
                attempted: sizes.relay_count,
                relay: Some(stats),
                peak_rss: peak,
                ..Row::default()
            },
            Err(e) => or_error(id, *kind, Err(e)),
        })
        .collect())
}

/// The requests of R5, by label: the datagrams the victim sends.
fn probes(single_port: bool) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut probes = vec![
        ("plain", vec![attack::rrq("good.bin", &[])]),
        (
            "options",
            vec![attack::rrq(
                "good.bin",
                &[
                    ("blksize", "1468"),
                    ("windowsize", "16"),
                    ("tsize", "0"),
                    ("timeout", "255"),
                ],
            )],
        ),
    ];
    if single_port {
        probes.push((
            "RRQ 65464/64 + forged ACK 0",
            vec![
                attack::rrq(
                    "good.bin",
                    &[("blksize", "65464"), ("windowsize", "64"), ("tsize", "0")],
                ),
                attack::ack(0),
            ],
        ));
    }
    probes
}

/// Sends every probe from a silent socket of its own to each server, listens for
/// `window`, and returns what each socket got.
fn listen_silently(
    servers: &[(Kind, &'static str, SocketAddr)],
    single_port: bool,
    window: Duration,
) -> io::Result<Vec<Row>> {
    let mut victims = Vec::new();
    for (n, (kind, name, addr)) in servers.iter().enumerate() {
        for (i, (label, datagrams)) in probes(single_port).into_iter().enumerate() {
            let socket = UdpSocket::bind((Ipv4Addr::new(127, 5, n as u8, i as u8 + 1), 0))?;
            socket.set_nonblocking(true)?;
            let mut sent = 0;
            for d in &datagrams {
                socket.send_to(d, addr)?;
                sent += d.len();
            }
            victims.push((*kind, *name, label, socket, sent));
        }
    }
    let end = Instant::now() + window;
    let mut got: Vec<Received> = vec![Received::default(); victims.len()];
    while Instant::now() < end {
        for (g, v) in got.iter_mut().zip(&victims) {
            g.drain(&v.3);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(victims
        .into_iter()
        .zip(got)
        .map(|((_, name, label, _, sent), got)| Row {
            scenario: format!("R5 {label}"),
            server: name,
            silent: Some((got, sent)),
            ..Row::default()
        })
        .collect())
}

fn r5_amplification(kinds: &[Kind], paths: &Paths, sizes: &Sizes) -> io::Result<Vec<Row>> {
    let mut rows = {
        let running = kinds
            .iter()
            .map(|&k| servers::start(k, paths, "R5"))
            .collect::<io::Result<Vec<_>>>()?;
        let targets: Vec<_> = running
            .iter()
            .map(|r| (r.kind, r.kind.name(), r.kind.addr()))
            .collect();
        listen_silently(&targets, false, sizes.silent_window)?
    };
    if kinds.contains(&Kind::Memtftpd) {
        let single = Paths {
            memtftpd_config: MemtftpdConfig::Defaults { single_port: true },
            ..paths.clone()
        };
        let _running = servers::start(Kind::Memtftpd, &single, "R5-single")?;
        let target = [(
            Kind::Memtftpd,
            "memtftpd single-port",
            Kind::Memtftpd.addr(),
        )];
        rows.extend(listen_silently(&target, true, Duration::from_secs(15))?);
    }
    Ok(rows)
}

fn mean(tally: &Tally) -> Duration {
    if tally.latencies.is_empty() {
        return Duration::ZERO;
    }
    tally.latencies.iter().sum::<Duration>() / tally.latencies.len() as u32
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// One row as a line of the table.
fn row_line(row: &Row, stored: u64) -> String {
    let mut cells = vec![row.scenario.clone(), row.server.to_string()];
    match &row.good {
        Some(t) => {
            cells.push(format!("{}/{}", t.completed, row.attempted));
            cells.push(t.completed.to_string());
            cells.push(format!("{:.0}", mean(t).as_secs_f64() * 1e3));
            cells.push(format!("{:.0}", t.quantile(0.99).as_secs_f64() * 1e3));
        }
        None => cells.extend(std::iter::repeat_n(String::new(), 4)),
    }
    match &row.relay {
        Some(r) => {
            let per = |n: u64| n as f64 / row.attempted.max(1) as f64;
            cells.push(format!("{:.1}", per(r.retransmissions)));
            cells.push(format!("{} ({:.1}/transfer)", r.spurious, per(r.spurious)));
        }
        None => cells.extend([String::new(), String::new()]),
    }
    if row.peak_rss > 0 {
        cells.push(format!(
            "{:.1} ({:+.1})",
            mib(row.peak_rss),
            mib(row.peak_rss) - mib(stored)
        ));
    } else {
        cells.push(String::new());
    }
    match &row.silent {
        Some((got, sent)) => {
            let mut what = format!("{} / {} B", got.datagrams, got.bytes);
            if got.oacks > 0 || !got.data_blocks.is_empty() {
                let mut blocks = got.data_blocks.clone();
                blocks.sort_unstable();
                blocks.dedup();
                let _ = write!(
                    what,
                    " ({} OACK, {} DATA of blocks {:?})",
                    got.oacks,
                    got.data_blocks.len(),
                    blocks
                );
            }
            cells.push(what);
            cells.push(format!("{:.1}x", got.factor(*sent)));
        }
        None => cells.extend([String::new(), String::new()]),
    }
    let mut note = row.note.clone();
    if let Some(failure) = row.good.as_ref().and_then(|t| t.first_failure.as_ref()) {
        let _ = write!(note, "; first failure: {failure}");
    }
    cells.push(note);
    format!("| {} |", cells.join(" | "))
}

fn table(rows: &[Row], stored: u64, sizes: &Sizes) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Stored files: {:.2} MiB. Good fetches: 1 MiB at blksize 1468 with tsize, 4 at once, from \
         127.0.0.1; R4 and R4A: {} fetches of {} KiB, {} at once, through the relay (R4: \
         clients with a fixed 1 s timeout, R4A: with the adaptive one). Times in ms.",
        mib(stored),
        sizes.relay_count,
        sizes.relay_file >> 10,
        sizes.relay_at_once
    );
    let _ = writeln!(
        out,
        "| scen | server | completed/attempted | byte-identical | mean ms | p99 ms | server retransmits/transfer | spurious retransmits | peak RSS MiB (vs stored) | to the silent requester: datagrams / bytes | amplification | notes |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(12));
    for row in rows {
        let _ = writeln!(out, "{}", row_line(row, stored));
    }
    out
}
