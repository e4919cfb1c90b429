//! guildmaster's rows and reducer arguments, as the official code generator
//! writes them (SATS derives), and its interest-management settings: shared
//! by the examples (`mod guildmaster;`) and the end-to-end tests
//! (`#[path = "../examples/guildmaster/mod.rs"] mod guildmaster;`). Each user
//! takes what it needs. `spacelink generate` (issue 10) will write this.
#![allow(dead_code)]

use spacelink::connection::lib::{Identity, Timestamp};

/// A 2D position.
#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, Copy, PartialEq)]
#[sats(crate = spacetimedb_lib)]
pub struct Vec2 {
    pub x: f32,
    pub y: f32,
}

/// A row of `player`.
#[derive(spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
pub struct Player {
    pub identity: Identity,
    pub player_id: u64,
    pub name: String,
    pub online: bool,
    pub map_id: u32,
    pub pos: Vec2,
    pub last_input_seq: u32,
    pub moves_applied: u32,
    pub hp: i32,
    pub joined_at: Timestamp,
}

/// What an entity is.
#[derive(spacetimedb_lib::de::Deserialize, Debug, Clone, Copy, PartialEq)]
#[sats(crate = spacetimedb_lib)]
pub enum EntityKind {
    Npc,
    Spawned,
    Pickup,
}

/// A row of `entity`.
#[derive(spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
pub struct Entity {
    pub entity_id: u64,
    pub map_id: u32,
    pub kind: EntityKind,
    pub pos: Vec2,
    pub cell_x: i32,
    pub cell_y: i32,
    pub hp: i32,
}

/// `join(name, map_id)`.
#[derive(spacetimedb_lib::ser::Serialize, Debug, Clone)]
#[sats(crate = spacetimedb_lib)]
pub struct JoinArgs {
    pub name: String,
    pub map_id: u32,
}

/// `move_player(seq, dx, dy)`: the module drops a repeated `seq`.
#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, Copy)]
#[sats(crate = spacetimedb_lib)]
pub struct MovePlayerArgs {
    pub seq: u32,
    pub dx: f32,
    pub dy: f32,
}

/// Interest management in guildmaster's terms: `entity` is the spatial table
/// (`map_id`, `pos`, a 10-unit grid in `cell_x`/`cell_y`); a map's context is
/// its entities, items and players.
pub fn sync_config() -> spacelink::SyncConfig {
    spacelink::SyncConfig {
        spatial: Some(spacelink::sync::SpatialConfig {
            table: "entity".into(),
            map_column: "map_id".into(),
            position_column: "pos".into(),
            cell_x_column: "cell_x".into(),
            cell_y_column: "cell_y".into(),
            cell_size: 10.0,
        }),
        map_context: Some(spacelink::sync::MapContextConfig {
            map_column: "map_id".into(),
            tables: vec!["entity".into(), "item".into(), "player".into()],
        }),
        ..spacelink::SyncConfig::default()
    }
}
