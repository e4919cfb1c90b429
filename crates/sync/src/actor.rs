//! The sync actor: query sets in, rows into the cache, changes out.
//!
//! It owns the [`ClientCache`] (readers get a read-only handle) and keeps every
//! query set the game asked for alive across sessions: on a new session it
//! subscribes them all again into a staging cache and, once every set is
//! applied, reconciles the stale cache with the fresh state, so that only real
//! changes fire callbacks.

use std::collections::{BTreeMap, HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use spacelink_connection::layout::{KeyExtractor, RowLayout};
use spacelink_connection::metric_names as names;
use spacelink_connection::sats::AlgebraicType;
use spacelink_connection::{
    ws, ClientMessage, ModuleSchema, SendMessage, ServerMessage, ServerMessageReceived, SessionChange, SessionTracker,
    StateChanged,
};
use tokio::sync::oneshot;

use crate::cache::{ClientCache, RowChange, RowKey, RowKeys, TableDelta};
use crate::config::{SpatialConfig, SyncConfig};
use crate::divergence::{self, Fence, Undecodable};
use crate::error::SyncError;
use crate::messages::*;
use crate::row::{Row, RowTypes};
use crate::spatial::{AreaOfInterest, GridColumns, Positions, SpatialSetup};

/// Query ids of this actor start here, apart from any the game allocates itself.
const QUERY_ID_BASE: u32 = 0x4000_0000;
/// Mailbox capacity: `MovePoint` may come every frame.
const MAILBOX_CAPACITY: usize = 1024;

type Waiter = oneshot::Sender<Result<SubscriptionId, SyncError>>;

/// Row keys from the module's schema: the primary key where there is one.
///
/// Each table's [`KeyExtractor`] is built once, from its row type: a key is
/// taken from the row's bytes without decoding the row (for a single-column
/// key, a slice of the row: no copy). A row that does not fit its table's
/// type, or a table without a primary key, is keyed by its whole bytes.
#[derive(Debug)]
pub struct SchemaKeys {
    tables: FxHashMap<String, KeyExtractor>,
}

impl SchemaKeys {
    /// Keys by `schema`'s primary keys.
    pub fn new(schema: Arc<ModuleSchema>) -> Self {
        let tables = schema
            .tables()
            .filter_map(|t| Some((t.name.clone(), KeyExtractor::new(&t.row_type, &t.primary_key)?)))
            .collect();
        Self { tables }
    }
}

impl RowKeys for SchemaKeys {
    fn key(&self, table: &str, row: &[u8]) -> RowKey {
        self.key_of(table, &Bytes::copy_from_slice(row))
    }

    fn key_of(&self, table: &str, row: &Bytes) -> RowKey {
        let key = self.tables.get(table).and_then(|keys| keys.key(row));
        RowKey(key.unwrap_or_else(|| row.clone()))
    }
}

/// Where the spatial table keeps its map and position (the configured
/// columns), read from a row's bytes.
#[derive(Debug)]
struct ColumnPositions {
    layout: RowLayout,
    /// The map column (u32).
    map: usize,
    /// The position column: a product whose first two fields are f32 x, y.
    pos: usize,
}

impl ColumnPositions {
    /// The positions of `config`'s table, if the schema has it with such columns.
    fn new(schema: &ModuleSchema, config: &SpatialConfig) -> Option<Self> {
        let t = schema.table(&config.table)?;
        let column = |name: &str| t.columns.iter().position(|c| c == name);
        let (map, pos) = (column(&config.map_column)?, column(&config.position_column)?);
        if t.row_type.elements[map].algebraic_type != AlgebraicType::U32 {
            return None;
        }
        let AlgebraicType::Product(p) = &t.row_type.elements[pos].algebraic_type else { return None };
        let f32s = p.elements.len() >= 2 && p.elements.iter().take(2).all(|e| e.algebraic_type == AlgebraicType::F32);
        f32s.then(|| Self { layout: RowLayout::new(&t.row_type), map, pos })
    }
}

impl Positions for ColumnPositions {
    /// `(map, x, y)` of a row, without decoding it.
    fn position(&self, row: &[u8]) -> Option<(u32, f32, f32)> {
        let map = self.layout.column(row, self.map)?;
        let pos = self.layout.column(row, self.pos)?;
        let map = u32::from_le_bytes(row.get(map)?.try_into().ok()?);
        let pos = row.get(pos)?;
        let x = f32::from_le_bytes(pos.get(0..4)?.try_into().ok()?);
        let y = f32::from_le_bytes(pos.get(4..8)?.try_into().ok()?);
        Some((map, x, y))
    }
}

#[derive(Debug)]
struct QuerySet {
    queries: Vec<String>,
    fallback: Option<Vec<String>>,
    status: SubscriptionStatus,
    failures: u32,
    /// The server-side id in the current session.
    query_id: Option<u32>,
    sent_at: Option<Instant>,
    waiters: Vec<Waiter>,
    /// Drop it as soon as it is applied (unsubscribed while pending).
    removing: bool,
    /// Unsubscribed before it applied: its rows never enter the cache, and
    /// nothing more is told of it (the game heard `Cancelled`).
    cancelled: bool,
}

/// A reconnect in progress: the fresh state accumulates here.
#[derive(Debug)]
struct Staging {
    fresh: ClientCache,
    waiting: HashSet<SubscriptionId>,
}

/// The sync actor.
pub struct SyncActor {
    config: SyncConfig,
    schema: Arc<ModuleSchema>,
    cache: ClientCache,
    connection: Recipient<SendMessage>,
    listeners: SyncListeners,
    /// The connection's session, as its `StateChanged` tell it.
    session: SessionTracker,
    /// The server-side queries a resubscription dropped, not yet confirmed gone.
    fence: Fence,
    sets: BTreeMap<SubscriptionId, QuerySet>,
    by_query: HashMap<u32, SubscriptionId>,
    ids: SubscriptionIds,
    next_query_id: u32,
    staging: Option<Staging>,
    map_context: Option<(u32, SubscriptionId)>,
    area: Option<(AreaOfInterest, SubscriptionId)>,
    /// The latest followed point while the area is moving.
    moving_to: Option<(u32, f32, f32)>,
}

impl std::fmt::Debug for SyncActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncActor")
            .field("session", &self.session)
            .field("sets", &self.sets.len())
            .finish_non_exhaustive()
    }
}

