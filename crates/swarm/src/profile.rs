//! Named network profiles and the schedule that applies them: plain types,
//! no I/O (the [`crate::faults`] driver carries a schedule out).
//!
//! A run with profile `P` walks up the ladder `good` → `mobile` → `bad` →
//! `chaos` as far as `P`, one phase per rung, between a calm start (the bots
//! join) and a calm end (the bots catch up before the verdict). Within a
//! phase, its [`Fault`]s fire at fixed fractions of the phase, so a short run
//! (the end-to-end test's ten seconds) has the same shape as a long one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// A named network profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Loopback plus a few milliseconds.
    Good,
    /// A phone: latency with jitter, a bandwidth cap.
    Mobile,
    /// Mobile, plus loss bursts (TCP retransmission stalls) and cut connections.
    Bad,
    /// Bad, plus the server killed and restarted, and frozen.
    Chaos,
}

impl Profile {
    /// Every profile, mildest first.
    pub const ALL: [Profile; 4] = [Profile::Good, Profile::Mobile, Profile::Bad, Profile::Chaos];

    /// Its name, as `--profile` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Good => "good",
            Profile::Mobile => "mobile",
            Profile::Bad => "bad",
            Profile::Chaos => "chaos",
        }
    }

    /// The steady link of the profile (its spikes and cuts are [`Fault`]s on top).
    pub fn link(self) -> Link {
        match self {
            Profile::Good => {
                Link { latency: Duration::from_millis(2), jitter: Duration::from_millis(1), bandwidth: None }
            }
            Profile::Mobile | Profile::Bad | Profile::Chaos => Link {
                latency: Duration::from_millis(60),
                jitter: Duration::from_millis(30),
                bandwidth: Some(MOBILE_BANDWIDTH),
            },
        }
    }

    /// The faults of one phase of this profile, at fractions of the phase.
    pub fn faults(self) -> Vec<(f64, Fault)> {
        let burst = Fault::LossBurst { for_: Duration::from_millis(1500) };
        match self {
            Profile::Good | Profile::Mobile => Vec::new(),
            Profile::Bad => vec![(0.15, burst), (0.45, Fault::Cut), (0.65, burst), (0.85, Fault::Cut)],
            Profile::Chaos => vec![
                (0.05, Fault::ServerRestart),
                (0.45, Fault::ServerFreeze { for_: Duration::from_secs(3) }),
                (0.75, Fault::Cut),
                (0.8, burst),
            ],
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name `--profile` does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile `{0}`: use good, mobile, bad or chaos")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| UnknownProfile(s.to_string()))
    }
}

/// The bandwidth cap of a mobile link, per connection and direction.
pub const MOBILE_BANDWIDTH: u64 = 256 * 1024;

/// A steady link: what the proxy applies between faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Link {
    /// One-way delay.
    pub latency: Duration,
    /// Each chunk's delay is `latency ± jitter`.
    pub jitter: Duration,
    /// Bytes per second per direction, if capped.
    pub bandwidth: Option<u64>,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}±{} ms", self.latency.as_millis(), self.jitter.as_millis())?;
        if let Some(b) = self.bandwidth {
            write!(f, ", {} KiB/s", b / 1024)?;
        }
        Ok(())
    }
}

/// Something that happens to the network or the server at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A burst of loss: on TCP, what the game sees is a stall while the
    /// segments are sent again, so the proxy holds every byte for 0.5 to
    /// 1.5 s (order kept) for `for_`.
    LossBurst {
        /// How long the burst lasts.
        for_: Duration,
    },
    /// Every byte is delayed by `latency` (± a tenth) for `for_`, none lost.
    LatencySpike {
        /// The one-way delay during the spike.
        latency: Duration,
        /// How long the spike lasts.
        for_: Duration,
    },
    /// Every byte is swallowed, both ways, for `for_`, and nothing is closed
    /// (a dead path: the client has to notice it on its own); then the
    /// connections that lived through it are reset, as TCP would end them
    /// (it never resumes a stream with a hole in it).
    Blackhole {
        /// How long the blackhole lasts.
        for_: Duration,
    },
    /// Every live connection is reset.
    Cut,
    /// The server is stopped and started again on the same port and data.
    ServerRestart,
    /// The server process is frozen (SIGSTOP), then thawed.
    ServerFreeze {
        /// How long it stays frozen.
        for_: Duration,
    },
}

impl Fault {
    /// How long the fault stays on (0 for a moment's fault).
    pub fn lasts(self) -> Duration {
        match self {
            Fault::LossBurst { for_ }
            | Fault::LatencySpike { for_, .. }
            | Fault::Blackhole { for_ }
            | Fault::ServerFreeze { for_ } => for_,
            Fault::Cut | Fault::ServerRestart => Duration::ZERO,
        }
    }

    /// Whether it needs the server's process (not only the proxy).
    pub fn needs_server(self) -> bool {
        matches!(self, Fault::ServerRestart | Fault::ServerFreeze { .. })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::LossBurst { for_ } => write!(f, "loss burst ({:.1} s of stalls)", for_.as_secs_f64()),
            Fault::LatencySpike { latency, for_ } => {
                write!(f, "latency spike ({} ms for {:.1} s)", latency.as_millis(), for_.as_secs_f64())
            }
            Fault::Blackhole { for_ } => write!(f, "blackhole ({:.1} s, then reset)", for_.as_secs_f64()),
            Fault::Cut => f.write_str("connections cut"),
            Fault::ServerRestart => f.write_str("server killed and restarted"),
            Fault::ServerFreeze { for_ } => write!(f, "server frozen ({:.0} s)", for_.as_secs_f64()),
        }
    }
}

