//! Requests and datagrams turned away: what the client is told, what the log is told,
//! and the rate limit that keeps a flood of noise cheap to answer and out of the journal.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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
    /// The client table that decided for a request (see
    /// [`Policy::label`](super::Policy::label)); `None` for what was no request.
    pub table: Option<String>,
    /// Refusals not logged (over the log's limits) since the last one logged.
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

/// Refusals logged per second, overall and from one client, and at once (the bursts).
const LOG_PER_SECOND: u32 = 50;
const LOG_BURST: u32 = 100;
const LOG_PER_CLIENT_PER_SECOND: u32 = 2;
const LOG_PER_CLIENT_BURST: u32 = 10;
/// Clients whose refusals are limited one by one; past that the count starts afresh (a
/// flood from forged addresses cannot grow it).
const LOG_CLIENTS: usize = 4096;
/// How soon after the last refusal logged the count of those not logged is.
pub const SUPPRESSED_SUMMARY_AFTER: Duration = Duration::from_secs(10);

/// Which refusals reach the log: within a rate overall and one per client (so a flood of
/// the same request from one client is a few lines, and a flood from many is at most
/// about a hundred a second). The refused are counted exactly elsewhere; this counts
/// only what it kept out of the log, for a line that says so.
#[derive(Debug)]
pub struct RefusalLog {
    overall: RateLimit,
    per_client: HashMap<IpAddr, RateLimit>,
    /// Refusals not logged since the last one logged or summarised.
    pub suppressed: u64,
    /// When to log the count of the suppressed if nothing else is logged first.
    pub summary_due: Option<Instant>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            overall: RateLimit::new(LOG_PER_SECOND, LOG_BURST),
            per_client: HashMap::new(),
            suppressed: 0,
            summary_due: None,
        }
    }
}

impl RefusalLog {
    /// Whether a refusal of `client` at `now` is logged; if so, how many were not since.
    pub fn admit(&mut self, now: Instant, client: IpAddr) -> Option<u64> {
        if self.per_client.len() >= LOG_CLIENTS && !self.per_client.contains_key(&client) {
            self.per_client.clear();
        }
        let own = self
            .per_client
            .entry(client)
            .or_insert_with(|| RateLimit::new(LOG_PER_CLIENT_PER_SECOND, LOG_PER_CLIENT_BURST));
        if own.allow(now) && self.overall.allow(now) {
            self.summary_due = None;
            return Some(std::mem::take(&mut self.suppressed));
        }
        self.suppressed += 1;
        self.summary_due
            .get_or_insert(now + SUPPRESSED_SUMMARY_AFTER);
        None
    }

    /// The count of refusals not logged, once their summary is due.
    pub fn take_summary(&mut self, now: Instant) -> Option<u64> {
        if self.summary_due.is_some_and(|due| due <= now) && self.suppressed > 0 {
            self.summary_due = None;
            return Some(std::mem::take(&mut self.suppressed));
        }
        None
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

    #[test]
    fn one_client_flooding_gets_a_few_lines_and_many_clients_a_bounded_rate() {
        let t0 = Instant::now();
        let mut log = RefusalLog::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let logged = (0..1000).filter(|_| log.admit(t0, one).is_some()).count();
        assert_eq!(logged, LOG_PER_CLIENT_BURST as usize);
        assert_eq!(log.suppressed, 990);
        // Many clients in one second: the overall burst and rate bound it.
        let mut log = RefusalLog::default();
        let (mut logged, mut told) = (0, 0);
        for n in 0..10_000u32 {
            let at = t0 + Duration::from_micros(u64::from(n) * 100);
            if let Some(suppressed) = log.admit(at, IpAddr::from(n.to_be_bytes())) {
                logged += 1;
                told += suppressed;
            }
        }
        assert!(logged <= LOG_BURST + LOG_PER_SECOND, "{logged}");
        // The count of the rest comes once things are quiet; nothing goes uncounted.
        let later = t0 + Duration::from_secs(1) + SUPPRESSED_SUMMARY_AFTER;
        told += log.take_summary(later).expect("a summary");
        assert_eq!(told, 10_000 - u64::from(logged));
        assert_eq!(log.take_summary(later), None);
    }
}
