//! A scripted stand-in for the connection actor, for unit tests of the crates
//! that listen to it.
//!
//! A consumer is wired to the connection through `Recipient`s only, so a test
//! can hand it a [`ScriptedConnection`] instead: it plays a script of server
//! messages (really encoded and decoded by the codec, as if they came off the
//! wire) and state changes to the same recipients, and records every
//! `SendMessage` it is given.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;

use crate::codec::{self, ClientMessage, Compression, DecodeLimits, ServerMessage};
use crate::error::ConnectionError;
use crate::messages::*;
use crate::state::ConnectionState;

/// One step of a script.
pub enum ScriptStep {
    /// The connection changes state.
    State(ConnectionState),
    /// The server sends this message, compressed this way on the wire.
    Message(Box<ServerMessage>, Compression),
}

/// Plays a script to the listeners, then stays around to record what it is sent.
pub struct ScriptedConnection {
    script: Vec<ScriptStep>,
    listeners: Listeners,
    generation: u64,
    state: ConnectionState,
    sent: Arc<Mutex<Vec<ClientMessage>>>,
}

impl ScriptedConnection {
    /// A fake that will play `script` to `listeners` once started, as session `generation`.
    pub fn new(script: Vec<ScriptStep>, listeners: Listeners, generation: u64) -> Self {
        Self { script, listeners, generation, state: ConnectionState::Disconnected, sent: Arc::default() }
    }

    /// The messages sent to the fake so far, shared.
    pub fn sent(&self) -> Arc<Mutex<Vec<ClientMessage>>> {
        self.sent.clone()
    }
}

impl std::fmt::Debug for ScriptStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptStep::State(s) => write!(f, "State({s:?})"),
            ScriptStep::Message(m, c) => write!(f, "Message({}, {c:?})", codec::server_message_kind(m)),
        }
    }
}

impl std::fmt::Debug for ScriptedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedConnection")
            .field("script", &self.script)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Actor for ScriptedConnection {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        for step in std::mem::take(&mut self.script) {
            match step {
                ScriptStep::State(to) => {
                    let change = StateChanged {
                        generation: self.generation,
                        from: self.state,
                        to,
                        reason: None,
                        retry_in: None,
                    };
                    self.state = to;
                    for r in &self.listeners.states {
                        r.do_send(change.clone());
                    }
                }
                ScriptStep::Message(message, compression) => {
                    // Through the real codec, both ways.
                    let frame = match codec::encode_server_message(&message, compression) {
                        Ok(frame) => frame,
                        Err(e) => panic!("script message does not encode: {e}"),
                    };
                    let mut decoded = match codec::decode_server_message(&frame, DecodeLimits::default()) {
                        Ok(decoded) => decoded,
                        Err(e) => panic!("script message does not decode: {e}"),
                    };
                    // As the session's reader does: listeners get updates decompressed.
                    codec::decompress_updates(&mut decoded, DecodeLimits::default());
                    let event = ServerMessageReceived {
                        generation: self.generation,
                        received_at: Instant::now(),
                        wire_size: frame.len(),
                        message: Arc::new(decoded),
                    };
                    for r in &self.listeners.messages {
                        r.do_send(event.clone());
                    }
                    if codec::carries_rows(&event.message) {
                        for r in &self.listeners.row_messages {
                            r.do_send(event.clone());
                        }
                    }
                }
            }
        }
    }
}

impl Handler<SendMessage> for ScriptedConnection {
    type Result = Result<(), ConnectionError>;

    fn handle(&mut self, msg: SendMessage, _ctx: &mut Self::Context) -> Self::Result {
        if !self.state.is_connected() {
            return Err(ConnectionError::NotConnected { state: self.state });
        }
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(msg.message);
        }
        Ok(())
    }
}