/// One phase of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// Its name: a profile's, or `start` / `calm`.
    pub name: String,
    /// Its profile (the link it applies).
    pub profile: Profile,
    /// When it begins, from the run's start.
    pub from: Duration,
    /// When it ends.
    pub to: Duration,
}

/// A fault at a moment of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scheduled {
    /// When, from the run's start.
    pub at: Duration,
    /// What.
    pub fault: Fault,
}

/// A whole run: its phases, in order and back to back, and its faults, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// The phases.
    pub phases: Vec<Phase>,
    /// The faults.
    pub faults: Vec<Scheduled>,
}

/// The share of the run the calm start takes (the bots connect and join).
const START_SHARE: f64 = 0.12;
/// The share of the run the calm end takes (the bots catch up).
const CALM_SHARE: f64 = 0.12;

impl Schedule {
    /// The schedule of a run of `duration` with `profile` (see the module doc).
    /// With `server_faults` false, the faults that need the server's process
    /// (restart, freeze) are left out.
    pub fn new(profile: Profile, duration: Duration, server_faults: bool) -> Self {
        let rungs: Vec<Profile> = Profile::ALL.into_iter().filter(|p| *p <= profile && *p != Profile::Good).collect();
        let total = duration.as_secs_f64();
        let start = total * START_SHARE;
        let calm = total * CALM_SHARE;
        let rung = if rungs.is_empty() { 0.0 } else { (total - start - calm) / rungs.len() as f64 };
        let mut phases = vec![Phase {
            name: "start".into(),
            profile: Profile::Good,
            from: Duration::ZERO,
            to: Duration::from_secs_f64(start),
        }];
        let mut faults = Vec::new();
        let mut at = start;
        for p in rungs {
            phases.push(Phase {
                name: p.name().into(),
                profile: p,
                from: Duration::from_secs_f64(at),
                to: Duration::from_secs_f64(at + rung),
            });
            for (fraction, fault) in p.faults() {
                if server_faults || !fault.needs_server() {
                    faults.push(Scheduled { at: Duration::from_secs_f64(at + rung * fraction), fault });
                }
            }
            at += rung;
        }
        phases.push(Phase {
            name: "calm".into(),
            profile: Profile::Good,
            from: Duration::from_secs_f64(at),
            to: duration,
        });
        Schedule { phases, faults }
    }

    /// The phase at `t` (the last one past the end; `None` for a schedule of no phase).
    pub fn phase_at(&self, t: Duration) -> Option<&Phase> {
        self.phases.iter().find(|p| t < p.to).or(self.phases.last())
    }

    /// The fault on at `t`, if any (the latest one begun whose time is not over).
    pub fn fault_at(&self, t: Duration) -> Option<Fault> {
        self.faults.iter().rev().find(|s| s.at <= t && t < s.at + s.fault.lasts().max(MOMENT)).map(|s| s.fault)
    }

    /// The run's length.
    pub fn duration(&self) -> Duration {
        self.phases.last().map_or(Duration::ZERO, |p| p.to)
    }
}

/// How long a moment's fault (a cut, a restart) is shown as the active one.
pub const MOMENT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_by_name_and_nothing_else() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        assert_eq!("awful".parse::<Profile>(), Err(UnknownProfile("awful".into())));
    }

    #[test]
    fn a_chaos_run_climbs_the_ladder_between_a_calm_start_and_a_calm_end() {
        let s = Schedule::new(Profile::Chaos, Duration::from_secs(60), true);
        let names: Vec<&str> = s.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["start", "mobile", "bad", "chaos", "calm"]);
        for pair in s.phases.windows(2) {
            assert_eq!(pair[0].to, pair[1].from, "back to back");
        }
        assert_eq!(s.duration(), Duration::from_secs(60));
        assert!(s.faults.iter().any(|f| f.fault == Fault::ServerRestart));
        assert!(s.faults.iter().any(|f| matches!(f.fault, Fault::ServerFreeze { .. })));
        assert!(s.faults.windows(2).all(|w| w[0].at <= w[1].at), "in order");
        let calm = &s.phases[4];
        assert!(s.faults.iter().all(|f| f.at + f.fault.lasts() <= calm.from), "the end is calm");
    }

    #[test]
    fn without_the_server_process_only_network_faults_are_scheduled() {
        let s = Schedule::new(Profile::Chaos, Duration::from_secs(30), false);
        assert!(!s.faults.is_empty());
        assert!(s.faults.iter().all(|f| !f.fault.needs_server()));
    }

    #[test]
    fn a_good_run_has_no_faults_and_the_right_phase_at_each_moment() {
        let s = Schedule::new(Profile::Good, Duration::from_secs(10), true);
        assert!(s.faults.is_empty());
        assert_eq!(s.phase_at(Duration::from_secs(1)).expect("a phase").name, "start");
        assert_eq!(s.phase_at(Duration::from_secs(9)).expect("a phase").name, "calm");
        assert_eq!(s.phase_at(Duration::from_secs(99)).expect("a phase").name, "calm");
    }

    #[test]
    fn the_active_fault_is_the_latest_one_still_on() {
        let s = Schedule::new(Profile::Bad, Duration::from_secs(20), true);
        let first = s.faults[0];
        assert_eq!(s.fault_at(first.at), Some(first.fault));
        assert_eq!(s.fault_at(first.at + first.fault.lasts() + Duration::from_millis(1)), None);
        assert_eq!(s.fault_at(Duration::ZERO), None);
    }
}
