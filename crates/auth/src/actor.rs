//! The auth actor: keeps the credentials, tells the connection which token to
//! present, and replaces the token before it expires.
//!
//! It only moves messages: the connection tells it what the server said
//! (`IdentityReceived`: accepted; `HandshakeRefused` 401/403: refused;
//! a failed attempt: unreachable), the credential store keeps what the server
//! accepted, and the token provider's answers go to the connection as
//! `ReplaceToken`. The decisions live in [`crate::state`] (the credentials,
//! the server's verdict, the refresh under way: one [`AuthState`] and its
//! transitions), [`crate::refresh`] and [`crate::store`].

use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use spacelink_connection::metric_names as names;
use spacelink_connection::{IdentityReceived, ReplaceToken, ResilienceEvent, StateChanged, Token};
use spacetimedb_lib::Identity;
use tokio::sync::oneshot;

use crate::config::AuthConfig;
use crate::error::AuthError;
use crate::jwt::TokenClaims;
use crate::messages::*;
use crate::provider::{RefreshReason, TokenProvider};
use crate::refresh::{self, RefreshPlan};
use crate::state::{AuthState, Chosen};
use crate::store::{CredentialKey, FallbackStore, Stored};

/// Mailbox capacity: auth traffic is a few messages per session.
const MAILBOX_CAPACITY: usize = 64;

/// What the auth actor is built from.
#[derive(Debug)]
pub struct AuthSetup {
    /// Settings.
    pub config: AuthConfig,
    /// The credential entry: this server and database.
    pub key: CredentialKey,
    /// The store, wrapped so that a failing store falls back to memory.
    pub store: FallbackStore,
    /// Where new tokens come from, if the game has a source.
    pub provider: Option<Arc<dyn TokenProvider>>,
    /// The connection, told which token to present.
    pub connection: Recipient<ReplaceToken>,
    /// Who hears the auth events.
    pub listeners: AuthListeners,
}

/// The token to start the connection with: `given` (stored), else the stored
/// one; a stored token that cannot be read is dropped.
pub fn initial_token(store: &mut FallbackStore, key: &CredentialKey, given: Option<Token>) -> Option<Token> {
    if let Some(token) = given {
        store.save(key, &token);
        return Some(token);
    }
    let token = store.load(key)?;
    match TokenClaims::read(token.expose()) {
        Ok(_) => Some(token),
        Err(e) => {
            tracing::warn!(entry = %key, error = %e, "dropping a stored token that cannot be read");
            store.delete(key);
            None
        }
    }
}

/// The auth actor. Build it with the token the connection was started with.
///
/// Wiring, not the game's API: `spacelink`'s supervisor starts it; a game
/// talks to it through [`AuthHandle`](crate::AuthHandle) (what `spacelink::Client` hands out).
#[derive(Debug)]
pub struct AuthActor {
    setup: AuthSetup,
    /// The credentials, the server's verdict, the refresh under way.
    state: AuthState,
    waiters: Vec<oneshot::Sender<Result<Identity, AuthError>>>,
    refresh_waiters: Vec<oneshot::Sender<Result<(), AuthError>>>,
    refresh_timer: Option<SpawnHandle>,
    store_timer: Option<SpawnHandle>,
}

impl AuthActor {
    /// The actor, given the token the connection starts with (see [`initial_token`]).
    pub fn new(setup: AuthSetup, token: Option<Token>) -> Self {
        Self {
            setup,
            state: AuthState::new(token),
            waiters: Vec::new(),
            refresh_waiters: Vec::new(),
            refresh_timer: None,
            store_timer: None,
        }
    }

    /// Before a restart: a restart drops every timer and reuses their
    /// handles, so the old handles are forgotten, not cancelled (cancelling
    /// one could stop the timer `started()` arms next under the same handle).
    pub(crate) fn forget_timers(&mut self, _ctx: &mut Context<Self>) {
        self.refresh_timer = None;
        self.store_timer = None;
        // A refresh in flight was dropped with the context's futures.
        self.state.timers_dropped();
    }

    fn tell(&self, event: AuthEvent) {
        for r in &self.setup.listeners.events {
            r.do_send(event.clone());
        }
    }

    fn store(&mut self, token: &Token) {
        if self.setup.store.save(&self.setup.key, token) == Stored::InMemory {
            metrics::counter!(names::AUTH_CREDENTIALS_IN_MEMORY).increment(1);
        }
    }

    /// Takes a new token (or none) as current and schedules its refresh.
    fn adopt(&mut self, ctx: &mut Context<Self>, token: Option<Token>) {
        self.state.adopt(token);
        self.schedule_refresh(ctx);
    }

