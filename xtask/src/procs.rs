//! Small /proc helpers (Linux), and signals sent with the `kill` command
//! (the workspace forbids `unsafe`, so no libc calls).

use std::fs;
use std::process::{Command, Stdio};

/// The arguments a process was started with; `None` if it is gone. A zombie
/// (exited, not yet reaped) has an empty command line and counts as gone.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// The fields of /proc/PID/stat after the command name: index 0 is the
/// state, 1 the parent pid, 2 the process group, 19 the start time.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether the process exists and has not exited (zombies have).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).and_then(|f| f.first().cloned()).is_some_and(|state| state != "Z" && state != "X")
}

/// The process start time (clock ticks since boot): with the pid, it names a
/// process uniquely even if pids are reused.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The process group of a process.
pub fn pgid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect()
}

/// Sends `signal` (e.g. "TERM", "KILL") to a process, or to its whole
/// process group when `group` is true. Returns whether `kill` succeeded.
pub fn signal(pid: u32, signal: &str, group: bool) -> bool {
    let target = if group { format!("-{pid}") } else { pid.to_string() };
    Command::new("kill")
        .args(["-s", signal, "--", &target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
