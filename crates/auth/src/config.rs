//! The auth actor's settings.

use std::time::Duration;

/// Settings of authentication, with defaults that suit a game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Ask the token provider for a new token this long before the current
    /// one's `exp` (default 60 s).
    pub refresh_margin: Duration,
    /// Never ask sooner than this after the last token arrived (default 1 s):
    /// a token whose life is shorter than the margin is not refreshed in a loop.
    pub min_refresh_delay: Duration,
    /// Wait before retrying a failed refresh; doubles after each failure up to
    /// a minute (default 2 s).
    pub refresh_retry_delay: Duration,
    /// Reconnect at once with a refreshed token (default off). SpacetimeDB
    /// checks a token when a session opens, not during it, so by default the
    /// new token is only handed to the connection for its next session and the
    /// game sees nothing but a `TokenRefreshed` event.
    pub reconnect_on_refresh: bool,
    /// How often a credential store that failed is tried again (default 30 s).
    pub store_retry_interval: Duration,
}

impl AuthConfig {
    /// Refuses durations that cannot work (each zero one is an `AuthError::Config` naming it).
    pub fn validate(&self) -> Result<(), crate::AuthError> {
        for (field, d) in [
            ("min_refresh_delay", self.min_refresh_delay),
            ("refresh_retry_delay", self.refresh_retry_delay),
            ("store_retry_interval", self.store_retry_interval),
        ] {
            if d.is_zero() {
                return Err(crate::AuthError::Config { field, reason: "must be more than zero".into() });
            }
        }
        Ok(())
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            min_refresh_delay: Duration::from_secs(1),
            refresh_retry_delay: Duration::from_secs(2),
            reconnect_on_refresh: false,
            store_retry_interval: Duration::from_secs(30),
        }
    }
}
