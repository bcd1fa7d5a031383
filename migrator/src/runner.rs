//! The runner: plan, lock, plan again under the lock, confirm, back up, apply.

use crate::apply::{apply, settled, warn_anomalies, Run};
use crate::backup::{self, Backup};
use crate::config::Config;
use crate::confirm::confirm;
use crate::connection::Database;
use crate::context::ProgressObserver;
use crate::error::{Error, Result};
use crate::lock::{LockGuard, LockWatch};
use crate::operate::MarkAs;
use crate::plan::Plan;
use crate::registry::{self, Migration};
use crate::report::{MigrationReport, MigrationState, Outcome, Report, StatusReport};
use crate::sql::SqlMigrations;
use crate::startup::StartupOutcome;
use crate::tracking::{self, AppliedMigration, Status, Table};

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
    observer: Option<ProgressObserver>,
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
        Migrator::from_migrations(registry::registered())
    }

    /// An explicit set of migrations (e.g. a subset of [`crate::registered`]), sorted and checked.
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
    /// migrations. Changes nothing, takes no lock, and creates no table. A table left by the
    /// Python runner is read as it is (the columns it lacks read as empty).
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
        crate::metrics::pending(status.pending_count());
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

    /// Applies every pending migration, in order, under the migration lock: an explicit run
    /// (the CLI's `up`). `AUTO_MIGRATE_ON_STARTUP` does not apply; production must be enabled.
    ///
    /// It plans (without the lock: a run with nothing pending, every start of every replica but
    /// the first, ends there), takes the lock, plans again under it, asks for confirmation,
    /// backs up, and applies: SQL migrations first, then code migrations. A failure stops the
    /// run: later migrations are not attempted. The error carries the [`Report`] of what was
    /// done.
    pub fn run(&self, db: &Database, config: &Config) -> Result<Report> {
        let db = db.for_migrations();
        let plan = self.plan(db, config)?;
        plan.check_policy()?;
        if plan.pending.is_empty() {
            return Ok(self.nothing_to_do(&plan.status));
        }
        let lock = LockGuard::acquire(db, config.lock_timeout())?;
        let table = lock.tracking_table();
        let lock = LockWatch::hold(lock, crate::lock::CHECK_INTERVAL);
        let plan = self.plan_under_lock(db, config, &table)?;
        if plan.pending.is_empty() {
            return Ok(self.nothing_to_do(&plan.status));
        }
        confirm(db, &plan)?;
        let mut report = Report::default();
        warn_anomalies(&plan.status, &mut report, self);
        report.backup = self.back_up(db, config, &plan)?;
        let report = self.apply_sql(db, &plan, report)?;
        let run = Run {
            db,
            config,
            table: &table,
            me: &tracking::runner_identity(),
            lock: lock.watch(),
        };
        self.apply_code(&run, &plan.status, report)
    }

    /// Start-up: runs the pending migrations as the policy says start-up should.
    ///
    /// - skips (with the log line operators grep for) when `AUTO_MIGRATE_ON_STARTUP` is false
    ///   or production is not enabled;
    /// - in development and staging, a failure is logged and returned as
    ///   [`StartupOutcome::Failed`], so the application can start;
    /// - in production, a failure is returned as `Err`, so the application stops.
    ///
    /// ```no_run
    /// # fn main() -> migrator::Result<()> {
    /// let db = migrator::Database::from_env()?;
    /// let config = migrator::Config::from_env()?;
    /// migrator::Migrator::from_registry()?.run_on_startup(&db, &config)?;
    /// # Ok(()) }
    /// ```
    pub fn run_on_startup(&self, db: &Database, config: &Config) -> Result<StartupOutcome> {
        crate::startup::run_on_startup(self, db, config)
    }

    /// The report of a run with nothing to do.
    fn nothing_to_do(&self, status: &StatusReport) -> Report {
        let mut report = Report::default();
        warn_anomalies(status, &mut report, self);
        report.migrations = status
            .migrations
            .iter()
            .map(|m| MigrationReport::with_outcome(m.id.clone(), settled(m)))
            .collect();
        log::info!("No pending migrations");
        report
    }

    /// The plan read again under the lock, from the tracking table the lock guards, created (or
    /// upgraded) first.
    fn plan_under_lock(&self, db: &Database, config: &Config, table: &Table) -> Result<Plan> {
        let mut conn = db.get()?;
        tracking::ensure_table(&mut conn, table)?;
        // The table the lock guards is the one this run uses, and this database from now on.
        tracking::remember(db, table);
        let mut status = self.compare(tracking::load(&mut conn, table)?);
        if let Some(sql) = &self.sql {
            status.pending_sql = sql.pending(&mut conn)?;
        }
        crate::metrics::pending(status.pending_count());
        Ok(Plan::new(config, db.url().redacted().to_string(), status))
    }

    /// The backup the plan asks for, if any.
    fn back_up(&self, db: &Database, config: &Config, plan: &Plan) -> Result<Option<Backup>> {
        plan.backup
            .as_ref()
            .map(|target| backup::take(db, config, &target.label))
            .transpose()
    }

    /// Runs the pending SQL migrations; a failure names the first one still pending.
    fn apply_sql(&self, db: &Database, plan: &Plan, mut report: Report) -> Result<Report> {
        let Some(sql) = self.sql.filter(|_| !plan.status.pending_sql.is_empty()) else {
            return Ok(report);
        };
        let mut conn = db.get()?;
        match sql.run(&mut conn) {
            Ok(versions) => {
                report.sql_migrations = versions;
                Ok(report)
            }
            Err(cause) => {
                log::error!("SQL migrations failed: {cause}");
                // Diesel stops at the first failure: the first still pending is it.
                let id = sql
                    .pending(&mut conn)
                    .ok()
                    .and_then(|left| left.into_iter().next())
                    .or_else(|| plan.status.pending_sql.first().cloned())
                    .unwrap_or_default();
                Err(Error::MigrationFailed {
                    id,
                    cause: Box::new(cause),
                    report: Box::new(report),
                })
            }
        }
    }

    /// Applies the pending code migrations in order; after a failure the rest are `NotRun`.
    fn apply_code(
        &self,
        run: &Run<'_>,
        status: &StatusReport,
        mut report: Report,
    ) -> Result<Report> {
        let mut failure = None;
        for m in &status.migrations {
            let migration = self.find(&m.id).ok_or_else(|| Error::Tracking {
                migration: m.id.clone(),
                reason: "vanished from the registry during the run".into(),
            })?;
            let mut entry = MigrationReport::with_outcome(m.id.clone(), settled(m));
            if m.pending && failure.is_some() {
                entry.outcome = Outcome::NotRun;
            } else if m.pending {
                match apply(run, migration, self.observer.clone()) {
                    Ok((duration, rows)) => {
                        entry.outcome = Outcome::Applied;
                        entry.duration = Some(duration);
                        entry.rows = (rows > 0).then_some(rows);
                    }
                    Err((duration, cause)) => {
                        entry.outcome = Outcome::Failed;
                        entry.duration = Some(duration);
                        entry.error = Some(cause.to_string());
                        failure = Some((m.id.clone(), cause));
                    }
                }
            }
            report.migrations.push(entry);
        }
        match failure {
            None => Ok(report),
            Some((id, cause)) => Err(Error::MigrationFailed {
                id,
                cause: Box::new(cause),
                report: Box::new(report),
            }),
        }
    }

    /// Blocks until nothing is pending (every SQL and code migration applied by someone else: a
    /// Job, another replica), polling the tracking table every `poll`, for at most `timeout`
    /// (the CLI's `wait`, for init containers, with `MIGRATION_LOCK_TIMEOUT_SECS`). Returns
    /// whether it became ready. Takes no lock and changes nothing; a database that cannot be
    /// reached yet is waited for too.
    pub fn wait_until_applied(
        &self,
        db: &Database,
        timeout: std::time::Duration,
        poll: std::time::Duration,
    ) -> Result<bool> {
        let db = db.for_migrations();
        crate::wait::until_applied(self, db, timeout, poll)
    }

    /// Backs the database up now, under the migration lock, into `MIGRATION_BACKUP_DIR` (the
    /// CLI's `backup`): `pg_dump` custom format on PostgreSQL, `VACUUM INTO` on SQLite.
    pub fn backup(&self, db: &Database, config: &Config) -> Result<crate::backup::Backup> {
        crate::operate::backup(db.for_migrations(), config)
    }

    /// Rehearses the pending migrations without changing anything (the CLI's `up --dry-run`):
    /// under the lock, every pending transactional migration runs, in order, inside one
    /// transaction that is then rolled back, and the report says what each did
    /// ([`Outcome::Rehearsed`], with the rows it reported through its progress). A
    /// non-transactional migration cannot be rehearsed; it and the ones after it (which may
    /// depend on it) are [`Outcome::NotRehearsable`]. Pending SQL migrations are listed in
    /// `sql_migrations` and not rehearsed. No row of `applied_migrations` is written, no backup
    /// is taken, and no confirmation is asked.
    pub fn dry_run(&self, db: &Database, config: &Config) -> Result<Report> {
        crate::operate::dry_run(self, db.for_migrations(), config)
    }

    /// Sets the status of migration `id` by hand, under the lock (what the deployment guide does
    /// with `UPDATE applied_migrations ...`). Unknown IDs are refused.
    pub fn mark(&self, db: &Database, config: &Config, id: &str, to: MarkAs) -> Result<()> {
        crate::operate::mark(self, db.for_migrations(), config, id, to)
    }
}
