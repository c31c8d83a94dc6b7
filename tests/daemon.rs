//! The `tftpd` binary as systemd runs it: a UDP socket passed as fd 3 with `LISTEN_FDS`,
//! notifications read from a `NOTIFY_SOCKET` the test owns, signals for reload and stop.
//! Also the exit codes and messages of bad configurations and bad sockets.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemon::*;
use common::*;
use memtftpd::proto::{Mode, TransferOptions};
use memtftpd::transfer::Outcome;
use nix::sys::signal::Signal;

fn config_file(scratch: &Scratch, body: &str) -> PathBuf {
    scratch.write("tftpd.toml", body.as_bytes())
}

fn base_config(files: &Path) -> String {
    format!(
        r#"
timeout = 1
shutdown-grace = "20s"
log-level = "debug"
control-socket = "control.sock"

[[preseed]]
path = "{}"

[upload]
enabled = true
max-file-size = "1MiB"
allow = ["uploads/"]
"#,
        files.display()
    )
}

/// A daemon socket-activated on 127.0.0.1 with `base_config`, serving `files`, and
/// ready; also its scratch directory and configuration file.
fn ready_daemon(
    tag: &str,
    files: &[(&str, &[u8])],
    env: &[(&str, &str)],
) -> (Scratch, PathBuf, Daemon) {
    let scratch = Scratch::new(tag);
    for (name, contents) in files {
        scratch.write(&format!("files/{name}"), contents);
    }
    let config = config_file(&scratch, &base_config(&scratch.path("files")));
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut daemon = Daemon::start_with(&scratch, &config, listener.as_raw_fd(), address, env);
    drop(listener);
    daemon.wait_ready("READY=1");
    (scratch, config, daemon)
}

