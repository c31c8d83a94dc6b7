//! The endpoint's tallies since start-up, for the metrics and `tftpd ctl status`: requests
//! by operation and result, transfers ended by operation and outcome, bytes and
//! retransmissions by operation, stray datagrams. They only ever grow (Prometheus
//! counters never reset while the process lives); no label names a client or a file.

use crate::proto::ErrorCode;
use crate::transfer::{Direction, Outcome, TransferReport};

/// What became of a request, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// A transfer started.
    Accepted,
    /// ERROR 1: no such file.
    NotFound,
    /// ERROR 2 or 6: the name, the upload policy or an existing file forbids it.
    AccessDenied,
    /// ERROR 3: an upload over a size limit.
    DiskFull,
    /// Dropped unanswered for want of room (the client sends it again).
    Busy,
    /// A malformed request left unanswered by the rate limit on answers to noise.
    RateLimited,
    /// A malformed request, a bad name, mode or option, answered with an ERROR.
    BadRequest,
    /// Accepted (and counted so), but the server could not open its transfer socket.
    ServerError,
}

impl RequestResult {
    /// Every result, in the order of [`Tallies::requests`].
    pub const ALL: [RequestResult; 8] = [
        RequestResult::Accepted,
        RequestResult::NotFound,
        RequestResult::AccessDenied,
        RequestResult::DiskFull,
        RequestResult::Busy,
        RequestResult::RateLimited,
        RequestResult::BadRequest,
        RequestResult::ServerError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestResult::Accepted => "accepted",
            RequestResult::NotFound => "not_found",
            RequestResult::AccessDenied => "access_denied",
            RequestResult::DiskFull => "disk_full",
            RequestResult::Busy => "busy",
            RequestResult::RateLimited => "rate_limited",
            RequestResult::BadRequest => "bad_request",
            RequestResult::ServerError => "server_error",
        }
    }

    /// The result of a request refused with `code`.
    pub fn of_refusal(code: ErrorCode) -> RequestResult {
        match code {
            ErrorCode::FileNotFound => RequestResult::NotFound,
            ErrorCode::AccessViolation | ErrorCode::FileExists => RequestResult::AccessDenied,
            ErrorCode::DiskFull => RequestResult::DiskFull,
            ErrorCode::NotDefined
            | ErrorCode::IllegalOperation
            | ErrorCode::UnknownTransferId
            | ErrorCode::NoSuchUser
            | ErrorCode::OptionNegotiation => RequestResult::BadRequest,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The outcome labels of ended transfers, in the order of [`Tallies::transfers`]:
/// [`Outcome::as_str`] with `_` for `-`.
pub const OUTCOMES: [&str; 8] = [
    "completed",
    "timed_out",
    "unanswered",
    "superseded",
    "evicted",
    "probe",
    "peer_error",
    "refused",
];

fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Completed => 0,
        Outcome::TimedOut => 1,
        Outcome::Unanswered => 2,
        Outcome::Superseded => 3,
        Outcome::Evicted => 4,
        Outcome::Probe => 5,
        Outcome::PeerError { .. } => 6,
        Outcome::Refused { .. } => 7,
    }
}

/// The operations, in the order of the tallies' first index.
pub const OPS: [Direction; 2] = [Direction::Read, Direction::Write];

fn op_index(op: Direction) -> usize {
    match op {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// Counts since start-up (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Requests by operation ([`OPS`]) and result ([`RequestResult::ALL`]).
    pub requests: [[u64; RequestResult::ALL.len()]; 2],
    /// Transfers ended by operation and outcome ([`OUTCOMES`]).
    pub transfers: [[u64; OUTCOMES.len()]; 2],
    /// File bytes delivered by ended transfers, by operation.
    pub bytes: [u64; 2],
    /// Packets sent again by ended transfers, by operation.
    pub retransmits: [u64; 2],
    /// Datagrams on a listening socket that were no request (garbage, stray DATA/ACK).
    pub stray: u64,
}

impl Tallies {
    /// Counts a request of `op` with `result`.
    pub fn request(&mut self, op: Direction, result: RequestResult) {
        self.requests[op_index(op)][result.index()] += 1;
    }

    /// Counts an ended transfer.
    pub fn ended(&mut self, report: &TransferReport) {
        let op = op_index(report.direction);
        self.transfers[op][outcome_index(&report.outcome)] += 1;
        self.bytes[op] += report.bytes;
        self.retransmits[op] += report.retransmits;
    }

    /// Requests of `op` with `result` so far.
    pub fn requests_of(&self, op: Direction, result: RequestResult) -> u64 {
        self.requests[op_index(op)][result.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_the_outcomes_words() {
        let outcomes = [
            Outcome::Completed,
            Outcome::TimedOut,
            Outcome::Unanswered,
            Outcome::Superseded,
            Outcome::Evicted,
            Outcome::Probe,
            Outcome::PeerError {
                code: ErrorCode::NotDefined,
                message: String::new(),
            },
            Outcome::Refused {
                code: ErrorCode::NotDefined,
                message: String::new(),
            },
        ];
        for outcome in &outcomes {
            let label = OUTCOMES[outcome_index(outcome)];
            assert_eq!(label, outcome.as_str().replace('-', "_"));
        }
        for (i, result) in RequestResult::ALL.iter().enumerate() {
            assert_eq!(result.index(), i);
        }
    }
}
