//! Writing a computed batch back: one guarded statement, with the backfill's progress, in one
//! short transaction.
//!
//! The guard: a row is written only if it is still pending and unchanged since it was claimed
//! (an application write meanwhile wins; the row is claimed again later if it is still
//! pending). On PostgreSQL "unchanged" is the row's version (`xmin`) as read, so that the
//! inputs (e.g. plaintext passwords) never travel back to the server as bind parameters, which
//! a server logging its statements would record; on SQLite (no server log) it is the inputs.
//! On SQLite the inputs are compared only when needed: the write reads the connection's
//! `PRAGMA data_version` once it holds the write lock, and when it is the one the claim read
//! on the same connection before reading the rows, no other connection committed anything in
//! between (this connection's own commits were other batches' rows), so the rows are as they
//! were read and only the pending predicate is checked.
//! On PostgreSQL rows that another transaction holds locked are skipped (`FOR NO KEY UPDATE
//! SKIP LOCKED`), never waited for: they stay pending for a later sweep.
//!
//! - **PostgreSQL**: one statement does it all (the rows as one array per column through
//!   `unnest`, the guarded `UPDATE`, `rows_done`, the worker's row and the release of its
//!   lease, as data-modifying `WITH` queries): one round trip, and a statement whose text does
//!   not grow with the batch.
//! - **SQLite**: `BEGIN IMMEDIATE`, `UPDATE ... FROM (VALUES ...)` statements of up to
//!   [`SQLITE_CHUNK`] rows (kept prepared), the progress, `COMMIT` (calls into the library,
//!   not round trips).

use diesel::connection::SimpleConnection;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::claim::{data_version, release_lease, Batch, Claimed, Lease, Sweep};
use super::{Backfill, BackfillReport};
use crate::access::backend::{
    self, pg_write, sqlite_write, BatchWrites, WriteProgress, WriteRelease, WriteTarget,
};
use crate::access::connection::AnyConnection;
use crate::foundation::error::{Error, Result};
use crate::records::backfill::store::Sink;
use crate::running::context::Progress;

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    k: i64,
}

/// Whether the sink's worker row is the lease's (then one `UPDATE` does both).
fn same_worker(sink: Option<&Sink>, lease: &Lease) -> bool {
    sink.and_then(|s| s.worker.as_deref()) == Some(lease.holder.as_str())
}

