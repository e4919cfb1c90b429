//! End-to-end test of client-side prediction against the real server through
//! the fault proxy, at 50, 200 and 500 ms of one-way latency with jitter: the
//! shown position follows each input at once (before the server has
//! answered it), converges to the server's position (the SQL endpoint is the
//! oracle), a step the server clamps is corrected smoothly (no teleport), and
//! a step the game's validator refuses is rolled back, and so is one the
//! server's reducer refuses (then the next input is confirmed). Accuracy and
//! correction figures are printed, not asserted as timings.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::guildmaster::*;
use common::proxy::FaultProxy;
use common::*;
// Not the bindings' `schema()` (the module's embedded schema): the server's, fetched.
use common::schema;
use spacelink::connection::lib::Identity;
use spacelink::prediction::{Position, PredictionConfig, PredictionHandle, Step, Walk};
use spacelink::reducers::{Outcome, ReducerListeners};
use spacelink::sync::SyncListeners;
use spacelink::SpacelinkConfig;

/// The player's position and last processed input, from the server's SQL endpoint.
async fn server_position(identity: Identity) -> (Position, u32) {
    let json = sql(&format!("SELECT * FROM player WHERE identity = 0x{}", identity.to_hex())).await;
    let row = &json[0]["rows"][0];
    let pos = &row[5];
    let (x, y) = match (pos.get(0), pos.get("x")) {
        (Some(x), _) => (x.as_f64().unwrap(), pos[1].as_f64().unwrap()),
        (None, Some(x)) => (x.as_f64().unwrap(), pos["y"].as_f64().unwrap()),
        _ => panic!("no position in {row}"),
    };
    (Position { x: x as f32, y: y as f32 }, row[6].as_u64().unwrap() as u32)
}

fn distance(a: Position, b: Position) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// Polls `f` every 2 ms until it is `Some`, for at most `secs`.
async fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until every input is confirmed and the shown state has settled on the prediction.
async fn settled(me: &PredictionHandle<Walk>, seq: u32) -> Position {
    until(15, "the prediction to settle", || {
        me.with_view(|v| (v.confirmed_seq == Some(seq) && v.shown == v.predicted).then_some(v.shown))
            .flatten()
            .flatten()
    })
    .await
}

/// Samples the shown state every 2 ms until it is within 1e-3 of `target`,
/// from `from`; returns the largest move between two samples and how many
/// samples were on the way (between 2 % and 98 % of the correction from the target).
async fn smoothing_toward(me: &PredictionHandle<Walk>, from: Position, target: Position) -> (f32, u32) {
    let correction = distance(from, target);
    let mut last = from;
    let (mut largest, mut on_the_way) = (0f32, 0);
    until(15, "the correction to be shown", || {
        let now = me.shown().unwrap();
        largest = largest.max(distance(now, last));
        let left = distance(now, target);
        if left > 0.02 * correction && left < 0.98 * correction {
            on_the_way += 1;
        }
        last = now;
        (left < 1e-3).then_some(())
    })
    .await;
    (largest, on_the_way)
}

/// Waits until input `seq` is applied; returns the shown state then.
async fn applied(me: &PredictionHandle<Walk>, seq: u32) -> Position {
    until(5, "the input to be applied", || {
        me.with_view(|v| (v.newest_seq == seq).then_some(v.shown)).flatten().flatten()
    })
    .await
}

