//! Our `metrics::Recorder`: feeds the windows, and fans out to Prometheus
//! (the `prometheus` feature).
//!
//! The facade asks the recorder for a handle on *every* `counter!`/`histogram!`
//! call, so registering must be cheap: the series the windows need (see
//! [`spacelink_connection::metric_names`]) map by name to handles built once,
//! whose updates are relaxed atomic adds into the [`Sink`]; nothing is
//! allocated per event. With an exporter, the combined handle of each key
//! (ours and the exporter's, fanned out) is built on first use and cached, so
//! a later event costs one read lock and a lookup by the key's precomputed
//! hash. Series the windows do not use go to the exporter alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
#[cfg(feature = "prometheus")]
use std::sync::RwLock;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use spacelink_connection::metric_names as names;
#[cfg(feature = "prometheus")]
use spacelink_connection::recording::{Both, KeyMap};

/// The Prometheus exporter's recorder (the `prometheus` feature).
#[cfg(feature = "prometheus")]
pub type Exporter = metrics_exporter_prometheus::PrometheusRecorder;

/// No exporter without the `prometheus` feature (a type with no value).
#[cfg(not(feature = "prometheus"))]
#[derive(Debug)]
pub enum Exporter {}

use crate::histogram::{seconds_to_micros, AtomicHistogram};
use crate::window::{Count, Counts, Sample};

/// Where the recorder's handles write: atomics the telemetry actor drains at
/// each tick.
#[derive(Debug)]
pub struct Sink {
    enabled: AtomicBool,
    counts: [AtomicU64; Count::N],
    latency: AtomicHistogram,
    /// The queue depth gauge as f64 bits; `NO_VALUE` until set.
    queue_depth: AtomicU64,
}

const NO_VALUE: u64 = u64::MAX; // a NaN pattern no gauge stores

impl Default for Sink {
    fn default() -> Self {
        Self {
            enabled: AtomicBool::new(true),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: AtomicHistogram::default(),
            queue_depth: AtomicU64::new(NO_VALUE),
        }
    }
}

impl Sink {
    /// Whether events are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Starts or stops recording (the exporter's series go on).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    /// What was recorded since the last take, and starts afresh.
    pub fn take(&self) -> Sample {
        self.read(true)
    }

    /// What was recorded since the last take, leaving it.
    pub fn peek(&self) -> Sample {
        self.read(false)
    }

    fn read(&self, reset: bool) -> Sample {
        let mut counts = Counts::default();
        for c in Count::ALL {
            let a = &self.counts[c as usize];
            counts.add(c, if reset { a.swap(0, Relaxed) } else { a.load(Relaxed) });
        }
        let depth = self.queue_depth.load(Relaxed);
        Sample {
            latency: if reset { self.latency.take() } else { self.latency.peek() },
            counts,
            queue_depth: (depth != NO_VALUE).then(|| f64::from_bits(depth)),
        }
    }

    #[inline]
    fn add(&self, c: Count, n: u64) {
        if self.enabled() {
            self.counts[c as usize].fetch_add(n, Relaxed);
        }
    }
}

#[derive(Debug)]
struct CountHandle(Arc<Sink>, Count);

impl CounterFn for CountHandle {
    fn increment(&self, value: u64) {
        self.0.add(self.1, value);
    }

    fn absolute(&self, _value: u64) {
        // Windows count increments; an absolute value has no interval.
    }
}

#[derive(Debug)]
struct QueueDepthHandle(Arc<Sink>);

impl QueueDepthHandle {
    fn update(&self, f: impl Fn(f64) -> f64) {
        if !self.0.enabled() {
            return;
        }
        let cell = &self.0.queue_depth;
        let _ = cell.fetch_update(Relaxed, Relaxed, |bits| {
            let old = if bits == NO_VALUE { 0.0 } else { f64::from_bits(bits) };
            Some(f(old).to_bits())
        });
    }
}

impl GaugeFn for QueueDepthHandle {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

#[derive(Debug)]
struct LatencyHandle(Arc<Sink>);

impl HistogramFn for LatencyHandle {
    fn record(&self, seconds: f64) {
        if self.0.enabled() {
            if let Some(micros) = seconds_to_micros(seconds) {
                self.0.latency.record(micros);
            }
        }
    }
}

/// The handles of the windows, built once; a recorder of its own, so that it
/// can be combined with the exporter's.
#[derive(Debug, Clone)]
struct Ours {
    counts: Vec<Counter>,
    queue_depth: Gauge,
    latency: Histogram,
}

impl Ours {
    fn new(sink: &Arc<Sink>) -> Self {
        Self {
            counts: Count::ALL.iter().map(|&c| Counter::from_arc(Arc::new(CountHandle(sink.clone(), c)))).collect(),
            queue_depth: Gauge::from_arc(Arc::new(QueueDepthHandle(sink.clone()))),
            latency: Histogram::from_arc(Arc::new(LatencyHandle(sink.clone()))),
        }
    }

