//! The loopback benchmark of issue 5: memtftpd side by side with dnsmasq, atftpd and
//! tftpd-hpa, on the same files and the same client load, in one run.
//!
//! `cargo bench --bench loopback [-- --quick] [-- --runs N] [-- --servers a,b]
//! [-- --scenarios S1,S4,raw]` (as root, for the network namespace and cgroups).
//!
//! # How it runs
//!
//! 1. As root, the runner creates a network namespace of its own (`ip netns add`), brings
//!    its loopback up and runs itself again inside it, pinned to CPU 1. Every server and
//!    the load generator then live on that namespace's 127.0.0.1, and dnsmasq may take
//!    port 69.
//! 2. It writes the files (64 MiB, 4 MiB, 2 KiB, 32 KiB, deterministic pseudo-random
//!    bytes) into a temporary directory that every server serves.
//! 3. For each run, each scenario and each server: the server is started fresh on CPU 0
//!    in a cpuacct cgroup of its own (`servers`), probed with a read request until it
//!    answers, then the load generator (`loadgen`, this binary again with `loadgen ...`)
//!    runs the scenario on CPU 1 while the runner samples the server's resident memory.
//!    The server's CPU (cgroup, so children and threads count) is read before and after.
//! 4. The raw UDP limits (`raw`) are measured in each run as well: ping-pong and stream
//!    (the ceilings of S1–S3) and the storm (the CPU floor of S4 and S5); so is memtftpd's
//!    start-up with a 1 GiB preseed directory (`startup`).
//! 5. Medians over the runs go into one table (`report`), each figure with its ratio to
//!    the best peer.

#![allow(clippy::unwrap_used)]

mod epoll;
mod host;
mod loadgen;
mod raw;
mod report;
mod servers;
mod startup;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::proto::TransferOptions;

use loadgen::{Load, Op, Tally};
use report::{Measure, RawLimits};
use servers::{Kind, Paths};

use host::{
    NETNS_MARK, available_servers, is_root, pattern, raise_nofile, rerun_in_namespace, scratch_dir,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("loadgen") => child_loadgen(&args[1..]),
        Some("raw-serve") => child_raw(&args[1..], RawChild::PingPong),
        Some("raw-blast") => child_raw(&args[1..], RawChild::Blast { gso: false }),
        Some("raw-blast-gso") => child_raw(&args[1..], RawChild::Blast { gso: true }),
        Some("raw-storm") => child_storm(&args[1..]),
        _ => runner(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopback benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    runs: usize,
    servers: Vec<Kind>,
    scenarios: Option<Vec<String>>,
    /// Install missing peers with apt (root only); `--no-install` turns it off.
    install: bool,
    /// Another build's `tftpd`, run beside this one as `memtftpd-baseline`.
    baseline: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> io::Result<Options> {
    let mut options = Options {
        quick: false,
        runs: 3,
        servers: Kind::ALL.to_vec(),
        scenarios: None,
        install: true,
        baseline: None,
    };
    let mut runs = None;
    let mut it = args.iter();
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| bad(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-install" => options.install = false,
            "--runs" => {
                runs = Some(
                    value()?
                        .parse()
                        .map_err(|_| bad("--runs takes a number".into()))?,
                )
            }
            "--servers" => {
                options.servers = value()?
                    .split(',')
                    .map(|s| Kind::parse(s).ok_or_else(|| bad(format!("unknown server {s}"))))
                    .collect::<io::Result<_>>()?
            }
            "--scenarios" => {
                options.scenarios = Some(value()?.split(',').map(|s| s.to_uppercase()).collect())
            }
            "--baseline" => options.baseline = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!(
                    "cargo bench --bench loopback -- [--quick] [--runs N] [--no-install] \
                     [--servers memtftpd,dnsmasq,atftpd,tftpd-hpa] [--scenarios S1,S2,S3A,S3B,S4,S5,S6,S7,RAW,START] \
                     [--baseline PATH-TO-ANOTHER-BUILDS-tftpd]"
                );
                std::process::exit(0);
            }
            other => return Err(bad(format!("unknown argument {other}"))),
        }
    }
    options.runs = runs.unwrap_or(if options.quick { 1 } else { 3 }).max(1);
    if options.baseline.is_some() && !options.servers.contains(&Kind::Baseline) {
        options.servers.push(Kind::Baseline);
    }
    Ok(options)
}

