//! What to do with a datagram that arrived on a listening socket: start a read or a
//! write, or answer with an ERROR. Sans-IO: the driver hands in the bytes, the store and
//! the admission verdict, and carries out the decision.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::name::normalize_name;
use crate::proto::{ErrorCode, Packet, ParseError};
use crate::store::{Store, UploadPermit};
use crate::transfer::{ReadTransfer, TransferConfig, WriteTransfer};

/// Whether the server can take one more transfer from this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Room for it.
    Open,
    /// `max-transfers` reached.
    ServerFull,
    /// `max-transfers-per-client` reached for this client's address.
    ClientFull,
    /// The server is shutting down.
    Stopping,
}

/// The driver's next step for one datagram.
#[derive(Debug)]
pub enum Decision {
    /// Serve a file.
    Read(ReadTransfer),
    /// Receive a file; the permit is presented to the store when it is complete.
    Write(WriteTransfer, UploadPermit),
    /// Answer with an ERROR and log why.
    Refuse(Refusal),
}

/// A request (or datagram) turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code to send.
    pub code: ErrorCode,
    /// The message to send and log.
    pub message: String,
    /// What the client asked for, if it was a request: `("read" | "write", file name)`.
    pub request: Option<(&'static str, String)>,
    /// True for datagrams that are not requests at all (garbage, stray DATA/ACK): they
    /// are answered and logged only within a rate limit.
    pub noise: bool,
}

impl Refusal {
    fn noise(code: ErrorCode, message: String) -> Decision {
        Decision::Refuse(Refusal {
            code,
            message,
            request: None,
            noise: true,
        })
    }
}

/// Decides what a datagram from `peer` on a listening socket starts.
pub fn decide(
    now: Instant,
    peer: SocketAddr,
    datagram: &[u8],
    store: &Store,
    config: &TransferConfig,
    admission: Admission,
) -> Decision {
    let (op, request) = match Packet::parse(datagram) {
        Ok(Packet::Rrq(request)) => ("read", request),
        Ok(Packet::Wrq(request)) => ("write", request),
        Ok(_) => {
            return Refusal::noise(
                ErrorCode::UnknownTransferId,
                "no transfer here: send requests to this port, data to the transfer's own".into(),
            );
        }
        Err(error @ ParseError::UnsupportedMode) => {
            // A request all the same: log it as one.
            let filename = datagram
                .get(2..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(|name| String::from_utf8_lossy(name).into_owned());
            return Decision::Refuse(Refusal {
                code: error.error_code(),
                message: error.to_string(),
                request: filename.map(|name| (request_op(datagram), name)),
                noise: false,
            });
        }
        Err(error) => {
            return Refusal::noise(error.error_code(), format!("malformed packet: {error}"));
        }
    };
    let refuse = |code: ErrorCode, message: String| {
        Decision::Refuse(Refusal {
            code,
            message,
            request: Some((op, request.filename.to_owned())),
            noise: false,
        })
    };
    let busy = match admission {
        Admission::Open => None,
        Admission::ServerFull => Some("server busy: too many transfers, try again later"),
        Admission::ClientFull => Some("server busy: too many transfers from your address"),
        Admission::Stopping => Some("server shutting down, try again later"),
    };
    if let Some(message) = busy {
        return refuse(ErrorCode::NotDefined, message.to_owned());
    }
    let name = match normalize_name(request.filename) {
        Ok(name) => name,
        Err(error) => {
            return refuse(error.error_code(), error.to_string());
        }
    };
    if op == "read" {
        match store.get(&name) {
            Some(file) => {
                let data = file.data().clone();
                Decision::Read(ReadTransfer::new(now, peer, &request, data, config))
            }
            None => refuse(ErrorCode::FileNotFound, format!("file not found: {name}")),
        }
    } else {
        match store.check_upload(&name, request.options.tsize) {
            Ok(permit) => {
                let limit = permit.max_size();
                let transfer = WriteTransfer::new(now, peer, &request, limit, config);
                Decision::Write(transfer, permit)
            }
            Err(refusal) => refuse(refusal.error_code(), refusal.to_string()),
        }
    }
}

fn request_op(datagram: &[u8]) -> &'static str {
    if datagram.get(1) == Some(&2) {
        "write"
    } else {
        "read"
    }
}

/// A token bucket that bounds how often noise is answered and logged, so a flood of
/// garbage costs little and cannot fill the journal.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
    /// Events refused since the last one allowed.
    pub suppressed: u64,
}

impl RateLimit {
    /// Allows `per_second` events on average, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
            suppressed: 0,
        }
    }

    /// True if an event at `now` is within the limit.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_allows_a_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(10, 3);
        assert!((0..3).all(|_| limit.allow(t0)));
        assert!(!limit.allow(t0));
        assert!(!limit.allow(t0 + Duration::from_millis(50)));
        assert!(limit.allow(t0 + Duration::from_millis(150)));
        assert_eq!(limit.suppressed, 2);
    }
}
