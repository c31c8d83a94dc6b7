//! `tftpd publish` and `tftpd sync` against a real HTTP server: Debian's nginx on
//! loopback, started unprivileged by the test with a configuration it writes, its access
//! log read to count requests. The synced tree is served over TFTP by the real daemon,
//! which `sync --reload-pid` reloads synchronously.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ctl::{ctl, promtool_passes, wait_until};
use common::daemon::*;
use common::nginx::{Nginx, Site};
use common::origin::{config, free_port, publish, served, sync};

/// The requests logged since `mark` lines, sorted.
fn since(nginx: &Nginx, mark: usize) -> Vec<String> {
    let mut lines = nginx.since(mark);
    lines.sort();
    lines
}

fn object_path(www: &Path, data: &[u8]) -> PathBuf {
    use sha2::Digest;
    let digest = memtftpd::origin::manifest::hex(&sha2::Sha256::digest(data));
    www.join("objects").join(digest)
}

#[test]
fn a_synced_tree_is_served_updated_by_one_object_and_kept_through_every_failure() {
    let scratch = Scratch::new("origin");
    scratch.write("src/pxelinux.0", b"loader");
    scratch.write("src/boot/vmlinuz", b"kernel v1");
    scratch.write("src/boot/initrd", b"initrd");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let mut nginx = Nginx::start(&scratch, &www, Site::default());
    let url = nginx.manifest_url();
    let config = config(&scratch, &url, "");

    // The daemon starts before the first sync: nothing to serve yet, and no failure.
    let daemon = start_daemon(&scratch, &config);
    assert_eq!(served(&daemon, "pxelinux.0"), None);

    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        served(&daemon, "pxelinux.0").as_deref(),
        Some(&b"loader"[..])
    );
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v1"[..])
    );
    let first = nginx.log();
    assert_eq!(first.len(), 4, "{first:?}");
    assert!(first.iter().all(|l| l.ends_with(" 200")), "{first:?}");

    // One file changed: the manifest and only that object are fetched, and the daemon
    // serves the new generation without a restart.
    scratch.write("src/boot/vmlinuz", b"kernel v2");
    publish(&scratch.path("src"), &www);
    let mark = nginx.log().len();
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(0), "{stderr}");
    let object = object_path(&www, b"kernel v2");
    let object_uri = format!("/objects/{}", object.file_name().unwrap().to_str().unwrap());
    assert_eq!(
        since(&nginx, mark),
        [
            "GET /manifest.json 200".to_owned(),
            format!("GET {object_uri} 200")
        ]
    );
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v2"[..])
    );

    // Nothing changed (and republished unchanged): one 304.
    publish(&scratch.path("src"), &www);
    let mark = nginx.log().len();
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(since(&nginx, mark), ["GET /manifest.json 304"]);

    // Each failure leaves generation 2 serving.
    scratch.write("src/boot/vmlinuz", b"kernel v3");
    publish(&scratch.path("src"), &www);
    let v3 = object_path(&www, b"kernel v3");
    let still_v2 = |what: &str, (code, stderr): (Option<i32>, String), needle: &str| {
        assert_eq!(code, Some(75), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert_eq!(
            served(&daemon, "boot/vmlinuz").as_deref(),
            Some(&b"kernel v2"[..]),
            "{what}"
        );
    };
    std::fs::write(&v3, b"kernel v4").unwrap();
    still_v2(
        "corrupted",
        sync(&scratch, &config, Some(&daemon)),
        "SHA-256",
    );
    std::fs::write(&v3, b"kernel").unwrap();
    still_v2(
        "truncated",
        sync(&scratch, &config, Some(&daemon)),
        "truncated",
    );
    std::fs::remove_file(&v3).unwrap();
    still_v2(
        "missing object",
        sync(&scratch, &config, Some(&daemon)),
        "404",
    );
    nginx.stop();
    still_v2(
        "origin stopped",
        sync(&scratch, &config, Some(&daemon)),
        "cannot fetch",
    );

    // Back up and complete: generation 3.
    publish(&scratch.path("src"), &www);
    nginx.resume();
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        served(&daemon, "boot/vmlinuz").as_deref(),
        Some(&b"kernel v3"[..])
    );
}

