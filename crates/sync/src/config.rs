//! The sync actor's settings.
//!
//! Interest management is the game's to describe: which table holds things
//! with a position, which of its columns hold the map, the position and the
//! grid cell, and which tables make up a map's context. Nothing here names a
//! game's tables; without [`SpatialConfig`] there is no spatial index and no
//! followed point, without [`MapContextConfig`] no map context.
//!
//! A table the game only listens to can keep no rows
//! ([`SyncConfig::events_only`]): its changes are still told, with typed
//! rows, and the memory it costs stays flat whatever it streams (see
//! [`crate::cache`], "Events-only tables").

use std::time::Duration;

/// Settings of state synchronisation.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// Attempts for a refused query set before it falls back or fails (default 3).
    pub max_retries: u32,
    /// Delay before the first retry; doubles after each (default 500 ms).
    pub retry_delay: Duration,
    /// The spatial table, indexed for range queries and followed by
    /// `FollowPoint` (default: none).
    pub spatial: Option<SpatialConfig>,
    /// The tables of a map's context, for `SubscribeToMap` (default: none).
    pub map_context: Option<MapContextConfig>,
    /// The tables that keep no rows in the cache (default: none): every
    /// insert, update and delete of them is still told (a `RowsChanged`, the
    /// row callbacks), its rows decoded as any table's, but nothing is stored,
    /// no reference counts are kept (a row two queries match fires once per
    /// transaction), and every read sees them empty (the spatial and unique
    /// indexes included: an events-only spatial table indexes nothing). A reconnect's fresh rows
    /// of such a table fire nothing (there is nothing to compare them with),
    /// nor do its changes while the fresh state is collected.
    pub events_only: Vec<String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_delay: Duration::from_millis(500),
            spatial: None,
            map_context: None,
            events_only: Vec::new(),
        }
    }
}

/// The table of things with a position, and the columns that place them.
#[derive(Debug, Clone, PartialEq)]
pub struct SpatialConfig {
    /// The table.
    pub table: String,
    /// Its map column (a `u32`).
    pub map_column: String,
    /// Its position column: a product whose first two fields are `f32` x and y.
    pub position_column: String,
    /// Its grid cell's x column (an integer: `floor(x / cell_size)`), which the
    /// followed point's query filters on.
    pub cell_x_column: String,
    /// Its grid cell's y column.
    pub cell_y_column: String,
    /// The grid's cell size, in map units (the module's, and the index's).
    pub cell_size: f32,
}

/// The tables that make up a map's context.
#[derive(Debug, Clone, PartialEq)]
pub struct MapContextConfig {
    /// The column, in each of them, that holds the map.
    pub map_column: String,
    /// The tables (those without the column are left out).
    pub tables: Vec<String>,
}
