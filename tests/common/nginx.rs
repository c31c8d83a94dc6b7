//! Debian's nginx on loopback for the origin tests: started unprivileged-style (no
//! master, one worker, every path in the test's scratch directory) on a port-0 port,
//! over TLS when the test gives a certificate, with the `server` block's extra directives
//! the test gives; its access log, one line per request as `METHOD URI STATUS` (and the
//! `If-None-Match` header when asked for), read to see what was asked.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::Scratch;
use super::origin::free_port;

const NGINX: &str = "/usr/sbin/nginx";

/// How many ports [`Nginx::start`] tries before it gives up.
const START_ATTEMPTS: usize = 5;

/// What the test wants of the site besides serving `www`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Site<'a> {
    /// Listen over TLS with this certificate and key.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// Directives added to the `server` block.
    pub server: &'a str,
    /// Each access-log line ends with the request's `If-None-Match` header, quoted
    /// (`"-"` when it had none).
    pub log_if_none_match: bool,
}

/// A running (or stopped) nginx serving `www` on 127.0.0.1.
pub struct Nginx {
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    /// The URL of `manifest.json` at the root of the site, over plain HTTP.
    pub fn manifest_url(&self) -> String {
        format!("http://127.0.0.1:{}/manifest.json", self.port)
    }

    /// Starts on a free port. The port is found by binding port 0 and released for nginx
    /// to bind, so another test may take it in between: then nginx fails to bind, and it
    /// is started again on another port.
    pub fn start(scratch: &Scratch, www: &Path, site: Site<'_>) -> Nginx {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut nginx = Nginx::configure(scratch, www, site);
            match nginx.try_resume() {
                Ok(()) => return nginx,
                Err(error) => failures.push(error),
            }
        }
        panic!("nginx did not start on any of {START_ATTEMPTS} ports: {failures:?}");
    }

    /// Writes the configuration on a free port without starting nginx: an origin that
    /// is down until [`resume`](Self::resume) (which cannot move to another port, since
    /// the test has handed this one out meanwhile).
    pub fn configure(scratch: &Scratch, www: &Path, site: Site<'_>) -> Nginx {
        let port = free_port();
        let dir = scratch.path("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let d = dir.display();
        let listen = match site.tls {
            None => format!("listen 127.0.0.1:{port};"),
            Some((cert, key)) => format!(
                "listen 127.0.0.1:{port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
        };
        let if_none_match = if site.log_if_none_match {
            " \"$http_if_none_match\""
        } else {
            ""
        };
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n\
             log_format t '$request_method $uri $status{if_none_match}';\n\
             access_log {d}/access.log t;\n\
             client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
             fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{\n {listen}\n root {};\n{}\n }}\n}}\n",
            www.display(),
            site.server
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        Nginx {
            child: None,
            dir,
            port,
        }
    }

    /// Starts (again) on the same port, waiting until it has bound it and accepts
    /// connections. Readiness is nginx's pid file naming this child (nginx writes it only
    /// once its listening sockets are open), so that another test's nginx, should it hold
    /// the port meanwhile, is never mistaken for this one.
    pub fn resume(&mut self) {
        if let Err(error) = self.try_resume() {
            panic!("{error}");
        }
    }

    fn try_resume(&mut self) -> Result<(), String> {
        let pid_file = self.dir.join("nginx.pid");
        let _ = std::fs::remove_file(&pid_file);
        let mut child = Command::new(NGINX)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (tests/run-all installs it)");
        let pid = child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nginx exited ({status}): {}", self.errors()));
            }
            let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if written.trim() == pid && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nginx did not start: {}", self.errors()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
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

    /// Every request logged so far, as `METHOD URI STATUS` (then `"IF-NONE-MATCH"` when
    /// the site logs it).
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
