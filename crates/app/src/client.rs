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

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use actix::prelude::*;
use spacelink_auth::{AuthConfig, AuthHandle, CredentialStore, TokenProvider};
use spacelink_connection::lib::Identity;
use spacelink_connection::sats::{de::Deserialize, ser::Serialize};
use spacelink_connection::{Compression, ConnectionConfig, ConnectionHandle, Listeners, ModuleSchema, Token};
use spacelink_reducers::{ReducerConfig, ReducerHandle, ReducerListeners};
use spacelink_sync::{
    Cause, ReducerCause, Shared, Subscribe, SubscriptionId, SyncConfig, SyncHandle, SyncListeners, TableView,
    Unsubscribe,
};
use spacelink_telemetry::{ExportFormat, TelemetryError, TelemetryHandle, TelemetrySetup};

use crate::callbacks::{CallbackId, Callbacks, Registrar};
use crate::calls::{Reducers, ResultCallbacks, Waiting};
use crate::error::ClientError;
use crate::events::{
    self, Disconnect, Event, EventReceiver, EventSender, EventSink, RowEvent, RowEventKind, SchemaEvent,
};
use crate::order::ResultOrder;
use crate::prediction_link::{PredictedEntity, PredictionStart, RowsHub};
use crate::queries::{Ask, QueryCall, QueryDesk};
use crate::status::{SchemaStatus, Status, StatusCell, SubscriptionState};
use crate::supervise::Child;
use crate::supervisor::{start_children, validate, Ready, SpacelinkConfig, SyncStart, Tree, TreeListeners};
use crate::switch::{SwitchError, Switcher};

/// Builds a [`Client`]: `Client::builder().with_uri(..).with_database(..).build()`.
#[must_use = "a builder does nothing until built"]
pub struct ClientBuilder {
    config: Option<SpacelinkConfig>,
    uri: Option<String>,
    database: Option<String>,
    token: Option<String>,
    compression: Option<Compression>,
    subscriptions: Vec<Vec<String>>,
    listeners: TreeListeners,
    registrar: Registrar,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("uri", &self.uri)
            .field("database", &self.database)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    fn new() -> Self {
        Self {
            config: None,
            uri: None,
            database: None,
            token: None,
            compression: None,
            subscriptions: Vec::new(),
            listeners: TreeListeners::default(),
            registrar: Registrar::default(),
        }
    }

    fn config_mut(&mut self) -> &mut SpacelinkConfig {
        self.config.get_or_insert_with(|| SpacelinkConfig::new(ConnectionConfig::new("", "")))
    }

