//! State synchronisation for spacelink. **Not implemented yet.**
//!
//! This crate will own the `SyncActor`: query-set subscriptions
//! (`SubscribeMulti`/`UnsubscribeMulti`), the client cache (rows keyed by primary
//! key, reference-counted across overlapping subscriptions, applied atomically per
//! transaction), map and spatial interest management, and reconciliation of the
//! cache with fresh state after a reconnect. It will consume the connection's
//! `ServerEvent`s and send `SendMessage`s; it knows nothing above `connection`.
