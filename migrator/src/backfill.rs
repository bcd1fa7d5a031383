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
//!   while this thread writes the previous batch and claims the next one, so the workers wait
//!   for neither.
//! - **Writing.** Each batch is written back in one `UPDATE ... FROM (VALUES ...)` statement and
//!   committed on its own.
//! - **Waiting.** Pending rows that other transactions hold locked are waited for (other
//!   runners' batches finish or roll back), up to [`Backfill::wait_for_locked_rows`].
//! - **Resuming.** Which rows are left is the `pending` predicate (e.g. "hash IS NULL"): kill
//!   the process at any instant, start again, and it finishes. Memory is bounded by three
//!   batches (written, computed, claimed), not the table.
//! - **Stopping.** Between batches the backfill asks its [`Progress`] whether the run still
//!   holds the migration lock ([`Progress::ensure_lock_held`]); once it is lost, the backfill
//!   stops with [`Error::LockLost`], its claimed batches rolled back.
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

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use zeroize::Zeroizing;

use crate::connection::{Database, MultiBackend, PooledConnection};
use crate::context::Progress;
use crate::error::{Error, Result};
use crate::url::Backend;

/// The most input or output columns a backfill takes.
pub const MAX_COLUMNS: usize = 4;

/// Default rows per batch (`MIGRATION_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: usize = 128;

/// Bind parameters one write statement may use (SQLite allows 32,766, PostgreSQL 65,535):
/// bigger batches are capped to fit.
const MAX_BINDS: usize = 30_000;

/// How long a backfill waits for rows that other transactions keep locked, by default.
pub const DEFAULT_WAIT_FOR_LOCKED_ROWS: Duration = Duration::from_secs(3600);

/// A backfill of one table. Configure it with the setters, then [`Backfill::run`].
#[derive(Clone, Debug)]
pub struct Backfill {
    table: &'static str,
    key: &'static str,
    inputs: Vec<&'static str>,
    outputs: Vec<&'static str>,
    pending: &'static str,
    batch_size: usize,
    threads: usize,
    wait_for_locked: Duration,
}

/// What a backfill did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackfillReport {
    /// Rows this process wrote.
    pub rows_updated: u64,
    /// Rows computed but not written because another process did them first or they changed
    /// meanwhile (SQLite only; PostgreSQL locks claimed rows).
    pub rows_skipped: u64,
    /// Batches this process committed.
    pub batches: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// One claimed row: its key and its input values, zeroized when dropped (the copies the
/// database driver makes to bind them in the write are not).
struct Claimed {
    key: i64,
    inputs: Vec<Option<Zeroizing<String>>>,
}