    /// The server, `http(s)://` or `ws(s)://host:port` (the official SDK's `with_uri`).
    pub fn with_uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = Some(uri.into());
        self
    }

    /// The database's name or identity (the official SDK's `with_module_name`).
    pub fn with_database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// Same as [`with_database`](Self::with_database), under the official SDK's name.
    pub fn with_module_name(self, database: impl Into<String>) -> Self {
        self.with_database(database)
    }

    /// The token to connect with (default: a stored one, or none: the server issues one).
    pub fn with_token(mut self, token: Option<impl Into<String>>) -> Self {
        self.token = token.map(Into::into);
        self
    }

    /// How the server compresses what it sends (default: the connection config's).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Every setting at once (as `settings::SettingsLoader` reads them from a
    /// file); `with_uri`, `with_database`, `with_token` and `with_compression`
    /// still override its connection's.
    pub fn with_config(mut self, config: SpacelinkConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The connection's settings (server and database included, unless set apart).
    pub fn with_connection_config(mut self, connection: ConnectionConfig) -> Self {
        self.config_mut().connection = connection;
        self
    }

    /// The reducer client's settings.
    pub fn with_reducer_config(mut self, reducers: ReducerConfig) -> Self {
        self.config_mut().reducers = reducers;
        self
    }

    /// State synchronisation's settings.
    pub fn with_sync_config(mut self, sync: SyncConfig) -> Self {
        self.config_mut().sync = sync;
        self
    }

    /// The Rust types of the game's tables (`RowTypes::new().register::<T>("t")`):
    /// their rows are decoded once, as they arrive, and every read and
    /// callback shares that one value (default: none; a row is then decoded
    /// when first read).
    pub fn with_row_types(mut self, types: spacelink_sync::RowTypes) -> Self {
        self.config_mut().row_types = types;
        self
    }

    /// Authentication's settings.
    pub fn with_auth_config(mut self, auth: AuthConfig) -> Self {
        self.config_mut().auth = auth;
        self
    }

    /// Where credentials are kept between runs (default: memory only; see
    /// [`crate::credentials::default_store`]).
    pub fn with_credentials(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.config_mut().credentials = Some(store);
        self
    }

    /// Where new tokens come from before the current one expires.
    pub fn with_token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.config_mut().token_provider = Some(provider);
        self
    }

    /// The performance monitor (it installs the process's `metrics` recorder:
    /// one per process). Its alerts arrive as [`Event::Alert`], its statistics as [`Event::Stats`].
    pub fn with_telemetry(mut self, telemetry: TelemetrySetup) -> Self {
        self.config_mut().telemetry = Some(telemetry);
        self
    }

    /// Keep unanswered reducer calls in this file across runs.
    pub fn with_queue_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_mut().queue_file = Some(path.into());
        self
    }

    /// The module's schema, if already known (default: fetched at start,
    /// bounded and retried on the connection's retry policy).
    pub fn with_schema(mut self, schema: Arc<ModuleSchema>) -> Self {
        self.config_mut().schema = Some(schema);
        self
    }

    /// A query set to subscribe to once started (kept across reconnects); its
    /// outcome arrives as [`Event::Subscription`].
    pub fn subscribe<S: AsRef<str>>(mut self, queries: &[S]) -> Self {
        self.subscriptions.push(queries.iter().map(|q| q.as_ref().to_string()).collect());
        self
    }

    /// Actor listeners of the connection, for games and tools built of actors.
    pub fn with_listeners(mut self, listeners: Listeners) -> Self {
        self.listeners.connection = listeners;
        self
    }

    /// Actor listeners of the reducer client.
    pub fn with_reducer_listeners(mut self, listeners: ReducerListeners) -> Self {
        self.listeners.reducers = listeners;
        self
    }

    /// Actor listeners of state sync, for games and tools built of actors.
    pub fn with_sync_listeners(mut self, listeners: SyncListeners) -> Self {
        self.listeners.sync = listeners;
        self
    }

    /// Runs `callback` on the game's thread, in `frame_tick`, for every event.
    pub fn on_event(self, callback: impl FnMut(&Event) + Send + 'static) -> Self {
        self.registrar.any(Box::new(callback));
        self
    }

    /// Runs `callback(identity, token)` in `frame_tick` each time a session is
    /// up and the server told who we are (the token's `Debug` never shows it).
    pub fn on_connect(self, callback: impl FnMut(Identity, &Token) + Send + 'static) -> Self {
        self.registrar.any(on_connect(callback));
        self
    }

    /// Runs `callback` in `frame_tick` each time a session ends, saying whether
    /// the game asked for it ([`Client::shutdown`]) or it was lost, and why.
    pub fn on_disconnect(self, callback: impl FnMut(&Disconnect) + Send + 'static) -> Self {
        self.registrar.any(on_disconnect(callback));
        self
    }

    fn finish(self) -> Result<Start, ClientError> {
        let mut config = self.config.unwrap_or_else(|| SpacelinkConfig::new(ConnectionConfig::new("", "")));
        if let Some(uri) = self.uri {
            config.connection.server_url = uri;
        }
        if let Some(database) = self.database {
            config.connection.database = database;
        }
        if self.token.is_some() {
            config.connection.token = self.token;
        }
        if let Some(compression) = self.compression {
            config.connection.compression = compression;
        }
        if config.connection.server_url.is_empty() {
            return Err(config_error("server_url", "no server: call with_uri"));
        }
        if config.connection.database.is_empty() {
            return Err(config_error("database", "no database: call with_database"));
        }
        validate(&config)?;
        Ok(Start { config, listeners: self.listeners, subscriptions: self.subscriptions, registrar: self.registrar })
    }

    /// Starts the client and returns at once, before anything is connected:
    /// the tree runs on a thread of the process's shared actor pool (see
    /// [`crate::runtime`]: a few threads serve every client), where it connects, authenticates and fetches the
    /// module's schema (or, given one, checks it against the server's), retried
    /// while the server is unreachable. The game's frames go on meanwhile:
    /// [`Client::status`] and the events of [`Client::frame_tick`] tell how it
    /// goes ([`Event::Schema`], [`Event::Connected`]); tables read empty until
    /// the schema is known. Only a configuration that cannot work is an error here.
    pub fn build(self) -> Result<Client, ClientError> {
        let start = self.finish()?;
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_runtime(start, move |started| {
            let _ = tx.send(started);
        })?;
        // Only actors start before this answer (and the stored token is read): no network.
        rx.recv().map_err(|_| ClientError::Runtime("the actor thread ended before the tree started".into()))?
    }

    /// Starts the tree in the current actix system and resolves once the
    /// module's schema is known (fetched, bounded and retried, unless given):
    /// a refused fetch is an error and stops what was started. Called outside
    /// an actix system (from plain tokio, say), it starts the tree on the
    /// shared actor pool as [`build`](Self::build) does, and waits the same way.
    pub async fn build_async(self) -> Result<Client, ClientError> {
        let start = self.finish()?;
        if System::try_current().is_some() {
            let (client, schema_stage) = start.run()?;
            schema_stage.wait().await?;
            return Ok(client);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_runtime_waiting(start, move |started| {
            let _ = tx.send(started);
        })?;
        rx.await.map_err(|_| ClientError::Runtime("the actor thread ended before the tree started".into()))?
    }
}

