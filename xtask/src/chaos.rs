//! `cargo xtask chaos`: the resilience scenarios against a real server, as a
//! table.
//!
//! 1. `setup` (a second run only checks), then the scenarios are built
//!    (`cargo test -p spacelink --test chaos --no-run`) so that a compile
//!    error shows before any server runs;
//! 2. a fresh server in `<repo>/.spacelink/chaos-server` (wiped first), with
//!    the module published as `guildmaster`, under the same guard and
//!    watchdog as `cargo xtask test`;
//! 3. `cargo test -p spacelink --test chaos -- --ignored --nocapture
//!    --test-threads=1` with SPACELINK_SERVER_URL, SPACELINK_DATABASE,
//!    SPACELINK_SERVER_DIR, SPACELINK_XTASK=1, SPACELINK_XTASK_BIN and
//!    SPACELINK_CHAOS_REPORT=`<chaos-server>/chaos-report.jsonl`, its output
//!    streamed;
//! 4. the server is stopped whatever happened;
//! 5. the report is read and printed as a table, then `chaos: N passed, M
//!    failed`. The exit code is non-zero if cargo test failed, a scenario is
//!    not ok, or the report is missing, empty or malformed.
//!
//! Each scenario appends one JSON object per line to the report:
//!
//! ```text
//! {"scenario": str, "detect_ms": number|null, "reconnect_ms": number|null,
//!  "attempts": int|null, "breaker_trips": int|null, "ok": bool, "note": str}
//! ```
//!
//! `scenario` and `ok` are required; a missing number counts as null and a
//! missing note as empty; other keys are ignored.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::cmd::{self, fmt_duration, Step};
use crate::{module, procs, setup, testrun};

/// The package and test target that hold the scenarios.
const PACKAGE: &str = "spacelink";
const TARGET: &str = "chaos";

/// `<repo>/.spacelink/chaos-server`.
pub fn server_dir() -> PathBuf {
    crate::repo_root().join(".spacelink").join("chaos-server")
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub scenario: String,
    /// How long the client took to notice the fault.
    pub detect_ms: Option<f64>,
    /// How long from noticing to being connected again.
    pub reconnect_ms: Option<f64>,
    pub attempts: Option<u64>,
    pub breaker_trips: Option<u64>,
    pub ok: bool,
    pub note: String,
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

fn opt_millis(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Some(ms)),
            _ => Err(format!("`{key}` must be a non-negative number of milliseconds or null, not {}", describe(v))),
        },
    }
}

fn opt_count(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(Some(n)),
            None => Err(format!("`{key}` must be a non-negative integer or null, not {}", describe(v))),
        },
    }
}

/// Parses one non-blank report line.
pub fn parse_line(line: &str) -> Result<Scenario, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(obj) = value else {
        return Err(format!("expected a JSON object, got {}", describe(&value)));
    };
    let scenario = match obj.get("scenario") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(v) => return Err(format!("`scenario` must be a non-empty string, not {}", describe(v))),
        None => return Err("`scenario` is missing".to_string()),
    };
    let ok = match obj.get("ok") {
        Some(Value::Bool(ok)) => *ok,
        Some(v) => return Err(format!("`ok` must be true or false, not {}", describe(v))),
        None => return Err("`ok` is missing".to_string()),
    };
    let note = match obj.get("note") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(v) => return Err(format!("`note` must be a string, not {}", describe(v))),
    };
    Ok(Scenario {
        scenario,
        detect_ms: opt_millis(&obj, "detect_ms")?,
        reconnect_ms: opt_millis(&obj, "reconnect_ms")?,
        attempts: opt_count(&obj, "attempts")?,
        breaker_trips: opt_count(&obj, "breaker_trips")?,
        ok,
        note,
    })
}

/// Parses a whole report (JSON Lines; blank lines are skipped). The error
/// names the first malformed line.
pub fn parse_report(text: &str) -> Result<Vec<Scenario>> {
    let mut scenarios = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let scenario = parse_line(line).map_err(|why| {
            let shown: String = line.chars().take(100).collect();
            let more = if shown.len() < line.len() { "..." } else { "" };
            anyhow::anyhow!("line {}: {why}\n    the line: {shown}{more}", i + 1)
        })?;
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

/// `412 ms` under a second, `1.62 s` from a second on, `-` for null.
pub fn fmt_millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(ms) if ms.round() < 1000.0 => format!("{:.0} ms", ms),
        Some(ms) => format!("{:.2} s", ms / 1000.0),
    }
}

