//! Bad input from the game, against the real server: oversized reducer
//! arguments, malformed and refused queries, a subscription to a table that
//! does not exist, a full offline queue, calls after `shutdown`, and a watched
//! settings file rewritten to garbage. Each gets a clear typed error at once
//! (every wait is bounded), no actor panics (none is restarted), and the calls
//! acknowledged before the bad input are still in the database (the server's
//! SQL endpoint says so).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use spacelink::reducers::ReducerError;
use spacelink::settings::SettingsLoader;
use spacelink::status::SubscriptionState;
use spacelink::sync::SubscriptionId;
use spacelink::watcher::{SettingsEvent, SettingsWatcher};
use spacelink::{Child, Client, ClientError, SpacelinkConfig};
use tokio::sync::mpsc;

/// Every wait for an answer: bad input is answered at once, never hangs.
const PROMPT: Duration = Duration::from_secs(5);

/// Ids of `all_types` rows no earlier run wrote (the database is not cleared
/// between runs): `n` (below 100) of this run.
fn id(n: u32) -> u32 {
    static RUN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        u32::try_from(secs % 40_000_000).unwrap()
    });
    run * 100 + n
}

/// `insert_sample(id)`'s arguments in BSATN (one `u32`).
fn sample(id: u32) -> Bytes {
    Bytes::copy_from_slice(&id.to_le_bytes())
}

/// Calls `insert_sample(id)` and waits (bounded) for its acknowledgement.
async fn acknowledged(app: &Client, id: u32) {
    let result = tokio::time::timeout(Duration::from_secs(15), app.reducers().call_bsatn("insert_sample", sample(id)))
        .await
        .expect("the call is answered");
    assert!(result.is_ok(), "insert_sample({id}): {result:?}");
}

/// The row `insert_sample(id)` wrote is in the database (asked of the server, not of our cache).
async fn assert_in_database(id: u32) {
    let oracle = common::sql(&format!("SELECT id FROM all_types WHERE id = {id}")).await;
    assert_eq!(oracle[0]["rows"].as_array().unwrap().len(), 1, "row {id} is in the database: {oracle}");
}

/// No actor of the tree panicked or failed (none was restarted). The
/// connection's restart is its reconnection: checked only when no session was lost.
fn assert_no_restart(app: &Client, session_lost: bool) {
    let children: &[Child] = if session_lost { &[] } else { &[Child::Connection] };
    for &child in children.iter().chain(&[Child::Sync, Child::Reducers, Child::Auth]) {
        assert_eq!(app.restarts(child), 0, "{child:?} was restarted");
    }
}

/// A client of the real server, connected, with reducer settings `reducers`.
async fn connected(
    connection: spacelink::ConnectionConfig,
    reducers: spacelink::ReducerConfig,
) -> (Client, common::Events) {
    let mut config = SpacelinkConfig::new(connection);
    config.reducers = reducers;
    let (listeners, mut events) = common::collecting_listeners();
    let app = common::build(config, listeners, Default::default()).await;
    events.connected().await;
    (app, events)
}

