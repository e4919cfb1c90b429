//! The `spacelink` command against the real test server: `subscribe` on the
//! sync actor's merged cache (overlapping queries, cuts and restarts, a
//! connection that fails), and what `sql` prints accepted back by `call`.
//!
//! A test binary of its own: one scenario restarts the server, which would
//! disturb the other end-to-end tests running in parallel (cargo runs test
//! binaries one after another; inside this one, `serial()` orders them).
// `serial()` is held across awaits on purpose: it orders the scenarios of this binary.
#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value as Json;
use std::io::{BufRead as _, BufReader};
use tokio::sync::mpsc;

/// A running `spacelink subscribe`: every line it printed, as JSON.
struct Subscriber {
    child: std::process::Child,
    lines: mpsc::UnboundedReceiver<Json>,
    seen: Vec<Json>,
}

impl Subscriber {
    fn start(server: &str, queries: &[&str]) -> Self {
        Self::start_with(&["--server", server], queries)
    }

    fn start_with(args: &[&str], queries: &[&str]) -> Self {
        let (_, db) = common::server();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spacelink"))
            .args(["--database", &db])
            .args(args)
            .arg("subscribe")
            .args(queries)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(json).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The next line that `f` accepts, within `secs` (every line is kept in `seen`).
    async fn next(&mut self, secs: u64, what: &str, f: impl Fn(&Json) -> bool) -> Json {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {secs} s; printed: {:#?}", self.seen))
                .unwrap_or_else(|| panic!("the command ended before {what}; printed: {:#?}", self.seen));
            self.seen.push(line.clone());
            if f(&line) {
                return line;
            }
        }
    }

    /// Everything it prints until it ends by itself (within `secs`), and its exit code.
    async fn until_exit(mut self, secs: u64) -> (i32, Vec<Json>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => break,
                Err(_) => panic!("the command did not end within {secs} s; printed: {:#?}", self.seen),
            }
        }
        let status = tokio::task::block_in_place(|| self.child.wait()).unwrap();
        (status.code().unwrap_or(-1), std::mem::take(&mut self.seen))
    }

    /// SIGTERM, then its exit code and everything it printed.
    async fn stop(self) -> (i32, Vec<Json>) {
        let pid = self.child.id();
        assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
        self.until_exit(20).await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Killing one that already ended fails harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the command once against `server` and returns its exit code and lines.
async fn cli(server: &str, args: &[&str]) -> (i32, Vec<Json>) {
    let (_, db) = common::server();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let server = server.to_string();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_spacelink"))
            .args(["--server", &server, "--database", &db, "--timeout", "20"])
            .args(&args)
            .output()
            .unwrap();
        let lines = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        (output.status.code().unwrap_or(-1), lines)
    })
    .await
    .unwrap()
}

/// A fresh identity's token from the server.
async fn token() -> String {
    let (url, _) = common::server();
    tokio::task::spawn_blocking(move || {
        let identity: Json =
            serde_json::from_str(&ureq::post(&format!("{url}/v1/identity")).call().unwrap().into_string().unwrap())
                .unwrap();
        identity["token"].as_str().unwrap().to_string()
    })
    .await
    .unwrap()
}

/// A name no other run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}-{}", std::process::id() % 10_000, nanos % 100_000)
}

