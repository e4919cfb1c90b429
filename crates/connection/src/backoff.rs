//! When to try again: the retry policy and its exponential backoff with jitter.
//!
//! Plain values with no clock: the actor asks for the delay before attempt `n`
//! and schedules it itself, so tests check delays without waiting for them.

use std::time::Duration;

/// How reconnection attempts are spaced (the design's `RetryPolicy`).
///
/// Defaults suit a game: the first retry comes quickly (250 ms), the wait
/// doubles up to 10 s, and each delay is spread by ±20 % so that many clients
/// dropped by one server restart do not all come back in the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts before the *first* connection gives up and the state becomes
    /// `Failed` (default 5). Once connected, a lost session is retried without
    /// limit until `shutdown`.
    pub max_attempts: u32,
    /// Delay before the first retry (default 250 ms).
    pub initial_delay: Duration,
    /// Factor applied to the delay after each failed attempt (default 2.0).
    pub backoff_multiplier: f64,
    /// Upper bound of the delay before jitter (default 10 s).
    pub max_delay: Duration,
    /// Relative spread of each delay: the delay is multiplied by a factor drawn
    /// uniformly from `[1 - jitter, 1 + jitter]` (default 0.2; 0 turns it off).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(250),
            backoff_multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let factor = self.backoff_multiplier.max(1.0).powi(exponent);
        let secs = (self.initial_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The delay before retry number `retry`, with jitter drawn from `unit` (in `[0, 1)`).
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        Duration::from_secs_f64((base * factor).max(0.0))
    }
}

/// A small deterministic random source (splitmix64) for jitter, seedable in tests.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A source seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        let ms: Vec<u128> = (1..=8).map(|n| p.delay(n, 0.5).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.0).as_millis(), 200);
        assert_eq!(p.delay(1, 1.0).as_millis(), 300);
        let mut j = Jitter::new(7);
        for _ in 0..1000 {
            let u = j.next_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
