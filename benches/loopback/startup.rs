//! Start-up with a large preseed: the time from starting `tftpd` to its `READY=1` with
//! 1 GiB of files in its preseed directory, and its resident memory at that moment.
//!
//! The files are written (and synced) just before, so the page cache is warm, as issue 5
//! asks; the daemon reports `READY=1` on a `NOTIFY_SOCKET` owned by this process once every file
//! is in its store and its socket is bound.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What one start measured.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    /// From spawning the process to `READY=1`.
    pub ready: Duration,
    /// VmRSS at `READY=1`, bytes.
    pub rss: u64,
}

/// Writes `files` files of `size` bytes into `dir` (made afresh) and waits until they
/// are on disk, so that no writeback competes with the starts; returns the bytes.
pub fn write_preseed(dir: &Path, files: usize, size: usize) -> io::Result<u64> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    // Distinct contents per file, so that nothing could share pages between them.
    let mut chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for n in 0..files {
        chunk[0] = n as u8;
        let mut file = fs::File::create(dir.join(format!("image-{n:02}.bin")))?;
        for _ in 0..size / chunk.len() {
            file.write_all(&chunk)?;
        }
        file.write_all(&chunk[..size % chunk.len()])?;
        file.sync_all()?;
    }
    Ok((files * size) as u64)
}

/// Starts `tftpd` with `dir` as its preseed, waits (at most 60 s) for `READY=1`, reads
/// its memory, and stops it. Not pinned: the store loads files on every core, as it
/// does for an operator.
pub fn measure(tftpd: &Path, scratch: &Path, dir: &Path) -> io::Result<Startup> {
    let config = scratch.join("startup.toml");
    fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:6903\"]\nlog-level = \"warn\"\n\n[[preseed]]\npath = \"{}\"\n",
            dir.display()
        ),
    )?;
    let notify_path = scratch.join("startup-notify.sock");
    let _ = fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path)?;
    notify.set_read_timeout(Some(Duration::from_millis(100)))?;
    let log = fs::File::create(scratch.join("startup.log"))?;
    let started = Instant::now();
    let mut child = Command::new(tftpd)
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let result = wait_ready(&notify, &mut child, started).map(|ready| Startup {
        ready,
        rss: crate::servers::status_kib(child.id(), "VmRSS:") * 1024,
    });
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let _ = child.wait();
    let _ = fs::remove_file(&notify_path);
    result
}

fn wait_ready(
    notify: &UnixDatagram,
    child: &mut std::process::Child,
    started: Instant,
) -> io::Result<Duration> {
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(len) = notify.recv(&mut buf) {
            let at = started.elapsed();
            if String::from_utf8_lossy(&buf[..len])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok(at);
            }
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "tftpd exited ({status}) before READY=1"
            )));
        }
    }
    Err(io::Error::other("no READY=1 within 60 s"))
}
