//! `cargo xtask bench [--rounds N] [--quick]`: spacelink against the official
//! Rust SDK, on one fresh server, written to docs/BENCHMARKS.md.
//!
//! 1. `setup`; the bench clients are built: spacelink's
//!    (crates/app/examples/bench_client.rs) and, outside the workspace
//!    (bench/, its own lock file), the official generator bench/codegen;
//! 2. a fresh server in `<repo>/.spacelink/bench-server` with the module; its
//!    `schema?version=9` goes through the official generator into
//!    bench/official/src/module_bindings, then the official client is built;
//! 3. every scenario runs for both clients, a fresh process per run,
//!    alternating which goes first, over `--rounds` rounds (default 5; the
//!    1M-row load at most 3; dead-peer detection once);
//! 4. the server is stopped whatever happened; the table is printed and, unless
//!    this is the smoke of `cargo xtask test`, the `client-vs-official`
//!    section of docs/BENCHMARKS.md and docs/bench/client-vs-official.svg are
//!    rewritten (the other sections of the file are kept).
//!
//! The driver writes through the server's HTTP API (`POST
//! /v1/database/guildmaster/call/<reducer>`), so both clients see the same
//! transactions; the NPC tick is stopped first so nothing else writes.
//! `--quick` uses small sizes and debug builds (the ones `cargo test` already
//! made): a smoke that the whole pipeline works, not a measurement.
//!
//! Each client prints JSON lines (see bench_client.rs): `ready`, the dead-peer
//! events, and a last `result` with its measurements.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::bench_report::{self as report, percentile, Client, Figures, Unit};
use crate::cmd::{self, fmt_duration, Step};
use crate::{module, procs, setup, testrun};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub quick: bool,
    /// Rewrite docs/BENCHMARKS.md and the chart (not for the smoke).
    pub write_docs: bool,
    /// How the clients are built.
    pub build: Build,
    /// The scenarios to run (names of [`SCENARIOS`]); empty: all.
    pub scenarios: Vec<String>,
}

/// The scenarios, by the names `--scenario` takes, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "first-row",
    "rtt",
    "rtt-stream",
    "updates",
    "updates-backlog",
    "inserts",
    "inserts-backlog",
    "deletes",
    "deletes-backlog",
    "events-only",
    "dead-peer",
    "frame",
    "connections",
    "load",
    "compression",
    "launch",
];

/// The `frame` scenario (both sizes alike with `--quick`): rows cached for
/// `iter` and `find`, rows per transaction, transactions per run.
const FRAME_ROWS: u64 = 10_000;
const FRAME_TX_ROWS: u64 = 1_000;
const FRAME_TXS: u64 = 5;

/// The `connections` scenario: connections held in one process, and for how
/// long (seconds); `--quick` holds a few for a moment.
const CONNECTIONS: u64 = 1_000;
const CONNECTIONS_HOLD_S: u64 = 120;
const CONNECTIONS_QUICK: u64 = 20;
const CONNECTIONS_QUICK_HOLD_S: u64 = 3;

/// The `compression` scenario: the initial load of this many rows (`--quick`:
/// the smaller) under each compression the protocol offers, on loopback and
/// behind the fault proxy's bandwidth caps (a process of its own, so that its
/// work is not counted as a client's).
const COMPRESSION_ROWS: u64 = 100_000;
const COMPRESSION_ROWS_QUICK: u64 = 5_000;
/// The links of the `compression` scenario: name, key, bytes per second (`None`: loopback, no proxy).
const LINKS: &[(&str, &str, Option<u64>)] = &[
    ("loopback", "loopback", None),
    ("100 Mbit/s", "100mbit", Some(12_500_000)),
    ("10 Mbit/s", "10mbit", Some(1_250_000)),
];
/// What `--compression` takes, as both bench clients name it.
pub const COMPRESSIONS: &[&str] = &["none", "gzip", "brotli"];

/// How both bench clients are built (always both alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// The dev profile as `cargo test` builds it (the smoke reuses its artifacts).
    Debug,
    /// The dev profile with every crate at opt-level 1: minutes instead of a
    /// release build on a small machine; not release numbers.
    Opt1,
    /// Release builds (the default of `cargo xtask bench`).
    Release,
}

impl Build {
    fn name(self) -> &'static str {
        match self {
            Build::Debug => "debug",
            Build::Opt1 => "dev profile at opt-level 1 (`--opt1`)",
            Build::Release => "release",
        }
    }

    /// The profile's directory under the target dir.
    fn dir(self) -> &'static str {
        match self {
            Build::Release => "release",
            _ => "debug",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Build::Debug => &[],
            Build::Opt1 => &["--config", "profile.dev.opt-level=1"],
            Build::Release => &["--release"],
        }
    }
}

/// The sizes of a run.
#[derive(Debug, Clone)]
struct Sizes {
    loads: Vec<u64>,
    update_rows: u64,
    update_txs: u64,
    stream_rows: u64,
    rtt_calls: u32,
    detect_bound: Duration,
    recover_bound: Duration,
    client_timeout: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                loads: vec![1_000, 5_000],
                update_rows: 1_000,
                update_txs: 5,
                stream_rows: 200,
                rtt_calls: 30,
                detect_bound: Duration::from_secs(10),
                recover_bound: Duration::from_secs(15),
                client_timeout: Duration::from_secs(60),
            }
        } else {
            Sizes {
                loads: vec![10_000, 100_000, 1_000_000],
                update_rows: 10_000,
                update_txs: 10,
                stream_rows: 1_000,
                rtt_calls: 300,
                // The official SDK 1.3.2 took 85 s to notice a frozen server here.
                detect_bound: Duration::from_secs(100),
                recover_bound: Duration::from_secs(30),
                client_timeout: Duration::from_secs(180),
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "initial loads of {} rows; updates: {} transactions of {} rows (`bump_spawned`); reducer round trip: \
             {} sequential `move_player` calls per run, the stream {} rows per transaction at {} transactions a second; \
             dead-peer detection waited for at most {} s, recovery {} s",
            self.loads.iter().map(|n| short_count(*n)).collect::<Vec<_>>().join(", "),
            self.update_txs,
            short_count(self.update_rows),
            self.rtt_calls,
            short_count(self.stream_rows),
            STREAM_HZ,
            self.detect_bound.as_secs(),
            self.recover_bound.as_secs()
        )
    }
}

/// The stream's rate: a server ticking at 20 Hz, as games do. Back to back,
/// the writer outruns a client in a debug build (both clients' answers then
/// wait behind an ever longer backlog, and the round trip measures the backlog).
const STREAM_HZ: u32 = 20;

fn short_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// NPCs per map made by the module's `init`: they are entities too.
const NPCS_PER_MAP: u64 = 5;
/// The map of the initial-load scenarios.
const LOAD_MAP: u32 = 1;
/// The map of the update, round-trip and dead-peer scenarios.
const UPDATE_MAP: u32 = 2;
/// Most rows one `spawn_entities` or `bump_spawned` may touch.
const MAX_PER_CALL: u64 = 100_000;

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join("target"))
}