/// A connection id no other client is likely to have.
pub(crate) fn new_connection_id() -> spacelink_connection::lib::ConnectionId {
    spacelink_connection::config::fresh_connection_id()
}

fn config_error(field: &'static str, reason: &str) -> ClientError {
    ClientError::Config(spacelink_connection::ConfigError { field, reason: reason.into() })
}

fn on_connect(mut callback: impl FnMut(Identity, &Token) + Send + 'static) -> crate::callbacks::AnyCallback {
    Box::new(move |event| {
        if let Event::Connected { identity, token, .. } = event {
            callback(*identity, token);
        }
    })
}

fn on_disconnect(mut callback: impl FnMut(&Disconnect) + Send + 'static) -> crate::callbacks::AnyCallback {
    Box::new(move |event| {
        if let Event::Disconnected(disconnect) = event {
            callback(disconnect);
        }
    })
}

type Report = Box<dyn FnOnce(Result<Client, ClientError>) + Send>;

/// Runs the tree on a thread of the shared actor pool ([`crate::runtime`]);
/// `report` hears as soon as the children run (the schema stage goes on
/// there in the background).
fn spawn_runtime(
    start: Start,
    report: impl FnOnce(Result<Client, ClientError>) + Send + 'static,
) -> Result<(), ClientError> {
    spawn_runtime_with(start, false, Box::new(report))
}

/// Like [`spawn_runtime`], reporting only once the schema stage is done.
fn spawn_runtime_waiting(
    start: Start,
    report: impl FnOnce(Result<Client, ClientError>) + Send + 'static,
) -> Result<(), ClientError> {
    spawn_runtime_with(start, true, Box::new(report))
}

fn spawn_runtime_with(start: Start, wait: bool, report: Report) -> Result<(), ClientError> {
    let placement = crate::runtime::place()?;
    let arbiter = placement.arbiter().clone();
    let spawned = arbiter.spawn_fn(move || {
        // On the actor thread now: the tree's futures need not be `Send`.
        actix::spawn(async move {
            let started = async move {
                let (client, schema_stage) = start.run()?;
                if wait {
                    schema_stage.wait().await?;
                } else {
                    actix::spawn(schema_stage.in_background());
                }
                Ok(client)
            }
            .await;
            report(started.map(|client| client.placed(placement)));
        });
    });
    if spawned {
        Ok(())
    } else {
        Err(ClientError::Runtime("the spacelink actor thread has ended".into()))
    }
}

/// What the builder hands to the tree start.
struct Start {
    config: SpacelinkConfig,
    listeners: TreeListeners,
    subscriptions: Vec<Vec<String>>,
    registrar: Registrar,
}

