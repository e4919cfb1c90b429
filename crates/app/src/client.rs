//! The one way in: [`Client::builder`], and the frame loop's [`Client::frame_tick`].
//!
//! The builder gathers the subsystem configs, the initial subscriptions and the
//! callbacks; [`ClientBuilder::build`] starts the supervisor tree on a
//! background thread it owns (an actix `System` there), and
//! [`ClientBuilder::build_async`] starts it inside the caller's actix system
//! (or, called from plain tokio, on that background thread as well). Both go
//! through the same tree start (`supervisor::start_tree`).
//!
//! On the game's thread, [`Client::frame_tick`] drains the events that arrived
//! since the last tick (see [`crate::events`] for the queue's policy), runs the
//! registered callbacks there, in order, and returns the events for games that
//! prefer polling. It never waits for the network: tables are read from the
//! cache's reader directly, and reducer calls return at once.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use spacelink_auth::{AuthConfig, AuthHandle, CredentialStore, TokenProvider};
use spacelink_connection::lib::Identity;
use spacelink_connection::sats::{de::Deserialize, ser::Serialize};
use spacelink_connection::{Compression, ConnectionConfig, ConnectionHandle, ConnectionState, Listeners, ModuleSchema};
use spacelink_reducers::{ReducerConfig, ReducerHandle, ReducerListeners};
use spacelink_sync::{Shared, SyncConfig, SyncHandle, SyncListeners, TableView};
use spacelink_telemetry::{ExportFormat, TelemetryError, TelemetryHandle, TelemetrySetup};

use crate::calls::{Reducers, ResultCallbacks, Waiting};
use crate::error::ClientError;
use crate::events::{self, Event, EventReceiver, EventSink, RowEventKind};
use crate::prediction_link::{PredictedEntity, PredictionStart, RowsHub};
use crate::supervise::Child;
use crate::supervisor::{start_tree, SpacelinkConfig, Tree, TreeListeners};
use crate::switch::{SwitchError, Switcher};

/// A callback run on the game's thread by [`Client::frame_tick`].
type Callback = Box<dyn FnMut(&Event) + Send>;

/// Callbacks registered since the last tick; the tick adopts them before
/// dispatching, so a callback registered on the game's thread hears every
/// event the next tick drains, and one registered inside a callback does not
/// deadlock.
#[derive(Clone, Default)]
struct Registrar(Arc<Mutex<Vec<Callback>>>);

impl Registrar {
    fn add(&self, callback: Callback) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(callback);
    }

    fn take_into(&self, out: &mut Vec<Callback>) {
        out.append(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl fmt::Debug for Registrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar").finish_non_exhaustive()
    }
}

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

    /// Actor listeners of state sync (e.g. a [`crate::prediction_link::PredictionWiring`]).
    pub fn with_sync_listeners(mut self, listeners: SyncListeners) -> Self {
        self.listeners.sync = listeners;
        self
    }

    /// Runs `callback` on the game's thread, in `frame_tick`, for every event.
    pub fn on_event(self, callback: impl FnMut(&Event) + Send + 'static) -> Self {
        self.registrar.add(Box::new(callback));
        self
    }

    /// Runs `callback` in `frame_tick` each time a session is up and the server told who we are.
    pub fn on_connect(self, callback: impl FnMut(Identity) + Send + 'static) -> Self {
        self.registrar.add(on_connect(callback));
        self
    }

    /// Runs `callback` in `frame_tick` each time a session ends (a change away from `Connected`).
    pub fn on_disconnect(self, callback: impl FnMut(Option<&str>) + Send + 'static) -> Self {
        self.registrar.add(on_disconnect(callback));
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
        config.connection.validate()?;
        Ok(Start { config, listeners: self.listeners, subscriptions: self.subscriptions, registrar: self.registrar })
    }

    /// Starts the tree on a background thread this client owns (an actix
    /// `System` there) and returns once it runs. Blocks the calling thread
    /// while the schema is fetched (unless given; the connection makes its
    /// handshake meanwhile): call it before the game loop.
    pub fn build(self) -> Result<Client, ClientError> {
        let start = self.finish()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = spawn_runtime(start, move |started| {
            let _ = tx.send(started);
        })?;
        let started =
            rx.recv().map_err(|_| ClientError::Runtime("the runtime thread ended before the tree started".into()))?;
        started.map(|(client, system)| client.owning(system, thread))
    }

    /// Starts the tree in the current actix system; called outside one (from
    /// plain tokio, say), it starts it on a background thread as [`build`](Self::build) does.
    pub async fn build_async(self) -> Result<Client, ClientError> {
        let start = self.finish()?;
        if System::try_current().is_some() {
            return start.run().await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = spawn_runtime(start, move |started| {
            let _ = tx.send(started);
        })?;
        let started =
            rx.await.map_err(|_| ClientError::Runtime("the runtime thread ended before the tree started".into()))?;
        started.map(|(client, system)| client.owning(system, thread))
    }
}

