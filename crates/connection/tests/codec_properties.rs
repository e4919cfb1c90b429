//! Property tests of the wire codec.
//!
//! * Property 14 (data serialization consistency): every client and server
//!   message, with random contents, survives encoding and decoding byte for byte
//!   under every frame compression, and so do the rows inside it (row lists of
//!   fixed-size and offset-based rows, query updates plain, brotli and gzip), and
//!   typed rows decoded with `schema::decode_row`.
//! * Property 15 (serialization error handling): random, truncated, corrupted
//!   and hand-crafted hostile input never panics the decoder; it is refused
//!   with the right `CodecError`, quickly and without large allocations.
//!
//! The official message types are neither `Clone`, `Debug` nor `PartialEq`, so
//! the strategies generate small specs and the tests build messages from them,
//! and messages are compared through their BSATN bytes.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use spacelink_connection::codec::{
    self, ClientMessage, CodecError, Compression, DatabaseUpdate, DecodeLimits, QueryUpdate, ServerMessage, TableUpdate,
};
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::lib::{ConnectionId, Identity, TimeDuration, Timestamp};
use spacelink_connection::sats::{bsatn, AlgebraicType};
use spacelink_connection::schema::{self, ModuleSchema};
use spacelink_connection::ws;
use spacetimedb_client_api_messages::energy::EnergyQuanta;

const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Brotli, Compression::Gzip];

// ---------------------------------------------------------------------------
// Specs: Debug + Clone descriptions of messages, and the messages built from them.
// ---------------------------------------------------------------------------

/// A row list as the builder makes it: fixed-size rows or rows with offsets.
#[derive(Debug, Clone)]
struct RowsSpec {
    fixed: Option<u16>,
    rows: Vec<Vec<u8>>,
}

impl RowsSpec {
    fn build(&self) -> ws::BsatnRowList {
        let mut list = match self.fixed {
            Some(size) => ws::BsatnRowListBuilder::fixed(size),
            None => ws::BsatnRowListBuilder::row_offsets(),
        };
        for row in &self.rows {
            list.push(row);
        }
        list.finish()
    }
}

/// How a query update is carried inside a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryCompression {
    Uncompressed,
    Brotli,
    Gzip,
}

#[derive(Debug, Clone)]
struct QuerySpec {
    deletes: RowsSpec,
    inserts: RowsSpec,
    compression: QueryCompression,
}

#[derive(Debug, Clone)]
struct TableSpec {
    table_id: u32,
    name: String,
    num_rows: u64,
    queries: Vec<QuerySpec>,
}

#[derive(Debug, Clone)]
enum StatusSpec {
    Committed(Vec<TableSpec>),
    Failed(String),
    OutOfEnergy,
}

#[derive(Debug, Clone)]
struct TransactionSpec {
    status: StatusSpec,
    timestamp: i64,
    caller: [u8; 32],
    caller_connection_id: u128,
    reducer: String,
    reducer_id: u32,
    args: Vec<u8>,
    request_id: u32,
    energy: u128,
    duration: i64,
}

/// `SubscribeApplied` or `UnsubscribeApplied`: the same fields.
#[derive(Debug, Clone)]
struct AppliedSpec {
    request_id: u32,
    micros: u64,
    query_id: u32,
    table_id: u32,
    table_name: String,
    table: TableSpec,
}

/// `SubscribeMultiApplied` or `UnsubscribeMultiApplied`: the same fields.
#[derive(Debug, Clone)]
struct MultiAppliedSpec {
    request_id: u32,
    micros: u64,
    query_id: u32,
    tables: Vec<TableSpec>,
}

#[derive(Debug, Clone)]
enum ServerSpec {
    InitialSubscription {
        tables: Vec<TableSpec>,
        request_id: u32,
        duration: i64,
    },
    TransactionUpdate(Box<TransactionSpec>),
    TransactionUpdateLight {
        request_id: u32,
        tables: Vec<TableSpec>,
    },
    IdentityToken {
        identity: [u8; 32],
        token: String,
        connection_id: u128,
    },
    OneOffQueryResponse {
        message_id: Vec<u8>,
        error: Option<String>,
        tables: Vec<(String, RowsSpec)>,
        duration: i64,
    },
    SubscribeApplied(Box<AppliedSpec>),
    UnsubscribeApplied(Box<AppliedSpec>),
    SubscriptionError {
        micros: u64,
        request_id: Option<u32>,
        query_id: Option<u32>,
        table_id: Option<u32>,
        error: String,
    },
    SubscribeMultiApplied(MultiAppliedSpec),
    UnsubscribeMultiApplied(MultiAppliedSpec),
}

/// What a message carries, in a fixed walk order: every row list's rows, and
/// the BSATN of every (decompressed) query update.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Contents {
    row_lists: Vec<Vec<Vec<u8>>>,
    query_updates: Vec<Vec<u8>>,
}

impl QuerySpec {
    fn build(&self, expected: &mut Contents) -> ws::CompressableQueryUpdate<ws::BsatnFormat> {
        let update = QueryUpdate { deletes: self.deletes.build(), inserts: self.inserts.build() };
        let bytes = bsatn::to_vec(&update).unwrap();
        expected.query_updates.push(bytes.clone());
        expected.row_lists.push(self.deletes.rows.clone());
        expected.row_lists.push(self.inserts.rows.clone());
        match self.compression {
            QueryCompression::Uncompressed => ws::CompressableQueryUpdate::Uncompressed(update),
            QueryCompression::Brotli => {
                let mut out = Vec::new();
                ws::brotli_compress(&bytes, &mut out);
                ws::CompressableQueryUpdate::Brotli(out.into())
            }
            QueryCompression::Gzip => {
                let mut out = Vec::new();
                ws::gzip_compress(&bytes, &mut out);
                ws::CompressableQueryUpdate::Gzip(out.into())
            }
        }
    }
}

impl TableSpec {
    fn build(&self, expected: &mut Contents) -> TableUpdate {
        TableUpdate {
            table_id: self.table_id.into(),
            table_name: self.name.clone().into(),
            num_rows: self.num_rows,
            updates: self.queries.iter().map(|q| q.build(expected)).collect(),
        }
    }
}

fn build_database(tables: &[TableSpec], expected: &mut Contents) -> DatabaseUpdate {
    DatabaseUpdate { tables: tables.iter().map(|t| t.build(expected)).collect() }
}

impl AppliedSpec {
    fn rows(&self, expected: &mut Contents) -> ws::SubscribeRows<ws::BsatnFormat> {
        ws::SubscribeRows {
            table_id: self.table_id.into(),
            table_name: self.table_name.clone().into(),
            table_rows: self.table.build(expected),
        }
    }
}

