//! The retransmission timer that both halves of the protocol share, and the patience
//! that decides when a silent peer is given up.
//!
//! Two paces. **Fixed**: every retransmission waits exactly the timeout: what RFC 2349
//! asks once the client has negotiated `timeout`, and what a server's transfer uses
//! towards a peer that has not answered yet (the configured timeout, whatever the client
//! asked for). **Adaptive** (RFC 6298), for a transfer whose client did not negotiate
//! `timeout`: the timeout follows the round trips measured on the transfer itself,
//! `RTO = SRTT + max(G, 4 RTTVAR)`, between [`MIN_RTO`] and the configured timeout, which
//! is also its value until the first measurement. Each timeout in a row doubles it (up to
//! that ceiling) until a new measurement; by Karn's rule nothing that was sent more than
//! once is measured. The halves take the measurements (`sample`): the sender from a DATA
//! block (or its handshake packet) to the ACK that covers it, the receiver from an ACK to
//! the DATA that moves the transfer on.
//!
//! **Patience** is counted in time, not in retransmissions: a peer that makes no progress
//! for the timeout times (retries + 1) is given up, whichever pace the timer ran at. With
//! the fixed pace that is exactly the old rule (the configured retries, then one more
//! timeout); with the adaptive pace the same silence holds more retransmissions, early
//! ones close together and later ones a timeout apart.

use std::time::{Duration, Instant};

/// The floor of the adaptive timeout: 150 ms.
///
/// Chosen by measurement in the seeded simulation (`tests/simulation.rs`:
/// `a_clean_link_with_jitter_has_almost_no_spurious_retransmissions`, 36 transfers of
/// 1 MiB over clean links of 1, 5 or 20 ms each way with up to 5, 20 or 50 ms of jitter,
/// and `the_adaptive_timer_at_least_halves_the_mean_transfer_time_at_every_loss_rate`),
/// with the floors 0, 10, 20, 50, 100, 150 and 200 ms. Spurious retransmissions per
/// 1,000 blocks, lock-step with jitter that only delays: 5.1, 5.2, 4.4, 2.6, 0.78, 0,
/// 0 (with jitter that reorders: 2.6, 2.5, 1.9, 1.0, 0.39, 0, 0); windowed: 0.62 at 0
/// and 10 ms, none from 20 ms. RFC 6298's estimator alone (`SRTT + 4 RTTVAR`) falls below
/// the longest round trip often enough on a link whose round trip swings by up to 100 ms;
/// the floor has to cover that swing. 150 ms is the lowest tried with none at all (100 ms
/// keeps within the target of 1 per 1,000 but too narrowly to trust on other links). It
/// costs time only where packets are lost: mean transfer time at 10 % loss 5.5 s at
/// 50 ms, 7.5 s at 100 ms, 9.4 s at 150 ms, 11.4 s at 200 ms, against 59.7 s for the
/// fixed 2 s timer.
pub const MIN_RTO: Duration = Duration::from_millis(150);

/// The clock granularity `G` of RFC 6298: the driver's timers are rounded to a
/// millisecond.
const GRANULARITY: Duration = Duration::from_millis(1);

/// How the retransmission timeout is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Exactly the timeout, every time (RFC 2349; an unverified peer).
    Fixed,
    /// Measured (RFC 6298), with the timeout as the first value and the ceiling.
    Adaptive,
}

/// When to retransmit, and when to give up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryTimer {
    /// The configured or negotiated timeout: the fixed pace's interval, the adaptive
    /// pace's first value and ceiling.
    timeout: Duration,
    pace: Pace,
    /// The silence after which the peer is given up: `timeout` x (retries + 1).
    patience: Duration,
    /// Smoothed round trip and its variation in nanoseconds, once measured (integers: an
    /// update per ACK costs a few instructions, not Duration's checked arithmetic).
    srtt: Option<u64>,
    rttvar: u64,
    /// The timeout of the next retransmission (backed off after timeouts).
    rto: Duration,
    pub deadline: Instant,
    /// The last progress (or the start): silence is counted from here.
    since: Instant,
    /// The latest instant the timer was told of: when what the owner sends next leaves.
    pub now: Instant,
    /// Timeouts since the last progress.
    pub streak: u32,
    pub longest_streak: u32,
    /// Timer expiries that asked for a retransmission, in all.
    pub expiries: u64,
    /// The longest the peer was silent when the timer expired (at most the patience).
    pub longest_silence: Duration,
}

