//! End-to-end: the bindings `spacelink generate` wrote for guildmaster
//! (`tests/bindings/guildmaster.rs`, checked by `tests/bindings.rs`) against
//! the real server: rows decoded once into the generated types, tables
//! iterated and searched by key and by unique column, reducers called through
//! the generated methods (one sequenced) and their results awaited; and a
//! client started with the schema the bindings embed, which fetches none.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "bindings/guildmaster.rs"]
mod bindings;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindings::ModuleClient as _;
use common::*;
use spacelink::reducers::Outcome;
use spacelink::sync::SubscriptionEvent;
use spacelink::{Client, Event};

/// Awaits a generated reducer method's call, as a game inside async code would.
fn await_call(call: spacelink::ReducerCall) -> spacelink::CallResult {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(15), call).await.expect("a result within 15 s") })
}

/// `builder` with the bindings' row types, subscribed to players and maps,
/// built and ticked until the subscription is applied; and our identity.
fn start(builder: spacelink::ClientBuilder) -> (Client, spacelink::connection::lib::Identity) {
    let connected = Arc::new(Mutex::new(None));
    let seen = connected.clone();
    let mut client = builder
        .with_row_types(bindings::row_types())
        .subscribe(&["SELECT * FROM player", "SELECT * FROM map"])
        .on_connect(move |identity, _token| *seen.lock().unwrap() = Some(identity))
        .build()
        .unwrap();
    let mut applied = false;
    tick_until(&mut client, 15, "the initial subscription applied", |_, events| {
        applied |= events.iter().any(|e| matches!(e, Event::Subscription(SubscriptionEvent::Applied { .. })));
        applied && connected.lock().unwrap().is_some()
    });
    let identity = connected.lock().unwrap().unwrap();
    (client, identity)
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_generated_bindings_iterate_find_and_call_reducers_on_the_real_server() {
    let (url, db) = server();

    // The checked-in bindings are what the live module generates.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let live = runtime.block_on(spacelink::ModuleSchema::fetch(&url, &db, None)).unwrap();
    let mut options = spacelink_codegen::GenerateOptions::default();
    options.add_sequenced("move_player=seq").unwrap();
    options.add_sequenced("act=seq").unwrap();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rustfmt.toml");
    let fresh = spacelink_codegen::rustfmt(&spacelink_codegen::generate_for(&live, &options).unwrap(), Some(&config));
    assert_eq!(
        fresh.unwrap(),
        include_str!("bindings/guildmaster.rs"),
        "the live module's bindings differ from tests/bindings/guildmaster.rs: capture its schema again \
         (crates/connection/tests/corpus/guildmaster-schema.json), then UPDATE_BINDINGS=1 cargo test -p spacelink --test bindings"
    );

    let (mut client, identity) = start(Client::builder().with_uri(url).with_database(db));
    let updates = Arc::new(AtomicUsize::new(0));
    let count = updates.clone();
    client.db().player().on_update(move |_ctx, old, new| {
        if new.last_input_seq > old.last_input_seq {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    // A table iterated and found by its primary key, from the cache.
    let maps: Vec<bindings::Map> = client.db().map().iter().map(|m| (*m).clone()).collect();
    assert!(!maps.is_empty(), "guildmaster's init creates its maps");
    assert_eq!(client.db().map().count(), maps.len());
    let first = &maps[0];
    assert_eq!(client.db().map().find_by_map_id(&first.map_id).as_deref(), Some(first));

    // A generated reducer method returns at once; its result is awaited.
    let name = format!("gen-{}", std::process::id());
    let joined = await_call(client.module_reducers().join(name.clone(), first.map_id)).unwrap();
    assert_eq!(joined.outcome, Outcome::Committed);
    tick_until(&mut client, 15, "our player in the cache", |c, _| {
        c.db().player().find_by_identity(&identity).is_some()
    });
    let me = client.db().player().find_by_identity(&identity).unwrap();
    assert_eq!((me.name.as_str(), me.map_id, me.last_input_seq), (name.as_str(), first.map_id, 0));
    // By a unique column that is not the key, and by iteration.
    assert_eq!(client.db().player().find_by_player_id(&me.player_id).as_deref(), Some(&*me));
    assert!(client.db().player().iter().any(|p| p.identity == identity));

    // The sequenced reducer: its `seq` parameter is the call's sequence number.
    let moved = await_call(client.module_reducers().move_player(1, 1.0, 0.0)).unwrap();
    assert_eq!(moved.outcome, Outcome::Committed);
    tick_until(&mut client, 15, "the move's update", |c, _| {
        updates.load(Ordering::Relaxed) == 1
            && c.db().player().find_by_identity(&identity).is_some_and(|p| p.last_input_seq == 1)
    });
    let after = client.db().player().find_by_identity(&identity).unwrap();
    assert!(after.pos.x > me.pos.x, "moved right: {:?} -> {:?}", me.pos, after.pos);

    // A failing reducer's result comes back through the generated method too, as an error.
    let failed = await_call(client.module_reducers().always_fail("from generated bindings".into())).unwrap_err();
    assert!(
        matches!(failed, spacelink::ReducerError::Failed { ref message, .. } if message.contains("from generated bindings")),
        "{failed:?}"
    );
    client.shutdown();
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_client_with_the_embedded_schema_waits_for_no_fetch_and_finds_by_its_unique_index() {
    let (_, db) = server();
    // Every request goes through a server that counts schema requests, and forwards.
    let front =
        spacelink::connection::hostile::HostileServer::start(spacelink::connection::hostile::Case::Forward(upstream()))
            .unwrap();
    let schema = bindings::schema();
    assert!(Arc::ptr_eq(&schema, &bindings::schema()), "read once");
    let (mut client, identity) = start(Client::builder().with_uri(front.url()).with_database(db).with_schema(schema));
    // Started on the embedded schema: ready at once, before any answer from the server.
    assert_eq!(client.status().schema, spacelink::SchemaStatus::Ready);
    let map = client.db().map().iter().next().expect("guildmaster's maps").map_id;
    let name = format!("embedded-{}", std::process::id());
    assert_eq!(await_call(client.module_reducers().join(name.clone(), map)).unwrap().outcome, Outcome::Committed);
    tick_until(&mut client, 15, "our player in the cache", |c, _| {
        c.db().player().find_by_identity(&identity).is_some()
    });

    // A handle kept and cloned reads the same cache.
    let players = client.db().player();
    let kept = players.clone();
    let me = players.find_by_identity(&identity).unwrap();
    assert_eq!(me.name, name);
    // `player_id` is unique and not the key: the cache's index answers.
    assert!(client.sync().expect("the schema is known").cache().with_view(|v| v.is_indexed("player", 1)));
    assert_eq!(kept.find_by_player_id(&me.player_id).as_deref(), Some(&*me));
    assert!(kept.find_by_player_id(&u64::MAX).is_none());
    assert_eq!(players.iter().count(), players.count());
    // The only schema request is the background check of the embedded
    // schema against the server's, which found them equal.
    assert!(front.schema_requests() <= 1, "no fetch at start, one check at most: {}", front.schema_requests());
    assert_eq!(client.status().schema, spacelink::SchemaStatus::Ready, "no mismatch");
    client.shutdown();
}