    fn schedule_refresh(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.refresh_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.setup.provider.is_none() {
            return;
        }
        if let RefreshPlan::After(wait) = refresh::plan(self.state.expires_at(), SystemTime::now(), &self.setup.config)
        {
            tracing::debug!(in_ms = wait.as_millis() as u64, "token refresh scheduled");
            self.refresh_timer = Some(ctx.run_later(wait, |act, ctx| act.refresh(ctx, RefreshReason::Expiring)));
        }
    }

    /// Asks the provider for a new token.
    fn refresh(&mut self, ctx: &mut Context<Self>, reason: RefreshReason) {
        let Some(provider) = self.setup.provider.clone() else {
            self.answer_refresh(Err(AuthError::NoProvider));
            return;
        };
        let Some(request) = self.state.refresh_due(reason) else {
            return; // One request at a time; its answer serves everyone.
        };
        let epoch = self.state.epoch();
        tracing::debug!(?reason, "asking the token provider for a new token");
        ctx.spawn(provider.new_token(request).into_actor(self).map(move |result, act, ctx| {
            if act.state.epoch() != epoch {
                return; // The credentials changed meanwhile.
            }
            let result = result
                .map_err(AuthError::Provider)
                .and_then(|token| TokenClaims::read(token.expose()).map(|claims| (token, claims)));
            match result {
                Ok((token, claims)) => act.refreshed(ctx, token, claims, reason),
                Err(error) => {
                    let failures = act.state.refresh_failed();
                    let expires_at = act.state.expires_at();
                    let retry_in = refresh::retry_after(failures, expires_at, SystemTime::now(), &act.setup.config);
                    metrics::counter!(names::AUTH_REFRESH_FAILURES).increment(1);
                    tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "token refresh failed");
                    act.tell(AuthEvent::RefreshFailed { error: error.clone(), retry_in });
                    act.answer_refresh(Err(error));
                    act.refresh_timer = Some(ctx.run_later(retry_in, move |act, ctx| act.refresh(ctx, reason)));
                }
            }
        }));
    }

    fn refreshed(&mut self, ctx: &mut Context<Self>, token: Token, claims: TokenClaims, reason: RefreshReason) {
        if self.state.identity().is_some_and(|id| id != claims.identity) {
            tracing::warn!(identity = %claims.identity.to_hex(), "the token provider gave a token for another identity");
        }
        let reconnect = reason == RefreshReason::Rejected || self.setup.config.reconnect_on_refresh;
        self.store(&token);
        self.setup.connection.do_send(ReplaceToken { token: Some(token.clone()), reconnect });
        let (identity, expires_at) = (claims.identity, claims.expires_at);
        self.adopt(ctx, Some(token));
        metrics::counter!(names::AUTH_REFRESHES).increment(1);
        tracing::info!(identity = %identity.to_hex(), reconnect, "token refreshed");
        self.tell(AuthEvent::TokenRefreshed { identity, expires_at });
        self.answer_refresh(Ok(()));
    }

    fn answer_refresh(&mut self, result: Result<(), AuthError>) {
        for waiter in self.refresh_waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }

    fn answer(&mut self, result: Result<Identity, AuthError>) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

impl Actor for AuthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.arm_store_retry(ctx);
        self.schedule_refresh(ctx);
    }
}

impl AuthActor {
    fn arm_store_retry(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.store_timer.take() {
            ctx.cancel_future(timer);
        }
        let every = self.setup.config.store_retry_interval;
        self.store_timer = Some(ctx.run_interval(every, |act, _ctx| {
            if act.setup.store.has_pending() {
                act.setup.store.retry();
            }
        }));
    }
}

impl Handler<ReconfigureAuth> for AuthActor {
    type Result = Result<(), AuthError>;

    fn handle(&mut self, ReconfigureAuth(config): ReconfigureAuth, ctx: &mut Self::Context) -> Self::Result {
        config.validate()?;
        let store_changed = config.store_retry_interval != self.setup.config.store_retry_interval;
        self.setup.config = config;
        if store_changed {
            self.arm_store_retry(ctx);
        }
        if self.state.replans_on_new_settings() {
            // A retry after a failure keeps its own timer; otherwise plan with the new margins.
            self.schedule_refresh(ctx);
        }
        tracing::info!("auth settings changed");
        Ok(())
    }
}

impl Handler<IdentityReceived> for AuthActor {
    type Result = ();

    fn handle(&mut self, msg: IdentityReceived, ctx: &mut Self::Context) {
        let Some(accepted) = self.state.accepted(msg.generation, msg.identity, &msg.token) else {
            return; // A session of the entry switched away from.
        };
        if accepted.new_identity {
            // Anonymous: the server issued a new identity and its token.
            self.store(&msg.token);
            self.schedule_refresh(ctx);
        }
        if accepted.first {
            metrics::counter!(names::AUTH_AUTHENTICATED).increment(1);
            let new_identity = accepted.new_identity;
            tracing::info!(identity = %msg.identity.to_hex(), new_identity, "authenticated");
            self.tell(AuthEvent::Authenticated { identity: msg.identity, new_identity });
        }
        self.answer(Ok(msg.identity));
    }
}

