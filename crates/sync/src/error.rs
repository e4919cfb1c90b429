//! The sync crate's error type.

/// Why a subscription did not come to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The server refused the queries (after retries and any fallback).
    #[error("subscription refused: {0}")]
    Refused(String),
    /// No such query set.
    #[error("no subscription {0}")]
    Unknown(u64),
    /// It was dropped before its rows arrived.
    #[error("the subscription was dropped before it was applied")]
    Dropped,
    /// The set's rows could not be decoded, attempt after attempt.
    #[error("the subscription's rows could not be decoded: {0}")]
    Undecodable(String),
    /// The module has no table the request needs.
    #[error("the module has no table `{0}`")]
    NoTable(String),
    /// The request needs interest management the configuration does not name
    /// (`spatial` or `map_context` of [`SyncConfig`](crate::SyncConfig)).
    #[error("no {0} configuration: interest management is not set up")]
    NotConfigured(&'static str),
    /// A cached row does not decode as the type asked for.
    #[error("a row of `{table}` does not decode: {error}")]
    Decode {
        /// The table.
        table: String,
        /// Why.
        error: String,
    },
    /// A cache file ([`crate::disk`]) that cannot be trusted: not one, damaged,
    /// or of another format.
    #[error("cache file refused: {0}")]
    CacheImage(String),
    /// The sync actor is not running.
    #[error("the sync actor is not running")]
    ActorGone,
}
