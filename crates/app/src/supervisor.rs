//! The root of the supervisor tree.
//!
//! Today it has one child, the connection actor, which runs under an actix
//! `Supervisor`: when the connection fails it stops, and its restart (after the
//! retry policy's delay) is the reconnection. The tree will grow: the auth actor
//! starts before the connection and hands it a token; the sync and reducer
//! actors start after it and listen to it. Every child is wired with the
//! `Recipient`s it is given here, never with another crate's `Addr`, so a test
//! can start any child as a fake.

use actix::prelude::*;
use spacelink_connection::{
    ConnectionActor, ConnectionConfig, ConnectionError, ConnectionHandle, ConnectionState, Listeners, StateChanged,
};

/// The supervisor actor: starts the children and watches their state.
#[derive(Debug)]
pub struct Supervisor {
    connection: Option<ConnectionHandle>,
    last_state: ConnectionState,
}

/// A running spacelink: the supervisor and the handles of its children.
#[derive(Debug, Clone)]
pub struct Spacelink {
    /// The supervisor.
    pub supervisor: Addr<Supervisor>,
    /// The connection.
    pub connection: ConnectionHandle,
}

impl Spacelink {
    /// Validates `config`, starts the supervisor tree and connects. Call inside an actix system.
    ///
    /// `listeners` hear everything the connection tells (server messages, state
    /// changes, identities); the supervisor listens to state changes too.
    pub fn start(config: ConnectionConfig, mut listeners: Listeners) -> Result<Self, ConnectionError> {
        let mut outcome = None;
        let supervisor = Supervisor::create(|ctx| {
            listeners.states.push(ctx.address().recipient());
            let result = ConnectionActor::start_supervised(config, listeners);
            let connection = result.as_ref().ok().cloned();
            outcome = Some(result);
            Supervisor { connection, last_state: ConnectionState::Disconnected }
        });
        match outcome {
            Some(Ok(connection)) => Ok(Self { supervisor, connection }),
            Some(Err(e)) => {
                supervisor.do_send(StopTree);
                Err(e)
            }
            None => Err(ConnectionError::ActorGone),
        }
    }

    /// Closes the connection and stops the tree.
    pub fn shutdown(&self) {
        self.supervisor.do_send(StopTree);
    }
}

/// Stop the tree: shut the children down, then the supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopTree;

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _ctx: &mut Self::Context) {
        self.last_state = msg.to;
        if msg.to == ConnectionState::Failed {
            tracing::warn!(reason = msg.reason.as_deref(), "connection failed; waiting for an explicit reconnect");
        }
    }
}

impl Handler<StopTree> for Supervisor {
    type Result = ();

    fn handle(&mut self, _msg: StopTree, ctx: &mut Self::Context) {
        if let Some(connection) = &self.connection {
            connection.shutdown();
        }
        ctx.stop();
    }
}
