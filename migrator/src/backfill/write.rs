//! Writing a computed batch back: one guarded `UPDATE ... FROM (VALUES ...)` statement, with
//! the backfill's progress, in one short transaction.
//!
//! The guard: a row is written only if it is still pending and unchanged since it was claimed
//! (an application write meanwhile wins; the row is claimed again later if it is still
//! pending). On PostgreSQL "unchanged" is the row's version (`xmin`) as read, so that the
//! inputs (e.g. plaintext passwords) never travel back to the server as bind parameters, which
//! a server logging its statements would record; on SQLite (no server log) it is the inputs. On PostgreSQL rows that another transaction holds locked are skipped
//! (`FOR NO KEY UPDATE SKIP LOCKED`), never waited for: they stay pending for a later sweep.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::claim::{release_lease, Batch, Lease, Sweep};
use super::store::Sink;
use super::{Backfill, BackfillReport};
use crate::connection::{AnyConnection, Database, MultiBackend};
use crate::context::Progress;
use crate::error::{Error, Result};
use crate::url::Backend;

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    k: i64,
}

impl Backfill {
    /// Writes `batch` (see [`Backfill::write`]), counts it in `report` and `progress`, and
    /// remembers the rows it left pending in `sweep`.
    pub(super) fn write_batch(
        &self,
        db: &Database,
        batch: &Batch,
        outputs: Vec<Vec<Option<String>>>,
        progress: &Progress,
        report: &mut BackfillReport,
        sweep: &mut Sweep,
    ) -> Result<()> {
        let claimed = batch.rows.len() as u64;
        let written = self.write(
            db,
            batch,
            outputs,
            self.sink.as_ref(),
            self.lease.as_ref(),
            sweep,
        )?;
        report.rows_updated += written;
        report.rows_skipped += claimed - written.min(claimed);
        report.batches += 1;
        progress.add(written);
        Ok(())
    }

    /// Writes a batch in one statement and commits it; returns the rows written. With a `sink`,
    /// the backfill's `rows_done` advances in the same transaction, so it never counts a batch
    /// that rolled back; with a `lease`, the batch's keys are released in it too. Rows not
    /// written (changed, done or locked meanwhile) are remembered in `sweep`.
    pub(super) fn write(
        &self,
        db: &Database,
        batch: &Batch,
        outputs: Vec<Vec<Option<String>>>,
        sink: Option<&Sink>,
        lease: Option<&Lease>,
        sweep: &mut Sweep,
    ) -> Result<u64> {
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
        if outputs.len() != batch.rows.len() {
            return Err(Error::Backfill {
                table: self.table.to_owned(),
                reason: format!(
                    "the computation returned {} rows for a batch of {}",
                    outputs.len(),
                    batch.rows.len()
                ),
            });
        }
        let mut conn = db.get()?;
        let backend = conn.backend();
        let sql = self.update_sql(batch.rows.len(), backend);
        let mut query = diesel::sql_query(sql).into_boxed::<MultiBackend>();
        for (row, out) in batch.rows.iter().zip(outputs) {
            query = query.bind::<BigInt, _>(row.key);
            for value in out {
                query = query.bind::<Nullable<Text>, _>(value);
            }
            match backend {
                Backend::Postgres => {
                    query = query.bind::<Nullable<Text>, _>(row.version.clone());
                }
                Backend::Sqlite => {
                    for value in &row.inputs {
                        query = query.bind::<Nullable<Text>, _>(value.as_deref().cloned());
                    }
                }
            }
        }
        // The write and its progress in one transaction (SQLite: taking the write lock at
        // once; a deferred one could fail to upgrade under another writer).
        let begin = match backend {
            Backend::Postgres => "BEGIN",
            Backend::Sqlite => "BEGIN IMMEDIATE",
        };
        conn.batch_execute(begin).map_err(Error::db(context()))?;
        let result = (|| -> Result<Vec<i64>> {
            let written: Vec<Written> = query.load(&mut *conn).map_err(Error::db(context()))?;
            let written: Vec<i64> = written.into_iter().map(|w| w.k).collect();
            if let Some(sink) = sink {
                sink.record(&mut conn, written.len() as u64, batch.rows.len())
                    .map_err(Error::db(context()))?;
            }
            if let Some(lease) = lease {
                release_lease(&mut conn, lease, batch.keys().map(|(_, hi)| hi))
                    .map_err(Error::db(context()))?;
            }
            conn.batch_execute("COMMIT").map_err(Error::db(context()))?;
            Ok(written)
        })();
        let mut written = match result {
            Ok(written) => written,
            Err(error) => {
                let _ = conn.batch_execute("ROLLBACK");
                return Err(error);
            }
        };
        written.sort_unstable();
        for row in &batch.rows {
            if written.binary_search(&row.key).is_err() {
                sweep.skipped(row.key);
            }
        }
        Ok(written.len() as u64)
    }

