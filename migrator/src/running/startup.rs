//! The start-up entry point: the environment policy applied around a run.

use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::foundation::report::Report;
use crate::running::migrations::Migrator;

/// How start-up migration ended, when the application may go on.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartupOutcome {
    /// The policy skipped migrating (logged as
    /// `Migrations skipped based on environment configuration: REASON`).
    Skipped {
        /// Which variables made it skip.
        reason: String,
    },
    /// Every pending migration was applied (possibly none).
    Completed(Report),
    /// Migrating failed in development or staging: logged, and the application starts anyway
    /// (in production the error is returned instead). Serve a degraded health status.
    Failed(Error),
}

/// Runs `migrator` as start-up should under `config` (see [`Migrator::run_on_startup`]).
pub(crate) fn run_on_startup(
    migrator: &Migrator,
    db: &Database,
    config: &Config,
) -> Result<StartupOutcome> {
    log::info!(
        "Migrations on start-up: environment {}, database {}",
        config.environment(),
        db.for_migrations().url()
    );
    if let Some(reason) = config.startup_skip_reason() {
        log::info!("Migrations skipped based on environment configuration: {reason}");
        return Ok(StartupOutcome::Skipped { reason });
    }
    match migrator.run(db, config) {
        Ok(report) => {
            log::info!(
                "Start-up migrations complete: {} applied",
                report.applied().count() + report.sql_migrations.len()
            );
            Ok(StartupOutcome::Completed(report))
        }
        Err(e) if config.failure_stops_startup() => {
            log::error!(
                "Start-up migrations failed in {}; stopping: {e}",
                config.environment()
            );
            Err(e)
        }
        Err(e) => {
            log::error!(
                "Start-up migrations failed in {}; starting anyway: {e}",
                config.environment()
            );
            Ok(StartupOutcome::Failed(e))
        }
    }
}

impl Migrator {
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
        crate::running::startup::run_on_startup(self, db, config)
    }
}
