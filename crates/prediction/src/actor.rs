//! The prediction actor: a thin shell that moves messages to and from a
//! [`Predictor`], advances it on a frame timer and publishes what to draw.
//!
//! The game reads the shown state from a shared [`View`] (through the
//! [`PredictionHandle`]), never with a round trip to the actor.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use spacelink_connection::clock::now;
use spacelink_connection::metric_names as names;

use crate::config::PredictionConfig;
use crate::error::PredictionError;
use crate::handle::PredictionHandle;
use crate::messages::*;
use crate::model::PredictionModel;
use crate::predictor::{Predictor, ReconcileOutcome, Reconciliation, Rejection};

/// What the game draws, published by the actor after every change and frame.
#[derive(Debug, Clone)]
pub struct View<S> {
    /// The shown state (the predicted one with any correction being smoothed).
    pub shown: Option<S>,
    /// The predicted state.
    pub predicted: Option<S>,
    /// The server's last processed input, as last reconciled.
    pub confirmed_seq: Option<u32>,
    /// The number of the newest input applied (0: none yet).
    pub newest_seq: u32,
}

impl<S> Default for View<S> {
    fn default() -> Self {
        Self { shown: None, predicted: None, confirmed_seq: None, newest_seq: 0 }
    }
}

/// The view shared by the actor and its handles.
pub(crate) type SharedView<S> = Arc<Mutex<View<S>>>;

/// Runs a [`Predictor`] for one entity.
///
/// Wiring, not the game's API: `spacelink`'s supervisor starts it; a game
/// talks to it through [`PredictionHandle`](crate::PredictionHandle) (what `spacelink::Client` hands out).
pub struct PredictionActor<M: PredictionModel> {
    predictor: Predictor<M>,
    outbox: Recipient<PredictedInput<M::Input>>,
    listeners: PredictionListeners,
    view: SharedView<M::State>,
    generation: u64,
    frame_timer: Option<SpawnHandle>,
}

impl<M: PredictionModel> std::fmt::Debug for PredictionActor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionActor").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl<M> PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    /// Starts the actor: inputs it applies go to `outbox` (to be sent to the
    /// server), events to `listeners`. Returns its handle.
    pub fn start(
        model: M,
        config: PredictionConfig,
        outbox: Recipient<PredictedInput<M::Input>>,
        listeners: PredictionListeners,
    ) -> Result<PredictionHandle<M>, PredictionError> {
        let actor = Self::new(model, config, outbox, listeners)?;
        let view = actor.view.clone();
        Ok(PredictionHandle::new(actor.start(), view))
    }

    /// Starts the actor in a context made beforehand (`Context::new()`), so
    /// that others could be given its address first.
    pub fn start_in(
        ctx: Context<Self>,
        model: M,
        config: PredictionConfig,
        outbox: Recipient<PredictedInput<M::Input>>,
        listeners: PredictionListeners,
    ) -> Result<PredictionHandle<M>, PredictionError> {
        let actor = Self::new(model, config, outbox, listeners)?;
        let view = actor.view.clone();
        Ok(PredictionHandle::new(ctx.run(actor), view))
    }

    /// Builds the actor for `ctx` (made beforehand) without running it, and its
    /// handle: the caller runs it, under a supervisor of its own (the actor is
    /// [`Supervised`]: a restart keeps the history, the view and the mailbox).
    pub fn build_in(
        ctx: &Context<Self>,
        model: M,
        config: PredictionConfig,
        outbox: Recipient<PredictedInput<M::Input>>,
        listeners: PredictionListeners,
    ) -> Result<(Self, PredictionHandle<M>), PredictionError> {
        let actor = Self::new(model, config, outbox, listeners)?;
        let handle = PredictionHandle::new(ctx.address(), actor.view.clone());
        Ok((actor, handle))
    }

    fn new(
        model: M,
        config: PredictionConfig,
        outbox: Recipient<PredictedInput<M::Input>>,
        listeners: PredictionListeners,
    ) -> Result<Self, PredictionError> {
        let predictor = Predictor::new(model, config)?;
        Ok(Self { predictor, outbox, listeners, view: Arc::default(), generation: 0, frame_timer: None })
    }

    fn tell(&self, event: PredictionEvent) {
        for r in &self.listeners.events {
            r.do_send(event.clone());
        }
    }

    /// Copies what to draw into the shared view (in place: no allocation for plain states).
    fn publish(&self) {
        let Ok(mut view) = self.view.lock() else { return };
        let view = &mut *view;
        copy(&mut view.shown, self.predictor.shown());
        copy(&mut view.predicted, self.predictor.predicted());
        view.confirmed_seq = self.predictor.confirmed_seq();
        view.newest_seq = self.predictor.history().back().map_or(view.newest_seq, |e| e.seq);
        metrics::gauge!(names::PREDICTION_HISTORY).set(self.predictor.history().len() as f64);
    }

    fn frame(&mut self) {
        let outbox = &self.outbox;
        self.predictor.advance(now(), |seq, input| {
            metrics::counter!(names::PREDICTION_INPUTS).increment(1);
            outbox.do_send(PredictedInput { seq, input: *input });
        });
        self.publish();
    }

    fn on_reconciliation(&self, r: Reconciliation) {
        match r.outcome {
            ReconcileOutcome::Synced => {
                tracing::debug!(seq = r.seq, "prediction synced with the server's state");
            }
            ReconcileOutcome::Stale => {}
            ReconcileOutcome::Accurate { .. } => {
                metrics::counter!(names::PREDICTION_CHECKS).increment(1);
                self.tell(PredictionEvent::Confirmed { seq: r.seq, count: r.confirmed });
            }
            ReconcileOutcome::Corrected(c) => {
                if c.error.is_some() {
                    // A check that failed: one of the checks, and one of the
                    // mispredictions (the monitor's accuracy is their ratio).
                    metrics::counter!(names::PREDICTION_CHECKS).increment(1);
                    metrics::counter!(names::PREDICTION_MISPREDICTIONS).increment(1);
                }
                record_correction(c.distance, c.replayed);
                tracing::debug!(seq = r.seq, correction = c.distance, replayed = c.replayed, "prediction corrected");
                self.tell(PredictionEvent::Reconciled {
                    seq: r.seq,
                    correction: c.distance,
                    replayed: c.replayed,
                    snapped: c.snapped,
                });
            }
            ReconcileOutcome::Resynced { correction } => {
                metrics::counter!(names::PREDICTION_RESYNCS).increment(1);
                tracing::info!(seq = r.seq, correction, "input sequence gap: prediction resynchronised");
                self.tell(PredictionEvent::Resynced { seq: r.seq });
            }
        }
        let stats = self.predictor.stats();
        metrics::gauge!(names::PREDICTION_ACCURACY).set(stats.accuracy());
    }
}

