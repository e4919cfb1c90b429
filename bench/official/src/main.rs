//! The official SpacetimeDB Rust SDK (1.3.2) as a bench client for
//! `cargo xtask bench`: the twin of spacelink's crates/app/examples/bench_client.rs,
//! with the same flags, the same scenarios and the same JSON lines on stdout.
//!
//! `src/module_bindings/` is generated at bench time by the official generator
//! (bench/codegen, fed the server's `schema?version=9`), as a game would run
//! `spacetime generate`. The connection runs `run_threaded` (decoding on a tokio
//! worker, applying on the SDK's thread); rows are counted in `on_insert` /
//! `on_update` callbacks. CPU time is `getrusage(RUSAGE_SELF)` from just before
//! connecting; memory is VmRSS and VmHWM of /proc/self/status.
//!
//! The `connections` scenario holds `--connections N` connections in this one
//! process, each subscribed to `config` (one row), for `--hold-s S`, in the
//! SDK's most economical way for many connections: built inside one shared
//! tokio runtime of two workers (the SDK then uses it instead of starting a
//! runtime per connection) and driven by `run_async` tasks on it, rather than
//! a `run_threaded` thread each.
//!
//! The `frame` scenario is a game's loop on the main thread, as the SDK allows
//! it: no `run_threaded`, but `DbConnection::frame_tick()` every millisecond,
//! which applies what arrived to the cache and runs the callbacks on the
//! calling thread (so its time is all the SDK costs the game's thread for a
//! transaction); an `on_update` callback on `entity`. Once the rows are cached
//! it times `iter` over them and an `entity_id().find` of each (`iter_us`,
//! `find_ns`), says `ready`, then times every `frame_tick` that delivers row
//! updates (`frame_us`, with `frame_rows` the rows each delivered).

mod module_bindings;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use module_bindings::*;
use serde_json::{json, Value};
use spacetimedb_sdk::{Compression, DbContext, Status, Table, TableWithPrimaryKey};

#[derive(Debug, Clone, Default)]
struct Seen {
    first_row_at: Option<Instant>,
    first_update_unix_us: Option<u64>,
    last_update_unix_us: Option<u64>,
    /// `changes`: the first change after the initial rows, and the one that
    /// completed what was expected.
    first_change_unix_us: Option<u64>,
    last_change_unix_us: Option<u64>,
    connected: bool,
    connect_error: Option<String>,
    applied: u64,
    subscription_error: Option<String>,
    disconnects: u64,
    disconnected_unix_us: Option<u64>,
    /// Reducer answers to our own calls: (seq, when, committed or the error).
    answers: Vec<(u32, Instant, Result<(), String>)>,
}

