//! The `applied_migrations` table: where it lives, creation, reading, and writing one row per
//! migration.
//!
//! Every statement binds its values; column names are constants of this file and of the
//! backend files (`backend/`, which hold each backend's columns and statements), and the
//! table's schema comes from the catalog, quoted (see [`location`]).

mod location;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend;
use crate::access::connection::AnyConnection;
use crate::foundation::error::{Error, Result};

pub(crate) use crate::foundation::report::{AppliedMigration, Status};
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
    let name = table.sql_name();
    conn.batch_execute(&backend::of(conn.backend()).create_tracking_table(&name))
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

/// Every row of `table`, ordered by name. A legacy table's missing columns read as NULL (and
/// `attempts` as 0), so that read-only callers work before the first locked run upgrades it.
pub(crate) fn load(conn: &mut AnyConnection, table: &Table) -> Result<Vec<AppliedMigration>> {
    let columns = Columns::of(conn, table)?;
    let query = backend::of(conn.backend()).tracking_select(
        &table.sql_name(),
        &|column| columns.has(column),
        columns.applied_at_without_time_zone(),
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
    let dialect = backend::of(conn.backend());
    let without_time_zone = columns.applied_at_without_time_zone();
    let increment: i64 = record.new_attempt.into();
    let updated = diesel::sql_query(dialect.tracking_update(&name, without_time_zone))
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
        diesel::sql_query(dialect.tracking_insert(&name, without_time_zone))
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
