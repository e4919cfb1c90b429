//! One cached table: its rows by key, in shards that two copies of the cache share.
//!
//! The cache keeps two copies of its data (see [`crate::cache`]), so a table
//! that both copies held whole would cost its map twice, and the first write
//! after a load would copy all of it at once (a million entries, on the
//! thread that applies transactions). A [`Table`] is therefore [`SHARDS`]
//! maps, each behind an `Arc`: the copies share every shard neither has
//! written since, and a write copies only the shard it lands in
//! (`Arc::make_mut`). A large table that changes in a few places (a world of
//! static objects, a few moving NPCs) then costs its map about once.
//!
//! A key is hashed once per operation ([`TableHash`]: FxHash's step over its
//! bytes taken as words, a few instructions for a key of a word or two,
//! where hashing a slice through `std::hash::Hasher` took about a hundred,
//! twice per written row): the top bits
//! of that hash, multiplied by an odd constant, choose its shard, and the
//! shard's map (a `hashbrown::HashTable`) probes with the same hash, so the
//! rows of one shard still spread over all of its buckets. A lookup that
//! misses never copies a shared shard. A small table is one shard (copying
//! it whole is cheap); it is split into [`SHARDS`] once it holds
//! [`SPLIT_AT`] rows, or when a load reserves that many.
//!
//! A transaction writes a table through a [`Writing`] ([`Table::writing`]):
//! the shards this copy holds alone are made writable once for the whole
//! transaction, not by an `Arc::make_mut` (a locked instruction) per row.
//! Its writes come a block of [`PROBE_BLOCK`] rows at a time, each block
//! first probed whole and the answers forgotten ([`Writing::warm`]): in a
//! table larger than the core's caches a probe is two misses (a bucket's
//! tags, then its entry), and a write's probe, behind the writes before it,
//! waited for them alone, where the block's probes, depending on nothing,
//! wait for theirs together (a 10k-row delete took a quarter less CPU).
//! A key the block's probe does not find is about to be a new entry: the
//! lines that entry will likely be written to are prefetched then too
//! ([`prefetch_insert`], from an [`Anchor`]), as a store that misses holds
//! up every store behind it (a backlog of inserts drained about 1.3 times
//! as fast). That prefetch is the workspace's one `unsafe`.

use std::borrow::Borrow;
use std::sync::Arc;

use hashbrown::hash_table::{self, HashTable};

/// How many shards a large table has (a power of two).
pub(crate) const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
/// The size at which a one-shard table is split into [`SHARDS`]: below it,
/// copying a table whole is cheap. The split moves every row (in both copies
/// of the cache), so it is done small: at 32k rows, a stream of inserts into
/// a growing table spent a tenth of its time splitting it, and the single
/// map's rehashes before that moved 42k rows more.
pub(crate) const SPLIT_AT: usize = 4 * 1024;

/// How many rows' probes [`Writing::warm`] makes at once, before their
/// writes: enough for their misses to overlap, few enough that what they
/// brought in is still in the core's first caches when the writes come.
pub(crate) const PROBE_BLOCK: usize = 16;

/// One shard: the rows with their keys, probed by the keys' hash.
type Shard<K, V> = HashTable<(K, V)>;

/// How a [`Table`] hashes its keys. A key and what it borrows as (a
/// `RowKey` and its bytes) must hash alike.
pub(crate) trait TableHash {
    fn table_hash(&self) -> u64;
}

/// FxHash's multiplier (rustc-hash 2's).
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// One step of the hash: a word in.
fn mix(hash: u64, word: u64) -> u64 {
    hash.wrapping_add(word).wrapping_mul(K)
}

/// The hash of `len` bytes given as little-endian words (the last one
/// zero-padded): FxHash's steps seeded with the length, then a finish that
/// folds the high bits down and mixes once more. A step's product carries a
/// word's high bits only upwards (keys that differ in their top byte would
/// share their low bits, which choose a bucket); the finish spreads every
/// bit over the low bits and the top 7 (a bucket's tag) alike.
pub(crate) fn hash_words(len: usize, words: impl Iterator<Item = u64>) -> u64 {
    let hash = words.fold(mix(0, len as u64), mix);
    let hash = (hash ^ (hash >> 32)).wrapping_mul(K);
    hash ^ (hash >> 29)
}

impl TableHash for [u8] {
    fn table_hash(&self) -> u64 {
        let chunks = self.chunks_exact(8);
        let rest = chunks.remainder();
        let tail = (!rest.is_empty()).then(|| {
            let mut padded = [0; 8];
            padded[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(padded)
        });
        let words = chunks.map(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()));
        hash_words(self.len(), words.chain(tail))
    }
}