impl Backfill {
    /// Writes `batch` (see [`Backfill::write`]), counts it in `report` and `progress`, and
    /// remembers the rows it left pending in `sweep`.
    pub(super) fn write_batch(
        &self,
        conn: &mut AnyConnection,
        batch: &Batch,
        outputs: Vec<Vec<Option<String>>>,
        progress: &Progress,
        report: &mut BackfillReport,
        sweep: &mut Sweep,
    ) -> Result<()> {
        let claimed = batch.rows.len() as u64;
        let written = self.write(
            conn,
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
    /// written (changed, done or locked meanwhile) are remembered in `sweep`. On SQLite, `conn`
    /// must be the connection that claimed the batch (see [`Batch::seen`]).
    pub(super) fn write(
        &self,
        conn: &mut AnyConnection,
        batch: &Batch,
        outputs: Vec<Vec<Option<String>>>,
        sink: Option<&Sink>,
        lease: Option<&Lease>,
        sweep: &mut Sweep,
    ) -> Result<u64> {
        if let Some(bad) = outputs.iter().find(|o| o.len() != self.outputs.len()) {
            return Err(Error::Backfill {
                table: self.table.to_owned(),
                reason: format!(
                    "the computation returned {} values for {} output columns",
                    bad.len(),
                    self.outputs.len()
                ),
                source: None,
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
                source: None,
            });
        }
        let written = match backend::of(conn.backend()).batch_writes() {
            BatchWrites::OneStatement => {
                let mut keys = self.write_postgres(conn, batch, outputs, sink, lease)?;
                keys.sort_unstable();
                let unwritten = batch
                    .rows
                    .iter()
                    .find(|row| keys.binary_search(&row.key).is_err());
                if let Some(row) = unwritten {
                    sweep.skipped(row.key);
                }
                keys.len() as u64
            }
            BatchWrites::OnTheClaimingConnection => {
                let written = self.write_sqlite(conn, batch, outputs, sink, lease)?;
                // Which rows were not written is not asked for (a RETURNING costs more than
                // the guard): the next sweep looks at the whole batch again.
                if written < batch.rows.len() as u64 {
                    if let Some((first, _)) = batch.keys() {
                        sweep.skipped(first);
                    }
                }
                written
            }
        };
        Ok(written)
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

    /// PostgreSQL: the batch, its progress and the lease's release in one statement
    /// ([`pg_write::batch`]): one round trip and one transaction; returns the keys written.
    fn write_postgres(
        &self,
        conn: &mut AnyConnection,
        batch: &Batch,
        outputs: Vec<Vec<Option<String>>>,
        sink: Option<&Sink>,
        lease: Option<&Lease>,
    ) -> Result<Vec<i64>> {
        let context = || format!("cannot write a batch of {}", self.table);
        let width = self.outputs.len();
        let keys: Vec<i64> = batch.rows.iter().map(|row| row.key).collect();
        let versions: Vec<Option<String>> =
            batch.rows.iter().map(|row| row.version.clone()).collect();
        let mut columns: Vec<Vec<Option<String>>> =
            (0..width).map(|_| Vec::with_capacity(keys.len())).collect();
        for out in outputs {
            for (column, value) in columns.iter_mut().zip(out) {
                column.push(value);
            }
        }
        let sql = self.postgres_write_sql(sink, lease);
        let mut query = diesel::sql_query(sql)
            .into_boxed::<diesel::pg::Pg>()
            .bind::<Array<BigInt>, _>(keys);
        for column in columns {
            query = query.bind::<Array<Nullable<Text>>, _>(column);
        }
        query = query.bind::<Array<Nullable<Text>>, _>(versions);
        let (lo, hi) = batch.keys().unwrap_or((0, -1));
        query = query.bind::<BigInt, _>(lo).bind::<BigInt, _>(hi);
        if let Some(sink) = sink {
            query = query
                .bind::<Text, _>(sink.name.clone())
                .bind::<Integer, _>(i32::try_from(batch.rows.len()).unwrap_or(i32::MAX));
            if let Some(worker) = &sink.worker {
                query = query.bind::<Text, _>(worker.clone());
            }
        }
        if let Some(lease) = lease {
            let hi = batch.keys().map_or(i64::MAX - 1, |(_, hi)| hi);
            query = query.bind::<BigInt, _>(hi);
            if !same_worker(sink, lease) {
                query = query.bind::<Text, _>(lease.holder.clone());
            }
        }
        let Some(pg) = backend::postgres_connection(conn) else {
            return Ok(Vec::new());
        };
        let written: Vec<Written> = query.load(pg).map_err(Error::db(context()))?;
        Ok(written.into_iter().map(|w| w.k).collect())
    }

    /// SQLite: the batch in one `UPDATE ... FROM (VALUES ...)` statement with its progress, in
    /// one transaction that takes the write lock at once (a deferred one could fail to upgrade
    /// under another writer); returns the rows written. The rows' inputs are compared with
    /// those read unless nothing was committed by another connection since the claim (see the
    /// module's documentation).
    fn write_sqlite(
        &self,
        conn: &mut AnyConnection,
        batch: &Batch,
        outputs: Vec<Vec<Option<String>>>,
        sink: Option<&Sink>,
        lease: Option<&Lease>,
    ) -> Result<u64> {
        let context = || format!("cannot write a batch of {}", self.table);
        conn.batch_execute("BEGIN IMMEDIATE")
            .map_err(Error::db(context()))?;
        let result = (|| -> Result<u64> {
            // With the write lock held nobody else commits until this transaction ends: the
            // data version now against the one the claim read first.
            let unchanged = match batch.seen {
                Some(seen) => data_version(conn)? == Some(seen),
                None => false,
            };
            let Some(lite) = backend::sqlite_connection(conn) else {
                return Ok(0);
            };
            let compare_inputs = !unchanged;
            let (head, tail) = sqlite_write::chunk(&self.write_target(), compare_inputs);
            let mut written = 0u64;
            let mut outputs = outputs.as_slice();
            for rows in batch.rows.chunks(SQLITE_CHUNK) {
                let (chunk, rest) = outputs.split_at(rows.len().min(outputs.len()));
                outputs = rest;
                let write = SqliteChunk {
                    head: &head,
                    tail: &tail,
                    rows,
                    outputs: chunk,
                    inputs: if compare_inputs {
                        rows.iter()
                            .flat_map(|row| row.inputs.iter())
                            .map(|v| v.as_deref().map(String::as_str))
                            .collect()
                    } else {
                        Vec::new()
                    },
                };
                written += write.execute(lite).map_err(Error::db(context()))? as u64;
            }
            if let Some(sink) = sink {
                sink.record(conn, written, batch.rows.len())
                    .map_err(Error::db(context()))?;
            }
            if let Some(lease) = lease {
                release_lease(conn, lease, batch.keys().map(|(_, hi)| hi))
                    .map_err(Error::db(context()))?;
            }
            conn.batch_execute("COMMIT").map_err(Error::db(context()))?;
            Ok(written)
        })();
        if result.is_err() {
            let _ = conn.batch_execute("ROLLBACK");
        }
        result
    }

    /// The statement of [`Backfill::write_postgres`] ([`pg_write::batch`]), recording the
    /// progress in `sink` and releasing `lease`.
    fn postgres_write_sql(&self, sink: Option<&Sink>, lease: Option<&Lease>) -> String {
        pg_write::batch(
            &self.write_target(),
            sink.map(|sink| WriteProgress {
                backfills: &sink.tables.backfills,
                workers: &sink.tables.workers,
                worker_row: sink.worker.is_some(),
            }),
            lease.map(|lease| WriteRelease {
                workers: &lease.tables.workers,
                same_row: same_worker(sink, lease),
            }),
        )
    }

    /// The table and columns a batch write updates, for the backend's statements.
    fn write_target(&self) -> WriteTarget<'_> {
        WriteTarget {
            table: self.table,
            key: self.key,
            pending: self.pending,
            outputs: &self.outputs,
            inputs: &self.inputs,
        }
    }
}

/// Rows per SQLite write statement. A statement of exactly this many rows stays prepared on
/// its connection (its text depends only on the backfill), so that a batch of thousands of
/// rows does not parse and plan thousands of tuples each time (about half of a write's cost);
/// a last, shorter chunk is prepared for its one use.
const SQLITE_CHUNK: usize = 1000;

/// One SQLite write statement: `head`, the rows' tuples of anonymous `?` parameters (SQLite
/// looks each named one, `$1`, up among the names before it: quadratic in a statement's
/// thousands of parameters), `tail`.
struct SqliteChunk<'a> {
    head: &'a str,
    tail: &'a str,
    rows: &'a [Claimed],
    outputs: &'a [Vec<Option<String>>],
    /// The rows' inputs as read, row after row (empty: not compared).
    inputs: Vec<Option<&'a str>>,
}

impl QueryId for SqliteChunk<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Sqlite> for SqliteChunk<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        if self.rows.len() != SQLITE_CHUNK {
            out.unsafe_to_cache_prepared();
        }
        let per_row = self.inputs.len() / self.rows.len().max(1);
        out.push_sql(self.head);
        for (i, (row, outputs)) in self.rows.iter().zip(self.outputs).enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, i64>(&row.key)?;
            for value in outputs {
                out.push_sql(", ");
                out.push_bind_param::<Nullable<Text>, Option<String>>(value)?;
            }
            for value in self.inputs.iter().skip(i * per_row).take(per_row) {
                out.push_sql(", ");
                out.push_bind_param::<Nullable<Text>, Option<&str>>(value)?;
            }
            out.push_sql(")");
        }
        out.push_sql(self.tail);
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for SqliteChunk<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::backfill::store::Tables;

    /// A sink and a lease map onto the statement's progress and release (the statements
    /// themselves are pinned in `backend/tests.rs`).
    #[test]
    fn the_write_records_the_sink_and_releases_the_lease() {
        let tables = Tables {
            backfills: r#""app".migrator_backfills"#.to_owned(),
            workers: r#""app".migrator_backfill_workers"#.to_owned(),
        };
        let mut backfill = Backfill::new("users", "id");
        backfill
            .input("password")
            .output("pw_hash")
            .output("pw_algo")
            .pending_when("pw_hash IS NULL");
        let sink = |worker: &str| Sink {
            tables: tables.clone(),
            name: "n".into(),
            worker: Some(worker.into()),
        };
        let lease = Lease {
            tables: tables.clone(),
            name: "n".into(),
            holder: "w1".into(),
            ttl: std::time::Duration::from_secs(30),
        };
        assert_eq!(
            backfill.postgres_write_sql(Some(&sink("w1")), Some(&lease)),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7), w0 AS (UPDATE "app".migrator_backfill_workers SET rows_done = rows_done + (SELECT COUNT(*) FROM u), backfill = $7, heartbeat = CURRENT_TIMESTAMP, lease_lo = CASE WHEN lease_hi > $10 THEN GREATEST(lease_lo, $10 + 1) END, lease_until = CASE WHEN lease_hi > $10 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $10 THEN lease_hi END WHERE id = $9) SELECT k FROM u"#,
        );
        assert_eq!(
            backfill.postgres_write_sql(Some(&sink("w2")), Some(&lease)),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7), w0 AS (UPDATE "app".migrator_backfill_workers SET rows_done = rows_done + (SELECT COUNT(*) FROM u), backfill = $7, heartbeat = CURRENT_TIMESTAMP WHERE id = $9), w1 AS (UPDATE "app".migrator_backfill_workers SET lease_lo = CASE WHEN lease_hi > $10 THEN GREATEST(lease_lo, $10 + 1) END, lease_until = CASE WHEN lease_hi > $10 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $10 THEN lease_hi END WHERE id = $11) SELECT k FROM u"#,
        );
    }
}
