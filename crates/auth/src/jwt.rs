//! Reading a JWT's claims without verifying it.
//!
//! The server verifies tokens; the client only needs to know what a token says
//! about itself: who it names (SpacetimeDB 1.3 derives the identity from the
//! `iss` and `sub` claims) and when it expires (`exp`; the tokens the server
//! issues itself, by `POST /v1/identity` or to an anonymous connection, have
//! `exp: null` and never expire). The payload is the second base64url segment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use spacetimedb_lib::Identity;

use crate::error::AuthError;

/// Largest token we read, in bytes: a token is a header value, not a payload.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `iss`: who issued it.
    pub issuer: String,
    /// `sub`: whom it names, for that issuer.
    pub subject: String,
    /// The identity the server derives from `iss` and `sub`.
    pub identity: Identity,
    /// `iat`, when present.
    pub issued_at: Option<SystemTime>,
    /// `exp`, when present; `None` for a token that never expires.
    pub expires_at: Option<SystemTime>,
}

impl TokenClaims {
    /// Reads the claims of `token` (a compact JWS: `header.payload.signature`).
    ///
    /// The signature is not checked: that is the server's job.
    pub fn read(token: &str) -> Result<Self, AuthError> {
        let bad = |why: &str| AuthError::MalformedToken(why.to_string());
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad("longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not three dot-separated parts"));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| bad("the payload is not base64url"))?;
        let claims: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| bad("the payload is not a JSON object"))?;
        let claims = claims.as_object().ok_or_else(|| bad("the payload is not a JSON object"))?;
        let text = |name: &str| -> Result<String, AuthError> {
            match claims.get(name) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(AuthError::MalformedToken(format!("no `{name}` claim"))),
            }
        };
        let time = |name: &str| -> Result<Option<SystemTime>, AuthError> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(n)) => {
                    let secs = n
                        .as_u64()
                        .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
                        .ok_or_else(|| AuthError::MalformedToken(format!("`{name}` is not a time")))?;
                    Ok(UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
                }
                Some(_) => Err(AuthError::MalformedToken(format!("`{name}` is not a number"))),
            }
        };
        let issuer = text("iss")?;
        let subject = text("sub")?;
        let identity = Identity::from_claims(&issuer, &subject);
        if let Some(serde_json::Value::String(hex)) = claims.get("hex_identity") {
            if !hex.eq_ignore_ascii_case(identity.to_hex().as_ref()) {
                return Err(bad("`hex_identity` does not match `iss` and `sub`"));
            }
        }
        Ok(Self { issuer, subject, identity, issued_at: time("iat")?, expires_at: time("exp")? })
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An unsigned token with these claims (the signature part is junk).
    pub(crate) fn token(claims: serde_json::Value) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.c2ln", e.encode(br#"{"alg":"ES256","typ":"JWT"}"#), e.encode(claims.to_string()))
    }

    #[test]
    fn reads_a_server_issued_token() {
        let t = token(
            serde_json::json!({"iss": "localhost", "sub": "abc", "aud": ["spacetimedb"], "iat": 1_700_000_000, "exp": null}),
        );
        let c = TokenClaims::read(&t).unwrap();
        assert_eq!(c.identity, Identity::from_claims("localhost", "abc"));
        assert_eq!(c.issued_at, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        assert_eq!(c.expires_at, None);
        assert!(!c.is_expired(SystemTime::now()));
    }

    #[test]
    fn reads_exp_and_checks_hex_identity() {
        let id = Identity::from_claims("me", "you").to_hex().to_string();
        let t = token(serde_json::json!({"iss": "me", "sub": "you", "exp": 10, "hex_identity": id}));
        let c = TokenClaims::read(&t).unwrap();
        assert!(c.is_expired(UNIX_EPOCH + Duration::from_secs(10)));
        assert!(!c.is_expired(UNIX_EPOCH + Duration::from_secs(9)));
        let t = token(serde_json::json!({"iss": "me", "sub": "other", "hex_identity": id}));
        assert!(TokenClaims::read(&t).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        // Feature: spacetimedb-integration, Property 2: Authentication Flow Consistency
        #[test]
        fn prop_claims_read_back_the_identity_and_expiry(
            iss in "[ -~]{1,40}", sub in "[ -~]{1,40}", exp in proptest::option::of(0u64..4_000_000_000), junk in ".{0,64}",
        ) {
            let t = token(serde_json::json!({"iss": iss, "sub": sub, "exp": exp, "aud": ["spacetimedb"]}));
            let c = TokenClaims::read(&t).unwrap();
            proptest::prop_assert_eq!(c.identity, Identity::from_claims(&iss, &sub));
            proptest::prop_assert_eq!(c.expires_at, exp.map(|e| UNIX_EPOCH + Duration::from_secs(e)));
            // Anything else is refused with a typed error, never a panic.
            let _ = TokenClaims::read(&junk);
            let _ = TokenClaims::read(&format!("a.{junk}.b"));
        }
    }

    #[test]
    fn malformed_tokens_are_refused_not_panicked_on() {
        for t in
            ["", "a.b", "a.b.c.d", "a.!!!.c", &token(serde_json::json!([1])), &token(serde_json::json!({"sub": "x"}))]
        {
            assert!(matches!(TokenClaims::read(t), Err(AuthError::MalformedToken(_))), "{t}");
        }
        let t = token(serde_json::json!({"iss": "a", "sub": "b", "exp": "soon"}));
        assert!(TokenClaims::read(&t).is_err());
        assert!(TokenClaims::read(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}
