//! The report of a run: its figures as JSON ([`Report`]) and the same as a
//! self-contained HTML page with inline SVG plots (no script, no network):
//! latency percentiles over time with the phases and faults marked, the bots
//! connected and their reconnects, prediction accuracy and corrections, rows
//! synced, the calls, and the verdict.

use std::fmt::Write as _;

use serde::Serialize;

use crate::faults::FaultRecord;
use crate::ledger::CallTotals;
use crate::profile::Schedule;
use crate::resources::ResourceSample;
use crate::stats::{percentile, BotStats, Sample};
use crate::verdict::Verdict;

/// Latency percentiles of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseLatency {
    /// The phase.
    pub phase: String,
    /// Call round trips in it.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Largest, ms.
    pub max_ms: Option<f64>,
}

/// Reconnects and how long recovering took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Sessions lost and made again (all bots).
    pub reconnects: u64,
    /// Median time from losing a session to the next one, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// Longest.
    pub max_ms: Option<f64>,
    /// Every recovery: (seconds since the start, ms).
    pub all: Vec<(f64, f64)>,
}

/// Moves (predicted inputs).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Moves {
    /// Sent.
    pub sent: u64,
    /// Rolled back (refused, or never ran).
    pub rejected: u64,
    /// Predictions checked against the server.
    pub checked: u64,
    /// ... right.
    pub accurate: u64,
    /// Corrections.
    pub corrections: u64,
}

/// Everything the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The bots.
    pub bots: usize,
    /// The profile (`soak` for a soak).
    pub profile: String,
    /// The soak's seed (replay it with `--soak-seed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Planned length, s.
    pub duration_s: f64,
    /// Actual length, s.
    pub ran_s: f64,
    /// Whether Ctrl-C ended it early.
    pub interrupted: bool,
    /// The schedule.
    pub schedule: Schedule,
    /// The faults made.
    pub faults: Vec<FaultRecord>,
    /// One sample a second.
    pub timeline: Vec<Sample>,
    /// Latency per phase.
    pub latency: Vec<PhaseLatency>,
    /// Reconnects.
    pub recovery: Recovery,
    /// Actions (sequenced calls).
    pub calls: CallTotals,
    /// Moves.
    pub moves: Moves,
    /// Rows synced (all bots).
    pub rows_synced: u64,
    /// CPU the swarm process used, as a share of one core.
    pub cpu_share: Option<f64>,
    /// Each bot's figures at the end.
    pub per_bot: Vec<BotStats>,
    /// The swarm process's memory and file descriptors every few seconds
    /// (their judgement, in a soak, is the verdict's `resources`).
    pub resources: Vec<ResourceSample>,
    /// The verdict.
    pub verdict: Verdict,
}

/// What a run hands to [`Report::new`].
#[derive(Debug)]
pub struct RunFigures<'a> {
    /// The bots' count.
    pub bots: usize,
    /// The profile's name.
    pub profile: String,
    /// The soak's seed.
    pub seed: Option<u64>,
    /// The schedule.
    pub schedule: &'a Schedule,
    /// How long it ran, s.
    pub ran_s: f64,
    /// Whether Ctrl-C ended it.
    pub interrupted: bool,
    /// The faults made.
    pub faults: Vec<FaultRecord>,
    /// The timeline.
    pub timeline: Vec<Sample>,
    /// Every call round trip: (s, ms).
    pub round_trips: &'a [(f64, f64)],
    /// Every recovery: (s, ms).
    pub recoveries: Vec<(f64, f64)>,
    /// The bots' final figures.
    pub per_bot: Vec<BotStats>,
    /// CPU share.
    pub cpu_share: Option<f64>,
    /// The process's readings.
    pub resources: Vec<ResourceSample>,
    /// The verdict.
    pub verdict: Verdict,
}

