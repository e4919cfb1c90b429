//! A headless Bevy app end to end against the real server: `App::new()` and
//! plain `app.update()` loops at 60 frames per second, with the plugin
//! connecting, subscribing under keys, mirroring `map` and `player` as
//! entities, and predicting the local player, while the connection is cut
//! (the fault proxy) and the server restarted in the middle. What the systems
//! saw is checked: the same rows as the cache, nothing but real changes after
//! each reconnect (map entities untouched), each reducer result once, every
//! predicted move run once, and one correction at most for a refused input.
//! A second app hears a dead (blackholed) server within seconds and is back
//! with its keyed set once the link heals.
#![allow(clippy::unwrap_used)]

#[path = "../examples/shared/mod.rs"]
mod shared;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate, Update};
use bevy_ecs::prelude::*;
use shared::game_app;
use shared::guildmaster::{JoinArgs, Map, Player};
use spacelink::connection::lib::Identity;
use spacelink::prediction::{PredictionEvent, Step, Walk};
use spacelink::reducers::Outcome;
use spacelink::{Client, ConnectionConfig, ConnectionState, SpacelinkConfig};
use spacelink_bevy::prelude::*;
use spacelink_faultproxy::FaultProxy;

const FRAMES: u32 = 1200;
const CUT_AT: u32 = 300;
const RESTART_AT: u32 = 700;
const FRAME: Duration = Duration::from_micros(16_667);

/// The tests here disturb the shared server or the link: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server that `cargo xtask test` started and published.
fn server() -> (String, String) {
    let url = std::env::var("SPACELINK_SERVER_URL").expect("SPACELINK_SERVER_URL: run through cargo xtask test");
    (url, std::env::var("SPACELINK_DATABASE").unwrap_or_else(|_| "guildmaster".into()))
}

/// What the game's systems saw.
#[derive(Resource, Default, Debug)]
struct Seen {
    me: Option<Identity>,
    connects: u32,
    lost: u32,
    requested: u32,
    reconnecting: u32,
    applied: HashMap<String, u32>,
    unnamed_failures: Vec<String>,
    results: HashMap<u64, Result<Outcome, String>>,
    join: Option<u64>,
    joined: bool,
    map_inserts: usize,
    map_other: usize,
    map_changed_in_place: usize,
    same_row_updates: usize,
    corrections: u32,
    rejected: u32,
    inputs: u32,
    /// The input held while walking (the test sets it to `None` to stop).
    walking: bool,
}

fn sessions(
    mut seen: ResMut<'_, Seen>,
    mut connected: MessageReader<'_, '_, Connected>,
    mut disconnected: MessageReader<'_, '_, Disconnected>,
    mut states: MessageReader<'_, '_, ConnectionStateChanged>,
    mut applied: MessageReader<'_, '_, SubscriptionApplied>,
    mut failed: MessageReader<'_, '_, SubscriptionFailed>,
) {
    for c in connected.read() {
        assert!(seen.me.is_none_or(|me| me == c.identity), "the identity is kept across reconnects");
        seen.me = Some(c.identity);
        seen.connects += 1;
    }
    for d in disconnected.read() {
        if d.lost() {
            seen.lost += 1;
        } else {
            seen.requested += 1;
        }
    }
    seen.reconnecting += states.read().filter(|s| s.to == ConnectionState::Reconnecting).count() as u32;
    for a in applied.read() {
        *seen.applied.entry(a.key.clone()).or_default() += 1;
    }
    for f in failed.read() {
        seen.unnamed_failures.push(format!("{}: {}", f.key, f.error));
    }
}

