//! Latency histograms: log-linear buckets in microseconds.
//!
//! Values below 8 µs have a bucket each; above, every power of two is cut into
//! 8 equal buckets, so a bucket's upper bound is at most 12.5 % above its lower
//! bound. A percentile read from the buckets is therefore within 12.5 % of the
//! exact one (and is clamped to the exact minimum and maximum, which are kept).
//! Count, sum, minimum and maximum are exact.
//!
//! [`AtomicHistogram`] is what the recorder writes into (lock-free, no
//! allocation per value); [`LatencyHistogram`] is the plain, sparse value a
//! sampling interval keeps and windows merge.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two (as a bit count): 8.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Number of buckets: the exact ones below `SUB`, then `SUB` per power of two up to 2^63.
pub const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

/// The bucket of a value.
pub fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(e - SUB_BITS) * SUB + sub) as usize
}

/// The smallest value of a bucket.
pub fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    (SUB + sub) << (e - u64::from(SUB_BITS))
}

/// The largest value of a bucket.
pub fn bucket_high(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        return u64::MAX;
    }
    bucket_low(i + 1) - 1
}

/// A sparse latency histogram (microseconds): what one sampling interval holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// (bucket, count), sorted by bucket, no zero counts.
    buckets: Vec<(u16, u64)>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value.
    pub fn record(&mut self, micros: u64) {
        self.add_bucket(bucket_of(micros), 1);
        self.note(micros, micros, micros, 1);
    }

    fn note(&mut self, min: u64, max: u64, sum: u64, count: u64) {
        if self.count == 0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.sum = self.sum.saturating_add(sum);
        self.count += count;
    }

    fn add_bucket(&mut self, bucket: usize, n: u64) {
        let b = bucket as u16;
        match self.buckets.binary_search_by_key(&b, |&(i, _)| i) {
            Ok(at) => self.buckets[at].1 += n,
            Err(at) => self.buckets.insert(at, (b, n)),
        }
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.count == 0 {
            return;
        }
        for &(b, n) in &other.buckets {
            self.add_bucket(usize::from(b), n);
        }
        self.note(other.min, other.max, other.sum, other.count);
    }

    /// How many values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact mean, if any value.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The exact maximum, if any value.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The exact minimum, if any value.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// The `q`-th percentile (0 ≤ q ≤ 100, nearest rank): the upper bound of
    /// the bucket holding that rank, clamped to the exact minimum and maximum
    /// (the first and last ranks are the exact minimum and maximum).
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 100.0 } else { q.clamp(0.0, 100.0) };
        let rank = ((q / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        // The first and last ranks are known exactly.
        if rank <= 1 {
            return Some(self.min);
        }
        if rank >= self.count {
            return Some(self.max);
        }
        let mut seen = 0;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(bucket_high(usize::from(b)).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The recorder's histogram: fixed buckets of atomics, written without a lock.
#[derive(Debug)]
pub struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Records one value.
    #[inline]
    pub fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros)].fetch_add(1, Relaxed);
        self.sum.fetch_add(micros, Relaxed);
        self.min.fetch_min(micros, Relaxed);
        self.max.fetch_max(micros, Relaxed);
    }

    /// What was recorded since the last `take`, and starts afresh.
    pub fn take(&self) -> LatencyHistogram {
        self.read(true)
    }

    /// What was recorded since the last `take`, leaving it.
    pub fn peek(&self) -> LatencyHistogram {
        self.read(false)
    }

    fn read(&self, reset: bool) -> LatencyHistogram {
        let get = |a: &AtomicU64, fresh: u64| if reset { a.swap(fresh, Relaxed) } else { a.load(Relaxed) };
        let mut h = LatencyHistogram::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let n = get(b, 0);
            if n > 0 {
                h.buckets.push((i as u16, n));
                h.count += n;
            }
        }
        let (sum, min, max) = (get(&self.sum, 0), get(&self.min, u64::MAX), get(&self.max, 0));
        if h.count > 0 {
            // A value recorded during the read may be in the buckets and not in
            // the extremes (or the reverse): keep them consistent with the buckets.
            let low = h.buckets.first().map_or(0, |&(b, _)| bucket_low(usize::from(b)));
            let high = h.buckets.last().map_or(0, |&(b, _)| bucket_high(usize::from(b)));
            h.min = if min == u64::MAX { low } else { min.clamp(low, high) };
            h.max = max.clamp(low, high).max(h.min);
            h.sum = sum;
        }
        h
    }
}

