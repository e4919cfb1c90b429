//! The query sets' lifecycle, as a plain value: which sets the game asked
//! for, where each is on the server, what to send, what to tell, when to
//! retry, when to reconcile. No actor, no timer, no clock of its own (times
//! are passed in); the sync actor carries out the [`Step`]s it returns.
//!
//! The rules:
//!
//! * A set lives across sessions under its [`SubscriptionId`]; in each session
//!   it is subscribed under a fresh server-side query id.
//! * A set is **pending** once sent, **applied** once its rows are in the
//!   cache, **offline** without a session. A refused set is **retried** after
//!   `retry_delay`, doubling, up to `max_retries` times, unless the server's
//!   message says the queries themselves are wrong ([`is_permanent`]); then it
//!   falls back to its broader queries, once, or **fails**.
//! * A set dropped while pending is **cancelled**: it never reports applied,
//!   its rows never reach the cache, and it is unsubscribed once applied.
//! * When a session comes up, every live set is subscribed again; if the cache
//!   holds rows of an earlier session, the fresh state is **staged** and, once
//!   every live set is applied or has failed, the cache is **reconciled** with it.
//! * When an update cannot be applied, every live set is **resubscribed** the
//!   same way within the session: the current server-side queries are
//!   unsubscribed first, and until the server has confirmed each, transactions
//!   are not applied (the [`Fence`]); the reconciliation waits for it too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use spacelink_connection::metric_names as names;
use spacelink_connection::{codec, ws, ClientMessage, RequestIds};
use tokio::sync::oneshot;

use crate::config::SyncConfig;
use crate::divergence::{Fence, Undecodable};
use crate::error::SyncError;
use crate::messages::{SubscriptionEvent, SubscriptionId, SubscriptionIds, SubscriptionInfo, SubscriptionStatus};

/// Who waits for a set to be applied (or to fail).
pub(crate) type Waiter = oneshot::Sender<Result<SubscriptionId, SyncError>>;

/// What the actor is to do, in order.
pub(crate) enum Step {
    /// Send this to the server.
    Send(ClientMessage),
    /// Tell the listeners.
    Tell(SubscriptionEvent),
    /// Call [`QuerySets::retry_due`] for the set after this long, if the session is still the same.
    RetryAfter {
        /// The set.
        id: SubscriptionId,
        /// The delay.
        after: Duration,
    },
    /// Collect the fresh state in a new, empty staging cache (replacing any).
    Stage,
    /// Drop the staging cache: the session is gone.
    Unstage,
    /// Every live set is in the staging cache: reconcile the cache with it, and drop it.
    Reconcile,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Send(message) => write!(f, "Send({})", codec::client_message_kind(message)),
            Step::Tell(event) => write!(f, "Tell({event:?})"),
            Step::RetryAfter { id, after } => write!(f, "RetryAfter({}, {after:?})", id.0),
            Step::Stage => f.write_str("Stage"),
            Step::Unstage => f.write_str("Unstage"),
            Step::Reconcile => f.write_str("Reconcile"),
        }
    }
}

/// What to do with a set's initial rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// Nothing: not a set of ours, or a cancelled one.
    Ignore,
    /// Take them into the cache (or the staging cache), then tell
    /// [`QuerySets::taken`], or [`QuerySets::undecodable`] if they could not be decoded.
    Take(SubscriptionId),
}

#[derive(Debug)]
struct QuerySet {
    queries: Vec<String>,
    fallback: Option<Vec<String>>,
    status: SubscriptionStatus,
    failures: u32,
    /// The server-side id in the current session.
    query_id: Option<u32>,
    sent_at: Option<Instant>,
    waiters: Vec<Waiter>,
    /// Drop it as soon as it is applied (unsubscribed while pending).
    removing: bool,
    /// Unsubscribed before it applied: its rows never enter the cache, and
    /// nothing more is told of it (the game heard `Cancelled`).
    cancelled: bool,
}

impl QuerySet {
    fn answer(&mut self, result: Result<SubscriptionId, SyncError>) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Every query set, and the decisions about them.
#[derive(Debug)]
pub(crate) struct QuerySets {
    max_retries: u32,
    retry_delay: Duration,
    connected: bool,
    sets: BTreeMap<SubscriptionId, QuerySet>,
    by_query: HashMap<u32, SubscriptionId>,
    ids: SubscriptionIds,
    /// Where query and request ids come from: the connection's allocator
    /// (`with_request_ids`), one id space for everything sent on it.
    request_ids: RequestIds,
    /// While staging: the live sets not yet applied (or failed) in the staging cache.
    staging: Option<HashSet<SubscriptionId>>,
    fence: Fence,
    /// The cache holds rows restored from disk and no set has come yet: a
    /// session's staging waits for the game's first set instead of
    /// reconciling the restored rows away (a game that subscribes once
    /// connected, as in the official SDK's `on_connect`).
    hold_for_first_set: bool,
}

impl QuerySets {
    /// No sets yet, with `config`'s retries.
    pub(crate) fn new(config: &SyncConfig) -> Self {
        Self {
            max_retries: config.max_retries,
            retry_delay: config.retry_delay,
            connected: false,
            sets: BTreeMap::new(),
            by_query: HashMap::new(),
            ids: SubscriptionIds::default(),
            request_ids: RequestIds::default(),
            staging: None,
            fence: Fence::default(),
            hold_for_first_set: false,
        }
    }

