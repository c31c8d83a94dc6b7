//! Running the `tftpd` binary as systemd would: a socket placed at fd 3 with
//! `LISTEN_FDS=1`, and a notify socket the test reads.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The binary under test.
pub const TFTPD: &str = env!("CARGO_BIN_EXE_tftpd");

/// A scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("memtftpd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How [`Daemon::launch`] runs the shell that starts tftpd, and tftpd.
#[derive(Debug, Default)]
pub struct Launch<'a> {
    /// Runs the shell: a command that runs its arguments in the same process (`unshare -m`).
    pub outer: &'a [&'a str],
    /// Shell commands the shell runs first.
    pub prelude: &'a str,
    /// Runs tftpd: a command that execs its arguments (`setpriv --reuid=...`); the notify
    /// socket is open to every user then.
    pub wrapper: &'a [&'a str],
}

/// A running `tftpd` with a socket-activated listener.
pub struct Daemon {
    pub child: Child,
    pub notify: UnixDatagram,
    pub address: SocketAddr,
    pub messages: Vec<String>,
    /// Where the daemon's stderr goes (a file: a pipe nobody reads could fill up).
    pub stderr: PathBuf,
}

impl Daemon {
    /// Starts tftpd with `listener` as fd 3 (LISTEN_FDS=1) and a notify socket.
    pub fn start(scratch: &Scratch, config: &Path, listener: RawFd, address: SocketAddr) -> Daemon {
        Daemon::start_with(scratch, config, listener, address, &[])
    }

    /// As [`start`](Self::start), with extra environment variables.
    pub fn start_with(
        scratch: &Scratch,
        config: &Path,
        listener: RawFd,
        address: SocketAddr,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_wrapped(scratch, config, listener, address, env, &[])
    }

    /// As [`start_with`](Self::start_with), with tftpd run through `wrapper` (a command
    /// that execs its arguments in the same process, such as `setpriv --reuid=...`); the
    /// notify socket is open to every user then.
    pub fn start_wrapped(
        scratch: &Scratch,
        config: &Path,
        listener: RawFd,
        address: SocketAddr,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        let how = Launch {
            wrapper,
            ..Launch::default()
        };
        Daemon::launch(scratch, config, listener, address, env, &how)
    }

    /// As [`start_with`](Self::start_with), the shell that starts tftpd run by `outer`
    /// (a command that ends by running its arguments in the same process, such as
    /// `unshare -m`) and running `prelude` (shell commands) first.
    pub fn start_in(
        scratch: &Scratch,
        config: &Path,
        listener: RawFd,
        address: SocketAddr,
        env: &[(&str, &str)],
        outer: &[&str],
        prelude: &str,
    ) -> Daemon {
        let how = Launch {
            outer,
            prelude,
            ..Launch::default()
        };
        Daemon::launch(scratch, config, listener, address, env, &how)
    }

    /// Starts tftpd as `how` says.
    pub fn launch(
        scratch: &Scratch,
        config: &Path,
        listener: RawFd,
        address: SocketAddr,
        env: &[(&str, &str)],
        how: &Launch<'_>,
    ) -> Daemon {
        let wrapper = how.wrapper;
        let notify_path = scratch.path("notify");
        let stderr = scratch.path("stderr.log");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        if !wrapper.is_empty() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        notify
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut command = match how.outer.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg("/bin/sh");
                command
            }
            None => Command::new("/bin/sh"),
        };
        command.arg("-c").arg(format!(
            r#"{}LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#,
            how.prelude
        ));
        match wrapper.split_first() {
            Some((program, args)) => command.arg(program).args(args).arg(TFTPD),
            None => command.arg(TFTPD),
        };
        command
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUNTIME_DIRECTORY", scratch.path(""))
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        place_at_fd_3(&mut command, listener);
        let child = command.spawn().unwrap();
        Daemon {
            child,
            notify,
            address,
            messages: Vec::new(),
            stderr,
        }
    }

    /// Waits (at most 20 s) for a notification for which `f` holds; returns it.
    pub fn wait_notify(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            if let Some(found) = self.messages.iter().find(|m| f(m)) {
                let found = found.clone();
                self.messages.retain(|m| *m != found);
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; got {:?}",
                self.messages
            );
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                panic!("tftpd exited ({status}) before {what}: {stderr}");
            }
            if let Ok(len) = self.notify.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                self.messages.push(text);
            }
        }
    }

    /// Runs `tftpd --reload PID` as `ExecReload=` would; returns its exit code and stderr.
    pub fn reload_command(&self, scratch: &Scratch, config: &Path) -> (Option<i32>, String) {
        let output = Command::new(TFTPD)
            .arg("--config")
            .arg(config)
            .arg("--reload")
            .arg(self.child.id().to_string())
            .env("RUNTIME_DIRECTORY", scratch.path(""))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Waits for a `READY=1` (the first, or the next after a reload).
    pub fn wait_ready(&mut self, what: &str) {
        self.wait_notify(what, |m| m.lines().any(|l| l == "READY=1"));
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (at most 30 s) for the daemon to exit; returns its code and stderr.
    pub fn wait_exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                return (status.code(), stderr);
            }
            assert!(Instant::now() < deadline, "tftpd did not exit");
            // Nothing to wait on but the child itself: poll its status at a modest rate.
            let _ = self.notify.recv(&mut [0u8; 4096]);
        }
    }
}

/// Starts tftpd on a fresh port-0 socket on 127.0.0.1 and waits for its `READY=1`.
pub fn start_daemon(scratch: &Scratch, config: &Path) -> Daemon {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut daemon = Daemon::start(scratch, config, listener.as_raw_fd(), address);
    drop(listener);
    daemon.wait_ready("READY=1");
    daemon
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `fd` the child's fd 3 (without close-on-exec).
#[allow(unsafe_code)]
pub fn place_at_fd_3(command: &mut Command, fd: RawFd) {
    // SAFETY: dup2 and fcntl are async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(move || {
            use nix::libc;
            // dup2 onto itself would keep close-on-exec: clear the flag instead.
            let result = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if result < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
