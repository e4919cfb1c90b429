//! `cargo xtask doctor`: what this machine has, what `demo` and `test` will
//! still install, and about how long that takes. It only looks: nothing is
//! installed, downloaded or written, and it answers in a second or two.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::cmd;
use crate::rustver::{self, CandidateVerdict, RustVersion};
use crate::setup::{self, RustWeb};

/// How a prerequisite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// There and good.
    Ok,
    /// Missing, but `cargo xtask setup` (run by `demo` and `test`) gets it.
    Todo,
    /// Missing, and setup cannot get it: the line says what to do.
    Missing,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Todo => "todo",
            Status::Missing => "MISSING",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub what: &'static str,
    pub detail: String,
    /// Roughly how long setup will take for it, for `Todo` lines.
    pub minutes: Option<(u32, u32)>,
}

fn check(status: Status, what: &'static str, detail: impl Into<String>) -> Check {
    Check { status, what, detail: detail.into(), minutes: None }
}

/// The first line a program prints for `args`, if it runs.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let mut command = Command::new(program);
    cmd::scrub_foreign_build_env(&mut command).args(args);
    let out = cmd::output(&mut command).ok()?;
    out.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

fn tool(what: &'static str, program: &str, args: &[&str], fix: &str) -> Check {
    match first_line(program, args) {
        Some(line) => check(Status::Ok, what, line),
        None => check(Status::Missing, what, format!("`{program}` not found or does not run: {fix}")),
    }
}

/// Free space in KiB on the file system holding `path` (or its nearest
/// existing ancestor), from `df -Pk`.
fn free_kib(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let out = cmd::output(Command::new("df").arg("-Pk").arg(existing)).ok()?;
    parse_df_available(&out)
}

