//! A signal-style adapter over spacelink's game API, of the kind a Godot or
//! Bevy plugin wraps: the engine connects named signals to callables, and the
//! adapter emits them from `frame_tick` on the engine's main thread.
//!
//! ```text
//! cargo run -p spacelink --example signals -- --server http://127.0.0.1:3000 --database guildmaster
//! ```

use std::collections::HashMap;
use std::time::Duration;

use spacelink::{Client, ClientError, Event, RowEventKind};

/// A callable connected to a signal (a GDScript `Callable`, a Bevy system's event writer).
type Callable = Box<dyn FnMut(&Event)>;

/// spacelink's events as engine signals.
struct Signals {
    client: Client,
    connected: HashMap<&'static str, Vec<Callable>>,
}

impl Signals {
    /// Every signal the adapter emits.
    const NAMES: [&'static str; 8] = [
        "connected",
        "state_changed",
        "row_inserted",
        "row_updated",
        "row_deleted",
        "reducer_result",
        "subscription",
        "other",
    ];

    fn new(client: Client) -> Self {
        Self { client, connected: HashMap::new() }
    }

    /// `connect(signal, callable)`: an unknown signal is an error, as in Godot.
    fn connect(&mut self, signal: &'static str, callable: impl FnMut(&Event) + 'static) -> Result<(), String> {
        if !Self::NAMES.contains(&signal) {
            return Err(format!("no signal `{signal}` (signals: {})", Self::NAMES.join(", ")));
        }
        self.connected.entry(signal).or_default().push(Box::new(callable));
        Ok(())
    }

    fn signal_of(event: &Event) -> &'static str {
        match event {
            Event::Connected { .. } => "connected",
            Event::StateChanged { .. } => "state_changed",
            Event::Row(row) => match row.kind {
                RowEventKind::Insert => "row_inserted",
                RowEventKind::Update => "row_updated",
                RowEventKind::Delete => "row_deleted",
            },
            Event::ReducerResult { .. } => "reducer_result",
            Event::Subscription(_) => "subscription",
            _ => "other",
        }
    }

    /// Called once per engine frame (`_process`, a Bevy system in `PreUpdate`).
    fn process(&mut self) {
        for event in self.client.frame_tick() {
            if let Some(callables) = self.connected.get_mut(Self::signal_of(event)) {
                for callable in callables {
                    callable(event);
                }
            }
        }
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), ClientError> {
    let client = Client::builder()
        .with_uri(arg("--server", "http://127.0.0.1:3000"))
        .with_database(arg("--database", "guildmaster"))
        .subscribe(&["SELECT * FROM map"])
        .build()?;
    let mut signals = Signals::new(client);
    let connections = [
        signals.connect("connected", |e| println!("signal connected: {e:?}")),
        signals.connect("state_changed", |e| println!("signal state_changed: {e:?}")),
        signals.connect("row_inserted", |e| {
            if let Event::Row(row) = e {
                println!("signal row_inserted: a {} row ({} bytes)", row.table, row.row.len());
            }
        }),
        signals.connect("subscription", |e| println!("signal subscription: {e:?}")),
        signals.connect("no_such_signal", |_| {}),
    ];
    for refused in connections.iter().filter_map(|c| c.as_ref().err()) {
        println!("refused: {refused}");
    }
    for _ in 0..120 {
        signals.process();
        std::thread::sleep(Duration::from_millis(16));
    }
    signals.client.shutdown();
    Ok(())
}
