//! The `applied_migrations` table: where it lives, creation, reading, and writing one row per
//! migration.
//!
//! Every statement binds its values; column names are constants of this file, and the table's
//! schema comes from the catalog, quoted (see [`location`]).

mod location;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::connection::AnyConnection;
use crate::error::{Error, Result};
use crate::url::Backend;

pub(crate) use crate::report::{AppliedMigration, Status};
pub(crate) use location::quote_ident;
use location::Columns;
pub(crate) use location::TABLE;
pub(crate) use location::{exists, exists_beside, find, locate, remember, Table};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    migration_name: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    applied_at: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    execution_time_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    error_message: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    checksum: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    attempts: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    applied_by: Option<String>,
}

const COLUMNS_POSTGRES: &str = "(
    migration_name VARCHAR(255) PRIMARY KEY,
    status VARCHAR(20) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms BIGINT,
    error_message TEXT,
    checksum VARCHAR(64),
    attempts INTEGER NOT NULL DEFAULT 0,
    applied_by TEXT
)";

const COLUMNS_SQLITE: &str = "(
    migration_name TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms BIGINT,
    error_message TEXT,
    checksum TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    applied_by TEXT
)";

/// Columns added by migrator to a table created by an older tool (such a table has
/// only name, status, time, duration and error).
const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("checksum", "VARCHAR(64)"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("applied_by", "TEXT"),
];

/// Creates `table` if missing, and adds the columns a legacy table lacks (keeping its rows).
/// Callers hold the migration lock.
pub(crate) fn ensure_table(conn: &mut AnyConnection, table: &Table) -> Result<()> {
    let columns = match conn.backend() {
        Backend::Postgres => COLUMNS_POSTGRES,
        Backend::Sqlite => COLUMNS_SQLITE,
    };
    let name = table.sql_name();
    conn.batch_execute(&format!("CREATE TABLE IF NOT EXISTS {name} {columns}"))
        .map_err(Error::db(format!("cannot create the {TABLE} table")))?;
    let existing = Columns::of(conn, table)?;
    for (column, ty) in ADDED_COLUMNS {
        if !existing.has(column) {
            log::warn!("Adding column {column} to the existing {TABLE} table");
            conn.batch_execute(&format!("ALTER TABLE {name} ADD COLUMN {column} {ty}"))
                .map_err(Error::db(format!("cannot add column {column} to {TABLE}")))?;
        }
    }
    Ok(())
}

/// How `applied_at` reads as UTC text (`YYYY-MM-DDTHH:MM:SS.mmmZ` on PostgreSQL).
fn applied_at_read(backend: Backend, columns: &Columns) -> &'static str {
    match backend {
        // Holds UTC wall-clock time (see `applied_at_now`): format it as it is.
        Backend::Postgres if columns.applied_at_without_time_zone() => {
            "to_char(applied_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        }
        Backend::Postgres => {
            "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        }
        Backend::Sqlite => "CAST(applied_at AS TEXT)",
    }
}

/// The value written to `applied_at`: now, in UTC. A PostgreSQL `TIMESTAMP` without time zone
/// would take `CURRENT_TIMESTAMP` in the session's time zone, so it gets UTC wall-clock time
/// explicitly. (SQLite's `CURRENT_TIMESTAMP` is UTC.)
fn applied_at_now(backend: Backend, columns: &Columns) -> &'static str {
    match backend {
        Backend::Postgres if columns.applied_at_without_time_zone() => {
            "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
        }
        _ => "CURRENT_TIMESTAMP",
    }
}

