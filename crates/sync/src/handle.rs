//! The sync actor's front door, and typed reads of the cache.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use actix::Addr;
use rustc_hash::FxHashMap;
use spacelink_connection::layout::RowLayout;
use spacelink_connection::metric_names as names;
use spacelink_connection::sats::{bsatn, de::Deserialize, ser::Serialize};
use spacelink_connection::{ModuleSchema, TableSchema};

use crate::actor::SyncActor;
use crate::cache::{CacheReader, RowKey};
use crate::error::SyncError;
use crate::messages::*;
use crate::row::{Row, Shared};

/// A cheap, cloneable handle to state synchronisation.
#[derive(Debug, Clone)]
pub struct SyncHandle {
    addr: Addr<SyncActor>,
    cache: CacheReader,
    schema: Arc<ModuleSchema>,
    /// What [`TableView`]s need of each table, derived once.
    tables: Arc<FxHashMap<Arc<str>, Arc<TableInfo>>>,
}

impl SyncHandle {
    /// Wraps the actor's address and a reader of its cache.
    pub fn new(addr: Addr<SyncActor>, cache: CacheReader, schema: Arc<ModuleSchema>) -> Self {
        Self { addr, cache, tables: table_infos(&schema), schema }
    }

    /// The sync actor's address, for actors that speak its messages (a game
    /// built of actors, a tool that hands it messages of its own).
    pub fn address(&self) -> &Addr<SyncActor> {
        &self.addr
    }

    /// Reads of the cache (no round trip to the actor).
    pub fn cache(&self) -> &CacheReader {
        &self.cache
    }

    /// Subscribes to `queries`; returns once their rows are in the cache. The
    /// set lives across reconnects until unsubscribed.
    pub async fn subscribe(&self, queries: &[&str]) -> Result<SubscriptionId, SyncError> {
        self.subscribe_with_fallback(queries, None).await
    }

    /// Like [`subscribe`](Self::subscribe), falling back to `fallback` if the queries keep failing.
    pub async fn subscribe_with_fallback(
        &self,
        queries: &[&str],
        fallback: Option<&[&str]>,
    ) -> Result<SubscriptionId, SyncError> {
        let queries = queries.iter().map(|q| q.to_string()).collect();
        let fallback = fallback.map(|f| f.iter().map(|q| q.to_string()).collect());
        self.addr.send(Subscribe { queries, fallback, id: None }).await.map_err(|_| SyncError::ActorGone)?
    }

    /// Drops a query set.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<(), SyncError> {
        self.addr.send(Unsubscribe { id }).await.map_err(|_| SyncError::ActorGone)?
    }

    /// Drops every query set.
    pub fn unsubscribe_all(&self) {
        self.addr.do_send(UnsubscribeAll);
    }

    /// Makes `map` the context (its entities, items and players), replacing the previous map.
    pub async fn subscribe_to_map(&self, map: u32) -> Result<SubscriptionId, SyncError> {
        self.addr.send(SubscribeToMap { map }).await.map_err(|_| SyncError::ActorGone)?
    }

    /// Follows a point: the entities within `radius` of it are always in the cache.
    pub async fn follow(
        &self,
        map: u32,
        x: f32,
        y: f32,
        radius: f32,
        margin: f32,
    ) -> Result<SubscriptionId, SyncError> {
        self.addr.send(FollowPoint { map, x, y, radius, margin }).await.map_err(|_| SyncError::ActorGone)?
    }

    /// The followed point moved (cheap: call it every frame).
    pub fn move_point(&self, map: u32, x: f32, y: f32) {
        self.addr.do_send(MovePoint { map, x, y });
    }

    /// The cached rows of the spatial table within `radius` of a point, from
    /// the spatial index of the current snapshot: answered here, at once, with
    /// no round trip to the actor (empty without a spatial configuration).
    pub fn entities_in_range(&self, map: u32, x: f32, y: f32, radius: f32) -> Vec<Row> {
        self.cache.within(map, x, y, radius)
    }

    /// Every query set and its status.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, SyncError> {
        self.addr.send(GetSubscriptions).await.map_err(|_| SyncError::ActorGone)
    }

    /// A typed view of `table`, for a type deriving the SATS `Deserialize`
    /// (as generated table types do). Register the type for the table
    /// ([`RowTypes`](crate::RowTypes), given to the actor) and its rows are
    /// decoded once, as they arrive, and shared; for a type not registered
    /// each read decodes the rows it returns.
    ///
    /// Cheap: what a view needs of its table (its columns, key and row
    /// layout) is derived once per table when this handle is made, and a view
    /// shares it.
    pub fn table<T: for<'de> Deserialize<'de> + Send + Sync + 'static>(&self, table: &str) -> TableView<T> {
        let info = match self.tables.get(table) {
            Some(info) => Arc::clone(info),
            None => Arc::new(TableInfo::unknown(table)),
        };
        TableView { cache: self.cache.clone(), schema: self.schema.clone(), info, _row: PhantomData }
    }
}

