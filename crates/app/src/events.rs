//! The game's events: what the tree's actors tell, queued for the game's
//! thread, which drains them in [`crate::Client::frame_tick`].
//!
//! # Queue policy
//!
//! One unbounded channel from the actors' thread to the game's, so that no
//! event is ever lost and no actor ever waits for the game. What bounds it is
//! that each entry is small and shared: a transaction's row changes travel as
//! one entry (the sync actor's `Arc`'d change list, expanded into row events
//! only on the game's thread, in [`row_events`]), and what can arrive between two
//! frames is bounded by what the server sends in that time. A game that stops
//! calling `frame_tick` lets it grow: the depth is the gauge
//! `spacelink_client_events_pending` (also [`crate::Client::pending_events`]),
//! and a warning is logged each time it crosses [`HIGH_WATER`] entries.
//! `frame_tick` drains only what was queued when it began, so one frame's work
//! is bounded even while the actors keep sending.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use spacelink_auth::AuthEvent;
use spacelink_connection::lib::{ConnectionId, Identity};
use spacelink_connection::{ConnectionState, IdentityReceived, NetworkHealth, ResilienceEvent, StateChanged, Token};
use spacelink_prediction::PredictionEvent;
use spacelink_reducers::{ReducerError, ReducerEvent, ReducerResult};
use spacelink_sync::{Cause, ReducerCause, Row, RowChange, RowKey, RowsChanged, SubscriptionEvent};
use spacelink_telemetry::{PerformanceAlert, PerformanceStats, StatsUpdated};
use tokio::sync::mpsc;

use crate::status::{StatusCell, SubscriptionState};

/// The queue depth at which a warning is logged (and again at each multiple).
pub const HIGH_WATER: usize = 65_536;

/// The depth gauge's name.
pub const EVENTS_PENDING: &str = spacelink_connection::metric_names::CLIENT_EVENTS_PENDING;

/// Something the game hears, in the order it happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A session is up and the server told us who we are (`on_connect`).
    Connected {
        /// The session.
        generation: u64,
        /// Our identity.
        identity: Identity,
        /// This session's connection id.
        connection_id: ConnectionId,
        /// The token to present next time (to keep; its `Debug` never shows it).
        token: Token,
    },
    /// A session ended (`on_disconnect`): asked for, or lost (and why).
    Disconnected(Disconnect),
    /// The module's schema is known, or could not be had yet, or differs
    /// from the one the game gave.
    Schema(SchemaEvent),
    /// A reducer's transaction reached the cache (ours or another client's),
    /// after its row events: which reducer, who called it, with what, when
    /// (`Client::on_reducer`, the official SDK's `on_<reducer>`).
    Transaction(Arc<ReducerCause>),
    /// The connection's state changed (`on_disconnect` is a change away from `Connected`).
    StateChanged {
        /// Before.
        from: ConnectionState,
        /// Now.
        to: ConnectionState,
        /// Why, when there is something to say.
        reason: Option<String>,
    },
    /// The link's health changed (latency, loss, status).
    HealthChanged(NetworkHealth),
    /// A row was inserted, updated or deleted in the cache.
    Row(RowEvent),
    /// The cache on disk was restored, ignored or saved (see [`crate::disk_cache`]).
    DiskCache(crate::disk_cache::DiskCacheEvent),
    /// A query set was applied, refused or removed.
    Subscription(SubscriptionEvent),
    /// A call made with [`crate::Reducers::call`] ended.
    ReducerResult {
        /// The call, as [`crate::ReducerCall::ticket`] names it.
        ticket: u64,
        /// The reducer.
        reducer: Arc<str>,
        /// Its result.
        result: Result<ReducerResult, ReducerError>,
    },
    /// A reducer call made through the raw reducer client ended without an answer.
    ReducerFailed {
        /// The reducer.
        reducer: String,
        /// Why.
        error: ReducerError,
    },
    /// Authentication: accepted, refused, refreshed.
    Auth(AuthEvent),
    /// A performance alert was raised or recovered (telemetry configured).
    Alert(PerformanceAlert),
    /// The performance monitor's statistics over its window, once per
    /// sampling interval (telemetry configured).
    Stats(Box<PerformanceStats>),
    /// Prediction confirmed, corrected, rolled back or resynced (a prediction
    /// started with [`crate::Client::prediction_listeners`]).
    Prediction(PredictionEvent),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Whether the game asked for it ([`crate::Client::shutdown`]).
    pub requested: bool,
    /// Why, when there is something to say (for a lost session, the error).
    pub reason: Option<String>,
    /// The state the connection went to (`Reconnecting`: it is coming back by itself).
    pub to: ConnectionState,
}

