//! When the connection tries again and when it gives up: a plain value with
//! no clock (`now` is passed in), which the connection actor only asks.
//!
//! A session is a success for the backoff and the breaker only once it is
//! **proven** (its identity arrived and it then stayed up and healthy for
//! `proven_after`). An attempt that fails, and a session lost before it
//! proved itself, are one more failed attempt: the backoff grows, the breaker
//! counts it, and a *first* connection gives up once more than
//! `max_attempts` attempts failed. A proven session that is lost is retried
//! after the first retry's delay, for ever. While the breaker is open, a
//! retry waits at least until it half-opens.

use std::time::{Duration, Instant};

use crate::backoff::{Jitter, RetryPolicy};
use crate::breaker::{BreakerState, CircuitBreaker, CircuitBreakerConfig, Permit};

/// How an attempt or a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The attempt failed before a session was up.
    AttemptFailed,
    /// A session was lost before it proved itself.
    UnprovenSessionLost,
    /// A proven session was lost.
    ProvenSessionLost,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after `delay`.
    Retry {
        /// The backoff's delay, or longer while the breaker is open.
        delay: Duration,
    },
    /// Stop trying: the first connection failed `attempts` times.
    GiveUp {
        /// Failed attempts in a row.
        attempts: u32,
    },
}

/// The attempts, proven sessions and the give-up rule of one connection.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    breaker: CircuitBreaker,
    jitter: Jitter,
    failed_attempts: u32,
    ever_connected: bool,
}

impl SessionPolicy {
    /// A policy for a connection that never connected, with a closed breaker.
    pub fn new(breaker: CircuitBreakerConfig, jitter: Jitter) -> Self {
        Self { breaker: CircuitBreaker::new(breaker), jitter, failed_attempts: 0, ever_connected: false }
    }

    /// The breaker, to report its state.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Failed attempts since the last proven session (or the last restart).
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// The number of the next attempt (1 for the first).
    pub fn next_attempt(&self) -> u32 {
        self.failed_attempts + 1
    }

    /// Asks to start an attempt at `now` (the breaker may say wait).
    pub fn permit(&mut self, now: Instant) -> Permit {
        self.breaker.permit(now)
    }

    /// An attempt or a session ended at `now`: what next, under `retry`.
    pub fn failed(&mut self, ended: Ended, now: Instant, retry: &RetryPolicy) -> Next {
        self.breaker.record_failure(now);
        let retry_number = match ended {
            Ended::ProvenSessionLost => 1,
            Ended::AttemptFailed | Ended::UnprovenSessionLost => {
                self.failed_attempts += 1;
                if !self.ever_connected && self.failed_attempts > retry.max_attempts {
                    return Next::GiveUp { attempts: self.failed_attempts };
                }
                self.failed_attempts
            }
        };
        let backoff = retry.delay(retry_number, self.jitter.next_unit());
        let delay = match self.breaker.state() {
            BreakerState::Open { until } => backoff.max(until.saturating_duration_since(now)),
            _ => backoff,
        };
        Next::Retry { delay }
    }

    /// A session proved itself: the attempts start afresh and the breaker
    /// closes. Returns whether it is a reconnection (an earlier session had
    /// been proven).
    pub fn proven(&mut self) -> bool {
        self.failed_attempts = 0;
        self.breaker.record_success();
        std::mem::replace(&mut self.ever_connected, true)
    }

    /// A reconnect was asked for: the attempts start afresh (the breaker and
    /// whether it ever connected stay).
    pub fn restart(&mut self) {
        self.failed_attempts = 0;
    }

