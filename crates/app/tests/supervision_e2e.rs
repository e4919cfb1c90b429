//! End-to-end tests of the supervisor tree against the real server: a child
//! that stops comes back with what it holds, and `shutdown` stops it all for good.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use spacelink::reducers::Outcome;
use spacelink::sync::{SubscriptionEvent, SubscriptionStatus};
use spacelink::{Child, Client, ConnectionState, SpacelinkConfig};

/// `move_player`'s arguments, as the official code generator would emit them.
#[derive(spacetimedb_lib::ser::Serialize)]
#[sats(crate = spacetimedb_lib)]
struct MoveArgs {
    seq: u32,
    dx: f32,
    dy: f32,
}

/// `join`'s arguments.
#[derive(spacetimedb_lib::ser::Serialize)]
#[sats(crate = spacetimedb_lib)]
struct JoinArgs {
    name: String,
    map_id: u32,
}

/// Ticks until `done` holds for an event, or panics after `secs`.
async fn tick_until(client: &mut Client, secs: u64, what: &str, mut done: impl FnMut(&spacelink::Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if client.frame_tick().iter().any(&mut done) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
}

async fn restarted(client: &Client, child: Child, times: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.restarts(child) < times {
        assert!(Instant::now() < deadline, "{child:?} was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_a_failed_sync_actor_comes_back_with_its_cache_and_query_sets() {
    let (url, db) = server();
    let mut client = Client::builder()
        .with_uri(url)
        .with_database(db)
        .subscribe(&["SELECT * FROM map"])
        .build_async()
        .await
        .unwrap();
    tick_until(&mut client, 15, "the map subscription", |e| {
        matches!(e, spacelink::Event::Subscription(SubscriptionEvent::Applied { .. }))
    })
    .await;
    let maps = client.sync().expect("the schema is known").cache().count("map");
    assert!(maps > 0, "guildmaster has maps");
    let sets = client.sync().expect("the schema is known").subscriptions().await.unwrap();

    client.fail_child(Child::Sync);
    restarted(&client, Child::Sync, 1).await;
    assert_eq!(client.sync().expect("the schema is known").cache().count("map"), maps, "the cache survived");
    assert_eq!(
        client.sync().expect("the schema is known").subscriptions().await.unwrap(),
        sets,
        "the query sets survived, same handle"
    );
    let id = client.sync().expect("the schema is known").subscribe(&["SELECT * FROM player"]).await.unwrap();
    let info = client.sync().expect("the schema is known").subscriptions().await.unwrap();
    assert!(info.iter().any(|s| s.id == id && s.status == SubscriptionStatus::Applied), "{info:?}");
    assert!(!client.given_up(Child::Sync));
    client.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_a_failed_reducer_actor_comes_back_with_its_queue_and_its_callers() {
    let (proxy, connection) = common::proxied().await;
    let (listeners, mut events) = collecting_listeners();
    let client = build(SpacelinkConfig::new(connection), listeners, Default::default()).await;
    events.connected().await;
    let joined = client.reducers().call("join", &JoinArgs { name: "supervised".into(), map_id: 1 }).await.unwrap();
    assert_eq!(joined.outcome, Outcome::Committed);

    // Offline: the calls wait in the queue.
    proxy.set_refuse(true);
    proxy.cut_all();
    events
        .wait_for(15, "the session lost", |e| match e {
            common::Event::State(s) if s.from == ConnectionState::Connected => Some(()),
            _ => None,
        })
        .await;
    let calls: Vec<_> = (1..=3)
        .map(|seq| client.reducers().call_sequenced("move_player", &MoveArgs { seq, dx: 0.01, dy: 0.0 }, seq))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.reducer_client().status().await.unwrap().queued < 3 {
        assert!(Instant::now() < deadline, "the calls were not queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    client.fail_child(Child::Reducers);
    restarted(&client, Child::Reducers, 1).await;
    assert_eq!(client.reducer_client().status().await.unwrap().queued, 3, "the queue survived");

    // Back online: every waiting caller gets its answer.
    proxy.heal();
    for call in calls {
        assert_eq!(call.await.unwrap().outcome, Outcome::Committed);
    }
    client.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_after_shutdown_nothing_reconnects() {
    let (proxy, connection) = common::proxied().await;
    let (listeners, mut events) = collecting_listeners();
    let client = build(SpacelinkConfig::new(connection), listeners, Default::default()).await;
    events.connected().await;
    let accepted = proxy.accepted();
    client.shutdown();
    // Longer than any backoff delay of the default retry policy's first attempts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(proxy.accepted(), accepted, "a connection was made after shutdown");
    assert!(client.connection().status().await.is_err(), "the connection actor is gone");
    assert!(client.sync().expect("the schema is known").subscriptions().await.is_err(), "the sync actor is gone");
    assert!(client.reducer_client().status().await.is_err(), "the reducer actor is gone");
    assert_eq!(client.restarts(Child::Connection), 0);
}
