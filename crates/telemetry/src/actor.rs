//! The telemetry actor: closes an interval at each tick, judges the rules,
//! tells the listeners, answers questions. All logic is in the plain types.
//!
//! Where its recorder goes ([`TelemetryActor::start_in`]): by default it
//! becomes the target of `spacelink_connection::recording`'s router, the
//! thread-local recorder of spacelink's own threads, which also forwards every
//! event to the game's global recorder; no global recorder is installed, so a
//! game's own recorder (installed before or after) keeps working and sees
//! spacelink's series. With `TelemetryConfig::install_global_recorder` it is
//! installed as the process's global recorder instead (the game has none and
//! wants every thread's events), and the router then forwards to it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
#[cfg(feature = "prometheus")]
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use spacelink_connection::clock::now;
use spacelink_connection::recording;

use crate::alert::{AlertKind, AlertMonitor};
use crate::config::TelemetryConfig;
use crate::error::TelemetryError;
use crate::handle::TelemetryHandle;
use crate::messages::*;
use crate::recorder::{Sink, TelemetryRecorder};
use crate::stats::{PerformanceStats, Snapshot};
use crate::window::{Interval, StatsWindow};

/// The performance monitor's actor.
///
/// Wiring, not the game's API: `spacelink`'s supervisor starts it; a game
/// talks to it through [`TelemetryHandle`](crate::TelemetryHandle) (what `spacelink::Client` hands out).
pub struct TelemetryActor {
    config: TelemetryConfig,
    sink: Arc<Sink>,
    window: StatsWindow,
    monitor: AlertMonitor,
    listeners: TelemetryListeners,
    /// The start of the interval now open.
    opened: Instant,
    /// Tokio's clock and the wall clock at start, to stamp periods.
    anchor: (Instant, SystemTime),
    tick: Option<SpawnHandle>,
}

impl std::fmt::Debug for TelemetryActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryActor")
            .field("config", &self.config)
            .field("intervals", &self.window.intervals().count())
            .finish_non_exhaustive()
    }
}

impl TelemetryActor {
    /// Starts the monitor and installs its recorder as the process's global
    /// `metrics` recorder (fanned out to the Prometheus endpoint if
    /// configured). Call inside an actix system. A second call in the same
    /// process fails with [`TelemetryError::RecorderInstalled`].
    pub fn start_global(
        config: TelemetryConfig,
        listeners: TelemetryListeners,
    ) -> Result<TelemetryHandle, TelemetryError> {
        let (handle, recorder) = Self::start_local(config, listeners)?;
        metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderInstalled)?;
        Ok(handle)
    }

    /// Starts the monitor without installing its recorder: the caller installs
    /// it (perhaps inside its own layers) or uses it with
    /// `metrics::with_local_recorder`. Call inside an actix system.
    pub fn start_local(
        config: TelemetryConfig,
        listeners: TelemetryListeners,
    ) -> Result<(TelemetryHandle, TelemetryRecorder), TelemetryError> {
        let prometheus_addr = config.prometheus;
        let (actor, recorder, prometheus) = Self::build(config, listeners)?;
        let addr = actor.start();
        Ok((TelemetryHandle::new(addr, prometheus, prometheus_addr), recorder))
    }

    /// Starts the monitor, hands the actor and its context to `run` (a
    /// supervisor of the caller's; the actor is [`Supervised`]: a restart
    /// keeps its windows and open alerts), and places its recorder as the
    /// module doc says: the target of spacelink's threads (this one, the
    /// caller's actix thread, is routed too), or the global recorder if
    /// `config.install_global_recorder` (then
    /// [`TelemetryError::RecorderInstalled`] if the process has one).
    pub fn start_in(
        config: TelemetryConfig,
        listeners: TelemetryListeners,
        run: impl FnOnce(Context<Self>, Self),
    ) -> Result<TelemetryHandle, TelemetryError> {
        let prometheus_addr = config.prometheus;
        let global = config.install_global_recorder;
        let (actor, recorder, prometheus) = Self::build(config, listeners)?;
        if global {
            metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderInstalled)?;
        } else {
            recording::set_target(Some(Arc::new(recorder)));
        }
        recording::route_this_thread();
        let ctx = Context::new();
        let handle = TelemetryHandle::new(ctx.address(), prometheus, prometheus_addr);
        run(ctx, actor);
        Ok(handle)
    }

    /// The actor, its recorder and the Prometheus handle, not yet running.
    fn build(
        config: TelemetryConfig,
        listeners: TelemetryListeners,
    ) -> Result<(Self, TelemetryRecorder, Exporter), TelemetryError> {
        config.validate()?;
        let monitor = AlertMonitor::new(&config.rules)?;
        #[cfg(not(feature = "prometheus"))]
        let (exporter, prometheus) = (None, None);
        #[cfg(feature = "prometheus")]
        let (exporter, prometheus) = match config.prometheus {
            Some(addr) => {
                let (recorder, serve) = PrometheusBuilder::new()
                    .with_http_listener(addr)
                    .build()
                    .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
                let handle = recorder.handle();
                actix::spawn(async move {
                    if let Err(e) = serve.await {
                        tracing::warn!(error = ?e, "the Prometheus endpoint stopped");
                    }
                });
                tracing::info!(%addr, "Prometheus endpoint at /metrics");
                (Some(recorder), Some(handle))
            }
            None => (None, None),
        };
        let sink = Arc::new(Sink::default());
        sink.set_enabled(config.enabled);
        let recorder = TelemetryRecorder::new(sink.clone(), exporter);
        let start = now();
        let actor = TelemetryActor {
            window: StatsWindow::new(config.intervals_kept()),
            config: config.clone(),
            sink,
            monitor,
            listeners,
            opened: start,
            anchor: (start, SystemTime::now()),
            tick: None,
        };
        Ok((actor, recorder, prometheus))
    }

    fn unix_ms(&self, at: Instant) -> u64 {
        let wall = self.anchor.1 + at.saturating_duration_since(self.anchor.0);
        wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    fn stats_over(&self, window: Duration) -> PerformanceStats {
        let now = now();
        let pending = self.sink.peek();
        let w = self.window.over(now, window, Some((self.opened, &pending)));
        PerformanceStats::from_sample(&w.sample, w.period(), self.unix_ms(now))
    }

    fn interval_stats(&self, interval: &Interval) -> PerformanceStats {
        let period = interval.end.saturating_duration_since(interval.start);
        PerformanceStats::from_sample(&interval.sample, period, self.unix_ms(interval.end))
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(tick) = self.tick.take() {
            ctx.cancel_future(tick);
        }
        if self.config.enabled {
            self.tick = Some(ctx.run_interval(self.config.sampling_interval, |act, _| act.on_tick()));
        }
    }

    fn on_tick(&mut self) {
        let _span = tracing::trace_span!("telemetry_tick").entered();
        let now = now();
        self.window.push(self.opened, now, self.sink.take());
        self.opened = now;
        let judged = self.window.over(now, self.config.alert_window, None);
        let judged = PerformanceStats::from_sample(&judged.sample, judged.period(), self.unix_ms(now));
        for alert in self.monitor.evaluate(&judged) {
            match alert.kind {
                AlertKind::Raised => tracing::warn!(metric = ?alert.metric, value = alert.value, "{}", alert.message),
                AlertKind::Recovered => {
                    tracing::info!(metric = ?alert.metric, value = alert.value, "{}", alert.message)
                }
            }
            for r in &self.listeners.alerts {
                r.do_send(alert.clone());
            }
        }
        if !self.listeners.stats.is_empty() {
            let stats = self.stats_over(self.config.window);
            for r in &self.listeners.stats {
                r.do_send(StatsUpdated(stats.clone()));
            }
        }
    }
}

