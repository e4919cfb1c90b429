//! `with_persistent_identity`: a player's identity survives a restart of the
//! game's process. The test runs the game twice, as two child processes of
//! its own (this binary, running `child_game_reports_its_identity`), with
//! the user's data directory pointed at a temporary one: the second run gets
//! the first run's identity from the store chosen (here: the owner-only file
//! in the data directory when no Secret Service runs; else the OS keyring).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::server;
use spacelink::auth::CredentialKey;
use spacelink::credentials::persistent_store;
use spacelink::{Client, Event};

const APP: &str = "spacelink-identity-test";
const CHILD: &str = "SPACELINK_IDENTITY_CHILD";

/// One run of the game: connects, waits until its token is stored, prints
/// its identity and the store's kind, and exits. Only as a child of the test below.
#[test]
#[ignore = "e2e: needs a real server (cargo xtask test); a child of the test below"]
fn child_game_reports_its_identity() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (url, db) = server();
    let mut client = Client::builder().with_uri(&url).with_database(&db).with_persistent_identity(APP).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let identity = loop {
        let connected = client.frame_tick().iter().find_map(|e| match e {
            Event::Connected { identity, .. } => Some(*identity),
            _ => None,
        });
        if let Some(identity) = connected {
            break identity;
        }
        assert!(Instant::now() < deadline, "no identity");
        std::thread::sleep(Duration::from_millis(16));
    };
    let chosen = persistent_store(APP);
    let key = CredentialKey::new(&url, &db);
    while chosen.store.load(&key).unwrap().is_none() {
        assert!(Instant::now() < deadline, "the token was never stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("IDENTITY={} STORE={}", identity.to_hex(), chosen.chosen.kind());
    client.shutdown();
}

fn run_the_game(data: &std::path::Path) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_game_reports_its_identity", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("XDG_DATA_HOME", data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the game failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // libtest may print the test's name on the same line.
    let line = stdout.lines().find_map(|l| l.split_once("IDENTITY=").map(|(_, rest)| rest));
    let line = line.unwrap_or_else(|| panic!("no identity line in:\n{stdout}"));
    let (identity, store) = line.split_once(" STORE=").unwrap();
    (identity.to_string(), store.to_string())
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_the_identity_survives_a_restart_of_the_game() {
    let data = tempfile::tempdir().unwrap();
    let (first, store) = run_the_game(data.path());
    let (second, store_again) = run_the_game(data.path());
    assert_eq!(first, second, "a new identity after a restart");
    assert_eq!(store, store_again);
    let file = data.path().join(APP).join("credentials.json");
    if store == "file" {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(file.parent().unwrap()), 0o700);
        }
    } else {
        assert_eq!(store, "keyring");
        assert!(!file.exists(), "the keyring was chosen: no file");
    }
}
