//! The reducer client's error type.

use crate::ledger::QueueFull;

/// Why a call did not get a result from the server.
///
/// A reducer that ran and returned an error is *not* an error here: it is a
/// `ReducerResult` whose outcome is `Failed` with the server's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReducerError {
    /// A validator or the module's schema refused the arguments; nothing was sent.
    #[error("call to `{reducer}` refused before sending: {reason}")]
    Invalid {
        /// The reducer.
        reducer: String,
        /// Why.
        reason: String,
    },
    /// The arguments are larger than allowed; nothing was sent.
    #[error("arguments of `{reducer}` are {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The reducer.
        reducer: String,
        /// The arguments' size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The module has no such reducer, or it is a lifecycle reducer; nothing was sent.
    #[error("the module has no callable reducer `{0}`")]
    UnknownReducer(String),
    /// The queue is full and the overflow policy refuses new calls.
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    /// The call was dropped from a full queue (overflow policy `DropOldest`); it was never sent.
    #[error("the call to `{reducer}` was dropped from a full queue before it was sent")]
    Dropped {
        /// The reducer.
        reducer: String,
    },
    /// The call was sent, then its session was lost before the answer. It may
    /// or may not have run; it is not resent, because the module could not
    /// recognise a repeat (give the call a sequence number to make it retryable).
    #[error("the call to `{reducer}` may or may not have run: its session was lost before the answer")]
    OutcomeUnknown {
        /// The reducer.
        reducer: String,
    },
    /// The reducer ran and returned this error; nothing was committed. (The
    /// reducer client itself reports this as a `ReducerResult` whose outcome is
    /// `Failed`; the game's `spacelink::Reducers` makes it this error.)
    #[error("`{reducer}` failed on the server: {message}")]
    Failed {
        /// The reducer.
        reducer: String,
        /// The module's error message.
        message: String,
    },
    /// The module ran out of energy running the reducer; nothing was committed.
    #[error("`{reducer}` ran out of energy on the server")]
    OutOfEnergy {
        /// The reducer.
        reducer: String,
    },
    /// The call was cancelled (a cancelled batch, or the client shutting down).
    #[error("the call was cancelled")]
    Cancelled,
    /// The reducer actor is not running.
    #[error("the reducer client is not running")]
    ActorGone,
}
