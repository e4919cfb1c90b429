//! [`SpacelinkPlugin`]: the client started without blocking, drained once per frame.
//!
//! The plugin is configured from a [`ClientBuilder`] or from a settings file
//! and profile ([`SettingsLoader`]; with [`SpacelinkPlugin::hot_reload`], edits
//! to the file's live settings reach the running client). In `PreStartup` it
//! builds the client, which returns at once (connecting, authenticating and
//! fetching the schema go on on the client's own thread), registers the tables
//! and keyed subscriptions the game asked for, and inserts [`SpacelinkClient`].
//!
//! Every frame, in `PreUpdate`, the public sets run in order:
//! [`SpacelinkSet::Drain`] calls [`Client::frame_tick`] once (the table
//! callbacks run there) and writes the [`crate::messages`] and the
//! [`SpacelinkStatus`] resource; [`SpacelinkSet::Rows`] writes the typed row
//! messages; [`SpacelinkSet::Mirror`] spawns, changes and despawns the mirrored
//! rows' entities. So whatever arrived is readable by `Update` systems in the
//! same frame. Nothing here waits for the network: a frame costs a queue drain.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bevy_app::{App, AppExit, Last, Plugin, PostUpdate, PreStartup, PreUpdate};
use bevy_ecs::prelude::*;
use spacelink::settings::SettingsLoader;
use spacelink::sync::{SubscriptionEvent, SubscriptionId};
use spacelink::{Client, ClientBuilder, Event, Status};

use crate::messages::*;
use crate::tables::Registration;

/// The plugin's systems, in the order they run each frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpacelinkSet {
    /// `PreUpdate`: the client's events drained into messages and the status resource.
    Drain,
    /// `PreUpdate`: the typed row messages of each registered table.
    Rows,
    /// `PreUpdate`: the mirrored rows' entities spawned, changed, despawned.
    Mirror,
    /// `FixedUpdate`: the local prediction stepped on the game's input
    /// (the game's input systems run before it).
    Predict,
    /// `PostUpdate`: the predicted state written for rendering.
    Present,
}

/// Where the client's configuration comes from.
enum Source {
    Builder(Box<ClientBuilder>),
    Settings { loader: SettingsLoader, hot_reload: Option<Duration> },
}

/// Connects a Bevy app to SpacetimeDB through spacelink.
///
/// ```no_run
/// use bevy_app::App;
/// use spacelink_bevy::{SpacelinkAppExt, SpacelinkPlugin};
/// # #[derive(spacelink::connection::lib::de::Deserialize, Clone)]
/// # #[sats(crate = spacelink::connection::lib)]
/// # struct Player { name: String }
///
/// let builder = spacelink::Client::builder().with_uri("http://127.0.0.1:3000").with_database("guildmaster");
/// App::new()
///     .add_plugins(SpacelinkPlugin::new(builder))
///     .mirror_table::<Player>("player")
///     .subscribe_keyed("players", &["SELECT * FROM player"])
///     .run();
/// ```
pub struct SpacelinkPlugin {
    source: Mutex<Option<Source>>,
}

impl std::fmt::Debug for SpacelinkPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpacelinkPlugin").finish_non_exhaustive()
    }
}

impl SpacelinkPlugin {
    /// A client built from `builder` (its callbacks run in `PreUpdate` too).
    pub fn new(builder: ClientBuilder) -> Self {
        Self { source: Mutex::new(Some(Source::Builder(Box::new(builder)))) }
    }

    /// A client built from the settings `loader` loads (a file, a profile, the
    /// environment), read when the client starts.
    pub fn from_settings(loader: SettingsLoader) -> Self {
        Self { source: Mutex::new(Some(Source::Settings { loader, hot_reload: None })) }
    }

    /// With settings: polls the file every `poll` and applies edits of its live
    /// settings to the running client ([`spacelink::watcher`]); refused edits
    /// are logged and change nothing. No effect for a builder.
    pub fn hot_reload(self, poll: Duration) -> Self {
        let mut source = self.source.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(Source::Settings { hot_reload, .. }) = &mut source {
            *hot_reload = Some(poll);
        }
        Self { source: Mutex::new(source) }
    }
}

