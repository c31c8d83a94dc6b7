//! What the benchmarks share about their host: root, the network namespace they run
//! in, the open-file limit, the scratch directory, which servers are installed, and the
//! files' deterministic bytes. Used by the loopback benchmark and (by `#[path]`) the
//! robustness suite, `benches/robust`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::servers::{self, Kind, Paths};

/// Set in the environment of the copy of the runner that lives in the namespace.
pub const NETNS_MARK: &str = "MEMTFTPD_BENCH_NETNS";

/// True when running as root (effective uid 0), from /proc.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Runs this binary again inside a network namespace of its own, pinned to CPU 1.
///
/// The namespace has its loopback up, with a documentation address (192.0.2.1/32,
/// reachable from nowhere) added to it: tftpd-hpa resolves its bind address with
/// `AI_ADDRCONFIG`, which fails when only 127/8 and ::1 exist. It is entered with
/// `nsenter --net` rather than `ip netns exec`, which would remount /sys and hide the
/// cgroups the servers' CPU time is read from.
pub fn rerun_in_namespace(args: &[String]) -> io::Result<()> {
    let name = format!("memtftpd-bench-{}", std::process::id());
    run_quiet("ip", &["netns", "add", &name])?;
    let result = (|| {
        let inside = |cmd: &[&str]| {
            let mut all = vec!["netns", "exec", &name];
            all.extend_from_slice(cmd);
            run_quiet("ip", &all)
        };
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["ip", "addr", "add", "192.0.2.1/32", "dev", "lo"])?;
        let exe = std::env::current_exe()?;
        let status = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{name}"))
            .args(["env", &format!("{NETNS_MARK}=1"), "taskset", "-c", "1"])
            .arg(exe)
            .args(args)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "the run in the namespace failed: {status}"
            )))
        }
    })();
    let _ = run_quiet("ip", &["netns", "del", &name]);
    result
}

pub fn run_quiet(program: &str, args: &[&str]) -> io::Result<()> {
    let status = Command::new(program).args(args).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {} failed: {status}",
            args.join(" ")
        )))
    }
}

/// Raises the open-file limit to the hard limit (10,000 client sockets in S7); children
/// (the servers, the load generator) inherit it.
pub fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

pub fn scratch_dir() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("memtftpd-bench-{}", std::process::id()));
    fs::create_dir_all(dir.join("root"))?;
    Ok(dir)
}

/// The servers asked for that are installed here; the others are named and left out.
pub fn available_servers(wanted: &[Kind], paths: &Paths) -> Vec<Kind> {
    wanted
        .iter()
        .copied()
        .filter(|&kind| {
            let found = match kind {
                Kind::Memtftpd => paths.tftpd.exists(),
                Kind::Baseline => paths.baseline.as_deref().is_some_and(Path::exists),
                Kind::TftpdHpa => paths.hpa.exists(),
                Kind::Dnsmasq => {
                    servers::installed("dnsmasq") && std::env::var_os(NETNS_MARK).is_some()
                }
                Kind::Atftpd => servers::installed("atftpd"),
            };
            if !found {
                println!(
                    "note: {} left out (not installed, or dnsmasq without a namespace for port 69)",
                    kind.name()
                );
            }
            found
        })
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*), so any process can rebuild them.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
