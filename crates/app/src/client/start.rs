//! The start of a client, in two stages: `Start::run` (inside an actix system:
//! the event sink, the supervisor tree's children, the initial subscriptions),
//! then the `SchemaStage` (the module's schema, given or fetched and retried,
//! then state sync), run where [`ClientBuilder::build`](super::ClientBuilder::build)
//! or [`ClientBuilder::build_async`](super::ClientBuilder::build_async) asked:
//! on the shared actor pool ([`crate::runtime`]) or in the caller's system.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use spacelink_connection::{ConnectionConfig, ModuleSchema};

use super::{Client, Tick};
use crate::callbacks::Registrar;
use crate::calls::{Reducers, ResultCallbacks};
use crate::disk_cache::{self, DiskCacheConfig, DiskCacheEvent, Restored, Saver};
use crate::error::ClientError;
use crate::events::{self, Event, EventSender, EventSink, SchemaEvent};
use crate::prediction_link::RowsHub;
use crate::queries::QueryDesk;
use crate::status::{SchemaStatus, StatusCell};
use crate::supervisor::{start_children, SpacelinkConfig, SyncStart, TreeListeners};
use spacelink_sync::disk::ImageOrigin;

type Report = Box<dyn FnOnce(Result<Client, ClientError>) + Send>;

/// Runs the tree on a thread of the shared actor pool ([`crate::runtime`]);
/// `report` hears as soon as the children run (the schema stage goes on
/// there in the background).
pub(super) fn spawn_runtime(
    start: Start,
    report: impl FnOnce(Result<Client, ClientError>) + Send + 'static,
) -> Result<(), ClientError> {
    spawn_runtime_with(start, false, Box::new(report))
}

/// Like [`spawn_runtime`], reporting only once the schema stage is done.
pub(super) fn spawn_runtime_waiting(
    start: Start,
    report: impl FnOnce(Result<Client, ClientError>) + Send + 'static,
) -> Result<(), ClientError> {
    spawn_runtime_with(start, true, Box::new(report))
}

fn spawn_runtime_with(start: Start, wait: bool, report: Report) -> Result<(), ClientError> {
    let placement = crate::runtime::place()?;
    let arbiter = placement.arbiter().clone();
    let spawned = arbiter.spawn_fn(move || {
        // On the actor thread now: the tree's futures need not be `Send`.
        actix::spawn(async move {
            let started = async move {
                let (client, schema_stage) = start.run()?;
                if wait {
                    schema_stage.wait().await?;
                } else {
                    actix::spawn(schema_stage.in_background());
                }
                Ok(client)
            }
            .await;
            report(started.map(|client| client.placed(placement)));
        });
    });
    if spawned {
        Ok(())
    } else {
        Err(ClientError::Runtime("the spacelink actor thread has ended".into()))
    }
}

/// What the builder hands to the tree start.
pub(super) struct Start {
    pub(super) config: SpacelinkConfig,
    pub(super) listeners: TreeListeners,
    pub(super) subscriptions: Vec<Vec<String>>,
    pub(super) registrar: Registrar,
}

impl Start {
    /// Inside an actix system: the event sink, the tree's children, the initial
    /// subscriptions (waiting in the sync actor's mailbox); then the schema stage.
    pub(super) fn run(self) -> Result<(Client, SchemaStage), ClientError> {
        let Start { mut config, mut listeners, subscriptions, registrar } = self;
        let (sender, receiver) = events::queue_read(config.frame_events);
        let status = StatusCell::default();
        let requested = Arc::new(AtomicBool::new(false));
        let sink = EventSink { events: sender.clone(), status: status.clone(), requested: requested.clone() }.start();
        let rows_hub = RowsHub::default().start();
        let queries = Context::<QueryDesk>::new();
        listeners.connection.messages.push(queries.address().recipient());
        listeners.connection.states.push(queries.address().recipient());
        listeners.sync.changes.push(rows_hub.clone().recipient());
        listeners.connection.states.push(sink.clone().recipient());
        listeners.connection.identities.push(sink.clone().recipient());
        listeners.connection.resilience.push(sink.clone().recipient());
        listeners.reducers.events.push(sink.clone().recipient());
        listeners.sync.changes.push(sink.clone().recipient());
        listeners.sync.subscriptions.push(sink.clone().recipient());
        config.auth_listeners.events.push(sink.clone().recipient());
        if let Some(telemetry) = &mut config.telemetry {
            telemetry.listeners.alerts.push(sink.clone().recipient());
            telemetry.listeners.stats.push(sink.clone().recipient());
        }
        let given = config.schema.take();
        let disk_cache = config.disk_cache.take();
        let (save_tx, save_asks) = tokio::sync::mpsc::unbounded_channel();
        // The fetch reads the connection's settings as given (before the stored token is chosen).
        let fetch_config = config.connection.clone();
        let (tree, sync) = start_children(config, listeners)?;
        let queries = queries.run(QueryDesk::new(tree.connection.clone(), tree.ready.clone()));
        let result_callbacks = ResultCallbacks::default();
        let client = Client {
            sink,
            reducers: Reducers::new(
                tree.reducers.clone(),
                sender.clone(),
                result_callbacks.clone(),
                status.calls_pending.clone(),
            )
            .refusing_after(requested.clone()),
            result_callbacks,
            tick: Mutex::new(Tick::default()),
            tree,
            events: receiver,
            registrar,
            placement: None,
            arbiter: actix::Arbiter::current(),
            runtime_thread: std::thread::current().id(),
            rows_hub,
            status: status.clone(),
            requested,
            initial: Vec::new(),
            queries,
            cache_saves: save_tx,
        };
        let mut initial = Vec::with_capacity(subscriptions.len());
        for queries in subscriptions {
            initial.push(client.subscribe(&queries));
        }
        let disk = disk_cache.map(|config| DiskStage { config, asks: save_asks, target: client.tree.target.clone() });
        let stage = SchemaStage {
            given,
            config: fetch_config,
            sync,
            status,
            events: sender,
            stop: client.tree.stop.clone(),
            disk,
        };
        let mut client = client;
        client.initial = initial;
        Ok((client, stage))
    }
}

