//! The demo that `cargo xtask demo` runs: connect to the guildmaster module,
//! join a map, walk a few steps (one of them too long, so the server clamps it)
//! and print what the server says back.
//!
//! ```text
//! cargo run -p spacelink --example demo -- --server http://127.0.0.1:3000 --database guildmaster
//! ```

use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use spacelink::connection::{codec, ws};
use spacelink::{ConnectionConfig, Listeners, ModuleSchema, ServerMessageReceived, Spacelink, StateChanged};
use tokio::sync::mpsc;

/// Forwards what the connection tells into a channel the demo reads.
struct Tap(mpsc::UnboundedSender<Told>);

enum Told {
    State(StateChanged),
    Message(ServerMessageReceived),
}

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Tap {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        let _ = self.0.send(Told::State(msg));
    }
}

impl Handler<ServerMessageReceived> for Tap {
    type Result = ();
    fn handle(&mut self, msg: ServerMessageReceived, _: &mut Self::Context) {
        let _ = self.0.send(Told::Message(msg));
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let server = arg("--server", "http://127.0.0.1:3000");
    let database = arg("--database", "guildmaster");
    println!("spacelink demo: {server}, database {database}");
    let schema = ModuleSchema::fetch(&server, &database, None).await.context("reading the module's schema")?;

    let (tx, mut told) = mpsc::unbounded_channel();
    let tap = Tap(tx).start();
    let listeners = Listeners {
        messages: vec![tap.clone().recipient()],
        states: vec![tap.recipient()],
        identities: vec![],
        ..Default::default()
    };
    let app = Spacelink::start(ConnectionConfig::new(&server, &database), listeners)?;

    // Wait for the session.
    loop {
        match told.recv().await.context("connection gone")? {
            Told::State(s) => {
                println!("state: {} -> {}{}", s.from, s.to, s.reason.map(|r| format!(" ({r})")).unwrap_or_default());
                if s.to.is_connected() {
                    break;
                }
            }
            Told::Message(m) => {
                if let ws::ServerMessage::IdentityToken(t) = &*m.message {
                    println!("identity: {}", t.identity.to_hex());
                }
            }
        }
    }
    let query = app
        .connection
        .subscribe(&["SELECT * FROM player".into(), "SELECT * FROM entity WHERE map_id = 1".into()])
        .await?;
    println!("subscribed (query set {})", query.id);

    let steps = [(0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (5.0, 5.0), (-1.0, 0.0)];
    let join = schema.encode_reducer_args("join", r#"["demo-hero", 1]"#)?;
    app.connection.call_reducer("join", join, ws::CallReducerFlags::FullUpdate).await?;
    for (seq, (dx, dy)) in steps.iter().enumerate().skip(1) {
        let args = schema.encode_reducer_args("move_player", &format!("[{seq}, {dx}, {dy}]"))?;
        app.connection.call_reducer("move_player", args, ws::CallReducerFlags::FullUpdate).await?;
    }

    // Print what comes back for a couple of seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let (mut npc_moves, mut seen) = (0, 0);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, told.recv()).await {
        let Told::Message(m) = event else { continue };
        seen += 1;
        match &*m.message {
            ws::ServerMessage::SubscribeMultiApplied(a) => {
                for t in &a.update.tables {
                    println!("initial rows: {} x{}", t.table_name, t.num_rows);
                }
            }
            ws::ServerMessage::TransactionUpdate(tx) => {
                let reducer = &*tx.reducer_call.reducer_name;
                match &tx.status {
                    ws::UpdateStatus::Committed(update) => {
                        for t in update.tables.iter().filter(|t| &*t.table_name == "player") {
                            for q in &t.updates {
                                let q = codec::decompress_query_update(q, Default::default())?;
                                for row in codec::rows(&q.inserts) {
                                    let player = schema.table("player").context("no player table")?;
                                    let row = player.row_to_json(&player.decode(&row)?);
                                    println!(
                                        "{reducer}: {} at ({:.1}, {:.1}), last input #{}",
                                        row["name"],
                                        row["pos"]["x"].as_f64().unwrap_or_default(),
                                        row["pos"]["y"].as_f64().unwrap_or_default(),
                                        row["last_input_seq"]
                                    );
                                }
                            }
                        }
                        if reducer == "npc_tick" {
                            npc_moves += 1;
                        }
                    }
                    ws::UpdateStatus::Failed(e) => println!("{reducer}: failed: {e}"),
                    ws::UpdateStatus::OutOfEnergy => println!("{reducer}: out of energy"),
                }
            }
            _ => {}
        }
    }
    let status = app.connection.status().await?;
    println!(
        "{seen} messages, {npc_moves} NPC ticks seen; state {}, latency {}",
        status.state,
        status.latency.map_or("not measured yet".into(), |l| format!("{:.2} ms", l.as_secs_f64() * 1000.0))
    );
    app.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
