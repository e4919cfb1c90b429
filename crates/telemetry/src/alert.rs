//! Threshold rules with hysteresis: one alert when a breach begins, one
//! recovery when it ends, nothing in between however many samples come.
//!
//! A rule is breached when its value goes beyond `raise`; the breach ends
//! only when the value is back on the good side of `clear` (for a value that is
//! worse when higher, `clear <= raise`; for accuracy, `clear >= raise`). A
//! window with too few measurements (`min_samples`) has no value and changes
//! nothing: a link so bad that nothing is measured does not recover by silence.

use serde::{Deserialize, Serialize};

use crate::error::TelemetryError;
use crate::stats::PerformanceStats;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertMetric {
    /// Mean round trip (milliseconds).
    LatencyAverage,
    /// 95th percentile round trip (milliseconds).
    LatencyP95,
    /// Share of reducer calls that did not commit (0 to 1).
    ReducerErrorRate,
    /// Share of predictions that were right (0 to 1); worse when lower.
    PredictionAccuracy,
    /// Reconnects per minute.
    ReconnectsPerMinute,
}

impl AlertMetric {
    /// A short name, for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            AlertMetric::LatencyAverage => "average latency (ms)",
            AlertMetric::LatencyP95 => "p95 latency (ms)",
            AlertMetric::ReducerErrorRate => "reducer error rate",
            AlertMetric::PredictionAccuracy => "prediction accuracy",
            AlertMetric::ReconnectsPerMinute => "reconnects per minute",
        }
    }

    /// Whether a higher value is worse.
    pub fn worse_when_higher(self) -> bool {
        !matches!(self, AlertMetric::PredictionAccuracy)
    }

    /// The value in `stats`, and how many measurements it stands on.
    pub fn value(self, stats: &PerformanceStats) -> Option<(f64, u64)> {
        let ended = stats.reducer_committed + stats.reducer_failed;
        match self {
            AlertMetric::LatencyAverage => stats.latency.average_ms.map(|v| (v, stats.latency.samples)),
            AlertMetric::LatencyP95 => stats.latency.p95_ms.map(|v| (v, stats.latency.samples)),
            AlertMetric::ReducerErrorRate => stats.reducer_success_rate.map(|s| (1.0 - s, ended)),
            AlertMetric::PredictionAccuracy => stats.prediction_accuracy.map(|a| (a, stats.predictions)),
            AlertMetric::ReconnectsPerMinute => Some((stats.reconnects_per_minute, u64::MAX)),
        }
    }
}

/// A threshold with hysteresis. In a settings file:
/// `{ metric = "latency_average", raise = 250.0, clear = 200.0, min_samples = 1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// What it watches.
    pub metric: AlertMetric,
    /// Beyond this the breach begins.
    pub raise: f64,
    /// Back on the good side of this it ends.
    pub clear: f64,
    /// Fewer measurements than this in the window: no verdict (default 1).
    #[serde(default = "one")]
    pub min_samples: u64,
}

fn one() -> u64 {
    1
}

impl ThresholdRule {
    /// A rule with `min_samples` 1.
    pub fn new(metric: AlertMetric, raise: f64, clear: f64) -> Self {
        Self { metric, raise, clear, min_samples: 1 }
    }

    /// The default rules: mean latency above 250 ms (clear below 200 ms),
    /// reducer error rate above 20 % over at least 5 calls (clear at 10 %),
    /// prediction accuracy below 80 % over 20 checks (clear at 90 %), more
    /// than 6 reconnects a minute (clear at 2).
    pub fn defaults() -> Vec<ThresholdRule> {
        vec![
            ThresholdRule::new(AlertMetric::LatencyAverage, 250.0, 200.0),
            ThresholdRule { min_samples: 5, ..ThresholdRule::new(AlertMetric::ReducerErrorRate, 0.2, 0.1) },
            ThresholdRule { min_samples: 20, ..ThresholdRule::new(AlertMetric::PredictionAccuracy, 0.8, 0.9) },
            ThresholdRule::new(AlertMetric::ReconnectsPerMinute, 6.0, 2.0),
        ]
    }

    /// Refuses thresholds that are not numbers or whose hysteresis points the wrong way.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let reason = if !self.raise.is_finite() || !self.clear.is_finite() {
            Some("thresholds must be finite numbers".to_string())
        } else if self.metric.worse_when_higher() && self.clear > self.raise {
            Some(format!("{}: clear {} must not exceed raise {}", self.metric.name(), self.clear, self.raise))
        } else if !self.metric.worse_when_higher() && self.clear < self.raise {
            Some(format!("{}: clear {} must not be below raise {}", self.metric.name(), self.clear, self.raise))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(TelemetryError::Config { field: "rules", reason }),
            None => Ok(()),
        }
    }

    fn breaches(&self, v: f64) -> bool {
        if self.metric.worse_when_higher() {
            v > self.raise
        } else {
            v < self.raise
        }
    }

    fn clears(&self, v: f64) -> bool {
        if self.metric.worse_when_higher() {
            v <= self.clear
        } else {
            v >= self.clear
        }
    }
}

