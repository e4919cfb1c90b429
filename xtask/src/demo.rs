//! `cargo xtask demo`: from a fresh clone to the swarm demo in one command:
//! setup, the swarm's build (cargo's own progress shown), a server (unless one
//! runs), the module published with `--clear`, then the `swarm` binary
//! (crates/swarm): 20 bots through a fault proxy under the `chaos` schedule
//! for about a minute, watched live, ending in a report and a verdict. Its
//! exit code is the demo's.
//!
//! `cargo xtask soak` (soak.rs) runs the same way ([`run_swarm`]), in soak mode.
//!
//! Ctrl-C reaches the swarm, which stops its bots and proxy, thaws the server
//! and still writes the report; xtask waits for it, then stops the server it
//! started.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::{self, Step};
use crate::server::{self, Paths, ServerGuard};
use crate::{module, procs, setup};

/// What `cargo xtask demo` passes on to the swarm.
#[derive(Debug, Default)]
pub struct Options {
    /// `--bots N`.
    pub bots: Option<String>,
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--duration D`.
    pub duration: Option<String>,
    /// `--plain`: progress lines even on a terminal.
    pub plain: bool,
}

/// The swarm binary the build makes.
fn swarm_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| crate::repo_root().join("target"), PathBuf::from);
    target.join("debug").join("swarm")
}

pub fn run(options: &Options) -> Result<ExitCode> {
    let mut args = Vec::new();
    for (flag, value) in [("--bots", &options.bots), ("--profile", &options.profile), ("--duration", &options.duration)]
    {
        if let Some(v) = value {
            args.extend([flag.to_string(), v.clone()]);
        }
    }
    if options.plain {
        args.push("--plain".into());
    }
    Ok(exit_code(run_swarm(&args, "target/swarm")?))
}

/// The swarm's exit code as xtask's.
pub fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// Setup, the swarm's build, a server (unless one runs; stopped after if
/// started here), the module published with `--clear`, then the swarm with
/// `args` writing its report to `out` (relative to the repository): what
/// `demo` and `soak` share.
pub fn run_swarm(args: &[String], out: &str) -> Result<std::process::ExitStatus> {
    setup::run()?;

    // First, the build, with cargo's progress on the terminal: on a fresh
    // clone this is the long part, and it should not be silent.
    let step = Step::new("build the swarm (cargo build -p spacelink-swarm)");
    let mut build = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut build).current_dir(crate::repo_root()).args([
        "build",
        "-p",
        "spacelink-swarm",
        "--bin",
        "swarm",
    ]);
    cmd::run_streamed(&mut build, "cargo build", Duration::from_secs(20))?;
    step.done();

    let dir = server::default_dir();
    let paths = Paths::new(&dir)?;
    // Reuse a running developer server; otherwise start one and stop it after.
    let (guard, url) = match server::running(&paths)? {
        Some(state) => {
            eprintln!("==> using the running server {} (pid {}); it stays running afterwards", state.url, state.pid);
            (None, state.url)
        }
        None => {
            let (guard, state) = ServerGuard::start(&dir)?;
            (Some(guard), state.url)
        }
    };

    module::publish(&dir, true, module::DATABASE)?;

    // Ctrl-C goes to the whole foreground group: the swarm handles it (and
    // writes its report); xtask only waits for it, then cleans up.
    let _ = ctrlc::set_handler(|| eprintln!("\n==> Ctrl-C: waiting for the swarm to finish its report"));

    let step = Step::new("run the swarm");
    let mut swarm = std::process::Command::new(swarm_binary());
    swarm
        .current_dir(crate::repo_root())
        .args(["--server", &url, "--database", module::DATABASE, "--server-dir"])
        .arg(&paths.dir)
        .args(["--out", out])
        .args(args);
    if let Ok(exe) = procs::xtask_exe() {
        swarm.arg("--xtask").arg(exe);
    }
    if args.iter().any(|a| a == "--soak") {
        swarm.env("GLIBC_TUNABLES", soak_tunables(std::env::var("GLIBC_TUNABLES").ok()));
    }
    let status = cmd::run_status(&mut swarm, "swarm", Duration::from_secs(3600)).context("could not run the swarm")?;
    step.done();

    if let Some(guard) = guard {
        guard.stop()?;
    }
    Ok(status)
}

/// The allocator settings of a soak's swarm: glibc raises its mmap and trim
/// thresholds each time a large block is freed, and then keeps the high-water
/// mark of a burst (a hundred clients reconnecting at once, each staging its
/// cache) for good: a 30-minute soak's RSS stepped up after blackholes and
/// stayed flat between them. Fixed thresholds hand freed memory back, so the
/// RSS the soak judges follows what is in use and its slope tells a leak.
/// Settings already in the environment are kept (later entries win).
fn soak_tunables(existing: Option<String>) -> String {
    const FIXED: &str = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072";
    match existing.filter(|e| !e.is_empty()) {
        Some(e) => format!("{FIXED}:{e}"),
        None => FIXED.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::soak_tunables;

    #[test]
    fn the_soak_fixes_the_allocator_thresholds_and_keeps_the_callers_settings() {
        assert_eq!(soak_tunables(None), "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072");
        assert!(soak_tunables(Some("glibc.malloc.arena_max=2".into())).ends_with(":glibc.malloc.arena_max=2"));
        assert!(!soak_tunables(Some(String::new())).ends_with(':'));
    }
}