impl Report {
    /// Adds the figures up.
    pub fn new(f: RunFigures<'_>) -> Self {
        let latency = f
            .schedule
            .phases
            .iter()
            .map(|p| {
                let v: Vec<f64> = f
                    .round_trips
                    .iter()
                    .filter(|(t, _)| *t >= p.from.as_secs_f64() && *t < p.to.as_secs_f64())
                    .map(|(_, ms)| *ms)
                    .collect();
                PhaseLatency {
                    phase: p.name.clone(),
                    samples: v.len(),
                    p50_ms: percentile(&v, 0.5),
                    p95_ms: percentile(&v, 0.95),
                    p99_ms: percentile(&v, 0.99),
                    max_ms: percentile(&v, 1.0),
                }
            })
            .collect();
        let rec: Vec<f64> = f.recoveries.iter().map(|(_, ms)| *ms).collect();
        let mut calls = CallTotals::default();
        let mut moves = Moves::default();
        let mut rows = 0;
        let mut reconnects = 0;
        for b in &f.per_bot {
            calls += b.calls;
            moves.sent += b.moves;
            moves.rejected += b.moves_rejected;
            moves.checked += b.checked;
            moves.accurate += b.accurate;
            moves.corrections += b.corrections;
            rows += b.rows;
            reconnects += u64::from(b.reconnects);
        }
        Report {
            bots: f.bots,
            profile: f.profile,
            seed: f.seed,
            duration_s: f.schedule.duration().as_secs_f64(),
            ran_s: f.ran_s,
            interrupted: f.interrupted,
            schedule: f.schedule.clone(),
            faults: f.faults,
            timeline: f.timeline,
            latency,
            recovery: Recovery {
                reconnects,
                p50_ms: percentile(&rec, 0.5),
                p95_ms: percentile(&rec, 0.95),
                max_ms: percentile(&rec, 1.0),
                all: f.recoveries,
            },
            calls,
            moves,
            rows_synced: rows,
            cpu_share: f.cpu_share,
            per_bot: f.per_bot,
            resources: f.resources,
            verdict: f.verdict,
        }
    }