/// Whether an alert begins or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    /// A breach began.
    Raised,
    /// It ended.
    Recovered,
}

/// A performance alert, or its recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, actix::Message)]
#[rtype(result = "()")]
pub struct PerformanceAlert {
    /// The rule's metric.
    pub metric: AlertMetric,
    /// Raised or recovered.
    pub kind: AlertKind,
    /// The value that crossed.
    pub value: f64,
    /// The threshold it crossed (`raise` or `clear`).
    pub threshold: f64,
    /// When (Unix milliseconds; the end of the window evaluated).
    pub at_unix_ms: u64,
    /// For people: what happened.
    pub message: String,
}

/// The rules and whether each is breached now.
#[derive(Debug, Clone)]
pub struct AlertMonitor {
    rules: Vec<(ThresholdRule, bool)>,
}

impl AlertMonitor {
    /// A monitor of valid rules, none breached.
    pub fn new(rules: &[ThresholdRule]) -> Result<Self, TelemetryError> {
        for rule in rules {
            rule.validate()?;
        }
        Ok(Self { rules: rules.iter().map(|r| (*r, false)).collect() })
    }

    /// New rules while running: a metric breached now stays breached under its
    /// new rule (so its recovery is told once it clears the new threshold,
    /// and no second alert is raised for the same breach). A breached metric
    /// whose rule is gone is no longer watched: its breach ends untold.
    pub fn set_rules(&mut self, rules: &[ThresholdRule]) -> Result<(), TelemetryError> {
        let mut next = Self::new(rules)?;
        for (rule, breached) in &mut next.rules {
            *breached = self.rules.iter().any(|(old, b)| *b && old.metric == rule.metric);
        }
        *self = next;
        Ok(())
    }

    /// The rules breached now.
    pub fn breached(&self) -> impl Iterator<Item = &ThresholdRule> {
        self.rules.iter().filter(|(_, b)| *b).map(|(r, _)| r)
    }