fn fmt_count(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// The table (a header and one line per scenario, in report order), then
/// the notes of the scenarios that have one. No trailing whitespace.
pub fn render_table(scenarios: &[Scenario]) -> Vec<String> {
    const HEADERS: [&str; 6] = ["scenario", "detect", "reconnect", "attempts", "breaker trips", "result"];
    let rows: Vec<[String; 6]> = scenarios
        .iter()
        .map(|s| {
            [
                s.scenario.clone(),
                fmt_millis(s.detect_ms),
                fmt_millis(s.reconnect_ms),
                fmt_count(s.attempts),
                fmt_count(s.breaker_trips),
                if s.ok { "ok".to_string() } else { "FAILED".to_string() },
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = format!("{:<w$}", cells[0], w = widths[0]);
        for (i, cell) in cells.iter().enumerate().take(5).skip(1) {
            out.push_str(&format!("  {:>w$}", cell, w = widths[i]));
        }
        out.push_str("  ");
        out.push_str(cells[5]);
        out
    };
    let mut lines = vec![line(HEADERS)];
    for row in &rows {
        lines.push(line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]));
    }
    let notes: Vec<String> =
        scenarios.iter().filter(|s| !s.note.is_empty()).map(|s| format!("  {}: {}", s.scenario, s.note)).collect();
    if !notes.is_empty() {
        lines.push(String::new());
        lines.push("notes:".to_string());
        lines.extend(notes);
    }
    lines
}

/// `chaos: N passed, M failed`, counting `ok`.
pub fn summary_line(scenarios: &[Scenario]) -> String {
    let passed = scenarios.iter().filter(|s| s.ok).count();
    format!("chaos: {passed} passed, {} failed", scenarios.len() - passed)
}

/// What libtest said about the run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Tests that ran (passed or failed).
    pub ran: usize,
    pub failed: usize,
    /// Names of the failed tests that could be found.
    pub failed_names: Vec<String>,
}

/// Counts the libtest output of the run. With `--nocapture` a test's own
/// output can split its `test name ... ok` line, so the `test result:`
/// line and the final `failures:` list (names indented by four spaces)
/// come first; the per-test lines are the fallback.
pub fn tally_tests(output: &str) -> Tally {
    let run = testrun::parse_libtest_output(output);
    let counts = if run.result_lines > 0 { run.reported } else { run.all() };
    let mut failed_names = run.failed.clone();
    let mut in_list = false;
    for raw in output.lines() {
        let line = testrun::strip_ansi(raw);
        let line = line.trim_end();
        if line == "failures:" {
            in_list = true;
            continue;
        }
        match line.strip_prefix("    ") {
            Some(name) if in_list && !name.trim().is_empty() => {
                let name = name.trim().to_string();
                if !failed_names.contains(&name) {
                    failed_names.push(name);
                }
            }
            _ => in_list = false,
        }
    }
    Tally { ran: counts.ran(), failed: counts.failed.max(run.all().failed), failed_names }
}

/// The file that makes the `chaos` test target, if any: cargo finds
/// `tests/chaos.rs` or `tests/chaos/main.rs`, or a `[[test]]` in the manifest.
fn chaos_target(app: &Path) -> Option<PathBuf> {
    let tests = app.join("tests");
    let candidates = [tests.join("chaos.rs"), tests.join("chaos").join("main.rs")];
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    let manifest = app.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).ok()?;
    let declared = text.lines().any(|l| {
        let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        l == format!("name=\"{TARGET}\"")
    });
    declared.then_some(manifest)
}

fn cargo_chaos(build_only: bool) -> std::process::Command {
    let mut cargo = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut cargo)
        .current_dir(crate::repo_root())
        .args(["test", "-p", PACKAGE, "--test", TARGET]);
    if build_only {
        cargo.arg("--no-run");
    } else {
        cargo.args(["--", "--ignored", "--nocapture", "--test-threads=1"]);
        if std::io::stdout().is_terminal() {
            cargo.args(["--color", "always"]);
        }
    }
    cargo
}

