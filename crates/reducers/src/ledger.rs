//! The ledger of reducer calls: what is queued, what is in flight on which
//! session, and which result answers which call. Plain logic, no actor, no clock
//! of its own (times are passed in).
//!
//! The rules that make retries safe:
//!
//! * A call is **queued** until it is sent; queued calls keep their order.
//! * A sent call is **in flight** on one session (generation) under a request id.
//! * When a session is lost, an in-flight call whose outcome the server may
//!   have decided goes back to the front of the queue (in its original order)
//!   only if the module drops repeats of it (`Dedup::Sequenced`); any other
//!   such call is answered `OutcomeUnknown` and **never** resent.
//! * A call that was never handed to the socket (`unsent`) is always requeued.
//! * A result answers exactly one in-flight call, once: results are matched
//!   by request id and caller, or (SpacetimeDB 1.3 sends a failed call's update
//!   with request id 0) by the oldest in-flight call of the same reducer with
//!   the same arguments.
//! * A committed call the module drops repeats of is **kept** for a while
//!   (`with_replay_window`): SpacetimeDB 1.3 answers a call before its
//!   transaction is durable (its commit log is flushed every 500 ms), so a
//!   server killed just after answering can come back without it. When a
//!   session is lost, the kept calls committed within the window before the
//!   server was last heard are sent again, first and in order; their answers
//!   are not given to the game a second time (`take_replays`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spacelink_connection::lib::ConnectionId;
use spacelink_connection::{ws, RequestIds};

/// A client-local id for a call, stable across resends.
pub type CallId = u64;

/// Whether the module recognises a repeat of this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Dedup {
    /// No: once it may have reached the server, it is never sent again.
    None,
    /// Yes: the call carries this client sequence number, and the module drops
    /// a number it has already processed (guildmaster's `last_input_seq`), so
    /// resending after a lost session cannot run it twice.
    Sequenced(u32),
}

/// One reducer call, as the game made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The reducer's name.
    pub reducer: String,
    /// Its BSATN-encoded arguments.
    pub args: Bytes,
    /// Whether a result is wanted (`false`: fire and forget, `NoSuccessNotify`:
    /// SpacetimeDB 1.3 then reports nothing, not even a failure).
    pub notify: bool,
    /// Whether it may be resent.
    pub dedup: Dedup,
}

/// What happens when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// The new call is refused (default: nothing already accepted is lost).
    #[default]
    RejectNew,
    /// The oldest queued (unsent) call is dropped to make room.
    DropOldest,
}

/// How a call ended on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and its changes were committed.
    Committed,
    /// It ran and returned this error; nothing was committed.
    Failed(String),
    /// The module ran out of energy.
    OutOfEnergy,
}

/// The answer to one call (the design's `ReducerResult`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReducerResult {
    /// The call.
    pub call_id: CallId,
    /// The reducer.
    pub reducer: String,
    /// The call's client sequence number, if it had one.
    pub sequence_number: Option<u32>,
    /// The request id of the send that was answered.
    pub request_id: u32,
    /// The outcome.
    pub outcome: Outcome,
    /// How long the reducer ran on the server.
    pub server_execution: Duration,
    /// From the (last) send to the answer.
    pub round_trip: Duration,
    /// How many times it was sent.
    pub attempts: u32,
    /// Whether its transaction carried rows to the cache: its caller's cache
    /// sees them (and its row events are delivered) before this result.
    pub carries_rows: bool,
}

/// A call the ledger gives up on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abandoned {
    /// It was sent on a session lost before the answer and may have run: it is not resent.
    OutcomeUnknown {
        /// The call.
        id: CallId,
        /// Its reducer.
        reducer: String,
    },
    /// The queue was full and this (oldest, unsent) call was dropped.
    Dropped {
        /// The call.
        id: CallId,
        /// Its reducer.
        reducer: String,
    },
}

/// The queue is full and the policy refuses new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the reducer call queue is full ({capacity} calls)")]
pub struct QueueFull {
    /// The configured capacity.
    pub capacity: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    call: Call,
    state: State,
    attempts: u32,
    /// Sent again after its commit (the window of `with_replay_window`): its
    /// answer is not the game's.
    replay: bool,
}

