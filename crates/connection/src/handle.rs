//! The connection's front door: intent-named methods over the actor's address.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use actix::{Addr, Recipient};
use bytes::Bytes;
use spacetimedb_client_api_messages::websocket as ws;

use crate::actor::ConnectionActor;
use crate::codec::ClientMessage;
use crate::error::ConnectionError;
use crate::messages::*;

/// The connection's one id space for request, query and message ids: every
/// client of a connection (the handle, the reducer client) draws from the same
/// allocator, so no two requests on it share an id and no answer is matched to
/// the wrong call. Never hands out 0 (what SpacetimeDB 1.3 puts on failed calls).
#[derive(Debug, Clone)]
pub struct RequestIds(Arc<AtomicU32>);

impl Default for RequestIds {
    fn default() -> Self {
        Self(Arc::new(AtomicU32::new(1)))
    }
}

impl RequestIds {
    /// A fresh id (wraps around after `u32::MAX`, skipping 0).
    pub fn next(&self) -> u32 {
        loop {
            let id = self.0.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }
}

/// A cheap, cloneable handle to a running connection.
///
/// Request, query and message ids are allocated here, so a caller knows the id
/// of what it sent without waiting for the actor.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    addr: Addr<ConnectionActor>,
    ids: RequestIds,
}

impl ConnectionHandle {
    pub(crate) fn new(addr: Addr<ConnectionActor>) -> Self {
        Self { addr, ids: RequestIds::default() }
    }

    /// The connection's id allocator, for every other client that sends
    /// requests on it (the reducer client): one id space per connection.
    pub fn request_ids(&self) -> RequestIds {
        self.ids.clone()
    }

    /// Where other actors send what goes on the socket (the reducer client, state sync).
    pub fn sender(&self) -> Recipient<SendMessage> {
        self.addr.clone().recipient()
    }

    /// Where the auth actor hands a new token for the next session.
    pub fn token_sink(&self) -> Recipient<ReplaceToken> {
        self.addr.clone().recipient()
    }

    /// A fresh id for a request, query or one-off query.
    pub fn next_id(&self) -> u32 {
        self.ids.next()
    }

    /// Sends `message` and waits for the actor to queue it on the socket.
    pub async fn send(&self, message: ClientMessage) -> Result<(), ConnectionError> {
        self.addr.send(SendMessage { message, generation: None }).await.map_err(|_| ConnectionError::ActorGone)?
    }

    /// Calls `reducer` with BSATN-encoded `args`; returns the request id that
    /// the resulting `TransactionUpdate` will carry.
    pub async fn call_reducer(
        &self,
        reducer: &str,
        args: Bytes,
        flags: ws::CallReducerFlags,
    ) -> Result<u32, ConnectionError> {
        let request_id = self.next_id();
        let message =
            ws::ClientMessage::CallReducer(ws::CallReducer { reducer: reducer.into(), args, request_id, flags });
        self.send(message).await?;
        Ok(request_id)
    }

    /// Subscribes to a set of queries (`SubscribeMulti`); returns its query id.
    pub async fn subscribe(&self, queries: &[String]) -> Result<ws::QueryId, ConnectionError> {
        let query_id = ws::QueryId::new(self.next_id());
        let message = ws::ClientMessage::SubscribeMulti(ws::SubscribeMulti {
            query_strings: queries.iter().map(|q| q.as_str().into()).collect(),
            request_id: self.next_id(),
            query_id,
        });
        self.send(message).await?;
        Ok(query_id)
    }

    /// Drops the query set `query_id` (`UnsubscribeMulti`).
    pub async fn unsubscribe(&self, query_id: ws::QueryId) -> Result<(), ConnectionError> {
        let message =
            ws::ClientMessage::UnsubscribeMulti(ws::UnsubscribeMulti { request_id: self.next_id(), query_id });
        self.send(message).await
    }

    /// Runs a one-off query; returns the message id its response will carry.
    ///
    /// The query is not checked against the schema here: a query of a
    /// zero-width table makes a 1.3 server panic, so check it first with
    /// [`crate::ModuleSchema::check_one_off_query`] (the `spacelink` command does).
    pub async fn one_off_query(&self, sql: &str) -> Result<Vec<u8>, ConnectionError> {
        let message_id = self.next_id().to_le_bytes().to_vec();
        let message = ws::ClientMessage::OneOffQuery(ws::OneOffQuery {
            message_id: message_id.clone().into(),
            query_string: sql.into(),
        });
        self.send(message).await?;
        Ok(message_id)
    }

    /// Drops the session and connects again now (also revives a `Failed` connection).
    pub fn reconnect(&self, reason: impl Into<String>) {
        self.addr.do_send(ForceReconnect { reason: reason.into() });
    }

    /// Reconnects now and waits: `true` once a session is up again, `false` if
    /// the connection gave up or was shut down meanwhile.
    pub async fn attempt_recovery(&self, reason: impl Into<String>) -> Result<bool, ConnectionError> {
        self.addr.send(AttemptRecovery { reason: reason.into() }).await.map_err(|_| ConnectionError::ActorGone)
    }

    /// The link's health (latency, loss, failures, status).
    pub async fn health(&self) -> Result<crate::NetworkHealth, ConnectionError> {
        Ok(self.status().await?.health)
    }

    /// Closes the session and stays disconnected.
    pub fn shutdown(&self) {
        self.addr.do_send(Shutdown);
    }

    /// Applies new live settings to the running connection: the live ones
    /// (timeouts, heartbeat, retry) take effect at once, the heartbeat re-armed
    /// at its new interval; a change that needs a new connection (server,
    /// database…) is refused naming its field (see
    /// [`ConnectionConfig::check_live_change`](crate::ConnectionConfig::check_live_change)).
    /// The token is not taken from it ([`ConnectionHandle::token_sink`] replaces it).
    pub async fn reconfigure(&self, config: crate::ConnectionConfig) -> Result<(), ConnectionError> {
        self.addr
            .send(Reconfigure { config })
            .await
            .map_err(|_| ConnectionError::ActorGone)?
            .map_err(ConnectionError::Config)
    }

    /// Moves the connection to another server or database (a profile switch):
    /// the session closes, and the next one opens to `config`'s server and
    /// database with `config.token`, on a new generation, so that what the old
    /// target sent is dropped as a dead session's. The backoff, the breaker and
    /// the measured round trips start afresh; a target that cannot be reached
    /// gives up after the retry policy's attempts, as a first connection does.
    /// The config is validated first, and an invalid one changes nothing.
    pub async fn retarget(&self, config: crate::ConnectionConfig) -> Result<(), ConnectionError> {
        self.addr
            .send(Retarget { config })
            .await
            .map_err(|_| ConnectionError::ActorGone)?
            .map_err(ConnectionError::Config)
    }

    /// A snapshot of the connection's state, latency and identity.
    pub async fn status(&self) -> Result<ConnectionStatus, ConnectionError> {
        self.addr.send(GetStatus).await.map_err(|_| ConnectionError::ActorGone)
    }
}
