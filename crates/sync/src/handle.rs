//! The sync actor's front door, and typed reads of the cache.

use std::marker::PhantomData;
use std::sync::Arc;

use actix::Addr;
use spacelink_connection::sats::de::Deserialize;
use spacelink_connection::ModuleSchema;

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
}

impl SyncHandle {
    /// Wraps the actor's address and a reader of its cache.
    pub fn new(addr: Addr<SyncActor>, cache: CacheReader, schema: Arc<ModuleSchema>) -> Self {
        Self { addr, cache, schema }
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
    pub fn table<T: for<'de> Deserialize<'de> + Send + Sync + 'static>(&self, table: &str) -> TableView<T> {
        TableView {
            cache: self.cache.clone(),
            schema: self.schema.clone(),
            table: table.to_string(),
            _row: PhantomData,
        }
    }
}

/// Typed reads of one cached table (each read sees one transaction's state).
#[derive(Debug, Clone)]
pub struct TableView<T> {
    cache: CacheReader,
    schema: Arc<ModuleSchema>,
    table: String,
    _row: PhantomData<fn() -> T>,
}

impl<T: for<'de> Deserialize<'de> + Send + Sync + 'static> TableView<T> {
    /// The row as a `T`: the shared decoded row when `T` is the table's
    /// registered type, else decoded now.
    fn typed(&self, row: &Row) -> Result<Shared<T>, SyncError> {
        if let Some(shared) = row.shared::<T>() {
            return Ok(shared);
        }
        let decode_error = |error: String| {
            metrics::counter!("spacelink_sync_row_decode_errors_total", "table" => self.table.clone()).increment(1);
            SyncError::Decode { table: self.table.clone(), error }
        };
        if let Some(error) = row.decode_error() {
            return Err(decode_error(error.to_string()));
        }
        let table = self.schema.table(&self.table).ok_or_else(|| SyncError::NoTable(self.table.clone()))?;
        let value = table.decode_as::<T>(row.bytes()).map_err(|e| decode_error(e.to_string()))?;
        Ok(Shared::decoded(row.bytes().clone(), value))
    }

    /// Every cached row, or the first that does not decode as `T`.
    pub fn try_rows(&self) -> Result<Vec<Shared<T>>, SyncError> {
        self.cache.rows(&self.table).iter().map(|row| self.typed(row)).collect()
    }

    /// Every cached row that decodes as `T` (one that does not is counted in
    /// `spacelink_sync_row_decode_errors_total` and left out: see [`try_rows`](Self::try_rows)).
    pub fn rows(&self) -> Vec<Shared<T>> {
        self.cache.rows(&self.table).iter().filter_map(|row| self.typed(row).ok()).collect()
    }

    /// The rows of [`rows`](Self::rows), as an iterator.
    pub fn iter(&self) -> impl Iterator<Item = Shared<T>> {
        self.rows().into_iter()
    }

    /// The row with this primary key (the design's `GetEntity`), given as a
    /// value of the key's type (`u64` for `entity_id`, say).
    pub fn get<K: spacetimedb_key::Key>(&self, key: &K) -> Option<Shared<T>> {
        let row = self.cache.get(&self.table, &RowKey(key.bsatn()))?;
        self.typed(&row).ok()
    }

    /// The row the cache keys as `key` (a [`RowKey`], as row changes carry it).
    pub fn get_by_row_key(&self, key: &RowKey) -> Option<Shared<T>> {
        let row = self.cache.get(&self.table, key)?;
        self.typed(&row).ok()
    }

    /// How many rows are cached.
    pub fn count(&self) -> usize {
        self.cache.count(&self.table)
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
