//! The threads the actors of clients built with [`crate::ClientBuilder::build`]
//! run on: a small pool shared by every client of the process, so that a
//! thousand clients (a bot swarm, a load test, a server-side tool) cost a
//! thousand actor trees, not a thousand threads. The network has its own
//! shared thread (`spacelink_connection::net::runtime`).
//!
//! There are two pools, each started on first use with one thread per core,
//! at most [`MAX_ACTOR_THREADS`] ([`set_actor_threads`] chooses another size
//! before that): one for the light actors (connection, reducers, auth,
//! supervision), one for state sync, whose work grows with the rows a
//! transaction carries, so that applying a large transaction never holds up
//! any client's heartbeats. Each thread runs an actix `System`; a new
//! client's actors (and, separately, its sync actor) are placed on the
//! thread holding the fewest clients, and stay there until it shuts down.
//! Nothing a client does blocks its thread: the game's callbacks run on the
//! game's thread, in `frame_tick`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use actix::{ArbiterHandle, System};

use crate::error::ClientError;

/// The pool's size when nobody chose one: one thread per core, at most this many.
pub const MAX_ACTOR_THREADS: usize = 4;

static SIZE: OnceLock<usize> = OnceLock::new();
static ACTORS: OnceLock<Result<Pool, String>> = OnceLock::new();
static SYNC: OnceLock<Result<Pool, String>> = OnceLock::new();

/// Chooses how many threads each shared pool has (at least one). Only the
/// first choice counts, and only if made before the first client is built;
/// returns whether it was taken.
pub fn set_actor_threads(threads: usize) -> bool {
    ACTORS.get().is_none() && SYNC.get().is_none() && SIZE.set(threads.max(1)).is_ok()
}

/// One thread of the pool: where to spawn, and how many clients live there.
struct Slot {
    arbiter: ArbiterHandle,
    clients: Arc<AtomicUsize>,
}

struct Pool {
    slots: Vec<Slot>,
}

/// A client's place on the pool: its thread's arbiter; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Placement {
    arbiter: ArbiterHandle,
    clients: Arc<AtomicUsize>,
}

impl Placement {
    /// Where the client's actors run.
    pub(crate) fn arbiter(&self) -> &ArbiterHandle {
        &self.arbiter
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn default_size() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_ACTOR_THREADS)
}

fn start_pool(name: &str, size: usize) -> Result<Pool, String> {
    let mut slots = Vec::with_capacity(size);
    for i in 0..size {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("spacelink-{name}-{i}"))
            .spawn(move || {
                // A thread spacelink owns: its metrics go through the router.
                spacelink_connection::recording::route_this_thread();
                let system = System::new();
                let _ = tx.send(System::current().arbiter().clone());
                if let Err(e) = system.run() {
                    tracing::warn!(error = %e, "a spacelink actor thread ended with an error");
                }
            })
            .map_err(|e| format!("cannot start a spacelink actor thread: {e}"))?;
        let arbiter = rx.recv().map_err(|_| "a spacelink actor thread ended as it started".to_string())?;
        slots.push(Slot { arbiter, clients: Arc::new(AtomicUsize::new(0)) });
    }
    Ok(Pool { slots })
}

/// A place for one more client's actors: the least busy thread of their pool.
pub(crate) fn place() -> Result<Placement, ClientError> {
    place_on(&ACTORS, "actors")
}

/// A place for one more client's state sync: the least busy thread of the sync pool.
pub(crate) fn place_sync() -> Result<Placement, ClientError> {
    place_on(&SYNC, "sync")
}

fn place_on(pool: &'static OnceLock<Result<Pool, String>>, name: &str) -> Result<Placement, ClientError> {
    let pool = pool
        .get_or_init(|| start_pool(name, *SIZE.get_or_init(default_size)))
        .as_ref()
        .map_err(|e| ClientError::Runtime(e.clone()))?;
    let slot = pool
        .slots
        .iter()
        .min_by_key(|s| s.clients.load(Ordering::Relaxed))
        .ok_or_else(|| ClientError::Runtime("a spacelink thread pool has no thread".into()))?;
    slot.clients.fetch_add(1, Ordering::Relaxed);
    Ok(Placement { arbiter: slot.arbiter.clone(), clients: slot.clients.clone() })
}

fn load(pool: &OnceLock<Result<Pool, String>>) -> Vec<usize> {
    pool.get()
        .and_then(|p| p.as_ref().ok())
        .map(|p| p.slots.iter().map(|s| s.clients.load(Ordering::Relaxed)).collect())
        .unwrap_or_default()
}

/// How many clients each thread of the actor pool holds (empty before the
/// first client), for tests and diagnostics.
pub fn actor_threads() -> Vec<usize> {
    load(&ACTORS)
}

/// How many clients' state sync each thread of the sync pool holds.
pub fn sync_threads() -> Vec<usize> {
    load(&SYNC)
}