impl SyncActor {
    /// A sync actor for `schema`'s module, subscribing through `connection`;
    /// every table's rows are dynamic values (see [`with_types`](Self::with_types)).
    pub fn new(
        config: SyncConfig,
        schema: Arc<ModuleSchema>,
        connection: Recipient<SendMessage>,
        listeners: SyncListeners,
    ) -> Self {
        Self::with_types(config, schema, RowTypes::new(), connection, listeners)
    }

    /// A sync actor whose cache decodes the rows of `types`' tables, once, into
    /// their registered Rust types.
    pub fn with_types(
        config: SyncConfig,
        schema: Arc<ModuleSchema>,
        types: RowTypes,
        connection: Recipient<SendMessage>,
        listeners: SyncListeners,
    ) -> Self {
        let keys = Arc::new(SchemaKeys::new(schema.clone()));
        let spatial = config.spatial.as_ref().and_then(|c| {
            let positions = ColumnPositions::new(&schema, c);
            if positions.is_none() {
                tracing::warn!(table = %c.table, "the spatial table or its map/position columns are not in the schema: no spatial index");
            }
            Some(SpatialSetup { table: c.table.as_str().into(), cell: c.cell_size, positions: Arc::new(positions?) })
        });
        let unique = crate::unique::UniqueColumns::from_schema(&schema);
        let cache = ClientCache::with_indexes(keys.clone(), types.bind(&schema), spatial, unique);
        Self {
            config,
            cache,
            schema,
            connection,
            listeners,
            session: SessionTracker::default(),
            fence: Fence::default(),
            sets: BTreeMap::new(),
            by_query: HashMap::new(),
            ids: SubscriptionIds::default(),
            next_query_id: QUERY_ID_BASE,
            staging: None,
            map_context: None,
            area: None,
            moving_to: None,
        }
    }

    /// Names query sets from `ids`, shared with whoever names sets before
    /// sending them (see [`Subscribe::id`]).
    #[must_use]
    pub fn with_subscription_ids(mut self, ids: SubscriptionIds) -> Self {
        self.ids = ids;
        self
    }

    /// The cache this actor writes (hand readers `cache().reader()`).
    pub fn cache(&self) -> &ClientCache {
        &self.cache
    }

    fn send(&self, message: ClientMessage) {
        self.connection.do_send(SendMessage { message, generation: Some(self.session.generation()) });
    }

    fn tell(&self, event: SubscriptionEvent) {
        for r in &self.listeners.subscriptions {
            r.do_send(event.clone());
        }
    }

