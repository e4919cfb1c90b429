//! The circuit breaker in the supervisor's restart policy.
//!
//! After `failure_threshold` consecutive failures the breaker **opens**: no
//! attempt is made for `open_duration`, so a server that is down (or a network
//! that is gone) is not hammered. Then it is **half-open**: at most
//! `half_open_max_calls` probe attempts may run; one success **closes** it, a
//! failure opens it again. A plain value: the caller passes `now`, so tests
//! drive it without waiting.

use std::fmt;
use std::time::{Duration, Instant};

/// When the breaker opens and for how long (the design's `CircuitBreakerConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed attempts that open the breaker (default 6: the
    /// backoff has then waited about 8 s in all).
    pub failure_threshold: u32,
    /// How long it stays open before probing (default 15 s).
    pub open_duration: Duration,
    /// Attempts allowed while half-open (default 1).
    pub half_open_max_calls: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 6, open_duration: Duration::from_secs(15), half_open_max_calls: 1 }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Attempts run as the retry policy says.
    Closed,
    /// No attempts until `until`.
    Open {
        /// When probing may start.
        until: Instant,
    },
    /// Probing: `probes` attempts started so far.
    HalfOpen {
        /// Probe attempts started while half-open.
        probes: u32,
    },
}

impl BreakerState {
    /// The state's name without its data, for events and displays.
    pub fn kind(&self) -> BreakerKind {
        match self {
            BreakerState::Closed => BreakerKind::Closed,
            BreakerState::Open { .. } => BreakerKind::Open,
            BreakerState::HalfOpen { .. } => BreakerKind::HalfOpen,
        }
    }
}

/// A breaker state without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerKind {
    /// Attempts flow.
    Closed,
    /// Attempts are held back.
    Open,
    /// A bounded number of probes may run.
    HalfOpen,
}

impl fmt::Display for BreakerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerKind::Closed => "closed",
            BreakerKind::Open => "open",
            BreakerKind::HalfOpen => "half-open",
        })
    }
}

/// May an attempt start now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes.
    Proceed,
    /// Not before this instant.
    WaitUntil(Instant),
}

/// The circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    trips: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self { config, state: BreakerState::Closed, consecutive_failures: 0, trips: 0 }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Consecutive failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// How many times the breaker has opened.
    pub fn trips(&self) -> u32 {
        self.trips
    }

    /// Asks to start an attempt at `now`. An open breaker whose time is up turns half-open.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            BreakerState::Closed => Permit::Proceed,
            BreakerState::Open { until } if now < until => Permit::WaitUntil(until),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen { probes: 1 };
                Permit::Proceed
            }
            BreakerState::HalfOpen { probes } if probes < self.config.half_open_max_calls.max(1) => {
                self.state = BreakerState::HalfOpen { probes: probes + 1 };
                Permit::Proceed
            }
            // Every probe is out and none has answered: wait another period.
            BreakerState::HalfOpen { .. } => {
                let until = now + self.config.open_duration;
                self.state = BreakerState::Open { until };
                Permit::WaitUntil(until)
            }
        }
    }

    /// An attempt (or a live session) failed at `now`.
    pub fn record_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            BreakerState::Closed => self.consecutive_failures >= self.config.failure_threshold.max(1),
            BreakerState::HalfOpen { .. } => true,
            BreakerState::Open { .. } => false,
        };
        if open {
            self.state = BreakerState::Open { until: now + self.config.open_duration };
            self.trips += 1;
        }
    }

    /// An attempt succeeded: the breaker closes.
    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.state = BreakerState::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CircuitBreakerConfig {
        CircuitBreakerConfig { failure_threshold: 3, open_duration: Duration::from_secs(10), half_open_max_calls: 1 }
    }

    #[test]
    fn opens_after_the_threshold_then_probes_then_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for i in 0..3 {
            assert_eq!(b.permit(t0), Permit::Proceed, "attempt {i}");
            b.record_failure(t0);
        }
        let until = t0 + Duration::from_secs(10);
        assert_eq!(b.state(), BreakerState::Open { until });
        assert_eq!(b.permit(t0 + Duration::from_secs(9)), Permit::WaitUntil(until));
        assert_eq!(b.permit(until), Permit::Proceed);
        assert_eq!(b.state().kind(), BreakerKind::HalfOpen);
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.permit(t1), Permit::Proceed);
        b.record_failure(t1);
        assert_eq!(b.state(), BreakerState::Open { until: t1 + Duration::from_secs(10) });
        assert_eq!(b.trips(), 2);
    }

    #[test]
    fn half_open_allows_only_the_configured_probes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(CircuitBreakerConfig { half_open_max_calls: 2, ..config() });
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.permit(t1), Permit::Proceed);
        assert_eq!(b.permit(t1), Permit::Proceed);
        assert!(matches!(b.permit(t1), Permit::WaitUntil(_)));
    }
}
