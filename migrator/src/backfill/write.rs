//! Writing a computed batch back: one `UPDATE ... FROM (VALUES ...)` statement, committed.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::RunQueryDsl;

use super::claim::Batch;
use super::store::Sink;
use super::{Backfill, BackfillReport};
use crate::connection::MultiBackend;
use crate::context::Progress;
use crate::error::{Error, Result};
use crate::url::Backend;

impl Backfill {
    pub(super) fn write_batch(
        &self,
        batch: Batch,
        outputs: Vec<Vec<Option<String>>>,
        progress: &Progress,
        report: &mut BackfillReport,
    ) -> Result<()> {
        let claimed = batch.rows.len() as u64;
        let written = self.write(batch, outputs, self.sink.as_ref())?;
        report.rows_updated += written;
        report.rows_skipped += claimed - written.min(claimed);
        report.batches += 1;
        progress.add(written);
        Ok(())
    }

    /// Writes a batch in one statement and commits it; returns the rows written. With a `sink`,
    /// the backfill's `rows_done` advances in the same transaction, so it never counts a batch
    /// that rolled back.
    pub(super) fn write(
        &self,
        mut batch: Batch,
        outputs: Vec<Vec<Option<String>>>,
        sink: Option<&Sink>,
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
        let backend = batch.conn.backend();
        // SQLite's unlocked claims need the guard: only rows still pending, with the inputs
        // that were read.
        let guard_inputs = backend == Backend::Sqlite;
        let sql = self.update_sql(batch.rows.len(), backend);
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
        if sink.is_some() && !batch.open_transaction {
            // SQLite: the write and its progress in one transaction, taking the write lock at
            // once (a deferred one could fail to upgrade under another writer).
            batch
                .conn
                .batch_execute("BEGIN IMMEDIATE")
                .map_err(|e| Error::db(context())(e))?;
            batch.open_transaction = true;
        }
        let written = query
            .execute(&mut *batch.conn)
            .map_err(|e| Error::db(context())(e))?;
        if let Some(sink) = sink {
            sink.record(&mut batch.conn, written as u64, batch.rows.len())
                .map_err(|e| Error::db(context())(e))?;
        }
        if batch.open_transaction {
            batch
                .conn
                .batch_execute("COMMIT")
                .map_err(|e| Error::db(context())(e))?;
            batch.open_transaction = false;
        }
        Ok(written as u64)
    }

    /// The `UPDATE ... FROM (VALUES ...)` statement writing `rows` rows: per row, its key, its
    /// outputs and (SQLite) the inputs that were read, as bind parameters in that order.
    fn update_sql(&self, rows: usize, backend: Backend) -> String {
        let guard_inputs = backend == Backend::Sqlite;
        let per_row = 1 + self.outputs.len() + if guard_inputs { self.inputs.len() } else { 0 };
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
        format!(
            "UPDATE {table} SET {set} FROM {values} WHERE {conditions}",
            table = self.table,
            set = set.join(", "),
            conditions = conditions.join(" AND "),
        )
    }
}