impl Actor for TelemetryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A small mailbox is enough: questions come from the game, one at a time.
        ctx.set_mailbox_capacity(64);
        self.opened = now();
        self.arm(ctx);
    }
}

impl Supervised for TelemetryActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // A restart drops every timer and reuses their handles: forget the
        // tick rather than cancel a handle that may name the new one.
        self.tick = None;
        tracing::info!("telemetry actor restarting");
    }
}

impl Handler<GetStats> for TelemetryActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, msg: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats_over(msg.window.unwrap_or(self.config.window)))
    }
}

impl Handler<GetSnapshot> for TelemetryActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        let intervals = self.window.intervals().map(|i| self.interval_stats(i)).collect();
        MessageResult(Snapshot { stats: self.stats_over(self.config.window), intervals })
    }
}

impl Handler<ResetStats> for TelemetryActor {
    type Result = ();

    fn handle(&mut self, _msg: ResetStats, _ctx: &mut Self::Context) {
        self.window.clear();
        self.sink.take();
        self.opened = now();
    }
}

impl Handler<SetEnabled> for TelemetryActor {
    type Result = ();

    fn handle(&mut self, SetEnabled(on): SetEnabled, ctx: &mut Self::Context) {
        if on == self.config.enabled {
            return;
        }
        self.config.enabled = on;
        self.sink.set_enabled(on);
        if on {
            // What happened while disabled is not ours; start a fresh interval.
            self.sink.take();
            self.opened = now();
        }
        self.arm(ctx);
    }
}

impl Handler<SetSamplingInterval> for TelemetryActor {
    type Result = Result<(), TelemetryError>;

    fn handle(&mut self, SetSamplingInterval(every): SetSamplingInterval, ctx: &mut Self::Context) -> Self::Result {
        let config = TelemetryConfig { sampling_interval: every, ..self.config.clone() };
        config.validate()?;
        self.config = config;
        self.window.set_capacity(self.config.intervals_kept());
        self.arm(ctx);
        Ok(())
    }
}

impl Handler<ReconfigureTelemetry> for TelemetryActor {
    type Result = Result<(), TelemetryError>;

    fn handle(&mut self, ReconfigureTelemetry(new): ReconfigureTelemetry, ctx: &mut Self::Context) -> Self::Result {
        self.config.check_live_change(&new)?;
        if new.rules != self.config.rules {
            self.monitor.set_rules(&new.rules)?;
        }
        if new.enabled != self.config.enabled {
            self.sink.set_enabled(new.enabled);
            if new.enabled {
                self.sink.take();
                self.opened = now();
            }
        }
        let rearm = new.enabled != self.config.enabled || new.sampling_interval != self.config.sampling_interval;
        self.config = new;
        self.window.set_capacity(self.config.intervals_kept());
        if rearm {
            self.arm(ctx);
        }
        tracing::info!("telemetry settings changed");
        Ok(())
    }
}

impl Handler<StopTelemetry> for TelemetryActor {
    type Result = ();

    fn handle(&mut self, _msg: StopTelemetry, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Keeps `PrometheusHandle` out of the public messages.
#[cfg(feature = "prometheus")]
pub(crate) type Exporter = Option<PrometheusHandle>;
/// No exporter without the `prometheus` feature.
#[cfg(not(feature = "prometheus"))]
pub(crate) type Exporter = Option<std::convert::Infallible>;
