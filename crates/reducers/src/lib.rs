//! The reducer client for spacelink.
//!
//! Calls go through a [`Ledger`](ledger::Ledger) that knows, for each call,
//! whether it is queued, in flight on which session, or answered:
//!
//! * **Correlation**: each result is matched to its call by request id (or,
//!   for SpacetimeDB 1.3's failed calls, which carry request id 0, by reducer
//!   and arguments in send order), so `call().await` returns that call's result.
//! * **Validation** before sending: size limit, the module's schema, and the
//!   game's own validators; an invalid call fails at once and is never sent.
//! * **Retries without double execution**: a call that may have reached the
//!   server is resent after a lost session only if it carries a sequence number
//!   the module deduplicates (`call_sequenced`); otherwise it ends with
//!   `OutcomeUnknown`. A reducer that ran and failed is reported, never retried.
//! * **Offline queue**: calls made while disconnected wait, bounded, with an
//!   [`OverflowPolicy`], and go out in order after
//!   reconnecting; a [`QueueStore`] keeps them across app restarts.
//! * **Batches** and per-reducer **callbacks**.
//!
//! Architecture invariant: this crate knows `connection`'s messages and
//! nothing above; it reads no files (a `QueueStore` is given to it).

#![warn(unreachable_pub)]

mod actor;
pub mod config;
pub mod error;
mod handle;
pub mod ledger;
mod messages;
pub mod persist;

pub use actor::ReducerActor;
pub use config::ReducerConfig;
pub use error::ReducerError;
pub use handle::ReducerHandle;
pub use ledger::{Call, CallId, Dedup, Outcome, OverflowPolicy, ReducerResult};
pub use messages::{CallbackId, Completion, QueueStatus, ReducerEvent, ReducerListeners};
pub use persist::QueueStore;