impl Plugin for SpacelinkPlugin {
    fn build(&self, app: &mut App) {
        let source = self.source.lock().unwrap_or_else(|e| e.into_inner()).take();
        app.insert_resource(Start(Mutex::new(source)))
            .init_resource::<Registry>()
            .init_resource::<SubscriptionKeys>()
            .init_resource::<SpacelinkStatus>()
            .add_message::<SpacelinkEvent>()
            .add_message::<Connected>()
            .add_message::<Disconnected>()
            .add_message::<ConnectionStateChanged>()
            .add_message::<HealthChanged>()
            .add_message::<ReducerFinished>()
            .add_message::<SubscriptionApplied>()
            .add_message::<SubscriptionFailed>()
            .add_message::<PredictionChanged>()
            .add_message::<PerformanceAlerted>()
            .add_message::<crate::settings::SettingsChanged>()
            .configure_sets(PreUpdate, (SpacelinkSet::Drain, SpacelinkSet::Rows, SpacelinkSet::Mirror).chain())
            .configure_sets(PostUpdate, SpacelinkSet::Present)
            .add_systems(PreStartup, start)
            .add_systems(PreUpdate, drain.in_set(SpacelinkSet::Drain))
            .add_systems(Last, save_on_exit);
    }
}

/// The longest the app's exit waits for the cache on disk to be saved.
const EXIT_SAVE_WAIT: Duration = Duration::from_secs(3);

/// On `AppExit`: a client that keeps its cache on disk
/// (`ClientBuilder::with_disk_cache`) saves it before the process ends
/// (the exit waits for it, at most [`EXIT_SAVE_WAIT`]); then it shuts down.
fn save_on_exit(mut exits: MessageReader<'_, '_, AppExit>, client: Option<Res<'_, SpacelinkClient>>) {
    if exits.is_empty() {
        return;
    }
    exits.clear();
    let Some(client) = client else { return };
    let mut saving = client.0.save_cache();
    let until = std::time::Instant::now() + EXIT_SAVE_WAIT;
    while saving.try_result().is_none() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    client.0.shutdown();
}

/// The running client, from `PreStartup` on (absent if its settings did not
/// load: see [`SpacelinkStatus::start_error`]). `Client` is `Send + Sync`:
/// read its tables and status from any system.
#[derive(Resource, Debug)]
pub struct SpacelinkClient(pub Client);

impl std::ops::Deref for SpacelinkClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0
    }
}

/// The client's status as of this frame's drain: connection state, identity,
/// health, breaker, schema, each subscription (no `await`, no round trip).
#[derive(Resource, Debug, Clone, Default)]
pub struct SpacelinkStatus {
    /// The snapshot.
    pub status: Status,
    /// Why the client did not start (its settings did not load).
    pub start_error: Option<String>,
}

impl std::ops::Deref for SpacelinkStatus {
    type Target = Status;
    fn deref(&self) -> &Status {
        &self.status
    }
}

/// The plugin's configuration until `PreStartup` takes it.
#[derive(Resource)]
struct Start(Mutex<Option<Source>>);

/// What the game registered before the client started.
#[derive(Resource, Default)]
pub(crate) struct Registry {
    pub(crate) tables: Vec<Registration>,
    pub(crate) subscriptions: Vec<(String, Vec<String>)>,
}

/// The game's key of each live keyed query set.
#[derive(Resource, Debug, Default)]
pub struct SubscriptionKeys {
    pub(crate) by_id: HashMap<SubscriptionId, String>,
}

impl SubscriptionKeys {
    /// The set the game named `key`.
    pub fn id(&self, key: &str) -> Option<SubscriptionId> {
        self.by_id.iter().find(|(_, k)| k.as_str() == key).map(|(id, _)| *id)
    }

    /// The game's key of set `id`.
    pub fn key(&self, id: SubscriptionId) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }
}

