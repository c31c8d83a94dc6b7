//! The commands `tftpd publish DIR OUT` and `tftpd sync [--once | --watch [INTERVAL] |
//! --check]`: their arguments, what they print and log, the `--watch` loop with its
//! back-off, the credential read at each round, the round's record in
//! `<cache>/status.json`, the reload of a running daemon after a switch, and the check
//! `tftpd-sync.service` runs first (is there an `[origin]`?).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cache::{CURRENT_LINK, Cache, generation_at};
use super::error::{OriginError, io_error};
use super::http::{Authorization, HttpClient, HttpOrigin, HttpPush, RequestAuth};
use super::publish::publish as publish_dir;
use super::round::{RoundOutcome, run_round};
use super::settings::{AuthScheme, CredentialSource, OriginAuth, OriginSettings};
use super::sigv4::AccessKey;
use super::status::SyncStatus;
use crate::config::{Config, parse_duration};

/// `tftpd publish DIR OUT`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The directory to publish, read as a `[[preseed]]` directory is.
    pub dir: PathBuf,
    /// Where to write `manifest.json` and `objects/` (created if missing).
    pub out: PathBuf,
}

/// `tftpd sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Run one round and exit: 0 when the served tree is the origin's, non-zero with the
    /// reason otherwise (the default).
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,
    /// Run a round every INTERVAL (default: the configuration's `origin.interval`), with
    /// back-off after failures, until stopped.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "")]
    pub watch: Option<String>,
    /// After a switch, ask the tftpd with this PID to reload and wait for it (as
    /// `tftpd --reload PID` does). Without it, the daemon on the configuration's
    /// `control-socket` is asked (as `tftpd ctl reload` does), else `systemctl reload
    /// tftpd.service` is run when that service is active.
    #[arg(long, value_name = "PID")]
    pub reload_pid: Option<i32>,
    /// Only check the configuration and exit: 0 when it has an `[origin]` table, 1 when
    /// it has none (nothing to sync: tftpd-sync.service's ExecCondition= then skips the
    /// run), 78 with the file, line and key when it is not valid. Nothing is fetched and
    /// the cache is not touched.
    #[arg(long, conflicts_with_all = ["once", "watch", "reload_pid"])]
    pub check: bool,
}

/// Runs `tftpd publish`.
///
/// # Errors
///
/// As [`publish`](super::publish::publish).
pub fn publish(args: &PublishArgs) -> Result<(), OriginError> {
    let published = publish_dir(&args.dir, &args.out)?;
    for skipped in &published.skipped {
        eprintln!("tftpd publish: {skipped}");
    }
    println!(
        "{}: generation {}, {} files, {} objects written ({} bytes), manifest {}",
        args.out.display(),
        published.manifest.generation(),
        published.manifest.files().len(),
        published.objects_written,
        published.bytes_written,
        if published.manifest_written {
            "written"
        } else {
            "unchanged"
        }
    );
    Ok(())
}

/// Runs `tftpd sync --check`: loads `config` (as `sync` does, without looking at the
/// preseed paths) and prints what it found. `Ok(true)` when it has an `[origin]` table,
/// `Ok(false)` when it has none ([`EX_NO_ORIGIN`](crate::exit::EX_NO_ORIGIN)).
///
/// # Errors
///
/// [`OriginError::Config`] when the configuration cannot be read or is not valid.
pub fn check(config: &Path) -> Result<bool, OriginError> {
    let loaded = Config::load(config).map_err(|e| OriginError::Config(e.to_string()))?;
    match loaded.origin {
        Some(settings) => {
            println!(
                "{}: [origin] url = {}, cache = {}",
                config.display(),
                settings.url,
                settings.cache.display()
            );
            Ok(true)
        }
        None => {
            println!("{}: no [origin] table: nothing to sync", config.display());
            Ok(false)
        }
    }
}

