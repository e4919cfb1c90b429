//! Hot reload: a small actor that polls the settings file and applies the
//! settings that can change live to the running actors, by message: the
//! connection (heartbeat, timeouts, backoff, breaker), authentication (refresh
//! margins), the performance monitor (thresholds, windows, sampling) and the
//! predictions it was given (smoothing, snap threshold, input delay). Every
//! check runs before any actor is told, so a refused file changes nothing.
//!
//! A change to a setting that cannot change live (the server, the database…)
//! is refused, saying that a restart or a profile switch is needed; a file
//! that does not load is reported and the running settings stay.

use std::time::{Duration, SystemTime};

use actix::prelude::*;
use spacelink_auth::AuthHandle;
use spacelink_connection::ConnectionHandle;
use spacelink_prediction::ReconfigurePrediction;
use spacelink_telemetry::TelemetryHandle;

use crate::settings::{Settings, SettingsError, SettingsLoader};
use crate::switch::{SwitchError, Switcher};

/// What the watcher tells.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SettingsEvent {
    /// New settings were applied to the running actors.
    Applied(Box<Settings>),
    /// The new settings were refused (invalid, or not changeable live); the old ones stay.
    Refused(SettingsError),
    /// A profile switch moved the client to another server or database, and
    /// these settings (the profile's) now run.
    Switched(Box<Settings>),
}

/// Switch to another profile at run time: its live settings are applied, and
/// if it names another server or database, the client moves there in place
/// (given a [`Switcher`], see [`crate::switch`]); without one, the answer says
/// a restart is needed and gives the settings to restart with.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ProfileError>")]
pub struct SwitchProfile(pub String);

/// Why a profile switch did not happen (the running settings stay).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The profile's settings do not load, or a setting of it cannot change live.
    #[error(transparent)]
    Invalid(SettingsError),
    /// The profile needs a new client: start one with these settings.
    #[error("{0}; restart with the new profile's settings")]
    NeedsRestart(SettingsError, Box<Settings>),
    /// Moving to the profile's server or database failed.
    #[error(transparent)]
    Switch(#[from] SwitchError),
}

/// Polls the settings file and reconfigures the running actors.
#[derive(Debug)]
pub struct SettingsWatcher {
    loader: SettingsLoader,
    current: Settings,
    connection: ConnectionHandle,
    auth: Option<AuthHandle>,
    telemetry: Option<TelemetryHandle>,
    predictions: Vec<Recipient<ReconfigurePrediction>>,
    switcher: Option<Switcher>,
    poll: Duration,
    stamp: Option<(SystemTime, u64)>,
    listeners: Vec<Recipient<SettingsEvent>>,
}

impl SettingsWatcher {
    /// Watches `loader`'s file every `poll`, starting from `current` (what the client runs with).
    pub fn new(
        loader: SettingsLoader,
        current: Settings,
        connection: ConnectionHandle,
        poll: Duration,
        listeners: Vec<Recipient<SettingsEvent>>,
    ) -> Self {
        let stamp = loader.file_path().and_then(file_stamp);
        Self {
            loader,
            current,
            connection,
            auth: None,
            telemetry: None,
            predictions: Vec::new(),
            switcher: None,
            poll,
            stamp,
            listeners,
        }
    }

    /// Also applies `auth.*` changes to this auth actor.
    pub fn auth(mut self, auth: AuthHandle) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Also applies `telemetry.*` changes to this monitor.
    pub fn telemetry(mut self, telemetry: TelemetryHandle) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Also applies `prediction.*` changes to this prediction
    /// (`PredictionHandle::reconfigure_recipient`); call once per prediction.
    pub fn prediction(mut self, prediction: Recipient<ReconfigurePrediction>) -> Self {
        self.predictions.push(prediction);
        self
    }

    /// Lets [`SwitchProfile`] move the client to another server or database
    /// (`Client::switcher`).
    pub fn switching(mut self, switcher: Switcher) -> Self {
        self.switcher = Some(switcher);
        self
    }

