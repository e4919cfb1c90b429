//! The app crate's one error enum.

use spacelink_connection::{ConfigError, ConnectionError, SchemaError};
use spacelink_reducers::ReducerError;
use spacelink_sync::SyncError;

/// What can go wrong starting or using a [`crate::Client`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A setting cannot work (named by its field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The connection refused to start or failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The module's schema could not be fetched or read.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A reducer call failed.
    #[error(transparent)]
    Reducer(#[from] ReducerError),
    /// State synchronisation failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A one-off query was refused by the server, or its answer did not come or not decode.
    #[error("one-off query: {0}")]
    Query(String),
    /// The background thread that runs the actors could not start or ended.
    #[error("the spacelink runtime thread: {0}")]
    Runtime(String),
}
