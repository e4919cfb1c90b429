//! The client cache: the rows the client is subscribed to, per table.
//!
//! Rows stay BSATN bytes ([`Bytes`]); the cache never decodes them. A row's
//! identity in its table is a [`RowKey`], chosen by a [`RowKeys`]: the BSATN of
//! its primary-key columns where the table has a primary key, otherwise the
//! whole row.
//!
//! # Reference counts
//!
//! The server sends a row once per live query that matches it, so with
//! overlapping subscriptions the same row arrives several times. Each cached row
//! therefore carries a count: an insert adds one, a delete takes one away, and the
//! row is gone when its count reaches 0. For a keyed table the stored bytes are
//! those of the latest insert.
//!
//! # Transactions and changes
//!
//! [`ClientCache::apply`] applies one transaction (a slice of [`TableDelta`]s,
//! a table possibly appearing once per query) atomically for readers, and returns
//! the **minimal** [`RowChange`]s: each key's row before the transaction is
//! compared with its row after it, so a delete and re-insert of identical bytes,
//! or a change of count alone, fires nothing. [`ClientCache::reconcile`] replaces
//! the whole cache with fresh state after a reconnect and returns the minimal
//! changes from the stale state to the fresh one.
//!
//! # Readers
//!
//! Every read takes a shared lock that `apply` and `reconcile` take exclusively,
//! so no reader ever sees half a transaction; [`ClientCache::with_view`] reads
//! several tables under one lock. [`ClientCache::reader`] hands out a
//! [`CacheReader`], which can only read: only the cache's owner (the sync actor)
//! writes.
//!
//! Server state wins: a delete of a row that is not cached is ignored (and logged
//! at debug level); nothing here panics on what the server sends.
//!
//! # Metrics
//!
//! Through the `metrics` facade (no recorder is installed here):
//! `spacelink_sync_transactions_applied_total`, `spacelink_sync_rows_applied_total`
//! (inserts and deletes applied), `spacelink_sync_bytes_applied_total` (their
//! bytes), `spacelink_sync_deletes_ignored_total` (deletes of rows not cached),
//! `spacelink_sync_changes_total{kind = insert | update | delete}` (changes
//! returned) and `spacelink_sync_reconciles_total`.

use std::collections::hash_map::Entry as MapEntry;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use dashmap::DashMap;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use spacelink_connection::codec::{self, QueryUpdate};

/// A row's identity in its table: the BSATN of its primary-key columns where the
/// table has a primary key, otherwise the row's whole bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey(pub Bytes);

impl RowKey {
    /// A key holding a copy of `bytes`.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for RowKey {
    fn from(bytes: Bytes) -> Self {
        Self(bytes)
    }
}

impl From<Vec<u8>> for RowKey {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }
}

impl From<&'static [u8]> for RowKey {
    fn from(bytes: &'static [u8]) -> Self {
        Self(Bytes::from_static(bytes))
    }
}

/// Decides the [`RowKey`] of a row of a table.
///
/// The sync actor implements it with the module's schema (the BSATN of the
/// primary-key columns). It must be a function of the table and the bytes: the
/// same row must always get the same key, and a delete finds its row by the key
/// of the deleted bytes.
pub trait RowKeys: Send + Sync {
    /// The key of `row`, a row of `table`.
    fn key(&self, table: &str, row: &[u8]) -> RowKey;

    /// The key of `row` held as [`Bytes`]: what the cache calls on its apply
    /// path. Override it to return a slice of `row` (no copy); by default it is
    /// [`key`](Self::key), sharing `row`'s memory when the key is the whole row.
    fn key_of(&self, table: &str, row: &Bytes) -> RowKey {
        let key = self.key(table, row);
        if key.0 == *row {
            RowKey(row.clone())
        } else {
            key
        }
    }
}

/// Every row is its own key: right for tables without a primary key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WholeRow;

impl RowKeys for WholeRow {
    fn key(&self, _table: &str, row: &[u8]) -> RowKey {
        RowKey::copy_from_slice(row)
    }

