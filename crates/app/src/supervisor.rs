//! The root of the supervisor tree, and the tree's start in two stages.
//!
//! [`start_children`] starts, at once and without the network, every child
//! but state sync: telemetry (when configured), the connection (under its
//! `Supervise`: its restart is the reconnection), auth (the stored or given
//! token first) and the reducer client, and the sync actor's mailbox, which
//! takes what the connection delivers and the game's subscriptions before the
//! actor runs. [`SyncStart::run`] starts state sync on that mailbox once the
//! module's schema is known. Every address exists before its actor, so each
//! child is wired with the `Recipient`s it is given here, never with another
//! crate's `Addr`, and a test can start any child as a fake.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use spacelink_auth::{
    AuthActor, AuthConfig, AuthHandle, AuthListeners, AuthSetup, CredentialKey, CredentialStore, FallbackStore,
    MemoryStore, Token, TokenProvider,
};
use spacelink_connection::{
    ConnectionActor, ConnectionConfig, ConnectionHandle, ConnectionState, Listeners, ModuleSchema, StateChanged,
};
use spacelink_reducers::{ReducerActor, ReducerConfig, ReducerHandle, ReducerListeners};
use spacelink_sync::{
    CacheReader, RowTypes, SubscriptionIds, SyncActor, SyncConfig, SyncHandle, SyncListeners, SyncMailbox, TableDelta,
};

use crate::error::ClientError;
use crate::supervise::{self, Child, ChildControl, OnShutdown, StopFlag, SupervisionConfig};
use spacelink_telemetry::{ExportFormat, TelemetryActor, TelemetryError, TelemetryHandle, TelemetrySetup};

use crate::store::FileQueueStore;

/// Everything a spacelink needs to start.
#[derive(Debug, Clone)]
pub struct SpacelinkConfig {
    /// The connection.
    pub connection: ConnectionConfig,
    /// The reducer client.
    pub reducers: ReducerConfig,
    /// Keep unanswered reducer calls in this file across app restarts (default: none).
    pub queue_file: Option<PathBuf>,
    /// State synchronisation.
    pub sync: SyncConfig,
    /// The Rust types of the game's tables: their rows are decoded once, as
    /// they arrive, and shared by the cache and every change (default: none,
    /// every row a dynamic value decoded on first use).
    pub row_types: RowTypes,
    /// The module's schema, if already known (default: fetched at start,
    /// bounded and retried, by [`ModuleSchema::fetch_for`]).
    pub schema: Option<Arc<ModuleSchema>>,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Where credentials are kept between runs (default: memory only; a game
    /// sets [`crate::credentials::default_store`]: the OS keyring or an owner-only file).
    pub credentials: Option<Arc<dyn CredentialStore>>,
    /// Where new tokens come from before the current one expires (default: none;
    /// a server-issued token never expires).
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// Who hears the auth events.
    pub auth_listeners: AuthListeners,
    /// How each child of the tree is restarted when it stops.
    pub supervision: SupervisionConfig,
    /// The performance monitor: its settings and who hears its stats and
    /// alerts (default: none). It installs the process's `metrics` recorder,
    /// so one spacelink per process can have it.
    pub telemetry: Option<TelemetrySetup>,
    /// Keep the cache on disk between launches (default: none; see
    /// [`crate::disk_cache`]).
    pub disk_cache: Option<crate::disk_cache::DiskCacheConfig>,
    /// Whether the game reads its events with `Client::frame_tick` (default
    /// true). A game that hears everything through actor listeners
    /// (`with_listeners`, `with_sync_listeners`) and never ticks sets it
    /// false: nothing is then queued for a frame that never comes (no row
    /// change, and the rows it holds, kept in memory).
    pub frame_events: bool,
}

impl SpacelinkConfig {
    /// Defaults around a connection configuration.
    pub fn new(connection: ConnectionConfig) -> Self {
        Self {
            connection,
            reducers: ReducerConfig::default(),
            queue_file: None,
            sync: SyncConfig::default(),
            row_types: RowTypes::new(),
            schema: None,
            auth: AuthConfig::default(),
            credentials: None,
            token_provider: None,
            auth_listeners: AuthListeners::default(),
            supervision: SupervisionConfig::default(),
            telemetry: None,
            disk_cache: None,
            frame_events: true,
        }
    }
}

/// The supervisor actor: starts the children and watches their state.
#[derive(Debug)]
pub struct Supervisor {
    connection: Option<ConnectionHandle>,
    reducers: Option<ReducerHandle>,
    telemetry: Option<TelemetryHandle>,
    /// The sync actor's place on the shared sync pool, left with the tree.
    sync_thread: Option<crate::runtime::Placement>,
    last_state: ConnectionState,
}

/// What starts once the module's schema is known: state sync, and with it
/// the cache the game's tables read.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    /// State synchronisation.
    pub(crate) sync: SyncHandle,
    /// The module's schema.
    pub(crate) schema: Arc<ModuleSchema>,
}

