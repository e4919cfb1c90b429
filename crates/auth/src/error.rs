//! The auth crate's errors.

/// What can go wrong with authentication. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token cannot be read as a JWT.
    #[error("malformed token: {0}")]
    MalformedToken(String),
    /// The server refused the token (HTTP 401 or 403 on the WebSocket upgrade).
    #[error("the server refused the token (HTTP {status}): {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's own words (the response body).
        reason: String,
    },
    /// The server could not be reached: nothing was said about the token.
    #[error("the server could not be reached: {0}")]
    Unreachable(String),
    /// The game's token provider failed.
    #[error("the token provider failed: {0}")]
    Provider(String),
    /// No token provider is configured, so no new token can be had.
    #[error("no token provider is configured")]
    NoProvider,
    /// The credential store failed.
    #[error("credential storage failed: {0}")]
    Storage(String),
    /// A newer request overtook this one.
    #[error("superseded by a newer authentication")]
    Superseded,
    /// A setting cannot work.
    #[error("bad auth setting {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The auth actor has stopped.
    #[error("the auth actor has stopped")]
    ActorGone,
}
