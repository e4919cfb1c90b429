//! The sync actor's messages: what it takes and what it tells.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use spacelink_connection::lib::{ConnectionId, Identity, Timestamp};

use crate::cache::RowChange;
use crate::error::SyncError;
use crate::row::Row;

/// A live query set, as the game holds it; stays valid across reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// Where query set ids come from: one counter shared by the actor and whoever
/// names a set before sending it (the app hands an id back to the game at
/// once, before the actor has seen the request). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SubscriptionIds(Arc<std::sync::atomic::AtomicU64>);

impl Default for SubscriptionIds {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicU64::new(1)))
    }
}

impl SubscriptionIds {
    /// A new id, never handed out before by this counter.
    pub fn next(&self) -> SubscriptionId {
        SubscriptionId(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// What made the cache change: the official SDK's `ctx.event`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Cause {
    /// A query set's initial rows arrived (`OnSubscriptionApplied`).
    SubscriptionApplied,
    /// A query set was dropped and its rows left the cache.
    SubscriptionRemoved,
    /// The reconciliation of the cache with the fresh state after a reconnect.
    Reconciled,
    /// Rows loaded from a cache image at launch, before any session
    /// ([`SyncActor::restore`](crate::SyncActor::restore)).
    Restored,
    /// A reducer's transaction (ours or another client's).
    Reducer(Arc<ReducerCause>),
    /// A transaction the server did not attribute to a reducer call.
    UnknownTransaction,
}

impl Cause {
    /// The reducer call, if a reducer caused it.
    pub fn reducer(&self) -> Option<&ReducerCause> {
        match self {
            Cause::Reducer(r) => Some(r),
            _ => None,
        }
    }
}

/// How a reducer's transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReducerStatus {
    /// It ran and its changes were committed.
    Committed,
    /// It ran and returned this error; nothing was committed.
    Failed(String),
    /// The module ran out of energy.
    OutOfEnergy,
}

/// A reducer call as the server reported it with its transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ReducerCause {
    /// The reducer's name.
    pub reducer: Arc<str>,
    /// Its arguments, in BSATN (generated bindings decode them).
    pub args: Bytes,
    /// Who called it.
    pub caller_identity: Identity,
    /// From which connection (`None` for the scheduler or the server itself).
    pub caller_connection_id: Option<ConnectionId>,
    /// The caller's request id (0 for a call the caller did not number).
    pub request_id: u32,
    /// How it ended.
    pub status: ReducerStatus,
    /// When it ran, by the server's clock.
    pub timestamp: Timestamp,
    /// The energy it used, as reported.
    pub energy_quanta_used: u128,
    /// How long it ran on the server.
    pub execution: std::time::Duration,
}

// ---- Taken by the sync actor ----

/// Subscribe to a set of queries; answers once their rows are in the cache.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<SubscriptionId, SyncError>")]
pub struct Subscribe {
    /// SQL queries, e.g. `SELECT * FROM player`.
    pub queries: Vec<String>,
    /// Broader queries to fall back to if these keep failing.
    pub fallback: Option<Vec<String>>,
    /// The set's id, if the sender already named it (from the actor's
    /// [`SubscriptionIds`]); else the actor names it.
    pub id: Option<SubscriptionId>,
}

/// Drop a query set; its rows leave the cache unless another set holds them.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), SyncError>")]
pub struct Unsubscribe {
    /// The set.
    pub id: SubscriptionId,
}

/// Drop every query set.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct UnsubscribeAll;

/// Make `map` the context: subscribe to the rows of the configured map-context
/// tables on it, then drop the previous map's (no row blinks out in between).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<SubscriptionId, SyncError>")]
pub struct SubscribeToMap {
    /// The map.
    pub map: u32,
}

