//! The connection actor: one WebSocket session at a time, restarted by its supervisor.
//!
//! The actor only moves messages: frames in, decoded through [`crate::codec`],
//! out to the listeners; `SendMessage`s in, encoded, out to the socket's writer
//! task. Reconnection is a restart: when a session or an attempt fails, the
//! actor records the delay the [`RetryPolicy`](crate::RetryPolicy) asks for and
//! stops; the actix `Supervisor` restarts the same actor value with the same
//! mailbox, and `started()` schedules the next attempt (and re-arms the
//! heartbeat). Nothing sent to the mailbox meanwhile is lost, and every
//! session's data carries its generation, so a dead session's leftovers are
//! recognised and dropped.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::{stream, StreamExt as _};
use spacetimedb_client_api_messages::websocket as ws;
use spacetimedb_lib::{ConnectionId, Identity};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _, http, protocol::WebSocketConfig, Message};

use crate::clock::now;
use crate::net;

use crate::backoff::Jitter;
use crate::breaker::{BreakerKind, BreakerState, Permit};
use crate::codec::{self, CodecError, ServerMessage};
use crate::config::ConnectionConfig;
use crate::error::ConnectionError;
use crate::health::{NetworkHealth, NetworkStatus, PingTracker};
use crate::messages::*;
use crate::metric_names as names;
use crate::policy::{Ended, Next, SessionPolicy};
use crate::state::{ConnectionEvent, ConnectionState};

/// Mailbox capacity for bounded `send`s: enough for a burst of game inputs.
const MAILBOX_CAPACITY: usize = 1024;
/// Longest adaptive dead-peer timeout, however slow the link.
const MAX_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// The connection actor. Start it with [`ConnectionActor::start_supervised`].
///
/// Wiring, not the game's API: `spacelink`'s supervisor starts it; a game
/// talks to it through [`ConnectionHandle`](crate::ConnectionHandle) (what `spacelink::Client` hands out).
#[derive(Debug)]
pub struct ConnectionActor {
    config: ConnectionConfig,
    listeners: Listeners,
    state: ConnectionState,
    /// Bumped for every attempt; stamps all that a session delivers.
    generation: u64,
    /// The token to present: the configured one, then the one the server
    /// issued (a [`Token`]: this actor's `Debug` cannot print it).
    token: Option<Token>,
    identity: Option<(Identity, ConnectionId)>,
    session: Option<Session>,
    /// Attempts, proven sessions, the breaker and the give-up rule.
    policy: SessionPolicy,
    /// Set before stopping: how long `started()` waits before the next attempt.
    pending_delay: Option<Duration>,
    shut_down: bool,
    /// Pings in flight, round trips and losses (survives sessions).
    pings: PingTracker,
    last_heartbeat: Option<SystemTime>,
    /// When anything last arrived from the server.
    last_received: Option<SystemTime>,
    /// The health last reported, to report changes only.
    reported_health: Option<(bool, NetworkStatus)>,
    /// A recovery (automatic or asked for) is under way.
    recovering: bool,
    /// Callers of `AttemptRecovery` waiting for its outcome.
    recovery_waiters: Vec<tokio::sync::oneshot::Sender<bool>>,
    /// The heartbeat's interval timer (re-armed by `Reconfigure`).
    heartbeat_timer: Option<SpawnHandle>,
}

/// One live WebSocket session; its socket is read and written on the network
/// runtime ([`crate::net`]).
#[derive(Debug)]
struct Session {
    io: net::SessionIo,
    /// When the actor last knew something had arrived at the socket.
    last_received: Instant,
    /// The reader's frame and byte counts when last sampled.
    frames_seen: u64,
    bytes_seen: u64,
    /// Its `IdentityToken` arrived.
    identified: bool,
    /// It counted as a success for the backoff and the breaker (see [`ConnectionConfig::proven_after`]).
    proven: bool,
}

impl Session {
    /// Takes in what the reader saw since the last look: bytes read (a large
    /// frame still arriving on a slow link: its pong waits behind it), a
    /// frame read, or the reader busy with one, means the peer is alive
    /// however long it takes the actors to get to it.
    fn sample(&mut self, at: Instant) {
        let (frames, bytes) = (self.io.pulse.frames(), self.io.pulse.bytes());
        if frames != self.frames_seen || bytes != self.bytes_seen || self.io.pulse.busy() {
            self.frames_seen = frames;
            self.bytes_seen = bytes;
            self.last_received = at;
        }
    }
}