    fn key_of(&self, _table: &str, row: &Bytes) -> RowKey {
        RowKey(row.clone())
    }
}

/// A change to one row of the cache, as callbacks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// A row that was not cached now is.
    Insert {
        /// The row's table.
        table: Arc<str>,
        /// The row.
        row: Bytes,
    },
    /// A cached row of a keyed table has new bytes (same key).
    Update {
        /// The row's table.
        table: Arc<str>,
        /// The row before.
        old: Bytes,
        /// The row after.
        new: Bytes,
    },
    /// A cached row is gone.
    Delete {
        /// The row's table.
        table: Arc<str>,
        /// The row as it was cached.
        row: Bytes,
    },
}

impl RowChange {
    /// The table of the changed row.
    pub fn table(&self) -> &str {
        match self {
            RowChange::Insert { table, .. } | RowChange::Update { table, .. } | RowChange::Delete { table, .. } => {
                table
            }
        }
    }

    /// `insert`, `update` or `delete`.
    pub fn kind(&self) -> &'static str {
        match self {
            RowChange::Insert { .. } => "insert",
            RowChange::Update { .. } => "update",
            RowChange::Delete { .. } => "delete",
        }
    }
}

/// One table's part of a transaction: the rows one query (or several) deleted and inserted.
///
/// A transaction may hold several deltas for the same table (one per query);
/// [`ClientCache::apply`] treats them all as one multiset of deletes and one of
/// inserts per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDelta {
    /// The table's name.
    pub table: Arc<str>,
    /// Deleted rows, one entry per query that saw the delete.
    pub deletes: Vec<Bytes>,
    /// Inserted rows, one entry per query that saw the insert.
    pub inserts: Vec<Bytes>,
}

impl TableDelta {
    /// An empty delta for `table`.
    pub fn new(table: impl Into<Arc<str>>) -> Self {
        Self { table: table.into(), deletes: Vec::new(), inserts: Vec::new() }
    }

    /// This delta with `row` inserted once more.
    #[must_use]
    pub fn insert(mut self, row: impl Into<Bytes>) -> Self {
        self.inserts.push(row.into());
        self
    }

    /// This delta with `row` deleted once more.
    #[must_use]
    pub fn delete(mut self, row: impl Into<Bytes>) -> Self {
        self.deletes.push(row.into());
        self
    }

    /// The rows of one decompressed query update of `table`
    /// (from [`codec::decompress_query_update`]).
    pub fn from_query_update(table: impl Into<Arc<str>>, update: &QueryUpdate) -> Self {
        Self {
            table: table.into(),
            deletes: codec::rows(&update.deletes).collect(),
            inserts: codec::rows(&update.inserts).collect(),
        }
    }

    /// How many rows (deletes and inserts) this delta holds.
    pub fn len(&self) -> usize {
        self.deletes.len() + self.inserts.len()
    }

    /// Whether this delta holds no row.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.inserts.is_empty()
    }
}

/// A cached row and how many live queries hold it.
#[derive(Debug, Clone)]
struct Cached {
    row: Bytes,
    count: u32,
}

type Table = FxHashMap<RowKey, Cached>;
type Tables = DashMap<Arc<str>, Table, FxBuildHasher>;

struct Inner {
    /// Readers hold it shared, `apply` and `reconcile` exclusively: the unit of atomicity.
    lock: RwLock<()>,
    tables: Tables,
    keys: Arc<dyn RowKeys>,
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, ()> {
        // The lock guards no data: a panic while it was held cannot have left it
        // inconsistent, so a poisoned lock is used as it is.
        self.lock.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_view<R>(&self, f: impl FnOnce(&CacheView<'_>) -> R) -> R {
        let _guard = self.read();
        f(&CacheView { tables: &self.tables })
    }

    /// The key of `row`, sharing `row`'s memory where the keys allow.
    fn key(&self, table: &str, row: &Bytes) -> RowKey {
        self.keys.key_of(table, row)
    }
}

/// The client cache: subscribed rows per table, reference-counted, applied a
/// transaction at a time. Cloning it gives another handle to the same cache.
///
/// ```
/// use spacelink_sync::cache::{ClientCache, RowChange, TableDelta, WholeRow};
///
/// let cache = ClientCache::new(WholeRow);
/// let changes = cache.apply(&[TableDelta::new("item").insert(&b"sword"[..]).insert(&b"sword"[..])]);
/// assert_eq!(changes, vec![RowChange::Insert { table: "item".into(), row: (&b"sword"[..]).into() }]);
/// // Two queries hold it: the first delete changes nothing.
/// assert!(cache.apply(&[TableDelta::new("item").delete(&b"sword"[..])]).is_empty());
/// assert_eq!(cache.count("item"), 1);
/// ```
#[derive(Clone)]
pub struct ClientCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_tables(&self.inner, "ClientCache", f)
    }
}