/// What a typed view needs of its table, derived once from the schema.
#[derive(Debug)]
struct TableInfo {
    name: Arc<str>,
    /// Column names in order (empty for a table the schema does not have).
    columns: Vec<String>,
    /// The column of a single-column primary key.
    key: Option<usize>,
    /// Where the columns lie in a row's bytes (for a search by a column that has no index).
    layout: Option<RowLayout>,
}

impl TableInfo {
    fn of(table: &TableSchema) -> Self {
        Self {
            name: table.name.as_str().into(),
            columns: table.columns.clone(),
            key: match table.primary_key.as_slice() {
                [one] => Some(*one),
                _ => None,
            },
            layout: Some(RowLayout::new(&table.row_type)),
        }
    }

    fn unknown(name: &str) -> Self {
        Self { name: name.into(), columns: Vec::new(), key: None, layout: None }
    }
}

/// Every table's [`TableInfo`], by name.
fn table_infos(schema: &ModuleSchema) -> Arc<FxHashMap<Arc<str>, Arc<TableInfo>>> {
    Arc::new(schema.tables().map(|t| (Arc::from(t.name.as_str()), Arc::new(TableInfo::of(t)))).collect())
}

/// Typed reads of one cached table (each read sees one transaction's state).
/// Cloning it is a few reference counts.
#[derive(Debug)]
pub struct TableView<T> {
    cache: CacheReader,
    schema: Arc<ModuleSchema>,
    info: Arc<TableInfo>,
    _row: PhantomData<fn() -> T>,
}

impl<T> Clone for TableView<T> {
    fn clone(&self) -> Self {
        Self { cache: self.cache.clone(), schema: self.schema.clone(), info: self.info.clone(), _row: PhantomData }
    }
}

/// `row` as a `T`: the shared decoded row when `T` is the table's registered
/// type, else decoded now.
fn typed<T: for<'de> Deserialize<'de> + Send + Sync + 'static>(
    row: Row,
    schema: &ModuleSchema,
    table: &Arc<str>,
) -> Result<Shared<T>, SyncError> {
    let decode_error = |error: String| {
        metrics::counter!(names::SYNC_ROW_DECODE_ERRORS, names::LABEL_TABLE => table.to_string()).increment(1);
        SyncError::Decode { table: table.to_string(), error }
    };
    if row.get::<T>().is_some() {
        // The handle becomes the shared row: no reference counted up and down per row read.
        return row.into_shared::<T>().ok_or_else(|| decode_error(format!("not a {}", std::any::type_name::<T>())));
    }
    if let Some(error) = row.decode_error() {
        return Err(decode_error(error.to_string()));
    }
    let schema_table = schema.table(table).ok_or_else(|| SyncError::NoTable(table.to_string()))?;
    let value = schema_table.decode_as::<T>(row.bytes()).map_err(|e| decode_error(e.to_string()))?;
    Ok(Shared::decoded(row.bytes().clone(), value))
}

/// `value`'s BSATN, given to `f` from a buffer kept by the thread (no
/// allocation per call once it has grown); `None` if it does not encode.
fn with_bsatn<K: Serialize + ?Sized, R>(value: &K, f: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
    thread_local! {
        static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }
    // Taken, not borrowed: a call inside `f` gets a buffer of its own.
    let mut buffer = BUFFER.take();
    buffer.clear();
    let out = bsatn::to_writer(&mut buffer, value).ok().and_then(|()| f(&buffer));
    BUFFER.set(buffer);
    out
}

