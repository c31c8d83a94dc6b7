//! The servers under test: memtftpd and the peers of `../shared/PEERS.md`, started on
//! loopback, pinned to CPU 0, each in a cpuacct cgroup of its own so that its CPU time
//! (with every child it forks or thread it starts) is read in nanoseconds.
//!
//! Every server is started fresh for each measurement and stopped after it: the CPU and
//! peak-RSS figures then belong to that one scenario.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use memtftpd::proto::TransferOptions;

use crate::loadgen::{self, Load, Op};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memtftpd,
    /// Another build of memtftpd (`--baseline PATH`), run beside this one to measure a
    /// change old against new in the same run.
    Baseline,
    Dnsmasq,
    Atftpd,
    TftpdHpa,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Memtftpd, Kind::Dnsmasq, Kind::Atftpd, Kind::TftpdHpa];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Memtftpd => "memtftpd",
            Kind::Baseline => "memtftpd-baseline",
            Kind::Dnsmasq => "dnsmasq",
            Kind::Atftpd => "atftpd",
            Kind::TftpdHpa => "tftpd-hpa",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .chain([Kind::Baseline])
            .find(|k| k.name() == name || (name == "hpa" && *k == Kind::TftpdHpa))
    }

    pub fn port(self) -> u16 {
        match self {
            Kind::Memtftpd => 6900,
            Kind::Baseline => 6903,
            Kind::Dnsmasq => 69,
            Kind::Atftpd => 6901,
            Kind::TftpdHpa => 6902,
        }
    }

    pub fn addr(self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// A build of memtftpd (this one or the baseline), not a peer.
    pub fn is_memtftpd(self) -> bool {
        matches!(self, Kind::Memtftpd | Kind::Baseline)
    }

    /// Takes write requests.
    pub fn writable(self) -> bool {
        self != Kind::Dnsmasq
    }

    /// Negotiates `windowsize`.
    pub fn windowed(self) -> bool {
        self.is_memtftpd() || self == Kind::Atftpd
    }
}

/// Where tftpd-hpa is unpacked (as a package it conflicts with atftpd).
pub const HPA_ROOT: &str = "/opt/tftpd-hpa";

/// True when `program` is in one of the system's binary directories.
pub fn installed(program: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists())
}

/// Installs the peers among `wanted` that are missing, as `PEERS.md` describes (as
/// root): dnsmasq and atftpd from apt, tftpd-hpa unpacked from its .deb into `hpa_root`.
/// Units the packages enable are stopped and disabled, since the benchmark starts its
/// own instances. A failure is printed, and the runner then leaves that peer out.
pub fn install_missing(wanted: &[Kind], hpa_root: &Path) {
    let mut packages = Vec::new();
    if wanted.contains(&Kind::Dnsmasq) && !installed("dnsmasq") {
        packages.push("dnsmasq-base");
    }
    if wanted.contains(&Kind::Atftpd) && !installed("atftpd") {
        packages.push("atftpd");
    }
    let want_hpa = wanted.contains(&Kind::TftpdHpa) && !hpa_root.join("usr/sbin/in.tftpd").exists();
    if packages.is_empty() && !want_hpa {
        return;
    }
    println!("installing the missing peers (--no-install to skip)");
    let apt = |args: &[&str], dir: &Path| {
        let status = Command::new("apt-get")
            .args(args)
            .current_dir(dir)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            println!("note: apt-get {} failed: {status:?}", args.join(" "));
        }
    };
    apt(&["update", "-qq"], Path::new("/"));
    if !packages.is_empty() {
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&packages);
        apt(&args, Path::new("/"));
        if packages.contains(&"atftpd") && Path::new("/run/systemd/system").exists() {
            let _ = Command::new("systemctl")
                .args(["disable", "--now", "atftpd.socket", "atftpd.service"])
                .status();
        }
    }
    if want_hpa {
        let download = std::env::temp_dir().join("memtftpd-bench-hpa");
        let _ = fs::remove_dir_all(&download);
        if fs::create_dir_all(&download).is_ok() {
            apt(&["download", "-qq", "tftpd-hpa"], &download);
            let debs = fs::read_dir(&download)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            match debs
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
            {
                Some(deb) => {
                    let status = Command::new("dpkg")
                        .arg("-x")
                        .arg(deb)
                        .arg(hpa_root)
                        .status();
                    if !status.as_ref().is_ok_and(|s| s.success()) {
                        println!("note: dpkg -x {} failed: {status:?}", deb.display());
                    }
                }
                None => println!("note: apt-get download tftpd-hpa gave no .deb"),
            }
            let _ = fs::remove_dir_all(&download);
        }
    }
}

