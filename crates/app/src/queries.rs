//! One-off queries from the game's thread: [`crate::Client::query`] sends the
//! query and returns a [`QueryCall`] at once; its rows come back as a
//! [`QueryRows`] to poll ([`QueryCall::try_result`]) or `.await`.
//!
//! The [`QueryDesk`] actor sends each query through the connection and hears
//! every server message for the answers (a `OneOffQueryResponse` carries the
//! query's message id). A query whose session ends before its answer fails
//! (the answer cannot come on another session); a query of a table with no
//! columns is refused before sending (the 1.3 server panics on it).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use spacelink_connection::codec;
use spacelink_connection::sats::de::Deserialize;
use spacelink_connection::{
    ConnectionError, ConnectionHandle, ModuleSchema, ServerMessage, ServerMessageReceived, SessionChange,
    SessionTracker, StateChanged,
};
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::supervisor::Ready;

type Answer = oneshot::Sender<Result<QueryRows, ClientError>>;

/// The rows a one-off query returned, grouped by table.
#[derive(Debug, Clone)]
pub struct QueryRows {
    tables: Vec<(Arc<str>, Vec<Bytes>)>,
    schema: Option<Arc<ModuleSchema>>,
    /// How long the server took to run it.
    pub execution: Duration,
}

impl QueryRows {
    /// The tables that have rows in the answer.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|(t, _)| &**t)
    }

    /// How many rows of `table` came back.
    pub fn count(&self, table: &str) -> usize {
        self.bytes(table).len()
    }

    /// The rows of `table`, as BSATN.
    pub fn bytes(&self, table: &str) -> &[Bytes] {
        self.tables.iter().find(|(t, _)| &**t == table).map_or(&[], |(_, rows)| rows)
    }

    /// The rows of `table` as `T` (a type deriving the SATS `Deserialize`, as
    /// generated row types do); a row that does not decode is an error.
    pub fn rows<T: for<'de> Deserialize<'de>>(&self, table: &str) -> Result<Vec<T>, ClientError> {
        let schema =
            self.schema.as_ref().ok_or_else(|| ClientError::Query("the module's schema is not known yet".into()))?;
        let definition = schema.table(table).ok_or_else(|| ClientError::Query(format!("no table `{table}`")))?;
        self.bytes(table)
            .iter()
            .map(|row| {
                definition.decode_as::<T>(row).map_err(|e| ClientError::Query(format!("a row of `{table}`: {e}")))
            })
            .collect()
    }
}

/// A query on its way: poll it each frame ([`try_result`](Self::try_result)) or `.await` it.
#[derive(Debug)]
#[must_use = "the query is sent; take its rows with try_result or .await"]
pub struct QueryCall {
    rx: Option<oneshot::Receiver<Result<QueryRows, ClientError>>>,
}

impl QueryCall {
    pub(crate) fn pending(rx: oneshot::Receiver<Result<QueryRows, ClientError>>) -> Self {
        Self { rx: Some(rx) }
    }

    /// The answer, once there is one (never blocks; `Some` once only).
    pub fn try_result(&mut self) -> Option<Result<QueryRows, ClientError>> {
        let rx = self.rx.as_mut()?;
        match rx.try_recv() {
            Ok(answer) => {
                self.rx = None;
                Some(answer)
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.rx = None;
                Some(Err(ClientError::Connection(ConnectionError::ActorGone)))
            }
        }
    }
}

impl Future for QueryCall {
    type Output = Result<QueryRows, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(Err(ClientError::Connection(ConnectionError::ActorGone)));
        };
        Pin::new(rx).poll(cx).map(|answer| {
            self.rx = None;
            answer.unwrap_or(Err(ClientError::Connection(ConnectionError::ActorGone)))
        })
    }
}

/// Send `sql` as a one-off query and answer on `answer`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ask {
    pub(crate) sql: String,
    pub(crate) answer: Answer,
}

/// A sent query, waiting for its answer.
#[derive(Message)]
#[rtype(result = "()")]
struct Sent {
    message_id: Vec<u8>,
    answer: Answer,
}

/// Sends one-off queries and matches their answers.
pub(crate) struct QueryDesk {
    connection: ConnectionHandle,
    ready: Arc<OnceLock<Ready>>,
    waiting: HashMap<Vec<u8>, Answer>,
    /// Answers that came before their query's send was confirmed (the
    /// connection's reply can lag behind a quick server): few, and bounded.
    early: HashMap<Vec<u8>, Result<QueryRows, ClientError>>,
    /// The session, followed as every actor follows it.
    session: SessionTracker,
}

/// How many early answers are kept for queries not registered yet.
const EARLY: usize = 64;

impl std::fmt::Debug for QueryDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryDesk").field("waiting", &self.waiting.len()).finish_non_exhaustive()
    }
}

impl QueryDesk {
    pub(crate) fn new(connection: ConnectionHandle, ready: Arc<OnceLock<Ready>>) -> Self {
        Self { connection, ready, waiting: HashMap::new(), early: HashMap::new(), session: SessionTracker::default() }
    }
}

impl Actor for QueryDesk {
    type Context = Context<Self>;
}

impl Handler<Ask> for QueryDesk {
    type Result = ();

    fn handle(&mut self, msg: Ask, ctx: &mut Self::Context) {
        if let Some(ready) = self.ready.get() {
            if let Err(e) = ready.schema.check_one_off_query(&msg.sql) {
                let _ = msg.answer.send(Err(e.into()));
                return;
            }
        }
        let connection = self.connection.clone();
        let me = ctx.address();
        actix::spawn(async move {
            match connection.one_off_query(&msg.sql).await {
                Ok(message_id) => me.do_send(Sent { message_id, answer: msg.answer }),
                Err(e) => {
                    let _ = msg.answer.send(Err(e.into()));
                }
            }
        });
    }
}

impl Handler<Sent> for QueryDesk {
    type Result = ();

    fn handle(&mut self, msg: Sent, _: &mut Self::Context) {
        match self.early.remove(&msg.message_id) {
            Some(result) => {
                let _ = msg.answer.send(result);
            }
            None => {
                self.waiting.insert(msg.message_id, msg.answer);
            }
        }
    }
}

impl Handler<ServerMessageReceived> for QueryDesk {
    type Result = ();

    fn handle(&mut self, msg: ServerMessageReceived, _: &mut Self::Context) {
        let ServerMessage::OneOffQueryResponse(response) = &*msg.message else { return };
        let result = match &response.error {
            Some(error) => Err(ClientError::Query(error.to_string())),
            None => Ok(QueryRows {
                tables: response
                    .tables
                    .iter()
                    .map(|t| (Arc::from(&*t.table_name), codec::rows(&t.rows).collect()))
                    .collect(),
                schema: self.ready.get().map(|r| r.schema.clone()),
                execution: response.total_host_execution_duration.to_duration_abs(),
            }),
        };
        match self.waiting.remove(&response.message_id[..]) {
            Some(answer) => {
                let _ = answer.send(result);
            }
            None if self.early.len() < EARLY => {
                self.early.insert(response.message_id.to_vec(), result);
            }
            None => tracing::debug!("an answer to no query of ours"),
        }
    }
}

impl Handler<StateChanged> for QueryDesk {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        if let SessionChange::Lost { .. } = self.session.observe(&msg) {
            self.early.clear();
            for (_, answer) in self.waiting.drain() {
                let _ = answer.send(Err(ClientError::Query("the session was lost before the answer".into())));
            }
        }
    }
}
