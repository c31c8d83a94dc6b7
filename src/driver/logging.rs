//! What the driver writes to the log for the endpoint's events: each finished transfer
//! with journal fields, each refusal, and an upload the store would not take.

use std::net::SocketAddr;

use crate::endpoint::RefusalRecord;
use crate::store::{Store, UploadPermit};
use crate::transfer::{Outcome, TransferReport};

pub(super) fn commit_upload(
    store: &Store,
    permit: UploadPermit,
    data: Vec<u8>,
    client: SocketAddr,
) {
    let len = data.len();
    if let Err(refusal) = store.commit_upload(permit, data) {
        log::warn!(
            "upload from {client} of {len} bytes arrived whole but was not stored: {refusal}"
        );
    }
}

/// Logs a refusal: noise (within the endpoint's rate limit) as a warning, a refused
/// request with journal fields.
pub(super) fn log_refusal(record: &RefusalRecord) {
    let RefusalRecord {
        client,
        refusal,
        suppressed,
    } = record;
    if refusal.noise {
        log::warn!(
            "{client}: {} (answered with error {}){}",
            refusal.message,
            refusal.code.as_u16(),
            if *suppressed > 0 {
                format!("; {suppressed} similar datagrams not logged")
            } else {
                String::new()
            }
        );
        return;
    }
    let (op, file) = refusal
        .request
        .as_ref()
        .map_or(("request", ""), |(direction, file)| {
            (direction.as_str(), file.as_str())
        });
    log::info!(
        tftp_peer = client.to_string(),
        tftp_op = op,
        tftp_file = file,
        tftp_outcome = "refused",
        tftp_error = refusal.code.as_u16();
        "{client} {op} {file:?} refused: {}",
        refusal.message
    );
}

/// Logs one finished transfer: a readable message, and journal fields for `journalctl`.
pub(super) fn log_report(report: &TransferReport, client: SocketAddr) {
    let level = match report.outcome {
        Outcome::Completed | Outcome::Probe | Outcome::Superseded => log::Level::Info,
        // What a flood of forged requests leaves behind: not worth a line each.
        Outcome::Unanswered | Outcome::Evicted => log::Level::Debug,
        Outcome::TimedOut | Outcome::PeerError { .. } | Outcome::Refused { .. } => log::Level::Warn,
    };
    let millis = report.duration.as_millis() as u64;
    log::log!(
        level,
        tftp_peer = client.to_string(),
        tftp_op = report.direction.as_str(),
        tftp_file = report.filename.as_str(),
        tftp_mode = report.mode.as_str(),
        tftp_bytes = report.bytes,
        tftp_blocks = report.blocks,
        tftp_blksize = report.options.blksize,
        tftp_windowsize = report.options.windowsize,
        tftp_retransmits = report.retransmits,
        tftp_duration_ms = millis,
        tftp_outcome = report.outcome.as_str();
        "{client} {} {:?}: {} after {} bytes in {millis} ms (blksize {}, windowsize {}, {} retransmits)",
        report.direction.as_str(),
        report.filename,
        report.outcome,
        report.bytes,
        report.options.blksize,
        report.options.windowsize,
        report.retransmits
    );
}