/// A read-only handle to a [`ClientCache`] (from [`ClientCache::reader`]), for the game.
#[derive(Clone)]
pub struct CacheReader {
    inner: Arc<Inner>,
}

impl fmt::Debug for CacheReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_tables(&self.inner, "CacheReader", f)
    }
}

fn debug_tables(inner: &Inner, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let counts: Vec<(String, usize)> =
        inner.with_view(|view| view.tables().into_iter().map(|t| (t.clone(), view.count(&t))).collect());
    f.debug_struct(name).field("tables", &counts).finish_non_exhaustive()
}

/// A consistent read of the whole cache, inside [`ClientCache::with_view`]:
/// no transaction is applied while it lives.
#[derive(Clone, Copy)]
pub struct CacheView<'a> {
    tables: &'a Tables,
}

impl fmt::Debug for CacheView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheView").field("tables", &self.tables()).finish_non_exhaustive()
    }
}

impl CacheView<'_> {
    /// The cached row of `table` with `key`.
    pub fn get(&self, table: &str, key: &RowKey) -> Option<Bytes> {
        self.tables.get(table)?.get(key).map(|c| c.row.clone())
    }

    /// Whether `table` has a row with `key`.
    pub fn contains(&self, table: &str, key: &RowKey) -> bool {
        self.tables.get(table).is_some_and(|t| t.contains_key(key))
    }

    /// How many live queries hold the row of `table` with `key` (0: not cached).
    pub fn refcount(&self, table: &str, key: &RowKey) -> u32 {
        self.tables.get(table).and_then(|t| t.get(key).map(|c| c.count)).unwrap_or(0)
    }

    /// Every row of `table`, in no particular order.
    pub fn rows(&self, table: &str) -> Vec<Bytes> {
        self.tables.get(table).map(|t| t.values().map(|c| c.row.clone()).collect()).unwrap_or_default()
    }

    /// Every row of `table` with its key, in no particular order.
    pub fn entries(&self, table: &str) -> Vec<(RowKey, Bytes)> {
        self.tables.get(table).map(|t| t.iter().map(|(k, c)| (k.clone(), c.row.clone())).collect()).unwrap_or_default()
    }

    /// Calls `f` with each row of `table` and its key, in no particular order, without copying.
    pub fn for_each_row(&self, table: &str, mut f: impl FnMut(&RowKey, &Bytes)) {
        if let Some(t) = self.tables.get(table) {
            for (key, cached) in t.iter() {
                f(key, &cached.row);
            }
        }
    }

    /// How many distinct rows `table` has.
    pub fn count(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, |t| t.len())
    }

    /// The tables that have at least one row, sorted by name.
    pub fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.tables.iter().filter(|t| !t.value().is_empty()).map(|t| t.key().to_string()).collect();
        names.sort_unstable();
        names
    }

    /// How many distinct rows the cache holds, over all tables.
    pub fn total_rows(&self) -> usize {
        self.tables.iter().map(|t| t.value().len()).sum()
    }
}