/// How many of `rows` rows each of `shards` shards is sized for: its even
/// share, no more. A shard's capacity is 7/8 of a power of two, so a margin
/// above the share can cross that line and double every shard's buckets (110k
/// rows with a margin of an eighth took 4096 buckets a shard, 17 MB, where
/// 2048 hold the share); the few shards that get more than their share grow
/// alone, as their rows arrive.
fn share_of(rows: usize, shards: usize) -> usize {
    rows.div_ceil(shards.max(1))
}

/// The hash of a key (or of what it borrows as: equal values hash alike).
fn hash_of<Q: TableHash + ?Sized>(key: &Q) -> u64 {
    key.table_hash()
}

/// The rows of one table by key, in one shard or [`SHARDS`] shared shards.
/// Empty, it holds no shard at all (a table with no rows costs nothing).
#[derive(Debug, Clone)]
pub(crate) struct Table<K, V> {
    shards: Vec<Arc<Shard<K, V>>>,
    split_at: usize,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self { shards: Vec::new(), split_at: SPLIT_AT }
    }
}

/// A key's place in a [`Table`], as `HashMap::entry` gives it.
pub(crate) enum Entry<'a, K, V> {
    Occupied(OccupiedEntry<'a, K, V>),
    Vacant(VacantEntry<'a, K, V>),
}

/// A key's row, present.
pub(crate) struct OccupiedEntry<'a, K, V>(hash_table::OccupiedEntry<'a, (K, V)>);

impl<K, V> OccupiedEntry<'_, K, V> {
    pub(crate) fn get(&self) -> &V {
        &self.0.get().1
    }

    /// The key, and the row writable.
    pub(crate) fn key_value_mut(&mut self) -> (&K, &mut V) {
        let (key, value) = self.0.get_mut();
        (key, value)
    }

    pub(crate) fn get_mut(&mut self) -> &mut V {
        &mut self.0.get_mut().1
    }

    /// Takes the row out of the table.
    pub(crate) fn remove(self) -> V {
        self.0.remove().0 .1
    }
}

/// A key without a row, ready to take one.
pub(crate) struct VacantEntry<'a, K, V> {
    key: K,
    hash: u64,
    shard: &'a mut Shard<K, V>,
}

impl<'a, K: TableHash, V> VacantEntry<'a, K, V> {
    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    pub(crate) fn insert(self, value: V) -> &'a mut V {
        let entry = self.shard.insert_unique(self.hash, (self.key, value), |(k, _)| hash_of(k));
        &mut entry.into_mut().1
    }
}

impl<K: TableHash + Eq + Clone, V: Clone> Table<K, V> {
    /// The shard of a key of hash `hash` (see [`shard_index`]).
    fn shard_of(&self, hash: u64) -> usize {
        shard_index(self.shards.len(), hash)
    }

    /// The shards, made to take one more row: one for a new table, and a
    /// single full shard split into [`SHARDS`].
    fn shards_for_insert(&mut self) {
        match self.shards.len() {
            0 => self.shards.push(Arc::default()),
            1 if self.shards[0].len() >= self.split_at => self.split(),
            _ => {}
        }
    }

    /// From one shard to [`SHARDS`] (each row moved, or copied if the shard is shared).
    fn split(&mut self) {
        let Some(single) = self.shards.pop() else { return };
        let each = share_of(single.len(), SHARDS);
        let mut shards: Vec<Shard<K, V>> = (0..SHARDS).map(|_| HashTable::with_capacity(each)).collect();
        self.shards = vec![Arc::default(), Arc::default()]; // any length above 1: `shard_of` uses the hash
        let rows: Vec<(K, V)> = match Arc::try_unwrap(single) {
            Ok(shard) => shard.into_iter().collect(),
            Err(shared) => shared.iter().cloned().collect(),
        };
        for (key, value) in rows {
            let hash = hash_of(&key);
            shards[self.shard_of(hash)].insert_unique(hash, (key, value), |(k, _)| hash_of(k));
        }
        self.shards = shards.into_iter().map(Arc::new).collect();
    }