/// One scenario of the suite.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: &'static str,
    pub label: String,
    file: &'static str,
    put_size: Option<usize>,
    count: usize,
    concurrency: usize,
    blksize: Option<u16>,
    windowsize: Option<u16>,
    ack_delay: Option<Duration>,
    start_rate: Option<f64>,
    time_limit: Duration,
    memtftpd_only: bool,
}

impl Scenario {
    fn runs_on(&self, kind: Kind) -> Result<(), &'static str> {
        if self.memtftpd_only && !kind.is_memtftpd() {
            return Err("skipped: 10,000 forks/threads");
        }
        if self.windowsize.is_some() && !kind.windowed() {
            return Err("no windowsize");
        }
        if self.put_size.is_some() && !kind.writable() {
            return Err("read-only");
        }
        Ok(())
    }
}

/// The files served, by name and size (full run; `--quick` shrinks the big one).
fn files(quick: bool) -> Vec<(&'static str, usize)> {
    vec![
        ("big.bin", if quick { 8 << 20 } else { 64 << 20 }),
        ("boot.bin", 4 << 20),
        ("small.bin", 2 << 10),
        ("slow.bin", 32 << 10),
    ]
}

fn suite(quick: bool) -> Vec<Scenario> {
    let q = |full: usize, quick_value: usize| if quick { quick_value } else { full };
    let base = Scenario {
        id: "",
        label: String::new(),
        file: "big.bin",
        put_size: None,
        count: 1,
        concurrency: 1,
        blksize: None,
        windowsize: None,
        ack_delay: None,
        start_rate: None,
        time_limit: Duration::from_secs(180),
        memtftpd_only: false,
    };
    let big = if quick { "8 MiB" } else { "64 MiB" };
    vec![
        Scenario {
            id: "S1",
            label: format!("one {big} file, blksize 512, lock-step"),
            ..base.clone()
        },
        Scenario {
            id: "S2",
            label: format!("one {big} file, blksize 1468, lock-step"),
            blksize: Some(1468),
            ..base.clone()
        },
        Scenario {
            id: "S3A",
            label: format!("one {big} file, blksize 1468, windowsize 16"),
            blksize: Some(1468),
            windowsize: Some(16),
            ..base.clone()
        },
        Scenario {
            id: "S3B",
            label: format!("one {big} file, blksize 8192, windowsize 64"),
            blksize: Some(8192),
            windowsize: Some(64),
            ..base.clone()
        },
        Scenario {
            id: "S4",
            label: format!(
                "boot storm: {} fetches of 4 MiB by {} clients, blksize 1468",
                q(256, 32),
                q(64, 16)
            ),
            file: "boot.bin",
            count: q(256, 32),
            concurrency: q(64, 16),
            blksize: Some(1468),
            ..base.clone()
        },
        Scenario {
            id: "S5",
            label: format!("{} fetches of 2 KiB by 16 clients", q(2000, 300)),
            file: "small.bin",
            count: q(2000, 300),
            concurrency: 16,
            ..base.clone()
        },
        Scenario {
            id: "S6",
            label: format!(
                "{} uploads of 256 KiB by 8 clients, blksize 1468",
                q(200, 40)
            ),
            file: "up/",
            put_size: Some(256 << 10),
            count: q(200, 40),
            concurrency: 8,
            blksize: Some(1468),
            ..base.clone()
        },
        Scenario {
            id: "S7",
            label: format!(
                "{} slow transfers held at once (32 KiB at blksize 512, one ACK per 100 ms)",
                q(10_000, 1000)
            ),
            file: "slow.bin",
            count: q(10_000, 1000),
            concurrency: q(10_000, 1000),
            blksize: Some(512),
            ack_delay: Some(Duration::from_millis(100)),
            start_rate: Some(5000.0),
            time_limit: Duration::from_secs(90),
            memtftpd_only: true,
            ..base
        },
    ]
}