#[test]
fn sync_reloads_the_daemon_through_its_control_socket() {
    let scratch = Scratch::new("origin-ctl");
    scratch.write("src/a", b"one");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let nginx = Nginx::start(&scratch, &www, Site::default());
    let url = nginx.manifest_url();
    let config = config(&scratch, &url, "");
    let text = std::fs::read_to_string(&config).unwrap();
    // Without the watch, only a reload makes the daemon see the switch; config() points
    // control-socket into the scratch directory.
    let text = format!("watch = false\n{text}");
    std::fs::write(&config, text).unwrap();
    let daemon = start_daemon(&scratch, &config);
    let (code, stderr) = sync(&scratch, &config, None);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"one"[..]));
    scratch.write("src/a", b"two");
    publish(&scratch.path("src"), &www);
    let (code, stderr) = sync(&scratch, &config, None);
    assert_eq!(code, Some(0), "{stderr}");
    // The reload was synchronous: served the moment sync returns.
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"two"[..]));
}

#[test]
fn sync_succeeds_without_a_running_daemon_which_then_serves_the_cache() {
    let scratch = Scratch::new("origin-nodaemon");
    scratch.write("src/a", b"alpha");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let nginx = Nginx::start(&scratch, &www, Site::default());
    let config = config(&scratch, &nginx.manifest_url(), "");
    let (code, stderr) = sync(&scratch, &config, None);
    assert_eq!(code, Some(0), "{stderr}");
    // The origin can be gone: start-up serves the last good generation from the cache.
    drop(nginx);
    let daemon = start_daemon(&scratch, &config);
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"alpha"[..]));
}

/// Runs `tftpd --config CONFIG sync --check`: its exit code, stdout and stderr.
fn sync_check(config: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(TFTPD)
        .arg("--config")
        .arg(config)
        .args(["sync", "--check"])
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn sync_check_exits_0_with_an_origin_1_without_and_78_for_a_bad_config() {
    let scratch = Scratch::new("origin-check");
    // An origin nobody listens on: --check fetches nothing, so it is still configured.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/manifest.json");
    let with = config(&scratch, &url, "");
    let (code, stdout, stderr) = sync_check(&with);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&url), "{stdout}");
    assert!(!scratch.path("cache").exists(), "--check created the cache");

    // The packaged configuration ships [origin] commented out: nothing to sync.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tftpd.toml");
    let (code, stdout, stderr) = sync_check(&shipped);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("no [origin] table"), "{stdout}");
    let without = scratch.write("plain.toml", b"[[preseed]]\npath = \"/nonexistent\"\n");
    assert_eq!(
        sync_check(&without).0,
        Some(1),
        "preseed paths are not looked at"
    );

    let bad = scratch.write(
        "bad.toml",
        b"[origin]\nurl = \"ftp://example.com/manifest.json\"\n",
    );
    let (code, stdout, stderr) = sync_check(&bad);
    assert_eq!(code, Some(78), "{stdout}{stderr}");
    assert!(stderr.contains("bad.toml:2:"), "file and line: {stderr}");
    assert!(stderr.contains("url"), "the key: {stderr}");
    let (code, _, stderr) = sync_check(&scratch.path("missing.toml"));
    assert_eq!(code, Some(78), "{stderr}");
}

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn https_with_the_configured_ca_is_synced_and_an_unknown_ca_is_refused() {
    let scratch = Scratch::new("origin-tls");
    let pki = scratch.path("pki");
    std::fs::create_dir_all(&pki).unwrap();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=memtftpd test CA",
        ],
        &pki,
    );
    std::fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &pki,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        &pki,
    );

    scratch.write("src/a", b"over tls");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let (cert, key) = (pki.join("server.pem"), pki.join("server.key"));
    let tls = Site {
        tls: Some((&cert, &key)),
        ..Site::default()
    };
    let nginx = Nginx::start(&scratch, &www, tls);
    let url = format!("https://127.0.0.1:{}/manifest.json", nginx.port);

    // Without the CA, the system's roots refuse the certificate.
    let config_without = config(&scratch, &url, "");
    let (code, stderr) = sync(&scratch, &config_without, None);
    assert_eq!(code, Some(75), "{stderr}");
    assert!(nginx.log().is_empty(), "{:?}", nginx.log());

    let config = config(
        &scratch,
        &url,
        &format!("ca-file = \"{}\"\n", pki.join("ca.pem").display()),
    );
    let (code, stderr) = sync(&scratch, &config, None);
    assert_eq!(code, Some(0), "{stderr}");
    let daemon = start_daemon(&scratch, &config);
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"over tls"[..]));
}

