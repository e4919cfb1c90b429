//! Property tests of the sync actor's interest management and query-set
//! errors, against a model server (an actor that answers the sync actor's
//! messages as SpacetimeDB would, from a world it keeps).
//!
//! The sync actor runs on a thread of its own ([`SyncMailbox`]), as a game
//! would run it, apart from the connection's.
//!
//! The game here is not guildmaster: its spatial table is `thing`, with columns
//! `world` (the map), `at` (the position), `gx`/`gy` (the grid cell), all
//! named in the configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use proptest::prelude::*;
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::sats::{AlgebraicType, ProductType};
use spacelink_connection::{
    ws, ClientMessage, ConnectionState, ModuleSchema, SendMessage, ServerMessage, ServerMessageReceived, StateChanged,
};
use spacelink_sync::{
    SpatialConfig, SubscriptionEvent, SubscriptionStatus, SyncActor, SyncConfig, SyncError, SyncHandle, SyncListeners,
    SyncMailbox,
};

const TABLE: &str = "thing";
const CELL: f32 = 10.0;

fn schema() -> Arc<ModuleSchema> {
    let mut module = RawModuleDefV9Builder::new();
    let vec2: ProductType = [("x", AlgebraicType::F32), ("y", AlgebraicType::F32)].into_iter().collect();
    let row: ProductType = [
        ("id", AlgebraicType::U64),
        ("world", AlgebraicType::U32),
        ("at", AlgebraicType::Product(vec2)),
        ("gx", AlgebraicType::I32),
        ("gy", AlgebraicType::I32),
    ]
    .into_iter()
    .collect();
    module.build_table_with_new_type(TABLE, row, true).with_primary_key(0u16);
    Arc::new(ModuleSchema::from_raw(module.finish()).unwrap())
}

fn config(max_retries: u32) -> SyncConfig {
    SyncConfig {
        max_retries,
        retry_delay: Duration::from_millis(1),
        spatial: Some(SpatialConfig {
            table: TABLE.into(),
            map_column: "world".into(),
            position_column: "at".into(),
            cell_x_column: "gx".into(),
            cell_y_column: "gy".into(),
            cell_size: CELL,
        }),
        map_context: None,
        events_only: Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Thing {
    world: u32,
    x: f32,
    y: f32,
}

impl Thing {
    fn cell(&self) -> (i32, i32) {
        ((self.x / CELL).floor() as i32, (self.y / CELL).floor() as i32)
    }

    fn row(&self, id: u64) -> Vec<u8> {
        let (gx, gy) = self.cell();
        let mut out = Vec::with_capacity(28);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&self.world.to_le_bytes());
        out.extend_from_slice(&self.x.to_le_bytes());
        out.extend_from_slice(&self.y.to_le_bytes());
        out.extend_from_slice(&gx.to_le_bytes());
        out.extend_from_slice(&gy.to_le_bytes());
        out
    }
}

/// A query the model server understands: our area query, a map query, or the whole table.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Filter {
    world: Option<u32>,
    cells: Option<(i32, i32, i32, i32)>,
}

impl Filter {
    fn parse(sql: &str) -> Option<Self> {
        let numbers: Vec<i64> = sql
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| matches!(w[0], "=" | ">=" | "<="))
            .filter_map(|w| w[1].parse().ok())
            .collect();
        if !sql.starts_with(&format!("SELECT * FROM {TABLE}")) {
            return None;
        }
        Some(match numbers.as_slice() {
            [] => Filter { world: None, cells: None },
            [w] => Filter { world: Some(*w as u32), cells: None },
            [w, x0, x1, y0, y1] => {
                Filter { world: Some(*w as u32), cells: Some((*x0 as i32, *x1 as i32, *y0 as i32, *y1 as i32)) }
            }
            _ => return None,
        })
    }

    fn matches(&self, t: &Thing) -> bool {
        let (gx, gy) = t.cell();
        self.world.is_none_or(|w| w == t.world)
            && self.cells.is_none_or(|(x0, x1, y0, y1)| gx >= x0 && gx <= x1 && gy >= y0 && gy <= y1)
    }
}

/// The model server: a world of things, live query sets, refusals.
struct World {
    sync: Recipient<ServerMessageReceived>,
    things: BTreeMap<u64, Thing>,
    live: HashMap<u32, Vec<Filter>>,
    /// How many more times a query text is refused.
    refuse: HashMap<String, u32>,
}

impl Actor for World {
    type Context = Context<Self>;
}

/// One query's part of a transaction: its deleted rows and its inserted rows.
type QueryRows = (Vec<Vec<u8>>, Vec<Vec<u8>>);