    /// The report as a self-contained HTML page.
    pub fn html(&self) -> String {
        let mut h = String::new();
        let verdict_class = if self.verdict.ok { "ok" } else { "failed" };
        let _ = write!(
            h,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>spacelink swarm report</title>\
             <style>{CSS}</style></head><body><h1>spacelink swarm: {} bots, profile <code>{}</code>, {:.0} s</h1>\
             <p class=\"verdict {verdict_class}\">{}</p>",
            self.bots,
            esc(&self.profile),
            self.ran_s,
            esc(&self.verdict.line())
        );
        if self.interrupted {
            h.push_str("<p class=\"note\">Interrupted with Ctrl-C before the planned end.</p>");
        }
        let phases = self.phase_bands();
        let t: Vec<f64> = self.timeline.iter().map(|s| s.t).collect();
        let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
            self.timeline.iter().filter_map(|s| f(s).map(|v| (s.t, v))).collect()
        };
        h.push_str(
            "<h2>Latency of acknowledged actions: from the call to its answer (waits and resends included)</h2>",
        );
        h.push_str(&chart(
            &[
                ("p50", "#1f77b4", series(&|s| s.p50_ms)),
                ("p95", "#ff7f0e", series(&|s| s.p95_ms)),
                ("p99", "#d62728", series(&|s| s.p99_ms)),
            ],
            &phases,
            &self.fault_marks(),
            "ms",
            &t,
        ));
        h.push_str(&self.latency_table());
        h.push_str("<h2>Bots connected and reconnects</h2>");
        h.push_str(&chart(
            &[
                ("connected", "#2ca02c", series(&|s| Some(s.connected as f64))),
                ("reconnects so far", "#9467bd", series(&|s| Some(s.reconnects as f64))),
                ("queue depth", "#8c564b", series(&|s| Some(s.queue as f64))),
            ],
            &phases,
            &self.fault_marks(),
            "",
            &t,
        ));
        let _ = write!(
            h,
            "<p>{} reconnects; time to recover: median {}, p95 {}, longest {}.</p>",
            self.recovery.reconnects,
            ms(self.recovery.p50_ms),
            ms(self.recovery.p95_ms),
            ms(self.recovery.max_ms)
        );
        h.push_str("<h2>Prediction accuracy (%) and corrections per second</h2>");
        h.push_str(&chart(
            &[
                ("accuracy %", "#17becf", series(&|s| s.accuracy.map(|a| a * 100.0))),
                ("corrections/s", "#d62728", series(&|s| Some(s.corrections as f64))),
            ],
            &phases,
            &self.fault_marks(),
            "",
            &t,
        ));
        h.push_str("<h2>Rows synced per second (all bots)</h2>");
        h.push_str(&chart(
            &[("rows/s", "#1f77b4", series(&|s| Some(s.rows_per_s)))],
            &phases,
            &self.fault_marks(),
            "rows/s",
            &t,
        ));
        h.push_str(&self.resources_section(&phases));
        h.push_str(&self.calls_table());
        h.push_str(&self.faults_table());
        h.push_str(&self.bots_table());
        h.push_str("<p class=\"note\">The same figures are in the JSON file next to this page.</p></body></html>\n");
        h
    }

    /// The process's memory and descriptors over the run, and their judgement.
    fn resources_section(&self, phases: &[(f64, f64, String)]) -> String {
        let mut h = String::from("<h2>The swarm process: resident memory (MiB) and open file descriptors</h2>");
        let rss = self.resources.iter().map(|r| (r.t, r.rss_kib as f64 / 1024.0)).collect();
        let fds = self.resources.iter().map(|r| (r.t, r.fds as f64)).collect();
        let t: Vec<f64> = self.resources.iter().map(|r| r.t).collect();
        h.push_str(&chart(
            &[("RSS MiB", "#1f77b4", rss), ("fds", "#ff7f0e", fds)],
            phases,
            &self.fault_marks(),
            "",
            &t,
        ));
        if let Some(r) = &self.verdict.resources {
            let _ = write!(
                h,
                "<p>After the warm-up ({:.0} s): {}; RSS {:.1} → {:.1} MiB, at most {} fds{}.</p>",
                r.warmup_s,
                esc(&r.summary()),
                r.rss_after_warmup_mib,
                r.rss_end_mib,
                r.fds_max,
                r.fd_slope_per_min.map(|s| format!(", fd slope {s:+.2}/min")).unwrap_or_default()
            );
        }
        h
    }

    fn phase_bands(&self) -> Vec<(f64, f64, String)> {
        self.schedule.phases.iter().map(|p| (p.from.as_secs_f64(), p.to.as_secs_f64(), p.name.clone())).collect()
    }

    fn fault_marks(&self) -> Vec<(f64, String)> {
        self.faults.iter().filter(|f| !f.what.starts_with("phase ")).map(|f| (f.t, f.what.clone())).collect()
    }

    fn latency_table(&self) -> String {
        let mut h = String::from(
            "<table><tr><th>phase</th><th>calls</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>",
        );
        for p in &self.latency {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.phase),
                p.samples,
                ms(p.p50_ms),
                ms(p.p95_ms),
                ms(p.p99_ms),
                ms(p.max_ms)
            );
        }
        h.push_str("</table>");
        h
    }

    fn calls_table(&self) -> String {
        let c = &self.calls;
        let m = &self.moves;
        let accuracy = if m.checked == 0 { 100.0 } else { m.accurate as f64 * 100.0 / m.checked as f64 };
        format!(
            "<h2>Calls</h2><table><tr><th></th><th>sent</th><th>acknowledged</th><th>committed</th><th>refused by the game</th>\
             <th>retried</th><th>lost</th><th>pending</th></tr>\
             <tr><td>actions (<code>act</code>)</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\
             <tr><td>moves (<code>move_player</code>, predicted)</td><td>{}</td><td>{}</td><td>-</td><td>{}</td><td>-</td><td>-</td><td>-</td></tr></table>\
             <p>Predictions checked: {}, right: {accuracy:.1} %, corrections: {}. Rows synced: {}.{}</p>",
            c.sent,
            c.acknowledged,
            c.committed,
            c.refused,
            c.retried,
            c.lost,
            c.pending,
            m.sent,
            m.sent.saturating_sub(m.rejected),
            m.rejected,
            m.checked,
            m.corrections,
            self.rows_synced,
            self.cpu_share.map(|c| format!(" The swarm process used {:.0} % of one core.", c * 100.0)).unwrap_or_default()
        )
    }

    fn faults_table(&self) -> String {
        let mut h = String::from("<h2>Schedule as it ran</h2><table><tr><th>at</th><th>what</th><th>note</th></tr>");
        for f in &self.faults {
            let _ = write!(
                h,
                "<tr class=\"{}\"><td>{:.1} s</td><td>{}</td><td>{}</td></tr>",
                if f.ok { "" } else { "bad" },
                f.t,
                esc(&f.what),
                esc(&f.note)
            );
        }
        h.push_str("</table>");
        h
    }

    fn bots_table(&self) -> String {
        let mut h = String::from(
            "<h2>Bots</h2><table><tr><th>bot</th><th>map</th><th>rows</th><th>moves</th><th>accuracy</th><th>corrections</th>\
             <th>reconnects</th><th>actions sent / committed / refused</th><th>cache = server</th><th>verdict</th></tr>",
        );
        for (b, v) in self.per_bot.iter().zip(self.verdict.bots.iter().map(Some).chain(std::iter::repeat(None))) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} %</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.name),
                b.map_id,
                b.rows,
                b.moves,
                b.accuracy() * 100.0,
                b.corrections,
                b.reconnects,
                b.calls.sent,
                b.calls.committed,
                b.calls.refused,
                v.map_or("-", |v| if v.cache_equal { "yes" } else { "NO" }),
                v.map_or("-", |v| if v.ok() { "ok" } else { "FAILED" }),
            );
        }
        h.push_str("</table>");
        h
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}\
.verdict{font-family:monospace;font-size:15px;padding:10px;border-radius:4px}\
.ok{background:#e3f6e3;border:1px solid #2ca02c}.failed{background:#fde3e3;border:1px solid #d62728}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}tr.bad{background:#fde3e3}.note{color:#666;font-size:13px}\
svg{background:#fff;border:1px solid #ddd}";

/// A milliseconds figure, or a dash.
fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The band colour of a phase.
fn band(phase: &str) -> &'static str {
    match phase {
        "mobile" => "#eaf2fb",
        "bad" => "#fdf0e0",
        "chaos" => "#fbe3e3",
        _ => "#f4f4f4",
    }
}

/// A plotted line: its name, colour and (time, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart: `series` over time, the phases as bands, the faults as marks.
fn chart(
    series: &[Series<'_>],
    phases: &[(f64, f64, String)],
    marks: &[(f64, String)],
    unit: &str,
    t: &[f64],
) -> String {
    let (w, h, left, right, top, bottom) = (1000.0, 260.0, 60.0, 150.0, 18.0, 30.0);
    let t_max = phases.last().map_or(1.0, |p| p.1).max(t.last().copied().unwrap_or(1.0)).max(1.0);
    let y_max = series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).fold(0.0_f64, f64::max);
    let y_max = nice(y_max.max(1.0));
    let x = |v: f64| left + (v / t_max) * (w - left - right);
    let y = |v: f64| top + (1.0 - v / y_max) * (h - top - bottom);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-size=\"11\">");
    for (from, to, name) in phases {
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#777\">{}</text>",
            x(*from),
            (x(*to) - x(*from)).max(0.0),
            h - top - bottom,
            band(name),
            x(*from) + 3.0,
            top + 11.0,
            esc(name)
        );
    }
    for k in 0..=4 {
        let v = y_max * f64::from(k) / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            y(v),
            y(v),
            left - 4.0,
            y(v) + 4.0,
            fmt_num(v)
        );
    }
    let steps = (t_max / 10.0).ceil().max(1.0);
    let mut tick = 0.0;
    while tick <= t_max {
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick:.0} s</text>", x(tick), h - 10.0);
        tick += steps;
    }
    for (at, what) in marks {
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#d62728\" stroke-dasharray=\"3,3\"><title>{}</title></line>",
            x(*at),
            x(*at),
            h - bottom,
            esc(what)
        );
    }
    for (i, (name, color, points)) in series.iter().enumerate() {
        if !points.is_empty() {
            let path: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        let ly = top + 14.0 + 16.0 * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            w - right + 10.0,
            ly - 4.0,
            w - right + 26.0,
            ly,
            esc(name)
        );
    }
    if !unit.is_empty() {
        let _ = write!(s, "<text x=\"4\" y=\"{:.1}\" fill=\"#777\">{}</text>", top - 5.0, esc(unit));
    }
    s.push_str("</svg>");
    s
}

