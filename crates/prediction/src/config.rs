//! The predictor's settings.

use std::time::Duration;

use crate::error::PredictionError;

/// What a full history does with a new input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryOverflow {
    /// The oldest unconfirmed entry is forgotten (default). Its input was sent
    /// and the server still applies it; when the server's state for it
    /// arrives there is nothing to compare, so the predictor resets to the
    /// server's state and replays the newer inputs: the game stays responsive.
    #[default]
    DropOldest,
    /// The new input is refused (`PredictionError::HistoryFull`): nothing is
    /// applied or sent until the server catches up.
    RejectNew,
}

/// Settings of client-side prediction, with defaults that suit a game at 60 frames a second.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionConfig {
    /// Unconfirmed inputs kept for reconciliation (default 256: over 4 s at 60
    /// inputs a second). Preallocated; at most 65 536.
    pub max_prediction_history: usize,
    /// What a full history does with a new input (default: drop the oldest).
    pub overflow: HistoryOverflow,
    /// How long a correction takes to be shown: the shown state's error decays
    /// exponentially, frame-rate independent, to 1 % of itself after this time
    /// (default 250 ms; it halves about every 38 ms). Zero shows corrections at once.
    pub reconciliation_smoothing_time: Duration,
    /// A correction larger than this (in the model's distance units) is
    /// shown at once, not smoothed: a teleport or a respawn (default 8.0).
    pub snap_threshold: f32,
    /// A prediction within this distance of the server's state counts as
    /// accurate and needs no replay; a shown state this close to the predicted
    /// one is put on it exactly (default 0.001).
    pub tolerance: f32,
    /// How long an input waits before it is applied and sent (default zero):
    /// an input delay, as in rollback netcode, trades a little responsiveness
    /// for fewer visible corrections.
    pub input_delay: Duration,
    /// How often the prediction actor advances smoothing and publishes the
    /// shown state (default 16 ms). Not used by the plain [`Predictor`](crate::Predictor),
    /// whose caller passes time in.
    pub frame_interval: Duration,
}

impl Default for PredictionConfig {
    fn default() -> Self {
        Self {
            max_prediction_history: 256,
            overflow: HistoryOverflow::DropOldest,
            reconciliation_smoothing_time: Duration::from_millis(250),
            snap_threshold: 8.0,
            tolerance: 0.001,
            input_delay: Duration::ZERO,
            frame_interval: Duration::from_millis(16),
        }
    }
}

/// The largest `max_prediction_history` accepted.
pub const MAX_HISTORY: usize = 65_536;

impl PredictionConfig {
    /// Checks the settings; each bad one is a `PredictionError::Config` naming it.
    pub fn validate(&self) -> Result<(), PredictionError> {
        let bad = |field: &'static str, reason: String| Err(PredictionError::Config { field, reason });
        if self.max_prediction_history == 0 || self.max_prediction_history > MAX_HISTORY {
            return bad(
                "max_prediction_history",
                format!("{} is not within 1..={MAX_HISTORY}", self.max_prediction_history),
            );
        }
        if self.snap_threshold.is_nan() || self.snap_threshold <= 0.0 {
            return bad("snap_threshold", format!("{} is not a positive distance", self.snap_threshold));
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return bad("tolerance", format!("{} is not a finite distance of zero or more", self.tolerance));
        }
        if self.frame_interval.is_zero() {
            return bad("frame_interval", "must be longer than zero".into());
        }
        Ok(())
    }

    /// Checks that `new` is valid and changes only what a running predictor
    /// can take: smoothing time, snap threshold, tolerance, input delay and the
    /// frame interval. The history (preallocated) and its overflow policy
    /// are fixed at start; changing them is a `PredictionError::Config` naming the field.
    pub fn check_live_change(&self, new: &PredictionConfig) -> Result<(), PredictionError> {
        new.validate()?;
        let fixed = |field: &'static str| {
            Err(PredictionError::Config { field, reason: "cannot change while the prediction runs: restart it".into() })
        };
        if new.max_prediction_history != self.max_prediction_history {
            return fixed("max_prediction_history");
        }
        if new.overflow != self.overflow {
            return fixed("overflow");
        }
        Ok(())
    }
}