impl ServerSpec {
    /// The message, and what its row lists and query updates must hold.
    fn build(&self) -> (ServerMessage, Contents) {
        let mut expected = Contents::default();
        let e = &mut expected;
        let message = match self {
            ServerSpec::InitialSubscription { tables, request_id, duration } => {
                ws::ServerMessage::InitialSubscription(ws::InitialSubscription {
                    database_update: build_database(tables, e),
                    request_id: *request_id,
                    total_host_execution_duration: TimeDuration::from_micros(*duration),
                })
            }
            ServerSpec::TransactionUpdate(tx) => ws::ServerMessage::TransactionUpdate(ws::TransactionUpdate {
                status: match &tx.status {
                    StatusSpec::Committed(tables) => ws::UpdateStatus::Committed(build_database(tables, e)),
                    StatusSpec::Failed(message) => ws::UpdateStatus::Failed(message.clone().into()),
                    StatusSpec::OutOfEnergy => ws::UpdateStatus::OutOfEnergy,
                },
                timestamp: Timestamp::from_micros_since_unix_epoch(tx.timestamp),
                caller_identity: Identity::from_byte_array(tx.caller),
                caller_connection_id: ConnectionId::from_u128(tx.caller_connection_id),
                reducer_call: ws::ReducerCallInfo {
                    reducer_name: tx.reducer.clone().into(),
                    reducer_id: tx.reducer_id,
                    args: tx.args.clone().into(),
                    request_id: tx.request_id,
                },
                energy_quanta_used: EnergyQuanta::new(tx.energy),
                total_host_execution_duration: TimeDuration::from_micros(tx.duration),
            }),
            ServerSpec::TransactionUpdateLight { request_id, tables } => {
                ws::ServerMessage::TransactionUpdateLight(ws::TransactionUpdateLight {
                    request_id: *request_id,
                    update: build_database(tables, e),
                })
            }
            ServerSpec::IdentityToken { identity, token, connection_id } => {
                ws::ServerMessage::IdentityToken(ws::IdentityToken {
                    identity: Identity::from_byte_array(*identity),
                    token: token.clone().into(),
                    connection_id: ConnectionId::from_u128(*connection_id),
                })
            }
            ServerSpec::OneOffQueryResponse { message_id, error, tables, duration } => {
                ws::ServerMessage::OneOffQueryResponse(ws::OneOffQueryResponse {
                    message_id: message_id.clone().into(),
                    error: error.clone().map(Into::into),
                    tables: tables
                        .iter()
                        .map(|(name, rows)| {
                            e.row_lists.push(rows.rows.clone());
                            ws::OneOffTable { table_name: name.clone().into(), rows: rows.build() }
                        })
                        .collect(),
                    total_host_execution_duration: TimeDuration::from_micros(*duration),
                })
            }
            ServerSpec::SubscribeApplied(a) => ws::ServerMessage::SubscribeApplied(ws::SubscribeApplied {
                request_id: a.request_id,
                total_host_execution_duration_micros: a.micros,
                query_id: ws::QueryId::new(a.query_id),
                rows: a.rows(e),
            }),
            ServerSpec::UnsubscribeApplied(a) => ws::ServerMessage::UnsubscribeApplied(ws::UnsubscribeApplied {
                request_id: a.request_id,
                total_host_execution_duration_micros: a.micros,
                query_id: ws::QueryId::new(a.query_id),
                rows: a.rows(e),
            }),
            ServerSpec::SubscriptionError { micros, request_id, query_id, table_id, error } => {
                ws::ServerMessage::SubscriptionError(ws::SubscriptionError {
                    total_host_execution_duration_micros: *micros,
                    request_id: *request_id,
                    query_id: *query_id,
                    table_id: table_id.map(Into::into),
                    error: error.clone().into(),
                })
            }
            ServerSpec::SubscribeMultiApplied(a) => {
                ws::ServerMessage::SubscribeMultiApplied(ws::SubscribeMultiApplied {
                    request_id: a.request_id,
                    total_host_execution_duration_micros: a.micros,
                    query_id: ws::QueryId::new(a.query_id),
                    update: build_database(&a.tables, e),
                })
            }
            ServerSpec::UnsubscribeMultiApplied(a) => {
                ws::ServerMessage::UnsubscribeMultiApplied(ws::UnsubscribeMultiApplied {
                    request_id: a.request_id,
                    total_host_execution_duration_micros: a.micros,
                    query_id: ws::QueryId::new(a.query_id),
                    update: build_database(&a.tables, e),
                })
            }
        };
        (message, expected)
    }
}

/// Walks a message the way a consumer does: `codec::rows` for row lists and
/// `codec::decompress_query_update` for query updates.
fn contents(message: &ServerMessage) -> Result<Contents, CodecError> {
    let mut c = Contents::default();
    match message {
        ws::ServerMessage::InitialSubscription(m) => c.database(&m.database_update)?,
        ws::ServerMessage::TransactionUpdate(m) => {
            if let ws::UpdateStatus::Committed(update) = &m.status {
                c.database(update)?;
            }
        }
        ws::ServerMessage::TransactionUpdateLight(m) => c.database(&m.update)?,
        ws::ServerMessage::IdentityToken(_) | ws::ServerMessage::SubscriptionError(_) => {}
        ws::ServerMessage::OneOffQueryResponse(m) => {
            for table in m.tables.iter() {
                c.row_lists.push(row_bytes(&table.rows));
            }
        }
        ws::ServerMessage::SubscribeApplied(m) => c.table(&m.rows.table_rows)?,
        ws::ServerMessage::UnsubscribeApplied(m) => c.table(&m.rows.table_rows)?,
        ws::ServerMessage::SubscribeMultiApplied(m) => c.database(&m.update)?,
        ws::ServerMessage::UnsubscribeMultiApplied(m) => c.database(&m.update)?,
    }
    Ok(c)
}

impl Contents {
    fn database(&mut self, update: &DatabaseUpdate) -> Result<(), CodecError> {
        update.tables.iter().try_for_each(|t| self.table(t))
    }

    fn table(&mut self, table: &TableUpdate) -> Result<(), CodecError> {
        for query in &table.updates {
            let update = codec::decompress_query_update(query, DecodeLimits::default())?;
            self.query_updates.push(bsatn::to_vec(&update).unwrap());
            self.row_lists.push(row_bytes(&update.deletes));
            self.row_lists.push(row_bytes(&update.inserts));
        }
        Ok(())
    }
}

fn row_bytes(list: &ws::BsatnRowList) -> Vec<Vec<u8>> {
    codec::rows(list).map(|row| row.to_vec()).collect()
}

#[derive(Debug, Clone)]
enum ClientSpec {
    CallReducer { reducer: String, args: Vec<u8>, request_id: u32, no_success_notify: bool },
    Subscribe { queries: Vec<String>, request_id: u32 },
    OneOffQuery { message_id: Vec<u8>, query: String },
    SubscribeSingle { query: String, request_id: u32, query_id: u32 },
    SubscribeMulti { queries: Vec<String>, request_id: u32, query_id: u32 },
    Unsubscribe { request_id: u32, query_id: u32 },
    UnsubscribeMulti { request_id: u32, query_id: u32 },
}

fn boxed_strs(strings: &[String]) -> Box<[Box<str>]> {
    strings.iter().map(|s| s.as_str().into()).collect()
}