impl Start {
    /// Inside an actix system: the event sink, the tree's children, the initial
    /// subscriptions (waiting in the sync actor's mailbox); then the schema stage.
    fn run(self) -> Result<(Client, SchemaStage), ClientError> {
        let Start { mut config, mut listeners, subscriptions, registrar } = self;
        let (sender, receiver) = events::queue();
        let status = StatusCell::default();
        let requested = Arc::new(AtomicBool::new(false));
        let sink = EventSink { events: sender.clone(), status: status.clone(), requested: requested.clone() }.start();
        let rows_hub = RowsHub::default().start();
        let queries = Context::<QueryDesk>::new();
        listeners.connection.messages.push(queries.address().recipient());
        listeners.connection.states.push(queries.address().recipient());
        listeners.sync.changes.push(rows_hub.clone().recipient());
        listeners.connection.states.push(sink.clone().recipient());
        listeners.connection.identities.push(sink.clone().recipient());
        listeners.connection.resilience.push(sink.clone().recipient());
        listeners.reducers.events.push(sink.clone().recipient());
        listeners.sync.changes.push(sink.clone().recipient());
        listeners.sync.subscriptions.push(sink.clone().recipient());
        config.auth_listeners.events.push(sink.clone().recipient());
        if let Some(telemetry) = &mut config.telemetry {
            telemetry.listeners.alerts.push(sink.clone().recipient());
            telemetry.listeners.stats.push(sink.clone().recipient());
        }
        let given = config.schema.take();
        // The fetch reads the connection's settings as given (before the stored token is chosen).
        let fetch_config = config.connection.clone();
        let (tree, sync) = start_children(config, listeners)?;
        let queries = queries.run(QueryDesk::new(tree.connection.clone(), tree.ready.clone()));
        let result_callbacks = ResultCallbacks::default();
        let client = Client {
            sink,
            reducers: Reducers::new(
                tree.reducers.clone(),
                sender.clone(),
                result_callbacks.clone(),
                status.calls_pending.clone(),
            )
            .refusing_after(requested.clone()),
            result_callbacks,
            tick: Mutex::new(Tick::default()),
            tree,
            events: receiver,
            registrar,
            placement: None,
            arbiter: actix::Arbiter::current(),
            runtime_thread: std::thread::current().id(),
            rows_hub,
            status: status.clone(),
            requested,
            initial: Vec::new(),
            queries,
        };
        let mut initial = Vec::with_capacity(subscriptions.len());
        for queries in subscriptions {
            initial.push(client.subscribe(&queries));
        }
        let stage =
            SchemaStage { given, config: fetch_config, sync, status, events: sender, stop: client.tree.stop.clone() };
        let mut client = client;
        client.initial = initial;
        Ok((client, stage))
    }
}

/// The second stage of a start: the module's schema, then state sync.
struct SchemaStage {
    given: Option<Arc<ModuleSchema>>,
    config: ConnectionConfig,
    sync: SyncStart,
    status: StatusCell,
    events: EventSender,
    stop: crate::supervise::StopFlag,
}

impl SchemaStage {
    fn ready(status: &StatusCell, events: &EventSender) {
        status.update(|s| s.schema = SchemaStatus::Ready);
        events.event(Event::Schema(SchemaEvent::Ready));
    }

    /// For a caller that waits: the schema as given, or fetched (bounded and
    /// retried, then an error that stops the tree).
    async fn wait(self) -> Result<(), ClientError> {
        let schema = match self.given {
            Some(schema) => schema,
            None => match ModuleSchema::fetch_for(&self.config).await {
                Ok(schema) => Arc::new(schema),
                Err(e) => {
                    self.sync.abandon();
                    return Err(e.into());
                }
            },
        };
        self.sync.run(schema);
        Self::ready(&self.status, &self.events);
        Ok(())
    }

