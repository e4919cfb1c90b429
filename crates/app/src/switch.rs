//! Moving a running client to another server or database: a profile switch
//! (local, staging, production) without a new client.
//!
//! The actors stay up, and the game keeps its `Client`, its tables, callbacks
//! and subscriptions; only where the connection points changes. In order:
//!
//! 1. The new target's module schema is fetched (bounded and retried, as at
//!    start) and must match the running one: rows and calls must mean the
//!    same on both sides, else the switch is refused and nothing changes (a
//!    different module needs a new client).
//! 2. The auth actor moves to the new target's credential entry: its stored
//!    token, the one given in the new config, or none (the server issues a new
//!    identity, which is then stored under the new entry).
//! 3. The connection closes its session and opens one to the new target on a
//!    new generation, with a fresh backoff and breaker.
//!
//! What the old target still sends then belongs to a dead session and is
//! dropped. The sync actor subscribes the game's query sets again on the new
//! session and reconciles its cache against the new initial rows: rows only
//! the old database had are deleted, changed ones updated, equal ones left
//! alone, each with its row event. Reducer calls still queued go to the new
//! target; calls in flight at the switch are settled as on any lost session.

use std::sync::Arc;

use spacelink_auth::{AuthHandle, CredentialKey};
use spacelink_connection::{ConnectionConfig, ConnectionHandle, ModuleSchema, Token};

/// Why a switch did not happen (nothing changed).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SwitchError {
    /// The new target's settings cannot work.
    #[error("the new target's settings: {0}")]
    Config(#[from] spacelink_connection::ConfigError),
    /// The new target's schema could not be read.
    #[error("the new target's module schema: {0}")]
    Schema(String),
    /// The new target runs another module: a new client is needed.
    #[error("database {database} runs another module ({difference}): start a new client for it")]
    OtherModule {
        /// The new target's database.
        database: String,
        /// The first difference found.
        difference: String,
    },
    /// An actor of the client has stopped.
    #[error("the client is shutting down")]
    ClientGone,
    /// The client does not know its own module's schema yet (it is still
    /// being fetched): nothing to compare the new target with.
    #[error("the client's own schema is not known yet: switch once it is (Event::Schema)")]
    NotStarted,
}

/// Switches a running client's target; cheap to clone (from `Client::switcher`).
#[derive(Debug, Clone)]
pub struct Switcher {
    connection: ConnectionHandle,
    auth: AuthHandle,
    /// The running module's schema, once known.
    ready: Arc<std::sync::OnceLock<crate::supervisor::Ready>>,
    /// Where the client points now, with its connection id there.
    target: Arc<std::sync::Mutex<Target>>,
}

/// A client's current server and database, and the connection id it presents there.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) server_url: String,
    pub(crate) database: String,
    pub(crate) connection_id: spacelink_connection::lib::ConnectionId,
}

impl Switcher {
    pub(crate) fn new(
        connection: ConnectionHandle,
        auth: AuthHandle,
        ready: Arc<std::sync::OnceLock<crate::supervisor::Ready>>,
        target: Arc<std::sync::Mutex<Target>>,
    ) -> Self {
        Self { connection, auth, ready, target }
    }

    /// Points the client at `config`'s server and database (see the module
    /// docs); returns once the connection was told, not once it connected (the
    /// state events and `Event::Connected` tell that). Needs a tokio runtime
    /// (the schema is fetched over HTTP): the client's own, as
    /// [`crate::Client::switch_to`] arranges, or the caller's.
    pub async fn switch_to(&self, mut config: ConnectionConfig) -> Result<(), SwitchError> {
        config.validate()?;
        // The same database keeps the client's connection id; another gets its own.
        let mut target = self.target.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if target.server_url != config.server_url || target.database != config.database {
            target = Target {
                server_url: config.server_url.clone(),
                database: config.database.clone(),
                connection_id: crate::client::new_connection_id(),
            };
        }
        config.connection_id = Some(target.connection_id);
        let mine = self.ready.get().map(|r| r.schema.clone()).ok_or(SwitchError::NotStarted)?;
        let schema = ModuleSchema::fetch_for(&config).await.map_err(|e| SwitchError::Schema(e.to_string()))?;
        if let Some(difference) = mine.difference(&schema) {
            return Err(SwitchError::OtherModule { database: config.database.clone(), difference });
        }
        let generation = self.connection.status().await.map_err(|_| SwitchError::ClientGone)?.generation;
        let key = CredentialKey::new(&config.server_url, &config.database);
        let given = config.token.take().map(Token::new);
        let token = self.auth.switch_entry(key, given, generation).await.map_err(|_| SwitchError::ClientGone)?;
        config.token = token.map(|t| t.expose().to_string());
        tracing::info!(server = %config.server_url, database = %config.database, "switching the client's target");
        self.connection.retarget(config).await.map_err(|e| match e {
            spacelink_connection::ConnectionError::Config(e) => SwitchError::Config(e),
            _ => SwitchError::ClientGone,
        })?;
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
        Ok(())
    }
}
