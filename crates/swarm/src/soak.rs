//! The soak's fault schedule: a long run under random faults drawn from a
//! seed (`swarm --soak-seed S`, `cargo xtask soak`). Plain logic, no I/O: the
//! same seed and length give the same [`Schedule`], so a failed soak is
//! replayed by passing the seed it printed.
//!
//! Shape: a calm start (the bots join; no fault), then back-to-back phases of
//! 20 to 90 s on a `good` or `mobile` link, with one fault at a time (never
//! two at once) every 4 to 16 s: connections cut, loss bursts, latency
//! spikes, blackholes and, when the server's process is reachable, server
//! freezes and kills with restarts; then a calm end (no fault) before the
//! bots catch up and the verdict is checked.
//!
//! A soak is about time, not load: each bot plays at a gentler pace than the
//! demo's (a move every [`INPUT_EVERY`], an action every [`ACT_EVERY`]), so
//! that a hundred bots and the server fit a small shared machine without
//! queues that grow for the whole run.

use std::time::Duration;

use crate::profile::{Fault, Phase, Profile, Schedule, Scheduled};
use crate::rng::SplitMix64;

/// A soak bot's move period (the demo's: 100 ms).
pub const INPUT_EVERY: Duration = Duration::from_secs(1);
/// A soak bot's action period (the demo's: 500 ms).
pub const ACT_EVERY: Duration = Duration::from_secs(2);
/// How long the bots get to catch up after the calm end (the demo's: 20 s).
pub const SETTLE_WITHIN: Duration = Duration::from_secs(60);

/// The calm start: this share of the run, between [`START_MIN`] and [`START_MAX`].
const START_SHARE: f64 = 0.12;
const START_MIN: f64 = 5.0;
const START_MAX: f64 = 90.0;
/// The calm end: this share of the run, between 5 s and a minute.
const CALM_SHARE: f64 = 0.10;
const CALM_MIN: f64 = 5.0;
const CALM_MAX: f64 = 60.0;
/// A phase of the middle lasts this long (seconds), the last one cut short.
const PHASE_SECS: (f64, f64) = (20.0, 90.0);
/// The quiet between the end of one fault and the next one (seconds).
const GAP_SECS: (f64, f64) = (4.0, 16.0);
/// A restart takes a few seconds (stop, start, the module loaded): the next
/// fault waits this long after it.
const RESTART_ROOM: f64 = 8.0;

/// The kinds of fault, in the order of [`WEIGHTS`].
const KINDS: usize = 6;
/// How often each kind is drawn: cut, loss burst, latency spike, blackhole,
/// server freeze, server restart (the last two only with the server's process).
const WEIGHTS: [u32; KINDS] = [3, 3, 3, 2, 1, 1];

/// One fault of the kind `kind` (an index of [`WEIGHTS`]), its lengths drawn.
fn fault(kind: usize, rng: &mut SplitMix64) -> Fault {
    let secs = |rng: &mut SplitMix64, low: f64, high: f64| Duration::from_secs_f64(rng.between(low, high));
    match kind {
        0 => Fault::Cut,
        1 => Fault::LossBurst { for_: secs(rng, 1.0, 4.0) },
        2 => Fault::LatencySpike {
            latency: Duration::from_millis(rng.between(150.0, 800.0) as u64),
            for_: secs(rng, 2.0, 8.0),
        },
        3 => Fault::Blackhole { for_: secs(rng, 2.0, 12.0) },
        4 => Fault::ServerFreeze { for_: secs(rng, 1.0, 6.0) },
        _ => Fault::ServerRestart,
    }
}