/// What became of the module's schema at start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaEvent {
    /// Known: state sync runs, tables read the cache.
    Ready,
    /// A fetch failed; another follows after `retry_in`.
    FetchFailed {
        /// Why.
        error: String,
        /// Failed attempts so far.
        attempts: u32,
        /// When the next attempt goes.
        retry_in: Duration,
    },
    /// The schema the game gave (say, its generated bindings') is not the
    /// server's module: rows may not decode. Update the bindings.
    Mismatch {
        /// The first difference found.
        difference: String,
    },
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowEventKind {
    /// It was not cached; now it is.
    Insert,
    /// It has new contents, same key (`old` holds the row before).
    Update,
    /// It is gone.
    Delete,
}

/// One row change, as the game hears it.
#[derive(Debug, Clone)]
pub struct RowEvent {
    /// The row's table.
    pub table: Arc<str>,
    /// What happened.
    pub kind: RowEventKind,
    /// The row's primary key (its BSATN), as the cache keys it.
    pub key: RowKey,
    /// The row (for a delete, as it was cached; for an update, after): the
    /// cache's own row, decoded once and shared (`row.get::<T>()` for the
    /// table's registered type, `row.bytes()` for its BSATN).
    pub row: Row,
    /// For an update, the row before.
    pub old: Option<Row>,
    /// Whether this is the reconciliation of a reconnect.
    pub reconciled: bool,
    /// What caused it: a reducer (which, who called it, when), a
    /// subscription applied or removed, the reconciliation after a reconnect.
    pub cause: Cause,
}

/// What travels on the queue: row changes stay one shared entry per transaction.
#[derive(Debug)]
pub(crate) enum Queued {
    Rows(RowsChanged),
    Event(Event),
}

/// Converts the sync actor's changes into the game's row events, in order,
/// followed by the transaction's [`Event::Transaction`] if a reducer caused it.
///
/// The one place where sync's `RowChange` meets the game's events.
pub(crate) fn row_events(msg: &RowsChanged, out: &mut Vec<Event>) {
    out.extend(msg.changes.iter().map(|change| {
        let (table, key, kind, row, old) = match change {
            RowChange::Insert { table, key, row } => (table, key, RowEventKind::Insert, row, None),
            RowChange::Update { table, key, old, new } => (table, key, RowEventKind::Update, new, Some(old.clone())),
            RowChange::Delete { table, key, row } => (table, key, RowEventKind::Delete, row, None),
        };
        Event::Row(RowEvent {
            table: table.clone(),
            key: key.clone(),
            kind,
            row: row.clone(),
            old,
            reconciled: msg.reconciled,
            cause: msg.cause.clone(),
        })
    }));
    if let Cause::Reducer(cause) = &msg.cause {
        out.push(Event::Transaction(cause.clone()));
    }
}

/// The actors' end of the queue: cloneable, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct EventSender {
    tx: mpsc::UnboundedSender<Queued>,
    depth: Arc<AtomicUsize>,
    /// Whether the game reads the queue (`frame_tick`); if not, nothing is queued.
    read: bool,
}

/// The game's end of the queue.
#[derive(Debug)]
pub(crate) struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Queued>,
    depth: Arc<AtomicUsize>,
}

/// A new queue, read by the game.
#[cfg(test)]
pub(crate) fn queue() -> (EventSender, EventReceiver) {
    queue_read(true)
}

/// A new queue that the game reads (`read`) or does not (a game that hears
/// everything through actor listeners: nothing is queued, nothing kept).
pub(crate) fn queue_read(read: bool) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let depth = Arc::new(AtomicUsize::new(0));
    (EventSender { tx, depth: depth.clone(), read }, EventReceiver { rx, depth })
}

impl EventSender {
    pub(crate) fn push(&self, item: Queued) {
        if !self.read {
            return;
        }
        // Counted before it is sent, so the receiver never sees it uncounted.
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        if self.tx.send(item).is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return; // The client is gone: nobody to tell.
        }
        metrics::gauge!(EVENTS_PENDING).set(depth as f64);
        if depth.is_multiple_of(HIGH_WATER) {
            tracing::warn!(pending = depth, "the game is not draining spacelink's events (call Client::frame_tick)");
        }
    }

    pub(crate) fn event(&self, event: Event) {
        self.push(Queued::Event(event));
    }
}

impl EventReceiver {
    /// How many entries wait.
    pub(crate) fn pending(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Moves what was queued when called (no more) into `out` as events, in order.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Event>) {
        let mut n = self.pending();
        while n > 0 {
            let Ok(item) = self.rx.try_recv() else { break };
            n -= 1;
            let depth = self.depth.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics::gauge!(EVENTS_PENDING).set(depth as f64);
            match item {
                Queued::Rows(rows) => row_events(&rows, out),
                Queued::Event(event) => out.push(event),
            }
        }
    }
}

