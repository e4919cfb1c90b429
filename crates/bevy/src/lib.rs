//! spacelink for Bevy: a plugin on `bevy_app` and `bevy_ecs` only (no
//! renderer, no window) that keeps a game connected to SpacetimeDB through
//! spacelink and speaks Bevy's own terms.
//!
//! - [`SpacelinkPlugin`] builds the client from a builder or from settings
//!   (profiles, hot reload) without blocking `Startup`, and drains it once per
//!   frame in `PreUpdate` under the public [`SpacelinkSet`]s, so that what
//!   arrived is readable by `Update` systems in the same frame.
//! - [`messages`]: connection, state and health changes, lost or requested
//!   disconnects, reducer results, keyed subscriptions, prediction changes,
//!   performance alerts; [`SpacelinkStatus`] is the status as a resource; the
//!   [`Spacelink`] system parameter calls reducers, [`SpacelinkSubscriptions`]
//!   subscribes under the game's keys.
//! - [`tables`]: typed row messages per registered table, and rows mirrored
//!   as entities (a reconnect changes only what really changed).
//! - [`prediction`]: the local player predicted in `FixedUpdate` from the
//!   game's input, its smoothed state written for rendering.
//!
//! ```no_run
//! use bevy_app::{App, Update};
//! use bevy_ecs::prelude::*;
//! use spacelink_bevy::prelude::*;
//! # #[derive(spacelink::connection::lib::de::Deserialize, Clone, Debug)]
//! # #[sats(crate = spacelink::connection::lib)]
//! # struct Player { name: String }
//!
//! fn joined(mut rows: MessageReader<RowInserted<Player>>) {
//!     for m in rows.read() {
//!         println!("{} is here ({:?})", m.row.name, m.meta.cause);
//!     }
//! }
//!
//! let builder = spacelink::Client::builder().with_uri("http://127.0.0.1:3000").with_database("guildmaster");
//! App::new()
//!     .add_plugins(SpacelinkPlugin::new(builder))
//!     .mirror_table::<Player>("player")
//!     .subscribe_keyed("players", &["SELECT * FROM player"])
//!     .add_systems(Update, joined)
//!     .run();
//! ```

pub mod messages;
pub mod params;
pub mod plugin;
pub mod prediction;
pub mod settings;
pub mod tables;

pub use messages::{
    Connected, ConnectionStateChanged, Disconnected, HealthChanged, PerformanceAlerted, PredictionChanged,
    ReducerFinished, SpacelinkEvent, SubscriptionApplied, SubscriptionFailed,
};
pub use params::{Spacelink, SpacelinkSubscriptions};
pub use plugin::{SpacelinkClient, SpacelinkPlugin, SpacelinkSet, SpacelinkStatus, SubscriptionKeys};
pub use prediction::{LocalPlayer, LocalPrediction, Predicted, PredictionInput, PredictionPlugin};
pub use settings::{SettingsChanged, SettingsWatching};
pub use tables::{
    RowDeleted, RowEntities, RowInserted, RowMeta, RowType, RowUpdated, SpacelinkAppExt, TableHandle, TableRow,
};

/// Everything a game's systems use, in one import.
pub mod prelude {
    pub use crate::{
        Connected, ConnectionStateChanged, Disconnected, HealthChanged, LocalPlayer, LocalPrediction,
        PerformanceAlerted, Predicted, PredictionChanged, PredictionInput, PredictionPlugin, ReducerFinished,
        RowDeleted, RowEntities, RowInserted, RowMeta, RowType, RowUpdated, SettingsChanged, Spacelink,
        SpacelinkAppExt, SpacelinkClient, SpacelinkEvent, SpacelinkPlugin, SpacelinkSet, SpacelinkStatus,
        SpacelinkSubscriptions, SubscriptionApplied, SubscriptionFailed, TableHandle, TableRow,
    };
}
