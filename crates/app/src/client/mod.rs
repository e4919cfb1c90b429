//! The one way in: [`Client::builder`], and the frame loop's [`Client::frame_tick`].
//!
//! The builder gathers the subsystem configs, the initial subscriptions and the
//! callbacks. [`ClientBuilder::build`] returns at once: it starts the supervisor
//! tree on a thread of the process's shared actor pool ([`crate::runtime`]), which connects,
//! authenticates and fetches (or, when the schema was given, checks) the
//! module's schema while the game's frames go on; the game learns how that went
//! from events and [`Client::status`]. [`ClientBuilder::build_async`] starts the
//! tree inside the caller's actix system (or, from plain tokio, on that
//! pool) and resolves once the schema is known. Both go through the
//! same two stages (`supervisor::start_children`, then `SyncStart::run`).
//!
//! On the game's thread, [`Client::frame_tick`] drains the events that arrived
//! since the last tick (see [`crate::events`] for the queue's policy), runs the
//! registered callbacks there, in order, and returns the events for games that
//! prefer polling. It never waits for the network: tables are read from the
//! cache's reader directly, and reducer calls and subscriptions return at once.
//! A reducer's result is delivered after the row events of its transaction, so
//! a result callback sees its rows in the cache (the official SDK's order).
//!
//! The parts, one a module: [`ClientBuilder`] (`builder`), the two-stage start
//! (`start`), [`Client`] (here), [`Table`] and [`RowContext`] (`table`), and
//! [`Switching`] (`switching`).

mod builder;
mod start;
mod switching;
mod table;

pub use builder::ClientBuilder;
pub use switching::{CacheSaving, Pending, Switching, Unanswered};
pub use table::{RowContext, Table};

use builder::{on_connect, on_disconnect};

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use actix::prelude::*;
use spacelink_auth::AuthHandle;
use spacelink_connection::lib::Identity;
use spacelink_connection::sats::de::Deserialize;
use spacelink_connection::{ConnectionConfig, ConnectionHandle, ModuleSchema, Token};
use spacelink_reducers::ReducerHandle;
use spacelink_sync::{ReducerCause, Subscribe, SubscriptionId, SyncHandle, Unsubscribe};
use spacelink_telemetry::{ExportFormat, TelemetryError, TelemetryHandle};

use crate::callbacks::{CallbackId, Callbacks, Registrar};
use crate::calls::{Reducers, ResultCallbacks, Waiting};
use crate::error::ClientError;
use crate::events::{Disconnect, Event, EventReceiver, EventSink};
use crate::order::ResultOrder;
use crate::prediction_link::{PredictedEntity, PredictionStart, RowsHub};
use crate::queries::{Ask, QueryCall, QueryDesk};
use crate::status::{Status, StatusCell, SubscriptionState};
use crate::supervise::Child;
use crate::supervisor::Tree;
use crate::switch::Switcher;

/// A connection id no other client is likely to have.
pub(crate) fn new_connection_id() -> spacelink_connection::lib::ConnectionId {
    spacelink_connection::config::fresh_connection_id()
}

/// The most events a frame's lists keep allocated between ticks: a large
/// transaction's (one event per row) are freed at the next tick, so that its
/// rows' worth of memory is not kept for the frames after it.
const KEPT_EVENTS: usize = 4096;

/// What only the game's thread touches, in `frame_tick` (behind a `Mutex` so
/// that a `Client` is `Sync`: `frame_tick` takes `&mut self` and never locks).
#[derive(Default)]
struct Tick {
    frame: Vec<Event>,
    scratch: Vec<Event>,
    callbacks: Callbacks,
    waiting: Waiting,
    order: ResultOrder,
}

impl fmt::Debug for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tick").field("callbacks", &self.callbacks).field("order", &self.order).finish()
    }
}

