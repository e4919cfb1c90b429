//! The sync actor: query sets in, rows into the cache, changes out.
//!
//! It owns the [`ClientCache`] (readers get a read-only handle) and only moves
//! messages: the query sets' decisions are `QuerySets`' (`query_sets.rs`:
//! subscribe, retry, fall back, cancel, stage, reconcile, resubscribe), which
//! it carries out step by step; it follows the session through the
//! connection's [`SessionTracker`], applies the rows the connection decoded
//! (`divergence.rs`) to the cache or, while the fresh state of a
//! reconnect or a resubscription is collected, to a staging cache, and tells
//! what changed. Times are read from the library's clock
//! ([`clock::now`]) and handed to the plain types.

use rustc_hash::FxHashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use spacelink_connection::clock;
use spacelink_connection::layout::{KeyExtractor, RowLayout};
use spacelink_connection::sats::AlgebraicType;
use spacelink_connection::{
    ws, ClientMessage, ModuleSchema, RequestIds, SendMessage, ServerMessage, ServerMessageReceived, SessionChange,
    SessionTracker, StateChanged,
};
use tokio::sync::oneshot;

use crate::cache::{ClientCache, RowChange, RowKey, RowKeys, TableDelta, WireDelta};
use crate::config::{SpatialConfig, SyncConfig};
use crate::divergence::{self, Undecodable};
use crate::error::SyncError;
use crate::messages::*;
use crate::query_sets::{QuerySets, Rows, Step, Waiter};
use crate::row::{Row, RowTypes};
use crate::spatial::{AreaOfInterest, GridColumns, Positions, SpatialSetup};

/// Mailbox capacity: `MovePoint` may come every frame.
const MAILBOX_CAPACITY: usize = 1024;

/// The most rows of transactions the actor applies without publishing them
/// (see [`SyncActor::flush`]): held transactions are published before one
/// that would take them past it, so a backlog of small transactions is
/// published a few at a time and large ones one by one, as they come. The
/// changes of held transactions wait (about 90 bytes each, with the rows an
/// update or a delete replaced) where the listeners would have taken and
/// dropped them: holding two 10k-row transactions raised a backlog's peak
/// memory by 3 MB, and ten by 7-14 MB.
const MAX_HELD_ROWS: usize = 1 << 14;

