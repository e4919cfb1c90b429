//! `cargo xtask soak [--minutes N] [--clients C] [--seed S]`: the swarm
//! (crates/swarm) in soak mode, run like `demo` ([`crate::demo::run_swarm`]):
//! C bots (default 100) for N minutes (default 30) through the fault proxy
//! under random faults drawn from the seed S (a fresh one unless given,
//! printed first so that a failure can be replayed). The verdict checks
//! exactly-once and the caches against the server's SQL, and the swarm
//! process's memory and file descriptors (crates/swarm/src/resources.rs);
//! the exit code follows it. Each run appends a row to the `soak` table of
//! docs/RELIABILITY.md, read from the report's JSON (target/soak).

use std::fs;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::bench_report::replace_section;
use crate::{bench, cmd, demo};

/// What `cargo xtask soak` was asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// `--minutes N` (default 30).
    pub minutes: f64,
    /// `--clients C` (default 100).
    pub clients: usize,
    /// `--seed S` (default: a fresh one).
    pub seed: Option<u64>,
}

/// Where the report goes, relative to the repository.
const OUT: &str = "target/soak";

/// The head of the table, written once.
const TABLE_HEAD: &str = "## Soak\n\n\
`cargo xtask soak --minutes N --clients C [--seed S]`: C bots (each a real `spacelink::Client`) through the\n\
fault proxy for N minutes under random faults drawn from the seed (connections cut, loss bursts, latency\n\
spikes, blackholes, server freezes, server kills and restarts; crates/swarm/src/soak.rs), then a calm end.\n\
The verdict: every acknowledged action is in the database exactly once, every move ran once, every client's\n\
cache equals the server's SQL answer, and the swarm process's memory and file descriptors did not grow\n\
(crates/swarm/src/resources.rs: the RSS slope over the second half of the run, under 1 MiB/min beyond\n\
1 KiB per committed action, whose row the bot's cache holds; the descriptors back to the calm start's count).\n\
*calls*: actions and moves sent; *faults*: faults made. One row per run, the newest last; replay a run with\n\
its seed.\n\n\
| date (UTC) | commit | minutes | clients | seed | faults | calls | verdict | RSS slope (MiB/min) | fds start → end |\n\
|---|---|---|---|---|---|---|---|---|---|\n";

/// A seed from the clock and the process id.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut z = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
    // One round of SplitMix64's finaliser, so that close starts give far seeds.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `cargo xtask soak`.
pub fn run(options: &Options) -> Result<ExitCode> {
    let seed = options.seed.unwrap_or_else(fresh_seed);
    let (minutes, clients) = (options.minutes, options.clients);
    println!("soak: seed {seed} (replay: cargo xtask soak --minutes {minutes} --clients {clients} --seed {seed})");
    let json = crate::repo_root().join(OUT).join("swarm-report.json");
    // A report left by an earlier run must not be taken for this one's.
    let _ = fs::remove_file(&json);
    let args = [
        "--soak".to_string(),
        "--seed".into(),
        seed.to_string(),
        "--bots".into(),
        clients.to_string(),
        "--duration".into(),
        format!("{:.0}s", minutes * 60.0),
    ];
    let status = demo::run_swarm(&args, OUT)?;
    let report = fs::read_to_string(&json)
        .with_context(|| format!("the swarm left no report ({}): no row written", json.display()))?;
    let report: serde_json::Value = serde_json::from_str(&report).context("reading the swarm's report")?;
    let row = row(&report, &bench::git_commit(), &cmd::rfc3339_utc(cmd::unix_now()), minutes);
    let path = crate::repo_root().join("docs").join("RELIABILITY.md");
    let doc = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    fs::write(&path, add_row(&doc, &row)).with_context(|| format!("writing {}", path.display()))?;
    println!("soak: {row}");
    eprintln!("    added the run to the soak table of {}", path.display());
    println!("soak: seed {seed}");
    Ok(demo::exit_code(status))
}

