//! Property tests for the reducer call [`Ledger`]: the correlation of the
//! server's answers with our calls (Property 8), and the queue's order, bound
//! and retry rules (Property 9).
//!
//! The ledger is driven as the reducer actor drives it: `enqueue` →
//! `next_send(generation)` → `confirm(id, sent)` → `resolve(tx, ours,
//! generation, now)` or `session_lost(generation)`. The server's answers are
//! real `ws::TransactionUpdate<ws::BsatnFormat>` values.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use spacelink_connection::lib::{ConnectionId, Identity, TimeDuration, Timestamp};
use spacelink_connection::ws;
use spacelink_reducers::ledger::{
    Abandoned, Call, CallId, Dedup, Ledger, Outcome, OverflowPolicy, QueueFull, ReducerResult,
};
use spacetimedb_client_api_messages::energy::EnergyQuanta;

/// A small set of reducer names, so that calls share names (and, with short
/// arguments, whole reducer + argument pairs).
const REDUCERS: [&str; 4] = ["move_player", "attack", "say", "trade"];

/// Our session's connection id.
const OURS: ConnectionId = ConnectionId::from_u128(0x5eed_0000_0000_0001);

/// The session the correlation tests send on.
const GENERATION: u64 = 1;

// ---------------------------------------------------------------------------
// Server answers
// ---------------------------------------------------------------------------

/// One `TransactionUpdate` as the server would send it, in plain data (the
/// message types are neither `Clone` nor cheap to compare).
#[derive(Debug, Clone)]
struct Answer {
    caller: ConnectionId,
    reducer: usize,
    args: Bytes,
    request_id: u32,
    /// `None`: committed; `Some(message)`: the reducer returned this error.
    failure: Option<String>,
    micros: i64,
}

impl Answer {
    fn transaction(&self) -> ws::TransactionUpdate<ws::BsatnFormat> {
        let status = match &self.failure {
            None => ws::UpdateStatus::Committed(ws::DatabaseUpdate { tables: Vec::new() }),
            Some(message) => ws::UpdateStatus::Failed(message.as_str().into()),
        };
        ws::TransactionUpdate {
            status,
            timestamp: Timestamp::from_micros_since_unix_epoch(1_700_000_000_000_000),
            caller_identity: Identity::ONE,
            caller_connection_id: self.caller,
            reducer_call: ws::ReducerCallInfo {
                reducer_name: REDUCERS[self.reducer].into(),
                reducer_id: self.reducer as u32,
                args: Box::from(&self.args[..]),
                request_id: self.request_id,
            },
            energy_quanta_used: EnergyQuanta::new(1_000),
            total_host_execution_duration: TimeDuration::from_micros(self.micros),
        }
    }

    fn outcome(&self) -> Outcome {
        match &self.failure {
            None => Outcome::Committed,
            Some(message) => Outcome::Failed(message.clone()),
        }
    }
}

// ---------------------------------------------------------------------------
// Property 8: correlation
// ---------------------------------------------------------------------------

/// A call the game makes, with the answer the server will give it.
#[derive(Debug, Clone)]
struct Planned {
    reducer: usize,
    /// Short, so that equal reducer + argument pairs are common.
    args: Vec<u8>,
    sequence: Option<u32>,
    /// `false`: fire and forget (`NoSuccessNotify`): the server reports nothing.
    notify: bool,
    failure: Option<String>,
    micros: u16,
}

fn planned(failures: bool) -> impl Strategy<Value = Planned> {
    let failure =
        if failures { prop::option::weighted(0.4, "[a-z ]{1,12}").boxed() } else { Just(None::<String>).boxed() };
    (0..REDUCERS.len(), prop::collection::vec(0u8..3, 0..3), prop::option::of(any::<u32>()), failure, any::<u16>())
        .prop_map(|(reducer, args, sequence, failure, micros)| Planned {
            reducer,
            args,
            sequence,
            notify: true,
            failure,
            micros,
        })
}

/// Calls with fire-and-forget ones mixed in; SpacetimeDB 1.3 reports nothing
/// for those, not even a failure. Their arguments (`0xFF`, index) never equal
/// another call's: the ledger matches a request-id-0 failure to the oldest
/// call in flight with the same reducer and arguments, fire-and-forget or not.
fn mixed_plan() -> impl Strategy<Value = Vec<Planned>> {
    prop::collection::vec((planned(true), prop::bool::weighted(0.6)), 1..40).prop_map(|calls| {
        calls
            .into_iter()
            .enumerate()
            .map(|(i, (mut p, notify))| {
                if !notify {
                    p.notify = false;
                    p.args = vec![0xFF, i as u8];
                    p.failure = None;
                }
                p
            })
            .collect()
    })
}