    /// The cache was restored from disk (before any session): the first
    /// staging waits for a set, if none is registered yet.
    pub(crate) fn restored(&mut self) {
        self.hold_for_first_set = self.sets.is_empty();
    }

    /// Draws query and request ids from `ids` (the connection's, shared with
    /// the reducer ledger and the connection handle).
    pub(crate) fn set_request_ids(&mut self, ids: RequestIds) {
        self.request_ids = ids;
    }

    /// Names sets from `ids`.
    pub(crate) fn set_ids(&mut self, ids: SubscriptionIds) {
        self.ids = ids;
    }

    /// Whether transactions may reach the cache: no query a resubscription dropped is left.
    pub(crate) fn transactions_pass(&self) -> bool {
        self.fence.is_open()
    }

    /// Where `id` is in its life, if it is a set.
    pub(crate) fn status(&self, id: SubscriptionId) -> Option<&SubscriptionStatus> {
        self.sets.get(&id).map(|s| &s.status)
    }

    /// Every set, for debugging.
    pub(crate) fn infos(&self) -> Vec<SubscriptionInfo> {
        self.sets
            .iter()
            .map(|(id, s)| SubscriptionInfo {
                id: *id,
                queries: s.queries.clone(),
                status: s.status.clone(),
                failures: s.failures,
            })
            .collect()
    }

    /// Registers a set (named `id` if that is free), subscribed at once when a session is up.
    pub(crate) fn add(
        &mut self,
        queries: Vec<String>,
        fallback: Option<Vec<String>>,
        waiter: Option<Waiter>,
        id: Option<SubscriptionId>,
        now: Instant,
    ) -> (SubscriptionId, Vec<Step>) {
        let id = id.filter(|id| !self.sets.contains_key(id)).unwrap_or_else(|| self.ids.next());
        let set = QuerySet {
            queries,
            fallback,
            status: SubscriptionStatus::Offline,
            failures: 0,
            query_id: None,
            sent_at: None,
            waiters: waiter.into_iter().collect(),
            removing: false,
            cancelled: false,
        };
        self.sets.insert(id, set);
        let mut steps = Vec::new();
        if std::mem::take(&mut self.hold_for_first_set) {
            // The staging that waited for it waits for its rows.
            if let Some(waiting) = &mut self.staging {
                waiting.insert(id);
            }
        }
        if self.connected {
            self.subscribe(id, now, &mut steps);
        }
        (id, steps)
    }

    fn subscribe(&mut self, id: SubscriptionId, now: Instant, steps: &mut Vec<Step>) {
        let query_id = self.request_ids.next();
        let Some(set) = self.sets.get_mut(&id) else { return };
        if let Some(old) = set.query_id.replace(query_id) {
            self.by_query.remove(&old);
        }
        set.status = SubscriptionStatus::Pending;
        set.sent_at = Some(now);
        steps.push(Step::Send(ClientMessage::SubscribeMulti(ws::SubscribeMulti {
            query_strings: set.queries.iter().map(|q| q.as_str().into()).collect(),
            request_id: query_id,
            query_id: ws::QueryId::new(query_id),
        })));
        self.by_query.insert(query_id, id);
    }

    fn unsubscribe(query_id: u32) -> Step {
        Step::Send(ClientMessage::UnsubscribeMulti(ws::UnsubscribeMulti {
            request_id: query_id,
            query_id: ws::QueryId::new(query_id),
        }))
    }

