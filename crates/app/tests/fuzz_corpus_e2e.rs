//! The seed corpus of the fuzz tests (crates/connection/tests/fuzz.rs), from
//! the real server: one session subscribes to every guildmaster table, calls
//! reducers (every column type through `insert_sample`, a failing one, bulk
//! inserts and deletes) and runs a one-off query; every message it receives is
//! re-encoded in each compression and must decode back to itself.
//!
//! With `SPACELINK_CAPTURE_CORPUS=<dir>` the frames and the schema are written
//! there (how crates/connection/tests/corpus was made); otherwise nothing is written.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use spacelink::connection::codec::{decode_server_message, encode_server_message, server_message_kind, Compression};
use spacelink::ConnectionConfig;

/// Keeps every message the session receives.
struct Keep(Arc<Mutex<Vec<Arc<spacelink::connection::ServerMessage>>>>);

impl Actor for Keep {
    type Context = Context<Self>;
}

impl Handler<spacelink::ServerMessageReceived> for Keep {
    type Result = ();
    fn handle(&mut self, msg: spacelink::ServerMessageReceived, _: &mut Self::Context) {
        self.0.lock().unwrap().push(msg.message);
    }
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn fuzz_corpus_frames_from_the_real_server_round_trip() {
    let (url, db) = common::server();
    let schema = common::schema().await;
    let (mut listeners, mut events) = common::collecting_listeners();
    let kept = Arc::new(Mutex::new(Vec::new()));
    listeners.messages.push(Keep(kept.clone()).start().recipient());
    let mut config = spacelink::SpacelinkConfig::new(ConnectionConfig::new(&url, &db));
    config.schema = Some(std::sync::Arc::new(schema.clone()));
    let app = common::build(config, listeners, Default::default()).await;
    events.connected().await;
    let tables: Vec<String> = schema.tables().map(|t| format!("SELECT * FROM {}", t.name)).collect();
    app.connection().subscribe(&tables).await.unwrap();
    for (reducer, args) in [
        ("insert_sample", "[0]"),
        ("insert_sample", "[1]"),
        ("spawn_entities", "[2, 50]"),
        ("always_fail", "[\"a reason\"]"),
        ("clear_spawned", "[2]"),
    ] {
        common::call(&app, &mut events, &schema, reducer, args).await;
    }
    let _ = app.connection().one_off_query("SELECT * FROM map").await.unwrap();

    // Everything the session received (the NPC tick goes on writing: a second more of it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let messages: Vec<_> = kept.lock().unwrap().clone();
    let kinds: std::collections::BTreeSet<_> = messages.iter().map(|m| server_message_kind(m)).collect();
    for kind in ["IdentityToken", "SubscribeMultiApplied", "TransactionUpdate", "OneOffQueryResponse"] {
        assert!(kinds.contains(kind), "a {kind} was received: {kinds:?}");
    }
    let out = std::env::var_os("SPACELINK_CAPTURE_CORPUS").map(std::path::PathBuf::from);
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir.join("frames")).unwrap();
        let schema_url = format!("{url}/v1/database/{db}/schema?version=9");
        let json = tokio::task::spawn_blocking(move || ureq::get(&schema_url).call().unwrap().into_string().unwrap());
        std::fs::write(dir.join("guildmaster-schema.json"), json.await.unwrap()).unwrap();
    }
    let mut written = 0;
    for (i, message) in messages.iter().enumerate() {
        for compression in [Compression::None, Compression::Brotli, Compression::Gzip] {
            let frame = encode_server_message(message, compression).unwrap();
            let back = decode_server_message(&frame, Default::default()).unwrap();
            let again = encode_server_message(&back, Compression::None).unwrap();
            assert_eq!(again, encode_server_message(message, Compression::None).unwrap(), "{i} round-trips");
            if let Some(dir) = &out {
                let name = format!("{i:03}-{}-{}.bin", server_message_kind(message), compression.as_query_value());
                std::fs::write(dir.join("frames").join(name), &frame).unwrap();
                written += 1;
            }
        }
    }
    if out.is_some() {
        println!("wrote {written} frames");
    }
    app.shutdown();
}