/// The running tree: the supervisor and the handles of its children.
///
/// Built in two stages ([`start_children`], then [`SyncStart::run`] once the
/// schema is known); a client's `SchemaStage` runs the second when the schema comes. A
/// game holds a [`crate::Client`].
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// The supervisor.
    pub(crate) supervisor: Addr<Supervisor>,
    /// The connection.
    pub(crate) connection: ConnectionHandle,
    /// The reducer client.
    pub(crate) reducers: ReducerHandle,
    /// Authentication: identity, token, refresh.
    pub(crate) auth: AuthHandle,
    /// State sync and the schema, once the schema is known.
    pub(crate) ready: Arc<std::sync::OnceLock<Ready>>,
    /// The sync actor's address: its mailbox takes requests before it runs.
    pub(crate) sync_addr: Addr<SyncActor>,
    /// Where query set ids come from (shared with the sync actor).
    pub(crate) subscription_ids: SubscriptionIds,
    /// The server and database the client points at, and its connection id there.
    pub(crate) target: Arc<std::sync::Mutex<crate::switch::Target>>,
    /// The performance monitor (present when configured).
    pub(crate) telemetry: Option<TelemetryHandle>,
    /// Raised by `shutdown`: nothing restarts after it.
    pub(crate) stop: StopFlag,
    /// Each child's supervision.
    pub(crate) controls: Controls,
    /// How the predictions the game starts are restarted.
    pub(crate) prediction_policy: crate::supervise::RestartPolicy,
}

impl Controls {
    /// The supervision of `child` (every prediction's, for [`Child::Prediction`]).
    pub(crate) fn of(&self, child: Child) -> Vec<Arc<ChildControl>> {
        let one = match child {
            Child::Connection => self.connection.as_ref(),
            Child::Sync => self.sync_slot.get(),
            Child::Reducers => self.reducers.as_ref(),
            Child::Auth => self.auth.as_ref(),
            Child::Telemetry => self.telemetry.as_ref(),
            Child::Prediction => {
                return self.predictions.lock().unwrap_or_else(|e| e.into_inner()).clone();
            }
        };
        one.into_iter().cloned().collect()
    }
}

/// The supervision of each child (absent only if the tree failed to start).
#[derive(Debug, Clone, Default)]
pub(crate) struct Controls {
    pub(crate) connection: Option<Arc<ChildControl>>,
    /// Set once state sync starts (when the schema is known).
    pub(crate) sync_slot: Arc<std::sync::OnceLock<Arc<ChildControl>>>,
    pub(crate) reducers: Option<Arc<ChildControl>>,
    pub(crate) auth: Option<Arc<ChildControl>>,
    pub(crate) telemetry: Option<Arc<ChildControl>>,
    /// Added to as the game starts predictions.
    pub(crate) predictions: Arc<std::sync::Mutex<Vec<Arc<ChildControl>>>>,
}

/// Who hears the tree's children besides the client's own event queue.
#[derive(Debug, Default)]
pub(crate) struct TreeListeners {
    pub(crate) connection: Listeners,
    pub(crate) reducers: ReducerListeners,
    pub(crate) sync: SyncListeners,
}

