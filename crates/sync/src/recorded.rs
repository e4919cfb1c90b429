//! A metrics recorder for unit tests, installed on the test's thread
//! (`metrics::with_local_recorder`): it counts one counter and keeps the
//! values of one histogram, and ignores every other metric.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What one counter and one histogram recorded.
pub(crate) struct Recorded {
    counter: &'static str,
    histogram: &'static str,
    count: Arc<AtomicU64>,
    values: Arc<Values>,
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(value);
    }
}

impl Recorded {
    /// Records the counter named `counter` and the histogram named `histogram`.
    pub(crate) fn new(counter: &'static str, histogram: &'static str) -> Self {
        Self { counter, histogram, count: Arc::default(), values: Arc::default() }
    }

    /// The counter's total.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The histogram's values, in the order recorded.
    pub(crate) fn values(&self) -> Vec<f64> {
        self.values.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl metrics::Recorder for Recorded {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == self.counter {
            metrics::Counter::from_arc(self.count.clone())
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        if key.name() == self.histogram {
            metrics::Histogram::from_arc(self.values.clone())
        } else {
            metrics::Histogram::noop()
        }
    }
}