/// Every row of `table`, ordered by name. A legacy table's missing columns read as NULL (and
/// `attempts` as 0), so that read-only callers work before the first locked run upgrades it.
pub(crate) fn load(conn: &mut AnyConnection, table: &Table) -> Result<Vec<AppliedMigration>> {
    let columns = Columns::of(conn, table)?;
    let or_null = |column: &str, expr: &str, ty: &str| {
        if columns.has(column) {
            expr.to_owned()
        } else {
            format!("CAST(NULL AS {ty})")
        }
    };
    let applied_at = or_null(
        "applied_at",
        applied_at_read(conn.backend(), &columns),
        "TEXT",
    );
    let execution_time_ms = or_null(
        "execution_time_ms",
        "CAST(execution_time_ms AS BIGINT)",
        "BIGINT",
    );
    let error_message = or_null("error_message", "CAST(error_message AS TEXT)", "TEXT");
    let checksum = or_null("checksum", "CAST(checksum AS TEXT)", "TEXT");
    let attempts = or_null("attempts", "CAST(attempts AS BIGINT)", "BIGINT");
    let applied_by = or_null("applied_by", "CAST(applied_by AS TEXT)", "TEXT");
    let query = format!(
        "SELECT CAST(migration_name AS TEXT) AS migration_name, CAST(status AS TEXT) AS status, \
         {applied_at} AS applied_at, {execution_time_ms} AS execution_time_ms, \
         {error_message} AS error_message, {checksum} AS checksum, {attempts} AS attempts, \
         {applied_by} AS applied_by FROM {} ORDER BY migration_name",
        table.sql_name()
    );
    let rows: Vec<Row> = diesel::sql_query(query)
        .load(conn)
        .map_err(Error::db("cannot read the applied_migrations table"))?;
    rows.into_iter()
        .map(|row| {
            let status = row.status.parse().map_err(|reason| Error::Tracking {
                migration: row.migration_name.clone(),
                reason,
            })?;
            Ok(AppliedMigration {
                id: row.migration_name,
                status,
                applied_at: row.applied_at,
                execution_time_ms: row.execution_time_ms,
                error_message: row.error_message,
                checksum: row.checksum,
                attempts: row.attempts.unwrap_or(0),
                applied_by: row.applied_by,
            })
        })
        .collect()
}

/// What to write for one migration.
pub(crate) struct Record<'a> {
    pub name: &'a str,
    pub status: Status,
    pub execution_time_ms: Option<i64>,
    pub error_message: Option<&'a str>,
    pub checksum: Option<&'a str>,
    pub applied_by: &'a str,
    /// Count this write as a new attempt.
    pub new_attempt: bool,
}

/// Writes a row of `table` (upgraded by [`ensure_table`]): update in place, insert if absent.
/// Callers hold the migration lock, so no other runner writes between the two statements (and
/// a legacy table without a unique constraint works too).
pub(crate) fn write(conn: &mut AnyConnection, table: &Table, record: &Record<'_>) -> Result<()> {
    let context = || {
        format!(
            "cannot record migration {} as {}",
            record.name, record.status
        )
    };
    let name = table.sql_name();
    let columns = Columns::of(conn, table).map_err(|e| match e {
        Error::Database { source, .. } => Error::db(context())(source),
        other => other,
    })?;
    let now = applied_at_now(conn.backend(), &columns);
    let increment: i64 = record.new_attempt.into();
    let updated = diesel::sql_query(format!(
        "UPDATE {name} SET status = $1, applied_at = {now}, \
         execution_time_ms = $2, error_message = $3, checksum = COALESCE($4, checksum), \
         attempts = COALESCE(attempts, 0) + $5, applied_by = $6 WHERE migration_name = $7"
    ))
    .bind::<Text, _>(record.status.as_str())
    .bind::<Nullable<BigInt>, _>(record.execution_time_ms)
    .bind::<Nullable<Text>, _>(record.error_message)
    .bind::<Nullable<Text>, _>(record.checksum)
    .bind::<BigInt, _>(increment)
    .bind::<Text, _>(record.applied_by)
    .bind::<Text, _>(record.name)
    .execute(conn)
    .map_err(|e| Error::db(context())(e))?;
    if updated == 0 {
        diesel::sql_query(format!(
            "INSERT INTO {name} (migration_name, status, applied_at, \
             execution_time_ms, error_message, checksum, attempts, applied_by) \
             VALUES ($1, $2, {now}, $3, $4, $5, $6, $7)"
        ))
        .bind::<Text, _>(record.name)
        .bind::<Text, _>(record.status.as_str())
        .bind::<Nullable<BigInt>, _>(record.execution_time_ms)
        .bind::<Nullable<Text>, _>(record.error_message)
        .bind::<Nullable<Text>, _>(record.checksum)
        .bind::<BigInt, _>(increment)
        .bind::<Text, _>(record.applied_by)
        .execute(conn)
        .map_err(|e| Error::db(context())(e))?;
    }
    Ok(())
}

/// Deletes a row of `table` (the `pending` of the CLI's `mark`).
pub(crate) fn delete(conn: &mut AnyConnection, table: &Table, name: &str) -> Result<usize> {
    diesel::sql_query(format!(
        "DELETE FROM {} WHERE migration_name = $1",
        table.sql_name()
    ))
    .bind::<Text, _>(name)
    .execute(conn)
    .map_err(Error::db(format!(
        "cannot delete the row of migration {name}"
    )))
}

/// `host:pid` of this process, for `applied_by`.
pub(crate) fn runner_identity() -> String {
    format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}