    /// Room for `additional` more rows: split at once if they would pass [`SPLIT_AT`].
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.shards.len() <= 1 && self.len() + additional >= self.split_at {
            if self.shards.is_empty() {
                self.shards.push(Arc::default());
            }
            self.split();
        }
        self.shards_for_insert();
        let each = share_of(additional, self.shards.len());
        for shard in &mut self.shards {
            Arc::make_mut(shard).reserve(each, |(k, _)| hash_of(k));
        }
    }

    /// The row of `key` (or of anything `K` borrows as, hashing alike: a
    /// key's bytes).
    pub(crate) fn get<Q: TableHash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let hash = hash_of(key);
        let shard = self.shards.get(self.shard_of(hash))?;
        shard.find(hash, |(k, _)| k.borrow() == key).map(|(_, v)| v)
    }

    pub(crate) fn contains_key<Q: TableHash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// The entry of `key` if it has a row, writable: its shard is copied
    /// first if shared (not for a miss). One probe for a row read, changed
    /// and perhaps removed.
    #[cfg(test)]
    pub(crate) fn occupied(&mut self, key: &K) -> Option<OccupiedEntry<'_, K, V>> {
        self.occupied_hashed(key, hash_of(key))
    }

    /// [`occupied`](Self::occupied) of a key whose hash is known (see [`entry_hashed`](Self::entry_hashed)).
    #[cfg(test)]
    pub(crate) fn occupied_hashed(&mut self, key: &K, hash: u64) -> Option<OccupiedEntry<'_, K, V>> {
        debug_assert_eq!(hash, hash_of(key));
        let index = self.shard_of(hash);
        let shard = self.shards.get_mut(index)?;
        if Arc::strong_count(shard) != 1 && shard.find(hash, |(k, _)| k == key).is_none() {
            return None;
        }
        Arc::make_mut(shard).find_entry(hash, |(k, _)| k == key).ok().map(OccupiedEntry)
    }

    /// The entry of `key`, in its shard (copied first if shared).
    pub(crate) fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let hash = hash_of(&key);
        self.entry_hashed(key, hash)
    }

    /// [`entry`](Self::entry) of a key whose hash is known (`hash` must be
    /// its [`TableHash`]): the apply path hashes a key from the row's bytes,
    /// not from the key it has just written (a load that spans stores of
    /// another width cannot take their data, and waits for every older store
    /// to reach the cache, cache misses included).
    pub(crate) fn entry_hashed(&mut self, key: K, hash: u64) -> Entry<'_, K, V> {
        debug_assert_eq!(hash, hash_of(&key));
        self.shards_for_insert();
        let index = self.shard_of(hash);
        let shard = Arc::make_mut(&mut self.shards[index]);
        match shard.find_entry(hash, |(k, _)| *k == key) {
            Ok(entry) => Entry::Occupied(OccupiedEntry(entry)),
            Err(absent) => Entry::Vacant(VacantEntry { key, hash, shard: absent.into_table() }),
        }
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entry(key) {
            Entry::Occupied(mut entry) => Some(std::mem::replace(entry.get_mut(), value)),
            Entry::Vacant(entry) => {
                entry.insert(value);
                None
            }
        }
    }

    /// Removes `key`'s row (its shard is copied first if shared, not for a miss).
    pub(crate) fn remove<Q: TableHash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let hash = hash_of(key);
        let index = self.shard_of(hash);
        let shard = self.shards.get_mut(index)?;
        if Arc::strong_count(shard) != 1 && shard.find(hash, |(k, _)| k.borrow() == key).is_none() {
            return None;
        }
        let entry = Arc::make_mut(shard).find_entry(hash, |(k, _)| k.borrow() == key).ok()?;
        Some(entry.remove().0 .1)
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }

    pub(crate) fn values(&self) -> Values<'_, K, V> {
        Values { shards: self.shards.iter(), current: None }
    }

    /// The table made ready for one transaction's writes: split now if
    /// `inserts` more rows would pass [`SPLIT_AT`] (a table with no shard
    /// gets one), its shards then fixed until the [`Writing`] is dropped.
    /// `inserts` is an upper bound: rows that replace others only split it
    /// early.
    pub(crate) fn writing(&mut self, inserts: usize) -> Writing<'_, K, V> {
        if self.shards.len() <= 1 && self.len() + inserts >= self.split_at {
            if self.shards.is_empty() {
                self.shards.push(Arc::default());
            }
            self.split();
        }
        if self.shards.is_empty() {
            self.shards.push(Arc::default());
        }
        let slots: Vec<_> = self
            .shards
            .iter_mut()
            .map(|shard| {
                // Held by this copy alone (a count of one cannot rise: only
                // this `&mut` could clone it), it is made writable once, not
                // per row.
                if Arc::strong_count(shard) == 1 {
                    WriteSlot::Own(Arc::make_mut(shard))
                } else {
                    WriteSlot::Shared(shard)
                }
            })
            .collect();
        let anchors = vec![None; slots.len()];
        Writing { slots, anchors }
    }

    /// How many shards this table and `other` share (the same allocation).
    #[cfg(test)]
    pub(crate) fn shared_with(&self, other: &Self) -> usize {
        self.shards.iter().zip(&other.shards).filter(|(a, b)| Arc::ptr_eq(a, b)).count()
    }
}

