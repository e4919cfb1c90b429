//! A headless game loop at 60 frames per second on spacelink's game API: the
//! client is built without waiting (the server may still be starting), the
//! input (here a scripted walk) moves the player through a reducer, the tables
//! and the status are read every frame, and the reducer results and row events
//! are handled on the game's own thread, in `frame_tick`. A failed reducer is an
//! `Err`. Nothing here waits for the network.
//!
//! ```text
//! cargo run -p spacelink --example game_loop -- --server http://127.0.0.1:3000 --database guildmaster --frames 300
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spacelink::connection::lib::Identity;
use spacelink::{Client, Event, RowEventKind};

mod guildmaster;
use guildmaster::*;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = arg("--server", "http://127.0.0.1:3000");
    let database = arg("--database", "guildmaster");
    let frames: u32 = arg("--frames", "300").parse()?;
    let frame = Duration::from_secs_f64(1.0 / 60.0);

    let mut client = Client::builder()
        .with_uri(&server)
        .with_database(&database)
        .subscribe(&["SELECT * FROM player"])
        .on_connect(|identity, _token| println!("connected as {}", identity.to_hex()))
        .on_disconnect(|d| {
            let why = if d.requested { "asked for" } else { "lost" };
            println!("disconnected ({why}): {}", d.reason.as_deref().unwrap_or("-"));
        })
        .build()?; // returns at once

    // Row callbacks run in frame_tick, here, with typed rows.
    let players = client.table::<Player>("player");
    let moves = Arc::new(AtomicU32::new(0));
    let seen = moves.clone();
    players.on_update(move |_ctx, old, new| {
        if old.pos.x != new.pos.x || old.pos.y != new.pos.y {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    // A row event says what caused it; this callback is removed after the first.
    let joined = players.on_insert(|ctx, p| {
        let by = ctx.cause().reducer().map_or("a subscription", |r| &*r.reducer);
        println!("player {} joined map {} (by {by})", p.name, p.map_id);
    });

    client.reducers().call("join", &JoinArgs { name: "loop-hero".into(), map_id: 1 }).on_result(move |result| {
        match result {
            // Committed: its row is in the cache already.
            Ok(r) => println!("join: committed in {:.1} ms", r.round_trip.as_secs_f64() * 1000.0),
            // Refused by the module (ReducerError::Failed) or never answered.
            Err(e) => println!("join failed: {e}"),
        }
    });

    let mut me: Option<Identity> = None;
    let mut seq = 0;
    let mut failed_calls = 0;
    for n in 0..frames {
        let started = Instant::now();
        // 1. What happened since the last frame.
        for event in client.frame_tick() {
            match event {
                Event::Connected { identity, .. } => me = Some(*identity),
                Event::ReducerResult { reducer, result: Err(e), .. } => {
                    failed_calls += 1;
                    println!("{reducer} failed: {e}");
                }
                Event::Row(row) if row.kind == RowEventKind::Delete => println!("a {} row left", row.table),
                _ => {}
            }
        }
        if n == 120 {
            client.remove_callback(joined);
        }
        // 2. Input: a step to the right every tenth frame, once we are in.
        let mine = me.and_then(|id| players.find("identity", &id));
        if n % 10 == 0 && mine.is_some() {
            seq += 1;
            // The result comes back as an event; nothing waits for it here.
            let _call = client.reducers().call_sequenced("move_player", &MovePlayerArgs { seq, dx: 0.5, dy: 0.0 }, seq);
        }
        // 3. Draw: read the tables straight from the cache.
        if n % 60 == 0 {
            let at = mine.map(|p| (p.pos.x, p.pos.y));
            let status = client.status(); // no await, no round trip
            println!("frame {n}: {:?}, {} players cached, me at {at:?}", status.state, players.count());
        }
        std::thread::sleep(frame.saturating_sub(started.elapsed()));
    }
    println!("{seq} moves sent, {} seen in row updates, {failed_calls} calls failed", moves.load(Ordering::Relaxed));
    client.shutdown();
    Ok(())
}
