//! Time-windowed statistics: a bounded ring of sampling intervals.
//!
//! The recorder accumulates events between two ticks; each tick closes the
//! interval into a [`Sample`] and pushes it here. A question about the last
//! `window` merges the intervals that end inside it (whole intervals: the
//! sampling interval is the granularity) plus, if given, the interval still
//! open. Time is passed in, so tests never wait.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::histogram::LatencyHistogram;

/// What the recorder counts for the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Count {
    /// Reducer calls accepted.
    ReducerCalls,
    /// Reducer calls that committed.
    ReducerCommitted,
    /// Reducer calls that ended otherwise (failed, out of energy, unknown, dropped).
    ReducerFailed,
    /// Subscription updates (transactions) applied.
    Updates,
    /// Rows applied.
    Rows,
    /// Bytes received from the server.
    BytesReceived,
    /// Sessions re-established after a loss.
    Reconnects,
    /// Circuit breaker trips.
    BreakerTrips,
    /// Predictions checked.
    Predictions,
    /// Predictions found wrong.
    Mispredictions,
    /// Prediction reconciliations.
    Reconciliations,
}

impl Count {
    /// How many kinds.
    pub const N: usize = 11;
    /// Every kind, in order.
    pub const ALL: [Count; Count::N] = [
        Count::ReducerCalls,
        Count::ReducerCommitted,
        Count::ReducerFailed,
        Count::Updates,
        Count::Rows,
        Count::BytesReceived,
        Count::Reconnects,
        Count::BreakerTrips,
        Count::Predictions,
        Count::Mispredictions,
        Count::Reconciliations,
    ];
}

/// Counters of one interval (or a merge of several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; Count::N]);

impl Counts {
    /// One counter.
    pub fn get(&self, c: Count) -> u64 {
        self.0[c as usize]
    }

    /// Adds to one counter.
    pub fn add(&mut self, c: Count, n: u64) {
        self.0[c as usize] = self.0[c as usize].saturating_add(n);
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for c in Count::ALL {
            self.add(c, other.get(c));
        }
    }
}

/// What happened in one sampling interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Network round trips (microseconds).
    pub latency: LatencyHistogram,
    /// Counters.
    pub counts: Counts,
    /// The reducer queue's depth when last set, if it was.
    pub queue_depth: Option<f64>,
}

impl Sample {
    /// Adds a later sample: sums, and the later gauge value.
    pub fn merge(&mut self, later: &Sample) {
        self.latency.merge(&later.latency);
        self.counts.merge(&later.counts);
        if later.queue_depth.is_some() {
            self.queue_depth = later.queue_depth;
        }
    }
}

/// One closed sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// When it opened.
    pub start: Instant,
    /// When it closed.
    pub end: Instant,
    /// What happened in it.
    pub sample: Sample,
}

/// A merge of the intervals of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Windowed {
    /// The start of the oldest interval merged (or `end` if none).
    pub start: Instant,
    /// The time asked about.
    pub end: Instant,
    /// The merged sample.
    pub sample: Sample,
}

