//! End-to-end tests against a real SpacetimeDB 1.3 server running the
//! guildmaster module. Run them with `cargo xtask test`, which starts the
//! server, publishes the module and sets `SPACELINK_SERVER_URL`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use spacelink::connection::codec::rows;
use spacelink::connection::lib::{ConnectionId, Identity, ScheduleAt, TimeDuration, Timestamp};
use spacelink::connection::sats::{i256, u256};
use spacelink::connection::{ws, Compression};

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_connects_and_receives_identity_and_token() {
    let (app, mut events) = start(config()).await;
    let generation = events.connected().await;
    let identity = events.identity().await;
    assert_eq!(identity.generation, generation);
    assert!(!identity.token.expose().is_empty());
    assert!(!format!("{:?}", identity.token).contains(identity.token.expose()), "tokens never show in Debug");
    let status = app.connection().status().await.unwrap();
    assert!(status.state.is_connected());
    assert_eq!(status.identity, Some(identity.identity));
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_reconnect_with_token_keeps_identity() {
    let (first, mut events) = start(config()).await;
    let original = events.identity().await;
    // The same connection, forced to reconnect, presents the token it was given.
    first.connection().reconnect("test");
    let again = events.identity().await;
    assert!(again.generation > original.generation);
    assert_eq!(again.identity, original.identity);
    // A recovery asked for and awaited ends with a new session.
    assert!(first.connection().attempt_recovery("test").await.unwrap());
    let recovered = events.identity().await;
    assert!(recovered.generation > again.generation);
    assert_eq!(recovered.identity, original.identity);
    let health = first.connection().health().await.unwrap();
    assert!(health.is_healthy, "{health:?}");
    first.shutdown();

    // A new connection given the token is the same player.
    let mut config = config();
    config.token = Some(original.token.expose().to_string());
    let (second, mut events) = start(config).await;
    let restored = events.identity().await;
    assert_eq!(restored.identity, original.identity);
    second.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_reducer_calls_see_their_transaction_updates() {
    let schema = schema().await;
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let me = events.identity().await.identity;
    // Rows come for subscribed queries only, also to the caller.
    let query = app.connection().subscribe(&["SELECT * FROM player".to_string()]).await.unwrap();
    events.applied(query).await;

    let joined = call(&app, &mut events, &schema, "join", r#"["ada", 1]"#).await;
    assert_eq!(outcome(&joined), Ok(()));
    let ws::ServerMessage::TransactionUpdate(tx) = &*joined.message else { unreachable!() };
    assert_eq!(tx.caller_identity, me);
    assert_eq!(&*tx.reducer_call.reducer_name, "join");
    let ws::UpdateStatus::Committed(update) = &tx.status else { unreachable!() };
    let players = inserted_rows(update, "player");
    assert_eq!(players.len(), 1, "the caller sees its own rows");
    let player = schema.table("player").unwrap();
    let row = player.row_to_json(&player.decode(&players[0]).unwrap());
    assert_eq!(row["name"], "ada");
    assert_eq!(row["identity"]["__identity__"], format!("0x{}", me.to_hex()));
    assert_eq!(row["pos"]["x"], 50.0);

    // The server validates steps: one too long is clamped to max_step (1.0).
    let moved = call(&app, &mut events, &schema, "move_player", "[1, 5.0, 0.0]").await;
    assert_eq!(outcome(&moved), Ok(()));
    let ws::ServerMessage::TransactionUpdate(tx) = &*moved.message else { unreachable!() };
    let ws::UpdateStatus::Committed(update) = &tx.status else { unreachable!() };
    let row = player.row_to_json(&player.decode(&inserted_rows(update, "player")[0]).unwrap());
    assert_eq!(row["pos"]["x"], 51.0);
    assert_eq!(row["last_input_seq"], 1);

    // A repeated sequence number is dropped by the module: no change.
    let repeated = call(&app, &mut events, &schema, "move_player", "[1, 1.0, 0.0]").await;
    assert_eq!(outcome(&repeated), Ok(()));
    let oracle = sql(&format!("SELECT * FROM player WHERE identity = 0x{}", me.to_hex())).await;
    assert_eq!(oracle[0]["rows"].as_array().unwrap().len(), 1, "{oracle}");
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_failing_reducer_reports_its_message() {
    let schema = schema().await;
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let message = "the dragon is asleep ✓ \"quoted\"";
    let args = serde_json::to_string(&[message]).unwrap();
    let failed = call(&app, &mut events, &schema, "always_fail", &args).await;
    assert_eq!(outcome(&failed), Err(message.to_string()));
    let bad_map = call(&app, &mut events, &schema, "join", r#"["bob", 999]"#).await;
    assert!(outcome(&bad_map).unwrap_err().contains("999"), "{:?}", outcome(&bad_map));
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_every_compression_mode_decodes() {
    let schema = schema().await;
    let (setup, mut events) = start(config()).await;
    events.connected().await;
    assert_eq!(outcome(&call(&setup, &mut events, &schema, "clear_spawned", "[2]").await), Ok(()));
    assert_eq!(outcome(&call(&setup, &mut events, &schema, "spawn_entities", "[2, 400]").await), Ok(()));
    setup.shutdown();

    let mut sizes = Vec::new();
    for compression in [Compression::None, Compression::Brotli, Compression::Gzip] {
        let mut config = config();
        config.compression = compression;
        let (app, mut events) = start(config).await;
        events.connected().await;
        let query = app.connection().subscribe(&["SELECT * FROM entity WHERE map_id = 2".to_string()]).await.unwrap();
        let applied = events.applied(query).await;
        let ws::ServerMessage::SubscribeMultiApplied(a) = &*applied.message else { unreachable!() };
        let rows = inserted_rows(&a.update, "entity");
        assert!(rows.len() >= 400, "{compression:?}: {} rows", rows.len());
        let entity = schema.table("entity").unwrap();
        for row in &rows {
            entity.decode(row).unwrap();
        }
        sizes.push((compression, applied.wire_size));
        app.shutdown();
    }
    let none = sizes[0].1;
    for (compression, size) in &sizes[1..] {
        assert!(*size < none / 2, "{compression:?} frame of {size} bytes is not compressed (none: {none})");
    }
}

// The guildmaster types, as the official code generator would emit them.
#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
struct Vec2 {
    x: f32,
    y: f32,
}

#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
enum Color {
    Red,
    Green,
    Blue,
}

#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
enum Shape {
    Circle(f32),
    Rect(Vec2),
    Empty,
}

#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
struct Nested {
    inner: Vec2,
    tags: Vec<String>,
    shape: Option<Shape>,
}

#[derive(spacetimedb_lib::ser::Serialize, spacetimedb_lib::de::Deserialize, Debug, Clone, PartialEq)]
#[sats(crate = spacetimedb_lib)]
struct AllTypes {
    id: u32,
    a_u8: u8,
    a_u16: u16,
    a_u32: u32,
    a_u64: u64,
    a_u128: u128,
    a_u256: u256,
    a_i8: i8,
    a_i16: i16,
    a_i32: i32,
    a_i64: i64,
    a_i128: i128,
    a_i256: i256,
    a_f32: f32,
    a_f64: f64,
    a_bool: bool,
    a_string: String,
    a_bytes: Vec<u8>,
    a_vec: Vec<u32>,
    a_vec_string: Vec<String>,
    an_opt_i32: Option<i32>,
    an_opt_string: Option<String>,
    a_color: Color,
    a_shape: Shape,
    a_nested: Nested,
    an_identity: Identity,
    a_connection_id: ConnectionId,
    a_timestamp: Timestamp,
    a_duration: TimeDuration,
    a_schedule: ScheduleAt,
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_decodes_every_column_type_typed_and_dynamic() {
    let schema = schema().await;
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let me = events.identity().await;
    for id in [0, 7] {
        assert_eq!(outcome(&call(&app, &mut events, &schema, "insert_sample", &format!("[{id}]")).await), Ok(()));
    }
    // Only this test's rows (other tests insert samples of their own).
    let query = app.connection().subscribe(&["SELECT * FROM all_types WHERE id < 100".to_string()]).await.unwrap();
    let applied = events.applied(query).await;
    let ws::ServerMessage::SubscribeMultiApplied(a) = &*applied.message else { unreachable!() };
    let table = schema.table("all_types").unwrap();
    let mut typed: Vec<AllTypes> =
        inserted_rows(&a.update, "all_types").iter().map(|r| table.decode_as(r).unwrap()).collect();
    typed.sort_by_key(|r| r.id);
    assert_eq!(typed.len(), 2);

    let min = &typed[0];
    assert_eq!((min.a_u8, min.a_u16, min.a_u32, min.a_u64, min.a_u128), (0, 0, 0, 0, 0));
    assert_eq!(min.a_u256, u256::ZERO);
    assert_eq!(
        (min.a_i8, min.a_i16, min.a_i32, min.a_i64, min.a_i128),
        (i8::MIN, i16::MIN, i32::MIN, i64::MIN, i128::MIN)
    );
    assert_eq!(min.a_i256, i256::MIN);
    assert_eq!((min.a_f32, min.a_f64, min.a_bool), (-1.5, -2.25, false));
    assert_eq!((min.a_string.as_str(), min.a_bytes.len(), min.a_vec.len()), ("", 0, 0));
    assert_eq!((min.an_opt_i32, min.an_opt_string.clone()), (None, None));
    assert_eq!((min.a_color.clone(), min.a_shape.clone()), (Color::Red, Shape::Empty));
    assert_eq!(min.a_nested, Nested { inner: Vec2 { x: 0.0, y: 0.0 }, tags: vec![], shape: None });
    assert_eq!(min.an_identity, Identity::ZERO);
    assert_eq!(min.a_connection_id, ConnectionId::ZERO);
    assert_eq!(min.a_timestamp, Timestamp::UNIX_EPOCH);
    assert_eq!(min.a_duration, TimeDuration::from_micros(0));
    assert_eq!(min.a_schedule, ScheduleAt::Interval(TimeDuration::from_micros(0)));

    let max = &typed[1];
    assert_eq!(
        (max.a_u8, max.a_u16, max.a_u32, max.a_u64, max.a_u128),
        (u8::MAX, u16::MAX, u32::MAX, u64::MAX, u128::MAX)
    );
    assert_eq!(max.a_u256, u256::MAX);
    assert_eq!(
        (max.a_i8, max.a_i16, max.a_i32, max.a_i64, max.a_i128),
        (i8::MAX, i16::MAX, i32::MAX, i64::MAX, i128::MAX)
    );
    assert_eq!(max.a_i256, i256::MAX);
    assert_eq!((max.a_f32, max.a_f64, max.a_bool), (3.25, 1e300, true));
    assert_eq!(max.a_string, "row 7 ✓");
    assert_eq!(max.a_bytes, [0, 1, 254, 255]);
    assert_eq!(max.a_vec, [1, 2, 7]);
    assert_eq!(max.a_vec_string, ["a", "bc"]);
    assert_eq!((max.an_opt_i32, max.an_opt_string.as_deref()), (Some(-7), Some("some")));
    assert_eq!((max.a_color.clone(), max.a_shape.clone()), (Color::Blue, Shape::Rect(Vec2 { x: 1.0, y: 2.0 })));
    assert_eq!(
        max.a_nested,
        Nested { inner: Vec2 { x: 3.0, y: 4.0 }, tags: vec!["x".into(), "y".into()], shape: Some(Shape::Circle(0.5)) }
    );
    assert_eq!(max.an_identity, me.identity);
    assert_eq!(max.a_connection_id, me.connection_id);
    assert_eq!(max.a_timestamp, Timestamp::from_micros_since_unix_epoch(1_700_000_000_000_000));
    assert_eq!(max.a_duration, TimeDuration::from_micros(1_500_000));
    assert_eq!(max.a_schedule, ScheduleAt::Time(Timestamp::from_micros_since_unix_epoch(1_700_000_000_000_000)));

    // The same rows, decoded dynamically by the module's schema.
    let mut dynamic: Vec<serde_json::Value> =
        inserted_rows(&a.update, "all_types").iter().map(|r| table.row_to_json(&table.decode(r).unwrap())).collect();
    dynamic.sort_by_key(|r| r["id"].as_u64());
    let (min, max) = (&dynamic[0], &dynamic[1]);
    // SATS-JSON, as the server's HTTP API writes typed values.
    assert_eq!(min["a_i128"].to_string(), i128::MIN.to_string());
    assert_eq!(max["a_u256"], format!("{:#x}", u256::MAX));
    assert_eq!(max["a_i256"], format!("{:#x}", i256::MAX));
    assert_eq!(min["a_i256"], format!("-{:#x}", i256::MIN.unsigned_abs()));
    assert_eq!(min["an_opt_i32"], serde_json::json!({ "none": {} }));
    assert_eq!(max["an_opt_string"], serde_json::json!({ "some": "some" }));
    assert_eq!(min["a_color"], serde_json::json!({ "Red": {} }));
    assert_eq!(max["a_shape"]["Rect"]["y"], 2.0);
    assert_eq!(max["a_nested"]["shape"]["some"]["Circle"], 0.5);
    assert_eq!(max["an_identity"]["__identity__"], format!("0x{}", me.identity.to_hex()));
    assert_eq!(max["a_connection_id"]["__connection_id__"].to_string(), me.connection_id.to_u128().to_string());
    assert_eq!(max["a_timestamp"]["__timestamp_micros_since_unix_epoch__"], 1_700_000_000_000_000u64);
    assert_eq!(max["a_duration"]["__time_duration_micros__"], 1_500_000);
    assert_eq!(max["a_schedule"]["Time"]["__timestamp_micros_since_unix_epoch__"], 1_700_000_000_000_000u64);
    assert_eq!(max["a_bytes"], "0001feff");
    // What is printed reads back as the same row (so `call` takes it for such a type).
    let row_type = spacelink::connection::sats::AlgebraicType::Product(table.row_type.clone());
    for (printed, bytes) in dynamic.iter().zip({
        let mut rows = inserted_rows(&a.update, "all_types");
        rows.sort_by_key(|r| table.row_to_json(&table.decode(r).unwrap())["id"].as_u64());
        rows
    }) {
        let back = spacelink::connection::sats_json::from_json(&row_type, printed).unwrap();
        assert_eq!(spacelink::connection::sats::bsatn::to_vec(&back).unwrap(), bytes.to_vec(), "{printed}");
    }

    // And the server's SQL endpoint, an independent oracle, agrees on what is
    // there: its untyped rows (products as arrays, sums as [tag, payload]) read
    // as the same values.
    let oracle = sql("SELECT * FROM all_types WHERE id < 100").await;
    let rows = oracle[0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{oracle}");
    for row in rows {
        let value = spacelink::connection::sats_json::from_json(&row_type, row).unwrap();
        let id = value.as_product().unwrap().elements[0].clone();
        let ours =
            dynamic.iter().find(|d| serde_json::json!(d["id"]) == serde_json::json!(id.as_u32().unwrap())).unwrap();
        assert_eq!(&spacelink::connection::sats_json::to_json(&row_type, &value), ours, "{row}");
    }
    app.shutdown();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_one_off_query_returns_rows() {
    let schema = schema().await;
    let (app, mut events) = start(config()).await;
    events.connected().await;
    let id = app.connection().one_off_query("SELECT * FROM map").await.unwrap();
    let response = events
        .wait_for(15, "OneOffQueryResponse", |e| match e {
            Event::Message(m) => match &*m.message {
                ws::ServerMessage::OneOffQueryResponse(r) if *r.message_id == *id => Some(m.clone()),
                _ => None,
            },
            _ => None,
        })
        .await;
    let ws::ServerMessage::OneOffQueryResponse(r) = &*response.message else { unreachable!() };
    assert!(r.error.is_none());
    let map = schema.table("map").unwrap();
    let names: Vec<String> = rows(&r.tables[0].rows)
        .map(|row| map.row_to_json(&map.decode(&row).unwrap())["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"meadow".to_string()) && names.contains(&"caves".to_string()), "{names:?}");
    app.shutdown();
}

fn cli(args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let (url, db) = server();
    let output = Command::new(env!("CARGO_BIN_EXE_spacelink"))
        .args(["--server", &url, "--database", &db, "--timeout", "20"])
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (output.status.code().unwrap_or(-1), lines)
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_command_line_calls_and_queries() {
    let (code, lines) = cli(&["call", "always_fail", r#"["no"]"#]);
    let outcome = lines.iter().find(|l| l["event"] == "reducer").unwrap();
    assert_eq!((code, outcome["status"].as_str(), outcome["error"].as_str()), (1, Some("failed"), Some("no")));
    assert!(outcome["round_trip_ms"].as_f64().unwrap() > 0.0);
    assert!(lines.iter().any(|l| l["event"] == "identity"));

    let (code, lines) = cli(&["call", "join", r#"["cli", 2]"#]);
    assert_eq!(code, 0, "{lines:?}");

    let (code, lines) = cli(&["sql", "SELECT * FROM map"]);
    assert_eq!(code, 0);
    let rows = lines.iter().find(|l| l["event"] == "rows").unwrap();
    assert_eq!(rows["rows"].as_array().unwrap().len(), 2);

    // A call that does not fit the reducer is refused before anything is sent.
    let (code, lines) = cli(&["call", "join", r#"["too", "many", "args"]"#]);
    assert_eq!(code, 2);
    assert!(lines[0]["error"].as_str().unwrap().contains("join"), "{lines:?}");
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_command_line_subscribe_prints_initial_rows_and_changes() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let (url, db) = server();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spacelink"))
        .args(["--server", &url, "--database", &db, "subscribe", "SELECT * FROM map", "SELECT * FROM player"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(15)).unwrap_or_else(|_| panic!("no {what}"));
        if f(&line) {
            return line;
        }
    };
    // The initial rows, then the query set applied.
    let meadow = next("map row", &|l| l["event"] == "insert" && l["table"] == "map" && l["row"]["map_id"] == 1);
    assert_eq!((meadow["phase"].as_str(), meadow["row"]["name"].as_str()), (Some("initial"), Some("meadow")));
    next("subscribed", &|l| l["event"] == "subscribed");

    // Another client's change reaches the subscriber.
    let (code, _) = cli(&["call", "join", r#"["watched", 1]"#]);
    assert_eq!(code, 0);
    let joined = next("player insert", &|l| {
        l["phase"] == "tx" && l["table"] == "player" && (l["row"]["name"] == "watched" || l["new"]["name"] == "watched")
    });
    assert!(joined["event"] == "insert" || joined["event"] == "update", "{joined}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[actix::test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
async fn e2e_light_mode_receives_light_updates_of_other_transactions() {
    let mut config = config();
    config.light_mode = true;
    let (app, mut events) = start(config).await;
    events.connected().await;
    let query = app.connection().subscribe(&["SELECT * FROM entity WHERE map_id = 1".to_string()]).await.unwrap();
    events.applied(query).await;
    // The scheduled NPC tick moves entities: others' transactions come as light updates.
    events
        .wait_for(15, "a TransactionUpdateLight", |e| match e {
            Event::Message(m) => matches!(&*m.message, ws::ServerMessage::TransactionUpdateLight(_)).then_some(()),
            _ => None,
        })
        .await;
    app.shutdown();
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_command_line_generates_the_checked_in_bindings_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bindings.rs");
    let (code, lines) =
        cli(&["generate", "--out", out.to_str().unwrap(), "--sequenced", "act=seq", "--sequenced", "move_player=seq"]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!((lines[0]["event"].as_str(), lines[0]["tables"].as_u64()), (Some("generated"), Some(11)), "{lines:?}");
    // rustfmt ran with the project's settings (found from the working directory).
    assert_eq!(std::fs::read_to_string(&out).unwrap(), include_str!("bindings/guildmaster.rs"));

    // A directory gets `mod.rs`; a bad --sequenced is refused, nothing written.
    let (code, _) = cli(&["generate", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(dir.path().join("mod.rs").is_file());
    let refused = dir.path().join("refused.rs");
    let (code, _) = cli(&["generate", "--out", refused.to_str().unwrap(), "--sequenced", "move_player=dx"]);
    assert_eq!(code, 2);
    assert!(!refused.exists());
}