/// Checks the settings once, before anything starts.
pub(crate) fn validate(config: &SpacelinkConfig) -> Result<(), ClientError> {
    config.connection.validate()?;
    if config.reducers.max_in_flight >= config.connection.outbound_capacity {
        // A full socket queue could refuse a call while later ones get through.
        return Err(ClientError::Config(spacelink_connection::ConfigError {
            field: "reducers.max_in_flight",
            reason: format!(
                "{} must be below the connection's outbound_capacity ({})",
                config.reducers.max_in_flight, config.connection.outbound_capacity
            ),
        }));
    }
    Ok(())
}

/// Starts state sync on a schema, its cache first loaded with restored rows.
type StartSync = Box<dyn FnOnce(Arc<ModuleSchema>, Option<&[TableDelta]>) -> Ready>;

/// The second stage: state sync, started once the schema is known.
pub(crate) struct SyncStart {
    run: StartSync,
    ready: Arc<std::sync::OnceLock<Ready>>,
    stop: StopFlag,
    supervisor: Addr<Supervisor>,
}

impl std::fmt::Debug for SyncStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStart").finish_non_exhaustive()
    }
}

impl SyncStart {
    /// Starts state sync with `schema`, its cache first loaded with the rows
    /// of a restored image (`restored`, see [`crate::disk_cache`]); the
    /// tree's tables read its cache from now on. Returns a reader of it.
    pub(crate) fn run(self, schema: Arc<ModuleSchema>, restored: Option<&[TableDelta]>) -> CacheReader {
        let ready = (self.run)(schema, restored);
        let reader = ready.sync.cache().clone();
        let _ = self.ready.set(ready);
        reader
    }

    /// Stops what was started (the schema could not be had).
    pub(crate) fn abandon(self) {
        self.stop.raise();
        self.supervisor.do_send(StopTree);
    }
}