    /// In the background: a given schema starts sync at once and is then
    /// checked against the server's (a difference is [`SchemaEvent::Mismatch`]);
    /// else the schema is fetched, retried on the connection's backoff (capped)
    /// until it comes or the client shuts down, each failure told.
    async fn in_background(self) {
        let SchemaStage { given, config, sync, status, events, stop } = self;
        let checking = given.clone();
        let mut pending = Some(sync);
        if let Some(schema) = given {
            if let Some(sync) = pending.take() {
                sync.run(schema);
            }
            Self::ready(&status, &events);
        }
        let Ok(base) = config.http_base() else { return };
        let mut jitter = config
            .jitter_seed
            .map_or_else(spacelink_connection::Jitter::from_entropy, spacelink_connection::Jitter::new);
        let mut attempts = 0u32;
        while !stop.is_raised() {
            let token = config.token.as_deref();
            match ModuleSchema::fetch_with(&base, &config.database, token, &config.schema_fetch, &config.tls).await {
                Ok(server) => {
                    match (&checking, pending.take()) {
                        (Some(mine), _) => {
                            if let Some(difference) = mine.difference(&server) {
                                tracing::warn!(%difference, "the server's module differs from the given schema");
                                status.update(|s| s.schema = SchemaStatus::Mismatch { difference: difference.clone() });
                                events.event(Event::Schema(SchemaEvent::Mismatch { difference }));
                            }
                        }
                        (None, Some(sync)) => {
                            sync.run(Arc::new(server));
                            Self::ready(&status, &events);
                        }
                        (None, None) => {}
                    }
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    let error = e.to_string();
                    tracing::warn!(%error, attempts, "schema fetch failed; retrying");
                    if checking.is_none() {
                        status.update(|s| s.schema = SchemaStatus::Retrying { attempts, error: error.clone() });
                    }
                    let retry_in = config.retry.delay(attempts.min(16), jitter.next_unit());
                    events.event(Event::Schema(SchemaEvent::FetchFailed { error, attempts, retry_in }));
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }
}

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

/// A row for a callback: the cache's shared decoded row, or one decoded for it.
enum Typed<'a, T> {
    Shared(&'a T),
    Owned(T),
}

impl<T> std::ops::Deref for Typed<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Typed::Shared(t) => t,
            Typed::Owned(t) => t,
        }
    }
}

/// `row` as a `T`: the cache's shared decoded row for the table's registered
/// type, else decoded here (once per callback); a row that does not decode is
/// counted and warned about.
fn typed<'r, T: for<'de> Deserialize<'de> + Send + Sync + 'static>(
    row: &'r spacelink_sync::Row,
    schema: Option<&ModuleSchema>,
    name: &str,
) -> Option<Typed<'r, T>> {
    if let Some(v) = row.get::<T>() {
        return Some(Typed::Shared(v));
    }
    match schema?.table(name)?.decode_as::<T>(row.bytes()) {
        Ok(v) => Some(Typed::Owned(v)),
        Err(e) => {
            metrics::counter!(spacelink_connection::metric_names::CLIENT_ROW_DECODE_ERRORS).increment(1);
            tracing::warn!(table = %name, error = %e, "a row does not decode as the registered type");
            None
        }
    }
}

/// What a row callback is told besides the row: why it changed, and what it
/// needs to act (the official SDK's `EventContext`).
#[derive(Debug)]
pub struct RowContext<'a> {
    /// The row event (its table, key, whether it came from a reconciliation).
    pub event: &'a RowEvent,
    /// The game's reducer calls: a callback may call one at once.
    pub reducers: &'a Reducers,
}

impl RowContext<'_> {
    /// What caused the change: a reducer (which, who called it, when), a
    /// subscription applied, the reconciliation after a reconnect.
    pub fn cause(&self) -> &Cause {
        &self.event.cause
    }

    /// Whether this change is the reconciliation of a reconnect.
    pub fn reconciled(&self) -> bool {
        self.event.reconciled
    }
}