/// A running spacelink, held by the game. `Send + Sync`: an engine may keep
/// it in a resource and read its status or tables from any system.
///
/// ```no_run
/// # fn main() -> Result<(), spacelink::ClientError> {
/// let mut client = spacelink::Client::builder()
///     .with_uri("http://127.0.0.1:3000")
///     .with_database("guildmaster")
///     .subscribe(&["SELECT * FROM player"])
///     .on_connect(|identity, _token| println!("connected as {identity}"))
///     .build()?; // returns at once
/// loop {
///     for event in client.frame_tick() {
///         println!("{event:?}");
///     }
///     let _connected = client.status().is_active();
///     // ... update and draw the frame ...
/// #   break;
/// }
/// client.shutdown();
/// # Ok(())
/// # }
/// ```
pub struct Client {
    tree: Tree,
    sink: Addr<EventSink>,
    events: EventReceiver,
    reducers: Reducers,
    result_callbacks: ResultCallbacks,
    tick: Mutex<Tick>,
    registrar: Registrar,
    /// Its place on the shared actor pool (a client built with
    /// [`ClientBuilder::build`]; `None` inside the game's own actix system).
    placement: Option<crate::runtime::Placement>,
    /// Where the actors run (work the game starts from its thread goes there).
    arbiter: actix::ArbiterHandle,
    /// The thread of that arbiter.
    runtime_thread: std::thread::ThreadId,
    /// Hands row changes to the links of predictions started later.
    rows_hub: Addr<RowsHub>,
    status: StatusCell,
    /// Raised by `shutdown`: the disconnect that follows was asked for.
    requested: Arc<AtomicBool>,
    /// The builder's subscriptions, in order.
    initial: Vec<SubscriptionId>,
    /// Where one-off queries go.
    queries: Addr<QueryDesk>,
    /// Asks the saver of the cache on disk to save now (nobody hears them
    /// without a cache on disk).
    cache_saves: tokio::sync::mpsc::UnboundedSender<start::SaveAsk>,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
};

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("pending_events", &self.events.pending())
            .field("on_shared_threads", &self.placement.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The one way to start a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    fn placed(mut self, placement: crate::runtime::Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Drains the events that arrived since the last tick (no more: one
    /// frame's work is bounded), runs the registered callbacks on them in
    /// order, here, and returns them. Never blocks.
    ///
    /// A reducer's result ([`Event::ReducerResult`], `on_result`) comes after
    /// the row events of its transaction, so its callback finds its rows in
    /// the cache; a transaction's [`Event::Transaction`] comes after its rows too.
    pub fn frame_tick(&mut self) -> &[Event] {
        let ours = self.status.load(0).connection_id;
        let tick = self.tick.get_mut().unwrap_or_else(|e| e.into_inner());
        tick.frame.clear();
        tick.scratch.clear();
        tick.frame.shrink_to(KEPT_EVENTS);
        tick.scratch.shrink_to(KEPT_EVENTS);
        tick.callbacks.adopt(&self.registrar);
        tick.waiting.adopt(&self.result_callbacks);
        self.events.drain_into(&mut tick.scratch);
        tick.order.sort(tick.scratch.drain(..), ours, Instant::now(), &mut tick.frame);
        let held = tick.order.held_tickets();
        let Tick { frame, callbacks, waiting, .. } = tick;
        for event in frame.iter() {
            if let Event::ReducerResult { ticket, result, .. } = event {
                waiting.dispatch(*ticket, result);
            }
            callbacks.dispatch(event, &self.registrar);
        }
        waiting.sweep_ready(&held);
        &tick.frame
    }

    /// How many queue entries wait for the next tick (a transaction's rows are one entry).
    pub fn pending_events(&self) -> usize {
        self.events.pending()
    }

    /// Where the client is, read at once from any thread (no `await`, no
    /// round trip): connection state, identity, token, health, breaker,
    /// schema, each subscription, calls and events pending.
    pub fn status(&self) -> Status {
        self.status.load(self.events.pending())
    }

    /// Our identity, once a server told us (the official SDK's `try_identity`).
    pub fn try_identity(&self) -> Option<Identity> {
        self.status.load(0).identity
    }

    /// Whether a session is up and answered (the official SDK's `is_active`).
    pub fn is_active(&self) -> bool {
        self.status.load(0).is_active()
    }

    /// Subscribes to `queries` and returns the query set's id at once, from
    /// any thread (before the schema is known or a session is up, the request
    /// waits). Its outcome comes as [`Event::Subscription`] and in
    /// [`Client::status`]; the set lives across reconnects until unsubscribed.
    /// After [`shutdown`](Self::shutdown) it is never sent: its state is `Cancelled` at once.
    pub fn subscribe<S: AsRef<str>>(&self, queries: &[S]) -> SubscriptionId {
        let id = self.tree.subscription_ids.next();
        if self.requested.load(Ordering::SeqCst) {
            // After `shutdown`: never sent, never applies.
            self.status.update(|s| {
                s.subscriptions.insert(id, SubscriptionState::Cancelled);
            });
            return id;
        }
        self.status.update(|s| {
            s.subscriptions.insert(id, SubscriptionState::Pending);
        });
        let queries = queries.iter().map(|q| q.as_ref().to_string()).collect();
        self.tree.sync_addr.do_send(Subscribe { queries, fallback: None, id: Some(id) });
        id
    }

    /// Drops a query set, at once, from any thread: one still pending never
    /// reports applied and brings no rows ([`SubscriptionEvent::Cancelled`](spacelink_sync::SubscriptionEvent::Cancelled));
    /// an applied one's rows leave the cache unless another set holds them.
    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.tree.sync_addr.do_send(Unsubscribe { id });
    }

    /// Runs a one-off query (SQL, not kept up to date) and returns at once,
    /// from any thread; poll the answer each frame or `.await` it. Made while
    /// no session is up, it fails at once (`ConnectionError::NotConnected`),
    /// and after [`shutdown`](Self::shutdown) with `ConnectionError::ActorGone`;
    /// one whose session is lost before the answer fails too.
    pub fn query(&self, sql: &str) -> QueryCall {
        let (answer, rx) = tokio::sync::oneshot::channel();
        if self.requested.load(Ordering::SeqCst) {
            // After `shutdown`: fails at once, never sent.
            let _ = answer.send(Err(ClientError::Connection(spacelink_connection::ConnectionError::ActorGone)));
            return QueryCall::pending(rx);
        }
        self.queries.do_send(Ask { sql: sql.to_string(), answer });
        QueryCall::pending(rx)
    }

    /// The ids of the builder's subscriptions ([`ClientBuilder::subscribe`]), in order.
    pub fn initial_subscriptions(&self) -> &[SubscriptionId] {
        &self.initial
    }

    /// Runs `callback` in `frame_tick` for every event; remove it with [`remove_callback`](Self::remove_callback).
    pub fn on_event(&self, callback: impl FnMut(&Event) + Send + 'static) -> CallbackId {
        self.registrar.any(Box::new(callback))
    }

    /// Runs `callback(identity, token)` in `frame_tick` each time a session is up.
    pub fn on_connect(&self, callback: impl FnMut(Identity, &Token) + Send + 'static) -> CallbackId {
        self.registrar.any(on_connect(callback))
    }

    /// Runs `callback` in `frame_tick` each time a session ends (asked for, or lost and why).
    pub fn on_disconnect(&self, callback: impl FnMut(&Disconnect) + Send + 'static) -> CallbackId {
        self.registrar.any(on_disconnect(callback))
    }

    /// Runs `callback` in `frame_tick` for each transaction of reducer
    /// `reducer` seen by this client (ours or another client's; after its row
    /// events): the official SDK's `on_<reducer>`.
    pub fn on_reducer(&self, reducer: &str, mut callback: impl FnMut(&ReducerCause) + Send + 'static) -> CallbackId {
        let reducer: Arc<str> = Arc::from(reducer);
        self.registrar.any(Box::new(move |event| {
            if let Event::Transaction(cause) = event {
                if cause.reducer == reducer {
                    callback(cause);
                }
            }
        }))
    }

    /// Removes a callback registered with any `on_*` of the client or of a
    /// table, from any thread (a callback included): it hears nothing from
    /// the next event on.
    pub fn remove_callback(&self, id: CallbackId) {
        self.registrar.remove(id);
    }

    /// A typed handle to table `name`, for a row type deriving the SATS
    /// `Deserialize` (as generated row types do). Cheap, `Clone`; it reads
    /// empty until the schema is known.
    pub fn table<T: for<'de> Deserialize<'de> + Send + Sync + 'static>(&self, name: &str) -> Table<T> {
        Table {
            ready: self.tree.ready.clone(),
            view: Arc::new(OnceLock::new()),
            name: Arc::from(name),
            registrar: self.registrar.clone(),
            reducers: self.reducers.clone(),
            _row: PhantomData,
        }
    }

    /// Listeners for a prediction actor the game starts itself, so that its
    /// confirmations and corrections arrive as [`Event::Prediction`] in `frame_tick`.
    pub fn prediction_listeners(&self) -> spacelink_prediction::PredictionListeners {
        spacelink_prediction::PredictionListeners { events: vec![self.sink.clone().recipient()] }
    }

    /// The connection: state, health, reconnect.
    pub fn connection(&self) -> &ConnectionHandle {
        &self.tree.connection
    }

    /// Reducer calls that return at once (the official SDK's `conn.reducers`).
    pub fn reducers(&self) -> &Reducers {
        &self.reducers
    }

    /// The reducer client underneath (awaitable calls, batches, validators).
    pub fn reducer_client(&self) -> &ReducerHandle {
        &self.tree.reducers
    }

    /// Authentication: identity, token, refresh.
    pub fn auth(&self) -> &AuthHandle {
        &self.tree.auth
    }

    /// State synchronisation (subscriptions, interest, the cache), once the
    /// schema is known (`None` before: see [`Status::schema`]).
    pub fn sync(&self) -> Option<&SyncHandle> {
        self.tree.ready.get().map(|r| &r.sync)
    }

    /// The performance monitor, when configured.
    pub fn telemetry(&self) -> Option<&TelemetryHandle> {
        self.tree.telemetry.as_ref()
    }

    /// The module's schema, once known.
    pub fn schema(&self) -> Option<&Arc<ModuleSchema>> {
        self.tree.ready.get().map(|r| &r.schema)
    }

    /// How many times the tree restarted `child` since it started.
    pub fn restarts(&self, child: Child) -> u32 {
        self.tree.controls.of(child).iter().map(|c| c.restarts()).sum()
    }

    /// Whether the tree gave `child` up (it kept stopping, past its [`crate::RestartPolicy`]).
    pub fn given_up(&self, child: Child) -> bool {
        self.tree.controls.of(child).iter().any(|c| c.given_up())
    }

    /// Stops `child` as a failure would; its restart policy brings it back
    /// (for tests and chaos drills).
    pub fn fail_child(&self, child: Child) {
        for control in self.tree.controls.of(child) {
            control.kill();
        }
    }

    /// Writes a snapshot of the performance statistics to `path`.
    pub async fn export_stats(&self, path: &Path, format: ExportFormat) -> Result<(), TelemetryError> {
        self.tree.export_stats(path, format).await
    }

    /// Starts client-side prediction of one entity, under the tree's
    /// supervision ([`crate::Child::Prediction`], restarted by
    /// [`crate::SupervisionConfig::prediction`], stopped by `shutdown`): its
    /// server state comes from the sync cache and its row changes, each input
    /// goes out as a sequenced call of `entity.reducer`, a refused call rolls
    /// the input back, and its events reach [`frame_tick`](Self::frame_tick).
    /// Works from the game's thread for a [`ClientBuilder::build`] client and
    /// inside the actix system for a [`ClientBuilder::build_async`] one.
    ///
    /// ```no_run
    /// # use spacelink::prediction::{PredictionConfig, Step, Walk};
    /// # fn run(client: &spacelink::Client, me: spacelink::prediction_link::PredictedEntity<Walk>)
    /// #     -> Result<(), spacelink::prediction::PredictionError> {
    /// let me = client.predict(Walk::default(), PredictionConfig::default(), me)?;
    /// me.predict(Step { dx: 1.0, dy: 0.0 }); // every frame
    /// let _draw_here = me.shown();
    /// # Ok(())
    /// # }
    /// ```
    pub fn predict<M>(
        &self,
        model: M,
        config: spacelink_prediction::PredictionConfig,
        entity: PredictedEntity<M>,
    ) -> Result<spacelink_prediction::PredictionHandle<M>, spacelink_prediction::PredictionError>
    where
        M: spacelink_prediction::PredictionModel + Unpin + Send + 'static,
    {
        let start = PredictionStart {
            model,
            config,
            entity,
            listeners: self.prediction_listeners(),
            reducers: self.tree.reducers.clone(),
            sync: self.sync().cloned(),
            hub: self.rows_hub.clone(),
            policy: self.tree.prediction_policy.clone(),
            stop: self.tree.stop.clone(),
            controls: self.tree.controls.predictions.clone(),
        };
        if std::thread::current().id() == self.runtime_thread {
            return start.run();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.arbiter.spawn_fn(move || {
            let _ = tx.send(start.run());
        }) {
            return Err(spacelink_prediction::PredictionError::ActorGone);
        }
        // Only actor starts: microseconds, not the network.
        rx.recv().unwrap_or(Err(spacelink_prediction::PredictionError::ActorGone))
    }

    /// What switches this client to another server or database (for a
    /// settings watcher, or a task of the game's): see [`crate::switch`].
    pub fn switcher(&self) -> Switcher {
        Switcher::new(
            self.tree.connection.clone(),
            self.tree.auth.clone(),
            self.tree.ready.clone(),
            self.tree.target.clone(),
        )
    }

    /// Moves this client to `config`'s server and database (a profile switch,
    /// see [`crate::switch`]), from any thread: the work runs on the client's
    /// actors' thread, and the answer can be awaited or polled from the game's
    /// frame loop ([`Switching::try_result`]). The game's tables, callbacks and
    /// subscriptions stay; its row events tell how the new database differs.
    pub fn switch_to(&self, config: ConnectionConfig) -> Switching {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let switcher = self.switcher();
        let spawned = self.arbiter.spawn(async move {
            let _ = tx.send(switcher.switch_to(config).await);
        });
        Switching { answer: spawned.then_some(rx) }
    }

    /// Saves the cache to its file now (with
    /// [`ClientBuilder::with_disk_cache`](super::ClientBuilder::with_disk_cache)),
    /// from any thread, without blocking: the answer says what was written
    /// ([`DiskCacheEvent::Saved`](crate::DiskCacheEvent::Saved), or
    /// `Unchanged`), and can be awaited or polled each frame. A game about to
    /// exit saves this way and waits for the answer; `shutdown` also saves,
    /// in the background.
    pub fn save_cache(&self) -> CacheSaving {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Nobody to ask (no cache on disk, or the client gone): the request,
        // dropped, answers at once with `SaveFailed`.
        let _ = self.cache_saves.send(tx);
        CacheSaving { answer: Some(rx) }
    }

    /// Closes the connection and stops the tree for good; a client built with
    /// [`ClientBuilder::build`] also leaves its place on the shared actor pool
    /// when dropped. Never blocks.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.status.update(|s| s.shut_down = true);
        self.tree.shutdown();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.placement.is_some() && !self.requested.load(Ordering::SeqCst) {
            self.shutdown();
        }
    }
}