/// The game: joins once both keyed sets are in, then walks.
fn game(mut seen: ResMut<'_, Seen>, spacelink: Spacelink<'_>, mut results: MessageReader<'_, '_, ReducerFinished>) {
    for r in results.read() {
        let outcome = r.result.as_ref().map(|r| r.outcome.clone()).map_err(|e| e.to_string());
        assert!(seen.results.insert(r.ticket, outcome).is_none(), "two results for call {}", r.ticket);
    }
    if seen.join.is_none() && spacelink.is_active() && seen.applied.len() == 2 {
        let name = format!("bevy-{}", std::process::id());
        seen.join = spacelink.call("join", &JoinArgs { name, map_id: 1 }).map(|c| c.ticket());
    }
    if let Some(ticket) = seen.join {
        if !seen.joined {
            if let Some(result) = seen.results.get(&ticket) {
                assert_eq!(result, &Ok(Outcome::Committed), "join");
                seen.joined = true;
                seen.walking = true;
            }
        }
    }
}

/// The game's input: a small step while walking.
fn input(seen: Res<'_, Seen>, mut held: ResMut<'_, PredictionInput<Walk>>) {
    if seen.walking {
        held.held = Some(Step { dx: 0.01, dy: 0.0 });
    } else if held.held.is_some_and(|s| s.dx.is_finite()) {
        held.held = None;
    }
}

/// Counts the inputs the prediction steps send (the same condition as its step).
fn count_inputs(
    mut seen: ResMut<'_, Seen>,
    local: Res<'_, LocalPrediction<Walk>>,
    held: Res<'_, PredictionInput<Walk>>,
) {
    if local.handle().is_some() && held.held.is_some_and(|s| s.dx.is_finite()) {
        seen.inputs += 1;
    }
}

fn rows(
    mut seen: ResMut<'_, Seen>,
    mut maps_in: MessageReader<'_, '_, RowInserted<Map>>,
    mut maps_up: MessageReader<'_, '_, RowUpdated<Map>>,
    mut maps_out: MessageReader<'_, '_, RowDeleted<Map>>,
    mut players: MessageReader<'_, '_, RowUpdated<Player>>,
    maps: Query<'_, '_, Ref<'_, TableRow<Map>>>,
    mut predictions: MessageReader<'_, '_, PredictionChanged>,
) {
    seen.map_inserts += maps_in.read().count();
    seen.map_other += maps_up.read().count() + maps_out.read().count();
    seen.map_changed_in_place += maps.iter().filter(|m| m.is_changed() && !m.is_added()).count();
    seen.same_row_updates += players.read().filter(|u| u.old == u.new).count();
    for p in predictions.read() {
        seen.corrections += u32::from(p.is_correction());
        seen.rejected += u32::from(matches!(p.0, PredictionEvent::Rejected { .. }));
    }
}

/// One frame at 60 fps; the fixed step (64 Hz with `MinimalPlugins`' clock) is
/// the test's own here: every tenth frame.
fn frame(app: &mut App, n: u32) {
    let started = Instant::now();
    app.update();
    if n.is_multiple_of(10) {
        // An app without the prediction may have no `FixedUpdate` systems, hence no schedule.
        let _ = app.world_mut().try_run_schedule(FixedUpdate);
    }
    std::thread::sleep(FRAME.saturating_sub(started.elapsed()));
}

fn frames_until(app: &mut App, secs: u64, what: &str, mut done: impl FnMut(&mut App) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 1;
    while !done(app) {
        let seen = (app.world().get_resource::<Seen>(), app.world().get_resource::<Heard>());
        assert!(Instant::now() < deadline, "{what}: not within {secs} s ({seen:?})");
        frame(app, n);
        n += 1;
    }
}

fn mine(app: &App) -> Option<Player> {
    let me = app.world().resource::<Seen>().me?;
    app.world().get_resource::<TableHandle<Player>>()?.find("identity", &me).map(|p| (*p).clone())
}