/// Runs `tftpd sync` with the `[origin]` of the configuration file `config`.
///
/// # Errors
///
/// The round's [`OriginError`] (`--once`), or a configuration that cannot be used.
pub fn sync(config: &Path, args: &SyncArgs) -> Result<(), OriginError> {
    let loaded = Config::load(config).map_err(|e| OriginError::Config(e.to_string()))?;
    crate::logs::init(loaded.log_format, loaded.log_level);
    let control_socket = loaded.control_socket.clone();
    let spool = loaded.upload_spool.clone();
    let settings = loaded.origin.ok_or_else(|| {
        OriginError::Config(format!(
            "{}: no [origin] table: nothing to sync from",
            config.display()
        ))
    })?;
    let Some(watch) = &args.watch else {
        return sync_once(
            config,
            control_socket.as_deref(),
            spool.as_deref(),
            &settings,
            args,
        );
    };
    let interval = if watch.is_empty() {
        settings.interval
    } else {
        parse_duration(watch).map_err(|e| OriginError::Config(format!("--watch: {e}")))?
    };
    let mut failures = 0u32;
    loop {
        let delay = match sync_once(
            config,
            control_socket.as_deref(),
            spool.as_deref(),
            &settings,
            args,
        ) {
            Ok(()) => {
                failures = 0;
                with_jitter(interval)
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                with_jitter(back_off(interval, failures))
            }
        };
        std::thread::sleep(delay);
    }
}

/// One round, logged and recorded in `<cache>/status.json` (while the cache is still
/// locked, so rounds record in the order they ran); after a switch, the daemon is asked
/// to reload. A cache that cannot be opened (another sync holds it) records nothing: the
/// round that holds it records its own.
/// Then, with `push-uploads`, the spool's uploads are pushed (whether the pull
/// succeeded or not).
fn sync_once(
    config: &Path,
    control_socket: Option<&Path>,
    spool: Option<&Path>,
    settings: &OriginSettings,
    args: &SyncArgs,
) -> Result<(), OriginError> {
    let result = Cache::open(&settings.cache).and_then(|cache| {
        let outcome = round(settings, &cache);
        record_status(&cache, settings, &outcome);
        outcome
    });
    let result = result.and_then(|outcome| {
        if let RoundOutcome::Switched { .. } = outcome {
            reload_daemon(config, control_socket, args.reload_pid)?;
        }
        Ok(outcome)
    });
    match &result {
        Ok(RoundOutcome::Unchanged { generation }) => log::info!(
            tftp_origin_generation = generation.as_str(),
            tftp_origin_result = "unchanged",
            tftp_origin_objects = 0u64,
            tftp_origin_bytes = 0u64,
            tftp_origin_url = settings.url.as_str();
            "sync: generation {generation} is current"
        ),
        Ok(RoundOutcome::Switched {
            generation,
            previous,
            objects_fetched,
            bytes_fetched,
            objects_pruned,
        }) => log::info!(
            tftp_origin_generation = generation.as_str(),
            tftp_origin_result = "switched",
            tftp_origin_previous = previous.as_deref().unwrap_or(""),
            tftp_origin_objects = *objects_fetched,
            tftp_origin_bytes = *bytes_fetched,
            tftp_origin_pruned = *objects_pruned,
            tftp_origin_url = settings.url.as_str();
            "sync: now serving generation {generation} ({objects_fetched} objects, \
             {bytes_fetched} bytes fetched, {objects_pruned} pruned)"
        ),
        Err(e) => {
            // The generation still served, when the cache says (it is not locked here).
            let served = generation_at(&settings.cache, CURRENT_LINK).unwrap_or_default();
            log::error!(
                tftp_origin_generation = served.as_str(),
                tftp_origin_result = "failed",
                tftp_origin_error = e.kind(),
                tftp_origin_url = settings.url.as_str();
                "sync failed, still serving what was served: {e}"
            );
        }
    }
    let pushed = match (&settings.push_uploads, spool) {
        (Some(url), Some(spool)) => client(settings).and_then(|client| {
            super::push::push_logged(settings, &HttpPush::new(client, url), spool)
        }),
        _ => Ok(()),
    };
    result.and(pushed)
}

