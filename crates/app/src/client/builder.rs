//! [`ClientBuilder`]: what a game configures before the client starts (the
//! subsystem configs, the initial subscriptions, the callbacks), checked by
//! `finish` and handed to the start (`super::start`) by `build` or `build_async`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use spacelink_auth::{AuthConfig, CredentialStore, TokenProvider};
use spacelink_connection::lib::Identity;
use spacelink_connection::{Compression, ConnectionConfig, Listeners, ModuleSchema, Token};
use spacelink_reducers::{ReducerConfig, ReducerListeners};
use spacelink_sync::{SyncConfig, SyncListeners};
use spacelink_telemetry::TelemetrySetup;

use super::start::{spawn_runtime, spawn_runtime_waiting, Start};
use super::Client;
use crate::callbacks::Registrar;
use crate::error::ClientError;
use crate::events::{Disconnect, Event};
use crate::supervisor::{validate, SpacelinkConfig, TreeListeners};

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
    pub(super) fn new() -> Self {
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

    /// Tables the game only listens to: they keep no rows in the cache, and
    /// every insert, update and delete of them still reaches the row callbacks
    /// and events, typed (`SyncConfig::events_only`; default: none). Their
    /// memory stays flat whatever they stream; reads of them (`count`, `iter`,
    /// `find`) see nothing. Adds to what a [`with_sync_config`](Self::with_sync_config)
    /// before it set (one after it replaces the list).
    pub fn with_events_only<T: Into<String>>(mut self, tables: impl IntoIterator<Item = T>) -> Self {
        self.config_mut().sync.events_only.extend(tables.into_iter().map(Into::into));
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

    /// Whether the game reads its events with [`Client::frame_tick`] (default
    /// true; see [`SpacelinkConfig::frame_events`]): a game that listens only
    /// through actors turns it off, and nothing is queued for it.
    pub fn with_frame_events(mut self, read: bool) -> Self {
        self.config_mut().frame_events = read;
        self
    }

    /// Keep the cache on disk between launches (see [`crate::disk_cache`]): at
    /// the next start, the tables read the saved rows before the first byte
    /// arrives, and the first session fires only what changed meanwhile.
    pub fn with_disk_cache(mut self, config: crate::DiskCacheConfig) -> Self {
        self.config_mut().disk_cache = Some(config);
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

fn config_error(field: &'static str, reason: &str) -> ClientError {
    ClientError::Config(spacelink_connection::ConfigError { field, reason: reason.into() })
}

pub(super) fn on_connect(mut callback: impl FnMut(Identity, &Token) + Send + 'static) -> crate::callbacks::AnyCallback {
    Box::new(move |event| {
        if let Event::Connected { identity, token, .. } = event {
            callback(*identity, token);
        }
    })
}

pub(super) fn on_disconnect(mut callback: impl FnMut(&Disconnect) + Send + 'static) -> crate::callbacks::AnyCallback {
    Box::new(move |event| {
        if let Event::Disconnected(disconnect) = event {
            callback(disconnect);
        }
    })
}
