//! `max-blksize = "mtu"` (the default) on a real link: two network namespaces the test
//! creates, joined by a veth pair at MTU 1500, the `tftpd` binary in one and curl in the
//! other. A client asking for blksize 65464 gets at most 1468 over IPv4
//! (1500 - 20 - 8 - 4) and 1448 over IPv6 (1500 - 40 - 8 - 4), a route with a smaller
//! MTU bounds it further, the file arrives whole, and the kernel of the server's
//! namespace created no fragment (its `FragCreates` and `Ip6FragCreates` counters stay
//! at zero) while the veth carried the transfer. Needs root (namespaces); skipped with a
//! message where they cannot be made.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Scratch, TFTPD};

/// Two namespaces joined by a veth pair, removed on drop.
struct Link {
    server: String,
    client: String,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Link {
    fn new() -> Result<Link, String> {
        let tag = std::process::id();
        let link = Link {
            server: format!("memtftpd-mtu-s{tag}"),
            client: format!("memtftpd-mtu-c{tag}"),
        };
        run("ip", &["netns", "add", &link.server])?;
        run("ip", &["netns", "add", &link.client])?;
        let (s, c) = (link.server.as_str(), link.client.as_str());
        for (ns, cmd) in [
            (s, "ip link set lo up"),
            (c, "ip link set lo up"),
            (s, "ip link add vs type veth peer name vc"),
            (s, "ip link set vc netns CLIENT"),
            (s, "ip link set vs mtu 1500"),
            (c, "ip link set vc mtu 1500"),
            (s, "ip addr add 10.77.0.1/24 dev vs"),
            (c, "ip addr add 10.77.0.2/24 dev vc"),
            (c, "ip addr add 10.77.0.3/24 dev vc"),
            (s, "ip -6 addr add fd77::1/64 dev vs nodad"),
            (c, "ip -6 addr add fd77::2/64 dev vc nodad"),
            (s, "ip link set vs up"),
            (c, "ip link set vc up"),
            // The kernel knows a smaller MTU on the way to 10.77.0.3 (a route's, as a
            // learned path MTU would be).
            (s, "ip route add 10.77.0.3/32 dev vs mtu lock 1400"),
        ] {
            let cmd = cmd.replace("CLIENT", c);
            let mut args = vec!["netns", "exec", ns];
            args.extend(cmd.split(' '));
            run("ip", &args)?;
        }
        Ok(link)
    }

    /// `program args` inside namespace `ns` (by `nsenter --net`, which leaves /sys alone).
    fn command(ns: &str, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{ns}")).arg(program);
        command
    }

    /// A counter of the server namespace's IP statistics (`/proc/net/snmp` or `snmp6`).
    fn counter(&self, file: &str, table: &str, name: &str) -> u64 {
        let output = Link::command(&self.server, "cat")
            .arg(format!("/proc/net/{file}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if file == "snmp6" {
            return text
                .lines()
                .find_map(|l| {
                    let mut words = l.split_whitespace();
                    (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
                })
                .unwrap_or_else(|| panic!("no {name} in {file}"));
        }
        let mut rows = text.lines().filter(|l| l.starts_with(&format!("{table}:")));
        let (names, values) = (rows.next().unwrap(), rows.next().unwrap());
        let index = names.split_whitespace().position(|n| n == name).unwrap();
        values
            .split_whitespace()
            .nth(index)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Bytes the server's veth has sent (`ip netns exec` mounts the namespace's /sys).
    fn sent_bytes(&self) -> u64 {
        let path = "/sys/class/net/vs/statistics/tx_bytes";
        let text = run("ip", &["netns", "exec", &self.server, "cat", path]).unwrap();
        text.trim().parse().unwrap()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.server]);
        let _ = run("ip", &["netns", "del", &self.client]);
    }
}

/// The daemon in the server namespace, on `[::]` port 0 (learned from its log).
struct Served {
    child: Child,
    stderr: std::path::PathBuf,
    port: u16,
}

impl Served {
    fn start(link: &Link, scratch: &Scratch) -> Served {
        let config = scratch.write(
            "tftpd.toml",
            format!(
                "listen = [\"[::]:0\"]\nlog-level = \"info\"\n[[preseed]]\npath = \"{}\"\n",
                scratch.path("files").display()
            )
            .as_bytes(),
        );
        let stderr = scratch.path("stderr.log");
        let child = Link::command(&link.server, TFTPD)
            .arg("--config")
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // Killed and waited for on drop, whatever happens from here.
        let mut served = Served {
            child,
            stderr,
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = served.log();
            if let Some(address) = log
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            {
                served.port = address.port();
                return served;
            }
            assert!(Instant::now() < deadline, "tftpd did not start: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The log once `ready` holds of it (at most 10 s; then as it is).
    fn log_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if ready(&log) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl in the client namespace fetches `url` asking blksize 65464; the bytes.
fn curl(link: &Link, url: &str, interface: Option<&str>) -> Vec<u8> {
    let mut command = Link::command(&link.client, "curl");
    command.args(["-sS", "--max-time", "30", "--tftp-blksize", "65464"]);
    if let Some(interface) = interface {
        command.args(["--interface", interface]);
    }
    let output = command.arg(url).output().unwrap();
    assert!(
        output.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The blksize of the last transfer the log reports for `peer_prefix`.
fn granted_blksize(log: &str, peer_prefix: &str) -> u16 {
    log.lines()
        .filter(|l| l.contains(peer_prefix) && l.contains("completed"))
        .filter_map(|l| l.split("(blksize ").nth(1)?.split(',').next()?.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no completed transfer for {peer_prefix} in {log}"))
}

#[test]
fn blocks_fit_a_1500_byte_link_and_nothing_is_fragmented() {
    let link = match Link::new() {
        Ok(link) => link,
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces here ({e})");
            return;
        }
    };
    let scratch = Scratch::new("mtu");
    let file: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect();
    scratch.write("files/big.img", &file);
    let served = Served::start(&link, &scratch);
    let port = served.port;
    let frag4 = link.counter("snmp", "Ip", "FragCreates");
    let frag6 = link.counter("snmp6", "", "Ip6FragCreates");
    let before = link.sent_bytes();

    let got = curl(&link, &format!("tftp://10.77.0.1:{port}/big.img"), None);
    assert!(got == file, "IPv4: {} bytes", got.len());
    let got = curl(&link, &format!("tftp://[fd77::1]:{port}/big.img"), None);
    assert!(got == file, "IPv6: {} bytes", got.len());
    let got = curl(
        &link,
        &format!("tftp://10.77.0.1:{port}/big.img"),
        Some("10.77.0.3"),
    );
    assert!(got == file, "IPv4 via the 1400 route: {} bytes", got.len());

    // The server logs a transfer when it has the final ACK, which curl may exit before.
    let log = served.log_when(|log| log.matches("completed").count() >= 3);
    let v4 = granted_blksize(&log, "10.77.0.2:");
    let v6 = granted_blksize(&log, "[fd77::2]:");
    let small = granted_blksize(&log, "10.77.0.3:");
    assert!(v4 <= 1468, "IPv4 blksize {v4}");
    assert!(v6 <= 1448, "IPv6 blksize {v6}");
    assert!(small <= 1400 - 32, "blksize {small} on a route of MTU 1400");
    // What fits, not less: the full MTU less the headers.
    assert_eq!((v4, v6, small), (1468, 1448, 1368));
    // The transfers went out on the veth, and the kernel split none of them.
    assert!(link.sent_bytes() - before >= 3 * file.len() as u64);
    assert_eq!(
        link.counter("snmp", "Ip", "FragCreates"),
        frag4,
        "IPv4 fragments were made"
    );
    assert_eq!(
        link.counter("snmp6", "", "Ip6FragCreates"),
        frag6,
        "IPv6 fragments were made"
    );
}
