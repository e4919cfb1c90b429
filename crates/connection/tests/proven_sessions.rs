//! A session counts as a success only once it has proven itself, on tokio's
//! paused clock against a real (hostile) WebSocket server on loopback.
//!
//! The server runs on its own thread on the real clock. The test's clock is
//! paused and does not advance by itself (a blocking task held for the whole
//! test inhibits tokio's auto-advance, which would otherwise jump to the next
//! timer whenever the runtime waits for the socket): the test moves time
//! itself with `tokio::time::advance`, by exactly the delays the actor asked for.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix::prelude::*;
use spacelink_connection::hostile::{identity_frame, After, Case, HostileServer};
use spacelink_connection::{
    BreakerKind, CircuitBreakerConfig, ConnectionActor, ConnectionConfig, ConnectionState, IdentityReceived, Listeners,
    ResilienceEvent, RetryPolicy, StateChanged,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug)]
enum Seen {
    State(StateChanged),
    Resilience(ResilienceEvent),
    Identity,
}

struct Recorder(mpsc::UnboundedSender<Seen>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<ResilienceEvent> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: ResilienceEvent, _: &mut Self::Context) {
        let _ = self.0.send(Seen::Resilience(msg));
    }
}

impl Handler<StateChanged> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        let _ = self.0.send(Seen::State(msg));
    }
}

impl Handler<IdentityReceived> for Recorder {
    type Result = ();
    fn handle(&mut self, _: IdentityReceived, _: &mut Self::Context) {
        let _ = self.0.send(Seen::Identity);
    }
}

/// Holds tokio's paused clock still while it lives (see the module doc).
struct Frozen(std::sync::mpsc::Sender<()>);

impl Frozen {
    fn clock() -> Self {
        tokio::time::pause();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        Self(tx)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// 1 s doubling to 16 s, no jitter, a breaker that opens after 4 failures for
/// 60 s; heartbeats so rare that none falls in the test.
fn config(server: &HostileServer) -> ConnectionConfig {
    let mut config = ConnectionConfig::new(server.url(), "hostile");
    config.retry = RetryPolicy {
        max_attempts: 100,
        initial_delay: Duration::from_secs(1),
        backoff_multiplier: 2.0,
        max_delay: Duration::from_secs(16),
        jitter: 0.0,
    };
    config.breaker =
        CircuitBreakerConfig { failure_threshold: 4, open_duration: Duration::from_secs(60), half_open_max_calls: 1 };
    config.heartbeat_interval = Duration::from_secs(3600);
    config.dead_peer_timeout = Duration::from_secs(7200);
    config.connect_timeout = Duration::from_secs(3600);
    config.identity_timeout = Duration::from_secs(5);
    config.proven_after = Duration::from_secs(10);
    config
}

fn start(config: ConnectionConfig) -> (spacelink_connection::ConnectionHandle, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = Recorder(tx).start();
    let listeners = Listeners {
        states: vec![recorder.clone().recipient()],
        resilience: vec![recorder.clone().recipient()],
        identities: vec![recorder.recipient()],
        ..Default::default()
    };
    (ConnectionActor::start_supervised(config, listeners).unwrap(), rx)
}

/// Moves the frozen clock on by `delay` and a millisecond (tokio rounds a
/// timer's deadline up to its millisecond), once the actor had the chance to
/// restart and arm the timer of its next attempt.
async fn advance(delay: Duration) {
    // Real time passes (the runtime keeps running the actors), virtual time does not.
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50))).await.unwrap();
    tokio::time::advance(delay + Duration::from_millis(1)).await;
}

/// The next event that `pick` takes (the clock is frozen: this waits on the real socket only).
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<Seen>, mut pick: impl FnMut(&Seen) -> Option<T>) -> T {
    loop {
        let seen = rx.recv().await.expect("the recorder is gone");
        if let Some(t) = pick(&seen) {
            return t;
        }
    }
}

/// The next state change to `to`.
async fn state(rx: &mut mpsc::UnboundedReceiver<Seen>, to: ConnectionState) -> StateChanged {
    next(rx, |s| match s {
        Seen::State(change) if change.to == to => Some(change.clone()),
        _ => None,
    })
    .await
}