/// An update that is not the answer to one of our calls on this session.
#[derive(Debug, Clone)]
enum Noise {
    /// Another client's call. With `copy`, it looks exactly like one of our
    /// answers (same reducer, arguments, request id and status) but for the caller.
    Foreign { connection: u128, copy: Option<Index>, reducer: usize, args: Vec<u8>, request_id: u32, failed: bool },
    /// One of our answers, delivered as if it came on another session.
    OtherGeneration { generation: u64, copy: Index },
    /// One of our answers, delivered before the session's connection id is known.
    NoConnectionId { copy: Index },
}

fn noise() -> impl Strategy<Value = Noise> {
    prop_oneof![
        3 => (
            any::<u128>().prop_filter("not our connection id", |c| *c != OURS.to_u128()),
            prop::option::of(any::<Index>()),
            0..REDUCERS.len(),
            prop::collection::vec(0u8..3, 0..3),
            0u32..8,
            any::<bool>(),
        )
            .prop_map(|(connection, copy, reducer, args, request_id, failed)| Noise::Foreign {
                connection,
                copy,
                reducer,
                args,
                request_id,
                failed,
            }),
        1 => (prop_oneof![Just(0u64), 2u64..6], any::<Index>())
            .prop_map(|(generation, copy)| Noise::OtherGeneration { generation, copy }),
        1 => any::<Index>().prop_map(|copy| Noise::NoConnectionId { copy }),
    ]
}

/// One delivery to `Ledger::resolve`.
#[derive(Debug, Clone)]
struct Delivery {
    answer: Answer,
    ours: Option<ConnectionId>,
    generation: u64,
    /// The index of the call this answers, or `None` if it must resolve nothing.
    answers: Option<usize>,
}

impl Noise {
    /// The delivery, copying one of `ours` where the noise is a copy (none if there is nothing to copy).
    fn delivery(&self, ours: &[Answer]) -> Option<Delivery> {
        let copy = |index: &Index| (!ours.is_empty()).then(|| index.get(ours).clone());
        Some(match self {
            Noise::Foreign { connection, copy: which, reducer, args, request_id, failed } => {
                let answer = match which.as_ref().and_then(copy) {
                    Some(answer) => Answer { caller: ConnectionId::from_u128(*connection), ..answer },
                    None => Answer {
                        caller: ConnectionId::from_u128(*connection),
                        reducer: *reducer,
                        args: Bytes::from(args.clone()),
                        request_id: if *failed { 0 } else { *request_id },
                        failure: failed.then(|| "not yours".to_string()),
                        micros: 7,
                    },
                };
                Delivery { answer, ours: Some(OURS), generation: GENERATION, answers: None }
            }
            Noise::OtherGeneration { generation, copy: which } => {
                Delivery { answer: copy(which)?, ours: Some(OURS), generation: *generation, answers: None }
            }
            Noise::NoConnectionId { copy: which } => {
                Delivery { answer: copy(which)?, ours: None, generation: GENERATION, answers: None }
            }
        })
    }
}

/// What the test knows about one sent call.
#[derive(Debug, Clone)]
struct SentCall {
    id: CallId,
    request_id: u32,
    sent_at: Instant,
    planned: Planned,
}

fn call_of(planned: &Planned) -> Call {
    Call {
        reducer: REDUCERS[planned.reducer].to_string(),
        args: Bytes::from(planned.args.clone()),
        notify: planned.notify,
        dedup: planned.sequence.map_or(Dedup::None, Dedup::Sequenced),
    }
}

