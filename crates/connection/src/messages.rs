//! The connection actor's messages: what it takes and what it tells.
//!
//! Everything a session delivers carries the session's `generation`; a
//! consumer that sees a message of an older generation than it last saw drops
//! it, because that session is dead.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use spacetimedb_lib::{ConnectionId, Identity};

use crate::breaker::BreakerKind;
use crate::codec::{ClientMessage, ServerMessage};
use crate::error::ConnectionError;
use crate::health::NetworkHealth;
use crate::state::ConnectionState;

// ---- Taken by the connection actor ----

/// Send one message to the server over the current session.
///
/// Fails with `NotConnected` when no session is up and `Backpressure` when the
/// outbound queue is full; the message is then not sent, and the caller (the
/// reducer client's queue, for instance) decides what to do with it.
#[derive(Message)]
#[rtype(result = "Result<(), ConnectionError>")]
pub struct SendMessage {
    /// The message, with reducer arguments already BSATN-encoded.
    pub message: ClientMessage,
    /// Send only on this session: if another session is up by the time the
    /// message is handled, it is refused with `NotConnected` instead (so that a
    /// caller tracking what it sent on which session is never surprised).
    pub generation: Option<u64>,
}

/// Drop the current session (if any) and connect again now, resetting the
/// attempt count. Also how a `Failed` connection is revived.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct ForceReconnect {
    /// Why, for the logs and the state-change event.
    pub(crate) reason: String,
}

/// Present `token` from now on (`None`: connect anonymously). With
/// `reconnect`, the current session is dropped and a new one opened with it
/// at once; otherwise the next session uses it. Sent by the auth actor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ReplaceToken {
    /// The token.
    pub token: Option<Token>,
    /// Reconnect now so that the server sees it.
    pub reconnect: bool,
}

/// Apply new settings to the running connection. The live ones (timeouts,
/// heartbeat, retry) take effect at once, the heartbeat re-armed at its new
/// interval; a change to one that needs a new connection (server, database…)
/// is refused naming it (see `ConnectionConfig::check_live_change`). The token
/// is not taken from it (that is `ReplaceToken`'s job).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), crate::ConfigError>")]
pub(crate) struct Reconfigure {
    /// The new settings.
    pub(crate) config: crate::ConnectionConfig,
}

/// Point the running connection at another target (a profile switch): the
/// session closes, and the next one opens to `config`'s server and database
/// with `config.token`, on a new generation, so that what the old target
/// sent is dropped as a dead session's. The backoff, the breaker and the
/// measured round trips start afresh (they described the old target), and a
/// target that cannot be reached gives up after the retry policy's attempts,
/// as a first connection does. Any setting may change (it is a new target);
/// the config is validated first, and an invalid one changes nothing.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), crate::ConfigError>")]
pub(crate) struct Retarget {
    /// The new target and its settings.
    pub(crate) config: crate::ConnectionConfig,
}

/// Close the session and stay disconnected.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Ask for a snapshot of the connection's state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ConnectionStatus")]
pub(crate) struct GetStatus;

/// A snapshot of the connection, as `GetStatus` answers it.
#[derive(Debug, Clone)]
pub struct ConnectionStatus {
    /// The current state.
    pub state: ConnectionState,
    /// The generation of the current (or last) session; 0 before the first.
    pub generation: u64,
    /// The identity from the server's `IdentityToken`, once received.
    pub identity: Option<Identity>,
    /// The connection id from the server's `IdentityToken`, once received.
    pub connection_id: Option<ConnectionId>,
    /// The smoothed WebSocket ping round trip (the design's `Latency`).
    pub latency: Option<Duration>,
    /// When the last pong arrived (the design's `LastHeartbeat`).
    pub last_heartbeat: Option<SystemTime>,
    /// Consecutive failed attempts since the last session was up.
    pub failed_attempts: u32,
    /// The circuit breaker's state.
    pub breaker: BreakerKind,
    /// How many times the breaker has opened.
    pub breaker_trips: u32,
    /// The link's health.
    pub health: NetworkHealth,
}