    /// Tells the changes; a reducer's transaction is told even when it changed
    /// nothing here, so that its caller learns the cache has seen it.
    fn tell_changes(&mut self, changes: Vec<RowChange>, reconciled: bool, cause: Cause) {
        if changes.is_empty() && !matches!(cause, Cause::Reducer(_)) {
            return;
        }
        let event =
            RowsChanged { generation: self.session.generation(), changes: Arc::new(changes), reconciled, cause };
        for r in &self.listeners.changes {
            r.do_send(event.clone());
        }
    }

    /// Registers a query set and subscribes it when a session is up.
    fn add_set(
        &mut self,
        queries: Vec<String>,
        fallback: Option<Vec<String>>,
        waiter: Option<Waiter>,
        id: Option<SubscriptionId>,
    ) -> SubscriptionId {
        let id = id.filter(|id| !self.sets.contains_key(id)).unwrap_or_else(|| self.ids.next());
        let set = QuerySet {
            queries,
            fallback,
            status: SubscriptionStatus::Offline,
            failures: 0,
            query_id: None,
            sent_at: None,
            waiters: waiter.into_iter().collect(),
            removing: false,
            cancelled: false,
        };
        self.sets.insert(id, set);
        if self.session.is_connected() {
            self.send_subscribe(id);
        }
        id
    }

    fn send_subscribe(&mut self, id: SubscriptionId) {
        let query_id = self.next_query_id;
        self.next_query_id = self.next_query_id.wrapping_add(1).max(QUERY_ID_BASE);
        let Some(set) = self.sets.get_mut(&id) else { return };
        if let Some(old) = set.query_id.replace(query_id) {
            self.by_query.remove(&old);
        }
        set.status = SubscriptionStatus::Pending;
        set.sent_at = Some(Instant::now());
        let message = ClientMessage::SubscribeMulti(ws::SubscribeMulti {
            query_strings: set.queries.iter().map(|q| q.as_str().into()).collect(),
            request_id: query_id,
            query_id: ws::QueryId::new(query_id),
        });
        self.by_query.insert(query_id, id);
        self.send(message);
    }

    fn remove_set(&mut self, id: SubscriptionId) -> Result<(), SyncError> {
        let set = self.sets.get_mut(&id).ok_or(SyncError::Unknown(id.0))?;
        match (self.session.is_connected(), set.status.clone(), set.query_id) {
            (true, SubscriptionStatus::Applied, Some(query_id)) => {
                set.removing = true;
                self.send(ClientMessage::UnsubscribeMulti(ws::UnsubscribeMulti {
                    request_id: query_id,
                    query_id: ws::QueryId::new(query_id),
                }));
            }
            (true, SubscriptionStatus::Pending, _) => {
                // Cancelled before it applied: it will never report applied
                // and its rows will not enter the cache.
                set.removing = true;
                set.cancelled = true;
                for waiter in set.waiters.drain(..) {
                    let _ = waiter.send(Err(SyncError::Dropped));
                }
                self.tell(SubscriptionEvent::Cancelled { id });
            }
            _ => {
                // Not on the server: gone at once. Its rows (if any, from an
                // earlier session) leave on the next reconciliation.
                if let Some(set) = self.sets.remove(&id) {
                    for waiter in set.waiters {
                        let _ = waiter.send(Err(SyncError::Dropped));
                    }
                    if let Some(q) = set.query_id {
                        self.by_query.remove(&q);
                    }
                }
                self.tell(SubscriptionEvent::Removed { id });
            }
        }
        Ok(())
    }