impl ClientSpec {
    fn build(&self) -> ClientMessage {
        match self.clone() {
            ClientSpec::CallReducer { reducer, args, request_id, no_success_notify } => {
                ws::ClientMessage::CallReducer(ws::CallReducer {
                    reducer: reducer.into(),
                    args: Bytes::from(args),
                    request_id,
                    flags: if no_success_notify {
                        ws::CallReducerFlags::NoSuccessNotify
                    } else {
                        ws::CallReducerFlags::FullUpdate
                    },
                })
            }
            ClientSpec::Subscribe { queries, request_id } => {
                ws::ClientMessage::Subscribe(ws::Subscribe { query_strings: boxed_strs(&queries), request_id })
            }
            ClientSpec::OneOffQuery { message_id, query } => ws::ClientMessage::OneOffQuery(ws::OneOffQuery {
                message_id: message_id.into(),
                query_string: query.into(),
            }),
            ClientSpec::SubscribeSingle { query, request_id, query_id } => {
                ws::ClientMessage::SubscribeSingle(ws::SubscribeSingle {
                    query: query.into(),
                    request_id,
                    query_id: ws::QueryId::new(query_id),
                })
            }
            ClientSpec::SubscribeMulti { queries, request_id, query_id } => {
                ws::ClientMessage::SubscribeMulti(ws::SubscribeMulti {
                    query_strings: boxed_strs(&queries),
                    request_id,
                    query_id: ws::QueryId::new(query_id),
                })
            }
            ClientSpec::Unsubscribe { request_id, query_id } => {
                ws::ClientMessage::Unsubscribe(ws::Unsubscribe { request_id, query_id: ws::QueryId::new(query_id) })
            }
            ClientSpec::UnsubscribeMulti { request_id, query_id } => {
                ws::ClientMessage::UnsubscribeMulti(ws::UnsubscribeMulti {
                    request_id,
                    query_id: ws::QueryId::new(query_id),
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// Printable text, multi-byte characters included.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn rows_spec() -> impl Strategy<Value = RowsSpec> {
    prop_oneof![
        (1u16..=24, 0usize..6).prop_flat_map(|(size, n)| {
            vec(vec(any::<u8>(), size as usize), n).prop_map(move |rows| RowsSpec { fixed: Some(size), rows })
        }),
        vec(vec(any::<u8>(), 0..24), 0..6).prop_map(|rows| RowsSpec { fixed: None, rows }),
    ]
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    let compression =
        prop_oneof![Just(QueryCompression::Uncompressed), Just(QueryCompression::Brotli), Just(QueryCompression::Gzip)];
    (rows_spec(), rows_spec(), compression).prop_map(|(deletes, inserts, compression)| QuerySpec {
        deletes,
        inserts,
        compression,
    })
}

fn table_spec() -> impl Strategy<Value = TableSpec> {
    (any::<u32>(), text(), any::<u64>(), vec(query_spec(), 0..3))
        .prop_map(|(table_id, name, num_rows, queries)| TableSpec { table_id, name, num_rows, queries })
}

fn tables() -> impl Strategy<Value = Vec<TableSpec>> {
    vec(table_spec(), 0..3)
}

fn applied_spec() -> impl Strategy<Value = AppliedSpec> {
    (any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>(), text(), table_spec()).prop_map(
        |(request_id, micros, query_id, table_id, table_name, table)| AppliedSpec {
            request_id,
            micros,
            query_id,
            table_id,
            table_name,
            table,
        },
    )
}

fn multi_applied_spec() -> impl Strategy<Value = MultiAppliedSpec> {
    (any::<u32>(), any::<u64>(), any::<u32>(), tables())
        .prop_map(|(request_id, micros, query_id, tables)| MultiAppliedSpec { request_id, micros, query_id, tables })
}

fn transaction_spec(status: impl Strategy<Value = StatusSpec>) -> impl Strategy<Value = ServerSpec> {
    (
        status,
        any::<i64>(),
        any::<[u8; 32]>(),
        any::<u128>(),
        text(),
        any::<u32>(),
        vec(any::<u8>(), 0..32),
        any::<u32>(),
        any::<u128>(),
        any::<i64>(),
    )
        .prop_map(
            |(
                status,
                timestamp,
                caller,
                caller_connection_id,
                reducer,
                reducer_id,
                args,
                request_id,
                energy,
                duration,
            )| {
                ServerSpec::TransactionUpdate(Box::new(TransactionSpec {
                    status,
                    timestamp,
                    caller,
                    caller_connection_id,
                    reducer,
                    reducer_id,
                    args,
                    request_id,
                    energy,
                    duration,
                }))
            },
        )
}

/// Every server message variant, every transaction status, one-off answers with and without error.
fn server_spec() -> impl Strategy<Value = ServerSpec> {
    prop_oneof![
        (tables(), any::<u32>(), any::<i64>()).prop_map(|(tables, request_id, duration)| {
            ServerSpec::InitialSubscription { tables, request_id, duration }
        }),
        transaction_spec(tables().prop_map(StatusSpec::Committed)),
        transaction_spec(text().prop_map(StatusSpec::Failed)),
        transaction_spec(Just(StatusSpec::OutOfEnergy)),
        (any::<u32>(), tables())
            .prop_map(|(request_id, tables)| ServerSpec::TransactionUpdateLight { request_id, tables }),
        (any::<[u8; 32]>(), text(), any::<u128>()).prop_map(|(identity, token, connection_id)| {
            ServerSpec::IdentityToken { identity, token, connection_id }
        }),
        (vec(any::<u8>(), 0..16), vec((text(), rows_spec()), 0..3), any::<i64>()).prop_map(
            |(message_id, tables, duration)| ServerSpec::OneOffQueryResponse {
                message_id,
                error: None,
                tables,
                duration
            }
        ),
        (vec(any::<u8>(), 0..16), text(), any::<i64>()).prop_map(|(message_id, error, duration)| {
            ServerSpec::OneOffQueryResponse { message_id, error: Some(error), tables: Vec::new(), duration }
        }),
        applied_spec().prop_map(|a| ServerSpec::SubscribeApplied(Box::new(a))),
        applied_spec().prop_map(|a| ServerSpec::UnsubscribeApplied(Box::new(a))),
        (
            any::<u64>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            text()
        )
            .prop_map(|(micros, request_id, query_id, table_id, error)| ServerSpec::SubscriptionError {
                micros,
                request_id,
                query_id,
                table_id,
                error
            }),
        multi_applied_spec().prop_map(ServerSpec::SubscribeMultiApplied),
        multi_applied_spec().prop_map(ServerSpec::UnsubscribeMultiApplied),
    ]
}

fn client_spec() -> impl Strategy<Value = ClientSpec> {
    prop_oneof![
        (text(), vec(any::<u8>(), 0..64), any::<u32>(), any::<bool>()).prop_map(
            |(reducer, args, request_id, no_success_notify)| ClientSpec::CallReducer {
                reducer,
                args,
                request_id,
                no_success_notify
            }
        ),
        (vec(text(), 0..4), any::<u32>())
            .prop_map(|(queries, request_id)| ClientSpec::Subscribe { queries, request_id }),
        (vec(any::<u8>(), 0..16), text()).prop_map(|(message_id, query)| ClientSpec::OneOffQuery { message_id, query }),
        (text(), any::<u32>(), any::<u32>()).prop_map(|(query, request_id, query_id)| ClientSpec::SubscribeSingle {
            query,
            request_id,
            query_id
        }),
        (vec(text(), 0..4), any::<u32>(), any::<u32>()).prop_map(|(queries, request_id, query_id)| {
            ClientSpec::SubscribeMulti { queries, request_id, query_id }
        }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(request_id, query_id)| ClientSpec::Unsubscribe { request_id, query_id }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(request_id, query_id)| ClientSpec::UnsubscribeMulti { request_id, query_id }),
    ]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Brotli), Just(Compression::Gzip)]
}

// ---------------------------------------------------------------------------
// A typed row, as the official code generator would emit it.
// ---------------------------------------------------------------------------

#[derive(spacetimedb_lib::SpacetimeType, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
enum Kind {
    Empty,
    Count(u32),
    Label(String),
}

#[derive(spacetimedb_lib::SpacetimeType, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
struct Player {
    id: u64,
    name: String,
    level: u8,
    hp: i32,
    speed: f32,
    position: f64,
    tags: Vec<String>,
    guild: Option<u32>,
    online: bool,
    kind: Kind,
    owner: Identity,
    seen: Timestamp,
    blob: Vec<u8>,
    scores: Vec<i16>,
}

fn player() -> impl Strategy<Value = Player> {
    let kind = prop_oneof![Just(Kind::Empty), any::<u32>().prop_map(Kind::Count), text().prop_map(Kind::Label)];
    (
        (any::<u64>(), text(), any::<u8>(), any::<i32>(), -1.0e6f32..1.0e6, -1.0e12f64..1.0e12),
        (vec(text(), 0..4), proptest::option::of(any::<u32>()), any::<bool>(), kind),
        (any::<[u8; 32]>(), any::<i64>(), vec(any::<u8>(), 0..16), vec(any::<i16>(), 0..8)),
    )
        .prop_map(
            |((id, name, level, hp, speed, position), (tags, guild, online, kind), (owner, seen, blob, scores))| {
                Player {
                    id,
                    name,
                    level,
                    hp,
                    speed,
                    position,
                    tags,
                    guild,
                    online,
                    kind,
                    owner: Identity::from_byte_array(owner),
                    seen: Timestamp::from_micros_since_unix_epoch(seen),
                    blob,
                    scores,
                }
            },
        )
}

/// A module with one table `player` whose row type is [`Player`].
fn player_schema() -> ModuleSchema {
    let mut module = RawModuleDefV9Builder::new();
    let AlgebraicType::Ref(row_type) = module.add_type::<Player>() else {
        panic!("a struct is registered as a named type");
    };
    module.build_table("player", row_type).with_primary_key(0u16);
    ModuleSchema::from_raw(module.finish()).unwrap()
}

// ---------------------------------------------------------------------------
// Hand-crafted frames.
// ---------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// A `BsatnRowList` with `RowSizeHint::FixedSize(size)`.
fn fixed_list(size: u16, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&size.to_le_bytes());
    put_u32(&mut out, data.len() as u32);
    out.extend_from_slice(data);
    out
}

/// A `BsatnRowList` with `RowSizeHint::RowOffsets(offsets)`.
fn offsets_list(offsets: &[u64], data: &[u8]) -> Vec<u8> {
    let mut out = vec![1];
    put_u32(&mut out, offsets.len() as u32);
    for offset in offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    put_u32(&mut out, data.len() as u32);
    out.extend_from_slice(data);
    out
}

/// An uncompressed `OneOffQueryResponse` frame with one table `t` whose rows are `row_list`.
fn one_off_frame(row_list: &[u8]) -> Vec<u8> {
    let mut frame = vec![ws::SERVER_MSG_COMPRESSION_TAG_NONE, 4]; // OneOffQueryResponse
    put_u32(&mut frame, 0); // message_id: no bytes
    frame.push(1); // error: none
    put_u32(&mut frame, 1); // tables: one
    put_str(&mut frame, "t");
    frame.extend_from_slice(row_list);
    frame.extend_from_slice(&0i64.to_le_bytes()); // total_host_execution_duration
    frame
}

/// Where a hand-crafted frame puts a length claim.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// `OneOffQueryResponse.tables`: an array of structs.
    OneOffTables,
    /// `OneOffQueryResponse.message_id`: an array of bytes.
    OneOffMessageId,
    /// `IdentityToken.token`: a string.
    IdentityTokenString,
    /// `SubscribeMultiApplied.update.tables`: an array of structs.
    MultiAppliedTables,
    /// A row list's `RowOffsets` count.
    RowOffsetCount,
    /// A row list's `rows_data` length.
    RowDataLength,
}

const CLAIMS: [Claim; 6] = [
    Claim::OneOffTables,
    Claim::OneOffMessageId,
    Claim::IdentityTokenString,
    Claim::MultiAppliedTables,
    Claim::RowOffsetCount,
    Claim::RowDataLength,
];

impl Claim {
    /// An uncompressed frame claiming `claim` elements at this place, followed by `tail`.
    fn frame(self, claim: u32, tail: &[u8]) -> Vec<u8> {
        let mut f = vec![ws::SERVER_MSG_COMPRESSION_TAG_NONE];
        let one_off_table = |f: &mut Vec<u8>| {
            f.push(4); // OneOffQueryResponse
            put_u32(f, 0); // message_id
            f.push(1); // error: none
            put_u32(f, 1); // one table
            put_str(f, "t");
        };
        match self {
            Claim::OneOffTables => {
                f.push(4);
                put_u32(&mut f, 0);
                f.push(1);
                put_u32(&mut f, claim);
            }
            Claim::OneOffMessageId => {
                f.push(4);
                put_u32(&mut f, claim);
            }
            Claim::IdentityTokenString => {
                f.push(3); // IdentityToken
                f.extend_from_slice(&[0; 32]); // identity
                put_u32(&mut f, claim);
            }
            Claim::MultiAppliedTables => {
                f.push(8); // SubscribeMultiApplied
                put_u32(&mut f, 0); // request_id
                f.extend_from_slice(&0u64.to_le_bytes()); // micros
                put_u32(&mut f, 0); // query_id
                put_u32(&mut f, claim); // update.tables
            }
            Claim::RowOffsetCount => {
                one_off_table(&mut f);
                f.push(1); // RowOffsets
                put_u32(&mut f, claim);
            }
            Claim::RowDataLength => {
                one_off_table(&mut f);
                f.push(1); // RowOffsets
                put_u32(&mut f, 0);
                put_u32(&mut f, claim); // rows_data
            }
        }
        f.extend_from_slice(tail);
        f
    }