fn bench_workspace() -> PathBuf {
    crate::repo_root().join("bench")
}

/// `cargo build` of the spacelink bench client, in the workspace.
fn build_spacelink(build: Build) -> Result<PathBuf> {
    let mut cargo = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut cargo).current_dir(crate::repo_root());
    cargo.args(["build", "-p", "spacelink", "--example", "bench_client"]).args(build.args());
    cmd::run_streamed(&mut cargo, "cargo build (spacelink bench client)", Duration::from_secs(60))?;
    Ok(target_dir().join(build.dir()).join("examples").join("bench_client"))
}

/// `cargo build` of a package of the bench/ workspace, into the main target dir.
fn build_foreign(package: &str, build: Build) -> Result<PathBuf> {
    let mut cargo = cmd::cargo();
    cmd::scrub_foreign_build_env(&mut cargo).current_dir(bench_workspace());
    cargo.args(["build", "--locked", "-p", package]).arg("--target-dir").arg(target_dir()).args(build.args());
    cmd::run_streamed(&mut cargo, &format!("cargo build ({package})"), Duration::from_secs(60))?;
    Ok(target_dir().join(build.dir()).join(package))
}

/// `cargo build` of the fault proxy's own binary, in the workspace.
fn build_proxy(build: Build) -> Result<PathBuf> {
    let mut cargo = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut cargo).current_dir(crate::repo_root());
    cargo.args(["build", "-p", "spacelink-faultproxy", "--bin", "faultproxy"]).args(build.args());
    cmd::run_streamed(&mut cargo, "cargo build (fault proxy)", Duration::from_secs(60))?;
    Ok(target_dir().join(build.dir()).join("faultproxy"))
}

/// The fault proxy in a process of its own, in front of the server, with a
/// bandwidth cap; stopped when dropped (its standard input closes).
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(bin: &Path, server: &str, bytes_per_sec: u64) -> Result<Proxy> {
        let upstream = server.trim_start_matches("http://").trim_end_matches('/');
        let mut child = Command::new(bin)
            .args(["--upstream", upstream, "--bandwidth", &bytes_per_sec.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["url"].as_str().map(str::to_string))
            .with_context(|| format!("the fault proxy said {line:?}, not its URL"))?;
        Ok(Proxy { child, url })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The owner's token, written by `module publish` into DIR/owner.json.
fn owner_token(dir: &Path) -> Result<String> {
    let path = dir.join("owner.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let owner: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    owner.get("token").and_then(Value::as_str).map(str::to_string).context("owner.json has no token")
}

/// The server, as the driver talks to it.
#[derive(Debug, Clone)]
struct Server {
    url: String,
    token: String,
    pid: u32,
}

impl Server {
    /// Calls a reducer through the HTTP API; returns once it committed.
    fn call(&self, reducer: &str, args: Value) -> Result<()> {
        let url = format!("{}/v1/database/{}/call/{reducer}", self.url, module::DATABASE);
        match ureq::post(&url)
            .timeout(Duration::from_secs(600))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "application/json")
            .send_string(&args.to_string())
        {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, response)) => {
                bail!("{reducer}{args}: HTTP {code}: {}", response.into_string().unwrap_or_default())
            }
            Err(e) => bail!("{reducer}{args}: {e}"),
        }
    }

    fn schema(&self) -> Result<String> {
        let url = format!("{}/v1/database/{}/schema?version=9", self.url, module::DATABASE);
        let response = ureq::get(&url).timeout(Duration::from_secs(30)).call().with_context(|| format!("GET {url}"))?;
        Ok(response.into_string()?)
    }
}

/// The server frozen with SIGSTOP; thawed when dropped, whatever happened.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Result<Self> {
        if !procs::signal(pid, "STOP", false) {
            bail!("could not SIGSTOP process {pid}");
        }
        Ok(Frozen(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        procs::signal(self.0, "CONT", false);
    }
}

/// One run of a bench client: its JSON lines arrive on a channel.
struct Run {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Run {
    fn start(bin: &Path, args: &[String], log: &Path) -> Result<Run> {
        let log = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Run { child, lines })
    }

    /// The next line whose `event` is `event` (others are skipped), if it
    /// comes within `timeout`. A `result` line ends the wait: it is returned
    /// as an error carrying its message.
    fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Option<(u64, Value)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return Ok(Some((v["unix_us"].as_u64().unwrap_or(0), v))),
                Ok(v) if v["event"] == "result" => {
                    bail!("the client ended before `{event}`: {}", v["error"].as_str().unwrap_or("no error given"))
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the client exited before `{event}`"),
            }
        }
    }

    /// The `result` line; the client is killed if it does not come in time.
    fn result(mut self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == "result" => break Ok(v),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break Err(anyhow::anyhow!("no result within {timeout:?}")),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(anyhow::anyhow!("the client exited without a result"))
                }
            }
        };
        self.stop();
        let v = outcome?;
        if v["ok"] != true {
            bail!("{}", v["error"].as_str().unwrap_or("failed without a message"));
        }
        Ok(v)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Samples the machine's load every second while the bench runs.
struct LoadSampler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<(Vec<f64>, Option<f64>)>>,
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

fn loadavg() -> Option<f64> {
    fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

impl LoadSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let first = cpu_jiffies();
            let mut loads = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                loads.extend(loadavg());
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
            let busy = match (first, cpu_jiffies()) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
                _ => None,
            };
            (loads, busy)
        });
        LoadSampler { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let (loads, busy) = self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default();
        let load = match (report::median(&loads), report::min_max(&loads)) {
            (Some(m), Some((lo, hi))) => format!("1-minute load average {m:.2} median ({lo:.2}–{hi:.2})"),
            _ => "load average not sampled".to_string(),
        };
        let busy = busy.map_or_else(String::new, |b| {
            format!(
                ", all CPUs {:.0} % busy on average (the bench itself included; other work shares this machine)",
                b * 100.0
            )
        });
        format!("{load}{busy}")
    }
}

/// A kind of change the `updates`, `inserts` and `deletes` scenarios apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Insert,
    Update,
    Delete,
}

impl Change {
    /// The scenario's name (also the count in the client's result), the
    /// reducer that makes the changes (`map_id`, rows per transaction), and
    /// the clients' flag for how many to expect.
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Change::Insert => ("inserts", "spawn_entities", "--expect-inserts"),
            Change::Update => ("updates", "bump_spawned", "--expect-updates"),
            Change::Delete => ("deletes", "delete_spawned", "--expect-deletes"),
        }
    }
}

/// The bench: clients, server, and what was measured so far.
struct Bench {
    sizes: Sizes,
    rounds: usize,
    server: Server,
    bins: [PathBuf; 2],
    log: PathBuf,
    figures: Figures,
    notes: Vec<String>,
    errors: Vec<String>,
}

