//! A game embeds spacelink the way an engine's main loop would, against the
//! real server: a plain thread with no executor in the game's code builds the
//! client while the server cannot be reached (the fault proxy refuses), keeps
//! its frames going, connects once the server can be reached, subscribes from
//! the frame loop, reads its identity and status without waiting, hears a row's
//! cause, sees a failed reducer as an error, removes a callback mid-run, and
//! tells its own shutdown from a lost connection. Also: a reducer's result
//! always comes after its transaction's rows (its callback reads the new row),
//! and a subscription cancelled while pending never applies.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::guildmaster::*;
use common::proxy::FaultProxy;
use common::*;
use spacelink::connection::lib::Identity;
use spacelink::sync::{Cause, SubscriptionEvent};
use spacelink::{
    Client, ClientBuilder, Disconnect, Event, ReducerError, SchemaStatus, SpacelinkConfig, SubscriptionState,
};

fn frame() {
    std::thread::sleep(Duration::from_millis(16));
}

/// A client of the test server (or of `url`) on the bindings' embedded schema
/// (no fetch), `more` applied to its builder, ticked until it is connected and
/// every subscription it made is applied.
fn started(url: Option<String>, more: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Client {
    let mut connection = config();
    if let Some(url) = url {
        connection.server_url = url;
    }
    let mut settings = SpacelinkConfig::new(connection);
    settings.schema = Some(common::guildmaster::schema());
    let mut client = more(Client::builder().with_config(settings)).build().unwrap();
    tick_until(&mut client, 15, "connected and subscribed", |c, _| {
        c.is_active() && c.status().subscriptions.values().all(|s| *s == SubscriptionState::Applied)
    });
    client
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_plain_game_loop_embeds_the_client_from_a_server_that_is_down_to_a_requested_shutdown() {
    // The proxy runs on a runtime of the test's; the game's loop has none.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, connection) = rt.block_on(common::proxied());
    proxy.set_refuse(true);
    let settings = SpacelinkConfig::new(connection);

    // Built while the server cannot be reached: it returns at once.
    let began = Instant::now();
    let mut client = Client::builder().with_config(settings).build().unwrap();
    assert!(began.elapsed() < Duration::from_millis(500), "build took {:?}", began.elapsed());
    let players = client.table::<Player>("player");
    assert_eq!(players.count(), 0, "an empty table before the schema is known");
    assert!(!client.is_active());

    // Frames go on while nothing answers; the schema fetch's failures are told.
    let mut fetch_failures = 0;
    for _ in 0..60 {
        for event in client.frame_tick() {
            if let Event::Schema(spacelink::SchemaEvent::FetchFailed { .. }) = event {
                fetch_failures += 1;
            }
        }
        frame();
    }
    assert!(fetch_failures >= 1, "the refused schema fetch was told");
    assert!(matches!(client.status().schema, SchemaStatus::Retrying { .. }), "{:?}", client.status().schema);
    assert!(client.try_identity().is_none());

    // The server can be reached again: the client connects by itself.
    proxy.set_refuse(false);
    let connected: Arc<Mutex<Option<(Identity, bool)>>> = Arc::default();
    let seen = connected.clone();
    client.on_connect(move |identity, token| {
        *seen.lock().unwrap() = Some((identity, !token.expose().is_empty()));
    });
    tick_until(&mut client, 30, "connected, with the schema", |c, _| {
        c.is_active() && c.status().schema == SchemaStatus::Ready
    });
    let me = client.try_identity().unwrap();
    tick_until(&mut client, 5, "on_connect", |_, _| connected.lock().unwrap().is_some());
    assert_eq!(*connected.lock().unwrap(), Some((me, true)), "on_connect hands the identity and a token");
    let status = client.status();
    assert_eq!(status.identity, Some(me));
    assert!(status.token.is_some() && !format!("{status:?}").contains(status.token.as_ref().unwrap().expose()));

    // Subscribe from the frame loop: the id at once, the outcome as an event and in the status.
    let id = client.subscribe(&["SELECT * FROM player"]);
    assert_eq!(client.status().subscriptions.get(&id), Some(&SubscriptionState::Pending));
    tick_until(&mut client, 10, "the subscription applied", |_, events| {
        events.iter().any(|e| matches!(e, Event::Subscription(SubscriptionEvent::Applied { id: i }) if *i == id))
    });
    assert_eq!(client.status().subscriptions.get(&id), Some(&SubscriptionState::Applied));

    // A row event says what caused it; a callback can be removed.
    let causes: Arc<Mutex<Vec<(String, Option<Identity>)>>> = Arc::default();
    let heard = causes.clone();
    let inserted = players.on_insert(move |ctx, p| {
        if let Cause::Reducer(r) = ctx.cause() {
            heard.lock().unwrap().push((r.reducer.to_string(), Some(r.caller_identity)));
        }
        assert!(!p.name.is_empty());
    });
    let updates = Arc::new(AtomicUsize::new(0));
    let counted = updates.clone();
    let updated = players.on_update(move |_, _, _| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let name = format!("embedded-{}", std::process::id());
    let join = Arc::new(Mutex::new(None));
    let result = join.clone();
    let reader = players.clone();
    client.reducers().call("join", &JoinArgs { name: name.clone(), map_id: 1 }).on_result(move |r| {
        // The result comes after its rows: the new row is already cached.
        let mine = reader.find("identity", &me).map(|p| p.name.clone());
        *result.lock().unwrap() = Some((r.is_ok(), mine));
    });
    tick_until(&mut client, 10, "the join's result", |_, _| join.lock().unwrap().is_some());
    assert_eq!(*join.lock().unwrap(), Some((true, Some(name.clone()))), "the result callback sees its row");
    assert!(
        causes.lock().unwrap().contains(&("join".to_string(), Some(me))),
        "the insert names its reducer and caller: {:?}",
        causes.lock().unwrap()
    );

    // Removed mid-run: the next update of our row reaches only the kept callback.
    client.remove_callback(updated);
    players.remove_callback(inserted);
    let before = updates.load(Ordering::Relaxed);
    let moved = Arc::new(AtomicUsize::new(0));
    let m = moved.clone();
    client.reducers().call_sequenced("move_player", &MovePlayerArgs { seq: 1, dx: 1.0, dy: 0.0 }, 1).on_result(
        move |r| {
            assert!(r.is_ok(), "{r:?}");
            m.fetch_add(1, Ordering::Relaxed);
        },
    );
    tick_until(&mut client, 10, "the move's result", |_, _| moved.load(Ordering::Relaxed) == 1);
    assert_eq!(updates.load(Ordering::Relaxed), before, "a removed callback hears nothing");

    // A reducer that ran and failed is an error.
    let failed = Arc::new(Mutex::new(None));
    let f = failed.clone();
    client.reducers().call("always_fail", &"on purpose".to_string()).on_result(move |r| {
        *f.lock().unwrap() = Some(r.clone());
    });
    tick_until(&mut client, 10, "the failure", |_, _| failed.lock().unwrap().is_some());
    let failure = failed.lock().unwrap().clone().unwrap();
    assert!(
        matches!(failure, Err(ReducerError::Failed { ref message, .. }) if message.contains("on purpose")),
        "{failure:?}"
    );

    // A lost session and a requested shutdown are told apart.
    let disconnects: Arc<Mutex<Vec<Disconnect>>> = Arc::default();
    let d = disconnects.clone();
    client.on_disconnect(move |disconnect| d.lock().unwrap().push(disconnect.clone()));
    proxy.cut_all();
    tick_until(&mut client, 15, "lost, then back", |c, _| !disconnects.lock().unwrap().is_empty() && c.is_active());
    assert!(!disconnects.lock().unwrap()[0].requested, "{:?}", disconnects.lock().unwrap());
    client.shutdown();
    tick_until(&mut client, 5, "the requested disconnect", |_, _| disconnects.lock().unwrap().len() >= 2);
    assert!(disconnects.lock().unwrap()[1].requested, "{:?}", disconnects.lock().unwrap());
    assert!(client.status().shut_down);
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_every_result_callback_finds_the_row_its_call_wrote() {
    let mut client = started(None, |b| {
        b.with_row_types(spacelink::sync::RowTypes::new().register::<Player>("player"))
            .subscribe(&["SELECT * FROM player"])
    });
    let me = client.try_identity().unwrap();
    let players = client.table::<Player>("player");
    let joined = Arc::new(AtomicUsize::new(0));
    let j = joined.clone();
    client.reducers().call("join", &JoinArgs { name: "ordered".into(), map_id: 1 }).on_result(move |r| {
        assert!(r.is_ok(), "{r:?}");
        j.fetch_add(1, Ordering::Relaxed);
    });
    tick_until(&mut client, 10, "joined", |_, _| joined.load(Ordering::Relaxed) == 1);

    // Sequential calls, each result callback reading the row its call changed.
    const CALLS: u32 = 500;
    let mismatches: Arc<Mutex<Vec<(u32, Option<u32>)>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    for seq in 1..=CALLS {
        let (players, mismatches, finished) = (players.clone(), mismatches.clone(), done.clone());
        client.reducers().call_sequenced("move_player", &MovePlayerArgs { seq, dx: 0.0, dy: 0.0 }, seq).on_result(
            move |r| {
                assert!(r.is_ok(), "{r:?}");
                let seen = players.find("identity", &me).map(|p| p.last_input_seq);
                if seen != Some(seq) {
                    mismatches.lock().unwrap().push((seq, seen));
                }
                finished.fetch_add(1, Ordering::Relaxed);
            },
        );
        let want = seq as usize;
        tick_until(&mut client, 10, "the call's result", |_, _| done.load(Ordering::Relaxed) == want);
    }
    assert_eq!(*mismatches.lock().unwrap(), vec![], "results seen before their rows");
    client.shutdown();
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_subscription_cancelled_while_pending_never_applies_and_brings_no_rows() {
    // A link with 300 ms of latency each way: the set is surely still pending
    // when the game drops it, however the game's thread is scheduled.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(upstream())).unwrap();
    let mut client = started(Some(proxy.url()), |b| b.subscribe(&["SELECT * FROM map"]));
    proxy.set_latency(Duration::from_millis(300), Duration::ZERO);
    let rows = Arc::new(AtomicUsize::new(0));
    let r = rows.clone();
    client.on_event(move |e| {
        if let Event::Row(row) = e {
            if &*row.table == "config" {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let id = client.subscribe(&["SELECT * FROM config"]);
    client.unsubscribe(id);
    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        events.extend(client.frame_tick().iter().filter_map(|e| match e {
            Event::Subscription(s) => Some(s.clone()),
            _ => None,
        }));
        frame();
    }
    assert!(
        events.iter().any(|e| matches!(e, SubscriptionEvent::Cancelled { id: i } if *i == id)),
        "cancelled: {events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, SubscriptionEvent::Applied { id: i } if *i == id)),
        "a cancelled set never applies: {events:?}"
    );
    assert_eq!(rows.load(Ordering::Relaxed), 0, "no row events for a cancelled set");
    assert_eq!(client.sync().expect("the schema is known").cache().count("config"), 0);
    client.shutdown();
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_one_off_query_from_the_game_thread_returns_typed_rows_and_a_refused_one_an_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = started(None, |b| b);
    let mut query = client.query("SELECT * FROM map");
    let mut answer = None;
    tick_until(&mut client, 10, "the query's answer", |_, _| {
        answer = query.try_result();
        answer.is_some()
    });
    let rows = answer.unwrap().unwrap();
    let maps: Vec<Map> = rows.rows("map").unwrap();
    let expected = rt.block_on(sql("SELECT * FROM map"));
    assert_eq!(maps.len(), expected[0]["rows"].as_array().map_or(0, Vec::len), "{expected}");
    assert!(!maps.is_empty());

    let mut refused = client.query("SELECT * FROM no_such_table");
    let mut answer = None;
    tick_until(&mut client, 10, "the refusal", |_, _| {
        answer = refused.try_result();
        answer.is_some()
    });
    assert!(matches!(answer, Some(Err(spacelink::ClientError::Query(_)))), "{answer:?}");
    client.shutdown();
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_the_module_sees_one_caller_connection_across_a_reconnect() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(upstream())).unwrap();
    let mut client = started(Some(proxy.url()), |b| b);
    let first = client.status().connection_id.unwrap();
    // `insert_sample` records its caller's connection id in `all_types`.
    let base = 900_000 + (std::process::id() % 50_000) * 2;
    let call = |client: &mut Client, id: u32| {
        let done = Arc::new(Mutex::new(None));
        let d = done.clone();
        client.reducers().call("insert_sample", &InsertSampleArgs { id }).on_result(move |r| {
            *d.lock().unwrap() = Some(r.is_ok());
        });
        tick_until(client, 10, "insert_sample", |_, _| done.lock().unwrap().is_some());
        assert_eq!(*done.lock().unwrap(), Some(true));
    };
    call(&mut client, base);
    proxy.cut_all();
    let generation = client.status().generation;
    tick_until(&mut client, 20, "a new session", |c, _| c.is_active() && c.status().generation > generation);
    assert_eq!(client.status().connection_id, Some(first), "the server knows us by the same connection id");
    call(&mut client, base + 1);
    let rows: Vec<serde_json::Value> = [base, base + 1]
        .iter()
        .map(|id| rt.block_on(sql(&format!("SELECT * FROM all_types WHERE id = {id}")))[0]["rows"][0].clone())
        .collect();
    let ids: std::collections::BTreeSet<String> = rows.iter().map(|r| connection_id_of(r)).collect();
    assert_eq!(ids.len(), 1, "one caller connection across the reconnect: {ids:?}");
    client.shutdown();
}

/// The `a_connection_id` column of an `all_types` row as the SQL endpoint prints it.
fn connection_id_of(row: &serde_json::Value) -> String {
    // Columns in the table's order: id first, a_connection_id is the 27th (index 26).
    row[26].to_string()
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_query_the_server_cannot_parse_fails_at_once_without_retries() {
    let mut client = started(None, |b| b);
    let began = Instant::now();
    let id = client.subscribe(&["SELEC * FRM player"]);
    let mut failures = Vec::new();
    tick_until(&mut client, 10, "the refusal", |_, events| {
        failures.extend(events.iter().filter_map(|e| match e {
            Event::Subscription(SubscriptionEvent::Failed { id: i, retrying, .. }) if *i == id => Some(*retrying),
            _ => None,
        }));
        !failures.is_empty()
    });
    assert_eq!(failures, vec![false], "refused once, not retried");
    assert!(began.elapsed() < Duration::from_secs(1), "within a round trip or so: {:?}", began.elapsed());
    assert!(matches!(client.status().subscriptions.get(&id), Some(SubscriptionState::Failed { retrying: false, .. })));
    client.shutdown();
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_another_clients_reducer_call_reaches_this_clients_callback_with_its_cause() {
    let start = || started(None, |b| b.subscribe(&["SELECT * FROM player"]));
    let (mut watcher, mut other) = (start(), start());
    let them = other.try_identity().unwrap();
    let seen: Arc<Mutex<Vec<(Identity, Option<spacelink::connection::lib::ConnectionId>, bool)>>> = Arc::default();
    let s = seen.clone();
    // The generated, typed callback (the official SDK's `on_join`).
    // (Other tests' clients join too, on the same server: only the other client's call counts.)
    watcher.module_reducers().on_join(move |cause, args| {
        let stamped = cause.timestamp.to_micros_since_unix_epoch() > 0;
        if cause.caller_identity == them {
            s.lock().unwrap().push((cause.caller_identity, cause.caller_connection_id, stamped && args.map_id == 1));
        }
    });
    let name = format!("other-{}", std::process::id());
    let _call = other.reducers().call("join", &JoinArgs { name, map_id: 1 });
    let mut joined = false;
    tick_until(&mut watcher, 10, "the other client's join", |_, events| {
        joined |= events
            .iter()
            .any(|e| matches!(e, Event::Row(r) if matches!(&r.cause, Cause::Reducer(c) if c.caller_identity == them)));
        let _ = other.frame_tick();
        !seen.lock().unwrap().is_empty()
    });
    assert!(joined, "its row event names the other client as the caller");
    assert_eq!(*seen.lock().unwrap(), vec![(them, other.status().connection_id, true)]);
    watcher.shutdown();
    other.shutdown();
}

/// A session lost without a close (a blackhole) may linger on the server;
/// SpacetimeDB 1.3 keys a client's subscriptions by identity and connection
/// id, so the next session takes a fresh id: its subscriptions come back with
/// their rows, and the cache keeps them (no delete for a row the server has).
#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_after_a_blackhole_the_cache_keeps_its_rows_and_a_fresh_connection_id_is_used() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(upstream())).unwrap();
    let mut client = started(Some(proxy.url()), |b| b.subscribe(&["SELECT * FROM map"]));
    let maps = client.table::<Map>("map");
    let before = maps.count();
    assert!(before > 0, "guildmaster starts with maps");
    let first = client.status().connection_id.unwrap();
    let deletes = Arc::new(AtomicUsize::new(0));
    let d = deletes.clone();
    client.on_event(move |e| {
        if let Event::Row(row) = e {
            if &*row.table == "map" && row.kind == spacelink::RowEventKind::Delete {
                d.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let generation = client.status().generation;
    proxy.set_blackhole(true);
    tick_until(&mut client, 15, "the dead peer noticed", |c, _| !c.is_active());
    proxy.set_blackhole(false);
    tick_until(&mut client, 20, "a new session, subscribed", |c, _| {
        c.is_active()
            && c.status().generation > generation
            && c.status().subscriptions.values().all(|s| *s == SubscriptionState::Applied)
    });
    // A moment for anything that would empty the cache to arrive.
    let settle = Instant::now() + Duration::from_millis(500);
    tick_until(&mut client, 5, "a settled cache", |_, _| Instant::now() > settle);
    let server = rt.block_on(sql("SELECT * FROM map"))[0]["rows"].as_array().unwrap().len();
    assert_eq!(maps.count(), server, "the cache holds what the server has");
    assert_eq!(maps.count(), before);
    assert_eq!(deletes.load(Ordering::Relaxed), 0, "no row the server still has was deleted");
    assert_ne!(client.status().connection_id, Some(first), "the lingering session's id is not reused");
    client.shutdown();
}