/// Polls the client's status (bounded) until subscription `id` is refused for good.
async fn refused_for_good(app: &Client, id: SubscriptionId) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match app.status().subscriptions.get(&id) {
            Some(SubscriptionState::Failed { error, retrying: false }) => return error.clone(),
            Some(SubscriptionState::Applied) => panic!("subscription {id:?} applied"),
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "subscription {id:?} not refused for good in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn bad_input_oversized_reducer_arguments_are_refused_before_sending() {
    let reducers = spacelink::ReducerConfig { max_args_size: 1024, ..Default::default() };
    let (app, _events) = connected(common::config(), reducers).await;
    acknowledged(&app, id(1)).await;

    let huge = Bytes::from(vec![7u8; 1025]);
    let result = tokio::time::timeout(PROMPT, app.reducers().call_bsatn("insert_sample", huge)).await.unwrap();
    let Err(ReducerError::TooLarge { reducer, size, limit }) = result else { panic!("{result:?}") };
    assert_eq!((reducer.as_str(), size, limit), ("insert_sample", 1025, 1024));
    // A fire-and-forget call is held to the same limit at once.
    let result = app.reducers().fire("insert_sample", &vec![0u8; 2048]);
    assert!(matches!(result, Err(ReducerError::TooLarge { .. })), "{result:?}");
    // A reducer the module does not have, and arguments that do not decode.
    let result = tokio::time::timeout(PROMPT, app.reducers().call_bsatn("no_such_reducer", sample(1))).await.unwrap();
    assert!(matches!(result, Err(ReducerError::UnknownReducer(_))), "{result:?}");
    let result = tokio::time::timeout(PROMPT, app.reducers().call_bsatn("insert_sample", Bytes::from_static(&[1])))
        .await
        .unwrap();
    assert!(matches!(result, Err(ReducerError::Invalid { .. })), "three bytes short of a u32: {result:?}");

    // The client goes on, and what was acknowledged stays.
    acknowledged(&app, id(2)).await;
    assert_in_database(id(1)).await;
    assert_in_database(id(2)).await;
    assert_no_restart(&app, false);
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn bad_input_malformed_and_refused_queries_fail_with_a_typed_error() {
    let (app, _events) = connected(common::config(), Default::default()).await;
    acknowledged(&app, id(11)).await;

    for sql in ["SELEC * FORM all_types", "SELECT * FROM no_such_table", "", "SELECT * FROM all_types WHERE id = 'x'"] {
        let result = tokio::time::timeout(PROMPT, app.query(sql)).await.expect("a one-off query is answered");
        let Err(ClientError::Query(reason)) = result else { panic!("{sql:?}: {result:?}") };
        assert!(!reason.is_empty(), "{sql:?}: a reason");
    }
    // A malformed subscription is refused for good, not retried forever.
    let malformed = app.subscribe(&["SELEC * FORM all_types"]);
    let error = refused_for_good(&app, malformed).await;
    assert!(!error.is_empty());

    // A good query still answers, and what was acknowledged stays.
    let rows = tokio::time::timeout(PROMPT, app.query(&format!("SELECT * FROM all_types WHERE id = {}", id(11))))
        .await
        .unwrap();
    assert_eq!(rows.unwrap().count("all_types"), 1);
    assert_in_database(id(11)).await;
    assert_no_restart(&app, false);
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn bad_input_a_subscription_to_a_table_that_does_not_exist_is_refused_for_good() {
    let (app, _events) = connected(common::config(), Default::default()).await;
    acknowledged(&app, id(21)).await;
    let good = app.subscribe(&["SELECT * FROM map"]);
    let bad = app.subscribe(&["SELECT * FROM no_such_table"]);
    let error = refused_for_good(&app, bad).await;
    assert!(error.contains("no_such_table"), "the server's message names the table: {error}");
    // The other query set is not disturbed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app.status().subscriptions.get(&good) != Some(&SubscriptionState::Applied) {
        assert!(tokio::time::Instant::now() < deadline, "the good subscription applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acknowledged(&app, id(22)).await;
    assert_in_database(id(21)).await;
    assert_no_restart(&app, false);
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn bad_input_a_full_offline_queue_refuses_new_calls_and_keeps_the_queued_ones() {
    let (proxy, mut connection) = common::proxied().await;
    connection.retry.initial_delay = Duration::from_millis(100);
    connection.retry.max_delay = Duration::from_millis(500);
    let reducers = spacelink::ReducerConfig { queue_capacity: 4, max_in_flight: 2, ..Default::default() };
    let (app, mut events) = connected(connection, reducers).await;
    acknowledged(&app, id(31)).await;

    // Offline: the proxy refuses new connections and cuts the live one.
    proxy.set_refuse(true);
    proxy.cut_all();
    events
        .wait_for(10, "the session to be lost", |e| match e {
            common::Event::State(s) if !s.to.is_connected() => Some(()),
            _ => None,
        })
        .await;
    let queued: Vec<_> = (id(32)..id(36)).map(|n| app.reducers().call_bsatn("insert_sample", sample(n))).collect();
    let result =
        tokio::time::timeout(PROMPT, app.reducers().call_bsatn("insert_sample", sample(id(36)))).await.unwrap();
    assert!(
        matches!(result, Err(ReducerError::QueueFull(spacelink::reducers::ledger::QueueFull { capacity: 4 }))),
        "{result:?}"
    );

    // Back online: every queued call is sent and acknowledged; the refused one never ran.
    proxy.set_refuse(false);
    for (call, n) in queued.into_iter().zip(id(32)..) {
        let result = tokio::time::timeout(Duration::from_secs(30), call).await.expect("a queued call is answered");
        assert!(result.is_ok(), "queued insert_sample({n}): {result:?}");
    }
    for n in id(31)..id(36) {
        assert_in_database(n).await;
    }
    let oracle = common::sql(&format!("SELECT id FROM all_types WHERE id = {}", id(36))).await;
    assert!(oracle[0]["rows"].as_array().unwrap().is_empty(), "the refused call never ran: {oracle}");
    assert_no_restart(&app, true);
    app.shutdown();
    proxy.stop();
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn bad_input_calls_after_shutdown_fail_at_once() {
    let (app, _events) = connected(common::config(), Default::default()).await;
    acknowledged(&app, id(41)).await;
    app.shutdown();
    // Right after `shutdown` (the tree still stopping), and once it has stopped: refused at once, never sent.
    let result = tokio::time::timeout(PROMPT, app.reducers().call_bsatn("insert_sample", sample(id(42))))
        .await
        .expect("a call right after shutdown fails at once");
    assert!(matches!(result, Err(ReducerError::ActorGone)), "{result:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let result = tokio::time::timeout(PROMPT, app.reducers().call_bsatn("insert_sample", sample(id(42))))
        .await
        .expect("a call after shutdown fails at once");
    assert!(matches!(result, Err(ReducerError::ActorGone)), "{result:?}");
    let result = app.reducers().fire("insert_sample", &id(43));
    assert!(matches!(result, Err(ReducerError::ActorGone)), "{result:?}");
    let result = tokio::time::timeout(PROMPT, app.query("SELECT * FROM map"))
        .await
        .expect("a query after shutdown fails at once");
    assert!(matches!(result, Err(ClientError::Connection(spacelink::ConnectionError::ActorGone))), "{result:?}");
    // A query right after `shutdown` fails at once too, and a subscription is
    // cancelled at once: nothing panics, nothing waits, nothing is sent.
    let result = tokio::time::timeout(PROMPT, app.query("SELECT * FROM config")).await.expect("at once");
    assert!(matches!(result, Err(ClientError::Connection(spacelink::ConnectionError::ActorGone))), "{result:?}");
    let late = app.subscribe(&["SELECT * FROM map"]);
    assert_eq!(app.status().subscriptions.get(&late), Some(&spacelink::SubscriptionState::Cancelled));
    assert!(app.status().shut_down);
    assert_in_database(id(41)).await;
    let oracle = common::sql(&format!("SELECT id FROM all_types WHERE id = {}", id(42))).await;
    assert!(oracle[0]["rows"].as_array().unwrap().is_empty(), "nothing was sent after shutdown: {oracle}");
}

/// The watcher's next event (bounded).
async fn next(rx: &mut mpsc::UnboundedReceiver<SettingsEvent>) -> SettingsEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a settings event").unwrap()
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn bad_input_a_watched_settings_file_turned_to_garbage_is_refused_and_the_running_settings_stay() {
    let (server, db) = common::server();
    let file = |heartbeat: &str| {
        format!(
            "[default.connection]\nserver_url = \"{server}\"\ndatabase = \"{db}\"\nheartbeat_interval = \"{heartbeat}\"\n\
             [default.auth]\nstore = \"memory\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    std::fs::write(&path, file("1s")).unwrap();
    let loader = SettingsLoader::new().env_prefix(None).file(&path);
    let settings = loader.load().unwrap();
    let (listeners, mut events) = common::collecting_listeners();
    let app = common::build(settings.spacelink_config().unwrap(), listeners, Default::default()).await;
    let generation = events.connected().await;
    acknowledged(&app, id(51)).await;
    let (heard, mut rx) = common::tap::<SettingsEvent>();
    let _watcher =
        SettingsWatcher::new(loader, settings, app.connection().clone(), Duration::from_millis(100), vec![heard])
            .start();

    // Not TOML at all, then binary garbage, then an empty file: each refused with a typed error.
    let garbage: [(&[u8], &str); 3] = [
        (b"[default.connection\nheartbeat_interval = = \x01", "file"),
        (&[0xff, 0xfe, 0x00, 0x9c], "file"),
        (b"", "connection.server_url"),
    ];
    for (bytes, field) in garbage {
        std::fs::write(&path, bytes).unwrap();
        let event = next(&mut rx).await;
        let SettingsEvent::Refused(e) = event else { panic!("garbage is refused: {event:?}") };
        assert_eq!(e.field, field, "{e:?}");
        assert!(!e.reason.is_empty(), "{e:?}");
    }
    // The running settings stay: the same session, calls still go through.
    let status = app.connection().status().await.unwrap();
    assert!(status.state.is_connected());
    assert_eq!(status.generation, generation, "no reconnect");
    acknowledged(&app, id(52)).await;
    // A good file afterwards is applied: the watcher is still watching.
    std::fs::write(&path, file("700ms")).unwrap();
    let event = next(&mut rx).await;
    let SettingsEvent::Applied(applied) = event else { panic!("a good file is applied: {event:?}") };
    assert_eq!(applied.connection.heartbeat_interval, Duration::from_millis(700));
    assert_in_database(id(51)).await;
    assert_in_database(id(52)).await;
    assert_no_restart(&app, false);
    app.shutdown();
}
