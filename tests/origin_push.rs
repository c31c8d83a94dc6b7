//! `[origin] push-uploads` through the binaries: a real TFTP client uploads into the
//! daemon, whose spool makes each upload durable; `tftpd sync --once` pushes them to
//! Debian's nginx on loopback with its WebDAV module accepting `PUT`. nginx itself
//! overwrites a file on every PUT; its configuration here refuses with 412 a PUT carrying
//! `If-None-Match: *` onto an existing file, as S3 does, so a file left unchanged proves
//! that the header was sent (and the access log shows it). The origin is down at first,
//! then up; an acknowledged upload is never sent again, across runs.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemon::*;
use common::nginx::Nginx;
use common::{fetch, upload};
use memtftpd::proto::{Mode, TransferOptions};
use memtftpd::transfer::Outcome;

/// nginx's location for uploads: PUT allowed, `If-None-Match: *` honoured.
const UPLOADS: &str = "location /up/ {\n dav_methods PUT;\n create_full_put_path on;\n\
     set $put \"\";\n if ($request_method = PUT) { set $put \"P\"; }\n\
     if (-f $request_filename) { set $put \"${put}F\"; }\n\
     if ($http_if_none_match = \"*\") { set $put \"${put}N\"; }\n\
     if ($put = PFN) { return 412; }\n }";

