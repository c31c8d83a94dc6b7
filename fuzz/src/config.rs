//! A validated [`Config`] written back as TOML, for the `config` target's round trip: every
//! key explicit, sizes as strings of bytes (a `u64` may not fit a TOML integer), durations
//! in milliseconds or seconds, paths as the validation resolved them.

use memtftpd::config::Config;
use memtftpd::origin::settings::{AuthScheme, CredentialSource};
use memtftpd::endpoint::{BlockLimit, Rules};
use memtftpd::store::OnError;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Written {
    listen: Vec<String>,
    single_port: bool,
    max_transfers: usize,
    max_transfers_per_client: usize,
    max_unverified_per_client: usize,
    ipv6_client_prefix: u8,
    timeout: u64,
    retries: u32,
    max_blksize: Limit,
    max_windowsize: u16,
    max_timeout: u8,
    shutdown_grace: String,
    case_insensitive: bool,
    log_level: String,
    receive_buffer: String,
    read: bool,
    write: bool,
    root: String,
    fallback: bool,
    rewrite: Vec<[String; 2]>,
    refuse_options: Vec<&'static str>,
    port_range: String,
    watch: bool,
    preseed: Vec<WrittenPreseed>,
    upload: WrittenUpload,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<WrittenOrigin>,
    client: Vec<WrittenClient>,
}

