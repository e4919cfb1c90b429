//! The reducer actor: takes calls, hands them to the connection in order, and
//! matches the server's answers to them. All decisions are the [`Ledger`]'s;
//! the actor only moves messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use spacelink_connection::clock::now;
use spacelink_connection::guard;
use spacelink_connection::lib::ConnectionId;
use spacelink_connection::metric_names as names;
use spacelink_connection::sats::{AlgebraicType, Typespace};
use spacelink_connection::{
    ws, ClientMessage, IdentityReceived, ModuleSchema, RequestIds, SendMessage, ServerMessage, ServerMessageReceived,
    SessionChange, SessionTracker, StateChanged,
};
use tokio::sync::oneshot;

use crate::config::ReducerConfig;
use crate::error::ReducerError;
use crate::ledger::{Abandoned, Call, CallId, Ledger, Outcome, ReducerResult};
use crate::messages::*;
use crate::persist::{self, QueueStore};

/// Mailbox capacity for bounded sends: a burst of game inputs.
pub(crate) const MAILBOX_CAPACITY: usize = 4096;
/// How soon a changed queue is written to its store.
const PERSIST_DELAY: Duration = Duration::from_millis(50);

/// Who waits for a call's result: an awaiting caller, or a completion to run.
enum Waiter {
    Channel(oneshot::Sender<Result<ReducerResult, ReducerError>>),
    Completion(Completion),
}

impl Waiter {
    fn send(self, result: Result<ReducerResult, ReducerError>) {
        match self {
            Waiter::Channel(tx) => {
                let _ = tx.send(result);
            }
            Waiter::Completion(done) => done(result),
        }
    }
}

/// The reducer client actor. Wire it to the connection with
/// [`ReducerActor::new`]'s `connection` recipient, and add its recipients to
/// the connection's listeners (messages, states, identities).
///
/// Wiring, not the game's API: `spacelink`'s supervisor starts it; a game
/// talks to it through [`ReducerHandle`](crate::ReducerHandle) (what `spacelink::Client` hands out).
pub struct ReducerActor {
    config: ReducerConfig,
    ledger: Ledger,
    connection: Recipient<SendMessage>,
    listeners: ReducerListeners,
    store: Option<Box<dyn QueueStore>>,
    /// The current session, as the connection's state changes tell it.
    session: SessionTracker,
    connection_id: Option<ConnectionId>,
    waiters: HashMap<CallId, Waiter>,
    validators: HashMap<String, Vec<Validator>>,
    schema: Option<Arc<ModuleSchema>>,
    callbacks: HashMap<CallbackId, (String, Recipient<ReducerEvent>)>,
    next_callback: u64,
    /// Calls held by an open batch, with their callers.
    batch: Option<Vec<(Call, Waiter)>>,
    persist_scheduled: bool,
    /// Whether the store was read (once: a restart keeps the queue).
    restored: bool,
}

impl std::fmt::Debug for ReducerActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReducerActor")
            .field("generation", &self.session.generation())
            .field("connected", &self.session.is_connected())
            .field("queued", &self.ledger.queued())
            .field("in_flight", &self.ledger.in_flight())
            .finish_non_exhaustive()
    }
}

impl ReducerActor {
    /// Draws request ids from the connection's allocator (see
    /// `ConnectionHandle::request_ids`): one id space for every call on it.
    pub fn with_request_ids(mut self, ids: RequestIds) -> Self {
        self.ledger = self.ledger.with_request_ids(ids);
        self
    }

    /// A reducer client that sends through `connection`.
    pub fn new(
        config: ReducerConfig,
        connection: Recipient<SendMessage>,
        listeners: ReducerListeners,
        store: Option<Box<dyn QueueStore>>,
    ) -> Self {
        Self {
            ledger: Ledger::new(config.queue_capacity, config.overflow).with_replay_window(config.replay_window),
            config,
            connection,
            listeners,
            store,
            session: SessionTracker::default(),
            connection_id: None,
            waiters: HashMap::new(),
            validators: HashMap::new(),
            schema: None,
            callbacks: HashMap::new(),
            next_callback: 1,
            batch: None,
            persist_scheduled: false,
            restored: false,
        }
    }

