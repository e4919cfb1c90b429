//! The game installed its own global `metrics` recorder first: spacelink's
//! monitor still starts (it installs no global), still hears the series
//! recorded on spacelink's threads, and the game's recorder hears them too;
//! what the game records on its own threads stays the game's alone.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use spacelink_connection::metric_names as names;
use spacelink_connection::recording;
use spacelink_telemetry::{TelemetryActor, TelemetryConfig, TelemetryError, TelemetryListeners};

type Totals = Arc<Mutex<HashMap<String, u64>>>;

/// The game's recorder: counter totals by name.
struct GameRecorder(Totals);

struct GameCounter(String, Totals);

impl CounterFn for GameCounter {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
    }

    fn absolute(&self, _: u64) {}
}

impl Recorder for GameRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(GameCounter(key.name().to_string(), self.0.clone())))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[actix::test]
async fn the_monitor_runs_beside_the_games_own_recorder_and_both_hear_spacelinks_series() {
    let totals = Totals::default();
    metrics::set_global_recorder(GameRecorder(totals.clone())).unwrap();
    let total = |name: &str| totals.lock().unwrap().get(name).copied().unwrap_or(0);

    let telemetry = TelemetryActor::start_in(TelemetryConfig::default(), TelemetryListeners::default(), |ctx, a| {
        ctx.run(a);
    })
    .unwrap();
    assert!(recording::is_routed(), "the caller's (actix) thread is spacelink's");

    // On spacelink's actix thread, and on another thread of spacelink's.
    for _ in 0..3 {
        metrics::counter!(names::REDUCER_CALLS, "reducer" => "join").increment(1);
    }
    std::thread::spawn(|| {
        recording::route_this_thread();
        metrics::counter!(names::SYNC_TRANSACTIONS_APPLIED).increment(2);
        metrics::counter!(names::CONNECTION_RECONNECTS).increment(1);
    })
    .join()
    .unwrap();
    // On a thread of the game's own: the game's recorder only.
    std::thread::spawn(|| metrics::counter!(names::CONNECTION_RECONNECTS).increment(10)).join().unwrap();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stats = telemetry.stats().await.unwrap();
    assert_eq!(stats.reducer_calls, 3);
    assert_eq!(stats.reconnects, 1, "the game's own thread is not spacelink's");
    assert!(stats.updates_per_second > 0.0, "{stats:?}");

    assert_eq!(total(names::REDUCER_CALLS), 3, "the game hears spacelink's series too");
    assert_eq!(total(names::SYNC_TRANSACTIONS_APPLIED), 2);
    assert_eq!(total(names::CONNECTION_RECONNECTS), 11);

    // Asking for the global recorder where the game has one is a typed error.
    let global = TelemetryConfig { install_global_recorder: true, ..TelemetryConfig::default() };
    let refused = TelemetryActor::start_in(global, TelemetryListeners::default(), |ctx, a| {
        ctx.run(a);
    });
    assert!(matches!(refused, Err(TelemetryError::RecorderInstalled)), "{refused:?}");
}
