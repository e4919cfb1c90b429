//! The performance monitor and a prediction as children of the tree, against
//! the real server, from a game's own thread (a `build()` client): the game
//! starts a prediction with `Client::predict`; each child, stopped as a failure
//! would, is restarted by its policy and works on (the prediction keeps its
//! history and its inputs are confirmed; the monitor keeps sampling), and
//! `shutdown` stops both for good.
//!
//! Its own test binary: the monitor installs the process's `metrics` recorder.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::guildmaster::*;
use common::{my_player, server, tick_until};
use spacelink::prediction::{PredictionConfig, PredictionEvent, Step, Walk};
use spacelink::telemetry::{TelemetryConfig, TelemetryListeners};
use spacelink::{Child, Client, ConnectionConfig, Event, SpacelinkConfig, TelemetrySetup};

fn confirmed(events: &[Event], seq: u32) -> bool {
    events.iter().any(|e| matches!(e, Event::Prediction(PredictionEvent::Confirmed { seq: s, .. }) if *s >= seq))
}

#[test]
#[ignore = "e2e: needs a real server (cargo xtask test)"]
fn e2e_a_prediction_and_the_monitor_are_supervised_children_of_a_game_threads_client() {
    let (url, db) = server();
    let mut config = SpacelinkConfig::new(ConnectionConfig::new(&url, &db));
    config.telemetry = Some(TelemetrySetup {
        config: TelemetryConfig { sampling_interval: Duration::from_millis(100), ..TelemetryConfig::default() },
        listeners: TelemetryListeners::default(),
    });
    let mut client = Client::builder().with_config(config).subscribe(&["SELECT * FROM player"]).build().unwrap();
    let mut identity = None;
    tick_until(&mut client, 20, "connected", |_, events| {
        for e in events {
            if let Event::Connected { identity: id, .. } = e {
                identity = Some(*id);
            }
        }
        identity.is_some()
    });
    let identity = identity.unwrap();
    let name = format!("children-{}", std::process::id());
    let mut joined = client.reducers().call("join", &JoinArgs { name: name.clone(), map_id: 1 });
    let players = client.table::<Player>("player");
    tick_until(&mut client, 20, "joined, and our row cached", |_, _| {
        joined.try_result().is_some_and(|r| r.is_ok()) || players.iter().any(|p| p.identity == identity)
    });
    tick_until(&mut client, 20, "our row cached", |_, _| players.iter().any(|p| p.identity == identity));

    // Started from the game's thread: the actors start on the client's own.
    let me = client.predict(Walk::default(), PredictionConfig::default(), my_player(identity)).unwrap();
    tick_until(&mut client, 10, "the first server state", |_, _| me.shown().is_some());
    let first = me.shown().unwrap();
    me.predict(Step { dx: 0.5, dy: 0.0 });
    let seq = me.with_view(|v| v.newest_seq).unwrap();
    tick_until(&mut client, 15, "the input confirmed", |_, events| confirmed(events, seq));

    // The prediction stops as a failure would: restarted, it keeps its state and works on.
    client.fail_child(Child::Prediction);
    tick_until(&mut client, 10, "the prediction restarted", |c, _| c.restarts(Child::Prediction) == 1);
    let kept = me.shown().unwrap();
    assert!((kept.x - (first.x + 0.5)).abs() < 1e-3, "the restart kept the prediction: {kept:?} from {first:?}");
    me.predict(Step { dx: 0.5, dy: 0.0 });
    let seq = me.with_view(|v| v.newest_seq).unwrap();
    tick_until(&mut client, 15, "an input after the restart confirmed", |_, events| confirmed(events, seq));

    // The monitor too: its sampling goes on after the restart.
    tick_until(&mut client, 10, "stats", |_, events| events.iter().any(|e| matches!(e, Event::Stats(_))));
    client.fail_child(Child::Telemetry);
    tick_until(&mut client, 10, "the monitor restarted", |c, _| c.restarts(Child::Telemetry) == 1);
    let _ = client.frame_tick();
    tick_until(&mut client, 10, "stats after the restart", |_, events| {
        events.iter().any(|e| matches!(e, Event::Stats(_)))
    });
    assert!(!client.given_up(Child::Prediction) && !client.given_up(Child::Telemetry));

    // Shutdown stops both for good.
    client.shutdown();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((client.restarts(Child::Prediction), client.restarts(Child::Telemetry)), (1, 1));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(runtime.block_on(me.status()).is_err(), "the prediction stopped with the tree");
}
