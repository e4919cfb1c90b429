//! The root of the supervisor tree.
//!
//! Today it has one child, the connection actor, which runs under an actix
//! `Supervisor`: when the connection fails it stops, and its restart (after the
//! retry policy's delay) is the reconnection. The auth actor starts
//! before the connection and hands it a token (stored, given or none); the
//! sync and reducer actors start after it and listen to it. Every child is wired with the
//! `Recipient`s it is given here, never with another crate's `Addr`, so a test
//! can start any child as a fake.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use spacelink_auth::{
    AuthActor, AuthConfig, AuthHandle, AuthListeners, AuthSetup, CredentialKey, CredentialStore, FallbackStore,
    MemoryStore, Token, TokenProvider,
};
use spacelink_connection::{
    ConnectionActor, ConnectionConfig, ConnectionError, ConnectionHandle, ConnectionState, Listeners, ModuleSchema,
    StateChanged,
};
use spacelink_reducers::{ReducerActor, ReducerConfig, ReducerHandle, ReducerListeners};
use spacelink_sync::{RowTypes, SyncActor, SyncConfig, SyncHandle, SyncListeners};
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
    /// Fetch the module's schema at start, so that reducer calls are checked
    /// against it before sending (default: yes).
    pub fetch_schema: bool,
    /// State synchronisation.
    pub sync: SyncConfig,
    /// The Rust types of the game's tables: their rows are decoded once, as
    /// they arrive, and shared by the cache and every change (default: none,
    /// every row a dynamic value decoded on first use).
    pub row_types: RowTypes,
    /// The module's schema, if already known: needed for state synchronisation
    /// (rows are keyed by their primary keys). [`Spacelink::connect`] fetches it.
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
    /// The performance monitor: its settings and who hears its stats and
    /// alerts (default: none). It installs the process's `metrics` recorder,
    /// so one spacelink per process can have it.
    pub telemetry: Option<TelemetrySetup>,
}

impl SpacelinkConfig {
    /// Defaults around a connection configuration.
    pub fn new(connection: ConnectionConfig) -> Self {
        Self {
            connection,
            reducers: ReducerConfig::default(),
            queue_file: None,
            fetch_schema: true,
            sync: SyncConfig::default(),
            row_types: RowTypes::new(),
            schema: None,
            auth: AuthConfig::default(),
            credentials: None,
            token_provider: None,
            auth_listeners: AuthListeners::default(),
            telemetry: None,
        }
    }
}

/// The supervisor actor: starts the children and watches their state.
#[derive(Debug)]
pub struct Supervisor {
    connection: Option<ConnectionHandle>,
    reducers: Option<ReducerHandle>,
    telemetry: Option<TelemetryHandle>,
    last_state: ConnectionState,
}

/// A running spacelink: the supervisor and the handles of its children.
#[derive(Debug, Clone)]
pub struct Spacelink {
    /// The supervisor.
    pub supervisor: Addr<Supervisor>,
    /// The connection.
    pub connection: ConnectionHandle,
    /// The reducer client.
    pub reducers: ReducerHandle,
    /// Authentication: identity, token, refresh.
    pub auth: AuthHandle,
    /// State synchronisation (present when the schema was known at start, as
    /// with [`Spacelink::connect`]).
    pub sync: Option<SyncHandle>,
    /// The performance monitor (present when configured).
    pub telemetry: Option<TelemetryHandle>,
}

impl Spacelink {
    /// Starts the supervisor tree with default settings around `config` and
    /// connects. Call inside an actix system.
    ///
    /// `listeners` hear everything the connection tells (server messages, state
    /// changes, identities); the supervisor and the reducer client listen too.
    pub fn start(config: ConnectionConfig, listeners: Listeners) -> Result<Self, ConnectionError> {
        Self::start_with(SpacelinkConfig::new(config), listeners, ReducerListeners::default())
    }

    /// Fetches the module's schema, then starts the whole tree (connection,
    /// reducer client and state synchronisation). Call inside an actix system.
    pub async fn connect(
        mut config: SpacelinkConfig,
        listeners: Listeners,
        reducer_listeners: ReducerListeners,
        sync_listeners: SyncListeners,
    ) -> Result<Self, ConnectionError> {
        config.connection.validate()?;
        if config.schema.is_none() {
            // Bounded (timeout, size, type limits) and retried on the connection's backoff.
            let schema = ModuleSchema::fetch_for(&config.connection).await?;
            config.schema = Some(Arc::new(schema));
        }
        config.fetch_schema = false;
        Self::start_all(config, listeners, reducer_listeners, sync_listeners)
    }

    /// Starts the supervisor tree: the reducer client, then the connection wired to it.
    pub fn start_with(
        config: SpacelinkConfig,
        listeners: Listeners,
        reducer_listeners: ReducerListeners,
    ) -> Result<Self, ConnectionError> {
        Self::start_all(config, listeners, reducer_listeners, SyncListeners::default())
    }

