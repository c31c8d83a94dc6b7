//! `tftpd ctl` run against a daemon's control socket, waiting for what it reports, and
//! its metrics checked by Prometheus's own checker (`promtool check metrics`, Debian's
//! prometheus package).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::TFTPD;
use super::tools::required;

/// Runs `tftpd ctl --socket SOCKET ARGS...`; returns its exit code, stdout and stderr.
pub fn ctl_raw(socket: &Path, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let output = Command::new(TFTPD)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `ctl` that must succeed; its stdout.
pub fn ctl(socket: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = ctl_raw(socket, args);
    assert_eq!(code, Some(0), "tftpd ctl {args:?}: {stderr}");
    String::from_utf8(stdout).unwrap()
}

/// `ctl ... --json`, parsed: version 1, ok; returns the result.
pub fn ctl_json(socket: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = ctl(socket, &args);
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["version"], 1, "{text}");
    assert_eq!(value["ok"], true, "{text}");
    assert!(text.starts_with("{\"version\":1,"), "version first: {text}");
    value["result"].clone()
}

/// Waits (at most 30 s) until `f` holds (typically a state `ctl` reports).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `promtool check metrics` passes `text`, without a word (when promtool is installed;
/// under CI it must be).
pub fn promtool_passes(text: &str) {
    if !required("promtool") {
        return;
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
