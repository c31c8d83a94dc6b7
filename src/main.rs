//! `tftpd`: the memtftpd daemon. Arguments -> configuration -> run -> exit status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use memtftpd::config::DEFAULT_PATH;
use memtftpd::daemon::{self, Options};

/// An in-memory TFTP server for systemd.
///
/// Serves the files named by `[[preseed]]` in the configuration from memory, and accepts
/// uploads into memory where `[upload]` allows. Under systemd it uses the sockets of
/// tftpd.socket; run by hand it binds the configuration's `listen` addresses.
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
    command: Option<Command>,
}

/// Commands other than running the daemon.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write DIR as a content set (OUT/manifest.json, OUT/objects/) for an HTTP origin.
    Publish(memtftpd::origin::cli::PublishArgs),
    /// Pull the content set of the configuration's [origin] into its cache.
    Sync(memtftpd::origin::cli::SyncArgs),
}

/// How long `--reload` waits for the daemon (systemd's default reload timeout).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(90);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        let result = match command {
            Command::Publish(args) => memtftpd::origin::cli::publish(args),
            Command::Sync(args) => memtftpd::origin::cli::sync(&cli.config, args),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tftpd: {error}");
                ExitCode::from(error.exit_code())
            }
        };
    }
    let result = if let Some(pid) = cli.reload {
        daemon::reload_and_wait(&cli.config, pid, RELOAD_TIMEOUT)
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