/// Follow a point: subscribe to the rows of the configured spatial table within
/// `radius` (plus `margin`) of it; `MovePoint` moves it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<SubscriptionId, SyncError>")]
pub struct FollowPoint {
    /// The map.
    pub map: u32,
    /// Where the point is.
    pub x: f32,
    /// Where the point is.
    pub y: f32,
    /// What must always be in the cache around it.
    pub radius: f32,
    /// How far it may move before the subscription moves.
    pub margin: f32,
}

/// The followed point moved (cheap: send it every frame); the subscription
/// moves only when the point leaves its margin.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct MovePoint {
    /// The map.
    pub map: u32,
    /// Where the point is now.
    pub x: f32,
    /// Where the point is now.
    pub y: f32,
}

/// The cached rows of the spatial table within `radius` of a point (from the
/// spatial index). [`SyncHandle::entities_in_range`](crate::SyncHandle::entities_in_range)
/// answers the same from the cache without this round trip.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<Row>")]
pub struct GetEntitiesInRange {
    /// The map.
    pub map: u32,
    /// The point.
    pub x: f32,
    /// The point.
    pub y: f32,
    /// The radius.
    pub radius: f32,
}

/// Ask for every query set's status (for debugging).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<SubscriptionInfo>")]
pub struct GetSubscriptions;

/// Where a query set is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Sent, waiting for its rows.
    Pending,
    /// Its rows are in the cache and it is receiving updates.
    Applied,
    /// Failed; retried after a delay.
    Retrying {
        /// The last error.
        error: String,
    },
    /// Gave up (after retries and any fallback).
    Failed {
        /// The last error.
        error: String,
    },
    /// Waiting for a session (offline, or reconnecting).
    Offline,
}

/// One query set, for debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The set.
    pub id: SubscriptionId,
    /// Its queries (the fallback ones, once it fell back).
    pub queries: Vec<String>,
    /// Its status.
    pub status: SubscriptionStatus,
    /// Failed attempts so far.
    pub failures: u32,
}

// ---- Told by the sync actor ----

/// The cache changed (the design's `OnStateUpdated`, with the rows).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RowsChanged {
    /// The session the change came from.
    pub generation: u64,
    /// The minimal changes, in order.
    pub changes: Arc<Vec<RowChange>>,
    /// Whether this is the reconciliation of a reconnect (stale cache against fresh state).
    pub reconciled: bool,
    /// What caused it. A reducer call's transaction that changed nothing in
    /// the cache is still told (with no changes), so that its caller knows the
    /// cache has seen it.
    pub cause: Cause,
}

/// Something happened to a query set.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SubscriptionEvent {
    /// Its rows are in the cache (`OnSubscriptionApplied`).
    Applied {
        /// The set.
        id: SubscriptionId,
    },
    /// The server refused it (`OnSubscriptionError`); `retrying` says whether it is tried again.
    Failed {
        /// The set.
        id: SubscriptionId,
        /// The server's message.
        error: String,
        /// Whether another attempt (or the fallback) follows.
        retrying: bool,
    },
    /// It was dropped.
    Removed {
        /// The set.
        id: SubscriptionId,
    },
    /// It was dropped before it applied: it never reports applied and its rows
    /// never reach the cache.
    Cancelled {
        /// The set.
        id: SubscriptionId,
    },
    /// An update could not be applied to the cache (the connection could not
    /// decode it under its limits), so the cache may have fallen behind the
    /// server: the set is subscribed again and, once every set is applied, the
    /// cache is reconciled with the server's current rows (row events only for
    /// real differences, with [`Cause::Reconciled`]); `Applied` follows.
    Resubscribing {
        /// The set.
        id: SubscriptionId,
        /// What could not be applied.
        reason: String,
    },
}

/// Who hears the sync actor. Given to it when it is built.
#[derive(Debug, Clone, Default)]
pub struct SyncListeners {
    /// Cache changes.
    pub changes: Vec<Recipient<RowsChanged>>,
    /// Query set events.
    pub subscriptions: Vec<Recipient<SubscriptionEvent>>,
}