    fn counter(&self, key: &Key) -> Option<Counter> {
        let count = match key.name() {
            names::REDUCER_CALLS => Count::ReducerCalls,
            names::REDUCER_OUTCOMES => match key.labels().find(|l| l.key() == "outcome").map(|l| l.value()) {
                Some(names::OUTCOME_COMMITTED) => Count::ReducerCommitted,
                _ => Count::ReducerFailed,
            },
            names::SYNC_TRANSACTIONS_APPLIED => Count::Updates,
            names::SYNC_ROWS_APPLIED => Count::Rows,
            names::CONNECTION_BYTES_RECEIVED => Count::BytesReceived,
            names::CONNECTION_RECONNECTS => Count::Reconnects,
            names::CONNECTION_BREAKER_TRIPS => Count::BreakerTrips,
            names::PREDICTION_CHECKS => Count::Predictions,
            names::PREDICTION_MISPREDICTIONS => Count::Mispredictions,
            names::PREDICTION_RECONCILIATIONS => Count::Reconciliations,
            _ => return None,
        };
        Some(self.counts[count as usize].clone())
    }

    fn gauge(&self, key: &Key) -> Option<Gauge> {
        (key.name() == names::REDUCER_QUEUE_DEPTH).then(|| self.queue_depth.clone())
    }

    fn histogram(&self, key: &Key) -> Option<Histogram> {
        (key.name() == names::CONNECTION_RTT_SECONDS).then(|| self.latency.clone())
    }
}

impl Recorder for Ours {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.counter(key).unwrap_or_else(Counter::noop)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.gauge(key).unwrap_or_else(Gauge::noop)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.histogram(key).unwrap_or_else(Histogram::noop)
    }
}

#[cfg(feature = "prometheus")]
#[derive(Debug, Default)]
struct Combined {
    counters: KeyMap<Counter>,
    gauges: KeyMap<Gauge>,
    histograms: KeyMap<Histogram>,
}

/// The recorder: our windows, and optionally the Prometheus exporter.
///
/// [`TelemetryActor::start_in`](crate::TelemetryActor::start_in) makes it
/// the target of spacelink's threads (`spacelink_connection::recording`), or
/// installs it globally if the config asks; or use it for a scope with
/// `metrics::with_local_recorder`.
pub struct TelemetryRecorder {
    sink: Arc<Sink>,
    ours: Ours,
    /// The exporter, which hears every series (ours only those the windows use).
    #[cfg(feature = "prometheus")]
    exporter: Option<Exporter>,
    #[cfg(feature = "prometheus")]
    combined: RwLock<Combined>,
}

impl std::fmt::Debug for TelemetryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryRecorder")
            .field("sink", &self.sink)
            .field("exporter", &self.has_exporter())
            .finish_non_exhaustive()
    }
}

impl TelemetryRecorder {
    /// A recorder writing into `sink`, and to `exporter` if given.
    pub fn new(sink: Arc<Sink>, exporter: Option<Exporter>) -> Self {
        let ours = Ours::new(&sink);
        #[cfg(feature = "prometheus")]
        {
            Self { sink, ours, exporter, combined: RwLock::default() }
        }
        #[cfg(not(feature = "prometheus"))]
        {
            let _: Option<Exporter> = exporter;
            Self { sink, ours }
        }
    }

    /// Whether it fans out to an exporter.
    pub fn has_exporter(&self) -> bool {
        #[cfg(feature = "prometheus")]
        return self.exporter.is_some();
        #[cfg(not(feature = "prometheus"))]
        false
    }

    /// The exporter, if any.
    #[cfg(feature = "prometheus")]
    fn exporter(&self) -> Option<&Exporter> {
        self.exporter.as_ref()
    }

    /// Where it writes.
    pub fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    #[cfg(feature = "prometheus")]
    fn cached<T: Clone>(
        &self,
        key: &Key,
        map: impl Fn(&Combined) -> &KeyMap<T>,
        map_mut: impl Fn(&mut Combined) -> &mut KeyMap<T>,
        build: impl FnOnce() -> T,
    ) -> T {
        if let Ok(combined) = self.combined.read() {
            if let Some(h) = map(&combined).get(key) {
                return h.clone();
            }
        }
        let handle = build();
        match self.combined.write() {
            Ok(mut combined) => map_mut(&mut combined).entry(key.clone()).or_insert(handle).clone(),
            Err(_) => handle,
        }
    }
}

