//! Client-side prediction and server reconciliation for spacelink.
//!
//! The game describes its predicted state and inputs with a
//! [`PredictionModel`]. A [`Predictor`] (plain logic, time passed in) applies
//! each input at once, numbers it and keeps it in a bounded, preallocated
//! [`History`](history::History); when the server's state arrives with the
//! last input sequence it processed, confirmed inputs are dropped, the
//! prediction at that sequence is compared with the server's state and, on a
//! mismatch, reset to it with the unconfirmed inputs replayed. Rejected inputs
//! are rolled back to the last known good state; a gap in the sequence
//! resynchronises; corrections are smoothed (exponential, frame-rate
//! independent) unless beyond a snap threshold. Nothing on that path allocates.
//!
//! The [`PredictionActor`] runs a predictor for one entity: it takes inputs
//! ([`PredictionHandle::predict`]), the server's state ([`ServerStateReceived`])
//! and rejections ([`PredictionHandle::input_rejected`]), tells
//! [`PredictedInput`] to a `Recipient` (the app sends it through the reducer
//! client as a sequenced call) and [`PredictionEvent`]s to listeners, and
//! publishes what to draw for [`PredictionHandle::shown`].
//!
//! Metrics (the `metrics` facade): `spacelink_prediction_inputs_total`,
//! `spacelink_prediction_checks_total{result=accurate|mispredicted}`,
//! `spacelink_prediction_accuracy` (gauge), `spacelink_prediction_reconciliations_total`,
//! `spacelink_prediction_replay_depth` and `spacelink_prediction_correction_distance`
//! (histograms), `spacelink_prediction_rejections_total`,
//! `spacelink_prediction_resyncs_total`, `spacelink_prediction_history` (gauge).
//!
//! Architecture invariant: this crate knows no other spacelink crate: rows
//! and reducer calls are the app's to map to its messages.

#![warn(unreachable_pub)]

mod actor;
pub mod config;
pub mod error;
mod handle;
pub mod history;
mod messages;
pub mod model;
pub mod predictor;
pub mod walk;

pub use actor::{PredictionActor, View};
pub use config::{HistoryOverflow, PredictionConfig};
pub use error::PredictionError;
pub use handle::PredictionHandle;
pub use messages::{
    PredictedInput, PredictionEvent, PredictionListeners, PredictionStatus, ReconfigurePrediction, ServerStateReceived,
};
pub use model::PredictionModel;
pub use predictor::{Correction, PredictionStats, Predictor, ReconcileOutcome, Reconciliation, Rejection};
pub use walk::{Position, Step, Walk};
