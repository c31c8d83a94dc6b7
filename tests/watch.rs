//! Live content through the `tftpd` binary, on a real file system with real inotify: files
//! copied, replaced, edited, deleted and directories created under a preseeded directory are
//! served as their new selves without a reload; a file written slowly is never served half
//! written; an unreadable file is skipped and reported while the rest is served, at start-up
//! and on reload; a reload reads only what changed.
//!
//! Every wait is a bounded poll (fetch until the expected answer, at most
//! [`SEEN_WITHIN`]); nothing asserts how long a change took.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;
use memtftpd::proto::{Mode, TransferOptions};
use nix::sys::signal::Signal;

/// The most a test waits for a change to be served: the bound is about a second; this
/// leaves room for a loaded machine.
const SEEN_WITHIN: Duration = Duration::from_secs(15);

fn options() -> TransferOptions {
    TransferOptions {
        blksize: Some(8192),
        ..TransferOptions::default()
    }
}

/// What `name` fetches as now: its bytes, or the error code.
fn get(address: SocketAddr, name: &str) -> Result<Vec<u8>, Option<u16>> {
    let result = fetch(address, name, Mode::Octet, options());
    match result.data {
        Some(data) => Ok(data),
        None => {
            let code = result.error_code();
            assert!(code.is_some(), "{name}: {:?}", result.outcome());
            Err(code)
        }
    }
}