    /// With a claim of 0, the tail that completes the frame, and the official message it then encodes.
    fn valid_completion(self) -> (Vec<u8>, ServerMessage) {
        let empty_one_off = |tables: Vec<ws::OneOffTable<ws::BsatnFormat>>| {
            ws::ServerMessage::OneOffQueryResponse(ws::OneOffQueryResponse {
                message_id: Box::new([]),
                error: None,
                tables: tables.into(),
                total_host_execution_duration: TimeDuration::from_micros(0),
            })
        };
        let table_t = || vec![ws::OneOffTable { table_name: "t".into(), rows: ws::BsatnRowList::default() }];
        let duration = 0i64.to_le_bytes().to_vec();
        match self {
            Claim::OneOffTables => (duration, empty_one_off(Vec::new())),
            Claim::OneOffMessageId => {
                let mut tail = vec![1, 0, 0, 0, 0];
                tail.extend_from_slice(&duration);
                (tail, empty_one_off(Vec::new()))
            }
            Claim::IdentityTokenString => (
                vec![0; 16],
                ws::ServerMessage::IdentityToken(ws::IdentityToken {
                    identity: Identity::ZERO,
                    token: "".into(),
                    connection_id: ConnectionId::ZERO,
                }),
            ),
            Claim::MultiAppliedTables => (
                Vec::new(),
                ws::ServerMessage::SubscribeMultiApplied(ws::SubscribeMultiApplied {
                    request_id: 0,
                    total_host_execution_duration_micros: 0,
                    query_id: ws::QueryId::new(0),
                    update: DatabaseUpdate { tables: Vec::new() },
                }),
            ),
            Claim::RowOffsetCount => {
                let mut tail = vec![0, 0, 0, 0];
                tail.extend_from_slice(&duration);
                (tail, empty_one_off(table_t()))
            }
            Claim::RowDataLength => (duration, empty_one_off(table_t())),
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ws::gzip_compress(bytes, &mut out);
    out
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ws::brotli_compress(bytes, &mut out);
    out
}

/// A transaction update (light) whose only query update is `update`.
fn light_with(update: ws::CompressableQueryUpdate<ws::BsatnFormat>) -> ServerMessage {
    ws::ServerMessage::TransactionUpdateLight(ws::TransactionUpdateLight {
        request_id: 1,
        update: DatabaseUpdate {
            tables: vec![TableUpdate {
                table_id: 1u32.into(),
                table_name: "t".into(),
                num_rows: 0,
                updates: [update].into(),
            }],
        },
    })
}

/// Checks what any decoder failure must be: a `CodecError` that says something.
fn check_error(error: &CodecError) -> Result<(), TestCaseError> {
    prop_assert!(!error.to_string().trim().is_empty(), "empty Display for {:?}", error);
    Ok(())
}

/// Decodes untrusted bytes: an error must explain itself, and a message that does
/// decode must be safe to use (re-encode, walk its rows and query updates).
fn decode_untrusted(frame: &[u8], limits: DecodeLimits) -> Result<Option<ServerMessage>, TestCaseError> {
    match codec::decode_server_message(frame, limits) {
        Ok(message) => {
            bsatn::to_vec(&message).unwrap();
            if let Err(e) = contents(&message) {
                check_error(&e)?;
            }
            Ok(Some(message))
        }
        Err(e) => {
            check_error(&e)?;
            Ok(None)
        }
    }
}

fn is_decompress_or_malformed(error: &CodecError) -> bool {
    matches!(error, CodecError::Decompress { .. } | CodecError::Malformed { .. })
}

// ---------------------------------------------------------------------------
// Property 14: data serialization consistency.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 14: every server message variant survives encode_server_message and decode_server_message under every frame compression, byte for byte, with its rows and query updates intact
    #[test]
    fn prop_server_messages_round_trip_under_every_compression(spec in server_spec()) {
        let (message, expected) = spec.build();
        let original = bsatn::to_vec(&message).unwrap();
        // The builder and `codec::rows` agree on the rows before anything is sent.
        prop_assert_eq!(&contents(&message).unwrap(), &expected);
        for compression in COMPRESSIONS {
            let frame = codec::encode_server_message(&message, compression).unwrap();
            let tag = match compression {
                Compression::None => ws::SERVER_MSG_COMPRESSION_TAG_NONE,
                Compression::Brotli => ws::SERVER_MSG_COMPRESSION_TAG_BROTLI,
                _ => ws::SERVER_MSG_COMPRESSION_TAG_GZIP,
            };
            prop_assert_eq!(frame[0], tag);
            let decoded = codec::decode_server_message(&frame, DecodeLimits::default())
                .map_err(|e| TestCaseError::fail(format!("{compression:?} frame does not decode: {e}")))?;
            prop_assert_eq!(codec::server_message_kind(&decoded), codec::server_message_kind(&message));
            prop_assert_eq!(&bsatn::to_vec(&decoded).unwrap(), &original);
            let decoded_contents = contents(&decoded)
                .map_err(|e| TestCaseError::fail(format!("a query update does not decompress: {e}")))?;
            prop_assert_eq!(&decoded_contents, &expected);
        }
    }

    // Feature: spacetimedb-integration, Property 14: every client message variant survives encode_client_message and BSATN decoding byte for byte
    #[test]
    fn prop_client_messages_round_trip(spec in client_spec()) {
        let message = spec.build();
        let bytes = codec::encode_client_message(&message).unwrap();
        prop_assert_eq!(&bytes, &bsatn::to_vec(&message).unwrap());
        let decoded: ClientMessage = bsatn::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("client message does not decode: {e}")))?;
        prop_assert_eq!(codec::client_message_kind(&decoded), codec::client_message_kind(&message));
        prop_assert_eq!(&bsatn::to_vec(&decoded).unwrap(), &bytes);
        if let (ws::ClientMessage::CallReducer(sent), ws::ClientMessage::CallReducer(received)) = (&message, &decoded) {
            prop_assert_eq!(&sent.args, &received.args);
            prop_assert!(sent.flags == received.flags);
        }
    }