/// A [`Table`] during one transaction's writes (see [`Table::writing`]).
///
/// `Arc::make_mut` is a locked compare-and-swap, which waits for every
/// store before it to reach the cache: called per row, it kept a row's
/// writes (misses, in a table larger than the caches) from overlapping the
/// next row's. Here a shard this copy holds alone is made writable once;
/// only one still shared with the other copy (the first write to it since
/// they parted) goes through `Arc::make_mut` per write, and a miss never
/// copies it.
pub(crate) struct Writing<'a, K, V> {
    slots: Vec<WriteSlot<'a, K, V>>,
    /// Per shard, where one of its entries lies (see [`Anchor`]).
    anchors: Vec<Option<Anchor>>,
}

/// A full bucket of a shard and the address of its entry, from which the
/// address of any bucket's entry follows: hashbrown lays a table's entries
/// out side by side, bucket `i + 1`'s just below bucket `i`'s (a test,
/// `entries_lie_side_by_side`, holds it to that). Only a prefetch hint is
/// ever given such an address: it reads nothing, and a wrong address costs
/// a wasted fetch, nothing else. Valid while the shard keeps its
/// allocation and that bucket: checked against the shard at each use.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    bucket: usize,
    at: usize,
    buckets: usize,
}

enum WriteSlot<'a, K, V> {
    Own(&'a mut Shard<K, V>),
    Shared(&'a mut Arc<Shard<K, V>>),
}

impl<K: TableHash + Eq + Clone, V: Clone> Writing<'_, K, V> {
    fn shard_of(&self, hash: u64) -> usize {
        shard_index(self.slots.len(), hash)
    }

    /// The shard at `index` (from `shard_of`: there is always one, as
    /// [`Table::writing`] keeps a shard), writable (copied first if still shared).
    fn shard(&mut self, index: usize) -> &mut Shard<K, V> {
        match &mut self.slots[index] {
            WriteSlot::Own(shard) => shard,
            WriteSlot::Shared(shard) => Arc::make_mut(shard),
        }
    }

    /// The shard at `index` if `key` is in it, writable: a miss copies nothing.
    fn shard_holding<Q: Eq + ?Sized>(&mut self, index: usize, hash: u64, key: &Q) -> Option<&mut Shard<K, V>>
    where
        K: Borrow<Q>,
    {
        match self.slots.get_mut(index)? {
            WriteSlot::Own(shard) => Some(shard),
            WriteSlot::Shared(shard) => {
                if Arc::strong_count(shard) != 1 && shard.find(hash, |(k, _)| k.borrow() == key).is_none() {
                    return None;
                }
                Some(Arc::make_mut(shard))
            }
        }
    }

    /// Looks up `keys` (each with its hash) and forgets what it found: a
    /// block of rows' probes, none waiting for another, so that their
    /// misses (a bucket's tags, then its entry, in a table larger than the
    /// core's caches) overlap, where the writes' own probes, each behind the
    /// writes before it, wait for them one by one. See [`PROBE_BLOCK`].
    ///
    /// A key not found will be a new entry: the lines it will likely be
    /// written to are asked for too ([`prefetch_insert`]), else each new
    /// entry's write missed in turn, the next store waiting behind it (a
    /// third of the spare copy's catch-up of 10k inserts). Not in a shard
    /// still shared with the other copy: its first write copies it elsewhere.
    pub(crate) fn warm<'k>(&mut self, keys: impl Iterator<Item = (&'k K, u64)>)
    where
        K: 'k,
    {
        let mut found = 0usize;
        for (key, hash) in keys {
            let index = self.shard_of(hash);
            match &self.slots[index] {
                WriteSlot::Own(shard) => {
                    if shard.find(hash, |(k, _)| k == key).is_some() {
                        found += 1;
                    } else if let Some(anchor) = anchor_of(shard, &mut self.anchors[index]) {
                        prefetch_insert::<(K, V)>(anchor, hash);
                    }
                }
                WriteSlot::Shared(shard) => found += usize::from(shard.find(hash, |(k, _)| k == key).is_some()),
            }
        }
        std::hint::black_box(found);
    }

    /// As [`Table::get`].
    pub(crate) fn get<Q: TableHash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let hash = hash_of(key);
        let shard: &Shard<K, V> = match self.slots.get(self.shard_of(hash))? {
            WriteSlot::Own(shard) => shard,
            WriteSlot::Shared(shard) => shard,
        };
        shard.find(hash, |(k, _)| k.borrow() == key).map(|(_, v)| v)
    }

    /// As [`Table::occupied_hashed`].
    pub(crate) fn occupied_hashed(&mut self, key: &K, hash: u64) -> Option<OccupiedEntry<'_, K, V>> {
        debug_assert_eq!(hash, hash_of(key));
        let index = self.shard_of(hash);
        let shard = self.shard_holding(index, hash, key)?;
        shard.find_entry(hash, |(k, _)| k == key).ok().map(OccupiedEntry)
    }

    /// As [`Table::entry_hashed`].
    pub(crate) fn entry_hashed(&mut self, key: K, hash: u64) -> Entry<'_, K, V> {
        debug_assert_eq!(hash, hash_of(&key));
        let index = self.shard_of(hash);
        match self.shard(index).find_entry(hash, |(k, _)| *k == key) {
            Ok(entry) => Entry::Occupied(OccupiedEntry(entry)),
            Err(absent) => Entry::Vacant(VacantEntry { key, hash, shard: absent.into_table() }),
        }
    }

    /// As [`Table::entry`].
    #[cfg(test)]
    pub(crate) fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let hash = hash_of(&key);
        self.entry_hashed(key, hash)
    }

    /// As [`Table::remove`].
    pub(crate) fn remove<Q: TableHash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let hash = hash_of(key);
        let index = self.shard_of(hash);
        let entry = self.shard_holding(index, hash, key)?.find_entry(hash, |(k, _)| k.borrow() == key).ok()?;
        Some(entry.remove().0 .1)
    }
}

