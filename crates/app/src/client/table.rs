//! [`Table`]: a typed handle to one table of the cache, read without a round
//! trip, with its row callbacks and the [`RowContext`] they are told.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use spacelink_connection::sats::{de::Deserialize, ser::Serialize};
use spacelink_connection::ModuleSchema;
use spacelink_sync::{Cause, Shared, TableView};

use crate::callbacks::{CallbackId, Registrar};
use crate::calls::Reducers;
use crate::events::{RowEvent, RowEventKind};
use crate::supervisor::Ready;

/// A row for a callback: the cache's shared decoded row, or one decoded for it.
enum Typed<'a, T> {
    Shared(&'a T),
    Owned(T),
}

impl<T> std::ops::Deref for Typed<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Typed::Shared(t) => t,
            Typed::Owned(t) => t,
        }
    }
}

/// `row` as a `T`: the cache's shared decoded row for the table's registered
/// type, else decoded here (once per callback); a row that does not decode is
/// counted and warned about.
fn typed<'r, T: for<'de> Deserialize<'de> + Send + Sync + 'static>(
    row: &'r spacelink_sync::Row,
    schema: Option<&ModuleSchema>,
    name: &str,
) -> Option<Typed<'r, T>> {
    if let Some(v) = row.get::<T>() {
        return Some(Typed::Shared(v));
    }
    match schema?.table(name)?.decode_as::<T>(row.bytes()) {
        Ok(v) => Some(Typed::Owned(v)),
        Err(e) => {
            metrics::counter!(spacelink_connection::metric_names::CLIENT_ROW_DECODE_ERRORS).increment(1);
            tracing::warn!(table = %name, error = %e, "a row does not decode as the registered type");
            None
        }
    }
}

/// What a row callback is told besides the row: why it changed, and what it
/// needs to act (the official SDK's `EventContext`).
#[derive(Debug)]
pub struct RowContext<'a> {
    /// The row event (its table, key, whether it came from a reconciliation).
    pub event: &'a RowEvent,
    /// The game's reducer calls: a callback may call one at once.
    pub reducers: &'a Reducers,
}

impl RowContext<'_> {
    /// What caused the change: a reducer (which, who called it, when), a
    /// subscription applied, the reconciliation after a reconnect.
    pub fn cause(&self) -> &Cause {
        &self.event.cause
    }

    /// Whether this change is the reconciliation of a reconnect.
    pub fn reconciled(&self) -> bool {
        self.event.reconciled
    }
}

/// A typed handle to one table of the cache: reads straight from the cache's
/// reader (no round trip), callbacks run by [`Client::frame_tick`](super::Client::frame_tick). Cheap to
/// clone; it reads empty until the module's schema is known.
///
/// Generated bindings wrap it, one per table.
pub struct Table<T> {
    pub(super) ready: Arc<OnceLock<Ready>>,
    /// The cache's typed reads of the table (its columns, key and layout
    /// derived once per client), once the schema is known.
    pub(super) view: Arc<OnceLock<TableView<T>>>,
    pub(super) name: Arc<str>,
    pub(super) registrar: Registrar,
    pub(super) reducers: Reducers,
    pub(super) _row: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    /// A few reference counts: keep a handle, or make one per frame, alike.
    fn clone(&self) -> Self {
        Self {
            ready: self.ready.clone(),
            view: self.view.clone(),
            name: self.name.clone(),
            registrar: self.registrar.clone(),
            reducers: self.reducers.clone(),
            _row: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<T: for<'de> Deserialize<'de> + Send + Sync + 'static> Table<T> {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The view of the cache, once the schema is known.
    fn view(&self) -> Option<&TableView<T>> {
        if let Some(view) = self.view.get() {
            return Some(view);
        }
        let ready = self.ready.get()?;
        Some(self.view.get_or_init(|| ready.sync.table::<T>(&self.name)))
    }

    /// Every cached row: for the table's registered type (see
    /// [`ClientBuilder::with_row_types`](super::ClientBuilder::with_row_types)) the cache's own decoded rows, shared,
    /// else each decoded now. The iterator holds one transaction's state of
    /// the table and walks it: nothing is collected.
    pub fn iter(&self) -> impl Iterator<Item = Shared<T>> + '_ {
        self.view().into_iter().flat_map(|view| view.iter())
    }

    /// How many rows are cached.
    pub fn count(&self) -> usize {
        self.view().map_or(0, TableView::count)
    }

    /// The row whose primary key is `key` (a value of the key's type).
    pub fn find_by_key<K: Serialize>(&self, key: &K) -> Option<Shared<T>> {
        self.view()?.get(key)
    }

    /// The cached row whose column `column` equals `value` (the official
    /// SDK's `conn.db.t().col().find(&v)`): the primary key and every unique
    /// column are one hash lookup in the cache's indexes; another column is
    /// compared as bytes, read from each row without decoding it, and the
    /// first match is returned. Only the row found is decoded (for a type not
    /// registered). `None` for an unknown column.
    pub fn find<K: Serialize>(&self, column: &str, value: &K) -> Option<Shared<T>> {
        self.view()?.find(column, value)
    }

    fn on(
        &self,
        kind: RowEventKind,
        mut callback: impl FnMut(&RowContext<'_>, Option<&T>, &T) + Send + 'static,
    ) -> CallbackId {
        let name = self.name.clone();
        let ready = self.ready.clone();
        let reducers = self.reducers.clone();
        self.registrar.row(
            self.name.clone(),
            kind,
            Box::new(move |row| {
                // The registered type: the cache's decoded row, shared. Another
                // type: decoded here, once per callback.
                let schema = ready.get().map(|r| &*r.schema);
                let Some(new) = typed::<T>(&row.row, schema, &name) else { return };
                let old = row.old.as_ref().and_then(|r| typed::<T>(r, schema, &name));
                callback(&RowContext { event: row, reducers: &reducers }, old.as_deref(), &new);
            }),
        )
    }

    /// Runs `callback(ctx, row)` in `frame_tick` for each row inserted into the
    /// cache; `ctx` says why. Remove it with [`Client::remove_callback`](super::Client::remove_callback).
    pub fn on_insert(&self, mut callback: impl FnMut(&RowContext<'_>, &T) + Send + 'static) -> CallbackId {
        self.on(RowEventKind::Insert, move |ctx, _, row| callback(ctx, row))
    }

    /// Runs `callback(ctx, old, new)` in `frame_tick` for each row updated in the cache.
    pub fn on_update(&self, mut callback: impl FnMut(&RowContext<'_>, &T, &T) + Send + 'static) -> CallbackId {
        self.on(RowEventKind::Update, move |ctx, old, new| {
            if let Some(old) = old {
                callback(ctx, old, new);
            }
        })
    }

    /// Runs `callback(ctx, row)` in `frame_tick` for each row deleted from the cache.
    pub fn on_delete(&self, mut callback: impl FnMut(&RowContext<'_>, &T) + Send + 'static) -> CallbackId {
        self.on(RowEventKind::Delete, move |ctx, _, row| callback(ctx, row))
    }

    /// Removes a callback of this table (or any other: ids are the client's).
    pub fn remove_callback(&self, id: CallbackId) {
        self.registrar.remove(id);
    }
}