    /// The sets that are to be on the server: not failed, not being dropped.
    fn live_sets(&self) -> Vec<SubscriptionId> {
        self.sets
            .iter()
            .filter(|(_, s)| !matches!(s.status, SubscriptionStatus::Failed { .. }) && !s.removing)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Takes a committed transaction's rows, or resubscribes if the connection
    /// could not decode them.
    fn take_transaction(&mut self, update: &ws::DatabaseUpdate<ws::BsatnFormat>, cause: Cause) {
        if !self.fence.is_open() {
            // It may carry rows of the queries a resubscription dropped; the
            // fresh queries' initial rows, which come after it, hold its effect.
            return;
        }
        match divergence::deltas(update, false) {
            Ok(deltas) => self.apply(&deltas, cause),
            Err(undecodable) => self.resubscribe(&undecodable),
        }
    }

    /// The cache missed an update: every live set is subscribed again, into a
    /// staging cache that is reconciled with the cache once all are applied
    /// (as after a reconnect), so that only real differences fire row events.
    fn resubscribe(&mut self, why: &Undecodable) {
        metrics::counter!(names::SYNC_RESUBSCRIPTIONS).increment(1);
        // First drop every server-side query of this session (the server
        // answers in order: their confirmations come before the fresh rows).
        let ids: Vec<SubscriptionId> = self.sets.keys().copied().collect();
        for id in ids {
            let Some(set) = self.sets.get_mut(&id) else { continue };
            let Some(query_id) = set.query_id.take() else { continue };
            // An applied set being dropped has sent its unsubscribe already.
            let unsubscribed = set.removing && set.status == SubscriptionStatus::Applied;
            let (removing, cancelled) = (set.removing, set.cancelled);
            self.by_query.remove(&query_id);
            self.fence.retire(query_id);
            if !unsubscribed {
                self.send(ClientMessage::UnsubscribeMulti(ws::UnsubscribeMulti {
                    request_id: query_id,
                    query_id: ws::QueryId::new(query_id),
                }));
            }
            if removing {
                self.sets.remove(&id);
                if !cancelled {
                    self.tell(SubscriptionEvent::Removed { id });
                }
            }
        }
        let live = self.live_sets();
        tracing::warn!(
            table = %why.table,
            reason = %why.reason,
            sets = live.len(),
            "an update could not be applied: resubscribing the query sets to reconcile the cache"
        );
        self.staging = Some(Staging { fresh: self.cache.empty_like(), waiting: live.iter().copied().collect() });
        for id in live {
            self.tell(SubscriptionEvent::Resubscribing { id, reason: why.to_string() });
            self.send_subscribe(id);
        }
        self.maybe_finish_reconcile();
    }

    /// Applies a transaction to the cache, or to the staging cache during a reconnect.
    fn apply(&mut self, deltas: &[TableDelta], cause: Cause) {
        let _span = tracing::trace_span!("sync_apply", tables = deltas.len()).entered();
        match &self.staging {
            Some(staging) => {
                staging.fresh.apply(deltas);
            }
            None => {
                let changes = self.cache.apply(deltas);
                self.tell_changes(changes, false, cause);
            }
        }
    }

    /// Finishes a reconnect once every live set is applied again.
    fn maybe_finish_reconcile(&mut self) {
        let done = self.staging.as_ref().is_some_and(|s| s.waiting.is_empty()) && self.fence.is_open();
        if !done {
            return;
        }
        let Some(staging) = self.staging.take() else { return };
        let changes = self.cache.reconcile_from(&staging.fresh);
        tracing::info!(
            generation = self.session.generation(),
            changes = changes.len(),
            "cache reconciled with the fresh state"
        );
        self.tell_changes(changes, true, Cause::Reconciled);
    }

    fn on_applied(&mut self, query_id: u32, update: &ws::DatabaseUpdate<ws::BsatnFormat>) {
        let Some(&id) = self.by_query.get(&query_id) else { return };
        if let Some(staging) = &mut self.staging {
            staging.waiting.remove(&id);
        }
        if self.sets.get(&id).is_some_and(|s| s.cancelled) {
            // Cancelled while pending: its rows stay out, and it goes.
            if let Some(set) = self.sets.get_mut(&id) {
                set.status = SubscriptionStatus::Applied;
            }
            let _ = self.remove_set(id);
            self.maybe_finish_reconcile();
            return;
        }
        let deltas = match divergence::deltas(update, false) {
            Ok(deltas) => deltas,
            Err(undecodable) => return self.undecodable_rows(id, &undecodable),
        };
        self.apply(&deltas, Cause::SubscriptionApplied);
        let Some(set) = self.sets.get_mut(&id) else { return };
        set.status = SubscriptionStatus::Applied;
        set.failures = 0;
        if let Some(sent) = set.sent_at.take() {
            metrics::histogram!(names::SYNC_SUBSCRIPTION_LATENCY_SECONDS).record(sent.elapsed().as_secs_f64());
        }
        for waiter in set.waiters.drain(..) {
            let _ = waiter.send(Ok(id));
        }
        let removing = set.removing;
        self.tell(SubscriptionEvent::Applied { id });
        self.maybe_finish_reconcile();
        if removing {
            let _ = self.remove_set(id);
        }
    }

    /// A set's initial rows could not be decoded: it counts as a failed
    /// attempt (past the retries, the set fails), and the server's query is
    /// dropped with the others by a resubscription.
    fn undecodable_rows(&mut self, id: SubscriptionId, why: &Undecodable) {
        let max = self.config.max_retries;
        if let Some(set) = self.sets.get_mut(&id) {
            set.failures += 1;
            if set.failures > max {
                let error = why.to_string();
                set.status = SubscriptionStatus::Failed { error: error.clone() };
                for waiter in set.waiters.drain(..) {
                    let _ = waiter.send(Err(SyncError::Undecodable(error.clone())));
                }
                self.tell(SubscriptionEvent::Failed { id, error, retrying: false });
            }
        }
        self.resubscribe(why);
    }

    fn on_unapplied(&mut self, query_id: u32, update: &ws::DatabaseUpdate<ws::BsatnFormat>) {
        if self.fence.confirmed(query_id) {
            return self.maybe_finish_reconcile(); // A dropped query: its rows were never kept.
        }
        let Some(id) = self.by_query.remove(&query_id) else { return };
        let cancelled = self.sets.remove(&id).is_some_and(|s| s.cancelled);
        if cancelled {
            return; // Its rows never entered the cache; the game heard `Cancelled`.
        }
        self.tell(SubscriptionEvent::Removed { id });
        match divergence::deltas(update, true) {
            Ok(deltas) => self.apply(&deltas, Cause::SubscriptionRemoved),
            // Which of its rows to drop is unknown: the others' fresh rows tell.
            Err(undecodable) => self.resubscribe(&undecodable),
        }
    }

    fn on_error(&mut self, error: &ws::SubscriptionError, ctx: &mut Context<Self>) {
        if error.query_id.is_some_and(|q| self.fence.confirmed(q)) {
            return self.maybe_finish_reconcile(); // A dropped query, gone as well.
        }
        let Some(id) = error.query_id.and_then(|q| self.by_query.get(&q).copied()) else {
            tracing::warn!(error = %error.error, "subscription error for no known query set");
            return;
        };
        let message = error.error.to_string();
        let (max, delay) = (self.config.max_retries, self.config.retry_delay);
        let Some(set) = self.sets.get_mut(&id) else { return };
        set.failures += 1;
        if let Some(q) = set.query_id.take() {
            self.by_query.remove(&q);
        }
        metrics::counter!(names::SYNC_SUBSCRIPTION_ERRORS).increment(1);
        let permanent = is_permanent(&message);
        let retry = if set.failures <= max && !permanent {
            Some(delay * 2u32.saturating_pow(set.failures - 1))
        } else if let Some(fallback) = set.fallback.take() {
            tracing::info!(set = id.0, "subscription falls back to broader queries");
            set.queries = fallback;
            set.failures = 0;
            Some(delay)
        } else {
            None
        };
        match retry {
            Some(after) => {
                set.status = SubscriptionStatus::Retrying { error: message.clone() };
                let generation = self.session.generation();
                ctx.run_later(after, move |act, _| {
                    // Not if a reconnect or a resubscription has sent it meanwhile.
                    let waiting =
                        act.sets.get(&id).is_some_and(|s| matches!(s.status, SubscriptionStatus::Retrying { .. }));
                    if act.session.is_connected() && act.session.is_current(generation) && waiting {
                        act.send_subscribe(id);
                    }
                });
                self.tell(SubscriptionEvent::Failed { id, error: message, retrying: true });
            }
            None => {
                set.status = SubscriptionStatus::Failed { error: message.clone() };
                for waiter in set.waiters.drain(..) {
                    let _ = waiter.send(Err(SyncError::Refused(message.clone())));
                }
                self.tell(SubscriptionEvent::Failed { id, error: message, retrying: false });
            }
        }
        if let Some(staging) = &mut self.staging {
            staging.waiting.remove(&id);
        }
        self.maybe_finish_reconcile();
    }

    /// Subscribes `queries`, and once applied drops `previous` (a context change).
    fn replace(
        &mut self,
        queries: Vec<String>,
        previous: Option<SubscriptionId>,
        ctx: &mut Context<Self>,
    ) -> (SubscriptionId, oneshot::Receiver<Result<SubscriptionId, SyncError>>) {
        let (tx, rx) = oneshot::channel();
        let (relay_tx, relay_rx) = oneshot::channel();
        let id = self.add_set(queries, None, Some(tx), None);
        ctx.spawn(async move { rx.await.unwrap_or(Err(SyncError::ActorGone)) }.into_actor(self).map(
            move |result, act, _| {
                if result.is_ok() {
                    if let Some(previous) = previous {
                        let _ = act.remove_set(previous);
                    }
                }
                let _ = relay_tx.send(result);
            },
        ));
        (id, relay_rx)
    }

    /// A session is up: every live set is subscribed again; a cache holding
    /// rows of an earlier session is reconciled with the fresh state.
    fn session_up(&mut self) {
        self.by_query.clear();
        self.fence.clear();
        let live = self.live_sets();
        if self.cache.with_view(|v| v.total_rows()) > 0 {
            // The cache is stale: collect the fresh state, then reconcile.
            self.staging = Some(Staging { fresh: self.cache.empty_like(), waiting: live.iter().copied().collect() });
        }
        for id in live {
            self.send_subscribe(id);
        }
        self.maybe_finish_reconcile();
    }

    /// The session is gone, and every server-side query with it.
    fn session_lost(&mut self) {
        self.staging = None;
        self.by_query.clear();
        self.fence.clear();
        let removed: Vec<SubscriptionId> = self.sets.iter().filter(|(_, s)| s.removing).map(|(id, _)| *id).collect();
        for id in removed {
            if self.sets.remove(&id).is_some_and(|s| !s.cancelled) {
                self.tell(SubscriptionEvent::Removed { id });
            }
        }
        for set in self.sets.values_mut() {
            if !matches!(set.status, SubscriptionStatus::Failed { .. }) {
                set.status = SubscriptionStatus::Offline;
            }
            set.query_id = None;
        }
    }

    /// The query of `area` over the configured spatial table.
    fn area_query(&self, area: &AreaOfInterest) -> Option<String> {
        let c = self.config.spatial.as_ref()?;
        let columns = GridColumns { map: &c.map_column, cell_x: &c.cell_x_column, cell_y: &c.cell_y_column };
        Some(area.query(&c.table, columns))
    }

    fn move_area(&mut self, ctx: &mut Context<Self>) {
        let Some((map, x, y)) = self.moving_to else { return };
        let Some((area, current)) = self.area else { return };
        if area.covers(map, (x, y)) {
            self.moving_to = None;
            return;
        }
        let next = area.moved_to(map, (x, y));
        let Some(query) = self.area_query(&next) else { return };
        let (new_id, rx) = self.replace(vec![query], Some(current), ctx);
        self.area = Some((next, new_id));
        self.moving_to = None;
        ctx.spawn(rx.into_actor(self).map(|_, act, ctx| {
            // Catch up with where the point went meanwhile.
            if act.moving_to.is_some() {
                act.move_area(ctx);
            }
        }));
    }
}

/// Whether a subscription error is about the queries themselves (their text,
/// a table or column that does not exist, the caller's rights), which no retry
/// can mend, rather than a passing failure of the server. Asked of the
/// server's message, the only thing a v1 `SubscriptionError` carries: a
/// message that says nothing known is taken as transient (retried, as before).
pub fn is_permanent(message: &str) -> bool {
    const PERMANENT: &[&str] = &[
        "parse",
        "syntax",
        "unsupported",
        "not supported",
        "no such",
        "does not exist",
        "doesn't exist",
        "not found",
        "unknown",
        "invalid",
        "not a valid",
        "not in scope",
        "does not have",
        "is required",
        "empty sql",
        "duplicate name",
        "unexpected",
        "type mismatch",
        "expected",
        "private",
        "not authorized",
        "unauthorized",
        "permission",
        "forbidden",
    ];
    let message = message.to_ascii_lowercase();
    PERMANENT.iter().any(|p| message.contains(p))
}

/// The cause of a committed transaction, as the server reported it.
pub fn transaction_cause(tx: &ws::TransactionUpdate<ws::BsatnFormat>) -> Cause {
    let call = &tx.reducer_call;
    if call.reducer_name.is_empty() {
        return Cause::UnknownTransaction;
    }
    let status = match &tx.status {
        ws::UpdateStatus::Committed(_) => ReducerStatus::Committed,
        ws::UpdateStatus::Failed(message) => ReducerStatus::Failed(message.to_string()),
        ws::UpdateStatus::OutOfEnergy => ReducerStatus::OutOfEnergy,
    };
    Cause::Reducer(Arc::new(ReducerCause {
        reducer: Arc::from(&*call.reducer_name),
        args: Bytes::copy_from_slice(&call.args),
        caller_identity: tx.caller_identity,
        caller_connection_id: tx.caller_connection_id.none_if_zero(),
        request_id: call.request_id,
        status,
        timestamp: tx.timestamp,
        energy_quanta_used: tx.energy_quanta_used.quanta,
        execution: tx.total_host_execution_duration.to_duration_abs(),
    }))
}

/// The sync actor's mailbox, made before the actor so that its address can be
/// wired to the connection's listeners first, and then the actor started on a
/// thread of its own ([`start_on`](Self::start_on)): applying a large
/// transaction (decoding its rows, indexing them) then never runs on the
/// thread that keeps the connection's heartbeats, and uses the second core.
pub struct SyncMailbox {
    addr: Addr<SyncActor>,
    rx: actix::dev::channel::AddressReceiver<SyncActor>,
}

impl std::fmt::Debug for SyncMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncMailbox").finish_non_exhaustive()
    }
}