/// `shard`'s anchor: `cached` if it still holds, else its first full
/// bucket's (`None` for an empty shard).
fn anchor_of<T>(shard: &HashTable<T>, cached: &mut Option<Anchor>) -> Option<Anchor> {
    let buckets = shard.num_buckets();
    if let Some(anchor) = *cached {
        if anchor.buckets == buckets && shard.get_bucket(anchor.bucket).map(address) == Some(anchor.at) {
            return Some(anchor);
        }
    }
    let anchor = shard.iter_buckets().next().and_then(|bucket| {
        let at = address(shard.get_bucket(bucket)?);
        Some(Anchor { bucket, at, buckets })
    });
    *cached = anchor;
    anchor
}

fn address<T>(entry: &T) -> usize {
    entry as *const T as usize
}

/// The address where `bucket`'s entry (of type `T`) lies, from `anchor`.
fn entry_address<T>(anchor: Anchor, bucket: usize) -> usize {
    let size = std::mem::size_of::<T>();
    anchor.at.wrapping_add(anchor.bucket.wrapping_sub(bucket).wrapping_mul(size))
}

/// Asks the core for the lines a new entry (of type `T`) of `hash` is
/// likely written to. hashbrown puts it in the first free bucket from the
/// hash's own (its low bits): in a table at most 7/8 full, that bucket or
/// the next more often than not, so both are fetched, for writing.
fn prefetch_insert<T>(anchor: Anchor, hash: u64) {
    let bucket = hash as usize & (anchor.buckets - 1);
    let at = entry_address::<T>(anchor, bucket);
    let size = std::mem::size_of::<T>();
    let mut line = at.wrapping_sub(size) & !(CACHE_LINE - 1);
    while line < at.wrapping_add(size) {
        prefetch_for_write(line);
        line = line.wrapping_add(CACHE_LINE);
    }
}

/// The size of a cache line on the machines we run on.
const CACHE_LINE: usize = 64;

/// The one `unsafe` of the workspace (`xtask/tests/tidy.rs` keeps it so):
/// Rust's safe prefetch (`std::hint::prefetch_write`) is not stable yet.
#[allow(unsafe_code)]
fn prefetch_for_write(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads and writes nothing and cannot
    // fault, whatever the address (Intel's and AMD's manuals).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(address as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// The shard of a key of hash `hash` among `shards`: the top bits of the
/// hash, multiplied by an odd constant so they owe nothing to the bits the
/// shard's map uses.
fn shard_index(shards: usize, hash: u64) -> usize {
    if shards <= 1 {
        return 0;
    }
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
}

/// The values of a [`Table`], shard after shard: a plain struct of borrows
/// (covariant in `'a`), so that an iterator over a shared table can keep the
/// table's `Arc` with it (see `cache::TableRows`).
#[derive(Debug)]
pub(crate) struct Values<'a, K, V> {
    shards: std::slice::Iter<'a, Arc<Shard<K, V>>>,
    current: Option<hash_table::Iter<'a, (K, V)>>,
}

impl<'a, K, V> Iterator for Values<'a, K, V> {
    type Item = &'a V;

