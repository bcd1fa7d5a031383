//! Running, above policy: migrations and backfills at work. It may import every layer before it
//! (foundation, hashing, database access, records, policy), never the front ends.
//!
//! - `registry.rs`: migrations registered by `#[migration]`, collected, sorted and checked;
//! - `migrations.rs`: the `Migrator`, the migrations a run works on;
//! - `context.rs`: what a migration function receives (public `context`);
//! - `runner.rs`: a run: plan, lock, plan again under the lock, confirm, back up, apply;
//! - `apply.rs`: applying one migration and recording its outcome;
//! - `ddl_lock.rs`: PostgreSQL table-lock timeouts and their retries;
//! - `startup.rs`: the start-up entry point, the environment policy around a run;
//! - `wait.rs`: waiting for someone else's migrations;
//! - `operate.rs`: the operator's actions besides a run (backup, rehearsal, mark);
//! - `backfill/`: the batched, parallel, resumable backfill engine and its background workers
//!   (public `backfill`, feature `backfill`).

pub(crate) mod apply;
#[cfg(feature = "backfill")]
pub mod backfill;
pub mod context;
pub(crate) mod ddl_lock;
pub(crate) mod migrations;
pub(crate) mod operate;
pub(crate) mod registry;
pub(crate) mod runner;
pub(crate) mod startup;
pub(crate) mod wait;
