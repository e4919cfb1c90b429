//! The reducer client for spacelink. **Not implemented yet.**
//!
//! This crate will own the `ReducerActor`: calls correlated with their results
//! by request id, validation against the module schema before sending, retries
//! across reconnects without double execution (client sequence numbers), an
//! offline queue, batches and per-reducer callbacks. Today the connection actor
//! offers the raw `CallReducer` message and reports `TransactionUpdate`s; the
//! `spacelink call` command correlates them by request id.
