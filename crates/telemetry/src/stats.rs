//! `PerformanceStats`: what a window's merged sample means, and its export
//! as JSON and CSV.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::TelemetryError;
use crate::window::{Count, Sample};

/// Latency over a window, in milliseconds (`None` without a measurement).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Round trips measured.
    pub samples: u64,
    /// Their mean.
    pub average_ms: Option<f64>,
    /// The largest.
    pub max_ms: Option<f64>,
    /// Median (within 12.5 %).
    pub p50_ms: Option<f64>,
    /// 95th percentile (within 12.5 %).
    pub p95_ms: Option<f64>,
    /// 99th percentile (within 12.5 %).
    pub p99_ms: Option<f64>,
}

/// The performance of the link over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerformanceStats {
    /// Start of the period covered (Unix milliseconds).
    pub period_start_unix_ms: u64,
    /// End of the period covered (Unix milliseconds).
    pub period_end_unix_ms: u64,
    /// Network round trips (WebSocket pings).
    pub latency: LatencyStats,
    /// Reducer calls made.
    pub reducer_calls: u64,
    /// Reducer calls that committed.
    pub reducer_committed: u64,
    /// Reducer calls that ended otherwise (failed, out of energy, outcome unknown, dropped).
    pub reducer_failed: u64,
    /// `committed / (committed + failed)`, if any call ended.
    pub reducer_success_rate: Option<f64>,
    /// Predictions checked against the server.
    pub predictions: u64,
    /// Of those, wrong.
    pub mispredictions: u64,
    /// `1 - mispredictions / predictions`, if any was checked.
    pub prediction_accuracy: Option<f64>,
    /// Prediction reconciliations (rollback and replay).
    pub reconciliations: u64,
    /// Subscription updates (transactions) applied per second.
    pub updates_per_second: f64,
    /// Rows applied per second.
    pub rows_per_second: f64,
    /// Bytes received from the server per second.
    pub bytes_per_second: f64,
    /// Sessions re-established after a loss.
    pub reconnects: u64,
    /// Reconnects per minute.
    pub reconnects_per_minute: f64,
    /// Circuit breaker trips.
    pub breaker_trips: u64,
    /// Reducer calls queued (the last value seen), if reported.
    pub reducer_queue_depth: Option<f64>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl PerformanceStats {
    /// The statistics of a merged sample covering `period`, ending at `end_unix_ms`.
    pub fn from_sample(sample: &Sample, period: Duration, end_unix_ms: u64) -> Self {
        let c = |k| sample.counts.get(k);
        let secs = period.as_secs_f64();
        let per_second = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let h = &sample.latency;
        let (committed, failed) = (c(Count::ReducerCommitted), c(Count::ReducerFailed));
        let (predictions, wrong) = (c(Count::Predictions), c(Count::Mispredictions));
        Self {
            period_start_unix_ms: end_unix_ms.saturating_sub(period.as_millis() as u64),
            period_end_unix_ms: end_unix_ms,
            latency: LatencyStats {
                samples: h.count(),
                average_ms: h.mean().map(|m| m / 1000.0),
                max_ms: h.max().map(ms),
                p50_ms: h.percentile(50.0).map(ms),
                p95_ms: h.percentile(95.0).map(ms),
                p99_ms: h.percentile(99.0).map(ms),
            },
            reducer_calls: c(Count::ReducerCalls),
            reducer_committed: committed,
            reducer_failed: failed,
            reducer_success_rate: (committed + failed > 0).then(|| committed as f64 / (committed + failed) as f64),
            predictions,
            mispredictions: wrong,
            prediction_accuracy: (predictions > 0).then(|| 1.0 - wrong.min(predictions) as f64 / predictions as f64),
            reconciliations: c(Count::Reconciliations),
            updates_per_second: per_second(c(Count::Updates)),
            rows_per_second: per_second(c(Count::Rows)),
            bytes_per_second: per_second(c(Count::BytesReceived)),
            reconnects: c(Count::Reconnects),
            reconnects_per_minute: per_second(c(Count::Reconnects)) * 60.0,
            breaker_trips: c(Count::BreakerTrips),
            reducer_queue_depth: sample.queue_depth,
        }
    }

    /// The period covered.
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_end_unix_ms.saturating_sub(self.period_start_unix_ms))
    }

    /// The CSV columns, in [`csv_row`](Self::csv_row)'s order.
    pub const CSV_HEADER: &'static str = "period_start_unix_ms,period_end_unix_ms,latency_samples,\
latency_average_ms,latency_max_ms,latency_p50_ms,latency_p95_ms,latency_p99_ms,reducer_calls,\
reducer_committed,reducer_failed,reducer_success_rate,predictions,mispredictions,prediction_accuracy,\
reconciliations,updates_per_second,rows_per_second,bytes_per_second,reconnects,reconnects_per_minute,\
breaker_trips,reducer_queue_depth";

    /// One CSV line (no newline); a missing value is an empty field.
    pub fn csv_row(&self) -> String {
        let o = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let l = &self.latency;
        [
            self.period_start_unix_ms.to_string(),
            self.period_end_unix_ms.to_string(),
            l.samples.to_string(),
            o(l.average_ms),
            o(l.max_ms),
            o(l.p50_ms),
            o(l.p95_ms),
            o(l.p99_ms),
            self.reducer_calls.to_string(),
            self.reducer_committed.to_string(),
            self.reducer_failed.to_string(),
            o(self.reducer_success_rate),
            self.predictions.to_string(),
            self.mispredictions.to_string(),
            o(self.prediction_accuracy),
            self.reconciliations.to_string(),
            self.updates_per_second.to_string(),
            self.rows_per_second.to_string(),
            self.bytes_per_second.to_string(),
            self.reconnects.to_string(),
            self.reconnects_per_minute.to_string(),
            self.breaker_trips.to_string(),
            o(self.reducer_queue_depth),
        ]
        .join(",")
    }
}

