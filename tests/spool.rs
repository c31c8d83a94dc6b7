//! Durable uploads through the `tftpd` binary, on a real file system: what was
//! acknowledged survives SIGKILL byte for byte, what was not leaves nothing, and a full
//! disk answers ERROR 3 in place of the final ACK with nothing half-written left.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::*;
use common::*;
use memtftpd::proto::{MAX_DATAGRAM, Mode, Packet, TransferOptions};
use memtftpd::transfer::Outcome;
use nix::sys::signal::Signal;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn spool_config(scratch: &Scratch, spool: &Path, overwrite: bool) -> PathBuf {
    let body = format!(
        r#"
timeout = 1
log-level = "debug"

[upload]
enabled = true
max-file-size = "1MiB"
overwrite = {overwrite}
allow = ["uploads/"]
spool = "{}"
"#,
        spool.display()
    );
    scratch.write("tftpd.toml", body.as_bytes())
}

/// Every file below `dir`, relative, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                let relative = entry.path().strip_prefix(dir).unwrap().to_owned();
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// Sends a WRQ for `name` and one full block of DATA, and waits for ACK 1: an upload in
/// flight, never finished.
fn start_unfinished_upload(server: SocketAddr, name: &str) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&request(2, name, "octet"), server).unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, tid) = socket.recv_from(&mut buf).unwrap();
    assert!(matches!(Packet::parse(&buf[..len]), Ok(Packet::Ack { block }) if block.0 == 0));
    let data = Packet::Data {
        block: memtftpd::proto::BlockNumber(1),
        data: &[9; 512],
    };
    let len = data.encode(&mut buf).unwrap();
    socket.send_to(&buf[..len], tid).unwrap();
    loop {
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        if matches!(Packet::parse(&buf[..len]), Ok(Packet::Ack { block }) if block.0 == 1) {
            return socket;
        }
    }
}