fn update(table_rows: Vec<QueryRows>) -> ws::DatabaseUpdate<ws::BsatnFormat> {
    let updates = table_rows
        .into_iter()
        .map(|(deletes, inserts)| {
            let list = |rows: Vec<Vec<u8>>| {
                let mut list = ws::BsatnRowListBuilder::row_offsets();
                for row in rows {
                    list.push(&row);
                }
                list.finish()
            };
            ws::CompressableQueryUpdate::Uncompressed(ws::QueryUpdate {
                deletes: list(deletes),
                inserts: list(inserts),
            })
        })
        .collect::<Vec<_>>();
    let num_rows = 0;
    ws::DatabaseUpdate {
        tables: vec![ws::TableUpdate {
            table_id: 4096.into(),
            table_name: TABLE.into(),
            num_rows,
            updates: updates.into(),
        }],
    }
}

impl World {
    fn tell(&self, message: ServerMessage) {
        self.sync.do_send(ServerMessageReceived {
            generation: 1,
            received_at: Instant::now(),
            wire_size: 0,
            message: Arc::new(message),
        });
    }

    fn rows_of(&self, filters: &[Filter]) -> Vec<QueryRows> {
        filters
            .iter()
            .map(|f| (Vec::new(), self.things.iter().filter(|(_, t)| f.matches(t)).map(|(id, t)| t.row(*id)).collect()))
            .collect()
    }
}

impl Handler<SendMessage> for World {
    type Result = Result<(), spacelink_connection::ConnectionError>;

    fn handle(&mut self, msg: SendMessage, _: &mut Self::Context) -> Self::Result {
        match msg.message {
            ClientMessage::SubscribeMulti(s) => {
                let texts: Vec<String> = s.query_strings.iter().map(|q| q.to_string()).collect();
                let refused = texts.iter().find(|t| self.refuse.get(*t).is_some_and(|n| *n > 0)).cloned();
                let filters: Option<Vec<Filter>> = texts.iter().map(|t| Filter::parse(t)).collect();
                match (refused, filters) {
                    (Some(text), _) => {
                        if let Some(n) = self.refuse.get_mut(&text) {
                            *n -= 1;
                        }
                        self.tell(ws::ServerMessage::SubscriptionError(ws::SubscriptionError {
                            total_host_execution_duration_micros: 0,
                            request_id: Some(s.request_id),
                            query_id: Some(s.query_id.id),
                            table_id: None,
                            error: "refused by the model server".into(),
                        }));
                    }
                    (None, None) => panic!("the sync actor sent a query the model does not know: {texts:?}"),
                    (None, Some(filters)) => {
                        let rows = self.rows_of(&filters);
                        self.live.insert(s.query_id.id, filters);
                        self.tell(ws::ServerMessage::SubscribeMultiApplied(ws::SubscribeMultiApplied {
                            request_id: s.request_id,
                            total_host_execution_duration_micros: 0,
                            query_id: s.query_id,
                            update: update(rows),
                        }));
                    }
                }
            }
            ClientMessage::UnsubscribeMulti(u) => {
                let filters = self.live.remove(&u.query_id.id).unwrap_or_default();
                let rows = self.rows_of(&filters).into_iter().map(|(_, rows)| (rows, Vec::new())).collect();
                self.tell(ws::ServerMessage::UnsubscribeMultiApplied(ws::UnsubscribeMultiApplied {
                    request_id: u.request_id,
                    total_host_execution_duration_micros: 0,
                    query_id: u.query_id,
                    update: update(rows),
                }));
            }
            _ => {}
        }
        Ok(())
    }
}

/// A change on the server: the thing `id` is now `to` (or gone); every live query hears of it.
#[derive(Message)]
#[rtype(result = "()")]
struct Change {
    id: u64,
    to: Option<Thing>,
}

impl Handler<Change> for World {
    type Result = ();

    fn handle(&mut self, msg: Change, _: &mut Self::Context) {
        let before = self.things.get(&msg.id).copied();
        match msg.to {
            Some(t) => self.things.insert(msg.id, t),
            None => self.things.remove(&msg.id),
        };
        let mut per_query = Vec::new();
        for filters in self.live.values() {
            for f in filters {
                let old: Vec<Vec<u8>> = before.filter(|t| f.matches(t)).map(|t| t.row(msg.id)).into_iter().collect();
                let new: Vec<Vec<u8>> = msg.to.filter(|t| f.matches(t)).map(|t| t.row(msg.id)).into_iter().collect();
                if old != new {
                    per_query.push((old, new));
                }
            }
        }
        if !per_query.is_empty() {
            self.tell(ws::ServerMessage::TransactionUpdateLight(ws::TransactionUpdateLight {
                request_id: 0,
                update: update(per_query),
            }));
        }
    }
}

struct Tap(Arc<Mutex<Vec<SubscriptionEvent>>>);

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<SubscriptionEvent> for Tap {
    type Result = ();
    fn handle(&mut self, msg: SubscriptionEvent, _: &mut Self::Context) {
        self.0.lock().unwrap().push(msg);
    }
}

