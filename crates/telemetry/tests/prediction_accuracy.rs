//! The real prediction actor's checks reach the monitor under the names it
//! reads: mispredictions lower `prediction_accuracy` below 1.0 and the default
//! accuracy rule raises its alert (issue 25: the actor once counted them under
//! a name the recorder never matched, so accuracy stayed 1.0 for ever).
//!
//! The prediction actor records through the `metrics` facade from its own
//! handlers, so the monitor's recorder is installed globally: this test is a
//! process (a test binary) of its own, and holds the only test in it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix::prelude::*;
use spacelink_prediction::{
    Position, PredictedInput, PredictionActor, PredictionConfig, PredictionListeners, Step, Walk,
};
use spacelink_telemetry::{
    AlertKind, AlertMetric, PerformanceAlert, TelemetryActor, TelemetryConfig, TelemetryListeners,
};
use tokio::sync::mpsc;

/// Stands in for the server (swallows the inputs the prediction sends) and
/// for the game (hands the monitor's alerts to the test).
struct Game(mpsc::UnboundedSender<PerformanceAlert>);

impl Actor for Game {
    type Context = Context<Self>;
}

impl Handler<PredictedInput<Step>> for Game {
    type Result = ();
    fn handle(&mut self, _msg: PredictedInput<Step>, _: &mut Self::Context) {}
}

impl Handler<PerformanceAlert> for Game {
    type Result = ();
    fn handle(&mut self, msg: PerformanceAlert, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

#[actix::test]
async fn mispredictions_lower_the_accuracy_and_raise_its_alert() {
    tokio::time::pause();
    let (tx, mut alerts) = mpsc::unbounded_channel();
    let game = Game(tx).start();
    let listeners = TelemetryListeners { stats: vec![], alerts: vec![game.clone().recipient()] };
    // The default rules: accuracy below 80 % over at least 20 checks raises.
    let (telemetry, recorder) = TelemetryActor::start_local(TelemetryConfig::default(), listeners).unwrap();
    metrics::set_global_recorder(recorder).unwrap();

    let me = PredictionActor::start(
        Walk::default(),
        PredictionConfig::default(),
        game.recipient(),
        PredictionListeners::default(),
    )
    .unwrap();
    me.server_state(1, Position::default(), 0);
    // 30 checks: every other input the server says ended one step further
    // than predicted (a misprediction), the rest it confirms as predicted.
    let mut x = 0.0;
    for seq in 1..=30u32 {
        me.predict(Step { dx: 1.0, dy: 0.0 });
        x += if seq % 2 == 0 { 2.0 } else { 1.0 };
        me.server_state(1, Position { x, y: 0.0 }, seq);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stats = telemetry.stats().await.unwrap();
    assert_eq!((stats.predictions, stats.mispredictions), (30, 15), "{stats:?}");
    let accuracy = stats.prediction_accuracy.unwrap();
    assert!((accuracy - 0.5).abs() < 1e-9, "accuracy {accuracy}");
    let mut raised = Vec::new();
    while let Ok(alert) = alerts.try_recv() {
        raised.push((alert.metric, alert.kind));
    }
    assert_eq!(raised, vec![(AlertMetric::PredictionAccuracy, AlertKind::Raised)], "one accuracy alert, raised");
    me.shutdown();
}