/// Enqueues every planned call, sends them all on `GENERATION` and confirms
/// the sends; returns what was sent, in send order, with each call's answer
/// (none for a fire-and-forget call).
fn send_all(
    ledger: &mut Ledger,
    plan: &[Planned],
    base: Instant,
) -> Result<Vec<(SentCall, Option<Answer>)>, TestCaseError> {
    let mut accepted = Vec::new();
    for p in plan {
        let (id, dropped) = ledger.enqueue(call_of(p)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(dropped.is_none());
        if let Some(&(last, _)) = accepted.last() {
            prop_assert!(id > last, "call ids follow acceptance order");
        }
        accepted.push((id, p.clone()));
    }
    prop_assert_eq!(ledger.queued(), plan.len());
    let mut request_ids = HashSet::new();
    let mut sent = Vec::new();
    for (i, (id, p)) in accepted.into_iter().enumerate() {
        let sent_at = base + Duration::from_millis(i as u64);
        let (sent_id, message) =
            ledger.next_send(GENERATION, sent_at).ok_or_else(|| TestCaseError::fail("nothing to send"))?;
        prop_assert_eq!(sent_id, id, "sent in acceptance order");
        prop_assert_eq!(&*message.reducer, REDUCERS[p.reducer]);
        prop_assert_eq!(&message.args[..], &p.args[..]);
        let flags = if p.notify { ws::CallReducerFlags::FullUpdate } else { ws::CallReducerFlags::NoSuccessNotify };
        prop_assert!(message.flags == flags, "flags follow notify");
        prop_assert!(message.request_id != 0, "request id 0 is the server's failure marker");
        prop_assert!(request_ids.insert(message.request_id), "request id {} reused", message.request_id);
        prop_assert_eq!(ledger.confirm(id, true), None);
        // SpacetimeDB 1.3 answers a failed call with request id 0, and a
        // fire-and-forget call not at all.
        let answer = p.notify.then(|| Answer {
            caller: OURS,
            reducer: p.reducer,
            args: Bytes::from(p.args.clone()),
            request_id: if p.failure.is_some() { 0 } else { message.request_id },
            failure: p.failure.clone(),
            micros: i64::from(p.micros),
        });
        sent.push((SentCall { id, request_id: message.request_id, sent_at, planned: p }, answer));
    }
    prop_assert!(ledger.next_send(GENERATION, base).is_none());
    // Fire-and-forget calls are done once confirmed; the others wait for their answers.
    prop_assert_eq!(ledger.in_flight(), plan.iter().filter(|p| p.notify).count());
    prop_assert_eq!(ledger.queued(), 0);
    Ok(sent)
}

/// Feeds the deliveries to the ledger and checks that each of our answers
/// resolves its own call, once, with the right outcome, nothing else resolves,
/// and `still_held` calls (unanswered fire-and-forget ones) are left.
fn deliver(
    ledger: &mut Ledger,
    sent: &[(SentCall, Option<Answer>)],
    deliveries: &[Delivery],
    base: Instant,
    still_held: usize,
) -> Result<(), TestCaseError> {
    let mut resolved: HashMap<CallId, usize> = HashMap::new();
    for (k, delivery) in deliveries.iter().enumerate() {
        let now = base + Duration::from_secs(1) + Duration::from_millis(k as u64);
        let result = ledger.resolve(&delivery.answer.transaction(), delivery.ours, delivery.generation, now);
        match delivery.answers {
            None => prop_assert_eq!(result, None, "{:?} must resolve nothing", delivery),
            Some(i) => {
                let (call, answer) = &sent[i];
                let answer = answer.as_ref().ok_or_else(|| TestCaseError::fail("delivered a call with no answer"))?;
                let expected = ReducerResult {
                    call_id: call.id,
                    reducer: REDUCERS[call.planned.reducer].to_string(),
                    sequence_number: call.planned.sequence,
                    request_id: call.request_id,
                    outcome: answer.outcome(),
                    server_execution: Duration::from_micros(u64::from(call.planned.micros)),
                    round_trip: now - call.sent_at,
                    attempts: 1,
                    carries_rows: false,
                };
                prop_assert_eq!(result, Some(expected));
                *resolved.entry(call.id).or_default() += 1;
            }
        }
    }
    for (call, answer) in sent {
        let times = resolved.get(&call.id).copied().unwrap_or(0);
        prop_assert_eq!(times, usize::from(answer.is_some()), "call {} resolves once if answered", call.id);
    }
    prop_assert_eq!(ledger.is_empty(), still_held == 0);
    prop_assert_eq!(ledger.len(), still_held);
    prop_assert_eq!(ledger.in_flight(), still_held);
    prop_assert_eq!(ledger.queued(), 0);
    Ok(())
}

/// Puts each noise item before the answer at its index (or after the last).
fn interleave(ours: Vec<Delivery>, noise: &[(Noise, Index)], answers: &[Answer]) -> Vec<Delivery> {
    let slots = ours.len() + 1;
    let mut buckets: Vec<Vec<Delivery>> = vec![Vec::new(); slots];
    for (n, at) in noise {
        buckets[at.index(slots)].extend(n.delivery(answers));
    }
    let mut ours = ours.into_iter();
    let mut out = Vec::new();
    for bucket in buckets {
        out.extend(bucket);
        out.extend(ours.next());
    }
    out
}

// ---------------------------------------------------------------------------
// Property 9: a model of the ledger's queue
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// A new call; `sequenced` ones carry a fresh sequence number as their arguments.
    Enqueue { reducer: usize, sequenced: bool, arg: u8 },
    /// The actor hands the next queued call to the connection.
    NextSend,
    /// The connection answers one pending send (in flight unconfirmed, or in limbo).
    Confirm { pick: Index, sent: bool },
    /// The current session is lost; the next one starts.
    SessionLost,
    /// A late loss notice for an earlier session.
    StaleSessionLost,
    /// The server answers the oldest confirmed call in flight.
    ResolveOldest { fail: bool, micros: u16 },
}