/// Where things live during a run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The served directory (files, and `up/` for uploads).
    pub root: PathBuf,
    /// Configs and logs.
    pub scratch: PathBuf,
    pub tftpd: PathBuf,
    /// The baseline build's `tftpd`, with `--baseline`.
    pub baseline: Option<PathBuf>,
    pub hpa: PathBuf,
    /// How memtftpd (and the baseline) are configured.
    pub memtftpd_config: MemtftpdConfig,
}

/// memtftpd's configuration in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemtftpdConfig {
    /// The loopback benchmark's: limits out of the way, uploads on ([`memtftpd_config`]).
    Benchmark,
    /// The defaults, only `listen` and the preseed set (the robustness suite); with
    /// `single-port = true` or without.
    #[allow(dead_code)] // the loopback benchmark runs only `Benchmark`
    Defaults { single_port: bool },
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub kind: Kind,
    child: Child,
    cgroup: Option<PathBuf>,
}

/// Starts `kind` on CPU 0 and waits until it answers a read request.
pub fn start(kind: Kind, paths: &Paths, tag: &str) -> io::Result<Running> {
    clear_uploads(&paths.root)?;
    let cgroup = make_cgroup(&format!("{}-{tag}", kind.name()));
    let argv = command(kind, paths)?;
    let log = fs::File::create(paths.scratch.join(format!("{}.log", kind.name())))?;
    let join = cgroup
        .as_ref()
        .map(|c| format!("echo $$ > '{}/cgroup.procs' && ", c.display()))
        .unwrap_or_default();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("{join}exec taskset -c 0 \"$@\""))
        .arg("sh")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let mut running = Running {
        kind,
        child,
        cgroup,
    };
    if let Err(e) = wait_ready(&mut running) {
        running.stop();
        return Err(e);
    }
    Ok(running)
}

/// Empties the upload directory so every run starts alike.
fn clear_uploads(root: &Path) -> io::Result<()> {
    let up = root.join("up");
    if up.exists() {
        fs::remove_dir_all(&up)?;
    }
    fs::create_dir_all(&up)?;
    let mut perms = fs::metadata(&up)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    fs::set_permissions(&up, perms)
}

/// The command line of `kind`, from PEERS.md.
fn command(kind: Kind, paths: &Paths) -> io::Result<Vec<String>> {
    let root = paths.root.display().to_string();
    let port = kind.port().to_string();
    let log = paths
        .scratch
        .join(format!("{}.server-log", kind.name()))
        .display()
        .to_string();
    let argv: Vec<String> = match kind {
        Kind::Memtftpd | Kind::Baseline => {
            let binary = match kind {
                Kind::Baseline => paths.baseline.clone().unwrap_or_default(),
                _ => paths.tftpd.clone(),
            };
            let config = paths.scratch.join(format!("{}.toml", kind.name()));
            let text = match paths.memtftpd_config {
                MemtftpdConfig::Benchmark => memtftpd_config(kind.addr(), &paths.root),
                MemtftpdConfig::Defaults { single_port } => {
                    default_config(kind.addr(), &paths.root, single_port)
                }
            };
            fs::write(&config, text)?;
            vec![
                binary.display().to_string(),
                "--config".into(),
                config.display().to_string(),
            ]
        }
        Kind::Dnsmasq => [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--group=root",
            "--pid-file=",
            "--enable-tftp",
            "--tftp-max=1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("--log-facility={log}"),
            format!("--tftp-root={root}"),
        ])
        .collect(),
        Kind::Atftpd => [
            "atftpd",
            "--daemon",
            "--no-fork",
            "--port",
            &port,
            "--bind-address",
            "127.0.0.1",
            "--user",
            "root",
            "--group",
            "root",
            "--logfile",
            &log,
            &root,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        Kind::TftpdHpa => vec![
            paths.hpa.display().to_string(),
            "-L".into(),
            "-s".into(),
            "-c".into(),
            "-u".into(),
            "root".into(),
            "-a".into(),
            format!("127.0.0.1:{port}"),
            root,
        ],
    };
    Ok(argv)
}