/// What the reader of session `generation` told.
#[derive(Debug)]
struct Incoming {
    generation: u64,
    event: net::Inbound,
}

impl ConnectionActor {
    /// Builds the actor; it connects when started.
    pub(crate) fn new(config: ConnectionConfig, listeners: Listeners) -> Self {
        let jitter = config.jitter_seed.map_or_else(Jitter::from_entropy, Jitter::new);
        Self {
            token: config.token.clone().map(Token::new),
            policy: SessionPolicy::new(config.breaker, jitter),
            config,
            listeners,
            state: ConnectionState::Disconnected,
            generation: 0,
            identity: None,
            session: None,
            pending_delay: None,
            shut_down: false,
            pings: PingTracker::default(),
            last_heartbeat: None,
            last_received: None,
            reported_health: None,
            recovering: false,
            recovery_waiters: Vec::new(),
            heartbeat_timer: None,
        }
    }

    /// Validates `config` and starts the actor under an actix `Supervisor`
    /// (restarts keep the mailbox and the address). Call inside an actix system.
    pub fn start_supervised(
        config: ConnectionConfig,
        listeners: Listeners,
    ) -> Result<crate::ConnectionHandle, ConnectionError> {
        config.validate()?;
        let actor = Self::new(config, listeners);
        let addr = actix::Supervisor::start(move |_| actor);
        Ok(crate::ConnectionHandle::new(addr))
    }

    /// Validates `config` and hands the actor and its context to `run` (a
    /// supervisor of the caller's, which restarts the actor when it stops, as
    /// reconnection needs). Call inside an actix system.
    pub fn start_in(
        config: ConnectionConfig,
        listeners: Listeners,
        run: impl FnOnce(Context<Self>, Self),
    ) -> Result<crate::ConnectionHandle, ConnectionError> {
        config.validate()?;
        let ctx = Context::new();
        let handle = crate::ConnectionHandle::new(ctx.address());
        run(ctx, Self::new(config, listeners));
        Ok(handle)
    }

    fn transition(&mut self, event: ConnectionEvent, reason: Option<String>, retry_in: Option<Duration>) {
        let from = self.state;
        let to = match from.next(event) {
            Ok(to) => to,
            Err(e) => {
                tracing::warn!(error = %e, "ignored connection event");
                return;
            }
        };
        self.state = to;
        if from == to && reason.is_none() {
            return;
        }
        metrics::gauge!(names::CONNECTION_STATE).set(state_number(to));
        tracing::info!(generation = self.generation, %from, %to, reason = reason.as_deref(), ?retry_in, "connection state");
        let change = StateChanged { generation: self.generation, from, to, reason, retry_in };
        for r in &self.listeners.states {
            r.do_send(change.clone());
        }
        self.report_health();
    }

    /// Tells the resilience listeners.
    fn tell(&self, event: ResilienceEvent) {
        for r in &self.listeners.resilience {
            r.do_send(event.clone());
        }
    }

    /// The link's health now.
    fn health(&self) -> NetworkHealth {
        let failures = self.policy.breaker().consecutive_failures();
        NetworkHealth::assess(self.state, &self.pings, failures, self.last_received)
    }

    /// Reports the health if its verdict or status changed.
    fn report_health(&mut self) {
        let health = self.health();
        let verdict = (health.is_healthy, health.status);
        if self.reported_health != Some(verdict) {
            self.reported_health = Some(verdict);
            metrics::gauge!(names::CONNECTION_HEALTHY).set(if health.is_healthy { 1.0 } else { 0.0 });
            self.tell(ResilienceEvent::HealthChanged(health));
        }
    }

    /// Asks the policy `f` and reports a change of the breaker's state.
    fn with_policy<T>(&mut self, f: impl FnOnce(&mut SessionPolicy) -> T) -> T {
        let before = self.policy.breaker().state().kind();
        let result = f(&mut self.policy);
        let after = self.policy.breaker().state().kind();
        if before != after {
            tracing::info!(from = %before, to = %after, trips = self.policy.breaker().trips(), "circuit breaker");
            metrics::gauge!(names::CONNECTION_BREAKER_OPEN).set(if after == BreakerKind::Open { 1.0 } else { 0.0 });
            if after == BreakerKind::Open {
                metrics::counter!(names::CONNECTION_BREAKER_TRIPS).increment(1);
            }
            let until = match self.policy.breaker().state() {
                BreakerState::Open { until } => Some(until),
                _ => None,
            };
            self.tell(ResilienceEvent::BreakerChanged { from: before, to: after, open_until: until });
        }
        result
    }

