//! Foundation, the lowest layer: the values every other layer uses. It imports no other layer
//! of the crate (only its own files and outside crates), so that an error, a report, a metric
//! name or a setting can be named anywhere without a loop.
//!
//! - `error.rs` (and `error/classify.rs`): the crate's one error type, its kinds, and what a
//!   database error means for a retry;
//! - `report.rs`: what a run did, and what the tracking table says (public `report`);
//! - `metrics.rs`: the metric names, recorded through the `metrics` facade (public `metrics`);
//! - `config/`: `Config`, one file per concern, each default written once (public `config`);
//! - `backoff.rs`: the one growing wait behind every retry and poll;
//! - `redact.rs`: what a database error may say outside the process.

pub(crate) mod backoff;
pub(crate) mod config;
pub(crate) mod error;
pub mod metrics;
pub(crate) mod redact;
pub(crate) mod report;
