//! Hot reload: a small actor that polls the settings file and applies the
//! settings that can change live to the running actors, by message.
//!
//! A change to a setting that cannot change live (the server, the database…)
//! is refused, saying that a restart or a profile switch is needed; a file
//! that does not load is reported and the running settings stay.

use std::time::{Duration, SystemTime};

use actix::prelude::*;
use spacelink_connection::ConnectionHandle;

use crate::settings::{Settings, SettingsError, SettingsLoader};

/// What the watcher tells.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SettingsEvent {
    /// New settings were applied to the running actors.
    Applied(Box<Settings>),
    /// The new settings were refused (invalid, or not changeable live); the old ones stay.
    Refused(SettingsError),
}

/// Switch to another profile at run time: its live settings are applied; if
/// it names another server or database, the answer says a restart is needed
/// and gives the settings to restart with.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), SwitchError>")]
pub struct SwitchProfile(pub String);

/// Why a profile switch did not happen in place.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SwitchError {
    /// The profile's settings do not load.
    #[error(transparent)]
    Invalid(SettingsError),
    /// The profile needs a new client: start one with these settings.
    #[error("{0}; restart with the new profile's settings")]
    NeedsRestart(SettingsError, Box<Settings>),
}

/// Polls the settings file and reconfigures the running actors.
#[derive(Debug)]
pub struct SettingsWatcher {
    loader: SettingsLoader,
    current: Settings,
    connection: ConnectionHandle,
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
        Self { loader, current, connection, poll, stamp, listeners }
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
        let (old_c, new_c) = match (self.current.connection_config(), new.connection_config()) {
            (Ok(old), Ok(new)) => (old, new),
            (_, Err(e)) | (Err(e), _) => return self.refused(e),
        };
        if let Err(e) = old_c.check_live_change(&new_c) {
            return self.refused(SettingsError { field: format!("connection.{}", e.field), reason: e.reason });
        }
        if let Some(field) = fixed_change(&self.current, &new) {
            return self.refused(SettingsError {
                field: field.into(),
                reason: "cannot change while the client runs: restart it or switch profiles".into(),
            });
        }
        let connection = self.connection.clone();
        ctx.spawn(async move { connection.reconfigure(new_c).await.map(|()| new) }.into_actor(self).map(
            |result, act, _| match result {
                Ok(new) => {
                    tracing::info!("settings reloaded");
                    act.current = new.clone();
                    act.tell(SettingsEvent::Applied(Box::new(new)));
                }
                Err(e) => act.refused(SettingsError { field: "connection".into(), reason: e.to_string() }),
            },
        ));
    }
}

/// A setting outside the connection that is read only at start.
fn fixed_change(old: &Settings, new: &Settings) -> Option<&'static str> {
    if old.reducers != new.reducers {
        return Some("reducers");
    }
    if old.auth.store != new.auth.store || old.auth.credentials_file != new.auth.credentials_file {
        return Some("auth.store");
    }
    None
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
    type Result = Result<(), SwitchError>;

    fn handle(&mut self, msg: SwitchProfile, ctx: &mut Self::Context) -> Self::Result {
        let loader = self.loader.clone().profile(msg.0);
        let new = loader.load().map_err(SwitchError::Invalid)?;
        let (old_c, new_c) = (
            self.current.connection_config().map_err(SwitchError::Invalid)?,
            new.connection_config().map_err(SwitchError::Invalid)?,
        );
        if let Err(e) = old_c.check_live_change(&new_c) {
            let e = SettingsError { field: format!("connection.{}", e.field), reason: e.reason };
            return Err(SwitchError::NeedsRestart(e, Box::new(new)));
        }
        self.loader = loader;
        self.apply(ctx, new);
        Ok(())
    }
}
