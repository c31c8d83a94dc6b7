//! `tftpd ctl`: the client of the control socket. Finds the socket (`--socket`, or the
//! configuration's `control-socket`), sends one request of the control protocol
//! ([`crate::control`]), and prints the answer as a table, or with `--json` as the JSON
//! line it came as. Also the metrics exporter's one HTTP exchange (`ctl metrics --http`,
//! what `tftpd-metrics@.service` runs for each connection to `tftpd-metrics.socket`).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::config::{Config, ConfigError};
use crate::control::report::{Dropped, LogLevel, Metrics, TransfersReport};
use crate::control::{
    Command, FilesReport, ReloadReport, Request, StatusReport, UploadHeader, VERSION, table,
};
use crate::exit::{EX_CONFIG, EX_IOERR, EX_NOPERM, EX_PROTOCOL, EX_UNAVAILABLE};

/// How long `ctl` waits for an answer; a reload gets systemd's default reload timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const RELOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// Why `tftpd ctl` failed.
#[derive(Debug)]
pub enum CtlError {
    /// The configuration named by `--config` cannot be read.
    Config(ConfigError),
    /// The configuration turns the control socket off.
    Disabled(PathBuf),
    /// The socket cannot be reached.
    Connect(PathBuf, io::Error),
    /// Talking to the daemon failed.
    Io(io::Error),
    /// The daemon's answer cannot be read.
    Protocol(String),
    /// The daemon turned the caller away.
    Denied(String),
    /// The daemon refused a reload; the running configuration stays.
    ReloadRefused(String),
    /// The daemon answered with an error.
    Daemon(String),
    /// The output file cannot be written.
    Output(PathBuf, io::Error),
}

