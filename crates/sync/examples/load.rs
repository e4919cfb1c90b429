//! A local harness for the data path, without a server: a subscription of N
//! rows of an `entity`-like table (primary key, map, position) arrives as one
//! brotli frame, as SpacetimeDB sends it; the harness times the frame's decode
//! (what the session's reader does) and then the sync actor applying it (what
//! the actix thread does), and the reads a game makes afterwards.
//!
//! `cargo run --release -p spacelink-sync --example load -- 100000`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use spacelink_connection::codec::{self, Compression, DecodeLimits};
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::sats::{bsatn, AlgebraicType, ProductType, SumType};
use spacelink_connection::{
    ws, ClientMessage, ConnectionState, ModuleSchema, SendMessage, ServerMessage, ServerMessageReceived, StateChanged,
};
use spacelink_sync::{RowTypes, SpatialConfig, SyncActor, SyncConfig, SyncHandle, SyncListeners};

/// The row type a game would register (as the code generator writes it).
#[derive(Debug, spacelink_connection::sats::de::Deserialize)]
#[sats(crate = spacelink_connection::sats)]
#[allow(dead_code)]
struct Entity {
    entity_id: u64,
    map_id: u32,
    kind: Kind,
    pos: Vec2,
    cell_x: i32,
    cell_y: i32,
    hp: i32,
}

#[derive(Debug, spacelink_connection::sats::de::Deserialize)]
#[sats(crate = spacelink_connection::sats)]
#[allow(dead_code)]
enum Kind {
    Npc,
    Spawned,
    Pickup,
}

#[derive(Debug, spacelink_connection::sats::de::Deserialize)]
#[sats(crate = spacelink_connection::sats)]
#[allow(dead_code)]
struct Vec2 {
    x: f32,
    y: f32,
}

fn schema() -> ModuleSchema {
    let mut module = RawModuleDefV9Builder::new();
    let vec2: ProductType = [("x", AlgebraicType::F32), ("y", AlgebraicType::F32)].into_iter().collect();
    let kind = AlgebraicType::Sum(SumType::from([
        ("Npc", AlgebraicType::unit()),
        ("Spawned", AlgebraicType::unit()),
        ("Pickup", AlgebraicType::unit()),
    ]));
    let row: ProductType = [
        ("entity_id", AlgebraicType::U64),
        ("map_id", AlgebraicType::U32),
        ("kind", kind),
        ("pos", AlgebraicType::Product(vec2)),
        ("cell_x", AlgebraicType::I32),
        ("cell_y", AlgebraicType::I32),
        ("hp", AlgebraicType::I32),
    ]
    .into_iter()
    .collect();
    module.build_table_with_new_type("entity", row, true).with_primary_key(0u16);
    ModuleSchema::from_raw(module.finish()).unwrap()
}

/// One row's BSATN, as the module would write it.
fn row(id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&((id % 4) as u32 + 1).to_le_bytes());
    out.push(1);
    let (x, y) = ((id % 1000) as f32, (id / 1000) as f32);
    out.extend_from_slice(&x.to_le_bytes());
    out.extend_from_slice(&y.to_le_bytes());
    out.extend_from_slice(&((x / 10.0) as i32).to_le_bytes());
    out.extend_from_slice(&((y / 10.0) as i32).to_le_bytes());
    out.extend_from_slice(&100i32.to_le_bytes());
    out
}

fn frame(query_id: u32, rows: u64) -> Vec<u8> {
    let mut list = ws::BsatnRowListBuilder::row_offsets();
    for id in 0..rows {
        list.push(&row(id));
    }
    let update = ws::QueryUpdate { deletes: ws::BsatnRowList::default(), inserts: list.finish() };
    let table = ws::TableUpdate {
        table_id: 4096.into(),
        table_name: "entity".into(),
        num_rows: rows,
        updates: [ws::CompressableQueryUpdate::Uncompressed(update)].into(),
    };
    let message: ServerMessage = ws::ServerMessage::SubscribeMultiApplied(ws::SubscribeMultiApplied {
        request_id: query_id,
        total_host_execution_duration_micros: 0,
        query_id: ws::QueryId::new(query_id),
        update: ws::DatabaseUpdate { tables: vec![table] },
    });
    codec::encode_server_message(&message, Compression::Brotli).unwrap()
}

