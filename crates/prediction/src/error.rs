//! The prediction crate's one error type.

/// What can go wrong in client-side prediction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PredictionError {
    /// A setting is out of range.
    #[error("bad prediction setting {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No authoritative state has arrived yet: there is nothing to predict from.
    #[error("no server state yet: prediction starts with the first one")]
    NotSynced,
    /// The history is full and the overflow policy refuses new inputs.
    #[error("the prediction history is full ({capacity} unconfirmed inputs)")]
    HistoryFull {
        /// The configured `max_prediction_history`.
        capacity: usize,
    },
    /// The inputs waiting for the input delay fill the history's capacity.
    #[error("too many delayed inputs ({capacity})")]
    DelayQueueFull {
        /// The capacity (`max_prediction_history`).
        capacity: usize,
    },
    /// Sequence numbers ran out (u32); the game must start a new session.
    #[error("input sequence numbers are exhausted")]
    SequenceExhausted,
    /// The prediction actor is gone.
    #[error("the prediction actor is gone")]
    ActorGone,
}
