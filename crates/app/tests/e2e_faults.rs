//! End-to-end faults made for real on the test server's process. A test binary
//! of its own, because freezing the server would disturb the other end-to-end
//! tests running in parallel (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use spacelink::ConnectionState;

/// The pid of the server `cargo xtask test` started (from its state.json).
fn server_pid() -> u32 {
    let dir = std::env::var("SPACELINK_SERVER_DIR")
        .unwrap_or_else(|_| panic!("SPACELINK_SERVER_DIR is not set: run through `cargo xtask test`"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/state.json")).unwrap()).unwrap();
    u32::try_from(state["pid"].as_u64().unwrap()).unwrap()
}

/// Freezes a process with SIGSTOP; thaws it when dropped, whatever happened.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Self {
        assert!(Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap().success());
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_frozen_server_is_declared_dead_within_the_timeout_and_recovered_from() {
    // The default heartbeat and dead-peer timeout: a frozen server is noticed in under 3 s.
    let config = config();
    let (app, mut events) = start(config).await;
    events.connected().await;
    let identity = events.identity().await.identity;
    // Let a few heartbeats measure the round trip.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(app.connection().status().await.unwrap().latency.is_some(), "heartbeats measured no round trip");

    let frozen = Frozen::new(server_pid());
    let since = Instant::now();
    let reason = events
        .wait_for(10, "the dead session to be noticed", |e| match e {
            Event::State(s) if s.to == ConnectionState::Reconnecting => Some(s.reason.clone().unwrap_or_default()),
            _ => None,
        })
        .await;
    let detected = since.elapsed();
    assert!(reason.contains("nothing received"), "{reason}");
    // Nothing arrives after the freeze: dead after the timeout (2 s), noticed on
    // the next heartbeat (500 ms); the bound is 3 s.
    assert!(detected < Duration::from_secs(3), "took {detected:?}");
    drop(frozen);

    // The server thaws; the supervisor's restarts reconnect with the same identity.
    let restored = events.identity().await;
    assert_eq!(restored.identity, identity);
    app.shutdown();
}
