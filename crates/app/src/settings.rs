//! One typed configuration for every subsystem, layered: defaults < a TOML
//! file < environment variables < code (figment), with named profiles and
//! validation that names the bad field. Only `app` reads files and the
//! environment; the subsystem crates get their typed configs.
//!
//! ```toml
//! [default.connection]
//! server_url = "http://127.0.0.1:3000"
//! database = "guildmaster"
//! heartbeat_interval = "1s"      # durations: "250ms", "2s", "1m", or seconds
//!
//! [production.connection]
//! server_url = "https://stdb.example.com"
//! heartbeat_interval = "2s"
//! ```
//!
//! Environment: `SPACELINK_<SECTION>__<KEY>`, e.g.
//! `SPACELINK_CONNECTION__HEARTBEAT_INTERVAL=500ms` (variables without `__`,
//! like `SPACELINK_SERVER_URL`, are not configuration). The profile is
//! `default` unless chosen (`SPACELINK_PROFILE`, or in code). Tokens are never
//! configuration: a `token` key is refused like any unknown key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use spacelink_auth::AuthConfig;
use spacelink_connection::{Compression, ConnectionConfig};
use spacelink_prediction::{HistoryOverflow, PredictionConfig};
use spacelink_reducers::ReducerConfig;
use spacelink_sync::SyncConfig;
use spacelink_telemetry::{TelemetryConfig, ThresholdRule};

/// The profiles a file may hold (besides `default`, which all inherit).
pub const PROFILES: [&str; 4] = ["default", "local", "staging", "production"];

/// A setting that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{field}`: {reason}")]
pub struct SettingsError {
    /// The field, as a dotted path (`connection.heartbeat_interval`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl SettingsError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// Every subsystem's settings, as a file holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The connection.
    pub connection: ConnectionSettings,
    /// The reducer client.
    pub reducers: ReducerSettings,
    /// State synchronisation.
    pub sync: SyncSettings,
    /// Authentication.
    pub auth: AuthSettings,
    /// Client-side prediction (for the predictions the game starts).
    pub prediction: PredictionSettings,
    /// The performance monitor.
    pub telemetry: TelemetrySettings,
}

/// [`ConnectionConfig`]'s settings (see it for what each does and its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct ConnectionSettings {
    pub server_url: String,
    pub database: String,
    /// `auto` (the default), `none`, `brotli` or `gzip`.
    pub compression: String,
    pub light_mode: bool,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    #[serde(with = "duration")]
    pub dead_peer_timeout: Duration,
    pub outbound_capacity: usize,
    pub max_message_size: usize,
    /// PEM files of more root certificates to trust for `https://`/`wss://`
    /// (a private deployment's certificate authority); read when the
    /// connection's config is made. Default: none.
    pub extra_root_certificates: Vec<std::path::PathBuf>,
    pub retry: RetrySettings,
    pub breaker: BreakerSettings,
}

/// The retry policy's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct RetrySettings {
    pub max_attempts: u32,
    #[serde(with = "duration")]
    pub initial_delay: Duration,
    pub backoff_multiplier: f64,
    #[serde(with = "duration")]
    pub max_delay: Duration,
    pub jitter: f64,
}

/// The circuit breaker's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    #[serde(with = "duration")]
    pub open_duration: Duration,
    pub half_open_max_calls: u32,
}

/// [`ReducerConfig`]'s settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct ReducerSettings {
    pub max_args_size: usize,
    pub queue_capacity: usize,
    pub max_in_flight: usize,
}

/// [`SyncConfig`]'s settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct SyncSettings {
    pub max_retries: u32,
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// The tables that keep no rows, only tell their changes (`SyncConfig::events_only`).
    pub events_only: Vec<String>,
}

/// [`AuthConfig`]'s settings, and where credentials are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct AuthSettings {
    #[serde(with = "duration")]
    pub refresh_margin: Duration,
    #[serde(with = "duration")]
    pub min_refresh_delay: Duration,
    #[serde(with = "duration")]
    pub refresh_retry_delay: Duration,
    pub reconnect_on_refresh: bool,
    #[serde(with = "duration")]
    pub store_retry_interval: Duration,
    /// `auto` (the OS keyring if one works, else a file), `keyring`, `file` or `memory`.
    pub store: String,
    /// The credential file, for `auto` and `file` (default: under the user's data directory).
    pub credentials_file: Option<PathBuf>,
}

