//! The reducer client's settings.

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
}

impl Default for ReducerConfig {
    fn default() -> Self {
        Self {
            max_args_size: 64 * 1024,
            queue_capacity: 10_000,
            overflow: OverflowPolicy::RejectNew,
            max_in_flight: 256,
        }
    }
}