/// The first stage: every child but state sync, at once (no network: actors
/// and the stored token), for a configuration [`validate`] accepted (the
/// builder checks it once, before any thread starts). The reducer and sync actors exist (as addresses)
/// before the connection, so that each can be given the other's recipients;
/// the sync actor starts on its mailbox in [`SyncStart::run`], and what reaches
/// its mailbox meanwhile (the connection's messages, the game's subscriptions) waits there.
pub(crate) fn start_children(
    mut config: SpacelinkConfig,
    listeners: TreeListeners,
) -> Result<(Tree, SyncStart), ClientError> {
    let target = crate::switch::Target {
        server_url: config.connection.server_url.clone(),
        database: config.connection.database.clone(),
        connection_id: *config.connection.connection_id.get_or_insert_with(crate::client::new_connection_id),
    };
    let TreeListeners { connection: mut listeners, reducers: reducer_listeners, sync: sync_listeners } = listeners;
    // Authentication first: the token the connection starts with.
    let key = CredentialKey::new(&config.connection.server_url, &config.connection.database);
    let primary = config.credentials.clone().unwrap_or_else(|| Arc::new(MemoryStore::default()));
    let mut store = FallbackStore::new(primary);
    let auth_token = spacelink_auth::initial_token(&mut store, &key, config.connection.token.take().map(Token::new));
    config.connection.token = auth_token.as_ref().map(|t| t.expose().to_string());
    // The monitor first, so that its recorder hears the first connection.
    let stop = StopFlag::default();
    let mut controls = Controls::default();
    let prediction_policy = config.supervision.prediction.clone();
    let telemetry = match config.telemetry {
        Some(setup) => {
            let policy = config.supervision.telemetry.clone();
            let started = TelemetryActor::start_in(setup.config, setup.listeners, |ctx, actor| {
                let on_shutdown = OnShutdown::StopsItself;
                controls.telemetry = Some(supervise::start(ctx, actor, "telemetry", policy, stop.clone(), on_shutdown));
            });
            Some(started.map_err(|e| {
                ClientError::Config(spacelink_connection::ConfigError { field: "telemetry", reason: e.to_string() })
            })?)
        }
        None => None,
    };
    // Every address exists before its actor runs, so that each child can be
    // given the others' recipients: the supervisor's, auth's, the reducer
    // actor's and the sync actor's mailbox (state sync runs on the shared sync
    // pool, not with the other actors: applying a large transaction never
    // holds up the heartbeats, and it uses the other core).
    let sync_place = crate::runtime::place_sync()?;
    let sync_arbiter = sync_place.arbiter().clone();
    let supervisor_ctx = Context::<Supervisor>::new();
    let supervisor = supervisor_ctx.address();
    let auth_ctx = Context::<AuthActor>::new();
    let auth_addr = auth_ctx.address();
    let reducer_ctx = Context::<ReducerActor>::new();
    let reducer_addr = reducer_ctx.address();
    let sync_mailbox = SyncMailbox::new();
    let sync_addr = sync_mailbox.address();
    listeners.identities.push(auth_addr.clone().recipient());
    listeners.resilience.push(auth_addr.clone().recipient());
    listeners.states.push(auth_addr.clone().recipient());
    listeners.states.push(supervisor.clone().recipient());
    listeners.messages.push(reducer_addr.clone().recipient());
    listeners.states.push(reducer_addr.clone().recipient());
    listeners.identities.push(reducer_addr.clone().recipient());
    // Only what carries rows: a reducer call's empty update does not wake its thread.
    listeners.row_messages.push(sync_addr.clone().recipient());
    listeners.states.push(sync_addr.clone().recipient());
    let supervision = config.supervision.clone();
    let mut connection_control = None;
    let started = ConnectionActor::start_in(config.connection, listeners, |ctx, actor| {
        let policy = supervision.connection.clone();
        connection_control =
            Some(supervise::start(ctx, actor, "connection", policy, stop.clone(), OnShutdown::StopsItself));
    });
    let root = |connection: Option<ConnectionHandle>, reducers: Option<ReducerHandle>| Supervisor {
        connection,
        reducers,
        telemetry: telemetry.clone(),
        sync_thread: Some(sync_place),
        last_state: ConnectionState::Disconnected,
    };
    let connection = match started {
        Ok(connection) => connection,
        Err(e) => {
            // Stop what did start (the monitor, the sync thread).
            stop.raise();
            supervisor_ctx.run(root(None, None)).do_send(StopTree);
            return Err(e.into());
        }
    };
    controls.connection = connection_control;
    let setup = AuthSetup {
        config: config.auth,
        key,
        store,
        provider: config.token_provider,
        connection: connection.token_sink(),
        listeners: config.auth_listeners,
    };
    let policy = supervision.auth.clone();
    let actor = AuthActor::new(setup, auth_token);
    controls.auth = Some(supervise::start(auth_ctx, actor, "auth", policy, stop.clone(), OnShutdown::Stopped));
    let auth = AuthHandle::new(auth_addr);
    let queue = config.queue_file.map(|p| Box::new(FileQueueStore::new(p)) as _);
    let max_args_size = config.reducers.max_args_size;
    let actor = ReducerActor::new(config.reducers, connection.sender(), reducer_listeners, queue)
        .with_request_ids(connection.request_ids());
    let policy = supervision.reducers.clone();
    controls.reducers =
        Some(supervise::start(reducer_ctx, actor, "reducers", policy, stop.clone(), OnShutdown::StopsItself));
    let reducers = ReducerHandle::new(reducer_addr).with_max_args_size(max_args_size);
    supervisor_ctx.run(root(Some(connection.clone()), Some(reducers.clone())));
    let (sync_config, row_types, sender) = (config.sync, config.row_types, connection.sender());
    let request_ids = connection.request_ids();
    let sync_policy = config.supervision.sync.clone();
    let (tree_stop, tree_supervisor) = (stop.clone(), supervisor.clone());
    let ready = Arc::new(std::sync::OnceLock::new());
    let subscription_ids = SubscriptionIds::default();
    let tree = Tree {
        supervisor,
        connection,
        reducers: reducers.clone(),
        auth,
        ready: ready.clone(),
        sync_addr: sync_addr.clone(),
        subscription_ids: subscription_ids.clone(),
        target: Arc::new(std::sync::Mutex::new(target)),
        telemetry,
        stop: stop.clone(),
        controls: controls.clone(),
        prediction_policy,
    };
    let sync_controls = controls.sync_slot.clone();
    let run = move |schema: Arc<ModuleSchema>, restored: Option<&[TableDelta]>| {
        let mut actor = SyncActor::with_types(sync_config, schema.clone(), row_types, sender, sync_listeners)
            .with_subscription_ids(subscription_ids)
            .with_request_ids(request_ids);
        if let Some(tables) = restored {
            actor.restore(tables);
        }
        let reader = actor.cache().reader();
        let control = Arc::new(ChildControl::default());
        let (child_control, child_stop) = (control.clone(), stop.clone());
        let started = sync_mailbox.run_on(&sync_arbiter, move |ctx| {
            supervise::start_with(ctx, actor, "sync", sync_policy, child_stop, OnShutdown::Stopped, child_control);
        });
        if !started {
            tracing::error!("the sync actor's thread did not start");
        }
        let _ = sync_controls.set(control);
        let sync = SyncHandle::new(sync_addr, reader, schema.clone());
        reducers.set_schema(schema.clone());
        Ready { sync, schema }
    };
    let start = SyncStart { run: Box::new(run), ready, stop: tree_stop, supervisor: tree_supervisor };
    Ok((tree, start))
}

