//! spacelink: a SpacetimeDB client layer for games that stays connected, in
//! sync and responsive over bad networks.
//!
//! This is the crate a game depends on. It wires the subsystem crates into one
//! supervisor tree ([`Spacelink::start`]) and re-exports what a game needs.
//! Today the tree holds the connection; authentication, state sync, the
//! reducer client, prediction and telemetry join it as they land.
//!
//! ```no_run
//! use spacelink::{ConnectionConfig, Listeners, Spacelink};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! actix::System::new().block_on(async {
//!     let config = ConnectionConfig::new("http://127.0.0.1:3000", "guildmaster");
//!     let app = Spacelink::start(config, Listeners::default())?;
//!     let status = app.connection.status().await?;
//!     println!("{}", status.state);
//!     app.shutdown();
//!     Ok::<_, spacelink::ConnectionError>(())
//! })?;
//! # Ok(())
//! # }
//! ```

pub mod credentials;
pub mod prediction_link;
pub mod printer;
pub mod render;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod watcher;

pub use spacelink_auth as auth;
pub use spacelink_auth::{AuthConfig, AuthError, AuthEvent, AuthHandle, Credentials, TokenProvider};
pub use spacelink_connection as connection;
pub use spacelink_connection::{
    ConnectionConfig, ConnectionError, ConnectionHandle, ConnectionState, ConnectionStatus, IdentityReceived,
    Listeners, ModuleSchema, RetryPolicy, ServerMessageReceived, StateChanged,
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
pub use store::FileQueueStore;
pub use supervisor::{Spacelink, SpacelinkConfig, Supervisor};
