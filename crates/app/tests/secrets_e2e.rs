//! Secrets: a token appears only on the connection and in secure storage.
//!
//! One whole session against the real server, through the fault proxy, with
//! every log line of the process captured at trace level (spans, their fields,
//! their opening and closing): fetch the schema over HTTP and connect with a
//! short-lived token minted with the server's own key, subscribe, call a
//! reducer, run a one-off query, have the token refreshed, lose the connection
//! and reconnect with the refreshed token.
//! Along the way every event the game saw, the client's status, its config,
//! every error provoked and a panic message of a credential are formatted.
//! Neither a token nor any of its parts (header, payload, signature, the
//! signature's first 16 characters) may appear in any of that text.
//!
//! Needs `SPACELINK_SERVER_DIR` (the test server's state directory, for its
//! signing key) besides the usual `SPACELINK_SERVER_URL` / `SPACELINK_DATABASE`.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::proxy::FaultProxy;
use common::tokens::{capture_logs, logs, now_secs, secret_pieces, Minter, MintingProvider};
use common::Event as Told;
use spacelink::credentials::FileCredentialStore;
use spacelink::status::SubscriptionState;
use spacelink::{AuthError, AuthEvent, Client, Credentials, Event, ReducerError, SpacelinkConfig};
use spacelink_auth::Token;

/// Every formatted value of the test (`Debug` and `Display`), to be searched for tokens.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<String>>);

impl Seen {
    fn debug(&self, value: &dyn Debug) {
        let mut text = self.0.lock().unwrap();
        text.push_str(&format!("{value:?}\n{value:#?}\n"));
    }

    fn text(&self, text: &str) {
        self.0.lock().unwrap().push_str(text);
        self.0.lock().unwrap().push('\n');
    }