/// Row callbacks only bump counters (no lock, no wake-up per row); the
/// waiting thread is woken at the first row and when the expected count is
/// reached, and the times of those rows are recorded.
#[derive(Default)]
struct Shared {
    inserts: AtomicU64,
    updates: AtomicU64,
    deletes: AtomicU64,
    expect_rows: u64,
    expect_updates: u64,
    expect_inserts: u64,
    expect_deletes: u64,
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Shared {
    fn inserts(&self) -> u64 {
        self.inserts.load(Ordering::Relaxed)
    }

    fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::Relaxed)
    }

    /// A change after the initial rows: the `n`-th of its kind, of `expected`.
    fn changed(&self, n: u64, first: u64, expected: u64) {
        if n == first || n == expected {
            let now = unix_us();
            self.update(|s| {
                s.first_change_unix_us.get_or_insert(now);
                if n == expected {
                    s.last_change_unix_us = Some(now);
                }
            });
        }
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut seen);
        drop(seen);
        self.changed.notify_all();
    }

    fn get<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until `done` holds, or fails at `deadline`.
    fn wait(&self, deadline: Instant, what: &str, mut done: impl FnMut(&Seen) -> bool) -> Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = &seen.connect_error {
                bail!("could not connect: {e}");
            }
            if let Some(e) = &seen.subscription_error {
                bail!("the subscription failed: {e}");
            }
            if done(&seen) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for {what}");
            }
            seen = self.changed.wait_timeout(seen, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// User + system CPU of every thread of this process so far.
fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn emit(value: Value) {
    println!("{value}");
}

#[derive(Debug)]
struct Args {
    server: String,
    database: String,
    scenario: String,
    query: Option<String>,
    table: String,
    expect_rows: u64,
    expect_updates: u64,
    /// `changes`: inserts and deletes to wait for after the initial rows.
    expect_inserts: u64,
    expect_deletes: u64,
    calls: u32,
    wait_update: bool,
    timeout: Duration,
    connections: usize,
    hold: Duration,
    /// `--compression none|gzip|brotli` (default brotli, both clients' default).
    compression: Compression,
}

fn parse_args() -> Result<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1).cloned());
    let number = |name: &str, default: u64| -> Result<u64> {
        value(name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name} wants a number, not {v}")))
    };
    Ok(Args {
        server: value("--server").context("--server URL is required")?,
        database: value("--database").unwrap_or_else(|| "guildmaster".into()),
        scenario: value("--scenario").context("--scenario is required")?,
        query: value("--query"),
        table: value("--table").unwrap_or_else(|| "entity".into()),
        expect_rows: number("--expect-rows", 0)?,
        expect_updates: number("--expect-updates", 0)?,
        expect_inserts: number("--expect-inserts", 0)?,
        expect_deletes: number("--expect-deletes", 0)?,
        calls: number("--calls", 100)? as u32,
        wait_update: argv.iter().any(|a| a == "--wait-update"),
        timeout: Duration::from_secs_f64(number("--timeout-s", 120)? as f64),
        connections: number("--connections", 1000)? as usize,
        hold: Duration::from_secs(number("--hold-s", 60)?),
        compression: match value("--compression").as_deref() {
            None | Some("brotli") => Compression::Brotli,
            Some("gzip") => Compression::Gzip,
            Some("none") => Compression::None,
            Some(other) => bail!("--compression wants none, gzip or brotli, not {other}"),
        },
    })
}

/// Registers the row callbacks on the table being counted.
fn register_callbacks(conn: &DbConnection, table: &str, shared: &Arc<Shared>) -> Result<()> {
    let inserted = {
        let shared = shared.clone();
        move || {
            let n = shared.inserts.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 {
                shared.update(|s| s.first_row_at = Some(Instant::now()));
            } else if n == shared.expect_rows {
                shared.update(|_| {});
            }
            if n > shared.expect_rows && shared.expect_inserts > 0 {
                shared.changed(n, shared.expect_rows + 1, shared.expect_rows + shared.expect_inserts);
            }
        }
    };
    let deleted = {
        let shared = shared.clone();
        move || {
            let n = shared.deletes.fetch_add(1, Ordering::Relaxed) + 1;
            shared.changed(n, 1, shared.expect_deletes);
        }
    };
    let updated = {
        let shared = shared.clone();
        move || {
            let n = shared.updates.fetch_add(1, Ordering::Relaxed) + 1;
            // Before the update that may wake the waiter: the change's time is then in.
            shared.changed(n, 1, shared.expect_updates);
            if n == 1 || n == shared.expect_updates {
                let now = unix_us();
                shared.update(|s| {
                    s.first_update_unix_us.get_or_insert(now);
                    s.last_update_unix_us = Some(now);
                });
            }
        }
    };
    match table {
        "entity" => {
            conn.db.entity().on_insert(move |_, _| inserted());
            conn.db.entity().on_update(move |_, _, _| updated());
            conn.db.entity().on_delete(move |_, _| deleted());
        }
        "map" => {
            conn.db.map().on_insert(move |_, _| inserted());
            conn.db.map().on_update(move |_, _, _| updated());
            conn.db.map().on_delete(move |_, _| deleted());
        }
        other => bail!("the official client counts rows of `entity` or `map`, not `{other}`"),
    }
    Ok(())
}

