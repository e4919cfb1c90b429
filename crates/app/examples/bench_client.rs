//! spacelink's bench client for `cargo xtask bench` (xtask/src/bench.rs): one
//! scenario per process, through the public API a game uses
//! (`Client::builder().build_async()`, the sync handle, its row listeners, the reducer
//! client). Its twin on the official SDK is bench/official; both take the same
//! flags and print the same JSON lines on stdout:
//!
//! - `{"event":"ready", "unix_us": …}` once the subscription's rows are cached
//!   and counted (the driver then writes, freezes the server, …);
//! - `{"event":"disconnected"|"recovered", "unix_us": …}` in `dead-peer`;
//! - last, `{"event":"result", "client":"spacelink", "ok":…, …}`.
//!
//! The `frame` scenario is a game's loop on the main thread (`build()`, the
//! schema from the generated bindings, `frame_tick()` every millisecond, a
//! row callback on `entity`): once the rows are cached it times `iter` over
//! them and a `find_by_entity_id` of each (`iter_us`, `find_ns`), says
//! `ready`, then times every `frame_tick` that delivers row updates
//! (`frame_us`, with `frame_rows` the rows each delivered).
//!
//! The `connections` scenario holds `--connections N` clients in this one
//! process (`build()`, each with its heartbeats and a one-row subscription to
//! `config`), ticks each once a second for `--hold-s S`, and reports the CPU
//! and memory that cost, the threads, and any session lost meanwhile (a false
//! dead peer).
//!
//! The `launch` scenario is a game's start with its cache kept on disk
//! (`--disk-cache FILE`): the time until the table is readable (from the
//! file when it exists, else from the server), then until the subscription
//! is applied and the cache reconciled; it saves the cache for the next run.
//!
//! ```text
//! bench_client --server URL --database DB --scenario load|changes|rtt|first-row|dead-peer|frame|connections|launch
//!              [--query SQL] [--table T] [--expect-rows N] [--expect-updates N]
//!              [--calls N] [--wait-update] [--timeout-s S] [--connections N] [--hold-s S]
//!              [--compression none|gzip|brotli] [--disk-cache FILE]
//!              [--expect-inserts N] [--expect-deletes N]   (changes: after the initial rows)
//!              [--events-only]
//! ```
//!
//! `--events-only` makes `--table` keep no rows (`ClientBuilder::with_events_only`):
//! its changes are still counted, and the memory its rows would take is not spent
//! (the bench's `events-only` scenario). With it the client also calls
//! `frame_tick()` every 5 ms while it waits, as a game's loop does: otherwise the
//! events queued for the game would hold every streamed row.
//!
//! Rows are counted by a listener of the cache's changes (`SyncListeners::changes`),
//! as the official client counts them with `on_insert`/`on_update` callbacks.
//! CPU time is `getrusage(RUSAGE_SELF)` (every thread) from just before
//! connecting to the moment measured; memory is VmRSS and VmHWM of
//! /proc/self/status.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use spacelink::reducers::Outcome;
use spacelink::sync::{RowChange, RowTypes, RowsChanged, SubscriptionEvent, SyncListeners};
use spacelink::{Client, Compression, ConnectionState, Listeners, StateChanged};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

mod guildmaster;
use guildmaster::*;

/// What the listeners saw so far.
#[derive(Debug, Clone, Default)]
struct Seen {
    inserts: u64,
    updates: u64,
    deletes: u64,
    first_row_at: Option<Instant>,
    first_update_unix_us: Option<u64>,
    last_update_unix_us: Option<u64>,
    /// Once the initial rows are in (`Counter::ready`): the first and last change since.
    first_change_unix_us: Option<u64>,
    last_change_unix_us: Option<u64>,
    /// How many times a session was lost (the state left Connected).
    disconnects: u64,
    disconnected_unix_us: Option<u64>,
    /// How many times a subscription was (re)applied.
    applied: u64,
}

/// Listens to the cache, the query sets and the connection state.
struct Counter {
    table: String,
    seen: watch::Sender<Seen>,
    /// Raised once the initial rows are in.
    ready: Arc<AtomicBool>,
}

impl Actor for Counter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The cache may change fast: room for a backlog of notifications.
        ctx.set_mailbox_capacity(1 << 16);
    }
}

