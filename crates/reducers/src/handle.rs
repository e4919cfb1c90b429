//! The reducer client's front door: intent-named methods over the actor's address.

use std::sync::Arc;

use actix::{Addr, Recipient};
use bytes::Bytes;
use spacelink_connection::sats::{bsatn, de::Deserialize, ser::Serialize};
use spacelink_connection::ModuleSchema;

use crate::actor::ReducerActor;
use crate::actor::MAILBOX_CAPACITY;
use crate::error::ReducerError;
use crate::ledger::{Call, Dedup, QueueFull, ReducerResult};
use crate::messages::*;

/// A cheap, cloneable handle to the reducer client.
#[derive(Debug, Clone)]
pub struct ReducerHandle {
    addr: Addr<ReducerActor>,
    /// The actor's `max_args_size`, when known: [`fire`](Self::fire) refuses a larger call at once.
    max_args_size: Option<usize>,
}

impl ReducerHandle {
    /// Wraps the actor's address.
    pub fn new(addr: Addr<ReducerActor>) -> Self {
        Self { addr, max_args_size: None }
    }

    /// The actor's `max_args_size` (its [`ReducerConfig`](crate::ReducerConfig)'s),
    /// so that [`fire`](Self::fire), which does not wait for the actor, refuses
    /// a larger call with [`ReducerError::TooLarge`] rather than only logging it.
    pub fn with_max_args_size(mut self, limit: usize) -> Self {
        self.max_args_size = Some(limit);
        self
    }

    /// Calls `reducer` with BSATN-encoded `args` and waits for its result. Made
    /// while offline, the call waits in the queue and is sent after reconnecting.
    /// Without a sequence number it is never resent once it may have reached the
    /// server: a lost session then ends it with `OutcomeUnknown`.
    pub async fn call(&self, reducer: &str, args: Bytes) -> Result<ReducerResult, ReducerError> {
        self.call_with(Call { reducer: reducer.into(), args, notify: true, dedup: Dedup::None }).await
    }

    /// Like [`call`](Self::call), for a reducer that drops repeats of `seq`
    /// (a move numbered by the client, say): resent after a lost session until
    /// answered, and still run at most once. The module must answer a repeat
    /// as it answered the first run (an error if that was refused), since the
    /// answer to a resend is all the caller hears.
    pub async fn call_sequenced(&self, reducer: &str, args: Bytes, seq: u32) -> Result<ReducerResult, ReducerError> {
        self.call_with(Call { reducer: reducer.into(), args, notify: true, dedup: Dedup::Sequenced(seq) }).await
    }

    /// Calls `reducer` with typed arguments (a type deriving the SATS `Serialize`,
    /// as generated argument structs do).
    pub async fn call_typed<A: Serialize>(&self, reducer: &str, args: &A) -> Result<ReducerResult, ReducerError> {
        let bytes = bsatn::to_vec(args)
            .map_err(|e| ReducerError::Invalid { reducer: reducer.into(), reason: format!("cannot encode: {e}") })?;
        self.call(reducer, bytes.into()).await
    }

    /// Calls `reducer` with arguments in JSON (SATS-JSON, as the server's HTTP
    /// API takes them), encoded by the module's schema: for tools and consoles.
    pub async fn call_json(
        &self,
        schema: &ModuleSchema,
        reducer: &str,
        json: &str,
    ) -> Result<ReducerResult, ReducerError> {
        let args = schema
            .encode_reducer_args(reducer, json)
            .map_err(|e| ReducerError::Invalid { reducer: reducer.into(), reason: e.to_string() })?;
        self.call(reducer, args).await
    }

    /// Sends a prepared call and waits for its result.
    pub async fn call_with(&self, call: Call) -> Result<ReducerResult, ReducerError> {
        self.addr.send(CallReducer { call }).await.map_err(|_| ReducerError::ActorGone)?
    }

