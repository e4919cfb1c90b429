//! The hot path allocates nothing per frame: with a counting global allocator
//! (a safe wrapper, `stats_alloc`), a thousand frames of predict, reconcile
//! with replay, reject and smoothing allocate zero times once the history has
//! made its first lap, for a plain state and for a state holding heap data.
//! The binary has no test harness (`harness = false`): its `main` runs alone
//! on one thread, so nothing else allocates while it counts.
#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::time::{Duration, Instant};

use spacelink_prediction::{Position, PredictionConfig, PredictionModel, Predictor, Step, Walk};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A squad of points moved together: a state with heap data.
#[derive(Debug, Clone, Copy)]
struct Squad;

impl PredictionModel for Squad {
    type State = Vec<f32>;
    type Input = f32;
    fn apply(&self, state: &mut Vec<f32>, input: &f32) {
        state.iter_mut().for_each(|x| *x += input);
    }
    fn distance(&self, a: &Vec<f32>, b: &Vec<f32>) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }
    fn blend(&self, shown: &mut Vec<f32>, target: &Vec<f32>, t: f32) {
        shown.iter_mut().zip(target).for_each(|(s, t2)| *s += (t2 - *s) * t);
    }
}

/// One frame of a game under a lagging, correcting server: an input, an ack
/// of an older input with a different state (reset and replay), now and
/// then a rejection, and smoothing.
fn frames<M: PredictionModel>(
    p: &mut Predictor<M>,
    from: u32,
    count: u32,
    input: M::Input,
    server: impl Fn(u32, &mut M::State),
    buffer: &mut M::State,
    t0: Instant,
) -> u64 {
    let mut replayed = 0;
    for f in from..from + count {
        let now = t0 + Duration::from_millis(16) * f;
        p.predict(input, now).unwrap();
        // The server lags 20 inputs behind and disagrees.
        let acked = p.next_seq().saturating_sub(20);
        server(acked, buffer);
        if let spacelink_prediction::ReconcileOutcome::Corrected(c) = p.reconcile(buffer, acked).outcome {
            replayed += u64::from(c.replayed);
        }
        if f % 7 == 0 {
            p.reject(p.next_seq().saturating_sub(3));
        }
        p.advance(now, |_, _| {});
    }
    replayed
}

fn main() {
    the_hot_path_allocates_nothing_per_frame();
    println!("test the_hot_path_allocates_nothing_per_frame ... ok");
}

fn the_hot_path_allocates_nothing_per_frame() {
    // The counter counts.
    let region = Region::new(GLOBAL);
    std::hint::black_box(vec![1u8; 16]);
    assert_eq!(region.change().allocations, 1);

    let config = PredictionConfig { max_prediction_history: 64, ..Default::default() };
    let t0 = Instant::now();

    let mut walk = Predictor::new(Walk::default(), config.clone()).unwrap();
    walk.reconcile(&Position::default(), 0);
    let step = Step { dx: 1.0, dy: 0.5 };
    let off = |seq: u32, to: &mut Position| *to = Position { x: seq as f32 * 0.9, y: seq as f32 * 0.5 };
    let mut buffer = Position::default();
    frames(&mut walk, 0, 100, step, off, &mut buffer, t0); // first lap of the ring
    let region = Region::new(GLOBAL);
    let replayed = frames(&mut walk, 100, 1000, step, off, &mut buffer, t0);
    let stats = region.change();
    assert!(replayed > 10_000, "the frames did replay: {replayed}");
    assert_eq!((stats.allocations, stats.reallocations), (0, 0), "plain state: {stats:?}");

    let mut squad = Predictor::new(Squad, config).unwrap();
    squad.reconcile(&vec![0.0; 32], 0);
    // The server's state is written into one buffer: only the predictor is measured.
    let ahead = |seq: u32, to: &mut Vec<f32>| to.iter_mut().for_each(|x| *x = seq as f32 * 0.9);
    let mut buffer = vec![0.0; 32];
    frames(&mut squad, 0, 100, 1.0, ahead, &mut buffer, t0);
    let region = Region::new(GLOBAL);
    let replayed = frames(&mut squad, 100, 1000, 1.0, ahead, &mut buffer, t0);
    let stats = region.change();
    assert!(replayed > 10_000, "the frames did replay: {replayed}");
    assert_eq!((stats.allocations, stats.reallocations), (0, 0), "state with heap data: {stats:?}");
}
