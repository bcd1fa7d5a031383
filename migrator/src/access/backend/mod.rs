//! One seam per backend: [`Dialect`], implemented once for PostgreSQL (`postgres.rs`) and once
//! for SQLite (`sqlite.rs`), holds what differs between them: the tracking table's columns and
//! time expressions, the catalog probes, the audit and backfill tables, the backfill state's
//! time arithmetic, replica lag, backups, the backfill engine's claims, data version, row
//! statistics, finishing statements and write algorithm ([`BatchWrites`]), the PostgreSQL
//! lock's statements (`pg_lock`), the DDL lock timeout's and blocker watch's (`pg_ddl`), and
//! Diesel's SQL migrations. The rest of the crate asks [`of`] for the dialect of a backend and
//! never matches on the backend itself.
//!
//! Statements whose text is the same on both backends but is built at run time (a table's
//! name spliced in) are default methods of the trait, so that `tests.rs` pins every
//! statement of both backends byte for byte.

mod dialect;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use diesel::migration::MigrationSource;
use diesel::migration::{Migration, MigrationVersion};
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use diesel_migrations::MigrationHarness;

use crate::access::connection::AnyConnection;
use crate::access::url::Backend;

pub(crate) use dialect::Dialect;
#[cfg(feature = "backfill")]
pub(crate) use dialect::{BatchWrites, WriteProgress, WriteRelease, WriteTarget};
pub(crate) use postgres::ddl as pg_ddl;
pub(crate) use postgres::lock as pg_lock;
#[cfg(feature = "backfill")]
pub(crate) use postgres::write as pg_write;
pub(crate) use postgres::{CURRENT_SCHEMA, REGCLASS};
#[cfg(feature = "backfill")]
pub(crate) use sqlite::write as sqlite_write;

/// The dialect of `backend`: the one place that chooses between the backend files.
pub(crate) fn of(backend: Backend) -> &'static dyn Dialect {
    match backend {
        Backend::Postgres => &postgres::Postgres,
        Backend::Sqlite => &sqlite::Sqlite,
    }
}

/// Quotes an identifier as PostgreSQL's `quote_ident` does (always quoted, `"` doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` in `schema` (quoted), or `name` alone when there is no schema (SQLite): the name of
/// one of migrator's tables, to put in SQL.
pub(crate) fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{name}", quote_ident(schema)),
        None => name.to_owned(),
    }
}

/// `conn`'s own PostgreSQL connection, for statements that bind PostgreSQL's types (arrays)
/// or are built for PostgreSQL alone; `None` on another backend.
#[cfg(feature = "backfill")]
pub(crate) fn postgres_connection(conn: &mut AnyConnection) -> Option<&mut diesel::PgConnection> {
    match conn {
        AnyConnection::Postgres(pg) => Some(pg),
        AnyConnection::Sqlite(_) => None,
    }
}

/// `conn`'s own SQLite connection, for statements built for SQLite alone (a batch write's
/// chunks of anonymous parameters); `None` on another backend.
#[cfg(feature = "backfill")]
pub(crate) fn sqlite_connection(conn: &mut AnyConnection) -> Option<&mut diesel::SqliteConnection> {
    match conn {
        AnyConnection::Sqlite(lite) => Some(lite),
        AnyConnection::Postgres(_) => None,
    }
}

/// The error of Diesel's migration harness.
type HarnessError = Box<dyn std::error::Error + Send + Sync>;

/// The pending Diesel SQL migrations of `source`, each as its name and its version (as
/// `__diesel_schema_migrations` records it), on `conn`'s own connection type (Diesel's harness
/// is implemented per connection, not for [`AnyConnection`]).
pub(crate) fn pending_sql_migrations<S>(
    conn: &mut AnyConnection,
    source: S,
) -> std::result::Result<Vec<(String, String)>, HarnessError>
where
    S: MigrationSource<Pg> + MigrationSource<Sqlite>,
{
    fn names<DB: diesel::backend::Backend>(
        pending: Vec<Box<dyn Migration<DB>>>,
    ) -> Vec<(String, String)> {
        pending
            .iter()
            .map(|m| (m.name().to_string(), m.name().version().to_string()))
            .collect()
    }
    match conn {
        AnyConnection::Postgres(c) => c.pending_migrations(source).map(names),
        AnyConnection::Sqlite(c) => c.pending_migrations(source).map(names),
    }
}

/// Runs the pending Diesel SQL migrations of `source` on `conn`'s own connection type; returns
/// their versions.
pub(crate) fn run_sql_migrations<S>(
    conn: &mut AnyConnection,
    source: S,
) -> std::result::Result<Vec<String>, HarnessError>
where
    S: MigrationSource<Pg> + MigrationSource<Sqlite>,
{
    fn versions(run: Vec<MigrationVersion<'_>>) -> Vec<String> {
        run.iter().map(ToString::to_string).collect()
    }
    match conn {
        AnyConnection::Postgres(c) => c.run_pending_migrations(source).map(versions),
        AnyConnection::Sqlite(c) => c.run_pending_migrations(source).map(versions),
    }
}
