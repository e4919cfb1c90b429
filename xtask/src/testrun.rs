//! `cargo xtask test`: everything CI needs, in one command.
//!
//! 1. `cargo test --workspace --no-fail-fast`: unit and property tests (the
//!    end-to-end tests are `#[ignore = "e2e: ..."]` and skipped here);
//! 2. a fresh server in `<repo>/.spacelink/test-server`, with the module
//!    published as `guildmaster`;
//! 3. `cargo test --workspace --no-fail-fast --tests -- --ignored` with
//!    SPACELINK_SERVER_URL, SPACELINK_DATABASE, SPACELINK_SERVER_DIR,
//!    SPACELINK_XTASK=1 and SPACELINK_XTASK_BIN;
//! 4. the server is stopped whatever happened;
//! 5. a summary counted from libtest's `test <name> ... ok|FAILED|ignored`
//!    lines ends the output.

use std::fs;
use std::io::IsTerminal;
use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{self, fmt_duration, Step};
use crate::server::{self, ServerGuard};
use crate::{module, procs, setup};

/// Passed/failed/ignored tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
}

impl Counts {
    pub fn plus(self, other: Counts) -> Counts {
        Counts {
            passed: self.passed + other.passed,
            failed: self.failed + other.failed,
            ignored: self.ignored + other.ignored,
        }
    }

    /// Tests that ran (passed or failed).
    pub fn ran(self) -> usize {
        self.passed + self.failed
    }
}

/// What one `cargo test` printed, counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// Per-test lines of tests whose name's last segment does not start with `prop_`.
    pub unit: Counts,
    /// Per-test lines of `prop_*` tests.
    pub property: Counts,
    /// Names of the failed tests.
    pub failed: Vec<String>,
    /// The sum of the `test result: ...` lines.
    pub reported: Counts,
    /// How many `test result:` lines there were (one per test binary).
    pub result_lines: usize,
}

impl TestRun {
    pub fn all(&self) -> Counts {
        self.unit.plus(self.property)
    }

    /// Whether the per-test lines agree with the `test result:` lines.
    pub fn consistent(&self) -> bool {
        let all = self.all();
        all.passed == self.reported.passed && all.failed == self.reported.failed
    }
}

/// The outcome on a per-test line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

/// Removes ANSI escape sequences (libtest colours its output on terminals).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `test some::name ... ok` → `("some::name", Passed)`. Also handles
/// `ignored, <reason>` and `- should panic`.
pub fn parse_test_line(line: &str) -> Option<(&str, Outcome)> {
    let rest = line.strip_prefix("test ")?;
    if rest.starts_with("result:") {
        return None;
    }
    let (name, outcome) = rest.split_once(" ... ")?;
    let outcome = outcome.trim();
    let outcome = if outcome == "ok" {
        Outcome::Passed
    } else if outcome.starts_with("FAILED") {
        Outcome::Failed
    } else if outcome == "ignored" || outcome.starts_with("ignored,") {
        Outcome::Ignored
    } else {
        return None;
    };
    let name = name.trim();
    let name = name.strip_suffix(" - should panic").unwrap_or(name);
    Some((name, outcome))
}

/// `test result: ok. 3 passed; 1 failed; 2 ignored; ...` → the counts.
pub fn parse_result_line(line: &str) -> Option<Counts> {
    let rest = line.strip_prefix("test result:")?;
    let (_, numbers) = rest.split_once('.')?;
    let mut counts = Counts::default();
    for part in numbers.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            continue;
        };
        match what {
            "passed" => counts.passed = n,
            "failed" => counts.failed = n,
            "ignored" => counts.ignored = n,
            _ => {}
        }
    }
    Some(counts)
}

/// A property test: the last `::` segment of its name starts with `prop_`.
pub fn is_property_test(name: &str) -> bool {
    name.rsplit("::").next().is_some_and(|last| last.trim().starts_with("prop_"))
}

/// Counts the libtest output of one `cargo test` (all its test binaries).
/// Lines inside a `failures:` section (captured output of failed tests)
/// are not counted.
pub fn parse_libtest_output(output: &str) -> TestRun {
    let mut run = TestRun::default();
    let mut in_failures = false;
    for raw in output.lines() {
        let line = strip_ansi(raw);
        let line = line.trim_end();
        if line == "failures:" {
            in_failures = true;
            continue;
        }
        if let Some(counts) = parse_result_line(line) {
            run.reported = run.reported.plus(counts);
            run.result_lines += 1;
            in_failures = false;
            continue;
        }
        if line.starts_with("running ") {
            in_failures = false;
        }
        if in_failures {
            continue;
        }
        if let Some((name, outcome)) = parse_test_line(line) {
            let bucket = if is_property_test(name) { &mut run.property } else { &mut run.unit };
            match outcome {
                Outcome::Passed => bucket.passed += 1,
                Outcome::Failed => {
                    bucket.failed += 1;
                    run.failed.push(name.to_string());
                }
                Outcome::Ignored => bucket.ignored += 1,
            }
        }
    }
    run
}