impl Bench {
    fn bin(&self, client: Client) -> &Path {
        match client {
            Client::Official => &self.bins[0],
            Client::Spacelink => &self.bins[1],
        }
    }

    fn args(&self, scenario: &str, extra: &[(&str, String)], flags: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--server".to_string(),
            self.server.url.clone(),
            "--database".to_string(),
            module::DATABASE.to_string(),
            "--scenario".to_string(),
            scenario.to_string(),
            "--timeout-s".to_string(),
            self.sizes.client_timeout.as_secs().to_string(),
        ];
        for (k, v) in extra {
            args.push(k.to_string());
            args.push(v.clone());
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        args
    }

    /// The clients in the order of round `round`: alternating who goes first.
    fn order(round: usize) -> [Client; 2] {
        if round.is_multiple_of(2) {
            [Client::Spacelink, Client::Official]
        } else {
            [Client::Official, Client::Spacelink]
        }
    }

    fn failed(&mut self, what: &str, client: Client, round: usize, e: &anyhow::Error) {
        eprintln!("    {what}, {} round {}: FAILED: {e:#}", client.name(), round + 1);
        let error = format!("{what}, {}, round {}: failed: {e:#}", client.name(), round + 1);
        self.notes.push(error.clone());
        self.errors.push(error);
    }

    fn record(&mut self, key: &str, label: &str, unit: Unit, client: Client, v: Option<f64>) {
        let figure = self.figures.get(key, label, unit);
        if let Some(v) = v {
            figure.push(client, v);
        }
    }

    fn spawn(&self, map: u32, mut count: u64) -> Result<()> {
        while count > 0 {
            let n = count.min(MAX_PER_CALL);
            self.server.call("spawn_entities", json!([map, n]))?;
            count -= n;
        }
        Ok(())
    }

    fn query(map: u32) -> String {
        format!("SELECT * FROM entity WHERE map_id = {map}")
    }

    /// Runs `client` with `args` to its result, which must have counted
    /// `expect` rows; a failure is recorded under `what` and gives `None`.
    fn loaded(&mut self, client: Client, args: &[String], expect: u64, what: &str, round: usize) -> Option<Value> {
        let run = Run::start(self.bin(client), args, &self.log)
            .and_then(|run| run.result(self.sizes.client_timeout + Duration::from_secs(10)));
        match run {
            Ok(v) if v["rows"].as_u64() == Some(expect) => Some(v),
            Ok(v) => {
                self.failed(what, client, round, &anyhow::anyhow!("counted {} rows, expected {expect}", v["rows"]));
                None
            }
            Err(e) => {
                self.failed(what, client, round, &e);
                None
            }
        }
    }

    /// The links of [`LINKS`], each with its URL (the capped ones through a
    /// fault proxy of its own, kept running while `each` measures on it).
    fn on_links(&mut self, scenario: &str, proxy: &Path, mut each: impl FnMut(&mut Self, &str, &str, &str)) {
        for &(link, key, cap) in LINKS {
            let proxy = match cap.map(|bytes| Proxy::start(proxy, &self.server.url, bytes)).transpose() {
                Ok(proxy) => proxy,
                Err(e) => {
                    self.errors.push(format!("{scenario}, {link}: no fault proxy: {e:#}"));
                    continue;
                }
            };
            let url = proxy.as_ref().map_or_else(|| self.server.url.clone(), |p| p.url.clone());
            each(self, link, key, &url);
        }
    }

    /// The initial load of `n` rows under each compression, on each link of
    /// [`LINKS`] (the bandwidth-capped ones through the fault proxy `proxy`).
    fn compression(&mut self, n: u64, proxy: &Path) {
        let expect = n + NPCS_PER_MAP;
        let rounds = self.rounds.min(3);
        let extra = [("--query", Self::query(LOAD_MAP)), ("--expect-rows", expect.to_string())];
        self.on_links("compression", proxy, |bench, link, key, url| {
            for &compression in COMPRESSIONS {
                let what = format!("compression, {link}, {compression}");
                for round in 0..rounds {
                    for client in Self::order(round) {
                        let mut args = bench.args("load", &extra, &[]);
                        args[1] = url.to_string();
                        args.extend(["--compression".to_string(), compression.to_string()]);
                        let Some(v) = bench.loaded(client, &args, expect, &what, round) else { continue };
                        let s = short_count(n);
                        bench.record(
                            &format!("comp_{key}_{compression}_ready"),
                            &format!("{link}, {compression}: {s} rows, connect + subscribe until all cached"),
                            Unit::Millis,
                            client,
                            v["ready_ms"].as_f64(),
                        );
                        bench.record(
                            &format!("comp_{key}_{compression}_cpu"),
                            &format!("{link}, {compression}: {s} rows, client CPU until cached"),
                            Unit::Millis,
                            client,
                            v["cpu_ms"].as_f64(),
                        );
                    }
                }
            }
        });
    }

    /// A game's launch to a readable world of `n` rows, on each link of
    /// [`LINKS`]: spacelink with its cache on disk (from the file a run before
    /// it saved, and from the server with no file yet) against the official
    /// SDK's load from the server (it keeps no cache between runs).
    fn launch(&mut self, n: u64, proxy: &Path) {
        let expect = n + NPCS_PER_MAP;
        let rounds = self.rounds.min(3);
        let dir = std::env::temp_dir().join(format!("spacelink-bench-launch-{}", std::process::id()));
        if let Err(e) = fs::create_dir_all(&dir) {
            self.errors.push(format!("launch: {}: {e}", dir.display()));
            return;
        }
        let s = short_count(n);
        self.on_links("launch", proxy, |bench, link, key, url| {
            let file = dir.join(format!("{key}.slcache"));
            let what = format!("launch, {link}");
            let figures = [
                ("disk", format!("{link}: {s} rows, launch to a readable world (spacelink: from its disk cache)")),
                ("cold", format!("{link}: {s} rows, launch to a readable world (spacelink: no file yet)")),
                ("synced", format!("{link}: {s} rows, launch until reconciled with the server (spacelink: from disk)")),
                ("cpu", format!("{link}: {s} rows, client CPU until readable (spacelink: from disk)")),
            ];
            let record = |bench: &mut Self, which: &str, client: Client, v: Option<f64>| {
                let (_, label) = figures.iter().find(|(k, _)| *k == which).expect("a launch figure");
                bench.record(&format!("launch_{key}_{which}"), label, Unit::Millis, client, v);
            };
            for round in 0..rounds {
                for client in Self::order(round) {
                    let extra = [("--query", Self::query(LOAD_MAP)), ("--expect-rows", expect.to_string())];
                    if client == Client::Official {
                        let mut args = bench.args("load", &extra, &[]);
                        args[1] = url.to_string();
                        let Some(v) = bench.loaded(client, &args, expect, &what, round) else { continue };
                        for which in ["disk", "cold", "synced"] {
                            record(bench, which, client, v["ready_ms"].as_f64());
                        }
                        record(bench, "cpu", client, v["cpu_ms"].as_f64());
                        continue;
                    }
                    let _ = fs::remove_file(&file);
                    let mut args = bench.args("launch", &extra, &[]);
                    args[1] = url.to_string();
                    args.extend(["--disk-cache".to_string(), file.display().to_string()]);
                    let Some(cold) = bench.loaded(client, &args, expect, &what, round) else { continue };
                    record(bench, "cold", client, cold["ready_ms"].as_f64());
                    let Some(warm) = bench.loaded(client, &args, expect, &what, round) else { continue };
                    if warm["from_disk"] != json!(true) {
                        bench.failed(&what, client, round, &anyhow::anyhow!("the second launch did not read its file"));
                        continue;
                    }
                    record(bench, "disk", client, warm["ready_ms"].as_f64());
                    record(bench, "synced", client, warm["synced_ms"].as_f64());
                    record(bench, "cpu", client, warm["cpu_ms"].as_f64());
                    eprintln!(
                        "    {what}, round {}: spacelink from disk {:.1} ms (synced {:.1} ms), from the server {:.1} ms",
                        round + 1,
                        warm["ready_ms"].as_f64().unwrap_or(0.0),
                        warm["synced_ms"].as_f64().unwrap_or(0.0),
                        cold["ready_ms"].as_f64().unwrap_or(0.0),
                    );
                }
            }
        });
        let _ = fs::remove_dir_all(&dir);
    }

