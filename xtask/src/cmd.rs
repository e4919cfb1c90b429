//! Running commands with progress: every step says what it runs and how long
//! it took, long quiet steps print a heartbeat, and a failure says which
//! command failed.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// Formats a duration the way every step reports it: `0.4s`, `12.3s`, `7m05s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A named step: prints `==> name` when it begins and `    name: done in 1.2s`
/// when [`Step::done`] is called.
#[derive(Debug)]
pub struct Step {
    name: String,
    start: Instant,
}

impl Step {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        eprintln!("==> {name}");
        Step { name, start: Instant::now() }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn done(self) {
        eprintln!("    {}: done in {}", self.name, fmt_duration(self.elapsed()));
    }

    /// Ends the step with a short result instead of "done" (e.g. "cached").
    pub fn finish(self, what: &str) {
        eprintln!("    {}: {what} ({})", self.name, fmt_duration(self.elapsed()));
    }
}

/// Prints `    ... <label>: still running (1m30s)` every `interval` during
/// which nobody called [`Heartbeat::touch`]. Stops when dropped.
#[derive(Debug)]
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    last: Arc<Mutex<Instant>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(label: &str, interval: Duration) -> Self {
        Self::start_with(label, interval, || None)
    }

    /// Like [`Heartbeat::start`]; `extra` may add a detail to each beat (e.g.
    /// the last line of a log file).
    pub fn start_with(label: &str, interval: Duration, extra: impl Fn() -> Option<String> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let last = Arc::new(Mutex::new(Instant::now()));
        let seen = Arc::clone(&last);
        let label = label.to_string();
        let begun = Instant::now();
        let thread = thread::spawn(move || loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let mut last = match seen.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if last.elapsed() >= interval {
                *last = Instant::now();
                let detail = extra().map(|e| format!(": {e}")).unwrap_or_default();
                eprintln!("    ... {label}: still running ({}){detail}", fmt_duration(begun.elapsed()));
            }
        });
        Heartbeat { stop: Some(tx), last, thread: Some(thread) }
    }

    /// Something visible happened: postpone the next beat.
    pub fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A shell-like rendering of a command, with the environment it sets, for
/// "$ ..." lines and error messages.
pub fn display(cmd: &Command) -> String {
    fn quote(s: &OsStr) -> String {
        let s = s.to_string_lossy();
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c)) {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    }
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            out.push_str(&key.to_string_lossy());
            out.push('=');
            out.push_str(&quote(value));
            out.push(' ');
        }
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn announce(cmd: &Command) {
    match cmd.get_current_dir() {
        Some(dir) => eprintln!("    $ (cd {} && {})", dir.display(), display(cmd)),
        None => eprintln!("    $ {}", display(cmd)),
    }
}

fn spawn_error(cmd: &Command, err: std::io::Error) -> anyhow::Error {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("`{program}` was not found: install it or put it on PATH")
    } else {
        anyhow::anyhow!("could not start `{}`: {err}", display(cmd))
    }
}

/// Runs a long command with inherited stdio (cargo shows its own progress on
/// a terminal); when stderr is not a terminal (CI logs), a heartbeat line is
/// printed every `heartbeat` of silence. Fails if the command fails.
pub fn run_streamed(cmd: &mut Command, label: &str, heartbeat: Duration) -> Result<()> {
    let status = run_status(cmd, label, heartbeat)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Like [`run_streamed`] but returns the exit status instead of failing.
pub fn run_status(cmd: &mut Command, label: &str, heartbeat: Duration) -> Result<ExitStatus> {
    announce(cmd);
    let start = Instant::now();
    let beat = (!std::io::stderr().is_terminal()).then(|| Heartbeat::start(label, heartbeat));
    let status = cmd.status().map_err(|e| spawn_error(cmd, e))?;
    drop(beat);
    eprintln!(
        "    {label}: {} after {}",
        if status.success() { "finished".to_string() } else { format!("FAILED ({status})") },
        fmt_duration(start.elapsed())
    );
    Ok(status)
}

/// Runs a command whose stdout is both shown (line by line, as it comes) and
/// returned; stderr is inherited. A heartbeat line is printed after
/// `heartbeat` without any stdout line.
pub fn run_tee_stdout(cmd: &mut Command, label: &str, heartbeat: Duration) -> Result<(ExitStatus, String)> {
    announce(cmd);
    let start = Instant::now();
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(cmd, e))?;
    let stdout = child.stdout.take().context("the child's stdout was not captured")?;
    let beat = Heartbeat::start(label, heartbeat);
    let mut reader = BufReader::new(stdout);
    let mut captured = String::new();
    let mut line = Vec::new();
    let mut out = std::io::stdout();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).context("reading the command's output")?;
        if n == 0 {
            break;
        }
        beat.touch();
        // A closed terminal must not abort the run: ignore write errors.
        let _ = out.write_all(&line);
        let _ = out.flush();
        captured.push_str(&String::from_utf8_lossy(&line));
    }
    drop(beat);
    let status = child.wait().context("waiting for the command")?;
    eprintln!(
        "    {label}: {} after {}",
        if status.success() { "finished".to_string() } else { format!("exited with {status}") },
        fmt_duration(start.elapsed())
    );
    Ok((status, captured))
}

/// Runs a short command quietly and returns its stdout; on failure the error
/// includes its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    cmd.stdin(Stdio::null());
    let out = cmd.output().map_err(|e| spawn_error(cmd, e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        bail!(
            "`{}` failed ({}):\n{}{}",
            display(cmd),
            out.status,
            stderr.trim_end(),
            if stdout.trim().is_empty() { String::new() } else { format!("\n{}", stdout.trim_end()) }
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on PATH (or is a path that exists).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// The cargo that runs us (`$CARGO`, set by `cargo run`), else `cargo`.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
}

/// Variables `cargo run` sets for xtask itself that must not reach a cargo we
/// start (they describe the xtask package, not the one being built).
const CARGO_RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Removes what `cargo run` set for xtask, keeping the user's own settings
/// (RUSTFLAGS, CARGO_TARGET_DIR, ...). For the workspace's own `cargo test`.
pub fn scrub_cargo_run_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if CARGO_RUN_VARS.contains(&key.as_ref()) || key.starts_with("CARGO_PKG_") {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

/// For a build outside the workspace (the wasm module, `cargo install`):
/// removes every CARGO_* and RUST* setting except the ones about where cargo
/// lives and how it reaches the network, so nothing of the workspace's build
/// (target dir, flags, wrappers, rustc) leaks in.
pub fn scrub_foreign_build_env(cmd: &mut Command) -> &mut Command {
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
        "CARGO_BUILD_JOBS",
        "RUSTUP_",
        "RUST_BACKTRACE",
        "RUST_LOG",
    ];
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let scrub = key.starts_with("CARGO_") || key.starts_with("RUST");
        if scrub && !KEEP_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env_remove("OUT_DIR");
    cmd
}

/// The last non-empty line of a (log) file, shortened, for heartbeats.
pub fn last_line(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(4096);
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let short: String = line.chars().take(120).collect();
    Some(short)
}

/// The last `n` lines of a file (for "the server said ..." errors).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `2025-11-25T08:40:00Z` for a Unix time (UTC), without a date crate.
pub fn rfc3339_utc(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_millis(400)), "0.4s");
        assert_eq!(fmt_duration(Duration::from_secs(425)), "7m05s");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn display_quotes() {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "--", "a b"]).env("X", "1");
        assert_eq!(display(&cmd), "X=1 cargo test -- 'a b'");
    }
}
