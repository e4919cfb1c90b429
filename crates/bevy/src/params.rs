//! The client from any system, as `SystemParam`s: [`Spacelink`] for reducer
//! calls (they return at once; the result comes as a
//! [`ReducerFinished`](crate::ReducerFinished) message), tables and status
//! (read-only, so systems that use it run in parallel), and
//! [`SpacelinkSubscriptions`] for keyed subscriptions. Generated bindings work
//! unchanged through [`Spacelink::client`] (`client.module_reducers()`, `client.db()`).

use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use spacelink::connection::lib::ser::Serialize;
use spacelink::connection::lib::Identity;
use spacelink::sync::SubscriptionId;
use spacelink::{Client, ReducerCall};

use crate::plugin::{SpacelinkClient, SubscriptionKeys};

/// The running client, for a system (absent before `PreStartup`, or if its settings did not load).
#[derive(SystemParam)]
pub struct Spacelink<'w> {
    client: Option<Res<'w, SpacelinkClient>>,
}

impl std::fmt::Debug for Spacelink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spacelink").field("started", &self.client.is_some()).finish()
    }
}

/// Keyed query sets, for a system: subscribe and unsubscribe by the game's key.
#[derive(SystemParam)]
pub struct SpacelinkSubscriptions<'w> {
    client: Option<Res<'w, SpacelinkClient>>,
    keys: ResMut<'w, SubscriptionKeys>,
}

impl std::fmt::Debug for SpacelinkSubscriptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpacelinkSubscriptions").field("keys", &*self.keys).finish()
    }
}

impl Spacelink<'_> {
    /// The client (generated bindings: `client.db()`, `client.module_reducers()`).
    pub fn client(&self) -> Option<&Client> {
        self.client.as_deref().map(|c| &c.0)
    }

    /// Whether a session is up and answered.
    pub fn is_active(&self) -> bool {
        self.client().is_some_and(Client::is_active)
    }

    /// Our identity, once a server told us.
    pub fn identity(&self) -> Option<Identity> {
        self.client().and_then(Client::try_identity)
    }

    /// Calls `reducer` with `args` (at once; offline calls wait in the queue).
    pub fn call<A: Serialize>(&self, reducer: &str, args: &A) -> Option<ReducerCall> {
        self.client().map(|c| c.reducers().call(reducer, args))
    }

    /// Calls `reducer` with sequence number `seq` (resent across reconnects, run
    /// once: the module drops repeats of a sequence number).
    pub fn call_sequenced<A: Serialize>(&self, reducer: &str, args: &A, seq: u32) -> Option<ReducerCall> {
        self.client().map(|c| c.reducers().call_sequenced(reducer, args, seq))
    }
}

impl SpacelinkSubscriptions<'_> {
    /// The query set the game named `key`, while it lives.
    pub fn id(&self, key: &str) -> Option<SubscriptionId> {
        self.keys.id(key)
    }

    /// Subscribes to `queries` under the game's `key` (kept across reconnects;
    /// [`SubscriptionApplied`](crate::SubscriptionApplied) names it). A key
    /// already in use is unsubscribed first. `false` if the client has not started.
    pub fn subscribe(&mut self, key: &str, queries: &[&str]) -> bool {
        let Some(client) = self.client.as_deref() else { return false };
        if let Some(old) = self.keys.id(key) {
            self.keys.by_id.remove(&old);
            client.unsubscribe(old);
        }
        self.keys.by_id.insert(client.subscribe(queries), key.to_string());
        true
    }

    /// Drops the query set the game named `key`.
    pub fn unsubscribe(&mut self, key: &str) {
        if let (Some(client), Some(id)) = (self.client.as_deref(), self.keys.id(key)) {
            self.keys.by_id.remove(&id);
            client.unsubscribe(id);
        }
    }
}
