//! `migrator_backfills` and `migrator_backfill_workers` themselves: their names beside
//! `applied_migrations`, creating and upgrading them (their columns per backend are the backend
//! files'), finding them.

use diesel::connection::SimpleConnection;

use crate::access::backend;
use crate::access::connection::{AnyConnection, Database};
use crate::foundation::error::{Error, Result};
use crate::records::tracking::{self, Table};

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
        Tables {
            backfills: backend::qualified(table.schema(), BACKFILLS),
            workers: backend::qualified(table.schema(), WORKERS),
        }
    }
}

/// Creates both tables beside `applied_migrations` if missing. Callers hold the migration lock
/// (a migration scheduling a backfill).
pub(crate) fn ensure(conn: &mut AnyConnection, table: &Table) -> Result<Tables> {
    let tables = Tables::beside(table);
    let ddl =
        backend::of(conn.backend()).create_backfill_tables(&tables.backfills, &tables.workers);
    conn.batch_execute(&ddl)
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
        Ok(!crate::access::schema::has_column(conn, table, column)?)
    };
    if missing(conn, &tables.backfills, "definition")? {
        conn.batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN definition TEXT",
            tables.backfills
        ))
        .map_err(Error::db(context()))?;
    }
    if let Some(alter) = backend::of(conn.backend()).add_lease_columns(&tables.workers) {
        if missing(conn, &tables.workers, "lease_until")? {
            conn.batch_execute(&alter).map_err(Error::db(context()))?;
        }
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