/// The runner: namespace, files, servers, scenarios, table.
fn runner(args: &[String]) -> io::Result<()> {
    let options = parse_options(args)?;
    raise_nofile();
    if std::env::var_os(NETNS_MARK).is_none() && is_root() {
        if options.install {
            // Before entering the namespace: apt needs the host's network.
            servers::install_missing(&options.servers, Path::new(servers::HPA_ROOT));
        }
        return rerun_in_namespace(args);
    }
    let scratch = scratch_dir()?;
    let paths = Paths {
        root: scratch.join("root"),
        scratch: scratch.clone(),
        tftpd: PathBuf::from(env!("CARGO_BIN_EXE_tftpd")),
        baseline: options.baseline.clone(),
        hpa: Path::new(servers::HPA_ROOT).join("usr/sbin/in.tftpd"),
        memtftpd_config: servers::MemtftpdConfig::Benchmark,
    };
    let servers = available_servers(&options.servers, &paths);
    write_files(&paths.root, options.quick)?;
    let scenarios: Vec<Scenario> = suite(options.quick)
        .into_iter()
        .filter(|s| {
            options
                .scenarios
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == s.id))
        })
        .collect();
    let wanted = |id: &str| {
        options
            .scenarios
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == id))
    };
    let want_raw = wanted("RAW");
    let preseed = scratch.join("preseed");
    let preseed_bytes = if wanted("START") && paths.tftpd.exists() {
        let (files, size) = if options.quick {
            (4, 16 << 20)
        } else {
            (16, 64 << 20)
        };
        Some(startup::write_preseed(&preseed, files, size)?)
    } else {
        None
    };

    println!(
        "loopback benchmark: {} run(s), servers {}, scratch {}",
        options.runs,
        servers
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        scratch.display()
    );
    let mut measures: BTreeMap<(String, &'static str), Vec<Measure>> = BTreeMap::new();
    let mut skips: BTreeMap<(String, &'static str), String> = BTreeMap::new();
    let mut raws = Vec::new();
    let mut starts = Vec::new();
    let started = Instant::now();
    for run in 0..options.runs {
        if want_raw {
            let limits = measure_raw(options.quick)?;
            println!("run {}: raw {limits:?}", run + 1);
            raws.push(limits);
        }
        if preseed_bytes.is_some() {
            let start = startup::measure(&paths.tftpd, &scratch, &preseed)?;
            println!("run {}: start-up {start:?}", run + 1);
            starts.push(start);
        }
        for scenario in &scenarios {
            // Each run starts with another server, so that none always runs first (on a
            // machine that warms up or is shared, the order alone shows as a few percent).
            let order = servers.iter().cycle().skip(run % servers.len().max(1));
            for &kind in order.take(servers.len()) {
                let key = (scenario.id.to_string(), kind.name());
                if let Err(why) = scenario.runs_on(kind) {
                    skips.insert(key, why.to_string());
                    continue;
                }
                match measure(scenario, kind, &paths, run) {
                    Ok(m) => {
                        println!(
                            "run {} {} {:<9} {}",
                            run + 1,
                            scenario.id,
                            kind.name(),
                            m.summary()
                        );
                        measures.entry(key).or_default().push(m);
                    }
                    Err(e) => {
                        println!(
                            "run {} {} {:<9} ERROR {e}",
                            run + 1,
                            scenario.id,
                            kind.name()
                        );
                        skips.insert(key, format!("error: {e}"));
                    }
                }
            }
        }
    }
    println!("\n(took {:.0} s)\n", started.elapsed().as_secs_f64());
    let raw = RawLimits::median(&raws);
    if !scenarios.is_empty() || raw.is_some() {
        print!(
            "{}",
            report::table(&scenarios, &servers, &measures, &skips, raw.as_ref())
        );
    }
    if let Some(stored) = preseed_bytes {
        println!("\n{}", report::startup(stored, &starts));
    }
    if std::env::var_os("MEMTFTPD_BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(())
}

fn write_files(root: &Path, quick: bool) -> io::Result<()> {
    fs::create_dir_all(root)?;
    for (i, (name, size)) in files(quick).into_iter().enumerate() {
        fs::write(root.join(name), pattern(size, i as u64 + 1))?;
    }
    fs::write(root.join("probe.txt"), servers::PROBE)
}

/// One scenario against one freshly started server.
///
/// The server's CPU and memory are read when the load generator prints its `RESULT`
/// line, before the (untimed) check of uploads, which the generator starts only when
/// told to on its stdin.
fn measure(scenario: &Scenario, kind: Kind, paths: &Paths, run: usize) -> io::Result<Measure> {
    let mut server = servers::start(kind, paths, &format!("{}-{run}", scenario.id))?;
    let rss_idle = server.rss_now();
    let cpu_before = server.cpu();
    let mut child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(std::env::current_exe()?)
        .arg("loadgen")
        .args(loadgen_args(scenario, kind, &paths.root))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no loadgen output"))?;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let mut peak_sampled = rss_idle;
    let mut at_result = None;
    let limit = Instant::now() + scenario.time_limit + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            output.extend(lines.try_iter());
            break status;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            break child.wait()?;
        }
        if at_result.is_none() {
            peak_sampled = peak_sampled.max(server.rss_now());
        }
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
            if at_result.is_none() && line.starts_with("RESULT ") {
                at_result = Some((server.cpu().saturating_sub(cpu_before), server.hwm()));
                if let Some(mut stdin) = child.stdin.take() {
                    use std::io::Write as _;
                    let _ = stdin.write_all(b"go\n");
                }
            }
            output.push(line);
        }
    };
    let (cpu, hwm) = at_result.unwrap_or((server.cpu().saturating_sub(cpu_before), server.hwm()));
    server.stop();
    let (tally, failure) = parse_result(&output)?;
    if !status.success() {
        return Err(io::Error::other(format!("load generator failed: {status}")));
    }
    Ok(Measure::new(
        &tally,
        failure,
        cpu,
        hwm.max(peak_sampled),
        rss_idle,
        peak_sampled,
    ))
}

