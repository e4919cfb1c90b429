//! The client cache: the rows the client is subscribed to, per table.
//!
//! A row is cached as a [`Row`]: its BSATN bytes and its value, decoded once
//! (see [`crate::row`]). A row's identity in its table is a [`RowKey`], chosen
//! by a [`RowKeys`]: the BSATN of its primary-key columns where the table has a
//! primary key, otherwise the whole row.
//!
//! # Reference counts
//!
//! The server sends a row once per live query that matches it, so with
//! overlapping subscriptions the same row arrives several times. Each cached row
//! therefore carries a count: an insert adds one, a delete takes one away, and the
//! row is gone when its count reaches 0. For a keyed table the stored row is
//! that of the latest insert; an insert of the bytes already cached keeps the
//! cached [`Row`] (nothing is decoded again).
//!
//! # Transactions and changes
//!
//! [`ClientCache::apply`] applies one transaction (a slice of [`TableDelta`]s,
//! a table possibly appearing once per query) and returns the **minimal**
//! [`RowChange`]s: each key's row before the transaction is compared with its
//! row after it, so a delete and re-insert of identical bytes, or a change of
//! count alone, fires nothing. [`ClientCache::reconcile_from`] replaces the whole
//! cache with fresh state after a reconnect and returns the minimal changes from
//! the stale state to the fresh one. The sync actor applies a message's
//! transaction as it came (`apply_wire`): its rows read from the message's row
//! lists, each row's handle sliced once and moved into its [`Row`], where a
//! [`TableDelta`] holds a handle per row made beforehand.
//!
//! # Events-only tables
//!
//! A table the game only listens to can keep no rows
//! ([`ClientCache::with_events_only`], `SyncConfig::events_only`): its memory
//! stays flat whatever it streams. [`ClientCache::apply`] stores none of its
//! rows and still returns every change, its rows decoded once by the table's
//! codec as any table's: a key deleted and inserted in one transaction is one
//! [`RowChange::Update`] (nothing if the bytes are the same), a key only
//! deleted a [`RowChange::Delete`], only inserted a [`RowChange::Insert`]. No
//! count is kept (an insert or delete another query still holds fires too,
//! once per transaction and key), a delete needs no cached row, and every read
//! (`count`, `rows`, `get`, the spatial and unique indexes) sees the table
//! empty. [`ClientCache::reconcile_from`] has nothing to compare for it: a
//! reconnect's fresh rows of an events-only table fire nothing, and nor do
//! the transactions that come while the fresh state is collected (they are
//! applied to the staging cache, whose changes are not told).
//!
//! # Readers never wait
//!
//! The cache is published as immutable snapshots, one per transaction, behind an
//! [`ArcSwap`]: a reader ([`CacheReader`], every read of [`ClientCache`]) loads
//! the current snapshot (lock-free, no lock the writer holds) and reads it, so it
//! never waits for a transaction being applied and always sees transactions
//! whole, across tables. [`CacheReader::snapshot`] keeps one snapshot for
//! several reads (a frame's worth).
//!
//! The writer keeps two copies of the data, a double buffer: it applies a
//! transaction to the copy readers do not see (first catching it up with the
//! keys the previous transaction touched, their rows moved in), publishes it,
//! and keeps the previous copy, with this transaction's touched keys, for next
//! time. Rows are shared
//! between the copies (an `Arc` each), so the second copy costs the maps, not
//! the rows. If a reader still holds the spare copy when the next transaction
//! comes (a snapshot kept past a frame), the writer does not wait for it: after
//! a millisecond of yielding it copies the published one instead (counted in
//! `spacelink_sync_snapshot_copies_total`). After a reconcile (which publishes
//! the fresh state whole) the first transaction also copies once.
//!
//! A backlog is published once: the sync actor (`apply_held`) applies a
//! transaction to the writer's copy without publishing it, the next one goes
//! on in that copy, and [`ClientCache::publish`] hands readers the last state
//! (the sync actor publishes when its mailbox is empty, and tells the
//! changes then). The spare copy then catches up with all of them at once,
//! and takes from the published copy (shared: the private `SHARE_AT`) each table
//! they touched as many keys as it holds, instead of replaying them: a
//! backlog of updates to the same rows is caught up for the price of one
//! copy of them, not of a replay per transaction. [`ClientCache::catch_up`]
//! does the catch-up at once, where the next transaction would have.
//!
//! A copy is cheap because each table is behind an `Arc`, and a large table is
//! itself 64 shards behind `Arc`s (the private `table` module):
//! copies share every table and shard neither has written since, and a write
//! to a shared one copies that one first (`Arc::make_mut`, a clone of its map,
//! no rehashing). So a large table that changes in a few places costs its map
//! about once, and the first write after a load copies a shard, not the table. A table
//! that a transaction loads whole (its first rows: an initial subscription, a
//! reconnect's fresh state) is built once, each row hashed and decoded once,
//! with nothing to catch up: the spare copy shares it, until the next
//! transaction that writes the table copies it. Right after a load, the cache
//! holds one map of the table.
//!
//! The spatial index (positions of the rows of one table, see
//! [`SpatialSetup`]) lives in the same snapshots, so a range query reads rows
//! and positions of one transaction.
//!
//! So do the unique indexes (see [`crate::unique`]): per unique column of a
//! table, the column's BSATN (a slice of the row's bytes) to the row's key,
//! sharded and shared between the copies like the rows. A load builds them
//! with its table; a transaction, and the spare copy's replay, move the
//! entries of the rows whose value changed (an entry is removed only while it
//! still names its row: another may have taken the value in the same
//! transaction), so an update that leaves the column alone touches no index.
//! [`CacheView::find_unique`] is one hash lookup.
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
//! returned), `spacelink_sync_reconciles_total`, `spacelink_sync_snapshot_copies_total`
//! (a reader held the spare copy: it was copied instead) and, from
//! [`crate::row`], `spacelink_sync_row_decode_errors_total{table}`.

use std::borrow::Borrow;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};
use spacelink_connection::metric_names as names;
use spacelink_connection::{codec, ws};

use crate::row::{Decoders, Row, TableCodec};
use crate::spatial::{SpatialIndex, SpatialSetup};
use crate::table::{Entry as TableEntry, PROBE_BLOCK};
use crate::unique::{TableUnique, UniqueColumns};

/// How long the writer yields for a reader to let go of the spare copy before copying.
const SPARE_WAIT: Duration = Duration::from_millis(1);

/// The most entries the writer's per-transaction lists keep allocated between
/// transactions: a larger transaction's are freed after it. Sized to keep a
/// 10k-row transaction's lists: freed and grown again at every such
/// transaction, their fresh pages (faulted and zeroed) were a fifth of the
/// writer's time, and the regrowth's copies raised the peak.
const KEPT_CAPACITY: usize = 16384;

/// When the spare copy takes a table from the published copy instead of
/// replaying its touched keys: `(a, b)` shares it once the keys to replay,
/// times `a`, are at least its rows, times `b`. A shared table costs nothing
/// at the catch-up; the next write to each of its shards copies that shard
/// (`Arc::make_mut`: a clone of its map, a reference taken per row), which is
/// no dearer than replaying as many keys as it holds. So a catch-up costs at
/// most about a copy of what the transactions touched, however many keys
/// they wrote: a backlog applied before it is published (see
/// [`ClientCache::apply_held`]) is caught up by sharing.
const SHARE_AT: (usize, usize) = (1, 1);

/// Transaction numbers, unique in the process: a reconcile publishes another
/// cache's data, whose rows carry that cache's numbers.
static NEXT_TXN: AtomicU64 = AtomicU64::new(1);

/// A row's identity in its table: the BSATN of its primary-key columns where the
/// table has a primary key, otherwise the row's whole bytes.
///
/// A key of up to [`RowKey::INLINE`] bytes (an integer id, a short string, a
/// small row without a primary key) is held inline, in the key itself; a
/// longer one shares the row's memory. Either way a key is 32 bytes, and a
/// probe of the cache compares an inline key without reading memory
/// elsewhere: a key that pointed into its frame's buffer cost a cache miss
/// per probe of a large table. Equality, hashing and order are those of the
/// bytes, whatever the representation.
#[derive(Clone)]
pub struct RowKey(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes at the start of `bytes`, the rest zero (so two inline keys
    /// compare as arrays).
    Inline {
        len: u8,
        bytes: [u8; RowKey::INLINE],
    },
    Shared(Bytes),
}

impl std::hash::Hash for RowKey {
    /// The bytes' hash, as a `[u8]` has it (a map keyed by `RowKey`s is
    /// searched with a byte slice).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl crate::table::TableHash for RowKey {
    /// Its bytes' table hash; an inline key's words are read from the key
    /// itself (its padding is zero), with no copy of a partial word.
    fn table_hash(&self) -> u64 {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let mut padded = [0; 24];
                padded[..Self::INLINE].copy_from_slice(bytes);
                let len = usize::from(*len);
                let words = padded.chunks_exact(8).take(len.div_ceil(8));
                crate::table::hash_words(len, words.map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())))
            }
            Repr::Shared(bytes) => crate::table::TableHash::table_hash(&bytes[..]),
        }
    }
}

impl PartialEq for RowKey {
    /// Byte equality: two inline keys compare as fixed-size arrays (every
    /// hash probe of the cache ends in one), others as slices.
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Inline { len: a, bytes: x }, Repr::Inline { len: b, bytes: y }) => a == b && x == y,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for RowKey {}

impl PartialOrd for RowKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RowKey {
    /// The bytes' order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Default for RowKey {
    /// The empty key.
    fn default() -> Self {
        Self(Repr::Inline { len: 0, bytes: [0; Self::INLINE] })
    }
}

impl std::fmt::Debug for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RowKey").field(&Bytes::copy_from_slice(self.as_bytes())).finish()
    }
}

impl RowKey {
    /// The longest key held inline, without sharing other memory.
    pub const INLINE: usize = 23;

    /// A key holding a copy of `bytes`.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        Self::inline(bytes).unwrap_or_else(|| Self(Repr::Shared(Bytes::copy_from_slice(bytes))))
    }

    /// The key `row[range]`: inline if short enough, else a slice sharing
    /// `row`'s memory (the whole row if `range` is not within it).
    pub(crate) fn from_slice_of(row: &Bytes, range: std::ops::Range<usize>) -> Self {
        if let (true, Some(window)) = (range.len() <= Self::INLINE, row.get(range.start..range.start + 24)) {
            return Self::inline_window(window.try_into().unwrap_or([0; 24]), range.len());
        }
        match row.get(range.clone()) {
            Some(key) => Self::inline(key).unwrap_or_else(|| Self(Repr::Shared(row.slice(range)))),
            None => Self::from(row.clone()),
        }
    }

    /// The first `len` bytes of `window` inline (`len` at most [`INLINE`](Self::INLINE)):
    /// a fixed-size copy and a mask per word, where copying `len` bytes is a
    /// call to `memcpy` (and reading its result back a stalled load).
    fn inline_window(window: [u8; 24], len: usize) -> Self {
        let mut bytes = [0; Self::INLINE];
        for (i, (word, out)) in window.chunks_exact(8).zip(bytes.chunks_mut(8)).enumerate() {
            let keep = len.saturating_sub(8 * i).min(8);
            let mask = if keep == 8 { u64::MAX } else { (1u64 << (8 * keep)) - 1 };
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default()) & mask;
            out.copy_from_slice(&word.to_le_bytes()[..out.len()]);
        }
        Self(Repr::Inline { len: len as u8, bytes })
    }

    /// `bytes` inline, if they fit.
    fn inline(bytes: &[u8]) -> Option<Self> {
        let mut inline = [0; Self::INLINE];
        inline.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self(Repr::Inline { len: bytes.len() as u8, bytes: inline }))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The key's bytes as [`Bytes`] (shared if the key shares a row's memory,
    /// else a copy).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(bytes) => bytes.clone(),
        }
    }
}