/// A round upper bound for an axis.
fn nice(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::profile::Profile;

    fn report() -> Report {
        let schedule = Schedule::new(Profile::Bad, Duration::from_secs(10), true);
        let timeline = vec![
            Sample { t: 1.0, phase: "start".into(), p50_ms: Some(5.0), connected: 2, ..Sample::default() },
            Sample { t: 2.0, phase: "mobile".into(), p50_ms: Some(120.0), accuracy: Some(0.9), ..Sample::default() },
        ];
        Report::new(RunFigures {
            bots: 2,
            profile: "bad".into(),
            seed: None,
            schedule: &schedule,
            ran_s: 10.0,
            interrupted: false,
            faults: vec![FaultRecord { t: 4.0, what: "connections cut <&>".into(), ok: true, note: String::new() }],
            timeline,
            round_trips: &[(0.5, 4.0), (2.0, 100.0), (2.1, 140.0)],
            recoveries: vec![(4.5, 300.0)],
            per_bot: vec![BotStats { name: "bot-1".into(), rows: 10, ..BotStats::default() }],
            cpu_share: Some(0.2),
            resources: vec![ResourceSample { t: 1.0, rss_kib: 10_240, fds: 12, committed: 0 }],
            verdict: Verdict::default(),
        })
    }

    #[test]
    fn the_figures_add_up_per_phase() {
        let r = report();
        assert_eq!(r.latency[0].phase, "start");
        assert_eq!(r.latency[0].p50_ms, Some(4.0));
        assert_eq!(r.latency[1].samples, 2);
        assert_eq!(r.recovery.max_ms, Some(300.0));
        assert_eq!(r.rows_synced, 10);
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(json["timeline"][1]["p50_ms"], 120.0);
    }

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let html = report().html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.matches("<svg").count() >= 5);
        assert!(html.contains("connections cut &lt;&amp;&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.replace("http://www.w3.org/2000/svg", "").contains("http"), "nothing is fetched");
        assert!(html.contains("verdict: FAILED"));
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(130.0), 200.0);
        assert_eq!(nice(2.2), 2.5);
    }
}