/// Adds what went wrong in one phase to `problems`.
fn judge(phase: &str, status: ExitStatus, run: &TestRun, problems: &mut Vec<String>) {
    for name in &run.failed {
        problems.push(format!("{phase}: test {name} FAILED"));
    }
    if !status.success() && run.all().failed == 0 {
        problems.push(format!(
            "{phase}: cargo test exited with {status} but no test reported FAILED: a build error \
             or a crashed test binary (see the output above)"
        ));
    }
    if !run.consistent() {
        eprintln!(
            "note: {phase}: the per-test lines count {} passed, {} failed; the `test result:` lines say \
             {} passed, {} failed (a test printing to stdout can hide a line)",
            run.all().passed,
            run.all().failed,
            run.reported.passed,
            run.reported.failed
        );
    }
}

fn cargo_test(extra_cargo: &[&str], libtest: &[&str]) -> std::process::Command {
    let mut cargo = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut cargo)
        .current_dir(crate::repo_root())
        .args(["test", "--workspace", "--no-fail-fast"])
        // The command-line tool and TLS are off by default; their tests (the
        // e2e tests that run the `spacelink` binary, the TLS proxy's) need them.
        .args(["--features", "spacelink/cli,spacelink/tls"])
        .args(extra_cargo);
    let mut libtest: Vec<&str> = libtest.to_vec();
    if std::io::stdout().is_terminal() {
        libtest.extend(["--color", "always"]);
    }
    if !libtest.is_empty() {
        cargo.arg("--").args(libtest);
    }
    cargo
}