impl std::ops::Deref for RowKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for RowKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for RowKey {
    /// Its bytes: a map keyed by `RowKey`s is searched with a byte slice
    /// (they hash alike).
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<Bytes> for RowKey {
    /// Inline if short enough (`bytes` is then not kept), else `bytes` shared.
    fn from(bytes: Bytes) -> Self {
        Self::inline(&bytes).unwrap_or(Self(Repr::Shared(bytes)))
    }
}

impl From<Vec<u8>> for RowKey {
    fn from(bytes: Vec<u8>) -> Self {
        Self::inline(&bytes).unwrap_or_else(|| Self(Repr::Shared(bytes.into())))
    }
}

impl From<&[u8]> for RowKey {
    fn from(bytes: &[u8]) -> Self {
        Self::copy_from_slice(bytes)
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
    /// Where every row of `table` holds its key, if that is the same bytes
    /// in every row (a fixed-width key after fixed-width columns only): the
    /// cache then takes each key from that range itself, with no call per
    /// row, and asks [`key_of`](Self::key_of) only of a row too short for it.
    /// Whenever it is `Some(range)`, `key_of` of a row at least `range.end`
    /// long must be `row[range]`. `None` (ask for every row) by default.
    fn fixed_key_range(&self, table: &str) -> Option<std::ops::Range<usize>> {
        let _ = table;
        None
    }

    fn key_of(&self, table: &str, row: &Bytes) -> RowKey {
        let key = self.key(table, row);
        if key.as_bytes() == &row[..] {
            RowKey::from(row.clone())
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
        RowKey::from(row.clone())
    }
}

/// A change to one row of the cache, as callbacks see it.
///
/// Every field is shared, not copied: `table` is the table's name (one `Arc`
/// per table and transaction), `key` the row's [`RowKey`] (a slice of the
/// row's bytes for a single-column primary key, the whole row for a table
/// without one), and each [`Row`] is the cached row itself, decoded once
/// ([`Row::get`] for a registered type, [`Row::value`] otherwise, [`Row::bytes`]
/// for its BSATN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// A row that was not cached now is.
    Insert {
        /// The row's table.
        table: Arc<str>,
        /// The row's key.
        key: RowKey,
        /// The row.
        row: Row,
    },
    /// A cached row of a keyed table has new bytes (same key).
    Update {
        /// The row's table.
        table: Arc<str>,
        /// The row's key (the same before and after).
        key: RowKey,
        /// The row before.
        old: Row,
        /// The row after.
        new: Row,
    },
    /// A cached row is gone.
    Delete {
        /// The row's table.
        table: Arc<str>,
        /// The row's key.
        key: RowKey,
        /// The row as it was cached.
        row: Row,
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

    /// The key of the changed row.
    pub fn key(&self) -> &RowKey {
        match self {
            RowChange::Insert { key, .. } | RowChange::Update { key, .. } | RowChange::Delete { key, .. } => key,
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

    /// How many rows (deletes and inserts) this delta holds.
    pub fn len(&self) -> usize {
        self.deletes.len() + self.inserts.len()
    }

    /// Whether this delta holds no row.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.inserts.is_empty()
    }
}

/// A cached row and how many live queries hold it: 24 bytes, so that an
/// entry of a table (its key and this) is 56 (it was 64 with a transaction
/// number of its own; a table holds one per row, twice).
#[derive(Debug, Clone)]
struct Cached {
    row: Row,
    count: u32,
    /// Where the last transaction that touched it keeps its before and after
    /// (the writer's bookkeeping, see [`Slot`]).
    slot: Slot,
}

/// A row's place in the writer's `order` of touched keys: the low 8 bits of
/// the number of the transaction that touched it, over the index (24 bits;
/// [`Slot::FAR`] for an index past them, kept in the writer's `far` map).
///
/// Neither field is trusted alone: the tag comes around every 256
/// transactions and the other copy's entries hold stale slots, so a row
/// counts as touched by this transaction only if the entry at its index is
/// for its key ([`touch`]). The tag spares that read on a first touch but
/// for one in 256.
#[derive(Debug, Clone, Copy, Default)]
struct Slot(u32);

impl Slot {
    const INDEX_BITS: u32 = 24;
    const FAR: u32 = (1 << Self::INDEX_BITS) - 1;

    fn new(txn: u64, index: usize) -> Self {
        let index = u32::try_from(index).map_or(Self::FAR, |i| i.min(Self::FAR));
        Self(u32::from(txn as u8) << Self::INDEX_BITS | index)
    }

    fn of(self, txn: u64) -> bool {
        (self.0 >> Self::INDEX_BITS) as u8 == txn as u8
    }

    /// The index, or `None` if it is kept in the `far` map.
    fn index(self) -> Option<usize> {
        let index = self.0 & Self::FAR;
        (index != Self::FAR).then_some(index as usize)
    }
}

/// A key a transaction touched: its state before the transaction, and its
/// state now (kept up to date by every later touch in the transaction).
///
/// Once the transaction is done it is also what the spare copy replays to
/// catch up (the writer's `pending`): no second list is written per row.
struct Touched {
    key: RowKey,
    /// Its row and count before the transaction: moved into its change once
    /// the transaction is done (see [`ClientCache::apply`]).
    before: Option<(Row, u32)>,
    /// Its row now; `None` while its count is 0 (no reference taken for a
    /// row that is gone).
    row: Option<Row>,
    /// Its count now: 0 if it is gone.
    count: u32,
    /// What the catch-up does with it, decided once the transaction is done.
    catch_up: CatchUp,
}

/// What the spare copy's catch-up does with a touched key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// Nothing: the transaction left it as it was (deleted and inserted again, alike).
    Skip,
    /// Its count changed, not its row.
    Count,
    /// Its row changed (or came, or went): the indexes move too.
    Row,
}

impl Touched {
    fn first(key: RowKey, before: Option<(Row, u32)>, row: Option<Row>, count: u32) -> Self {
        Self { key, before, row, count, catch_up: CatchUp::Skip }
    }

    /// The row and count it ends the transaction with, if it has one.
    fn now(&self) -> Option<(&Row, u32)> {
        self.row.as_ref().filter(|_| self.count > 0).map(|row| (row, self.count))
    }
}

type Table = crate::table::Table<RowKey, Cached>;

/// One unique index of a table: a column's BSATN (a slice of the row's bytes)
/// to the key of the row that holds it. Sharded and shared like a [`Table`].
type Index = crate::table::Table<RowKey, RowKey>;

/// A table's unique indexes, the `i`-th for its [`TableUnique`]'s `i`-th column.
type Indexes = Vec<Index>;

/// Moves `key`'s entries in a table's unique indexes from `old`'s column
/// values to `new`'s. An index whose value did not change is not touched (so
/// a shared shard is not copied); an entry is removed only while it still
/// names `key` (another row may have taken the value in the same transaction).
fn reindex(indexes: &mut Arc<Indexes>, unique: &TableUnique, key: &RowKey, old: Option<&Row>, new: Option<&Row>) {
    for i in 0..unique.len() {
        let before = old.and_then(|row| unique.value(row.bytes(), i));
        let after = new.and_then(|row| unique.value(row.bytes(), i));
        if before == after {
            continue;
        }
        let Some(index) = Arc::make_mut(indexes).get_mut(i) else { return };
        if let Some(before) = before {
            if index.get(&before[..]) == Some(key) {
                index.remove(&before[..]);
            }
        }
        if let Some(after) = after {
            index.insert(RowKey::from(after), key.clone());
        }
    }
}

/// The unique indexes of a table loaded whole, built from its rows.
fn index_all(rows: &Table, unique: &TableUnique) -> Indexes {
    let mut indexes: Indexes = vec![Index::default(); unique.len()];
    for index in &mut indexes {
        index.reserve(rows.len());
    }
    for (key, cached) in rows.iter() {
        for (i, index) in indexes.iter_mut().enumerate() {
            if let Some(value) = unique.value(cached.row.bytes(), i) {
                index.insert(RowKey::from(value), key.clone());
            }
        }
    }
    indexes
}

/// The indexes of `table` in `map`, made (empty) on first use.
fn indexes_of<'m>(
    map: &'m mut FxHashMap<Arc<str>, Arc<Indexes>>,
    table: &Arc<str>,
    unique: &TableUnique,
) -> &'m mut Arc<Indexes> {
    map.entry(Arc::clone(table)).or_insert_with(|| Arc::new(vec![Index::default(); unique.len()]))
}

/// One published state of the cache.
///
/// Each table (and the spatial index) is behind an `Arc`, and a large table's
/// shards too, so two copies can share what neither has written since:
/// cloning a `Data` clones pointers, and a write copies the table's list of
/// shards and the one shard it lands in first (`Arc::make_mut`).
#[derive(Debug, Clone, Default)]
struct Data {
    tables: FxHashMap<Arc<str>, Arc<Table>>,
    /// The unique indexes of the tables that have some (see [`crate::unique`]).
    unique: FxHashMap<Arc<str>, Arc<Indexes>>,
    spatial: Arc<SpatialIndex<RowKey>>,
}

impl Data {
    /// Replays one table's touched keys, in order (moving their rows in, not copying).
    fn replay(
        &mut self,
        table: &Arc<str>,
        ops: impl Iterator<Item = Touched>,
        spatial: Option<&SpatialSetup>,
        unique: Option<&TableUnique>,
    ) {
        let Data { tables, unique: uniques, spatial: index } = self;
        let setup = spatial.filter(|s| s.table == *table);
        let table_rows = Arc::make_mut(tables.entry(Arc::clone(table)).or_default());
        let mut indexes = unique.map(|u| (u, indexes_of(uniques, table, u)));
        let ops = ops.into_iter();
        let (least, most) = ops.size_hint();
        let mut rows = table_rows.writing(most.unwrap_or(least));
        // The rows let go of, released a block at a time: a release (a
        // locked decrement) after each write waited for it.
        let mut spent: Vec<Row> = Vec::with_capacity(WARM_BLOCK + 2);
        let mut ops = ops;
        let mut block: Vec<(Touched, u64)> = Vec::with_capacity(PROBE_BLOCK);
        loop {
            block.extend(ops.by_ref().take(PROBE_BLOCK).map(|op| {
                let hash = crate::table::TableHash::table_hash(&op.key);
                (op, hash)
            }));
            if block.is_empty() {
                break;
            }
            rows.warm(block.iter().filter(|(op, _)| op.catch_up != CatchUp::Skip).map(|(op, hash)| (&op.key, *hash)));
            for (op, hash) in block.drain(..) {
                let moved = match op.catch_up {
                    CatchUp::Skip => continue,
                    CatchUp::Count => false,
                    CatchUp::Row => true,
                };
                if let (true, Some(setup)) = (moved, setup) {
                    index_row(index, setup, &op);
                }
                if let (true, Some((unique, indexes))) = (moved, indexes.as_mut()) {
                    let old = rows.get(&op.key).map(|c| &c.row);
                    reindex(indexes, unique, &op.key, old, op.now().map(|(row, _)| row));
                }
                if spent.len() >= WARM_BLOCK {
                    spent.clear();
                }
                let Touched { key, row, count, before, .. } = op;
                spent.extend(before.map(|(row, _)| row));
                match row.filter(|_| count > 0) {
                    Some(row) => match rows.entry_hashed(key, hash) {
                        TableEntry::Occupied(mut entry) => {
                            let cached = entry.get_mut();
                            spent.push(std::mem::replace(&mut cached.row, row));
                            cached.count = count;
                        }
                        TableEntry::Vacant(entry) => {
                            entry.insert(Cached { row, count, slot: Slot::default() });
                        }
                    },
                    None => {
                        spent.extend(rows.occupied_hashed(&key, hash).map(|entry| entry.remove().row));
                    }
                }
            }
        }
        drop(rows);
        drop(spent);
        if table_rows.is_empty() {
            tables.remove(table);
            uniques.remove(table);
        }
    }

    /// Takes `table` as it is in `from` (shared, not copied), and with it the
    /// spatial index if `table` is the spatial table.
    fn share(&mut self, table: &Arc<str>, from: &Data, spatial: Option<&SpatialSetup>) {
        match from.tables.get(table) {
            Some(rows) => {
                self.tables.insert(Arc::clone(table), Arc::clone(rows));
            }
            None => {
                self.tables.remove(table);
            }
        }
        match from.unique.get(table) {
            Some(indexes) => {
                self.unique.insert(Arc::clone(table), Arc::clone(indexes));
            }
            None => {
                self.unique.remove(table);
            }
        }
        if spatial.is_some_and(|s| s.table == *table) {
            self.spatial = Arc::clone(&from.spatial);
        }
    }
}

/// The writer's side: the spare copy and how far behind it is.
#[derive(Default)]
struct Writer {
    spare: Option<Arc<Data>>,
    /// The keys the last transaction touched, for the spare copy's catch-up
    /// (each table's `order`, moved here once done).
    pending: Vec<Touched>,
    /// `pending` in runs, one per table: the table and where its run ends.
    runs: Vec<(Arc<str>, usize)>,
    /// Tables the last transaction loaded whole: the spare takes them from the
    /// published copy, shared (see [`ClientCache::apply`]).
    shared: Vec<Arc<str>>,
    /// The keys a transaction touched in one table, in first-touch order.
    order: Vec<Touched>,
    /// Transactions applied but not yet published (see
    /// [`ClientCache::apply_held`]): the next transaction goes on in this
    /// copy, and [`ClientCache::publish`] makes it the readers'.
    held: Option<Data>,
    /// Where in `order` the keys past [`Slot::FAR`] are (none, but in a
    /// transaction that touches 16M rows of one table).
    far: FxHashMap<RowKey, usize>,
}

impl Writer {
    /// Keeps the keys `order` holds, touched in `table` (which now has `len`
    /// rows), for the spare copy's catch-up, or marks the table to be shared
    /// instead (see [`SHARE_AT`]).
    fn keep_for_catch_up(&mut self, table: &Arc<str>, len: usize) {
        if self.shared.contains(table) {
            self.order.clear();
            return;
        }
        let kept: usize = self.runs_of(table).map(|run| run.len()).sum();
        if (kept + self.order.len()).saturating_mul(SHARE_AT.0) >= len.saturating_mul(SHARE_AT.1) {
            self.share_at_catch_up(table);
            return;
        }
        // The touched keys are the catch-up's list: moved whole (the
        // buffers swap) when it is empty, as it is but after the first
        // table of a transaction.
        if self.pending.is_empty() {
            std::mem::swap(&mut self.pending, &mut self.order);
        } else {
            self.pending.append(&mut self.order);
        }
        let len = self.pending.len();
        match self.runs.last_mut() {
            Some((last, end)) if last == table => *end = len,
            Some((_, end)) if *end == len => {}
            None if len == 0 => {}
            _ => self.runs.push((Arc::clone(table), len)),
        }
    }

    /// Where `pending` keeps `table`'s keys.
    fn runs_of<'a>(&'a self, table: &'a Arc<str>) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
        let starts = std::iter::once(0).chain(self.runs.iter().map(|(_, end)| *end));
        self.runs.iter().zip(starts).filter(move |((t, _), _)| t == table).map(|((_, end), start)| start..*end)
    }

    /// The spare copy takes `table` from the published one at its catch-up
    /// (shared, not replayed): its keys are dropped from `pending`.
    fn share_at_catch_up(&mut self, table: &Arc<str>) {
        self.order.clear();
        if !self.shared.contains(table) {
            self.shared.push(Arc::clone(table));
        }
        if self.runs_of(table).next().is_none() {
            return;
        }
        let runs = std::mem::take(&mut self.runs);
        let mut ops = std::mem::take(&mut self.pending).into_iter();
        let mut start = 0;
        for (t, end) in runs {
            let run = ops.by_ref().take(end - start);
            start = end;
            if t == *table {
                run.for_each(drop);
                continue;
            }
            self.pending.extend(run);
            match self.runs.last_mut() {
                Some((last, e)) if *last == t => *e = self.pending.len(),
                _ => self.runs.push((t, self.pending.len())),
            }
        }
    }
}

/// How rows are keyed, decoded and indexed, and which tables keep none.
struct Parts {
    keys: Arc<dyn RowKeys>,
    decoders: Decoders,
    spatial: Option<SpatialSetup>,
    unique: UniqueColumns,
    /// The tables that keep no rows (see [`ClientCache::with_events_only`]).
    events_only: FxHashSet<Arc<str>>,
}

struct Inner {
    published: ArcSwap<Data>,
    parts: Parts,
    writer: Mutex<Writer>,
}