    /// Ends a recovery and answers whoever waits for it.
    fn finish_recovery(&mut self, success: bool) {
        if !std::mem::take(&mut self.recovering) {
            return;
        }
        for waiter in self.recovery_waiters.drain(..) {
            let _ = waiter.send(success);
        }
        self.tell(ResilienceEvent::RecoveryCompleted { success });
    }

    /// Starts a recovery (once) and tells the listeners.
    fn begin_recovery(&mut self) {
        if !std::mem::replace(&mut self.recovering, true) {
            self.tell(ResilienceEvent::RecoveryStarted);
        }
    }

    /// The dead-peer timeout stretched to the measured link: never less than
    /// configured, and at least two round trips plus four deviations plus a
    /// heartbeat interval, so a slow but steady link is not declared dead.
    fn dead_peer_timeout(&self) -> Duration {
        let rtt = self.pings.rtt();
        let adaptive = rtt
            .smoothed()
            .map_or(Duration::ZERO, |srtt| srtt * 2 + rtt.variation() * 4 + self.config.heartbeat_interval);
        self.config.dead_peer_timeout.max(adaptive).min(MAX_DEAD_PEER_TIMEOUT.max(self.config.dead_peer_timeout))
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.shut_down || self.session.is_some() {
            return;
        }
        let now = now();
        if let Permit::WaitUntil(until) = self.with_policy(|p| p.permit(now)) {
            ctx.run_later(until.saturating_duration_since(now), |act, ctx| act.start_attempt(ctx));
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        self.transition(ConnectionEvent::AttemptStarted, None, None);
        self.tell(ResilienceEvent::AttemptStarted { generation, attempt: self.policy.next_attempt() });
        metrics::counter!(names::CONNECTION_ATTEMPTS).increment(1);
        let request = match self.build_request() {
            Ok(request) => request,
            Err(reason) => return self.attempt_failed(ctx, reason),
        };
        let limit = self.config.limits.max_message_size;
        let ws_config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let timeout = self.config.connect_timeout;
        let (capacity, limits, tls) = (self.config.outbound_capacity, self.config.limits, self.config.tls.clone());
        let handshake =
            async move { tokio::time::timeout(timeout, net::open(request, ws_config, capacity, limits, &tls)).await };
        ctx.spawn(handshake.into_actor(self).map(move |result, act, ctx| {
            if act.generation != generation || act.shut_down {
                return; // A newer attempt or a shutdown overtook this one.
            }
            match result {
                Err(_) => act.attempt_failed(ctx, format!("handshake timed out after {timeout:?}")),
                Ok(Err(e)) => {
                    if let tungstenite::Error::Http(response) = &e {
                        let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                        let (status, reason) = (response.status().as_u16(), body.trim().to_string());
                        act.tell(ResilienceEvent::HandshakeRefused { generation, status, reason });
                    }
                    act.attempt_failed(ctx, describe_handshake_error(&e))
                }
                Ok(Ok((io, inbound))) => act.session_up(ctx, generation, io, inbound),
            }
        }));
    }

    fn build_request(&self) -> Result<http::Request<()>, String> {
        let url = self.config.subscribe_url().map_err(|e| e.to_string())?;
        let mut request = url.into_client_request().map_err(|e| format!("bad URL: {e}"))?;
        let headers = request.headers_mut();
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(codec::SUBPROTOCOL));
        if let Some(token) = &self.token {
            let value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| "the token contains characters that cannot go in a header".to_string())?;
            headers.insert(http::header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    fn session_up(
        &mut self,
        ctx: &mut Context<Self>,
        generation: u64,
        io: net::SessionIo,
        inbound: mpsc::Receiver<net::Inbound>,
    ) {
        let events = stream::unfold(inbound, |mut inbound| async move {
            let event = inbound.recv().await?;
            Some((event, inbound))
        });
        ctx.add_stream(events.map(move |event| Incoming { generation, event }));
        self.session =
            Some(Session { io, last_received: now(), frames_seen: 0, bytes_seen: 0, identified: false, proven: false });
        self.pings.reset_in_flight();
        self.last_received = Some(SystemTime::now());
        metrics::counter!(names::CONNECTION_SESSIONS).increment(1);
        self.transition(ConnectionEvent::Established, None, None);
        // The upgrade alone proves nothing: the session counts as a success
        // only once its identity arrived and it stayed healthy (`session_proven`).
        let timeout = self.config.identity_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            if act.generation == generation && act.session.as_ref().is_some_and(|s| !s.identified) {
                metrics::counter!(names::CONNECTION_IDENTITY_TIMEOUTS).increment(1);
                act.forget_connection_id();
                act.session_lost(ctx, format!("no IdentityToken within {timeout:?} of the WebSocket upgrade"));
            }
        });
    }