/// memtftpd's configuration for the benchmark: limits out of the way, uploads on.
pub fn memtftpd_config(listen: SocketAddr, root: &Path) -> String {
    format!(
        r#"# Written by the loopback benchmark.
listen = ["{listen}"]
max-transfers = 20000
max-transfers-per-client = 20000
max-windowsize = 64
timeout = 1
receive-buffer = "8MiB"
log-level = "info"

[[preseed]]
path = "{root}"

[upload]
enabled = true
max-file-size = "64MiB"
max-total-size = "1GiB"
overwrite = true
"#,
        root = root.display()
    )
}

/// memtftpd's default configuration, serving `root` on `listen` (the robustness suite:
/// every limit, timeout and buffer as shipped).
pub fn default_config(listen: SocketAddr, root: &Path, single_port: bool) -> String {
    format!(
        "# Written by the robustness suite: the defaults.\nlisten = [\"{listen}\"]\nsingle-port = {single_port}\n\n[[preseed]]\npath = \"{}\"\n",
        root.display()
    )
}

/// Polls with a small read request until the server answers (at most 10 s).
fn wait_ready(running: &mut Running) -> io::Result<()> {
    let limit = Instant::now() + Duration::from_secs(10);
    let probe = Load {
        server: running.kind.addr(),
        op: Op::Get {
            name: "probe.txt".into(),
            expected: Bytes::from_static(PROBE),
        },
        count: 1,
        concurrency: 1,
        options: TransferOptions::default(),
        ack_delay: None,
        start_rate: None,
        sources: Vec::new(),
        time_limit: Duration::from_millis(300),
        timeout: Duration::from_millis(100),
        retries: 5,
        adaptive: true,
    };
    while Instant::now() < limit {
        if let Some(status) = running.child.try_wait()? {
            return Err(io::Error::other(format!(
                "{} exited at start: {status}",
                running.kind.name()
            )));
        }
        if loadgen::run(&probe)?.completed == 1 {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{} never answered", running.kind.name()),
    ))
}

/// What every server serves as its readiness probe.
pub const PROBE: &[u8] = b"ready\n";

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time of the server and all it started, so far.
    pub fn cpu(&self) -> Duration {
        if let Some(usage) = self
            .cgroup
            .as_ref()
            .and_then(|c| fs::read_to_string(c.join("cpuacct.usage")).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            return Duration::from_nanos(usage);
        }
        proc_cpu(self.pid())
    }

    /// Resident memory of the server and every process of its cgroup now, in bytes.
    pub fn rss_now(&self) -> u64 {
        self.pids()
            .iter()
            .map(|&pid| status_kib(pid, "VmRSS:") * 1024)
            .sum()
    }

    /// The main process's high-water mark, in bytes.
    pub fn hwm(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// Processes in the server's cgroup (just the server without a cgroup).
    pub fn pids(&self) -> Vec<u32> {
        self.cgroup
            .as_ref()
            .and_then(|c| fs::read_to_string(c.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![self.pid()])
    }

    /// Kills the server and everything in its cgroup, and removes the cgroup.
    pub fn stop(&mut self) {
        for pid in self.pids() {
            if pid != self.pid() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(cgroup) = self.cgroup.take() {
            let limit = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(&cgroup).is_err() && Instant::now() < limit {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh cpuacct cgroup (v1), or none if this machine does not offer one.
fn make_cgroup(name: &str) -> Option<PathBuf> {
    let path = Path::new("/sys/fs/cgroup/cpuacct").join(format!("memtftpd-bench-{name}"));
    let _ = fs::remove_dir(&path);
    fs::create_dir(&path).ok()?;
    Some(path)
}

/// utime+stime+cutime+cstime of `pid` from /proc (10 ms resolution).
fn proc_cpu(pid: u32) -> Duration {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which ends at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime is field 14 of stat; fields[0] here is field 3.
    let ticks: u64 = fields.get(11..15).map_or(0, |f| f.iter().sum());
    Duration::from_millis(ticks * 10)
}

/// A `kB` line of /proc/PID/status.
/// A `kB` field (`VmRSS:`, `VmHWM:`) of process `pid`'s status, in KiB; 0 if unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
