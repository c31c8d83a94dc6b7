//! Real TFTP clients (tftp-hpa's `tftp`, `atftp`, `curl`, busybox `tftp`) fetch and upload
//! through the `tftpd` binary, in both modes where the client has them, with `blksize`
//! and `windowsize` where it supports them, over IPv4 and IPv6. Contents are compared
//! byte for byte with what was served or sent.
//!
//! Under `CI=true` a missing client is a failure; elsewhere the test says it skipped it.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use common::daemon::*;
use common::tools::required;

/// A binary file that is not a whole number of blocks, and a text with LF and bare CR.
fn binary() -> Vec<u8> {
    (0..300_001u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn text() -> Vec<u8> {
    b"# pxelinux.cfg/default\nDEFAULT linux\r\nLABEL linux\n  KERNEL vmlinuz\rAPPEND quiet\n"
        .repeat(200)
}

/// The netascii form of `data` (what a client that does not translate keeps).
fn netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

/// A daemon on a dual-stack socket, serving `files/`, uploads allowed under `uploads/`.
fn daemon(scratch: &Scratch) -> Option<Daemon> {
    scratch.write("files/boot.bin", &binary());
    scratch.write("files/pxelinux.cfg/default", &text());
    let config = scratch.write(
        "tftpd.toml",
        format!(
            "timeout = 1\nmax-windowsize = 64\ncontrol-socket = \"control.sock\"\n[[preseed]]\npath = \"{}\"\n[upload]\nenabled = true\nmax-file-size = \"4MiB\"\nallow = [\"uploads/\"]\n",
            scratch.path("files").display()
        )
        .as_bytes(),
    );
    let Ok(socket) = memtftpd::driver::bind_listener("[::]:0".parse().unwrap(), 1 << 20) else {
        eprintln!("skipped: no IPv6 here");
        return None;
    };
    let address = socket.local_addr().unwrap();
    let mut daemon = Daemon::start(scratch, &config, socket.as_raw_fd(), address);
    drop(socket);
    daemon.wait_ready("READY=1");
    Some(daemon)
}

fn hosts(port: u16) -> [(String, SocketAddr); 2] {
    [
        (
            "127.0.0.1".to_owned(),
            SocketAddr::from(([127, 0, 0, 1], port)),
        ),
        ("::1".to_owned(), format!("[::1]:{port}").parse().unwrap()),
    ]
}

/// Runs a client command; panics with its output if it fails.
fn run(command: &mut Command, what: &str) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Uploads `data` with `put`, then fetches it back with our own client and compares.
fn check_upload(address: SocketAddr, remote: &str, data: &[u8]) {
    let back = common::fetch(
        address,
        remote,
        memtftpd::proto::Mode::Octet,
        memtftpd::proto::TransferOptions::default(),
    );
    assert!(
        back.data.as_deref() == Some(data),
        "{remote}: uploaded bytes differ"
    );
}

#[test]
fn tftp_hpa_fetches_and_uploads_in_both_modes_over_ipv4_and_ipv6() {
    if !required("tftp") {
        return;
    }
    let scratch = Scratch::new("tftp-hpa");
    let Some(daemon) = daemon(&scratch) else {
        return;
    };
    let port = daemon.address.port();
    for (n, (host, address)) in hosts(port).into_iter().enumerate() {
        let family = if host.contains(':') { "-6" } else { "-4" };
        let local = scratch.path(&format!("hpa-{n}.bin"));
        let get = format!("get boot.bin {}", local.display());
        run(
            Command::new("tftp")
                .args([family, "-m", "octet", &host, &port.to_string(), "-c"])
                .args(get.split(' ')),
            "tftp get",
        );
        assert!(read(&local) == binary(), "tftp-hpa octet {host}");
        let local_text = scratch.path(&format!("hpa-{n}.txt"));
        let get = format!("get pxelinux.cfg/default {}", local_text.display());
        run(
            Command::new("tftp")
                .args([family, "-m", "netascii", &host, &port.to_string(), "-c"])
                .args(get.split(' ')),
            "tftp get netascii",
        );
        assert!(
            read(&local_text) == text(),
            "tftp-hpa netascii {host}: translated back to the original"
        );
        let put = format!("put {} uploads/hpa-{n}.bin", local.display());
        run(
            Command::new("tftp")
                .args([family, "-m", "octet", &host, &port.to_string(), "-c"])
                .args(put.split(' ')),
            "tftp put",
        );
        check_upload(address, &format!("uploads/hpa-{n}.bin"), &binary());
        let put = format!("put {} uploads/hpa-{n}.txt", local_text.display());
        run(
            Command::new("tftp")
                .args([family, "-m", "netascii", &host, &port.to_string(), "-c"])
                .args(put.split(' ')),
            "tftp put netascii",
        );
        check_upload(address, &format!("uploads/hpa-{n}.txt"), &text());
    }
}

#[test]
fn atftp_fetches_with_blksize_and_windowsize_and_uploads() {
    if !required("atftp") {
        return;
    }
    let scratch = Scratch::new("atftp");
    let Some(daemon) = daemon(&scratch) else {
        return;
    };
    let port = daemon.address.port().to_string();
    for (n, (host, address)) in hosts(daemon.address.port()).into_iter().enumerate() {
        for (m, options) in [
            vec![],
            vec!["blksize 1468", "tsize 0"],
            vec!["blksize 1468", "windowsize 16"],
        ]
        .into_iter()
        .enumerate()
        {
            let local = scratch.path(&format!("atftp-{n}-{m}.bin"));
            let mut command = Command::new("atftp");
            command.args(["-g", "-r", "boot.bin", "-l"]).arg(&local);
            for option in &options {
                command.args(["--option", option]);
            }
            run(command.args([&host, &port]), "atftp get");
            assert!(read(&local) == binary(), "atftp {options:?} {host}");
        }
        let local = scratch.path(&format!("atftp-{n}-0.bin"));
        let remote = format!("uploads/atftp-{n}.bin");
        run(
            Command::new("atftp")
                .args(["-p", "-r", &remote, "-l"])
                .arg(&local)
                .args(["--option", "blksize 1024", &host, &port]),
            "atftp put",
        );
        check_upload(address, &remote, &binary());
    }
}

#[test]
fn curl_fetches_with_blksize_in_both_modes_and_uploads() {
    if !required("curl") {
        return;
    }
    let scratch = Scratch::new("curl");
    let Some(daemon) = daemon(&scratch) else {
        return;
    };
    let port = daemon.address.port();
    for (n, (_, address)) in hosts(port).into_iter().enumerate() {
        let host = match address {
            SocketAddr::V4(_) => "127.0.0.1".to_owned(),
            SocketAddr::V6(_) => "[::1]".to_owned(),
        };
        for blksize in ["512", "1468", "8192"] {
            let local = scratch.path(&format!("curl-{n}-{blksize}.bin"));
            run(
                Command::new("curl")
                    .args(["-sS", "--tftp-blksize", blksize, "-o"])
                    .arg(&local)
                    .arg(format!("tftp://{host}:{port}/boot.bin")),
                "curl get",
            );
            assert!(read(&local) == binary(), "curl blksize {blksize} {host}");
        }
        // curl asks for netascii but keeps the bytes as they travel.
        let local = scratch.path(&format!("curl-{n}.txt"));
        run(
            Command::new("curl")
                .args(["-sS", "-o"])
                .arg(&local)
                .arg(format!(
                    "tftp://{host}:{port}/pxelinux.cfg/default;mode=netascii"
                )),
            "curl get netascii",
        );
        assert!(
            read(&local) == netascii(&text()),
            "curl netascii {host}: the wire form"
        );
        let upload = scratch.write(&format!("curl-up-{n}.bin"), &binary());
        run(
            Command::new("curl")
                .args(["-sS", "--tftp-blksize", "1468", "-T"])
                .arg(&upload)
                .arg(format!("tftp://{host}:{port}/uploads/curl-{n}.bin")),
            "curl put",
        );
        check_upload(address, &format!("uploads/curl-{n}.bin"), &binary());
    }
}

#[test]
fn busybox_fetches_with_blksize_and_uploads() {
    if !required("busybox") {
        return;
    }
    let scratch = Scratch::new("busybox");
    let Some(daemon) = daemon(&scratch) else {
        return;
    };
    let port = daemon.address.port().to_string();
    for (n, (host, address)) in hosts(daemon.address.port()).into_iter().enumerate() {
        for blksize in ["512", "1468"] {
            let local = scratch.path(&format!("bb-{n}-{blksize}.bin"));
            run(
                Command::new("busybox")
                    .args(["tftp", "-g", "-b", blksize, "-r", "boot.bin", "-l"])
                    .arg(&local)
                    .args([&host, &port]),
                "busybox get",
            );
            assert!(read(&local) == binary(), "busybox blksize {blksize} {host}");
        }
        let local = scratch.path(&format!("bb-{n}-512.bin"));
        let remote = format!("uploads/bb-{n}.bin");
        run(
            Command::new("busybox")
                .args(["tftp", "-p", "-b", "1468", "-r", &remote, "-l"])
                .arg(&local)
                .args([&host, &port]),
            "busybox put",
        );
        check_upload(address, &remote, &binary());
    }
}
