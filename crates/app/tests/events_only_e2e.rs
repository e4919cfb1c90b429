//! End-to-end: an events-only table (`ClientBuilder::with_events_only`)
//! against the real server, as a game uses it: `entity` keeps no rows, and a
//! stream of 100 000 changes to it (25 000 inserts, two updates of each row,
//! 25 000 deletes, from guildmaster's bulk reducers) reaches the generated
//! bindings' row callbacks, typed, every one of them, while the table reads
//! empty at every frame and a table beside it keeps its rows.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "bindings/guildmaster.rs"]
mod bindings;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bindings::{Entity, EntityKind, ModuleClient as _};
use common::*;
use spacelink::reducers::Outcome;
use spacelink::sync::SubscriptionEvent;
use spacelink::{Client, Event};

/// The map the stream runs on (guildmaster's first), its rows, and how many each spawn call inserts.
const MAP: u32 = 1;
const ROWS: u32 = 25_000;
const PER_SPAWN: u32 = 5_000;

/// What the row callbacks saw of the map's spawned entities.
#[derive(Debug, Default)]
struct Seen {
    inserts: usize,
    /// Updates whose new row is the old one with `hp` one up.
    updates: usize,
    deletes: usize,
    /// The entities inserted and not yet deleted, by the callbacks alone.
    live: HashSet<u64>,
    /// What made no sense (an update of another row, a delete of an entity never inserted, ...).
    wrong: Vec<String>,
}

fn streamed(row: &Entity) -> bool {
    row.map_id == MAP && row.kind == EntityKind::Spawned
}

/// Listens to `entity` as a game would, counting into `seen`.
fn listen(client: &Client, seen: &Arc<Mutex<Seen>>) {
    let s = seen.clone();
    client.db().entity().on_insert(move |_, row| {
        if streamed(row) {
            let mut s = s.lock().unwrap();
            s.inserts += 1;
            if !s.live.insert(row.entity_id) {
                s.wrong.push(format!("insert of {} twice", row.entity_id));
            }
        }
    });
    let s = seen.clone();
    client.db().entity().on_update(move |_, old, new| {
        if streamed(new) {
            let mut s = s.lock().unwrap();
            if old.entity_id == new.entity_id && new.hp == old.hp + 1 && s.live.contains(&new.entity_id) {
                s.updates += 1;
            } else {
                s.wrong.push(format!("update {old:?} -> {new:?}"));
            }
        }
    });
    let s = seen.clone();
    client.db().entity().on_delete(move |_, row| {
        if streamed(row) {
            let mut s = s.lock().unwrap();
            s.deletes += 1;
            if !s.live.remove(&row.entity_id) {
                s.wrong.push(format!("delete of {} never inserted", row.entity_id));
            }
        }
    });
}

/// Makes `calls`, then ticks until their results are in and `done` holds,
/// checking at every frame that the events-only table holds no row.
fn stream(
    client: &mut Client,
    what: &str,
    calls: Vec<spacelink::ReducerCall>,
    done: impl Fn(&Seen) -> bool,
    seen: &Mutex<Seen>,
) {
    let tickets: HashSet<u64> = calls.iter().map(|c| c.ticket()).collect();
    drop(calls);
    let mut results = 0;
    tick_until(client, 45, what, |c, events| {
        for event in events {
            if let Event::ReducerResult { ticket, result, .. } = event {
                if tickets.contains(ticket) {
                    assert!(matches!(result, Ok(r) if r.outcome == Outcome::Committed), "{what}: {result:?}");
                    results += 1;
                }
            }
        }
        assert_eq!(c.db().entity().count(), 0, "{what}: the events-only table holds rows");
        assert_eq!(c.db().entity().iter().count(), 0, "{what}: the events-only table holds rows");
        results == tickets.len() && done(&seen.lock().unwrap())
    });
    let s = seen.lock().unwrap();
    assert!(s.wrong.is_empty(), "{what}: {:?}", &s.wrong[..s.wrong.len().min(5)]);
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_an_events_only_table_streams_100k_changes_and_keeps_no_rows() {
    let (url, db) = server();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let query = format!("SELECT * FROM entity WHERE map_id = {MAP}");
    let mut client = Client::builder()
        .with_uri(url)
        .with_database(db)
        .with_row_types(bindings::row_types())
        .with_events_only(["entity"])
        .subscribe(&[query.as_str(), "SELECT * FROM map"])
        .build()
        .unwrap();
    listen(&client, &seen);
    let mut applied = false;
    tick_until(&mut client, 15, "the subscription applied", |_, events| {
        applied |= events.iter().any(|e| matches!(e, Event::Subscription(SubscriptionEvent::Applied { .. })));
        applied
    });
    assert!(client.db().map().count() > 0, "a table beside it keeps its rows");
    assert_eq!(client.db().entity().count(), 0, "the initial rows are told, not kept");

    // What earlier tests left on the map goes first, and is not counted.
    let clear = vec![client.module_reducers().clear_spawned(MAP)];
    stream(&mut client, "clearing the map", clear, |_| true, &seen);
    *seen.lock().unwrap() = Seen::default();

    let started = std::time::Instant::now();
    let n = ROWS as usize;
    let spawns = (0..ROWS / PER_SPAWN).map(|_| client.module_reducers().spawn_entities(MAP, PER_SPAWN)).collect();
    stream(&mut client, "the inserts", spawns, |s| s.inserts == n, &seen);
    for round in 1..=2 {
        let bump = vec![client.module_reducers().bump_spawned(MAP, ROWS)];
        stream(&mut client, "the updates", bump, |s| s.updates == n * round, &seen);
    }
    let clear = vec![client.module_reducers().clear_spawned(MAP)];
    stream(&mut client, "the deletes", clear, |s| s.deletes == n, &seen);

    let s = seen.lock().unwrap();
    assert_eq!((s.inserts, s.updates, s.deletes), (n, 2 * n, n), "every change delivered, once");
    assert!(s.live.is_empty(), "every inserted entity was deleted: {} left", s.live.len());
    assert_eq!(client.sync().unwrap().cache().count("entity"), 0);
    eprintln!("{} changes streamed through an events-only table in {:?}", 4 * n, started.elapsed());
    drop(s);
    client.shutdown();
}
