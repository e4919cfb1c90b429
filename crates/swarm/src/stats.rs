//! What a run measures: each bot's live figures ([`BotStats`], shared with
//! the view), the call round trips of all bots, and the timeline the report
//! plots (one [`Sample`] a second). Plain types; time is passed in.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::ledger::CallTotals;

/// Where a bot is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BotState {
    /// Its client is starting.
    #[default]
    Connecting,
    /// Connected, joining its map.
    Joining,
    /// Moving and acting.
    Playing,
    /// Its session was lost; the client is reconnecting on its own.
    Reconnecting,
    /// The faults are over: no more inputs, catching up.
    Settling,
    /// Its client could not start.
    Failed,
}

impl BotState {
    /// A short word for the view.
    pub fn word(self) -> &'static str {
        match self {
            BotState::Connecting => "connecting",
            BotState::Joining => "joining",
            BotState::Playing => "playing",
            BotState::Reconnecting => "reconnecting",
            BotState::Settling => "settling",
            BotState::Failed => "failed",
        }
    }
}

/// One bot's figures, as the view shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BotStats {
    /// Its name (also its player's).
    pub name: String,
    /// Its state.
    pub state: BotState,
    /// Its identity, once known (hex).
    pub identity: Option<String>,
    /// Its map.
    pub map_id: u32,
    /// The connection's smoothed ping round trip.
    pub latency_ms: Option<f64>,
    /// Row changes heard over the last second.
    pub updates_per_s: f64,
    /// Row changes heard in all.
    pub rows: u64,
    /// Moves predicted (sent).
    pub moves: u64,
    /// Moves the server refused or that never ran (rolled back).
    pub moves_rejected: u64,
    /// Server states compared with a prediction.
    pub checked: u64,
    /// ... of which the prediction was right.
    pub accurate: u64,
    /// Corrections (mispredictions replayed).
    pub corrections: u64,
    /// Sessions lost and made again.
    pub reconnects: u32,
    /// Calls waiting in the client's queue or in flight.
    pub queue: usize,
    /// The sequenced actions.
    pub calls: CallTotals,
    /// Everything it sent is answered and its prediction confirmed (at the last sample).
    pub caught_up: bool,
}

impl BotStats {
    /// Share of right predictions (1 when nothing was checked).
    pub fn accuracy(&self) -> f64 {
        if self.checked == 0 {
            1.0
        } else {
            self.accurate as f64 / self.checked as f64
        }
    }
}

/// A bot's figures behind a lock, shared by the bot and the watchers.
pub type SharedStats = Arc<Mutex<BotStats>>;

/// Locks shared figures (a panic elsewhere leaves them readable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Events of all bots that the timeline needs between samples.
#[derive(Debug, Default)]
pub struct Tape {
    /// Call latencies (from the call to its answer) since the last sample, in ms.
    pub round_trips: Vec<f64>,
    /// The call latencies of the run: (seconds since the start it was
    /// answered, ms); all of them up to [`ROUND_TRIPS_KEPT`], then a uniform
    /// sample of that many (a reservoir), so that a long soak's memory stays flat.
    pub all_round_trips: Vec<(f64, f64)>,
    /// Round trips recorded in all.
    pub round_trips_seen: u64,
    /// Recoveries: (seconds since the start it recovered, ms it took).
    pub recoveries: Vec<(f64, f64)>,
}

/// How many round trips the run keeps for the report's per-phase percentiles.
pub const ROUND_TRIPS_KEPT: usize = 100_000;

impl Tape {
    /// Records a call answered at `t` (s since the start) after `ms`.
    pub fn round_trip(&mut self, t: f64, ms: f64) {
        self.round_trips.push(ms);
        self.round_trips_seen += 1;
        if self.all_round_trips.len() < ROUND_TRIPS_KEPT {
            self.all_round_trips.push((t, ms));
        } else {
            // Algorithm R: the n-th replaces a random kept one with probability kept/n.
            let j = crate::rng::SplitMix64(self.round_trips_seen).next_u64() % self.round_trips_seen;
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.all_round_trips.get_mut(j)) {
                *slot = (t, ms);
            }
        }
    }
}

/// The tape, shared by all bots.
pub type SharedTape = Arc<Mutex<Tape>>;

/// One second of the run, for the report's plots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// The phase's name.
    pub phase: String,
    /// The fault on, if any.
    pub fault: Option<String>,
    /// Call round trip percentiles over this second, in ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Bots connected.
    pub connected: usize,
    /// Reconnects so far (all bots).
    pub reconnects: u64,
    /// Row changes per second (all bots).
    pub rows_per_s: f64,
    /// Rows synced so far (all bots).
    pub rows: u64,
    /// Share of right predictions over this second.
    pub accuracy: Option<f64>,
    /// Corrections over this second.
    pub corrections: u64,
    /// Calls queued or in flight (all bots).
    pub queue: usize,
    /// Calls sent so far (actions and moves).
    pub sent: u64,
    /// Calls acknowledged so far.
    pub acknowledged: u64,
}