/// Whether `line` is a row change of `table` about a row named `name` (before or after).
fn about(line: &Json, table: &str, name: &str) -> bool {
    line["table"] == table
        && (line["row"]["name"] == name || line["new"]["name"] == name || line["old"]["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_subscribe_with_overlapping_queries_prints_an_insert_once_and_an_update_as_one_update() {
    let _serial = serial();
    let (url, _) = server();
    let mut sub = Subscriber::start(&url, &["SELECT * FROM player", "SELECT * FROM player WHERE map_id = 1"]);
    sub.next(30, "the query set applied", |l| l["event"] == "subscribed").await;

    let (first, second, marker) = (unique("ovl-a"), unique("ovl-b"), unique("ovl-m"));
    let player = token().await;
    let (code, lines) = cli(&url, &["--token", &player, "call", "join", &format!(r#"["{first}", 1]"#)]).await;
    assert_eq!(code, 0, "{lines:?}");
    sub.next(30, "the player's insert", |l| l["event"] == "insert" && about(l, "player", &first)).await;
    // The same identity joins again under another name: an update of its row.
    let (code, lines) = cli(&url, &["--token", &player, "call", "join", &format!(r#"["{second}", 1]"#)]).await;
    assert_eq!(code, 0, "{lines:?}");
    let renamed = sub.next(30, "the rename", |l| l["event"] == "update" && l["new"]["name"] == second.as_str()).await;
    assert_eq!(renamed["old"]["name"], first.as_str(), "{renamed}");
    // A later change as a barrier: everything about the player printed before it.
    let (code, _) = cli(&url, &["call", "join", &format!(r#"["{marker}", 1]"#)]).await;
    assert_eq!(code, 0);
    sub.next(30, "the marker's insert", |l| l["event"] == "insert" && about(l, "player", &marker)).await;
    let (code, seen) = sub.stop().await;

    let ours: Vec<&Json> = seen.iter().filter(|l| about(l, "player", &first) || about(l, "player", &second)).collect();
    let count = |event: &str| ours.iter().filter(|l| l["event"] == event).count();
    // Both queries hold the row: still one insert, every change one update, never a delete.
    assert_eq!((count("insert"), count("delete")), (1, 0), "{ours:#?}");
    assert_eq!(
        ours.iter()
            .filter(|l| l["event"] == "update"
                && l["new"]["name"] == second.as_str()
                && l["old"]["name"] == first.as_str())
            .count(),
        1,
        "{ours:#?}"
    );
    assert_eq!(code, 0);
    let last = seen.last().unwrap();
    assert_eq!((last["event"].as_str(), last["code"].as_i64()), (Some("exit"), Some(0)), "{last}");
    assert!(last["reason"].as_str().unwrap().contains("SIGTERM"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs a real server and SPACELINK_SERVER_DIR (cargo xtask test)"]
async fn e2e_subscribe_rides_out_a_cut_and_a_server_restart_printing_only_real_changes() {
    let _serial = serial();
    let (url, _) = server();
    let dir = std::env::var("SPACELINK_SERVER_DIR").expect("SPACELINK_SERVER_DIR: run through cargo xtask");
    let xtask = std::env::var("SPACELINK_XTASK_BIN").expect("SPACELINK_XTASK_BIN: run through cargo xtask");
    let proxy = proxy::FaultProxy::start(upstream()).await.unwrap();
    let mut sub = Subscriber::start(&proxy.url(), &["SELECT * FROM map", "SELECT * FROM player WHERE map_id = 2"]);
    sub.next(30, "the query set applied", |l| l["event"] == "subscribed").await;

    // A cut: the command reconnects and resubscribes; nothing changed, nothing prints.
    proxy.cut_all();
    sub.next(60, "the resubscription after the cut", |l| l["event"] == "resubscribed").await;

    // Down while a player joins: after the reconnect, that one insert prints, reconciled.
    let away = unique("away");
    proxy.set_refuse(true);
    proxy.cut_all();
    let (code, lines) = cli(&url, &["call", "join", &format!(r#"["{away}", 2]"#)]).await;
    assert_eq!(code, 0, "{lines:?}");
    proxy.set_refuse(false);
    let missed = sub.next(60, "the missed insert", |l| l["event"] == "insert" && about(l, "player", &away)).await;
    assert_eq!(missed["phase"], "reconciled", "{missed}");

    // The server process restarts on the same port and data.
    let restart = tokio::task::spawn_blocking(move || {
        Command::new(xtask).args(["server", "restart", "--dir", &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    sub.next(90, "the resubscription after the restart", |l| {
        l["event"] == "resubscribed" && l["generation"].as_u64() > missed["generation"].as_u64()
    })
    .await;

    // A change after it all reaches the command, once.
    let after = unique("after");
    let (code, lines) = cli(&url, &["call", "join", &format!(r#"["{after}", 2]"#)]).await;
    assert_eq!(code, 0, "{lines:?}");
    sub.next(60, "the insert after the restart", |l| l["event"] == "insert" && about(l, "player", &after)).await;
    let (code, seen) = sub.stop().await;
    assert_eq!(code, 0, "{seen:#?}");

    // The maps never changed: after the initial rows, not one line about them.
    let applied = seen.iter().position(|l| l["event"] == "subscribed").unwrap();
    let initial_maps = seen[..applied].iter().filter(|l| l["table"] == "map").count();
    assert!(initial_maps >= 2, "{seen:#?}");
    let spurious: Vec<&Json> = seen[applied..].iter().filter(|l| l["table"] == "map").collect();
    assert!(spurious.is_empty(), "unchanged rows printed after reconnects: {spurious:#?}");
    let inserts = |name: &str| seen.iter().filter(|l| l["event"] == "insert" && about(l, "player", name)).count();
    assert_eq!((inserts(&away), inserts(&after)), (1, 1), "{seen:#?}");
    let resubscribed = seen.iter().filter(|l| l["event"] == "resubscribed").count();
    assert!(resubscribed >= 3, "{seen:#?}");
    assert_eq!(seen.last().unwrap()["event"], "exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_subscribe_exits_with_the_reason_when_the_connection_fails() {
    let (url, db) = server();
    // The schema from the real server, so that only the connection fails.
    let schema = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("{url}/v1/database/{db}/schema?version=9")).call().unwrap().into_string().unwrap()
    })
    .await
    .unwrap();
    let schema_file = std::env::temp_dir().join(format!("spacelink-cli-schema-{}.json", std::process::id()));
    std::fs::write(&schema_file, schema).unwrap();
    // A port nobody listens on: a server that stays down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = format!("http://{down}");
    let schema_path = schema_file.to_str().unwrap();
    let sub = Subscriber::start_with(
        &["--server", &server, "--max-attempts", "1", "--schema-file", schema_path],
        &["SELECT * FROM map"],
    );
    let (code, lines) = sub.until_exit(60).await;
    let _ = std::fs::remove_file(&schema_file);
    assert_eq!(code, 3, "{lines:#?}");
    let last = lines.last().unwrap();
    assert_eq!((last["event"].as_str(), last["code"].as_i64()), (Some("exit"), Some(3)), "{lines:#?}");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains("the connection failed") && reason.contains("gave up after"), "{reason}");
    assert!(lines.iter().any(|l| l["event"] == "state" && l["to"] == "failed"), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_what_sql_prints_call_accepts() {
    let (url, _) = server();
    let (code, lines) = cli(&url, &["sql", "SELECT * FROM map WHERE map_id = 1"]).await;
    assert_eq!(code, 0, "{lines:?}");
    let map = lines.iter().find(|l| l["event"] == "rows").unwrap()["rows"][0].clone();
    let (code, lines) = cli(&url, &["sql", "SELECT * FROM config"]).await;
    assert_eq!(code, 0, "{lines:?}");
    let config = lines.iter().find(|l| l["event"] == "rows").unwrap()["rows"][0].clone();

    // Columns as printed, passed as arguments of the same types (String, u32, f32).
    let player = token().await;
    let name = map["name"].clone();
    let join =
        serde_json::json!({ "name": format!("{}-{}", name.as_str().unwrap(), unique("cli")), "map_id": map["map_id"] });
    let (code, lines) = cli(&url, &["--token", &player, "call", "join", &join.to_string()]).await;
    assert_eq!(code, 0, "{lines:?}");
    let step = serde_json::json!([1, config["max_step"], config["max_step"]]);
    let (code, lines) = cli(&url, &["--token", &player, "call", "move_player", &step.to_string()]).await;
    assert_eq!(code, 0, "{lines:?}");
    // A printed string arrives intact: the reducer fails with it as its message.
    let (code, lines) = cli(&url, &["call", "always_fail", &serde_json::json!([name]).to_string()]).await;
    let outcome = lines.iter().find(|l| l["event"] == "reducer").unwrap();
    assert_eq!((code, &outcome["error"]), (1, &name), "{lines:?}");
}
