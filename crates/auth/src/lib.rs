//! Authentication for spacelink: who the player is, and the token that proves it.
//!
//! - [`jwt`]: what a token says about itself (identity from `iss`+`sub`,
//!   `exp`), read without verifying it; the server verifies.
//! - [`store`]: credentials kept between runs behind [`CredentialStore`]
//!   (the app provides the OS keyring and an owner-only file), one entry per
//!   server and database, falling back to memory when the store fails.
//! - [`refresh`]: when to ask the game's [`TokenProvider`] for a new token.
//! - [`state`]: the actor's state as one [`AuthState`]: the credentials, the
//!   server's verdict on them, the refresh under way, with its transitions.
//! - [`AuthActor`]: starts before the connection, hands it the token, learns
//!   from it what the server said (accepted, refused with HTTP 401/403, or
//!   unreachable), and replaces the token ahead of `exp` without a reconnect
//!   the game can see (SpacetimeDB checks a token when a session opens).
//!
//! Tokens are never logged: [`Token`]'s `Debug` and `Display` redact it, and no
//! error carries one.

#![warn(unreachable_pub)]

mod actor;
pub mod config;
pub mod error;
mod handle;
pub mod jwt;
mod messages;
pub mod provider;
pub mod refresh;
pub mod state;
pub mod store;

pub use actor::{initial_token, AuthActor, AuthSetup};
pub use config::AuthConfig;
pub use error::AuthError;
pub use handle::AuthHandle;
pub use jwt::TokenClaims;
pub use messages::{AuthEvent, AuthListeners, AuthStatus, Credentials};
pub use provider::{RefreshReason, TokenFuture, TokenProvider, TokenRequest};
pub use spacelink_connection::Token;
pub use state::{AuthState, Verdict};
pub use store::{CredentialKey, CredentialStore, FallbackStore, MemoryStore, StoreError, Stored};

/// Restarted by the app's supervisor when it stops, the same value (token,
/// identity, store); `started()` re-arms its timers.
impl actix::Supervised for AuthActor {
    fn restarting(&mut self, ctx: &mut Self::Context) {
        self.forget_timers(ctx);
    }
}
