//! The game's handle on authentication.

use actix::prelude::*;
use spacelink_connection::Token;
use spacetimedb_lib::Identity;

use crate::actor::AuthActor;
use crate::error::AuthError;
use crate::messages::*;

/// Talks to the auth actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthHandle {
    addr: Addr<AuthActor>,
}

impl AuthHandle {
    /// Wraps the actor's address (the supervisor does this).
    pub fn new(addr: Addr<AuthActor>) -> Self {
        Self { addr }
    }

    /// Authenticates with `credentials` and waits for the server's verdict:
    /// our identity, [`AuthError::Rejected`] with the server's reason, or
    /// [`AuthError::Unreachable`] when no server answered (the connection
    /// keeps trying; an `Authenticated` event follows when it gets through).
    pub async fn authenticate(&self, credentials: Credentials) -> Result<Identity, AuthError> {
        self.addr.send(Authenticate { credentials }).await.map_err(|_| AuthError::ActorGone)?
    }

    /// Asks the token provider for a new token now.
    pub async fn refresh_now(&self) -> Result<(), AuthError> {
        self.addr.send(RefreshNow).await.map_err(|_| AuthError::ActorGone)?
    }

    /// Forgets the stored and current credentials (the next session is anonymous).
    pub fn clear_credentials(&self) {
        self.addr.do_send(ClearCredentials);
    }

    /// New settings while running (refresh margins and delays, the store
    /// retry interval); refused, naming the field, if one cannot work.
    pub async fn reconfigure(&self, config: crate::AuthConfig) -> Result<(), AuthError> {
        self.addr.send(ReconfigureAuth(config)).await.map_err(|_| AuthError::ActorGone)?
    }

    /// Switches to the credential entry of another server or database (a
    /// profile switch) and answers the token to open its first session with:
    /// that entry's stored token, or `given`, or none (the server then issues a
    /// new identity, stored under the new entry). Sessions up to
    /// `after_generation` belong to the old entry: an identity they still
    /// report is not stored.
    pub async fn switch_entry(
        &self,
        key: crate::CredentialKey,
        given: Option<Token>,
        after_generation: u64,
    ) -> Result<Option<Token>, AuthError> {
        self.addr.send(SwitchEntry { key, given, after_generation }).await.map_err(|_| AuthError::ActorGone)
    }

    /// The whole state.
    pub async fn status(&self) -> Result<AuthStatus, AuthError> {
        self.addr.send(GetAuthStatus).await.map_err(|_| AuthError::ActorGone)
    }

    /// Our identity, once known.
    pub async fn identity(&self) -> Result<Option<Identity>, AuthError> {
        Ok(self.status().await?.identity)
    }

    /// The current token.
    pub async fn token(&self) -> Result<Option<Token>, AuthError> {
        Ok(self.status().await?.token)
    }

    /// Whether the server accepted the current credentials.
    pub async fn is_authenticated(&self) -> Result<bool, AuthError> {
        Ok(self.status().await?.is_authenticated)
    }
}
