//! The swarm process's own memory and file descriptors over a run, and their
//! judgement: the soak's "nothing grows" check. [`read_self`] reads
//! `/proc/self/status` (VmRSS) and counts `/proc/self/fd`; [`judge`] is plain
//! logic over the samples.
//!
//! What is judged (bounds in the constants below):
//! * **RSS**: the least-squares slope of the resident set after the warm-up
//!   (the first [`WARMUP_SHARE`] of the run: half, so that a one-time step,
//!   such as the allocator's arenas growing in a burst of reconnects, is
//!   over, while a leak keeps its slope) until the faults stop, in MiB
//!   per minute, must stay
//!   under [`RSS_BOUND_MIB_PER_MIN`] beyond an allowance for the data the run
//!   legitimately adds: every committed action is a row that stays in its
//!   bot's cache (its `action_log` subscription) and an entry in its ledger,
//!   allowed [`BYTES_PER_COMMITTED_ACTION`] each. The slope is judged only
//!   when the window after the warm-up is at least [`JUDGED_WINDOW_MIN`]
//!   (shorter runs report it, unjudged: allocator noise dominates).
//! * **File descriptors**: after the faults stop and the bots catch up, the
//!   count is back to the baseline of the calm start (every bot connected
//!   once, before any fault), give or take [`FD_SLACK`] plus one per ten bots
//!   (a connection or two still closing). Their slope is reported.

use serde::Serialize;

/// The warm-up left out of the slopes: this share of the run. A 15-minute
/// soak stepped once from 88 to 150 MiB at 4 to 5 minutes (a burst of
/// reconnects) and then stayed flat or fell; a short window after a 20 %
/// warm-up took that step for growth.
pub const WARMUP_SHARE: f64 = 0.5;
/// The RSS slope allowed beyond the data held, MiB per minute.
pub const RSS_BOUND_MIB_PER_MIN: f64 = 1.0;
/// What one committed action may add for good: its cache row (with the
/// cache's indexes) and its ledger entry.
pub const BYTES_PER_COMMITTED_ACTION: f64 = 1024.0;
/// The shortest window after the warm-up whose RSS slope is judged, minutes.
pub const JUDGED_WINDOW_MIN: f64 = 3.0;
/// File descriptors the end may have over the baseline (plus one per ten bots).
pub const FD_SLACK: usize = 4;

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResourceSample {
    /// Seconds since the start.
    pub t: f64,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Actions committed so far (all bots): rows the caches hold for good.
    pub committed: u64,
}

/// This process's resident set (KiB) and open file descriptors, if `/proc` says.
pub fn read_self() -> Option<(u64, usize)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())?;
    // The directory's own descriptor, open while it is read, is not counted.
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count().saturating_sub(1);
    Some((rss, fds))
}

/// The least-squares slope of `points` (y per x); `None` for fewer than two
/// distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    Some(points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx)
}

/// The judgement of a run's samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResourceCheck {
    /// Whether it passed.
    pub ok: bool,
    /// The warm-up left out, s.
    pub warmup_s: f64,
    /// Samples after the warm-up.
    pub samples: usize,
    /// RSS at the end of the warm-up and at the end, MiB.
    pub rss_after_warmup_mib: f64,
    /// RSS at the end, MiB.
    pub rss_end_mib: f64,
    /// RSS slope after the warm-up, MiB per minute.
    pub rss_slope_mib_per_min: Option<f64>,
    /// What the data held may add, MiB per minute (committed actions' slope × allowance).
    pub rss_allowance_mib_per_min: f64,
    /// Whether the RSS slope was judged (a long enough window).
    pub rss_judged: bool,
    /// File descriptors in the calm start (every bot connected, no fault yet).
    pub fds_baseline: usize,
    /// File descriptors at the end (faults over, bots caught up).
    pub fds_end: usize,
    /// The most seen.
    pub fds_max: usize,
    /// Their slope after the warm-up, per minute.
    pub fd_slope_per_min: Option<f64>,
    /// What failed, if anything.
    pub problems: Vec<String>,
}

