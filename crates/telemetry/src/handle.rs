//! `TelemetryHandle`: what the game and the app hold.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::actor::{Exporter, TelemetryActor};
use crate::error::TelemetryError;
use crate::messages::*;
use crate::stats::{PerformanceStats, Snapshot};

/// The performance monitor, by intent.
#[derive(Clone)]
pub struct TelemetryHandle {
    addr: Addr<TelemetryActor>,
    prometheus: Exporter,
    prometheus_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for TelemetryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryHandle").field("prometheus", &self.prometheus_addr).finish_non_exhaustive()
    }
}

impl TelemetryHandle {
    pub(crate) fn new(addr: Addr<TelemetryActor>, prometheus: Exporter, prometheus_addr: Option<SocketAddr>) -> Self {
        Self { addr, prometheus, prometheus_addr }
    }

    /// The statistics over the configured window, up to now.
    pub async fn stats(&self) -> Result<PerformanceStats, TelemetryError> {
        self.addr.send(GetStats { window: None }).await.map_err(|_| TelemetryError::ActorGone)
    }

    /// The statistics over the last `window` (at most the retention), up to now.
    pub async fn stats_over(&self, window: Duration) -> Result<PerformanceStats, TelemetryError> {
        self.addr.send(GetStats { window: Some(window) }).await.map_err(|_| TelemetryError::ActorGone)
    }

    /// The statistics over the configured window and per interval kept: what
    /// an export writes (see [`Snapshot::write`]).
    pub async fn snapshot(&self) -> Result<Snapshot, TelemetryError> {
        self.addr.send(GetSnapshot).await.map_err(|_| TelemetryError::ActorGone)
    }

    /// Forgets the statistics gathered so far.
    pub fn reset(&self) {
        self.addr.do_send(ResetStats);
    }

    /// Starts or stops recording and sampling (the Prometheus series go on).
    pub fn set_enabled(&self, on: bool) {
        self.addr.do_send(SetEnabled(on));
    }

    /// Changes how often intervals close, rules are judged and stats are told.
    pub async fn set_sampling_interval(&self, every: Duration) -> Result<(), TelemetryError> {
        self.addr.send(SetSamplingInterval(every)).await.map_err(|_| TelemetryError::ActorGone)?
    }

    /// New settings while running: alert rules, windows, sampling interval,
    /// enabled. The Prometheus address cannot change (refused, naming it).
    pub async fn reconfigure(&self, config: crate::TelemetryConfig) -> Result<(), TelemetryError> {
        self.addr.send(ReconfigureTelemetry(config)).await.map_err(|_| TelemetryError::ActorGone)?
    }

    /// Where the Prometheus endpoint listens, if configured.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_addr
    }

    /// The Prometheus text the endpoint serves now, if configured.
    pub fn prometheus_text(&self) -> Option<String> {
        #[cfg(feature = "prometheus")]
        return self.prometheus.as_ref().map(|h| h.render());
        #[cfg(not(feature = "prometheus"))]
        self.prometheus.map(|never| match never {})
    }

    /// Stops the monitor (the recorder stays installed and keeps counting).
    pub fn shutdown(&self) {
        self.addr.do_send(StopTelemetry);
    }
}
