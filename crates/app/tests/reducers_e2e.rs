//! End-to-end tests of the reducer client against the real server, with real
//! faults from the proxy: exactly-once through random cuts, the offline queue,
//! validation, batches, callbacks and the queue kept across an app restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use common::*;
use futures_util::future::join_all;
use spacelink::connection::lib::Identity;
use spacelink::reducers::{Outcome, ReducerEvent, ReducerListeners};
use spacelink::{ConnectionState, ReducerError, SpacelinkConfig};

/// `move_player(seq, dx, dy)`'s arguments in BSATN.
fn move_args(seq: u32, dx: f32, dy: f32) -> bytes::Bytes {
    let mut args = Vec::with_capacity(12);
    args.extend_from_slice(&seq.to_le_bytes());
    args.extend_from_slice(&dx.to_le_bytes());
    args.extend_from_slice(&dy.to_le_bytes());
    args.into()
}

/// `move_player`'s arguments, as the official code generator would emit them.
#[derive(spacetimedb_lib::ser::Serialize)]
#[sats(crate = spacetimedb_lib)]
struct MoveArgs {
    seq: u32,
    dx: f32,
    dy: f32,
}

/// `(last_input_seq, moves_applied)` of `identity`'s player, from the server's SQL endpoint.
async fn progress(identity: Identity) -> (u64, u64) {
    let schema = schema().await;
    let columns = &schema.table("player").unwrap().columns;
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let result = sql(&format!("SELECT * FROM player WHERE identity = 0x{}", identity.to_hex())).await;
    let row = &result[0]["rows"][0];
    (row[col("last_input_seq")].as_u64().unwrap(), row[col("moves_applied")].as_u64().unwrap())
}

