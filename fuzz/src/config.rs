//! A validated [`Config`] written back as TOML, for the `config` target's round trip: every
//! key explicit, sizes as strings of bytes (a `u64` may not fit a TOML integer), durations
//! in milliseconds or seconds, paths absolute.

use memtftpd::config::Config;

/// `config` as TOML text that [`Config::parse`] (with the same origin) reads back as it:
/// the daemon's own `--print-config` ([`Config::to_toml`]), so the fuzzer checks the
/// writer operators use.
pub fn to_toml(config: &Config) -> String {
    config.to_toml()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use memtftpd::store::OnError;

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
