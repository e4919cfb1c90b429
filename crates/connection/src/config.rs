//! The connection's settings, with the defaults a game wants.

use std::fmt;
use std::time::Duration;

use crate::backoff::RetryPolicy;
use crate::breaker::CircuitBreakerConfig;
use crate::codec::{Compression, DecodeLimits};

/// Everything the connection actor needs to know (the design's `ConnectionConfig`).
///
/// Build one with [`ConnectionConfig::new`] and adjust fields; [`validate`](Self::validate)
/// is called when the actor starts.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// The server's base URL: `http://host:port`, `https://…`, `ws://…` or `wss://…`.
    pub server_url: String,
    /// The database (module) name or identity, e.g. `guildmaster`.
    pub database: String,
    /// A token to present; `None` connects anonymously and the server issues
    /// one (it arrives in `IdentityReceived` and is reused on reconnect).
    pub token: Option<String>,
    /// How the server should compress what it sends (default `Auto`: none
    /// for a loopback server, gzip for any other; see [`Compression`]).
    pub compression: Compression,
    /// Ask for light transaction updates (no caller and timing metadata for
    /// other clients' transactions; default off).
    pub light_mode: bool,
    /// Longest wait for the TCP + WebSocket handshake (default 5 s).
    pub connect_timeout: Duration,
    /// Interval between WebSocket pings that measure the round trip, and between
    /// looks at whether the session went silent (default 500 ms).
    pub heartbeat_interval: Duration,
    /// A session at whose socket nothing at all (data, ping or pong) arrives for
    /// this long is declared dead (default 2 s; must exceed `heartbeat_interval`).
    /// Silence is counted at the socket, by the session's reader: a backlog the
    /// client has not applied yet never makes a live server look dead. It
    /// stretches with the measured round trip (two round trips, four deviations
    /// and a heartbeat interval), so a slow but steady link is not declared dead;
    /// with the defaults a frozen server on a fast link is noticed within 2.5 s.
    pub dead_peer_timeout: Duration,
    /// The server's `IdentityToken` must arrive within this long of the
    /// WebSocket upgrade, or the attempt counts as failed (default 5 s): a
    /// server that accepts and then stays silent is not a connection.
    pub identity_timeout: Duration,
    /// A session counts as a success for the backoff and the circuit breaker
    /// only once its `IdentityToken` arrived and it then stayed up and healthy
    /// this long (default 5 s). A session lost before that is one more failed
    /// attempt, so a server that keeps accepting and failing is backed off
    /// exponentially and trips the breaker.
    pub proven_after: Duration,
    /// How the module's schema is fetched: timeout and size limit (retries
    /// follow `retry`).
    pub schema_fetch: crate::schema::SchemaFetchConfig,
    /// Frames queued for sending before `send` reports back-pressure (default 4096).
    pub outbound_capacity: usize,
    /// Size limits for what the server sends.
    pub limits: DecodeLimits,
    /// How reconnection attempts are spaced.
    pub retry: RetryPolicy,
    /// When reconnection pauses altogether.
    pub breaker: CircuitBreakerConfig,
    /// Seed for retry jitter (default: from the clock); set it for reproducible tests.
    pub jitter_seed: Option<u64>,
    /// TLS for `wss://`/`https://` servers: extra root certificates (default none).
    pub tls: crate::tls::TlsConfig,
    /// The connection id presented on every connect, reconnects included, so
    /// that the module sees one caller connection across them (default none:
    /// the server picks a new one per session; `spacelink::Client` sets one
    /// per client, as the official SDK keeps one per connection object).
    ///
    /// Except after a session lost without a close (a dead peer: a blackhole,
    /// a frozen server): the server may still hold that session, and
    /// SpacetimeDB 1.3 keys a client's subscriptions by identity and
    /// connection id, so a second session under the same id would get its
    /// subscriptions answered empty and lose them when the first is dropped.
    /// The connection then takes a fresh id ([`fresh_connection_id`]).
    pub connection_id: Option<spacetimedb_lib::ConnectionId>,
}