impl Inner {
    fn with_view<R>(&self, f: impl FnOnce(&CacheView<'_>) -> R) -> R {
        let data = self.published.load();
        f(&CacheView { data: &data, spatial: self.parts.spatial.as_ref(), unique: &self.parts.unique })
    }

    fn snapshot(self: &Arc<Self>) -> Snapshot {
        Snapshot { data: self.published.load_full(), inner: Arc::clone(self) }
    }
}

/// The client cache: subscribed rows per table, reference-counted, applied a
/// transaction at a time. Cloning it gives another handle to the same cache.
///
/// ```
/// use spacelink_sync::cache::{ClientCache, RowKey, TableDelta, WholeRow};
///
/// let cache = ClientCache::new(WholeRow);
/// let changes = cache.apply(&[TableDelta::new("item").insert(&b"sword"[..]).insert(&b"sword"[..])]);
/// assert_eq!(changes.len(), 1);
/// assert_eq!(changes[0].kind(), "insert");
/// // Two queries hold it: the first delete changes nothing.
/// assert!(cache.apply(&[TableDelta::new("item").delete(&b"sword"[..])]).is_empty());
/// assert_eq!(cache.count("item"), 1);
/// assert_eq!(cache.refcount("item", &RowKey::from(&b"sword"[..])), 1);
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

/// A read-only handle to a [`ClientCache`] (from [`ClientCache::reader`]), for
/// the game: every read is of one published transaction, and never waits.
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

/// A consistent read of the whole cache (one transaction's state), inside
/// [`ClientCache::with_view`] or from a [`Snapshot`].
#[derive(Clone, Copy)]
pub struct CacheView<'a> {
    data: &'a Data,
    spatial: Option<&'a SpatialSetup>,
    unique: &'a UniqueColumns,
}

impl fmt::Debug for CacheView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheView").field("tables", &self.tables()).finish_non_exhaustive()
    }
}

impl CacheView<'_> {
    /// The cached row of `table` with `key`.
    pub fn get(&self, table: &str, key: &RowKey) -> Option<Row> {
        self.data.tables.get(table)?.get(key).map(|c| c.row.clone())
    }

    /// The cached row of `table` whose key's bytes are `key` (no [`RowKey`] to build).
    pub fn get_by_bytes(&self, table: &str, key: &[u8]) -> Option<Row> {
        self.data.tables.get(table)?.get(key).map(|c| c.row.clone())
    }

    /// Whether `table` has a row with `key`.
    pub fn contains(&self, table: &str, key: &RowKey) -> bool {
        self.data.tables.get(table).is_some_and(|t| t.contains_key(key))
    }

    /// How many live queries hold the row of `table` with `key` (0: not cached).
    pub fn refcount(&self, table: &str, key: &RowKey) -> u32 {
        self.data.tables.get(table).and_then(|t| t.get(key).map(|c| c.count)).unwrap_or(0)
    }

    /// Every row of `table`, in no particular order.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        self.data.tables.get(table).map(|t| t.values().map(|c| c.row.clone()).collect()).unwrap_or_default()
    }

    /// Every row of `table` with its key, in no particular order.
    pub fn entries(&self, table: &str) -> Vec<(RowKey, Row)> {
        self.data
            .tables
            .get(table)
            .map(|t| t.iter().map(|(k, c)| (k.clone(), c.row.clone())).collect())
            .unwrap_or_default()
    }

    /// Calls `f` with each row of `table` and its key, in no particular order, without copying.
    pub fn for_each_row(&self, table: &str, mut f: impl FnMut(&RowKey, &Row)) {
        if let Some(t) = self.data.tables.get(table) {
            for (key, cached) in t.iter() {
                f(key, &cached.row);
            }
        }
    }

    /// Calls `f` with each row of `table` and how many live queries hold it.
    pub(crate) fn for_each_counted(&self, table: &str, mut f: impl FnMut(&Row, u32)) {
        if let Some(t) = self.data.tables.get(table) {
            for cached in t.values() {
                f(&cached.row, cached.count);
            }
        }
    }

    /// How many distinct rows `table` has.
    pub fn count(&self, table: &str) -> usize {
        self.data.tables.get(table).map_or(0, |t| t.len())
    }

    /// Whether `column` of `table` has a unique index (see [`crate::unique`]).
    pub fn is_indexed(&self, table: &str, column: usize) -> bool {
        self.unique.table(table).is_some_and(|u| u.index_of(column).is_some())
    }

    /// The key of the row of `table` whose indexed unique `column` holds
    /// `value` (its BSATN): one hash lookup. `None` if no row holds it, or the
    /// column has no index ([`is_indexed`](Self::is_indexed)).
    pub fn unique_key(&self, table: &str, column: usize, value: &[u8]) -> Option<RowKey> {
        let index = self.unique.table(table)?.index_of(column)?;
        self.data.unique.get(table)?.get(index)?.get(value).cloned()
    }

    /// The row of `table` whose indexed unique `column` holds `value` (its BSATN).
    pub fn find_unique(&self, table: &str, column: usize, value: &[u8]) -> Option<Row> {
        let index = self.unique.table(table)?.index_of(column)?;
        let key = self.data.unique.get(table)?.get(index)?.get(value)?;
        self.get(table, key)
    }

    /// Every entry of the unique index of `column` of `table`: a value (its
    /// BSATN) and the key of the row holding it, in no particular order (for
    /// tests and tools: [`find_unique`](Self::find_unique) is the lookup).
    pub fn unique_entries(&self, table: &str, column: usize) -> Vec<(Bytes, RowKey)> {
        let Some(index) = self.unique.table(table).and_then(|u| u.index_of(column)) else { return Vec::new() };
        let entries = self.data.unique.get(table).and_then(|ix| ix.get(index));
        entries.map(|ix| ix.iter().map(|(v, k)| (v.to_bytes(), k.clone())).collect()).unwrap_or_default()
    }

    /// The rows of `table`, iterated from this state without copying the table.
    pub fn table_rows(&self, table: &str) -> TableRows {
        TableRows::new(self.data.tables.get(table))
    }

    /// The tables that have at least one row, sorted by name.
    pub fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.data.tables.iter().filter(|(_, t)| !t.is_empty()).map(|(name, _)| name.to_string()).collect();
        names.sort_unstable();
        names
    }

    /// How many distinct rows the cache holds, over all tables.
    pub fn total_rows(&self) -> usize {
        self.data.tables.values().map(|t| t.len()).sum()
    }

    /// The cached rows of the spatial table within `radius` of `(x, y)` on
    /// `map`, from the spatial index (empty without a spatial table).
    pub fn within(&self, map: u32, x: f32, y: f32, radius: f32) -> Vec<Row> {
        let Some(table) = self.spatial.and_then(|s| self.data.tables.get(&s.table)) else { return Vec::new() };
        self.data
            .spatial
            .within(map, x, y, radius)
            .iter()
            .filter_map(|key| table.get(key).map(|c| c.row.clone()))
            .collect()
    }

    /// How many rows the spatial index holds.
    pub fn indexed(&self) -> usize {
        self.data.spatial.len()
    }
}

/// One published state of the cache, kept for several reads (say, a frame).
///
/// Holding it costs the writer nothing but memory: if it is still held when
/// the next-but-one transaction is applied, the writer copies the cache rather
/// than wait. Drop it when the frame is done.
#[derive(Clone)]
pub struct Snapshot {
    data: Arc<Data>,
    inner: Arc<Inner>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("rows", &self.data.tables.values().map(|t| t.len()).sum::<usize>()).finish()
    }
}

impl Snapshot {
    /// Whether `other` is the same published state (no transaction between them).
    pub fn same_state(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// The snapshot's reads.
    pub fn view(&self) -> CacheView<'_> {
        let parts = &self.inner.parts;
        CacheView { data: &self.data, spatial: parts.spatial.as_ref(), unique: &parts.unique }
    }
}

/// A borrow of a table's rows, kept with the `Arc` of the table it borrows.
#[derive(yoke::Yokeable)]
struct RowsIter<'a>(crate::table::Values<'a, RowKey, Cached>);

/// The rows of one table in one published state, in no particular order
/// ([`CacheReader::table_rows`]): it holds that state's table (an `Arc`, so
/// the writer is never waited for: it writes another copy) and walks its
/// maps, copying nothing but each row's `Arc` as it is handed out.
pub struct TableRows {
    rows: Option<yoke::Yoke<RowsIter<'static>, Arc<Table>>>,
    left: usize,
}

impl TableRows {
    fn new(table: Option<&Arc<Table>>) -> Self {
        let left = table.map_or(0, |t| t.len());
        let rows = table.map(|t| yoke::Yoke::attach_to_cart(Arc::clone(t), |t: &Table| RowsIter(t.values())));
        Self { rows, left }
    }
}

impl fmt::Debug for TableRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableRows").field("left", &self.left).finish_non_exhaustive()
    }
}

