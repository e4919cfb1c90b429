//! The headless game loop end to end: a fixed number of frames at 60 fps on the
//! game's own thread against the real server, with the connection cut (the fault
//! proxy) and the server process restarted in the middle. What the game saw is
//! checked: the rows (its cache agrees with the server's SQL answer), its reducer
//! results (one per call, every sequenced move committed exactly once), and no
//! row event for a row that did not change.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::guildmaster::*;
use common::*;
// Not the bindings' `schema()` (the module's embedded schema): the server's, fetched.
use common::schema;
use spacelink::connection::lib::Identity;
use spacelink::reducers::Outcome;
use spacelink::sync::SubscriptionEvent;
use spacelink::{CallResult, Client, Event, RowEventKind, SpacelinkConfig};

const FRAMES: u32 = 1200;
const CUT_AT: u32 = 300;
const RESTART_AT: u32 = 700;

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_the_headless_game_loop_sees_the_right_rows_and_results_through_a_cut_and_a_server_restart() {
    let _serial = serial();
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    // The proxy and the SQL oracle run on a runtime of the test's; the game has none.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (proxy, connection) = rt.block_on(common::proxied());
    let schema = std::sync::Arc::new(rt.block_on(schema()));
    let mut settings = SpacelinkConfig::new(connection);
    settings.schema = Some(schema.clone());
    let mut client = Client::builder()
        .with_config(settings)
        .subscribe(&["SELECT * FROM map"])
        .subscribe(&["SELECT * FROM player"])
        .build()
        .unwrap();
    let players = client.table::<Player>("player");
    let name = format!("looper-{}", std::process::id());

    let mut me: Option<Identity> = None;
    let mut applied = 0;
    let mut join: Option<u64> = None;
    let mut joined = false;
    let mut moves: HashMap<u64, u32> = HashMap::new(); // ticket -> seq
    let mut results: HashMap<u64, CallResult> = HashMap::new();
    let mut seq = 0;
    let mut map_events = 0;
    let mut connects = 0;
    let mut restart = None;
    let frame = Duration::from_secs_f64(1.0 / 60.0);

    let tick = |client: &mut Client,
                me: &mut Option<Identity>,
                applied: &mut u32,
                results: &mut HashMap<u64, CallResult>,
                map_events: &mut usize,
                connects: &mut u32| {
        for event in client.frame_tick() {
            match event {
                Event::Connected { identity, .. } => {
                    *connects += 1;
                    assert!(me.is_none_or(|m| m == *identity), "the identity is kept across reconnects");
                    *me = Some(*identity);
                }
                Event::Subscription(SubscriptionEvent::Applied { .. }) => *applied += 1,
                Event::ReducerResult { ticket, result, .. } => {
                    assert!(results.insert(*ticket, result.clone()).is_none(), "two results for call {ticket}");
                }
                Event::Row(row) => {
                    if &*row.table == "map" {
                        *map_events += 1;
                        assert_eq!(row.kind, RowEventKind::Insert, "a map row never changes: {row:?}");
                    }
                    if row.kind == RowEventKind::Update {
                        assert_ne!(row.old.as_ref(), Some(&row.row), "an update event for a row that did not change");
                    }
                }
                _ => {}
            }
        }
    };

    for n in 0..FRAMES {
        let started = Instant::now();
        tick(&mut client, &mut me, &mut applied, &mut results, &mut map_events, &mut connects);
        if join.is_none() && me.is_some() && applied >= 2 {
            join = Some(client.reducers().call("join", &JoinArgs { name: name.clone(), map_id: 1 }).ticket());
        }
        if let Some(ticket) = join {
            if !joined {
                if let Some(result) = results.get(&ticket) {
                    assert_eq!(result.as_ref().map(|r| &r.outcome), Ok(&Outcome::Committed), "join: {result:?}");
                    joined = true;
                }
            }
        }
        // Input: a step every tenth frame once joined, online or not.
        if joined && n % 10 == 0 {
            seq += 1;
            let call = client.reducers().call_sequenced("move_player", &MovePlayerArgs { seq, dx: 0.01, dy: 0.0 }, seq);
            moves.insert(call.ticket(), seq);
        }
        // Draw: the tables, every frame.
        let mine = me.and_then(|id| players.find("identity", &id));
        assert!(players.count() >= usize::from(mine.is_some()));
        if n == CUT_AT {
            proxy.cut_all();
        }
        if n == RESTART_AT {
            let (xtask, dir) = (xtask.clone(), dir.clone());
            // Off the game's thread: the frames go on meanwhile.
            restart = Some(std::thread::spawn(move || {
                Command::new(xtask).args(["server", "restart", "--dir", &dir]).output().unwrap()
            }));
        }
        std::thread::sleep(frame.saturating_sub(started.elapsed()));
    }
    let restart = restart.expect("the loop reached the restart").join().unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    assert!(joined, "the player joined");
    assert!(seq > 50, "the player moved ({seq} steps)");

    // Every call answered: keep ticking (bounded) until the last results are in.
    let deadline = Instant::now() + Duration::from_secs(30);
    while moves.keys().any(|t| !results.contains_key(t)) {
        assert!(
            Instant::now() < deadline,
            "{} calls unanswered",
            moves.keys().filter(|t| !results.contains_key(t)).count()
        );
        tick(&mut client, &mut me, &mut applied, &mut results, &mut map_events, &mut connects);
        std::thread::sleep(frame);
    }
    for (ticket, s) in &moves {
        let result = results[ticket].as_ref().unwrap_or_else(|e| panic!("move {s}: {e}"));
        assert_eq!(result.outcome, Outcome::Committed, "move {s}");
        assert_eq!(result.sequence_number, Some(*s));
    }
    assert!(connects >= 3, "a first session, one after the cut, one after the restart ({connects})");

    // The rows: the cache agrees with the server, and every move ran once.
    let me = me.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mine = loop {
        tick(&mut client, &mut Some(me), &mut applied, &mut results, &mut map_events, &mut connects);
        match players.find("identity", &me) {
            Some(p) if p.last_input_seq == seq && p.online => break p,
            other => assert!(Instant::now() < deadline, "the cache never caught up: {other:?}"),
        }
        std::thread::sleep(frame);
    };
    assert_eq!(mine.name, name);
    assert_eq!(mine.moves_applied, seq, "each sequenced move ran exactly once");
    let columns = &schema.table("player").unwrap().columns;
    let col = |c: &str| columns.iter().position(|x| x == c).unwrap();
    let row = rt.block_on(sql(&format!("SELECT * FROM player WHERE identity = 0x{}", me.to_hex())));
    let row = &row[0]["rows"][0];
    assert_eq!(row[col("last_input_seq")].as_u64(), Some(u64::from(seq)));
    assert_eq!(row[col("moves_applied")].as_u64(), Some(u64::from(mine.moves_applied)));
    assert!((row[col("pos")][0].as_f64().unwrap() - f64::from(mine.pos.x)).abs() < 1e-3, "{row}");

    // No row event for a row that did not change: each map row was inserted once,
    // and neither the cut nor the restart told anything about them again.
    assert_eq!(map_events, client.sync().expect("the schema is known").cache().count("map"));
    client.shutdown();
}
