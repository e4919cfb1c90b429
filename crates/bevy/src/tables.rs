//! Typed tables: row messages per registered table, and rows mirrored as entities.
//!
//! [`SpacelinkAppExt::add_table`] registers a row type (a generated one works
//! unchanged) under its table's name: once the client starts, the table's row
//! callbacks ([`spacelink::Table::on_insert`], `on_update`, `on_delete`, run in
//! `frame_tick`) fill an inbox, and [`SpacelinkSet::Rows`]
//! turns it into [`RowInserted`], [`RowUpdated`] and [`RowDeleted`] messages,
//! each with its key, its cause and whether a reconnect's reconciliation made it.
//!
//! [`SpacelinkAppExt::mirror_table`] also keeps one entity per row, with a
//! [`TableRow`] component: spawned on insert, changed in place on update,
//! despawned on delete ([`SpacelinkSet::Mirror`]).
//! The cache keeps its rows across a reconnect and tells only what differs, so
//! a reconnect touches only the entities whose rows really changed.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use bevy_app::{App, PreUpdate};
use bevy_ecs::prelude::*;
use spacelink::connection::lib::de::Deserialize;
use spacelink::sync::{Cause, RowKey};
use spacelink::{Client, RowContext};

use crate::plugin::{Registry, SpacelinkSet};

/// A row type the plugin can carry: what `spacelink generate` writes for a table.
pub trait RowType: for<'de> Deserialize<'de> + Clone + Send + Sync + 'static {}
impl<T: for<'de> Deserialize<'de> + Clone + Send + Sync + 'static> RowType for T {}

/// Where a row change came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RowMeta {
    /// The row's primary key (its BSATN), as the cache keys it.
    pub key: RowKey,
    /// What caused it: a reducer (which, who called it), a subscription, the reconciliation.
    pub cause: Cause,
    /// Whether the reconciliation after a reconnect made it.
    pub reconciled: bool,
}

impl RowMeta {
    fn of(ctx: &RowContext<'_>) -> Self {
        Self { key: ctx.event.key.clone(), cause: ctx.cause().clone(), reconciled: ctx.reconciled() }
    }
}

/// A row of table `T` entered the cache.
#[derive(Message, Debug, Clone)]
pub struct RowInserted<T: RowType> {
    /// The row.
    pub row: T,
    /// Its key and cause.
    pub meta: RowMeta,
}

/// A row of table `T` changed (same key, new contents).
#[derive(Message, Debug, Clone)]
pub struct RowUpdated<T: RowType> {
    /// Before.
    pub old: T,
    /// After.
    pub new: T,
    /// Its key and cause.
    pub meta: RowMeta,
}

/// A row of table `T` left the cache.
#[derive(Message, Debug, Clone)]
pub struct RowDeleted<T: RowType> {
    /// The row as it was.
    pub row: T,
    /// Its key and cause.
    pub meta: RowMeta,
}

/// One row change, as the callbacks queue it.
enum Change<T> {
    Insert(T, RowMeta),
    Update(T, T, RowMeta),
    Delete(T, RowMeta),
}

/// What the table's callbacks (run in `frame_tick`) hand to the ECS.
#[derive(Resource)]
struct Inbox<T: RowType> {
    table: String,
    changes: Arc<Mutex<Vec<Change<T>>>>,
}

/// The typed handle of a registered table, for reading the cache from a system
/// (`iter`, `count`, `find`): present once the client started.
#[derive(Resource, Debug, Clone)]
pub struct TableHandle<T: RowType>(pub spacelink::Table<T>);

