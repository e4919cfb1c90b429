//! The cost of one recorded event through the `metrics` facade into the
//! telemetry recorder: alone, and fanned out to the Prometheus exporter.
//! Figures go into docs/BENCHMARKS.md (section `telemetry`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use metrics_exporter_prometheus::PrometheusBuilder;
use spacelink_connection::metric_names as names;
use spacelink_telemetry::TelemetryRecorder;

fn events(c: &mut Criterion, group: &str, recorder: &TelemetryRecorder) {
    let mut g = c.benchmark_group(group);
    metrics::with_local_recorder(recorder, || {
        g.bench_function("counter (bytes received)", |b| {
            b.iter(|| metrics::counter!(names::CONNECTION_BYTES_RECEIVED).increment(black_box(512)))
        });
        g.bench_function("counter with a label (reducer calls)", |b| {
            b.iter(|| metrics::counter!(names::REDUCER_CALLS, "reducer" => "move_player").increment(1))
        });
        g.bench_function("histogram (round trip)", |b| {
            b.iter(|| metrics::histogram!(names::CONNECTION_RTT_SECONDS).record(black_box(0.0123)))
        });
        g.bench_function("series the windows ignore", |b| {
            b.iter(|| metrics::counter!(names::CONNECTION_MESSAGES_RECEIVED).increment(1))
        });
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let alone = TelemetryRecorder::new(Arc::default(), None);
    events(c, "windows only", &alone);
    let exporter = PrometheusBuilder::new().build_recorder();
    let fanned = TelemetryRecorder::new(Arc::default(), Some(exporter));
    events(c, "windows + prometheus", &fanned);
    let sink = alone.sink().clone();
    c.bench_function("tick: take one interval's sample", |b| b.iter(|| black_box(sink.take())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
