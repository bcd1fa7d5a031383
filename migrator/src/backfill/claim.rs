//! Claiming a batch: the next pending rows in key order, locked on PostgreSQL.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use zeroize::Zeroizing;

use super::{Backfill, MAX_COLUMNS};
use crate::connection::{Database, PooledConnection};
use crate::error::{Error, Result};
use crate::url::Backend;

/// One claimed row: its key and its input values, zeroized when dropped (the copies the
/// database driver makes to bind them in the write are not).
pub(super) struct Claimed {
    pub(super) key: i64,
    pub(super) inputs: Vec<Option<Zeroizing<String>>>,
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

/// A claimed batch; on PostgreSQL it holds the transaction that locks its rows, rolled back
/// if the batch is dropped unwritten.
pub(super) struct Batch {
    pub(super) conn: PooledConnection,
    pub(super) open_transaction: bool,
    pub(super) rows: Vec<Claimed>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.open_transaction {
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

impl Backfill {
    pub(super) fn claim(&self, db: &Database, cursor: &mut Option<i64>) -> Result<Option<Batch>> {
        self.claim_up_to(db, cursor, self.effective_batch_size(), self.upper_key)
    }

    /// Claims at most `limit` pending rows with keys from `cursor` up to `upper_key`, and moves
    /// the cursor past them.
    pub(super) fn claim_up_to(
        &self,
        db: &Database,
        cursor: &mut Option<i64>,
        limit: usize,
        upper_key: Option<i64>,
    ) -> Result<Option<Batch>> {
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
        // Placeholders in the order they appear: SQLite numbers `$N` parameters by first
        // appearance, not by N.
        let sql = format!(
            "SELECT CAST({key} AS BIGINT) AS k, {columns} FROM {table} \
             WHERE ({pending}) AND {key} >= $1 AND {key} <= $2 ORDER BY {key} LIMIT $3{lock}",
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
            .bind::<BigInt, _>(upper_key.unwrap_or(i64::MAX))
            .bind::<BigInt, _>(i64::try_from(self.capped_batch_size(limit)).unwrap_or(i64::MAX))
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
}
