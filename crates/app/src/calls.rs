//! Reducer calls that return at once: [`Reducers::call`] hands back a
//! [`ReducerCall`], whose result the game takes as it prefers: a callback run
//! by `frame_tick` ([`ReducerCall::on_result`]), an [`Event::ReducerResult`]
//! in `frame_tick` (always sent), a poll ([`ReducerCall::try_result`]) or `.await`.
//!
//! Nothing here waits for the reducer actor: the call is handed to its mailbox
//! (`try_send`, so a full mailbox is an immediate `QueueFull` result) with a
//! completion that queues the result for the game.
//!
//! A reducer that ran and failed is an error ([`ReducerError::Failed`],
//! [`ReducerError::OutOfEnergy`]): `?` and `Err(..)` arms see it; `Ok` means
//! committed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use spacelink_connection::sats::{bsatn, ser::Serialize};
use spacelink_reducers::{Call, Completion, Dedup, Outcome, ReducerError, ReducerHandle, ReducerResult};
use tokio::sync::oneshot;

use crate::events::{Event, EventSender};

/// A call's result.
pub type CallResult = Result<ReducerResult, ReducerError>;

type OnResult = Box<dyn FnOnce(&CallResult) + Send>;

/// A callback waiting for the result of the call with this ticket.
type Pending = (u64, oneshot::Receiver<CallResult>, OnResult);

/// Result callbacks waiting for their call, keyed by ticket (see `Client::frame_tick`).
#[derive(Clone, Default)]
pub(crate) struct ResultCallbacks(Arc<Mutex<Vec<Pending>>>);

impl fmt::Debug for ResultCallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultCallbacks").finish_non_exhaustive()
    }
}

/// The callbacks a client holds between ticks.
#[derive(Default)]
pub(crate) struct Waiting(HashMap<u64, (oneshot::Receiver<CallResult>, OnResult)>);

impl Waiting {
    /// Adopts the callbacks registered since the last tick.
    pub(crate) fn adopt(&mut self, from: &ResultCallbacks) {
        let mut new = from.0.lock().unwrap_or_else(|e| e.into_inner());
        for (ticket, rx, callback) in new.drain(..) {
            self.0.insert(ticket, (rx, callback));
        }
    }

    /// Runs the callback of `ticket`, if any, with `result`.
    pub(crate) fn dispatch(&mut self, ticket: u64, result: &CallResult) {
        if let Some((_, callback)) = self.0.remove(&ticket) {
            callback(result);
        }
    }

    /// Runs the callbacks whose result came but whose event was not among
    /// this tick's (drained before they were registered, or still queued):
    /// each callback runs exactly once, its later event finds none. A result
    /// in `held` (waiting for its transaction's rows) waits with it.
    pub(crate) fn sweep_ready(&mut self, held: &[u64]) {
        let ready: Vec<u64> =
            self.0.iter_mut().filter(|(t, (rx, _))| !rx.is_empty() && !held.contains(t)).map(|(t, _)| *t).collect();
        for ticket in ready {
            if let Some((mut rx, callback)) = self.0.remove(&ticket) {
                let result = rx.try_recv().unwrap_or(Err(ReducerError::Cancelled));
                callback(&result);
            }
        }
    }
}

/// The game's reducer calls (the official SDK's `conn.reducers`). Cheap to clone.
#[derive(Clone)]
pub struct Reducers {
    handle: ReducerHandle,
    events: EventSender,
    callbacks: ResultCallbacks,
    next_ticket: Arc<AtomicU64>,
    /// Calls not answered yet (the status's `calls_pending`).
    pending: Arc<AtomicUsize>,
    /// Raised by `Client::shutdown`: from then on every call is refused at
    /// once (`ActorGone`), never sent, even while the tree is still stopping.
    shut_down: Arc<AtomicBool>,
}

impl fmt::Debug for Reducers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reducers").finish_non_exhaustive()
    }
}

