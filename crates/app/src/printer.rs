//! The `spacelink` command's actor: does the one job it was asked (subscribe,
//! call, query) on each session, and prints what it hears as JSON lines.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Value as Json};
use spacelink_connection::{
    ws, ConnectionHandle, ModuleSchema, ResilienceEvent, ServerMessage, ServerMessageReceived, StateChanged,
};
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

/// Tells the printer which connection to drive.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AttachConnection {
    /// The connection.
    pub handle: ConnectionHandle,
}

/// The printer: an actor that only moves messages to `out`.
pub struct Printer {
    schema: Arc<ModuleSchema>,
    job: Job,
    out: Box<dyn Write + Send>,
    handle: Option<ConnectionHandle>,
    /// The call in flight (request id, when sent), or the query's message id.
    pending_call: Option<(u32, Instant)>,
    /// This session's connection id, to recognise our own failed calls.
    connection_id: Option<spacelink_connection::lib::ConnectionId>,
    pending_query: Option<Vec<u8>>,
    /// Set once a call or query is answered: the exit code.
    done: Option<oneshot::Sender<i32>>,
    /// The newest session seen; older sessions' messages are dropped.
    generation: u64,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").field("job", &self.job).field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl Printer {
    /// A printer for `job`, writing to `out`; `done` gets the exit code when a one-shot job ends.
    pub fn new(schema: Arc<ModuleSchema>, job: Job, out: Box<dyn Write + Send>, done: oneshot::Sender<i32>) -> Self {
        Self {
            schema,
            job,
            out,
            handle: None,
            pending_call: None,
            connection_id: None,
            pending_query: None,
            done: Some(done),
            generation: 0,
        }
    }

    fn print(&mut self, event: &Json) {
        // A closed stdout (a pipe to `head`) is not worth a panic.
        let _ = writeln!(self.out, "{event}");
        let _ = self.out.flush();
    }

    fn finish(&mut self, code: i32) {
        if let Some(done) = self.done.take() {
            let _ = done.send(code);
        }
    }

    /// A session is up: (re)do the job on it.
    fn start_job(&mut self, ctx: &mut Context<Self>) {
        let Some(handle) = self.handle.clone() else { return };
        let job = self.job.clone();
        let schema = self.schema.clone();
        // Never call twice: a call whose session died may have run.
        if matches!(job, Job::Call { .. }) && self.pending_call.is_some() {
            return;
        }
        if let Job::Call { .. } = &job {
            // Known before sending, so that a quick answer finds it.
            self.pending_call = Some((handle.next_id(), Instant::now()));
        }
        let request_id = self.pending_call.map_or(0, |(id, _)| id);
        let work = async move {
            match job {
                Job::Subscribe(queries) => handle.subscribe(&queries).await.map(|_| None),
                Job::Call { reducer, args } => {
                    let args = schema.encode_reducer_args(&reducer, &args)?;
                    let call = ws::CallReducer {
                        reducer: reducer.into(),
                        args,
                        request_id,
                        flags: ws::CallReducerFlags::FullUpdate,
                    };
                    handle.send(ws::ClientMessage::CallReducer(call)).await.map(|_| None)
                }
                Job::Sql(sql) => handle.one_off_query(&sql).await.map(Some),
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

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<AttachConnection> for Printer {
    type Result = ();

    fn handle(&mut self, msg: AttachConnection, _ctx: &mut Self::Context) {
        self.handle = Some(msg.handle);
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
            self.finish(3);
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
        if let ServerMessage::IdentityToken(token) = message {
            self.connection_id = Some(token.connection_id);
        }
        match (&self.job, message) {
            (Job::Call { reducer, .. }, ServerMessage::TransactionUpdate(tx)) => {
                if let Some((id, sent)) = self.pending_call {
                    // SpacetimeDB 1.3 sends a failed call's update with request id 0:
                    // then it is ours if it is our connection's call of our reducer.
                    let ours = tx.reducer_call.request_id == id
                        || (tx.reducer_call.request_id == 0
                            && Some(tx.caller_connection_id) == self.connection_id
                            && &*tx.reducer_call.reducer_name == reducer.as_str());
                    if ours {
                        let event = render::reducer_event(tx, Some(msg.received_at.duration_since(sent)));
                        self.print(&event);
                        let ok = matches!(tx.status, ws::UpdateStatus::Committed(_));
                        self.finish(if ok { 0 } else { 1 });
                    }
                }
            }
            (Job::Call { .. }, ServerMessage::IdentityToken(_)) | (Job::Subscribe(_), _) => {
                for event in render::message_events(&self.schema, message) {
                    self.print(&event);
                }
            }
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