impl Default for SyncMailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncMailbox {
    /// A mailbox of the actor's capacity.
    pub fn new() -> Self {
        let (tx, rx) = actix::dev::channel::channel(MAILBOX_CAPACITY);
        Self { addr: Addr::new(tx), rx }
    }

    /// The address the actor will have.
    pub fn address(&self) -> Addr<SyncActor> {
        self.addr.clone()
    }

    /// Runs `actor` on `arbiter` (a thread the caller owns: stop it to stop
    /// the actor for good) with this mailbox.
    pub fn start_on(self, actor: SyncActor, arbiter: &actix::ArbiterHandle) -> Addr<SyncActor> {
        let rx = self.rx;
        let spawned = arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            actix::spawn(ctx.into_future(actor));
        });
        if !spawned {
            tracing::warn!("the sync actor's arbiter has stopped: the actor does not run");
        }
        self.addr
    }

    /// Hands this mailbox's context to `run` on `arbiter`'s thread, where a
    /// supervisor of the caller's runs the actor in it. False if the arbiter
    /// has stopped.
    pub fn run_on(self, arbiter: &actix::ArbiterHandle, run: impl FnOnce(Context<SyncActor>) + Send + 'static) -> bool {
        let rx = self.rx;
        arbiter.spawn_fn(move || run(Context::with_receiver(rx)))
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // Its thread's metrics go to the game's recorder and the monitor alike.
        spacelink_connection::recording::route_this_thread();
    }
}

