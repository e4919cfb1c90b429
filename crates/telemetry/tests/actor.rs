//! The telemetry actor on tokio's paused clock: ticks close intervals, a
//! latency breach raises one alert and one recovery, stats and controls work.
//! Events are recorded through a local recorder, never the global one.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix::prelude::*;
use spacelink_connection::metric_names as names;
use spacelink_telemetry::{
    AlertKind, AlertMetric, PerformanceAlert, StatsUpdated, TelemetryActor, TelemetryConfig, TelemetryError,
    TelemetryListeners, TelemetryRecorder, ThresholdRule,
};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Heard {
    Alert(PerformanceAlert),
    Stats(StatsUpdated),
}

struct Collector(mpsc::UnboundedSender<Heard>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<PerformanceAlert> for Collector {
    type Result = ();
    fn handle(&mut self, msg: PerformanceAlert, _: &mut Self::Context) {
        let _ = self.0.send(Heard::Alert(msg));
    }
}

impl Handler<StatsUpdated> for Collector {
    type Result = ();
    fn handle(&mut self, msg: StatsUpdated, _: &mut Self::Context) {
        let _ = self.0.send(Heard::Stats(msg));
    }
}

fn rtt(recorder: &TelemetryRecorder, ms: u64, n: usize) {
    metrics::with_local_recorder(recorder, || {
        for _ in 0..n {
            metrics::histogram!(names::CONNECTION_RTT_SECONDS).record(ms as f64 / 1000.0);
        }
        metrics::counter!(names::SYNC_TRANSACTIONS_APPLIED).increment(n as u64);
    });
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Heard>) -> (Vec<PerformanceAlert>, Vec<StatsUpdated>) {
    let (mut alerts, mut stats) = (Vec::new(), Vec::new());
    while let Ok(heard) = rx.try_recv() {
        match heard {
            Heard::Alert(a) => alerts.push(a),
            Heard::Stats(s) => stats.push(s),
        }
    }
    (alerts, stats)
}

fn start() -> (spacelink_telemetry::TelemetryHandle, TelemetryRecorder, mpsc::UnboundedReceiver<Heard>) {
    tokio::time::pause();
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = Collector(tx).start();
    let listeners =
        TelemetryListeners { stats: vec![collector.clone().recipient()], alerts: vec![collector.recipient()] };
    let config = TelemetryConfig {
        sampling_interval: Duration::from_secs(1),
        alert_window: Duration::from_secs(2),
        window: Duration::from_secs(10),
        retention: Duration::from_secs(20),
        rules: vec![ThresholdRule::new(AlertMetric::LatencyAverage, 100.0, 50.0)],
        ..TelemetryConfig::default()
    };
    let (handle, recorder) = TelemetryActor::start_local(config, listeners).unwrap();
    (handle, recorder, rx)
}

#[actix::test]
async fn a_latency_breach_raises_one_alert_and_one_recovery() {
    let (telemetry, recorder, mut rx) = start();
    tokio::time::sleep(Duration::from_millis(500)).await; // between ticks from now on
    let mut kinds = Vec::new();
    let mut ticks = 0;
    for ms in [20, 20, 200, 250, 300, 200, 60, 10, 10, 10, 10, 10] {
        rtt(&recorder, ms, 3);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (alerts, stats) = drain(&mut rx);
        kinds.extend(alerts.iter().map(|a| (ms, a.kind)));
        ticks += stats.len();
    }
    assert_eq!(kinds, vec![(200, AlertKind::Raised), (10, AlertKind::Recovered)], "one of each");
    assert_eq!(ticks, 12, "a stats-updated event per tick");
    let stats = telemetry.stats().await.unwrap();
    assert_eq!(stats.latency.samples, 30, "the last 10 s: 10 intervals of 3 round trips");
    assert_eq!(stats.latency.max_ms, Some(300.0));
    // 10 whole intervals and the open half (tokio's timer rounds each tick up to the millisecond).
    let period = stats.period();
    assert!(period >= Duration::from_millis(10_500) && period < Duration::from_millis(10_600), "{period:?}");
    let recent = telemetry.stats_over(Duration::from_secs(3)).await.unwrap();
    assert_eq!(recent.latency.samples, 9);
    assert_eq!(recent.latency.average_ms, Some(10.0));
    let rate = 9.0 / recent.period().as_secs_f64();
    assert!((recent.updates_per_second - rate).abs() < 0.01, "{} vs {rate}", recent.updates_per_second);
    let snapshot = telemetry.snapshot().await.unwrap();
    assert_eq!(snapshot.intervals.len(), 12);
    assert!(snapshot.intervals.iter().all(|i| i.latency.samples == 3));
}

#[actix::test]
async fn reset_disable_and_a_new_interval() {
    let (telemetry, recorder, mut rx) = start();
    rtt(&recorder, 20, 5);
    assert_eq!(telemetry.stats().await.unwrap().latency.samples, 5, "the open interval counts");
    telemetry.reset();
    assert_eq!(telemetry.stats().await.unwrap().latency.samples, 0);

    telemetry.set_enabled(false);
    assert_eq!(telemetry.stats().await.unwrap().latency.samples, 0);
    rtt(&recorder, 20, 5);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, stats) = drain(&mut rx);
    assert!(stats.is_empty(), "no ticks while disabled");
    assert_eq!(telemetry.stats().await.unwrap().latency.samples, 0, "nothing recorded while disabled");

    telemetry.set_enabled(true);
    let refused = telemetry.set_sampling_interval(Duration::ZERO).await;
    assert!(matches!(refused, Err(TelemetryError::Config { field: "sampling_interval", .. })), "{refused:?}");
    telemetry.set_sampling_interval(Duration::from_millis(250)).await.unwrap();
    rtt(&recorder, 20, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, stats) = drain(&mut rx);
    assert_eq!(stats.len(), 4, "ticks every 250 ms");
    assert_eq!(telemetry.stats().await.unwrap().latency.samples, 1);
    telemetry.shutdown();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(telemetry.stats().await, Err(TelemetryError::ActorGone));
}