    fn tell(&self, event: ReducerEvent) {
        for r in &self.listeners.events {
            r.do_send(event.clone());
        }
    }

    /// Checks a call before it is accepted: size, schema, validators.
    fn validate(&self, call: &Call) -> Result<(), ReducerError> {
        let reducer = &call.reducer;
        if call.args.len() > self.config.max_args_size {
            return Err(ReducerError::TooLarge {
                reducer: reducer.clone(),
                size: call.args.len(),
                limit: self.config.max_args_size,
            });
        }
        if let Some(schema) = &self.schema {
            let Some(def) = schema.reducer(reducer).filter(|r| !r.lifecycle) else {
                return Err(ReducerError::UnknownReducer(reducer.clone()));
            };
            let params = AlgebraicType::Product(def.params.clone());
            guard::check(&Typespace::new(Vec::new()), &params, &call.args).map_err(|e| ReducerError::Invalid {
                reducer: reducer.clone(),
                reason: format!("arguments do not fit the reducer's parameters: {e}"),
            })?;
        }
        for validator in self.validators.get(reducer).into_iter().flatten() {
            validator(&call.args).map_err(|reason| ReducerError::Invalid { reducer: reducer.clone(), reason })?;
        }
        Ok(())
    }

    /// Takes a validated call into the ledger.
    fn accept(&mut self, call: Call, waiter: Option<Waiter>, ctx: &mut Context<Self>) -> Result<CallId, ReducerError> {
        let _span = tracing::trace_span!("reducer_call", reducer = %call.reducer).entered();
        let reducer = call.reducer.clone();
        let (id, dropped) = match self.ledger.enqueue(call) {
            Ok(accepted) => accepted,
            Err(full) => {
                let error = ReducerError::from(full);
                if let Some(waiter) = waiter {
                    waiter.send(Err(error.clone()));
                }
                return Err(error);
            }
        };
        if let Some(abandoned) = dropped {
            self.abandon(abandoned);
        }
        if let Some(waiter) = waiter {
            self.waiters.insert(id, waiter);
        }
        metrics::counter!(names::REDUCER_CALLS, names::LABEL_REDUCER => reducer.clone()).increment(1);
        self.tell(ReducerEvent::Called { call_id: id, reducer });
        self.pump(ctx);
        self.schedule_persist(ctx);
        Ok(id)
    }

