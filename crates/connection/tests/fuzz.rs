//! Fuzzing of the three decoders a server controls: the frame decoder, row
//! decoding (the guard, typed and dynamic decodes, key extraction) and schema
//! parsing. The seeds are real: `tests/corpus` holds frames captured from the
//! SpacetimeDB 1.3 server (every message kind guildmaster's sessions see, in
//! each compression; see crates/app/tests/fuzz_corpus_e2e.rs) and the module's
//! schema. Each case mutates one seed (bit flips, overwritten bytes, huge or
//! zero length claims, truncation, insertion, removal, duplication of a range)
//! and feeds it to the decoder, which must answer with a value or a typed
//! error: no panic, no abort, no hang (proptest reports a panic as a failure
//! with the minimal input).
//!
//! `cargo test` runs a short round (256 cases per target). `cargo xtask fuzz
//! --minutes N` runs each target for its share of N minutes
//! (`SPACELINK_FUZZ_SECONDS` per target) and prints executions, corpus size and
//! crashes.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use spacelink_connection::codec::{self, DecodeLimits, ServerMessage};
use spacelink_connection::guard;
use spacelink_connection::layout::KeyExtractor;
use spacelink_connection::sats::{AlgebraicType, Typespace};
use spacelink_connection::ws;
use spacelink_connection::ModuleSchema;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus")
}

/// The captured frames.
fn frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut paths: Vec<_> =
            std::fs::read_dir(corpus_dir().join("frames")).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        let frames: Vec<_> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert!(frames.len() >= 12, "the corpus holds every message kind in each compression");
        frames
    })
}

fn schema_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| std::fs::read_to_string(corpus_dir().join("guildmaster-schema.json")).unwrap())
}

fn schema() -> &'static ModuleSchema {
    static SCHEMA: OnceLock<ModuleSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| ModuleSchema::from_json(schema_text()).unwrap())
}

/// Limits as a client would set them, small enough that a bomb is refused fast.
fn limits() -> DecodeLimits {
    DecodeLimits { max_message_size: 8 << 20 }
}

/// Every (table, row) the captured frames carry.
fn rows() -> &'static [(String, Vec<u8>)] {
    static ROWS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let mut out = Vec::new();
        for frame in frames() {
            let mut message = codec::decode_server_message(frame, limits()).unwrap();
            codec::decompress_updates(&mut message, limits());
            for_each_row(&message, |table, row| out.push((table.to_string(), row.to_vec())));
        }
        assert!(out.iter().any(|(t, _)| t == "all_types"), "the corpus has rows of every column type");
        out
    })
}

/// Calls `f` with each row of each table in `message` (updates and one-off results).
fn for_each_row(message: &ServerMessage, mut f: impl FnMut(&str, &[u8])) {
    let database = |update: &ws::DatabaseUpdate<ws::BsatnFormat>, f: &mut dyn FnMut(&str, &[u8])| {
        for table in &update.tables {
            for q in &table.updates {
                let Ok(q) = codec::decompress_query_update(q, limits()) else { continue };
                for row in codec::rows(&q.inserts).chain(codec::rows(&q.deletes)) {
                    f(&table.table_name, &row);
                }
            }
        }
    };
    match message {
        ws::ServerMessage::InitialSubscription(m) => database(&m.database_update, &mut f),
        ws::ServerMessage::TransactionUpdate(m) => {
            if let ws::UpdateStatus::Committed(update) = &m.status {
                database(update, &mut f)
            }
        }
        ws::ServerMessage::TransactionUpdateLight(m) => database(&m.update, &mut f),
        ws::ServerMessage::SubscribeMultiApplied(m) => database(&m.update, &mut f),
        ws::ServerMessage::UnsubscribeMultiApplied(m) => database(&m.update, &mut f),
        ws::ServerMessage::OneOffQueryResponse(m) => {
            for table in m.tables.iter() {
                for row in codec::rows(&table.rows) {
                    f(&table.table_name, &row);
                }
            }
        }
        _ => {}
    }
}

/// One mutation of a byte string.
#[derive(Debug, Clone)]
enum Op {
    Flip(usize, u8),
    Set(usize, u8),
    /// A little-endian u32 written over four bytes: BSATN's lengths and tags.
    Length(usize, u32),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Duplicate(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, 0u8..8).prop_map(|(i, bit)| Op::Flip(i, 1 << bit)),
        2 => (at, any::<u8>()).prop_map(|(i, b)| Op::Set(i, b)),
        2 => (at, prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(0x7fff_ffff), any::<u32>()])
            .prop_map(|(i, v)| Op::Length(i, v)),
        1 => at.prop_map(Op::Truncate),
        1 => (at, proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Op::Insert(i, b)),
        1 => (at, 1usize..64).prop_map(|(i, n)| Op::Remove(i, n)),
        1 => (at, 1usize..256).prop_map(|(i, n)| Op::Duplicate(i, n)),
    ]
}

