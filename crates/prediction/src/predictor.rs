//! The predictor: plain logic, no actor, no clock of its own (time is passed in).
//!
//! * **Predict**: an input is applied to the predicted state at once (and to
//!   the shown state, so the picture follows the input in the same frame),
//!   numbered, and kept with the state it led to in the [`History`].
//! * **Reconcile**: the server's state arrives with the last input sequence it
//!   processed. Confirmed entries are dropped; the prediction at that sequence
//!   is compared with the server's state; within `tolerance` it was accurate
//!   and nothing else happens; otherwise the predicted state is reset to the
//!   server's and the unconfirmed inputs are replayed on it, in place.
//! * **Reject**: an input the server refused (its reducer failed) is taken out
//!   and the prediction rolled back to the last known good state (the last
//!   server state) with the remaining inputs replayed.
//! * **Gaps**: a server state for an input this predictor never sent (another
//!   client instance, a lost history) cannot be reconciled: the predictor
//!   resynchronises (history cleared, numbering continues after the server's).
//! * **Smoothing**: the shown state follows the predicted one; a correction is
//!   not a jump but an error that decays exponentially with the time passed
//!   (`reconciliation_smoothing_time`, frame-rate independent); a correction
//!   beyond `snap_threshold` is shown at once.
//!
//! Nothing here allocates after the first lap of the history (states are
//! overwritten with `clone_from`): `tests/allocations.rs` counts.

use std::time::{Duration, Instant};

use crate::config::{HistoryOverflow, PredictionConfig};
use crate::error::PredictionError;
use crate::history::History;
use crate::model::PredictionModel;

/// `ln(100)`: after the smoothing time the error is down to 1 %.
const LN_100: f32 = 4.605_170_2;

/// What a reconciliation did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconciliation {
    /// The server's last processed input sequence.
    pub seq: u32,
    /// How many history entries it confirmed (and dropped).
    pub confirmed: u32,
    /// What happened.
    pub outcome: ReconcileOutcome,
}

/// The outcome of one reconciliation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReconcileOutcome {
    /// The first server state: prediction starts from it.
    Synced,
    /// Older than a state already reconciled (reordered or repeated): ignored.
    Stale,
    /// The prediction at `seq` was within `tolerance` of the server's state.
    Accurate {
        /// How far the prediction was from the server's state.
        error: f32,
    },
    /// The prediction was wrong: reset to the server's state and replayed.
    Corrected(Correction),
    /// The server processed an input this predictor never sent (a gap):
    /// history cleared, state reset to the server's.
    Resynced {
        /// How far the predicted state moved.
        correction: f32,
    },
}

/// A reset with replay (after a misprediction or a rejection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correction {
    /// How far the prediction at the confirmed sequence was from the server's
    /// state (`None` when there was no prediction left to compare: it had been
    /// dropped by the overflow policy, or the correction is a rollback).
    pub error: Option<f32>,
    /// How far the current predicted state moved.
    pub distance: f32,
    /// How many unconfirmed inputs were replayed.
    pub replayed: u32,
    /// Whether the shown state jumped (the correction was beyond `snap_threshold`).
    pub snapped: bool,
}

/// What a rejection did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rejection {
    /// The input was in the history: taken out, rolled back and replayed.
    RolledBack(Correction),
    /// The input is not in the history (already confirmed, dropped, or never sent).
    NotPending,
}

/// Counters since the predictor was made.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PredictionStats {
    /// Inputs applied.
    pub predicted: u64,
    /// Server states compared with a prediction.
    pub checked: u64,
    /// ... of which the prediction was within tolerance.
    pub accurate: u64,
    /// Resets with replay (mispredictions, rejections, overflowed entries).
    pub corrections: u64,
    /// Resynchronisations after a gap.
    pub resyncs: u64,
    /// Inputs the server rejected that were rolled back.
    pub rejected: u64,
    /// Entries dropped by the overflow policy.
    pub overflowed: u64,
    /// Server states ignored as stale.
    pub stale: u64,
    /// The deepest replay.
    pub max_replay: u32,
    /// The sum of correction distances (for an average).
    pub correction_total: f64,
    /// The largest correction distance.
    pub correction_max: f32,
}

