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
use crate::error::ClientError;
use crate::events::{self, Event, EventSender, EventSink, SchemaEvent};
use crate::prediction_link::RowsHub;
use crate::queries::QueryDesk;
use crate::status::{SchemaStatus, StatusCell};
use crate::supervisor::{start_children, SpacelinkConfig, SyncStart, TreeListeners};

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
        let (sender, receiver) = events::queue();
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
        };
        let mut initial = Vec::with_capacity(subscriptions.len());
        for queries in subscriptions {
            initial.push(client.subscribe(&queries));
        }
        let stage =
            SchemaStage { given, config: fetch_config, sync, status, events: sender, stop: client.tree.stop.clone() };
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
}

impl SchemaStage {
    fn ready(status: &StatusCell, events: &EventSender) {
        status.update(|s| s.schema = SchemaStatus::Ready);
        events.event(Event::Schema(SchemaEvent::Ready));
    }

    /// For a caller that waits: the schema as given, or fetched (bounded and
    /// retried, then an error that stops the tree).
    pub(super) async fn wait(self) -> Result<(), ClientError> {
        let schema = match self.given {
            Some(schema) => schema,
            None => match ModuleSchema::fetch_for(&self.config).await {
                Ok(schema) => Arc::new(schema),
                Err(e) => {
                    self.sync.abandon();
                    return Err(e.into());
                }
            },
        };
        self.sync.run(schema);
        Self::ready(&self.status, &self.events);
        Ok(())
    }

    /// In the background: a given schema starts sync at once and is then
    /// checked against the server's (a difference is [`SchemaEvent::Mismatch`]);
    /// else the schema is fetched, retried on the connection's backoff (capped)
    /// until it comes or the client shuts down, each failure told.
    async fn in_background(self) {
        let SchemaStage { given, config, sync, status, events, stop } = self;
        let checking = given.clone();
        let mut pending = Some(sync);
        if let Some(schema) = given {
            if let Some(sync) = pending.take() {
                sync.run(schema);
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
                            sync.run(Arc::new(server));
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