#[actix::test]
async fn a_server_that_accepts_and_fails_is_backed_off_and_trips_the_breaker() {
    let _frozen = Frozen::clock();
    // Every session gets its identity, then is closed at once: never proven.
    let server = HostileServer::start(Case::Frames {
        frames: vec![Message::Binary(identity_frame().into())],
        then: After::Close(1011, "accept and fail".into()),
    })
    .unwrap();
    let (handle, mut rx) = start(config(&server));
    let mut delays = Vec::new();
    let mut breaker = Vec::new();
    while delays.len() < 7 {
        let change = next(&mut rx, |s| match s {
            Seen::State(c) if c.to == ConnectionState::Reconnecting => Some(Some(c.clone())),
            Seen::Resilience(ResilienceEvent::BreakerChanged { to, .. }) => {
                breaker.push(*to);
                None
            }
            Seen::Resilience(ResilienceEvent::SessionProven { .. }) => Some(None),
            _ => None,
        })
        .await
        .expect("a session that is closed at once must never prove itself");
        let reason = change.reason.unwrap_or_default();
        assert!(reason.contains("before it proved itself") && reason.contains("1011"), "{reason}");
        let delay = change.retry_in.unwrap();
        delays.push(delay.as_secs());
        advance(delay).await;
    }
    // 1, 2, 4 s of backoff; the 4th failure opens the breaker for 60 s, and
    // each failed half-open probe opens it again.
    assert_eq!(delays, [1, 2, 4, 60, 60, 60, 60]);
    assert_eq!(breaker[0], BreakerKind::Open);
    let status = handle.status().await.unwrap();
    assert!(status.failed_attempts >= 7, "{status:?}");
    assert!(status.breaker_trips >= 4, "{status:?}");
    assert_eq!(server.upgrades(), 7);
    handle.shutdown();
}

#[actix::test]
async fn a_first_connection_that_never_proves_itself_gives_up() {
    let _frozen = Frozen::clock();
    let server =
        HostileServer::start(Case::Frames { frames: Vec::new(), then: After::Close(4999, "no".into()) }).unwrap();
    let mut config = config(&server);
    config.retry.max_attempts = 2;
    config.breaker.failure_threshold = 100;
    let (handle, mut rx) = start(config);
    let failed = loop {
        match next(&mut rx, |s| match s {
            Seen::State(c) if matches!(c.to, ConnectionState::Reconnecting | ConnectionState::Failed) => {
                Some(c.clone())
            }
            _ => None,
        })
        .await
        {
            c if c.to == ConnectionState::Failed => break c,
            // The loss that makes it give up has no retry: Failed follows.
            c => {
                if let Some(delay) = c.retry_in {
                    advance(delay).await;
                }
            }
        }
    };
    let reason = failed.reason.unwrap();
    assert!(reason.contains("gave up after 3 attempts") && reason.contains("4999"), "{reason}");
    assert_eq!(server.upgrades(), 3);
    handle.shutdown();
}

#[actix::test]
async fn a_silent_server_fails_the_attempt_when_no_identity_arrives_in_time() {
    let _frozen = Frozen::clock();
    let server = HostileServer::start(Case::Frames { frames: Vec::new(), then: After::Hold }).unwrap();
    let (handle, mut rx) = start(config(&server));
    for expected_delay in [1, 2, 4] {
        state(&mut rx, ConnectionState::Connected).await;
        // Connected, but silent: nothing happens until the identity timeout.
        advance(Duration::from_millis(4998)).await;
        assert_eq!(handle.status().await.unwrap().state, ConnectionState::Connected);
        advance(Duration::from_millis(1)).await;
        let lost = state(&mut rx, ConnectionState::Reconnecting).await;
        let reason = lost.reason.unwrap();
        assert!(reason.contains("no IdentityToken within 5s"), "{reason}");
        assert_eq!(lost.retry_in, Some(Duration::from_secs(expected_delay)), "the backoff grows");
        advance(lost.retry_in.unwrap()).await;
    }
    handle.shutdown();
}