/// The second stage of a start: the module's schema, then state sync.
pub(super) struct SchemaStage {
    given: Option<Arc<ModuleSchema>>,
    config: ConnectionConfig,
    sync: SyncStart,
    status: StatusCell,
    events: EventSender,
    stop: crate::supervise::StopFlag,
    /// The cache on disk, when the game keeps one.
    disk: Option<DiskStage>,
}

/// The cache on disk: its settings, the game's requests to save it now, and
/// the target the client points at (a client switched elsewhere saves nothing).
pub(super) struct DiskStage {
    config: DiskCacheConfig,
    asks: tokio::sync::mpsc::UnboundedReceiver<SaveAsk>,
    target: Arc<Mutex<crate::switch::Target>>,
}

/// A request to save the cache now, answered with what became of it.
pub(super) type SaveAsk = tokio::sync::oneshot::Sender<DiskCacheEvent>;

impl DiskStage {
    /// Reads the file (on the blocking pool), telling the game what became of it.
    async fn restore(
        &self,
        config: &ConnectionConfig,
        given: Option<&Arc<ModuleSchema>>,
        events: &EventSender,
    ) -> Option<Restored> {
        let (disk, server, database, given) =
            (self.config.clone(), config.server_url.clone(), config.database.clone(), given.cloned());
        let loaded = tokio::task::spawn_blocking(move || disk_cache::load(&disk, &server, &database, given.as_deref()))
            .await
            .unwrap_or_else(|e| Err(format!("the load task failed: {e}")));
        match loaded {
            Ok(Some(restored)) => {
                events.event(Event::DiskCache(restored.event()));
                Some(restored)
            }
            Ok(None) => None,
            Err(reason) => {
                tracing::warn!(%reason, path = %self.config.path.display(), "the cache file is ignored");
                events.event(Event::DiskCache(DiskCacheEvent::Ignored { reason }));
                None
            }
        }
    }

    /// Keeps saving the cache `reader` reads (restored from `restored`, if
    /// so) until the client stops, then saves it once more.
    fn keep_saving(
        self,
        reader: spacelink_sync::CacheReader,
        schema: &ModuleSchema,
        restored: bool,
        config: &ConnectionConfig,
        stop: crate::supervise::StopFlag,
        events: EventSender,
    ) {
        let origin = ImageOrigin {
            server: config.server_url.clone(),
            database: config.database.clone(),
            schema: schema.to_json(),
        };
        let last = restored.then(|| reader.snapshot());
        let DiskStage { config, mut asks, target } = self;
        let every_period = config.save_every.max(std::time::Duration::from_millis(10));
        let mut saver = Saver { config, origin, reader, last };
        actix::spawn(async move {
            let mut every = tokio::time::interval(every_period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            let mut open = true;
            loop {
                let (ask, last) = tokio::select! {
                    _ = every.tick() => (None, false),
                    ask = asks.recv(), if open => {
                        open = ask.is_some();
                        (ask, false)
                    }
                    () = stop.raised() => (None, true),
                };
                let elsewhere = {
                    let target = target.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    target.server_url != saver.origin.server || target.database != saver.origin.database
                };
                let event = if elsewhere {
                    Some(DiskCacheEvent::SaveFailed { error: "the client was switched to another database".into() })
                } else {
                    saver.save_if_changed().await
                };
                if let Some(event) = &event {
                    if ask.is_none() && !elsewhere {
                        events.event(Event::DiskCache(event.clone()));
                    }
                }
                if let Some(ask) = ask {
                    let _ = ask.send(event.unwrap_or(DiskCacheEvent::Unchanged));
                }
                if last {
                    break;
                }
            }
        });
    }
}

impl SchemaStage {
    fn ready(status: &StatusCell, events: &EventSender) {
        status.update(|s| s.schema = SchemaStatus::Ready);
        events.event(Event::Schema(SchemaEvent::Ready));
    }