#[test]
fn a_fleet_of_twenty_pulls_each_changed_object_once_per_instance() {
    const FLEET: usize = 20;
    let origin = Scratch::new("origin-fleet");
    origin.write("src/a", b"shared");
    origin.write("src/b", b"first");
    let www = origin.path("www");
    publish(&origin.path("src"), &www);
    let nginx = Nginx::start(&origin, &www, Site::default());
    let url = nginx.manifest_url();

    let mut fleet = Vec::new();
    for _ in 0..FLEET {
        let scratch = Scratch::new("fleet");
        let config = config(&scratch, &url, "");
        let (code, stderr) = sync(&scratch, &config, None);
        assert_eq!(code, Some(0), "{stderr}");
        let daemon = start_daemon(&scratch, &config);
        assert_eq!(served(&daemon, "b").as_deref(), Some(&b"first"[..]));
        fleet.push((scratch, config, daemon));
    }
    assert_eq!(nginx.log().len(), FLEET * 3);

    origin.write("src/b", b"second");
    publish(&origin.path("src"), &www);
    let mark = nginx.log().len();
    // Every instance runs its round at once, as timers firing together would.
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = fleet
            .iter()
            .map(|(scratch, config, daemon)| scope.spawn(|| sync(scratch, config, Some(daemon))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, stderr) in results {
        assert_eq!(code, Some(0), "{stderr}");
    }
    for (_, _, daemon) in &fleet {
        assert_eq!(served(daemon, "b").as_deref(), Some(&b"second"[..]));
        assert_eq!(served(daemon, "a").as_deref(), Some(&b"shared"[..]));
    }
    let object = object_path(&www, b"second");
    let object_uri = format!(
        "GET /objects/{} 200",
        object.file_name().unwrap().to_str().unwrap()
    );
    let round = since(&nginx, mark);
    let manifests = round
        .iter()
        .filter(|l| *l == "GET /manifest.json 200")
        .count();
    let objects = round.iter().filter(|l| **l == object_uri).count();
    assert_eq!(
        (manifests, objects, round.len()),
        (FLEET, FLEET, 2 * FLEET),
        "{round:?}"
    );
}

/// The fields of the sync round's log entry (the journal's `TFTP_ORIGIN_*`), from the
/// JSON lines of a sync run with `log-format = "json"`.
fn round_fields(stderr: &str) -> serde_json::Value {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry.get("tftp_origin_result").is_some())
        .unwrap_or_else(|| panic!("no round entry in {stderr}"))
}

/// A server that sends `manifest` whole and every object cut off halfway through the
/// length it announced, then closes the connection. Serves at most `limit` requests.
fn truncating_server(manifest: Vec<u8>, limit: usize) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(limit) {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request).into_owned();
            let response = if head.starts_with("GET /manifest.json ") {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    manifest.len()
                )
                .into_bytes();
                r.extend_from_slice(&manifest);
                r
            } else {
                let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
                    .to_vec();
                r.extend_from_slice(&[b'x'; 500]);
                r
            };
            let _ = stream.write_all(&response);
        }
    });
    (port, handle)
}

#[test]
fn a_response_cut_off_mid_body_leaves_the_served_generation() {
    let scratch = Scratch::new("origin-cut");
    scratch.write("src/a", b"first");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let nginx = Nginx::start(&scratch, &www, Site::default());
    let good = config(&scratch, &nginx.manifest_url(), "");
    let (code, stderr) = sync(&scratch, &good, None);
    assert_eq!(code, Some(0), "{stderr}");
    let daemon = start_daemon(&scratch, &good);

    // A new generation whose one object is 1000 bytes, served cut off at 500.
    scratch.write("src/a", &[b'x'; 1000]);
    publish(&scratch.path("src"), &www);
    let manifest = std::fs::read(www.join("manifest.json")).unwrap();
    let (port, server) = truncating_server(manifest, 2);
    let cut = config(
        &scratch,
        &format!("http://127.0.0.1:{port}/manifest.json"),
        "",
    );
    let (code, stderr) = sync(&scratch, &cut, Some(&daemon));
    assert_eq!(code, Some(75), "{stderr}");
    server.join().unwrap();
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"first"[..]));
    // Nothing half-written is left in the cache's objects.
    let objects = std::fs::read_dir(scratch.path("cache/objects"))
        .unwrap()
        .count();
    assert_eq!(objects, 1);
}