    fn all(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// One frame of the game's client, formatting every event.
async fn frame(app: &mut Client, seen: &Seen) {
    for event in app.frame_tick() {
        seen.debug(event);
    }
    tokio::time::sleep(Duration::from_millis(16)).await;
}

/// Ticks the game's client until `done` says so of one of its events, formatting every event.
async fn tick_until(app: &mut Client, seen: &Seen, secs: u64, what: &str, mut done: impl FnMut(&Event) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut found = false;
        for event in app.frame_tick() {
            seen.debug(event);
            found |= done(event);
        }
        if found {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
}

/// Waits for what the connection told (formatting all it told) until `f` maps an event to `Some`.
async fn told<T>(events: &mut common::Events, seen: &Seen, what: &str, mut f: impl FnMut(&Told) -> Option<T>) -> T {
    events
        .wait_for(20, what, |e| {
            seen.debug(e);
            f(e)
        })
        .await
}

/// Panics as a game's `unwrap`/`expect` would, with a credential, an auth
/// error and a token in the message; the messages go to `seen`.
#[allow(clippy::unnecessary_literal_unwrap)] // the literal unwraps are the point: their panic messages
fn panic_messages(seen: &Seen, token: &Token, error: &AuthError) {
    let hook = std::panic::take_hook();
    let panicked = seen.clone();
    std::panic::set_hook(Box::new(move |info| panicked.text(&info.to_string())));
    let credentials = Credentials::Given(token.clone());
    assert!(std::panic::catch_unwind(|| Ok::<_, ()>(credentials).unwrap_err()).is_err());
    let error = error.clone();
    assert!(std::panic::catch_unwind(|| Err::<(), _>(error).unwrap()).is_err());
    let token = Some(token.clone());
    assert!(std::panic::catch_unwind(|| assert!(token.is_none(), "{token:?} {}", token.as_ref().unwrap())).is_err());
    std::panic::set_hook(hook);
    assert!(seen.all().contains("on an `Ok` value: Given("), "the panic messages were captured");
}

#[actix::test]
#[ignore = "e2e: needs the test server and SPACELINK_SERVER_DIR (cargo xtask test)"]
async fn secrets_no_token_in_any_log_line_error_debug_output_config_dump_or_panic_message_of_a_whole_session() {
    capture_logs();
    let seen = Seen::default();
    let (minter, issued) = Minter::new();
    let minter = Arc::new(minter);
    let first = minter.mint(now_secs() + 5);
    let provider = Arc::new(MintingProvider::new(minter.clone(), 8));
    let proxy = FaultProxy::start(common::upstream()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");

    // The game's config: a token given, a provider for the next ones, secure storage.
    let mut connection = common::config();
    connection.server_url = proxy.url();
    connection.token = Some(first.expose().to_string());
    let mut config = SpacelinkConfig::new(connection);
    config.credentials = Some(Arc::new(FileCredentialStore::new(&file)));
    config.token_provider = Some(provider.clone());
    config.auth.refresh_margin = Duration::from_secs(3);
    config.auth.min_refresh_delay = Duration::from_millis(500);
    seen.debug(&config);
    let (listeners, mut events) = common::collecting_listeners();
    // The client fetches the schema itself, presenting the token over HTTP.
    let mut app = common::connect(config.clone(), listeners, Default::default(), Default::default()).await.unwrap();
    let on_connect = seen.clone();
    app.on_connect(move |identity, token| on_connect.text(&format!("{identity} {token} {token:?}")));

    // Connect.
    tick_until(&mut app, &seen, 20, "authenticated", |e| matches!(e, Event::Auth(AuthEvent::Authenticated { .. })))
        .await;
    let first_generation = told(&mut events, &seen, "Connected", |e| match e {
        Told::State(s) if s.to.is_connected() => Some(s.generation),
        _ => None,
    })
    .await;
    seen.debug(&app.status());
    seen.debug(&app.auth().status().await.unwrap());
    seen.debug(&app.connection().status().await.unwrap());

    // Subscribe, call, query.
    let subscription = app.subscribe(&["SELECT * FROM map"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.status().subscriptions.get(&subscription) != Some(&SubscriptionState::Applied) {
        assert!(tokio::time::Instant::now() < deadline, "the subscription applied");
        frame(&mut app, &seen).await;
    }
    let result = app.reducers().call_bsatn("insert_sample", Bytes::copy_from_slice(&91_101u32.to_le_bytes())).await;
    seen.debug(&result);
    assert!(result.is_ok(), "{result:?}");
    let rows = app.query("SELECT * FROM map").await;
    seen.debug(&rows);
    assert!(rows.unwrap().count("map") > 0);

    // The token is refreshed ahead of its expiry, then the connection is cut:
    // the next session presents the refreshed token.
    tick_until(&mut app, &seen, 20, "the token refreshed", |e| {
        matches!(e, Event::Auth(AuthEvent::TokenRefreshed { .. }))
    })
    .await;
    proxy.cut_all();
    let session = told(&mut events, &seen, "a new session's identity", |e| match e {
        Told::Identity(i) if i.generation > first_generation => Some(i.clone()),
        _ => None,
    })
    .await;
    // (A later refresh may have come meanwhile: any token the provider minted.)
    assert!(provider.minted.lock().unwrap().contains(&session.token), "the new session presented a refreshed token");
    let refreshed = session.token.clone();
    tick_until(&mut app, &seen, 20, "connected again", |e| matches!(e, Event::Connected { .. })).await;
    seen.debug(&app.status());
    seen.debug(&app.auth().status().await.unwrap());
    seen.debug(&app.connection().status().await.unwrap());

    // Every error the game can provoke, in Debug and Display.
    let mut errors: Vec<Box<dyn std::error::Error>> = Vec::new();
    errors
        .push(Box::new(app.reducers().call_bsatn("insert_sample", Bytes::from(vec![0u8; 70_000])).await.unwrap_err()));
    errors.push(Box::new(app.reducers().call_bsatn("no_such_reducer", Bytes::new()).await.unwrap_err()));
    errors.push(Box::new(app.reducers().call_bsatn("insert_sample", Bytes::from_static(&[1])).await.unwrap_err()));
    errors.push(Box::new(
        app.reducers().call_bsatn("always_fail", Bytes::from_static(&[1, 0, 0, 0, b'x'])).await.unwrap_err(),
    ));
    errors.push(Box::new(app.query("SELECT * FROM no_such_table").await.unwrap_err()));
    let refused = app.subscribe(&["SELECT * FROM no_such_table"]);
    let head = refreshed.expose().rsplit_once('.').unwrap().0.to_string();
    let forged = Token::new(format!("{head}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64])));
    let rejected = app.auth().authenticate(Credentials::Given(forged.clone())).await.unwrap_err();
    assert!(matches!(rejected, AuthError::Rejected { status: 401, .. }), "{rejected:?}");
    errors.push(Box::new(rejected.clone()));
    let settings = spacelink::settings::SettingsLoader::new()
        .env_prefix(None)
        .set("connection.token", first.expose())
        .load()
        .and_then(|s| s.validate().map(|()| s));
    seen.debug(&settings.as_ref().err());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !matches!(app.status().subscriptions.get(&refused), Some(SubscriptionState::Failed { retrying: false, .. })) {
        assert!(tokio::time::Instant::now() < deadline, "the bad subscription refused");
        frame(&mut app, &seen).await;
    }
    seen.debug(&app.status());

    panic_messages(&seen, &refreshed, &rejected);

    // The end: calls after shutdown, and everything left to tell.
    app.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    errors.push(Box::new(app.reducers().call_bsatn("insert_sample", Bytes::new()).await.unwrap_err()));
    errors.push(Box::new(app.query("SELECT * FROM map").await.unwrap_err()));
    for error in &errors {
        seen.debug(error);
        seen.text(&error.to_string());
    }
    assert!(errors.iter().any(|e| e.downcast_ref::<ReducerError>().is_some()));
    for event in app.frame_tick() {
        seen.debug(event);
    }
    while let Some(event) = events.try_next() {
        seen.debug(&event);
    }
    seen.debug(&app.status());
    seen.debug(&config);
    proxy.stop();

    // Secure storage holds the token: the one place besides the connection.
    let stored = std::fs::read_to_string(&file).unwrap();
    let mut tokens: Vec<Token> = provider.minted.lock().unwrap().clone();
    assert!(tokens.len() >= 2, "refreshed more than once: {}", tokens.len());
    assert!(tokens.iter().chain([&first]).any(|t| stored.contains(t.expose())), "the credential store keeps a token");
    tokens.extend([first, forged, issued]);

    let logs = logs();
    let text = seen.all();
    assert!(logs.lines().count() > 200, "the capture works: {} lines", logs.lines().count());
    assert!(logs.contains("TRACE") && logs.contains(" new") && logs.contains(" close"), "trace level, spans too");
    assert!(text.contains("Connected {") && text.contains("TokenRefreshed"), "the game's events were formatted");
    for token in &tokens {
        for piece in secret_pieces(token) {
            assert!(!logs.contains(&piece), "a token's piece ({} chars) is in a log line", piece.len());
            assert!(!text.contains(&piece), "a token's piece ({} chars) is in a formatted value", piece.len());
        }
    }
}
