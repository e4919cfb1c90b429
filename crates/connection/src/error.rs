//! The connection crate's error type.

use crate::codec::CodecError;
use crate::config::ConfigError;
use crate::schema::SchemaError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bytes did not decode or a message did not encode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The schema could not be read or used.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A message was sent while no session is up; it was not sent.
    #[error("not connected (state {state}): the message was not sent")]
    NotConnected {
        /// The state at the time.
        state: crate::ConnectionState,
    },
    /// The outbound queue is full: the network is slower than the sender.
    #[error("outbound queue full ({capacity} frames): the message was not sent")]
    Backpressure {
        /// The configured capacity.
        capacity: usize,
    },
    /// The connection actor is gone (the actix system stopped).
    #[error("the connection actor is not running")]
    ActorGone,
}
