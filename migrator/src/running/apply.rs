//! Applying one migration: its transaction (or `running` row), its outcome recorded, a panic
//! turned into an error, whatever it left open rolled back; and the report of settled ones.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;

use crate::access::connection::{AnyConnection, Database};
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::foundation::metrics;
use crate::foundation::report::{ChecksumDrift, MigrationState, Outcome, Report, StatusReport};
use crate::records::lock::LockWatch;
use crate::records::tracking::{self, Record, Status, Table};
use crate::running::context::{Context, ProgressObserver};
use crate::running::ddl_lock::{self, BlockerWatch};
use crate::running::migrations::Migrator;
use crate::running::registry::Migration;

/// The outcome of a migration this run does not attempt.
pub(crate) fn settled(m: &MigrationState) -> Outcome {
    match m.row.as_ref().map(|r| r.status) {
        Some(Status::Skipped) => Outcome::Skipped,
        _ => Outcome::AlreadyApplied,
    }
}

/// Logs rows of unknown migrations and checksum drift, and puts them in `report`.
pub(crate) fn warn_anomalies(state: &StatusReport, report: &mut Report, migrator: &Migrator) {
    for row in &state.unknown_applied {
        log::warn!(
            "applied_migrations lists {} (status {}), which this binary does not contain: \
             was it renamed, or is this binary older than the database?",
            row.id,
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

/// What every migration of one locked run shares.
pub(crate) struct Run<'a> {
    pub(crate) db: &'a Database,
    pub(crate) config: &'a Config,
    /// The tracking table the lock guards.
    pub(crate) table: &'a Table,
    /// This runner's `applied_by`.
    pub(crate) me: &'a str,
    /// The run's lock, watched while migrations run.
    pub(crate) lock: &'a Arc<LockWatch>,
}

/// Why a migration was not applied.
pub(crate) enum NotApplied {
    /// It never started: the lock was lost, or no connection could be had, before it. Not the
    /// migration's failure: nothing was attempted or recorded.
    NotStarted(Error),
    /// It ran and failed, after this long (its `failed` row written unless the lock was lost).
    Failed(Duration, Error),
}

/// Applies one migration and records the attempt, and its metrics.
pub(crate) fn apply(
    run: &Run<'_>,
    m: &'static Migration,
    observer: Option<ProgressObserver>,
) -> std::result::Result<(Duration, u64), NotApplied> {
    let outcome = apply_and_record(run, m, observer);
    let (finished, duration) = match &outcome {
        Ok((duration, _)) => (metrics::Finished::Applied, *duration),
        Err(NotApplied::Failed(duration, _)) => (metrics::Finished::Failed, *duration),
        Err(NotApplied::NotStarted(_)) => return outcome,
    };
    metrics::migration_finished(m.id(), finished, duration);
    let attempts = run
        .db
        .get()
        .and_then(|mut conn| tracking::load(&mut conn, run.table));
    match attempts.map(|rows| rows.into_iter().find(|r| r.id == m.id())) {
        Ok(Some(row)) => metrics::migration_attempts(m.id(), row.attempts),
        Ok(None) => {}
        Err(e) => log::debug!("Could not read the attempts of migration {}: {e}", m.id()),
    }
    outcome
}

fn apply_and_record(
    run: &Run<'_>,
    m: &'static Migration,
    observer: Option<ProgressObserver>,
) -> std::result::Result<(Duration, u64), NotApplied> {
    let attempt = Attempt {
        run,
        m,
        observer,
        start: Instant::now(),
    };
    // Never start, or record, a migration without holding the lock. While it runs, its context
    // and progress reporter watch the lock too.
    let mut conn = attempt
        .held()
        .and_then(|()| run.db.get())
        .map_err(NotApplied::NotStarted)?;
    log::info!("Applying migration {}", m.id());
    let result = attempt.with_retries(&mut conn);
    let elapsed = attempt.start.elapsed();
    match result {
        Ok(rows) => {
            log::info!("Migration {} applied in {} ms", m.id(), elapsed.as_millis());
            Ok((elapsed, rows))
        }
        Err(cause) => Err(NotApplied::Failed(
            elapsed,
            attempt.record_failure(&mut conn, cause, elapsed),
        )),
    }
}

/// One migration being applied.
struct Attempt<'r, 'a> {
    run: &'r Run<'a>,
    m: &'static Migration,
    observer: Option<ProgressObserver>,
    start: Instant,
}

impl<'a> Attempt<'_, 'a> {
    fn held(&self) -> Result<()> {
        self.run.lock.ensure_held()
    }

    fn record(&self, status: Status, elapsed: Duration, new_attempt: bool) -> Record<'_> {
        Record {
            name: self.m.id(),
            status,
            execution_time_ms: Some(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)),
            error_message: None,
            checksum: Some(self.m.checksum()),
            applied_by: self.run.me,
            new_attempt,
        }
    }

    fn context<'c>(&self, conn: &'c mut AnyConnection, transactional: bool) -> Context<'c>
    where
        'a: 'c,
    {
        Context::new(
            conn,
            self.run.db,
            self.run.config,
            self.m.id(),
            transactional,
            self.observer.clone(),
            Some(Arc::clone(self.run.lock)),
        )
    }

    /// Runs the migration; on PostgreSQL an attempt stopped by its lock timeout is retried
    /// whole (see `ddl_lock`). Returns the rows it reported.
    fn with_retries(&self, conn: &mut AnyConnection) -> Result<u64> {
        let config = self.run.config;
        let mut retry: u32 = 0;
        loop {
            let watch = BlockerWatch::start(self.run.db, conn, config);
            let outcome = if self.m.is_transactional() {
                self.transactional(conn, retry)
            } else {
                self.non_transactional(conn, retry)
            };
            let seen = watch.map(BlockerWatch::stop).unwrap_or_default();
            let e = match outcome {
                Err(e) if ddl_lock::is_lock_timeout(&e) => e,
                other => return other,
            };
            let blockers = ddl_lock::describe(&seen.ever);
            if retry >= config.ddl_lock_retries() {
                return Err(Error::DdlLockTimeout {
                    timeout: ddl_lock::lock_timeout(self.m, config),
                    attempts: retry.saturating_add(1),
                    blockers,
                    cause: Box::new(e),
                });
            }
            let pause = ddl_lock::backoff(retry);
            log::warn!(
                "Migration {} could not take a table lock within {} ms \
                 (MIGRATION_DDL_LOCK_TIMEOUT_MS) on attempt {} of {}; {blockers}; \
                 retrying in {} ms",
                self.m.id(),
                ddl_lock::lock_timeout(self.m, config).as_millis(),
                retry + 1,
                config.ddl_lock_retries().saturating_add(1),
                pause.as_millis()
            );
            std::thread::sleep(pause);
            retry += 1;
            self.held()?;
        }
    }

    /// One attempt in one transaction, together with its `success` row.
    fn transactional(&self, conn: &mut AnyConnection, retry: u32) -> Result<u64> {
        conn.transaction::<_, Error, _>(|conn| {
            ddl_lock::configure(conn, self.m, self.run.config, true, retry == 0)?;
            let mut ctx = self.context(conn, true);
            call(self.m, &mut ctx)?;
            let rows = ctx.progress().snapshot().done;
            drop(ctx);
            // Lost meanwhile: roll back rather than commit beside another runner.
            self.held()?;
            let success = self.record(Status::Success, self.start.elapsed(), true);
            tracking::write(conn, self.run.table, &success)?;
            Ok(rows)
        })
    }

    /// One attempt outside a transaction: recorded `running` first (once), then `success`.
    fn non_transactional(&self, conn: &mut AnyConnection, retry: u32) -> Result<u64> {
        let table = self.run.table;
        let outcome = (|| {
            if retry == 0 {
                let running = self.record(Status::Running, Duration::ZERO, true);
                tracking::write(conn, table, &running)?;
            }
            ddl_lock::configure(conn, self.m, self.run.config, false, retry == 0)?;
            let mut ctx = self.context(conn, false);
            call(self.m, &mut ctx)?;
            let rows = ctx.progress().snapshot().done;
            drop(ctx);
            self.held()?;
            let success = self.record(Status::Success, self.start.elapsed(), false);
            tracking::write(conn, table, &success)?;
            Ok(rows)
        })();
        if outcome.is_err() {
            unwind_transactions(conn);
        }
        ddl_lock::reset(conn, self.m);
        outcome
    }

    /// Records a failed attempt (unless the lock was lost: another runner may own the row
    /// now) and returns the error to report.
    fn record_failure(&self, conn: &mut AnyConnection, cause: Error, elapsed: Duration) -> Error {
        let id = self.m.id();
        let message = cause.to_string();
        log::error!("Migration {id} failed: {message}");
        if let Err(lost) = self.held() {
            log::error!("Not recording the failure of migration {id}: {lost}");
            return lost;
        }
        // Whatever the migration left open (a panic inside a nested transaction, a raw BEGIN)
        // is rolled back, so that the failed row is committed, and the connection goes back to
        // the pool clean.
        unwind_transactions(conn);
        // A transactional attempt's `running`/`success` writes were rolled back with it.
        let failed = Record {
            error_message: Some(&message),
            ..self.record(Status::Failed, elapsed, self.m.is_transactional())
        };
        if let Err(e) = tracking::write(conn, self.run.table, &failed) {
            log::error!("Could not record the failure of migration {id}: {e}");
        }
        cause
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
pub(crate) fn call(m: &Migration, ctx: &mut Context<'_>) -> Result<()> {
    match catch_unwind(AssertUnwindSafe(|| m.call(ctx))) {
        Ok(result) => result,
        Err(payload) => {
            let message = crate::foundation::error::panic_message(&*payload);
            Err(Error::Panic { message })
        }
    }
}
