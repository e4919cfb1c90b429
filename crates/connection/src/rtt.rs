//! A plain round-trip-time estimator (TCP-style smoothing, RFC 6298).

use std::time::Duration;

/// Smoothed round trip and its variation from ping/pong samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RttEstimator {
    smoothed: Option<Duration>,
    variation: Duration,
    last: Option<Duration>,
}

impl RttEstimator {
    /// Takes one measured round trip.
    pub fn update(&mut self, sample: Duration) {
        self.last = Some(sample);
        match self.smoothed {
            None => {
                self.smoothed = Some(sample);
                self.variation = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                // rttvar = 3/4 rttvar + 1/4 |srtt - sample|; srtt = 7/8 srtt + 1/8 sample
                self.variation = self.variation * 3 / 4 + diff / 4;
                self.smoothed = Some(srtt * 7 / 8 + sample / 8);
            }
        }
    }

    /// The smoothed round trip, once there is a sample.
    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    /// The mean deviation of the samples.
    pub fn variation(&self) -> Duration {
        self.variation
    }

    /// The last sample.
    pub fn last(&self) -> Option<Duration> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_towards_a_steady_round_trip() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.smoothed(), None);
        rtt.update(Duration::from_millis(100));
        assert_eq!(rtt.smoothed(), Some(Duration::from_millis(100)));
        for _ in 0..100 {
            rtt.update(Duration::from_millis(500));
        }
        let s = rtt.smoothed().unwrap().as_millis();
        assert!((495..=500).contains(&s), "{s}");
    }
}