/// The actor that hears the tree on the client's behalf, queues what it
/// hears and keeps the client's [`crate::Status`] current.
#[derive(Debug)]
pub(crate) struct EventSink {
    pub(crate) events: EventSender,
    pub(crate) status: StatusCell,
    /// Raised by `Client::shutdown`: a session that ends after it was asked to.
    pub(crate) requested: Arc<AtomicBool>,
}

impl Actor for EventSink {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        self.status.update(|s| {
            s.state = msg.to;
            s.generation = s.generation.max(msg.generation);
        });
        if msg.from == ConnectionState::Connected && msg.to != ConnectionState::Connected {
            self.events.event(Event::Disconnected(Disconnect {
                requested: self.requested.load(Ordering::SeqCst),
                reason: msg.reason.clone(),
                to: msg.to,
            }));
        }
        self.events.event(Event::StateChanged { from: msg.from, to: msg.to, reason: msg.reason });
    }
}

impl Handler<IdentityReceived> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: IdentityReceived, _: &mut Self::Context) {
        self.status.update(|s| {
            s.identity = Some(msg.identity);
            s.connection_id = Some(msg.connection_id);
            s.token = Some(msg.token.clone());
        });
        self.events.event(Event::Connected {
            generation: msg.generation,
            identity: msg.identity,
            connection_id: msg.connection_id,
            token: msg.token,
        });
    }
}

impl Handler<ResilienceEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: ResilienceEvent, _: &mut Self::Context) {
        match msg {
            ResilienceEvent::HealthChanged(health) => {
                self.status.update(|s| s.health = Some(health.clone()));
                self.events.event(Event::HealthChanged(health));
            }
            ResilienceEvent::BreakerChanged { to, .. } => self.status.update(|s| s.breaker = to),
            _ => {}
        }
    }
}

impl Handler<RowsChanged> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: RowsChanged, _: &mut Self::Context) {
        // A reducer's transaction that changed nothing here still goes: its
        // caller's result waits for it (see `Client::frame_tick`).
        if !msg.changes.is_empty() || matches!(msg.cause, Cause::Reducer(_)) {
            self.events.push(Queued::Rows(msg));
        }
    }
}

impl Handler<SubscriptionEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: SubscriptionEvent, _: &mut Self::Context) {
        self.status.update(|s| match &msg {
            SubscriptionEvent::Applied { id } => {
                s.subscriptions.insert(*id, SubscriptionState::Applied);
            }
            SubscriptionEvent::Failed { id, error, retrying } => {
                let state = SubscriptionState::Failed { error: error.clone(), retrying: *retrying };
                s.subscriptions.insert(*id, state);
            }
            SubscriptionEvent::Removed { id } => {
                s.subscriptions.remove(id);
            }
            SubscriptionEvent::Cancelled { id } => {
                s.subscriptions.insert(*id, SubscriptionState::Cancelled);
            }
            // Its rows stay in the cache until the reconciliation; `Applied` follows.
            SubscriptionEvent::Resubscribing { .. } => {}
        });
        self.events.event(Event::Subscription(msg));
    }
}

impl Handler<ReducerEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: ReducerEvent, _: &mut Self::Context) {
        // Calls made through `Reducers::call` report through their own
        // completion; this is for calls made through the raw reducer client.
        if let ReducerEvent::Failed { reducer, error, .. } = msg {
            self.events.event(Event::ReducerFailed { reducer, error });
        }
    }
}

impl Handler<AuthEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: AuthEvent, _: &mut Self::Context) {
        self.events.event(Event::Auth(msg));
    }
}

impl Handler<PredictionEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: PredictionEvent, _: &mut Self::Context) {
        self.events.event(Event::Prediction(msg));
    }
}

impl Handler<StatsUpdated> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: StatsUpdated, _: &mut Self::Context) {
        self.events.event(Event::Stats(Box::new(msg.0)));
    }
}