fn entity_rows<T: RowType>(app: &mut App) -> Vec<(Entity, T)> {
    let mut q = app.world_mut().query::<(Entity, &TableRow<T>)>();
    q.iter(app.world()).map(|(e, r)| (e, r.row.clone())).collect()
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_bevy_app_mirrors_rows_predicts_and_sees_only_real_changes_through_a_cut_and_a_restart() {
    let _serial = serial();
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    let (url, db) = server();
    // The proxy runs on a runtime of the test's; the app has none.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(url.trim_start_matches("http://").parse().unwrap())).unwrap();
    let mut connection = ConnectionConfig::new(proxy.url(), db);
    connection.jitter_seed = Some(1);
    // The plugin, the prediction, `map` and `player` mirrored, subscribed under the keys `maps` and `players`.
    let mut app = game_app(Client::builder().with_config(SpacelinkConfig::new(connection)));
    app.init_resource::<Seen>()
        .add_systems(Update, (sessions, game, input, rows).chain())
        .add_systems(FixedUpdate, count_inputs.before(SpacelinkSet::Predict));

    // Startup returns at once: the first frames run before any session is up.
    let started = Instant::now();
    app.update();
    assert!(started.elapsed() < Duration::from_secs(1), "the first frame took {:?}", started.elapsed());
    assert!(app.world().contains_resource::<SpacelinkClient>());

    let mut restart = None;
    let mut maps_before_cut = Vec::new();
    let mut players_before_cut = Vec::new();
    for n in 1..FRAMES {
        frame(&mut app, n);
        if n == CUT_AT {
            maps_before_cut = entity_rows::<Map>(&mut app);
            players_before_cut = entity_rows::<Player>(&mut app);
            proxy.cut_all();
        }
        if n == RESTART_AT {
            let (xtask, dir) = (xtask.clone(), dir.clone());
            // Off the game's thread: the frames go on meanwhile.
            restart = Some(std::thread::spawn(move || {
                Command::new(xtask).args(["server", "restart", "--dir", &dir]).output().unwrap()
            }));
        }
    }
    let restart = restart.unwrap().join().unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    let seen = app.world().resource::<Seen>();
    assert!(seen.joined, "the player joined: {seen:?}");
    assert!(!maps_before_cut.is_empty(), "map rows were mirrored before the cut");
    assert!(seen.inputs > 40, "the player walked ({} inputs)", seen.inputs);

    // Stop walking; every move reaches the server once, and the cache, the entities and the prediction agree.
    app.world_mut().resource_mut::<Seen>().walking = false;
    let inputs = app.world().resource::<Seen>().inputs;
    frames_until(&mut app, 30, "the last move in the cache", |app| {
        mine(app).is_some_and(|p| p.last_input_seq == inputs && p.online)
    });
    let me = mine(&app).unwrap();
    assert_eq!(me.moves_applied, inputs, "each predicted move ran exactly once");
    let local = app.world().resource::<LocalPrediction<Walk>>().entity().expect("the prediction started");
    frames_until(&mut app, 10, "the shown state at the server's", |app| {
        app.world()
            .get::<Predicted<Walk>>(local)
            .is_some_and(|p| (p.shown.x - me.pos.x).abs() < 1e-3 && (p.shown.y - me.pos.y).abs() < 1e-3)
    });

    // A refused input (the module refuses a non-finite step): rolled back with one correction at most.
    let (corrections, rejected) = {
        let seen = app.world().resource::<Seen>();
        (seen.corrections, seen.rejected)
    };
    app.world_mut().resource_mut::<PredictionInput<Walk>>().held = Some(Step { dx: f32::NAN, dy: 0.0 });
    app.world_mut().run_schedule(FixedUpdate);
    app.world_mut().resource_mut::<PredictionInput<Walk>>().held = None;
    frames_until(&mut app, 15, "the refusal", |app| app.world().resource::<Seen>().rejected > rejected);
    for n in 1..=60 {
        frame(&mut app, n);
    }
    let seen = app.world().resource::<Seen>();
    assert_eq!(seen.rejected - rejected, 1, "one rejection");
    assert!(
        seen.corrections - corrections <= 1,
        "{} corrections for one refused input",
        seen.corrections - corrections
    );
    let shown = app.world().get::<Predicted<Walk>>(local).unwrap().shown;
    assert!((shown.x - me.pos.x).abs() < 1e-3, "rolled back to the server's state: {shown:?} vs {:?}", me.pos);
    assert_eq!(mine(&app).unwrap().last_input_seq, inputs, "the refused input did not move the player");

    // The connection: three sessions at least (start, after the cut, after the restart), all lost, none asked for.
    let seen = app.world().resource::<Seen>();
    eprintln!("what the systems saw: {seen:?}");
    assert!(seen.connects >= 3, "{seen:?}");
    assert!(seen.lost >= 2 && seen.requested == 0, "{seen:?}");
    assert!(seen.reconnecting >= 2, "the state went to Reconnecting after the cut and the restart: {seen:?}");
    // Each keyed set applied again after the reconnects, under the key the game gave it.
    assert!(seen.applied.get("maps").is_some_and(|n| *n >= 2), "{seen:?}");
    assert!(seen.applied.get("players").is_some_and(|n| *n >= 2), "{seen:?}");
    assert!(seen.unnamed_failures.is_empty(), "{seen:?}");
    assert!(app.world().resource::<SpacelinkStatus>().is_active());

    // The rows: the map entities are the ones spawned before the cut, never touched again;
    // every mirrored row is the cache's.
    assert_eq!(seen.map_other, 0, "a map row never changes: {seen:?}");
    assert_eq!(seen.map_changed_in_place, 0, "no map entity was changed: {seen:?}");
    assert_eq!(seen.same_row_updates, 0, "an update message for a row that did not change");
    let map_inserts = seen.map_inserts;
    let mut maps_after = entity_rows::<Map>(&mut app);
    maps_before_cut.sort_by_key(|(e, _)| *e);
    maps_after.sort_by_key(|(e, _)| *e);
    assert_eq!(maps_after, maps_before_cut, "the same map entities with the same rows");
    let cached_maps = app.world().resource::<TableHandle<Map>>().count();
    assert_eq!(map_inserts, cached_maps, "each map row inserted once");
    // No player's entity was respawned by a reconnect: each keeps its entity, and one whose
    // row did not change is untouched.
    let players_after: HashMap<u64, (Entity, Player)> =
        entity_rows::<Player>(&mut app).into_iter().map(|(e, p)| (p.player_id, (e, p))).collect();
    for (entity, before) in &players_before_cut {
        let (after_entity, _) = &players_after[&before.player_id];
        assert_eq!(after_entity, entity, "player {} kept its entity", before.name);
    }
    let mut mirrored: Vec<Player> = entity_rows::<Player>(&mut app).into_iter().map(|(_, p)| p).collect();
    let mut cached: Vec<Player> = app.world().resource::<TableHandle<Player>>().iter().map(|p| (*p).clone()).collect();
    mirrored.sort_by_key(|p| p.player_id);
    cached.sort_by_key(|p| p.player_id);
    assert_eq!(mirrored, cached, "the player entities are the cache's rows");
    assert_eq!(app.world().resource::<RowEntities<Player>>().len(), cached.len());
    // And the server's own answer (a one-off query, polled frame by frame) is the same rows.
    let mut query = app.world().resource::<SpacelinkClient>().query("SELECT * FROM player");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Some(answer) = query.try_result() {
            break answer.unwrap();
        }
        assert!(Instant::now() < deadline, "the server did not answer the query");
        frame(&mut app, 1);
    };
    let mut on_server: Vec<Player> = answer.rows("player").unwrap();
    on_server.sort_by_key(|p| p.player_id);
    assert_eq!(mirrored, on_server, "the player entities are the server's rows");

    app.world().resource::<SpacelinkClient>().shutdown();
    frames_until(&mut app, 5, "the requested disconnect", |app| app.world().resource::<Seen>().requested == 1);
}

