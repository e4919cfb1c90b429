//! Property tests of the client cache against simple models.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use spacelink_connection::sats::AlgebraicType;
use spacelink_sync::cache::{CacheView, ClientCache, RowChange, RowKey, RowKeys, TableDelta};
use spacelink_sync::row::Decoders;
use spacelink_sync::unique::{TableUnique, UniqueColumns};

/// The keyed table: rows are `[id, 0, 0, 0, value]`, keyed by their first 4 bytes.
const KEYED: &str = "keyed";
/// A table without a primary key: rows are keyed by their whole bytes.
const PLAIN: &str = "plain";
/// Another table without a primary key.
const OTHER: &str = "other";

/// Tables named `keyed` are keyed by their rows' first 4 bytes, the others by the whole row.
struct TestKeys;

impl RowKeys for TestKeys {
    fn key(&self, table: &str, row: &[u8]) -> RowKey {
        RowKey::copy_from_slice(if table == KEYED { &row[..row.len().min(4)] } else { row })
    }
}

fn key_of(table: &str, row: &[u8]) -> Vec<u8> {
    TestKeys.key(table, row).to_vec()
}

fn keyed_row(id: u8, value: u8) -> Vec<u8> {
    vec![id, 0, 0, 0, value]
}

/// What the client should hold: (table, key) → (row, how many live queries hold it).
type Model = BTreeMap<(String, Vec<u8>), (Vec<u8>, u32)>;

/// A change, in a form that sorts: (table, key, kind, old, new).
type Change = (String, Vec<u8>, &'static str, Option<Vec<u8>>, Option<Vec<u8>>);

fn normalize(changes: &[RowChange]) -> Vec<Change> {
    let mut out: Vec<Change> = changes
        .iter()
        .map(|c| match c {
            RowChange::Insert { table, row, .. } => {
                (table.to_string(), key_of(table, row), "insert", None, Some(row.to_vec()))
            }
            RowChange::Update { table, old, new, .. } => {
                (table.to_string(), key_of(table, new), "update", Some(old.to_vec()), Some(new.to_vec()))
            }
            RowChange::Delete { table, row, .. } => {
                (table.to_string(), key_of(table, row), "delete", Some(row.to_vec()), None)
            }
        })
        .collect();
    out.sort();
    out
}

/// The minimal changes from `before` to `after`.
fn diff(before: &Model, after: &Model) -> Vec<Change> {
    let keys: BTreeSet<&(String, Vec<u8>)> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (table, key) = (k.0.clone(), k.1.clone());
        match (before.get(k), after.get(k)) {
            (None, Some((new, _))) => out.push((table, key, "insert", None, Some(new.clone()))),
            (Some((old, _)), None) => out.push((table, key, "delete", Some(old.clone()), None)),
            (Some((old, _)), Some((new, _))) if old != new => {
                out.push((table, key, "update", Some(old.clone()), Some(new.clone())))
            }
            _ => {}
        }
    }
    out.sort();
    out
}

/// Everything the cache holds, in the model's form.
fn contents(cache: &ClientCache) -> Model {
    cache.with_view(|view| {
        let mut model = Model::new();
        for table in view.tables() {
            for (key, row) in view.entries(&table) {
                let count = view.refcount(&table, &key);
                model.insert((table.clone(), key.to_vec()), (row.to_vec(), count));
            }
        }
        model
    })
}