impl Handler<StateChanged> for SyncActor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _ctx: &mut Self::Context) {
        match self.session.observe(&msg) {
            SessionChange::Up { .. } => self.session_up(),
            SessionChange::Lost { .. } => self.session_lost(),
            SessionChange::Unchanged => {}
        }
    }
}

impl Handler<ServerMessageReceived> for SyncActor {
    type Result = ();

    fn handle(&mut self, msg: ServerMessageReceived, ctx: &mut Self::Context) {
        if !self.session.is_connected() || !self.session.is_current(msg.generation) {
            return; // From a dead session.
        }
        match &*msg.message {
            ServerMessage::SubscribeMultiApplied(a) => self.on_applied(a.query_id.id, &a.update),
            ServerMessage::UnsubscribeMultiApplied(a) => self.on_unapplied(a.query_id.id, &a.update),
            ServerMessage::SubscriptionError(e) => self.on_error(e, ctx),
            ServerMessage::TransactionUpdate(tx) => {
                if let ws::UpdateStatus::Committed(update) = &tx.status {
                    self.take_transaction(update, transaction_cause(tx));
                }
            }
            ServerMessage::TransactionUpdateLight(tx) => self.take_transaction(&tx.update, Cause::UnknownTransaction),
            _ => {}
        }
    }
}