/// When the plugin's systems heard what, for the blackhole test.
#[derive(Resource, Default, Debug)]
struct Heard {
    connected: Vec<Instant>,
    lost: Vec<Instant>,
    applied: u32,
}

fn hear(
    mut heard: ResMut<'_, Heard>,
    mut connected: MessageReader<'_, '_, Connected>,
    mut disconnected: MessageReader<'_, '_, Disconnected>,
    mut applied: MessageReader<'_, '_, SubscriptionApplied>,
) {
    let now = Instant::now();
    heard.connected.extend(connected.read().map(|_| now));
    heard.lost.extend(disconnected.read().filter(|d| d.lost()).map(|_| now));
    heard.applied += applied.read().count() as u32;
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_bevy_app_hears_a_dead_server_within_seconds_and_comes_back() {
    let _serial = serial();
    let (url, db) = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(url.trim_start_matches("http://").parse().unwrap())).unwrap();
    let mut connection = ConnectionConfig::new(proxy.url(), db);
    connection.jitter_seed = Some(1);
    connection.heartbeat_interval = Duration::from_millis(500);
    connection.dead_peer_timeout = Duration::from_millis(1500);
    connection.connect_timeout = Duration::from_secs(2);
    let builder = Client::builder()
        .with_config(SpacelinkConfig::new(connection))
        .with_schema(shared::guildmaster::schema())
        .with_row_types(shared::guildmaster::row_types());
    let mut app = App::new();
    app.add_plugins(SpacelinkPlugin::new(builder))
        .add_table::<Player>(shared::guildmaster::PlayerTableHandle::NAME)
        .subscribe_keyed("players", &["SELECT * FROM player"])
        .init_resource::<Heard>()
        .add_systems(Update, hear);
    frames_until(&mut app, 15, "the players applied", |app| app.world().resource::<Heard>().applied == 1);
    for n in 1..=90 {
        frame(&mut app, n); // 1.5 s of quiet heartbeats
    }

    // The server goes silent (no close, no reset): heartbeats notice it.
    proxy.set_blackhole(true);
    let blackholed = Instant::now();
    frames_until(&mut app, 10, "the lost session", |app| !app.world().resource::<Heard>().lost.is_empty());
    let detect = app.world().resource::<Heard>().lost[0].duration_since(blackholed);
    assert!(detect < Duration::from_millis(500 + 1500 + 700), "a dead server heard after {detect:?}");
    assert!(!app.world().resource::<SpacelinkStatus>().is_active());

    // Back: a new session, and the keyed set applied again under its key.
    proxy.heal();
    frames_until(&mut app, 20, "the second session", |app| app.world().resource::<Heard>().connected.len() >= 2);
    frames_until(&mut app, 10, "the set applied again", |app| app.world().resource::<Heard>().applied >= 2);
    let heard = app.world().resource::<Heard>();
    eprintln!("blackhole: detected after {detect:?}; {heard:?}");
    assert!(app.world().resource::<SpacelinkStatus>().is_active());
    app.world().resource::<SpacelinkClient>().shutdown();
}

