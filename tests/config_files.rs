//! The configuration files shipped in `config/`: each one parses, documents what it should, and
//! rejects an unknown key in any of its tables.

use std::path::{Path, PathBuf};

use memtftpd::config::{Config, ConfigError};
use memtftpd::daemon::DaemonError;
use memtftpd::exit::EX_CONFIG;

const BOGUS_KEY: &str = "memtftpd-no-such-key";

/// Every `*.toml` file in `config/`, found by listing the directory.
fn shipped_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/ is readable")
        .map(|entry| entry.expect("config/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("tftpd.toml")) && files.len() >= 2,
        "expected tftpd.toml and an example in {}: {files:?}",
        dir.display()
    );
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("shipped config is readable")
}

#[test]
fn every_shipped_config_parses() {
    for path in shipped_configs() {
        if let Err(e) = Config::load(&path) {
            panic!("{e}");
        }
    }
}

#[test]
fn example_config_preseeds_paths_that_exist_and_listens_unprivileged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.preseed.is_empty());
    for preseed in &config.preseed {
        assert!(
            preseed.path.exists(),
            "{} is missing",
            preseed.path.display()
        );
    }
    assert!(
        config
            .listen
            .iter()
            .all(|a| a.port() >= 1024 && a.ip().is_loopback())
    );
    assert!(config.upload.enabled);
}

#[test]
fn shipped_default_is_cautious_and_preseeds_srv_tftp() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tftpd.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.upload.enabled);
    assert_eq!(config.preseed.len(), 1);
    assert_eq!(config.preseed[0].path, Path::new("/srv/tftp"));
    assert!(!config.preseed[0].optional);
    let expected = Config {
        preseed: config.preseed.clone(),
        ..Config::default()
    };
    assert_eq!(config, expected);
}