    /// Starts every child: the reducer and sync actors exist (as addresses)
    /// before the connection, so that each can be given the other's recipients.
    fn start_all(
        mut config: SpacelinkConfig,
        mut listeners: Listeners,
        reducer_listeners: ReducerListeners,
        sync_listeners: SyncListeners,
    ) -> Result<Self, ConnectionError> {
        config.connection.validate()?;
        // Authentication first: the token the connection starts with.
        let key = CredentialKey::new(&config.connection.server_url, &config.connection.database);
        let primary = config.credentials.clone().unwrap_or_else(|| Arc::new(MemoryStore::default()));
        let mut store = FallbackStore::new(primary);
        let auth_token =
            spacelink_auth::initial_token(&mut store, &key, config.connection.token.take().map(Token::new));
        config.connection.token = auth_token.as_ref().map(|t| t.expose().to_string());
        if config.reducers.max_in_flight >= config.connection.outbound_capacity {
            // A full socket queue could refuse a call while later ones get through.
            return Err(ConnectionError::Config(spacelink_connection::ConfigError {
                field: "reducers.max_in_flight",
                reason: format!(
                    "{} must be below the connection's outbound_capacity ({})",
                    config.reducers.max_in_flight, config.connection.outbound_capacity
                ),
            }));
        }
        let fetch_config = config.connection.clone();
        // The monitor first, so that its recorder hears the first connection.
        let telemetry = match config.telemetry {
            Some(setup) => Some(TelemetryActor::start_global(setup.config, setup.listeners).map_err(|e| {
                ConnectionError::Config(spacelink_connection::ConfigError { field: "telemetry", reason: e.to_string() })
            })?),
            None => None,
        };
        let tree_telemetry = telemetry.clone();
        let mut outcome = None;
        let mut sync = None;
        let mut auth = None;
        let supervisor = Supervisor::create(|ctx| {
            let auth_ctx = Context::<AuthActor>::new();
            let auth_addr = auth_ctx.address();
            listeners.identities.push(auth_addr.clone().recipient());
            listeners.resilience.push(auth_addr.clone().recipient());
            listeners.states.push(auth_addr.clone().recipient());
            // The reducer actor's address exists before the actor, so that the
            // connection can be given its recipients and it the connection's.
            let reducer_ctx = Context::<ReducerActor>::new();
            let reducer_addr = reducer_ctx.address();
            listeners.states.push(ctx.address().recipient());
            listeners.messages.push(reducer_addr.clone().recipient());
            listeners.states.push(reducer_addr.clone().recipient());
            listeners.identities.push(reducer_addr.clone().recipient());
            let sync_ctx = config.schema.as_ref().map(|_| Context::<SyncActor>::new());
            if let Some(sync_ctx) = &sync_ctx {
                listeners.messages.push(sync_ctx.address().recipient());
                listeners.states.push(sync_ctx.address().recipient());
            }
            let result = ConnectionActor::start_supervised(config.connection, listeners);
            let connection = result.as_ref().ok().cloned();
            if let Some(connection) = &connection {
                let setup = AuthSetup {
                    config: config.auth,
                    key,
                    store,
                    provider: config.token_provider,
                    connection: connection.addr().clone().recipient(),
                    listeners: config.auth_listeners,
                };
                auth = Some(auth_ctx.run(AuthActor::new(setup, auth_token)));
                let store = config.queue_file.map(|p| Box::new(FileQueueStore::new(p)) as _);
                let actor =
                    ReducerActor::new(config.reducers, connection.addr().clone().recipient(), reducer_listeners, store);
                reducer_ctx.run(actor);
            }
            sync = match (sync_ctx, &connection, config.schema.clone()) {
                (Some(sync_ctx), Some(connection), Some(schema)) => {
                    let actor = SyncActor::with_types(
                        config.sync,
                        schema.clone(),
                        config.row_types,
                        connection.addr().clone().recipient(),
                        sync_listeners,
                    );
                    let reader = actor.cache().reader();
                    let addr = sync_ctx.run(actor);
                    Some(SyncHandle::new(addr, reader, schema))
                }
                _ => None,
            };
            let reducers = connection.as_ref().map(|_| ReducerHandle::new(reducer_addr));
            outcome = Some(result.map(|c| (c, reducers.clone())));
            Supervisor { connection, reducers, telemetry: tree_telemetry, last_state: ConnectionState::Disconnected }
        });
        let (connection, reducers, auth) = match (outcome, auth) {
            (Some(Ok((connection, Some(reducers)))), Some(auth)) => (connection, reducers, AuthHandle::new(auth)),
            (Some(Err(e)), _) => {
                supervisor.do_send(StopTree);
                return Err(e);
            }
            _ => return Err(ConnectionError::ActorGone),
        };
        if let Some(schema) = &config.schema {
            reducers.set_schema(schema.clone());
        } else if config.fetch_schema {
            let reducers = reducers.clone();
            actix::spawn(async move {
                match ModuleSchema::fetch_for(&fetch_config).await {
                    Ok(schema) => reducers.set_schema(Arc::new(schema)),
                    Err(e) => tracing::warn!(error = %e, "no schema: reducer calls are not checked against it"),
                }
            });
        }
        Ok(Self { supervisor, connection, reducers, auth, sync, telemetry })
    }

    /// Writes a snapshot of the performance statistics (the configured window
    /// and every interval kept) to `path`.
    pub async fn export_stats(&self, path: &std::path::Path, format: ExportFormat) -> Result<(), TelemetryError> {
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

    /// Closes the connection and stops the tree.
    pub fn shutdown(&self) {
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
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn settings_that_could_reorder_calls_are_refused() {
        let mut config = SpacelinkConfig::new(ConnectionConfig::new("http://127.0.0.1:9", "guildmaster"));
        config.reducers.max_in_flight = config.connection.outbound_capacity;
        let err = Spacelink::start_with(config, Listeners::default(), ReducerListeners::default()).unwrap_err();
        assert!(err.to_string().contains("reducers.max_in_flight"), "{err}");
    }
}