/// The load generator's command line for `scenario` against `kind`.
fn loadgen_args(scenario: &Scenario, kind: Kind, root: &Path) -> Vec<String> {
    let mut args = vec![
        format!("server={}", kind.addr()),
        format!("count={}", scenario.count),
        format!("conc={}", scenario.concurrency),
        format!("limit_ms={}", scenario.time_limit.as_millis()),
    ];
    match scenario.put_size {
        Some(size) => {
            args.push(format!("put={}", scenario.file));
            args.push(format!("size={size}"));
        }
        None => {
            args.push(format!("get={}", scenario.file));
            args.push(format!("path={}", root.join(scenario.file).display()));
        }
    }
    if let Some(b) = scenario.blksize {
        args.push(format!("blksize={b}"));
    }
    if let Some(w) = scenario.windowsize {
        args.push(format!("windowsize={w}"));
    }
    if let Some(d) = scenario.ack_delay {
        args.push(format!("delay_ms={}", d.as_millis()));
    }
    if let Some(r) = scenario.start_rate {
        args.push(format!("rate={r}"));
    }
    args
}

/// The load generator child: runs one load, prints `RESULT ...` and `FAILURE ...`.
fn child_loadgen(args: &[String]) -> io::Result<()> {
    raise_nofile();
    let kv: BTreeMap<&str, &str> = args.iter().filter_map(|a| a.split_once('=')).collect();
    let get = |k: &str| kv.get(k).copied();
    let num = |k: &str, default: u64| -> io::Result<u64> {
        get(k).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{k}={v}")))
        })
    };
    let server: SocketAddr = get("server")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "server=ADDR needed"))?;
    let op = if let Some(prefix) = get("put") {
        let size = num("size", 0)? as usize;
        Op::Put {
            prefix: prefix.to_string(),
            data: Bytes::from(pattern(size, 99)),
        }
    } else {
        let name = get("get").unwrap_or("big.bin");
        let path = get("path")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path= needed"))?;
        let expected =
            fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        Op::Get {
            name: name.to_string(),
            expected: Bytes::from(expected),
        }
    };
    let load = Load {
        server,
        op,
        count: num("count", 1)? as usize,
        concurrency: num("conc", 1)? as usize,
        options: TransferOptions {
            blksize: get("blksize").and_then(|v| v.parse().ok()),
            windowsize: get("windowsize").and_then(|v| v.parse().ok()),
            tsize: Some(0),
            timeout: None,
        },
        ack_delay: get("delay_ms")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis),
        start_rate: get("rate").and_then(|v| v.parse().ok()),
        sources: Vec::new(),
        time_limit: Duration::from_millis(num("limit_ms", 60_000)?),
        timeout: Duration::from_secs(1),
        retries: 5,
        adaptive: true,
    };
    let (mut tally, names) = loadgen::run_named(&load)?;
    print_result("RESULT", &tally);
    // The check of uploads is untimed and comes after the runner has read the server's
    // CPU (it waits for the RESULT line before letting this go on).
    if let Op::Put { data, .. } = &load.op {
        let mut line = String::new();
        io::stdin().read_line(&mut line)?;
        loadgen::verify_uploads(&load, &names, data, &mut tally)?;
        print_result("VERIFIED", &tally);
    }
    Ok(())
}

