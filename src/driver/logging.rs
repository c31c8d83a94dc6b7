//! What the driver writes to the log for the endpoint's events: each finished transfer
//! with journal fields (and for a spooled upload, the path it was written to), and each
//! refusal.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;

use crate::endpoint::{Applied, RefusalRecord};
use crate::logs::ids;
use crate::transfer::{Outcome, TransferReport};

/// Logs a refusal: noise (within the endpoint's rate limit) as a warning, a refused
/// request with journal fields.
pub(super) fn log_refusal(record: &RefusalRecord) {
    let RefusalRecord {
        client,
        refusal,
        suppressed,
        table,
    } = record;
    let more = if *suppressed > 0 {
        format!(" ({suppressed} more refusals not logged before this one)")
    } else {
        String::new()
    };
    if refusal.noise {
        log::warn!(
            message_id = ids::REFUSED,
            tftp_peer:% = client,
            tftp_error = refusal.code.as_u16();
            "{client}: {} (answered with error {}){more}",
            refusal.message,
            refusal.code.as_u16(),
        );
        return;
    }
    let (op, file) = refusal
        .request
        .as_ref()
        .map_or(("request", Cow::Borrowed("")), |(direction, file)| {
            (direction.as_str(), shown_name(file))
        });
    let table = table.as_deref().unwrap_or("top");
    log::info!(
        message_id = ids::REFUSED,
        tftp_peer:% = client,
        tftp_op = op,
        tftp_file = file.as_ref(),
        tftp_outcome = "refused",
        tftp_error = refusal.code.as_u16(),
        tftp_client_table = table;
        "{client} {op} {file:?} refused: {} (client table {table}){more}",
        refusal.message
    );
}

/// Logs one finished transfer: a readable message, and journal fields for `journalctl`;
/// an upload written to the spool also names its path (`TFTP_SPOOL_PATH`).
pub(super) fn log_report(
    report: &TransferReport,
    client: SocketAddr,
    applied: &Applied,
    spooled: Option<&Path>,
) {
    let level = match report.outcome {
        Outcome::Completed | Outcome::Probe | Outcome::Superseded => log::Level::Info,
        // What a flood of forged requests leaves behind: not worth a line each.
        Outcome::Unanswered | Outcome::Evicted => log::Level::Debug,
        Outcome::TimedOut | Outcome::PeerError { .. } | Outcome::Refused { .. } => log::Level::Warn,
    };
    let millis = report.duration.as_millis() as u64;
    let file = shown_name(&report.filename);
    let rewritten = applied.rewritten.as_deref().map(shown_name);
    let stored = applied.stored.as_deref().unwrap_or("");
    let view = applied.view.as_deref().unwrap_or("");
    let table = if applied.table.is_empty() {
        "top"
    } else {
        applied.table.as_str()
    };
    let decided = match (&rewritten, view) {
        (None, "") => format!("client table {table}"),
        (Some(name), "") => format!("client table {table}, rewritten to {name:?}"),
        (None, view) => format!("client table {table}, view {view:?}, served {stored:?}"),
        (Some(name), view) => {
            format!("client table {table}, rewritten to {name:?}, view {view:?}, served {stored:?}")
        }
    };
    // One line either way; the spool's field only when there is a path to name.
    macro_rules! report {
        ($($spool:tt)*) => {
            log::log!(
                level,
                message_id = ids::TRANSFER_ENDED,
                tftp_peer:% = client,
                tftp_op = report.direction.as_str(),
                tftp_file = file.as_ref(),
                tftp_mode = report.mode.as_str(),
                tftp_bytes = report.bytes,
                tftp_blocks = report.blocks,
                tftp_blksize = report.options.blksize,
                tftp_windowsize = report.options.windowsize,
                tftp_retransmits = report.retransmits,
                tftp_duration_ms = millis,
                tftp_outcome = report.outcome.as_str(),
                tftp_client_table = table,
                tftp_file_rewritten = rewritten.as_deref().unwrap_or(file.as_ref()),
                tftp_view = if view.is_empty() { "/" } else { view },
                tftp_stored_name = shown_name(stored).as_ref()
                $($spool)*;
                "{client} {} {:?}: {} after {} bytes in {millis} ms (blksize {}, windowsize {}, \
                 {} retransmits; {decided}){}",
                report.direction.as_str(),
                file,
                report.outcome,
                report.bytes,
                report.options.blksize,
                report.options.windowsize,
                report.retransmits,
                spooled.map_or(String::new(), |p| format!(", stored as {}", p.display()))
            )
        };
    }
    match spooled {
        Some(path) => report!(, tftp_spool_path:% = path.display()),
        None => report!(),
    }
}

/// The most bytes of a file name a log line carries.
const LOGGED_NAME_MAX: usize = 256;

/// A file name as the log shows it: whole up to [`LOGGED_NAME_MAX`] bytes, else cut there
/// (at a character boundary) with its length, so a client's 64 KB name costs the journal
/// a few hundred bytes.
fn shown_name(name: &str) -> Cow<'_, str> {
    if name.len() <= LOGGED_NAME_MAX {
        return Cow::Borrowed(name);
    }
    let mut end = LOGGED_NAME_MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}... ({} bytes)", &name[..end], name.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_logged_cut_with_their_length() {
        assert_eq!(shown_name("pxelinux.0"), "pxelinux.0");
        let exact = "a".repeat(LOGGED_NAME_MAX);
        assert_eq!(shown_name(&exact), exact.as_str());
        let long = "b".repeat(60_000);
        let shown = shown_name(&long);
        assert!(shown.len() < LOGGED_NAME_MAX + 30, "{}", shown.len());
        assert!(shown.ends_with("... (60000 bytes)"));
        // Never cut inside a character.
        let wide = "é".repeat(200);
        assert!(shown_name(&wide).starts_with(&"é".repeat(128)));
    }
}
