//! The `spacelink` command's printer, subscribed to a fake connection.
//!
//! A `ScriptedConnection` stands in for the connection actor: it plays scripted
//! state changes and server messages (really encoded and decoded by the codec)
//! to the printer, which prints them as JSON lines into an in-memory buffer.
#![allow(clippy::unwrap_used)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Value as Json};
use spacelink::connection::codec::DatabaseUpdate;
use spacelink::connection::testing::{ScriptStep, ScriptedConnection};
use spacelink::connection::{ws, Compression, ConnectionState, SendMessage, ServerMessage};
use spacelink::printer::{Job, Printer};
use spacelink::sync::{
    ClientCache, RowChange, RowTypes, RowsChanged, SchemaKeys, SubscriptionEvent, SubscriptionId, TableDelta,
};
use spacelink::{Listeners, ModuleSchema, ServerMessageReceived};
use spacetimedb_client_api_messages::energy::EnergyQuanta;
use spacetimedb_lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacetimedb_lib::{ConnectionId, Identity, TimeDuration, Timestamp};
use spacetimedb_sats::{bsatn, AlgebraicType, ProductType};

/// The printer's output: a `Write` over a shared buffer.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line printed so far, each parsed as one JSON object.
    fn events(&self) -> Vec<Json> {
        self.text().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

/// A row of table `map`, as a generated client type would encode it.
#[derive(spacetimedb_lib::ser::Serialize, Debug, Clone)]
#[sats(crate = spacetimedb_lib)]
struct MapRow {
    map_id: u32,
    name: String,
    width: f32,
    height: f32,
}

fn map(map_id: u32, name: &str, width: f32, height: f32) -> MapRow {
    MapRow { map_id, name: name.to_string(), width, height }
}

/// The row as the printer renders it (the floats are exact in f32 and f64).
fn map_json(row: &MapRow) -> Json {
    json!({
        "map_id": row.map_id,
        "name": row.name,
        "width": f64::from(row.width),
        "height": f64::from(row.height),
    })
}

/// A module with one table, `map`, keyed by `map_id`.
fn map_schema() -> ModuleSchema {
    let mut module = RawModuleDefV9Builder::new();
    let row: ProductType = [
        ("map_id", AlgebraicType::U32),
        ("name", AlgebraicType::String),
        ("width", AlgebraicType::F32),
        ("height", AlgebraicType::F32),
    ]
    .into_iter()
    .collect();
    module.build_table_with_new_type("map", row, true).with_primary_key(0u16).with_unique_constraint(0u16);
    let schema = ModuleSchema::from_raw(module.finish()).unwrap();
    assert_eq!(schema.table("map").unwrap().primary_key, vec![0]);
    schema
}

fn row_list(rows: &[MapRow]) -> ws::BsatnRowList {
    let mut list = ws::BsatnRowListBuilder::row_offsets();
    for row in rows {
        list.push(&bsatn::to_vec(row).unwrap());
    }
    list.finish()
}

/// Changes to `map`, in one query update, compressed or not.
fn map_update(deletes: &[MapRow], inserts: &[MapRow], brotli: bool) -> DatabaseUpdate {
    let update = ws::QueryUpdate { deletes: row_list(deletes), inserts: row_list(inserts) };
    let update = if brotli {
        let mut out = Vec::new();
        ws::brotli_compress(&bsatn::to_vec(&update).unwrap(), &mut out);
        ws::CompressableQueryUpdate::Brotli(out.into())
    } else {
        ws::CompressableQueryUpdate::Uncompressed(update)
    };
    DatabaseUpdate {
        tables: vec![ws::TableUpdate {
            table_id: 4096u32.into(),
            table_name: "map".into(),
            num_rows: (deletes.len() + inserts.len()) as u64,
            updates: [update].into(),
        }],
    }
}

/// Byte patterns that read the same in either byte order, so their hex is known.
const CALLER: [u8; 32] = [0xab; 32];
const CALLER_CONNECTION: u128 = u128::from_le_bytes([0xcd; 16]);

fn transaction(status: ws::UpdateStatus<ws::BsatnFormat>, request_id: u32) -> ServerMessage {
    ws::ServerMessage::TransactionUpdate(ws::TransactionUpdate {
        status,
        timestamp: Timestamp::from_micros_since_unix_epoch(1_700_000_000_000_000),
        caller_identity: Identity::from_byte_array(CALLER),
        caller_connection_id: ConnectionId::from_u128(CALLER_CONNECTION),
        reducer_call: ws::ReducerCallInfo {
            reducer_name: "edit_maps".into(),
            reducer_id: 3,
            args: Box::new([]),
            request_id,
        },
        energy_quanta_used: EnergyQuanta::new(42),
        total_host_execution_duration: TimeDuration::from_micros(1500),
    })
}

fn identity_token(identity: [u8; 32], token: &str) -> ServerMessage {
    ws::ServerMessage::IdentityToken(ws::IdentityToken {
        identity: Identity::from_byte_array(identity),
        token: token.into(),
        connection_id: ConnectionId::from_u128(CALLER_CONNECTION),
    })
}

fn step(message: ServerMessage, compression: Compression) -> ScriptStep {
    ScriptStep::Message(Box::new(message), compression)
}

fn received(generation: u64, message: ServerMessage) -> ServerMessageReceived {
    ServerMessageReceived { generation, received_at: Instant::now(), wire_size: 0, message: Arc::new(message) }
}

fn listeners(printer: &Addr<Printer>) -> Listeners {
    Listeners {
        messages: vec![printer.clone().recipient()],
        states: vec![printer.clone().recipient()],
        identities: Vec::new(),
        ..Default::default()
    }
}

/// Waits until `fake` has played its script (its `started` runs before it
/// handles anything), so that all it told the printer is in the printer's mailbox.
async fn played(fake: &Addr<ScriptedConnection>) -> bool {
    let probe = ws::ClientMessage::Unsubscribe(ws::Unsubscribe { request_id: 99, query_id: ws::QueryId::new(1) });
    fake.send(SendMessage { message: probe, generation: None }).await.unwrap().is_ok()
}

fn reducer_event(request_id: u32, status: &str, error: Option<&str>) -> Json {
    json!({
        "event": "reducer",
        "reducer": "edit_maps",
        "request_id": request_id,
        "status": status,
        "error": error,
        "caller": "ab".repeat(32),
        "server_micros": 1500,
    })
}

/// The merged changes the sync actor would tell for `deltas`: computed by the
/// sync crate's own cache (ref-counted, updates paired by primary key).
struct Merged {
    cache: ClientCache,
}

impl Merged {
    fn new(schema: &Arc<ModuleSchema>) -> Self {
        let keys = Arc::new(SchemaKeys::new(schema.clone()));
        Self { cache: ClientCache::with_parts(keys, RowTypes::new().bind(schema), None) }
    }

    /// One transaction seen by `queries` overlapping queries (each sees every row).
    fn apply(&mut self, deletes: &[MapRow], inserts: &[MapRow], queries: usize) -> Arc<Vec<RowChange>> {
        let bytes = |rows: &[MapRow]| -> Vec<bytes::Bytes> {
            (0..queries).flat_map(|_| rows.iter().map(|r| bsatn::to_vec(r).unwrap().into())).collect()
        };
        let delta = TableDelta { table: "map".into(), deletes: bytes(deletes), inserts: bytes(inserts) };
        Arc::new(self.cache.apply(&[delta]))
    }
}

#[actix::test]
async fn printer_prints_a_scripted_subscription_session_from_the_merged_cache() {
    let out = SharedBuffer::default();
    let (done, _done) = tokio::sync::oneshot::channel();
    let job = Job::Subscribe(vec!["SELECT * FROM map".to_string(), "SELECT * FROM map WHERE map_id < 5".to_string()]);
    let schema = Arc::new(map_schema());
    let printer = Printer::new(schema.clone(), job, Box::new(out.clone()), done).start();
    let mut merged = Merged::new(&schema);

    let meadow = map(1, "Meadow", 64.0, 32.0);
    let caves = map(2, "Caves", 16.5, 16.5);
    let tower = map(3, "Tower", 8.0, 128.0);
    let meadow_wider = map(1, "Meadow", 96.0, 32.0);
    let harbor = map(4, "Harbor", 48.25, 40.0);

    // The session: states, who we are, and the reducers that ran (their rows
    // reach the printer through the sync actor, not from the raw messages).
    let script = vec![
        ScriptStep::State(ConnectionState::Connecting),
        ScriptStep::State(ConnectionState::Connected),
        step(identity_token([0xab; 32], "secret-token"), Compression::None),
        step(
            ws::ServerMessage::SubscribeMultiApplied(ws::SubscribeMultiApplied {
                request_id: 1,
                total_host_execution_duration_micros: 250,
                query_id: ws::QueryId::new(5),
                update: map_update(&[], &[meadow.clone(), caves.clone(), tower.clone()], false),
            }),
            Compression::Brotli,
        ),
        step(
            transaction(
                ws::UpdateStatus::Committed(map_update(
                    &[meadow.clone(), caves.clone()],
                    &[meadow_wider.clone(), harbor.clone()],
                    true,
                )),
                7,
            ),
            Compression::Gzip,
        ),
        step(transaction(ws::UpdateStatus::Failed("boom".into()), 8), Compression::None),
    ];
    let fake = ScriptedConnection::new(script, listeners(&printer), 2);
    let fake = fake.start();
    assert!(played(&fake).await, "the script ends connected, so the fake takes messages");

    // What the sync actor tells for the same session: the initial rows (seen
    // by both overlapping queries), the set applied, then the transaction.
    let initial = merged.apply(&[], &[meadow.clone(), caves.clone(), tower.clone()], 2);
    printer
        .send(RowsChanged {
            generation: 2,
            changes: initial,
            reconciled: false,
            cause: spacelink::sync::Cause::UnknownTransaction,
        })
        .await
        .unwrap();
    printer.send(SubscriptionEvent::Applied { id: SubscriptionId(1) }).await.unwrap();
    let tx = merged.apply(&[meadow.clone(), caves.clone()], &[meadow_wider.clone(), harbor.clone()], 2);
    printer
        .send(RowsChanged {
            generation: 2,
            changes: tx,
            reconciled: false,
            cause: spacelink::sync::Cause::UnknownTransaction,
        })
        .await
        .unwrap();

    // A message of generation 1, older than the session (2) the printer has seen, is dropped.
    let stale = transaction(ws::UpdateStatus::Committed(map_update(&[], &[map(9, "Stale", 1.0, 1.0)], false)), 1);
    printer.send(received(1, stale)).await.unwrap();

    let expected = vec![
        json!({ "event": "state", "generation": 2, "from": "disconnected", "to": "connecting",
                "reason": null, "retry_in_ms": null }),
        json!({ "event": "state", "generation": 2, "from": "connecting", "to": "connected",
                "reason": null, "retry_in_ms": null }),
        json!({ "event": "identity", "identity": "ab".repeat(32), "connection_id": "cd".repeat(16) }),
        reducer_event(7, "committed", None),
        reducer_event(8, "failed", Some("boom")),
        // Each row once, although both queries hold it.
        json!({ "event": "insert", "phase": "initial", "table": "map", "row": map_json(&meadow) }),
        json!({ "event": "insert", "phase": "initial", "table": "map", "row": map_json(&caves) }),
        json!({ "event": "insert", "phase": "initial", "table": "map", "row": map_json(&tower) }),
        json!({ "event": "subscribed", "subscription": 1, "generation": 2 }),
        // An update is one update; a delete seen by both queries is one delete.
        json!({ "event": "update", "phase": "tx", "table": "map",
                "old": map_json(&meadow), "new": map_json(&meadow_wider) }),
        json!({ "event": "insert", "phase": "tx", "table": "map", "row": map_json(&harbor) }),
        json!({ "event": "delete", "phase": "tx", "table": "map", "row": map_json(&caves) }),
    ];
    let mut events = out.events();
    // The cache orders a transaction's changes by its own rules: compare the
    // row changes of each phase as sets, the rest in order.
    let key = |e: &Json| e.to_string();
    let (mut got_rows, got_rest): (Vec<Json>, Vec<Json>) = events.drain(..).partition(|e| e["table"] == "map");
    let (mut want_rows, want_rest): (Vec<Json>, Vec<Json>) =
        expected.iter().cloned().partition(|e| e["table"] == "map");
    assert_eq!(got_rest, want_rest);
    got_rows.sort_by_key(key);
    want_rows.sort_by_key(key);
    assert_eq!(got_rows, want_rows);
    assert!(!out.text().contains("secret-token"), "the token is never printed");

    // After a reconnect, only what really changed prints, as `reconciled`.
    let lines = out.events().len();
    printer.send(SubscriptionEvent::Applied { id: SubscriptionId(1) }).await.unwrap();
    let mut fresh = Merged::new(&schema);
    fresh.apply(&[], &[meadow_wider.clone(), tower.clone()], 1);
    let changes = merged.cache.reconcile_from(&fresh.cache);
    printer
        .send(RowsChanged {
            generation: 3,
            changes: Arc::new(changes),
            reconciled: true,
            cause: spacelink::sync::Cause::Reconciled,
        })
        .await
        .unwrap();
    assert_eq!(
        out.events()[lines..],
        [
            json!({ "event": "resubscribed", "subscription": 1, "generation": 2 }),
            json!({ "event": "delete", "phase": "reconciled", "table": "map", "row": map_json(&harbor) }),
        ]
    );

    // A whole session of generation 1 playing after session 2 is ignored too.
    let lines = out.events().len();
    let old_session = vec![
        step(identity_token([0x11; 32], "old-token"), Compression::None),
        step(transaction(ws::UpdateStatus::Failed("old failure".into()), 4), Compression::Gzip),
    ];
    let old = ScriptedConnection::new(old_session, listeners(&printer), 1).start();
    assert!(!played(&old).await, "a fake whose script sets no state stays disconnected");
    printer.send(received(0, identity_token([0x22; 32], "older-token"))).await.unwrap();
    assert_eq!(out.events().len(), lines, "{:#?}", out.events());
}

#[actix::test]
async fn printer_ends_a_subscription_the_server_refuses_for_good() {
    let out = SharedBuffer::default();
    let (done, done_rx) = tokio::sync::oneshot::channel();
    let job = Job::Subscribe(vec!["SELECT * FROM nowhere".to_string()]);
    let printer = Printer::new(Arc::new(map_schema()), job, Box::new(out.clone()), done).start();
    let failed =
        |retrying| SubscriptionEvent::Failed { id: SubscriptionId(1), error: "no such table".into(), retrying };
    printer.send(failed(true)).await.unwrap();
    printer.send(failed(false)).await.unwrap();
    let exit = done_rx.await.unwrap();
    assert_eq!(exit.code, 1);
    assert!(exit.reason.contains("no such table"), "{exit:?}");
    assert_eq!(out.events().len(), 2);
    assert_eq!(out.events()[0]["retrying"], true);
}