/// [`PredictionConfig`]'s settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct PredictionSettings {
    pub max_prediction_history: usize,
    /// `drop_oldest` or `reject_new`.
    pub overflow: String,
    #[serde(with = "duration")]
    pub reconciliation_smoothing_time: Duration,
    pub snap_threshold: f32,
    pub tolerance: f32,
    #[serde(with = "duration")]
    pub input_delay: Duration,
    #[serde(with = "duration")]
    pub frame_interval: Duration,
}

/// [`TelemetryConfig`]'s settings, and whether the monitor runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct TelemetrySettings {
    /// Start the performance monitor (default: no). It installs the process's
    /// `metrics` recorder, so one client per process can have it.
    pub monitor: bool,
    pub enabled: bool,
    #[serde(with = "duration")]
    pub sampling_interval: Duration,
    #[serde(with = "duration")]
    pub window: Duration,
    #[serde(with = "duration")]
    pub retention: Duration,
    #[serde(with = "duration")]
    pub alert_window: Duration,
    /// The alert rules (default: [`ThresholdRule::defaults`]), as
    /// `rules = [{ metric = "latency_average", raise = 250.0, clear = 200.0 }]`.
    pub rules: Vec<ThresholdRule>,
    /// The Prometheus endpoint's loopback address, e.g. `"127.0.0.1:9898"` (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<std::net::SocketAddr>,
}

impl Default for PredictionSettings {
    fn default() -> Self {
        let p = PredictionConfig::default();
        Self {
            max_prediction_history: p.max_prediction_history,
            overflow: overflow_name(p.overflow).into(),
            reconciliation_smoothing_time: p.reconciliation_smoothing_time,
            snap_threshold: p.snap_threshold,
            tolerance: p.tolerance,
            input_delay: p.input_delay,
            frame_interval: p.frame_interval,
        }
    }
}

fn overflow_name(o: HistoryOverflow) -> &'static str {
    match o {
        HistoryOverflow::DropOldest => "drop_oldest",
        HistoryOverflow::RejectNew => "reject_new",
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        let t = TelemetryConfig::default();
        Self {
            monitor: false,
            enabled: t.enabled,
            sampling_interval: t.sampling_interval,
            window: t.window,
            retention: t.retention,
            alert_window: t.alert_window,
            rules: t.rules,
            prometheus: t.prometheus,
        }
    }
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        let c = ConnectionConfig::new("", "");
        Self {
            server_url: String::new(),
            database: String::new(),
            compression: c.compression.name().to_string(),
            light_mode: c.light_mode,
            connect_timeout: c.connect_timeout,
            heartbeat_interval: c.heartbeat_interval,
            dead_peer_timeout: c.dead_peer_timeout,
            outbound_capacity: c.outbound_capacity,
            max_message_size: c.limits.max_message_size,
            extra_root_certificates: Vec::new(),
            retry: RetrySettings {
                max_attempts: c.retry.max_attempts,
                initial_delay: c.retry.initial_delay,
                backoff_multiplier: c.retry.backoff_multiplier,
                max_delay: c.retry.max_delay,
                jitter: c.retry.jitter,
            },
            breaker: BreakerSettings {
                failure_threshold: c.breaker.failure_threshold,
                open_duration: c.breaker.open_duration,
                half_open_max_calls: c.breaker.half_open_max_calls,
            },
        }
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        ConnectionSettings::default().retry
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        ConnectionSettings::default().breaker
    }
}

impl Default for ReducerSettings {
    fn default() -> Self {
        let r = ReducerConfig::default();
        Self { max_args_size: r.max_args_size, queue_capacity: r.queue_capacity, max_in_flight: r.max_in_flight }
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        let s = SyncConfig::default();
        Self { max_retries: s.max_retries, retry_delay: s.retry_delay, events_only: s.events_only }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        let a = AuthConfig::default();
        Self {
            refresh_margin: a.refresh_margin,
            min_refresh_delay: a.min_refresh_delay,
            refresh_retry_delay: a.refresh_retry_delay,
            reconnect_on_refresh: a.reconnect_on_refresh,
            store_retry_interval: a.store_retry_interval,
            store: "auto".into(),
            credentials_file: None,
        }
    }
}

