//! The retransmission timer and retry budget that both halves of the protocol share.

use std::time::{Duration, Instant};

/// When to retransmit, and how many times in a row before giving up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryTimer {
    pub timeout: Duration,
    pub max_retries: u32,
    pub deadline: Instant,
    /// Timeouts since the last progress.
    pub streak: u32,
    pub longest_streak: u32,
}

/// What a timeout means for the half that owns the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Called before the deadline: nothing to do.
    NotYet,
    /// Retransmit, the budget allows it.
    Retransmit,
    /// The budget is spent: give up.
    GiveUp,
}

impl RetryTimer {
    pub fn new(now: Instant, timeout: Duration, max_retries: u32) -> RetryTimer {
        RetryTimer {
            timeout,
            max_retries,
            deadline: now + timeout,
            streak: 0,
            longest_streak: 0,
        }
    }

    /// The peer made progress: the budget is whole again and the clock restarts.
    pub fn progress(&mut self, now: Instant) {
        self.streak = 0;
        self.deadline = now + self.timeout;
    }

    pub fn expire(&mut self, now: Instant) -> Expiry {
        if now < self.deadline {
            return Expiry::NotYet;
        }
        if self.streak >= self.max_retries {
            return Expiry::GiveUp;
        }
        self.streak += 1;
        self.longest_streak = self.longest_streak.max(self.streak);
        self.deadline = now + self.timeout;
        Expiry::Retransmit
    }
}
