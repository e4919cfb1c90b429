//! A running client moved to another server and database, and back, against
//! the real server: a profile switch without a new client. The second target
//! is a second database of the same module, reached through the fault proxy,
//! so that both the server's address and the database change.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use actix::prelude::*;
use common::guildmaster::*;
use common::proxy::FaultProxy;
use common::*;
use spacelink::connection::lib::Identity;
use spacelink::settings::SettingsLoader;
use spacelink::watcher::{ProfileError, SettingsEvent, SettingsWatcher, SwitchProfile};
use spacelink::{Client, ConnectionConfig, Event, RowEventKind, SwitchError};

/// Publishes the module once more as `database` (empty), through the xtask that runs the tests.
fn publish_second_database(database: &str) {
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    let out = Command::new(xtask)
        .args(["module", "publish", "--clear", "--dir", &dir, "--database", database])
        .output()
        .unwrap();
    assert!(out.status.success(), "publishing {database}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Ticks until the next `Connected`, returning its identity.
fn next_connected(client: &mut Client, what: &str) -> Identity {
    let mut identity = None;
    tick_until(client, 20, what, |_, events| {
        for e in events {
            if let Event::Connected { identity: id, .. } = e {
                identity = Some(*id);
            }
        }
        identity.is_some()
    });
    identity.unwrap()
}

/// Joins as `name` and ticks until our player's row is in the table.
fn join(client: &mut Client, name: &str) {
    let players = client.table::<Player>("player");
    let mut call = client.reducers().call("join", &JoinArgs { name: name.into(), map_id: 1 });
    let mut answered = false;
    tick_until(client, 20, "the join and its row", |_, _| {
        if let Some(result) = call.try_result() {
            result.unwrap();
            answered = true;
        }
        answered && players.iter().any(|p| p.name == name)
    });
}

#[test]
#[ignore = "e2e: needs a real server, SPACELINK_SERVER_DIR and SPACELINK_XTASK_BIN (cargo xtask test)"]
fn e2e_a_game_switches_its_running_client_to_another_server_and_database_and_back() {
    let (url, db) = server();
    let other_db = format!("{db}-profile-b");
    publish_second_database(&other_db);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(FaultProxy::start(upstream())).unwrap();

    let mut client =
        Client::builder().with_uri(&url).with_database(&db).subscribe(&["SELECT * FROM player"]).build().unwrap();
    let players = client.table::<Player>("player");
    let first = next_connected(&mut client, "connected to the first database");
    let name_a = format!("switch-a-{}", std::process::id());
    join(&mut client, &name_a);

    // A database that does not exist is refused before anything changes.
    let before = runtime.block_on(client.connection().status()).unwrap().generation;
    let mut refused = client.switch_to(ConnectionConfig::new(&url, "no-such-database-here"));
    let mut answer = None;
    tick_until(&mut client, 30, "the refused switch's answer", |_, _| {
        answer = refused.try_result();
        answer.is_some()
    });
    assert!(matches!(answer, Some(Err(SwitchError::Schema(_)))), "{answer:?}");
    assert_eq!(runtime.block_on(client.connection().status()).unwrap().generation, before, "no reconnect");

    // The other database, on another address: a new identity (its own
    // credential entry), and the cache follows it: our row of the first
    // database is deleted, with its event.
    let mut switching = client.switch_to(ConnectionConfig::new(proxy.url(), &other_db));
    let mut switched = false;
    let mut identity = None;
    let mut deleted = false;
    tick_until(&mut client, 30, "the switch, the new session and the cache reconciled", |_, events| {
        if let Some(result) = switching.try_result() {
            result.unwrap();
            switched = true;
        }
        for e in events {
            match e {
                Event::Connected { identity: id, .. } => identity = Some(*id),
                Event::Row(row) if row.table.as_ref() == "player" && row.kind == RowEventKind::Delete => {
                    let gone = spacelink::connection::sats::bsatn::from_slice::<Player>(row.row.bytes());
                    deleted |= gone.is_ok_and(|p| p.name == name_a);
                }
                _ => {}
            }
        }
        switched && identity.is_some() && !players.iter().any(|p| p.name == name_a)
    });
    let second = identity.unwrap();
    assert_ne!(second, first, "the other database's entry had no token: a new identity");
    assert!(deleted, "the first database's row left the cache with a delete event");
    let name_b = format!("switch-b-{}", std::process::id());
    join(&mut client, &name_b);
    assert!(proxy.accepted() >= 1, "the second target was reached through its own address");

    // Back: the first entry's stored token, so the first identity, and the first database's rows.
    let mut back = client.switch_to(ConnectionConfig::new(&url, &db));
    let again = next_connected(&mut client, "connected to the first database again");
    assert_eq!(again, first, "the stored token of the first entry");
    tick_until(&mut client, 30, "the first database's rows back", |_, _| {
        players.iter().any(|p| p.name == name_a) && !players.iter().any(|p| p.name == name_b)
    });
    assert!(matches!(back.try_result(), Some(Ok(()))));
    client.shutdown();
}

struct Tap(std_mpsc::Sender<SettingsEvent>);

impl Actor for Tap {
    type Context = Context<Self>;
}

impl Handler<SettingsEvent> for Tap {
    type Result = ();
    fn handle(&mut self, msg: SettingsEvent, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

#[actix::test]
#[ignore = "e2e: needs a real server, SPACELINK_SERVER_DIR and SPACELINK_XTASK_BIN (cargo xtask test)"]
async fn e2e_a_settings_profile_names_another_database_and_the_watcher_switches_to_it() {
    let (url, db) = server();
    let other_db = format!("{db}-profile-s");
    publish_second_database(&other_db);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacelink.toml");
    std::fs::write(
        &path,
        format!(
            "[default.connection]\nserver_url = \"{url}\"\ndatabase = \"{db}\"\n[default.auth]\nstore = \"memory\"\n\
             [staging.connection]\ndatabase = \"{other_db}\"\nheartbeat_interval = \"300ms\"\n\
             [production.connection]\ndatabase = \"{other_db}\"\n[production.sync]\nmax_retries = 9\n"
        ),
    )
    .unwrap();
    let loader = SettingsLoader::new().env_prefix(None).file(&path);
    let settings = loader.load().unwrap();
    let (listeners, mut events) = collecting_listeners();
    let client = build(settings.spacelink_config().unwrap(), listeners, Default::default()).await;
    let first = events.connected().await;
    let (tx, rx) = std_mpsc::channel();
    let tap = Tap(tx).start().recipient();

    // Without a switcher, another database needs a restart, and says so.
    let plain = SettingsWatcher::new(
        loader.clone(),
        settings.clone(),
        client.connection().clone(),
        Duration::from_secs(3600),
        vec![tap.clone()],
    )
    .start();
    let refused = plain.send(SwitchProfile("staging".into())).await.unwrap();
    assert!(
        matches!(&refused, Err(ProfileError::NeedsRestart(e, _)) if e.field == "connection.database"),
        "{refused:?}"
    );

    let watcher =
        SettingsWatcher::new(loader, settings, client.connection().clone(), Duration::from_secs(3600), vec![tap])
            .switching(client.switcher())
            .start();
    // A profile that also changes a setting fixed at start is refused, naming it; nothing moves.
    let refused = watcher.send(SwitchProfile("production".into())).await.unwrap();
    assert!(matches!(&refused, Err(ProfileError::NeedsRestart(e, _)) if e.field == "sync"), "{refused:?}");
    assert_eq!(client.connection().status().await.unwrap().generation, first);

    watcher.send(SwitchProfile("staging".into())).await.unwrap().unwrap();
    let switched =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10))).await.unwrap().unwrap();
    let SettingsEvent::Switched(now) = switched else { panic!("a Switched event, got {switched:?}") };
    assert_eq!(now.connection.database, other_db);
    let second = events.connected().await;
    assert!(second > first);
    let status = client.connection().status().await.unwrap();
    assert_eq!(status.generation, second);
    // The profile's own heartbeat runs on the new session.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = client.connection().status().await.unwrap();
    let age = status.last_heartbeat.unwrap_or_else(|| panic!("{status:?}")).elapsed().unwrap_or_default();
    assert!(age < Duration::from_secs(1), "heartbeats every 300 ms: the last pong was {age:?} ago");
    client.shutdown();
}
