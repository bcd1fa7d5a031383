//! A backfill's definition: its table, key, columns and predicate, its settings, and what a
//! run reports. How it runs is `run.rs` (inline), `claim.rs` and `write.rs` (a batch),
//! `schedule.rs` and `worker.rs` (in the background).

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;

use super::claim::Lease;
use crate::access::backend;
use crate::access::connection::Database;
use crate::access::schema::Count;
use crate::foundation::error::{Error, Result};
use crate::records::backfill::state::BackfillStatus;
use crate::records::backfill::store::Sink;

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
    pub(super) table: &'static str,
    pub(super) key: &'static str,
    pub(super) inputs: Vec<&'static str>,
    pub(super) outputs: Vec<&'static str>,
    pub(super) pending: &'static str,
    pub(super) batch_size: usize,
    pub(super) threads: usize,
    pub(super) wait_for_locked: Duration,
    /// Keys above this are not claimed (a background backfill's `upper_key`).
    pub(super) upper_key: Option<i64>,
    /// The `migrator_backfills` row whose `rows_done` each batch advances in its own
    /// transaction.
    pub(super) sink: Option<Sink>,
    /// A named backfill's claims, recorded so that other processes' workers leave them be.
    pub(super) lease: Option<Lease>,
    /// An inline run of a named backfill stops when an operator pauses or cancels it
    /// (`finalize` does not: it finishes the backfill whatever its state).
    pub(super) obey_operator: bool,
    /// An inline run stops after the batch that passes this instant (`auto`).
    pub(super) deadline: Option<Instant>,
    /// Statements to run once it is complete (see [`Backfill::then`]).
    pub(super) then: Vec<Then>,
    /// The `lock_timeout` of those that are not `CONCURRENTLY` (`MIGRATION_DDL_LOCK_TIMEOUT_MS`).
    pub(super) ddl_lock_timeout: Duration,
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
    /// The run stopped with rows left: at its deadline (they go to the background workers),
    /// or because an operator paused or cancelled the backfill ([`Self::stopped_by`]).
    pub unfinished: bool,
    /// The status an operator set that stopped the run (`paused` or `cancelled`), if any.
    pub stopped_by: Option<BackfillStatus>,
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
            upper_key: None,
            sink: None,
            lease: None,
            obey_operator: false,
            deadline: None,
            then: Vec::new(),
            ddl_lock_timeout: crate::foundation::config::DEFAULT_DDL_LOCK_TIMEOUT,
        }
    }

    /// Adds a statement to run once the backfill is complete, on every backend: work that
    /// needs the rows done, or that need not delay a migration's start-up (an index on the
    /// new column). It runs in whichever process completes the backfill (a background worker,
    /// an inline run, a later migration finalizing it), before the backfill is recorded
    /// `finished`, once at a time on PostgreSQL; it must be idempotent (`IF NOT EXISTS`), as a
    /// process killed half-way runs it again. `CONCURRENTLY` statements run without the DDL
    /// lock timeout, others with `MIGRATION_DDL_LOCK_TIMEOUT_MS`; a failure is retried, then
    /// marks a background backfill `failed` like a failed batch. For an index, prefer
    /// [`Backfill::then_create_index`].
    ///
    /// These statements are part of a named backfill's definition checksum
    /// ([`Job::checksum`](super::Job::checksum)): a worker whose finishing statements differ
    /// from those of the version that scheduled the backfill leaves it alone, as it would for
    /// another computation.
    pub fn then(&mut self, sql: &'static str) -> &mut Backfill {
        self.then.push(Then::Sql(sql));
        self
    }

    /// Creates index `name` on `on` (`table (columns) [WHERE predicate]`) once the backfill is
    /// complete (see [`Backfill::then`]): `CREATE INDEX CONCURRENTLY IF NOT EXISTS` on
    /// PostgreSQL, after dropping an invalid index of that name that an interrupted build left
    /// (`IF NOT EXISTS` would keep it); `CREATE INDEX IF NOT EXISTS` on SQLite.
    pub fn then_create_index(&mut self, name: &'static str, on: &'static str) -> &mut Backfill {
        self.then.push(Then::Index { name, on });
        self
    }

    /// The `lock_timeout` on PostgreSQL of the statements of [`Backfill::then`] that are not
    /// `CONCURRENTLY` (default `MIGRATION_DDL_LOCK_TIMEOUT_MS`'s, 5 s).
    pub fn ddl_lock_timeout(&mut self, timeout: Duration) -> &mut Backfill {
        self.ddl_lock_timeout = timeout.max(Duration::from_millis(1));
        self
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
    pub(super) fn effective_batch_size(&self) -> usize {
        self.capped_batch_size(self.batch_size)
    }

    /// `rows` capped so that one write statement stays within the bind-parameter limits.
    pub(super) fn capped_batch_size(&self, rows: usize) -> usize {
        let per_row = 1 + self.outputs.len() + self.inputs.len();
        rows.min(MAX_BINDS / per_row.max(1)).max(1)
    }

    /// The table.
    pub fn table(&self) -> &'static str {
        self.table
    }

    /// The integer key column.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// Worker threads computing a batch (default: all cores).
    pub fn threads(&mut self, threads: usize) -> &mut Backfill {
        self.threads = threads.max(1);
        self
    }

    pub(super) fn check(&self) -> Result<()> {
        let bad = |reason: String| Error::Backfill {
            table: self.table.to_owned(),
            reason,
            source: None,
        };
        let indexes = self.then.iter().filter_map(|step| match step {
            Then::Index { name, .. } => Some(name),
            Then::Sql(_) => None,
        });
        for name in [self.table, self.key]
            .iter()
            .chain(&self.inputs)
            .chain(&self.outputs)
            .chain(indexes)
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

    /// Checks that the key column is an integer, `NOT NULL` and unique (a primary key or a
    /// single-column unique index without a predicate): claims walk the keys in order and
    /// write rows back by key, so a nullable, duplicate or non-integer key would skip or
    /// double rows. The error names the table and the column.
    pub fn check_key(&self, conn: &mut crate::access::connection::AnyConnection) -> Result<()> {
        use diesel::sql_types::{Integer, Text};
        #[derive(diesel::QueryableByName)]
        struct KeyColumn {
            #[diesel(sql_type = Text)]
            ty: String,
            #[diesel(sql_type = Integer)]
            not_null: i32,
            #[diesel(sql_type = Integer)]
            uniq: i32,
        }
        self.check()?;
        let sql = backend::of(conn.backend()).key_column_sql();
        let found: Vec<KeyColumn> = diesel::sql_query(sql)
            .bind::<Text, _>(self.table)
            .bind::<Text, _>(self.key)
            .load(conn)
            .map_err(Error::db(format!(
                "cannot read the key column {} of {}",
                self.key, self.table
            )))?;
        let bad = |reason: String| Error::Backfill {
            table: self.table.to_owned(),
            reason: format!("its key column {}: {reason}", self.key),
            source: None,
        };
        let Some(column) = found.into_iter().next() else {
            return Err(bad("no such column (or no such table)".into()));
        };
        let ty = column.ty.to_ascii_lowercase();
        let integer = matches!(
            ty.as_str(),
            "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8"
        );
        if !integer {
            return Err(bad(format!(
                "it is of type {}; a backfill needs an integer key",
                column.ty
            )));
        }
        if column.not_null == 0 {
            return Err(bad(
                "it may be NULL; a backfill needs a NOT NULL key (rows with a NULL key would \
                 never be claimed)"
                    .into(),
            ));
        }
        if column.uniq == 0 {
            return Err(bad(
                "it is not unique (no primary key or single-column unique index without a \
                 predicate on it); a backfill writes rows back by key"
                    .into(),
            ));
        }
        Ok(())
    }

    /// How many rows are still pending: an exact count, which reads every row of the table.
    /// For checks that need exactness ("nothing left", as the tests of a backfill assert);
    /// the engine itself never calls it: progress totals and `rows_total` are estimated in
    /// bounded time, and a background backfill's progress is its `rows_done`
    /// ([`BackfillState`](super::BackfillState)).
    pub fn remaining(&self, db: &Database) -> Result<u64> {
        self.check()?;
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE ({})",
            self.table, self.pending
        );
        let count: Count =
            diesel::sql_query(sql)
                .get_result(&mut *db.get()?)
                .map_err(Error::db(format!(
                    "cannot count pending rows of {}",
                    self.table
                )))?;
        Ok(u64::try_from(count.n).unwrap_or(0))
    }
}

/// One statement to run once the backfill is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Then {
    /// The same SQL on every backend.
    Sql(&'static str),
    /// An index `name` on `on` (`table (columns) [WHERE ...]`): `CONCURRENTLY` on PostgreSQL,
    /// an invalid one left by an interrupted build dropped first.
    Index {
        name: &'static str,
        on: &'static str,
    },
}

impl Then {
    /// The statement as the definition's checksum hashes it: a format of our own, not a
    /// `Debug` rendering (STYLE.md 19): `sql:TEXT` or `index:NAME:ON`.
    pub(super) fn normal_form(&self) -> String {
        match self {
            Then::Sql(sql) => format!("sql:{sql}"),
            Then::Index { name, on } => format!("index:{name}:{on}"),
        }
    }
}
