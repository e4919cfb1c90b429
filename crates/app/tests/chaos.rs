//! Resilience scenarios against the real server, with real faults: the server
//! process killed and restarted, and a fault-injecting proxy (latency, refused
//! and cut connections, blackholes) between client and server.
//!
//! They run in `cargo xtask test` (end-to-end phase) and in `cargo xtask chaos`,
//! which also collects the report each scenario writes to
//! `SPACELINK_CHAOS_REPORT` and prints it as a table.
#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::*;
use spacelink::connection::{BreakerKind, CircuitBreakerConfig, ResilienceEvent, RetryPolicy};
use spacelink::ConnectionState;
use tokio::sync::mpsc;

/// One row of the chaos report.
struct Row {
    scenario: &'static str,
    detect: Option<Duration>,
    reconnect: Option<Duration>,
    attempts: Option<u32>,
    breaker_trips: Option<u32>,
    note: String,
}

impl Row {
    /// Appends the row to `SPACELINK_CHAOS_REPORT`, if set (by `cargo xtask chaos`).
    fn report(&self) {
        let Ok(path) = std::env::var("SPACELINK_CHAOS_REPORT") else { return };
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let line = serde_json::json!({
            "scenario": self.scenario,
            "detect_ms": ms(self.detect),
            "reconnect_ms": ms(self.reconnect),
            "attempts": self.attempts,
            "breaker_trips": self.breaker_trips,
            "ok": true,
            "note": self.note,
        });
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

/// Resilience events with the (wall-clock) time they arrived.
struct ResilienceTap(mpsc::UnboundedSender<(Instant, ResilienceEvent)>);

impl Actor for ResilienceTap {
    type Context = Context<Self>;
}

impl Handler<ResilienceEvent> for ResilienceTap {
    type Result = ();
    fn handle(&mut self, msg: ResilienceEvent, _: &mut Self::Context) {
        let _ = self.0.send((Instant::now(), msg));
    }
}

/// Starts a spacelink whose resilience events are tapped too.
async fn start_tapped(
    config: spacelink::ConnectionConfig,
) -> (spacelink::Client, Events, mpsc::UnboundedReceiver<(Instant, ResilienceEvent)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tap = ResilienceTap(tx).start();
    let (app, events) = start_with(config, |listeners| listeners.resilience.push(tap.recipient())).await;
    (app, events, rx)
}

/// Waits for the state `to`; returns when it arrived and the reason.
async fn state(events: &mut Events, to: ConnectionState, secs: u64) -> (Instant, String) {
    events
        .wait_for(secs, &format!("state {to}"), |e| match e {
            Event::State(s) if s.to == to => Some((Instant::now(), s.reason.clone().unwrap_or_default())),
            _ => None,
        })
        .await
}

fn attempts_in(rx: &mut mpsc::UnboundedReceiver<(Instant, ResilienceEvent)>) -> Vec<(Instant, u32)> {
    let mut attempts = Vec::new();
    while let Ok((at, event)) = rx.try_recv() {
        if let ResilienceEvent::AttemptStarted { attempt, .. } = event {
            attempts.push((at, attempt));
        }
    }
    attempts
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn chaos_server_killed_and_restarted_reconnects_with_the_same_identity() {
    let _serial = serial();
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    let mut config = config();
    config.heartbeat_interval = Duration::from_millis(500);
    config.dead_peer_timeout = Duration::from_millis(2000);
    let initial_delay = config.retry.initial_delay;
    let (app, mut events, mut tap) = start_tapped(config).await;
    events.connected().await;
    let identity = events.identity().await.identity;

    let state_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/state.json")).unwrap()).unwrap();
    let pid = state_file["pid"].as_u64().unwrap().to_string();
    let killed = Instant::now();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let (detected, reason) = state(&mut events, ConnectionState::Reconnecting, 10).await;
    attempts_in(&mut tap);

    // Restart on the same port with the same data; the command returns once it answers pings.
    let restart = tokio::task::spawn_blocking(move || {
        Command::new(xtask).args(["server", "restart", "--dir", &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    let accepting = Instant::now();
    let restored = events.identity().await;
    let reconnected = Instant::now();
    assert_eq!(restored.identity, identity, "the token is reused, so the identity is the same");
    let attempts = attempts_in(&mut tap);
    let reconnect = reconnected.duration_since(accepting);
    // The next attempt comes at most one backoff step after the server is back.
    assert!(
        reconnect < initial_delay * 4 + Duration::from_millis(500),
        "reconnected {reconnect:?} after the server was back"
    );
    Row {
        scenario: "server killed and restarted",
        detect: Some(detected.duration_since(killed)),
        reconnect: Some(reconnect),
        attempts: Some(attempts.len() as u32),
        breaker_trips: Some(app.connection().status().await.unwrap().breaker_trips),
        note: reason,
    }
    .report();
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn chaos_blackholed_connection_is_detected_within_heartbeat_plus_timeout() {
    let _serial = serial();
    let (proxy, mut config) = common::proxied().await;
    config.heartbeat_interval = Duration::from_millis(500);
    config.dead_peer_timeout = Duration::from_millis(1500);
    config.connect_timeout = Duration::from_secs(2);
    let (app, mut events, mut tap) = start_tapped(config).await;
    events.connected().await;
    let identity = events.identity().await.identity;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    proxy.set_blackhole(true);
    let blackholed = Instant::now();
    let (detected, reason) = state(&mut events, ConnectionState::Reconnecting, 10).await;
    let detect = detected.duration_since(blackholed);
    assert!(reason.contains("nothing received"), "{reason}");
    assert!(detect < Duration::from_millis(500 + 1500 + 700), "detected after {detect:?}");
    attempts_in(&mut tap);

    proxy.heal();
    let healed = Instant::now();
    let restored = events.identity().await;
    assert_eq!(restored.identity, identity);
    let attempts = attempts_in(&mut tap);
    Row {
        scenario: "blackholed connection",
        detect: Some(detect),
        reconnect: Some(healed.elapsed()),
        attempts: Some(attempts.len() as u32),
        breaker_trips: Some(app.connection().status().await.unwrap().breaker_trips),
        note: reason,
    }
    .report();
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn chaos_server_down_attempts_follow_the_backoff_and_the_breaker_cycles() {
    let _serial = serial();
    let (proxy, mut config) = common::proxied().await;
    config.retry = RetryPolicy {
        max_attempts: 5,
        initial_delay: Duration::from_millis(200),
        backoff_multiplier: 2.0,
        max_delay: Duration::from_millis(1600),
        jitter: 0.0,
    };
    config.breaker =
        CircuitBreakerConfig { failure_threshold: 4, open_duration: Duration::from_secs(3), half_open_max_calls: 1 };
    // A session counts as a success (closing the breaker) once it proved itself.
    config.proven_after = Duration::from_millis(300);
    let (app, mut events, mut tap) = start_tapped(config).await;
    events.connected().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // Proven: the loss below is failure 1.

    // The server "goes down": live connections cut, new ones refused.
    proxy.set_refuse(true);
    proxy.cut_all();
    let (lost, reason) = state(&mut events, ConnectionState::Reconnecting, 10).await;
    // Let the backoff run and the breaker open, half-open, and open again.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    proxy.set_refuse(false);
    let back = Instant::now();
    events.connected().await;
    let reconnected = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await; // Proven: the breaker closes.

    let mut attempts = Vec::new();
    let mut breaker = Vec::new();
    while let Ok((at, event)) = tap.try_recv() {
        match event {
            ResilienceEvent::AttemptStarted { .. } if at > lost => attempts.push(at.duration_since(lost)),
            ResilienceEvent::BreakerChanged { to, .. } if at > lost => breaker.push((to, at.duration_since(lost))),
            _ => {}
        }
    }
    // Session lost (failure 1); attempts after 0.2 s, then 0.2, 0.4 s of backoff;
    // the third failed attempt (failure 4) opens the breaker for 3 s, so the
    // next attempt, a half-open probe, is at 0.8 + 3 = 3.8 s; it fails and
    // reopens it until 6.8 s, when the server is back.
    let expected = [0.2, 0.4, 0.8, 3.8, 6.8];
    assert!(attempts.len() >= expected.len(), "{attempts:?}");
    for (seen, want) in attempts.iter().zip(expected) {
        let error = (seen.as_secs_f64() - want).abs();
        assert!(error < 0.25, "attempt at {seen:?}, expected {want} s: {attempts:?}");
    }
    let kinds: Vec<BreakerKind> = breaker.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [BreakerKind::Open, BreakerKind::HalfOpen, BreakerKind::Open, BreakerKind::HalfOpen, BreakerKind::Closed],
        "{breaker:?}"
    );
    let opened = breaker[0].1.as_secs_f64();
    let half_opened = breaker[1].1.as_secs_f64();
    assert!((half_opened - opened - 3.0).abs() < 0.25, "open for {} s", half_opened - opened);
    let status = app.connection().status().await.unwrap();
    assert_eq!(status.breaker, BreakerKind::Closed);
    Row {
        scenario: "server down (backoff + breaker)",
        detect: None,
        reconnect: Some(reconnected.duration_since(back)),
        attempts: Some(attempts.len() as u32),
        breaker_trips: Some(status.breaker_trips),
        note: reason,
    }
    .report();
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn chaos_500_ms_of_latency_keeps_the_connection_up() {
    let _serial = serial();
    let (proxy, config) = common::proxied().await;
    // 250 ± 100 ms each way: a jittery 500 ms round trip, on the default
    // heartbeat and dead-peer timeout, must never look like a dead server.
    proxy.set_latency(Duration::from_millis(250), Duration::from_millis(100));
    let schema = schema().await;
    let (app, mut events, mut tap) = start_tapped(config).await;
    events.connected().await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    let status = app.connection().status().await.unwrap();
    assert!(status.state.is_connected(), "{:?}", status.state);
    let latency = status.latency.unwrap();
    // The round trip is uniform in 300-700 ms (mean 500); the smoothed
    // estimate of a few dozen pings spreads by about 20 ms around it, so a
    // bound of 450 failed now and then (449.5 ms was seen): 400 still tells the
    // added round trip from none.
    assert!(
        latency >= Duration::from_millis(400) && latency <= Duration::from_millis(800),
        "latency reads {latency:?} through 500 ms of added round trip"
    );
    // Reducer calls still work, just slower.
    let call = call(&app, &mut events, &schema, "always_fail", r#"["slow"]"#).await;
    assert_eq!(outcome(&call), Err("slow".to_string()));
    let attempts = attempts_in(&mut tap);
    assert_eq!(attempts.len(), 1, "the session was never lost: {attempts:?}");
    Row {
        scenario: "500 ms added round trip",
        detect: None,
        reconnect: None,
        attempts: Some(attempts.len() as u32),
        breaker_trips: Some(status.breaker_trips),
        note: format!("latency {:.0} ms, status {}", latency.as_secs_f64() * 1000.0, status.health.status),
    }
    .report();
    app.shutdown();
}

/// Kills the test server with SIGKILL and starts it again on the same port and data.
async fn kill_and_restart_server() {
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/state.json")).unwrap()).unwrap();
    let pid = state["pid"].as_u64().unwrap().to_string();
    // A frozen process dies of SIGKILL too.
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let restart = tokio::task::spawn_blocking(move || {
        std::process::Command::new(xtask).args(["server", "restart", "--dir", &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
}

/// A server killed with SIGKILL while sequenced calls stream in loses none of
/// the calls it acknowledged, and the call in flight at the kill runs once
/// after the restart.
#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn chaos_calls_acknowledged_just_before_the_server_is_killed_are_not_lost() {
    use spacelink::reducers::Outcome;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let _serial = serial();
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let me = events.identity().await.identity;
    let schema = schema().await;
    let args = schema.encode_reducer_args("join", r#"["killed", 1]"#).unwrap();
    assert_eq!(app.reducer_client().call("join", args).await.unwrap().outcome, Outcome::Committed);

    // One call after the other, each awaited: the highest committed number is
    // always the number of calls committed.
    let committed = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (reducers, committed, stop) = (app.reducer_client().clone(), committed.clone(), stop.clone());
        actix::spawn(async move {
            let mut seq: u32 = 1;
            while !stop.load(Ordering::SeqCst) {
                let mut args = seq.to_le_bytes().to_vec();
                args.extend_from_slice(&0.001f32.to_le_bytes());
                args.extend_from_slice(&0f32.to_le_bytes());
                let result = reducers.call_sequenced("move_player", args.into(), seq).await;
                let result = result.unwrap_or_else(|e| panic!("call {seq} got no result: {e}"));
                assert_eq!(result.outcome, Outcome::Committed, "call {seq}");
                committed.store(seq, Ordering::SeqCst);
                seq += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = committed.load(Ordering::SeqCst);
    assert!(before_kill > 50, "only {before_kill} calls committed in 1.5 s");
    kill_and_restart_server().await;
    events.identity().await;
    // A few more calls after the restart, then stop.
    let after_restart = committed.load(Ordering::SeqCst);
    while committed.load(Ordering::SeqCst) < after_restart + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    caller.await.unwrap();
    let n = u64::from(committed.load(Ordering::SeqCst));
    // Every acknowledged call is in the database once: the last number applied
    // is the last committed, and as many moves were applied as were committed.
    let columns = &schema.table("player").unwrap().columns;
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let result = sql(&format!("SELECT * FROM player WHERE identity = 0x{}", me.to_hex())).await;
    let row = &result[0]["rows"][0];
    let progress = (row[col("last_input_seq")].as_u64().unwrap(), row[col("moves_applied")].as_u64().unwrap());
    assert_eq!(progress, (n, n), "{before_kill} calls were acknowledged before the kill");
    app.shutdown();
}

/// SpacetimeDB 1.3 answers a call before its transaction reaches the commit
/// log (a persister task writes it afterwards, and lags under load), so a
/// server killed at the wrong moment comes back without calls it answered
/// `Committed`. The test makes that loss certain: it copies the server's data
/// while frozen, lets more calls commit, kills the server and restarts it on
/// the copy. A client with `replay_window` zero loses those calls (the fault
/// is real); one with the default sends them again, so every acknowledged
/// call is in the database once and the game heard each result once.
#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn chaos_calls_acknowledged_and_then_lost_by_a_killed_server_are_sent_again() {
    let _serial = serial();
    let without = lose_acknowledged_moves("no-replay", Duration::ZERO).await;
    assert_eq!(without.applied, without.before_copy, "the restored server lost the moves after its copy");
    let with = lose_acknowledged_moves("replay", spacelink::ReducerConfig::default().replay_window).await;
    assert_eq!(with.applied, with.acknowledged, "every acknowledged move is in the database once");
    assert_eq!(with.moves_applied, with.acknowledged, "and ran once");
    assert_eq!(with.results_heard, with.acknowledged, "the game heard one result per move");
}

/// What [`lose_acknowledged_moves`] saw.
#[derive(Debug)]
struct Lost {
    /// Moves acknowledged before the server's data was copied.
    before_copy: u64,
    /// Moves acknowledged in all.
    acknowledged: u64,
    /// The player's `last_input_seq` and `moves_applied` after the restart.
    applied: u64,
    moves_applied: u64,
    /// `Completed` results of moves the game heard.
    results_heard: u64,
}

/// Ten acknowledged moves, a copy of the frozen server's data, ten more, then
/// the server killed and restarted on the copy.
async fn lose_acknowledged_moves(name: &str, replay_window: Duration) -> Lost {
    use spacelink::reducers::{Outcome, ReducerEvent};
    let (results, mut completed) = common::tap::<ReducerEvent>();
    let listeners = spacelink::reducers::ReducerListeners { events: vec![results] };
    let mut config = spacelink::SpacelinkConfig::new(config());
    config.reducers.replay_window = replay_window;
    let (app, mut events) = start_configured(config, listeners).await;
    events.connected().await;
    let me = events.identity().await.identity;
    let schema = schema().await;
    let args = schema.encode_reducer_args("join", &format!(r#"["{name}", 1]"#)).unwrap();
    assert_eq!(app.reducer_client().call("join", args).await.unwrap().outcome, Outcome::Committed);
    let columns = schema.table("player").unwrap().columns.clone();
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let moves = |from: u32, to: u32| {
        let reducers = app.reducer_client().clone();
        async move {
            for seq in from..=to {
                let mut args = seq.to_le_bytes().to_vec();
                args.extend_from_slice(&0.001f32.to_le_bytes());
                args.extend_from_slice(&0f32.to_le_bytes());
                let result = reducers.call_sequenced("move_player", args.into(), seq).await.unwrap();
                assert_eq!(result.outcome, Outcome::Committed, "move {seq}");
            }
        }
    };
    moves(1, 10).await;
    let copy = copy_server_data_while_frozen();
    moves(11, 20).await;
    kill_and_restart_server_on(&copy).await;
    events.identity().await;
    // The replays (if any) run soon after the reconnect.
    let expected = if replay_window.is_zero() { 10 } else { 20 };
    let deadline = Instant::now() + Duration::from_secs(15);
    let (applied, moves_applied) = loop {
        let result = sql(&format!("SELECT * FROM player WHERE identity = 0x{}", me.to_hex())).await;
        let row = &result[0]["rows"][0];
        let got = (row[col("last_input_seq")].as_u64().unwrap(), row[col("moves_applied")].as_u64().unwrap());
        if got.0 >= expected || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut results_heard = 0;
    while let Ok(event) = completed.try_recv() {
        if matches!(&event, ReducerEvent::Completed(r) if r.reducer == "move_player") {
            results_heard += 1;
        }
    }
    app.shutdown();
    Lost { before_copy: 10, acknowledged: 20, applied, moves_applied, results_heard }
}

/// Freezes the test server (SIGSTOP), copies its data directory, and thaws it.
fn copy_server_data_while_frozen() -> tempfile::TempDir {
    let (pid, data) = server_process();
    let copy = tempfile::tempdir().unwrap();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let copied = Command::new("cp").arg("-a").arg(format!("{data}/.")).arg(copy.path()).status();
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    assert!(copied.unwrap().success(), "cannot copy {data}");
    copy
}

/// Kills the test server and restarts it on `copy` of its data.
async fn kill_and_restart_server_on(copy: &tempfile::TempDir) {
    let (pid, data) = server_process();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    // Wait for the process to be gone before its files are replaced.
    // Gone, or a zombie (its parent, `cargo xtask test`, reaps it later):
    // either way it writes nothing any more.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    while alive() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_dir_all(&data).unwrap();
    assert!(Command::new("cp").arg("-a").arg(copy.path()).arg(&data).status().unwrap().success());
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    let restart = tokio::task::spawn_blocking(move || {
        Command::new(xtask).args(["server", "restart", "--dir", &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
}

/// The test server's process id and data directory.
fn server_process() -> (String, String) {
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/state.json")).unwrap()).unwrap();
    (state["pid"].as_u64().unwrap().to_string(), state["data_dir"].as_str().unwrap().to_string())
}