impl Handler<ResilienceEvent> for AuthActor {
    type Result = ();

    fn handle(&mut self, msg: ResilienceEvent, ctx: &mut Self::Context) {
        let ResilienceEvent::HandshakeRefused { generation, status: status @ (401 | 403), reason } = msg else {
            return;
        };
        let has_provider = self.setup.provider.is_some();
        let Some(ask_provider) = self.state.rejected(generation, has_provider) else {
            return; // An attempt on the entry switched away from.
        };
        let error = AuthError::Rejected { status, reason };
        metrics::counter!(names::AUTH_REJECTED).increment(1);
        tracing::warn!(error = %error, "authentication failed");
        self.tell(AuthEvent::AuthenticationFailed { error: error.clone() });
        self.answer(Err(error));
        if ask_provider {
            self.refresh(ctx, RefreshReason::Rejected);
        }
    }
}

impl Handler<StateChanged> for AuthActor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _ctx: &mut Self::Context) {
        // An attempt failed without the server saying anything about the token.
        if AuthState::unreachable(msg.from, msg.to) && !self.waiters.is_empty() {
            let reason = msg.reason.unwrap_or_else(|| "the connection attempt failed".into());
            self.answer(Err(AuthError::Unreachable(reason)));
        }
    }
}

impl Handler<Authenticate> for AuthActor {
    type Result = ResponseFuture<Result<Identity, AuthError>>;

    fn handle(&mut self, msg: Authenticate, ctx: &mut Self::Context) -> Self::Result {
        let token = match msg.credentials {
            Credentials::Stored => self.setup.store.load(&self.setup.key),
            Credentials::Given(token) => {
                if let Err(e) = TokenClaims::read(token.expose()) {
                    return Box::pin(async move { Err(e) });
                }
                Some(token)
            }
            Credentials::New => {
                self.setup.store.delete(&self.setup.key);
                None
            }
        };
        if let Chosen::AlreadyAuthenticated(identity) = self.state.choose(token.clone()) {
            return Box::pin(async move { identity.ok_or(AuthError::ActorGone) });
        }
        if let Some(token) = &token {
            self.store(token);
        }
        self.answer(Err(AuthError::Superseded));
        self.schedule_refresh(ctx);
        self.setup.connection.do_send(ReplaceToken { token, reconnect: true });
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move { rx.await.unwrap_or(Err(AuthError::ActorGone)) })
    }
}

impl Handler<RefreshNow> for AuthActor {
    type Result = ResponseFuture<Result<(), AuthError>>;

    fn handle(&mut self, _msg: RefreshNow, ctx: &mut Self::Context) -> Self::Result {
        if self.setup.provider.is_none() {
            return Box::pin(async { Err(AuthError::NoProvider) });
        }
        let (tx, rx) = oneshot::channel();
        self.refresh_waiters.push(tx);
        self.refresh(ctx, RefreshReason::Asked);
        Box::pin(async move { rx.await.unwrap_or(Err(AuthError::ActorGone)) })
    }
}

impl Handler<ClearCredentials> for AuthActor {
    type Result = ();

    fn handle(&mut self, _msg: ClearCredentials, ctx: &mut Self::Context) {
        self.setup.store.delete(&self.setup.key);
        self.answer(Err(AuthError::Superseded));
        self.state.clear();
        self.schedule_refresh(ctx);
        self.setup.connection.do_send(ReplaceToken { token: None, reconnect: false });
        tracing::info!(entry = %self.setup.key, "credentials cleared");
        self.tell(AuthEvent::CredentialsCleared);
    }
}

impl Handler<SwitchEntry> for AuthActor {
    type Result = MessageResult<SwitchEntry>;

    fn handle(&mut self, msg: SwitchEntry, ctx: &mut Self::Context) -> Self::Result {
        let SwitchEntry { key, given, after_generation } = msg;
        let token = initial_token(&mut self.setup.store, &key, given);
        tracing::info!(from = %self.setup.key, to = %key, stored = token.is_some(), "credential entry switched");
        self.setup.key = key;
        self.answer(Err(AuthError::Superseded));
        self.state.switch(token.clone(), after_generation);
        self.schedule_refresh(ctx);
        MessageResult(token)
    }
}

impl Handler<GetAuthStatus> for AuthActor {
    type Result = MessageResult<GetAuthStatus>;

    fn handle(&mut self, _msg: GetAuthStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(AuthStatus {
            identity: self.state.identity(),
            token: self.state.token().cloned(),
            expires_at: self.state.expires_at(),
            is_authenticated: self.state.is_authenticated(),
            store: self.setup.store.kind(),
            store_pending: self.setup.store.has_pending(),
        })
    }
}