impl PredictionStats {
    /// Accurate checks over all checks (1 when nothing was checked yet).
    pub fn accuracy(&self) -> f64 {
        if self.checked == 0 {
            1.0
        } else {
            self.accurate as f64 / self.checked as f64
        }
    }
}

/// The states the predictor keeps once it is synced.
#[derive(Debug)]
struct States<S> {
    /// The last known good state: the server's, at `confirmed_seq`.
    confirmed: S,
    confirmed_seq: u32,
    /// The prediction: `confirmed` with the history's inputs applied.
    current: S,
    /// What the game draws.
    shown: S,
    /// A scratch copy of `current` (to measure a correction), reused.
    before: S,
}

/// Client-side prediction of one entity, with reconciliation and smoothing.
#[derive(Debug)]
pub struct Predictor<M: PredictionModel> {
    model: M,
    config: PredictionConfig,
    history: History<M::State, M::Input>,
    states: Option<States<M::State>>,
    /// The number of the next input.
    next_seq: u32,
    /// Inputs waiting for the input delay: (when they are due, input).
    delayed: std::collections::VecDeque<(Instant, M::Input)>,
    last_frame: Option<Instant>,
    stats: PredictionStats,
}

impl<M: PredictionModel> Predictor<M> {
    /// A predictor with a preallocated history; it predicts from the first server state on.
    pub fn new(model: M, config: PredictionConfig) -> Result<Self, PredictionError> {
        config.validate()?;
        let capacity = config.max_prediction_history;
        Ok(Self {
            model,
            history: History::new(capacity),
            delayed: std::collections::VecDeque::with_capacity(capacity),
            config,
            states: None,
            next_seq: 1,
            last_frame: None,
            stats: PredictionStats::default(),
        })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The settings.
    pub fn config(&self) -> &PredictionConfig {
        &self.config
    }

    /// Changes the settings a running predictor can take (see
    /// [`PredictionConfig::check_live_change`]); the history and what it holds stay.
    /// Inputs already waiting for an input delay keep their due times.
    pub fn reconfigure(&mut self, config: PredictionConfig) -> Result<(), PredictionError> {
        self.config.check_live_change(&config)?;
        self.config = config;
        Ok(())
    }

    /// Whether a server state has arrived (prediction has started).
    pub fn is_synced(&self) -> bool {
        self.states.is_some()
    }

    /// The predicted state: the last server state with the unconfirmed inputs applied.
    pub fn predicted(&self) -> Option<&M::State> {
        self.states.as_ref().map(|s| &s.current)
    }

    /// What to draw: the predicted state with any correction still being smoothed.
    pub fn shown(&self) -> Option<&M::State> {
        self.states.as_ref().map(|s| &s.shown)
    }

    /// The last server state (the last known good state).
    pub fn confirmed(&self) -> Option<&M::State> {
        self.states.as_ref().map(|s| &s.confirmed)
    }

    /// The server's last processed input sequence, as last reconciled.
    pub fn confirmed_seq(&self) -> Option<u32> {
        self.states.as_ref().map(|s| s.confirmed_seq)
    }

    /// The number the next input gets.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// The unconfirmed inputs.
    pub fn history(&self) -> &History<M::State, M::Input> {
        &self.history
    }

    /// How many inputs wait for the input delay.
    pub fn delayed(&self) -> usize {
        self.delayed.len()
    }

    /// Counters.
    pub fn stats(&self) -> &PredictionStats {
        &self.stats
    }

    /// Takes an input made at `now`. Without an input delay it is applied at
    /// once and its sequence number returned: the caller sends it to the server
    /// with that number. With a delay it waits (`Ok(None)`) and
    /// [`advance`](Self::advance) applies it when due.
    pub fn predict(&mut self, input: M::Input, now: Instant) -> Result<Option<u32>, PredictionError> {
        if self.states.is_none() {
            return Err(PredictionError::NotSynced);
        }
        if self.config.input_delay.is_zero() && self.delayed.is_empty() {
            return self.apply(input).map(Some);
        }
        if self.delayed.len() >= self.config.max_prediction_history {
            return Err(PredictionError::DelayQueueFull { capacity: self.config.max_prediction_history });
        }
        self.delayed.push_back((now + self.config.input_delay, input));
        Ok(None)
    }

    /// Applies an input now: numbered, applied to the predicted and shown states, kept.
    fn apply(&mut self, input: M::Input) -> Result<u32, PredictionError> {
        let Some(states) = &mut self.states else { return Err(PredictionError::NotSynced) };
        if self.next_seq == u32::MAX {
            return Err(PredictionError::SequenceExhausted);
        }
        if self.history.is_full() {
            match self.config.overflow {
                HistoryOverflow::RejectNew => {
                    return Err(PredictionError::HistoryFull { capacity: self.history.capacity() })
                }
                HistoryOverflow::DropOldest => {
                    self.history.pop_front();
                    self.stats.overflowed += 1;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.model.apply(&mut states.current, &input);
        self.model.apply(&mut states.shown, &input);
        self.history.push(seq, input, &states.current);
        self.stats.predicted += 1;
        Ok(seq)
    }

    /// Advances to `now`: applies the delayed inputs that are due (telling
    /// `sent` each one's sequence number and input, to send it), then moves
    /// the shown state toward the predicted one by the time passed since the
    /// last call. Call once per frame.
    pub fn advance(&mut self, now: Instant, mut sent: impl FnMut(u32, &M::Input)) {
        while let Some(&(due, input)) = self.delayed.front() {
            if due > now {
                break;
            }
            self.delayed.pop_front();
            match self.apply(input) {
                Ok(seq) => sent(seq, &input),
                Err(e) => tracing::debug!(error = %e, "a delayed input was dropped"),
            }
        }
        let dt = self.last_frame.map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_frame = Some(now);
        self.smooth(dt);
    }

    /// Moves the shown state toward the predicted one by `dt` of exponential decay.
    pub fn smooth(&mut self, dt: Duration) {
        let Some(states) = &mut self.states else { return };
        let time = self.config.reconciliation_smoothing_time;
        let t = if time.is_zero() { 1.0 } else { 1.0 - (-LN_100 * dt.as_secs_f32() / time.as_secs_f32()).exp() };
        let d = self.model.distance(&states.shown, &states.current);
        if beyond(d, self.config.snap_threshold) {
            states.shown.clone_from(&states.current);
        } else if t > 0.0 {
            self.model.blend(&mut states.shown, &states.current, t.min(1.0));
        }
        if self.model.distance(&states.shown, &states.current) <= self.config.tolerance {
            states.shown.clone_from(&states.current);
        }
    }

    /// Reconciles with the server's state `server`, in which the server had
    /// processed the inputs up to `last_processed_seq`.
    pub fn reconcile(&mut self, server: &M::State, last_processed_seq: u32) -> Reconciliation {
        let seq = last_processed_seq;
        let Some(states) = &mut self.states else {
            self.states = Some(States {
                confirmed: server.clone(),
                confirmed_seq: seq,
                current: server.clone(),
                shown: server.clone(),
                before: server.clone(),
            });
            self.history.clear();
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            return Reconciliation { seq, confirmed: 0, outcome: ReconcileOutcome::Synced };
        };
        if seq < states.confirmed_seq {
            self.stats.stale += 1;
            return Reconciliation { seq, confirmed: 0, outcome: ReconcileOutcome::Stale };
        }
        if seq >= self.next_seq {
            // A gap: the server processed inputs this predictor never sent.
            let confirmed = self.history.len() as u32;
            self.history.clear();
            states.before.clone_from(&states.current);
            states.confirmed.clone_from(server);
            states.confirmed_seq = seq;
            states.current.clone_from(server);
            let correction = self.model.distance(&states.before, &states.current);
            if beyond(self.model.distance(&states.shown, &states.current), self.config.snap_threshold) {
                states.shown.clone_from(&states.current);
            }
            self.next_seq = seq.saturating_add(1);
            self.stats.resyncs += 1;
            return Reconciliation { seq, confirmed, outcome: ReconcileOutcome::Resynced { correction } };
        }
        let mut confirmed = 0;
        while self.history.front().is_some_and(|e| e.seq < seq) {
            self.history.pop_front();
            confirmed += 1;
        }
        // The prediction the server's state is compared with.
        let error = match self.history.front() {
            Some(e) if e.seq == seq => {
                let error = self.model.distance(&e.state, server);
                self.history.pop_front();
                confirmed += 1;
                Some(error)
            }
            // Nothing new processed: the server's state may still have changed.
            _ if seq == states.confirmed_seq => Some(self.model.distance(&states.confirmed, server)),
            // The entry was dropped by the overflow policy: nothing to compare.
            _ => None,
        };
        states.confirmed.clone_from(server);
        states.confirmed_seq = seq;
        if let Some(error) = error {
            self.stats.checked += 1;
            if error <= self.config.tolerance {
                self.stats.accurate += 1;
                return Reconciliation { seq, confirmed, outcome: ReconcileOutcome::Accurate { error } };
            }
        }
        let mut correction = replay(&self.model, &self.config, &mut self.history, states, &mut self.stats);
        correction.error = error;
        Reconciliation { seq, confirmed, outcome: ReconcileOutcome::Corrected(correction) }
    }

    /// The server refused input `seq` (its reducer failed): it is taken out
    /// and the prediction rolled back to the last server state, with the
    /// remaining inputs replayed.
    pub fn reject(&mut self, seq: u32) -> Rejection {
        let (Some(states), Some(i)) = (&mut self.states, self.history.position(seq)) else {
            return Rejection::NotPending;
        };
        self.history.remove(i);
        self.stats.rejected += 1;
        Rejection::RolledBack(replay(&self.model, &self.config, &mut self.history, states, &mut self.stats))
    }

    /// Forgets every unconfirmed input and starts again from the last server
    /// state (e.g. after the game teleported the entity).
    pub fn resync(&mut self) {
        self.history.clear();
        self.delayed.clear();
        if let Some(states) = &mut self.states {
            states.current.clone_from(&states.confirmed);
            states.shown.clone_from(&states.confirmed);
        }
    }
}

/// Whether distance `d` is beyond `limit`; a NaN (a state made unusable by a
/// bad input) is beyond every limit.
fn beyond(d: f32, limit: f32) -> bool {
    d.is_nan() || d > limit
}

/// Resets the prediction to the last known good state and replays the history
/// on it, rewriting each entry's predicted state in place.
fn replay<M: PredictionModel>(
    model: &M,
    config: &PredictionConfig,
    history: &mut History<M::State, M::Input>,
    states: &mut States<M::State>,
    stats: &mut PredictionStats,
) -> Correction {
    states.before.clone_from(&states.current);
    states.current.clone_from(&states.confirmed);
    let replayed = history.len();
    for i in 0..replayed {
        if let Some(entry) = history.get_mut(i) {
            model.apply(&mut states.current, &entry.input);
            entry.state.clone_from(&states.current);
        }
    }
    let distance = model.distance(&states.before, &states.current);
    // Far, or not comparable (a NaN from a bad input): shown at once.
    let snapped = beyond(model.distance(&states.shown, &states.current), config.snap_threshold);
    if snapped {
        states.shown.clone_from(&states.current);
    }
    let replayed = replayed as u32;
    stats.corrections += 1;
    stats.max_replay = stats.max_replay.max(replayed);
    // A correction out of a NaN state has no size: it is counted, but kept out
    // of the sizes, which it would poison for the rest of the session.
    if distance.is_finite() {
        stats.correction_total += f64::from(distance);
        stats.correction_max = stats.correction_max.max(distance);
    }
    Correction { error: None, distance, replayed, snapped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{Position, Step, Walk};

    fn at(x: f32, y: f32) -> Position {
        Position { x, y }
    }

    fn step(dx: f32) -> Step {
        Step { dx, dy: 0.0 }
    }

    fn predictor(config: PredictionConfig) -> Predictor<Walk> {
        let mut p = Predictor::new(Walk::default(), config).unwrap();
        assert_eq!(p.reconcile(&at(0.0, 0.0), 0).outcome, ReconcileOutcome::Synced);
        p
    }

    #[test]
    fn nothing_is_predicted_before_the_first_server_state() {
        let mut p = Predictor::new(Walk::default(), PredictionConfig::default()).unwrap();
        assert_eq!(p.predict(step(1.0), Instant::now()), Err(PredictionError::NotSynced));
        // A client that restarts continues numbering after the server's.
        p.reconcile(&at(5.0, 0.0), 41);
        assert_eq!(p.predict(step(1.0), Instant::now()), Ok(Some(42)));
        assert_eq!(p.shown(), Some(&at(6.0, 0.0)));
    }

    #[test]
    fn an_input_moves_the_shown_state_at_once_and_an_accurate_ack_changes_nothing() {
        let mut p = predictor(PredictionConfig::default());
        let now = Instant::now();
        assert_eq!(p.predict(step(1.0), now), Ok(Some(1)));
        assert_eq!(p.predict(step(1.0), now), Ok(Some(2)));
        assert_eq!(p.shown(), Some(&at(2.0, 0.0)));
        let r = p.reconcile(&at(1.0, 0.0), 1);
        assert_eq!(r, Reconciliation { seq: 1, confirmed: 1, outcome: ReconcileOutcome::Accurate { error: 0.0 } });
        assert_eq!(p.predicted(), Some(&at(2.0, 0.0)));
        assert_eq!(p.history().len(), 1);
        assert_eq!(p.stats().accuracy(), 1.0);
    }

    #[test]
    fn a_misprediction_resets_to_the_server_and_replays_the_rest() {
        let mut p = predictor(PredictionConfig::default());
        let now = Instant::now();
        for _ in 0..3 {
            p.predict(step(2.0), now).unwrap();
        }
        // The server clamps every step to 1.
        let r = p.reconcile(&at(1.0, 0.0), 1);
        let ReconcileOutcome::Corrected(c) = r.outcome else { panic!("{r:?}") };
        assert_eq!((c.error, c.replayed, c.snapped), (Some(1.0), 2, false));
        assert_eq!(c.distance, 1.0);
        assert_eq!(p.predicted(), Some(&at(5.0, 0.0)));
        assert_eq!(p.history().iter().map(|e| e.state.x).collect::<Vec<_>>(), [3.0, 5.0]);
        // The shown state still is where it was: it is smoothed toward the new one.
        assert_eq!(p.shown(), Some(&at(6.0, 0.0)));
        assert_eq!(p.stats().accuracy(), 0.0);
    }

    #[test]
    fn live_settings_change_and_fixed_ones_are_refused() {
        let mut p = predictor(PredictionConfig::default());
        p.predict(Step { dx: 1.0, dy: 0.0 }, Instant::now()).unwrap();
        let live = PredictionConfig {
            reconciliation_smoothing_time: Duration::from_millis(100),
            snap_threshold: 2.0,
            tolerance: 0.01,
            ..Default::default()
        };
        p.reconfigure(live.clone()).unwrap();
        assert_eq!(p.config(), &live);
        assert_eq!(p.history().len(), 1, "what the history holds stays");
        let bigger = PredictionConfig { max_prediction_history: 512, ..live.clone() };
        assert!(matches!(p.reconfigure(bigger), Err(PredictionError::Config { field: "max_prediction_history", .. })));
        let policy = PredictionConfig { overflow: HistoryOverflow::RejectNew, ..live.clone() };
        assert!(matches!(p.reconfigure(policy), Err(PredictionError::Config { field: "overflow", .. })));
        let invalid = PredictionConfig { snap_threshold: -1.0, ..live.clone() };
        assert!(matches!(p.reconfigure(invalid), Err(PredictionError::Config { field: "snap_threshold", .. })));
        assert_eq!(p.config(), &live, "a refused change leaves the settings as they were");
        // The new snap threshold is in force: a correction of 3 now snaps.
        let r = p.reconcile(&at(4.0, 0.0), 1);
        assert!(matches!(r.outcome, ReconcileOutcome::Corrected(Correction { snapped: true, .. })), "{r:?}");
    }

    #[test]
    fn a_state_made_unusable_by_a_bad_input_is_not_kept_on_screen() {
        let mut p = predictor(PredictionConfig::default());
        p.predict(Step { dx: f32::NAN, dy: 0.0 }, Instant::now()).unwrap();
        assert!(p.shown().unwrap().x.is_nan());
        // The server refuses it: the rollback shows the last good state at once.
        assert!(matches!(p.reject(1), Rejection::RolledBack(Correction { snapped: true, .. })));
        assert_eq!(p.shown(), Some(&at(0.0, 0.0)));
        // Counted, but its size (none) does not poison the correction figures.
        let stats = p.stats();
        assert_eq!((stats.corrections, stats.correction_total, stats.correction_max), (1, 0.0, 0.0));
    }

    #[test]
    fn a_large_correction_snaps() {
        let mut p = predictor(PredictionConfig { snap_threshold: 3.0, ..Default::default() });
        p.predict(step(1.0), Instant::now()).unwrap();
        let r = p.reconcile(&at(50.0, 0.0), 1);
        assert!(matches!(r.outcome, ReconcileOutcome::Corrected(Correction { snapped: true, .. })), "{r:?}");
        assert_eq!(p.shown(), Some(&at(50.0, 0.0)));
    }

    #[test]
    fn smoothing_is_frame_rate_independent_and_reaches_the_target() {
        let config =
            PredictionConfig { reconciliation_smoothing_time: Duration::from_millis(200), ..Default::default() };
        let run = |frames: u32| {
            let mut p = predictor(config.clone());
            let t0 = Instant::now();
            p.advance(t0, |_, _| {});
            p.predict(step(4.0), t0).unwrap();
            p.reconcile(&at(1.0, 0.0), 1); // shown at 4, predicted at 1
            let dt = Duration::from_millis(100) / frames;
            for i in 1..=frames {
                p.advance(t0 + dt * i, |_, _| {});
            }
            p.shown().unwrap().x
        };
        // Half the smoothing time: the error is down to 10 %, whatever the frame rate.
        let (slow, fast) = (run(2), run(50));
        assert!((slow - 1.3).abs() < 1e-3 && (fast - 1.3).abs() < 1e-3, "{slow} {fast}");
        let mut p = predictor(config);
        let t0 = Instant::now();
        p.advance(t0, |_, _| {});
        p.predict(step(4.0), t0).unwrap();
        p.reconcile(&at(1.0, 0.0), 1);
        p.advance(t0 + Duration::from_millis(600), |_, _| {});
        assert_eq!(p.shown(), p.predicted(), "within tolerance the shown state is put on the target");
    }

    #[test]
    fn a_rejected_input_is_rolled_back_and_the_others_replayed() {
        let mut p = predictor(PredictionConfig::default());
        let now = Instant::now();
        for dx in [1.0, 10.0, 1.0] {
            p.predict(step(dx), now).unwrap();
        }
        let Rejection::RolledBack(c) = p.reject(2) else { panic!() };
        assert_eq!((c.replayed, c.distance), (2, 10.0));
        assert_eq!(p.predicted(), Some(&at(2.0, 0.0)));
        assert_eq!(p.history().iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(p.reject(2), Rejection::NotPending);
        // The server never processed 2; its state after 3 matches.
        let r = p.reconcile(&at(2.0, 0.0), 3);
        assert_eq!(r.outcome, ReconcileOutcome::Accurate { error: 0.0 });
        assert!(p.history().is_empty());
    }

    #[test]
    fn stale_states_are_ignored_and_a_gap_resynchronises() {
        let mut p = predictor(PredictionConfig::default());
        let now = Instant::now();
        for _ in 0..3 {
            p.predict(step(1.0), now).unwrap();
        }
        p.reconcile(&at(2.0, 0.0), 2);
        assert_eq!(p.reconcile(&at(1.0, 0.0), 1).outcome, ReconcileOutcome::Stale);
        assert_eq!(p.predicted(), Some(&at(3.0, 0.0)));
        // The server processed input 9, which this client never sent.
        let r = p.reconcile(&at(20.0, 0.0), 9);
        assert!(matches!(r.outcome, ReconcileOutcome::Resynced { .. }), "{r:?}");
        assert!(p.history().is_empty());
        assert_eq!(p.predicted(), Some(&at(20.0, 0.0)));
        assert_eq!(p.predict(step(1.0), now), Ok(Some(10)));
    }

    #[test]
    fn overflow_drops_the_oldest_or_refuses_the_new() {
        let mut p = predictor(PredictionConfig { max_prediction_history: 2, ..Default::default() });
        let now = Instant::now();
        for _ in 0..3 {
            p.predict(step(1.0), now).unwrap();
        }
        assert_eq!(p.history().iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(p.stats().overflowed, 1);
        // The ack of the dropped input has nothing to compare: reset and replay.
        let r = p.reconcile(&at(1.0, 0.0), 1);
        assert!(matches!(r.outcome, ReconcileOutcome::Corrected(Correction { error: None, replayed: 2, .. })));
        assert_eq!(p.predicted(), Some(&at(3.0, 0.0)));

        let config =
            PredictionConfig { max_prediction_history: 2, overflow: HistoryOverflow::RejectNew, ..Default::default() };
        let mut p = predictor(config);
        p.predict(step(1.0), now).unwrap();
        p.predict(step(1.0), now).unwrap();
        assert_eq!(p.predict(step(1.0), now), Err(PredictionError::HistoryFull { capacity: 2 }));
        assert_eq!(p.predicted(), Some(&at(2.0, 0.0)));
    }

    #[test]
    fn a_delayed_input_is_applied_and_sent_when_due() {
        let config = PredictionConfig { input_delay: Duration::from_millis(50), ..Default::default() };
        let mut p = predictor(config);
        let t0 = Instant::now();
        assert_eq!(p.predict(step(1.0), t0), Ok(None));
        let mut sent = Vec::new();
        p.advance(t0 + Duration::from_millis(49), |seq, _| sent.push(seq));
        assert!(sent.is_empty() && p.predicted() == Some(&at(0.0, 0.0)));
        p.advance(t0 + Duration::from_millis(50), |seq, _| sent.push(seq));
        assert_eq!(sent, [1]);
        assert_eq!(p.predicted(), Some(&at(1.0, 0.0)));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        for (config, field) in [
            (PredictionConfig { max_prediction_history: 0, ..Default::default() }, "max_prediction_history"),
            (PredictionConfig { snap_threshold: f32::NAN, ..Default::default() }, "snap_threshold"),
            (PredictionConfig { tolerance: -1.0, ..Default::default() }, "tolerance"),
        ] {
            match Predictor::new(Walk::default(), config) {
                Err(PredictionError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
