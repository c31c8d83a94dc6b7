//! `[origin] auth = "sigv4"` against a real S3 server that verifies every signature:
//! s3s-fs (crates.io, the s3s project's S3 server on a directory; `tests/run-all` installs
//! it with `cargo install`) on loopback with one access key, addressed path-style as MinIO,
//! Garage or Ceph are. The key is a systemd credential (`$CREDENTIALS_DIRECTORY`). The
//! right key syncs and pushes; a wrong secret, or no signature, is refused by the server
//! and leaves the served generation serving.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::*;
use common::{fetch, upload};
use memtftpd::proto::{Mode, TransferOptions};
use memtftpd::transfer::Outcome;

const ACCESS_KEY: &str = "AKIDTFTPDTEST";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYtftpdKEY";
const BUCKET: &str = "netboot";

/// s3s-fs serving the buckets under `root` (each a directory) on 127.0.0.1.
struct S3Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl S3Server {
    fn start(scratch: &Scratch, root: &Path) -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = scratch.path("s3s.log");
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .env("RUST_LOG", "s3s=debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs (tests/run-all installs it: cargo install s3s-fs --features binary)");
        let server = S3Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// `tftpd sync --once`, reloading `daemon`, with the credentials in `scratch/creds`.
fn sync(scratch: &Scratch, config: &Path, daemon: &Daemon) -> (Option<i32>, String) {
    let output = Command::new(TFTPD)
        .arg("--config")
        .arg(config)
        .args(["sync", "--once", "--reload-pid"])
        .arg(daemon.child.id().to_string())
        .env("CREDENTIALS_DIRECTORY", scratch.path("creds"))
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

fn config(scratch: &Scratch, name: &str, port: u16, auth: &str) -> PathBuf {
    let cache = scratch.path("cache");
    scratch.write(
        name,
        format!(
            "timeout = 1\n\n[[preseed]]\npath = \"{cache}/current\"\noptional = true\n\n\
             [upload]\nenabled = true\nallow = [\"uploads/\"]\nspool = \"{spool}\"\n\n\
             [origin]\nurl = \"http://127.0.0.1:{port}/{BUCKET}/pxe/manifest.json\"\n\
             cache = \"{cache}\"\ntimeout = \"5s\"\n\
             push-uploads = \"http://127.0.0.1:{port}/{BUCKET}/pushed/\"\n{auth}",
            cache = cache.display(),
            spool = scratch.path("spool").display(),
        )
        .as_bytes(),
    )
}

fn served(daemon: &Daemon, name: &str) -> Option<Vec<u8>> {
    fetch(
        daemon.address,
        name,
        Mode::Octet,
        TransferOptions::default(),
    )
    .data
}

#[test]
fn a_private_bucket_syncs_with_the_right_key_and_a_wrong_secret_leaves_the_served_generation() {
    let scratch = Scratch::new("s3");
    scratch.write("src/pxelinux.0", b"loader");
    scratch.write("src/boot/vmlinuz", b"kernel v1");
    let root = scratch.path("s3");
    publish(&scratch.path("src"), &root.join(BUCKET).join("pxe"));
    let server = S3Server::start(&scratch, &root);
    scratch.write(
        "creds/s3-key",
        format!("{ACCESS_KEY}:{SECRET_KEY}\n").as_bytes(),
    );
    let signed = config(
        &scratch,
        "signed.toml",
        server.port,
        "auth = \"sigv4\"\ncredential = \"s3-key\"\nregion = \"us-east-1\"\n",
    );
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut daemon = Daemon::start(&scratch, &signed, listener.as_raw_fd(), address);
    drop(listener);
    daemon.wait_ready("READY=1");

    // The right key: synced, served, and a spooled upload pushed by a signed PUT.
    let sent = upload(
        address,
        "uploads/sw1.cfg",
        Mode::Octet,
        b"hostname sw1\n",
        TransferOptions::default(),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    let (code, stderr) = sync(&scratch, &signed, &daemon);
    assert_eq!(code, Some(0), "{stderr}\n{}", server.log());
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v1"[..])
    );
    assert!(stderr.contains("1 uploads stored"), "{stderr}");
    assert_eq!(
        std::fs::read(root.join(BUCKET).join("pushed/uploads/sw1.cfg")).unwrap(),
        b"hostname sw1\n"
    );

    // A new generation, and a wrong secret: refused by the server (403), nothing pushed,
    // the served generation kept.
    scratch.write("src/boot/vmlinuz", b"kernel v2");
    publish(&scratch.path("src"), &root.join(BUCKET).join("pxe"));
    let sent = upload(
        address,
        "uploads/sw2.cfg",
        Mode::Octet,
        b"hostname sw2\n",
        TransferOptions::default(),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    scratch.write(
        "creds/s3-key",
        format!("{ACCESS_KEY}:not{SECRET_KEY}\n").as_bytes(),
    );
    let (code, stderr) = sync(&scratch, &signed, &daemon);
    assert_eq!(code, Some(75), "{stderr}");
    assert!(stderr.contains("the origin answered 403"), "{stderr}");
    assert!(stderr.contains("0 uploads stored (0 bytes)"), "{stderr}");
    assert!(stderr.contains("1 failed, 0 deferred"), "{stderr}");
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v1"[..])
    );
    assert!(!root.join(BUCKET).join("pushed/uploads/sw2.cfg").exists());

    // No signature at all: refused as well.
    let unsigned = config(&scratch, "unsigned.toml", server.port, "");
    let (code, stderr) = sync(&scratch, &unsigned, &daemon);
    assert_eq!(code, Some(75), "{stderr}");
    assert!(stderr.contains("the origin answered 403"), "{stderr}");
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v1"[..])
    );

    // The key rotated back: the new generation is served and the upload pushed.
    scratch.write(
        "creds/s3-key",
        format!("{ACCESS_KEY}:{SECRET_KEY}\n").as_bytes(),
    );
    let (code, stderr) = sync(&scratch, &signed, &daemon);
    assert_eq!(code, Some(0), "{stderr}\n{}", server.log());
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v2"[..])
    );
    assert_eq!(
        std::fs::read(root.join(BUCKET).join("pushed/uploads/sw2.cfg")).unwrap(),
        b"hostname sw2\n"
    );
    assert!(stderr.contains("1 uploads stored"), "{stderr}");
}
