//! The prediction actor's messages: what it takes and what it tells.

use actix::prelude::*;

use crate::predictor::PredictionStats;

// ---- Taken by the prediction actor ----

/// The player made an input: apply it at once and send it (the design's `PredictAction`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PredictInput<I> {
    /// The input.
    pub(crate) input: I,
}

impl<I: 'static> Message for PredictInput<I> {
    type Result = ();
}

/// The server's state of the predicted entity arrived (from the game's row).
#[derive(Debug, Clone)]
pub struct ServerStateReceived<S> {
    /// The session it came from: a state of an older session than one
    /// already seen is dropped.
    pub generation: u64,
    /// The state.
    pub state: S,
    /// The last input sequence the server had processed in it.
    pub last_processed_seq: u32,
}

impl<S: 'static> Message for ServerStateReceived<S> {
    type Result = ();
}

/// The server refused input `seq` (its reducer failed): roll it back.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct InputRejected {
    /// The input's sequence number.
    pub(crate) seq: u32,
    /// Why, as the server or the reducer client said.
    pub(crate) reason: String,
}

/// Forget the unconfirmed inputs and show the last server state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct ResyncPrediction;

/// Ask for the counters and where the prediction stands.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "PredictionStatus")]
pub(crate) struct GetPredictionStatus;

/// Where the prediction stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionStatus {
    /// Whether a server state has arrived.
    pub synced: bool,
    /// The server's last processed input, as last reconciled.
    pub confirmed_seq: Option<u32>,
    /// The number the next input gets.
    pub next_seq: u32,
    /// Unconfirmed inputs held.
    pub history_len: usize,
    /// Counters.
    pub stats: PredictionStats,
}

/// Stop the prediction actor.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct StopPrediction;

/// Change the settings a running prediction can take (smoothing, snap
/// threshold, tolerance, input delay, frame interval); a change to a fixed
/// one (the history) is refused, naming it, and nothing changes.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), crate::PredictionError>")]
pub struct ReconfigurePrediction(pub crate::PredictionConfig);

// ---- Told by the prediction actor ----

/// An input was applied locally: send it to the server with its sequence
/// number (the app maps this to the reducer client's sequenced call, the
/// design's `CallWithPrediction`).
#[derive(Debug, Clone, Copy)]
pub struct PredictedInput<I> {
    /// Its sequence number.
    pub seq: u32,
    /// The input.
    pub input: I,
}

impl<I: 'static> Message for PredictedInput<I> {
    type Result = ();
}

/// What reconciliation did (the design's `OnPredictionConfirmed`,
/// `OnPredictionRejected`, `OnStateReconciled`).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum PredictionEvent {
    /// The server processed the inputs up to `seq`, and the prediction at
    /// `seq` was within tolerance.
    Confirmed {
        /// The server's last processed input.
        seq: u32,
        /// How many unconfirmed inputs this confirmed.
        count: u32,
    },
    /// The server refused input `seq`; it was rolled back.
    Rejected {
        /// The input.
        seq: u32,
        /// Why.
        reason: String,
    },
    /// The prediction was corrected to the server's state at `seq` and the
    /// unconfirmed inputs replayed.
    Reconciled {
        /// The server's last processed input.
        seq: u32,
        /// How far the predicted state moved.
        correction: f32,
        /// How many inputs were replayed.
        replayed: u32,
        /// Whether the shown state jumped (beyond the snap threshold).
        snapped: bool,
    },
    /// The server processed inputs this client never sent (a gap): the
    /// history was cleared and prediction starts again from the server's state.
    Resynced {
        /// The server's last processed input.
        seq: u32,
    },
}

/// Who hears the prediction actor. Given to it when it is built.
#[derive(Debug, Clone, Default)]
pub struct PredictionListeners {
    /// Every `PredictionEvent`.
    pub events: Vec<Recipient<PredictionEvent>>,
}