    /// The connection moved to another server: nothing learnt holds.
    pub fn retarget(&mut self, breaker: CircuitBreakerConfig) {
        self.breaker = CircuitBreaker::new(breaker);
        self.failed_attempts = 0;
        self.ever_connected = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerKind;

    /// 1 s doubling, no jitter, 3 attempts; a breaker opening after 4 failures for 60 s.
    fn policy() -> (SessionPolicy, RetryPolicy) {
        let retry = RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            backoff_multiplier: 2.0,
            max_delay: Duration::from_secs(16),
            jitter: 0.0,
        };
        let breaker = CircuitBreakerConfig {
            failure_threshold: 4,
            open_duration: Duration::from_secs(60),
            half_open_max_calls: 1,
        };
        (SessionPolicy::new(breaker, Jitter::new(1)), retry)
    }

    fn retry_in(secs: u64) -> Next {
        Next::Retry { delay: Duration::from_secs(secs) }
    }

    #[test]
    fn a_first_connection_gives_up_after_max_attempts() {
        let (mut p, retry) = policy();
        let t0 = Instant::now();
        assert_eq!(p.next_attempt(), 1);
        assert_eq!(p.failed(Ended::AttemptFailed, t0, &retry), retry_in(1));
        assert_eq!(p.failed(Ended::UnprovenSessionLost, t0, &retry), retry_in(2), "an unproven session is an attempt");
        assert_eq!(p.failed(Ended::AttemptFailed, t0, &retry), retry_in(4));
        assert_eq!(p.next_attempt(), 4);
        assert_eq!(p.failed(Ended::AttemptFailed, t0, &retry), Next::GiveUp { attempts: 4 });
        assert_eq!(p.failed_attempts(), 4);
    }

    #[test]
    fn once_proven_it_never_gives_up_and_a_proven_loss_retries_quickly() {
        let (mut p, retry) = policy();
        let t0 = Instant::now();
        p.failed(Ended::AttemptFailed, t0, &retry);
        assert!(!p.proven(), "the first proven session is no reconnection");
        assert_eq!(p.failed_attempts(), 0);
        assert_eq!(p.failed(Ended::ProvenSessionLost, t0, &retry), retry_in(1));
        assert_eq!(p.failed_attempts(), 0, "a proven session's loss is no failed attempt");
        for n in 1..=10u32 {
            let next = p.failed(Ended::UnprovenSessionLost, t0 + Duration::from_secs(3600 * u64::from(n)), &retry);
            assert!(matches!(next, Next::Retry { .. }), "attempt {n}: {next:?}");
        }
        assert!(p.proven(), "a later proven session is a reconnection");
    }

    #[test]
    fn an_open_breaker_stretches_the_delay_on_the_clock_passed_in() {
        let (mut p, mut retry) = policy();
        retry.max_attempts = 100;
        let t0 = Instant::now();
        for _ in 0..3 {
            p.failed(Ended::AttemptFailed, t0, &retry);
        }
        assert_eq!(p.breaker().state().kind(), BreakerKind::Closed);
        let at = t0 + Duration::from_secs(10);
        assert_eq!(p.failed(Ended::AttemptFailed, at, &retry), retry_in(60), "open for 60 s from the 4th failure");
        assert_eq!(p.permit(at + Duration::from_secs(59)), Permit::WaitUntil(at + Duration::from_secs(60)));
        assert_eq!(p.permit(at + Duration::from_secs(60)), Permit::Proceed, "half-open: one probe");
        p.proven();
        assert_eq!(p.breaker().state().kind(), BreakerKind::Closed, "a proven session closes it");
    }

    #[test]
    fn restart_and_retarget_start_afresh() {
        let (mut p, retry) = policy();
        let t0 = Instant::now();
        p.failed(Ended::AttemptFailed, t0, &retry);
        p.restart();
        assert_eq!(p.next_attempt(), 1);
        p.proven();
        p.retarget(CircuitBreakerConfig::default());
        for _ in 0..3 {
            p.failed(Ended::AttemptFailed, t0, &retry);
        }
        assert_eq!(
            p.failed(Ended::AttemptFailed, t0, &retry),
            Next::GiveUp { attempts: 4 },
            "a new target is a first connection again"
        );
    }
}