/// The reads, on both [`ClientCache`] and [`CacheReader`]. Each takes the read lock once.
macro_rules! reads {
    () => {
        /// The cached row of `table` with `key`.
        pub fn get(&self, table: &str, key: &RowKey) -> Option<Bytes> {
            self.inner.with_view(|v| v.get(table, key))
        }

        /// Whether `table` has a row with `key`.
        pub fn contains(&self, table: &str, key: &RowKey) -> bool {
            self.inner.with_view(|v| v.contains(table, key))
        }

        /// Every row of `table` (a consistent snapshot), in no particular order.
        pub fn rows(&self, table: &str) -> Vec<Bytes> {
            self.inner.with_view(|v| v.rows(table))
        }

        /// How many distinct rows `table` has.
        pub fn count(&self, table: &str) -> usize {
            self.inner.with_view(|v| v.count(table))
        }

        /// The tables that have at least one row, sorted by name.
        pub fn tables(&self) -> Vec<String> {
            self.inner.with_view(|v| v.tables())
        }

        /// How many live queries hold the row of `table` with `key` (0: not cached).
        pub fn refcount(&self, table: &str, key: &RowKey) -> u32 {
            self.inner.with_view(|v| v.refcount(table, key))
        }

        /// The key the cache gives `row` of `table` (by its [`RowKeys`]).
        pub fn key_of(&self, table: &str, row: &[u8]) -> RowKey {
            self.inner.keys.key(table, row)
        }

        /// Runs `f` on a consistent view of the cache: no transaction is applied
        /// while it runs, so several tables read in it agree with each other.
        ///
        /// `f` must not call the cache itself (neither a read nor a write: the
        /// lock is not reentrant); read through the view.
        pub fn with_view<R>(&self, f: impl FnOnce(&CacheView<'_>) -> R) -> R {
            self.inner.with_view(f)
        }
    };
}

impl CacheReader {
    reads!();
}

impl ClientCache {
    reads!();

    /// An empty cache whose rows are keyed by `keys`.
    pub fn new(keys: impl RowKeys + 'static) -> Self {
        Self::with_keys(Arc::new(keys))
    }

    /// An empty cache whose rows are keyed by a shared `keys`.
    pub fn with_keys(keys: Arc<dyn RowKeys>) -> Self {
        Self { inner: Arc::new(Inner { lock: RwLock::new(()), tables: DashMap::with_hasher(FxBuildHasher), keys }) }
    }

    /// A handle that can only read this cache.
    pub fn reader(&self) -> CacheReader {
        CacheReader { inner: Arc::clone(&self.inner) }
    }

    /// Applies one transaction atomically (no reader sees part of it) and returns
    /// the minimal changes it made.
    ///
    /// Per table, all the deltas' deletes are applied before all their inserts. A
    /// delete of a row that is not cached is ignored. Each key touched is compared
    /// before and after: absent → present is an [`RowChange::Insert`], present →
    /// absent a [`RowChange::Delete`], present → present with other bytes an
    /// [`RowChange::Update`], anything else nothing.
    ///
    /// The changes come table by table, in the order the tables first appear in
    /// `deltas`, and within a table in the order the keys were first touched
    /// (deleted rows first).
    pub fn apply(&self, deltas: &[TableDelta]) -> Vec<RowChange> {
        let inner = &*self.inner;
        let _guard = inner.write();
        let mut changes = Vec::new();
        let mut stats = Stats::default();
        for group in group_by_table(deltas) {
            let mut table = inner.tables.entry(Arc::clone(&group.table)).or_default();
            let mut before = Touched::default();
            for row in group.deletes() {
                stats.row(row);
                let key = inner.key(&group.table, row);
                match table.get_mut(&key) {
                    None => {
                        stats.ignored += 1;
                        tracing::debug!(table = %group.table, len = row.len(), "delete of a row that is not cached: ignored");
                    }
                    Some(cached) => {
                        if cached.row != *row {
                            tracing::debug!(table = %group.table, "a delete's bytes differ from the cached row's: deleted by key");
                        }
                        before.remember(&key, Some(&cached.row));
                        if cached.count > 1 {
                            cached.count -= 1;
                        } else {
                            table.remove(&key);
                        }
                    }
                }
            }
            for row in group.inserts() {
                stats.row(row);
                let key = inner.key(&group.table, row);
                match table.entry(key) {
                    MapEntry::Occupied(mut entry) => {
                        before.remember(entry.key(), Some(&entry.get().row));
                        let cached = entry.get_mut();
                        cached.count = cached.count.saturating_add(1);
                        cached.row = row.clone();
                    }
                    MapEntry::Vacant(entry) => {
                        before.remember(entry.key(), None);
                        entry.insert(Cached { row: row.clone(), count: 1 });
                    }
                }
            }
            for (key, old) in before.into_iter() {
                let new = table.get(&key).map(|c| &c.row);
                changes.extend(change(&group.table, old.as_ref(), new));
            }
            let empty = table.is_empty();
            drop(table);
            if empty {
                inner.tables.remove_if(&group.table, |_, t| t.is_empty());
            }
        }
        metrics::counter!("spacelink_sync_transactions_applied_total").increment(1);
        stats.record();
        record_changes(&changes);
        changes
    }

    /// Replaces the whole cache with `fresh`, atomically, and returns the minimal
    /// changes from the stale state to the fresh one.
    ///
    /// `fresh` is the state after a reconnect: every row of every live query,
    /// once per query that matches it (so overlapping queries give the counts).
    /// It is read as [`apply`](Self::apply) would read it on an empty cache.
    /// **Every table not in `fresh` is emptied**: the cache afterwards is exactly
    /// `fresh`, and `reconcile(&[])` clears it.
    ///
    /// Unchanged rows fire nothing, a key with other bytes fires an Update, a
    /// vanished row a Delete, a new row an Insert. The changes come table by table
    /// (the tables of `fresh` in order of first appearance, then the emptied tables
    /// by name); within a table, Deletes first (by key), then Updates and Inserts
    /// in the order of `fresh`.
    pub fn reconcile(&self, fresh: &[TableDelta]) -> Vec<RowChange> {
        let inner = &*self.inner;
        let _guard = inner.write();
        let mut changes = Vec::new();
        let mut stats = Stats::default();
        let mut fresh_names = FxHashSet::default();
        for group in group_by_table(fresh) {
            fresh_names.insert(Arc::clone(&group.table));
            // Build the fresh table, remembering the order keys first appear in.
            let mut table = Table::default();
            let mut order = Vec::new();
            for row in group.deletes() {
                stats.row(row);
                let key = inner.key(&group.table, row);
                match table.get_mut(&key) {
                    None => stats.ignored += 1,
                    Some(cached) if cached.count > 1 => cached.count -= 1,
                    Some(_) => {
                        table.remove(&key);
                    }
                }
            }
            for row in group.inserts() {
                stats.row(row);
                let key = inner.key(&group.table, row);
                match table.entry(key) {
                    MapEntry::Occupied(mut entry) => {
                        let cached = entry.get_mut();
                        cached.count = cached.count.saturating_add(1);
                        cached.row = row.clone();
                    }
                    MapEntry::Vacant(entry) => {
                        order.push(entry.key().clone());
                        entry.insert(Cached { row: row.clone(), count: 1 });
                    }
                }
            }
            let stale = inner.tables.remove(&group.table).map(|(_, t)| t).unwrap_or_default();
            let mut vanished: Vec<(&RowKey, &Cached)> = stale.iter().filter(|(k, _)| !table.contains_key(*k)).collect();
            vanished.sort_unstable_by(|a, b| a.0.cmp(b.0));
            changes.extend(
                vanished
                    .into_iter()
                    .map(|(_, c)| RowChange::Delete { table: Arc::clone(&group.table), row: c.row.clone() }),
            );
            for key in &order {
                // A key deleted again after its insert is not in the fresh table.
                if let Some(new) = table.get(key) {
                    changes.extend(change(&group.table, stale.get(key).map(|c| &c.row), Some(&new.row)));
                }
            }
            if !table.is_empty() {
                inner.tables.insert(Arc::clone(&group.table), table);
            }
        }
        let mut emptied: Vec<Arc<str>> =
            inner.tables.iter().map(|t| Arc::clone(t.key())).filter(|name| !fresh_names.contains(name)).collect();
        emptied.sort_unstable();
        for name in emptied {
            if let Some((name, stale)) = inner.tables.remove(&name) {
                let mut rows: Vec<(&RowKey, &Cached)> = stale.iter().collect();
                rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
                changes.extend(
                    rows.into_iter().map(|(_, c)| RowChange::Delete { table: Arc::clone(&name), row: c.row.clone() }),
                );
            }
        }
        metrics::counter!("spacelink_sync_reconciles_total").increment(1);
        stats.record();
        record_changes(&changes);
        tracing::debug!(changes = changes.len(), "cache reconciled with fresh state");
        changes
    }
}

/// The change from `old` to `new` of one key, if any.
fn change(table: &Arc<str>, old: Option<&Bytes>, new: Option<&Bytes>) -> Option<RowChange> {
    let table = Arc::clone(table);
    match (old, new) {
        (None, None) => None,
        (None, Some(row)) => Some(RowChange::Insert { table, row: row.clone() }),
        (Some(row), None) => Some(RowChange::Delete { table, row: row.clone() }),
        (Some(old), Some(new)) if old == new => None,
        (Some(old), Some(new)) => Some(RowChange::Update { table, old: old.clone(), new: new.clone() }),
    }
}

/// The keys a transaction touched in one table, with their rows before it, in first-touch order.
#[derive(Default)]
struct Touched {
    seen: FxHashSet<RowKey>,
    order: Vec<(RowKey, Option<Bytes>)>,
}

impl Touched {
    fn remember(&mut self, key: &RowKey, before: Option<&Bytes>) {
        if !self.seen.contains(key) {
            self.seen.insert(key.clone());
            self.order.push((key.clone(), before.cloned()));
        }
    }

    fn into_iter(self) -> impl Iterator<Item = (RowKey, Option<Bytes>)> {
        self.order.into_iter()
    }
}

/// One table's deltas in a transaction.
struct Group<'a> {
    table: Arc<str>,
    deltas: Vec<&'a TableDelta>,
}

