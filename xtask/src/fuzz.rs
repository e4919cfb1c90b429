//! `cargo xtask fuzz [--minutes N]`: the fuzz targets of
//! crates/connection/tests/fuzz.rs (frames, rows, schema), each for its share
//! of N minutes (default 3), in a release build; prints executions, corpus
//! size and crashes per target and writes them to the `fuzz` section of
//! docs/RELIABILITY.md. A crash fails the command and prints proptest's
//! minimal input. `cargo xtask test` runs the same targets briefly (256 cases
//! each) as ordinary tests.

use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::bench_report::replace_section;
use crate::cmd::{self, Step};

/// One target's figures, as the test prints them.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    target: String,
    executions: u64,
    seconds: f64,
    corpus: u64,
    crashes: u64,
}

/// Reads `fuzz-figures target=.. executions=.. seconds=.. corpus=.. crashes=..` lines.
fn parse(output: &str) -> Vec<Figures> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.split("fuzz-figures ").nth(1)?;
            let field = |name: &str| {
                rest.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            Some(Figures {
                target: field("target")?.to_string(),
                executions: field("executions")?.parse().ok()?,
                seconds: field("seconds")?.parse().ok()?,
                corpus: field("corpus")?.parse().ok()?,
                crashes: field("crashes")?.parse().ok()?,
            })
        })
        .collect()
}

fn markdown(figures: &[Figures], minutes: f64, passed: bool) -> String {
    let mut out = format!(
        "## Fuzzing\n\n`cargo xtask fuzz --minutes {minutes}` (release build; crates/connection/tests/fuzz.rs): each\n\
         target mutates real seeds (frames captured from the 1.3 server in every compression, their rows, the\n\
         module's schema) and feeds them to the decoder; a panic is a crash.\n\n\
         | target | executions | seconds | executions/s | seeds | crashes |\n|---|---|---|---|---|---|\n"
    );
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {} | {} |\n",
            f.target,
            f.executions,
            f.seconds,
            f.executions as f64 / f.seconds.max(0.001),
            f.corpus,
            f.crashes
        ));
    }
    if !passed {
        out.push_str("\nThe run found a crash: see the command's output for the minimal input.\n");
    }
    out
}

/// `cargo xtask fuzz`.
pub fn run(minutes: f64) -> Result<ExitCode> {
    let per_target = minutes * 60.0 / 3.0;
    let step = Step::new(format!("fuzz: 3 targets, {per_target:.0} s each (release build)"));
    let mut cargo = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut cargo)
        .current_dir(crate::repo_root())
        .args(["test", "--release", "-p", "spacelink-connection", "--test", "fuzz", "--", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("SPACELINK_FUZZ_SECONDS", format!("{per_target}"));
    let (status, output) = cmd::run_tee_stdout(&mut cargo, "cargo test --test fuzz", Duration::from_secs(60))?;
    step.done();
    let figures = parse(&output);
    let passed = status.success();
    println!("{:<8} {:>12} {:>8} {:>10} {:>8}", "target", "executions", "seconds", "seeds", "crashes");
    for f in &figures {
        println!("{:<8} {:>12} {:>8.0} {:>10} {:>8}", f.target, f.executions, f.seconds, f.corpus, f.crashes);
    }
    let path = crate::repo_root().join("docs").join("RELIABILITY.md");
    let doc = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    fs::write(&path, replace_section(&doc, "fuzz", &markdown(&figures, minutes, passed)))?;
    eprintln!("    wrote {}", path.display());
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_from_the_test_output() {
        let out =
            "test fuzz_rows ... fuzz-figures target=rows executions=854000 seconds=20.0 corpus=648 crashes=0\nok\n";
        assert_eq!(
            parse(out),
            [Figures { target: "rows".into(), executions: 854_000, seconds: 20.0, corpus: 648, crashes: 0 }]
        );
        let md = markdown(&parse(out), 1.0, true);
        assert!(md.contains("| rows | 854000 | 20 | 42700 | 648 | 0 |"), "{md}");
    }
}