    fn next(&mut self) -> Option<&'a V> {
        loop {
            if let Some((_, value)) = self.current.as_mut().and_then(Iterator::next) {
                return Some(value);
            }
            self.current = Some(self.shards.next()?.iter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests split small tables, to go through splits quickly.
    const SPLIT_AT: usize = 512;

    impl TableHash for u64 {
        fn table_hash(&self) -> u64 {
            self.to_le_bytes().table_hash()
        }
    }

    impl<K, V> Table<K, V> {
        fn small() -> Self {
            Self { shards: Vec::new(), split_at: SPLIT_AT }
        }
    }

    #[test]
    fn keys_that_differ_in_few_bits_spread_over_buckets_and_tags() {
        // Ids with a stride (every 1024th), and ids that differ only in their
        // top byte: a map picks a bucket by the hash's low bits and tags it
        // with its top 7, both must vary.
        for keys in [(0..4096u64).map(|i| i * 1024).collect::<Vec<_>>(), (0..256u64).map(|i| i << 56).collect()] {
            let hashes: Vec<u64> = keys.iter().map(|k| k.table_hash()).collect();
            let buckets: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 2047).collect();
            let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            assert!(buckets.len() * 2 >= keys.len().min(2048), "{} buckets for {} keys", buckets.len(), keys.len());
            assert!(tags.len() >= 64, "{} tags", tags.len());
        }
    }

    #[test]
    fn a_reserved_table_holds_its_rows_in_the_smallest_buckets_that_fit() {
        // 110k rows: an even share of 1719 a shard fits 2048 buckets (1792
        // rows); any margin above it took 4096, twice the memory.
        let rows = 110_000u64;
        let mut table: Table<u64, u64> = Table::default();
        table.reserve(rows as usize);
        for k in 0..rows {
            table.insert(k, k);
        }
        let capacity: usize = table.shards.iter().map(|s| s.capacity()).sum();
        assert!(capacity < rows as usize * 3 / 2, "room for {capacity} rows, holding {rows}");
        assert_eq!(table.len(), rows as usize);
    }

    #[test]
    fn a_write_copies_only_its_shard() {
        let mut table: Table<u64, u64> = Table::small();
        assert!(table.is_empty() && table.shards.is_empty(), "an empty table holds no shard");
        let n = 2 * SPLIT_AT as u64;
        table.reserve(n as usize);
        for k in 0..n {
            table.insert(k, k);
        }
        let copy = table.clone();
        assert_eq!(table.shared_with(&copy), SHARDS);
        *table.occupied(&7).unwrap().get_mut() = 70;
        assert_eq!(table.shared_with(&copy), SHARDS - 1);
        // A miss copies nothing.
        assert!(table.occupied(&(n + 1)).is_none() && table.remove(&(n + 1)).is_none());
        assert_eq!(table.shared_with(&copy), SHARDS - 1);
        assert_eq!((copy.get(&7), table.get(&7)), (Some(&7), Some(&70)));
        assert_eq!((table.len(), copy.len()), (n as usize, n as usize));
    }

    #[test]
    fn a_small_table_is_one_shard_until_it_grows() {
        let mut table: Table<u64, u64> = Table::small();
        for k in 0..SPLIT_AT as u64 {
            table.insert(k, k);
        }
        assert_eq!(table.shards.len(), 1);
        let copy = table.clone();
        table.insert(u64::MAX, 0);
        assert_eq!(table.shards.len(), SHARDS, "split on the row past SPLIT_AT");
        assert_eq!((table.len(), copy.len()), (SPLIT_AT + 1, SPLIT_AT));
        assert!((0..SPLIT_AT as u64).all(|k| table.get(&k) == Some(&k) && copy.get(&k) == Some(&k)));
        let mut loaded: Table<u64, u64> = Table::small();
        loaded.reserve(10 * SPLIT_AT);
        assert_eq!(loaded.shards.len(), SHARDS, "a large load is split from the start");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
        Modify(u64, u64),
        /// Through `occupied`: decrement the value, and remove the row at 0.
        Take(u64),
        /// A copy kept to the end (as a snapshot a reader holds): it must not change.
        Copy,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = 0..(3 * SPLIT_AT as u64);
        prop_oneof![
            4 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => key.clone().prop_map(Op::Remove),
            2 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Modify(k, v)),
            2 => key.prop_map(Op::Take),
            1 => Just(Op::Copy),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(100))]

