//! What an actor that follows the connection's [`StateChanged`] knows about
//! the session: its generation, the last state, whether it is connected. A
//! plain value that every such actor can hold, so that "a new session", "the
//! session was lost" and "a dead session's leftovers" are decided one way.

use crate::messages::StateChanged;
use crate::state::ConnectionState;

/// What a state change meant to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// Session `generation` is up.
    Up {
        /// Its generation.
        generation: u64,
    },
    /// Session `generation`, which was up, is gone.
    Lost {
        /// Its generation.
        generation: u64,
    },
    /// Nothing changed for the session (or the change was an older session's).
    Unchanged,
}

/// The session as seen through [`StateChanged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTracker {
    generation: u64,
    state: ConnectionState,
    connected: bool,
}

impl Default for SessionTracker {
    fn default() -> Self {
        Self { generation: 0, state: ConnectionState::Disconnected, connected: false }
    }
}

impl SessionTracker {
    /// The newest generation seen connected (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The connection's last state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Whether session [`generation`](Self::generation) is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether something stamped `generation` belongs to the current session.
    pub fn is_current(&self, generation: u64) -> bool {
        generation == self.generation
    }

    /// Takes in a state change. A change from a generation older than the
    /// current one is a dead session's and changes nothing.
    pub fn observe(&mut self, change: &StateChanged) -> SessionChange {
        if change.generation < self.generation {
            return SessionChange::Unchanged;
        }
        self.state = change.to;
        if change.to == ConnectionState::Connected {
            self.generation = change.generation;
            self.connected = true;
            return SessionChange::Up { generation: change.generation };
        }
        if std::mem::replace(&mut self.connected, false) {
            return SessionChange::Lost { generation: self.generation };
        }
        SessionChange::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionState::*;

    fn change(generation: u64, from: ConnectionState, to: ConnectionState) -> StateChanged {
        StateChanged { generation, from, to, reason: None, retry_in: None }
    }

    #[test]
    fn sessions_come_and_go_by_generation() {
        let mut t = SessionTracker::default();
        assert_eq!(t.observe(&change(1, Disconnected, Connecting)), SessionChange::Unchanged);
        assert_eq!(t.observe(&change(1, Connecting, Connected)), SessionChange::Up { generation: 1 });
        assert!(t.is_connected() && t.is_current(1));
        assert_eq!(t.observe(&change(1, Connected, Reconnecting)), SessionChange::Lost { generation: 1 });
        assert_eq!(t.observe(&change(2, Reconnecting, Reconnecting)), SessionChange::Unchanged, "lost once");
        assert_eq!((t.state(), t.is_connected()), (Reconnecting, false));
        assert_eq!(t.observe(&change(3, Reconnecting, Connected)), SessionChange::Up { generation: 3 });
        assert!(!t.is_current(1));
    }

    #[test]
    fn an_older_sessions_change_is_ignored() {
        let mut t = SessionTracker::default();
        t.observe(&change(5, Connecting, Connected));
        assert_eq!(t.observe(&change(4, Connected, Reconnecting)), SessionChange::Unchanged);
        assert_eq!(t.observe(&change(4, Connecting, Connected)), SessionChange::Unchanged);
        assert_eq!((t.generation(), t.is_connected(), t.state()), (5, true, Connected));
    }
}
