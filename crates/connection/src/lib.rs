//! spacelink's connection to a SpacetimeDB server.
//!
//! Two halves:
//!
//! * **The protocol** ([`codec`], [`schema`], [`guard`]): SpacetimeDB's v1 BSATN
//!   WebSocket protocol on the official message types, with the server's
//!   compression tag, bounded decompression, a structural check of every frame
//!   before it is decoded, and rows decoded into generated types or, by the
//!   module's schema, into dynamic values and JSON. No input panics.
//! * **The connection actor** ([`ConnectionActor`], driven through a
//!   [`ConnectionHandle`]): one WebSocket session at a time, its state machine
//!   ([`ConnectionState`]), heartbeats that measure the round trip and declare a
//!   silent peer dead, and reconnection as a supervised restart with backoff
//!   ([`RetryPolicy`]). What it hears it tells its [`Listeners`], as typed
//!   messages stamped with the session's generation.
//!
//! ```no_run
//! use spacelink_connection::{ConnectionActor, ConnectionConfig, Listeners};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! actix::System::new().block_on(async {
//!     let config = ConnectionConfig::new("http://127.0.0.1:3000", "guildmaster");
//!     let handle = ConnectionActor::start_supervised(config, Listeners::default())?;
//!     let query = handle.subscribe(&["SELECT * FROM player".to_string()]).await;
//!     println!("{query:?}, {:?}", handle.status().await?);
//!     Ok::<_, spacelink_connection::ConnectionError>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: only this crate knows the wire format. Other crates
//! see decoded messages, rows as bytes with their table's name, and this crate's
//! messages.

#![warn(unreachable_pub)]

mod actor;
pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod guard;
mod handle;
pub mod health;
#[cfg(feature = "testsuite")]
pub mod hostile;
pub mod http;
pub mod layout;
mod messages;
pub mod metric_names;
pub mod net;
pub mod policy;
pub mod recording;
pub mod rtt;
pub mod sats_json;
pub mod schema;
pub mod state;
#[cfg(feature = "testsuite")]
pub mod testing;
pub mod tls;
pub mod tracker;
mod typespace;
pub mod upgrade;

pub use actor::ConnectionActor;
pub use backoff::{Jitter, RetryPolicy};
pub use breaker::{BreakerKind, BreakerState, CircuitBreaker, CircuitBreakerConfig};
pub use codec::{ClientMessage, Compression, DecodeLimits, ServerMessage};
pub use config::{ConfigError, ConnectionConfig};
pub use error::ConnectionError;
pub use handle::{ConnectionHandle, RequestIds};
pub use health::{NetworkHealth, NetworkStatus};
pub use messages::{
    ConnectionStatus, IdentityReceived, Listeners, ReplaceToken, ResilienceEvent, SendMessage, ServerMessageReceived,
    StateChanged, Token,
};
pub use policy::SessionPolicy;
pub use schema::{ModuleSchema, SchemaError, SchemaFetchConfig, TableSchema};
pub use state::{ConnectionEvent, ConnectionState};
pub use tls::{TlsConfig, TlsFailure};
pub use tracker::{SessionChange, SessionTracker};

/// The official message types, re-exported so users need not pin them.
pub use spacetimedb_client_api_messages::websocket as ws;
/// Identity, connection id, timestamps and the SATS derives, as the official SDK uses them.
pub use spacetimedb_lib as lib;
/// The SATS type system (values, types, BSATN).
pub use spacetimedb_sats as sats;
