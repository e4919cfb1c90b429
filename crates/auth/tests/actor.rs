//! The auth actor moving messages between a fake connection and a fake token
//! provider: a refused token makes it ask the provider once and reconnect with
//! the new token; the session's identity authenticates it and the game hears.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use base64::Engine as _;
use spacelink_auth::{
    AuthActor, AuthConfig, AuthEvent, AuthHandle, AuthListeners, AuthSetup, CredentialKey, FallbackStore, MemoryStore,
    RefreshReason, Token, TokenFuture, TokenProvider, TokenRequest,
};
use spacelink_connection::lib::{ConnectionId, Identity};
use spacelink_connection::{IdentityReceived, ReplaceToken, ResilienceEvent};

fn token(sub: &str) -> Token {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({"iss": "localhost", "sub": sub, "exp": null});
    Token::new(format!("{}.{}.c2ln", e.encode(br#"{"alg":"ES256"}"#), e.encode(claims.to_string())))
}

/// What the connection was told: the token and whether to reconnect.
type Replaced = Arc<Mutex<Vec<(Option<Token>, bool)>>>;

/// Stands in for the connection (records `ReplaceToken`) and the game (records events).
#[derive(Default)]
struct Fake {
    replaced: Replaced,
    events: Arc<Mutex<Vec<AuthEvent>>>,
}

impl Actor for Fake {
    type Context = Context<Self>;
}

impl Handler<ReplaceToken> for Fake {
    type Result = ();
    fn handle(&mut self, msg: ReplaceToken, _: &mut Self::Context) {
        self.replaced.lock().unwrap().push((msg.token, msg.reconnect));
    }
}

impl Handler<AuthEvent> for Fake {
    type Result = ();
    fn handle(&mut self, msg: AuthEvent, _: &mut Self::Context) {
        self.events.lock().unwrap().push(msg);
    }
}

/// Hands out a `fresh` token, counting the requests and their reasons.
#[derive(Debug, Default)]
struct Provider {
    asked: AtomicUsize,
    reasons: Mutex<Vec<RefreshReason>>,
}

impl TokenProvider for Provider {
    fn new_token(&self, request: TokenRequest) -> TokenFuture {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.reasons.lock().unwrap().push(request.reason);
        Box::pin(async { Ok(token("fresh")) })
    }
}

fn refused(generation: u64) -> ResilienceEvent {
    ResilienceEvent::HandshakeRefused { generation, status: 401, reason: "expired".into() }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[actix::test]
async fn a_refused_token_is_replaced_once_and_the_new_session_authenticates() {
    let fake = Fake::default();
    let (replaced, events) = (fake.replaced.clone(), fake.events.clone());
    let fake = fake.start();
    let provider = Arc::new(Provider::default());
    let setup = AuthSetup {
        config: AuthConfig::default(),
        key: CredentialKey::new("http://127.0.0.1:3000", "db"),
        store: FallbackStore::new(Arc::new(MemoryStore::default())),
        provider: Some(provider.clone()),
        connection: fake.clone().recipient(),
        listeners: AuthListeners { events: vec![fake.recipient()] },
    };
    let addr = AuthActor::new(setup, Some(token("stale"))).start();
    let auth = AuthHandle::new(addr.clone());

    addr.do_send(refused(1));
    settle().await;
    assert_eq!(*replaced.lock().unwrap(), vec![(Some(token("fresh")), true)], "the new token, with a reconnect");
    assert_eq!(*provider.reasons.lock().unwrap(), vec![RefreshReason::Rejected]);
    assert_eq!(auth.token().await.unwrap(), Some(token("fresh")));
    assert!(!auth.is_authenticated().await.unwrap());

    addr.do_send(refused(2));
    settle().await;
    assert_eq!(provider.asked.load(Ordering::SeqCst), 1, "asked once per rejection streak");

    let me = Identity::from_claims("localhost", "fresh");
    addr.do_send(IdentityReceived {
        generation: 3,
        identity: me,
        connection_id: ConnectionId::ZERO,
        token: token("fresh"),
    });
    settle().await;
    assert!(auth.is_authenticated().await.unwrap());
    assert_eq!(auth.identity().await.unwrap(), Some(me));
    let events = events.lock().unwrap();
    let authenticated =
        |e: &AuthEvent| matches!(e, AuthEvent::Authenticated { identity, new_identity: false } if *identity == me);
    assert!(events.iter().any(authenticated), "{events:?}");
}
