//! The names of spacelink's `metrics` series, in one place.
//!
//! Every crate records through the `metrics` facade with these names, and
//! only these: a name written anywhere else would be a second spelling of a
//! series, which a reader of the first never sees (the tidy test refuses a
//! metric name literal outside this file). The telemetry crate's recorder
//! turns the ones marked *(window)* into its windowed statistics and alerts,
//! and the Prometheus exporter serves them all. Units are in the name:
//! `_seconds`, `_bytes`, `_total` for counters. Labels are few and bounded,
//! their keys are the `LABEL_*` constants: `reducer` (the module's reducer
//! names), `outcome` (the `OUTCOME_*` values), `kind` (the `KIND_*` values),
//! `table` (the module's table names), `child` (the supervisor tree's
//! children). [`ALL`] lists every series once.

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
/// Counter: sessions whose `IdentityToken` did not arrive in time.
pub const CONNECTION_IDENTITY_TIMEOUTS: &str = "spacelink_connection_identity_timeouts_total";
/// Counter: sessions that proved themselves (identified, then up and healthy for a while).
pub const CONNECTION_SESSIONS_PROVEN: &str = "spacelink_connection_sessions_proven_total";

/// Counter: sessions whose token the server accepted.
pub const AUTH_AUTHENTICATED: &str = "spacelink_auth_authenticated_total";
/// Counter: tokens the server refused.
pub const AUTH_REJECTED: &str = "spacelink_auth_rejected_total";
/// Counter: new tokens obtained from the provider.
pub const AUTH_REFRESHES: &str = "spacelink_auth_refreshes_total";
/// Counter: the provider failed to give a new token.
pub const AUTH_REFRESH_FAILURES: &str = "spacelink_auth_refresh_failures_total";
/// Counter: credentials kept in memory only (the store failed).
pub const AUTH_CREDENTIALS_IN_MEMORY: &str = "spacelink_auth_credentials_in_memory_total";
/// Counter: writes to the credential store that failed.
pub const AUTH_STORE_FAILURES: &str = "spacelink_auth_store_failures_total";

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
/// Counter (label `reducer`): fire-and-forget calls refused (queue full, invalid).
pub const REDUCER_FIRE_REFUSED: &str = "spacelink_reducer_fire_refused_total";
/// Counter (labels `reducer`, `outcome`): committed calls sent again after a
/// lost session (`replay_window`), by how the server answered.
pub const REDUCER_REPLAYS: &str = "spacelink_reducer_replays_total";

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
/// Counter: snapshots the writer copied because a reader still held the spare one.
pub const SYNC_SNAPSHOT_COPIES: &str = "spacelink_sync_snapshot_copies_total";
/// Counter (label `table`): cached rows that do not decode as their table's type.
pub const SYNC_ROW_DECODE_ERRORS: &str = "spacelink_sync_row_decode_errors_total";
/// Counter: updates the cache could not take (not decoded under the
/// connection's limits), each followed by a resubscription of the query sets.
pub const SYNC_RESUBSCRIPTIONS: &str = "spacelink_sync_resubscriptions_total";
/// `kind` label of [`SYNC_CHANGES`]: a row inserted.
pub const KIND_INSERT: &str = "insert";
/// `kind` label of [`SYNC_CHANGES`]: a row updated.
pub const KIND_UPDATE: &str = "update";
/// `kind` label of [`SYNC_CHANGES`]: a row deleted.
pub const KIND_DELETE: &str = "delete";

/// Counter: predictions checked against the server's state, right or wrong. *(window: accuracy)*
pub const PREDICTION_CHECKS: &str = "spacelink_prediction_checks_total";
/// Counter: checked predictions that were wrong (a correction was needed);
/// each is also one of [`PREDICTION_CHECKS`]. *(window: accuracy)*
pub const PREDICTION_MISPREDICTIONS: &str = "spacelink_prediction_mispredictions_total";
/// Counter: reconciliations (rollback and replay). *(window)*
pub const PREDICTION_RECONCILIATIONS: &str = "spacelink_prediction_reconciliations_total";
/// Gauge: predicted inputs not yet confirmed by the server.
pub const PREDICTION_PENDING_INPUTS: &str = "spacelink_prediction_pending_inputs";
/// Gauge: entries in the prediction history.
pub const PREDICTION_HISTORY: &str = "spacelink_prediction_history";
/// Counter: inputs applied and sent.
pub const PREDICTION_INPUTS: &str = "spacelink_prediction_inputs_total";
/// Counter: inputs the predictor refused (not synced, history full).
pub const PREDICTION_INPUTS_REFUSED: &str = "spacelink_prediction_inputs_refused_total";
/// Counter: inputs the server rejected, rolled back.
pub const PREDICTION_REJECTIONS: &str = "spacelink_prediction_rejections_total";
/// Counter: resynchronisations after a gap in the input sequence.
pub const PREDICTION_RESYNCS: &str = "spacelink_prediction_resyncs_total";
/// Gauge: the predictor's own accuracy since it started (0 to 1).
pub const PREDICTION_ACCURACY: &str = "spacelink_prediction_accuracy";
/// Histogram: inputs replayed by a reconciliation.
pub const PREDICTION_REPLAY_DEPTH: &str = "spacelink_prediction_replay_depth";
/// Histogram: how far a correction moved the predicted state (the model's distance).
pub const PREDICTION_CORRECTION_DISTANCE: &str = "spacelink_prediction_correction_distance";