/// A round trip through the tap: every event sent to it before is in.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Tap {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}

struct Setup {
    sync: SyncHandle,
    tap: Addr<Tap>,
    world: Addr<World>,
    events: Arc<Mutex<Vec<SubscriptionEvent>>>,
    /// The sync actor's own thread.
    arbiter: Arbiter,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}

/// A sync actor, on a thread of its own, wired to a model server holding `things`, connected.
async fn start(things: BTreeMap<u64, Thing>, refuse: HashMap<String, u32>, max_retries: u32) -> Setup {
    let schema = schema();
    let events = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap(Arc::clone(&events)).start();
    let mailbox = SyncMailbox::new();
    let world = World { sync: mailbox.address().recipient(), things, live: HashMap::new(), refuse }.start();
    let listeners = SyncListeners { changes: Vec::new(), subscriptions: vec![tap.clone().recipient()] };
    let actor = SyncActor::new(config(max_retries), schema.clone(), world.clone().recipient(), listeners);
    let reader = actor.cache().reader();
    let arbiter = Arbiter::new();
    let addr = mailbox.start_on(actor, &arbiter.handle());
    addr.send(StateChanged {
        generation: 1,
        from: ConnectionState::Connecting,
        to: ConnectionState::Connected,
        reason: None,
        retry_in: None,
    })
    .await
    .unwrap();
    Setup { sync: SyncHandle::new(addr, reader, schema), tap, world, events, arbiter }
}