impl Tree {
    /// Writes a snapshot of the performance statistics (the configured window
    /// and every interval kept) to `path`.
    pub(crate) async fn export_stats(
        &self,
        path: &std::path::Path,
        format: ExportFormat,
    ) -> Result<(), TelemetryError> {
        let telemetry = self
            .telemetry
            .as_ref()
            .ok_or(TelemetryError::Config { field: "telemetry", reason: "not configured in SpacelinkConfig".into() })?;
        let snapshot = telemetry.snapshot().await?;
        let file =
            std::fs::File::create(path).map_err(|e| TelemetryError::Export(format!("{}: {e}", path.display())))?;
        let mut out = std::io::BufWriter::new(file);
        snapshot.write(format, &mut out)?;
        std::io::Write::flush(&mut out).map_err(|e| TelemetryError::Export(format!("{}: {e}", path.display())))
    }

    /// Closes the connection and stops the tree for good: the stop flag goes
    /// up first, so that no child stopping from now on is restarted.
    pub(crate) fn shutdown(&self) {
        self.stop.raise();
        self.supervisor.do_send(StopTree);
    }
}

/// Stop the tree: shut the children down, then the supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopTree;

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _ctx: &mut Self::Context) {
        self.last_state = msg.to;
        if msg.to == ConnectionState::Failed {
            tracing::warn!(reason = msg.reason.as_deref(), "connection failed; waiting for an explicit reconnect");
        }
    }
}

impl Handler<StopTree> for Supervisor {
    type Result = ();