impl<T: RowType> std::ops::Deref for TableHandle<T> {
    type Target = spacelink::Table<T>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A mirrored row: the component of the entity that stands for it.
#[derive(Component, Debug, Clone)]
pub struct TableRow<T: RowType> {
    /// The row as the cache holds it now.
    pub row: T,
    /// Its primary key.
    pub key: RowKey,
}

/// The entity of each mirrored row of table `T`, by key.
#[derive(Resource, Debug)]
pub struct RowEntities<T: RowType> {
    by_key: HashMap<RowKey, Entity>,
    /// The frame's changed rows, by key: the row now, or `None` if it left.
    pending: HashMap<RowKey, Option<T>>,
    _row: PhantomData<fn() -> T>,
}

impl<T: RowType> Default for RowEntities<T> {
    fn default() -> Self {
        Self { by_key: HashMap::new(), pending: HashMap::new(), _row: PhantomData }
    }
}

impl<T: RowType> RowEntities<T> {
    /// The entity of the row with this key.
    pub fn get(&self, key: &RowKey) -> Option<Entity> {
        self.by_key.get(key).copied()
    }

    /// How many rows are mirrored.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no row is mirrored.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Registers tables and keyed subscriptions on the app, before or after the plugin.
pub trait SpacelinkAppExt {
    /// Carries table `name`'s row changes as typed [`RowInserted`],
    /// [`RowUpdated`] and [`RowDeleted`] messages, and gives a [`TableHandle`].
    /// A row type carries one table (the messages are typed by it): a second
    /// table of the same type is refused with a warning.
    fn add_table<T: RowType>(&mut self, name: &str) -> &mut Self;

    /// As [`add_table`](Self::add_table), and keeps one entity per row with a [`TableRow<T>`].
    fn mirror_table<T: RowType>(&mut self, name: &str) -> &mut Self;

    /// Subscribes to `queries` once the client starts, under the game's `key`:
    /// [`SubscriptionApplied`](crate::SubscriptionApplied) and
    /// [`SubscriptionFailed`](crate::SubscriptionFailed) name it, across reconnects.
    fn subscribe_keyed(&mut self, key: &str, queries: &[&str]) -> &mut Self;
}

impl SpacelinkAppExt for App {
    fn add_table<T: RowType>(&mut self, name: &str) -> &mut Self {
        if let Some(inbox) = self.world().get_resource::<Inbox<T>>() {
            if inbox.table != name {
                tracing::warn!(table = %name, registered = %inbox.table, "a row type carries one table: not registered again");
            }
            return self;
        }
        let changes: Arc<Mutex<Vec<Change<T>>>> = Arc::default();
        self.insert_resource(Inbox::<T> { table: name.to_string(), changes: changes.clone() })
            .add_message::<RowInserted<T>>()
            .add_message::<RowUpdated<T>>()
            .add_message::<RowDeleted<T>>()
            .add_systems(PreUpdate, deliver::<T>.in_set(SpacelinkSet::Rows));
        let name = name.to_string();
        self.world_mut().get_resource_or_init::<Registry>().tables.push(Box::new(move |client, world| {
            let table = client.table::<T>(&name);
            listen(&table, &changes);
            world.insert_resource(TableHandle(table));
        }));
        self
    }

    fn mirror_table<T: RowType>(&mut self, name: &str) -> &mut Self {
        self.add_table::<T>(name);
        if !self.world().contains_resource::<RowEntities<T>>() {
            self.init_resource::<RowEntities<T>>().add_systems(PreUpdate, mirror::<T>.in_set(SpacelinkSet::Mirror));
        }
        self
    }