impl Iterator for TableRows {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let row = self.rows.as_mut()?.with_mut_return(|rows| rows.0.next().map(|c| c.row.clone()));
        self.left = self.left.saturating_sub(usize::from(row.is_some()));
        row
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for TableRows {}

/// The reads, on both [`ClientCache`] and [`CacheReader`]. Each loads the
/// published snapshot once (lock-free).
macro_rules! reads {
    () => {
        /// The cached row of `table` with `key`.
        pub fn get(&self, table: &str, key: &RowKey) -> Option<Row> {
            self.inner.with_view(|v| v.get(table, key))
        }

        /// Whether `table` has a row with `key`.
        pub fn contains(&self, table: &str, key: &RowKey) -> bool {
            self.inner.with_view(|v| v.contains(table, key))
        }

        /// Every row of `table` (one transaction's state), in no particular order.
        pub fn rows(&self, table: &str) -> Vec<Row> {
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
            self.inner.parts.keys.key(table, row)
        }

        /// The row of `table` whose indexed unique `column` holds `value` (its
        /// BSATN): one hash lookup (see [`CacheView::find_unique`]).
        pub fn find_unique(&self, table: &str, column: usize, value: &[u8]) -> Option<Row> {
            self.inner.with_view(|v| v.find_unique(table, column, value))
        }

        /// The rows of `table` in the current state, iterated without copying
        /// the table (the iterator keeps that state's table alive).
        pub fn table_rows(&self, table: &str) -> TableRows {
            self.inner.with_view(|v| v.table_rows(table))
        }

        /// The cached rows of the spatial table within `radius` of `(x, y)` on `map`.
        pub fn within(&self, map: u32, x: f32, y: f32, radius: f32) -> Vec<Row> {
            self.inner.with_view(|v| v.within(map, x, y, radius))
        }

        /// Runs `f` on a consistent view of the cache (one transaction's state,
        /// across tables). It never waits for the writer, and the writer does
        /// not wait for it.
        pub fn with_view<R>(&self, f: impl FnOnce(&CacheView<'_>) -> R) -> R {
            self.inner.with_view(f)
        }

        /// The current state, kept for several reads (see [`Snapshot`]).
        pub fn snapshot(&self) -> Snapshot {
            self.inner.snapshot()
        }
    };
}

impl CacheReader {
    reads!();
}

impl ClientCache {
    reads!();

    /// An empty cache whose rows are keyed by `keys` (and kept as bytes).
    pub fn new(keys: impl RowKeys + 'static) -> Self {
        Self::with_keys(Arc::new(keys))
    }

    /// An empty cache whose rows are keyed by a shared `keys` (and kept as bytes).
    pub fn with_keys(keys: Arc<dyn RowKeys>) -> Self {
        Self::with_parts(keys, Decoders::none(), None)
    }

    /// An empty cache whose rows are keyed by `keys`, decoded by `decoders`,
    /// and, for `spatial`'s table, indexed by position.
    pub fn with_parts(keys: Arc<dyn RowKeys>, decoders: Decoders, spatial: Option<SpatialSetup>) -> Self {
        Self::with_indexes(keys, decoders, spatial, UniqueColumns::none())
    }

    /// An empty cache as [`with_parts`](Self::with_parts) makes it, that also
    /// indexes the `unique` columns of its tables (see [`crate::unique`]).
    pub fn with_indexes(
        keys: Arc<dyn RowKeys>,
        decoders: Decoders,
        spatial: Option<SpatialSetup>,
        unique: UniqueColumns,
    ) -> Self {
        Self::from_parts(Parts { keys, decoders, spatial, unique, events_only: FxHashSet::default() })
    }

    /// An empty cache made of `parts`.
    fn from_parts(parts: Parts) -> Self {
        let data = Data {
            tables: FxHashMap::default(),
            unique: FxHashMap::default(),
            spatial: Arc::new(SpatialIndex::new(parts.spatial.as_ref().map_or(10.0, |s| s.cell))),
        };
        let inner = Inner { published: ArcSwap::from_pointee(data), parts, writer: Mutex::new(Writer::default()) };
        Self { inner: Arc::new(inner) }
    }

    /// An empty cache made as this one, whose `tables` keep no rows: an
    /// events-only table (see the module's doc, "Events-only tables").
    /// [`apply`](Self::apply) stores none of its rows, yet returns every
    /// insert, update and delete of it, its rows decoded as the table's are;
    /// every read sees it empty. Call it when making the cache (it returns a
    /// new, empty one).
    #[must_use]
    pub fn with_events_only<T: AsRef<str>>(&self, tables: impl IntoIterator<Item = T>) -> Self {
        let mut parts = self.parts_like();
        parts.events_only.extend(tables.into_iter().map(|t| Arc::<str>::from(t.as_ref())));
        Self::from_parts(parts)
    }

    /// The tables that keep no rows (see [`with_events_only`](Self::with_events_only)), in no particular order.
    pub fn events_only(&self) -> impl Iterator<Item = &str> {
        self.inner.parts.events_only.iter().map(|t| &**t)
    }

    /// An empty cache made of the same parts as this one (for a reconnect's fresh state).
    pub fn empty_like(&self) -> Self {
        Self::from_parts(self.parts_like())
    }

    /// A copy of this cache's parts (shared where they are `Arc`s).
    fn parts_like(&self) -> Parts {
        let parts = &self.inner.parts;
        Parts {
            keys: Arc::clone(&parts.keys),
            decoders: parts.decoders.clone(),
            spatial: parts.spatial.clone(),
            unique: parts.unique.clone(),
            events_only: parts.events_only.clone(),
        }
    }

    /// A handle that can only read this cache.
    pub fn reader(&self) -> CacheReader {
        CacheReader { inner: Arc::clone(&self.inner) }
    }

    /// The writable copy, caught up with the published one.
    fn writable(&self, writer: &mut Writer, current: &Arc<Data>) -> Data {
        let Some(mut spare) = writer.spare.take() else {
            writer.pending.clear();
            writer.runs.clear();
            writer.shared.clear();
            return (**current).clone();
        };
        let started = Instant::now();
        let data = loop {
            match Arc::try_unwrap(spare) {
                Ok(data) => break Some(data),
                Err(shared) if started.elapsed() < SPARE_WAIT => {
                    spare = shared;
                    std::thread::yield_now();
                }
                Err(_) => break None,
            }
        };
        self.caught_up(writer, data, current)
    }

    /// Catches the spare copy up with the published one now, if no reader
    /// holds it (else the next transaction does, as it would have): the
    /// sync actor calls it once it has told a transaction's changes, so
    /// that the next transaction does not wait for it. True if the spare
    /// copy is caught up.
    pub fn catch_up(&self) -> bool {
        let inner = &*self.inner;
        let mut writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writer = &mut *writer;
        if writer.held.is_some() {
            return false;
        }
        let Some(spare) = writer.spare.take() else { return false };
        if writer.pending.is_empty() && writer.shared.is_empty() {
            writer.spare = Some(spare);
            return true;
        }
        match Arc::try_unwrap(spare) {
            Ok(data) => {
                let current = inner.published.load_full();
                writer.spare = Some(Arc::new(self.caught_up(writer, Some(data), &current)));
                true
            }
            Err(spare) => {
                writer.spare = Some(spare);
                false
            }
        }
    }

    /// The spare copy `data` (`None` if a reader held it) caught up with
    /// `current`: the last transactions' touched keys replayed, the tables
    /// they shared taken (else a copy of `current`).
    fn caught_up(&self, writer: &mut Writer, mut data: Option<Data>, current: &Arc<Data>) -> Data {
        match &mut data {
            Some(data) => {
                let spatial = self.inner.parts.spatial.as_ref();
                let Writer { pending, runs, shared, .. } = &mut *writer;
                let mut ops = WarmOps { ops: pending.drain(..), warm: 0 };
                let mut start = 0;
                for (table, end) in runs.drain(..) {
                    let unique = self.inner.parts.unique.table(&table).map(|u| &**u);
                    data.replay(&table, ops.by_ref().take(end - start), spatial, unique);
                    start = end;
                }
                drop(ops);
                for table in shared.drain(..) {
                    data.share(&table, current, spatial);
                }
            }
            None => {
                metrics::counter!(names::SYNC_SNAPSHOT_COPIES).increment(1);
                writer.pending.clear();
                writer.runs.clear();
                writer.shared.clear();
            }
        }
        // A large transaction's bookkeeping is not kept for the small ones after it.
        if writer.pending.capacity() > KEPT_CAPACITY {
            writer.pending = Vec::new();
        }
        data.unwrap_or_else(|| (**current).clone())
    }

    /// Applies one transaction and returns the minimal changes it made. Readers
    /// see the state before it until it is published whole.
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
    ///
    /// An events-only table (see [`with_events_only`](Self::with_events_only))
    /// is compared within the transaction alone: a key deleted and inserted
    /// is an Update (nothing if its bytes are the same), a key only deleted a
    /// Delete, only inserted an Insert; nothing is stored.
    pub fn apply(&self, deltas: &[TableDelta]) -> Vec<RowChange> {
        self.apply_groups(group_by_table(deltas.iter().map(|d| (&d.table, d.part()))), true)
    }

    /// [`apply`](Self::apply) of a transaction as a message carries it: its
    /// rows read from the message's row lists, each sliced once and its
    /// handle moved into its [`Row`] (no handle per row made beforehand).
    pub(crate) fn apply_wire(&self, deltas: &[WireDelta<'_>]) -> Vec<RowChange> {
        self.apply_groups(group_by_table(deltas.iter().map(|d| (&d.table, d.part()))), true)
    }

    fn apply_groups(&self, groups: Vec<Group<'_>>, publish: bool) -> Vec<RowChange> {
        let inner = &*self.inner;
        let mut writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writer = &mut *writer;
        let current = inner.published.load_full();
        let mut data = match writer.held.take() {
            Some(held) => held,
            None => self.writable(writer, &current),
        };
        let txn = NEXT_TXN.fetch_add(1, Ordering::Relaxed);
        let mut changes = Vec::new();
        let mut stats = Stats::default();
        let spatial = inner.parts.spatial.as_ref();
        let events_only = &inner.parts.events_only;
        for group in groups {
            let codec = inner.parts.decoders.table(&group.table);
            if !events_only.is_empty() && events_only.contains(&group.table) {
                events(inner, &group, codec, &mut stats, &mut changes);
                continue;
            }
            let was_empty = data.tables.get(&group.table).is_none_or(|t| t.is_empty());
            if was_empty && group.deltas.iter().all(|d| d.deletes_len() == 0) {
                // A table's first rows (an initial subscription, a reconnect's
                // fresh state): loaded whole, and shared with the spare copy.
                let rows = load(inner, &group, codec, &mut stats, &mut changes);
                match inner.parts.unique.table(&group.table).filter(|_| !rows.is_empty()) {
                    Some(unique) => data.unique.insert(Arc::clone(&group.table), Arc::new(index_all(&rows, unique))),
                    None => data.unique.remove(&group.table),
                };
                if rows.is_empty() {
                    data.tables.remove(&group.table);
                } else {
                    if spatial.is_some_and(|s| s.table == group.table) {
                        let index = Arc::make_mut(&mut data.spatial);
                        let setup = spatial.map(|s| &s.positions);
                        for (key, cached) in rows.iter() {
                            if let Some((map, x, y)) = setup.and_then(|p| p.position(cached.row.bytes())) {
                                index.upsert(key.clone(), map, x, y);
                            }
                        }
                    }
                    data.tables.insert(Arc::clone(&group.table), Arc::new(rows));
                }
                writer.share_at_catch_up(&group.table);
                continue;
            }
            let table = Arc::make_mut(data.tables.entry(Arc::clone(&group.table)).or_default());
            let unique = inner.parts.unique.table(&group.table);
            let mut indexes = unique.map(|u| indexes_of(&mut data.unique, &group.table, u));
            let (order, far) = (&mut writer.order, &mut writer.far);
            order.clear();
            far.clear();
            // About one change per key (a delete and an insert of a key are
            // one update): sized once, not doubled (and copied) as it grows.
            changes.reserve(group.deltas.iter().map(|d| d.deletes_len().max(d.inserts.len())).sum());
            let keyer = group.keyer(&*inner.parts.keys);
            // With no inserts to come, a row whose count falls to 0 is removed
            // at once, in the probe that found it (else its key is looked up
            // again once the transaction's inserts are in: a delete and an
            // insert of a key are one update).
            let inserts: usize = group.deltas.iter().map(|d| d.inserts.len()).sum();
            let deletes_only = inserts == 0;
            let mut rows = table.writing(inserts);
            // A deleted row's handle is let go a block at a time: a release
            // (a locked decrement) after each row waited for its writes.
            let mut spent: Vec<RowRef<'_>> = Vec::with_capacity(WARM_BLOCK);
            let mut block = Vec::with_capacity(PROBE_BLOCK);
            let mut deletes = group.deletes();
            while next_block(&mut deletes, &keyer, &mut block) {
                rows.warm(block.iter().map(|k| (&k.key, k.hash)));
                for Keyed { row, key, hash } in block.drain(..) {
                    if spent.len() == WARM_BLOCK {
                        spent.clear();
                    }
                    stats.row(&row);
                    match rows.occupied_hashed(&key, hash) {
                        Some(mut entry) if entry.get().count > 0 => {
                            let cached = entry.get_mut();
                            if cached.row.bytes() != &*row {
                                tracing::debug!(table = %group.table, "a delete's bytes differ from the cached row's: deleted by key");
                            }
                            if deletes_only && cached.count == 1 && again(order, far, cached, &key, txn).is_none() {
                                // Gone at its first touch: its row moves to the
                                // touched list, no reference taken nor let go.
                                let Cached { row: before, .. } = entry.remove();
                                order.push(Touched::first(key, Some((before, 1)), None, 0));
                                spent.push(row);
                                continue;
                            }
                            let touch = touch(order, far, cached, &key, txn);
                            cached.count -= 1;
                            touched(order, far, cached, touch, &key, txn);
                            if deletes_only && cached.count == 0 {
                                entry.remove();
                            }
                        }
                        _ => {
                            stats.ignored += 1;
                            tracing::debug!(table = %group.table, len = row.len(), "delete of a row that is not cached: ignored");
                        }
                    }
                    spent.push(row);
                }
            }
            drop(spent);
            let mut inserted = group.inserts();
            while next_block(&mut inserted, &keyer, &mut block) {
                rows.warm(block.iter().map(|k| (&k.key, k.hash)));
                for Keyed { row, key, hash } in block.drain(..) {
                    stats.row(&row);
                    match rows.entry_hashed(key, hash) {
                        TableEntry::Occupied(mut entry) => {
                            let (key, cached) = entry.key_value_mut();
                            let touch = touch(order, far, cached, key, txn);
                            if cached.row.bytes() != &*row {
                                cached.row = decode(codec, row);
                            }
                            cached.count = cached.count.saturating_add(1);
                            touched(order, far, cached, touch, key, txn);
                        }
                        TableEntry::Vacant(entry) => {
                            let row = decode(codec, row);
                            let slot = Slot::new(txn, order.len());
                            if slot.index().is_none() {
                                far.insert(entry.key().clone(), order.len());
                            }
                            order.push(Touched::first(entry.key().clone(), None, Some(row.clone()), 1));
                            entry.insert(Cached { row, count: 1, slot });
                        }
                    }
                }
            }
            drop(block);
            for touched in order.iter_mut() {
                if touched.count == 0 && !deletes_only {
                    rows.remove(&touched.key);
                }
                let (old, new) = (touched.before.as_ref().map(|(r, c)| (r, *c)), touched.now());
                if old.map(|(r, c)| (r.bytes(), c)) == new.map(|(r, c)| (r.bytes(), c)) {
                    continue;
                }
                let moved = old.map(|(r, _)| r.bytes()) != new.map(|(r, _)| r.bytes());
                let (old, new) = (old.map(|(r, _)| r), new.map(|(r, _)| r));
                if let (true, Some(unique), Some(indexes)) = (moved, unique, indexes.as_mut()) {
                    reindex(indexes, unique, &touched.key, old, new);
                }
                // The row before moves into the change (the catch-up needs it not).
                let old = touched.before.take().map(|(row, _)| row);
                let new = touched.row.as_ref().filter(|_| touched.count > 0);
                stats.push(&mut changes, change_from(&group.table, &touched.key, old, new));
                touched.catch_up = if moved { CatchUp::Row } else { CatchUp::Count };
            }
            drop(rows);
            if let Some(setup) = spatial.filter(|s| s.table == group.table) {
                for op in order.iter().filter(|op| op.catch_up == CatchUp::Row) {
                    index_row(&mut data.spatial, setup, op);
                }
            }
            let len = table.len();
            if len == 0 {
                data.tables.remove(&group.table);
                data.unique.remove(&group.table);
            }
            writer.keep_for_catch_up(&group.table, len);
            if writer.order.capacity() > KEPT_CAPACITY {
                writer.order = Vec::new();
            }
        }
        if publish {
            let old = inner.published.swap(Arc::new(data));
            writer.spare = Some(old);
        } else {
            writer.held = Some(data);
        }
        drop(current);
        metrics::counter!(names::SYNC_TRANSACTIONS_APPLIED).increment(1);
        stats.record();
        changes
    }

    /// [`apply_wire`](Self::apply_wire), but readers keep seeing the state
    /// before it until [`publish`](Self::publish) (or the next transaction
    /// applied with `apply`, or a reconcile): the transactions of a backlog,
    /// applied back to back, are published once, and the spare copy catches
    /// up with all of them at once, taking from the published copy every
    /// table they touched as many keys as it holds (see [`SHARE_AT`]), where
    /// it would have replayed each transaction's keys in turn. The changes
    /// are returned at once, as `apply` returns them; a reader (of another
    /// thread) that looks before the publish does not see them yet.
    pub(crate) fn apply_held(&self, deltas: &[WireDelta<'_>]) -> Vec<RowChange> {
        self.apply_groups(group_by_table(deltas.iter().map(|d| (&d.table, d.part()))), false)
    }

    /// Publishes the transactions [`apply_held`](Self::apply_held) applied,
    /// if any: readers see them from now on. True if there were some.
    pub fn publish(&self) -> bool {
        let mut writer = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Self::publish_held(&self.inner, &mut writer)
    }

    fn publish_held(inner: &Inner, writer: &mut Writer) -> bool {
        let Some(held) = writer.held.take() else { return false };
        writer.spare = Some(inner.published.swap(Arc::new(held)));
        true
    }

    /// Replaces the whole cache with `fresh` and returns the minimal changes
    /// from the stale state to the fresh one (see [`reconcile_from`](Self::reconcile_from)).
    ///
    /// `fresh` is the state after a reconnect: every row of every live query,
    /// once per query that matches it (so overlapping queries give the counts).
    /// It is read as [`apply`](Self::apply) would read it on an empty cache.
    pub fn reconcile(&self, fresh: &[TableDelta]) -> Vec<RowChange> {
        let staging = self.empty_like();
        staging.apply(fresh);
        self.reconcile_from(&staging)
    }

    /// Replaces the whole cache with the state of `fresh` (a cache made with
    /// [`empty_like`](Self::empty_like) that collected a reconnect's state, its
    /// rows already decoded) and returns the minimal changes from the stale
    /// state to the fresh one. **Every table not in `fresh` is emptied**.
    ///
    /// Unchanged rows fire nothing, a key with other bytes fires an Update, a
    /// vanished row a Delete, a new row an Insert. The changes come table by
    /// table, by name; within a table, Deletes first, then Updates and Inserts,
    /// each by key.
    pub fn reconcile_from(&self, fresh: &ClientCache) -> Vec<RowChange> {
        let inner = &*self.inner;
        let mut writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Self::publish_held(inner, &mut writer);
        let fresh = fresh.inner.published.load_full();
        let stale = inner.published.load_full();
        let mut names: Vec<&Arc<str>> = stale.tables.keys().chain(fresh.tables.keys()).collect();
        names.sort_unstable();
        names.dedup();
        let mut changes = Vec::new();
        for name in names {
            let (old, new) = (stale.tables.get(name), fresh.tables.get(name));
            let mut deletes: Vec<(&RowKey, &Cached)> =
                old.iter().flat_map(|t| t.iter()).filter(|(k, _)| new.is_none_or(|n| !n.contains_key(*k))).collect();
            deletes.sort_unstable_by(|a, b| a.0.cmp(b.0));
            changes.extend(deletes.into_iter().flat_map(|(k, c)| change(name, k, Some(&c.row), None)));
            let mut rest: Vec<(&RowKey, &Cached)> = new.iter().flat_map(|t| t.iter()).collect();
            rest.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, c) in rest {
                changes.extend(change(name, key, old.and_then(|t| t.get(key)).map(|o| &o.row), Some(&c.row)));
            }
        }
        inner.published.store(fresh);
        writer.spare = None;
        writer.pending.clear();
        writer.runs.clear();
        writer.shared.clear();
        metrics::counter!(names::SYNC_RECONCILES).increment(1);
        record_changes(&changes);
        tracing::debug!(changes = changes.len(), "cache reconciled with fresh state");
        changes
    }
}

/// How many rows a load decodes before it puts them in its table (see [`load`]).
const LOAD_BLOCK: usize = 64;

/// The rows of a table that was empty before this transaction and has no
/// deletes in it: each key is hashed once, each row decoded once, and one
/// [`RowChange::Insert`] per distinct key is pushed to `changes`, in the order
/// the keys first came (as [`ClientCache::apply`] orders them).
///
/// The rows go in a block of [`LOAD_BLOCK`] at a time, in two passes. The
/// first decodes them and makes their changes: writes in order, and every
/// reference count taken (a locked instruction each). The second puts them
/// in the table: a write to a random place of a map larger than the core's
/// caches each, a miss, with no locked instruction between them. A locked
/// instruction waits for every write before it: one per row, after the row's
/// write in the map, made the misses come one after the other (perf put 73 %
/// of the loop's time on that wait); a block's misses overlap. A key that
/// comes again (a row two queries hold) has had its change made too: it is
/// dropped once the table is built (its row was decoded all the same: such
/// a key is rare).
fn load(
    inner: &Inner,
    group: &Group<'_>,
    codec: Option<&Arc<TableCodec>>,
    stats: &mut Stats,
    changes: &mut Vec<RowChange>,
) -> Table {
    let mut table = Table::default();
    let rows: usize = group.deltas.iter().map(|d| d.inserts.len()).sum();
    table.reserve(rows);
    changes.reserve(rows);
    let first = changes.len();
    // Whether a key came twice with other bytes: its change must carry the last ones.
    let mut replaced = false;
    // The changes of keys that came again (another query's copy of a row): dropped at the end.
    let mut again: Vec<usize> = Vec::new();
    let keyer = group.keyer(&*inner.parts.keys);
    let mut writing = table.writing(rows);
    let mut block: Vec<(RowKey, u64, Row)> = Vec::with_capacity(LOAD_BLOCK);
    let mut inserts = group.inserts();
    loop {
        let start = changes.len();
        for row in inserts.by_ref().take(LOAD_BLOCK) {
            stats.row(&row);
            let (key, hash) = keyer.hashed(&row);
            let row = decode(codec, row);
            changes.push(RowChange::Insert { table: Arc::clone(&group.table), key: key.clone(), row: row.clone() });
            block.push((key, hash, row));
        }
        if block.is_empty() {
            break;
        }
        for (i, (key, hash, row)) in block.drain(..).enumerate() {
            match writing.entry_hashed(key, hash) {
                TableEntry::Occupied(mut entry) => {
                    let cached = entry.get_mut();
                    if cached.row.bytes() != row.bytes() {
                        cached.row = row;
                        replaced = true;
                    }
                    cached.count = cached.count.saturating_add(1);
                    again.push(start + i);
                }
                TableEntry::Vacant(entry) => {
                    entry.insert(Cached { row, count: 1, slot: Slot::default() });
                }
            }
        }
    }
    drop(writing);
    if !again.is_empty() {
        let mut at = 0;
        let mut again = again.into_iter().peekable();
        changes.retain(|_| {
            let keep = at < first || again.next_if_eq(&at).is_none();
            at += 1;
            keep
        });
    }
    stats.changes[0] += (changes.len() - first) as u64;
    if replaced {
        for change in &mut changes[first..] {
            if let RowChange::Insert { key, row, .. } = change {
                if let Some(cached) = table.get(key) {
                    *row = cached.row.clone();
                }
            }
        }
    }
    table
}

/// The changes of one transaction to an events-only table, pushed to
/// `changes` in the order the keys were first touched (deleted rows first):
/// each key's first deleted row against its last inserted one, each row
/// decoded once. Nothing is stored, and no count kept: a row two queries
/// hold is still one change, as each key is one entry here.
fn events(
    inner: &Inner,
    group: &Group<'_>,
    codec: Option<&Arc<TableCodec>>,
    stats: &mut Stats,
    changes: &mut Vec<RowChange>,
) {
    // Per key, in first-touch order: the row deleted (the first) and the row inserted (the last).
    let mut touched: Vec<(RowKey, Option<Row>, Option<Row>)> = Vec::new();
    let keyer = group.keyer(&*inner.parts.keys);
    let mut slots: FxHashMap<RowKey, usize> = FxHashMap::default();
    let mut slot = |key: RowKey, touched: &mut Vec<(RowKey, Option<Row>, Option<Row>)>| match slots.entry(key) {
        MapEntry::Occupied(entry) => *entry.get(),
        MapEntry::Vacant(entry) => {
            touched.push((entry.key().clone(), None, None));
            *entry.insert(touched.len() - 1)
        }
    };
    for row in group.deletes() {
        stats.row(&row);
        let i = slot(keyer.key(&row), &mut touched);
        touched[i].1.get_or_insert_with(|| decode(codec, row));
    }
    for row in group.inserts() {
        stats.row(&row);
        let i = slot(keyer.key(&row), &mut touched);
        let new = &mut touched[i].2;
        if new.as_ref().is_none_or(|r| r.bytes() != &*row) {
            *new = Some(decode(codec, row));
        }
    }
    changes.reserve(touched.len());
    for (key, old, new) in &touched {
        stats.push(changes, change(&group.table, key, old.as_ref(), new.as_ref()));
    }
}

/// Whether a row was touched before in this transaction.
enum Touch {
    /// Its first touch: its state before the transaction.
    First(Row, u32),
    /// Touched before: its entry in `order`.
    Again(usize),
}

/// Before `cached` (the row of `key`) is changed by transaction `txn`: its
/// state before the transaction on its first touch, else where `order`
/// keeps it (see [`Slot`]).
fn touch(order: &[Touched], far: &FxHashMap<RowKey, usize>, cached: &Cached, key: &RowKey, txn: u64) -> Touch {
    match again(order, far, cached, key, txn) {
        Some(index) => Touch::Again(index),
        None => Touch::First(cached.row.clone(), cached.count),
    }
}

/// Where `order` keeps `key` if transaction `txn` touched it before (see [`Slot`]).
fn again(order: &[Touched], far: &FxHashMap<RowKey, usize>, cached: &Cached, key: &RowKey, txn: u64) -> Option<usize> {
    if !cached.slot.of(txn) {
        return None;
    }
    let index = cached.slot.index().or_else(|| far.get(key).copied());
    index.filter(|&i| order.get(i).is_some_and(|t| t.key == *key))
}

/// After `cached` (the row of `key`) was changed: records its new state in
/// `order`, as a new entry on its first touch or over its entry.
fn touched(
    order: &mut Vec<Touched>,
    far: &mut FxHashMap<RowKey, usize>,
    cached: &mut Cached,
    touch: Touch,
    key: &RowKey,
    txn: u64,
) {
    match touch {
        Touch::First(row, count) => {
            cached.slot = Slot::new(txn, order.len());
            if cached.slot.index().is_none() {
                far.insert(key.clone(), order.len());
            }
            let now = (cached.count > 0).then(|| cached.row.clone());
            order.push(Touched::first(key.clone(), Some((row, count)), now, cached.count));
        }
        Touch::Again(index) => {
            let entry = &mut order[index];
            entry.row = (cached.count > 0).then(|| cached.row.clone());
            entry.count = cached.count;
        }
    }
}

/// Moves `op`'s row, a row of `setup`'s table, in the spatial index.
fn index_row(index: &mut Arc<SpatialIndex<RowKey>>, setup: &SpatialSetup, op: &Touched) {
    match op.now().and_then(|(row, _)| setup.positions.position(row.bytes())) {
        Some((map, x, y)) => Arc::make_mut(index).upsert(op.key.clone(), map, x, y),
        None => Arc::make_mut(index).remove(&op.key),
    }
}

/// The catch-up's operations, each block of [`WARM_BLOCK`] read before it is
/// replayed (see [`Warmed`]): a transaction's list (80 bytes an operation)
/// has left the core's caches by the next one, and the replay's reads of it,
/// each behind a probe of the table, missed one by one.
struct WarmOps<'a> {
    ops: std::vec::Drain<'a, Touched>,
    /// How many of the next operations were read ahead.
    warm: usize,
}

impl Iterator for WarmOps<'_> {
    type Item = Touched;

    #[inline]
    fn next(&mut self) -> Option<Touched> {
        if self.warm == 0 {
            let ahead = self.ops.as_slice();
            let ahead = &ahead[..ahead.len().min(WARM_BLOCK)];
            let mut seen = 0usize;
            for op in ahead {
                seen ^= op.key.len() ^ op.catch_up as usize;
            }
            std::hint::black_box(seen);
            self.warm = ahead.len();
        }
        self.warm = self.warm.saturating_sub(1);
        self.ops.next()
    }
}

/// A row read for a block of writes, with its key and the key's hash.
struct Keyed<'a> {
    row: RowRef<'a>,
    key: RowKey,
    hash: u64,
}