/// The table's row for a run's report.
fn row(report: &serde_json::Value, commit: &str, now: &str, minutes: f64) -> String {
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let faults = report["faults"].as_array().map_or(0, |f| {
        f.iter().filter(|f| f["ok"] == true && !f["what"].as_str().unwrap_or("").starts_with("phase ")).count()
    });
    let calls = u(&report["calls"]["sent"]) + u(&report["moves"]["sent"]);
    let verdict = &report["verdict"];
    let resources = &verdict["resources"];
    let slope = resources["rss_slope_mib_per_min"].as_f64().map_or("-".to_string(), |s| {
        if resources["rss_judged"] == true {
            format!("{s:+.2}")
        } else {
            format!("{s:+.2} (not judged: too short)")
        }
    });
    let word = if verdict["ok"] == true {
        "ok".to_string()
    } else {
        let why = verdict["problems"].as_array().and_then(|p| p.first()).and_then(|p| p.as_str()).unwrap_or("");
        let why: String = why.chars().take(120).collect();
        format!("FAILED: {}", why.replace('|', "/"))
    };
    format!(
        "| {} | {commit} | {minutes} | {} | {} | {faults} | {calls} | {word} | {slope} | {} → {} |",
        now.get(..16).unwrap_or(now).replace('T', " "),
        u(&report["bots"]),
        u(&report["seed"]),
        u(&resources["fds_baseline"]),
        u(&resources["fds_end"]),
    )
}

/// `doc` with `row` added at the end of its soak table (the table made if missing).
fn add_row(doc: &str, row: &str) -> String {
    let end = "<!-- end: soak -->";
    match doc.find(end) {
        Some(at) => {
            let before = doc[..at].trim_end_matches('\n');
            format!("{before}\n{row}\n{}", &doc[at..])
        }
        None => replace_section(doc, "soak", &format!("{TABLE_HEAD}{row}")),
    }
}

/// Checks `--minutes` and `--clients`.
pub fn options(minutes: Option<String>, clients: Option<String>, seed: Option<String>) -> Result<Options> {
    let minutes = match minutes {
        Some(m) => match m.parse::<f64>() {
            Ok(v) if v.is_finite() && (1.0 / 60.0..=1440.0).contains(&v) => v,
            _ => bail!("--minutes wants a number of minutes between 1/60 and 1440, not `{m}`"),
        },
        None => 30.0,
    };
    let clients = match clients {
        Some(c) => match c.parse::<usize>() {
            Ok(v) if (1..=200).contains(&v) => v,
            _ => bail!("--clients wants a number between 1 and 200, not `{c}`"),
        },
        None => 100,
    };
    let seed = match seed {
        Some(s) => Some(s.parse::<u64>().with_context(|| format!("--seed wants a number, not `{s}`"))?),
        None => None,
    };
    Ok(Options { minutes, clients, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool) -> serde_json::Value {
        serde_json::json!({
            "bots": 100, "seed": 42,
            "faults": [
                {"what": "phase start", "ok": true}, {"what": "connections cut", "ok": true},
                {"what": "server frozen (2 s)", "ok": true}, {"what": "server killed and restarted", "ok": false}
            ],
            "calls": {"sent": 1000}, "moves": {"sent": 20000},
            "verdict": {
                "ok": ok, "problems": if ok { vec![] } else { vec!["bot-07: cache differs | x"] },
                "resources": {"rss_slope_mib_per_min": 0.123, "rss_judged": true, "fds_baseline": 300, "fds_end": 301}
            }
        })
    }

    #[test]
    fn a_run_is_one_row_of_the_table() {
        let row = row(&report(true), "abc1234", "2026-12-07T02:00:00Z", 30.0);
        assert_eq!(row, "| 2026-12-07 02:00 | abc1234 | 30 | 100 | 42 | 2 | 21000 | ok | +0.12 | 300 → 301 |");
        let failed = super::row(&report(false), "abc1234", "2026-12-07T02:00:00Z", 30.0);
        assert!(failed.contains("| FAILED: bot-07: cache differs / x |"), "{failed}");
    }

    #[test]
    fn rows_are_appended_to_the_table_which_is_made_once() {
        let doc = add_row("# Reliability\n", "| row 1 |");
        assert!(doc.contains("## Soak") && doc.contains("|---|\n| row 1 |\n<!-- end: soak -->"), "{doc}");
        let doc = add_row(&format!("{doc}\n## Limits\n"), "| row 2 |");
        assert!(doc.contains("| row 1 |\n| row 2 |\n<!-- end: soak -->\n\n## Limits"), "{doc}");
        assert_eq!(doc.matches("## Soak").count(), 1);
    }

    #[test]
    fn options_have_defaults_and_limits() {
        assert_eq!(options(None, None, None).unwrap(), Options { minutes: 30.0, clients: 100, seed: None });
        assert_eq!(options(Some("1".into()), Some("4".into()), Some("7".into())).unwrap().seed, Some(7));
        assert!(options(Some("0".into()), None, None).is_err());
        assert!(options(None, Some("500".into()), None).is_err());
        assert!(options(None, None, Some("x".into())).is_err());
    }
}
