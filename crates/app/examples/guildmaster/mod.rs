//! guildmaster's bindings, as `spacelink generate` writes them (the file
//! checked in as `tests/bindings/guildmaster.rs`, kept fresh by
//! `tests/bindings.rs`), and its interest-management settings: shared by the
//! examples (`mod guildmaster;`) and the end-to-end tests
//! (`#[path = "../examples/guildmaster/mod.rs"] mod guildmaster;`). Each user
//! takes what it needs.
#![allow(dead_code, unused_imports)]

#[path = "../../tests/bindings/guildmaster.rs"]
mod generated;

pub use generated::*;

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