async fn profile(proxy: &FaultProxy, name: &str, latency: Duration, jitter: Duration) {
    proxy.set_latency(Duration::ZERO, Duration::ZERO);
    let mut connection = config();
    connection.server_url = proxy.url();
    let mut app = common::connect(
        SpacelinkConfig::new(connection),
        Default::default(),
        ReducerListeners::default(),
        SyncListeners::default(),
    )
    .await
    .unwrap();
    let sync = app.sync().expect("the schema is known").clone();
    let schema = schema().await;
    let joined = app.reducer_client().call_json(&schema, "join", &format!(r#"["{name}", 1]"#)).await.unwrap();
    assert_eq!(joined.outcome, Outcome::Committed);
    let identity = app.connection().status().await.unwrap().identity.unwrap();
    sync.subscribe(&[&format!("SELECT * FROM player WHERE identity = 0x{}", identity.to_hex())]).await.unwrap();
    // The game refuses steps longer than 8 before sending them.
    app.reducer_client().register_typed_validator("move_player", |args: &MovePlayerArgs| {
        if args.dx.abs() > 8.0 || args.dy.abs() > 8.0 {
            Err("a step longer than 8".into())
        } else {
            Ok(())
        }
    });
    let config = PredictionConfig { snap_threshold: 20.0, ..Default::default() };
    let me = app.predict(Walk::default(), config, my_player(identity)).unwrap();
    let start = until(10, "the first server state", || me.shown()).await;
    proxy.set_latency(latency, jitter);

    // Walk: every step is shown at once, before the server has answered it.
    let step = Step { dx: 0.5, dy: 0.25 };
    let mut expected = start;
    let mut ahead = 0;
    let first = me.status().await.unwrap().next_seq;
    let inputs = 40;
    let walk_started = Instant::now();
    for i in 0..inputs {
        let seq = first + i;
        me.predict(step);
        expected.x += step.dx;
        expected.y += step.dy;
        let (shown, confirmed) = until(5, "the input to be shown", || {
            me.with_view(|v| (v.newest_seq == seq).then_some((v.shown, v.confirmed_seq))).flatten()
        })
        .await;
        assert!(distance(shown.unwrap(), expected) < 1e-3, "input #{seq} shown at once: {shown:?} vs {expected:?}");
        if confirmed.unwrap() < seq {
            ahead += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(ahead, inputs, "every input is shown before the server confirmed it");
    let last = first + inputs - 1;
    let shown = settled(&me, last).await;
    let converged_after = walk_started.elapsed();
    // The game hears the prediction in frame_tick too.
    let confirmations = app
        .frame_tick()
        .iter()
        .filter(|e| matches!(e, spacelink::Event::Prediction(spacelink::prediction::PredictionEvent::Confirmed { .. })))
        .count();
    assert!(confirmations > 0, "the prediction's confirmations reach frame_tick");
    let (server, server_seq) = server_position(identity).await;
    assert_eq!(server_seq, last);
    assert!(distance(shown, server) < 1e-3, "converged on the server's position: {shown:?} vs {server:?}");
    let walk = me.status().await.unwrap().stats;
    assert_eq!(walk.accuracy(), 1.0, "the model is exact for unclamped steps: {walk:?}");

    // A step of 5 is shown at once; the server clamps it to 1: corrected smoothly.
    me.predict(Step { dx: 5.0, dy: 0.0 });
    let jumped = applied(&me, last + 1).await;
    assert!(distance(jumped, Position { x: server.x + 5.0, y: server.y }) < 1e-3, "shown at once: {jumped:?}");
    let clamped = Position { x: server.x + 1.0, y: server.y };
    let (largest, on_the_way) = smoothing_toward(&me, jumped, clamped).await;
    let shown = settled(&me, last + 1).await;
    let (server, _) = server_position(identity).await;
    assert!(distance(shown, server) < 1e-3 && distance(server, clamped) < 1e-3, "{shown:?} {server:?}");
    assert!(on_the_way > 0, "no teleport: the correction passed through positions on the way");

    // A step the validator refuses is rolled back (smoothly: it is under the snap threshold).
    me.predict(Step { dx: 9.0, dy: 0.0 });
    let refused = applied(&me, last + 2).await;
    let (largest_rollback, on_the_way_back) = smoothing_toward(&me, refused, server).await;
    let status = me.status().await.unwrap();
    assert_eq!(status.stats.rejected, 1);
    assert!(on_the_way_back > 0, "no teleport back: the rollback passed through positions on the way");
    let (server_after, server_seq) = server_position(identity).await;
    assert_eq!((server_after, server_seq), (server, last + 1), "the refused step never reached the server");

    // A step the server itself refuses: the validator lets a NaN through (NaN > 8 is false), the
    // module's move_player fails on it ("dx and dy must be finite"). The failed call rolls the input
    // back; a NaN state is not comparable, so the rollback is shown at once rather than smoothed.
    me.predict(Step { dx: f32::NAN, dy: 0.0 });
    let poisoned = applied(&me, last + 3).await;
    assert!(poisoned.x.is_nan(), "the bad input is shown at once, like any other: {poisoned:?}");
    until(15, "the server's refusal to roll the input back", || {
        me.shown().filter(|shown| distance(*shown, server) < 1e-3).map(|_| ())
    })
    .await;
    let status = me.status().await.unwrap();
    assert_eq!(status.stats.rejected, 2, "the server's refusal counts as a rejection: {:?}", status.stats);
    let (server_after, server_seq) = server_position(identity).await;
    assert_eq!((server_after, server_seq), (server, last + 1), "the server did not move the player");
    // And the next good input is predicted from the server's state, and confirmed.
    me.predict(Step { dx: 0.5, dy: 0.0 });
    let shown = settled(&me, last + 4).await;
    let (server_after, server_seq) = server_position(identity).await;
    assert_eq!(server_seq, last + 4);
    assert!(distance(shown, server_after) < 1e-3 && distance(server_after, server) > 0.4, "{shown:?} {server_after:?}");

    let s = status.stats;
    println!(
        "prediction at {:>3} ms ± {:>3} ms: {} inputs, all shown at once; converged {:.2} s after the walk began; \
         accuracy {:.0} % ({} of {} checks); {} corrections, largest {:.2}, mean {:.2}; deepest replay {}; \
         clamped step corrected over frames (largest frame move {:.2} of {:.2}, {} samples on the way); \
         refused step rolled back (largest {:.2} of {:.2}, {} on the way)",
        latency.as_millis(),
        jitter.as_millis(),
        s.predicted,
        converged_after.as_secs_f64(),
        s.accuracy() * 100.0,
        s.accurate,
        s.checked,
        s.corrections,
        s.correction_max,
        if s.corrections > 0 { s.correction_total / s.corrections as f64 } else { 0.0 },
        s.max_replay,
        largest,
        distance(jumped, clamped),
        on_the_way,
        largest_rollback,
        distance(refused, server),
        on_the_way_back,
    );
    me.shutdown();
    app.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[actix::test]
#[ignore = "e2e: needs a running SpacetimeDB (cargo xtask test)"]
async fn prediction_follows_input_at_once_and_converges_through_latency() {
    let proxy = FaultProxy::start(upstream()).await.unwrap();
    for (i, (latency, jitter)) in [(50, 10), (200, 50), (500, 100)].into_iter().enumerate() {
        let name = format!("predictor-{i}-{}", std::process::id() % 10_000);
        profile(&proxy, &name, Duration::from_millis(latency), Duration::from_millis(jitter)).await;
    }
}