    /// The session's `IdentityToken` arrived: it works; start the proving time.
    fn session_identified(&mut self, ctx: &mut Context<Self>) {
        let Some(session) = &mut self.session else { return };
        if std::mem::replace(&mut session.identified, true) {
            return;
        }
        self.finish_recovery(true);
        let generation = self.generation;
        ctx.run_later(self.config.proven_after, move |act, ctx| act.session_proven(ctx, generation));
    }

    /// The proving time of session `generation` is over: if it is still up and
    /// healthy, it counts as a success (else look again a heartbeat later).
    fn session_proven(&mut self, ctx: &mut Context<Self>, generation: u64) {
        if self.generation != generation || self.session.as_ref().is_none_or(|s| s.proven) {
            return;
        }
        if !self.health().is_healthy {
            ctx.run_later(self.config.heartbeat_interval, move |act, ctx| act.session_proven(ctx, generation));
            return;
        }
        if let Some(session) = &mut self.session {
            session.proven = true;
        }
        if self.with_policy(SessionPolicy::proven) {
            metrics::counter!(names::CONNECTION_RECONNECTS).increment(1);
        }
        metrics::counter!(names::CONNECTION_SESSIONS_PROVEN).increment(1);
        tracing::debug!(generation, "session proven");
        self.tell(ResilienceEvent::SessionProven { generation });
        self.report_health();
    }

    /// An attempt failed before a session was up: retry later, or give up.
    fn attempt_failed(&mut self, ctx: &mut Context<Self>, reason: String) {
        metrics::counter!(names::CONNECTION_FAILED_ATTEMPTS).increment(1);
        let (now, retry) = (now(), self.config.retry);
        match self.with_policy(|p| p.failed(Ended::AttemptFailed, now, &retry)) {
            Next::GiveUp { attempts } => {
                let reason = format!("gave up after {attempts} attempts; last error: {reason}");
                self.transition(ConnectionEvent::GaveUp, Some(reason), None);
                self.finish_recovery(false);
                // Stay alive and idle: `ForceReconnect` revives us.
            }
            Next::Retry { delay } => {
                self.transition(ConnectionEvent::AttemptFailed, Some(reason), Some(delay));
                self.restart_after(ctx, delay);
            }
        }
    }

    /// A live session ended: drop it and reconnect through a restart.
    ///
    /// A session that had not proven itself counts as one more failed attempt
    /// ([`SessionPolicy::failed`]): the backoff grows and the breaker counts
    /// it, and a first connection that never proved itself gives up.
    fn session_lost(&mut self, ctx: &mut Context<Self>, reason: String) {
        let Some(session) = self.session.take() else {
            return;
        };
        metrics::counter!(names::CONNECTION_SESSIONS_LOST).increment(1);
        let (ended, reason) = if session.proven {
            (Ended::ProvenSessionLost, reason)
        } else {
            metrics::counter!(names::CONNECTION_FAILED_ATTEMPTS).increment(1);
            (Ended::UnprovenSessionLost, format!("session lost before it proved itself: {reason}"))
        };
        let (now, retry) = (now(), self.config.retry);
        let next = self.with_policy(|p| p.failed(ended, now, &retry));
        self.begin_recovery();
        match next {
            Next::GiveUp { attempts } => {
                self.transition(ConnectionEvent::SessionLost, Some(reason.clone()), None);
                let reason = format!("gave up after {attempts} attempts; last error: {reason}");
                self.transition(ConnectionEvent::GaveUp, Some(reason), None);
                self.finish_recovery(false);
                // Restart idle (drops the dead session's stream): `ForceReconnect` revives us.
                self.pending_delay = None;
                ctx.stop();
            }
            Next::Retry { delay } => {
                self.transition(ConnectionEvent::SessionLost, Some(reason), Some(delay));
                self.restart_after(ctx, delay);
            }
        }
    }

