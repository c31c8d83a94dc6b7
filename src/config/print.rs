//! `tftpd --print-config`: a validated [`Config`] written back as TOML with every key and
//! every default filled in, which reads back (and passes `--check-config`) as the same
//! configuration. Paths are written absolute (a relative one is resolved against the
//! working directory, as it was when the file was read), sizes as strings of bytes (a
//! `u64` may not fit a TOML integer), durations in milliseconds or seconds.

use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::Config;
use crate::endpoint::{BlockLimit, Rules};
use crate::origin::settings::{AuthScheme, CredentialSource};
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

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

fn block_limit(limit: BlockLimit) -> Value {
    match limit {
        BlockLimit::Fixed(n) => int(n),
        BlockLimit::Mtu => Value::String("mtu".into()),
    }
}

/// The policy keys that the top level and every `[[client]]` table share.
fn insert_rules(table: &mut Table, rules: &Rules) {
    table.insert("read".into(), Value::Boolean(rules.read));
    table.insert("write".into(), Value::Boolean(rules.write));
    let root = rules.root.clone().unwrap_or_default();
    table.insert("root".into(), Value::String(root));
    table.insert("fallback".into(), Value::Boolean(rules.fallback));
    let rewrite = rules
        .rewrite
        .iter()
        .map(|r| strings([r.pattern(), r.replacement()]));
    table.insert("rewrite".into(), Value::Array(rewrite.collect()));
    table.insert("max-blksize".into(), block_limit(rules.max_blksize));
    table.insert("max-windowsize".into(), int(rules.max_windowsize));
    let refused = rules.refuse_options.names();
    table.insert("refuse-options".into(), strings(refused));
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
    insert_rules(&mut top, &e.policy.top);
    let ports = e.port_range.map(|r| r.to_string()).unwrap_or_default();
    top.insert("port-range".into(), Value::String(ports));

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
    let in_flight = e.uploads_in_flight.max_per_client;
    upload.insert("max-per-client".into(), int(in_flight));
    if let Some(spool) = &config.upload_spool {
        upload.insert("spool".into(), path(spool));
    }
    top.insert("upload".into(), Value::Table(upload));

    let clients = e.policy.tables.iter().map(|c| {
        let mut table = Table::new();
        if let Some(name) = &c.name {
            table.insert("name".into(), Value::String(name.clone()));
        }
        let networks = c.networks.iter().map(|n| Value::String(n.to_string()));
        table.insert("networks".into(), Value::Array(networks.collect()));
        insert_rules(&mut table, &c.rules);
        let mut upload = Table::new();
        let allow = c.rules.upload.allow.iter().map(String::as_str);
        upload.insert("allow".into(), strings(allow));
        if let Some(max) = c.rules.upload.max_file_size {
            upload.insert("max-file-size".into(), size(max));
        }
        if let Some(max) = c.rules.upload.max_total_size {
            upload.insert("max-total-size".into(), size(max));
        }
        table.insert("upload".into(), Value::Table(upload));
        Value::Table(table)
    });
    top.insert("client".into(), Value::Array(clients.collect()));

    if let Some(o) = &config.origin {
        let mut origin = Table::new();
        origin.insert("url".into(), Value::String(o.url.clone()));
        origin.insert("interval".into(), duration(o.interval));
        origin.insert("cache".into(), path(&o.cache));
        origin.insert("timeout".into(), duration(o.timeout));
        if let Some(ca) = &o.ca_file {
            origin.insert("ca-file".into(), path(ca));
        }
        if let Some(auth) = &o.auth {
            let scheme = match &auth.scheme {
                AuthScheme::Bearer => "bearer",
                AuthScheme::Basic => "basic",
                AuthScheme::SigV4 { region, service } => {
                    origin.insert("region".into(), Value::String(region.clone()));
                    origin.insert("service".into(), Value::String(service.clone()));
                    "sigv4"
                }
            };
            origin.insert("auth".into(), Value::String(scheme.into()));
            let credential = match &auth.credential {
                CredentialSource::File(file) => path(file),
                CredentialSource::Systemd(name) => Value::String(name.clone()),
            };
            origin.insert("credential".into(), credential);
        }
        if let Some(url) = &o.push_uploads {
            origin.insert("push-uploads".into(), Value::String(url.clone()));
        }
        top.insert("origin".into(), Value::Table(origin));
    }

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
    fn the_origin_table_is_printed_and_reads_back() {
        round_trip("[origin]\nurl = \"https://h/m.json\"\n");
        round_trip(
            "[origin]\nurl = \"http://h:8/a/m\"\ninterval = \"2m\"\ncache = \"/c\"\n\
             timeout = 3\nca-file = \"/ca.pem\"\nauth = \"basic\"\ncredential = \"/k/f\"\n",
        );
        round_trip("[origin]\nurl = \"http://h/m\"\nauth = \"bearer\"\ncredential = \"name\"\n");
        round_trip(
            "[origin]\nurl = \"http://h/b/m\"\nauth = \"sigv4\"\ncredential = \"s3-key\"\n\
             region = \"eu-west-3\"\npush-uploads = \"http://h/up/\"\n[upload]\nspool = \"/s\"\n",
        );
        let printed = render(
            &parse("[origin]\nurl = \"http://h/m\"\nauth = \"sigv4\"\ncredential = \"k\"\n")
                .unwrap(),
        );
        assert!(
            printed.contains("region = \"us-east-1\"") && printed.contains("service = \"s3\""),
            "{printed}"
        );
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
            max-per-client = 9
            spool = "/var/lib/tftpd/uploads"
            "#,
        );
        round_trip(
            r#"
            max-blksize = "mtu"
            rewrite = [["^/tftpboot/", ""], ["\\.bak$", "-{ip}"]]
            refuse-options = ["windowsize"]
            port-range = "30000-30999"
            root = "all/"
            fallback = false

            [[client]]
            name = "lab"
            networks = ["10.1.0.0/16", "fd00::/8"]
            write = false
            root = "site-a/{ip}/"
            max-blksize = 1024
            max-windowsize = 4

            [client.upload]
            allow = ["backups/"]
            max-file-size = "1MiB"
            max-total-size = "8MiB"

            [[client]]
            networks = ["0.0.0.0/0"]
            read = false
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