#[test]
fn acknowledged_uploads_survive_sigkill_byte_identical_and_unfinished_ones_leave_nothing() {
    let scratch = Scratch::new("spool-kill");
    let spool = scratch.path("state/uploads");
    let config = spool_config(&scratch, &spool, true);
    // The test keeps the socket, so the restarted daemon listens on the same port.
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut daemon = Daemon::start(&scratch, &config, listener.as_raw_fd(), address);
    daemon.wait_ready("READY=1");

    let uploads = [
        ("uploads/switch-1.cfg", pattern(1_000, 1)),
        ("uploads/site/a/b/router.bin", pattern(300_000, 2)),
        ("uploads/empty", Vec::new()),
        ("uploads/replaced", pattern(5_000, 3)),
        ("uploads/replaced", pattern(7_000, 4)),
    ];
    for (name, data) in &uploads {
        let options = TransferOptions {
            blksize: Some(1428),
            ..TransferOptions::default()
        };
        let sent = upload(address, name, Mode::Octet, data, options);
        assert_eq!(sent.outcome(), &Outcome::Completed, "{name}");
        // Acknowledged means on disk, whole.
        let on_disk = std::fs::read(spool.join(name)).unwrap();
        assert!(on_disk == *data || *name == "uploads/replaced", "{name}");
    }
    let _unfinished = start_unfinished_upload(address, "uploads/unfinished");
    daemon.signal(Signal::SIGKILL);
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, None, "killed by a signal");
    assert!(
        stderr.contains(&format!(
            "stored as {}",
            spool.join("uploads/switch-1.cfg").display()
        )),
        "the log names the spooled path: {stderr}"
    );
    assert_eq!(
        files_below(&spool),
        [
            "uploads/empty",
            "uploads/replaced",
            "uploads/site/a/b/router.bin",
            "uploads/switch-1.cfg"
        ],
        "the acknowledged uploads and nothing else"
    );
    // A crash in the middle of a write leaves a temporary: the next start removes it.
    std::fs::write(spool.join("uploads/site/.tftpd-spool-77-0.tmp"), b"half").unwrap();

    let mut daemon = Daemon::start(&scratch, &config, listener.as_raw_fd(), address);
    daemon.wait_ready("READY=1 after the restart");
    for (name, data) in &uploads[1..] {
        let back = fetch(address, name, Mode::Octet, TransferOptions::default());
        assert!(back.data.as_deref() == Some(&data[..]) || *name == "uploads/replaced");
    }
    let replaced = fetch(
        address,
        "uploads/replaced",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(
        replaced.data,
        Some(uploads[4].1.clone()),
        "the later upload"
    );
    let first = fetch(
        address,
        "uploads/switch-1.cfg",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(first.data, Some(uploads[0].1.clone()));
    let unfinished = fetch(
        address,
        "uploads/unfinished",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(
        unfinished.error_code(),
        Some(1),
        "never acknowledged, never stored"
    );
    assert!(!spool.join("uploads/site/.tftpd-spool-77-0.tmp").exists());
    daemon.signal(Signal::SIGTERM);
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("4 uploads restored"),
        "the start-up says what it restored: {stderr}"
    );
    assert!(stderr.contains(".tftpd-spool-77-0.tmp"), "{stderr}");
}

#[test]
fn a_full_spool_disk_gives_error_3_instead_of_the_final_ack_and_leaves_no_partial_file() {
    assert!(
        // /proc/self belongs to the process's effective user.
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "this test mounts a tmpfs in a mount namespace of its own: run it as root"
    );
    let scratch = Scratch::new("spool-full");
    let spool = scratch.path("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let config = spool_config(&scratch, &spool, false);
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // tftpd runs in a mount namespace of its own, with a 256 KiB tmpfs as its spool;
    // the test's own view of the directory stays empty.
    let prelude = format!(
        "mount -t tmpfs -o size=256k tftpd-test-spool '{}' && ",
        spool.display()
    );
    let mut daemon = Daemon::start_in(
        &scratch,
        &config,
        listener.as_raw_fd(),
        address,
        &[],
        &["unshare", "-m", "--propagation", "private"],
        &prelude,
    );
    daemon.wait_ready("READY=1");
    let in_namespace = |args: &[&str]| {
        let output = Command::new("nsenter")
            .arg("-t")
            .arg(daemon.child.id().to_string())
            .arg("-m")
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let fits = pattern(100_000, 5);
    let sent = upload(
        address,
        "uploads/fits",
        Mode::Octet,
        &fits,
        TransferOptions::default(),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    let too_big = pattern(200_000, 6);
    let refused = upload(
        address,
        "uploads/too-big",
        Mode::Octet,
        &too_big,
        TransferOptions::default(),
    );
    assert_eq!(
        refused.error_code(),
        Some(3),
        "ERROR 3 in place of the final ACK: {:?}",
        refused.outcome()
    );
    assert_eq!(
        refused.report.bytes,
        200_000 / 512 * 512,
        "every block acknowledged but the last, whose ACK the ERROR replaced"
    );
    let listed = in_namespace(&["find", &spool.display().to_string(), "-type", "f"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [spool.join("uploads/fits").display().to_string()],
        "no partial file, no temporary"
    );
    let size = in_namespace(&[
        "stat",
        "-c",
        "%s",
        &spool.join("uploads/fits").display().to_string(),
    ]);
    assert_eq!(size.trim(), "100000");
    let missing = fetch(
        address,
        "uploads/too-big",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(missing.error_code(), Some(1), "not served either");
    let kept = fetch(
        address,
        "uploads/fits",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(kept.data, Some(fits));
    // Room again once the disk has it: a small upload still goes through.
    let small = upload(
        address,
        "uploads/small",
        Mode::Octet,
        b"small",
        TransferOptions::default(),
    );
    assert_eq!(small.outcome(), &Outcome::Completed);
    daemon.signal(Signal::SIGTERM);
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("No space left on device"),
        "the log says why: {stderr}"
    );
    let report = stderr
        .lines()
        .find(|line| line.contains("write \"uploads/too-big\""))
        .unwrap_or_else(|| panic!("no report of the refused upload: {stderr}"));
    assert!(
        report.contains("refused with error"),
        "logged as refused, not completed: {report}"
    );
    assert!(
        files_below(&spool).is_empty(),
        "the tmpfs was the daemon's own"
    );
}
