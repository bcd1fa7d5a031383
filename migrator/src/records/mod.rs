//! Records, above database access: the tables the library keeps and the lock that guards them.
//! It may import the foundation, hashing and database access, never policy, running or the
//! front ends.
//!
//! - `tracking.rs` (and `tracking/location.rs`): `applied_migrations`: where it lives, its
//!   columns, reading it and writing one row per attempt;
//! - `lock/`: the migration lock, one runner migrates while the others wait (public `lock`);
//! - `backup.rs`: backups before migrating;
//! - `audit.rs`: `migrator_audit`, who did what to the migrations and backfills (public
//!   `audit`);
//! - `backfill/`: the background backfills' tables and their state as operators see it
//!   (feature `backfill`; the engine that fills them is in the running layer).

pub mod audit;
#[cfg(feature = "backfill")]
pub(crate) mod backfill;
pub(crate) mod backup;
pub(crate) mod lock;
pub(crate) mod tracking;
