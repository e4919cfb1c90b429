//! The sync thread's cost per row, without a server or a socket: a
//! [`ClientCache`] of typed rows (a `u64` primary key and three small
//! columns, like the bench's `entity`) applies the transactions the bench's
//! scenarios send, one at a time, with the changes dropped as soon as made:
//!
//! - `load`: 100k rows into an empty table (an initial subscription);
//! - `insert_then_delete`: into 100k rows, 10k new rows in one transaction,
//!   then the same 10k deleted in the next (the cache ends as it began);
//! - `update`: 10k rows of the 100k changed in one transaction.
//!
//! Run: `cargo bench -p spacelink-sync --bench apply -- --warm-up-time 1 --measurement-time 5`.
//! The end-to-end figures, against the official SDK, are `cargo xtask bench`'s.
//!
//! Timings on a shared two-core machine move by 15 % from run to run, more
//! than most changes to this path. For a figure that does not move, run a
//! fixed number of one scenario's transactions (`APPLY_FIXED=<scenario>:<n>`,
//! after the 100k rows are loaded; nothing timed) under cachegrind, which
//! counts instructions and simulated cache misses, and take the difference
//! of two counts (the load and the first writes' shard copies cancel out):
//!
//! ```text
//! for n in 4 8; do APPLY_FIXED=insert_then_delete:$n valgrind --tool=cachegrind --cache-sim=yes \
//!   --LL=1048576,16,64 --cachegrind-out-file=cg.$n target/release/deps/apply-<hash>; done
//! cg_diff cg.4 cg.8 > cg.diff && cg_annotate --sort=DLmr cg.diff
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
use spacelink_connection::sats::{AlgebraicType, ProductType};
use spacelink_connection::ModuleSchema;
use spacelink_sync::{ClientCache, RowTypes, SchemaKeys, TableDelta};

#[derive(Debug, spacelink_connection::sats::de::Deserialize)]
#[sats(crate = spacelink_connection::sats)]
#[allow(dead_code)]
struct Thing {
    id: u64,
    world: u32,
    x: f32,
    y: f32,
}

const TABLE: &str = "thing";
const LOADED: u64 = 100_000;
const TXN: u64 = 10_000;

/// The rows of `ids`, each a slice of one buffer (as a frame's row list is).
fn rows(ids: std::ops::Range<u64>, v: f32) -> Vec<Bytes> {
    let mut buffer = Vec::with_capacity((ids.end - ids.start) as usize * 20);
    for id in ids.clone() {
        buffer.extend_from_slice(&id.to_le_bytes());
        buffer.extend_from_slice(&1u32.to_le_bytes());
        buffer.extend_from_slice(&v.to_le_bytes());
        buffer.extend_from_slice(&(v * 2.0).to_le_bytes());
    }
    let buffer = Bytes::from(buffer);
    (0..ids.count()).map(|i| buffer.slice(i * 20..(i + 1) * 20)).collect()
}

fn cache() -> ClientCache {
    let mut module = RawModuleDefV9Builder::new();
    let columns: ProductType = [
        ("id", AlgebraicType::U64),
        ("world", AlgebraicType::U32),
        ("x", AlgebraicType::F32),
        ("y", AlgebraicType::F32),
    ]
    .into_iter()
    .collect();
    module.build_table_with_new_type(TABLE, columns, true).with_primary_key(0u16);
    let schema = Arc::new(ModuleSchema::from_raw(module.finish()).unwrap());
    let types = RowTypes::new().register::<Thing>(TABLE);
    ClientCache::with_parts(Arc::new(SchemaKeys::new(schema.clone())), types.bind(&schema), None)
}

fn delta(deletes: Vec<Bytes>, inserts: Vec<Bytes>) -> [TableDelta; 1] {
    [TableDelta { table: TABLE.into(), deletes, inserts }]
}

/// The `APPLY_FIXED` run: `<scenario>:<n>` (see the module's docs).
fn fixed(spec: &str) {
    let (scenario, n) = spec.split_once(':').expect("APPLY_FIXED=<scenario>:<n>");
    let n: usize = n.parse().expect("APPLY_FIXED's <n>: a number");
    let cache = cache();
    drop(cache.apply(&delta(Vec::new(), rows(0..LOADED, 1.0))));
    let new = rows(LOADED..LOADED + TXN, 1.0);
    let versions = [rows(0..TXN, 1.0), rows(0..TXN, 2.0)];
    for turn in 0..n {
        match scenario {
            "load" => drop(black_box(cache.empty_like().apply(&delta(Vec::new(), rows(0..LOADED, 1.0))))),
            "insert_then_delete" => {
                drop(black_box(cache.apply(&delta(Vec::new(), new.clone()))));
                drop(black_box(cache.apply(&delta(new.clone(), Vec::new()))));
            }
            "update" => {
                let (old, next) = (&versions[turn % 2], &versions[(turn + 1) % 2]);
                drop(black_box(cache.apply(&delta(old.clone(), next.clone()))));
            }
            other => panic!("APPLY_FIXED: no scenario {other} (load, insert_then_delete, update)"),
        }
    }
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.sample_size(20);

    group.throughput(Throughput::Elements(LOADED));
    let loaded = rows(0..LOADED, 1.0);
    group.bench_function("load", |b| {
        // The cache is returned with the changes: dropped after the measurement.
        b.iter_batched(
            cache,
            |cache| {
                let changes = cache.apply(&delta(Vec::new(), loaded.clone()));
                (cache, changes)
            },
            BatchSize::PerIteration,
        )
    });

    let cache = cache();
    drop(cache.apply(&delta(Vec::new(), loaded.clone())));

    group.throughput(Throughput::Elements(2 * TXN));
    let new = rows(LOADED..LOADED + TXN, 1.0);
    group.bench_function("insert_then_delete", |b| {
        b.iter(|| {
            drop(black_box(cache.apply(&delta(Vec::new(), new.clone()))));
            drop(black_box(cache.apply(&delta(new.clone(), Vec::new()))));
        })
    });

    group.throughput(Throughput::Elements(TXN));
    let versions = [rows(0..TXN, 1.0), rows(0..TXN, 2.0)];
    let mut turn = 0;
    group.bench_function("update", |b| {
        b.iter(|| {
            let (old, next) = (&versions[turn], &versions[turn ^ 1]);
            turn ^= 1;
            drop(black_box(cache.apply(&delta(old.clone(), next.clone()))));
        })
    });
    group.finish();
}

criterion_group!(benches, apply);

fn main() {
    match std::env::var("APPLY_FIXED") {
        Ok(spec) => fixed(&spec),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
