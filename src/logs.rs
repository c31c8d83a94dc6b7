//! Where log records go and how they look: the journal (each record's key-values as
//! journal fields, `tftp_file` becoming `TFTP_FILE`), text lines on stderr, or one JSON
//! object per line on stderr; picked by `log-format` (`auto`: the journal when stderr is
//! connected to it, as systemd sets up for a service, text otherwise).
//!
//! Every kind of event the operator may need explained carries a stable `message_id`
//! ([`ids`]): the journal's `MESSAGE_ID=`, which `journalctl -x` looks up in the catalog
//! memtftpd installs (`packaging/memtftpd.catalog`, in `/usr/lib/systemd/catalog/`).

use std::fmt;
use std::io::Write;
use std::time::SystemTime;

use crate::timestamp::{rfc3339, write_rfc3339};

/// The `MESSAGE_ID=` of each kind of event: 128-bit identifiers that never change (the
/// catalog and people's `journalctl MESSAGE_ID=...` filters depend on them).
pub mod ids {
    /// The daemon is serving.
    pub const STARTED: &str = "e71d284ebe5b4d6f921924d58ac47039";
    /// The daemon stopped as asked.
    pub const STOPPED: &str = "a83bbf5cf0cc41e19886faf4bf3efe17";
    /// A transfer ended (any outcome; `TFTP_OUTCOME=` says which).
    pub const TRANSFER_ENDED: &str = "0280307ea3b6466cb5e4e36b809f3ea9";
    /// A request was refused with an ERROR.
    pub const REFUSED: &str = "984c95e1653540ba99dcf5459b119df8";
    /// A preseed file or source was skipped, or a name provided twice.
    pub const PRESEED_SKIPPED: &str = "41eccee601104517816d1d5176453f4c";
    /// A reload took effect.
    pub const RELOADED: &str = "37bc269e9c2f4198afae9ef2699a0819";
    /// A reload was refused; the running configuration stays.
    pub const RELOAD_FAILED: &str = "7b45bf21b0cd49ad96368a0e0266f7db";
    /// An upload arrived whole but the store would not take it.
    pub const UPLOAD_REJECTED: &str = "d727346526ba43ab9bc3ba42fc6f30fd";
    /// An upload was dropped through the control socket.
    pub const UPLOAD_DROPPED: &str = "aa87830cbf5a420dab23ee90a648ffc0";
    /// A caller of the control socket was refused.
    pub const CONTROL_REFUSED: &str = "a7e80eb29f444c87b1ec8410d3b9cd1f";

    /// Every identifier with its constant's name, for the catalog's test.
    pub const ALL: [(&str, &str); 10] = [
        ("STARTED", STARTED),
        ("STOPPED", STOPPED),
        ("TRANSFER_ENDED", TRANSFER_ENDED),
        ("REFUSED", REFUSED),
        ("PRESEED_SKIPPED", PRESEED_SKIPPED),
        ("RELOADED", RELOADED),
        ("RELOAD_FAILED", RELOAD_FAILED),
        ("UPLOAD_REJECTED", UPLOAD_REJECTED),
        ("UPLOAD_DROPPED", UPLOAD_DROPPED),
        ("CONTROL_REFUSED", CONTROL_REFUSED),
    ];
}

/// The `log-format` key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// The journal when stderr is connected to it, text otherwise.
    #[default]
    Auto,
    /// The journal's native protocol, with structured fields.
    Journal,
    /// `[TIMESTAMP] LEVEL message` on stderr (the timestamp when not under the journal,
    /// which stamps lines itself); the key-values only in the journal and JSON.
    Text,
    /// One JSON object per line on stderr.
    Json,
}