/// Prints a tally as one `KEY k=v ...` line (and a `FAILURE` line if something failed).
fn print_result(key: &str, tally: &Tally) {
    println!(
        "{key} completed={} failed={} bytes={} elapsed_ns={} p50_ns={} p99_ns={} cpu_ns={} peak_active={} retransmits={} timeouts={}",
        tally.completed,
        tally.failed,
        tally.bytes,
        tally.elapsed.as_nanos(),
        tally.quantile(0.5).as_nanos(),
        tally.quantile(0.99).as_nanos(),
        tally.cpu.as_nanos(),
        tally.peak_active,
        tally.retransmits,
        tally.timeouts
    );
    if let Some(failure) = &tally.first_failure {
        println!("FAILURE {failure}");
    }
    use std::io::Write as _;
    let _ = io::stdout().flush();
}

/// Reads the load generator's `RESULT` (and `VERIFIED`, which has the final counts)
/// lines back into a tally.
fn parse_result(output: &[String]) -> io::Result<(Tally, Option<String>)> {
    let mut tally = Tally::default();
    let mut failure = None;
    let mut seen = false;
    for line in output {
        if let Some(rest) = line.strip_prefix("FAILURE ") {
            failure = Some(rest.to_string());
        }
        let Some(rest) = line
            .strip_prefix("RESULT ")
            .or_else(|| line.strip_prefix("VERIFIED "))
        else {
            continue;
        };
        seen = true;
        for (k, v) in rest.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            let n: u64 = v.parse().unwrap_or(0);
            let ns = Duration::from_nanos(n);
            match k {
                "completed" => tally.completed = n as usize,
                "failed" => tally.failed = n as usize,
                "bytes" => tally.bytes = n,
                "elapsed_ns" => tally.elapsed = ns,
                "p50_ns" => tally.latencies = vec![ns, ns],
                "p99_ns" => tally.latencies[1] = ns,
                "cpu_ns" => tally.cpu = ns,
                "peak_active" => tally.peak_active = n as usize,
                "retransmits" => tally.retransmits = n,
                "timeouts" => tally.timeouts = n,
                _ => {}
            }
        }
    }
    if seen {
        Ok((tally, failure))
    } else {
        Err(io::Error::other("the load generator printed no result"))
    }
}

/// What a raw child does.
#[derive(Debug, Clone, Copy)]
enum RawChild {
    /// `raw-serve PORT PAYLOAD SECS`: answers ping-pong pokes.
    PingPong,
    /// `raw-blast[-gso] ADDR PAYLOAD SECS`: streams datagrams.
    Blast { gso: bool },
}

/// A raw-UDP serving child (see [`RawChild`]).
fn child_raw(args: &[String], role: RawChild) -> io::Result<()> {
    let usage = "raw-serve PORT|raw-blast[-gso] ADDR PAYLOAD SECS";
    let (target, payload, duration) = raw_child_args(args, usage)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, usage);
    match role {
        RawChild::PingPong => {
            let port = target.parse::<u16>().map_err(|_| bad())?;
            let socket = UdpSocket::bind(("127.0.0.1", port))?;
            raw::serve_pingpong(&socket, payload, duration + Duration::from_secs(10))
        }
        RawChild::Blast { gso } => raw::blast(
            target.parse().map_err(|_| bad())?,
            payload,
            duration + Duration::from_secs(1),
            gso,
        ),
    }
}

/// The arguments every raw child takes: `TARGET PAYLOAD SECS`.
fn raw_child_args<'a>(args: &'a [String], usage: &str) -> io::Result<(&'a str, usize, Duration)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, usage.to_owned());
    let [target, payload, secs] = args else {
        return Err(bad());
    };
    let payload = payload.parse().map_err(|_| bad())?;
    let secs: f64 = secs.parse().map_err(|_| bad())?;
    Ok((target, payload, Duration::from_secs_f64(secs)))
}

