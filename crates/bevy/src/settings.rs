//! Hot reload for a plugin configured from settings: spacelink's
//! [`SettingsWatcher`] polls the file on a small thread of its own (an actix
//! system: the watcher is an actor) and tells the running client's actors
//! through their handles; what it says reaches the game as [`SettingsChanged`]
//! messages in [`SpacelinkSet::Drain`](crate::SpacelinkSet::Drain). The thread
//! stops when the [`SettingsWatching`] resource is dropped.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use actix::{Actor, Context, Handler, System};
use bevy_ecs::prelude::*;
use spacelink::settings::{Settings, SettingsLoader};
use spacelink::watcher::{SettingsEvent, SettingsWatcher};
use spacelink::Client;

/// The settings file's live settings were applied, refused, or a profile switch ran.
#[derive(bevy_ecs::message::Message, Debug, Clone)]
pub struct SettingsChanged(pub SettingsEvent);

/// The settings watcher's thread, while the app holds it.
#[derive(Resource)]
pub struct SettingsWatching {
    events: Mutex<mpsc::Receiver<SettingsEvent>>,
    system: Option<System>,
}

impl std::fmt::Debug for SettingsWatching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsWatching").field("running", &self.system.is_some()).finish()
    }
}

impl Drop for SettingsWatching {
    fn drop(&mut self) {
        if let Some(system) = &self.system {
            system.stop();
        }
    }
}

/// Hands the watcher's events to the game's thread.
struct Forward(mpsc::Sender<SettingsEvent>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<SettingsEvent> for Forward {
    type Result = ();
    fn handle(&mut self, event: SettingsEvent, _: &mut Self::Context) {
        let _ = self.0.send(event);
    }
}

/// Starts watching `loader`'s file for `client` (running `current`).
pub(crate) fn watch(client: &Client, loader: SettingsLoader, current: Settings, poll: Duration) -> SettingsWatching {
    let (events, heard) = mpsc::channel();
    let (connection, auth, telemetry, switcher) =
        (client.connection().clone(), client.auth().clone(), client.telemetry().cloned(), client.switcher());
    let (started, system) = mpsc::channel();
    let thread = std::thread::Builder::new().name("spacelink-settings".into()).spawn(move || {
        let runner = System::new();
        runner.block_on(async move {
            let forward = Forward(events).start().recipient();
            let mut watcher =
                SettingsWatcher::new(loader, current, connection, poll, vec![forward]).auth(auth).switching(switcher);
            if let Some(telemetry) = telemetry {
                watcher = watcher.telemetry(telemetry);
            }
            watcher.start();
            let _ = started.send(System::current());
        });
        let _ = runner.run();
    });
    let system = match thread {
        // Only actor starts: microseconds, not the network or the file.
        Ok(_) => system.recv().ok(),
        Err(error) => {
            tracing::error!(%error, "the settings watcher did not start");
            None
        }
    };
    SettingsWatching { events: Mutex::new(heard), system }
}

/// Writes what the watcher said since the last frame.
pub(crate) fn report(world: &mut World) {
    let Some(watching) = world.get_resource::<SettingsWatching>() else { return };
    let said: Vec<SettingsEvent> = watching.events.lock().unwrap_or_else(|e| e.into_inner()).try_iter().collect();
    for event in said {
        world.write_message(SettingsChanged(event));
    }
}
