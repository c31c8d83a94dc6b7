//! `tftpd --print-config`: a validated [`Config`] written back as TOML with every key and
//! every default filled in, which reads back (and passes `--check-config`) as the same
//! configuration. Paths are written absolute (a relative one is resolved against the
//! working directory, as it was when the file was read), sizes as strings of bytes (a
//! `u64` may not fit a TOML integer), durations in milliseconds or seconds.

use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::Config;
use crate::store::OnError;

fn path(p: &Path) -> Value {
    let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    Value::String(absolute.display().to_string())
}

fn duration(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::String(format!("{}s", d.as_secs()))
    } else {
        Value::String(format!("{}ms", d.as_millis()))
    }
}

/// A size in bytes, as a string of digits (which sizes accept, whatever their value).
fn size(n: u64) -> Value {
    Value::String(n.to_string())
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

/// `config` as TOML text, with a header saying what it is.
pub fn render(config: &Config) -> String {
    let e = &config.endpoint;
    let t = &e.transfer;
    let mut top = Table::new();
    let listen = config.listen.iter().map(|a| Value::String(a.to_string()));
    top.insert("listen".into(), Value::Array(listen.collect()));
    top.insert("single-port".into(), Value::Boolean(e.single_port));
    top.insert("max-transfers".into(), int(e.max_transfers));
    top.insert(
        "max-transfers-per-client".into(),
        int(e.max_transfers_per_client),
    );
    top.insert(
        "max-unverified-per-client".into(),
        int(e.max_unverified_per_client),
    );
    top.insert("ipv6-client-prefix".into(), int(e.ipv6_client_prefix));
    top.insert("timeout".into(), int(t.timeout.as_secs()));
    top.insert("retries".into(), int(t.retries));
    top.insert("max-blksize".into(), int(t.max_blksize));
    top.insert("max-windowsize".into(), int(t.max_windowsize));
    top.insert("max-timeout".into(), int(t.max_timeout));
    top.insert("shutdown-grace".into(), duration(e.shutdown_grace));
    top.insert(
        "case-insensitive".into(),
        Value::Boolean(config.case_insensitive),
    );
    let level = config.log_level.to_string().to_ascii_lowercase();
    top.insert("log-level".into(), Value::String(level));
    let format = config.log_format.as_str().to_owned();
    top.insert("log-format".into(), Value::String(format));
    let control = config
        .control_socket
        .as_deref()
        .map_or(Value::String(String::new()), path);
    top.insert("control-socket".into(), control);
    top.insert("receive-buffer".into(), size(config.receive_buffer as u64));
    top.insert("watch".into(), Value::Boolean(config.watch));

    let preseed = config.preseed.iter().map(|p| {
        let mut entry = Table::new();
        entry.insert("path".into(), path(&p.path));
        entry.insert("prefix".into(), Value::String(p.prefix.clone()));
        entry.insert("optional".into(), Value::Boolean(p.optional));
        let on_error = match p.on_error {
            OnError::Skip => "skip",
            OnError::Fail => "fail",
        };
        entry.insert("on-error".into(), Value::String(on_error.into()));
        Value::Table(entry)
    });
    top.insert("preseed".into(), Value::Array(preseed.collect()));

    let u = &config.upload;
    let mut upload = Table::new();
    upload.insert("enabled".into(), Value::Boolean(u.enabled));
    upload.insert("max-file-size".into(), size(u.max_file_size));
    upload.insert("max-total-size".into(), size(u.max_total_size));
    upload.insert("overwrite".into(), Value::Boolean(u.overwrite));
    let allow = u.allow.iter().map(|a| Value::String(a.clone()));
    upload.insert("allow".into(), Value::Array(allow.collect()));
    top.insert("upload".into(), Value::Table(upload));

    let body = toml::to_string(&top).unwrap_or_default();
    format!(
        "# The effective configuration of memtftpd {}, every default filled in\n\
         # (tftpd --print-config). Sizes are in bytes.\n\n{body}",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use super::*;

    fn round_trip(text: &str) {
        let config = parse(text).expect("valid");
        let printed = render(&config);
        let again = parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(again, config, "{printed}");
    }

    #[test]
    fn the_printed_config_reads_back_as_the_same_config() {
        round_trip("");
        round_trip(
            r#"
            listen = ["127.0.0.1:6969", "[::1]:6969"]
            single-port = true
            max-transfers = 50
            max-transfers-per-client = 5
            max-unverified-per-client = 3
            ipv6-client-prefix = 56
            timeout = 255
            retries = 0
            max-blksize = 8
            max-windowsize = 65535
            max-timeout = 30
            shutdown-grace = "500ms"
            case-insensitive = true
            log-level = "debug"
            log-format = "json"
            control-socket = ""
            receive-buffer = 65536
            watch = false

            [[preseed]]
            path = "/srv/tftp"

            [[preseed]]
            path = "/boot"
            prefix = "\\pxe//x86/"
            optional = true
            on-error = "fail"

            [upload]
            enabled = true
            max-file-size = "1MiB"
            max-total-size = "16000000TiB"
            overwrite = true
            allow = ["uploads", "/incoming/"]
            "#,
        );
    }

    #[test]
    fn every_default_is_written_out() {
        let printed = render(&Config::default());
        for key in [
            "listen =",
            "max-transfers =",
            "timeout = 2",
            "shutdown-grace = \"10s\"",
            "log-format = \"auto\"",
            "control-socket = \"/run/tftpd/control\"",
            "[upload]",
            "max-total-size = \"268435456\"",
        ] {
            assert!(printed.contains(key), "{key} missing from\n{printed}");
        }
    }
}