/// The file formats of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One JSON object: the window's statistics and each interval's.
    Json,
    /// A header, then one line per interval kept, oldest first.
    Csv,
}

/// Statistics over the default window, and per sampling interval kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Over the configured window.
    pub stats: PerformanceStats,
    /// One per sampling interval kept, oldest first.
    pub intervals: Vec<PerformanceStats>,
}

impl Snapshot {
    /// Writes the snapshot in `format`.
    pub fn write(&self, format: ExportFormat, out: &mut impl Write) -> Result<(), TelemetryError> {
        let io = |e: std::io::Error| TelemetryError::Export(e.to_string());
        match format {
            ExportFormat::Json => {
                serde_json::to_writer_pretty(&mut *out, self).map_err(|e| TelemetryError::Export(e.to_string()))?;
                writeln!(out).map_err(io)
            }
            ExportFormat::Csv => {
                writeln!(out, "{}", PerformanceStats::CSV_HEADER).map_err(io)?;
                for interval in &self.intervals {
                    writeln!(out, "{}", interval.csv_row()).map_err(io)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn known() -> Sample {
        let mut s = Sample::default();
        for ms in [10u64, 20, 30, 40] {
            s.latency.record(ms * 1000);
        }
        s.counts.add(Count::ReducerCalls, 10);
        s.counts.add(Count::ReducerCommitted, 9);
        s.counts.add(Count::ReducerFailed, 1);
        s.counts.add(Count::Predictions, 50);
        s.counts.add(Count::Mispredictions, 5);
        s.counts.add(Count::Reconciliations, 5);
        s.counts.add(Count::Updates, 20);
        s.counts.add(Count::Rows, 200);
        s.counts.add(Count::BytesReceived, 10_000);
        s.counts.add(Count::Reconnects, 1);
        s.queue_depth = Some(2.0);
        s
    }

    #[test]
    fn known_inputs_give_known_statistics() {
        let stats = PerformanceStats::from_sample(&known(), Duration::from_secs(10), 1_000_000);
        assert_eq!(stats.period_start_unix_ms, 990_000);
        assert_eq!(stats.period(), Duration::from_secs(10));
        assert_eq!(stats.latency.samples, 4);
        assert_eq!(stats.latency.average_ms, Some(25.0));
        assert_eq!(stats.latency.max_ms, Some(40.0));
        assert_eq!(stats.latency.p99_ms, Some(40.0));
        let p50 = stats.latency.p50_ms.unwrap();
        assert!((20.0..=22.5).contains(&p50), "{p50}");
        assert_eq!(stats.reducer_success_rate, Some(0.9));
        assert_eq!(stats.prediction_accuracy, Some(0.9));
        assert_eq!(stats.updates_per_second, 2.0);
        assert_eq!(stats.rows_per_second, 20.0);
        assert_eq!(stats.bytes_per_second, 1000.0);
        assert_eq!(stats.reconnects_per_minute, 6.0);
        assert_eq!(stats.reducer_queue_depth, Some(2.0));
    }

    #[test]
    fn nothing_measured_is_none_not_zero() {
        let stats = PerformanceStats::from_sample(&Sample::default(), Duration::ZERO, 5);
        assert_eq!(stats.latency.average_ms, None);
        assert_eq!(stats.reducer_success_rate, None);
        assert_eq!(stats.prediction_accuracy, None);
        assert_eq!(stats.updates_per_second, 0.0);
    }

    #[test]
    fn csv_has_a_header_and_a_line_per_interval() {
        let one = PerformanceStats::from_sample(&known(), Duration::from_secs(1), 2000);
        let snapshot = Snapshot { stats: one.clone(), intervals: vec![one.clone(), PerformanceStats::default()] };
        let mut out = Vec::new();
        snapshot.write(ExportFormat::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], PerformanceStats::CSV_HEADER);
        let columns = lines[0].split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == columns));
        assert!(lines[1].starts_with("1000,2000,4,25,40,"), "{}", lines[1]);
        assert!(lines[2].contains(",,"), "missing values are empty: {}", lines[2]);
    }

    fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => {
                    let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                    (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
                }
            },
            (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
            (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
            (x, y) => x == y,
        }
    }

    fn arb_stats() -> impl Strategy<Value = PerformanceStats> {
        (
            proptest::collection::vec(0u64..5_000_000, 0..50),
            proptest::collection::vec(0u64..1000, Count::N),
            0u64..100_000,
            0u64..1u64 << 40,
            proptest::option::of(0u32..10_000),
        )
            .prop_map(|(latencies, counts, period_ms, end, depth)| {
                let mut s = Sample::default();
                for l in latencies {
                    s.latency.record(l);
                }
                for (c, n) in Count::ALL.into_iter().zip(counts) {
                    s.counts.add(c, n);
                }
                s.queue_depth = depth.map(f64::from);
                PerformanceStats::from_sample(&s, Duration::from_millis(period_ms), end + period_ms)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        // Feature: spacetimedb-integration, Property 17: Performance Analysis and Export
        // A snapshot exported as JSON reads back equal; as CSV it has one line per
        // interval, each with the header's columns, each count and accuracy as written.
        #[test]
        fn prop_exports_keep_every_value(intervals in proptest::collection::vec(arb_stats(), 0..8), stats in arb_stats()) {
            let snapshot = Snapshot { stats, intervals };
            let mut json = Vec::new();
            snapshot.write(ExportFormat::Json, &mut json).unwrap();
            let back: Snapshot = serde_json::from_slice(&json).unwrap();
            // serde_json's float parser may be off by an ulp: compare as values, floats closely.
            let (a, b) = (serde_json::to_value(&back).unwrap(), serde_json::to_value(&snapshot).unwrap());
            prop_assert!(same(&a, &b), "{a} != {b}");
            let mut csv = Vec::new();
            snapshot.write(ExportFormat::Csv, &mut csv).unwrap();
            let text = String::from_utf8(csv).unwrap();
            let header: Vec<&str> = PerformanceStats::CSV_HEADER.split(',').collect();
            let lines: Vec<&str> = text.lines().collect();
            prop_assert_eq!(lines.len(), snapshot.intervals.len() + 1);
            for (line, interval) in lines[1..].iter().zip(&snapshot.intervals) {
                let fields: Vec<&str> = line.split(',').collect();
                prop_assert_eq!(fields.len(), header.len());
                let field = |name: &str| fields[header.iter().position(|h| *h == name).unwrap()];
                prop_assert_eq!(field("reducer_calls"), interval.reducer_calls.to_string());
                prop_assert_eq!(field("reconciliations"), interval.reconciliations.to_string());
                prop_assert_eq!(field("mispredictions"), interval.mispredictions.to_string());
                let accuracy = field("prediction_accuracy");
                prop_assert_eq!(accuracy.parse::<f64>().ok(), interval.prediction_accuracy);
            }
        }

        // Feature: spacetimedb-integration, Property 17: Performance Analysis and Export
        // Prediction accuracy and the reducer success rate are the model's ratios,
        // always within [0, 1]; rates are counts over the period.
        #[test]
        fn prop_ratios_and_rates_match_the_model(
            predictions in 0u64..10_000, wrong in 0u64..10_000,
            committed in 0u64..10_000, failed in 0u64..10_000,
            reconciliations in 0u64..10_000, period_ms in 1u64..100_000,
        ) {
            let mut s = Sample::default();
            s.counts.add(Count::Predictions, predictions);
            s.counts.add(Count::Mispredictions, wrong.min(predictions));
            s.counts.add(Count::Reconciliations, reconciliations);
            s.counts.add(Count::ReducerCommitted, committed);
            s.counts.add(Count::ReducerFailed, failed);
            s.counts.add(Count::Updates, reconciliations);
            let stats = PerformanceStats::from_sample(&s, Duration::from_millis(period_ms), period_ms);
            let accuracy = (predictions > 0).then(|| (predictions - wrong.min(predictions)) as f64 / predictions as f64);
            match (stats.prediction_accuracy, accuracy) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9 && (0.0..=1.0).contains(&a)),
                (a, b) => prop_assert_eq!(a, b),
            }
            let success = (committed + failed > 0).then(|| committed as f64 / (committed + failed) as f64);
            prop_assert_eq!(stats.reducer_success_rate, success);
            prop_assert_eq!(stats.reconciliations, reconciliations);
            let rate = reconciliations as f64 / (period_ms as f64 / 1000.0);
            prop_assert!((stats.updates_per_second - rate).abs() <= 1e-9 * rate.max(1.0));
        }
    }
}
