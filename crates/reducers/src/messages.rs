//! The reducer actor's messages: what it takes and what it tells.

use std::fmt;
use std::sync::Arc;

use actix::prelude::*;
use spacelink_connection::lib::Identity;
use spacelink_connection::ModuleSchema;

use crate::error::ReducerError;
use crate::ledger::{Call, CallId, Outcome, ReducerResult};

/// Checks a call's encoded arguments; `Err` says why they are refused.
pub(crate) type Validator = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

// ---- Taken by the reducer actor ----

/// Call a reducer and answer with its result (the design's `CallAsync`).
#[derive(Debug, Message)]
#[rtype(result = "Result<ReducerResult, ReducerError>")]
pub(crate) struct CallReducer {
    /// The call.
    pub(crate) call: Call,
}

/// What runs with a call's result, on the reducer actor's thread: it must
/// only hand the result on (to a channel, a queue), never block.
pub type Completion = Box<dyn FnOnce(Result<ReducerResult, ReducerError>) + Send>;

/// Call a reducer; its result goes to `done` (refused calls too): the
/// caller never waits for the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SubmitCall {
    /// The call.
    pub(crate) call: Call,
    /// Runs once with the result.
    pub(crate) done: Completion,
}

impl fmt::Debug for SubmitCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitCall").field("call", &self.call).finish_non_exhaustive()
    }
}

/// Call a reducer without any answer (`NoSuccessNotify`: SpacetimeDB 1.3 then
/// reports nothing back, not even a failure); answers once the call is accepted.
#[derive(Debug, Message)]
#[rtype(result = "Result<CallId, ReducerError>")]
pub(crate) struct FireReducer {
    /// The call (its `notify` is ignored: it is sent without success notification).
    pub(crate) call: Call,
}

/// Hold the calls that follow until `ExecuteBatch` or `CancelBatch`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct BeginBatch;

/// Send the held calls in order; answers with their results in the same order.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<Result<ReducerResult, ReducerError>>")]
pub(crate) struct ExecuteBatch;

/// Drop the held calls; their callers get `Cancelled`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct CancelBatch;

/// Check every call of `reducer` with `validator` before it is accepted.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RegisterValidator {
    /// The reducer.
    pub(crate) reducer: String,
    /// The check.
    pub(crate) validator: Validator,
}

impl fmt::Debug for RegisterValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterValidator").field("reducer", &self.reducer).finish_non_exhaustive()
    }
}

/// Check calls against this module schema (reducer exists, arguments fit its parameters).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct SetSchema {
    /// The schema.
    pub(crate) schema: Arc<ModuleSchema>,
}

/// Tell `recipient` about every transaction of `reducer`, ours and other clients'.
#[derive(Debug, Message)]
#[rtype(result = "CallbackId")]
pub(crate) struct RegisterCallback {
    /// The reducer.
    pub(crate) reducer: String,
    /// Who hears it.
    pub(crate) recipient: Recipient<ReducerEvent>,
}

/// Stop a callback registered with `RegisterCallback`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub(crate) struct UnregisterCallback {
    /// What `RegisterCallback` answered.
    pub(crate) id: CallbackId,
}

/// A registered callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(pub u64);

/// Save the queue, cancel the waiting callers and stop.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct ShutdownReducers;

/// Ask how many calls are queued and in flight.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "QueueStatus")]
pub(crate) struct GetQueueStatus;

/// Calls held by the reducer client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Waiting to be sent (offline, or over `max_in_flight`).
    pub queued: usize,
    /// Sent and not yet answered.
    pub in_flight: usize,
}

// ---- Told by the reducer actor ----

/// What happened to reducer calls (the design's `OnReducerCalled`,
/// `OnReducerCompleted`, `OnReducerFailed`, and registered callbacks).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum ReducerEvent {
    /// One of our calls was accepted.
    Called {
        /// The call.
        call_id: CallId,
        /// The reducer.
        reducer: String,
    },
    /// One of our calls was answered (committed, failed in the reducer, or out of energy).
    Completed(ReducerResult),
    /// One of our calls got no answer and never will (dropped, outcome unknown, cancelled).
    Failed {
        /// The call.
        call_id: CallId,
        /// The reducer.
        reducer: String,
        /// Why.
        error: ReducerError,
    },
    /// A transaction of a reducer with a registered callback ran (ours or another client's).
    Observed {
        /// The reducer.
        reducer: String,
        /// Who called it.
        caller: Identity,
        /// Whether it was one of our calls.
        ours: bool,
        /// How it ended.
        outcome: Outcome,
        /// Its BSATN-encoded arguments.
        args: bytes::Bytes,
    },
}

/// Who hears the reducer client's events. Given to the actor when it is built.
#[derive(Debug, Clone, Default)]
pub struct ReducerListeners {
    /// Every `ReducerEvent` about our own calls.
    pub events: Vec<Recipient<ReducerEvent>>,
}