    /// Initial load of `n` rows (plus the map's NPCs).
    fn load(&mut self, n: u64, rounds: usize) {
        let expect = n + NPCS_PER_MAP;
        let what = format!("load {}", short_count(n));
        let extra = [("--query", Self::query(LOAD_MAP)), ("--expect-rows", expect.to_string())];
        // A client that cannot load a million rows is not made to try again.
        let mut gave_up: Vec<Client> = Vec::new();
        for round in 0..rounds {
            for client in Self::order(round) {
                if gave_up.contains(&client) {
                    continue;
                }
                let run = Run::start(self.bin(client), &self.args("load", &extra, &[]), &self.log)
                    .and_then(|run| run.result(self.sizes.client_timeout + Duration::from_secs(10)));
                let v = match run {
                    Ok(v) => v,
                    Err(e) => {
                        self.failed(&what, client, round, &e);
                        if n >= 1_000_000 {
                            self.notes.push(format!("{what}, {}: no further rounds after a failure", client.name()));
                            gave_up.push(client);
                        }
                        continue;
                    }
                };
                if v["rows"].as_u64() != Some(expect) {
                    let e = anyhow::anyhow!("counted {} rows, expected {expect}", v["rows"]);
                    self.failed(&what, client, round, &e);
                    continue;
                }
                if let Some(d) = v["disconnects"].as_u64().filter(|d| *d > 0) {
                    self.notes.push(format!(
                        "{what}, {}, round {}: {d} lost session(s) during the load",
                        client.name(),
                        round + 1
                    ));
                }
                let s = short_count(n);
                self.record(
                    &format!("load_{n}_ready"),
                    &format!("{s} rows: connect + subscribe until all cached"),
                    Unit::Millis,
                    client,
                    v["ready_ms"].as_f64(),
                );
                self.record(
                    &format!("load_{n}_cpu"),
                    &format!("{s} rows: client CPU until cached"),
                    Unit::Millis,
                    client,
                    v["cpu_ms"].as_f64(),
                );
                self.record(
                    &format!("load_{n}_rss"),
                    &format!("{s} rows: RSS after"),
                    Unit::KiB,
                    client,
                    v["rss_kib"].as_f64(),
                );
                self.record(
                    &format!("load_{n}_peak"),
                    &format!("{s} rows: peak RSS"),
                    Unit::KiB,
                    client,
                    v["peak_rss_kib"].as_f64(),
                );
                eprintln!(
                    "    {what}, {} round {}: {:.1} ms, cpu {:.1} ms, rss {} KiB",
                    client.name(),
                    round + 1,
                    v["ready_ms"].as_f64().unwrap_or(0.0),
                    v["cpu_ms"].as_f64().unwrap_or(0.0),
                    v["rss_kib"]
                );
            }
        }
    }

    /// The update map as every changes run starts it: `update_rows` spawned
    /// entities (and `more` besides), whatever a failed run left.
    fn reset_update_map(&self, more: u64) -> Result<()> {
        self.server.call("clear_spawned", json!([UPDATE_MAP]))?;
        self.spawn(UPDATE_MAP, self.sizes.update_rows)?;
        for _ in 0..more / self.sizes.update_rows.max(1) {
            self.spawn(UPDATE_MAP, self.sizes.update_rows)?;
        }
        Ok(())
    }

    /// One run of a stream of changes of `kind` with `client` (`flags` added
    /// to its arguments): subscribed to the update map, it is told
    /// `update_txs` transactions of `update_rows` rows each (`spawn_entities`,
    /// `bump_spawned` or `delete_spawned`), live or, with `backlog`, while
    /// frozen. Its result, when the stream was resumed (or started), and when
    /// the last transaction committed (µs since the epoch).
    fn stream(&self, client: Client, kind: Change, flags: &[&str], backlog: bool) -> Result<(Value, u64, u64)> {
        let rows = self.sizes.update_rows;
        let txs = self.sizes.update_txs;
        let total = rows * txs;
        let (_, reducer, flag) = kind.parts();
        // Deletes need the rows they delete: cached before the run, like the others' rows.
        let before = if kind == Change::Delete { total } else { 0 };
        let extra = [
            ("--query", Self::query(UPDATE_MAP)),
            ("--expect-rows", (rows + before + NPCS_PER_MAP).to_string()),
            (flag, total.to_string()),
        ];
        if kind != Change::Update {
            self.reset_update_map(before)?;
        }
        let mut run = Run::start(self.bin(client), &self.args("changes", &extra, flags), &self.log)?;
        run.wait_event("ready", self.sizes.client_timeout)?.context("not ready in time")?;
        let frozen = if backlog { Some(Frozen::new(run.pid())?) } else { None };
        let start = unix_us();
        for _ in 0..txs {
            self.server.call(reducer, json!([UPDATE_MAP, rows]))?;
        }
        let committed = unix_us();
        let resumed = if let Some(frozen) = frozen {
            // Let the server push what it has to the socket.
            thread::sleep(Duration::from_millis(300));
            let at = unix_us();
            drop(frozen);
            at
        } else {
            start
        };
        let v = run.result(self.sizes.client_timeout + Duration::from_secs(10))?;
        Ok((v, resumed, committed))
    }