/// Waits until the followed area is one applied query set (no move under way).
async fn settled(sync: &SyncHandle) -> Filter {
    for _ in 0..10_000 {
        let sets = sync.subscriptions().await.unwrap();
        if let [one] = sets.as_slice() {
            if one.status == SubscriptionStatus::Applied {
                return Filter::parse(&one.queries[0]).expect("an area query");
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    panic!("the area never settled");
}

fn id_of(row: &[u8]) -> u64 {
    u64::from_le_bytes(row[..8].try_into().unwrap())
}

fn thing() -> impl Strategy<Value = Thing> {
    (1u32..3, 0.0f32..100.0, 0.0f32..100.0).prop_map(|(world, x, y)| Thing { world, x, y })
}

/// A step of the followed point's path, or a change on the server meanwhile.
#[derive(Debug, Clone)]
enum Step {
    Move { dx: f32, dy: f32 },
    Server { id: u64, to: Option<Thing> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (-25.0f32..25.0, -25.0f32..25.0).prop_map(|(dx, dy)| Step::Move { dx, dy }),
        1 => (0u64..30, prop::option::weighted(0.8, thing())).prop_map(|(id, to)| Step::Server { id, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    // Feature: spacetimedb-integration, Property 5: Subscription Filtering Efficiency (for any path of the followed point, the cache holds exactly the rows in range plus margin, and server state wins)
    #[test]
    fn prop_the_followed_area_holds_exactly_the_rows_in_range_plus_margin(
        things in prop::collection::btree_map(0u64..30, thing(), 0..30),
        world in 1u32..3,
        start_at in (0.0f32..100.0, 0.0f32..100.0),
        radius in 3.0f32..20.0,
        margin in 1.0f32..15.0,
        path in prop::collection::vec(step(), 1..12),
    ) {
        System::new().block_on(async move {
            let setup = start(things.clone(), HashMap::new(), 3).await;
            let (sync, server) = (&setup.sync, &setup.world);
            let mut model = things;
            let (mut x, mut y) = start_at;
            sync.follow(world, x, y, radius, margin).await.unwrap();
            for step in &path {
                match step {
                    Step::Move { dx, dy } => {
                        (x, y) = (x + dx, y + dy);
                        sync.move_point(world, x, y);
                    }
                    Step::Server { id, to } => {
                        match to {
                            Some(t) => model.insert(*id, *t),
                            None => model.remove(id),
                        };
                        server.send(Change { id: *id, to: *to }).await.unwrap();
                    }
                }
                let area = settled(sync).await;
                // The area: the point's radius is inside it, and it reaches no further than radius plus margin
                // around a centre within half the margin of the point.
                let (x0, x1, y0, y1) = area.cells.unwrap();
                let cell = |v: f32| (v / CELL).floor() as i32;
                prop_assert_eq!(area.world, Some(world));
                prop_assert!(x0 <= cell(x - radius) && x1 >= cell(x + radius), "x: {:?} misses the radius around {}", area, x);
                prop_assert!(y0 <= cell(y - radius) && y1 >= cell(y + radius), "y: {:?} misses the radius around {}", area, y);
                let reach = radius + 1.5 * margin;
                prop_assert!(x0 >= cell(x - reach) && x1 <= cell(x + reach), "x: {:?} reaches past the margin", area);
                prop_assert!(y0 >= cell(y - reach) && y1 <= cell(y + reach), "y: {:?} reaches past the margin", area);

                // Exactly the rows in the area, as the server has them now.
                let expected: BTreeMap<u64, Vec<u8>> =
                    model.iter().filter(|(_, t)| area.matches(t)).map(|(id, t)| (*id, t.row(*id))).collect();
                let cached: BTreeMap<u64, Vec<u8>> =
                    sync.cache().rows(TABLE).iter().map(|r| (id_of(r), r.to_vec())).collect();
                prop_assert_eq!(&cached, &expected);

                // The range query, answered from the cache at once: everything within the radius.
                let near: BTreeSet<u64> = sync.entities_in_range(world, x, y, radius).iter().map(|r| id_of(r)).collect();
                let within: BTreeSet<u64> = model
                    .iter()
                    .filter(|(_, t)| t.world == world && (t.x - x).powi(2) + (t.y - y).powi(2) <= radius * radius)
                    .map(|(id, _)| *id)
                    .collect();
                prop_assert_eq!(near, within);
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    // Feature: spacetimedb-integration, Property 13: Subscription Error Handling and Monitoring (a refused query set is retried, then falls back, and its status says so)
    #[test]
    fn prop_a_refused_query_set_is_retried_then_falls_back(
        refusals in 0u32..6,
        fallback_refusals in 0u32..3,
        max_retries in 0u32..4,
        with_fallback in any::<bool>(),
        things in prop::collection::btree_map(0u64..10, thing(), 0..10),
    ) {
        System::new().block_on(async move {
            let primary = format!("SELECT * FROM {TABLE} WHERE world = 1");
            let broader = format!("SELECT * FROM {TABLE}");
            let refuse = HashMap::from([(primary.clone(), refusals), (broader.clone(), fallback_refusals)]);
            let setup = start(things.clone(), refuse, max_retries).await;
            let (sync, events) = (&setup.sync, &setup.events);
            let fallback = with_fallback.then_some([broader.as_str()]);
            let result = sync.subscribe_with_fallback(&[&primary], fallback.as_ref().map(|f| &f[..])).await;

            // What must happen: the primary queries get max_retries more attempts; then the
            // fallback (if any) gets its own; then the set fails.
            let primary_ok = refusals <= max_retries;
            let fallback_ok = with_fallback && fallback_refusals <= max_retries;
            // The actor tells its events before it answers this; the tap has them after a round trip.
            let infos = sync.subscriptions().await.unwrap();
            setup.tap.send(Flush).await.unwrap();
            prop_assert_eq!(infos.len(), 1);
            let info = &infos[0];
            let failures: Vec<bool> = events
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| match e {
                    SubscriptionEvent::Failed { retrying, .. } => Some(*retrying),
                    _ => None,
                })
                .collect();
            if primary_ok {
                prop_assert_eq!(result.clone(), Ok(info.id));
                prop_assert_eq!(&info.status, &SubscriptionStatus::Applied);
                prop_assert_eq!(&info.queries, &vec![primary.clone()]);
                prop_assert_eq!(failures, vec![true; refusals as usize]);
            } else if fallback_ok {
                prop_assert_eq!(result.clone(), Ok(info.id));
                prop_assert_eq!(&info.status, &SubscriptionStatus::Applied, "the fallback is applied");
                prop_assert_eq!(&info.queries, &vec![broader.clone()], "its status shows the fallback queries");
                prop_assert_eq!(failures, vec![true; (max_retries + 1 + fallback_refusals) as usize]);
            } else {
                prop_assert!(matches!(result, Err(SyncError::Refused(_))), "{:?}", result);
                prop_assert!(matches!(info.status, SubscriptionStatus::Failed { .. }), "{:?}", info.status);
                let attempts = max_retries + 1 + if with_fallback { max_retries + 1 } else { 0 };
                prop_assert_eq!(failures.len() as u32, attempts);
                prop_assert_eq!(failures.last(), Some(&false), "the last failure says no retry follows");
                prop_assert!(failures[..failures.len() - 1].iter().all(|r| *r));
            }
            // Applied or not, the cache holds exactly what the applied queries match.
            let expected: BTreeSet<u64> = match (primary_ok, fallback_ok) {
                (true, _) => things.iter().filter(|(_, t)| t.world == 1).map(|(id, _)| *id).collect(),
                (false, true) => things.keys().copied().collect(),
                _ => BTreeSet::new(),
            };
            let cached: BTreeSet<u64> = sync.cache().rows(TABLE).iter().map(|r| id_of(r)).collect();
            prop_assert_eq!(cached, expected);
            Ok(())
        })?;
    }
}