impl LogFormat {
    /// The key's value: `auto`, `journal`, `text`, `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Journal => "journal",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format named `name`.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        [
            LogFormat::Auto,
            LogFormat::Journal,
            LogFormat::Text,
            LogFormat::Json,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// Installs the logger for `format` (once per process; later calls only set the level)
/// and sets the most verbose `level` logged.
pub fn init(format: LogFormat, level: log::LevelFilter) {
    let under_journal = systemd_journal_logger::connected_to_journal();
    let journal = matches!(format, LogFormat::Journal)
        || (matches!(format, LogFormat::Auto) && under_journal);
    let installed = journal
        && systemd_journal_logger::JournalLog::new()
            .map(|journal| journal.with_syslog_identifier("tftpd".to_owned()))
            .and_then(|journal| journal.install().map_err(std::io::Error::other))
            .is_ok();
    if !installed {
        let logger: Box<dyn log::Log> = match format {
            LogFormat::Json => Box::new(JsonLog),
            _ => Box::new(TextLog {
                timestamps: !under_journal,
            }),
        };
        let _ = log::set_boxed_logger(logger);
    }
    log::set_max_level(level);
}

/// One line per record on stderr: `[TIMESTAMP ]LEVEL message`, for a person reading it
/// (the message says what happened in words: peer, file, outcome, sizes); the key-values
/// go to the journal and into JSON lines, for programs. Control characters are escaped,
/// so a file name sent by a client cannot forge a log line.
#[derive(Debug)]
struct TextLog {
    timestamps: bool,
}

impl log::Log for TextLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let time = self.timestamps.then(SystemTime::now);
        // One buffer per thread, reused: a line costs no allocation once it has grown.
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let write = |line: &mut String| {
            line.clear();
            write_text_line(line, record, time);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        };
        // A message whose arguments log in turn (the buffer is taken), or a line logged
        // while the thread ends (the buffer is gone), gets a buffer of its own.
        let written = LINE
            .try_with(|cell| {
                cell.try_borrow_mut()
                    .map(|mut line| write(&mut line))
                    .is_ok()
            })
            .unwrap_or(false);
        if !written {
            write(&mut String::new());
        }
    }

    fn flush(&self) {}
}

/// Appends the text line of `record` (with its newline) to `line`.
fn write_text_line(line: &mut String, record: &log::Record<'_>, time: Option<SystemTime>) {
    if let Some(time) = time {
        write_rfc3339(line, time);
        line.push(' ');
    }
    let level = record.level().as_str();
    line.push_str(level);
    line.push_str(&"      "[level.len()..]);
    // The message is written as it is, then checked in one pass: escaped again only when
    // it holds something other than printable ASCII.
    let start = line.len();
    let _ = fmt::write(line, *record.args());
    if !is_printable_ascii(&line[start..]) {
        let message = line.split_off(start);
        push_escaped(line, &message);
    }
    line.push('\n');
}

fn is_printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Appends `text` with control characters (newlines included) escaped.
fn push_escaped(line: &mut String, text: &str) {
    // Printable ASCII, the usual case, is checked byte by byte; anything else (C0, DEL,
    // and the C1 controls beyond ASCII) goes character by character.
    if is_printable_ascii(text) {
        return line.push_str(text);
    }
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
}

/// One JSON object per record on stderr, with the journal's field names in lower case:
/// `timestamp`, `priority` (syslog's number), `message`, `syslog_identifier`, and each
/// key-value (`message_id`, `tftp_peer`, `tftp_file`, `tftp_bytes`, ...; numbers as
/// numbers).
#[derive(Debug)]
struct JsonLog;

impl log::Log for JsonLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = json_line(record, SystemTime::now());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The syslog priority of a level, as the journal's `PRIORITY=`.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