/// Takes the next [`PROBE_BLOCK`] rows of `rows` into `block` (emptied
/// first) with their keys, for [`Writing::warm`](crate::table::Writing::warm)
/// to probe them all before they are written. False once `rows` is done.
fn next_block<'a>(rows: &mut impl Iterator<Item = RowRef<'a>>, keyer: &Keyer<'_>, block: &mut Vec<Keyed<'a>>) -> bool {
    block.clear();
    block.extend(rows.take(PROBE_BLOCK).map(|row| {
        let (key, hash) = keyer.hashed(&row);
        Keyed { row, key, hash }
    }));
    !block.is_empty()
}

/// The cached form of `bytes`, decoded once by its table's codec.
fn decode(codec: Option<&Arc<TableCodec>>, bytes: RowRef<'_>) -> Row {
    let bytes = bytes.into_owned();
    match codec {
        Some(codec) => codec.row(bytes),
        None => Row::from_bytes(bytes),
    }
}

/// [`change`], the row before given, not lent.
fn change_from(table: &Arc<str>, key: &RowKey, old: Option<Row>, new: Option<&Row>) -> Option<RowChange> {
    let (table, key) = (Arc::clone(table), key.clone());
    match (old, new) {
        (None, None) => None,
        (None, Some(row)) => Some(RowChange::Insert { table, key, row: row.clone() }),
        (Some(row), None) => Some(RowChange::Delete { table, key, row }),
        (Some(old), Some(new)) if old.bytes() == new.bytes() => None,
        (Some(old), Some(new)) => Some(RowChange::Update { table, key, old, new: new.clone() }),
    }
}

/// The change from `old` to `new` of one key, if any.
fn change(table: &Arc<str>, key: &RowKey, old: Option<&Row>, new: Option<&Row>) -> Option<RowChange> {
    let (table, key) = (Arc::clone(table), key.clone());
    match (old, new) {
        (None, None) => None,
        (None, Some(row)) => Some(RowChange::Insert { table, key, row: row.clone() }),
        (Some(row), None) => Some(RowChange::Delete { table, key, row: row.clone() }),
        (Some(old), Some(new)) if old.bytes() == new.bytes() => None,
        (Some(old), Some(new)) => Some(RowChange::Update { table, key, old: old.clone(), new: new.clone() }),
    }
}

/// One delta's rows as a transaction reads them: a [`TableDelta`]'s
/// handles, or a message's row list, sliced as it is read (no list of
/// handles is made, and an inserted row's handle moves into its [`Row`]).
#[derive(Clone, Copy)]
enum Rows<'a> {
    Handles(&'a [Bytes]),
    Wire(&'a ws::BsatnRowList),
}

impl Rows<'_> {
    const NONE: Rows<'static> = Rows::Handles(&[]);

    fn len(&self) -> usize {
        match self {
            Rows::Handles(rows) => rows.len(),
            Rows::Wire(list) => codec::row_count(list),
        }
    }
}

/// One delta of a group: its deleted rows (two lists: a query set's rows
/// leaving are all deletes) and its inserted rows.
#[derive(Clone, Copy)]
struct Part<'a> {
    deletes: [Rows<'a>; 2],
    inserts: Rows<'a>,
}

impl Part<'_> {
    fn deletes_len(&self) -> usize {
        self.deletes.iter().map(Rows::len).sum()
    }
}

/// One table's part of a transaction as a message carries it: its row lists,
/// read where they are (see [`ClientCache::apply_wire`]).
#[derive(Debug, Clone)]
pub(crate) struct WireDelta<'a> {
    pub(crate) table: Arc<str>,
    pub(crate) deletes: &'a ws::BsatnRowList,
    pub(crate) inserts: &'a ws::BsatnRowList,
    /// Every row is a delete, the inserts' too (a query set's rows leaving).
    pub(crate) deletes_only: bool,
}

impl<'a> WireDelta<'a> {
    /// How many rows it carries, deleted and inserted.
    pub(crate) fn rows(&self) -> usize {
        use ws::RowListLen;
        self.deletes.len() + self.inserts.len()
    }

