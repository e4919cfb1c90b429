//! How a client starts, against the real server: the module's schema is
//! fetched while the connection makes its handshake, so a start that fails on
//! the schema must not leave a connection behind, and what the connection
//! delivers before the schema is known must still reach the cache.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use spacelink::connection::ConnectionState;
use spacelink::{ClientError, SpacelinkConfig};

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_a_start_refused_on_its_schema_leaves_no_connection_behind() {
    let (url, _) = server();
    let (listeners, mut events) = collecting_listeners();
    let config = SpacelinkConfig::new(spacelink::ConnectionConfig::new(&url, "no_such_database_here"));
    let started = std::time::Instant::now();
    let err = connect(config, listeners, Default::default(), Default::default()).await.err().unwrap();
    assert!(matches!(err, ClientError::Schema(_)), "{err}");
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "the refusal took {:?}", started.elapsed());
    // Whatever the connection did meanwhile, it is stopped: no attempt follows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = events.states_so_far();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = events.states_so_far();
    assert!(after.is_empty(), "the connection goes on after a refused start: {before:?} then {after:?}");
    assert!(before.last().is_none_or(|s| s.to != ConnectionState::Connected), "left connected: {before:?}");
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_a_start_that_fetches_its_schema_caches_the_first_rows() {
    let (url, db) = server();
    let (listeners, _events) = collecting_listeners();
    let mut config = SpacelinkConfig::new(spacelink::ConnectionConfig::new(&url, &db));
    config.sync = guildmaster_sync();
    let app = connect(config, listeners, Default::default(), Default::default()).await.unwrap();
    let sync = app.sync().expect("the schema is known").clone();
    tokio::time::timeout(Duration::from_secs(20), sync.subscribe(&["SELECT * FROM map"])).await.unwrap().unwrap();
    let expected = app.schema().expect("the schema is known").table("map").is_some();
    assert!(expected, "the fetched schema knows the module's tables");
    assert!(sync.cache().count("map") > 0, "the initial rows are cached");
    app.shutdown();
}
