//! The runner: plan under the lock, apply in order, record every attempt.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use diesel::Connection;

use crate::backup;
use crate::config::Config;
use crate::confirm::{confirm, Planned};
use crate::connection::AnyConnection;
use crate::connection::Database;
use crate::context::{Context, ProgressObserver};
use crate::error::{Error, Result};
use crate::lock::{LockGuard, LockWatch};
use crate::registry::{self, Migration};
use crate::report::{
    ChecksumDrift, MigrationReport, MigrationState, Outcome, Report, StatusReport,
};
use crate::sql::SqlMigrations;
use crate::tracking::{self, AppliedMigration, Record, Status, TABLE};

/// Runs a set of migrations against a [`Database`].
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
    sql: Option<SqlMigrations>,
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

/// What [`Migrator::mark`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkAs {
    /// Applied (e.g. fixed by hand): never run.
    Success,
    /// Failed: run again on the next run.
    Failed,
    /// Not wanted: never run.
    Skipped,
    /// No row at all: run on the next run as if new.
    Pending,
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

    fn find(&self, id: &str) -> Option<&'static Migration> {
        self.migrations.iter().copied().find(|m| m.id() == id)
    }

    /// Reads the tracking table against this binary's migrations. Changes nothing, takes no
    /// lock, and does not create the table.
    pub fn status(&self, db: &Database) -> Result<StatusReport> {
        let mut conn = db.get()?;
        let rows = if tracking::table_exists(&mut conn, TABLE)? {
            tracking::load(&mut conn)?
        } else {
            Vec::new()
        };
        Ok(self.compare(rows))
    }

    fn compare(&self, mut rows: Vec<AppliedMigration>) -> StatusReport {
        let migrations = self
            .migrations
            .iter()
            .map(|m| {
                let row = rows
                    .iter()
                    .position(|r| r.name == m.id())
                    .map(|i| rows.swap_remove(i));
                let pending = row
                    .as_ref()
                    .is_none_or(|r| matches!(r.status, Status::Failed | Status::Running));
                let checksum_drift = row.as_ref().is_some_and(|r| {
                    !pending && r.checksum.as_deref().is_some_and(|c| c != m.checksum())
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
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        StatusReport {
            migrations,
            unknown_applied: rows,
        }
    }

    /// Applies every pending migration, in order, under the migration lock: an explicit run
    /// (the CLI's `up`). `AUTO_MIGRATE_ON_STARTUP` does not apply; production must be enabled.
    ///
    /// A failure stops the run: later migrations are not attempted. The error carries the
    /// [`Report`] of what was done.
    pub fn run(&self, db: &Database, config: &Config) -> Result<Report> {
        if let Some(reason) = config.run_refusal() {
            return Err(Error::Refused { reason });
        }
        if let Some(report) = self.nothing_pending(db)? {
            return Ok(report);
        }
        let lock = LockWatch::hold(
            LockGuard::acquire(db, config.lock_timeout_value())?,
            crate::lock::CHECK_INTERVAL,
        );
        let mut conn = db.get()?;
        tracking::ensure_table(&mut conn)?;
        let pending_sql = match &self.sql {
            Some(sql) => sql.pending(&mut conn)?,
            None => Vec::new(),
        };
        let state = self.compare(tracking::load(&mut conn)?);
        let mut report = Report::default();
        warn_anomalies(&state, &mut report, self);

        let plan: Vec<Planned> = pending_sql
            .iter()
            .map(|id| Planned {
                id: id.clone(),
                transactional: true,
            })
            .chain(state.pending().map(|m| Planned {
                id: m.id.clone(),
                transactional: m.transactional,
            }))
            .collect();
        match plan.first() {
            None => log::info!("No pending migrations"),
            Some(first) => {
                confirm(db, config, &plan)?;
                if config.backup_before_setting().0 {
                    report.backup =
                        Some(backup::take(db, config, &format!("before-{}", first.id))?);
                }
            }
        }
        if let Some(sql) = &self.sql {
            if !pending_sql.is_empty() {
                match sql.run(&mut conn) {
                    Ok(versions) => report.sql_migrations = versions,
                    Err(cause) => {
                        // Diesel stops at the first failure: the first still pending is it.
                        log::error!("SQL migrations failed: {cause}");
                        let failed = sql
                            .pending(&mut conn)
                            .ok()
                            .and_then(|left| left.into_iter().next())
                            .or_else(|| pending_sql.first().cloned())
                            .unwrap_or_default();
                        return Err(Error::MigrationFailed {
                            id: failed,
                            cause: Box::new(cause),
                            report: Box::new(report),
                        });
                    }
                }
            }
        }
        drop(conn);

        let me = tracking::runner_identity();
        let mut failure = None;
        for m in &state.migrations {
            let migration = self.find(&m.id).ok_or_else(|| Error::Tracking {
                migration: m.id.clone(),
                reason: "vanished from the registry during the run".into(),
            })?;
            let entry = |outcome, duration, error| MigrationReport {
                id: m.id.clone(),
                outcome,
                duration,
                error,
                rows: None,
            };
            if failure.is_some() {
                let outcome = if m.pending {
                    Outcome::NotRun
                } else {
                    settled(m)
                };
                report.migrations.push(entry(outcome, None, None));
                continue;
            }
            if !m.pending {
                report.migrations.push(entry(settled(m), None, None));
                continue;
            }
            match apply(
                db,
                config,
                migration,
                &me,
                self.observer.clone(),
                lock.watch(),
            ) {
                Ok((duration, rows)) => report.migrations.push(MigrationReport {
                    rows: (rows > 0).then_some(rows),
                    ..entry(Outcome::Applied, Some(duration), None)
                }),
                Err((duration, cause)) => {
                    report.migrations.push(entry(
                        Outcome::Failed,
                        Some(duration),
                        Some(cause.to_string()),
                    ));
                    failure = Some((m.id.clone(), cause));
                }
            }
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

    /// The fast path of a run with nothing to do (every start of every replica but the first):
    /// one pooled connection reads the tracking table, without the lock; if nothing is pending
    /// (no code migration without a settled row, no SQL migration), the run is over. Anything
    /// else, including a table that is missing or lacks columns, takes the locked path.
    fn nothing_pending(&self, db: &Database) -> Result<Option<Report>> {
        let mut conn = db.get()?;
        let Ok(rows) = tracking::load(&mut conn) else {
            return Ok(None);
        };
        let state = self.compare(rows);
        if state.pending().next().is_some() {
            return Ok(None);
        }
        if let Some(sql) = &self.sql {
            // Diesel may create its table here; if two replicas race on that, the locked path
            // sorts it out.
            if !sql.pending(&mut conn).is_ok_and(|p| p.is_empty()) {
                return Ok(None);
            }
        }
        let mut report = Report::default();
        warn_anomalies(&state, &mut report, self);
        report.migrations = state
            .migrations
            .iter()
            .map(|m| MigrationReport {
                id: m.id.clone(),
                outcome: settled(m),
                duration: None,
                error: None,
                rows: None,
            })
            .collect();
        log::info!("No pending migrations");
        Ok(Some(report))
    }

    /// Backs the database up now, under the migration lock, into `MIGRATION_BACKUP_DIR` (the
    /// CLI's `backup`): `pg_dump` custom format on PostgreSQL, `VACUUM INTO` on SQLite.
    pub fn backup(&self, db: &Database, config: &Config) -> Result<crate::backup::Backup> {
        let _lock = LockGuard::acquire(db, config.lock_timeout_value())?;
        backup::take(db, config, "manual")
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
        let _lock = LockGuard::acquire(db, config.lock_timeout_value())?;
        let mut conn = db.get()?;
        let rows = if tracking::table_exists(&mut conn, TABLE)? {
            tracking::load(&mut conn)?
        } else {
            Vec::new()
        };
        let state = self.compare(rows);
        let mut report = Report::default();
        warn_anomalies(&state, &mut report, self);
        if let Some(sql) = &self.sql {
            report.sql_migrations = sql.pending_read_only(&mut conn)?;
        }
        let mut blocked = false;
        let _ = conn.transaction::<(), Error, _>(|conn| {
            for m in &state.migrations {
                let mut entry = MigrationReport {
                    id: m.id.clone(),
                    outcome: settled(m),
                    duration: None,
                    error: None,
                    rows: None,
                };
                let migration = self.find(&m.id);
                match migration {
                    _ if !m.pending => {}
                    Some(migration) if migration.is_transactional() && !blocked => {
                        let start = Instant::now();
                        let mut ctx =
                            Context::new(conn, db, config, migration.id(), true, None, None);
                        match call(migration, &mut ctx) {
                            Ok(()) => {
                                entry.outcome = Outcome::Rehearsed;
                                entry.rows = Some(ctx.progress().snapshot().done);
                            }
                            Err(e) => {
                                log::warn!("Rehearsal of migration {} failed: {e}", m.id);
                                entry.outcome = Outcome::Failed;
                                entry.error = Some(e.to_string());
                                blocked = true;
                            }
                        }
                        entry.duration = Some(start.elapsed());
                    }
                    _ => {
                        entry.outcome = Outcome::NotRehearsable;
                        blocked = true;
                    }
                }
                report.migrations.push(entry);
            }
            // Roll everything back.
            Err(Error::Query(diesel::result::Error::RollbackTransaction))
        });
        Ok(report)
    }

    /// Sets the status of migration `id` by hand, under the lock (what the deployment guide does
    /// with `UPDATE applied_migrations ...`). Unknown IDs are refused.
    pub fn mark(&self, db: &Database, config: &Config, id: &str, to: MarkAs) -> Result<()> {
        let migration = self
            .find(id)
            .ok_or_else(|| Error::UnknownMigration { id: id.to_owned() })?;
        let _lock = LockGuard::acquire(db, config.lock_timeout_value())?;
        let mut conn = db.get()?;
        tracking::ensure_table(&mut conn)?;
        let status = match to {
            MarkAs::Success => Status::Success,
            MarkAs::Failed => Status::Failed,
            MarkAs::Skipped => Status::Skipped,
            MarkAs::Pending => {
                tracking::delete(&mut conn, id)?;
                log::info!("Migration {id} marked pending (its row was deleted)");
                return Ok(());
            }
        };
        tracking::write(
            &mut conn,
            &Record {
                name: id,
                status,
                execution_time_ms: None,
                error_message: None,
                checksum: Some(migration.checksum()),
                applied_by: &tracking::runner_identity(),
                new_attempt: false,
            },
        )?;
        log::info!("Migration {id} marked {status}");
        Ok(())
    }
}

fn settled(m: &MigrationState) -> Outcome {
    match m.row.as_ref().map(|r| r.status) {
        Some(Status::Skipped) => Outcome::Skipped,
        _ => Outcome::AlreadyApplied,
    }
}

fn warn_anomalies(state: &StatusReport, report: &mut Report, migrator: &Migrator) {
    for row in &state.unknown_applied {
        log::warn!(
            "applied_migrations lists {} (status {}), which this binary does not contain: \
             was it renamed, or is this binary older than the database?",
            row.name,
            row.status
        );
    }
    report.unknown_applied = state.unknown_applied.clone();
    for m in state.migrations.iter().filter(|m| m.checksum_drift) {
        let recorded = m
            .row
            .as_ref()
            .and_then(|r| r.checksum.clone())
            .unwrap_or_default();
        let current = migrator
            .find(&m.id)
            .map(|x| x.checksum().to_owned())
            .unwrap_or_default();
        log::warn!(
            "Migration {} changed since it was applied (checksum {recorded}, now {current}); \
             applied migrations are not run again: put further changes in a new migration",
            m.id
        );
        report.checksum_drift.push(ChecksumDrift {
            id: m.id.clone(),
            recorded,
            current,
        });
    }
}

/// Applies one migration and records the attempt. On failure returns the duration and cause.
fn apply(
    db: &Database,
    config: &Config,
    m: &'static Migration,
    me: &str,
    observer: Option<ProgressObserver>,
    lock: &std::sync::Arc<LockWatch>,
) -> std::result::Result<(Duration, u64), (Duration, Error)> {
    let start = Instant::now();
    // Never start, or record, a migration without holding the lock. While it runs, its context
    // and progress reporter watch the lock too.
    let held = || lock.ensure_held();
    held().map_err(|e| (start.elapsed(), e))?;
    let mut conn = db.get().map_err(|e| (start.elapsed(), e))?;
    log::info!("Applying migration {}", m.id());
    let record = |status, elapsed: Duration, new_attempt| Record {
        name: m.id(),
        status,
        execution_time_ms: Some(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)),
        error_message: None,
        checksum: Some(m.checksum()),
        applied_by: me,
        new_attempt,
    };
    let mut rows = 0;
    let result = if m.is_transactional() {
        conn.transaction::<_, Error, _>(|conn| {
            let mut ctx = Context::new(
                conn,
                db,
                config,
                m.id(),
                true,
                observer,
                Some(std::sync::Arc::clone(lock)),
            );
            call(m, &mut ctx)?;
            rows = ctx.progress().snapshot().done;
            drop(ctx);
            // Lost meanwhile: roll back rather than commit beside another runner.
            held()?;
            tracking::write(conn, &record(Status::Success, start.elapsed(), true))
        })
    } else {
        tracking::write(&mut conn, &record(Status::Running, Duration::ZERO, true))
            .and_then(|()| {
                let mut ctx = Context::new(
                    &mut conn,
                    db,
                    config,
                    m.id(),
                    false,
                    observer,
                    Some(std::sync::Arc::clone(lock)),
                );
                call(m, &mut ctx)?;
                rows = ctx.progress().snapshot().done;
                Ok(())
            })
            .and_then(|()| held())
            .and_then(|()| {
                tracking::write(&mut conn, &record(Status::Success, start.elapsed(), false))
            })
    };
    let elapsed = start.elapsed();
    match result {
        Ok(()) => {
            log::info!("Migration {} applied in {} ms", m.id(), elapsed.as_millis());
            Ok((elapsed, rows))
        }
        Err(cause) => {
            let message = cause.to_string();
            log::error!("Migration {} failed: {message}", m.id());
            if let Err(lost) = held() {
                // Another runner may own the row now: record nothing.
                log::error!("Not recording the failure of migration {}: {lost}", m.id());
                return Err((elapsed, lost));
            }
            // Whatever the migration left open (a panic inside a nested transaction, a raw
            // BEGIN) is rolled back, so that the failed row is committed, and the connection
            // goes back to the pool clean.
            unwind_transactions(&mut conn);
            // A transactional attempt's `running`/`success` writes were rolled back with it.
            let failed = Record {
                error_message: Some(&message),
                ..record(Status::Failed, elapsed, m.is_transactional())
            };
            if let Err(e) = tracking::write(&mut conn, &failed) {
                log::error!("Could not record the failure of migration {}: {e}", m.id());
            }
            Err((elapsed, cause))
        }
    }
}

/// Rolls back every transaction level Diesel knows of, then any transaction opened behind its
/// back (a raw `BEGIN`; outside a transaction PostgreSQL only warns and SQLite errors, both
/// ignored).
fn unwind_transactions(conn: &mut AnyConnection) {
    use diesel::connection::{SimpleConnection, TransactionManager};
    type Manager = <AnyConnection as Connection>::TransactionManager;
    for _ in 0..64 {
        match Manager::transaction_manager_status_mut(conn).transaction_depth() {
            Ok(Some(_)) => {
                if Manager::rollback_transaction(conn).is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = conn.batch_execute("ROLLBACK");
}

/// Calls the migration, turning a panic into an error so that it is rolled back and recorded.
fn call(m: &Migration, ctx: &mut Context<'_>) -> Result<()> {
    match catch_unwind(AssertUnwindSafe(|| m.call(ctx))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".into());
            Err(Error::Panic { message })
        }
    }
}
