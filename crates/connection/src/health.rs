//! Network health: what the heartbeats say about the link, as plain values.
//!
//! [`PingTracker`] remembers the pings in flight, turns answers into round
//! trips and pings unanswered for too long into losses; [`NetworkHealth`] is
//! the snapshot a game reads (the design's `NetworkHealth`), and
//! [`NetworkStatus`] the one-word summary it can draw as an indicator.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::rtt::RttEstimator;
use crate::state::ConnectionState;

/// Outcomes remembered for the loss estimate.
const LOSS_WINDOW: usize = 20;
/// Pings remembered while waiting for their pongs.
const MAX_IN_FLIGHT: usize = 64;

/// Pings in flight, their answers and their losses.
#[derive(Debug, Clone, Default)]
pub struct PingTracker {
    in_flight: VecDeque<(u64, Instant)>,
    next_id: u64,
    /// `true` for an answered ping, `false` for a lost one; newest last.
    outcomes: VecDeque<bool>,
    rtt: RttEstimator,
}

impl PingTracker {
    /// Records a ping sent at `now`; returns its id (the ping's payload).
    pub fn sent(&mut self, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push_back((id, now));
        if self.in_flight.len() > MAX_IN_FLIGHT {
            self.in_flight.pop_front();
            self.record(false);
        }
        id
    }

    /// Records the pong for `id` at `now`; returns the round trip if `id` was in flight.
    pub fn answered(&mut self, id: u64, now: Instant) -> Option<Duration> {
        let index = self.in_flight.iter().position(|(p, _)| *p == id)?;
        let (_, sent) = self.in_flight.remove(index)?;
        let rtt = now.saturating_duration_since(sent);
        self.rtt.update(rtt);
        self.record(true);
        Some(rtt)
    }

    /// Counts pings unanswered for longer than `timeout` as lost; returns how many.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        let mut lost = 0;
        while let Some(&(_, sent)) = self.in_flight.front() {
            if now.saturating_duration_since(sent) <= timeout {
                break;
            }
            self.in_flight.pop_front();
            self.record(false);
            lost += 1;
        }
        lost
    }

    /// Forgets the pings in flight (their session is gone); keeps the estimates.
    pub fn reset_in_flight(&mut self) {
        self.in_flight.clear();
    }

    fn record(&mut self, answered: bool) {
        self.outcomes.push_back(answered);
        if self.outcomes.len() > LOSS_WINDOW {
            self.outcomes.pop_front();
        }
    }

    /// The share of the last pings that went unanswered, 0 to 1.
    pub fn loss(&self) -> f32 {
        if self.outcomes.is_empty() {
            return 0.0;
        }
        let lost = self.outcomes.iter().filter(|answered| !**answered).count();
        lost as f32 / self.outcomes.len() as f32
    }

    /// The round-trip estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// How long a ping may go unanswered before it counts as lost: twice the
    /// smoothed round trip plus four deviations, at least `floor`.
    pub fn loss_timeout(&self, floor: Duration) -> Duration {
        match self.rtt.smoothed() {
            Some(srtt) => (srtt * 2 + self.rtt.variation() * 4).max(floor),
            None => floor,
        }
    }
}

/// The link's health (the design's `NetworkHealth`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkHealth {
    /// Smoothed ping round trip, once measured.
    pub latency: Option<Duration>,
    /// Share of recent heartbeats that went unanswered, 0 to 1.
    pub packet_loss: f32,
    /// Failed attempts and lost sessions since the last good session.
    pub consecutive_failures: u32,
    /// When something last arrived from the server.
    pub last_successful_operation: Option<SystemTime>,
    /// Connected, and losing at most a quarter of the heartbeats.
    pub is_healthy: bool,
    /// The one-word summary.
    pub status: NetworkStatus,
}

/// A summary a game can draw as a connection indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkStatus {
    /// Connected, quick (under 250 ms) and not losing heartbeats.
    Good,
    /// Connected, but slow or losing heartbeats: expect lag.
    Degraded,
    /// The session is gone; reconnecting on its own.
    Reconnecting,
    /// Not connected and not trying (failed or shut down).
    Offline,
}

impl fmt::Display for NetworkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkStatus::Good => "good",
            NetworkStatus::Degraded => "degraded",
            NetworkStatus::Reconnecting => "reconnecting",
            NetworkStatus::Offline => "offline",
        })
    }
}

/// Latency under which a healthy link is `Good`.
pub const GOOD_LATENCY: Duration = Duration::from_millis(250);
/// Loss above which a link is not healthy.
pub const MAX_HEALTHY_LOSS: f32 = 0.25;

impl NetworkHealth {
    /// The health of a link in `state`, from its ping statistics.
    pub fn assess(
        state: ConnectionState,
        pings: &PingTracker,
        consecutive_failures: u32,
        last_successful_operation: Option<SystemTime>,
    ) -> Self {
        let latency = pings.rtt().smoothed();
        let packet_loss = pings.loss();
        let is_healthy = state.is_connected() && packet_loss <= MAX_HEALTHY_LOSS;
        let status = match state {
            ConnectionState::Connected if is_healthy && latency.is_none_or(|l| l < GOOD_LATENCY) => NetworkStatus::Good,
            ConnectionState::Connected => NetworkStatus::Degraded,
            ConnectionState::Connecting | ConnectionState::Reconnecting => NetworkStatus::Reconnecting,
            ConnectionState::Disconnected | ConnectionState::Failed => NetworkStatus::Offline,
        };
        Self { latency, packet_loss, consecutive_failures, last_successful_operation, is_healthy, status }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_round_trips_and_silence_gives_losses() {
        let t0 = Instant::now();
        let mut p = PingTracker::default();
        let a = p.sent(t0);
        let b = p.sent(t0 + Duration::from_millis(100));
        assert_eq!(p.answered(a, t0 + Duration::from_millis(40)), Some(Duration::from_millis(40)));
        assert_eq!(p.answered(a, t0 + Duration::from_millis(50)), None, "answered twice");
        assert_eq!(p.expire(t0 + Duration::from_millis(1200), Duration::from_secs(1)), 1);
        assert_eq!(p.answered(b, t0 + Duration::from_millis(1300)), None);
        assert!((p.loss() - 0.5).abs() < f32::EPSILON);
    }

    #[test]
    fn status_follows_state_latency_and_loss() {
        let t0 = Instant::now();
        let mut p = PingTracker::default();
        let id = p.sent(t0);
        p.answered(id, t0 + Duration::from_millis(20));
        let h = NetworkHealth::assess(ConnectionState::Connected, &p, 0, None);
        assert_eq!((h.is_healthy, h.status), (true, NetworkStatus::Good));
        let id = p.sent(t0);
        p.answered(id, t0 + Duration::from_secs(4));
        let h = NetworkHealth::assess(ConnectionState::Connected, &p, 0, None);
        assert_eq!((h.is_healthy, h.status), (true, NetworkStatus::Degraded));
        let h = NetworkHealth::assess(ConnectionState::Reconnecting, &p, 2, None);
        assert_eq!((h.is_healthy, h.status), (false, NetworkStatus::Reconnecting));
        assert_eq!(NetworkHealth::assess(ConnectionState::Failed, &p, 9, None).status, NetworkStatus::Offline);
    }
}
