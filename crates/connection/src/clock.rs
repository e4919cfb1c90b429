//! The library's clock: tokio's, read as a `std` instant. Under
//! `tokio::time::pause` it is virtual, so every actor that reads it (the
//! connection, reducers, prediction, telemetry) runs its timing in the test's
//! virtual time, and the plain types they feed take the instant as an input.

use std::time::Instant;

/// The time now, from tokio's clock (virtual under a paused clock).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_only_when_advanced() {
        let t0 = super::now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(super::now() - t0, Duration::from_secs(3600));
    }
}