/// Uncomments every `#key = value` line of `text`.
fn uncomment_keys(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(key, _)| {
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                }) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The keys a table accepts, read from the error that an unknown key in it produces
/// ("unknown field `x`, expected one of `a`, `b`").
fn accepted_keys(table_header: &str) -> Vec<String> {
    let text = format!("{table_header}\n{BOGUS_KEY} = 1\n");
    let error = Config::parse(&text, Path::new("t.toml")).expect_err("unknown key");
    let shown = error.to_string();
    let (_, expected) = shown
        .split_once("expected ")
        .unwrap_or_else(|| panic!("no list of keys in {shown}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn shipped_default_documents_every_key_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tftpd.toml");
    let text = read(&path);

    // Every accepted key appears, as `key = ` or `#key = `, in its table.
    let root_end = text.find("\n[[preseed]]").expect("a [[preseed]] entry");
    let preseed_end = text.find("\n[upload]").expect("an [upload] table");
    for (header, section) in [
        ("", &text[..root_end]),
        ("[[preseed]]\npath = \"/x\"", &text[root_end..preseed_end]),
        ("[upload]", &text[preseed_end..]),
    ] {
        let keys = accepted_keys(header);
        assert!(keys.len() >= 3, "{keys:?}");
        for key in keys {
            let documented = section.lines().any(|line| {
                line.trim_start_matches('#')
                    .starts_with(&format!("{key} = "))
            }) || text.contains(&format!("\n[{key}]\n"))
                || text.contains(&format!("\n#[{key}]\n"))
                || text.contains(&format!("\n[[{key}]]\n"));
            assert!(
                documented,
                "key `{key}` of table {header:?} is not documented"
            );
        }
    }

    // The commented [origin] table documents each of its keys as `#key = `.
    let origin = &text[text.find("\n#[origin]\n").expect("a commented [origin]")..];
    for key in accepted_keys("[origin]") {
        assert!(
            origin.lines().any(|l| l.starts_with(&format!("#{key} = "))),
            "key `{key}` of table [origin] is not documented"
        );
    }

    // Uncommented, the example is valid, its values are the defaults, and its preseed
    // entry serves the cache's current generation.
    let example: String = origin
        .lines()
        .filter_map(|l| {
            l.strip_prefix("#[")
                .map(|rest| format!("[{rest}"))
                .or_else(|| {
                    l.strip_prefix('#')
                        .filter(|rest| {
                            rest.split_once(" = ")
                                .is_some_and(|(k, _)| !k.contains(' '))
                        })
                        .map(str::to_owned)
                })
        })
        .collect::<Vec<_>>()
        .join("\n");
    // `region` and `service` go with auth = "sigv4", `push-uploads` with [upload] spool:
    // read as shown (bearer) without them, and with sigv4 and a spool with them, where
    // the region and service shown must be the defaults.
    let sigv4_only = |l: &&str| !l.starts_with("region = ") && !l.starts_with("service = ");
    let bearer: String = example
        .lines()
        .filter(sigv4_only)
        .filter(|l| !l.starts_with("push-uploads = "))
        .collect::<Vec<_>>()
        .join("\n");
    let signed = format!(
        "[upload]\nspool = \"/var/lib/tftpd/uploads\"\n{}",
        example.replace("auth = \"bearer\"", "auth = \"sigv4\"")
    );
    let signed = Config::parse(&signed, &path).unwrap_or_else(|e| panic!("{e}\n{signed}"));
    let signed = signed.origin.expect("[origin]");
    assert_eq!(
        signed.auth.map(|a| a.scheme),
        Some(memtftpd::origin::settings::AuthScheme::SigV4 {
            region: memtftpd::origin::sigv4::DEFAULT_REGION.into(),
            service: memtftpd::origin::sigv4::DEFAULT_SERVICE.into(),
        })
    );
    assert!(signed.push_uploads.is_some());
    let synced = Config::parse(&bearer, &path).unwrap_or_else(|e| panic!("{e}\n{bearer}"));
    let settings = synced.origin.expect("[origin]");
    assert_eq!(
        settings.interval,
        memtftpd::origin::settings::DEFAULT_INTERVAL
    );
    assert_eq!(
        settings.timeout,
        memtftpd::origin::settings::DEFAULT_TIMEOUT
    );
    assert_eq!(
        settings.cache,
        Path::new(memtftpd::origin::settings::DEFAULT_CACHE)
    );
    assert_eq!(synced.preseed[0].path, settings.cache.join("current"));
    assert!(synced.preseed[0].optional);

    // The values shown in comments are the defaults, but `spool`'s: it has none (memory
    // only), and its line shows the packaged example. (The commented [origin] table and
    // its preseed entry, checked above, are left out.)
    let uncommented = uncomment_keys(&text[..text.find("\n#[origin]\n").unwrap_or(text.len())]);
    let config = Config::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}"));
    let expected = Config {
        preseed: config.preseed.clone(),
        upload_spool: Some(PathBuf::from("/var/lib/tftpd/uploads")),
        ..Config::default()
    };
    assert_eq!(
        config, expected,
        "a commented default differs from the real one"
    );
}

/// The dotted path of every table in `table`, with the table itself first.
fn table_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    out.push(prefix.to_owned());
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => table_paths(inner, &path, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        table_paths(inner, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The table at `path` (as produced by `table_paths`) inside `table`.
fn table_at<'a>(table: &'a mut toml::Table, path: &str) -> &'a mut toml::Table {
    if path.is_empty() {
        return table;
    }
    let mut current = table;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, index)) => (
                key,
                Some(index.trim_end_matches(']').parse::<usize>().expect("index")),
            ),
            None => (part, None),
        };
        let value = current.get_mut(key).expect("path exists");
        let value = match index {
            Some(i) => value
                .as_array_mut()
                .expect("array")
                .get_mut(i)
                .expect("item"),
            None => value,
        };
        current = value.as_table_mut().expect("table");
    }
    current
}

