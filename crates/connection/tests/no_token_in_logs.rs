//! No token reaches a log line at any level: a `log` logger and a `tracing`
//! subscriber, both at trace level, hear a real WebSocket handshake with a
//! token (the connection actor against the hostile server on loopback, which
//! upgrades, sends an identity and holds the session), and the token is in
//! neither. (tungstenite's own client handshake would log it at trace level:
//! the upgrade request is ours, see `spacelink_connection::upgrade`.)
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spacelink_connection::hostile::{identity_frame, After, Case, HostileServer};
use spacelink_connection::{ConnectionActor, ConnectionConfig, ConnectionState, Listeners};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "eyJzZWNyZXQiOiJ0b2tlbiJ9.never-in-a-log";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `log` logger that keeps every record, at every level.
struct Keep(Buffer);

impl log::Log for Keep {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let mut out = self.0.clone();
        let _ = writeln!(out, "{} {}: {}", record.level(), record.target(), record.args());
    }

    fn flush(&self) {}
}

#[actix::test]
async fn a_handshake_with_a_token_logs_no_token_at_trace_level() {
    let logged = Buffer::default();
    log::set_boxed_logger(Box::new(Keep(logged.clone()))).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let traced = Buffer::default();
    let writer = traced.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = HostileServer::start(Case::Frames {
        frames: vec![Message::Binary(identity_frame().into())],
        then: After::Hold,
    })
    .unwrap();
    let mut config = ConnectionConfig::new(server.url(), "quiet");
    config.token = Some(TOKEN.to_string());
    let handle = ConnectionActor::start_supervised(config, Listeners::default()).unwrap();
    let mut connected = false;
    for _ in 0..500 {
        let status = handle.status().await.unwrap();
        if status.state == ConnectionState::Connected && status.identity.is_some() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(connected, "the session never came up");
    assert_eq!(server.upgrades(), 1);
    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (logged, traced) = (logged.text(), traced.text());
    assert!(!logged.is_empty() && !traced.is_empty(), "both hear something at trace level");
    assert!(logged.contains("TRACE"), "trace records reach the logger: {logged}");
    let secret = &TOKEN[10..30];
    assert!(!logged.contains(secret), "the token is in a `log` line:\n{logged}");
    assert!(!traced.contains(secret), "the token is in a `tracing` line:\n{traced}");
}
