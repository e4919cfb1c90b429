//! Client-side prediction wired to the rest of the tree: the game's rows come
//! in from state sync, its inputs go out through the reducer client.
//!
//! The prediction crate knows neither: this link maps the sync actor's
//! `RowsChanged` of the predicted entity's table to `ServerStateReceived`
//! (the game says how to read its state and the last processed input
//! sequence from a row), and each `PredictedInput` to a sequenced reducer call
//! (the design's `CallWithPrediction`: retried across reconnects, run once). A
//! call the server refuses (the reducer failed, or it was never sent) rolls
//! the input back. Nothing here names a table or column of a particular game.
//!
//! [`crate::Client::predict`] is the one way to start a prediction: it runs
//! the prediction actor and its link under the tree's supervision, from the
//! game's thread or inside the actix system.
//!
//! ```no_run
//! # use spacelink::prediction_link::PredictedEntity;
//! # use spacelink::prediction::{PredictionConfig, Walk};
//! # fn run(client: &spacelink::Client, entity: PredictedEntity<Walk>) -> Result<(), Box<dyn std::error::Error>> {
//! let me = client.predict(Walk::default(), PredictionConfig::default(), entity)?;
//! me.predict(spacelink::prediction::Step { dx: 1.0, dy: 0.0 }); // every frame
//! let _draw_here = me.shown(); // its corrections reach frame_tick as Event::Prediction
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use spacelink_prediction::{
    PredictedInput, PredictionActor, PredictionConfig, PredictionError, PredictionHandle, PredictionListeners,
    PredictionModel,
};
use spacelink_reducers::{Outcome, ReducerError, ReducerHandle};
use spacelink_sync::{RowChange, RowsChanged};

/// Reads the predicted entity's state and the last input sequence the server
/// processed from a row of its table; `None` for rows of other entities.
pub type ReadRow<M> = Arc<dyn Fn(&[u8]) -> Option<(<M as PredictionModel>::State, u32)> + Send + Sync>;

/// Encodes an input and its sequence number as the reducer's BSATN arguments.
pub type EncodeInput<M> = Arc<dyn Fn(u32, &<M as PredictionModel>::Input) -> Bytes + Send + Sync>;

/// Where the game's predicted entity lives on the server.
pub struct PredictedEntity<M: PredictionModel> {
    /// The table whose row holds the entity's authoritative state.
    pub table: String,
    /// The reducer that takes the inputs (it must drop repeats of a sequence number).
    pub reducer: String,
    /// Reads a row of `table`.
    pub read_row: ReadRow<M>,
    /// Encodes an input for `reducer`.
    pub encode_input: EncodeInput<M>,
}

impl<M: PredictionModel> fmt::Debug for PredictedEntity<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PredictedEntity").field("table", &self.table).field("reducer", &self.reducer).finish()
    }
}

/// The link actor between sync, the reducer client and one prediction.
pub struct PredictionLink<M: PredictionModel + Unpin + 'static> {
    prediction: PredictionHandle<M>,
    reducers: ReducerHandle,
    entity: PredictedEntity<M>,
}

impl<M: PredictionModel + Unpin + 'static> fmt::Debug for PredictionLink<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PredictionLink").field("entity", &self.entity).finish_non_exhaustive()
    }
}

impl<M: PredictionModel + Unpin + 'static> Actor for PredictionLink<M> {
    type Context = Context<Self>;
}

impl<M: PredictionModel + Unpin + 'static> Handler<RowsChanged> for PredictionLink<M> {
    type Result = ();

    fn handle(&mut self, msg: RowsChanged, _ctx: &mut Self::Context) {
        for change in msg.changes.iter() {
            let row = match change {
                RowChange::Insert { table, row, .. } | RowChange::Update { table, new: row, .. }
                    if **table == *self.entity.table =>
                {
                    row
                }
                _ => continue,
            };
            if let Some((state, seq)) = (self.entity.read_row)(row) {
                self.prediction.server_state(msg.generation, state, seq);
            }
        }
    }
}