    fn handle(&mut self, _msg: StopTree, ctx: &mut Self::Context) {
        if let Some(reducers) = &self.reducers {
            reducers.shutdown();
        }
        if let Some(connection) = &self.connection {
            connection.shutdown();
        }
        if let Some(telemetry) = &self.telemetry {
            telemetry.shutdown();
        }
        // The sync actor is stopped by its supervisor (the stop flag is up);
        // its thread serves other clients and goes on.
        drop(self.sync_thread.take());
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_could_reorder_calls_are_refused() {
        let mut config = SpacelinkConfig::new(ConnectionConfig::new("http://127.0.0.1:9", "guildmaster"));
        config.reducers.max_in_flight = config.connection.outbound_capacity;
        let err = validate(&config).unwrap_err();
        assert!(err.to_string().contains("reducers.max_in_flight"), "{err}");
    }

    /// A fake state sync behind the same messages as the real one: it hears the
    /// connection's state changes and tells `RowsChanged` (one row per session).
    struct FakeSync {
        listeners: SyncListeners,
    }

    impl Actor for FakeSync {
        type Context = Context<Self>;
    }

    impl Supervised for FakeSync {}

    impl Handler<StateChanged> for FakeSync {
        type Result = ();
        fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
            if msg.to == ConnectionState::Connected {
                let row = bytes::Bytes::from(msg.generation.to_le_bytes().to_vec());
                let key = spacelink_sync::RowKey::from(row.clone());
                let changes = vec![spacelink_sync::RowChange::Insert { table: "t".into(), key, row: row.into() }];
                for r in &self.listeners.changes {
                    r.do_send(spacelink_sync::RowsChanged {
                        generation: msg.generation,
                        changes: Arc::new(changes.clone()),
                        reconciled: false,
                        cause: spacelink_sync::Cause::UnknownTransaction,
                    });
                }
            }
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{what}: never");
    }

    #[actix::test]
    async fn the_tree_wiring_runs_on_a_fake_connection_and_a_fake_sync_behind_the_same_messages() {
        use spacelink_connection::testing::{ScriptStep, ScriptedConnection};

        use crate::calls::{Reducers, ResultCallbacks};
        use crate::events::{self, Event, EventSink};
        use crate::supervise::RestartPolicy;

        let (events, mut queue) = events::queue();
        let sink = EventSink { events: events.clone(), status: Default::default(), requested: Arc::default() }.start();
        let stop = StopFlag::default();
        // The fake sync, supervised as the real one is.
        let sync_ctx = Context::<FakeSync>::new();
        let sync_addr = sync_ctx.address();
        let fake_sync =
            FakeSync { listeners: SyncListeners { changes: vec![sink.clone().recipient()], ..Default::default() } };
        let sync =
            supervise::start(sync_ctx, fake_sync, "sync", RestartPolicy::default(), stop.clone(), OnShutdown::Stopped);
        // The real reducer client, wired to the fake connection by the same recipients.
        let reducer_ctx = Context::<ReducerActor>::new();
        let reducer_addr = reducer_ctx.address();
        let listeners = Listeners {
            states: vec![sink.clone().recipient(), sync_addr.clone().recipient(), reducer_addr.clone().recipient()],
            messages: vec![reducer_addr.clone().recipient()],
            ..Default::default()
        };
        let script =
            vec![ScriptStep::State(ConnectionState::Connecting), ScriptStep::State(ConnectionState::Connected)];
        let fake = ScriptedConnection::new(script, listeners, 1);
        let sent = fake.sent();
        let fake = fake.start();
        let actor = ReducerActor::new(ReducerConfig::default(), fake.recipient(), ReducerListeners::default(), None);
        let policy = RestartPolicy::default();
        supervise::start(reducer_ctx, actor, "reducers", policy, stop.clone(), OnShutdown::StopsItself);
        let reducers =
            Reducers::new(ReducerHandle::new(reducer_addr), events.clone(), ResultCallbacks::default(), Arc::default());

        // What the game hears: the fake connection's states, the fake sync's rows.
        let mut seen = Vec::new();
        until("connected and a row", || {
            queue.drain_into(&mut seen);
            seen.iter().any(|e| matches!(e, Event::StateChanged { to: ConnectionState::Connected, .. }))
                && seen.iter().any(|e| matches!(e, Event::Row(r) if r.row[0] == 1))
        })
        .await;
        // A call goes to the fake connection as the same `SendMessage`.
        let _call = reducers.call_bsatn("anything", bytes::Bytes::new());
        until("the call on the fake socket", || {
            sent.lock().is_ok_and(|s| s.iter().any(|m| matches!(m, spacelink_connection::ws::ClientMessage::CallReducer(c) if &*c.reducer == "anything")))
        })
        .await;
        // The fake sync fails, comes back and goes on hearing sessions.
        sync.kill();
        until("the fake sync restarted", || sync.restarts() == 1).await;
        sync_addr.do_send(StateChanged {
            generation: 2,
            from: ConnectionState::Reconnecting,
            to: ConnectionState::Connected,
            reason: None,
            retry_in: None,
        });
        until("a row of session 2", || {
            queue.drain_into(&mut seen);
            seen.iter().any(|e| matches!(e, Event::Row(r) if r.row[0] == 2))
        })
        .await;
        stop.raise();
        until("the fake sync stopped for good", || !sync_addr.connected()).await;
    }
}