impl Handler<RowsChanged> for Counter {
    type Result = ();

    fn handle(&mut self, msg: RowsChanged, _: &mut Self::Context) {
        let (mut inserts, mut updates, mut deletes) = (0, 0, 0);
        for change in msg.changes.iter() {
            match change {
                RowChange::Insert { table, .. } if **table == *self.table => inserts += 1,
                RowChange::Update { table, .. } if **table == *self.table => updates += 1,
                RowChange::Delete { table, .. } if **table == *self.table => deletes += 1,
                _ => {}
            }
        }
        if inserts + updates + deletes == 0 {
            return;
        }
        let now = unix_us();
        let ready = self.ready.load(Ordering::Relaxed);
        self.seen.send_modify(|s| {
            s.inserts += inserts;
            s.updates += updates;
            s.deletes += deletes;
            if inserts > 0 && s.first_row_at.is_none() {
                s.first_row_at = Some(Instant::now());
            }
            if updates > 0 {
                s.first_update_unix_us.get_or_insert(now);
                s.last_update_unix_us = Some(now);
            }
            if ready {
                s.first_change_unix_us.get_or_insert(now);
                s.last_change_unix_us = Some(now);
            }
        });
    }
}

impl Handler<SubscriptionEvent> for Counter {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionEvent, _: &mut Self::Context) {
        if let SubscriptionEvent::Applied { .. } = msg {
            self.seen.send_modify(|s| s.applied += 1);
        }
    }
}

impl Handler<StateChanged> for Counter {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        if msg.from == ConnectionState::Connected && msg.to != ConnectionState::Connected {
            let now = unix_us();
            self.seen.send_modify(|s| {
                s.disconnects += 1;
                s.disconnected_unix_us.get_or_insert(now);
            });
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
    /// `--events-only`: `--table` keeps no rows in the cache, only tells its changes.
    events_only: bool,
    timeout: Duration,
    connections: usize,
    hold: Duration,
    /// `--compression auto|none|gzip|brotli` (default: spacelink's, `auto`).
    compression: Compression,
    /// `--disk-cache FILE`: where `launch` keeps its cache.
    disk_cache: Option<String>,
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
        events_only: argv.iter().any(|a| a == "--events-only"),
        timeout: Duration::from_secs_f64(number("--timeout-s", 120)? as f64),
        connections: number("--connections", 1000)? as usize,
        hold: Duration::from_secs(number("--hold-s", 60)?),
        // Absent: spacelink's default (`Auto`: none on loopback, gzip elsewhere).
        compression: match value("--compression") {
            None => Compression::default(),
            Some(name) => Compression::from_name(&name)
                .with_context(|| format!("--compression wants auto, none, gzip or brotli, not {name}"))?,
        },
        disk_cache: value("--disk-cache"),
    })
}

/// The move_player arguments (seq: u32, dx: f32, dy: f32) in BSATN.
fn move_args(seq: u32, dx: f32) -> bytes::Bytes {
    let mut args = Vec::with_capacity(12);
    args.extend_from_slice(&seq.to_le_bytes());
    args.extend_from_slice(&dx.to_le_bytes());
    args.extend_from_slice(&0f32.to_le_bytes());
    args.into()
}

/// The join arguments (name: String, map_id: u32) in BSATN.
fn join_args(name: &str, map: u32) -> bytes::Bytes {
    let mut args = Vec::with_capacity(8 + name.len());
    args.extend_from_slice(&(name.len() as u32).to_le_bytes());
    args.extend_from_slice(name.as_bytes());
    args.extend_from_slice(&map.to_le_bytes());
    args.into()
}

