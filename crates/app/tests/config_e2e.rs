//! Hot reload against the real server: a settings file edited while the
//! client runs changes the live connection's heartbeat interval, and a change
//! of database is refused, saying a restart is needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use spacelink::settings::SettingsLoader;
use spacelink::watcher::{SettingsEvent, SettingsWatcher};
use spacelink::Spacelink;
use tokio::sync::mpsc;

struct Tap(mpsc::UnboundedSender<SettingsEvent>);

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<SettingsEvent> for Tap {
    type Result = ();
    fn handle(&mut self, msg: SettingsEvent, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

fn settings_file(server: &str, db: &str, heartbeat: &str) -> String {
    format!(
        "[default.connection]\nserver_url = \"{server}\"\ndatabase = \"{db}\"\nheartbeat_interval = \"{heartbeat}\"\n\
         dead_peer_timeout = \"30s\"\n[default.auth]\nstore = \"memory\"\n"
    )
}

/// Distinct pong times seen while sampling the status for `window`.
async fn pongs_during(app: &Spacelink, window: Duration) -> usize {
    let mut seen = HashSet::new();
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        if let Some(at) = app.connection.status().await.unwrap().last_heartbeat {
            seen.insert(at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.len()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<SettingsEvent>) -> SettingsEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a settings event in time").unwrap()
}

#[actix::test]
#[ignore = "e2e: needs the test server (cargo xtask test)"]
async fn config_an_edited_file_changes_the_live_heartbeat_interval() {
    let (server, db) = common::server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    std::fs::write(&path, settings_file(&server, &db, "10s")).unwrap();
    let loader = SettingsLoader::new().env_prefix(None).file(&path);
    let settings = loader.load().unwrap();
    let mut config = settings.spacelink_config().unwrap();
    config.fetch_schema = false;
    let (listeners, mut events) = common::collecting_listeners();
    let app = Spacelink::start_with(config, listeners, Default::default()).unwrap();
    let generation = events.connected().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = SettingsWatcher::new(
        loader,
        settings,
        app.connection.clone(),
        Duration::from_millis(100),
        vec![Tap(tx).start().recipient()],
    )
    .start();

    // A heartbeat every 10 s: hardly a pong in three seconds.
    assert!(pongs_during(&app, Duration::from_secs(3)).await <= 1);

    std::fs::write(&path, settings_file(&server, &db, "200ms")).unwrap();
    let SettingsEvent::Applied(applied) = next(&mut rx).await else { panic!("the new heartbeat is applied") };
    assert_eq!(applied.connection.heartbeat_interval, Duration::from_millis(200));
    // Every 200 ms now: many pongs in three seconds, on the same session.
    let pongs = pongs_during(&app, Duration::from_secs(3)).await;
    assert!(pongs >= 5, "{pongs} pongs");
    assert_eq!(app.connection.status().await.unwrap().generation, generation, "no reconnect");

    // Another database cannot be switched to live.
    std::fs::write(&path, settings_file(&server, "another_db", "200ms")).unwrap();
    let SettingsEvent::Refused(e) = next(&mut rx).await else { panic!("a database change is refused") };
    assert_eq!(e.field, "connection.database");
    assert!(e.reason.contains("restart"), "{}", e.reason);
    // A broken file is refused too, naming the field, and the running settings stay.
    std::fs::write(&path, settings_file(&server, &db, "-5s")).unwrap();
    let SettingsEvent::Refused(e) = next(&mut rx).await else { panic!("a bad file is refused") };
    assert_eq!(e.field, "connection.heartbeat_interval");
    assert!(pongs_during(&app, Duration::from_secs(1)).await >= 2);
    drop(watcher);
    app.shutdown();
}