    /// The session is lost without a close: the server may hold it a while
    /// yet, under our identity and connection id, and would answer the next
    /// session's subscriptions empty (SpacetimeDB 1.3 keys them by both). The
    /// next session presents a fresh id.
    fn forget_connection_id(&mut self) {
        if let Some(id) = &mut self.config.connection_id {
            let old = std::mem::replace(id, crate::config::fresh_connection_id());
            tracing::info!(
                old = %old.to_hex(),
                "the lost session may linger on the server: the next one takes a fresh connection id"
            );
        }
    }

    /// Stops the actor so that the supervisor restarts it; `started()` waits `delay`.
    fn restart_after(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        self.pending_delay = Some(delay);
        ctx.stop();
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.dead_peer_timeout();
        let Some(session) = &mut self.session else { return };
        session.sample(now());
        let silent = now().saturating_duration_since(session.last_received);
        if silent > timeout {
            let reason = format!(
                "nothing received for {} ms (dead-peer timeout {} ms)",
                silent.as_millis(),
                timeout.as_millis()
            );
            metrics::counter!(names::CONNECTION_DEAD_PEER).increment(1);
            self.forget_connection_id();
            return self.session_lost(ctx, reason);
        }
        let now = now();
        let lost = self.pings.expire(now, self.pings.loss_timeout(self.config.heartbeat_interval * 2));
        if lost > 0 {
            metrics::counter!(names::CONNECTION_HEARTBEATS_LOST).increment(lost as u64);
        }
        if session.io.outbound.capacity() > 0 {
            let id = self.pings.sent(now);
            let _ = session.io.outbound.try_send(Message::Ping(id.to_be_bytes().to_vec().into()));
        }
        self.report_health();
    }

    fn on_pong(&mut self, payload: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else { return };
        let Some(rtt) = self.pings.answered(u64::from_be_bytes(bytes), now()) else { return };
        self.last_heartbeat = Some(SystemTime::now());
        metrics::histogram!(names::CONNECTION_RTT_SECONDS).record(rtt.as_secs_f64());
        if let Some(smoothed) = self.pings.rtt().smoothed() {
            metrics::gauge!(names::CONNECTION_LATENCY_SECONDS).set(smoothed.as_secs_f64());
        }
    }

    fn on_message(&mut self, ctx: &mut Context<Self>, wire_size: usize, message: Result<ServerMessage, CodecError>) {
        let _span = tracing::trace_span!("frame", generation = self.generation, bytes = wire_size).entered();
        let received_at = now();
        metrics::counter!(names::CONNECTION_BYTES_RECEIVED).increment(wire_size as u64);
        metrics::counter!(names::CONNECTION_MESSAGES_RECEIVED).increment(1);
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                // A frame we cannot read may have carried a transaction: the
                // session can no longer be trusted, so start a fresh one.
                metrics::counter!(names::CONNECTION_DECODE_ERRORS).increment(1);
                return self.session_lost(ctx, format!("undecodable frame from the server: {e}"));
            }
        };
        tracing::debug!(
            generation = self.generation,
            kind = codec::server_message_kind(&message),
            bytes = wire_size,
            "server message"
        );
        if let ServerMessage::IdentityToken(ws::IdentityToken { identity, token, connection_id }) = &message {
            // Keep a token given meanwhile (`ReplaceToken`); adopt the server's if anonymous.
            self.token.get_or_insert_with(|| Token::new(token.to_string()));
            self.identity = Some((*identity, *connection_id));
            let event = IdentityReceived {
                generation: self.generation,
                identity: *identity,
                connection_id: *connection_id,
                token: Token::new(token.to_string()),
            };
            tracing::info!(generation = self.generation, identity = %identity.to_hex(), "identity received");
            for r in &self.listeners.identities {
                r.do_send(event.clone());
            }
            self.session_identified(ctx);
        }
        let event =
            ServerMessageReceived { generation: self.generation, received_at, wire_size, message: Arc::new(message) };
        for r in &self.listeners.messages {
            r.do_send(event.clone());
        }
        if codec::carries_rows(&event.message) {
            for r in &self.listeners.row_messages {
                r.do_send(event.clone());
            }
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // Timers do not survive a restart: arm them here.
        self.heartbeat_timer = Some(ctx.run_interval(self.config.heartbeat_interval, |act, ctx| act.heartbeat(ctx)));
        if self.shut_down {
            return;
        }
        match self.pending_delay.take() {
            Some(delay) if !delay.is_zero() => {
                ctx.run_later(delay, |act, ctx| act.start_attempt(ctx));
            }
            // Failed and not asked to reconnect (`ForceReconnect` sets a delay): stay idle.
            None if self.state == ConnectionState::Failed => {}
            _ => self.start_attempt(ctx),
        }
    }
}

