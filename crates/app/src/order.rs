//! The order in which `frame_tick` delivers a reducer's result: after the row
//! events of its transaction (the official SDK's guarantee: a result callback
//! finds the call's rows in the cache).
//!
//! The result comes from the reducer actor and the rows from the sync actor's
//! thread, so either can reach the game's queue first. [`ResultOrder`] holds a
//! result whose transaction carried rows until that transaction's
//! [`Event::Transaction`] (which follows its rows) has gone by, matched by
//! request id and our connection id; a transaction that went by first is
//! remembered for its result. A held result is let go when its session ends (its
//! rows will not come) or after [`HOLD_LIMIT`], so nothing waits for ever.
//! Plain logic: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use spacelink_connection::lib::ConnectionId;

use crate::events::Event;

/// How long a result may wait for its transaction's rows before it is
/// delivered anyway.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(2);
/// How many of our own transactions are remembered for results that come after their rows.
const SEEN: usize = 256;

/// Results waiting for their rows, and our transactions whose rows went by.
#[derive(Debug, Default)]
pub(crate) struct ResultOrder {
    /// Held results: when they came, their request id, the event.
    held: Vec<(Instant, u32, Event)>,
    /// Request ids of our transactions whose rows went by (newest last).
    seen: VecDeque<u32>,
}

impl ResultOrder {
    /// Moves `events` (in queue order) to `out` in delivery order. `ours` is
    /// this client's connection id, once known.
    pub(crate) fn sort(
        &mut self,
        events: impl Iterator<Item = Event>,
        ours: Option<ConnectionId>,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        for event in events {
            match &event {
                Event::ReducerResult { result: Ok(r), .. } if r.carries_rows => {
                    if let Some(i) = self.seen.iter().position(|id| *id == r.request_id) {
                        self.seen.remove(i);
                        out.push(event);
                    } else {
                        self.held.push((now, r.request_id, event));
                    }
                }
                Event::Transaction(cause)
                    if cause.caller_connection_id.is_some() && cause.caller_connection_id == ours =>
                {
                    let request_id = cause.request_id;
                    out.push(event);
                    match self.held.iter().position(|(_, id, _)| *id == request_id) {
                        Some(i) => out.push(self.held.remove(i).2),
                        None => {
                            self.seen.push_back(request_id);
                            if self.seen.len() > SEEN {
                                self.seen.pop_front();
                            }
                        }
                    }
                }
                Event::Disconnected(_) => {
                    // The rows of held results will not come on this session.
                    out.push(event);
                    out.extend(self.held.drain(..).map(|(_, _, e)| e));
                    self.seen.clear();
                }
                _ => out.push(event),
            }
        }
        while let Some(i) = self.held.iter().position(|(at, _, _)| now.duration_since(*at) >= HOLD_LIMIT) {
            out.push(self.held.remove(i).2);
        }
    }

    /// The tickets of the results held back.
    pub(crate) fn held_tickets(&self) -> Vec<u64> {
        self.held
            .iter()
            .filter_map(|(_, _, e)| match e {
                Event::ReducerResult { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use spacelink_connection::lib::{Identity, Timestamp};
    use spacelink_connection::ConnectionState;
    use spacelink_reducers::{Outcome, ReducerResult};
    use spacelink_sync::{ReducerCause, ReducerStatus};

    use super::*;
    use crate::events::Disconnect;

    const OURS: ConnectionId = ConnectionId::from_u128(7);

    fn result(ticket: u64, request_id: u32, carries_rows: bool) -> Event {
        Event::ReducerResult {
            ticket,
            reducer: "r".into(),
            result: Ok(ReducerResult {
                call_id: ticket,
                reducer: "r".into(),
                sequence_number: None,
                request_id,
                outcome: Outcome::Committed,
                server_execution: Duration::ZERO,
                round_trip: Duration::ZERO,
                attempts: 1,
                carries_rows,
            }),
        }
    }

    fn transaction(request_id: u32, caller: ConnectionId) -> Event {
        Event::Transaction(Arc::new(ReducerCause {
            reducer: "r".into(),
            args: bytes::Bytes::new(),
            caller_identity: Identity::ZERO,
            caller_connection_id: Some(caller),
            request_id,
            status: ReducerStatus::Committed,
            timestamp: Timestamp::UNIX_EPOCH,
            energy_quanta_used: 0,
            execution: Duration::ZERO,
        }))
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::ReducerResult { ticket, .. } => format!("result {ticket}"),
                Event::Transaction(c) => format!("tx {}", c.request_id),
                Event::Disconnected(_) => "disconnected".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_result_that_comes_before_its_rows_waits_for_them() {
        let (mut order, now, mut out) = (ResultOrder::default(), Instant::now(), Vec::new());
        order.sort([result(1, 10, true)].into_iter(), Some(OURS), now, &mut out);
        assert!(out.is_empty(), "held");
        assert_eq!(order.held_tickets(), vec![1]);
        order.sort([transaction(10, OURS)].into_iter(), Some(OURS), now, &mut out);
        assert_eq!(names(&out), ["tx 10", "result 1"]);
        assert!(order.held_tickets().is_empty());
    }

    #[test]
    fn a_result_that_comes_after_its_rows_goes_at_once() {
        let (mut order, now, mut out) = (ResultOrder::default(), Instant::now(), Vec::new());
        order.sort([transaction(10, OURS), result(1, 10, true)].into_iter(), Some(OURS), now, &mut out);
        assert_eq!(names(&out), ["tx 10", "result 1"]);
    }

    #[test]
    fn a_result_without_rows_and_another_clients_transaction_wait_for_nothing() {
        let (mut order, now, mut out) = (ResultOrder::default(), Instant::now(), Vec::new());
        let other = ConnectionId::from_u128(8);
        order.sort(
            [result(1, 10, false), transaction(11, other), result(2, 11, true)].into_iter(),
            Some(OURS),
            now,
            &mut out,
        );
        assert_eq!(names(&out), ["result 1", "tx 11"], "another client's request id 11 is not ours");
        assert_eq!(order.held_tickets(), vec![2]);
    }

    #[test]
    fn a_held_result_goes_when_its_session_ends_or_after_the_limit() {
        let (mut order, now, mut out) = (ResultOrder::default(), Instant::now(), Vec::new());
        order.sort([result(1, 10, true), result(2, 11, true)].into_iter(), Some(OURS), now, &mut out);
        let lost =
            Event::Disconnected(Disconnect { requested: false, reason: None, to: ConnectionState::Reconnecting });
        order.sort([lost].into_iter(), Some(OURS), now, &mut out);
        assert_eq!(names(&out), ["disconnected", "result 1", "result 2"]);
        out.clear();
        order.sort([result(3, 12, true)].into_iter(), Some(OURS), now, &mut out);
        order.sort(std::iter::empty(), Some(OURS), now + HOLD_LIMIT / 2, &mut out);
        assert!(out.is_empty());
        order.sort(std::iter::empty(), Some(OURS), now + HOLD_LIMIT, &mut out);
        assert_eq!(names(&out), ["result 3"]);
    }
}
