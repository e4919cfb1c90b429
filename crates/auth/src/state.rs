//! The auth actor's state as one value with its transitions: the current
//! credentials, the server's verdict on them, the refresh under way, and the
//! sessions that no longer count. No actor, no clock and no I/O: the actor
//! asks a transition and carries out what it returns (store, tell the
//! connection, arm a timer).
//!
//! The verdict moves `Pending` → `Accepted` (the session's `IdentityReceived`)
//! or `Rejected` (a 401/403 handshake); new credentials (stored, given, new,
//! cleared, another entry) make it `Pending` again. A rejection asks the token
//! provider once, until a session is accepted. The refresh moves `Planned`
//! (a timer per [`refresh::plan`](crate::refresh::plan)) → `Asking` (one
//! provider request in flight) → `Retrying` after a failure, and back to
//! `Planned` when a token is adopted.

use std::time::SystemTime;

use spacelink_connection::{ConnectionState, Token};
use spacetimedb_lib::Identity;

use crate::jwt::TokenClaims;
use crate::provider::{RefreshReason, TokenRequest};

/// What the server said about the current credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing yet: no session has opened with them.
    Pending,
    /// A session opened with them.
    Accepted,
    /// The server refused them (HTTP 401/403).
    Rejected {
        /// A new token was already asked for because of it.
        recovering: bool,
    },
}

/// Where the token's refresh stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Waiting for the time the plan says (or for nothing: no expiry, no provider).
    Planned,
    /// A request to the provider is in flight.
    Asking {
        /// Failed requests before this one.
        failures: u32,
    },
    /// The last request failed; a retry is scheduled.
    Retrying {
        /// Failed requests in a row.
        failures: u32,
    },
}

/// The answer to credentials the game chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// The same token, already accepted: nothing to do.
    AlreadyAuthenticated(Option<Identity>),
    /// New credentials: the connection must reconnect with them.
    Reconnect,
}

/// A session's identity arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The session was anonymous: the server's token was adopted (store it).
    pub new_identity: bool,
    /// The first acceptance of these credentials (tell the game).
    pub first: bool,
}

/// The credentials and what is known about them.
#[derive(Debug, Clone)]
pub struct AuthState {
    token: Option<Token>,
    claims: Option<TokenClaims>,
    identity: Option<Identity>,
    verdict: Verdict,
    refresh: Refresh,
    /// Bumped whenever the credentials change: a provider answer for older ones is dropped.
    epoch: u64,
    /// Sessions up to this generation belong to an entry switched away from.
    stale_up_to: u64,
}

impl AuthState {
    /// The state for the token the connection starts with.
    pub fn new(token: Option<Token>) -> Self {
        let claims = token.as_ref().and_then(|t| TokenClaims::read(t.expose()).ok());
        Self {
            identity: claims.as_ref().map(|c| c.identity),
            token,
            claims,
            verdict: Verdict::Pending,
            refresh: Refresh::Planned,
            epoch: 0,
            stale_up_to: 0,
        }
    }

