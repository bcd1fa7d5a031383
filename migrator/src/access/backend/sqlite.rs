//! SQLite's SQL: the tracking table's columns (UTC text times), catalog probes through
//! `sqlite_master` and the `pragma_*` table functions, the audit and backfill tables, and
//! backups with `VACUUM INTO`. SQLite has no schemas, no replicas, no session timeouts and no
//! worker leases.

use std::path::Path;

use diesel::sql_types::Text;
use diesel::RunQueryDsl;

#[cfg(feature = "backfill")]
use super::dialect::BatchWrites;
use super::dialect::Dialect;
use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};

/// SQLite.
#[derive(Debug)]
pub(crate) struct Sqlite;

/// A batch write's statements (`backfill/write.rs` runs them on a backend whose
/// [`Dialect::batch_writes`] is [`BatchWrites::OnTheClaimingConnection`]).
#[cfg(feature = "backfill")]
pub(crate) mod write {
    use crate::access::backend::dialect::WriteTarget;

    /// The `UPDATE ... FROM (VALUES ...)` statement, around its rows: what comes before the
    /// `VALUES` tuples and what after. Each tuple holds a row's key, its outputs and (with
    /// `compare_inputs`) the inputs that were read, compared with the row's (`IS`).
    pub(crate) fn chunk(target: &WriteTarget<'_>, compare_inputs: bool) -> (String, String) {
        let inputs = if compare_inputs {
            target.inputs.len()
        } else {
            0
        };
        let mut names = vec!["__k".to_owned()];
        names.extend((0..target.outputs.len()).map(|i| format!("__o{i}")));
        names.extend((0..inputs).map(|i| format!("__i{i}")));
        let set: Vec<String> = target
            .outputs
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = v.__o{i}"))
            .collect();
        let mut conditions = vec![
            format!("{}.{} = v.__k", target.table, target.key),
            format!("({})", target.pending),
        ];
        conditions.extend(
            target
                .inputs
                .iter()
                .take(inputs)
                .enumerate()
                .map(|(i, col)| format!("{}.{col} IS v.__i{i}", target.table)),
        );
        // Columns renamed from VALUES' `columnN`, which a table's own columns could shadow in
        // the pending predicate.
        let renamed: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("column{} AS {name}", i + 1))
            .collect();
        (
            format!(
                "UPDATE {table} SET {set} FROM (SELECT {renamed} FROM (VALUES ",
                table = target.table,
                set = set.join(", "),
                renamed = renamed.join(", "),
            ),
            format!(")) AS v WHERE {}", conditions.join(" AND ")),
        )
    }
}