    /// Gives up a claimed batch without writing it (its computation failed): its keys go back
    /// to the other workers at once instead of when the lease expires.
    pub(super) fn give_up(&self, conn: &mut AnyConnection, batch: &Batch) {
        if let (Some(lease), Some((_, hi))) = (self.lease.as_ref(), batch.keys()) {
            if let Err(e) = release_lease(conn, lease, Some(hi)) {
                log::debug!("Could not release a lease on {}: {e}", self.table);
            }
        }
    }

    /// The `UPDATE ... FROM (VALUES ...)` statement writing `rows` rows: per row, its key, its
    /// outputs and the inputs that were read, as bind parameters in that order. It returns the
    /// keys it wrote.
    pub(super) fn update_sql(&self, rows: usize, backend: Backend) -> String {
        // Per row: its key, its outputs, then its guard (PostgreSQL: its version; SQLite: its
        // inputs).
        let guards = match backend {
            Backend::Postgres => 1,
            Backend::Sqlite => self.inputs.len(),
        };
        let per_row = 1 + self.outputs.len() + guards;
        let mut placeholder = 0;
        let tuples: Vec<String> = (0..rows)
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
        names.extend((0..guards).map(|i| format!("__i{i}")));
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
        match backend {
            Backend::Postgres => {
                conditions.push(format!("CAST({}.xmin AS TEXT) = v.__i0", self.table));
                // Rows another transaction holds are skipped, never waited for.
                format!(
                    "WITH v ({names}) AS (VALUES {tuples}), \
                     l AS (SELECT t.{key} AS __k FROM {table} t JOIN v ON t.{key} = v.__k \
                     FOR NO KEY UPDATE OF t SKIP LOCKED) \
                     UPDATE {table} SET {set} FROM v JOIN l ON l.__k = v.__k \
                     WHERE {conditions} RETURNING CAST({table}.{key} AS BIGINT) AS k",
                    names = names.join(", "),
                    tuples = tuples.join(", "),
                    key = self.key,
                    table = self.table,
                    set = set.join(", "),
                    conditions = conditions.join(" AND "),
                )
            }
            Backend::Sqlite => {
                conditions.extend(
                    self.inputs
                        .iter()
                        .enumerate()
                        .map(|(i, col)| format!("{}.{col} IS v.__i{i}", self.table)),
                );
                let renamed: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| format!("column{} AS {name}", i + 1))
                    .collect();
                format!(
                    "UPDATE {table} SET {set} FROM (SELECT {renamed} FROM (VALUES {tuples})) AS v \
                     WHERE {conditions} RETURNING CAST({table}.{key} AS BIGINT) AS k",
                    table = self.table,
                    set = set.join(", "),
                    renamed = renamed.join(", "),
                    tuples = tuples.join(", "),
                    conditions = conditions.join(" AND "),
                    key = self.key,
                )
            }
        }
    }
}