fn assert_cache_is(cache: &ClientCache, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(&contents(cache), model);
    let tables: BTreeSet<String> = model.keys().map(|(t, _)| t.clone()).collect();
    prop_assert_eq!(cache.tables(), tables.iter().cloned().collect::<Vec<_>>());
    for table in [KEYED, PLAIN, OTHER] {
        prop_assert_eq!(cache.count(table), model.keys().filter(|(t, _)| t == table).count());
    }
    for ((table, key), (row, count)) in model {
        let key = RowKey::copy_from_slice(key);
        prop_assert_eq!(cache.get(table, &key).map(|r| r.bytes().clone()), Some(Bytes::copy_from_slice(row)));
        prop_assert_eq!(cache.refcount(table, &key), *count);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Property 4: a model server with live queries.

/// The keyed table's unique column: `value`, the row's last byte (the row
/// is a `u32` id, then a `u8` value).
const VALUE: usize = 1;

/// A cache whose keyed table indexes its unique `value` column.
fn indexed_cache() -> ClientCache {
    let row_type = [("id", AlgebraicType::U32), ("value", AlgebraicType::U8)].into_iter().collect();
    let unique = UniqueColumns::none().with_table(KEYED, TableUnique::new(&row_type, &[VALUE]));
    ClientCache::with_indexes(std::sync::Arc::new(TestKeys), Decoders::none(), None, unique)
}

/// The keyed table's unique index equals a scan of its rows: every row's
/// value leads to its key, by the index's entries and by a lookup, and no
/// entry is left over.
fn assert_index_is_a_scan(view: &CacheView<'_>) -> Result<(), TestCaseError> {
    let mut scanned = BTreeMap::new();
    view.for_each_row(KEYED, |key, row| {
        scanned.insert(row.bytes()[4..].to_vec(), key.to_vec());
    });
    prop_assert_eq!(scanned.len(), view.count(KEYED), "the model server keeps values unique");
    let indexed: BTreeMap<Vec<u8>, Vec<u8>> =
        view.unique_entries(KEYED, VALUE).into_iter().map(|(v, k)| (v.to_vec(), k.to_vec())).collect();
    prop_assert_eq!(&indexed, &scanned);
    for (value, key) in &scanned {
        let found = view.find_unique(KEYED, VALUE, value).map(|row| key_of(KEYED, row.bytes()));
        prop_assert_eq!(found.as_ref(), Some(key));
        let by_key = view.unique_key(KEYED, VALUE, value).map(|k| k.to_vec());
        prop_assert_eq!(by_key.as_ref(), Some(key));
    }
    for absent in (0u8..8).filter(|v| !scanned.contains_key(&vec![*v])) {
        prop_assert!(view.find_unique(KEYED, VALUE, &[absent]).is_none());
    }
    Ok(())
}

/// A live query: the rows of `table` whose last byte, modulo 8, is a bit set in `mask`.
#[derive(Debug, Clone, Copy)]
struct Query {
    keyed: bool,
    mask: u8,
}

impl Query {
    fn table(self) -> &'static str {
        if self.keyed {
            KEYED
        } else {
            PLAIN
        }
    }

    fn matches(self, row: &[u8]) -> bool {
        row.last().is_some_and(|v| self.mask & (1 << (v % 8)) != 0)
    }
}

/// One change to the model server.
#[derive(Debug, Clone)]
enum Op {
    /// Insert or update the keyed row `id`.
    Upsert { id: u8, value: u8 },
    /// Delete the keyed row `id` (if there).
    Remove { id: u8 },
    /// Insert a plain row (tables are sets: nothing if already there).
    PlainInsert { a: u8, b: u8 },
    /// Delete a plain row (if there).
    PlainRemove { a: u8, b: u8 },
    /// Start query `q` (its rows arrive as inserts).
    Subscribe { q: usize },
    /// Stop query `q` (its rows arrive as deletes).
    Unsubscribe { q: usize },
}

#[derive(Debug, Clone, Default)]
struct Server {
    keyed: BTreeMap<u8, Vec<u8>>,
    plain: BTreeSet<Vec<u8>>,
    live: BTreeSet<usize>,
}

impl Server {
    fn apply(&mut self, op: &Op, queries: &[Query]) {
        match *op {
            // The value column is unique: the server refuses a value another row holds.
            Op::Upsert { id, value } if !self.keyed.iter().any(|(other, row)| *other != id && row[4] == value) => {
                self.keyed.insert(id, keyed_row(id, value));
            }
            Op::Upsert { .. } => {}
            Op::Remove { id } => {
                self.keyed.remove(&id);
            }
            Op::PlainInsert { a, b } => {
                self.plain.insert(vec![a, b]);
            }
            Op::PlainRemove { a, b } => {
                self.plain.remove(&vec![a, b]);
            }
            Op::Subscribe { q } => {
                self.live.insert(q % queries.len());
            }
            Op::Unsubscribe { q } => {
                self.live.remove(&(q % queries.len()));
            }
        }
    }

    /// The rows query `q` sees now (nothing if it is not live).
    fn matched(&self, q: usize, query: Query) -> BTreeSet<Vec<u8>> {
        if !self.live.contains(&q) {
            return BTreeSet::new();
        }
        let rows: Box<dyn Iterator<Item = &Vec<u8>>> =
            if query.keyed { Box::new(self.keyed.values()) } else { Box::new(self.plain.iter()) };
        rows.filter(|r| query.matches(r)).cloned().collect()
    }

    /// What the client should hold: each row once per live query that matches it.
    fn client_model(&self, queries: &[Query]) -> Model {
        let mut model = Model::new();
        for (q, query) in queries.iter().enumerate() {
            for row in self.matched(q, *query) {
                let entry =
                    model.entry((query.table().to_string(), key_of(query.table(), &row))).or_insert((row.clone(), 0));
                entry.0 = row;
                entry.1 += 1;
            }
        }
        model
    }
}

/// What the server sends for a transaction: per query, the rows it stopped
/// matching as deletes and the rows it started matching as inserts.
fn server_deltas(before: &Server, after: &Server, queries: &[Query], rotate: usize) -> Vec<TableDelta> {
    let mut deltas = Vec::new();
    for (q, query) in queries.iter().enumerate() {
        let (old, new) = (before.matched(q, *query), after.matched(q, *query));
        let mut delta = TableDelta::new(query.table());
        delta.deletes = old.difference(&new).map(|r| Bytes::copy_from_slice(r)).collect();
        delta.inserts = new.difference(&old).map(|r| Bytes::copy_from_slice(r)).collect();
        if !delta.is_empty() {
            deltas.push(delta);
        }
    }
    if !deltas.is_empty() {
        let n = rotate % deltas.len();
        deltas.rotate_left(n);
    }
    deltas
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..8).prop_map(|(id, value)| Op::Upsert { id, value }),
        2 => (0u8..6).prop_map(|id| Op::Remove { id }),
        3 => (0u8..3, 0u8..4).prop_map(|(a, b)| Op::PlainInsert { a, b }),
        2 => (0u8..3, 0u8..4).prop_map(|(a, b)| Op::PlainRemove { a, b }),
        1 => (0usize..8).prop_map(|q| Op::Subscribe { q }),
        1 => (0usize..8).prop_map(|q| Op::Unsubscribe { q }),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    (any::<bool>(), 1u8..=255).prop_map(|(keyed, mask)| Query { keyed, mask })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (random transaction sequences applied to the cache equal a simple model, and in every published snapshot, and every snapshot held, the unique index equals a scan of the rows)
    #[test]
    fn prop_transactions_keep_the_cache_equal_to_the_model(
        queries in prop::collection::vec(query(), 1..5),
        initial in prop::collection::btree_set(0usize..8, 0..5),
        transactions in prop::collection::vec((prop::collection::vec(op(), 1..6), any::<usize>(), any::<bool>()), 1..25),
    ) {
        let cache = indexed_cache();
        // Snapshots kept (as a game keeps one past a frame) with the state they saw.
        let mut held = Vec::new();
        let mut server = Server::default();
        // The first queries: every row they match arrives as inserts (empty server: nothing).
        let mut start = server.clone();
        start.live = initial.iter().map(|q| q % queries.len()).collect();
        let changes = cache.apply(&server_deltas(&server, &start, &queries, 0));
        prop_assert!(changes.is_empty());
        server = start;
        for (ops, rotate, hold) in &transactions {
            let before = server.clone();
            for op in ops {
                server.apply(op, &queries);
            }
            let (model_before, model_after) = (before.client_model(&queries), server.client_model(&queries));
            let changes = cache.apply(&server_deltas(&before, &server, &queries, *rotate));
            prop_assert_eq!(normalize(&changes), diff(&model_before, &model_after));
            assert_cache_is(&cache, &model_after)?;
            cache.with_view(assert_index_is_a_scan)?;
            if *hold && held.len() < 4 {
                held.push((cache.snapshot(), contents(&cache)));
            }
        }
        for (snapshot, then) in &held {
            let view = snapshot.view();
            let rows: usize = then.keys().filter(|(t, _)| t == KEYED).count();
            prop_assert_eq!(view.count(KEYED), rows, "a held snapshot changed");
            assert_index_is_a_scan(&view)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (with one query per table, an events-only table tells exactly the changes the same table cached would, transaction by transaction, and keeps no rows)
    #[test]
    fn prop_events_only_tables_tell_what_a_cache_would_and_keep_nothing(
        masks in (1u8..=255, 1u8..=255),
        transactions in prop::collection::vec((prop::collection::vec(op(), 1..6), any::<usize>()), 1..25),
    ) {
        let queries = [Query { keyed: true, mask: masks.0 }, Query { keyed: false, mask: masks.1 }];
        let events = ClientCache::new(TestKeys).with_events_only([KEYED, PLAIN]);
        let cached = ClientCache::new(TestKeys);
        let mut server = Server { live: [0, 1].into(), ..Server::default() };
        for (ops, rotate) in &transactions {
            let before = server.clone();
            for op in ops {
                server.apply(op, &queries);
            }
            let deltas = server_deltas(&before, &server, &queries, *rotate);
            let told = normalize(&events.apply(&deltas));
            prop_assert_eq!(&told, &normalize(&cached.apply(&deltas)));
            prop_assert_eq!(told, diff(&before.client_model(&queries), &server.client_model(&queries)));
            prop_assert_eq!(events.count(KEYED) + events.count(PLAIN), 0);
            prop_assert!(events.tables().is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// Property 10: reconciliation.

/// A random cache state: keyed rows (id → value, count), plain and other rows (row → count).
#[derive(Debug, Clone)]
struct State {
    keyed: BTreeMap<u8, (u8, u32)>,
    plain: BTreeMap<Vec<u8>, u32>,
    other: BTreeMap<Vec<u8>, u32>,
}

fn state() -> impl Strategy<Value = State> {
    let plain = || prop::collection::btree_map(prop::collection::vec(0u8..3, 2), 1u32..4, 0..6);
    (prop::collection::btree_map(0u8..8, (0u8..3, 1u32..4), 0..8), plain(), plain())
        .prop_map(|(keyed, plain, other)| State { keyed, plain, other })
}

impl State {
    fn model(&self) -> Model {
        let mut model = Model::new();
        for (id, (value, count)) in &self.keyed {
            let row = keyed_row(*id, *value);
            model.insert((KEYED.to_string(), key_of(KEYED, &row)), (row, *count));
        }
        for (table, rows) in [(PLAIN, &self.plain), (OTHER, &self.other)] {
            for (row, count) in rows {
                model.insert((table.to_string(), row.clone()), (row.clone(), *count));
            }
        }
        model
    }

    /// The state as inserts, each row once per query holding it, spread over `queries` deltas per table.
    fn deltas(&self, queries: usize) -> Vec<TableDelta> {
        let mut deltas = Vec::new();
        let mut by_table: BTreeMap<&str, Vec<(Vec<u8>, u32)>> = BTreeMap::new();
        for ((table, _), (row, count)) in self.model() {
            let table = [KEYED, PLAIN, OTHER].into_iter().find(|t| *t == table).unwrap_or(OTHER);
            by_table.entry(table).or_default().push((row, count));
        }
        for (table, rows) in by_table {
            let mut parts: Vec<TableDelta> = (0..queries.max(1)).map(|_| TableDelta::new(table)).collect();
            let mut next = 0;
            let n = parts.len();
            for (row, count) in rows {
                for _ in 0..count {
                    parts[next % n].inserts.push(Bytes::from(row.clone()));
                    next += 1;
                }
            }
            deltas.extend(parts);
        }
        deltas
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 10: Network Resilience and Recovery (reconciliation of random stale/fresh pairs yields exactly the minimal callbacks)
    #[test]
    fn prop_reconcile_yields_exactly_the_minimal_changes(
        stale in state(),
        fresh in state(),
        stale_queries in 1usize..4,
        fresh_queries in 1usize..4,
    ) {
        let cache = ClientCache::new(TestKeys);
        cache.apply(&stale.deltas(stale_queries));
        assert_cache_is(&cache, &stale.model())?;

        let changes = cache.reconcile(&fresh.deltas(fresh_queries));
        let expected = diff(&stale.model(), &fresh.model());
        let got = normalize(&changes);
        prop_assert_eq!(&got, &expected);
        // Minimal: at most one change per row, and an update always changes the bytes.
        let keys: BTreeSet<(&String, &Vec<u8>)> = got.iter().map(|c| (&c.0, &c.1)).collect();
        prop_assert_eq!(keys.len(), got.len());
        for change in &changes {
            if let RowChange::Update { old, new, .. } = change {
                prop_assert_ne!(old, new);
            }
        }
        assert_cache_is(&cache, &fresh.model())?;

        // Reconciling with the same state again changes nothing.
        prop_assert!(cache.reconcile(&fresh.deltas(fresh_queries)).is_empty());
        assert_cache_is(&cache, &fresh.model())?;
    }
}

// ---------------------------------------------------------------------------
// Property 12: overlapping subscriptions.

/// Splits `k` copies into transactions: a new transaction starts after copy `i` where `cuts[i]`.
fn batches(k: usize, cuts: &[bool]) -> Vec<usize> {
    let mut out = vec![0];
    for i in 0..k {
        if let Some(last) = out.last_mut() {
            *last += 1;
        }
        if i + 1 < k && cuts.get(i).copied().unwrap_or(false) {
            out.push(0);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Feature: spacetimedb-integration, Property 12: Dynamic Subscription Management (overlapping subscriptions keep a row until the last one lets go)
    #[test]
    fn prop_overlapping_subscriptions_keep_a_row_until_the_last_delete(
        keyed in any::<bool>(),
        id in 0u8..4,
        value in 0u8..4,
        update_to in prop::option::of(0u8..4),
        k in 1usize..7,
        insert_cuts in prop::collection::vec(any::<bool>(), 6),
        delete_cuts in prop::collection::vec(any::<bool>(), 6),
        noise in prop::collection::btree_set(4u8..10, 0..4),
    ) {
        let table = if keyed { KEYED } else { PLAIN };
        let make = |v: u8| if keyed { keyed_row(id, v) } else { vec![id, v] };
        let mut row = Bytes::from(make(value));
        let key = RowKey::from(key_of(table, &row));
        let cache = ClientCache::new(TestKeys);

        // Other rows of the same table, held by one query: they must never be touched.
        // Their ids (4..10) differ from the row's (0..4), so their keys differ too.
        let noise: Vec<Bytes> =
            noise.into_iter().map(|n| Bytes::from(if keyed { keyed_row(n, value) } else { vec![n, value] })).collect();
        let mut others = TableDelta::new(table);
        others.inserts = noise.clone();
        prop_assert_eq!(cache.apply(&[others]).len(), noise.len());

        // k queries start matching the row, in one or several transactions.
        let mut held = 0;
        for (i, n) in batches(k, &insert_cuts).into_iter().enumerate() {
            let deltas: Vec<TableDelta> = (0..n).map(|_| TableDelta::new(table).insert(row.clone())).collect();
            let changes = cache.apply(&deltas);
            held += n;
            if i == 0 {
                prop_assert_eq!(changes, vec![RowChange::Insert { table: table.into(), key: key.clone(), row: row.clone().into() }]);
            } else {
                prop_assert!(changes.is_empty(), "insert by another query fired {:?}", changes);
            }
            prop_assert_eq!(cache.refcount(table, &key), held as u32);
            prop_assert_eq!(cache.get(table, &key), Some(row.clone().into()));
        }

        // In a keyed table, an update seen by all k queries is one Update (or nothing if the bytes are equal).
        if let (true, Some(v)) = (keyed, update_to) {
            let new = Bytes::from(make(v));
            let deltas: Vec<TableDelta> = (0..k).map(|_| TableDelta::new(table).delete(row.clone()).insert(new.clone())).collect();
            let changes = cache.apply(&deltas);
            if new == row {
                prop_assert!(changes.is_empty());
            } else {
                prop_assert_eq!(changes, vec![RowChange::Update { table: table.into(), key: key.clone(), old: row.clone().into(), new: new.clone().into() }]);
            }
            prop_assert_eq!(cache.refcount(table, &key), k as u32);
            row = new;
        }

        // The queries let go one by one: only the last delete fires, with the row as cached.
        for n in batches(k, &delete_cuts) {
            let deltas: Vec<TableDelta> = (0..n).map(|_| TableDelta::new(table).delete(row.clone())).collect();
            let changes = cache.apply(&deltas);
            held -= n;
            if held == 0 {
                prop_assert_eq!(changes, vec![RowChange::Delete { table: table.into(), key: key.clone(), row: row.clone().into() }]);
                prop_assert_eq!(cache.get(table, &key), None);
            } else {
                prop_assert!(changes.is_empty(), "delete with {} queries left fired {:?}", held, changes);
                prop_assert_eq!(cache.get(table, &key), Some(row.clone().into()));
            }
            prop_assert_eq!(cache.refcount(table, &key), held as u32);
        }

        // The other rows are still there, once each.
        prop_assert_eq!(cache.count(table), noise.len());
        for other in &noise {
            let other_key = RowKey::from(key_of(table, other));
            prop_assert_eq!(cache.refcount(table, &other_key), 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Property 4, through readers: what readers see is the model, transaction by transaction.

/// The keyed table's rows are placed on map 1 at x = their value (the spatial index's input).
struct ValueIsX;

impl spacelink_sync::spatial::Positions for ValueIsX {
    fn position(&self, row: &[u8]) -> Option<(u32, f32, f32)> {
        Some((1, f32::from(*row.get(4)?), 0.0))
    }
}

/// What the spatial index of `view` must hold for `model`: every keyed row,
/// found around its own position, and nothing else.
fn check_index(view: &spacelink_sync::CacheView<'_>, model: &Model) -> Result<(), TestCaseError> {
    let keyed: BTreeSet<Vec<u8>> =
        model.iter().filter(|((t, _), _)| t == KEYED).map(|(_, (row, _))| row.clone()).collect();
    prop_assert_eq!(view.indexed(), keyed.len());
    let all: BTreeSet<Vec<u8>> = view.within(1, 128.0, 0.0, 130.0).iter().map(|r| r.to_vec()).collect();
    prop_assert_eq!(&all, &keyed);
    for row in &keyed {
        let near: Vec<Vec<u8>> = view.within(1, f32::from(row[4]), 0.0, 0.5).iter().map(|r| r.to_vec()).collect();
        prop_assert!(near.contains(row), "{:?} is not found at its position", row);
    }
    Ok(())
}

fn view_contents(view: &spacelink_sync::CacheView<'_>) -> Model {
    let mut model = Model::new();
    for table in view.tables() {
        for (key, row) in view.entries(&table) {
            model.insert((table.clone(), key.to_vec()), (row.to_vec(), view.refcount(&table, &key)));
        }
    }
    model
}

/// One step of the client's life: a transaction, or a reconnect whose fresh state is reconciled.
#[derive(Debug, Clone)]
enum Step {
    Transaction {
        ops: Vec<Op>,
        rotate: usize,
    },
    /// A reconnect: the server's state may have moved on meanwhile (`ops`), and
    /// the fresh state of every live query is reconciled with the stale cache.
    Reconnect {
        ops: Vec<Op>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (prop::collection::vec(op(), 1..6), any::<usize>()).prop_map(|(ops, rotate)| Step::Transaction { ops, rotate }),
        1 => prop::collection::vec(op(), 0..4).prop_map(|ops| Step::Reconnect { ops }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (the published reader views equal a simple model after random transaction sequences: inserts, deletes, updates, overlapping subscriptions, reconnect reconciliation; a snapshot never changes once published; a concurrent reader only ever sees whole transactions; the spatial index in every snapshot holds exactly its rows)
    #[test]
    fn prop_published_reader_views_equal_the_model(
        queries in prop::collection::vec(query(), 1..5),
        initial in prop::collection::btree_set(0usize..8, 0..5),
        steps in prop::collection::vec((step(), any::<bool>()), 1..25),
    ) {
        let spatial = spacelink_sync::spatial::SpatialSetup {
            table: KEYED.into(),
            cell: 10.0,
            positions: std::sync::Arc::new(ValueIsX),
        };
        let cache = ClientCache::with_parts(std::sync::Arc::new(TestKeys), spacelink_sync::row::Decoders::none(), Some(spatial));
        let reader = cache.reader();
        let mut server = Server { live: initial.iter().map(|q| q % queries.len()).collect(), ..Server::default() };
        let mut models = vec![Model::new()];

        // A reader on another thread, reading all along: each view must be one whole state.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (reader, stop) = (reader.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen: Vec<Model> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let model = reader.with_view(view_contents);
                    if seen.last() != Some(&model) {
                        seen.push(model);
                    }
                    std::thread::yield_now();
                }
                seen
            })
        };

        // Snapshots held across later transactions (some, at random): they must not change.
        let mut held: Vec<(spacelink_sync::Snapshot, Model)> = Vec::new();
        for (step, hold) in &steps {
            let before = server.clone();
            let model_before = before.client_model(&queries);
            let changes = match step {
                Step::Transaction { ops, rotate } => {
                    for op in ops {
                        server.apply(op, &queries);
                    }
                    cache.apply(&server_deltas(&before, &server, &queries, *rotate))
                }
                Step::Reconnect { ops } => {
                    for op in ops {
                        server.apply(op, &queries);
                    }
                    // The fresh state: every live query's rows, as a new session's subscriptions send them.
                    let unsubscribed = Server { live: BTreeSet::new(), ..server.clone() };
                    cache.reconcile(&server_deltas(&unsubscribed, &server, &queries, 0))
                }
            };
            let model_after = server.client_model(&queries);
            prop_assert_eq!(normalize(&changes), diff(&model_before, &model_after));
            let snapshot = reader.snapshot();
            prop_assert_eq!(&view_contents(&snapshot.view()), &model_after);
            check_index(&snapshot.view(), &model_after)?;
            prop_assert_eq!(&reader.with_view(view_contents), &model_after);
            for (table, key) in model_after.keys() {
                let key = RowKey::copy_from_slice(key);
                prop_assert_eq!(reader.get(table, &key).map(|r| r.to_vec()), model_after.get(&(table.clone(), key.to_vec())).map(|e| e.0.clone()));
            }
            for (old, model) in &held {
                prop_assert_eq!(&view_contents(&old.view()), model, "a held snapshot changed");
                check_index(&old.view(), model)?;
            }
            if *hold {
                held.push((snapshot, model_after.clone()));
            }
            if models.last() != Some(&model_after) {
                models.push(model_after);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        let seen = watcher.join().map_err(|_| TestCaseError::fail("the reader thread panicked"))?;
        for view in &seen {
            prop_assert!(models.contains(view), "a reader saw a state that no transaction left: {:?}", view);
        }
    }
}
