//! The performance monitor for spacelink. **Not implemented yet.**
//!
//! This crate will own the `TelemetryActor` and the only `metrics` recorder in
//! the library: it will aggregate the `metrics` facade events that every other
//! crate emits (latency, reducer outcomes, subscription throughput, prediction
//! accuracy) into `PerformanceStats` over windows, raise alerts on thresholds
//! and export snapshots.
