//! The demo that `cargo xtask demo` runs: connect to the guildmaster module with
//! the whole spacelink stack, join a map, follow the player's surroundings, walk a
//! few steps (one of them too long, so the server clamps it) and print what the
//! client sees.
//!
//! ```text
//! cargo run -p spacelink --example demo -- --server http://127.0.0.1:3000 --database guildmaster
//! ```

use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use spacelink::reducers::{Outcome, ReducerListeners};
use spacelink::sync::SyncListeners;
use spacelink::{ConnectionConfig, Listeners, ModuleSchema, Spacelink, SpacelinkConfig, StateChanged};

/// Prints state changes.
struct Watch;

impl Actor for Watch {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Watch {
    type Result = ();
    fn handle(&mut self, s: StateChanged, _: &mut Self::Context) {
        println!("state: {} -> {}{}", s.from, s.to, s.reason.map(|r| format!(" ({r})")).unwrap_or_default());
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn move_args(seq: u32, dx: f32, dy: f32) -> bytes::Bytes {
    let mut args = Vec::with_capacity(12);
    args.extend_from_slice(&seq.to_le_bytes());
    args.extend_from_slice(&dx.to_le_bytes());
    args.extend_from_slice(&dy.to_le_bytes());
    args.into()
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let server = arg("--server", "http://127.0.0.1:3000");
    let database = arg("--database", "guildmaster");
    println!("spacelink demo: {server}, database {database}");
    let schema = ModuleSchema::fetch(&server, &database, None).await.context("reading the module's schema")?;

    let watch = Watch.start();
    let listeners = Listeners { states: vec![watch.recipient()], ..Default::default() };
    let app = Spacelink::connect(
        SpacelinkConfig::new(ConnectionConfig::new(&server, &database)),
        listeners,
        ReducerListeners::default(),
        SyncListeners::default(),
    )
    .await?;
    let sync = app.sync.clone().context("no state sync")?;

    let joined = app.reducers.call_json(&schema, "join", r#"["demo-hero", 1]"#).await?;
    println!("join: {:?} in {:.1} ms", joined.outcome, joined.round_trip.as_secs_f64() * 1000.0);
    let identity = app.connection.status().await?.identity.context("no identity")?;
    sync.follow(1, 50.0, 50.0, 15.0, 6.0).await?;
    sync.subscribe(&[&format!("SELECT * FROM player WHERE identity = 0x{}", identity.to_hex())]).await?;
    println!("following the area around the player: {} entities cached", sync.cache().count("entity"));

    let player = schema.table("player").context("no player table")?;
    let steps = [(1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (5.0, 5.0), (-1.0, 0.0)];
    for (i, (dx, dy)) in steps.iter().enumerate() {
        let seq = i as u32 + 1;
        let result = app.reducers.call_sequenced("move_player", move_args(seq, *dx, *dy), seq).await?;
        if result.outcome != Outcome::Committed {
            println!("move #{seq}: {:?}", result.outcome);
            continue;
        }
        // The cache already holds the server's answer.
        let me = sync.cache().rows("player").into_iter().find_map(|row| {
            let json = player.row_to_json(&player.decode(&row).ok()?);
            (json["name"] == "demo-hero").then_some(json)
        });
        let Some(me) = me else { continue };
        let (x, y) = (me["pos"]["x"].as_f64().unwrap_or_default(), me["pos"]["y"].as_f64().unwrap_or_default());
        sync.move_point(1, x as f32, y as f32);
        let near = sync.entities_in_range(1, x as f32, y as f32, 15.0).await?.len();
        let clamped = if dx * dx + dy * dy > 1.0 { " (a step of (5, 5), clamped by the server)" } else { "" };
        println!(
            "move #{seq}: at ({x:.1}, {y:.1}), last input #{}, {near} entities within 15{clamped}; round trip {:.1} ms",
            me["last_input_seq"],
            result.round_trip.as_secs_f64() * 1000.0
        );
    }

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = app.connection.status().await?;
    println!(
        "state {}, network {}, latency {}, breaker {}; {} entities and {} players cached",
        status.state,
        status.health.status,
        status.latency.map_or("not measured yet".into(), |l| format!("{:.2} ms", l.as_secs_f64() * 1000.0)),
        status.breaker,
        sync.cache().count("entity"),
        sync.cache().count("player"),
    );
    app.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
