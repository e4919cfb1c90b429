//! A backlog of transactions in the sync actor's mailbox: applied back to
//! back, published once, and told only once readers see them.
//!
//! The transactions are queued before the actor starts (its mailbox is made
//! first, as a game's is: [`SyncMailbox`]), so the backlog is whole when the
//! actor first reads it, whatever the threads do. The listener runs on
//! another thread than the actor, as the game's does, and reads the cache
//! as each change is heard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::sats::{AlgebraicType, ProductType};
use spacelink_connection::{
    ws, ConnectionState, ModuleSchema, SendMessage, ServerMessage, ServerMessageReceived, StateChanged,
};
use spacelink_sync::{CacheReader, RowChange, RowsChanged, SyncActor, SyncConfig, SyncListeners, SyncMailbox};

const TABLE: &str = "thing";

fn schema() -> Arc<ModuleSchema> {
    let mut module = RawModuleDefV9Builder::new();
    let row: ProductType = [("id", AlgebraicType::U64), ("value", AlgebraicType::U32)].into_iter().collect();
    module.build_table_with_new_type(TABLE, row, true).with_primary_key(0u16);
    Arc::new(ModuleSchema::from_raw(module.finish()).unwrap())
}

fn row(id: u64) -> Vec<u8> {
    let mut out = id.to_le_bytes().to_vec();
    out.extend_from_slice(&7u32.to_le_bytes());
    out
}

/// A transaction inserting the things `ids`, as the server sends it.
fn inserts(ids: std::ops::Range<u64>) -> ServerMessageReceived {
    let mut list = ws::BsatnRowListBuilder::fixed(12);
    for id in ids {
        list.push(&row(id));
    }
    let update = ws::QueryUpdate { deletes: ws::BsatnRowListBuilder::fixed(12).finish(), inserts: list.finish() };
    let update = ws::DatabaseUpdate {
        tables: vec![ws::TableUpdate {
            table_id: 4096.into(),
            table_name: TABLE.into(),
            num_rows: 0,
            updates: vec![ws::CompressableQueryUpdate::Uncompressed(update)].into(),
        }],
    };
    ServerMessageReceived {
        generation: 1,
        received_at: Instant::now(),
        wire_size: 0,
        message: Arc::new(ServerMessage::TransactionUpdateLight(ws::TransactionUpdateLight { request_id: 0, update })),
    }
}

/// The connection, for the actor to send to: nothing is sent in these tests.
struct Nowhere;

impl Actor for Nowhere {
    type Context = Context<Self>;
}

impl Handler<SendMessage> for Nowhere {
    type Result = Result<(), spacelink_connection::ConnectionError>;
    fn handle(&mut self, _: SendMessage, _: &mut Self::Context) -> Self::Result {
        Ok(())
    }
}

/// What the listener heard: per event, its inserts, and how many of the
/// table's rows the cache showed then; and whether each inserted row was there.
#[derive(Default)]
struct Heard {
    events: Vec<(usize, usize)>,
    unseen: usize,
}

struct Listener {
    /// The cache's reader, once the actor (which owns the cache) is made.
    reader: Arc<OnceLock<CacheReader>>,
    heard: Arc<Mutex<Heard>>,
}

impl Actor for Listener {
    type Context = Context<Self>;
}

impl Handler<RowsChanged> for Listener {
    type Result = ();
    fn handle(&mut self, msg: RowsChanged, _: &mut Self::Context) {
        let mut heard = self.heard.lock().unwrap();
        let view = self.reader.get().expect("the reader is set before the actor starts").snapshot();
        let view = view.view();
        for change in msg.changes.iter() {
            if let RowChange::Insert { table, key, .. } = change {
                if view.get(table, key).is_none() {
                    heard.unseen += 1;
                }
            }
        }
        heard.events.push((msg.changes.len(), view.count(TABLE)));
    }
}

/// Queues `backlog` in a sync actor's mailbox, connected, then starts it and
/// waits until `expect` events were heard.
fn run(backlog: Vec<ServerMessageReceived>, expect: usize) -> Heard {
    System::new().block_on(async move {
        let heard = Arc::new(Mutex::new(Heard::default()));
        let mailbox = SyncMailbox::new();
        let addr = mailbox.address();
        let reader = Arc::new(OnceLock::new());
        let listener = Listener { reader: Arc::clone(&reader), heard: Arc::clone(&heard) };
        let arbiter = Arbiter::new();
        let listener = Listener::start_in_arbiter(&arbiter.handle(), move |_| listener);
        let listeners = SyncListeners { changes: vec![listener.recipient()], subscriptions: Vec::new() };
        let actor = SyncActor::new(SyncConfig::default(), schema(), Nowhere.start().recipient(), listeners);
        let _ = reader.set(actor.cache().reader());
        addr.do_send(StateChanged {
            generation: 1,
            from: ConnectionState::Connecting,
            to: ConnectionState::Connected,
            reason: None,
            retry_in: None,
        });
        for message in backlog {
            addr.do_send(message);
        }
        let sync_thread = Arbiter::new();
        mailbox.start_on(actor, &sync_thread.handle());
        let deadline = Instant::now() + Duration::from_secs(60);
        while heard.lock().unwrap().events.len() < expect && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(5)).await;
        }
        sync_thread.stop();
        arbiter.stop();
        let mut heard = heard.lock().unwrap();
        std::mem::take(&mut *heard)
    })
}

#[test]
fn a_backlog_is_published_once_and_told_once_readers_see_it() {
    let backlog: Vec<ServerMessageReceived> = (0..50).map(|t| inserts(t * 100..(t + 1) * 100)).collect();
    let heard = run(backlog, 50);
    assert_eq!(heard.events.len(), 50, "every transaction is told");
    assert_eq!(heard.unseen, 0, "a change is told once readers see its row");
    assert!(heard.events.iter().all(|&(changes, _)| changes == 100), "each transaction's changes, in order");
    // The first change heard already reads the whole backlog: one publish.
    assert_eq!(heard.events[0].1, 5000);
}

#[test]
fn a_long_backlog_is_published_at_least_every_16k_rows() {
    const BIG: u64 = 1 << 13;
    let backlog = vec![inserts(0..BIG), inserts(BIG..2 * BIG), inserts(2 * BIG..2 * BIG + 10)];
    let heard = run(backlog, 3);
    assert_eq!(heard.events.len(), 3);
    assert_eq!(heard.unseen, 0);
    // Published once 2^14 rows were held, with the third transaction still to come.
    assert_eq!(heard.events[0].1, 2 * BIG as usize);
}