    // Feature: spacetimedb-integration, Property 14: a reducer call round-trips with both call flags (FullUpdate and NoSuccessNotify)
    #[test]
    fn prop_call_reducer_round_trips_with_both_flags(
        reducer in text(),
        args in vec(any::<u8>(), 0..64),
        request_id in any::<u32>(),
    ) {
        for (flags, byte) in [(ws::CallReducerFlags::FullUpdate, 0u8), (ws::CallReducerFlags::NoSuccessNotify, 1u8)] {
            let message = ws::ClientMessage::CallReducer(ws::CallReducer {
                reducer: reducer.as_str().into(),
                args: Bytes::from(args.clone()),
                request_id,
                flags,
            });
            let bytes = codec::encode_client_message(&message).unwrap();
            // The flag is the last byte on the wire.
            prop_assert_eq!(bytes.last().copied(), Some(byte));
            let decoded: ClientMessage = bsatn::from_slice(&bytes).unwrap();
            let ws::ClientMessage::CallReducer(call) = &decoded else {
                return Err(TestCaseError::fail("decoded as another variant"));
            };
            prop_assert_eq!(&*call.reducer, reducer.as_str());
            prop_assert_eq!(&call.args[..], &args[..]);
            prop_assert_eq!(call.request_id, request_id);
            prop_assert!(call.flags == flags);
            prop_assert_eq!(&bsatn::to_vec(&decoded).unwrap(), &bytes);
        }
    }

