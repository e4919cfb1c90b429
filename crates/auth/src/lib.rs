//! Authentication for spacelink. **Not implemented yet.**
//!
//! This crate will own the `AuthActor`: obtaining an identity and token from the
//! server (`POST /v1/identity`) or from stored credentials, storing credentials
//! securely on disk, refreshing tokens before their `exp`, and telling the
//! connection which token to present on (re)connect. Until it lands, the
//! connection takes a token directly in `ConnectionConfig::token`, and the
//! server-issued token arrives in the connection's `IdentityReceived` event.