async fn join(app: &spacelink::Client, name: &str) {
    let schema = schema().await;
    let args = schema.encode_reducer_args("join", &format!(r#"["{name}", 1]"#)).unwrap();
    let result = app.reducer_client().call("join", args).await.unwrap();
    assert_eq!(result.outcome, Outcome::Committed);
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_ten_thousand_sequenced_calls_through_random_cuts_run_exactly_once_in_order() {
    const CALLS: u32 = 10_000;
    let (proxy, config) = common::proxied().await;
    let (app, mut events) = start(config).await;
    events.connected().await;
    let me = events.identity().await.identity;
    join(&app, "tenk").await;

    // Cut the connection at pseudo-random moments while the calls flow.
    let cutter = {
        let proxy = proxy.clone();
        actix::spawn(async move {
            let mut state = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..6 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                tokio::time::sleep(Duration::from_millis(150 + state % 400)).await;
                proxy.cut_all();
            }
        })
    };
    let calls =
        (1..=CALLS).map(|seq| app.reducer_client().call_sequenced("move_player", move_args(seq, 0.001, 0.0), seq));
    let results = join_all(calls).await;
    cutter.await.unwrap();

    let mut resent = 0;
    for (i, result) in results.iter().enumerate() {
        let result = result.as_ref().unwrap_or_else(|e| panic!("call {} got no result: {e}", i + 1));
        assert_eq!(result.outcome, Outcome::Committed, "call {}", i + 1);
        assert_eq!(result.sequence_number, Some(i as u32 + 1));
        if result.attempts > 1 {
            resent += 1;
        }
    }
    assert!(proxy.accepted() > 1, "the connection was never cut");
    eprintln!("{resent} calls resent over {} sessions", proxy.accepted());
    // Every input ran once, and in order (the module drops a sequence number
    // not above the last one it applied, so any reordering would lose inputs).
    assert_eq!(progress(me).await, (u64::from(CALLS), u64::from(CALLS)), "{resent} calls were resent");
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_calls_made_while_the_server_is_down_run_after_it_returns_in_order_once() {
    let (proxy, config) = common::proxied().await;
    let (app, mut events) = start(config).await;
    events.connected().await;
    let me = events.identity().await.identity;
    join(&app, "offline").await;

    proxy.set_refuse(true);
    proxy.cut_all();
    events
        .wait_for(10, "Reconnecting", |e| match e {
            Event::State(s) if s.to == ConnectionState::Reconnecting => Some(()),
            _ => None,
        })
        .await;
    let reducers = app.reducer_client().clone();
    let pending = actix::spawn(async move {
        join_all((1..=50).map(|seq| reducers.call_sequenced("move_player", move_args(seq, 0.01, 0.0), seq))).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = app.reducer_client().status().await.unwrap();
    assert_eq!((status.queued, status.in_flight), (50, 0), "calls wait in the queue while offline");

    proxy.set_refuse(false);
    let results = tokio::time::timeout(Duration::from_secs(30), pending).await.unwrap().unwrap();
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|r| r.outcome == Outcome::Committed)), "{results:?}");
    assert_eq!(progress(me).await, (50, 50));
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_invalid_calls_never_reach_the_server_and_failures_arrive_unchanged() {
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let me = events.identity().await.identity;
    join(&app, "careful").await;
    app.reducer_client().set_schema(Arc::new(schema().await));
    app.reducer_client().register_validator("move_player", |args| {
        let dx = f32::from_le_bytes(args.get(4..8).ok_or("short")?.try_into().map_err(|_| "short")?);
        if dx.abs() > 10.0 {
            return Err(format!("a step of {dx} is a teleport"));
        }
        Ok(())
    });

    let err = app.reducer_client().call_sequenced("move_player", move_args(1, 100.0, 0.0), 1).await.unwrap_err();
    assert!(matches!(&err, ReducerError::Invalid { reason, .. } if reason.contains("teleport")), "{err}");
    let err = app.reducer_client().call("no_such_reducer", bytes::Bytes::new()).await.unwrap_err();
    assert_eq!(err, ReducerError::UnknownReducer("no_such_reducer".into()));
    let err = app.reducer_client().call("join", vec![1, 2].into()).await.unwrap_err();
    assert!(matches!(err, ReducerError::Invalid { .. }), "{err}");
    let err = app.reducer_client().call("init", bytes::Bytes::new()).await.unwrap_err();
    assert_eq!(err, ReducerError::UnknownReducer("init".into()), "lifecycle reducers cannot be called");
    let huge = spacelink::connection::sats::bsatn::to_vec(&"x".repeat(100_000)).unwrap();
    let err = app.reducer_client().call("always_fail", huge.into()).await.unwrap_err();
    assert!(matches!(err, ReducerError::TooLarge { size, limit: 65536, .. } if size > 100_000), "{err}");
    // None of them ran.
    assert_eq!(progress(me).await, (0, 0));

    // A reducer that runs and fails: its message, unchanged, and no retry.
    let message = "the bridge is out ✓ \"quoted\"";
    let args = spacelink::connection::sats::bsatn::to_vec(&message.to_string()).unwrap();
    let result = app.reducer_client().call("always_fail", args.into()).await.unwrap();
    assert_eq!(result.outcome, Outcome::Failed(message.to_string()));
    assert_eq!(result.attempts, 1);
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_batches_answer_in_order_and_cancelled_batches_send_nothing() {
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let me = events.identity().await.identity;
    join(&app, "batcher").await;
    let fail = spacelink::connection::sats::bsatn::to_vec(&"third".to_string()).unwrap();

    app.reducer_client().begin_batch();
    let (r1, r2, r3) = (app.reducer_client().clone(), app.reducer_client().clone(), app.reducer_client().clone());
    let callers = vec![
        actix::spawn(async move { r1.call_sequenced("move_player", move_args(1, 1.0, 0.0), 1).await }),
        actix::spawn(async move { r2.call_sequenced("move_player", move_args(2, 1.0, 0.0), 2).await }),
        actix::spawn(async move { r3.call("always_fail", fail.into()).await }),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(progress(me).await, (0, 0), "nothing is sent before the batch executes");
    let results = app.reducer_client().execute_batch().await.unwrap();
    let outcomes: Vec<Outcome> = results.into_iter().map(|r| r.unwrap().outcome).collect();
    assert_eq!(outcomes, [Outcome::Committed, Outcome::Committed, Outcome::Failed("third".into())]);
    for caller in callers {
        assert!(caller.await.unwrap().is_ok(), "each caller gets its own result too");
    }

    app.reducer_client().begin_batch();
    let r = app.reducer_client().clone();
    let cancelled = actix::spawn(async move { r.call_sequenced("move_player", move_args(3, 1.0, 0.0), 3).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.reducer_client().cancel_batch();
    assert_eq!(cancelled.await.unwrap().unwrap_err(), ReducerError::Cancelled);
    assert_eq!(progress(me).await, (2, 2));
    app.shutdown();
}

/// Forwards reducer events into a channel.
struct Tap(tokio::sync::mpsc::UnboundedSender<ReducerEvent>);

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<ReducerEvent> for Tap {
    type Result = ();
    fn handle(&mut self, msg: ReducerEvent, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_callbacks_hear_other_clients_calls_and_events_tell_our_own() {
    let (tx, mut observed) = tokio::sync::mpsc::unbounded_channel();
    let tap = Tap(tx).start();
    let (watcher, mut events) = start(config()).await;
    events.connected().await;
    let query = watcher.connection().subscribe(&["SELECT * FROM player".to_string()]).await.unwrap();
    events.applied(query).await;
    let id = watcher.reducer_client().register_callback("join", tap.clone().recipient()).await.unwrap();

    let (tx2, mut own) = tokio::sync::mpsc::unbounded_channel();
    let own_tap = Tap(tx2).start();
    let (other, mut other_events) = start_with_reducer_listeners(own_tap.recipient()).await;
    other_events.connected().await;
    let other_identity = other_events.identity().await.identity;
    join(&other, "other").await;

    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(ReducerEvent::Observed { reducer, caller, ours, outcome, .. }) = observed.recv().await {
                if caller == other_identity {
                    return (reducer, ours, outcome);
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(seen, ("join".to_string(), false, Outcome::Committed));
    // The caller's own listeners heard the call and its completion.
    let mut kinds = Vec::new();
    while let Ok(event) = own.try_recv() {
        kinds.push(match event {
            ReducerEvent::Called { .. } => "called",
            ReducerEvent::Completed(_) => "completed",
            ReducerEvent::Failed { .. } => "failed",
            ReducerEvent::Observed { .. } => "observed",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["called", "completed"]);
    assert!(watcher.reducer_client().unregister_callback(id).await.unwrap());
    watcher.shutdown();
    other.shutdown();
}

async fn start_with_reducer_listeners(recipient: Recipient<ReducerEvent>) -> (spacelink::Client, Events) {
    start_configured(SpacelinkConfig::new(config()), ReducerListeners { events: vec![recipient] }).await
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_queued_calls_survive_an_app_restart() {
    let dir = std::env::temp_dir().join(format!("spacelink-queue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("calls.postcard");
    let _ = std::fs::remove_file(&file);

    let (proxy, connection) = common::proxied().await;
    let mut first_config = SpacelinkConfig::new(connection);
    first_config.queue_file = Some(file.clone());
    let (first, mut events) = start_configured(first_config, ReducerListeners::default()).await;
    events.connected().await;
    let identity = events.identity().await;
    join(&first, "restarted").await;

    // Offline: the calls wait in the queue, which is saved; then the app quits.
    proxy.set_refuse(true);
    proxy.cut_all();
    let reducers = first.reducer_client().clone();
    let waiting = actix::spawn(async move {
        join_all((1..=5).map(|seq| reducers.call_sequenced("move_player", move_args(seq, 0.5, 0.0), seq))).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.shutdown();
    let cancelled = waiting.await.unwrap();
    assert!(cancelled.iter().all(|r| r == &Err(ReducerError::Cancelled)), "{cancelled:?}");
    assert!(std::fs::metadata(&file).unwrap().len() > 0);

    // The app starts again (same player, server reachable): the saved calls go out.
    let mut connection = config();
    connection.token = Some(identity.token.expose().to_string());
    let mut second_config = SpacelinkConfig::new(connection);
    second_config.queue_file = Some(file.clone());
    let (second, mut events) = start_configured(second_config, ReducerListeners::default()).await;
    events.connected().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while progress(identity.identity).await != (5, 5) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "restored calls did not run: {:?}",
            progress(identity.identity).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_fire_and_forget_calls_run_without_an_answer() {
    let (tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let tap = Tap(tx).start();
    let (app, mut events) = start_with_reducer_listeners(tap.recipient()).await;
    events.connected().await;
    let me = events.identity().await.identity;
    let schema = schema().await;
    let joined = app.reducer_client().call_json(&schema, "join", r#"["fire", 1]"#).await.unwrap();
    assert_eq!(joined.outcome, Outcome::Committed);

    // Returns at once: it does not wait for the reducer actor.
    app.reducer_client().fire("move_player", move_args(1, 1.0, 0.0)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while progress(me).await != (1, 1) {
        assert!(tokio::time::Instant::now() < deadline, "the fired call did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It was told as called, and then it is simply done: nothing is held.
    let mut called = false;
    while let Ok(event) = told.try_recv() {
        match event {
            // The only move_player call of this test.
            ReducerEvent::Called { reducer, .. } if reducer == "move_player" => called = true,
            ReducerEvent::Completed(r) if r.reducer == "move_player" => {
                panic!("no answer comes for a fired call: {r:?}")
            }
            _ => {}
        }
    }
    assert!(called);
    let status = app.reducer_client().status().await.unwrap();
    assert_eq!((status.queued, status.in_flight), (0, 0));
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_calls_through_the_connection_and_the_reducer_client_share_one_id_space() {
    let (app, mut events) = start(config()).await;
    events.connected().await;
    join(&app, "ids").await;
    let mut raw_ids = Vec::new();
    for i in 1..=10u32 {
        // A raw call on the connection handle, then one through the reducer
        // client (both committing: SpacetimeDB 1.3 keeps the request id of
        // those only): no id is used twice, so each gets its own answer.
        let raw = app
            .connection()
            .call_reducer(
                "move_player",
                move_args(2 * i - 1, 0.001, 0.0),
                spacelink::connection::ws::CallReducerFlags::FullUpdate,
            )
            .await
            .unwrap();
        raw_ids.push(raw);
        let result = app.reducers().call("move_player", &MoveArgs { seq: 2 * i, dx: 0.001, dy: 0.0 }).await.unwrap();
        assert_eq!(result.outcome, Outcome::Committed, "call {i}");
        assert!(!raw_ids.contains(&result.request_id), "request id {} used twice", result.request_id);
        let tx = events.transaction(raw, "move_player").await;
        assert_eq!(outcome(&tx), Ok(()), "the raw call got its own answer");
    }
    app.shutdown();
}