/// Records the round's `outcome` in the cache's status file, carrying the figures over
/// from the file before. A status that cannot be written is logged; the round stands.
fn record_status(
    cache: &Cache,
    settings: &OriginSettings,
    outcome: &Result<RoundOutcome, OriginError>,
) {
    let before = SyncStatus::read(cache.root()).unwrap_or_else(|e| {
        log::warn!("sync: {e}; its figures start again");
        None
    });
    let status = SyncStatus::after(
        before.as_ref(),
        &settings.url,
        outcome,
        cache.generation_at(CURRENT_LINK),
        SystemTime::now(),
    );
    if let Err(e) = status.write(cache.root()) {
        log::warn!("sync: the round's status is not recorded: {e}");
    }
}

fn round(settings: &OriginSettings, cache: &Cache) -> Result<RoundOutcome, OriginError> {
    let origin = HttpOrigin::new(client(settings)?, &settings.url);
    run_round(cache, &origin)
}

/// The HTTP client with the configured CA and credential, both read now.
fn client(settings: &OriginSettings) -> Result<HttpClient, OriginError> {
    let ca = settings
        .ca_file
        .as_deref()
        .map(|path| std::fs::read(path).map_err(io_error("read the CA file", path)))
        .transpose()?;
    let auth = settings.auth.as_ref().map(request_auth).transpose()?;
    HttpClient::new(ca.as_deref(), auth, settings.timeout).map_err(OriginError::Config)
}

/// How requests authenticate, from the credential read now (it may have been rotated):
/// a header for bearer and basic, an access key (`KEY_ID:SECRET`) for SigV4.
fn request_auth(auth: &OriginAuth) -> Result<RequestAuth, OriginError> {
    let path = match &auth.credential {
        CredentialSource::File(path) => path.clone(),
        CredentialSource::Systemd(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                OriginError::Config(format!(
                    "origin.credential names the systemd credential {name:?}, but \
                     $CREDENTIALS_DIRECTORY is not set (LoadCredential={name}:... in the unit)"
                ))
            })?;
            PathBuf::from(dir).join(name)
        }
    };
    let secret = std::fs::read_to_string(&path).map_err(|e| {
        OriginError::Config(format!(
            "cannot read the credential {}: {e}",
            path.display()
        ))
    })?;
    let secret = secret.trim_end_matches(['\n', '\r']);
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return Err(OriginError::Config(format!(
            "the credential {} must be one non-empty line",
            path.display()
        )));
    }
    Ok(match &auth.scheme {
        AuthScheme::Bearer => RequestAuth::Header(Authorization(format!("Bearer {secret}"))),
        AuthScheme::Basic => RequestAuth::Header(Authorization(format!(
            "Basic {}",
            base64(secret.as_bytes())
        ))),
        AuthScheme::SigV4 { region, service } => {
            let (id, key) = secret
                .split_once(':')
                .filter(|(id, key)| !id.is_empty() && !key.is_empty())
                .ok_or_else(|| {
                    OriginError::Config(format!(
                        "the credential {} must be ACCESS_KEY_ID:SECRET_ACCESS_KEY for sigv4",
                        path.display()
                    ))
                })?;
            RequestAuth::SigV4(AccessKey {
                id: id.to_owned(),
                secret: key.to_owned(),
                region: region.clone(),
                service: service.clone(),
            })
        }
    })
}