#[test]
fn unknown_key_in_any_table_of_any_shipped_config_is_rejected_and_named() {
    for path in shipped_configs() {
        let document: toml::Table = toml::from_str(&read(&path)).expect("valid TOML");
        let mut tables = Vec::new();
        table_paths(&document, "", &mut tables);
        assert!(
            tables.len() >= 3,
            "{}: expected [[preseed]] and [upload]",
            path.display()
        );
        for table in tables {
            let mut mutated = document.clone();
            table_at(&mut mutated, &table).insert(BOGUS_KEY.to_owned(), toml::Value::Boolean(true));
            let text = toml::to_string(&mutated).expect("serialisable");
            let expected_key = if table.is_empty() {
                BOGUS_KEY.to_owned()
            } else {
                format!("{table}.{BOGUS_KEY}")
            };
            match Config::parse(&text, &path) {
                Ok(_) => panic!(
                    "{}: unknown key accepted in table `{table}`",
                    path.display()
                ),
                Err(e @ ConfigError::Invalid { .. }) => {
                    assert_eq!(e.key(), Some(expected_key.as_str()), "{e}");
                    assert!(e.position().is_some(), "{e}");
                    assert!(e.to_string().contains("unknown field"), "{e}");
                    assert_eq!(DaemonError::Config(e).exit_code(), EX_CONFIG);
                }
                Err(e) => panic!("{}: wrong kind of error: {e}", path.display()),
            }
        }
    }
}

/// Every table the parser accepts and its keys, derived from the parser itself (the
/// "expected one of" list of an unknown key): the top level, and each top-level key that is
/// a table (`[name]`) or an array of tables (`[[name]]`), with its header.
fn every_table_and_its_keys() -> Vec<(String, Vec<String>)> {
    let top = accepted_keys("");
    let mut tables = vec![(String::new(), top.clone())];
    for key in top {
        for header in [format!("[[{key}]]"), format!("[{key}]")] {
            let text = format!("{header}\n{BOGUS_KEY} = 1\n");
            let Err(error) = Config::parse(&text, Path::new("t.toml")) else {
                continue;
            };
            let shown = error.to_string();
            if !shown.contains(&format!("unknown field `{BOGUS_KEY}`")) {
                continue;
            }
            if let Some((_, expected)) = shown.split_once("expected one of ") {
                let keys = expected
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect();
                tables.push((header, keys));
                break;
            }
        }
    }
    tables
}

/// The part of `text` from the line `start` up to the next line starting with `end`.
fn section<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(&format!("\n{start}\n"))
        .unwrap_or_else(|| panic!("no section {start:?}"));
    let rest = &text[from + start.len() + 2..];
    let to = rest.find(&format!("\n{end}")).unwrap_or(rest.len());
    &rest[..to]
}

#[test]
fn every_key_the_parser_accepts_is_in_the_shipped_config_and_the_man_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = read(&root.join("config/tftpd.toml"));
    let man = read(&root.join("packaging/tftpd.toml.5"));
    let tables = every_table_and_its_keys();
    assert!(
        tables.iter().any(|(h, _)| h == "[[preseed]]")
            && tables.iter().any(|(h, _)| h == "[upload]"),
        "{tables:?}"
    );
    for (header, keys) in &tables {
        let man_section = if header.is_empty() {
            section(&man, ".SH TOP-LEVEL KEYS", ".SH ")
        } else {
            section(&man, &format!(".SH {}", header.to_uppercase()), ".SH ")
        };
        for key in keys {
            if tables
                .iter()
                .any(|(h, _)| h.trim_matches(['[', ']']) == key)
            {
                // A table: documented by its own section.
                continue;
            }
            let in_config = shipped.lines().any(|line| {
                line.trim_start_matches('#')
                    .starts_with(&format!("{key} = "))
            });
            assert!(
                in_config,
                "config/tftpd.toml does not show `{key}` of {header:?}"
            );
            let roff = key.replace('-', "\\-");
            let in_man = man_section.lines().any(|line| {
                line.strip_prefix(".BR ")
                    .or_else(|| line.strip_prefix(".B "))
                    .is_some_and(|rest| rest.split(' ').next() == Some(roff.as_str()))
            });
            assert!(
                in_man,
                "tftpd.toml(5) does not describe `{key}` of {header:?}"
            );
        }
    }
}
