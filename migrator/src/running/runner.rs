//! The runner: plan, lock, plan again under the lock, confirm, back up, apply.

use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::foundation::report::{MigrationReport, Outcome, Report, StatusReport};
use crate::policy::confirm::confirm;
use crate::policy::plan::Plan;
use crate::records::backup::{self, Backup};
use crate::records::lock::{LockGuard, LockWatch};
use crate::records::tracking::{self, Table};
use crate::running::apply::{apply, settled, warn_anomalies, NotApplied, Run};
use crate::running::migrations::Migrator;

impl Migrator {
    /// Applies every pending migration, in order, under the migration lock: an explicit run
    /// (the CLI's `up`). `AUTO_MIGRATE_ON_STARTUP` does not apply; production must be enabled.
    ///
    /// It plans (without the lock: a run with nothing pending, every start of every replica but
    /// the first, ends there), takes the lock, plans again under it, asks for confirmation,
    /// backs up, and applies: SQL migrations first, then code migrations. A failure stops the
    /// run: later migrations are not attempted. Once the lock is held and the plan read under
    /// it, the error carries the [`Report`] of what was done ([`Error::report`]; the migrations
    /// not attempted are `NotRun`): a failed migration's, and any other error's that stopped
    /// the run (a refusal, a failed backup, the lock lost between two migrations).
    pub fn run(&self, db: &Database, config: &Config) -> Result<Report> {
        let db = db.for_migrations();
        let plan = self.plan(db, config)?;
        plan.check_policy()?;
        if plan.pending.is_empty() {
            return Ok(self.nothing_to_do(&plan.status));
        }
        let lock = LockGuard::acquire(db, config.lock_timeout())?;
        let table = lock.tracking_table();
        let lock = LockWatch::hold(lock, crate::records::lock::CHECK_INTERVAL);
        let plan = self.plan_under_lock(db, config, &table)?;
        if plan.pending.is_empty() {
            return Ok(self.nothing_to_do(&plan.status));
        }
        let mut report = Report::default();
        warn_anomalies(&plan.status, &mut report, self);
        let stopped = |e: Error, report: Report| e.with_report(not_run(&plan.status, report));
        if let Err(e) = confirm(db, &plan) {
            return Err(stopped(e, report));
        }
        report.backup = match self.back_up(db, config, &plan) {
            Ok(backup) => backup,
            Err(e) => return Err(stopped(e, report)),
        };
        let report = self
            .apply_sql(db, &plan, report)
            .map_err(|e| match e.report().cloned() {
                Some(report) => e.with_report(not_run(&plan.status, report)),
                None => e,
            })?;
        let run = Run {
            db,
            config,
            table: &table,
            me: &tracking::runner_identity(),
            lock: lock.watch(),
        };
        self.apply_code(&run, &plan.status, report)
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
        crate::foundation::metrics::pending(status.pending_count());
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
        let mut conn = match db.get() {
            Ok(conn) => conn,
            Err(e) => return Err(e.with_report(report)),
        };
        // Diesel applies each in a transaction of its own and stops at the first failure:
        // what was pending before and is no longer was applied by this run.
        let before = sql.pending_versions(&mut conn).ok();
        match sql.run(&mut conn) {
            Ok(versions) => {
                report.sql_migrations = versions;
                Ok(report)
            }
            Err(cause) => {
                log::error!("SQL migrations failed: {cause}");
                if let (Some(before), Ok(after)) = (before, sql.pending_versions(&mut conn)) {
                    report.sql_migrations =
                        before.into_iter().filter(|v| !after.contains(v)).collect();
                }
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
    /// A run stopped before a migration started (the lock lost, no connection) ends there,
    /// that migration and the rest `NotRun`, the error carrying the report.
    fn apply_code(
        &self,
        run: &Run<'_>,
        status: &StatusReport,
        mut report: Report,
    ) -> Result<Report> {
        let mut failure = None;
        let mut stopped = None;
        for m in &status.migrations {
            let mut entry = MigrationReport::with_outcome(m.id.clone(), settled(m));
            let migration = match self.find(&m.id) {
                Some(migration) => migration,
                None if stopped.is_none() && failure.is_none() => {
                    stopped = Some(Error::Tracking {
                        migration: m.id.clone(),
                        reason: "vanished from the registry during the run".into(),
                    });
                    continue;
                }
                None => continue,
            };
            if m.pending && (failure.is_some() || stopped.is_some()) {
                entry.outcome = Outcome::NotRun;
            } else if m.pending {
                match apply(run, migration, self.observer.clone()) {
                    Ok((duration, rows)) => {
                        entry.outcome = Outcome::Applied;
                        entry.duration = Some(duration);
                        entry.rows = (rows > 0).then_some(rows);
                    }
                    Err(NotApplied::Failed(duration, cause)) => {
                        entry.outcome = Outcome::Failed;
                        entry.duration = Some(duration);
                        entry.error = Some(cause.to_string());
                        failure = Some((m.id.clone(), cause));
                    }
                    Err(NotApplied::NotStarted(cause)) => {
                        log::error!("Stopping before migration {}: {cause}", m.id);
                        entry.outcome = Outcome::NotRun;
                        stopped = Some(cause);
                    }
                }
            }
            report.migrations.push(entry);
        }
        match (failure, stopped) {
            (Some((id, cause)), _) => Err(Error::MigrationFailed {
                id,
                cause: Box::new(cause),
                report: Box::new(report),
            }),
            (None, Some(cause)) => Err(cause.with_report(report)),
            (None, None) => Ok(report),
        }
    }
}

/// `report` of a run that stopped before its code migrations: each listed, the pending ones
/// `NotRun` (a report that lists them already is kept).
fn not_run(status: &StatusReport, mut report: Report) -> Report {
    if report.migrations.is_empty() {
        report.migrations = status
            .migrations
            .iter()
            .map(|m| {
                let outcome = if m.pending {
                    Outcome::NotRun
                } else {
                    settled(m)
                };
                MigrationReport::with_outcome(m.id.clone(), outcome)
            })
            .collect();
    }
    report
}