    // Feature: spacetimedb-integration, Property 14: a typed row (derived SATS Serialize/Deserialize) round-trips through schema::decode_row, directly and inside a decoded server message, and agrees with the module schema's dynamic decoding
    #[test]
    fn prop_typed_rows_round_trip_through_decode_row(
        players in vec(player(), 0..6),
        compression in compression(),
    ) {
        let schema = player_schema();
        let table = schema.table("player").unwrap();
        let mut list = ws::BsatnRowListBuilder::row_offsets();
        for p in &players {
            let bytes = bsatn::to_vec(p).unwrap();
            prop_assert_eq!(&schema::decode_row::<Player>(&bytes).unwrap(), p);
            // The dynamic decoding by the schema gives the same value.
            let dynamic = table.decode(&bytes).unwrap();
            prop_assert_eq!(&bsatn::to_vec(&dynamic).unwrap(), &bytes);
            list.push(&bytes);
        }
        let message = ws::ServerMessage::OneOffQueryResponse(ws::OneOffQueryResponse {
            message_id: Box::new([7]),
            error: None,
            tables: vec![ws::OneOffTable { table_name: "player".into(), rows: list.finish() }].into(),
            total_host_execution_duration: TimeDuration::from_micros(1),
        });
        let frame = codec::encode_server_message(&message, compression).unwrap();
        let decoded = codec::decode_server_message(&frame, DecodeLimits::default()).unwrap();
        let ws::ServerMessage::OneOffQueryResponse(response) = &decoded else {
            return Err(TestCaseError::fail("decoded as another variant"));
        };
        let rows: Vec<Player> =
            codec::rows(&response.tables[0].rows).map(|row| schema::decode_row(&row).unwrap()).collect();
        prop_assert_eq!(&rows, &players);
    }
}