#[actix::test]
async fn thresholds_change_while_the_monitor_runs() {
    let (telemetry, recorder, mut rx) = start();
    tokio::time::sleep(Duration::from_millis(500)).await; // between ticks from now on
                                                          // 150 ms is a breach of the starting rule (raise 100, clear 50).
    rtt(&recorder, 150, 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (alerts, _) = drain(&mut rx);
    assert_eq!(alerts.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlertKind::Raised]);

    // Looser thresholds, faster ticks, live: the same breach is not raised again,
    // and its recovery comes at the new clear (200), though 150 ms goes on.
    let looser = TelemetryConfig {
        sampling_interval: Duration::from_millis(500),
        alert_window: Duration::from_secs(1),
        window: Duration::from_secs(10),
        retention: Duration::from_secs(20),
        rules: vec![ThresholdRule::new(AlertMetric::LatencyAverage, 300.0, 200.0)],
        ..TelemetryConfig::default()
    };
    telemetry.reconfigure(looser.clone()).await.unwrap();
    let mut kinds = Vec::new();
    let mut ticks = 0;
    for _ in 0..4 {
        rtt(&recorder, 150, 3);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (alerts, stats) = drain(&mut rx);
        kinds.extend(alerts.iter().map(|a| (a.kind, a.threshold)));
        ticks += stats.len();
    }
    assert_eq!(kinds, [(AlertKind::Recovered, 200.0)], "one recovery, under the new rule");
    assert_eq!(ticks, 4, "ticks every 500 ms now");

    // The Prometheus address is bound at start; a bad rule is refused; the running settings stay.
    let moved = TelemetryConfig { prometheus: Some("127.0.0.1:9".parse().unwrap()), ..looser.clone() };
    let refused = telemetry.reconfigure(moved).await;
    assert!(matches!(refused, Err(TelemetryError::Config { field: "prometheus", .. })), "{refused:?}");
    let inverted =
        TelemetryConfig { rules: vec![ThresholdRule::new(AlertMetric::LatencyAverage, 100.0, 150.0)], ..looser };
    let refused = telemetry.reconfigure(inverted).await;
    assert!(matches!(refused, Err(TelemetryError::Config { field: "rules", .. })), "{refused:?}");
    rtt(&recorder, 250, 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (alerts, _) = drain(&mut rx);
    assert!(alerts.is_empty(), "250 ms is under the kept rule's 300: {alerts:?}");
    telemetry.shutdown();
}