impl ResourceCheck {
    /// A few words for the verdict line.
    pub fn summary(&self) -> String {
        let slope = match self.rss_slope_mib_per_min {
            Some(s) if self.rss_judged => format!(
                "RSS slope {s:+.2} MiB/min (bound {:.2})",
                RSS_BOUND_MIB_PER_MIN + self.rss_allowance_mib_per_min
            ),
            Some(s) => format!("RSS slope {s:+.2} MiB/min (too short to judge)"),
            None => "RSS slope unknown".to_string(),
        };
        format!("{slope}; fds {} at the start, {} at the end", self.fds_baseline, self.fds_end)
    }
}

/// Judges `samples` of a run of `bots` whose calm start ended at
/// `calm_start_end_s`; `end` is the reading after the bots caught up.
pub fn judge(samples: &[ResourceSample], calm_start_end_s: f64, end: ResourceSample, bots: usize) -> ResourceCheck {
    let mut c = ResourceCheck::default();
    let run_s = end.t.max(samples.last().map_or(0.0, |s| s.t));
    c.warmup_s = run_s * WARMUP_SHARE;
    // The slopes are the run's: the end's reading, taken after the catch-up's
    // burst, is judged against the baseline instead.
    let after: Vec<&ResourceSample> = samples.iter().filter(|s| s.t >= c.warmup_s).collect();
    c.samples = after.len();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let per_min =
        |f: &dyn Fn(&ResourceSample) -> f64| slope(&after.iter().map(|s| (s.t / 60.0, f(s))).collect::<Vec<_>>());
    c.rss_after_warmup_mib = after.first().map_or(0.0, |s| mib(s.rss_kib));
    c.rss_end_mib = mib(end.rss_kib);
    c.rss_slope_mib_per_min = per_min(&|s| mib(s.rss_kib));
    c.rss_allowance_mib_per_min =
        per_min(&|s| s.committed as f64).unwrap_or(0.0).max(0.0) * BYTES_PER_COMMITTED_ACTION / (1024.0 * 1024.0);
    let window_min = (run_s - c.warmup_s) / 60.0;
    c.rss_judged = window_min >= JUDGED_WINDOW_MIN && c.rss_slope_mib_per_min.is_some();
    if let Some(s) = c.rss_slope_mib_per_min.filter(|_| c.rss_judged) {
        if s > RSS_BOUND_MIB_PER_MIN + c.rss_allowance_mib_per_min {
            c.problems.push(format!(
                "memory grows: RSS {s:+.2} MiB/min after the warm-up, over {:.2} ({RSS_BOUND_MIB_PER_MIN} + {:.2} for the rows held)",
                RSS_BOUND_MIB_PER_MIN + c.rss_allowance_mib_per_min,
                c.rss_allowance_mib_per_min
            ));
        }
    }
    // The baseline: the calm start's second half (every bot connected).
    let mut calm: Vec<usize> =
        samples.iter().filter(|s| s.t >= calm_start_end_s / 2.0 && s.t <= calm_start_end_s).map(|s| s.fds).collect();
    calm.sort_unstable();
    c.fds_baseline = calm.get(calm.len() / 2).copied().unwrap_or(end.fds);
    c.fds_end = end.fds;
    c.fds_max = samples.iter().map(|s| s.fds).chain([end.fds]).max().unwrap_or(0);
    c.fd_slope_per_min = per_min(&|s| s.fds as f64);
    let slack = FD_SLACK + bots / 10;
    if c.fds_end > c.fds_baseline + slack {
        c.problems.push(format!(
            "file descriptors grow: {} at the end, {} in the calm start (slack {slack})",
            c.fds_end, c.fds_baseline
        ));
    }
    c.ok = c.problems.is_empty();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(minutes: f64, rss_per_min_kib: f64, committed_per_min: f64, fd_end: usize) -> ResourceCheck {
        let secs = (minutes * 60.0) as usize;
        let samples: Vec<ResourceSample> = (0..secs)
            .step_by(5)
            .map(|t| {
                let m = t as f64 / 60.0;
                // A wobble of ±2 MiB on top of the trend (the allocator).
                let wobble = if (t / 5) % 2 == 0 { 2048.0 } else { -2048.0 };
                ResourceSample {
                    t: t as f64,
                    rss_kib: (200_000.0 + m * rss_per_min_kib + wobble) as u64,
                    fds: if t <= 30 { 100 } else { 100 + (t / 5) % 7 },
                    committed: (m * committed_per_min) as u64,
                }
            })
            .collect();
        let last = *samples.last().expect("samples");
        judge(&samples, 30.0, ResourceSample { t: last.t + 5.0, fds: fd_end, ..last }, 20)
    }

    #[test]
    fn the_slope_of_a_line_is_its_slope() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn a_flat_run_passes_and_a_leak_fails() {
        let flat = run(30.0, 0.0, 0.0, 101);
        assert!(flat.ok, "{flat:?}");
        assert!(flat.rss_judged && flat.rss_slope_mib_per_min.expect("a slope").abs() < 0.1, "{flat:?}");
        assert!(
            flat.summary().contains("MiB/min (bound 1.00); fds 100 at the start, 101 at the end"),
            "{}",
            flat.summary()
        );
        let leak = run(30.0, 3.0 * 1024.0, 0.0, 101);
        assert!(!leak.ok && leak.problems[0].starts_with("memory grows"), "{leak:?}");
    }

    #[test]
    fn a_step_early_in_the_run_is_not_growth_but_a_late_leak_is() {
        // 60 MiB at minute 5 of 15, flat after it: a step.
        let samples = |leak_kib_per_min: f64| -> Vec<ResourceSample> {
            (0..15 * 60)
                .step_by(5)
                .map(|t| {
                    let m = t as f64 / 60.0;
                    let step = if m >= 5.0 { 60.0 * 1024.0 } else { 0.0 };
                    ResourceSample {
                        t: t as f64,
                        rss_kib: (90.0 * 1024.0 + step + m * leak_kib_per_min) as u64,
                        fds: 100,
                        committed: 0,
                    }
                })
                .collect()
        };
        let step = samples(0.0);
        let last = *step.last().expect("samples");
        let check = judge(&step, 30.0, ResourceSample { t: last.t + 5.0, ..last }, 20);
        assert!(check.ok && check.rss_judged, "{check:?}");
        let leak = samples(2.0 * 1024.0);
        let last = *leak.last().expect("samples");
        let check = judge(&leak, 30.0, ResourceSample { t: last.t + 5.0, ..last }, 20);
        assert!(!check.ok, "{check:?}");
    }

    #[test]
    fn rows_held_are_allowed_for() {
        // 2000 committed actions a minute, 1.5 MiB/min: within 1 + 2000 KiB/min.
        let held = run(30.0, 1.5 * 1024.0, 2000.0, 100);
        assert!(held.ok, "{held:?}");
        assert!((held.rss_allowance_mib_per_min - 2000.0 / 1024.0).abs() < 0.05, "{held:?}");
    }

    #[test]
    fn a_short_run_reports_its_slope_unjudged_and_leaked_fds_fail() {
        let short = run(1.0, 20.0 * 1024.0, 0.0, 100);
        assert!(short.ok && !short.rss_judged, "{short:?}");
        assert!(short.summary().contains("too short to judge"));
        let fds = run(30.0, 0.0, 0.0, 120);
        assert!(!fds.ok && fds.problems[0].starts_with("file descriptors grow"), "{fds:?}");
        assert_eq!(fds.fds_baseline, 100);
    }

    #[test]
    fn this_process_can_be_read() {
        let (rss, fds) = read_self().expect("/proc/self");
        assert!(rss > 0 && fds >= 3, "{rss} KiB, {fds} fds");
    }
}