impl<'a> Group<'a> {
    fn deletes(&self) -> impl Iterator<Item = &'a Bytes> + '_ {
        self.deltas.iter().flat_map(|d| d.deletes.iter())
    }

    fn inserts(&self) -> impl Iterator<Item = &'a Bytes> + '_ {
        self.deltas.iter().flat_map(|d| d.inserts.iter())
    }
}

/// The deltas grouped by table, tables in order of first appearance.
fn group_by_table(deltas: &[TableDelta]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    for delta in deltas {
        match index.entry(&*delta.table) {
            MapEntry::Occupied(i) => groups[*i.get()].deltas.push(delta),
            MapEntry::Vacant(slot) => {
                slot.insert(groups.len());
                groups.push(Group { table: Arc::clone(&delta.table), deltas: vec![delta] });
            }
        }
    }
    groups
}

#[derive(Default)]
struct Stats {
    rows: u64,
    bytes: u64,
    ignored: u64,
}

impl Stats {
    fn row(&mut self, row: &Bytes) {
        self.rows += 1;
        self.bytes += row.len() as u64;
    }

    fn record(&self) {
        metrics::counter!("spacelink_sync_rows_applied_total").increment(self.rows);
        metrics::counter!("spacelink_sync_bytes_applied_total").increment(self.bytes);
        if self.ignored > 0 {
            metrics::counter!("spacelink_sync_deletes_ignored_total").increment(self.ignored);
        }
    }
}