/// Publishes the transactions applied since the mailbox was last empty.
#[derive(Message)]
#[rtype(result = "()")]
struct Publish;

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

    fn fixed_key_range(&self, table: &str) -> Option<std::ops::Range<usize>> {
        self.tables.get(table)?.fixed_range()
    }

    fn key_of(&self, table: &str, row: &Bytes) -> RowKey {
        let Some(keys) = self.tables.get(table) else { return RowKey::from(row.clone()) };
        if let Some(range) = keys.key_range(row) {
            return RowKey::from_slice_of(row, range);
        }
        RowKey::from(keys.key(row).unwrap_or_else(|| row.clone()))
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

/// The sync actor.
pub struct SyncActor {
    config: SyncConfig,
    schema: Arc<ModuleSchema>,
    cache: ClientCache,
    connection: Recipient<SendMessage>,
    listeners: SyncListeners,
    /// The connection's session, as its `StateChanged` tell it.
    session: SessionTracker,
    /// The query sets and every decision about them.
    sets: QuerySets,
    /// While a reconnect or a resubscription collects the fresh state: where.
    fresh: Option<ClientCache>,
    map_context: Option<(u32, SubscriptionId)>,
    area: Option<(AreaOfInterest, SubscriptionId)>,
    /// The latest followed point while the area is moving.
    moving_to: Option<(u32, f32, f32)>,
    /// The changes of the transactions applied but not yet published, told
    /// once they are (see [`flush`](Self::flush)).
    untold: Vec<RowsChanged>,
    /// How many rows those transactions carried.
    held_rows: usize,
    /// Whether a [`Publish`] is on its way.
    publish_due: bool,
}

impl std::fmt::Debug for SyncActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncActor")
            .field("session", &self.session)
            .field("sets", &self.sets.infos().len())
            .field("staging", &self.fresh.is_some())
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
        let mut cache = ClientCache::with_indexes(keys.clone(), types.bind(&schema), spatial, unique);
        if !config.events_only.is_empty() {
            for table in config.events_only.iter().filter(|t| schema.table(t).is_none()) {
                tracing::warn!(table = %table, "an events-only table is not in the schema");
            }
            if let Some(s) = config.spatial.as_ref().filter(|s| config.events_only.contains(&s.table)) {
                tracing::warn!(table = %s.table, "the spatial table is events-only: range queries will find nothing");
            }
            cache = cache.with_events_only(&config.events_only);
        }
        Self {
            sets: QuerySets::new(&config),
            config,
            cache,
            schema,
            connection,
            listeners,
            session: SessionTracker::default(),
            fresh: None,
            map_context: None,
            area: None,
            moving_to: None,
            untold: Vec::new(),
            held_rows: 0,
            publish_due: false,
        }
    }

    /// Loads the rows of a cache image ([`crate::disk`]) into the empty cache
    /// before any session: the game's tables read them at once, its listeners
    /// hear them as inserts ([`Cause::Restored`]), and the first session's
    /// fresh state is reconciled with them (only what changed meanwhile
    /// fires). Returns how many distinct rows it loaded; a cache that already
    /// holds rows takes nothing.
    pub fn restore(&mut self, tables: &[TableDelta]) -> usize {
        self.flush();
        if self.cache.with_view(|v| v.total_rows()) > 0 {
            tracing::warn!("the cache holds rows already: the image is not loaded");
            return 0;
        }
        let changes = self.cache.apply(tables);
        self.sets.restored();
        let rows = changes.len();
        tracing::info!(rows, tables = tables.len(), "cache restored from an image");
        self.tell_changes(changes, false, Cause::Restored);
        rows
    }

    /// Names query sets from `ids`, shared with whoever names sets before
    /// sending them (see [`Subscribe::id`]).
    #[must_use]
    pub fn with_subscription_ids(mut self, ids: SubscriptionIds) -> Self {
        self.sets.set_ids(ids);
        self
    }

    /// Draws the query and request ids of its subscriptions from the
    /// connection's allocator (`ConnectionHandle::request_ids`): one id space
    /// for every message on the connection.
    pub fn with_request_ids(mut self, ids: RequestIds) -> Self {
        self.sets.set_request_ids(ids);
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
        if let Some(event) = self.rows_changed(changes, reconciled, cause) {
            self.tell_rows(&event);
        }
    }

    /// The event that tells `changes`, if there is something to tell.
    fn rows_changed(&self, changes: Vec<RowChange>, reconciled: bool, cause: Cause) -> Option<RowsChanged> {
        if changes.is_empty() && !matches!(cause, Cause::Reducer(_)) {
            return None;
        }
        Some(RowsChanged { generation: self.session.generation(), changes: Arc::new(changes), reconciled, cause })
    }

    fn tell_rows(&self, event: &RowsChanged) {
        for r in &self.listeners.changes {
            r.do_send(event.clone());
        }
    }

    /// Publishes the transactions applied and not yet published, then tells
    /// their changes in order: a listener hears of a change once readers see
    /// it. Everything but a transaction flushes first, so that nothing is
    /// told, read or applied out of order.
    fn flush(&mut self) {
        self.held_rows = 0;
        self.cache.publish();
        for event in std::mem::take(&mut self.untold) {
            self.tell_rows(&event);
        }
    }

    /// Carries out what the query sets decided.
    fn run(&mut self, steps: Vec<Step>, ctx: &mut Context<Self>) {
        if !steps.is_empty() {
            self.flush();
        }
        for step in steps {
            match step {
                Step::Send(message) => self.send(message),
                Step::Tell(event) => self.tell(event),
                Step::RetryAfter { id, after } => {
                    let generation = self.session.generation();
                    ctx.run_later(after, move |act, ctx| {
                        if act.session.is_connected() && act.session.is_current(generation) {
                            let steps = act.sets.retry_due(id, clock::now());
                            act.run(steps, ctx);
                        }
                    });
                }
                Step::Stage => self.fresh = Some(self.cache.empty_like()),
                Step::Unstage => self.fresh = None,
                Step::Reconcile => self.reconcile(),
            }
        }
    }

    /// Registers a query set and subscribes it when a session is up.
    fn add_set(
        &mut self,
        queries: Vec<String>,
        fallback: Option<Vec<String>>,
        waiter: Option<Waiter>,
        id: Option<SubscriptionId>,
        ctx: &mut Context<Self>,
    ) -> SubscriptionId {
        let (id, steps) = self.sets.add(queries, fallback, waiter, id, clock::now());
        self.run(steps, ctx);
        id
    }

    fn remove_set(&mut self, id: SubscriptionId, ctx: &mut Context<Self>) -> Result<(), SyncError> {
        let steps = self.sets.remove(id)?;
        self.run(steps, ctx);
        Ok(())
    }

    /// The cache missed an update: the query sets are resubscribed.
    fn resubscribe(&mut self, why: &Undecodable, ctx: &mut Context<Self>) {
        let steps = self.sets.resubscribe(why, clock::now());
        self.run(steps, ctx);
    }

    /// Takes a committed transaction's rows, or resubscribes if the connection
    /// could not decode them.
    fn take_transaction(
        &mut self,
        update: &ws::DatabaseUpdate<ws::BsatnFormat>,
        cause: Cause,
        ctx: &mut Context<Self>,
    ) {
        if !self.sets.transactions_pass() {
            // It may carry rows of the queries a resubscription dropped; the
            // fresh queries' initial rows, which come after it, hold its effect.
            return;
        }
        match divergence::deltas(update, false) {
            Ok(deltas) if self.fresh.is_none() => self.apply_held(&deltas, cause, ctx),
            Ok(deltas) => self.apply(&deltas, cause),
            Err(undecodable) => self.resubscribe(&undecodable, ctx),
        }
    }

    /// Applies a transaction to the cache without publishing it: the
    /// transactions already in the mailbox (a backlog) are applied too, and
    /// published once, by a [`Publish`] that comes after them (or before
    /// they pass [`MAX_HELD_ROWS`] rows); their changes are told then.
    fn apply_held(&mut self, deltas: &[WireDelta<'_>], cause: Cause, ctx: &mut Context<Self>) {
        let _span = tracing::trace_span!("sync_apply", tables = deltas.len()).entered();
        let rows = deltas.iter().map(WireDelta::rows).sum::<usize>();
        if self.held_rows > 0 && self.held_rows + rows > MAX_HELD_ROWS {
            // Large transactions are published one by one, as they come.
            self.flush();
        }
        let changes = self.cache.apply_held(deltas);
        self.untold.extend(self.rows_changed(changes, false, cause));
        self.held_rows += rows;
        if self.held_rows >= MAX_HELD_ROWS {
            self.flush();
        } else if !self.publish_due {
            self.publish_due = true;
            ctx.notify(Publish);
        }
    }

    /// Applies rows to the cache (published at once, after any held), or to
    /// the staging cache while the fresh state is collected.
    fn apply(&mut self, deltas: &[WireDelta<'_>], cause: Cause) {
        let _span = tracing::trace_span!("sync_apply", tables = deltas.len()).entered();
        self.flush();
        match &self.fresh {
            Some(fresh) => {
                fresh.apply_wire(deltas);
            }
            None => {
                let changes = self.cache.apply_wire(deltas);
                self.tell_changes(changes, false, cause);
            }
        }
    }

    /// Reconciles the cache with the fresh state: only real changes are told.
    fn reconcile(&mut self) {
        self.flush();
        let Some(fresh) = self.fresh.take() else { return };
        let changes = self.cache.reconcile_from(&fresh);
        tracing::info!(
            generation = self.session.generation(),
            changes = changes.len(),
            "cache reconciled with the fresh state"
        );
        self.tell_changes(changes, true, Cause::Reconciled);
    }

    fn on_applied(&mut self, query_id: u32, update: &ws::DatabaseUpdate<ws::BsatnFormat>, ctx: &mut Context<Self>) {
        let (rows, steps) = self.sets.applied(query_id);
        self.run(steps, ctx);
        let Rows::Take(id) = rows else { return };
        let steps = match divergence::deltas(update, false) {
            Ok(deltas) => {
                self.apply(&deltas, Cause::SubscriptionApplied);
                self.sets.taken(id, clock::now())
            }
            Err(undecodable) => self.sets.undecodable(id, &undecodable, clock::now()),
        };
        self.run(steps, ctx);
    }

    fn on_unapplied(&mut self, query_id: u32, update: &ws::DatabaseUpdate<ws::BsatnFormat>, ctx: &mut Context<Self>) {
        let (gone, steps) = self.sets.unapplied(query_id);
        if gone.is_some() {
            match divergence::deltas(update, true) {
                Ok(deltas) => self.apply(&deltas, Cause::SubscriptionRemoved),
                // Which of its rows to drop is unknown: the others' fresh rows tell.
                Err(undecodable) => {
                    self.run(steps, ctx);
                    return self.resubscribe(&undecodable, ctx);
                }
            }
        }
        self.run(steps, ctx);
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
        let id = self.add_set(queries, None, Some(tx), None, ctx);
        ctx.spawn(async move { rx.await.unwrap_or(Err(SyncError::ActorGone)) }.into_actor(self).map(
            move |result, act, ctx| {
                if result.is_ok() {
                    if let Some(previous) = previous {
                        let _ = act.remove_set(previous, ctx);
                    }
                }
                let _ = relay_tx.send(result);
            },
        ));
        (id, relay_rx)
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
        // A `Publish` sent before a restart went with the old context.
        self.publish_due = false;
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // What was applied is published and told, not lost with the actor.
        self.flush();
    }
}

impl Handler<Publish> for SyncActor {
    type Result = ();

    fn handle(&mut self, _msg: Publish, _ctx: &mut Self::Context) {
        self.publish_due = false;
        self.flush();
        // The mailbox is empty: the spare copy's catch-up is done now, while
        // the listeners take the changes, not by the next transaction.
        self.cache.catch_up();
    }
}

impl Handler<StateChanged> for SyncActor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, ctx: &mut Self::Context) {
        self.flush();
        let steps = match self.session.observe(&msg) {
            SessionChange::Up { .. } => {
                let stale = self.cache.with_view(|v| v.total_rows()) > 0;
                self.sets.session_up(stale, clock::now())
            }
            SessionChange::Lost { .. } => self.sets.session_lost(),
            SessionChange::Unchanged => return,
        };
        self.run(steps, ctx);
    }
}

