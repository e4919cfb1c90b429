//! spacelink: a SpacetimeDB client layer for games that stays connected, in
//! sync and responsive over bad networks.
//!
//! This is the crate a game depends on. [`Client::builder`] is the one way
//! in: it starts the supervisor tree (connection, auth, state sync, the
//! reducer client, and telemetry when configured) and the game calls
//! [`Client::frame_tick`] once per frame on its own thread to hear what
//! happened, with typed tables read straight from the cache.
//!
//! ```no_run
//! # fn main() -> Result<(), spacelink::ClientError> {
//! let mut client = spacelink::Client::builder()
//!     .with_uri("http://127.0.0.1:3000")
//!     .with_database("guildmaster")
//!     .on_connect(|identity, _token| println!("connected as {identity}"))
//!     .build()?; // returns at once: connecting goes on in the background
//! for _frame in 0..600 {
//!     for event in client.frame_tick() {
//!         if let spacelink::Event::StateChanged { to, .. } = event {
//!             println!("connection: {to}");
//!         }
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(16));
//! }
//! client.shutdown();
//! # Ok(())
//! # }
//! ```

pub mod callbacks;
pub mod calls;
pub mod client;
pub mod credentials;
pub mod disk_cache;
pub mod error;
pub mod events;
mod order;
pub mod prediction_link;
#[cfg(feature = "cli")]
pub mod printer;
pub mod queries;
#[cfg(feature = "cli")]
pub mod render;
pub mod runtime;
pub mod settings;
pub mod status;
pub mod store;
pub mod supervise;
pub mod supervisor;
pub mod switch;
pub mod watcher;

/// What the code `spacelink generate` writes uses, so that it needs no
/// dependency but `spacelink`: the SATS derives' crate path (`#[sats(crate =
/// spacelink::__codegen::lib)]`), the special SATS types, and the client API.
/// Not for hand-written code; its contents follow the generator.
#[doc(hidden)]
pub mod __codegen {
    pub use crate::{CallbackId, Client, ReducerCall, RowContext, Table};
    pub use spacelink_connection::lib;
    pub use spacelink_connection::lib::{ConnectionId, Identity, ScheduleAt, TimeDuration, Timestamp};
    pub use spacelink_connection::sats::{bsatn, i256, u256};
    pub use spacelink_connection::ModuleSchema;
    pub use spacelink_sync::{ReducerCause, RowTypes, Shared};

    /// The schema a generated file embeds (its `SCHEMA_JSON`), read.
    ///
    /// # Panics
    ///
    /// If the text is not a v9 module definition: `spacelink generate` wrote
    /// one, so only a hand-edited file fails (the bindings' tests read every one).
    pub fn embedded_schema(json: &str) -> std::sync::Arc<ModuleSchema> {
        match ModuleSchema::from_json(json) {
            Ok(schema) => std::sync::Arc::new(schema),
            Err(e) => panic!("the schema embedded by `spacelink generate` does not read back: {e}"),
        }
    }
}

pub use callbacks::CallbackId;
pub use calls::{CallResult, ReducerCall, Reducers};
pub use client::{CacheSaving, Client, ClientBuilder, RowContext, Switching, Table};
pub use disk_cache::{DiskCacheConfig, DiskCacheEvent};
pub use error::ClientError;
pub use events::{Disconnect, Event, RowEvent, RowEventKind, SchemaEvent};
pub use queries::{QueryCall, QueryRows};
pub use spacelink_auth as auth;
pub use spacelink_auth::{AuthConfig, AuthError, AuthEvent, AuthHandle, Credentials, TokenProvider};
pub use spacelink_connection as connection;
pub use spacelink_connection::{
    Compression, ConnectionConfig, ConnectionError, ConnectionHandle, ConnectionState, ConnectionStatus,
    IdentityReceived, Listeners, ModuleSchema, RetryPolicy, SchemaError, ServerMessageReceived, StateChanged,
    TlsConfig, TlsFailure,
};
pub use spacelink_prediction as prediction;
pub use spacelink_reducers as reducers;
pub use spacelink_reducers::{ReducerConfig, ReducerError, ReducerHandle, ReducerResult};
pub use spacelink_sync as sync;
pub use spacelink_sync::{SyncConfig, SyncError, SyncHandle};
pub use spacelink_telemetry as telemetry;
pub use spacelink_telemetry::{
    ExportFormat, PerformanceAlert, PerformanceStats, TelemetryConfig, TelemetryError, TelemetryHandle, TelemetrySetup,
};
pub use status::{SchemaStatus, Status, SubscriptionState};
pub use store::FileQueueStore;
pub use supervise::{Child, RestartPolicy, SupervisionConfig};
pub use supervisor::{SpacelinkConfig, Supervisor};
pub use switch::{SwitchError, Switcher};
