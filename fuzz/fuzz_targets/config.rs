//! The configuration parser on arbitrary text: `Config::parse` never panics and is
//! deterministic; an error names the file and a position inside the text; a `Config`
//! that parses keeps the cross-field rules, and written back as TOML it validates to
//! the same `Config` again.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use memtftpd::config::Config;
use memtftpd::name::normalize_name;

const ORIGIN: &str = "/etc/memtftpd/tftpd.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = Path::new(ORIGIN);
    let result = Config::parse(&text, origin);
    match (&result, &Config::parse(&text, origin)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "parsed two ways"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "refused two ways"),
        (a, b) => panic!("parsed once as {a:?}, once as {b:?}"),
    }
    let config = match result {
        Ok(config) => config,
        Err(error) => {
            let shown = error.to_string();
            assert!(shown.starts_with(ORIGIN), "{shown}");
            if let Some(position) = error.position() {
                let lines = text.split('\n').count();
                assert!(
                    position.line >= 1 && position.line <= lines && position.column >= 1,
                    "{shown}: {position:?} is outside the text ({lines} lines)"
                );
            }
            return;
        }
    };
    check_rules(&config);
    let written = memtftpd_fuzz::config::to_toml(&config);
    match Config::parse(&written, origin) {
        Ok(again) => assert_eq!(again, config, "written back as:\n{written}"),
        Err(error) => panic!("{config:?} written back as:\n{written}\ndoes not parse: {error}"),
    }
});

/// What every validated `Config` promises (see `config::Config`'s field docs).
fn check_rules(config: &Config) {
    assert!(!config.listen.is_empty());
    for (i, address) in config.listen.iter().enumerate() {
        assert!(!config.listen[..i].contains(address), "{address} twice");
    }
    let endpoint = &config.endpoint;
    let transfer = &endpoint.transfer;
    assert!(endpoint.max_transfers >= 1);
    assert!(endpoint.max_transfers_per_client >= 1);
    assert!(endpoint.max_transfers_per_client <= endpoint.max_transfers);
    assert!(endpoint.max_unverified_per_client >= 1);
    assert!(endpoint.max_unverified_per_client <= endpoint.max_transfers_per_client);
    assert!((32..=128).contains(&endpoint.ipv6_client_prefix));
    assert!(config.upload.max_file_size <= config.upload.max_total_size);
    assert_eq!(transfer.max_upload_size, config.upload.max_file_size);
    assert!((8..=65464).contains(&transfer.max_blksize));
    assert!(transfer.max_windowsize >= 1);
    assert!(transfer.max_timeout >= 1);
    assert!((1..=255).contains(&transfer.timeout.as_secs()));
    assert!(transfer.timeout.subsec_nanos() == 0);
    assert!(endpoint.shutdown_grace <= memtftpd::config::MAX_SHUTDOWN_GRACE);
    assert!(config.receive_buffer as u64 <= memtftpd::config::MAX_RECEIVE_BUFFER);
    for source in &config.preseed {
        assert!(source.path.is_absolute(), "{source:?}");
        assert!(
            source.prefix.is_empty() || is_prefix(&source.prefix),
            "{source:?}"
        );
    }
    for (i, prefix) in config.upload.allow.iter().enumerate() {
        assert!(is_prefix(prefix), "allow {prefix:?}");
        assert!(
            !config.upload.allow[..i].contains(prefix),
            "{prefix:?} twice"
        );
    }
}

/// A normalised name followed by one `/`.
fn is_prefix(prefix: &str) -> bool {
    prefix
        .strip_suffix('/')
        .is_some_and(|name| normalize_name(name).is_ok_and(|n| n.as_str() == name))
}