    fn part(&self) -> Part<'a> {
        if self.deletes_only {
            Part { deletes: [Rows::Wire(self.deletes), Rows::Wire(self.inserts)], inserts: Rows::NONE }
        } else {
            Part { deletes: [Rows::Wire(self.deletes), Rows::NONE], inserts: Rows::Wire(self.inserts) }
        }
    }
}

impl TableDelta {
    fn part(&self) -> Part<'_> {
        Part { deletes: [Rows::Handles(&self.deletes), Rows::NONE], inserts: Rows::Handles(&self.inserts) }
    }
}

/// One table's deltas in a transaction.
struct Group<'a> {
    table: Arc<str>,
    deltas: Vec<Part<'a>>,
}

impl<'a> Group<'a> {
    fn deletes(&self) -> impl Iterator<Item = RowRef<'a>> + '_ {
        Chained::new(self.deltas.iter().flat_map(|d| d.deletes))
    }

    fn inserts(&self) -> impl Iterator<Item = RowRef<'a>> + '_ {
        Chained::new(self.deltas.iter().map(|d| d.inserts))
    }

    /// How this group's rows are keyed (see [`Keyer`]).
    fn keyer<'k>(&'k self, keys: &'k dyn RowKeys) -> Keyer<'k> {
        Keyer { keys, table: &self.table, fixed: keys.fixed_key_range(&self.table) }
    }
}

/// How many rows [`Warmed`] reads ahead at a time: their handles (32 bytes
/// each) and bytes stay in the core's first caches until they are applied.
const WARM_BLOCK: usize = 256;

/// A list of rows, each block of [`WARM_BLOCK`] read before it is handed out.
///
/// The rows slice a frame the network thread read, on another core, and
/// their handles were made a while before: the first read of a row (its
/// key) missed every cache, about 150 ns a row, each waited for in turn
/// since a row's key decides its probe. Reads that depend on nothing
/// overlap: a byte at each end of a block's rows costs a few ns a row. A
/// whole transaction read at once would not do (100k rows are 8 MB, which
/// leave the caches before the last is applied).
///
/// A message's row list is sliced a block at a time into `block` (a few KB,
/// reused), and each row's handle is handed out, not copied; a
/// [`TableDelta`]'s handles are lent.
struct Warmed<'a> {
    rows: Rows<'a>,
    len: usize,
    at: usize,
    /// The rows before it have been read ahead.
    warm: usize,
    /// A row list's block read ahead: rows `warm - block.len()..warm`, the
    /// ones handed out taken (left empty).
    block: Vec<Bytes>,
}

impl<'a> Warmed<'a> {
    fn new(rows: Rows<'a>) -> Self {
        Self { rows, len: rows.len(), at: 0, warm: 0, block: Vec::new() }
    }

    /// Reads the next block ahead (once every [`WARM_BLOCK`] rows: kept out
    /// of `next`, which stays small enough to be inlined in the apply loops).
    #[inline(never)]
    fn read_ahead(&mut self) {
        let end = self.len.min(self.at + WARM_BLOCK);
        let mut seen = 0u8;
        match self.rows {
            Rows::Handles(rows) => {
                for row in &rows[self.at.min(end)..end] {
                    warm(&mut seen, row);
                }
            }
            Rows::Wire(list) => {
                self.block.clear();
                for i in self.at..end {
                    let row = list.get(i).unwrap_or_default();
                    warm(&mut seen, &row);
                    self.block.push(row);
                }
            }
        }
        std::hint::black_box(seen);
        self.warm = end;
    }
}

/// The rows of several lists, one after the other, each [`Warmed`]: a
/// `flat_map` of them was not inlined in the apply loops (a call per row).
struct Chained<'a, I> {
    lists: I,
    current: Warmed<'a>,
}

impl<'a, I: Iterator<Item = Rows<'a>>> Chained<'a, I> {
    fn new(lists: I) -> Self {
        Self { lists, current: Warmed::new(Rows::NONE) }
    }
}

impl<'a, I: Iterator<Item = Rows<'a>>> Iterator for Chained<'a, I> {
    type Item = RowRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<RowRef<'a>> {
        loop {
            if let Some(row) = self.current.next() {
                return Some(row);
            }
            self.current = Warmed::new(self.lists.next()?);
        }
    }
}

/// Reads the first and last byte of `row` into `seen`.
#[inline]
fn warm(seen: &mut u8, row: &[u8]) {
    if let (Some(first), Some(last)) = (row.first(), row.last()) {
        *seen ^= first ^ last;
    }
}

/// A row as [`Warmed`] hands it out: a [`TableDelta`]'s handle, borrowed,
/// or a row list's, owned (moved into the row's [`Row`] if it is cached).
enum RowRef<'a> {
    Borrowed(&'a Bytes),
    Owned(Bytes),
}

impl RowRef<'_> {
    fn into_owned(self) -> Bytes {
        match self {
            RowRef::Borrowed(row) => row.clone(),
            RowRef::Owned(row) => row,
        }
    }
}

impl std::ops::Deref for RowRef<'_> {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        match self {
            RowRef::Borrowed(row) => row,
            RowRef::Owned(row) => row,
        }
    }
}

