//! The prediction actor's front door: intent-named methods, and reads of what
//! to draw without a round trip.

use actix::Addr;

use crate::actor::{PredictionActor, SharedView, View};
use crate::error::PredictionError;
use crate::messages::*;
use crate::model::PredictionModel;

/// A cheap, cloneable handle to the prediction of one entity.
pub struct PredictionHandle<M: PredictionModel + Unpin + 'static> {
    addr: Addr<PredictionActor<M>>,
    view: SharedView<M::State>,
}

impl<M: PredictionModel + Unpin + 'static> Clone for PredictionHandle<M> {
    fn clone(&self) -> Self {
        Self { addr: self.addr.clone(), view: self.view.clone() }
    }
}

impl<M: PredictionModel + Unpin + 'static> std::fmt::Debug for PredictionHandle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionHandle").finish_non_exhaustive()
    }
}

impl<M: PredictionModel + Unpin + 'static> PredictionHandle<M> {
    pub(crate) fn new(addr: Addr<PredictionActor<M>>, view: SharedView<M::State>) -> Self {
        Self { addr, view }
    }

    /// The player made `input`: it is applied at once and sent with its
    /// sequence number. Cheap: call it every frame from any thread.
    pub fn predict(&self, input: M::Input) {
        self.addr.do_send(PredictInput { input });
    }

    /// The server's state of the entity arrived, with the last input sequence
    /// it had processed, from session `generation`.
    pub fn server_state(&self, generation: u64, state: M::State, last_processed_seq: u32) {
        self.addr.do_send(ServerStateReceived { generation, state, last_processed_seq });
    }

    /// The server refused input `seq`: it is rolled back.
    pub fn input_rejected(&self, seq: u32, reason: impl Into<String>) {
        self.addr.do_send(InputRejected { seq, reason: reason.into() });
    }

    /// Forgets the unconfirmed inputs and shows the last server state.
    pub fn resync(&self) {
        self.addr.do_send(ResyncPrediction);
    }

    /// What to draw now (a copy), `None` before the first server state.
    pub fn shown(&self) -> Option<M::State> {
        self.with_view(|v| v.shown.clone()).flatten()
    }

    /// Reads the view (shown and predicted states, sequence numbers) in place.
    pub fn with_view<T>(&self, f: impl FnOnce(&View<M::State>) -> T) -> Option<T> {
        self.view.lock().ok().map(|v| f(&v))
    }

    /// The counters and where the prediction stands.
    pub async fn status(&self) -> Result<PredictionStatus, PredictionError> {
        self.addr.send(GetPredictionStatus).await.map_err(|_| PredictionError::ActorGone)
    }

    /// Changes the settings that can change while it runs (smoothing, snap
    /// threshold, tolerance, input delay, frame interval); refused, naming the
    /// field, for the fixed ones.
    pub async fn reconfigure(&self, config: crate::PredictionConfig) -> Result<(), PredictionError> {
        self.addr.send(ReconfigurePrediction(config)).await.map_err(|_| PredictionError::ActorGone)?
    }

    /// Where a settings watcher sends new settings (no generic type to name).
    pub fn reconfigure_recipient(&self) -> actix::Recipient<ReconfigurePrediction> {
        self.addr.clone().recipient()
    }

    /// Stops the actor.
    pub fn shutdown(&self) {
        self.addr.do_send(StopPrediction);
    }
}
