//! The demo that `cargo xtask demo` runs: connect to the guildmaster module with
//! the whole spacelink stack, join a map, follow the player's surroundings, walk a
//! few steps with client-side prediction (one of them too long, so the server
//! clamps it and the prediction is corrected smoothly) and print what the client sees.
//!
//! ```text
//! cargo run -p spacelink --example demo -- --server http://127.0.0.1:3000 --database guildmaster
//! ```

use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use spacelink::connection::lib::Identity;
use spacelink::prediction::{Position, PredictionConfig, PredictionListeners, Step, Walk};
use spacelink::prediction_link::{PredictedEntity, PredictionWiring};
use spacelink::sync::SyncListeners;
use spacelink::{Client, Listeners, ModuleSchema, StateChanged};

mod guildmaster;
use guildmaster::*;

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

/// Our player moves by `move_player(seq, dx, dy)`; its row says where it is
/// and the last input the server processed.
fn my_player(me: Identity) -> PredictedEntity<Walk> {
    PredictedEntity {
        table: "player".into(),
        reducer: "move_player".into(),
        read_row: std::sync::Arc::new(move |row| {
            let p: Player = spacetimedb_lib::bsatn::from_slice(row).ok()?;
            (p.identity == me).then_some((Position { x: p.pos.x, y: p.pos.y }, p.last_input_seq))
        }),
        encode_input: std::sync::Arc::new(|seq, step: &Step| {
            spacetimedb_lib::bsatn::to_vec(&MovePlayerArgs { seq, dx: step.dx, dy: step.dy }).unwrap_or_default().into()
        }),
    }
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let server = arg("--server", "http://127.0.0.1:3000");
    let database = arg("--database", "guildmaster");
    println!("spacelink demo: {server}, database {database}");
    let schema = ModuleSchema::fetch(&server, &database, None).await.context("reading the module's schema")?;

    let watch = Watch.start();
    let listeners = Listeners { states: vec![watch.recipient()], ..Default::default() };
    let prediction = PredictionWiring::<Walk>::new();
    let mut sync_listeners = SyncListeners::default();
    prediction.listen(&mut sync_listeners);
    // Interest management in guildmaster's terms: its spatial table and columns.
    let sync_config = guildmaster::sync_config();
    let app = Client::builder()
        .with_uri(&server)
        .with_database(&database)
        .with_sync_config(sync_config)
        .with_schema(std::sync::Arc::new(schema.clone()))
        .with_listeners(listeners)
        .with_sync_listeners(sync_listeners)
        .build_async()
        .await?;
    let sync = app.sync().expect("the schema is known").clone();

    let joined = app.reducer_client().call_json(&schema, "join", r#"["demo-hero", 1]"#).await?;
    println!("join: {:?} in {:.1} ms", joined.outcome, joined.round_trip.as_secs_f64() * 1000.0);
    let identity = app.connection().status().await?.identity.context("no identity")?;
    sync.follow(1, 50.0, 50.0, 15.0, 6.0).await?;
    sync.subscribe(&[&format!("SELECT * FROM player WHERE identity = 0x{}", identity.to_hex())]).await?;
    println!("following the area around the player: {} entities cached", sync.cache().count("entity"));

    // Walk with prediction: each step shows at once; the server's answer confirms or corrects it.
    let me = prediction.start(
        &app,
        Walk::default(),
        PredictionConfig::default(),
        my_player(identity),
        PredictionListeners::default(),
    )?;
    while me.shown().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let steps = [(1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (5.0, 5.0), (-1.0, 0.0)];
    for (i, (dx, dy)) in steps.into_iter().enumerate() {
        me.predict(Step { dx, dy });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let shown = me.shown().unwrap_or_default();
        let confirmed = me.with_view(|v| v.confirmed_seq).flatten().unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (after, status) = (me.shown().unwrap_or_default(), me.status().await?);
        sync.move_point(1, after.x, after.y);
        let near = sync.entities_in_range(1, after.x, after.y, 15.0).len();
        let clamped =
            if dx * dx + dy * dy > 1.0 { " (a step of (5, 5): clamped by the server, corrected smoothly)" } else { "" };
        println!(
            "move #{}: shown at ({:.1}, {:.1}) at once (server at input #{confirmed}), then ({:.1}, {:.1}) after input #{}; {near} entities within 15{clamped}",
            i + 1, shown.x, shown.y, after.x, after.y, status.confirmed_seq.unwrap_or_default()
        );
    }
    let stats = me.status().await?.stats;
    println!(
        "prediction: {} inputs, accuracy {:.0} %, {} corrections (largest {:.2}), deepest replay {}",
        stats.predicted,
        stats.accuracy() * 100.0,
        stats.corrections,
        stats.correction_max,
        stats.max_replay
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = app.connection().status().await?;
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