    /// Changes of one kind applied, live (`backlog` false) or from a backlog
    /// (the client frozen while the server writes): `update_txs` transactions
    /// of `update_rows` rows each, timed from the first write (or the thaw)
    /// to the last change counted, with the client's CPU from ready to then.
    fn changes(&mut self, kind: Change, backlog: bool) {
        let name = kind.parts().0;
        let what = if backlog { format!("{name} from a backlog") } else { format!("{name}, live") };
        for round in 0..self.rounds {
            for client in Self::order(round) {
                let (v, from, committed) = match self.stream(client, kind, &[], backlog) {
                    Ok(x) => x,
                    Err(e) => {
                        self.failed(&what, client, round, &e);
                        continue;
                    }
                };
                let (Some(counted), Some(last)) = (v[name].as_u64(), v["last_change_unix_us"].as_u64()) else {
                    self.failed(&what, client, round, &anyhow::anyhow!("no change times in {v}"));
                    continue;
                };
                let secs = (last.saturating_sub(from) as f64 / 1e6).max(1e-6);
                let rate = counted as f64 / secs;
                let cpu_1k = v["change_cpu_ms"].as_f64().map(|ms| ms / (counted.max(1) as f64 / 1e3));
                let way = if backlog { "backlog" } else { "live" };
                let (from_where, how) = if backlog {
                    ("from a backlog", "(client frozen while the server wrote, then resumed)")
                } else {
                    ("live", "(server-bound)")
                };
                self.record(
                    &format!("{name}_{way}_rate"),
                    &format!("{name} applied per second, {from_where} {how}"),
                    Unit::RowsPerSec,
                    client,
                    Some(rate),
                );
                self.record(
                    &format!("{name}_{way}_cpu1k"),
                    &format!("{name}, {from_where}: client CPU per 1k rows applied"),
                    Unit::Millis,
                    client,
                    cpu_1k,
                );
                if backlog {
                    self.record(
                        &format!("{name}_{way}_peak"),
                        &format!("{name}, {from_where}: peak RSS (the initial rows, then the backlog)"),
                        Unit::KiB,
                        client,
                        v["peak_rss_kib"].as_f64(),
                    );
                    eprintln!("    {what}, {} round {}: {:.0} rows/s", client.name(), round + 1, rate);
                } else {
                    let lag = last as f64 / 1e3 - committed as f64 / 1e3;
                    self.record(
                        &format!("{name}_{way}_lag"),
                        &format!("{name}, live: lag after the last commit"),
                        Unit::Millis,
                        client,
                        Some(lag.max(0.0)),
                    );
                    eprintln!(
                        "    {what}, {} round {}: {:.0} rows/s, lag {:.1} ms",
                        client.name(),
                        round + 1,
                        rate,
                        lag
                    );
                }
            }
        }
        if kind != Change::Update {
            if let Err(e) = self.reset_update_map(0) {
                self.errors.push(format!("{what}: resetting the update map: {e:#}"));
            }
        }
    }

    /// The memory of a table the client only listens to, under the update
    /// stream of `updates`: spacelink with the table events-only (`--events-only`:
    /// it keeps none of its rows and is told every change), the official SDK
    /// with its cache (it has no such setting). RSS once subscribed, after the
    /// stream, and the process's peak.
    fn events_only(&mut self) {
        let what = "events-only: a table under the update stream";
        let total = self.sizes.update_rows * self.sizes.update_txs;
        for round in 0..self.rounds {
            for client in Self::order(round) {
                let flags: &[&str] = if client == Client::Spacelink { &["--events-only"] } else { &[] };
                let v = match self.stream(client, Change::Update, flags, false) {
                    Ok((v, _, _)) if v["updates"].as_u64() == Some(total) => v,
                    Ok((v, _, _)) => {
                        let e = anyhow::anyhow!("told {} updates, expected {total}", v["updates"]);
                        self.failed(what, client, round, &e);
                        continue;
                    }
                    Err(e) => {
                        self.failed(what, client, round, &e);
                        continue;
                    }
                };
                if client == Client::Spacelink && v["cached"].as_u64() != Some(0) {
                    let e = anyhow::anyhow!("the events-only table held {} rows", v["cached"]);
                    self.failed(what, client, round, &e);
                    continue;
                }
                let (ready, end, peak) = (v["rss_kib"].as_f64(), v["end_rss_kib"].as_f64(), v["peak_rss_kib"].as_f64());
                let s = short_count(total);
                let label = |l: &str| format!("{s} updates streamed to a table only listened to: {l}");
                self.record("events_rss_ready", &label("RSS once subscribed"), Unit::KiB, client, ready);
                self.record("events_rss_end", &label("RSS after the stream"), Unit::KiB, client, end);
                self.record("events_peak_rss", &label("peak RSS"), Unit::KiB, client, peak);
                let grown = end.zip(ready).map(|(end, ready)| (end - ready).max(0.0));
                self.record(
                    "events_rss_growth",
                    &label("RSS the subscription's rows and stream added"),
                    Unit::KiB,
                    client,
                    grown,
                );
                eprintln!("    {what}, {} round {}: peak rss {} KiB", client.name(), round + 1, v["peak_rss_kib"]);
            }
        }
    }