    /// Sends queued calls while connected and under `max_in_flight`.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.pump_queue(ctx);
        metrics::gauge!(names::REDUCER_QUEUE_DEPTH).set(self.ledger.queued() as f64);
    }

    fn pump_queue(&mut self, ctx: &mut Context<Self>) {
        // Calls of a lost session still waiting for the connection's word go
        // first, in order, if they come back: nothing overtakes them.
        if self.ledger.in_limbo() > 0 {
            return;
        }
        let generation = self.session.generation();
        while self.session.is_connected() && self.ledger.in_flight() < self.config.max_in_flight {
            let Some((id, call)) = self.ledger.next_send(generation, now()) else { break };
            let send = self
                .connection
                .send(SendMessage { message: ClientMessage::CallReducer(call), generation: Some(generation) });
            ctx.spawn(send.into_actor(self).map(move |result, act, ctx| {
                let sent = matches!(result, Ok(Ok(())));
                if let Some(abandoned) = act.ledger.confirm(id, sent) {
                    act.abandon(abandoned);
                }
                if act.ledger.in_limbo() == 0 && act.session.is_connected() {
                    act.pump(ctx);
                }
                if !sent {
                    // Not on the socket: the call is back in the queue; the next
                    // session (or a moment's patience) sends it.
                    if act.session.is_connected() {
                        ctx.run_later(Duration::from_millis(20), |act, ctx| act.pump(ctx));
                    }
                }
            }));
        }
    }

    /// A call the ledger gave up on: its caller and the listeners hear why.
    fn abandon(&mut self, abandoned: Abandoned) {
        let (id, error) = match abandoned {
            Abandoned::OutcomeUnknown { id, reducer } => (id, ReducerError::OutcomeUnknown { reducer }),
            Abandoned::Dropped { id, reducer } => (id, ReducerError::Dropped { reducer }),
        };
        let reducer = match &error {
            ReducerError::OutcomeUnknown { reducer } | ReducerError::Dropped { reducer } => reducer.clone(),
            _ => String::new(),
        };
        metrics::counter!(names::REDUCER_ABANDONED, names::LABEL_REDUCER => reducer.clone()).increment(1);
        let outcome = match &error {
            ReducerError::Dropped { .. } => names::OUTCOME_DROPPED,
            _ => names::OUTCOME_UNKNOWN,
        };
        metrics::counter!(names::REDUCER_OUTCOMES, names::LABEL_REDUCER => reducer.clone(), names::LABEL_OUTCOME => outcome).increment(1);
        if let Some(waiter) = self.waiters.remove(&id) {
            waiter.send(Err(error.clone()));
        }
        self.tell(ReducerEvent::Failed { call_id: id, reducer, error });
    }

    fn on_transaction(&mut self, tx: &ws::TransactionUpdate<ws::BsatnFormat>, ctx: &mut Context<Self>) {
        let resolved = self.ledger.resolve(tx, self.connection_id, self.session.generation(), now());
        let ours = resolved.is_some();
        if let Some(result) = resolved {
            let reducer = result.reducer.clone();
            metrics::histogram!(names::REDUCER_ROUND_TRIP_SECONDS, names::LABEL_REDUCER => reducer.clone())
                .record(result.round_trip.as_secs_f64());
            let outcome = match result.outcome {
                Outcome::Committed => names::OUTCOME_COMMITTED,
                Outcome::Failed(_) => names::OUTCOME_FAILED,
                Outcome::OutOfEnergy => names::OUTCOME_OUT_OF_ENERGY,
            };
            metrics::counter!(names::REDUCER_OUTCOMES, names::LABEL_REDUCER => reducer.clone(), names::LABEL_OUTCOME => outcome).increment(1);
            if result.outcome != Outcome::Committed {
                metrics::counter!(names::REDUCER_FAILURES, names::LABEL_REDUCER => reducer).increment(1);
            }
            if let Some(waiter) = self.waiters.remove(&result.call_id) {
                waiter.send(Ok(result.clone()));
            }
            self.tell(ReducerEvent::Completed(result));
            self.pump(ctx);
            self.schedule_persist(ctx);
        }
        for replay in self.ledger.take_replays() {
            let outcome = match &replay.outcome {
                Outcome::Committed => names::OUTCOME_COMMITTED,
                Outcome::Failed(_) => names::OUTCOME_FAILED,
                Outcome::OutOfEnergy => names::OUTCOME_OUT_OF_ENERGY,
            };
            metrics::counter!(names::REDUCER_REPLAYS, names::LABEL_REDUCER => replay.reducer.clone(), names::LABEL_OUTCOME => outcome).increment(1);
            if replay.outcome != Outcome::Committed {
                // Told `Committed` before, lost by the server, refused now.
                tracing::warn!(
                    reducer = %replay.reducer,
                    sequence_number = ?replay.sequence_number,
                    outcome = ?replay.outcome,
                    "the server lost a committed call and refused it when it was sent again"
                );
            }
            self.pump(ctx);
        }
        let name = &*tx.reducer_call.reducer_name;
        if self.callbacks.values().any(|(r, _)| r == name) {
            let event = ReducerEvent::Observed {
                reducer: name.to_string(),
                caller: tx.caller_identity,
                ours,
                outcome: match &tx.status {
                    ws::UpdateStatus::Committed(_) => Outcome::Committed,
                    ws::UpdateStatus::Failed(m) => Outcome::Failed(m.to_string()),
                    ws::UpdateStatus::OutOfEnergy => Outcome::OutOfEnergy,
                },
                args: tx.reducer_call.args.to_vec().into(),
            };
            for (_, recipient) in self.callbacks.values().filter(|(r, _)| r == name) {
                recipient.do_send(event.clone());
            }
        }
    }

    fn schedule_persist(&mut self, ctx: &mut Context<Self>) {
        if self.store.is_none() || self.persist_scheduled {
            return;
        }
        self.persist_scheduled = true;
        ctx.run_later(PERSIST_DELAY, |act, _| act.persist());
    }

    fn persist(&mut self) {
        self.persist_scheduled = false;
        let bytes = persist::encode(self.ledger.persistable().into_iter());
        if let Some(store) = &mut self.store {
            if let Err(e) = store.save(&bytes) {
                tracing::warn!(error = %e, "cannot save the reducer call queue");
            }
        }
    }
}