    /// Calls `reducer` without any answer (`NoSuccessNotify`; SpacetimeDB 1.3
    /// reports nothing back, not even a failure). Returns at once, without
    /// waiting for the actor: `TooLarge` if the arguments are over the limit
    /// given by [`with_max_args_size`](Self::with_max_args_size), `QueueFull` if
    /// its mailbox is full, and a call the actor then refuses (invalid, queue
    /// full) is only logged and counted.
    pub fn fire(&self, reducer: &str, args: Bytes) -> Result<(), ReducerError> {
        if let Some(limit) = self.max_args_size.filter(|&limit| args.len() > limit) {
            return Err(ReducerError::TooLarge { reducer: reducer.into(), size: args.len(), limit });
        }
        let call = Call { reducer: reducer.into(), args, notify: false, dedup: Dedup::None };
        self.addr.try_send(FireReducer { call }).map_err(|e| match e {
            actix::dev::SendError::Full(_) => ReducerError::QueueFull(QueueFull { capacity: MAILBOX_CAPACITY }),
            actix::dev::SendError::Closed(_) => ReducerError::ActorGone,
        })
    }

    /// Calls `reducer` and returns at once: `done` runs with the result (on
    /// the reducer actor's thread: hand it on, never block). A call refused
    /// before it is queued (the actor's mailbox full, the actor gone, invalid
    /// arguments) runs `done` with the error too.
    pub fn submit(&self, call: Call, done: Completion) {
        if let Err(e) = self.addr.try_send(SubmitCall { call, done }) {
            let (error, msg) = match e {
                actix::dev::SendError::Full(msg) => {
                    (ReducerError::QueueFull(QueueFull { capacity: MAILBOX_CAPACITY }), msg)
                }
                actix::dev::SendError::Closed(msg) => (ReducerError::ActorGone, msg),
            };
            (msg.done)(Err(error));
        }
    }

    /// Holds the calls that follow until [`execute_batch`](Self::execute_batch).
    pub fn begin_batch(&self) {
        self.addr.do_send(BeginBatch);
    }

    /// Sends the held calls in order and waits for all their results, in order.
    pub async fn execute_batch(&self) -> Result<Vec<Result<ReducerResult, ReducerError>>, ReducerError> {
        self.addr.send(ExecuteBatch).await.map_err(|_| ReducerError::ActorGone)
    }

    /// Drops the held calls; their callers get `Cancelled`.
    pub fn cancel_batch(&self) {
        self.addr.do_send(CancelBatch);
    }

    /// Checks every call of `reducer` with `validator` (on its encoded arguments).
    pub fn register_validator(
        &self,
        reducer: &str,
        validator: impl Fn(&[u8]) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.addr.do_send(RegisterValidator { reducer: reducer.into(), validator: Arc::new(validator) });
    }

    /// Checks every call of `reducer` with `validator` on its decoded arguments.
    pub fn register_typed_validator<A>(
        &self,
        reducer: &str,
        validator: impl Fn(&A) -> Result<(), String> + Send + Sync + 'static,
    ) where
        A: for<'de> Deserialize<'de>,
    {
        self.register_validator(reducer, move |bytes| {
            let args: A = bsatn::from_slice(bytes).map_err(|e| format!("arguments do not decode: {e}"))?;
            validator(&args)
        });
    }

    /// Checks calls against the module's schema from now on.
    pub fn set_schema(&self, schema: Arc<ModuleSchema>) {
        self.addr.do_send(SetSchema { schema });
    }

    /// Tells `recipient` about every transaction of `reducer` (ours and others').
    pub async fn register_callback(
        &self,
        reducer: &str,
        recipient: Recipient<ReducerEvent>,
    ) -> Result<CallbackId, ReducerError> {
        self.addr
            .send(RegisterCallback { reducer: reducer.into(), recipient })
            .await
            .map_err(|_| ReducerError::ActorGone)
    }

    /// Stops a callback.
    pub async fn unregister_callback(&self, id: CallbackId) -> Result<bool, ReducerError> {
        self.addr.send(UnregisterCallback { id }).await.map_err(|_| ReducerError::ActorGone)
    }

    /// Saves the queue (if there is a store), cancels waiting callers and stops.
    pub fn shutdown(&self) {
        self.addr.do_send(ShutdownReducers);
    }

    /// How many calls are queued and in flight.
    pub async fn status(&self) -> Result<QueueStatus, ReducerError> {
        self.addr.send(GetQueueStatus).await.map_err(|_| ReducerError::ActorGone)
    }
}
