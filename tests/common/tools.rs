//! The external tools some binary tests run (clients, checkers, `setpriv`): whether one is
//! installed, which under `CI=true` it must be.

use std::process::{Command, Stdio};

/// True if `tool` is on the PATH; under `CI=true` its absence fails the test, elsewhere
/// the test says it skipped what needs it.
pub fn required(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI (tests/run-all installs it)"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}