/// Fetches `name` until `expected` (bytes, or an error code) comes back; at most
/// [`SEEN_WITHIN`].
fn served_soon(address: SocketAddr, name: &str, expected: Result<&[u8], u16>, what: &str) {
    let deadline = Instant::now() + SEEN_WITHIN;
    loop {
        let got = get(address, name);
        let matches = match (&got, expected) {
            (Ok(data), Ok(want)) => data == want,
            (Err(code), Err(want)) => *code == Some(want),
            _ => false,
        };
        if matches {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {name} still fetches as {:?}",
            got.as_ref()
                .map(|d| String::from_utf8_lossy(&d[..d.len().min(64)]))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(scratch: &Scratch, files: &Path, extra: &str) -> PathBuf {
    scratch.write(
        "tftpd.toml",
        format!(
            "timeout = 1\nlog-level = \"debug\"\n{extra}\n[[preseed]]\npath = \"{}\"\n",
            files.display()
        )
        .as_bytes(),
    )
}

fn start(scratch: &Scratch, config: &Path, wrapper: &[&str]) -> Daemon {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut daemon =
        Daemon::start_wrapped(scratch, config, listener.as_raw_fd(), address, &[], wrapper);
    drop(listener);
    daemon.wait_ready("READY=1");
    daemon
}

fn stderr(daemon: &Daemon) -> String {
    fs::read_to_string(&daemon.stderr).unwrap_or_default()
}

/// The generation in a `STATUS=` line.
fn generation(status: &str) -> Option<u64> {
    let (_, rest) = status.split_once("generation ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn copies_replacements_edits_deletions_and_new_directories_are_served_without_a_reload() {
    let scratch = Scratch::new("watch");
    scratch.write("files/menu.cfg", b"menu v1");
    scratch.write("files/gone.bin", b"soon gone");
    scratch.write("outside/kernel", &[7; 200_000]);
    let files = scratch.path("files");
    let config = config(&scratch, &files, "");
    let mut daemon = start(&scratch, &config, &[]);
    let address = daemon.address;
    assert_eq!(get(address, "menu.cfg").unwrap(), b"menu v1");

    // Copied in (cp: create, writes, close).
    fs::copy(scratch.path("outside/kernel"), files.join("kernel")).unwrap();
    served_soon(address, "kernel", Ok(&[7; 200_000]), "a copy");

    // Replaced: written under another name, then renamed over it.
    fs::write(files.join(".menu.cfg.tmp"), b"menu v2, replaced").unwrap();
    fs::rename(files.join(".menu.cfg.tmp"), files.join("menu.cfg")).unwrap();
    served_soon(address, "menu.cfg", Ok(b"menu v2, replaced"), "a replace");

    // Edited in place (same inode, truncated and rewritten).
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(files.join("menu.cfg"))
        .unwrap();
    file.write_all(b"menu v3, edited in place").unwrap();
    drop(file);
    served_soon(
        address,
        "menu.cfg",
        Ok(b"menu v3, edited in place"),
        "an edit",
    );

    // Deleted.
    fs::remove_file(files.join("gone.bin")).unwrap();
    served_soon(address, "gone.bin", Err(1), "a delete");

    // A new directory with files, and a directory inside it made later.
    fs::create_dir(files.join("pxelinux.cfg")).unwrap();
    fs::write(files.join("pxelinux.cfg/01-aa-bb-cc"), b"host one").unwrap();
    served_soon(
        address,
        "pxelinux.cfg/01-aa-bb-cc",
        Ok(b"host one"),
        "a new dir",
    );
    fs::create_dir(files.join("pxelinux.cfg/deeper")).unwrap();
    fs::write(files.join("pxelinux.cfg/deeper/x"), b"deeper").unwrap();
    served_soon(
        address,
        "pxelinux.cfg/deeper/x",
        Ok(b"deeper"),
        "a nested dir",
    );

    // Moved in from outside the tree, and a directory removed whole.
    fs::write(scratch.path("outside/moved"), b"moved in").unwrap();
    fs::rename(scratch.path("outside/moved"), files.join("moved")).unwrap();
    served_soon(address, "moved", Ok(b"moved in"), "a move in");
    fs::remove_dir_all(files.join("pxelinux.cfg")).unwrap();
    served_soon(address, "pxelinux.cfg/01-aa-bb-cc", Err(1), "a removed dir");

    // All of it without a reload; the status shows the generation that moved with it.
    let status = daemon.wait_notify("a STATUS= with a later generation", |m| {
        m.starts_with("STATUS=") && generation(m).is_some_and(|g| g >= 8)
    });
    assert!(
        !daemon.messages.iter().any(|m| m.contains("RELOADING=1")),
        "{:?}",
        daemon.messages
    );
    let log = stderr(&daemon);
    assert!(log.contains("preseed changed on disk: "), "{log}");
    assert!(log.contains("; generation "), "{log}");
    assert!(!log.contains("reloading"), "{log}");
    assert!(status.contains("files"), "{status}");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}

/// Writes `data` to `path` in `chunks` pieces, a pause between each, then closes it.
fn write_slowly(path: &Path, data: &[u8], chunks: usize, truncate_existing: bool) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate_existing)
        .open(path)
        .unwrap();
    for piece in data.chunks(data.len().div_ceil(chunks)) {
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
}

#[test]
fn a_file_written_slowly_is_never_served_half_written() {
    let scratch = Scratch::new("watch-slow");
    let old: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    scratch.write("files/image.bin", &old);
    scratch.write("files/other", b"0000");
    let files = scratch.path("files");
    let config = config(&scratch, &files, "");
    let daemon = start(&scratch, &config, &[]);
    let address = daemon.address;

    let new: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    for (name, truncate) in [("fresh.bin", false), ("image.bin", true)] {
        let path = files.join(name);
        let before = if truncate {
            Ok(old.clone())
        } else {
            Err(Some(1))
        };
        let writer = {
            let new = new.clone();
            std::thread::spawn(move || write_slowly(&path, &new, 20, truncate))
        };
        // While it is written, and meanwhile other changes make the watch rescan: only
        // the old whole file (or none) or the new whole file.
        let mut fetches = 0;
        let mut round = 0u32;
        while !writer.is_finished() {
            round += 1;
            fs::write(files.join("other"), round.to_le_bytes()).unwrap();
            let got = get(address, name);
            assert!(
                got == before || got.as_deref() == Ok(&new[..]),
                "{name} served half-written: {:?}; {}",
                got.as_ref().map(Vec::len),
                stderr(&daemon)
            );
            // And the file rewritten in place each round (truncated, then written): never
            // served empty.
            let other = get(address, "other").unwrap();
            assert_eq!(other.len(), 4, "other served half-written");
            fetches += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        writer.join().unwrap();
        assert!(
            fetches > 3,
            "the file was written too fast to test ({fetches})"
        );
        served_soon(address, name, Ok(&new), "the finished write");
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}

/// Runs the daemon as an unprivileged user when the tests run as root (root reads
/// everything); otherwise as the user running the tests.
fn unprivileged() -> &'static [&'static str] {
    if nix::unistd::geteuid().is_root() {
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ]
    } else {
        &[]
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_unreadable_file_is_skipped_and_reported_while_the_rest_is_served() {
    let scratch = Scratch::new("watch-perm");
    scratch.write("files/boot.efi", b"boot");
    let secret = scratch.write("files/secret.cfg", b"root only");
    chmod(&secret, 0o600);
    let private = scratch.path("files/private");
    scratch.write("files/private/key", b"key");
    chmod(&private, 0o700);
    let files = scratch.path("files");
    let config = config(&scratch, &files, "");
    let mut daemon = start(&scratch, &config, unprivileged());
    let address = daemon.address;

    // At start-up: both skipped, reported with the path, the user and what to change.
    let status = daemon.wait_notify("a STATUS= with the skipped count", |m| {
        m.starts_with("STATUS=") && m.contains("2 skipped")
    });
    assert!(status.contains("1 files"), "{status}");
    assert_eq!(get(address, "boot.efi").unwrap(), b"boot");
    assert_eq!(get(address, "secret.cfg"), Err(Some(1)));
    let log = stderr(&daemon);
    for path in [&secret, &private] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("skipped {}: cannot read it", path.display())))
            .unwrap_or_else(|| panic!("no warning for {}: {log}", path.display()));
        assert!(line.contains("Permission denied"), "{line}");
        if !unprivileged().is_empty() {
            assert!(
                line.contains("tftpd runs as user nobody (uid 65534)"),
                "{line}"
            );
        }
        assert!(line.contains("chmod o+r"), "{line}");
    }

    // On reload: another file became unreadable, the rest is served, the count moves.
    let now_private = scratch.write("files/late.cfg", b"late");
    chmod(&now_private, 0o600);
    scratch.write("files/new.cfg", b"new");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notify("RELOADING=1", |m| m.contains("RELOADING=1"));
    daemon.wait_ready("READY=1 after the reload");
    let status = daemon.wait_notify("a STATUS= with 3 skipped", |m| {
        m.starts_with("STATUS=") && m.contains("3 skipped")
    });
    assert!(!status.contains("reload failed"), "{status}");
    assert_eq!(get(address, "new.cfg").unwrap(), b"new");
    assert_eq!(get(address, "late.cfg"), Err(Some(1)));
    assert!(stderr(&daemon).contains(&format!("skipped {}: ", now_private.display())));

    // Made readable: the watch sees the change of mode and serves it.
    chmod(&secret, 0o644);
    served_soon(address, "secret.cfg", Ok(b"root only"), "a chmod");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}

#[test]
fn with_on_error_fail_an_unreadable_file_stops_start_up_with_78() {
    let scratch = Scratch::new("watch-strict");
    scratch.write("files/ok", b"ok");
    let secret = scratch.write("files/secret", b"secret");
    chmod(&secret, 0o600);
    let files = scratch.path("files");
    let config = scratch.write(
        "tftpd.toml",
        format!(
            "[[preseed]]\npath = \"{}\"\non-error = \"fail\"\n",
            files.display()
        )
        .as_bytes(),
    );
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let daemon = Daemon::start_wrapped(
        &scratch,
        &config,
        listener.as_raw_fd(),
        address,
        &[],
        unprivileged(),
    );
    let (code, stderr) = daemon.wait_exit();
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains(&secret.display().to_string()), "{stderr}");
}

/// `rchar` of `/proc/PID/io`: bytes the process read through system calls.
fn rchar(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_reload_reads_only_the_file_that_changed() {
    let scratch = Scratch::new("watch-incremental");
    let big = vec![0xa5; 16 << 20];
    for n in 0..4 {
        scratch.write(&format!("files/image-{n}.bin"), &big);
    }
    scratch.write("files/menu.cfg", b"menu v1");
    let files = scratch.path("files");
    // No watch: only the reload reads.
    let config = config(&scratch, &files, "watch = false");
    let mut daemon = start(&scratch, &config, &[]);
    let address = daemon.address;
    let pid = daemon.child.id();
    let held = get(address, "image-0.bin").unwrap();
    assert_eq!(held.len(), big.len());

    fs::write(files.join("menu.cfg"), b"menu v2, a little longer").unwrap();
    let before = rchar(pid);
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notify("RELOADING=1", |m| m.contains("RELOADING=1"));
    daemon.wait_ready("READY=1 after the reload");
    let read = rchar(pid) - before;
    assert!(
        read < 1 << 20,
        "the reload read {read} bytes of 64 MiB unchanged"
    );
    assert_eq!(
        get(address, "menu.cfg").unwrap(),
        b"menu v2, a little longer"
    );
    let log = stderr(&daemon);
    assert!(
        log.contains("read 1 files (24 bytes), 4 unchanged"),
        "{log}"
    );
    assert!(
        log.contains("configuration reloaded: 0 added, 1 changed, 0 removed"),
        "{log}"
    );

    // watch = false: a new file waits for the next reload.
    fs::write(files.join("later.cfg"), b"later").unwrap();
    assert_eq!(get(address, "later.cfg"), Err(Some(1)));
    daemon.signal(Signal::SIGHUP);
    daemon.wait_ready("READY=1 after the second reload");
    assert_eq!(get(address, "later.cfg").unwrap(), b"later");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}

#[test]
fn a_tree_switched_by_renaming_a_symlink_over_the_source_is_served_whole() {
    let scratch = Scratch::new("watch-swap");
    scratch.write("cache/gen-1/boot.cfg", b"generation 1");
    scratch.write("cache/gen-1/only-in-1", b"old");
    std::os::unix::fs::symlink("gen-1", scratch.path("cache/current")).unwrap();
    let config = config(&scratch, &scratch.path("cache/current"), "");
    let daemon = start(&scratch, &config, &[]);
    let address = daemon.address;
    assert_eq!(get(address, "boot.cfg").unwrap(), b"generation 1");

    scratch.write("cache/gen-2/boot.cfg", b"generation 2");
    scratch.write("cache/gen-2/only-in-2", b"new");
    std::os::unix::fs::symlink("gen-2", scratch.path("cache/current.tmp")).unwrap();
    fs::rename(
        scratch.path("cache/current.tmp"),
        scratch.path("cache/current"),
    )
    .unwrap();
    served_soon(
        address,
        "boot.cfg",
        Ok(b"generation 2"),
        "the switched tree",
    );
    assert_eq!(get(address, "only-in-2").unwrap(), b"new");
    assert_eq!(get(address, "only-in-1"), Err(Some(1)));
    // The new tree is watched, the old one no longer counts.
    fs::write(scratch.path("cache/gen-2/later"), b"later").unwrap();
    served_soon(
        address,
        "later",
        Ok(b"later"),
        "a file added to the new tree",
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().0, Some(0));
}
