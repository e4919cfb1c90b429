//! End to end: a spacelink synced with the real server through our hostile
//! server, which forwards to the real one until it turns hostile. For each
//! hostile case: the sessions fail with a clear reason, the backoff grows, the
//! cache keeps what it had, and once the good server is back the cache is
//! reconciled with what the server has now (checked against its SQL endpoint).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use spacelink::connection::hostile::{catalogue, Case, HostileServer};
use spacelink::reducers::ReducerListeners;
use spacelink::sync::SyncListeners;
use spacelink::{Client, ConnectionState, ModuleSchema, RetryPolicy, SpacelinkConfig};

/// The `entity_id`s of map 2's entities, from the server's SQL endpoint.
async fn ids_from_sql(schema: &ModuleSchema) -> BTreeSet<u64> {
    let columns = &schema.table("entity").unwrap().columns;
    let id = columns.iter().position(|c| c == "entity_id").unwrap();
    let result = sql("SELECT * FROM entity WHERE map_id = 2").await;
    result[0]["rows"].as_array().unwrap().iter().map(|row| row[id].as_u64().unwrap()).collect()
}

/// The `entity_id`s in the cache.
fn ids_in_cache(schema: &ModuleSchema, app: &Client) -> BTreeSet<u64> {
    let table = schema.table("entity").unwrap();
    let rows = app.sync().expect("the schema is known").cache().rows("entity");
    rows.iter().map(|row| table.row_to_json(&table.decode(row).unwrap())["entity_id"].as_u64().unwrap()).collect()
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_hostile_servers_fail_cleanly_and_the_cache_recovers_from_the_real_one() {
    let schema = Arc::new(schema().await);
    let hostile = HostileServer::start(Case::Forward(upstream())).unwrap();
    let mut connection = config();
    connection.server_url = hostile.url();
    connection.retry = RetryPolicy {
        max_attempts: 5,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    connection.retry.jitter = 0.0;
    connection.breaker.failure_threshold = 1000; // The breaker's trips are the unit tests'.
    connection.connect_timeout = Duration::from_secs(1);
    connection.identity_timeout = Duration::from_secs(1);
    connection.proven_after = Duration::from_millis(500);
    let (listeners, mut events) = collecting_listeners();
    let app = common::connect(
        SpacelinkConfig::new(connection),
        listeners,
        ReducerListeners::default(),
        SyncListeners::default(),
    )
    .await
    .unwrap();
    let (writer, _writer_events) = start(config()).await;
    events.connected().await;
    run_reducer(&writer, &schema, "clear_spawned", "[2]").await;
    let sync = app.sync().expect("the schema is known").clone();
    sync.subscribe(&["SELECT * FROM entity WHERE map_id = 2"]).await.unwrap();
    run_reducer(&writer, &schema, "spawn_entities", "[2, 3]").await;
    settle(&schema, &app).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // proven

    let wanted = [
        "garbage after the identity",
        "gzip decompression bomb",
        "silent after accept",
        "HTTP 500 instead of the upgrade",
        "odd close code",
        "upgrade never answered",
        "huge length claim",
    ];
    let cases: Vec<_> = catalogue(1 << 27).into_iter().filter(|h| wanted.contains(&h.name)).collect();
    assert_eq!(cases.len(), wanted.len());
    for case in cases {
        let before = ids_in_cache(&schema, &app);
        hostile.set_case(case.case.clone());
        hostile.cut_all();
        // Two failures in a row, each saying why, the second waiting longer.
        let mut delays = Vec::new();
        while delays.len() < 3 {
            let (reason, delay) = events
                .wait_for(30, "a failure", |e| match e {
                    Event::State(s) if s.to == ConnectionState::Reconnecting => {
                        Some((s.reason.clone().unwrap_or_default(), s.retry_in))
                    }
                    _ => None,
                })
                .await;
            if delays.is_empty() {
                delays.push(delay.unwrap()); // The cut itself.
                continue;
            }
            assert!(reason.contains(case.reason), "{}: `{reason}` should say `{}`", case.name, case.reason);
            delays.push(delay.unwrap());
        }
        assert!(delays[2] > delays[1], "{}: the backoff grows: {delays:?}", case.name);
        // Meanwhile the world moves on; the cache keeps what it had.
        run_reducer(&writer, &schema, "spawn_entities", "[2, 2]").await;
        assert_eq!(ids_in_cache(&schema, &app), before, "{}: the cache kept its rows", case.name);
        // The good server is back: reconnected, reconciled.
        hostile.set_case(Case::Forward(upstream()));
        events.connected().await;
        settle(&schema, &app).await;
        // Past `proven_after`: the good session proves itself, so the next
        // case starts again from the first backoff step.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = app.connection().status().await.unwrap();
    assert_eq!(status.state, ConnectionState::Connected);
    app.shutdown();
    writer.shutdown();
}

/// Calls a reducer and panics unless it commits.
async fn run_reducer(app: &Client, schema: &ModuleSchema, reducer: &str, json: &str) {
    let result = app.reducer_client().call_json(schema, reducer, json).await.unwrap();
    assert_eq!(result.outcome, spacelink::reducers::Outcome::Committed, "{reducer} {json}");
}

/// Waits (up to 20 s) until the cache holds exactly the server's entities of map 2.
async fn settle(schema: &ModuleSchema, app: &Client) {
    let mut last = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..100 {
        let want = ids_from_sql(schema).await;
        let have = ids_in_cache(schema, app);
        if want == have && !want.is_empty() {
            return;
        }
        last = (want, have);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the cache never matched the server: server {:?}, cache {:?}", last.0, last.1);
}
