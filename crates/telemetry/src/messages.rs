//! Every message of the telemetry actor, in and out.

use std::time::Duration;

use actix::prelude::*;

pub(crate) use crate::alert::PerformanceAlert;
use crate::error::TelemetryError;
use crate::stats::{PerformanceStats, Snapshot};

/// In: the statistics over `window` (the configured one if `None`),
/// including the interval still open.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "PerformanceStats")]
pub(crate) struct GetStats {
    /// How far back.
    pub(crate) window: Option<Duration>,
}

/// In: the statistics over the configured window and per interval kept.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Snapshot")]
pub(crate) struct GetSnapshot;

/// In: forget every interval and what is pending (alert states stay: a breach
/// still ends with a recovery).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct ResetStats;

/// In: start or stop recording and sampling.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct SetEnabled(pub(crate) bool);

/// In: a new sampling interval (the retention is kept in time).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), TelemetryError>")]
pub(crate) struct SetSamplingInterval(pub(crate) Duration);

/// In: stop the actor.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct StopTelemetry;

/// In: new settings while running (rules, windows, sampling, enabled); the
/// Prometheus address is fixed at start. Refused, naming the field, and then
/// nothing changes.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), TelemetryError>")]
pub(crate) struct ReconfigureTelemetry(pub(crate) crate::TelemetryConfig);

/// Out: at each tick, the statistics over the configured window.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct StatsUpdated(pub PerformanceStats);

/// Who hears what the monitor finds.
#[derive(Default, Clone)]
pub struct TelemetryListeners {
    /// Each tick's statistics.
    pub stats: Vec<Recipient<StatsUpdated>>,
    /// Alerts and recoveries.
    pub alerts: Vec<Recipient<PerformanceAlert>>,
}

impl std::fmt::Debug for TelemetryListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryListeners")
            .field("stats", &self.stats.len())
            .field("alerts", &self.alerts.len())
            .finish()
    }
}
