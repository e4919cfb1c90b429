//! Properties 6 and 7 of the design: prediction with reconciliation against a
//! simulated authoritative server (which clamps steps and rejects some inputs),
//! with its answers delivered in any order; the history's bound; smoothing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use spacelink_prediction::{
    HistoryOverflow, Position, PredictionConfig, PredictionModel, Predictor, ReconcileOutcome, Step, Walk,
};

/// An exact model: integer positions, integer steps. The client applies a step as is.
#[derive(Debug, Clone, Copy)]
struct Line;

#[derive(Debug, Clone, Copy)]
struct Input {
    step: i64,
    /// The server refuses this input (its reducer fails).
    bad: bool,
}

impl PredictionModel for Line {
    type State = i64;
    type Input = Input;
    fn apply(&self, state: &mut i64, input: &Input) {
        *state += input.step;
    }
    fn distance(&self, a: &i64, b: &i64) -> f32 {
        (a - b).abs() as f32
    }
    fn blend(&self, shown: &mut i64, target: &i64, t: f32) {
        *shown += ((target - *shown) as f32 * t).round() as i64;
    }
}

/// The server: applies inputs in order, clamping steps to ±3, refusing bad ones.
#[derive(Debug, Default)]
struct Server {
    state: i64,
    last_seq: u32,
    /// Inputs sent and not yet processed: (seq, input).
    inbox: Vec<(u32, Input)>,
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    State { state: i64, seq: u32 },
    Rejected { seq: u32 },
}

impl Server {
    fn process(&mut self) -> Option<Answer> {
        if self.inbox.is_empty() {
            return None;
        }
        let (seq, input) = self.inbox.remove(0);
        if input.bad {
            return Some(Answer::Rejected { seq });
        }
        self.state += input.step.clamp(-3, 3);
        self.last_seq = seq;
        Some(Answer::State { state: self.state, seq })
    }
}

#[derive(Debug, Clone)]
enum Op {
    Input(i64, bool),
    Process,
    /// Deliver (and forget) the answer at this index of those in flight.
    Deliver(usize),
    /// Deliver it again later too (a duplicate).
    Duplicate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (-6i64..=6, proptest::bool::weighted(0.15)).prop_map(|(s, b)| Op::Input(s, b)),
        3 => Just(Op::Process),
        3 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 6: For any player input, the system should immediately apply local prediction, send to server with sequence numbers, compare results, and smoothly reconcile differences.
    #[test]
    fn prop_reconciled_state_is_the_server_state_with_the_unacknowledged_inputs_applied(
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let config = PredictionConfig { max_prediction_history: 256, tolerance: 0.0, ..Default::default() };
        let mut p = Predictor::new(Line, config).unwrap();
        p.reconcile(&0, 0);
        let now = Instant::now();
        let mut server = Server::default();
        let mut in_flight: Vec<Answer> = Vec::new();
        // What the client has heard so far.
        let (mut acked_state, mut acked_seq) = (0i64, 0u32);
        let mut heard_rejected = BTreeSet::new();
        let mut sent: Vec<(u32, Input)> = Vec::new();
        for op in ops {
            match op {
                Op::Input(step, bad) => {
                    let input = Input { step, bad };
                    let before = *p.shown().unwrap();
                    let seq = p.predict(input, now).unwrap().unwrap();
                    // Applied at once, numbered in order, sent.
                    prop_assert_eq!(*p.shown().unwrap(), before + step);
                    prop_assert_eq!(seq, sent.last().map_or(1, |(s, _)| s + 1));
                    sent.push((seq, input));
                    server.inbox.push((seq, input));
                }
                Op::Process => in_flight.extend(server.process()),
                Op::Deliver(i) | Op::Duplicate(i) if !in_flight.is_empty() => {
                    let i = i % in_flight.len();
                    let answer = if matches!(op, Op::Deliver(_)) { in_flight.remove(i) } else { in_flight[i] };
                    match answer {
                        Answer::State { state, seq } => {
                            let r = p.reconcile(&state, seq);
                            if seq < acked_seq {
                                prop_assert_eq!(r.outcome, ReconcileOutcome::Stale);
                            } else {
                                acked_state = state;
                                acked_seq = seq;
                            }
                        }
                        Answer::Rejected { seq } => {
                            p.reject(seq);
                            heard_rejected.insert(seq);
                        }
                    }
                }
                Op::Deliver(_) | Op::Duplicate(_) => {}
            }
            let expected = acked_state
                + sent
                    .iter()
                    .filter(|(seq, _)| *seq > acked_seq && !heard_rejected.contains(seq))
                    .map(|(_, input)| input.step)
                    .sum::<i64>();
            prop_assert_eq!(*p.predicted().unwrap(), expected);
            prop_assert_eq!(p.confirmed_seq(), Some(acked_seq));
            // Every unconfirmed input is kept with the state predicted after it.
            let mut state = acked_state;
            for entry in p.history().iter() {
                prop_assert!(entry.seq > acked_seq);
                state += entry.input.step;
                prop_assert_eq!(entry.state, state);
            }
        }
    }