impl actix::Supervised for ConnectionActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        metrics::counter!(names::CONNECTION_RESTARTS).increment(1);
        tracing::debug!(generation = self.generation, delay = ?self.pending_delay, "connection actor restarting");
    }
}

impl StreamHandler<Incoming> for ConnectionActor {
    fn handle(&mut self, item: Incoming, ctx: &mut Self::Context) {
        if item.generation != self.generation {
            return; // From a dead session.
        }
        let Some(session) = &mut self.session else { return };
        session.last_received = now();
        self.last_received = Some(SystemTime::now());
        match item.event {
            net::Inbound::Message { wire_size, message } => self.on_message(ctx, wire_size, message),
            net::Inbound::Pong(payload) => self.on_pong(&payload),
            net::Inbound::Text(len) => {
                tracing::warn!(len, "ignored a text frame on a binary protocol session");
            }
            net::Inbound::Ended(reason) => self.session_lost(ctx, reason),
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // The reader tells how its session ended (`Inbound::Ended`) before it
        // stops; a reader that vanished without a word leaves a silent session,
        // which the heartbeat declares dead. Never stop the actor here.
    }
}

impl Handler<SendMessage> for ConnectionActor {
    type Result = Result<(), ConnectionError>;

    fn handle(&mut self, msg: SendMessage, _ctx: &mut Self::Context) -> Self::Result {
        let Some(session) = &self.session else {
            return Err(ConnectionError::NotConnected { state: self.state });
        };
        if msg.generation.is_some_and(|g| g != self.generation) {
            return Err(ConnectionError::NotConnected { state: self.state });
        }
        let bytes = codec::encode_client_message(&msg.message)?;
        let len = bytes.len();
        session.io.outbound.try_send(Message::Binary(bytes.into())).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ConnectionError::Backpressure { capacity: self.config.outbound_capacity }
            }
            mpsc::error::TrySendError::Closed(_) => ConnectionError::NotConnected { state: self.state },
        })?;
        metrics::counter!(names::CONNECTION_BYTES_SENT).increment(len as u64);
        metrics::counter!(names::CONNECTION_MESSAGES_SENT).increment(1);
        Ok(())
    }
}

impl Handler<ForceReconnect> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: ForceReconnect, ctx: &mut Self::Context) {
        tracing::info!(reason = %msg.reason, "forced reconnect");
        self.shut_down = false;
        self.policy.restart();
        self.begin_recovery();
        if self.session.take().is_some() {
            self.transition(ConnectionEvent::SessionLost, Some(msg.reason), Some(Duration::ZERO));
        }
        self.restart_after(ctx, Duration::ZERO);
    }
}

impl Handler<ReplaceToken> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: ReplaceToken, ctx: &mut Self::Context) {
        self.token = msg.token;
        tracing::debug!(reconnect = msg.reconnect, anonymous = self.token.is_none(), "token replaced");
        if msg.reconnect {
            let reason = "reconnecting with a new token".to_string();
            <Self as Handler<ForceReconnect>>::handle(self, ForceReconnect { reason }, ctx);
        }
    }
}