fn op(weights: [u32; 6]) -> impl Strategy<Value = Op> {
    let [enqueue, next_send, confirm, lost, stale, resolve] = weights;
    prop_oneof![
        enqueue => (0..REDUCERS.len(), any::<bool>(), 0u8..4)
            .prop_map(|(reducer, sequenced, arg)| Op::Enqueue { reducer, sequenced, arg }),
        next_send => Just(Op::NextSend),
        confirm => (any::<Index>(), prop::bool::weighted(0.7)).prop_map(|(pick, sent)| Op::Confirm { pick, sent }),
        lost => Just(Op::SessionLost),
        stale => Just(Op::StaleSessionLost),
        resolve => (any::<bool>(), any::<u16>()).prop_map(|(fail, micros)| Op::ResolveOldest { fail, micros }),
    ]
}

fn policy() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![Just(OverflowPolicy::RejectNew), Just(OverflowPolicy::DropOldest)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelState {
    Queued,
    InFlight {
        request_id: u32,
        generation: u64,
        sent_at: Instant,
        confirmed: bool,
    },
    /// Its session (`generation`) was lost before the connection answered the send.
    Limbo {
        generation: u64,
    },
}

#[derive(Debug, Clone)]
struct ModelCall {
    call: Call,
    state: ModelState,
    /// Sends that left (refused ones are not counted).
    attempts: u32,
    /// The session on which it was lost after a confirmed send, if it was.
    lost_on: Option<u64>,
}

/// The ledger under test next to the test's own model of it.
#[derive(Debug)]
struct Harness {
    ledger: Ledger,
    capacity: usize,
    policy: OverflowPolicy,
    held: HashMap<CallId, ModelCall>,
    queue: BTreeSet<CallId>,
    in_flight: Vec<CallId>,
    generation: u64,
    now: Instant,
    next_sequence: u32,
    /// The last call sent on the current generation, since a confirm last requeued an earlier call.
    last_sent: Option<CallId>,
    request_ids: HashSet<u32>,
    accepted: Vec<CallId>,
    answered: HashSet<CallId>,
    abandoned: HashMap<CallId, Abandoned>,
    /// Refused calls not sent since.
    awaiting_resend: HashSet<CallId>,
}

impl Harness {
    fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        Self {
            ledger: Ledger::new(capacity, policy),
            capacity,
            policy,
            held: HashMap::new(),
            queue: BTreeSet::new(),
            in_flight: Vec::new(),
            generation: 1,
            now: Instant::now(),
            next_sequence: 1,
            last_sent: None,
            request_ids: HashSet::new(),
            accepted: Vec::new(),
            answered: HashSet::new(),
            abandoned: HashMap::new(),
            awaiting_resend: HashSet::new(),
        }
    }

    fn tick(&mut self) -> Instant {
        self.now += Duration::from_millis(3);
        self.now
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Enqueue { reducer, sequenced, arg } => self.enqueue(*reducer, *sequenced, *arg)?,
            Op::NextSend => {
                self.next_send()?;
            }
            Op::Confirm { pick, sent } => {
                let pending = self.pending();
                if pending.is_empty() {
                    // A late answer for a call that is over changes nothing.
                    if let Some(&done) = self.answered.iter().chain(self.abandoned.keys()).next() {
                        prop_assert_eq!(self.ledger.confirm(done, *sent), None);
                    }
                } else {
                    self.confirm(*pick.get(&pending), *sent)?;
                }
            }
            Op::SessionLost => self.session_lost()?,
            Op::StaleSessionLost => {
                prop_assert_eq!(self.ledger.session_lost(self.generation - 1), Vec::new());
            }
            Op::ResolveOldest { fail, micros } => {
                self.resolve_oldest(*fail, *micros)?;
            }
        }
        self.check_counts()
    }

    fn check_counts(&self) -> Result<(), TestCaseError> {
        prop_assert!(
            self.ledger.len() <= self.capacity,
            "{} calls held, capacity {}",
            self.ledger.len(),
            self.capacity
        );
        prop_assert_eq!(self.ledger.len(), self.held.len());
        prop_assert_eq!(self.ledger.is_empty(), self.held.is_empty());
        prop_assert_eq!(self.ledger.queued(), self.queue.len());
        prop_assert_eq!(self.ledger.in_flight(), self.in_flight.len());
        Ok(())
    }

    /// Calls whose send the connection has not answered yet, by id.
    fn pending(&self) -> Vec<CallId> {
        let mut ids: Vec<CallId> = self
            .held
            .iter()
            .filter(|(_, c)| {
                matches!(c.state, ModelState::Limbo { .. } | ModelState::InFlight { confirmed: false, .. })
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn end(&mut self, id: CallId, answered: bool, abandoned: Option<Abandoned>) -> Result<(), TestCaseError> {
        prop_assert!(!self.answered.contains(&id), "call {} already answered", id);
        prop_assert!(!self.abandoned.contains_key(&id), "call {} already abandoned", id);
        prop_assert!(self.held.remove(&id).is_some(), "call {} ends but was not held", id);
        self.queue.remove(&id);
        self.in_flight.retain(|x| *x != id);
        if !matches!(abandoned, Some(Abandoned::Dropped { .. })) {
            prop_assert!(!self.awaiting_resend.contains(&id), "refused call {} ended without a resend", id);
        }
        self.awaiting_resend.remove(&id);
        if answered {
            self.answered.insert(id);
        }
        if let Some(abandoned) = abandoned {
            self.abandoned.insert(id, abandoned);
        }
        Ok(())
    }

    /// Back in the queue after a refused send, or a send confirmed only after
    /// its session was lost: the call goes back to its place by acceptance
    /// order, but calls accepted after it may already be on the current
    /// session, so from here on it may follow them. (With a module that
    /// drops sequence numbers not above the last one it applied, like
    /// guildmaster's `move_player`, such a late call would be ignored.)
    fn requeued_by_confirm(&mut self, id: CallId) {
        self.queue.insert(id);
        if self.last_sent.is_some_and(|last| id <= last) {
            self.last_sent = None;
        }
    }

    fn enqueue(&mut self, reducer: usize, sequenced: bool, arg: u8) -> Result<(), TestCaseError> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let call = if sequenced {
            Call {
                reducer: REDUCERS[reducer].to_string(),
                args: Bytes::from(sequence.to_le_bytes().to_vec()),
                notify: true,
                dedup: Dedup::Sequenced(sequence),
            }
        } else {
            Call {
                reducer: REDUCERS[reducer].to_string(),
                args: Bytes::from(vec![arg]),
                notify: true,
                dedup: Dedup::None,
            }
        };
        let before = self.ledger.len();
        let result = self.ledger.enqueue(call.clone());
        let mut expected_drop = None;
        if self.held.len() >= self.capacity {
            match (self.policy, self.queue.first().copied()) {
                (OverflowPolicy::RejectNew, _) | (OverflowPolicy::DropOldest, None) => {
                    prop_assert_eq!(result, Err(QueueFull { capacity: self.capacity }));
                    prop_assert_eq!(self.ledger.len(), before, "a refused call drops nothing");
                    return Ok(());
                }
                (OverflowPolicy::DropOldest, Some(oldest)) => {
                    let reducer = self.held[&oldest].call.reducer.clone();
                    expected_drop = Some(Abandoned::Dropped { id: oldest, reducer });
                }
            }
        }
        let (id, dropped) = result.map_err(|e| TestCaseError::fail(format!("refused below capacity: {e}")))?;
        prop_assert_eq!(&dropped, &expected_drop, "the dropped call is the oldest queued one");
        if let Some(Abandoned::Dropped { id: oldest, .. }) = &dropped {
            self.end(*oldest, false, dropped.clone())?;
        }
        if let Some(&last) = self.accepted.last() {
            prop_assert!(id > last, "call ids follow acceptance order ({} after {})", id, last);
        }
        self.accepted.push(id);
        self.held.insert(id, ModelCall { call, state: ModelState::Queued, attempts: 0, lost_on: None });
        self.queue.insert(id);
        Ok(())
    }

    fn next_send(&mut self) -> Result<Option<CallId>, TestCaseError> {
        let now = self.tick();
        let got = self.ledger.next_send(self.generation, now);
        let Some(expected) = self.queue.pop_first() else {
            prop_assert!(got.is_none(), "nothing is queued");
            return Ok(None);
        };
        let (id, message) = got.ok_or_else(|| TestCaseError::fail("a call is queued but none sent"))?;
        prop_assert_eq!(id, expected, "the oldest queued call goes first");
        prop_assert!(!self.answered.contains(&id), "answered call {} sent again", id);
        prop_assert!(!self.abandoned.contains_key(&id), "abandoned call {} sent again", id);
        if let Some(last) = self.last_sent {
            prop_assert!(id > last, "call {} sent after {} on generation {}", id, last, self.generation);
        }
        self.last_sent = Some(id);
        prop_assert!(message.request_id != 0);
        prop_assert!(self.request_ids.insert(message.request_id), "request id {} reused", message.request_id);
        prop_assert!(message.flags == ws::CallReducerFlags::FullUpdate);
        let generation = self.generation;
        let call = self.held.get_mut(&id).ok_or_else(|| TestCaseError::fail("sent a call not held"))?;
        prop_assert_eq!(&*message.reducer, call.call.reducer.as_str());
        prop_assert_eq!(&message.args, &call.call.args);
        prop_assert_eq!(call.state, ModelState::Queued);
        if let Some(lost) = call.lost_on {
            prop_assert!(matches!(call.call.dedup, Dedup::Sequenced(_)), "a lost Dedup::None call {} is resent", id);
            prop_assert!(generation > lost, "resent on a later session");
        }
        call.state =
            ModelState::InFlight { request_id: message.request_id, generation, sent_at: now, confirmed: false };
        call.attempts += 1;
        self.awaiting_resend.remove(&id);
        self.in_flight.push(id);
        Ok(Some(id))
    }

    fn confirm(&mut self, id: CallId, sent: bool) -> Result<(), TestCaseError> {
        let got = self.ledger.confirm(id, sent);
        let call = self.held.get_mut(&id).ok_or_else(|| TestCaseError::fail("confirming a call not held"))?;
        match (call.state, sent) {
            (ModelState::InFlight { request_id, generation, sent_at, confirmed: false }, true) => {
                call.state = ModelState::InFlight { request_id, generation, sent_at, confirmed: true };
                prop_assert_eq!(got, None);
            }
            (ModelState::InFlight { confirmed: false, .. } | ModelState::Limbo { .. }, false) => {
                // Never left: it goes back to its place and is sent again.
                call.state = ModelState::Queued;
                call.attempts -= 1;
                prop_assert_eq!(got, None);
                self.in_flight.retain(|x| *x != id);
                self.awaiting_resend.insert(id);
                self.requeued_by_confirm(id);
            }
            (ModelState::Limbo { generation }, true) => match call.call.dedup {
                Dedup::Sequenced(_) => {
                    // It left on the lost session: resent, as the module drops repeats.
                    call.state = ModelState::Queued;
                    call.lost_on = Some(generation);
                    prop_assert_eq!(got, None);
                    self.requeued_by_confirm(id);
                }
                Dedup::None => {
                    let expected = Abandoned::OutcomeUnknown { id, reducer: call.call.reducer.clone() };
                    prop_assert_eq!(&got, &Some(expected));
                    self.end(id, false, got)?;
                }
            },
            (state, _) => return Err(TestCaseError::fail(format!("call {id} is not pending: {state:?}"))),
        }
        Ok(())
    }

    fn session_lost(&mut self) -> Result<(), TestCaseError> {
        let generation = self.generation;
        let got = self.ledger.session_lost(generation);
        let mut expected = Vec::new();
        for id in std::mem::take(&mut self.in_flight) {
            let call = self.held.get_mut(&id).ok_or_else(|| TestCaseError::fail("in flight but not held"))?;
            let ModelState::InFlight { generation: g, confirmed, .. } = call.state else {
                return Err(TestCaseError::fail(format!("call {id} in the in-flight list but {:?}", call.state)));
            };
            prop_assert_eq!(g, generation);
            if !confirmed {
                call.state = ModelState::Limbo { generation };
            } else if matches!(call.call.dedup, Dedup::Sequenced(_)) {
                call.state = ModelState::Queued;
                call.lost_on = Some(generation);
                self.queue.insert(id);
            } else {
                expected.push(Abandoned::OutcomeUnknown { id, reducer: call.call.reducer.clone() });
            }
        }
        prop_assert_eq!(&got, &expected, "confirmed Dedup::None calls end OutcomeUnknown, in send order");
        for abandoned in expected {
            let Abandoned::OutcomeUnknown { id, .. } = &abandoned else { unreachable!() };
            self.end(*id, false, Some(abandoned.clone()))?;
        }
        self.generation += 1;
        self.last_sent = None;
        Ok(())
    }

    /// The server answers the oldest confirmed call in flight; a failure
    /// carries request id 0 (as SpacetimeDB 1.3 sends it) when that call is
    /// the oldest in flight, and its request id otherwise.
    fn resolve_oldest(&mut self, fail: bool, micros: u16) -> Result<Option<CallId>, TestCaseError> {
        let Some(position) = self
            .in_flight
            .iter()
            .position(|id| matches!(self.held[id].state, ModelState::InFlight { confirmed: true, .. }))
        else {
            return Ok(None);
        };
        let id = self.in_flight[position];
        let now = self.tick();
        let call = &self.held[&id];
        let ModelState::InFlight { request_id, generation, sent_at, .. } = call.state else { unreachable!() };
        prop_assert_eq!(generation, self.generation);
        let answer = Answer {
            caller: OURS,
            reducer: REDUCERS.iter().position(|r| *r == call.call.reducer).unwrap_or(0),
            args: call.call.args.clone(),
            request_id: if fail && position == 0 { 0 } else { request_id },
            failure: fail.then(|| format!("refused call {id}")),
            micros: i64::from(micros),
        };
        let expected = ReducerResult {
            call_id: id,
            reducer: call.call.reducer.clone(),
            sequence_number: match call.call.dedup {
                Dedup::Sequenced(seq) => Some(seq),
                Dedup::None => None,
            },
            request_id,
            outcome: answer.outcome(),
            server_execution: Duration::from_micros(u64::from(micros)),
            round_trip: now - sent_at,
            attempts: call.attempts,
            carries_rows: false,
        };
        // Another client's identical update first: it must not touch our call.
        let foreign = Answer { caller: ConnectionId::from_u128(0xf0e1), ..answer.clone() };
        prop_assert_eq!(self.ledger.resolve(&foreign.transaction(), Some(OURS), self.generation, now), None);
        let got = self.ledger.resolve(&answer.transaction(), Some(OURS), self.generation, now);
        prop_assert_eq!(got, Some(expected));
        self.end(id, true, None)?;
        Ok(Some(id))
    }

    /// Brings every call to an end: pending sends are confirmed, the calls in
    /// flight answered, and the queue sent and answered on the current session.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for id in self.pending() {
            self.confirm(id, true)?;
            self.check_counts()?;
        }
        while self.resolve_oldest(false, 1)?.is_some() {
            self.check_counts()?;
        }
        prop_assert!(self.in_flight.is_empty());
        while let Some(id) = self.next_send()? {
            self.confirm(id, true)?;
            prop_assert_eq!(self.resolve_oldest(false, 1)?, Some(id));
            self.check_counts()?;
        }
        prop_assert!(self.ledger.is_empty(), "{} calls still held after draining", self.ledger.len());
        // A refused send was sent again (what became of it then is the other rules'),
        // unless the queue dropped it first.
        prop_assert!(self.awaiting_resend.is_empty(), "refused calls never resent: {:?}", self.awaiting_resend);
        Ok(())
    }

    /// Every accepted call ended exactly once, and the retry rules held.
    fn check_endings(&self) -> Result<(), TestCaseError> {
        let mut ended = 0;
        for id in &self.accepted {
            let answered = self.answered.contains(id);
            let abandoned = self.abandoned.contains_key(id);
            let held = self.held.contains_key(id);
            prop_assert_eq!(
                usize::from(answered) + usize::from(abandoned) + usize::from(held),
                1,
                "call {} must be exactly one of answered, abandoned, held",
                id
            );
            ended += usize::from(answered || abandoned);
        }
        prop_assert_eq!(ended + self.held.len(), self.accepted.len());
        for (id, abandoned) in &self.abandoned {
            if let Abandoned::OutcomeUnknown { .. } = abandoned {
                prop_assert!(!self.answered.contains(id));
            }
        }
        Ok(())
    }
}