/// What a timeout means for the half that owns the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Called before the deadline: nothing to do.
    NotYet,
    /// Retransmit, the patience allows it.
    Retransmit,
    /// The patience is spent: give up.
    GiveUp,
}

/// `duration` in nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `timeout` x (`retries` + 1), saturating.
fn patience(timeout: Duration, retries: u32) -> Duration {
    timeout.saturating_mul(retries.saturating_add(1))
}

impl RetryTimer {
    /// A timer of `pace`, armed from `now`, that gives up after `timeout` x
    /// (`retries` + 1) without progress.
    pub fn new(now: Instant, timeout: Duration, retries: u32, pace: Pace) -> RetryTimer {
        RetryTimer {
            timeout,
            pace,
            patience: patience(timeout, retries),
            srtt: None,
            rttvar: 0,
            rto: timeout,
            deadline: now + timeout,
            since: now,
            now,
            streak: 0,
            longest_streak: 0,
            expiries: 0,
            longest_silence: Duration::ZERO,
        }
    }

    /// Changes the timeout, the patience and the pace (a server's transfer once its peer
    /// has answered, a client's once the server's OACK says what was negotiated). Takes
    /// effect from the next [`progress`](Self::progress).
    pub fn set_pace(&mut self, timeout: Duration, retries: u32, pace: Pace) {
        self.timeout = timeout;
        self.patience = patience(timeout, retries);
        self.pace = pace;
        self.rto = self.measured().unwrap_or(timeout);
    }

    /// The configured or negotiated timeout (not the adaptive one): what the linger of a
    /// receiver is counted in.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The timeout the next retransmission waits.
    #[cfg(test)]
    pub fn current(&self) -> Duration {
        self.rto
    }

    /// The adaptive timeout from the measurements, if any, within its floor and ceiling.
    fn measured(&self) -> Option<Duration> {
        if self.pace == Pace::Fixed {
            return Some(self.timeout);
        }
        let srtt = self.srtt?;
        let rto = srtt.saturating_add(nanos(GRANULARITY).max(self.rttvar.saturating_mul(4)));
        Some(Duration::from_nanos(rto).clamp(MIN_RTO.min(self.timeout), self.timeout))
    }

