//! Every hostile WebSocket case of `spacelink_connection::hostile::catalogue`
//! against the real connection actor, on the real clock, all at once (each
//! case its own server and actor): each attempt fails with a clear reason,
//! nothing panics, the backoff grows, and a first connection that never proved
//! itself gives up (`Failed`) after the retry policy's attempts. Memory stays
//! bounded: the decompression bombs are four times the frame limit.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix::prelude::*;
use spacelink_connection::hostile::{catalogue, Hostile, HostileServer};
use spacelink_connection::{
    ConnectionActor, ConnectionConfig, ConnectionState, DecodeLimits, Listeners, RetryPolicy, StateChanged,
};
use tokio::sync::mpsc;

struct Recorder(mpsc::UnboundedSender<StateChanged>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

const LIMIT: usize = 1 << 20;

fn config(server: &HostileServer) -> ConnectionConfig {
    let mut config = ConnectionConfig::new(server.url(), "hostile");
    config.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(50),
        backoff_multiplier: 2.0,
        max_delay: Duration::from_secs(1),
        jitter: 0.0,
    };
    config.breaker.failure_threshold = 100;
    config.connect_timeout = Duration::from_secs(1);
    config.identity_timeout = Duration::from_secs(1);
    config.proven_after = Duration::from_secs(30);
    config.limits = DecodeLimits { max_message_size: LIMIT };
    config.jitter_seed = Some(1);
    config
}

/// Runs one case to `Failed`; returns the reasons and delays of its failures.
async fn run(hostile: Hostile) -> (Hostile, Vec<(String, Option<Duration>)>, String) {
    let server = HostileServer::start(hostile.case.clone()).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Recorder(tx).start();
    let listeners = Listeners { states: vec![recorder.recipient()], ..Default::default() };
    let handle = ConnectionActor::start_supervised(config(&server), listeners).unwrap();
    let mut failures = Vec::new();
    let failed = loop {
        let change = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: no Failed within 60 s; failures {failures:?}", hostile.name))
            .unwrap();
        match change.to {
            ConnectionState::Failed => break change.reason.unwrap_or_default(),
            ConnectionState::Reconnecting => failures.push((change.reason.unwrap_or_default(), change.retry_in)),
            _ => {}
        }
    };
    handle.shutdown();
    (hostile, failures, failed)
}

#[actix::test]
async fn every_hostile_server_gives_a_clear_error_a_growing_backoff_and_gives_up() {
    let cases = catalogue(4 * LIMIT);
    let count = cases.len();
    let results = futures_util::future::join_all(cases.into_iter().map(run)).await;
    assert_eq!(results.len(), count);
    for (hostile, failures, failed) in results {
        let name = hostile.name;
        let delays: Vec<Duration> = failures.iter().filter_map(|(_, d)| *d).collect();
        assert_eq!(delays.len(), 3, "{name}: three retries, then it gives up: {failures:?}");
        assert!(delays.windows(2).all(|w| w[1] > w[0]), "{name}: the backoff grows: {delays:?}");
        for (reason, _) in &failures {
            assert!(reason.contains(hostile.reason), "{name}: `{reason}` should say `{}`", hostile.reason);
        }
        assert!(failed.contains("gave up after 4 attempts"), "{name}: {failed}");
        assert!(failed.contains(hostile.reason), "{name}: {failed}");
    }
    // Bounded memory: bombs of 4 MiB each (against a 1 MiB limit), nineteen
    // servers and actors; the process's peak stays far below what an
    // unbounded decompression would take.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        assert!(peak_kib < 1024 * 1024, "peak resident memory {peak_kib} KiB");
    }
}