    fn subscribe_keyed(&mut self, key: &str, queries: &[&str]) -> &mut Self {
        let queries = queries.iter().map(|q| q.to_string()).collect();
        self.world_mut().get_resource_or_init::<Registry>().subscriptions.push((key.to_string(), queries));
        self
    }
}

/// The table's callbacks: each change is queued for [`deliver`].
fn listen<T: RowType>(table: &spacelink::Table<T>, changes: &Arc<Mutex<Vec<Change<T>>>>) {
    let push = |changes: &Arc<Mutex<Vec<Change<T>>>>, change| {
        changes.lock().unwrap_or_else(|e| e.into_inner()).push(change);
    };
    let inserted = changes.clone();
    table.on_insert(move |ctx, row| push(&inserted, Change::Insert(row.clone(), RowMeta::of(ctx))));
    let updated = changes.clone();
    table.on_update(move |ctx, old, new| push(&updated, Change::Update(old.clone(), new.clone(), RowMeta::of(ctx))));
    let deleted = changes.clone();
    table.on_delete(move |ctx, row| push(&deleted, Change::Delete(row.clone(), RowMeta::of(ctx))));
}

/// Turns the inbox into messages, in the order the changes happened within
/// each kind; for a mirrored table, also each changed row's final state.
fn deliver<T: RowType>(
    inbox: Res<'_, Inbox<T>>,
    mirror: Option<ResMut<'_, RowEntities<T>>>,
    mut inserted: MessageWriter<'_, RowInserted<T>>,
    mut updated: MessageWriter<'_, RowUpdated<T>>,
    mut deleted: MessageWriter<'_, RowDeleted<T>>,
) {
    let changes = std::mem::take(&mut *inbox.changes.lock().unwrap_or_else(|e| e.into_inner()));
    let mut mirror = mirror;
    for change in changes {
        let (key, now) = match change {
            Change::Insert(row, meta) => {
                let key = meta.key.clone();
                let now = mirror.is_some().then(|| row.clone());
                inserted.write(RowInserted { row, meta });
                (key, now)
            }
            Change::Update(old, new, meta) => {
                let key = meta.key.clone();
                let now = mirror.is_some().then(|| new.clone());
                updated.write(RowUpdated { old, new, meta });
                (key, now)
            }
            Change::Delete(row, meta) => {
                let key = meta.key.clone();
                deleted.write(RowDeleted { row, meta });
                (key, None)
            }
        };
        if let Some(mirror) = mirror.as_mut() {
            // Later changes of a key override earlier ones: only the frame's end state is mirrored.
            mirror.pending.insert(key, now);
        }
    }
}

/// Keeps one entity per row: spawn, change in place, despawn.
fn mirror<T: RowType>(
    mut commands: Commands<'_, '_>,
    mut entities: ResMut<'_, RowEntities<T>>,
    mut rows: Query<'_, '_, &mut TableRow<T>>,
) {
    let RowEntities { by_key, pending, .. } = &mut *entities;
    for (key, now) in pending.drain() {
        match (by_key.get(&key).copied(), now) {
            (Some(entity), None) => {
                by_key.remove(&key);
                commands.entity(entity).despawn();
            }
            (Some(entity), Some(row)) => match rows.get_mut(entity) {
                Ok(mut existing) => existing.row = row,
                // Despawned by the game: the row comes back as a new entity.
                Err(_) => {
                    by_key.insert(key.clone(), commands.spawn(TableRow { row, key }).id());
                }
            },
            (None, Some(row)) => {
                by_key.insert(key.clone(), commands.spawn(TableRow { row, key }).id());
            }
            (None, None) => {}
        }
    }
}

/// A boxed registration, run once the client is built.
pub(crate) type Registration = Box<dyn FnOnce(&Client, &mut World) + Send + Sync>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bevy_app::Update;
    use spacelink::connection::lib::de::Deserialize;

    #[derive(Deserialize, Clone, Debug, PartialEq)]
    #[sats(crate = spacelink::connection::lib)]
    struct Thing {
        id: u32,
        hp: i32,
    }

    fn key(id: u32) -> RowKey {
        RowKey::from(spacelink::connection::sats::bsatn::to_vec(&id).unwrap())
    }

    fn meta(id: u32) -> RowMeta {
        RowMeta { key: key(id), cause: Cause::SubscriptionApplied, reconciled: false }
    }

    /// Messages seen by an `Update` system, per frame.
    #[derive(Resource, Default)]
    struct Heard(Vec<String>);

    fn hear(
        mut heard: ResMut<'_, Heard>,
        mut i: MessageReader<'_, '_, RowInserted<Thing>>,
        mut u: MessageReader<'_, '_, RowUpdated<Thing>>,
        mut d: MessageReader<'_, '_, RowDeleted<Thing>>,
        rows: Query<'_, '_, Ref<'_, TableRow<Thing>>>,
    ) {
        heard.0.extend(i.read().map(|m| format!("+{}", m.row.id)));
        heard.0.extend(u.read().map(|m| format!("~{}:{}->{}", m.new.id, m.old.hp, m.new.hp)));
        heard.0.extend(d.read().map(|m| format!("-{}", m.row.id)));
        // What an `Update` system sees as changed in place (not spawned) this frame.
        heard.0.extend(rows.iter().filter(|r| r.is_changed() && !r.is_added()).map(|r| format!("*{}", r.row.id)));
    }