    /// A round trip measured on a packet sent once (Karn's rule is the caller's): updates
    /// the estimate (RFC 6298, section 2) and ends any back-off.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = nanos(rtt);
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                // RFC 6298's alpha 1/8 and beta 1/4.
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar.saturating_mul(3).saturating_add(deviation) / 4;
                self.srtt = Some(srtt.saturating_mul(7).saturating_add(rtt) / 8);
            }
        }
        if let Some(rto) = self.measured() {
            self.rto = rto;
        }
    }

    /// The peer made progress: the silence ends and the clock restarts.
    pub fn progress(&mut self, now: Instant) {
        self.streak = 0;
        self.since = now;
        self.now = now;
        self.deadline = now + self.rto;
    }

    /// When the peer is given up if it makes no progress before.
    fn give_up_at(&self) -> Instant {
        self.since + self.patience
    }

    pub fn expire(&mut self, now: Instant) -> Expiry {
        if now < self.deadline {
            return Expiry::NotYet;
        }
        self.now = now;
        self.longest_silence = self.longest_silence.max(now - self.since);
        if now >= self.give_up_at() {
            return Expiry::GiveUp;
        }
        self.streak += 1;
        self.longest_streak = self.longest_streak.max(self.streak);
        self.expiries += 1;
        if self.pace == Pace::Adaptive {
            // RFC 6298 (5.5): back off, up to the ceiling.
            self.rto = self.rto.saturating_mul(2).min(self.timeout);
        }
        self.deadline = (now + self.rto).min(self.give_up_at());
        Expiry::Retransmit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_fixed_pace_retransmits_every_timeout_and_gives_up_after_retries_plus_one() {
        let t0 = Instant::now();
        let mut timer = RetryTimer::new(t0, T, 3, Pace::Fixed);
        timer.sample(ms(10));
        assert_eq!(timer.current(), T, "measurements do not move a fixed timer");
        for n in 1..=3 {
            assert_eq!(timer.expire(timer.deadline - ms(1)), Expiry::NotYet);
            assert_eq!(timer.deadline, t0 + n * T);
            assert_eq!(timer.expire(timer.deadline), Expiry::Retransmit);
        }
        assert_eq!(timer.deadline, t0 + 4 * T);
        assert_eq!(timer.expire(timer.deadline), Expiry::GiveUp);
        assert_eq!((timer.longest_streak, timer.expiries), (3, 3));
    }

    #[test]
    fn the_adaptive_pace_starts_at_the_timeout_and_follows_the_measured_round_trip() {
        let t0 = Instant::now();
        let mut timer = RetryTimer::new(t0, T, 5, Pace::Adaptive);
        assert_eq!(
            timer.current(),
            T,
            "the configured timeout until a measurement"
        );
        // RFC 6298: the first sample R gives SRTT = R, RTTVAR = R/2, RTO = 3R.
        timer.sample(ms(100));
        assert_eq!(timer.current(), ms(300));
        // A steady round trip brings the variation down to the floor.
        for _ in 0..50 {
            timer.sample(ms(10));
        }
        assert_eq!(timer.current(), MIN_RTO);
        // A slow one raises it at once.
        timer.sample(ms(400));
        assert!(timer.current() > ms(400), "{:?}", timer.current());
        // Never above the ceiling.
        for _ in 0..10 {
            timer.sample(Duration::from_secs(30));
        }
        assert_eq!(timer.current(), T);
    }

    #[test]
    fn timeouts_in_a_row_double_the_adaptive_timeout_up_to_the_ceiling_until_a_new_sample() {
        let t0 = Instant::now();
        let mut timer = RetryTimer::new(t0, T, 5, Pace::Adaptive);
        for _ in 0..50 {
            timer.sample(ms(5));
        }
        timer.progress(t0);
        let mut waits = Vec::new();
        let mut last = t0;
        while timer.expire(timer.deadline) == Expiry::Retransmit {
            waits.push((timer.now - last).as_millis());
            last = timer.now;
        }
        // From the floor, doubling up to 2 s, then 2 s apart: more retransmissions than
        // `retries` in the same silence, and given up after 2 s x 6 all the same.
        assert_eq!(MIN_RTO, ms(150));
        assert_eq!(waits, [150, 300, 600, 1200, 2000, 2000, 2000, 2000]);
        assert_eq!(timer.now, t0 + 6 * T, "the silence of the fixed pace");
        timer.progress(timer.now);
        assert_eq!(timer.current(), T, "the back-off stays until a measurement");
        timer.sample(ms(5));
        assert_eq!(timer.current(), MIN_RTO);
    }

    #[test]
    fn a_timeout_below_the_floor_is_its_own_floor() {
        let t0 = Instant::now();
        let mut timer = RetryTimer::new(t0, ms(20), 5, Pace::Adaptive);
        timer.sample(ms(1));
        assert_eq!(timer.current(), ms(20));
    }

    #[test]
    fn switching_to_the_adaptive_pace_uses_the_measurements_made_before() {
        let t0 = Instant::now();
        let mut timer = RetryTimer::new(t0, T, 1, Pace::Fixed);
        timer.sample(ms(100));
        assert_eq!(timer.current(), T);
        timer.set_pace(T, 5, Pace::Adaptive);
        assert_eq!(timer.current(), ms(300));
        timer.progress(t0);
        assert_eq!(timer.deadline, t0 + ms(300));
        timer.set_pace(Duration::from_secs(7), 5, Pace::Fixed);
        assert_eq!(timer.current(), Duration::from_secs(7));
    }
}
