//! End-to-end tests of the game's API against the real server: the builder,
//! `frame_tick` on the game's own thread, typed tables and their callbacks.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::guildmaster::*;
use common::*;
use spacelink::connection::lib::Identity;
use spacelink::reducers::Outcome;
use spacelink::sync::SubscriptionEvent;
use spacelink::{Client, ConnectionState, Event, RowEventKind};

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_game_thread_builds_a_client_ticks_and_sees_its_rows_through_typed_callbacks() {
    let (url, db) = server();
    let connected = Arc::new(Mutex::new(None));
    let seen = connected.clone();
    let mut client = Client::builder()
        .with_uri(url)
        .with_database(db)
        .subscribe(&["SELECT * FROM player"])
        .on_connect(move |identity, _token| *seen.lock().unwrap() = Some(identity))
        .build()
        .unwrap();
    let players = client.table::<Player>("player");
    let inserted = Arc::new(AtomicUsize::new(0));
    let count = inserted.clone();
    let name = format!("api-{}", std::process::id());
    let wanted = name.clone();
    players.on_insert(move |_ctx, p| {
        if p.name == wanted {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut applied = false;
    tick_until(&mut client, 15, "the initial subscription applied", |_, events| {
        applied |= events.iter().any(|e| matches!(e, Event::Subscription(SubscriptionEvent::Applied { .. })));
        applied
    });
    let identity = tick_identity(&mut client, &connected);

    // A reducer call returns at once; its result comes in a tick, both to
    // its callback and as an event.
    let call = client.reducers().call("join", &JoinArgs { name: name.clone(), map_id: 1 });
    let ticket = call.ticket();
    let answered = Arc::new(Mutex::new(None));
    let answer = answered.clone();
    call.on_result(move |result| *answer.lock().unwrap() = Some(result.clone()));
    let mut event = None;
    tick_until(&mut client, 15, "the join's result and our player's insert", |_, events| {
        for e in events {
            if let Event::ReducerResult { ticket: t, reducer, result } = e {
                assert_eq!(*t, ticket);
                assert_eq!(&**reducer, "join");
                assert!(event.replace(result.clone()).is_none(), "one result event per call");
            }
        }
        event.is_some() && answered.lock().unwrap().is_some() && inserted.load(Ordering::Relaxed) == 1
    });
    let result = answered.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(result.outcome, Outcome::Committed);
    assert_eq!(event.unwrap().unwrap().call_id, result.call_id);

    // Polled instead: a refused call (before it is sent) answers the same way.
    let mut refused = client.reducers().call("no_such_reducer", &JoinArgs { name: "x".into(), map_id: 1 });
    tick_until(&mut client, 15, "the refused call's result", |_, _| match refused.try_result() {
        Some(result) => {
            assert!(matches!(result, Err(spacelink::ReducerError::UnknownReducer(_))), "{result:?}");
            true
        }
        None => false,
    });
    let mine = players.find("identity", &identity).expect("found by its primary key");
    assert_eq!(mine.name, name);
    assert_eq!(players.find("name", &name).as_ref(), Some(&mine), "found by another column");
    assert!(players.find("no_such_column", &name).is_none());
    assert!(players.iter().any(|p| p.identity == identity));
    assert_eq!(players.count(), client.sync().expect("the schema is known").cache().count("player"));
    assert_eq!(inserted.load(Ordering::Relaxed), 1, "one insert event for one new row");
    client.shutdown();
}

fn tick_identity(client: &mut Client, connected: &Arc<Mutex<Option<Identity>>>) -> Identity {
    tick_until(client, 15, "identity", |_, _| connected.lock().unwrap().is_some());
    connected.lock().unwrap().unwrap()
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_build_async_inside_actix_delivers_state_and_identity_events_in_order() {
    let (url, db) = server();
    let mut client = Client::builder().with_uri(url).with_database(db).build_async().await.unwrap();
    let mut states = Vec::new();
    let mut identity = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while identity.is_none() {
        for event in client.frame_tick() {
            match event {
                Event::StateChanged { to, .. } => states.push(*to),
                Event::Connected { identity: id, .. } => identity = Some(*id),
                Event::Row(row) => assert_ne!(row.kind, RowEventKind::Delete, "nothing subscribed, nothing deleted"),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "no identity");
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    assert_eq!(states.last(), Some(&ConnectionState::Connected), "{states:?}");
    assert_eq!(client.connection().status().await.unwrap().identity, identity);
    client.shutdown();
}

#[test]
fn a_builder_without_a_server_or_database_is_a_typed_config_error() {
    let err = Client::builder().with_database("guildmaster").build().unwrap_err();
    assert!(matches!(err, spacelink::ClientError::Config(ref e) if e.field == "server_url"), "{err}");
    let err = Client::builder().with_uri("http://127.0.0.1:9").build().unwrap_err();
    assert!(matches!(err, spacelink::ClientError::Config(ref e) if e.field == "database"), "{err}");
}
