//! The auth actor's messages: what it takes and what it tells.

use std::time::{Duration, SystemTime};

use actix::prelude::*;
use spacelink_connection::Token;
use spacetimedb_lib::Identity;

use crate::error::AuthError;

/// Which credentials to authenticate with.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The token kept in the credential store (or a new identity if there is none).
    Stored,
    /// This token (it is stored once the server accepts it).
    Given(Token),
    /// None: forget any stored token; the server issues a new identity.
    New,
}

/// Authenticate (reconnecting if the token changes) and wait for the server's
/// verdict: the identity, or why not.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Identity, AuthError>")]
pub(crate) struct Authenticate {
    /// The credentials.
    pub(crate) credentials: Credentials,
}

/// Ask the token provider for a new token now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), AuthError>")]
pub(crate) struct RefreshNow;

/// Forget the stored and current credentials; the next session is anonymous.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct ClearCredentials;

/// New settings while running: the refresh margins and delays apply to the
/// next refresh (the pending one is planned again), the store retry interval
/// to the next retry. Refused (nothing changes) if a duration cannot work.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), crate::AuthError>")]
pub(crate) struct ReconfigureAuth(pub(crate) crate::AuthConfig);

/// Use another credential entry (a profile switch to another server or
/// database): that entry's stored token, or `given`, or none (the server then
/// issues a new identity, stored under the new entry), becomes current, and is
/// answered for the connection's next session. Sessions up to `after_generation`
/// belong to the old entry: an identity they still report is not stored.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Token>")]
pub(crate) struct SwitchEntry {
    /// The new entry.
    pub(crate) key: crate::CredentialKey,
    /// A token to use for it (stored), instead of the stored one.
    pub(crate) given: Option<Token>,
    /// The connection's generation at the switch.
    pub(crate) after_generation: u64,
}

/// Ask for the current authentication state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "AuthStatus")]
pub(crate) struct GetAuthStatus;

/// The authentication state, as `GetAuthStatus` answers it.
#[derive(Debug, Clone)]
pub struct AuthStatus {
    /// Who we are (from the server once it accepted us, else from the token).
    pub identity: Option<Identity>,
    /// The token presented to the server.
    pub token: Option<Token>,
    /// When it expires (`None`: never, or no token).
    pub expires_at: Option<SystemTime>,
    /// Whether the server accepted the current credentials.
    pub is_authenticated: bool,
    /// The credential store's kind ("keyring", "file", "memory").
    pub store: &'static str,
    /// Whether some credential waits in memory for the store to work again.
    pub store_pending: bool,
}

/// What the auth actor tells.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum AuthEvent {
    /// The server accepted us.
    Authenticated {
        /// Our identity.
        identity: Identity,
        /// Whether the server issued it just now (a new player).
        new_identity: bool,
    },
    /// The server refused the credentials (never sent for a network failure:
    /// that is the connection's state event).
    AuthenticationFailed {
        /// Why: always [`AuthError::Rejected`], with the server's words.
        error: AuthError,
    },
    /// A new token from the provider replaced the current one.
    TokenRefreshed {
        /// The new token's identity.
        identity: Identity,
        /// When it expires.
        expires_at: Option<SystemTime>,
    },
    /// The provider could not give a new token; it is asked again later.
    RefreshFailed {
        /// Why.
        error: AuthError,
        /// When it is asked again.
        retry_in: Duration,
    },
    /// The credentials were forgotten.
    CredentialsCleared,
}

/// Who hears what the auth actor tells.
#[derive(Debug, Clone, Default)]
pub struct AuthListeners {
    /// Receive every auth event.
    pub events: Vec<Recipient<AuthEvent>>,
}