fn mutate(seed: &[u8], ops: &[Op]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for op in ops {
        if b.is_empty() {
            break;
        }
        let at = |i: usize, len: usize| i % len;
        match op {
            Op::Flip(i, mask) => {
                let i = at(*i, b.len());
                b[i] ^= mask;
            }
            Op::Set(i, v) => {
                let i = at(*i, b.len());
                b[i] = *v;
            }
            Op::Length(i, v) => {
                let i = at(*i, b.len());
                for (k, byte) in v.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = byte;
                    }
                }
            }
            Op::Truncate(i) => b.truncate(at(*i, b.len())),
            Op::Insert(i, bytes) => {
                let i = at(*i, b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Op::Remove(i, n) => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Op::Duplicate(i, n) => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                let copy = b[i..end].to_vec();
                b.splice(end..end, copy);
            }
        }
    }
    b
}

/// A mutated frame through the whole read path: decode, decompress, every row
/// checked, decoded (dynamic) and keyed. Nothing may panic.
fn read_frame(frame: &[u8]) {
    let Ok(mut message) = codec::decode_server_message(frame, limits()) else { return };
    codec::decompress_updates(&mut message, limits());
    for_each_row(&message, read_row);
}

/// A row of `table` through the row path: the guard, the dynamic and typed
/// decodes, the key taken from the bytes.
fn read_row(table: &str, row: &[u8]) {
    let Some(t) = schema().table(table) else { return };
    let ty = AlgebraicType::Product(t.row_type.clone());
    let checked = guard::check(&Typespace::default(), &ty, row).is_ok();
    let decoded = t.decode(row);
    assert!(checked || decoded.is_err(), "a row the guard refuses never decodes ({table})");
    if let Some(keys) = KeyExtractor::new(&t.row_type, &t.primary_key) {
        let key = keys.key(&bytes::Bytes::copy_from_slice(row));
        if decoded.is_ok() && !t.primary_key.is_empty() {
            assert!(key.is_some(), "a row that decodes has a key ({table})");
        }
    }
    if let Ok(value) = decoded {
        let _ = t.row_to_json(&value);
    }
}

/// Runs `target` on `cases` inputs from `strategy`, or, with
/// `SPACELINK_FUZZ_SECONDS` set, for that long; returns the executions.
fn fuzz<S: Strategy>(name: &str, strategy: S, target: impl Fn(S::Value)) -> u64
where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("SPACELINK_FUZZ_SECONDS").ok().and_then(|s| s.parse::<f64>().ok());
    let batch = if budget.is_some() { 2_000 } else { 256 };
    let config = Config { cases: batch, failure_persistence: None, ..Config::default() };
    let deadline = budget.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut executions = 0u64;
    let start = Instant::now();
    loop {
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&strategy, |input| {
            target(input);
            Ok::<(), TestCaseError>(())
        });
        if let Err(e) = result {
            panic!("fuzz {name}: a crash after {executions} executions: {e}");
        }
        executions += u64::from(batch);
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    // Read by `cargo xtask fuzz` (one line per target).
    println!(
        "fuzz-figures target={name} executions={executions} seconds={:.1} corpus={} crashes=0",
        start.elapsed().as_secs_f64(),
        match name {
            "frames" => frames().len(),
            "rows" => rows().len(),
            _ => 1,
        }
    );
    executions
}

#[test]
fn fuzz_frames() {
    let strategy = (0..frames().len(), proptest::collection::vec(op(), 1..8));
    fuzz("frames", strategy, |(seed, ops)| read_frame(&mutate(&frames()[seed], &ops)));
}

#[test]
fn fuzz_rows() {
    let strategy = (0..rows().len(), proptest::collection::vec(op(), 1..6));
    fuzz("rows", strategy, |(seed, ops)| {
        let (table, row) = &rows()[seed];
        read_row(table, &mutate(row, &ops));
    });
}

#[test]
fn fuzz_schema() {
    let strategy = proptest::collection::vec(op(), 1..6);
    fuzz("schema", strategy, |ops| {
        let text = mutate(schema_text().as_bytes(), &ops);
        let _ = ModuleSchema::from_json(&String::from_utf8_lossy(&text));
    });
}

#[test]
fn the_seeds_themselves_decode() {
    for frame in frames() {
        let message = codec::decode_server_message(frame, limits()).unwrap();
        let _ = codec::server_message_kind(&message);
    }
    for (table, row) in rows() {
        let t = schema().table(table).unwrap();
        t.decode(row).unwrap();
    }
}
