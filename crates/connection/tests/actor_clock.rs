//! The connection actor's restart policy on tokio's paused clock: the backoff
//! schedule and the circuit breaker, checked on virtual timestamps, with no
//! waiting. The "server" is a loopback port nobody listens on, so every attempt
//! is refused at once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix::prelude::*;
use spacelink_connection::{
    BreakerKind, CircuitBreakerConfig, ConnectionActor, ConnectionConfig, ConnectionState, Listeners, ResilienceEvent,
    RetryPolicy, StateChanged,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug)]
enum Seen {
    Attempt(u32),
    Breaker(BreakerKind),
    State(ConnectionState),
}

struct Recorder(mpsc::UnboundedSender<(Instant, Seen)>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<ResilienceEvent> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: ResilienceEvent, _: &mut Self::Context) {
        let seen = match msg {
            ResilienceEvent::AttemptStarted { attempt, .. } => Seen::Attempt(attempt),
            ResilienceEvent::BreakerChanged { to, .. } => Seen::Breaker(to),
            _ => return,
        };
        let _ = self.0.send((Instant::now(), seen));
    }
}

impl Handler<StateChanged> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        let _ = self.0.send((Instant::now(), Seen::State(msg.to)));
    }
}

/// A loopback address where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// On a paused clock, a connection to a closed port that retries `max_attempts`
/// times: 1 s, doubling to 8 s, no jitter.
fn refused_config(max_attempts: u32) -> ConnectionConfig {
    tokio::time::pause();
    let mut config = ConnectionConfig::new(closed_port(), "guildmaster");
    config.retry = RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_secs(1),
        backoff_multiplier: 2.0,
        max_delay: Duration::from_secs(8),
        jitter: 0.0,
    };
    config
}

/// Listeners that record state and resilience events with their (virtual) time.
fn recorded() -> (Listeners, mpsc::UnboundedReceiver<(Instant, Seen)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = Recorder(tx).start();
    let listeners = Listeners {
        states: vec![recorder.clone().recipient()],
        resilience: vec![recorder.recipient()],
        ..Default::default()
    };
    (listeners, rx)
}

#[actix::test]
async fn attempts_follow_the_backoff_and_the_breaker_on_a_paused_clock() {
    let mut config = refused_config(7);
    config.breaker =
        CircuitBreakerConfig { failure_threshold: 4, open_duration: Duration::from_secs(30), half_open_max_calls: 1 };
    let (listeners, mut rx) = recorded();
    let t0 = Instant::now();
    let _handle = ConnectionActor::start_supervised(config, listeners).unwrap();

    let mut attempts = Vec::new();
    let mut breaker = Vec::new();
    let mut failed_at = None;
    while failed_at.is_none() {
        let (at, seen) = tokio::time::timeout(Duration::from_secs(600), rx.recv()).await.unwrap().unwrap();
        let secs = (at - t0).as_secs_f64();
        match seen {
            Seen::Attempt(n) => attempts.push((n, secs)),
            Seen::Breaker(kind) => breaker.push((kind, secs)),
            Seen::State(ConnectionState::Failed) => failed_at = Some(secs),
            Seen::State(_) => {}
        }
    }
    let times: Vec<f64> = attempts.iter().map(|(_, t)| (t * 10.0).round() / 10.0).collect();
    // 1, 2, 4 s of backoff; the 4th failure opens the breaker for 30 s, each
    // failed half-open probe opens it again; the 8th failure gives up (7 retries).
    assert_eq!(times, [0.0, 1.0, 3.0, 7.0, 37.0, 67.0, 97.0, 127.0], "{attempts:?}");
    assert_eq!(attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    let kinds: Vec<(BreakerKind, f64)> = breaker.iter().map(|(k, t)| (*k, (t * 10.0).round() / 10.0)).collect();
    assert_eq!(
        kinds,
        [
            (BreakerKind::Open, 7.0),
            (BreakerKind::HalfOpen, 37.0),
            (BreakerKind::Open, 37.0),
            (BreakerKind::HalfOpen, 67.0),
            (BreakerKind::Open, 67.0),
            (BreakerKind::HalfOpen, 97.0),
            (BreakerKind::Open, 97.0),
            (BreakerKind::HalfOpen, 127.0),
            (BreakerKind::Open, 127.0),
        ]
    );
    assert_eq!(failed_at.map(|t| (t * 10.0).round() / 10.0), Some(127.0));
}

#[actix::test]
async fn a_failed_connection_is_revived_by_a_forced_reconnect() {
    let config = refused_config(1);
    let (listeners, mut rx) = recorded();
    let handle = ConnectionActor::start_supervised(config, listeners).unwrap();
    async fn next(rx: &mut mpsc::UnboundedReceiver<(Instant, Seen)>) -> Seen {
        tokio::time::timeout(Duration::from_secs(600), rx.recv()).await.unwrap().unwrap().1
    }
    // Two attempts (one retry), then Failed, and nothing more on its own.
    loop {
        if let Seen::State(ConnectionState::Failed) = next(&mut rx).await {
            break;
        }
    }
    handle.reconnect("the player pressed retry");
    let mut attempts = 0;
    loop {
        match next(&mut rx).await {
            Seen::Attempt(_) => attempts += 1,
            Seen::State(ConnectionState::Failed) => break,
            _ => {}
        }
    }
    assert_eq!(attempts, 2, "a revived connection tries again with its retry policy");
}
