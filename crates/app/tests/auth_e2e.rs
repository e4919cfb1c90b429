//! Authentication against the real server: identities kept across app
//! restarts, tokens minted with the server's own ES256 key that expire in
//! seconds and are refreshed in time, tokens the server refuses, and not one
//! token in any log line at trace level.
//!
//! Needs `SPACELINK_SERVER_DIR` (the test server's state directory, for its
//! signing key) besides the usual `SPACELINK_SERVER_URL` / `SPACELINK_DATABASE`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use actix::prelude::*;
use base64::Engine as _;
use common::tokens::{assert_not_logged, capture_logs, now_secs, Minter, MintingProvider};
use common::{collecting_listeners, config, Event};
use spacelink::auth::AuthListeners;
use spacelink::credentials::FileCredentialStore;
use spacelink::{AuthError, AuthEvent, Credentials, SpacelinkConfig};
use spacelink_auth::Token;
use tokio::sync::mpsc;

// ---- Auth events. ----

struct Tap(mpsc::UnboundedSender<AuthEvent>);

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<AuthEvent> for Tap {
    type Result = ();
    fn handle(&mut self, msg: AuthEvent, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

fn tap() -> (AuthListeners, mpsc::UnboundedReceiver<AuthEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (AuthListeners { events: vec![Tap(tx).start().recipient()] }, rx)
}

async fn next_auth_event(rx: &mut mpsc::UnboundedReceiver<AuthEvent>, secs: u64) -> AuthEvent {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv()).await.expect("an auth event in time").unwrap()
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn auth_a_new_player_keeps_their_identity_across_restarts() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");
    let start = || {
        let file = file.clone();
        async move {
            let (auth_listeners, rx) = tap();
            let mut c = SpacelinkConfig::new(config());
            c.credentials = Some(Arc::new(FileCredentialStore::new(&file)));
            c.auth_listeners = auth_listeners;
            let (listeners, events) = collecting_listeners();
            (common::build(c, listeners, Default::default()).await, events, rx)
        }
    };

    // A new player: no stored token, the server issues an identity.
    let (app, mut events, mut auth) = start().await;
    let AuthEvent::Authenticated { identity, new_identity } = next_auth_event(&mut auth, 15).await else {
        panic!("authenticated first")
    };
    assert!(new_identity);
    let status = app.auth().status().await.unwrap();
    assert!(status.is_authenticated);
    assert_eq!(status.identity, Some(identity));
    assert_eq!(status.store, "file");
    let token = status.token.unwrap();
    assert_eq!(events.identity().await.identity, identity);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    app.shutdown();
    drop(events);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The app restarts: the same identity, from storage.
    let (app, mut events, mut auth) = start().await;
    let AuthEvent::Authenticated { identity: again, new_identity } = next_auth_event(&mut auth, 15).await else {
        panic!("authenticated again")
    };
    assert!(!new_identity);
    assert_eq!(again, identity);
    assert_eq!(events.identity().await.identity, identity);
    assert!(app.auth().is_authenticated().await.unwrap());

    // Cleared credentials: the next authentication is a new player.
    app.auth().clear_credentials();
    assert!(matches!(next_auth_event(&mut auth, 5).await, AuthEvent::CredentialsCleared));
    let fresh = app.auth().authenticate(Credentials::New).await.unwrap();
    assert_ne!(fresh, identity);
    let newer = app.auth().token().await.unwrap().unwrap();
    app.shutdown();
    assert_not_logged(&[&token, &newer]);
}

#[actix::test]
#[ignore = "e2e: needs the test server and SPACELINK_SERVER_DIR (cargo xtask test)"]
async fn auth_an_expiring_token_is_refreshed_before_the_server_refuses_it() {
    capture_logs();
    let (minter, _) = Minter::new();
    let minter = Arc::new(minter);
    let first_exp = now_secs() + 5;
    let first = minter.mint(first_exp);
    let provider = Arc::new(MintingProvider::new(minter.clone(), 6));
    let (auth_listeners, mut auth) = tap();
    let mut c = SpacelinkConfig::new(config());
    c.connection.token = Some(first.expose().to_string());
    c.auth.refresh_margin = Duration::from_secs(3);
    c.auth.min_refresh_delay = Duration::from_millis(500);
    c.token_provider = Some(provider.clone());
    c.auth_listeners = auth_listeners;
    let (listeners, mut events) = collecting_listeners();
    let app = common::build(c, listeners, Default::default()).await;
    let AuthEvent::Authenticated { identity, new_identity: false } = next_auth_event(&mut auth, 15).await else {
        panic!("authenticated with the minted token")
    };
    let first_generation = events.connected().await;
    // The auth actor fails and is restarted before the refresh is due: the
    // refresh timer it re-arms must still fire.
    app.fail_child(spacelink::Child::Auth);
    let restarted = tokio::time::Instant::now() + Duration::from_secs(3);
    while app.restarts(spacelink::Child::Auth) == 0 {
        assert!(tokio::time::Instant::now() < restarted, "the auth actor restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Refreshed ahead of exp, with no reconnect: the one event the game sees.
    let AuthEvent::TokenRefreshed { identity: refreshed, expires_at } = next_auth_event(&mut auth, 10).await else {
        panic!("the token is refreshed")
    };
    assert_eq!(refreshed, identity);
    assert!(expires_at.unwrap() > UNIX_EPOCH + Duration::from_secs(now_secs()));
    // Past the first token's exp, the session is still the same one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(now_secs() > first_exp, "the first token has expired");
    let status = app.connection().status().await.unwrap();
    assert!(status.state.is_connected());
    assert_eq!(status.generation, first_generation, "no reconnect");
    while let Ok(event) = events_try(&mut events) {
        assert!(!matches!(event, Event::State(_)), "no state change during a refresh: {event:?}");
    }

    // The next session (the first token has expired) opens with the new token.
    app.connection().reconnect("test: a new session after the first token expired");
    let second = events.connected().await;
    assert!(second > first_generation);
    let session = events.identity().await;
    assert_eq!(session.identity, identity);
    let last = provider.minted.lock().unwrap().last().cloned().unwrap();
    assert_eq!(session.token, last, "the new session presented the refreshed token");
    while let Ok(event) = auth.try_recv() {
        assert!(matches!(event, AuthEvent::TokenRefreshed { .. }), "nothing but refreshes: {event:?}");
    }
    assert!(provider.asked.load(Ordering::SeqCst) >= 1);
    app.shutdown();
    let minted = provider.minted.lock().unwrap().clone();
    let mut all: Vec<&Token> = minted.iter().collect();
    all.push(&first);
    assert_not_logged(&all);
}

fn events_try(events: &mut common::Events) -> Result<Event, ()> {
    events.try_next().ok_or(())
}

#[actix::test]
#[ignore = "e2e: needs the test server and SPACELINK_SERVER_DIR (cargo xtask test)"]
async fn auth_a_rejected_token_is_reported_as_such() {
    capture_logs();
    let (minter, _) = Minter::new();
    // A token that expired an hour ago, properly signed: the server refuses it
    // (SpacetimeDB 1.3 allows 60 s of leeway past `exp`).
    let expired = minter.mint(now_secs() - 3600);
    let (auth_listeners, mut auth) = tap();
    let mut c = SpacelinkConfig::new(config());
    c.connection.token = Some(expired.expose().to_string());
    c.auth_listeners = auth_listeners;
    let (listeners, _events) = collecting_listeners();
    let app = common::build(c, listeners, Default::default()).await;
    let event = next_auth_event(&mut auth, 15).await;
    let AuthEvent::AuthenticationFailed { error } = event else { panic!("the expired token is refused: {event:?}") };
    let AuthError::Rejected { status, reason } = &error else { panic!("{error:?}") };
    assert_eq!(*status, 401, "{reason}");
    assert!(!app.auth().is_authenticated().await.unwrap());

    // A token with a forged signature: refused, and `authenticate` says so.
    let good = minter.mint(now_secs() + 600);
    let (head, _) = good.expose().rsplit_once('.').unwrap();
    let forged = Token::new(format!("{head}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64])));
    let result = app.auth().authenticate(Credentials::Given(forged.clone())).await;
    assert!(matches!(result, Err(AuthError::Rejected { status: 401, .. })), "{result:?}");
    // A good token is accepted after that.
    let identity = app.auth().authenticate(Credentials::Given(good.clone())).await.unwrap();
    assert_eq!(Some(identity), app.auth().identity().await.unwrap());
    app.shutdown();

    // No server at all: unreachable, not refused.
    let mut c = SpacelinkConfig::new(spacelink::ConnectionConfig::new("http://127.0.0.1:9", "guildmaster"));
    let (auth_listeners, mut auth) = tap();
    c.auth_listeners = auth_listeners;
    let app = common::build(c, Default::default(), Default::default()).await;
    let result = app.auth().authenticate(Credentials::New).await;
    assert!(matches!(result, Err(AuthError::Unreachable(_))), "{result:?}");
    assert!(auth.try_recv().is_err(), "a network failure is no authentication failure");
    app.shutdown();
    assert_not_logged(&[&expired, &good, &forged]);
}
