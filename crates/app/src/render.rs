//! Server messages as JSON events, one object per line (the `spacelink` command's output).
//!
//! A plain function of a decoded message and the module's schema, so that it is
//! tested without a socket.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};
use spacelink_connection::codec::{self, DatabaseUpdate};
use spacelink_connection::sats::{AlgebraicValue, ProductValue};
use spacelink_connection::{ws, ModuleSchema, ResilienceEvent, ServerMessage, StateChanged};
use spacelink_reducers::{Outcome, ReducerResult};
use spacelink_sync::{Row, RowChange, RowsChanged};

/// Renders a state change.
pub fn state_event(change: &StateChanged) -> Json {
    json!({
        "event": "state",
        "generation": change.generation,
        "from": change.from.to_string(),
        "to": change.to.to_string(),
        "reason": change.reason,
        "retry_in_ms": change.retry_in.map(|d| d.as_millis() as u64),
    })
}

/// Renders a breaker, health or recovery event.
pub fn resilience_event(event: &ResilienceEvent) -> Json {
    match event {
        ResilienceEvent::BreakerChanged { from, to, open_until } => json!({
            "event": "breaker",
            "from": from.to_string(),
            "to": to.to_string(),
            "open_for_ms": open_until.map(|t| t.saturating_duration_since(std::time::Instant::now()).as_millis() as u64),
        }),
        ResilienceEvent::HealthChanged(health) => json!({
            "event": "health",
            "status": health.status.to_string(),
            "healthy": health.is_healthy,
            "latency_ms": health.latency.map(|l| l.as_secs_f64() * 1000.0),
            "packet_loss": health.packet_loss,
            "consecutive_failures": health.consecutive_failures,
        }),
        ResilienceEvent::AttemptStarted { generation, attempt } => {
            json!({ "event": "attempt", "generation": generation, "attempt": attempt })
        }
        ResilienceEvent::HandshakeRefused { generation, status, reason } => {
            json!({ "event": "handshake_refused", "generation": generation, "status": status, "reason": reason })
        }
        ResilienceEvent::SessionProven { generation } => json!({ "event": "session_proven", "generation": generation }),
        ResilienceEvent::RecoveryStarted => json!({ "event": "recovery_started" }),
        ResilienceEvent::RecoveryCompleted { success } => json!({ "event": "recovery_completed", "success": success }),
    }
}

/// Renders one server message as zero or more events.
pub fn message_events(schema: &ModuleSchema, message: &ServerMessage) -> Vec<Json> {
    match message {
        ServerMessage::IdentityToken(t) => vec![json!({
            "event": "identity",
            "identity": t.identity.to_hex().to_string(),
            "connection_id": t.connection_id.to_hex().to_string(),
        })],
        ServerMessage::SubscribeMultiApplied(applied) => {
            let mut events = vec![json!({
                "event": "subscribed",
                "query_id": applied.query_id.id,
                "server_micros": applied.total_host_execution_duration_micros,
            })];
            events.extend(update_events(schema, &applied.update, "initial"));
            events
        }
        ServerMessage::UnsubscribeMultiApplied(applied) => {
            vec![json!({ "event": "unsubscribed", "query_id": applied.query_id.id })]
        }
        ServerMessage::InitialSubscription(initial) => update_events(schema, &initial.database_update, "initial"),
        ServerMessage::SubscriptionError(e) => vec![json!({
            "event": "subscription_error",
            "query_id": e.query_id,
            "request_id": e.request_id,
            "error": e.error.to_string(),
        })],
        ServerMessage::TransactionUpdate(tx) => {
            let mut events = vec![reducer_event(tx)];
            if let ws::UpdateStatus::Committed(update) = &tx.status {
                events.extend(update_events(schema, update, "tx"));
            }
            events
        }
        ServerMessage::TransactionUpdateLight(tx) => update_events(schema, &tx.update, "tx"),
        ServerMessage::OneOffQueryResponse(response) => {
            if let Some(error) = &response.error {
                return vec![json!({ "event": "query_error", "error": error.to_string() })];
            }
            response
                .tables
                .iter()
                .map(|t| {
                    let rows: Vec<Json> =
                        codec::rows(&t.rows).map(|bytes| row_json(schema, &t.table_name, &bytes)).collect();
                    json!({ "event": "rows", "table": t.table_name.to_string(), "rows": rows })
                })
                .collect()
        }
        ServerMessage::SubscribeApplied(applied) => {
            vec![json!({ "event": "subscribed", "query_id": applied.query_id.id })]
        }
        ServerMessage::UnsubscribeApplied(applied) => {
            vec![json!({ "event": "unsubscribed", "query_id": applied.query_id.id })]
        }
    }
}

/// A transaction a subscriber sees: which reducer, who called it, how it ended.
pub fn reducer_event(tx: &ws::TransactionUpdate<ws::BsatnFormat>) -> Json {
    let (status, error) = match &tx.status {
        ws::UpdateStatus::Committed(_) => ("committed", None),
        ws::UpdateStatus::Failed(message) => ("failed", Some(message.to_string())),
        ws::UpdateStatus::OutOfEnergy => ("out_of_energy", Some("the module ran out of energy".to_string())),
    };
    json!({
        "event": "reducer",
        "reducer": tx.reducer_call.reducer_name.to_string(),
        "request_id": tx.reducer_call.request_id,
        "status": status,
        "error": error,
        "caller": tx.caller_identity.to_hex().to_string(),
        "server_micros": tx.total_host_execution_duration.to_micros(),
    })
}