#[derive(QueryableByName)]
struct RawRow {
    #[diesel(sql_type = BigInt)]
    k: i64,
    #[diesel(sql_type = Nullable<Text>)]
    i0: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    i1: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    i2: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    i3: Option<String>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A claimed batch; on PostgreSQL it holds the transaction that locks its rows, rolled back
/// if the batch is dropped unwritten.
struct Batch {
    conn: PooledConnection,
    open_transaction: bool,
    rows: Vec<Claimed>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.open_transaction {
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Backfill {
    /// A backfill of `table`, whose integer primary key is `key`.
    pub fn new(table: &'static str, key: &'static str) -> Backfill {
        Backfill {
            table,
            key,
            inputs: Vec::new(),
            outputs: Vec::new(),
            pending: "",
            batch_size: DEFAULT_BATCH_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            wait_for_locked: DEFAULT_WAIT_FOR_LOCKED_ROWS,
        }
    }

    /// Adds a column the computation reads (read as text).
    pub fn input(&mut self, column: &'static str) -> &mut Backfill {
        self.inputs.push(column);
        self
    }

    /// Adds a column the computation writes (as text).
    pub fn output(&mut self, column: &'static str) -> &mut Backfill {
        self.outputs.push(column);
        self
    }

    /// The SQL condition (on the table's columns, written in code) of rows still to do. It must
    /// become false once a row's outputs are written, or the backfill reports that it makes no
    /// progress.
    pub fn pending_when(&mut self, predicate: &'static str) -> &mut Backfill {
        self.pending = predicate;
        self
    }

    /// Rows per batch (default [`DEFAULT_BATCH_SIZE`]).
    pub fn batch_size(&mut self, rows: usize) -> &mut Backfill {
        self.batch_size = rows.max(1);
        self
    }

    /// How long to wait, in all, for pending rows that other transactions hold locked (other
    /// runners' batches, or an application transaction left open) before failing (default one
    /// hour).
    pub fn wait_for_locked_rows(&mut self, limit: Duration) -> &mut Backfill {
        self.wait_for_locked = limit;
        self
    }

    /// The rows per batch actually used: as set, capped so that one write statement stays
    /// within the databases' bind-parameter limits.
    fn effective_batch_size(&self) -> usize {
        let per_row = 1 + self.outputs.len() + self.inputs.len();
        self.batch_size.min(MAX_BINDS / per_row.max(1)).max(1)
    }

    /// Worker threads computing a batch (default: all cores).
    pub fn threads(&mut self, threads: usize) -> &mut Backfill {
        self.threads = threads.max(1);
        self
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Error::Backfill {
            table: self.table.to_owned(),
            reason,
        };
        for name in [self.table, self.key]
            .iter()
            .chain(&self.inputs)
            .chain(&self.outputs)
        {
            if !is_identifier(name) {
                return Err(bad(format!("{name:?} is not a plain SQL identifier")));
            }
        }
        if self.inputs.is_empty() || self.inputs.len() > MAX_COLUMNS {
            return Err(bad(format!("it needs 1 to {MAX_COLUMNS} input columns")));
        }
        if self.outputs.is_empty() || self.outputs.len() > MAX_COLUMNS {
            return Err(bad(format!("it needs 1 to {MAX_COLUMNS} output columns")));
        }
        if self.pending.trim().is_empty() {
            return Err(bad("it needs a pending_when predicate".into()));
        }
        Ok(())
    }

    /// How many rows are still pending.
    pub fn remaining(&self, db: &Database) -> Result<u64> {
        self.check()?;
        let mut conn = db.get()?;
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE {}",
            self.table, self.pending
        );
        let count: Count = diesel::sql_query(sql)
            .get_result(&mut *conn)
            .map_err(Error::db(format!(
                "cannot count pending rows of {}",
                self.table
            )))?;
        Ok(u64::try_from(count.n).unwrap_or(0))
    }

    /// Runs until no row is pending. `compute` gets a row's inputs (in the order of
    /// [`Backfill::input`]) and returns its outputs (in the order of [`Backfill::output`]).
    ///
    /// An in-memory SQLite database (`sqlite://:memory:`) is refused: its pool has one
    /// connection, and a backfill needs several.
    pub fn run<F>(&self, db: &Database, progress: &Progress, compute: F) -> Result<BackfillReport>
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Sync,
    {
        self.check()?;
        if db.url().is_sqlite_memory() {
            return Err(Error::Backfill {
                table: self.table.to_owned(),
                reason: "an in-memory SQLite database (sqlite://:memory:) has a single \
                         connection, and a backfill needs several (to claim a batch while \
                         writing the previous one): use a database file"
                    .into(),
            });
        }
        let start = Instant::now();
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("backfill-{i}"))
            .build()
            .map_err(|e| Error::Backfill {
                table: self.table.to_owned(),
                reason: format!("cannot start worker threads: {e}"),
            })?;
        let mut pending = self.remaining(db)?;
        progress.set_total(pending);
        log::info!(
            "Backfill of {}: {pending} rows pending, {} threads, batches of {}",
            self.table,
            self.threads,
            self.effective_batch_size()
        );
        let mut report = BackfillReport::default();
        let mut stalled_sweeps = 0;
        let mut waited = Duration::ZERO;
        let mut previous_keys: Option<(i64, i64)> = None;
        loop {
            progress.ensure_lock_held()?;
            // One sweep: claim batches in key order until none is left after the cursor.
            let claimed_before = report.rows_updated + report.rows_skipped;
            let keys = self.sweep(db, progress, &workers, &compute, &mut report)?;
            let claimed = report.rows_updated + report.rows_skipped - claimed_before;
            let left = self.remaining(db)?;
            if left == 0 {
                break;
            }
            if claimed == 0 {
                // Everything left is locked by other transactions: other runners' batches
                // (wait for them, or for their rollback if they die), or an application
                // transaction left open (bounded by wait_for_locked_rows).
                if waited >= self.wait_for_locked {
                    return Err(Error::Backfill {
                        table: self.table.to_owned(),
                        reason: format!(
                            "{left} pending rows stayed locked by other transactions for {}s",
                            waited.as_secs()
                        ),
                    });
                }
                if waited.as_secs().is_multiple_of(10) && waited.subsec_millis() < 250 {
                    log::info!(
                        "Backfill of {}: {left} pending rows are locked by other transactions \
                         (other runners' batches?); waiting",
                        self.table
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
                waited += Duration::from_millis(250);
            } else if left >= pending
                && matches!((keys, previous_keys), (Some((lo, hi)), Some((plo, phi))) if lo >= plo && hi <= phi)
            {
                // The same rows again, and none resolved: the predicate stays true once written.
                // (Rows that other writers keep adding come with new keys, and do not count.)
                stalled_sweeps += 1;
                if stalled_sweeps >= 3 {
                    return Err(Error::Backfill {
                        table: self.table.to_owned(),
                        reason: format!(
                            "no progress: {left} rows still match the pending predicate after \
                             being written; the predicate must become false once a row is done"
                        ),
                    });
                }
            } else {
                stalled_sweeps = 0;
            }
            pending = left;
            previous_keys = keys;
        }
        report.elapsed = start.elapsed();
        progress.finish();
        log::info!(
            "Backfill of {} done: {} rows written by this process in {} batches, {:.1}s",
            self.table,
            report.rows_updated,
            report.batches,
            report.elapsed.as_secs_f64()
        );
        Ok(report)
    }

    fn sweep<F>(
        &self,
        db: &Database,
        progress: &Progress,
        workers: &rayon::ThreadPool,
        compute: &F,
        report: &mut BackfillReport,
    ) -> Result<Option<(i64, i64)>>
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Sync,
    {
        // The smallest and largest keys this sweep claimed.
        let mut keys: Option<(i64, i64)> = None;
        // The next key to consider; None once the largest key has been claimed.
        let mut cursor = Some(i64::MIN);
        let mut current = self.claim(db, &mut cursor)?;
        // The batch computed in the previous round, written while the workers compute the
        // current one: the workers wait neither for claims nor for writes.
        let mut computed: Option<(Batch, Vec<Vec<Option<String>>>)> = None;
        while let Some(batch) = current.take() {
            // Between batches: a run that lost its lock stops here (its batches roll back).
            progress.ensure_lock_held()?;
            if let (Some(first), Some(last)) = (batch.rows.first(), batch.rows.last()) {
                keys = Some(keys.map_or((first.key, last.key), |(lo, hi)| {
                    (lo.min(first.key), hi.max(last.key))
                }));
            }
            let (outputs, written, next) = std::thread::scope(|scope| {
                let computing = scope.spawn(|| {
                    workers.install(|| {
                        use rayon::prelude::*;
                        batch
                            .rows
                            .par_iter()
                            .map(|row| {
                                let inputs: Vec<Option<&str>> = row
                                    .inputs
                                    .iter()
                                    .map(|v| v.as_deref().map(|s| s.as_str()))
                                    .collect();
                                compute(&inputs)
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                });
                let written = computed
                    .take()
                    .map(|(done, outputs)| self.write_batch(done, outputs, progress, report));
                let next = self.claim(db, &mut cursor);
                (computing.join(), written, next)
            });
            if let Some(written) = written {
                written?;
            }
            let outputs = outputs.map_err(|panic| Error::Panic {
                message: panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "backfill computation panicked".into()),
            })??;
            computed = Some((batch, outputs));
            current = next?;
        }
        if let Some((done, outputs)) = computed {
            self.write_batch(done, outputs, progress, report)?;
        }
        Ok(keys)
    }

    fn write_batch(
        &self,
        batch: Batch,
        outputs: Vec<Vec<Option<String>>>,
        progress: &Progress,
        report: &mut BackfillReport,
    ) -> Result<()> {
        let claimed = batch.rows.len() as u64;
        let written = self.write(batch, outputs)?;
        report.rows_updated += written;
        report.rows_skipped += claimed - written.min(claimed);
        report.batches += 1;
        progress.add(written);
        Ok(())
    }

    fn claim(&self, db: &Database, cursor: &mut Option<i64>) -> Result<Option<Batch>> {
        let Some(from) = *cursor else {
            return Ok(None);
        };
        let mut conn = db.get()?;
        let backend = conn.backend();
        let columns: Vec<String> = (0..MAX_COLUMNS)
            .map(|i| match self.inputs.get(i) {
                Some(col) => format!("CAST({col} AS TEXT) AS i{i}"),
                None => format!("CAST(NULL AS TEXT) AS i{i}"),
            })
            .collect();
        let lock = match backend {
            Backend::Postgres => " FOR NO KEY UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT CAST({key} AS BIGINT) AS k, {columns} FROM {table} \
             WHERE ({pending}) AND {key} >= $1 ORDER BY {key} LIMIT $2{lock}",
            key = self.key,
            columns = columns.join(", "),
            table = self.table,
            pending = self.pending,
        );
        let context = || format!("cannot claim a batch of {}", self.table);
        let open_transaction = backend == Backend::Postgres;
        if open_transaction {
            conn.batch_execute("BEGIN")
                .map_err(|e| Error::db(context())(e))?;
        }
        let mut batch = Batch {
            conn,
            open_transaction,
            rows: Vec::new(),
        };
        let rows: Vec<RawRow> = diesel::sql_query(sql)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(i64::try_from(self.effective_batch_size()).unwrap_or(i64::MAX))
            .load(&mut *batch.conn)
            .map_err(|e| Error::db(context())(e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let inputs = self.inputs.len();
        batch.rows = rows
            .into_iter()
            .map(|r| Claimed {
                key: r.k,
                inputs: [r.i0, r.i1, r.i2, r.i3]
                    .into_iter()
                    .take(inputs)
                    .map(|v| v.map(Zeroizing::new))
                    .collect(),
            })
            .collect();
        if let Some(last) = batch.rows.last() {
            *cursor = last.key.checked_add(1);
        }
        Ok(Some(batch))
    }

    /// Writes a batch in one statement and commits it; returns the rows written.
    fn write(&self, mut batch: Batch, outputs: Vec<Vec<Option<String>>>) -> Result<u64> {
        let context = || format!("cannot write a batch of {}", self.table);
        if let Some(bad) = outputs.iter().find(|o| o.len() != self.outputs.len()) {
            return Err(Error::Backfill {
                table: self.table.to_owned(),
                reason: format!(
                    "the computation returned {} values for {} output columns",
                    bad.len(),
                    self.outputs.len()
                ),
            });
        }
        let backend = batch.conn.backend();
        // SQLite's unlocked claims need the guard: only rows still pending, with the inputs
        // that were read.
        let guard_inputs = backend == Backend::Sqlite;
        let per_row = 1 + self.outputs.len() + if guard_inputs { self.inputs.len() } else { 0 };
        let mut placeholder = 0;
        let tuples: Vec<String> = (0..batch.rows.len())
            .map(|_| {
                let params: Vec<String> = (0..per_row)
                    .map(|_| {
                        placeholder += 1;
                        format!("${placeholder}")
                    })
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let mut names = vec!["__k".to_owned()];
        names.extend((0..self.outputs.len()).map(|i| format!("__o{i}")));
        if guard_inputs {
            names.extend((0..self.inputs.len()).map(|i| format!("__i{i}")));
        }
        let values = match backend {
            Backend::Postgres => {
                format!("(VALUES {}) AS v({})", tuples.join(", "), names.join(", "))
            }
            Backend::Sqlite => {
                let renamed: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| format!("column{} AS {name}", i + 1))
                    .collect();
                format!(
                    "(SELECT {} FROM (VALUES {})) AS v",
                    renamed.join(", "),
                    tuples.join(", ")
                )
            }
        };
        let set: Vec<String> = self
            .outputs
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = v.__o{i}"))
            .collect();
        let mut conditions = vec![
            format!("{}.{} = v.__k", self.table, self.key),
            format!("({})", self.pending),
        ];
        if guard_inputs {
            conditions.extend(
                self.inputs
                    .iter()
                    .enumerate()
                    .map(|(i, col)| format!("{}.{col} IS v.__i{i}", self.table)),
            );
        }
        let sql = format!(
            "UPDATE {table} SET {set} FROM {values} WHERE {conditions}",
            table = self.table,
            set = set.join(", "),
            conditions = conditions.join(" AND "),
        );
        let mut query = diesel::sql_query(sql).into_boxed::<MultiBackend>();
        for (row, out) in batch.rows.iter().zip(outputs) {
            query = query.bind::<BigInt, _>(row.key);
            for value in out {
                query = query.bind::<Nullable<Text>, _>(value);
            }
            if guard_inputs {
                for value in &row.inputs {
                    query = query.bind::<Nullable<Text>, _>(value.as_deref().cloned());
                }
            }
        }
        let written = query
            .execute(&mut *batch.conn)
            .map_err(|e| Error::db(context())(e))?;
        if batch.open_transaction {
            batch
                .conn
                .batch_execute("COMMIT")
                .map_err(|e| Error::db(context())(e))?;
            batch.open_transaction = false;
        }
        Ok(written as u64)
    }
}