/// `cargo xtask test`. Returns the process exit code; the summary is the
/// last thing printed.
pub fn run() -> Result<ExitCode> {
    let start = Instant::now();
    let mut problems: Vec<String> = Vec::new();
    let quiet_beat = Duration::from_secs(60);

    // Two runs in one checkout would wipe each other's test server.
    let spacelink_dir = crate::repo_root().join(".spacelink");
    fs::create_dir_all(&spacelink_dir).with_context(|| format!("creating {}", spacelink_dir.display()))?;
    let lock_path = spacelink_dir.join("test.lock");
    let _lock = match procs::PidLock::acquire(&lock_path).with_context(|| format!("locking {}", lock_path.display()))? {
        Ok(lock) => lock,
        Err(pid) => bail!(
            "another `cargo xtask test` (pid {pid}) is running in this checkout and owns its test server: \
             wait for it to finish (or stop it) and run again"
        ),
    };

    setup::run().context("setup failed, so no test ran")?;

    // The build tidy test reads the dependency tree offline, with features no
    // test build turns on: every package of the lockfile is fetched first.
    let mut fetch = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut fetch).current_dir(crate::repo_root()).args(["fetch", "--locked"]);
    cmd::run_streamed(&mut fetch, "cargo fetch", quiet_beat).context("fetching the lockfile's packages")?;

    // Phase 1.
    let step = Step::new("phase 1/4: unit and property tests (cargo test --workspace)");
    let (status, output) = cmd::run_tee_stdout(&mut cargo_test(&[], &[]), "cargo test", quiet_beat)?;
    let phase1 = parse_libtest_output(&output);
    judge("unit/property", status, &phase1, &mut problems);
    step.done();

    // Phase 2.
    let dir = crate::repo_root().join(".spacelink").join("test-server");
    let step = Step::new(format!("phase 2/4: fresh server in {} and module", dir.display()));
    let mut phase3 = TestRun::default();
    match prepare_server(&dir) {
        Err(e) => problems.push(format!("e2e: not run, preparing the server failed: {e:#}")),
        Ok((guard, url)) => {
            step.done();
            // Phase 3.
            let step = Step::new("phase 3/4: end-to-end tests (cargo test -- --ignored)");
            let mut cargo = cargo_test(&["--tests"], &["--ignored"]);
            cargo
                .env("SPACELINK_SERVER_URL", &url)
                .env("SPACELINK_DATABASE", module::DATABASE)
                .env("SPACELINK_SERVER_DIR", &dir)
                .env("SPACELINK_XTASK", "1");
            if let Ok(exe) = procs::xtask_exe() {
                cargo.env("SPACELINK_XTASK_BIN", exe);
            }
            match cmd::run_tee_stdout(&mut cargo, "cargo test -- --ignored", quiet_beat) {
                Ok((status, output)) => {
                    phase3 = parse_libtest_output(&output);
                    judge("e2e", status, &phase3, &mut problems);
                    let built = status.success() || phase3.all().failed > 0;
                    if built && phase3.all().ran() == 0 {
                        problems.push(
                            "e2e: no end-to-end test ran (expected tests marked #[ignore = \"e2e: ...\"])".to_string(),
                        );
                    }
                }
                Err(e) => problems.push(format!("e2e: {e:#}")),
            }
            step.done();
            // Stop the server before the smoke (it starts its own) and the summary.
            if let Err(e) = guard.stop() {
                problems.push(format!("stopping the test server: {e:#}"));
            }
        }
    }

    // Phase 4: one short round of `cargo xtask bench --quick` (debug builds,
    // small sizes), so the bench cannot rot. Its figures are printed, never judged:
    // only runs that fail (a client error, a wrong count) are problems.
    let step = Step::new("phase 4/4: bench smoke (cargo xtask bench --quick --rounds 1)");
    let smoke = crate::bench::Options {
        rounds: 1,
        quick: true,
        write_docs: false,
        build: crate::bench::Build::Debug,
        scenarios: Vec::new(),
    };
    let smoke_ok = match crate::bench::run(&smoke) {
        Ok(outcome) => {
            crate::bench::print_table(&outcome.figures);
            for error in &outcome.errors {
                problems.push(format!("bench smoke: {error}"));
            }
            outcome.errors.is_empty()
        }
        Err(e) => {
            problems.push(format!("bench smoke: {e:#}"));
            false
        }
    };
    step.done();

    // Summary.
    let unit = phase1.unit;
    let property = phase1.property;
    let e2e = phase3.all();
    let total = unit.plus(property).plus(e2e);
    println!();
    println!("==> summary (cargo xtask test, {})", fmt_duration(start.elapsed()));
    if phase1.all().ignored > 0 {
        println!("    {} test(s) were ignored in phase 1 (the end-to-end tests run in phase 3)", phase1.all().ignored);
    }
    for problem in &problems {
        println!("    problem: {problem}");
    }
    if !problems.is_empty() {
        println!(
            "    next: rerun one test with `cargo test -p <crate> <name>`; an end-to-end one against \
             `cargo xtask server start` + `cargo xtask module publish` with \
             SPACELINK_SERVER_URL=<url> SPACELINK_DATABASE=guildmaster cargo test -p <crate> <name> -- --ignored"
        );
    }
    println!("unit: {} passed, {} failed", unit.passed, unit.failed);
    println!("property: {} passed, {} failed", property.passed, property.failed);
    println!("e2e: {} passed, {} failed", e2e.passed, e2e.failed);
    println!("bench smoke: {}", if smoke_ok { "ok" } else { "FAILED" });
    println!("total: {} passed, {} failed", total.passed, total.failed);
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A fresh test server (wiping whatever a previous run left) with the module
/// published; returns its guard and URL.
pub fn prepare_server(dir: &std::path::Path) -> Result<(ServerGuard, String)> {
    if dir.exists() {
        server::stop(dir)?;
        fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    let (guard, state) = ServerGuard::start(dir)?;
    module::publish(dir, false, module::DATABASE)?;
    Ok((guard, state.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like real `cargo test` stdout: several binaries, a failure with
    /// captured output (which must not be counted), doc tests and colours.
    const SAMPLE: &str = "\
running 5 tests
test backoff::tests::grows ... ok
test backoff::tests::prop_never_exceeds_cap ... ok
test backoff::tests::e2e_reconnects ... ignored, e2e: needs a server
test backoff::tests::rejects_zero - should panic ... ok
test tests::prop_roundtrip ... FAILED

failures:

---- tests::prop_roundtrip stdout ----
test fake::inner ... ok
thread 'tests::prop_roundtrip' panicked at src/lib.rs:10:5:
minimal failing input: 3

failures:
    tests::prop_roundtrip

test result: FAILED. 3 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.02s

running 2 tests
test decode_frame ... \u{1b}[32mok\u{1b}[0m
test slow_thing ... ignored

test result: \u{1b}[32mok\u{1b}[0m. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 1 test
test crates/app/src/lib.rs - Client::connect (line 12) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.30s
";

    #[test]
    fn counts_sample() {
        let run = parse_libtest_output(SAMPLE);
        assert_eq!(run.unit, Counts { passed: 4, failed: 0, ignored: 2 });
        assert_eq!(run.property, Counts { passed: 1, failed: 1, ignored: 0 });
        assert_eq!(run.failed, ["tests::prop_roundtrip"]);
        assert_eq!(run.result_lines, 3);
        assert_eq!(run.reported, Counts { passed: 5, failed: 1, ignored: 2 });
        assert!(run.consistent());
    }

    #[test]
    fn test_lines() {
        assert_eq!(parse_test_line("test a::b ... ok"), Some(("a::b", Outcome::Passed)));
        assert_eq!(parse_test_line("test a ... ignored, e2e: wait ... then retry"), Some(("a", Outcome::Ignored)));
        assert_eq!(parse_test_line("test x has been running for over 60 seconds"), None);
        assert_eq!(parse_test_line("test result: ok. 1 passed;"), None);
        assert_eq!(parse_test_line("test q ... bench:  10 ns/iter"), None);
    }

    #[test]
    fn property_names() {
        assert!(is_property_test("a::b::prop_x"));
        assert!(is_property_test("prop_top_level"));
        assert!(!is_property_test("prop_mod::plain"));
        assert!(!is_property_test("a::property"));
    }

    #[test]
    fn empty_output() {
        let run = parse_libtest_output("error[E0425]: cannot find value `x`\n");
        assert_eq!(run, TestRun::default());
        assert!(run.consistent());
    }

    #[test]
    fn ansi() {
        assert_eq!(strip_ansi("\u{1b}[1m\u{1b}[31mFAILED\u{1b}[0m"), "FAILED");
    }
}
