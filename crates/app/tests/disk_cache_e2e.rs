//! A world at launch, against the real server: a game keeps its cache on disk
//! (`ClientBuilder::with_disk_cache`), quits, and while it is away rows are
//! inserted, updated and deleted on the server. At its next launch, with the
//! server out of reach (the fault proxy refuses, so no byte can arrive), its
//! tables already hold the rows it had; once the server can be reached, the
//! cache is reconciled with the server's answer, firing events only for the
//! rows that changed, and equals the server's SQL answer. A damaged file is
//! ignored with a warning and never trusted.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::guildmaster::*;
use common::*;
use spacelink::sync::Cause;
use spacelink::{
    CacheSaving, Client, ClientBuilder, DiskCacheConfig, DiskCacheEvent, Event, RowEventKind, SpacelinkConfig,
    SubscriptionState,
};

const QUERIES: [&str; 2] = ["SELECT * FROM entity WHERE map_id = 1", "SELECT * FROM entity WHERE map_id = 2"];

/// A game's client of `url` (the test server's when `None`), on the
/// bindings' embedded schema, `more` applied to its builder (not waited for).
fn launch(url: Option<String>, more: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Client {
    let mut connection = config();
    if let Some(url) = url {
        connection.server_url = url;
    }
    let mut settings = SpacelinkConfig::new(connection);
    settings.schema = Some(common::guildmaster::schema());
    more(Client::builder().with_config(settings)).build().unwrap()
}

fn applied(client: &Client) -> bool {
    let status = client.status();
    client.is_active()
        && !status.subscriptions.is_empty()
        && status.subscriptions.values().all(|s| *s == SubscriptionState::Applied)
}

/// Calls `reducer` and waits for its result, ticking `client`.
fn run<A: spacelink::connection::lib::ser::Serialize>(client: &mut Client, reducer: &str, args: &A) {
    let mut call = client.reducers().call(reducer, args);
    tick_until(client, 20, reducer, |_, _| match call.try_result() {
        Some(result) => {
            assert!(result.is_ok(), "{reducer}: {result:?}");
            true
        }
        None => false,
    });
}

fn entities(client: &Client) -> BTreeMap<u64, Entity> {
    client.table::<Entity>("entity").iter().map(|e| (e.entity_id, *e)).collect()
}

/// The entities of maps 1 and 2 by the server's own SQL endpoint: id and hp.
fn entities_by_sql(rt: &tokio::runtime::Runtime) -> BTreeMap<u64, i64> {
    let module = common::guildmaster::schema();
    let columns = &module.table("entity").unwrap().columns;
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let result = rt.block_on(sql("SELECT * FROM entity WHERE map_id = 1 OR map_id = 2"));
    result[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[col("entity_id")].as_u64().unwrap(), row[col("hp")].as_i64().unwrap()))
        .collect()
}

