//! The prediction actor on tokio's paused clock: settings change while it
//! runs (smoothing now faster), fixed ones are refused and nothing changes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix::prelude::*;
use spacelink_prediction::{
    Position, PredictedInput, PredictionActor, PredictionConfig, PredictionError, PredictionListeners, Step, Walk,
};

/// Swallows the inputs the actor sends (no server here).
struct Outbox;

impl Actor for Outbox {
    type Context = Context<Self>;
}

impl Handler<PredictedInput<Step>> for Outbox {
    type Result = ();
    fn handle(&mut self, _msg: PredictedInput<Step>, _: &mut Self::Context) {}
}

fn distance(a: Position, b: Position) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

#[actix::test]
async fn smoothing_settings_change_while_the_prediction_runs() {
    tokio::time::pause();
    let config = PredictionConfig { reconciliation_smoothing_time: Duration::from_secs(10), ..Default::default() };
    let outbox = Outbox.start().recipient();
    let me = PredictionActor::start(Walk::default(), config.clone(), outbox, PredictionListeners::default()).unwrap();
    me.server_state(1, Position::default(), 0);
    me.predict(Step { dx: 1.0, dy: 0.0 });
    // The server says input 1 ended at x = 3: a correction of 2, smoothed over 10 s.
    me.server_state(1, Position { x: 3.0, y: 0.0 }, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slow = me.shown().unwrap();
    assert!(distance(slow, Position { x: 3.0, y: 0.0 }) > 1.0, "over 10 s, half a second moves little: {slow:?}");

    // Faster smoothing, live: the rest of the correction is shown within its 100 ms.
    let fast = PredictionConfig { reconciliation_smoothing_time: Duration::from_millis(100), ..config.clone() };
    me.reconfigure(fast.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shown = me.shown().unwrap();
    assert!(distance(shown, Position { x: 3.0, y: 0.0 }) < 0.01, "converged with the new setting: {shown:?}");

    // The history is preallocated: its size cannot change while it runs.
    let bigger = PredictionConfig { max_prediction_history: 1024, ..fast };
    let err = me.reconfigure(bigger).await.unwrap_err();
    assert!(matches!(err, PredictionError::Config { field: "max_prediction_history", .. }), "{err}");
    assert!(err.to_string().contains("restart"), "{err}");
    assert_eq!(me.status().await.unwrap().history_len, 0);
    me.shutdown();
}