/// Reconnect now and wait for the outcome: `true` once a session is up again,
/// `false` if the connection gave up or was shut down meanwhile.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
pub(crate) struct AttemptRecovery {
    /// Why, for the logs.
    pub(crate) reason: String,
}

/// What the resilience machinery tells: breaker, health, recoveries.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ResilienceEvent {
    /// The circuit breaker changed state.
    BreakerChanged {
        /// Before.
        from: BreakerKind,
        /// Now.
        to: BreakerKind,
        /// When it will half-open, if it is open.
        open_until: Option<Instant>,
    },
    /// A connection attempt started.
    AttemptStarted {
        /// The generation the session will have if the attempt succeeds.
        generation: u64,
        /// 1 for the first attempt after a success (or ever), then 2, 3…
        attempt: u32,
    },
    /// The server answered the WebSocket upgrade with an HTTP error (401 or
    /// 403: it refused the token; 404: no such database), as opposed to a
    /// network failure, where nothing answered.
    HandshakeRefused {
        /// The attempt's generation.
        generation: u64,
        /// The HTTP status.
        status: u16,
        /// The response body: the server's reason.
        reason: String,
    },
    /// The link's health verdict or status changed.
    HealthChanged(NetworkHealth),
    /// Session `generation` proved itself (its identity arrived and it stayed
    /// healthy for `proven_after`): the backoff and the breaker count it as a success.
    SessionProven {
        /// The session.
        generation: u64,
    },
    /// A session was lost (or a reconnect was asked for) and recovery began.
    RecoveryStarted,
    /// The recovery ended: a new session is up (`true`) or the connection gave up (`false`).
    RecoveryCompleted {
        /// Whether a session is up again.
        success: bool,
    },
}

impl fmt::Debug for SendMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendMessage").field("message", &crate::codec::client_message_kind(&self.message)).finish()
    }
}

// ---- Told by the connection actor ----

/// A message arrived from the server.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct ServerMessageReceived {
    /// The session it came from.
    pub generation: u64,
    /// When the frame was read.
    pub received_at: Instant,
    /// The frame's size on the wire, in bytes.
    pub wire_size: usize,
    /// The decoded message, shared between all listeners.
    pub message: Arc<ServerMessage>,
}

impl fmt::Debug for ServerMessageReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMessageReceived")
            .field("generation", &self.generation)
            .field("wire_size", &self.wire_size)
            .field("message", &crate::codec::server_message_kind(&self.message))
            .finish()
    }
}

/// The connection changed state.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StateChanged {
    /// The session generation at the time of the change.
    pub generation: u64,
    /// The state before.
    pub from: ConnectionState,
    /// The state now.
    pub to: ConnectionState,
    /// Why, when there is something to say (the error that ended a session…).
    pub reason: Option<String>,
    /// When the next attempt is due, if one is scheduled.
    pub retry_in: Option<Duration>,
}

/// The server told us who we are (its `IdentityToken`, the first message of every session).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct IdentityReceived {
    /// The session.
    pub generation: u64,
    /// Our identity.
    pub identity: Identity,
    /// This session's connection id.
    pub connection_id: ConnectionId,
    /// The token to present next time (reused on reconnect).
    pub token: Token,
}

/// A bearer token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, to store or present. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who hears what the connection tells. Given to the actor when it is built.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// Receive every decoded server message.
    pub messages: Vec<Recipient<ServerMessageReceived>>,
    /// Receive only the messages that carry rows or a subscription's outcome
    /// ([`codec::carries_rows`](crate::codec::carries_rows)): a cache's listener,
    /// not woken by every reducer call's empty `TransactionUpdate`.
    pub row_messages: Vec<Recipient<ServerMessageReceived>>,
    /// Receive every state change.
    pub states: Vec<Recipient<StateChanged>>,
    /// Receive the identity and token of each session.
    pub identities: Vec<Recipient<IdentityReceived>>,
    /// Receive breaker, health and recovery events.
    pub resilience: Vec<Recipient<ResilienceEvent>>,
}