    /// Reducer round trips, idle or under a stream of updates the client is subscribed to.
    fn rtt(&mut self, stream: bool) {
        let what = if stream { "reducer round trip under a stream of updates" } else { "reducer round trip, idle" };
        let mut extra = vec![("--calls", self.sizes.rtt_calls.to_string())];
        let mut flags: Vec<&str> = Vec::new();
        if stream {
            extra.push(("--query", Self::query(UPDATE_MAP)));
            extra.push(("--expect-rows", (self.sizes.update_rows + NPCS_PER_MAP).to_string()));
            flags.push("--wait-update");
        }
        for round in 0..self.rounds {
            for client in Self::order(round) {
                let stop = Arc::new(AtomicBool::new(false));
                let writer = stream.then(|| {
                    let (server, stop, rows) = (self.server.clone(), stop.clone(), self.sizes.stream_rows);
                    thread::spawn(move || {
                        let tick = Duration::from_secs(1) / STREAM_HZ;
                        let mut next = Instant::now();
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            if server.call("bump_spawned", json!([UPDATE_MAP, rows])).is_err() {
                                break;
                            }
                            n += 1;
                            next += tick;
                            thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                        n
                    })
                });
                let outcome = Run::start(self.bin(client), &self.args("rtt", &extra, &flags), &self.log)
                    .and_then(|run| run.result(self.sizes.client_timeout + Duration::from_secs(10)));
                stop.store(true, Ordering::Relaxed);
                let transactions = writer.and_then(|w| w.join().ok());
                let v = match outcome {
                    Ok(v) => v,
                    Err(e) => {
                        self.failed(what, client, round, &e);
                        continue;
                    }
                };
                let samples: Vec<f64> =
                    v["rtt_us"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
                let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
                let key = if stream { "rtt_stream" } else { "rtt_idle" };
                let label =
                    if stream { "reducer round trip under a stream of updates" } else { "reducer round trip, idle" };
                self.record(&format!("{key}_p50"), &format!("{label}: p50"), Unit::Micros, client, p50);
                self.record(&format!("{key}_p99"), &format!("{label}: p99"), Unit::Micros, client, p99);
                // Only spacelink reports it (the official SDK's reducer event has no
                // execution time); it is the same server running the same reducer.
                let server: Vec<f64> =
                    v["server_us"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
                if !server.is_empty() {
                    self.record(
                        &format!("{key}_server_p50"),
                        &format!("{label}: the server's own execution time, p50 (as it reports it)"),
                        Unit::Micros,
                        client,
                        percentile(&server, 50.0),
                    );
                }
                eprintln!(
                    "    {what}, {} round {}: p50 {:.0} µs, p99 {:.0} µs{}",
                    client.name(),
                    round + 1,
                    p50.unwrap_or(0.0),
                    p99.unwrap_or(0.0),
                    transactions.map_or_else(String::new, |n| format!(
                        " ({n} stream transactions, {} updates seen)",
                        v["updates_seen"]
                    ))
                );
            }
        }
    }

    /// A game's frame: the time a tick that delivers a transaction of
    /// [`FRAME_TX_ROWS`] row updates takes on the game's thread, and reads of
    /// [`FRAME_ROWS`] cached rows (`iter`, `find` by a unique column).
    /// Many connections held in one process: memory and CPU per connection.
    fn connections(&mut self, connections: u64, hold: u64) {
        let what = "connections";
        let extra = [("--connections", connections.to_string()), ("--hold-s", hold.to_string())];
        // Minutes per run: one round.
        for client in Self::order(0) {
            let outcome = (|| -> Result<Value> {
                let mut run = Run::start(self.bin(client), &self.args("connections", &extra, &[]), &self.log)?;
                run.wait_event("ready", self.sizes.client_timeout)?.context("not connected in time")?;
                run.result(Duration::from_secs(hold) + self.sizes.client_timeout)
            })();
            let v = match outcome {
                Ok(v) => v,
                Err(e) => {
                    self.failed(what, client, 0, &e);
                    continue;
                }
            };
            let n = short_count(connections);
            let number = |key: &str| v[key].as_f64();
            self.record(
                "conn_connect",
                &format!("{n} connections connected and subscribed: time"),
                Unit::Millis,
                client,
                number("connect_ms"),
            );
            self.record(
                "conn_connect_cpu",
                &format!("{n} connections connected and subscribed: CPU"),
                Unit::Millis,
                client,
                number("connect_cpu_ms"),
            );
            self.record("conn_rss", "memory per connection (RSS)", Unit::KiB, client, number("rss_per_client_kib"));
            self.record(
                "conn_cpu",
                "CPU per connection held, per second",
                Unit::Micros,
                client,
                number("cpu_us_per_client_s"),
            );
            let threads = v["threads"].as_u64().unwrap_or(0);
            self.notes.push(format!(
                "connections, {}: {threads} threads in the process with {n} connections held {hold} s, {} sessions lost",
                client.name(),
                v["sessions_lost"].as_u64().unwrap_or(0)
            ));
            eprintln!(
                "    {what}, {}: {n} connected in {:.0} ms, {:.0} KiB and {:.0} µs CPU/s each, {threads} threads",
                client.name(),
                number("connect_ms").unwrap_or(0.0),
                number("rss_per_client_kib").unwrap_or(0.0),
                number("cpu_us_per_client_s").unwrap_or(0.0),
            );
        }
    }

    fn frame(&mut self) {
        let what = "game frame";
        let extra = [
            ("--query", Self::query(UPDATE_MAP)),
            ("--expect-rows", (FRAME_ROWS + NPCS_PER_MAP).to_string()),
            ("--expect-updates", (FRAME_TX_ROWS * FRAME_TXS).to_string()),
        ];
        for round in 0..self.rounds {
            for client in Self::order(round) {
                let outcome = (|| -> Result<Value> {
                    let mut run = Run::start(self.bin(client), &self.args("frame", &extra, &[]), &self.log)?;
                    run.wait_event("ready", self.sizes.client_timeout)?.context("not ready in time")?;
                    for _ in 0..FRAME_TXS {
                        // Apart, so that a tick delivers one transaction.
                        thread::sleep(Duration::from_millis(200));
                        self.server.call("bump_spawned", json!([UPDATE_MAP, FRAME_TX_ROWS]))?;
                    }
                    run.result(self.sizes.client_timeout + Duration::from_secs(10))
                })();
                let v = match outcome {
                    Ok(v) => v,
                    Err(e) => {
                        self.failed(what, client, round, &e);
                        continue;
                    }
                };
                let numbers = |key: &str| -> Vec<f64> {
                    v[key].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
                };
                let (frames, rows) = (numbers("frame_us"), numbers("frame_rows"));
                let whole: Vec<f64> =
                    frames.iter().zip(&rows).filter(|(_, n)| **n == FRAME_TX_ROWS as f64).map(|(t, _)| *t).collect();
                if whole.len() < frames.len() {
                    self.notes.push(format!(
                        "{what}, {}, round {}: {} of {} ticks delivered other than one whole transaction (left out)",
                        client.name(),
                        round + 1,
                        frames.len() - whole.len(),
                        frames.len()
                    ));
                }
                let s = short_count(FRAME_TX_ROWS);
                let label = format!("a frame delivering {s} row updates (a row callback each): game-thread time, p50");
                self.record("frame_tx_p50", &label, Unit::Micros, client, percentile(&whole, 50.0));
                let n = short_count(FRAME_ROWS);
                let (iter, find) = (numbers("iter_us"), numbers("find_ns"));
                let label = format!("`iter` over {n} cached rows, per call");
                self.record("frame_iter", &label, Unit::Micros, client, report::median(&iter));
                let label = "`find` by a unique column (`entity_id`), per call";
                self.record("frame_find", label, Unit::Nanos, client, report::median(&find));
                eprintln!(
                    "    {what}, {} round {}: frame {:.0} µs (of {} ticks), iter {:.0} µs, find {:.0} ns",
                    client.name(),
                    round + 1,
                    percentile(&whole, 50.0).unwrap_or(0.0),
                    whole.len(),
                    report::median(&iter).unwrap_or(0.0),
                    report::median(&find).unwrap_or(0.0)
                );
            }
        }
    }

    /// Connect to the first row of a small table.
    fn first_row(&mut self) {
        let extra = [("--query", "SELECT * FROM map".to_string()), ("--table", "map".to_string())];
        for round in 0..self.rounds {
            for client in Self::order(round) {
                match Run::start(self.bin(client), &self.args("first-row", &extra, &[]), &self.log)
                    .and_then(|run| run.result(self.sizes.client_timeout + Duration::from_secs(10)))
                {
                    Ok(v) => {
                        self.record(
                            "first_row",
                            "connect to the first row (`SELECT * FROM map`)",
                            Unit::Millis,
                            client,
                            v["first_row_ms"].as_f64(),
                        );
                        eprintln!(
                            "    first row, {} round {}: {:.1} ms",
                            client.name(),
                            round + 1,
                            v["first_row_ms"].as_f64().unwrap_or(0.0)
                        );
                    }
                    Err(e) => self.failed("first row", client, round, &e),
                }
            }
        }
    }

    /// The server frozen (SIGSTOP): how long until the client notices, and,
    /// once thawed, until its cache is consistent again. Once per client.
    fn dead_peer(&mut self) {
        let expect = self.sizes.update_rows + NPCS_PER_MAP;
        let mut args =
            self.args("dead-peer", &[("--query", Self::query(UPDATE_MAP)), ("--expect-rows", expect.to_string())], &[]);
        let timeout = self.sizes.detect_bound + self.sizes.recover_bound + Duration::from_secs(30);
        if let Some(i) = args.iter().position(|a| a == "--timeout-s") {
            args[i + 1] = timeout.as_secs().to_string();
        }
        for client in Self::order(0) {
            let outcome = (|| -> Result<(Option<f64>, Option<f64>)> {
                let mut run = Run::start(self.bin(client), &args, &self.log)?;
                run.wait_event("ready", self.sizes.client_timeout)?.context("not ready in time")?;
                let frozen = Frozen::new(self.server.pid)?;
                let stopped = unix_us();
                let detected = run.wait_event("disconnected", self.sizes.detect_bound)?;
                let thawed = unix_us();
                drop(frozen);
                let detect = detected.as_ref().map(|(at, _)| at.saturating_sub(stopped) as f64 / 1e3);
                let recovered =
                    if detected.is_some() { run.wait_event("recovered", self.sizes.recover_bound)? } else { None };
                let recover = recovered.as_ref().map(|(at, _)| at.saturating_sub(thawed) as f64 / 1e3);
                if detected.is_none() {
                    self.notes.push(format!(
                        "dead peer, {}: a frozen server was not noticed within {} s (the bound of this bench)",
                        client.name(),
                        self.sizes.detect_bound.as_secs()
                    ));
                } else if recovered.is_none() {
                    self.notes.push(format!(
                        "dead peer, {}: after the server was thawed, no consistent cache within {} s{}",
                        client.name(),
                        self.sizes.recover_bound.as_secs(),
                        if client == Client::Official { " (the official SDK does not reconnect)" } else { "" }
                    ));
                }
                Ok((detect, recover))
            })();
            match outcome {
                Ok((detect, recover)) => {
                    eprintln!(
                        "    dead peer, {}: detected {detect:?} ms, consistent again {recover:?} ms",
                        client.name()
                    );
                    self.record(
                        "dead_detect",
                        "dead-peer detection (server frozen with SIGSTOP)",
                        Unit::Millis,
                        client,
                        detect,
                    );
                    self.record(
                        "dead_recover",
                        "server thawed: back to a consistent cache",
                        Unit::Millis,
                        client,
                        recover,
                    );
                }
                Err(e) => self.failed("dead peer", client, 0, &e),
            }
            // A thawed server may need a moment before the next scenario.
            thread::sleep(Duration::from_millis(500));
        }
    }
}

fn machine() -> (String, usize, String, String) {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| "unknown".to_string(), |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    (cpu, cores, memory, kernel)
}

pub fn git_commit() -> String {
    let mut git = Command::new("git");
    git.current_dir(crate::repo_root()).args(["rev-parse", "--short", "HEAD"]);
    cmd::output(&mut git).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".to_string())
}

/// What a bench run produced.
#[derive(Debug)]
pub struct Outcome {
    pub figures: Figures,
    /// Notes for the report (failed runs among them).
    pub notes: Vec<String>,
    /// The runs that failed (a client error, a wrong count).
    pub errors: Vec<String>,
}

/// `cargo xtask bench`.
pub fn run(opts: &Options) -> Result<Outcome> {
    let start = Instant::now();
    let sizes = Sizes::new(opts.quick);
    let rounds = opts.rounds.max(1);
    // Two runs in one checkout would wipe each other's bench server.
    let spacelink_dir = crate::repo_root().join(".spacelink");
    fs::create_dir_all(&spacelink_dir)?;
    let lock_path = spacelink_dir.join("bench.lock");
    let _lock = match procs::PidLock::acquire(&lock_path)? {
        Ok(lock) => lock,
        Err(pid) => bail!("another `cargo xtask bench` (pid {pid}) is running in this checkout: wait for it"),
    };
    setup::run().context("setup failed, so nothing was measured")?;

    let step = Step::new(format!("build the bench clients ({} builds)", opts.build.name()));
    let spacelink = build_spacelink(opts.build)?;
    let proxy = build_proxy(opts.build)?;
    let codegen = build_foreign("spacelink-bench-codegen", opts.build)?;
    step.done();

    let dir = crate::repo_root().join(".spacelink").join("bench-server");
    let step = Step::new(format!("fresh server in {} and module", dir.display()));
    let (guard, url) = testrun::prepare_server(&dir)?;
    let state = crate::server::read_state(&crate::server::Paths::new(&dir)?)?.context("the server wrote no state")?;
    let server = Server { url, token: owner_token(&dir)?, pid: state.pid };
    step.done();

    let step = Step::new("official bindings (spacetimedb-codegen 1.3.0 on schema?version=9) and client");
    let schema = dir.join("schema-v9.json");
    fs::write(&schema, server.schema()?)?;
    let bindings = bench_workspace().join("official").join("src").join("module_bindings");
    let mut gen = Command::new(&codegen);
    gen.arg(&schema).arg(&bindings);
    cmd::run_streamed(&mut gen, "official code generator", Duration::from_secs(30))?;
    let official = build_foreign("spacelink-bench-official", opts.build)?;
    step.done();

    // Nothing but the driver writes during the bench.
    server.call("set_npc_tick", json!([0]))?;
    let log = dir.join("clients.log");
    let mut bench = Bench {
        sizes: sizes.clone(),
        rounds,
        server,
        bins: [official, spacelink],
        log,
        figures: Figures::default(),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    let load = LoadSampler::start();

    let step = Step::new(format!("scenarios, {rounds} round(s), clients alternating"));
    let wants = |name: &str| opts.scenarios.is_empty() || opts.scenarios.iter().any(|s| s == name);
    bench.spawn(UPDATE_MAP, sizes.update_rows)?;
    if wants("first-row") {
        bench.first_row();
    }
    if wants("rtt") {
        bench.rtt(false);
    }
    if wants("rtt-stream") {
        bench.rtt(true);
    }
    for kind in [Change::Update, Change::Insert, Change::Delete] {
        let name = kind.parts().0;
        if wants(name) {
            bench.changes(kind, false);
        }
        if wants(&format!("{name}-backlog")) {
            bench.changes(kind, true);
        }
    }
    if wants("events-only") {
        bench.events_only();
    }
    if wants("dead-peer") {
        bench.dead_peer();
    }
    if wants("frame") {
        // After the scenarios that count the update map's rows.
        bench.spawn(UPDATE_MAP, FRAME_ROWS.saturating_sub(sizes.update_rows))?;
        bench.frame();
    }
    let (connections, hold) =
        if opts.quick { (CONNECTIONS_QUICK, CONNECTIONS_QUICK_HOLD_S) } else { (CONNECTIONS, CONNECTIONS_HOLD_S) };
    if wants("connections") {
        bench.connections(connections, hold);
    }
    let mut spawned = 0;
    let compression_rows = if opts.quick { COMPRESSION_ROWS_QUICK } else { COMPRESSION_ROWS };
    // The compression and launch scenarios, on exactly `compression_rows` rows of the load map.
    let at_their_rows = wants("compression") || wants("launch");
    let run_them = |bench: &mut Bench| {
        if wants("compression") {
            bench.compression(compression_rows, &proxy);
        }
        if wants("launch") {
            bench.launch(compression_rows, &proxy);
        }
    };
    for &n in sizes.loads.iter().filter(|_| wants("load")) {
        if at_their_rows && spawned < compression_rows && n > compression_rows {
            bench.spawn(LOAD_MAP, compression_rows - spawned)?;
            spawned = compression_rows;
            run_them(&mut bench);
        }
        bench.spawn(LOAD_MAP, n - spawned)?;
        spawned = n;
        // A million rows take long (and may fail): fewer rounds.
        let rounds = if n >= 1_000_000 { rounds.min(3) } else { rounds };
        bench.load(n, rounds);
        if at_their_rows && n == compression_rows {
            run_them(&mut bench);
        }
    }
    if at_their_rows && spawned < compression_rows {
        bench.spawn(LOAD_MAP, compression_rows - spawned)?;
        run_them(&mut bench);
    }
    step.done();
    let load = load.finish();
    if let Err(e) = guard.stop() {
        eprintln!("    stopping the bench server: {e:#}");
    }

    let (cpu, cores, memory, kernel) = machine();
    let command = format!(
        "cargo xtask bench{}{} --rounds {rounds}{}",
        if opts.quick { " --quick" } else { "" },
        match (opts.quick, opts.build) {
            (_, Build::Opt1) => " --opt1",
            (true, Build::Release) => " --release",
            _ => "",
        },
        opts.scenarios.iter().map(|s| format!(" --scenario {s}")).collect::<String>()
    );
    let ctx = report::Context {
        date: cmd::rfc3339_utc(cmd::unix_now()),
        commit: git_commit(),
        command,
        profile: opts.build.name().to_string(),
        cpu,
        cores,
        memory,
        kernel,
        load,
        duration: format!("the whole run took {}", fmt_duration(start.elapsed())),
        sizes: sizes.describe(),
    };
    let chart = "bench/client-vs-official.svg";
    // A run rewrites only the sections of what it ran: the frame's figures
    // have their own section, so `--scenario frame` keeps the others'.
    let (frame, others) = bench.figures.split("frame_");
    let (conns, others) = others.split("conn_");
    let (comps, others) = others.split("comp_");
    let (launches, others) = others.split("launch_");
    let (events, others) = others.split("events_");
    let (frame_notes, notes): (Vec<String>, Vec<String>) =
        bench.notes.iter().cloned().partition(|n| n.starts_with("game frame"));
    let (conn_notes, notes): (Vec<String>, Vec<String>) = notes.into_iter().partition(|n| n.starts_with("connections"));
    let (comp_notes, notes): (Vec<String>, Vec<String>) = notes.into_iter().partition(|n| n.starts_with("compression"));
    let (launch_notes, notes): (Vec<String>, Vec<String>) = notes.into_iter().partition(|n| n.starts_with("launch"));
    let (events_notes, notes): (Vec<String>, Vec<String>) =
        notes.into_iter().partition(|n| n.starts_with("events-only"));
    if opts.write_docs {
        let docs = crate::repo_root().join("docs");
        let path = docs.join("BENCHMARKS.md");
        let mut doc = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        let own_sections = ["frame", "connections", "compression", "launch", "events-only"];
        if SCENARIOS.iter().any(|s| !own_sections.contains(s) && wants(s)) {
            fs::create_dir_all(docs.join("bench"))?;
            fs::write(docs.join(chart), report::render_svg(&others))?;
            let markdown = report::render_markdown(&ctx, &others, &notes, Some(chart));
            doc = report::replace_section(&doc, "client-vs-official", &markdown);
            eprintln!("    wrote {}", docs.join(chart).display());
        }
        if wants("frame") {
            doc =
                report::replace_section(&doc, "game-frame", &report::render_frame_markdown(&ctx, &frame, &frame_notes));
        }
        if wants("connections") {
            let markdown = report::render_connections_markdown(&ctx, &conns, &conn_notes, connections, hold);
            doc = report::replace_section(&doc, "connections", &markdown);
        }
        if wants("compression") {
            let markdown = report::render_compression_markdown(&ctx, &comps, &comp_notes, compression_rows);
            doc = report::replace_section(&doc, "compression", &markdown);
        }
        if wants("launch") {
            let markdown = report::render_launch_markdown(&ctx, &launches, &launch_notes, compression_rows);
            doc = report::replace_section(&doc, "launch", &markdown);
        }
        if wants("events-only") {
            let stream = format!(
                "the update map's {} rows and its {NPCS_PER_MAP} NPCs subscribed, then {} transactions of {} row updates",
                short_count(sizes.update_rows),
                sizes.update_txs,
                short_count(sizes.update_rows)
            );
            let markdown = report::render_events_only_markdown(&ctx, &events, &events_notes, &stream);
            doc = report::replace_section(&doc, "events-only", &markdown);
        }
        fs::write(&path, doc)?;
        eprintln!("    wrote {}", path.display());
    }
    Ok(Outcome { figures: bench.figures, notes: bench.notes, errors: bench.errors })
}

/// Prints the ratio table of a run to stdout.
pub fn print_table(figures: &Figures) {
    println!("{:<72} {:>14} {:>14} {:>7}", "figure", "official", "spacelink", "ratio");
    for f in &figures.0 {
        let m = |c| f.median(c).map_or_else(|| "-".to_string(), |v| f.unit.format(v));
        let ratio = f.ratio().map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
        println!("{:<72} {:>14} {:>14} {:>7}", f.label, m(Client::Official), m(Client::Spacelink), ratio);
    }
}

/// `cargo xtask bench`, as a command.
pub fn command(opts: &Options) -> Result<ExitCode> {
    let outcome = run(opts)?;
    println!();
    print_table(&outcome.figures);
    for note in &outcome.notes {
        println!("note: {note}");
    }
    Ok(if outcome.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
