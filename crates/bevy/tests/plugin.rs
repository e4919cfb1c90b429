//! The plugin without a server (these run in `cargo test`, not only in the
//! end-to-end phase): starting never blocks a frame, the client and its status
//! are there from the first frame, calls queue while offline, settings come
//! from a file and profile, and a hot-reloaded file's live edit reaches the
//! running client as a `SettingsChanged` message.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bevy_app::{App, Update};
use bevy_ecs::prelude::*;
use spacelink::prediction::{PredictionConfig, Walk};
use spacelink::prediction_link::PredictedEntity;
use spacelink::settings::SettingsLoader;
use spacelink::watcher::SettingsEvent;
use spacelink::ConnectionState;
use spacelink_bevy::prelude::*;
use spacelink_bevy::{SettingsWatching, SpacelinkSubscriptions, SubscriptionKeys};

/// A port nothing listens on.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn settings_file(server: &str, heartbeat: &str) -> String {
    format!(
        "[default.connection]\nserver_url = \"{server}\"\ndatabase = \"nowhere\"\nheartbeat_interval = \"{heartbeat}\"\ndead_peer_timeout = \"30s\"\n\
         [default.auth]\nstore = \"memory\"\n[staging.connection]\nheartbeat_interval = \"3s\"\n"
    )
}

#[derive(spacelink::connection::lib::ser::Serialize)]
#[sats(crate = spacelink::connection::lib)]
struct Join {
    name: String,
    map_id: u32,
}

#[derive(Resource, Default)]
struct Calls(Vec<u64>);

fn call_every_frame(spacelink: Spacelink<'_>, mut calls: ResMut<'_, Calls>) {
    if let Some(call) = spacelink.call("join", &Join { name: "ada".into(), map_id: 1 }) {
        calls.0.push(call.ticket());
    }
}

/// Swaps the keyed sets once: `all` dropped, `some` asked for.
fn resubscribe(mut subscriptions: SpacelinkSubscriptions<'_>, mut done: Local<'_, bool>) {
    if !*done {
        subscriptions.unsubscribe("all");
        assert!(subscriptions.subscribe("some", &["SELECT * FROM thing WHERE id = 1"]));
        *done = true;
    }
}

#[test]
fn frames_never_wait_for_a_server_that_is_not_there() {
    let builder = spacelink::Client::builder().with_uri(nowhere()).with_database("nowhere");
    let mut app = App::new();
    app.add_plugins(SpacelinkPlugin::new(builder))
        .subscribe_keyed("all", &["SELECT * FROM thing"])
        .init_resource::<Calls>()
        .add_systems(Update, call_every_frame);
    let started = Instant::now();
    for _ in 0..30 {
        app.update();
    }
    assert!(started.elapsed() < Duration::from_secs(2), "30 frames took {:?}", started.elapsed());
    assert!(app.world().contains_resource::<SpacelinkClient>(), "the client is there from the first frame");
    let status = app.world().resource::<SpacelinkStatus>();
    assert!(!status.is_active());
    assert_ne!(status.state, ConnectionState::Connected);
    assert!(status.start_error.is_none());
    let keys = app.world().resource::<SubscriptionKeys>();
    let all = keys.id("all").expect("the keyed set is asked for at start");
    assert_eq!(keys.key(all), Some("all"));
    assert_eq!(app.world().resource::<Calls>().0.len(), 30, "a call per frame, queued while offline");
    app.add_systems(Update, resubscribe);
    app.update();
    let keys = app.world().resource::<SubscriptionKeys>();
    assert!(keys.id("all").is_none() && keys.key(all).is_none(), "`all` is dropped");
    assert!(keys.id("some").is_some_and(|id| id != all), "`some` is a new set");
    app.world().resource::<SpacelinkClient>().shutdown();
}

#[test]
fn settings_that_do_not_load_leave_no_client_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    std::fs::write(&path, settings_file(&nowhere(), "-5s")).unwrap();
    let mut app = App::new();
    app.add_plugins(SpacelinkPlugin::from_settings(SettingsLoader::new().env_prefix(None).file(&path)))
        .init_resource::<Calls>()
        .add_systems(Update, call_every_frame);
    app.update();
    assert!(!app.world().contains_resource::<SpacelinkClient>(), "{:?}", app.world().resource::<SpacelinkStatus>());
    let error = app.world().resource::<SpacelinkStatus>().start_error.clone().unwrap();
    assert!(error.contains("heartbeat_interval"), "{error}");
    assert!(app.world().resource::<Calls>().0.is_empty(), "no client, no call");
}

#[derive(Resource, Default)]
struct Heard(Vec<SettingsEvent>);

/// A predicted entity for a server that is never reached.
fn nobody(_: spacelink::connection::lib::Identity) -> PredictedEntity<Walk> {
    PredictedEntity {
        table: "thing".into(),
        reducer: "step".into(),
        read_row: std::sync::Arc::new(|_| None),
        encode_input: std::sync::Arc::new(|_, _| Default::default()),
    }
}

fn hear(mut heard: ResMut<'_, Heard>, mut changed: MessageReader<'_, '_, SettingsChanged>) {
    heard.0.extend(changed.read().map(|c| c.0.clone()));
}

#[test]
fn a_profile_is_read_and_a_hot_reloaded_live_edit_reaches_the_running_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    let server = nowhere();
    std::fs::write(&path, settings_file(&server, "1s")).unwrap();
    let loader = SettingsLoader::new().env_prefix(None).file(&path).profile("staging");
    let mut app = App::new();
    app.add_plugins(SpacelinkPlugin::from_settings(loader).hot_reload(Duration::from_millis(50)))
        .add_plugins(PredictionPlugin::new(Walk::default(), PredictionConfig::default(), nobody))
        .init_resource::<Heard>()
        .add_systems(Update, hear);
    app.update();
    let status = app.world().resource::<SpacelinkStatus>();
    assert!(app.world().contains_resource::<SpacelinkClient>(), "{:?}", status.start_error);
    assert!(app.world().contains_resource::<SettingsWatching>());

    // A live setting edited in the file (the default profile's, under `staging`'s own).
    std::thread::sleep(Duration::from_millis(1100)); // a new modification time, whatever the file system's resolution
    let edited =
        settings_file(&server, "1s").replace("\"3s\"", "\"2s\"") + "[default.prediction]\nsnap_threshold = 7.5\n";
    std::fs::write(&path, edited).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.world().resource::<Heard>().0.is_empty() {
        assert!(Instant::now() < deadline, "the edit was not applied");
        app.update();
        std::thread::sleep(Duration::from_millis(16));
    }
    match &app.world().resource::<Heard>().0[0] {
        SettingsEvent::Applied(settings) => {
            assert_eq!(settings.connection.heartbeat_interval, Duration::from_secs(2))
        }
        other => panic!("applied, not {other:?}"),
    }
    // The prediction's settings follow (the one running now, or the one that starts later).
    assert_eq!(app.world().resource::<LocalPrediction<Walk>>().config().snap_threshold, 7.5);
    app.world().resource::<SpacelinkClient>().shutdown();
}