/// Builds the client (at once: nothing waits for the network), then runs the registrations.
fn start(world: &mut World) {
    let source = world.get_resource::<Start>().and_then(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).take());
    let Some(source) = source else { return };
    let built = match source {
        Source::Builder(builder) => builder.build().map(|c| (c, None)).map_err(|e| e.to_string()),
        Source::Settings { loader, hot_reload } => from_settings(loader, hot_reload),
    };
    let client = match built {
        Ok((client, watching)) => {
            if let Some(watching) = watching {
                world.insert_resource(watching);
            }
            client
        }
        Err(error) => {
            tracing::error!(%error, "spacelink did not start");
            world.resource_mut::<SpacelinkStatus>().start_error = Some(error);
            return;
        }
    };
    let registry = std::mem::take(&mut *world.resource_mut::<Registry>());
    for register in registry.tables {
        register(&client, world);
    }
    let mut keys = world.resource_mut::<SubscriptionKeys>();
    for (key, queries) in registry.subscriptions {
        keys.by_id.insert(client.subscribe(&queries), key);
    }
    world.insert_resource(SpacelinkStatus { status: client.status(), start_error: None });
    world.insert_resource(SpacelinkClient(client));
}

/// The settings' client, and its watcher when hot reload is asked for.
fn from_settings(
    loader: SettingsLoader,
    hot_reload: Option<Duration>,
) -> Result<(Client, Option<crate::settings::SettingsWatching>), String> {
    let settings = loader.load().map_err(|e| e.to_string())?;
    let config = settings.spacelink_config().map_err(|e| e.to_string())?;
    let client = Client::builder().with_config(config).build().map_err(|e| e.to_string())?;
    let watching = hot_reload.map(|poll| crate::settings::watch(&client, loader, settings, poll));
    Ok((client, watching))
}

/// Drains the client once and writes what it told as messages.
fn drain(world: &mut World) {
    if !world.contains_resource::<SpacelinkClient>() {
        return;
    }
    world.resource_scope(|world, mut client: Mut<'_, SpacelinkClient>| {
        let events: Vec<Event> = client.0.frame_tick().to_vec();
        for event in events {
            write(world, &event);
            world.write_message(SpacelinkEvent(event));
        }
        let status = client.status();
        world.resource_mut::<SpacelinkStatus>().status = status;
    });
    crate::settings::report(world);
}

/// The typed message of one event, if it has one.
fn write(world: &mut World, event: &Event) {
    match event {
        Event::Connected { generation, identity, connection_id, token } => {
            world.write_message(Connected {
                generation: *generation,
                identity: *identity,
                connection_id: *connection_id,
                token: token.clone(),
            });
        }
        Event::Disconnected(d) => {
            world.write_message(Disconnected(d.clone()));
        }
        Event::StateChanged { from, to, reason } => {
            world.write_message(ConnectionStateChanged { from: *from, to: *to, reason: reason.clone() });
        }
        Event::HealthChanged(h) => {
            world.write_message(HealthChanged(h.clone()));
        }
        Event::ReducerResult { ticket, reducer, result } => {
            world.write_message(ReducerFinished { ticket: *ticket, reducer: reducer.clone(), result: result.clone() });
        }
        Event::Subscription(s) => subscription(world, s),
        Event::Prediction(p) => {
            world.write_message(PredictionChanged(p.clone()));
        }
        Event::Alert(a) => {
            world.write_message(PerformanceAlerted(a.clone()));
        }
        _ => {}
    }
}

/// A keyed query set's news, under its key (sets without a key: [`SpacelinkEvent`] only).
fn subscription(world: &mut World, event: &SubscriptionEvent) {
    let keys = world.resource::<SubscriptionKeys>();
    match event {
        SubscriptionEvent::Applied { id } => {
            if let Some(key) = keys.key(*id).map(str::to_string) {
                world.write_message(SubscriptionApplied { key });
            }
        }
        SubscriptionEvent::Failed { id, error, retrying } => {
            if let Some(key) = keys.key(*id).map(str::to_string) {
                world.write_message(SubscriptionFailed { key, error: error.clone(), retrying: *retrying });
            }
        }
        SubscriptionEvent::Removed { id } | SubscriptionEvent::Cancelled { id } => {
            let id = *id;
            world.resource_mut::<SubscriptionKeys>().by_id.remove(&id);
        }
        // The cache is being reconciled; `Applied` follows.
        SubscriptionEvent::Resubscribing { .. } => {}
    }
}
