//! State synchronisation for spacelink.
//!
//! The `SyncActor` owns query-set subscriptions (`SubscribeMulti` /
//! `UnsubscribeMulti`), the client cache (rows keyed by primary key,
//! reference-counted across overlapping subscriptions, decoded once into the
//! game's registered types ([`RowTypes`]), published whole per transaction as
//! snapshots that readers ([`CacheReader`]) read without ever waiting), map and
//! spatial interest management as the game configures it ([`SpatialConfig`],
//! [`MapContextConfig`]: a grid index inside the snapshots and an area of
//! interest that follows a point with hysteresis), unique columns indexed in
//! the same snapshots ([`UniqueColumns`]), tables that keep no rows and only
//! tell their changes (`SyncConfig::events_only`), and the reconciliation of
//! the cache with fresh state after a reconnect, so that unchanged rows fire
//! nothing. The cache never diverges silently: it takes only the updates the
//! connection decoded under its configured limits, and an update it could not
//! take makes it resubscribe its query sets and reconcile the same way
//! ([`SubscriptionEvent::Resubscribing`]).
//!
//! Architecture invariant: this crate consumes the connection's
//! `ServerMessageReceived` and `StateChanged`, sends `SendMessage`, and knows
//! nothing above `connection`.

pub mod actor;
pub mod cache;
pub mod config;
pub mod disk;
mod divergence;
pub mod error;
pub mod handle;
pub mod messages;
mod query_sets;
#[cfg(test)]
mod recorded;
pub mod row;
pub mod spatial;
mod table;
pub mod unique;

pub use actor::{SchemaKeys, SyncActor, SyncMailbox};
pub use cache::{
    CacheReader, CacheView, ClientCache, RowChange, RowKey, RowKeys, Snapshot, TableDelta, TableRows, WholeRow,
};
pub use config::{MapContextConfig, SpatialConfig, SyncConfig};
pub use error::SyncError;
pub use handle::{SyncHandle, TableView};
pub use messages::*;
pub use query_sets::is_permanent;
pub use row::{Row, RowTypes, Shared};
pub use unique::{TableUnique, UniqueColumns};

/// Restarted by the app's supervisor when it stops, the same value: the cache
/// and the query sets survive (timers of the stopped context do not: a set
/// waiting for a retry is retried at the next session), and transactions
/// applied but not yet published are published and told as it stops.
impl actix::Supervised for SyncActor {}