/// The "Available" column of `df -P` output's data line.
pub fn parse_df_available(out: &str) -> Option<u64> {
    out.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Every check, in the order setup needs them.
pub fn checks() -> Vec<Check> {
    let mut checks = vec![
        tool("cargo", "cargo", &["--version"], "install Rust with rustup"),
        tool("gcc", "gcc", &["--version"], "`apt-get install gcc` (the V8 stub and native crates need it)"),
        tool("ar", "ar", &["--version"], "`apt-get install binutils`"),
        tool("openssl", "openssl", &["version"], "`apt-get install openssl` (the test server's keys)"),
    ];
    let cache = match setup::cache_dir() {
        Ok(cache) => cache,
        Err(e) => {
            checks.push(check(Status::Missing, "cache directory", format!("{e:#}")));
            return checks;
        }
    };
    let needed = rustver::module_min_rustc(&crate::module::module_dir(), true);
    checks.push(wasm_toolchain(&cache, needed));
    checks.push(server(&cache));
    checks.push(disk(&cache, &checks));
    checks
}

fn wasm_toolchain(cache: &Path, needed: RustVersion) -> Check {
    let what = "wasm toolchain";
    let rustup = setup::rustup_has_wasm_target()
        .then(|| first_line("rustc", &["--version"]).as_deref().and_then(RustVersion::from_rustc_version))
        .flatten();
    if let Some(v) = rustup.filter(|v| *v >= needed) {
        return check(Status::Ok, what, format!("rustup's wasm32-unknown-unknown target, rustc {v} (needs {needed})"));
    }
    let rustup_note = match rustup {
        Some(v) => format!("rustup's wasm32 target has rustc {v}, too old (needs {needed}); "),
        None => String::new(),
    };
    let web = RustWeb::at(cache);
    let cached = web.version().ok().as_deref().and_then(RustVersion::from_rustc_version);
    match cached {
        Some(v) if v >= needed => {
            return check(
                Status::Ok,
                what,
                format!("{rustup_note}cached Debian rustc-web {v} in {} (needs {needed})", web.rustc.display()),
            )
        }
        Some(v) => {
            let mut c = check(
                Status::Todo,
                what,
                format!("{rustup_note}the cached rustc-web is {v}, older than the {needed} the module needs: setup replaces it"),
            );
            c.minutes = Some((1, 2));
            return c;
        }
        None => {}
    }
    if cmd::find_program("apt-get").is_none() || cmd::find_program("dpkg").is_none() {
        return check(
            Status::Missing,
            what,
            format!(
                "{rustup_note}no rustup wasm32 target and no apt-get/dpkg for Debian's rustc-web: \
                 `rustup target add wasm32-unknown-unknown` (rustc {needed} or newer)"
            ),
        );
    }
    let policy = rustver::apt_policy("rustc-web");
    let detail = match rustver::judge_candidate(&policy, needed) {
        CandidateVerdict::Use(v) => {
            format!("{rustup_note}not cached: setup downloads Debian's rustc-web {v} (needs {needed})")
        }
        CandidateVerdict::TooOld(found) => format!(
            "{rustup_note}not cached; the package lists offer {} (needs {needed}): setup runs `apt-get update` \
             first (as root), which on Debian 12 finds 1.96 in bookworm-security",
            found.map_or("no rustc-web".to_string(), |v| format!("rustc-web {v}"))
        ),
    };
    let mut c = check(Status::Todo, what, detail);
    c.minutes = Some((1, 2));
    c
}

fn server(cache: &Path) -> Check {
    let what = "SpacetimeDB server";
    let bin = setup::stdb_bin(cache);
    let marker = setup::stdb_root(cache).join(".spacelink-ok");
    if bin.is_file() {
        let version = std::fs::read_to_string(&marker).ok().and_then(|t| t.lines().next().map(str::to_string));
        return match version {
            Some(v) => check(Status::Ok, what, format!("{v}, {}", bin.display())),
            None => check(Status::Todo, what, format!("{} exists but setup has not verified it yet", bin.display())),
        };
    }
    let running = setup::running_stdb_installs(&setup::stdb_root(cache));
    if !running.is_empty() {
        let pids: Vec<String> = running.iter().map(u32::to_string).collect();
        let mut c = check(
            Status::Todo,
            what,
            format!("being built right now by `cargo install` (pid {}); setup waits for it", pids.join(", ")),
        );
        c.minutes = Some((1, 13));
        return c;
    }
    let mut c = check(
        Status::Todo,
        what,
        format!(
            "spacetimedb-standalone {} not cached: setup builds it from crates.io into {}",
            setup::STDB_VERSION,
            setup::stdb_root(cache).display()
        ),
    );
    c.minutes = Some((8, 13));
    c
}

/// The server build needs about 4 GiB of scratch space, the toolchain 1 GiB.
fn disk(cache: &Path, so_far: &[Check]) -> Check {
    let what = "free disk";
    let Some(kib) = free_kib(cache) else {
        return check(Status::Ok, what, "unknown (`df` did not answer)");
    };
    let gib = kib as f64 / (1024.0 * 1024.0);
    let todo = so_far.iter().any(|c| c.status == Status::Todo);
    let needed_gib = if todo { 5.0 } else { 1.0 };
    let status = if gib >= needed_gib { Status::Ok } else { Status::Missing };
    check(status, what, format!("{gib:.1} GiB free for {} (setup needs about {needed_gib:.0} GiB)", cache.display()))
}

/// The report's lines and its closing summary.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    for c in checks {
        out.push_str(&format!("{:<7}  {:<width$}  {}\n", c.status.label(), c.what, c.detail));
    }
    let todo: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Todo).collect();
    let missing = checks.iter().filter(|c| c.status == Status::Missing).count();
    out.push('\n');
    if missing > 0 {
        out.push_str(&format!("{missing} prerequisite(s) missing: fix the MISSING lines above first.\n"));
    }
    if todo.is_empty() {
        out.push_str("Everything is installed: `cargo xtask demo` and `cargo xtask test` start at once.\n");
    } else {
        let (lo, hi) = todo.iter().filter_map(|c| c.minutes).fold((0, 0), |(a, b), (lo, hi)| (a + lo, b + hi));
        let names: Vec<&str> = todo.iter().map(|c| c.what).collect();
        out.push_str(&format!(
            "The first `cargo xtask demo` or `cargo xtask test` installs: {} (about {lo}-{hi} minutes on two \
             cores, once; later runs reuse it).\n",
            names.join(", ")
        ));
    }
    out
}

/// `cargo xtask doctor`: exit code 1 if a prerequisite is missing.
pub fn run() -> Result<bool> {
    let checks = checks();
    print!("{}", render(&checks));
    Ok(checks.iter().all(|c| c.status != Status::Missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_available_column() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                   /dev/vda         263174148 11141300 83886080      12% /\n";
        assert_eq!(parse_df_available(out), Some(83_886_080));
        assert_eq!(parse_df_available("garbage"), None);
    }

    #[test]
    fn summary_sums_what_is_left() {
        let mut server = check(Status::Todo, "SpacetimeDB server", "not cached");
        server.minutes = Some((8, 13));
        let mut wasm = check(Status::Todo, "wasm toolchain", "not cached");
        wasm.minutes = Some((1, 2));
        let text = render(&[check(Status::Ok, "cargo", "cargo 1.93.1"), wasm, server]);
        assert!(text.contains("ok       cargo"), "{text}");
        assert!(text.contains("about 9-15 minutes"), "{text}");
        assert!(text.contains("wasm toolchain, SpacetimeDB server"), "{text}");
        let done = render(&[check(Status::Ok, "cargo", "x")]);
        assert!(done.contains("Everything is installed"), "{done}");
        let bad = render(&[check(Status::Missing, "gcc", "not found")]);
        assert!(bad.contains("1 prerequisite(s) missing"), "{bad}");
    }
}
