//! `migrator_backfills` and `migrator_backfill_workers` themselves: their names beside
//! `applied_migrations`, their columns per backend, creating and upgrading them, finding them.

use diesel::connection::SimpleConnection;

use crate::connection::{AnyConnection, Database};
use crate::error::{Error, Result};
use crate::tracking::{self, quote_ident, Table};
use crate::url::Backend;

/// The table of backfills.
pub(crate) const BACKFILLS: &str = "migrator_backfills";
/// The table of their workers.
pub(crate) const WORKERS: &str = "migrator_backfill_workers";

/// The two tables of one database, as names to put in SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tables {
    pub(crate) backfills: String,
    pub(crate) workers: String,
}

impl Tables {
    fn beside(table: &Table) -> Tables {
        match table.schema() {
            Some(schema) => Tables {
                backfills: format!("{}.{BACKFILLS}", quote_ident(schema)),
                workers: format!("{}.{WORKERS}", quote_ident(schema)),
            },
            None => Tables {
                backfills: BACKFILLS.to_owned(),
                workers: WORKERS.to_owned(),
            },
        }
    }
}

fn columns(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Postgres => (
            "(name TEXT PRIMARY KEY, migration TEXT NOT NULL, \
             status TEXT NOT NULL CHECK (status IN \
               ('active', 'paused', 'finished', 'failed', 'cancelled')), \
             rows_done BIGINT NOT NULL DEFAULT 0, rows_total BIGINT NOT NULL DEFAULT 0, \
             batch_size INTEGER NOT NULL DEFAULT 0, upper_key BIGINT, last_error TEXT, \
             created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             finished_at TIMESTAMPTZ, definition TEXT)",
            "(id TEXT PRIMARY KEY, backfill TEXT, host TEXT NOT NULL, pid BIGINT NOT NULL, \
             thread INTEGER NOT NULL, rows_done BIGINT NOT NULL DEFAULT 0, \
             started_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             heartbeat TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             lease_lo BIGINT, lease_hi BIGINT, lease_until TIMESTAMPTZ)",
        ),
        Backend::Sqlite => (
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
        ),
    }
}

/// Creates both tables beside `applied_migrations` if missing. Callers hold the migration lock
/// (a migration scheduling a backfill).
pub(crate) fn ensure(conn: &mut AnyConnection, table: &Table) -> Result<Tables> {
    let tables = Tables::beside(table);
    let (backfills, workers) = columns(conn.backend());
    conn.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} {backfills}; CREATE TABLE IF NOT EXISTS {} {workers};",
        tables.backfills, tables.workers
    ))
    .map_err(Error::db(format!("cannot create the {BACKFILLS} tables")))?;
    upgrade(conn, &tables)?;
    Ok(tables)
}

/// Columns added since the tables were first made (tables of an earlier version gain them):
/// `definition` (the backfill's checksum) and, on PostgreSQL, the workers' leases. Looked up
/// first, so that nothing takes a lock on tables that are up to date.
pub(crate) fn upgrade(conn: &mut AnyConnection, tables: &Tables) -> Result<()> {
    let context = || format!("cannot add columns to the {BACKFILLS} tables");
    let missing = |conn: &mut AnyConnection, table: &str, column: &str| -> Result<bool> {
        Ok(!crate::schema::has_column(conn, table, column)?)
    };
    if missing(conn, &tables.backfills, "definition")? {
        conn.batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN definition TEXT",
            tables.backfills
        ))
        .map_err(Error::db(context()))?;
    }
    if conn.backend() == Backend::Postgres && missing(conn, &tables.workers, "lease_until")? {
        conn.batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS lease_lo BIGINT, \
             ADD COLUMN IF NOT EXISTS lease_hi BIGINT, \
             ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ",
            tables.workers
        ))
        .map_err(Error::db(context()))?;
    }
    Ok(())
}

/// Both tables of `db`, if they exist (read-only callers create nothing).
pub(crate) fn find(db: &Database, conn: &mut AnyConnection) -> Result<Option<Tables>> {
    let Some(table) = tracking::find(db, conn)? else {
        return Ok(None);
    };
    let tables = Tables::beside(&table);
    let exists = tracking::exists_beside(conn, &table, BACKFILLS)?;
    Ok(exists.then_some(tables))
}