impl<'a> Iterator for Warmed<'a> {
    type Item = RowRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<RowRef<'a>> {
        if self.at >= self.len {
            return None;
        }
        if self.at == self.warm {
            self.read_ahead();
        }
        let at = self.at;
        self.at += 1;
        match self.rows {
            Rows::Handles(rows) => rows.get(at).map(RowRef::Borrowed),
            Rows::Wire(_) => {
                let in_block = at + self.block.len() - self.warm;
                self.block.get_mut(in_block).map(|row| RowRef::Owned(std::mem::take(row)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.at;
        (left, Some(left))
    }
}

/// The keys of one table's rows: sliced from a range fixed for the table
/// ([`RowKeys::fixed_key_range`]) where there is one, inline, with no call
/// through `dyn RowKeys` and no lookup of the table per row; else asked of
/// [`RowKeys::key_of`].
struct Keyer<'a> {
    keys: &'a dyn RowKeys,
    table: &'a str,
    fixed: Option<std::ops::Range<usize>>,
}

impl Keyer<'_> {
    #[inline]
    fn key(&self, row: &Bytes) -> RowKey {
        match &self.fixed {
            Some(range) if range.end <= row.len() => RowKey::from_slice_of(row, range.clone()),
            _ => self.keys.key_of(self.table, row),
        }
    }

    /// The key of `row` and its table hash, read from the row's bytes where
    /// the key is a fixed range of them (see [`Table::entry_hashed`]).
    #[inline]
    fn hashed(&self, row: &Bytes) -> (RowKey, u64) {
        use crate::table::TableHash;
        match &self.fixed {
            Some(range) if range.end <= row.len() => {
                (RowKey::from_slice_of(row, range.clone()), row[range.clone()].table_hash())
            }
            _ => {
                let key = self.keys.key_of(self.table, row);
                let hash = key.table_hash();
                (key, hash)
            }
        }
    }
}

/// The deltas grouped by table, tables in order of first appearance.
fn group_by_table<'a>(deltas: impl Iterator<Item = (&'a Arc<str>, Part<'a>)>) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    for (table, part) in deltas {
        match index.entry(&**table) {
            MapEntry::Occupied(i) => groups[*i.get()].deltas.push(part),
            MapEntry::Vacant(slot) => {
                slot.insert(groups.len());
                groups.push(Group { table: Arc::clone(table), deltas: vec![part] });
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
    /// The changes pushed, by kind: inserts, updates, deletes.
    changes: [u64; 3],
}

impl Stats {
    fn row(&mut self, row: &[u8]) {
        self.rows += 1;
        self.bytes += row.len() as u64;
    }

    /// Pushes `change`, if any, to `changes`, counted as it goes (a pass
    /// over a large transaction's changes afterwards would read them from
    /// memory again).
    fn push(&mut self, changes: &mut Vec<RowChange>, change: Option<RowChange>) {
        if let Some(change) = change {
            self.changes[kind(&change)] += 1;
            changes.push(change);
        }
    }

    fn record(&self) {
        metrics::counter!(names::SYNC_ROWS_APPLIED).increment(self.rows);
        metrics::counter!(names::SYNC_BYTES_APPLIED).increment(self.bytes);
        if self.ignored > 0 {
            metrics::counter!(names::SYNC_DELETES_IGNORED).increment(self.ignored);
        }
        record_kinds(self.changes);
    }
}

/// A change's place in [`Stats::changes`].
fn kind(change: &RowChange) -> usize {
    match change {
        RowChange::Insert { .. } => 0,
        RowChange::Update { .. } => 1,
        RowChange::Delete { .. } => 2,
    }
}

fn record_changes(changes: &[RowChange]) {
    let mut counts = [0; 3];
    for change in changes {
        counts[kind(change)] += 1;
    }
    record_kinds(counts);
}

fn record_kinds([inserts, updates, deletes]: [u64; 3]) {
    for (kind, n) in [("insert", inserts), ("update", updates), ("delete", deletes)] {
        if n > 0 {
            metrics::counter!(names::SYNC_CHANGES, names::LABEL_KIND => kind).increment(n);
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

        /// As `key`: the first 4 bytes of a `keyed` row long enough.
        fn fixed_key_range(&self, table: &str) -> Option<std::ops::Range<usize>> {
            (table == "keyed").then_some(0..4)
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
        RowChange::Insert { table: table.into(), key: TestKeys.key(table, r), row: r.clone().into() }
    }

    fn delete(table: &str, r: &Bytes) -> RowChange {
        RowChange::Delete { table: table.into(), key: TestKeys.key(table, r), row: r.clone().into() }
    }

    fn update(table: &str, old: &Bytes, new: &Bytes) -> RowChange {
        RowChange::Update {
            table: table.into(),
            key: TestKeys.key(table, new),
            old: old.clone().into(),
            new: new.clone().into(),
        }
    }

    #[test]
    fn a_table_entry_is_56_bytes() {
        assert_eq!(std::mem::size_of::<(RowKey, Cached)>(), 56);
    }

    #[test]
    fn a_row_counts_as_touched_only_if_its_slot_names_an_entry_for_its_key() {
        let (k, other) = (key(1), key(2));
        let entry = |key: &RowKey| Touched::first(key.clone(), None, Some(row(b"r").into()), 1);
        let order = vec![entry(&other), entry(&k)];
        let at = |slot| Cached { row: row(b"r").into(), count: 1, slot };
        let none = FxHashMap::default();
        let again = |t: Touch| match t {
            Touch::Again(i) => Some(i),
            Touch::First(..) => None,
        };
        assert_eq!(again(touch(&order, &none, &at(Slot::new(7, 1)), &k, 7)), Some(1));
        assert_eq!(again(touch(&order, &none, &at(Slot::new(7 + 256, 1)), &k, 7)), Some(1), "the tag is 8 bits");
        assert_eq!(again(touch(&order, &none, &at(Slot::new(6, 1)), &k, 7)), None, "another transaction's");
        assert_eq!(again(touch(&order, &none, &at(Slot::new(7, 0)), &k, 7)), None, "a stale slot");
        assert_eq!(again(touch(&order, &none, &at(Slot::new(7, 2)), &k, 7)), None, "past the order");
        // An index too large for the slot is kept aside.
        let far_slot = Slot::new(7, usize::MAX);
        assert_eq!(far_slot.index(), None);
        assert_eq!(again(touch(&order, &none, &at(far_slot), &k, 7)), None);
        let far = FxHashMap::from_iter([(k.clone(), 1)]);
        assert_eq!(again(touch(&order, &far, &at(far_slot), &k, 7)), Some(1));
        let mut order = order;
        let mut far = FxHashMap::default();
        let mut cached = at(Slot::default());
        touched(&mut order, &mut far, &mut cached, Touch::First(row(b"r").into(), 1), &k, 7);
        assert_eq!((cached.slot.index(), cached.slot.of(7)), (Some(2), true));
        assert!(far.is_empty());
    }

    #[test]
    fn a_row_key_is_32_bytes_and_short_keys_are_inline() {
        assert_eq!(std::mem::size_of::<RowKey>(), 32);
        assert!(matches!(RowKey::from(Bytes::from_static(&[7; RowKey::INLINE])).0, Repr::Inline { .. }));
        let long = Bytes::from(vec![7; RowKey::INLINE + 1]);
        let key = RowKey::from(long.clone());
        assert!(matches!(key.0, Repr::Shared(_)));
        assert_eq!(key.to_bytes().as_ptr(), long.as_ptr(), "a long key shares the row's memory");
    }

    #[test]
    fn a_row_shorter_than_its_tables_fixed_key_range_is_keyed_by_row_keys() {
        let cache = ClientCache::new(TestKeys);
        let (short, long) = (row(&[9, 9]), keyed(9, 1));
        let changes = cache.apply(&[TableDelta::new("keyed").insert(short.clone()).insert(long.clone())]);
        assert_eq!(changes, vec![insert("keyed", &short), insert("keyed", &long)]);
        assert_eq!(cache.get("keyed", &RowKey::from(&[9u8, 9][..])), Some(short.into()));
        assert_eq!(cache.get("keyed", &key(9)), Some(long.clone().into()));
        let changes = cache.apply(&[TableDelta::new("keyed").delete(long.clone()).insert(keyed(9, 2))]);
        assert_eq!(changes, vec![update("keyed", &long, &keyed(9, 2))]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn a_key_sliced_from_a_row_is_the_keys_bytes(
            row in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            start in 0usize..64,
            len in 0usize..32,
        ) {
            use crate::table::TableHash;
            let (row, end) = (Bytes::from(row), start + len);
            let key = RowKey::from_slice_of(&row, start..end);
            let want = row.get(start..end).unwrap_or(&row[..]);
            proptest::prop_assert_eq!(key.as_bytes(), want);
            let copied = RowKey::copy_from_slice(want);
            proptest::prop_assert!(key == copied);
            proptest::prop_assert_eq!(key.table_hash(), copied.table_hash());
        }

        #[test]
        fn row_keys_compare_hash_and_order_as_their_bytes(
            a in proptest::collection::vec(0u8..4, 0..40),
            b in proptest::collection::vec(0u8..4, 0..40),
        ) {
            use std::hash::BuildHasher;
            let (ka, kb) = (RowKey::from(a.clone()), RowKey::copy_from_slice(&b));
            proptest::prop_assert_eq!(ka.as_bytes(), &a[..]);
            proptest::prop_assert_eq!(&ka.to_bytes()[..], &a[..]);
            proptest::prop_assert_eq!(ka == kb, a == b);
            proptest::prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            let fx = rustc_hash::FxBuildHasher;
            proptest::prop_assert_eq!(fx.hash_one(&ka), fx.hash_one(&a[..]), "a key hashes as the slice it borrows as");
            use crate::table::TableHash;
            proptest::prop_assert_eq!(ka.table_hash(), a[..].table_hash(), "and so in a table");
        }
    }

    #[test]
    fn insert_update_delete() {
        let cache = ClientCache::new(TestKeys);
        let (v1, v2) = (keyed(1, 10), keyed(1, 20));
        assert_eq!(cache.apply(&[TableDelta::new("keyed").insert(v1.clone())]), vec![insert("keyed", &v1)]);
        assert_eq!(cache.get("keyed", &key(1)), Some(v1.clone().into()));
        assert_eq!(cache.tables(), vec!["keyed".to_string()]);

        let changes = cache.apply(&[TableDelta::new("keyed").delete(v1.clone()).insert(v2.clone())]);
        assert_eq!(changes, vec![update("keyed", &v1, &v2)]);
        assert_eq!(cache.get("keyed", &key(1)), Some(v2.clone().into()));
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
        assert_eq!(cache.refcount("plain", &RowKey::from(p)), 1);
    }

    #[test]
    fn overlapping_queries_share_a_row() {
        let cache = ClientCache::new(TestKeys);
        let p = row(b"shared");
        let k = RowKey::from(p.clone());
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
        assert_eq!(cache.get("plain", &k), Some(p.clone().into()));
        assert_eq!(cache.apply(&[TableDelta::new("plain").delete(p.clone())]), vec![delete("plain", &p)]);
        assert_eq!(cache.refcount("plain", &k), 0);
    }

    #[test]
    fn a_delete_only_transaction_removes_a_row_as_its_last_query_lets_go() {
        let cache = ClientCache::new(TestKeys);
        let (r, other) = (keyed(3, 1), keyed(4, 1));
        cache.apply(&[TableDelta::new("keyed").insert(r.clone()).insert(r.clone()).insert(other.clone())]);
        assert_eq!(cache.refcount("keyed", &key(3)), 2);
        // Both queries let go in one transaction; a third delete finds nothing.
        let changes = cache.apply(&[TableDelta::new("keyed").delete(r.clone()).delete(r.clone()).delete(r.clone())]);
        assert_eq!(changes, vec![delete("keyed", &r)]);
        assert_eq!((cache.count("keyed"), cache.refcount("keyed", &key(3))), (1, 0));
        // The next transactions write the copy that caught up with that one, then the other.
        for value in [2, 3] {
            let v = keyed(3, value);
            assert_eq!(cache.apply(&[TableDelta::new("keyed").insert(v.clone())]), vec![insert("keyed", &v)]);
            assert_eq!(cache.apply(&[TableDelta::new("keyed").delete(v.clone())]), vec![delete("keyed", &v)]);
            assert_eq!((cache.count("keyed"), cache.get("keyed", &key(4))), (1, Some(other.clone().into())));
        }
    }

    #[test]
    fn warmed_rows_come_in_order_across_blocks() {
        let mut rows: Vec<Bytes> = (0..WARM_BLOCK as u32 * 2 + 3).map(|i| row(&i.to_le_bytes())).collect();
        rows.insert(WARM_BLOCK, Bytes::new());
        let warmed: Vec<Bytes> = Warmed::new(Rows::Handles(&rows)).map(RowRef::into_owned).collect();
        assert_eq!(warmed, rows);
        assert_eq!(Warmed::new(Rows::Handles(&rows)).size_hint(), (rows.len(), Some(rows.len())));
        assert!(Warmed::new(Rows::NONE).next().is_none());
        // A row list, sliced a block at a time: the same rows, in order.
        let mut list = ws::BsatnRowListBuilder::row_offsets();
        for row in &rows {
            list.push(row);
        }
        let list = list.finish();
        let mut wire = Warmed::new(Rows::Wire(&list));
        assert_eq!(wire.size_hint(), (rows.len(), Some(rows.len())));
        assert_eq!(
            wire.by_ref().take(WARM_BLOCK + 1).map(RowRef::into_owned).collect::<Vec<_>>(),
            rows[..WARM_BLOCK + 1]
        );
        assert_eq!(wire.size_hint().0, rows.len() - WARM_BLOCK - 1);
        assert_eq!(wire.map(RowRef::into_owned).collect::<Vec<_>>(), rows[WARM_BLOCK + 1..]);
        assert!(Warmed::new(Rows::Wire(&ws::BsatnRowListBuilder::row_offsets().finish())).next().is_none());
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
        assert_eq!(cache.get("keyed", &key(2)), Some(new.into()));
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
        assert_eq!((n1, n2, total), (1, vec![Row::from(b.clone())], 2));
        assert_eq!(reader.get("t1", &reader.key_of("t1", &a)), Some(a.clone().into()));
        assert!(reader.contains("t2", &RowKey::from(b)));
        assert!(format!("{reader:?}").contains("t1"));
    }

    /// A cache whose `keyed` table (rows `[id: u32, value: u8]`) indexes its unique `value`.
    fn indexed() -> ClientCache {
        use spacelink_connection::sats::AlgebraicType;
        let row_type = [("id", AlgebraicType::U32), ("value", AlgebraicType::U8)].into_iter().collect();
        let unique = UniqueColumns::none().with_table("keyed", TableUnique::new(&row_type, &[1]));
        ClientCache::with_indexes(Arc::new(TestKeys), Decoders::none(), None, unique)
    }

    fn found(cache: &ClientCache, value: u8) -> Option<Bytes> {
        cache.find_unique("keyed", 1, &[value]).map(|row| row.bytes().clone())
    }

    #[test]
    fn the_unique_index_follows_loads_updates_swaps_deletes_and_reconciles() {
        let cache = indexed();
        let (a, b) = (keyed(1, 10), keyed(2, 20));
        cache.apply(&[TableDelta::new("keyed").insert(a.clone()).insert(b.clone())]);
        assert_eq!((found(&cache, 10), found(&cache, 20), found(&cache, 30)), (Some(a.clone()), Some(b.clone()), None));
        assert!(cache.with_view(|v| v.is_indexed("keyed", 1) && !v.is_indexed("keyed", 0) && !v.is_indexed("x", 1)));

        // An update moves the row's entry.
        let a30 = keyed(1, 30);
        cache.apply(&[TableDelta::new("keyed").delete(a.clone()).insert(a30.clone())]);
        assert_eq!((found(&cache, 10), found(&cache, 30)), (None, Some(a30.clone())));
        // Two rows trade values in one transaction.
        let (a20, b30) = (keyed(1, 20), keyed(2, 30));
        cache.apply(&[TableDelta::new("keyed")
            .delete(a30.clone())
            .delete(b.clone())
            .insert(a20.clone())
            .insert(b30.clone())]);
        assert_eq!((found(&cache, 20), found(&cache, 30)), (Some(a20.clone()), Some(b30.clone())));
        // A later transaction goes to the spare copy, caught up by replay: the same index.
        cache.apply(&[TableDelta::new("plain").insert(row(b"x"))]);
        assert_eq!((found(&cache, 20), found(&cache, 30)), (Some(a20.clone()), Some(b30.clone())));
        cache.apply(&[TableDelta::new("keyed").delete(b30.clone())]);
        assert_eq!((found(&cache, 20), found(&cache, 30)), (Some(a20.clone()), None));
        assert_eq!(cache.with_view(|v| v.unique_entries("keyed", 1).len()), 1);

        // A reconnect's fresh state: the index is the fresh state's.
        let c = keyed(3, 40);
        cache.reconcile(&[TableDelta::new("keyed").insert(c.clone())]);
        assert_eq!((found(&cache, 20), found(&cache, 40)), (None, Some(c.clone())));
        cache.apply(&[TableDelta::new("keyed").delete(c)]);
        assert!(cache.with_view(|v| v.unique_entries("keyed", 1).is_empty() && v.data.unique.is_empty()));
        // A short row has no value: it is cached, not indexed.
        cache.apply(&[TableDelta::new("keyed").insert(row(&[9, 0, 0, 0]))]);
        assert_eq!(cache.count("keyed"), 1);
        assert!(cache.with_view(|v| v.unique_entries("keyed", 1).is_empty()));
    }

    #[test]
    fn the_first_write_after_a_large_load_copies_one_shard_of_the_index() {
        use spacelink_connection::sats::AlgebraicType;
        let row_type = [("id", AlgebraicType::U32), ("tag", AlgebraicType::U32)].into_iter().collect();
        let unique = UniqueColumns::none().with_table("keyed", TableUnique::new(&row_type, &[1]));
        let cache = ClientCache::with_indexes(Arc::new(TestKeys), Decoders::none(), None, unique);
        let n = crate::table::SPLIT_AT as u32 + 1000;
        let rows = |id: u32, tag: u32| Bytes::from([id.to_le_bytes(), tag.to_le_bytes()].concat());
        let mut load = TableDelta::new("keyed");
        load.inserts = (0..n).map(|i| rows(i, i + 1_000_000)).collect();
        cache.apply(&[load]);
        let loaded = cache.inner.published.load_full();
        cache.apply(&[TableDelta::new("keyed").delete(rows(7, 1_000_007)).insert(rows(7, 7))]);
        let written = cache.inner.published.load_full();
        let (before, after) = (&loaded.unique["keyed"][0], &written.unique["keyed"][0]);
        assert!(after.shared_with(before) >= crate::table::SHARDS - 2, "{}", after.shared_with(before));
        assert_eq!(cache.find_unique("keyed", 1, &7u32.to_le_bytes()).map(|r| r.bytes().clone()), Some(rows(7, 7)));
        assert!(cache.find_unique("keyed", 1, &1_000_007u32.to_le_bytes()).is_none());
        assert_eq!(cache.with_view(|v| v.unique_entries("keyed", 1).len()), n as usize);
    }

    #[test]
    fn table_rows_walk_one_state_without_copying_it() {
        let cache = ClientCache::new(WholeRow);
        cache.apply(&[TableDelta::new("t").insert(row(b"a")).insert(row(b"b"))]);
        let rows = cache.table_rows("t");
        assert_eq!(rows.len(), 2);
        // A transaction after the iterator was made does not change what it walks.
        cache.apply(&[TableDelta::new("t").insert(row(b"c"))]);
        let mut seen: Vec<Bytes> = rows.map(|r| r.bytes().clone()).collect();
        seen.sort();
        assert_eq!(seen, vec![row(b"a"), row(b"b")]);
        assert_eq!(cache.table_rows("t").count(), 3);
        assert_eq!(cache.table_rows("none").next(), None);
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

    /// A cache whose `keyed` and `plain` tables keep no rows.
    fn events_only() -> ClientCache {
        ClientCache::new(TestKeys).with_events_only(["keyed", "plain"])
    }

    /// Asserts that `cache` keeps nothing, by every read.
    fn keeps_nothing(cache: &ClientCache) {
        for table in ["keyed", "plain"] {
            assert_eq!(cache.count(table), 0, "{table}");
            assert!(cache.rows(table).is_empty(), "{table}");
            assert_eq!(cache.table_rows(table).count(), 0, "{table}");
        }
        assert_eq!(cache.get("keyed", &key(1)), None);
        assert!(cache.tables().is_empty(), "{:?}", cache.tables());
        assert_eq!(cache.with_view(|v| v.total_rows()), 0);
    }

    #[test]
    fn an_events_only_table_tells_inserts_and_deletes_and_keeps_nothing() {
        let cache = events_only();
        let (a, b) = (keyed(1, 10), keyed(2, 20));
        let p = row(b"plain row");
        let changes = cache.apply(&[TableDelta::new("keyed").insert(a.clone()).insert(b.clone())]);
        assert_eq!(changes, vec![insert("keyed", &a), insert("keyed", &b)]);
        keeps_nothing(&cache);
        // A delete needs no cached row.
        assert_eq!(cache.apply(&[TableDelta::new("keyed").delete(a.clone())]), vec![delete("keyed", &a)]);
        // Without a key: the whole row, inserted then deleted.
        assert_eq!(cache.apply(&[TableDelta::new("plain").insert(p.clone())]), vec![insert("plain", &p)]);
        assert_eq!(cache.apply(&[TableDelta::new("plain").delete(p.clone())]), vec![delete("plain", &p)]);
        keeps_nothing(&cache);
        assert_eq!(cache.events_only().count(), 2);
    }

    #[test]
    fn an_events_only_delete_and_insert_of_a_key_is_one_update() {
        let cache = events_only();
        let (v1, v2, other) = (keyed(1, 10), keyed(1, 20), keyed(2, 5));
        // Deletes first, then inserts, in first-touch order, whatever the deltas' order.
        let changes = cache.apply(&[
            TableDelta::new("keyed").insert(other.clone()).insert(v2.clone()),
            TableDelta::new("keyed").delete(v1.clone()),
        ]);
        assert_eq!(changes, vec![update("keyed", &v1, &v2), insert("keyed", &other)]);
        // Identical bytes deleted and inserted: nothing, as for a cached table.
        assert!(cache.apply(&[TableDelta::new("keyed").delete(v2.clone()).insert(v2.clone())]).is_empty());
        // Two queries see the same update: still one.
        let v3 = keyed(1, 30);
        let changes = cache.apply(&[
            TableDelta::new("keyed").delete(v2.clone()).insert(v3.clone()),
            TableDelta::new("keyed").delete(v2.clone()).insert(v3.clone()),
        ]);
        assert_eq!(changes, vec![update("keyed", &v2, &v3)]);
        keeps_nothing(&cache);
    }

    #[test]
    fn events_only_tables_stay_empty_over_many_transactions_beside_a_cached_one() {
        let cache = events_only();
        let mut told = 0;
        for i in 0..50u8 {
            let (old, new) = (keyed(i, 0), keyed(i, 1));
            let changes = cache
                .apply(&[TableDelta::new("keyed").insert(old.clone()), TableDelta::new("cached").insert(row(&[i]))]);
            assert_eq!(changes, vec![insert("keyed", &old), insert("cached", &row(&[i]))]);
            let changes = cache.apply(&[TableDelta::new("keyed").delete(old.clone()).insert(new.clone())]);
            assert_eq!(changes, vec![update("keyed", &old, &new)]);
            told += cache.apply(&[TableDelta::new("keyed").delete(new)]).len();
        }
        assert_eq!(told, 50);
        assert_eq!(cache.count("keyed"), 0);
        assert_eq!(cache.count("cached"), 50, "an ordinary table beside them keeps its rows");
        assert_eq!(cache.tables(), vec!["cached".to_string()]);
    }

    #[derive(Debug, PartialEq, spacelink_connection::sats::de::Deserialize)]
    #[sats(crate = spacelink_connection::sats)]
    struct Pair {
        id: u32,
        value: u8,
    }

    #[test]
    fn an_events_only_table_tells_typed_rows() {
        use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
        use spacelink_connection::sats::AlgebraicType;
        let mut module = RawModuleDefV9Builder::new();
        let ty: spacelink_connection::sats::ProductType =
            [("id", AlgebraicType::U32), ("value", AlgebraicType::U8)].into_iter().collect();
        module.build_table_with_new_type("keyed", ty, true).with_primary_key(0u16);
        let schema = spacelink_connection::ModuleSchema::from_raw(module.finish()).unwrap();
        let decoders = crate::RowTypes::new().register::<Pair>("keyed").bind(&schema);
        let cache = ClientCache::with_parts(Arc::new(TestKeys), decoders, None).with_events_only(["keyed"]);
        let (v1, v2) = (keyed(1, 10), keyed(1, 20));
        let changes = cache.apply(&[TableDelta::new("keyed").insert(v1.clone())]);
        let [RowChange::Insert { row, .. }] = &changes[..] else { panic!("{changes:?}") };
        assert_eq!(row.get::<Pair>(), Some(&Pair { id: 1, value: 10 }));
        let changes = cache.apply(&[TableDelta::new("keyed").delete(v1).insert(v2.clone())]);
        let [RowChange::Update { old, new, .. }] = &changes[..] else { panic!("{changes:?}") };
        assert_eq!(
            (old.get::<Pair>(), new.get::<Pair>()),
            (Some(&Pair { id: 1, value: 10 }), Some(&Pair { id: 1, value: 20 }))
        );
        let changes = cache.apply(&[TableDelta::new("keyed").delete(v2)]);
        let [RowChange::Delete { row, .. }] = &changes[..] else { panic!("{changes:?}") };
        assert_eq!(row.get::<Pair>(), Some(&Pair { id: 1, value: 20 }));
        assert_eq!(cache.count("keyed"), 0);
    }

    #[test]
    fn a_row_becomes_its_shared_value_without_a_new_reference() {
        use spacelink_connection::lib::db::raw_def::v9::RawModuleDefV9Builder;
        use spacelink_connection::sats::AlgebraicType;
        let mut module = RawModuleDefV9Builder::new();
        let ty: spacelink_connection::sats::ProductType =
            [("id", AlgebraicType::U32), ("value", AlgebraicType::U8)].into_iter().collect();
        module.build_table_with_new_type("keyed", ty, true).with_primary_key(0u16);
        let schema = spacelink_connection::ModuleSchema::from_raw(module.finish()).unwrap();
        let decoders = crate::RowTypes::new().register::<Pair>("keyed").bind(&schema);
        let cache = ClientCache::with_parts(Arc::new(TestKeys), decoders, None);
        cache.apply(&[TableDelta::new("keyed").insert(keyed(1, 10)), TableDelta::new("plain").insert(row(b"p"))]);
        let typed = cache.get("keyed", &key(1)).unwrap();
        let value: *const Pair = typed.get::<Pair>().unwrap();
        let shared = typed.into_shared::<Pair>().unwrap();
        assert_eq!((&*shared as *const Pair, &*shared), (value, &Pair { id: 1, value: 10 }), "the cached value itself");
        // The cache's reference and this one: the handle became the shared value.
        assert_eq!(shared.handles(), 2);
        // Another type, or a row without one: None.
        assert!(cache.get("keyed", &key(1)).unwrap().into_shared::<u32>().is_none());
        assert!(cache.get("plain", &RowKey::from(&b"p"[..])).unwrap().into_shared::<Pair>().is_none());
    }

    #[test]
    fn a_reconcile_fires_nothing_for_an_events_only_table() {
        let cache = events_only();
        let (a, b) = (keyed(1, 10), keyed(2, 20));
        cache.apply(&[TableDelta::new("keyed").insert(a.clone()), TableDelta::new("cached").insert(row(b"x"))]);
        // The fresh state: the events-only table's rows fire nothing, the cached table's difference does.
        let fresh = cache.empty_like();
        assert_eq!(fresh.events_only().count(), 2, "the staging cache keeps no rows of them either");
        fresh.apply(&[
            TableDelta::new("keyed").insert(a).insert(b.clone()),
            TableDelta::new("cached").insert(row(b"y")),
        ]);
        let changes = cache.reconcile_from(&fresh);
        assert_eq!(changes, vec![delete("cached", &row(b"x")), insert("cached", &row(b"y"))]);
        assert!(cache.reconcile(&[TableDelta::new("keyed").insert(b)]).iter().all(|c| c.table() != "keyed"));
        assert_eq!(cache.count("keyed"), 0);
    }

    #[test]
    fn an_events_only_table_counts_its_applied_rows() {
        let cache = events_only();
        let rows = crate::recorded::Recorded::new(names::SYNC_ROWS_APPLIED, "");
        metrics::with_local_recorder(&rows, || {
            cache.apply(&[TableDelta::new("keyed").insert(keyed(1, 1)).insert(keyed(2, 1))]);
            cache.apply(&[TableDelta::new("keyed").delete(keyed(1, 1)).insert(keyed(1, 2))]);
        });
        assert_eq!(rows.count(), 4, "inserts and deletes applied, though none is kept");
    }

    /// One delta of the wire property: a table, its deleted and inserted rows,
    /// whether all are deletes, and whether a `keyed` list is of fixed-size rows.
    type WireCase = (bool, Vec<Vec<u8>>, Vec<Vec<u8>>, bool, bool);

    fn wire_row(keyed: bool) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        if keyed {
            (0u8..24, 0u8..3).prop_map(|(id, value)| vec![id, 0, 0, 0, value]).boxed()
        } else {
            proptest::collection::vec(0u8..3, 1..4).boxed()
        }
    }

    fn wire_case() -> impl proptest::strategy::Strategy<Value = WireCase> {
        use proptest::prelude::*;
        any::<bool>().prop_flat_map(|keyed| {
            let rows = || proptest::collection::vec(wire_row(keyed), 0..40);
            (Just(keyed), rows(), rows(), proptest::bool::weighted(0.2), any::<bool>())
        })
    }

    fn row_list(rows: &[Vec<u8>], fixed: bool) -> ws::BsatnRowList {
        let mut list = if fixed { ws::BsatnRowListBuilder::fixed(5) } else { ws::BsatnRowListBuilder::row_offsets() };
        for row in rows {
            list.push(row);
        }
        list.finish()
    }

    /// A transaction's row lists, as a message carries them.
    type WireLists = Vec<(Arc<str>, ws::BsatnRowList, ws::BsatnRowList, bool)>;

    fn wire_lists(transaction: &[WireCase]) -> WireLists {
        transaction
            .iter()
            .map(|(keyed, deletes, inserts, deletes_only, fixed)| {
                let table: Arc<str> = if *keyed { "keyed".into() } else { "plain".into() };
                let fixed = *fixed && *keyed;
                (table, row_list(deletes, fixed), row_list(inserts, fixed), *deletes_only)
            })
            .collect()
    }

    fn wire_deltas(lists: &WireLists) -> Vec<WireDelta<'_>> {
        lists
            .iter()
            .map(|(table, deletes, inserts, deletes_only)| WireDelta {
                table: Arc::clone(table),
                deletes,
                inserts,
                deletes_only: *deletes_only,
            })
            .collect()
    }

    /// Each table's rows and counts, sorted, and the unique index's answers.
    type State = (Vec<(Vec<u8>, u32)>, Vec<Option<Bytes>>);

    fn state_of(view: &CacheView<'_>) -> State {
        let mut rows: Vec<(Vec<u8>, u32)> = ["keyed", "plain"]
            .into_iter()
            .flat_map(|table| {
                view.rows(table)
                    .into_iter()
                    .map(move |r| (r.bytes().to_vec(), view.refcount(table, &TestKeys.key(table, r.bytes()))))
            })
            .collect();
        rows.sort();
        let found = (0u8..3).map(|v| view.find_unique("keyed", 1, &[v]).map(|r| r.bytes().clone())).collect();
        (rows, found)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (transactions applied back to back and published once, at any points and with any catch-up, replayed or shared, at once or by the next transaction, make the same changes, rows, counts and unique index as each applied and published in turn; readers see none of them before the publish)
        #[test]
        fn transactions_published_once_make_what_each_published_makes(
            transactions in proptest::collection::vec((proptest::collection::vec(wire_case(), 1..4), 0u8..4), 1..24),
        ) {
            let (each, held) = (indexed(), indexed());
            let reader = held.reader();
            let mut published = each.with_view(state_of);
            for (transaction, how) in &transactions {
                let lists = wire_lists(transaction);
                let deltas = wire_deltas(&lists);
                let expected = each.apply_wire(&deltas);
                match how {
                    // Applied and published at once (continuing what is held).
                    0 => proptest::prop_assert_eq!(held.apply_wire(&deltas), expected),
                    // Held; published at once, or left for a later transaction.
                    _ => {
                        proptest::prop_assert_eq!(held.apply_held(&deltas), expected);
                        proptest::prop_assert_eq!(reader.with_view(state_of), published.clone());
                        if *how >= 2 {
                            proptest::prop_assert!(held.publish());
                        }
                        // The spare copy caught up at once (no reader holds it), not by the next transaction.
                        if *how == 3 {
                            proptest::prop_assert!(held.catch_up());
                        }
                    }
                }
                if *how != 1 {
                    published = each.with_view(state_of);
                    proptest::prop_assert_eq!(reader.with_view(state_of), published.clone());
                }
            }
            held.publish();
            proptest::prop_assert!(!held.publish(), "nothing is left to publish");
            proptest::prop_assert_eq!(held.with_view(state_of), each.with_view(state_of));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (a transaction read from a message's row lists, fixed-size or with offsets, a query set's leaving rows among them, makes the same changes and the same cache as its rows given as handles)
        #[test]
        fn rows_read_from_the_wire_apply_as_handles_do(
            transactions in proptest::collection::vec(proptest::collection::vec(wire_case(), 1..4), 1..16),
        ) {
            let (handles, wire) = (ClientCache::new(TestKeys), ClientCache::new(TestKeys));
            for transaction in &transactions {
                let lists = wire_lists(transaction);
                let wire_deltas = wire_deltas(&lists);
                let table_deltas: Vec<TableDelta> = transaction
                    .iter()
                    .map(|(keyed, deletes, inserts, deletes_only, _)| {
                        let bytes = |rows: &[Vec<u8>]| rows.iter().map(|r| Bytes::copy_from_slice(r)).collect::<Vec<_>>();
                        let (mut deletes, mut inserts) = (bytes(deletes), bytes(inserts));
                        if *deletes_only {
                            deletes.append(&mut inserts);
                        }
                        TableDelta { table: if *keyed { "keyed".into() } else { "plain".into() }, deletes, inserts }
                    })
                    .collect();
                proptest::prop_assert_eq!(wire.apply_wire(&wire_deltas), handles.apply(&table_deltas));
                for table in ["keyed", "plain"] {
                    let state = |cache: &ClientCache| {
                        let mut rows: Vec<(Vec<u8>, u32)> = cache
                            .rows(table)
                            .iter()
                            .map(|r| (r.bytes().to_vec(), cache.refcount(table, &TestKeys.key(table, r.bytes()))))
                            .collect();
                        rows.sort();
                        rows
                    };
                    proptest::prop_assert_eq!(state(&wire), state(&handles));
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (a table's first rows, loaded whole a block at a time, keys coming again across queries and blocks with the same or other bytes, make the same changes and the same cache as the same rows applied to a table that already held a row)
        #[test]
        fn a_table_loaded_whole_makes_the_changes_a_transaction_makes(
            queries in proptest::collection::vec(proptest::collection::vec((0u8..120, 0u8..3), 0..300), 1..4),
        ) {
            let deltas: Vec<TableDelta> = queries
                .iter()
                .map(|rows| rows.iter().fold(TableDelta::new("keyed"), |d, &(id, value)| d.insert(keyed(id, value))))
                .collect();
            let loaded = ClientCache::new(TestKeys);
            let applied = ClientCache::new(TestKeys);
            // A key no query has: the table is not empty, so the rows are applied, not loaded.
            let sentinel = keyed(255, 0);
            applied.apply(&[TableDelta::new("keyed").insert(sentinel.clone())]);
            proptest::prop_assert_eq!(loaded.apply(&deltas), applied.apply(&deltas));
            let state = |cache: &ClientCache| {
                let mut rows: Vec<(Vec<u8>, u32)> = cache
                    .rows("keyed")
                    .iter()
                    .filter(|r| **r.bytes() != *sentinel)
                    .map(|r| (r.bytes().to_vec(), cache.refcount("keyed", &TestKeys.key("keyed", r.bytes()))))
                    .collect();
                rows.sort();
                rows
            };
            proptest::prop_assert_eq!(state(&loaded), state(&applied));
            // And the same once more: a later transaction sees the loaded copy and its spare alike.
            let leave: Vec<TableDelta> = deltas.iter().map(|d| d.inserts.iter().fold(TableDelta::new("keyed"), |t, r| t.delete(r.clone()))).collect();
            proptest::prop_assert_eq!(loaded.apply(&leave[..1]), applied.apply(&leave[..1]));
            proptest::prop_assert_eq!(state(&loaded), state(&applied));
        }
    }
}
