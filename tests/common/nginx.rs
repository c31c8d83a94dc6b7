//! Debian's nginx on loopback for the origin tests: started unprivileged-style (no
//! master, one worker, every path in the test's scratch directory) on a port-0 port, with
//! the `server` block's extra directives the test gives; its access log, one line per
//! request as `METHOD URI STATUS IF-NONE-MATCH`, read to see what was asked.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::Scratch;

const NGINX: &str = "/usr/sbin/nginx";

/// A running (or stopped) nginx serving `www` on 127.0.0.1.
pub struct Nginx {
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    /// Writes the configuration and starts nginx serving `www`, `server` added to its
    /// `server` block.
    pub fn start(scratch: &Scratch, www: &Path, server: &str) -> Nginx {
        let mut nginx = Nginx::configure(scratch, www, server);
        nginx.resume();
        nginx
    }

    /// Writes the configuration on a free port without starting nginx: an origin that
    /// is down until [`resume`](Self::resume).
    pub fn configure(scratch: &Scratch, www: &Path, server: &str) -> Nginx {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = scratch.path("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n\
             log_format t '$request_method $uri $status \"$http_if_none_match\"';\n\
             access_log {d}/access.log t;\n\
             client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
             fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{\n listen 127.0.0.1:{port};\n root {};\n{server}\n }}\n}}\n",
            www.display()
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        Nginx {
            child: None,
            dir,
            port,
        }
    }

    /// Starts (again) on the same port, waiting until it accepts connections.
    pub fn resume(&mut self) {
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (tests/run-all installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Every request logged so far, as `METHOD URI STATUS "IF-NONE-MATCH"`.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The requests logged after the first `mark`.
    pub fn since(&self, mark: usize) -> Vec<String> {
        self.log().split_off(mark)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
