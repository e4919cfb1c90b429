//! When to ask for a new token: plain arithmetic on the token's `exp`, with
//! the time passed in.

use std::time::{Duration, SystemTime};

use crate::config::AuthConfig;

/// What to do about a token's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPlan {
    /// The token never expires (`exp: null`), or there is no provider to ask.
    Never,
    /// Ask for a new token after this long.
    After(Duration),
}

/// The plan for a token expiring at `expires_at`, seen at `now`: ask
/// `config.refresh_margin` ahead of `exp`, but never sooner than
/// `config.min_refresh_delay` from now (so that a token issued with a life
/// shorter than the margin does not make the layer ask in a tight loop).
pub fn plan(expires_at: Option<SystemTime>, now: SystemTime, config: &AuthConfig) -> RefreshPlan {
    let Some(exp) = expires_at else { return RefreshPlan::Never };
    let left = exp.duration_since(now).unwrap_or(Duration::ZERO);
    RefreshPlan::After(left.saturating_sub(config.refresh_margin).max(config.min_refresh_delay))
}

/// The wait before retrying a failed refresh (`failures` >= 1): doubling from
/// `config.refresh_retry_delay`, capped at a minute, and never past the
/// expiry when there is still time before it.
pub fn retry_after(failures: u32, expires_at: Option<SystemTime>, now: SystemTime, config: &AuthConfig) -> Duration {
    let doubled = config.refresh_retry_delay.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = doubled.min(Duration::from_secs(60)).max(config.min_refresh_delay);
    match expires_at.and_then(|exp| exp.duration_since(now).ok()) {
        Some(left) if left > config.min_refresh_delay => capped.min(left / 2).max(config.min_refresh_delay),
        _ => capped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn refreshes_ahead_of_exp() {
        let c = AuthConfig { refresh_margin: Duration::from_secs(30), ..AuthConfig::default() };
        assert_eq!(plan(None, at(0), &c), RefreshPlan::Never);
        assert_eq!(plan(Some(at(100)), at(0), &c), RefreshPlan::After(Duration::from_secs(70)));
        // Already inside the margin, or expired: as soon as allowed.
        assert_eq!(plan(Some(at(100)), at(90), &c), RefreshPlan::After(c.min_refresh_delay));
        assert_eq!(plan(Some(at(100)), at(200), &c), RefreshPlan::After(c.min_refresh_delay));
    }

    #[test]
    fn retries_back_off_but_stay_before_exp() {
        let c = AuthConfig { refresh_retry_delay: Duration::from_secs(1), ..AuthConfig::default() };
        assert_eq!(retry_after(1, None, at(0), &c), Duration::from_secs(1));
        assert_eq!(retry_after(3, None, at(0), &c), Duration::from_secs(4));
        assert_eq!(retry_after(40, None, at(0), &c), Duration::from_secs(60));
        assert_eq!(retry_after(5, Some(at(10)), at(0), &c), Duration::from_secs(5));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        // Feature: spacetimedb-integration, Property 3: Secure Credential Storage (tokens are refreshed before expiration)
        #[test]
        fn prop_refresh_is_planned_before_exp(
            life in 0u64..100_000, margin in 0u64..10_000, min_ms in 1u64..5_000, now in 0u64..1_000_000,
        ) {
            let c = AuthConfig {
                refresh_margin: Duration::from_secs(margin),
                min_refresh_delay: Duration::from_millis(min_ms),
                ..AuthConfig::default()
            };
            let exp = at(now + life);
            let RefreshPlan::After(wait) = plan(Some(exp), at(now), &c) else { panic!("a token with exp has a plan") };
            prop_assert!(wait >= c.min_refresh_delay);
            // Whenever the margin leaves room, the refresh falls at least `margin` before exp.
            if Duration::from_secs(life) >= c.refresh_margin + c.min_refresh_delay {
                prop_assert!(at(now) + wait + c.refresh_margin <= exp);
            }
        }
    }
}
