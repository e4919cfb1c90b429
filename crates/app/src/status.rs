//! The client's status, readable from any thread without waiting.
//!
//! One [`Status`] snapshot, replaced whole (an `ArcSwap`) each time the tree
//! tells the client something that changes it: the connection's state and
//! health, who we are, the breaker, the schema, each query set. The game reads
//! it with [`crate::Client::status`] (an `Arc` load: no lock, no `await`, no
//! round trip), from its frame loop or from any other thread. The writers are
//! the client's event sink (on the runtime thread) and the game's own calls
//! (a subscription it makes is `Pending` at once); `rcu` keeps their updates whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use spacelink_connection::lib::{ConnectionId, Identity};
use spacelink_connection::{BreakerKind, ConnectionState, NetworkHealth, Token};
use spacelink_sync::SubscriptionId;

/// Where the module's schema is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SchemaStatus {
    /// Not known yet: being fetched (tables read empty meanwhile).
    #[default]
    Pending,
    /// Fetching failed this many times so far; the last error. Retried.
    Retrying {
        /// Failed attempts so far.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// Known: tables read the cache, subscriptions apply.
    Ready,
    /// Given by the game (e.g. generated bindings) and the server's differs.
    Mismatch {
        /// The first difference found.
        difference: String,
    },
}

/// Where a query set is, as the game sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionState {
    /// Asked for; its rows are not in the cache yet.
    Pending,
    /// Its rows are in the cache and it receives updates.
    Applied,
    /// The server refused it; `retrying` says whether it is tried again.
    Failed {
        /// The server's message.
        error: String,
        /// Whether another attempt (or the fallback) follows.
        retrying: bool,
    },
    /// Dropped before it applied.
    Cancelled,
}

/// A snapshot of everything the game may want to draw or decide on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The connection's state.
    pub state: ConnectionState,
    /// The current (or last) session's generation.
    pub generation: u64,
    /// Who we are, once a server told us.
    pub identity: Option<Identity>,
    /// The connection id the server knows us by.
    pub connection_id: Option<ConnectionId>,
    /// The token to present (its `Debug` and `Display` never show it).
    pub token: Option<Token>,
    /// The link's health, once measured.
    pub health: Option<NetworkHealth>,
    /// The circuit breaker.
    pub breaker: BreakerKind,
    /// The module's schema.
    pub schema: SchemaStatus,
    /// Every live query set.
    pub subscriptions: BTreeMap<SubscriptionId, SubscriptionState>,
    /// Reducer calls made with [`crate::Reducers`] and not answered yet.
    pub calls_pending: usize,
    /// Queue entries waiting for the next `frame_tick`.
    pub events_pending: usize,
    /// Whether the game asked for the shutdown.
    pub shut_down: bool,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: ConnectionState::Disconnected,
            generation: 0,
            identity: None,
            connection_id: None,
            token: None,
            health: None,
            breaker: BreakerKind::Closed,
            schema: SchemaStatus::Pending,
            subscriptions: BTreeMap::new(),
            calls_pending: 0,
            events_pending: 0,
            shut_down: false,
        }
    }
}

impl Status {
    /// Connected, with a session the server answered.
    pub fn is_active(&self) -> bool {
        self.state == ConnectionState::Connected && self.identity.is_some()
    }
}

/// The shared cell: written by the tree's side, read by anyone.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusCell {
    cell: Arc<ArcSwap<Status>>,
    /// Counted apart (every call changes it): read into each snapshot.
    pub(crate) calls_pending: Arc<AtomicUsize>,
}

impl StatusCell {
    /// The current snapshot, with the live counters.
    pub(crate) fn load(&self, events_pending: usize) -> Status {
        let mut status = Status::clone(&self.cell.load());
        status.calls_pending = self.calls_pending.load(Ordering::Relaxed);
        status.events_pending = events_pending;
        status
    }

    /// Changes the snapshot (whole: concurrent writers never lose an update).
    pub(crate) fn update(&self, change: impl Fn(&mut Status)) {
        self.cell.rcu(|current| {
            let mut next = Status::clone(current);
            change(&mut next);
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_lose_no_update_and_readers_never_wait() {
        let cell = StatusCell::default();
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for i in 0..250u64 {
                        cell.update(|s| {
                            s.subscriptions.insert(SubscriptionId(w * 1000 + i), SubscriptionState::Pending);
                        });
                    }
                })
            })
            .collect();
        for _ in 0..100 {
            let _ = cell.load(0).subscriptions.len();
        }
        for w in writers {
            w.join().expect("writer");
        }
        assert_eq!(cell.load(0).subscriptions.len(), 1000);
    }

    #[test]
    fn active_means_connected_and_answered() {
        let mut s = Status::default();
        assert!(!s.is_active());
        s.state = ConnectionState::Connected;
        assert!(!s.is_active(), "no identity yet");
        s.identity = Some(Identity::ZERO);
        assert!(s.is_active());
    }
}
