//! The background backfills' records: their two tables and the state operators read and change.
//! Part of the records layer; the public `migrator::backfill` module (the engine, in the running
//! layer) re-exports `state`'s public items.
//!
//! - `tables.rs`: `migrator_backfills` and `migrator_backfill_workers` themselves: names,
//!   creation, upgrades;
//! - `store.rs`: reading and writing their rows: leases, progress, workers' heartbeats;
//! - `state.rs`: what operators see (`list`, `get`) and do (`control`: pause, resume, cancel).

pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod tables;