    fn tell(&self, event: SettingsEvent) {
        for r in &self.listeners {
            r.do_send(event.clone());
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let stamp = self.loader.file_path().and_then(file_stamp);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match self.loader.load() {
            Ok(new) => self.apply(ctx, new),
            Err(e) => self.refused(e),
        }
    }

    fn refused(&self, e: SettingsError) {
        tracing::warn!(error = %e, "new settings refused; the running ones stay");
        self.tell(SettingsEvent::Refused(e));
    }

    /// Applies `new` if it changes only live settings.
    fn apply(&mut self, ctx: &mut Context<Self>, new: Settings) {
        if new == self.current {
            return;
        }
        let plan = match plan(&self.current, &new) {
            Ok(plan) => plan,
            Err(e) => return self.refused(e),
        };
        let (connection, auth, telemetry, predictions) =
            (self.connection.clone(), self.auth.clone(), self.telemetry.clone(), self.predictions.clone());
        let apply = async move {
            let failed =
                |field: &str, e: &dyn std::fmt::Display| SettingsError { field: field.into(), reason: e.to_string() };
            if let Some(c) = plan.connection {
                connection.reconfigure(c).await.map_err(|e| failed("connection", &e))?;
            }
            if let (Some(a), Some(auth)) = (plan.auth, &auth) {
                auth.reconfigure(a).await.map_err(|e| failed("auth", &e))?;
            }
            if let (Some(t), Some(telemetry)) = (plan.telemetry, &telemetry) {
                telemetry.reconfigure(t).await.map_err(|e| failed("telemetry", &e))?;
            }
            if let Some(p) = plan.prediction {
                for r in &predictions {
                    match r.send(ReconfigurePrediction(p.clone())).await {
                        Ok(Ok(())) | Err(_) => {} // a prediction that has stopped needs nothing
                        Ok(Err(e)) => return Err(failed("prediction", &e)),
                    }
                }
            }
            Ok(new)
        };
        ctx.spawn(apply.into_actor(self).map(|result, act, _| match result {
            Ok(new) => {
                tracing::info!("settings reloaded");
                act.current = new.clone();
                act.tell(SettingsEvent::Applied(Box::new(new)));
            }
            Err(e) => act.refused(e),
        }));
    }
}

/// Checks `new` against the running settings: what to tell whom, or why not.
fn plan(current: &Settings, new: &Settings) -> Result<Plan, SettingsError> {
    {
        let (old_c, new_c) = (current.connection_config()?, new.connection_config()?);
        if let Err(e) = old_c.check_live_change(&new_c) {
            return Err(SettingsError { field: format!("connection.{}", e.field), reason: e.reason });
        }
        if let Some(field) = fixed_change(current, new) {
            return Err(SettingsError {
                field: field.into(),
                reason: "cannot change while the client runs: restart it or switch profiles".into(),
            });
        }
        let (old_p, new_p) = (current.prediction_config()?, new.prediction_config()?);
        let (old_t, new_t) = (current.telemetry_config()?, new.telemetry_config()?);
        let new_a = new.auth_config();
        new_a.validate().map_err(|e| SettingsError { field: "auth".into(), reason: e.to_string() })?;
        Ok(Plan {
            connection: (new.connection != current.connection).then_some(new_c),
            auth: (new_a != current.auth_config()).then_some(new_a),
            telemetry: (new_t != old_t).then_some(new_t),
            prediction: (new_p != old_p).then_some(new_p),
        })
    }
}

/// The new configs of the subsystems whose settings changed.
#[derive(Debug)]
struct Plan {
    connection: Option<spacelink_connection::ConnectionConfig>,
    auth: Option<spacelink_auth::AuthConfig>,
    telemetry: Option<spacelink_telemetry::TelemetryConfig>,
    prediction: Option<spacelink_prediction::PredictionConfig>,
}

/// A setting outside the connection that is read only at start.
fn fixed_change(old: &Settings, new: &Settings) -> Option<&'static str> {
    let (p, q) = (&old.prediction, &new.prediction);
    let (t, u) = (&old.telemetry, &new.telemetry);
    [
        (old.reducers != new.reducers, "reducers"),
        (old.sync != new.sync, "sync"),
        (old.auth.store != new.auth.store || old.auth.credentials_file != new.auth.credentials_file, "auth.store"),
        (p.max_prediction_history != q.max_prediction_history, "prediction.max_prediction_history"),
        (p.overflow != q.overflow, "prediction.overflow"),
        (t.monitor != u.monitor, "telemetry.monitor"),
        (t.prometheus != u.prometheus, "telemetry.prometheus"),
    ]
    .into_iter()
    .find_map(|(changed, field)| changed.then_some(field))
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Actor for SettingsWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.poll, |act, ctx| act.poll(ctx));
    }
}