/// Counter (label `child`): restarts of a child of the supervisor tree.
pub const SUPERVISOR_RESTARTS: &str = "spacelink_supervisor_restarts_total";
/// Counter (label `child`): children given up after too many restarts.
pub const SUPERVISOR_GIVEN_UP: &str = "spacelink_supervisor_given_up_total";
/// Gauge: events queued for the game's next `frame_tick`.
pub const CLIENT_EVENTS_PENDING: &str = "spacelink_client_events_pending";
/// Counter: rows that do not decode as the type a `Table<T>` registered.
pub const CLIENT_ROW_DECODE_ERRORS: &str = "spacelink_client_row_decode_errors_total";

/// Label key: the reducer's name.
pub const LABEL_REDUCER: &str = "reducer";
/// Label key: how a reducer call ended (`OUTCOME_*`).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label key: the kind of a row change (`KIND_*`).
pub const LABEL_KIND: &str = "kind";
/// Label key: the table's name.
pub const LABEL_TABLE: &str = "table";
/// Label key: the supervisor tree's child.
pub const LABEL_CHILD: &str = "child";

/// Every series above, once.
pub const ALL: &[&str] = &[
    CONNECTION_RTT_SECONDS,
    CONNECTION_LATENCY_SECONDS,
    CONNECTION_STATE,
    CONNECTION_HEALTHY,
    CONNECTION_BREAKER_OPEN,
    CONNECTION_BREAKER_TRIPS,
    CONNECTION_ATTEMPTS,
    CONNECTION_FAILED_ATTEMPTS,
    CONNECTION_SESSIONS,
    CONNECTION_RECONNECTS,
    CONNECTION_SESSIONS_LOST,
    CONNECTION_DEAD_PEER,
    CONNECTION_HEARTBEATS_LOST,
    CONNECTION_BYTES_RECEIVED,
    CONNECTION_MESSAGES_RECEIVED,
    CONNECTION_BYTES_SENT,
    CONNECTION_MESSAGES_SENT,
    CONNECTION_DECODE_ERRORS,
    CONNECTION_RESTARTS,
    CONNECTION_IDENTITY_TIMEOUTS,
    CONNECTION_SESSIONS_PROVEN,
    AUTH_AUTHENTICATED,
    AUTH_REJECTED,
    AUTH_REFRESHES,
    AUTH_REFRESH_FAILURES,
    AUTH_CREDENTIALS_IN_MEMORY,
    AUTH_STORE_FAILURES,
    REDUCER_CALLS,
    REDUCER_OUTCOMES,
    REDUCER_FAILURES,
    REDUCER_ABANDONED,
    REDUCER_ROUND_TRIP_SECONDS,
    REDUCER_QUEUE_DEPTH,
    REDUCER_FIRE_REFUSED,
    REDUCER_REPLAYS,
    SYNC_TRANSACTIONS_APPLIED,
    SYNC_ROWS_APPLIED,
    SYNC_BYTES_APPLIED,
    SYNC_DELETES_IGNORED,
    SYNC_CHANGES,
    SYNC_RECONCILES,
    SYNC_SUBSCRIPTION_LATENCY_SECONDS,
    SYNC_SUBSCRIPTION_ERRORS,
    SYNC_SNAPSHOT_COPIES,
    SYNC_ROW_DECODE_ERRORS,
    SYNC_RESUBSCRIPTIONS,
    PREDICTION_CHECKS,
    PREDICTION_MISPREDICTIONS,
    PREDICTION_RECONCILIATIONS,
    PREDICTION_PENDING_INPUTS,
    PREDICTION_HISTORY,
    PREDICTION_INPUTS,
    PREDICTION_INPUTS_REFUSED,
    PREDICTION_REJECTIONS,
    PREDICTION_RESYNCS,
    PREDICTION_ACCURACY,
    PREDICTION_REPLAY_DEPTH,
    PREDICTION_CORRECTION_DISTANCE,
    SUPERVISOR_RESTARTS,
    SUPERVISOR_GIVEN_UP,
    CLIENT_EVENTS_PENDING,
    CLIENT_ROW_DECODE_ERRORS,
];

/// Whether `name` is spelled as a series of ours: `spacelink_`, then
/// lower-case words of ASCII letters and digits joined by single `_`.
pub fn is_well_formed(name: &str) -> bool {
    name.strip_prefix("spacelink_").is_some_and(|rest| {
        rest.split('_')
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_name_is_listed_once_and_well_formed() {
        let mut seen = HashSet::new();
        for name in ALL {
            assert!(is_well_formed(name), "`{name}` is not a well-formed series name");
            assert!(seen.insert(*name), "`{name}` is listed twice, or two constants share it");
        }
        // Every constant of this file naming a series is in `ALL`.
        let source = include_str!("metric_names.rs");
        let declared = source.matches(": &str = \"spacelink_").count();
        assert_eq!(declared, ALL.len(), "a series constant is missing from `ALL`");
    }

    #[test]
    fn counters_and_only_they_end_in_total() {
        let mut kinds = 0;
        let mut first_doc: Option<&str> = None;
        for line in include_str!("metric_names.rs").lines().map(str::trim) {
            if let Some(doc) = line.strip_prefix("/// ") {
                first_doc.get_or_insert(doc);
                continue;
            }
            if let Some((_, value)) = line.split_once(": &str = \"spacelink_") {
                let name = value.trim_end_matches("\";");
                let counter = first_doc.is_some_and(|d| d.starts_with("Counter"));
                assert_eq!(counter, name.ends_with("_total"), "spacelink_{name}: its doc says what it is");
                kinds += 1;
            }
            first_doc = None;
        }
        assert_eq!(kinds, ALL.len());
    }

    #[test]
    fn well_formed_names() {
        assert!(is_well_formed("spacelink_a_b2_total"));
        for bad in ["spacelink_", "spacelink__x", "spacelink_X", "spacelink_a-b", "other_x", "spacelink_x_"] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
