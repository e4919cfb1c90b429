//! Where spacelink's `metrics` events go, without taking the game's recorder.
//!
//! Every crate records through the `metrics` facade. The facade has one
//! process-global recorder, and a game may have installed its own: so
//! spacelink installs none globally (unless the game asks, see the telemetry
//! crate). Instead each thread spacelink owns (the client's actix thread, the
//! state-sync thread, the network runtime's thread) calls [`route_this_thread`]:
//! its thread-local default recorder becomes the [`Router`], which hands each
//! event to two places:
//!
//! * the **target**, the performance monitor's recorder when one runs
//!   ([`set_target`]; the last one set, process-wide), and
//! * the **game's global recorder**, if it has one (else the facade's no-op):
//!   the game sees spacelink's series exactly as if spacelink recorded there.
//!
//! Why this design: recording stays the facade's plain `counter!(..)` in every
//! crate (no wrapper to learn, no series lost to a game that reads them), no
//! global is taken, and what spacelink's monitor hears does not depend on what
//! the game installed. Events recorded on the game's own threads (a handle's
//! method) go to the game's recorder only; the monitor's series are all
//! recorded on spacelink's threads.
//!
//! Cost: the facade asks for a handle on every event. The router keeps, per
//! thread, the combined handle of each key it has seen (looked up by the key's
//! precomputed hash, no lock, no allocation), so an event is that lookup, the
//! monitor's atomic add and whatever the game's handle does. The cache starts
//! afresh when the target changes, and holds one handle per series seen. So a
//! game installs its own recorder before it builds the client: a series first
//! seen before that keeps the facade's no-op as the game's half.
//!
//! Reaching the global recorder from inside a thread-local one: the router
//! drops its own thread-local guard for the duration of the registration
//! (the facade then sees the global recorder), and sets it again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, LocalRecorderGuard, Metadata, Recorder,
    SharedString, Unit,
};

/// A recorder the router can share across threads.
pub type SharedRecorder = Arc<dyn Recorder + Send + Sync>;

static TARGET: RwLock<Option<SharedRecorder>> = RwLock::new(None);
/// Bumped on each [`set_target`]: the threads' caches start afresh.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static ROUTER: Router = Router { _private: () };

/// Sets (or clears) the recorder that hears, besides the game's global one,
/// every event on the routed threads.
pub fn set_target(target: Option<SharedRecorder>) {
    *TARGET.write().unwrap_or_else(PoisonError::into_inner) = target;
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Makes the [`Router`] this thread's default recorder, for the thread's
/// life (idempotent). Call it on a thread spacelink owns.
pub fn route_this_thread() {
    GUARD.with(|g| {
        let mut g = g.borrow_mut();
        if g.is_none() {
            *g = Some(metrics::set_default_local_recorder(&ROUTER));
        }
    });
}

/// Whether this thread's events go through the [`Router`].
pub fn is_routed() -> bool {
    GUARD.with(|g| g.borrow().is_some())
}

thread_local! {
    static GUARD: RefCell<Option<LocalRecorderGuard<'static>>> = const { RefCell::new(None) };
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// `Key`'s hash is computed once, when the key is made: use it as is.
#[derive(Debug, Default)]
pub struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map by `Key` that uses the key's precomputed hash.
pub type KeyMap<T> = HashMap<Key, T, BuildHasherDefault<KeyHash>>;

#[derive(Default)]
struct Cache {
    generation: u64,
    counters: KeyMap<Counter>,
    gauges: KeyMap<Gauge>,
    histograms: KeyMap<Histogram>,
}

/// The thread-local recorder of spacelink's threads (see the module doc).
#[derive(Debug)]
pub struct Router {
    _private: (),
}

/// Runs `f` on the game's global recorder (the facade's no-op if none),
/// with this thread's routing lifted for the call.
fn on_global<T>(f: impl FnOnce(&dyn Recorder) -> T) -> T {
    let lifted = GUARD.with(|g| g.borrow_mut().take());
    let routed = lifted.is_some();
    drop(lifted);
    let out = metrics::with_recorder(f);
    if routed {
        route_this_thread();
    }
    out
}

fn on_target<T>(f: impl FnOnce(&dyn Recorder) -> T) -> Option<T> {
    let target = TARGET.read().unwrap_or_else(PoisonError::into_inner).clone();
    target.map(|t| f(&*t))
}

/// The cached handle of `key`, or `build`'s, cached.
fn cached<T: Clone>(key: &Key, map: fn(&mut Cache) -> &mut KeyMap<T>, build: impl FnOnce() -> T) -> T {
    let generation = GENERATION.load(Ordering::Acquire);
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.generation != generation {
            *c = Cache { generation, ..Cache::default() };
        }
        map(&mut c).get(key).cloned()
    });
    if let Some(h) = hit {
        return h;
    }
    let handle = build();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.generation == generation {
            map(&mut c).insert(key.clone(), handle.clone());
        }
    });
    handle
}

/// Two handles as one: each update goes to both.
#[derive(Debug)]
pub struct Both<T>(pub T, pub T);

impl CounterFn for Both<Counter> {
    fn increment(&self, value: u64) {
        self.0.increment(value);
        self.1.increment(value);
    }

    fn absolute(&self, value: u64) {
        self.0.absolute(value);
        self.1.absolute(value);
    }
}

impl GaugeFn for Both<Gauge> {
    fn increment(&self, value: f64) {
        self.0.increment(value);
        self.1.increment(value);
    }

    fn decrement(&self, value: f64) {
        self.0.decrement(value);
        self.1.decrement(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
        self.1.set(value);
    }
}

impl HistogramFn for Both<Histogram> {
    fn record(&self, value: f64) {
        self.0.record(value);
        self.1.record(value);
    }
}

impl Recorder for Router {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        on_target(|t| t.describe_counter(key.clone(), unit, description.clone()));
        on_global(|g| g.describe_counter(key, unit, description));
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        on_target(|t| t.describe_gauge(key.clone(), unit, description.clone()));
        on_global(|g| g.describe_gauge(key, unit, description));
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        on_target(|t| t.describe_histogram(key.clone(), unit, description.clone()));
        on_global(|g| g.describe_histogram(key, unit, description));
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        cached(
            key,
            |c| &mut c.counters,
            || {
                let theirs = on_global(|g| g.register_counter(key, metadata));
                match on_target(|t| t.register_counter(key, metadata)) {
                    Some(ours) => Counter::from_arc(Arc::new(Both(ours, theirs))),
                    None => theirs,
                }
            },
        )
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        cached(
            key,
            |c| &mut c.gauges,
            || {
                let theirs = on_global(|g| g.register_gauge(key, metadata));
                match on_target(|t| t.register_gauge(key, metadata)) {
                    Some(ours) => Gauge::from_arc(Arc::new(Both(ours, theirs))),
                    None => theirs,
                }
            },
        )
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        cached(
            key,
            |c| &mut c.histograms,
            || {
                let theirs = on_global(|g| g.register_histogram(key, metadata));
                match on_target(|t| t.register_histogram(key, metadata)) {
                    Some(ours) => Histogram::from_arc(Arc::new(Both(ours, theirs))),
                    None => theirs,
                }
            },
        )
    }
}