impl Dialect for Sqlite {
    fn columns_sql(&self) -> &'static str {
        "SELECT name, type AS ty FROM pragma_table_info($1)"
    }

    fn table_exists_sql(&self) -> &'static str {
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
    }

    fn table_schema_sql(&self) -> Option<&'static str> {
        None
    }

    /// A single-column primary key counts as NOT NULL: an INTEGER PRIMARY KEY is the rowid,
    /// never NULL; other types allow NULL only through a legacy quirk of SQLite that
    /// applications do not use.
    #[cfg(feature = "backfill")]
    fn key_column_sql(&self) -> &'static str {
        "SELECT t.type AS ty, \
         CASE WHEN t.\"notnull\" = 1 OR (t.pk = 1 \
           AND (SELECT COUNT(*) FROM pragma_table_info($1) WHERE pk > 0) = 1) \
           THEN 1 ELSE 0 END AS not_null, \
         CASE WHEN (t.pk = 1 AND (SELECT COUNT(*) FROM pragma_table_info($1) \
           WHERE pk > 0) = 1) OR EXISTS (SELECT 1 FROM pragma_index_list($1) il \
           WHERE il.\"unique\" = 1 AND il.partial = 0 \
           AND (SELECT COUNT(*) FROM pragma_index_info(il.name)) = 1 \
           AND (SELECT name FROM pragma_index_info(il.name)) = $2) \
           THEN 1 ELSE 0 END AS uniq \
         FROM pragma_table_info($1) t WHERE t.name = $2"
    }

    fn tracking_columns(&self) -> &'static str {
        "(
    migration_name TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms BIGINT,
    error_message TEXT,
    checksum TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    applied_by TEXT
)"
    }

    fn applied_at_read(&self, _without_time_zone: bool) -> &'static str {
        "CAST(applied_at AS TEXT)"
    }

    /// SQLite's `CURRENT_TIMESTAMP` is UTC.
    fn applied_at_now(&self, _without_time_zone: bool) -> &'static str {
        "CURRENT_TIMESTAMP"
    }

    fn audit_columns(&self) -> &'static str {
        "(id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, \
         actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, \
         outcome TEXT NOT NULL, process TEXT)"
    }

    #[cfg(feature = "backfill")]
    fn backfill_columns(&self) -> (&'static str, &'static str) {
        (
            "(name TEXT PRIMARY KEY, migration TEXT NOT NULL, \
             status TEXT NOT NULL CHECK (status IN \
               ('active', 'paused', 'finished', 'failed', 'cancelled')), \
             rows_done INTEGER NOT NULL DEFAULT 0, rows_total INTEGER NOT NULL DEFAULT 0, \
             batch_size INTEGER NOT NULL DEFAULT 0, upper_key INTEGER, last_error TEXT, \
             created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, finished_at TEXT, \
             definition TEXT)",
            "(id TEXT PRIMARY KEY, backfill TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, \
             thread INTEGER NOT NULL, rows_done INTEGER NOT NULL DEFAULT 0, \
             started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             heartbeat TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )
    }

    #[cfg(feature = "backfill")]
    fn add_lease_columns(&self, _workers: &str) -> Option<String> {
        None
    }

    #[cfg(feature = "backfill")]
    fn leases(&self) -> bool {
        false
    }

    #[cfg(feature = "backfill")]
    fn timestamp_text(&self, column: &str) -> String {
        format!("CAST({column} AS TEXT)")
    }

    #[cfg(feature = "backfill")]
    fn elapsed_secs(&self) -> &'static str {
        "CAST((julianday(COALESCE(finished_at, CURRENT_TIMESTAMP)) - julianday(created_at)) \
         * 86400.0 AS REAL)"
    }

    #[cfg(feature = "backfill")]
    fn heartbeat_within(&self, secs: i64) -> String {
        format!("heartbeat > datetime('now', '-{secs} seconds')")
    }

    #[cfg(feature = "backfill")]
    fn delete_dead_workers(&self, workers: &str) -> String {
        format!(
            "DELETE FROM {workers} WHERE julianday(heartbeat) < julianday('now') - $1 / 86400.0"
        )
    }

    #[cfg(feature = "backfill")]
    fn replica_lag_sql(&self) -> Option<&'static str> {
        None
    }

    /// The pending rows of the window, read (one process at a time: no locks, no leases, no
    /// versions).
    #[cfg(feature = "backfill")]
    fn claim_sql(
        &self,
        table: &str,
        key: &str,
        pending: &str,
        columns: &str,
        _lease: Option<&str>,
    ) -> String {
        format!(
            "SELECT CAST({key} AS BIGINT) AS c, CAST({key} AS BIGINT) AS k, {columns}, \
             CAST(NULL AS TEXT) AS x FROM {table} \
             WHERE {key} >= $1 AND {key} <= $2 AND ({pending}) ORDER BY {key} LIMIT $3",
        )
    }

    #[cfg(feature = "backfill")]
    fn data_version_sql(&self) -> Option<&'static str> {
        Some("PRAGMA data_version")
    }

    #[cfg(feature = "backfill")]
    fn batch_writes(&self) -> BatchWrites {
        BatchWrites::OnTheClaimingConnection
    }

    /// The first number of each of the table's rows of `sqlite_stat1` is its row count.
    #[cfg(feature = "backfill")]
    fn statistics_sql(&self) -> &'static str {
        "SELECT CAST(MAX(CAST(stat AS INTEGER)) AS REAL) AS n FROM sqlite_stat1 \
         WHERE tbl = $1"
    }

    /// `sqlite_stat1` exists once `ANALYZE` ran.
    #[cfg(feature = "backfill")]
    fn statistics_table(&self) -> Option<&'static str> {
        Some("sqlite_stat1")
    }

    #[cfg(feature = "backfill")]
    fn finish_lock_sql(&self) -> Option<&'static str> {
        None
    }

    #[cfg(feature = "backfill")]
    fn invalid_index_sql(&self) -> Option<&'static str> {
        None
    }

    #[cfg(feature = "backfill")]
    fn drop_index(&self, name: &str) -> String {
        format!("DROP INDEX IF EXISTS {name}")
    }

    #[cfg(feature = "backfill")]
    fn create_index(&self, name: &str, on: &str) -> String {
        format!("CREATE INDEX IF NOT EXISTS {name} ON {on}")
    }

    fn lock_timeouts(&self) -> bool {
        false
    }

    fn backup_extension(&self) -> &'static str {
        "sqlite3"
    }

    /// The database file's stem (`sqlite` when it has none).
    fn database_name(&self, db: &Database) -> Result<String> {
        Ok(db
            .url()
            .sqlite_path()
            .and_then(|p| Path::new(p).file_stem())
            .map_or_else(|| "sqlite".into(), |s| s.to_string_lossy().into_owned()))
    }

    /// `VACUUM INTO`, SQLite's online backup into a fresh database file.
    fn backup_into(&self, db: &Database, _config: &Config, out: &Path) -> Result<()> {
        let mut conn = db.get()?;
        let target = out.to_string_lossy().into_owned();
        diesel::sql_query("VACUUM INTO $1")
            .bind::<Text, _>(&target)
            .execute(&mut *conn)
            .map_err(|e| Error::Backup {
                context: "cannot write the SQLite backup".into(),
                // The database's error as migrator shows it (values redacted).
                source: Some(Box::new(Error::db(format!("VACUUM INTO {target} failed"))(
                    e,
                ))),
            })?;
        Ok(())
    }
}
