//! `tftpd`: the memtftpd daemon, and `tftpd ctl`, its control client. Arguments ->
//! configuration -> run -> exit status.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use memtftpd::config::DEFAULT_PATH;
use memtftpd::control::Command;
use memtftpd::ctl::{self, CtlError};
use memtftpd::daemon::{self, Options};

/// An in-memory TFTP server for systemd.
///
/// Serves the files named by `[[preseed]]` in the configuration from memory, and accepts
/// uploads into memory where `[upload]` allows. Under systemd it uses the sockets of
/// tftpd.socket; run by hand it binds the configuration's `listen` addresses. Without a
/// subcommand it runs the daemon.
#[derive(Debug, Parser)]
#[command(name = "tftpd", version, about, long_about = None)]
struct Cli {
    /// The configuration file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH)]
    config: PathBuf,

    /// Validate the configuration (and that preseed paths exist), then exit: 0 when
    /// valid, 78 with FILE:LINE:COLUMN, the key and the reason when not.
    #[arg(long)]
    check_config: bool,

    /// Print the effective configuration, every default filled in, as TOML that
    /// --check-config accepts; exit 78 when it is not valid.
    #[arg(long, conflicts_with_all = ["check_config", "listen", "reload"])]
    print_config: bool,

    /// Listen on ADDR instead of the configuration's `listen` (repeatable; ignored when
    /// systemd passes sockets).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// Log at debug level.
    #[arg(long, short)]
    verbose: bool,

    /// Ask the tftpd with this PID to reload and wait for the outcome (for ExecReload=):
    /// exits 0 once the new configuration is in effect, 78 with the reason when it is
    /// refused (the running configuration stays).
    #[arg(long, value_name = "PID", conflicts_with_all = ["check_config", "listen"])]
    reload: Option<i32>,

    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Ask the running daemon, through its control socket (root only).
    Ctl(CtlArgs),
    /// Write DIR as a content set (OUT/manifest.json, OUT/objects/) for an HTTP origin.
    Publish(memtftpd::origin::cli::PublishArgs),
    /// Pull the content set of the configuration's `[origin]` into its cache.
    Sync(memtftpd::origin::cli::SyncArgs),
}

#[derive(Debug, Args)]
struct CtlArgs {
    /// The control socket (default: the configuration's `control-socket`).
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    socket: Option<PathBuf>,

    /// The configuration whose `control-socket` to use (default: tftpd's --config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the daemon's answer as JSON (schema version 1, see tftpd(8)).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Version, uptime, store, transfers, counters and the last reload.
    Status,
    /// Every transfer in flight: peer, direction, file, options, bytes, rate, age.
    Transfers,
    /// The stored files (whose names start with PREFIX): size, source, loaded, reads.
    Files {
        /// A name prefix, e.g. pxelinux.cfg/.
        prefix: Option<String>,
    },
    /// The uploaded files.
    Uploads,
    /// Fetch or drop an upload.
    Upload {
        #[command(subcommand)]
        action: UploadAction,
    },
    /// Set the most verbose level logged, at once (until the next reload or restart).
    LogLevel {
        /// error, warn, info, debug, trace or off.
        level: String,
    },
    /// Reload as systemctl reload does and wait for the outcome: exits 78 with the
    /// reason when it is refused.
    Reload,
    /// Print the metrics in the Prometheus text format.
    Metrics {
        /// Answer one HTTP request on stdin/stdout (tftpd-metrics@.service).
        #[arg(long)]
        http: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UploadAction {
    /// Write an upload's bytes to FILE (or stdout).
    Get {
        /// The upload's name.
        name: String,
        /// Where to write it.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Remove an upload from memory.
    Drop {
        /// The upload's name.
        name: String,
    },
}

/// How long `--reload` waits for the daemon (systemd's default reload timeout).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(90);

fn run_ctl(args: CtlArgs, default_config: PathBuf) -> Result<(), CtlError> {
    let config = args.config.unwrap_or(default_config);
    let socket = ctl::socket_path(args.socket, &config);
    if let CtlCommand::Metrics { http: true } = args.command {
        // An answer even when the configuration is unreadable: 503 with the reason.
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        return ctl::serve_metrics_http(socket, &mut stdin.lock(), &mut stdout.lock())
            .map_err(CtlError::Io);
    }
    let socket = socket?;
    let mut output = None;
    let command = match args.command {
        CtlCommand::Status => Command::Status,
        CtlCommand::Transfers => Command::Transfers,
        CtlCommand::Files { prefix } => Command::Files { prefix },
        CtlCommand::Uploads => Command::Uploads,
        CtlCommand::Upload {
            action: UploadAction::Get { name, output: o },
        } => {
            output = o;
            Command::UploadGet { name }
        }
        CtlCommand::Upload {
            action: UploadAction::Drop { name },
        } => Command::UploadDrop { name },
        CtlCommand::LogLevel { level } => Command::LogLevel { level },
        CtlCommand::Reload => Command::Reload,
        CtlCommand::Metrics { .. } => Command::Metrics,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    ctl::run(&socket, command, args.json, output.as_deref(), &mut out)?;
    out.flush().map_err(CtlError::Io)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Sub::Publish(args)) => return origin_exit(memtftpd::origin::cli::publish(args)),
        Some(Sub::Sync(args)) if args.check => {
            return match memtftpd::origin::cli::check(&cli.config) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(memtftpd::exit::EX_NO_ORIGIN),
                Err(error) => origin_exit(Err(error)),
            };
        }
        Some(Sub::Sync(args)) => {
            return origin_exit(memtftpd::origin::cli::sync(&cli.config, args));
        }
        _ => {}
    }
    if let Some(Sub::Ctl(args)) = cli.command {
        return match run_ctl(args, cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tftpd ctl: {error}");
                ExitCode::from(error.exit_code())
            }
        };
    }
    let result = if let Some(pid) = cli.reload {
        daemon::reload_and_wait(&cli.config, pid, RELOAD_TIMEOUT)
    } else if cli.print_config {
        daemon::check_config(&cli.config).map(|config| print!("{}", config.to_toml()))
    } else if cli.check_config {
        daemon::check_config(&cli.config)
            .map(|_| println!("{}: configuration is valid", cli.config.display()))
    } else {
        let options = Options {
            config: cli.config,
            listen: cli.listen,
            verbose: cli.verbose,
        };
        daemon::run(&options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // stderr reaches the journal too when systemd runs us.
            eprintln!("tftpd: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The exit status of `tftpd publish` or `tftpd sync`, with the reason on stderr.
fn origin_exit(result: Result<(), memtftpd::origin::error::OriginError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tftpd: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
