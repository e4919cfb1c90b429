//! The sync actor's front door, and typed reads of the cache.

use std::marker::PhantomData;
use std::sync::Arc;

use actix::Addr;
use bytes::Bytes;
use spacelink_connection::sats::de::Deserialize;
use spacelink_connection::ModuleSchema;

use crate::actor::SyncActor;
use crate::cache::{CacheReader, RowKey};
use crate::error::SyncError;
use crate::messages::*;

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
        self.addr.send(Subscribe { queries, fallback }).await.map_err(|_| SyncError::ActorGone)?
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

    /// The cached entities within `radius` of a point, from the spatial index.
    pub async fn entities_in_range(&self, map: u32, x: f32, y: f32, radius: f32) -> Result<Vec<Bytes>, SyncError> {
        self.addr.send(GetEntitiesInRange { map, x, y, radius }).await.map_err(|_| SyncError::ActorGone)
    }

    /// Every query set and its status.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, SyncError> {
        self.addr.send(GetSubscriptions).await.map_err(|_| SyncError::ActorGone)
    }

    /// A typed view of `table`, for a type deriving the SATS `Deserialize`
    /// (as generated table types do).
    pub fn table<T: for<'de> Deserialize<'de>>(&self, table: &str) -> TableView<T> {
        TableView {
            cache: self.cache.clone(),
            schema: self.schema.clone(),
            table: table.to_string(),
            _row: PhantomData,
        }
    }
}

/// Typed reads of one cached table.
#[derive(Debug, Clone)]
pub struct TableView<T> {
    cache: CacheReader,
    schema: Arc<ModuleSchema>,
    table: String,
    _row: PhantomData<fn() -> T>,
}

impl<T: for<'de> Deserialize<'de>> TableView<T> {
    /// Every cached row that decodes as `T`.
    pub fn rows(&self) -> Vec<T> {
        let Some(table) = self.schema.table(&self.table) else { return Vec::new() };
        self.cache.rows(&self.table).iter().filter_map(|row| table.decode_as(row).ok()).collect()
    }

    /// The row with this primary key (the design's `GetEntity`), given as a
    /// value of the key's type (`u64` for `entity_id`, say).
    pub fn get<K: spacetimedb_key::Key>(&self, key: &K) -> Option<T> {
        let table = self.schema.table(&self.table)?;
        let row = self.cache.get(&self.table, &RowKey(key.bsatn()))?;
        table.decode_as(&row).ok()
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