impl Actor for ReducerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if self.restored {
            // A restart: the queue is still here; only the timers were lost.
            self.pump(ctx);
            self.schedule_persist(ctx);
            return;
        }
        self.restored = true;
        // Calls saved by an earlier run come back first, in order.
        let Some(store) = &mut self.store else { return };
        let stored = match store.load() {
            Ok(Some(bytes)) => persist::decode(&bytes),
            Ok(None) => return,
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(calls) => {
                tracing::info!(calls = calls.len(), "restored reducer calls from the store");
                for call in calls {
                    let _ = self.accept(call, None, ctx);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignored an unreadable reducer call store"),
        }
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        self.persist();
        Running::Stop
    }
}

/// Restarted by its supervisor when it stops, the same value: the queue, the
/// waiting callers and the callbacks survive; the timers are re-armed in `started()`.
impl actix::Supervised for ReducerActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // A scheduled save was a timer of the stopped context.
        self.persist_scheduled = false;
        tracing::info!(queued = self.ledger.queued(), in_flight = self.ledger.in_flight(), "reducer actor restarting");
    }
}

impl Handler<CallReducer> for ReducerActor {
    type Result = ResponseFuture<Result<ReducerResult, ReducerError>>;

    fn handle(&mut self, msg: CallReducer, ctx: &mut Self::Context) -> Self::Result {
        let mut call = msg.call;
        call.notify = true;
        if let Err(e) = self.validate(&call) {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        let tx = Waiter::Channel(tx);
        match &mut self.batch {
            Some(batch) => batch.push((call, tx)),
            None => {
                let _ = self.accept(call, Some(tx), ctx);
            }
        }
        Box::pin(async move { rx.await.unwrap_or(Err(ReducerError::Cancelled)) })
    }
}

impl Handler<SubmitCall> for ReducerActor {
    type Result = ();

    fn handle(&mut self, msg: SubmitCall, ctx: &mut Self::Context) {
        let SubmitCall { mut call, done } = msg;
        call.notify = true;
        if let Err(e) = self.validate(&call) {
            done(Err(e));
            return;
        }
        let waiter = Waiter::Completion(done);
        match &mut self.batch {
            Some(batch) => batch.push((call, waiter)),
            None => {
                let _ = self.accept(call, Some(waiter), ctx);
            }
        }
    }
}

impl Handler<FireReducer> for ReducerActor {
    type Result = Result<CallId, ReducerError>;

    fn handle(&mut self, msg: FireReducer, ctx: &mut Self::Context) -> Self::Result {
        let mut call = msg.call;
        call.notify = false;
        let reducer = call.reducer.clone();
        let accepted = self.validate(&call).and_then(|()| self.accept(call, None, ctx));
        if let Err(e) = &accepted {
            // `ReducerHandle::fire` does not wait for this answer: say it here.
            metrics::counter!(names::REDUCER_FIRE_REFUSED, names::LABEL_REDUCER => reducer.clone()).increment(1);
            tracing::warn!(reducer = %reducer, error = %e, "a fired reducer call was refused");
        }
        accepted
    }
}

impl Handler<BeginBatch> for ReducerActor {
    type Result = ();

    fn handle(&mut self, _msg: BeginBatch, _ctx: &mut Self::Context) {
        self.batch.get_or_insert_with(Vec::new);
    }
}

impl Handler<ExecuteBatch> for ReducerActor {
    type Result = ResponseFuture<Vec<Result<ReducerResult, ReducerError>>>;