fn copy<S: Clone>(to: &mut Option<S>, from: Option<&S>) {
    match (to.as_mut(), from) {
        (Some(to), Some(from)) => to.clone_from(from),
        (_, from) => *to = from.cloned(),
    }
}

fn record_correction(distance: f32, replayed: u32) {
    metrics::counter!(names::PREDICTION_RECONCILIATIONS).increment(1);
    metrics::histogram!(names::PREDICTION_REPLAY_DEPTH).record(f64::from(replayed));
    if distance.is_finite() {
        // A correction out of a NaN state (a bad input rolled back) has no size.
        metrics::histogram!(names::PREDICTION_CORRECTION_DISTANCE).record(f64::from(distance));
    }
}

impl<M> Actor for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Inputs arrive once a frame; the mailbox is sized for bursts of them.
        ctx.set_mailbox_capacity(self.predictor.config().max_prediction_history.max(16));
        self.arm_frame_timer(ctx);
    }
}

impl<M> Supervised for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // A restart drops every timer and reuses their handles: forget ours
        // rather than cancel a handle that may name the new timer.
        self.frame_timer = None;
        tracing::info!(generation = self.generation, "prediction actor restarting");
    }
}

impl<M> PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    fn arm_frame_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.frame_timer.take() {
            ctx.cancel_future(timer);
        }
        self.frame_timer = Some(ctx.run_interval(self.predictor.config().frame_interval, |act, _| act.frame()));
    }
}

impl<M> Handler<ReconfigurePrediction> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = Result<(), PredictionError>;

    fn handle(&mut self, msg: ReconfigurePrediction, ctx: &mut Self::Context) -> Self::Result {
        let frame_changed = msg.0.frame_interval != self.predictor.config().frame_interval;
        self.predictor.reconfigure(msg.0)?;
        if frame_changed {
            self.arm_frame_timer(ctx);
        }
        tracing::info!("prediction settings changed");
        Ok(())
    }
}

impl<M> Handler<PredictInput<M::Input>> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, msg: PredictInput<M::Input>, _ctx: &mut Self::Context) {
        match self.predictor.predict(msg.input, now()) {
            Ok(Some(seq)) => {
                metrics::counter!(names::PREDICTION_INPUTS).increment(1);
                self.outbox.do_send(PredictedInput { seq, input: msg.input });
                self.publish();
            }
            Ok(None) => {}
            Err(e) => {
                metrics::counter!(names::PREDICTION_INPUTS_REFUSED).increment(1);
                tracing::debug!(error = %e, "input not predicted");
            }
        }
    }
}

impl<M> Handler<ServerStateReceived<M::State>> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, msg: ServerStateReceived<M::State>, _ctx: &mut Self::Context) {
        if msg.generation < self.generation {
            return; // a dead session's state
        }
        self.generation = msg.generation;
        let r = self.predictor.reconcile(&msg.state, msg.last_processed_seq);
        self.on_reconciliation(r);
        self.publish();
    }
}

impl<M> Handler<InputRejected> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, msg: InputRejected, _ctx: &mut Self::Context) {
        if let Rejection::RolledBack(c) = self.predictor.reject(msg.seq) {
            metrics::counter!(names::PREDICTION_REJECTIONS).increment(1);
            record_correction(c.distance, c.replayed);
            tracing::debug!(seq = msg.seq, reason = %msg.reason, correction = c.distance, "input rejected; rolled back");
            self.tell(PredictionEvent::Rejected { seq: msg.seq, reason: msg.reason });
            self.publish();
        }
    }
}

impl<M> Handler<ResyncPrediction> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, _msg: ResyncPrediction, _ctx: &mut Self::Context) {
        self.predictor.resync();
        self.publish();
    }
}

impl<M> Handler<GetPredictionStatus> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = MessageResult<GetPredictionStatus>;

    fn handle(&mut self, _msg: GetPredictionStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(PredictionStatus {
            synced: self.predictor.is_synced(),
            confirmed_seq: self.predictor.confirmed_seq(),
            next_seq: self.predictor.next_seq(),
            history_len: self.predictor.history().len(),
            stats: *self.predictor.stats(),
        })
    }
}

impl<M> Handler<StopPrediction> for PredictionActor<M>
where
    M: PredictionModel + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, _msg: StopPrediction, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