impl Recorder for TelemetryRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        #[cfg(feature = "prometheus")]
        if let Some(e) = self.exporter() {
            e.describe_counter(key, unit, description);
        }
        #[cfg(not(feature = "prometheus"))]
        let _ = (key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        #[cfg(feature = "prometheus")]
        if let Some(e) = self.exporter() {
            e.describe_gauge(key, unit, description);
        }
        #[cfg(not(feature = "prometheus"))]
        let _ = (key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        #[cfg(feature = "prometheus")]
        if let Some(e) = self.exporter() {
            e.describe_histogram(key, unit, description);
        }
        #[cfg(not(feature = "prometheus"))]
        let _ = (key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        #[cfg(feature = "prometheus")]
        if let Some(e) = self.exporter() {
            let both = || {
                let (ours, theirs) = (self.ours.register_counter(key, metadata), e.register_counter(key, metadata));
                Counter::from_arc(Arc::new(Both(ours, theirs)))
            };
            return self.cached(key, |c| &c.counters, |c| &mut c.counters, both);
        }
        self.ours.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        #[cfg(feature = "prometheus")]
        if let Some(e) = self.exporter() {
            let both = || {
                let (ours, theirs) = (self.ours.register_gauge(key, metadata), e.register_gauge(key, metadata));
                Gauge::from_arc(Arc::new(Both(ours, theirs)))
            };
            return self.cached(key, |c| &c.gauges, |c| &mut c.gauges, both);
        }
        self.ours.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        #[cfg(feature = "prometheus")]
        if let Some(e) = self.exporter() {
            let both = || {
                let (ours, theirs) = (self.ours.register_histogram(key, metadata), e.register_histogram(key, metadata));
                Histogram::from_arc(Arc::new(Both(ours, theirs)))
            };
            return self.cached(key, |c| &c.histograms, |c| &mut c.histograms, both);
        }
        self.ours.register_histogram(key, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_a_session() {
        metrics::histogram!(names::CONNECTION_RTT_SECONDS).record(0.010);
        metrics::histogram!(names::CONNECTION_RTT_SECONDS).record(0.030);
        metrics::histogram!(names::CONNECTION_RTT_SECONDS).record(-1.0);
        metrics::counter!(names::REDUCER_CALLS, "reducer" => "join").increment(3);
        metrics::counter!(names::REDUCER_OUTCOMES, "reducer" => "join", "outcome" => names::OUTCOME_COMMITTED)
            .increment(2);
        metrics::counter!(names::REDUCER_OUTCOMES, "reducer" => "join", "outcome" => names::OUTCOME_FAILED)
            .increment(1);
        metrics::counter!(names::SYNC_TRANSACTIONS_APPLIED).increment(4);
        metrics::counter!(names::SYNC_ROWS_APPLIED).increment(40);
        metrics::counter!(names::CONNECTION_BYTES_RECEIVED).increment(1234);
        metrics::counter!(names::CONNECTION_RECONNECTS).increment(1);
        metrics::counter!(names::PREDICTION_CHECKS).increment(10);
        metrics::counter!(names::PREDICTION_MISPREDICTIONS).increment(2);
        metrics::counter!(names::PREDICTION_RECONCILIATIONS).increment(2);
        metrics::counter!("some_other_series_total").increment(99);
        metrics::gauge!(names::REDUCER_QUEUE_DEPTH).set(5.0);
        metrics::gauge!(names::REDUCER_QUEUE_DEPTH).decrement(2.0);
    }

    fn check(sample: &Sample) {
        let c = |k| sample.counts.get(k);
        assert_eq!(sample.latency.count(), 2, "a negative duration is not recorded");
        assert_eq!(sample.latency.mean(), Some(20_000.0));
        assert_eq!(c(Count::ReducerCalls), 3);
        assert_eq!(c(Count::ReducerCommitted), 2);
        assert_eq!(c(Count::ReducerFailed), 1);
        assert_eq!(c(Count::Updates), 4);
        assert_eq!(c(Count::Rows), 40);
        assert_eq!(c(Count::BytesReceived), 1234);
        assert_eq!(c(Count::Reconnects), 1);
        assert_eq!(c(Count::Predictions), 10);
        assert_eq!(c(Count::Mispredictions), 2);
        assert_eq!(c(Count::Reconciliations), 2);
        assert_eq!(sample.queue_depth, Some(3.0));
    }

    #[test]
    fn the_facade_feeds_the_windows() {
        let recorder = TelemetryRecorder::new(Arc::default(), None);
        metrics::with_local_recorder(&recorder, record_a_session);
        check(&recorder.sink().peek());
        check(&recorder.sink().take());
        assert_eq!(recorder.sink().take().counts, Counts::default(), "taken once");
    }

    #[cfg(feature = "prometheus")]
    #[test]
    fn with_an_exporter_both_hear_every_event() {
        let exporter = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = exporter.handle();
        let recorder = TelemetryRecorder::new(Arc::default(), Some(exporter));
        metrics::with_local_recorder(&recorder, || {
            record_a_session();
        });
        check(&recorder.sink().take());
        let text = handle.render();
        assert!(text.contains("spacelink_reducer_calls_total{reducer=\"join\"} 3"), "{text}");
        assert!(text.contains("spacelink_reducer_outcomes_total{reducer=\"join\",outcome=\"failed\"} 1"), "{text}");
        assert!(text.contains("some_other_series_total 99"), "{text}");
        assert!(text.contains("spacelink_reducer_queue_depth 3"), "{text}");
        assert!(text.contains("spacelink_connection_rtt_seconds_count 3"), "{text}");
    }

    #[test]
    fn a_disabled_sink_records_nothing() {
        let recorder = TelemetryRecorder::new(Arc::default(), None);
        recorder.sink().set_enabled(false);
        metrics::with_local_recorder(&recorder, record_a_session);
        let sample = recorder.sink().take();
        assert_eq!(sample.counts, Counts::default());
        assert_eq!(sample.latency.count(), 0);
        assert_eq!(sample.queue_depth, None);
    }
}