/// A committed call kept in case the server loses it.
#[derive(Debug, Clone)]
struct Kept {
    id: CallId,
    call: Call,
    committed_at: Instant,
}

/// How the server answered a call sent again after its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The call.
    pub call_id: CallId,
    /// Its reducer.
    pub reducer: String,
    /// Its client sequence number.
    pub sequence_number: Option<u32>,
    /// `Committed` if the module holds it (a repeat, or the server had lost it
    /// and ran it again); anything else means the server lost a call it had
    /// answered `Committed` and its second run was refused.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting in the queue.
    Queued,
    /// Handed to the connection for session `generation`; `confirmed` once the
    /// connection said it is on the socket.
    InFlight { request_id: u32, generation: u64, sent_at: Instant, confirmed: bool },
    /// Its session was lost before the connection confirmed the send: whether
    /// it left decides between resending and `OutcomeUnknown`.
    Limbo,
}

/// The ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    capacity: usize,
    overflow: OverflowPolicy,
    next_call_id: CallId,
    request_ids: RequestIds,
    entries: HashMap<CallId, Entry>,
    /// Calls waiting to be sent, in order.
    queue: VecDeque<CallId>,
    /// Calls in flight, in the order they were sent.
    in_flight: VecDeque<CallId>,
    /// How long a committed sequenced call is kept for a replay (zero: never).
    replay_window: Duration,
    /// Committed sequenced calls, in commit order.
    kept: VecDeque<Kept>,
    /// When the server was last heard from.
    last_heard: Option<Instant>,
    /// Answers to replays, for `take_replays`.
    replayed: Vec<Replayed>,
}

impl Ledger {
    /// An empty ledger holding at most `capacity` calls (queued and in flight).
    pub fn new(capacity: usize, overflow: OverflowPolicy) -> Self {
        Self {
            capacity: capacity.max(1),
            overflow,
            next_call_id: 1,
            request_ids: RequestIds::default(),
            entries: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            replay_window: Duration::ZERO,
            kept: VecDeque::new(),
            last_heard: None,
            replayed: Vec::new(),
        }
    }

