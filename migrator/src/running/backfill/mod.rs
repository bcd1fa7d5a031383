//! A batched, parallel, resumable backfill: compute new column values for every row that still
//! needs them.
//!
//! - **Claiming.** Rows are taken in key order, a batch at a time. On PostgreSQL a batch is
//!   claimed with `SELECT ... FOR NO KEY UPDATE SKIP LOCKED` inside its own transaction, so
//!   several processes on several hosts share one backfill through the database: no
//!   coordinator, no row done twice. (`NO KEY`: the application can still insert rows of
//!   other tables that reference a claimed row by foreign key.) On SQLite (one host) claims
//!   are not locked; every write is guarded so that a row already done, or changed since it
//!   was read, is not written again.
//! - **Computing.** A batch is computed on a pool of worker threads (all cores by default)
//!   while the previous batch is written (on a connection of its own) and the next one is
//!   claimed (on another), so that neither the workers nor the database wait for each other.
//!   On SQLite the write and the next claim run one after the other on one connection, and a
//!   compute that costs under a tenth of them runs on that thread too.
//! - **Writing.** Each batch is written back in one guarded statement and committed on its
//!   own (PostgreSQL: the rows as one array per column through `unnest`, with the progress and
//!   the lease's release in the same statement; SQLite: `UPDATE ... FROM (VALUES ...)`
//!   statements of up to 1,000 rows that stay prepared, on the connection that claimed the
//!   batch, the inputs compared only if another connection committed since the claim).
//! - **Waiting.** Pending rows that other transactions hold locked are waited for (other
//!   runners' batches finish or roll back), up to [`Backfill::wait_for_locked_rows`].
//! - **Resuming.** Which rows are left is the `pending` predicate (e.g. "hash IS NULL"): kill
//!   the process at any instant, start again, and it finishes. Memory is bounded by three
//!   batches (written, computed, claimed), not the table.
//! - **Estimating.** How many rows are pending is estimated in bounded time (statistics and a
//!   bounded probe), never counted: progress totals are estimates, capped at 100% and
//!   corrected when the run completes.
//! - **Finishing.** Statements that need the rows done ([`Backfill::then`],
//!   [`Backfill::then_create_index`]) run once the backfill is complete, in whichever process
//!   completes it.
//! - **Stopping.** Between batches the backfill asks its [`Progress`](crate::context::Progress)
//!   whether the run still holds the migration lock
//!   ([`Progress::ensure_lock_held`](crate::context::Progress::ensure_lock_held)); once it is lost, the
//!   backfill stops with [`Error::LockLost`](crate::Error::LockLost), its claimed batches rolled back.
//!
//! Table and column names come from code and are checked to be plain identifiers; values are
//! always bound.
//!
//! ```no_run
//! # fn demo(ctx: &mut migrator::Context<'_>) -> migrator::Result<()> {
//! use migrator::backfill::Backfill;
//!
//! let mut backfill = Backfill::new("users", "id");
//! backfill
//!     .input("email")
//!     .output("email_normalized")
//!     .pending_when("email IS NOT NULL AND email_normalized IS NULL");
//! let report = backfill.run(ctx.database()?, ctx.progress(), |inputs| {
//!     Ok(vec![inputs[0].map(|email| email.trim().to_lowercase())])
//! })?;
//! println!("{} rows", report.rows_updated);
//! # Ok(()) }
//! ```

mod claim;
mod definition;
mod estimate;
mod finish;
mod lag;
mod named;
mod run;
mod schedule;
mod worker;
#[cfg(feature = "testing")]
pub(crate) use worker::stepped;
mod write;

pub use crate::records::backfill::state::{
    control, get, list, BackfillState, BackfillStatus, Control, WorkerState,
};
pub use definition::{
    Backfill, BackfillReport, DEFAULT_BATCH_SIZE, DEFAULT_WAIT_FOR_LOCKED_ROWS, MAX_COLUMNS,
};
pub use lag::{over_limit, replica_lag, replica_lag_for, wait_for_replicas, LagLimits, ReplicaLag};
pub use named::{registered, valid_name, Job, Registered};
pub use schedule::Scheduled;
pub use worker::{WorkReport, Workers};