fn run(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let shared = Arc::new(Shared {
        expect_rows: args.expect_rows,
        expect_updates: args.expect_updates,
        expect_inserts: args.expect_inserts,
        expect_deletes: args.expect_deletes,
        ..Shared::default()
    });

    let t0 = Instant::now();
    let cpu0 = cpu_time();
    let on_connect = shared.clone();
    let on_error = shared.clone();
    let on_disconnect = shared.clone();
    let conn = DbConnection::builder()
        .with_uri(args.server.as_str())
        .with_module_name(args.database.as_str())
        .with_compression(args.compression)
        .on_connect(move |_, _, _| on_connect.update(|s| s.connected = true))
        .on_connect_error(move |_, e| on_error.update(|s| s.connect_error = Some(e.to_string())))
        .on_disconnect(move |_, _| {
            let now = unix_us();
            on_disconnect.update(|s| {
                s.disconnects += 1;
                s.disconnected_unix_us.get_or_insert(now);
            })
        })
        .build()
        .context("connecting")?;
    register_callbacks(&conn, &args.table, &shared)?;
    let answers = shared.clone();
    conn.reducers.on_move_player(move |ctx, seq, _, _| {
        if ctx.event.caller_identity != ctx.identity() {
            return;
        }
        let outcome = match &ctx.event.status {
            Status::Committed => Ok(()),
            Status::Failed(e) => Err(e.to_string()),
            Status::OutOfEnergy => Err("out of energy".to_string()),
        };
        let seq = *seq;
        answers.update(|s| s.answers.push((seq, Instant::now(), outcome)));
    });
    let _thread = conn.run_threaded();

    if let Some(query) = &args.query {
        let applied = shared.clone();
        let failed = shared.clone();
        conn.subscription_builder()
            .on_applied(move |_| applied.update(|s| s.applied += 1))
            .on_error(move |_, e| failed.update(|s| s.subscription_error = Some(e.to_string())))
            .subscribe([query.as_str()]);
        if args.scenario == "first-row" {
            shared.wait(deadline, "the first row", |s| s.first_row_at.is_some())?;
            let first = shared.get(|s| s.first_row_at).unwrap_or_else(Instant::now);
            result.insert("first_row_ms".into(), json!(first.duration_since(t0).as_secs_f64() * 1e3));
            result.insert("rows".into(), json!(shared.inserts()));
            return Ok(());
        }
        let expect = args.expect_rows;
        shared.wait(deadline, "the initial rows", |s| s.applied > 0 && shared.inserts() >= expect)?;
        let ready = t0.elapsed();
        let cpu = cpu_time().saturating_sub(cpu0);
        result.insert("ready_ms".into(), json!(ready.as_secs_f64() * 1e3));
        result.insert("cpu_ms".into(), json!(cpu.as_secs_f64() * 1e3));
        result.insert("rss_kib".into(), json!(status_kib("VmRSS")));
        result.insert("rows".into(), json!(shared.inserts()));
        let cached = match args.table.as_str() {
            "map" => conn.db.map().count(),
            _ => conn.db.entity().count(),
        };
        result.insert("cached".into(), json!(cached));
        emit(json!({ "event": "ready", "unix_us": unix_us() }));
    }

    match args.scenario.as_str() {
        "load" => {}
        "updates" | "changes" => {
            // Inserts, updates and deletes after the initial rows, each counted by its callback.
            let (base, cpu_ready) = (shared.inserts(), cpu_time());
            let (inserts, updates, deletes) = (args.expect_inserts, args.expect_updates, args.expect_deletes);
            let waited = shared.wait(deadline, "the changes", |_| {
                shared.inserts() - base >= inserts && shared.updates() >= updates && shared.deletes() >= deletes
            });
            let cpu = cpu_time().saturating_sub(cpu_ready);
            let s = shared.get(Seen::clone);
            result.insert("updates".into(), json!(shared.updates()));
            result.insert("inserts".into(), json!(shared.inserts() - base));
            result.insert("deletes".into(), json!(shared.deletes()));
            result.insert("first_update_unix_us".into(), json!(s.first_update_unix_us));
            result.insert("last_update_unix_us".into(), json!(s.last_update_unix_us));
            result.insert("first_change_unix_us".into(), json!(s.first_change_unix_us));
            result.insert("last_change_unix_us".into(), json!(s.last_change_unix_us));
            result.insert("change_cpu_ms".into(), json!(cpu.as_secs_f64() * 1e3));
            result.insert("end_rss_kib".into(), json!(status_kib("VmRSS")));
            waited?;
        }
        "rtt" => {
            shared.wait(deadline, "the connection", |s| s.connected)?;
            conn.reducers.join("bench".to_string(), 1).context("join")?;
            if args.wait_update {
                shared.wait(deadline, "a first update of the stream", |_| shared.updates() > 0)?;
            }
            let mut samples = Vec::with_capacity(args.calls as usize);
            for seq in 1..=args.calls {
                let dx = if seq % 2 == 0 { 0.5 } else { -0.5 };
                let sent = Instant::now();
                conn.reducers.move_player(seq, dx, 0.0).context("move_player")?;
                shared.wait(deadline, "a reducer answer", |s| s.answers.iter().any(|a| a.0 == seq))?;
                let (at, outcome) =
                    shared.get(|s| s.answers.iter().find(|a| a.0 == seq).map(|a| (a.1, a.2.clone()))).context("answer")?;
                if let Err(e) = outcome {
                    bail!("move_player #{seq}: {e}");
                }
                samples.push(at.duration_since(sent).as_secs_f64() * 1e6);
            }
            result.insert("rtt_us".into(), json!(samples));
            result.insert("updates_seen".into(), json!(shared.updates()));
        }
        "dead-peer" => {
            shared.wait(deadline, "a lost session", |s| s.disconnects > 0)?;
            let at = shared.get(|s| s.disconnected_unix_us);
            emit(json!({ "event": "disconnected", "unix_us": at }));
            result.insert("disconnected_unix_us".into(), json!(at));
            // The official SDK does not reconnect: a lost DbConnection stays
            // lost. Wait (until the deadline) for a subscription applied again.
            let applied = shared.get(|s| s.applied);
            shared.wait(deadline, "the subscription applied again", |s| s.applied > applied)?;
            let at = unix_us();
            emit(json!({ "event": "recovered", "unix_us": at }));
            result.insert("recovered_unix_us".into(), json!(at));
        }
        "first-row" => bail!("first-row needs --query"),
        other => bail!("unknown scenario {other}"),
    }
    result.insert("disconnects".into(), json!(shared.get(|s| s.disconnects)));
    let _ = conn.disconnect();
    Ok(())
}