    /// An app with the table mirrored and no client: the test fills the inbox
    /// as the table's callbacks would in `frame_tick`.
    fn app() -> App {
        let mut app = App::new();
        app.configure_sets(PreUpdate, (SpacelinkSet::Drain, SpacelinkSet::Rows, SpacelinkSet::Mirror).chain())
            .init_resource::<Heard>()
            .add_systems(Update, hear)
            .mirror_table::<Thing>("thing");
        app
    }

    fn arrive(app: &mut App, changes: Vec<Change<Thing>>) {
        app.world().resource::<Inbox<Thing>>().changes.lock().unwrap().extend(changes);
        app.update();
    }

    fn mirrored(app: &mut App) -> Vec<(Entity, Thing)> {
        let mut q = app.world_mut().query::<(Entity, &TableRow<Thing>)>();
        let mut rows: Vec<_> = q.iter(app.world()).map(|(e, r)| (e, r.row.clone())).collect();
        rows.sort_by_key(|(_, t)| t.id);
        rows
    }

    #[test]
    fn rows_become_entities_changed_in_place_and_despawned_in_the_same_frame_as_their_messages() {
        let mut app = app();
        let (a, b) = (Thing { id: 1, hp: 10 }, Thing { id: 2, hp: 20 });
        arrive(&mut app, vec![Change::Insert(a.clone(), meta(1)), Change::Insert(b.clone(), meta(2))]);
        assert_eq!(app.world().resource::<Heard>().0, ["+1", "+2"]);
        let first = mirrored(&mut app);
        assert_eq!(first.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(), [a.clone(), b.clone()]);

        // An update changes the same entity; the other one is not touched.
        let hurt = Thing { id: 1, hp: 5 };
        arrive(&mut app, vec![Change::Update(a.clone(), hurt.clone(), meta(1))]);
        let second = mirrored(&mut app);
        assert_eq!(second[0], (first[0].0, hurt.clone()));
        assert_eq!(second[1], first[1]);

        // A delete despawns it; a frame with nothing changes nothing.
        arrive(&mut app, vec![Change::Delete(hurt, meta(1))]);
        assert_eq!(mirrored(&mut app), [first[1].clone()]);
        arrive(&mut app, vec![]);
        assert_eq!(mirrored(&mut app), [first[1].clone()]);
        assert_eq!(app.world().resource::<RowEntities<Thing>>().len(), 1);
        // Only the updated row's entity was changed in place, in the frame of its message.
        assert_eq!(app.world().resource::<Heard>().0, ["+1", "+2", "~1:10->5", "*1", "-1"]);
    }

    #[test]
    fn several_changes_of_a_row_in_one_frame_leave_its_end_state() {
        let mut app = app();
        let a = Thing { id: 7, hp: 1 };
        let a2 = Thing { id: 7, hp: 2 };
        // Inserted and updated in one frame: one entity with the update.
        arrive(&mut app, vec![Change::Insert(a.clone(), meta(7)), Change::Update(a.clone(), a2.clone(), meta(7))]);
        let rows = mirrored(&mut app);
        assert_eq!(rows.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(), std::slice::from_ref(&a2));
        // Deleted and inserted again in one frame (a key that changed hands): still mirrored.
        arrive(&mut app, vec![Change::Delete(a2.clone(), meta(7)), Change::Insert(a.clone(), meta(7))]);
        assert_eq!(mirrored(&mut app), [(rows[0].0, a.clone())]);
        // Inserted and deleted in one frame: nothing.
        arrive(
            &mut app,
            vec![Change::Insert(Thing { id: 8, hp: 0 }, meta(8)), Change::Delete(Thing { id: 8, hp: 0 }, meta(8))],
        );
        assert_eq!(mirrored(&mut app).len(), 1);
        assert!(app.world().resource::<RowEntities<Thing>>().get(&key(8)).is_none());
    }
}