    // Feature: spacetimedb-integration, Property 7: For any prediction system, it should maintain input and prediction history for reconciliation purposes.
    #[test]
    fn prop_history_stays_within_its_bound_in_order(
        capacity in 1usize..8,
        reject_new in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let overflow = if reject_new { HistoryOverflow::RejectNew } else { HistoryOverflow::DropOldest };
        let config = PredictionConfig { max_prediction_history: capacity, overflow, tolerance: 0.0, ..Default::default() };
        let mut p = Predictor::new(Line, config).unwrap();
        p.reconcile(&0, 0);
        let now = Instant::now();
        let mut server = Server::default();
        let mut in_flight = Vec::new();
        for op in ops {
            match op {
                Op::Input(step, bad) => {
                    let input = Input { step, bad };
                    match p.predict(input, now) {
                        Ok(Some(seq)) => server.inbox.push((seq, input)),
                        Ok(None) => unreachable!("no input delay"),
                        Err(e) => prop_assert!(reject_new && p.history().is_full(), "{e}"),
                    }
                }
                Op::Process => in_flight.extend(server.process()),
                Op::Deliver(i) | Op::Duplicate(i) if !in_flight.is_empty() => {
                    let i = i % in_flight.len();
                    match in_flight.remove(i) {
                        Answer::State { state, seq } => { p.reconcile(&state, seq); }
                        Answer::Rejected { seq } => { p.reject(seq); }
                    }
                }
                Op::Deliver(_) | Op::Duplicate(_) => {}
            }
            prop_assert!(p.history().len() <= capacity);
            let seqs: Vec<u32> = p.history().iter().map(|e| e.seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{:?}", seqs);
            prop_assert!(seqs.iter().all(|s| *s > p.confirmed_seq().unwrap() && *s < p.next_seq()));
        }
        // Once the server has answered everything, the prediction is its state.
        while let Some(a) = server.process() { in_flight.push(a); }
        for a in in_flight.drain(..) {
            match a {
                Answer::State { state, seq } => { p.reconcile(&state, seq); }
                Answer::Rejected { seq } => { p.reject(seq); }
            }
        }
        if server.last_seq > 0 {
            p.reconcile(&server.state, server.last_seq);
            prop_assert!(p.history().iter().all(|e| e.seq > server.last_seq));
        }
    }

    // Feature: spacetimedb-integration, Property 6: For any player input, the system should immediately apply local prediction, send to server with sequence numbers, compare results, and smoothly reconcile differences.
    #[test]
    fn prop_smoothing_converges_whatever_the_frame_rate(
        correction in -7.5f32..7.5,
        frames_a in proptest::collection::vec(1u64..40, 1..60),
        frames_b in proptest::collection::vec(1u64..40, 1..60),
        smoothing_ms in 50u64..500,
    ) {
        let config = PredictionConfig {
            reconciliation_smoothing_time: Duration::from_millis(smoothing_ms),
            snap_threshold: 8.0,
            ..Default::default()
        };
        // Predict a step of 1, hear that the server put the player elsewhere.
        let run = |frames: &[u64]| {
            let mut p = Predictor::new(Walk::default(), config.clone()).unwrap();
            p.reconcile(&Position::default(), 0);
            let t0 = Instant::now();
            p.advance(t0, |_, _| {});
            p.predict(Step { dx: 1.0, dy: 0.0 }, t0).unwrap();
            p.reconcile(&Position { x: 1.0 + correction, y: 0.0 }, 1);
            let mut t = t0;
            let mut last = Walk::default().distance(p.shown().unwrap(), p.predicted().unwrap());
            for ms in frames {
                t += Duration::from_millis(*ms);
                p.advance(t, |_, _| {});
                let d = Walk::default().distance(p.shown().unwrap(), p.predicted().unwrap());
                assert!(d <= last + 1e-6, "the shown state never moves away: {d} after {last}");
                last = d;
            }
            (p, t - t0)
        };
        let (a, ta) = run(&frames_a);
        // The same time in other frames gives the same picture (frame-rate independence).
        let total: u64 = frames_a.iter().sum();
        let mut other: Vec<u64> = frames_b.iter().copied().take_while({
            let mut sum = 0;
            move |ms| { sum += ms; sum < total }
        }).collect();
        other.push(total - other.iter().sum::<u64>());
        let (b, tb) = run(&other);
        prop_assert_eq!(ta, tb);
        let (xa, xb) = (a.shown().unwrap().x, b.shown().unwrap().x);
        prop_assert!((xa - xb).abs() <= 1e-3, "{} vs {}", xa, xb);
        // The error left is the exponential's: 1 % after the smoothing time.
        let left = (-(4.605_17 * ta.as_secs_f32()) / (smoothing_ms as f32 / 1000.0)).exp() * correction.abs();
        let d = a.shown().unwrap().x - a.predicted().unwrap().x;
        prop_assert!(d.abs() <= left + 2e-3, "{} left, expected {}", d, left);
        // And after three smoothing times it is exactly there.
        let mut a = a;
        a.advance(Instant::now() + Duration::from_millis(3 * smoothing_ms + total), |_, _| {});
        prop_assert_eq!(a.shown(), a.predicted());
    }
}
