//! `cargo xtask server start|stop|status|restart [--dir DIR]`: a real
//! spacetimedb-standalone on a free loopback port, with its own data
//! directory and ES256 keys, all under one state directory:
//!
//! ```text
//! DIR/state.json   {pid, port, url, data_dir, started_at, ...} while it runs
//! DIR/data/        the server's data directory
//! DIR/keys/        priv.pem (PKCS#8) and pub.pem: the JWT signing keys
//! DIR/server.log   the server's stdout and stderr
//! DIR/owner.json   the identity and token that publish modules (module.rs)
//! ```

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cmd::{self, fmt_duration, Step};
use crate::{procs, setup};

/// How long `start` waits for `GET /v1/ping`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `stop` waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// `<repo>/.spacelink/server`.
pub fn default_dir() -> PathBuf {
    crate::repo_root().join(".spacelink").join("server")
}

/// The files of one state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub data: PathBuf,
    pub keys: PathBuf,
    pub pub_key: PathBuf,
    pub priv_key: PathBuf,
    pub log: PathBuf,
    pub owner: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Result<Self> {
        let dir = std::path::absolute(dir).with_context(|| format!("making {} absolute", dir.display()))?;
        let keys = dir.join("keys");
        Ok(Paths {
            state: dir.join("state.json"),
            data: dir.join("data"),
            pub_key: keys.join("pub.pem"),
            priv_key: keys.join("priv.pem"),
            keys,
            log: dir.join("server.log"),
            owner: dir.join("owner.json"),
            dir,
        })
    }
}

/// DIR/state.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub pid: u32,
    pub port: u16,
    pub url: String,
    pub data_dir: PathBuf,
    pub started_at: String,
}

impl ServerState {
    fn to_json(&self, paths: &Paths) -> Value {
        json!({
            "pid": self.pid,
            "port": self.port,
            "url": self.url,
            "data_dir": self.data_dir,
            "started_at": self.started_at,
            "log": paths.log,
            "pub_key": paths.pub_key,
            "priv_key": paths.priv_key,
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        Some(ServerState {
            pid: u32::try_from(v.get("pid")?.as_u64()?).ok()?,
            port: u16::try_from(v.get("port")?.as_u64()?).ok()?,
            url: v.get("url")?.as_str()?.to_string(),
            data_dir: PathBuf::from(v.get("data_dir")?.as_str()?),
            started_at: v.get("started_at")?.as_str()?.to_string(),
        })
    }
}

pub fn read_state(paths: &Paths) -> Result<Option<ServerState>> {
    let text = match fs::read_to_string(&paths.state) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", paths.state.display())),
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON: delete it", paths.state.display()))?;
    let state = ServerState::from_json(&value)
        .with_context(|| format!("{} lacks pid/port/url/data_dir/started_at: delete it", paths.state.display()))?;
    Ok(Some(state))
}

fn write_state(paths: &Paths, state: &ServerState) -> Result<()> {
    let text = serde_json::to_string_pretty(&state.to_json(paths))?;
    let tmp = paths.dir.join("state.json.tmp");
    fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &paths.state).with_context(|| format!("writing {}", paths.state.display()))
}

/// Whether `pid` is a spacetimedb-standalone serving `data_dir`.
fn is_our_server(pid: u32, data_dir: &Path) -> bool {
    let Some(args) = procs::cmdline(pid) else {
        return false;
    };
    let data_dir = data_dir.to_string_lossy();
    args.iter().any(|a| a.ends_with("spacetimedb-standalone"))
        && args.iter().any(|a| *a == data_dir)
        && procs::alive(pid)
}

/// Servers serving `data_dir` that are not recorded in state.json (e.g. the
/// file was deleted by hand).
fn strays(data_dir: &Path, known: Option<u32>) -> Vec<u32> {
    procs::all_pids().into_iter().filter(|&pid| Some(pid) != known && is_our_server(pid, data_dir)).collect()
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(2)).timeout(timeout).build()
}