impl Reducers {
    pub(crate) fn new(
        handle: ReducerHandle,
        events: EventSender,
        callbacks: ResultCallbacks,
        pending: Arc<AtomicUsize>,
    ) -> Self {
        Self { handle, events, callbacks, next_ticket: Arc::new(AtomicU64::new(1)), pending, shut_down: Arc::default() }
    }

    /// Refuses every call once `flag` is raised (the client's shutdown).
    pub(crate) fn refusing_after(mut self, flag: Arc<AtomicBool>) -> Self {
        self.shut_down = flag;
        self
    }

    fn refused_after_shutdown(&self) -> Option<ReducerError> {
        self.shut_down.load(Ordering::SeqCst).then_some(ReducerError::ActorGone)
    }

    /// Calls `reducer` with typed arguments (a type deriving the SATS
    /// `Serialize`, as generated argument structs do) and returns at once. Made while offline, the call waits in the
    /// queue; without a sequence number it is never resent once it may have
    /// reached the server (a lost session ends it with `OutcomeUnknown`).
    pub fn call<A: Serialize>(&self, reducer: &str, args: &A) -> ReducerCall {
        self.submit(reducer, encode(reducer, args), Dedup::None)
    }

    /// Like [`call`](Self::call), for a reducer that drops repeats of `seq`:
    /// resent after a lost session until answered, and still run at most once.
    ///
    /// The answer to a resend is the module's answer to the repeat, so the
    /// module must answer a repeat as it answered the first run: success if
    /// `seq` was applied, an error if it was refused or skipped. A module that
    /// answers every old number with success tells the game that a call whose
    /// first run failed (on a session lost before its answer came) committed.
    pub fn call_sequenced<A: Serialize>(&self, reducer: &str, args: &A, seq: u32) -> ReducerCall {
        self.submit(reducer, encode(reducer, args), Dedup::Sequenced(seq))
    }

    /// Calls `reducer` with arguments already in BSATN.
    pub fn call_bsatn(&self, reducer: &str, args: Bytes) -> ReducerCall {
        self.submit(reducer, Ok(args), Dedup::None)
    }

    /// Calls `reducer` without any answer (SpacetimeDB 1.3 then reports
    /// nothing back, not even a failure). Returns at once. After
    /// `Client::shutdown`, this and every other call is refused at once with
    /// `ReducerError::ActorGone` and never sent.
    pub fn fire<A: Serialize>(&self, reducer: &str, args: &A) -> Result<(), ReducerError> {
        if let Some(e) = self.refused_after_shutdown() {
            return Err(e);
        }
        self.handle.fire(reducer, encode(reducer, args)?)
    }

    /// The reducer client underneath (batches, validators, queue status).
    pub fn handle(&self) -> &ReducerHandle {
        &self.handle
    }

    fn submit(&self, reducer: &str, args: Result<Bytes, ReducerError>, dedup: Dedup) -> ReducerCall {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let events = self.events.clone();
        let name: Arc<str> = Arc::from(reducer);
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::Relaxed);
        let done: Completion = Box::new(move |result: CallResult| {
            pending.fetch_sub(1, Ordering::Relaxed);
            let result = failure_as_error(result);
            let _ = tx.send(result.clone());
            events.event(Event::ReducerResult { ticket, reducer: name, result });
        });
        match self.refused_after_shutdown().map_or(args, Err) {
            Ok(args) => self.handle.submit(Call { reducer: reducer.into(), args, notify: true, dedup }, done),
            Err(e) => done(Err(e)),
        }
        ReducerCall { ticket, rx: Some(rx), callbacks: self.callbacks.clone() }
    }
}

/// A reducer that ran and failed is an error, so that no game mistakes it for a success.
fn failure_as_error(result: CallResult) -> CallResult {
    match result {
        Ok(ReducerResult { outcome: Outcome::Failed(message), reducer, .. }) => {
            Err(ReducerError::Failed { reducer, message })
        }
        Ok(ReducerResult { outcome: Outcome::OutOfEnergy, reducer, .. }) => Err(ReducerError::OutOfEnergy { reducer }),
        other => other,
    }
}

