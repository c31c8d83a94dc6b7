//! `tftpd`: the memtftpd daemon. Arguments -> configuration -> run -> exit status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.check_config {
        return match daemon::check_config(&cli.config) {
            Ok(_) => {
                println!("{}: configuration is valid", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("tftpd: {error}");
                ExitCode::from(error.exit_code())
            }
        };
    }
    let options = Options {
        config: cli.config,
        listen: cli.listen,
        verbose: cli.verbose,
    };
    match daemon::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // stderr reaches the journal too when systemd runs us.
            eprintln!("tftpd: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
