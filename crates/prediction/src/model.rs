//! What the game tells the predictor about its state and inputs.

use std::fmt::Debug;

/// The game's model of the predicted entity: how an input changes its state,
/// how far apart two states are, and how to move a shown state toward a target.
///
/// The predictor applies inputs with this model at once, keeps each input with
/// the state it led to, and, when the server's state arrives, compares, resets
/// and replays with it. Everything here runs on the hot path (every input,
/// every replay, every frame): it should not allocate. `Clone::clone_from` of
/// `State` is used to overwrite states in place, so a state holding heap data
/// keeps its buffers.
pub trait PredictionModel {
    /// The predicted part of the game's state (e.g. a player's position).
    type State: Clone + Debug + Send + Unpin + 'static;
    /// One input of the player (e.g. a step), as sent to the server.
    type Input: Copy + Debug + Send + Unpin + 'static;

    /// Applies `input` to `state` as the client believes the server will.
    fn apply(&self, state: &mut Self::State, input: &Self::Input);

    /// How far apart two states are, in the game's units (used for the
    /// accuracy check, the snap threshold and the convergence of smoothing).
    fn distance(&self, a: &Self::State, b: &Self::State) -> f32;

    /// Moves `shown` the fraction `t` (0 to 1) of the way toward `target`: a
    /// linear interpolation for positions. `t` is 1 for "be there".
    fn blend(&self, shown: &mut Self::State, target: &Self::State, t: f32);
}
