//! The sync actor's settings.

use std::time::Duration;

/// Settings of state synchronisation.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// Attempts for a refused query set before it falls back or fails (default 3).
    pub max_retries: u32,
    /// Delay before the first retry; doubles after each (default 500 ms).
    pub retry_delay: Duration,
    /// The table of things with a position (default `entity`): indexed for
    /// range queries, and followed by `FollowPoint`.
    pub spatial_table: String,
    /// Tables that make up a map's context for `SubscribeToMap` (default entity, item, player).
    pub map_tables: Vec<String>,
    /// Cell size of the module's `cell_x`/`cell_y` columns (default 10).
    pub cell_size: f32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_delay: Duration::from_millis(500),
            spatial_table: "entity".into(),
            map_tables: vec!["entity".into(), "item".into(), "player".into()],
            cell_size: 10.0,
        }
    }
}
