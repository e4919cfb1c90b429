//! Telemetry settings, with documented defaults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::alert::ThresholdRule;
use crate::error::TelemetryError;

/// How the performance monitor samples, keeps, judges and exports.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Record and sample at start (default: yes).
    pub enabled: bool,
    /// How often an interval is closed, rules are judged and the stats-updated
    /// event fires (default 1 s).
    pub sampling_interval: Duration,
    /// The window of `stats()` and of the stats-updated event (default 60 s).
    pub window: Duration,
    /// How far back intervals are kept, for `stats_over` and exports
    /// (default 5 min; at most 10 000 intervals are kept).
    pub retention: Duration,
    /// The window the alert rules judge at each tick (default 5 s).
    pub alert_window: Duration,
    /// The alert rules (default: [`ThresholdRule::defaults`]).
    pub rules: Vec<ThresholdRule>,
    /// Serve the Prometheus text format on this loopback address
    /// (`GET /metrics`; default: none). Needs the `prometheus` feature: without
    /// it, a typed config error naming `prometheus`.
    pub prometheus: Option<SocketAddr>,
    /// Install the monitor's recorder as the process's global `metrics`
    /// recorder, so that it hears every thread (default: no: it hears
    /// spacelink's own threads and leaves the global recorder to the game; see
    /// the `actor` module). Fixed at start.
    pub install_global_recorder: bool,
}

/// The most intervals kept, whatever the retention.
pub const MAX_INTERVALS: usize = 10_000;

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sampling_interval: Duration::from_secs(1),
            window: Duration::from_secs(60),
            retention: Duration::from_secs(300),
            alert_window: Duration::from_secs(5),
            rules: ThresholdRule::defaults(),
            prometheus: None,
            install_global_recorder: false,
        }
    }
}

impl TelemetryConfig {
    /// Checks that `new` is valid and changes only what a running monitor can
    /// take: everything but the Prometheus endpoint's address, which is bound
    /// at start (a `TelemetryError::Config` naming `prometheus`).
    pub fn check_live_change(&self, new: &TelemetryConfig) -> Result<(), TelemetryError> {
        new.validate()?;
        if new.prometheus != self.prometheus {
            return Err(TelemetryError::Config {
                field: "prometheus",
                reason: "the endpoint is bound at start: restart to move it".into(),
            });
        }
        if new.install_global_recorder != self.install_global_recorder {
            return Err(TelemetryError::Config {
                field: "install_global_recorder",
                reason: "the recorder is placed at start: restart to change it".into(),
            });
        }
        Ok(())
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let refuse = |field, reason: String| Err(TelemetryError::Config { field, reason });
        for (field, d) in [
            ("sampling_interval", self.sampling_interval),
            ("window", self.window),
            ("retention", self.retention),
            ("alert_window", self.alert_window),
        ] {
            if d.is_zero() {
                return refuse(field, "must be above zero".into());
            }
        }
        if self.sampling_interval < Duration::from_millis(10) {
            return refuse("sampling_interval", format!("{:?} is below 10 ms", self.sampling_interval));
        }
        if self.window > self.retention {
            return refuse("window", format!("{:?} exceeds the retention {:?}", self.window, self.retention));
        }
        if let Some(addr) = self.prometheus {
            check_prometheus(addr, cfg!(feature = "prometheus")).or_else(|reason| refuse("prometheus", reason))?;
        }
        for rule in &self.rules {
            rule.validate()?;
        }
        Ok(())
    }

    /// How many intervals the retention needs.
    pub fn intervals_kept(&self) -> usize {
        let n = self.retention.as_nanos() / self.sampling_interval.as_nanos().max(1);
        (n as usize).clamp(1, MAX_INTERVALS)
    }
}

/// Whether a Prometheus endpoint can be served at `addr` (a loopback
/// address, and the exporter `compiled_in`), else why not.
pub fn check_prometheus(addr: SocketAddr, compiled_in: bool) -> Result<(), String> {
    if !compiled_in {
        return Err(format!(
            "serving {addr} needs the `prometheus` feature (of spacelink, or spacelink-telemetry), which is off"
        ));
    }
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertMetric;

    #[test]
    fn defaults_are_valid() {
        let c = TelemetryConfig::default();
        c.validate().unwrap();
        assert_eq!(c.intervals_kept(), 300);
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |c: TelemetryConfig| match c.validate() {
            Err(TelemetryError::Config { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let d = TelemetryConfig::default;
        assert_eq!(field(TelemetryConfig { sampling_interval: Duration::ZERO, ..d() }), "sampling_interval");
        assert_eq!(field(TelemetryConfig { window: Duration::from_secs(600), ..d() }), "window");
        assert_eq!(field(TelemetryConfig { prometheus: Some("0.0.0.0:9000".parse().unwrap()), ..d() }), "prometheus");
        let backwards = ThresholdRule::new(AlertMetric::LatencyAverage, 10.0, 20.0);
        assert_eq!(field(TelemetryConfig { rules: vec![backwards], ..d() }), "rules");
        let tiny = TelemetryConfig {
            sampling_interval: Duration::from_millis(10),
            retention: Duration::from_secs(3600),
            window: Duration::from_secs(1),
            ..d()
        };
        assert_eq!(tiny.intervals_kept(), MAX_INTERVALS);
    }

    #[test]
    fn a_prometheus_address_without_the_feature_is_a_named_error() {
        let addr = "127.0.0.1:9898".parse().unwrap();
        let reason = check_prometheus(addr, false).unwrap_err();
        assert!(reason.contains("`prometheus` feature"), "{reason}");
        assert!(check_prometheus(addr, true).is_ok());
        assert!(check_prometheus("10.0.0.1:9898".parse().unwrap(), true).is_err());
    }

    #[test]
    fn where_the_recorder_goes_is_fixed_at_start() {
        let c = TelemetryConfig::default();
        let global = TelemetryConfig { install_global_recorder: true, ..c.clone() };
        assert!(matches!(
            c.check_live_change(&global),
            Err(TelemetryError::Config { field: "install_global_recorder", .. })
        ));
    }
}