    /// Drops a set: unsubscribed if applied, cancelled if pending, gone at once otherwise.
    pub(crate) fn remove(&mut self, id: SubscriptionId) -> Result<Vec<Step>, SyncError> {
        let set = self.sets.get_mut(&id).ok_or(SyncError::Unknown(id.0))?;
        let mut steps = Vec::new();
        match (self.connected, &set.status, set.query_id) {
            (true, SubscriptionStatus::Applied, Some(query_id)) => {
                set.removing = true;
                steps.push(Self::unsubscribe(query_id));
            }
            (true, SubscriptionStatus::Pending, _) => {
                // Cancelled before it applied: it will never report applied
                // and its rows will not enter the cache.
                set.removing = true;
                set.cancelled = true;
                set.answer(Err(SyncError::Dropped));
                steps.push(Step::Tell(SubscriptionEvent::Cancelled { id }));
            }
            _ => {
                // Not on the server: gone at once. Its rows (if any, from an
                // earlier session) leave on the next reconciliation.
                if let Some(mut set) = self.sets.remove(&id) {
                    set.answer(Err(SyncError::Dropped));
                    if let Some(q) = set.query_id {
                        self.by_query.remove(&q);
                    }
                }
                steps.push(Step::Tell(SubscriptionEvent::Removed { id }));
            }
        }
        Ok(steps)
    }

    /// The sets that are to be on the server: not failed, not being dropped.
    fn live(&self) -> Vec<SubscriptionId> {
        self.sets
            .iter()
            .filter(|(_, s)| !matches!(s.status, SubscriptionStatus::Failed { .. }) && !s.removing)
            .map(|(id, _)| *id)
            .collect()
    }

    fn settled(&mut self, id: SubscriptionId) {
        if let Some(waiting) = &mut self.staging {
            waiting.remove(&id);
        }
    }

    fn maybe_reconcile(&mut self, steps: &mut Vec<Step>) {
        if self.staging.as_ref().is_some_and(HashSet::is_empty) && self.fence.is_open() && !self.hold_for_first_set {
            self.staging = None;
            steps.push(Step::Reconcile);
        }
    }

    /// Server-side query `query_id` is applied: what to do with its rows.
    pub(crate) fn applied(&mut self, query_id: u32) -> (Rows, Vec<Step>) {
        let mut steps = Vec::new();
        let Some(&id) = self.by_query.get(&query_id) else { return (Rows::Ignore, steps) };
        self.settled(id);
        if self.sets.get(&id).is_some_and(|s| s.cancelled) {
            // Cancelled while pending: its rows stay out, and it goes.
            if let Some(set) = self.sets.get_mut(&id) {
                set.status = SubscriptionStatus::Applied;
            }
            steps.extend(self.remove(id).unwrap_or_default());
            self.maybe_reconcile(&mut steps);
            return (Rows::Ignore, steps);
        }
        (Rows::Take(id), steps)
    }

    /// `id`'s initial rows are in the cache: it is applied.
    pub(crate) fn taken(&mut self, id: SubscriptionId, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(set) = self.sets.get_mut(&id) else { return steps };
        set.status = SubscriptionStatus::Applied;
        set.failures = 0;
        if let Some(sent) = set.sent_at.take() {
            let latency = now.saturating_duration_since(sent);
            metrics::histogram!(names::SYNC_SUBSCRIPTION_LATENCY_SECONDS).record(latency.as_secs_f64());
        }
        set.answer(Ok(id));
        let removing = set.removing;
        steps.push(Step::Tell(SubscriptionEvent::Applied { id }));
        self.maybe_reconcile(&mut steps);
        if removing {
            steps.extend(self.remove(id).unwrap_or_default());
        }
        steps
    }

    /// `id`'s initial rows could not be decoded: a failed attempt (past the
    /// retries, the set fails), and a resubscription drops its server-side
    /// query with the others.
    pub(crate) fn undecodable(&mut self, id: SubscriptionId, why: &Undecodable, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(set) = self.sets.get_mut(&id) {
            set.failures += 1;
            if set.failures > self.max_retries {
                let error = why.to_string();
                set.status = SubscriptionStatus::Failed { error: error.clone() };
                set.answer(Err(SyncError::Undecodable(error.clone())));
                steps.push(Step::Tell(SubscriptionEvent::Failed { id, error, retrying: false }));
            }
        }
        steps.extend(self.resubscribe(why, now));
        steps
    }

    /// Server-side query `query_id` is unsubscribed: the set whose rows now
    /// leave the cache, if any (`None`: a dropped or cancelled query, whose
    /// rows were never kept).
    pub(crate) fn unapplied(&mut self, query_id: u32) -> (Option<SubscriptionId>, Vec<Step>) {
        let mut steps = Vec::new();
        if self.fence.confirmed(query_id) {
            self.maybe_reconcile(&mut steps);
            return (None, steps);
        }
        let Some(id) = self.by_query.remove(&query_id) else { return (None, steps) };
        if self.sets.remove(&id).is_none_or(|s| s.cancelled) {
            return (None, steps); // Its rows never entered the cache; the game heard `Cancelled`.
        }
        steps.push(Step::Tell(SubscriptionEvent::Removed { id }));
        (Some(id), steps)
    }