fn saved(client: &mut Client) -> DiskCacheEvent {
    let mut saving: CacheSaving = client.save_cache();
    let mut answer = None;
    tick_until(client, 20, "the cache saved", |_, _| {
        answer = saving.try_result();
        answer.is_some()
    });
    answer.unwrap()
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_cache_on_disk_reads_at_launch_and_reconciles_only_what_changed() {
    let _serial = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("world.slcache");
    let disk = DiskCacheConfig { save_every: Duration::from_secs(3600), ..DiskCacheConfig::new(&file) };

    // The world as the game last saw it: NPCs still, 40 spawned on map 1, 200 on map 2.
    let mut writer = launch(None, |b| b);
    tick_until(&mut writer, 20, "the writer connected", |c, _| c.is_active());
    run(&mut writer, "set_npc_tick", &SetNpcTickArgs { interval_ms: 0 });
    for map_id in [1, 2] {
        run(&mut writer, "clear_spawned", &ClearSpawnedArgs { map_id });
    }
    run(&mut writer, "spawn_entities", &SpawnEntitiesArgs { map_id: 1, count: 40 });
    run(&mut writer, "spawn_entities", &SpawnEntitiesArgs { map_id: 2, count: 200 });

    // The game reaches the server through the proxy (a file is kept for one server URL and database).
    let (proxy, connection) = rt.block_on(proxied());
    let url = connection.server_url;
    let mut game = launch(Some(url.clone()), |b| b.with_disk_cache(disk.clone()).subscribe(&QUERIES));
    tick_until(&mut game, 20, "the game connected and subscribed", |c, _| applied(c));
    let before = entities(&game);
    assert!(before.len() >= 240, "{} entities", before.len());
    match saved(&mut game) {
        DiskCacheEvent::Saved { rows, bytes, .. } => {
            assert_eq!(rows, before.len());
            assert_eq!(bytes, std::fs::metadata(&file).unwrap().len());
        }
        other => panic!("not saved: {other:?}"),
    }
    game.shutdown();
    drop(game);

    // While the game is away: 40 deletes (map 1), 50 updates and 25 inserts (map 2).
    run(&mut writer, "clear_spawned", &ClearSpawnedArgs { map_id: 1 });
    run(&mut writer, "bump_spawned", &BumpSpawnedArgs { map_id: 2, limit: 50 });
    run(&mut writer, "spawn_entities", &SpawnEntitiesArgs { map_id: 2, count: 25 });

    // The next launch, with the server out of reach: the world reads at once.
    proxy.set_refuse(true);
    let served = |p: &common::proxy::FaultProxy| p.accepted() - p.refused();
    let served_before = served(&proxy);
    let began = Instant::now();
    let mut game = launch(Some(url.clone()), |b| b.with_disk_cache(disk.clone()).subscribe(&QUERIES));
    let (mut restored, mut told) = (0, None);
    tick_until(&mut game, 10, "the world restored from disk", |c, events| {
        for event in events {
            match event {
                Event::DiskCache(DiskCacheEvent::Restored { rows, .. }) => told = Some(*rows),
                Event::Row(row) if matches!(row.cause, Cause::Restored) => restored += 1,
                _ => {}
            }
        }
        entities(c).len() == before.len() && restored >= before.len()
    });
    let shown_after = began.elapsed();
    assert_eq!(entities(&game), before, "the restored tables hold exactly the saved rows");
    assert!(!game.is_active(), "restored while no session could exist");
    assert_eq!(served(&proxy), served_before, "not a byte could have come from the server");
    assert_eq!(told, Some(before.len()), "the restore was told");
    assert_eq!(restored, before.len(), "each restored row heard once as an insert");
    eprintln!("world shown {shown_after:?} after launch, {} rows", before.len());

    // The server can be reached: reconciled, with events for the changes only.
    proxy.set_refuse(false);
    let (mut inserts, mut updates, mut deletes, mut other) = (0, 0, 0, 0);
    let mut reconciled = false;
    tick_until(&mut game, 30, "connected and reconciled", |c, events| {
        for event in events {
            if let Event::Row(row) = event {
                match (row.reconciled, row.kind) {
                    (true, RowEventKind::Insert) => inserts += 1,
                    (true, RowEventKind::Update) => updates += 1,
                    (true, RowEventKind::Delete) => deletes += 1,
                    _ => other += 1,
                }
                reconciled |= row.reconciled;
            }
        }
        reconciled && applied(c)
    });
    assert_eq!((inserts, updates, deletes, other), (25, 50, 40, 0), "events for exactly the rows that changed");
    let now: BTreeMap<u64, i64> = entities(&game).into_iter().map(|(id, e)| (id, i64::from(e.hp))).collect();
    assert_eq!(now, entities_by_sql(&rt), "the reconciled cache is the server's answer");
    // The new state is saved at shutdown (in the background); an explicit save says nothing changed since.
    assert!(matches!(saved(&mut game), DiskCacheEvent::Saved { .. }));
    assert_eq!(saved(&mut game), DiskCacheEvent::Unchanged);
    game.shutdown();
    drop(game);

    // A damaged file is ignored with a warning: the launch starts empty and loads from the server.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let mut game = launch(Some(url.clone()), |b| b.with_disk_cache(disk.clone()).subscribe(&QUERIES));
    let mut ignored = None;
    let mut restored_rows = 0;
    tick_until(&mut game, 20, "started from the server", |c, events| {
        for event in events {
            match event {
                Event::DiskCache(DiskCacheEvent::Ignored { reason }) => ignored = Some(reason.clone()),
                Event::Row(row) if matches!(row.cause, Cause::Restored) => restored_rows += 1,
                _ => {}
            }
        }
        applied(c)
    });
    let reason = ignored.expect("the damaged file was reported");
    assert!(reason.contains("checksum"), "{reason}");
    assert_eq!(restored_rows, 0, "nothing of a damaged file is trusted");
    assert_eq!(entities(&game).len(), entities_by_sql(&rt).len());
    assert!(matches!(saved(&mut game), DiskCacheEvent::Saved { .. }), "a good file again");
    game.shutdown();
    drop(game);

    // A game that subscribes once connected (the official SDK's `on_connect`
    // way): the restored rows wait for its first set, then only the changes fire.
    run(&mut writer, "bump_spawned", &BumpSpawnedArgs { map_id: 2, limit: 10 });
    let mut game = launch(Some(url), |b| b.with_disk_cache(disk.clone()));
    tick_until(&mut game, 20, "connected", |c, _| c.is_active() && entities(c).len() == before.len() - 40 + 25);
    for _ in 0..20 {
        // A few frames connected without a subscription: nothing leaves.
        assert!(!game.frame_tick().iter().any(|e| matches!(e, Event::Row(r) if r.reconciled)));
        std::thread::sleep(Duration::from_millis(16));
    }
    game.subscribe(&QUERIES);
    let mut changed = Vec::new();
    tick_until(&mut game, 20, "subscribed and reconciled", |c, events| {
        changed.extend(events.iter().filter_map(|e| match e {
            Event::Row(row) if row.reconciled => Some(row.kind),
            _ => None,
        }));
        applied(c) && !changed.is_empty()
    });
    assert_eq!(changed, vec![RowEventKind::Update; 10], "only the 10 rows bumped while away");
    game.shutdown();

    run(&mut writer, "clear_spawned", &ClearSpawnedArgs { map_id: 2 });
    run(&mut writer, "set_npc_tick", &SetNpcTickArgs { interval_ms: 200 });
    writer.shutdown();
    proxy.stop();
}

/// `build_async` waits for the schema anyway: the file is checked against the
/// server's schema before it is loaded, and the client it returns reads the
/// saved rows at once.
#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_build_async_restores_the_cache_before_it_returns() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskCacheConfig::new(dir.path().join("world.slcache"));
    let builder = || {
        Client::builder()
            .with_connection_config(config())
            .with_disk_cache(disk.clone())
            .with_frame_events(false)
            .subscribe(&["SELECT * FROM map"])
    };
    let first = builder().build_async().await.unwrap();
    let sync = first.sync().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sync.cache().count("map") == 0 {
        assert!(Instant::now() < deadline, "the maps were not loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let maps = sync.cache().count("map");
    assert!(matches!(first.save_cache().await, DiskCacheEvent::Saved { .. }));
    first.shutdown();

    let second = builder().build_async().await.unwrap();
    assert_eq!(second.sync().unwrap().cache().count("map"), maps, "read from the file before build_async returned");
    second.shutdown();
}
