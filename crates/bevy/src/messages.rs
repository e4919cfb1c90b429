//! What the plugin tells the game's systems, in Bevy's own terms: one
//! [`Message`] type per kind of news, written in [`PreUpdate`](bevy_app::PreUpdate)
//! by [`SpacelinkSet::Drain`](crate::SpacelinkSet::Drain) and readable with a
//! `MessageReader` by any system that runs after it in the same frame (all of
//! `Update`). The typed row messages of a registered table are in [`crate::tables`].
//!
//! Every message here mirrors one [`spacelink::Event`]; [`SpacelinkEvent`]
//! carries every event as it came, in order, for a game that wants them all.

use std::sync::Arc;

use bevy_ecs::message::Message;
use spacelink::connection::lib::{ConnectionId, Identity};
use spacelink::connection::{NetworkHealth, Token};
use spacelink::prediction::PredictionEvent;
use spacelink::{ConnectionState, Disconnect, Event, PerformanceAlert, ReducerError, ReducerResult};

/// Every event of the client, as [`spacelink::Client::frame_tick`] returned it, in order.
#[derive(Message, Debug, Clone)]
pub struct SpacelinkEvent(pub Event);

/// A session is up: who we are, and the token to present next time (its `Debug` never shows it).
#[derive(Message, Debug, Clone)]
pub struct Connected {
    /// The session (each reconnect is a new one).
    pub generation: u64,
    /// Our identity (the same across reconnects: the token is reused).
    pub identity: Identity,
    /// This session's connection id.
    pub connection_id: ConnectionId,
    /// The token to keep.
    pub token: Token,
}

/// A session ended: asked for (the game shut the client down) or lost (and why).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Disconnected(pub Disconnect);

impl Disconnected {
    /// Whether the game asked for it.
    pub fn requested(&self) -> bool {
        self.0.requested
    }

    /// Whether it was lost (the client reconnects by itself).
    pub fn lost(&self) -> bool {
        !self.0.requested
    }
}

/// The connection's state changed.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStateChanged {
    /// Before.
    pub from: ConnectionState,
    /// Now.
    pub to: ConnectionState,
    /// Why, when there is something to say.
    pub reason: Option<String>,
}

/// The link's health changed (latency, loss, status): a dead server is noticed
/// within the heartbeat interval plus the dead-peer timeout.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct HealthChanged(pub NetworkHealth);

/// A reducer call made by this client ended (ours: [`crate::Spacelink::call`]
/// and the generated reducer methods), after the row messages of its transaction.
#[derive(Message, Debug, Clone)]
pub struct ReducerFinished {
    /// The call, as [`spacelink::ReducerCall::ticket`] names it.
    pub ticket: u64,
    /// The reducer.
    pub reducer: Arc<str>,
    /// Committed, or why not (a reducer that ran and failed is `Err(ReducerError::Failed)`).
    pub result: Result<ReducerResult, ReducerError>,
}

/// A keyed query set's rows are in the cache (again after each reconnect).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionApplied {
    /// The game's key for the set.
    pub key: String,
}

/// The server refused a keyed query set.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFailed {
    /// The game's key for the set.
    pub key: String,
    /// The server's message.
    pub error: String,
    /// Whether another attempt (or the fallback) follows.
    pub retrying: bool,
}

/// The local prediction was confirmed, corrected, rolled back or resynced.
#[derive(Message, Debug, Clone)]
pub struct PredictionChanged(pub PredictionEvent);

impl PredictionChanged {
    /// Whether the shown state was corrected (an input rolled back, a
    /// reconciliation that moved it, or a resync), not merely confirmed.
    pub fn is_correction(&self) -> bool {
        !matches!(self.0, PredictionEvent::Confirmed { .. })
    }
}

/// A performance alert was raised or recovered (the client built with telemetry).
#[derive(Message, Debug, Clone, PartialEq)]
pub struct PerformanceAlerted(pub PerformanceAlert);