/// What became of the report file.
fn read_report(report: &Path) -> Result<Vec<Scenario>> {
    let text = match fs::read_to_string(report) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no report: {} was not written. Each scenario in crates/app/tests/chaos.rs must append one \
             JSON line to $SPACELINK_CHAOS_REPORT; the scenarios must be #[ignore]d tests (they run with \
             --ignored); see the cargo test output above",
            report.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", report.display())),
    };
    let scenarios = parse_report(&text).with_context(|| format!("{} is malformed", report.display()))?;
    if scenarios.is_empty() {
        bail!(
            "the report {} is empty: no scenario wrote its line. Each scenario must append one JSON \
             line to $SPACELINK_CHAOS_REPORT before it ends (also when it fails); see the cargo test \
             output above",
            report.display()
        );
    }
    Ok(scenarios)
}

/// `cargo xtask chaos`. Returns the exit code; the table and the
/// `chaos: N passed, M failed` line are the last things printed.
pub fn run() -> Result<ExitCode> {
    let start = Instant::now();
    let root = crate::repo_root();
    let app = root.join("crates").join("app");
    let Some(target) = chaos_target(&app) else {
        bail!(
            "there is no `{TARGET}` test target in {PACKAGE} ({} does not exist): `cargo xtask chaos` runs \
             `cargo test -p {PACKAGE} --test {TARGET} -- --ignored`. Write the scenarios there as \
             #[ignore] tests, each appending one JSON line to $SPACELINK_CHAOS_REPORT, and run again",
            app.join("tests").join("chaos.rs").display()
        );
    };

    // Two runs in one checkout would wipe each other's chaos server.
    let spacelink_dir = root.join(".spacelink");
    fs::create_dir_all(&spacelink_dir).with_context(|| format!("creating {}", spacelink_dir.display()))?;
    let lock_path = spacelink_dir.join("chaos.lock");
    let _lock = match procs::PidLock::acquire(&lock_path).with_context(|| format!("locking {}", lock_path.display()))? {
        Ok(lock) => lock,
        Err(pid) => bail!(
            "another `cargo xtask chaos` (pid {pid}) is running in this checkout and owns its chaos server: \
             wait for it to finish (or stop it) and run again"
        ),
    };

    setup::run().context("setup failed, so no chaos scenario ran")?;

    let step = Step::new(format!("1/3: build the chaos scenarios ({})", target.display()));
    let status = cmd::run_status(&mut cargo_chaos(true), "cargo test --no-run", Duration::from_secs(60))?;
    if !status.success() {
        bail!(
            "the chaos scenarios did not build (`cargo test -p {PACKAGE} --test {TARGET} --no-run` exited \
             with {status}): see the compiler output above. No server was started"
        );
    }
    step.done();

    let dir = server_dir();
    let step = Step::new(format!("2/3: fresh server in {} and module", dir.display()));
    let (guard, url) = testrun::prepare_server(&dir).context("preparing the chaos server failed")?;
    step.done();

    let report = dir.join("chaos-report.jsonl");
    match fs::remove_file(&report) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("deleting the old report {}", report.display()));
        }
        _ => {}
    }

    let mut problems: Vec<String> = Vec::new();
    let step = Step::new("3/3: chaos scenarios (cargo test -p spacelink --test chaos -- --ignored)");
    let mut cargo = cargo_chaos(false);
    cargo
        .env("SPACELINK_SERVER_URL", &url)
        .env("SPACELINK_DATABASE", module::DATABASE)
        .env("SPACELINK_SERVER_DIR", &dir)
        .env("SPACELINK_XTASK", "1")
        .env("SPACELINK_CHAOS_REPORT", &report);
    if let Ok(exe) = procs::xtask_exe() {
        cargo.env("SPACELINK_XTASK_BIN", exe);
    }
    let mut tests_ran = None;
    match cmd::run_tee_stdout(&mut cargo, "chaos scenarios", Duration::from_secs(60)) {
        Ok((status, output)) => {
            let tally = tally_tests(&output);
            for name in &tally.failed_names {
                problems.push(format!("test {name} FAILED"));
            }
            if tally.failed > tally.failed_names.len() {
                problems.push(format!("{} chaos test(s) FAILED (see the output above)", tally.failed));
            }
            if !status.success() && tally.failed == 0 {
                problems.push(format!(
                    "cargo test exited with {status} but no test reported FAILED: a build error or a crashed \
                     test binary (see the output above)"
                ));
            }
            if status.success() && tally.ran == 0 {
                problems.push(
                    "no chaos test ran: they must be #[ignore]d tests (`cargo xtask chaos` runs them with \
                     --ignored)"
                        .to_string(),
                );
            }
            tests_ran = Some(tally.ran);
        }
        Err(e) => problems.push(format!("running the chaos scenarios: {e:#}")),
    }
    step.done();
    if let Err(e) = guard.stop() {
        problems.push(format!("stopping the chaos server: {e:#}"));
    }

    let scenarios = match read_report(&report) {
        Ok(scenarios) => scenarios,
        Err(e) => {
            problems.push(format!("{e:#}"));
            Vec::new()
        }
    };
    for s in scenarios.iter().filter(|s| !s.ok) {
        let note = if s.note.is_empty() { String::new() } else { format!(": {}", s.note) };
        problems.push(format!("scenario `{}` is not ok{note}", s.scenario));
    }

    // Not a failure (a test may be no scenario), but worth saying.
    let short_report = match tests_ran {
        Some(ran) if !scenarios.is_empty() && scenarios.len() < ran => Some(format!(
            "note: {ran} chaos tests ran but the report has {} line(s): a scenario that ends without \
             appending its line is missing from the table",
            scenarios.len()
        )),
        _ => None,
    };

    println!();
    println!("==> chaos (cargo xtask chaos, {}; report: {})", fmt_duration(start.elapsed()), report.display());
    if !scenarios.is_empty() {
        for line in render_table(&scenarios) {
            println!("{line}");
        }
        println!();
    }
    if let Some(note) = short_report {
        println!("{note}");
    }
    for problem in &problems {
        println!("problem: {problem}");
    }
    if !problems.is_empty() {
        println!(
            "next: run one scenario against a server you keep: `cargo xtask server start --dir D`, \
             `cargo xtask module publish --dir D`, then SPACELINK_SERVER_URL=<url> SPACELINK_DATABASE=guildmaster \
             SPACELINK_SERVER_DIR=D SPACELINK_CHAOS_REPORT=/tmp/r.jsonl cargo test -p {PACKAGE} --test {TARGET} \
             <name> -- --ignored --nocapture"
        );
    }
    println!("{}", summary_line(&scenarios));
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
{"scenario": "server killed and restarted", "detect_ms": null, "reconnect_ms": 412, "attempts": 3, "breaker_trips": 0, "ok": true, "note": ""}
{"scenario": "blackholed connection", "detect_ms": 1620.4, "reconnect_ms": 260.2, "attempts": 1, "breaker_trips": 0, "ok": true, "note": "dead-peer timeout"}

