//! The names of spacelink's `metrics` series, in one place.
//!
//! Every crate records through the `metrics` facade with these names; the
//! telemetry crate's recorder turns the ones marked *(window)* into its
//! windowed statistics and alerts, and the Prometheus exporter serves them all.
//! Units are in the name: `_seconds`, `_bytes`, `_total` for counters.
//! Labels are few and bounded: `reducer` (the module's reducer names),
//! `outcome`, `kind`.

/// Histogram: one WebSocket ping's round trip. *(window: latency)*
pub const CONNECTION_RTT_SECONDS: &str = "spacelink_connection_rtt_seconds";
/// Gauge: the smoothed round trip.
pub const CONNECTION_LATENCY_SECONDS: &str = "spacelink_connection_latency_seconds";
/// Gauge: the connection state as a number (0 disconnected … 4 failed).
pub const CONNECTION_STATE: &str = "spacelink_connection_state";
/// Gauge: 1 while the link is healthy.
pub const CONNECTION_HEALTHY: &str = "spacelink_connection_healthy";
/// Gauge: 1 while the circuit breaker is open.
pub const CONNECTION_BREAKER_OPEN: &str = "spacelink_connection_breaker_open";
/// Counter: the breaker opened. *(window)*
pub const CONNECTION_BREAKER_TRIPS: &str = "spacelink_connection_breaker_trips_total";
/// Counter: connection attempts.
pub const CONNECTION_ATTEMPTS: &str = "spacelink_connection_attempts_total";
/// Counter: attempts that failed before a session was up.
pub const CONNECTION_FAILED_ATTEMPTS: &str = "spacelink_connection_failed_attempts_total";
/// Counter: sessions established.
pub const CONNECTION_SESSIONS: &str = "spacelink_connection_sessions_total";
/// Counter: sessions established after an earlier one was lost. *(window: reconnect rate)*
pub const CONNECTION_RECONNECTS: &str = "spacelink_connection_reconnects_total";
/// Counter: live sessions lost.
pub const CONNECTION_SESSIONS_LOST: &str = "spacelink_connection_sessions_lost_total";
/// Counter: sessions declared dead for silence.
pub const CONNECTION_DEAD_PEER: &str = "spacelink_connection_dead_peer_total";
/// Counter: pings never answered.
pub const CONNECTION_HEARTBEATS_LOST: &str = "spacelink_connection_heartbeats_lost_total";
/// Counter: bytes of frames received. *(window: bytes per second)*
pub const CONNECTION_BYTES_RECEIVED: &str = "spacelink_connection_bytes_received_total";
/// Counter: frames received.
pub const CONNECTION_MESSAGES_RECEIVED: &str = "spacelink_connection_messages_received_total";
/// Counter: bytes of frames sent.
pub const CONNECTION_BYTES_SENT: &str = "spacelink_connection_bytes_sent_total";
/// Counter: frames sent.
pub const CONNECTION_MESSAGES_SENT: &str = "spacelink_connection_messages_sent_total";
/// Counter: frames that could not be decoded.
pub const CONNECTION_DECODE_ERRORS: &str = "spacelink_connection_decode_errors_total";
/// Counter: restarts of the connection actor.
pub const CONNECTION_RESTARTS: &str = "spacelink_connection_restarts_total";

/// Counter (label `reducer`): calls accepted. *(window)*
pub const REDUCER_CALLS: &str = "spacelink_reducer_calls_total";
/// Counter (labels `reducer`, `outcome`): how calls ended; `outcome` is one of
/// the `OUTCOME_*` values. *(window: success rate)*
pub const REDUCER_OUTCOMES: &str = "spacelink_reducer_outcomes_total";
/// Counter (label `reducer`): calls that did not commit.
pub const REDUCER_FAILURES: &str = "spacelink_reducer_failures_total";
/// Counter (label `reducer`): calls given up (outcome unknown or dropped).
pub const REDUCER_ABANDONED: &str = "spacelink_reducer_abandoned_total";
/// Histogram (label `reducer`): call to result.
pub const REDUCER_ROUND_TRIP_SECONDS: &str = "spacelink_reducer_round_trip_seconds";
/// Gauge: calls queued, not yet sent. *(window: last value)*
pub const REDUCER_QUEUE_DEPTH: &str = "spacelink_reducer_queue_depth";
/// `outcome` label: the reducer committed.
pub const OUTCOME_COMMITTED: &str = "committed";
/// `outcome` label: the reducer failed (its error).
pub const OUTCOME_FAILED: &str = "failed";
/// `outcome` label: the module ran out of energy.
pub const OUTCOME_OUT_OF_ENERGY: &str = "out_of_energy";
/// `outcome` label: the session died with the call unconfirmed; it may have run.
pub const OUTCOME_UNKNOWN: &str = "unknown";
/// `outcome` label: dropped from a full queue.
pub const OUTCOME_DROPPED: &str = "dropped";

/// Counter: transactions (subscription updates) applied to the cache. *(window: updates per second)*
pub const SYNC_TRANSACTIONS_APPLIED: &str = "spacelink_sync_transactions_applied_total";
/// Counter: rows applied to the cache. *(window: rows per second)*
pub const SYNC_ROWS_APPLIED: &str = "spacelink_sync_rows_applied_total";
/// Counter: bytes of rows applied to the cache.
pub const SYNC_BYTES_APPLIED: &str = "spacelink_sync_bytes_applied_total";
/// Counter: deletes of rows the cache did not hold.
pub const SYNC_DELETES_IGNORED: &str = "spacelink_sync_deletes_ignored_total";
/// Counter (label `kind`: insert, update, delete): changes told to the game.
pub const SYNC_CHANGES: &str = "spacelink_sync_changes_total";
/// Counter: reconciliations of the cache after a reconnect.
pub const SYNC_RECONCILES: &str = "spacelink_sync_reconciles_total";
/// Histogram: subscribe to applied.
pub const SYNC_SUBSCRIPTION_LATENCY_SECONDS: &str = "spacelink_sync_subscription_latency_seconds";
/// Counter: subscriptions the server refused.
pub const SYNC_SUBSCRIPTION_ERRORS: &str = "spacelink_sync_subscription_errors_total";

/// Counter: predictions checked against the server's state. *(window: accuracy)*
pub const PREDICTION_CHECKS: &str = "spacelink_prediction_checks_total";
/// Counter: checked predictions that were wrong (a correction was needed). *(window: accuracy)*
pub const PREDICTION_MISPREDICTIONS: &str = "spacelink_prediction_mispredictions_total";
/// Counter: reconciliations (rollback and replay). *(window)*
pub const PREDICTION_RECONCILIATIONS: &str = "spacelink_prediction_reconciliations_total";
/// Gauge: predicted inputs not yet confirmed by the server.
pub const PREDICTION_PENDING_INPUTS: &str = "spacelink_prediction_pending_inputs";
