//! State synchronisation for spacelink.
//!
//! The `SyncActor` owns query-set subscriptions (`SubscribeMulti` /
//! `UnsubscribeMulti`), the client cache (rows keyed by primary key,
//! reference-counted across overlapping subscriptions, applied atomically per
//! transaction, shared read-only through [`CacheReader`]), map and spatial
//! interest management (a grid index over the cache and an area of interest
//! that follows a point with hysteresis), and the reconciliation of the cache
//! with fresh state after a reconnect, so that unchanged rows fire nothing.
//!
//! Architecture invariant: this crate consumes the connection's
//! `ServerMessageReceived` and `StateChanged`, sends `SendMessage`, and knows
//! nothing above `connection`.

pub mod actor;
pub mod cache;
pub mod config;
pub mod error;
pub mod handle;
pub mod messages;
pub mod spatial;

pub use actor::{SchemaKeys, SyncActor};
pub use cache::{CacheReader, CacheView, ClientCache, RowChange, RowKey, RowKeys, TableDelta, WholeRow};
pub use config::SyncConfig;
pub use error::SyncError;
pub use handle::{SyncHandle, TableView};
pub use messages::*;

/// Restarted by the app's supervisor when it stops, the same value: the cache
/// and the query sets survive (timers of the stopped context do not: a set
/// waiting for a retry is retried at the next session).
impl actix::Supervised for SyncActor {}