    /// Judges one window's statistics: the alerts and recoveries it causes.
    pub fn evaluate(&mut self, stats: &PerformanceStats) -> Vec<PerformanceAlert> {
        let mut out = Vec::new();
        for (rule, breached) in &mut self.rules {
            let Some((value, samples)) = rule.metric.value(stats) else { continue };
            if samples < rule.min_samples || value.is_nan() {
                continue;
            }
            let (kind, threshold) = match *breached {
                false if rule.breaches(value) => (AlertKind::Raised, rule.raise),
                true if rule.clears(value) => (AlertKind::Recovered, rule.clear),
                _ => continue,
            };
            *breached = kind == AlertKind::Raised;
            let message = match kind {
                AlertKind::Raised => format!("{} is {value:.3}, beyond {threshold}", rule.metric.name()),
                AlertKind::Recovered => format!("{} is back to {value:.3} (threshold {threshold})", rule.metric.name()),
            };
            out.push(PerformanceAlert {
                metric: rule.metric,
                kind,
                value,
                threshold,
                at_unix_ms: stats.period_end_unix_ms,
                message,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencyStats;
    use proptest::prelude::*;

    fn latency(v: Option<f64>) -> PerformanceStats {
        PerformanceStats {
            latency: LatencyStats { samples: u64::from(v.is_some()), average_ms: v, ..LatencyStats::default() },
            ..PerformanceStats::default()
        }
    }

    #[test]
    fn one_alert_per_breach_one_recovery_when_it_ends() {
        let mut m = AlertMonitor::new(&[ThresholdRule::new(AlertMetric::LatencyAverage, 100.0, 80.0)]).unwrap();
        let kinds =
            |m: &mut AlertMonitor, v: Option<f64>| m.evaluate(&latency(v)).iter().map(|a| a.kind).collect::<Vec<_>>();
        assert!(kinds(&mut m, Some(50.0)).is_empty());
        assert_eq!(kinds(&mut m, Some(150.0)), vec![AlertKind::Raised]);
        for v in [Some(300.0), Some(90.0), None, Some(120.0), Some(81.0)] {
            assert!(kinds(&mut m, v).is_empty(), "still one breach at {v:?}");
        }
        assert_eq!(kinds(&mut m, Some(80.0)), vec![AlertKind::Recovered]);
        assert!(kinds(&mut m, Some(95.0)).is_empty(), "inside the hysteresis band: no new alert");
        assert_eq!(kinds(&mut m, Some(101.0)), vec![AlertKind::Raised]);
        assert_eq!(m.breached().count(), 1);
    }

    #[test]
    fn new_rules_keep_an_open_breach_open() {
        let mut m = AlertMonitor::new(&[ThresholdRule::new(AlertMetric::LatencyAverage, 100.0, 80.0)]).unwrap();
        assert_eq!(m.evaluate(&latency(Some(150.0))).len(), 1);
        // Looser thresholds while breached: no second alert; the recovery comes at the new clear.
        m.set_rules(&[ThresholdRule::new(AlertMetric::LatencyAverage, 300.0, 200.0)]).unwrap();
        assert!(m.evaluate(&latency(Some(250.0))).is_empty());
        let recovered = m.evaluate(&latency(Some(150.0)));
        assert_eq!(
            recovered.iter().map(|a| (a.kind, a.threshold)).collect::<Vec<_>>(),
            [(AlertKind::Recovered, 200.0)]
        );
        // A bad rule is refused and the old ones stay.
        let bad = ThresholdRule::new(AlertMetric::LatencyAverage, 100.0, 150.0);
        assert!(m.set_rules(&[bad]).is_err());
        assert_eq!(m.evaluate(&latency(Some(250.0))).len(), 0, "250 is under the kept rule's 300");
    }

    #[test]
    fn accuracy_alerts_when_it_falls() {
        let rule = ThresholdRule { min_samples: 10, ..ThresholdRule::new(AlertMetric::PredictionAccuracy, 0.8, 0.9) };
        let mut m = AlertMonitor::new(&[rule]).unwrap();
        let stats = |predictions: u64, wrong: u64| PerformanceStats {
            predictions,
            mispredictions: wrong,
            prediction_accuracy: Some(1.0 - wrong as f64 / predictions as f64),
            ..PerformanceStats::default()
        };
        assert!(m.evaluate(&stats(5, 5)).is_empty(), "too few checks for a verdict");
        let raised = m.evaluate(&stats(100, 30));
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, AlertKind::Raised);
        assert!(raised[0].message.contains("prediction accuracy"), "{}", raised[0].message);
        assert!(m.evaluate(&stats(100, 15)).is_empty());
        assert_eq!(m.evaluate(&stats(100, 5))[0].kind, AlertKind::Recovered);
    }

    #[test]
    fn backwards_or_missing_thresholds_are_refused() {
        assert!(ThresholdRule::new(AlertMetric::LatencyAverage, 100.0, 120.0).validate().is_err());
        assert!(ThresholdRule::new(AlertMetric::PredictionAccuracy, 0.9, 0.8).validate().is_err());
        assert!(ThresholdRule::new(AlertMetric::ReducerErrorRate, f64::NAN, 0.1).validate().is_err());
        for rule in ThresholdRule::defaults() {
            rule.validate().unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Feature: spacetimedb-integration, Property 16: Performance Monitoring and Alerting
        // For any sequence of window values (some missing), the monitor raises an
        // alert exactly when the model's breach begins and a recovery exactly when
        // it ends: alerts and recoveries alternate, starting with an alert, and a
        // run of samples beyond the threshold, however long, gives one alert.
        #[test]
        fn prop_alerts_follow_the_breach_model(
            values in proptest::collection::vec(proptest::option::of(0.0f64..400.0), 0..200),
            raise in 50.0f64..300.0,
            band in 0.0f64..50.0,
        ) {
            let clear = raise - band;
            let mut m = AlertMonitor::new(&[ThresholdRule::new(AlertMetric::LatencyAverage, raise, clear)]).unwrap();
            let mut model_breached = false;
            let mut last = None;
            for v in &values {
                let got = m.evaluate(&latency(*v));
                let expected = match (*v, model_breached) {
                    (Some(v), false) if v > raise => { model_breached = true; Some(AlertKind::Raised) }
                    (Some(v), true) if v <= clear => { model_breached = false; Some(AlertKind::Recovered) }
                    _ => None,
                };
                prop_assert_eq!(got.iter().map(|a| a.kind).next(), expected);
                prop_assert!(got.len() <= 1);
                if let Some(kind) = expected {
                    prop_assert_ne!(Some(kind), last, "two {:?} in a row", kind);
                    prop_assert!(last.is_some() || kind == AlertKind::Raised);
                    last = Some(kind);
                }
            }
        }
    }
}