    /// Keeps each committed call the module drops repeats of (`Dedup::Sequenced`)
    /// for `window` after it, measured against the last time the server was
    /// heard (`heard`), and sends it again first when a session is lost: a
    /// server killed before its commit log was flushed comes back without it,
    /// and the module runs it again; if it still has it, the module answers the
    /// repeat. Zero (the default of `new`) keeps nothing.
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = window;
        self
    }

    /// The server was heard from at `now`: kept calls committed more than the
    /// replay window before it are durable by now and forgotten.
    pub fn heard(&mut self, now: Instant) {
        if self.last_heard.is_none_or(|t| now > t) {
            self.last_heard = Some(now);
        }
        let Some(heard) = self.last_heard else { return };
        while self.kept.front().is_some_and(|k| heard.saturating_duration_since(k.committed_at) > self.replay_window) {
            self.kept.pop_front();
        }
    }

    /// Committed calls kept for a replay.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    /// The answers to replays since the last call, in order.
    pub fn take_replays(&mut self) -> Vec<Replayed> {
        std::mem::take(&mut self.replayed)
    }

    /// Calls held (queued and in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Calls waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Calls whose session was lost before the connection confirmed their send.
    /// Nothing new should be sent while there are any: one of them may yet come
    /// back to the queue, ahead of later calls.
    pub fn in_limbo(&self) -> usize {
        self.entries.values().filter(|e| e.state == State::Limbo).count()
    }

    /// Calls sent and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The calls worth keeping across an app restart, in acceptance order:
    /// queued ones, and sent ones the module would recognise as repeats.
    pub fn persistable(&self) -> Vec<&Call> {
        let mut ids: Vec<&CallId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state == State::Queued || (e.call.notify && matches!(e.call.dedup, Dedup::Sequenced(_))))
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids.into_iter().filter_map(|id| self.entries.get(id).map(|e| &e.call)).collect()
    }

    /// Accepts a call at the back of the queue.
    pub fn enqueue(&mut self, call: Call) -> Result<(CallId, Option<Abandoned>), QueueFull> {
        let mut dropped = None;
        if self.entries.len() >= self.capacity {
            match self.overflow {
                OverflowPolicy::RejectNew => return Err(QueueFull { capacity: self.capacity }),
                OverflowPolicy::DropOldest => {
                    // Only an unsent call can be dropped; with everything in flight, refuse.
                    let Some(oldest) = self.queue.pop_front() else {
                        return Err(QueueFull { capacity: self.capacity });
                    };
                    if let Some(entry) = self.entries.remove(&oldest) {
                        dropped = Some(Abandoned::Dropped { id: oldest, reducer: entry.call.reducer });
                    }
                }
            }
        }
        let id = self.next_call_id;
        self.next_call_id += 1;
        self.entries.insert(id, Entry { call, state: State::Queued, attempts: 0, replay: false });
        self.queue.push_back(id);
        Ok((id, dropped))
    }

    /// Takes the next queued call to send on session `generation`, giving it a fresh request id.
    pub fn next_send(&mut self, generation: u64, now: Instant) -> Option<(CallId, ws::CallReducer<Bytes>)> {
        let id = self.queue.pop_front()?;
        let request_id = self.fresh_request_id();
        let entry = self.entries.get_mut(&id)?;
        entry.state = State::InFlight { request_id, generation, sent_at: now, confirmed: false };
        entry.attempts += 1;
        let flags =
            if entry.call.notify { ws::CallReducerFlags::FullUpdate } else { ws::CallReducerFlags::NoSuccessNotify };
        let message = ws::CallReducer {
            reducer: entry.call.reducer.as_str().into(),
            args: entry.call.args.clone(),
            request_id,
            flags,
        };
        self.in_flight.push_back(id);
        Some((id, message))
    }

    /// The connection answered the send of `id`: `sent` if the call is on the
    /// socket, otherwise it never left (not connected, a newer session,
    /// back-pressure) and goes back to its place in the queue.
    pub fn confirm(&mut self, id: CallId, sent: bool) -> Option<Abandoned> {
        let entry = self.entries.get_mut(&id)?;
        if sent && !entry.call.notify {
            // Fire and forget: SpacetimeDB 1.3 tells nothing about such a call,
            // not even its failure, so once it is on the socket it is done.
            self.in_flight.retain(|x| *x != id);
            self.entries.remove(&id);
            return None;
        }
        match (entry.state, sent) {
            (State::InFlight { request_id, generation, sent_at, .. }, true) => {
                entry.state = State::InFlight { request_id, generation, sent_at, confirmed: true };
                None
            }
            (State::InFlight { .. }, false) => {
                self.in_flight.retain(|x| *x != id);
                self.requeue(id);
                None
            }
            (State::Limbo, true) => self.after_lost_session(id),
            (State::Limbo, false) => {
                self.requeue(id);
                None
            }
            (State::Queued, _) => None,
        }
    }

    /// Puts `id` back in the queue at its place by acceptance order.
    fn requeue(&mut self, id: CallId) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.state = State::Queued;
        entry.attempts = entry.attempts.saturating_sub(1);
        let position = self.queue.iter().position(|x| *x > id).unwrap_or(self.queue.len());
        self.queue.insert(position, id);
    }

    /// A call that left on a session lost before its answer: resent if the
    /// module drops repeats, otherwise abandoned.
    fn after_lost_session(&mut self, id: CallId) -> Option<Abandoned> {
        let entry = self.entries.get(&id)?;
        if entry.call.notify && matches!(entry.call.dedup, Dedup::Sequenced(_)) {
            // It was sent once already; `requeue` takes one attempt back, so count it again.
            self.requeue(id);
            if let Some(e) = self.entries.get_mut(&id) {
                e.attempts += 1;
            }
            None
        } else {
            let entry = self.entries.remove(&id)?;
            Some(Abandoned::OutcomeUnknown { id, reducer: entry.call.reducer })
        }
    }

    /// Matches a transaction update to the in-flight call it answers, if it is ours.
    pub fn resolve(
        &mut self,
        tx: &ws::TransactionUpdate<ws::BsatnFormat>,
        ours: Option<ConnectionId>,
        generation: u64,
        now: Instant,
    ) -> Option<ReducerResult> {
        if Some(tx.caller_connection_id) != ours {
            return None;
        }
        let info = &tx.reducer_call;
        let answers = |entry: &Entry| {
            let State::InFlight { request_id, generation: g, .. } = entry.state else { return false };
            // A fire-and-forget call never gets an answer in 1.3: never give it one.
            g == generation
                && entry.call.notify
                && if info.request_id != 0 {
                    request_id == info.request_id
                } else {
                    *entry.call.reducer == *info.reducer_name && entry.call.args[..] == info.args[..]
                }
        };
        let position = self.in_flight.iter().position(|id| self.entries.get(id).is_some_and(answers))?;
        let id = self.in_flight.remove(position)?;
        // The server runs one connection's calls in order: fire-and-forget calls
        // sent before this one have run, and none of them failed (a failure
        // would have come first), so they are done.
        let earlier: Vec<CallId> = self.in_flight.iter().take(position).copied().collect();
        for earlier_id in earlier {
            if self.entries.get(&earlier_id).is_some_and(|e| !e.call.notify) {
                self.entries.remove(&earlier_id);
                self.in_flight.retain(|x| *x != earlier_id);
            }
        }
        let entry = self.entries.remove(&id)?;
        let State::InFlight { request_id, sent_at, .. } = entry.state else { return None };
        let outcome = match &tx.status {
            ws::UpdateStatus::Committed(_) => Outcome::Committed,
            ws::UpdateStatus::Failed(message) => Outcome::Failed(message.to_string()),
            ws::UpdateStatus::OutOfEnergy => Outcome::OutOfEnergy,
        };
        self.heard(now);
        let sequence_number = match entry.call.dedup {
            Dedup::Sequenced(seq) => Some(seq),
            Dedup::None => None,
        };
        if outcome == Outcome::Committed && sequence_number.is_some() && !self.replay_window.is_zero() {
            self.keep(Kept { id, call: entry.call.clone(), committed_at: now });
        }
        if entry.replay {
            self.replayed.push(Replayed { call_id: id, reducer: entry.call.reducer, sequence_number, outcome });
            return None;
        }
        Some(ReducerResult {
            call_id: id,
            reducer: entry.call.reducer,
            sequence_number,
            request_id,
            outcome,
            server_execution: Duration::from_micros(tx.total_host_execution_duration.to_micros().max(0) as u64),
            round_trip: now.saturating_duration_since(sent_at),
            attempts: entry.attempts,
            carries_rows: matches!(&tx.status, ws::UpdateStatus::Committed(u) if !u.tables.is_empty()),
        })
    }

    /// Session `generation` is gone. Confirmed calls in flight on it go back to
    /// the queue if the module drops repeats, and are abandoned otherwise;
    /// unconfirmed ones wait in limbo for the connection's answer (`confirm`).
    pub fn session_lost(&mut self, generation: u64) -> Vec<Abandoned> {
        let mut abandoned = Vec::new();
        let in_flight = std::mem::take(&mut self.in_flight);
        for id in in_flight {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            match entry.state {
                State::InFlight { generation: g, confirmed, .. } if g == generation => {
                    if confirmed {
                        abandoned.extend(self.after_lost_session(id));
                    } else {
                        entry.state = State::Limbo;
                    }
                }
                _ => self.in_flight.push_back(id),
            }
        }
        self.replay_kept();
        abandoned
    }

    /// Keeps a committed call for a replay, within the queue's capacity.
    fn keep(&mut self, kept: Kept) {
        self.kept.push_back(kept);
        while self.kept.len() > self.capacity {
            self.kept.pop_front();
        }
    }

    /// Puts the kept calls committed within the window before the server was
    /// last heard back in the queue, at their places by acceptance order.
    fn replay_kept(&mut self) {
        if let Some(heard) = self.last_heard {
            self.heard(heard);
        }
        for kept in std::mem::take(&mut self.kept) {
            if self.entries.contains_key(&kept.id) {
                continue;
            }
            self.entries.insert(kept.id, Entry { call: kept.call, state: State::Queued, attempts: 0, replay: true });
            self.requeue(kept.id);
        }
    }

    /// Removes a call wherever it is (a cancelled batch, say). Returns whether it was held.
    pub fn cancel(&mut self, id: CallId) -> bool {
        self.queue.retain(|x| *x != id);
        self.in_flight.retain(|x| *x != id);
        self.entries.remove(&id).is_some()
    }

    /// Draws request ids from `ids` (the connection's, so that calls made
    /// through the connection handle never share an id with the ledger's).
    pub fn with_request_ids(mut self, ids: RequestIds) -> Self {
        self.request_ids = ids;
        self
    }

    fn fresh_request_id(&mut self) -> u32 {
        // Never 0: what SpacetimeDB 1.3 puts on failed calls.
        self.request_ids.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_on_the_connections_ids_never_reuses_an_id_the_connection_gave_out() {
        let ids = RequestIds::default();
        let mut ledger = Ledger::new(64, OverflowPolicy::RejectNew).with_request_ids(ids.clone());
        let mut seen = std::collections::HashSet::new();
        let now = Instant::now();
        for i in 0..32 {
            // The connection handle's own calls, interleaved with the ledger's.
            assert!(seen.insert(ids.next()), "the connection reused an id");
            let call = Call { reducer: format!("r{i}"), args: Bytes::new(), notify: true, dedup: Dedup::None };
            ledger.enqueue(call).expect("room");
            let (_, message) = ledger.next_send(1, now).expect("queued");
            assert_ne!(message.request_id, 0);
            assert!(seen.insert(message.request_id), "request id {} used twice", message.request_id);
        }
    }

    const OURS: ConnectionId = ConnectionId::from_u128(7);

    fn sequenced(seq: u32) -> Call {
        Call {
            reducer: "move".into(),
            args: Bytes::from(seq.to_le_bytes().to_vec()),
            notify: true,
            dedup: Dedup::Sequenced(seq),
        }
    }

    fn answer(request_id: u32, args: &Bytes, failure: Option<&str>) -> ws::TransactionUpdate<ws::BsatnFormat> {
        use spacelink_connection::lib::{Identity, TimeDuration, Timestamp};
        ws::TransactionUpdate {
            status: match failure {
                None => ws::UpdateStatus::Committed(ws::DatabaseUpdate { tables: Vec::new() }),
                Some(m) => ws::UpdateStatus::Failed(m.into()),
            },
            timestamp: Timestamp::from_micros_since_unix_epoch(0),
            caller_identity: Identity::ONE,
            caller_connection_id: OURS,
            reducer_call: ws::ReducerCallInfo {
                reducer_name: "move".into(),
                reducer_id: 0,
                args: Box::from(&args[..]),
                request_id,
            },
            energy_quanta_used: spacetimedb_client_api_messages::energy::EnergyQuanta::new(0),
            total_host_execution_duration: TimeDuration::from_micros(1),
        }
    }

    /// Sends every queued call on `generation` and has the server answer each
    /// (`failure` for all of them if given); returns the results the game gets.
    fn send_and_answer(
        ledger: &mut Ledger,
        generation: u64,
        now: Instant,
        failure: Option<&str>,
    ) -> Vec<ReducerResult> {
        let mut sent = Vec::new();
        while let Some((id, message)) = ledger.next_send(generation, now) {
            assert_eq!(ledger.confirm(id, true), None);
            sent.push(message);
        }
        sent.iter()
            .filter_map(|m| ledger.resolve(&answer(m.request_id, &m.args, failure), Some(OURS), generation, now))
            .collect()
    }

    #[test]
    fn committed_sequenced_calls_are_sent_again_after_a_lost_session_and_answered_once() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(64, OverflowPolicy::RejectNew).with_replay_window(Duration::from_secs(2));
        for seq in 1..=3 {
            ledger.enqueue(sequenced(seq)).unwrap();
        }
        let results = send_and_answer(&mut ledger, 1, t0, None);
        assert_eq!(results.len(), 3);
        assert_eq!(ledger.kept(), 3);
        // A call not yet sent when the session dies, and one that may not be repeated.
        ledger.enqueue(sequenced(4)).unwrap();
        let plain = Call { reducer: "say".into(), args: Bytes::new(), notify: true, dedup: Dedup::None };
        ledger.enqueue(plain).unwrap();
        ledger.heard(t0 + Duration::from_millis(500));
        assert!(ledger.session_lost(1).is_empty());
        // The kept calls go first, in order, then the queue as it was.
        let mut order = Vec::new();
        while let Some((_, message)) = ledger.next_send(2, t0 + Duration::from_secs(1)) {
            order.push(message.args.to_vec());
        }
        let expected: Vec<Vec<u8>> =
            [1u32, 2, 3, 4].iter().map(|s| s.to_le_bytes().to_vec()).chain([Vec::new()]).collect();
        assert_eq!(order, expected);
        assert_eq!(ledger.kept(), 0, "the replays hold them now");
    }

    #[test]
    fn the_answer_to_a_replay_is_not_given_to_the_game_but_reported_as_a_replay() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(64, OverflowPolicy::RejectNew).with_replay_window(Duration::from_secs(2));
        ledger.enqueue(sequenced(1)).unwrap();
        ledger.enqueue(sequenced(2)).unwrap();
        assert_eq!(send_and_answer(&mut ledger, 1, t0, None).len(), 2);
        ledger.session_lost(1);
        // The server lost call 2 and refuses it now; it still had call 1.
        let (id1, m1) = ledger.next_send(2, t0).unwrap();
        let (id2, m2) = ledger.next_send(2, t0).unwrap();
        ledger.confirm(id1, true);
        ledger.confirm(id2, true);
        assert_eq!(ledger.resolve(&answer(m1.request_id, &m1.args, None), Some(OURS), 2, t0), None);
        assert_eq!(ledger.resolve(&answer(m2.request_id, &m2.args, Some("refused")), Some(OURS), 2, t0), None);
        let replays = ledger.take_replays();
        assert_eq!(replays.len(), 2);
        assert_eq!((replays[0].call_id, &replays[0].outcome), (id1, &Outcome::Committed));
        assert_eq!((replays[1].sequence_number, &replays[1].outcome), (Some(2), &Outcome::Failed("refused".into())));
        assert!(ledger.is_empty());
        // The replay of call 1 committed again: it is kept again, for the next loss.
        assert_eq!(ledger.kept(), 1);
    }

    #[test]
    fn only_calls_committed_within_the_window_before_the_server_was_last_heard_are_replayed() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(64, OverflowPolicy::RejectNew).with_replay_window(Duration::from_secs(2));
        ledger.enqueue(sequenced(1)).unwrap();
        send_and_answer(&mut ledger, 1, t0, None);
        ledger.enqueue(sequenced(2)).unwrap();
        send_and_answer(&mut ledger, 1, t0 + Duration::from_secs(3), None);
        // Silence (a frozen server) does not age the calls: only hearing it does.
        ledger.session_lost(1);
        let (_, message) = ledger.next_send(2, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(&message.args[..], &2u32.to_le_bytes());
        assert!(ledger.next_send(2, t0 + Duration::from_secs(60)).is_none(), "call 1 was durable by then");
    }

    #[test]
    fn without_a_window_or_a_sequence_number_nothing_is_kept() {
        let t0 = Instant::now();
        let mut off = Ledger::new(64, OverflowPolicy::RejectNew);
        off.enqueue(sequenced(1)).unwrap();
        send_and_answer(&mut off, 1, t0, None);
        assert_eq!(off.kept(), 0);
        let mut on = Ledger::new(64, OverflowPolicy::RejectNew).with_replay_window(Duration::from_secs(2));
        on.enqueue(Call { reducer: "say".into(), args: Bytes::new(), notify: true, dedup: Dedup::None }).unwrap();
        send_and_answer(&mut on, 1, t0, None);
        on.enqueue(sequenced(2)).unwrap();
        send_and_answer(&mut on, 1, t0, Some("refused"));
        assert_eq!(on.kept(), 0, "neither an unsequenced nor a refused call is kept");
        on.session_lost(1);
        assert!(on.next_send(2, t0).is_none());
    }

    #[test]
    fn kept_calls_stay_within_the_queue_capacity() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(4, OverflowPolicy::RejectNew).with_replay_window(Duration::from_secs(2));
        for seq in 1..=10 {
            ledger.enqueue(sequenced(seq)).unwrap();
            send_and_answer(&mut ledger, 1, t0, None);
        }
        assert_eq!(ledger.kept(), 4);
    }
}