#[test]
fn sync_watch_picks_up_a_republish_and_the_daemon_serves_it() {
    let scratch = Scratch::new("origin-watch");
    scratch.write("src/a", b"one");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let nginx = Nginx::start(&scratch, &www, Site::default());
    let config = config(&scratch, &nginx.manifest_url(), "");
    let daemon = start_daemon(&scratch, &config);
    // Killed when dropped, so that a failed assertion leaves no sync running (it would go
    // on signalling a PID that may pass to another test's process).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let watch = Killed(
        Command::new(TFTPD)
            .arg("--config")
            .arg(&config)
            .args(["sync", "--watch", "1s", "--reload-pid"])
            .arg(daemon.child.id().to_string())
            .env("RUNTIME_DIRECTORY", scratch.path(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.path("watch.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let wait_for = |want: &[u8]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while served(&daemon, "a").as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "not served: {}",
                std::fs::read_to_string(scratch.path("watch.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(b"one");
    scratch.write("src/a", b"two");
    publish(&scratch.path("src"), &www);
    wait_for(b"two");
    drop(watch);
    let log = nginx.log();
    assert!(
        log.iter()
            .filter(|l| l.starts_with("GET /manifest.json"))
            .count()
            >= 2
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("GET /objects/"))
            .count(),
        2,
        "{log:?}"
    );
}

#[test]
fn an_origin_that_never_answers_times_out_and_leaves_the_served_generation() {
    let scratch = Scratch::new("origin-slow");
    scratch.write("src/a", b"kept");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let nginx = Nginx::start(&scratch, &www, Site::default());
    let good = config(&scratch, &nginx.manifest_url(), "");
    let (code, stderr) = sync(&scratch, &good, None);
    assert_eq!(code, Some(0), "{stderr}");
    let daemon = start_daemon(&scratch, &good);

    // Accepts the connection (the kernel's backlog does) and never sends a byte.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let slow = config(
        &scratch,
        &format!("http://127.0.0.1:{port}/manifest.json"),
        "",
    );
    let text = std::fs::read_to_string(&slow)
        .unwrap()
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    std::fs::write(&slow, text).unwrap();
    let (code, stderr) = sync(&scratch, &slow, Some(&daemon));
    assert_eq!(code, Some(75), "{stderr}");
    assert!(
        stderr.contains("timeout") || stderr.contains("timed out"),
        "{stderr}"
    );
    drop(silent);
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"kept"[..]));
}

/// `tftpd ctl status --json`'s `origin` object.
fn origin_status(socket: &Path) -> serde_json::Value {
    let text = ctl(socket, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["ok"], true, "{text}");
    value["result"]["origin"].clone()
}

/// The generation of the manifest published at `www`.
fn published_generation(www: &Path) -> String {
    let manifest = std::fs::read(www.join("manifest.json")).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    value["generation"].as_str().unwrap().to_owned()
}

/// The value of the sample `name` (labels included) in the exposition `text`, if any.
fn sample(text: &str, name: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?;
    line[name.len() + 1..].parse().ok()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn ctl_status_metrics_and_status_line_name_the_generation_served_and_the_last_sync() {
    let scratch = Scratch::new("origin-visible");
    scratch.write("src/a", b"one");
    let www = scratch.path("www");
    publish(&scratch.path("src"), &www);
    let mut nginx = Nginx::start(&scratch, &www, Site::default());
    let config = config(&scratch, &nginx.manifest_url(), "");
    // JSON lines, for the round's fields (text lines carry the message only).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("log-format = \"json\"\n{text}")).unwrap();
    let socket = scratch.path("control");
    let mut daemon = start_daemon(&scratch, &config);

    // Before the first sync: an origin, nothing served from it, no round.
    let origin = origin_status(&socket);
    assert_eq!(origin["cache"], scratch.path("cache").display().to_string());
    assert!(origin["generation"].is_null(), "{origin}");
    assert!(origin["last_success"].is_null(), "{origin}");
    let metrics = ctl(&socket, &["metrics"]);
    assert!(metrics.contains("# TYPE tftpd_origin_generation_info gauge"));
    assert_eq!(
        sample(&metrics, "tftpd_origin_last_success_timestamp_seconds"),
        None
    );
    promtool_passes(&metrics);

    // A sync that switches: the daemon reloads and names the generation and the time.
    let first = published_generation(&www);
    let before = now_seconds();
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    let after = now_seconds();
    assert_eq!(code, Some(0), "{stderr}");
    // The round's log entry carries its figures as fields (the journal's TFTP_ORIGIN_*).
    let round = round_fields(&stderr);
    assert_eq!(round["tftp_origin_generation"], first.as_str(), "{stderr}");
    assert_eq!(round["tftp_origin_result"], "switched", "{stderr}");
    assert_eq!(round["tftp_origin_objects"], 1, "{stderr}");
    assert_eq!(round["tftp_origin_bytes"], 3, "{stderr}");
    let origin = origin_status(&socket);
    assert_eq!(origin["generation"], first.as_str(), "{origin}");
    assert_eq!(origin["synced_generation"], first.as_str(), "{origin}");
    assert_eq!(origin["last_result"], "switched", "{origin}");
    assert_eq!(origin["rounds"]["switched"], 1, "{origin}");
    let synced_at = origin["last_success"].as_str().unwrap().to_owned();
    assert_eq!(origin["last_switch"], synced_at.as_str());
    let metrics = ctl(&socket, &["metrics"]);
    let info = format!("tftpd_origin_generation_info{{generation=\"{first}\"}}");
    assert_eq!(sample(&metrics, &info), Some(1.0), "{metrics}");
    let success = sample(&metrics, "tftpd_origin_last_success_timestamp_seconds").unwrap();
    assert!(
        success >= before.floor() && success <= after.ceil(),
        "{success}"
    );
    assert_eq!(
        sample(&metrics, "tftpd_origin_rounds_total{result=\"switched\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "tftpd_origin_consecutive_failures"),
        Some(0.0)
    );
    let table = ctl(&socket, &["status"]);
    assert!(table.contains(&format!("origin:      {first}")), "{table}");
    assert!(
        table.contains(&format!("last sync:   {synced_at}")),
        "{table}"
    );
    let short = |g: &str| g[..12].to_owned();
    daemon.wait_notify("STATUS= with the first generation", |m| {
        m.contains(&format!("origin generation {}, synced ", short(&first)))
    });

    // Republished and synced: the new generation everywhere, the old one nowhere.
    scratch.write("src/a", b"two");
    publish(&scratch.path("src"), &www);
    let second = published_generation(&www);
    assert_ne!(second, first);
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(served(&daemon, "a").as_deref(), Some(&b"two"[..]));
    let origin = origin_status(&socket);
    assert_eq!(origin["generation"], second.as_str(), "{origin}");
    assert_eq!(origin["rounds"]["switched"], 2, "{origin}");
    let metrics = ctl(&socket, &["metrics"]);
    let info = format!("tftpd_origin_generation_info{{generation=\"{second}\"}}");
    assert_eq!(sample(&metrics, &info), Some(1.0), "{metrics}");
    assert!(!metrics.contains(&first), "{metrics}");
    daemon.wait_notify("STATUS= with the second generation", |m| {
        m.contains(&format!("origin generation {}, synced ", short(&second)))
    });

    // A round that finds nothing new reloads nothing: the daemon's thread sees the file.
    let switched_at = origin["last_switch"].as_str().unwrap().to_owned();
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(0), "{stderr}");
    wait_until("the unchanged round to show", || {
        origin_status(&socket)["last_result"] == "unchanged"
    });
    let origin = origin_status(&socket);
    assert_eq!(origin["generation"], second.as_str());
    assert_eq!(origin["last_switch"], switched_at.as_str());
    assert!(origin["last_success"].as_str().unwrap() >= switched_at.as_str());

    // The origin down: the last success stays, the failure is counted and named.
    let succeeded = origin["last_success"].as_str().unwrap().to_owned();
    nginx.stop();
    let (code, stderr) = sync(&scratch, &config, Some(&daemon));
    assert_eq!(code, Some(75), "{stderr}");
    let round = round_fields(&stderr);
    assert_eq!(round["tftp_origin_generation"], second.as_str(), "{stderr}");
    assert_eq!(round["tftp_origin_result"], "failed", "{stderr}");
    assert_eq!(round["tftp_origin_error"], "fetch", "{stderr}");
    wait_until("the failed round to show", || {
        origin_status(&socket)["consecutive_failures"] == 1
    });
    let origin = origin_status(&socket);
    assert_eq!(origin["generation"], second.as_str());
    assert_eq!(origin["last_success"], succeeded.as_str());
    assert_eq!(origin["last_result"], "failed");
    let error = origin["last_error"].as_str().unwrap();
    assert!(error.starts_with("fetch: cannot fetch"), "{error}");
    let metrics = ctl(&socket, &["metrics"]);
    assert_eq!(
        sample(&metrics, "tftpd_origin_rounds_total{result=\"failed\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "tftpd_origin_rounds_total{result=\"unchanged\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "tftpd_origin_consecutive_failures"),
        Some(1.0)
    );
    promtool_passes(&metrics);
    daemon.wait_notify("STATUS= with the failure", |m| {
        m.contains(&format!(
            "origin generation {}, synced {succeeded}, 1 failed round(s) since (fetch)",
            short(&second)
        ))
    });
}
