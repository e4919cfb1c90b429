//! Prediction the Bevy way: [`PredictionPlugin`] predicts the local player.
//!
//! Once a session is up and the schema known, it starts
//! [`Client::predict`](spacelink::Client::predict) for the entity the game
//! describes from its identity, and spawns a [`LocalPlayer`] entity with a
//! [`Predicted`] component. Each `FixedUpdate` step
//! ([`SpacelinkSet::Predict`]) applies the
//! input the game holds in [`PredictionInput`] at once and sends it as a
//! sequenced reducer call; the predicted entity's row changes reconcile it
//! (a refused call rolls its input back), and what that does arrives as
//! [`PredictionChanged`](crate::PredictionChanged) messages. In `PostUpdate`
//! ([`SpacelinkSet::Present`]) the smoothed state
//! is written to [`Predicted::shown`] for rendering. With a hot-reloaded
//! settings file, its new `prediction.*` settings reach the prediction.

use std::sync::Arc;

use bevy_app::{App, FixedUpdate, Plugin, PostUpdate, PreUpdate};
use bevy_ecs::prelude::*;
use spacelink::connection::lib::Identity;
use spacelink::prediction::{PredictionConfig, PredictionHandle, PredictionModel, ReconfigurePrediction};
use spacelink::prediction_link::PredictedEntity;
use spacelink::watcher::SettingsEvent;

use crate::plugin::{SpacelinkClient, SpacelinkSet};

/// A model the plugin can predict with (its state is a component's field).
pub trait BevyModel: PredictionModel<State: Sync, Input: Sync> + Clone + Unpin + Send + Sync + 'static {}
impl<M: PredictionModel<State: Sync, Input: Sync> + Clone + Unpin + Send + Sync + 'static> BevyModel for M {}

/// Describes the local player's entity on the server from our identity.
pub type DescribeEntity<M> = Arc<dyn Fn(Identity) -> PredictedEntity<M> + Send + Sync>;

/// Predicts the local player with model `M` (add [`SpacelinkPlugin`](crate::SpacelinkPlugin) too).
pub struct PredictionPlugin<M: BevyModel> {
    model: M,
    config: PredictionConfig,
    describe: DescribeEntity<M>,
}

impl<M: BevyModel> std::fmt::Debug for PredictionPlugin<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionPlugin").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<M: BevyModel> PredictionPlugin<M> {
    /// Predicts with `model` and `config` the entity `describe` names for our identity.
    pub fn new(
        model: M,
        config: PredictionConfig,
        describe: impl Fn(Identity) -> PredictedEntity<M> + Send + Sync + 'static,
    ) -> Self {
        Self { model, config, describe: Arc::new(describe) }
    }
}

impl<M: BevyModel> Plugin for PredictionPlugin<M> {
    fn build(&self, app: &mut App) {
        app.insert_resource(LocalPrediction::<M> {
            model: self.model.clone(),
            config: self.config.clone(),
            describe: self.describe.clone(),
            handle: None,
            entity: None,
            failed: false,
        })
        .insert_resource(PredictionInput::<M> { held: None })
        .configure_sets(FixedUpdate, SpacelinkSet::Predict)
        .add_systems(PreUpdate, start::<M>.after(SpacelinkSet::Drain).before(SpacelinkSet::Rows))
        .add_systems(PreUpdate, reconfigure::<M>.after(SpacelinkSet::Drain))
        .add_systems(FixedUpdate, step::<M>.in_set(SpacelinkSet::Predict))
        .add_systems(PostUpdate, present::<M>.in_set(SpacelinkSet::Present));
    }
}

/// The input the local player holds: applied and sent at each `FixedUpdate`
/// step while `Some` (the game's input systems set it, in `Update` or in
/// `FixedUpdate` before [`SpacelinkSet::Predict`]).
#[derive(Resource, Debug)]
pub struct PredictionInput<M: BevyModel> {
    /// The input of the next step(s); `None`: no input, nothing sent.
    pub held: Option<M::Input>,
}

/// Marks the local player's entity.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct LocalPlayer;