impl<T: for<'de> Deserialize<'de> + Send + Sync + 'static> TableView<T> {
    /// The table's name.
    pub fn name(&self) -> &Arc<str> {
        &self.info.name
    }

    fn typed(&self, row: Row) -> Result<Shared<T>, SyncError> {
        typed(row, &self.schema, &self.info.name)
    }

    /// Every cached row, or the first that does not decode as `T`.
    pub fn try_rows(&self) -> Result<Vec<Shared<T>>, SyncError> {
        self.cache.table_rows(&self.info.name).map(|row| self.typed(row)).collect()
    }

    /// Every cached row that decodes as `T` (one that does not is counted in
    /// `spacelink_sync_row_decode_errors_total` and left out: see [`try_rows`](Self::try_rows)).
    pub fn rows(&self) -> Vec<Shared<T>> {
        self.iter().collect()
    }

    /// The rows of [`rows`](Self::rows), as an iterator over the state of one
    /// transaction, which it holds: nothing is collected, each row is handed
    /// out as it is reached (the registered type's shared value, or decoded then).
    pub fn iter(&self) -> impl Iterator<Item = Shared<T>> {
        let (schema, name) = (self.schema.clone(), self.info.name.clone());
        self.cache.table_rows(&self.info.name).filter_map(move |row| typed(row, &schema, &name).ok())
    }

    /// The row with this primary key (the design's `GetEntity`), given as a
    /// value of the key's type (`u64` for `entity_id`, say).
    pub fn get<K: Serialize + ?Sized>(&self, key: &K) -> Option<Shared<T>> {
        let row = with_bsatn(key, |key| self.cache.with_view(|view| view.get_by_bytes(&self.info.name, key)))?;
        self.typed(row).ok()
    }

    /// The row the cache keys as `key` (a [`RowKey`], as row changes carry it).
    pub fn get_by_row_key(&self, key: &RowKey) -> Option<Shared<T>> {
        let row = self.cache.get(&self.info.name, key)?;
        self.typed(row).ok()
    }

    /// The row whose column `column` holds `value` (the official SDK's
    /// `conn.db.t().col().find(&v)`): the primary key and every unique column
    /// are one hash lookup (the cache indexes them, see [`crate::unique`]);
    /// another column is compared as bytes, read from each row without
    /// decoding it, and the first match is returned. Only the row found is
    /// decoded (for a type not registered). `None` for an unknown column.
    pub fn find<K: Serialize + ?Sized>(&self, column: &str, value: &K) -> Option<Shared<T>> {
        let index = self.info.columns.iter().position(|c| c == column)?;
        let name = &self.info.name;
        let row = with_bsatn(value, |wanted| {
            self.cache.with_view(|view| {
                if self.info.key == Some(index) {
                    return view.get_by_bytes(name, wanted);
                }
                if view.is_indexed(name, index) {
                    return view.find_unique(name, index, wanted);
                }
                let layout = self.info.layout.as_ref()?;
                let mut found = None;
                view.for_each_row(name, |_, row| {
                    let bytes = row.bytes();
                    if found.is_none() && layout.column(bytes, index).is_some_and(|r| bytes[r] == *wanted) {
                        found = Some(row.clone());
                    }
                });
                found
            })
        })?;
        self.typed(row).ok()
    }

    /// How many rows are cached.
    pub fn count(&self) -> usize {
        self.cache.count(&self.info.name)
    }
}

/// Primary-key values, encoded as the cache keys rows.
pub mod spacetimedb_key {
    use bytes::Bytes;
    use spacelink_connection::sats::{bsatn, ser::Serialize};

    /// A value that can be a primary key.
    pub trait Key {
        /// Its BSATN.
        fn bsatn(&self) -> Bytes;
    }

    impl<T: Serialize> Key for T {
        fn bsatn(&self) -> Bytes {
            bsatn::to_vec(self).unwrap_or_default().into()
        }
    }
}