/// A typed handle to one table of the cache: reads straight from the cache's
/// reader (no round trip), callbacks run by [`Client::frame_tick`]. Cheap to
/// clone; it reads empty until the module's schema is known.
///
/// Generated bindings wrap it, one per table.
pub struct Table<T> {
    ready: Arc<OnceLock<Ready>>,
    /// The cache's typed reads of the table (its columns, key and layout
    /// derived once per client), once the schema is known.
    view: Arc<OnceLock<TableView<T>>>,
    name: Arc<str>,
    registrar: Registrar,
    reducers: Reducers,
    _row: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    /// A few reference counts: keep a handle, or make one per frame, alike.
    fn clone(&self) -> Self {
        Self {
            ready: self.ready.clone(),
            view: self.view.clone(),
            name: self.name.clone(),
            registrar: self.registrar.clone(),
            reducers: self.reducers.clone(),
            _row: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<T: for<'de> Deserialize<'de> + Send + Sync + 'static> Table<T> {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The view of the cache, once the schema is known.
    fn view(&self) -> Option<&TableView<T>> {
        if let Some(view) = self.view.get() {
            return Some(view);
        }
        let ready = self.ready.get()?;
        Some(self.view.get_or_init(|| ready.sync.table::<T>(&self.name)))
    }

    /// Every cached row: for the table's registered type (see
    /// [`ClientBuilder::with_row_types`]) the cache's own decoded rows, shared,
    /// else each decoded now. The iterator holds one transaction's state of
    /// the table and walks it: nothing is collected.
    pub fn iter(&self) -> impl Iterator<Item = Shared<T>> + '_ {
        self.view().into_iter().flat_map(|view| view.iter())
    }

    /// How many rows are cached.
    pub fn count(&self) -> usize {
        self.view().map_or(0, TableView::count)
    }

    /// The row whose primary key is `key` (a value of the key's type).
    pub fn find_by_key<K: Serialize>(&self, key: &K) -> Option<Shared<T>> {
        self.view()?.get(key)
    }

    /// The cached row whose column `column` equals `value` (the official
    /// SDK's `conn.db.t().col().find(&v)`): the primary key and every unique
    /// column are one hash lookup in the cache's indexes; another column is
    /// compared as bytes, read from each row without decoding it, and the
    /// first match is returned. Only the row found is decoded (for a type not
    /// registered). `None` for an unknown column.
    pub fn find<K: Serialize>(&self, column: &str, value: &K) -> Option<Shared<T>> {
        self.view()?.find(column, value)
    }

    fn on(
        &self,
        kind: RowEventKind,
        mut callback: impl FnMut(&RowContext<'_>, Option<&T>, &T) + Send + 'static,
    ) -> CallbackId {
        let name = self.name.clone();
        let ready = self.ready.clone();
        let reducers = self.reducers.clone();
        self.registrar.row(
            self.name.clone(),
            kind,
            Box::new(move |row| {
                // The registered type: the cache's decoded row, shared. Another
                // type: decoded here, once per callback.
                let schema = ready.get().map(|r| &*r.schema);
                let Some(new) = typed::<T>(&row.row, schema, &name) else { return };
                let old = row.old.as_ref().and_then(|r| typed::<T>(r, schema, &name));
                callback(&RowContext { event: row, reducers: &reducers }, old.as_deref(), &new);
            }),
        )
    }

    /// Runs `callback(ctx, row)` in `frame_tick` for each row inserted into the
    /// cache; `ctx` says why. Remove it with [`Client::remove_callback`].
    pub fn on_insert(&self, mut callback: impl FnMut(&RowContext<'_>, &T) + Send + 'static) -> CallbackId {
        self.on(RowEventKind::Insert, move |ctx, _, row| callback(ctx, row))
    }

    /// Runs `callback(ctx, old, new)` in `frame_tick` for each row updated in the cache.
    pub fn on_update(&self, mut callback: impl FnMut(&RowContext<'_>, &T, &T) + Send + 'static) -> CallbackId {
        self.on(RowEventKind::Update, move |ctx, old, new| {
            if let Some(old) = old {
                callback(ctx, old, new);
            }
        })
    }

    /// Runs `callback(ctx, row)` in `frame_tick` for each row deleted from the cache.
    pub fn on_delete(&self, mut callback: impl FnMut(&RowContext<'_>, &T) + Send + 'static) -> CallbackId {
        self.on(RowEventKind::Delete, move |ctx, _, row| callback(ctx, row))
    }

    /// Removes a callback of this table (or any other: ids are the client's).
    pub fn remove_callback(&self, id: CallbackId) {
        self.registrar.remove(id);
    }
}

/// A switch under way ([`Client::switch_to`]): await it, or poll it each frame.
#[derive(Debug)]
pub struct Switching {
    answer: Option<tokio::sync::oneshot::Receiver<Result<(), SwitchError>>>,
}

impl Switching {
    /// The answer, once there is one (`None` meanwhile, and after it was taken).
    pub fn try_result(&mut self) -> Option<Result<(), SwitchError>> {
        let Some(rx) = &mut self.answer else {
            return None;
        };
        match rx.try_recv() {
            Ok(answer) => {
                self.answer = None;
                Some(answer)
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => None,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                self.answer = None;
                Some(Err(SwitchError::ClientGone))
            }
        }
    }
}

impl std::future::Future for Switching {
    type Output = Result<(), SwitchError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(rx) = &mut self.answer else {
            return std::task::Poll::Ready(Err(SwitchError::ClientGone));
        };
        std::pin::Pin::new(rx).poll(cx).map(|answer| {
            self.answer = None;
            answer.unwrap_or(Err(SwitchError::ClientGone))
        })
    }
}