    /// The server refused server-side query `query_id` (`None`: it did not say which).
    pub(crate) fn refused(&mut self, query_id: Option<u32>, message: &str) -> Vec<Step> {
        let mut steps = Vec::new();
        if query_id.is_some_and(|q| self.fence.confirmed(q)) {
            self.maybe_reconcile(&mut steps); // A dropped query, gone as well.
            return steps;
        }
        let Some(id) = query_id.and_then(|q| self.by_query.get(&q).copied()) else {
            tracing::warn!(error = %message, "subscription error for no known query set");
            return steps;
        };
        let Some(set) = self.sets.get_mut(&id) else { return steps };
        set.failures += 1;
        if let Some(q) = set.query_id.take() {
            self.by_query.remove(&q);
        }
        metrics::counter!(names::SYNC_SUBSCRIPTION_ERRORS).increment(1);
        let retry = if set.failures <= self.max_retries && !is_permanent(message) {
            Some(self.retry_delay * 2u32.saturating_pow(set.failures - 1))
        } else if let Some(fallback) = set.fallback.take() {
            tracing::info!(set = id.0, "subscription falls back to broader queries");
            set.queries = fallback;
            set.failures = 0;
            Some(self.retry_delay)
        } else {
            None
        };
        let error = message.to_string();
        match retry {
            Some(after) => {
                set.status = SubscriptionStatus::Retrying { error: error.clone() };
                steps.push(Step::RetryAfter { id, after });
                steps.push(Step::Tell(SubscriptionEvent::Failed { id, error, retrying: true }));
            }
            None => {
                set.status = SubscriptionStatus::Failed { error: error.clone() };
                set.answer(Err(SyncError::Refused(error.clone())));
                steps.push(Step::Tell(SubscriptionEvent::Failed { id, error, retrying: false }));
            }
        }
        self.settled(id);
        self.maybe_reconcile(&mut steps);
        steps
    }

    /// A retry's delay is over (in the session that scheduled it).
    pub(crate) fn retry_due(&mut self, id: SubscriptionId, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        // Not if a reconnect or a resubscription has sent it meanwhile.
        let waiting = self.sets.get(&id).is_some_and(|s| matches!(s.status, SubscriptionStatus::Retrying { .. }));
        if self.connected && waiting {
            self.subscribe(id, now, &mut steps);
        }
        steps
    }

    /// A session is up: every live set is subscribed again; if the cache holds
    /// rows of an earlier session (`stale`), the fresh state is staged.
    pub(crate) fn session_up(&mut self, stale: bool, now: Instant) -> Vec<Step> {
        self.connected = true;
        self.by_query.clear();
        self.fence.clear();
        let live = self.live();
        let mut steps = Vec::new();
        if stale {
            self.staging = Some(live.iter().copied().collect());
            steps.push(Step::Stage);
        }
        for id in live {
            self.subscribe(id, now, &mut steps);
        }
        self.maybe_reconcile(&mut steps);
        steps
    }

    /// The session is gone, and every server-side query with it.
    pub(crate) fn session_lost(&mut self) -> Vec<Step> {
        self.connected = false;
        let mut steps = Vec::new();
        if self.staging.take().is_some() {
            steps.push(Step::Unstage);
        }
        self.by_query.clear();
        self.fence.clear();
        let removed: Vec<SubscriptionId> = self.sets.iter().filter(|(_, s)| s.removing).map(|(id, _)| *id).collect();
        for id in removed {
            if self.sets.remove(&id).is_some_and(|s| !s.cancelled) {
                steps.push(Step::Tell(SubscriptionEvent::Removed { id }));
            }
        }
        for set in self.sets.values_mut() {
            if !matches!(set.status, SubscriptionStatus::Failed { .. }) {
                set.status = SubscriptionStatus::Offline;
            }
            set.query_id = None;
        }
        steps
    }