impl Handler<Subscribe> for SyncActor {
    type Result = ResponseFuture<Result<SubscriptionId, SyncError>>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.add_set(msg.queries, msg.fallback, Some(tx), msg.id);
        Box::pin(async move { rx.await.unwrap_or(Err(SyncError::ActorGone)) })
    }
}

impl Handler<Unsubscribe> for SyncActor {
    type Result = Result<(), SyncError>;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) -> Self::Result {
        self.remove_set(msg.id)
    }
}

impl Handler<UnsubscribeAll> for SyncActor {
    type Result = ();

    fn handle(&mut self, _msg: UnsubscribeAll, _ctx: &mut Self::Context) {
        let ids: Vec<SubscriptionId> = self.sets.keys().copied().collect();
        for id in ids {
            let _ = self.remove_set(id);
        }
        self.map_context = None;
        self.area = None;
    }
}

impl Handler<SubscribeToMap> for SyncActor {
    type Result = ResponseFuture<Result<SubscriptionId, SyncError>>;

    fn handle(&mut self, msg: SubscribeToMap, ctx: &mut Self::Context) -> Self::Result {
        let Some(context) = &self.config.map_context else {
            return Box::pin(async move { Err(SyncError::NotConfigured("map_context")) });
        };
        let column = context.map_column.as_str();
        let queries: Vec<String> = context
            .tables
            .iter()
            .filter(|t| self.schema.table(t).is_some_and(|s| s.columns.iter().any(|c| c == column)))
            .map(|t| format!("SELECT * FROM {t} WHERE {column} = {}", msg.map))
            .collect();
        if queries.is_empty() {
            let what = format!("a map context table with a {column} column");
            return Box::pin(async move { Err(SyncError::NoTable(what)) });
        }
        let previous = self.map_context.map(|(_, id)| id);
        let (id, rx) = self.replace(queries, previous, ctx);
        self.map_context = Some((msg.map, id));
        Box::pin(async move { rx.await.unwrap_or(Err(SyncError::ActorGone)) })
    }
}