fn encode<A: Serialize>(reducer: &str, args: &A) -> Result<Bytes, ReducerError> {
    bsatn::to_vec(args)
        .map(Bytes::from)
        .map_err(|e| ReducerError::Invalid { reducer: reducer.into(), reason: format!("cannot encode: {e}") })
}

/// A call on its way: take its result by callback, poll or `.await`; the
/// [`Event::ReducerResult`] with its [`ticket`](Self::ticket) comes in `frame_tick` whatever you do.
#[must_use = "the call is made; take its result from frame_tick's events, or with on_result, try_result or .await"]
pub struct ReducerCall {
    ticket: u64,
    rx: Option<oneshot::Receiver<CallResult>>,
    callbacks: ResultCallbacks,
}

impl fmt::Debug for ReducerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReducerCall").field("ticket", &self.ticket).finish_non_exhaustive()
    }
}

impl ReducerCall {
    /// The call's ticket, as its [`Event::ReducerResult`] names it.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// The result, if it came (never blocks; `Some` once only).
    pub fn try_result(&mut self) -> Option<CallResult> {
        let rx = self.rx.as_mut()?;
        match rx.try_recv() {
            Ok(result) => {
                self.rx = None;
                Some(result)
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.rx = None;
                Some(Err(ReducerError::Cancelled))
            }
        }
    }

    /// Runs `callback` with the result on the game's thread, in the
    /// `frame_tick` that drains it (or the next one, if it was drained already).
    pub fn on_result(mut self, callback: impl FnOnce(&CallResult) + Send + 'static) {
        if let Some(rx) = self.rx.take() {
            self.callbacks.0.lock().unwrap_or_else(|e| e.into_inner()).push((self.ticket, rx, Box::new(callback)));
        }
    }
}

impl Future for ReducerCall {
    type Output = CallResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallResult> {
        let Some(rx) = self.rx.as_mut() else { return Poll::Ready(Err(ReducerError::Cancelled)) };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(result) => {
                self.rx = None;
                Poll::Ready(result.unwrap_or(Err(ReducerError::Cancelled)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn counting(count: &Arc<AtomicUsize>) -> OnResult {
        let count = count.clone();
        Box::new(move |_| {
            count.fetch_add(1, Ordering::Relaxed);
        })
    }

    #[test]
    fn a_result_callback_runs_exactly_once_whether_its_event_comes_before_or_after_it() {
        let callbacks = ResultCallbacks::default();
        let mut waiting = Waiting::default();
        let runs = Arc::new(AtomicUsize::new(0));

        // Registered before its result: the event of its tick runs it.
        let (tx, rx) = oneshot::channel();
        callbacks.0.lock().expect("lock").push((1, rx, counting(&runs)));
        waiting.adopt(&callbacks);
        let _ = tx.send(Err(ReducerError::Cancelled));
        waiting.dispatch(1, &Err(ReducerError::Cancelled));
        waiting.sweep_ready(&[]);
        assert_eq!(runs.load(Ordering::Relaxed), 1);

        // Registered after its event went by: the sweep of the next tick runs it,
        // and an event that still comes later finds nothing.
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(ReducerError::Cancelled));
        callbacks.0.lock().expect("lock").push((2, rx, counting(&runs)));
        waiting.adopt(&callbacks);
        waiting.sweep_ready(&[]);
        waiting.dispatch(2, &Err(ReducerError::Cancelled));
        assert_eq!(runs.load(Ordering::Relaxed), 2);

        // Not answered yet: nothing runs, nothing is dropped.
        let (_tx, rx) = oneshot::channel();
        callbacks.0.lock().expect("lock").push((3, rx, counting(&runs)));
        waiting.adopt(&callbacks);
        waiting.sweep_ready(&[]);
        assert_eq!(runs.load(Ordering::Relaxed), 2);
        assert_eq!(waiting.0.len(), 1);
    }
}
