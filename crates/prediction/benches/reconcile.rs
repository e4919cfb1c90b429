//! The cost of a rollback: reconcile with a misprediction that replays 16, 64
//! and 256 unconfirmed inputs (the 2D walk model), plus a correct prediction
//! (no replay) for comparison. Figures go to docs/BENCHMARKS.md (section `prediction`).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spacelink_prediction::{Position, PredictionConfig, Predictor, Step, Walk};

/// A synced predictor holding `pending + 1` unconfirmed steps.
fn predictor(pending: u32) -> Predictor<Walk> {
    let config = PredictionConfig { max_prediction_history: 512, ..Default::default() };
    let mut p = Predictor::new(Walk::default(), config).expect("valid settings");
    p.reconcile(&Position::default(), 0);
    let now = Instant::now();
    for i in 0..=pending {
        let input = Step { dx: 1.0, dy: (i % 3) as f32 * 0.25 };
        p.predict(input, now).expect("room in the history");
    }
    p
}

fn reconcile(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile");
    for replay in [16u32, 64, 256] {
        group.throughput(Throughput::Elements(u64::from(replay)));
        // The server's state after input 1 keeps differing from the last one
        // (two states in turn): every call resets and replays `replay` inputs.
        group.bench_with_input(BenchmarkId::new("misprediction_replay", replay), &replay, |b, &replay| {
            let mut p = predictor(replay);
            p.reconcile(&Position { x: 0.5, y: 0.0 }, 1);
            let states = [Position { x: 0.25, y: 0.0 }, Position { x: 0.5, y: 0.0 }];
            let mut turn = 0;
            b.iter(|| {
                turn ^= 1;
                let r = p.reconcile(black_box(&states[turn]), 1);
                debug_assert!(matches!(r.outcome, spacelink_prediction::ReconcileOutcome::Corrected(_)));
                black_box(r)
            });
        });
    }
    // A correct prediction: the ack of the oldest input matches, nothing is replayed.
    group.bench_function("accurate_ack_then_new_input", |b| {
        let mut p = predictor(64);
        let mut seq = 1;
        let now = Instant::now();
        b.iter(|| {
            let server = *p.history().front().map(|e| &e.state).unwrap_or(&Position::default());
            black_box(p.reconcile(black_box(&server), seq));
            seq += 1;
            p.predict(Step { dx: 1.0, dy: 0.0 }, now).ok();
        });
    });
    group.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
