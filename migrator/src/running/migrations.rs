//! The migrations a run works on: the [`Migrator`], built from the registry (or an explicit
//! set) and the Diesel SQL migrations, and what the tracking table says about them (status and
//! plan, read only). Running them is `runner.rs`; start-up, waiting and the operator's actions
//! are `startup.rs`, `wait.rs` and `operate.rs`, each adding its methods to [`Migrator`].

use crate::access::connection::Database;
use crate::access::sql::SqlMigrations;
use crate::foundation::config::Config;
use crate::foundation::error::Result;
use crate::foundation::report::{MigrationState, StatusReport};
use crate::policy::plan::Plan;
use crate::records::tracking::{self, AppliedMigration, Status};
use crate::running::context::ProgressObserver;
use crate::running::registry::{self, Migration};

/// Runs a set of migrations against a [`Database`].
///
/// Every method works on [`Database::for_migrations`]: the database of
/// `MIGRATION_DATABASE_URL` when one is attached, else the one given.
///
/// ```no_run
/// use migrator::{Config, Database, Migrator};
/// # fn main() -> migrator::Result<()> {
/// let db = Database::connect("sqlite://app.db")?;
/// let report = Migrator::from_registry()?.run(&db, &Config::from_env()?)?;
/// println!("{} migration(s) applied", report.applied().count());
/// # Ok(()) }
/// ```
pub struct Migrator {
    migrations: Vec<&'static Migration>,
    pub(crate) sql: Option<SqlMigrations>,
    pub(crate) observer: Option<ProgressObserver>,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("migrations", &self.migrations)
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

impl Migrator {
    /// Every migration linked into this binary, sorted; duplicate IDs are an error naming both
    /// source locations.
    pub fn from_registry() -> Result<Migrator> {
        Migrator::from_migrations(Migration::registered())
    }

    /// An explicit set of migrations (e.g. a subset of [`Migration::registered`](crate::Migration::registered)), sorted and checked.
    pub fn from_migrations(
        migrations: impl IntoIterator<Item = &'static Migration>,
    ) -> Result<Migrator> {
        Ok(Migrator {
            migrations: registry::sorted(migrations)?,
            sql: None,
            observer: None,
        })
    }

    /// Also runs Diesel SQL migrations (`embed_migrations!`), under the same lock and before the
    /// code migrations, tracked in Diesel's own `__diesel_schema_migrations` table so that the
    /// diesel CLI keeps working.
    pub fn sql_migrations(
        &mut self,
        migrations: &'static diesel_migrations::EmbeddedMigrations,
    ) -> &mut Migrator {
        self.sql = Some(SqlMigrations(migrations));
        self
    }

    /// Sends every progress update of long migrations to `observer` (e.g. a progress bar)
    /// instead of periodic log lines.
    pub fn progress_observer(&mut self, observer: ProgressObserver) -> &mut Migrator {
        self.observer = Some(observer);
        self
    }

    /// The code migrations, in order.
    pub fn migrations(&self) -> &[&'static Migration] {
        &self.migrations
    }

    pub(crate) fn find(&self, id: &str) -> Option<&'static Migration> {
        self.migrations.iter().copied().find(|m| m.id() == id)
    }

    /// Reads the tracking table, and the pending Diesel SQL migrations, against this binary's
    /// migrations. Changes nothing, takes no lock, and creates no table. A table left by an
    /// older tool (name, status, time, duration, error) is read as it is (the columns it lacks read as empty).
    pub fn status(&self, db: &Database) -> Result<StatusReport> {
        let db = db.for_migrations();
        let mut conn = db.get()?;
        let rows = match tracking::find(db, &mut conn)? {
            Some(table) => tracking::load(&mut conn, &table)?,
            None => Vec::new(),
        };
        let mut status = self.compare(rows);
        if let Some(sql) = &self.sql {
            status.pending_sql = sql.pending_read_only(&mut conn)?;
        }
        crate::foundation::metrics::pending(status.pending_count());
        Ok(status)
    }

    /// What [`Migrator::run`] would do now under `config`, and why: the pending SQL and code
    /// migrations in run order, each policy decision, what confirmation needs (the exact
    /// `MIGRATION_CONFIRM`), and where the backup goes. Changes nothing and takes no lock; `run`
    /// computes it again under the lock and acts on that.
    pub fn plan(&self, db: &Database, config: &Config) -> Result<Plan> {
        let db = db.for_migrations();
        Ok(Plan::new(
            config,
            db.url().redacted().to_string(),
            self.status(db)?,
        ))
    }

    pub(crate) fn compare(&self, mut rows: Vec<AppliedMigration>) -> StatusReport {
        let migrations = self
            .migrations
            .iter()
            .map(|m| {
                let row = rows
                    .iter()
                    .position(|r| r.id == m.id())
                    .map(|i| rows.swap_remove(i));
                let pending = row
                    .as_ref()
                    .is_none_or(|r| matches!(r.status, Status::Failed | Status::Running));
                let checksum_drift = row.as_ref().is_some_and(|r| {
                    !pending
                        && r.checksum
                            .as_deref()
                            .is_some_and(|c| !m.checksum_matches(c))
                });
                MigrationState {
                    id: m.id().to_owned(),
                    transactional: m.is_transactional(),
                    location: m.location(),
                    row,
                    pending,
                    checksum_drift,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        StatusReport {
            migrations,
            unknown_applied: rows,
            pending_sql: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Migrator;
    use crate::foundation::error::Result;
    use crate::records::tracking::{AppliedMigration, Status};
    use crate::running::context::Context;
    use crate::running::registry::Migration;

    fn noop(_: &mut Context<'_>) -> Result<()> {
        Ok(())
    }

    static MIGRATION: Migration = Migration::__new(
        "001_x",
        noop,
        true,
        "v2:0123456789abcdef",
        "fedcba9876543210",
        file!(),
        line!(),
        module_path!(),
    );

    fn drift_with_recorded(checksum: &str) -> bool {
        let row = AppliedMigration {
            id: "001_x".into(),
            status: Status::Success,
            applied_at: None,
            execution_time_ms: None,
            error_message: None,
            checksum: Some(checksum.into()),
            attempts: 1,
            applied_by: None,
        };
        let migrator = Migrator::from_migrations([&MIGRATION]).unwrap();
        migrator.compare(vec![row]).migrations[0].checksum_drift
    }

    #[test]
    fn the_current_and_the_previous_form_are_accepted() {
        assert!(MIGRATION.checksum_matches("v2:0123456789abcdef"));
        assert!(MIGRATION.checksum_matches("fedcba9876543210"));
        assert!(!drift_with_recorded("v2:0123456789abcdef"));
        assert!(!drift_with_recorded("fedcba9876543210"));
    }

    #[test]
    fn other_code_is_drift() {
        assert!(!MIGRATION.checksum_matches("v2:fedcba9876543210"));
        assert!(!MIGRATION.checksum_matches("0123456789abcdef"));
        assert!(drift_with_recorded("0000000000000000"));
        assert!(drift_with_recorded("v2:0000000000000000"));
    }
}
