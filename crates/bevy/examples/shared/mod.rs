//! What the headless example and the end-to-end test share: guildmaster's
//! generated bindings (unchanged, from `crates/app`), the local player as a
//! predicted entity (its row in `player`, its inputs through `move_player`,
//! which drops repeats of a sequence number), and the game's app: the plugin,
//! the prediction, `map` and `player` mirrored, both subscribed under keys.
#![allow(dead_code, unused_imports)]

#[path = "../../../app/examples/guildmaster/mod.rs"]
pub mod guildmaster;

use bevy_app::App;
use guildmaster::{Map, MovePlayerArgs, Player};
use spacelink::connection::lib::Identity;
use spacelink::prediction::{Position, PredictionConfig, Step, Walk};
use spacelink::prediction_link::PredictedEntity;
use spacelink::ClientBuilder;
use spacelink_bevy::prelude::*;

/// The game's app on `builder` (given guildmaster's embedded schema and row types here).
pub fn game_app(builder: ClientBuilder) -> App {
    let builder = builder.with_schema(guildmaster::schema()).with_row_types(guildmaster::row_types());
    let mut app = App::new();
    app.add_plugins(SpacelinkPlugin::new(builder))
        .add_plugins(PredictionPlugin::new(Walk::default(), PredictionConfig::default(), my_player))
        .mirror_table::<Map>(guildmaster::MapTableHandle::NAME)
        .mirror_table::<Player>(guildmaster::PlayerTableHandle::NAME)
        .subscribe_keyed("maps", &["SELECT * FROM map"])
        .subscribe_keyed("players", &["SELECT * FROM player"]);
    app
}

/// Our player on the server, for [`spacelink_bevy::PredictionPlugin`].
pub fn my_player(me: Identity) -> PredictedEntity<Walk> {
    PredictedEntity {
        table: guildmaster::PlayerTableHandle::NAME.into(),
        reducer: "move_player".into(),
        read_row: std::sync::Arc::new(move |row| {
            let p: Player = spacelink::connection::sats::bsatn::from_slice(row).ok()?;
            (p.identity == me).then_some((Position { x: p.pos.x, y: p.pos.y }, p.last_input_seq))
        }),
        encode_input: std::sync::Arc::new(|seq, step: &Step| {
            let args = MovePlayerArgs { seq, dx: step.dx, dy: step.dy };
            // The arguments are plain numbers: they always encode.
            spacelink::connection::sats::bsatn::to_vec(&args).unwrap_or_default().into()
        }),
    }
}