/// Answers the sync actor's subscribe with the prepared frame, decoded as the reader does.
struct Server {
    sync: Option<Recipient<ServerMessageReceived>>,
    frame: Vec<u8>,
}

/// The query id the sync actor gives its first query set.
const FIRST_QUERY_ID: u32 = 0x4000_0000;

impl Actor for Server {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Wire(Recipient<ServerMessageReceived>);

impl Handler<Wire> for Server {
    type Result = ();
    fn handle(&mut self, msg: Wire, _: &mut Self::Context) {
        self.sync = Some(msg.0);
    }
}

impl Handler<SendMessage> for Server {
    type Result = Result<(), spacelink_connection::ConnectionError>;
    fn handle(&mut self, msg: SendMessage, _: &mut Self::Context) -> Self::Result {
        if let ClientMessage::SubscribeMulti(s) = msg.message {
            assert_eq!(s.query_id.id, FIRST_QUERY_ID);
            let bytes = &self.frame;
            let (start, cpu0) = (Instant::now(), cpu());
            let mut message = codec::decode_server_message(bytes, DecodeLimits::default()).unwrap();
            codec::decompress_updates(&mut message, DecodeLimits::default());
            eprintln!(
                "frame: {} bytes on the wire; reader decode {:?} wall, {:?} cpu",
                bytes.len(),
                start.elapsed(),
                cpu() - cpu0
            );
            if let Some(sync) = &self.sync {
                sync.do_send(ServerMessageReceived {
                    generation: 1,
                    received_at: Instant::now(),
                    wire_size: bytes.len(),
                    message: Arc::new(message),
                });
            }
        }
        Ok(())
    }
}

/// CPU time of the whole process so far (user + system), from /proc (10 ms ticks).
fn cpu() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    std::time::Duration::from_millis(ticks * 10)
}

fn main() {
    let rows: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let typed = std::env::args().nth(2).is_some_and(|a| a == "typed");
    let system = System::new();
    system.block_on(async move {
        let schema = Arc::new(schema());
        let frame = frame(FIRST_QUERY_ID, rows);
        let server = Server { sync: None, frame }.start();
        let config = SyncConfig {
            spatial: Some(SpatialConfig {
                table: "entity".into(),
                map_column: "map_id".into(),
                position_column: "pos".into(),
                cell_x_column: "cell_x".into(),
                cell_y_column: "cell_y".into(),
                cell_size: 10.0,
            }),
            ..SyncConfig::default()
        };
        // `typed` (the second argument): rows of `entity` are decoded once into `Entity` as they arrive.
        let types = if typed { RowTypes::new().register::<Entity>("entity") } else { RowTypes::new() };
        let actor = SyncActor::with_types(
            config,
            Arc::clone(&schema),
            types,
            server.clone().recipient(),
            SyncListeners::default(),
        );
        let reader = actor.cache().reader();
        let addr = actor.start();
        server.send(Wire(addr.clone().recipient())).await.unwrap();
        addr.send(StateChanged {
            generation: 1,
            from: ConnectionState::Connecting,
            to: ConnectionState::Connected,
            reason: None,
            retry_in: None,
        })
        .await
        .unwrap();
        let handle = SyncHandle::new(addr, reader, schema);
        let (start, cpu0) = (Instant::now(), cpu());
        handle.subscribe(&["SELECT * FROM entity"]).await.unwrap();
        let total = start.elapsed();
        eprintln!(
            "subscribe (decode + apply): {total:?} wall, {:?} cpu; cached {}",
            cpu() - cpu0,
            handle.cache().count("entity")
        );
        let start = Instant::now();
        let near = handle.entities_in_range(1, 500.0, 50.0, 30.0);
        eprintln!("range query: {} rows in {:?}", near.len(), start.elapsed());
        let start = Instant::now();
        let all = handle.table::<Entity>("entity").rows();
        eprintln!("typed rows: {} in {:?} (typed = {typed})", all.len(), start.elapsed());
        let start = Instant::now();
        let key = bsatn::to_vec(&42u64).unwrap();
        let got = handle.cache().get("entity", &key.into()).is_some();
        eprintln!("get by key: {got} in {:?}", start.elapsed());
        System::current().stop();
    });
}