fn record_changes(changes: &[RowChange]) {
    let (mut inserts, mut updates, mut deletes) = (0u64, 0u64, 0u64);
    for change in changes {
        match change {
            RowChange::Insert { .. } => inserts += 1,
            RowChange::Update { .. } => updates += 1,
            RowChange::Delete { .. } => deletes += 1,
        }
    }
    for (kind, n) in [("insert", inserts), ("update", updates), ("delete", deletes)] {
        if n > 0 {
            metrics::counter!("spacelink_sync_changes_total", "kind" => kind).increment(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables named `keyed` are keyed by their rows' first 4 bytes; others by the whole row.
    struct TestKeys;

    impl RowKeys for TestKeys {
        fn key(&self, table: &str, row: &[u8]) -> RowKey {
            if table == "keyed" {
                RowKey::copy_from_slice(&row[..row.len().min(4)])
            } else {
                RowKey::copy_from_slice(row)
            }
        }
    }

    fn row(bytes: &[u8]) -> Bytes {
        Bytes::copy_from_slice(bytes)
    }

    fn keyed(id: u8, value: u8) -> Bytes {
        row(&[id, 0, 0, 0, value])
    }

    fn key(id: u8) -> RowKey {
        RowKey::copy_from_slice(&[id, 0, 0, 0])
    }

    fn insert(table: &str, r: &Bytes) -> RowChange {
        RowChange::Insert { table: table.into(), row: r.clone() }
    }

    fn delete(table: &str, r: &Bytes) -> RowChange {
        RowChange::Delete { table: table.into(), row: r.clone() }
    }

    fn update(table: &str, old: &Bytes, new: &Bytes) -> RowChange {
        RowChange::Update { table: table.into(), old: old.clone(), new: new.clone() }
    }

    #[test]
    fn insert_update_delete() {
        let cache = ClientCache::new(TestKeys);
        let (v1, v2) = (keyed(1, 10), keyed(1, 20));
        assert_eq!(cache.apply(&[TableDelta::new("keyed").insert(v1.clone())]), vec![insert("keyed", &v1)]);
        assert_eq!(cache.get("keyed", &key(1)), Some(v1.clone()));
        assert_eq!(cache.tables(), vec!["keyed".to_string()]);

        let changes = cache.apply(&[TableDelta::new("keyed").delete(v1.clone()).insert(v2.clone())]);
        assert_eq!(changes, vec![update("keyed", &v1, &v2)]);
        assert_eq!(cache.get("keyed", &key(1)), Some(v2.clone()));
        assert_eq!(cache.refcount("keyed", &key(1)), 1);

        assert_eq!(cache.apply(&[TableDelta::new("keyed").delete(v2.clone())]), vec![delete("keyed", &v2)]);
        assert_eq!(cache.get("keyed", &key(1)), None);
        assert_eq!(cache.count("keyed"), 0);
        assert!(cache.tables().is_empty());
    }

    #[test]
    fn delete_and_reinsert_of_identical_bytes_fires_nothing() {
        let cache = ClientCache::new(TestKeys);
        let r = keyed(7, 1);
        let p = row(b"plain row");
        cache.apply(&[TableDelta::new("keyed").insert(r.clone()), TableDelta::new("plain").insert(p.clone())]);
        let changes = cache.apply(&[
            TableDelta::new("keyed").delete(r.clone()).insert(r.clone()),
            TableDelta::new("plain").insert(p.clone()).delete(p.clone()),
        ]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(cache.refcount("keyed", &key(7)), 1);
        assert_eq!(cache.refcount("plain", &RowKey(p)), 1);
    }

    #[test]
    fn overlapping_queries_share_a_row() {
        let cache = ClientCache::new(TestKeys);
        let p = row(b"shared");
        let k = RowKey(p.clone());
        // Two queries match the row in the same transaction: one Insert.
        let changes =
            cache.apply(&[TableDelta::new("plain").insert(p.clone()), TableDelta::new("plain").insert(p.clone())]);
        assert_eq!(changes, vec![insert("plain", &p)]);
        assert_eq!(cache.refcount("plain", &k), 2);
        // A third query later: nothing.
        assert!(cache.apply(&[TableDelta::new("plain").insert(p.clone())]).is_empty());
        assert_eq!(cache.refcount("plain", &k), 3);
        assert!(cache.apply(&[TableDelta::new("plain").delete(p.clone())]).is_empty());
        assert!(cache.apply(&[TableDelta::new("plain").delete(p.clone())]).is_empty());
        assert_eq!(cache.get("plain", &k), Some(p.clone()));
        assert_eq!(cache.apply(&[TableDelta::new("plain").delete(p.clone())]), vec![delete("plain", &p)]);
        assert_eq!(cache.refcount("plain", &k), 0);
    }

    #[test]
    fn an_update_seen_by_two_queries_is_one_update() {
        let cache = ClientCache::new(TestKeys);
        let (v1, v2) = (keyed(3, 1), keyed(3, 2));
        cache.apply(&[TableDelta::new("keyed").insert(v1.clone()).insert(v1.clone())]);
        let changes = cache.apply(&[
            TableDelta::new("keyed").delete(v1.clone()).insert(v2.clone()),
            TableDelta::new("keyed").delete(v1.clone()).insert(v2.clone()),
        ]);
        assert_eq!(changes, vec![update("keyed", &v1, &v2)]);
        assert_eq!(cache.refcount("keyed", &key(3)), 2);
    }

    #[test]
    fn deletes_of_rows_not_cached_are_ignored() {
        let cache = ClientCache::new(TestKeys);
        let changes =
            cache.apply(&[TableDelta::new("keyed").delete(keyed(1, 1)), TableDelta::new("p").delete(row(b"x"))]);
        assert!(changes.is_empty());
        assert!(cache.tables().is_empty());
        // An empty key (row shorter than 4 bytes) is a key like any other.
        let short = row(b"");
        assert_eq!(cache.apply(&[TableDelta::new("keyed").insert(short.clone())]), vec![insert("keyed", &short)]);
    }

    #[test]
    fn reconcile_fires_only_the_difference() {
        let cache = ClientCache::new(TestKeys);
        let (same, old, new, gone, born) = (keyed(1, 1), keyed(2, 1), keyed(2, 9), keyed(3, 1), keyed(4, 1));
        let other = row(b"other table row");
        cache.apply(&[
            TableDelta::new("keyed").insert(same.clone()).insert(old.clone()).insert(gone.clone()),
            TableDelta::new("other").insert(other.clone()),
        ]);
        let changes = cache.reconcile(&[
            TableDelta::new("keyed").insert(same.clone()).insert(new.clone()),
            TableDelta::new("keyed").insert(born.clone()).insert(same.clone()),
        ]);
        assert_eq!(
            changes,
            vec![delete("keyed", &gone), update("keyed", &old, &new), insert("keyed", &born), delete("other", &other)]
        );
        assert_eq!(cache.refcount("keyed", &key(1)), 2);
        assert_eq!(cache.get("keyed", &key(2)), Some(new));
        assert_eq!(cache.tables(), vec!["keyed".to_string()]);

        assert_eq!(cache.reconcile(&[]).len(), 3);
        assert!(cache.tables().is_empty());
    }

    #[test]
    fn views_are_consistent_and_readers_read() {
        let cache = ClientCache::new(WholeRow);
        let reader = cache.reader();
        let (a, b) = (row(b"a"), row(b"b"));
        cache.apply(&[TableDelta::new("t1").insert(a.clone()), TableDelta::new("t2").insert(b.clone())]);
        let (n1, n2, total) = reader.with_view(|v| (v.count("t1"), v.rows("t2"), v.total_rows()));
        assert_eq!((n1, n2, total), (1, vec![b.clone()], 2));
        assert_eq!(reader.get("t1", &reader.key_of("t1", &a)), Some(a.clone()));
        assert!(reader.contains("t2", &RowKey(b)));
        assert!(format!("{reader:?}").contains("t1"));
    }

    #[test]
    fn readers_never_see_half_a_transaction() {
        let cache = ClientCache::new(WholeRow);
        let reader = cache.reader();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut views = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (x, y) = reader.with_view(|v| (v.count("x"), v.count("y")));
                    assert_eq!(x, y, "a view saw half a transaction");
                    views += 1;
                }
                views
            })
        };
        for i in 0u32..2000 {
            let r = Bytes::from(i.to_le_bytes().to_vec());
            cache.apply(&[TableDelta::new("x").insert(r.clone()), TableDelta::new("y").insert(r)]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(watcher.join().is_ok());
        assert_eq!(cache.count("x"), 2000);
    }
}