    /// For a caller that waits: the schema as given, or fetched (bounded and
    /// retried, then an error that stops the tree).
    pub(super) async fn wait(self) -> Result<(), ClientError> {
        let SchemaStage { given, config, sync, status, events, stop, disk } = self;
        let mut restored = match &disk {
            Some(disk) => disk.restore(&config, given.as_ref(), &events).await,
            None => None,
        };
        let schema = match given {
            Some(schema) => schema,
            None => match ModuleSchema::fetch_for(&config).await {
                Ok(schema) => Arc::new(schema),
                Err(e) => {
                    sync.abandon();
                    return Err(e.into());
                }
            },
        };
        // Waiting anyway: an image of another schema is known before it is loaded.
        if let Some(difference) = restored.as_ref().and_then(|r| r.schema.difference(&schema)) {
            let reason = format!("it was saved for another version of the module: {difference}");
            tracing::warn!(%reason, "the cache file is ignored");
            events.event(Event::DiskCache(DiskCacheEvent::Ignored { reason }));
            restored = None;
        }
        let reader = sync.run(schema.clone(), restored.as_ref().map(|r| &r.image.tables[..]));
        if let Some(disk) = disk {
            disk.keep_saving(reader, &schema, restored.is_some(), &config, stop, events.clone());
        }
        Self::ready(&status, &events);
        Ok(())
    }

    /// In the background: a given schema starts sync at once and is then
    /// checked against the server's (a difference is [`SchemaEvent::Mismatch`]);
    /// else the schema is fetched, retried on the connection's backoff (capped)
    /// until it comes or the client shuts down, each failure told.
    ///
    /// With a cache on disk, its file is read first: its rows load before any
    /// session, and its schema stands in for one the game did not give
    /// (checked against the server's the same way).
    async fn in_background(self) {
        let SchemaStage { given, config, sync, status, events, stop, mut disk } = self;
        let restored = match &disk {
            Some(disk) => disk.restore(&config, given.as_ref(), &events).await,
            None => None,
        };
        let given = given.or_else(|| restored.as_ref().map(|r| r.schema.clone()));
        let checking = given.clone();
        let mut pending = Some(sync);
        let mut start = |sync: SyncStart, schema: Arc<ModuleSchema>, restored: Option<&Restored>| {
            let reader = sync.run(schema.clone(), restored.map(|r| &r.image.tables[..]));
            if let Some(disk) = disk.take() {
                disk.keep_saving(reader, &schema, restored.is_some(), &config, stop.clone(), events.clone());
            }
        };
        if let Some(schema) = given {
            if let Some(sync) = pending.take() {
                start(sync, schema, restored.as_ref());
            }
            Self::ready(&status, &events);
        }
        let Ok(base) = config.http_base() else { return };
        let mut jitter = config
            .jitter_seed
            .map_or_else(spacelink_connection::Jitter::from_entropy, spacelink_connection::Jitter::new);
        let mut attempts = 0u32;
        while !stop.is_raised() {
            let token = config.token.as_deref();
            match ModuleSchema::fetch_with(&base, &config.database, token, &config.schema_fetch, &config.tls).await {
                Ok(server) => {
                    match (&checking, pending.take()) {
                        (Some(mine), _) => {
                            if let Some(difference) = mine.difference(&server) {
                                tracing::warn!(%difference, "the server's module differs from the given schema");
                                status.update(|s| s.schema = SchemaStatus::Mismatch { difference: difference.clone() });
                                events.event(Event::Schema(SchemaEvent::Mismatch { difference }));
                            }
                        }
                        (None, Some(sync)) => {
                            start(sync, Arc::new(server), None);
                            Self::ready(&status, &events);
                        }
                        (None, None) => {}
                    }
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    let error = e.to_string();
                    tracing::warn!(%error, attempts, "schema fetch failed; retrying");
                    if checking.is_none() {
                        status.update(|s| s.schema = SchemaStatus::Retrying { attempts, error: error.clone() });
                    }
                    let retry_in = config.retry.delay(attempts.min(16), jitter.next_unit());
                    events.event(Event::Schema(SchemaEvent::FetchFailed { error, attempts, retry_in }));
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }
}