// ---------------------------------------------------------------------------
// Property 15: serialization error handling.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 15: random bytes (with any or a valid compression tag) never panic the decoder; failures are CodecErrors with a message
    #[test]
    fn prop_random_bytes_never_panic(
        tag in prop_oneof![0u8..3, any::<u8>()],
        body in vec(any::<u8>(), 0..512),
        with_tag in any::<bool>(),
    ) {
        let frame = if with_tag { [vec![tag], body.clone()].concat() } else { body.clone() };
        let decoded = decode_untrusted(&frame, DecodeLimits::default())?;
        if frame.is_empty() {
            prop_assert!(decoded.is_none());
        }
        if let Some(&tag) = frame.first().filter(|&&t| t > ws::SERVER_MSG_COMPRESSION_TAG_GZIP) {
            prop_assert!(decoded.is_none());
            prop_assert_eq!(
                codec::decode_server_message(&frame, DecodeLimits::default()).err(),
                Some(CodecError::UnknownCompressionTag(tag))
            );
        }
        // Random bytes as compressed query updates are refused, not panicked on.
        for update in [
            ws::CompressableQueryUpdate::Brotli(Bytes::from(body.clone())),
            ws::CompressableQueryUpdate::Gzip(Bytes::from(body.clone())),
        ] {
            if let Err(e) = codec::decompress_query_update(&update, DecodeLimits::default()) {
                check_error(&e)?;
                prop_assert!(is_decompress_or_malformed(&e), "{e}");
            }
        }
    }

    // Feature: spacetimedb-integration, Property 15: every truncation of a valid frame is refused (uncompressed) or never yields a different message (compressed), and never panics
    #[test]
    fn prop_every_truncation_of_a_valid_frame_is_refused(spec in server_spec()) {
        let (message, _) = spec.build();
        let original = bsatn::to_vec(&message).unwrap();
        for compression in COMPRESSIONS {
            let frame = codec::encode_server_message(&message, compression).unwrap();
            for cut in 0..frame.len() {
                let prefix = &frame[..cut];
                match codec::decode_server_message(prefix, DecodeLimits::default()) {
                    Err(e) => {
                        check_error(&e)?;
                        match cut {
                            0 => prop_assert_eq!(&e, &CodecError::EmptyFrame),
                            _ if compression == Compression::None => {
                                prop_assert!(matches!(e, CodecError::Malformed { .. }), "{}", e)
                            }
                            _ => prop_assert!(is_decompress_or_malformed(&e), "{}", e),
                        }
                    }
                    Ok(decoded) => {
                        prop_assert!(compression != Compression::None, "a strict prefix of BSATN decoded");
                        prop_assert_eq!(&bsatn::to_vec(&decoded).unwrap(), &original);
                    }
                }
            }
        }
    }

    // Feature: spacetimedb-integration, Property 15: frames cut at a random point, with flipped bytes or with a random compression tag never panic the decoder, and what does decode is safe to use
    #[test]
    fn prop_corrupted_frames_never_panic(
        spec in server_spec(),
        compression in compression(),
        cut in any::<Index>(),
        flips in vec((any::<Index>(), 1u8..=255), 1..4),
        tag in any::<u8>(),
    ) {
        let (message, _) = spec.build();
        let frame = codec::encode_server_message(&message, compression).unwrap();

        let cut = cut.index(frame.len());
        prop_assert!(decode_untrusted(&frame[..cut], DecodeLimits::default())?.is_none() || compression != Compression::None);

        let mut flipped = frame.clone();
        for (at, mask) in &flips {
            flipped[at.index(frame.len())] ^= mask;
        }
        decode_untrusted(&flipped, DecodeLimits::default())?;

        let mut retagged = frame.clone();
        retagged[0] = tag;
        let decoded = decode_untrusted(&retagged, DecodeLimits::default())?;
        if tag > ws::SERVER_MSG_COMPRESSION_TAG_GZIP {
            prop_assert!(decoded.is_none());
            prop_assert_eq!(
                codec::decode_server_message(&retagged, DecodeLimits::default()).err(),
                Some(CodecError::UnknownCompressionTag(tag))
            );
        }
    }

    // Feature: spacetimedb-integration, Property 15: a length field claiming a huge number of elements (up to u32::MAX) is refused as Malformed at once, without allocating for it
    #[test]
    fn prop_huge_length_claims_fail_fast(
        place in proptest::sample::select(CLAIMS.to_vec()),
        claim in prop_oneof![Just(u32::MAX), (1u32 << 20)..=u32::MAX],
        tail in vec(any::<u8>(), 0..64),
    ) {
        // The hand-crafted layout is the official one: with a claim of 0 it decodes.
        let (completion, official) = place.valid_completion();
        let control = place.frame(0, &completion);
        prop_assert_eq!(&control, &codec::encode_server_message(&official, Compression::None).unwrap());
        prop_assert!(codec::decode_server_message(&control, DecodeLimits::default()).is_ok());

        let frame = place.frame(claim, &tail);
        let started = Instant::now();
        let result = codec::decode_server_message(&frame, DecodeLimits::default());
        let took = started.elapsed();
        let error = result.err().ok_or_else(|| TestCaseError::fail("a huge claim decoded"))?;
        check_error(&error)?;
        prop_assert!(matches!(error, CodecError::Malformed { .. }), "{error}");
        prop_assert!(took < Duration::from_secs(1), "refusing took {took:?}");
    }

    // Feature: spacetimedb-integration, Property 15: a row list with FixedSize(0) and data, or a fixed size that does not divide the data, is refused as Malformed; consistent ones decode to exactly their rows
    #[test]
    fn prop_fixed_size_row_lists_are_checked(
        size in prop_oneof![Just(0u16), 1u16..8, any::<u16>()],
        data in vec(any::<u8>(), 0..64),
    ) {
        let consistent = if size == 0 { data.is_empty() } else { data.len() % size as usize == 0 };
        check_hand_crafted_list(&fixed_list(size, &data), consistent, || {
            if size == 0 { Vec::new() } else { data.chunks(size as usize).map(<[u8]>::to_vec).collect() }
        })?;
    }

    // Feature: spacetimedb-integration, Property 15: a row list whose offsets descend or point past its data is refused as Malformed, in a frame and in a compressed query update; consistent ones decode to exactly their rows
    #[test]
    fn prop_offset_row_lists_are_checked(
        data in vec(any::<u8>(), 0..64),
        offsets in vec(any::<u64>(), 0..6),
        shape in 0u8..4,
    ) {
        let len = data.len() as u64;
        let mut offsets: Vec<u64> = match shape {
            // Inside the data, in any order (mostly not ascending).
            0 => offsets.iter().map(|o| o % (len + 1)).collect(),
            // Inside and ascending: valid.
            1 => offsets.iter().map(|o| o % (len + 1)).collect(),
            // Near the end of the data, some past it.
            2 => offsets.iter().map(|o| len.saturating_sub(2) + o % 5).collect(),
            // Anywhere at all.
            _ => offsets,
        };
        if shape == 1 {
            offsets.sort_unstable();
        }
        let consistent = offsets.windows(2).all(|w| w[0] <= w[1]) && offsets.iter().all(|&o| o <= len);
        check_hand_crafted_list(&offsets_list(&offsets, &data), consistent, || {
            offsets
                .iter()
                .enumerate()
                .map(|(i, &start)| {
                    let end = offsets.get(i + 1).copied().unwrap_or(len);
                    data[start as usize..end as usize].to_vec()
                })
                .collect()
        })?;
    }

    // Feature: spacetimedb-integration, Property 15: truncated or extended rows are refused by TableSchema::decode (Malformed) and schema::decode_row (Decode), never panicking
    #[test]
    fn prop_truncated_rows_are_refused(p in player(), junk in vec(any::<u8>(), 1..8)) {
        let schema = player_schema();
        let table = schema.table("player").unwrap();
        let bytes = bsatn::to_vec(&p).unwrap();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let error = table.decode(prefix).err().ok_or_else(|| TestCaseError::fail("a truncated row decoded"))?;
            check_error(&error)?;
            prop_assert!(matches!(error, CodecError::Malformed { what: "row", .. }), "{error}");
            let error = schema::decode_row::<Player>(prefix)
                .err()
                .ok_or_else(|| TestCaseError::fail("a truncated typed row decoded"))?;
            check_error(&error)?;
            prop_assert!(matches!(error, CodecError::Decode { .. }), "{error}");
            prop_assert!(schema.decode_row("player", prefix).is_err());
        }
        let extended = [bytes.clone(), junk].concat();
        let error = table.decode(&extended).err().ok_or_else(|| TestCaseError::fail("an extended row decoded"))?;
        prop_assert!(matches!(error, CodecError::Malformed { what: "row", .. }), "{error}");
        let error = schema::decode_row::<Player>(&extended)
            .err()
            .ok_or_else(|| TestCaseError::fail("an extended typed row decoded"))?;
        prop_assert!(matches!(error, CodecError::Decode { .. }), "{error}");
    }

    // Feature: spacetimedb-integration, Property 15: truncated or garbage brotli and gzip payloads, in frames and in query updates, give CodecError::Decompress or Malformed
    #[test]
    fn prop_bad_compressed_payloads_are_decompress_or_malformed(
        spec in server_spec(),
        garbage in vec(any::<u8>(), 0..256),
        cut in any::<Index>(),
    ) {
        let (message, _) = spec.build();
        let body = bsatn::to_vec(&message).unwrap();
        for (tag, compressed) in [
            (ws::SERVER_MSG_COMPRESSION_TAG_BROTLI, brotli(&body)),
            (ws::SERVER_MSG_COMPRESSION_TAG_GZIP, gzip(&body)),
        ] {
            // Truncated: the stream ends early.
            let truncated = [&[tag][..], &compressed[..cut.index(compressed.len())]].concat();
            let error = codec::decode_server_message(&truncated, DecodeLimits::default())
                .err()
                .ok_or_else(|| TestCaseError::fail("a truncated compressed frame decoded"))?;
            check_error(&error)?;
            prop_assert!(is_decompress_or_malformed(&error), "{error}");
            // Garbage.
            if let Err(error) = codec::decode_server_message(&[&[tag][..], &garbage[..]].concat(), DecodeLimits::default()) {
                check_error(&error)?;
                prop_assert!(is_decompress_or_malformed(&error), "{error}");
            }
        }
        // The same inside a query update, which passes the frame check as plain bytes.
        let update = QueryUpdate { deletes: ws::BsatnRowList::default(), inserts: ws::BsatnRowList::default() };
        let update_bytes = bsatn::to_vec(&update).unwrap();
        for (compressed, make) in [
            (brotli(&update_bytes), ws::CompressableQueryUpdate::Brotli as fn(Bytes) -> _),
            (gzip(&update_bytes), ws::CompressableQueryUpdate::Gzip as fn(Bytes) -> _),
        ] {
            for payload in [compressed[..cut.index(compressed.len())].to_vec(), garbage.clone()] {
                let frame = codec::encode_server_message(&light_with(make(payload.into())), Compression::None).unwrap();
                let decoded = codec::decode_server_message(&frame, DecodeLimits::default()).unwrap();
                if let Err(error) = contents(&decoded) {
                    check_error(&error)?;
                    prop_assert!(is_decompress_or_malformed(&error), "{error}");
                }
            }
        }
    }

    // Feature: spacetimedb-integration, Property 15: frames and decompressed payloads over DecodeLimits::max_message_size are refused as TooLarge (decompression bombs included); within the limit, any limit up to usize::MAX, they decode
    #[test]
    fn prop_limits_are_enforced(
        spec in server_spec(),
        compression in compression(),
        limit in prop_oneof![Just(usize::MAX), any::<usize>(), 0usize..4096],
        bomb_limit in 1024usize..(64 << 10),
        bomb_factor in 2usize..8,
        bomb_byte in any::<u8>(),
        gzip_bomb in any::<bool>(),
    ) {
        let (message, _) = spec.build();
        let body = bsatn::to_vec(&message).unwrap();
        let frame = codec::encode_server_message(&message, compression).unwrap();
        let limits = DecodeLimits { max_message_size: limit };
        match codec::decode_server_message(&frame, limits) {
            Ok(decoded) => {
                prop_assert!(frame.len() <= limit && body.len() <= limit);
                prop_assert_eq!(&bsatn::to_vec(&decoded).unwrap(), &body);
            }
            Err(CodecError::TooLarge { limit: reported, .. }) => {
                prop_assert_eq!(reported, limit);
                prop_assert!(frame.len() > limit || body.len() > limit);
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
        }

        // A bomb: a small compressed payload of many more bytes than allowed.
        let payload = vec![bomb_byte; bomb_limit * bomb_factor];
        let (tag, compressed) = if gzip_bomb {
            (ws::SERVER_MSG_COMPRESSION_TAG_GZIP, gzip(&payload))
        } else {
            (ws::SERVER_MSG_COMPRESSION_TAG_BROTLI, brotli(&payload))
        };
        let limits = DecodeLimits { max_message_size: bomb_limit };
        let bomb = [&[tag][..], &compressed[..]].concat();
        prop_assert!(bomb.len() <= bomb_limit);
        let error = codec::decode_server_message(&bomb, limits).err();
        prop_assert!(matches!(error, Some(CodecError::TooLarge { .. })), "{error:?}");
        let update = if gzip_bomb {
            ws::CompressableQueryUpdate::Gzip(compressed.into())
        } else {
            ws::CompressableQueryUpdate::Brotli(compressed.into())
        };
        let error = codec::decompress_query_update(&update, limits).err();
        prop_assert!(matches!(error, Some(CodecError::TooLarge { .. })), "{error:?}");
    }
}

