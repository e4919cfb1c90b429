//! Client-side prediction for spacelink. **Not implemented yet.**
//!
//! This crate will own the `PredictionActor`: a history buffer of predicted
//! inputs keyed by sequence number, confirmation and rejection against the
//! server's last processed sequence, rollback and input replay, and smoothing of
//! corrections over `ReconciliationSmoothingTime`.