impl Windowed {
    /// The time covered.
    pub fn period(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// The bounded ring of closed intervals, oldest first.
#[derive(Debug, Clone)]
pub struct StatsWindow {
    intervals: VecDeque<Interval>,
    capacity: usize,
}

impl StatsWindow {
    /// A ring keeping the last `capacity` intervals (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { intervals: VecDeque::with_capacity(capacity.min(4096)), capacity }
    }

    /// How many intervals it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the bound, dropping the oldest intervals beyond it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.intervals.len() > self.capacity {
            self.intervals.pop_front();
        }
    }

    /// Closes an interval into the ring; the oldest falls out when full.
    pub fn push(&mut self, start: Instant, end: Instant, sample: Sample) {
        if self.intervals.len() == self.capacity {
            self.intervals.pop_front();
        }
        self.intervals.push_back(Interval { start, end, sample });
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.intervals.clear();
    }

    /// The intervals kept, oldest first.
    pub fn intervals(&self) -> impl Iterator<Item = &Interval> {
        self.intervals.iter()
    }

    /// Merges the intervals that end within `window` before `now` (and after
    /// its start), and `open`, the interval still accumulating since its start.
    pub fn over(&self, now: Instant, window: Duration, open: Option<(Instant, &Sample)>) -> Windowed {
        let from = now.checked_sub(window);
        let mut merged = Sample::default();
        let mut start = None;
        for interval in &self.intervals {
            if from.is_some_and(|from| interval.end <= from) {
                continue;
            }
            start.get_or_insert(interval.start);
            merged.merge(&interval.sample);
        }
        if let Some((opened, sample)) = open {
            start.get_or_insert(opened);
            merged.merge(sample);
        }
        Windowed { start: start.unwrap_or(now).min(now), end: now, sample: merged }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(latencies: &[u64], updates: u64) -> Sample {
        let mut s = Sample::default();
        for &l in latencies {
            s.latency.record(l);
        }
        s.counts.add(Count::Updates, updates);
        s
    }

    #[test]
    fn a_window_merges_only_the_intervals_ending_inside_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = StatsWindow::new(10);
        w.push(t0, t0 + s, sample(&[1000], 5));
        w.push(t0 + s, t0 + 2 * s, sample(&[2000, 4000], 7));
        w.push(t0 + 2 * s, t0 + 3 * s, sample(&[], 1));
        let all = w.over(t0 + 3 * s, Duration::from_secs(60), None);
        assert_eq!(all.sample.counts.get(Count::Updates), 13);
        assert_eq!(all.sample.latency.count(), 3);
        assert_eq!(all.period(), 3 * s);
        let last_two = w.over(t0 + 3 * s, 2 * s, None);
        assert_eq!(last_two.sample.counts.get(Count::Updates), 8);
        assert_eq!(last_two.sample.latency.max(), Some(4000));
        assert_eq!(last_two.start, t0 + s);
        let with_open = w.over(t0 + 3 * s + s / 2, s, Some((t0 + 3 * s, &sample(&[9000], 2))));
        assert_eq!(with_open.sample.counts.get(Count::Updates), 1 + 2, "the last closed one and the open one");
        assert_eq!(with_open.sample.latency.max(), Some(9000));
        assert_eq!(with_open.period(), s + s / 2);
        let only_open = w.over(t0 + 4 * s + s / 2, s, Some((t0 + 3 * s, &sample(&[9000], 2))));
        assert_eq!(only_open.sample.counts.get(Count::Updates), 2, "the last closed interval ended 1.5 s ago");
        assert_eq!(only_open.start, t0 + 3 * s);
        let empty = StatsWindow::new(3).over(t0, s, None);
        assert_eq!(empty.period(), Duration::ZERO);
        assert_eq!(empty.sample, Sample::default());
    }

    #[test]
    fn the_ring_is_bounded_and_drops_the_oldest() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = StatsWindow::new(2);
        for i in 0..5u32 {
            w.push(t0 + s * i, t0 + s * (i + 1), sample(&[], u64::from(i)));
        }
        let kept: Vec<u64> = w.intervals().map(|i| i.sample.counts.get(Count::Updates)).collect();
        assert_eq!(kept, vec![3, 4]);
        w.set_capacity(1);
        assert_eq!(w.intervals().count(), 1);
        w.clear();
        assert_eq!(w.intervals().count(), 0);
    }

    #[test]
    fn the_gauge_keeps_its_latest_value() {
        let mut a = Sample { queue_depth: Some(3.0), ..Sample::default() };
        a.merge(&Sample::default());
        assert_eq!(a.queue_depth, Some(3.0));
        a.merge(&Sample { queue_depth: Some(1.0), ..Sample::default() });
        assert_eq!(a.queue_depth, Some(1.0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Feature: spacetimedb-integration, Property 16: Performance Monitoring and Alerting
        // (windowing): events recorded at any times, closed into intervals every
        // `tick` and kept in a bounded ring, give over any window exactly the
        // counts, maximum and mean of a brute-force model over the same events
        // (those of the intervals ending inside the window and still kept).
        #[test]
        fn prop_windows_match_a_brute_force_model(
            events in proptest::collection::vec((0u64..20_000, 0u64..1_000_000, 0u64..5), 0..300),
            tick_ms in 50u64..2_000,
            window_ms in 1u64..30_000,
            capacity in 1usize..40,
            elapsed_extra in 0u64..3_000,
        ) {
            let t0 = Instant::now();
            let at = |ms: u64| t0 + Duration::from_millis(ms);
            let mut events = events;
            events.sort_by_key(|e| e.0);
            let now_ms = events.last().map_or(0, |e| e.0) + elapsed_extra;
            // The system under test: accumulate, close at each tick.
            let mut w = StatsWindow::new(capacity);
            let mut open = Sample::default();
            let mut opened = 0u64;
            let mut next = events.iter().peekable();
            while opened + tick_ms <= now_ms {
                let close = opened + tick_ms;
                while let Some(&&(t, latency, updates)) = next.peek() {
                    if t >= close { break; }
                    open.latency.record(latency);
                    open.counts.add(Count::Updates, updates);
                    next.next();
                }
                w.push(at(opened), at(close), std::mem::take(&mut open));
                opened = close;
            }
            for &(_, latency, updates) in next {
                open.latency.record(latency);
                open.counts.add(Count::Updates, updates);
            }
            let got = w.over(at(now_ms), Duration::from_millis(window_ms), Some((at(opened), &open)));

            // The model: interval k is [k*tick, (k+1)*tick); the closed ones are
            // those with (k+1)*tick <= now; kept: the last `capacity`; in the
            // window: those ending after now - window; the open one always.
            let closed = now_ms / tick_ms;
            let first_kept = closed.saturating_sub(capacity as u64);
            let from = now_ms as i64 - window_ms as i64;
            let in_window = |k: u64| k >= closed || (k >= first_kept && ((k + 1) * tick_ms) as i64 > from);
            let chosen: Vec<&(u64, u64, u64)> = events.iter().filter(|e| in_window(e.0 / tick_ms)).collect();
            let first_k = (0..=closed).find(|&k| in_window(k)).unwrap_or(closed);
            prop_assert_eq!(got.start, at(first_k * tick_ms));
            prop_assert_eq!(got.sample.counts.get(Count::Updates), chosen.iter().map(|e| e.2).sum::<u64>());
            prop_assert_eq!(got.sample.latency.count(), chosen.len() as u64);
            prop_assert_eq!(got.sample.latency.max(), chosen.iter().map(|e| e.1).max());
            let mean = (!chosen.is_empty()).then(|| chosen.iter().map(|e| e.1).sum::<u64>() as f64 / chosen.len() as f64);
            prop_assert_eq!(got.sample.latency.mean(), mean);
        }
    }
}