impl Handler<ServerMessageReceived> for SyncActor {
    type Result = ();

    fn handle(&mut self, msg: ServerMessageReceived, ctx: &mut Self::Context) {
        if !matches!(&*msg.message, ServerMessage::TransactionUpdate(_) | ServerMessage::TransactionUpdateLight(_)) {
            self.flush();
        }
        if !self.session.is_connected() || !self.session.is_current(msg.generation) {
            return; // From a dead session.
        }
        match &*msg.message {
            ServerMessage::SubscribeMultiApplied(a) => self.on_applied(a.query_id.id, &a.update, ctx),
            ServerMessage::UnsubscribeMultiApplied(a) => self.on_unapplied(a.query_id.id, &a.update, ctx),
            ServerMessage::SubscriptionError(e) => {
                let steps = self.sets.refused(e.query_id, &e.error);
                self.run(steps, ctx);
            }
            ServerMessage::TransactionUpdate(tx) => {
                if let ws::UpdateStatus::Committed(update) = &tx.status {
                    self.take_transaction(update, transaction_cause(tx), ctx);
                }
            }
            ServerMessage::TransactionUpdateLight(tx) => {
                self.take_transaction(&tx.update, Cause::UnknownTransaction, ctx)
            }
            _ => {}
        }
    }
}

