//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, as logs go through `log`:
//! the library records, the application installs an exporter (or none, and they cost nothing).
//!
//! | Name | Type | Labels |
//! |---|---|---|
//! | `migrator_migrations_total` | counter | `migration`, `outcome` (`applied`, `failed`) |
//! | `migrator_migration_duration_seconds` | histogram | `migration` |
//! | `migrator_migration_attempts` | gauge | `migration` (the tracking row's `attempts`) |
//! | `migrator_pending_migrations` | gauge | (SQL and code migrations pending at the last status or plan) |
//! | `migrator_lock_wait_seconds` | histogram | (time to take the migration lock) |
//! | `migrator_migration_rows_done` | gauge | `migration` (a migration reporting progress) |
//! | `migrator_migration_rows_expected` | gauge | `migration` (the total it reported: an estimate, never below rows done, corrected to them at completion) |
//! | `migrator_background_backfill_rows_done` | gauge | `backfill` (all hosts, from `migrator_backfills`) |
//! | `migrator_background_backfill_rows_expected` | gauge | `backfill` (estimated when scheduled, never below rows done; the rows done once finished) |
//! | `migrator_background_backfill_rows_per_second` | gauge | `backfill` (since it was scheduled) |
//! | `migrator_background_backfill_active` | gauge | `backfill` (1 while active, else 0) |
//! | `migrator_backfill_replica_lag_held_seconds_total` | counter | (seconds workers held batches for replica lag) |
//!
//! The names follow Prometheus's conventions and pass `promtool check metrics`: only counters
//! end in `_total`, units are in the name. Earlier versions used four other names:
//! `migrator_backfill_rows_done` and `migrator_backfill_rows_total` are now
//! `migrator_migration_rows_done` and `migrator_migration_rows_expected` (any migration
//! reporting progress, not only backfills); `migrator_background_backfill_rows_total` is now
//! `migrator_background_backfill_rows_expected` and `migrator_background_backfill_rate`
//! `migrator_background_backfill_rows_per_second`.

use std::sync::Once;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Migrations applied or failed, by migration and outcome.
pub const MIGRATIONS_TOTAL: &str = "migrator_migrations_total";
/// Duration of each migration attempt, in seconds.
pub const MIGRATION_DURATION_SECONDS: &str = "migrator_migration_duration_seconds";
/// The tracking row's `attempts` after a run, by migration.
pub const MIGRATION_ATTEMPTS: &str = "migrator_migration_attempts";
/// Migrations (SQL and code) pending when the last plan or status was computed.
pub const PENDING_MIGRATIONS: &str = "migrator_pending_migrations";
/// Seconds spent waiting for the migration lock.
pub const LOCK_WAIT_SECONDS: &str = "migrator_lock_wait_seconds";
/// Rows done by a migration reporting progress.
pub const MIGRATION_ROWS_DONE: &str = "migrator_migration_rows_done";
/// Rows in all of a migration reporting progress (the total it reported).
pub const MIGRATION_ROWS_EXPECTED: &str = "migrator_migration_rows_expected";

/// Rows done by a background backfill, on every host.
pub const BACKGROUND_ROWS_DONE: &str = "migrator_background_backfill_rows_done";
/// Rows a background backfill covers: estimated when scheduled (statistics and a bounded
/// probe, not a count), never below the rows done, and the rows done once it finished.
pub const BACKGROUND_ROWS_EXPECTED: &str = "migrator_background_backfill_rows_expected";
/// Rows per second of a background backfill since it was scheduled.
pub const BACKGROUND_ROWS_PER_SECOND: &str = "migrator_background_backfill_rows_per_second";
/// 1 while a background backfill is active, else 0.
pub const BACKGROUND_ACTIVE: &str = "migrator_background_backfill_active";

/// Seconds background-backfill workers held their batches for replica lag, in all.
pub const REPLICA_LAG_HELD_SECONDS: &str = "migrator_backfill_replica_lag_held_seconds_total";

/// Describes every metric to the installed recorder, once (later calls do nothing; a recorder
/// installed after the first call misses the descriptions, not the values).
pub(crate) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!(
            MIGRATIONS_TOTAL,
            "Migrations applied or failed, by outcome."
        );
        describe_histogram!(
            MIGRATION_DURATION_SECONDS,
            ::metrics::Unit::Seconds,
            "Duration of each migration attempt."
        );
        describe_gauge!(
            MIGRATION_ATTEMPTS,
            "Attempts recorded in the tracking table for each migration run."
        );
        describe_gauge!(
            PENDING_MIGRATIONS,
            "SQL and code migrations pending at the last plan or status."
        );
        describe_histogram!(
            LOCK_WAIT_SECONDS,
            ::metrics::Unit::Seconds,
            "Time to acquire the migration lock."
        );
        describe_gauge!(
            MIGRATION_ROWS_DONE,
            "Rows done by a migration reporting progress."
        );
        describe_gauge!(
            MIGRATION_ROWS_EXPECTED,
            "Rows in all of a migration reporting progress (an estimate until it completes)."
        );
        describe_gauge!(BACKGROUND_ROWS_DONE, "Rows done by a background backfill.");
        describe_gauge!(
            BACKGROUND_ROWS_EXPECTED,
            "Rows a background backfill covers (an estimate until it finishes)."
        );
        describe_gauge!(
            BACKGROUND_ROWS_PER_SECOND,
            "Rows per second of a background backfill since it was scheduled."
        );
        describe_gauge!(
            BACKGROUND_ACTIVE,
            "1 while a background backfill is active."
        );
        describe_counter!(
            REPLICA_LAG_HELD_SECONDS,
            ::metrics::Unit::Seconds,
            "Seconds background-backfill workers held batches because a replica was behind."
        );
    });
}

/// How a migration attempt ended, for `migrator_migrations_total`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Finished {
    Applied,
    Failed,
}

/// A migration attempt ended: counts it by outcome and records its duration.
pub(crate) fn migration_finished(id: &str, outcome: Finished, duration: Duration) {
    describe();
    let outcome = match outcome {
        Finished::Applied => "applied",
        Finished::Failed => "failed",
    };
    counter!(MIGRATIONS_TOTAL, "migration" => id.to_owned(), "outcome" => outcome).increment(1);
    histogram!(MIGRATION_DURATION_SECONDS, "migration" => id.to_owned())
        .record(duration.as_secs_f64());
}

/// The tracking row of migration `id` says it was attempted `attempts` times.
pub(crate) fn migration_attempts(id: &str, attempts: i64) {
    describe();
    gauge!(MIGRATION_ATTEMPTS, "migration" => id.to_owned()).set(attempts as f64);
}

/// A plan or status found `pending` migrations.
pub(crate) fn pending(pending: usize) {
    describe();
    gauge!(PENDING_MIGRATIONS).set(pending as f64);
}

/// The migration lock was acquired after `waited`.
pub(crate) fn lock_acquired(waited: Duration) {
    describe();
    histogram!(LOCK_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// A migration reported progress: `done` rows out of `total`.
pub(crate) fn migration_progress(id: &str, done: u64, total: u64) {
    describe();
    gauge!(MIGRATION_ROWS_DONE, "migration" => id.to_owned()).set(done as f64);
    gauge!(MIGRATION_ROWS_EXPECTED, "migration" => id.to_owned()).set(total as f64);
}

/// Background-backfill workers held their batches `held` for replica lag.
#[cfg(feature = "backfill")]
pub(crate) fn replica_lag_held(held: std::time::Duration) {
    describe();
    ::metrics::counter!(REPLICA_LAG_HELD_SECONDS).increment(held.as_secs_f64().round() as u64);
}
