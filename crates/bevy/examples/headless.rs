//! A headless Bevy game on spacelink-bevy: `App::new()` with the plugin, the
//! generated guildmaster bindings unchanged, the `map` and `player` tables
//! mirrored as entities, the local player predicted from a scripted input, and
//! systems that read what arrived this frame (messages) and what is (the
//! status resource, the entities). Nothing waits for the network: start it
//! before the server, or stop the server meanwhile, and the frames go on.
//!
//! ```text
//! cargo run -p spacelink-bevy --example headless -- --server http://127.0.0.1:3000 --database guildmaster --frames 600
//! ```
//!
//! A game with `MinimalPlugins` (or `DefaultPlugins`) has `bevy_time`'s clock
//! run `FixedUpdate`; this example depends on `bevy_app` and `bevy_ecs` only,
//! so its loop runs `FixedUpdate` itself, every fourth frame.

use std::time::{Duration, Instant};

use bevy_app::{FixedUpdate, Update};
use bevy_ecs::prelude::*;
use spacelink::prediction::{Step, Walk};
use spacelink_bevy::prelude::*;

mod shared;
use shared::game_app;
use shared::guildmaster::{JoinArgs, Map, Player};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

/// The join call, once made, and whether it committed.
#[derive(Resource, Default)]
struct Joining {
    ticket: Option<u64>,
    joined: bool,
}

/// Connection news, as it arrives.
fn connection(mut connected: MessageReader<'_, '_, Connected>, mut lost: MessageReader<'_, '_, Disconnected>) {
    for c in connected.read() {
        println!("connected as {} (session {})", c.identity.to_hex(), c.generation);
    }
    for d in lost.read() {
        let why = if d.requested() { "asked for" } else { "lost, reconnecting" };
        println!("disconnected ({why}): {}", d.0.reason.as_deref().unwrap_or("-"));
    }
}

/// Joins once the keyed sets are in, through the `Spacelink` parameter; then walks.
fn join(
    spacelink: Spacelink<'_>,
    mut joining: ResMut<'_, Joining>,
    mut applied: MessageReader<'_, '_, SubscriptionApplied>,
    mut results: MessageReader<'_, '_, ReducerFinished>,
    mut input: ResMut<'_, PredictionInput<Walk>>,
) {
    for a in applied.read() {
        println!("subscription `{}` applied", a.key);
    }
    if joining.ticket.is_none() && spacelink.is_active() {
        let name = format!("bevy-{}", std::process::id());
        joining.ticket = spacelink.call("join", &JoinArgs { name, map_id: 1 }).map(|c| c.ticket());
    }
    for r in results.read() {
        match &r.result {
            Ok(done) if Some(r.ticket) == joining.ticket => {
                println!("{}: committed in {:.1} ms", r.reducer, done.round_trip.as_secs_f64() * 1000.0);
                joining.joined = true;
                input.held = Some(Step { dx: 0.05, dy: 0.0 });
            }
            Ok(_) => {}
            Err(e) => println!("{} failed: {e}", r.reducer),
        }
    }
}

/// Rows as they change: typed messages with their cause.
fn players_joining(mut inserted: MessageReader<'_, '_, RowInserted<Player>>) {
    for m in inserted.read() {
        let by = m.meta.cause.reducer().map_or("a subscription", |r| &*r.reducer);
        println!("player {} is on map {} (by {by})", m.row.name, m.row.map_id);
    }
}

/// Once a second: the status resource, the mirrored entities, the predicted player.
fn report(
    mut frames: Local<'_, u32>,
    status: Res<'_, SpacelinkStatus>,
    maps: Query<'_, '_, &TableRow<Map>>,
    players: Query<'_, '_, &TableRow<Player>>,
    me: Query<'_, '_, &Predicted<Walk>, With<LocalPlayer>>,
    mut corrections: MessageReader<'_, '_, PredictionChanged>,
) {
    let corrected = corrections.read().filter(|c| c.is_correction()).count();
    *frames += 1;
    if !frames.is_multiple_of(60) {
        return;
    }
    let at = me.iter().next().map(|p| (p.shown.x, p.shown.y));
    println!(
        "frame {}: {:?}, {} maps and {} players as entities, me shown at {at:?}, {corrected} corrections",
        *frames,
        status.state,
        maps.iter().count(),
        players.iter().count()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = arg("--server", "http://127.0.0.1:3000");
    let database = arg("--database", "guildmaster");
    let frames: u32 = arg("--frames", "600").parse()?;
    // The plugin, the prediction, `map` and `player` mirrored and subscribed under keys:
    // see `shared/mod.rs`.
    let mut app = game_app(spacelink::Client::builder().with_uri(&server).with_database(&database));
    app.init_resource::<Joining>().add_systems(Update, (connection, join, players_joining, report));

    let frame = Duration::from_secs_f64(1.0 / 60.0);
    for n in 0..frames {
        let started = Instant::now();
        app.update();
        if n.is_multiple_of(4) {
            app.world_mut().run_schedule(FixedUpdate);
        }
        std::thread::sleep(frame.saturating_sub(started.elapsed()));
    }
    if let Some(client) = app.world().get_resource::<SpacelinkClient>() {
        client.shutdown();
    }
    Ok(())
}
