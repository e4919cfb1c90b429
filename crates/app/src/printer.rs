//! The `spacelink` command's actor: does the one job it was asked (subscribe,
//! call, query) on each session, and prints what it hears as JSON lines.
//!
//! `subscribe` runs on the sync actor: the client subscribes the queries as one
//! query set (kept across reconnects) and the printer prints the sync actor's
//! merged [`RowsChanged`]: each row once however many queries hold it, an
//! update as one `update`, and after a reconnect only the real differences the
//! reconciliation found. Those changes are printed in the order the sync actor
//! applied them, whatever their session: they are the cache's own history (the
//! sync actor already drops what a dead session delivers), so the printed
//! stream always sums to the cache.

use std::io::Write;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Value as Json};
use spacelink_connection::{
    ConnectionHandle, ModuleSchema, ResilienceEvent, ServerMessage, ServerMessageReceived, StateChanged,
};
use spacelink_reducers::{Outcome, ReducerHandle};
use spacelink_sync::{RowsChanged, SubscriptionEvent};
use tokio::sync::oneshot;

use crate::render;

/// What the command was asked to do.
#[derive(Debug, Clone)]
pub enum Job {
    /// Subscribe to these queries and print every change until stopped.
    Subscribe(Vec<String>),
    /// Call a reducer with JSON arguments and print its outcome.
    Call {
        /// The reducer.
        reducer: String,
        /// Its arguments, SATS-JSON (an array or an object).
        args: String,
    },
    /// Run a one-off query and print its rows.
    Sql(String),
}

/// Tells the printer which connection and reducer client to drive.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AttachConnection {
    /// The connection.
    pub handle: ConnectionHandle,
    /// The reducer client (calls go through it, so they get its correlation and validation).
    pub reducers: ReducerHandle,
}

/// The printer: an actor that only moves messages to `out`.
pub struct Printer {
    schema: Arc<ModuleSchema>,
    job: Job,
    out: Box<dyn Write + Send>,
    handle: Option<ConnectionHandle>,
    reducers: Option<ReducerHandle>,
    /// Whether the call was made (it is made once, whatever happens to sessions).
    called: bool,
    /// The one-off query's message id.
    pending_query: Option<Vec<u8>>,
    /// Set once the job ends: the exit code and why.
    done: Option<oneshot::Sender<Exit>>,
    /// Whether the subscription's rows arrived once (later changes are transactions).
    applied: bool,
    /// The newest session seen; older sessions' messages are dropped.
    generation: u64,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").field("job", &self.job).field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl Printer {
    /// A printer for `job`, writing to `out`; `done` hears the exit code and
    /// its reason when the job ends (a one-shot job answered, a subscription
    /// refused for good, the connection failed).
    pub fn new(schema: Arc<ModuleSchema>, job: Job, out: Box<dyn Write + Send>, done: oneshot::Sender<Exit>) -> Self {
        Self {
            schema,
            job,
            out,
            handle: None,
            reducers: None,
            called: false,
            pending_query: None,
            done: Some(done),
            applied: false,
            generation: 0,
        }
    }

    fn print(&mut self, event: &Json) {
        // A closed stdout (a pipe to `head`) is not worth a panic.
        let _ = writeln!(self.out, "{event}");
        let _ = self.out.flush();
    }

    fn finish(&mut self, code: i32) {
        self.finish_because(code, String::new());
    }

    fn finish_because(&mut self, code: i32, reason: String) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Exit { code, reason });
        }
    }

    /// A session is up: (re)do the job on it.
    fn start_job(&mut self, ctx: &mut Context<Self>) {
        let (Some(handle), Some(reducers)) = (self.handle.clone(), self.reducers.clone()) else { return };
        let job = self.job.clone();
        if let Job::Call { reducer, args } = job {
            // Once: the reducer client resends it only if that cannot run it twice.
            if std::mem::replace(&mut self.called, true) {
                return;
            }
            let schema = self.schema.clone();
            let call = async move { reducers.call_json(&schema, &reducer, &args).await };
            ctx.spawn(call.into_actor(self).map(|result, act, _ctx| match result {
                Ok(result) => {
                    act.print(&render::call_result(&result));
                    act.finish(if result.outcome == Outcome::Committed { 0 } else { 1 });
                }
                Err(e) => {
                    act.print(&json!({ "event": "error", "error": e.to_string() }));
                    act.finish(2);
                }
            }));
            return;
        }
        let work = async move {
            match job {
                // Subscribed (and resubscribed after reconnects) by the sync actor.
                Job::Subscribe(_) => Ok(None),
                Job::Sql(sql) => handle.one_off_query(&sql).await.map(Some),
                Job::Call { .. } => Ok(None),
            }
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _ctx| match result {
            Ok(Some(query_id)) => act.pending_query = Some(query_id),
            Ok(None) => {}
            Err(e) => {
                act.print(&json!({ "event": "error", "error": e.to_string() }));
                act.finish(2);
            }
        }));
    }
}