/// The percentile `q` (0 to 1) of `values` (nearest rank); `None` if empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Totals across bots at one moment (what the timeline takes differences of).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Bots connected.
    pub connected: usize,
    /// Reconnects.
    pub reconnects: u64,
    /// Rows.
    pub rows: u64,
    /// Checks.
    pub checked: u64,
    /// Right checks.
    pub accurate: u64,
    /// Corrections.
    pub corrections: u64,
    /// Queue depth.
    pub queue: usize,
    /// Calls sent (actions and moves).
    pub sent: u64,
    /// Calls acknowledged (actions answered, moves not rejected).
    pub acknowledged: u64,
}

impl Totals {
    /// Adds the bots up.
    pub fn of(bots: &[BotStats]) -> Self {
        let mut t = Totals::default();
        for b in bots {
            t.connected += usize::from(matches!(b.state, BotState::Playing | BotState::Settling | BotState::Joining));
            t.reconnects += u64::from(b.reconnects);
            t.rows += b.rows;
            t.checked += b.checked;
            t.accurate += b.accurate;
            t.corrections += b.corrections;
            t.queue += b.queue;
            t.sent += b.calls.sent + b.moves;
            t.acknowledged += b.calls.acknowledged + b.moves.saturating_sub(b.moves_rejected);
        }
        t
    }
}

/// Makes the timeline: one [`Sample`] per call of [`Timeline::sample`].
#[derive(Debug, Default)]
pub struct Timeline {
    last: Totals,
    last_t: Duration,
    /// The samples so far.
    pub samples: Vec<Sample>,
}

impl Timeline {
    /// Records the second ending at `t`: `now` are the bots' totals, `round_trips` the calls' since the last sample.
    pub fn sample(&mut self, t: Duration, phase: &str, fault: Option<String>, now: Totals, round_trips: &[f64]) {
        let dt = (t.saturating_sub(self.last_t)).as_secs_f64().max(1e-3);
        let checked = now.checked.saturating_sub(self.last.checked);
        let accurate = now.accurate.saturating_sub(self.last.accurate);
        self.samples.push(Sample {
            t: t.as_secs_f64(),
            phase: phase.to_string(),
            fault,
            p50_ms: percentile(round_trips, 0.5),
            p95_ms: percentile(round_trips, 0.95),
            p99_ms: percentile(round_trips, 0.99),
            connected: now.connected,
            reconnects: now.reconnects,
            rows_per_s: now.rows.saturating_sub(self.last.rows) as f64 / dt,
            rows: now.rows,
            accuracy: (checked > 0).then(|| accurate as f64 / checked as f64),
            corrections: now.corrections.saturating_sub(self.last.corrections),
            queue: now.queue,
            sent: now.sent,
            acknowledged: now.acknowledged,
        });
        self.last = now;
        self.last_t = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tape_keeps_a_bounded_sample_of_the_round_trips() {
        let mut tape = Tape::default();
        let n = ROUND_TRIPS_KEPT as u64 * 3;
        for i in 0..n {
            tape.round_trip(i as f64, 1.0);
        }
        assert_eq!(tape.all_round_trips.len(), ROUND_TRIPS_KEPT);
        assert_eq!(tape.round_trips_seen, n);
        // A uniform sample: about a third from each third of the run.
        let late = tape.all_round_trips.iter().filter(|(t, _)| *t >= (2 * n / 3) as f64).count();
        assert!((late as f64 / ROUND_TRIPS_KEPT as f64 - 1.0 / 3.0).abs() < 0.02, "{late}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_timeline_takes_rates_over_each_second() {
        let mut tl = Timeline::default();
        let a = Totals { rows: 100, checked: 10, accurate: 9, corrections: 1, ..Totals::default() };
        tl.sample(Duration::from_secs(1), "start", None, a, &[10.0, 20.0]);
        let b = Totals { rows: 300, checked: 20, accurate: 19, corrections: 1, ..Totals::default() };
        tl.sample(Duration::from_secs(2), "bad", Some("cut".into()), b, &[]);
        assert_eq!(tl.samples[0].rows_per_s, 100.0);
        assert_eq!(tl.samples[1].rows_per_s, 200.0);
        assert_eq!(tl.samples[1].accuracy, Some(1.0));
        assert_eq!(tl.samples[1].corrections, 0);
        assert_eq!(tl.samples[0].p50_ms, Some(10.0));
        assert_eq!(tl.samples[1].p50_ms, None);
    }

    #[test]
    fn totals_add_the_bots_up() {
        let mut a = BotStats { state: BotState::Playing, rows: 5, moves: 10, moves_rejected: 1, ..BotStats::default() };
        a.calls.sent = 3;
        a.calls.acknowledged = 2;
        let b = BotStats { state: BotState::Reconnecting, reconnects: 2, ..BotStats::default() };
        let t = Totals::of(&[a, b]);
        assert_eq!((t.connected, t.reconnects, t.rows, t.sent, t.acknowledged), (1, 2, 5, 13, 11));
    }
}
