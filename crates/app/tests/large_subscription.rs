//! A large initial subscription through the real server, with the default
//! heartbeat and dead-peer timeout, while the connection's states are watched:
//! hundreds of thousands of rows arrive, are decoded on the network thread and
//! applied on the actix thread, and the session is never declared dead. A test
//! binary of its own: it loads the shared server for a while.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use spacelink::reducers::ReducerListeners;
use spacelink::sync::SyncListeners;
use spacelink::{Client, ConnectionState, ModuleSchema, SpacelinkConfig};

/// The map the test fills (guildmaster's second map), and how many rows.
const MAP: u32 = 2;
const BATCHES: u32 = 3;
const PER_BATCH: u32 = 100_000;

async fn run(app: &Client, schema: &ModuleSchema, reducer: &str, json: &str) {
    let result = app.reducer_client().call_json(schema, reducer, json).await.unwrap();
    assert_eq!(result.outcome, spacelink::reducers::Outcome::Committed, "{reducer} {json}");
}

async fn connect() -> (Client, Events) {
    let (listeners, events) = collecting_listeners();
    let app = common::connect(
        SpacelinkConfig::new(config()),
        listeners,
        ReducerListeners::default(),
        SyncListeners::default(),
    )
    .await
    .unwrap();
    (app, events)
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_a_large_initial_subscription_keeps_the_connection_up() {
    // Both tests fill and clear the same map: one at a time.
    let _serial = serial();
    let schema = schema().await;
    let (writer, mut writer_events) = connect().await;
    writer_events.connected().await;
    run(&writer, &schema, "clear_spawned", &format!("[{MAP}]")).await;
    for _ in 0..BATCHES {
        run(&writer, &schema, "spawn_entities", &format!("[{MAP}, {PER_BATCH}]")).await;
    }
    let expected = sql(&format!("SELECT COUNT(*) AS n FROM entity WHERE map_id = {MAP}")).await;
    let expected = expected[0]["rows"][0][0].as_u64().unwrap() as usize;
    assert!(expected >= (BATCHES * PER_BATCH) as usize, "the server holds {expected} rows");

    // A fresh client, default heartbeat (500 ms) and dead-peer timeout (2 s).
    let (reader, mut events) = connect().await;
    let generation = events.connected().await;
    let started = Instant::now();
    let sync = reader.sync().expect("the schema is known").clone();
    let query = format!("SELECT * FROM entity WHERE map_id = {MAP}");
    let queries = [query.as_str()];
    let subscribed = tokio::time::timeout(Duration::from_secs(120), sync.subscribe(&queries)).await;
    let took = started.elapsed();
    subscribed.expect("the subscription was applied in time").unwrap();
    assert_eq!(sync.cache().count("entity"), expected, "every row is cached");

    // Watch a few more heartbeats, then check nothing was lost on the way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = reader.connection().status().await.unwrap();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.generation, generation, "the session was never replaced");
    let states = events.states_so_far();
    assert!(states.is_empty(), "the connection changed state during the load: {states:?}");
    eprintln!("{expected} rows subscribed and cached in {took:?}, latency {:?}", status.latency);

    run(&writer, &schema, "clear_spawned", &format!("[{MAP}]")).await;
    reader.shutdown();
    writer.shutdown();
}

/// One large frame on a slow link takes longer than the dead-peer timeout to
/// arrive, and the heartbeat's pong waits behind it: the bytes arriving meanwhile
/// keep the session alive (default heartbeat and dead-peer timeout, no compression,
/// the fault proxy capped at 500 kB/s: about 2.5 MB in 5 s).
#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_a_frame_slower_than_the_dead_peer_timeout_is_not_a_dead_peer() {
    const ROWS: u32 = 60_000;
    let _serial = serial();
    let schema = schema().await;
    let (writer, mut writer_events) = connect().await;
    writer_events.connected().await;
    run(&writer, &schema, "clear_spawned", &format!("[{MAP}]")).await;
    run(&writer, &schema, "spawn_entities", &format!("[{MAP}, {ROWS}]")).await;
    let expected = sql(&format!("SELECT COUNT(*) AS n FROM entity WHERE map_id = {MAP}")).await;
    let expected = expected[0]["rows"][0][0].as_u64().unwrap() as usize;

    let (proxy, mut connection) = proxied().await;
    proxy.set_bandwidth(Some(500_000));
    connection.compression = spacelink::Compression::None;
    let (listeners, mut events) = collecting_listeners();
    let reader = common::connect(
        SpacelinkConfig::new(connection),
        listeners,
        ReducerListeners::default(),
        SyncListeners::default(),
    )
    .await
    .unwrap();
    let generation = events.connected().await;
    let sync = reader.sync().expect("the schema is known").clone();
    let query = format!("SELECT * FROM entity WHERE map_id = {MAP}");
    let started = Instant::now();
    let subscribed = tokio::time::timeout(Duration::from_secs(60), sync.subscribe(&[query.as_str()])).await;
    let took = started.elapsed();
    subscribed.expect("the subscription was applied in time").unwrap();
    assert!(took > Duration::from_secs(3), "the frame took {took:?}: not slower than the dead-peer timeout");
    assert_eq!(sync.cache().count("entity"), expected, "every row is cached");
    let status = reader.connection().status().await.unwrap();
    assert_eq!(status.generation, generation, "the session was never replaced");
    let states = events.states_so_far();
    assert!(states.is_empty(), "the connection changed state during the slow frame: {states:?}");
    eprintln!("{expected} rows in one frame over {took:?} at 500 kB/s, one session");

    run(&writer, &schema, "clear_spawned", &format!("[{MAP}]")).await;
    reader.shutdown();
    writer.shutdown();
}