/// Runs the measuring end of a storm against `child` (`raw-storm`, which prints its
/// ports, serves, then prints its round trips and CPU); returns the serving end's CPU
/// microseconds per round trip.
fn measure_storm_cpu(mut child: std::process::Child, duration: Duration) -> io::Result<f64> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no raw-storm output"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next_line = || -> io::Result<String> {
        lines
            .next()
            .unwrap_or_else(|| Err(io::Error::other("raw-storm ended early")))
    };
    let peers = next_line()?
        .strip_prefix("PORTS ")
        .ok_or_else(|| io::Error::other("raw-storm printed no ports"))?
        .split(',')
        .map(|p| {
            p.parse()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("raw-storm ports: {e}")))?;
    raw::measure_storm(&peers, duration)?;
    let report = next_line()?;
    let _ = child.wait();
    let field = |name: &str| -> Option<f64> {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    match (field("trips").filter(|t| *t > 0.0), field("cpu_ns")) {
        (Some(trips), Some(cpu_ns)) => Ok(cpu_ns / 1e3 / trips),
        _ => Err(io::Error::other(format!("raw-storm: {report}"))),
    }
}

/// The raw storm's serving child: `raw-storm CLIENTS PAYLOAD SECS`.
fn child_storm(args: &[String]) -> io::Result<()> {
    let usage = "raw-storm CLIENTS PAYLOAD SECS";
    let (clients, payload, duration) = raw_child_args(args, usage)?;
    let clients: usize = clients
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, usage))?;
    let sockets = (0..clients)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    let ports = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port().to_string()))
        .collect::<io::Result<Vec<_>>>()?;
    {
        use std::io::Write as _;
        let mut out = io::stdout().lock();
        writeln!(out, "PORTS {}", ports.join(","))?;
        out.flush()?;
    }
    let cpu_before = loadgen::self_cpu();
    let trips = raw::serve_storm(&sockets, payload, duration + Duration::from_secs(10))?;
    let cpu = loadgen::self_cpu().saturating_sub(cpu_before);
    println!("STORM trips={trips} cpu_ns={}", cpu.as_nanos());
    Ok(())
}

/// Ping-pong at 512 and 1468, storms at 512 and 1468, streams at 512, 1468 and 8192
/// payload bytes and GSO streams at 1468 and 8192, with the sending end on CPU 0 and this
/// process (CPU 1) measuring.
fn measure_raw(quick: bool) -> io::Result<RawLimits> {
    let secs = if quick { 0.5 } else { 2.0 };
    let duration = Duration::from_secs_f64(secs);
    let spawn = |mode: &str, target: String, payload: usize| {
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(std::env::current_exe()?)
            .args([mode, &target, &payload.to_string(), &secs.to_string()])
            .stdout(Stdio::piped())
            .spawn()
    };
    let mut limits = RawLimits::default();
    for (i, payload) in [512usize, 1468].into_iter().enumerate() {
        let port = 6990 + i as u16;
        let mut child = spawn("raw-serve", port.to_string(), payload)?;
        let result =
            raw::measure_pingpong(SocketAddr::from(([127, 0, 0, 1], port)), payload, duration);
        let _ = child.wait();
        limits.pingpong.push((payload, result?.0));
    }
    // The storms of S5 (16 clients at 512) and S4 (64 at 1468).
    for (clients, payload) in [(16usize, 512usize), (64, 1468)] {
        let child = spawn("raw-storm", clients.to_string(), payload)?;
        limits
            .storm_cpu_us
            .push((payload, measure_storm_cpu(child, duration)?));
    }
    let stream = |mode: &str, payload: usize| -> io::Result<f64> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        let mut child = spawn(mode, socket.local_addr()?.to_string(), payload)?;
        let result = raw::measure_stream(&socket, duration);
        let _ = child.wait();
        result
    };
    for payload in [512usize, 1468, 8192] {
        limits.stream.push((payload, stream("raw-blast", payload)?));
    }
    for payload in [1468usize, 8192] {
        // Without UDP GSO on this kernel there is no such stream; the table leaves it out.
        if let Ok(mib_s) = stream("raw-blast-gso", payload) {
            limits.gso_stream.push((payload, mib_s));
        }
    }
    Ok(limits)
}