/// A connection id no other client is likely to have: 128 bits from the
/// process's randomly seeded hasher, the clock, the process id and a counter.
pub fn fresh_connection_id() -> spacetimedb_lib::ConnectionId {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.write_u32(std::process::id());
        h.finish()
    };
    let id = (u128::from(half(1)) << 64) | u128::from(half(2));
    spacetimedb_lib::ConnectionId::from_u128(id.max(1))
}

impl ConnectionConfig {
    /// A configuration with defaults for `server_url` and `database`.
    pub fn new(server_url: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            server_url: server_url.into(),
            database: database.into(),
            token: None,
            compression: Compression::default(),
            light_mode: false,
            connect_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(500),
            dead_peer_timeout: Duration::from_secs(2),
            identity_timeout: Duration::from_secs(5),
            proven_after: Duration::from_secs(5),
            schema_fetch: crate::schema::SchemaFetchConfig::default(),
            outbound_capacity: 4096,
            limits: DecodeLimits::default(),
            retry: RetryPolicy::default(),
            breaker: CircuitBreakerConfig::default(),
            jitter_seed: None,
            tls: crate::tls::TlsConfig::default(),
            connection_id: None,
        }
    }

    /// Checks the settings, saying which one is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if self.database.trim().is_empty() {
            return bad("database", "is empty".into());
        }
        if self.database.contains(['/', '?', '#', ' ']) {
            return bad("database", format!("`{}` is not a database name or identity", self.database));
        }
        match websocket_base(&self.server_url) {
            Err(reason) => return bad("server_url", reason),
            Ok(base) if base.starts_with("wss://") && !cfg!(feature = "tls") => {
                return bad(
                    "server_url",
                    format!(
                        "`{}` needs TLS, which this build leaves out: enable spacelink's `tls` feature",
                        self.server_url
                    ),
                );
            }
            Ok(_) => {}
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty() || t.contains(['\r', '\n'])) {
            return bad("token", "is empty or contains a line break".into());
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("dead_peer_timeout", self.dead_peer_timeout),
            ("identity_timeout", self.identity_timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be more than zero".into());
            }
        }
        if self.dead_peer_timeout <= self.heartbeat_interval {
            return bad(
                "dead_peer_timeout",
                format!("{:?} must exceed heartbeat_interval {:?}", self.dead_peer_timeout, self.heartbeat_interval),
            );
        }
        if self.schema_fetch.timeout.is_zero() {
            return bad("schema_fetch.timeout", "must be more than zero".into());
        }
        if self.outbound_capacity == 0 {
            return bad("outbound_capacity", "must be at least 1".into());
        }
        if self.limits.max_message_size < 1024 {
            return bad("limits.max_message_size", "must be at least 1024 bytes".into());
        }
        let r = &self.retry;
        if !(r.backoff_multiplier.is_finite() && r.backoff_multiplier >= 1.0) {
            return bad("retry.backoff_multiplier", format!("{} must be a number >= 1", r.backoff_multiplier));
        }
        if !(0.0..=1.0).contains(&r.jitter) {
            return bad("retry.jitter", format!("{} must be within 0..=1", r.jitter));
        }
        if r.max_delay < r.initial_delay {
            return bad("retry.max_delay", "must not be less than retry.initial_delay".into());
        }
        if self.breaker.failure_threshold == 0 {
            return bad("breaker.failure_threshold", "must be at least 1".into());
        }
        if self.breaker.half_open_max_calls == 0 {
            return bad("breaker.half_open_max_calls", "must be at least 1".into());
        }
        if let Err(reason) = self.tls.validate() {
            return bad("tls.extra_root_certificates", reason);
        }
        Ok(())
    }

    /// Whether a running connection can switch from `self` to `new` without a
    /// restart: the server, the database and what the session was opened with
    /// cannot change live (the error names the field and says so).
    pub fn check_live_change(&self, new: &Self) -> Result<(), ConfigError> {
        let fixed: [(&'static str, bool); 7] = [
            ("server_url", self.server_url.trim_end_matches('/') != new.server_url.trim_end_matches('/')),
            ("database", self.database != new.database),
            ("compression", self.compression != new.compression),
            ("light_mode", self.light_mode != new.light_mode),
            ("outbound_capacity", self.outbound_capacity != new.outbound_capacity),
            ("limits.max_message_size", self.limits.max_message_size != new.limits.max_message_size),
            ("tls.extra_root_certificates", self.tls != new.tls),
        ];
        match fixed.into_iter().find(|(_, changed)| *changed) {
            Some((field, _)) => Err(ConfigError {
                field,
                reason: "cannot change while the client runs: restart it or switch profiles".into(),
            }),
            None => Ok(()),
        }
    }

    /// The `ws(s)://…/v1/database/<db>/subscribe?…` URL this configuration connects to.
    pub fn subscribe_url(&self) -> Result<String, ConfigError> {
        let base = websocket_base(&self.server_url).map_err(|reason| ConfigError { field: "server_url", reason })?;
        let mut url = format!(
            "{base}/v1/database/{}/subscribe?compression={}&light={}",
            self.database,
            self.compression.for_server(&self.server_url).as_query_value(),
            self.light_mode
        );
        if let Some(id) = self.connection_id.filter(|id| *id != spacetimedb_lib::ConnectionId::ZERO) {
            url.push_str("&connection_id=");
            url.push_str(&id.to_hex());
        }
        Ok(url)
    }

    /// The `http(s)://host:port` base of the server, for its HTTP endpoints.
    pub fn http_base(&self) -> Result<String, ConfigError> {
        let ws = websocket_base(&self.server_url).map_err(|reason| ConfigError { field: "server_url", reason })?;
        Ok(ws.replacen("ws", "http", 1))
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("ConnectionConfig")
            .field("server_url", &self.server_url)
            .field("database", &self.database)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("compression", &self.compression)
            .field("light_mode", &self.light_mode)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("dead_peer_timeout", &self.dead_peer_timeout)
            .field("identity_timeout", &self.identity_timeout)
            .field("proven_after", &self.proven_after)
            .field("schema_fetch", &self.schema_fetch)
            .field("outbound_capacity", &self.outbound_capacity)
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

/// A setting that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection setting `{field}`: {reason}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// `ws://host:port` or `wss://host:port` (no trailing slash) for a server URL.
fn websocket_base(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| format!("`{url}` has no scheme (http://, https://, ws://, wss://)"))?;
    let ws_scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(format!("scheme `{other}` is not http, https, ws or wss")),
    };
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(format!("`{url}` is not a server base URL like http://127.0.0.1:3000"));
    }
    Ok(format!("{ws_scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_derived_from_the_base() {
        let c = ConnectionConfig::new("http://127.0.0.1:3000/", "guildmaster");
        assert_eq!(
            c.subscribe_url().unwrap(),
            "ws://127.0.0.1:3000/v1/database/guildmaster/subscribe?compression=None&light=false"
        );
        let mut kept = c.clone();
        kept.connection_id = Some(spacetimedb_lib::ConnectionId::from_u128(0xabc));
        assert!(
            kept.subscribe_url().unwrap().ends_with("&connection_id=00000000000000000000000000000abc"),
            "{}",
            kept.subscribe_url().unwrap()
        );
        assert_eq!(c.http_base().unwrap(), "http://127.0.0.1:3000");
        let c = ConnectionConfig::new("wss://example.com", "x");
        assert_eq!(c.http_base().unwrap(), "https://example.com");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let mut c = ConnectionConfig::new("ftp://x", "db");
        assert_eq!(c.validate().unwrap_err().field, "server_url");
        c.server_url = "http://x".into();
        c.dead_peer_timeout = c.heartbeat_interval;
        assert_eq!(c.validate().unwrap_err().field, "dead_peer_timeout");
        let c = ConnectionConfig::new("http://x", "");
        assert_eq!(c.validate().unwrap_err().field, "database");
        assert!(ConnectionConfig::new("http://x", "db").validate().is_ok());
    }

    #[test]
    fn tls_urls_need_the_tls_feature() {
        for url in ["wss://example.com", "https://example.com"] {
            let result = ConnectionConfig::new(url, "db").validate();
            if cfg!(feature = "tls") {
                assert!(result.is_ok(), "{url}: {result:?}");
            } else {
                let err = result.unwrap_err();
                assert_eq!(err.field, "server_url");
                assert!(err.reason.contains("`tls` feature"), "{}", err.reason);
            }
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut c = ConnectionConfig::new("http://x", "db");
        c.token = Some("secret-token".into());
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
