//! Shared helpers for the end-to-end tests: the real server from `cargo xtask
//! test`, an actor that collects everything a connection tells, and the
//! server's SQL endpoint as an independent oracle.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use spacelink::connection::ws;
use spacelink::{
    Client, ConnectionConfig, IdentityReceived, Listeners, ModuleSchema, ServerMessageReceived, StateChanged,
};
use tokio::sync::mpsc;

/// guildmaster's rows, reducer arguments and interest settings (shared with the examples).
#[path = "../../examples/guildmaster/mod.rs"]
pub mod guildmaster;

/// Minted tokens and captured logs, for the tests that keep secrets.
pub mod tokens;

/// The server URL and database that `cargo xtask test` started and published.
pub fn server() -> (String, String) {
    let url = std::env::var("SPACELINK_SERVER_URL").unwrap_or_else(|_| {
        panic!("SPACELINK_SERVER_URL is not set: end-to-end tests run against a real server through `cargo xtask test`")
    });
    let db = std::env::var("SPACELINK_DATABASE").unwrap_or_else(|_| "guildmaster".into());
    (url, db)
}

/// The test server's socket address, for a proxy in front of it.
pub fn upstream() -> SocketAddr {
    let (url, _) = server();
    url.trim_start_matches("http://").parse().unwrap()
}

/// Scenarios that disturb the shared server (restart it, change its tick) take this, one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A configuration for the test server, with quick heartbeats.
/// Interest management as guildmaster lays it out: `entity` has `map_id`,
/// `pos` and a 10-unit grid in `cell_x`/`cell_y`; a map's context is its
/// entities, items and players.
#[allow(dead_code)]
pub fn guildmaster_sync() -> spacelink::SyncConfig {
    guildmaster::sync_config()
}

pub fn config() -> ConnectionConfig {
    let (url, db) = server();
    let mut config = ConnectionConfig::new(url, db);
    config.jitter_seed = Some(1);
    config
}

/// Something a connection told.
#[derive(Debug, Clone)]
pub enum Event {
    State(StateChanged),
    Identity(IdentityReceived),
    Message(ServerMessageReceived),
}

struct Collector(mpsc::UnboundedSender<Event>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Collector {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        let _ = self.0.send(Event::State(msg));
    }
}

impl Handler<IdentityReceived> for Collector {
    type Result = ();
    fn handle(&mut self, msg: IdentityReceived, _: &mut Self::Context) {
        let _ = self.0.send(Event::Identity(msg));
    }
}

impl Handler<ServerMessageReceived> for Collector {
    type Result = ();
    fn handle(&mut self, msg: ServerMessageReceived, _: &mut Self::Context) {
        let _ = self.0.send(Event::Message(msg));
    }
}

