//! The control socket through the `tftpd` binary: every `tftpd ctl` subcommand as a table
//! and as JSON, the log level changed without a reload, uploads fetched and dropped, a
//! synchronous reload and its refusal, callers that are not root turned away, the socket
//! answering while 1,000 transfers run, and clients that never read or send megabytes of
//! junk held within bounds while transfers go on. The metrics pass Prometheus's own
//! checker (`promtool check metrics`, Debian's prometheus package) and move as transfers
//! happen.
//!
//! Under `CI=true` a missing `promtool` or `setpriv` is a failure; elsewhere the test says
//! it skipped that part.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ctl::*;
use common::daemon::*;
use common::tools::required;
use common::*;
use memtftpd::control::report::TransfersReport;
use memtftpd::control::{FilesReport, StatusReport};
use memtftpd::proto::{Mode, TransferOptions};
use memtftpd::transfer::Outcome;

/// A daemon serving `files` with uploads under `uploads/`, its control socket in the
/// scratch directory, and `extra` appended to the top level of its configuration.
struct Ctl {
    scratch: Scratch,
    config: PathBuf,
    socket: PathBuf,
    daemon: Daemon,
}

fn config_text(scratch: &Scratch, extra: &str) -> String {
    // Long enough that a transfer held open by hand is never retransmitted meanwhile.
    let timeout = if extra.contains("timeout =") {
        ""
    } else {
        "timeout = 10"
    };
    format!(
        r#"
{timeout}
log-level = "info"
log-format = "text"
control-socket = "{}"
max-transfers = 2000
max-transfers-per-client = 1500
max-unverified-per-client = 1500
{extra}

[[preseed]]
path = "{}"

[upload]
enabled = true
max-file-size = "4MiB"
max-total-size = "16MiB"
allow = ["uploads/"]
"#,
        scratch.path("control").display(),
        scratch.path("files").display()
    )
}

fn start(tag: &str, files: &[(&str, &[u8])], extra: &str) -> Ctl {
    let scratch = Scratch::new(tag);
    for (name, contents) in files {
        scratch.write(&format!("files/{name}"), contents);
    }
    let config = scratch.write("tftpd.toml", config_text(&scratch, extra).as_bytes());
    let daemon = start_daemon(&scratch, &config);
    let socket = scratch.path("control");
    Ctl {
        scratch,
        config,
        socket,
        daemon,
    }
}

fn stderr_of(daemon: &Daemon) -> String {
    std::fs::read_to_string(&daemon.stderr).unwrap_or_default()
}