fn config() -> ProptestConfig {
    // No regression files: a failure prints its minimal input.
    ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(256) }
}

proptest! {
    #![proptest_config(config())]

    // Feature: spacetimedb-integration, Property 8: Reducer Communication Lifecycle (each of our calls, answered in send order with committed results by request id and failures by request id 0, resolves exactly once to its own call id with the right outcome amid other connections' updates, other sessions' updates and updates before our connection id is known; nothing else resolves; the ledger ends empty)
    #[test]
    fn prop_answers_correlate_in_send_order_amid_foreign_and_stale_updates(
        plan in prop::collection::vec(planned(true), 1..40),
        noise in prop::collection::vec((noise(), any::<Index>()), 0..40),
    ) {
        let base = Instant::now();
        let mut ledger = Ledger::new(plan.len(), OverflowPolicy::RejectNew);
        let sent = send_all(&mut ledger, &plan, base)?;
        let answers: Vec<Answer> = sent.iter().filter_map(|(_, a)| a.clone()).collect();
        prop_assert_eq!(answers.len(), plan.len());
        // The server runs one connection's calls in order.
        let ours: Vec<Delivery> = answers
            .iter()
            .enumerate()
            .map(|(i, answer)| Delivery { answer: answer.clone(), ours: Some(OURS), generation: GENERATION, answers: Some(i) })
            .collect();
        let deliveries = interleave(ours, &noise, &answers);
        deliver(&mut ledger, &sent, &deliveries, base, 0)?;
    }

    // Feature: spacetimedb-integration, Property 8: Reducer Communication Lifecycle (committed answers with nonzero request ids, arriving in any order and interleaved with other connections' colliding updates, each resolve exactly once to their own call; the ledger ends empty)
    #[test]
    fn prop_answers_correlate_by_request_id_in_any_order(
        (plan, order) in prop::collection::vec(planned(false), 1..40).prop_flat_map(|plan| {
            let n = plan.len();
            (Just(plan), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        }),
        noise in prop::collection::vec(
            (noise().prop_filter("other connections only", |n| matches!(n, Noise::Foreign { .. })), any::<Index>()),
            0..30,
        ),
    ) {
        let base = Instant::now();
        let mut ledger = Ledger::new(plan.len(), OverflowPolicy::RejectNew);
        let sent = send_all(&mut ledger, &plan, base)?;
        let answers: Vec<Answer> = sent.iter().filter_map(|(_, a)| a.clone()).collect();
        prop_assert_eq!(answers.len(), plan.len());
        prop_assert!(answers.iter().all(|a| a.request_id != 0 && a.failure.is_none()));
        let ours: Vec<Delivery> = order
            .iter()
            .map(|&i| Delivery { answer: answers[i].clone(), ours: Some(OURS), generation: GENERATION, answers: Some(i) })
            .collect();
        let deliveries = interleave(ours, &noise, &answers);
        deliver(&mut ledger, &sent, &deliveries, base, 0)?;
    }

    // Feature: spacetimedb-integration, Property 8: Reducer Communication Lifecycle (with fire-and-forget calls mixed in, which the server never answers: every answer, in send order and amid other connections' and sessions' updates, resolves its own call exactly once, a request-id-0 failure never an earlier fire-and-forget call of the same reducer; a fire-and-forget call is done once its send is confirmed)
    #[test]
    fn prop_fire_and_forget_calls_never_take_another_calls_answer(
        plan in mixed_plan(),
        noise in prop::collection::vec((noise(), any::<Index>()), 0..40),
    ) {
        let base = Instant::now();
        let mut ledger = Ledger::new(plan.len(), OverflowPolicy::RejectNew);
        let sent = send_all(&mut ledger, &plan, base)?;
        let ours: Vec<Delivery> = sent
            .iter()
            .enumerate()
            .filter_map(|(i, (_, answer))| {
                let answer = answer.clone()?;
                Some(Delivery { answer, ours: Some(OURS), generation: GENERATION, answers: Some(i) })
            })
            .collect();
        let answers: Vec<Answer> = ours.iter().map(|d| d.answer.clone()).collect();
        // A fire-and-forget call is done once the connection confirms it left,
        // so none is held once everything was sent.
        let deliveries = interleave(ours, &noise, &answers);
        deliver(&mut ledger, &sent, &deliveries, base, 0)?;
    }

    // Feature: spacetimedb-integration, Property 9: Reducer Input Validation and Retry (under random enqueue / send / confirm / session loss / answer sequences the ledger never holds more than its capacity; RejectNew refuses a call beyond it and drops nothing; DropOldest drops the oldest queued call; next_send hands out the oldest queued call, so the call ids sent on a session increase, calls requeued by a lost session returning in acceptance order before later ones)
    // Only a send refused by the connection, or confirmed after its session was lost, may follow later calls on a
    // session: it goes back to its place in the queue after they left (see `Harness::requeued_by_confirm`).
    #[test]
    fn prop_queue_keeps_acceptance_order_and_bound(
        capacity in 1usize..=20,
        policy in policy(),
        ops in prop::collection::vec(op([6, 4, 3, 1, 1, 2]), 0..200),
    ) {
        let mut harness = Harness::new(capacity, policy);
        for op in &ops {
            harness.run(op)?;
        }
        harness.check_endings()?;
    }

    // Feature: spacetimedb-integration, Property 9: Reducer Input Validation and Retry (an answered call is never sent again; a confirmed Dedup::None call lost with its session is never resent and ends OutcomeUnknown exactly once; a confirmed Dedup::Sequenced call lost with its session is resent on a later session until answered; a refused send is sent again; every call ends exactly once: answered, abandoned, or still held)
    #[test]
    fn prop_retry_never_resends_an_acknowledged_call(
        capacity in 1usize..=20,
        policy in policy(),
        ops in prop::collection::vec(op([4, 5, 5, 2, 1, 3]), 0..200),
    ) {
        let mut harness = Harness::new(capacity, policy);
        for op in &ops {
            harness.run(op)?;
        }
        harness.check_endings()?;
        harness.drain()?;
        harness.check_endings()?;
        prop_assert!(harness.held.is_empty());
    }
}
