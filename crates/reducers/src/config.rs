//! The reducer client's settings.

use std::time::Duration;

use crate::ledger::OverflowPolicy;

/// Settings of the reducer client, with defaults that suit a game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReducerConfig {
    /// Largest encoded arguments of one call, in bytes (default 64 KiB); a
    /// larger call fails at once and is never sent.
    pub max_args_size: usize,
    /// Calls held at once, queued and in flight (default 10 000).
    pub queue_capacity: usize,
    /// What a full queue does with a new call (default: refuse it).
    pub overflow: OverflowPolicy,
    /// Calls sent and not yet answered at once (default 256): more wait in the
    /// queue. Must stay below the connection's `outbound_capacity` (the app
    /// checks), so that the socket's queue never refuses a call while later
    /// ones get through.
    pub max_in_flight: usize,
    /// How long a committed call made with a sequence number
    /// (`call_sequenced`) is kept after the server was last heard, to be sent
    /// again first if the session is lost (default 2 s; zero keeps nothing).
    /// SpacetimeDB 1.3 answers a call before its commit log is flushed (every
    /// 500 ms), so a server killed just after answering can restart without
    /// the call; the module runs the replay, or answers it as a repeat. The
    /// game hears each call's result once.
    pub replay_window: Duration,
}

impl Default for ReducerConfig {
    fn default() -> Self {
        Self {
            max_args_size: 64 * 1024,
            queue_capacity: 10_000,
            overflow: OverflowPolicy::RejectNew,
            max_in_flight: 256,
            replay_window: Duration::from_secs(2),
        }
    }
}