#[test]
fn every_ctl_subcommand_answers_as_a_table_and_as_json() {
    let c = start(
        "ctl-all",
        &[
            ("pxe/boot.0", b"boot loader"),
            ("pxe/cfg", b"cfg"),
            ("other", b"o"),
        ],
        "timeout = 1",
    );
    let server = c.daemon.address;
    let uploaded: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let up = upload(
        server,
        "uploads/backup.bin",
        Mode::Octet,
        &uploaded,
        TransferOptions::default(),
    );
    assert_eq!(*up.outcome(), Outcome::Completed);
    let got = fetch(
        server,
        "pxe/boot.0",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(*got.outcome(), Outcome::Completed);

    // The upload lingers a little to acknowledge a lost last ACK again.
    wait_until("the upload to end", || {
        let status: StatusReport =
            serde_json::from_value(ctl_json(&c.socket, &["status"])).unwrap();
        status.transfers.active == 0
    });

    // status
    let table = ctl(&c.socket, &["status"]);
    for key in [
        "version:",
        "uptime:",
        "store:",
        "uploads:",
        "transfers:",
        "last reload:",
    ] {
        assert!(table.contains(key), "{key} in {table}");
    }
    let status: StatusReport = serde_json::from_value(ctl_json(&c.socket, &["status"])).unwrap();
    assert_eq!(status.server.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.server.pid, c.daemon.child.id());
    assert_eq!((status.store.files, status.store.uploads), (4, 1));
    assert_eq!(status.store.upload_bytes, uploaded.len() as u64);
    assert!(status.served >= 2, "{status:?}");
    assert_eq!(status.log_level, "info");

    // transfers (none in flight now)
    assert_eq!(ctl(&c.socket, &["transfers"]), "no transfers in flight\n");
    let transfers: TransfersReport =
        serde_json::from_value(ctl_json(&c.socket, &["transfers"])).unwrap();
    assert!(transfers.transfers.is_empty());

    // files, with and without a prefix
    let table = ctl(&c.socket, &["files", "pxe/"]);
    assert!(table.starts_with("SIZE"), "{table}");
    assert!(
        table.contains("pxe/boot.0") && !table.contains("other"),
        "{table}"
    );
    let files: FilesReport =
        serde_json::from_value(ctl_json(&c.socket, &["files", "pxe/"])).unwrap();
    let boot = &files.files[0];
    assert_eq!(
        (boot.name.as_str(), boot.size, boot.reads),
        ("pxe/boot.0", 11, 1)
    );
    assert_eq!(boot.source, "preseed");
    assert_eq!(
        boot.path.as_deref(),
        Some(c.scratch.path("files").to_str().unwrap())
    );
    assert!(boot.loaded.as_deref().is_some_and(|t| t.ends_with('Z')));
    let all: FilesReport = serde_json::from_value(ctl_json(&c.socket, &["files"])).unwrap();
    assert_eq!(all.files.len(), 4);

    // uploads
    let table = ctl(&c.socket, &["uploads"]);
    assert!(
        table.contains("uploads/backup.bin") && table.contains("upload"),
        "{table}"
    );
    let uploads: FilesReport = serde_json::from_value(ctl_json(&c.socket, &["uploads"])).unwrap();
    assert_eq!(uploads.files.len(), 1);
    assert_eq!(uploads.files[0].size, uploaded.len() as u64);

    // upload get: to a file, to stdout, and with --json
    let out = c.scratch.path("got.bin");
    let said = ctl(
        &c.socket,
        &[
            "upload",
            "get",
            "uploads/backup.bin",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(said.contains("200000 bytes written"), "{said}");
    assert_eq!(std::fs::read(&out).unwrap(), uploaded);
    let (code, stdout, stderr) = ctl_raw(&c.socket, &["upload", "get", "uploads/backup.bin"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, uploaded, "upload get to stdout is the exact bytes");
    std::fs::remove_file(&out).unwrap();
    let header = ctl_json(
        &c.socket,
        &[
            "upload",
            "get",
            "uploads/backup.bin",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(header["size"], 200_000);
    assert_eq!(std::fs::read(&out).unwrap(), uploaded);
    let (code, _, stderr) = ctl_raw(&c.socket, &["upload", "get", "pxe/cfg"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no upload named pxe/cfg"), "{stderr}");

    // log-level
    assert_eq!(
        ctl(&c.socket, &["log-level", "warn"]),
        "log level warn (was info)\n"
    );
    let level = ctl_json(&c.socket, &["log-level", "info"]);
    assert_eq!(
        (level["log_level"].clone(), level["was"].clone()),
        ("info".into(), "warn".into())
    );

    // reload, synchronous
    let table = ctl(&c.socket, &["reload"]);
    assert!(table.starts_with("reloaded: 4 files"), "{table}");
    let reload = ctl_json(&c.socket, &["reload"]);
    assert_eq!(reload["files"], 4);
    let status: StatusReport = serde_json::from_value(ctl_json(&c.socket, &["status"])).unwrap();
    assert_eq!(status.reloads.ok, 2);
    assert!(status.last_reload.is_some_and(|r| r.ok));

    // metrics
    let text = ctl(&c.socket, &["metrics"]);
    assert!(
        text.contains("# TYPE tftpd_requests_total counter"),
        "{text}"
    );
    let metrics = ctl_json(&c.socket, &["metrics"]);
    assert_eq!(metrics["metrics"].as_str(), Some(text.as_str()));

    // upload drop, last: the upload is gone
    assert_eq!(
        ctl(&c.socket, &["upload", "drop", "uploads/backup.bin"]),
        "dropped uploads/backup.bin\n"
    );
    let up = upload(
        server,
        "uploads/other",
        Mode::Octet,
        b"x",
        TransferOptions::default(),
    );
    assert_eq!(*up.outcome(), Outcome::Completed);
    let dropped = ctl_json(&c.socket, &["upload", "drop", "uploads/other"]);
    assert_eq!(dropped["dropped"], "uploads/other");
    let uploads: FilesReport = serde_json::from_value(ctl_json(&c.socket, &["uploads"])).unwrap();
    assert!(uploads.files.is_empty());
    assert_eq!(ctl(&c.socket, &["uploads"]), "no files\n");
}

#[test]
fn ctl_finds_the_socket_in_the_config_and_a_refused_reload_exits_78_with_the_reason() {
    let c = start("ctl-reload", &[("f", b"f")], "");
    let output = Command::new(TFTPD)
        .args(["ctl", "--config"])
        .arg(&c.config)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let good = std::fs::read_to_string(&c.config).unwrap();
    std::fs::write(&c.config, good.replace("timeout = 10", "timeout = 0")).unwrap();
    let (code, _, stderr) = ctl_raw(&c.socket, &["reload"]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("reload refused") && stderr.contains("timeout"),
        "{stderr}"
    );
    let status: StatusReport = serde_json::from_value(ctl_json(&c.socket, &["status"])).unwrap();
    let last = status.last_reload.unwrap();
    assert!(!last.ok && last.error.unwrap().contains("timeout"));
    assert_eq!(status.reloads.failed, 1);
    // Still serving the running configuration.
    let got = fetch(
        c.daemon.address,
        "f",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(*got.outcome(), Outcome::Completed);

    let (code, _, stderr) = ctl_raw(&c.scratch.path("nothing-here"), &["status"]);
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("cannot reach the daemon"), "{stderr}");
}

#[test]
fn log_level_debug_takes_effect_without_a_reload() {
    let c = start(
        "ctl-level",
        &[("big", &[7u8; 4096])],
        "retries = 1\ntimeout = 1",
    );
    // A request nobody answers ends "unanswered", which is logged at debug level.
    let unanswered = |c: &Ctl| {
        let before = serde_json::from_value::<StatusReport>(ctl_json(&c.socket, &["status"]))
            .unwrap()
            .served;
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .send_to(&request(1, "big", "octet"), c.daemon.address)
            .unwrap();
        wait_until("the unanswered transfer to end", || {
            let status: StatusReport =
                serde_json::from_value(ctl_json(&c.socket, &["status"])).unwrap();
            status.served > before
        });
    };
    unanswered(&c);
    assert!(
        !stderr_of(&c.daemon).contains("unanswered"),
        "{}",
        stderr_of(&c.daemon)
    );
    ctl(&c.socket, &["log-level", "debug"]);
    unanswered(&c);
    let log = stderr_of(&c.daemon);
    assert!(log.contains("DEBUG") && log.contains("unanswered"), "{log}");
    assert!(!log.contains("reloading"), "no reload happened: {log}");
    // Text lines carry a timestamp when not under the journal.
    let line = log.lines().find(|l| l.contains("unanswered")).unwrap();
    assert!(
        line.as_bytes()[4] == b'-' && line.contains('T') && line.contains("Z "),
        "{line}"
    );
}

#[test]
fn a_caller_that_is_not_root_is_refused() {
    if !required("setpriv") {
        return;
    }
    let c = start("ctl-nobody", &[("f", b"f")], "");
    let as_nobody = |socket: &Path| {
        let output = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                TFTPD,
                "ctl",
                "--socket",
            ])
            .arg(socket)
            .arg("status")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // Mode 0600: the kernel already keeps nobody out.
    let mode = std::fs::metadata(&c.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, stderr) = as_nobody(&c.socket);
    assert_ne!(code, Some(0), "{stderr}");
    // With the file opened to all, the daemon's own check (SO_PEERCRED) refuses.
    std::fs::set_permissions(c.scratch.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&c.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, stderr) = as_nobody(&c.socket);
    assert_eq!(code, Some(77), "{stderr}");
    assert!(stderr.contains("permission denied: uid 65534"), "{stderr}");
    assert!(stderr_of(&c.daemon).contains("control socket: permission denied"));
    // Root still gets in.
    ctl(&c.socket, &["status"]);
}

#[test]
fn the_control_socket_answers_while_1000_transfers_run() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let file: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let c = start("ctl-1000", &[("f", &file)], "");
    let reads: Vec<RawRead> = (0..1000)
        .map(|_| {
            let mut read = RawRead::start(c.daemon.address, "f");
            read.step();
            read
        })
        .collect();
    let status: StatusReport = serde_json::from_value(ctl_json(&c.socket, &["status"])).unwrap();
    assert_eq!(status.transfers.active, 1000);
    assert_eq!(
        (status.transfers.read, status.transfers.verified),
        (1000, 1000)
    );
    let listed: TransfersReport =
        serde_json::from_value(ctl_json(&c.socket, &["transfers"])).unwrap();
    assert_eq!(listed.transfers.len(), 1000);
    let one = &listed.transfers[0];
    assert_eq!(
        (one.op.as_str(), one.file.as_str(), one.bytes),
        ("read", "f", 512)
    );
    assert!(one.peer.starts_with("127.0.0.1:") && one.verified);
    let table = ctl(&c.socket, &["transfers"]);
    assert_eq!(table.lines().count(), 1001, "a header and a line each");

    // The control socket keeps answering while every transfer runs to its end.
    let socket = c.socket.clone();
    let asker = std::thread::spawn(move || {
        let mut answers = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = memtftpd::ctl::request(&socket, memtftpd::control::Command::Status);
            let reply = reply.unwrap_or_else(|e| panic!("answer {answers}: {e}"));
            let status: StatusReport = reply.result().unwrap();
            answers += 1;
            // A caller asking now and then, as an operator or a scraper does.
            std::thread::sleep(Duration::from_millis(10));
            if status.transfers.active == 0 || Instant::now() > deadline {
                return (answers, status);
            }
        }
    });
    for read in reads {
        assert_eq!(read.finish(), file);
    }
    let (answers, status) = asker.join().unwrap();
    assert!(answers >= 1);
    assert_eq!(status.transfers.active, 0, "{status:?}");
    assert!(status.served >= 1000);
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn clients_that_never_read_or_send_junk_hold_nothing_up_and_stay_within_bounds() {
    let c = start("ctl-slow", &[("f", &[1u8; 100_000])], "");
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();
    let up = upload(
        c.daemon.address,
        "uploads/big",
        Mode::Octet,
        &big,
        TransferOptions::default(),
    );
    assert_eq!(*up.outcome(), Outcome::Completed);
    let pid = c.daemon.child.id();
    let before = rss_kib(pid);

    // 15 clients ask for the 4 MB upload and never read a byte of it.
    let request = b"{\"version\":1,\"command\":\"upload-get\",\"name\":\"uploads/big\"}\n";
    let stuck: Vec<UnixStream> = (0..15)
        .map(|_| {
            let mut s = UnixStream::connect(&c.socket).unwrap();
            s.write_all(request).unwrap();
            s
        })
        .collect();
    // One more sends 10 MB of junk without a newline.
    let socket = c.socket.clone();
    let junk = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let chunk = vec![b'x'; 65536];
        let mut sent = 0usize;
        while sent < 10 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        (sent, answer)
    });
    // Transfers go on, and so does the control socket (the last free slot).
    for _ in 0..20 {
        let got = fetch(
            c.daemon.address,
            "f",
            Mode::Octet,
            TransferOptions::default(),
        );
        assert_eq!(*got.outcome(), Outcome::Completed);
    }
    let (sent, answer) = junk.join().unwrap();
    assert!(
        sent < 10 << 20,
        "the daemon stopped reading the junk ({sent} bytes taken)"
    );
    assert!(
        answer.contains("request longer than 65536 bytes"),
        "{answer:?}"
    );
    ctl(&c.socket, &["status"]);
    // 15 answers of 4 MB wait, all sharing the upload's bytes: no copy each.
    let after = rss_kib(pid);
    assert!(
        after < before + 16 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    // The slots are full now: one more is told so.
    let mut fill: Vec<UnixStream> = (0..1)
        .map(|_| UnixStream::connect(&c.socket).unwrap())
        .collect();
    let mut extra = UnixStream::connect(&c.socket).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(
        answer.contains("busy: too many control clients"),
        "{answer:?}"
    );
    fill.clear();
    // Clients that make no progress are closed after the idle limit (10 s).
    for mut s in stuck {
        // Wait (on the socket, at most 30 s) for the daemon to hang up, then drain what
        // the kernel buffered: far less than the answer's 4 MB.
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&s),
            nix::poll::PollFlags::from_bits_retain(nix::libc::POLLRDHUP),
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(30_000u16)).unwrap();
        assert_eq!(ready, 1, "the daemon closed the idle client");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.len() < 4_000_000, "{} bytes", got.len());
    }
    ctl(&c.socket, &["status"]);
}

/// The value of the sample `name` (with its labels) in exposition `text`.
fn sample(text: &str, name: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line[name.len() + 1..].parse().unwrap()
}

#[test]
fn the_metrics_pass_promtool_and_move_as_transfers_happen() {
    let c = start("ctl-metrics", &[("f", &[3u8; 3000])], "timeout = 1");
    let before = ctl(&c.socket, &["metrics"]);
    let got = fetch(
        c.daemon.address,
        "f",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(*got.outcome(), Outcome::Completed);
    let missing = fetch(
        c.daemon.address,
        "nope",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(missing.error_code(), Some(1));
    let up = upload(
        c.daemon.address,
        "uploads/u",
        Mode::Octet,
        &[9u8; 700],
        TransferOptions::default(),
    );
    assert_eq!(*up.outcome(), Outcome::Completed);
    let denied = upload(
        c.daemon.address,
        "elsewhere",
        Mode::Octet,
        b"x",
        TransferOptions::default(),
    );
    assert_eq!(denied.error_code(), Some(2));
    let stray = UdpSocket::bind("127.0.0.1:0").unwrap();
    stray
        .send_to(b"\x00\x04\x00\x01", c.daemon.address)
        .unwrap();
    // The stray ACK is answered with ERROR 5: wait for it, so it has been counted.
    stray
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stray.recv_from(&mut [0u8; 600]);
    // The upload lingers a little to acknowledge a lost last ACK again.
    wait_until("the upload to end", || {
        let text = ctl(&c.socket, &["metrics"]);
        sample(&text, "tftpd_transfers_active{op=\"write\"}") == 0.0
    });
    let after = ctl(&c.socket, &["metrics"]);

    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(
        moved("tftpd_requests_total{op=\"read\",result=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        moved("tftpd_requests_total{op=\"read\",result=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        moved("tftpd_requests_total{op=\"write\",result=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        moved("tftpd_requests_total{op=\"write\",result=\"access_denied\"}"),
        1.0
    );
    assert_eq!(
        moved("tftpd_transfers_total{op=\"read\",outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(
        moved("tftpd_transfers_total{op=\"write\",outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(moved("tftpd_transfer_bytes_total{op=\"read\"}"), 3000.0);
    assert_eq!(moved("tftpd_transfer_bytes_total{op=\"write\"}"), 700.0);
    assert_eq!(moved("tftpd_stray_datagrams_total"), 1.0);
    assert_eq!(sample(&after, "tftpd_store_upload_bytes"), 700.0);
    assert_eq!(sample(&after, "tftpd_store_files"), 2.0);

    for text in [&before, &after] {
        promtool_passes(text);
    }
}

#[test]
fn the_metrics_exporter_answers_one_http_request_from_the_control_socket() {
    let c = start("ctl-http", &[("f", b"f")], "");
    let exchange = |request: &str| {
        let mut child = Command::new(TFTPD)
            .args(["ctl", "--socket"])
            .arg(&c.socket)
            .args(["metrics", "--http"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let answer = exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("Content-Type: text/plain; version=0.0.4"),
        "{answer}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(body.contains("tftpd_build_info"), "{body}");
    assert!(exchange("GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    assert!(exchange("POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
}

#[test]
fn print_config_writes_every_default_and_check_config_accepts_it() {
    let scratch = Scratch::new("print-config");
    scratch.write("files/f", b"f");
    let config = scratch.write(
        "tftpd.toml",
        format!(
            "timeout = 3\n[[preseed]]\npath = \"{}\"\n",
            scratch.path("files").display()
        )
        .as_bytes(),
    );
    let output = Command::new(TFTPD)
        .arg("--config")
        .arg(&config)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    // Every key the shipped configuration documents is written out.
    let shipped = std::fs::read_to_string("config/tftpd.toml").unwrap();
    // (Up to the commented [origin] table, which is printed only when it is set.)
    let shipped = &shipped[..shipped.find("\n#[origin]\n").unwrap_or(shipped.len())];
    for line in shipped.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        if let Some((key, _)) = rest.split_once(" = ")
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            // The one key without a default: written only when set.
            && key != "spool"
        {
            assert!(
                printed.contains(&format!("\n{key} = ")),
                "{key} missing from\n{printed}"
            );
        }
    }
    assert!(printed.contains("timeout = 3\n"), "{printed}");
    let again = scratch.write("printed.toml", printed.as_bytes());
    let check = Command::new(TFTPD)
        .arg("--config")
        .arg(&again)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let twice = Command::new(TFTPD)
        .arg("--config")
        .arg(&again)
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(twice.stdout).unwrap(),
        printed,
        "a fixed point"
    );
}