/// The local player's predicted state, smoothed, for rendering.
#[derive(Component, Debug, Clone)]
pub struct Predicted<M: BevyModel> {
    /// What to draw this frame.
    pub shown: M::State,
}

/// The running prediction (none until a session is up and the schema known).
#[derive(Resource)]
pub struct LocalPrediction<M: BevyModel> {
    model: M,
    config: PredictionConfig,
    describe: DescribeEntity<M>,
    handle: Option<PredictionHandle<M>>,
    entity: Option<Entity>,
    failed: bool,
}

impl<M: BevyModel> std::fmt::Debug for LocalPrediction<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPrediction")
            .field("started", &self.handle.is_some())
            .field("entity", &self.entity)
            .finish()
    }
}

impl<M: BevyModel> LocalPrediction<M> {
    /// The prediction, once started (its `shown()`, `status()`).
    pub fn handle(&self) -> Option<&PredictionHandle<M>> {
        self.handle.as_ref()
    }

    /// The configuration it runs (or will start) with, hot reload included.
    pub fn config(&self) -> &PredictionConfig {
        &self.config
    }

    /// The [`LocalPlayer`] entity, once the prediction started.
    pub fn entity(&self) -> Option<Entity> {
        self.entity
    }
}

/// Starts the prediction once we know who we are and the schema is known.
fn start<M: BevyModel>(
    mut commands: Commands<'_, '_>,
    client: Option<Res<'_, SpacelinkClient>>,
    mut local: ResMut<'_, LocalPrediction<M>>,
) {
    let Some(client) = client else { return };
    if local.handle.is_some() || local.failed || client.sync().is_none() {
        return;
    }
    let Some(identity) = client.try_identity() else { return };
    let entity = (local.describe)(identity);
    match client.predict(local.model.clone(), local.config.clone(), entity) {
        Ok(handle) => {
            local.handle = Some(handle);
            local.entity = Some(commands.spawn(LocalPlayer).id());
        }
        Err(error) => {
            tracing::error!(%error, "the local prediction did not start");
            local.failed = true;
        }
    }
}

/// Hot reload: the settings file's new `prediction.*` settings (smoothing,
/// snap threshold, input delay) reach the running prediction.
fn reconfigure<M: BevyModel>(
    mut local: ResMut<'_, LocalPrediction<M>>,
    mut changed: MessageReader<'_, '_, crate::SettingsChanged>,
) {
    for c in changed.read() {
        let SettingsEvent::Applied(settings) = &c.0 else { continue };
        match settings.prediction_config() {
            Ok(config) => {
                if let Some(handle) = &local.handle {
                    handle.reconfigure_recipient().do_send(ReconfigurePrediction(config.clone()));
                }
                // A prediction started later starts with them too.
                local.config = config;
            }
            Err(error) => tracing::warn!(%error, "the new prediction settings are refused"),
        }
    }
}

/// One fixed step: the held input, predicted and sent.
fn step<M: BevyModel>(local: Res<'_, LocalPrediction<M>>, input: Res<'_, PredictionInput<M>>) {
    if let (Some(handle), Some(held)) = (&local.handle, input.held) {
        handle.predict(held);
    }
}

/// The smoothed state, written for rendering (a change only when it moved).
fn present<M: BevyModel>(
    mut commands: Commands<'_, '_>,
    local: Res<'_, LocalPrediction<M>>,
    mut predicted: Query<'_, '_, &mut Predicted<M>>,
) {
    let (Some(handle), Some(entity)) = (&local.handle, local.entity) else { return };
    let Some(shown) = handle.shown() else { return };
    match predicted.get_mut(entity) {
        Ok(mut current) => {
            // `!=` rather than `>`: a NaN distance (a state the model cannot compare) is a change.
            #[allow(clippy::float_cmp)]
            if local.model.distance(&current.shown, &shown) != 0.0 {
                current.shown = shown;
            }
        }
        Err(_) => {
            commands.entity(entity).insert(Predicted::<M> { shown });
        }
    }
}