/// Like [`wait_for`], calling `app.frame_tick()` every 5 ms meanwhile, as a
/// game's loop would: the events queued for the game (each transaction's
/// changes, and so its rows) are drained instead of kept.
async fn tick_for(
    app: &mut Client,
    seen: &watch::Receiver<Seen>,
    deadline: Instant,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) -> Result<()> {
    loop {
        app.frame_tick();
        if done(&seen.borrow()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for(
    seen: &mut watch::Receiver<Seen>,
    deadline: Instant,
    what: &str,
    done: impl FnMut(&Seen) -> bool,
) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, seen.wait_for(done)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => bail!("the listener is gone while waiting for {what}"),
        Err(_) => bail!("timed out waiting for {what}"),
    }
}

async fn run(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let (tx, mut seen) = watch::channel(Seen::default());
    let initial_in = Arc::new(AtomicBool::new(false));
    let counter = Counter { table: args.table.clone(), seen: tx, ready: initial_in.clone() }.start();

    let t0 = Instant::now();
    let cpu0 = cpu_time();
    let listeners = Listeners { states: vec![counter.clone().recipient()], ..Default::default() };
    let sync_listeners =
        SyncListeners { changes: vec![counter.clone().recipient()], subscriptions: vec![counter.clone().recipient()] };
    let mut app = Client::builder()
        .with_uri(&args.server)
        .with_database(&args.database)
        .with_compression(args.compression)
        // As a game would (and as the official client's generated bindings do): the
        // entity rows are decoded into their Rust type, once, as they arrive.
        .with_row_types(RowTypes::new().register::<Entity>("entity"))
        .with_events_only(args.events_only.then(|| args.table.clone()))
        .with_listeners(listeners)
        .with_sync_listeners(sync_listeners)
        // It hears rows through its listener and never ticks a frame: nothing queued for one.
        .with_frame_events(false)
        .build_async()
        .await?;
    let sync = app.sync().expect("the schema is known").clone();

    if let Some(query) = &args.query {
        if args.scenario == "first-row" {
            // Only the first row matters; the subscription goes on meanwhile.
            let (sync, query) = (sync.clone(), query.clone());
            actix::spawn(async move {
                let _ = sync.subscribe(&[&query]).await;
            });
            wait_for(&mut seen, deadline, "the first row", |s| s.first_row_at.is_some()).await?;
            let first = seen.borrow().first_row_at.unwrap_or_else(Instant::now);
            result.insert("first_row_ms".into(), json!(first.duration_since(t0).as_secs_f64() * 1e3));
            result.insert("rows".into(), json!(seen.borrow().inserts));
            return Ok(());
        }
        let queries = [query.as_str()];
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, sync.subscribe(&queries)).await.context("timed out subscribing")??;
        let expect = args.expect_rows;
        let waited = if args.events_only {
            tick_for(&mut app, &seen, deadline, "the initial rows", |s| s.inserts >= expect).await
        } else {
            wait_for(&mut seen, deadline, "the initial rows", |s| s.inserts >= expect).await
        };
        let (inserts, disconnects) = (seen.borrow().inserts, seen.borrow().disconnects);
        waited.with_context(|| format!("{inserts} of {expect} rows counted, {disconnects} lost session(s)"))?;
        let ready = t0.elapsed();
        let cpu = cpu_time().saturating_sub(cpu0);
        result.insert("ready_ms".into(), json!(ready.as_secs_f64() * 1e3));
        result.insert("cpu_ms".into(), json!(cpu.as_secs_f64() * 1e3));
        result.insert("rss_kib".into(), json!(status_kib("VmRSS")));
        result.insert("rows".into(), json!(seen.borrow().inserts));
        result.insert("cached".into(), json!(sync.cache().count(&args.table)));
        initial_in.store(true, Ordering::Relaxed);
        emit(json!({ "event": "ready", "unix_us": unix_us() }));
    }

    match args.scenario.as_str() {
        "load" => {}
        "updates" | "changes" => {
            // Inserts, updates and deletes after the initial rows, each counted by the listener.
            let (base, cpu_ready) = (seen.borrow().clone(), cpu_time());
            let (inserts, updates, deletes) = (args.expect_inserts, args.expect_updates, args.expect_deletes);
            let done = |s: &Seen| {
                s.inserts - base.inserts >= inserts && s.updates - base.updates >= updates && s.deletes >= deletes
            };
            let waited = if args.events_only {
                tick_for(&mut app, &seen, deadline, "the changes", done).await
            } else {
                wait_for(&mut seen, deadline, "the changes", done).await
            };
            let cpu = cpu_time().saturating_sub(cpu_ready);
            let s = seen.borrow().clone();
            result.insert("updates".into(), json!(s.updates - base.updates));
            result.insert("inserts".into(), json!(s.inserts - base.inserts));
            result.insert("deletes".into(), json!(s.deletes - base.deletes));
            result.insert("first_update_unix_us".into(), json!(s.first_update_unix_us));
            result.insert("last_update_unix_us".into(), json!(s.last_update_unix_us));
            result.insert("first_change_unix_us".into(), json!(s.first_change_unix_us));
            result.insert("last_change_unix_us".into(), json!(s.last_change_unix_us));
            result.insert("change_cpu_ms".into(), json!(cpu.as_secs_f64() * 1e3));
            result.insert("end_rss_kib".into(), json!(status_kib("VmRSS")));
            waited?;
        }
        "rtt" => {
            let joined = app.reducer_client().call("join", join_args("bench", 1)).await?;
            if joined.outcome != Outcome::Committed {
                bail!("join: {:?}", joined.outcome);
            }
            if args.wait_update {
                wait_for(&mut seen, deadline, "a first update of the stream", |s| s.updates > 0).await?;
            }
            let mut samples = Vec::with_capacity(args.calls as usize);
            // What the server says it spent running each call (its TransactionUpdate's
            // host execution duration): the part of the round trip no client can save.
            let mut server = Vec::with_capacity(args.calls as usize);
            for seq in 1..=args.calls {
                let dx = if seq % 2 == 0 { 0.5 } else { -0.5 };
                let sent = Instant::now();
                let answer = app.reducer_client().call("move_player", move_args(seq, dx)).await?;
                let rtt = sent.elapsed();
                if answer.outcome != Outcome::Committed {
                    bail!("move_player #{seq}: {:?}", answer.outcome);
                }
                samples.push(rtt.as_secs_f64() * 1e6);
                server.push(answer.server_execution.as_secs_f64() * 1e6);
                if Instant::now() > deadline {
                    bail!("timed out after {seq} calls");
                }
            }
            result.insert("rtt_us".into(), json!(samples));
            result.insert("server_us".into(), json!(server));
            result.insert("updates_seen".into(), json!(seen.borrow().updates));
        }
        "dead-peer" => {
            wait_for(&mut seen, deadline, "a lost session", |s| s.disconnects > 0).await?;
            let at = seen.borrow().disconnected_unix_us;
            emit(json!({ "event": "disconnected", "unix_us": at }));
            result.insert("disconnected_unix_us".into(), json!(at));
            let applied = seen.borrow().applied;
            let table = args.table.clone();
            let expect = args.expect_rows;
            // Back: the query set is applied again and reconciled, with every row.
            wait_for(&mut seen, deadline, "the subscription applied again", |s| s.applied > applied).await?;
            let reader = sync.cache().clone();
            let consistent = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), async {
                while (reader.count(&table) as u64) < expect {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .is_ok();
            let at = unix_us();
            emit(json!({ "event": "recovered", "unix_us": at }));
            result.insert("recovered_unix_us".into(), json!(at));
            result.insert("cached".into(), json!(sync.cache().count(&args.table)));
            if !consistent {
                bail!("the cache did not get all {expect} rows back");
            }
        }
        "first-row" => bail!("first-row needs --query"),
        other => bail!("unknown scenario {other}"),
    }
    result.insert("disconnects".into(), json!(seen.borrow().disconnects));
    app.shutdown();
    Ok(())
}

/// How many times `iter` and the `find`s are timed (the driver takes the median).
const READ_REPEATS: usize = 15;

/// The `frame` scenario: a game's loop on this (the main) thread.
fn run_frame(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let query = args.query.clone().context("frame needs --query")?;
    let mut client = Client::builder()
        .with_uri(&args.server)
        .with_database(&args.database)
        // What the generated bindings embed: no schema fetched at start.
        .with_schema(schema())
        .with_row_types(row_types())
        .subscribe(&[query.as_str()])
        .build()?;
    let updates = Arc::new(AtomicU64::new(0));
    let counted = updates.clone();
    client.db().entity().on_update(move |_, _, new| {
        counted.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(new.hp);
    });
    let tick = Duration::from_millis(1);
    while (client.db().entity().count() as u64) < args.expect_rows {
        client.frame_tick();
        if Instant::now() > deadline {
            bail!("{} of {} rows cached in time", client.db().entity().count(), args.expect_rows);
        }
        std::thread::sleep(tick);
    }
    client.frame_tick();

    // Reads, from the cache, on the game's thread.
    let entities = client.db().entity();
    let ids: Vec<u64> = entities.iter().map(|e| e.entity_id).collect();
    let (mut iter_us, mut find_ns) = (Vec::new(), Vec::new());
    for _ in 0..READ_REPEATS {
        let at = Instant::now();
        let hp: i64 = entities.iter().map(|e| i64::from(e.hp)).sum();
        iter_us.push(at.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(hp);
        let at = Instant::now();
        let found = ids.iter().filter(|id| entities.find_by_entity_id(id).is_some()).count();
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
        client.frame_tick();
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
    client.shutdown();
    Ok(())
}

/// The `launch` scenario: a game's start with its cache kept on disk
/// (`--disk-cache FILE`). Times the launch until the table holds
/// `--expect-rows` rows (`ready_ms`: read from the file when there is one, else
/// loaded from the server), then until the subscription is applied and the
/// cache reconciled with the server (`synced_ms`); then saves the cache for
/// the next launch (`saved_ms`).
fn run_launch(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let query = args.query.clone().context("launch needs --query")?;
    let file = args.disk_cache.clone().context("launch needs --disk-cache FILE")?;
    let (t0, cpu0) = (Instant::now(), cpu_time());
    let mut client = Client::builder()
        .with_uri(&args.server)
        .with_database(&args.database)
        .with_compression(args.compression)
        .with_schema(schema())
        .with_row_types(row_types())
        .with_disk_cache(spacelink::DiskCacheConfig::new(file))
        .subscribe(&[query.as_str()])
        .build()?;
    let inserts = Arc::new(AtomicU64::new(0));
    let counted = inserts.clone();
    client.db().entity().on_insert(move |_, e| {
        counted.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(e.hp);
    });
    let tick = Duration::from_millis(1);
    let mut restored = false;
    let mut ticks = |client: &mut Client| {
        for event in client.frame_tick() {
            if let spacelink::Event::DiskCache(spacelink::DiskCacheEvent::Restored { .. }) = event {
                restored = true;
            }
        }
    };
    while (client.db().entity().count() as u64) < args.expect_rows {
        ticks(&mut client);
        if Instant::now() > deadline {
            bail!("{} of {} rows readable in time", client.db().entity().count(), args.expect_rows);
        }
        std::thread::sleep(tick);
    }
    let ready = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let applied = |c: &Client| {
        let s = c.status();
        !s.subscriptions.is_empty() && s.subscriptions.values().all(|s| *s == spacelink::SubscriptionState::Applied)
    };
    while !applied(&client) {
        ticks(&mut client);
        if Instant::now() > deadline {
            bail!("not applied in time");
        }
        std::thread::sleep(tick);
    }
    ticks(&mut client);
    let synced = t0.elapsed();
    result.insert("ready_ms".into(), json!(ready.as_secs_f64() * 1e3));
    result.insert("cpu_ms".into(), json!(cpu.as_secs_f64() * 1e3));
    result.insert("synced_ms".into(), json!(synced.as_secs_f64() * 1e3));
    result.insert("from_disk".into(), json!(restored));
    result.insert("rows".into(), json!(client.db().entity().count()));
    result.insert("inserts_heard".into(), json!(inserts.load(Ordering::Relaxed)));
    result.insert("rss_kib".into(), json!(status_kib("VmRSS")));
    let at = Instant::now();
    let mut saving = client.save_cache();
    let saved = loop {
        if let Some(saved) = saving.try_result() {
            break saved;
        }
        if Instant::now() > deadline {
            bail!("not saved in time");
        }
        std::thread::sleep(tick);
    };
    if let spacelink::DiskCacheEvent::SaveFailed { error } = saved {
        bail!("the cache was not saved: {error}");
    }
    result.insert("saved_ms".into(), json!(at.elapsed().as_secs_f64() * 1e3));
    client.shutdown();
    Ok(())
}

/// The threads of this process.
fn threads() -> u64 {
    status_kib("Threads")
}

/// The `connections` scenario: many clients in this process, held.
fn run_connections(args: &Args, result: &mut serde_json::Map<String, Value>) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let (rss0, threads0, cpu0, t0) = (status_kib("VmRSS"), threads(), cpu_time(), Instant::now());
    let mut clients = Vec::with_capacity(args.connections);
    // `SPACELINK_BENCH_HEARTBEAT_MS` (an experiment's knob, not a flag of
    // the bench): another heartbeat interval, the dead peer at four of them.
    let heartbeat = std::env::var("SPACELINK_BENCH_HEARTBEAT_MS").ok().and_then(|v| v.parse::<u64>().ok());
    for _ in 0..args.connections {
        let mut connection = spacelink::ConnectionConfig::new(&args.server, &args.database);
        if let Some(ms) = heartbeat {
            connection.heartbeat_interval = Duration::from_millis(ms);
            connection.dead_peer_timeout = Duration::from_millis(ms * 4);
        }
        let client = Client::builder()
            .with_connection_config(connection)
            .with_schema(schema())
            .subscribe(&["SELECT * FROM config"])
            .build()?;
        clients.push(client);
    }
    let ready = |c: &Client| {
        let s = c.status();
        c.is_active()
            && !s.subscriptions.is_empty()
            && s.subscriptions.values().all(|s| *s == spacelink::SubscriptionState::Applied)
    };
    loop {
        for client in &mut clients {
            client.frame_tick();
        }
        let up = clients.iter().filter(|c| ready(c)).count();
        if up == clients.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{up} of {} clients connected and subscribed in time", clients.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect = t0.elapsed();
    let (cpu1, rss1) = (cpu_time(), status_kib("VmRSS"));
    let generations: Vec<u64> = clients.iter().map(|c| c.status().generation).collect();
    emit(json!({ "event": "ready", "unix_us": unix_us() }));
    // Held: each client ticked once a second, as a game loop would.
    let held = Instant::now();
    while held.elapsed() < args.hold {
        std::thread::sleep(Duration::from_secs(1).min(args.hold.saturating_sub(held.elapsed())));
        for client in &mut clients {
            client.frame_tick();
        }
    }
    let (cpu2, rss2, hold) = (cpu_time(), status_kib("VmRSS"), held.elapsed());
    let lost = clients.iter().zip(&generations).filter(|(c, g)| c.status().generation != **g || !c.is_active()).count();
    let n = clients.len() as f64;
    result.insert("connections".into(), json!(clients.len()));
    result.insert("connect_ms".into(), json!(connect.as_secs_f64() * 1e3));
    result.insert("connect_cpu_ms".into(), json!((cpu1 - cpu0).as_secs_f64() * 1e3));
    result.insert("rss_per_client_kib".into(), json!(rss1.saturating_sub(rss0) as f64 / n));
    result.insert("rss_growth_kib".into(), json!(rss2 as f64 - rss1 as f64));
    // CPU held, per client: microseconds of CPU per second of wall time.
    result.insert("cpu_us_per_client_s".into(), json!((cpu2 - cpu1).as_secs_f64() * 1e6 / hold.as_secs_f64() / n));
    result.insert("threads".into(), json!(threads()));
    result.insert("threads_added".into(), json!(threads().saturating_sub(threads0)));
    result.insert("sessions_lost".into(), json!(lost));
    for client in &clients {
        client.shutdown();
    }
    if lost > 0 {
        bail!("{lost} of {} clients lost their session while held (a false dead peer?)", clients.len());
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench_client: {e:#}");
            std::process::exit(2);
        }
    };
    let mut result = serde_json::Map::new();
    let outcome = if args.scenario == "frame" {
        run_frame(&args, &mut result)
    } else if args.scenario == "connections" {
        run_connections(&args, &mut result)
    } else if args.scenario == "launch" {
        run_launch(&args, &mut result)
    } else {
        actix::System::new().block_on(run(&args, &mut result))
    };
    result.insert("event".into(), json!("result"));
    result.insert("client".into(), json!("spacelink"));
    result.insert("scenario".into(), json!(args.scenario));
    result.insert("peak_rss_kib".into(), json!(status_kib("VmHWM")));
    result.insert("ok".into(), json!(outcome.is_ok()));
    if let Err(e) = &outcome {
        result.insert("error".into(), json!(format!("{e:#}")));
    }
    emit(Value::Object(result));
    // Do not wait for the actors to wind down.
    std::process::exit(if outcome.is_ok() { 0 } else { 1 });
}