fn config_error(field: &'static str, reason: &str) -> ClientError {
    ClientError::Config(spacelink_connection::ConfigError { field, reason: reason.into() })
}

fn on_connect(mut callback: impl FnMut(Identity) + Send + 'static) -> Callback {
    Box::new(move |event| {
        if let Event::Connected { identity, .. } = event {
            callback(*identity);
        }
    })
}

fn on_disconnect(mut callback: impl FnMut(Option<&str>) + Send + 'static) -> Callback {
    Box::new(move |event| {
        if let Event::StateChanged { from: ConnectionState::Connected, to, reason } = event {
            if *to != ConnectionState::Connected {
                callback(reason.as_deref());
            }
        }
    })
}

/// Runs the tree on a thread of its own; `report` hears how the start went.
fn spawn_runtime(
    start: Start,
    report: impl FnOnce(Result<(Client, System), ClientError>) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, ClientError> {
    std::thread::Builder::new()
        .name("spacelink".into())
        .spawn(move || {
            let system = System::new();
            let started = system.block_on(start.run());
            let ok = started.is_ok();
            report(started.map(|client| (client, System::current())));
            if ok {
                if let Err(e) = system.run() {
                    tracing::warn!(error = %e, "the spacelink runtime ended with an error");
                }
            }
        })
        .map_err(|e| ClientError::Runtime(e.to_string()))
}

/// What the builder hands to the tree start.
struct Start {
    config: SpacelinkConfig,
    listeners: TreeListeners,
    subscriptions: Vec<Vec<String>>,
    registrar: Registrar,
}

impl Start {
    /// Inside an actix system: the event sink, the tree, the initial subscriptions.
    async fn run(self) -> Result<Client, ClientError> {
        let Start { mut config, mut listeners, subscriptions, registrar } = self;
        let (sender, receiver) = events::queue();
        let sink = EventSink { events: sender.clone() }.start();
        let rows_hub = RowsHub::default().start();
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
        let tree = start_tree(config, listeners).await?;
        for queries in subscriptions {
            let sync = tree.sync.clone();
            // Its outcome reaches the game as a subscription event.
            actix::spawn(async move {
                let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
                if let Err(e) = sync.subscribe(&queries).await {
                    tracing::warn!(error = %e, "an initial subscription failed");
                }
            });
        }
        let result_callbacks = ResultCallbacks::default();
        Ok(Client {
            sink,
            reducers: Reducers::new(tree.reducers.clone(), sender, result_callbacks.clone()),
            result_callbacks,
            waiting: Waiting::default(),
            tree,
            events: receiver,
            frame: Vec::new(),
            callbacks: Vec::new(),
            registrar,
            runtime: None,
            arbiter: actix::Arbiter::current(),
            runtime_thread: std::thread::current().id(),
            rows_hub,
        })
    }
}

/// The background thread a client built with [`ClientBuilder::build`] owns.
#[derive(Debug)]
struct Runtime {
    system: System,
    _thread: std::thread::JoinHandle<()>,
}

/// A running spacelink, held by the game.
///
/// ```no_run
/// # fn main() -> Result<(), spacelink::ClientError> {
/// let mut client = spacelink::Client::builder()
///     .with_uri("http://127.0.0.1:3000")
///     .with_database("guildmaster")
///     .subscribe(&["SELECT * FROM player"])
///     .on_connect(|identity| println!("connected as {identity}"))
///     .build()?;
/// loop {
///     for event in client.frame_tick() {
///         println!("{event:?}");
///     }
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
    waiting: Waiting,
    frame: Vec<Event>,
    callbacks: Vec<Callback>,
    registrar: Registrar,
    runtime: Option<Runtime>,
    /// Where the actors run (work the game starts from its thread goes there).
    arbiter: actix::ArbiterHandle,
    /// The thread of that arbiter.
    runtime_thread: std::thread::ThreadId,
    /// Hands row changes to the links of predictions started later.
    rows_hub: Addr<RowsHub>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("pending_events", &self.events.pending())
            .field("callbacks", &self.callbacks.len())
            .field("owns_runtime", &self.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The one way to start a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    fn owning(mut self, system: System, thread: std::thread::JoinHandle<()>) -> Self {
        self.runtime = Some(Runtime { system, _thread: thread });
        self
    }

    /// Drains the events that arrived since the last tick (no more: one
    /// frame's work is bounded), runs the registered callbacks on them in
    /// order, here, and returns them. Never blocks.
    pub fn frame_tick(&mut self) -> &[Event] {
        self.frame.clear();
        self.registrar.take_into(&mut self.callbacks);
        self.waiting.adopt(&self.result_callbacks);
        self.events.drain_into(&mut self.frame);
        for event in &self.frame {
            if let Event::ReducerResult { ticket, result, .. } = event {
                self.waiting.dispatch(*ticket, result);
            }
            for callback in &mut self.callbacks {
                callback(event);
            }
        }
        self.waiting.sweep_ready();
        &self.frame
    }

    /// How many queue entries wait for the next tick (a transaction's rows are one entry).
    pub fn pending_events(&self) -> usize {
        self.events.pending()
    }

    /// Runs `callback` in `frame_tick` for every event.
    pub fn on_event(&self, callback: impl FnMut(&Event) + Send + 'static) {
        self.registrar.add(Box::new(callback));
    }

    /// Runs `callback` in `frame_tick` each time a session is up.
    pub fn on_connect(&self, callback: impl FnMut(Identity) + Send + 'static) {
        self.registrar.add(on_connect(callback));
    }

    /// Runs `callback` in `frame_tick` each time a session ends.
    pub fn on_disconnect(&self, callback: impl FnMut(Option<&str>) + Send + 'static) {
        self.registrar.add(on_disconnect(callback));
    }

    /// A typed handle to table `name`, for a row type deriving the SATS
    /// `Deserialize` (as generated row types do).
    pub fn table<T: for<'de> Deserialize<'de> + Send + Sync + 'static>(&self, name: &str) -> Table<T> {
        // The view shares what was derived of the table when the tree started.
        let view = self.tree.sync.table::<T>(name);
        Table {
            name: view.name().clone(),
            view,
            schema: self.tree.schema.clone(),
            registrar: self.registrar.clone(),
            _row: PhantomData,
        }
    }

    /// Listeners for a prediction (`PredictionWiring::start`), so that its
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

    /// State synchronisation: subscriptions, interest, the cache.
    pub fn sync(&self) -> &SyncHandle {
        &self.tree.sync
    }

    /// The performance monitor, when configured.
    pub fn telemetry(&self) -> Option<&TelemetryHandle> {
        self.tree.telemetry.as_ref()
    }

    /// The module's schema.
    pub fn schema(&self) -> &Arc<ModuleSchema> {
        &self.tree.schema
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
            sync: self.tree.sync.clone(),
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
        Switcher::new(self.tree.connection.clone(), self.tree.auth.clone(), self.tree.schema.clone())
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
    /// [`ClientBuilder::build`] also ends its runtime thread soon after. Never blocks.
    pub fn shutdown(&self) {
        self.tree.shutdown();
        if let Some(runtime) = &self.runtime {
            // Give the children a moment to close the session cleanly.
            runtime.system.arbiter().spawn(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                System::current().stop();
            });
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.runtime.is_some() {
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
    schema: &ModuleSchema,
    name: &str,
) -> Option<Typed<'r, T>> {
    if let Some(v) = row.get::<T>() {
        return Some(Typed::Shared(v));
    }
    match schema.table(name)?.decode_as::<T>(row.bytes()) {
        Ok(v) => Some(Typed::Owned(v)),
        Err(e) => {
            metrics::counter!("spacelink_client_row_decode_errors_total").increment(1);
            tracing::warn!(table = %name, error = %e, "a row does not decode as the registered type");
            None
        }
    }
}

/// A typed handle to one table of the cache: reads straight from the cache's
/// reader (no round trip), callbacks run by [`Client::frame_tick`].
///
/// Generated bindings wrap it, one per table.
pub struct Table<T> {
    /// The cache's typed reads of the table (its columns, key and layout derived once per client).
    view: TableView<T>,
    schema: Arc<ModuleSchema>,
    name: Arc<str>,
    registrar: Registrar,
    _row: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    /// A few reference counts: keep a handle, or make one per frame, alike.
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
            schema: self.schema.clone(),
            name: self.name.clone(),
            registrar: self.registrar.clone(),
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

    /// Every cached row: for the table's registered type (see
    /// [`ClientBuilder::with_row_types`]) the cache's own decoded rows, shared,
    /// else each decoded now. The iterator holds one transaction's state of
    /// the table and walks it: nothing is collected.
    pub fn iter(&self) -> impl Iterator<Item = Shared<T>> {
        self.view.iter()
    }

    /// How many rows are cached.
    pub fn count(&self) -> usize {
        self.view.count()
    }

    /// The row whose primary key is `key` (a value of the key's type).
    pub fn find_by_key<K: Serialize>(&self, key: &K) -> Option<Shared<T>> {
        self.view.get(key)
    }

    /// The cached row whose column `column` equals `value` (the official
    /// SDK's `conn.db.t().col().find(&v)`): the primary key and every unique
    /// column are one hash lookup in the cache's indexes; another column is
    /// compared as bytes, read from each row without decoding it, and the
    /// first match is returned. Only the row found is decoded (for a type not
    /// registered). `None` for an unknown column.
    pub fn find<K: Serialize>(&self, column: &str, value: &K) -> Option<Shared<T>> {
        self.view.find(column, value)
    }

    fn on(&self, kind: RowEventKind, mut callback: impl FnMut(Option<&T>, &T) + Send + 'static) {
        let name = self.name.clone();
        let schema = self.schema.clone();
        self.registrar.add(Box::new(move |event| {
            let Event::Row(row) = event else { return };
            if row.kind != kind || row.table != name {
                return;
            }
            // The registered type: the cache's decoded row, shared. Another
            // type: decoded here, once per callback.
            let Some(new) = typed::<T>(&row.row, &schema, &name) else { return };
            let old = row.old.as_ref().and_then(|r| typed::<T>(r, &schema, &name));
            callback(old.as_deref(), &new);
        }));
    }

    /// Runs `callback` in `frame_tick` for each row inserted into the cache.
    pub fn on_insert(&self, mut callback: impl FnMut(&T) + Send + 'static) {
        self.on(RowEventKind::Insert, move |_, row| callback(row));
    }

    /// Runs `callback(old, new)` in `frame_tick` for each row updated in the cache.
    pub fn on_update(&self, mut callback: impl FnMut(&T, &T) + Send + 'static) {
        self.on(RowEventKind::Update, move |old, new| {
            if let Some(old) = old {
                callback(old, new);
            }
        });
    }

    /// Runs `callback` in `frame_tick` for each row deleted from the cache.
    pub fn on_delete(&self, mut callback: impl FnMut(&T) + Send + 'static) {
        self.on(RowEventKind::Delete, move |_, row| callback(row));
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