/// How many times `iter` and the `find`s are timed (the driver takes the median).
const READ_REPEATS: usize = 15;

/// The `frame` scenario: a game's loop on this (the main) thread.
fn run_frame(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let query = args.query.clone().context("frame needs --query")?;
    let conn = DbConnection::builder()
        .with_uri(args.server.as_str())
        .with_module_name(args.database.as_str())
        .build()
        .context("connecting")?;
    let updates = Arc::new(AtomicU64::new(0));
    let counted = updates.clone();
    conn.db.entity().on_update(move |_, _, new| {
        counted.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(new.hp);
    });
    conn.subscription_builder().subscribe([query.as_str()]);
    let tick = Duration::from_millis(1);
    while conn.db.entity().count() < args.expect_rows {
        conn.frame_tick().context("frame_tick")?;
        if Instant::now() > deadline {
            bail!("{} of {} rows cached in time", conn.db.entity().count(), args.expect_rows);
        }
        std::thread::sleep(tick);
    }
    conn.frame_tick().context("frame_tick")?;

    // Reads, from the cache, on the game's thread.
    let ids: Vec<u64> = conn.db.entity().iter().map(|e| e.entity_id).collect();
    let (mut iter_us, mut find_ns) = (Vec::new(), Vec::new());
    for _ in 0..READ_REPEATS {
        let at = Instant::now();
        let hp: i64 = conn.db.entity().iter().map(|e| i64::from(e.hp)).sum();
        iter_us.push(at.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(hp);
        let at = Instant::now();
        let found = ids.iter().filter(|id| conn.db.entity().entity_id().find(id).is_some()).count();
        find_ns.push(at.elapsed().as_secs_f64() * 1e9 / ids.len().max(1) as f64);
        if found != ids.len() {
            bail!("found {found} of {} rows by entity_id", ids.len());
        }
    }
    result.insert("rows".into(), json!(ids.len()));
    result.insert("iter_us".into(), json!(iter_us));
    result.insert("find_ns".into(), json!(find_ns));
    emit(json!({ "event": "ready", "unix_us": unix_us() }));

    // Frames: the cost on this thread of each tick that delivers rows.
    let (mut frame_us, mut frame_rows) = (Vec::new(), Vec::new());
    while updates.load(Ordering::Relaxed) < args.expect_updates {
        let before = updates.load(Ordering::Relaxed);
        let at = Instant::now();
        conn.frame_tick().context("frame_tick")?;
        let spent = at.elapsed();
        let rows = updates.load(Ordering::Relaxed) - before;
        if rows > 0 {
            frame_us.push(spent.as_secs_f64() * 1e6);
            frame_rows.push(rows);
        }
        if Instant::now() > deadline {
            bail!("{} of {} updates in time", updates.load(Ordering::Relaxed), args.expect_updates);
        }
        std::thread::sleep(tick);
    }
    result.insert("updates".into(), json!(updates.load(Ordering::Relaxed)));
    result.insert("frame_us".into(), json!(frame_us));
    result.insert("frame_rows".into(), json!(frame_rows));
    let _ = conn.disconnect();
    Ok(())
}

/// The `connections` scenario: many connections in this process, held.
fn run_connections(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _entered = runtime.enter();
    let shared = Arc::new(Shared::default());
    let (rss0, threads0, cpu0, t0) = (status_kib("VmRSS"), status_kib("Threads"), cpu_time(), Instant::now());
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let on_disconnect = shared.clone();
        let on_error = shared.clone();
        let conn = DbConnection::builder()
            .with_uri(args.server.as_str())
            .with_module_name(args.database.as_str())
            .on_connect_error(move |_, e| on_error.update(|s| s.connect_error = Some(e.to_string())))
            .on_disconnect(move |_, _| on_disconnect.update(|s| s.disconnects += 1))
            .build()
            .context("connecting")?;
        let applied = shared.clone();
        let failed = shared.clone();
        conn.subscription_builder()
            .on_applied(move |_| applied.update(|s| s.applied += 1))
            .on_error(move |_, e| failed.update(|s| s.subscription_error = Some(e.to_string())))
            .subscribe(["SELECT * FROM config"]);
        let conn = Arc::new(conn);
        let driven = conn.clone();
        runtime.spawn(async move {
            let _ = driven.run_async().await;
        });
        conns.push(conn);
    }
    let n = conns.len() as u64;
    shared.wait(deadline, "every subscription applied", |s| s.applied >= n)?;
    let connect = t0.elapsed();
    let (cpu1, rss1) = (cpu_time(), status_kib("VmRSS"));
    emit(json!({ "event": "ready", "unix_us": unix_us() }));
    let held = Instant::now();
    std::thread::sleep(args.hold);
    let (cpu2, rss2, hold) = (cpu_time(), status_kib("VmRSS"), held.elapsed());
    let lost = shared.get(|s| s.disconnects);
    let n = n as f64;
    result.insert("connections".into(), json!(conns.len()));
    result.insert("connect_ms".into(), json!(connect.as_secs_f64() * 1e3));
    result.insert("connect_cpu_ms".into(), json!((cpu1 - cpu0).as_secs_f64() * 1e3));
    result.insert("rss_per_client_kib".into(), json!(rss1.saturating_sub(rss0) as f64 / n));
    result.insert("rss_growth_kib".into(), json!(rss2 as f64 - rss1 as f64));
    result.insert("cpu_us_per_client_s".into(), json!((cpu2 - cpu1).as_secs_f64() * 1e6 / hold.as_secs_f64() / n));
    result.insert("threads".into(), json!(status_kib("Threads")));
    result.insert("threads_added".into(), json!(status_kib("Threads").saturating_sub(threads0)));
    result.insert("sessions_lost".into(), json!(lost));
    if lost > 0 {
        bail!("{lost} of {} connections were lost while held", conns.len());
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("official bench client: {e:#}");
            std::process::exit(2);
        }
    };
    let mut result = serde_json::Map::new();
    let outcome = match args.scenario.as_str() {
        "frame" => run_frame(&args, &mut result),
        "connections" => run_connections(&args, &mut result),
        _ => run(&args, &mut result),
    };
    result.insert("event".into(), json!("result"));
    result.insert("client".into(), json!("official"));
    result.insert("scenario".into(), json!(args.scenario));
    result.insert("peak_rss_kib".into(), json!(status_kib("VmHWM")));
    result.insert("ok".into(), json!(outcome.is_ok()));
    if let Err(e) = &outcome {
        result.insert("error".into(), json!(format!("{e:#}")));
    }
    emit(Value::Object(result));
    std::process::exit(if outcome.is_ok() { 0 } else { 1 });
}
