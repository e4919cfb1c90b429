//! Small /proc helpers (Linux), and signals sent with the `kill` command
//! (the workspace denies `unsafe`, so no libc calls).

use std::fs;
use std::path::{Path, PathBuf};
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

/// The running xtask binary. If cargo rebuilt it meanwhile, Linux reports
/// the old file as `<path> (deleted)`: the path itself then holds the new
/// build, which is what a child process should run.
pub fn xtask_exe() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// A lock file holding `<pid> <start time>` of its owner, removed when
/// dropped. A lock whose owner is gone (killed) is taken over.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock, or returns the pid of the live process holding it.
    pub fn acquire(path: &Path) -> std::io::Result<Result<PidLock, u32>> {
        let me = std::process::id();
        let content = format!("{me} {}\n", start_time(me).unwrap_or(0));
        for _ in 0..2 {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    std::io::Write::write_all(&mut file, content.as_bytes())?;
                    return Ok(Ok(PidLock { path: path.to_path_buf() }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held = fs::read_to_string(path).unwrap_or_default();
                    let mut parts = held.split_whitespace().map(|p| p.parse::<u64>().ok());
                    if let (Some(Some(pid)), Some(Some(started))) = (parts.next(), parts.next()) {
                        let pid = u32::try_from(pid).unwrap_or(0);
                        if alive(pid) && start_time(pid) == Some(started) {
                            return Ok(Err(pid));
                        }
                    }
                    // Stale (its owner died): take it over.
                    let _ = fs::remove_file(path);
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!("could not take the lock {}", path.display())))
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_lock() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("test.lock");
        let lock = PidLock::acquire(&path).expect("io").expect("free lock");
        assert_eq!(PidLock::acquire(&path).expect("io").err(), Some(std::process::id()));
        drop(lock);
        assert!(!path.exists());
        fs::write(&path, "4000000000 1\n").expect("stale lock");
        let lock = PidLock::acquire(&path).expect("io").expect("a stale lock is taken over");
        drop(lock);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn our_own_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(start_time(me).is_some());
        assert!(cmdline(me).is_some_and(|args| !args.is_empty()));
    }
}