        // Feature: spacetimedb-integration, Property 4: State Synchronization Lifecycle (a sharded table equals a plain map after random inserts, removes and updates across its split, and every copy taken along the way keeps its rows)
        #[test]
        fn a_sharded_table_is_a_map_and_its_copies_never_change(
            bulk in 0..(2 * SPLIT_AT as u64),
            reserve in proptest::prelude::any::<bool>(),
            batched in proptest::prelude::any::<bool>(),
            ops in proptest::collection::vec(op(), 0..3000),
        ) {
            if batched {
                return batched_ops_are_a_map(bulk, &ops);
            }
            let mut table: Table<u64, u64> = Table::small();
            let mut model = std::collections::BTreeMap::new();
            if reserve {
                table.reserve(bulk as usize);
            }
            for k in 0..bulk {
                table.insert(k, k);
                model.insert(k, k);
            }
            let mut copies = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        proptest::prop_assert_eq!(table.insert(k, v), model.insert(k, v));
                    }
                    Op::Remove(k) => {
                        proptest::prop_assert_eq!(table.remove(&k), model.remove(&k));
                    }
                    Op::Modify(k, v) => match (table.occupied(&k), model.get_mut(&k)) {
                        (Some(mut a), Some(b)) => {
                            *a.get_mut() = v;
                            *b = v;
                        }
                        (None, None) => {}
                        (a, b) => proptest::prop_assert!(false, "occupied: {:?} vs {:?}", a.map(|e| *e.get()), b),
                    },
                    Op::Take(k) => match (table.occupied(&k), model.get_mut(&k)) {
                        (Some(mut entry), Some(v)) => {
                            proptest::prop_assert_eq!(*entry.key_value_mut().0, k);
                            *v /= 2;
                            *entry.get_mut() /= 2;
                            if *v == 0 {
                                proptest::prop_assert_eq!(entry.remove(), 0);
                                model.remove(&k);
                            }
                        }
                        (None, None) => {}
                        (a, b) => proptest::prop_assert!(false, "occupied: {:?} vs {:?}", a.map(|e| *e.get()), b),
                    },
                    // A few copies are enough to hold shards from every stage.
                    Op::Copy if copies.len() < 6 => copies.push((table.clone(), model.clone())),
                    Op::Copy => {}
                }
            }
            let contents = |t: &Table<u64, u64>| t.iter().map(|(k, v)| (*k, *v)).collect::<std::collections::BTreeMap<_, _>>();
            proptest::prop_assert_eq!(&contents(&table), &model);
            proptest::prop_assert_eq!(table.len(), model.len());
            proptest::prop_assert_eq!(table.is_empty(), model.is_empty());
            for (copy, then) in &copies {
                proptest::prop_assert_eq!(&contents(copy), then, "a copy changed");
                for (k, v) in then {
                    proptest::prop_assert_eq!(copy.get(k), Some(v));
                }
            }
        }
    }

    /// The property's other half: the ops between two copies applied
    /// through one [`Writing`], as a transaction applies its rows.
    fn batched_ops_are_a_map(bulk: u64, ops: &[Op]) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut table: Table<u64, u64> = Table::small();
        let mut model = std::collections::BTreeMap::new();
        {
            let mut writing = table.writing(bulk as usize);
            for k in 0..bulk {
                if let Entry::Vacant(entry) = writing.entry(k) {
                    entry.insert(k);
                }
                model.insert(k, k);
            }
        }
        let mut copies = Vec::new();
        for batch in ops.split(|op| matches!(op, Op::Copy)) {
            let inserts = batch.iter().filter(|op| matches!(op, Op::Insert(..))).count();
            let mut writing = table.writing(inserts);
            for op in batch {
                match *op {
                    Op::Insert(k, v) => {
                        let old = match writing.entry(k) {
                            Entry::Occupied(mut entry) => Some(std::mem::replace(entry.get_mut(), v)),
                            Entry::Vacant(entry) => {
                                entry.insert(v);
                                None
                            }
                        };
                        proptest::prop_assert_eq!(old, model.insert(k, v));
                    }
                    Op::Remove(k) => proptest::prop_assert_eq!(writing.remove(&k), model.remove(&k)),
                    Op::Modify(k, _) | Op::Take(k) => {
                        match (writing.occupied_hashed(&k, hash_of(&k)), model.get_mut(&k)) {
                            (Some(mut entry), Some(m)) => {
                                let new = match *op {
                                    Op::Modify(_, v) => v,
                                    _ => *m / 2,
                                };
                                *entry.get_mut() = new;
                                *m = new;
                                if new == 0 && matches!(op, Op::Take(_)) {
                                    proptest::prop_assert_eq!(entry.remove(), 0);
                                    model.remove(&k);
                                }
                            }
                            (None, None) => {}
                            (a, b) => proptest::prop_assert!(false, "occupied: {:?} vs {:?}", a.map(|e| *e.get()), b),
                        }
                    }
                    Op::Copy => {}
                }
                proptest::prop_assert_eq!(writing.get(&op_key(op)), model.get(&op_key(op)));
            }
            drop(writing);
            if copies.len() < 6 {
                copies.push((table.clone(), model.clone()));
            }
        }
        let contents =
            |t: &Table<u64, u64>| t.iter().map(|(k, v)| (*k, *v)).collect::<std::collections::BTreeMap<_, _>>();
        proptest::prop_assert_eq!(&contents(&table), &model);
        for (copy, then) in &copies {
            proptest::prop_assert_eq!(&contents(copy), then, "a copy changed");
        }
        Ok(())
    }

    fn op_key(op: &Op) -> u64 {
        match *op {
            Op::Insert(k, _) | Op::Remove(k) | Op::Modify(k, _) | Op::Take(k) => k,
            Op::Copy => 0,
        }
    }

    #[test]
    fn a_writing_copies_only_the_shared_shards_it_writes() {
        let mut table: Table<u64, u64> = Table::small();
        let n = 2 * SPLIT_AT as u64;
        {
            let mut writing = table.writing(n as usize);
            for k in 0..n {
                // Misses (and their prefetches) in shards this copy holds alone, then the write.
                writing.warm([(&k, hash_of(&k)), (&(k + n), hash_of(&(k + n)))].into_iter());
                if let Entry::Vacant(entry) = writing.entry(k) {
                    entry.insert(k);
                }
            }
        }
        assert_eq!(table.shards.len(), SHARDS, "split up front: {n} rows were to come");
        assert!((0..n).all(|k| table.get(&k) == Some(&k)) && (n..2 * n).all(|k| table.get(&k).is_none()));
        let copy = table.clone();
        {
            let mut writing = table.writing(0);
            // A block's probes, hits and misses, copy and change nothing.
            let keys: Vec<u64> = (0..n + 8).collect();
            writing.warm(keys.iter().map(|k| (k, hash_of(k))));
            assert_eq!(writing.get(&7), Some(&7));
            // Misses copy nothing.
            assert!(writing.remove(&(n + 1)).is_none());
            assert!(writing.occupied_hashed(&(n + 2), hash_of(&(n + 2))).is_none());
            *writing.occupied_hashed(&7, hash_of(&7)).unwrap().get_mut() = 70;
            assert_eq!(writing.remove(&8), Some(8));
            assert_eq!(writing.get(&7), Some(&70));
        }
        let written = [7u64, 8].map(|k| table.shard_of(hash_of(&k)));
        let copied = if written[0] == written[1] { 1 } else { 2 };
        assert_eq!(table.shared_with(&copy), SHARDS - copied);
        assert_eq!((copy.get(&7), copy.get(&8), table.get(&8)), (Some(&7), Some(&8), None));
        assert_eq!((table.len(), copy.len()), (n as usize - 1, n as usize));
    }

    /// Every full bucket's entry where [`entry_address`] puts it, from
    /// whatever anchor: the layout the insert prefetch assumes.
    fn assert_entries_where_anchored<T>(shard: &HashTable<T>, anchor: Anchor) {
        for bucket in shard.iter_buckets() {
            let entry = shard.get_bucket(bucket).map(address);
            assert_eq!(entry, Some(entry_address::<T>(anchor, bucket)), "bucket {bucket} of {}", shard.num_buckets());
        }
    }

    #[test]
    fn entries_lie_side_by_side() {
        let mut shard: HashTable<(u64, [u8; 40])> = HashTable::new();
        let mut cached = None;
        assert!(anchor_of(&shard, &mut cached).is_none(), "an empty shard has no anchor");
        for k in 0..5_000u64 {
            shard.insert_unique(k.table_hash(), (k, [0; 40]), |(k, _)| k.table_hash());
            if k % 499 == 0 {
                // Through every growth, and from the anchor kept since.
                let anchor = anchor_of(&shard, &mut cached).expect("a full shard has an anchor");
                assert_eq!(anchor.buckets, shard.num_buckets());
                assert_entries_where_anchored(&shard, anchor);
            }
        }
        // Its bucket emptied, an anchor is found anew.
        let anchor = anchor_of(&shard, &mut cached).expect("an anchor");
        let key = shard.get_bucket(anchor.bucket).expect("the anchor's entry").0;
        shard.find_entry(key.table_hash(), |(k, _)| *k == key).expect("the anchor's key").remove();
        let again = anchor_of(&shard, &mut cached).expect("an anchor");
        assert_ne!(again.bucket, anchor.bucket);
        assert_entries_where_anchored(&shard, again);
    }

    #[test]
    fn an_empty_table_is_given_a_shard_to_write_to() {
        let mut table: Table<u64, u64> = Table::small();
        assert!(table.writing(0).remove(&1).is_none());
        if let Entry::Vacant(entry) = table.writing(0).entry(1) {
            entry.insert(1);
        }
        assert_eq!((table.shards.len(), table.get(&1)), (1, Some(&1)));
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut table: Table<u64, ()> = Table::small();
        for k in 0..64_000u64 {
            table.insert(k, ());
        }
        let sizes: Vec<usize> = table.shards.iter().map(|s| s.len()).collect();
        assert!(sizes.iter().all(|&n| n > 700 && n < 1300), "{sizes:?}");
        assert_eq!(table.iter().count(), 64_000);
        assert_eq!(table.values().count(), 64_000);
    }
}
