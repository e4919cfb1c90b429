//! The performance monitor against the real server: after a session (a
//! subscription, reducer calls, heartbeats) the Prometheus endpoint serves the
//! expected series with plausible values and the stats agree; then a latency
//! spike made by the fault proxy raises exactly one alert and one recovery;
//! the snapshot exports as JSON and CSV.
//!
//! One test function: the monitor installs the process's `metrics` recorder,
//! which a process has once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use actix::prelude::*;
use common::*;
use spacelink::reducers::{Outcome, ReducerListeners};
use spacelink::sync::SyncListeners;
use spacelink::telemetry::{
    AlertKind, AlertMetric, PerformanceAlert, StatsUpdated, TelemetryConfig, TelemetryListeners, ThresholdRule,
};
use spacelink::{ExportFormat, SpacelinkConfig, TelemetrySetup};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Heard {
    Alert(PerformanceAlert),
    Stats,
}

struct Tap(mpsc::UnboundedSender<Heard>);

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<PerformanceAlert> for Tap {
    type Result = ();
    fn handle(&mut self, msg: PerformanceAlert, _: &mut Self::Context) {
        let _ = self.0.send(Heard::Alert(msg));
    }
}

impl Handler<StatsUpdated> for Tap {
    type Result = ();
    fn handle(&mut self, _: StatsUpdated, _: &mut Self::Context) {
        let _ = self.0.send(Heard::Stats);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value of the series line starting with `series ` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Alerts heard within `secs`, until `done` says enough.
async fn alerts_for(
    rx: &mut mpsc::UnboundedReceiver<Heard>,
    secs: u64,
    done: impl Fn(&[PerformanceAlert]) -> bool,
) -> Vec<PerformanceAlert> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut alerts = Vec::new();
    while !done(&alerts) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Heard::Alert(a))) => alerts.push(a),
            Ok(Some(Heard::Stats)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    alerts
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn the_monitor_exports_a_real_session_and_alerts_once_per_latency_spike() {
    let started = Instant::now();
    let (proxy, mut connection) = common::proxied().await;
    connection.heartbeat_interval = Duration::from_millis(200);
    let port = free_port();
    let (tx, mut heard) = mpsc::unbounded_channel();
    let tap = Tap(tx).start();
    let telemetry = TelemetryConfig {
        sampling_interval: Duration::from_millis(200),
        alert_window: Duration::from_secs(1),
        rules: vec![ThresholdRule { min_samples: 2, ..ThresholdRule::new(AlertMetric::LatencyAverage, 150.0, 80.0) }],
        prometheus: Some(([127, 0, 0, 1], port).into()),
        ..TelemetryConfig::default()
    };
    let mut config = SpacelinkConfig::new(connection);
    config.sync = common::guildmaster_sync();
    config.telemetry = Some(TelemetrySetup {
        config: telemetry,
        listeners: TelemetryListeners { stats: vec![tap.clone().recipient()], alerts: vec![tap.recipient()] },
    });
    let (listeners, mut events) = collecting_listeners();
    let mut app =
        common::connect(config, listeners, ReducerListeners::default(), SyncListeners::default()).await.unwrap();
    events.connected().await;
    let schema = schema().await;

    // A session: a subscription, a committed call and a failed one, heartbeats.
    let sync = app.sync().expect("the schema is known").clone();
    sync.subscribe_to_map(1).await.unwrap();
    let joined = app.reducer_client().call_json(&schema, "join", r#"["telemetry", 1]"#).await.unwrap();
    assert_eq!(joined.outcome, Outcome::Committed, "{joined:?}");
    let failed = app.reducer_client().call_json(&schema, "always_fail", r#"["on purpose"]"#).await.unwrap();
    assert!(matches!(failed.outcome, Outcome::Failed(_)), "{failed:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Off the actix thread: the endpoint is served on it.
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text =
        tokio::task::spawn_blocking(move || ureq::get(&url).call().unwrap().into_string().unwrap()).await.unwrap();
    assert_eq!(value(&text, "spacelink_connection_sessions_total"), 1.0);
    assert_eq!(value(&text, r#"spacelink_reducer_calls_total{reducer="join"}"#), 1.0);
    assert_eq!(value(&text, r#"spacelink_reducer_outcomes_total{reducer="join",outcome="committed"}"#), 1.0);
    assert_eq!(value(&text, r#"spacelink_reducer_outcomes_total{reducer="always_fail",outcome="failed"}"#), 1.0);
    assert_eq!(value(&text, "spacelink_reducer_queue_depth"), 0.0);
    let pings = value(&text, "spacelink_connection_rtt_seconds_count");
    assert!(pings >= 5.0, "2 s of heartbeats every 200 ms: {pings}");
    let mean_rtt = value(&text, "spacelink_connection_rtt_seconds_sum") / pings;
    assert!(mean_rtt > 0.0 && mean_rtt < 0.1, "a loopback round trip: {mean_rtt} s");
    assert!(value(&text, "spacelink_sync_transactions_applied_total") >= 2.0, "the subscription and the join");
    assert!(value(&text, "spacelink_sync_rows_applied_total") >= 1.0);
    assert!(value(&text, "spacelink_connection_bytes_received_total") > 100.0);
    assert!(value(&text, "spacelink_connection_bytes_sent_total") > 100.0);
    assert_eq!(value(&text, "spacelink_connection_state"), 2.0, "connected");

    let telemetry = app.telemetry().cloned().unwrap();
    let stats = telemetry.stats().await.unwrap();
    assert_eq!(stats.reducer_calls, 2);
    assert_eq!(stats.reducer_success_rate, Some(0.5));
    assert!(stats.latency.samples >= 5, "{stats:?}");
    assert!(stats.latency.average_ms.unwrap() < 100.0, "{stats:?}");
    assert!(stats.latency.max_ms >= stats.latency.p50_ms);
    assert!(stats.updates_per_second > 0.0 && stats.bytes_per_second > 0.0, "{stats:?}");
    assert_eq!(stats.reconnects, 0);

    // A latency spike: 2 × 150 ms added to each round trip for 3 s.
    let before = alerts_for(&mut heard, 0, |_| false).await;
    assert!(before.is_empty(), "no alert on a healthy loopback: {before:?}");
    proxy.set_latency(Duration::from_millis(150), Duration::ZERO);
    let raised = alerts_for(&mut heard, 3, |a| !a.is_empty()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_latency(Duration::ZERO, Duration::ZERO);
    let mut alerts = raised;
    alerts.extend(alerts_for(&mut heard, 10, |a| a.iter().any(|a| a.kind == AlertKind::Recovered)).await);
    // Quiet afterwards: nothing more however many samples come.
    alerts.extend(alerts_for(&mut heard, 2, |_| false).await);
    let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AlertKind::Raised, AlertKind::Recovered], "{alerts:#?}");
    assert!(alerts[0].value > 150.0 && alerts[1].value <= 80.0, "{alerts:#?}");
    assert!(app.connection().status().await.unwrap().state.is_connected());
    // The game heard the same through its frame loop: the stats every interval, the one alert and its recovery.
    let seen = app.frame_tick();
    let game_alerts: Vec<AlertKind> =
        seen.iter().filter_map(|e| if let spacelink::Event::Alert(a) = e { Some(a.kind) } else { None }).collect();
    assert_eq!(game_alerts, [AlertKind::Raised, AlertKind::Recovered]);
    let game_stats = seen.iter().filter(|e| matches!(e, spacelink::Event::Stats(_))).count();
    assert!(game_stats >= 20, "200 ms intervals over more than 7 s, as events: {game_stats}");

    // Export.
    let dir = std::env::temp_dir().join(format!("spacelink-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    app.export_stats(&dir.join("stats.json"), ExportFormat::Json).await.unwrap();
    app.export_stats(&dir.join("stats.csv"), ExportFormat::Csv).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("stats.json")).unwrap()).unwrap();
    assert_eq!(json["stats"]["reducer_calls"], 2);
    let csv = std::fs::read_to_string(dir.join("stats.csv")).unwrap();
    let intervals = json["intervals"].as_array().unwrap().len();
    assert!(intervals >= 20, "200 ms intervals over more than 7 s: {intervals}");
    assert_eq!(csv.lines().count(), intervals + 1, "a header and a line per interval");
    std::fs::remove_dir_all(&dir).unwrap();

    app.shutdown();
    proxy.stop();
    eprintln!("e2e_telemetry took {:?}", started.elapsed());
}