impl Handler<Subscribe> for SyncActor {
    type Result = ResponseFuture<Result<SubscriptionId, SyncError>>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        self.flush();
        let (tx, rx) = oneshot::channel();
        self.add_set(msg.queries, msg.fallback, Some(tx), msg.id, ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(SyncError::ActorGone)) })
    }
}

impl Handler<Unsubscribe> for SyncActor {
    type Result = Result<(), SyncError>;

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Self::Context) -> Self::Result {
        self.flush();
        self.remove_set(msg.id, ctx)
    }
}

impl Handler<UnsubscribeAll> for SyncActor {
    type Result = ();

    fn handle(&mut self, _msg: UnsubscribeAll, ctx: &mut Self::Context) {
        self.flush();
        let ids: Vec<SubscriptionId> = self.sets.infos().into_iter().map(|i| i.id).collect();
        for id in ids {
            let _ = self.remove_set(id, ctx);
        }
        self.map_context = None;
        self.area = None;
    }
}

impl Handler<SubscribeToMap> for SyncActor {
    type Result = ResponseFuture<Result<SubscriptionId, SyncError>>;

    fn handle(&mut self, msg: SubscribeToMap, ctx: &mut Self::Context) -> Self::Result {
        self.flush();
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
        self.flush();
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
        self.flush();
        let Some((area, current)) = self.area else { return };
        if area.covers(msg.map, (msg.x, msg.y)) {
            return;
        }
        let moving = self.sets.status(current).is_some_and(|s| *s != SubscriptionStatus::Applied);
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
        self.flush();
        self.cache.within(msg.map, msg.x, msg.y, msg.radius)
    }
}

impl Handler<GetSubscriptions> for SyncActor {
    type Result = Vec<SubscriptionInfo>;

    fn handle(&mut self, _msg: GetSubscriptions, _ctx: &mut Self::Context) -> Vec<SubscriptionInfo> {
        self.flush();
        self.sets.infos()
    }
}