/// `max-blksize`: a number or `"mtu"`.
#[derive(Serialize)]
#[serde(untagged)]
enum Limit {
    Fixed(u16),
    Mtu(&'static str),
}

impl From<BlockLimit> for Limit {
    fn from(limit: BlockLimit) -> Limit {
        match limit {
            BlockLimit::Fixed(n) => Limit::Fixed(n),
            BlockLimit::Mtu => Limit::Mtu("mtu"),
        }
    }
}

/// A `[[client]]` table with every key explicit (its rules are complete).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WrittenClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    networks: Vec<String>,
    read: bool,
    write: bool,
    root: String,
    fallback: bool,
    rewrite: Vec<[String; 2]>,
    max_blksize: Limit,
    max_windowsize: u16,
    refuse_options: Vec<&'static str>,
    upload: WrittenClientUpload,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WrittenOrigin {
    url: String,
    interval: String,
    cache: String,
    timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WrittenClientUpload {
    allow: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_file_size: Option<String>,
}

fn rewrites(rules: &Rules) -> Vec<[String; 2]> {
    rules
        .rewrite
        .iter()
        .map(|r| [r.pattern().to_owned(), r.replacement().to_owned()])
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WrittenPreseed {
    path: String,
    prefix: String,
    optional: bool,
    on_error: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WrittenUpload {
    enabled: bool,
    max_file_size: String,
    max_total_size: String,
    overwrite: bool,
    allow: Vec<String>,
}

/// `config` as TOML text that [`Config::parse`] (with the same origin) reads back as it.
///
/// # Panics
///
/// If a preseed path is not UTF-8 (a path read from TOML always is), or if serialising
/// fails.
pub fn to_toml(config: &Config) -> String {
    let endpoint = &config.endpoint;
    let written = Written {
        listen: config.listen.iter().map(ToString::to_string).collect(),
        single_port: endpoint.single_port,
        max_transfers: endpoint.max_transfers,
        max_transfers_per_client: endpoint.max_transfers_per_client,
        max_unverified_per_client: endpoint.max_unverified_per_client,
        ipv6_client_prefix: endpoint.ipv6_client_prefix,
        timeout: endpoint.transfer.timeout.as_secs(),
        retries: endpoint.transfer.retries,
        max_blksize: endpoint.policy.top.max_blksize.into(),
        max_windowsize: endpoint.policy.top.max_windowsize,
        max_timeout: endpoint.transfer.max_timeout,
        shutdown_grace: format!("{}ms", endpoint.shutdown_grace.as_millis()),
        case_insensitive: config.case_insensitive,
        log_level: config.log_level.as_str().to_ascii_lowercase(),
        receive_buffer: config.receive_buffer.to_string(),
        read: endpoint.policy.top.read,
        write: endpoint.policy.top.write,
        root: endpoint.policy.top.root.clone().unwrap_or_default(),
        fallback: endpoint.policy.top.fallback,
        rewrite: rewrites(&endpoint.policy.top),
        refuse_options: endpoint.policy.top.refuse_options.names(),
        port_range: endpoint
            .port_range
            .map(|r| r.to_string())
            .unwrap_or_default(),
        watch: config.watch,
        preseed: config
            .preseed
            .iter()
            .map(|source| WrittenPreseed {
                path: source
                    .path
                    .to_str()
                    .expect("a path from TOML text is UTF-8")
                    .to_owned(),
                prefix: source.prefix.clone(),
                optional: source.optional,
                on_error: match source.on_error {
                    OnError::Skip => "skip",
                    OnError::Fail => "fail",
                },
            })
            .collect(),
        upload: WrittenUpload {
            enabled: config.upload.enabled,
            max_file_size: config.upload.max_file_size.to_string(),
            max_total_size: config.upload.max_total_size.to_string(),
            overwrite: config.upload.overwrite,
            allow: config.upload.allow.clone(),
        },
        origin: config.origin.as_ref().map(|origin| WrittenOrigin {
            url: origin.url.clone(),
            interval: format!("{}ms", origin.interval.as_millis()),
            cache: utf8(&origin.cache),
            timeout: format!("{}ms", origin.timeout.as_millis()),
            ca_file: origin.ca_file.as_deref().map(utf8),
            auth: origin.auth.as_ref().map(|auth| match auth.scheme {
                AuthScheme::Bearer => "bearer",
                AuthScheme::Basic => "basic",
            }),
            credential: origin.auth.as_ref().map(|auth| match &auth.credential {
                CredentialSource::File(path) => utf8(path),
                CredentialSource::Systemd(name) => name.clone(),
            }),
        }),
        client: endpoint
            .policy
            .tables
            .iter()
            .map(|table| WrittenClient {
                name: table.name.clone(),
                networks: table.networks.iter().map(ToString::to_string).collect(),
                read: table.rules.read,
                write: table.rules.write,
                root: table.rules.root.clone().unwrap_or_default(),
                fallback: table.rules.fallback,
                rewrite: rewrites(&table.rules),
                max_blksize: table.rules.max_blksize.into(),
                max_windowsize: table.rules.max_windowsize,
                refuse_options: table.rules.refuse_options.names(),
                upload: WrittenClientUpload {
                    allow: table.rules.upload.allow.clone(),
                    max_file_size: table.rules.upload.max_file_size.map(|s| s.to_string()),
                },
            })
            .collect(),
    };
    toml::to_string(&written).expect("a Config serialises")
}

fn utf8(path: &std::path::Path) -> String {
    path.to_str()
        .expect("a path from TOML text is UTF-8")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_shipped_configurations_survive_the_round_trip() {
        for file in ["../config/tftpd.toml", "../config/example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = Config::load(&path).expect("a shipped config parses");
            let written = to_toml(&config);
            let again = Config::parse(&written, &path).expect("written back, it parses");
            assert_eq!(again, config, "{written}");
        }
    }

    #[test]
    fn the_origin_table_survives_the_round_trip() {
        let origin = Path::new("/etc/tftpd.toml");
        for text in [
            "[origin]\nurl = \"https://h/m.json\"\n",
            "[origin]\nurl = \"http://h:8/a/m\"\ninterval = \"2m\"\ncache = \"c\"\n\
             timeout = 3\nca-file = \"ca.pem\"\nauth = \"basic\"\ncredential = \"k/f\"\n",
            "[origin]\nurl = \"http://h/m\"\nauth = \"bearer\"\ncredential = \"name\"\n",
        ] {
            let config = Config::parse(text, origin).expect("valid");
            assert!(config.origin.is_some());
            let written = to_toml(&config);
            assert_eq!(Config::parse(&written, origin).ok(), Some(config), "{written}");
        }
    }

    #[test]
    fn watch_and_on_error_survive_the_round_trip() {
        let origin = Path::new("/etc/tftpd.toml");
        let text = "watch = false\n[[preseed]]\npath = \"/srv\"\non-error = \"fail\"\n";
        let config = Config::parse(text, origin).expect("valid");
        assert!(!config.watch && config.preseed[0].on_error == OnError::Fail);
        let written = to_toml(&config);
        assert_eq!(
            Config::parse(&written, origin).ok(),
            Some(config),
            "{written}"
        );
    }

    #[test]
    fn the_default_survives_the_round_trip() {
        let origin = Path::new("/etc/tftpd.toml");
        let written = to_toml(&Config::default());
        assert_eq!(
            Config::parse(&written, origin).ok(),
            Some(Config::default())
        );
    }
}