impl CtlError {
    /// The exit status: 78 for a refused reload or a bad configuration, 77 when denied,
    /// 69 when no daemon answers, 76 for an unreadable answer, 74 for I/O, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Config(_) | CtlError::Disabled(_) | CtlError::ReloadRefused(_) => EX_CONFIG,
            CtlError::Denied(_) => EX_NOPERM,
            CtlError::Connect(..) => EX_UNAVAILABLE,
            CtlError::Protocol(_) => EX_PROTOCOL,
            CtlError::Io(_) | CtlError::Output(..) => EX_IOERR,
            CtlError::Daemon(_) => 1,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Config(e) => e.fmt(f),
            CtlError::Disabled(config) => write!(
                f,
                "{}: control-socket is \"\", so the daemon has no control socket",
                config.display()
            ),
            CtlError::Connect(path, e) => write!(
                f,
                "cannot reach the daemon at {}: {e} (is tftpd running? --socket names another)",
                path.display()
            ),
            CtlError::Io(e) => write!(f, "control socket: {e}"),
            CtlError::Protocol(reason) => write!(f, "unreadable answer from the daemon: {reason}"),
            CtlError::Denied(reason) | CtlError::Daemon(reason) => f.write_str(reason),
            CtlError::ReloadRefused(reason) => {
                write!(
                    f,
                    "reload refused, the running configuration stays: {reason}"
                )
            }
            CtlError::Output(path, e) => write!(f, "cannot write {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for CtlError {}

/// The socket to talk to: `socket` if given, else the `control-socket` of `config`.
pub fn socket_path(socket: Option<PathBuf>, config: &Path) -> Result<PathBuf, CtlError> {
    if let Some(socket) = socket {
        return Ok(socket);
    }
    let loaded = Config::load(config).map_err(CtlError::Config)?;
    loaded
        .control_socket
        .ok_or_else(|| CtlError::Disabled(config.to_path_buf()))
}

/// An answer: the JSON line as it came, parsed, and the bytes after it (`upload-get`).
#[derive(Debug)]
pub struct Reply {
    /// The line, without its newline.
    pub line: String,
    /// The line, parsed.
    pub value: serde_json::Value,
    /// The file of an `upload-get`.
    pub body: Option<Vec<u8>>,
}

impl Reply {
    /// The `result`, as `T`.
    pub fn result<T: DeserializeOwned>(&self) -> Result<T, CtlError> {
        serde_json::from_value(self.value["result"].clone())
            .map_err(|e| CtlError::Protocol(format!("{e} in {}", self.line)))
    }
}

/// Sends `command` to the daemon at `socket` and reads its answer; an error answer is
/// an `Err`.
pub fn request(socket: &Path, command: Command) -> Result<Reply, CtlError> {
    let timeout = match command {
        Command::Reload => RELOAD_TIMEOUT,
        _ => ANSWER_TIMEOUT,
    };
    let is_reload = command == Command::Reload;
    let is_upload = matches!(command, Command::UploadGet { .. });
    let mut stream =
        UnixStream::connect(socket).map_err(|e| CtlError::Connect(socket.to_path_buf(), e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(CtlError::Io)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(CtlError::Io)?;
    // The daemon may turn us away before reading: its answer says why.
    let sent = stream.write_all(&Request::new(command).to_line());
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    if line.is_empty() {
        return Err(match (sent, read) {
            (Err(e), _) | (_, Err(e)) => CtlError::Io(e),
            _ => CtlError::Protocol("the daemon closed the connection".to_owned()),
        });
    }
    let line = line.trim_end_matches('\n').to_owned();
    let value: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| CtlError::Protocol(format!("{e} in {line}")))?;
    if value["version"] != VERSION {
        return Err(CtlError::Protocol(format!("not version {VERSION}: {line}")));
    }
    if value["ok"] != true {
        let reason = value["error"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        return Err(if value["refused"] == true && is_reload {
            CtlError::ReloadRefused(reason)
        } else if reason.starts_with("permission denied") {
            CtlError::Denied(reason)
        } else {
            CtlError::Daemon(reason)
        });
    }
    let mut reply = Reply {
        line,
        value,
        body: None,
    };
    if is_upload {
        let header: UploadHeader = reply.result()?;
        let mut body = Vec::new();
        let got = (&mut reader)
            .take(header.size)
            .read_to_end(&mut body)
            .map_err(CtlError::Io)?;
        if got as u64 != header.size {
            return Err(CtlError::Protocol(format!(
                "{} of {} bytes of {} arrived",
                got, header.size, header.name
            )));
        }
        reply.body = Some(body);
    }
    Ok(reply)
}

/// Runs `command` and prints its answer to `out`: a table, or the JSON line with `json`.
/// `output` is where `upload-get` writes the file (else to `out`, unless `json`).
pub fn run(
    socket: &Path,
    command: Command,
    json: bool,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let reply = request(socket, command.clone())?;
    if let Some(body) = &reply.body {
        match output {
            Some(path) => {
                std::fs::write(path, body).map_err(|e| CtlError::Output(path.to_path_buf(), e))?
            }
            None if !json => return out.write_all(body).map_err(CtlError::Io),
            None => {}
        }
    }
    let text = if json {
        format!("{}\n", reply.line)
    } else {
        match command {
            Command::Status => table::status(&reply.result::<StatusReport>()?),
            Command::Transfers => table::transfers(&reply.result::<TransfersReport>()?),
            Command::Files { .. } | Command::Uploads => {
                table::files(&reply.result::<FilesReport>()?)
            }
            Command::UploadGet { .. } => {
                let header: UploadHeader = reply.result()?;
                format!(
                    "{}: {} bytes written to {}\n",
                    header.name,
                    header.size,
                    output.map_or("stdout".into(), |p| p.display().to_string())
                )
            }
            Command::UploadDrop { .. } => {
                format!("dropped {}\n", reply.result::<Dropped>()?.dropped)
            }
            Command::LogLevel { .. } => table::log_level(&reply.result::<LogLevel>()?),
            Command::Reload => table::reload(&reply.result::<ReloadReport>()?),
            Command::Metrics => reply.result::<Metrics>()?.metrics,
        }
    };
    out.write_all(text.as_bytes()).map_err(CtlError::Io)
}

/// The most bytes of an HTTP request the exporter reads.
const MAX_HTTP_REQUEST: usize = 8192;

/// One HTTP/1.0 exchange for the metrics exporter: reads a request from `input` (the
/// connection systemd accepted), answers `GET /metrics` with the daemon's metrics, 404
/// for another path, 405 for another method, 503 when the daemon cannot be asked.
pub fn serve_metrics_http(
    socket: Result<PathBuf, CtlError>,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > MAX_HTTP_REQUEST {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            match socket
                .and_then(|socket| request(&socket, Command::Metrics))
                .and_then(|reply| reply.result::<Metrics>())
            {
                Ok(metrics) => ("200 OK", metrics.metrics),
                Err(e) => ("503 Service Unavailable", format!("{e}\n")),
            }
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "metrics are at /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    write!(
        out,
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}