fn json_line(record: &log::Record<'_>, time: SystemTime) -> String {
    let mut object = serde_json::Map::new();
    object.insert("timestamp".into(), rfc3339(time).into());
    object.insert("priority".into(), priority(record.level()).into());
    object.insert("message".into(), record.args().to_string().into());
    object.insert("syslog_identifier".into(), "tftpd".into());
    struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            let value = match (value.to_u64(), value.to_i64()) {
                (Some(n), _) => n.into(),
                (None, Some(n)) => n.into(),
                (None, None) => value.to_string().into(),
            };
            self.0.insert(key.as_str().to_ascii_lowercase(), value);
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Fields(&mut object));
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_message_whose_argument_logs_in_turn_is_written_not_a_panic() {
        struct Logs<'a>(&'a TextLog);
        impl fmt::Display for Logs<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let inner = format_args!("the inner line");
                log::Log::log(self.0, &log::Record::builder().args(inner).build());
                f.write_str("the outer line")
            }
        }
        // Info lines are enabled (the logger reads the global level).
        if log::max_level() < log::LevelFilter::Info {
            log::set_max_level(log::LevelFilter::Info);
        }
        let text = TextLog { timestamps: false };
        let outer = Logs(&text);
        // The buffer is taken while the outer line is written: the inner one gets its own.
        log::Log::log(
            &text,
            &log::Record::builder().args(format_args!("{outer}")).build(),
        );
    }

    #[test]
    fn stderr_lines_escape_control_characters() {
        let mut line = String::new();
        push_escaped(&mut line, "evil\nINFO forged\tline\u{7}");
        assert_eq!(line, "evil\\nINFO forged\\tline\\u{7}");
        line.clear();
        push_escaped(&mut line, "caf\u{e9} \u{85}next \u{7f}");
        assert_eq!(line, "caf\u{e9} \\u{85}next \\u{7f}");
    }

    #[test]
    fn text_lines_carry_a_timestamp_and_the_message_and_json_lines_the_journal_fields() {
        let time = UNIX_EPOCH + Duration::from_secs(1_796_135_126);
        let kvs: [(&str, log::kv::Value<'_>); 3] = [
            ("message_id", ids::REFUSED.into()),
            ("tftp_file", "a\nb".into()),
            ("tftp_bytes", 42u64.into()),
        ];
        let args = format_args!("refused");
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .args(args)
            .key_values(&kvs)
            .build();
        let mut line = String::new();
        write_text_line(&mut line, &record, Some(time));
        assert_eq!(line, "2026-12-01T14:25:26.000Z WARN  refused\n");
        let forged = format_args!("a\nINFO  forged");
        let forged = log::Record::builder()
            .level(log::Level::Info)
            .args(forged)
            .build();
        line.clear();
        write_text_line(&mut line, &forged, None);
        assert_eq!(line, "INFO  a\\nINFO  forged\n");
        let json: serde_json::Value = serde_json::from_str(&json_line(&record, time)).unwrap();
        assert_eq!(json["timestamp"], "2026-12-01T14:25:26.000Z");
        assert_eq!(json["priority"], 4);
        assert_eq!(json["message"], "refused");
        assert_eq!(json["message_id"], ids::REFUSED);
        assert_eq!(json["tftp_file"], "a\nb");
        assert_eq!(json["tftp_bytes"], 42);
    }

    #[test]
    fn the_catalog_explains_every_message_id_and_no_other() {
        let catalog = include_str!("../packaging/memtftpd.catalog");
        let listed: Vec<&str> = (catalog.lines())
            .filter_map(|l| l.strip_prefix("-- "))
            .collect();
        for (name, id) in ids::ALL {
            assert!(listed.contains(&id), "{name} ({id}) is not in the catalog");
            let entry = catalog.split(&format!("-- {id}\n")).nth(1).unwrap();
            assert!(entry.starts_with("Subject: "), "{name} has no Subject");
        }
        assert_eq!(
            listed.len(),
            ids::ALL.len(),
            "the catalog has ids the code lacks"
        );
        for id in listed {
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn every_format_reads_back_from_its_name() {
        for format in ["auto", "journal", "text", "json"] {
            assert_eq!(
                LogFormat::from_name(format).map(LogFormat::as_str),
                Some(format)
            );
        }
        assert_eq!(LogFormat::from_name("syslog"), None);
    }
}
