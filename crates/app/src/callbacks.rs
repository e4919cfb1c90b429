//! The game's callbacks: registered from any thread, each under a
//! [`CallbackId`] the game can remove it by, run on the game's thread by
//! [`crate::Client::frame_tick`].
//!
//! Registrations and removals wait in the [`Registrar`] (a short lock, from
//! any thread, a callback included) and are adopted by the tick: at its start,
//! and after any event during which one was made, so a callback removed by
//! another callback does not hear the next event. Row callbacks are kept per
//! table and kind, so an event reaches only the callbacks of its table and kind
//! (one hash lookup), not every callback the game registered.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::events::{Event, RowEvent, RowEventKind};

/// Names one registered callback: hand it to [`crate::Client::remove_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackId(u64);

/// A callback for every event.
pub(crate) type AnyCallback = Box<dyn FnMut(&Event) + Send>;
/// A callback for one table's rows of one kind.
pub(crate) type RowCallback = Box<dyn FnMut(&RowEvent) + Send>;

enum Change {
    Any(CallbackId, AnyCallback),
    Row(CallbackId, Arc<str>, RowEventKind, RowCallback),
    Remove(CallbackId),
}

/// Where callbacks are registered and removed, from any thread. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Registrar {
    changes: Arc<Mutex<Vec<Change>>>,
    dirty: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
}

impl fmt::Debug for Registrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar").finish_non_exhaustive()
    }
}

impl Registrar {
    fn push(&self, change: Change) {
        self.changes.lock().unwrap_or_else(|e| e.into_inner()).push(change);
        self.dirty.store(true, Ordering::Release);
    }

    fn id(&self) -> CallbackId {
        CallbackId(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Registers a callback for every event.
    pub(crate) fn any(&self, callback: AnyCallback) -> CallbackId {
        let id = self.id();
        self.push(Change::Any(id, callback));
        id
    }

    /// Registers a callback for `table`'s rows of `kind`.
    pub(crate) fn row(&self, table: Arc<str>, kind: RowEventKind, callback: RowCallback) -> CallbackId {
        let id = self.id();
        self.push(Change::Row(id, table, kind, callback));
        id
    }

    /// Removes a callback (from the next event the tick delivers on).
    pub(crate) fn remove(&self, id: CallbackId) {
        self.push(Change::Remove(id));
    }
}

const KINDS: usize = 3;

fn slot(kind: RowEventKind) -> usize {
    match kind {
        RowEventKind::Insert => 0,
        RowEventKind::Update => 1,
        RowEventKind::Delete => 2,
    }
}

/// The callbacks the game's thread runs, in registration order.
#[derive(Default)]
pub(crate) struct Callbacks {
    any: Vec<(CallbackId, AnyCallback)>,
    rows: FxHashMap<Arc<str>, [Vec<(CallbackId, RowCallback)>; KINDS]>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks").field("any", &self.any.len()).field("tables", &self.rows.len()).finish()
    }
}

impl Callbacks {
    /// How many callbacks are registered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.any.len() + self.rows.values().flat_map(|kinds| kinds.iter()).map(Vec::len).sum::<usize>()
    }

    /// Adopts what was registered or removed since the last call.
    pub(crate) fn adopt(&mut self, registrar: &Registrar) {
        if !registrar.dirty.swap(false, Ordering::Acquire) {
            return;
        }
        let changes = std::mem::take(&mut *registrar.changes.lock().unwrap_or_else(|e| e.into_inner()));
        for change in changes {
            match change {
                Change::Any(id, callback) => self.any.push((id, callback)),
                Change::Row(id, table, kind, callback) => {
                    self.rows.entry(table).or_default()[slot(kind)].push((id, callback));
                }
                Change::Remove(id) => {
                    self.any.retain(|(i, _)| *i != id);
                    for kinds in self.rows.values_mut() {
                        for list in kinds.iter_mut() {
                            list.retain(|(i, _)| *i != id);
                        }
                    }
                    self.rows.retain(|_, kinds| kinds.iter().any(|l| !l.is_empty()));
                }
            }
        }
    }

    /// Runs the callbacks `event` concerns, adopting changes made by them.
    pub(crate) fn dispatch(&mut self, event: &Event, registrar: &Registrar) {
        if let Event::Row(row) = event {
            if let Some(kinds) = self.rows.get_mut(&row.table) {
                for (_, callback) in &mut kinds[slot(row.kind)] {
                    callback(row);
                }
            }
        }
        for (_, callback) in &mut self.any {
            callback(event);
        }
        self.adopt(registrar);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use spacelink_sync::{Cause, Row, RowKey};

    use super::*;

    fn row_event(table: &str, kind: RowEventKind) -> Event {
        Event::Row(RowEvent {
            table: Arc::from(table),
            kind,
            key: RowKey::from(&b"k"[..]),
            row: Row::from(&b"r"[..]),
            old: None,
            reconciled: false,
            cause: Cause::UnknownTransaction,
        })
    }

    fn counter(count: &Arc<AtomicUsize>) -> RowCallback {
        let count = count.clone();
        Box::new(move |_| {
            count.fetch_add(1, Ordering::Relaxed);
        })
    }

    #[test]
    fn a_row_reaches_only_its_tables_callbacks_of_its_kind() {
        let registrar = Registrar::default();
        let mut callbacks = Callbacks::default();
        let (a_insert, a_delete, b_insert) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        registrar.row("a".into(), RowEventKind::Insert, counter(&a_insert));
        registrar.row("a".into(), RowEventKind::Delete, counter(&a_delete));
        registrar.row("b".into(), RowEventKind::Insert, counter(&b_insert));
        callbacks.adopt(&registrar);
        callbacks.dispatch(&row_event("a", RowEventKind::Insert), &registrar);
        callbacks.dispatch(&row_event("a", RowEventKind::Insert), &registrar);
        callbacks.dispatch(&row_event("b", RowEventKind::Update), &registrar);
        assert_eq!(
            (a_insert.load(Ordering::Relaxed), a_delete.load(Ordering::Relaxed), b_insert.load(Ordering::Relaxed)),
            (2, 0, 0)
        );
    }

    #[test]
    fn a_removed_callback_hears_nothing_more_even_when_removed_by_another_callback() {
        let registrar = Registrar::default();
        let mut callbacks = Callbacks::default();
        let heard = Arc::new(AtomicUsize::new(0));
        let victim = registrar.row("t".into(), RowEventKind::Insert, counter(&heard));
        // A callback that removes the victim on the first event it hears.
        let r = registrar.clone();
        let mut done = false;
        registrar.any(Box::new(move |_| {
            if !done {
                r.remove(victim);
                done = true;
            }
        }));
        callbacks.adopt(&registrar);
        assert_eq!(callbacks.len(), 2);
        callbacks.dispatch(&row_event("t", RowEventKind::Insert), &registrar);
        assert_eq!(heard.load(Ordering::Relaxed), 1, "it ran before the removal");
        callbacks.dispatch(&row_event("t", RowEventKind::Insert), &registrar);
        assert_eq!(heard.load(Ordering::Relaxed), 1, "removed from the next event on");
        assert_eq!(callbacks.len(), 1);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let registrar = Registrar::default();
        let ids: Vec<CallbackId> = (0..4)
            .map(|_| {
                let r = registrar.clone();
                std::thread::spawn(move || (0..100).map(|_| r.any(Box::new(|_| {}))).collect::<Vec<_>>())
            })
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 400);
    }
}