/// The answer to the command's own call, from the reducer client.
pub fn call_result(result: &ReducerResult) -> Json {
    let (status, error) = match &result.outcome {
        Outcome::Committed => ("committed", None),
        Outcome::Failed(message) => ("failed", Some(message.clone())),
        Outcome::OutOfEnergy => ("out_of_energy", Some("the module ran out of energy".to_string())),
    };
    json!({
        "event": "reducer",
        "reducer": result.reducer,
        "request_id": result.request_id,
        "status": status,
        "error": error,
        "attempts": result.attempts,
        "server_micros": result.server_execution.as_micros() as u64,
        "round_trip_ms": result.round_trip.as_secs_f64() * 1000.0,
    })
}

/// Inserts, updates (a delete and an insert of the same primary key) and deletes.
pub fn update_events(schema: &ModuleSchema, update: &DatabaseUpdate, phase: &str) -> Vec<Json> {
    let mut events = Vec::new();
    for table in &update.tables {
        let name = table.table_name.to_string();
        let table_schema = schema.table(&name);
        for compressed in &table.updates {
            // The connection decompressed every update it could under its
            // configured limits; one left compressed did not decode under them.
            let ws::CompressableQueryUpdate::Uncompressed(query) = compressed else {
                let error = "the update did not decompress under the connection's decode limits";
                events.push(json!({ "event": "error", "table": name, "error": error }));
                continue;
            };
            let decode = |bytes: &[u8]| table_schema.map(|t| t.decode(bytes));
            // Deletes keyed by primary key, so that a matching insert becomes an update.
            let mut deleted: BTreeMap<AlgebraicValue, ProductValue> = BTreeMap::new();
            let mut unkeyed_deletes = Vec::new();
            for bytes in codec::rows(&query.deletes) {
                match (table_schema, decode(&bytes)) {
                    (Some(t), Some(Ok(row))) => match t.primary_key_of(&row) {
                        Some(key) => {
                            deleted.insert(key, row);
                        }
                        None => unkeyed_deletes.push(t.row_to_json(&row)),
                    },
                    _ => unkeyed_deletes.push(row_json(schema, &name, &bytes)),
                }
            }
            for bytes in codec::rows(&query.inserts) {
                match (table_schema, decode(&bytes)) {
                    (Some(t), Some(Ok(row))) => {
                        let old = t.primary_key_of(&row).and_then(|k| deleted.remove(&k));
                        events.push(match old {
                            Some(old) => json!({
                                "event": "update", "phase": phase, "table": name,
                                "old": t.row_to_json(&old), "new": t.row_to_json(&row),
                            }),
                            None => {
                                json!({ "event": "insert", "phase": phase, "table": name, "row": t.row_to_json(&row) })
                            }
                        });
                    }
                    _ => events.push(json!({
                        "event": "insert", "phase": phase, "table": name, "row": row_json(schema, &name, &bytes),
                    })),
                }
            }
            let remaining = deleted.into_values().filter_map(|row| table_schema.map(|t| t.row_to_json(&row)));
            for row in remaining.chain(unkeyed_deletes) {
                events.push(json!({ "event": "delete", "phase": phase, "table": name, "row": row }));
            }
        }
    }
    events
}

/// The sync actor's merged changes as events: each real change once
/// (`insert`, `update` with `old` and `new`, `delete`), with the table and the
/// row as SATS-JSON. `phase` says where the change comes from: `initial` (a
/// query set's first rows), `tx` (a transaction) or `reconciled` (the
/// difference a reconnect found between the cache and the server's state).
pub fn row_change_events(schema: &ModuleSchema, changed: &RowsChanged, initial: bool) -> Vec<Json> {
    let phase = if changed.reconciled {
        "reconciled"
    } else if initial {
        "initial"
    } else {
        "tx"
    };
    changed
        .changes
        .iter()
        .map(|change| match change {
            RowChange::Insert { table, row, .. } => json!({
                "event": "insert", "phase": phase, "table": &**table, "row": cached_row_json(schema, table, row),
            }),
            RowChange::Update { table, old, new, .. } => json!({
                "event": "update", "phase": phase, "table": &**table,
                "old": cached_row_json(schema, table, old), "new": cached_row_json(schema, table, new),
            }),
            RowChange::Delete { table, row, .. } => json!({
                "event": "delete", "phase": phase, "table": &**table, "row": cached_row_json(schema, table, row),
            }),
        })
        .collect()
}

/// A cached row as SATS-JSON (decoded at most once, by the cache), or why it did not decode.
fn cached_row_json(schema: &ModuleSchema, table: &str, row: &Row) -> Json {
    match (schema.table(table), row.value()) {
        (Some(t), Some(value)) => t.row_to_json(value),
        _ => json!({
            "undecoded_bytes": row.bytes().len(),
            "error": row.decode_error().unwrap_or("the table is not in the module's schema"),
        }),
    }
}

fn row_json(schema: &ModuleSchema, table: &str, bytes: &[u8]) -> Json {
    match schema.decode_row(table, bytes) {
        Ok(row) => schema.table(table).map_or(Json::Null, |t| t.row_to_json(&row)),
        Err(e) => json!({ "undecoded_bytes": bytes.len(), "error": e.to_string() }),
    }
}
