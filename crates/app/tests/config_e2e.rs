//! Hot reload against the real server: a settings file edited while the
//! client runs changes the live connection's heartbeat interval, and a change
//! of database is refused, saying a restart is needed; the performance
//! monitor's sampling and thresholds and a prediction's smoothing change live
//! too, and a setting fixed at start (the history's size) is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use spacelink::settings::SettingsLoader;
use spacelink::watcher::{SettingsEvent, SettingsWatcher};
use spacelink::Client;
use tokio::sync::mpsc;

/// Counts the monitor's stats-updated events.
struct Ticks(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Actor for Ticks {
    type Context = Context<Self>;
}

impl Handler<spacelink::telemetry::StatsUpdated> for Ticks {
    type Result = ();
    fn handle(&mut self, _msg: spacelink::telemetry::StatsUpdated, _: &mut Self::Context) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Swallows a standalone prediction's inputs.
struct Outbox;

impl Actor for Outbox {
    type Context = Context<Self>;
}

impl Handler<spacelink::prediction::PredictedInput<spacelink::prediction::Step>> for Outbox {
    type Result = ();
    fn handle(&mut self, _: spacelink::prediction::PredictedInput<spacelink::prediction::Step>, _: &mut Self::Context) {
    }
}

fn settings_file(server: &str, db: &str, heartbeat: &str) -> String {
    format!(
        "[default.connection]\nserver_url = \"{server}\"\ndatabase = \"{db}\"\nheartbeat_interval = \"{heartbeat}\"\n\
         dead_peer_timeout = \"30s\"\n[default.auth]\nstore = \"memory\"\n"
    )
}

/// Distinct pong times seen while sampling the status for `window`.
async fn pongs_during(app: &Client, window: Duration) -> usize {
    let mut seen = HashSet::new();
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        if let Some(at) = app.connection().status().await.unwrap().last_heartbeat {
            seen.insert(at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.len()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<SettingsEvent>) -> SettingsEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a settings event in time").unwrap()
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn config_an_edited_file_changes_the_live_heartbeat_interval() {
    let (server, db) = common::server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    std::fs::write(&path, settings_file(&server, &db, "10s")).unwrap();
    let loader = SettingsLoader::new().env_prefix(None).file(&path);
    let settings = loader.load().unwrap();
    let config = settings.spacelink_config().unwrap();
    let (listeners, mut events) = common::collecting_listeners();
    let app = common::build(config, listeners, Default::default()).await;
    let generation = events.connected().await;
    let (heard, mut rx) = common::tap::<SettingsEvent>();
    let watcher =
        SettingsWatcher::new(loader, settings, app.connection().clone(), Duration::from_millis(100), vec![heard])
            .start();

    // A heartbeat every 10 s: hardly a pong in three seconds.
    assert!(pongs_during(&app, Duration::from_secs(3)).await <= 1);

    std::fs::write(&path, settings_file(&server, &db, "200ms")).unwrap();
    let SettingsEvent::Applied(applied) = next(&mut rx).await else { panic!("the new heartbeat is applied") };
    assert_eq!(applied.connection.heartbeat_interval, Duration::from_millis(200));
    // Every 200 ms now: many pongs in three seconds, on the same session.
    let pongs = pongs_during(&app, Duration::from_secs(3)).await;
    assert!(pongs >= 5, "{pongs} pongs");
    assert_eq!(app.connection().status().await.unwrap().generation, generation, "no reconnect");

    // Another database cannot be switched to live.
    std::fs::write(&path, settings_file(&server, "another_db", "200ms")).unwrap();
    let SettingsEvent::Refused(e) = next(&mut rx).await else { panic!("a database change is refused") };
    assert_eq!(e.field, "connection.database");
    assert!(e.reason.contains("restart"), "{}", e.reason);
    // A broken file is refused too, naming the field, and the running settings stay.
    std::fs::write(&path, settings_file(&server, &db, "-5s")).unwrap();
    let SettingsEvent::Refused(e) = next(&mut rx).await else { panic!("a bad file is refused") };
    assert_eq!(e.field, "connection.heartbeat_interval");
    assert!(pongs_during(&app, Duration::from_secs(1)).await >= 2);
    drop(watcher);
    app.shutdown();
}

fn tuned_file(server: &str, db: &str, sampling: &str, raise: f64, smoothing: &str, history: usize) -> String {
    format!(
        "{}[default.telemetry]\nmonitor = true\nsampling_interval = \"{sampling}\"\n\
         rules = [{{ metric = \"latency_average\", raise = {raise:.1}, clear = 1.0 }}]\n\
         [default.prediction]\nreconciliation_smoothing_time = \"{smoothing}\"\nmax_prediction_history = {history}\n",
        settings_file(server, db, "1s")
    )
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn config_an_edited_file_retunes_the_monitor_and_a_prediction_live() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (server, db) = common::server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    std::fs::write(&path, tuned_file(&server, &db, "2s", 5000.0, "250ms", 256)).unwrap();
    let loader = SettingsLoader::new().env_prefix(None).file(&path);
    let settings = loader.load().unwrap();
    let mut config = settings.spacelink_config().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let setup = config.telemetry.as_mut().expect("monitor = true");
    setup.listeners.stats.push(Ticks(ticks.clone()).start().recipient());
    let (listeners, mut events) = common::collecting_listeners();
    let app = common::build(config, listeners, Default::default()).await;
    events.connected().await;
    let telemetry = app.telemetry().cloned().expect("the monitor runs");
    let prediction = spacelink::prediction::PredictionActor::start(
        spacelink::prediction::Walk::default(),
        settings.prediction_config().unwrap(),
        Outbox.start().recipient(),
        Default::default(),
    )
    .unwrap();
    let (heard, mut rx) = common::tap::<SettingsEvent>();
    let watcher =
        SettingsWatcher::new(loader, settings, app.connection().clone(), Duration::from_millis(100), vec![heard])
            .auth(app.auth().clone())
            .telemetry(telemetry.clone())
            .prediction(prediction.reconfigure_recipient())
            .start();

    // Sampling every 2 s: at most two ticks in three seconds.
    ticks.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ticks.load(Ordering::Relaxed) <= 2, "{} ticks", ticks.load(Ordering::Relaxed));

    // Every 100 ms, a latency threshold of 2 ms (loopback is far under), faster smoothing: applied live.
    std::fs::write(&path, tuned_file(&server, &db, "100ms", 2.0, "50ms", 256)).unwrap();
    let SettingsEvent::Applied(applied) = next(&mut rx).await else { panic!("the new monitor settings are applied") };
    assert_eq!(applied.telemetry.sampling_interval, Duration::from_millis(100));
    assert_eq!(applied.prediction.reconciliation_smoothing_time, Duration::from_millis(50));
    ticks.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fast = ticks.load(Ordering::Relaxed);
    assert!(fast >= 10, "ticks every 100 ms now: {fast} in 2 s");
    let snapshot = telemetry.snapshot().await.unwrap();
    assert!(!snapshot.intervals.is_empty());

    // The history is preallocated: its size is fixed while the client runs; nothing changes.
    std::fs::write(&path, tuned_file(&server, &db, "1s", 2.0, "50ms", 1024)).unwrap();
    let SettingsEvent::Refused(e) = next(&mut rx).await else { panic!("a history size change is refused") };
    assert_eq!(e.field, "prediction.max_prediction_history");
    assert!(e.reason.contains("restart"), "{}", e.reason);
    ticks.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ticks.load(Ordering::Relaxed) >= 5, "the running sampling (100 ms) stays");
    drop(watcher);
    prediction.shutdown();
    app.shutdown();
}