impl Settings {
    /// The connection's typed config, validated (errors name `connection.<field>`).
    pub fn connection_config(&self) -> Result<ConnectionConfig, SettingsError> {
        let s = &self.connection;
        if s.server_url.trim().is_empty() {
            return Err(SettingsError::new("connection.server_url", "is missing"));
        }
        let mut c = ConnectionConfig::new(&s.server_url, &s.database);
        c.compression = Compression::from_name(&s.compression).ok_or_else(|| {
            SettingsError::new(
                "connection.compression",
                format!("`{}` is not auto, none, brotli or gzip", s.compression),
            )
        })?;
        c.light_mode = s.light_mode;
        c.connect_timeout = s.connect_timeout;
        c.heartbeat_interval = s.heartbeat_interval;
        c.dead_peer_timeout = s.dead_peer_timeout;
        c.outbound_capacity = s.outbound_capacity;
        c.limits.max_message_size = s.max_message_size;
        for path in &s.extra_root_certificates {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                SettingsError::new("connection.extra_root_certificates", format!("{}: {e}", path.display()))
            })?;
            c.tls.extra_root_certificates.push(pem);
        }
        c.retry.max_attempts = s.retry.max_attempts;
        c.retry.initial_delay = s.retry.initial_delay;
        c.retry.backoff_multiplier = s.retry.backoff_multiplier;
        c.retry.max_delay = s.retry.max_delay;
        c.retry.jitter = s.retry.jitter;
        c.breaker.failure_threshold = s.breaker.failure_threshold;
        c.breaker.open_duration = s.breaker.open_duration;
        c.breaker.half_open_max_calls = s.breaker.half_open_max_calls;
        for (field, d) in [
            ("retry.initial_delay", c.retry.initial_delay),
            ("retry.max_delay", c.retry.max_delay),
            ("breaker.open_duration", c.breaker.open_duration),
        ] {
            if d.is_zero() {
                return Err(SettingsError::new(format!("connection.{field}"), "must be more than zero"));
            }
        }
        c.validate().map_err(|e| {
            // The settings name the files, not the config's nesting.
            let field = e.field.strip_prefix("tls.").unwrap_or(e.field);
            SettingsError::new(format!("connection.{field}"), e.reason)
        })?;
        Ok(c)
    }

    /// The prediction's typed config, validated (errors name `prediction.<field>`).
    pub fn prediction_config(&self) -> Result<PredictionConfig, SettingsError> {
        let p = &self.prediction;
        let overflow = match p.overflow.as_str() {
            "drop_oldest" => HistoryOverflow::DropOldest,
            "reject_new" => HistoryOverflow::RejectNew,
            other => {
                return Err(SettingsError::new(
                    "prediction.overflow",
                    format!("`{other}` is not drop_oldest or reject_new"),
                ))
            }
        };
        let config = PredictionConfig {
            max_prediction_history: p.max_prediction_history,
            overflow,
            reconciliation_smoothing_time: p.reconciliation_smoothing_time,
            snap_threshold: p.snap_threshold,
            tolerance: p.tolerance,
            input_delay: p.input_delay,
            frame_interval: p.frame_interval,
        };
        config.validate().map_err(|e| match e {
            spacelink_prediction::PredictionError::Config { field, reason } => {
                SettingsError::new(format!("prediction.{field}"), reason)
            }
            other => SettingsError::new("prediction", other.to_string()),
        })?;
        Ok(config)
    }

    /// The monitor's typed config, validated (errors name `telemetry.<field>`);
    /// whether it runs at all is `telemetry.monitor`.
    pub fn telemetry_config(&self) -> Result<TelemetryConfig, SettingsError> {
        let t = &self.telemetry;
        let config = TelemetryConfig {
            enabled: t.enabled,
            sampling_interval: t.sampling_interval,
            window: t.window,
            retention: t.retention,
            alert_window: t.alert_window,
            rules: t.rules.clone(),
            prometheus: t.prometheus,
            ..TelemetryConfig::default()
        };
        let named = |e: spacelink_telemetry::TelemetryError| match e {
            spacelink_telemetry::TelemetryError::Config { field, reason } => {
                SettingsError::new(format!("telemetry.{field}"), reason)
            }
            other => SettingsError::new("telemetry", other.to_string()),
        };
        config.validate().map_err(named)?;
        for rule in &config.rules {
            rule.validate().map_err(named)?;
        }
        if config.prometheus.is_some_and(|a| !a.ip().is_loopback()) {
            return Err(SettingsError::new(
                "telemetry.prometheus",
                "the endpoint is for this machine: give a loopback address (127.0.0.1 or ::1)",
            ));
        }
        Ok(config)
    }

    /// The auth actor's typed config.
    pub fn auth_config(&self) -> AuthConfig {
        let a = &self.auth;
        AuthConfig {
            refresh_margin: a.refresh_margin,
            min_refresh_delay: a.min_refresh_delay,
            refresh_retry_delay: a.refresh_retry_delay,
            reconnect_on_refresh: a.reconnect_on_refresh,
            store_retry_interval: a.store_retry_interval,
        }
    }

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let c = self.connection_config()?;
        self.prediction_config()?;
        self.telemetry_config()?;
        let r = &self.reducers;
        for (field, v) in [
            ("reducers.max_args_size", r.max_args_size),
            ("reducers.queue_capacity", r.queue_capacity),
            ("reducers.max_in_flight", r.max_in_flight),
        ] {
            if v == 0 {
                return Err(SettingsError::new(field, "must be at least 1"));
            }
        }
        if r.max_in_flight >= c.outbound_capacity {
            return Err(SettingsError::new(
                "reducers.max_in_flight",
                format!("{} must be below connection.outbound_capacity ({})", r.max_in_flight, c.outbound_capacity),
            ));
        }
        let a = &self.auth;
        for (field, d) in [
            ("sync.retry_delay", self.sync.retry_delay),
            ("auth.min_refresh_delay", a.min_refresh_delay),
            ("auth.refresh_retry_delay", a.refresh_retry_delay),
            ("auth.store_retry_interval", a.store_retry_interval),
        ] {
            if d.is_zero() {
                return Err(SettingsError::new(field, "must be more than zero"));
            }
        }
        if !["auto", "keyring", "file", "memory"].contains(&a.store.as_str()) {
            return Err(SettingsError::new(
                "auth.store",
                format!("`{}` is not auto, keyring, file or memory", a.store),
            ));
        }
        Ok(())
    }

    /// A [`crate::SpacelinkConfig`] from these settings (the credential store as `auth.store` says).
    pub fn spacelink_config(&self) -> Result<crate::SpacelinkConfig, SettingsError> {
        self.validate()?;
        let mut config = crate::SpacelinkConfig::new(self.connection_config()?);
        config.reducers.max_args_size = self.reducers.max_args_size;
        config.reducers.queue_capacity = self.reducers.queue_capacity;
        config.reducers.max_in_flight = self.reducers.max_in_flight;
        config.sync.max_retries = self.sync.max_retries;
        config.sync.retry_delay = self.sync.retry_delay;
        config.sync.events_only = self.sync.events_only.clone();
        let a = &self.auth;
        config.auth = self.auth_config();
        if self.telemetry.monitor {
            config.telemetry = Some(spacelink_telemetry::TelemetrySetup {
                config: self.telemetry_config()?,
                listeners: Default::default(),
            });
        }
        config.credentials = match a.store.as_str() {
            "memory" => None,
            "file" => Some(std::sync::Arc::new(crate::credentials::FileCredentialStore::new(
                a.credentials_file.clone().or_else(crate::credentials::default_credentials_file).ok_or_else(|| {
                    SettingsError::new("auth.credentials_file", "no user data directory here: name the file")
                })?,
            ))),
            "keyring" => Some(std::sync::Arc::new(crate::credentials::KeyringStore::default())),
            _ => Some(crate::credentials::default_store(a.credentials_file.clone())),
        };
        Ok(config)
    }

    /// The settings as TOML (what `spacelink config check` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Where settings come from: defaults < file < environment < code.