#[actix::test]
async fn a_session_that_stays_healthy_long_enough_resets_the_backoff() {
    let _frozen = Frozen::clock();
    // First two sessions fail at once (never proven), then the server behaves.
    let server =
        HostileServer::start(Case::Frames { frames: Vec::new(), then: After::Close(1011, "down".into()) }).unwrap();
    let (handle, mut rx) = start(config(&server));
    for expected in [1, 2] {
        let lost = state(&mut rx, ConnectionState::Reconnecting).await;
        assert_eq!(lost.retry_in, Some(Duration::from_secs(expected)));
        if expected == 2 {
            server.set_case(Case::Frames { frames: vec![Message::Binary(identity_frame().into())], then: After::Hold });
        }
        advance(lost.retry_in.unwrap()).await;
    }
    state(&mut rx, ConnectionState::Connected).await;
    next(&mut rx, |s| matches!(s, Seen::Identity).then_some(())).await;
    // Not yet proven: a loss now would still count as a third failure.
    advance(Duration::from_millis(9998)).await;
    assert_eq!(handle.status().await.unwrap().failed_attempts, 2);
    advance(Duration::from_millis(1)).await;
    next(&mut rx, |s| matches!(s, Seen::Resilience(ResilienceEvent::SessionProven { .. })).then_some(())).await;
    let status = handle.status().await.unwrap();
    assert_eq!(status.failed_attempts, 0, "{status:?}");
    assert_eq!(status.breaker, BreakerKind::Closed);
    // A proven session's loss starts the backoff from the beginning again.
    server.set_case(Case::Frames { frames: Vec::new(), then: After::Close(1011, "down".into()) });
    server.cut_all();
    let lost = state(&mut rx, ConnectionState::Reconnecting).await;
    assert_eq!(lost.retry_in, Some(Duration::from_secs(1)), "{lost:?}");
    assert!(!lost.reason.unwrap_or_default().contains("before it proved itself"));
    handle.shutdown();
}

#[actix::test]
async fn a_retargeted_connection_starts_afresh_on_the_new_server() {
    let _frozen = Frozen::clock();
    // The old target accepts and fails until its breaker is open for a minute.
    let old = HostileServer::start(Case::Frames {
        frames: vec![Message::Binary(identity_frame().into())],
        then: After::Close(1011, "accept and fail".into()),
    })
    .unwrap();
    let new = HostileServer::start(Case::Frames {
        frames: vec![Message::Binary(identity_frame().into())],
        then: After::Hold,
    })
    .unwrap();
    let (handle, mut rx) = start(config(&old));
    let mut losses = 0;
    while losses < 4 {
        let change = state(&mut rx, ConnectionState::Reconnecting).await;
        losses += 1;
        if losses < 4 {
            advance(change.retry_in.unwrap()).await;
        }
    }
    let before = handle.status().await.unwrap();
    assert_eq!(before.breaker, BreakerKind::Open, "{before:?}");

    // An invalid target changes nothing.
    let mut bad = config(&new);
    bad.database.clear();
    assert!(handle.retarget(bad).await.is_err());
    assert_eq!(handle.status().await.unwrap().generation, before.generation);

    // The switch does not wait out the old target's breaker: the new server is tried at once.
    handle.retarget(config(&new)).await.unwrap();
    let up = state(&mut rx, ConnectionState::Connected).await;
    assert!(up.generation > before.generation);
    next(&mut rx, |s| matches!(s, Seen::Identity).then_some(())).await;
    advance(Duration::from_secs(10)).await;
    let proven = next(&mut rx, |s| match s {
        Seen::Resilience(ResilienceEvent::SessionProven { generation }) => Some(*generation),
        _ => None,
    })
    .await;
    assert_eq!(proven, up.generation);
    let after = handle.status().await.unwrap();
    assert_eq!((after.breaker, after.failed_attempts, after.breaker_trips), (BreakerKind::Closed, 0, 0), "{after:?}");
    assert_eq!(new.upgrades(), 1);
    assert_eq!(old.upgrades(), 4, "nothing more went to the old target");
    handle.shutdown();
}