{"scenario": "server down for 30 s", "detect_ms": 35, "reconnect_ms": 31000, "attempts": 9, "breaker_trips": 2, "ok": false, "note": "gave up", "extra": [1, 2]}
{"scenario": "slow", "detect_ms": 999.6, "ok": true}
"#;

    #[test]
    fn parses_and_renders_the_sample() {
        let scenarios = parse_report(SAMPLE).expect("valid report");
        assert_eq!(scenarios.len(), 4);
        assert_eq!(
            scenarios[0],
            Scenario {
                scenario: "server killed and restarted".into(),
                detect_ms: None,
                reconnect_ms: Some(412.0),
                attempts: Some(3),
                breaker_trips: Some(0),
                ok: true,
                note: String::new(),
            }
        );
        assert_eq!(scenarios[3].attempts, None);
        assert_eq!(scenarios[3].note, "");
        let lines = render_table(&scenarios);
        let expected = [
            "scenario                     detect  reconnect  attempts  breaker trips  result",
            "server killed and restarted       -     412 ms         3              0  ok",
            "blackholed connection        1.62 s     260 ms         1              0  ok",
            "server down for 30 s          35 ms    31.00 s         9              2  FAILED",
            "slow                         1.00 s          -         -              -  ok",
            "",
            "notes:",
            "  blackholed connection: dead-peer timeout",
            "  server down for 30 s: gave up",
        ];
        assert_eq!(lines, expected);
        assert_eq!(summary_line(&scenarios), "chaos: 3 passed, 1 failed");
    }

    #[test]
    fn tallies_split_nocapture_lines() {
        let output = "\
running 3 tests
test a_restart ... http://127.0.0.1:1234
reconnected after 1205 ms
ok
test b_blackhole ... FAILED
test c_split ... waiting
FAILED

failures:

failures:
    b_blackhole
    c_split

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.31s
";
        let tally = tally_tests(output);
        assert_eq!(tally, Tally { ran: 3, failed: 2, failed_names: vec!["b_blackhole".into(), "c_split".into()] });
        assert_eq!(tally_tests("error: no test target named `chaos`\n"), Tally::default());
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_millis(None), "-");
        assert_eq!(fmt_millis(Some(0.0)), "0 ms");
        assert_eq!(fmt_millis(Some(999.4)), "999 ms");
        assert_eq!(fmt_millis(Some(1000.0)), "1.00 s");
        assert_eq!(fmt_millis(Some(12_345.0)), "12.35 s");
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let cases = [
            ("not json", "line 2: not JSON"),
            ("[1, 2]", "line 2: expected a JSON object"),
            (r#"{"ok": true}"#, "line 2: `scenario` is missing"),
            (r#"{"scenario": "x"}"#, "line 2: `ok` is missing"),
            (r#"{"scenario": "x", "ok": "yes"}"#, "line 2: `ok` must be true or false"),
            (r#"{"scenario": "x", "ok": true, "detect_ms": "12"}"#, "line 2: `detect_ms` must be"),
            (r#"{"scenario": "x", "ok": true, "reconnect_ms": -1}"#, "line 2: `reconnect_ms` must be"),
            (r#"{"scenario": "x", "ok": true, "attempts": 1.5}"#, "line 2: `attempts` must be"),
            (r#"{"scenario": "x", "ok": true, "breaker_trips": -2}"#, "line 2: `breaker_trips` must be"),
            (r#"{"scenario": "x", "ok": true, "note": 3}"#, "line 2: `note` must be a string"),
            (r#"{"scenario": "", "ok": true}"#, "line 2: `scenario` must be a non-empty string"),
        ];
        for (bad, expected) in cases {
            let text = format!("{{\"scenario\": \"fine\", \"ok\": true}}\n{bad}\n");
            let err = parse_report(&text).expect_err(bad).to_string();
            assert!(err.starts_with(expected), "{bad}: {err}");
            assert!(err.contains(bad.chars().take(10).collect::<String>().as_str()), "{err}");
        }
    }

    #[test]
    fn empty_report_parses_to_nothing() {
        assert_eq!(parse_report("\n  \n").expect("blank lines only"), []);
        assert_eq!(summary_line(&[]), "chaos: 0 passed, 0 failed");
        assert_eq!(render_table(&[]), ["scenario  detect  reconnect  attempts  breaker trips  result"]);
    }

    #[test]
    fn finds_the_target() {
        let dir = std::env::temp_dir().join(format!("xtask-chaos-target-{}", std::process::id()));
        let tests = dir.join("tests");
        fs::create_dir_all(&tests).expect("temp dir");
        fs::write(dir.join("Cargo.toml"), "[package]\nname = \"spacelink\"\n").expect("manifest");
        assert_eq!(chaos_target(&dir), None);
        fs::write(dir.join("Cargo.toml"), "[package]\nname = \"spacelink\"\n[[test]]\nname = \"chaos\"\n")
            .expect("manifest");
        assert_eq!(chaos_target(&dir), Some(dir.join("Cargo.toml")));
        fs::write(tests.join("chaos.rs"), "").expect("test file");
        assert_eq!(chaos_target(&dir), Some(tests.join("chaos.rs")));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
