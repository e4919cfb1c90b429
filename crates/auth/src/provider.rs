//! The seam through which the game supplies new tokens.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use spacelink_connection::Token;
use spacetimedb_lib::Identity;

/// Why a new token is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// The current token's `exp` is near.
    Expiring,
    /// The server refused the current token.
    Rejected,
    /// The game asked (`AuthHandle::refresh_now`).
    Asked,
}

/// What the provider is told when asked for a token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The identity of the current token, if any: a provider that keeps the
    /// player's identity mints a token for it.
    pub identity: Option<Identity>,
    /// When the current token expires.
    pub expires_at: Option<SystemTime>,
    /// Why a token is wanted.
    pub reason: RefreshReason,
}

/// A future answering a [`TokenRequest`]; the error is the provider's own words.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Token, String>> + Send + 'static>>;

/// Where new tokens come from: the game's OIDC login, a Steam ticket
/// exchange, its backend minting tokens. SpacetimeDB has no refresh tokens of
/// its own, so without a provider a token that expires cannot be replaced.
///
/// The future runs on the auth actor's thread; do blocking work elsewhere.
pub trait TokenProvider: fmt::Debug + Send + Sync + 'static {
    /// A fresh token for `request`.
    fn new_token(&self, request: TokenRequest) -> TokenFuture;
}