    /// The current token.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The identity: the server's word, else the token's claims.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// When the current token expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.claims.as_ref().and_then(|c| c.expires_at)
    }

    /// The server's verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether a session opened with the current credentials.
    pub fn is_authenticated(&self) -> bool {
        self.verdict == Verdict::Accepted
    }

    /// The refresh's stage.
    pub fn refresh(&self) -> Refresh {
        self.refresh
    }

    /// Failed refresh requests in a row.
    pub fn refresh_failures(&self) -> u32 {
        match self.refresh {
            Refresh::Planned => 0,
            Refresh::Asking { failures } | Refresh::Retrying { failures } => failures,
        }
    }

    /// The credentials' number: an answer for an older one is stale.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Takes `token` (or none) as current: a new epoch, its refresh planned afresh.
    pub fn adopt(&mut self, token: Option<Token>) {
        self.epoch += 1;
        self.claims = token.as_ref().and_then(|t| TokenClaims::read(t.expose()).ok());
        if let Some(claims) = &self.claims {
            self.identity = Some(claims.identity);
        }
        self.token = token;
        self.refresh = Refresh::Planned;
    }

    /// The game chose credentials (stored, given, or none for a new identity).
    pub fn choose(&mut self, token: Option<Token>) -> Chosen {
        if self.is_authenticated() && token.is_some() && token == self.token {
            return Chosen::AlreadyAuthenticated(self.identity);
        }
        self.forget_identity();
        self.adopt(token);
        Chosen::Reconnect
    }

    /// The game cleared the credentials.
    pub fn clear(&mut self) {
        self.forget_identity();
        self.adopt(None);
    }

    /// The client moved to another credential entry, whose token is `token`;
    /// sessions up to `after_generation` were the old entry's.
    pub fn switch(&mut self, token: Option<Token>, after_generation: u64) {
        self.stale_up_to = self.stale_up_to.max(after_generation);
        self.forget_identity();
        self.adopt(token);
    }

    fn forget_identity(&mut self) {
        self.verdict = Verdict::Pending;
        self.identity = None;
    }

    /// Session `generation` opened as `identity`, the server issuing `token`.
    /// `None` for a session of an entry switched away from.
    pub fn accepted(&mut self, generation: u64, identity: Identity, token: &Token) -> Option<Accepted> {
        if generation <= self.stale_up_to {
            return None;
        }
        let new_identity = self.token.is_none();
        if new_identity {
            // Anonymous: the server issued a new identity and its token.
            self.adopt(Some(token.clone()));
        }
        self.identity = Some(identity);
        let first = self.verdict != Verdict::Accepted;
        self.verdict = Verdict::Accepted;
        Some(Accepted { new_identity, first })
    }

    /// The server refused the token of attempt `generation`. Returns whether
    /// to ask the provider for a new one (once per rejection streak, if there
    /// is a provider), or `None` for an attempt of an old entry.
    pub fn rejected(&mut self, generation: u64, has_provider: bool) -> Option<bool> {
        if generation <= self.stale_up_to {
            return None;
        }
        let recovering = matches!(self.verdict, Verdict::Rejected { recovering: true });
        let ask = has_provider && !recovering;
        self.verdict = Verdict::Rejected { recovering: recovering || ask };
        Some(ask)
    }

    /// Whether a connection state change means the attempt failed without the
    /// server judging the token (unreachable): it went to reconnecting or
    /// failed without having been connected.
    pub fn unreachable(from: ConnectionState, to: ConnectionState) -> bool {
        from != ConnectionState::Connected && matches!(to, ConnectionState::Reconnecting | ConnectionState::Failed)
    }

    /// A refresh is due for `reason`: the request to send to the provider,
    /// or `None` while one is in flight (its answer serves everyone), unless
    /// the server rejected the token, which asks again.
    pub fn refresh_due(&mut self, reason: RefreshReason) -> Option<TokenRequest> {
        let failures = match self.refresh {
            Refresh::Asking { .. } if reason != RefreshReason::Rejected => return None,
            _ => self.refresh_failures(),
        };
        self.refresh = Refresh::Asking { failures };
        Some(TokenRequest { identity: self.identity, expires_at: self.expires_at(), reason })
    }

    /// The provider's request failed: how many failed in a row.
    pub fn refresh_failed(&mut self) -> u32 {
        let failures = self.refresh_failures() + 1;
        self.refresh = Refresh::Retrying { failures };
        failures
    }

    /// The actor restarts: its timers and the request in flight are gone.
    pub fn timers_dropped(&mut self) {
        if let Refresh::Asking { failures } = self.refresh {
            self.refresh = if failures == 0 { Refresh::Planned } else { Refresh::Retrying { failures } };
        }
    }

    /// Whether new settings should plan the refresh again (not while a
    /// request or a retry after a failure is under way: they keep their timer).
    pub fn replans_on_new_settings(&self) -> bool {
        self.refresh == Refresh::Planned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(sub: &str, exp: Option<u64>) -> Token {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({"iss": "localhost", "sub": sub, "exp": exp});
        Token::new(format!("{}.{}.c2ln", e.encode(br#"{"alg":"ES256"}"#), e.encode(claims.to_string())))
    }

    fn id(sub: &str) -> Identity {
        Identity::from_claims("localhost", sub)
    }

    #[test]
    fn a_stored_token_is_accepted_once() {
        let mut s = AuthState::new(Some(token("me", None)));
        assert_eq!((s.identity(), s.verdict()), (Some(id("me")), Verdict::Pending), "the claims say who, unproven");
        let server = token("ignored", None);
        assert_eq!(s.accepted(1, id("me"), &server), Some(Accepted { new_identity: false, first: true }));
        assert!(s.is_authenticated());
        assert_eq!(s.token(), Some(&token("me", None)), "a token of ours is kept, not the server's");
        assert_eq!(s.accepted(2, id("me"), &server), Some(Accepted { new_identity: false, first: false }));
    }

    #[test]
    fn an_anonymous_session_adopts_the_servers_token() {
        let mut s = AuthState::new(None);
        let epoch = s.epoch();
        let issued = token("new", None);
        assert_eq!(s.accepted(1, id("new"), &issued), Some(Accepted { new_identity: true, first: true }));
        assert_eq!(s.token(), Some(&issued));
        assert_eq!(s.epoch(), epoch + 1);
    }

    #[test]
    fn given_stored_and_new_credentials_reconnect_unless_already_accepted() {
        let mut s = AuthState::new(Some(token("me", None)));
        s.accepted(1, id("me"), &token("me", None));
        assert_eq!(s.choose(Some(token("me", None))), Chosen::AlreadyAuthenticated(Some(id("me"))));
        assert_eq!(s.choose(Some(token("other", None))), Chosen::Reconnect, "a given token");
        assert_eq!((s.verdict(), s.identity()), (Verdict::Pending, Some(id("other"))));
        assert_eq!(s.choose(None), Chosen::Reconnect, "a new identity");
        assert_eq!((s.token(), s.identity()), (None, None));
        s.clear();
        assert_eq!((s.token(), s.verdict()), (None, Verdict::Pending));
    }

    #[test]
    fn a_rejection_asks_the_provider_once_until_accepted() {
        let mut s = AuthState::new(Some(token("me", None)));
        assert_eq!(s.rejected(1, true), Some(true));
        assert_eq!(s.rejected(2, true), Some(false), "already recovering");
        assert!(!s.is_authenticated());
        s.accepted(3, id("me"), &token("me", None));
        assert_eq!(s.rejected(4, true), Some(true), "a new streak");
        let mut s = AuthState::new(Some(token("me", None)));
        assert_eq!(s.rejected(1, false), Some(false), "no provider, nothing to ask");
        assert_eq!(s.verdict(), Verdict::Rejected { recovering: false });
    }

    #[test]
    fn sessions_of_an_entry_switched_away_from_do_not_count() {
        let mut s = AuthState::new(Some(token("old", None)));
        s.switch(Some(token("new", None)), 5);
        assert_eq!(s.accepted(5, id("old"), &token("old", None)), None);
        assert_eq!(s.rejected(4, true), None);
        assert_eq!(s.verdict(), Verdict::Pending);
        assert!(s.accepted(6, id("new"), &token("new", None)).is_some());
    }

    #[test]
    fn unreachable_is_a_failed_attempt_not_a_lost_session() {
        use ConnectionState::*;
        assert!(AuthState::unreachable(Connecting, Reconnecting));
        assert!(AuthState::unreachable(Reconnecting, Failed));
        assert!(!AuthState::unreachable(Connected, Reconnecting), "a live session lost says nothing of the token");
        assert!(!AuthState::unreachable(Connecting, Connected));
    }

    #[test]
    fn a_refresh_asks_once_counts_failures_and_starts_afresh_on_a_new_token() {
        let mut s = AuthState::new(Some(token("me", Some(2_000_000_000))));
        let request = s.refresh_due(RefreshReason::Expiring).unwrap();
        assert_eq!((request.identity, request.reason), (Some(id("me")), RefreshReason::Expiring));
        assert!(request.expires_at.is_some());
        assert!(s.refresh_due(RefreshReason::Asked).is_none(), "one request at a time");
        assert!(s.refresh_due(RefreshReason::Rejected).is_some(), "a rejection asks again");
        assert_eq!(s.refresh_failed(), 1);
        assert!(!s.replans_on_new_settings(), "a retry keeps its timer");
        assert!(s.refresh_due(RefreshReason::Expiring).is_some());
        assert_eq!(s.refresh_failed(), 2);
        s.refresh_due(RefreshReason::Expiring);
        s.timers_dropped();
        assert_eq!(s.refresh(), Refresh::Retrying { failures: 2 }, "a restart drops the request, not the count");
        let epoch = s.epoch();
        s.adopt(Some(token("me", Some(2_100_000_000))));
        assert_eq!((s.refresh(), s.epoch()), (Refresh::Planned, epoch + 1));
        assert!(s.replans_on_new_settings());
        s.refresh_due(RefreshReason::Expiring);
        s.timers_dropped();
        assert_eq!(s.refresh(), Refresh::Planned);
    }
}
