//! The `[origin]` side of the binary tests: `tftpd publish` into a web root, a daemon
//! configuration that syncs from an origin (and pushes uploads to it), `tftpd sync --once`
//! as a timer would run it, what the daemon serves over TFTP, and the free loopback port
//! an origin server is started on.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use memtftpd::proto::{Mode, TransferOptions};

use super::daemon::{Daemon, Scratch, TFTPD};
use super::fetch;

/// A TCP port on 127.0.0.1 that was free a moment ago (bound on port 0, then released
/// for the server the test starts; another test may take it in between).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tftpd publish DIR OUT`, which must succeed.
pub fn publish(dir: &Path, out: &Path) {
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

/// Runs `tftpd sync --once` (reloading `daemon` when given); returns its exit code and
/// stderr.
pub fn sync(scratch: &Scratch, config: &Path, daemon: Option<&Daemon>) -> (Option<i32>, String) {
    sync_with(scratch, config, daemon, &[])
}

/// As [`sync`], with extra environment variables (such as `CREDENTIALS_DIRECTORY`).
/// The notify socket and the journal are never passed on: its log goes to stderr.
pub fn sync_with(
    scratch: &Scratch,
    config: &Path,
    daemon: Option<&Daemon>,
    env: &[(&str, &OsStr)],
) -> (Option<i32>, String) {
    let mut command = Command::new(TFTPD);
    command
        .arg("--config")
        .arg(config)
        .arg("sync")
        .arg("--once");
    if let Some(daemon) = daemon {
        command
            .arg("--reload-pid")
            .arg(daemon.child.id().to_string());
    }
    let output = command
        .env("RUNTIME_DIRECTORY", scratch.path(""))
        .envs(env.iter().copied())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes `tftpd.toml`: a daemon with its control socket at `control`, serving the
/// cache's current generation (optional: there is none before the first sync), which
/// syncs from `url`; `extra` is added to `[origin]`.
pub fn config(scratch: &Scratch, url: &str, extra: &str) -> PathBuf {
    let control = format!(
        "control-socket = \"{}\"\n",
        scratch.path("control").display()
    );
    write_config(scratch, "tftpd.toml", &control, "", url, extra)
}

/// Writes `name`: a daemon serving the cache's current generation, which syncs from
/// `url`, takes uploads under `uploads/` into its spool at `spool` and pushes them to
/// `push`; `extra` is added to `[origin]`.
pub fn config_pushing(
    scratch: &Scratch,
    name: &str,
    url: &str,
    push: &str,
    extra: &str,
) -> PathBuf {
    let upload = format!(
        "[upload]\nenabled = true\nallow = [\"uploads/\"]\nspool = \"{}\"\n\n",
        scratch.path("spool").display()
    );
    let extra = format!("push-uploads = \"{push}\"\n{extra}");
    write_config(scratch, name, "", &upload, url, &extra)
}

fn write_config(
    scratch: &Scratch,
    name: &str,
    top: &str,
    tables: &str,
    url: &str,
    extra: &str,
) -> PathBuf {
    let cache = scratch.path("cache");
    scratch.write(
        name,
        format!(
            "timeout = 1\n{top}\n[[preseed]]\npath = \"{cache}/current\"\noptional = true\n\n\
             {tables}[origin]\nurl = \"{url}\"\ncache = \"{cache}\"\ntimeout = \"5s\"\n{extra}",
            cache = cache.display(),
        )
        .as_bytes(),
    )
}

/// What the daemon serves as `name` over TFTP (octet mode), if it does.
pub fn served(daemon: &Daemon, name: &str) -> Option<Vec<u8>> {
    fetch(
        daemon.address,
        name,
        Mode::Octet,
        TransferOptions::default(),
    )
    .data
}