/// What a connection told, in order.
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event, if one comes within `within`.
    #[allow(dead_code)]
    pub async fn next_within(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.0.recv()).await.ok().flatten()
    }

    /// Waits (up to `secs`) for the first event `f` maps to `Some`, skipping the others.
    pub async fn wait_for<T>(&mut self, secs: u64, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Some(event)) => {
                    if let Some(t) = f(&event) {
                        return t;
                    }
                }
                Ok(None) => panic!("event stream ended while waiting for {what}"),
                Err(_) => panic!("no {what} within {secs} s"),
            }
        }
    }

    /// The next event already told, if any (no waiting).
    pub fn try_next(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }

    /// The state changes told so far and not yet taken (waits for none).
    pub fn states_so_far(&mut self) -> Vec<StateChanged> {
        let mut states = Vec::new();
        while let Ok(event) = self.0.try_recv() {
            if let Event::State(s) = event {
                states.push(s);
            }
        }
        states
    }

    /// Waits for the connection to reach `Connected`.
    pub async fn connected(&mut self) -> u64 {
        self.wait_for(15, "Connected", |e| match e {
            Event::State(s) if s.to.is_connected() => Some(s.generation),
            _ => None,
        })
        .await
    }

    /// Waits for the identity of a session.
    pub async fn identity(&mut self) -> IdentityReceived {
        self.wait_for(15, "IdentityToken", |e| match e {
            Event::Identity(i) => Some(i.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the transaction update answering our call `request_id` of `reducer`.
    ///
    /// SpacetimeDB 1.3 sends a failed call's update with request id 0, so an
    /// update with id 0 for the same reducer from our own connection counts too.
    pub async fn transaction(&mut self, request_id: u32, reducer: &str) -> ServerMessageReceived {
        self.wait_for(15, "the reducer's TransactionUpdate", |e| match e {
            Event::Message(m) => match &*m.message {
                ws::ServerMessage::TransactionUpdate(tx)
                    if tx.reducer_call.request_id == request_id
                        || (tx.reducer_call.request_id == 0 && &*tx.reducer_call.reducer_name == reducer) =>
                {
                    Some(m.clone())
                }
                _ => None,
            },
            _ => None,
        })
        .await
    }

    /// Waits for the `SubscribeMultiApplied` of `query_id`.
    pub async fn applied(&mut self, query_id: ws::QueryId) -> ServerMessageReceived {
        self.wait_for(15, "SubscribeMultiApplied", |e| match e {
            Event::Message(m) => match &*m.message {
                ws::ServerMessage::SubscribeMultiApplied(a) if a.query_id == query_id => Some(m.clone()),
                _ => None,
            },
            _ => None,
        })
        .await
    }
}

/// Starts a client with `config`, collecting all the connection tells.
pub async fn start(config: ConnectionConfig) -> (Client, Events) {
    start_with(config, |_| {}).await
}

/// Like [`start`], with more listeners added by `more`.
pub async fn start_with(config: ConnectionConfig, more: impl FnOnce(&mut Listeners)) -> (Client, Events) {
    let (listeners, events) = collecting(more);
    (build(spacelink::SpacelinkConfig::new(config), listeners, Default::default()).await, events)
}

/// Starts a client with a full configuration and reducer listeners, collecting all the connection tells.
pub async fn start_configured(
    config: spacelink::SpacelinkConfig,
    reducer_listeners: spacelink::reducers::ReducerListeners,
) -> (Client, Events) {
    let (listeners, events) = collecting(|_| {});
    (build(config, listeners, reducer_listeners).await, events)
}

/// Starts the tree as a game does (`Client::builder()…build_async()`), with the
/// module's schema read from the real server beforehand (not through any proxy
/// or fault in `config`) when `config` has none.
pub async fn build(
    mut config: spacelink::SpacelinkConfig,
    listeners: Listeners,
    reducer_listeners: spacelink::reducers::ReducerListeners,
) -> Client {
    if config.schema.is_none() {
        config.schema = Some(std::sync::Arc::new(schema().await));
    }
    Client::builder()
        .with_config(config)
        .with_listeners(listeners)
        .with_reducer_listeners(reducer_listeners)
        .build_async()
        .await
        .unwrap()
}

/// Starts the tree as a game does, the schema fetched through `config`'s connection unless given.
pub async fn connect(
    config: spacelink::SpacelinkConfig,
    listeners: Listeners,
    reducer_listeners: spacelink::reducers::ReducerListeners,
    sync_listeners: spacelink::sync::SyncListeners,
) -> Result<Client, spacelink::ClientError> {
    Client::builder()
        .with_config(config)
        .with_listeners(listeners)
        .with_reducer_listeners(reducer_listeners)
        .with_sync_listeners(sync_listeners)
        .build_async()
        .await
}

/// Listeners that collect all the connection tells.
pub fn collecting_listeners() -> (Listeners, Events) {
    collecting(|_| {})
}

fn collecting(more: impl FnOnce(&mut Listeners)) -> (Listeners, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = Collector(tx).start();
    let mut listeners = Listeners {
        messages: vec![collector.clone().recipient()],
        states: vec![collector.clone().recipient()],
        identities: vec![collector.recipient()],
        ..Default::default()
    };
    more(&mut listeners);
    (listeners, Events(rx))
}

/// The module's schema, from the real server.
pub async fn schema() -> ModuleSchema {
    let (url, db) = server();
    ModuleSchema::fetch(&url, &db, None).await.unwrap()
}

/// Calls `reducer` with JSON `args` and returns its transaction update.
pub async fn call(
    app: &Client,
    events: &mut Events,
    schema: &ModuleSchema,
    reducer: &str,
    args: &str,
) -> ServerMessageReceived {
    let bytes = schema.encode_reducer_args(reducer, args).unwrap();
    let id = app.connection().call_reducer(reducer, bytes, ws::CallReducerFlags::FullUpdate).await.unwrap();
    events.transaction(id, reducer).await
}

/// The status of a transaction update: `Ok(())` if committed, the message if failed.
pub fn outcome(m: &ServerMessageReceived) -> Result<(), String> {
    match &*m.message {
        ws::ServerMessage::TransactionUpdate(tx) => match &tx.status {
            ws::UpdateStatus::Committed(_) => Ok(()),
            ws::UpdateStatus::Failed(msg) => Err(msg.to_string()),
            ws::UpdateStatus::OutOfEnergy => Err("out of energy".into()),
        },
        _ => Err("not a transaction update".into()),
    }
}

/// Rows of `update` for `table` (inserts), as BSATN bytes.
pub fn inserted_rows(update: &ws::DatabaseUpdate<ws::BsatnFormat>, table: &str) -> Vec<bytes::Bytes> {
    let mut rows = Vec::new();
    for t in update.tables.iter().filter(|t| &*t.table_name == table) {
        for q in &t.updates {
            let q = spacelink::connection::codec::decompress_query_update(q, Default::default()).unwrap();
            rows.extend(spacelink::connection::codec::rows(&q.inserts));
        }
    }
    rows
}

/// Runs SQL through the server's HTTP endpoint (an oracle independent of our client).
pub async fn sql(query: &str) -> serde_json::Value {
    let (url, db) = server();
    let query = query.to_string();
    tokio::task::spawn_blocking(move || {
        let identity: serde_json::Value =
            serde_json::from_str(&ureq::post(&format!("{url}/v1/identity")).call().unwrap().into_string().unwrap())
                .unwrap();
        let token = identity["token"].as_str().unwrap().to_string();
        let response = ureq::post(&format!("{url}/v1/database/{db}/sql"))
            .set("Authorization", &format!("Bearer {token}"))
            .send_string(&query)
            .unwrap();
        serde_json::from_str(&response.into_string().unwrap()).unwrap()
    })
    .await
    .unwrap()
}

/// The fault-injecting proxy (crate `spacelink-faultproxy`); not every test binary uses it.
#[allow(unused_imports)]
pub use spacelink_faultproxy as proxy;

/// The prelude of a test that disturbs the network: a fault proxy in front of
/// the test server, and [`config`] pointed through it. Call it on a tokio
/// runtime (a game-loop test without one: `rt.block_on(proxied())`).
pub async fn proxied() -> (proxy::FaultProxy, ConnectionConfig) {
    let proxy = proxy::FaultProxy::start(upstream()).await.unwrap();
    let mut config = config();
    config.server_url = proxy.url();
    (proxy, config)
}

/// Ticks a game's client at about 60 fps until `done` says so (given the
/// frame's events), or panics after `secs` seconds.
pub fn tick_until(
    client: &mut Client,
    secs: u64,
    what: &str,
    mut done: impl FnMut(&mut Client, &[spacelink::Event]) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let events = client.frame_tick().to_vec();
        if done(client, &events) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(16));
    }
}

/// Predicting our own guildmaster player: its row in `player`, its inputs
/// through `move_player` (which drops repeats of a sequence number).
pub fn my_player(
    me: spacelink::connection::lib::Identity,
) -> spacelink::prediction_link::PredictedEntity<spacelink::prediction::Walk> {
    use spacelink::prediction::{Position, Step};
    spacelink::prediction_link::PredictedEntity {
        table: "player".into(),
        reducer: "move_player".into(),
        read_row: std::sync::Arc::new(move |row| {
            let p: guildmaster::Player = spacelink::connection::sats::bsatn::from_slice(row).ok()?;
            (p.identity == me).then_some((Position { x: p.pos.x, y: p.pos.y }, p.last_input_seq))
        }),
        encode_input: std::sync::Arc::new(|seq, step: &Step| {
            let args = guildmaster::MovePlayerArgs { seq, dx: step.dx, dy: step.dy };
            spacelink::connection::sats::bsatn::to_vec(&args).unwrap().into()
        }),
    }
}

/// Hears one kind of message from an actor and hands each to the test.
pub struct Tap<M>(mpsc::UnboundedSender<M>);

impl<M: Send + 'static> Actor for Tap<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + 'static> Handler<M> for Tap<M> {
    type Result = ();
    fn handle(&mut self, msg: M, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

/// A recipient for messages `M` (give it to an actor as a listener) and the
/// receiving end where the test reads them.
pub fn tap<M: Message<Result = ()> + Send + 'static>() -> (Recipient<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Tap(tx).start().recipient(), rx)
}
