//! The connection's state machine: a plain enum with `next(event)`.

use std::fmt;

/// Where the connection is in its life (the design's `ConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Not connected and not trying: before the first start, or after `shutdown`.
    Disconnected,
    /// The first attempt of a (re)start is under way.
    Connecting,
    /// A WebSocket session is up and answering.
    Connected,
    /// A session was lost or an attempt failed; the next attempt is scheduled or under way.
    Reconnecting,
    /// Gave up after the retry policy's attempts; waits for an explicit reconnect.
    Failed,
}

/// What happens to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionEvent {
    /// An attempt to open a session starts.
    AttemptStarted,
    /// The WebSocket handshake succeeded.
    Established,
    /// An attempt failed before a session was up.
    AttemptFailed,
    /// A live session ended (error, close, dead peer).
    SessionLost,
    /// The retry policy gave up.
    GaveUp,
    /// The application asked for the connection to close and stay closed.
    Shutdown,
}

/// An event that has no meaning in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no transition from {from:?} on {event:?}")]
pub struct InvalidTransition {
    /// The state the machine was in.
    pub from: ConnectionState,
    /// The event it could not take.
    pub event: ConnectionEvent,
}

impl ConnectionState {
    /// The state after `event`, or an error if `event` cannot happen now.
    pub fn next(self, event: ConnectionEvent) -> Result<ConnectionState, InvalidTransition> {
        use ConnectionEvent as E;
        use ConnectionState as S;
        let to = match (self, event) {
            (_, E::Shutdown) => S::Disconnected,
            (S::Disconnected | S::Failed, E::AttemptStarted) => S::Connecting,
            (S::Connecting | S::Reconnecting, E::AttemptStarted) => self,
            (S::Connecting | S::Reconnecting, E::Established) => S::Connected,
            (S::Connecting | S::Reconnecting, E::AttemptFailed) => S::Reconnecting,
            (S::Connected, E::SessionLost) => S::Reconnecting,
            (S::Connecting | S::Reconnecting, E::GaveUp) => S::Failed,
            (from, event) => return Err(InvalidTransition { from, event }),
        };
        Ok(to)
    }

    /// Whether a session is up.
    pub fn is_connected(self) -> bool {
        self == ConnectionState::Connected
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Failed => "failed",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionEvent as E;
    use ConnectionState as S;

    #[test]
    fn a_normal_life() {
        let s = S::Disconnected.next(E::AttemptStarted).unwrap();
        assert_eq!(s, S::Connecting);
        let s = s.next(E::Established).unwrap();
        assert_eq!(s, S::Connected);
        let s = s.next(E::SessionLost).unwrap();
        assert_eq!(s, S::Reconnecting);
        let s = s.next(E::AttemptStarted).unwrap().next(E::AttemptFailed).unwrap();
        assert_eq!(s, S::Reconnecting);
        assert_eq!(s.next(E::GaveUp).unwrap(), S::Failed);
        assert_eq!(S::Failed.next(E::AttemptStarted).unwrap(), S::Connecting);
        assert_eq!(S::Connected.next(E::Shutdown).unwrap(), S::Disconnected);
    }

    #[test]
    fn impossible_events_are_refused() {
        assert!(S::Connected.next(E::Established).is_err());
        assert!(S::Disconnected.next(E::SessionLost).is_err());
        assert!(S::Failed.next(E::Established).is_err());
        assert!(S::Connected.next(E::GaveUp).is_err());
    }
}
