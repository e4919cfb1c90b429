//! The apply path makes no per-row temporary allocation: with a counting
//! global allocator (`stats_alloc`), a transaction of N rows into a cache of
//! typed rows with a spatial index allocates one block per new row (the row
//! itself, decoded, kept) and beyond that only a handful (the vectors' and
//! maps' growth), whether it updates, re-inserts or deletes.
//! The binary has no test harness (`harness = false`): its `main` runs alone
//! on one thread, so nothing else allocates while it counts.
#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::sync::Arc;

use bytes::Bytes;
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::sats::{AlgebraicType, ProductType};
use spacelink_connection::ModuleSchema;
use spacelink_sync::spatial::{Positions, SpatialSetup};
use spacelink_sync::{ClientCache, RowTypes, SchemaKeys, TableDelta};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Debug, spacelink_connection::sats::de::Deserialize)]
#[sats(crate = spacelink_connection::sats)]
#[allow(dead_code)]
struct Thing {
    id: u64,
    world: u32,
    x: f32,
    y: f32,
}

struct Xy;

impl Positions for Xy {
    fn position(&self, row: &[u8]) -> Option<(u32, f32, f32)> {
        let world = u32::from_le_bytes(row.get(8..12)?.try_into().ok()?);
        let x = f32::from_le_bytes(row.get(12..16)?.try_into().ok()?);
        let y = f32::from_le_bytes(row.get(16..20)?.try_into().ok()?);
        Some((world, x, y))
    }
}

fn row(id: u64, v: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&(v * 2.0).to_le_bytes());
    out
}

/// `n` rows in one buffer, each row a slice of it (as a frame's row list is).
fn rows(ids: std::ops::Range<u64>, v: f32) -> Vec<Bytes> {
    let mut buffer = Vec::new();
    for id in ids.clone() {
        buffer.extend_from_slice(&row(id, v));
    }
    let buffer = Bytes::from(buffer);
    (0..ids.count()).map(|i| buffer.slice(i * 20..(i + 1) * 20)).collect()
}

fn main() {
    let mut module = RawModuleDefV9Builder::new();
    let columns: ProductType = [
        ("id", AlgebraicType::U64),
        ("world", AlgebraicType::U32),
        ("x", AlgebraicType::F32),
        ("y", AlgebraicType::F32),
    ]
    .into_iter()
    .collect();
    module.build_table_with_new_type("thing", columns, true).with_primary_key(0u16);
    let schema = Arc::new(ModuleSchema::from_raw(module.finish()).unwrap());
    let types = RowTypes::new().register::<Thing>("thing");
    let spatial = SpatialSetup { table: "thing".into(), cell: 10.0, positions: Arc::new(Xy) };
    let cache = ClientCache::with_parts(Arc::new(SchemaKeys::new(schema.clone())), types.bind(&schema), Some(spatial));

    const N: u64 = 20_000;
    // Warm up: the table, the index and the writer's buffers exist at their size.
    let first = rows(0..N, 1.0);
    cache.apply(&[TableDelta { table: "thing".into(), deletes: Vec::new(), inserts: first.clone() }]);
    cache.apply(&[TableDelta { table: "thing".into(), deletes: first.clone(), inserts: rows(0..N, 2.0) }]);

    let sample = cache.rows("thing");
    assert!(sample.iter().all(|r| r.get::<Thing>().is_some()), "every row is decoded into its registered type");
    let mut failed = false;
    let mut check = |what: &str, deltas: Vec<TableDelta>, kept_per_row: u64| {
        let region = Region::new(GLOBAL);
        let changes = cache.apply(&deltas);
        let stats = region.change();
        drop(changes);
        // A per-row temporary (a key, a scratch entry, a decode buffer) would be an
        // allocation per row on top of the rows kept. (Deallocations are not
        // bounded: rows replaced a transaction ago are freed here, when the
        // spare copy lets go of them.)
        let bound = N * kept_per_row + 200;
        let ok = (stats.allocations as u64) < bound;
        println!(
            "{what}: {N} rows, {} allocations, {} deallocations, {} reallocations: {}",
            stats.allocations,
            stats.deallocations,
            stats.reallocations,
            if ok { "ok" } else { "FAILED" }
        );
        failed |= !ok;
    };
    let current = rows(0..N, 2.0);
    let next = rows(0..N, 3.0);
    check(
        "update every row (the rows of 3.0 are new: one block each)",
        vec![TableDelta { table: "thing".into(), deletes: current.clone(), inserts: next.clone() }],
        1,
    );
    check(
        "a second query sees the same rows (nothing is decoded again)",
        vec![TableDelta { table: "thing".into(), deletes: Vec::new(), inserts: next.clone() }],
        0,
    );
    check(
        "both queries let go (every row deleted)",
        vec![
            TableDelta { table: "thing".into(), deletes: next.clone(), inserts: Vec::new() },
            TableDelta { table: "thing".into(), deletes: next.clone(), inserts: Vec::new() },
        ],
        0,
    );
    assert_eq!(cache.count("thing"), 0);
    if failed {
        eprintln!("the apply path allocated per row");
        std::process::exit(1);
    }
    println!("1 passed, 0 failed");
}
