//! The performance monitor for spacelink.
//!
//! Every crate records through the `metrics` facade under the names in
//! [`spacelink_connection::metric_names`]. This crate owns the monitor's
//! recorder, [`TelemetryRecorder`]: it turns the series it knows into windowed
//! statistics and fans every series out to a Prometheus endpoint if one is
//! configured (the `prometheus` feature). It hears spacelink's own threads
//! through `spacelink_connection::recording`, beside whatever global recorder
//! the game installed (see the `actor` module).
//!
//! * Plain types, time passed in: [`LatencyHistogram`] (log-linear buckets,
//!   percentiles within 12.5 %), [`StatsWindow`] (a bounded ring of sampling
//!   intervals), [`PerformanceStats`] (average, max and percentile latency,
//!   reducer success rate, prediction accuracy, updates, rows and bytes per
//!   second, reconnects), [`AlertMonitor`] ([`ThresholdRule`]s with hysteresis:
//!   one alert per breach, one recovery when it ends), [`Snapshot`] (JSON and CSV).
//! * [`TelemetryActor`], driven through a [`TelemetryHandle`]: closes an
//!   interval every `sampling_interval`, judges the rules over `alert_window`,
//!   and tells [`TelemetryListeners`] ([`StatsUpdated`], [`PerformanceAlert`]).
//!
//! Recording is cheap: a facade event is a name match and a relaxed atomic add
//! (see `benches/record.rs` and docs/BENCHMARKS.md); the actor does the rest
//! once per interval.
//!
//! Architecture invariant: the library installs no global `metrics` recorder
//! unless the game asks (`TelemetryConfig::install_global_recorder`); this
//! crate reads no files and no environment: the app passes the configuration
//! and writes the exports.

#![warn(unreachable_pub)]

mod actor;
pub mod alert;
pub mod config;
pub mod error;
mod handle;
pub mod histogram;
mod messages;
pub mod recorder;
pub mod stats;
pub mod window;

pub use actor::TelemetryActor;
pub use alert::{AlertKind, AlertMetric, AlertMonitor, PerformanceAlert, ThresholdRule};
pub use config::TelemetryConfig;
pub use error::TelemetryError;
pub use handle::TelemetryHandle;
pub use histogram::LatencyHistogram;
pub use messages::{StatsUpdated, TelemetryListeners};
pub use recorder::{Sink, TelemetryRecorder};
pub use stats::{ExportFormat, LatencyStats, PerformanceStats, Snapshot};
pub use window::{Count, Sample, StatsWindow};

/// A game's telemetry: its settings and who hears the stats and alerts.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySetup {
    /// The settings.
    pub config: TelemetryConfig,
    /// The listeners.
    pub listeners: TelemetryListeners,
}