/// Seconds (as the facade records them) to whole microseconds; `None` for
/// what cannot be a duration.
#[inline]
pub fn seconds_to_micros(seconds: f64) -> Option<u64> {
    if seconds.is_finite() && seconds >= 0.0 {
        Some((seconds * 1e6).round() as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(7), 7);
        assert_eq!(bucket_of(8), 8);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(17), 16);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_low(i)), i, "low of {i}");
            assert_eq!(bucket_of(bucket_high(i)), i, "high of {i}");
            assert_eq!(bucket_high(i) + 1, bucket_low(i + 1));
        }
    }

    #[test]
    fn known_latencies_give_known_statistics() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.mean(), Some(50_500.0));
        assert_eq!(h.max(), Some(100_000));
        assert_eq!(h.min(), Some(1000));
        let p50 = h.percentile(50.0).unwrap() as f64;
        assert!((50_000.0..=50_000.0 * 1.125).contains(&p50), "{p50}");
        let p99 = h.percentile(99.0).unwrap() as f64;
        assert!((99_000.0..=100_000.0).contains(&p99), "{p99}");
        assert_eq!(h.percentile(100.0), Some(100_000));
        assert_eq!(h.percentile(0.0), Some(1000));
        assert_eq!(LatencyHistogram::new().percentile(50.0), None);
    }

    #[test]
    fn the_atomic_histogram_hands_over_what_it_holds_once() {
        let a = AtomicHistogram::default();
        for v in [5, 300, 300, 70_000] {
            a.record(v);
        }
        let peeked = a.peek();
        let taken = a.take();
        assert_eq!(peeked, taken);
        assert_eq!(taken.count(), 4);
        assert_eq!(taken.min(), Some(5));
        assert_eq!(taken.max(), Some(70_000));
        assert_eq!(taken.mean(), Some(70_605.0 / 4.0));
        assert_eq!(a.take().count(), 0);
    }

    #[test]
    fn bad_seconds_are_not_durations() {
        assert_eq!(seconds_to_micros(0.25), Some(250_000));
        assert_eq!(seconds_to_micros(-1.0), None);
        assert_eq!(seconds_to_micros(f64::NAN), None);
        assert_eq!(seconds_to_micros(f64::INFINITY), None);
    }

    fn exact_percentile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank - 1]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Feature: spacetimedb-integration, Property 16: Performance Monitoring and Alerting
        // (percentiles): any percentile read from the histogram, however its values were
        // split into merged parts, is within one bucket (12.5 %) of the exact
        // nearest-rank percentile; count, mean, minimum and maximum are exact.
        #[test]
        fn prop_percentiles_match_the_exact_model(
            values in proptest::collection::vec(0u64..10_000_000, 1..400),
            split in 0usize..400,
            q in 0.0f64..=100.0,
        ) {
            let split = split.min(values.len());
            let (mut a, b) = (LatencyHistogram::new(), AtomicHistogram::default());
            for &v in &values[..split] { a.record(v); }
            for &v in &values[split..] { b.record(v); }
            a.merge(&b.take());
            let mut sorted = values.clone();
            sorted.sort_unstable();
            prop_assert_eq!(a.count(), values.len() as u64);
            prop_assert_eq!(a.min(), sorted.first().copied());
            prop_assert_eq!(a.max(), sorted.last().copied());
            let sum: u64 = values.iter().sum();
            prop_assert_eq!(a.mean(), Some(sum as f64 / values.len() as f64));
            let exact = exact_percentile(&sorted, q);
            let got = a.percentile(q).unwrap();
            prop_assert!(got >= exact, "p{q}: {got} below exact {exact}");
            prop_assert!(got as f64 <= (exact as f64 * 1.125).max(exact as f64 + 1.0), "p{q}: {got} too far above exact {exact}");
        }
    }
}