#[test]
fn a_socket_activated_daemon_notifies_serves_reloads_and_drains() {
    let (scratch, _config, mut daemon) =
        ready_daemon("activated", &[("pxelinux.0", b"first file")], &[]);
    let address = daemon.address;
    let fetched = fetch(
        address,
        "pxelinux.0",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(fetched.data.as_deref(), Some(&b"first file"[..]));
    let sent = upload(
        address,
        "uploads/config.bak",
        Mode::Octet,
        b"backup",
        TransferOptions::default(),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    let status = daemon.wait_notify("a STATUS= with a transfer served", |m| {
        m.starts_with("STATUS=") && !m.contains(" 0 served")
    });
    assert!(status.contains("files"), "{status}");

    // Reload with a changed preseed: a new file appears, the upload stays.
    scratch.write("files/new.cfg", b"second file");
    daemon.signal(Signal::SIGHUP);
    let reloading = daemon.wait_notify("RELOADING=1", |m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    daemon.wait_ready("READY=1 after the reload");
    let new = fetch(address, "new.cfg", Mode::Octet, TransferOptions::default());
    assert_eq!(new.data.as_deref(), Some(&b"second file"[..]));
    let kept = fetch(
        address,
        "uploads/config.bak",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(kept.data.as_deref(), Some(&b"backup"[..]));

    // A transfer in flight when SIGTERM arrives is allowed to finish.
    let big = vec![0x5a; 300_000];
    scratch.write("files/big.img", &big);
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notify("RELOADING=1", |m| m.contains("RELOADING=1"));
    daemon.wait_ready("READY=1 after the second reload");
    let read = RawRead::start(address, "big.img");
    daemon.signal(Signal::SIGTERM);
    daemon.wait_notify("STOPPING=1", |m| m.contains("STOPPING=1"));
    let received = read.finish();
    assert!(received == big, "the drained transfer delivered every byte");
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_reload_with_a_broken_config_keeps_the_running_one() {
    let (_scratch, config, mut daemon) = ready_daemon("badreload", &[("a", b"a")], &[]);
    let address = daemon.address;
    std::fs::write(&config, "max-blksize = 7\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notify("RELOADING=1", |m| m.contains("RELOADING=1"));
    let failed = daemon.wait_notify("a failure status", |m| m.contains("reload failed"));
    assert!(failed.contains("max-blksize"), "{failed}");
    let still = fetch(address, "a", Mode::Octet, TransferOptions::default());
    assert_eq!(still.data.as_deref(), Some(&b"a"[..]));
    daemon.signal(Signal::SIGTERM);
    let (code, _) = daemon.wait_exit();
    assert_eq!(code, Some(0));
}

#[test]
fn a_tcp_socket_passed_by_systemd_is_refused_with_a_clear_error() {
    let scratch = Scratch::new("tcp");
    let files = scratch.path("files");
    scratch.write("files/a", b"a");
    let config = config_file(&scratch, &base_config(&files));
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = tcp.local_addr().unwrap();
    let daemon = Daemon::start(&scratch, &config, tcp.as_raw_fd(), address);
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("fd 3"), "{stderr}");
}

fn check_config(path: &Path) -> (Option<i32>, String) {
    let output = Command::new(TFTPD)
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_file_line_and_key_and_exits_78() {
    let scratch = Scratch::new("check");
    let bad = scratch.write("bad.toml", b"timeout = 2\nmax-blksize = 7\n");
    let (code, stderr) = check_config(&bad);
    assert_eq!(code, Some(78));
    let expected = format!("{}:2:", bad.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("max-blksize"), "{stderr}");

    let unknown = scratch.write("unknown.toml", b"[upload]\nenable = true\n");
    let (code, stderr) = check_config(&unknown);
    assert_eq!(code, Some(78));
    assert!(
        stderr.contains(":2:") && stderr.contains("enable"),
        "{stderr}"
    );

    // A [[client]] table may only narrow [upload], its budget too.
    let widening = scratch.write(
        "widening.toml",
        b"[upload]\nmax-total-size = \"1MiB\"\nmax-file-size = \"1MiB\"\n\n[[client]]\nnetworks = [\"10.0.0.0/8\"]\n\
          [client.upload]\nmax-total-size = \"2MiB\"\n",
    );
    let (code, stderr) = check_config(&widening);
    assert_eq!(code, Some(78), "{stderr}");
    let expected = format!("{}:8:", widening.display());
    assert!(
        stderr.contains(&expected) && stderr.contains("client[0].upload.max-total-size"),
        "{stderr}"
    );

    let missing_preseed = scratch.write(
        "missing.toml",
        b"[[preseed]]\npath = \"/nonexistent/memtftpd\"\n",
    );
    let (code, stderr) = check_config(&missing_preseed);
    assert_eq!(code, Some(78));
    assert!(stderr.contains("/nonexistent/memtftpd"), "{stderr}");

    let (code, stderr) = check_config(Path::new("/nonexistent/tftpd.toml"));
    assert_eq!(code, Some(78), "{stderr}");
}

#[test]
fn the_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let (code, stderr) = check_config(&example);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_missing_preseed_path_stops_start_up_with_78_naming_it() {
    let scratch = Scratch::new("nopreseed");
    let config = config_file(
        &scratch,
        "[[preseed]]\npath = \"/nonexistent/memtftpd-files\"\n",
    );
    let output = Command::new(TFTPD)
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/memtftpd-files"));
}

#[test]
fn the_reload_command_returns_once_the_new_config_serves_and_fails_with_the_reason() {
    let (scratch, config, daemon) = ready_daemon("reloadcmd", &[("a", b"a")], &[]);
    let address = daemon.address;

    scratch.write("files/b", b"b");
    let (code, stderr) = daemon.reload_command(&scratch, &config);
    assert_eq!(code, Some(0), "{stderr}");
    // No waiting: the new file is served the moment the command returns.
    let b = fetch(address, "b", Mode::Octet, TransferOptions::default());
    assert_eq!(b.data.as_deref(), Some(&b"b"[..]));

    // A broken edit: the command fails with the reason; the daemon goes on as before.
    std::fs::write(&config, "[upload]\nenabled = maybe\n").unwrap();
    let (code, stderr) = daemon.reload_command(&scratch, &config);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("tftpd.toml:2:"), "{stderr}");
    let still = fetch(address, "b", Mode::Octet, TransferOptions::default());
    assert_eq!(still.data.as_deref(), Some(&b"b"[..]));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}

#[test]
fn the_reload_command_never_signals_a_process_that_is_not_a_tftpd() {
    let scratch = Scratch::new("reloadother");
    let config = scratch.write("tftpd.toml", b"listen = [\"127.0.0.1:0\"]\n");
    // What a daemon's PID may belong to once the daemon is gone.
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let output = Command::new(TFTPD)
        .arg("--config")
        .arg(&config)
        .arg("--reload")
        .arg(other.id().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is not a tftpd"), "{stderr}");
    // Not signalled: SIGHUP would have ended it.
    assert!(other.try_wait().unwrap().is_none(), "{stderr}");
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn the_watchdog_is_petted_at_half_its_interval() {
    let (_scratch, _config, mut daemon) =
        ready_daemon("watchdog", &[("a", b"a")], &[("WATCHDOG_USEC", "400000")]);
    for n in 1..=3 {
        daemon.wait_notify(&format!("WATCHDOG=1 #{n}"), |m| m == "WATCHDOG=1\n");
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}