impl<M: PredictionModel + Unpin + 'static> Handler<PredictedInput<M::Input>> for PredictionLink<M> {
    type Result = ();

    fn handle(&mut self, msg: PredictedInput<M::Input>, ctx: &mut Self::Context) {
        let PredictedInput { seq, input } = msg;
        let args = (self.entity.encode_input)(seq, &input);
        let reducers = self.reducers.clone();
        let reducer = self.entity.reducer.clone();
        // The frame loop never waits: the answer comes back to this actor.
        let call = async move { reducers.call_sequenced(&reducer, args, seq).await };
        ctx.spawn(call.into_actor(self).map(move |result, act, _| match result {
            Ok(r) => match r.outcome {
                Outcome::Committed => {} // the row confirms it
                Outcome::Failed(reason) => act.prediction.input_rejected(seq, reason),
                Outcome::OutOfEnergy => act.prediction.input_rejected(seq, "out of energy"),
            },
            // It may have run: the server's row will say.
            Err(ReducerError::OutcomeUnknown { .. }) => {}
            // Never ran (invalid, dropped, refused, cancelled).
            Err(e) => act.prediction.input_rejected(seq, e.to_string()),
        }));
    }
}

/// Fans the sync actor's row changes out to listeners added while the client
/// runs (the links of predictions started by [`crate::Client::predict`]): one hop per
/// transaction, the changes shared, not copied.
#[derive(Debug, Default)]
pub(crate) struct RowsHub {
    listeners: Vec<Recipient<RowsChanged>>,
}

/// Adds a listener to the hub.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ListenToRows(pub(crate) Recipient<RowsChanged>);

impl Actor for RowsHub {
    type Context = Context<Self>;
}

impl Handler<ListenToRows> for RowsHub {
    type Result = ();

    fn handle(&mut self, msg: ListenToRows, _ctx: &mut Self::Context) {
        self.listeners.push(msg.0);
    }
}

impl Handler<RowsChanged> for RowsHub {
    type Result = ();

    fn handle(&mut self, msg: RowsChanged, _ctx: &mut Self::Context) {
        // A listener that has stopped for good is dropped.
        self.listeners.retain(|r| r.connected());
        for r in &self.listeners {
            r.do_send(msg.clone());
        }
    }
}

/// What [`crate::Client::predict`] hands to the actors' thread.
pub(crate) struct PredictionStart<M: PredictionModel + Unpin + 'static> {
    pub(crate) model: M,
    pub(crate) config: PredictionConfig,
    pub(crate) entity: PredictedEntity<M>,
    pub(crate) listeners: PredictionListeners,
    pub(crate) reducers: ReducerHandle,
    /// State sync, once the schema is known (before, nothing is cached).
    pub(crate) sync: Option<spacelink_sync::SyncHandle>,
    pub(crate) hub: Addr<RowsHub>,
    pub(crate) policy: crate::supervise::RestartPolicy,
    pub(crate) stop: crate::supervise::StopFlag,
    pub(crate) controls: Arc<std::sync::Mutex<Vec<Arc<crate::supervise::ChildControl>>>>,
}

impl<M: PredictionModel + Unpin + 'static> PredictionStart<M> {
    /// Starts the prediction under the tree's supervision, and its link (on
    /// the actors' thread).
    pub(crate) fn run(self) -> Result<PredictionHandle<M>, PredictionError> {
        let PredictionStart { model, config, entity, listeners, reducers, sync, hub, policy, stop, controls } = self;
        let link = Context::<PredictionLink<M>>::new();
        let ctx = Context::<PredictionActor<M>>::new();
        let (actor, prediction) =
            PredictionActor::build_in(&ctx, model, config, link.address().recipient(), listeners)?;
        // Listen first, then read what is cached: a state told twice is harmless, one missed is not.
        hub.do_send(ListenToRows(link.address().recipient()));
        for row in sync.iter().flat_map(|sync| sync.cache().rows(&entity.table)) {
            if let Some((state, seq)) = (entity.read_row)(&row) {
                prediction.server_state(0, state, seq);
            }
        }
        let on_shutdown = crate::supervise::OnShutdown::Stopped;
        let control = crate::supervise::start(ctx, actor, "prediction", policy, stop, on_shutdown);
        controls.lock().unwrap_or_else(|e| e.into_inner()).push(control);
        link.run(PredictionLink { prediction: prediction.clone(), reducers, entity });
        Ok(prediction)
    }
}