    fn handle(&mut self, _msg: ExecuteBatch, ctx: &mut Self::Context) -> Self::Result {
        let mut receivers = Vec::new();
        for (call, caller) in self.batch.take().unwrap_or_default() {
            // The batch's own caller awaits each result in order; the original
            // `CallReducer` callers are answered too.
            let (tx, rx) = oneshot::channel();
            let _ = self.accept(call, Some(Waiter::Channel(tx)), ctx);
            receivers.push((rx, caller));
        }
        Box::pin(async move {
            let mut results = Vec::with_capacity(receivers.len());
            for (rx, caller) in receivers {
                let result = rx.await.unwrap_or(Err(ReducerError::Cancelled));
                caller.send(result.clone());
                results.push(result);
            }
            results
        })
    }
}

impl Handler<CancelBatch> for ReducerActor {
    type Result = ();

    fn handle(&mut self, _msg: CancelBatch, _ctx: &mut Self::Context) {
        for (_, caller) in self.batch.take().unwrap_or_default() {
            caller.send(Err(ReducerError::Cancelled));
        }
    }
}

impl Handler<RegisterValidator> for ReducerActor {
    type Result = ();

    fn handle(&mut self, msg: RegisterValidator, _ctx: &mut Self::Context) {
        self.validators.entry(msg.reducer).or_default().push(msg.validator);
    }
}

impl Handler<SetSchema> for ReducerActor {
    type Result = ();

    fn handle(&mut self, msg: SetSchema, _ctx: &mut Self::Context) {
        self.schema = Some(msg.schema);
    }
}

impl Handler<RegisterCallback> for ReducerActor {
    type Result = MessageResult<RegisterCallback>;

    fn handle(&mut self, msg: RegisterCallback, _ctx: &mut Self::Context) -> Self::Result {
        let id = CallbackId(self.next_callback);
        self.next_callback += 1;
        self.callbacks.insert(id, (msg.reducer, msg.recipient));
        MessageResult(id)
    }
}

impl Handler<UnregisterCallback> for ReducerActor {
    type Result = bool;

    fn handle(&mut self, msg: UnregisterCallback, _ctx: &mut Self::Context) -> bool {
        self.callbacks.remove(&msg.id).is_some()
    }
}

impl Handler<ShutdownReducers> for ReducerActor {
    type Result = ();

    fn handle(&mut self, _msg: ShutdownReducers, ctx: &mut Self::Context) {
        self.persist();
        for (_, waiter) in self.waiters.drain() {
            waiter.send(Err(ReducerError::Cancelled));
        }
        ctx.stop();
    }
}

impl Handler<GetQueueStatus> for ReducerActor {
    type Result = MessageResult<GetQueueStatus>;

    fn handle(&mut self, _msg: GetQueueStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(QueueStatus { queued: self.ledger.queued(), in_flight: self.ledger.in_flight() })
    }
}

impl Handler<StateChanged> for ReducerActor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, ctx: &mut Self::Context) {
        match self.session.observe(&msg) {
            SessionChange::Up { .. } => {
                self.connection_id = None; // The new session's arrives with its IdentityToken.
                self.pump(ctx);
            }
            SessionChange::Lost { generation } => {
                for abandoned in self.ledger.session_lost(generation) {
                    self.abandon(abandoned);
                }
                self.schedule_persist(ctx);
            }
            SessionChange::Unchanged => {}
        }
    }
}

impl Handler<IdentityReceived> for ReducerActor {
    type Result = ();

    fn handle(&mut self, msg: IdentityReceived, _ctx: &mut Self::Context) {
        if self.session.is_current(msg.generation) {
            self.connection_id = Some(msg.connection_id);
        }
    }
}

impl Handler<ServerMessageReceived> for ReducerActor {
    type Result = ();

    fn handle(&mut self, msg: ServerMessageReceived, ctx: &mut Self::Context) {
        if !self.session.is_current(msg.generation) {
            return; // From a dead session.
        }
        self.ledger.heard(now());
        if let ServerMessage::TransactionUpdate(tx) = &*msg.message {
            self.on_transaction(tx, ctx);
        }
    }
}