impl Handler<PerformanceAlert> for EventSink {
    type Result = ();
    fn handle(&mut self, msg: PerformanceAlert, _: &mut Self::Context) {
        self.events.event(Event::Alert(msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: &'static [u8]) -> RowKey {
        RowKey::from(bytes)
    }

    #[test]
    fn a_queue_the_game_does_not_read_keeps_nothing() {
        let (sender, mut receiver) = queue_read(false);
        sender.push(Queued::Rows(rows(1, 1000)));
        sender.event(Event::Subscription(SubscriptionEvent::Removed { id: spacelink_sync::SubscriptionId(1) }));
        assert_eq!(receiver.pending(), 0);
        let mut out = Vec::new();
        receiver.drain_into(&mut out);
        assert!(out.is_empty());
    }

    fn rows(generation: u64, n: usize) -> RowsChanged {
        let table: Arc<str> = Arc::from("t");
        let changes = (0..n).map(|i| RowChange::Insert {
            table: table.clone(),
            key: key(b"k"),
            row: Row::from(i.to_le_bytes().to_vec()),
        });
        RowsChanged {
            generation,
            changes: Arc::new(changes.collect()),
            reconciled: false,
            cause: Cause::UnknownTransaction,
        }
    }

    #[test]
    fn nothing_is_lost_and_order_is_kept_while_the_game_does_not_drain() {
        let (tx, mut rx) = queue();
        let sender = std::thread::spawn(move || {
            for i in 0..100_000u64 {
                if i % 2 == 0 {
                    tx.push(Queued::Rows(rows(i, 1)));
                } else {
                    tx.event(Event::StateChanged {
                        from: ConnectionState::Connected,
                        to: ConnectionState::Connected,
                        reason: Some(i.to_string()),
                    });
                }
            }
        });
        sender.join().expect("sender");
        assert_eq!(rx.pending(), 100_000);
        let mut out = Vec::new();
        rx.drain_into(&mut out);
        assert_eq!(out.len(), 100_000);
        assert_eq!(rx.pending(), 0);
        for (i, event) in out.iter().enumerate() {
            match event {
                Event::Row(row) => assert_eq!(i % 2, 0, "row events stay where they were sent: {row:?}"),
                Event::StateChanged { reason, .. } => assert_eq!(reason.as_deref(), Some(i.to_string().as_str())),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_drain_takes_only_what_was_queued_when_it_began() {
        let (tx, mut rx) = queue();
        tx.push(Queued::Rows(rows(1, 3)));
        tx.push(Queued::Rows(rows(1, 2)));
        let mut out = Vec::new();
        rx.drain_into(&mut out);
        assert_eq!(out.len(), 5, "one queue entry per transaction, one event per row");
        tx.push(Queued::Rows(rows(2, 1)));
        out.clear();
        rx.drain_into(&mut out);
        assert_eq!(out.len(), 1);
    }

    #[actix::test]
    async fn stats_and_alerts_reach_the_game_as_events() {
        let (tx, mut rx) = queue();
        let sink = EventSink { events: tx, status: StatusCell::default(), requested: Arc::default() }.start();
        let stats = PerformanceStats { updates_per_second: 12.0, ..PerformanceStats::default() };
        sink.send(StatsUpdated(stats.clone())).await.unwrap();
        let alert = PerformanceAlert {
            metric: spacelink_telemetry::AlertMetric::LatencyAverage,
            kind: spacelink_telemetry::AlertKind::Raised,
            value: 300.0,
            threshold: 250.0,
            at_unix_ms: 1,
            message: "average latency (ms) is 300.000, beyond 250".into(),
        };
        sink.send(alert.clone()).await.unwrap();
        let mut out = Vec::new();
        rx.drain_into(&mut out);
        assert!(matches!(&out[..], [Event::Stats(s), Event::Alert(a)] if **s == stats && *a == alert), "{out:?}");
    }

    #[test]
    fn row_changes_become_row_events_in_order() {
        let table: Arc<str> = Arc::from("t");
        let changes = vec![
            RowChange::Insert { table: table.clone(), key: key(b"k"), row: Row::from(&b"a"[..]) },
            RowChange::Update {
                table: table.clone(),
                key: key(b"k"),
                old: Row::from(&b"a"[..]),
                new: Row::from(&b"b"[..]),
            },
            RowChange::Delete { table: table.clone(), key: key(b"k"), row: Row::from(&b"b"[..]) },
        ];
        let msg = RowsChanged { generation: 1, changes: Arc::new(changes), reconciled: true, cause: Cause::Reconciled };
        let mut out = Vec::new();
        row_events(&msg, &mut out);
        let kinds: Vec<_> = out
            .iter()
            .map(|e| match e {
                Event::Row(r) => (r.kind, r.row.clone(), r.old.clone(), r.reconciled),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (RowEventKind::Insert, Row::from(&b"a"[..]), None, true),
                (RowEventKind::Update, Row::from(&b"b"[..]), Some(Row::from(&b"a"[..])), true),
                (RowEventKind::Delete, Row::from(&b"b"[..]), None, true),
            ]
        );
    }
}