/// How the command ends: its exit code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The process's exit code.
    pub code: i32,
    /// Why (empty for a one-shot job that was answered).
    pub reason: String,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

/// Stop printing (the command is about to print its last line): the printer
/// stops, and what is still sent to it is dropped.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopPrinting;

impl Handler<StopPrinting> for Printer {
    type Result = ();

    fn handle(&mut self, _msg: StopPrinting, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<AttachConnection> for Printer {
    type Result = ();

    fn handle(&mut self, msg: AttachConnection, _ctx: &mut Self::Context) {
        self.handle = Some(msg.handle);
        self.reducers = Some(msg.reducers);
    }
}

impl Handler<StateChanged> for Printer {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, ctx: &mut Self::Context) {
        self.generation = self.generation.max(msg.generation);
        self.print(&render::state_event(&msg));
        if msg.to.is_connected() {
            self.start_job(ctx);
        } else if msg.to == spacelink_connection::ConnectionState::Failed {
            let reason = msg.reason.as_deref().unwrap_or("no reason given");
            self.finish_because(3, format!("the connection failed: {reason}"));
        }
    }
}

impl Handler<ResilienceEvent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: ResilienceEvent, _ctx: &mut Self::Context) {
        // Attempts are implied by state changes; the rest is news.
        if !matches!(msg, ResilienceEvent::AttemptStarted { .. }) {
            self.print(&render::resilience_event(&msg));
        }
    }
}

impl Handler<ServerMessageReceived> for Printer {
    type Result = ();

    fn handle(&mut self, msg: ServerMessageReceived, _ctx: &mut Self::Context) {
        if msg.generation < self.generation {
            return; // From a dead session.
        }
        let message = &*msg.message;
        match (&self.job, message) {
            (Job::Call { .. } | Job::Subscribe(_), ServerMessage::IdentityToken(_)) => {
                for event in render::message_events(&self.schema, message) {
                    self.print(&event);
                }
            }
            // Which reducer ran and how it ended; its rows come merged from the sync actor.
            (Job::Subscribe(_), ServerMessage::TransactionUpdate(tx)) => self.print(&render::reducer_event(tx)),
            (Job::Sql(_), ServerMessage::OneOffQueryResponse(response))
                if self.pending_query.as_deref() == Some(&response.message_id[..]) =>
            {
                for event in render::message_events(&self.schema, message) {
                    self.print(&event);
                }
                self.finish(if response.error.is_some() { 1 } else { 0 });
            }
            (Job::Sql(_), ServerMessage::IdentityToken(_)) => {
                for event in render::message_events(&self.schema, message) {
                    self.print(&event);
                }
            }
            _ => {}
        }
    }
}

impl Handler<RowsChanged> for Printer {
    type Result = ();

    fn handle(&mut self, msg: RowsChanged, _ctx: &mut Self::Context) {
        for event in render::row_change_events(&self.schema, &msg, !self.applied) {
            self.print(&event);
        }
    }
}

impl Handler<SubscriptionEvent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionEvent, _ctx: &mut Self::Context) {
        match msg {
            SubscriptionEvent::Applied { id } => {
                let first = !std::mem::replace(&mut self.applied, true);
                let event = if first { "subscribed" } else { "resubscribed" };
                self.print(&json!({ "event": event, "subscription": id.0, "generation": self.generation }));
            }
            SubscriptionEvent::Failed { id, error, retrying } => {
                self.print(&json!({
                    "event": "subscription_error", "subscription": id.0, "error": error, "retrying": retrying,
                }));
                if !retrying {
                    self.finish_because(1, format!("the server refused the subscription: {error}"));
                }
            }
            SubscriptionEvent::Removed { id } | SubscriptionEvent::Cancelled { id } => {
                self.print(&json!({ "event": "unsubscribed", "subscription": id.0 }));
            }
            SubscriptionEvent::Resubscribing { id, reason } => {
                self.print(&json!({ "event": "resubscribing", "subscription": id.0, "reason": reason }));
            }
        }
    }
}