/// The soak schedule of `seed` for a run of `duration` (see the module doc).
/// With `server_faults` false, freezes and restarts are left out.
pub fn schedule(seed: u64, duration: Duration, server_faults: bool) -> Schedule {
    let mut rng = SplitMix64(seed);
    let total = duration.as_secs_f64();
    let start = (total * START_SHARE).clamp(START_MIN, START_MAX).min(total / 3.0);
    let calm_from = total - (total * CALM_SHARE).clamp(CALM_MIN, CALM_MAX).min(total / 3.0);
    let secs = Duration::from_secs_f64;

    let mut phases =
        vec![Phase { name: "start".into(), profile: Profile::Good, from: Duration::ZERO, to: secs(start) }];
    let mut at = start;
    while at < calm_from {
        let profile = [Profile::Good, Profile::Mobile][rng.pick(&[1, 2])];
        let to = (at + rng.between(PHASE_SECS.0, PHASE_SECS.1)).min(calm_from);
        phases.push(Phase { name: profile.name().into(), profile, from: secs(at), to: secs(to) });
        at = to;
    }
    phases.push(Phase { name: "calm".into(), profile: Profile::Good, from: secs(calm_from), to: duration });

    let mut weights = WEIGHTS;
    if !server_faults {
        weights[4] = 0;
        weights[5] = 0;
    }
    let mut faults = Vec::new();
    let mut t = start + rng.between(GAP_SECS.0, GAP_SECS.1) / 2.0;
    loop {
        let f = fault(rng.pick(&weights), &mut rng);
        let room = if f == Fault::ServerRestart { RESTART_ROOM } else { 0.0 };
        let end = t + f.lasts().as_secs_f64() + room;
        if end > calm_from {
            break;
        }
        faults.push(Scheduled { at: secs(t), fault: f });
        t = end + rng.between(GAP_SECS.0, GAP_SECS.1);
    }
    Schedule { phases, faults }
}

/// A seed from the clock and the process id, for a run not given one.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    SplitMix64((nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let d = Duration::from_secs(600);
        assert_eq!(schedule(42, d, true), schedule(42, d, true));
        assert_ne!(schedule(42, d, true).faults, schedule(43, d, true).faults);
    }

    #[test]
    fn faults_never_overlap_and_both_ends_are_calm() {
        for seed in 0..200 {
            let d = Duration::from_secs(60 + seed * 17);
            let s = schedule(seed, d, true);
            assert_eq!(s.duration(), d);
            for pair in s.phases.windows(2) {
                assert_eq!(pair[0].to, pair[1].from, "back to back");
            }
            let (start, calm) = (&s.phases[0], s.phases.last().expect("a calm end"));
            assert_eq!((start.name.as_str(), calm.name.as_str()), ("start", "calm"));
            assert!(!s.faults.is_empty(), "seed {seed}: no fault in {d:?}");
            assert!(s.faults[0].at >= start.to);
            for pair in s.faults.windows(2) {
                assert!(pair[0].at + pair[0].fault.lasts() < pair[1].at, "seed {seed}: {pair:?} overlap");
            }
            let last = s.faults.last().expect("a fault");
            assert!(last.at + last.fault.lasts() <= calm.from, "seed {seed}: the end is calm");
        }
    }

    #[test]
    fn a_long_soak_draws_every_kind_and_without_the_server_only_network_faults() {
        let s = schedule(7, Duration::from_secs(1800), true);
        let kind = |f: Fault| match f {
            Fault::Cut => "cut",
            Fault::LossBurst { .. } => "loss",
            Fault::LatencySpike { .. } => "latency",
            Fault::Blackhole { .. } => "blackhole",
            Fault::ServerFreeze { .. } => "freeze",
            Fault::ServerRestart => "restart",
        };
        let kinds: std::collections::BTreeSet<&str> = s.faults.iter().map(|f| kind(f.fault)).collect();
        assert_eq!(kinds.len(), KINDS, "{kinds:?}");
        assert!(s.faults.len() > 60, "{} faults in 30 min", s.faults.len());
        let s = schedule(7, Duration::from_secs(1800), false);
        assert!(s.faults.iter().all(|f| !f.fault.needs_server()));
    }
}