/// `GET /v1/ping` answers 200.
pub fn ping(url: &str) -> bool {
    agent(Duration::from_secs(2)).get(&format!("{url}/v1/ping")).call().is_ok_and(|r| r.status() == 200)
}

/// The state of a server of `paths` that runs and answers, if any.
pub fn running(paths: &Paths) -> Result<Option<ServerState>> {
    Ok(read_state(paths)?.filter(|s| is_our_server(s.pid, &s.data_dir) && ping(&s.url)))
}

/// Terminates our server: SIGTERM to its process group, SIGKILL after 5 s.
fn terminate(pid: u32, data_dir: &Path) -> Result<()> {
    let group = procs::pgid(pid) == Some(pid);
    procs::signal(pid, "TERM", group);
    let start = Instant::now();
    while is_our_server(pid, data_dir) {
        if start.elapsed() > TERM_GRACE {
            eprintln!("    pid {pid} still runs {} after SIGTERM: sending SIGKILL", fmt_duration(TERM_GRACE));
            procs::signal(pid, "KILL", group);
            let killed = Instant::now();
            while is_our_server(pid, data_dir) {
                if killed.elapsed() > Duration::from_secs(5) {
                    bail!("pid {pid} survived SIGKILL: check it with `ps -p {pid}` and kill it by hand");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until nothing listens on `port` any more (after a restart).
fn wait_port_free(port: u16) -> Result<()> {
    let start = Instant::now();
    loop {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!(
                "port {port} is still in use by another process after 10 s (`ss -ltnp | grep {port}` \
                 shows which); stop it, or use `cargo xtask server start` for a fresh server on a new port"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn make_keys(paths: &Paths) -> Result<()> {
    if cmd::find_program("openssl").is_none() {
        bail!("openssl is needed to make the server's ES256 keys: install it (e.g. `apt-get install openssl`)");
    }
    fs::create_dir_all(&paths.keys).with_context(|| format!("creating {}", paths.keys.display()))?;
    let ec = paths.keys.join("ec.pem");
    cmd::output(
        Command::new("openssl").args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"]).arg(&ec),
    )?;
    cmd::output(
        Command::new("openssl").args(["pkcs8", "-topk8", "-nocrypt", "-in"]).arg(&ec).arg("-out").arg(&paths.priv_key),
    )?;
    cmd::output(Command::new("openssl").args(["ec", "-pubout", "-in"]).arg(&ec).arg("-out").arg(&paths.pub_key))?;
    fs::remove_file(&ec).with_context(|| format!("removing {}", ec.display()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&paths.priv_key, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn server_binary() -> Result<PathBuf> {
    let bin = setup::stdb_bin(&setup::cache_dir()?);
    if !bin.is_file() {
        bail!("{} is not installed: run `cargo xtask setup` (builds it once, 7-9 minutes)", bin.display());
    }
    Ok(bin)
}

/// Starts the binary detached (own session, or at least own process group)
/// on `port`, records state.json and waits for `/v1/ping`.
fn launch(paths: &Paths, port: u16, restart: bool) -> Result<ServerState> {
    let bin = server_binary()?;
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(restart)
        .write(true)
        .truncate(!restart)
        .open(&paths.log)
        .with_context(|| format!("opening {}", paths.log.display()))?;
    if restart {
        use std::io::Write;
        writeln!(
            log,
            "\n----- restarted by `cargo xtask server restart` at {} -----",
            cmd::rfc3339_utc(cmd::unix_now())
        )?;
    }
    let log_err = log.try_clone()?;
    let mut command = match cmd::find_program("setsid") {
        // `setsid PROGRAM` execs PROGRAM in a new session with the same pid.
        Some(setsid) => {
            let mut c = Command::new(setsid);
            c.arg(&bin);
            c
        }
        None => {
            use std::os::unix::process::CommandExt;
            let mut c = Command::new(&bin);
            c.process_group(0);
            c
        }
    };
    let listen = format!("127.0.0.1:{port}");
    command
        .arg("start")
        .args(["--listen-addr", &listen])
        .arg("--data-dir")
        .arg(&paths.data)
        .arg("--jwt-pub-key-path")
        .arg(&paths.pub_key)
        .arg("--jwt-priv-key-path")
        .arg(&paths.priv_key)
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    cmd::scrub_cargo_run_env(&mut command);
    eprintln!("    $ {}", cmd::display(&command));
    let mut child = command.spawn().with_context(|| format!("starting {}", bin.display()))?;
    let state = ServerState {
        pid: child.id(),
        port,
        url: format!("http://{listen}"),
        data_dir: paths.data.clone(),
        started_at: cmd::rfc3339_utc(cmd::unix_now()),
    };
    // Recorded before it is ready, so `stop` finds it even if we get interrupted.
    write_state(paths, &state)?;
    if let Err(e) = wait_ready(paths, &state, &mut child) {
        if is_our_server(state.pid, &state.data_dir) {
            let _ = terminate(state.pid, &state.data_dir);
        }
        let _ = child.try_wait();
        let _ = fs::remove_file(&paths.state);
        return Err(e);
    }
    Ok(state)
}

fn wait_ready(paths: &Paths, state: &ServerState, child: &mut Child) -> Result<()> {
    let start = Instant::now();
    let mut next_report = Duration::from_secs(5);
    eprintln!("    waiting for {}/v1/ping (up to {})", state.url, fmt_duration(READY_TIMEOUT));
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the server exited ({status}) before answering. Last lines of {}:\n{}",
                paths.log.display(),
                cmd::tail(&paths.log, 20)
            );
        }
        if ping(&state.url) {
            eprintln!("    ready after {}", fmt_duration(start.elapsed()));
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!(
                "the server did not answer {}/v1/ping within {}; it was stopped. Last lines of {}:\n{}",
                state.url,
                fmt_duration(READY_TIMEOUT),
                paths.log.display(),
                cmd::tail(&paths.log, 20)
            );
        }
        if start.elapsed() >= next_report {
            eprintln!(
                "    ... still waiting ({}); server.log: {}",
                fmt_duration(start.elapsed()),
                cmd::last_line(&paths.log).unwrap_or_default()
            );
            next_report += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a server we did not launch in this process to answer.
fn wait_existing(state: &ServerState) -> bool {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if !is_our_server(state.pid, &state.data_dir) {
            return false;
        }
        if ping(&state.url) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn stop_strays(paths: &Paths, known: Option<u32>) -> Result<()> {
    for pid in strays(&paths.data, known) {
        eprintln!(
            "    found a server for {} that state.json does not record (pid {pid}): stopping it",
            paths.dir.display()
        );
        terminate(pid, &paths.data)?;
    }
    Ok(())
}

/// `server start`: a fresh server (fresh data dir, fresh keys, new free
/// port), unless one of this directory already runs.
pub fn start(dir: &Path) -> Result<ServerState> {
    let paths = Paths::new(dir)?;
    let step = Step::new(format!("start a SpacetimeDB server in {}", paths.dir.display()));
    if let Some(state) = read_state(&paths)? {
        if is_our_server(state.pid, &state.data_dir) {
            if ping(&state.url) || wait_existing(&state) {
                eprintln!(
                    "    a server of this directory is already running (pid {}, since {})",
                    state.pid, state.started_at
                );
                step.finish("already running");
                return Ok(state);
            }
            bail!(
                "the server of {} (pid {}) runs but does not answer {}/v1/ping; see {} and run \
                 `cargo xtask server stop{}` before starting again",
                paths.dir.display(),
                state.pid,
                state.url,
                paths.log.display(),
                dir_flag(&paths)
            );
        }
        eprintln!("    removing stale state (pid {} is gone)", state.pid);
        fs::remove_file(&paths.state)?;
    }
    stop_strays(&paths, None)?;
    server_binary()?;

    fs::create_dir_all(&paths.dir).with_context(|| format!("creating {}", paths.dir.display()))?;
    for old in [&paths.data, &paths.keys] {
        if old.exists() {
            fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    // A token signed with the old keys is worthless now.
    let _ = fs::remove_file(&paths.owner);
    fs::create_dir_all(&paths.data)?;
    make_keys(&paths)?;
    let port = free_port()?;
    let state = launch(&paths, port, false)?;
    step.done();
    Ok(state)
}

/// `server restart`: stop (if running), then start again on the same port
/// with the same data dir and keys, optionally staying down `down_for` first.
pub fn restart(dir: &Path, down_for: Duration) -> Result<ServerState> {
    let paths = Paths::new(dir)?;
    let step = Step::new(format!("restart the SpacetimeDB server of {}", paths.dir.display()));
    let Some(old) = read_state(&paths)? else {
        bail!(
            "no server recorded in {} (nothing to restart): use `cargo xtask server start{}`",
            paths.state.display(),
            dir_flag(&paths)
        );
    };
    if is_our_server(old.pid, &old.data_dir) {
        eprintln!("    stopping pid {}", old.pid);
        terminate(old.pid, &old.data_dir)?;
    } else {
        eprintln!("    pid {} is not running any more", old.pid);
    }
    stop_strays(&paths, None)?;
    if !paths.pub_key.is_file() || !paths.priv_key.is_file() {
        bail!(
            "the keys in {} are gone, so the same server cannot come back: use `cargo xtask server start{}`",
            paths.keys.display(),
            dir_flag(&paths)
        );
    }
    if !down_for.is_zero() {
        eprintln!("    staying down for {}", fmt_duration(down_for));
        std::thread::sleep(down_for);
    }
    wait_port_free(old.port)?;
    let state = launch(&paths, old.port, true)?;
    step.done();
    Ok(state)
}

/// `server stop`. Returns whether a server was stopped.
pub fn stop(dir: &Path) -> Result<bool> {
    let paths = Paths::new(dir)?;
    let start = Instant::now();
    let mut stopped = false;
    let state = read_state(&paths)?;
    match &state {
        Some(state) if is_our_server(state.pid, &state.data_dir) => {
            terminate(state.pid, &state.data_dir)?;
            eprintln!(
                "stopped the server of {} (pid {}, {}) in {}",
                paths.dir.display(),
                state.pid,
                state.url,
                fmt_duration(start.elapsed())
            );
            stopped = true;
        }
        Some(state) => eprintln!(
            "the server of {} (pid {}) is not running any more; removing its state",
            paths.dir.display(),
            state.pid
        ),
        None => {}
    }
    if state.is_some() {
        fs::remove_file(&paths.state).with_context(|| format!("removing {}", paths.state.display()))?;
    }
    let strays = strays(&paths.data, None);
    for pid in &strays {
        eprintln!("stopping an unrecorded server of {} (pid {pid})", paths.dir.display());
        terminate(*pid, &paths.data)?;
        stopped = true;
    }
    if state.is_none() && strays.is_empty() {
        eprintln!("no server is running for {}", paths.dir.display());
    }
    Ok(stopped)
}

/// `server status`: prints it; returns whether a server runs and answers.
pub fn status(dir: &Path) -> Result<bool> {
    let paths = Paths::new(dir)?;
    match read_state(&paths)? {
        None => {
            println!("not running (no server recorded in {})", paths.dir.display());
            Ok(false)
        }
        Some(s) if !is_our_server(s.pid, &s.data_dir) => {
            println!(
                "not running (pid {} recorded in {} has exited): `cargo xtask server restart{}` brings \
                 it back on port {} with its data, `cargo xtask server start{}` starts a fresh one",
                s.pid,
                paths.state.display(),
                dir_flag(&paths),
                s.port,
                dir_flag(&paths)
            );
            Ok(false)
        }
        Some(s) if ping(&s.url) => {
            println!("running: {}", s.url);
            println!("  pid:        {}", s.pid);
            println!("  started at: {}", s.started_at);
            println!("  data dir:   {}", s.data_dir.display());
            println!("  log:        {}", paths.log.display());
            Ok(true)
        }
        Some(s) => {
            println!(
                "running but not answering {}/v1/ping: pid {} (starting up, or stuck: see {})",
                s.url,
                s.pid,
                paths.log.display()
            );
            Ok(false)
        }
    }
}

/// ` --dir DIR` for hints, empty for the default directory.
fn dir_flag(paths: &Paths) -> String {
    if paths.dir == default_dir() {
        String::new()
    } else {
        format!(" --dir {}", paths.dir.display())
    }
}

/// A server this xtask started, stopped when the guard is dropped (also on
/// error paths). A watchdog process (`xtask __watchdog`, in its own process
/// group) stops it too if xtask dies without running destructors (Ctrl-C).
#[derive(Debug)]
pub struct ServerGuard {
    dir: PathBuf,
    watchdog: Option<Child>,
    armed: bool,
}

impl ServerGuard {
    /// Starts a server in `dir` (see [`start`]) under guard.
    pub fn start(dir: &Path) -> Result<(Self, ServerState)> {
        let mut guard = ServerGuard { dir: dir.to_path_buf(), watchdog: None, armed: true };
        guard.watchdog = spawn_watchdog(dir)
            .map_err(|e| eprintln!("    (no watchdog: {e:#}; Ctrl-C may leave the server running)"))
            .ok();
        let state = start(dir)?;
        Ok((guard, state))
    }

    /// Stops the server now.
    pub fn stop(mut self) -> Result<()> {
        self.armed = false;
        let result = stop(&self.dir).map(|_| ());
        self.end_watchdog();
        result
    }

    fn end_watchdog(&mut self) {
        if let Some(mut child) = self.watchdog.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = stop(&self.dir) {
                eprintln!("could not stop the server of {}: {e:#}", self.dir.display());
            }
        }
        self.end_watchdog();
    }
}

fn spawn_watchdog(dir: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let me = std::process::id();
    let started = procs::start_time(me).context("reading our own start time")?;
    let exe = procs::xtask_exe().context("finding the xtask binary")?;
    let paths = Paths::new(dir)?;
    fs::create_dir_all(&paths.dir)?;
    let log = fs::OpenOptions::new().create(true).append(true).open(paths.dir.join("watchdog.log"))?;
    let child = Command::new(exe)
        .arg("__watchdog")
        .arg(me.to_string())
        .arg(started.to_string())
        .arg(&paths.dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the watchdog")?;
    Ok(child)
}

/// `xtask __watchdog PID STARTTIME DIR` (internal): waits until process PID
/// (with that start time) is gone, then stops the server of DIR.
pub fn watchdog(args: &[String]) -> Result<()> {
    let [pid, started, dir] = args else {
        bail!("usage: xtask __watchdog PID STARTTIME DIR");
    };
    let pid: u32 = pid.parse().context("PID")?;
    let started: u64 = started.parse().context("STARTTIME")?;
    while procs::alive(pid) && procs::start_time(pid) == Some(started) {
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "{}: xtask (pid {pid}) ended without stopping its server: stopping it",
        cmd::rfc3339_utc(cmd::unix_now())
    );
    stop(Path::new(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip() {
        let paths = Paths::new(Path::new("/tmp/x")).expect("absolute path");
        let state = ServerState {
            pid: 42,
            port: 3000,
            url: "http://127.0.0.1:3000".into(),
            data_dir: "/tmp/x/data".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
        };
        let json = state.to_json(&paths);
        assert_eq!(json["priv_key"], "/tmp/x/keys/priv.pem");
        assert_eq!(ServerState::from_json(&json), Some(state));
    }
}
