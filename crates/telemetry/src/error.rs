//! The telemetry crate's one error type.

/// What can go wrong with telemetry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting is out of range.
    #[error("telemetry setting `{field}`: {reason}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The process already has a `metrics` recorder (one per process).
    #[error("a metrics recorder is already installed in this process")]
    RecorderInstalled,
    /// The Prometheus endpoint could not start (port taken, …).
    #[error("the Prometheus endpoint could not start: {0}")]
    Exporter(String),
    /// The telemetry actor has stopped.
    #[error("the telemetry actor is gone")]
    ActorGone,
    /// Writing a snapshot failed.
    #[error("exporting the statistics failed: {0}")]
    Export(String),
}