impl Handler<SwitchProfile> for SettingsWatcher {
    type Result = ResponseActFuture<Self, Result<(), ProfileError>>;

    fn handle(&mut self, msg: SwitchProfile, ctx: &mut Self::Context) -> Self::Result {
        let loader = self.loader.clone().profile(msg.0);
        let checked = (|| {
            let new = loader.load().map_err(ProfileError::Invalid)?;
            let (old_c, new_c) = (
                self.current.connection_config().map_err(ProfileError::Invalid)?,
                new.connection_config().map_err(ProfileError::Invalid)?,
            );
            let moves = old_c.check_live_change(&new_c).err();
            Ok((new, new_c, moves))
        })();
        let (new, new_c, moves) = match checked {
            Ok(checked) => checked,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let Some(moves) = moves else {
            // Same server and database: only live settings change.
            self.loader = loader;
            self.apply(ctx, new);
            return Box::pin(fut::ready(Ok(())));
        };
        let field = SettingsError { field: format!("connection.{}", moves.field), reason: moves.reason };
        let Some(switcher) = self.switcher.clone() else {
            return Box::pin(fut::ready(Err(ProfileError::NeedsRestart(field, Box::new(new)))));
        };
        // Everything but the connection must still be changeable live.
        let mut rest = new.clone();
        rest.connection = self.current.connection.clone();
        if let Err(e) = plan(&self.current, &rest) {
            return Box::pin(fut::ready(Err(ProfileError::NeedsRestart(e, Box::new(new)))));
        }
        tracing::info!(database = %new_c.database, server = %new_c.server_url, "profile switch to another target");
        Box::pin(async move { switcher.switch_to(new_c).await }.into_actor(self).map(move |result, act, ctx| {
            result?;
            act.loader = loader;
            // The connection runs the new profile's settings now; the rest follows as live changes.
            act.current.connection = new.connection.clone();
            act.tell(SettingsEvent::Switched(Box::new(new.clone())));
            act.apply(ctx, new);
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Settings {
        let mut s = Settings::default();
        s.connection.server_url = "http://127.0.0.1:3000".into();
        s.connection.database = "game".into();
        s
    }

    #[test]
    fn only_what_changed_is_told_and_fixed_settings_are_refused() {
        let now = running();
        let mut new = now.clone();
        new.prediction.reconciliation_smoothing_time = Duration::from_millis(80);
        new.telemetry.rules[0].raise = 400.0;
        let p = plan(&now, &new).unwrap();
        assert!(p.connection.is_none() && p.auth.is_none());
        assert_eq!(p.prediction.unwrap().reconciliation_smoothing_time, Duration::from_millis(80));
        assert_eq!(p.telemetry.unwrap().rules[0].raise, 400.0);

        let mut new = now.clone();
        new.connection.heartbeat_interval = Duration::from_millis(200);
        new.auth.refresh_margin = Duration::from_secs(5);
        let p = plan(&now, &new).unwrap();
        assert_eq!(p.connection.unwrap().heartbeat_interval, Duration::from_millis(200));
        assert_eq!(p.auth.unwrap().refresh_margin, Duration::from_secs(5));
        assert!(p.prediction.is_none() && p.telemetry.is_none());

        type Change = fn(&mut Settings);
        let fixed: [(Change, &str); 8] = [
            (|s| s.connection.database = "other".into(), "connection.database"),
            (|s| s.reducers.queue_capacity += 1, "reducers"),
            (|s| s.sync.max_retries += 1, "sync"),
            (|s| s.auth.store = "memory".into(), "auth.store"),
            (|s| s.prediction.max_prediction_history = 512, "prediction.max_prediction_history"),
            (|s| s.prediction.overflow = "reject_new".into(), "prediction.overflow"),
            (|s| s.telemetry.monitor = true, "telemetry.monitor"),
            (|s| s.telemetry.prometheus = Some("127.0.0.1:9898".parse().unwrap()), "telemetry.prometheus"),
        ];
        for (change, field) in fixed {
            let mut new = now.clone();
            change(&mut new);
            let err = plan(&now, &new).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let mut bad = now.clone();
        bad.prediction.snap_threshold = -1.0;
        assert_eq!(plan(&now, &bad).unwrap_err().field, "prediction.snap_threshold");
    }
}
