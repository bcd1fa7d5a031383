//! Diesel SQL migrations (`embed_migrations!`), run on the inner connection of each backend.

use diesel::backend::Backend;
use diesel::migration::{Migration, MigrationSource};
use diesel_migrations::EmbeddedMigrations;

use crate::access::backend;
use crate::access::connection::AnyConnection;
use crate::foundation::error::{Error, Result};

/// A `'static` set of embedded migrations (Diesel's type is not `Clone`).
#[derive(Clone, Copy)]
pub(crate) struct SqlMigrations(pub(crate) &'static EmbeddedMigrations);

impl std::fmt::Debug for SqlMigrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlMigrations")
    }
}

impl<DB: Backend> MigrationSource<DB> for SqlMigrations {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<DB>>>> {
        <EmbeddedMigrations as MigrationSource<DB>>::migrations(self.0)
    }
}

fn sql_error(e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Error::SqlMigrations { source: e }
}

impl SqlMigrations {
    /// Names of the pending SQL migrations.
    pub(crate) fn pending(self, conn: &mut AnyConnection) -> Result<Vec<String>> {
        let pending = backend::pending_sql_migrations(conn, self).map_err(sql_error)?;
        Ok(pending.into_iter().map(|(name, _)| name).collect())
    }

    /// The versions of the pending ones, as [`SqlMigrations::run`] returns those it applied.
    pub(crate) fn pending_versions(self, conn: &mut AnyConnection) -> Result<Vec<String>> {
        let pending = backend::pending_sql_migrations(conn, self).map_err(sql_error)?;
        Ok(pending.into_iter().map(|(_, version)| version).collect())
    }

    /// Like [`SqlMigrations::pending`], but never creates Diesel's table (for read-only
    /// callers): without the table, every SQL migration is pending.
    pub(crate) fn pending_read_only(self, conn: &mut AnyConnection) -> Result<Vec<String>> {
        if crate::access::schema::table_exists(conn, "__diesel_schema_migrations")? {
            return self.pending(conn);
        }
        let all: Vec<Box<dyn Migration<diesel::sqlite::Sqlite>>> =
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&self).map_err(sql_error)?;
        Ok(all.iter().map(|m| m.name().to_string()).collect())
    }

    /// Runs the pending SQL migrations; returns their versions.
    pub(crate) fn run(self, conn: &mut AnyConnection) -> Result<Vec<String>> {
        let versions = backend::run_sql_migrations(conn, self).map_err(sql_error)?;
        for version in &versions {
            log::info!("Applied SQL migration {version}");
        }
        Ok(versions)
    }
}