/// Standard base64 with padding (RFC 4648), for Basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Asks a running daemon to reload and waits for it: the one with `pid` when given (as
/// `tftpd --reload` does), else the one answering on the configuration's control socket
/// (as `tftpd ctl reload` does), else `tftpd.service` through `systemctl reload` when
/// systemd runs it. With no daemon running there is nothing to do: it loads the tree when
/// it starts.
fn reload_daemon(
    config: &Path,
    control_socket: Option<&Path>,
    pid: Option<i32>,
) -> Result<(), OriginError> {
    if let Some(pid) = pid {
        return crate::daemon::reload_and_wait(config, pid, RELOAD_TIMEOUT)
            .map_err(|e| OriginError::Reload(e.to_string()));
    }
    if let Some(socket) = control_socket.filter(|s| s.exists()) {
        match crate::ctl::request(socket, crate::control::Command::Reload) {
            Ok(_) => return Ok(()),
            // A socket nobody listens on: a daemon that is gone; try systemd below.
            Err(crate::ctl::CtlError::Connect(..)) => {}
            Err(e) => return Err(OriginError::Reload(e.to_string())),
        }
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Ok(());
    }
    let active = std::process::Command::new("systemctl")
        .args(["is-active", "--quiet", "tftpd.service"])
        .status()
        .is_ok_and(|s| s.success());
    if !active {
        return Ok(());
    }
    let output = std::process::Command::new("systemctl")
        .args(["reload", "tftpd.service"])
        .output()
        .map_err(|e| OriginError::Reload(format!("cannot run systemctl: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(OriginError::Reload(format!(
            "systemctl reload tftpd.service: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// How long a reload may take (systemd's default reload timeout).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// The wait after `failures` failed rounds in a row: the interval doubled for each, up
/// to eight times the interval and never more than an hour (unless the interval is).
pub fn back_off(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(3);
    interval
        .saturating_mul(factor)
        .min(Duration::from_secs(3600).max(interval))
}

/// `delay` plus up to a tenth more, so that a fleet started together spreads its requests.
fn with_jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(nanos) ^ (u64::from(std::process::id()) << 20);
    // A tenth of the delay, scaled by a pseudo-random fraction (splitmix64 of the seed).
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let tenth = delay / 10;
    delay + tenth.mul_f64((z >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn back_off_doubles_up_to_eight_intervals_and_an_hour() {
        let minute = Duration::from_secs(60);
        let waits: Vec<u64> = (1..6).map(|f| back_off(minute, f).as_secs()).collect();
        assert_eq!(waits, [120, 240, 480, 480, 480]);
        assert_eq!(
            back_off(Duration::from_secs(1200), 3),
            Duration::from_secs(3600)
        );
        let jittered = with_jitter(minute);
        assert!(jittered >= minute && jittered <= minute + minute / 10);
    }

    #[test]
    fn a_credential_file_gives_the_header_and_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cred");
        std::fs::write(&path, "user:pass\n").unwrap();
        let basic = OriginAuth {
            scheme: AuthScheme::Basic,
            credential: CredentialSource::File(path.clone()),
        };
        let header = |auth| match request_auth(auth).unwrap() {
            RequestAuth::Header(h) => h.0,
            other => panic!("{other:?}"),
        };
        assert_eq!(header(&basic), "Basic dXNlcjpwYXNz");
        std::fs::write(&path, "a\nb\n").unwrap();
        assert!(request_auth(&basic).is_err());
        std::fs::write(&path, "token").unwrap();
        let bearer = OriginAuth {
            scheme: AuthScheme::Bearer,
            credential: CredentialSource::File(path.clone()),
        };
        assert_eq!(header(&bearer), "Bearer token");
        let sigv4 = OriginAuth {
            scheme: AuthScheme::SigV4 {
                region: "eu-west-1".into(),
                service: "s3".into(),
            },
            credential: CredentialSource::File(path.clone()),
        };
        // "token" has no KEY_ID: part.
        assert!(request_auth(&sigv4).is_err());
        std::fs::write(&path, "AKIDEXAMPLE:se/cr+et:x\n").unwrap();
        assert_eq!(
            request_auth(&sigv4).unwrap(),
            RequestAuth::SigV4(AccessKey {
                id: "AKIDEXAMPLE".into(),
                secret: "se/cr+et:x".into(),
                region: "eu-west-1".into(),
                service: "s3".into(),
            })
        );
    }
}
