//! Requests and datagrams turned away: what the client is told, what the log is told,
//! and the rate limit that keeps a flood of noise cheap to answer and out of the journal.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::proto::ErrorCode;
use crate::transfer::Direction;

/// A request (or datagram) turned away, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code to send.
    pub code: ErrorCode,
    /// The message to send and log.
    pub message: String,
    /// What the client asked for, if it was a request: the direction and the file name.
    pub request: Option<(Direction, String)>,
    /// True for datagrams that are not requests at all (garbage, stray DATA/ACK): they
    /// are answered and logged only within a rate limit.
    pub noise: bool,
}

impl Refusal {
    /// A datagram that is no request.
    pub fn noise(code: ErrorCode, message: String) -> Refusal {
        Refusal {
            code,
            message,
            request: None,
            noise: true,
        }
    }
}

/// A refusal the endpoint answered, for the driver to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    /// The client, its address made canonical.
    pub client: SocketAddr,
    /// What it was refused and why.
    pub refusal: Refusal,
    /// Noise not answered or logged (over the rate limit) since the last noise logged.
    pub suppressed: u64,
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