/// A Bevy game keeping its cache on disk: `AppExit` saves it before the
/// process ends, and the next app's tables read it with the server out of
/// reach (the proxy refuses: every row comes from the file).
#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_app_exit_saves_the_disk_cache_and_the_next_launch_reads_it_offline() {
    let _serial = serial();
    let (url, db) = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FaultProxy::start(url.trim_start_matches("http://").parse().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("world.slcache");
    let builder = || {
        Client::builder()
            .with_config(SpacelinkConfig::new(ConnectionConfig::new(proxy.url(), &db)))
            .with_disk_cache(spacelink::DiskCacheConfig::new(&file))
    };
    let maps = |app: &App| app.world().get_resource::<SpacelinkClient>().map_or(0, |c| c.0.table::<Map>("map").count());

    let mut app = game_app(builder());
    frames_until(&mut app, 20, "the maps loaded", |app| maps(app) > 0);
    let loaded = maps(&app);
    assert!(!file.exists(), "nothing saved yet (every 30 s by default)");
    app.world_mut().write_message(bevy_app::AppExit::Success);
    app.update();
    assert!(file.exists(), "saved on AppExit");
    drop(app);

    proxy.set_refuse(true);
    let mut app = game_app(builder());
    frames_until(&mut app, 2, "the maps read from the file", |app| maps(app) == loaded);
    let active = app.world().get_resource::<SpacelinkClient>().is_some_and(|c| c.0.is_active());
    assert!(!active, "no session: the rows came from the file");
    proxy.stop();
}