#[derive(Debug, Clone)]
pub struct SettingsLoader {
    file: Option<PathBuf>,
    env_prefix: Option<String>,
    profile: String,
    code: Vec<(String, toml::Value)>,
}

impl Default for SettingsLoader {
    fn default() -> Self {
        Self { file: None, env_prefix: Some("SPACELINK_".into()), profile: "default".into(), code: Vec::new() }
    }
}

impl SettingsLoader {
    /// Defaults, the environment (`SPACELINK_…__…`), no file, profile `default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this TOML file (it must exist).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The file, if any.
    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads variables with this prefix (`None`: not the environment at all).
    pub fn env_prefix(mut self, prefix: Option<&str>) -> Self {
        self.env_prefix = prefix.map(str::to_string);
        self
    }

    /// Selects a profile (`default`, `local`, `staging`, `production`).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = profile.into();
        self
    }

    /// The selected profile.
    pub fn profile_name(&self) -> &str {
        &self.profile
    }

    /// Sets `key` (a dotted path such as `connection.heartbeat_interval`) in code: wins over every source.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.code.push((key.to_string(), value.into()));
        self
    }

    /// The effective settings, validated; the error names the field.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        if !PROFILES.contains(&self.profile.as_str()) {
            return Err(SettingsError::new("profile", format!("`{}` is not one of {PROFILES:?}", self.profile)));
        }
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SettingsError::new("file", format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table =
                text.parse().map_err(|e: toml::de::Error| SettingsError::new("file", e.message().to_string()))?;
            for (key, value) in &table {
                if !PROFILES.contains(&key.as_str()) {
                    return Err(SettingsError::new(
                        key.clone(),
                        format!("is not a profile ({PROFILES:?}); put settings under [default.<section>]"),
                    ));
                }
                if !value.is_table() {
                    return Err(SettingsError::new(key.clone(), "must be a table of sections"));
                }
            }
            figment = figment.merge(Toml::string(&text).nested());
        }
        if let Some(prefix) = &self.env_prefix {
            figment = figment.merge(Env::prefixed(prefix).filter(|k| k.as_str().contains("__")).split("__").global());
        }
        for (key, value) in &self.code {
            figment = figment.merge(Serialized::global(key, value));
        }
        let settings: Settings = figment.select(self.profile.as_str()).extract().map_err(from_figment)?;
        settings.validate()?;
        Ok(settings)
    }
}