/// Puts a hand-crafted row list in a frame and in a brotli-compressed query
/// update: both are refused as Malformed unless `consistent`, and decode to
/// `rows()` when it is.
fn check_hand_crafted_list(
    list: &[u8],
    consistent: bool,
    rows: impl FnOnce() -> Vec<Vec<u8>>,
) -> Result<(), TestCaseError> {
    let frame_result = codec::decode_server_message(&one_off_frame(list), DecodeLimits::default());
    // A query update is two row lists: an empty one, then this one.
    let update = [offsets_list(&[], &[]), list.to_vec()].concat();
    let message = light_with(ws::CompressableQueryUpdate::Brotli(brotli(&update).into()));
    let frame = codec::encode_server_message(&message, Compression::Gzip).unwrap();
    let decoded = codec::decode_server_message(&frame, DecodeLimits::default()).unwrap();
    let ws::ServerMessage::TransactionUpdateLight(light) = &decoded else {
        return Err(TestCaseError::fail("decoded as another variant"));
    };
    let query_result = codec::decompress_query_update(&light.update.tables[0].updates[0], DecodeLimits::default());
    if consistent {
        let expected = rows();
        let decoded = frame_result.map_err(|e| TestCaseError::fail(format!("consistent list refused: {e}")))?;
        let ws::ServerMessage::OneOffQueryResponse(response) = &decoded else {
            return Err(TestCaseError::fail("decoded as another variant"));
        };
        prop_assert_eq!(&row_bytes(&response.tables[0].rows), &expected);
        let query = query_result.map_err(|e| TestCaseError::fail(format!("consistent list refused: {e}")))?;
        prop_assert_eq!(&row_bytes(&query.inserts), &expected);
    } else {
        let error = frame_result.err().ok_or_else(|| TestCaseError::fail("inconsistent list decoded"))?;
        check_error(&error)?;
        prop_assert!(matches!(error, CodecError::Malformed { what: "server message", .. }), "{error}");
        let error = query_result.err().ok_or_else(|| TestCaseError::fail("inconsistent list decoded"))?;
        check_error(&error)?;
        prop_assert!(matches!(error, CodecError::Malformed { what: "query update", .. }), "{error}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Fixed examples that anchor the properties.
// ---------------------------------------------------------------------------

#[test]
fn hand_crafted_row_lists_match_the_official_encoding() {
    let mut fixed = ws::BsatnRowListBuilder::fixed(2);
    fixed.push(&[1, 2]);
    fixed.push(&[3, 4]);
    let mut offsets = ws::BsatnRowListBuilder::row_offsets();
    offsets.push(&[1]);
    offsets.push(&[]);
    offsets.push(&[2, 3]);
    for (list, crafted) in
        [(fixed.finish(), fixed_list(2, &[1, 2, 3, 4])), (offsets.finish(), offsets_list(&[0, 1, 1], &[1, 2, 3]))]
    {
        let message = ws::ServerMessage::OneOffQueryResponse(ws::OneOffQueryResponse {
            message_id: Box::new([]),
            error: None,
            tables: vec![ws::OneOffTable { table_name: "t".into(), rows: list }].into(),
            total_host_execution_duration: TimeDuration::from_micros(0),
        });
        assert_eq!(codec::encode_server_message(&message, Compression::None).unwrap(), one_off_frame(&crafted));
    }
}

#[test]
fn a_gzip_bomb_of_100_mib_of_zeros_is_too_large() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..100 {
        encoder.write_all(&chunk).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    let limits = DecodeLimits { max_message_size: 1 << 20 };
    let frame = [&[ws::SERVER_MSG_COMPRESSION_TAG_GZIP][..], &compressed[..]].concat();
    assert!(frame.len() < limits.max_message_size, "the bomb itself is small: {} bytes", frame.len());
    let started = Instant::now();
    let error = codec::decode_server_message(&frame, limits).err();
    assert!(
        matches!(error, Some(CodecError::TooLarge { what: "decompressed payload", limit: 1_048_576, .. })),
        "{error:?}"
    );
    let error = codec::decompress_query_update(&ws::CompressableQueryUpdate::Gzip(compressed.into()), limits).err();
    assert!(matches!(error, Some(CodecError::TooLarge { .. })), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "decompression stops at the limit");
}

#[test]
fn a_brotli_bomb_of_100_mib_of_zeros_is_too_large() {
    let mut compressed = Vec::new();
    {
        let mut encoder = brotli::CompressorWriter::new(&mut compressed, 1 << 16, 5, 22);
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..100 {
            encoder.write_all(&chunk).unwrap();
        }
    }
    let limits = DecodeLimits { max_message_size: 1 << 20 };
    let frame = [&[ws::SERVER_MSG_COMPRESSION_TAG_BROTLI][..], &compressed[..]].concat();
    assert!(frame.len() < limits.max_message_size);
    let error = codec::decode_server_message(&frame, limits).err();
    assert!(matches!(error, Some(CodecError::TooLarge { .. })), "{error:?}");
    let error = codec::decompress_query_update(&ws::CompressableQueryUpdate::Brotli(compressed.into()), limits).err();
    assert!(matches!(error, Some(CodecError::TooLarge { .. })), "{error:?}");
}

/// A row claiming four billion strings is refused by the schema-checked typed decode (no abort).
#[test]
fn typed_decode_through_the_schema_refuses_absurd_lengths() {
    let schema = player_schema();
    let table = schema.table("player").unwrap();
    // id, an empty name, then `level`... but cut short with a tags length of u32::MAX.
    let mut bytes = vec![0u8; 8];
    bytes.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let result: Result<Player, _> = table.decode_as(&bytes);
    assert!(matches!(result, Err(spacelink_connection::codec::CodecError::Malformed { .. })), "{result:?}");
}