impl Handler<Reconfigure> for ConnectionActor {
    type Result = Result<(), crate::ConfigError>;

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) -> Self::Result {
        let mut config = msg.config;
        config.token = self.config.token.clone();
        // The same target: the same connection id.
        config.connection_id = self.config.connection_id;
        config.validate()?;
        self.config.check_live_change(&config)?;
        let heartbeat_changed = config.heartbeat_interval != self.config.heartbeat_interval;
        self.config = config;
        if heartbeat_changed {
            if let Some(timer) = self.heartbeat_timer.take() {
                ctx.cancel_future(timer);
            }
            self.heartbeat_timer =
                Some(ctx.run_interval(self.config.heartbeat_interval, |act, ctx| act.heartbeat(ctx)));
        }
        tracing::info!(heartbeat_interval = ?self.config.heartbeat_interval, "connection reconfigured");
        Ok(())
    }
}

impl Handler<Retarget> for ConnectionActor {
    type Result = Result<(), crate::ConfigError>;

    fn handle(&mut self, msg: Retarget, ctx: &mut Self::Context) -> Self::Result {
        let config = msg.config;
        config.validate()?;
        let reason = format!("switching to database {} at {}", config.database, config.server_url);
        tracing::info!(server = %config.server_url, database = %config.database, "connection retargeted");
        if let Some(session) = self.session.take() {
            let _ = session.io.outbound.try_send(Message::Close(None));
            self.transition(ConnectionEvent::SessionLost, Some(reason.clone()), Some(Duration::ZERO));
        }
        // What was learnt about the old target does not hold for the new one.
        self.token = config.token.clone().map(Token::new);
        self.identity = None;
        self.policy.retarget(config.breaker);
        self.pings = PingTracker::default();
        self.last_heartbeat = None;
        self.shut_down = false;
        self.config = config;
        self.finish_recovery(false);
        // The restart drops every timer, and `started()` arms the heartbeat
        // at the new interval and connects. (No `cancel_future` here: a
        // cancellation still pending at the restart would hit the new timer,
        // which reuses the old one's handle.)
        self.heartbeat_timer = None;
        self.restart_after(ctx, Duration::ZERO);
        Ok(())
    }
}

impl Handler<Shutdown> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) {
        self.shut_down = true;
        if let Some(session) = self.session.take() {
            let _ = session.io.outbound.try_send(Message::Close(None));
        }
        self.transition(ConnectionEvent::Shutdown, Some("shutdown requested".into()), None);
        self.finish_recovery(false);
        self.pending_delay = None;
        ctx.stop();
    }
}

impl Handler<GetStatus> for ConnectionActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(ConnectionStatus {
            state: self.state,
            generation: self.generation,
            identity: self.identity.map(|(i, _)| i),
            connection_id: self.identity.map(|(_, c)| c),
            latency: self.pings.rtt().smoothed(),
            last_heartbeat: self.last_heartbeat,
            failed_attempts: self.policy.failed_attempts(),
            breaker: self.policy.breaker().state().kind(),
            breaker_trips: self.policy.breaker().trips(),
            health: self.health(),
        })
    }
}

impl Handler<AttemptRecovery> for ConnectionActor {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: AttemptRecovery, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.recovery_waiters.push(tx);
        <Self as Handler<ForceReconnect>>::handle(self, ForceReconnect { reason: msg.reason }, ctx);
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

fn state_number(state: ConnectionState) -> f64 {
    match state {
        ConnectionState::Disconnected => 0.0,
        ConnectionState::Connecting => 1.0,
        ConnectionState::Connected => 2.0,
        ConnectionState::Reconnecting => 3.0,
        ConnectionState::Failed => 4.0,
    }
}

fn describe_handshake_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(response) => {
            let body =
                response.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default();
            let hint = match response.status().as_u16() {
                401 | 403 => " (the token was refused)",
                404 => " (no such database)",
                _ => "",
            };
            format!("server refused the WebSocket: HTTP {}{hint}: {body}", response.status())
        }
        tungstenite::Error::Url(e) => format!("bad URL: {e}"),
        other => match crate::tls::classify(other) {
            Some(failure) => format!("TLS: {failure}: {}", crate::schema::error_chain(other)),
            None => format!("cannot connect: {}", crate::schema::error_chain(other)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_token() {
        let mut config = ConnectionConfig::new("http://127.0.0.1:1", "db");
        config.token = Some("s3cret-token".into());
        let mut actor = ConnectionActor::new(config, Listeners::default());
        let printed = format!("{actor:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        actor.token = Some(Token::new("an0ther-s3cret"));
        let printed = format!("{actor:?}");
        assert!(!printed.contains("s3cret") && printed.contains("redacted"), "{printed}");
    }
}