fn from_figment(e: figment::Error) -> SettingsError {
    let field = if e.path.is_empty() {
        match &e.kind {
            figment::error::Kind::UnknownField(name, _) => name.clone(),
            _ => "settings".into(),
        }
    } else {
        let mut path = e.path.join(".");
        if let figment::error::Kind::UnknownField(name, _) = &e.kind {
            if e.path.last() != Some(name) {
                path = format!("{path}.{name}");
            }
        }
        path
    };
    SettingsError { field, reason: e.kind.to_string() }
}

/// Durations as `"250ms"`, `"2s"`, `"1m 30s"` (humantime) or a number of seconds.
mod duration {
    use std::time::Duration;

    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"250ms\" or \"2s\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                if v.trim_start().starts_with('-') {
                    return Err(E::custom(format!("`{v}` is negative")));
                }
                humantime::parse_duration(v.trim()).map_err(|e| E::custom(format!("`{v}` is not a duration: {e}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v).map(Duration::from_secs).map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(|_| E::custom(format!("{v} is not a duration in seconds")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> Settings {
        let mut s = Settings::default();
        s.connection.server_url = "http://127.0.0.1:3000".into();
        s.connection.database = "guildmaster".into();
        s
    }

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spacelink.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load(text: &str) -> Result<Settings, SettingsError> {
        let (_dir, path) = file_with(text);
        SettingsLoader::new().env_prefix(None).file(&path).load()
    }

    const BASE: &str = "[default.connection]\nserver_url = \"http://127.0.0.1:3000\"\ndatabase = \"guildmaster\"\n";

    #[test]
    fn layers_and_profiles() {
        let text = format!(
            "{BASE}heartbeat_interval = \"2s\"\ndead_peer_timeout = \"6s\"\n[production.connection]\nserver_url = \"http://prod.example:3000\"\nheartbeat_interval = 3\n"
        );
        let s = load(&text).unwrap();
        assert_eq!(s.connection.heartbeat_interval, Duration::from_secs(2));
        let (_dir, path) = file_with(&text);
        let prod = SettingsLoader::new().env_prefix(None).file(&path).profile("production").load().unwrap();
        assert_eq!(prod.connection.server_url, "http://prod.example:3000");
        assert_eq!(prod.connection.database, "guildmaster", "profiles inherit default");
        assert_eq!(prod.connection.heartbeat_interval, Duration::from_secs(3));
        let code =
            SettingsLoader::new().env_prefix(None).file(&path).set("connection.heartbeat_interval", "250ms").load();
        assert_eq!(code.unwrap().connection.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(
            SettingsLoader::new().env_prefix(None).file(&path).profile("qa").load().unwrap_err().field,
            "profile"
        );
    }

    #[test]
    fn prediction_and_telemetry_from_a_file() {
        let text = format!(
            "{BASE}[default.prediction]\nreconciliation_smoothing_time = \"100ms\"\nsnap_threshold = 4.5\n\
             [default.telemetry]\nmonitor = true\nprometheus = \"127.0.0.1:9898\"\n\
             rules = [{{ metric = \"latency_p95\", raise = 300.0, clear = 150.0 }}, \
                      {{ metric = \"prediction_accuracy\", raise = 0.7, clear = 0.8, min_samples = 50 }}]\n"
        );
        let s = load(&text).unwrap();
        let p = s.prediction_config().unwrap();
        assert_eq!((p.reconciliation_smoothing_time, p.snap_threshold), (Duration::from_millis(100), 4.5));
        let t = s.spacelink_config().unwrap().telemetry.expect("monitor = true starts it").config;
        assert_eq!(t.prometheus, Some("127.0.0.1:9898".parse().unwrap()));
        assert_eq!(
            t.rules,
            [
                ThresholdRule::new(spacelink_telemetry::AlertMetric::LatencyP95, 300.0, 150.0),
                ThresholdRule {
                    min_samples: 50,
                    ..ThresholdRule::new(spacelink_telemetry::AlertMetric::PredictionAccuracy, 0.7, 0.8)
                },
            ]
        );
        // A rule whose hysteresis points the wrong way, an unknown metric, a misspelt key.
        for (rules, field) in [
            ("[{ metric = \"latency_average\", raise = 100.0, clear = 150.0 }]", "telemetry.rules"),
            ("[{ metric = \"fps\", raise = 1.0, clear = 1.0 }]", "telemetry.rules"),
            ("[{ metric = \"latency_average\", raise = 1.0, clear = 1.0, samples = 3 }]", "telemetry.rules"),
        ] {
            let err = load(&format!("{BASE}[default.telemetry]\nrules = {rules}\n")).unwrap_err();
            assert!(err.field.starts_with(field), "{rules}: {err}");
        }
    }

    #[test]
    fn events_only_tables_from_a_file() {
        let s = load(&format!("{BASE}[default.sync]\nevents_only = [\"chat_event\", \"hit\"]\n")).unwrap();
        assert_eq!(s.spacelink_config().unwrap().sync.events_only, ["chat_event", "hit"]);
        assert!(load(BASE).unwrap().spacelink_config().unwrap().sync.events_only.is_empty(), "default: none");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases = [
            ("heartbeat_interval = true\n", "connection.heartbeat_interval"),
            ("heartbeat_interval = \"-1s\"\n", "connection.heartbeat_interval"),
            ("heartbeat_interval = \"0s\"\n", "connection.heartbeat_interval"),
            ("connect_timeout = \"soon\"\n", "connection.connect_timeout"),
            ("token = \"secret\"\n", "connection.token"),
            ("compression = \"zip\"\n", "connection.compression"),
            ("dead_peer_timeout = \"500ms\"\n", "connection.dead_peer_timeout"),
        ];
        for (line, field) in cases {
            let err = load(&format!("{BASE}{line}")).unwrap_err();
            assert_eq!(err.field, field, "{line}: {err}");
        }
        assert_eq!(load("[default.connection]\ndatabase = \"x\"\n").unwrap_err().field, "connection.server_url");
        assert_eq!(load(&format!("{BASE}[default.nope]\nx = 1\n")).unwrap_err().field, "nope");
        assert_eq!(load(&format!("{BASE}[qa.connection]\n")).unwrap_err().field, "qa");
    }

    fn arb_settings() -> impl Strategy<Value = Settings> {
        (
            (
                prop::sample::select(if cfg!(feature = "tls") {
                    vec!["http://127.0.0.1:3000", "https://stdb.example.com", "ws://10.0.0.1:80"]
                } else {
                    vec!["http://127.0.0.1:3000", "http://stdb.example.com:3000", "ws://10.0.0.1:80"]
                }),
                "[a-z][a-z0-9_-]{0,20}",
            ),
            (
                1u64..5_000,
                1u64..20_000,
                1u64..60_000,
                prop::sample::select(vec!["auto", "none", "brotli", "gzip"]),
                any::<bool>(),
            ),
            (1usize..100_000, 1024usize..100_000_000),
            (0u32..20, 1u64..10_000, 1u64..100_000, 1.0f64..10.0, 0.0f64..=1.0),
            (1u32..50, 1u64..600_000, 1u32..10),
            (1usize..1_000_000, 1usize..1_000_000, 1usize..1_000_000, 0u32..10, 1u64..10_000),
            (
                0u64..600,
                1u64..60_000,
                1u64..60_000,
                any::<bool>(),
                1u64..600,
                prop::sample::select(vec!["auto", "keyring", "file", "memory"]),
            ),
            (0u64..2_000, 0.5f32..100.0, 0u64..200, any::<bool>(), 100u64..5_000, any::<bool>()),
        )
            .prop_map(|(server, conn, caps, retry, breaker, red, auth, live)| {
                let mut s = Settings::default();
                s.connection.server_url = server.0.into();
                s.connection.database = server.1;
                s.connection.connect_timeout = Duration::from_millis(conn.0);
                s.connection.heartbeat_interval = Duration::from_millis(conn.1);
                s.connection.dead_peer_timeout = Duration::from_millis(conn.1 + conn.2);
                s.connection.compression = conn.3.into();
                s.connection.light_mode = conn.4;
                s.connection.outbound_capacity = caps.0 + 1;
                s.connection.max_message_size = caps.1;
                s.connection.retry = RetrySettings {
                    max_attempts: retry.0,
                    initial_delay: Duration::from_millis(retry.1),
                    backoff_multiplier: retry.3,
                    max_delay: Duration::from_millis(retry.1 + retry.2),
                    jitter: retry.4,
                };
                s.connection.breaker = BreakerSettings {
                    failure_threshold: breaker.0,
                    open_duration: Duration::from_millis(breaker.1),
                    half_open_max_calls: breaker.2,
                };
                s.reducers =
                    ReducerSettings { max_args_size: red.0, queue_capacity: red.1, max_in_flight: 1 + red.2 % caps.0 };
                let events_only = (0..red.3 % 3).map(|i| format!("table_{i}")).collect();
                s.sync = SyncSettings { max_retries: red.3, retry_delay: Duration::from_millis(red.4), events_only };
                s.auth = AuthSettings {
                    refresh_margin: Duration::from_secs(auth.0),
                    min_refresh_delay: Duration::from_millis(auth.1),
                    refresh_retry_delay: Duration::from_millis(auth.2),
                    reconnect_on_refresh: auth.3,
                    store_retry_interval: Duration::from_secs(auth.4),
                    store: auth.5.into(),
                    credentials_file: None,
                };
                s.prediction.reconciliation_smoothing_time = Duration::from_millis(live.0);
                s.prediction.snap_threshold = live.1;
                s.prediction.input_delay = Duration::from_millis(live.2);
                s.prediction.overflow = if live.3 { "reject_new" } else { "drop_oldest" }.into();
                s.telemetry.sampling_interval = Duration::from_millis(live.4);
                s.telemetry.monitor = live.5;
                s
            })
    }

    /// `settings` as dotted keys and TOML values.
    fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }

    fn pairs(s: &Settings) -> Vec<(String, toml::Value)> {
        let mut out = Vec::new();
        flatten("", &toml::Value::try_from(s).unwrap(), &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        // Feature: spacetimedb-integration, Property 18: Configuration Management and Validation (any valid config round-trips through every source)
        #[test]
        fn prop_valid_settings_round_trip_through_every_source(s in arb_settings(), n in any::<u64>()) {
            prop_assert!(s.validate().is_ok(), "{:?}", s.validate());
            // The file.
            let text = toml::to_string(&toml::Table::from_iter([("default".to_string(), toml::Value::try_from(&s).unwrap())])).unwrap();
            prop_assert_eq!(&load(&text).unwrap(), &s);
            // Code.
            let mut loader = SettingsLoader::new().env_prefix(None);
            for (k, v) in pairs(&s) {
                loader = loader.set(&k, v);
            }
            prop_assert_eq!(&loader.load().unwrap(), &s);
            // The environment (a prefix of its own per case).
            let prefix = format!("SLPROP{n}_");
            // Alert rules (an array of tables) come from a file or code, not the environment.
            let mut from_env = s.clone();
            from_env.telemetry.rules = TelemetrySettings::default().rules;
            for (k, v) in pairs(&s).into_iter().filter(|(k, _)| k != "telemetry.rules") {
                let name = format!("{prefix}{}", k.replace('.', "__").to_ascii_uppercase());
                let text = match v { toml::Value::String(s) => s, other => other.to_string() };
                std::env::set_var(name, text);
            }
            prop_assert_eq!(&SettingsLoader::new().env_prefix(Some(&prefix)).load().unwrap(), &from_env);
        }

        // Feature: spacetimedb-integration, Property 19: Secure Configuration and Hot-Reloading (any invalid config is refused naming its field; no token in a config)
        #[test]
        fn prop_invalid_settings_are_refused_naming_the_field(s in arb_settings(), which in 0usize..16) {
            let (field, bad): (&str, toml::Value) = match which {
                0 => ("connection.heartbeat_interval", "0s".into()),
                1 => ("connection.connect_timeout", "-3s".into()),
                2 => ("connection.dead_peer_timeout", true.into()),
                3 => ("connection.token", "secret".into()),
                4 => ("connection.server_url", "".into()),
                5 => ("connection.compression", "zip".into()),
                6 => ("connection.retry.jitter", 1.5.into()),
                7 => ("connection.outbound_capacity", 0.into()),
                8 => ("auth.store", "cloud".into()),
                9 => ("sync.retry_delay", "0ms".into()),
                10 => ("reducers.max_in_flight", toml::Value::Integer(s.connection.outbound_capacity as i64)),
                12 => ("prediction.snap_threshold", 0.0.into()),
                13 => ("telemetry.sampling_interval", "0s".into()),
                14 => ("prediction.overflow", "keep".into()),
                15 => ("telemetry.prometheus", "10.0.0.1:9898".into()),
                _ => ("connection.retry.backoff_multiplier", "fast".into()),
            };
            let err = SettingsLoader::new().env_prefix(None);
            let mut loader = err;
            for (k, v) in pairs(&s) {
                loader = loader.set(&k, v);
            }
            let err = loader.set(field, bad).load().unwrap_err();
            prop_assert_eq!(err.field, field);
        }
    }

    #[test]
    fn defaults_are_the_subsystems_defaults() {
        let c = valid().spacelink_config().unwrap();
        let d = ConnectionConfig::new("http://127.0.0.1:3000", "guildmaster");
        assert_eq!(c.connection.heartbeat_interval, d.heartbeat_interval);
        assert_eq!(c.reducers, ReducerConfig::default());
        assert_eq!(c.auth, AuthConfig::default());
        assert!(c.telemetry.is_none(), "the monitor is opt-in");
        assert_eq!(valid().prediction_config().unwrap(), PredictionConfig::default());
        assert_eq!(valid().telemetry_config().unwrap(), TelemetryConfig::default());
        assert!(valid().to_toml().contains("heartbeat_interval = \"500ms\""), "{}", valid().to_toml());
    }
}