impl Handler<FollowPoint> for SyncActor {
    type Result = ResponseFuture<Result<SubscriptionId, SyncError>>;

    fn handle(&mut self, msg: FollowPoint, ctx: &mut Self::Context) -> Self::Result {
        let Some(spatial) = &self.config.spatial else {
            return Box::pin(async move { Err(SyncError::NotConfigured("spatial")) });
        };
        let area = AreaOfInterest {
            map: msg.map,
            center: (msg.x, msg.y),
            radius: msg.radius,
            margin: msg.margin.max(0.0),
            cell: spatial.cell_size,
        };
        let Some(query) = self.area_query(&area) else {
            return Box::pin(async move { Err(SyncError::NotConfigured("spatial")) });
        };
        let previous = self.area.map(|(_, id)| id);
        let (id, rx) = self.replace(vec![query], previous, ctx);
        self.area = Some((area, id));
        Box::pin(async move { rx.await.unwrap_or(Err(SyncError::ActorGone)) })
    }
}

impl Handler<MovePoint> for SyncActor {
    type Result = ();

    fn handle(&mut self, msg: MovePoint, ctx: &mut Self::Context) {
        let Some((area, current)) = self.area else { return };
        if area.covers(msg.map, (msg.x, msg.y)) {
            return;
        }
        let moving = self.sets.get(&current).is_some_and(|s| s.status != SubscriptionStatus::Applied);
        self.moving_to = Some((msg.map, msg.x, msg.y));
        if !moving {
            self.move_area(ctx);
        }
    }
}

impl Handler<GetEntitiesInRange> for SyncActor {
    type Result = Vec<Row>;

    /// Kept for callers that hold only the address; the handle answers from the cache directly.
    fn handle(&mut self, msg: GetEntitiesInRange, _ctx: &mut Self::Context) -> Vec<Row> {
        self.cache.within(msg.map, msg.x, msg.y, msg.radius)
    }
}

impl Handler<GetSubscriptions> for SyncActor {
    type Result = Vec<SubscriptionInfo>;

    fn handle(&mut self, _msg: GetSubscriptions, _ctx: &mut Self::Context) -> Vec<SubscriptionInfo> {
        self.sets
            .iter()
            .map(|(id, s)| SubscriptionInfo {
                id: *id,
                queries: s.queries.clone(),
                status: s.status.clone(),
                failures: s.failures,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::is_permanent;

    #[test]
    fn errors_about_the_queries_are_permanent_and_others_are_retried() {
        // Messages of the 1.3 server's SQL parser and type checker.
        for permanent in [
            "sql parser error: Expected: an SQL statement, found: SELEC",
            "`nope` is not a valid table",
            "`player` does not have a field `nope`",
            "Unsupported: Non-SELECT queries",
            "Column projections are not supported in subscriptions; Subscriptions must return a table type",
            "Empty SQL query",
            "Unexpected type: (expected) U32 != String (inferred)",
        ] {
            assert!(is_permanent(permanent), "{permanent}");
        }
        for transient in ["database is restarting", "timed out", "internal error: try again later", ""] {
            assert!(!is_permanent(transient), "{transient}");
        }
    }
}