    /// The cache missed an update: every live set is subscribed again, into a
    /// staging cache that is reconciled with the cache once all are applied,
    /// so that only real differences fire row events.
    pub(crate) fn resubscribe(&mut self, why: &Undecodable, now: Instant) -> Vec<Step> {
        metrics::counter!(names::SYNC_RESUBSCRIPTIONS).increment(1);
        let mut steps = Vec::new();
        // First drop every server-side query of this session (the server
        // answers in order: their confirmations come before the fresh rows).
        let ids: Vec<SubscriptionId> = self.sets.keys().copied().collect();
        for id in ids {
            let Some(set) = self.sets.get_mut(&id) else { continue };
            let Some(query_id) = set.query_id.take() else { continue };
            // An applied set being dropped has sent its unsubscribe already.
            let unsubscribed = set.removing && set.status == SubscriptionStatus::Applied;
            let (removing, cancelled) = (set.removing, set.cancelled);
            self.by_query.remove(&query_id);
            self.fence.retire(query_id);
            if !unsubscribed {
                steps.push(Self::unsubscribe(query_id));
            }
            if removing {
                self.sets.remove(&id);
                if !cancelled {
                    steps.push(Step::Tell(SubscriptionEvent::Removed { id }));
                }
            }
        }
        let live = self.live();
        tracing::warn!(
            table = %why.table,
            reason = %why.reason,
            sets = live.len(),
            "an update could not be applied: resubscribing the query sets to reconcile the cache"
        );
        self.staging = Some(live.iter().copied().collect());
        steps.push(Step::Stage);
        for id in live {
            steps.push(Step::Tell(SubscriptionEvent::Resubscribing { id, reason: why.to_string() }));
            if self.connected {
                self.subscribe(id, now, &mut steps);
            }
        }
        self.maybe_reconcile(&mut steps);
        steps
    }
}

/// Whether a subscription error is about the queries themselves (their text,
/// a table or column that does not exist, the caller's rights), which no retry
/// can mend, rather than a passing failure of the server. Asked of the
/// server's message, the only thing a v1 `SubscriptionError` carries: a
/// message that says nothing known is taken as transient (retried, as before).
pub fn is_permanent(message: &str) -> bool {
    const PERMANENT: &[&str] = &[
        "parse",
        "syntax",
        "unsupported",
        "not supported",
        "no such",
        "does not exist",
        "doesn't exist",
        "not found",
        "unknown",
        "invalid",
        "not a valid",
        "not in scope",
        "does not have",
        "is required",
        "empty sql",
        "duplicate name",
        "unexpected",
        "type mismatch",
        "expected",
        "private",
        "not authorized",
        "unauthorized",
        "permission",
        "forbidden",
    ];
    let message = message.to_ascii_lowercase();
    PERMANENT.iter().any(|p| message.contains(p))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::recorded::Recorded;

    fn config() -> SyncConfig {
        SyncConfig { max_retries: 2, retry_delay: Duration::from_millis(100), ..SyncConfig::default() }
    }

    fn why() -> Undecodable {
        Undecodable { table: "t".into(), reason: "corrupt".into() }
    }

    /// The server-side query ids subscribed, and unsubscribed, by `steps`.
    fn sent(steps: &[Step]) -> (Vec<u32>, Vec<u32>) {
        let (mut subs, mut unsubs) = (Vec::new(), Vec::new());
        for step in steps {
            match step {
                Step::Send(ClientMessage::SubscribeMulti(s)) => subs.push(s.query_id.id),
                Step::Send(ClientMessage::UnsubscribeMulti(u)) => unsubs.push(u.query_id.id),
                _ => {}
            }
        }
        (subs, unsubs)
    }

    fn told(steps: &[Step]) -> Vec<SubscriptionEvent> {
        steps.iter().filter_map(|s| if let Step::Tell(e) = s { Some(e.clone()) } else { None }).collect()
    }

    fn has(steps: &[Step], f: impl Fn(&Step) -> bool) -> bool {
        steps.iter().any(f)
    }

    /// Query sets in a live session, and the time.
    fn live() -> (QuerySets, Instant) {
        let now = Instant::now();
        let mut sets = QuerySets::new(&config());
        sets.session_up(false, now);
        (sets, now)
    }

    type Answer = oneshot::Receiver<Result<SubscriptionId, SyncError>>;

    /// A set sent with a waiter: its id, its server-side query id, the waiter's end.
    fn waited(sets: &mut QuerySets, fallback: Option<Vec<String>>, now: Instant) -> (SubscriptionId, u32, Answer) {
        let (tx, rx) = oneshot::channel();
        let (id, steps) = sets.add(vec!["q".into()], fallback, Some(tx), None, now);
        (id, sent(&steps).0[0], rx)
    }

    /// A set added and applied in a live session; its server-side query id.
    fn applied_set(sets: &mut QuerySets, now: Instant) -> (SubscriptionId, u32) {
        let (id, steps) = sets.add(vec!["SELECT * FROM t".into()], None, None, None, now);
        let query = sent(&steps).0[0];
        assert_eq!(sets.applied(query).0, Rows::Take(id));
        sets.taken(id, now);
        (id, query)
    }

    #[test]
    fn query_ids_come_from_the_connections_allocator_and_never_meet_its_other_ids() {
        let (mut sets, now) = live();
        let ids = RequestIds::default();
        sets.set_request_ids(ids.clone());
        let mut seen = HashSet::new();
        for _ in 0..16 {
            // A reducer call's (or the game's own subscription's) id, then a set's.
            assert!(seen.insert(ids.next()));
            let (_, steps) = sets.add(vec!["q".into()], None, None, None, now);
            let query = sent(&steps).0[0];
            assert!(seen.insert(query), "query id {query} given out twice");
        }
    }

    #[test]
    fn a_set_waits_for_a_session_then_applies_and_answers_its_waiter() {
        let now = Instant::now();
        let mut sets = QuerySets::new(&config());
        let (tx, mut rx) = oneshot::channel();
        let (id, steps) = sets.add(vec!["SELECT * FROM t".into()], None, Some(tx), None, now);
        assert!(steps.is_empty(), "offline: nothing sent");
        assert_eq!(sets.infos()[0].status, SubscriptionStatus::Offline);
        let steps = sets.session_up(false, now);
        let (subs, _) = sent(&steps);
        assert_eq!(subs.len(), 1);
        assert!(!has(&steps, |s| matches!(s, Step::Stage)), "an empty cache is not staged");
        assert_eq!(sets.infos()[0].status, SubscriptionStatus::Pending);
        assert_eq!(sets.applied(subs[0]).0, Rows::Take(id));
        assert!(rx.try_recv().is_err(), "not before its rows are in");
        let steps = sets.taken(id, now + Duration::from_millis(5));
        assert!(matches!(told(&steps)[..], [SubscriptionEvent::Applied { id: i }] if i == id));
        assert_eq!(rx.try_recv().unwrap(), Ok(id));
        assert_eq!(sets.status(id), Some(&SubscriptionStatus::Applied));
        assert_eq!(sets.applied(999).0, Rows::Ignore, "not a query of ours");
    }

    #[test]
    fn a_refused_set_is_retried_with_doubling_delays_then_falls_back_then_fails() {
        let (mut sets, now) = live();
        let (id, mut query, mut rx) = waited(&mut sets, Some(vec!["broad".into()]), now);
        let mut delays = Vec::new();
        for _ in 0..3 {
            let steps = sets.refused(Some(query), "database is restarting");
            let Some(Step::RetryAfter { after, .. }) = steps.iter().find(|s| matches!(s, Step::RetryAfter { .. }))
            else {
                panic!("no retry: {steps:?}")
            };
            delays.push(after.as_millis());
            assert!(matches!(told(&steps)[..], [SubscriptionEvent::Failed { retrying: true, .. }]));
            assert!(sent(&sets.refused(Some(query), "again")).0.is_empty(), "the old query is forgotten");
            query = sent(&sets.retry_due(id, now)).0[0];
            assert!(sent(&sets.retry_due(id, now)).0.is_empty(), "a retry is sent once");
        }
        // 2 retries, then the fallback (its delay the first one again).
        assert_eq!(delays, [100, 200, 100]);
        assert_eq!(sets.infos()[0].queries, ["broad"]);
        // The fallback is refused for good: the set fails and its waiter hears it.
        let steps = sets.refused(Some(query), "`t` is not a valid table");
        assert!(matches!(told(&steps)[..], [SubscriptionEvent::Failed { retrying: false, .. }]));
        assert!(matches!(rx.try_recv().unwrap(), Err(SyncError::Refused(_))));
        assert!(matches!(sets.infos()[0].status, SubscriptionStatus::Failed { .. }));
        assert!(sent(&sets.session_up(false, now)).0.is_empty(), "a failed set is not subscribed again");
    }

    #[test]
    fn a_set_dropped_while_pending_is_cancelled_and_unsubscribed_once_applied() {
        let (mut sets, now) = live();
        let (id, query, mut rx) = waited(&mut sets, None, now);
        let steps = sets.remove(id).unwrap();
        assert!(matches!(told(&steps)[..], [SubscriptionEvent::Cancelled { .. }]));
        assert_eq!(rx.try_recv().unwrap(), Err(SyncError::Dropped));
        let (rows, steps) = sets.applied(query);
        assert_eq!(rows, Rows::Ignore, "its rows stay out");
        assert_eq!(sent(&steps).1, [query], "and it is unsubscribed");
        assert!(told(&steps).is_empty(), "nothing more is told of it");
        assert_eq!(sets.unapplied(query).0, None);
        assert!(sets.infos().is_empty());
        assert!(matches!(sets.remove(id), Err(SyncError::Unknown(_))));
    }

    #[test]
    fn an_applied_set_is_unsubscribed_and_its_rows_leave() {
        let (mut sets, now) = live();
        let (id, query) = applied_set(&mut sets, now);
        assert_eq!(sent(&sets.remove(id).unwrap()).1, [query]);
        let (gone, steps) = sets.unapplied(query);
        assert_eq!(gone, Some(id));
        assert!(matches!(told(&steps)[..], [SubscriptionEvent::Removed { .. }]));
    }

    #[test]
    fn after_a_reconnect_the_cache_is_reconciled_once_every_live_set_is_back() {
        let (mut sets, now) = live();
        let (a, _) = applied_set(&mut sets, now);
        let (b, _) = applied_set(&mut sets, now);
        let steps = sets.session_lost();
        assert!(told(&steps).is_empty());
        assert!(sets.infos().iter().all(|i| i.status == SubscriptionStatus::Offline));
        let steps = sets.session_up(true, now);
        assert!(matches!(steps[0], Step::Stage));
        let subs = sent(&steps).0;
        assert_eq!(subs.len(), 2);
        assert_eq!(sets.applied(subs[0]).0, Rows::Take(a));
        assert!(!has(&sets.taken(a, now), |s| matches!(s, Step::Reconcile)), "b is not back yet");
        assert_eq!(sets.applied(subs[1]).0, Rows::Take(b));
        assert!(has(&sets.taken(b, now), |s| matches!(s, Step::Reconcile)));
        // A session lost while staging drops the staging cache.
        sets.session_lost();
        sets.session_up(true, now);
        assert!(matches!(sets.session_lost()[..], [Step::Unstage]));
    }

    #[test]
    fn a_restored_cache_waits_for_the_games_first_set_before_it_is_reconciled() {
        let now = Instant::now();
        let mut sets = QuerySets::new(&config());
        sets.restored();
        // Connected before the game subscribed: staged, and nothing reconciled away yet.
        let steps = sets.session_up(true, now);
        assert!(matches!(steps[..], [Step::Stage]), "{steps:?}");
        let (id, steps) = sets.add(vec!["SELECT * FROM t".into()], None, None, None, now);
        let subs = sent(&steps).0;
        assert_eq!(sets.applied(subs[0]).0, Rows::Take(id));
        assert!(has(&sets.taken(id, now), |s| matches!(s, Step::Reconcile)), "reconciled once its rows are in");
        // A later session reconciles as usual.
        sets.session_lost();
        assert!(!has(&sets.session_up(false, now), |s| matches!(s, Step::Reconcile)));
        // Restored with a set already registered (subscribed at build): no hold.
        let mut sets = QuerySets::new(&config());
        let (id, _) = sets.add(vec!["SELECT * FROM t".into()], None, None, None, now);
        sets.restored();
        let subs = sent(&sets.session_up(true, now)).0;
        assert_eq!(sets.applied(subs[0]).0, Rows::Take(id));
        assert!(has(&sets.taken(id, now), |s| matches!(s, Step::Reconcile)));
    }

    /// The resubscriptions counted and the subscription latencies recorded on this thread.
    fn recorded() -> Recorded {
        Recorded::new(names::SYNC_RESUBSCRIPTIONS, names::SYNC_SUBSCRIPTION_LATENCY_SECONDS)
    }

    #[test]
    fn an_update_that_cannot_be_applied_resubscribes_behind_a_fence() {
        let (mut sets, now) = live();
        let (a, qa) = applied_set(&mut sets, now);
        let (b, qb) = applied_set(&mut sets, now);
        let counted = recorded();
        let steps = metrics::with_local_recorder(&counted, || sets.resubscribe(&why(), now));
        assert_eq!(counted.count(), 1, "counted in {}", names::SYNC_RESUBSCRIPTIONS);
        let (subs, unsubs) = sent(&steps);
        assert_eq!(unsubs, [qa, qb], "the current queries are dropped");
        assert_eq!(subs.len(), 2);
        let first_sub = steps.iter().position(|s| matches!(s, Step::Send(ClientMessage::SubscribeMulti(_))));
        let last_unsub = steps.iter().rposition(|s| matches!(s, Step::Send(ClientMessage::UnsubscribeMulti(_))));
        assert!(last_unsub < first_sub, "every unsubscribe goes before the fresh subscribes");
        assert!(has(&steps, |s| matches!(s, Step::Stage)));
        let events = told(&steps);
        assert!(matches!(&events[..], [
            SubscriptionEvent::Resubscribing { id: x, reason }, SubscriptionEvent::Resubscribing { id: y, .. }
        ] if *x == a && *y == b && reason.contains("corrupt")));
        // Transactions wait for the server to confirm the old queries gone.
        assert!(!sets.transactions_pass());
        assert_eq!(sets.applied(qa).0, Rows::Ignore, "an old query's rows are not taken");
        assert_eq!(sets.unapplied(qa).0, None, "nor its removal");
        assert!(!sets.transactions_pass());
        // Both fresh sets applied, but one old query unconfirmed: no reconciliation yet.
        assert_eq!(sets.applied(subs[0]).0, Rows::Take(a));
        sets.taken(a, now);
        assert_eq!(sets.applied(subs[1]).0, Rows::Take(b));
        assert!(!has(&sets.taken(b, now), |s| matches!(s, Step::Reconcile)));
        // A refusal of the old query confirms it as well.
        let steps = sets.refused(Some(qb), "no such subscription");
        assert!(has(&steps, |s| matches!(s, Step::Reconcile)));
        assert!(told(&steps).is_empty());
        assert!(sets.transactions_pass());
        assert_eq!(
            (sets.status(a), sets.status(b)),
            (Some(&SubscriptionStatus::Applied), Some(&SubscriptionStatus::Applied))
        );
    }

    #[test]
    fn a_resubscription_drops_sets_being_removed_and_waits_for_their_confirmation() {
        let (mut sets, now) = live();
        let (keep, qkeep) = applied_set(&mut sets, now);
        let (going, qgoing) = applied_set(&mut sets, now);
        sets.remove(going).unwrap();
        let (pending, steps) = sets.add(vec!["p".into()], None, None, None, now);
        let qpending = sent(&steps).0[0];
        sets.remove(pending).unwrap(); // cancelled
        let steps = sets.resubscribe(&why(), now);
        let (subs, unsubs) = sent(&steps);
        assert!(!unsubs.contains(&qgoing), "its unsubscribe is on its way already");
        assert!(unsubs.contains(&qpending));
        assert_eq!(subs.len(), 1, "only the live set comes back");
        assert!(told(&steps).iter().any(|e| matches!(e, SubscriptionEvent::Removed { id } if *id == going)));
        assert!(!told(&steps).iter().any(|e| matches!(e, SubscriptionEvent::Removed { id } if *id == pending)));
        assert_eq!(sets.infos().len(), 1);
        sets.applied(subs[0]);
        sets.taken(keep, now);
        assert!(!sets.transactions_pass());
        assert_eq!(sets.unapplied(qgoing).0, None, "its rows were taken out by the reconciliation to come");
        assert_eq!(sets.unapplied(qkeep).0, None);
        let (_, steps) = sets.unapplied(qpending);
        assert!(has(&steps, |s| matches!(s, Step::Reconcile)));
    }

    #[test]
    fn rows_that_never_decode_fail_the_set_after_its_retries() {
        let (mut sets, now) = live();
        let (id, mut query, mut rx) = waited(&mut sets, None, now);
        for attempt in 1..=3 {
            assert_eq!(sets.applied(query).0, Rows::Take(id));
            let steps = sets.undecodable(id, &why(), now);
            let failed = told(&steps).iter().any(|e| matches!(e, SubscriptionEvent::Failed { retrying: false, .. }));
            assert_eq!(failed, attempt == 3, "attempt {attempt}");
            let (subs, unsubs) = sent(&steps);
            assert_eq!(unsubs, [query], "its server-side query is dropped");
            assert_eq!(subs.len(), usize::from(attempt < 3));
            sets.unapplied(query);
            if let Some(&q) = subs.first() {
                query = q;
            }
        }
        assert!(matches!(rx.try_recv().unwrap(), Err(SyncError::Undecodable(_))));
        assert!(sets.transactions_pass());
    }

    #[test]
    fn subscription_latency_is_measured_on_the_given_clock() {
        // No timer inside: a retry is a step, and times are the caller's.
        let t0 = Instant::now();
        let mut sets = QuerySets::new(&config());
        sets.session_up(false, t0);
        let (id, steps) = sets.add(vec!["q".into()], None, None, None, t0);
        let query = sent(&steps).0[0];
        sets.refused(Some(query), "busy");
        let later = t0 + Duration::from_secs(3600);
        let query = sent(&sets.retry_due(id, later)).0[0];
        sets.applied(query);
        let recorded = recorded();
        let steps = metrics::with_local_recorder(&recorded, || sets.taken(id, later + Duration::from_millis(250)));
        assert!(matches!(told(&steps)[..], [SubscriptionEvent::Applied { .. }]));
        assert_eq!(recorded.values(), [0.25], "from the retry's sending, on the given clock");
    }

    #[test]
    fn errors_about_the_queries_are_permanent_and_others_are_retried() {
        // Messages of the 1.3 server's SQL parser and type checker.
        for permanent in [
            "sql parser error: Expected: an SQL statement, found: SELEC",
            "`nope` is not a valid table",
            "`player` does not have a field `nope`",
            "Unsupported: Non-SELECT queries",
            "Column projections are not supported in subscriptions; Subscriptions must return a table type",
            "Empty SQL query",
            "Unexpected type: (expected) U32 != String (inferred)",
        ] {
            assert!(is_permanent(permanent), "{permanent}");
        }
        for transient in ["database is restarting", "timed out", "internal error: try again later", ""] {
            assert!(!is_permanent(transient), "{transient}");
        }
    }
}