fn publish(dir: &Path, out: &Path) {
    let output = Command::new(TFTPD)
        .arg("publish")
        .arg(dir)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `tftpd sync --once`: its exit code and stderr.
fn sync(scratch: &Scratch, config: &Path) -> (Option<i32>, String) {
    let output = Command::new(TFTPD)
        .arg("--config")
        .arg(config)
        .arg("sync")
        .arg("--once")
        .env("RUNTIME_DIRECTORY", scratch.path(""))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config(scratch: &Scratch, port: u16) -> PathBuf {
    let cache = scratch.path("cache");
    scratch.write(
        "tftpd.toml",
        format!(
            "timeout = 1\n\n[[preseed]]\npath = \"{cache}/current\"\noptional = true\n\n\
             [upload]\nenabled = true\nallow = [\"uploads/\"]\nspool = \"{spool}\"\n\n\
             [origin]\nurl = \"http://127.0.0.1:{port}/pxe/manifest.json\"\n\
             cache = \"{cache}\"\ntimeout = \"5s\"\n\
             push-uploads = \"http://127.0.0.1:{port}/up/\"\n",
            cache = cache.display(),
            spool = scratch.path("spool").display(),
        )
        .as_bytes(),
    )
}

fn start_daemon(scratch: &Scratch, config: &Path) -> Daemon {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut daemon = Daemon::start(scratch, config, listener.as_raw_fd(), address);
    drop(listener);
    daemon.wait_ready("READY=1");
    daemon
}

fn put(daemon: &Daemon, name: &str, data: &[u8]) {
    let result = upload(
        daemon.address,
        name,
        Mode::Octet,
        data,
        TransferOptions::default(),
    );
    assert_eq!(
        result.outcome(),
        &Outcome::Completed,
        "{name}: {:?}",
        result.report
    );
}

/// The PUT lines of `lines`.
fn puts(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.starts_with("PUT "))
        .map(String::as_str)
        .collect()
}

/// Every file below `root` with its bytes, sorted.
fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let data = std::fs::read(&path).unwrap();
                out.push((path, data));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn spooled_uploads_reach_the_origin_once_after_it_comes_up_and_nothing_is_overwritten() {
    let scratch = Scratch::new("push");
    scratch.write("src/pxelinux.0", b"loader");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www.join("pxe"));
    std::fs::create_dir_all(www.join("up")).unwrap();
    // The origin is down at first.
    let mut nginx = Nginx::configure(&scratch, &www, UPLOADS);
    let config = config(&scratch, nginx.port);
    let daemon = start_daemon(&scratch, &config);
    put(&daemon, "uploads/sw1.cfg", b"hostname sw1\n");
    put(&daemon, "uploads/racks/r2/sw2.cfg", b"hostname sw2\n");
    let spool = scratch.path("spool");
    let spooled = files(&spool);
    assert_eq!(spooled.len(), 2, "{spooled:?}");

    let (code, stderr) = sync(&scratch, &config);
    assert_eq!(code, Some(75), "{stderr}");
    // One connection refused, and the other upload not tried: one timeout per round.
    assert!(stderr.contains("0 uploads stored (0 bytes), 0 already there, 0 conflicts (0 recorded), 1 failed, 1 deferred"), "{stderr}");

    // Up: both arrive, sent with If-None-Match: *.
    nginx.resume();
    let (code, stderr) = sync(&scratch, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2 uploads stored (26 bytes)"), "{stderr}");
    assert_eq!(
        puts(&nginx.log()),
        [
            "PUT /up/uploads/racks/r2/sw2.cfg 201 \"*\"",
            "PUT /up/uploads/sw1.cfg 201 \"*\""
        ]
    );
    assert_eq!(
        std::fs::read(www.join("up/uploads/sw1.cfg")).unwrap(),
        b"hostname sw1\n"
    );
    assert_eq!(
        std::fs::read(www.join("up/uploads/racks/r2/sw2.cfg")).unwrap(),
        b"hostname sw2\n"
    );

    // Acknowledged: not sent again, by this run or a later one.
    let mark = nginx.log().len();
    for _ in 0..2 {
        let (code, stderr) = sync(&scratch, &config);
        assert_eq!(code, Some(0), "{stderr}");
    }
    assert_eq!(puts(&nginx.since(mark)), Vec::<&str>::new());

    // A new upload: only it is sent. One already there with the same bytes (an earlier
    // PUT whose answer was lost) is acknowledged; one there with other bytes is a
    // conflict, logged and left alone.
    put(&daemon, "uploads/sw3.cfg", b"hostname sw3\n");
    std::fs::write(www.join("up/uploads/same.cfg"), b"same\n").unwrap();
    put(&daemon, "uploads/same.cfg", b"same\n");
    std::fs::write(www.join("up/uploads/taken.cfg"), b"theirs\n").unwrap();
    put(&daemon, "uploads/taken.cfg", b"mine\n");
    let mark = nginx.log().len();
    let (code, stderr) = sync(&scratch, &config);
    assert_eq!(code, Some(0), "{stderr}");
    let mut logged = nginx.since(mark);
    logged.retain(|l| l.contains("/up/"));
    logged.sort();
    assert_eq!(
        logged,
        [
            "GET /up/uploads/same.cfg 200 \"-\"",
            "GET /up/uploads/taken.cfg 200 \"-\"",
            "PUT /up/uploads/same.cfg 412 \"*\"",
            "PUT /up/uploads/sw3.cfg 201 \"*\"",
            "PUT /up/uploads/taken.cfg 412 \"*\"",
        ]
    );
    assert!(
        stderr.contains("1 uploads stored (13 bytes), 1 already there, 1 conflicts (1 recorded)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("uploads/taken.cfg is already at the origin with other content"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(www.join("up/uploads/taken.cfg")).unwrap(),
        b"theirs\n"
    );
    let mark = nginx.log().len();
    let (code, stderr) = sync(&scratch, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(puts(&nginx.since(mark)), Vec::<&str>::new());

    // The spool is the daemon's, untouched: restarted, it serves every upload from it.
    let now = files(&spool);
    assert!(spooled.iter().all(|f| now.contains(f)), "{now:?}");
    assert_eq!(now.len(), 5);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    let daemon = start_daemon(&scratch, &config);
    for (name, data) in [
        ("uploads/sw1.cfg", &b"hostname sw1\n"[..]),
        ("uploads/racks/r2/sw2.cfg", b"hostname sw2\n"),
        ("uploads/taken.cfg", b"mine\n"),
    ] {
        let got = fetch(
            daemon.address,
            name,
            Mode::Octet,
            TransferOptions::default(),
        )
        .data;
        assert_eq!(got.as_deref(), Some(data), "{name}");
    }
}
